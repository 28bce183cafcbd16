//! Pausing and resuming the BackupConfigurations of a restore's target (`spec.paused`).

use kstash_api::core::BackupConfiguration;
use kstash_api::shared::TypedObjectReference;
use kube::api::{Patch, PatchParams};
use kube::Api;

use crate::execute::Error;

/// Sets `spec.paused` of the BackupConfiguration `r` (namespace defaulting to `ns`).
pub(super) async fn set_paused(
    client: &kube::Client,
    r: &TypedObjectReference,
    ns: &str,
    paused: bool,
) -> Result<(), Error> {
    let bns = r.namespace.as_deref().unwrap_or(ns);
    let api: Api<BackupConfiguration> = Api::namespaced(client.clone(), bns);
    let body = serde_json::json!({"spec": {"paused": paused}});
    api.patch(&r.name, &PatchParams::default(), &Patch::Merge(&body))
        .await
        .map(|_| ())
        .map_err(|e| {
            Error::kube(
                format!(
                    "{} BackupConfiguration {bns}/{}",
                    if paused { "pausing" } else { "resuming" },
                    r.name
                ),
                e,
            )
        })
}

/// Resumes every configuration of `paused` (best effort: failures are logged).
pub(super) async fn resume(client: &kube::Client, paused: &[TypedObjectReference], ns: &str) {
    for r in paused {
        if let Err(e) = set_paused(client, r, ns, false).await {
            tracing::warn!("{e}");
        }
    }
}
