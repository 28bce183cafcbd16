//! HTTP(S) serving: connection handling, basic auth, product headers, fault injection and the
//! request log. Handlers live in [`crate::api`].

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::api::{self, Api, Reply};
use crate::error::EsError;
use crate::util::SplitMix;

/// Response body type.
pub type RespBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// Fault injection settings; rates are probabilities per request in `[0, 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Share of requests answered 429 `es_rejected_execution_exception` without being handled.
    pub rate_429: f64,
    /// Share of requests answered 503 `unavailable_shards_exception` without being handled.
    pub rate_5xx: f64,
    /// Share of requests that are handled but whose connection is dropped mid-response.
    pub drop_rate: f64,
    /// Delay added before answering (applied to `delay_rate` of requests).
    pub delay_ms: u64,
    /// Share of requests delayed by `delay_ms` (1.0 = all).
    pub delay_rate: f64,
    /// Share of `_bulk` items answered 429 inside a 200 response (not applied).
    pub bulk_item_429_rate: f64,
    /// Share of search, scroll and count answers in which one shard fails: its hits are left
    /// out and `_shards.failed` is 1 (a 503 with `allow_partial_search_results=false`).
    pub shard_failure_rate: f64,
    /// Every N-th search on a point in time finds it expired (404
    /// `search_context_missing_exception`); 0 = never.
    pub pit_expire_every: u64,
    /// Every new point in time, scroll or search sees the shards in another order, so
    /// `_shard_doc` values of two PITs over the same index differ.
    pub shuffle_shards: bool,
    /// Every N-th scroll continuation (`GET|POST /_search/scroll`) that the server answers 200
    /// is handled — the scroll moves past the page — and then its connection is closed without
    /// a response, as when an answer is lost to a cut connection or a client timeout after the
    /// server advanced. Asking again with the same `scroll_id` returns the page after the lost
    /// one, as Elasticsearch does. 0 = never.
    pub scroll_lost_answer_every: u64,
    /// Seed: the same seed and request sequence give the same faults.
    pub seed: u64,
    /// Only requests whose path contains one of these substrings get request-level faults
    /// (e.g. `["/_search", "/_bulk"]`); empty means every request.
    pub paths: Vec<String>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            rate_429: 0.0,
            rate_5xx: 0.0,
            drop_rate: 0.0,
            delay_ms: 0,
            delay_rate: 1.0,
            bulk_item_429_rate: 0.0,
            shard_failure_rate: 0.0,
            pit_expire_every: 0,
            shuffle_shards: false,
            scroll_lost_answer_every: 0,
            seed: 0,
            paths: Vec::new(),
        }
    }
}

/// One line of the request log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoggedRequest {
    /// HTTP method.
    pub method: String,
    /// Path as sent (not percent-decoded).
    pub path: String,
    /// Decoded query parameters.
    pub query: BTreeMap<String, String>,
    /// Status answered.
    pub status: u16,
    /// Injected fault: `429`, `5xx`, `drop`, `delay`, `lost-answer` (handled, connection closed
    /// without a response) or absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
}

/// Counters of what the server did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Requests received.
    pub requests: u64,
    /// Requests answered with an injected 429.
    pub injected_429: u64,
    /// Requests answered with an injected 503.
    pub injected_5xx: u64,
    /// Responses cut off by dropping the connection.
    pub dropped: u64,
    /// Requests delayed.
    pub delayed: u64,
    /// `_bulk` items answered with an injected 429.
    pub bulk_item_429: u64,
    /// Search, scroll or count answers with an injected shard failure.
    pub shard_failures: u64,
    /// Points in time expired by fault injection.
    pub pit_expiries: u64,
    /// Scroll continuations handled whose connection was closed without a response.
    pub lost_answers: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    injected_429: AtomicU64,
    injected_5xx: AtomicU64,
    dropped: AtomicU64,
    delayed: AtomicU64,
    scroll_continuations: AtomicU64,
    lost_answers: AtomicU64,
}

/// The service error that makes hyper close the connection without writing a response (the
/// `lost-answer` fault).
#[derive(Debug)]
pub struct LostAnswer;

