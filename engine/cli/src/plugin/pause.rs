//! `kstash pause|resume <backupconfiguration>`: merge-patches `spec.paused` (spec §10).

use anyhow::{Context, Result};
use kstash_api::core::BackupConfiguration;
use kube::api::{Patch, PatchParams};

use super::cluster::get;
use super::NamedArgs;

/// Runs `pause` (`paused = true`) or `resume` (`paused = false`).
pub async fn run(args: NamedArgs, paused: bool) -> Result<()> {
    let cluster = args.kube.connect().await?;
    let ns = cluster.namespace.clone();
    let api = cluster.api::<BackupConfiguration>(&ns);
    let bc = get(&api, "backupconfiguration", &ns, &args.name).await?;
    let verb = if paused { "paused" } else { "resumed" };
    if bc.spec.paused.unwrap_or(false) == paused {
        println!(
            "backupconfiguration.core.kubestash.com/{} is already {verb}",
            args.name
        );
        return Ok(());
    }
    let patch = serde_json::json!({"spec": {"paused": paused}});
    api.patch(&args.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| {
            format!(
                "patching backupconfiguration {ns}/{} spec.paused",
                args.name
            )
        })?;
    println!(
        "backupconfiguration.core.kubestash.com/{} {verb}",
        args.name
    );
    Ok(())
}
