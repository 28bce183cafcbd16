//! The query DSL subset: `match_all`, `match_none`, `ids`, `term`, `terms`, `range`, `exists`
//! and `bool`, parsed with Elasticsearch's error types and matched against stored documents.

use std::cmp::Ordering;
use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::error::{EsError, EsResult};

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    /// Every document.
    MatchAll,
    /// No document.
    MatchNone,
    /// Documents whose `_id` is listed.
    Ids(HashSet<String>),
    /// Exact value of a field (analysed tokens for `text` fields).
    Term {
        /// Field path.
        field: String,
        /// The value.
        value: Value,
        /// `case_insensitive` (keyword-like fields).
        case_insensitive: bool,
    },
    /// Any of several exact values.
    Terms {
        /// Field path.
        field: String,
        /// The values.
        values: Vec<Value>,
    },
    /// Bounds on a field.
    Range {
        /// Field path.
        field: String,
        /// `gt`, `gte`, `lt`, `lte` in this order.
        bounds: [Option<Value>; 4],
    },
    /// The field has a non-null value.
    Exists(String),
    /// Boolean combination.
    Bool {
        /// `must` clauses.
        must: Vec<Query>,
        /// `filter` clauses.
        filter: Vec<Query>,
        /// `should` clauses.
        should: Vec<Query>,
        /// `must_not` clauses.
        must_not: Vec<Query>,
        /// `minimum_should_match`.
        minimum_should_match: Option<usize>,
    },
}

/// Real query types this emulator does not implement (refused with a clear 400 instead of
/// Elasticsearch's behaviour).
const NOT_IMPLEMENTED: &[&str] = &[
    "match",
    "match_phrase",
    "match_phrase_prefix",
    "multi_match",
    "match_bool_prefix",
    "query_string",
    "simple_query_string",
    "prefix",
    "wildcard",
    "regexp",
    "fuzzy",
    "nested",
    "has_child",
    "has_parent",
    "function_score",
    "script",
    "script_score",
    "geo_distance",
    "geo_bounding_box",
    "more_like_this",
    "dis_max",
    "boosting",
    "constant_score",
    "knn",
    "terms_set",
    "intervals",
    "combined_fields",
    "span_term",
    "distance_feature",
    "rank_feature",
    "pinned",
    "semantic",
    "sparse_vector",
];

fn parsing(reason: impl Into<String>) -> EsError {
    EsError::parsing(reason)
}

