//! Reading every document of an index or data stream, exactly once or not at all.
//!
//! * Point in time + `search_after` (Elasticsearch 7.10+: sorted on `_shard_doc`; OpenSearch 2.x,
//!   which has no `_shard_doc`: sorted on `_doc` inside one shard, one slice per shard). A page
//!   is requested again, unchanged, after a transport error or a 429/5xx, so a retry never
//!   skips or repeats a page.
//! * Every answer is checked: `timed_out` or `_shards.failed > 0` means hits may be missing; the
//!   page is asked again (bounded) and the index fails if shards keep failing.
//! * A PIT that expires after documents were written cannot be resumed: `_shard_doc` and `_doc`
//!   values mean nothing in another PIT. The read fails naming the index (before the first
//!   document is written, a new PIT simply starts over).
//! * Without a PIT API the reader scrolls. A scroll continuation moves the server's cursor when
//!   it is executed, so one whose answer was lost (a cut connection, a timeout, a gateway error)
//!   is never sent again — that would return the next page and skip the lost one. It is only
//!   repeated when the failure proves it was not executed (429/503 rejections, a connection
//!   refused before sending; [`Es::send_unrepeatable`]); otherwise the index fails, naming it.
//!   The first scroll search may be repeated: it opens a new scroll from the start. The count
//!   check at the end ([`IndexRead::check_complete`]) backs this up.

use crate::cluster::{ClusterInfo, Flavor};
use crate::error::{AddonError, Result};
use crate::es::{error_type, parse_json, remote_error, Es};
use crate::files::encode_segment;
use crate::hits::RawHit;
use crate::host::{Level, Method, Request};
use serde::Deserialize;
use serde_json::{json, Value};

/// Target size of one search answer; the page size halves while answers are larger (large
/// documents) and grows back up to `--limit` while they are much smaller, so memory stays
/// bounded by about this much (plus its parsed form) whatever the documents' size.
pub const TARGET_PAGE_BYTES: usize = 16 << 20;

/// How often a page with failed shards is asked again before the index fails.
pub const SHARD_FAILURE_RETRIES: u32 = 5;

/// One page of hits.
#[derive(Debug)]
pub struct Page {
    /// Hits in server order.
    pub hits: Vec<RawHit>,
}

/// How documents are paged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Elasticsearch's PIT API and `_shard_doc`.
    ElasticPit,
    /// OpenSearch's PIT API and `_doc` inside a shard.
    OpenSearchPit,
    /// Scroll.
    Scroll,
}

/// Reads one index (or data stream, or alias-free expression naming one of them).
#[derive(Debug)]
pub struct IndexRead {
    /// Index or data stream name.
    pub name: String,
    mode: Mode,
    keep_alive: String,
    page_size: u32,
    pit_id: Option<String>,
    scroll_id: Option<String>,
    /// The slices still to read (`None` = the whole index at once).
    slices: Vec<Option<(u32, u32)>>,
    cursor: Cursor,
    /// Documents the server says the read covers (sum of every slice's first-page total).
    pub expected: u64,
    /// Hits returned so far.
    pub returned: u64,
    /// Shard failures retried.
    pub shard_retries: u32,
}

#[derive(Debug, Default)]
struct Cursor {
    search_after: Option<Value>,
    first: bool,
    done: bool,
    size: u32,
}

impl IndexRead {
    /// Prepares reading `name`. `shards` is the index's number of primary shards (used by the
    /// OpenSearch mode); `parallel` > 1 asks for that many slices on Elasticsearch.
    pub fn open(
        es: &mut Es,
        info: &ClusterInfo,
        name: &str,
        page_size: u32,
        keep_alive: &str,
        shards: u32,
        parallel: u32,
    ) -> Result<IndexRead> {
        let mode = match (info.has_pit(), info.flavor) {
            (false, _) => Mode::Scroll,
            (true, Flavor::Elasticsearch) => Mode::ElasticPit,
            (true, Flavor::OpenSearch) => Mode::OpenSearchPit,
        };
        let slices: Vec<Option<(u32, u32)>> = match mode {
            Mode::OpenSearchPit if shards > 1 => (0..shards).map(|i| Some((i, shards))).collect(),
            Mode::ElasticPit if parallel > 1 => {
                (0..parallel).map(|i| Some((i, parallel))).collect()
            }
            _ => vec![None],
        };
        let mut r = IndexRead {
            name: name.to_string(),
            mode,
            keep_alive: keep_alive.to_string(),
            page_size,
            pit_id: None,
            scroll_id: None,
            slices,
            cursor: Cursor::default(),
            expected: 0,
            returned: 0,
            shard_retries: 0,
        };
        r.reset_cursor();
        if r.mode != Mode::Scroll && !r.open_pit(es)? {
            es.log(
                Level::Warn,
                format!("{name}: the server has no point-in-time API; reading with a scroll"),
            );
            r.mode = Mode::Scroll;
            r.slices = vec![None];
        }
        Ok(r)
    }

