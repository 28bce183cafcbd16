//! Privileges: parses `aclitem[]` text and writes the `REVOKE`/`GRANT` statements that recreate
//! the same array (same entries, same order, same grantors).

use crate::sql::ident;

/// One `aclitem`: `grantee=privs/grantor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclItem {
    /// The grantee; `None` is PUBLIC.
    pub grantee: Option<String>,
    /// The grantor.
    pub grantor: String,
    /// Privilege letters without grant option.
    pub plain: Vec<char>,
    /// Privilege letters with grant option.
    pub grantable: Vec<char>,
}

fn privilege_name(c: char) -> Option<&'static str> {
    Some(match c {
        'r' => "SELECT",
        'w' => "UPDATE",
        'a' => "INSERT",
        'd' => "DELETE",
        'D' => "TRUNCATE",
        'x' => "REFERENCES",
        't' => "TRIGGER",
        'X' => "EXECUTE",
        'U' => "USAGE",
        'C' => "CREATE",
        'c' => "CONNECT",
        'T' => "TEMPORARY",
        'm' => "MAINTAIN",
        's' => "SET",
        'A' => "ALTER SYSTEM",
        _ => return None,
    })
}

/// Reads a role name as `aclitem` output writes it (double-quoted when needed).
fn read_name(s: &[char], pos: &mut usize, stop: char) -> String {
    let mut out = String::new();
    if s.get(*pos) == Some(&'"') {
        *pos += 1;
        while *pos < s.len() {
            let c = s[*pos];
            *pos += 1;
            if c == '"' {
                if s.get(*pos) == Some(&'"') {
                    out.push('"');
                    *pos += 1;
                } else {
                    break;
                }
            } else {
                out.push(c);
            }
        }
    } else {
        while *pos < s.len() && s[*pos] != stop {
            out.push(s[*pos]);
            *pos += 1;
        }
    }
    out
}

/// Parses the text of an `aclitem[]` (`{alice=arw/alice,=r/alice}`).
pub fn parse(acl: &str) -> Vec<AclItem> {
    let inner = acl.trim().trim_start_matches('{').trim_end_matches('}');
    let chars: Vec<char> = inner.chars().collect();
    let mut items = Vec::new();
    let mut pos = 0;
    while pos < chars.len() {
        // Array elements containing special characters are themselves double-quoted, with
        // backslash escapes; unwrap that layer first.
        let element: Vec<char> = if chars[pos] == '"' {
            pos += 1;
            let mut e = Vec::new();
            while pos < chars.len() && chars[pos] != '"' {
                if chars[pos] == '\\' && pos + 1 < chars.len() {
                    pos += 1;
                }
                e.push(chars[pos]);
                pos += 1;
            }
            pos += 1;
            e
        } else {
            let start = pos;
            while pos < chars.len() && chars[pos] != ',' {
                pos += 1;
            }
            chars[start..pos].to_vec()
        };
        if pos < chars.len() && chars[pos] == ',' {
            pos += 1;
        }
        let mut p = 0;
        let grantee = read_name(&element, &mut p, '=');
        p += 1; // '='
        let mut plain = Vec::new();
        let mut grantable = Vec::new();
        while p < element.len() && element[p] != '/' {
            let c = element[p];
            p += 1;
            if element.get(p) == Some(&'*') {
                p += 1;
                grantable.push(c);
            } else {
                plain.push(c);
            }
        }
        p += 1; // '/'
        let grantor = read_name(&element, &mut p, ',');
        items.push(AclItem {
            grantee: if grantee.is_empty() {
                None
            } else {
                Some(grantee)
            },
            grantor,
            plain,
            grantable,
        });
    }
    items
}

fn names(privs: &[char], column: Option<&str>) -> String {
    let list: Vec<String> = privs
        .iter()
        .filter_map(|&c| privilege_name(c))
        .map(|p| match column {
            Some(col) => format!("{p}({col})"),
            None => p.to_string(),
        })
        .collect();
    list.join(",")
}

/// The statements that give `object` (e.g. `TABLE public.t`, owned by `owner`) the privileges
/// `acl`. For a column (`column` = its quoted name) only GRANTs are written: a column's ACL
/// starts empty. `owner` is the unquoted owner name.
pub fn statements(object: &str, owner: &str, acl: &str, column: Option<&str>) -> String {
    let items = parse(acl);
    let mut out = String::new();
    if column.is_none() {
        out.push_str(&format!("REVOKE ALL ON {object} FROM PUBLIC;\n"));
        out.push_str(&format!("REVOKE ALL ON {object} FROM {};\n", ident(owner)));
    }
    for it in &items {
        let to = match &it.grantee {
            Some(g) => ident(g),
            None => "PUBLIC".to_string(),
        };
        let as_other = it.grantor != owner;
        if as_other {
            out.push_str(&format!(
                "SET SESSION AUTHORIZATION {};\n",
                ident(&it.grantor)
            ));
        }
        if !it.plain.is_empty() {
            out.push_str(&format!(
                "GRANT {} ON {object} TO {to};\n",
                names(&it.plain, column)
            ));
        }
        if !it.grantable.is_empty() {
            out.push_str(&format!(
                "GRANT {} ON {object} TO {to} WITH GRANT OPTION;\n",
                names(&it.grantable, column)
            ));
        }
        if as_other {
            out.push_str("RESET SESSION AUTHORIZATION;\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_public_quoted_and_grant_options() {
        let items = parse(r#"{alice=arwdDxt/alice,=r/alice,"\"we ird\"=r*w/alice"}"#);
        assert_eq!(items.len(), 3);
        assert_eq!(items[1].grantee, None);
        assert_eq!(items[2].grantee.as_deref(), Some("we ird"));
        assert_eq!(items[2].grantable, vec!['r']);
        assert_eq!(items[2].plain, vec!['w']);
    }

    #[test]
    fn writes_revoke_then_grants() {
        let s = statements(
            "TABLE public.t",
            "alice",
            "{alice=arwdDxt/alice,bob=r/alice}",
            None,
        );
        assert_eq!(
            s,
            "REVOKE ALL ON TABLE public.t FROM PUBLIC;\nREVOKE ALL ON TABLE public.t FROM \"alice\";\n\
             GRANT INSERT,SELECT,UPDATE,DELETE,TRUNCATE,REFERENCES,TRIGGER ON TABLE public.t TO \"alice\";\n\
             GRANT SELECT ON TABLE public.t TO \"bob\";\n"
        );
        let c = statements("TABLE public.t", "alice", "{bob=r/alice}", Some("\"c\""));
        assert_eq!(c, "GRANT SELECT(\"c\") ON TABLE public.t TO \"bob\";\n");
    }
}
