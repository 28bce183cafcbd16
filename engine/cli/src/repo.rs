//! `kstash repo` (placeholder until its owner lands it).
use clap::{Args, Subcommand};
/// `kstash repo` subcommands.
#[derive(Subcommand)]
pub enum RepoCommand {
    /// Placeholder.
    Placeholder,
}
/// Arguments of the repo benchmark.
#[derive(Args)]
pub struct BenchArgs {}
/// Runs a `kstash repo` subcommand.
pub async fn run(_cmd: RepoCommand) -> anyhow::Result<()> {
    anyhow::bail!("repo is not built yet")
}
/// Runs the repo benchmark.
pub async fn bench(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("repo bench is not built yet")
}
