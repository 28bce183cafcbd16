//! multielasticdump and elasticdump (npm `elasticdump`) against the emulator, in both directions,
//! over HTTP and HTTPS, compared document by document; every request they sent must conform to
//! Elastic's REST API spec, except two known client quirks (`GET /_aliases`, and
//! elasticdump's `DELETE /<index>/_pit`, which the checker must flag), see docs/es-emulator.md.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::{docs_of, tool, StoredDoc};
use kstash_es_emulator::spec::{SpecChecker, SpecError};
use kstash_es_emulator::{EmulatorBuilder, RunningEmulator, Seed};
use serde_json::Value;

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Documents of an elasticdump data file: `_id` → source and routing.
fn read_dump(path: &Path) -> BTreeMap<String, StoredDoc> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let hit: Value = serde_json::from_str(l).expect("one JSON hit per line");
            (
                hit["_id"].as_str().expect("_id").to_string(),
                StoredDoc {
                    source: hit["_source"].clone(),
                    routing: hit
                        .get("_routing")
                        .and_then(Value::as_str)
                        .map(String::from),
                },
            )
        })
        .collect()
}

fn assert_spec_conformance(emu: &RunningEmulator, spec: &SpecChecker) -> usize {
    let reqs = emu.requests();
    for r in &reqs {
        if r.method == "GET" && r.path == "/_aliases" {
            continue;
        }
        if r.method == "DELETE" && r.path.ends_with("/_pit") && r.path != "/_pit" {
            let e = spec
                .check_logged(r)
                .expect_err("DELETE /<index>/_pit is not in the spec");
            assert!(matches!(e, SpecError::MethodNotAllowed { .. }), "{e}");
            continue;
        }
        spec.check_logged(r)
            .unwrap_or_else(|e| panic!("elasticdump sent a request outside the spec: {e}"));
    }
    reqs.len()
}

