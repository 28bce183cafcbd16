//! Cluster-level objects: `_cluster/settings`, ILM policies, ingest pipelines, and the security
//! API's roles, role mappings and users.

use serde_json::{json, Map, Value};

use super::{Api, Reply, Request};
use crate::error::{EsError, EsResult};
use crate::settings::{self, FlatSettings};
use crate::store::IlmPolicy;
use crate::util::{glob, now_millis};

/// Setting prefixes `PUT _cluster/settings` accepts (a representative part of Elasticsearch's
/// registered cluster settings).
const KNOWN_CLUSTER_SETTINGS: &[&str] = &[
    "action.destructive_requires_name",
    "action.auto_create_index",
    "cluster.routing.",
    "cluster.max_shards_per_node",
    "cluster.info.update.interval",
    "cluster.blocks.",
    "cluster.indices.close.enable",
    "indices.recovery.",
    "indices.breaker.",
    "indices.lifecycle.",
    "indices.id_field_data.enabled",
    "search.max_keep_alive",
    "search.default_keep_alive",
    "search.max_open_scroll_context",
    "search.default_search_timeout",
    "search.allow_expensive_queries",
    "logger.",
    "ingest.geoip.downloader.enabled",
    "script.max_compilations_rate",
    "xpack.monitoring.collection.enabled",
];

fn render(flat: &FlatSettings, flat_form: bool) -> Value {
    if flat_form {
        Value::Object(flat.clone().into_iter().collect())
    } else {
        settings::nest(flat)
    }
}

/// `GET /_cluster/settings`.
pub fn get_settings(api: &Api, req: &Request) -> EsResult<Reply> {
    let store = api.store();
    let flat = req.flag("flat_settings");
    let cs = &store.cluster_settings;
    let mut out = json!({
        "persistent": render(&cs.persistent, flat),
        "transient": render(&cs.transient, flat),
    });
    if req.flag("include_defaults") {
        let defaults: FlatSettings = [
            ("action.destructive_requires_name", "true"),
            ("cluster.max_shards_per_node", "1000"),
            ("search.max_keep_alive", "24h"),
            ("search.max_open_scroll_context", "500"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
        out["defaults"] = render(&defaults, flat);
    }
    Ok(Reply::ok(out))
}

fn cluster_flatten(v: &Value) -> EsResult<(FlatSettings, Vec<String>)> {
    let mut flat = FlatSettings::new();
    let mut resets = Vec::new();
    fn walk(prefix: &str, v: &Value, flat: &mut FlatSettings, resets: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, x, flat, resets);
                }
            }
            Value::Null => resets.push(prefix.to_string()),
            Value::String(s) => {
                flat.insert(prefix.to_string(), json!(s));
            }
            other => {
                flat.insert(prefix.to_string(), json!(other.to_string()));
            }
        }
    }
    if !v.is_null() && !v.is_object() {
        return Err(EsError::illegal_argument("settings must be an object"));
    }
    walk("", v, &mut flat, &mut resets);
    Ok((flat, resets))
}

/// `PUT /_cluster/settings`.
pub fn put_settings(api: &Api, req: &Request) -> EsResult<Reply> {
    let body = req.json()?;
    let Some(obj) = body.as_object() else {
        return Err(EsError::validation("no settings to update"));
    };
    for k in obj.keys() {
        if k != "persistent" && k != "transient" {
            return Err(EsError::parsing(format!(
                "[cluster_update_settings_request] unknown field [{k}]"
            )));
        }
    }
    let (p, p_reset) = cluster_flatten(obj.get("persistent").unwrap_or(&Value::Null))?;
    let (t, t_reset) = cluster_flatten(obj.get("transient").unwrap_or(&Value::Null))?;
    if p.is_empty() && t.is_empty() && p_reset.is_empty() && t_reset.is_empty() {
        return Err(EsError::validation("no settings to update"));
    }
    for (scope, keys) in [
        ("persistent", p.keys().chain(&p_reset)),
        ("transient", t.keys().chain(&t_reset)),
    ] {
        for k in keys {
            let known = KNOWN_CLUSTER_SETTINGS.iter().any(|s| {
                if s.ends_with('.') {
                    k.starts_with(s)
                } else {
                    k == s
                }
            });
            if !known {
                return Err(EsError::illegal_argument(format!(
                    "{scope} setting [{k}], not recognized"
                )));
            }
        }
    }
    let mut store = api.store_mut();
    let cs = &mut store.cluster_settings;
    for r in &p_reset {
        cs.persistent.retain(|k, _| !glob(r, k));
    }
    for r in &t_reset {
        cs.transient.retain(|k, _| !glob(r, k));
    }
    cs.persistent.extend(p.clone());
    cs.transient.extend(t.clone());
    Ok(Reply::ok(json!({
        "acknowledged": true,
        "persistent": settings::nest(&p),
        "transient": settings::nest(&t),
    })))
}

