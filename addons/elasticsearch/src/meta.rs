//! Metadata files (`.mapping`, `.settings`, `.template`, `.alias`, `.analyzer`) and the
//! settings Elasticsearch rejects or regenerates.
//!
//! Each metadata file holds one JSON value on one line. `.mapping.json` is a JSON object; the
//! others are a JSON *string* whose content is JSON (double-encoded), as multielasticdump
//! writes them. The reader accepts either encoding for every file.

use serde_json::{Map, Value};

/// Settings multielasticdump removes when dumping (`settingsExclude`), relative to `index`.
pub const DUMP_EXCLUDE: &[&str] = &[
    "version",
    "creation_date",
    "uuid",
    "provided_name",
    "resize",
    "routing.allocation.initial_recovery",
];

/// Settings removed before creating an index on restore, relative to `index`: private or
/// regenerated ones, and ones that would break a restore on another cluster.
pub const RESTORE_EXCLUDE: &[&str] = &[
    "version",
    "creation_date",
    "uuid",
    "provided_name",
    "resize",
    "shrink",
    "history.uuid",
    "routing",
    "merge.enabled",
    "translog.retention",
    "soft_deletes.enabled",
    "store.snapshot",
    "frozen",
];

/// Settings (relative to `index`) applied after the documents are loaded; see
/// [`RestoreSettings::deferred`].
pub const DEFERRED: &[&str] = &["blocks", "default_pipeline", "final_pipeline", "lifecycle"];

/// Encode a metadata line as multielasticdump does for `.settings`, `.template`, `.alias`,
/// `.analyzer`: the JSON text of `v` as a JSON string.
pub fn encode_double(v: &Value) -> String {
    let inner = serde_json::to_string(v).expect("JSON values always serialize");
    let mut line = serde_json::to_string(&inner).expect("strings always serialize");
    line.push('\n');
    line
}

/// Encode a `.mapping.json` line: the JSON object itself.
pub fn encode_object(v: &Value) -> String {
    let mut line = serde_json::to_string(v).expect("JSON values always serialize");
    line.push('\n');
    line
}

/// Decode a metadata file: its first JSON value; a string is parsed again as JSON.
pub fn decode(text: &str) -> Result<Value, String> {
    let mut it = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let first = match it.next() {
        None => return Err("file is empty".to_string()),
        Some(r) => r.map_err(|e| format!("not JSON: {e}"))?,
    };
    match first {
        Value::String(s) => {
            serde_json::from_str(&s).map_err(|e| format!("string content is not JSON: {e}"))
        }
        other => Ok(other),
    }
}

/// Expand flat dotted keys (`"index.number_of_shards": "1"`) into nested objects, recursively,
/// so that both forms of `GET _settings` (`flat_settings=true` or not) are handled alike.
pub fn nest(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let v = nest(v);
                let mut parts: Vec<&str> = k.split('.').collect();
                let last = parts.pop().expect("split yields at least one part");
                let mut cur = &mut out;
                for p in parts {
                    let entry = cur
                        .entry(p.to_string())
                        .or_insert_with(|| Value::Object(Map::new()));
                    if !entry.is_object() {
                        *entry = Value::Object(Map::new());
                    }
                    cur = entry.as_object_mut().expect("just made an object");
                }
                match (cur.get_mut(last), v) {
                    (Some(Value::Object(existing)), Value::Object(new)) => {
                        for (k2, v2) in new {
                            existing.insert(k2, v2);
                        }
                    }
                    (_, v) => {
                        cur.insert(last.to_string(), v);
                    }
                }
            }
            Value::Object(out)
        }
        other => other,
    }
}

