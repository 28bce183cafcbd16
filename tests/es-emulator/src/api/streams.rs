//! `_data_stream` and `_rollover`.

use serde_json::{json, Value};

use super::{Api, Reply, Request};
use crate::error::{EsError, EsResult};
use crate::resolve::Expand;
use crate::util::glob;

/// `GET /_data_stream[/<names>]`.
pub fn get(api: &Api, req: &Request, names: Option<&str>) -> EsResult<Reply> {
    let expand = Expand::parse(req.param("expand_wildcards").unwrap_or("open"))?;
    let store = api.store();
    let mut out = Vec::new();
    let items: Vec<&str> = names.unwrap_or("*").split(',').collect();
    for item in &items {
        let explicit = !item.contains('*') && *item != "_all";
        let pattern = if *item == "_all" { "*" } else { item };
        let mut found = false;
        for (name, ds) in &store.data_streams {
            if !glob(pattern, name) || (!explicit && ds.hidden && !expand.hidden) {
                continue;
            }
            found = true;
            if out.iter().any(|v: &Value| v["name"] == json!(name)) {
                continue;
            }
            let ilm = store
                .index_templates
                .get(&ds.template)
                .and_then(|t| t.pointer("/template/settings/index/lifecycle/name"))
                .or_else(|| {
                    store
                        .indices
                        .get(ds.indices.last()?)?
                        .settings
                        .get("index.lifecycle.name")
                })
                .cloned();
            let managed = if ilm.is_some() {
                "Index Lifecycle Management"
            } else {
                "Unmanaged"
            };
            let indices: Vec<Value> = ds
                .indices
                .iter()
                .map(|b| {
                    let mut v = json!({
                        "index_name": b,
                        "index_uuid": store.indices.get(b).map(|i| i.uuid.clone()).unwrap_or_default(),
                        "prefer_ilm": true,
                        "managed_by": managed,
                    });
                    if let Some(p) = &ilm {
                        v["ilm_policy"] = p.clone();
                    }
                    v
                })
                .collect();
            let mut v = json!({
                "name": name,
                "timestamp_field": {"name": "@timestamp"},
                "indices": indices,
                "generation": ds.generation,
                "status": "GREEN",
                "template": ds.template,
                "next_generation_managed_by": managed,
                "prefer_ilm": true,
                "hidden": ds.hidden,
                "system": false,
                "allow_custom_routing": ds.allow_custom_routing,
                "replicated": false,
                "rollover_on_write": false,
            });
            if let Some(m) = &ds.meta {
                v["_meta"] = m.clone();
            }
            if let Some(p) = &ilm {
                v["ilm_policy"] = p.clone();
            }
            out.push(v);
        }
        if explicit && !found {
            return Err(EsError::index_not_found(item));
        }
    }
    Ok(Reply::ok(json!({ "data_streams": out })))
}

/// `PUT /_data_stream/<name>`.
pub fn create(api: &Api, _req: &Request, name: &str) -> EsResult<Reply> {
    api.store_mut().create_data_stream(name)?;
    Ok(Reply::ack())
}

/// `DELETE /_data_stream/<names>`.
pub fn delete(api: &Api, _req: &Request, names: &str) -> EsResult<Reply> {
    api.store_mut().delete_data_streams(names)?;
    Ok(Reply::ack())
}

/// `POST /<data stream>/_rollover` (data streams only; alias rollover is not emulated).
pub fn rollover(api: &Api, _req: &Request, name: &str) -> EsResult<Reply> {
    let mut store = api.store_mut();
    if !store.data_streams.contains_key(name) {
        if store.is_alias(name) {
            return Err(EsError::illegal_argument(
                "kstash-es-emulator rolls over data streams only, not aliases",
            ));
        }
        return Err(EsError::index_not_found(name));
    }
    let (old, new) = store.roll_over(name)?;
    Ok(Reply::ok(json!({
        "acknowledged": true, "shards_acknowledged": true,
        "old_index": old, "new_index": new,
        "rolled_over": true, "dry_run": false, "lazy": false,
        "conditions": {}
    })))
}
