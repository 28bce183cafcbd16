//! Mappings: merging `PUT _mapping` bodies, dynamic mapping of new fields, basic value checks.

use serde_json::{json, Map, Value};

use crate::error::{EsError, EsResult};

const ROOT_PARAMS: &[&str] = &[
    "properties",
    "dynamic",
    "_source",
    "dynamic_templates",
    "_meta",
    "_routing",
    "date_detection",
    "numeric_detection",
    "dynamic_date_formats",
    "runtime",
    "enabled",
    "subobjects",
    "_field_names",
    "_data_stream_timestamp",
];

const NUMERIC: &[&str] = &[
    "long",
    "integer",
    "short",
    "byte",
    "double",
    "float",
    "half_float",
    "scaled_float",
    "unsigned_long",
];

/// Merges a mapping update (the body of `PUT /<i>/_mapping` or `mappings` on create) into `target`.
pub fn merge(target: &mut Map<String, Value>, update: &Value) -> EsResult<()> {
    let Some(upd) = update.as_object() else {
        return Err(EsError::new(
            400,
            "mapper_parsing_exception",
            "Failed to parse mapping: mapping must be an object",
        ));
    };
    let unknown: Vec<String> = upd
        .iter()
        .filter(|(k, _)| !ROOT_PARAMS.contains(&k.as_str()))
        .map(|(k, v)| format!("{k} : {v}"))
        .collect();
    if !unknown.is_empty() {
        let reason = format!(
            "Root mapping definition has unsupported parameters:  [{}]",
            unknown.join("] [")
        );
        return Err(EsError::new(
            400,
            "mapper_parsing_exception",
            format!("Failed to parse mapping: {reason}"),
        ));
    }
    for (k, v) in upd {
        if k == "properties" {
            let props = target
                .entry("properties")
                .or_insert_with(|| Value::Object(Map::new()));
            merge_properties("", props, v)?;
        } else {
            target.insert(k.clone(), v.clone());
        }
    }
    Ok(())
}

fn merge_properties(path: &str, target: &mut Value, update: &Value) -> EsResult<()> {
    let (Some(t), Some(u)) = (target.as_object_mut(), update.as_object()) else {
        return Err(EsError::new(
            400,
            "mapper_parsing_exception",
            format!("Expected map for property [properties] on field [{path}]"),
        ));
    };
    for (name, def) in u {
        let full = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        match t.get_mut(name) {
            None => {
                t.insert(name.clone(), def.clone());
            }
            Some(existing) => {
                let old_type = field_type(existing);
                let new_type = field_type(def);
                if old_type != new_type {
                    return Err(EsError::illegal_argument(format!(
                        "mapper [{full}] cannot be changed from type [{old_type}] to [{new_type}]"
                    )));
                }
                let (Some(eo), Some(no)) = (existing.as_object_mut(), def.as_object()) else {
                    continue;
                };
                for (k, v) in no {
                    if k == "properties" {
                        let p = eo
                            .entry("properties")
                            .or_insert_with(|| Value::Object(Map::new()));
                        merge_properties(&full, p, v)?;
                    } else {
                        eo.insert(k.clone(), v.clone());
                    }
                }
            }
        }
    }
    Ok(())
}

fn field_type(def: &Value) -> String {
    def.get("type")
        .and_then(Value::as_str)
        .unwrap_or("object")
        .to_string()
}

/// Applies one document to the mapping: dynamically maps new fields, refuses `strict` violations
/// and values that do not parse for numeric/boolean fields. Returns whether the mapping changed.
pub fn apply_document(mapping: &mut Map<String, Value>, doc: &Value, id: &str) -> EsResult<bool> {
    let dynamic = dynamic_of(mapping, "true");
    let props = mapping
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    let before_empty = props.as_object().is_some_and(|m| m.is_empty());
    let changed = walk("", props, doc, &dynamic, id)?;
    if !changed && before_empty {
        mapping.remove("properties");
    }
    Ok(changed)
}

fn dynamic_of(m: &Map<String, Value>, inherited: &str) -> String {
    match m.get("dynamic") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => inherited.to_string(),
    }
}

fn walk(path: &str, props: &mut Value, doc: &Value, dynamic: &str, id: &str) -> EsResult<bool> {
    let Some(obj) = doc.as_object() else {
        return Ok(false);
    };
    let mut changed = false;
    for (name, value) in obj {
        let full = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        let props_map = props.as_object_mut().expect("properties object");
        if let Some(def) = props_map.get_mut(name) {
            changed |= check_value(&full, def, value, dynamic, id)?;
            continue;
        }
        if value.is_null() || matches!(value, Value::Array(a) if a.is_empty()) {
            continue;
        }
        match dynamic {
            "strict" => {
                return Err(EsError::new(
                    400,
                    "strict_dynamic_mapping_exception",
                    format!(
                        "[1:2] mapping set to strict, dynamic introduction of [{name}] within [{}] is not allowed",
                        if path.is_empty() { "_doc" } else { path }
                    ),
                ))
            }
            "false" | "runtime" => continue,
            _ => {}
        }
        let mut def = infer(value);
        check_value(&full, &mut def, value, dynamic, id)?;
        props_map.insert(name.clone(), def);
        changed = true;
    }
    Ok(changed)
}

