//! HTTP(S) serving: authentication, discovery, OpenAPI, resource verbs and watch streams.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, watch};

use crate::api::{Api, Reply, Target};
use crate::objects::present;
use crate::query::{Query, Selectors};
use crate::status::ApiError;
use crate::store::EventType;
use crate::table;

/// Response body.
pub type Body = BoxBody<Bytes, Infallible>;

/// Per-server context.
pub struct Ctx {
    /// The API.
    pub api: Arc<Api>,
    /// The bearer token.
    pub token: String,
    /// Flips to true on shutdown.
    pub shutdown: watch::Receiver<bool>,
    /// Address for `/api`'s serverAddressByClientCIDRs.
    pub addr: String,
    /// The audit log, when auditing is on.
    pub audit: Option<Arc<crate::audit::AuditLog>>,
}

const MAX_BODY: usize = 16 * 1024 * 1024;

fn json_response(code: u16, body: &Value, content_type: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/json")),
    );
    r
}

fn ok_json(body: &Value) -> Response<Body> {
    json_response(200, body, "application/json")
}

fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &e.to_status(), "application/json")
}

fn reply_response(r: Reply) -> Response<Body> {
    let mut resp = json_response(r.code, &r.body, "application/json");
    for w in r.warnings {
        if let Ok(v) = HeaderValue::from_str(&format!("299 - {w:?}")) {
            resp.headers_mut().append("warning", v);
        }
    }
    resp
}

/// Handles one request.
pub async fn handle(ctx: Arc<Ctx>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    Ok(match handle_inner(ctx, req).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    })
}

