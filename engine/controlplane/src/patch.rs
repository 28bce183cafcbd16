//! Patch semantics: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge patch for
//! built-in kinds, and a light server-side apply with per-manager field ownership.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn unescape(tok: &str) -> String {
    tok.replace("~1", "/").replace("~0", "~")
}

fn pointer_parts(path: &str) -> Result<Vec<String>, String> {
    if path.is_empty() {
        return Ok(vec![]);
    }
    if !path.starts_with('/') {
        return Err(format!("invalid JSON pointer {path:?}"));
    }
    Ok(path[1..].split('/').map(unescape).collect())
}

fn parent_mut<'a>(doc: &'a mut Value, parts: &[String]) -> Result<&'a mut Value, String> {
    let mut cur = doc;
    for p in parts {
        cur = match cur {
            Value::Object(m) => m
                .get_mut(p)
                .ok_or_else(|| format!("path element {p:?} not found"))?,
            Value::Array(a) => {
                let i: usize = p
                    .parse()
                    .map_err(|_| format!("invalid array index {p:?}"))?;
                a.get_mut(i)
                    .ok_or_else(|| format!("array index {i} out of range"))?
            }
            _ => return Err(format!("path element {p:?} not found")),
        };
    }
    Ok(cur)
}

fn add(doc: &mut Value, parts: &[String], value: Value) -> Result<(), String> {
    let Some((last, parents)) = parts.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent_mut(doc, parents)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
            } else {
                let i: usize = last
                    .parse()
                    .map_err(|_| format!("invalid array index {last:?}"))?;
                if i > a.len() {
                    return Err(format!("array index {i} out of range"));
                }
                a.insert(i, value);
            }
        }
        _ => return Err("cannot add to a scalar".into()),
    }
    Ok(())
}

fn remove(doc: &mut Value, parts: &[String]) -> Result<Value, String> {
    let (last, parents) = parts
        .split_last()
        .ok_or("cannot remove the whole document")?;
    match parent_mut(doc, parents)? {
        Value::Object(m) => m
            .remove(last)
            .ok_or_else(|| format!("unable to remove nonexistent key: {last}")),
        Value::Array(a) => {
            let i: usize = last
                .parse()
                .map_err(|_| format!("invalid array index {last:?}"))?;
            if i >= a.len() {
                return Err(format!("array index {i} out of range"));
            }
            Ok(a.remove(i))
        }
        _ => Err("cannot remove from a scalar".into()),
    }
}

fn get<'a>(doc: &'a Value, parts: &[String]) -> Option<&'a Value> {
    let mut cur = doc;
    for p in parts {
        cur = match cur {
            Value::Object(m) => m.get(p)?,
            Value::Array(a) => a.get(p.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// RFC 6902 JSON patch, with the Kubernetes quirk that `test` of `null` succeeds on a missing path.
pub fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops
        .as_array()
        .ok_or("a JSON patch must be an array of operations")?;
    for op in ops {
        let name = op["op"].as_str().ok_or("operation has no \"op\"")?;
        let path = op["path"].as_str().ok_or("operation has no \"path\"")?;
        let parts = pointer_parts(path)?;
        match name {
            "add" => add(
                doc,
                &parts,
                op.get("value")
                    .cloned()
                    .ok_or("add operation has no \"value\"")?,
            )?,
            "remove" => {
                remove(doc, &parts)?;
            }
            "replace" => {
                let v = op
                    .get("value")
                    .cloned()
                    .ok_or("replace operation has no \"value\"")?;
                if parts.is_empty() {
                    *doc = v;
                } else {
                    remove(doc, &parts)?;
                    add(doc, &parts, v)?;
                }
            }
            "move" | "copy" => {
                let from = pointer_parts(op["from"].as_str().ok_or("operation has no \"from\"")?)?;
                let v = if name == "move" {
                    remove(doc, &from)?
                } else {
                    get(doc, &from).cloned().ok_or("\"from\" path not found")?
                };
                add(doc, &parts, v)?;
            }
            "test" => {
                let want = op.get("value").cloned().unwrap_or(Value::Null);
                let have = get(doc, &parts).cloned().unwrap_or(Value::Null);
                if want != have {
                    return Err(format!("testing value {path} failed"));
                }
            }
            other => return Err(format!("unexpected kind of operation {other:?}")),
        }
    }
    Ok(())
}

/// The merge key of a list under `field` for strategic merge patch, if it is not atomic.
fn smp_list_key(field: &str) -> Option<&'static str> {
    match field {
        "ownerReferences" => Some("uid"),
        "finalizers" => Some(""),
        "conditions" => Some("type"),
        _ => None,
    }
}

/// Strategic merge patch, as kubectl sends it for built-in kinds: merge patch plus set/keyed
/// lists (`finalizers`, `ownerReferences`, `conditions`) and the `$patch`, `$retainKeys`,
/// `$setElementOrder/…` and `$deleteFromPrimitiveList/…` directives.
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut clean = patch.clone();
        strip_directives(&mut clean);
        *target = clean;
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("object");
    if let Some(Value::Array(keep)) = p.get("$retainKeys") {
        let keep: BTreeSet<&str> = keep.iter().filter_map(Value::as_str).collect();
        t.retain(|k, _| keep.contains(k.as_str()));
    }
    for (k, v) in p {
        if k.starts_with("$setElementOrder/") || k == "$retainKeys" || k == "$patch" {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Value::Array(del)) = (t.get_mut(field), v) {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        match (smp_list_key(k), v) {
            (Some(key), Value::Array(items)) => {
                let cur = t.entry(k.clone()).or_insert_with(|| json!([]));
                if !cur.is_array() {
                    *cur = json!([]);
                }
                let list = cur.as_array_mut().expect("array");
                for item in items {
                    if key.is_empty() {
                        if !list.contains(item) {
                            list.push(item.clone());
                        }
                        continue;
                    }
                    let kv = &item[key];
                    let pos = list.iter().position(|x| &x[key] == kv);
                    if item.get("$patch").and_then(Value::as_str) == Some("delete") {
                        if let Some(i) = pos {
                            list.remove(i);
                        }
                    } else if let Some(i) = pos {
                        strategic_merge(&mut list[i], item);
                    } else {
                        let mut clean = item.clone();
                        strip_directives(&mut clean);
                        list.push(clean);
                    }
                }
            }
            _ => strategic_merge(t.entry(k.clone()).or_insert(Value::Null), v),
        }
    }
}

fn strip_directives(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !k.starts_with('$'));
            m.values_mut().for_each(strip_directives);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_directives),
        _ => {}
    }
}

