//! `kstash crds` (owned by the api work; placeholder until it lands).
use clap::Args;
/// Arguments of `kstash crds`.
#[derive(Args)]
pub struct CrdsArgs {}
/// Runs `kstash crds`.
pub async fn run(_args: CrdsArgs) -> anyhow::Result<()> {
    anyhow::bail!("crds is not built yet")
}
