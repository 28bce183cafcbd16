//! `kstash bench es`: the Elasticsearch addon component (`elasticsearch_addon.wasm`, run through
//! `kstash_runtime` exactly as `kstash addon run` does) against multielasticdump on the same
//! seeded emulator, side by side, plus the emulator's own ceiling (a native PIT + `search_after`
//! client). Backup into a discarding sink and into a directory, restore into a fresh emulator.
//! Prints medians per side and the ratios kstash / multielasticdump and kstash / ceiling.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use clap::Args;
use hyper::Method;
use indicatif::{ProgressBar, ProgressStyle};
use kstash_es_emulator::client::{pit_scan, EsClient};
use kstash_es_emulator::{EmulatorBuilder, RunningEmulator, Seed};
use kstash_runtime::{
    Addon, Digest, DirInput, DirOutput, DiscardOutput, Limits, LogLevel, ProgressUpdate, Runtime,
    RuntimeConfig, Target, TaskEvents, TaskIo, TaskSpec,
};

/// Arguments of the Elasticsearch addon benchmark.
#[derive(Args)]
pub struct EsBenchArgs {
    /// Documents seeded into the source emulator.
    #[arg(long, default_value_t = 200_000)]
    docs: usize,
    /// Indices they are spread over (kinds rotate: logs, users, events).
    #[arg(long, default_value_t = 4)]
    indices: usize,
    /// Size of the few large seeded documents (every 97th `events` document), bytes.
    #[arg(long, default_value_t = 256 * 1024)]
    large_doc_bytes: usize,
    /// Rounds of every measurement (medians are reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The Elasticsearch addon component (built by scripts/build-addons.sh).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../addons/target/wasm32-wasip2/release/elasticsearch_addon.wasm"))]
    module: PathBuf,
    /// multielasticdump (npm `elasticdump`, installed by scripts/ensure-tools.sh).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.tools/node/node_modules/.bin/multielasticdump"))]
    multielasticdump: PathBuf,
    /// Extra options for multielasticdump, both directions (repeatable), e.g. `--med-arg=--limit=1000`.
    #[arg(long = "med-arg", allow_hyphen_values = true)]
    med_args: Vec<String>,
    /// `args` parameter of the component (multielasticdump-style options); default: the addon's.
    #[arg(long)]
    kstash_args: Option<String>,
    /// Page size of the native ceiling scan.
    #[arg(long, default_value_t = 1000)]
    ceiling_page: usize,
    /// Measure backups only.
    #[arg(long)]
    skip_restore: bool,
    /// Directory for the dumps (default: a temporary directory, removed at the end).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Report ratios from a debug build too (CI's smoke run; never quote them).
    #[arg(long)]
    pub allow_debug_build: bool,
}

/// One timed run: what moved and how long it took.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    docs: u64,
    bytes: u64,
    secs: f64,
}

impl Sample {
    fn docs_per_sec(&self) -> f64 {
        self.docs as f64 / self.secs
    }
    fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / self.secs / 1e6
    }
}

/// Median of the per-round values (the upper middle one for an even count).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

/// Medians of one side of the table.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Medians {
    secs: f64,
    docs_per_sec: f64,
    mb_per_sec: f64,
}

fn medians(samples: &[Sample]) -> Medians {
    Medians {
        secs: median(samples.iter().map(|s| s.secs).collect()),
        docs_per_sec: median(samples.iter().map(Sample::docs_per_sec).collect()),
        mb_per_sec: median(samples.iter().map(Sample::mb_per_sec).collect()),
    }
}

/// Counts documents (newlines of `<index>.json` data files) and bytes (every file) of a dump
/// directory in multielasticdump's layout.
fn dump_stats(dir: &Path) -> anyhow::Result<(u64, u64)> {
    const META: [&str; 6] = [
        ".mapping",
        ".settings",
        ".template",
        ".alias",
        ".analyzer",
        ".index",
    ];
    let (mut docs, mut bytes) = (0u64, 0u64);
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.file_type()?.is_file() {
            continue;
        }
        bytes += entry.metadata()?.len();
        let Some(stem) = name.strip_suffix(".json") else {
            continue;
        };
        // `.cluster.*`, `.kstash.manifest`: cluster-wide parts and the manifest, not documents
        // (the bench seeds no data streams, so `.datastream.*` never appears).
        if META.iter().any(|m| stem.ends_with(m)) || stem.starts_with('.') {
            continue;
        }
        docs += count_newlines(&entry.path())?;
    }
    Ok((docs, bytes))
}

