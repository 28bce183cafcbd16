//! Decoding of the Kubernetes protobuf envelope for the built-in kinds kubectl ≥1.32 sends as
//! protobuf (`Secret`, `ConfigMap`, `Namespace`, `ServiceAccount`).

use base64::Engine;
use serde_json::{json, Map, Value};

/// The protobuf magic prefix.
pub const MAGIC: &[u8] = b"k8s\0";

type Fields<'a> = Vec<(u32, Wire<'a>)>;

#[derive(Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn varint(b: &[u8], i: &mut usize) -> Result<u64, String> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*i).ok_or("truncated varint")?;
        *i += 1;
        out |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(out);
        }
    }
    Err("varint too long".into())
}

fn fields(b: &[u8]) -> Result<Fields<'_>, String> {
    let mut i = 0;
    let mut out = vec![];
    while i < b.len() {
        let tag = varint(b, &mut i)?;
        let (num, wt) = ((tag >> 3) as u32, tag & 7);
        match wt {
            0 => out.push((num, Wire::Varint(varint(b, &mut i)?))),
            1 => i += 8,
            5 => i += 4,
            2 => {
                let len = varint(b, &mut i)? as usize;
                let end = i
                    .checked_add(len)
                    .filter(|e| *e <= b.len())
                    .ok_or("truncated field")?;
                out.push((num, Wire::Bytes(&b[i..end])));
                i = end;
            }
            other => return Err(format!("unsupported wire type {other}")),
        }
    }
    if i > b.len() {
        return Err("truncated message".into());
    }
    Ok(out)
}

fn s(w: Wire) -> Result<String, String> {
    match w {
        Wire::Bytes(b) => {
            String::from_utf8(b.to_vec()).map_err(|_| "invalid UTF-8 string".to_string())
        }
        Wire::Varint(_) => Err("expected a string".into()),
    }
}

fn bytes(w: Wire<'_>) -> &[u8] {
    match w {
        Wire::Bytes(b) => b,
        Wire::Varint(_) => &[],
    }
}

fn map_entry(w: Wire, b64: bool) -> Result<(String, Value), String> {
    let mut k = String::new();
    let mut v = Value::String(String::new());
    for (n, f) in fields(bytes(w))? {
        match n {
            1 => k = s(f)?,
            2 if b64 => v = json!(base64::engine::general_purpose::STANDARD.encode(bytes(f))),
            2 => v = json!(s(f)?),
            _ => {}
        }
    }
    Ok((k, v))
}

fn object_meta(b: &[u8]) -> Result<Value, String> {
    let mut m = Map::new();
    let mut labels = Map::new();
    let mut annotations = Map::new();
    let mut owners = vec![];
    let mut finalizers = vec![];
    for (n, f) in fields(b)? {
        match n {
            1 => drop(m.insert("name".into(), json!(s(f)?))),
            2 => drop(m.insert("generateName".into(), json!(s(f)?))),
            3 => drop(m.insert("namespace".into(), json!(s(f)?))),
            5 => drop(m.insert("uid".into(), json!(s(f)?))),
            6 => drop(m.insert("resourceVersion".into(), json!(s(f)?))),
            11 => {
                let (k, v) = map_entry(f, false)?;
                labels.insert(k, v);
            }
            12 => {
                let (k, v) = map_entry(f, false)?;
                annotations.insert(k, v);
            }
            13 => {
                let mut o = Map::new();
                for (on, of) in fields(bytes(f))? {
                    match (on, of) {
                        (1, w) => drop(o.insert("kind".into(), json!(s(w)?))),
                        (3, w) => drop(o.insert("name".into(), json!(s(w)?))),
                        (4, w) => drop(o.insert("uid".into(), json!(s(w)?))),
                        (5, w) => drop(o.insert("apiVersion".into(), json!(s(w)?))),
                        (6, Wire::Varint(x)) => drop(o.insert("controller".into(), json!(x != 0))),
                        (7, Wire::Varint(x)) => {
                            drop(o.insert("blockOwnerDeletion".into(), json!(x != 0)))
                        }
                        _ => {}
                    }
                }
                owners.push(Value::Object(o));
            }
            14 => finalizers.push(json!(s(f)?)),
            _ => {}
        }
    }
    if !labels.is_empty() {
        m.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        m.insert("annotations".into(), Value::Object(annotations));
    }
    if !owners.is_empty() {
        m.insert("ownerReferences".into(), Value::Array(owners));
    }
    if !finalizers.is_empty() {
        m.insert("finalizers".into(), Value::Array(finalizers));
    }
    Ok(Value::Object(m))
}

/// Decodes a `k8s\0`-prefixed protobuf body into the JSON form of the object.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or("missing the protobuf magic prefix")?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    for (n, f) in fields(rest)? {
        match n {
            1 => {
                for (tn, tf) in fields(bytes(f))? {
                    match tn {
                        1 => api_version = s(tf)?,
                        2 => kind = s(tf)?,
                        _ => {}
                    }
                }
            }
            2 => raw = bytes(f),
            _ => {}
        }
    }
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(kind));
    let supported = matches!(
        (api_version.as_str(), kind.as_str()),
        (
            "v1",
            "Secret" | "ConfigMap" | "Namespace" | "ServiceAccount"
        )
    );
    if !supported {
        return Err(format!("protobuf bodies are only supported for v1 Secret, ConfigMap, Namespace and ServiceAccount, not {api_version} {kind}"));
    }
    let mut data = Map::new();
    let mut string_data = Map::new();
    let mut binary = Map::new();
    for (n, f) in fields(raw)? {
        match (kind.as_str(), n, f) {
            (_, 1, _) => drop(obj.insert("metadata".into(), object_meta(bytes(f))?)),
            ("Secret", 2, _) => {
                let (k, v) = map_entry(f, true)?;
                data.insert(k, v);
            }
            ("Secret", 3, _) => drop(obj.insert("type".into(), json!(s(f)?))),
            ("Secret", 4, _) => {
                let (k, v) = map_entry(f, false)?;
                string_data.insert(k, v);
            }
            ("Secret", 5, Wire::Varint(x)) | ("ConfigMap", 4, Wire::Varint(x)) => {
                drop(obj.insert("immutable".into(), json!(x != 0)))
            }
            ("ConfigMap", 2, _) => {
                let (k, v) = map_entry(f, false)?;
                data.insert(k, v);
            }
            ("ConfigMap", 3, _) => {
                let (k, v) = map_entry(f, true)?;
                binary.insert(k, v);
            }
            ("Namespace", 2, _) => {
                let fins: Vec<Value> = fields(bytes(f))?
                    .into_iter()
                    .filter(|(n, _)| *n == 1)
                    .map(|(_, w)| s(w).map(Value::String))
                    .collect::<Result<_, _>>()?;
                obj.insert("spec".into(), json!({"finalizers": fins}));
            }
            _ => {}
        }
    }
    if !data.is_empty() {
        obj.insert("data".into(), Value::Object(data));
    }
    if !string_data.is_empty() {
        obj.insert("stringData".into(), Value::Object(string_data));
    }
    if !binary.is_empty() {
        obj.insert("binaryData".into(), Value::Object(binary));
    }
    Ok(Value::Object(obj))
}
