//! The sandbox, end to end: real guests built by `scripts/build-addons.sh`, a real HTTP server
//! on 127.0.0.1 (hyper), and the runtime's limits, egress policy and error kinds.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use kstash_runtime::{
    Addon, Credentials, Digest, GuestErrorKind, Limit, Limits, LoadError, LoadSource,
    MemoryStreams, Runtime, RuntimeConfig, Target, TaskError, TaskIo, TaskReport, TaskSpec,
};
use kstash_testkit::http::{HttpServer, Method, Request, StatusCode};
use kstash_testkit::{addon_path, build_addons, repo_root};

fn newest_mtime(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            let t = if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "target") {
                    continue;
                }
                newest_mtime(&p)
            } else {
                e.metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH)
            };
            newest = newest.max(t);
        }
    }
    newest
}

/// Path of a guest module; runs `scripts/build-addons.sh` once if it is missing or stale.
fn module(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let root = repo_root();
    let path = addon_path(&format!("{name}.wasm"));
    BUILT.get_or_init(|| {
        let sources = [
            root.join("sdk/src"),
            root.join("sdk/wit"),
            root.join("addons/testing"),
            root.join("addons/http-fetch"),
        ]
        .iter()
        .map(|d| newest_mtime(d))
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH);
        let built = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        if built.is_none_or(|b| b < sources) {
            build_addons();
        }
    });
    assert!(
        path.is_file(),
        "{} missing after scripts/build-addons.sh",
        path.display()
    );
    path
}

/// One runtime and one loaded hostile guest shared by every test of this binary.
async fn hostile() -> Addon {
    static ADDON: tokio::sync::OnceCell<Addon> = tokio::sync::OnceCell::const_new();
    ADDON
        .get_or_init(|| async {
            let rt = Runtime::new(RuntimeConfig::default()).expect("runtime");
            let wasm = std::fs::read(module("kstash_addon_hostile")).unwrap();
            rt.load(&wasm, &Digest::of(&wasm))
                .await
                .expect("load hostile guest")
        })
        .await
        .clone()
}

/// A target server: `/hello`, `/blob/<n>`, `/auth` (echoes Authorization), `/stall` (never
/// answers), PUT/POST anything (stores the body under its path).
/// The target: `/hello`, `/auth` (echoes the Authorization header), `/stall` (never answers),
/// `/blob/<n>` (`n` bytes), and PUT/POST stored by path.
async fn server() -> HttpServer {
    HttpServer::start(|req: Request| async move {
        let path = req.path.as_str();
        let out: Bytes = if req.method == Method::PUT || req.method == Method::POST {
            Bytes::from("stored")
        } else if path == "/hello" {
            Bytes::from("hello from the target\n")
        } else if path == "/auth" {
            Bytes::from(req.authorization)
        } else if path == "/stall" {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Bytes::new()
        } else if let Some(n) = path
            .strip_prefix("/blob/")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Bytes::from((0..n).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
        } else {
            return (StatusCode::NOT_FOUND, Bytes::from("not found"));
        };
        (StatusCode::OK, out)
    })
    .await
}

fn spec(url: &str, mode: &str, extra: &[(&str, &str)], limits: Limits) -> TaskSpec {
    let mut params = vec![("mode".to_string(), mode.to_string())];
    params.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    TaskSpec {
        task: "run".to_string(),
        params,
        target: Target::new(url),
        limits,
    }
}

fn memory_io() -> (MemoryStreams, TaskIo) {
    let out = MemoryStreams::new();
    let io = TaskIo {
        output: Some(Arc::new(out.clone())),
        ..TaskIo::default()
    };
    (out, io)
}

