//! The official Python client (`elasticsearch` 8) against the emulator over HTTPS with basic auth:
//! `helpers.bulk`, `helpers.scan` (scroll), PIT + `search_after`, count, errors. Every request
//! it sent must conform to Elastic's REST API spec.

mod common;

use std::process::Command;

use kstash_es_emulator::spec::SpecChecker;
use kstash_es_emulator::EmulatorBuilder;
use serde_json::Value;

const SCRIPT: &str = r#"
import json, sys
from elasticsearch import Elasticsearch, helpers, BadRequestError, NotFoundError, ConflictError
url, user, password, ca = sys.argv[1:5]
es = Elasticsearch(url, basic_auth=(user, password), ca_certs=ca, request_timeout=30)
out = {}
info = es.info()
out["version"] = info["version"]["number"]
es.indices.create(index="py-idx", settings={"number_of_shards": 2},
                  mappings={"properties": {"n": {"type": "long"}, "s": {"type": "keyword"}}})
def gen():
    for i in range(300):
        d = {"_index": "py-idx", "_id": str(i), "_source": {"n": i, "s": "ü-%d" % i, "nested": {"k": [i, i + 1]}}}
        if i % 5 == 0:
            d["_routing"] = "r%d" % (i % 3)
        yield d
ok, errors = helpers.bulk(es, gen(), chunk_size=64)
out["bulk_ok"] = ok
es.indices.refresh(index="py-idx")
out["count"] = es.count(index="py-idx")["count"]
scanned = {h["_id"]: h for h in helpers.scan(es, index="py-idx", size=50, query={"query": {"match_all": {}}})}
out["scan_docs"] = len(scanned)
out["scan_routing_20"] = scanned["20"].get("_routing")
out["scan_source_7"] = scanned["7"]["_source"]
pit = es.open_point_in_time(index="py-idx", keep_alive="1m")["id"]
seen, after, pages = [], None, 0
while True:
    kw = dict(size=70, sort=[{"_shard_doc": "asc"}], pit={"id": pit, "keep_alive": "1m"}, track_total_hits=False)
    if after is not None:
        kw["search_after"] = after
    r = es.search(**kw)
    hits = r["hits"]["hits"]
    if not hits:
        break
    pages += 1
    seen += [h["_id"] for h in hits]
    after = hits[-1]["sort"]
    pit = r.get("pit_id", pit)
out["pit_closed"] = es.close_point_in_time(id=pit)["succeeded"]
out["pit_docs"] = len(seen)
out["pit_unique"] = len(set(seen))
out["pit_pages"] = pages
try:
    es.indices.create(index="py-idx")
except BadRequestError as e:
    out["create_again"] = e.error
try:
    es.search(index="py-idx", from_=9990, size=20)
except BadRequestError as e:
    out["window"] = e.error
try:
    es.get(index="missing", id="1")
except NotFoundError as e:
    out["missing"] = e.error
try:
    es.index(index="py-idx", id="1", document={"n": 1}, op_type="create")
except ConflictError as e:
    out["conflict"] = e.error
out["get_routed"] = es.get(index="py-idx", id="5", routing="r2")["_routing"]
try:
    helpers.bulk(es, [{"_index": "py-idx", "_id": "bad", "_source": {"n": "abc"}}])
except helpers.BulkIndexError as e:
    out["bulk_error"] = e.errors[0]["index"]["error"]["type"]
out["exists"] = bool(es.indices.exists(index="py-idx"))
out["not_exists"] = bool(es.indices.exists(index="nope"))
print(json.dumps(out))
"#;

#[test]
fn official_python_client_over_https_with_auth() {
    let python = common::tool("venv/bin/python");
    let dir = tempfile::tempdir().unwrap();
    let emu = EmulatorBuilder::new()
        .tls_dir(dir.path())
        .auth("elastic", "changeme")
        .spawn()
        .unwrap();
    let script = dir.path().join("client.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let url = emu.url.clone();
    let out = Command::new(&python)
        .arg(&script)
        .args([url.as_str(), "elastic", "changeme"])
        .arg(dir.path().join("ca.crt"))
        .output()
        .expect("running python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).expect("script prints JSON");
    assert!(v["version"].as_str().unwrap().starts_with("8."));
    assert_eq!(v["bulk_ok"], 300);
    assert_eq!(v["count"], 300);
    assert_eq!(v["scan_docs"], 300);
    assert_eq!(v["scan_routing_20"], "r2");
    assert_eq!(
        v["scan_source_7"],
        serde_json::json!({"n": 7, "s": "ü-7", "nested": {"k": [7, 8]}})
    );
    assert_eq!(v["pit_docs"], 300);
    assert_eq!(v["pit_unique"], 300);
    assert_eq!(v["pit_pages"], 5, "300 documents in pages of 70");
    assert_eq!(v["pit_closed"], true);
    assert_eq!(v["create_again"], "resource_already_exists_exception");
    assert_eq!(v["window"], "search_phase_execution_exception");
    assert_eq!(v["missing"], "index_not_found_exception");
    assert_eq!(v["conflict"], "version_conflict_engine_exception");
    assert_eq!(v["get_routed"], "r2");
    assert_eq!(v["bulk_error"], "document_parsing_exception");
    assert_eq!(v["exists"], true);
    assert_eq!(v["not_exists"], false);

    // helpers.scan used scroll and cleared it.
    let reqs = emu.requests();
    assert!(reqs
        .iter()
        .any(|r| r.path == "/_search/scroll" && r.method == "DELETE"));
    assert!(reqs.iter().any(|r| r.path == "/py-idx/_pit"));
    let spec = SpecChecker::load_default();
    for r in &reqs {
        spec.check_logged(r)
            .unwrap_or_else(|e| panic!("the Python client sent a request outside the spec: {e}"));
    }
}
