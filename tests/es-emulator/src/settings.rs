//! Index settings: normalisation to Elasticsearch's flat `index.*` form and back to the nested form.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::{EsError, EsResult};

/// Flat settings, keys like `index.number_of_shards`, values strings (or arrays of strings).
pub type FlatSettings = BTreeMap<String, Value>;

/// Settings Elasticsearch refuses on index creation ("private index setting").
const PRIVATE: &[&str] = &["index.version.created", "index.version.compatibility"];
/// Settings Elasticsearch always regenerates; supplied values are dropped silently.
const REGENERATED: &[&str] = &[
    "index.uuid",
    "index.provided_name",
    "index.version.upgraded",
];

/// Flattens a settings object (nested, dotted or mixed; with or without the `index.` prefix).
pub fn flatten(value: &Value) -> EsResult<FlatSettings> {
    let mut out = FlatSettings::new();
    match value {
        Value::Object(m) => flatten_into("", m, &mut out)?,
        Value::Null => {}
        other => {
            return Err(EsError::illegal_argument(format!(
                "settings must be an object, got [{other}]"
            )))
        }
    }
    Ok(out
        .into_iter()
        .map(|(k, v)| {
            if k.starts_with("index.") || k.starts_with("archived.") {
                (k, v)
            } else {
                (format!("index.{k}"), v)
            }
        })
        .collect())
}

fn flatten_into(prefix: &str, m: &Map<String, Value>, out: &mut FlatSettings) -> EsResult<()> {
    for (k, v) in m {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Value::Object(inner) => flatten_into(&key, inner, out)?,
            Value::Null => {
                out.remove(&key);
            }
            Value::Array(items) => {
                let items = items
                    .iter()
                    .map(scalar_string)
                    .collect::<EsResult<Vec<_>>>()?;
                out.insert(
                    key,
                    Value::Array(items.into_iter().map(Value::String).collect()),
                );
            }
            other => {
                out.insert(key, Value::String(scalar_string(other)?));
            }
        }
    }
    Ok(())
}

fn scalar_string(v: &Value) -> EsResult<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(EsError::illegal_argument(format!(
            "setting value must be a scalar or an array of scalars, got [{other}]"
        ))),
    }
}

/// Nested form with sorted keys, as `GET /<i>/_settings` returns it.
pub fn nest(flat: &FlatSettings) -> Value {
    let mut root = Map::new();
    for (k, v) in flat {
        let parts: Vec<&str> = k.split('.').collect();
        let mut cur = &mut root;
        for p in &parts[..parts.len() - 1] {
            let entry = cur
                .entry(p.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            cur = entry.as_object_mut().expect("object");
        }
        cur.insert(parts[parts.len() - 1].to_string(), v.clone());
    }
    sort_value(Value::Object(root))
}

fn sort_value(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<String, Value> =
                m.into_iter().map(|(k, v)| (k, sort_value(v))).collect();
            Value::Object(sorted.into_iter().collect())
        }
        other => other,
    }
}

/// Checks user-supplied settings for index creation: rejects private settings, drops regenerated
/// ones and validates shard/replica counts.
pub fn validate_for_create(flat: &mut FlatSettings) -> EsResult<()> {
    for p in PRIVATE {
        if flat.contains_key(*p) {
            return Err(EsError::illegal_argument(format!(
                "private index setting [{p}] can not be set explicitly"
            )));
        }
    }
    for r in REGENERATED {
        flat.remove(*r);
    }
    validate_int(flat, "index.number_of_shards", 1, 1024)?;
    validate_int(flat, "index.number_of_replicas", 0, i64::MAX)?;
    validate_int(flat, "index.max_result_window", 1, i64::MAX)?;
    Ok(())
}

/// Checks a settings update on an existing index. Static settings (`analysis`, `codec`, …) can
/// change only while the index is closed; some never change.
pub fn validate_for_update(
    flat: &FlatSettings,
    index: &str,
    uuid: &str,
    closed: bool,
) -> EsResult<()> {
    for key in flat.keys() {
        let never = key == "index.number_of_shards"
            || key.starts_with("index.version.")
            || key == "index.uuid"
            || key == "index.creation_date"
            || key == "index.provided_name";
        if never && closed {
            return Err(EsError::illegal_argument(format!(
                "final {index} setting [{key}], not updateable"
            )));
        }
        let static_ = key.starts_with("index.analysis.")
            || key == "index.codec"
            || key.starts_with("index.sort.")
            || key == "index.mapping.source.mode";
        if never || (static_ && !closed) {
            return Err(EsError::illegal_argument(format!(
                "Can't update non dynamic settings [[{key}]] for open indices [[{index}/{uuid}]]"
            )));
        }
    }
    validate_int(flat, "index.number_of_replicas", 0, i64::MAX)?;
    validate_int(flat, "index.max_result_window", 1, i64::MAX)?;
    Ok(())
}

fn validate_int(flat: &FlatSettings, key: &str, min: i64, max: i64) -> EsResult<()> {
    if let Some(v) = flat.get(key) {
        let s = v.as_str().unwrap_or_default();
        let n: i64 = s.parse().map_err(|_| {
            EsError::illegal_argument(format!("Failed to parse value [{s}] for setting [{key}]"))
        })?;
        if n < min {
            return Err(EsError::illegal_argument(format!(
                "Failed to parse value [{s}] for setting [{key}] must be >= {min}"
            )));
        }
        if n > max {
            return Err(EsError::illegal_argument(format!(
                "Failed to parse value [{s}] for setting [{key}] must be <= {max}"
            )));
        }
    }
    Ok(())
}

/// Reads an integer setting with a default.
pub fn get_int(flat: &FlatSettings, key: &str, default: i64) -> i64 {
    flat.get(key)
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Reads a boolean setting (false when absent).
pub fn get_bool(flat: &FlatSettings, key: &str) -> bool {
    flat.get(key).and_then(|v| v.as_str()) == Some("true")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_dotted_and_unprefixed_forms_agree() {
        let a = flatten(&json!({"index": {"number_of_shards": 2, "analysis": {"analyzer": {}}}}))
            .unwrap();
        let b = flatten(&json!({"index.number_of_shards": "2"})).unwrap();
        let c = flatten(&json!({"number_of_shards": 2})).unwrap();
        assert_eq!(a.get("index.number_of_shards"), Some(&json!("2")));
        assert_eq!(b, c);
        assert_eq!(
            nest(&b),
            json!({"index": {"number_of_shards": "2"}}),
            "numbers come back as strings, like Elasticsearch"
        );
    }

    #[test]
    fn private_settings_are_rejected_on_create() {
        let mut f = flatten(&json!({"index": {"version": {"created": "8000099"}}})).unwrap();
        let e = validate_for_create(&mut f).unwrap_err();
        assert_eq!(e.kind, "illegal_argument_exception");
        assert!(e.reason.contains("index.version.created"));
    }
}