/// `GET /_ilm/policy[/<name>]`.
pub fn get_ilm(api: &Api, name: Option<&str>) -> EsResult<Reply> {
    let store = api.store();
    let mut out = Map::new();
    for (n, p) in &store.ilm_policies {
        if name.is_some_and(|want| !want.split(',').any(|w| w == "_all" || glob(w, n))) {
            continue;
        }
        let indices: Vec<&String> = store
            .indices
            .iter()
            .filter(|(_, i)| i.settings.get("index.lifecycle.name") == Some(&json!(n)))
            .map(|(k, _)| k)
            .collect();
        let streams: Vec<&String> = store
            .data_streams
            .iter()
            .filter(|(_, d)| d.indices.iter().any(|b| indices.contains(&b)))
            .map(|(k, _)| k)
            .collect();
        let templates: Vec<&String> = store
            .index_templates
            .iter()
            .filter(|(_, t)| {
                t.pointer("/template/settings/index/lifecycle/name") == Some(&json!(n))
                    || t.pointer("/template/settings/index.lifecycle.name") == Some(&json!(n))
            })
            .map(|(k, _)| k)
            .collect();
        out.insert(
            n.clone(),
            json!({
                "version": p.version,
                "modified_date": iso_at(p.modified_ms),
                "policy": p.policy,
                "in_use_by": {"indices": indices, "data_streams": streams, "composable_templates": templates}
            }),
        );
    }
    if let Some(n) = name.filter(|n| !n.contains('*') && *n != "_all") {
        if out.is_empty() {
            return Err(EsError::new(
                404,
                "resource_not_found_exception",
                format!("Lifecycle policy not found: {n}"),
            ));
        }
    }
    Ok(Reply::ok(Value::Object(out)))
}

fn iso_at(ms: u64) -> String {
    let date = crate::datastreams::date_stamp(ms).replace('.', "-");
    let t = (ms / 1000) % 86_400;
    format!(
        "{date}T{:02}:{:02}:{:02}.{:03}Z",
        t / 3600,
        (t / 60) % 60,
        t % 60,
        ms % 1000
    )
}

const PHASES: &[&str] = &["hot", "warm", "cold", "frozen", "delete"];

/// `PUT /_ilm/policy/<name>`.
pub fn put_ilm(api: &Api, req: &Request, name: &str) -> EsResult<Reply> {
    let body = req.json()?;
    let policy = body
        .get("policy")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            EsError::new(
                400,
                "x_content_parse_exception",
                "[1:1] [put_lifecycle_request] policy doesn't support values of type: VALUE_NULL",
            )
        })?;
    for k in policy.keys() {
        if !matches!(k.as_str(), "phases" | "_meta") {
            return Err(EsError::new(
                400,
                "x_content_parse_exception",
                format!("[1:2] [lifecycle_policy] unknown field [{k}]"),
            ));
        }
    }
    if let Some(phases) = policy.get("phases").and_then(Value::as_object) {
        for p in phases.keys() {
            if !PHASES.contains(&p.as_str()) {
                return Err(EsError::illegal_argument(format!(
                    "Timeseries lifecycle does not support phase [{p}]"
                )));
            }
        }
    }
    let mut store = api.store_mut();
    let version = store.ilm_policies.get(name).map_or(1, |p| p.version + 1);
    store.ilm_policies.insert(
        name.to_string(),
        IlmPolicy {
            policy: Value::Object(policy.clone()),
            version,
            modified_ms: now_millis(),
        },
    );
    Ok(Reply::ack())
}

