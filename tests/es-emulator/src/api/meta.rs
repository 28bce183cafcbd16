//! Cluster info and health, aliases and templates.

use serde_json::{json, Map, Value};

use super::{Api, Flavor, Reply, Request};
use crate::error::{EsError, EsResult};
use crate::settings;
use crate::store::{normalize_alias, patterns};
use crate::util::glob;

/// `GET /`.
pub fn info(api: &Api) -> Reply {
    let cluster_uuid = api.store().cluster_uuid.clone();
    let id = &api.identity;
    if id.flavor == Flavor::OpenSearch {
        return Reply::ok(json!({
            "name": id.node_name,
            "cluster_name": id.cluster_name,
            "cluster_uuid": cluster_uuid,
            "version": {
                "distribution": "opensearch",
                "number": id.version,
                "build_type": "tar",
                "build_hash": "0000000000000000000000000000000000000000",
                "build_date": "2025-03-01T00:00:00.000000000Z",
                "build_snapshot": false,
                "lucene_version": "9.12.1",
                "minimum_wire_compatibility_version": "7.10.0",
                "minimum_index_compatibility_version": "7.0.0"
            },
            "tagline": "The OpenSearch Project: https://opensearch.org/"
        }));
    }
    Reply::ok(json!({
        "name": id.node_name,
        "cluster_name": id.cluster_name,
        "cluster_uuid": cluster_uuid,
        "version": {
            "number": id.version,
            "build_flavor": "default",
            "build_type": "docker",
            "build_hash": "0000000000000000000000000000000000000000",
            "build_date": "2025-06-01T00:00:00.000000000Z",
            "build_snapshot": false,
            "lucene_version": "9.12.1",
            "minimum_wire_compatibility_version": "7.17.0",
            "minimum_index_compatibility_version": "7.0.0"
        },
        "tagline": "You Know, for Search"
    }))
}

/// `GET /_cluster/health[/<index>]`: a single node that reports every shard copy assigned.
pub fn health(api: &Api, req: &Request, expr: Option<&str>) -> EsResult<Reply> {
    let store = api.store();
    let names = match expr {
        None => store.indices.keys().cloned().collect(),
        Some(e) => match store.resolve(e, req.resolve_opts("all", false)?) {
            Ok(n) => n,
            Err(_) => {
                return Ok(Reply::status(
                    408,
                    json!({"cluster_name": api.identity.cluster_name, "status": "red", "timed_out": true,
                        "number_of_nodes": 1, "number_of_data_nodes": 1}),
                ))
            }
        },
    };
    let (mut pri, mut all) = (0usize, 0usize);
    for n in &names {
        let idx = &store.indices[n];
        pri += idx.shards.len();
        all += idx.shards.len() * (1 + idx.replicas());
    }
    Ok(Reply::ok(json!({
        "cluster_name": api.identity.cluster_name, "status": "green", "timed_out": false,
        "number_of_nodes": 1, "number_of_data_nodes": 1,
        "active_primary_shards": pri, "active_shards": all,
        "relocating_shards": 0, "initializing_shards": 0, "unassigned_shards": 0,
        "unassigned_primary_shards": 0, "delayed_unassigned_shards": 0,
        "number_of_pending_tasks": 0, "number_of_in_flight_fetch": 0,
        "task_max_waiting_in_queue_millis": 0, "active_shards_percent_as_number": 100.0
    })))
}

/// `GET /_alias[/<name>]`, `/_aliases`, `/<index>/_alias[/<name>]`.
pub fn get_alias(
    api: &Api,
    req: &Request,
    expr: Option<&str>,
    name: Option<&str>,
) -> EsResult<Reply> {
    let store = api.store();
    let names = store.resolve(expr.unwrap_or("_all"), req.resolve_opts("all", false)?)?;
    let patterns: Option<Vec<&str>> = name.map(|n| n.split(',').collect());
    let mut out = Map::new();
    let mut found: Vec<String> = Vec::new();
    for n in names {
        let idx = &store.indices[&n];
        let selected: Map<String, Value> = idx
            .aliases
            .iter()
            .filter(|(a, _)| {
                patterns
                    .as_ref()
                    .is_none_or(|ps| ps.iter().any(|p| *p == "_all" || glob(p, a)))
            })
            .map(|(a, d)| (a.clone(), d.clone()))
            .collect();
        found.extend(selected.keys().cloned());
        if patterns.is_none() || !selected.is_empty() {
            out.insert(n.clone(), json!({"aliases": Value::Object(selected)}));
        }
    }
    if let Some(ps) = patterns {
        let missing: Vec<&str> = ps
            .iter()
            .filter(|p| !p.contains('*') && **p != "_all" && !found.iter().any(|f| f == *p))
            .copied()
            .collect();
        if !missing.is_empty() {
            if req.method == http::Method::HEAD {
                return Ok(Reply::empty(404));
            }
            let mut body = out;
            let msg = if missing.len() == 1 {
                format!("alias [{}] missing", missing[0])
            } else {
                format!("aliases [{}] missing", missing.join(","))
            };
            body.insert("error".into(), json!(msg));
            body.insert("status".into(), json!(404));
            return Ok(Reply::status(404, Value::Object(body)));
        }
    }
    if req.method == http::Method::HEAD {
        return Ok(Reply::empty(if out.is_empty() { 404 } else { 200 }));
    }
    Ok(Reply::ok(Value::Object(out)))
}

