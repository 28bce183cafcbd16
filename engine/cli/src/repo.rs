//! `kstash repo …` (inspect KubeStash-laid-out restic repositories without a cluster) and
//! `kstash bench repo` (streaming ingest vs `restic backup --stdin`).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use kstash_repo::{BackupOptions, ResticRepo, Storage, StorageConfig};

/// `kstash repo` subcommands.
#[derive(Subcommand)]
pub enum RepoCommand {
    /// List the restic snapshots of a component (`restic snapshots`).
    Snapshots {
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Verify the repository (`restic check [--read-data]`); exit code 1 on errors.
    Check {
        #[command(flatten)]
        target: Target,
        /// Also read and verify all pack data.
        #[arg(long)]
        read_data: bool,
    },
    /// Write one file of a snapshot to stdout (`restic dump`).
    Dump {
        #[command(flatten)]
        target: Target,
        /// Snapshot id, unique prefix, or `latest`.
        snapshot: String,
        /// Absolute path inside the snapshot, e.g. `/logs.json`; omit to list the files.
        path: Option<String>,
    },
    /// Remove stale locks (`restic unlock`), or all with `--remove-all`.
    Unlock {
        #[command(flatten)]
        target: Target,
        /// Remove live locks too.
        #[arg(long)]
        remove_all: bool,
    },
}

/// Which restic repository: a BackupStorage/Repository YAML pair, session and component.
#[derive(Args)]
pub struct Target {
    /// BackupStorage manifest (YAML).
    #[arg(long)]
    storage: PathBuf,
    /// Repository manifest (YAML); its `spec.path` is the directory below the prefix.
    #[arg(long)]
    repository: PathBuf,
    /// Backup session name (e.g. `frequent-backup`).
    #[arg(long)]
    session: String,
    /// Component name.
    #[arg(long, default_value = "dump")]
    component: String,
    /// Storage Secret manifest (YAML, `data` base64 or `stringData`); default: the
    /// provider's keys from the environment (`AWS_ACCESS_KEY_ID`, …).
    #[arg(long)]
    storage_secret: Option<PathBuf>,
    /// Encryption Secret manifest; default: `RESTIC_PASSWORD` from the environment.
    #[arg(long)]
    encryption_secret: Option<PathBuf>,
    /// For `provider: local`: where the volume is mounted on this machine (default: its
    /// `mountPath`).
    #[arg(long)]
    local_root: Option<String>,
}

const SECRET_KEYS: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "CA_CERT_DATA",
    "GOOGLE_PROJECT_ID",
    "GOOGLE_SERVICE_ACCOUNT_JSON_KEY",
    "AZURE_ACCOUNT_KEY",
];

fn read_yaml(path: &Path) -> Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_yaml::from_str(&text).with_context(|| format!("parsing {} as YAML", path.display()))
}

fn secret_data(path: &Path) -> Result<BTreeMap<String, String>> {
    use base64::Engine as _;
    let v = read_yaml(path)?;
    let mut out = BTreeMap::new();
    if let Some(m) = v.get("data").and_then(|d| d.as_object()) {
        for (k, val) in m {
            let s = val.as_str().unwrap_or_default();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .with_context(|| format!("{}: data.{k} is not base64", path.display()))?;
            out.insert(
                k.clone(),
                String::from_utf8(bytes)
                    .with_context(|| format!("{}: data.{k} is not UTF-8", path.display()))?,
            );
        }
    }
    if let Some(m) = v.get("stringData").and_then(|d| d.as_object()) {
        for (k, val) in m {
            out.insert(k.clone(), val.as_str().unwrap_or_default().to_string());
        }
    }
    Ok(out)
}

fn object_name(v: &serde_json::Value) -> String {
    let ns = v["metadata"]["namespace"].as_str().unwrap_or("default");
    let name = v["metadata"]["name"].as_str().unwrap_or("unnamed");
    format!("{ns}/{name}")
}

