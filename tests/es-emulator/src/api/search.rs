//! `_search`, scroll, point in time (Elasticsearch's and OpenSearch's APIs) and `_count`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};

use super::{Api, Body, Reply, Request};
use crate::contexts::Context;
use crate::error::{EsError, EsResult};
use crate::search::{
    self as s, HitChunks, HitStyle, SearchRequest, SortField, SortKey, TrackTotal,
};
use crate::store::{ScrollState, Snapshot};
use crate::util::parse_time_ms;

/// `search.max_keep_alive` default.
const MAX_KEEP_ALIVE_MS: u64 = 24 * 3_600_000;
/// `search.max_open_scroll_context` default (counted per shard).
const MAX_SCROLL_CONTEXTS: usize = 500;

fn keep_alive(v: &str) -> EsResult<Duration> {
    let ms = parse_time_ms(v).ok_or_else(|| {
        EsError::new(
            400,
            "parse_exception",
            format!("failed to parse setting [keep_alive] with value [{v}] as a time value: unit is missing or unrecognized"),
        )
    })?;
    if ms > MAX_KEEP_ALIVE_MS {
        return Err(EsError::illegal_argument(format!(
            "Keep alive for request ({v}) is too large. It must be less than (1d). This limit can be set by changing the [search.max_keep_alive] cluster level setting."
        )));
    }
    Ok(Duration::from_millis(ms))
}

/// What happened to the shards of one answer.
struct ShardOutcome {
    total: usize,
    failed: Option<(usize, Arc<str>, u32)>,
}

impl ShardOutcome {
    fn all_ok(total: usize) -> Self {
        ShardOutcome {
            total,
            failed: None,
        }
    }

    fn json(&self) -> Value {
        match &self.failed {
            None => {
                json!({"total": self.total, "successful": self.total, "skipped": 0, "failed": 0})
            }
            Some((_, index, shard)) => json!({
                "total": self.total, "successful": self.total - 1, "skipped": 0, "failed": 1,
                "failures": [{
                    "shard": shard, "index": &**index, "node": "kstash-es-node-1-id",
                    "reason": {
                        "type": "node_disconnected_exception",
                        "reason": "[kstash-es-node-1][127.0.0.1:9300][indices:data/read/search[phase/query]] disconnected (injected by kstash-es-emulator)"
                    }
                }]
            }),
        }
    }
}

/// Injects a shard failure (fault injection) into a page: the failed shard's hits are left out.
/// With `allow_partial_search_results=false` the whole request fails instead, as Elasticsearch
/// does.
fn shard_fault(
    api: &Api,
    req: &Request,
    snap: &Snapshot,
    sel: &mut Vec<s::Selected>,
) -> EsResult<ShardOutcome> {
    let n = snap.shards.len();
    let Some(ord) = api.failing_shard(n) else {
        return Ok(ShardOutcome::all_ok(n));
    };
    let view = &snap.shards[ord];
    if !req.bool_param("allow_partial_search_results", true)? {
        return Err(EsError::new(
            503,
            "search_phase_execution_exception",
            "Partial shards failure",
        )
        .with("phase", "query")
        .with("grouped", true)
        .with(
            "failed_shards",
            json!([{"shard": view.shard, "index": &*view.index, "node": "kstash-es-node-1-id",
                "reason": {"type": "node_disconnected_exception", "reason": "disconnected (injected by kstash-es-emulator)"}}]),
        ));
    }
    sel.retain(|(o, _, _)| *o as usize != ord);
    Ok(ShardOutcome {
        total: n,
        failed: Some((ord, view.index.clone(), view.shard)),
    })
}

