//! An in-memory fake of the Elasticsearch 8 endpoints the addon uses, implementing the addon's
//! `Host` trait, with fault injection. It exercises the addon's state machines on the host; the
//! end-to-end tests against the real emulator and CLI are in `roundtrip.sh`.

#![allow(dead_code)]

use elasticsearch_addon::host::{
    Host, Level, Method, OutputStream, Request, Response, TransportError,
};
use serde_json::{json, Map, Value};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::rc::Rc;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    pub id: String,
    pub routing: Option<String>,
    pub source: Value,
}

#[derive(Debug, Clone, Default)]
pub struct Idx {
    pub docs: Vec<Doc>,
    pub settings: Value,
    pub mappings: Value,
    pub aliases: Map<String, Value>,
}

pub type Files = Rc<RefCell<BTreeMap<String, Vec<u8>>>>;

#[derive(Default)]
pub struct FakeEs {
    pub indices: BTreeMap<String, Idx>,
    pub templates: Map<String, Value>,
    pub ilm: Map<String, Value>,
    pub closed: Vec<String>,
    pits: HashMap<String, (String, Vec<(u64, Doc)>)>,
    scrolls: HashMap<String, (Vec<Doc>, usize, usize)>,
    next_ctx: u64,
    pub requests: Vec<(Method, String)>,
    pub pit_supported: bool,
    /// After this many successful PIT searches, the PIT disappears once (expiry).
    pub expire_pit_after: Option<u32>,
    pit_searches: u32,
    /// Probability (0..1) that a request is answered 429/503/connection refused before processing.
    pub fault_rate: f64,
    /// The N-th scroll continuation (1-based) is processed — the scroll moves on — and its answer
    /// lost (a transport error after sending).
    pub lose_scroll_answer_at: Option<u32>,
    scroll_continuations: u32,
    /// Probability that one bulk item is rejected with 429.
    pub item_429_rate: f64,
    /// Ids whose bulk item fails with a mapping error.
    pub poison_ids: Vec<String>,
    rng: u64,
    pub faults: u64,
    pub files: Files,
    pub logs: Vec<(Level, String)>,
    pub sleeps: Vec<Duration>,
    pub progress: Vec<(u64, Option<u64>, String)>,
}

struct MemOut {
    name: String,
    buf: Vec<u8>,
    files: Files,
}
impl Write for MemOut {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
impl OutputStream for MemOut {
    fn finish(self: Box<Self>) -> std::io::Result<u64> {
        let n = self.buf.len() as u64;
        self.files.borrow_mut().insert(self.name, self.buf);
        Ok(n)
    }
}

fn ok(v: Value) -> Response {
    Response {
        status: 200,
        body: serde_json::to_vec(&v).unwrap(),
    }
}
fn err(status: u16, t: &str, reason: &str) -> Response {
    Response {
        status,
        body: serde_json::to_vec(&json!({"error":{"root_cause":[{"type":t,"reason":reason}],"type":t,"reason":reason},"status":status})).unwrap(),
    }
}

impl FakeEs {
    pub fn new() -> Self {
        FakeEs {
            pit_supported: true,
            rng: 0x9E3779B97F4A7C15,
            ..Default::default()
        }
    }

    fn rand(&mut self) -> f64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545F4914F6CDD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn add_index(&mut self, name: &str, mappings: Value, docs: Vec<Doc>) {
        let settings = json!({"index":{"number_of_shards":"1","number_of_replicas":"0",
            "uuid":"abc","provided_name":name,"creation_date":"1700000000000","version":{"created":"8110099"}}});
        self.indices.insert(
            name.to_string(),
            Idx {
                docs,
                settings,
                mappings,
                aliases: Map::new(),
            },
        );
    }

    fn hit(index: &str, ord: u64, d: &Doc, sorted: bool) -> Value {
        let mut h = json!({"_index": index, "_id": d.id, "_score": if sorted { Value::Null } else { json!(1.0) }});
        if let Some(r) = &d.routing {
            h["_routing"] = json!(r);
        }
        h["_source"] = d.source.clone();
        if sorted {
            h["sort"] = json!([ord]);
        }
        h
    }