impl std::fmt::Display for LostAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("answer lost by fault injection (connection closed without a response)")
    }
}

impl std::error::Error for LostAnswer {}

/// Everything a connection needs.
pub struct Server {
    /// Handlers and state.
    pub api: Arc<Api>,
    auth: Option<String>,
    faults: Faults,
    rng: Mutex<SplitMix>,
    counters: Counters,
    log_file: Option<Mutex<std::io::BufWriter<std::fs::File>>>,
    log_mem: Mutex<Vec<LoggedRequest>>,
    /// `http.max_content_length`.
    pub max_body: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    TooMany,
    Unavailable,
    Drop,
}

impl Server {
    /// A server around `api`.
    pub fn new(
        api: Arc<Api>,
        auth: Option<(String, String)>,
        faults: Faults,
        log_file: Option<std::fs::File>,
    ) -> Self {
        use base64::Engine as _;
        let auth = auth.map(|(u, p)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        });
        Server {
            api,
            auth,
            rng: Mutex::new(SplitMix(faults.seed)),
            faults,
            counters: Counters::default(),
            log_file: log_file.map(|f| Mutex::new(std::io::BufWriter::new(f))),
            log_mem: Mutex::new(Vec::new()),
            max_body: 100 * 1024 * 1024,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            requests: c.requests.load(Ordering::Relaxed),
            injected_429: c.injected_429.load(Ordering::Relaxed),
            injected_5xx: c.injected_5xx.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            delayed: c.delayed.load(Ordering::Relaxed),
            bulk_item_429: self.api.bulk_item_429s.load(Ordering::Relaxed),
            shard_failures: self.api.shard_failures.load(Ordering::Relaxed),
            pit_expiries: self.api.pit_expiries.load(Ordering::Relaxed),
            lost_answers: c.lost_answers.load(Ordering::Relaxed),
        }
    }

    /// Every request logged so far.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.log_mem
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn log(&self, entry: LoggedRequest) {
        if let Some(f) = &self.log_file {
            let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
            let line = serde_json::to_string(&entry).expect("log entry");
            let _ = writeln!(f, "{line}");
            let _ = f.flush();
        }
        self.log_mem
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(entry);
    }

    fn decide(&self, path: &str) -> (Fault, bool) {
        let f = &self.faults;
        if f.rate_429 <= 0.0 && f.rate_5xx <= 0.0 && f.drop_rate <= 0.0 && f.delay_ms == 0 {
            return (Fault::None, false);
        }
        if !f.paths.is_empty() && !f.paths.iter().any(|p| path.contains(p.as_str())) {
            return (Fault::None, false);
        }
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        let r = rng.next_f64();
        let delay = f.delay_ms > 0 && rng.next_f64() < f.delay_rate;
        let fault = if r < f.rate_429 {
            Fault::TooMany
        } else if r < f.rate_429 + f.rate_5xx {
            Fault::Unavailable
        } else if r < f.rate_429 + f.rate_5xx + f.drop_rate {
            Fault::Drop
        } else {
            Fault::None
        };
        (fault, delay)
    }

    /// Whether this answer to a scroll continuation is the one to lose
    /// ([`Faults::scroll_lost_answer_every`]).
    fn loses_scroll_answer(&self, status: u16) -> bool {
        let every = self.faults.scroll_lost_answer_every;
        if every == 0 || status != 200 {
            return false;
        }
        let n = self
            .counters
            .scroll_continuations
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        n.is_multiple_of(every)
    }

    /// Serves one HTTP request. `Err` closes the connection without a response.
    pub async fn serve(
        self: Arc<Self>,
        req: hyper::Request<Incoming>,
    ) -> Result<hyper::Response<RespBody>, LostAnswer> {
        let started = Instant::now();
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let (parts, body) = req.into_parts();
        let raw_path = parts.uri.path().to_string();
        let params = parse_query(parts.uri.query().unwrap_or(""));
        let mut entry = LoggedRequest {
            method: parts.method.to_string(),
            path: raw_path.clone(),
            query: params.iter().cloned().collect(),
            status: 0,
            fault: None,
        };
        let compat = match compat_version(&parts.headers) {
            Ok(c) => c,
            Err(e) => return Ok(self.finish(entry, e.into(), false, None, false)),
        };
        if let Some(expected) = &self.auth {
            let got = parts
                .headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            if got != Some(expected.as_str()) {
                let reason = match got {
                    None => {
                        format!("missing authentication credentials for REST request [{raw_path}]")
                    }
                    Some(_) => format!("unable to authenticate user for REST request [{raw_path}]"),
                };
                let e = EsError::new(401, "security_exception", reason).with(
                    "header",
                    json!({"WWW-Authenticate": ["Basic realm=\"security\", charset=\"UTF-8\""]}),
                );
                let mut resp = self.finish(entry, e.into(), false, compat, false);
                resp.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"security\", charset=\"UTF-8\""),
                );
                return Ok(resp);
            }
        }
        let (fault, delay) = self.decide(&raw_path);
        if delay {
            self.counters.delayed.fetch_add(1, Ordering::Relaxed);
            entry.fault = Some("delay".into());
            tokio::time::sleep(Duration::from_millis(self.faults.delay_ms)).await;
        }
        match fault {
            Fault::TooMany => {
                self.counters.injected_429.fetch_add(1, Ordering::Relaxed);
                entry.fault = Some("429".into());
                let e = EsError::new(
                    429,
                    "es_rejected_execution_exception",
                    "rejected execution of coordinating operation [coordinating_and_primary_bytes=0, replica_bytes=0, all_bytes=0, coordinating_operation_bytes=0, max_coordinating_and_primary_bytes=0] (injected by kstash-es-emulator)",
                );
                // Drain the body so keep-alive connections stay usable.
                let _ = body.collect().await;
                return Ok(self.finish(entry, e.into(), false, compat, false));
            }
            Fault::Unavailable => {
                self.counters.injected_5xx.fetch_add(1, Ordering::Relaxed);
                entry.fault = Some("5xx".into());
                let e = EsError::new(
                    503,
                    "unavailable_shards_exception",
                    "[0] primary shard is not active Timeout: [1m] (injected by kstash-es-emulator)",
                );
                let _ = body.collect().await;
                return Ok(self.finish(entry, e.into(), false, compat, false));
            }
            Fault::Drop => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                entry.fault = Some("drop".into());
            }
            Fault::None => {}
        }
        let body = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                let e = EsError::illegal_argument(format!("failed to read the request body: {e}"));
                return Ok(self.finish(entry, e.into(), false, compat, false));
            }
        };
        if body.len() > self.max_body {
            let e = EsError::new(
                413,
                "content_too_long_exception",
                format!(
                    "Request content was too large: [{}] bytes, the limit is [{}]",
                    body.len(),
                    self.max_body
                ),
            );
            return Ok(self.finish(entry, e.into(), false, compat, false));
        }
        let segments: Vec<String> = raw_path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect();
        let pretty = params
            .iter()
            .any(|(k, v)| k == "pretty" && (v.is_empty() || v == "true"));
        let request = api::Request {
            method: parts.method.clone(),
            segments,
            params,
            body,
            started,
        };
        let scroll_continuation = matches!(parts.method, http::Method::GET | http::Method::POST)
            && request.segments.len() >= 2
            && request.segments[0] == "_search"
            && request.segments[1] == "scroll";
        let api = self.api.clone();
        let reply = tokio::task::spawn_blocking(move || api.handle(&request))
            .await
            .unwrap_or_else(|e| {
                EsError::new(500, "exception", format!("handler panicked: {e}")).into()
            });
        if fault == Fault::None && scroll_continuation && self.loses_scroll_answer(reply.status) {
            self.counters.lost_answers.fetch_add(1, Ordering::Relaxed);
            entry.fault = Some("lost-answer".into());
            entry.status = reply.status;
            self.log(entry);
            return Err(LostAnswer);
        }
        Ok(self.finish(entry, reply, fault == Fault::Drop, compat, pretty))
    }

    fn finish(
        &self,
        mut entry: LoggedRequest,
        reply: Reply,
        drop_mid_response: bool,
        compat: Option<u8>,
        pretty: bool,
    ) -> hyper::Response<RespBody> {
        entry.status = reply.status;
        self.log(entry);
        let json_type = match compat {
            Some(v) => format!("application/vnd.elasticsearch+json;compatible-with={v}"),
            None => "application/json".to_string(),
        };
        let (content_type, body): (String, RespBody) = match reply.body {
            api::Body::Json(v) => {
                let bytes = if pretty {
                    serde_json::to_vec_pretty(&v)
                } else {
                    serde_json::to_vec(&v)
                };
                (
                    json_type,
                    bytes_body(Bytes::from(bytes.expect("json")), drop_mid_response),
                )
            }
            api::Body::Raw(b, ct) => (ct.to_string(), bytes_body(b, drop_mid_response)),
            api::Body::Stream(it) => (json_type, stream_body(it, drop_mid_response)),
            api::Body::Empty => (
                json_type,
                Full::new(Bytes::new())
                    .map_err(|e: Infallible| match e {})
                    .boxed_unsync(),
            ),
        };
        let mut resp = hyper::Response::new(body);
        *resp.status_mut() =
            StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let h = resp.headers_mut();
        if !self.api.is_opensearch() {
            h.insert(
                "x-elastic-product",
                HeaderValue::from_static("Elasticsearch"),
            );
        }
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_str(&content_type).expect("content type"),
        );
        resp
    }
}

