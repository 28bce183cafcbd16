//! `kstash addon run|inspect` and `kstash bench runtime`: run one task of a WASM addon with no
//! cluster, show what a module is, and measure the runtime.

mod bench;
mod bench_es;
mod bench_postgres;
mod bench_redis;
mod events;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use kstash_runtime::{
    ClientCert, Credentials, Digest, DirInput, DirOutput, Limits, ParamKind, Runtime,
    RuntimeConfig, Target, TaskIo, TaskKind, TaskSpec,
};

pub use bench::{bench, BenchArgs};
pub use bench_es::{bench as bench_es, EsBenchArgs};
pub use bench_postgres::{bench as bench_postgres, PostgresBenchArgs};
pub use bench_redis::{bench as bench_redis, RedisBenchArgs};

/// `kstash addon` subcommands.
#[derive(Subcommand)]
pub enum AddonCommand {
    /// Run one task of an addon module against a target, with no cluster.
    Run(Box<RunArgs>),
    /// Print an addon module's description and digest.
    Inspect(InspectArgs),
}

/// Arguments of `kstash addon run`.
#[derive(Args)]
pub struct RunArgs {
    /// The addon component (`.wasm`, built for wasm32-wasip2).
    #[arg(long)]
    module: PathBuf,
    /// Pinned digest (`sha256:<hex>`); the module is refused if it differs.
    /// Without it, the module's own digest is used and printed.
    #[arg(long)]
    digest: Option<String>,
    /// Task name from the addon's description, e.g. `logical-backup`.
    #[arg(long)]
    task: String,
    /// The target's base URL; the only origin the addon may reach.
    #[arg(long)]
    target_url: String,
    /// User name for basic auth (with --password-file).
    #[arg(long, requires = "password_file")]
    username: Option<String>,
    /// File holding the basic-auth password (trailing newline ignored).
    #[arg(long, requires = "username")]
    password_file: Option<PathBuf>,
    /// File holding a bearer token.
    #[arg(long, conflicts_with_all = ["username", "api_key_file"])]
    bearer_token_file: Option<PathBuf>,
    /// File holding an API key (sent as `Authorization: ApiKey <key>`).
    #[arg(long, conflicts_with = "username")]
    api_key_file: Option<PathBuf>,
    /// CA bundle (PEM) to verify an https target (default: the webpki roots).
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM) for mutual TLS.
    #[arg(long, requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    #[arg(long, requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// A task parameter, `key=value`; repeat for several.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// Backup tasks: directory that receives one file per output stream.
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Restore tasks: directory whose files are the input streams.
    #[arg(long)]
    in_dir: Option<PathBuf>,
    /// Guest memory limit, MiB.
    #[arg(long, default_value_t = 256)]
    memory_mib: u64,
    /// Wall-clock limit of the task, seconds.
    #[arg(long, default_value_t = 3600)]
    timeout_secs: u64,
    /// CPU-time limit of guest code, seconds.
    #[arg(long, default_value_t = 1800)]
    cpu_secs: u64,
    /// Limit on the total bytes written to output streams, MiB.
    #[arg(long)]
    max_written_mib: Option<u64>,
    /// Directory for precompiled modules (speeds up the next run of the same module).
    #[arg(long, env = "KSTASH_MODULE_CACHE")]
    cache_dir: Option<PathBuf>,
}

/// Arguments of `kstash addon inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// The addon component (`.wasm`).
    module: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs a `kstash addon` subcommand.
pub async fn run(cmd: AddonCommand) -> anyhow::Result<()> {
    match cmd {
        AddonCommand::Run(args) => run_task(*args).await,
        AddonCommand::Inspect(args) => inspect(args).await,
    }
}

fn parse_param(p: &str) -> anyhow::Result<(String, String)> {
    match p.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => bail!("--param {p:?}: expected key=value"),
    }
}