    fn route(&mut self, req: &Request) -> Response {
        let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
        let body: Value = req
            .body
            .as_ref()
            .filter(|_| req.content_type == "application/json")
            .map(|b| serde_json::from_slice(b).expect("addon sends valid JSON"))
            .unwrap_or(Value::Null);
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        use Method::*;
        match (req.method, segs.as_slice()) {
            (Get, [""]) => ok(json!({"name": "fake", "version": {"number": "8.19.2", "build_flavor": "default"}, "tagline": "You Know, for Search"})),
            (Get, ["_cat", "indices"]) => ok(Value::Array(
                self.indices
                    .keys()
                    .map(|k| json!({"index": k, "status": if self.closed.contains(k) { "close" } else { "open" }}))
                    .collect(),
            )),
            (Get, ["_data_stream"]) => ok(json!({"data_streams": []})),
            (Get, ["_index_template"]) => ok(json!({"index_templates": []})),
            (Get, ["_component_template"]) => ok(json!({"component_templates": []})),
            (Get, ["_ilm", "policy"]) => ok(Value::Object(self.ilm.clone())),
            (Put, ["_ilm", "policy", name]) => {
                self.ilm.insert(name.to_string(), body);
                ok(json!({"acknowledged": true}))
            }
            (Get, ["_ingest", "pipeline"]) => Response {
                status: 404,
                body: b"{}".to_vec(),
            },
            (Get, ["_security", ..]) => Response {
                status: 400,
                body: br#"{"error":"no handler found for uri [/_security/role] and method [GET]","status":400}"#.to_vec(),
            },
            (Get, ["_alias"]) => ok(Value::Object(
                self.indices
                    .iter()
                    .map(|(k, v)| (k.clone(), json!({"aliases": v.aliases})))
                    .collect(),
            )),
            (Get, ["_template"]) => ok(Value::Object(self.templates.clone())),
            (Put, ["_template", name]) => {
                self.templates.insert(name.to_string(), body);
                ok(json!({"acknowledged":true}))
            }
            (Post, ["_aliases"]) => {
                for a in body["actions"].as_array().unwrap() {
                    let add = &a["add"];
                    let idx = add["index"].as_str().unwrap();
                    let mut opts = add.as_object().unwrap().clone();
                    opts.remove("index");
                    let alias = opts.remove("alias").unwrap();
                    self.indices
                        .get_mut(idx)
                        .unwrap()
                        .aliases
                        .insert(alias.as_str().unwrap().into(), Value::Object(opts));
                }
                ok(json!({"acknowledged":true}))
            }
            (Post, ["_search"]) => self.pit_search(&body),
            (Post, ["_search", "scroll"]) => {
                let id = body["scroll_id"].as_str().unwrap().to_string();
                let Some((docs, pos, size)) = self.scrolls.get_mut(&id) else {
                    return err(
                        404,
                        "search_context_missing_exception",
                        "No search context found",
                    );
                };
                let page: Vec<Doc> = docs[*pos..(*pos + *size).min(docs.len())].to_vec();
                *pos += page.len();
                let hits: Vec<Value> = page.iter().map(|d| Self::hit("x", 0, d, false)).collect();
                ok(json!({"_scroll_id": id, "hits": {"hits": hits}}))
            }
            (Delete, ["_search", "scroll"]) => {
                for id in body["scroll_id"].as_array().unwrap() {
                    self.scrolls.remove(id.as_str().unwrap());
                }
                ok(json!({"succeeded":true,"num_freed":1}))
            }
            (Delete, ["_pit"]) => {
                let freed = self.pits.remove(body["id"].as_str().unwrap()).is_some();
                if freed {
                    ok(json!({"succeeded":true,"num_freed":1}))
                } else {
                    err(404, "search_context_missing_exception", "gone")
                }
            }
            (Head, [idx]) => Response {
                status: if self.indices.contains_key(*idx) {
                    200
                } else {
                    404
                },
                body: vec![],
            },
            (Put, [idx]) => {
                if self.indices.contains_key(*idx) {
                    return err(400, "resource_already_exists_exception", "exists");
                }
                let s = &body["settings"]["index"];
                for bad in ["uuid", "version", "provided_name", "creation_date"] {
                    if s.get(bad).is_some() {
                        return err(
                            400,
                            "illegal_argument_exception",
                            &format!(
                                "private index setting [index.{bad}] can not be set explicitly"
                            ),
                        );
                    }
                }
                self.indices.insert(
                    idx.to_string(),
                    Idx {
                        docs: vec![],
                        settings: body.get("settings").cloned().unwrap_or(json!({"index":{}})),
                        mappings: body.get("mappings").cloned().unwrap_or(json!({})),
                        aliases: Map::new(),
                    },
                );
                ok(json!({"acknowledged":true,"shards_acknowledged":true,"index":idx}))
            }
            (Delete, [list]) => {
                let ignore = query.contains("ignore_unavailable=true");
                for i in list.split(',') {
                    if self.indices.remove(i).is_none() && !ignore {
                        return err(404, "index_not_found_exception", "no such index");
                    }
                }
                ok(json!({"acknowledged":true}))
            }
            (_, [idx, rest @ ..]) if !idx.starts_with('_') => {
                let idx = idx.to_string();
                let Some(ix) = self.indices.get_mut(&idx) else {
                    return err(
                        404,
                        "index_not_found_exception",
                        &format!("no such index [{idx}]"),
                    );
                };
                match (req.method, rest) {
                    (Get, ["_settings"]) => ok(json!({ idx.clone(): {"settings": ix.settings} })),
                    (Get, ["_mapping"]) => ok(json!({ idx.clone(): {"mappings": ix.mappings} })),
                    (Get, ["_alias"]) => ok(json!({ idx.clone(): {"aliases": ix.aliases} })),
                    (Get, ["_count"]) => ok(json!({"count": ix.docs.len(), "_shards": {"total": 1, "successful": 1, "failed": 0}})),
                    (Post, ["_open"]) => {
                        self.closed.retain(|c| *c != idx);
                        ok(json!({"acknowledged": true}))
                    }
                    (Post, ["_close"]) => {
                        self.closed.push(idx.clone());
                        ok(json!({"acknowledged": true}))
                    }
                    (Put, ["_mapping"]) => {
                        ix.mappings = body;
                        ok(json!({"acknowledged":true}))
                    }
                    (Put, ["_settings"]) => ok(json!({"acknowledged":true})),
                    (Post, ["_refresh"]) => {
                        ok(json!({"_shards":{"total":1,"successful":1,"failed":0}}))
                    }
                    (Post, ["_pit"]) => {
                        if !self.pit_supported {
                            return err(
                                400,
                                "illegal_argument_exception",
                                "no handler found for uri [/_pit] and method [POST]",
                            );
                        }
                        assert!(query.starts_with("keep_alive="), "keep_alive required");
                        let snap: Vec<(u64, Doc)> = ix
                            .docs
                            .iter()
                            .cloned()
                            .enumerate()
                            .map(|(i, d)| (i as u64, d))
                            .collect();
                        self.next_ctx += 1;
                        let id = format!("pit-{}", self.next_ctx);
                        self.pits.insert(id.clone(), (idx, snap));
                        ok(json!({"id": id}))
                    }
                    (Post, ["_search"]) => {
                        assert!(query.starts_with("scroll="));
                        let size = body["size"].as_u64().unwrap() as usize;
                        let docs = ix.docs.clone();
                        let total = docs.len();
                        self.next_ctx += 1;
                        let id = format!("scroll-{}", self.next_ctx);
                        let page: Vec<Value> = docs
                            .iter()
                            .take(size)
                            .map(|d| Self::hit(&idx, 0, d, false))
                            .collect();
                        self.scrolls
                            .insert(id.clone(), (docs, size.min(total), size));
                        ok(
                            json!({"_scroll_id": id, "hits": {"total": {"value": total, "relation": "eq"}, "hits": page}}),
                        )
                    }
                    (Post, ["_bulk"]) => self.bulk(&idx, req.body.as_ref().unwrap()),
                    _ => err(
                        405,
                        "unsupported",
                        &format!("{} {}", req.method.as_str(), req.path),
                    ),
                }
            }
            _ => err(
                405,
                "unsupported",
                &format!("{} {}", req.method.as_str(), req.path),
            ),
        }
    }