/// Newlines in a file, read in 1 MiB chunks (dumps can be large).
fn count_newlines(path: &Path) -> anyhow::Result<u64> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let got = f.read(&mut buf)?;
        if got == 0 {
            return Ok(n);
        }
        n += buf[..got].iter().filter(|&&b| b == b'\n').count() as u64;
    }
}

/// Shows the component's progress on the bench's spinner; log lines above warn are printed.
struct BarEvents {
    bar: ProgressBar,
    prefix: String,
}

/// Prints a line above the spinner, or on stderr when the spinner is hidden (not a terminal:
/// indicatif then drops `println` lines).
fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

/// Sets the spinner's message; without a terminal, prints it as a step line instead.
fn step(bar: &ProgressBar, msg: String) {
    if bar.is_hidden() {
        eprintln!("{msg} ...");
    }
    bar.set_message(msg);
}

impl TaskEvents for BarEvents {
    fn log(&self, level: LogLevel, message: &str) {
        if matches!(level, LogLevel::Warn | LogLevel::Error) {
            say(&self.bar, format!("{}: {message}", self.prefix));
        }
    }

    fn progress(&self, u: &ProgressUpdate) {
        let total = u.total.map(|t| format!("/{t}")).unwrap_or_default();
        self.bar.set_message(format!(
            "{}: {} {}{} {}",
            self.prefix, u.stage, u.done, total, u.unit
        ));
    }
}

/// Everything one bench run shares.
struct Bench {
    args: EsBenchArgs,
    bar: ProgressBar,
    work: PathBuf,
    addon: Addon,
    source: RunningEmulator,
    indices: Vec<String>,
}

/// Runs the benchmark and prints the table.
pub async fn bench(args: EsBenchArgs) -> anyhow::Result<()> {
    crate::benchkit::refuse_debug_ratios(args.allow_debug_build)?;
    eprintln!("{}", crate::benchkit::machine_line());
    ensure!(args.docs > 0, "--docs must be at least 1");
    ensure!(args.indices > 0, "--indices must be at least 1");
    ensure!(args.rounds > 0, "--rounds must be at least 1");
    ensure!(
        (1..=10_000).contains(&args.ceiling_page),
        "--ceiling-page must be within 1..=10000"
    );
    if !args.module.is_file() {
        bail!(
            "--module {}: not found (build it with scripts/build-addons.sh)",
            args.module.display()
        );
    }
    if !args.multielasticdump.is_file() {
        bail!(
            "--multielasticdump {}: not found (install it with scripts/ensure-tools.sh)",
            args.multielasticdump.display()
        );
    }
    let tmp;
    let work = match &args.work_dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("--work-dir {}", d.display()))?;
            d.clone()
        }
        None => {
            tmp = TempDir::new()?;
            tmp.0.clone()
        }
    };

    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));

    step(
        &bar,
        format!(
            "seeding {} documents in {} indices",
            args.docs, args.indices
        ),
    );
    let seed = Seed {
        docs: args.docs,
        indices: args.indices,
        large_doc_bytes: args.large_doc_bytes,
        seed: 42,
    };
    let source = spawn_emulator(Some(seed)).await?;
    let indices: Vec<String> = (0..args.indices)
        .map(kstash_es_emulator::seed::index_name)
        .collect();

    step(&bar, "compiling the component".to_string());
    let runtime = Runtime::new(RuntimeConfig {
        max_concurrent_tasks: 2,
        ..RuntimeConfig::default()
    })?;
    let wasm = std::fs::read(&args.module)
        .with_context(|| format!("--module: reading {}", args.module.display()))?;
    let t = Instant::now();
    let addon = runtime
        .load(&wasm, &Digest::of(&wasm))
        .await
        .with_context(|| format!("loading {}", args.module.display()))?;
    let compile = t.elapsed();

    let b = Bench {
        args,
        bar,
        work,
        addon,
        source,
        indices,
    };
    let result = b.run_rounds(compile).await;
    b.bar.finish_and_clear();
    let table = result?;
    println!("{table}");
    Ok(())
}

