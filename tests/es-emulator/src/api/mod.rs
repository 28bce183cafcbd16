//! The REST layer: routes `(method, path)` to handlers that read and change the [`Store`].

mod docs;
mod indices;
mod meta;
mod search;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use bytes::Bytes;
use http::Method;
use serde_json::{json, Value};

use crate::error::{EsError, EsResult};
use crate::store::{Resolve, Store};
use crate::util::SplitMix;

/// A response body.
pub enum Body {
    /// A JSON value.
    Json(Value),
    /// Raw bytes with a content type.
    Raw(Bytes, &'static str),
    /// JSON produced lazily in chunks (large search pages).
    Stream(Box<dyn Iterator<Item = Bytes> + Send>),
    /// No body (HEAD-style answers).
    Empty,
}

/// A handler's answer.
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Body.
    pub body: Body,
}

impl Reply {
    /// 200 with a JSON body.
    pub fn ok(v: Value) -> Self {
        Reply {
            status: 200,
            body: Body::Json(v),
        }
    }

    /// A JSON body with a status.
    pub fn status(status: u16, v: Value) -> Self {
        Reply {
            status,
            body: Body::Json(v),
        }
    }

    /// A status with no body.
    pub fn empty(status: u16) -> Self {
        Reply {
            status,
            body: Body::Empty,
        }
    }

    /// `{"acknowledged":true}`.
    pub fn ack() -> Self {
        Self::ok(json!({"acknowledged": true}))
    }
}

impl From<EsError> for Reply {
    fn from(e: EsError) -> Self {
        Reply {
            status: e.status,
            body: Body::Json(e.to_json()),
        }
    }
}

/// A parsed request as handlers see it.
pub struct Request {
    /// Method.
    pub method: Method,
    /// Percent-decoded path segments (empty for `/`).
    pub segments: Vec<String>,
    /// Decoded query parameters in order.
    pub params: Vec<(String, String)>,
    /// Request body.
    pub body: Bytes,
    /// When the request arrived (for `took`).
    pub started: Instant,
}

impl Request {
    /// A query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean query parameter (`?x`, `?x=true`).
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.param(name), Some("") | Some("true"))
    }

    /// The body as JSON (`Null` when empty).
    pub fn json(&self) -> EsResult<Value> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            EsError::new(
                400,
                "x_content_parse_exception",
                format!(
                    "[{}:{}] failed to parse request body: {e}",
                    e.line(),
                    e.column()
                ),
            )
        })
    }

    /// Index-resolution options from `ignore_unavailable`/`expand_wildcards`.
    pub fn resolve_opts(&self) -> Resolve {
        let ew = self.param("expand_wildcards").unwrap_or("open");
        Resolve {
            ignore_unavailable: self.flag("ignore_unavailable"),
            include_hidden: ew.split(',').any(|w| w == "all" || w == "hidden"),
            aliases: true,
        }
    }

    /// Milliseconds since arrival.
    pub fn took(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

/// Names shown by `GET /`.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `cluster_name`.
    pub cluster_name: String,
    /// `name` (node name).
    pub node_name: String,
    /// `version.number`.
    pub version: String,
}

/// Shared server state behind every request.
pub struct Api {
    /// The cluster state.
    pub store: Mutex<Store>,
    /// Names for `GET /`.
    pub identity: Identity,
    /// Probability that a `_bulk` item is answered 429 without being applied.
    pub bulk_item_429_rate: f64,
    rng: Mutex<SplitMix>,
    /// Number of injected per-item 429s so far.
    pub bulk_item_429s: AtomicU64,
}

impl Api {
    /// New state around a store.
    pub fn new(store: Store, identity: Identity, bulk_item_429_rate: f64, seed: u64) -> Self {
        Api {
            store: Mutex::new(store),
            identity,
            bulk_item_429_rate,
            rng: Mutex::new(SplitMix(seed ^ 0xB01C)),
            bulk_item_429s: AtomicU64::new(0),
        }
    }

