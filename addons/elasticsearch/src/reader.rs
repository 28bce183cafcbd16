//! Reading all documents of an index: point in time + `search_after` on `_shard_doc`
//! (optionally sliced), with scroll as the fallback for servers without PIT.

use crate::error::{AddonError, Result};
use crate::es::{error_type, parse_json, remote_error, Es};
use crate::files::encode_segment;
use crate::hits::RawHit;
use crate::host::{Level, Method, Request};
use serde::Deserialize;
use serde_json::{json, Value};

/// One page of hits.
#[derive(Debug)]
pub struct Page {
    /// Hits in server order.
    pub hits: Vec<RawHit>,
}

/// Target size of one search answer; the page size halves while answers are larger (large
/// documents) and grows back up to `--limit` while they are much smaller, so memory stays
/// bounded by about this much (plus its parsed form) whatever the documents' size.
pub const TARGET_PAGE_BYTES: usize = 16 << 20;

/// How many times in a row a PIT may be reopened without the dump making progress.
pub const MAX_REOPEN_WITHOUT_PROGRESS: u32 = 3;

/// Reads one index (or one slice of it).
#[derive(Debug)]
pub enum DocReader {
    /// PIT + search_after.
    Pit(PitReader),
    /// Scroll (fallback).
    Scroll(ScrollReader),
}

impl DocReader {
    /// Open a reader: a PIT when the server has them, otherwise a scroll.
    /// `slice` = `(id, max)` applies to PIT reading only.
    pub fn open(
        es: &mut Es,
        index: &str,
        page_size: u32,
        keep_alive: &str,
        slice: Option<(u32, u32)>,
    ) -> Result<DocReader> {
        let mut pit = PitReader {
            index: index.to_string(),
            page_size,
            keep_alive: keep_alive.to_string(),
            slice,
            pit_id: None,
            search_after: None,
            total: None,
            first: true,
            done: false,
            size: page_size,
            reopens: 0,
            reopens_without_progress: 0,
        };
        if pit.open_pit(es)? {
            Ok(DocReader::Pit(pit))
        } else {
            es.log(Level::Warn, format!("index {index}: point in time not supported by the server; falling back to scroll"));
            Ok(DocReader::Scroll(ScrollReader {
                index: index.to_string(),
                page_size,
                keep_alive: keep_alive.to_string(),
                scroll_id: None,
                total: None,
                done: false,
            }))
        }
    }

    /// Next page, or `None` at the end. `max` caps the page size (for `--size`).
    pub fn next_page(&mut self, es: &mut Es, max: u32) -> Result<Option<Page>> {
        match self {
            DocReader::Pit(p) => p.next_page(es, max),
            DocReader::Scroll(s) => s.next_page(es, max),
        }
    }

    /// Total documents (known after the first page).
    pub fn total(&self) -> Option<u64> {
        match self {
            DocReader::Pit(p) => p.total,
            DocReader::Scroll(s) => s.total,
        }
    }

    /// Release the server-side context (errors are logged, not returned).
    pub fn close(self, es: &mut Es) {
        match self {
            DocReader::Pit(p) => p.close(es),
            DocReader::Scroll(s) => s.close(es),
        }
    }
}

/// PIT + `search_after` state.
#[derive(Debug)]
pub struct PitReader {
    index: String,
    page_size: u32,
    keep_alive: String,
    slice: Option<(u32, u32)>,
    pit_id: Option<String>,
    search_after: Option<Value>,
    total: Option<u64>,
    first: bool,
    done: bool,
    /// Current (adaptive) page size.
    size: u32,
    /// PITs reopened after expiry.
    pub reopens: u32,
    reopens_without_progress: u32,
}

