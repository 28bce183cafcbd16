//! The reconcilers' way to a BackupStorage's bytes and a Repository's restic password:
//! [`kstash_repo::resolve`] (the one place that walks Repository → BackupStorage → Secrets)
//! over the Kubernetes API ([`ClusterObjects`]). Storage credentials and the password reach
//! the repository layer only, never an addon.

use kstash_api::shared::ObjectReference;
use kstash_api::storage::{BackupStorage, Repository};
use kstash_repo::resolve::cluster::ClusterObjects;
use kstash_repo::resolve::{self, BackupStorageRecord, ObjectKey, RepositoryRecord};
use kstash_repo::resolve::{ResolveError, ResolvedRepository};
use kstash_repo::Storage;
use kube::ResourceExt;

use crate::shell::error::{resolve_error, Error};

pub use kstash_repo::resolve::Password;

/// Reads the objects of a resolution from the API.
pub fn objects(client: &kube::Client) -> ClusterObjects {
    ClusterObjects::new(client.clone())
}

/// The key of a reference made from namespace `from`.
pub fn key_of(r: &ObjectReference, from: &str) -> ObjectKey {
    ObjectKey::referenced(&r.name, r.namespace.as_deref(), from)
}

/// The record of a BackupStorage (its `spec.storage` converted), errors about `object`.
pub fn record(bs: &BackupStorage, object: &str) -> Result<BackupStorageRecord, Error> {
    BackupStorageRecord::try_from(bs).map_err(|e| resolve_error(object, e))
}

/// Connects to `bs` (reads its storage Secret; no storage I/O yet). The error is the
/// resolution's, for callers that look at which link failed.
pub async fn connect(client: &kube::Client, bs: &BackupStorage) -> Result<Storage, ResolveError> {
    let rec = BackupStorageRecord::try_from(bs)?;
    resolve::connect(&objects(client), &rec).await
}

/// Resolves Repository `repo` to its directory and password. `encryption_secret` overrides
/// `spec.encryptionSecret` (`referenced_by` names where the override is written); errors are
/// about `object`, the object being reconciled.
pub async fn resolve(
    client: &kube::Client,
    repo: &Repository,
    encryption_secret: Option<(ObjectKey, String)>,
    object: &str,
) -> Result<ResolvedRepository, Error> {
    let record = RepositoryRecord::from(repo);
    resolve::resolve_record(
        &objects(client),
        &record,
        encryption_secret
            .as_ref()
            .map(|(k, by)| (k.clone(), by.as_str())),
    )
    .await
    .map_err(|e| resolve_error(object, e))
}

/// `namespace/name` of a Repository as a key.
pub fn repository_key(repo: &Repository) -> ObjectKey {
    ObjectKey::new(repo.namespace().unwrap_or_default(), repo.name_any())
}
