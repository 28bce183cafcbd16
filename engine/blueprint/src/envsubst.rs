//! `${var}` substitution in one string, with the forms of `gomodules.xyz/envsubst` that the
//! spec (§2.3) lists. Applied to one string value at a time; substituted text is never
//! re-scanned, so a value containing `${…}`, quotes, backslashes or newlines stays literal.
//!
//! Forms: `${v}`, `${v:=def}`, `${v:-def}`, `${v=def}` (default when `v` is absent; a present
//! but empty value is used as is, like `EvalMap`), `${#v}` (length in characters), `${v^^}`,
//! `${v,,}`, `${v^}`, `${v,}` (case), `${v:n}`, `${v:n:len}` (substring in characters,
//! clamped), `${v#p}`, `${v##p}` (strip literal prefix), `${v%p}`, `${v%%p}` (strip literal
//! suffix), `${v/p/r}`, `${v//p/r}`, `${v/#p/r}`, `${v/%p/r}` (literal replace: first, all,
//! prefix, suffix). `$${` is a literal `${`. A lone `$` is literal.
//! Unsupported (an error naming the form): `${v-def}`, `${v+x}`, `${v:?x}`, `${v:+x}`, `${v?x}`.
//! Defaults and patterns are literal text (no nested expansion).

use std::collections::BTreeMap;

/// A substitution error inside one string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubstError {
    /// `${v}` without a value and without a default.
    #[error("variable {variable:?} has no value and no default")]
    Missing {
        /// Variable name.
        variable: String,
    },
    /// A form KubeStash's envsubst does not support.
    #[error("unsupported substitution form {form:?} in {expression:?}")]
    Unsupported {
        /// The operator, e.g. `:?`.
        form: String,
        /// The whole `${…}` expression.
        expression: String,
    },
    /// Not a valid `${…}` expression (unterminated, bad name, bad number).
    #[error("invalid substitution {expression:?}: {reason}")]
    Invalid {
        /// The expression text.
        expression: String,
        /// What is wrong.
        reason: String,
    },
}

/// The variables of one rendering (`variables.kubestash.com/<name>` → value).
pub type Vars = BTreeMap<String, String>;

/// Whether `s` contains a `${` that [`substitute`] would expand.
pub fn has_expression(s: &str) -> bool {
    let b = s.as_bytes();
    (0..b.len().saturating_sub(1))
        .any(|i| b[i] == b'$' && b[i + 1] == b'{' && (i == 0 || b[i - 1] != b'$'))
}

