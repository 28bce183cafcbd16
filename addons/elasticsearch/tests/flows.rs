//! Backup and restore flows against the in-memory fake (state machines, retries, formats).

mod support;

use elasticsearch_addon::host::Method;
use elasticsearch_addon::options::Task;
use elasticsearch_addon::{error::AddonError, run_task};
use serde_json::{json, Value};
use support::{Doc, FakeEs};

fn params(args: &str) -> Vec<(String, String)> {
    vec![("args".to_string(), args.to_string())]
}

fn seeded() -> FakeEs {
    let mut es = FakeEs::new();
    let products: Vec<Doc> = (0..2500)
        .map(|i| Doc {
            id: format!("p{i}"),
            routing: None,
            source: json!({"name": format!("Produkt ü {i} 日本"), "price": i as f64 + 0.5,
                "tags": ["a", "b"], "dims": {"w": i, "h": {"cm": i * 2}}, "big": 9007199254740993u64}),
        })
        .collect();
    es.add_index(
        "products",
        json!({"properties":{"name":{"type":"text"},"dims":{"type":"object"}}}),
        products,
    );
    es.indices
        .get_mut("products")
        .unwrap()
        .aliases
        .insert("current".into(), json!({}));
    let routed: Vec<Doc> = (0..30)
        .map(|i| Doc {
            id: format!("r{i}"),
            routing: Some(format!("user{}", i % 3)),
            source: json!({"n": i}),
        })
        .collect();
    es.add_index(
        "routed",
        json!({"_routing":{"required":true},"properties":{"n":{"type":"long"}}}),
        routed,
    );
    let large: Vec<Doc> = (0..3)
        .map(|i| Doc {
            id: format!("l{i}"),
            routing: None,
            source: json!({"blob": "x".repeat(300_000)}),
        })
        .collect();
    es.add_index(
        "large-docs",
        json!({"properties":{"blob":{"type":"text","index":false}}}),
        large,
    );
    es.add_index(
        ".kibana_1",
        json!({}),
        vec![Doc {
            id: "k".into(),
            routing: None,
            source: json!({}),
        }],
    );
    es.add_index("empty", json!({"properties":{}}), vec![]);
    es.templates.insert("prod-template".into(), json!({"order":0,"index_patterns":["prod-*"],"settings":{"index":{"number_of_shards":"1"}},"mappings":{},"aliases":{}}));
    es.templates.insert(
        ".monitoring-es".into(),
        json!({"order":0,"index_patterns":[".monitoring-es-*"]}),
    );
    es
}

fn file(es: &FakeEs, name: &str) -> String {
    String::from_utf8(
        es.files
            .borrow()
            .get(name)
            .unwrap_or_else(|| panic!("no file {name}"))
            .clone(),
    )
    .unwrap()
}

fn docs_of(es: &FakeEs, idx: &str) -> Vec<Doc> {
    let mut d = es.indices[idx].docs.clone();
    d.sort_by(|a, b| a.id.cmp(&b.id));
    d
}

