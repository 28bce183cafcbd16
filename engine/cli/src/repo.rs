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

/// Arguments of the repo benchmark.
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
    /// Work directory (default: a fresh directory under the system temp dir).
    #[arg(long)]
    workdir: Option<PathBuf>,
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

fn rusage(who: libc::c_int) -> (f64, u64) {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (t(ru.ru_utime) + t(ru.ru_stime), ru.ru_maxrss as u64 * 1024)
}

fn self_peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.to_string())
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|n| n.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn reset_peak_rss() {
    // Linux ≥ 4.0: writing 5 to clear_refs resets VmHWM.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

struct Round {
    secs: f64,
    cpu: f64,
    peak: u64,
    processed: u64,
    added: u64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        0.0
    } else {
        v[v.len() / 2]
    }
}

struct BenchTarget {
    name: String,
    storage: Storage,
    restic_env: Vec<(String, String)>,
}

async fn kstash_round(repo: &ResticRepo, data: &Path) -> Result<Round> {
    reset_peak_rss();
    let (cpu0, _) = rusage(libc::RUSAGE_SELF);
    let t0 = Instant::now();
    let b = repo.begin_backup(BackupOptions::default()).await?;
    let mut w = b.create_file("/data.ndjson").await?;
    let mut f = std::fs::File::open(data)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        w.write_bytes(bytes::Bytes::copy_from_slice(&buf[..n]))
            .await?;
    }
    w.finish().await?;
    let s = b.commit().await?;
    let secs = t0.elapsed().as_secs_f64();
    let (cpu1, _) = rusage(libc::RUSAGE_SELF);
    Ok(Round {
        secs,
        cpu: cpu1 - cpu0,
        peak: self_peak_rss(),
        processed: s.bytes_processed,
        added: s.bytes_added_raw,
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

fn restic_round(
    location: &str,
    env: &[(String, String)],
    data: &Path,
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
    let out = restic_cmd(location, env)
        .args([
            "backup",
            "--stdin",
            "--stdin-filename",
            "data.ndjson",
            "--json",
            "--quiet",
        ])
        .stdin(std::fs::File::open(data)?)
        .output()?;
    let secs = t0.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "restic backup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let summary: serde_json::Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message_type"] == "summary")
        .context("restic printed no summary")?;
    Ok(Round {
        secs,
        cpu: 0.0,
        peak: 0,
        processed: summary["total_bytes_processed"].as_u64().unwrap_or(0),
        added: summary["data_added"].as_u64().unwrap_or(0),
    })
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

/// Runs the repo benchmark.
pub async fn bench(args: BenchArgs) -> Result<()> {
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
    let mut moto: Option<std::process::Child> = None;
    let mut targets = vec![];
    for t in &args.targets {
        match t.as_str() {
            "local" => {
                let root = work.join("local");
                let _ = std::fs::remove_dir_all(&root);
                std::fs::create_dir_all(&root)?;
                let v = serde_json::json!({"provider": "local", "local": {"mountPath": root.to_str().unwrap()}});
                targets.push(BenchTarget {
                    name: "local".into(),
                    storage: Storage::connect(StorageConfig::from_spec_storage(
                        "bench/local",
                        v,
                        BTreeMap::new(),
                    )?)?,
                    restic_env: vec![],
                });
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
                moto = Some(child);
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
                targets.push(BenchTarget {
                    name: "s3 (moto)".into(),
                    storage: Storage::connect(StorageConfig::from_spec_storage(
                        "bench/s3", v, secrets,
                    )?)?,
                    restic_env: vec![
                        ("AWS_ACCESS_KEY_ID".into(), "AK".into()),
                        ("AWS_SECRET_ACCESS_KEY".into(), "SK".into()),
                    ],
                });
            }
            other => bail!("--targets: unknown target `{other}` (local, s3)"),
        }
    }
    let mib = size as f64 / (1u64 << 20) as f64;
    let gib = size as f64 / (1u64 << 30) as f64;
    println!(
        "data: {:.0} MiB NDJSON, {} rounds per tool and target (medians)",
        mib, args.rounds
    );
    println!(
        "{:<10} {:>12} {:>12} {:>7} {:>14} {:>14} {:>12} {:>12} {:>12} {:>12}",
        "target",
        "kstash MB/s",
        "restic MB/s",
        "ratio",
        "kstash CPU s/GiB",
        "restic CPU s/GiB",
        "kstash peak",
        "restic peak",
        "kstash dedup",
        "restic dedup"
    );
    let result = async {
        for t in &targets {
            let dir = t.storage.repository("bench")?;
            let (mut ks, mut rs) = (vec![], vec![]);
            let (mut k_dedup, mut r_dedup) = (0.0, 0.0);
            for round in 0..args.rounds {
                let repo = dir.component("kstash", &format!("r{round}"), "bench-password")?;
                ks.push(kstash_round(&repo, &data).await?);
                if round == 0 {
                    let again = kstash_round(&repo, &data).await?;
                    k_dedup = again.added as f64 / again.processed.max(1) as f64;
                }
                let loc = dir.component("restic", &format!("r{round}"), "bench-password")?.location().to_string();
                let (cpu0, _) = rusage(libc::RUSAGE_CHILDREN);
                let mut r = restic_round(&loc, &t.restic_env, &data, true)?;
                let (cpu1, peak) = rusage(libc::RUSAGE_CHILDREN);
                r.cpu = cpu1 - cpu0;
                r.peak = peak;
                if round == 0 {
                    let again = restic_round(&loc, &t.restic_env, &data, false)?;
                    r_dedup = again.added as f64 / again.processed.max(1) as f64;
                }
                rs.push(r);
            }
            let mbps = |v: &[Round]| median(v.iter().map(|r| size as f64 / 1e6 / r.secs).collect());
            let (k, r) = (mbps(&ks), mbps(&rs));
            let kc = median(ks.iter().map(|r| r.cpu / gib).collect());
            let rc = median(rs.iter().map(|r| r.cpu / gib).collect());
            let kp = ks.iter().map(|r| r.peak).max().unwrap_or(0);
            let rp = rs.iter().map(|r| r.peak).max().unwrap_or(0);
            println!("{:<10} {:>12.1} {:>12.1} {:>7.2} {:>14.1} {:>14.1} {:>9.0} MiB {:>9.0} MiB {:>11.4}% {:>11.4}%",
                t.name, k, r, k / r, kc, rc, kp as f64 / 1048576.0, rp as f64 / 1048576.0, k_dedup * 100.0, r_dedup * 100.0);
        }
        anyhow::Ok(())
    }.await;
    println!("(MB/s = 10^6 bytes of input per wall-clock second; CPU = user+sys; peak = max RSS; dedup = bytes added by a 2nd identical backup / bytes processed; restic peak = max RSS of any restic child)");
    if let Some(mut m) = moto {
        let _ = m.kill();
        let _ = m.wait();
    }
    if args.workdir.is_none() {
        let _ = std::fs::remove_dir_all(&work);
    }
    result
}