    /// Locks the store (a poisoned lock is recovered: the store has no invariants spanning a panic).
    pub fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn item_429(&self) -> bool {
        if self.bulk_item_429_rate <= 0.0 {
            return false;
        }
        let hit = self
            .rng
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .next_f64()
            < self.bulk_item_429_rate;
        if hit {
            self.bulk_item_429s.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    /// Answers one request.
    pub fn handle(&self, req: &Request) -> Reply {
        match self.route(req) {
            Ok(r) => r,
            Err(e) => {
                if req.method == Method::HEAD {
                    Reply::empty(e.status)
                } else {
                    e.into()
                }
            }
        }
    }

    fn route(&self, req: &Request) -> EsResult<Reply> {
        use Method as M;
        let seg: Vec<&str> = req.segments.iter().map(String::as_str).collect();
        let m = &req.method;
        let wrong = |allowed: &str| -> EsResult<Reply> {
            Ok(Reply::status(
                405,
                json!({"error": format!("Incorrect HTTP method for uri [/{}] and method [{}], allowed: [{allowed}]", seg.join("/"), m), "status": 405}),
            ))
        };
        match seg.as_slice() {
            [] => match *m {
                M::GET => Ok(meta::info(self)),
                M::HEAD => Ok(Reply::empty(200)),
                _ => wrong("HEAD, GET"),
            },
            ["_cluster", "health"] => meta::health(self, req, None),
            ["_cluster", "health", idx] => meta::health(self, req, Some(idx)),
            ["_cat", "indices"] => meta::cat_indices(self, req, None),
            ["_cat", "indices", idx] => meta::cat_indices(self, req, Some(idx)),
            ["_bulk"] | [_, "_bulk"] => match *m {
                M::POST | M::PUT => {
                    docs::bulk(self, req, seg.first().filter(|_| seg.len() == 2).copied())
                }
                _ => wrong("POST, PUT"),
            },
            ["_search", "scroll"] | ["_search", "scroll", _] => match *m {
                M::GET | M::POST => search::scroll(self, req, seg.get(2).copied()),
                M::DELETE => search::clear_scroll(self, req, seg.get(2).copied()),
                _ => wrong("GET, POST, DELETE"),
            },
            ["_search"] | [_, "_search"] => match *m {
                M::GET | M::POST => {
                    search::search(self, req, seg.first().filter(|_| seg.len() == 2).copied())
                }
                _ => wrong("GET, POST"),
            },
            ["_count"] | [_, "_count"] => match *m {
                M::GET | M::POST => {
                    search::count(self, req, seg.first().filter(|_| seg.len() == 2).copied())
                }
                _ => wrong("GET, POST"),
            },
            ["_pit"] => match *m {
                M::DELETE => search::close_pit(self, req),
                _ => wrong("DELETE"),
            },
            [idx, "_pit"] => match *m {
                M::POST => search::open_pit(self, req, idx),
                _ => wrong("POST"),
            },
            ["_refresh"] | [_, "_refresh"] => match *m {
                M::GET | M::POST => {
                    indices::refresh(self, req, seg.first().filter(|_| seg.len() == 2).copied())
                }
                _ => wrong("GET, POST"),
            },
            ["_mapping"] => match *m {
                M::GET => indices::get_mapping(self, req, None),
                _ => wrong("GET"),
            },
            [idx, "_mapping"] => match *m {
                M::GET => indices::get_mapping(self, req, Some(idx)),
                M::PUT | M::POST => indices::put_mapping(self, req, idx),
                _ => wrong("GET, PUT, POST"),
            },
            ["_settings"] | ["_settings", _] => match *m {
                M::GET => indices::get_settings(self, req, None, seg.get(1).copied()),
                M::PUT if seg.len() == 1 => indices::put_settings(self, req, None),
                _ => wrong("GET, PUT"),
            },
            [idx, "_settings"] | [idx, "_settings", _] => match *m {
                M::GET => indices::get_settings(self, req, Some(idx), seg.get(2).copied()),
                M::PUT if seg.len() == 2 => indices::put_settings(self, req, Some(idx)),
                _ => wrong("GET, PUT"),
            },
            ["_alias"] | ["_aliases"] | ["_alias", _] => match *m {
                M::GET | M::HEAD => meta::get_alias(self, req, None, seg.get(1).copied()),
                M::POST if seg == ["_aliases"] => meta::update_aliases(self, req),
                _ => wrong("GET, HEAD, POST"),
            },
            [idx, "_alias" | "_aliases"] => match *m {
                M::GET | M::HEAD => meta::get_alias(self, req, Some(idx), None),
                _ => wrong("GET, HEAD"),
            },
            [idx, "_alias" | "_aliases", name] => match *m {
                M::GET | M::HEAD => meta::get_alias(self, req, Some(idx), Some(name)),
                M::PUT | M::POST => meta::put_alias(self, req, idx, name),
                M::DELETE => meta::delete_alias(self, req, idx, name),
                _ => wrong("GET, HEAD, PUT, POST, DELETE"),
            },
            ["_template"] | ["_template", _] => {
                meta::legacy_template(self, req, seg.get(1).copied())
            }
            ["_index_template"] | ["_index_template", _] => {
                meta::composable_template(self, req, seg.get(1).copied(), meta::Kind::Index)
            }
            ["_component_template"] | ["_component_template", _] => {
                meta::composable_template(self, req, seg.get(1).copied(), meta::Kind::Component)
            }
            [idx, "_doc"] => match *m {
                M::POST => docs::index_doc(self, req, idx, None, false),
                _ => wrong("POST"),
            },
            [idx, "_doc", id] => match *m {
                M::PUT | M::POST => docs::index_doc(self, req, idx, Some(id), false),
                M::GET | M::HEAD => docs::get_doc(self, req, idx, id),
                M::DELETE => docs::delete_doc(self, req, idx, id),
                _ => wrong("GET, HEAD, PUT, POST, DELETE"),
            },
            [idx, "_create", id] => match *m {
                M::PUT | M::POST => docs::index_doc(self, req, idx, Some(id), true),
                _ => wrong("PUT, POST"),
            },
            [idx] if !idx.starts_with('_') => match *m {
                M::PUT => indices::create(self, req, idx),
                M::GET => indices::get(self, req, idx),
                M::HEAD => indices::exists(self, req, idx),
                M::DELETE => indices::delete(self, req, idx),
                _ => wrong("PUT, GET, HEAD, DELETE"),
            },
            [first, ..] if first.starts_with('_') && seg.len() == 1 => Err(EsError::new(
                400,
                "invalid_index_name_exception",
                format!("Invalid index name [{first}], must not start with '_'."),
            )
            .with("index", *first)),
            _ => Ok(Reply::status(
                400,
                json!({"error": format!("no handler found for uri [/{}] and method [{}]", seg.join("/"), m), "status": 400}),
            )),
        }
    }
}
