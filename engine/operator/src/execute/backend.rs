//! Repository → BackupStorage → [`kstash_repo::Storage`], and the restic password (through the
//! shared [`crate::storage`] helpers).
//!
//! Storage credentials (the BackupStorage's Secret) and the restic password (the encryption
//! Secret's `RESTIC_PASSWORD`) are read by the executor and handed to the repository layer
//! only; they never reach an addon.

use kstash_api::shared::ObjectReference;
use kstash_api::storage::{BackupStorage, Repository};
use kstash_repo::{RepositoryDir, Storage};
use kube::Api;

use super::error::{not_found_none, Error};

/// The restic password: `RESTIC_PASSWORD` of `secret_ref` (namespace defaulting to
/// `default_ns`), read with the shared [`crate::storage::encryption_password`].
pub async fn encryption_password(
    client: &kube::Client,
    secret_ref: &ObjectReference,
    default_ns: &str,
) -> Result<String, Error> {
    let ns = secret_ref.namespace_or(default_ns);
    crate::storage::encryption_password(client, ns, &secret_ref.name)
        .await
        .map_err(|e| Error::Invalid(e.to_string()))
}

/// Connects to the BackupStorage of `repo` and returns its repository directory.
pub async fn repository_dir(
    client: &kube::Client,
    repo: &Repository,
) -> Result<(Storage, RepositoryDir), Error> {
    let rns = repo.metadata.namespace.clone().unwrap_or_default();
    let rname = repo.metadata.name.clone().unwrap_or_default();
    let sref = repo.spec.storage_ref.clone().ok_or_else(|| {
        Error::Invalid(format!(
            "Repository {rns}/{rname}: spec.storageRef is missing"
        ))
    })?;
    let sns = sref.namespace_or(&rns).to_string();
    let api: Api<BackupStorage> = Api::namespaced(client.clone(), &sns);
    let what = format!("BackupStorage {sns}/{}", sref.name);
    let bs = not_found_none(api.get(&sref.name).await)
        .map_err(|e| Error::kube(format!("reading {what}"), e))?
        .ok_or_else(|| Error::NotFound(what.clone()))?;
    let storage = crate::storage::connect(client, &bs)
        .await
        .map_err(|e| Error::Invalid(format!("connecting to {what}: {e}")))?;
    let path = repo
        .spec
        .path
        .clone()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| Error::Invalid(format!("Repository {rns}/{rname}: spec.path is missing")))?;
    let dir = storage
        .repository(path.trim_matches('/'))
        .map_err(|e| Error::repo(format!("Repository {rns}/{rname}: spec.path"), e))?;
    Ok((storage, dir))
}
