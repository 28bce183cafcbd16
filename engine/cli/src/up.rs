//! `kstash up`: placeholder, replaced by its owner.

/// Flags of `kstash up`.
#[derive(clap::Args)]
pub struct UpArgs {}

/// Starts the control plane and the operator.
pub async fn run(_args: UpArgs) -> anyhow::Result<()> {
    anyhow::bail!("kstash up is not built yet")
}
