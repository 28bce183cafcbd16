//! `kstash operator`: placeholder, replaced by its owner.

/// Flags of `kstash operator`.
#[derive(clap::Args)]
pub struct OperatorArgs {}

/// Runs the operator.
pub async fn run(_args: OperatorArgs) -> anyhow::Result<()> {
    anyhow::bail!("kstash operator is not built yet")
}