fn check_value(
    path: &str,
    def: &mut Value,
    value: &Value,
    dynamic: &str,
    id: &str,
) -> EsResult<bool> {
    let ty = field_type(def);
    let values: Vec<&Value> = match value {
        Value::Array(a) => a.iter().collect(),
        v => vec![v],
    };
    let mut changed = false;
    for v in values {
        if v.is_null() {
            continue;
        }
        if ty == "object" || ty == "nested" {
            if !v.is_object() {
                return Err(parse_failure(path, &ty, v, id));
            }
            let obj = def.as_object_mut().expect("field definition object");
            let inner_dynamic = dynamic_of(obj, dynamic);
            if obj.get("enabled") == Some(&Value::Bool(false)) {
                continue;
            }
            let props = obj
                .entry("properties")
                .or_insert_with(|| Value::Object(Map::new()));
            changed |= walk(path, props, v, &inner_dynamic, id)?;
        } else if v.is_object()
            && !matches!(
                ty.as_str(),
                "flattened"
                    | "geo_point"
                    | "geo_shape"
                    | "join"
                    | "percolator"
                    | "dense_vector"
                    | "sparse_vector"
                    | "histogram"
                    | "aggregate_metric_double"
                    | "rank_features"
                    | "shape"
                    | "integer_range"
                    | "long_range"
                    | "float_range"
                    | "double_range"
                    | "date_range"
                    | "ip_range"
            )
        {
            return Err(parse_failure(path, &ty, v, id));
        } else if NUMERIC.contains(&ty.as_str()) {
            let ok = match v {
                Value::Number(_) => true,
                Value::String(s) => s.trim().parse::<f64>().is_ok(),
                _ => false,
            };
            if !ok {
                return Err(parse_failure(path, &ty, v, id));
            }
        } else if ty == "boolean" {
            let ok = matches!(v, Value::Bool(_))
                || matches!(v, Value::String(s) if s == "true" || s == "false" || s.is_empty());
            if !ok {
                return Err(parse_failure(path, &ty, v, id));
            }
        }
    }
    Ok(changed)
}

fn parse_failure(path: &str, ty: &str, v: &Value, id: &str) -> EsError {
    let preview = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    EsError::new(
        400,
        "document_parsing_exception",
        format!(
            "[1:2] failed to parse field [{path}] of type [{ty}] in document with id '{id}'. Preview of field's value: '{preview}'"
        ),
    )
}

/// The mapping Elasticsearch's dynamic mapping gives a JSON value.
pub fn infer(value: &Value) -> Value {
    match value {
        Value::Array(a) => a
            .iter()
            .find(|v| !v.is_null())
            .map(infer)
            .unwrap_or(json!({"type": "text"})),
        Value::Bool(_) => json!({"type": "boolean"}),
        Value::Number(n) if n.is_f64() => json!({"type": "float"}),
        Value::Number(_) => json!({"type": "long"}),
        Value::Object(_) => json!({"properties": {}}),
        Value::String(s) if looks_like_date(s) => json!({"type": "date"}),
        _ => {
            json!({"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}})
        }
    }
}

/// Elasticsearch's default `dynamic_date_formats` start with `strict_date_optional_time`:
/// `yyyy-MM-dd` optionally followed by `T` and a time.
fn looks_like_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 10 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let date = digits(0..4) && b[4] == b'-' && digits(5..7) && b[7] == b'-' && digits(8..10);
    date && (b.len() == 10 || (b[10] == b'T' && b.len() >= 13 && digits(11..13)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_mapping_follows_elasticsearch_defaults() {
        let mut m = Map::new();
        let doc = json!({"s": "x", "n": 3, "f": 1.5, "b": true, "d": "2024-01-02T03:04:05Z", "o": {"k": "v"}});
        assert!(apply_document(&mut m, &doc, "1").unwrap());
        let p = &m["properties"];
        assert_eq!(p["s"]["type"], "text");
        assert_eq!(p["s"]["fields"]["keyword"]["type"], "keyword");
        assert_eq!(p["n"]["type"], "long");
        assert_eq!(p["f"]["type"], "float");
        assert_eq!(p["b"]["type"], "boolean");
        assert_eq!(p["d"]["type"], "date");
        assert_eq!(p["o"]["properties"]["k"]["type"], "text");
    }

    #[test]
    fn strict_and_type_errors() {
        let mut m = serde_json::from_value::<Map<String, Value>>(
            json!({"dynamic": "strict", "properties": {"n": {"type": "long"}}}),
        )
        .unwrap();
        let e = apply_document(&mut m, &json!({"x": 1}), "7").unwrap_err();
        assert_eq!(e.kind, "strict_dynamic_mapping_exception");
        let e = apply_document(&mut m, &json!({"n": "abc"}), "7").unwrap_err();
        assert_eq!(e.kind, "document_parsing_exception");
        assert!(e.reason.contains("[n] of type [long]"));
    }

    #[test]
    fn type_change_is_refused() {
        let mut m = Map::new();
        merge(&mut m, &json!({"properties": {"a": {"type": "long"}}})).unwrap();
        let e = merge(&mut m, &json!({"properties": {"a": {"type": "text"}}})).unwrap_err();
        assert!(e
            .reason
            .contains("cannot be changed from type [long] to [text]"));
        let e = merge(&mut m, &json!({"_doc": {"properties": {}}})).unwrap_err();
        assert_eq!(e.kind, "mapper_parsing_exception");
    }
}