async fn handle_inner(ctx: Arc<Ctx>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().to_string();
    let public = matches!(
        path.as_str(),
        "/healthz" | "/livez" | "/readyz" | "/version"
    );
    if !public {
        let ok = req
            .headers()
            .get("authorization")
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .is_some_and(|t| constant_eq(t.trim().as_bytes(), ctx.token.as_bytes()));
        if !ok {
            return Err(ApiError::new(401, "Unauthorized", "Unauthorized"));
        }
    }
    let method = req.method().clone();
    let q = Query::parse(req.uri().query());
    let accept = req
        .headers()
        .get("accept")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let ctype = req
        .headers()
        .get("content-type")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let segs_ref: Vec<&str> = segs.iter().map(String::as_str).collect();
    let api = ctx.api.clone();
    if let Some(log) = &ctx.audit {
        if let Some(mut r) = crate::audit::record_for(&method, &segs_ref, q.flag("watch")) {
            r.user_agent = req
                .headers()
                .get("user-agent")
                .and_then(|h| h.to_str().ok())
                .map(str::to_string);
            log.push(r);
        }
    }

    if method == Method::GET {
        match segs_ref.as_slice() {
            ["healthz"] | ["livez"] | ["readyz"] => {
                let mut r = Response::new(Full::new(Bytes::from_static(b"ok")).boxed());
                r.headers_mut().insert(
                    "content-type",
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                return Ok(r);
            }
            ["version"] => {
                return Ok(ok_json(
                    &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0+kstash", "gitCommit": "kstash",
                    "gitTreeState": "clean", "buildDate": "2026-11-26T00:00:00Z", "goVersion": "n/a", "compiler": "rustc",
                    "platform": format!("{}/{}", std::env::consts::OS, if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH })}),
                ))
            }
            ["api"] => {
                return Ok(ok_json(&json!({"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ctx.addr}]})))
            }
            ["apis"] => return Ok(ok_json(&api.registry().api_group_list())),
            ["apis", g] => {
                return api
                    .registry()
                    .api_group(g)
                    .map(|v| ok_json(&v))
                    .ok_or_else(ApiError::unknown_path)
            }
            ["api", v] => {
                return api
                    .registry()
                    .resource_list("", v)
                    .map(|v| ok_json(&v))
                    .ok_or_else(ApiError::unknown_path)
            }
            ["apis", g, v] => {
                return api
                    .registry()
                    .resource_list(g, v)
                    .map(|v| ok_json(&v))
                    .ok_or_else(ApiError::unknown_path)
            }
            ["openapi", "v3"] => return Ok(ok_json(&api.registry().openapi_index())),
            ["openapi", "v3", rest @ ..] => {
                let (g, v) = crate::resources::split_gv_path(&rest.join("/"));
                let doc = api
                    .registry()
                    .openapi_doc(&g, &v)
                    .ok_or_else(ApiError::unknown_path)?;
                let mut r = ok_json(&doc);
                if q.get("hash").is_some() {
                    r.headers_mut().insert(
                        "cache-control",
                        HeaderValue::from_static("public, immutable"),
                    );
                }
                return Ok(r);
            }
            _ => {}
        }
    }
    if segs_ref
        .first()
        .is_some_and(|s| *s == "openapi" || *s == "healthz" || *s == "version")
    {
        return Err(ApiError::unknown_path());
    }
    let t = api.route(&segs_ref)?;
    let body = if matches!(
        method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        let collected = http_body_util::Limited::new(req.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| {
                ApiError::new(413, "RequestEntityTooLarge", format!("request body: {e}"))
            })?;
        collected.to_bytes()
    } else {
        Bytes::new()
    };
    let is_watch = q.flag("watch");
    if method == Method::GET && t.name.is_none() && is_watch {
        return watch_stream(ctx.clone(), t, q, &accept).await;
    }
    if method == Method::GET && t.name.is_some() && is_watch {
        return Err(ApiError::method_not_allowed());
    }
    let run = move || -> Result<Response<Body>, ApiError> {
        let as_table = accept.contains("as=Table");
        match (method, t.name.is_some()) {
            (Method::GET, true) => {
                let o = api.get(&t)?;
                if as_table {
                    let rv = o["metadata"]["resourceVersion"].clone();
                    return Ok(ok_json(&table::table(
                        &t.def,
                        &[o],
                        q.get("includeObject").unwrap_or("Metadata"),
                        true,
                        json!({"resourceVersion": rv}),
                    )));
                }
                Ok(ok_json(&o))
            }
            (Method::GET, false) => {
                validate_list_options(&q)?;
                let (items, rv, cont) = api.list(&t, &q)?;
                let mut meta = json!({"resourceVersion": rv.to_string()});
                if let Some(c) = &cont {
                    meta["continue"] = json!(c);
                }
                if as_table {
                    let include = q.get("includeObject").unwrap_or("Metadata");
                    if !matches!(include, "Metadata" | "Object" | "None" | "") {
                        return Err(ApiError::bad_request(format!(
                            "includeObject: unsupported value {include:?}"
                        )));
                    }
                    return Ok(ok_json(&table::table(&t.def, &items, include, true, meta)));
                }
                Ok(ok_json(
                    &json!({"kind": format!("{}List", t.def.kind), "apiVersion": t.def.api_version(), "metadata": meta, "items": items}),
                ))
            }
            (Method::POST, false) => api.create(&t, &body, &ctype, &q).map(reply_response),
            (Method::PUT, true) => api.update(&t, &body, &ctype, &q).map(reply_response),
            (Method::PATCH, true) => api.patch(&t, &body, &ctype, &q).map(reply_response),
            (Method::DELETE, true) => api.delete(&t, &body, &q).map(reply_response),
            (Method::DELETE, false) => api.delete_collection(&t, &body, &q).map(reply_response),
            _ => Err(ApiError::method_not_allowed()),
        }
    };
    tokio::task::spawn_blocking(run)
        .await
        .map_err(ApiError::internal)?
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn list_options_invalid(msg: &str, field: &str, detail: &str) -> ApiError {
    ApiError::new(422, "Invalid", format!("ListOptions.meta.k8s.io \"\" is invalid: {field}: {msg}"))
        .with_details(json!({"group": "meta.k8s.io", "kind": "ListOptions", "causes": [{"reason": "FieldValueForbidden", "message": detail, "field": field}]}))
}

fn validate_list_options(q: &Query) -> Result<(), ApiError> {
    if q.get("sendInitialEvents").is_some() && !q.flag("watch") {
        return Err(list_options_invalid(
            "Forbidden: sendInitialEvents is forbidden for list",
            "sendInitialEvents",
            "Forbidden: sendInitialEvents is forbidden for list",
        ));
    }
    if let Some(m) = q.get("resourceVersionMatch").filter(|m| !m.is_empty()) {
        if q.get("resourceVersion").unwrap_or_default().is_empty() {
            return Err(list_options_invalid(
                "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
                "resourceVersionMatch",
                "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
            ));
        }
        if !matches!(m, "NotOlderThan" | "Exact") {
            return Err(list_options_invalid(
                &format!("Unsupported value: {m:?}"),
                "resourceVersionMatch",
                "Unsupported value",
            ));
        }
    }
    Ok(())
}

fn event_line(
    t: &Target,
    kind: &str,
    obj: &Value,
    as_table: bool,
    first: &mut bool,
    include: &str,
) -> Bytes {
    let body = if as_table {
        let tb = table::table(
            &t.def,
            &[present(&t.def, obj)],
            include,
            *first,
            json!({"resourceVersion": obj["metadata"]["resourceVersion"]}),
        );
        *first = false;
        tb
    } else {
        present(&t.def, obj)
    };
    let mut s = json!({"type": kind, "object": body}).to_string();
    s.push('\n');
    Bytes::from(s)
}

fn bookmark(t: &Target, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let mut s = json!({"type": "BOOKMARK", "object": {"kind": t.def.kind, "apiVersion": t.def.api_version(), "metadata": meta}}).to_string();
    s.push('\n');
    Bytes::from(s)
}

async fn watch_stream(
    ctx: Arc<Ctx>,
    t: Target,
    q: Query,
    accept: &str,
) -> Result<Response<Body>, ApiError> {
    let sel = Selectors::from_query(&q)?;
    let send_initial = q.get("sendInitialEvents").map(|v| v == "true" || v == "1");
    if send_initial.is_some() && q.get("resourceVersionMatch") != Some("NotOlderThan") {
        return Err(list_options_invalid(
            "Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            "sendInitialEvents",
            "Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
        ));
    }
    if send_initial.is_none() && q.get("resourceVersionMatch").is_some_and(|m| !m.is_empty()) {
        return Err(list_options_invalid(
            "Forbidden: resourceVersionMatch is forbidden for watch",
            "resourceVersionMatch",
            "Forbidden: resourceVersionMatch is forbidden for watch",
        ));
    }
    let bookmarks = q.flag("allowWatchBookmarks");
    let timeout = q.uint("timeoutSeconds")?.unwrap_or(1800).clamp(1, 3600);
    let as_table = accept.contains("as=Table");
    let include = q.get("includeObject").unwrap_or("Metadata").to_string();
    let rv_param = q.get("resourceVersion").unwrap_or_default().to_string();
    let rv_from: Option<u64> = if rv_param.is_empty() || rv_param == "0" {
        None
    } else {
        Some(rv_param.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "invalid resourceVersion {rv_param:?}: must be an integer"
            ))
        })?)
    };
    let ns = t.ns.clone();
    let matches_scope = {
        let storage = t.def.storage.clone();
        let ns = ns.clone();
        move |s: &str, o: &Value| {
            s == storage
                && ns
                    .as_ref()
                    .is_none_or(|n| o["metadata"]["namespace"].as_str() == Some(n.as_str()))
        }
    };
    let mut initial: Vec<Bytes> = vec![];
    let mut first = true;
    let mut rx;
    let start_rv;
    {
        let st = ctx
            .api
            .store
            .state
            .read()
            .unwrap_or_else(|e| e.into_inner());
        rx = ctx.api.store.tx.subscribe();
        start_rv = st.rv;
        let snapshot = send_initial == Some(true) || (rv_from.is_none() && send_initial.is_none());
        if snapshot {
            for o in st.list(&t.def.storage, ns.as_deref()) {
                if sel.matches(&o) {
                    initial.push(event_line(&t, "ADDED", &o, as_table, &mut first, &include));
                }
            }
            if send_initial == Some(true) {
                initial.push(bookmark(&t, start_rv, true));
            }
        } else if let Some(from) = rv_from {
            if from < st.compacted || from > st.rv + 1_000_000 {
                let e = ApiError::expired(format!(
                    "too old resource version: {from} ({})",
                    st.compacted + 1
                ));
                let mut s = json!({"type": "ERROR", "object": e.to_status()}).to_string();
                s.push('\n');
                let body = StreamBody::new(futures::stream::iter(vec![Ok::<_, Infallible>(
                    Frame::data(Bytes::from(s)),
                )]))
                .boxed();
                let mut r = Response::new(body);
                r.headers_mut()
                    .insert("content-type", HeaderValue::from_static("application/json"));
                return Ok(r);
            }
            for ev in st.history.iter().filter(|e| e.rv > from) {
                if let Some(line) =
                    filter_event(&t, &sel, &matches_scope, ev, as_table, &mut first, &include)
                {
                    initial.push(line);
                }
            }
        }
    }
    let (tx, out_rx) = mpsc::channel::<Bytes>(256);
    let mut shutdown = ctx.shutdown.clone();
    let api = ctx.api.clone();
    tokio::spawn(async move {
        for line in initial {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(Duration::from_secs(timeout));
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        tick.tick().await;
        let mut last_rv = start_rv;
        loop {
            tokio::select! {
                _ = &mut deadline => {
                    if bookmarks {
                        let _ = tx.send(bookmark(&t, last_rv.max(api.store.rv()), false)).await;
                    }
                    return;
                }
                _ = shutdown.changed() => return,
                _ = tick.tick() => {
                    if bookmarks && tx.send(bookmark(&t, last_rv, false)).await.is_err() {
                        return;
                    }
                }
                ev = rx.recv() => match ev {
                    Ok(ev) => {
                        if ev.rv <= start_rv {
                            continue;
                        }
                        last_rv = ev.rv;
                        if let Some(line) = filter_event(&t, &sel, &matches_scope, &ev, as_table, &mut first, &include) {
                            if tx.send(line).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tx.closed() => return,
            }
        }
    });
    let stream = futures::stream::unfold(out_rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut r = Response::new(StreamBody::new(stream).boxed());
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    Ok(r)
}

fn filter_event(
    t: &Target,
    sel: &Selectors,
    scope: &impl Fn(&str, &Value) -> bool,
    ev: &crate::store::Event,
    as_table: bool,
    first: &mut bool,
    include: &str,
) -> Option<Bytes> {
    if !scope(&ev.storage, &ev.object) {
        return None;
    }
    let now = sel.matches(&ev.object);
    let before = ev.prev.as_ref().map(|p| sel.matches(p)).unwrap_or(now);
    let kind = match ev.kind {
        EventType::Deleted => {
            if !now {
                return None;
            }
            "DELETED"
        }
        EventType::Added => {
            if !now {
                return None;
            }
            "ADDED"
        }
        EventType::Modified => match (before, now) {
            (true, true) => "MODIFIED",
            (false, true) => "ADDED",
            (true, false) => "DELETED",
            (false, false) => return None,
        },
    };
    Some(event_line(t, kind, &ev.object, as_table, first, include))
}
