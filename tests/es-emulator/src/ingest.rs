//! Ingest pipelines: validation on PUT and execution of a few processors (`set`, `rename`,
//! `remove`, `lowercase`, `uppercase`, `pipeline`) on indexed documents.

use serde_json::{Map, Value};

use crate::error::{EsError, EsResult};

/// Processors the emulator executes. Others are stored but refused when a document needs them.
pub const EXECUTED: &[&str] = &[
    "set",
    "rename",
    "remove",
    "lowercase",
    "uppercase",
    "pipeline",
];

/// Validates a pipeline body as `PUT /_ingest/pipeline/<id>` does.
pub fn validate(id: &str, body: &Value) -> EsResult<()> {
    let obj = body
        .as_object()
        .ok_or_else(|| EsError::parsing("request body is required"))?;
    let procs = obj.get("processors").ok_or_else(|| {
        EsError::new(
            400,
            "parse_exception",
            "[processors] required property is missing",
        )
        .with("property_name", "processors")
    })?;
    let Value::Array(list) = procs else {
        return Err(EsError::new(
            400,
            "parse_exception",
            "[processors] property isn't a list, but of type [java.lang.String]",
        ));
    };
    for p in list {
        let Some(m) = p.as_object().filter(|m| m.len() == 1) else {
            return Err(EsError::new(
                400,
                "parse_exception",
                format!("pipeline [{id}]: a processor must be an object with one key"),
            ));
        };
        let (kind, cfg) = m.iter().next().expect("one key");
        let need = |field: &str| -> EsResult<()> {
            if cfg.get(field).is_none() {
                return Err(EsError::new(
                    400,
                    "parse_exception",
                    format!("[{field}] required property is missing"),
                )
                .with("processor_type", kind.as_str())
                .with("property_name", field));
            }
            Ok(())
        };
        match kind.as_str() {
            "set" => {
                need("field")?;
                if cfg.get("value").is_none() && cfg.get("copy_from").is_none() {
                    return Err(EsError::new(
                        400,
                        "parse_exception",
                        "[value] required property is missing",
                    )
                    .with("processor_type", "set")
                    .with("property_name", "value"));
                }
            }
            "rename" => {
                need("field")?;
                need("target_field")?;
            }
            "remove" | "lowercase" | "uppercase" => need("field")?,
            "pipeline" => need("name")?,
            _ => {}
        }
    }
    Ok(())
}

