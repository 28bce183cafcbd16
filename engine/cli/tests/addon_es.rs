//! The worked-example addon (`addons/examples/es-templates`) through `kstash addon run` against
//! the Elasticsearch emulator, and `kstash bench es` end to end at a tiny size (so it cannot rot).
#![cfg(feature = "addon")]

use std::path::Path;

use hyper::Method;
use kstash_es_emulator::client::EsClient;
use kstash_es_emulator::EmulatorBuilder;
use kstash_testkit::{addon_module, repo_root};
use serde_json::{json, Value};

async fn kstash(args: &[&str]) -> std::process::Output {
    kstash_testkit::output_async(env!("CARGO_BIN_EXE_kstash"), args).await
}

fn text(o: &std::process::Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn put(es: &EsClient, path: &str, body: Value) {
    let (status, v) = es.json(Method::PUT, path, Some(&body)).await.unwrap();
    assert_eq!(status, 200, "PUT {path}: {v}");
}

async fn get(es: &EsClient, path: &str) -> Value {
    let (status, v) = es.json(Method::GET, path, None).await.unwrap();
    assert_eq!(status, 200, "GET {path}: {v}");
    v
}

/// The lines of a backup stream, as JSON values.
fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es_templates_example_backs_up_and_restores_templates() {
    let wasm = addon_module("es_templates_addon.wasm");
    let wasm = wasm.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let (ca, pw) = (tmp.path().join("ca.crt"), tmp.path().join("pw"));

    // Source: HTTPS with basic auth; the credentials and the CA stay in the host.
    let src = EmulatorBuilder::new()
        .tls(true)
        .auth("elastic", "s3cret")
        .start()
        .await
        .unwrap();
    src.write_ca(&ca).unwrap();
    std::fs::write(&pw, "s3cret\n").unwrap();
    let es = EsClient::new(&src.url, Some(("elastic", "s3cret")), src.ca_pem.as_deref()).unwrap();
    put(
        &es,
        "/_component_template/ct-base",
        json!({"template": {"settings": {"number_of_shards": 2},
                            "mappings": {"properties": {"@timestamp": {"type": "date"}}}},
               "version": 3, "_meta": {"owner": "team-a"}}),
    )
    .await;
    put(
        &es,
        "/_component_template/ct-aliases",
        json!({"template": {"aliases": {"all-logs": {}}}}),
    )
    .await;
    put(
        &es,
        "/_index_template/logs-tpl",
        json!({"index_patterns": ["logs-*"], "composed_of": ["ct-base", "ct-aliases"],
               "priority": 200,
               "template": {"mappings": {"properties": {"message": {"type": "text"}}}}}),
    )
    .await;
    // Managed by the stack (Elasticsearch recreates it): skipped by default.
    put(
        &es,
        "/_index_template/metrics-managed",
        json!({"index_patterns": ["metrics-*"], "_meta": {"managed": true}}),
    )
    .await;
    put(
        &es,
        "/_template/legacy-old",
        json!({"index_patterns": ["old-*"], "order": 5,
               "settings": {"number_of_replicas": 0}}),
    )
    .await;
    put(
        &es,
        "/_template/.system-old",
        json!({"index_patterns": [".sys-*"]}),
    )
    .await;

    let o = kstash(&[
        "addon",
        "run",
        "--module",
        wasm,
        "--task",
        "templates-backup",
        "--target-url",
        &src.url,
        "--username",
        "elastic",
        "--password-file",
        pw.to_str().unwrap(),
        "--ca-file",
        ca.to_str().unwrap(),
        "--out-dir",
        out.to_str().unwrap(),
    ])
    .await;
    assert!(o.status.success(), "backup: {}", text(&o));
    let names = |file: &str| -> Vec<String> {
        lines(&out.join(file))
            .iter()
            .map(|l| l["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names("component_templates.ndjson"),
        ["ct-aliases", "ct-base"]
    );
    assert_eq!(names("index_templates.ndjson"), ["logs-tpl"]);
    assert_eq!(names("legacy_templates.ndjson"), ["legacy-old"]);

    // Restore into an empty cluster (plain HTTP, no auth).
    let dst = EmulatorBuilder::new().start().await.unwrap();
    let es2 = EsClient::new(&dst.url, None, None).unwrap();
    let restore = |extra: &'static [&'static str]| {
        let (wasm, url, dir) = (
            wasm.to_string(),
            dst.url.clone(),
            out.to_str().unwrap().to_string(),
        );
        async move {
            let mut args = vec![
                "addon",
                "run",
                "--module",
                wasm.as_str(),
                "--task",
                "templates-restore",
                "--target-url",
                url.as_str(),
                "--in-dir",
                dir.as_str(),
            ];
            args.extend_from_slice(extra);
            kstash(&args).await
        }
    };
    let o = restore(&[]).await;
    assert!(o.status.success(), "restore: {}", text(&o));
    assert_eq!(
        get(&es2, "/_component_template/*").await,
        get(&es, "/_component_template/ct-*").await
    );
    assert_eq!(
        get(&es2, "/_index_template/*").await,
        get(&es, "/_index_template/logs-tpl").await
    );
    assert_eq!(
        get(&es2, "/_template/*").await,
        get(&es, "/_template/legacy-old").await
    );
    // The restored templates do their job: a new index gets the composed settings and alias.
    put(&es2, "/logs-1", json!({})).await;
    let idx = get(&es2, "/logs-1").await;
    assert_eq!(
        idx["logs-1"]["settings"]["index"]["number_of_shards"], "2",
        "{idx}"
    );
    assert!(idx["logs-1"]["aliases"].get("all-logs").is_some(), "{idx}");

    // A second restore refuses to replace what exists, naming the template and the way out.
    let o = restore(&[]).await;
    assert!(
        !o.status.success(),
        "second restore must fail: {}",
        text(&o)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("component template `ct-aliases` already exists")
            && err.contains("overwrite=true"),
        "{}",
        text(&o)
    );
    let o = restore(&["--param", "overwrite=true"]).await;
    assert!(o.status.success(), "restore with overwrite: {}", text(&o));

    // Bad parameters fail with their name, before any request reaches the target.
    let before = dst.requests().len();
    for (param, needle) in [
        (
            "types=component,views",
            "parameter `types`: invalid value \"views\"",
        ),
        (
            "overwrite=maybe",
            "parameter `overwrite`: invalid value \"maybe\"",
        ),
        ("names=*", "unknown parameter `names`"),
    ] {
        let o = kstash(&[
            "addon",
            "run",
            "--module",
            wasm,
            "--task",
            "templates-restore",
            "--target-url",
            &dst.url,
            "--in-dir",
            out.to_str().unwrap(),
            "--param",
            param,
        ])
        .await;
        assert!(!o.status.success(), "{param} must fail: {}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(needle),
            "{param}: {}",
            text(&o)
        );
    }
    let o = kstash(&[
        "addon",
        "run",
        "--module",
        wasm,
        "--task",
        "templates-backup",
        "--target-url",
        &dst.url,
        "--param",
        "names=logs/../x",
        "--out-dir",
        tmp.path().join("bad").to_str().unwrap(),
    ])
    .await;
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("parameter `names`: invalid value \"logs/../x\""),
        "{}",
        text(&o)
    );
    assert_eq!(dst.requests().len(), before, "a request was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_es_runs_end_to_end_at_a_tiny_size() {
    let wasm = addon_module("elasticsearch_addon.wasm");
    let med = repo_root().join(".tools/node/node_modules/.bin/multielasticdump");
    assert!(
        med.is_file(),
        "{} missing: run scripts/ensure-tools.sh",
        med.display()
    );
    let o = kstash(&[
        "bench",
        "es",
        "--allow-debug-build",
        "--docs",
        "2000",
        "--indices",
        "3",
        "--large-doc-bytes",
        "4096",
        "--rounds",
        "1",
        "--module",
        wasm.to_str().unwrap(),
        "--multielasticdump",
        med.to_str().unwrap(),
    ])
    .await;
    assert!(o.status.success(), "bench: {}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    // Every side printed a positive docs/s median (the bench itself fails when a side moved a
    // different number of documents than were seeded).
    for side in [
        "kstash component backup -> discard",
        "kstash component backup -> dir",
        "multielasticdump dump -> dir",
        "emulator ceiling (native PIT scan)",
        "kstash component restore <- dir",
        "multielasticdump load <- dir",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(side))
            .unwrap_or_else(|| panic!("no row {side:?}: {}", text(&o)));
        let cols: Vec<f64> = line[side.len()..]
            .split_whitespace()
            .map(|c| c.parse().unwrap())
            .collect();
        assert_eq!(cols.len(), 3, "{line}");
        assert!(cols.iter().all(|c| *c > 0.0), "{line}");
    }
    assert!(
        stdout.contains("kstash->dir / multielasticdump dump"),
        "{}",
        text(&o)
    );
    assert!(
        stdout.contains("restore kstash / multielasticdump load"),
        "{}",
        text(&o)
    );
}

/// The guide's `Function`/`Addon` manifests (docs/addon-authoring.md §2.9) parse as kstash's
/// types, pass admission, and declare exactly the tasks and parameters the built component
/// describes (`kstash addon inspect --json`), so the guide cannot drift from the code.
#[cfg(feature = "render")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authoring_guide_manifests_match_the_example_component() {
    use kstash_api::addons::{Addon, Function};
    use serde::Deserialize;

    let guide = std::fs::read_to_string(repo_root().join("docs/addon-authoring.md")).unwrap();
    let section = &guide[guide.find("### 2.9").expect("section 2.9")..];
    let start = section.find("```yaml\n").expect("yaml block") + "```yaml\n".len();
    let yaml = &section[start..start + section[start..].find("```").unwrap()];
    let (mut functions, mut addons) = (Vec::new(), Vec::new());
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let v = serde_yaml::Value::deserialize(doc).unwrap();
        match v["kind"].as_str() {
            Some("Function") => functions.push(serde_yaml::from_value::<Function>(v).unwrap()),
            Some("Addon") => addons.push(serde_yaml::from_value::<Addon>(v).unwrap()),
            other => panic!("unexpected kind {other:?}"),
        }
    }
    assert_eq!((functions.len(), addons.len()), (2, 1));
    for f in &functions {
        kstash_api::admission::validate_function(f).unwrap();
        assert!(
            f.spec.module.is_some(),
            "{:?} has no spec.module",
            f.metadata.name
        );
    }

    let wasm = addon_module("es_templates_addon.wasm");
    let o = kstash(&["addon", "inspect", "--json", wasm.to_str().unwrap()]).await;
    assert!(o.status.success(), "{}", text(&o));
    let desc: Value = serde_json::from_slice(&o.stdout).unwrap();
    let addon = &addons[0];
    assert_eq!(addon.metadata.name.as_deref(), desc["name"].as_str());
    let declared: Vec<_> = addon
        .spec
        .backup_tasks
        .iter()
        .map(|t| (t, "backup"))
        .chain(addon.spec.restore_tasks.iter().map(|t| (t, "restore")))
        .collect();
    let tasks = desc["tasks"].as_array().unwrap();
    assert_eq!(declared.len(), tasks.len());
    for (task, kind) in declared {
        let d = tasks
            .iter()
            .find(|d| d["name"] == task.name.as_str())
            .unwrap_or_else(|| panic!("component has no task {}", task.name));
        assert_eq!(d["kind"], kind, "{}", task.name);
        let function = task.function.as_deref().unwrap();
        assert!(
            functions
                .iter()
                .any(|f| f.metadata.name.as_deref() == Some(function)),
            "task {} names function {function}, not in the guide",
            task.name
        );
        let params: Vec<(String, Option<String>)> = task
            .parameters
            .iter()
            .map(|p| (p.name.clone(), p.default.clone()))
            .collect();
        let described: Vec<(String, Option<String>)> = d["params"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_string(),
                    p["default"].as_str().map(str::to_string),
                )
            })
            .collect();
        assert_eq!(params, described, "parameters of {}", task.name);
    }
}
