//! `kstash controlplane` (placeholder until its owner lands it).
use clap::Args;
/// Arguments of `kstash controlplane`.
#[derive(Args)]
pub struct ControlplaneArgs {}
/// Arguments of the control plane benchmark.
#[derive(Args)]
pub struct BenchArgs {}
/// Runs `kstash controlplane`.
pub async fn run(_args: ControlplaneArgs) -> anyhow::Result<()> {
    anyhow::bail!("controlplane is not built yet")
}
/// Runs the control plane benchmark.
pub async fn bench(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("controlplane bench is not built yet")
}
