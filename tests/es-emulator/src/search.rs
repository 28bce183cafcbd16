//! Search semantics: request parsing/validation (like `SearchRequest.validate`), sorting,
//! `search_after`, slicing, totals, and lazy hit serialisation.

use std::cmp::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::error::{EsError, EsResult};
use crate::query::{DocView, Query};
use crate::store::{Doc, ShardView, Snapshot};
use crate::util::fnv1a;

/// Which part of `_source` is returned.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceFilter {
    /// The whole source (default).
    All,
    /// No source (`_source: false`).
    None,
    /// Top-level fields matching these patterns (`_source: ["a", "b*"]`).
    Include(Vec<String>),
}

/// What a sort key sorts on.
#[derive(Debug, Clone, PartialEq)]
pub enum SortField {
    /// `_shard_doc`: shard ordinal and position (PIT only).
    ShardDoc,
    /// `_doc`: index order.
    Doc,
    /// `_score`: every hit scores 1.0 with match_all.
    Score,
    /// A field of `_source` (dotted path).
    Field(String),
}

/// One sort key.
#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    /// What is sorted on.
    pub field: SortField,
    /// Descending order.
    pub desc: bool,
}

/// `track_total_hits`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TrackTotal {
    /// Count exactly.
    Exact,
    /// Omit `hits.total`.
    Disabled,
    /// Count up to N, then report `gte`.
    UpTo(i64),
}

/// A parsed search request.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// `size` (default 10).
    pub size: i64,
    /// `from` (default 0).
    pub from: i64,
    /// Sort keys (an implicit `_shard_doc` tiebreaker is appended for sorted PIT searches).
    pub sort: Vec<SortKey>,
    /// `search_after` values.
    pub search_after: Option<Vec<Value>>,
    /// `slice` (id, max).
    pub slice: Option<(u32, u32)>,
    /// `track_total_hits`.
    pub track_total_hits: TrackTotal,
    /// `pit.id` and `pit.keep_alive`.
    pub pit: Option<(String, Option<String>)>,
    /// `_source`.
    pub source: SourceFilter,
    /// `scroll` keep-alive.
    pub scroll: Option<String>,
    /// The query (`match_all` when absent).
    pub query: Query,
    /// `version: true`.
    pub version: bool,
    /// `seq_no_primary_term: true`.
    pub seq_no_primary_term: bool,
    /// `rest_total_hits_as_int=true`.
    pub total_as_int: bool,
}

const UNSUPPORTED: &[&str] = &[
    "aggs",
    "aggregations",
    "post_filter",
    "collapse",
    "rescore",
    "suggest",
    "highlight",
    "knn",
    "script_fields",
    "runtime_mappings",
    "min_score",
    "indices_boost",
];

const IGNORED: &[&str] = &[
    "stored_fields",
    "docvalue_fields",
    "fields",
    "timeout",
    "track_scores",
    "terminate_after",
    "explain",
    "profile",
    "stats",
    "_source_includes",
    "_source_excludes",
];

fn int_param(v: &Value, name: &str) -> EsResult<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| EsError::parsing(format!("[{name}] must be an integer, got [{n}]"))),
        Value::String(s) => s.parse().map_err(|_| {
            EsError::illegal_argument(format!(
                "Failed to parse int parameter [{name}] with value [{s}]"
            ))
        }),
        other => Err(EsError::parsing(format!(
            "[{name}] must be an integer, got [{other}]"
        ))),
    }
}

fn parse_sort(v: &Value) -> EsResult<Vec<SortKey>> {
    let items: Vec<Value> = match v {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    };
    let mut out = Vec::new();
    for item in items {
        let (name, desc) = match &item {
            Value::String(s) => {
                let (n, o) = match s.rsplit_once(':') {
                    Some((n, o)) if o == "asc" || o == "desc" => (n.to_string(), o == "desc"),
                    _ => (s.clone(), s == "_score"),
                };
                (n, o)
            }
            Value::Object(m) if m.len() == 1 => {
                let (n, spec) = m.iter().next().expect("one key");
                let order = match spec {
                    Value::String(o) => o.clone(),
                    Value::Object(o) => o
                        .get("order")
                        .and_then(Value::as_str)
                        .unwrap_or(if n == "_score" { "desc" } else { "asc" })
                        .to_string(),
                    other => {
                        return Err(EsError::parsing(format!(
                            "[sort] malformed order [{other}]"
                        )))
                    }
                };
                if order != "asc" && order != "desc" {
                    return Err(EsError::illegal_argument(format!(
                        "Unknown SortOrder [{order}]"
                    )));
                }
                (n.clone(), order == "desc")
            }
            other => {
                return Err(EsError::parsing(format!(
                    "[sort] malformed sort entry [{other}]"
                )))
            }
        };
        let field = match name.as_str() {
            "_shard_doc" => SortField::ShardDoc,
            "_doc" => SortField::Doc,
            "_score" => SortField::Score,
            "_id" => {
                return Err(EsError::illegal_argument(
                    "Fielddata access on the _id field is disallowed, you can re-enable it by updating the dynamic cluster setting: indices.id_field_data.enabled",
                ))
            }
            f => SortField::Field(f.to_string()),
        };
        out.push(SortKey { field, desc });
    }
    Ok(out)
}

