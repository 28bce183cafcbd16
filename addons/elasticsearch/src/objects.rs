//! Cluster-level objects: legacy, composable and component templates, ILM policies, ingest
//! pipelines, security roles and role mappings. Each family is read with one GET, stripped of
//! what the stack manages itself, written as one `.cluster.<family>.json` file, and restored with
//! one PUT per object in dependency order.

use crate::error::{AddonError, Result};
use crate::es::{error_reason, get, Es};
use crate::files::encode_segment;
use crate::host::{Level, Method, Request};
use crate::meta::is_system_template;
use crate::names::object_name_problem;
use crate::parts::Part;
use serde_json::{json, Map, Value};

/// One family of cluster objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `_template`.
    LegacyTemplates,
    /// `_component_template`.
    ComponentTemplates,
    /// `_index_template`.
    IndexTemplates,
    /// `_ilm/policy`.
    IlmPolicies,
    /// `_ingest/pipeline`.
    IngestPipelines,
    /// `_security/role` and `_security/role_mapping`.
    Security,
}

impl Family {
    /// In restore order: pipelines and policies before the templates that name them,
    /// components before the index templates composed of them.
    pub const ALL: [Family; 6] = [
        Family::IngestPipelines,
        Family::IlmPolicies,
        Family::ComponentTemplates,
        Family::IndexTemplates,
        Family::LegacyTemplates,
        Family::Security,
    ];

    /// The `.cluster.<what>.json` name part.
    pub fn file_what(self) -> &'static str {
        match self {
            Family::LegacyTemplates => "legacy_templates",
            Family::ComponentTemplates => "component_templates",
            Family::IndexTemplates => "index_templates",
            Family::IlmPolicies => "ilm_policies",
            Family::IngestPipelines => "ingest_pipelines",
            Family::Security => "security",
        }
    }

    /// The family of a `.cluster.<what>.json` file.
    pub fn from_file_what(what: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.file_what() == what)
    }

    /// The part (`--ignoreType` name) it belongs to.
    pub fn part(self) -> Part {
        match self {
            Family::LegacyTemplates => Part::Template,
            Family::ComponentTemplates => Part::ComponentTemplate,
            Family::IndexTemplates => Part::IndexTemplate,
            Family::IlmPolicies => Part::Ilm,
            Family::IngestPipelines => Part::Pipeline,
            Family::Security => Part::Security,
        }
    }

    /// Label for logs and counts.
    pub fn label(self) -> &'static str {
        match self {
            Family::LegacyTemplates => "legacy template",
            Family::ComponentTemplates => "component template",
            Family::IndexTemplates => "index template",
            Family::IlmPolicies => "ILM policy",
            Family::IngestPipelines => "ingest pipeline",
            Family::Security => "security object",
        }
    }
}

/// Whether an object is managed by the stack (Elasticsearch recreates it; restoring it would at
/// best be redundant and at worst pin an old version).
pub fn is_managed(name: &str, body: &Value) -> bool {
    name.starts_with('.')
        || body.pointer("/_meta/managed") == Some(&Value::Bool(true))
        || body.pointer("/policy/_meta/managed") == Some(&Value::Bool(true))
        || body.pointer("/metadata/_reserved") == Some(&Value::Bool(true))
}

/// The objects of a family on the target, as `(name, body)` in name order, with the stack's own
/// objects removed. `Ok(None)` when the target has no such API (security disabled, OpenSearch).
pub fn fetch(es: &mut Es, family: Family) -> Result<Option<Vec<(String, Value)>>> {
    match family {
        Family::LegacyTemplates => {
            let v = es.ok_json(&get("/_template"))?;
            Ok(Some(filtered(object_entries(&v), |n, _| {
                is_system_template(n)
            })))
        }
        Family::ComponentTemplates | Family::IndexTemplates => {
            let (path, list, item) = if family == Family::IndexTemplates {
                ("/_index_template", "index_templates", "index_template")
            } else {
                (
                    "/_component_template",
                    "component_templates",
                    "component_template",
                )
            };
            let v = es.ok_json(&get(path))?;
            let entries = v
                .get(list)
                .and_then(Value::as_array)
                .ok_or_else(|| AddonError::Protocol {
                    what: format!("GET {path}"),
                    reason: format!("no {list:?} array"),
                })?
                .iter()
                .filter_map(|e| Some((e.get("name")?.as_str()?.to_string(), e.get(item)?.clone())))
                .collect();
            Ok(Some(filtered(entries, is_managed)))
        }
        Family::IlmPolicies => {
            let v = es.ok_json(&get("/_ilm/policy"))?;
            let entries = object_entries(&v)
                .into_iter()
                .map(|(n, e)| {
                    (
                        n,
                        json!({"policy": e.get("policy").cloned().unwrap_or(Value::Null)}),
                    )
                })
                .collect();
            Ok(Some(filtered(entries, is_managed)))
        }
        Family::IngestPipelines => {
            let req = get("/_ingest/pipeline");
            let r = es.send(&req)?;
            // No pipeline at all is a 404 with `{}`.
            if r.status == 404 {
                return Ok(Some(Vec::new()));
            }
            if !(200..300).contains(&r.status) {
                return Err(crate::es::remote_error(&req, &r));
            }
            let v = crate::es::parse_json(&req, &r.body)?;
            Ok(Some(filtered(object_entries(&v), is_managed)))
        }
        Family::Security => {
            let mut out = Vec::new();
            for (kind, path) in [
                ("role", "/_security/role"),
                ("role_mapping", "/_security/role_mapping"),
            ] {
                let req = get(path);
                let r = es.send(&req)?;
                if r.status == 404 {
                    continue;
                }
                if security_unavailable(r.status, &r.body) {
                    es.log(
                        Level::Info,
                        format!("{path}: the security API is not available on this cluster ({}); no roles to back up", error_reason(&r.body)),
                    );
                    return Ok(None);
                }
                if !(200..300).contains(&r.status) {
                    return Err(AddonError::Remote {
                        method: "GET".into(),
                        path: path.into(),
                        status: r.status,
                        reason: format!(
                            "{}; the backup user needs the read_security privilege, or pass --ignoreType=security",
                            error_reason(&r.body)
                        ),
                    });
                }
                let v = crate::es::parse_json(&req, &r.body)?;
                for (n, body) in filtered(object_entries(&v), is_managed) {
                    out.push((format!("{kind}/{n}"), body));
                }
            }
            Ok(Some(out))
        }
    }
}

