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
    // As Elasticsearch's REST layer (RestIndexAction.AutoIdHandler): a document without an id
    // defaults to op_type=create, so `POST /<data-stream>/_doc` is accepted.
    let op_type = req
        .param("op_type")
        .or(if id.is_none() { Some("create") } else { None });
    let action = match (create, op_type) {
        (true, _) | (_, Some("create")) => "create",
        (_, None) | (_, Some("index")) => "index",
        (_, Some(other)) => {
            return Err(EsError::illegal_argument(format!(
                "opType must be 'create' or 'index', found: [{other}]"
            )))
        }
    };
    let op = BulkOp {
        action,
        index: index.to_string(),
        id: id.map(String::from),
        routing: req.param("routing").map(String::from),
        require_alias: req.flag("require_alias"),
        if_seq_no: parse_u64(req, "if_seq_no")?,
        pipeline: req.param("pipeline").map(String::from),
        source: Some(req.body.clone()),
    };
    let mut store = api.store_mut();
    let w = write(&mut store, &op, parsed, req.body.clone())?;
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
    let mut store = api.store_mut();
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
    pipeline: Option<String>,
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
fn parse_bulk(
    body: &Bytes,
    default_index: Option<&str>,
    default_pipeline: Option<&str>,
) -> EsResult<Vec<BulkOp>> {
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
            pipeline: string("pipeline").or_else(|| default_pipeline.map(String::from)),
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

/// `POST|PUT /_bulk`, `/<index>/_bulk`. The body is split and every document parsed before the
/// store is locked, so concurrent bulks parse in parallel (as Elasticsearch's `write` thread pool
/// does); only applying them is serialised.
pub fn bulk(api: &Api, req: &Request, default_index: Option<&str>) -> EsResult<Reply> {
    let ops = parse_bulk(&req.body, default_index, req.param("pipeline"))?;
    let parsed: Vec<Option<Result<Value, EsError>>> = ops
        .iter()
        .map(|op| {
            op.source.as_ref().map(|src| {
                serde_json::from_slice::<Value>(src).map_err(|e| {
                    EsError::new(
                        400,
                        "document_parsing_exception",
                        format!("[{}:{}] failed to parse: {e}", e.line(), e.column()),
                    )
                })
            })
        })
        .collect();
    let rejected: Vec<bool> = ops.iter().map(|_| api.item_429()).collect();
    let mut results = Vec::with_capacity(ops.len());
    {
        let mut store = api.store_mut();
        for ((op, parsed), rejected) in ops.iter().zip(parsed).zip(rejected) {
            let result = if rejected {
                Err(EsError::new(
                    429,
                    "es_rejected_execution_exception",
                    "rejected execution of primary operation [coordinating_and_primary_bytes=0, replica_bytes=0, all_bytes=0, primary_operation_bytes=0, max_coordinating_and_primary_bytes=0] (injected by kstash-es-emulator)",
                ))
            } else {
                execute(&mut store, op, parsed)
            };
            results.push(result);
        }
    }
    let mut items = Vec::with_capacity(ops.len());
    let mut errors = false;
    for (op, result) in ops.iter().zip(results) {
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
    Ok(Reply::ok(
        json!({"errors": errors, "took": req.took(), "items": items}),
    ))
}

fn execute(
    store: &mut Store,
    op: &BulkOp,
    parsed: Option<Result<Value, EsError>>,
) -> EsResult<WriteOutcome> {
    if op.action == "delete" {
        let target = resolve_write(store, op)?;
        return store.delete_doc(
            &target,
            op.id.as_deref().expect("validated"),
            op.routing.as_deref(),
        );
    }
    let parsed = parsed.expect("source line")?;
    if op.action == "update" {
        let target = resolve_write(store, op)?;
        return apply_update(store, &target, op, &parsed);
    }
    write(store, op, parsed, op.source.clone().expect("source line"))
}

const DS_OP_TYPE: &str = "only write ops with an op_type of create are allowed in data streams";

/// The concrete index an `update`/`delete` goes to.
fn resolve_write(store: &mut Store, op: &BulkOp) -> EsResult<String> {
    if store.data_streams.contains_key(&op.index) {
        return Err(EsError::illegal_argument(DS_OP_TYPE));
    }
    match store.write_target(&op.index)? {
        Some(t) => Ok(t),
        None if op.action == "delete" => Err(EsError::index_not_found(&op.index)),
        None => store.ensure_write_index(&op.index, op.require_alias),
    }
}

/// An `index` or `create` of one document: data-stream rules, ingest pipelines, then the store.
fn write(store: &mut Store, op: &BulkOp, mut doc: Value, source: Bytes) -> EsResult<WriteOutcome> {
    let kind = if op.action == "create" {
        OpType::Create
    } else {
        OpType::Index
    };
    let stream = if store.data_streams.contains_key(&op.index) {
        Some(op.index.clone())
    } else if store.would_create_data_stream(&op.index) {
        if kind != OpType::Create {
            return Err(EsError::illegal_argument(DS_OP_TYPE));
        }
        store.create_data_stream(&op.index)?;
        Some(op.index.clone())
    } else {
        None
    };
    let target = match &stream {
        Some(name) => {
            if kind != OpType::Create {
                return Err(EsError::illegal_argument(DS_OP_TYPE));
            }
            let ds = &store.data_streams[name];
            if op.routing.is_some() && !ds.allow_custom_routing {
                return Err(EsError::illegal_argument(format!(
                    "index request targeting data stream [{name}] specifies a custom routing but the [allow_custom_routing] setting was not enabled in the data stream's template."
                )));
            }
            ds.indices
                .last()
                .cloned()
                .expect("a data stream has a write index")
        }
        None => {
            let t = store.ensure_write_index(&op.index, op.require_alias)?;
            if let Some(ds) = store.indices.get(&t).and_then(|i| i.data_stream.clone()) {
                if kind == OpType::Index && op.if_seq_no.is_none() {
                    return Err(EsError::illegal_argument(format!(
                        "index request with op_type=index and no if_primary_term and if_seq_no set targeting backing indices is disallowed, target corresponding data stream [{ds}] instead"
                    )));
                }
            }
            t
        }
    };
    let source = run_pipelines(store, &target, op.pipeline.as_deref(), &mut doc)?.unwrap_or(source);
    if store.indices[&target].data_stream.is_some()
        && doc.get("@timestamp").is_none_or(Value::is_null)
    {
        return Err(EsError::new(
            400,
            "document_parsing_exception",
            "[1:1] failed to parse: data stream timestamp field [@timestamp] is missing",
        ));
    }
    store.index_doc(
        &target,
        op.id.clone(),
        source,
        &doc,
        op.routing.clone(),
        kind,
        op.if_seq_no,
    )
}

/// Runs the request's (or the index's default) pipeline and the index's final pipeline on `doc`;
/// returns the new source bytes when a pipeline ran. `_none` skips the default pipeline.
fn run_pipelines(
    store: &Store,
    target: &str,
    requested: Option<&str>,
    doc: &mut Value,
) -> EsResult<Option<Bytes>> {
    let idx = &store.indices[target];
    let setting = |k: &str| {
        idx.settings
            .get(k)
            .and_then(Value::as_str)
            .filter(|v| *v != "_none")
            .map(String::from)
    };
    let first = match requested {
        Some("_none") => None,
        Some(p) => Some(p.to_string()),
        None => setting("index.default_pipeline"),
    };
    let mut ran = false;
    for id in first.into_iter().chain(setting("index.final_pipeline")) {
        let p = store.pipelines.get(&id).ok_or_else(|| {
            EsError::illegal_argument(format!("pipeline with id [{id}] does not exist"))
        })?;
        let lookup = |name: &str| store.pipelines.get(name).cloned();
        crate::ingest::execute(&id, p, doc, &lookup, 0)?;
        ran = true;
    }
    Ok(ran.then(|| Bytes::from(serde_json::to_vec(doc).expect("value"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_parsing_rules() {
        let ok = Bytes::from_static(b"{\"index\":{\"_id\":\"1\"}}\n{\"a\":1}\n{\"delete\":{\"_index\":\"x\",\"_id\":\"2\"}}\n");
        let ops = parse_bulk(&ok, Some("d"), None).unwrap();
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[0].index, "d");
        assert_eq!(ops[1].index, "x");
        let e =
            parse_bulk(&Bytes::from_static(b"{\"index\":{}}\n{}"), Some("d"), None).unwrap_err();
        assert!(e.reason.contains("terminated by a newline"));
        let e = parse_bulk(
            &Bytes::from_static(b"{\"index\":{\"_routing\":\"r\"}}\n{}\n"),
            Some("d"),
            None,
        )
        .unwrap_err();
        assert!(e.reason.contains("unknown parameter [_routing]"));
        let e = parse_bulk(&Bytes::from_static(b"{\"index\":{}}\n{}\n"), None, None).unwrap_err();
        assert!(e.reason.contains("index is missing"));
    }
}
