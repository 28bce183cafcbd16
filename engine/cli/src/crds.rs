//! `kstash crds`: prints every CRD kstash serves (the KubeStash kinds plus KubeDB Elasticsearch,
//! Redis, Postgres and AppBinding) as a multi-document YAML stream, ready for `kubectl apply -f -`.
use clap::Args;

/// Arguments of `kstash crds`.
#[derive(Args)]
pub struct CrdsArgs {
    /// Print only the CRD of this kind (e.g. `BackupConfiguration`).
    #[arg(long)]
    pub kind: Option<String>,
}

/// Runs `kstash crds`.
pub async fn run(args: CrdsArgs) -> anyhow::Result<()> {
    let crds = kstash_api::crds::all();
    let selected: Vec<_> = match &args.kind {
        Some(k) => crds
            .into_iter()
            .filter(|c| &c.spec.names.kind == k)
            .collect(),
        None => crds,
    };
    if selected.is_empty() {
        anyhow::bail!(
            "--kind {}: no such kind (try BackupConfiguration, Snapshot, Elasticsearch, …)",
            args.kind.unwrap_or_default()
        );
    }
    let mut out = String::new();
    for crd in &selected {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(crd)?);
    }
    print!("{out}");
    Ok(())
}