/// Runs `hostile` and, at the same time, a well-behaved task fetching 4 MB; asserts the good one
/// got every byte right and returns the hostile one's result.
async fn with_good_task(
    server: &HttpServer,
    hostile_spec: TaskSpec,
) -> Result<TaskReport, TaskError> {
    let addon = hostile().await;
    let (_, bad_io) = memory_io();
    let (good_out, good_io) = memory_io();
    let good_spec = spec(
        &server.url,
        "fetch",
        &[("path", "/blob/4000000")],
        Limits::default(),
    );
    let a2 = addon.clone();
    let good = tokio::spawn(async move { a2.run(good_spec, good_io).await });
    let bad = addon.run(hostile_spec, bad_io).await;
    let report = good
        .await
        .unwrap()
        .expect("the well-behaved task must succeed");
    let body = good_out.get("body").expect("stream `body`");
    assert_eq!(body.len(), 4_000_000);
    assert!(
        body.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8),
        "body corrupted"
    );
    assert_eq!(report.streams, vec![("body".to_string(), 4_000_000)]);
    bad
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_mismatch_is_refused_showing_both_digests() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let wasm = std::fs::read(module("kstash_addon_http_fetch")).unwrap();
    let actual = Digest::of(&wasm);
    let pinned = Digest::of(b"some other module");
    let err = rt.load(&wasm, &pinned).await.unwrap_err();
    assert!(matches!(err, LoadError::DigestMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&pinned.to_string()) && msg.contains(&actual.to_string()),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precompiled_module_is_cached_in_memory_and_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = std::fs::read(module("kstash_addon_http_fetch")).unwrap();
    let d = Digest::of(&wasm);
    let cfg = RuntimeConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        ..RuntimeConfig::default()
    };
    let rt = Runtime::new(cfg.clone()).unwrap();
    assert_eq!(
        rt.load(&wasm, &d).await.unwrap().load_source(),
        LoadSource::Compiled
    );
    assert!(rt.cache_path(&d).unwrap().is_file());
    assert_eq!(
        rt.load(&wasm, &d).await.unwrap().load_source(),
        LoadSource::MemoryCache
    );
    // A new process (runtime) finds the precompiled code on disk.
    let rt2 = Runtime::new(cfg).unwrap();
    let a = rt2.load(&wasm, &d).await.unwrap();
    assert_eq!(a.load_source(), LoadSource::DiskCache);
    assert_eq!(a.description().name, "http-fetch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_attaches_credentials_the_guest_never_sees() {
    let s = server().await;
    let addon = hostile().await;
    let (out, io) = memory_io();
    let mut sp = spec(&s.url, "fetch", &[("path", "/auth")], Limits::default());
    // RFC 7617 section 2 example credentials.
    sp.target.credentials = Credentials::Basic {
        username: "Aladdin".into(),
        password: "open sesame".into(),
    };
    let r = addon.run(sp, io).await.unwrap();
    assert_eq!(r.requests, 1);
    assert_eq!(
        &out.get("body").unwrap()[..],
        b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_loop_is_stopped_by_the_cpu_limit() {
    let s = server().await;
    let limits = Limits {
        cpu_time: Duration::from_millis(500),
        ..Limits::default()
    };
    let err = with_good_task(&s, spec(&s.url, "spin", &[], limits))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            TaskError::LimitExceeded {
                limit: Limit::Cpu,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_loop_is_stopped_by_the_wall_clock() {
    let s = server().await;
    let limits = Limits {
        wall_clock: Duration::from_millis(700),
        ..Limits::default()
    };
    let t = std::time::Instant::now();
    let err = with_good_task(&s, spec(&s.url, "spin", &[], limits))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            TaskError::LimitExceeded {
                limit: Limit::WallClock,
                ..
            }
        ),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_blocked_in_a_host_call_is_stopped_by_the_wall_clock() {
    let s = server().await;
    let limits = Limits {
        wall_clock: Duration::from_millis(800),
        ..Limits::default()
    };
    for (mode, extra) in [("sleep", vec![]), ("fetch", vec![("path", "/stall")])] {
        let err = with_good_task(&s, spec(&s.url, mode, &extra, limits))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                TaskError::LimitExceeded {
                    limit: Limit::WallClock,
                    ..
                }
            ),
            "{mode}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_allocation_is_stopped_by_the_memory_limit() {
    let s = server().await;
    let limits = Limits {
        memory_bytes: 64 << 20,
        ..Limits::default()
    };
    let err = with_good_task(&s, spec(&s.url, "alloc", &[], limits))
        .await
        .unwrap_err();
    match &err {
        TaskError::LimitExceeded {
            limit: Limit::Memory,
            detail,
        } => {
            assert!(detail.contains(&(64u64 << 20).to_string()), "{detail}")
        }
        other => panic!("expected the memory limit, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_writing_is_stopped_by_the_bytes_written_limit() {
    let s = server().await;
    let limits = Limits {
        max_bytes_written: 8 << 20,
        ..Limits::default()
    };
    let err = with_good_task(&s, spec(&s.url, "write", &[], limits))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            TaskError::LimitExceeded {
                limit: Limit::BytesWritten,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_to_another_host_is_denied() {
    let s = server().await;
    let other = server().await; // a real server on another port: reachable, but not the target
    let err = with_good_task(
        &s,
        spec(&s.url, "egress", &[("url", &other.url)], Limits::default()),
    )
    .await
    .unwrap_err();
    match &err {
        TaskError::Denied { target, allowed } => {
            assert_eq!(target, &other.url);
            assert_eq!(allowed, &s.url);
        }
        other => panic!("expected a denial, got {other}"),
    }
    for url in ["http://example.com", "https://127.0.0.1:1"] {
        let err = hostile()
            .await
            .run(
                spec(&s.url, "egress", &[("url", url)], Limits::default()),
                memory_io().1,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, TaskError::Denied { .. }), "{url}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_environment_arguments_and_sockets_are_not_there() {
    let s = server().await;
    std::env::set_var("KSTASH_SECRET_PROBE", "must-not-leak");
    let addon = hostile().await;
    let (out, io) = memory_io();
    addon
        .run(spec(&s.url, "probe", &[], Limits::default()), io)
        .await
        .unwrap();
    let report = String::from_utf8(out.get("probe").unwrap().to_vec()).unwrap();
    let lines: Vec<&str> = report.lines().collect();
    assert!(lines[0].starts_with("file /etc/passwd: denied"), "{report}");
    assert!(lines[1].starts_with("dir /: denied"), "{report}");
    assert!(
        lines[2].starts_with("file write /tmp/kstash-probe: denied"),
        "{report}"
    );
    assert_eq!(lines[3], "env: 0 variables []", "{report}");
    assert_eq!(lines[4], "args: 0 arguments", "{report}");
    assert!(lines[5].starts_with("tcp 127.0.0.1:22: denied"), "{report}");
    assert!(!report.contains("must-not-leak"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_is_a_trap_with_the_panic_message() {
    let s = server().await;
    let err = with_good_task(&s, spec(&s.url, "panic", &[], Limits::default()))
        .await
        .unwrap_err();
    match &err {
        TaskError::Trap { message } => {
            assert!(
                message.contains("hostile guest panics on purpose"),
                "{message}"
            )
        }
        other => panic!("expected a trap, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_error_keeps_the_addons_kind_and_message() {
    let s = server().await;
    let err = with_good_task(&s, spec(&s.url, "fail", &[], Limits::default()))
        .await
        .unwrap_err();
    match &err {
        TaskError::Guest { kind, message } => {
            assert_eq!(*kind, GuestErrorKind::Remote);
            assert_eq!(message, "the target said no (on purpose)");
        }
        other => panic!("expected a guest error, got {other}"),
    }
    let err = hostile()
        .await
        .run(
            spec(&s.url, "nonsense", &[], Limits::default()),
            memory_io().1,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TaskError::Guest { kind: GuestErrorKind::InvalidParams, message } if message.contains("`mode`")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_reads_every_input_stream() {
    let s = server().await;
    let input = MemoryStreams::new();
    input.insert("a.ndjson", vec![b'a'; 100_000]);
    input.insert("dir/b.json", Bytes::from_static(b"{}"));
    let io = TaskIo {
        input: Some(Arc::new(input)),
        ..TaskIo::default()
    };
    let mut sp = spec(&s.url, "noop", &[], Limits::default());
    sp.task = "restore".to_string();
    sp.params.clear();
    let r = hostile().await.run(sp, io).await.unwrap();
    assert_eq!(r.items, 2);
    assert_eq!(r.bytes, 100_002);
    assert_eq!(r.warnings, vec!["a.ndjson=100000", "dir/b.json=2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_tasks_are_refused_before_running() {
    let s = server().await;
    let addon = hostile().await;
    let mut sp = spec(&s.url, "noop", &[], Limits::default());
    sp.task = "no-such-task".into();
    let err = addon.run(sp, memory_io().1).await.unwrap_err();
    assert!(
        matches!(&err, TaskError::Invalid(m) if m.contains("no-such-task")),
        "{err}"
    );
    // A backup without an output sink.
    let err = addon
        .run(
            spec(&s.url, "noop", &[], Limits::default()),
            TaskIo::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TaskError::Invalid(m) if m.contains("output")),
        "{err}"
    );
    let err = addon
        .run(
            spec("ftp://x", "noop", &[], Limits::default()),
            memory_io().1,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TaskError::Invalid(m) if m.contains("target URL") && m.contains("no default port")),
        "{err}"
    );
    let err = addon
        .run(
            spec("127.0.0.1:80", "noop", &[], Limits::default()),
            memory_io().1,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TaskError::Invalid(m) if m.contains("no scheme")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_fetch_backs_up_and_restores_through_the_sdk() {
    let s = server().await;
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let wasm = std::fs::read(module("kstash_addon_http_fetch")).unwrap();
    let addon = rt.load(&wasm, &Digest::of(&wasm)).await.unwrap();
    let (out, io) = memory_io();
    let sp = TaskSpec {
        task: "logical-backup".into(),
        params: vec![
            ("path".into(), "/blob/300000".into()),
            ("stream".into(), "dump/blob.bin".into()),
        ],
        target: Target::new(&s.url),
        limits: Limits::default(),
    };
    let r = addon.run(sp, io).await.unwrap();
    assert_eq!(r.streams, vec![("dump/blob.bin".to_string(), 300_000)]);
    let io = TaskIo {
        input: Some(Arc::new(out.clone())),
        ..TaskIo::default()
    };
    let sp = TaskSpec {
        task: "logical-backup-restore".into(),
        params: vec![("path".into(), "/restored".into())],
        target: Target::new(&s.url),
        limits: Limits::default(),
    };
    let r = addon.run(sp, io).await.unwrap();
    assert_eq!((r.items, r.bytes), (1, 300_000));
    let up = s.uploads.lock().unwrap();
    assert_eq!(
        up.get("/restored/dump/blob.bin").map(|(_, b)| b.as_slice()),
        out.get("dump/blob.bin").as_deref()
    );
}

/// An https server for `localhost` with a certificate from a fresh CA; returns (url, CA PEM).
async fn tls_server() -> (String, String, tokio::task::JoinHandle<()>) {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(leaf.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://localhost:{}",
        listener.local_addr().unwrap().port()
    );
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(
                    |_req: hyper::Request<hyper::body::Incoming>| async {
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(
                            "hello over tls\n",
                        ))))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (url, ca_cert.pem(), task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_target_is_verified_by_the_host_with_the_ca_bundle() {
    let (url, ca_pem, task) = tls_server().await;
    let addon = hostile().await;
    let (out, io) = memory_io();
    let mut sp = spec(&url, "fetch", &[("path", "/hello")], Limits::default());
    sp.target.ca_bundle_pem = Some(ca_pem.into_bytes());
    addon.run(sp, io).await.unwrap();
    assert_eq!(&out.get("body").unwrap()[..], b"hello over tls\n");
    // Without the CA bundle the host does not trust the server: the guest sees a TLS failure.
    let err = addon
        .run(
            spec(&url, "fetch", &[("path", "/hello")], Limits::default()),
            memory_io().1,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            TaskError::Guest {
                kind: GuestErrorKind::Connect,
                ..
            }
        ),
        "{err}"
    );
    task.abort();
}

/// A server certificate for `localhost` from a fresh CA: (acceptor, CA PEM).
fn localhost_tls() -> (tokio_rustls::TlsAcceptor, String) {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(leaf.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    )
    .unwrap();
    (
        tokio_rustls::TlsAcceptor::from(Arc::new(cfg)),
        ca_cert.pem(),
    )
}

/// A line-protocol TCP server on 127.0.0.1: `STARTTLS` → `OK` then TLS; `AUTH <user> ` followed
/// by a RESP bulk string records `user:secret`; any other line is answered `ECHO <line>`.
struct LineServer {
    port: u16,
    ca_pem: String,
    auths: Arc<Mutex<Vec<String>>>,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LineServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_lines<S>(s: S, auths: Arc<Mutex<Vec<String>>>) -> Option<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut r = tokio::io::BufReader::new(s);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line == "STARTTLS" {
            r.get_mut().write_all(b"OK\n").await.ok()?;
            assert!(r.buffer().is_empty(), "client sent bytes before TLS");
            return Some(r.into_inner());
        } else if let Some(rest) = line.strip_prefix("AUTH ") {
            // `AUTH <user> $<len>` then the secret line.
            let user = rest.split(' ').next().unwrap_or("").to_string();
            let mut secret = String::new();
            r.read_line(&mut secret).await.ok()?;
            auths
                .lock()
                .unwrap()
                .push(format!("{user}:{}", secret.trim_end()));
        } else {
            r.get_mut()
                .write_all(format!("ECHO {line}\n").as_bytes())
                .await
                .ok()?;
        }
    }
}

async fn line_server(direct_tls: bool) -> LineServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (acceptor, ca_pem) = localhost_tls();
    let auths: Arc<Mutex<Vec<String>>> = Arc::default();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (a2, n2) = (auths.clone(), accepted.clone());
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            n2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let (acceptor, auths) = (acceptor.clone(), a2.clone());
            tokio::spawn(async move {
                if direct_tls {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        serve_lines(tls, auths).await;
                    }
                } else if let Some(tcp) = serve_lines(tcp, auths.clone()).await {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        serve_lines(tls, auths).await;
                    }
                }
            });
        }
    });
    LineServer {
        port,
        ca_pem,
        auths,
        accepted,
        task,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_target_with_starttls_and_a_secret_written_by_the_host() {
    let s = line_server(false).await;
    let addon = hostile().await;
    let (out, io) = memory_io();
    let mut sp = spec(
        &format!("tcp://localhost:{}", s.port),
        "tcp",
        &[("starttls", "true"), ("secret", "true"), ("send", "hello")],
        Limits::default(),
    );
    sp.target.ca_bundle_pem = Some(s.ca_pem.clone().into_bytes());
    sp.target.credentials = Credentials::Basic {
        username: "alice".into(),
        password: "s3cret".into(),
    };
    let r = addon.run(sp, io).await.unwrap();
    assert_eq!(&out.get("reply").unwrap()[..], b"ECHO hello\ntls=true\n");
    assert_eq!(*s.auths.lock().unwrap(), vec!["alice:s3cret".to_string()]);
    assert_eq!(r.connections, 1);
    // The guest sent "STARTTLS\n", "AUTH alice ", "hello\n" (the secret is not counted) and
    // received "OK\n" and "ECHO hello\n".
    assert_eq!(r.target_bytes_out, 9 + 11 + 6);
    assert_eq!(r.target_bytes_in, 3 + 11);
    assert_eq!(
        r.parts,
        vec![kstash_runtime::PartCount {
            name: "tcp".into(),
            items: 14,
            bytes: 26
        }]
    );
    assert_eq!(r.notices.len(), 1);
    assert_eq!(r.notices[0].kind, kstash_runtime::NoticeKind::Warning);
    assert_eq!(r.notices[0].item.as_deref(), Some("tcp"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_tls_on_a_tcp_target_is_verified_with_the_ca_bundle() {
    let s = line_server(true).await;
    let addon = hostile().await;
    let url = format!("tcp://localhost:{}", s.port);
    let (out, io) = memory_io();
    let mut sp = spec(
        &url,
        "tcp",
        &[("tls", "true"), ("send", "hi")],
        Limits::default(),
    );
    sp.target.ca_bundle_pem = Some(s.ca_pem.clone().into_bytes());
    addon.run(sp, io).await.unwrap();
    assert_eq!(&out.get("reply").unwrap()[..], b"ECHO hi\ntls=true\n");
    // Without the CA bundle the handshake fails: a connection error of the guest.
    let err = addon
        .run(
            spec(
                &url,
                "tcp",
                &[("tls", "true"), ("send", "hi")],
                Limits::default(),
            ),
            memory_io().1,
        )
        .await
        .unwrap_err();
    match &err {
        TaskError::Guest {
            kind: GuestErrorKind::Connect,
            message,
        } => assert!(message.contains("TLS failed"), "{message}"),
        other => panic!("expected a TLS connect error, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_tls_with_unread_plaintext_is_refused() {
    let s = line_server(false).await;
    let mut sp = spec(
        &format!("tcp://localhost:{}", s.port),
        "tcp",
        &[("starttls", "true"), ("early", "true"), ("send", "x")],
        Limits::default(),
    );
    sp.target.ca_bundle_pem = Some(s.ca_pem.clone().into_bytes());
    let err = hostile().await.run(sp, memory_io().1).await.unwrap_err();
    match &err {
        TaskError::Guest { message, .. } => {
            assert!(message.contains("not read"), "{message}")
        }
        other => panic!("expected the guest's invalid-state error, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_sockets_to_other_ports_and_hosts_are_denied() {
    let target = line_server(false).await;
    let other = line_server(false).await; // reachable, listening, but not the target
    let url = format!("tcp://127.0.0.1:{}", target.port);
    for addr in [
        format!("127.0.0.1:{}", other.port),
        format!("127.0.0.1:{}", target.port), // even the target's own address: only via `tcp`
        "10.0.0.1:6379".to_string(),
    ] {
        let err = hostile()
            .await
            .run(
                spec(&url, "socket", &[("addr", &addr)], Limits::default()),
                memory_io().1,
            )
            .await
            .unwrap_err();
        match &err {
            TaskError::Denied { target: t, allowed } => {
                assert!(t.contains(&addr), "{t}");
                assert_eq!(allowed, &url);
            }
            other => panic!("{addr}: expected a denial, got {other}"),
        }
    }
    // By name: the sandbox has no name lookup, so nothing is resolved nor connected.
    let err = hostile()
        .await
        .run(
            spec(
                &url,
                "dns",
                &[("addr", &format!("localhost:{}", other.port))],
                Limits::default(),
            ),
            memory_io().1,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            TaskError::Guest {
                kind: GuestErrorKind::Connect,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(other.accepted.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(target.accepted.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_by_another_name_of_the_target_is_denied() {
    let s = server().await;
    let port = s.url.rsplit(':').next().unwrap().to_string();
    let err = hostile()
        .await
        .run(
            spec(
                &s.url,
                "egress",
                &[("url", &format!("http://localhost:{port}"))],
                Limits::default(),
            ),
            memory_io().1,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, TaskError::Denied { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_and_disallowed_addresses_are_refused_before_any_connection() {
    // Cloud metadata, by default, for HTTP and TCP alike: refused before the guest runs.
    for url in [
        "http://169.254.169.254/latest/meta-data",
        "tcp://169.254.169.254:80",
        "http://[fd00:ec2::254]",
    ] {
        let err = hostile()
            .await
            .run(
                spec(url, "fetch", &[("path", "/")], Limits::default()),
                memory_io().1,
            )
            .await
            .unwrap_err();
        match &err {
            TaskError::EgressDenied { reason, .. } => {
                assert!(reason.contains("denied range"), "{url}: {reason}")
            }
            other => panic!("{url}: expected an egress denial, got {other}"),
        }
        assert_eq!(err.kind(), "egress");
    }
    // An admin policy allowing only 10.0.0.0/8: a live server on loopback is never connected to.
    let s = line_server(false).await;
    let rt = Runtime::new(RuntimeConfig {
        egress: kstash_runtime::EgressRules {
            allow: vec!["10.0.0.0/8".parse().unwrap()],
            ..Default::default()
        },
        ..RuntimeConfig::default()
    })
    .unwrap();
    let wasm = std::fs::read(module("kstash_addon_hostile")).unwrap();
    let addon = rt.load(&wasm, &Digest::of(&wasm)).await.unwrap();
    let err = addon
        .run(
            spec(
                &format!("tcp://127.0.0.1:{}", s.port),
                "tcp",
                &[("send", "x")],
                Limits::default(),
            ),
            memory_io().1,
        )
        .await
        .unwrap_err();
    match &err {
        TaskError::EgressDenied {
            address, reason, ..
        } => {
            assert_eq!(address.port(), s.port);
            assert!(reason.contains("outside the allowed ranges"), "{reason}");
        }
        other => panic!("expected an egress denial, got {other}"),
    }
    assert_eq!(s.accepted.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_target_with_a_query_is_refused_naming_the_field() {
    let err = hostile()
        .await
        .run(
            spec(
                "http://127.0.0.1:9/base?x=1",
                "fetch",
                &[("path", "/")],
                Limits::default(),
            ),
            memory_io().1,
        )
        .await
        .unwrap_err();
    match &err {
        TaskError::Invalid(m) => assert!(m.contains("target URL") && m.contains("`?`"), "{m}"),
        other => panic!("expected an invalid task, got {other}"),
    }
}
