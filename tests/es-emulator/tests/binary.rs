//! The `kstash-es-emulator` binary: prints its URL once ready, serves HTTPS with the CA it writes,
//! seeds data, writes the request log, and refuses bad options with their name.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use http::Method;
use kstash_es_emulator::client::EsClient;
use kstash_testkit::ChildGuard;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_seeded_https_with_auth() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("req.jsonl");
    let mut child = ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_kstash-es-emulator"))
            .args(["--listen", "127.0.0.1:0", "--user", "u", "--password", "p"])
            .args([
                "--seed-docs",
                "60",
                "--seed-indices",
                "3",
                "--seed-large-doc-bytes",
                "1000",
            ])
            .arg("--tls-dir")
            .arg(dir.path())
            .arg("--request-log")
            .arg(&log)
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the binary"),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let ca = std::fs::read_to_string(dir.path().join("ca.crt")).unwrap();
    let c = EsClient::new(url, Some(("u", "p")), Some(&ca)).unwrap();
    let (s, v) = c
        .json(
            Method::GET,
            "/_cat/indices?format=json&h=index,docs.count&s=index",
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, 200);
    assert_eq!(
        v,
        serde_json::json!([
            {"index": "events-002", "docs.count": "20"},
            {"index": "logs-000", "docs.count": "20"},
            {"index": "users-001", "docs.count": "20"}
        ])
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("\"path\":\"/_cat/indices\""), "{logged}");
}

#[test]
fn bad_fault_rate_is_refused_with_its_name() {
    let out = Command::new(env!("CARGO_BIN_EXE_kstash-es-emulator"))
        .args(["--listen", "127.0.0.1:0", "--fault-429-rate", "1.5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rate_429 must be within [0, 1], got 1.5"),
        "{err}"
    );
}
