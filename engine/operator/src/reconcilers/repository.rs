//! Repository (spec §1.8, §5.3, §5.4): initialises the Repository directory by uploading
//! `repository.yaml` (`RepositoryInitialized`) once its BackupStorage is Ready, and keeps its
//! status from its Snapshots (`kstash_rules::repository::aggregate`, from the store) and from
//! the restic repositories (`size`). Deletion (finalizer `kubestash.com/cleanup`) deletes its
//! Snapshots — each one's data is handled by the Snapshot controller by its own
//! `deletionPolicy` — waits until they are gone, then applies the Repository's
//! `deletionPolicy`: `Delete` keeps the data, `WipeOut` deletes the directory.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kstash_api::admission::AdmissionError;
use kstash_api::constants::{conditions as c, FINALIZER_CLEANUP};
use kstash_api::phase::repository_phase;
use kstash_api::storage::{
    BackupStorage, BackupStoragePhase, DeletionPolicy, Repository, RepositoryPhase,
    RepositoryStatus, Snapshot,
};
use kstash_api::tenancy;
use kstash_repo::ComponentPath;
use kstash_rules::repository::aggregate;
use kube::api::{Api, DeleteParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::ResourceExt;

use super::admission::AdmissionStores;
use crate::execute::backend;
use crate::shell::error::repo_error;
use crate::shell::{self, describe, status, Error, Reconciler, Result, Shell, StoreSet};
use crate::storage;

/// Condition reason and Event reason of a Repository the tenancy rules refuse.
pub const REASON_TENANCY_REFUSED: &str = "TenancyRefused";

/// The Repository controller.
pub struct Repositories {
    admission: AdmissionStores,
    storages: Store<BackupStorage>,
    snapshots: Store<Snapshot>,
    /// Repository uid → (fingerprint of its succeeded snapshots, measured size in bytes).
    sizes: Mutex<HashMap<String, (String, u64)>>,
}

impl Repositories {
    /// Reads BackupStorages and Snapshots from `stores`.
    pub fn new(ctx: &crate::Context, stores: &mut StoreSet) -> Self {
        Repositories {
            admission: AdmissionStores::new(ctx, stores),
            storages: stores.store(Api::all(ctx.client.clone())),
            snapshots: stores.store(ctx.scoped_api()),
            sizes: Mutex::new(HashMap::new()),
        }
    }

    fn snapshots_of(&self, repo: &Repository) -> Vec<Snapshot> {
        let (ns, name) = (repo.namespace(), repo.name_any());
        self.snapshots
            .state_filter(|s| {
                s.namespace() == ns && s.spec.repository.as_deref() == Some(name.as_str())
            })
            .iter()
            .map(|s| (**s).clone())
            .collect()
    }

    fn storage_of(&self, repo: &Repository) -> Option<Arc<BackupStorage>> {
        let r = repo.spec.storage_ref.as_ref()?;
        let ns = repo.namespace().unwrap_or_default();
        self.storages
            .get(&ObjectRef::new(&r.name).within(r.namespace_or(&ns)))
    }
}

impl Reconciler for Repositories {
    type Object = Repository;
    const NAME: &'static str = "repository";
    const FINALIZER: Option<&'static str> = Some(FINALIZER_CLEANUP);

    fn watched(&self, cx: &Shell) -> Api<Repository> {
        cx.ctx.scoped_api()
    }

    fn api_of(&self, cx: &Shell, obj: &Repository) -> Api<Repository> {
        shell::namespaced_api(cx, obj)
    }

    fn watches(&self, c: Controller<Repository>, cx: &Shell) -> Controller<Repository> {
        c.watches(
            cx.ctx.scoped_api::<Snapshot>(),
            watcher::Config::default(),
            |s| {
                let repo = s.spec.repository.as_ref()?;
                Some(ObjectRef::new(repo).within(&s.namespace().unwrap_or_default()))
            },
        )
    }

    async fn apply(&self, repo: Arc<Repository>, cx: &Shell) -> Result<Action> {
        let mut st = repo.status.clone().unwrap_or_default();
        let was_ready = st.phase == Some(RepositoryPhase::Ready);
        if let Err(denied) = self.tenancy(&repo, cx).await? {
            return self.refuse(&repo, cx, st, denied).await;
        }
        let retry = if repository_phase(&st) != RepositoryPhase::Ready {
            self.initialize(&repo, cx, &mut st).await
        } else {
            None
        };
        self.record_snapshots(&repo, cx, &mut st).await;
        st.phase = Some(repository_phase(&st));
        let api = shell::namespaced_api(cx, repo.as_ref());
        status::update(&api, &repo.name_any(), repo.status.as_ref(), &st).await?;
        if st.phase == Some(RepositoryPhase::Ready) && !was_ready {
            cx.events
                .normal(
                    repo.as_ref(),
                    c::REASON_REPOSITORY_INITIALIZATION_SUCCEEDED,
                    "Initialize",
                    format!(
                        "{} initialized (repository.yaml uploaded)",
                        describe(repo.as_ref())
                    ),
                )
                .await;
        }
        Ok(Action::requeue(retry.unwrap_or(Duration::from_secs(600))))
    }

    async fn cleanup(&self, repo: Arc<Repository>, cx: &Shell) -> Result<Action> {
        let object = describe(repo.as_ref());
        let snaps = self.snapshots_of(&repo);
        let mut paths: BTreeSet<String> = repo
            .status
            .as_ref()
            .map(|s| s.component_paths.iter().cloned().collect())
            .unwrap_or_default();
        paths.extend(aggregate(&snaps).component_paths);
        if !snaps.is_empty() {
            let api: Api<Snapshot> = cx.api(&repo.namespace().unwrap_or_default());
            for s in snaps
                .iter()
                .filter(|s| s.metadata.deletion_timestamp.is_none())
            {
                match api.delete(&s.name_any(), &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => {
                        return Err(Error::api(
                            &object,
                            format!("deleting Snapshot {}", s.name_any()),
                            e,
                        ))
                    }
                }
            }
            // Each Snapshot's data is handled by its own deletionPolicy first.
            return Ok(Action::requeue(Duration::from_secs(2)));
        }
        if repo.spec.deletion_policy == Some(DeletionPolicy::WipeOut) {
            match self.tenancy(&repo, cx).await? {
                Ok(()) => self.wipe(&repo, cx, &paths).await?,
                Err(denied) => {
                    cx.events
                        .warning(
                            repo.as_ref(),
                            "WipeOutSkipped",
                            "Delete",
                            format!("the repository data was left in place: {denied}"),
                        )
                        .await
                }
            }
        }
        Ok(Action::await_change())
    }
}

impl Repositories {
    /// The tenancy rules on `repo` (`kstash_api::tenancy::repository`), reading its
    /// encryption Secret's annotations when it is in another namespace.
    async fn tenancy(
        &self,
        repo: &Repository,
        cx: &Shell,
    ) -> Result<std::result::Result<(), AdmissionError>> {
        let ns = repo.namespace().unwrap_or_default();
        let foreign = match tenancy::password_secret(repo, None, &ns) {
            Some((sns, sname)) if sns != ns => {
                backend::secret_annotations(cx.client(), &sns, &sname)
                    .await
                    .map_err(|e| {
                        Error::api(describe(repo), format!("reading Secret {sns}/{sname}"), e)
                    })?
            }
            _ => None,
        };
        Ok(tenancy::repository(
            repo,
            &self.admission.lookup(),
            foreign.as_ref(),
        ))
    }

    /// A Repository the tenancy rules refuse: `RepositoryInitialized` false naming the field,
    /// phase NotReady, nothing read or written in the storage. Checked again every minute and
    /// on every change (a grant given later is picked up).
    async fn refuse(
        &self,
        repo: &Repository,
        cx: &Shell,
        mut st: RepositoryStatus,
        denied: AdmissionError,
    ) -> Result<Action> {
        let msg = denied.to_string();
        let changed = !st.conditions.iter().any(|k| {
            k.type_ == c::TYPE_REPOSITORY_INITIALIZED && k.message.as_deref() == Some(msg.as_str())
        });
        status::set(
            &mut st.conditions,
            c::TYPE_REPOSITORY_INITIALIZED,
            false,
            REASON_TENANCY_REFUSED,
            &msg,
        );
        st.phase = Some(repository_phase(&st));
        let api = shell::namespaced_api(cx, repo);
        status::update(&api, &repo.name_any(), repo.status.as_ref(), &st).await?;
        if changed {
            cx.events
                .warning(repo, REASON_TENANCY_REFUSED, "Validate", msg)
                .await;
        }
        Ok(Action::requeue(Duration::from_secs(60)))
    }

    /// `RepositoryInitialized`; returns when to look again if it did not succeed.
    async fn initialize(
        &self,
        repo: &Repository,
        cx: &Shell,
        st: &mut RepositoryStatus,
    ) -> Option<Duration> {
        let ns = repo.namespace().unwrap_or_default();
        let ready_bs = self
            .storage_of(repo)
            .filter(|b| b.status.as_ref().and_then(|s| s.phase) == Some(BackupStoragePhase::Ready));
        let fail = |st: &mut RepositoryStatus, msg: &str| {
            status::set(
                &mut st.conditions,
                c::TYPE_REPOSITORY_INITIALIZED,
                false,
                c::REASON_REPOSITORY_INITIALIZATION_FAILED,
                msg,
            )
        };
        if repo.spec.path.is_none() {
            fail(st, "spec.path is required");
            return None;
        }
        let Some(bs) = ready_bs else {
            let r = repo.spec.storage_ref.clone().unwrap_or_default();
            let msg = format!(
                "BackupStorage {}/{} is not found or not Ready",
                r.namespace_or(&ns),
                r.name
            );
            fail(st, &msg);
            return Some(Duration::from_secs(5));
        };
        match upload_repository_yaml(repo, &bs, cx).await {
            Ok(()) => {
                status::set(
                    &mut st.conditions,
                    c::TYPE_REPOSITORY_INITIALIZED,
                    true,
                    c::REASON_REPOSITORY_INITIALIZATION_SUCCEEDED,
                    c::MSG_REPOSITORY_INITIALIZED,
                );
                None
            }
            Err(e) => {
                let msg = e.to_string();
                fail(st, &msg);
                cx.events
                    .warning(
                        repo,
                        c::REASON_REPOSITORY_INITIALIZATION_FAILED,
                        "Initialize",
                        msg,
                    )
                    .await;
                Some(Duration::from_secs(10))
            }
        }
    }

    /// The status fields that come from the Snapshots, and the measured size.
    async fn record_snapshots(&self, repo: &Repository, cx: &Shell, st: &mut RepositoryStatus) {
        let agg = aggregate(&self.snapshots_of(repo));
        st.snapshot_count = Some(agg.count);
        st.last_backup_time = agg.last_backup_time.clone().or(st.last_backup_time.take());
        st.integrity = agg.integrity;
        st.recent_snapshots = agg.recent.clone();
        st.component_paths = agg.component_paths.clone();
        let uid = repo.uid().unwrap_or_default();
        let cached = self
            .sizes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&uid)
            .filter(|(f, _)| *f == agg.fingerprint)
            .map(|(_, s)| *s);
        let size = match cached {
            Some(s) => Some(s),
            None if agg.component_paths.is_empty() => None,
            None => match measure_size(repo, cx, &agg.component_paths).await {
                Ok(s) => {
                    self.sizes
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(uid, (agg.fingerprint.clone(), s));
                    Some(s)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "measuring the repository size failed; using the snapshots' sizes");
                    agg.size_from_snapshots
                }
            },
        };
        st.size = size.map(kstash_api::size::format_size);
    }

    /// `WipeOut`: deletes the Repository directory's files (restic repositories at `paths`,
    /// Snapshot copies, `repository.yaml`).
    async fn wipe(&self, repo: &Repository, cx: &Shell, paths: &BTreeSet<String>) -> Result<()> {
        let object = describe(repo);
        let Some(bs) = self.storage_of(repo) else {
            cx.events
                .warning(
                    repo,
                    "WipeOutSkipped",
                    "Delete",
                    "the BackupStorage is gone: the repository data was left in place",
                )
                .await;
            return Ok(());
        };
        let path = repo.spec.path.clone().unwrap_or_default();
        if path.trim_matches('/').is_empty() {
            return Ok(());
        }
        let s = storage::connect(cx.client(), &bs)
            .await
            .map_err(|e| crate::shell::error::resolve_error(&object, e))?;
        let dir = s
            .repository(path.trim_matches('/'))
            .map_err(|e| repo_error(&object, e))?;
        let components = component_paths(paths);
        let n = dir
            .wipe(&components)
            .await
            .map_err(|e| repo_error(&object, e))?;
        tracing::info!(repository = %object, files = n, "wiped out");
        Ok(())
    }
}