/// Runs `pipeline` (id `id`) on `doc`; `lookup` resolves nested `pipeline` processors.
pub fn execute(
    id: &str,
    pipeline: &Value,
    doc: &mut Value,
    lookup: &dyn Fn(&str) -> Option<Value>,
    depth: usize,
) -> EsResult<()> {
    if depth > 10 {
        return Err(EsError::illegal_argument(format!(
            "Cycle detected for pipeline: {id}"
        )));
    }
    let Some(list) = pipeline.get("processors").and_then(Value::as_array) else {
        return Ok(());
    };
    for p in list {
        let Some((kind, cfg)) = p.as_object().and_then(|m| m.iter().next()) else {
            continue;
        };
        let field = cfg.get("field").and_then(Value::as_str).unwrap_or("");
        let ignore_missing = cfg.get("ignore_missing").and_then(Value::as_bool) == Some(true);
        let missing = |f: &str| {
            EsError::illegal_argument(format!("field [{f}] not present as part of path [{f}]"))
        };
        let obj = doc
            .as_object_mut()
            .ok_or_else(|| EsError::illegal_argument("document is not an object"))?;
        match kind.as_str() {
            "set" => {
                let override_ = cfg.get("override").and_then(Value::as_bool) != Some(false);
                if override_ || get_path(obj, field).is_none() {
                    let v = match cfg.get("copy_from").and_then(Value::as_str) {
                        Some(from) => get_path(obj, from).cloned().ok_or_else(|| missing(from))?,
                        None => cfg.get("value").cloned().unwrap_or(Value::Null),
                    };
                    set_path(obj, field, v);
                }
            }
            "rename" => {
                let target = cfg.get("target_field").and_then(Value::as_str).unwrap_or("");
                match remove_path(obj, field) {
                    Some(v) => {
                        if get_path(obj, target).is_some() {
                            return Err(EsError::illegal_argument(format!(
                                "field [{target}] already exists"
                            )));
                        }
                        set_path(obj, target, v);
                    }
                    None if ignore_missing => {}
                    None => return Err(missing(field)),
                }
            }
            "remove" => {
                let fields: Vec<String> = match cfg.get("field") {
                    Some(Value::Array(a)) => a
                        .iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect(),
                    Some(Value::String(s)) => vec![s.clone()],
                    _ => vec![],
                };
                for f in fields {
                    if remove_path(obj, &f).is_none() && !ignore_missing {
                        return Err(missing(&f));
                    }
                }
            }
            "lowercase" | "uppercase" => match get_path(obj, field).cloned() {
                Some(Value::String(s)) => {
                    let v = if kind == "lowercase" {
                        s.to_lowercase()
                    } else {
                        s.to_uppercase()
                    };
                    set_path(obj, field, Value::String(v));
                }
                Some(_) => {
                    return Err(EsError::illegal_argument(format!(
                        "field [{field}] of type [java.lang.Object] cannot be cast to [java.lang.String]"
                    )))
                }
                None if ignore_missing => {}
                None => return Err(missing(field)),
            },
            "pipeline" => {
                let name = cfg.get("name").and_then(Value::as_str).unwrap_or("");
                let inner = lookup(name).ok_or_else(|| {
                    EsError::illegal_argument(format!(
                        "Pipeline processor configured for non-existent pipeline [{name}]"
                    ))
                })?;
                execute(name, &inner, doc, lookup, depth + 1)?;
            }
            other => {
                return Err(EsError::illegal_argument(format!(
                    "kstash-es-emulator does not execute the [{other}] processor (pipeline [{id}])"
                )))
            }
        }
    }
    Ok(())
}

fn get_path<'a>(obj: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut cur = obj.get(parts.next()?)?;
    for p in parts {
        cur = cur.get(p)?;
    }
    Some(cur)
}

fn set_path(obj: &mut Map<String, Value>, path: &str, v: Value) {
    match path.split_once('.') {
        None => {
            obj.insert(path.to_string(), v);
        }
        Some((head, rest)) => {
            let e = obj
                .entry(head.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !e.is_object() {
                *e = Value::Object(Map::new());
            }
            set_path(e.as_object_mut().expect("object"), rest, v);
        }
    }
}

fn remove_path(obj: &mut Map<String, Value>, path: &str) -> Option<Value> {
    match path.split_once('.') {
        None => obj.remove(path),
        Some((head, rest)) => remove_path(obj.get_mut(head)?.as_object_mut()?, rest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn processors_run_in_order_and_fail_like_elasticsearch() {
        let p = json!({"processors": [
            {"set": {"field": "meta.ingested", "value": true}},
            {"rename": {"field": "msg", "target_field": "message"}},
            {"lowercase": {"field": "level"}}]});
        validate("p", &p).unwrap();
        let mut d = json!({"msg": "hi", "level": "WARN"});
        execute("p", &p, &mut d, &|_| None, 0).unwrap();
        assert_eq!(
            d,
            json!({"level": "warn", "meta": {"ingested": true}, "message": "hi"})
        );
        // A second run fails: the renamed field is gone (why a restore must not re-run it).
        let e = execute("p", &p, &mut d, &|_| None, 0).unwrap_err();
        assert!(e.reason.contains("field [msg] not present"), "{}", e.reason);
        assert!(validate("x", &json!({"description": "no processors"})).is_err());
        assert!(validate("x", &json!({"processors": [{"rename": {"field": "a"}}]})).is_err());
    }
}