/// Remove `path` (dot-separated, relative to `obj`) if present; returns whether it was there.
pub fn remove_path(obj: &mut Map<String, Value>, path: &str) -> bool {
    match path.split_once('.') {
        None => obj.shift_remove(path).is_some(),
        Some((head, rest)) => {
            let removed = match obj.get_mut(head) {
                Some(Value::Object(inner)) => remove_path(inner, rest),
                _ => false,
            };
            if removed
                && obj
                    .get(head)
                    .and_then(Value::as_object)
                    .is_some_and(Map::is_empty)
            {
                obj.shift_remove(head);
            }
            removed
        }
    }
}

/// Remove `*_string` keys added by `?human`, recursively.
fn remove_human(obj: &mut Map<String, Value>) {
    obj.retain(|k, _| !k.ends_with("_string"));
    for v in obj.values_mut() {
        if let Value::Object(m) = v {
            remove_human(m);
        }
    }
}

/// Dump side: apply multielasticdump's `settingsExclude` to a `GET /<i>/_settings` response
/// (`{"<i>":{"settings":{"index":{…}}}}`), in place.
pub fn filter_dump_settings(resp: &mut Value) {
    if let Some(indices) = resp.as_object_mut() {
        for entry in indices.values_mut() {
            if let Some(index) = entry
                .get_mut("settings")
                .and_then(|s| s.get_mut("index"))
                .and_then(Value::as_object_mut)
            {
                for p in DUMP_EXCLUDE {
                    remove_path(index, p);
                }
            }
        }
    }
}

/// Settings ready for `PUT /<i>` on restore.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreSettings {
    /// `{"index":{…}}` to send at creation.
    pub create: Value,
    /// Settings applied only after the documents are loaded (relative to `index`): `blocks`
    /// (a write block would refuse the load), `default_pipeline` and `final_pipeline` (the
    /// documents were already processed once), `lifecycle` (ILM must not act on a half-loaded
    /// index).
    pub deferred: Map<String, Value>,
    /// What was removed, for the log.
    pub removed: Vec<String>,
}

/// Restore side: take the settings of the single index in a `.settings.json` document
/// (`{"<i>":{"settings":{…}}}`, also accepting `{"settings":{…}}` or the bare settings),
/// normalise the flat form, drop what Elasticsearch rejects or regenerates, and set `blocks`
/// aside.
pub fn restore_settings(doc: &Value) -> Result<RestoreSettings, String> {
    let settings = extract_section(doc, "settings")?;
    let mut nested = nest(settings);
    let obj = nested
        .as_object_mut()
        .ok_or_else(|| "settings are not an object".to_string())?;
    remove_human(obj);
    obj.shift_remove("defaults");
    // Everything belongs under "index"; a bare `{"number_of_shards":…}` is moved there.
    let mut index = match obj.shift_remove("index") {
        Some(Value::Object(m)) => m,
        Some(_) => return Err("settings.index is not an object".to_string()),
        None => Map::new(),
    };
    for (k, v) in std::mem::take(obj) {
        index.insert(k, v);
    }
    let mut removed = Vec::new();
    for p in RESTORE_EXCLUDE {
        if remove_path(&mut index, p) {
            removed.push(format!("index.{p}"));
        }
    }
    let mut deferred = Map::new();
    for k in DEFERRED {
        if let Some(v) = index.shift_remove(*k) {
            deferred.insert(k.to_string(), v);
        }
    }
    let mut create = Map::new();
    create.insert("index".to_string(), Value::Object(index));
    Ok(RestoreSettings {
        create: Value::Object(create),
        deferred,
        removed,
    })
}

/// `analysis` settings from an `.analyzer.json` document, if any.
pub fn analysis_settings(doc: &Value) -> Result<Option<Value>, String> {
    let nested = nest(extract_section(doc, "settings")?);
    Ok(nested
        .get("index")
        .and_then(|i| i.get("analysis"))
        .or_else(|| nested.get("analysis"))
        .cloned())
}