/// Builds a search response whose hits stream out lazily.
fn respond(
    head: Vec<(&str, Value)>,
    shards: &ShardOutcome,
    total: Option<Value>,
    page: Vec<s::PageHit>,
    style: HitStyle,
    took: u64,
) -> Reply {
    let mut prefix = Vec::with_capacity(256);
    prefix.push(b'{');
    for (k, v) in head {
        prefix.extend_from_slice(format!("{}:{},", json!(k), v).as_bytes());
    }
    prefix.extend_from_slice(
        format!(
            "\"took\":{took},\"timed_out\":false,\"_shards\":{},\"hits\":{{",
            shards.json()
        )
        .as_bytes(),
    );
    if let Some(t) = total {
        prefix.extend_from_slice(format!("\"total\":{t},").as_bytes());
    }
    let max_score = if style.sorted || page.is_empty() {
        "null"
    } else {
        "1.0"
    };
    prefix.extend_from_slice(format!("\"max_score\":{max_score},\"hits\":[").as_bytes());
    let chunks = HitChunks {
        hits: page.into_iter(),
        style,
        first: true,
        tail: Some(Bytes::from_static(b"]}}")),
    };
    let body = std::iter::once(Bytes::from(prefix)).chain(chunks);
    Reply {
        status: 200,
        body: Body::Stream(Box::new(body)),
    }
}

fn page_docs(snap: &Snapshot, sel: Vec<s::Selected>) -> Vec<s::PageHit> {
    sel.into_iter()
        .filter_map(|(ord, slot, sort)| {
            let view = &snap.shards[ord as usize];
            view.docs[slot as usize]
                .as_ref()
                .map(|d| (view.index.clone(), d.clone(), sort))
        })
        .collect()
}

fn window(snap: &Snapshot) -> i64 {
    snap.shards
        .iter()
        .map(|v| v.max_result_window)
        .min()
        .unwrap_or(10_000)
}

/// OpenSearch 2.x has no `_shard_doc`: sorting on it fails like an unmapped field.
fn check_flavor_sort(api: &Api, sort: &[SortKey]) -> EsResult<()> {
    if api.is_opensearch() && sort.iter().any(|k| k.field == SortField::ShardDoc) {
        return Err(EsError::search_phase(EsError::new(
            400,
            "query_shard_exception",
            "No mapping found for [_shard_doc] in order to sort on",
        )));
    }
    Ok(())
}

