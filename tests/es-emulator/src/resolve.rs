//! Index expressions, as Elasticsearch's `IndexNameExpressionResolver` reads them: comma lists,
//! `*` wildcards, `-` exclusions after a wildcard, `_all`, aliases and data streams, under
//! `expand_wildcards`, `allow_no_indices` and `ignore_unavailable`.

use crate::error::{EsError, EsResult};
use crate::store::Store;
use crate::util::glob;

/// Which index states a wildcard expands to (`expand_wildcards`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Expand {
    /// `open`.
    pub open: bool,
    /// `closed`.
    pub closed: bool,
    /// `hidden`.
    pub hidden: bool,
}

impl Expand {
    /// Parses `open,closed,hidden,none,all`; an unknown value is a 400 like Elasticsearch's.
    pub fn parse(v: &str) -> EsResult<Expand> {
        let mut e = Expand::default();
        for w in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match w {
                "open" => e.open = true,
                "closed" => e.closed = true,
                "hidden" => e.hidden = true,
                "none" => {}
                "all" => {
                    e = Expand {
                        open: true,
                        closed: true,
                        hidden: true,
                    }
                }
                other => {
                    return Err(EsError::illegal_argument(format!(
                        "No enum constant org.elasticsearch.action.support.IndicesOptions.WildcardStates.{}",
                        other.to_uppercase()
                    )))
                }
            }
        }
        Ok(e)
    }
}

/// How an expression is resolved.
#[derive(Debug, Clone, Copy)]
pub struct Resolve {
    /// Missing (or, where forbidden, closed) concrete names are skipped rather than an error.
    pub ignore_unavailable: bool,
    /// An expression that resolves to nothing is fine (otherwise `index_not_found_exception`).
    pub allow_no_indices: bool,
    /// Index states wildcards expand to.
    pub expand: Expand,
    /// Alias names are expanded to their indices.
    pub aliases: bool,
    /// A closed index named explicitly is an `index_closed_exception` (searches, counts, PITs).
    pub forbid_closed: bool,
}

impl Default for Resolve {
    fn default() -> Self {
        Resolve {
            ignore_unavailable: false,
            allow_no_indices: true,
            expand: Expand {
                open: true,
                closed: false,
                hidden: false,
            },
            aliases: true,
            forbid_closed: false,
        }
    }
}

/// 400 `index_closed_exception` for `name`.
pub fn index_closed(name: &str, uuid: &str) -> EsError {
    EsError::new(400, "index_closed_exception", "closed")
        .with("index_uuid", uuid)
        .with("index", name)
}