/// Results of every side, in table order.
struct Results {
    rows: Vec<(&'static str, Vec<Sample>)>,
}

impl Bench {
    async fn run_rounds(&self, compile: Duration) -> anyhow::Result<String> {
        let a = &self.args;
        let mut res = Results {
            rows: vec![
                ("kstash component backup -> discard", vec![]),
                ("kstash component backup -> dir", vec![]),
                ("multielasticdump dump -> dir", vec![]),
                ("emulator ceiling (native PIT scan)", vec![]),
            ],
        };
        if !a.skip_restore {
            res.rows.push(("kstash component restore <- dir", vec![]));
            res.rows.push(("multielasticdump load <- dir", vec![]));
        }
        for round in 1..=a.rounds {
            let tag = format!("round {round}/{}", a.rounds);
            let s = self.kstash_backup_discard(&tag).await?;
            self.done(&tag, res.rows[0].0, &s);
            res.rows[0].1.push(s);

            let kdir = self.work.join(format!("kstash-dump-{round}"));
            let s = self.kstash_backup_dir(&tag, &kdir).await?;
            self.done(&tag, res.rows[1].0, &s);
            res.rows[1].1.push(s);

            let mdir = self.work.join(format!("med-dump-{round}"));
            let s = self.med_dump(&tag, &mdir).await?;
            self.done(&tag, res.rows[2].0, &s);
            res.rows[2].1.push(s);

            let s = self.ceiling(&tag).await?;
            self.done(&tag, res.rows[3].0, &s);
            res.rows[3].1.push(s);

            if !a.skip_restore {
                let s = self.kstash_restore(&tag, &kdir).await?;
                self.done(&tag, res.rows[4].0, &s);
                res.rows[4].1.push(s);

                let s = self.med_load(&tag, &kdir).await?;
                self.done(&tag, res.rows[5].0, &s);
                res.rows[5].1.push(s);
            }
            if a.work_dir.is_none() {
                let _ = std::fs::remove_dir_all(&kdir);
                let _ = std::fs::remove_dir_all(&mdir);
            }
        }
        Ok(self.table(&res, compile))
    }

    fn done(&self, tag: &str, what: &str, s: &Sample) {
        say(
            &self.bar,
            format!(
                "{tag}: {what}: {} docs, {:.1} MB in {:.2} s ({:.0} docs/s, {:.1} MB/s)",
                s.docs,
                s.bytes as f64 / 1e6,
                s.secs,
                s.docs_per_sec(),
                s.mb_per_sec()
            ),
        );
    }

    fn params(&self) -> Vec<(String, String)> {
        match &self.args.kstash_args {
            Some(a) => vec![("args".to_string(), a.clone())],
            None => Vec::new(),
        }
    }

    fn events(&self, prefix: String) -> Arc<BarEvents> {
        step(&self.bar, prefix.clone());
        Arc::new(BarEvents {
            bar: self.bar.clone(),
            prefix,
        })
    }

    async fn run_component(
        &self,
        task: &str,
        url: &str,
        io: TaskIo,
    ) -> anyhow::Result<(kstash_runtime::TaskReport, f64)> {
        let spec = TaskSpec {
            task: task.to_string(),
            params: self.params(),
            target: Target::new(url),
            limits: Limits::default(),
        };
        let t = Instant::now();
        let report = self
            .addon
            .run(spec, io)
            .await
            .with_context(|| format!("component task {task} failed"))?;
        Ok((report, t.elapsed().as_secs_f64()))
    }

    async fn kstash_backup_discard(&self, tag: &str) -> anyhow::Result<Sample> {
        let sink = Arc::new(DiscardOutput::new());
        let io = TaskIo {
            output: Some(sink.clone()),
            input: None,
            events: self.events(format!("{tag}: kstash backup -> discard")),
        };
        let (report, secs) = self
            .run_component("logical-backup", &self.source.url, io)
            .await?;
        self.check_docs("kstash backup -> discard", report.items)?;
        Ok(Sample {
            docs: report.items,
            bytes: sink.total_bytes(),
            secs,
        })
    }

    async fn kstash_backup_dir(&self, tag: &str, dir: &Path) -> anyhow::Result<Sample> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let io = TaskIo {
            output: Some(Arc::new(DirOutput::new(dir))),
            input: None,
            events: self.events(format!("{tag}: kstash backup -> dir")),
        };
        let (_, secs) = self
            .run_component("logical-backup", &self.source.url, io)
            .await?;
        let (docs, bytes) = dump_stats(dir)?;
        self.check_docs("kstash backup -> dir", docs)?;
        Ok(Sample { docs, bytes, secs })
    }