#[test]
fn default_backup_writes_multielasticdump_layout() {
    let mut es = seeded();
    let s = run_task(&mut es, Task::Backup, &params("--limit=100")).unwrap();
    assert_eq!(s.documents, 2500 + 30 + 3);
    let names: Vec<String> = es.files.borrow().keys().cloned().collect();
    // Per index .json, .mapping.json, .settings.json, .template.json and (kstash's default)
    // .alias.json; no dot indices; one file per cluster family and the manifest.
    let mut expected = Vec::new();
    for i in ["empty", "large-docs", "products", "routed"] {
        for suffix in [
            ".json",
            ".mapping.json",
            ".settings.json",
            ".template.json",
            ".alias.json",
        ] {
            expected.push(format!("{i}{suffix}"));
        }
    }
    for f in [
        "legacy_templates",
        "component_templates",
        "index_templates",
        "ilm_policies",
        "ingest_pipelines",
    ] {
        expected.push(format!(".cluster.{f}.json"));
    }
    expected.push(".kstash.manifest.json".into());
    expected.sort();
    assert_eq!(names, expected);
    let manifest: Value = serde_json::from_str(&file(&es, ".kstash.manifest.json")).unwrap();
    assert_eq!(manifest["indices"]["products"]["documents"], 2500);
    assert_eq!(manifest["source"]["product"], "elasticsearch");
    assert!(s
        .parts
        .iter()
        .any(|p| p.kind == "index" && p.name == "routed" && p.items == 30));
    // Data line shape (es-backup-format.md §2).
    let first = file(&es, "routed.json").lines().next().unwrap().to_string();
    assert_eq!(
        first,
        r#"{"_index":"routed","_id":"r0","_score":1,"_routing":"user0","_source":{"n":0}}"#
    );
    // Big integers survive (no JS double rounding).
    assert!(file(&es, "products.json").contains("\"big\":9007199254740993"));
    // settings: a JSON string, filtered like multielasticdump.
    let settings = file(&es, "products.settings.json");
    assert!(
        settings.starts_with('"') && settings.ends_with("\"\n"),
        "{settings}"
    );
    let inner: Value =
        serde_json::from_str(&serde_json::from_str::<String>(settings.trim()).unwrap()).unwrap();
    assert_eq!(
        inner,
        json!({"products":{"settings":{"index":{"number_of_shards":"1","number_of_replicas":"0"}}}})
    );
    // mapping: an object.
    let mapping: Value = serde_json::from_str(file(&es, "products.mapping.json").trim()).unwrap();
    assert_eq!(
        mapping["products"]["mappings"]["properties"]["name"]["type"],
        "text"
    );
    // template: string; system templates dropped.
    let t: String = serde_json::from_str(file(&es, "products.template.json").trim()).unwrap();
    let t: Value = serde_json::from_str(&t).unwrap();
    assert!(t.get("prod-template").is_some() && t.get(".monitoring-es").is_none());
    // PIT + _shard_doc; PITs closed; every request with a body is not GET.
    assert!(es
        .requests
        .iter()
        .any(|(m, p)| *m == Method::Post && p.starts_with("/products/_pit?keep_alive=10m")));
    assert_eq!(
        es.requests
            .iter()
            .filter(|(m, p)| *m == Method::Delete && p == "/_pit")
            .count(),
        4
    );
    // progress reported with totals
    assert!(es
        .progress
        .contains(&(2500, Some(2500), "index products".to_string())));
}

#[test]
fn tutorial_ignore_type_writes_only_data_and_mapping() {
    let mut es = seeded();
    run_task(
        &mut es,
        Task::Backup,
        &params("--ignoreType=template,settings"),
    )
    .unwrap();
    for name in es.files.borrow().keys() {
        assert!(
            name.ends_with(".mapping.json")
                || !name.contains(".settings") && !name.contains(".template"),
            "{name}"
        );
    }
    assert!(es.files.borrow().contains_key("products.json"));
    assert!(!es
        .requests
        .iter()
        .any(|(_, p)| p.starts_with("/_template") || p.contains("_settings")));
}

