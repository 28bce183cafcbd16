//! The REST subset over real HTTP(S), with expectations taken from Elasticsearch 8's documented
//! behaviour (see shared/reference/es-backup-format.md §8), and every request checked against
//! Elastic's REST API spec.

use bytes::Bytes;
use http::Method;
use kstash_es_emulator::client::{pit_scan, EsClient};
use kstash_es_emulator::spec::SpecChecker;
use kstash_es_emulator::{EmulatorBuilder, Seed};
use serde_json::{json, Value};

async fn call(c: &EsClient, m: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    c.json(m, path, body.as_ref()).await.expect("request")
}

fn assert_error(v: &Value, status: u16, kind: &str) {
    assert_eq!(v["status"], json!(status), "{v}");
    assert_eq!(v["error"]["type"], json!(kind), "{v}");
    assert!(
        v["error"]["root_cause"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{v}"
    );
    assert!(v["error"]["reason"].is_string(), "{v}");
}

fn ndjson(lines: &[Value]) -> Bytes {
    let mut s = String::new();
    for l in lines {
        s.push_str(&l.to_string());
        s.push('\n');
    }
    Bytes::from(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_lifecycle_bulk_search_scroll_pit_and_errors() {
    let emu = EmulatorBuilder::new().start().await.unwrap();
    let c = EsClient::new(&emu.url, None, None).unwrap();

    // Info: product header and an 8.x version.
    let (status, raw) = c.request(Method::GET, "/", None).await.unwrap();
    assert_eq!(status, 200);
    let info: Value = serde_json::from_slice(&raw).unwrap();
    assert!(info["version"]["number"]
        .as_str()
        .unwrap()
        .starts_with("8."));
    assert_eq!(info["version"]["build_flavor"], "default");
    assert_eq!(info["tagline"], "You Know, for Search");

    // Create: acknowledged response; settings come back as strings with generated keys.
    let (s, v) = call(
        &c,
        Method::PUT,
        "/books",
        Some(json!({
            "settings": {"number_of_shards": 3, "number_of_replicas": 0},
            "mappings": {"properties": {"title": {"type": "text"}, "year": {"type": "long"}}}
        })),
    )
    .await;
    assert_eq!(
        (s, v.clone()),
        (
            200,
            json!({"acknowledged": true, "shards_acknowledged": true, "index": "books"})
        )
    );
    let (s, v) = call(&c, Method::PUT, "/books", None).await;
    assert_eq!(s, 400);
    assert_error(&v, 400, "resource_already_exists_exception");
    let (_, v) = call(&c, Method::GET, "/books/_settings", None).await;
    let idx = &v["books"]["settings"]["index"];
    assert_eq!(idx["number_of_shards"], "3");
    assert_eq!(idx["number_of_replicas"], "0");
    assert_eq!(idx["provided_name"], "books");
    assert!(
        idx["uuid"].is_string()
            && idx["creation_date"].is_string()
            && idx["version"]["created"].is_string()
    );
    let (s, _) = c.request(Method::HEAD, "/books", None).await.unwrap();
    assert_eq!(s, 200);
    let (s, _) = c.request(Method::HEAD, "/nope", None).await.unwrap();
    assert_eq!(s, 404);
    let (s, v) = call(&c, Method::GET, "/nope/_mapping", None).await;
    assert_eq!(s, 404);
    assert_error(&v, 404, "index_not_found_exception");
    assert_eq!(v["error"]["index"], "nope");
    let (s, v) = call(&c, Method::PUT, "/Bad", None).await;
    assert_eq!(s, 400);
    assert_error(&v, 400, "invalid_index_name_exception");
    let (s, v) = call(
        &c,
        Method::PUT,
        "/x1",
        Some(json!({"settings": {"index": {"version": {"created": "7100099"}}}})),
    )
    .await;
    assert_eq!(s, 400);
    assert!(v["error"]["reason"]
        .as_str()
        .unwrap()
        .contains("private index setting [index.version.created]"));

    // Bulk: per-item results in order, errors flag, 409 for create on an existing id.
    let mut lines = Vec::new();
    for i in 0..250 {
        let mut meta = json!({"_index": "books", "_id": i.to_string()});
        if i % 10 == 0 {
            meta["routing"] = json!(format!("r{}", i % 3));
        }
        lines.push(json!({"index": meta}));
        lines.push(json!({"title": format!("Bücher {i}"), "year": 1900 + i}));
    }
    let (s, raw) = c
        .request(
            Method::POST,
            "/_bulk",
            Some((ndjson(&lines), "application/x-ndjson")),
        )
        .await
        .unwrap();
    assert_eq!(s, 200);
    let v: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(v["errors"], false);
    assert_eq!(v["items"].as_array().unwrap().len(), 250);
    assert_eq!(v["items"][7]["index"]["status"], 201);
    assert_eq!(v["items"][7]["index"]["result"], "created");
    assert_eq!(v["items"][7]["index"]["_id"], "7");
    let mixed = ndjson(&[
        json!({"create": {"_index": "books", "_id": "1"}}),
        json!({"title": "dup"}),
        json!({"index": {"_index": "books", "_id": "bad"}}),
        json!({"year": "not a number"}),
        json!({"update": {"_index": "books", "_id": "2"}}),
        json!({"doc": {"title": "updated"}}),
        json!({"delete": {"_index": "books", "_id": "3"}}),
        json!({"delete": {"_index": "books", "_id": "missing"}}),
    ]);
    let (_, raw) = c
        .request(
            Method::PUT,
            "/books/_bulk",
            Some((mixed, "application/x-ndjson")),
        )
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(v["errors"], true);
    assert_eq!(v["items"][0]["create"]["status"], 409);
    assert_eq!(
        v["items"][0]["create"]["error"]["type"],
        "version_conflict_engine_exception"
    );
    assert_eq!(v["items"][1]["index"]["status"], 400);
    assert_eq!(
        v["items"][1]["index"]["error"]["type"],
        "document_parsing_exception"
    );
    assert_eq!(v["items"][2]["update"]["result"], "updated");
    assert_eq!(v["items"][3]["delete"]["result"], "deleted");
    assert_eq!(v["items"][4]["delete"]["status"], 404);
    assert_eq!(v["items"][4]["delete"]["result"], "not_found");
    let (s, raw) = c
        .request(
            Method::POST,
            "/_bulk",
            Some((
                Bytes::from_static(b"{\"index\":{\"_index\":\"books\"}}\n{}"),
                "application/x-ndjson",
            )),
        )
        .await
        .unwrap();
    assert_eq!(s, 400);
    assert!(String::from_utf8_lossy(&raw).contains("must be terminated by a newline"));

    // Count, refresh, single-document APIs with routing.
    let (_, v) = call(&c, Method::POST, "/books/_refresh", None).await;
    assert_eq!(v["_shards"]["successful"], 3);
    let (_, v) = call(&c, Method::GET, "/books/_count", None).await;
    assert_eq!(v["count"], 249);
    let (s, v) = call(&c, Method::POST, "/books/_count", Some(json!({"size": 1}))).await;
    assert_eq!(s, 400);
    assert_error(&v, 400, "parsing_exception");
    let (s, v) = call(&c, Method::GET, "/books/_doc/20?routing=r2", None).await;
    assert_eq!(s, 200);
    assert_eq!(
        (v["found"].clone(), v["_routing"].clone()),
        (json!(true), json!("r2"))
    );
    assert_eq!(v["_source"]["title"], "Bücher 20");
    let (s, v) = call(
        &c,
        Method::PUT,
        "/books/_doc/new",
        Some(json!({"title": "n", "year": 1})),
    )
    .await;
    assert_eq!((s, v["result"].clone()), (201, json!("created")));
    let (s, v) = call(
        &c,
        Method::PUT,
        "/books/_doc/new?op_type=create",
        Some(json!({"title": "n"})),
    )
    .await;
    assert_eq!(s, 409);
    assert_error(&v, 409, "version_conflict_engine_exception");
    let (s, v) = call(&c, Method::DELETE, "/books/_doc/new", None).await;
    assert_eq!((s, v["result"].clone()), (200, json!("deleted")));
    let (s, v) = call(&c, Method::GET, "/books/_doc/new", None).await;
    assert_eq!((s, v["found"].clone()), (404, json!(false)));

    // Search: routing is returned, result window enforced, track_total_hits semantics.
    let (_, v) = call(
        &c,
        Method::POST,
        "/books/_search",
        Some(json!({"query": {"ids": {"values": ["10"]}}})),
    )
    .await;
    assert_eq!(v["hits"]["hits"][0]["_routing"], "r1");
    assert_eq!(v["hits"]["total"], json!({"value": 1, "relation": "eq"}));
    let (s, v) = call(
        &c,
        Method::POST,
        "/books/_search",
        Some(json!({"from": 9990, "size": 20})),
    )
    .await;
    assert_eq!(s, 400);
    assert_error(&v, 400, "search_phase_execution_exception");
    assert!(v["error"]["root_cause"][0]["reason"].as_str().unwrap().contains("Result window is too large, from + size must be less than or equal to: [10000] but was [10010]"));
    let (_, v) = call(
        &c,
        Method::POST,
        "/books/_search",
        Some(json!({"size": 0, "track_total_hits": 100})),
    )
    .await;
    assert_eq!(v["hits"]["total"], json!({"value": 100, "relation": "gte"}));
    let (_, v) = call(
        &c,
        Method::POST,
        "/books/_search",
        Some(json!({"size": 0, "track_total_hits": false})),
    )
    .await;
    assert!(v["hits"].get("total").is_none());
    let (s, v) = call(
        &c,
        Method::POST,
        "/books/_search",
        Some(json!({"sort": ["_shard_doc"]})),
    )
    .await;
    assert_eq!(s, 400);
    assert!(v["error"]["reason"]
        .as_str()
        .unwrap()
        .contains("[_shard_doc] sort field cannot be used without [point in time]"));
    let (_, v) = call(
        &c,
        Method::POST,
        "/books/_search",
        Some(json!({"sort": [{"year": "desc"}], "size": 3})),
    )
    .await;
    let years: Vec<i64> = v["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["sort"][0].as_i64().unwrap())
        .collect();
    assert_eq!(years, [2149, 2148, 2147]);

    // Scroll: from=0 accepted, pages until empty, then clear; a cleared id is 404.
    let (s, v) = call(
        &c,
        Method::GET,
        "/books/_search?scroll=1m&from=0",
        Some(json!({"size": 100, "query": {"match_all": {}}})),
    )
    .await;
    assert_eq!(s, 200);
    let mut sid = v["_scroll_id"].as_str().unwrap().to_string();
    let mut seen = v["hits"]["hits"].as_array().unwrap().len();
    assert_eq!(v["hits"]["total"]["value"], 249);
    loop {
        let (_, v) = call(
            &c,
            Method::POST,
            "/_search/scroll",
            Some(json!({"scroll": "1m", "scroll_id": sid})),
        )
        .await;
        let n = v["hits"]["hits"].as_array().unwrap().len();
        if n == 0 {
            break;
        }
        seen += n;
        sid = v["_scroll_id"].as_str().unwrap().to_string();
    }
    assert_eq!(seen, 249);
    let (s, v) = call(
        &c,
        Method::DELETE,
        "/_search/scroll",
        Some(json!({"scroll_id": [sid.clone()]})),
    )
    .await;
    assert_eq!((s, v), (200, json!({"succeeded": true, "num_freed": 1})));
    let (s, v) = call(
        &c,
        Method::POST,
        "/_search/scroll",
        Some(json!({"scroll": "1m", "scroll_id": sid})),
    )
    .await;
    assert_eq!(s, 404);
    assert_error(&v, 404, "search_context_missing_exception");
    let (s, v) = call(&c, Method::GET, "/books/_search?scroll=1m&from=5", None).await;
    assert_eq!(s, 400);
    assert!(v["error"]["reason"]
        .as_str()
        .unwrap()
        .contains("using [from] is not allowed in a scroll context"));

    // PIT: frozen view, index in the path rejected, sliced paging covers everything once.
    let (_, v) = call(&c, Method::POST, "/books/_pit?keep_alive=1m", None).await;
    let pit = v["id"].as_str().unwrap().to_string();
    call(
        &c,
        Method::PUT,
        "/books/_doc/late",
        Some(json!({"title": "after pit"})),
    )
    .await;
    let (s, v) = call(
        &c,
        Method::POST,
        "/books/_search",
        Some(json!({"pit": {"id": pit}})),
    )
    .await;
    assert_eq!(s, 400);
    assert!(v["error"]["reason"]
        .as_str()
        .unwrap()
        .contains("[indices] cannot be used with point in time"));
    let mut ids = std::collections::BTreeSet::new();
    for slice in 0..2 {
        let mut after: Option<Value> = None;
        loop {
            let mut body = json!({"size": 40, "slice": {"id": slice, "max": 2}, "sort": [{"_shard_doc": "asc"}], "pit": {"id": pit, "keep_alive": "1m"}});
            if let Some(a) = &after {
                body["search_after"] = a.clone();
            }
            let (s, v) = call(&c, Method::POST, "/_search", Some(body)).await;
            assert_eq!(s, 200, "{v}");
            assert_eq!(v["pit_id"], json!(pit));
            let hits = v["hits"]["hits"].as_array().unwrap();
            if hits.is_empty() {
                break;
            }
            for h in hits {
                assert!(
                    ids.insert(h["_id"].as_str().unwrap().to_string()),
                    "duplicate {}",
                    h["_id"]
                );
                assert!(h["sort"].is_array());
            }
            after = Some(hits.last().unwrap()["sort"].clone());
        }
    }
    assert_eq!(
        ids.len(),
        249,
        "documents indexed after the PIT opened are invisible to it"
    );
    assert!(!ids.contains("late"));
    let (s, v) = call(&c, Method::DELETE, "/_pit", Some(json!({"id": pit}))).await;
    assert_eq!((s, v), (200, json!({"succeeded": true, "num_freed": 1})));
    let (s, _) = call(&c, Method::DELETE, "/_pit", Some(json!({"id": pit}))).await;
    assert_eq!(s, 404);
    let report = pit_scan(&c, "books", 64).await.unwrap();
    assert_eq!(report.docs, 250);

    // Delete: aliases and wildcards are refused, missing is 404 unless ignore_unavailable.
    call(&c, Method::PUT, "/books/_alias/library", None).await;
    let (s, _) = call(&c, Method::DELETE, "/library", None).await;
    assert_eq!(s, 400);
    let (s, _) = call(&c, Method::DELETE, "/books*", None).await;
    assert_eq!(s, 400);
    let (s, _) = call(
        &c,
        Method::DELETE,
        "/books,ghost?ignore_unavailable=true",
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = call(&c, Method::DELETE, "/books", None).await;
    assert_eq!(s, 404);

    let spec = SpecChecker::load_default();
    for r in emu.requests() {
        spec.check_logged(&r)
            .unwrap_or_else(|e| panic!("request outside the spec: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_aliases_cat_and_health() {
    let emu = EmulatorBuilder::new()
        .seed(Seed {
            docs: 90,
            indices: 3,
            large_doc_bytes: 4096,
            seed: 1,
        })
        .start()
        .await
        .unwrap();
    let c = EsClient::new(&emu.url, None, None).unwrap();

    // Seeded legacy template applies to logs-*: 2 shards and the all-logs alias.
    let (_, v) = call(&c, Method::GET, "/_template/*", None).await;
    assert_eq!(v["seed_logs"]["index_patterns"], json!(["logs-*"]));
    assert_eq!(v["seed_logs"]["settings"]["index"]["number_of_shards"], "2");
    let (_, v) = call(&c, Method::GET, "/logs-000/_alias/*", None).await;
    assert_eq!(v, json!({"logs-000": {"aliases": {"all-logs": {}}}}));
    let (_, v) = call(&c, Method::GET, "/events-002/_alias/*", None).await;
    assert_eq!(
        v,
        json!({}),
        "an index without aliases gives {{}} (what elasticdump's alias dump sees)"
    );
    let (s, v) = call(&c, Method::GET, "/_alias/ghost", None).await;
    assert_eq!(
        (s, v["error"].clone()),
        (404, json!("alias [ghost] missing"))
    );
    let (_, v) = call(&c, Method::GET, "/_aliases", None).await;
    assert_eq!(v.as_object().unwrap().len(), 3);
    let (_, v) = call(
        &c,
        Method::GET,
        "/users-001/_doc/user-4?routing=tenant-4",
        None,
    )
    .await;
    assert_eq!(v["_routing"], "tenant-4");

    // Composable templates with a component template.
    let (s, v) = call(
        &c,
        Method::PUT,
        "/_index_template/t1",
        Some(json!({"index_patterns": ["metrics-*"], "composed_of": ["nope"]})),
    )
    .await;
    assert_eq!(s, 400);
    assert_error(&v, 400, "invalid_index_template_exception");
    let (s, _) = call(
        &c,
        Method::PUT,
        "/_component_template/c1",
        Some(json!({"template": {"mappings": {"properties": {"host": {"type": "keyword"}}}}})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = call(&c, Method::PUT, "/_index_template/t1", Some(json!({"index_patterns": ["metrics-*"], "composed_of": ["c1"], "priority": 10, "template": {"settings": {"number_of_shards": 2}, "aliases": {"metrics": {}}}}))).await;
    assert_eq!(s, 200);
    call(&c, Method::PUT, "/metrics-a", None).await;
    let (_, v) = call(&c, Method::GET, "/metrics-a", None).await;
    assert_eq!(
        v["metrics-a"]["mappings"]["properties"]["host"]["type"],
        "keyword"
    );
    assert_eq!(v["metrics-a"]["settings"]["index"]["number_of_shards"], "2");
    assert!(v["metrics-a"]["aliases"]["metrics"].is_object());
    let (_, v) = call(&c, Method::GET, "/_index_template/t1", None).await;
    assert_eq!(v["index_templates"][0]["name"], "t1");
    let (_, v) = call(&c, Method::GET, "/_component_template/c1", None).await;
    assert_eq!(v["component_templates"][0]["name"], "c1");
    let (s, v) = call(&c, Method::GET, "/_index_template/none", None).await;
    assert_eq!(s, 404);
    assert_error(&v, 404, "resource_not_found_exception");

    // _aliases actions.
    let (s, v) = call(&c, Method::POST, "/_aliases", Some(json!({"actions": []}))).await;
    assert_eq!(s, 400);
    assert_error(&v, 400, "action_request_validation_exception");
    let (s, _) = call(
        &c,
        Method::POST,
        "/_aliases",
        Some(json!({"actions": [
            {"add": {"index": "events-002", "alias": "ev", "routing": "1"}},
            {"remove": {"index": "logs-000", "alias": "all-logs"}}
        ]})),
    )
    .await;
    assert_eq!(s, 200);
    let (_, v) = call(&c, Method::GET, "/_alias/ev", None).await;
    assert_eq!(
        v["events-002"]["aliases"]["ev"],
        json!({"index_routing": "1", "search_routing": "1"})
    );
    let (_, v) = call(&c, Method::GET, "/ev/_count", None).await;
    assert_eq!(v["count"], 30);

    // _cat/indices json and text, health.
    let (_, v) = call(&c, Method::GET, "/_cat/indices?format=json&s=index", None).await;
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0]["index"], "events-002");
    assert_eq!(rows[0]["docs.count"], "30");
    assert_eq!(rows[0]["health"], "green");
    let (_, raw) = c
        .request(
            Method::GET,
            "/_cat/indices?v&h=index,docs.count&s=index",
            None,
        )
        .await
        .unwrap();
    let text = String::from_utf8(raw.to_vec()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["index", "docs.count"]
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["events-002", "30"]
    );
    let (_, v) = call(&c, Method::GET, "/_cluster/health", None).await;
    assert_eq!(v["status"], "green");
    assert_eq!(v["number_of_nodes"], 1);

    // Mapping updates merge; type changes are refused.
    let (s, _) = call(
        &c,
        Method::PUT,
        "/metrics-a/_mapping",
        Some(json!({"properties": {"cpu": {"type": "float"}}})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, v) = call(
        &c,
        Method::PUT,
        "/metrics-a/_mapping",
        Some(json!({"properties": {"host": {"type": "long"}}})),
    )
    .await;
    assert_eq!(s, 400);
    assert_error(&v, 400, "illegal_argument_exception");
    let (_, v) = call(&c, Method::GET, "/metrics-a/_mapping", None).await;
    assert_eq!(
        v["metrics-a"]["mappings"]["properties"]["cpu"]["type"],
        "float"
    );

    let spec = SpecChecker::load_default();
    for r in emu.requests() {
        if r.method == "GET" && r.path == "/_aliases" {
            continue; // served by Elasticsearch's RestGetAliasesAction, absent from the spec (see docs)
        }
        spec.check_logged(&r)
            .unwrap_or_else(|e| panic!("request outside the spec: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_basic_auth_and_product_header() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("requests.jsonl");
    let emu = EmulatorBuilder::new()
        .tls_dir(dir.path())
        .auth("elastic", "s3cret")
        .request_log(&log)
        .start()
        .await
        .unwrap();
    assert!(emu.url.starts_with("https://127.0.0.1:"));
    let ca = std::fs::read_to_string(dir.path().join("ca.crt")).unwrap();
    assert_eq!(Some(&ca), emu.ca_pem.as_ref());

    let anon = EsClient::new(&emu.url, None, Some(&ca)).unwrap();
    let (s, v) = call(&anon, Method::GET, "/", None).await;
    assert_eq!(s, 401);
    assert_error(&v, 401, "security_exception");
    let wrong = EsClient::new(&emu.url, Some(("elastic", "nope")), Some(&ca)).unwrap();
    assert_eq!(call(&wrong, Method::GET, "/", None).await.0, 401);
    let good = EsClient::new(
        &emu.url.replace("127.0.0.1", "localhost"),
        Some(("elastic", "s3cret")),
        Some(&ca),
    )
    .unwrap();
    let (s, v) = call(&good, Method::GET, "/_cluster/health", None).await;
    assert_eq!((s, v["status"].clone()), (200, json!("green")));

    let lines: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2]["method"], "GET");
    assert_eq!(lines[2]["path"], "/_cluster/health");
    assert_eq!(lines[2]["status"], 200);
    assert!(lines[2]["query"].is_object());
}

#[test]
fn spec_checker_rejects_wrong_requests() {
    let spec = SpecChecker::load_default();
    let ok = spec
        .check("POST", "/logs-a/_search?scroll=10m&from=0", [])
        .unwrap();
    assert_eq!(ok.endpoint, "search");
    assert_eq!(
        spec.check("GET", "/_search/scroll", []).unwrap().endpoint,
        "scroll"
    );
    assert_eq!(
        spec.check("DELETE", "/a%2Cb", ["ignore_unavailable"])
            .unwrap()
            .endpoint,
        "indices.delete"
    );
    assert_eq!(
        spec.check("PUT", "/my-index/_mapping", [])
            .unwrap()
            .endpoint,
        "indices.put_mapping"
    );
    assert_eq!(
        spec.check("GET", "/_mapping", []).unwrap().endpoint,
        "indices.get_mapping"
    );
    // Wrong method on a known path.
    let e = spec.check("GET", "/_bulk", []).unwrap_err();
    assert!(
        matches!(
            e,
            kstash_es_emulator::spec::SpecError::MethodNotAllowed { .. }
        ),
        "{e}"
    );
    // PIT is opened with POST only.
    assert!(spec.check("GET", "/idx/_pit", ["keep_alive"]).is_err());
    // Undocumented query parameter.
    let e = spec.check("POST", "/idx/_search", ["scrol"]).unwrap_err();
    assert!(e.to_string().contains("[scrol]"), "{e}");
    // Unknown path.
    assert!(spec.check("GET", "/idx/_stats/x/y/z", []).is_err());
    // The bulk {index} part takes one index, not a list.
    assert!(spec.check("POST", "/a,b/_bulk", []).is_err());
    // Common parameters are accepted everywhere.
    assert!(spec.check("GET", "/", ["pretty", "filter_path"]).is_ok());
}