/// The leaf field paths of an applied configuration (lists are atomic leaves, except
/// `metadata.finalizers`, whose items are owned one by one).
pub fn field_set(v: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    fn walk(v: &Value, path: &str, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, c) in m {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(c, &p, out);
                }
            }
            _ => {
                out.insert(path.to_string());
            }
        }
    }
    if let Value::Object(m) = v {
        for (k, c) in m {
            if k == "apiVersion" || k == "kind" {
                continue;
            }
            if k == "metadata" {
                for (mk, mv) in c.as_object().into_iter().flatten() {
                    if matches!(mk.as_str(), "labels" | "annotations") {
                        walk(mv, &format!("metadata.{mk}"), &mut out);
                    } else if mk == "finalizers" {
                        for f in mv.as_array().into_iter().flatten() {
                            out.insert(format!(
                                "metadata.finalizers[{}]",
                                f.as_str().unwrap_or_default()
                            ));
                        }
                    } else if mk == "ownerReferences" {
                        out.insert("metadata.ownerReferences".into());
                    }
                }
                continue;
            }
            walk(c, k, &mut out);
        }
    }
    out
}

/// Reads a dotted path.
pub fn get_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(f) = path.strip_prefix("metadata.finalizers[") {
        let name = f.trim_end_matches(']');
        return v["metadata"]["finalizers"]
            .as_array()?
            .iter()
            .find(|x| x.as_str() == Some(name));
    }
    let mut cur = v;
    for p in path.split('.') {
        cur = cur.as_object()?.get(p)?;
    }
    Some(cur)
}

/// Removes a dotted path (and empty parent maps it leaves behind).
pub fn remove_path(v: &mut Value, path: &str) {
    if let Some(f) = path.strip_prefix("metadata.finalizers[") {
        let name = f.trim_end_matches(']').to_string();
        if let Some(a) = v["metadata"]["finalizers"].as_array_mut() {
            a.retain(|x| x.as_str() != Some(name.as_str()));
        }
        return;
    }
    let parts: Vec<&str> = path.split('.').collect();
    fn rec(v: &mut Value, parts: &[&str]) {
        let Some(m) = v.as_object_mut() else { return };
        if parts.len() == 1 {
            m.remove(parts[0]);
            return;
        }
        if let Some(c) = m.get_mut(parts[0]) {
            rec(c, &parts[1..]);
            if c.as_object().is_some_and(|o| o.is_empty()) {
                m.remove(parts[0]);
            }
        }
    }
    rec(v, &parts);
}

/// Merges an applied configuration into `target`: maps recursively, lists replaced, except
/// `metadata.finalizers` (a set).
pub fn apply_merge(target: &mut Value, applied: &Value) {
    fn rec(t: &mut Value, a: &Value, path: &str) {
        match a {
            Value::Object(am) => {
                if !t.is_object() {
                    *t = Value::Object(Map::new());
                }
                let tm = t.as_object_mut().expect("object");
                for (k, v) in am {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    if p == "metadata.finalizers" {
                        let cur = tm.entry(k.clone()).or_insert_with(|| json!([]));
                        for f in v.as_array().into_iter().flatten() {
                            if let Some(list) = cur.as_array_mut() {
                                if !list.contains(f) {
                                    list.push(f.clone());
                                }
                            }
                        }
                        continue;
                    }
                    if v.is_null() {
                        tm.remove(k);
                        continue;
                    }
                    rec(tm.entry(k.clone()).or_insert(Value::Null), v, &p);
                }
            }
            other => *t = other.clone(),
        }
    }
    rec(target, applied, "");
}