#[test]
fn invalid_args_fail_before_any_request() {
    for args in [
        "--match=^(?![.]",
        "--limit=x",
        "--nope",
        "--ignoreType=bogus",
    ] {
        let mut es = seeded();
        let e = run_task(&mut es, Task::Backup, &params(args)).unwrap_err();
        assert!(e.is_invalid_param(), "{args}: {e}");
        assert!(es.requests.is_empty(), "{args}: requests were sent");
    }
    let mut es = seeded();
    let e = run_task(&mut es, Task::Backup, &params("--match=^(?![.]"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("--match") && e.contains("position"), "{e}");
}

fn roundtrip(args: &str, restore_args: &str, mut target: FakeEs) -> (FakeEs, FakeEs) {
    let mut src = seeded();
    run_task(&mut src, Task::Backup, &params(args)).unwrap();
    target.files = src.files.clone();
    run_task(&mut target, Task::Restore, &params(restore_args)).unwrap();
    (src, target)
}

#[test]
fn backup_restore_roundtrip_is_identical() {
    let (src, dst) = roundtrip(
        "--limit=100 --ignoreAnalyzer=false",
        "--limit=100 --ignoreAnalyzer=false",
        FakeEs::new(),
    );
    for idx in ["products", "routed", "large-docs", "empty"] {
        assert_eq!(docs_of(&src, idx), docs_of(&dst, idx), "documents of {idx}");
        assert_eq!(
            src.indices[idx].mappings, dst.indices[idx].mappings,
            "mappings of {idx}"
        );
        assert_eq!(
            dst.indices[idx].settings,
            json!({"index":{"number_of_shards":"1","number_of_replicas":"0"}})
        );
    }
    assert!(!dst.indices.contains_key(".kibana_1"));
    assert_eq!(
        dst.indices["products"].aliases,
        src.indices["products"].aliases
    );
    assert_eq!(
        dst.templates.get("prod-template"),
        src.templates.get("prod-template")
    );
    assert!(dst.templates.get(".monitoring-es").is_none());
    // templates PUT once, not once per index
    assert_eq!(
        dst.requests
            .iter()
            .filter(|(m, p)| *m == Method::Put && p == "/_template/prod-template")
            .count(),
        1
    );
}

#[test]
fn pit_expiry_mid_index_fails_naming_the_index_instead_of_resuming() {
    let mut es = seeded();
    es.expire_pit_after = Some(7);
    let e = run_task(
        &mut es,
        Task::Backup,
        &params("--limit=100 --match=^products$"),
    )
    .unwrap_err();
    match &e {
        AddonError::Incomplete { index, reason } => {
            assert_eq!(index, "products");
            assert!(reason.contains("--scrollTime"), "{reason}");
        }
        other => panic!("expected Incomplete, got {other}"),
    }
    // No search ever resumed with sort values of the expired point in time.
    let pits = es
        .requests
        .iter()
        .filter(|(m, p)| *m == Method::Post && p.starts_with("/products/_pit"))
        .count();
    assert_eq!(pits, 1);
}

#[test]
fn pit_expiry_before_the_first_page_starts_over() {
    let mut es = seeded();
    es.expire_pit_after = Some(0);
    run_task(
        &mut es,
        Task::Backup,
        &params("--limit=100 --match=^products$"),
    )
    .unwrap();
    let text = file(&es, "products.json");
    let mut ids: Vec<&str> = text.lines().collect();
    assert_eq!(ids.len(), 2500);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 2500);
}

#[test]
fn scroll_fallback_when_pit_is_unsupported() {
    let mut es = seeded();
    es.pit_supported = false;
    run_task(
        &mut es,
        Task::Backup,
        &params("--limit=100 --match=^products$"),
    )
    .unwrap();
    assert_eq!(file(&es, "products.json").lines().count(), 2500);
    assert!(es.requests.iter().any(|(_, p)| p == "/_search/scroll"));
    assert!(es
        .requests
        .iter()
        .any(|(m, p)| *m == Method::Delete && p == "/_search/scroll"));
}

/// The ids of a dump data file, each once (panics on a repeated id).
fn unique_ids(text: &str) -> std::collections::BTreeSet<String> {
    let mut ids = std::collections::BTreeSet::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let id = v["_id"].as_str().unwrap().to_string();
        assert!(ids.insert(id.clone()), "{id} dumped twice");
    }
    ids
}

#[test]
fn scroll_mode_under_rejections_and_refused_connections_round_trips() {
    let mut src = seeded();
    src.pit_supported = false;
    src.fault_rate = 0.2;
    run_task(&mut src, Task::Backup, &params("--limit=100")).unwrap();
    assert!(src.faults > 10, "faults injected: {}", src.faults);
    let continuations = src
        .requests
        .iter()
        .filter(|(m, p)| *m == Method::Post && p == "/_search/scroll")
        .count();
    assert!(continuations > 25, "{continuations} scroll continuations");
    assert_eq!(unique_ids(&file(&src, "products.json")).len(), 2500);
    let mut dst = FakeEs::new();
    dst.files = src.files.clone();
    run_task(&mut dst, Task::Restore, &params("--limit=100")).unwrap();
    src.fault_rate = 0.0;
    for idx in ["products", "routed", "large-docs", "empty"] {
        assert_eq!(docs_of(&src, idx), docs_of(&dst, idx), "documents of {idx}");
    }
}