fn read_secret(path: &Path, what: &str) -> anyhow::Result<String> {
    let s = std::fs::read_to_string(path)
        .with_context(|| format!("{what}: reading {}", path.display()))?;
    let s = s.trim_end_matches(['\r', '\n']).to_string();
    if s.is_empty() {
        bail!("{what}: {} is empty", path.display());
    }
    Ok(s)
}

fn read_file(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{what}: reading {}", path.display()))
}

async fn load(
    runtime: &Runtime,
    module: &Path,
    digest: Option<&str>,
) -> anyhow::Result<kstash_runtime::Addon> {
    let bytes = read_file(module, "--module")?;
    let pinned = match digest {
        Some(d) => d.parse::<Digest>().context("--digest")?,
        None => Digest::of(&bytes),
    };
    runtime
        .load(&bytes, &pinned)
        .await
        .with_context(|| format!("loading {}", module.display()))
}

fn target_from(args: &RunArgs) -> anyhow::Result<Target> {
    let credentials = if let (Some(u), Some(pf)) = (&args.username, &args.password_file) {
        Credentials::Basic {
            username: u.clone(),
            password: read_secret(pf, "--password-file")?,
        }
    } else if let Some(f) = &args.bearer_token_file {
        Credentials::Bearer(read_secret(f, "--bearer-token-file")?)
    } else if let Some(f) = &args.api_key_file {
        Credentials::ApiKey(read_secret(f, "--api-key-file")?)
    } else {
        Credentials::None
    };
    let ca_bundle_pem = args
        .ca_file
        .as_deref()
        .map(|p| read_file(p, "--ca-file"))
        .transpose()?;
    let client_cert = match (&args.client_cert, &args.client_key) {
        (Some(c), Some(k)) => Some(ClientCert {
            cert_chain_pem: read_file(c, "--client-cert")?,
            private_key_pem: read_file(k, "--client-key")?,
        }),
        _ => None,
    };
    Ok(Target {
        url: args.target_url.clone(),
        credentials,
        ca_bundle_pem,
        client_cert,
        pinned_addrs: Vec::new(),
    })
}

