//! Data lines (`<i>.json`): one search hit per line, in the shape multielasticdump writes.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// A search hit kept as raw JSON per top-level key, in the server's order: `_source` is never
/// parsed, so it is written back byte for byte (and large documents cost no tree).
#[derive(Debug, Clone)]
pub struct RawHit(pub Vec<(String, Box<RawValue>)>);

impl RawHit {
    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| &**v)
    }
}

impl<'de> Deserialize<'de> for RawHit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawHit;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a search hit object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<RawHit, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, Box<RawValue>>()? {
                    out.push((k, v));
                }
                Ok(RawHit(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Write a search hit (as returned by a sorted PIT search) as the dump line multielasticdump
/// writes for a scroll hit: `{"_index","_id","_score":1,["_routing"],"_source",…}` + newline.
///
/// Keys follow Elasticsearch's hit order; `sort` (an artefact of `_shard_doc` paging) is
/// dropped and a `null` score (sorted search) becomes `1`, the match_all score a scroll gives.
/// Any other keys the server sent (`_ignored`, `fields`, …) are kept: `_`-prefixed ones before
/// `_source`, the rest after it.
pub fn dump_line(hit: &RawHit, out: &mut Vec<u8>) {
    let mut first = true;
    let mut put = |out: &mut Vec<u8>, k: &str, v: &str| {
        out.push(if first { b'{' } else { b',' });
        first = false;
        serde_json::to_writer(&mut *out, k).expect("writing to a Vec cannot fail");
        out.push(b':');
        out.extend_from_slice(v.as_bytes());
    };
    for key in ["_index", "_type", "_id"] {
        if let Some(v) = hit.get(key) {
            put(out, key, v.get());
        }
    }
    match hit.get("_score").map(RawValue::get) {
        None | Some("null") => put(out, "_score", "1"),
        Some(v) => put(out, "_score", v),
    }
    if let Some(v) = hit.get("_routing") {
        put(out, "_routing", v.get());
    }
    let special = [
        "_index", "_type", "_id", "_score", "_routing", "_source", "sort",
    ];
    for (k, v) in &hit.0 {
        if k.starts_with('_') && !special.contains(&k.as_str()) {
            put(out, k, v.get());
        }
    }
    if let Some(v) = hit.get("_source") {
        put(out, "_source", v.get());
    }
    for (k, v) in &hit.0 {
        if !k.starts_with('_') && k != "sort" {
            put(out, k, v.get());
        }
    }
    if first {
        out.push(b'{');
    }
    out.extend_from_slice(b"}\n");
}

/// A data line as read on restore: only `_id`, `_source` and the routing are used.
#[derive(Debug, Deserialize)]
pub struct DataLine {
    /// Document id (a string; numbers in hand-made files are accepted).
    #[serde(rename = "_id", default)]
    pub id: Option<Value>,
    /// The document, kept as raw JSON text so it is sent back byte for byte.
    #[serde(rename = "_source", default)]
    pub source: Option<Box<RawValue>>,
    /// Custom routing.
    #[serde(rename = "_routing", default)]
    pub routing: Option<Value>,
    /// Routing under its other name, as elasticdump also accepts.
    #[serde(rename = "routing", default)]
    pub routing_alt: Option<Value>,
    /// Stored fields (`fields._routing` is also a routing source).
    #[serde(default)]
    pub fields: Option<Map<String, Value>>,
}

impl DataLine {
    /// The id as a string, if present.
    pub fn id_string(&self) -> Option<String> {
        match &self.id {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        }
    }

    /// The routing value, from `_routing`, `routing` or `fields._routing`.
    pub fn routing_string(&self) -> Option<String> {
        let from_fields = self.fields.as_ref().and_then(|f| f.get("_routing"));
        let v = self
            .routing
            .as_ref()
            .or(self.routing_alt.as_ref())
            .or(from_fields)?;
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Array(a) => a.first().and_then(Value::as_str).map(str::to_string),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn line(v: Value) -> String {
        let hit: RawHit = serde_json::from_str(&v.to_string()).unwrap();
        let mut out = Vec::new();
        dump_line(&hit, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn source_text_is_kept_byte_for_byte() {
        let text = r#"{"_index":"i","_id":"1","_score":null,"_source":{"b": 1.50, "a" :"\u00fc"},"sort":[3]}"#;
        let hit: RawHit = serde_json::from_str(text).unwrap();
        let mut out = Vec::new();
        dump_line(&hit, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "{\"_index\":\"i\",\"_id\":\"1\",\"_score\":1,\"_source\":{\"b\": 1.50, \"a\" :\"\\u00fc\"}}\n");
        assert_eq!(hit.get("sort").unwrap().get(), "[3]");
    }

    #[test]
    fn other_keys_are_kept_in_place() {
        let hit = json!({"_index":"i","_id":"1","_score":2.5,"_ignored":["f"],"_source":{},"fields":{"x":[1]},"sort":[1]});
        assert_eq!(line(hit), "{\"_index\":\"i\",\"_id\":\"1\",\"_score\":2.5,\"_ignored\":[\"f\"],\"_source\":{},\"fields\":{\"x\":[1]}}\n");
    }

    #[test]
    fn es8_line_shape_matches_reference() {
        // es-backup-format.md §2: {"_index":"my-index","_id":"1","_score":1,"_source":{…}}
        let hit = json!({"_index":"my-index","_id":"1","_score":null,"_source":{"a":1,"b":"x"},"sort":[12]});
        assert_eq!(line(hit), "{\"_index\":\"my-index\",\"_id\":\"1\",\"_score\":1,\"_source\":{\"a\":1,\"b\":\"x\"}}\n");
    }

    #[test]
    fn routing_kept_before_source_and_numbers_preserved() {
        let hit = json!({"_id":"7","_index":"i","_source":{"n":12345678901234567890u64,"f":1.0},"_routing":"r1","_score":null});
        let text = line(hit);
        assert_eq!(text, "{\"_index\":\"i\",\"_id\":\"7\",\"_score\":1,\"_routing\":\"r1\",\"_source\":{\"n\":12345678901234567890,\"f\":1.0}}\n");
    }

    #[test]
    fn unicode_passes_through_unescaped() {
        let hit = json!({"_index":"i","_id":"ü","_score":1.0,"_source":{"t":"日本語 ✓"}});
        assert_eq!(
            line(hit),
            "{\"_index\":\"i\",\"_id\":\"ü\",\"_score\":1.0,\"_source\":{\"t\":\"日本語 ✓\"}}\n"
        );
    }

    #[test]
    fn data_line_reads_multielasticdump_lines() {
        let text = "{\"_index\":\"my-index\",\"_type\":\"_doc\",\"_id\":\"1\",\"_score\":1,\"_routing\":\"r\",\"_source\":{\"z\":1, \"a\":[1,2]}}";
        let d: DataLine = serde_json::from_str(text).unwrap();
        assert_eq!(d.id_string().as_deref(), Some("1"));
        assert_eq!(d.routing_string().as_deref(), Some("r"));
        assert_eq!(d.source.unwrap().get(), "{\"z\":1, \"a\":[1,2]}");
        let d: DataLine =
            serde_json::from_str("{\"_id\":5,\"fields\":{\"_routing\":[\"q\"]},\"_source\":{}}")
                .unwrap();
        assert_eq!(d.id_string().as_deref(), Some("5"));
        assert_eq!(d.routing_string().as_deref(), Some("q"));
    }
}
