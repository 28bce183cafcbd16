//! The RestoreSession executor (spec §1.5, §8; docs/executor.md).
//!
//! Watches RestoreSessions; for one that is not terminal: `restore_session::plan` validates it,
//! resolves the Snapshot (`latest` or a name), records dependencies and the target, and lists
//! the BackupConfigurations of the target to pause. The executor pauses them, runs the Addon's
//! restore task (`logical-backup-restore`) with each component's files streamed from the restic
//! snapshot as the task's input, reports live progress in `components.<name>.progress`, then
//! resumes the paused configurations and finishes (`MetricsPushed`, phase by the calculator).
//! A `Running` restore with no live task here (engine restart) is driven to Failed and its
//! paused backups are resumed.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kstash_api::core::{BackupConfiguration, RestorePhase, RestoreSession, RestoreSessionStatus};
use kstash_api::shared::TypedObjectReference;
use kstash_api::storage::{Repository, Snapshot};
use kstash_rules::restore_session::{self as rsx, ComponentUpdate, Next};
use kstash_runtime::{Limits, TaskIo, TaskSpec};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::Api;

use crate::backup_session::DEFAULT_INTERIM_DIR;
use crate::execute::error::not_found_none;
use crate::execute::events::Events;
use crate::execute::{backend, patch_status, Error};
use crate::task::module::{self, TaskKind};
use crate::task::progress::Progress;
use crate::task::sink::SnapshotInput;
use crate::task::{params, target};
use crate::Context;

/// How often live progress is patched.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);

struct Executor {
    ctx: Arc<Context>,
    events: Events,
    live: Mutex<HashSet<String>>,
}

struct LiveGuard<'a>(&'a Executor, String);

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        self.0
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.1);
    }
}

/// Runs this controller until its watch ends.
pub async fn run(ctx: Arc<Context>) {
    let api: Api<RestoreSession> = ctx.scoped_api();
    let exec = Arc::new(Executor {
        events: Events::new(ctx.client.clone(), &ctx.config.identity),
        ctx,
        live: Mutex::new(HashSet::new()),
    });
    let ctx = exec.ctx.clone();
    crate::execute::run_until_drained(&ctx, api, reconcile, error_policy, exec, "restore session")
        .await;
}

fn error_policy(rs: Arc<RestoreSession>, err: &Error, _: Arc<Executor>) -> Action {
    tracing::warn!(
        restore = rs.metadata.name.as_deref().unwrap_or(""),
        "restore session: {err}"
    );
    Action::requeue(Duration::from_secs(5))
}

fn now() -> Timestamp {
    Timestamp::now()
}

async fn reconcile(obj: Arc<RestoreSession>, exec: Arc<Executor>) -> Result<Action, Error> {
    let ns = obj.metadata.namespace.clone().unwrap_or_default();
    let name = obj.metadata.name.clone().unwrap_or_default();
    let api: Api<RestoreSession> = Api::namespaced(exec.ctx.client.clone(), &ns);
    let Some(rs) = not_found_none(api.get(&name).await)
        .map_err(|e| Error::kube(format!("reading RestoreSession {ns}/{name}"), e))?
    else {
        return Ok(Action::await_change());
    };
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    if exec
        .live
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&uid)
    {
        return Ok(Action::await_change());
    }
    let start = rs
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or_else(now);
    let mut status = rs.status.clone().unwrap_or_default();
    match status.phase {
        Some(
            RestorePhase::Succeeded
            | RestorePhase::Failed
            | RestorePhase::Invalid
            | RestorePhase::Unknown,
        ) => Ok(Action::await_change()),
        Some(RestorePhase::Running) => {
            let paused = rsx::recover_orphan(&mut status, &Ok(()), start, now());
            resume(&exec.ctx.client, &paused, &ns).await;
            patch_status(&api, &name, &status).await?;
            exec.events
                .publish(
                    &rs,
                    true,
                    "RestoreSessionFailed",
                    "Recover",
                    "The restore executor terminated before completion (engine restarted or executor lost).",
                )
                .await;
            Ok(Action::await_change())
        }
        _ => {
            lock_insert(&exec.live, &uid);
            let _g = LiveGuard(&exec, uid);
            execute(&exec, &rs, start).await
        }
    }
}

fn lock_insert(m: &Mutex<HashSet<String>>, k: &str) {
    m.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(k.to_string());
}