async fn run_task(args: RunArgs) -> anyhow::Result<()> {
    let params = args
        .params
        .iter()
        .map(|p| parse_param(p.as_str()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let target = target_from(&args)?;
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: args.cache_dir.clone(),
        max_concurrent_tasks: 1,
        max_task_memory: (args.memory_mib << 20).max(256 << 20),
        ..RuntimeConfig::default()
    })?;
    let addon = load(&runtime, &args.module, args.digest.as_deref()).await?;
    let desc = addon.description();
    let Some(def) = desc.task(&args.task) else {
        bail!(
            "--task {:?}: addon {} has no such task (tasks: {})",
            args.task,
            desc.name,
            desc.tasks
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    for p in def.params.iter().filter(|p| p.required) {
        if !params.iter().any(|(k, _)| k == &p.name) {
            bail!(
                "--param {}=...: required by task {:?} ({})",
                p.name,
                def.name,
                p.description
            );
        }
    }
    let events = Arc::new(events::CliEvents::new());
    let mut io = TaskIo {
        output: None,
        input: None,
        events: events.clone(),
    };
    match def.kind {
        TaskKind::Backup => {
            let Some(dir) = &args.out_dir else {
                bail!("--out-dir is required: task {:?} is a backup", def.name);
            };
            std::fs::create_dir_all(dir)
                .with_context(|| format!("--out-dir: creating {}", dir.display()))?;
            io.output = Some(Arc::new(DirOutput::new(dir)));
        }
        TaskKind::Restore => {
            let Some(dir) = &args.in_dir else {
                bail!("--in-dir is required: task {:?} is a restore", def.name);
            };
            if !dir.is_dir() {
                bail!("--in-dir {}: not a directory", dir.display());
            }
            io.input = Some(Arc::new(DirInput::new(dir)));
        }
    }
    eprintln!(
        "addon {} {} ({}), task {} against {}",
        desc.name,
        desc.version,
        addon.digest(),
        def.name,
        args.target_url
    );
    let limits = Limits {
        memory_bytes: args.memory_mib << 20,
        cpu_time: Duration::from_secs(args.cpu_secs),
        wall_clock: Duration::from_secs(args.timeout_secs),
        max_bytes_written: args
            .max_written_mib
            .map_or(Limits::default().max_bytes_written, |m| m << 20),
        ..Limits::default()
    };
    let spec = TaskSpec {
        task: args.task.clone(),
        params,
        target,
        limits,
    };
    let result = addon.run(spec, io).await;
    events.finish();
    let report = result.with_context(|| format!("task {} failed", args.task))?;
    println!(
        "task {} finished in {:.2?}: {} items, {} bytes, {} requests",
        args.task, report.duration, report.items, report.bytes, report.requests
    );
    for (name, size) in &report.streams {
        println!("  stream {name}: {size} bytes");
    }
    if report.connections > 0 {
        println!(
            "  tcp: {} connection(s), {} bytes in, {} bytes out",
            report.connections, report.target_bytes_in, report.target_bytes_out
        );
    }
    for p in &report.parts {
        println!("  part {}: {} items, {} bytes", p.name, p.items, p.bytes);
    }
    for w in &report.warnings {
        println!("  warning: {w}");
    }
    for n in &report.notices {
        let kind = match n.kind {
            kstash_runtime::NoticeKind::Warning => "warning",
            kstash_runtime::NoticeKind::Skipped => "skipped",
        };
        match &n.item {
            Some(item) => println!("  {kind} {item}: {}", n.message),
            None => println!("  {kind}: {}", n.message),
        }
    }
    for d in &report.denied {
        println!("  denied request to {d}");
    }
    Ok(())
}

async fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    let runtime = Runtime::new(RuntimeConfig {
        max_concurrent_tasks: 1,
        ..RuntimeConfig::default()
    })?;
    let addon = load(&runtime, &args.module, None).await?;
    let d = addon.description();
    if args.json {
        let tasks: Vec<_> = d
            .tasks
            .iter()
            .map(|t| {
                serde_json::json!({
                    "name": t.name,
                    "kind": kind_name(t.kind),
                    "description": t.description,
                    "components": t.components,
                    "params": t.params.iter().map(|p| serde_json::json!({
                        "name": p.name,
                        "description": p.description,
                        "kind": param_kind_name(p.kind),
                        "required": p.required,
                        "default": p.default_value,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let v = serde_json::json!({
            "digest": addon.digest().to_string(),
            "name": d.name,
            "version": d.version,
            "summary": d.summary,
            "components": d.components,
            "tasks": tasks,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("digest:     {}", addon.digest());
    println!("name:       {}", d.name);
    println!("version:    {}", d.version);
    println!("summary:    {}", d.summary);
    println!("components: {}", d.components.join(", "));
    println!("tasks:");
    for t in &d.tasks {
        println!("  {} ({}): {}", t.name, kind_name(t.kind), t.description);
        for p in &t.params {
            let req = if p.required { "required" } else { "optional" };
            let def = p
                .default_value
                .as_deref()
                .map(|v| format!(", default {v:?}"))
                .unwrap_or_default();
            println!(
                "    --param {}=<{}>  {req}{def}: {}",
                p.name,
                param_kind_name(p.kind),
                p.description
            );
        }
    }
    Ok(())
}

fn kind_name(k: TaskKind) -> &'static str {
    match k {
        TaskKind::Backup => "backup",
        TaskKind::Restore => "restore",
    }
}

fn param_kind_name(k: ParamKind) -> &'static str {
    match k {
        ParamKind::Text => "text",
        ParamKind::Integer => "integer",
        ParamKind::Boolean => "boolean",
        ParamKind::TextList => "text-list",
    }
}
