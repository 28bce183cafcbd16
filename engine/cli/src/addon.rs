//! `kstash addon` (placeholder until its owner lands it).
use clap::{Args, Subcommand};
/// `kstash addon` subcommands.
#[derive(Subcommand)]
pub enum AddonCommand {
    /// Placeholder.
    Placeholder,
}
/// Arguments of the addon benchmark.
#[derive(Args)]
pub struct BenchArgs {}
/// Runs a `kstash addon` subcommand.
pub async fn run(_cmd: AddonCommand) -> anyhow::Result<()> {
    anyhow::bail!("addon is not built yet")
}
/// Runs the addon benchmark.
pub async fn bench(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("addon bench is not built yet")
}
