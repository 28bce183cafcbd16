//! `kstash unlock <repository> [--paths …] [--remove-all]`: `restic unlock` on each component
//! repository of a Repository (default: its `status.componentPaths`), spec §10.

use anyhow::{bail, Result};
use clap::Args;

use super::cluster::KubeArgs;
use super::storage;

/// Arguments of `unlock`.
#[derive(Args)]
pub struct UnlockArgs {
    /// Repository name.
    pub repository: String,
    /// Component paths to unlock (comma-separated, e.g. `repository/v1/frequent-backup/dump`;
    /// default: the Repository's `status.componentPaths`).
    #[arg(long, value_delimiter = ',')]
    pub paths: Vec<String>,
    /// Remove live locks too (`restic unlock --remove-all`); only when you know no backup,
    /// restore or prune is running.
    #[arg(long)]
    pub remove_all: bool,
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// Runs `unlock`.
pub async fn run(args: UnlockArgs) -> Result<()> {
    let cluster = args.kube.connect().await?;
    let ns = cluster.namespace.clone();
    let repo = storage::open(&cluster, &ns, &args.repository).await?;
    let paths = if args.paths.is_empty() {
        let from_status = repo
            .repository
            .status
            .as_ref()
            .map(|s| s.component_paths.clone())
            .unwrap_or_default();
        if from_status.is_empty() {
            bail!(
                "repository {}: status.componentPaths is empty (no backup recorded yet); \
                 pass --paths repository/v1/<session>/<component>",
                repo.name
            );
        }
        from_status
    } else {
        args.paths.clone()
    };
    let mut failed = Vec::new();
    for path in &paths {
        let result = async {
            let restic = repo.component(path)?;
            let removed = restic.unlock(args.remove_all).await?;
            let left = restic.list_locks().await?;
            anyhow::Ok((restic.location().to_string(), removed, left))
        }
        .await;
        match result {
            Ok((location, removed, left)) => {
                println!("{path}: removed {removed} lock(s) ({location})");
                for l in &left {
                    let who = l
                        .info
                        .as_ref()
                        .map(|i| i.describe())
                        .unwrap_or_else(|| "unreadable lock".into());
                    println!("{path}: kept live lock {}: {who} (use --remove-all)", l.id);
                }
            }
            Err(e) => {
                eprintln!("error: {path}: {e:#}");
                failed.push(path.clone());
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "repository {}: could not unlock {}",
            repo.name,
            failed.join(", ")
        );
    }
    Ok(())
}
