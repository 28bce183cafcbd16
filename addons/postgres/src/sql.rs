//! Quoting of literals and identifiers for statements the addon builds itself. Catalog names
//! are quoted by the server (`quote_ident`, `format('%I')`) in the catalog queries; these helpers
//! cover values that come from parameters or from scripts.

/// A string literal for a server with `standard_conforming_strings = on` (the default since
/// PostgreSQL 9.1, and the setting every dump script sets): `'…'` with `'` doubled. NUL bytes
/// cannot occur in PostgreSQL text.
pub fn literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// An identifier, always double-quoted (`"` doubled): valid for any name, keyword or not.
pub fn ident(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A `-- …` comment line's text with line breaks flattened.
pub fn comment_text(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// The first `max` characters of a statement on one line, for error messages.
pub fn excerpt(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        let cut: String = flat.chars().take(max).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal(r"a\b"), r"'a\b'");
        assert_eq!(ident("We\"ird"), "\"We\"\"ird\"");
        assert_eq!(excerpt("CREATE  TABLE\n t (a int)", 12), "CREATE TABLE…");
    }
}
