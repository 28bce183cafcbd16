//! BackupStorage controller (spec §1.8, §7): checks the backend secret (`BackendSecretFound`),
//! initialises the storage by uploading `<prefix>/metadata.yaml` (`BackendInitialized`), keeps
//! `status.repositories` / `totalSize` from the Repositories stored in it, sets the phase with
//! the spec's calculator, and applies `deletionPolicy` through the `kubestash.com/cleanup`
//! finalizer.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kstash_api::constants::{conditions as c, FINALIZER_CLEANUP};
use kstash_api::phase::backup_storage_phase;
use kstash_api::storage::{
    BackupStorage, BackupStorageDeletionPolicy, BackupStoragePhase, Repository,
    RepositoryInfoStatus,
};
use kube::api::{Api, DeleteParams, ListParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt;

use crate::control::{self, kube_err, Ctl, Error, Result};
use crate::storage::{backend_secret_name, connect, StorageError};
use crate::Context;

/// Runs this controller until its watch ends.
pub async fn run(ctx: Arc<Context>) {
    let ctl = Ctl::new(&ctx, "backupstorage");
    let storages = control::scoped_api::<BackupStorage>(&ctx);
    let repos = control::scoped_api::<Repository>(&ctx);
    Controller::new(storages, watcher::Config::default())
        .watches(repos, watcher::Config::default(), |repo| {
            let r = repo.spec.storage_ref.as_ref()?;
            let ns = r
                .namespace_or(&repo.namespace().unwrap_or_default())
                .to_string();
            Some(ObjectRef::new(&r.name).within(&ns))
        })
        .run(reconcile, control::error_policy, ctl)
        .for_each(|_| async {})
        .await;
}

async fn reconcile(bs: Arc<BackupStorage>, ctl: Arc<Ctl>) -> Result<Action> {
    let ns = bs.namespace().unwrap_or_default();
    let api: Api<BackupStorage> = Api::namespaced(ctl.ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER_CLEANUP, bs, |ev| async {
        match ev {
            Finalizer::Apply(bs) => apply(&bs, &ctl).await,
            Finalizer::Cleanup(bs) => cleanup(&bs, &ctl).await,
        }
    })
    .await
    .map_err(control::finalizer_err)
}

/// The BackendMeta document KubeStash keeps at `<prefix>/metadata.yaml` (spec §5.3).
fn backend_meta(bs: &BackupStorage) -> Vec<u8> {
    let doc = serde_json::json!({
        "apiVersion": "config.kubestash.com/v1alpha1",
        "kind": "BackendMeta",
        "metadata": {"name": bs.name_any(), "namespace": bs.namespace()},
        "creationTimestamp": Timestamp::now().to_string(),
        "operatorVersion": env!("CARGO_PKG_VERSION"),
        "provider": bs.spec.storage.as_ref().and_then(|s| s.provider.clone()),
    });
    serde_yaml::to_string(&doc).unwrap_or_default().into_bytes()
}

async fn apply(bs: &BackupStorage, ctl: &Ctl) -> Result<Action> {
    let ctx = &ctl.ctx;
    let ns = bs.namespace().unwrap_or_default();
    let name = bs.name_any();
    let mut status = bs.status.clone().unwrap_or_default();
    let was_ready = status.phase == Some(BackupStoragePhase::Ready);

    // 1. The backend secret.
    let mut secret_ok = true;
    if let Some((provider, secret)) = bs.spec.storage.as_ref().and_then(backend_secret_name) {
        let sapi: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
        let found = sapi
            .get_opt(&secret)
            .await
            .map_err(kube_err(format!("reading secret {ns}/{secret}")))?
            .is_some();
        secret_ok = found;
        if found {
            control::set(
                &mut status.conditions,
                c::TYPE_BACKEND_SECRET_FOUND,
                true,
                c::REASON_BACKEND_SECRET_AVAILABLE,
                c::MSG_BACKEND_SECRET_FOUND,
            );
        } else {
            let msg =
                format!("secret {ns}/{secret} (spec.storage.{provider}.secretName) not found");
            control::set(
                &mut status.conditions,
                c::TYPE_BACKEND_SECRET_FOUND,
                false,
                c::REASON_BACKEND_SECRET_NOT_AVAILABLE,
                &msg,
            );
        }
    }

    // 2. Initialise the storage (metadata.yaml), unless already done.
    let initialized = status
        .conditions
        .iter()
        .any(|c| c.type_ == c::TYPE_BACKEND_INITIALIZED && c.is_true());
    if secret_ok && !initialized {
        let res: Result<(), StorageError> = async {
            let storage = connect(&ctx.client, bs).await?;
            if storage
                .metadata()
                .await
                .map_err(StorageError::Repo)?
                .is_none()
            {
                storage
                    .initialize(&backend_meta(bs))
                    .await
                    .map_err(StorageError::Repo)?;
            }
            Ok(())
        }
        .await;
        match res {
            Ok(()) => {
                control::set(
                    &mut status.conditions,
                    c::TYPE_BACKEND_INITIALIZED,
                    true,
                    c::REASON_BACKEND_INITIALIZATION_SUCCEEDED,
                    c::MSG_BACKEND_INITIALIZED,
                );
            }
            Err(e) => {
                let msg = e.to_string();
                control::set(
                    &mut status.conditions,
                    c::TYPE_BACKEND_INITIALIZED,
                    false,
                    c::REASON_BACKEND_INITIALIZATION_FAILED,
                    &msg,
                );
                ctl.events
                    .publish(
                        bs,
                        true,
                        c::REASON_BACKEND_INITIALIZATION_FAILED,
                        "Initialize",
                        msg,
                    )
                    .await;
            }
        }
    } else if !secret_ok && !initialized {
        control::set(
            &mut status.conditions,
            c::TYPE_BACKEND_INITIALIZED,
            false,
            c::REASON_BACKEND_INITIALIZATION_FAILED,
            "the backend secret is missing",
        );
    }

    // 3. Repositories stored here.
    let repos = repositories_of(ctx, bs).await?;
    status.repositories = repos
        .iter()
        .map(|r| RepositoryInfoStatus {
            name: r.name_any(),
            namespace: r.namespace(),
            path: r.spec.path.clone(),
            size: r.status.as_ref().and_then(|s| s.size.clone()),
            synced: Some(true),
            error: None,
        })
        .collect();
    status.total_size = if status.repositories.is_empty() {
        None
    } else {
        Some(kstash_api::size::total_size(
            status.repositories.iter().filter_map(|r| r.size.as_deref()),
        ))
    };

    // 4. Phase.
    status.phase = Some(backup_storage_phase(&status));
    let ready = status.phase == Some(BackupStoragePhase::Ready);
    let api: Api<BackupStorage> = Api::namespaced(ctx.client.clone(), &ns);
    control::patch_status(&api, &name, bs.status.as_ref(), &status).await?;
    if ready && !was_ready {
        ctl.events
            .publish(
                bs,
                false,
                c::REASON_BACKEND_INITIALIZATION_SUCCEEDED,
                "Initialize",
                format!("BackupStorage {ns}/{name} is Ready: metadata.yaml is in the backend"),
            )
            .await;
    }
    Ok(Action::requeue(if ready {
        Duration::from_secs(300)
    } else {
        Duration::from_secs(10)
    }))
}

/// Repositories (any namespace) whose `storageRef` is this BackupStorage.
async fn repositories_of(ctx: &Context, bs: &BackupStorage) -> Result<Vec<Repository>> {
    let ns = bs.namespace().unwrap_or_default();
    let name = bs.name_any();
    let api = control::scoped_api::<Repository>(ctx);
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(kube_err("listing Repositories"))?;
    Ok(list
        .items
        .into_iter()
        .filter(|r| {
            r.spec.storage_ref.as_ref().is_some_and(|s| {
                s.name == name && s.namespace_or(&r.namespace().unwrap_or_default()) == ns
            })
        })
        .collect())
}

/// `deletionPolicy`: `Delete` deletes the Repository CRs stored here and keeps the data;
/// `WipeOut` also deletes the data (each Repository is switched to `WipeOut` first, and the
/// storage's `metadata.yaml` is removed). A missing backend secret never blocks deletion.
async fn cleanup(bs: &BackupStorage, ctl: &Ctl) -> Result<Action> {
    let ctx = &ctl.ctx;
    let policy = bs
        .spec
        .deletion_policy
        .unwrap_or(BackupStorageDeletionPolicy::Delete);
    let repos = repositories_of(ctx, bs).await?;
    for r in &repos {
        let rns = r.namespace().unwrap_or_default();
        let rapi: Api<Repository> = Api::namespaced(ctx.client.clone(), &rns);
        if policy == BackupStorageDeletionPolicy::WipeOut {
            let patch = serde_json::json!({"spec": {"deletionPolicy": "WipeOut"}});
            rapi.patch(
                &r.name_any(),
                &kube::api::PatchParams::apply(control::FIELD_MANAGER),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .map_err(kube_err(format!(
                "setting WipeOut on Repository {rns}/{}",
                r.name_any()
            )))?;
        }
        match rapi.delete(&r.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if control::is_code(&e, 404) => {}
            Err(e) => {
                return Err(kube_err(format!(
                    "deleting Repository {rns}/{}",
                    r.name_any()
                ))(e))
            }
        }
    }
    if policy == BackupStorageDeletionPolicy::WipeOut {
        // Wait until the Repositories have wiped their directories, then remove metadata.yaml.
        if !repositories_of(ctx, bs).await?.is_empty() {
            return Ok(Action::requeue(Duration::from_secs(2)));
        }
        match connect(&ctx.client, bs).await {
            Ok(storage) => {
                storage
                    .delete(kstash_api::constants::FILE_BACKEND_METADATA)
                    .await?;
            }
            Err(e @ StorageError::SecretNotFound { .. }) => {
                ctl.events
                    .publish(
                        bs,
                        true,
                        "WipeOutSkipped",
                        "Delete",
                        format!("{e}: metadata.yaml left in the backend"),
                    )
                    .await;
            }
            Err(e) => return Err(Error::Storage(e)),
        }
    }
    Ok(Action::await_change())
}
