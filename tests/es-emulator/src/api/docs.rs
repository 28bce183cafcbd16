//! Single-document APIs and `_bulk`.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::{Api, Reply, Request};
use crate::error::{EsError, EsResult};
use crate::store::{OpType, Store, WriteOutcome};

fn shards() -> Value {
    json!({"total": 2, "successful": 1, "failed": 0})
}

fn outcome_json(w: &WriteOutcome) -> Value {
    json!({
        "_index": w.index, "_id": w.id, "_version": w.version, "result": w.result,
        "_shards": shards(), "_seq_no": w.seq_no, "_primary_term": 1,
    })
}

fn parse_u64(req: &Request, name: &str) -> EsResult<Option<u64>> {
    req.param(name)
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                EsError::illegal_argument(format!(
                    "Failed to parse long parameter [{name}] with value [{v}]"
                ))
            })
        })
        .transpose()
}

/// `PUT|POST /<index>/_doc[/<id>]`, `PUT|POST /<index>/_create/<id>`.
pub fn index_doc(
    api: &Api,
    req: &Request,
    index: &str,
    id: Option<&str>,
    create: bool,
) -> EsResult<Reply> {
    let parsed = req.json()?;
    if parsed.is_null() {
        return Err(EsError::validation("source is missing"));
    }
    let op = match (create, req.param("op_type")) {
        (true, _) | (_, Some("create")) => OpType::Create,
        (_, None) | (_, Some("index")) => OpType::Index,
        (_, Some(other)) => {
            return Err(EsError::illegal_argument(format!(
                "opType must be 'create' or 'index', found: [{other}]"
            )))
        }
    };
    let mut store = api.store();
    let target = store.ensure_write_index(index, req.flag("require_alias"))?;
    let w = store.index_doc(
        &target,
        id.map(String::from),
        req.body.clone(),
        &parsed,
        req.param("routing").map(String::from),
        op,
        parse_u64(req, "if_seq_no")?,
    )?;
    Ok(Reply::status(w.status, outcome_json(&w)))
}

/// `GET|HEAD /<index>/_doc/<id>`.
pub fn get_doc(api: &Api, req: &Request, index: &str, id: &str) -> EsResult<Reply> {
    let store = api.store();
    let target = store
        .write_target(index)?
        .ok_or_else(|| EsError::index_not_found(index))?;
    let idx = &store.indices[&target];
    match idx.get(id, req.param("routing")) {
        None => Ok(if req.method == http::Method::HEAD {
            Reply::empty(404)
        } else {
            Reply::status(404, json!({"_index": target, "_id": id, "found": false}))
        }),
        Some(doc) => {
            let mut out = Map::new();
            out.insert("_index".into(), json!(target));
            out.insert("_id".into(), json!(id));
            out.insert("_version".into(), json!(doc.version));
            out.insert("_seq_no".into(), json!(doc.seq_no));
            out.insert("_primary_term".into(), json!(1));
            if let Some(r) = &doc.routing {
                out.insert("_routing".into(), json!(r));
            }
            out.insert("found".into(), json!(true));
            if req.param("_source") != Some("false") {
                let src: Value = serde_json::from_slice(&doc.source).unwrap_or(Value::Null);
                out.insert("_source".into(), src);
            }
            Ok(Reply::ok(Value::Object(out)))
        }
    }
}

/// `DELETE /<index>/_doc/<id>`.
pub fn delete_doc(api: &Api, req: &Request, index: &str, id: &str) -> EsResult<Reply> {
    let mut store = api.store();
    let target = store
        .write_target(index)?
        .ok_or_else(|| EsError::index_not_found(index))?;
    let w = store.delete_doc(&target, id, req.param("routing"))?;
    Ok(Reply::status(w.status, outcome_json(&w)))
}

/// One parsed bulk operation.
#[derive(Debug)]
struct BulkOp {
    action: &'static str,
    index: String,
    id: Option<String>,
    routing: Option<String>,
    require_alias: bool,
    if_seq_no: Option<u64>,
    source: Option<Bytes>,
}

const META_KEYS: &[&str] = &[
    "_index",
    "_id",
    "routing",
    "if_seq_no",
    "if_primary_term",
    "version",
    "version_type",
    "require_alias",
    "require_data_stream",
    "pipeline",
    "dynamic_templates",
    "retry_on_conflict",
    "_source",
    "list_executed_pipelines",
];