fn parse_source(v: &Value) -> EsResult<SourceFilter> {
    Ok(match v {
        Value::Bool(true) => SourceFilter::All,
        Value::Bool(false) => SourceFilter::None,
        Value::String(s) if s == "true" => SourceFilter::All,
        Value::String(s) if s == "false" => SourceFilter::None,
        Value::String(s) => SourceFilter::Include(s.split(',').map(String::from).collect()),
        Value::Array(a) => SourceFilter::Include(
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect(),
        ),
        Value::Object(m) => match m.get("includes").or_else(|| m.get("include")) {
            Some(inc) => parse_source(inc)?,
            None => SourceFilter::All,
        },
        other => {
            return Err(EsError::parsing(format!(
                "[_source] malformed value [{other}]"
            )))
        }
    })
}

impl SearchRequest {
    /// Parses query-string parameters and the JSON body (body values win, like Elasticsearch).
    pub fn parse(params: &[(String, String)], body: &Value) -> EsResult<Self> {
        let mut req = SearchRequest {
            size: 10,
            from: 0,
            sort: Vec::new(),
            search_after: None,
            slice: None,
            track_total_hits: TrackTotal::UpTo(10_000),
            pit: None,
            source: SourceFilter::All,
            scroll: None,
            query: Query::MatchAll,
            version: false,
            seq_no_primary_term: false,
            total_as_int: false,
        };
        for (k, v) in params {
            let sv = Value::String(v.clone());
            match k.as_str() {
                "size" => req.size = int_param(&sv, "size")?,
                "from" => req.from = int_param(&sv, "from")?,
                "sort" => {
                    req.sort = parse_sort(&Value::Array(
                        v.split(',').map(|s| Value::String(s.into())).collect(),
                    ))?
                }
                "scroll" => req.scroll = Some(v.clone()),
                "_source" => req.source = parse_source(&sv)?,
                "_source_includes" => {
                    req.source = SourceFilter::Include(v.split(',').map(String::from).collect())
                }
                "track_total_hits" => req.track_total_hits = parse_track(&sv)?,
                "rest_total_hits_as_int" => req.total_as_int = v == "true" || v.is_empty(),
                "version" => req.version = v == "true" || v.is_empty(),
                "seq_no_primary_term" => req.seq_no_primary_term = v == "true" || v.is_empty(),
                "q" if v != "*" && v != "*:*" => {
                    return Err(EsError::illegal_argument(format!(
                        "kstash-es-emulator supports only q=* (match all), got [q={v}]"
                    )))
                }
                _ => {}
            }
        }
        let obj = match body {
            Value::Null => Map::new(),
            Value::Object(m) => m.clone(),
            _ => return Err(EsError::parsing("request body must be a JSON object")),
        };
        for (k, v) in &obj {
            match k.as_str() {
                "query" => req.query = Query::parse(v)?,
                "size" => req.size = int_param(v, "size")?,
                "from" => req.from = int_param(v, "from")?,
                "sort" => req.sort = parse_sort(v)?,
                "search_after" => {
                    req.search_after = Some(match v {
                        Value::Array(a) => a.clone(),
                        other => vec![other.clone()],
                    })
                }
                "slice" => {
                    let id = v.get("id").map(|x| int_param(x, "id")).transpose()?;
                    let max = v.get("max").map(|x| int_param(x, "max")).transpose()?;
                    let (Some(id), Some(max)) = (id, max) else {
                        return Err(EsError::parsing("[slice] requires [id] and [max]"));
                    };
                    if max <= 1 {
                        return Err(EsError::illegal_argument("max must be greater than 1"));
                    }
                    if id < 0 {
                        return Err(EsError::illegal_argument(
                            "id must be greater than or equal to 0",
                        ));
                    }
                    if id >= max {
                        return Err(EsError::illegal_argument("max must be greater than id"));
                    }
                    req.slice = Some((id as u32, max as u32));
                }
                "track_total_hits" => req.track_total_hits = parse_track(v)?,
                "pit" => {
                    let id = v
                        .get("id")
                        .and_then(Value::as_str)
                        .ok_or_else(|| EsError::parsing("[pit] requires [id]"))?;
                    let ka = v
                        .get("keep_alive")
                        .and_then(Value::as_str)
                        .map(String::from);
                    req.pit = Some((id.to_string(), ka));
                }
                "_source" => req.source = parse_source(v)?,
                "version" => req.version = v.as_bool().unwrap_or(false),
                "seq_no_primary_term" => req.seq_no_primary_term = v.as_bool().unwrap_or(false),
                k if UNSUPPORTED.contains(&k) => {
                    return Err(EsError::illegal_argument(format!(
                        "kstash-es-emulator does not support [{k}] in search requests"
                    )))
                }
                k if IGNORED.contains(&k) => {}
                other => {
                    return Err(EsError::parsing(format!(
                        "Unknown key for a START_OBJECT in [{other}]."
                    )))
                }
            }
        }
        Ok(req)
    }

