//! The REST layer: routes `(method, path)` to handlers that read and change the [`Store`].

mod cat;
mod cluster;
mod docs;
mod indices;
mod meta;
mod search;
mod streams;

pub use cluster::reserved_roles;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use bytes::Bytes;
use http::Method;
use serde_json::{json, Value};

use crate::contexts::Contexts;
use crate::error::{EsError, EsResult};
use crate::resolve::{Expand, Resolve};
use crate::store::Store;
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

    /// A boolean query parameter with a default; anything but `true`/`false`/empty is a 400.
    pub fn bool_param(&self, name: &str, default: bool) -> EsResult<bool> {
        match self.param(name) {
            None => Ok(default),
            Some("") | Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(other) => Err(EsError::illegal_argument(format!(
                "Failed to parse value [{other}] as only [true] or [false] are allowed."
            ))),
        }
    }

    /// Index-resolution options from `expand_wildcards` (default `default_expand`),
    /// `allow_no_indices` (default true) and `ignore_unavailable` (default false).
    /// `forbid_closed` makes an explicitly named closed index an `index_closed_exception`.
    pub fn resolve_opts(&self, default_expand: &str, forbid_closed: bool) -> EsResult<Resolve> {
        Ok(Resolve {
            ignore_unavailable: self.bool_param("ignore_unavailable", false)?,
            allow_no_indices: self.bool_param("allow_no_indices", true)?,
            expand: Expand::parse(self.param("expand_wildcards").unwrap_or(default_expand))?,
            aliases: true,
            forbid_closed,
        })
    }

    /// Milliseconds since arrival.
    pub fn took(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

/// Which product the emulator answers as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavor {
    /// Elasticsearch 8.19 (the default).
    #[default]
    Elasticsearch,
    /// OpenSearch 2.x: its `GET /` answer, its point-in-time API, no `_shard_doc`, no ILM, no
    /// X-Pack security API, no `X-Elastic-Product` header.
    OpenSearch,
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
    /// The product.
    pub flavor: Flavor,
}

/// Faults injected by handlers (inside otherwise correct answers).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HandlerFaults {
    /// Probability that a `_bulk` item is answered 429 without being applied.
    pub bulk_item_429_rate: f64,
    /// Probability that one shard of a search or scroll page fails: its hits are left out,
    /// `_shards.failed` is 1 (or, with `allow_partial_search_results=false`, the request fails).
    pub shard_failure_rate: f64,
    /// Every N-th search on a point in time finds it expired (0 = never).
    pub pit_expire_every: u64,
    /// Each new point in time, scroll or search sees the shards in another order (so
    /// `_shard_doc` values differ between two PITs of the same index).
    pub shuffle_shards: bool,
    /// No point-in-time API (as Elasticsearch before 7.10): clients must scroll.
    pub no_pit: bool,
}

/// Shared server state behind every request.
pub struct Api {
    /// The cluster state.
    pub store: RwLock<Store>,
    /// Open points in time and scrolls.
    pub contexts: Mutex<Contexts>,
    /// Names for `GET /`.
    pub identity: Identity,
    /// Faults injected by handlers.
    pub faults: HandlerFaults,
    /// Whether the security API is enabled (the server requires authentication).
    pub security: bool,
    rng: Mutex<SplitMix>,
    /// Number of injected per-item 429s so far.
    pub bulk_item_429s: AtomicU64,
    /// Number of injected shard failures so far.
    pub shard_failures: AtomicU64,
    /// Number of points in time expired by fault injection so far.
    pub pit_expiries: AtomicU64,
    pit_searches: AtomicU64,
    snapshots: AtomicU64,
}

impl Api {
    /// New state around a store.
    pub fn new(store: Store, identity: Identity, faults: HandlerFaults, seed: u64) -> Self {
        Api {
            store: RwLock::new(store),
            contexts: Mutex::new(Contexts::default()),
            identity,
            faults,
            security: false,
            rng: Mutex::new(SplitMix(seed ^ 0xB01C)),
            bulk_item_429s: AtomicU64::new(0),
            shard_failures: AtomicU64::new(0),
            pit_expiries: AtomicU64::new(0),
            pit_searches: AtomicU64::new(0),
            snapshots: AtomicU64::new(0),
        }
    }

    /// Read access to the cluster state (a poisoned lock is recovered: the store has no
    /// invariants spanning a panic).
    pub fn store(&self) -> RwLockReadGuard<'_, Store> {
        self.store.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Write access to the cluster state.
    pub fn store_mut(&self) -> RwLockWriteGuard<'_, Store> {
        self.store.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The open search contexts.
    pub fn contexts(&self) -> std::sync::MutexGuard<'_, Contexts> {
        self.contexts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the emulator answers as OpenSearch.
    pub fn is_opensearch(&self) -> bool {
        self.identity.flavor == Flavor::OpenSearch
    }

    fn chance(&self, rate: f64) -> bool {
        rate > 0.0
            && self
                .rng
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .next_f64()
                < rate
    }

    fn random_below(&self, n: u64) -> u64 {
        self.rng.lock().unwrap_or_else(|p| p.into_inner()).below(n)
    }

    /// The rotation for a new snapshot (0 unless shards are shuffled).
    pub fn next_rotation(&self) -> usize {
        if self.faults.shuffle_shards {
            self.snapshots.fetch_add(1, Ordering::Relaxed) as usize
        } else {
            0
        }
    }