    fn reset_cursor(&mut self) {
        self.cursor = Cursor {
            first: true,
            size: self.page_size,
            ..Cursor::default()
        };
    }

    /// Whether the read uses a scroll (for logs).
    pub fn is_scroll(&self) -> bool {
        self.mode == Mode::Scroll
    }

    /// Number of slices the read was split into.
    pub fn slice_count(&self) -> usize {
        self.slices.len()
    }

    fn pit_path(&self) -> String {
        let seg = encode_segment(&self.name);
        match self.mode {
            Mode::OpenSearchPit => format!(
                "/{seg}/_search/point_in_time?keep_alive={}",
                self.keep_alive
            ),
            _ => format!("/{seg}/_pit?keep_alive={}", self.keep_alive),
        }
    }

    /// Opens the PIT. `Ok(false)` when the server has no PIT API after all.
    fn open_pit(&mut self, es: &mut Es) -> Result<bool> {
        let req = Request::new(Method::Post, self.pit_path());
        let r = es.send(&req)?;
        if (200..300).contains(&r.status) {
            let v = parse_json(&req, &r.body)?;
            check_shards(&self.name, &req, &v)?;
            let key = if self.mode == Mode::OpenSearchPit {
                "pit_id"
            } else {
                "id"
            };
            let id = v
                .get(key)
                .and_then(Value::as_str)
                .ok_or_else(|| AddonError::Protocol {
                    what: format!("POST {}", req.path),
                    reason: format!("no {key:?} in the point-in-time answer"),
                })?;
            self.pit_id = Some(id.to_string());
            return Ok(true);
        }
        let unsupported = matches!(r.status, 400 | 404 | 405)
            && error_type(&r.body).as_deref() != Some("index_not_found_exception")
            && error_type(&r.body).as_deref() != Some("index_closed_exception");
        if unsupported && self.returned == 0 {
            return Ok(false);
        }
        Err(remote_error(&req, &r))
    }

    /// The next page, or `None` when every slice is read. `max` caps the page size (`--size`).
    pub fn next_page(&mut self, es: &mut Es, max: u32) -> Result<Option<Page>> {
        loop {
            if self.slices.is_empty() {
                return Ok(None);
            }
            if self.cursor.done {
                self.slices.remove(0);
                self.reset_cursor();
                continue;
            }
            let page = match self.mode {
                Mode::Scroll => self.scroll_page(es, max)?,
                _ => self.pit_page(es, max)?,
            };
            match page {
                Some(p) => {
                    self.returned += p.hits.len() as u64;
                    return Ok(Some(p));
                }
                None => self.cursor.done = true,
            }
        }
    }

    fn pit_body(&self, size: u32) -> Value {
        let sort = match self.mode {
            Mode::OpenSearchPit => json!([{"_doc": "asc"}]),
            _ => json!([{"_shard_doc": "asc"}]),
        };
        let mut body = json!({
            "size": size,
            "sort": sort,
            "pit": {"id": self.pit_id, "keep_alive": self.keep_alive},
            "track_total_hits": self.cursor.first,
        });
        if let Some(a) = &self.cursor.search_after {
            body["search_after"] = a.clone();
        }
        if let Some(Some((id, max))) = self.slices.first() {
            body["slice"] = json!({"id": id, "max": max});
        }
        body
    }

