//! `meta.k8s.io/v1 Table` output: CRD printer columns evaluated with a JSONPath subset, built-in
//! columns for the core kinds, and server-rendered ages.

use serde_json::{json, Value};

use crate::resources::ResourceDef;

/// Evaluates a kubectl-style JSONPath (`.a.b`, `[0]`, `[*]`, `[?(@.k=="v")]`, `{…}` optional).
pub fn jsonpath<'a>(root: &'a Value, path: &str) -> Vec<&'a Value> {
    let p = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('$');
    let mut cur = vec![root];
    let mut rest = p;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            rest = &r[end..];
            if key.is_empty() {
                continue;
            }
            cur = cur.into_iter().filter_map(|v| v.get(key)).collect();
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else {
                return vec![];
            };
            let sel = &r[..end];
            rest = &r[end + 1..];
            if sel == "*" {
                cur = cur
                    .into_iter()
                    .flat_map(|v| v.as_array().into_iter().flatten())
                    .collect();
            } else if let Some(f) = sel.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let (k, want) = match f.split_once("==") {
                    Some((k, w)) => (
                        k.trim(),
                        Some(w.trim().trim_matches(|c| c == '"' || c == '\'').to_string()),
                    ),
                    None => (f.trim(), None),
                };
                cur = cur
                    .into_iter()
                    .flat_map(|v| v.as_array().into_iter().flatten())
                    .filter(|item| {
                        let mut x = *item;
                        for part in k.split('.') {
                            x = &x[part];
                        }
                        match &want {
                            Some(w) => {
                                x.as_str()
                                    .map(String::from)
                                    .unwrap_or_else(|| x.to_string())
                                    == *w
                            }
                            None => !x.is_null(),
                        }
                    })
                    .collect();
            } else if let Ok(i) = sel.parse::<usize>() {
                cur = cur.into_iter().filter_map(|v| v.get(i)).collect();
            } else {
                let key = sel.trim_matches(|c| c == '\'' || c == '"');
                cur = cur.into_iter().filter_map(|v| v.get(key)).collect();
            }
        } else {
            return vec![];
        }
    }
    cur
}

/// Human duration like `5m`, `3h10m`, `2d4h` (am:pkg/util/duration).
pub fn human_duration(secs: i64) -> String {
    if secs < 0 {
        return "<invalid>".into();
    }
    let s = secs;
    if s < 120 {
        return format!("{s}s");
    }
    let m = s / 60;
    if m < 10 {
        let rs = s % 60;
        return if rs == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{rs}s")
        };
    }
    if m < 180 {
        return format!("{m}m");
    }
    let h = s / 3600;
    if h < 8 {
        let rm = m % 60;
        return if rm == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{rm}m")
        };
    }
    if h < 48 {
        return format!("{h}h");
    }
    let d = h / 24;
    if h < 24 * 8 {
        let rh = h % 24;
        return if rh == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{rh}h")
        };
    }
    if d < 365 * 2 {
        return format!("{d}d");
    }
    let y = d / 365;
    if y < 8 {
        let rd = d % 365;
        return if rd == 0 {
            format!("{y}y")
        } else {
            format!("{y}y{rd}d")
        };
    }
    format!("{y}y")
}

fn age(v: &Value) -> Value {
    match v.as_str() {
        None => json!("<unknown>"),
        Some(s) => match s.parse::<jiff::Timestamp>() {
            Ok(t) => json!(human_duration(
                jiff::Timestamp::now().as_second() - t.as_second()
            )),
            Err(_) => json!("<invalid>"),
        },
    }
}

/// A column: name, type, format, JSONPath (None = built-in computed), priority.
struct Col {
    name: String,
    ty: String,
    format: String,
    path: String,
    priority: i64,
    description: String,
}