/// Whether an answer says the security API is off (no handler, or security disabled).
fn security_unavailable(status: u16, body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    (status == 400 && text.contains("no handler found"))
        || text.contains("Security must be explicitly enabled")
        || (status == 500 && text.contains("security") && text.contains("not enabled"))
}

fn object_entries(v: &Value) -> Vec<(String, Value)> {
    v.as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

fn filtered(
    mut entries: Vec<(String, Value)>,
    skip: impl Fn(&str, &Value) -> bool,
) -> Vec<(String, Value)> {
    entries.retain(|(n, b)| !skip(n, b));
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries
}

/// The file content: one JSON object `{name: body}` (for security, `{"roles": …,
/// "role_mappings": …}`).
pub fn encode(family: Family, entries: &[(String, Value)]) -> Value {
    if family == Family::Security {
        let mut roles = Map::new();
        let mut mappings = Map::new();
        for (n, b) in entries {
            match n.split_once('/') {
                Some(("role", r)) => {
                    roles.insert(r.to_string(), b.clone());
                }
                Some((_, m)) => {
                    mappings.insert(m.to_string(), b.clone());
                }
                None => {}
            }
        }
        return json!({"roles": roles, "role_mappings": mappings});
    }
    Value::Object(entries.iter().cloned().collect())
}

/// The `(name, body)` pairs of a family's file, checked, in restore order.
pub fn decode(family: Family, file: &str, v: &Value) -> Result<Vec<(String, Value)>> {
    let bad = |reason: String| AddonError::Data {
        file: file.to_string(),
        reason,
    };
    let obj = v
        .as_object()
        .ok_or_else(|| bad("expected a JSON object".into()))?;
    let mut out = Vec::new();
    if family == Family::Security {
        for (key, kind) in [("roles", "role"), ("role_mappings", "role_mapping")] {
            if let Some(m) = obj.get(key) {
                let m = m
                    .as_object()
                    .ok_or_else(|| bad(format!("{key} is not an object")))?;
                for (n, b) in m {
                    out.push((format!("{kind}/{n}"), b.clone()));
                }
            }
        }
    } else {
        out.extend(obj.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    for (n, _) in &out {
        let plain = n.split_once('/').map_or(n.as_str(), |(_, r)| r);
        if let Some(p) = object_name_problem(plain) {
            return Err(bad(format!("{} name {n:?} {p}", family.label())));
        }
    }
    Ok(out)
}

/// `PUT` one object.
pub fn put(es: &mut Es, family: Family, name: &str, body: &Value) -> Result<()> {
    let path = match family {
        Family::LegacyTemplates => format!("/_template/{}", encode_segment(name)),
        Family::ComponentTemplates => format!("/_component_template/{}", encode_segment(name)),
        Family::IndexTemplates => format!("/_index_template/{}", encode_segment(name)),
        Family::IlmPolicies => format!("/_ilm/policy/{}", encode_segment(name)),
        Family::IngestPipelines => format!("/_ingest/pipeline/{}", encode_segment(name)),
        Family::Security => {
            let (kind, n) = name.split_once('/').unwrap_or(("role", name));
            format!("/_security/{kind}/{}", encode_segment(n))
        }
    };
    es.ok(&Request::json(Method::Put, path, body))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managed_objects_are_left_to_the_stack() {
        assert!(is_managed(".monitoring", &json!({})));
        assert!(is_managed("logs", &json!({"_meta": {"managed": true}})));
        assert!(is_managed(
            "7-days",
            &json!({"policy": {"_meta": {"managed": true}}})
        ));
        assert!(is_managed(
            "superuser",
            &json!({"metadata": {"_reserved": true}})
        ));
        assert!(!is_managed("mine", &json!({"_meta": {"owner": "me"}})));
    }

    #[test]
    fn files_round_trip_and_names_are_checked() {
        let e = vec![
            ("role/reader".to_string(), json!({"cluster": ["monitor"]})),
            (
                "role_mapping/ldap".to_string(),
                json!({"roles": ["reader"], "rules": {}}),
            ),
        ];
        let v = encode(Family::Security, &e);
        assert_eq!(decode(Family::Security, "f", &v).unwrap(), e);
        let bad = json!({"*": {"index_patterns": ["x"]}});
        assert!(decode(Family::LegacyTemplates, "f", &bad).is_err());
    }
}