/// Whether `target` exists, any kind through API discovery (`None`: the check failed; a kind
/// the server does not serve counts as not found).
async fn target_exists(client: &kube::Client, t: &TypedObjectReference, ns: &str) -> Option<bool> {
    let tns = t
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(ns);
    crate::kinds::get(
        client,
        t.api_group.as_deref().unwrap_or(""),
        t.kind.as_deref().unwrap_or(""),
        tns,
        &t.name,
    )
    .await
    .ok()
    .map(|o| o.is_some())
}

async fn set_paused(
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

async fn resume(client: &kube::Client, paused: &[TypedObjectReference], ns: &str) {
    for r in paused {
        if let Err(e) = set_paused(client, r, ns, false).await {
            tracing::warn!("{e}");
        }
    }
}

async fn execute(exec: &Executor, rs: &RestoreSession, start: Timestamp) -> Result<Action, Error> {
    let client = exec.ctx.client.clone();
    let ns = rs.metadata.namespace.clone().unwrap_or_default();
    let name = rs.metadata.name.clone().unwrap_or_default();
    let api: Api<RestoreSession> = Api::namespaced(client.clone(), &ns);
    let ds_ns = rs
        .spec
        .data_source
        .as_ref()
        .and_then(|d| d.namespace.clone())
        .unwrap_or_else(|| ns.clone());
    let snapshots = Api::<Snapshot>::namespaced(client.clone(), &ds_ns)
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::kube(format!("listing Snapshots in {ds_ns}"), e))?
        .items;
    let addons: BTreeSet<String> = Api::<kstash_api::addons::Addon>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::kube("listing Addons", e))?
        .items
        .into_iter()
        .filter_map(|a| a.metadata.name)
        .collect();
    let bcs = Api::<BackupConfiguration>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::kube("listing BackupConfigurations", e))?
        .items;
    let target_found = match rs.spec.target.as_ref() {
        Some(t) => target_exists(&client, t, &ns).await,
        None => Some(false),
    };
    let lookup = crate::control::admission_lookup(&exec.ctx).await?;
    let obs = rsx::Observed {
        lookup: &lookup,
        target_found,
        snapshots: &snapshots,
        addons: &addons,
        backup_configurations: &bcs,
        start,
        now: now(),
    };
    let plan = rsx::plan(rs, &obs).map_err(|e| Error::Invalid(e.to_string()))?;
    let mut status = plan.status;
    match plan.next {
        Next::Invalid => {
            patch_status(&api, &name, &status).await?;
            exec.events
                .publish(
                    rs,
                    true,
                    "RestoreSessionInvalid",
                    "Validate",
                    "RestoreSession failed validation",
                )
                .await;
            Ok(Action::await_change())
        }
        Next::Wait(msg) => {
            patch_status(&api, &name, &status).await?;
            tracing::info!(restore = %name, "waiting: {msg}");
            Ok(Action::requeue(Duration::from_secs(5)))
        }
        Next::Fail(msg) => {
            let paused = rsx::fail(&mut status, &msg, &Ok(()), start, now());
            resume(&client, &paused, &ns).await;
            patch_status(&api, &name, &status).await?;
            exec.events
                .publish(rs, true, "RestoreSessionFailed", "Restore", msg)
                .await;
            Ok(Action::await_change())
        }
        Next::Run {
            snapshot,
            components,
            pause,
        } => {
            for p in &pause {
                if let Err(e) = set_paused(&client, p, &ns, true).await {
                    let msg = e.to_string();
                    let paused = rsx::fail(&mut status, &msg, &Ok(()), start, now());
                    resume(&client, &paused, &ns).await;
                    patch_status(&api, &name, &status).await?;
                    return Ok(Action::await_change());
                }
            }
            patch_status(&api, &name, &status).await?;
            let r = Restore {
                exec,
                client: client.clone(),
                rs,
                api: api.clone(),
                ns: ns.clone(),
                name: name.clone(),
            };
            let result = r.restore(&mut status, &snapshot, &components).await;
            match result {
                Ok(()) => {
                    let paused = rsx::finish(&mut status, &Ok(()), start, now());
                    resume(&client, &paused, &ns).await;
                }
                Err(msg) => {
                    let paused = rsx::fail(&mut status, &msg, &Ok(()), start, now());
                    resume(&client, &paused, &ns).await;
                }
            }
            patch_status(&api, &name, &status).await?;
            let ok = status.phase == Some(RestorePhase::Succeeded);
            exec.events
                .publish(
                    rs,
                    !ok,
                    if ok {
                        "RestoreSessionSucceeded"
                    } else {
                        "RestoreSessionFailed"
                    },
                    "Restore",
                    format!(
                        "RestoreSession {:?} after {}",
                        status.phase.unwrap_or(RestorePhase::Unknown),
                        status.duration.as_deref().unwrap_or("")
                    ),
                )
                .await;
            Ok(Action::await_change())
        }
    }
}

