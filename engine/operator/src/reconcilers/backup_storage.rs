//! BackupStorage (spec §1.8, §7): checks the backend Secret (`BackendSecretFound`), initialises
//! the storage by uploading `<prefix>/metadata.yaml` (`BackendInitialized`), keeps
//! `status.repositories` / `totalSize` from the Repositories stored in it (store), sets the
//! phase with the spec's calculator. Deletion applies `deletionPolicy` (finalizer
//! `kubestash.com/cleanup`) and waits until the Repositories stored in it are gone, so their
//! Snapshots can still reach the data while they are deleted.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kstash_api::constants::{conditions as c, FINALIZER_CLEANUP};
use kstash_api::phase::backup_storage_phase;
use kstash_api::storage::{
    BackupStorage, BackupStorageDeletionPolicy, BackupStoragePhase, BackupStorageStatus,
    Repository, RepositoryInfoStatus,
};
use kstash_repo::resolve::ResolveError;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::ResourceExt;

use crate::shell::error::{repo_error, resolve_error};
use crate::shell::{self, describe, status, Error, Reconciler, Result, Shell, StoreSet};
use crate::storage;

/// The BackupStorage controller.
pub struct BackupStorages {
    repositories: Store<Repository>,
}

impl BackupStorages {
    /// Reads Repositories from `stores`.
    pub fn new(ctx: &crate::Context, stores: &mut StoreSet) -> Self {
        BackupStorages {
            repositories: stores.store(Api::all(ctx.client.clone())),
        }
    }

    /// Repositories (any namespace) whose `storageRef` is `bs`.
    fn repositories_of(&self, bs: &BackupStorage) -> Vec<Arc<Repository>> {
        let (ns, name) = (bs.namespace().unwrap_or_default(), bs.name_any());
        self.repositories.state_filter(|r| {
            r.spec.storage_ref.as_ref().is_some_and(|s| {
                s.name == name && s.namespace_or(&r.namespace().unwrap_or_default()) == ns
            })
        })
    }
}

impl Reconciler for BackupStorages {
    type Object = BackupStorage;
    const NAME: &'static str = "backupstorage";
    const FINALIZER: Option<&'static str> = Some(FINALIZER_CLEANUP);

    fn watched(&self, cx: &Shell) -> Api<BackupStorage> {
        cx.ctx.scoped_api()
    }

    fn api_of(&self, cx: &Shell, obj: &BackupStorage) -> Api<BackupStorage> {
        shell::namespaced_api(cx, obj)
    }

    fn watches(&self, c: Controller<BackupStorage>, cx: &Shell) -> Controller<BackupStorage> {
        c.watches(
            cx.ctx.scoped_api::<Repository>(),
            watcher::Config::default(),
            |repo| {
                let r = repo.spec.storage_ref.as_ref()?;
                let ns = r
                    .namespace_or(&repo.namespace().unwrap_or_default())
                    .to_string();
                Some(ObjectRef::new(&r.name).within(&ns))
            },
        )
    }

    async fn apply(&self, bs: Arc<BackupStorage>, cx: &Shell) -> Result<Action> {
        let mut st = bs.status.clone().unwrap_or_default();
        let was_ready = st.phase == Some(BackupStoragePhase::Ready);
        let secret_ok = check_secret(&bs, cx, &mut st).await?;
        initialize(&bs, cx, &mut st, secret_ok).await;
        self.list_repositories(&bs, &mut st);
        st.phase = Some(backup_storage_phase(&st));
        let ready = st.phase == Some(BackupStoragePhase::Ready);
        let api = shell::namespaced_api(cx, bs.as_ref());
        status::update(&api, &bs.name_any(), bs.status.as_ref(), &st).await?;
        if ready && !was_ready {
            cx.events
                .normal(
                    bs.as_ref(),
                    c::REASON_BACKEND_INITIALIZATION_SUCCEEDED,
                    "Initialize",
                    format!(
                        "{} is Ready: metadata.yaml is in the backend",
                        describe(bs.as_ref())
                    ),
                )
                .await;
        }
        Ok(Action::requeue(if ready {
            Duration::from_secs(300)
        } else {
            Duration::from_secs(10)
        }))
    }

    /// `deletionPolicy`: `Delete` deletes the Repository CRs stored here and keeps the data;
    /// `WipeOut` also deletes the data (each Repository is switched to `WipeOut` first, and
    /// `metadata.yaml` goes last). A missing backend Secret never blocks deletion.
    async fn cleanup(&self, bs: Arc<BackupStorage>, cx: &Shell) -> Result<Action> {
        let object = describe(bs.as_ref());
        let wipe = bs.spec.deletion_policy == Some(BackupStorageDeletionPolicy::WipeOut);
        let repos = self.repositories_of(&bs);
        for r in &repos {
            delete_repository(cx, r, wipe, &object).await?;
        }
        if !repos.is_empty() {
            return Ok(Action::requeue(Duration::from_secs(2)));
        }
        if wipe {
            match storage::connect(cx.client(), &bs).await {
                Ok(s) => s
                    .delete_metadata()
                    .await
                    .map_err(|e| repo_error(&object, e))?,
                Err(e @ ResolveError::NotFound { .. }) => {
                    cx.events
                        .warning(
                            bs.as_ref(),
                            "WipeOutSkipped",
                            "Delete",
                            format!("{e}: metadata.yaml left in the backend"),
                        )
                        .await
                }
                Err(e) => return Err(resolve_error(&object, e)),
            }
        }
        Ok(Action::await_change())
    }
}