impl Target {
    fn open(&self) -> Result<ResticRepo> {
        let bs = read_yaml(&self.storage)?;
        let mut spec_storage = bs["spec"]["storage"].clone();
        if spec_storage.is_null() {
            bail!("{}: missing field spec.storage", self.storage.display());
        }
        if let Some(root) = &self.local_root {
            spec_storage["local"]["mountPath"] = serde_json::Value::String(root.clone());
        }
        let secrets = match &self.storage_secret {
            Some(p) => secret_data(p)?,
            None => SECRET_KEYS
                .iter()
                .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
                .collect(),
        };
        let cfg = StorageConfig::from_spec_storage(&object_name(&bs), spec_storage, secrets)?;
        let storage = Storage::connect(cfg)?;
        let repo = read_yaml(&self.repository)?;
        let path = repo["spec"]["path"]
            .as_str()
            .with_context(|| format!("{}: missing field spec.path", self.repository.display()))?;
        let password = match &self.encryption_secret {
            Some(p) => secret_data(p)?.remove("RESTIC_PASSWORD").with_context(|| {
                format!(
                    "{}: encryption secret missing RESTIC_PASSWORD key",
                    p.display()
                )
            })?,
            None => std::env::var("RESTIC_PASSWORD")
                .context("no --encryption-secret given and RESTIC_PASSWORD is not set")?,
        };
        Ok(storage
            .repository(path)?
            .component(&self.session, &self.component, &password)?)
    }
}

/// Runs a `kstash repo` subcommand.
pub async fn run(cmd: RepoCommand) -> Result<()> {
    match cmd {
        RepoCommand::Snapshots { target, json } => {
            let snaps = target.open()?.snapshots().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&snaps)?);
            } else {
                println!("{:<10} {:<26} {:<16} paths", "ID", "TIME", "HOST");
                for s in snaps {
                    println!(
                        "{:<10} {:<26} {:<16} {}",
                        s.short_id,
                        s.time.to_string(),
                        s.hostname,
                        s.paths.join(",")
                    );
                }
            }
        }
        RepoCommand::Check { target, read_data } => {
            let repo = target.open()?;
            let r = repo.check(read_data).await?;
            for f in &r.findings {
                eprintln!("{f}");
            }
            if !r.ok {
                bail!("{}: check found errors", repo.location());
            }
            println!("{}: no errors were found", repo.location());
        }
        RepoCommand::Dump {
            target,
            snapshot,
            path,
        } => {
            let snap = target.open()?.open_snapshot(&snapshot).await?;
            match path {
                None => {
                    for f in snap.files().await? {
                        println!("{}\t{}", f.size, f.path);
                    }
                }
                Some(p) => {
                    let mut r = snap.open(&p).await?;
                    let mut out = std::io::stdout().lock();
                    while let Some(b) = r.next_block().await? {
                        out.write_all(&b)?;
                    }
                    out.flush()?;
                }
            }
        }
        RepoCommand::Unlock { target, remove_all } => {
            let repo = target.open()?;
            let n = repo.unlock(remove_all).await?;
            println!("{}: removed {n} lock(s)", repo.location());
        }
    }
    Ok(())
}

/// `kstash bench repo`: kstash's streaming ingest vs `restic backup --stdin`.
#[derive(Args)]
pub struct BenchArgs {
    /// Bytes of generated NDJSON (suffixes K, M, G as powers of 1024).
    #[arg(long, default_value = "1G")]
    size: String,
    /// Rounds per tool and target (medians are printed).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Targets: `local`, `s3` (moto on loopback) or both.
    #[arg(long, value_delimiter = ',', default_value = "local,s3")]
    targets: Vec<String>,
    /// Split the data into this many streams written concurrently into one snapshot (restic
    /// then backs up a directory of the same parts, as it cannot take several stdin streams).
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// Work directory (default: a fresh directory under the system temp dir).
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Internal: run one kstash backup round in this process (JSON job) and print its result.
    #[arg(long, hide = true)]
    worker: Option<String>,
    /// Report ratios from a debug build too (CI's smoke run; never quote them).
    #[arg(long)]
    pub allow_debug_build: bool,
}

fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim();
    let (num, mul) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let n: f64 = num
        .parse()
        .with_context(|| format!("--size: `{s}` is not a size like 256M or 1G"))?;
    Ok((n * mul as f64) as u64)
}