/// The `mappings` object of a `.mapping.json` document (`{"<i>":{"mappings":{…}}}`).
/// ES 7 documents with one type level (`{"_doc":{"properties":…}}`) are unwrapped.
pub fn restore_mappings(doc: &Value) -> Result<Value, String> {
    let m = extract_section(doc, "mappings")?;
    if let Value::Object(obj) = &m {
        if obj.len() == 1 {
            let (k, v) = obj.iter().next().expect("len is 1");
            if (!k.starts_with('_') || k == "_doc")
                && v.get("properties").is_some()
                && k != "properties"
            {
                return Ok(v.clone());
            }
        }
    }
    Ok(m)
}

/// Alias definitions of a `.alias.json` document (`{"<i>":{"aliases":{name:{…}}}}` or `{}`).
pub fn restore_aliases(doc: &Value) -> Result<Map<String, Value>, String> {
    let Some(obj) = doc.as_object() else {
        return Err("alias document is not an object".to_string());
    };
    if obj.is_empty() {
        return Ok(Map::new());
    }
    match extract_section(doc, "aliases")? {
        Value::Object(m) => Ok(m),
        _ => Err("aliases is not an object".to_string()),
    }
}

/// Find `section` either at the top level or under the single index key.
fn extract_section(doc: &Value, section: &str) -> Result<Value, String> {
    let obj = doc
        .as_object()
        .ok_or_else(|| format!("expected an object with {section:?}"))?;
    if let Some(v) = obj.get(section) {
        return Ok(v.clone());
    }
    let mut found = obj.values().filter_map(|v| v.get(section));
    match (found.next(), found.next()) {
        (Some(v), None) => Ok(v.clone()),
        (Some(_), Some(_)) => Err(format!("more than one index has {section:?}")),
        (None, _) => {
            if section == "settings" && !obj.is_empty() {
                // Bare settings object.
                Ok(doc.clone())
            } else {
                Err(format!("no {section:?} found"))
            }
        }
    }
}

