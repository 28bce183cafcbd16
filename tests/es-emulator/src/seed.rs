//! Seeding: realistic indices (keyword/text/long/date/nested objects, unicode, a few large
//! documents, custom routing), aliases and templates, deterministic for a given seed.

use bytes::Bytes;
use serde_json::{json, Value};

use crate::error::EsResult;
use crate::store::{OpType, Store};
use crate::util::SplitMix;

/// What to seed.
#[derive(Debug, Clone, PartialEq)]
pub struct Seed {
    /// Total documents, spread evenly over the indices.
    pub docs: usize,
    /// Number of indices (kinds rotate: `logs-…`, `users-…`, `events-…`).
    pub indices: usize,
    /// Size of each large document's text field in bytes (0 disables large documents).
    pub large_doc_bytes: usize,
    /// Random seed.
    pub seed: u64,
}

impl Default for Seed {
    fn default() -> Self {
        Seed {
            docs: 1000,
            indices: 3,
            large_doc_bytes: 256 * 1024,
            seed: 42,
        }
    }
}

const WORDS: &[&str] = &[
    "backup",
    "restore",
    "snapshot",
    "cluster",
    "shard",
    "replica",
    "Zürich",
    "東京",
    "Ελλάδα",
    "mañana",
    "naïve",
    "emoji🚀",
    "kube",
    "stash",
    "index",
    "alias",
    "routing",
    "São Paulo",
];

fn words(rng: &mut SplitMix, n: usize) -> String {
    (0..n)
        .map(|_| WORDS[rng.below(WORDS.len() as u64) as usize])
        .collect::<Vec<_>>()
        .join(" ")
}

fn pick(rng: &mut SplitMix, options: &[&'static str]) -> &'static str {
    options[rng.below(options.len() as u64) as usize]
}

fn date(rng: &mut SplitMix) -> String {
    let day = rng.below(28) + 1;
    let month = rng.below(12) + 1;
    let (h, m, s) = (rng.below(24), rng.below(60), rng.below(60));
    format!(
        "2025-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:03}Z",
        rng.below(1000)
    )
}

/// The name of the `i`-th seeded index.
pub fn index_name(i: usize) -> String {
    let kind = ["logs", "users", "events"][i % 3];
    format!("{kind}-{i:03}")
}

/// Creates the templates, indices, aliases and documents.
pub fn seed(store: &mut Store, cfg: &Seed) -> EsResult<()> {
    let mut rng = SplitMix(cfg.seed);
    store.templates.insert(
        "seed_logs".into(),
        json!({
            "order": 1,
            "index_patterns": ["logs-*"],
            "settings": {"index": {"number_of_shards": "2", "number_of_replicas": "0"}},
            "mappings": {"properties": {
                "@timestamp": {"type": "date"},
                "level": {"type": "keyword"},
                "message": {"type": "text"},
                "host": {"properties": {"name": {"type": "keyword"}, "ip": {"type": "ip"}}},
                "bytes": {"type": "long"},
                "tags": {"type": "keyword"}
            }},
            "aliases": {"all-logs": {}}
        }),
    );
    for i in 0..cfg.indices {
        let name = index_name(i);
        let body = match i % 3 {
            0 => json!({}),
            1 => json!({
                "settings": {"index": {"number_of_shards": 3, "number_of_replicas": 1}},
                "mappings": {"properties": {
                    "name": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}},
                    "email": {"type": "keyword"},
                    "age": {"type": "long"},
                    "signup": {"type": "date"},
                    "address": {"properties": {"city": {"type": "keyword"}, "zip": {"type": "keyword"}}},
                    "prefs": {"type": "nested", "properties": {"k": {"type": "keyword"}, "v": {"type": "keyword"}}},
                    "bio": {"type": "text"}
                }},
                "aliases": {format!("users-read-{i:03}"): {}, "users-write": {"is_write_index": i == 1}}
            }),
            _ => json!({
                "settings": {"index": {"number_of_shards": 1, "number_of_replicas": 0, "max_result_window": 10000}},
                "mappings": {"dynamic": "strict", "properties": {
                    "type": {"type": "keyword"},
                    "at": {"type": "date"},
                    "count": {"type": "long"},
                    "ratio": {"type": "double"},
                    "payload": {"type": "object", "enabled": false},
                    "blob": {"type": "text", "index": false}
                }}
            }),
        };
        store.create_index(&name, &body)?;
    }
    if cfg.indices == 0 {
        return Ok(());
    }
    for n in 0..cfg.docs {
        let i = n % cfg.indices;
        let name = index_name(i);
        let k = n / cfg.indices;
        let (id, routing, doc) = match i % 3 {
            0 => (
                format!("log-{k}"),
                None,
                json!({
                    "@timestamp": date(&mut rng),
                    "level": pick(&mut rng, &["INFO", "WARN", "ERROR", "DEBUG"]),
                    "message": words(&mut rng, 8),
                    "host": {"name": format!("node-{}", rng.below(7)), "ip": format!("10.0.{}.{}", rng.below(255), rng.below(255))},
                    "bytes": rng.below(1 << 40),
                    "tags": [words(&mut rng, 1), words(&mut rng, 1)]
                }),
            ),
            1 => (
                if k % 10 == 3 {
                    format!("usér-{k}-ü")
                } else {
                    format!("user-{k}")
                },
                Some(format!("tenant-{}", k % 5)),
                json!({
                    "name": words(&mut rng, 2),
                    "email": format!("user{k}@example.org"),
                    "age": 18 + rng.below(70),
                    "signup": date(&mut rng),
                    "address": {"city": WORDS[rng.below(WORDS.len() as u64) as usize], "zip": format!("{:05}", rng.below(99999))},
                    "prefs": [{"k": "lang", "v": pick(&mut rng, &["de", "ja", "el", "pt"])}, {"k": "theme", "v": "dark"}],
                    "bio": format!("{} — {}", words(&mut rng, 12), "ünïcödé ✓")
                }),
            ),
            _ => {
                let large = cfg.large_doc_bytes > 0 && k % 97 == 5;
                let blob = if large {
                    let unit = words(&mut rng, 16);
                    unit.repeat(cfg.large_doc_bytes / unit.len() + 1)
                } else {
                    words(&mut rng, 4)
                };
                (
                    format!("{:016x}", rng.next_u64()),
                    None,
                    json!({
                        "type": pick(&mut rng, &["click", "view", "purchase"]),
                        "at": date(&mut rng),
                        "count": rng.below(1_000_000),
                        "ratio": (rng.below(10_000) as f64) / 1000.0 + 0.0001,
                        "payload": {"a": [1, 2, 3], "b": {"c": null, "d": "x"}},
                        "blob": blob
                    }),
                )
            }
        };
        let bytes = Bytes::from(serde_json::to_vec(&doc).expect("json"));
        store.index_doc(&name, Some(id), bytes, &doc, routing, OpType::Create, None)?;
    }
    Ok(())
}

