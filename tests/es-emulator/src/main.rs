//! `kstash-es-emulator`: serve an in-memory Elasticsearch 8 stand-in, or measure its ceiling.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use kstash_es_emulator::client::{pit_scan, EsClient};
use kstash_es_emulator::{EmulatorBuilder, Faults, Flavor, Seed};

/// An Elasticsearch 8 REST emulator for tests.
#[derive(Parser, Debug)]
#[command(name = "kstash-es-emulator", version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9200")]
    listen: SocketAddr,
    /// Serve HTTPS and write ca.crt (plus server.crt/server.key) into this directory.
    #[arg(long)]
    tls_dir: Option<PathBuf>,
    /// Basic-auth user (requires --password).
    #[arg(long, requires = "password")]
    user: Option<String>,
    /// Basic-auth password (requires --user).
    #[arg(long, requires = "user")]
    password: Option<String>,
    /// Append JSON lines {method, path, query, status, fault?} for every request.
    #[arg(long)]
    request_log: Option<PathBuf>,
    /// Seed this many documents.
    #[arg(long, default_value_t = 0)]
    seed_docs: usize,
    /// Spread seeded documents over this many indices.
    #[arg(long, default_value_t = 0)]
    seed_indices: usize,
    /// Size in bytes of the few large seeded documents (0 = none).
    #[arg(long, default_value_t = 256 * 1024)]
    seed_large_doc_bytes: usize,
    /// Share of requests answered 429 (0..1).
    #[arg(long, default_value_t = 0.0)]
    fault_429_rate: f64,
    /// Share of requests answered 503 (0..1).
    #[arg(long, default_value_t = 0.0)]
    fault_5xx_rate: f64,
    /// Delay in milliseconds added to requests.
    #[arg(long, default_value_t = 0)]
    fault_delay_ms: u64,
    /// Share of requests delayed by --fault-delay-ms (0..1).
    #[arg(long, default_value_t = 1.0)]
    fault_delay_rate: f64,
    /// Share of requests whose connection is dropped mid-response (0..1).
    #[arg(long, default_value_t = 0.0)]
    fault_drop_rate: f64,
    /// Share of _bulk items answered 429 inside a 200 response (0..1).
    #[arg(long, default_value_t = 0.0)]
    fault_bulk_item_429_rate: f64,
    /// Seed for fault decisions and generated ids.
    #[arg(long, default_value_t = 0)]
    fault_seed: u64,
    /// Limit request-level faults to paths containing this substring (repeatable).
    #[arg(long = "fault-path")]
    fault_paths: Vec<String>,
    /// Share of search/scroll/count answers in which one shard fails (0..1).
    #[arg(long, default_value_t = 0.0)]
    fault_shard_failure_rate: f64,
    /// Every N-th search on a point in time finds it expired (0 = never).
    #[arg(long, default_value_t = 0)]
    fault_pit_expire_every: u64,
    /// Every new point in time, scroll or search sees the shards in another order.
    #[arg(long)]
    fault_shuffle_shards: bool,
    /// Every N-th scroll continuation is handled (the scroll moves on) and its connection then
    /// closed without a response: an answer lost after the server advanced (0 = never).
    #[arg(long, default_value_t = 0)]
    fault_scroll_lost_answer_every: u64,
    /// Answer as `elasticsearch` (8.19) or `opensearch` (2.x).
    #[arg(long, default_value = "elasticsearch", value_parser = ["elasticsearch", "opensearch"])]
    flavor: String,
    /// No point-in-time API (as Elasticsearch before 7.10).
    #[arg(long)]
    no_pit: bool,
    /// Start with the stack-managed templates, ILM policies and pipeline of a fresh cluster.
    #[arg(long)]
    builtins: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Measure a native PIT + search_after client paging one index (the emulator's ceiling).
    Bench {
        /// Documents in the index.
        #[arg(long, default_value_t = 200_000)]
        docs: usize,
        /// Hits per page.
        #[arg(long, default_value_t = 1000)]
        page: usize,
        /// Runs (the median is reported).
        #[arg(long, default_value_t = 5)]
        repeat: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Bench { docs, page, repeat }) = cli.command {
        return bench(docs, page, repeat).await;
    }
    if cli.seed_docs > 0 && cli.seed_indices == 0 {
        bail!("--seed-docs needs --seed-indices > 0");
    }
    let mut b = EmulatorBuilder::new().listen(cli.listen).faults(Faults {
        rate_429: cli.fault_429_rate,
        rate_5xx: cli.fault_5xx_rate,
        drop_rate: cli.fault_drop_rate,
        delay_ms: cli.fault_delay_ms,
        delay_rate: cli.fault_delay_rate,
        bulk_item_429_rate: cli.fault_bulk_item_429_rate,
        shard_failure_rate: cli.fault_shard_failure_rate,
        pit_expire_every: cli.fault_pit_expire_every,
        shuffle_shards: cli.fault_shuffle_shards,
        scroll_lost_answer_every: cli.fault_scroll_lost_answer_every,
        seed: cli.fault_seed,
        paths: cli.fault_paths,
    });
    if cli.flavor == "opensearch" {
        b = b.flavor(Flavor::OpenSearch);
    }
    if cli.no_pit {
        b = b.without_pit();
    }
    b = b.builtins(cli.builtins);
    if let Some(d) = cli.tls_dir {
        b = b.tls_dir(d);
    }
    if let (Some(u), Some(p)) = (cli.user, cli.password) {
        b = b.auth(u, p);
    }
    if let Some(l) = cli.request_log {
        b = b.request_log(l);
    }
    if cli.seed_indices > 0 {
        b = b.seed(Seed {
            docs: cli.seed_docs,
            indices: cli.seed_indices,
            large_doc_bytes: cli.seed_large_doc_bytes,
            seed: 42,
        });
    }
    let emu = b.start().await.context("starting the emulator")?;
    println!("{}", emu.url);
    tokio::signal::ctrl_c()
        .await
        .context("waiting for ctrl-c")?;
    drop(emu);
    Ok(())
}

async fn bench(docs: usize, page: usize, repeat: usize) -> anyhow::Result<()> {
    let emu = EmulatorBuilder::new()
        .seed(Seed {
            docs,
            indices: 1,
            large_doc_bytes: 0,
            seed: 7,
        })
        .start()
        .await?;
    let client = EsClient::new(&emu.url, None, None)?;
    let mut runs = Vec::new();
    for _ in 0..repeat.max(1) {
        let r = pit_scan(&client, "logs-000", page).await?;
        if r.docs != docs as u64 {
            bail!("scan read {} documents, expected {docs}", r.docs);
        }
        runs.push(r);
    }
    runs.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    let m = runs[runs.len() / 2];
    println!(
        "emulator ceiling (native PIT+search_after, page {page}, {} runs): median {:.3} s, {:.0} docs/s, {:.1} MB/s",
        runs.len(),
        m.seconds,
        m.docs as f64 / m.seconds,
        m.bytes as f64 / m.seconds / 1e6
    );
    Ok(())
}
