//! Repository → BackupStorage → Secrets → restic password, for the executors: the resolution of
//! [`kstash_repo::resolve`] (the one place that walks those references) over the cluster.
//!
//! Storage credentials (the BackupStorage's Secret) and the restic password (the encryption
//! Secret's `RESTIC_PASSWORD`) are read by the executor and handed to the repository layer
//! only; they never reach an addon.

use kstash_api::shared::ObjectReference;
use kstash_api::storage::Repository;
use kstash_repo::resolve::{self, ObjectKey, RepositoryRecord, ResolvedRepository};

use super::error::Error;

/// Resolves `repo` with the restic password of `secret_ref` (a reference made from namespace
/// `default_ns`, written at `field` of the session, e.g.
/// `BackupSession demo/x (spec.repositories[].encryptionSecret)`).
pub async fn resolve_repository(
    client: &kube::Client,
    repo: &Repository,
    secret_ref: &ObjectReference,
    default_ns: &str,
    field: &str,
) -> Result<ResolvedRepository, Error> {
    let key = ObjectKey::referenced(
        &secret_ref.name,
        secret_ref.namespace.as_deref(),
        default_ns,
    );
    let objects = crate::storage::objects(client);
    Ok(
        resolve::resolve_record(&objects, &RepositoryRecord::from(repo), Some((key, field)))
            .await?,
    )
}