/// The lab's gen.py shape: elasticdump-style NDJSON lines, deterministic.
fn generate(path: &Path, target: u64) -> Result<()> {
    let words = "error warning info debug request response user order payment checkout cart session timeout retry connected disconnected upstream downstream cache miss hit database query slow fast latency backend frontend kubernetes pod node volume snapshot backup restore".split(' ').collect::<Vec<_>>();
    let levels = [
        "INFO", "INFO", "INFO", "INFO", "INFO", "INFO", "WARN", "WARN", "ERROR", "DEBUG",
    ];
    let mut x: u64 = 42;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let (mut written, mut ts) = (0u64, 1_780_000_000_000u64);
    while written < target {
        ts += 1 + next() % 50;
        let k = 6 + (next() % 13) as usize;
        let msg: Vec<&str> = (0..k)
            .map(|_| words[(next() % words.len() as u64) as usize])
            .collect();
        let status = [200, 200, 200, 201, 404, 500][(next() % 6) as usize];
        let line = format!(
            "{{\"_index\":\"logs-2026.11\",\"_type\":\"_doc\",\"_id\":\"{:016x}{:016x}\",\"_score\":1,\"_source\":{{\"@timestamp\":{ts},\"level\":\"{}\",\"host\":\"node-{:02}\",\"user\":\"u{:05}\",\"latency_ms\":{},\"status\":{status},\"trace_id\":\"{:016x}\",\"msg\":\"{}\",\"bytes\":{}}}}}\n",
            next(), next(), levels[(next() % 10) as usize], next() % 40, next() % 100_000, 1 + next() % 5000, next(), msg.join(" "), next() % (1 << 20)
        );
        out.write_all(line.as_bytes())?;
        written += line.len() as u64;
    }
    out.flush()?;
    Ok(())
}

use crate::benchkit::wait_usage;

#[derive(Default)]
struct Round {
    secs: f64,
    cpu: f64,
    peak: u64,
    processed: u64,
    added: u64,
    stages: BTreeMap<String, f64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        0.0
    } else {
        v[v.len() / 2]
    }
}

/// One kstash round, as run by the worker child.
#[derive(serde::Serialize, serde::Deserialize)]
struct WorkerJob {
    spec: serde_json::Value,
    secrets: BTreeMap<String, String>,
    component: String,
    parts: Vec<PathBuf>,
}

