//! Repository → BackupStorage → Secrets → restic password, for the executors: the tenancy
//! check, then the resolution of [`kstash_repo::resolve`] (the one place that walks those
//! references) over the cluster.
//!
//! Storage credentials (the BackupStorage's Secret) and the restic password (the encryption
//! Secret's `RESTIC_PASSWORD`) are read by the executor and handed to the repository layer
//! only; they never reach an addon.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kstash_api::shared::ObjectReference;
use kstash_api::storage::{BackupStorage, Repository};
use kstash_api::tenancy;
use kstash_repo::resolve::{self, ObjectKey, RepositoryRecord, ResolvedRepository};
use kube::api::Api;
use kube::ResourceExt;

use super::error::{not_found_none, Error};

/// Resolves `repo` for namespace `requester_ns` with the restic password of `requested` (the
/// Secret the requester wrote at `field`, e.g. `BackupSession demo/x (encryptionSecret of
/// repository r)`; namespace defaulting to `requester_ns`) or, when `None`, of the
/// Repository's own `spec.encryptionSecret`. The tenancy rules
/// ([`kstash_api::tenancy::repository_access`]) are checked first, from objects read now: a
/// refusal reads no Secret and touches no storage.
pub async fn resolve_repository(
    client: &kube::Client,
    repo: &Repository,
    requested: Option<&ObjectReference>,
    requester_ns: &str,
    field: &str,
) -> Result<ResolvedRepository, Error> {
    let repo_ns = repo.namespace().unwrap_or_default();
    let storage = match repo.spec.storage_ref.as_ref() {
        Some(r) => {
            let sns = r.namespace_or(&repo_ns).to_string();
            let what = format!("reading BackupStorage {sns}/{}", r.name);
            not_found_none(
                Api::<BackupStorage>::namespaced(client.clone(), &sns)
                    .get(&r.name)
                    .await,
            )
            .map_err(|e| Error::kube(what, e))?
        }
        None => None,
    };
    let labels = not_found_none(
        Api::<Namespace>::all(client.clone())
            .get(requester_ns)
            .await,
    )
    .map_err(|e| Error::kube(format!("reading Namespace {requester_ns}"), e))?
    .map(|n| n.labels().clone())
    .unwrap_or_default();
    let foreign = match tenancy::password_secret(repo, requested, requester_ns) {
        Some((sns, sname)) if sns != requester_ns => secret_annotations(client, &sns, &sname)
            .await
            .map_err(|e| Error::kube(format!("reading Secret {sns}/{sname}"), e))?,
        _ => None,
    };
    tenancy::repository_access(
        requester_ns,
        &labels,
        repo,
        storage.as_ref(),
        requested,
        foreign.as_ref(),
        field,
    )?;
    let secret = requested.map(|s| {
        (
            ObjectKey::referenced(&s.name, s.namespace.as_deref(), requester_ns),
            field,
        )
    });
    let objects = crate::storage::objects(client);
    Ok(resolve::resolve_record(&objects, &RepositoryRecord::from(repo), secret).await?)
}

/// The annotations of Secret `ns/name` (`None` when it does not exist), for the tenancy rules
/// on a Secret of another namespace.
pub async fn secret_annotations(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, String>>, kube::Error> {
    Ok(not_found_none(
        Api::<Secret>::namespaced(client.clone(), ns)
            .get(name)
            .await,
    )?
    .map(|s| s.metadata.annotations.unwrap_or_default()))
}