/// `GET|POST /_search`, `/<index>/_search`.
pub fn search(api: &Api, req: &Request, expr: Option<&str>) -> EsResult<Reply> {
    let body = req.json()?;
    let sr = SearchRequest::parse(&req.params, &body)?;
    check_flavor_sort(api, &sr.sort)?;
    sr.validate(expr.is_some())?;
    let (snap, pit_id) = if let Some((id, ka)) = &sr.pit {
        let mut ctxs = api.contexts();
        ctxs.expire();
        if ctxs.map.get(id).is_some_and(|c| c.scroll.is_none()) && api.pit_expires_now() {
            ctxs.map.remove(id);
        }
        let ctx = ctxs
            .map
            .get_mut(id)
            .filter(|c| c.scroll.is_none())
            .ok_or_else(|| EsError::context_missing(id))?;
        if let Some(ka) = ka {
            ctx.expires = Instant::now() + keep_alive(ka)?;
        }
        (ctx.snapshot.clone(), Some(id.clone()))
    } else {
        let store = api.store();
        let names = store.resolve(expr.unwrap_or("_all"), req.resolve_opts("open", true)?)?;
        (
            Arc::new(store.snapshot_rotated(&names, api.next_rotation())),
            None,
        )
    };
    if sr.scroll.is_some() {
        let ctxs = api.contexts();
        if ctxs.scroll_shards() + snap.shards.len() > MAX_SCROLL_CONTEXTS {
            return Err(EsError::new(
                429,
                "too_many_scroll_contexts_exception",
                format!("Trying to create too many scroll contexts. Must be less than or equal to: [{MAX_SCROLL_CONTEXTS}]. This limit can be set by changing the [search.max_open_scroll_context] setting."),
            ));
        }
    }
    let win = window(&snap);
    if sr.scroll.is_some() {
        if sr.size > win {
            return Err(EsError::search_phase(EsError::illegal_argument(format!(
                "Batch size is too large, size must be less than or equal to: [{win}] but was [{}]. Scroll batch sizes cost as much memory as result windows so they are controlled by the [index.max_result_window] index level setting.",
                sr.size
            ))));
        }
    } else if sr.from + sr.size > win {
        return Err(EsError::search_phase(EsError::illegal_argument(format!(
            "Result window is too large, from + size must be less than or equal to: [{win}] but was [{}]. See the scroll api for a more efficient way to request large data sets. This limit can be set by changing the [index.max_result_window] index level setting.",
            sr.from + sr.size
        ))));
    }
    let sort = if api.is_opensearch() {
        sr.sort.clone()
    } else {
        sr.effective_sort()
    };
    let style = HitStyle {
        source: sr.source.clone(),
        sorted: s::renders_sort(&sort),
        version: sr.version,
        seq_no: sr.seq_no_primary_term,
    };
    if let Some(scroll) = &sr.scroll {
        let ka = keep_alive(scroll)?;
        let (all, total) = s::select(&snap, &sr, &sort, 0, usize::MAX)?;
        let order: Vec<(u32, u32)> = all.iter().map(|(o, sl, _)| (*o, *sl)).collect();
        let size = sr.size as usize;
        let mut first: Vec<s::Selected> = all.into_iter().take(size).collect();
        let consumed = first.len();
        let shards = shard_fault(api, req, &snap, &mut first)?;
        let page = page_docs(&snap, first);
        let state = ScrollState {
            order,
            pos: consumed,
            size,
            source: sr.source.clone(),
            sort: sort.clone(),
        };
        let cluster_uuid = api.store().cluster_uuid.clone();
        let id = api.contexts().open(
            Context {
                snapshot: snap,
                expires: Instant::now() + ka,
                scroll: Some(state),
            },
            "scroll",
            &cluster_uuid,
        );
        let total = s::total_json(total, TrackTotal::Exact, sr.total_as_int);
        return Ok(respond(
            vec![("_scroll_id", json!(id))],
            &shards,
            total,
            page,
            style,
            req.took(),
        ));
    }
    let (mut sel, total) = s::select(&snap, &sr, &sort, sr.from as usize, sr.size as usize)?;
    let shards = shard_fault(api, req, &snap, &mut sel)?;
    let page = page_docs(&snap, sel);
    let track = if sr.total_as_int && sr.track_total_hits != TrackTotal::Disabled {
        TrackTotal::Exact
    } else {
        sr.track_total_hits
    };
    let total = s::total_json(total, track, sr.total_as_int);
    let head = match pit_id {
        Some(id) => vec![("pit_id", json!(id))],
        None => vec![],
    };
    Ok(respond(head, &shards, total, page, style, req.took()))
}

fn scroll_id_from(req: &Request, body: &Value, path_id: Option<&str>) -> Option<String> {
    body.get("scroll_id")
        .and_then(Value::as_str)
        .map(String::from)
        .or_else(|| req.param("scroll_id").map(String::from))
        .or_else(|| path_id.map(String::from))
}

