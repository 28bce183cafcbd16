//! `_bulk` batches: building NDJSON bodies and examining every item of the answer.

use crate::es::reason_of;
use crate::hits::DataLine;
use serde::Serialize;
use serde_json::Value;

/// One document ready for `_bulk`: its id (for error messages) and its two NDJSON lines.
#[derive(Debug, Clone)]
pub struct BulkItem {
    /// Document id (`None`: Elasticsearch generates one).
    pub id: Option<String>,
    /// `{"index":{…}}\n<source>\n`.
    pub lines: Vec<u8>,
}

#[derive(Serialize)]
struct ActionMeta<'a> {
    #[serde(rename = "_index")]
    index: &'a str,
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    routing: Option<&'a str>,
}

#[derive(Serialize)]
enum Action<'a> {
    #[serde(rename = "index")]
    Index(ActionMeta<'a>),
    #[serde(rename = "create")]
    Create(ActionMeta<'a>),
}

/// The bulk action used for a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `index`: create or replace (indices).
    Index,
    /// `create`: create only (data streams accept nothing else).
    Create,
}

impl BulkItem {
    /// Build the `index` action for `line` into `target`. `Err` if the line has no `_source`.
    pub fn from_line(target: &str, line: &DataLine) -> Result<BulkItem, String> {
        Self::with_op(target, line, Op::Index)
    }

    /// Build the `op` action for `line` into `target`.
    pub fn with_op(target: &str, line: &DataLine, op: Op) -> Result<BulkItem, String> {
        let source = line.source.as_ref().ok_or_else(|| {
            format!(
                "document {} has no _source (indices with _source disabled cannot be restored from a logical dump)",
                line.id_string().unwrap_or_else(|| "(no id)".into())
            )
        })?;
        let id = line.id_string();
        let routing = line.routing_string();
        let meta = ActionMeta {
            index: target,
            id: id.as_deref(),
            routing: routing.as_deref(),
        };
        let action = match op {
            Op::Index => Action::Index(meta),
            Op::Create => Action::Create(meta),
        };
        let mut lines = serde_json::to_vec(&action).expect("serializable");
        lines.push(b'\n');
        // The source is one JSON value; it must sit on one NDJSON line.
        let text = source.get();
        if text.contains('\n') || text.contains('\r') {
            let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
            serde_json::to_writer(&mut lines, &v).expect("serializable");
        } else {
            lines.extend_from_slice(text.as_bytes());
        }
        lines.push(b'\n');
        Ok(BulkItem { id, lines })
    }
}

/// Accumulates items up to a document count and a byte size.
#[derive(Debug)]
pub struct Batcher {
    max_docs: usize,
    max_bytes: usize,
    items: Vec<BulkItem>,
    bytes: usize,
}

impl Batcher {
    /// A batcher that flushes at `max_docs` documents or `max_bytes` body bytes.
    pub fn new(max_docs: usize, max_bytes: usize) -> Self {
        Batcher {
            max_docs: max_docs.max(1),
            max_bytes: max_bytes.max(1),
            items: Vec::new(),
            bytes: 0,
        }
    }

    /// Add an item; returns a full batch to send first when adding it would exceed a bound.
    /// A single item larger than `max_bytes` still goes out, alone.
    pub fn push(&mut self, item: BulkItem) -> Option<Vec<BulkItem>> {
        let mut full = None;
        if !self.items.is_empty()
            && (self.items.len() >= self.max_docs || self.bytes + item.lines.len() > self.max_bytes)
        {
            full = Some(self.take());
        }
        self.bytes += item.lines.len();
        self.items.push(item);
        full
    }

    /// Take what is buffered (possibly empty).
    pub fn take(&mut self) -> Vec<BulkItem> {
        self.bytes = 0;
        std::mem::take(&mut self.items)
    }
}

/// The NDJSON body for a batch (ends with a newline, as `_bulk` requires).
pub fn body(items: &[BulkItem]) -> Vec<u8> {
    let mut out = Vec::with_capacity(items.iter().map(|i| i.lines.len()).sum());
    for i in items {
        out.extend_from_slice(&i.lines);
    }
    out
}

/// A failed item that must fail the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemFailure {
    /// Document id as sent (or as generated).
    pub id: String,
    /// Item status.
    pub status: u16,
    /// `type: reason`.
    pub reason: String,
}

/// What a `_bulk` answer says about the batch.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Examined {
    /// Items indexed.
    pub ok: usize,
    /// Of those, items that created a document (the others replaced one with the same id).
    pub created: usize,
    /// Positions (in the batch) of items rejected with 429, to resend.
    pub retry: Vec<usize>,
    /// Items that failed for good.
    pub failed: Vec<ItemFailure>,
}