    fn pit_page(&mut self, es: &mut Es, max: u32) -> Result<Option<Page>> {
        let mut failures = 0u32;
        loop {
            let size = self.cursor.size.min(max).max(1);
            let req = Request::json(Method::Post, "/_search", &self.pit_body(size));
            let r = es.send(&req)?;
            if r.status == 404
                && error_type(&r.body).as_deref() == Some("search_context_missing_exception")
            {
                if self.returned > 0 {
                    return Err(AddonError::incomplete(
                        &self.name,
                        format!(
                            "the point in time expired after {} documents (keep-alive {}); a new point in time cannot resume where it stopped (sort values are only valid in their own point in time), so the backup stops instead of skipping or repeating documents. Raise --scrollTime and run the backup again",
                            self.returned, self.keep_alive
                        ),
                    ));
                }
                es.log(
                    Level::Warn,
                    format!(
                        "{}: the point in time expired before the first page; opening a new one",
                        self.name
                    ),
                );
                self.pit_id = None;
                failures += 1;
                if failures > SHARD_FAILURE_RETRIES {
                    return Err(AddonError::incomplete(
                        &self.name,
                        format!("the point in time keeps expiring before the first page (keep-alive {}); raise --scrollTime", self.keep_alive),
                    ));
                }
                if !self.open_pit(es)? {
                    return Err(remote_error(&req, &r));
                }
                continue;
            }
            if !(200..300).contains(&r.status) {
                return Err(remote_error(&req, &r));
            }
            let answer_bytes = r.body.len();
            let v = parse_answer(&req, &r.body)?;
            drop(r);
            if let Some(problem) = v.incomplete() {
                failures += 1;
                self.shard_retries += 1;
                if failures > SHARD_FAILURE_RETRIES {
                    return Err(AddonError::incomplete(
                        &self.name,
                        format!("{problem} in {failures} answers in a row for the same page; the backup stops rather than miss documents"),
                    ));
                }
                let r = es.host().random();
                let d = es.backoff.delay(failures, r);
                es.log(
                    Level::Warn,
                    format!(
                        "{}: {problem}; asking for the same page again in {d:?}",
                        self.name
                    ),
                );
                es.host().sleep(d);
                continue;
            }
            self.cursor.size = adapt_size(self.cursor.size, self.page_size, answer_bytes);
            if let Some(id) = v.pit_id {
                self.pit_id = Some(id);
            }
            if self.cursor.first {
                let total = v.hits.total.as_ref().and_then(total_value).ok_or_else(|| {
                    AddonError::Protocol {
                        what: format!("POST /_search ({})", self.name),
                        reason: "no exact hits.total on the first page".into(),
                    }
                })?;
                self.expected += total;
                self.cursor.first = false;
            }
            let hits = v.hits.hits;
            if hits.is_empty() {
                return Ok(None);
            }
            let last_sort = hits
                .last()
                .and_then(|h| h.get("sort"))
                .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok())
                .ok_or_else(|| AddonError::Protocol {
                    what: "POST /_search".to_string(),
                    reason: "sorted hit without \"sort\" values".to_string(),
                })?;
            self.cursor.search_after = Some(last_sort);
            if (hits.len() as u32) < size {
                // A short page is the last one of this slice; saves a round trip.
                self.cursor.done = true;
            }
            return Ok(Some(Page { hits }));
        }
    }

    /// Fails the index after a scroll continuation that may have been executed without its
    /// answer arriving.
    fn lost_scroll_page(&self, what: String) -> AddonError {
        AddonError::incomplete(
            &self.name,
            format!(
                "the scroll page after {} documents got no usable answer ({what}); the server may already have moved the scroll past it, and a scroll cannot ask for a page again, so the backup stops rather than skip documents. Run the backup again (a server with a point-in-time API, Elasticsearch 7.10+ or OpenSearch 2.4+, is read without this risk)",
                self.returned
            ),
        )
    }

    fn scroll_page(&mut self, es: &mut Es, max: u32) -> Result<Option<Page>> {
        let continuation = self.scroll_id.is_some();
        let req = match &self.scroll_id {
            None => Request::json(
                Method::Post,
                // Partial results allowed (whatever the cluster's default), so a shard failing
                // inside a continuation shows in `_shards.failed` of a 200 answer, and a 429/503
                // means no shard executed it (the scroll did not move).
                format!(
                    "/{}/_search?scroll={}&allow_partial_search_results=true",
                    encode_segment(&self.name),
                    self.keep_alive
                ),
                &json!({"size": self.page_size.min(max).max(1), "sort": ["_doc"], "track_total_hits": true}),
            ),
            Some(id) => Request::json(
                Method::Post,
                "/_search/scroll",
                &json!({"scroll": self.keep_alive, "scroll_id": id}),
            ),
        };
        let r = if continuation {
            // Never repeated once the server may have executed it (it moves the cursor).
            match es.send_unrepeatable(&req) {
                Ok(r) => r,
                Err(e @ AddonError::Connect { .. }) => {
                    return Err(self.lost_scroll_page(e.to_string()))
                }
                Err(e) => return Err(e),
            }
        } else {
            // A repeated first search opens a new scroll from the start: nothing is skipped.
            es.send(&req)?
        };
        if r.status == 404 && continuation {
            return Err(AddonError::incomplete(
                &self.name,
                format!(
                    "the scroll expired after {} documents and a scroll cannot be resumed; raise --scrollTime (now {})",
                    self.returned, self.keep_alive
                ),
            ));
        }
        if !(200..300).contains(&r.status) {
            if continuation {
                return Err(self.lost_scroll_page(remote_error(&req, &r).to_string()));
            }
            return Err(remote_error(&req, &r));
        }
        let v = parse_answer(&req, &r.body)?;
        if let Some(id) = v.scroll_id.clone() {
            self.scroll_id = Some(id);
        }
        if let Some(problem) = v.incomplete() {
            return Err(AddonError::incomplete(
                &self.name,
                format!("{problem} in a scroll page; a scroll cannot ask for a page again, so the backup stops rather than miss documents"),
            ));
        }
        if self.cursor.first {
            self.expected += v.hits.total.as_ref().and_then(total_value).unwrap_or(0);
            self.cursor.first = false;
        }
        let hits = v.hits.hits;
        if hits.is_empty() {
            return Ok(None);
        }
        Ok(Some(Page { hits }))
    }

    /// After the last page: the documents returned must be the documents the server counted.
    /// `offset` and `limit` are `--offset` and `--size`; `written` what was kept.
    pub fn check_complete(&self, written: u64, offset: u64, limit: Option<u64>) -> Result<()> {
        let expected = {
            let t = self.expected.saturating_sub(offset);
            limit.map_or(t, |l| t.min(l))
        };
        if limit.is_some() || offset > 0 {
            // With --size/--offset the read stops early; only a shortfall is an error.
            if written < expected {
                return Err(AddonError::incomplete(
                    &self.name,
                    format!("{written} documents read, {expected} expected"),
                ));
            }
            return Ok(());
        }
        if written != expected {
            let how = if self.is_scroll() {
                "; a scroll page was probably lost (its answer was cut after the server moved on) and a scroll cannot ask for it again"
            } else {
                ""
            };
            return Err(AddonError::incomplete(
                &self.name,
                format!("{written} documents read but the server counted {expected}{how}; run the backup again"),
            ));
        }
        Ok(())
    }

    /// Releases the server-side context (errors are logged, not returned).
    pub fn close(self, es: &mut Es) {
        let req = match (self.mode, self.pit_id, self.scroll_id) {
            (Mode::ElasticPit, Some(id), _) => {
                Request::json(Method::Delete, "/_pit", &json!({ "id": id }))
            }
            (Mode::OpenSearchPit, Some(id), _) => Request::json(
                Method::Delete,
                "/_search/point_in_time",
                &json!({ "pit_id": [id] }),
            ),
            (Mode::Scroll, _, Some(id)) => Request::json(
                Method::Delete,
                "/_search/scroll",
                &json!({ "scroll_id": [id] }),
            ),
            _ => return,
        };
        match es.send(&req) {
            Ok(r) if (200..300).contains(&r.status) || r.status == 404 => {}
            Ok(r) => es.log(
                Level::Warn,
                format!("closing the search context: {}", remote_error(&req, &r)),
            ),
            Err(e) => es.log(Level::Warn, format!("closing the search context: {e}")),
        }
    }
}

