//! Index lifecycle, mappings, settings and refresh.

use serde_json::{json, Map, Value};

use super::{Api, Reply, Request};
use crate::error::{EsError, EsResult};
use crate::mapping;
use crate::settings;
use crate::store::Index;
use crate::util::glob;

/// `PUT /<index>`.
pub fn create(api: &Api, req: &Request, name: &str) -> EsResult<Reply> {
    let body = req.json()?;
    api.store_mut().create_index(name, &body)?;
    Ok(Reply::ok(
        json!({"acknowledged": true, "shards_acknowledged": true, "index": name}),
    ))
}

/// Settings of an index as `GET _settings` renders them (nested or flat).
pub fn render_settings(idx: &Index, flat_form: bool, filter: Option<&str>) -> Value {
    let selected: settings::FlatSettings = idx
        .settings
        .iter()
        .filter(|(k, _)| {
            filter.is_none_or(|f| {
                f.split(',')
                    .any(|p| p == "_all" || glob(p, k) || glob(&format!("index.{p}"), k))
            })
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if flat_form {
        Value::Object(selected.into_iter().collect())
    } else {
        settings::nest(&selected)
    }
}

fn aliases_json(idx: &Index) -> Value {
    Value::Object(
        idx.aliases
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

/// `GET /<index>`.
pub fn get(api: &Api, req: &Request, expr: &str) -> EsResult<Reply> {
    let store = api.store();
    let names = store.resolve(expr, req.resolve_opts("open", false)?)?;
    let flat = req.flag("flat_settings");
    let mut out = Map::new();
    for n in names {
        let idx = &store.indices[&n];
        out.insert(
            n.clone(),
            json!({
                "aliases": aliases_json(idx),
                "mappings": Value::Object(idx.mappings.clone()),
                "settings": render_settings(idx, flat, None),
            }),
        );
    }
    Ok(Reply::ok(Value::Object(out)))
}

/// `HEAD /<index>`.
pub fn exists(api: &Api, req: &Request, expr: &str) -> EsResult<Reply> {
    let store = api.store();
    let found = store
        .resolve(expr, req.resolve_opts("open", false)?)
        .map(|n| !n.is_empty())
        .unwrap_or(false);
    Ok(Reply::empty(if found { 200 } else { 404 }))
}

/// `DELETE /<index>`: concrete names only (`action.destructive_requires_name` is true in 8.x).
pub fn delete(api: &Api, req: &Request, expr: &str) -> EsResult<Reply> {
    let mut store = api.store_mut();
    let ignore = req.flag("ignore_unavailable");
    let mut doomed = Vec::new();
    let destructive_requires_name = store
        .cluster_settings
        .get("action.destructive_requires_name")
        .and_then(Value::as_str)
        != Some("false");
    for name in expr.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if name.contains('*') || name == "_all" {
            if destructive_requires_name {
                return Err(EsError::illegal_argument(
                    "Wildcard expressions or all indices are not allowed",
                ));
            }
            doomed.extend(store.resolve(name, req.resolve_opts("open,closed", false)?)?);
            continue;
        }
        if let Some(idx) = store.indices.get(name) {
            if let Some(ds) = &idx.data_stream {
                if store.data_streams[ds].indices.last().map(String::as_str) == Some(name) {
                    return Err(EsError::illegal_argument(format!(
                        "index [{name}] is the write index for data stream [{ds}] and cannot be deleted"
                    )));
                }
            }
            doomed.push(name.to_string());
        } else if store.is_alias(name) {
            if !ignore {
                return Err(EsError::illegal_argument(format!(
                    "The provided expression [{name}] matches an alias, specify the corresponding concrete indices instead."
                )));
            }
        } else if !ignore {
            return Err(EsError::index_not_found(name));
        }
    }
    for d in doomed {
        if let Some(idx) = store.indices.remove(&d) {
            if let Some(ds) = idx.data_stream.and_then(|n| store.data_streams.get_mut(&n)) {
                ds.indices.retain(|b| *b != d);
            }
        }
    }
    Ok(Reply::ack())
}

fn shards_json(total: usize, successful: usize) -> Value {
    json!({"total": total, "successful": successful, "failed": 0})
}

/// `POST /<index>/_refresh` (documents are searchable immediately; this reports shard counts).
pub fn refresh(api: &Api, req: &Request, expr: Option<&str>) -> EsResult<Reply> {
    let store = api.store();
    let names = store.resolve(expr.unwrap_or("_all"), req.resolve_opts("open", true)?)?;
    let (mut total, mut ok) = (0, 0);
    for n in names {
        let idx = &store.indices[&n];
        total += idx.shards.len() * (1 + idx.replicas());
        ok += idx.shards.len();
    }
    Ok(Reply::ok(json!({"_shards": shards_json(total, ok)})))
}

/// `GET /_mapping`, `GET /<index>/_mapping`.
pub fn get_mapping(api: &Api, req: &Request, expr: Option<&str>) -> EsResult<Reply> {
    let store = api.store();
    let names = store.resolve(expr.unwrap_or("_all"), req.resolve_opts("open", false)?)?;
    let out: Map<String, Value> = names
        .into_iter()
        .map(|n| {
            let m = Value::Object(store.indices[&n].mappings.clone());
            (n, json!({"mappings": m}))
        })
        .collect();
    Ok(Reply::ok(Value::Object(out)))
}

/// `PUT /<index>/_mapping`.
pub fn put_mapping(api: &Api, req: &Request, expr: &str) -> EsResult<Reply> {
    let body = req.json()?;
    if body.is_null() {
        return Err(EsError::validation("mapping source is missing"));
    }
    let mut store = api.store_mut();
    let names = store.resolve(expr, req.resolve_opts("open", false)?)?;
    if names.is_empty() {
        return Err(EsError::index_not_found(expr));
    }
    // Validate against every index first so a failure changes nothing.
    for n in &names {
        let mut copy = store.indices[n].mappings.clone();
        mapping::merge(&mut copy, &body)?;
    }
    for n in names {
        let idx = store.indices.get_mut(&n).expect("resolved");
        mapping::merge(&mut idx.mappings, &body)?;
    }
    Ok(Reply::ack())
}

/// `GET /_settings`, `GET /<index>/_settings[/<name>]`.
pub fn get_settings(
    api: &Api,
    req: &Request,
    expr: Option<&str>,
    name: Option<&str>,
) -> EsResult<Reply> {
    let store = api.store();
    let names = store.resolve(expr.unwrap_or("_all"), req.resolve_opts("all", false)?)?;
    let flat = req.flag("flat_settings");
    let mut out = Map::new();
    for n in names {
        let idx = &store.indices[&n];
        let mut entry = json!({"settings": render_settings(idx, flat, name)});
        if req.flag("include_defaults") {
            let defaults: settings::FlatSettings = [
                ("index.max_result_window", "10000"),
                ("index.refresh_interval", "1s"),
                ("index.hidden", "false"),
            ]
            .into_iter()
            .filter(|(k, _)| !idx.settings.contains_key(*k))
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
            entry["defaults"] = if flat {
                Value::Object(defaults.into_iter().collect())
            } else {
                settings::nest(&defaults)
            };
        }
        out.insert(n, entry);
    }
    Ok(Reply::ok(Value::Object(out)))
}

/// `PUT /_settings`, `PUT /<index>/_settings`.
pub fn put_settings(api: &Api, req: &Request, expr: Option<&str>) -> EsResult<Reply> {
    let body = req.json()?;
    let body = match body.get("settings") {
        Some(s) => s.clone(),
        None => body,
    };
    if body.as_object().is_none_or(|m| m.is_empty()) {
        return Err(EsError::validation("no settings to update"));
    }
    // Nulls reset a setting, so collect them before flattening drops them.
    let mut resets = Vec::new();
    collect_nulls("", &body, &mut resets);
    let flat = settings::flatten(&body)?;
    let mut store = api.store_mut();
    let mut opts = req.resolve_opts("open", false)?;
    opts.allow_no_indices = req.bool_param("allow_no_indices", false)?;
    let names = store.resolve(expr.unwrap_or("_all"), opts)?;
    for n in &names {
        let idx = &store.indices[n];
        settings::validate_for_update(&flat, n, &idx.uuid, idx.closed)?;
    }
    for n in names {
        let idx = store.indices.get_mut(&n).expect("resolved");
        for r in &resets {
            let key = if r.starts_with("index.") {
                r.clone()
            } else {
                format!("index.{r}")
            };
            if key != "index.number_of_replicas" && key != "index.number_of_shards" {
                idx.settings.remove(&key);
            }
        }
        idx.settings.extend(flat.clone());
    }
    Ok(Reply::ack())
}

fn collect_nulls(prefix: &str, v: &Value, out: &mut Vec<String>) {
    if let Value::Object(m) = v {
        for (k, x) in m {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            if x.is_null() {
                out.push(key);
            } else {
                collect_nulls(&key, x, out);
            }
        }
    }
}

/// `POST /<index>/_close`: the index keeps its metadata and refuses reads and writes.
pub fn close(api: &Api, req: &Request, expr: &str) -> EsResult<Reply> {
    let mut store = api.store_mut();
    if (expr.contains('*') || expr == "_all")
        && store
            .cluster_settings
            .get("action.destructive_requires_name")
            .and_then(Value::as_str)
            != Some("false")
    {
        return Err(EsError::illegal_argument(
            "Wildcard expressions or all indices are not allowed",
        ));
    }
    let names = store.resolve(expr, req.resolve_opts("open", false)?)?;
    for n in &names {
        if let Some(ds) = &store.indices[n].data_stream {
            if store.data_streams[ds].indices.last() == Some(n) {
                return Err(EsError::illegal_argument(format!(
                    "cannot close index [{n}] because it is the write index for data stream [{ds}]"
                )));
            }
        }
    }
    let mut out = Map::new();
    for n in names {
        let idx = store.indices.get_mut(&n).expect("resolved");
        idx.closed = true;
        idx.settings
            .insert("index.verified_before_close".into(), json!("true"));
        out.insert(n, json!({"closed": true}));
    }
    Ok(Reply::ok(
        json!({"acknowledged": true, "shards_acknowledged": true, "indices": out}),
    ))
}

/// `POST /<index>/_open`.
pub fn open(api: &Api, req: &Request, expr: &str) -> EsResult<Reply> {
    let mut store = api.store_mut();
    let names = store.resolve(expr, req.resolve_opts("closed", false)?)?;
    for n in names {
        let idx = store.indices.get_mut(&n).expect("resolved");
        idx.closed = false;
        idx.settings.remove("index.verified_before_close");
    }
    Ok(Reply::ok(
        json!({"acknowledged": true, "shards_acknowledged": true}),
    ))
}