    async fn med_dump(&self, tag: &str, dir: &Path) -> anyhow::Result<Sample> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        step(
            &self.bar,
            format!("{tag}: multielasticdump --direction=dump"),
        );
        let mut args = vec![
            "--direction=dump".to_string(),
            format!("--input={}", self.source.url),
            format!("--output={}", dir.display()),
            "--parallel=2".to_string(),
            "--match=^(?![.])(?!apm-agent-configuration)(?!kubedb-system).+".to_string(),
        ];
        args.extend(self.args.med_args.iter().cloned());
        let secs = self.run_med(&args, "dump").await?;
        let (docs, bytes) = dump_stats(dir)?;
        self.check_docs("multielasticdump dump", docs)?;
        Ok(Sample { docs, bytes, secs })
    }

    async fn run_med(&self, args: &[String], what: &str) -> anyhow::Result<f64> {
        let log = self.work.join(format!("multielasticdump-{what}.log"));
        let out = std::fs::File::create(&log)?;
        let err = out.try_clone()?;
        let t = Instant::now();
        let status = tokio::process::Command::new(&self.args.multielasticdump)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .status()
            .await
            .with_context(|| format!("running {}", self.args.multielasticdump.display()))?;
        let secs = t.elapsed().as_secs_f64();
        if !status.success() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: String = text
                .chars()
                .rev()
                .take(2000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            bail!("multielasticdump {what} failed ({status}):\n{tail}");
        }
        Ok(secs)
    }

    async fn ceiling(&self, tag: &str) -> anyhow::Result<Sample> {
        step(&self.bar, format!("{tag}: native PIT + search_after scan"));
        let client = EsClient::new(&self.source.url, None, None)?;
        let t = Instant::now();
        let (mut docs, mut bytes) = (0, 0);
        for index in &self.indices {
            let r = pit_scan(&client, index, self.args.ceiling_page)
                .await
                .with_context(|| format!("scanning {index}"))?;
            docs += r.docs;
            bytes += r.bytes;
        }
        let secs = t.elapsed().as_secs_f64();
        self.check_docs("ceiling scan", docs)?;
        Ok(Sample { docs, bytes, secs })
    }

    async fn kstash_restore(&self, tag: &str, dump: &Path) -> anyhow::Result<Sample> {
        let target = spawn_emulator(None).await?;
        let (_, bytes) = dump_stats(dump)?;
        let io = TaskIo {
            output: None,
            input: Some(Arc::new(DirInput::new(dump))),
            events: self.events(format!("{tag}: kstash restore")),
        };
        let (_, secs) = self
            .run_component("logical-backup-restore", &target.url, io)
            .await?;
        let docs = self.count(&target).await?;
        self.check_docs("kstash restore", docs)?;
        stop_emulator(target).await;
        Ok(Sample { docs, bytes, secs })
    }

    async fn med_load(&self, tag: &str, dump: &Path) -> anyhow::Result<Sample> {
        let target = spawn_emulator(None).await?;
        let (_, bytes) = dump_stats(dump)?;
        step(
            &self.bar,
            format!("{tag}: multielasticdump --direction=load"),
        );
        let mut args = vec![
            "--direction=load".to_string(),
            format!("--input={}", dump.display()),
            format!("--output={}", target.url),
            "--parallel=2".to_string(),
        ];
        args.extend(self.args.med_args.iter().cloned());
        // kstash's cluster-wide parts are `.`-named files multielasticdump does not know;
        // KubeStash's default `--match` skips them, as a user loading a kstash dump would.
        if !args.iter().any(|a| a.starts_with("--match=")) {
            args.push("--match=^[^.]".to_string());
        }
        let secs = self.run_med(&args, "load").await?;
        let docs = self.count(&target).await?;
        self.check_docs("multielasticdump load", docs)?;
        stop_emulator(target).await;
        Ok(Sample { docs, bytes, secs })
    }

    /// Documents in the bench's indices of `emu` (`GET /<i>/_count`).
    async fn count(&self, emu: &RunningEmulator) -> anyhow::Result<u64> {
        let client = EsClient::new(&emu.url, None, None)?;
        let mut n = 0;
        for index in &self.indices {
            let (status, v) = client
                .json(Method::GET, &format!("/{index}/_count"), None)
                .await?;
            let c = v["count"]
                .as_u64()
                .with_context(|| format!("GET /{index}/_count answered {status}: {v}"))?;
            n += c;
        }
        Ok(n)
    }

    fn check_docs(&self, what: &str, docs: u64) -> anyhow::Result<()> {
        ensure!(
            docs == self.args.docs as u64,
            "{what}: {docs} documents, expected {}",
            self.args.docs
        );
        Ok(())
    }

    fn table(&self, res: &Results, compile: Duration) -> String {
        let a = &self.args;
        let mut out = format!(
            "Elasticsearch addon benchmark: {} documents in {} indices, {} round(s), medians\n\
             component {} compiled in {:.2} s (not counted); kstash args: {}; multielasticdump: --parallel=2 {}\n\n",
            a.docs,
            a.indices,
            a.rounds,
            self.addon.digest(),
            compile.as_secs_f64(),
            a.kstash_args.as_deref().unwrap_or("(addon default)"),
            a.med_args.join(" "),
        );
        out += &format!(
            "{:<38} {:>9} {:>11} {:>9}\n",
            "side", "time s", "docs/s", "MB/s"
        );
        let m: Vec<Medians> = res.rows.iter().map(|(_, s)| medians(s)).collect();
        for ((name, _), m) in res.rows.iter().zip(&m) {
            out += &format!(
                "{name:<38} {:>9.2} {:>11.0} {:>9.1}\n",
                m.secs, m.docs_per_sec, m.mb_per_sec
            );
        }
        let ratio = |x: &Medians, y: &Medians| x.docs_per_sec / y.docs_per_sec;
        out += "\nratios (docs/s medians)\n";
        out += &format!(
            "  backup  kstash->dir / multielasticdump dump : {:.2}\n",
            ratio(&m[1], &m[2])
        );
        out += &format!(
            "  backup  kstash->discard / multielasticdump  : {:.2}\n",
            ratio(&m[0], &m[2])
        );
        out += &format!(
            "  backup  kstash->discard / emulator ceiling  : {:.2}\n",
            ratio(&m[0], &m[3])
        );
        out += &format!(
            "  backup  kstash->dir / emulator ceiling      : {:.2}\n",
            ratio(&m[1], &m[3])
        );
        if m.len() > 5 {
            out += &format!(
                "  restore kstash / multielasticdump load      : {:.2}\n",
                ratio(&m[4], &m[5])
            );
        }
        out += "\nMB/s: bytes of the dump (multielasticdump's layout) per second; the ceiling counts the search answers' bytes.";
        out
    }
}