/// Examine every item of a `_bulk` answer against the batch that was sent.
pub fn examine(answer: &[u8], sent: &[BulkItem]) -> Result<Examined, String> {
    let v: Value =
        serde_json::from_slice(answer).map_err(|e| format!("bulk answer is not JSON: {e}"))?;
    let items = v
        .get("items")
        .and_then(Value::as_array)
        .ok_or("bulk answer has no items array")?;
    if items.len() != sent.len() {
        return Err(format!(
            "bulk answer has {} items for {} sent",
            items.len(),
            sent.len()
        ));
    }
    let mut out = Examined::default();
    for (pos, (item, sent)) in items.iter().zip(sent).enumerate() {
        let result = item
            .as_object()
            .and_then(|o| o.values().next())
            .ok_or_else(|| format!("bulk item {pos} is malformed"))?;
        let status = result
            .get("status")
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("bulk item {pos} has no status"))? as u16;
        if status < 300 {
            out.ok += 1;
            if result.get("result").and_then(Value::as_str) != Some("updated") {
                out.created += 1;
            }
        } else if status == 429 {
            out.retry.push(pos);
        } else {
            let id = sent
                .id
                .clone()
                .or_else(|| {
                    result
                        .get("_id")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .unwrap_or_else(|| "(generated)".into());
            let reason = result
                .get("error")
                .map(reason_of)
                .unwrap_or_else(|| "no error given".into());
            out.failed.push(ItemFailure { id, status, reason });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str) -> BulkItem {
        let line: DataLine = serde_json::from_str(&format!(
            "{{\"_id\":\"{id}\",\"_source\":{{\"v\":\"{id}\"}}}}"
        ))
        .unwrap();
        BulkItem::from_line("t", &line).unwrap()
    }

    #[test]
    fn action_lines_follow_reference() {
        // es-backup-format.md §6.7: {"index":{"_index":"<i>","_id":"<_id>"[,"routing":"…"]}} ⏎ <_source> ⏎
        let line: DataLine = serde_json::from_str(
            r#"{"_index":"old","_id":"1","_score":1,"_routing":"r","_source":{"a":"ü","n":1.50}}"#,
        )
        .unwrap();
        let it = BulkItem::from_line("new", &line).unwrap();
        assert_eq!(String::from_utf8(it.lines).unwrap(), "{\"index\":{\"_index\":\"new\",\"_id\":\"1\",\"routing\":\"r\"}}\n{\"a\":\"ü\",\"n\":1.50}\n");
    }

    #[test]
    fn multi_line_source_is_compacted_and_missing_source_refused() {
        let line: DataLine =
            serde_json::from_str("{\"_id\":\"2\",\"_source\":{\n\"a\": 1\n}}").unwrap();
        let it = BulkItem::from_line("t", &line).unwrap();
        assert_eq!(
            String::from_utf8(it.lines).unwrap(),
            "{\"index\":{\"_index\":\"t\",\"_id\":\"2\"}}\n{\"a\":1}\n"
        );
        let line: DataLine = serde_json::from_str("{\"_id\":\"3\"}").unwrap();
        assert!(BulkItem::from_line("t", &line).unwrap_err().contains("3"));
    }

    #[test]
    fn batcher_bounds_docs_and_bytes() {
        let mut b = Batcher::new(2, 1 << 20);
        assert!(b.push(item("a")).is_none());
        assert!(b.push(item("b")).is_none());
        let full = b.push(item("c")).unwrap();
        assert_eq!(full.len(), 2);
        assert_eq!(b.take().len(), 1);
        let one = item("a").lines.len();
        let mut b = Batcher::new(100, one * 2);
        assert!(b.push(item("a")).is_none());
        assert!(b.push(item("b")).is_none());
        assert_eq!(b.push(item("c")).unwrap().len(), 2);
        // body ends with newline
        let body = body(&b.take());
        assert!(body.ends_with(b"\n"));
    }

    #[test]
    fn examine_classifies_every_item() {
        let sent = vec![item("1"), item("2"), item("3")];
        // shape from es-backup-format.md §8.5
        let answer = br#"{"errors":true,"took":3,"items":[
          {"index":{"_index":"t","_id":"1","_version":1,"result":"created","status":201}},
          {"index":{"_index":"t","_id":"2","status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected execution of coordinating operation"}}},
          {"index":{"_index":"t","_id":"3","status":400,"error":{"type":"document_parsing_exception","reason":"failed to parse field [n]"}}}]}"#;
        let e = examine(answer, &sent).unwrap();
        assert_eq!((e.ok, e.created), (1, 1));
        assert_eq!(e.retry, vec![1]);
        assert_eq!(
            e.failed,
            vec![ItemFailure {
                id: "3".into(),
                status: 400,
                reason: "document_parsing_exception: failed to parse field [n]".into()
            }]
        );
    }

    #[test]
    fn examine_rejects_mismatched_answers() {
        let sent = vec![item("1")];
        assert!(examine(br#"{"errors":false,"items":[]}"#, &sent).is_err());
        assert!(examine(b"nope", &sent).is_err());
        assert!(examine(br#"{"errors":false}"#, &sent).is_err());
    }
}