/// Splits an NDJSON bulk body into operations, validating every action line before anything
/// is applied (as Elasticsearch parses the whole request first).
fn parse_bulk(body: &Bytes, default_index: Option<&str>) -> EsResult<Vec<BulkOp>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(EsError::validation("no requests added"));
    }
    if body.last() != Some(&b'\n') {
        return Err(EsError::illegal_argument(
            "The bulk request must be terminated by a newline [\\n]",
        ));
    }
    let mut ops = Vec::new();
    let mut pending: Option<BulkOp> = None;
    let mut start = 0usize;
    let mut line_no = 0usize;
    while start < body.len() {
        let end = memchr_newline(&body[start..])
            .map(|p| start + p)
            .unwrap_or(body.len());
        let line = body.slice(start..end);
        start = end + 1;
        line_no += 1;
        if let Some(mut op) = pending.take() {
            op.source = Some(line);
            ops.push(op);
            continue;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let v: Value = serde_json::from_slice(&line).map_err(|e| {
            EsError::new(
                400,
                "x_content_parse_exception",
                format!(
                    "[{line_no}:{}] Malformed action/metadata line [{line_no}]: {e}",
                    e.column()
                ),
            )
        })?;
        let Some(obj) = v.as_object() else {
            return Err(EsError::illegal_argument(format!(
                "Malformed action/metadata line [{line_no}], expected START_OBJECT but found [{}]",
                token_name(&v)
            )));
        };
        if obj.len() != 1 {
            return Err(EsError::illegal_argument(format!(
                "Malformed action/metadata line [{line_no}], expected a single action but found [{}] keys",
                obj.len()
            )));
        }
        let (action, meta) = obj.iter().next().expect("one key");
        let action: &'static str = match action.as_str() {
            "index" => "index",
            "create" => "create",
            "update" => "update",
            "delete" => "delete",
            other => {
                return Err(EsError::illegal_argument(format!(
                    "Malformed action/metadata line [{line_no}], expected one of [create, delete, index, update] but found [{other}]"
                )))
            }
        };
        let Some(meta) = meta.as_object() else {
            return Err(EsError::illegal_argument(format!(
                "Malformed action/metadata line [{line_no}], expected START_OBJECT but found [{}]",
                token_name(meta)
            )));
        };
        for k in meta.keys() {
            if !META_KEYS.contains(&k.as_str()) {
                return Err(EsError::illegal_argument(format!(
                    "Action/metadata line [{line_no}] contains an unknown parameter [{k}]"
                )));
            }
        }
        let string = |k: &str| -> Option<String> {
            meta.get(k).map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        };
        let index = string("_index")
            .or_else(|| default_index.map(String::from))
            .ok_or_else(|| EsError::validation("index is missing"))?;
        let op = BulkOp {
            action,
            index,
            id: string("_id"),
            routing: string("routing"),
            require_alias: meta.get("require_alias") == Some(&Value::Bool(true)),
            if_seq_no: meta.get("if_seq_no").and_then(Value::as_u64),
            source: None,
        };
        if action == "delete" {
            if op.id.is_none() {
                return Err(EsError::validation("id is missing"));
            }
            ops.push(op);
        } else {
            if action == "update" && op.id.is_none() {
                return Err(EsError::validation("id is missing"));
            }
            pending = Some(op);
        }
    }
    if pending.is_some() {
        return Err(EsError::illegal_argument(format!(
            "The bulk request is missing the source line after the action on line [{line_no}]"
        )));
    }
    Ok(ops)
}

fn token_name(v: &Value) -> &'static str {
    match v {
        Value::Array(_) => "START_ARRAY",
        Value::String(_) => "VALUE_STRING",
        Value::Number(_) => "VALUE_NUMBER",
        Value::Bool(_) => "VALUE_BOOLEAN",
        Value::Null => "VALUE_NULL",
        Value::Object(_) => "START_OBJECT",
    }
}

fn memchr_newline(b: &[u8]) -> Option<usize> {
    b.iter().position(|c| *c == b'\n')
}