struct Restore<'a> {
    exec: &'a Executor,
    client: kube::Client,
    rs: &'a RestoreSession,
    api: Api<RestoreSession>,
    ns: String,
    name: String,
}

impl Restore<'_> {
    /// Runs the restore task per component. `Err` = the executor could not be ensured (the
    /// message goes into `RestoreExecutorEnsured`); component failures are recorded in
    /// `components` and return `Ok`.
    async fn restore(
        &self,
        status: &mut RestoreSessionStatus,
        snap: &rsx::ResolvedSnapshot,
        components: &[String],
    ) -> Result<(), String> {
        let snap_api: Api<Snapshot> = Api::namespaced(self.client.clone(), &snap.namespace);
        let snapshot = snap_api
            .get(&snap.name)
            .await
            .map_err(|e| format!("reading Snapshot {}/{}: {e}", snap.namespace, snap.name))?;
        let repo_name = snapshot.spec.repository.clone().unwrap_or_default();
        let repo: Repository = Api::<Repository>::namespaced(self.client.clone(), &snap.namespace)
            .get(&repo_name)
            .await
            .map_err(|e| format!("reading Repository {}/{repo_name}: {e}", snap.namespace))?;
        let enc = self
            .rs
            .spec
            .data_source
            .as_ref()
            .and_then(|d| d.encryption_secret.as_ref());
        let field = format!(
            "RestoreSession {}/{} (spec.dataSource.encryptionSecret)",
            self.ns,
            self.rs.metadata.name.as_deref().unwrap_or("")
        );
        let resolved = backend::resolve_repository(&self.client, &repo, enc, &self.ns, &field)
            .await
            .map_err(|e| e.to_string())?;
        let addon = self
            .rs
            .spec
            .addon
            .as_ref()
            .ok_or_else(|| "spec.addon is missing".to_string())?;
        let tref = addon
            .tasks
            .first()
            .ok_or_else(|| "spec.addon.tasks is empty".to_string())?;
        kstash_api::admission::kstash_restore_limits(self.rs).map_err(|e| e.to_string())?;
        let loaded = module::load(
            &self.client,
            &self.exec.ctx.runtime,
            self.exec.ctx.config.module_dir.as_deref(),
            &addon.name,
            &tref.name,
            TaskKind::Restore,
        )
        .await
        .map_err(|e| e.to_string())?;
        let tgt = self
            .rs
            .spec
            .target
            .as_ref()
            .ok_or_else(|| "spec.target is missing".to_string())?;
        let conn = target::resolve(&self.client, tgt, &self.ns, target::Access::Restore)
            .await
            .map_err(|e| format!("target: {e}"))?;
        let builtins = [
            ("namespace", self.ns.clone()),
            ("restoreSession", self.name.clone()),
            ("snapshot", snap.name.clone()),
        ];
        let vars = params::variables(
            &loaded.task.parameters,
            tref.params.as_ref(),
            &builtins,
            &format!(
                "RestoreSession {}/{} spec.addon.tasks[0].params",
                self.ns, self.name
            ),
        )
        .map_err(|e| e.to_string())?;
        let fname = loaded.function.metadata.name.clone().unwrap_or_default();
        params::resolve_args(&fname, &loaded.function.spec.args, &vars)
            .map_err(|e| e.to_string())?;
        let declared = loaded
            .addon
            .description()
            .tasks
            .iter()
            .find(|t| t.name == tref.name)
            .map(|t| t.params.clone())
            .unwrap_or_default();
        let task_params =
            params::task_params(&tref.name, &declared, &vars).map_err(|e| e.to_string())?;
        let deadline = status.restore_deadline.as_ref().map(|t| t.0);
        rsx::mark_executor(status, &Ok(()), now());
        patch_status(&self.api, &self.name, &*status)
            .await
            .map_err(|e| e.to_string())?;

        let session = snapshot.spec.session.clone().unwrap_or_default();
        for comp in components {
            let t0 = Instant::now();
            let c = snapshot
                .status
                .as_ref()
                .and_then(|s| s.components.get(comp))
                .cloned();
            // Exactly the snapshot asked for: a component it does not hold, or holds without
            // a restic snapshot id, fails naming both (never restic's `latest`).
            let stats = c
                .as_ref()
                .and_then(|c| c.restic_stats.first().cloned())
                .unwrap_or_default();
            let id: Result<String, String> = match (&c, stats.id.clone()) {
                (Some(_), Some(id)) => Ok(id),
                (None, _) => Err(format!(
                    "component {comp:?} is not in Snapshot {}/{} (it has: {})",
                    snap.namespace,
                    snap.name,
                    snapshot
                        .status
                        .as_ref()
                        .map(|s| s.components.keys().cloned().collect::<Vec<_>>().join(", "))
                        .unwrap_or_default()
                )),
                (Some(_), None) => Err(format!(
                    "component {comp:?} of Snapshot {}/{} records no restic snapshot id",
                    snap.namespace, snap.name
                )),
            };
            let host = stats
                .host_path
                .clone()
                .or_else(|| vars.get("interimDataDir").cloned())
                .unwrap_or_else(|| DEFAULT_INTERIM_DIR.to_string());
            let progress = Arc::new(Progress::new(self.name.clone()));
            let result: Result<(), String> = async {
                let id = id?;
                let repo = kstash_repo::ComponentPath::new(&session, comp)
                    .and_then(|p| resolved.component(&p))
                    .map_err(|e| e.to_string())?;
                let reader = repo.open_snapshot(&id).await.map_err(|e| {
                    format!("opening restic snapshot {id} of {}: {e}", repo.location())
                })?;
                let total: u64 = reader
                    .files()
                    .await
                    .map_err(|e| e.to_string())?
                    .iter()
                    .map(|f| f.size)
                    .sum();
                // Several components: each restore task sees `<component>/<file>`, the names
                // its backup wrote (task::sink).
                let several = snapshot.status.as_ref().is_some_and(|s| s.components.len() > 1);
                let input = Arc::new(SnapshotInput::new(
                    reader,
                    &host,
                    several.then_some(comp.as_str()),
                    progress.clone(),
                ));
                let mut limits = Limits::default();
                if let Some(d) = deadline {
                    let left = d.duration_since(now());
                    limits.wall_clock = Duration::try_from(left)
                        .unwrap_or(Duration::from_secs(1))
                        .max(Duration::from_secs(1));
                }
                let spec = TaskSpec {
                    task: tref.name.clone(),
                    params: task_params.clone(),
                    target: conn.target.clone(),
                    limits,
                };
                let io = TaskIo {
                    output: None,
                    input: Some(input),
                    events: progress.clone(),
                };
                let fut = loaded.addon.run(spec, io);
                tokio::pin!(fut);
                let mut tick = tokio::time::interval(PROGRESS_INTERVAL);
                tick.tick().await;
                let abort = self.exec.ctx.lifecycle.abort.clone();
                let r = loop {
                    tokio::select! {
                        r = &mut fut => break r.map_err(|e| e.to_string()),
                        _ = abort.cancelled() => break Err(crate::execute::SHUTDOWN_ABORT.to_string()),
                        _ = tick.tick() => {
                            let p = to_progress(&progress, total, t0);
                            rsx::update_component(status, comp, &ComponentUpdate::Running(p));
                            if let Err(e) = patch_status(&self.api, &self.name, &*status).await {
                                tracing::debug!("progress patch: {e}");
                            }
                        }
                    }
                };
                r.map(|_| ()).map_err(|e| {
                    format!(
                        "task {} (Function {fname}) against {} failed: {e}",
                        tref.name, conn.describe
                    )
                })
            }
            .await;
            let update = match result {
                Ok(()) => ComponentUpdate::Succeeded(to_progress(&progress, 0, t0), t0.elapsed()),
                Err(e) => {
                    self.exec
                        .events
                        .publish(self.rs, true, "RestoreTaskFailed", "Restore", e.clone())
                        .await;
                    ComponentUpdate::Failed(e, t0.elapsed())
                }
            };
            rsx::update_component(status, comp, &update);
            patch_status(&self.api, &self.name, &*status)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// The status progress from the live counters; `total` bytes (0 = done, use what was read).
fn to_progress(p: &Progress, total: u64, t0: Instant) -> rsx::Progress {
    let s = p.snapshot();
    let secs = t0.elapsed().as_secs_f64();
    let total = if total == 0 { s.bytes } else { total };
    rsx::Progress {
        seconds_elapsed: (secs * 10.0).round() / 10.0,
        percent_done: (total > 0)
            .then(|| ((s.bytes as f64 * 1000.0 / total as f64).round() / 10.0).min(100.0)),
        total_files: s.total,
        files_done: s.items,
        restore_done: kstash_api::size::format_size(s.bytes),
        total: Some(kstash_api::size::format_size(total)),
        speed: (secs > 0.0).then(|| {
            format!(
                "{}/s",
                kstash_api::size::format_size((s.bytes as f64 / secs) as u64)
            )
        }),
    }
}