    /// Whether this search on a point in time finds it expired (fault injection).
    pub fn pit_expires_now(&self) -> bool {
        let every = self.faults.pit_expire_every;
        if every == 0 {
            return false;
        }
        let n = self.pit_searches.fetch_add(1, Ordering::Relaxed) + 1;
        let hit = n.is_multiple_of(every);
        if hit {
            self.pit_expiries.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    /// The shard ordinal that fails in this answer, if one does (fault injection).
    pub fn failing_shard(&self, shards: usize) -> Option<usize> {
        if shards == 0 || !self.chance(self.faults.shard_failure_rate) {
            return None;
        }
        self.shard_failures.fetch_add(1, Ordering::Relaxed);
        Some(self.random_below(shards as u64) as usize)
    }

    fn item_429(&self) -> bool {
        let hit = self.chance(self.faults.bulk_item_429_rate);
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
        let no_handler = || -> EsResult<Reply> {
            Ok(Reply::status(
                400,
                json!({"error": format!("no handler found for uri [/{}] and method [{}]", seg.join("/"), m), "status": 400}),
            ))
        };
        let os = self.is_opensearch();
        match seg.as_slice() {
            [] => match *m {
                M::GET => Ok(meta::info(self)),
                M::HEAD => Ok(Reply::empty(200)),
                _ => wrong("HEAD, GET"),
            },
            ["_cluster", "health"] => meta::health(self, req, None),
            ["_cluster", "health", idx] => meta::health(self, req, Some(idx)),
            ["_cluster", "settings"] => match *m {
                M::GET => cluster::get_settings(self, req),
                M::PUT => cluster::put_settings(self, req),
                _ => wrong("GET, PUT"),
            },
            ["_cat", "indices"] => cat::indices(self, req, None),
            ["_cat", "indices", idx] => cat::indices(self, req, Some(idx)),
            ["_cat", "aliases"] => cat::aliases(self, req, None),
            ["_cat", "aliases", name] => cat::aliases(self, req, Some(name)),
            ["_cat", "count"] => cat::count(self, req, None),
            ["_cat", "count", idx] => cat::count(self, req, Some(idx)),
            ["_cat", "health"] => cat::health(self, req),
            ["_bulk"] | [_, "_bulk"] => match *m {
                M::POST | M::PUT => {
                    docs::bulk(self, req, seg.first().filter(|_| seg.len() == 2).copied())
                }
                _ => wrong("POST, PUT"),
            },
            ["_search", "point_in_time"] | ["_search", "point_in_time", "_all"] if os => match *m {
                M::DELETE => search::delete_os_pits(self, req, seg.len() == 3),
                M::GET if seg.len() == 3 => search::list_os_pits(self),
                _ => wrong("DELETE"),
            },
            [idx, "_search", "point_in_time"] if os && !idx.starts_with('_') => match *m {
                M::POST => search::open_pit(self, req, idx),
                _ => wrong("POST"),
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
            ["_pit"] if !os && !self.faults.no_pit => match *m {
                M::DELETE => search::close_pit(self, req),
                _ => wrong("DELETE"),
            },
            [idx, "_pit"] if !os && !self.faults.no_pit => match *m {
                M::POST => search::open_pit(self, req, idx),
                _ => wrong("POST"),
            },
            ["_pit"] | [_, "_pit"] => no_handler(),
            [idx, "_close"] => match *m {
                M::POST => indices::close(self, req, idx),
                _ => wrong("POST"),
            },
            [idx, "_open"] => match *m {
                M::POST => indices::open(self, req, idx),
                _ => wrong("POST"),
            },
            [name, "_rollover"] => match *m {
                M::POST => streams::rollover(self, req, name),
                _ => wrong("POST"),
            },
            ["_data_stream"] => match *m {
                M::GET => streams::get(self, req, None),
                _ => wrong("GET"),
            },
            ["_data_stream", name] => match *m {
                M::GET => streams::get(self, req, Some(name)),
                M::PUT => streams::create(self, req, name),
                M::DELETE => streams::delete(self, req, name),
                _ => wrong("GET, PUT, DELETE"),
            },
            ["_ilm", ..] if os => no_handler(),
            ["_ilm", "policy"] => match *m {
                M::GET => cluster::get_ilm(self, None),
                _ => wrong("GET"),
            },
            ["_ilm", "policy", name] => match *m {
                M::GET => cluster::get_ilm(self, Some(name)),
                M::PUT => cluster::put_ilm(self, req, name),
                M::DELETE => cluster::delete_ilm(self, name),
                _ => wrong("GET, PUT, DELETE"),
            },
            ["_ingest", "pipeline"] => match *m {
                M::GET => cluster::get_pipeline(self, None),
                _ => wrong("GET"),
            },
            ["_ingest", "pipeline", id] => match *m {
                M::GET => cluster::get_pipeline(self, Some(id)),
                M::PUT => cluster::put_pipeline(self, req, id),
                M::DELETE => cluster::delete_pipeline(self, id),
                _ => wrong("GET, PUT, DELETE"),
            },
            ["_security", ..] if os || !self.security => no_handler(),
            ["_security", kind @ ("role" | "role_mapping" | "user")] => match *m {
                M::GET => cluster::get_security(self, kind, None),
                _ => wrong("GET"),
            },
            ["_security", kind @ ("role" | "role_mapping" | "user"), name] => match *m {
                M::GET => cluster::get_security(self, kind, Some(name)),
                M::PUT | M::POST => cluster::put_security(self, req, kind, name),
                M::DELETE => cluster::delete_security(self, kind, name),
                _ => wrong("GET, PUT, POST, DELETE"),
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
            _ => no_handler(),
        }
    }
}