/// Fails when an answer says shards failed or it timed out (for PIT opening and counts).
pub fn check_shards(index: &str, req: &Request, v: &Value) -> Result<()> {
    let shards: Option<Shards> = v
        .get("_shards")
        .and_then(|s| serde_json::from_value(s.clone()).ok());
    let problem = problem_of(
        v.get("timed_out").and_then(Value::as_bool).unwrap_or(false),
        shards.as_ref(),
    );
    match problem {
        Some(p) => Err(AddonError::incomplete(
            index,
            format!("{} {}: {p}", req.method.as_str(), req.path),
        )),
        None => Ok(()),
    }
}

/// Next page size from the last answer's size (see [`TARGET_PAGE_BYTES`]).
pub fn adapt_size(current: u32, limit: u32, answer_bytes: usize) -> u32 {
    if answer_bytes > TARGET_PAGE_BYTES && current > 1 {
        (current / 2).max(1)
    } else if answer_bytes < TARGET_PAGE_BYTES / 4 && current < limit {
        current.saturating_mul(2).min(limit)
    } else {
        current
    }
}

/// `_shards` of an answer.
#[derive(Debug, Deserialize)]
pub struct Shards {
    /// Shards asked.
    #[serde(default)]
    pub total: u64,
    /// Shards that failed.
    #[serde(default)]
    pub failed: u64,
    /// Why they failed.
    #[serde(default)]
    pub failures: Vec<Value>,
}

