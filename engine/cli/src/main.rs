//! The `kstash` binary: one entry point for the operator, the embedded control plane, the
//! blueprint dry run, addon tasks without a cluster, repository inspection and benchmarks.
//!
//! Each subcommand group lives in its own module; `main` only parses and dispatches.

#[cfg(feature = "addon")]
mod addon;
#[cfg(any(feature = "addon", feature = "repo", feature = "controlplane"))]
mod benchkit;
#[cfg(feature = "controlplane")]
mod controlplane;
#[cfg(feature = "render")]
mod crds;
#[cfg(feature = "operator")]
mod operator;
#[cfg(feature = "plugin")]
mod plugin;
#[cfg(feature = "render")]
mod render;
#[cfg(feature = "repo")]
mod repo;
#[cfg(feature = "operator")]
mod up;

use clap::{Parser, Subcommand};

/// kstash: Kubernetes backups that speak KubeStash's API, with database addons as WASM components.
#[derive(Parser)]
#[command(name = "kstash", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Render a BackupBlueprint for an annotated target and print the BackupConfiguration.
    #[cfg(feature = "render")]
    Render(render::RenderArgs),
    /// Print every CustomResourceDefinition kstash serves, as YAML.
    #[cfg(feature = "render")]
    Crds(crds::CrdsArgs),
    /// Run or inspect a WASM addon without a cluster.
    #[cfg(feature = "addon")]
    #[command(subcommand)]
    Addon(addon::AddonCommand),
    /// Inspect and maintain restic repositories laid out by KubeStash, without a cluster.
    #[cfg(feature = "repo")]
    #[command(subcommand)]
    Repo(repo::RepoCommand),
    /// Run the embedded Kubernetes-compatible API server.
    #[cfg(feature = "controlplane")]
    Controlplane(controlplane::ControlplaneArgs),
    /// Run the controllers against a Kubernetes API (a cluster, or the embedded control plane).
    #[cfg(feature = "operator")]
    Operator(Box<operator::OperatorArgs>),
    /// Start the embedded control plane and the operator in one process: kstash on one machine.
    #[cfg(feature = "operator")]
    Up(up::UpArgs),
    /// kubectl-plugin verbs (`kubectl kstash <verb>` when installed as `kubectl-kstash`).
    #[cfg(feature = "plugin")]
    #[command(flatten)]
    Plugin(plugin::PluginCommand),
    /// Benchmarks that print medians and ratios against a reference run side by side.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Addon runtime: instantiate+call, stream throughput, guest HTTP vs native, compile vs cached load.
    #[cfg(feature = "addon")]
    Runtime(addon::BenchArgs),
    /// Elasticsearch addon component vs multielasticdump on the same emulator, and its ceiling.
    #[cfg(feature = "addon")]
    Es(addon::EsBenchArgs),
    /// Redis addon via `kstash addon run` vs `redis-cli --rdb` / `--pipe` on the same server.
    #[cfg(feature = "addon")]
    Redis(addon::RedisBenchArgs),
    /// PostgreSQL addon via `kstash addon run` vs `pg_dump -Fp` / `psql -f` on the same server.
    #[cfg(feature = "addon")]
    Postgres(addon::PostgresBenchArgs),
    /// Repository ingest vs `restic backup --stdin`, dedup ratio, CPU and memory.
    #[cfg(feature = "repo")]
    Repo(repo::BenchArgs),
    /// Control plane: objects created per second, watch latency, memory.
    #[cfg(feature = "controlplane")]
    Controlplane(controlplane::BenchArgs),
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("KSTASH_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    init_tracing();
    let cli = Cli::parse();
    let result = match cli.command {
        #[cfg(feature = "render")]
        Command::Render(args) => render::run(args).await,
        #[cfg(feature = "render")]
        Command::Crds(args) => crds::run(args).await,
        #[cfg(feature = "addon")]
        Command::Addon(cmd) => addon::run(cmd).await,
        #[cfg(feature = "repo")]
        Command::Repo(cmd) => repo::run(cmd).await,
        #[cfg(feature = "controlplane")]
        Command::Controlplane(args) => controlplane::run(args).await,
        #[cfg(feature = "operator")]
        Command::Operator(args) => operator::run(*args).await,
        #[cfg(feature = "operator")]
        Command::Up(args) => up::run(args).await,
        #[cfg(feature = "plugin")]
        Command::Plugin(cmd) => plugin::run(cmd).await,
        Command::Bench(cmd) => match cmd {
            #[cfg(feature = "addon")]
            BenchCommand::Runtime(args) => addon::bench(args).await,
            #[cfg(feature = "addon")]
            BenchCommand::Es(args) => addon::bench_es(args).await,
            #[cfg(feature = "addon")]
            BenchCommand::Redis(args) => addon::bench_redis(args).await,
            #[cfg(feature = "addon")]
            BenchCommand::Postgres(args) => addon::bench_postgres(args).await,
            #[cfg(feature = "repo")]
            BenchCommand::Repo(args) => repo::bench(args).await,
            #[cfg(feature = "controlplane")]
            BenchCommand::Controlplane(args) => controlplane::bench(args).await,
        },
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // One line with the whole cause chain: what failed and why.
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