    /// Validation independent of the indices, mirroring `SearchRequest.validate`.
    pub fn validate(&self, path_has_indices: bool) -> EsResult<()> {
        if self.from < 0 {
            return Err(EsError::illegal_argument(
                "[from] parameter cannot be negative",
            ));
        }
        if self.size < 0 {
            return Err(EsError::illegal_argument(
                "[size] parameter cannot be negative",
            ));
        }
        if let TrackTotal::UpTo(n) = self.track_total_hits {
            if n < -1 {
                return Err(EsError::illegal_argument(
                    "[track_total_hits] parameter must be positive or equals to -1, got "
                        .to_string()
                        + &n.to_string(),
                ));
            }
        }
        if self.scroll.is_some() {
            if self.from > 0 {
                return Err(EsError::validation(
                    "using [from] is not allowed in a scroll context",
                ));
            }
            if self.size == 0 {
                return Err(EsError::validation(
                    "[size] cannot be [0] in a scroll context",
                ));
            }
            if self.pit.is_some() {
                return Err(EsError::validation(
                    "using [point in time] is not allowed in a scroll context",
                ));
            }
            if self.track_total_hits == TrackTotal::Disabled {
                return Err(EsError::validation(
                    "disabling [track_total_hits] is not allowed in a scroll context",
                ));
            }
        }
        if self.pit.is_some() && path_has_indices {
            return Err(EsError::validation(
                "[indices] cannot be used with point in time. Do not specify any index with point in time.",
            ));
        }
        if self.pit.is_none() && self.sort.iter().any(|k| k.field == SortField::ShardDoc) {
            return Err(EsError::validation(
                "[_shard_doc] sort field cannot be used without [point in time]",
            ));
        }
        if self.search_after.is_some() {
            if self.from > 0 {
                return Err(EsError::search_phase(EsError::illegal_argument(
                    "`from` parameter must be set to 0 when `search_after` is used.",
                )));
            }
            if self.scroll.is_some() {
                return Err(EsError::validation(
                    "`search_after` cannot be used in a scroll context.",
                ));
            }
        }
        if self.total_as_int
            && !matches!(
                self.track_total_hits,
                TrackTotal::Exact | TrackTotal::Disabled
            )
        {
            // Elasticsearch switches an int-rendered total to exact tracking.
        }
        Ok(())
    }

    /// The effective sort: a sorted PIT search gets the implicit `_shard_doc` tiebreaker.
    pub fn effective_sort(&self) -> Vec<SortKey> {
        let mut s = self.sort.clone();
        if self.pit.is_some() && !s.is_empty() && !s.iter().any(|k| k.field == SortField::ShardDoc)
        {
            s.push(SortKey {
                field: SortField::ShardDoc,
                desc: false,
            });
        }
        s
    }
}