fn list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

/// `POST /_aliases` with `add`, `remove` and `remove_index` actions (all validated first).
pub fn update_aliases(api: &Api, req: &Request) -> EsResult<Reply> {
    let body = req.json()?;
    let actions = body
        .get("actions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if actions.is_empty() {
        return Err(EsError::validation("no actions specified"));
    }
    let mut store = api.store_mut();
    let mut plan: Vec<(String, String, String, Value)> = Vec::new();
    for action in &actions {
        let Some((kind, spec)) = action.as_object().and_then(|m| m.iter().next()) else {
            return Err(EsError::parsing("[aliases] malformed action"));
        };
        let mut indices = list(spec.get("index"));
        indices.extend(list(spec.get("indices")));
        let mut aliases = list(spec.get("alias"));
        aliases.extend(list(spec.get("aliases")));
        if indices.is_empty() {
            return Err(EsError::validation(
                "One of [index] or [indices] is required",
            ));
        }
        let mut concrete = Vec::new();
        for i in &indices {
            concrete.extend(store.resolve(i, req.resolve_opts("open", false)?)?);
        }
        match kind.as_str() {
            "add" | "remove" => {
                if aliases.is_empty() {
                    return Err(EsError::validation(
                        "One of [alias] or [aliases] is required",
                    ));
                }
                let mut def = spec.clone();
                if let Some(o) = def.as_object_mut() {
                    for k in ["index", "indices", "alias", "aliases", "must_exist"] {
                        o.remove(k);
                    }
                }
                let def = if kind == "add" {
                    normalize_alias(&def)?
                } else {
                    Value::Null
                };
                for i in &concrete {
                    for a in &aliases {
                        if kind == "add" && store.indices.contains_key(a) {
                            return Err(EsError::new(
                                400,
                                "invalid_alias_name_exception",
                                format!("Invalid alias name [{a}]: an index or data stream exists with the same name as the alias"),
                            ));
                        }
                        if kind == "remove"
                            && !a.contains('*')
                            && !store.indices[i].aliases.contains_key(a)
                        {
                            return Err(EsError::new(
                                404,
                                "aliases_not_found_exception",
                                format!("aliases [{a}] missing"),
                            )
                            .with("resource.type", "aliases")
                            .with("resource.id", a.clone()));
                        }
                        plan.push((kind.clone(), i.clone(), a.clone(), def.clone()));
                    }
                }
            }
            "remove_index" => {
                for i in concrete {
                    plan.push((kind.clone(), i, String::new(), Value::Null));
                }
            }
            other => {
                return Err(EsError::parsing(format!(
                    "[aliases] unknown field [{other}]"
                )));
            }
        }
    }
    for (kind, index, alias, def) in plan {
        match kind.as_str() {
            "add" => {
                if let Some(idx) = store.indices.get_mut(&index) {
                    idx.aliases.insert(alias, def);
                }
            }
            "remove" => {
                if let Some(idx) = store.indices.get_mut(&index) {
                    idx.aliases.retain(|a, _| !glob(&alias, a));
                }
            }
            _ => {
                store.indices.remove(&index);
            }
        }
    }
    Ok(Reply::ok(json!({"acknowledged": true, "errors": false})))
}

/// `PUT|POST /<index>/_alias/<name>`.
pub fn put_alias(api: &Api, req: &Request, expr: &str, name: &str) -> EsResult<Reply> {
    let body = req.json()?;
    let def = normalize_alias(&body)?;
    let mut store = api.store_mut();
    let names = store.resolve(expr, req.resolve_opts("open", false)?)?;
    if store.indices.contains_key(name) {
        return Err(EsError::new(
            400,
            "invalid_alias_name_exception",
            format!("Invalid alias name [{name}]: an index or data stream exists with the same name as the alias"),
        ));
    }
    for n in names {
        store
            .indices
            .get_mut(&n)
            .expect("resolved")
            .aliases
            .insert(name.into(), def.clone());
    }
    Ok(Reply::ok(json!({"acknowledged": true, "errors": false})))
}