fn problem_of(timed_out: bool, shards: Option<&Shards>) -> Option<String> {
    if timed_out {
        return Some("the search timed out (partial results)".into());
    }
    let s = shards?;
    if s.failed == 0 {
        return None;
    }
    let reasons: Vec<String> = s
        .failures
        .iter()
        .take(3)
        .map(|f| {
            let shard = f.get("shard").map(Value::to_string).unwrap_or_default();
            let index = f.get("index").and_then(Value::as_str).unwrap_or("?");
            let reason = f
                .get("reason")
                .map(crate::es::reason_of)
                .unwrap_or_else(|| "no reason given".into());
            format!("[{index}][{shard}] {reason}")
        })
        .collect();
    Some(format!(
        "{} of {} shards failed ({})",
        s.failed,
        s.total,
        reasons.join("; ")
    ))
}

/// The parts of a search answer the reader needs; hits stay raw.
#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    pit_id: Option<String>,
    #[serde(rename = "_scroll_id", default)]
    scroll_id: Option<String>,
    #[serde(default)]
    timed_out: bool,
    #[serde(rename = "_shards", default)]
    shards: Option<Shards>,
    hits: AnswerHits,
}

impl Answer {
    fn incomplete(&self) -> Option<String> {
        problem_of(self.timed_out, self.shards.as_ref())
    }
}

#[derive(Deserialize)]
struct AnswerHits {
    #[serde(default)]
    total: Option<Value>,
    hits: Vec<RawHit>,
}

fn parse_answer(req: &Request, body: &[u8]) -> Result<Answer> {
    serde_json::from_slice(body).map_err(|e| AddonError::Protocol {
        what: format!("{} {}", req.method.as_str(), req.path),
        reason: format!("not a search answer with hits.hits: {e}"),
    })
}

/// `hits.total` in either form (`{"value":N}` or `N`).
pub fn total_value(t: &Value) -> Option<u64> {
    t.get("value")
        .and_then(Value::as_u64)
        .or_else(|| t.as_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_adapts_to_answer_bytes() {
        assert_eq!(adapt_size(1000, 1000, 40 << 20), 500);
        assert_eq!(adapt_size(1, 1000, 40 << 20), 1);
        assert_eq!(adapt_size(500, 1000, 1 << 20), 1000);
        assert_eq!(adapt_size(800, 1000, 1 << 20), 1000);
        assert_eq!(adapt_size(1000, 1000, 1 << 20), 1000);
        assert_eq!(adapt_size(600, 1000, 8 << 20), 600);
    }

    #[test]
    fn totals_in_both_forms() {
        assert_eq!(total_value(&json!({"value":5,"relation":"eq"})), Some(5));
        assert_eq!(total_value(&json!(7)), Some(7));
        assert_eq!(total_value(&json!(null)), None);
    }

    #[test]
    fn shard_failures_and_timeouts_are_problems() {
        let s: Shards = serde_json::from_value(json!({"total": 3, "successful": 2, "failed": 1,
            "failures": [{"shard": 1, "index": "i", "reason": {"type": "node_disconnected_exception", "reason": "gone"}}]})).unwrap();
        let p = problem_of(false, Some(&s)).unwrap();
        assert!(
            p.contains("1 of 3 shards failed")
                && p.contains("[i][1] node_disconnected_exception: gone"),
            "{p}"
        );
        assert!(problem_of(true, None).unwrap().contains("timed out"));
        let ok: Shards = serde_json::from_value(json!({"total": 3, "failed": 0})).unwrap();
        assert_eq!(problem_of(false, Some(&ok)), None);
    }
}