impl Query {
    /// Parses a `query` object.
    pub fn parse(q: &Value) -> EsResult<Query> {
        let Some(m) = q.as_object() else {
            return Err(parsing(
                "[_na] query malformed, must start with start_object",
            ));
        };
        let mut it = m.iter();
        let Some((kind, body)) = it.next() else {
            return Ok(Query::MatchAll);
        };
        if let Some((next, _)) = it.next() {
            return Err(parsing(format!(
                "[{kind}] malformed query, expected [END_OBJECT] but found [FIELD_NAME] ({next})"
            )));
        }
        match kind.as_str() {
            "match_all" => Ok(Query::MatchAll),
            "match_none" => Ok(Query::MatchNone),
            "ids" => {
                let values = body
                    .get("values")
                    .and_then(Value::as_array)
                    .ok_or_else(|| parsing("[ids] query malformed, no [values] field"))?;
                Ok(Query::Ids(
                    values
                        .iter()
                        .map(|v| {
                            v.as_str()
                                .map(String::from)
                                .unwrap_or_else(|| v.to_string())
                        })
                        .collect(),
                ))
            }
            "term" => {
                let (field, spec) = single_field("term", body)?;
                let (value, ci) = match spec {
                    Value::Object(o) => {
                        for k in o.keys() {
                            if !matches!(
                                k.as_str(),
                                "value" | "boost" | "case_insensitive" | "_name"
                            ) {
                                return Err(parsing(format!(
                                    "[term] query does not support [{k}]"
                                )));
                            }
                        }
                        let v = o
                            .get("value")
                            .cloned()
                            .ok_or_else(|| parsing("[term] query malformed, no [value] field"))?;
                        let ci = o
                            .get("case_insensitive")
                            .and_then(Value::as_bool)
                            .unwrap_or(false);
                        (v, ci)
                    }
                    Value::Array(_) => {
                        return Err(parsing("[term] query does not support array of values"))
                    }
                    v => (v.clone(), false),
                };
                Ok(Query::Term {
                    field,
                    value,
                    case_insensitive: ci,
                })
            }
            "terms" => {
                let obj = body
                    .as_object()
                    .ok_or_else(|| parsing("[terms] query malformed, expected an object"))?;
                let mut field = None;
                for (k, v) in obj {
                    if k == "boost" || k == "_name" {
                        continue;
                    }
                    if field.is_some() {
                        return Err(parsing(format!(
                            "[terms] query does not support multiple fields ({k})"
                        )));
                    }
                    let Value::Array(values) = v else {
                        return Err(parsing(format!("[terms] query does not support [{k}]")));
                    };
                    field = Some((k.clone(), values.clone()));
                }
                let (field, values) =
                    field.ok_or_else(|| parsing("[terms] query requires a field name"))?;
                Ok(Query::Terms { field, values })
            }
            "range" => {
                let (field, spec) = single_field("range", body)?;
                let o = spec.as_object().ok_or_else(|| {
                    parsing(format!(
                        "[range] query malformed, no start_object after query name ({field})"
                    ))
                })?;
                let mut bounds: [Option<Value>; 4] = [None, None, None, None];
                for (k, v) in o {
                    match k.as_str() {
                        "gt" => bounds[0] = Some(v.clone()),
                        "gte" | "from" => bounds[1] = Some(v.clone()),
                        "lt" => bounds[2] = Some(v.clone()),
                        "lte" | "to" => bounds[3] = Some(v.clone()),
                        "boost" | "_name" | "format" | "relation" | "time_zone" => {}
                        other => {
                            return Err(parsing(format!(
                                "[range] query does not support [{other}]"
                            )))
                        }
                    }
                }
                for b in bounds.iter().flatten() {
                    if b.as_str().is_some_and(|s| s.starts_with("now")) {
                        return Err(EsError::illegal_argument(
                            "kstash-es-emulator does not support date math ([now]) in range queries",
                        ));
                    }
                }
                Ok(Query::Range { field, bounds })
            }
            "exists" => {
                let field = body
                    .get("field")
                    .and_then(Value::as_str)
                    .ok_or_else(|| parsing("[exists] must be provided with a [field]"))?;
                Ok(Query::Exists(field.to_string()))
            }
            "bool" => {
                let o = body
                    .as_object()
                    .ok_or_else(|| parsing("[bool] query malformed, expected an object"))?;
                let mut q = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                let mut msm = None;
                for (k, v) in o {
                    let list = |v: &Value| -> EsResult<Vec<Query>> {
                        match v {
                            Value::Array(a) => a.iter().map(Query::parse).collect(),
                            other => Ok(vec![Query::parse(other)?]),
                        }
                    };
                    match k.as_str() {
                        "must" => q.0 = list(v)?,
                        "filter" => q.1 = list(v)?,
                        "should" => q.2 = list(v)?,
                        "must_not" | "mustNot" => q.3 = list(v)?,
                        "minimum_should_match" => {
                            msm = Some(
                                v.as_u64()
                                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                                    .ok_or_else(|| {
                                        EsError::illegal_argument(format!(
                                            "kstash-es-emulator supports only an integer minimum_should_match, got [{v}]"
                                        ))
                                    })? as usize,
                            )
                        }
                        "boost" | "_name" | "adjust_pure_negative" => {}
                        other => {
                            return Err(parsing(format!("[bool] query does not support [{other}]")))
                        }
                    }
                }
                Ok(Query::Bool {
                    must: q.0,
                    filter: q.1,
                    should: q.2,
                    must_not: q.3,
                    minimum_should_match: msm,
                })
            }
            k if NOT_IMPLEMENTED.contains(&k) => Err(EsError::illegal_argument(format!(
                "kstash-es-emulator does not support the [{k}] query"
            ))),
            other => Err(parsing(format!("unknown query [{other}]"))),
        }
    }