/// The component paths that parse (others are logged and skipped).
fn component_paths<'a>(paths: impl IntoIterator<Item = &'a String>) -> Vec<ComponentPath> {
    paths
        .into_iter()
        .filter_map(|p| match ComponentPath::parse(p) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!("skipping component path: {e}");
                None
            }
        })
        .collect()
}

/// Uploads `<path>/repository.yaml` (the Repository without its status).
async fn upload_repository_yaml(
    repo: &Repository,
    bs: &BackupStorage,
    cx: &Shell,
) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let s = storage::connect(cx.client(), bs).await?;
    let dir = s.repository(repo.spec.path.as_deref().unwrap_or_default())?;
    let mut copy = repo.clone();
    copy.status = None;
    copy.metadata.managed_fields = None;
    dir.initialize(serde_yaml::to_string(&copy)?.as_bytes())
        .await?;
    Ok(())
}

/// The restic repositories' size (sum over component paths).
async fn measure_size(repo: &Repository, cx: &Shell, paths: &[String]) -> Result<u64> {
    let object = describe(repo);
    let resolved = storage::resolve(cx.client(), repo, None, &object).await?;
    let mut total = 0;
    for p in component_paths(paths) {
        let r = resolved.component(&p).map_err(|e| repo_error(&object, e))?;
        total += r.size().await.map_err(|e| repo_error(&object, e))?;
    }
    Ok(total)
}