/// `GET|POST /_search/scroll`.
pub fn scroll(api: &Api, req: &Request, path_id: Option<&str>) -> EsResult<Reply> {
    let body = req.json()?;
    let id = scroll_id_from(req, &body, path_id)
        .ok_or_else(|| EsError::validation("scrollId is missing"))?;
    let ka = body
        .get("scroll")
        .and_then(Value::as_str)
        .map(String::from)
        .or_else(|| req.param("scroll").map(String::from));
    let as_int = req.flag("rest_total_hits_as_int");
    let mut ctxs = api.contexts();
    ctxs.expire();
    let ctx = ctxs
        .map
        .get_mut(&id)
        .filter(|c| c.scroll.is_some())
        .ok_or_else(|| EsError::context_missing(&id))?;
    if let Some(ka) = ka {
        ctx.expires = Instant::now() + keep_alive(&ka)?;
    }
    let snap = ctx.snapshot.clone();
    let st = ctx.scroll.as_mut().expect("scroll context");
    let end = (st.pos + st.size).min(st.order.len());
    let sort: Vec<SortKey> = st.sort.clone();
    let mut sel: Vec<s::Selected> = st.order[st.pos..end]
        .iter()
        .map(|(o, sl)| {
            let values = (!sort.is_empty()).then(|| {
                let doc = snap.shards[*o as usize].docs[*sl as usize]
                    .as_ref()
                    .expect("live");
                s::key_values(&sort, *o, *sl, doc)
            });
            (*o, *sl, values)
        })
        .collect();
    st.pos = end;
    let total = st.order.len();
    let style = HitStyle {
        source: st.source.clone(),
        sorted: s::renders_sort(&sort),
        version: false,
        seq_no: false,
    };
    drop(ctxs);
    // A failed shard's hits of this page are gone for good: the scroll has moved on.
    let shards = shard_fault(api, req, &snap, &mut sel)?;
    let page = page_docs(&snap, sel);
    let total = s::total_json(total, TrackTotal::Exact, as_int);
    Ok(respond(
        vec![("_scroll_id", json!(id))],
        &shards,
        total,
        page,
        style,
        req.took(),
    ))
}

/// `DELETE /_search/scroll`.
pub fn clear_scroll(api: &Api, req: &Request, path_id: Option<&str>) -> EsResult<Reply> {
    let body = req.json()?;
    let ids: Vec<String> = match body.get("scroll_id") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        _ => req
            .param("scroll_id")
            .or(path_id)
            .map(|s| s.split(',').map(String::from).collect())
            .unwrap_or_default(),
    };
    if ids.is_empty() {
        return Err(EsError::validation("no scroll ids specified"));
    }
    let mut ctxs = api.contexts();
    ctxs.expire();
    let mut freed = 0usize;
    if ids.iter().any(|i| i == "_all") {
        let before = ctxs.map.len();
        ctxs.map.retain(|_, c| c.scroll.is_none());
        freed = before - ctxs.map.len();
    } else {
        for id in &ids {
            if ctxs.map.get(id).is_some_and(|c| c.scroll.is_some()) {
                ctxs.map.remove(id);
                freed += 1;
            }
        }
    }
    let status = if freed == 0 && !ids.iter().any(|i| i == "_all") {
        404
    } else {
        200
    };
    Ok(Reply::status(
        status,
        json!({"succeeded": true, "num_freed": freed}),
    ))
}

/// `POST /<index>/_pit?keep_alive=…` (Elasticsearch) or
/// `POST /<index>/_search/point_in_time?keep_alive=…` (OpenSearch).
pub fn open_pit(api: &Api, req: &Request, expr: &str) -> EsResult<Reply> {
    let ka = req
        .param("keep_alive")
        .ok_or_else(|| EsError::validation("[keep_alive] is not specified"))?;
    let ka = keep_alive(ka)?;
    let (snap, cluster_uuid) = {
        let store = api.store();
        let names = store.resolve(expr, req.resolve_opts("open", true)?)?;
        (
            Arc::new(store.snapshot_rotated(&names, api.next_rotation())),
            store.cluster_uuid.clone(),
        )
    };
    let n = snap.shards.len();
    let id = api.contexts().open(
        Context {
            snapshot: snap,
            expires: Instant::now() + ka,
            scroll: None,
        },
        "pit",
        &cluster_uuid,
    );
    let shards = ShardOutcome::all_ok(n).json();
    if api.is_opensearch() {
        return Ok(Reply::ok(json!({
            "pit_id": id, "_shards": shards,
            "creation_time": crate::util::now_millis()
        })));
    }
    Ok(Reply::ok(json!({"id": id, "_shards": shards})))
}