    /// Whether the query matches every document (no source needs to be read).
    pub fn is_match_all(&self) -> bool {
        matches!(self, Query::MatchAll)
    }

    /// The ids an `ids` query names, when that is the whole query.
    pub fn only_ids(&self) -> Option<&HashSet<String>> {
        match self {
            Query::Ids(s) => Some(s),
            _ => None,
        }
    }

    /// Whether the query needs the document's parsed `_source`.
    pub fn needs_source(&self) -> bool {
        match self {
            Query::MatchAll | Query::MatchNone | Query::Ids(_) => false,
            Query::Term { field, .. } | Query::Terms { field, .. } | Query::Range { field, .. } => {
                !is_meta(field)
            }
            Query::Exists(f) => !is_meta(f),
            Query::Bool {
                must,
                filter,
                should,
                must_not,
                ..
            } => must
                .iter()
                .chain(filter)
                .chain(should)
                .chain(must_not)
                .any(Query::needs_source),
        }
    }

    /// Evaluates the query on one document.
    pub fn matches(&self, doc: &DocView<'_>) -> bool {
        match self {
            Query::MatchAll => true,
            Query::MatchNone => false,
            Query::Ids(ids) => ids.contains(doc.id),
            Query::Term {
                field,
                value,
                case_insensitive,
            } => term_matches(doc, field, value, *case_insensitive),
            Query::Terms { field, values } => {
                values.iter().any(|v| term_matches(doc, field, v, false))
            }
            Query::Range { field, bounds } => doc.values(field).iter().any(|v| {
                let ok = |b: &Option<Value>, want: &[Ordering]| {
                    b.as_ref()
                        .is_none_or(|b| cmp_loose(v, b).is_some_and(|o| want.contains(&o)))
                };
                ok(&bounds[0], &[Ordering::Greater])
                    && ok(&bounds[1], &[Ordering::Greater, Ordering::Equal])
                    && ok(&bounds[2], &[Ordering::Less])
                    && ok(&bounds[3], &[Ordering::Less, Ordering::Equal])
            }),
            Query::Exists(f) => !doc.values(f).is_empty(),
            Query::Bool {
                must,
                filter,
                should,
                must_not,
                minimum_should_match,
            } => {
                if !must.iter().chain(filter).all(|q| q.matches(doc)) {
                    return false;
                }
                if must_not.iter().any(|q| q.matches(doc)) {
                    return false;
                }
                let needed = minimum_should_match.unwrap_or(
                    if must.is_empty() && filter.is_empty() && !should.is_empty() {
                        1
                    } else {
                        0
                    },
                );
                should.iter().filter(|q| q.matches(doc)).count() >= needed
            }
        }
    }
}

fn is_meta(f: &str) -> bool {
    matches!(f, "_id" | "_index" | "_routing")
}

fn single_field<'a>(kind: &str, body: &'a Value) -> EsResult<(String, &'a Value)> {
    let o = body.as_object().ok_or_else(|| {
        parsing(format!(
            "[{kind}] query malformed, no start_object after query name"
        ))
    })?;
    let fields: Vec<(&String, &Value)> = o.iter().filter(|(k, _)| k.as_str() != "boost").collect();
    match fields.as_slice() {
        [(f, v)] => Ok(((*f).clone(), v)),
        [] => Err(parsing(format!("[{kind}] query requires a field name"))),
        [(a, _), (b, _), ..] => Err(parsing(format!(
            "[{kind}] query doesn't support multiple fields, found [{a}] and [{b}]"
        ))),
    }
}