#[test]
fn lost_scroll_answer_fails_naming_the_index_and_is_not_asked_again() {
    let mut es = seeded();
    es.pit_supported = false;
    es.lose_scroll_answer_at = Some(3);
    let e = run_task(
        &mut es,
        Task::Backup,
        &params("--limit=100 --match=^products$"),
    )
    .unwrap_err();
    match &e {
        AddonError::Incomplete { index, reason } => {
            assert_eq!(index, "products");
            assert!(
                reason.contains("after 300 documents")
                    && reason.contains("cannot ask for a page again")
                    && reason.contains("Run the backup again"),
                "{reason}"
            );
        }
        other => panic!("expected Incomplete, got {other}"),
    }
    assert_eq!(es.faults, 1);
    // The lost continuation was not sent again (that would have skipped its page) ...
    let continuations = es
        .requests
        .iter()
        .filter(|(m, p)| *m == Method::Post && p == "/_search/scroll")
        .count();
    assert_eq!(continuations, 3);
    // ... the scroll was released, and the dump has no manifest (it is not whole).
    assert_eq!(
        es.requests.last(),
        Some(&(Method::Delete, "/_search/scroll".to_string()))
    );
    assert!(!es.files.borrow().contains_key(".kstash.manifest.json"));
}

#[test]
fn sliced_reading_covers_every_document_once() {
    let mut es = seeded();
    let extra: Vec<Doc> = (0..25_000)
        .map(|i| Doc {
            id: format!("s{i}"),
            routing: None,
            source: json!({"i": i}),
        })
        .collect();
    es.add_index("sliced", json!({}), extra);
    run_task(
        &mut es,
        Task::Backup,
        &params("--match=^sliced$ --parallel=2 --limit=5000"),
    )
    .unwrap();
    let text = file(&es, "sliced.json");
    let mut ids: Vec<&str> = text
        .lines()
        .map(|l| &l[l.find("\"_id\":\"").unwrap() + 7..])
        .collect();
    assert_eq!(ids.len(), 25_000);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 25_000);
}

#[test]
fn size_and_offset_limit_documents() {
    let mut es = seeded();
    run_task(
        &mut es,
        Task::Backup,
        &params("--match=^products$ --size=150 --offset=10 --limit=100"),
    )
    .unwrap();
    let text = file(&es, "products.json");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 150);
    assert!(lines[0].contains("\"_id\":\"p10\""));
}

#[test]
fn twenty_percent_faults_lose_nothing() {
    let mut src = seeded();
    src.fault_rate = 0.2;
    run_task(&mut src, Task::Backup, &params("--limit=100")).unwrap();
    assert!(src.faults > 10, "faults injected: {}", src.faults);
    let mut dst = FakeEs::new();
    dst.fault_rate = 0.2;
    dst.item_429_rate = 0.2;
    dst.files = src.files.clone();
    let s = run_task(&mut dst, Task::Restore, &params("--limit=100")).unwrap();
    assert_eq!(s.documents, 2533);
    src.fault_rate = 0.0;
    for idx in ["products", "routed", "large-docs", "empty"] {
        assert_eq!(docs_of(&src, idx), docs_of(&dst, idx), "documents of {idx}");
    }
    assert!(dst.sleeps.iter().all(|d| d.as_secs() <= 10));
}

#[test]
fn failed_bulk_item_names_index_id_and_reason() {
    let mut src = seeded();
    run_task(&mut src, Task::Backup, &params("--match=^routed$")).unwrap();
    let mut dst = FakeEs::new();
    dst.poison_ids = vec!["r7".into()];
    dst.files = src.files.clone();
    let e = run_task(&mut dst, Task::Restore, &params("")).unwrap_err();
    match &e {
        AddonError::BulkItem {
            index,
            id,
            status,
            reason,
        } => {
            assert_eq!(
                (index.as_str(), id.as_str(), *status),
                ("routed", "r7", 400)
            );
            assert!(reason.contains("document_parsing_exception"));
        }
        other => panic!("expected BulkItem, got {other}"),
    }
}