/// Legacy template names multielasticdump (elasticdump `templateRegex`) never dumps.
pub fn is_system_template(name: &str) -> bool {
    // '^(metrics|logs|.+_audit_log|.+-index-template|\..+)$'
    name == "metrics"
        || name == "logs"
        || (name.len() > "_audit_log".len() && name.ends_with("_audit_log"))
        || (name.len() > "-index-template".len() && name.ends_with("-index-template"))
        || (name.len() > 1 && name.starts_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn settings_line_is_double_encoded_like_the_reference() {
        // es-backup-format.md §3 example
        let v = json!({"my-index":{"settings":{"index":{"number_of_shards":"1"}}}});
        assert_eq!(
            encode_double(&v),
            "\"{\\\"my-index\\\":{\\\"settings\\\":{\\\"index\\\":{\\\"number_of_shards\\\":\\\"1\\\"}}}}\"\n"
        );
        assert_eq!(decode(&encode_double(&v)).unwrap(), v);
    }

    #[test]
    fn mapping_line_is_an_object() {
        let v = json!({"my-index":{"mappings":{"properties":{"a":{"type":"keyword"}}}}});
        assert_eq!(
            encode_object(&v),
            "{\"my-index\":{\"mappings\":{\"properties\":{\"a\":{\"type\":\"keyword\"}}}}}\n"
        );
        assert_eq!(decode(&encode_object(&v)).unwrap(), v);
    }

    #[test]
    fn empty_alias_file_is_empty_object() {
        assert_eq!(decode("\"{}\"\n").unwrap(), json!({}));
        assert!(restore_aliases(&json!({})).unwrap().is_empty());
        let a =
            restore_aliases(&json!({"i":{"aliases":{"a1":{},"a2":{"filter":{"term":{"x":1}}}}}}))
                .unwrap();
        assert_eq!(a.keys().collect::<Vec<_>>(), ["a1", "a2"]);
    }

    #[test]
    fn decode_errors() {
        assert!(decode("").is_err());
        assert!(decode("{nope").is_err());
        assert!(decode("\"not json inside\"").is_err());
    }

    #[test]
    fn dump_filter_removes_multielasticdump_excludes_only() {
        let mut v = json!({"i":{"settings":{"index":{
            "number_of_shards":"1","uuid":"u","provided_name":"i","creation_date":"1",
            "version":{"created":"8"},"routing":{"allocation":{"initial_recovery":{"_id":"x"},"include":{"_tier_preference":"data_content"}}},
            "hidden":"true"}}}});
        filter_dump_settings(&mut v);
        assert_eq!(
            v,
            json!({"i":{"settings":{"index":{
            "number_of_shards":"1","routing":{"allocation":{"include":{"_tier_preference":"data_content"}}},"hidden":"true"}}}})
        );
    }

    #[test]
    fn restore_filter_strips_rejected_and_regenerated_settings_and_sets_blocks_aside() {
        let doc = json!({"i":{"settings":{"index":{
            "number_of_shards":"2","number_of_replicas":"0","uuid":"u","provided_name":"i",
            "creation_date":"1700000000000","creation_date_string":"2023",
            "version":{"created":"8110099","compatibility":"x"},
            "history":{"uuid":"h"},"resize":{"source":{"name":"a"}},
            "routing":{"allocation":{"include":{"_tier_preference":"data_content"}}},
            "blocks":{"write":"true"},"analysis":{"analyzer":{"a":{"type":"standard"}}}}}}});
        let r = restore_settings(&doc).unwrap();
        assert_eq!(
            r.create,
            json!({"index":{"number_of_shards":"2","number_of_replicas":"0",
            "analysis":{"analyzer":{"a":{"type":"standard"}}}}})
        );
        assert_eq!(
            r.deferred,
            json!({"blocks": {"write":"true"}})
                .as_object()
                .unwrap()
                .clone()
        );
        for p in [
            "index.uuid",
            "index.version",
            "index.creation_date",
            "index.provided_name",
            "index.routing",
            "index.resize",
            "index.history.uuid",
        ] {
            assert!(r.removed.iter().any(|x| x == p), "{p} in {:?}", r.removed);
        }
    }

    #[test]
    fn flat_settings_are_nested_first() {
        let doc = json!({"i":{"settings":{"index.number_of_shards":"1","index.uuid":"u","index.version.created":"8"}}});
        let r = restore_settings(&doc).unwrap();
        assert_eq!(r.create, json!({"index":{"number_of_shards":"1"}}));
    }

    #[test]
    fn mappings_extracted_and_es7_type_unwrapped() {
        let m = json!({"i":{"mappings":{"properties":{"a":{"type":"text"}}}}});
        assert_eq!(
            restore_mappings(&m).unwrap(),
            json!({"properties":{"a":{"type":"text"}}})
        );
        let m7 = json!({"i":{"mappings":{"_doc":{"properties":{"a":{"type":"text"}}}}}});
        assert_eq!(
            restore_mappings(&m7).unwrap(),
            json!({"properties":{"a":{"type":"text"}}})
        );
        let dynamic_only = json!({"i":{"mappings":{"dynamic":"strict"}}});
        assert_eq!(
            restore_mappings(&dynamic_only).unwrap(),
            json!({"dynamic":"strict"})
        );
    }

    #[test]
    fn analysis_from_analyzer_file() {
        let doc =
            json!({"i":{"settings":{"index":{"analysis":{"analyzer":{"x":{"type":"simple"}}}}}}});
        assert_eq!(
            analysis_settings(&doc).unwrap(),
            Some(json!({"analyzer":{"x":{"type":"simple"}}}))
        );
    }

    #[test]
    fn system_templates_follow_template_regex() {
        for sys in [
            "metrics",
            "logs",
            ".monitoring-es",
            "x_audit_log",
            "ilm-history-index-template",
        ] {
            assert!(is_system_template(sys), "{sys}");
        }
        for user in ["products", "logs-custom", "metrics2", "_audit_log"] {
            assert!(!is_system_template(user), "{user}");
        }
    }
}
