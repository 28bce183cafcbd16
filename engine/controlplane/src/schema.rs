//! CRD structural schemas: defaulting, pruning of unknown fields and validation, with the field
//! error messages of the real API server.

use serde_json::{Map, Value};

use crate::status::{cause, Cause};

fn go_quote(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Applies `default`s for absent fields, recursively.
pub fn apply_defaults(v: &mut Value, schema: &Value) {
    if let (Value::Object(obj), Some(props)) = (&mut *v, schema["properties"].as_object()) {
        for (k, s) in props {
            let absent = match obj.get(k) {
                None => true,
                Some(Value::Null) => s["nullable"].as_bool() != Some(true),
                _ => false,
            };
            if absent {
                if let Some(d) = s.get("default") {
                    obj.insert(k.clone(), d.clone());
                }
            }
            if let Some(c) = obj.get_mut(k) {
                apply_defaults(c, s);
            }
        }
    }
    if let (Value::Object(obj), Some(ap)) = (
        &mut *v,
        schema.get("additionalProperties").filter(|a| a.is_object()),
    ) {
        for c in obj.values_mut() {
            apply_defaults(c, ap);
        }
    }
    if let (Value::Array(items), Some(is)) = (&mut *v, schema.get("items")) {
        for c in items {
            apply_defaults(c, is);
        }
    }
}

/// Removes fields the schema does not know (unless `x-kubernetes-preserve-unknown-fields`);
/// returns the paths dropped.
pub fn prune(v: &mut Value, schema: &Value, path: &str, dropped: &mut Vec<String>) {
    let preserve = schema["x-kubernetes-preserve-unknown-fields"].as_bool() == Some(true);
    match v {
        Value::Object(obj) => {
            let props = schema["properties"].as_object();
            let ap = schema.get("additionalProperties");
            if let Some(ap) = ap.filter(|a| a.is_object()) {
                for (k, c) in obj.iter_mut() {
                    prune(c, ap, &join(path, k), dropped);
                }
                return;
            }
            if ap.and_then(Value::as_bool) == Some(true) {
                return;
            }
            let mut remove = vec![];
            for (k, c) in obj.iter_mut() {
                match props.and_then(|p| p.get(k)) {
                    Some(s) => prune(c, s, &join(path, k), dropped),
                    None if preserve => {}
                    None => remove.push(k.clone()),
                }
            }
            for k in remove {
                dropped.push(join(path, &k));
                obj.remove(&k);
            }
        }
        Value::Array(items) => {
            if let Some(is) = schema.get("items") {
                for (i, c) in items.iter_mut().enumerate() {
                    prune(c, is, &format!("{path}[{i}]"), dropped);
                }
            }
        }
        _ => {}
    }
}

fn join(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

/// Validates `v` against `schema`, collecting field errors.
pub fn validate(v: &Value, schema: &Value, path: &str, errs: &mut Vec<Cause>) {
    if v.is_null() && (schema["nullable"].as_bool() == Some(true) || schema.get("type").is_none()) {
        return;
    }
    let int_or_string = schema["x-kubernetes-int-or-string"].as_bool() == Some(true);
    if int_or_string {
        if !(v.is_string() || v.is_i64() || v.is_u64()) {
            errs.push(cause(
                "FieldValueInvalid",
                path,
                format!(
                    "Invalid value: {}: {path} in body must be of type int-or-string: {:?}",
                    go_quote(v),
                    type_name(v)
                ),
            ));
        }
    } else if let Some(t) = schema["type"].as_str() {
        let ok = match t {
            "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
            "number" => v.is_number(),
            other => type_name(v) == other,
        };
        if !ok {
            errs.push(cause(
                "FieldValueTypeInvalid",
                path,
                format!(
                    "Invalid value: {}: {path} in body must be of type {t}: {:?}",
                    go_quote(v),
                    type_name(v)
                ),
            ));
            return;
        }
    }
    if let Some(en) = schema["enum"].as_array() {
        if !en.contains(v) {
            let sup: Vec<String> = en.iter().map(go_quote).collect();
            errs.push(cause(
                "FieldValueNotSupported",
                path,
                format!(
                    "Unsupported value: {}: supported values: {}",
                    go_quote(v),
                    sup.join(", ")
                ),
            ));
        }
    }
    match v {
        Value::String(s) => {
            if let Some(p) = schema["pattern"].as_str() {
                if let Ok(re) = regex::Regex::new(p) {
                    if !re.is_match(s) {
                        errs.push(cause(
                            "FieldValueInvalid",
                            path,
                            format!(
                                "Invalid value: {}: {path} in body should match '{p}'",
                                go_quote(v)
                            ),
                        ));
                    }
                }
            }
            if let Some(max) = schema["maxLength"].as_u64() {
                if s.len() as u64 > max {
                    errs.push(cause(
                        "FieldValueTooLong",
                        path,
                        format!("Too long: may not be more than {max} bytes"),
                    ));
                }
            }
            if let Some(min) = schema["minLength"].as_u64() {
                if (s.len() as u64) < min {
                    errs.push(cause(
                        "FieldValueInvalid",
                        path,
                        format!(
                            "Invalid value: {}: {path} in body should be at least {min} chars long",
                            go_quote(v)
                        ),
                    ));
                }
            }
            if let Some(f) = schema["format"].as_str() {
                if !format_ok(f, s) {
                    errs.push(cause(
                        "FieldValueInvalid",
                        path,
                        format!(
                            "Invalid value: {}: {path} in body must be of type {f}: {}",
                            go_quote(v),
                            go_quote(v)
                        ),
                    ));
                }
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if let Some(min) = schema["minimum"].as_f64() {
                if x < min {
                    errs.push(cause(
                        "FieldValueInvalid",
                        path,
                        format!("Invalid value: {v}: {path} in body should be greater than or equal to {}", schema["minimum"]),
                    ));
                }
            }
            if let Some(max) = schema["maximum"].as_f64() {
                if x > max {
                    errs.push(cause(
                        "FieldValueInvalid",
                        path,
                        format!(
                            "Invalid value: {v}: {path} in body should be less than or equal to {}",
                            schema["maximum"]
                        ),
                    ));
                }
            }
        }
        Value::Array(items) => {
            if let Some(max) = schema["maxItems"].as_u64() {
                if items.len() as u64 > max {
                    errs.push(cause(
                        "FieldValueTooMany",
                        path,
                        format!("Too many: {}: must have at most {max} items", items.len()),
                    ));
                }
            }
            if let Some(min) = schema["minItems"].as_u64() {
                if (items.len() as u64) < min {
                    errs.push(cause(
                        "FieldValueInvalid",
                        path,
                        format!(
                            "Invalid value: {}: {path} in body should have at least {min} items",
                            items.len()
                        ),
                    ));
                }
            }
            if let Some(is) = schema.get("items") {
                for (i, c) in items.iter().enumerate() {
                    validate(c, is, &format!("{path}[{i}]"), errs);
                }
            }
        }
        Value::Object(obj) => {
            for r in schema["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !obj.contains_key(r) {
                    errs.push(cause(
                        "FieldValueRequired",
                        &join(path, r),
                        "Required value",
                    ));
                }
            }
            let props = schema["properties"].as_object();
            let ap = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, c) in obj {
                if path.is_empty() && (k == "metadata" || k == "apiVersion" || k == "kind") {
                    continue;
                }
                if let Some(s) = props.and_then(|p: &Map<String, Value>| p.get(k)) {
                    validate(c, s, &join(path, k), errs);
                } else if let Some(ap) = ap {
                    validate(c, ap, &join(path, k), errs);
                }
            }
        }
        _ => {}
    }
}

fn format_ok(format: &str, s: &str) -> bool {
    match format {
        "date-time" => s.parse::<jiff::Timestamp>().is_ok(),
        "date" => s.parse::<jiff::civil::Date>().is_ok(),
        "int32" | "int64" | "byte" | "" => true,
        "duration" => !s.is_empty(),
        "uuid" => s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-'),
        _ => true,
    }
}