/// `DELETE /_pit` with `{"id": …}` (Elasticsearch).
pub fn close_pit(api: &Api, req: &Request) -> EsResult<Reply> {
    let body = req.json()?;
    let id = body
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| EsError::validation("[id] of point-in-time must be provided"))?;
    let mut ctxs = api.contexts();
    ctxs.expire();
    let freed = match ctxs.map.get(id) {
        Some(c) if c.scroll.is_none() => {
            ctxs.map.remove(id);
            1
        }
        _ => 0,
    };
    let status = if freed == 0 { 404 } else { 200 };
    Ok(Reply::status(
        status,
        json!({"succeeded": true, "num_freed": freed}),
    ))
}

/// `DELETE /_search/point_in_time` with `{"pit_id": […]}`, or `…/_all` (OpenSearch).
pub fn delete_os_pits(api: &Api, req: &Request, all: bool) -> EsResult<Reply> {
    let mut ctxs = api.contexts();
    ctxs.expire();
    let ids: Vec<String> = if all {
        ctxs.map
            .iter()
            .filter(|(_, c)| c.scroll.is_none())
            .map(|(k, _)| k.clone())
            .collect()
    } else {
        let body = req.json()?;
        match body.get("pit_id") {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            Some(Value::String(s)) => vec![s.clone()],
            _ => return Err(EsError::validation("no pit ids specified")),
        }
    };
    let mut pits = Vec::new();
    let mut missing = false;
    for id in ids {
        let ok = ctxs.map.get(&id).is_some_and(|c| c.scroll.is_none());
        if ok {
            ctxs.map.remove(&id);
        } else {
            missing = true;
        }
        pits.push(json!({"successful": ok, "pit_id": id}));
    }
    Ok(Reply::status(
        if missing { 404 } else { 200 },
        json!({ "pits": pits }),
    ))
}

/// `GET /_search/point_in_time/_all` (OpenSearch).
pub fn list_os_pits(api: &Api) -> EsResult<Reply> {
    let mut ctxs = api.contexts();
    ctxs.expire();
    let pits: Vec<Value> = ctxs
        .map
        .iter()
        .filter(|(_, c)| c.scroll.is_none())
        .map(|(k, _)| json!({"pit_id": k}))
        .collect();
    Ok(Reply::ok(json!({ "pits": pits })))
}

/// `GET|POST /_count`, `/<index>/_count`.
pub fn count(api: &Api, req: &Request, expr: Option<&str>) -> EsResult<Reply> {
    let body = req.json()?;
    if let Value::Object(m) = &body {
        for k in m.keys() {
            if k != "query" {
                return Err(EsError::parsing(format!("request does not support [{k}]")));
            }
        }
    } else if !body.is_null() {
        return Err(EsError::parsing("request body must be an object"));
    }
    let mut sr = SearchRequest::parse(&[], &body)?;
    if let Some(q) = req.param("q") {
        if q != "*" && q != "*:*" {
            return Err(EsError::illegal_argument(format!(
                "kstash-es-emulator supports only q=* (match all), got [q={q}]"
            )));
        }
    }
    sr.track_total_hits = TrackTotal::Exact;
    let snap = {
        let store = api.store();
        let names = store.resolve(expr.unwrap_or("_all"), req.resolve_opts("open", true)?)?;
        store.snapshot(&names)
    };
    let n = snap.shards.len();
    let (total, shards) = match api.failing_shard(n) {
        Some(ord) => {
            let mut partial = snap.clone();
            let view = partial.shards.remove(ord);
            let (_, total) = s::select(&partial, &sr, &[], 0, 0)?;
            let out = ShardOutcome {
                total: n,
                failed: Some((ord, view.index.clone(), view.shard)),
            };
            (total, out)
        }
        None => (s::select(&snap, &sr, &[], 0, 0)?.1, ShardOutcome::all_ok(n)),
    };
    Ok(Reply::ok(json!({"count": total, "_shards": shards.json()})))
}
