//! `kstash bench runtime`: instantiate+call of a no-op task, guest->host stream throughput,
//! guest HTTP body reads vs a native hyper client on the same local server, and compile vs
//! cached load of a module. Prints medians.

use std::convert::Infallible;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use clap::Args;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use hyper_util::rt::TokioIo;
use kstash_runtime::{
    Digest, DiscardOutput, Limits, Runtime, RuntimeConfig, Target, TaskIo, TaskSpec,
};

/// Arguments of the addon runtime benchmark.
#[derive(Args)]
pub struct BenchArgs {
    /// The sandbox test guest (built by scripts/build-addons.sh).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../addons/target/wasm32-wasip2/release/kstash_addon_hostile.wasm"))]
    module: PathBuf,
    /// Iterations of the no-op task.
    #[arg(long, default_value_t = 500)]
    iterations: usize,
    /// MiB written per stream-throughput run.
    #[arg(long, default_value_t = 1024)]
    stream_mib: u64,
    /// MB read per HTTP run.
    #[arg(long, default_value_t = 200)]
    http_mb: u64,
    /// Runs of each throughput and compile measurement.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Report ratios from a debug build too (CI's smoke run; never quote them).
    #[arg(long)]
    pub allow_debug_build: bool,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

fn spec(mode: &str, url: &str, extra: &[(&str, String)]) -> TaskSpec {
    let mut params = vec![("mode".to_string(), mode.to_string())];
    params.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    TaskSpec {
        task: "run".to_string(),
        params,
        target: Target::new(url),
        limits: Limits::default(),
    }
}

/// Runs the addon runtime benchmark.
pub async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    crate::benchkit::refuse_debug_ratios(args.allow_debug_build)?;
    eprintln!("{}", crate::benchkit::machine_line());
    let wasm = std::fs::read(&args.module).with_context(|| {
        format!(
            "reading {} (build it with scripts/build-addons.sh)",
            args.module.display()
        )
    })?;
    let digest = Digest::of(&wasm);
    let (url, server) = serve_blobs().await?;
    println!(
        "module {} ({} KiB, {digest})",
        args.module.display(),
        wasm.len() / 1024
    );

    // 1. Compile vs cached load.
    let cache = std::env::temp_dir().join(format!("kstash-bench-cache-{}", std::process::id()));
    let mut compile = Vec::new();
    let mut cached = Vec::new();
    for _ in 0..args.runs {
        let _ = std::fs::remove_dir_all(&cache);
        let rt = Runtime::new(RuntimeConfig {
            cache_dir: Some(cache.clone()),
            max_concurrent_tasks: 2,
            ..RuntimeConfig::default()
        })?;
        let t = Instant::now();
        rt.load(&wasm, &digest).await?;
        compile.push(t.elapsed().as_secs_f64() * 1e3);
        rt.clear_memory_cache();
        let t = Instant::now();
        let a = rt.load(&wasm, &digest).await?;
        cached.push(t.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(
            a.load_source() == kstash_runtime::LoadSource::DiskCache,
            "cache miss"
        );
    }
    let _ = std::fs::remove_dir_all(&cache);
    let (c, l) = (median(compile), median(cached));
    println!("load (compile + cache write + describe): median {c:.1} ms");
    println!(
        "load from disk cache (+ describe):       median {l:.2} ms  (x{:.0} faster)",
        c / l
    );

    let rt = Runtime::new(RuntimeConfig {
        max_concurrent_tasks: 2,
        ..RuntimeConfig::default()
    })?;
    let addon = rt.load(&wasm, &digest).await?;
    let discard = Arc::new(DiscardOutput::new());
    let io = TaskIo {
        output: Some(discard.clone()),
        ..TaskIo::default()
    };

    // 2. Instantiate + call of a no-op task (pooling allocator + InstancePre).
    let mut noop = Vec::with_capacity(args.iterations);
    for i in 0..args.iterations + 20 {
        let t = Instant::now();
        addon.run(spec("noop", &url, &[]), io.clone()).await?;
        if i >= 20 {
            noop.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    let mut sorted = noop.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let p99 = sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)];
    println!(
        "no-op task (new store + instantiate + call), {} runs: median {:.0} us, p99 {p99:.0} us",
        args.iterations,
        median(noop)
    );

    // 3. Guest -> host stream throughput (64 KiB writes into a discarding sink).
    let bytes = args.stream_mib << 20;
    let mut mbs = Vec::new();
    for _ in 0..args.runs {
        let t = Instant::now();
        let r = addon
            .run(
                spec("write", &url, &[("bytes", bytes.to_string())]),
                io.clone(),
            )
            .await?;
        anyhow::ensure!(
            r.bytes_written == bytes,
            "wrote {} of {bytes}",
            r.bytes_written
        );
        mbs.push(bytes as f64 / 1e6 / t.elapsed().as_secs_f64());
    }
    println!(
        "guest->host stream, {} MiB: median {:.0} MB/s",
        args.stream_mib,
        median(mbs)
    );

    // 4. HTTP body read: guest vs native hyper client, same server.
    let n = args.http_mb * 1_000_000;
    let path = format!("/blob/{n}");
    let mut guest = Vec::new();
    let mut native = Vec::new();
    for _ in 0..args.runs {
        let t = Instant::now();
        let r = addon
            .run(spec("read", &url, &[("path", path.clone())]), io.clone())
            .await?;
        anyhow::ensure!(r.bytes == n, "guest read {} of {n}", r.bytes);
        guest.push(n as f64 / 1e6 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        let got = native_get(&url, &path).await?;
        anyhow::ensure!(got == n, "native read {got} of {n}");
        native.push(n as f64 / 1e6 / t.elapsed().as_secs_f64());
    }
    let (g, nat) = (median(guest), median(native));
    println!(
        "HTTP body read, {} MB: guest median {g:.0} MB/s, native hyper median {nat:.0} MB/s, ratio {:.2}",
        args.http_mb,
        g / nat
    );
    server.abort();
    Ok(())
}

/// A body of `remaining` zero bytes in 256 KiB frames.
struct Blob {
    remaining: u64,
    chunk: Bytes,
}

impl Body for Blob {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(self.chunk.len() as u64) as usize;
        self.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.remaining)
    }
}

/// Serves `GET /blob/<n>` (n zero bytes) on 127.0.0.1; returns the base URL and the server task.
async fn serve_blobs() -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let chunk = Bytes::from(vec![0u8; 256 * 1024]);
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let chunk = chunk.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let chunk = chunk.clone();
                        async move {
                            let n = req
                                .uri()
                                .path()
                                .strip_prefix("/blob/")
                                .and_then(|n| n.parse::<u64>().ok());
                            let resp = match n {
                                Some(n) => hyper::Response::new(Blob {
                                    remaining: n,
                                    chunk,
                                }),
                                None => {
                                    let mut r = hyper::Response::new(Blob {
                                        remaining: 0,
                                        chunk,
                                    });
                                    *r.status_mut() = hyper::StatusCode::NOT_FOUND;
                                    r
                                }
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
    Ok((url, task))
}

/// Reads `path` with a native hyper client; returns the body length.
async fn native_get(url: &str, path: &str) -> anyhow::Result<u64> {
    let addr = url.trim_start_matches("http://");
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    let conn = tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", addr)
        .body(http_body_util::Empty::<Bytes>::new())?;
    let mut body = sender.send_request(req).await?.into_body();
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(d) = frame?.into_data() {
            n += d.len() as u64;
        }
    }
    drop(sender);
    let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
    Ok(n)
}