/// Child side: one backup of the parts (one stream each, concurrently); prints JSON.
async fn worker(job: &str) -> Result<()> {
    let job: WorkerJob = serde_json::from_str(job).context("--worker: bad job JSON")?;
    let storage = Storage::connect(StorageConfig::from_spec_storage(
        "bench/storage",
        job.spec,
        job.secrets,
    )?)?;
    let repo =
        storage
            .repository("bench")?
            .component("kstash", &job.component, "bench-password")?;
    let t0 = Instant::now();
    let b = repo.begin_backup(BackupOptions::default()).await?;
    let mut tasks = vec![];
    for (i, part) in job.parts.iter().enumerate() {
        let name = if job.parts.len() == 1 {
            "/data.ndjson".to_string()
        } else {
            format!("/part-{i:02}.ndjson")
        };
        let mut w = b.create_file(&name).await?;
        let part = part.clone();
        tasks.push(tokio::spawn(async move {
            let mut f = std::fs::File::open(&part)?;
            loop {
                let mut buf = vec![0u8; 1 << 20];
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                buf.truncate(n);
                w.write_bytes(bytes::Bytes::from(buf)).await?;
            }
            w.finish().await?;
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let s = b.commit().await?;
    let secs = t0.elapsed().as_secs_f64();
    let st = kstash_repo::stage_times();
    let g = |a: &std::sync::atomic::AtomicU64| {
        a.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e9
    };
    let (chunk, hash, queue) = (g(&st.chunk_ns), g(&st.hash_ns), g(&st.queue_wait_ns));
    let out = serde_json::json!({
        "secs": secs,
        "processed": s.bytes_processed,
        "added": s.bytes_added_raw,
        "stages": {
            "chunk": chunk - hash - queue,
            "blob sha256": hash,
            "zstd": g(&st.compress_ns),
            "encrypt": g(&st.encrypt_ns),
            "pack sha256": g(&st.pack_hash_ns),
            "wait pool": queue,
            "wait upload": g(&st.upload_wait_ns),
        }
    });
    println!("{out}");
    Ok(())
}

fn kstash_round(t: &BenchTarget, component: &str, parts: &[PathBuf]) -> Result<Round> {
    let job = WorkerJob {
        spec: t.spec.clone(),
        secrets: t.secrets.clone(),
        component: component.to_string(),
        parts: parts.to_vec(),
    };
    let exe = std::env::current_exe().context("locating the kstash binary")?;
    let mut child = Command::new(exe)
        .args(["bench", "repo", "--worker", &serde_json::to_string(&job)?])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out)?;
    let (code, usage) = wait_usage(&child)?;
    if code != 0 {
        bail!("kstash bench worker failed (exit {code})");
    }
    let v: serde_json::Value = serde_json::from_str(out.trim()).context("worker output")?;
    Ok(Round {
        secs: v["secs"].as_f64().unwrap_or(0.0),
        cpu: usage.cpu,
        peak: usage.peak,
        processed: v["processed"].as_u64().unwrap_or(0),
        added: v["added"].as_u64().unwrap_or(0),
        stages: v["stages"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, x)| (k.clone(), x.as_f64().unwrap_or(0.0)))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

fn restic_cmd(location: &str, env: &[(String, String)]) -> Command {
    let mut c = Command::new("restic");
    c.args(["-r", location, "--no-cache"])
        .env("RESTIC_PASSWORD", "bench-password");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// One restic round: `backup --stdin` for one part, or the directory of parts.
fn restic_round(
    location: &str,
    env: &[(String, String)],
    parts: &[PathBuf],
    init: bool,
) -> Result<Round> {
    if init {
        let st = restic_cmd(location, env)
            .arg("init")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if !st.success() {
            bail!("restic init {location} failed");
        }
    }
    let t0 = Instant::now();
    let mut cmd = restic_cmd(location, env);
    cmd.args(["backup", "--json", "--quiet"]);
    if parts.len() == 1 {
        cmd.args(["--stdin", "--stdin-filename", "data.ndjson"])
            .stdin(std::fs::File::open(&parts[0])?);
    } else {
        cmd.arg(parts[0].parent().context("parts directory")?);
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let mut out = String::new();
    let mut err = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out)?;
    child.stderr.take().unwrap().read_to_string(&mut err)?;
    let (code, usage) = wait_usage(&child)?;
    let secs = t0.elapsed().as_secs_f64();
    if code != 0 {
        bail!("restic backup failed: {err}");
    }
    let summary: serde_json::Value = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message_type"] == "summary")
        .context("restic printed no summary")?;
    Ok(Round {
        secs,
        cpu: usage.cpu,
        peak: usage.peak,
        processed: summary["total_bytes_processed"].as_u64().unwrap_or(0),
        added: summary["data_added"].as_u64().unwrap_or(0),
        stages: BTreeMap::new(),
    })
}

/// Bytes stored in a repository (`restic stats --mode raw-data`: compressed, encrypted blobs).
fn restic_stored(location: &str, env: &[(String, String)]) -> Result<u64> {
    let out = restic_cmd(location, env)
        .args(["stats", "--mode", "raw-data", "--json", "--no-lock"])
        .stderr(Stdio::null())
        .output()?;
    if !out.status.success() {
        bail!("restic stats {location} failed");
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("restic stats")?;
    v["total_size"]
        .as_u64()
        .context("restic stats: no total_size")
}

fn repo_root() -> Option<PathBuf> {
    let mut d = std::env::current_dir().ok()?;
    loop {
        if d.join(".tools/venv/bin/moto_server").exists() {
            return Some(d);
        }
        if !d.pop() {
            return None;
        }
    }
}

struct BenchTarget {
    name: String,
    spec: serde_json::Value,
    secrets: BTreeMap<String, String>,
    storage: Storage,
    restic_env: Vec<(String, String)>,
}

impl BenchTarget {
    fn new(
        name: &str,
        spec: serde_json::Value,
        secrets: BTreeMap<String, String>,
        restic_env: Vec<(String, String)>,
    ) -> Result<Self> {
        let storage = Storage::connect(StorageConfig::from_spec_storage(
            "bench/storage",
            spec.clone(),
            secrets.clone(),
        )?)?;
        Ok(BenchTarget {
            name: name.into(),
            spec,
            secrets,
            storage,
            restic_env,
        })
    }
}

/// Kills the S3 server on drop.
struct Moto(std::process::Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Splits `data` into `n` files of (about) equal size, cut at line ends, under `dir`.
fn split_parts(data: &Path, dir: &Path, n: usize) -> Result<Vec<PathBuf>> {
    use std::io::{BufRead, Write};
    if n <= 1 {
        return Ok(vec![data.to_path_buf()]);
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    // Streamed, line by line: the parent's RSS must stay small, because a child's `ru_maxrss`
    // (the peak memory both tools are measured by) includes the RSS its parent had at fork.
    let total = std::fs::metadata(data)?.len();
    let mut input = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(data)?);
    let (mut parts, mut line, mut done) = (vec![], Vec::new(), 0u64);
    for i in 0..n {
        let p = dir.join(format!("part-{i:02}.ndjson"));
        let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&p)?);
        let end = total * (i as u64 + 1) / n as u64;
        while done < end || i + 1 == n {
            line.clear();
            if input.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            out.write_all(&line)?;
            done += line.len() as u64;
        }
        out.flush()?;
        parts.push(p);
    }
    Ok(parts)
}

/// Runs the repo benchmark.
pub async fn bench(args: BenchArgs) -> Result<()> {
    if let Some(job) = &args.worker {
        return worker(job).await;
    }
    crate::benchkit::refuse_debug_ratios(args.allow_debug_build)?;
    if args.streams == 0 {
        bail!("--streams: must be at least 1");
    }
    let size = parse_size(&args.size)?;
    let work = args.workdir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("kstash-bench-repo-{}", std::process::id()))
    });
    std::fs::create_dir_all(&work)?;
    let data = work.join("data.ndjson");
    if std::fs::metadata(&data).map(|m| m.len()).unwrap_or(0) != size {
        eprintln!("generating {size} bytes of NDJSON in {} …", data.display());
        generate(&data, size)?;
        let f = std::fs::OpenOptions::new().write(true).open(&data)?;
        f.set_len(size)?;
    }
    let parts = split_parts(&data, &work.join("parts"), args.streams)?;
    let mut moto: Option<Moto> = None;
    let mut targets = vec![];
    for t in &args.targets {
        match t.as_str() {
            "local" => {
                let root = work.join("local");
                let _ = std::fs::remove_dir_all(&root);
                std::fs::create_dir_all(&root)?;
                let v = serde_json::json!({"provider": "local", "local": {"mountPath": root.to_str().unwrap()}});
                targets.push(BenchTarget::new("local", v, BTreeMap::new(), vec![])?);
            }
            "s3" => {
                let root = repo_root().context("cannot find .tools/venv/bin/moto_server above the current directory (run scripts/ensure-tools.sh)")?;
                let port = std::net::TcpListener::bind("127.0.0.1:0")?
                    .local_addr()?
                    .port();
                let child = Command::new(root.join(".tools/venv/bin/moto_server"))
                    .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()?;
                moto = Some(Moto(child));
                let t0 = Instant::now();
                while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                    if t0.elapsed() > Duration::from_secs(30) {
                        bail!("moto did not start");
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                let ep = format!("http://127.0.0.1:{port}");
                Command::new("curl")
                    .args(["-sf", "-X", "PUT", &format!("{ep}/bench")])
                    .stdout(Stdio::null())
                    .status()?;
                let v = serde_json::json!({"provider": "s3", "s3": {"endpoint": ep, "bucket": "bench", "region": "us-east-1", "secretName": "x"}});
                let secrets = BTreeMap::from([
                    ("AWS_ACCESS_KEY_ID".to_string(), "AK".to_string()),
                    ("AWS_SECRET_ACCESS_KEY".to_string(), "SK".to_string()),
                ]);
                targets.push(BenchTarget::new(
                    "s3 (moto)",
                    v,
                    secrets,
                    vec![
                        ("AWS_ACCESS_KEY_ID".into(), "AK".into()),
                        ("AWS_SECRET_ACCESS_KEY".into(), "SK".into()),
                    ],
                )?);
            }
            other => bail!("--targets: unknown target `{other}` (local, s3)"),
        }
    }
    let mib = size as f64 / (1u64 << 20) as f64;
    let gib = size as f64 / (1u64 << 30) as f64;
    println!(
        "data: {:.0} MiB NDJSON in {} stream(s), {} rounds per tool and target (medians), kstash {} build, {} CPUs, load {}",
        mib,
        parts.len(),
        args.rounds,
        if cfg!(debug_assertions) { "DEBUG" } else { "release" },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split(' ').take(3).collect::<Vec<_>>().join(" ")
    );
    println!(
        "{:<10} {:>11} {:>11} {:>6} {:>10} {:>10} {:>11} {:>11} {:>12} {:>12}",
        "target",
        "kstash MB/s",
        "restic MB/s",
        "ratio",
        "kstash CPU",
        "restic CPU",
        "kstash peak",
        "restic peak",
        "kstash dedup",
        "restic dedup"
    );
    let result = (|| {
        for t in &targets {
            let dir = t.storage.repository("bench")?;
            let (mut ks, mut rs) = (vec![], vec![]);
            let (mut k_dedup, mut r_dedup) = (0.0, 0.0);
            for round in 0..args.rounds {
                // Alternate which tool goes first so load changes hit both alike.
                let loc = dir
                    .component("restic", &format!("r{round}"), "bench-password")?
                    .location()
                    .to_string();
                let run_k = |ks: &mut Vec<Round>, k_dedup: &mut f64| -> Result<()> {
                    ks.push(kstash_round(t, &format!("r{round}"), &parts)?);
                    if round == 0 {
                        let again = kstash_round(t, &format!("r{round}"), &parts)?;
                        *k_dedup = again.added as f64 / again.processed.max(1) as f64;
                    }
                    Ok(())
                };
                let run_r = |rs: &mut Vec<Round>, r_dedup: &mut f64| -> Result<()> {
                    rs.push(restic_round(&loc, &t.restic_env, &parts, true)?);
                    if round == 0 {
                        let again = restic_round(&loc, &t.restic_env, &parts, false)?;
                        *r_dedup = again.added as f64 / again.processed.max(1) as f64;
                    }
                    Ok(())
                };
                if round % 2 == 0 {
                    run_k(&mut ks, &mut k_dedup)?;
                    run_r(&mut rs, &mut r_dedup)?;
                } else {
                    run_r(&mut rs, &mut r_dedup)?;
                    run_k(&mut ks, &mut k_dedup)?;
                }
            }
            let mbps = |v: &[Round]| median(v.iter().map(|r| size as f64 / 1e6 / r.secs).collect());
            let (k, r) = (mbps(&ks), mbps(&rs));
            let kc = median(ks.iter().map(|r| r.cpu / gib).collect());
            let rc = median(rs.iter().map(|r| r.cpu / gib).collect());
            let kp = median(ks.iter().map(|r| r.peak as f64).collect());
            let rp = median(rs.iter().map(|r| r.peak as f64).collect());
            println!("{:<10} {:>11.1} {:>11.1} {:>6.2} {:>6.1} s/GiB {:>6.1} s/GiB {:>7.0} MiB {:>7.0} MiB {:>11.4}% {:>11.4}%",
                t.name, k, r, k / r, kc, rc, kp / 1048576.0, rp / 1048576.0, k_dedup * 100.0, r_dedup * 100.0);
            let rounds: Vec<String> = ks
                .iter()
                .zip(&rs)
                .map(|(a, b)| {
                    format!(
                        "{:.1}/{:.1}",
                        size as f64 / 1e6 / a.secs,
                        size as f64 / 1e6 / b.secs
                    )
                })
                .collect();
            println!("  per round kstash/restic MB/s: {}", rounds.join("  "));
            if args.rounds > 0 {
                let k_loc = dir
                    .component("kstash", "r0", "bench-password")?
                    .location()
                    .to_string();
                let r_loc = dir
                    .component("restic", "r0", "bench-password")?
                    .location()
                    .to_string();
                let (ks_b, rs_b) = (
                    restic_stored(&k_loc, &t.restic_env)?,
                    restic_stored(&r_loc, &t.restic_env)?,
                );
                println!(
                    "  stored (restic stats --mode raw-data, round 0): kstash {:.1} MiB, restic {:.1} MiB",
                    ks_b as f64 / 1048576.0,
                    rs_b as f64 / 1048576.0
                );
            }
            if let Some(first) = ks.first() {
                let keys: Vec<&String> = first.stages.keys().collect();
                let parts: Vec<String> = keys
                    .iter()
                    .map(|k| {
                        let v = median(
                            ks.iter()
                                .map(|r| r.stages.get(*k).copied().unwrap_or(0.0))
                                .collect(),
                        );
                        format!("{k} {:.2}", v / gib)
                    })
                    .collect();
                println!(
                    "  kstash CPU by stage, s/GiB (median; thread time): {}",
                    parts.join(", ")
                );
            }
        }
        anyhow::Ok(())
    })();
    println!("(MB/s = 10^6 bytes of input per wall-clock second; CPU = user+sys s per GiB of input; peak = the process's own max RSS from wait4, each side in its own child process; dedup = bytes added by a 2nd identical backup / bytes processed)");
    drop(moto);
    if args.workdir.is_none() {
        let _ = std::fs::remove_dir_all(&work);
    }
    result
}