fn parse_track(v: &Value) -> EsResult<TrackTotal> {
    Ok(match v {
        Value::Bool(true) => TrackTotal::Exact,
        Value::Bool(false) => TrackTotal::Disabled,
        Value::String(s) if s == "true" => TrackTotal::Exact,
        Value::String(s) if s == "false" => TrackTotal::Disabled,
        other => {
            let n = int_param(other, "track_total_hits")?;
            if n == i64::from(i32::MAX) {
                TrackTotal::Exact
            } else if n == -1 {
                TrackTotal::Disabled
            } else {
                TrackTotal::UpTo(n)
            }
        }
    })
}

/// One selected hit: shard ordinal in the snapshot, slot, sort values.
pub type Selected = (u32, u32, Option<Vec<Value>>);

/// The `_shard_doc` value of a slot.
pub fn shard_doc(ord: u32, slot: u32) -> i64 {
    (i64::from(ord) << 32) | i64::from(slot)
}

fn in_slice(slice: Option<(u32, u32)>, shards: usize, ord: u32, doc: &Doc) -> bool {
    match slice {
        None => true,
        Some((id, max)) if (max as usize) <= shards => ord % max == id,
        Some((id, max)) => fnv1a(&doc.id).rotate_left(7) % max == id,
    }
}

fn field_value(doc: &Doc, path: &str, desc: bool) -> Value {
    let Ok(v) = serde_json::from_slice::<Value>(&doc.source) else {
        return Value::Null;
    };
    let mut cur = &v;
    for p in path.split('.') {
        match cur.get(p) {
            Some(n) => cur = n,
            None => return Value::Null,
        }
    }
    match cur {
        Value::Array(a) => {
            let mut vals: Vec<&Value> = a.iter().filter(|x| !x.is_null()).collect();
            vals.sort_by(|x, y| cmp_value(x, y));
            let pick = if desc { vals.last() } else { vals.first() };
            pick.map(|x| (*x).clone()).unwrap_or(Value::Null)
        }
        Value::Object(_) => Value::Null,
        other => other.clone(),
    }
}

fn cmp_value(a: &Value, b: &Value) -> Ordering {
    let num = |v: &Value| match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse::<f64>().ok(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    };
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Greater,
        (_, Value::Null) => Ordering::Less,
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i.cmp(&j),
            _ => num(a).partial_cmp(&num(b)).unwrap_or(Ordering::Equal),
        },
        (Value::String(x), Value::String(y)) => x.cmp(y),
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
            _ => a.to_string().cmp(&b.to_string()),
        },
    }
}