/// `DELETE /<index>/_alias/<name>`.
pub fn delete_alias(api: &Api, req: &Request, expr: &str, name: &str) -> EsResult<Reply> {
    let mut store = api.store_mut();
    let names = store.resolve(expr, req.resolve_opts("open", false)?)?;
    let mut removed = 0;
    for n in names {
        let idx = store.indices.get_mut(&n).expect("resolved");
        let before = idx.aliases.len();
        idx.aliases
            .retain(|a, _| !name.split(',').any(|p| glob(p, a)));
        removed += before - idx.aliases.len();
    }
    if removed == 0 {
        return Err(EsError::new(
            404,
            "aliases_not_found_exception",
            format!("aliases [{name}] missing"),
        )
        .with("resource.type", "aliases")
        .with("resource.id", name));
    }
    Ok(Reply::ok(json!({"acknowledged": true, "errors": false})))
}

fn matching<'a>(
    map: &'a std::collections::BTreeMap<String, Value>,
    name: Option<&str>,
) -> Vec<(&'a String, &'a Value)> {
    map.iter()
        .filter(|(k, _)| name.is_none_or(|n| n.split(',').any(|p| p == "_all" || glob(p, k))))
        .collect()
}

fn normalize_legacy(body: &Value, params_order: Option<i64>) -> EsResult<Value> {
    let obj = body
        .as_object()
        .ok_or_else(|| EsError::validation("template source is missing"))?;
    let pats = patterns(body);
    if pats.is_empty() {
        return Err(EsError::validation("index patterns are missing"));
    }
    for k in obj.keys() {
        if !matches!(
            k.as_str(),
            "index_patterns" | "order" | "version" | "settings" | "mappings" | "aliases"
        ) {
            return Err(EsError::illegal_argument(format!(
                "unknown key [{k}] in the template "
            )));
        }
    }
    let settings = settings::flatten(obj.get("settings").unwrap_or(&Value::Null))?;
    let mappings = match obj.get("mappings") {
        Some(Value::Object(m)) if m.len() == 1 && m.contains_key("_doc") => m["_doc"].clone(),
        Some(m @ Value::Object(_)) => m.clone(),
        _ => json!({}),
    };
    let mut aliases = Map::new();
    if let Some(a) = obj.get("aliases").and_then(Value::as_object) {
        for (k, v) in a {
            aliases.insert(k.clone(), normalize_alias(v)?);
        }
    }
    let order = params_order
        .or_else(|| obj.get("order").and_then(Value::as_i64))
        .unwrap_or(0);
    let mut out = Map::new();
    out.insert("order".into(), json!(order));
    if let Some(v) = obj.get("version") {
        out.insert("version".into(), v.clone());
    }
    out.insert("index_patterns".into(), json!(pats));
    out.insert("settings".into(), settings::nest(&settings));
    out.insert("mappings".into(), mappings);
    out.insert("aliases".into(), Value::Object(aliases));
    Ok(Value::Object(out))
}

/// `GET|PUT|POST|DELETE|HEAD /_template[/<name>]` (legacy templates).
pub fn legacy_template(api: &Api, req: &Request, name: Option<&str>) -> EsResult<Reply> {
    use http::Method as M;
    let mut store = api.store_mut();
    match (req.method.clone(), name) {
        (M::GET | M::HEAD, _) => {
            let found = matching(&store.templates, name);
            let explicit = name.is_some_and(|n| !n.contains('*') && n != "_all");
            if found.is_empty() && explicit {
                return Ok(if req.method == M::HEAD {
                    Reply::empty(404)
                } else {
                    Reply::status(404, json!({}))
                });
            }
            if req.method == M::HEAD {
                return Ok(Reply::empty(200));
            }
            let out: Map<String, Value> = found
                .into_iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            Ok(Reply::ok(Value::Object(out)))
        }
        (M::PUT | M::POST, Some(n)) => {
            let order = req.param("order").and_then(|o| o.parse().ok());
            let t = normalize_legacy(&req.json()?, order)?;
            if req.flag("create") && store.templates.contains_key(n) {
                return Err(EsError::illegal_argument(format!(
                    "index_template [{n}] already exists"
                )));
            }
            store.templates.insert(n.to_string(), t);
            Ok(Reply::ack())
        }
        (M::DELETE, Some(n)) => {
            let doomed: Vec<String> = matching(&store.templates, Some(n))
                .into_iter()
                .map(|(k, _)| k.clone())
                .collect();
            if doomed.is_empty() {
                return Err(EsError::new(
                    404,
                    "index_template_missing_exception",
                    format!("index_template [{n}] missing"),
                ));
            }
            for d in doomed {
                store.templates.remove(&d);
            }
            Ok(Reply::ack())
        }
        _ => Err(EsError::illegal_argument("a template name is required")),
    }
}

