//! The operator's own cloud identity: where a BackupStorage that names no storage Secret gets
//! its credentials.
//!
//! A storage Secret (`spec.storage.<provider>.secretName`) always wins. Without one, kstash uses
//! the workload identity the cluster gave the operator's pod, read once from the operator's
//! environment, one loader per cloud:
//!
//! * [`AwsIdentity`] (S3): EKS IRSA (`AssumeRoleWithWebIdentity`) or EKS Pod Identity;
//! * [`GcpIdentity`] (GCS): GKE Workload Identity (the GKE metadata server, opted into with
//!   `KSTASH_GCP_WORKLOAD_IDENTITY=gke`) or workload identity federation
//!   (`GOOGLE_APPLICATION_CREDENTIALS` naming an `external_account` configuration);
//! * [`AzureIdentity`] (Azure Blob): Azure Workload Identity (`AZURE_FEDERATED_TOKEN_FILE`,
//!   `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`).
//!
//! Without any, requests are sent unsigned. What is the *machine's* identity rather than the
//! pod's is never used: static keys in the environment, `~/.aws` or gcloud files, a node's
//! instance metadata (AWS IMDS, Azure IMDS, a GCE metadata server not explicitly opted into),
//! the Azure CLI. A tenant's BackupStorage must not borrow them.

mod aws;
mod azure;
mod gcp;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use reqsign_core::{Context, ProvideCredential};

pub use aws::{AwsIdentity, WebIdentity};
pub use azure::{AzureIdentity, AzureWorkload};
pub use gcp::{GcpIdentity, GkeMetadata};

/// The cloud whose identity a message is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cloud {
    /// Amazon Web Services (S3).
    Aws,
    /// Google Cloud (GCS).
    Gcp,
    /// Microsoft Azure (Blob storage).
    Azure,
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cloud::Aws => "AWS",
            Cloud::Gcp => "Google Cloud",
            Cloud::Azure => "Azure",
        })
    }
}

/// A workload identity configured wrongly or half-way in the operator's environment.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the operator's {cloud} workload identity is not usable: {reason}")]
pub struct IdentityError {
    /// Whose identity.
    pub cloud: Cloud,
    /// What is wrong and what to set.
    pub reason: String,
}

impl IdentityError {
    pub(crate) fn new(cloud: Cloud, reason: impl Into<String>) -> Self {
        IdentityError {
            cloud,
            reason: reason.into(),
        }
    }
}

/// Why the workload identity last failed to give credentials, if it did.
pub(crate) type LastFailure = Arc<Mutex<Option<String>>>;

/// The environment as a map, for callers that hold one.
pub fn env_lookup(map: &HashMap<String, String>) -> impl Fn(&str) -> Option<String> + '_ {
    move |k| map.get(k).cloned()
}

/// `cell`'s identity, read from this process's environment by `read` on first use.
fn of_process_once<T: Clone>(
    cell: &std::sync::OnceLock<Result<T, IdentityError>>,
    read: impl FnOnce(&dyn Fn(&str) -> Option<String>) -> Result<T, IdentityError>,
) -> Result<T, IdentityError> {
    cell.get_or_init(|| read(&|k| std::env::var(k).ok()))
        .clone()
}

/// A non-empty variable of `env`.
fn var(env: &impl Fn(&str) -> Option<String>, k: &str) -> Option<String> {
    env(k).filter(|v| !v.trim().is_empty())
}

/// A credential provider whose failures are kept in a [`LastFailure`] with what to check: a
/// provider of reqsign reports "no credential" as `None`, which opendal turns into "failed to
/// load signing credential", naming neither the source nor the fix.
#[derive(Debug)]
pub(crate) struct Explained<P> {
    inner: P,
    cloud: Cloud,
    source: String,
    hint: &'static str,
    last_failure: LastFailure,
}

impl<P> Explained<P> {
    pub(crate) fn new(
        inner: P,
        cloud: Cloud,
        source: String,
        hint: &'static str,
        last_failure: &LastFailure,
    ) -> Self {
        Explained {
            inner,
            cloud,
            source,
            hint,
            last_failure: last_failure.clone(),
        }
    }
}

impl<P: ProvideCredential> ProvideCredential for Explained<P> {
    type Credential = P::Credential;

    async fn provide_credential(
        &self,
        ctx: &Context,
    ) -> reqsign_core::Result<Option<Self::Credential>> {
        let result = self.inner.provide_credential(ctx).await;
        let failure = match &result {
            Ok(Some(_)) => None,
            Ok(None) => Some(format!(
                "the {} workload identity gave no credentials: {} answered none; {}",
                self.cloud, self.source, self.hint
            )),
            Err(e) => {
                let context = e.context().join(", ");
                let context = if context.is_empty() {
                    String::new()
                } else {
                    format!(" ({context})")
                };
                Some(format!(
                    "the {} workload identity failed at {}: {e}{context}; {}",
                    self.cloud, self.source, self.hint
                ))
            }
        };
        if let Some(f) = &failure {
            tracing::warn!("{f}");
        }
        *self.last_failure.lock().unwrap_or_else(|e| e.into_inner()) = failure;
        result
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;

    /// An environment of `pairs`.
    pub(crate) fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}