fn cmp_keys(a: &[Value], b: &[Value], sort: &[SortKey]) -> Ordering {
    for (i, k) in sort.iter().enumerate() {
        let (x, y) = (&a[i], b.get(i).unwrap_or(&Value::Null));
        let mut o = cmp_value(x, y);
        if k.desc && !x.is_null() && !y.is_null() {
            o = o.reverse();
        }
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// The sort values of one document.
pub fn key_values(sort: &[SortKey], ord: u32, slot: u32, doc: &Doc) -> Vec<Value> {
    sort.iter()
        .map(|k| match &k.field {
            SortField::ShardDoc => Value::from(shard_doc(ord, slot)),
            // Lucene's document number inside its shard: equal values across shards.
            SortField::Doc => Value::from(i64::from(slot)),
            SortField::Score => Value::from(1.0),
            SortField::Field(f) => field_value(doc, f, k.desc),
        })
        .collect()
}

/// Whether `query` matches `doc` of shard `view`.
pub fn query_matches(query: &Query, view: &ShardView, doc: &Doc) -> bool {
    if query.is_match_all() {
        return true;
    }
    if let Some(ids) = query.only_ids() {
        return ids.contains(&doc.id);
    }
    let parsed;
    let source = if query.needs_source() {
        parsed = serde_json::from_slice::<Value>(&doc.source).unwrap_or(Value::Null);
        &parsed
    } else {
        &Value::Null
    };
    query.matches(&DocView {
        id: &doc.id,
        index: &view.index,
        routing: doc.routing.as_deref(),
        source,
        mappings: &view.mappings,
    })
}

/// Whether the sort is plain index order, which allows a seek instead of a full sort: `_shard_doc`
/// ascending, `_score` alone (every hit scores the same), or `_doc` over a single shard (its
/// values are per-shard document numbers, so several shards need the general merge).
fn natural(sort: &[SortKey], shards: usize) -> bool {
    match sort {
        [] => true,
        [k] => {
            !k.desc && k.field == SortField::ShardDoc
                || !k.desc && k.field == SortField::Doc && shards <= 1
                || k.field == SortField::Score
        }
        _ => false,
    }
}

/// Selects matching documents in result order. `limit` caps how many are returned after
/// `search_after` and `skip`; the total counts every match of the query (and slice), except
/// that it is not computed for a filtered search with `track_total_hits: false`.
pub fn select(
    snap: &Snapshot,
    req: &SearchRequest,
    sort: &[SortKey],
    skip: usize,
    limit: usize,
) -> EsResult<(Vec<Selected>, usize)> {
    if let Some(after) = &req.search_after {
        if sort.is_empty() {
            return Err(EsError::search_phase(EsError::illegal_argument(
                "Sort must contain at least one field.",
            )));
        }
        if after.len() != sort.len() {
            return Err(EsError::search_phase(EsError::illegal_argument(format!(
                "search_after has {} value(s) but sort has {}.",
                after.len(),
                sort.len()
            ))));
        }
    }
    let nshards = snap.shards.len();
    let filtered = req.slice.is_some() || !req.query.is_match_all();
    let matches = |ord: u32, doc: &Doc| {
        in_slice(req.slice, nshards, ord, doc)
            && query_matches(&req.query, &snap.shards[ord as usize], doc)
    };
    let with_values = !sort.is_empty();
    if natural(sort, nshards) {
        let start = match (&req.search_after, sort.first().map(|k| &k.field)) {
            (Some(after), Some(SortField::ShardDoc | SortField::Doc)) => {
                let v = after[0]
                    .as_i64()
                    .or_else(|| after[0].as_str().and_then(|s| s.parse().ok()))
                    .ok_or_else(|| {
                        EsError::search_phase(EsError::illegal_argument(format!(
                            "Failed to parse search_after value [{}] for field [_shard_doc]",
                            after[0]
                        )))
                    })?;
                if v < 0 {
                    (0u32, 0u32)
                } else {
                    let (o, s) = ((v >> 32) as u32, (v & 0xffff_ffff) as u32);
                    match s.checked_add(1) {
                        Some(s1) => (o, s1),
                        None => (o + 1, 0),
                    }
                }
            }
            _ => (0, 0),
        };
        let mut out = Vec::new();
        let mut skipped = 0usize;
        let mut total = 0usize;
        // With a filter the total needs a full pass, unless nobody asked for it.
        let scan_all = filtered && req.track_total_hits != TrackTotal::Disabled;
        for (ord, view) in snap.shards.iter().enumerate() {
            let ord = ord as u32;
            let len = view.docs.len();
            if !filtered {
                total += view.live;
            }
            let from_slot = match ord.cmp(&start.0) {
                Ordering::Less => None,
                Ordering::Equal => Some(start.1 as usize),
                Ordering::Greater => Some(0),
            };
            let begin = if scan_all {
                0
            } else {
                match from_slot {
                    None => continue,
                    Some(f) => f.min(len),
                }
            };
            if !scan_all && out.len() >= limit {
                continue;
            }
            for slot in begin..len {
                let Some(doc) = &view.docs[slot] else {
                    continue;
                };
                if filtered && !matches(ord, doc) {
                    continue;
                }
                if scan_all {
                    total += 1;
                }
                if from_slot.is_none_or(|f| slot < f) {
                    continue;
                }
                if out.len() >= limit {
                    if scan_all {
                        continue;
                    }
                    break;
                }
                if skipped < skip {
                    skipped += 1;
                    continue;
                }
                let values = with_values.then(|| key_values(sort, ord, slot as u32, doc));
                out.push((ord, slot as u32, values));
            }
        }
        return Ok((out, total));
    }
    let mut all: Vec<(u32, u32, Vec<Value>)> = Vec::new();
    for (ord, view) in snap.shards.iter().enumerate() {
        for (slot, doc) in view.docs.iter().enumerate() {
            if let Some(doc) = doc {
                if matches(ord as u32, doc) {
                    all.push((
                        ord as u32,
                        slot as u32,
                        key_values(sort, ord as u32, slot as u32, doc),
                    ));
                }
            }
        }
    }
    let total = all.len();
    all.sort_by(|a, b| cmp_keys(&a.2, &b.2, sort));
    let out = all
        .into_iter()
        .filter(|(_, _, k)| {
            req.search_after
                .as_ref()
                .is_none_or(|after| cmp_keys(k, after, sort) == Ordering::Greater)
        })
        .skip(skip)
        .take(limit)
        .map(|(o, s, k)| (o, s, Some(k)))
        .collect();
    Ok((out, total))
}

/// `hits.total` for a count under a tracking mode; `None` when disabled.
pub fn total_json(total: usize, track: TrackTotal, as_int: bool) -> Option<Value> {
    let (value, relation) = match track {
        TrackTotal::Disabled => return as_int.then(|| Value::from(-1)),
        TrackTotal::Exact => (total as i64, "eq"),
        TrackTotal::UpTo(n) if (total as i64) > n => (n, "gte"),
        TrackTotal::UpTo(_) => (total as i64, "eq"),
    };
    if as_int {
        Some(Value::from(value))
    } else {
        Some(serde_json::json!({"value": value, "relation": relation}))
    }
}

/// Options for rendering hits.
#[derive(Debug, Clone)]
pub struct HitStyle {
    /// `_source` filter.
    pub source: SourceFilter,
    /// Whether hits carry `sort` (and a null `_score`).
    pub sorted: bool,
    /// Add `_version`.
    pub version: bool,
    /// Add `_seq_no` and `_primary_term`.
    pub seq_no: bool,
}

/// Writes one hit as JSON, copying the stored `_source` bytes verbatim.
pub fn write_hit(
    out: &mut Vec<u8>,
    index: &str,
    doc: &Doc,
    sort: Option<&Vec<Value>>,
    style: &HitStyle,
) {
    out.extend_from_slice(b"{\"_index\":");
    out.extend_from_slice(&serde_json::to_vec(index).expect("string"));
    out.extend_from_slice(b",\"_id\":");
    out.extend_from_slice(&serde_json::to_vec(&doc.id).expect("string"));
    if style.version {
        out.extend_from_slice(format!(",\"_version\":{}", doc.version).as_bytes());
    }
    if style.seq_no {
        out.extend_from_slice(
            format!(",\"_seq_no\":{},\"_primary_term\":1", doc.seq_no).as_bytes(),
        );
    }
    out.extend_from_slice(if style.sorted {
        b",\"_score\":null"
    } else {
        b",\"_score\":1.0"
    });
    if let Some(r) = &doc.routing {
        out.extend_from_slice(b",\"_routing\":");
        out.extend_from_slice(&serde_json::to_vec(r).expect("string"));
    }
    match &style.source {
        SourceFilter::None => {}
        SourceFilter::All => {
            out.extend_from_slice(b",\"_source\":");
            out.extend_from_slice(&doc.source);
        }
        SourceFilter::Include(pats) => {
            let filtered = match serde_json::from_slice::<Value>(&doc.source) {
                Ok(Value::Object(m)) => Value::Object(
                    m.into_iter()
                        .filter(|(k, _)| pats.iter().any(|p| crate::util::glob(p, k)))
                        .collect(),
                ),
                _ => Value::Object(Map::new()),
            };
            out.extend_from_slice(b",\"_source\":");
            out.extend_from_slice(&serde_json::to_vec(&filtered).expect("value"));
        }
    }
    if let (true, Some(s)) = (style.sorted, sort) {
        out.extend_from_slice(b",\"sort\":");
        out.extend_from_slice(&serde_json::to_vec(s).expect("values"));
    }
    out.push(b'}');
}

/// A hit ready to render: index name, document, sort values.
pub type PageHit = (Arc<str>, Arc<Doc>, Option<Vec<Value>>);

/// Whether hits of this sort carry `sort` values (anything but no sort or `_score` alone).
pub fn renders_sort(sort: &[SortKey]) -> bool {
    !(sort.is_empty() || sort.len() == 1 && sort[0].field == SortField::Score)
}

/// Lazily serialises a page of hits in chunks, so large pages stream out.
pub struct HitChunks {
    /// Remaining hits: index name, document, sort values.
    pub hits: std::vec::IntoIter<PageHit>,
    /// Rendering options.
    pub style: HitStyle,
    /// Whether the next hit is the first.
    pub first: bool,
    /// Bytes written after the last hit.
    pub tail: Option<Bytes>,
}

impl Iterator for HitChunks {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        let mut buf = Vec::with_capacity(64 * 1024);
        while buf.len() < 60 * 1024 {
            let Some((index, doc, sort)) = self.hits.next() else {
                break;
            };
            if !self.first {
                buf.push(b',');
            }
            self.first = false;
            write_hit(&mut buf, &index, &doc, sort.as_ref(), &self.style);
        }
        if buf.is_empty() {
            return self.tail.take();
        }
        Some(Bytes::from(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{OpType, Store};
    use serde_json::json;
    use std::collections::HashSet;

    fn store_with(n: usize, shards: u32) -> (Store, Snapshot) {
        let mut s = Store::new(3);
        s.create_index("i", &json!({"settings": {"number_of_shards": shards}}))
            .unwrap();
        for k in 0..n {
            let src = json!({"n": (n - k) as i64, "k": format!("doc-{k:04}")});
            s.index_doc(
                "i",
                Some(k.to_string()),
                Bytes::from(src.to_string()),
                &src,
                None,
                OpType::Index,
                None,
            )
            .unwrap();
        }
        let snap = s.snapshot(&["i".into()]);
        (s, snap)
    }

    fn req(body: Value) -> SearchRequest {
        SearchRequest::parse(&[], &body).unwrap()
    }

    #[test]
    fn shard_doc_paging_visits_every_document_once() {
        let (_s, snap) = store_with(95, 3);
        let mut seen = HashSet::new();
        let mut after: Option<Value> = None;
        loop {
            let mut body = json!({"size": 10, "sort": [{"_shard_doc": "asc"}], "pit": {"id": "x"}});
            if let Some(a) = &after {
                body["search_after"] = a.clone();
            }
            let r = req(body);
            let (hits, total) = select(&snap, &r, &r.effective_sort(), 0, 10).unwrap();
            assert_eq!(total, 95);
            if hits.is_empty() {
                break;
            }
            for h in &hits {
                assert!(seen.insert((h.0, h.1)));
            }
            after = Some(json!(hits.last().unwrap().2.clone().unwrap()));
        }
        assert_eq!(seen.len(), 95);
    }

    #[test]
    fn slices_partition_the_index() {
        for shards in [1, 4] {
            let (_s, snap) = store_with(50, shards);
            let mut count = 0;
            for id in 0..3 {
                let r = req(json!({"slice": {"id": id, "max": 3}, "size": 100}));
                let (hits, total) = select(&snap, &r, &r.effective_sort(), 0, 100).unwrap();
                assert_eq!(hits.len(), total);
                count += total;
            }
            assert_eq!(count, 50);
        }
    }

    #[test]
    fn field_sort_and_search_after() {
        let (_s, snap) = store_with(20, 2);
        let r = req(json!({"sort": [{"n": "desc"}], "size": 5, "search_after": [16]}));
        let (hits, _) = select(&snap, &r, &r.effective_sort(), 0, 5).unwrap();
        let ns: Vec<i64> = hits
            .iter()
            .map(|h| h.2.as_ref().unwrap()[0].as_i64().unwrap())
            .collect();
        assert_eq!(ns, [15, 14, 13, 12, 11]);
    }

    #[test]
    fn validation_messages() {
        let e = req(json!({"sort": ["_shard_doc"]}))
            .validate(true)
            .unwrap_err();
        assert!(e
            .reason
            .contains("[_shard_doc] sort field cannot be used without [point in time]"));
        let e = req(json!({"pit": {"id": "x"}})).validate(true).unwrap_err();
        assert!(e
            .reason
            .contains("[indices] cannot be used with point in time"));
        let e = SearchRequest::parse(
            &[("scroll".into(), "1m".into()), ("from".into(), "5".into())],
            &Value::Null,
        )
        .unwrap()
        .validate(true)
        .unwrap_err();
        assert!(e
            .reason
            .contains("using [from] is not allowed in a scroll context"));
        assert!(SearchRequest::parse(&[], &json!({"slice": {"id": 3, "max": 3}})).is_err());
        assert!(SearchRequest::parse(&[], &json!({"query": {"match": {"a": 1}}})).is_err());
    }

    #[test]
    fn totals() {
        assert_eq!(
            total_json(20_000, TrackTotal::UpTo(10_000), false),
            Some(json!({"value": 10000, "relation": "gte"}))
        );
        assert_eq!(total_json(5, TrackTotal::Exact, true), Some(json!(5)));
        assert_eq!(total_json(5, TrackTotal::Disabled, false), None);
    }
}
