//! `kstash addon run|inspect` with the sample `http-fetch` addon against a local HTTP server.
#![cfg(feature = "addon")]

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use kstash_runtime::Digest;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The sample addon, built by `scripts/build-addons.sh` (run here once if the module is missing).
fn http_fetch_module() -> PathBuf {
    let root = repo_root();
    let path = root.join("addons/target/wasm32-wasip2/release/kstash_addon_http_fetch.wasm");
    if !path.is_file() {
        let ok = std::process::Command::new("bash")
            .arg(root.join("scripts/build-addons.sh"))
            .arg("-q")
            .status()
            .expect("run scripts/build-addons.sh")
            .success();
        assert!(ok, "scripts/build-addons.sh failed");
    }
    assert!(path.is_file(), "{} missing", path.display());
    path
}

type Uploads = Arc<Mutex<HashMap<String, (String, Vec<u8>)>>>;

/// Serves `GET /data.json` and stores PUT/POST bodies (with their Authorization header).
async fn server() -> (String, Uploads, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let uploads: Uploads = Arc::default();
    let up = uploads.clone();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let up = up.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let up = up.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            let auth = req
                                .headers()
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_string();
                            let method = req.method().clone();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let resp = if method == hyper::Method::GET && path == "/data.json" {
                                hyper::Response::new(Full::new(Bytes::from_static(
                                    br#"{"indices":["logs","metrics"],"count":2}"#,
                                )))
                            } else if method == hyper::Method::PUT || method == hyper::Method::POST
                            {
                                up.lock().unwrap().insert(path, (auth, body.to_vec()));
                                hyper::Response::new(Full::new(Bytes::from_static(b"ok")))
                            } else {
                                let mut r =
                                    hyper::Response::new(Full::new(Bytes::from_static(b"no")));
                                *r.status_mut() = hyper::StatusCode::NOT_FOUND;
                                r
                            };
                            Ok::<_, Infallible>(resp)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (url, uploads, task)
}

async fn kstash(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_kstash"))
        .args(args)
        .output()
        .await
        .expect("run kstash")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_fetch_backs_up_a_url_into_a_stream_and_restores_it() {
    let module = http_fetch_module();
    let module = module.to_str().unwrap();
    let (url, uploads, server_task) = server().await;
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
    server_task.abort();
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