/// One document as queries see it.
pub struct DocView<'a> {
    /// `_id`.
    pub id: &'a str,
    /// `_index`.
    pub index: &'a str,
    /// `_routing`.
    pub routing: Option<&'a str>,
    /// Parsed `_source` (`Null` when the query does not need it).
    pub source: &'a Value,
    /// The index's `mappings`, for field types.
    pub mappings: &'a Map<String, Value>,
}

impl DocView<'_> {
    /// The leaf values of a dotted field path (arrays flattened, objects walked through).
    pub fn values(&self, field: &str) -> Vec<Value> {
        match field {
            "_id" => return vec![Value::String(self.id.to_string())],
            "_index" => return vec![Value::String(self.index.to_string())],
            "_routing" => {
                return self
                    .routing
                    .map(|r| vec![Value::String(r.to_string())])
                    .unwrap_or_default()
            }
            _ => {}
        }
        let mut out = Vec::new();
        collect(self.source, &field.split('.').collect::<Vec<_>>(), &mut out);
        if out.is_empty() {
            // A multi-field (`name.keyword`) reads its parent's value.
            if let Some((parent, sub)) = field.rsplit_once('.') {
                let is_sub = field_def(self.mappings, parent)
                    .and_then(|d| d.get("fields"))
                    .is_some_and(|f| f.get(sub).is_some());
                if is_sub {
                    collect(
                        self.source,
                        &parent.split('.').collect::<Vec<_>>(),
                        &mut out,
                    );
                }
            }
        }
        out
    }

    /// The mapped type of `field` (`keyword` for a multi-field without its own type).
    pub fn field_type(&self, field: &str) -> Option<String> {
        if let Some(d) = field_def(self.mappings, field) {
            return d.get("type").and_then(Value::as_str).map(String::from);
        }
        let (parent, sub) = field.rsplit_once('.')?;
        field_def(self.mappings, parent)?
            .get("fields")?
            .get(sub)?
            .get("type")
            .and_then(Value::as_str)
            .map(String::from)
    }
}

fn collect(v: &Value, path: &[&str], out: &mut Vec<Value>) {
    match v {
        Value::Array(items) => {
            for i in items {
                collect(i, path, out);
            }
        }
        Value::Null => {}
        Value::Object(m) if !path.is_empty() => {
            if let Some(n) = m.get(path[0]) {
                collect(n, &path[1..], out);
            } else {
                // Dotted keys in the source (`{"a.b": 1}`) also address `a.b`.
                for split in (1..path.len()).rev() {
                    let key = path[..=split].join(".");
                    if let Some(n) = m.get(&key) {
                        collect(n, &path[split + 1..], out);
                        return;
                    }
                }
            }
        }
        other if path.is_empty() => out.push(other.clone()),
        _ => {}
    }
}

fn field_def<'a>(mappings: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    let mut props = mappings.get("properties")?;
    let parts: Vec<&str> = field.split('.').collect();
    for (i, p) in parts.iter().enumerate() {
        let def = props.get(p)?;
        if i + 1 == parts.len() {
            return Some(def);
        }
        props = def.get("properties")?;
    }
    None
}