#[test]
fn multielasticdump_and_elasticdump_round_trips() {
    let multi = tool("node/node_modules/.bin/multielasticdump");
    let single = tool("node/node_modules/.bin/elasticdump");
    let spec = SpecChecker::load_default();
    let work = tempfile::tempdir().unwrap();
    let auth = work.path().join("auth.ini");
    std::fs::write(&auth, "user=elastic\npassword=pw\n").unwrap();
    let auth_arg = format!("--httpAuthFile={}", auth.display());

    // Source: plain HTTP, seeded.
    let a = EmulatorBuilder::new()
        .auth("elastic", "pw")
        .seed(Seed {
            docs: 240,
            indices: 3,
            large_doc_bytes: 64 * 1024,
            seed: 5,
        })
        .spawn()
        .unwrap();
    let names = common::index_names(&a);
    assert_eq!(names, ["events-002", "logs-000", "users-001"]);

    // 1. multielasticdump --direction=dump.
    let dump = work.path().join("dump");
    std::fs::create_dir(&dump).unwrap();
    run(
        Command::new(&multi)
            .arg("--direction=dump")
            .arg(format!("--input={}", a.url))
            .arg(format!("--output={}", dump.display()))
            .args([
                "--interval=50",
                "--parallel=2",
                "--match=^(?![.])(?!apm-agent-configuration)(?!kubedb-system).+",
            ])
            .arg(&auth_arg),
        "multielasticdump dump",
    );
    for n in &names {
        for suffix in ["json", "mapping.json", "settings.json", "template.json"] {
            assert!(
                dump.join(format!("{n}.{suffix}")).exists(),
                "{n}.{suffix} missing"
            );
        }
        assert_eq!(
            read_dump(&dump.join(format!("{n}.json"))),
            docs_of(&a, n),
            "dump of {n}"
        );
        let mapping: Value = serde_json::from_str(
            std::fs::read_to_string(dump.join(format!("{n}.mapping.json")))
                .unwrap()
                .trim(),
        )
        .unwrap();
        let expected = Value::Object(a.api().store().indices[n].mappings.clone());
        assert_eq!(mapping[n]["mappings"], expected);
        let settings_line =
            std::fs::read_to_string(dump.join(format!("{n}.settings.json"))).unwrap();
        let settings: Value = serde_json::from_str(
            serde_json::from_str::<String>(settings_line.trim())
                .unwrap()
                .as_str(),
        )
        .unwrap();
        let shards = a.api().store().indices[n].shards.len().to_string();
        assert_eq!(
            settings[n]["settings"]["index"]["number_of_shards"],
            Value::String(shards)
        );
        assert!(
            settings[n]["settings"]["index"].get("uuid").is_none(),
            "elasticdump strips uuid"
        );
    }
    let routed = docs_of(&a, "users-001")
        .values()
        .filter(|d| d.routing.is_some())
        .count();
    assert_eq!(routed, 80, "every users document has custom routing");

    // 2. multielasticdump --direction=load into an HTTPS emulator (TLS verification off, as KubeStash runs it).
    let b = EmulatorBuilder::new()
        .tls(true)
        .auth("elastic", "pw")
        .spawn()
        .unwrap();
    run(
        Command::new(&multi)
            .arg("--direction=load")
            .arg(format!("--input={}", dump.display()))
            .arg(format!("--output={}", b.url))
            .args(["--interval=50", "--parallel=2"])
            .arg(&auth_arg)
            .env("NODE_TLS_REJECT_UNAUTHORIZED", "0"),
        "multielasticdump load",
    );
    for n in &names {
        assert_eq!(
            docs_of(&b, n),
            docs_of(&a, n),
            "documents of {n} after load"
        );
        let (sa, sb) = (a.api().store(), b.api().store());
        assert_eq!(
            sb.indices[n].mappings, sa.indices[n].mappings,
            "mappings of {n}"
        );
        assert_eq!(
            sb.indices[n].shards.len(),
            sa.indices[n].shards.len(),
            "shards of {n}"
        );
    }
    assert!(b.api().store().templates.contains_key("seed_logs"));

    // 3. elasticdump, one index: HTTPS source verified with --input-ca, into the HTTP emulator.
    let ca = work.path().join("ca.crt");
    b.write_ca(&ca).unwrap();
    let file = work.path().join("users.ndjson");
    run(
        Command::new(&single)
            .arg(format!("--input={}/users-001", b.url))
            .arg(format!("--input-ca={}", ca.display()))
            .arg("--tlsAuth=true")
            .arg(format!("--output={}", file.display()))
            .args(["--type=data", "--limit=33", "--quiet"])
            .arg(&auth_arg),
        "elasticdump https dump",
    );
    assert_eq!(read_dump(&file), docs_of(&b, "users-001"));
    run(
        Command::new(&single)
            .arg(format!("--input={}", file.display()))
            .arg(format!("--output={}/users-copy", a.url))
            .args(["--type=data", "--limit=50", "--quiet"])
            .arg(&auth_arg),
        "elasticdump load",
    );
    assert_eq!(docs_of(&a, "users-copy"), docs_of(&b, "users-001"));

    // 4. elasticdump with PIT + search_after (POST /<i>/_pit, POST /_search, DELETE /_pit).
    let pit_file = work.path().join("logs-pit.ndjson");
    run(
        Command::new(&single)
            .arg(format!("--input={}/logs-000", a.url))
            .arg(format!("--output={}", pit_file.display()))
            .args([
                "--type=data",
                "--limit=17",
                "--searchAfter=true",
                "--pit=true",
                "--pitKeepAlive=1m",
                "--quiet",
            ])
            .arg(&auth_arg),
        "elasticdump pit dump",
    );
    assert_eq!(read_dump(&pit_file), docs_of(&a, "logs-000"));
    let reqs = a.requests();
    assert!(reqs
        .iter()
        .any(|r| r.method == "POST" && r.path == "/logs-000/_pit"));
    // elasticdump 6.125 closes its PIT with `DELETE /<index>/_pit`, a route Elasticsearch 8 does
    // not have (only `DELETE /_pit`): the emulator answers 405 like Elasticsearch would, and the
    // spec checker flags it (see assert_spec_conformance).
    assert!(reqs
        .iter()
        .any(|r| r.method == "DELETE" && r.path == "/logs-000/_pit" && r.status == 405));

    let checked = assert_spec_conformance(&a, &spec) + assert_spec_conformance(&b, &spec);
    assert!(checked > 50, "only {checked} requests were logged");
}