/// `DELETE /_ilm/policy/<name>`.
pub fn delete_ilm(api: &Api, name: &str) -> EsResult<Reply> {
    let mut store = api.store_mut();
    if !store.ilm_policies.contains_key(name) {
        return Err(EsError::new(
            404,
            "resource_not_found_exception",
            format!("Lifecycle policy not found: {name}"),
        ));
    }
    let users: Vec<&String> = store
        .indices
        .iter()
        .filter(|(_, i)| i.settings.get("index.lifecycle.name") == Some(&json!(name)))
        .map(|(k, _)| k)
        .collect();
    if !users.is_empty() {
        return Err(EsError::illegal_argument(format!(
            "Cannot delete policy [{name}]. It is in use by one or more indices: [{}]",
            users
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    store.ilm_policies.remove(name);
    Ok(Reply::ack())
}

/// `GET /_ingest/pipeline[/<id>]`; a missing id is a 404 with `{}`, as in Elasticsearch.
pub fn get_pipeline(api: &Api, id: Option<&str>) -> EsResult<Reply> {
    let store = api.store();
    let out: Map<String, Value> = store
        .pipelines
        .iter()
        .filter(|(k, _)| id.is_none_or(|want| want.split(',').any(|w| w == "_all" || glob(w, k))))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if out.is_empty() && id.is_some() {
        return Ok(Reply::status(404, json!({})));
    }
    Ok(Reply::ok(Value::Object(out)))
}

/// `PUT /_ingest/pipeline/<id>`.
pub fn put_pipeline(api: &Api, req: &Request, id: &str) -> EsResult<Reply> {
    let body = req.json()?;
    crate::ingest::validate(id, &body)?;
    api.store_mut().pipelines.insert(id.to_string(), body);
    Ok(Reply::ack())
}

/// `DELETE /_ingest/pipeline/<id>`.
pub fn delete_pipeline(api: &Api, id: &str) -> EsResult<Reply> {
    let mut store = api.store_mut();
    let doomed: Vec<String> = store
        .pipelines
        .keys()
        .filter(|k| glob(id, k))
        .cloned()
        .collect();
    if doomed.is_empty() {
        return Err(EsError::new(
            404,
            "resource_not_found_exception",
            format!("pipeline [{id}] is missing"),
        ));
    }
    for d in doomed {
        store.pipelines.remove(&d);
    }
    Ok(Reply::ack())
}

fn security_map<'a>(
    store: &'a mut crate::store::Store,
    kind: &str,
) -> &'a mut std::collections::BTreeMap<String, Value> {
    match kind {
        "role" => &mut store.security.roles,
        "role_mapping" => &mut store.security.role_mappings,
        _ => &mut store.security.users,
    }
}

/// `GET /_security/{role,role_mapping,user}[/<names>]`; nothing found for explicit names is a
/// 404 with `{}`.
pub fn get_security(api: &Api, kind: &str, names: Option<&str>) -> EsResult<Reply> {
    let mut store = api.store_mut();
    let map = security_map(&mut store, kind);
    let out: Map<String, Value> = map
        .iter()
        .filter(|(k, _)| names.is_none_or(|n| n.split(',').any(|w| glob(w, k))))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if out.is_empty() && names.is_some() {
        return Ok(Reply::status(404, json!({})));
    }
    Ok(Reply::ok(Value::Object(out)))
}

/// `PUT|POST /_security/{role,role_mapping,user}/<name>`.
pub fn put_security(api: &Api, req: &Request, kind: &str, name: &str) -> EsResult<Reply> {
    let body = req.json()?;
    let Some(obj) = body.as_object() else {
        return Err(EsError::validation(&format!("{kind} is missing")));
    };
    let mut store = api.store_mut();
    if kind == "role"
        && store
            .security
            .roles
            .get(name)
            .is_some_and(|r| r.pointer("/metadata/_reserved") == Some(&json!(true)))
    {
        return Err(EsError::validation(&format!(
            "Role [{name}] is reserved and may not be used."
        )));
    }
    let stored = match kind {
        "role" => {
            let mut r = json!({"cluster": [], "indices": [], "applications": [], "run_as": [],
                "metadata": {}, "transient_metadata": {"enabled": true}});
            for (k, v) in obj {
                r[k] = v.clone();
            }
            r
        }
        "role_mapping" => {
            for need in ["roles", "rules"] {
                if need == "roles"
                    && obj.get("roles").is_none()
                    && obj.get("role_templates").is_none()
                {
                    return Err(EsError::validation(
                        "a role mapping must have either [roles] or [role_templates]",
                    ));
                }
                if need == "rules" && obj.get("rules").is_none() {
                    return Err(EsError::validation("role-mapping rules are missing"));
                }
            }
            let mut r = json!({"enabled": true, "roles": [], "rules": {}, "metadata": {}});
            for (k, v) in obj {
                r[k] = v.clone();
            }
            r
        }
        _ => {
            let mut r = json!({"username": name, "roles": [], "full_name": null, "email": null,
                "metadata": {}, "enabled": true});
            for (k, v) in obj {
                if k != "password" && k != "password_hash" {
                    r[k] = v.clone();
                }
            }
            r
        }
    };
    let created = security_map(&mut store, kind)
        .insert(name.to_string(), stored)
        .is_none();
    Ok(Reply::ok(match kind {
        "role" => json!({"role": {"created": created}}),
        "role_mapping" => json!({"role_mapping": {"created": created}}),
        _ => json!({"created": created}),
    }))
}

/// `DELETE /_security/{role,role_mapping,user}/<name>`.
pub fn delete_security(api: &Api, kind: &str, name: &str) -> EsResult<Reply> {
    let mut store = api.store_mut();
    let found = security_map(&mut store, kind).remove(name).is_some();
    Ok(Reply::status(
        if found { 200 } else { 404 },
        json!({ "found": found }),
    ))
}

/// The reserved roles a fresh Elasticsearch 8 cluster shows (a few of them).
pub fn reserved_roles() -> Vec<(String, Value)> {
    [
        "superuser",
        "kibana_system",
        "viewer",
        "editor",
        "monitoring_user",
    ]
    .into_iter()
    .map(|r| {
        (
            r.to_string(),
            json!({"cluster": if r == "superuser" { json!(["all"]) } else { json!(["monitor"]) },
                    "indices": [], "applications": [], "run_as": [],
                    "metadata": {"_reserved": true}, "transient_metadata": {"enabled": true}}),
        )
    })
    .collect()
}