fn cut_error() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "connection dropped by fault injection",
    )
}

fn bytes_body(b: Bytes, drop_mid_response: bool) -> RespBody {
    if !drop_mid_response {
        return Full::new(b)
            .map_err(|e: Infallible| match e {})
            .boxed_unsync();
    }
    let half = b.slice(..b.len() / 2);
    let frames: Vec<Result<Frame<Bytes>, std::io::Error>> =
        vec![Ok(Frame::data(half)), Err(cut_error())];
    StreamBody::new(futures::stream::iter(frames)).boxed_unsync()
}

fn stream_body(it: Box<dyn Iterator<Item = Bytes> + Send>, drop_mid_response: bool) -> RespBody {
    if drop_mid_response {
        let mut it = it;
        let first = it.next().unwrap_or_default();
        let half = first.slice(..first.len() / 2);
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> =
            vec![Ok(Frame::data(half)), Err(cut_error())];
        return StreamBody::new(futures::stream::iter(frames)).boxed_unsync();
    }
    StreamBody::new(futures::stream::iter(it.map(|b| Ok(Frame::data(b))))).boxed_unsync()
}

/// The `compatible-with` version requested in `Accept`/`Content-Type`, if any (7 or 8).
fn compat_version(headers: &http::HeaderMap) -> Result<Option<u8>, EsError> {
    let mut found = None;
    for name in [http::header::ACCEPT, http::header::CONTENT_TYPE] {
        for v in headers.get_all(&name) {
            let Ok(s) = v.to_str() else { continue };
            if let Some(pos) = s.find("compatible-with=") {
                let ver = s[pos + 16..].trim().trim_end_matches(';');
                let ver = ver.split([';', ',', ' ']).next().unwrap_or("");
                match ver {
                    "7" => found = Some(7),
                    "8" => found = Some(8),
                    _ => {
                        return Err(EsError::new(
                            400,
                            "media_type_header_exception",
                            "Invalid media-type value on headers [Content-Type, Accept]",
                        )
                        .with_reason(format!(
                            "Invalid media-type value on headers [Content-Type, Accept]: compatible-with={ver} is not supported (7 or 8)"
                        )))
                    }
                }
            }
        }
    }
    Ok(found)
}

/// Percent-decodes a path segment or query component (`+` is left alone).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a query string into decoded pairs (`+` means space, as in forms).
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("a%2Cb"), "a,b");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("x%4"), "x%4");
        assert_eq!(
            parse_query("scroll=10m&from=0&q=a+b&flag"),
            vec![
                ("scroll".into(), "10m".into()),
                ("from".into(), "0".into()),
                ("q".into(), "a b".into()),
                ("flag".into(), "".into())
            ]
        );
    }
}
