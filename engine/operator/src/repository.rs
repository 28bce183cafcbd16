//! Repository controller (spec §1.8, §5.3, §5.4): initialises the Repository directory by
//! uploading `repository.yaml` (`RepositoryInitialized`), and keeps its status from the
//! `Snapshot` objects of the Repository (`snapshotCount`, `lastBackupTime`, `integrity`,
//! `recentSnapshots`, `componentPaths`) and from the restic repositories (`size`). Deletion
//! applies `deletionPolicy` through the `kubestash.com/cleanup` finalizer.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kstash_api::constants::{conditions as c, FINALIZER_CLEANUP};
use kstash_api::phase::repository_phase;
use kstash_api::storage::{
    BackupStorage, BackupStoragePhase, DeletionPolicy, Repository, RepositoryPhase, Snapshot,
    SnapshotInfo, SnapshotPhase, SnapshotType,
};
use kube::api::{Api, DeleteParams, ListParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt;

use crate::control::{self, kube_err, Error, Events, Result};
use crate::storage::{connect, encryption_password};
use crate::Context;

/// At most this many `recentSnapshots` (KubeStash docs: 5).
pub const RECENT_SNAPSHOTS: usize = 5;

struct Ctl {
    ctx: Arc<Context>,
    events: Events,
    /// Repository uid → (fingerprint of its succeeded snapshots, measured size in bytes).
    sizes: Mutex<HashMap<String, (String, u64)>>,
}

/// Runs this controller until its watch ends.
pub async fn run(ctx: Arc<Context>) {
    let ctl = Arc::new(Ctl {
        events: Events::new(&ctx, "repository"),
        ctx: ctx.clone(),
        sizes: Mutex::new(HashMap::new()),
    });
    let repos = control::scoped_api::<Repository>(&ctx);
    let snaps = control::scoped_api::<Snapshot>(&ctx);
    Controller::new(repos, watcher::Config::default())
        .watches(snaps, watcher::Config::default(), |s| {
            let repo = s.spec.repository.as_ref()?;
            Some(ObjectRef::new(repo).within(&s.namespace().unwrap_or_default()))
        })
        .run(reconcile, control::error_policy, ctl)
        .for_each(|_| async {})
        .await;
}

async fn reconcile(repo: Arc<Repository>, ctl: Arc<Ctl>) -> Result<Action> {
    let ns = repo.namespace().unwrap_or_default();
    let api: Api<Repository> = Api::namespaced(ctl.ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER_CLEANUP, repo, |ev| async {
        match ev {
            Finalizer::Apply(r) => apply(&r, &ctl).await,
            Finalizer::Cleanup(r) => cleanup(&r, &ctl).await,
        }
    })
    .await
    .map_err(control::finalizer_err)
}

/// What the Snapshots of a Repository add up to (pure; see the module docs).
#[derive(Debug, Default, PartialEq)]
pub struct SnapshotAggregate {
    /// Number of Snapshot objects.
    pub count: i32,
    /// `snapshotTime` of the newest succeeded full backup.
    pub last_backup_time: Option<Time>,
    /// AND of the succeeded snapshots' integrity (`None` when none reports one).
    pub integrity: Option<bool>,
    /// Newest first, at most [`RECENT_SNAPSHOTS`].
    pub recent: Vec<SnapshotInfo>,
    /// Union of the component paths, sorted.
    pub component_paths: Vec<String>,
    /// Sum over component paths of the newest succeeded snapshot's component size (bytes).
    pub size_from_snapshots: Option<u64>,
    /// Names of the succeeded snapshots (fingerprint for the size cache).
    pub fingerprint: String,
}

fn snapshot_time(s: &Snapshot) -> Option<jiff::Timestamp> {
    s.status
        .as_ref()
        .and_then(|st| st.snapshot_time.as_ref())
        .map(|t| t.0)
        .or_else(|| s.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Aggregates the Snapshots of one Repository.
pub fn aggregate(snapshots: &[Snapshot]) -> SnapshotAggregate {
    let mut sorted: Vec<&Snapshot> = snapshots.iter().collect();
    sorted.sort_by(|a, b| {
        snapshot_time(b)
            .cmp(&snapshot_time(a))
            .then_with(|| b.name_any().cmp(&a.name_any()))
    });
    let phase = |s: &Snapshot| s.status.as_ref().and_then(|st| st.phase);
    let succeeded: Vec<&Snapshot> = sorted
        .iter()
        .copied()
        .filter(|s| phase(s) == Some(SnapshotPhase::Succeeded))
        .collect();
    let last_backup_time = succeeded
        .iter()
        .find(|s| s.spec.type_ != Some(SnapshotType::IncrementalBackup))
        .and_then(|s| snapshot_time(s).map(Time));
    let integrities: Vec<bool> = succeeded
        .iter()
        .filter_map(|s| s.status.as_ref().and_then(|st| st.integrity))
        .collect();
    let integrity = (!integrities.is_empty()).then(|| integrities.iter().all(|i| *i));
    let recent = sorted
        .iter()
        .take(RECENT_SNAPSHOTS)
        .map(|s| SnapshotInfo {
            name: s.name_any(),
            phase: phase(s),
            session: s.spec.session.clone(),
            size: s.status.as_ref().and_then(|st| st.size.clone()),
            snapshot_time: snapshot_time(s).map(Time),
        })
        .collect();
    let mut paths = BTreeSet::new();
    for s in &sorted {
        if let Some(st) = &s.status {
            paths.extend(st.components.values().filter_map(|c| c.path.clone()));
        }
    }
    // Size: each component repository's size as reported by its newest succeeded snapshot.
    let mut size: Option<u64> = None;
    for p in &paths {
        let newest = succeeded.iter().find_map(|s| {
            s.status.as_ref().and_then(|st| {
                st.components
                    .values()
                    .find(|c| c.path.as_deref() == Some(p))
                    .and_then(|c| c.size.as_deref())
                    .and_then(|sz| kstash_api::size::parse_size(sz).ok())
            })
        });
        if let Some(b) = newest {
            size = Some(size.unwrap_or(0) + b);
        }
    }
    SnapshotAggregate {
        count: snapshots.len() as i32,
        last_backup_time,
        integrity,
        recent,
        component_paths: paths.into_iter().collect(),
        size_from_snapshots: size,
        fingerprint: succeeded
            .iter()
            .map(|s| s.name_any())
            .collect::<Vec<_>>()
            .join(","),
    }
}

async fn storage_of(ctx: &Context, repo: &Repository) -> Result<Option<BackupStorage>> {
    let ns = repo.namespace().unwrap_or_default();
    let Some(r) = &repo.spec.storage_ref else {
        return Ok(None);
    };
    let api: Api<BackupStorage> = Api::namespaced(ctx.client.clone(), r.namespace_or(&ns));
    api.get_opt(&r.name).await.map_err(kube_err(format!(
        "reading BackupStorage {}/{}",
        r.namespace_or(&ns),
        r.name
    )))
}

/// Measures the restic repositories' size (sum over component paths).
async fn measure_size(
    ctx: &Context,
    repo: &Repository,
    bs: &BackupStorage,
    paths: &[String],
) -> Result<u64> {
    let ns = repo.namespace().unwrap_or_default();
    let enc = repo
        .spec
        .encryption_secret
        .as_ref()
        .ok_or_else(|| Error::MissingField {
            object: format!("Repository {ns}/{}", repo.name_any()),
            field: "spec.encryptionSecret",
        })?;
    let pw = encryption_password(&ctx.client, enc.namespace_or(&ns), &enc.name).await?;
    let storage = connect(&ctx.client, bs).await?;
    let dir = storage.repository(repo.spec.path.as_deref().unwrap_or_default())?;
    let mut total = 0;
    for p in paths {
        // repository/v1/<session>/<component>
        let parts: Vec<&str> = p.trim_matches('/').split('/').collect();
        if let [_, _, session, component] = parts.as_slice() {
            total += dir.component(session, component, &pw)?.size().await?;
        }
    }
    Ok(total)
}

async fn apply(repo: &Repository, ctl: &Ctl) -> Result<Action> {
    let ctx = &ctl.ctx;
    let ns = repo.namespace().unwrap_or_default();
    let name = repo.name_any();
    let mut status = repo.status.clone().unwrap_or_default();
    let was_ready = status.phase == Some(RepositoryPhase::Ready);
    let storage = storage_of(ctx, repo).await?;

    // 1. Initialise (repository.yaml), once the BackupStorage is Ready.
    let mut retry = None;
    if repository_phase(&status) != RepositoryPhase::Ready {
        let ready_bs = storage
            .as_ref()
            .filter(|b| b.status.as_ref().and_then(|s| s.phase) == Some(BackupStoragePhase::Ready));
        match (ready_bs, repo.spec.path.as_deref()) {
            (_, None) => {
                control::set(
                    &mut status.conditions,
                    c::TYPE_REPOSITORY_INITIALIZED,
                    false,
                    c::REASON_REPOSITORY_INITIALIZATION_FAILED,
                    "spec.path is required",
                );
            }
            (None, _) => {
                let r = repo.spec.storage_ref.clone().unwrap_or_default();
                control::set(
                    &mut status.conditions,
                    c::TYPE_REPOSITORY_INITIALIZED,
                    false,
                    c::REASON_REPOSITORY_INITIALIZATION_FAILED,
                    &format!(
                        "BackupStorage {}/{} is not found or not Ready",
                        r.namespace_or(&ns),
                        r.name
                    ),
                );
                retry = Some(Duration::from_secs(5));
            }
            (Some(bs), Some(path)) => {
                let res: Result<()> = async {
                    let storage = connect(&ctx.client, bs).await?;
                    let dir = storage.repository(path)?;
                    let mut copy = repo.clone();
                    copy.status = None;
                    copy.metadata.managed_fields = None;
                    let yaml = serde_yaml::to_string(&copy).unwrap_or_default();
                    dir.initialize(yaml.as_bytes()).await?;
                    Ok(())
                }
                .await;
                match res {
                    Ok(()) => control::set(
                        &mut status.conditions,
                        c::TYPE_REPOSITORY_INITIALIZED,
                        true,
                        c::REASON_REPOSITORY_INITIALIZATION_SUCCEEDED,
                        c::MSG_REPOSITORY_INITIALIZED,
                    ),
                    Err(e) => {
                        let msg = e.to_string();
                        control::set(
                            &mut status.conditions,
                            c::TYPE_REPOSITORY_INITIALIZED,
                            false,
                            c::REASON_REPOSITORY_INITIALIZATION_FAILED,
                            &msg,
                        );
                        ctl.events
                            .publish(
                                repo,
                                true,
                                c::REASON_REPOSITORY_INITIALIZATION_FAILED,
                                "Initialize",
                                msg,
                            )
                            .await;
                        retry = Some(Duration::from_secs(10));
                    }
                }
            }
        }
    }

    // 2. Aggregate the Snapshots.
    let snaps = snapshots_of(ctx, repo).await?;
    let agg = aggregate(&snaps);
    status.snapshot_count = Some(agg.count);
    status.last_backup_time = agg
        .last_backup_time
        .clone()
        .or(status.last_backup_time.take());
    status.integrity = agg.integrity;
    status.recent_snapshots = agg.recent.clone();
    status.component_paths = agg.component_paths.clone();
    let uid = repo.uid().unwrap_or_default();
    let cached = ctl
        .sizes
        .lock()
        .unwrap()
        .get(&uid)
        .filter(|(f, _)| *f == agg.fingerprint)
        .map(|(_, s)| *s);
    let size = match cached {
        Some(s) => Some(s),
        None if agg.component_paths.is_empty() => None,
        None => match &storage {
            Some(bs) => match measure_size(ctx, repo, bs, &agg.component_paths).await {
                Ok(s) => {
                    ctl.sizes
                        .lock()
                        .unwrap()
                        .insert(uid, (agg.fingerprint.clone(), s));
                    Some(s)
                }
                Err(e) => {
                    tracing::warn!(repository = %format!("{ns}/{name}"), error = %e,
                        "measuring the repository size failed; using the snapshots' sizes");
                    agg.size_from_snapshots
                }
            },
            None => agg.size_from_snapshots,
        },
    };
    status.size = size.map(kstash_api::size::format_size);
    status.phase = Some(repository_phase(&status));

    let api: Api<Repository> = Api::namespaced(ctx.client.clone(), &ns);
    control::patch_status(&api, &name, repo.status.as_ref(), &status).await?;
    if status.phase == Some(RepositoryPhase::Ready) && !was_ready {
        ctl.events
            .publish(
                repo,
                false,
                c::REASON_REPOSITORY_INITIALIZATION_SUCCEEDED,
                "Initialize",
                format!("Repository {ns}/{name} initialized (repository.yaml uploaded)"),
            )
            .await;
    }
    Ok(match retry {
        Some(d) => Action::requeue(d),
        None => Action::requeue(Duration::from_secs(600)),
    })
}

/// The Snapshots of this Repository (its namespace, `spec.repository` = its name).
async fn snapshots_of(ctx: &Context, repo: &Repository) -> Result<Vec<Snapshot>> {
    let ns = repo.namespace().unwrap_or_default();
    let api: Api<Snapshot> = Api::namespaced(ctx.client.clone(), &ns);
    let name = repo.name_any();
    Ok(api
        .list(&ListParams::default())
        .await
        .map_err(kube_err(format!("listing Snapshots in {ns}")))?
        .items
        .into_iter()
        .filter(|s| s.spec.repository.as_deref() == Some(name.as_str()))
        .collect())
}

/// `deletionPolicy`: `Delete` (default) deletes the Snapshot CRs and keeps the data; `WipeOut`
/// also deletes the directory's data (restic repositories, snapshot copies, `repository.yaml`).
async fn cleanup(repo: &Repository, ctl: &Ctl) -> Result<Action> {
    let ctx = &ctl.ctx;
    let ns = repo.namespace().unwrap_or_default();
    let snaps = snapshots_of(ctx, repo).await?;
    let mut paths: BTreeSet<String> = repo
        .status
        .as_ref()
        .map(|s| s.component_paths.iter().cloned().collect())
        .unwrap_or_default();
    paths.extend(aggregate(&snaps).component_paths);
    let sapi: Api<Snapshot> = Api::namespaced(ctx.client.clone(), &ns);
    for s in &snaps {
        match sapi.delete(&s.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if control::is_code(&e, 404) => {}
            Err(e) => return Err(kube_err(format!("deleting Snapshot {ns}/{}", s.name_any()))(e)),
        }
    }
    if repo.spec.deletion_policy == Some(DeletionPolicy::WipeOut) {
        let path = repo.spec.path.clone().unwrap_or_default();
        match storage_of(ctx, repo).await? {
            Some(bs) if !path.is_empty() => {
                let storage = connect(&ctx.client, &bs).await?;
                let paths: Vec<String> = paths.into_iter().collect();
                let n = control::wipe::wipe_repository(&storage, &path, &paths).await?;
                tracing::info!(repository = %format!("{ns}/{}", repo.name_any()), files = n, "wiped out");
            }
            _ => {
                ctl.events
                    .publish(
                        repo,
                        true,
                        "WipeOutSkipped",
                        "Delete",
                        "the BackupStorage is gone: the repository data was left in place".into(),
                    )
                    .await;
            }
        }
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kstash_api::storage::{Component, SnapshotSpec, SnapshotStatus};

    fn snap(name: &str, t: &str, phase: SnapshotPhase, size: &str, integrity: bool) -> Snapshot {
        let mut s = Snapshot::new(
            name,
            SnapshotSpec {
                repository: Some("s3-elasticsearch-repo".into()),
                session: Some("frequent-backup".into()),
                type_: Some(SnapshotType::FullBackup),
                ..Default::default()
            },
        );
        s.status = Some(SnapshotStatus {
            phase: Some(phase),
            snapshot_time: Some(Time(t.parse().unwrap())),
            integrity: Some(integrity),
            size: Some(size.into()),
            components: [(
                "dump".to_string(),
                Component {
                    path: Some("repository/v1/frequent-backup/dump".into()),
                    size: Some(size.into()),
                    ..Default::default()
                },
            )]
            .into_iter()
            .collect(),
            ..Default::default()
        });
        s
    }

    #[test]
    fn aggregate_follows_the_spec_fields() {
        let snaps: Vec<Snapshot> = (0..7)
            .map(|i| {
                snap(
                    &format!("s-{i}"),
                    &format!("2024-09-19T04:5{i}:00Z"),
                    if i == 6 {
                        SnapshotPhase::Failed
                    } else {
                        SnapshotPhase::Succeeded
                    },
                    &format!("{} KiB", i + 1),
                    true,
                )
            })
            .collect();
        let a = aggregate(&snaps);
        assert_eq!(a.count, 7);
        let names: Vec<&str> = a.recent.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["s-6", "s-5", "s-4", "s-3", "s-2"]);
        // Newest *succeeded* snapshot gives the time and the component size.
        assert_eq!(
            a.last_backup_time.unwrap().0,
            "2024-09-19T04:55:00Z".parse::<jiff::Timestamp>().unwrap()
        );
        assert_eq!(a.size_from_snapshots, Some(6 * 1024));
        assert_eq!(a.integrity, Some(true));
        assert_eq!(a.component_paths, ["repository/v1/frequent-backup/dump"]);
    }

    #[test]
    fn no_snapshots_means_no_integrity_and_no_size() {
        let a = aggregate(&[]);
        assert_eq!(a.count, 0);
        assert_eq!(a.integrity, None);
        assert_eq!(a.size_from_snapshots, None);
        assert!(a.recent.is_empty());
    }
}
