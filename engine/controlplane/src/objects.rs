//! Object helpers: metadata, names, times, uids and per-kind normalisation of built-ins.

use base64::Engine;
use serde_json::{json, Value};

use crate::resources::ResourceDef;
use crate::status::{cause, ApiError, Cause};

/// `metav1.Time` now, RFC 3339 to the second.
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A random UUID v4.
pub fn uuid() -> String {
    let mut b = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).unwrap_or_default();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// `generateName` suffix: 5 chars from the real alphabet.
pub fn name_suffix() -> String {
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut b = [0u8; 5];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).unwrap_or_default();
    b.iter()
        .map(|x| ALPHA[*x as usize % ALPHA.len()] as char)
        .collect()
}

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// DNS-1123 subdomain check.
pub fn is_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_label)
}

/// Validates `metadata.name` (DNS-1123 label for namespaces, subdomain otherwise).
pub fn name_errors(def: &ResourceDef, name: &str) -> Vec<Cause> {
    let label = def.kind == "Namespace";
    let ok = if label {
        is_label(name)
    } else {
        is_subdomain(name)
    };
    if ok {
        return vec![];
    }
    let what = if label {
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
    } else {
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    };
    vec![cause(
        "FieldValueInvalid",
        "metadata.name",
        format!("Invalid value: {name:?}: {what}"),
    )]
}

/// Validates labels/annotations shapes.
pub fn metadata_errors(obj: &Value) -> Vec<Cause> {
    let mut errs = vec![];
    for f in ["labels", "annotations"] {
        let v = &obj["metadata"][f];
        if v.is_null() {
            continue;
        }
        match v.as_object() {
            Some(m) => {
                for (k, val) in m {
                    if !val.is_string() {
                        errs.push(cause(
                            "FieldValueInvalid",
                            &format!("metadata.{f}"),
                            format!("Invalid value: {val}: {k} must be a string"),
                        ));
                    } else if f == "labels" {
                        let s = val.as_str().unwrap_or_default();
                        let ok = s.len() <= 63
                            && s.chars()
                                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
                        if !ok {
                            errs.push(cause(
                                "FieldValueInvalid",
                                "metadata.labels",
                                format!("Invalid value: {s:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.'"),
                            ));
                        }
                    }
                }
            }
            None => errs.push(cause(
                "FieldValueInvalid",
                &format!("metadata.{f}"),
                "Invalid value: must be a map of strings",
            )),
        }
    }
    if !obj["metadata"]["finalizers"].is_null()
        && !obj["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_string))
    {
        errs.push(cause(
            "FieldValueInvalid",
            "metadata.finalizers",
            "Invalid value: must be a list of strings",
        ));
    }
    errs
}

/// Per-kind normalisation of built-ins on every write (Secret stringData, Namespace defaults).
pub fn normalize_builtin(def: &ResourceDef, obj: &mut Value) -> Result<(), ApiError> {
    if matches!(def.kind.as_str(), "Secret" | "ConfigMap") {
        for field in ["data", "binaryData", "stringData"] {
            let bad = |why: String| {
                ApiError::bad_request(format!(
                    "{kind} in version \"v1\" cannot be handled as a {kind}: {field}{why}",
                    kind = def.kind
                ))
            };
            match &obj[field] {
                Value::Null => {}
                Value::Object(m) => {
                    if let Some((k, _)) = m.iter().find(|(_, v)| !v.is_string()) {
                        return Err(bad(format!(".{k}: must be a string")));
                    }
                }
                _ => return Err(bad(": must be a map of strings".into())),
            }
        }
    }
    match def.kind.as_str() {
        "Secret" => {
            if obj["type"].as_str().unwrap_or_default().is_empty() {
                obj["type"] = json!("Opaque");
            }
            if let Some(sd) = obj.as_object_mut().and_then(|o| o.remove("stringData")) {
                if let Some(m) = sd.as_object() {
                    if !obj["data"].is_object() {
                        obj["data"] = json!({});
                    }
                    for (k, v) in m {
                        let s = v.as_str().ok_or_else(|| {
                            ApiError::bad_request(format!("stringData.{k}: must be a string"))
                        })?;
                        obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(s));
                    }
                }
            }
            if let Some(m) = obj["data"].as_object() {
                for (k, v) in m {
                    let ok = v.as_str().is_some_and(|s| {
                        base64::engine::general_purpose::STANDARD.decode(s).is_ok()
                    });
                    if !ok {
                        return Err(ApiError::bad_request(format!(
                            "Secret in version \"v1\" cannot be handled as a Secret: data.{k}: illegal base64 data"
                        )));
                    }
                }
            }
        }
        "Namespace" => {
            let name = obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
        }
        _ => {}
    }
    Ok(())
}

/// Converts an `events.k8s.io/v1` Event to the stored core/v1 form.
pub fn event_to_core(obj: &mut Value) {
    let Some(m) = obj.as_object_mut() else { return };
    for (from, to) in [
        ("regarding", "involvedObject"),
        ("note", "message"),
        ("reportingController", "reportingComponent"),
        ("deprecatedSource", "source"),
        ("deprecatedFirstTimestamp", "firstTimestamp"),
        ("deprecatedLastTimestamp", "lastTimestamp"),
        ("deprecatedCount", "count"),
    ] {
        if let Some(v) = m.remove(from) {
            m.insert(to.into(), v);
        }
    }
}

/// Converts a stored core/v1 Event to the `events.k8s.io/v1` form.
pub fn event_from_core(obj: &mut Value) {
    let Some(m) = obj.as_object_mut() else { return };
    for (to, from) in [
        ("regarding", "involvedObject"),
        ("note", "message"),
        ("reportingController", "reportingComponent"),
        ("deprecatedSource", "source"),
        ("deprecatedFirstTimestamp", "firstTimestamp"),
        ("deprecatedLastTimestamp", "lastTimestamp"),
        ("deprecatedCount", "count"),
    ] {
        if let Some(v) = m.remove(from) {
            m.insert(to.into(), v);
        }
    }
}

/// The object as served by `def`'s endpoint (apiVersion/kind of that endpoint).
pub fn present(def: &ResourceDef, obj: &Value) -> Value {
    let mut o = obj.clone();
    if def.group == "events.k8s.io" {
        event_from_core(&mut o);
    }
    o["apiVersion"] = json!(def.api_version());
    o["kind"] = json!(def.kind);
    o
}

/// Whether the object is being deleted.
pub fn deleting(obj: &Value) -> bool {
    obj["metadata"]["deletionTimestamp"].is_string()
}

/// The object's finalizers.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj["metadata"]["finalizers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Namespace, name of an object.
pub fn ns_name(obj: &Value) -> (String, String) {
    (
        obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}