fn columns(def: &ResourceDef) -> Vec<Col> {
    let c = |n: &str, t: &str, p: &str| Col {
        name: n.into(),
        ty: t.into(),
        format: String::new(),
        path: p.into(),
        priority: 0,
        description: String::new(),
    };
    let mut cols = vec![Col {
        format: "name".into(),
        description: "Name must be unique within a namespace.".into(),
        ..c("Name", "string", ".metadata.name")
    }];
    if !def.builtin {
        if def.printer_columns.is_empty() {
            cols.push(c("Age", "date", ".metadata.creationTimestamp"));
        }
        for pc in &def.printer_columns {
            let path = pc["jsonPath"].as_str().unwrap_or_default().to_string();
            cols.push(Col {
                name: pc["name"].as_str().unwrap_or_default().into(),
                ty: pc["type"].as_str().unwrap_or("string").into(),
                format: pc["format"].as_str().unwrap_or_default().into(),
                description: pc["description"]
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| {
                        format!("Custom resource definition column (in JSONPath format): {path}")
                    }),
                priority: pc["priority"].as_i64().unwrap_or(0),
                path,
            });
        }
        return cols;
    }
    match def.kind.as_str() {
        "Namespace" => cols.push(c("Status", "string", ".status.phase")),
        "Secret" => {
            cols.push(c("Type", "string", ".type"));
            cols.push(c("Data", "integer", "#data"));
        }
        "ConfigMap" => cols.push(c("Data", "integer", "#data")),
        "ServiceAccount" => cols.push(c("Secrets", "integer", "#secrets")),
        "Lease" => cols.push(c("Holder", "string", ".spec.holderIdentity")),
        "CustomResourceDefinition" => {
            cols.push(c("Created At", "string", ".metadata.creationTimestamp"));
            return cols;
        }
        "Event" => {
            let mut cols = vec![
                c("Last Seen", "string", "#lastseen"),
                c("Type", "string", ".type"),
                c("Reason", "string", ".reason"),
            ];
            cols.push(c("Object", "string", "#object"));
            cols.push(c("Message", "string", ".message"));
            cols.push(Col {
                name: "Name".into(),
                format: "name".into(),
                priority: 1,
                ..c("Name", "string", ".metadata.name")
            });
            return cols;
        }
        _ => {}
    }
    cols.push(c("Age", "date", ".metadata.creationTimestamp"));
    cols
}

fn cell(col: &Col, obj: &Value) -> Value {
    match col.path.as_str() {
        "#data" => {
            return json!(
                obj["data"].as_object().map(|m| m.len()).unwrap_or(0)
                    + obj["binaryData"].as_object().map(|m| m.len()).unwrap_or(0)
            )
        }
        "#secrets" => return json!(obj["secrets"].as_array().map(|a| a.len()).unwrap_or(0)),
        "#object" => {
            let io = &obj["involvedObject"];
            return json!(format!(
                "{}/{}",
                io["kind"].as_str().unwrap_or_default().to_lowercase(),
                io["name"].as_str().unwrap_or_default()
            ));
        }
        "#lastseen" => {
            let t = [
                &obj["lastTimestamp"],
                &obj["eventTime"],
                &obj["metadata"]["creationTimestamp"],
            ]
            .into_iter()
            .find(|v| v.is_string())
            .cloned()
            .unwrap_or(Value::Null);
            return age(&t);
        }
        _ => {}
    }
    let found = jsonpath(obj, &col.path);
    if col.ty == "date" {
        return found.first().map(|v| age(v)).unwrap_or(json!("<unknown>"));
    }
    let Some(first) = found.first() else {
        return Value::Null;
    };
    match col.ty.as_str() {
        "integer" => first.as_i64().map(|i| json!(i)).unwrap_or(Value::Null),
        "number" => first.as_f64().map(|f| json!(f)).unwrap_or(Value::Null),
        "boolean" => first.as_bool().map(|b| json!(b)).unwrap_or(Value::Null),
        _ => {
            let parts: Vec<String> = found
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            json!(parts.join(","))
        }
    }
}

/// The row's `object` for `includeObject` (`Metadata` default, `Object`, `None`).
fn row_object(obj: &Value, include: &str) -> Option<Value> {
    match include {
        "None" => None,
        "Object" => Some(obj.clone()),
        _ => Some(
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"].clone()}),
        ),
    }
}

/// Builds a Table for `objs`; `headers` false omits the column definitions (watch events after
/// the first).
pub fn table(
    def: &ResourceDef,
    objs: &[Value],
    include: &str,
    headers: bool,
    list_meta: Value,
) -> Value {
    let cols = columns(def);
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let cells: Vec<Value> = cols.iter().map(|c| cell(c, o)).collect();
            let mut r = json!({"cells": cells});
            if let Some(ob) = row_object(o, include) {
                r["object"] = ob;
            }
            r
        })
        .collect();
    let defs: Vec<Value> = if headers {
        cols.iter()
            .map(|c| json!({"name": c.name, "type": c.ty, "format": c.format, "description": c.description, "priority": c.priority}))
            .collect()
    } else {
        vec![]
    };
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "columnDefinitions": defs, "rows": rows})
}