impl BackupStorages {
    fn list_repositories(&self, bs: &BackupStorage, st: &mut BackupStorageStatus) {
        let mut repos: Vec<RepositoryInfoStatus> = self
            .repositories_of(bs)
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
        repos.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        st.repositories = repos;
        st.total_size = (!st.repositories.is_empty()).then(|| {
            kstash_api::size::total_size(st.repositories.iter().filter_map(|r| r.size.as_deref()))
        });
    }
}

/// `BackendSecretFound`: whether the Secret the backend names exists. `Ok(true)` without one.
async fn check_secret(
    bs: &BackupStorage,
    cx: &Shell,
    st: &mut BackupStorageStatus,
) -> Result<bool> {
    let ns = bs.namespace().unwrap_or_default();
    let rec = storage::record(bs, &describe(bs))?;
    let Some((block, secret)) = rec.provider.as_ref().and_then(|p| p.secret_name()) else {
        return Ok(true);
    };
    let found = cx
        .api::<Secret>(&ns)
        .get_opt(secret)
        .await
        .map_err(|e| Error::api(describe(bs), format!("reading Secret {ns}/{secret}"), e))?
        .is_some();
    if found {
        status::set(
            &mut st.conditions,
            c::TYPE_BACKEND_SECRET_FOUND,
            true,
            c::REASON_BACKEND_SECRET_AVAILABLE,
            c::MSG_BACKEND_SECRET_FOUND,
        );
    } else {
        let msg = format!("secret {ns}/{secret} (spec.storage.{block}.secretName) not found");
        status::set(
            &mut st.conditions,
            c::TYPE_BACKEND_SECRET_FOUND,
            false,
            c::REASON_BACKEND_SECRET_NOT_AVAILABLE,
            &msg,
        );
    }
    Ok(found)
}

/// `BackendInitialized`: uploads `metadata.yaml` once (unless it is there already).
async fn initialize(bs: &BackupStorage, cx: &Shell, st: &mut BackupStorageStatus, secret_ok: bool) {
    let done = st
        .conditions
        .iter()
        .any(|x| x.type_ == c::TYPE_BACKEND_INITIALIZED && x.is_true());
    if done {
        return;
    }
    if !secret_ok {
        status::set(
            &mut st.conditions,
            c::TYPE_BACKEND_INITIALIZED,
            false,
            c::REASON_BACKEND_INITIALIZATION_FAILED,
            "the backend secret is missing",
        );
        return;
    }
    let res = upload_metadata(bs, cx).await.map_err(|e| e.to_string());
    match res {
        Ok(()) => status::set(
            &mut st.conditions,
            c::TYPE_BACKEND_INITIALIZED,
            true,
            c::REASON_BACKEND_INITIALIZATION_SUCCEEDED,
            c::MSG_BACKEND_INITIALIZED,
        ),
        Err(msg) => {
            status::set(
                &mut st.conditions,
                c::TYPE_BACKEND_INITIALIZED,
                false,
                c::REASON_BACKEND_INITIALIZATION_FAILED,
                &msg,
            );
            cx.events
                .warning(
                    bs,
                    c::REASON_BACKEND_INITIALIZATION_FAILED,
                    "Initialize",
                    msg,
                )
                .await;
        }
    }
}

/// Uploads `metadata.yaml` unless the storage has one.
async fn upload_metadata(
    bs: &BackupStorage,
    cx: &Shell,
) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let s = storage::connect(cx.client(), bs).await?;
    if s.metadata().await?.is_none() {
        s.initialize(&backend_meta(bs)).await?;
    }
    Ok(())
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

/// Deletes Repository `r` (switched to `WipeOut` first when `wipe`); 404 is fine.
async fn delete_repository(cx: &Shell, r: &Repository, wipe: bool, object: &str) -> Result<()> {
    let (ns, name) = (r.namespace().unwrap_or_default(), r.name_any());
    let api: Api<Repository> = cx.api(&ns);
    if r.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    if wipe && r.spec.deletion_policy != Some(BackupStorageDeletionPolicy::WipeOut) {
        let patch = serde_json::json!({"spec": {"deletionPolicy": "WipeOut"}});
        api.patch(
            &name,
            &PatchParams::apply(status::FIELD_MANAGER),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(|e| {
            Error::api(
                object,
                format!("setting WipeOut on Repository {ns}/{name}"),
                e,
            )
        })?;
    }
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(Error::api(
            object,
            format!("deleting Repository {ns}/{name}"),
            e,
        )),
    }
}