/// Expands every `${…}` of `input` with `vars`.
pub fn substitute(input: &str, vars: &Vars) -> Result<String, SubstError> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if after.starts_with("${") {
            let Some(end) = after.find('}') else {
                return Err(SubstError::Invalid {
                    expression: after.to_string(),
                    reason: "missing closing '}'".into(),
                });
            };
            let expr = &after[..=end];
            out.push_str(&eval(&after[2..end], expr, vars)?);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn invalid(expr: &str, reason: &str) -> SubstError {
    SubstError::Invalid {
        expression: expr.to_string(),
        reason: reason.to_string(),
    }
}

/// Evaluates the body of `${body}`; `expr` is the whole expression for messages.
fn eval(body: &str, expr: &str, vars: &Vars) -> Result<String, SubstError> {
    if let Some(name) = body.strip_prefix('#') {
        check_name(name, expr)?;
        return Ok(value(name, vars)?.chars().count().to_string());
    }
    let name_len = body
        .char_indices()
        .find(|&(i, c)| {
            !(if i == 0 {
                is_name_start(c)
            } else {
                is_name_char(c)
            })
        })
        .map(|(i, _)| i)
        .unwrap_or(body.len());
    let (name, op) = body.split_at(name_len);
    if name.is_empty() {
        return Err(invalid(expr, "expected a variable name after '${'"));
    }
    if op.is_empty() {
        return value(name, vars);
    }
    for (form, unsupported) in [(":?", true), (":+", true), (":=", false), (":-", false)] {
        if let Some(def) = op.strip_prefix(form) {
            if unsupported {
                return Err(SubstError::Unsupported {
                    form: form.into(),
                    expression: expr.into(),
                });
            }
            return Ok(vars.get(name).cloned().unwrap_or_else(|| def.to_string()));
        }
    }
    if let Some(def) = op.strip_prefix('=') {
        return Ok(vars.get(name).cloned().unwrap_or_else(|| def.to_string()));
    }
    for form in ["-", "+", "?"] {
        if op.starts_with(form) {
            return Err(SubstError::Unsupported {
                form: form.into(),
                expression: expr.into(),
            });
        }
    }
    let v = value(name, vars)?;
    if let Some(spec) = op.strip_prefix(':') {
        return substring(&v, spec, expr);
    }
    match op {
        "^^" => return Ok(v.to_uppercase()),
        ",," => return Ok(v.to_lowercase()),
        "^" => return Ok(first_char(&v, true)),
        "," => return Ok(first_char(&v, false)),
        _ => {}
    }
    if let Some(p) = op.strip_prefix("##").or_else(|| op.strip_prefix('#')) {
        return Ok(v.strip_prefix(p).unwrap_or(&v).to_string());
    }
    if let Some(p) = op.strip_prefix("%%").or_else(|| op.strip_prefix('%')) {
        return Ok(v.strip_suffix(p).unwrap_or(&v).to_string());
    }
    if let Some(spec) = op.strip_prefix('/') {
        return replace(&v, spec);
    }
    Err(SubstError::Unsupported {
        form: op.chars().take(2).collect(),
        expression: expr.into(),
    })
}

fn check_name(name: &str, expr: &str) -> Result<(), SubstError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(is_name_start) && chars.all(is_name_char);
    if ok {
        Ok(())
    } else {
        Err(invalid(expr, "invalid variable name"))
    }
}

fn value(name: &str, vars: &Vars) -> Result<String, SubstError> {
    vars.get(name).cloned().ok_or_else(|| SubstError::Missing {
        variable: name.to_string(),
    })
}

fn first_char(v: &str, upper: bool) -> String {
    let mut chars = v.chars();
    match chars.next() {
        Some(c) => {
            let first: String = if upper {
                c.to_uppercase().collect()
            } else {
                c.to_lowercase().collect()
            };
            first + chars.as_str()
        }
        None => String::new(),
    }
}

fn substring(v: &str, spec: &str, expr: &str) -> Result<String, SubstError> {
    let (start, len) = match spec.split_once(':') {
        Some((s, l)) => (s, Some(l)),
        None => (spec, None),
    };
    let parse = |s: &str| -> Result<i64, SubstError> {
        s.trim()
            .parse::<i64>()
            .map_err(|_| invalid(expr, &format!("{s:?} is not an integer offset/length")))
    };
    let chars: Vec<char> = v.chars().collect();
    let n = chars.len() as i64;
    let mut from = parse(start)?;
    if from < 0 {
        from += n;
    }
    let from = from.clamp(0, n);
    let to = match len {
        Some(l) => {
            let l = parse(l)?;
            if l < 0 {
                (n + l).max(from)
            } else {
                (from + l).min(n)
            }
        }
        None => n,
    };
    Ok(chars[from as usize..to as usize].iter().collect())
}

