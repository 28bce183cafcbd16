//! `--match`: a JavaScript-style regular expression, case-insensitive, with lookaround.
//!
//! multielasticdump builds `new RegExp(match, 'i')` and keeps an index when the regex matches
//! its name *or* any of its alias names (`regex.test`, i.e. an unanchored search).

use fancy_regex::{Error as ReError, RegexBuilder};

/// KubeStash's default `--match` (Addon parameter `args`).
pub const KUBESTASH_DEFAULT_MATCH: &str = "^(?![.])(?!apm-agent-configuration)(?!kubedb-system).+";

/// A compiled `--match` expression.
#[derive(Debug, Clone)]
pub struct IndexMatcher {
    re: fancy_regex::Regex,
    source: String,
}

impl IndexMatcher {
    /// Compile `pattern` case-insensitively. Errors name the position when the parser knows it.
    pub fn new(pattern: &str) -> Result<Self, String> {
        if pattern.is_empty() {
            return Err("empty regular expression".to_string());
        }
        let re = RegexBuilder::new(pattern)
            .case_insensitive(true)
            .build()
            .map_err(|e| describe_error(pattern, e))?;
        Ok(IndexMatcher {
            re,
            source: pattern.to_string(),
        })
    }

    /// The pattern as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// True when the pattern matches somewhere in `name` (JS `RegExp.test`).
    pub fn is_match(&self, name: &str) -> bool {
        // A runtime error (backtrack limit) counts as no match; names are short.
        self.re.is_match(name).unwrap_or(false)
    }

    /// multielasticdump's selection: the index name or one of its aliases matches.
    pub fn selects<'a>(&self, index: &str, aliases: impl IntoIterator<Item = &'a str>) -> bool {
        self.is_match(index) || aliases.into_iter().any(|a| self.is_match(a))
    }
}

fn describe_error(pattern: &str, e: ReError) -> String {
    match e {
        ReError::ParseError(pos, kind) => {
            let pos = pos.min(pattern.len());
            format!(
                "invalid regular expression at position {pos} (near {:?}): {kind}",
                &pattern[floor_char_boundary(pattern, pos)..]
            )
        }
        other => format!("invalid regular expression: {other}"),
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubestash_default_excludes_system_and_kubedb_indices() {
        let m = IndexMatcher::new(KUBESTASH_DEFAULT_MATCH).unwrap();
        // Examples from es-backup-format.md §1.3.
        for kept in [
            "products",
            "logs-2024",
            "my-hidden-but-not-dotted",
            "apm-other",
        ] {
            assert!(m.is_match(kept), "{kept} must be selected");
        }
        for dropped in [
            ".kibana_1",
            ".security-7",
            ".ds-logs-2024",
            ".tasks",
            "apm-agent-configuration",
            "kubedb-system",
            "KUBEDB-SYSTEM-x",
        ] {
            assert!(!m.is_match(dropped), "{dropped} must not be selected");
        }
    }

    #[test]
    fn case_insensitive_and_unanchored_like_js_test() {
        let m = IndexMatcher::new("logs").unwrap();
        assert!(m.is_match("my-LOGS-1"));
        assert!(!m.is_match("metrics"));
    }

    #[test]
    fn alias_match_selects_index() {
        let m = IndexMatcher::new("^current$").unwrap();
        assert!(m.selects("events-000001", ["current"]));
        assert!(!m.selects("events-000001", ["old"]));
    }

    #[test]
    fn bad_regex_reports_position() {
        let err = IndexMatcher::new("^(?![.]foo").unwrap_err();
        assert!(err.contains("position"), "{err}");
        let err = IndexMatcher::new("abc)").unwrap_err();
        assert!(err.contains("position 3"), "{err}");
        assert!(IndexMatcher::new("").is_err());
    }
}