    fn pit_search(&mut self, body: &Value) -> Response {
        let id = body["pit"]["id"].as_str().expect("pit.id").to_string();
        assert_eq!(body["sort"], json!([{"_shard_doc":"asc"}]));
        if let Some(n) = self.expire_pit_after {
            if self.pit_searches >= n {
                self.expire_pit_after = None;
                self.pits.remove(&id);
            }
        }
        let Some((idx, snap)) = self.pits.get(&id) else {
            return err(
                404,
                "search_context_missing_exception",
                &format!("No search context found for id [{id}]"),
            );
        };
        self.pit_searches += 1;
        let size = body["size"].as_u64().unwrap() as usize;
        let after = body.get("search_after").map(|a| a[0].as_u64().unwrap());
        let slice = body
            .get("slice")
            .map(|s| (s["id"].as_u64().unwrap(), s["max"].as_u64().unwrap()));
        let matching: Vec<&(u64, Doc)> = snap
            .iter()
            .filter(|(o, _)| slice.is_none_or(|(i, m)| o % m == i))
            .collect();
        let total = matching.len();
        let hits: Vec<Value> = matching
            .into_iter()
            .filter(|(o, _)| after.is_none_or(|a| *o > a))
            .take(size)
            .map(|(o, d)| Self::hit(idx, *o, d, true))
            .collect();
        let mut resp = json!({"pit_id": id, "hits": {"hits": hits}});
        if body["track_total_hits"] == json!(true) {
            resp["hits"]["total"] = json!({"value": total, "relation": "eq"});
        }
        ok(resp)
    }