fn merge_doc(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                match t.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        merge_doc(existing, v)
                    }
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn apply_update(
    store: &mut Store,
    target: &str,
    op: &BulkOp,
    body: &Value,
) -> EsResult<WriteOutcome> {
    let id = op.id.clone().expect("validated");
    if body.get("script").is_some() {
        return Err(EsError::illegal_argument(
            "kstash-es-emulator does not support scripted updates",
        ));
    }
    let existing = store.indices[target]
        .get(&id, op.routing.as_deref())
        .map(|d| serde_json::from_slice::<Value>(&d.source).unwrap_or(Value::Null));
    let doc = body.get("doc");
    let new = match (existing, doc) {
        (Some(mut cur), Some(d)) => {
            let before = cur.clone();
            merge_doc(&mut cur, d);
            if before == cur && body.get("detect_noop") != Some(&Value::Bool(false)) {
                let idx = &store.indices[target];
                let d = idx.get(&id, op.routing.as_deref()).expect("exists");
                return Ok(WriteOutcome {
                    index: target.into(),
                    id,
                    version: d.version,
                    result: "noop",
                    seq_no: d.seq_no,
                    status: 200,
                });
            }
            cur
        }
        (Some(_), None) => return Err(EsError::validation("script or doc is missing")),
        (None, _) => {
            if body.get("doc_as_upsert") == Some(&Value::Bool(true)) && doc.is_some() {
                doc.cloned().expect("checked")
            } else if let Some(u) = body.get("upsert") {
                u.clone()
            } else {
                let uuid = store.indices[target].uuid.clone();
                return Err(EsError::new(
                    404,
                    "document_missing_exception",
                    format!("[{id}]: document missing"),
                )
                .with("index_uuid", uuid)
                .with("shard", "0")
                .with("index", target));
            }
        }
    };
    let bytes = Bytes::from(serde_json::to_vec(&new).expect("value"));
    store.index_doc(
        target,
        Some(id),
        bytes,
        &new,
        op.routing.clone(),
        OpType::Index,
        op.if_seq_no,
    )
}

/// `POST|PUT /_bulk`, `/<index>/_bulk`.
pub fn bulk(api: &Api, req: &Request, default_index: Option<&str>) -> EsResult<Reply> {
    let ops = parse_bulk(&req.body, default_index)?;
    let mut items = Vec::with_capacity(ops.len());
    let mut errors = false;
    let mut store = api.store();
    for op in &ops {
        let result = if api.item_429() {
            Err(EsError::new(
                429,
                "es_rejected_execution_exception",
                "rejected execution of primary operation [coordinating_and_primary_bytes=0, replica_bytes=0, all_bytes=0, primary_operation_bytes=0, max_coordinating_and_primary_bytes=0] (injected by kstash-es-emulator)",
            ))
        } else {
            execute(&mut store, op)
        };
        let entry = match result {
            Ok(w) => {
                let mut v = outcome_json(&w);
                v["status"] = json!(w.status);
                v
            }
            Err(e) => {
                errors = true;
                json!({"_index": op.index, "_id": op.id, "status": e.status, "error": e.item_error()})
            }
        };
        items.push(json!({ op.action: entry }));
    }
    drop(store);
    Ok(Reply::ok(
        json!({"errors": errors, "took": req.took(), "items": items}),
    ))
}

fn execute(store: &mut Store, op: &BulkOp) -> EsResult<WriteOutcome> {
    let target = if op.action == "delete" || op.action == "update" {
        match store.write_target(&op.index)? {
            Some(t) => t,
            None if op.action == "delete" => return Err(EsError::index_not_found(&op.index)),
            None => store.ensure_write_index(&op.index, op.require_alias)?,
        }
    } else {
        store.ensure_write_index(&op.index, op.require_alias)?
    };
    match op.action {
        "delete" => store.delete_doc(
            &target,
            op.id.as_deref().expect("validated"),
            op.routing.as_deref(),
        ),
        action => {
            let src = op.source.clone().expect("source line");
            let parsed: Value = serde_json::from_slice(&src).map_err(|e| {
                EsError::new(
                    400,
                    "document_parsing_exception",
                    format!("[{}:{}] failed to parse: {e}", e.line(), e.column()),
                )
            })?;
            if action == "update" {
                return apply_update(store, &target, op, &parsed);
            }
            let kind = if action == "create" {
                OpType::Create
            } else {
                OpType::Index
            };
            store.index_doc(
                &target,
                op.id.clone(),
                src,
                &parsed,
                op.routing.clone(),
                kind,
                op.if_seq_no,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_parsing_rules() {
        let ok = Bytes::from_static(b"{\"index\":{\"_id\":\"1\"}}\n{\"a\":1}\n{\"delete\":{\"_index\":\"x\",\"_id\":\"2\"}}\n");
        let ops = parse_bulk(&ok, Some("d")).unwrap();
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[0].index, "d");
        assert_eq!(ops[1].index, "x");
        let e = parse_bulk(&Bytes::from_static(b"{\"index\":{}}\n{}"), Some("d")).unwrap_err();
        assert!(e.reason.contains("terminated by a newline"));
        let e = parse_bulk(
            &Bytes::from_static(b"{\"index\":{\"_routing\":\"r\"}}\n{}\n"),
            Some("d"),
        )
        .unwrap_err();
        assert!(e.reason.contains("unknown parameter [_routing]"));
        let e = parse_bulk(&Bytes::from_static(b"{\"index\":{}}\n{}\n"), None).unwrap_err();
        assert!(e.reason.contains("index is missing"));
    }
}
