//! Typed access to a task's parameters, with errors that name the parameter and the reason.

use std::fmt;

/// A parameter problem; becomes [`crate::TaskError::InvalidParams`] through `?`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamError {
    /// A required parameter is absent.
    Missing {
        /// Parameter name.
        name: String,
    },
    /// A value does not parse as the parameter's kind.
    Invalid {
        /// Parameter name.
        name: String,
        /// The value given.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// A parameter the task does not know.
    Unknown {
        /// Parameter name.
        name: String,
        /// The names the task accepts.
        known: Vec<String>,
    },
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamError::Missing { name } => write!(f, "parameter `{name}` is required"),
            ParamError::Invalid {
                name,
                value,
                reason,
            } => {
                write!(f, "parameter `{name}`: invalid value {value:?}: {reason}")
            }
            ParamError::Unknown { name, known } => write!(
                f,
                "unknown parameter `{name}` (accepted: {})",
                known.join(", ")
            ),
        }
    }
}

impl std::error::Error for ParamError {}

/// A task's parameters (key/value pairs; for a key given twice, the last value wins).
#[derive(Debug, Clone, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Wraps the pairs from the task context.
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Self { pairs }
    }

    /// All pairs, in the order given.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The raw value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of a required text parameter.
    pub fn required(&self, name: &str) -> Result<&str, ParamError> {
        self.get(name).ok_or_else(|| ParamError::Missing {
            name: name.to_string(),
        })
    }

    /// A text parameter, or `default` when absent.
    pub fn text_or<'a>(&'a self, name: &str, default: &'a str) -> &'a str {
        self.get(name).unwrap_or(default)
    }

    /// An integer parameter, or `None` when absent.
    pub fn integer(&self, name: &str) -> Result<Option<i64>, ParamError> {
        self.get(name)
            .map(|v| {
                v.trim().parse::<i64>().map_err(|e| ParamError::Invalid {
                    name: name.to_string(),
                    value: v.to_string(),
                    reason: format!("not an integer ({e})"),
                })
            })
            .transpose()
    }

    /// An integer parameter within `min..=max`, or `default` when absent.
    pub fn integer_in(
        &self,
        name: &str,
        default: i64,
        min: i64,
        max: i64,
    ) -> Result<i64, ParamError> {
        let v = self.integer(name)?.unwrap_or(default);
        if v < min || v > max {
            return Err(ParamError::Invalid {
                name: name.to_string(),
                value: v.to_string(),
                reason: format!("must be between {min} and {max}"),
            });
        }
        Ok(v)
    }

    /// A boolean parameter (`true`/`false`, also `yes`/`no`, `1`/`0`), or `default` when absent.
    pub fn boolean_or(&self, name: &str, default: bool) -> Result<bool, ParamError> {
        match self.get(name).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) => match v.as_str() {
                "true" | "yes" | "1" => Ok(true),
                "false" | "no" | "0" => Ok(false),
                _ => Err(ParamError::Invalid {
                    name: name.to_string(),
                    value: v,
                    reason: "expected true or false".to_string(),
                }),
            },
        }
    }

    /// A comma-separated list parameter (items trimmed, empty items dropped); empty when absent.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Fails on the first parameter whose name is not in `known`.
    pub fn reject_unknown(&self, known: &[&str]) -> Result<(), ParamError> {
        match self
            .pairs
            .iter()
            .find(|(k, _)| !known.contains(&k.as_str()))
        {
            None => Ok(()),
            Some((k, _)) => Err(ParamError::Unknown {
                name: k.clone(),
                known: known.iter().map(|s| s.to_string()).collect(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Params {
        Params::new(
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        )
    }

    #[test]
    fn typed_values_and_errors_name_the_parameter() {
        let ps = p(&[
            ("size", "10"),
            ("size", "20"),
            ("on", "yes"),
            ("idx", "a, b,,c"),
        ]);
        assert_eq!(ps.integer("size").unwrap(), Some(20));
        assert!(ps.boolean_or("on", false).unwrap());
        assert_eq!(ps.list("idx"), vec!["a", "b", "c"]);
        assert_eq!(
            ps.required("url").unwrap_err().to_string(),
            "parameter `url` is required"
        );
        let bad = p(&[("size", "ten")])
            .integer("size")
            .unwrap_err()
            .to_string();
        assert!(
            bad.starts_with("parameter `size`: invalid value \"ten\""),
            "{bad}"
        );
        let range = p(&[("n", "0")])
            .integer_in("n", 5, 1, 10)
            .unwrap_err()
            .to_string();
        assert!(range.contains("between 1 and 10"), "{range}");
        let unk = ps.reject_unknown(&["size", "on"]).unwrap_err().to_string();
        assert!(unk.contains("unknown parameter `idx`"), "{unk}");
    }
}
