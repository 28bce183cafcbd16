//! `kstash render` (owned by the api/blueprint work; placeholder until it lands).
use clap::Args;
/// Arguments of `kstash render`.
#[derive(Args)]
pub struct RenderArgs {}
/// Runs `kstash render`.
pub async fn run(_args: RenderArgs) -> anyhow::Result<()> {
    anyhow::bail!("render is not built yet")
}