/// Lower-cased word tokens, like the standard analyzer (close enough for term matching).
pub fn tokens(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn term_matches(doc: &DocView<'_>, field: &str, want: &Value, ci: bool) -> bool {
    let text = doc.field_type(field).as_deref() == Some("text");
    doc.values(field).iter().any(|v| {
        if text {
            let w = scalar_text(want);
            return v.as_str().is_some_and(|s| tokens(s).contains(&w));
        }
        if ci {
            if let (Some(a), Some(b)) = (v.as_str(), want.as_str()) {
                return a.to_lowercase() == b.to_lowercase();
            }
        }
        cmp_loose(v, want) == Some(Ordering::Equal)
    })
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Compares a stored value with a query value: numerically when both read as numbers,
/// booleans with their string forms, otherwise as strings.
pub fn cmp_loose(a: &Value, b: &Value) -> Option<Ordering> {
    let num = |v: &Value| match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse::<f64>().ok(),
        _ => None,
    };
    match (a, b) {
        (Value::Number(_), _) | (_, Value::Number(_)) => {
            if let (Value::Number(x), Value::Number(y)) = (a, b) {
                if let (Some(i), Some(j)) = (x.as_i64(), y.as_i64()) {
                    return Some(i.cmp(&j));
                }
            }
            num(a)?.partial_cmp(&num(b)?)
        }
        (Value::Bool(x), _) => Some(x.to_string().as_str().cmp(scalar_text(b).as_str())),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::String(x), Value::Bool(y)) => Some(x.as_str().cmp(y.to_string().as_str())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view<'a>(src: &'a Value, m: &'a Map<String, Value>) -> DocView<'a> {
        DocView {
            id: "1",
            index: "i",
            routing: None,
            source: src,
            mappings: m,
        }
    }

    #[test]
    fn term_terms_range_exists_bool() {
        let m = json!({"properties": {
            "title": {"type": "text", "fields": {"keyword": {"type": "keyword"}}},
            "n": {"type": "long"}, "tag": {"type": "keyword"},
            "v": {"type": "nested", "properties": {"sku": {"type": "keyword"}}}}});
        let m = m.as_object().unwrap().clone();
        let src = json!({"title": "Hello World", "n": 5, "tag": ["a", "B"], "v": [{"sku": "x1"}, {"sku": "x2"}]});
        let d = view(&src, &m);
        let q = |v: Value| Query::parse(&v).unwrap().matches(&d);
        assert!(q(json!({"term": {"title": "hello"}})));
        assert!(
            !q(json!({"term": {"title": "Hello"}})),
            "text is analysed, the term is not"
        );
        assert!(q(json!({"term": {"title.keyword": "Hello World"}})));
        assert!(q(json!({"term": {"n": "5"}})));
        assert!(q(
            json!({"term": {"tag": {"value": "b", "case_insensitive": true}}})
        ));
        assert!(q(json!({"terms": {"v.sku": ["x2", "y"]}})));
        assert!(q(json!({"range": {"n": {"gte": 5, "lt": 6}}})));
        assert!(!q(json!({"range": {"n": {"gt": 5}}})));
        assert!(q(json!({"exists": {"field": "v.sku"}})));
        assert!(!q(json!({"exists": {"field": "missing"}})));
        assert!(q(
            json!({"bool": {"must": [{"term": {"n": 5}}], "must_not": {"term": {"tag": "c"}}}})
        ));
        assert!(!q(
            json!({"bool": {"should": [{"term": {"n": 1}}, {"term": {"n": 2}}]}})
        ));
        assert!(q(
            json!({"bool": {"filter": {"term": {"n": 5}}, "should": [{"term": {"n": 1}}]}})
        ));
        assert!(q(json!({"term": {"_id": "1"}})));
    }

    #[test]
    fn errors_like_elasticsearch() {
        let e = Query::parse(&json!({"bogus": {}})).unwrap_err();
        assert_eq!(
            (e.kind.as_str(), e.reason.as_str()),
            ("parsing_exception", "unknown query [bogus]")
        );
        let e = Query::parse(&json!({"term": {"a": 1, "b": 2}})).unwrap_err();
        assert!(
            e.reason.contains("doesn't support multiple fields"),
            "{}",
            e.reason
        );
        let e = Query::parse(&json!({"range": {"a": {"gtx": 1}}})).unwrap_err();
        assert_eq!(e.reason, "[range] query does not support [gtx]");
        let e = Query::parse(&json!({"bool": {"musts": []}})).unwrap_err();
        assert_eq!(e.reason, "[bool] query does not support [musts]");
        let e = Query::parse(&json!({"match": {"a": "x"}})).unwrap_err();
        assert_eq!(e.kind, "illegal_argument_exception");
    }
}
