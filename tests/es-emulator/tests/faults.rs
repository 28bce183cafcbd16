//! Fault injection happens at the configured rates, deterministically per seed, and is
//! visible in the counters and the request log.

use std::time::Instant;

use bytes::Bytes;
use http::Method;
use kstash_es_emulator::client::EsClient;
use kstash_es_emulator::{EmulatorBuilder, Faults, LoggedRequest};
use serde_json::{json, Value};

/// Binomial tolerance: 5 standard deviations.
fn within(observed: u64, n: u64, p: f64) -> bool {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    (observed as f64 - mean).abs() <= 5.0 * sd
}

async fn statuses(seed: u64, n: usize) -> (Vec<u16>, kstash_es_emulator::Stats, Vec<Value>) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.jsonl");
    let emu = EmulatorBuilder::new()
        .faults(Faults {
            rate_429: 0.2,
            rate_5xx: 0.1,
            seed,
            ..Faults::default()
        })
        .request_log(&log)
        .start()
        .await
        .unwrap();
    let c = EsClient::new(&emu.url, None, None).unwrap();
    let mut out = Vec::new();
    for _ in 0..n {
        let (s, v) = c.json(Method::GET, "/_cluster/health", None).await.unwrap();
        if s == 429 {
            assert_eq!(v["error"]["type"], "es_rejected_execution_exception");
        }
        if s == 503 {
            assert_eq!(v["status"], 503);
        }
        out.push(s);
    }
    let lines = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (out, emu.stats(), lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_rates_match_configuration_and_are_deterministic() {
    let n = 1000;
    let (a, stats, log) = statuses(7, n).await;
    let c429 = a.iter().filter(|s| **s == 429).count() as u64;
    let c503 = a.iter().filter(|s| **s == 503).count() as u64;
    let c200 = a.iter().filter(|s| **s == 200).count() as u64;
    assert_eq!(c429 + c503 + c200, n as u64);
    assert!(within(c429, n as u64, 0.2), "429s: {c429} of {n}");
    assert!(within(c503, n as u64, 0.1), "503s: {c503} of {n}");
    assert_eq!(
        (stats.injected_429, stats.injected_5xx, stats.requests),
        (c429, c503, n as u64)
    );
    let logged_429 = log
        .iter()
        .filter(|l| l["fault"] == "429" && l["status"] == 429)
        .count() as u64;
    let logged_5xx = log
        .iter()
        .filter(|l| l["fault"] == "5xx" && l["status"] == 503)
        .count() as u64;
    assert_eq!((logged_429, logged_5xx), (c429, c503));
    let (b, _, _) = statuses(7, n).await;
    assert_eq!(a, b, "the same seed gives the same fault sequence");
    let (other, _, _) = statuses(8, n).await;
    assert_ne!(a, other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_and_delays() {
    let emu = EmulatorBuilder::new()
        .faults(Faults {
            drop_rate: 0.3,
            seed: 3,
            ..Faults::default()
        })
        .start()
        .await
        .unwrap();
    let c = EsClient::new(&emu.url, None, None).unwrap();
    let n = 300u64;
    let mut failed = 0u64;
    for i in 0..n {
        let body = json!({"n": i});
        match c
            .request(
                Method::PUT,
                &format!("/d/_doc/{i}"),
                Some((Bytes::from(body.to_string()), "application/json")),
            )
            .await
        {
            Ok((s, raw)) => {
                assert!(s == 200 || s == 201);
                assert!(serde_json::from_slice::<Value>(&raw).is_ok());
            }
            Err(_) => failed += 1,
        }
    }
    assert!(within(failed, n, 0.3), "dropped: {failed} of {n}");
    assert_eq!(emu.stats().dropped, failed);
    // A dropped response still happened on the server: every write was applied.
    assert_eq!(emu.api().store().indices["d"].doc_count(), n as usize);

    let slow = EmulatorBuilder::new()
        .faults(Faults {
            delay_ms: 60,
            ..Faults::default()
        })
        .start()
        .await
        .unwrap();
    let c = EsClient::new(&slow.url, None, None).unwrap();
    let t = Instant::now();
    for _ in 0..5 {
        c.request(Method::GET, "/", None).await.unwrap();
    }
    assert!(t.elapsed().as_millis() >= 300);
    assert_eq!(slow.stats().delayed, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_can_be_limited_to_some_paths() {
    let emu = EmulatorBuilder::new()
        .faults(Faults {
            rate_429: 1.0,
            paths: vec!["/_search".into()],
            ..Faults::default()
        })
        .start()
        .await
        .unwrap();
    let c = EsClient::new(&emu.url, None, None).unwrap();
    assert_eq!(c.json(Method::GET, "/", None).await.unwrap().0, 200);
    assert_eq!(c.json(Method::PUT, "/p", None).await.unwrap().0, 200);
    assert_eq!(
        c.json(Method::POST, "/p/_search", None).await.unwrap().0,
        429
    );
    assert_eq!(
        c.json(Method::POST, "/_search/scroll", None)
            .await
            .unwrap()
            .0,
        429
    );
    assert_eq!(emu.stats().injected_429, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_item_429s_are_reported_and_not_applied() {
    let emu = EmulatorBuilder::new()
        .faults(Faults {
            bulk_item_429_rate: 0.25,
            seed: 11,
            ..Faults::default()
        })
        .start()
        .await
        .unwrap();
    let c = EsClient::new(&emu.url, None, None).unwrap();
    let mut body = String::new();
    for i in 0..400 {
        body.push_str(&format!(
            "{{\"index\":{{\"_index\":\"b\",\"_id\":\"{i}\"}}}}\n{{\"i\":{i}}}\n"
        ));
    }
    let (s, raw) = c
        .request(
            Method::POST,
            "/_bulk",
            Some((Bytes::from(body), "application/x-ndjson")),
        )
        .await
        .unwrap();
    assert_eq!(s, 200);
    let v: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(v["errors"], true);
    let items = v["items"].as_array().unwrap();
    let rejected: Vec<&Value> = items
        .iter()
        .filter(|i| i["index"]["status"] == 429)
        .collect();
    assert!(
        within(rejected.len() as u64, 400, 0.25),
        "item 429s: {}",
        rejected.len()
    );
    assert_eq!(
        rejected[0]["index"]["error"]["type"],
        "es_rejected_execution_exception"
    );
    assert_eq!(emu.stats().bulk_item_429, rejected.len() as u64);
    let (_, v) = c.json(Method::GET, "/b/_count", None).await.unwrap();
    assert_eq!(v["count"], json!(400 - rejected.len()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_scroll_answer_has_advanced_the_scroll() {
    let emu = EmulatorBuilder::new()
        .faults(Faults {
            scroll_lost_answer_every: 2,
            ..Faults::default()
        })
        .start()
        .await
        .unwrap();
    let c = EsClient::new(&emu.url, None, None).unwrap();
    let mut bulk = String::new();
    for i in 0..10 {
        bulk.push_str(&format!(
            "{{\"index\":{{\"_index\":\"s\",\"_id\":\"d{i}\"}}}}\n{{\"i\":{i}}}\n"
        ));
    }
    let (s, _) = c
        .request(
            Method::POST,
            "/_bulk?refresh=true",
            Some((Bytes::from(bulk), "application/x-ndjson")),
        )
        .await
        .unwrap();
    assert_eq!(s, 200);
    let ids = |v: &Value| -> Vec<String> {
        v["hits"]["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["_id"].as_str().unwrap().to_string())
            .collect()
    };
    let (s, first) = c
        .json(
            Method::POST,
            "/s/_search?scroll=1m",
            Some(&json!({"size": 3, "sort": ["_doc"]})),
        )
        .await
        .unwrap();
    assert_eq!(s, 200);
    let id = first["_scroll_id"].as_str().unwrap().to_string();
    let next = json!({"scroll": "1m", "scroll_id": id});
    let mut seen = ids(&first);
    let (s, second) = c
        .json(Method::POST, "/_search/scroll", Some(&next))
        .await
        .unwrap();
    assert_eq!(s, 200);
    seen.extend(ids(&second));
    // The second continuation is handled, then its connection closes without an answer.
    assert!(c
        .json(Method::POST, "/_search/scroll", Some(&next))
        .await
        .is_err());
    assert_eq!(emu.stats().lost_answers, 1);
    // Asking again with the same id gives the page after the lost one: three documents are gone.
    let (s, fourth) = c
        .json(Method::POST, "/_search/scroll", Some(&next))
        .await
        .unwrap();
    assert_eq!(s, 200);
    seen.extend(ids(&fourth));
    assert_eq!(seen.len(), 7, "{seen:?}");
    let logged: Vec<LoggedRequest> = emu.requests();
    let lost: Vec<&LoggedRequest> = logged
        .iter()
        .filter(|l| l.fault.as_deref() == Some("lost-answer"))
        .collect();
    assert_eq!(lost.len(), 1);
    assert_eq!(
        (lost[0].path.as_str(), lost[0].status),
        ("/_search/scroll", 200)
    );
    // Other requests never lose their answer.
    for _ in 0..3 {
        assert_eq!(c.json(Method::GET, "/s/_count", None).await.unwrap().0, 200);
    }
}