/// The documents of a seeded index as (id, source) pairs, in insertion order per shard.
pub fn documents(store: &Store, index: &str) -> Vec<(String, Value)> {
    store
        .indices
        .get(index)
        .map(|idx| {
            idx.shards
                .iter()
                .flat_map(|s| s.docs.iter().flatten())
                .map(|d| {
                    (
                        d.id.clone(),
                        serde_json::from_slice(&d.source).unwrap_or(Value::Null),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
/// What a fresh Elasticsearch 8 cluster creates on its own (a representative part): the `logs`
/// data-stream index template with its component templates, ILM policies and an ingest pipeline,
/// all marked `_meta.managed: true` as the stack marks them.
pub fn builtins(store: &mut Store) {
    let managed = |d: &str| json!({"description": d, "managed": true});
    store.component_templates.insert(
        "logs@mappings".into(),
        json!({"template": {"mappings": {"dynamic_templates": [], "properties": {
            "@timestamp": {"type": "date"},
            "data_stream": {"properties": {"type": {"type": "constant_keyword", "value": "logs"}}}}}},
            "_meta": managed("default mappings for the logs index template installed by x-pack"),
            "version": 15}),
    );
    store.component_templates.insert(
        "logs@settings".into(),
        json!({"template": {"settings": {"index": {"lifecycle": {"name": "logs"}}}},
            "_meta": managed("default settings for the logs index template installed by x-pack"),
            "version": 15}),
    );
    store.index_templates.insert(
        "logs".into(),
        json!({"index_patterns": ["logs-*-*"], "composed_of": ["logs@mappings", "logs@settings"],
            "priority": 100, "data_stream": {"hidden": false, "allow_custom_routing": false},
            "allow_auto_create": true, "ignore_missing_component_templates": [],
            "_meta": managed("default logs template installed by x-pack"), "version": 15}),
    );
    for (name, desc) in [
        (
            "logs",
            "default policy for the logs index template installed by x-pack",
        ),
        (
            "7-days-default",
            "built-in ILM policy using the hot and warm phases with a retention of 7 days",
        ),
    ] {
        store.ilm_policies.insert(
            name.into(),
            crate::store::IlmPolicy {
                policy: json!({"phases": {"hot": {"min_age": "0ms", "actions": {"rollover": {
                    "max_primary_shard_size": "50gb", "max_age": "30d"}}}},
                    "_meta": managed(desc)}),
                version: 1,
                modified_ms: 0,
            },
        );
    }
    store.pipelines.insert(
        "logs@json-pipeline".into(),
        json!({"description": "automatic parsing of JSON log messages",
            "processors": [{"rename": {"if": "ctx.message instanceof String", "field": "message",
                "target_field": "_tmp_json_message", "ignore_missing": true}}],
            "_meta": managed("automatic parsing of JSON log messages"), "version": 15}),
    );
}