/// Starts an emulator on its own runtime (so it does not share the bench's executor).
async fn spawn_emulator(seed: Option<Seed>) -> anyhow::Result<RunningEmulator> {
    tokio::task::spawn_blocking(move || {
        let mut b = EmulatorBuilder::new();
        if let Some(s) = seed {
            b = b.seed(s);
        }
        b.spawn()
    })
    .await
    .context("emulator thread")?
    .context("starting the emulator")
}

/// Stops an emulator off the async threads (its runtime shuts down in the background).
async fn stop_emulator(emu: RunningEmulator) {
    let _ = tokio::task::spawn_blocking(move || drop(emu)).await;
}

/// A temporary directory removed on drop (the CLI has no `tempfile` dependency).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("kstash-bench-es-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_takes_the_middle_value() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![5.0]), 5.0);
        assert!(median(vec![]).is_nan());
    }

    #[test]
    fn dump_stats_counts_data_lines_and_every_byte() {
        let dir = TempDir::new().unwrap();
        let p = |n: &str| dir.0.join(n);
        std::fs::write(p("logs-000.json"), "{\"_id\":\"1\"}\n{\"_id\":\"2\"}\n").unwrap();
        std::fs::write(p("logs-000.mapping.json"), "{\"a\":1}\n").unwrap();
        std::fs::write(p("logs-000.settings.json"), "\"{}\"\n").unwrap();
        std::fs::write(p("users-001.json"), "{\"_id\":\"u\"}\n").unwrap();
        std::fs::write(p(".cluster.ilm_policies.json"), "{}\n").unwrap();
        let (docs, bytes) = dump_stats(&dir.0).unwrap();
        assert_eq!(docs, 3);
        assert_eq!(bytes, 24 + 8 + 5 + 12 + 3);
    }
}