    fn bulk(&mut self, idx: &str, body: &[u8]) -> Response {
        assert!(body.ends_with(b"\n"), "bulk body must end with a newline");
        let text = std::str::from_utf8(body).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len() % 2, 0);
        let mut items = Vec::new();
        let mut errors = false;
        for pair in lines.chunks(2) {
            let action: Value = serde_json::from_str(pair[0]).unwrap();
            let meta = &action["index"];
            assert_eq!(meta["_index"], json!(idx));
            let id = meta["_id"].as_str().unwrap().to_string();
            let source: Value = serde_json::from_str(pair[1]).unwrap();
            if self.rand() < self.item_429_rate {
                errors = true;
                items.push(json!({"index":{"_index":idx,"_id":id,"status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected execution of coordinating operation"}}}));
                continue;
            }
            if self.poison_ids.contains(&id) {
                errors = true;
                items.push(json!({"index":{"_index":idx,"_id":id,"status":400,"error":{"type":"document_parsing_exception","reason":"failed to parse field [n]"}}}));
                continue;
            }
            let doc = Doc {
                id: id.clone(),
                routing: meta
                    .get("routing")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                source,
            };
            let ix = self.indices.get_mut(idx).unwrap();
            let status = if let Some(existing) = ix.docs.iter_mut().find(|d| d.id == id) {
                *existing = doc;
                200
            } else {
                ix.docs.push(doc);
                201
            };
            items.push(json!({"index":{"_index":idx,"_id":id,"status":status,"result":"created"}}));
        }
        ok(json!({"errors": errors, "took": 1, "items": items}))
    }
}

impl Host for FakeEs {
    fn send(&mut self, req: &Request) -> Result<Response, TransportError> {
        self.requests.push((req.method, req.path.clone()));
        if let Some(b) = &req.body {
            assert!(
                req.method != Method::Get && req.method != Method::Head,
                "GET/HEAD with a body: {}",
                req.path
            );
            assert!(!b.is_empty());
        }
        if self.fault_rate > 0.0 && self.rand() < self.fault_rate {
            self.faults += 1;
            let r = self.rand();
            if r < 0.4 {
                return Ok(err(
                    429,
                    "es_rejected_execution_exception",
                    "rejected execution",
                ));
            } else if r < 0.8 {
                return Ok(err(503, "unavailable_shards_exception", "try later"));
            }
            return Err(TransportError {
                message: "ErrorCode::ConnectionRefused".into(),
                retryable: true,
                maybe_processed: false,
            });
        }
        let resp = self.route(req);
        if req.method == Method::Post && req.path == "/_search/scroll" && resp.status == 200 {
            self.scroll_continuations += 1;
            if self.lose_scroll_answer_at == Some(self.scroll_continuations) {
                self.faults += 1;
                return Err(TransportError {
                    message: "POST /_search/scroll: ErrorCode::HttpProtocolError".into(),
                    retryable: true,
                    maybe_processed: true,
                });
            }
        }
        Ok(resp)
    }
    fn sleep(&mut self, d: Duration) {
        self.sleeps.push(d);
    }
    fn log(&mut self, level: Level, msg: &str) {
        self.logs.push((level, msg.to_string()));
    }
    fn progress(&mut self, done: u64, total: Option<u64>, stage: &str) {
        self.progress.push((done, total, stage.to_string()));
    }
    fn create_output(&mut self, name: &str) -> std::io::Result<Box<dyn OutputStream>> {
        assert!(
            !self.files.borrow().contains_key(name),
            "stream {name} opened twice"
        );
        Ok(Box::new(MemOut {
            name: name.to_string(),
            buf: vec![],
            files: self.files.clone(),
        }))
    }
    fn input_names(&mut self) -> std::io::Result<Vec<String>> {
        Ok(self.files.borrow().keys().cloned().collect())
    }
    fn open_input(&mut self, name: &str) -> std::io::Result<Box<dyn Read>> {
        let data = self
            .files
            .borrow()
            .get(name)
            .cloned()
            .ok_or_else(|| std::io::Error::other("no such stream"))?;
        Ok(Box::new(std::io::Cursor::new(data)))
    }
    fn random(&mut self) -> u64 {
        (self.rand() * 1e9) as u64
    }
}