impl PitReader {
    /// `POST /<index>/_pit?keep_alive=…`. `Ok(false)` when the server has no PIT API.
    fn open_pit(&mut self, es: &mut Es) -> Result<bool> {
        let req = Request::new(
            Method::Post,
            format!(
                "/{}/_pit?keep_alive={}",
                encode_segment(&self.index),
                self.keep_alive
            ),
        );
        let r = es.send(&req)?;
        if (200..300).contains(&r.status) {
            let v = parse_json(&req, &r.body)?;
            let id = v
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| AddonError::Protocol {
                    what: format!("POST {}", req.path),
                    reason: "no \"id\" in the point-in-time answer".to_string(),
                })?;
            self.pit_id = Some(id.to_string());
            return Ok(true);
        }
        let unsupported = matches!(r.status, 400 | 404 | 405)
            && error_type(&r.body).as_deref() != Some("index_not_found_exception");
        if unsupported && self.pit_id.is_none() && self.first {
            return Ok(false);
        }
        Err(remote_error(&req, &r))
    }

    fn search_body(&self, size: u32) -> Value {
        let mut body = json!({
            "size": size,
            "sort": [{"_shard_doc": "asc"}],
            "pit": {"id": self.pit_id, "keep_alive": self.keep_alive},
            "track_total_hits": self.first,
        });
        if let Some(sa) = &self.search_after {
            body["search_after"] = sa.clone();
        }
        if let Some((id, max)) = self.slice {
            body["slice"] = json!({"id": id, "max": max});
        }
        body
    }

    fn next_page(&mut self, es: &mut Es, max: u32) -> Result<Option<Page>> {
        if self.done {
            return Ok(None);
        }
        let size = self.size.min(max).max(1);
        loop {
            let req = Request::json(Method::Post, "/_search", &self.search_body(size));
            let r = es.send(&req)?;
            if r.status == 404
                && error_type(&r.body).as_deref() == Some("search_context_missing_exception")
            {
                if self.reopens_without_progress >= MAX_REOPEN_WITHOUT_PROGRESS {
                    return Err(AddonError::Refused(format!(
                        "index {}: the point in time expired {} times in a row without progress; raise --scrollTime (now {})",
                        self.index, self.reopens_without_progress, self.keep_alive
                    )));
                }
                es.log(Level::Warn, format!(
                    "index {}: point in time expired; reopening and resuming after sort values {}",
                    self.index,
                    self.search_after.as_ref().map(Value::to_string).unwrap_or_else(|| "(start)".into())
                ));
                self.pit_id = None;
                self.reopens += 1;
                self.reopens_without_progress += 1;
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
            self.size = adapt_size(self.size, self.page_size, answer_bytes);
            if let Some(id) = v.pit_id {
                self.pit_id = Some(id);
            }
            if self.first {
                self.total = v.hits.total.as_ref().and_then(total_value);
                self.first = false;
            }
            let hits = v.hits.hits;
            if hits.is_empty() {
                self.done = true;
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
            self.search_after = Some(last_sort);
            self.reopens_without_progress = 0;
            if (hits.len() as u32) < size {
                // A short page is the last one; saves a round trip.
                self.done = true;
            }
            return Ok(Some(Page { hits }));
        }
    }

    fn close(self, es: &mut Es) {
        if let Some(id) = self.pit_id {
            let req = Request::json(Method::Delete, "/_pit", &json!({ "id": id }));
            match es.send(&req) {
                Ok(r) if (200..300).contains(&r.status) || r.status == 404 => {}
                Ok(r) => es.log(
                    Level::Warn,
                    format!("closing point in time: {}", remote_error(&req, &r)),
                ),
                Err(e) => es.log(Level::Warn, format!("closing point in time: {e}")),
            }
        }
    }
}

/// Scroll state (fallback).
#[derive(Debug)]
pub struct ScrollReader {
    index: String,
    page_size: u32,
    keep_alive: String,
    scroll_id: Option<String>,
    total: Option<u64>,
    done: bool,
}

impl ScrollReader {
    fn next_page(&mut self, es: &mut Es, max: u32) -> Result<Option<Page>> {
        if self.done {
            return Ok(None);
        }
        let req = match &self.scroll_id {
            None => Request::json(
                Method::Post,
                format!(
                    "/{}/_search?scroll={}",
                    encode_segment(&self.index),
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
        let r = es.send(&req)?;
        if r.status == 404 && self.scroll_id.is_some() {
            return Err(AddonError::Refused(format!(
                "index {}: the scroll context expired mid-dump and a scroll cannot be resumed; raise --scrollTime (now {})",
                self.index, self.keep_alive
            )));
        }
        if !(200..300).contains(&r.status) {
            return Err(remote_error(&req, &r));
        }
        let v = parse_answer(&req, &r.body)?;
        if let Some(id) = v.scroll_id {
            self.scroll_id = Some(id);
        }
        if self.total.is_none() {
            self.total = v.hits.total.as_ref().and_then(total_value);
        }
        let hits = v.hits.hits;
        if hits.is_empty() {
            self.done = true;
            return Ok(None);
        }
        Ok(Some(Page { hits }))
    }

    fn close(self, es: &mut Es) {
        if let Some(id) = self.scroll_id {
            let req = Request::json(
                Method::Delete,
                "/_search/scroll",
                &json!({ "scroll_id": [id] }),
            );
            match es.send(&req) {
                Ok(r) if (200..300).contains(&r.status) || r.status == 404 => {}
                Ok(r) => es.log(
                    Level::Warn,
                    format!("clearing scroll: {}", remote_error(&req, &r)),
                ),
                Err(e) => es.log(Level::Warn, format!("clearing scroll: {e}")),
            }
        }
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

/// The parts of a search answer the reader needs; hits stay raw.
#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    pit_id: Option<String>,
    #[serde(rename = "_scroll_id", default)]
    scroll_id: Option<String>,
    hits: AnswerHits,
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
}