#[test]
fn existing_index_with_documents_is_refused_unless_allowed() {
    let (src, _) = roundtrip("--match=^routed$", "", FakeEs::new());
    let mut dst = seeded(); // already has "routed" with 30 docs
    dst.files = src.files.clone();
    let e = run_task(&mut dst, Task::Restore, &params(""))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("routed") && e.contains("--overwrite=true"),
        "{e}"
    );
    assert!(!dst.requests.iter().any(|(_, p)| p.contains("_bulk")));
    // --overwrite=true replaces it
    dst.indices.get_mut("routed").unwrap().docs.truncate(5);
    run_task(&mut dst, Task::Restore, &params("--overwrite=true")).unwrap();
    assert_eq!(docs_of(&dst, "routed"), docs_of(&src, "routed"));
    // --delete=true deletes first
    let mut dst2 = seeded();
    dst2.files = src.files.clone();
    run_task(&mut dst2, Task::Restore, &params("--delete=true")).unwrap();
    assert!(dst2
        .requests
        .iter()
        .any(|(m, p)| *m == Method::Delete && p == "/routed?ignore_unavailable=true"));
    assert_eq!(docs_of(&dst2, "routed"), docs_of(&src, "routed"));
}

#[test]
fn multielasticdump_dump_restores() {
    // Lines as multielasticdump writes them (es-backup-format.md §2, §3), including ES 7 `_type`.
    let mut dst = FakeEs::new();
    {
        let mut f = dst.files.borrow_mut();
        f.insert("my-index.json".into(), b"{\"_index\":\"my-index\",\"_type\":\"_doc\",\"_id\":\"1\",\"_score\":1,\"_source\":{\"title\":\"a\"}}\n{\"_index\":\"my-index\",\"_id\":\"2\",\"_score\":1,\"_routing\":\"r\",\"_source\":{\"title\":\"b\"}}\n".to_vec());
        f.insert(
            "my-index.mapping.json".into(),
            b"{\"my-index\":{\"mappings\":{\"properties\":{\"title\":{\"type\":\"text\"}}}}}\n"
                .to_vec(),
        );
        f.insert("my-index.settings.json".into(), b"\"{\\\"my-index\\\":{\\\"settings\\\":{\\\"index\\\":{\\\"number_of_shards\\\":\\\"1\\\",\\\"uuid\\\":\\\"x\\\",\\\"version\\\":{\\\"created\\\":\\\"7170099\\\"}}}}}\"\n".to_vec());
        f.insert("my-index.template.json".into(), b"\"{}\"\n".to_vec());
        f.insert(
            "my-index.alias.json".into(),
            b"\"{\\\"my-index\\\":{\\\"aliases\\\":{\\\"a1\\\":{}}}}\"\n".to_vec(),
        );
    }
    run_task(
        &mut dst,
        Task::Restore,
        &params("--ignoreAlias=false --prefix=r-"),
    )
    .unwrap();
    let ix = &dst.indices["r-my-index"];
    assert_eq!(ix.docs.len(), 2);
    assert_eq!(ix.docs[1].routing.as_deref(), Some("r"));
    assert_eq!(ix.settings, json!({"index":{"number_of_shards":"1"}}));
    assert!(ix.aliases.contains_key("a1"));
}

#[test]
fn kubestash_extra_params_are_ignored_with_a_log_line() {
    let mut es = seeded();
    let p = vec![
        ("args".to_string(), "--match=^routed$".to_string()),
        (
            "interimDataDir".to_string(),
            "/kubestash-interim/data".to_string(),
        ),
        ("enableCache".to_string(), "true".to_string()),
    ];
    run_task(&mut es, Task::Backup, &p).unwrap();
    assert!(es
        .logs
        .iter()
        .any(|(_, m)| m.contains("interimDataDir") && m.contains("ignored")));
}
