//! `_search`, scroll, point in time and `_count`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};

use super::{Api, Body, Reply, Request};
use crate::error::{EsError, EsResult};
use crate::search::{self as s, HitChunks, HitStyle, SearchRequest, SortKey, TrackTotal};
use crate::store::{Context, ScrollState, Snapshot};
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

fn shards_json(n: usize) -> Value {
    json!({"total": n, "successful": n, "skipped": 0, "failed": 0})
}

/// Builds a search response whose hits stream out lazily.
fn respond(
    head: Vec<(&str, Value)>,
    shards: usize,
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
            shards_json(shards)
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

/// `GET|POST /_search`, `/<index>/_search`.
pub fn search(api: &Api, req: &Request, expr: Option<&str>) -> EsResult<Reply> {
    let body = req.json()?;
    let sr = SearchRequest::parse(&req.params, &body)?;
    sr.validate(expr.is_some())?;
    let (snap, pit_id) = {
        let mut store = api.store();
        store.expire_contexts();
        if let Some((id, ka)) = &sr.pit {
            let ctx = store
                .contexts
                .get_mut(id)
                .filter(|c| c.scroll.is_none())
                .ok_or_else(|| EsError::context_missing(id))?;
            if let Some(ka) = ka {
                ctx.expires = Instant::now() + keep_alive(ka)?;
            }
            (ctx.snapshot.clone(), Some(id.clone()))
        } else {
            let names = store.resolve(expr.unwrap_or("_all"), req.resolve_opts())?;
            let snap = Arc::new(store.snapshot(&names));
            if sr.scroll.is_some() {
                let shards = snap.shards.len();
                let open: usize = store
                    .contexts
                    .values()
                    .filter(|c| c.scroll.is_some())
                    .map(|c| c.snapshot.shards.len())
                    .sum();
                if open + shards > MAX_SCROLL_CONTEXTS {
                    return Err(EsError::new(
                        429,
                        "too_many_scroll_contexts_exception",
                        format!("Trying to create too many scroll contexts. Must be less than or equal to: [{MAX_SCROLL_CONTEXTS}]. This limit can be set by changing the [search.max_open_scroll_context] setting."),
                    ));
                }
            }
            (snap, None)
        }
    };
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
    let sort = sr.effective_sort();
    let style = HitStyle {
        source: sr.source.clone(),
        sorted: s::renders_sort(&sort),
        version: sr.version,
        seq_no: sr.seq_no_primary_term,
    };
    let shards = snap.shards.len();
    if let Some(scroll) = &sr.scroll {
        let ka = keep_alive(scroll)?;
        let (all, total) = s::select(&snap, &sr, &sort, 0, usize::MAX)?;
        let order: Vec<(u32, u32)> = all.iter().map(|(o, sl, _)| (*o, *sl)).collect();
        let size = sr.size as usize;
        let first: Vec<s::Selected> = all.into_iter().take(size).collect();
        let page = page_docs(&snap, first);
        let state = ScrollState {
            order,
            pos: page.len(),
            size,
            source: sr.source.clone(),
            sort: sort.clone(),
        };
        let id = api.store().open_context(
            Context {
                snapshot: snap,
                expires: Instant::now() + ka,
                scroll: Some(state),
            },
            "scroll",
        );
        let total = s::total_json(total, TrackTotal::Exact, sr.total_as_int);
        return Ok(respond(
            vec![("_scroll_id", json!(id))],
            shards,
            total,
            page,
            style,
            req.took(),
        ));
    }
    let (sel, total) = s::select(&snap, &sr, &sort, sr.from as usize, sr.size as usize)?;
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
    Ok(respond(head, shards, total, page, style, req.took()))
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
    let mut store = api.store();
    store.expire_contexts();
    let ctx = store
        .contexts
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
    let sel: Vec<s::Selected> = st.order[st.pos..end]
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
    drop(store);
    let page = page_docs(&snap, sel);
    let total = s::total_json(total, TrackTotal::Exact, as_int);
    Ok(respond(
        vec![("_scroll_id", json!(id))],
        snap.shards.len(),
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
    let mut store = api.store();
    store.expire_contexts();
    let mut freed = 0usize;
    if ids.iter().any(|i| i == "_all") {
        let before = store.contexts.len();
        store.contexts.retain(|_, c| c.scroll.is_none());
        freed = before - store.contexts.len();
    } else {
        for id in &ids {
            if store.contexts.get(id).is_some_and(|c| c.scroll.is_some()) {
                store.contexts.remove(id);
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

/// `POST /<index>/_pit?keep_alive=…`.
pub fn open_pit(api: &Api, req: &Request, expr: &str) -> EsResult<Reply> {
    let ka = req
        .param("keep_alive")
        .ok_or_else(|| EsError::validation("[keep_alive] is not specified"))?;
    let ka = keep_alive(ka)?;
    let mut store = api.store();
    let names = store.resolve(expr, req.resolve_opts())?;
    let snap = Arc::new(store.snapshot(&names));
    let n = snap.shards.len();
    let id = store.open_context(
        Context {
            snapshot: snap,
            expires: Instant::now() + ka,
            scroll: None,
        },
        "pit",
    );
    Ok(Reply::ok(json!({"id": id, "_shards": shards_json(n)})))
}

/// `DELETE /_pit` with `{"id": …}`.
pub fn close_pit(api: &Api, req: &Request) -> EsResult<Reply> {
    let body = req.json()?;
    let id = body
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| EsError::validation("[id] of point-in-time must be provided"))?;
    let mut store = api.store();
    store.expire_contexts();
    let freed = match store.contexts.get(id) {
        Some(c) if c.scroll.is_none() => {
            store.contexts.remove(id);
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
        let names = store.resolve(expr.unwrap_or("_all"), req.resolve_opts())?;
        store.snapshot(&names)
    };
    let (_, total) = s::select(&snap, &sr, &[], 0, 0)?;
    Ok(Reply::ok(
        json!({"count": total, "_shards": shards_json(snap.shards.len())}),
    ))
}