/// Which composable template family a request is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `_index_template`.
    Index,
    /// `_component_template`.
    Component,
}

/// `GET|PUT|POST|DELETE|HEAD /_index_template[/<name>]` and `/_component_template[/<name>]`.
pub fn composable_template(
    api: &Api,
    req: &Request,
    name: Option<&str>,
    kind: Kind,
) -> EsResult<Reply> {
    use http::Method as M;
    let mut store = api.store_mut();
    let (list_key, item_key, label) = match kind {
        Kind::Index => ("index_templates", "index_template", "index template"),
        Kind::Component => (
            "component_templates",
            "component_template",
            "component template",
        ),
    };
    match (req.method.clone(), name) {
        (M::GET | M::HEAD, _) => {
            let map = if kind == Kind::Index {
                &store.index_templates
            } else {
                &store.component_templates
            };
            let found = matching(map, name);
            if found.is_empty() && name.is_some_and(|n| !n.contains('*')) {
                if req.method == M::HEAD {
                    return Ok(Reply::empty(404));
                }
                return Err(EsError::new(
                    404,
                    "resource_not_found_exception",
                    format!("{label} matching [{}] not found", name.unwrap_or_default()),
                ));
            }
            if req.method == M::HEAD {
                return Ok(Reply::empty(200));
            }
            let items: Vec<Value> = found
                .into_iter()
                .map(|(k, v)| json!({"name": k, item_key: v}))
                .collect();
            Ok(Reply::ok(json!({ list_key: items })))
        }
        (M::PUT | M::POST, Some(n)) => {
            let mut body = req.json()?;
            let obj = body
                .as_object_mut()
                .ok_or_else(|| EsError::validation("template source is missing"))?;
            if let Some(tpl) = obj.get_mut("template").and_then(Value::as_object_mut) {
                if let Some(s) = tpl.get("settings") {
                    let flat = settings::flatten(s)?;
                    tpl.insert("settings".into(), settings::nest(&flat));
                }
                if let Some(a) = tpl.get("aliases").and_then(Value::as_object).cloned() {
                    let mut out = Map::new();
                    for (k, v) in a {
                        out.insert(k, normalize_alias(&v)?);
                    }
                    tpl.insert("aliases".into(), Value::Object(out));
                }
            }
            if kind == Kind::Index {
                if patterns(&body).is_empty() {
                    return Err(EsError::validation("index patterns are missing"));
                }
                let comps = list(body.get("composed_of"));
                let missing: Vec<String> = comps
                    .into_iter()
                    .filter(|c| !store.component_templates.contains_key(c))
                    .collect();
                if !missing.is_empty() {
                    return Err(EsError::new(
                        400,
                        "invalid_index_template_exception",
                        format!(
                            "index_template [{n}] invalid, cause [index template [{n}] specifies component templates {missing:?} that do not exist]"
                        ),
                    ));
                }
                let obj = body.as_object_mut().expect("object");
                obj.entry("composed_of").or_insert_with(|| json!([]));
                if let Some(Value::String(p)) = obj.get("index_patterns").cloned() {
                    obj.insert(
                        "index_patterns".into(),
                        json!(p.split(',').collect::<Vec<_>>()),
                    );
                }
            } else if body.get("template").is_none() {
                return Err(EsError::validation("template is missing"));
            }
            let map = if kind == Kind::Index {
                &mut store.index_templates
            } else {
                &mut store.component_templates
            };
            if req.flag("create") && map.contains_key(n) {
                return Err(EsError::illegal_argument(format!(
                    "{label} [{n}] already exists"
                )));
            }
            map.insert(n.to_string(), body);
            Ok(Reply::ack())
        }
        (M::DELETE, Some(n)) => {
            if kind == Kind::Component {
                let users: Vec<String> = store
                    .index_templates
                    .iter()
                    .filter(|(_, t)| list(t.get("composed_of")).iter().any(|c| glob(n, c)))
                    .map(|(k, _)| k.clone())
                    .collect();
                if !users.is_empty() {
                    return Err(EsError::illegal_argument(format!(
                        "component templates [{n}] cannot be removed as they are still in use by index templates [{}]",
                        users.join(", ")
                    )));
                }
            }
            let map = if kind == Kind::Index {
                &mut store.index_templates
            } else {
                &mut store.component_templates
            };
            let doomed: Vec<String> = matching(map, Some(n))
                .into_iter()
                .map(|(k, _)| k.clone())
                .collect();
            if doomed.is_empty() {
                return Err(EsError::new(
                    404,
                    "resource_not_found_exception",
                    format!("{label} matching [{n}] not found"),
                ));
            }
            for d in doomed {
                map.remove(&d);
            }
            Ok(Reply::ack())
        }
        _ => Err(EsError::illegal_argument("a template name is required")),
    }
}