impl Store {
    /// Which concrete indices `expr` names, in the order they were named (duplicates removed).
    pub fn resolve(&self, expr: &str, opts: Resolve) -> EsResult<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        let push = |n: &str, out: &mut Vec<String>| {
            if !out.iter().any(|x| x == n) {
                out.push(n.to_string());
            }
        };
        let items: Vec<&str> = expr
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let items = if items.is_empty() {
            vec!["_all"]
        } else {
            items
        };
        let mut seen_wildcard = false;
        for raw in items {
            if let Some(neg) = raw.strip_prefix('-').filter(|_| seen_wildcard) {
                out.retain(|n| !glob(neg, n));
                continue;
            }
            if raw == "_all" || raw.contains('*') {
                seen_wildcard = true;
                let pattern = if raw == "_all" { "*" } else { raw };
                let before = out.len();
                self.expand_wildcard(pattern, opts, &mut out);
                if out.len() == before && !opts.allow_no_indices && raw != "_all" {
                    return Err(EsError::index_not_found(raw));
                }
                continue;
            }
            if let Some(idx) = self.indices.get(raw) {
                if idx.closed && opts.forbid_closed {
                    if opts.ignore_unavailable {
                        continue;
                    }
                    return Err(index_closed(raw, &idx.uuid));
                }
                push(raw, &mut out);
                continue;
            }
            if let Some(ds) = self.data_streams.get(raw) {
                for b in &ds.indices {
                    push(b, &mut out);
                }
                continue;
            }
            let holders: Vec<&String> = if opts.aliases {
                self.indices
                    .iter()
                    .filter(|(_, i)| i.aliases.contains_key(raw))
                    .map(|(n, _)| n)
                    .collect()
            } else {
                Vec::new()
            };
            if holders.is_empty() {
                if !opts.ignore_unavailable {
                    return Err(EsError::index_not_found(raw));
                }
            } else {
                for h in holders {
                    if self.indices[h].closed && opts.forbid_closed {
                        continue;
                    }
                    push(h, &mut out);
                }
            }
        }
        if out.is_empty() && !opts.allow_no_indices {
            return Err(EsError::index_not_found(expr));
        }
        Ok(out)
    }

    fn expand_wildcard(&self, pattern: &str, opts: Resolve, out: &mut Vec<String>) {
        let e = opts.expand;
        // A hidden index (or data stream) matches only with `hidden`, or implicitly when both its
        // name and the pattern start with a dot.
        let visible = |name: &str, hidden: bool| {
            !hidden || e.hidden || (name.starts_with('.') && pattern.starts_with('.'))
        };
        let state_ok = |closed: bool| if closed { e.closed } else { e.open };
        let mut push = |n: &str| {
            if !out.iter().any(|x| x == n) {
                out.push(n.to_string());
            }
        };
        for (name, idx) in &self.indices {
            if glob(pattern, name) && visible(name, idx.hidden()) && state_ok(idx.closed) {
                push(name);
            }
        }
        for (name, ds) in &self.data_streams {
            if glob(pattern, name) && visible(name, ds.hidden) {
                for b in &ds.indices {
                    if self.indices.get(b).is_some_and(|i| state_ok(i.closed)) {
                        push(b);
                    }
                }
            }
        }
        if opts.aliases {
            for (name, idx) in &self.indices {
                let hit = idx.aliases.iter().any(|(a, def)| {
                    glob(pattern, a)
                        && visible(
                            a,
                            def.get("is_hidden") == Some(&serde_json::Value::Bool(true)),
                        )
                });
                if hit && state_ok(idx.closed) {
                    push(name);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn store() -> Store {
        let mut s = Store::new(1);
        for n in ["logs-a", "logs-b", "metrics", ".dot"] {
            s.create_index(n, &Value::Null).unwrap();
        }
        s.create_index("hid", &json!({"settings": {"index.hidden": true}}))
            .unwrap();
        s.indices.get_mut("logs-b").unwrap().closed = true;
        s.indices
            .get_mut("metrics")
            .unwrap()
            .aliases
            .insert("m".into(), json!({}));
        s
    }

    fn opts(expand: &str) -> Resolve {
        Resolve {
            expand: Expand::parse(expand).unwrap(),
            ..Resolve::default()
        }
    }

    #[test]
    fn wildcards_follow_expand_wildcards() {
        let s = store();
        assert_eq!(s.resolve("logs-*", opts("open")).unwrap(), ["logs-a"]);
        assert_eq!(
            s.resolve("logs-*", opts("open,closed")).unwrap(),
            ["logs-a", "logs-b"]
        );
        assert!(!s
            .resolve("*", opts("open"))
            .unwrap()
            .contains(&"hid".into()));
        assert!(s.resolve("*", opts("all")).unwrap().contains(&"hid".into()));
        assert!(s
            .resolve("*", opts("open"))
            .unwrap()
            .contains(&".dot".into()));
        assert_eq!(
            s.resolve("*,-logs-*", opts("open")).unwrap(),
            [".dot", "metrics"]
        );
        assert!(Expand::parse("bogus").is_err());
    }

    #[test]
    fn concrete_names_aliases_and_unavailable() {
        let s = store();
        assert_eq!(s.resolve("m", opts("open")).unwrap(), ["metrics"]);
        let e = s.resolve("nope", opts("open")).unwrap_err();
        assert_eq!(e.kind, "index_not_found_exception");
        let mut o = opts("open");
        o.ignore_unavailable = true;
        assert_eq!(s.resolve("nope,logs-a", o).unwrap(), ["logs-a"]);
        o.forbid_closed = true;
        o.ignore_unavailable = false;
        assert_eq!(
            s.resolve("logs-b", o).unwrap_err().kind,
            "index_closed_exception"
        );
        o.allow_no_indices = false;
        assert_eq!(
            s.resolve("zz*", o).unwrap_err().kind,
            "index_not_found_exception"
        );
        assert_eq!(
            s.resolve("-logs-a", opts("open")).unwrap_err().kind,
            "index_not_found_exception",
            "a leading '-' without a wildcard before it is a name"
        );
    }
}