fn replace(v: &str, spec: &str) -> Result<String, SubstError> {
    enum Mode {
        First,
        All,
        Prefix,
        Suffix,
    }
    let (mode, spec) = if let Some(s) = spec.strip_prefix('/') {
        (Mode::All, s)
    } else if let Some(s) = spec.strip_prefix('#') {
        (Mode::Prefix, s)
    } else if let Some(s) = spec.strip_prefix('%') {
        (Mode::Suffix, s)
    } else {
        (Mode::First, spec)
    };
    let (pat, rep) = spec.split_once('/').unwrap_or((spec, ""));
    if pat.is_empty() {
        return Ok(v.to_string());
    }
    Ok(match mode {
        Mode::First => v.replacen(pat, rep, 1),
        Mode::All => v.replace(pat, rep),
        Mode::Prefix => match v.strip_prefix(pat) {
            Some(r) => format!("{rep}{r}"),
            None => v.to_string(),
        },
        Mode::Suffix => match v.strip_suffix(pat) {
            Some(r) => format!("{r}{rep}"),
            None => v.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        [
            ("schedule", "*/5 * * * *"),
            ("repoName", "s3-elasticsearch-repo"),
            ("empty", ""),
            ("evil", "a\"b\\c\n${schedule}"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn s(input: &str) -> Result<String, SubstError> {
        substitute(input, &vars())
    }

    #[test]
    fn plain_and_defaults() {
        assert_eq!(s("${schedule}").unwrap(), "*/5 * * * *");
        assert_eq!(s("x-${repoName}-y").unwrap(), "x-s3-elasticsearch-repo-y");
        assert_eq!(s("${nope:=d}").unwrap(), "d");
        assert_eq!(s("${nope:-d}").unwrap(), "d");
        assert_eq!(s("${nope=d}").unwrap(), "d");
        assert_eq!(s("${repoName:-d}").unwrap(), "s3-elasticsearch-repo");
        // EvalMap: a present key wins even when empty.
        assert_eq!(s("${empty:-d}").unwrap(), "");
        assert_eq!(s("${nope:=}").unwrap(), "");
        assert_eq!(
            s("${nope}").unwrap_err(),
            SubstError::Missing {
                variable: "nope".into()
            }
        );
    }

    #[test]
    fn string_functions() {
        assert_eq!(s("${#repoName}").unwrap(), "21");
        assert_eq!(s("${repoName^^}").unwrap(), "S3-ELASTICSEARCH-REPO");
        assert_eq!(s("${repoName^}").unwrap(), "S3-elasticsearch-repo");
        assert_eq!(s("${repoName,,}").unwrap(), "s3-elasticsearch-repo");
        assert_eq!(s("${repoName:3}").unwrap(), "elasticsearch-repo");
        assert_eq!(s("${repoName:3:7}").unwrap(), "elastic");
        assert_eq!(s("${repoName:-4}").unwrap(), "s3-elasticsearch-repo"); // `:-` default form
        assert_eq!(s("${repoName: -4}").unwrap(), "repo");
        assert_eq!(s("${repoName:100}").unwrap(), "");
        assert_eq!(s("${repoName#s3-}").unwrap(), "elasticsearch-repo");
        assert_eq!(s("${repoName##x}").unwrap(), "s3-elasticsearch-repo");
        assert_eq!(s("${repoName%-repo}").unwrap(), "s3-elasticsearch");
        assert_eq!(s("${repoName/e/E}").unwrap(), "s3-Elasticsearch-repo");
        assert_eq!(s("${repoName//e/E}").unwrap(), "s3-ElasticsEarch-rEpo");
        assert_eq!(s("${repoName/#s3/gcs}").unwrap(), "gcs-elasticsearch-repo");
        assert_eq!(s("${repoName/%repo/r}").unwrap(), "s3-elasticsearch-r");
    }

    #[test]
    fn unsupported_forms_are_named() {
        for (input, form) in [
            ("${v-def}", "-"),
            ("${v+x}", "+"),
            ("${v:?x}", ":?"),
            ("${v:+x}", ":+"),
        ] {
            match s(input) {
                Err(SubstError::Unsupported { form: f, .. }) => assert_eq!(f, form, "{input}"),
                other => panic!("{input}: {other:?}"),
            }
        }
        assert!(matches!(s("${schedule"), Err(SubstError::Invalid { .. })));
        assert!(matches!(s("${}"), Err(SubstError::Invalid { .. })));
        assert!(matches!(s("${#}"), Err(SubstError::Invalid { .. })));
    }

    #[test]
    fn values_are_never_rescanned() {
        assert_eq!(s("${evil}").unwrap(), "a\"b\\c\n${schedule}");
        assert_eq!(s("$${schedule}").unwrap(), "${schedule}");
        assert_eq!(s("cost $5 ^$").unwrap(), "cost $5 ^$");
        assert!(has_expression("a ${b}"));
        assert!(!has_expression("a $${b}"));
        assert!(!has_expression("a $b"));
    }
}
