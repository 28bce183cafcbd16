//! `kstash addon run|inspect` with the sample `http-fetch` addon against a local HTTP server.
#![cfg(feature = "addon")]

use std::path::PathBuf;

use bytes::Bytes;
use kstash_runtime::Digest;
use kstash_testkit::http::{HttpServer, Method, Request, StatusCode};

/// The sample addon, built by `scripts/build-addons.sh` (run here once if the module is missing).
fn http_fetch_module() -> PathBuf {
    kstash_testkit::addon_module("kstash_addon_http_fetch.wasm")
}

/// Serves `GET /data.json` and stores PUT/POST bodies (with their Authorization header).
async fn server() -> HttpServer {
    HttpServer::start(|req: Request| async move {
        if req.method == Method::GET && req.path == "/data.json" {
            (
                StatusCode::OK,
                Bytes::from_static(br#"{"indices":["logs","metrics"],"count":2}"#),
            )
        } else if req.method == Method::PUT || req.method == Method::POST {
            (StatusCode::OK, Bytes::from_static(b"ok"))
        } else {
            (StatusCode::NOT_FOUND, Bytes::from_static(b"no"))
        }
    })
    .await
}

async fn kstash(args: &[&str]) -> std::process::Output {
    kstash_testkit::output_async(env!("CARGO_BIN_EXE_kstash"), args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_fetch_backs_up_a_url_into_a_stream_and_restores_it() {
    let module = http_fetch_module();
    let module = module.to_str().unwrap();
    let server = server().await;
    let (url, uploads) = (server.url.clone(), server.uploads.clone());
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let pw = tmp.path().join("pw");
    std::fs::write(&pw, "open sesame\n").unwrap();

    let o = kstash(&[
        "addon",
        "run",
        "--module",
        module,
        "--task",
        "logical-backup",
        "--target-url",
        &url,
        "--param",
        "path=/data.json",
        "--param",
        "stream=dump/data.json",
        "--out-dir",
        out.to_str().unwrap(),
    ])
    .await;
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(out.join("dump/data.json")).unwrap(),
        r#"{"indices":["logs","metrics"],"count":2}"#
    );
    assert!(
        stdout.contains("stream dump/data.json: 40 bytes"),
        "{stdout}"
    );

    let o = kstash(&[
        "addon",
        "run",
        "--module",
        module,
        "--task",
        "logical-backup-restore",
        "--target-url",
        &url,
        "--username",
        "Aladdin",
        "--password-file",
        pw.to_str().unwrap(),
        "--param",
        "path=/restored",
        "--in-dir",
        out.to_str().unwrap(),
    ])
    .await;
    assert!(
        o.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let up = uploads.lock().unwrap();
    let (auth, body) = up.get("/restored/dump/data.json").expect("uploaded stream");
    assert_eq!(
        body.as_slice(),
        br#"{"indices":["logs","metrics"],"count":2}"#
    );
    // RFC 7617: Aladdin / open sesame. Attached by the host, not the addon.
    assert_eq!(auth, "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_prints_the_description_and_digest() {
    let module = http_fetch_module();
    let digest = Digest::of(&std::fs::read(&module).unwrap());
    let o = kstash(&["addon", "inspect", module.to_str().unwrap()]).await;
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.contains(&format!("digest:     {digest}")),
        "{stdout}"
    );
    assert!(stdout.contains("name:       http-fetch"), "{stdout}");
    assert!(stdout.contains("logical-backup (backup)"), "{stdout}");
    assert!(
        stdout.contains("logical-backup-restore (restore)"),
        "{stdout}"
    );
    assert!(stdout.contains("--param path=<text>  required"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_digest_missing_param_and_bad_param_are_refused_clearly() {
    let module = http_fetch_module();
    let module = module.to_str().unwrap();
    let actual = Digest::of(&std::fs::read(module).unwrap());
    let pinned = format!("sha256:{}", "0".repeat(64));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let base = [
        "addon",
        "run",
        "--module",
        module,
        "--task",
        "logical-backup",
        "--target-url",
        "http://127.0.0.1:9",
        "--out-dir",
        dir,
    ];

    let mut args = base.to_vec();
    args.extend(["--digest", &pinned, "--param", "path=/x"]);
    let o = kstash(&args).await;
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains(&pinned) && stderr.contains(&actual.to_string()),
        "{stderr}"
    );

    let o = kstash(&base).await;
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(stderr.contains("--param path=...: required"), "{stderr}");

    let mut args = base.to_vec();
    args.extend(["--param", "path=/x", "--param", "colour=blue"]);
    let o = kstash(&args).await;
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(stderr.contains("unknown parameter `colour`"), "{stderr}");
}
