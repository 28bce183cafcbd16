//! `kstash controlplane` (the embedded Kubernetes-compatible API server) and its benchmark.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use kstash_controlplane::k8s_openapi::api::core::v1::ConfigMap;
use kstash_controlplane::kube::api::{Api, PostParams};
use kstash_controlplane::kube::runtime::watcher;
use kstash_controlplane::{ControlPlane, ServerConfig};

/// Arguments of `kstash controlplane`.
#[derive(Args)]
pub struct ControlplaneArgs {
    /// Data directory (database, certificates, `kubeconfig`).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Listen address (loopback; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
}

/// Arguments of the control plane benchmark.
#[derive(Args)]
pub struct BenchArgs {
    /// Object counts to measure.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1000, 10000])]
    pub objects: Vec<usize>,
    /// Concurrent create requests.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Report ratios from a debug build too (CI's smoke run; never quote them).
    #[arg(long)]
    pub allow_debug_build: bool,
}

/// kstash's CRDs (the KubeStash kinds plus KubeDB Elasticsearch, Redis, Postgres and AppBinding) as JSON.
fn kstash_crds() -> anyhow::Result<Vec<serde_json::Value>> {
    kstash_api::crds::all()
        .into_iter()
        .map(|c| serde_json::to_value(c).context("serialising a CRD"))
        .collect()
}

/// Runs `kstash controlplane` until interrupted.
pub async fn run(args: ControlplaneArgs) -> anyhow::Result<()> {
    if !args.listen.ip().is_loopback() {
        bail!(
            "--listen {}: the control plane only serves on a loopback address",
            args.listen
        );
    }
    kstash_controlplane::private::restrict_umask();
    let mut cfg = ServerConfig::new(&args.data_dir, args.listen);
    cfg.bootstrap_crds = kstash_crds()?;
    // KubeStash's webhook rules at write time: an invalid object is refused by `kubectl apply`.
    cfg.admission = Some(std::sync::Arc::new(
        kstash_controlplane::kstash_admission::KstashAdmission,
    ));
    let cp = ControlPlane::start(cfg)
        .await
        .with_context(|| format!("starting the control plane in {}", args.data_dir.display()))?;
    println!("kstash control plane serving on {}", cp.url());
    println!("kubeconfig: {}", cp.kubeconfig_path.display());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    cp.shutdown().await;
    Ok(())
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A `kstash controlplane` child process, killed on drop.
struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the benchmark: creates N ConfigMaps against a `kstash controlplane` child process while a
/// kube-rs watcher measures create→event latency; prints throughput, p50/p99 and the server RSS.
pub async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    crate::benchkit::refuse_debug_ratios(args.allow_debug_build)?;
    eprintln!("{}", crate::benchkit::machine_line());
    use futures::StreamExt;
    println!(
        "{:>8} {:>12} {:>12} {:>12} {:>14}",
        "objects", "creates/s", "watch p50", "watch p99", "server RSS"
    );
    for &n in &args.objects {
        let dir = std::env::temp_dir().join(format!("kstash-cp-bench-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let exe = std::env::current_exe()?;
        let child = Child(
            std::process::Command::new(exe)
                .args(["controlplane", "--data-dir"])
                .arg(&dir)
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .stdout(std::process::Stdio::null())
                .spawn()
                .context("spawning kstash controlplane")?,
        );
        let kc_path = dir.join("kubeconfig");
        let start = Instant::now();
        while !kc_path.exists() {
            if start.elapsed() > Duration::from_secs(30) {
                bail!(
                    "the control plane did not write {} within 30 s",
                    kc_path.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let kc = kstash_controlplane::kube::config::Kubeconfig::read_from(&kc_path)?;
        let cfg =
            kstash_controlplane::kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await?;
        let client = kstash_controlplane::kube::Client::try_from(cfg)?;
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let lat: Arc<Mutex<Vec<Duration>>> = Arc::default();
        let (sent2, lat2) = (sent.clone(), lat.clone());
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
        let watch = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            let mut stream = watcher(cms_watch(client), watcher::Config::default()).boxed();
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(watcher::Event::InitDone) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(watcher::Event::Apply(cm)) => {
                        let name = cm.metadata.name.unwrap_or_default();
                        if let Some(t0) = sent2.lock().expect("lock").get(&name) {
                            let mut l = lat2.lock().expect("lock");
                            l.push(t0.elapsed());
                            if l.len() >= n {
                                return;
                            }
                        }
                    }
                    _ => {}
                }
            }
        });
        ready_rx.await.context("watcher did not start")?;
        let t0 = Instant::now();
        let mut pending = futures::stream::iter(0..n)
            .map(|i| {
                let cms = cms.clone();
                let sent = sent.clone();
                async move {
                    let name = format!("bench-{i:06}");
                    let mut cm = ConfigMap::default();
                    cm.metadata.name = Some(name.clone());
                    cm.data = Some([("k".to_string(), format!("value-{i}"))].into());
                    sent.lock().expect("lock").insert(name, Instant::now());
                    cms.create(&PostParams::default(), &cm).await
                }
            })
            .buffer_unordered(args.concurrency);
        while let Some(r) = pending.next().await {
            r.context("create")?;
        }
        let elapsed = t0.elapsed();
        tokio::time::timeout(Duration::from_secs(60), watch)
            .await
            .context("watch events did not all arrive within 60 s")??;
        let mut l = lat.lock().expect("lock").clone();
        l.sort();
        let rss = rss_kib(child.0.id())
            .map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
            .unwrap_or_else(|| "n/a".into());
        println!(
            "{:>8} {:>12.0} {:>12} {:>12} {:>14}",
            n,
            n as f64 / elapsed.as_secs_f64(),
            format!("{:.2?}", pct(&l, 0.5)),
            format!("{:.2?}", pct(&l, 0.99)),
            rss
        );
        drop(child);
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

fn cms_watch(client: kstash_controlplane::kube::Client) -> Api<ConfigMap> {
    Api::namespaced(client, "default")
}
