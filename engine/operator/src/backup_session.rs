//! The BackupSession executor (spec §4, §5, §6; docs/executor.md).
//!
//! Watches BackupSessions and drives each one that is not terminal to a terminal phase, in the
//! order of spec §4: admission (skip when another session of the same configuration and
//! session runs, or the invoker is not Ready) → deadline → one Snapshot per repository →
//! executor (Addon task → Function → digest-pinned WASM module; target connection from the
//! AppBinding) → the task streams into each repository's `dump` component → Snapshot status and
//! its YAML copy in the bucket → retention → session history → `MetricsPushed` → phase. Every
//! decision comes from `kstash_rules::backup_session`; this module does the I/O.
//!
//! A session found `Running` with no live task in this executor (the engine restarted) is
//! driven to `Failed` by `recover_orphan`; a failed session with `retryLeft` gets its retry.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kstash_api::constants::{annotations as ann, COMPONENT_DUMP, FINALIZER_CLEANUP};
use kstash_api::core::{
    BackupConfiguration, BackupInvokerPhase, BackupSession, BackupSessionPhase,
    BackupSessionStatus, RetentionPolicyApplyStatus, Session,
};
use kstash_api::shared::{set_condition, Condition, ConditionStatus, Driver, ObjectReference};
use kstash_api::storage::{
    Component, Repository, RetentionPolicy, Snapshot, SnapshotPhase, SnapshotStatus,
};
use kstash_repo::resolve::ResolvedRepository;
use kstash_repo::{
    Backup, BackupOptions, ComponentSnapshot, RepositoryDir, ResticRepo, SnapshotDeletion,
};
use kstash_rules::backup_session as bsx;
use kstash_runtime::{Limits, TaskIo, TaskSpec};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::Api;

use crate::execute::error::not_found_none;
use crate::execute::events::Events;
use crate::execute::{backend, patch_status, Error};
use crate::task::module::{self, TaskKind};
use crate::task::progress::Progress;
use crate::task::sink::RepoOutput;
use crate::task::{params, report, target, ulid};
use crate::Context;
use kube::runtime::finalizer::{finalizer, Event as FinalizerEvent};

/// Condition type of the live progress on a running Snapshot (removed when it finishes).
pub const TYPE_BACKUP_PROGRESS: &str = "BackupProgress";
/// Default `interimDataDir`: where the dump's files live inside the restic snapshot.
pub const DEFAULT_INTERIM_DIR: &str = "/kubestash-interim/data";
/// How often live progress is patched.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);

/// The executor's state: sessions running in this process.
pub struct Executor {
    ctx: Arc<Context>,
    events: Events,
    /// uid of every session whose task runs in this executor.
    live: Mutex<HashSet<String>>,
    /// `namespace/kind/name/session` → the running session's name (overlap detection).
    running: Mutex<HashMap<String, String>>,
}

struct LiveGuard<'a> {
    exec: &'a Executor,
    uid: String,
    key: Option<String>,
}

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        lock(&self.exec.live).remove(&self.uid);
        if let Some(k) = &self.key {
            lock(&self.exec.running).remove(k);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs this controller until its watch ends.
pub async fn run(ctx: Arc<Context>) {
    let api: Api<BackupSession> = ctx.scoped_api();
    let exec = Arc::new(Executor {
        events: Events::new(ctx.client.clone(), &ctx.config.identity),
        ctx,
        live: Mutex::new(HashSet::new()),
        running: Mutex::new(HashMap::new()),
    });
    let ctx = exec.ctx.clone();
    crate::execute::run_until_drained(&ctx, api, reconcile, error_policy, exec, "backup session")
        .await;
}

fn error_policy(bs: Arc<BackupSession>, err: &Error, _: Arc<Executor>) -> Action {
    tracing::warn!(
        session = bs.metadata.name.as_deref().unwrap_or(""),
        "backup session: {err}"
    );
    Action::requeue(Duration::from_secs(5))
}

fn session_key(bs: &BackupSession) -> String {
    let inv = bs.spec.invoker.as_ref();
    format!(
        "{}/{}/{}/{}",
        bs.metadata.namespace.as_deref().unwrap_or(""),
        inv.map(|i| i.kind.as_str()).unwrap_or(""),
        inv.map(|i| i.name.as_str()).unwrap_or(""),
        bs.spec.session.as_deref().unwrap_or("")
    )
}

async fn reconcile(obj: Arc<BackupSession>, exec: Arc<Executor>) -> Result<Action, Error> {
    let ns = obj.metadata.namespace.clone().unwrap_or_default();
    let name = obj.metadata.name.clone().unwrap_or_default();
    let api: Api<BackupSession> = Api::namespaced(exec.ctx.client.clone(), &ns);
    // Always act on the fresh object, never on a possibly stale cache entry.
    let Some(bs) = not_found_none(api.get(&name).await)
        .map_err(|e| Error::kube(format!("reading BackupSession {ns}/{name}"), e))?
    else {
        return Ok(Action::await_change());
    };
    // kube's helper owns `kubestash.com/cleanup` (other controllers' finalizers stay): a
    // session holds no data of its own, so its cleanup has nothing to release.
    finalizer(&api, FINALIZER_CLEANUP, Arc::new(bs), |ev| async {
        match ev {
            FinalizerEvent::Apply(bs) => apply(&exec, &bs).await,
            FinalizerEvent::Cleanup(_) => Ok(Action::await_change()),
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

async fn apply(exec: &Arc<Executor>, bs: &BackupSession) -> Result<Action, Error> {
    let exec = exec.clone();
    let uid = bs.metadata.uid.clone().unwrap_or_default();
    if lock(&exec.live).contains(&uid) {
        return Ok(Action::await_change());
    }
    let bs = bs.clone();
    let phase = bs.status.as_ref().and_then(|s| s.phase);
    match phase {
        Some(BackupSessionPhase::Succeeded | BackupSessionPhase::Skipped) => {
            Ok(Action::await_change())
        }
        Some(BackupSessionPhase::Failed) => retry_due(&exec, &bs).await,
        Some(BackupSessionPhase::Running) => {
            recover(&exec, &bs).await?;
            Ok(Action::requeue(Duration::from_secs(1)))
        }
        _ => {
            execute(&exec, &bs).await?;
            Ok(Action::requeue(Duration::from_secs(1)))
        }
    }
}

/// How long a session waits for its existing invoker's first status before being skipped.
const INVOKER_GRACE_SECS: f64 = 30.0;

fn now() -> Timestamp {
    Timestamp::now()
}

fn start_time(bs: &BackupSession) -> Timestamp {
    bs.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or_else(now)
}

/// The BackupConfiguration invoking `bs` (`None` when it does not exist).
async fn invoker(
    client: &kube::Client,
    bs: &BackupSession,
) -> Result<Option<BackupConfiguration>, Error> {
    let ns = bs.metadata.namespace.as_deref().unwrap_or("");
    let Some(inv) = bs.spec.invoker.as_ref() else {
        return Ok(None);
    };
    if inv.kind != "BackupConfiguration" {
        return Ok(None);
    }
    let api: Api<BackupConfiguration> = Api::namespaced(client.clone(), ns);
    not_found_none(api.get(&inv.name).await)
        .map_err(|e| Error::kube(format!("reading BackupConfiguration {ns}/{}", inv.name), e))
}

/// Executes a Pending session to its end.
async fn execute(exec: &Executor, bs: &BackupSession) -> Result<(), Error> {
    let client = exec.ctx.client.clone();
    let ns = bs.metadata.namespace.clone().unwrap_or_default();
    let name = bs.metadata.name.clone().unwrap_or_default();
    let api: Api<BackupSession> = Api::namespaced(client.clone(), &ns);
    let uid = bs.metadata.uid.clone().unwrap_or_default();
    let key = session_key(bs);
    let mut status = bs.status.clone().unwrap_or_default();

    // Admission (spec §4 step 1).
    let bc = invoker(&client, bs).await?;
    // The BackupConfiguration controller creates a session in the same pass that writes the
    // configuration's new status (Ready): give that status a moment to land instead of skipping
    // a young session whose invoker exists but does not show Ready yet (requeued in 1 s).
    let unobserved = bc.as_ref().is_some_and(|b| {
        b.status.as_ref().and_then(|s| s.phase) != Some(BackupInvokerPhase::Ready)
    });
    if unobserved && now().duration_since(start_time(bs)).as_secs_f64() < INVOKER_GRACE_SECS {
        return Ok(());
    }
    let others = api
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::kube(format!("listing BackupSessions in {ns}"), e))?
        .items;
    // Invokers kstash does not run (BackupBatch, …) are refused naming `spec.invoker.kind`.
    let kind = bs.spec.invoker.as_ref().map(|i| i.kind.as_str());
    let unsupported = (kind != Some(kstash_rules::backup_configuration::KIND_BACKUP_CONFIGURATION))
        .then(|| bsx::step::unsupported_invoker(kind.unwrap_or("")));
    let mut skip = unsupported.or_else(|| {
        bsx::skip_reason(
            bs,
            bc.as_ref()
                .and_then(|b| b.status.as_ref())
                .and_then(|s| s.phase),
            &others,
        )
    });
    let guard = {
        let mut running = lock(&exec.running);
        if skip.is_none() {
            if let Some(other) = running.get(&key).filter(|o| **o != name) {
                skip = Some(format!(
                    "Skipped because BackupSession {other} of the same session is running"
                ));
            }
        }
        if skip.is_none() {
            running.insert(key.clone(), name.clone());
            lock(&exec.live).insert(uid.clone());
            Some(LiveGuard {
                exec,
                uid,
                key: Some(key),
            })
        } else {
            None
        }
    };
    if let Some(msg) = skip {
        bsx::skip(&mut status, &msg, now());
        patch_status(&api, &name, &status).await?;
        exec.events
            .publish(bs, false, "BackupSkipped", "Skip", msg)
            .await;
        return Ok(());
    }
    let _guard = guard;
    let bc = bc.expect("skip_reason refuses a missing invoker");
    let start = now();
    let run = Run {
        exec,
        client,
        bs,
        bc: &bc,
        api: api.clone(),
        ns,
        name: name.clone(),
    };
    let status = run.backup(status, start).await;
    let mut status = match status {
        Ok(s) => s,
        Err(e) => {
            // An API failure in the middle: the session must still end (never left Running).
            tracing::warn!(session = %name, "backup failed: {e}");
            let snaps = run.session_snapshots().await;
            let mut st = api
                .get_status(&name)
                .await
                .ok()
                .and_then(|b| b.status)
                .unwrap_or_default();
            bsx::mark_executor(&mut st, &Err(e.to_string()), now());
            let rec = bsx::recover_orphan(&st, &snaps, &Ok(()), start, now());
            run.write_snapshot_statuses(&rec.snapshots).await;
            rec.status
        }
    };
    let phase = status.phase;
    let retry_cfg = run
        .session_config()
        .and_then(|s| s.config.retry_config.clone());
    let retry = bsx::retry(bs, &mut status, retry_cfg.as_ref(), now()).unwrap_or_else(|e| {
        tracing::warn!(session = %name, "retry: {e}");
        None
    });
    patch_status(&api, &name, &status).await?;
    let summary = kstash_api::phase::backup_session_summary(&status).unwrap_or_default();
    match phase {
        Some(BackupSessionPhase::Succeeded) => {
            exec.events
                .publish(
                    bs,
                    false,
                    "BackupSessionSucceeded",
                    "Backup",
                    format!(
                        "BackupSession succeeded in {}",
                        status.duration.as_deref().unwrap_or("")
                    ),
                )
                .await
        }
        _ => {
            exec.events
                .publish(
                    bs,
                    true,
                    "BackupSessionFailed",
                    "Backup",
                    format!("BackupSession failed: {summary}"),
                )
                .await
        }
    }
    if let Some(r) = retry {
        if r.at <= now() {
            create_retry(&api, &r.session).await?;
        }
    }
    Ok(())
}

async fn create_retry(api: &Api<BackupSession>, s: &BackupSession) -> Result<(), Error> {
    match api.create(&PostParams::default(), s).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(Error::kube(
            format!(
                "creating retry BackupSession {}",
                s.metadata.name.as_deref().unwrap_or("")
            ),
            e,
        )),
    }
}

/// A failed session whose retry is due: create it (once) when `nextRetry` is reached.
async fn retry_due(exec: &Executor, bs: &BackupSession) -> Result<Action, Error> {
    let st = bs.status.clone().unwrap_or_default();
    let Some(next) = st.next_retry.as_ref().map(|t| t.0) else {
        return Ok(Action::await_change());
    };
    if st.retried != Some(true) {
        return Ok(Action::await_change());
    }
    let wait = next.duration_since(now());
    if wait.is_positive() {
        return Ok(Action::requeue(
            Duration::try_from(wait).unwrap_or(Duration::from_secs(1)),
        ));
    }
    let client = exec.ctx.client.clone();
    let ns = bs.metadata.namespace.clone().unwrap_or_default();
    let Some(bc) = invoker(&client, bs).await? else {
        return Ok(Action::await_change());
    };
    let cfg = bc
        .spec
        .sessions
        .iter()
        .find(|s| Some(&s.config.name) == bs.spec.session.as_ref())
        .and_then(|s| s.config.retry_config.clone());
    let delay = cfg
        .as_ref()
        .and_then(|c| c.delay.as_deref())
        .filter(|d| !d.is_empty())
        .and_then(|d| bsx::parse_go_duration(d).ok())
        .unwrap_or_default();
    let mut fresh = st.clone();
    fresh.retried = None;
    fresh.next_retry = None;
    let base = next
        .checked_sub(jiff::SignedDuration::try_from(delay).unwrap_or_default())
        .unwrap_or(next);
    if let Ok(Some(r)) = bsx::retry(bs, &mut fresh, cfg.as_ref(), base) {
        let api: Api<BackupSession> = Api::namespaced(client, &ns);
        create_retry(&api, &r.session).await?;
    }
    Ok(Action::await_change())
}

/// A `Running` session with no live task here: its executor died. Drive it to Failed.
async fn recover(exec: &Executor, bs: &BackupSession) -> Result<(), Error> {
    let client = exec.ctx.client.clone();
    let ns = bs.metadata.namespace.clone().unwrap_or_default();
    let name = bs.metadata.name.clone().unwrap_or_default();
    let api: Api<BackupSession> = Api::namespaced(client.clone(), &ns);
    let status = bs.status.clone().unwrap_or_default();
    let snap_api: Api<Snapshot> = Api::namespaced(client.clone(), &ns);
    let mut snaps = Vec::new();
    for s in &status.snapshots {
        if let Ok(Some(x)) = not_found_none(snap_api.get(&s.name).await) {
            snaps.push(x);
        }
    }
    let rec = bsx::recover_orphan(&status, &snaps, &Ok(()), start_time(bs), now());
    for (sname, st) in &rec.snapshots {
        let st = without_progress(st.clone());
        if let Err(e) = patch_status(&snap_api, sname, &st).await {
            tracing::warn!(snapshot = %sname, "recovery: {e}");
        }
    }
    let mut st = rec.status;
    let bc = invoker(&client, bs).await?;
    let cfg = bc.as_ref().and_then(|b| {
        b.spec
            .sessions
            .iter()
            .find(|s| Some(&s.config.name) == bs.spec.session.as_ref())
            .and_then(|s| s.config.retry_config.clone())
    });
    let retry = bsx::retry(bs, &mut st, cfg.as_ref(), now()).ok().flatten();
    patch_status(&api, &name, &st).await?;
    exec.events
        .publish(
            bs,
            true,
            "BackupSessionFailed",
            "Recover",
            bsx::MSG_EXECUTOR_TERMINATED,
        )
        .await;
    if let Some(r) = retry {
        if r.at <= now() {
            create_retry(&api, &r.session).await?;
        }
    }
    Ok(())
}

fn without_progress(mut st: SnapshotStatus) -> SnapshotStatus {
    st.conditions.retain(|c| c.type_ != TYPE_BACKUP_PROGRESS);
    st
}

/// One repository of the session, resolved.
struct RepoTarget {
    info_backend: Option<String>,
    repo: Repository,
    resolved: ResolvedRepository,
    dir: RepositoryDir,
    snapshot: Snapshot,
}

struct Run<'a> {
    exec: &'a Executor,
    client: kube::Client,
    bs: &'a BackupSession,
    bc: &'a BackupConfiguration,
    api: Api<BackupSession>,
    ns: String,
    name: String,
}

impl Run<'_> {
    fn session_config(&self) -> Option<&Session> {
        self.bc
            .spec
            .sessions
            .iter()
            .find(|s| Some(&s.config.name) == self.bs.spec.session.as_ref())
    }

    fn bc_name(&self) -> String {
        format!(
            "BackupConfiguration {}/{}",
            self.ns,
            self.bc.metadata.name.as_deref().unwrap_or("")
        )
    }

    async fn session_snapshots(&self) -> Vec<Snapshot> {
        let api: Api<Snapshot> = Api::namespaced(self.client.clone(), &self.ns);
        let lp = ListParams::default();
        api.list(&lp)
            .await
            .map(|l| {
                l.items
                    .into_iter()
                    .filter(|s| s.spec.backup_session.as_deref() == Some(self.name.as_str()))
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn write_snapshot_statuses(&self, list: &[(String, SnapshotStatus)]) {
        let api: Api<Snapshot> = Api::namespaced(self.client.clone(), &self.ns);
        for (n, st) in list {
            if let Err(e) = patch_status(&api, n, &without_progress(st.clone())).await {
                tracing::warn!(snapshot = %n, "{e}");
            }
        }
    }

    /// The whole backup; returns the final status (phase terminal). `Err` only for API
    /// failures that leave the session in an unknown state (the caller recovers it).
    async fn backup(
        &self,
        mut status: BackupSessionStatus,
        start: Timestamp,
    ) -> Result<BackupSessionStatus, Error> {
        let t = now();
        match bsx::backup_deadline(self.bs, start) {
            Ok(d) => status.backup_deadline = d.map(Time),
            Err(e) => {
                bsx::mark_snapshots_failed(&mut status, &e.to_string(), t);
                return self.finish(status, &[], Vec::new(), Ok(()), start).await;
            }
        }
        let Some(sess) = self.session_config() else {
            let msg = format!(
                "{} has no session {:?}",
                self.bc_name(),
                self.bs.spec.session.as_deref().unwrap_or("")
            );
            bsx::mark_snapshots_failed(&mut status, &msg, now());
            return self.finish(status, &[], Vec::new(), Ok(()), start).await;
        };
        let app_ref = match self.bc.spec.target.clone() {
            Some(mut t) => {
                t.namespace.get_or_insert_with(|| self.ns.clone());
                t
            }
            None => {
                let msg = format!("{}: spec.target is missing", self.bc_name());
                bsx::mark_snapshots_failed(&mut status, &msg, now());
                return self.finish(status, &[], Vec::new(), Ok(()), start).await;
            }
        };
        let conn = target::resolve(&self.client, &app_ref, &self.ns, target::Access::Backup).await;
        let db_version = match &conn {
            Ok(c) if bsx::is_kubedb(&app_ref) => c.db_version.clone(),
            _ => None,
        };

        // Step 4: one Snapshot per repository.
        let repos = match self.repositories(sess).await {
            Ok(r) => r,
            Err(e) => {
                bsx::mark_snapshots_failed(&mut status, &e.to_string(), now());
                return self.finish(status, &[], Vec::new(), Ok(()), start).await;
            }
        };
        let seed = self.bs.metadata.uid.clone().unwrap_or_default();
        let ms = now().as_millisecond().max(0) as u64;
        let targets: Vec<bsx::SnapshotTarget<'_>> = repos
            .iter()
            .map(|r| bsx::SnapshotTarget {
                repository: r,
                snapshot_id: ulid::new(ms, &seed),
            })
            .collect();
        let wanted =
            match bsx::snapshots_to_create(self.bs, &targets, &app_ref, db_version.as_deref()) {
                Ok(w) => w,
                Err(e) => {
                    bsx::mark_snapshots_failed(&mut status, &e.to_string(), now());
                    return self.finish(status, &[], Vec::new(), Ok(()), start).await;
                }
            };
        let mut snapshots = Vec::new();
        for s in &wanted {
            match self.ensure_snapshot(s).await {
                Ok(x) => snapshots.push(x),
                Err(e) => {
                    bsx::mark_snapshots_failed(&mut status, &e.to_string(), now());
                    return self
                        .finish(status, &snapshots, Vec::new(), Ok(()), start)
                        .await;
                }
            }
        }
        bsx::mark_snapshots_ensured(&mut status, &snapshots, now());
        patch_status(&self.api, &self.name, &status).await?;

        // Step 5: the executor (module, target, repositories).
        let prepared = self.prepare(sess, &repos, snapshots.clone(), conn).await;
        let (task, mut targets) = match prepared {
            Ok(p) => p,
            Err(msg) => {
                bsx::mark_executor(&mut status, &Err(msg.clone()), now());
                // The module may not have loaded: the addon's components are unknown.
                let unknown = [COMPONENT_DUMP.to_string()];
                let finished = self.fail_snapshots(&snapshots, &unknown, &msg).await;
                let retention = self.retention(sess, &[]).await;
                return self
                    .finish(status, &finished, retention.0, retention.1, start)
                    .await;
            }
        };
        bsx::mark_executor(&mut status, &Ok(()), now());

        // Step 6: run the task, streaming into every repository.
        let finished = self.run_task(&mut status, task, &mut targets).await?;

        // Steps 8-10.
        let all: Vec<(Option<String>, String)> = targets
            .iter()
            .map(|t| {
                (
                    t.info_backend.clone(),
                    t.repo.metadata.name.clone().unwrap_or_default(),
                )
            })
            .collect();
        let retention = self.retention(sess, &all).await;
        self.finish(status, &finished, retention.0, retention.1, start)
            .await
    }

    async fn repositories(&self, sess: &Session) -> Result<Vec<Repository>, Error> {
        let api: Api<Repository> = Api::namespaced(self.client.clone(), &self.ns);
        if sess.repositories.is_empty() {
            return Err(Error::Invalid(format!(
                "{} session {}: no repositories",
                self.bc_name(),
                sess.config.name
            )));
        }
        let mut out = Vec::new();
        for r in &sess.repositories {
            let what = format!("Repository {}/{}", self.ns, r.name);
            let repo = not_found_none(api.get(&r.name).await)
                .map_err(|e| Error::kube(format!("reading {what}"), e))?
                .ok_or(Error::NotFound(what))?;
            out.push(repo);
        }
        Ok(out)
    }

    async fn ensure_snapshot(&self, s: &Snapshot) -> Result<Snapshot, Error> {
        let ns = s.metadata.namespace.clone().unwrap_or_default();
        let name = s.metadata.name.clone().unwrap_or_default();
        let api: Api<Snapshot> = Api::namespaced(self.client.clone(), &ns);
        match api.create(&PostParams::default(), s).await {
            Ok(x) => Ok(x),
            Err(kube::Error::Api(e)) if e.code == 409 => api
                .get(&name)
                .await
                .map_err(|e| Error::kube(format!("reading Snapshot {ns}/{name}"), e)),
            Err(e) => Err(Error::kube(format!("creating Snapshot {ns}/{name}"), e)),
        }
    }

    /// Resolves module, target, parameters and repositories; `Err` is the executor failure.
    async fn prepare(
        &self,
        sess: &Session,
        repos: &[Repository],
        snapshots: Vec<Snapshot>,
        conn: Result<target::Connection, target::TargetError>,
    ) -> Result<(PreparedTask, Vec<RepoTarget>), String> {
        let addon = sess.addon.as_ref().ok_or_else(|| {
            format!(
                "{} session {}: addon is missing",
                self.bc_name(),
                sess.config.name
            )
        })?;
        let tref = addon.tasks.first().ok_or_else(|| {
            format!(
                "{} session {}: addon.tasks is empty",
                self.bc_name(),
                sess.config.name
            )
        })?;
        let loaded = module::load(
            &self.client,
            &self.exec.ctx.runtime,
            self.exec.ctx.config.module_dir.as_deref(),
            &addon.name,
            &tref.name,
            TaskKind::Backup,
        )
        .await
        .map_err(|e| e.to_string())?;
        let conn = conn.map_err(|e| format!("target: {e}"))?;
        let builtins = [
            ("namespace", self.ns.clone()),
            ("backupSession", self.name.clone()),
            ("invokerKind", "BackupConfiguration".to_string()),
            (
                "invokerName",
                self.bc.metadata.name.clone().unwrap_or_default(),
            ),
        ];
        let field = format!(
            "{} session {} addon.tasks[0].params",
            self.bc_name(),
            sess.config.name
        );
        let vars = params::variables(
            &loaded.task.parameters,
            tref.params.as_ref(),
            &builtins,
            &field,
        )
        .map_err(|e| e.to_string())?;
        let fname = loaded.function.metadata.name.clone().unwrap_or_default();
        let args = params::resolve_args(&fname, &loaded.function.spec.args, &vars)
            .map_err(|e| e.to_string())?;
        tracing::debug!(session = %self.name, ?args, "KubeStash command line of the Function");
        let def = loaded
            .addon
            .description()
            .tasks
            .iter()
            .find(|t| t.name == tref.name);
        let declared = def.map(|t| t.params.clone()).unwrap_or_default();
        let components = report::components_of(def);
        let task_params =
            params::task_params(&tref.name, &declared, &vars).map_err(|e| e.to_string())?;
        let interim = vars
            .get("interimDataDir")
            .filter(|d| !d.is_empty())
            .cloned()
            .unwrap_or_else(|| DEFAULT_INTERIM_DIR.to_string());
        let mut out = Vec::new();
        for (repo, snap) in repos.iter().zip(snapshots) {
            let rname = repo.metadata.name.clone().unwrap_or_default();
            let info = sess.repositories.iter().find(|r| r.name == rname);
            let enc = info.and_then(|i| i.encryption_secret.as_ref());
            let field = format!(
                "BackupSession {}/{} (encryptionSecret of repository {rname})",
                self.ns,
                self.bs.metadata.name.as_deref().unwrap_or("")
            );
            let resolved = backend::resolve_repository(&self.client, repo, enc, &self.ns, &field)
                .await
                .map_err(|e| e.to_string())?;
            out.push(RepoTarget {
                info_backend: info.and_then(|i| i.backend.clone()),
                repo: repo.clone(),
                dir: resolved.dir.clone(),
                resolved,
                snapshot: snap,
            });
        }
        let timeout = self
            .bs
            .spec
            .backup_timeout
            .as_deref()
            .filter(|t| !t.is_empty())
            .and_then(|t| bsx::parse_go_duration(t).ok());
        Ok((
            PreparedTask {
                loaded,
                task: tref.name.clone(),
                params: task_params,
                conn,
                components,
                interim,
                timeout,
            },
            out,
        ))
    }

    async fn fail_snapshots(
        &self,
        snapshots: &[Snapshot],
        components: &[String],
        msg: &str,
    ) -> Vec<Snapshot> {
        let mut out = Vec::new();
        for s in snapshots {
            let mut s2 = s.clone();
            for comp in components {
                let r = bsx::SnapshotResult {
                    component: comp.clone(),
                    path: component_path(s, comp),
                    backup: Err(msg.to_string()),
                    recent_list_updated: Ok(()),
                    metadata_uploaded: Ok(()),
                };
                s2.status = Some(bsx::finish_snapshot(&s2, &r, now()));
            }
            let st = s2.status.clone().unwrap_or_default();
            let name = s.metadata.name.clone().unwrap_or_default();
            let api: Api<Snapshot> = Api::namespaced(self.client.clone(), &self.ns);
            if let Err(e) = patch_status(&api, &name, &st).await {
                tracing::warn!(snapshot = %name, "{e}");
            }
            out.push(s2);
        }
        out
    }

    async fn patch_running(
        &self,
        status: &mut BackupSessionStatus,
        targets: &mut [RepoTarget],
        components: &[String],
        note: Option<String>,
    ) -> Result<(), Error> {
        for t in targets.iter_mut() {
            let mut st = t.snapshot.status.clone().unwrap_or_default();
            for name in components {
                let comp = st
                    .components
                    .entry(name.clone())
                    .or_insert_with(|| Component {
                        path: Some(component_path(&t.snapshot, name)),
                        driver: Some(Driver::Restic),
                        ..Default::default()
                    });
                comp.phase = Some(SnapshotPhase::Running);
            }
            st.total_components = Some(st.components.len() as i32);
            if let Some(n) = &note {
                set_condition(
                    &mut st.conditions,
                    Condition {
                        type_: TYPE_BACKUP_PROGRESS.into(),
                        status: ConditionStatus::True,
                        reason: Some("InProgress".into()),
                        message: Some(n.clone()),
                        last_transition_time: Time(now()),
                        observed_generation: None,
                        severity: None,
                    },
                );
            }
            st.phase = Some(kstash_api::phase::snapshot_phase(&st));
            st.last_update_time = Some(Time(now()));
            let name = t.snapshot.metadata.name.clone().unwrap_or_default();
            let api: Api<Snapshot> = Api::namespaced(self.client.clone(), &self.ns);
            patch_status(&api, &name, &st).await?;
            t.snapshot.status = Some(st.clone());
            if let Some(e) = status.snapshots.iter_mut().find(|e| e.name == name) {
                e.phase = st.phase;
            }
        }
        status.phase = Some(kstash_api::phase::backup_session_phase(status));
        patch_status(&self.api, &self.name, &*status).await?;
        Ok(())
    }

    async fn run_task(
        &self,
        status: &mut BackupSessionStatus,
        task: PreparedTask,
        targets: &mut [RepoTarget],
    ) -> Result<Vec<Snapshot>, Error> {
        let session = self.bs.spec.session.clone().unwrap_or_default();
        let t0 = Instant::now();
        // Open one restic backup per repository and component.
        let mut backups: Vec<Vec<(Arc<Backup>, ResticRepo)>> = Vec::new();
        let mut open_err = None;
        'open: for t in targets.iter() {
            let mut per_component = Vec::new();
            for comp in &task.components {
                let path = kstash_repo::ComponentPath::new(&session, comp);
                let opened = match path.and_then(|p| t.resolved.component(&p)) {
                    Ok(repo) => repo
                        .begin_backup(BackupOptions::default())
                        .await
                        .map(|b| (Arc::new(b), repo)),
                    Err(e) => Err(e),
                };
                match opened {
                    Ok(b) => per_component.push(b),
                    Err(e) => {
                        open_err = Some(format!(
                            "Repository {} (component {comp}): {e}",
                            t.repo.metadata.name.as_deref().unwrap_or("")
                        ));
                        break 'open;
                    }
                }
            }
            backups.push(per_component);
        }
        if let Some(msg) = open_err {
            drop(backups);
            let snaps: Vec<Snapshot> = targets.iter().map(|t| t.snapshot.clone()).collect();
            return Ok(self.fail_snapshots(&snaps, &task.components, &msg).await);
        }
        self.patch_running(status, targets, &task.components, None)
            .await?;
        self.exec
            .events
            .publish(
                self.bs,
                false,
                "BackupStarted",
                "Backup",
                format!("Running task {} against {}", task.task, task.conn.describe),
            )
            .await;

        let progress = Arc::new(Progress::new(self.name.clone()));
        let routes = task
            .components
            .iter()
            .enumerate()
            .map(|(i, c)| (c.clone(), backups.iter().map(|b| b[i].0.clone()).collect()))
            .collect();
        let output = Arc::new(RepoOutput::new(routes, &task.interim, progress.clone()));
        let mut limits = Limits::default();
        if let Some(d) = task.timeout {
            limits.wall_clock = d;
        }
        let spec = TaskSpec {
            task: task.task.clone(),
            params: task.params.clone(),
            target: task.conn.target.clone(),
            limits,
        };
        let io = TaskIo {
            output: Some(output),
            input: None,
            events: progress.clone(),
        };
        let mut fut = Box::pin(task.loaded.addon.run(spec, io));
        let mut tick = tokio::time::interval(PROGRESS_INTERVAL);
        tick.tick().await;
        let abort = self.exec.ctx.lifecycle.abort.clone();
        let result = loop {
            tokio::select! {
                r = &mut fut => break r.map_err(|e| e.to_string()),
                _ = abort.cancelled() => break Err(crate::execute::SHUTDOWN_ABORT.to_string()),
                _ = tick.tick() => {
                    let note = progress.snapshot().message("Backing up");
                    if let Err(e) = self.patch_running(status, targets, &task.components, Some(note)).await {
                        tracing::debug!(session = %self.name, "progress patch: {e}");
                    }
                }
            }
        };
        // The task's I/O (and so its references to the backups) goes with the future.
        drop(fut);
        let done = progress.snapshot();
        // Commit (or abandon) every backup.
        let mut results: Vec<Vec<(String, Result<bsx::ComponentResult, String>)>> = Vec::new();
        let mut report_notes = report::Notes::default();
        match result {
            Ok(report) => {
                tracing::info!(session = %self.name, items = report.items, bytes = report.bytes_written, "task done");
                report_notes = report::Notes::of(&report);
                let skipped = report_notes.skipped_error();
                for per_component in backups {
                    let mut r = Vec::new();
                    for ((b, repo), comp) in per_component.into_iter().zip(&task.components) {
                        let res = match (&skipped, Arc::try_unwrap(b)) {
                            (Some(msg), _) => Err(msg.clone()),
                            (None, Ok(b)) => commit(b, repo, &task.interim, t0).await,
                            (None, Err(_)) => {
                                Err("backup still referenced after the task ended".to_string())
                            }
                        };
                        r.push((comp.clone(), res));
                    }
                    results.push(r);
                }
                if let Some(w) = &report_notes.warnings {
                    self.exec
                        .events
                        .publish(self.bs, true, "BackupTaskWarnings", "Backup", w.clone())
                        .await;
                }
                self.exec
                    .events
                    .publish(
                        self.bs,
                        false,
                        "BackupTaskSucceeded",
                        "Backup",
                        done.message("Backed up"),
                    )
                    .await;
            }
            Err(e) => {
                drop(backups);
                let msg = format!(
                    "task {} (Function {}) against {} failed: {e}",
                    task.task,
                    task.loaded.function.metadata.name.as_deref().unwrap_or(""),
                    task.conn.describe
                );
                self.exec
                    .events
                    .publish(self.bs, true, "BackupTaskFailed", "Backup", msg.clone())
                    .await;
                results = targets
                    .iter()
                    .map(|_| {
                        task.components
                            .iter()
                            .map(|c| (c.clone(), Err(msg.clone())))
                            .collect()
                    })
                    .collect();
            }
        }
        let mut finished = Vec::new();
        for (t, r) in targets.iter().zip(results) {
            finished.push(self.finish_snapshot(t, r, &done, &report_notes).await);
        }
        Ok(finished)
    }

    async fn finish_snapshot(
        &self,
        t: &RepoTarget,
        backups: Vec<(String, Result<bsx::ComponentResult, String>)>,
        totals: &crate::task::progress::Snapshot,
        notes: &report::Notes,
    ) -> Snapshot {
        let name = t.snapshot.metadata.name.clone().unwrap_or_default();
        let api: Api<Snapshot> = Api::namespaced(self.client.clone(), &self.ns);
        let mut snap = t.snapshot.clone();
        if backups.iter().all(|(_, b)| b.is_ok()) {
            // What the task moved, for `/metrics` (and the bucket's YAML copy).
            let mut counts = vec![
                (ann::SNAPSHOT_DOCUMENTS, totals.items.to_string()),
                (ann::SNAPSHOT_STREAM_BYTES, totals.bytes.to_string()),
            ];
            if let Some(parts) = &notes.parts {
                counts.push((ann::SNAPSHOT_PARTS, parts.clone()));
            }
            let patch = serde_json::json!({"metadata": {"annotations":
                counts.iter().cloned().collect::<std::collections::BTreeMap<_, _>>()}});
            if let Err(e) = api
                .patch_metadata(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::warn!(snapshot = %name, "recording the document count: {e}");
            }
            let a = snap
                .metadata
                .annotations
                .get_or_insert_with(Default::default);
            for (k, v) in counts {
                a.insert(k.to_string(), v);
            }
        }
        snap.status = Some(without_progress(snap.status.clone().unwrap_or_default()));
        let mut result = None;
        for (comp, backup) in backups {
            let r = bsx::SnapshotResult {
                path: component_path(&snap, &comp),
                component: comp,
                backup,
                recent_list_updated: Ok(()),
                metadata_uploaded: Ok(()),
            };
            snap.status = Some(bsx::finish_snapshot(&snap, &r, now()));
            result = Some(r);
        }
        if let Some(c) = notes.condition(now()) {
            let mut st = snap.status.clone().unwrap_or_default();
            set_condition(&mut st.conditions, c);
            snap.status = Some(st);
        }
        let mut st = snap.status.clone().unwrap_or_default();
        let Some(mut result) = result else {
            return snap;
        };
        let mut copy = snap.clone();
        copy.status = Some(st.clone());
        copy.metadata.managed_fields = None;
        let upload = match serde_yaml::to_string(&copy) {
            Ok(y) => t
                .dir
                .put_snapshot_yaml(&name, y.as_bytes())
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = upload {
            result.metadata_uploaded = Err(format!("uploading snapshots/{name}.yaml: {e}"));
            st = bsx::finish_snapshot(&snap, &result, now());
        }
        if let Err(e) = patch_status(&api, &name, &st).await {
            tracing::warn!(snapshot = %name, "{e}");
        }
        snap.status = Some(st);
        snap
    }

    /// Step 8: retention per repository; returns the entries and the executor result.
    async fn retention(
        &self,
        sess: &Session,
        repos: &[(Option<String>, String)],
    ) -> (Vec<RetentionPolicyApplyStatus>, Result<(), String>) {
        let mut entries = Vec::new();
        let mut exec_result = Ok(());
        for (backend_name, repo) in repos {
            let backend = match backend_name {
                Some(b) if !b.is_empty() => self.bc.spec.backends.iter().find(|x| &x.name == b),
                _ => self.bc.spec.backends.first(),
            };
            let Some(pref) = backend.and_then(|b| b.retention_policy.clone()) else {
                continue;
            };
            match self.apply_retention(sess, repo, &pref).await {
                Ok(entry) => entries.push(entry),
                Err(e) => {
                    exec_result = Err(e.to_string());
                    entries.push(RetentionPolicyApplyStatus {
                        ref_: Some(pref.clone()),
                        repository: Some(repo.clone()),
                        phase: Some(kstash_api::core::RetentionPolicyApplyPhase::FailedToApply),
                        error: Some(e.to_string()),
                    });
                }
            }
        }
        (entries, exec_result)
    }

    async fn apply_retention(
        &self,
        sess: &Session,
        repo_name: &str,
        pref: &ObjectReference,
    ) -> Result<RetentionPolicyApplyStatus, Error> {
        let pns = pref.namespace_or(&self.ns).to_string();
        let rp_api: Api<RetentionPolicy> = Api::namespaced(self.client.clone(), &pns);
        let what = format!("RetentionPolicy {pns}/{}", pref.name);
        let rp = not_found_none(rp_api.get(&pref.name).await)
            .map_err(|e| Error::kube(format!("reading {what}"), e))?
            .ok_or(Error::NotFound(what))?;
        let snap_api: Api<Snapshot> = Api::namespaced(self.client.clone(), &self.ns);
        let snaps = snap_api
            .list(&ListParams::default())
            .await
            .map_err(|e| Error::kube(format!("listing Snapshots in {}", self.ns), e))?
            .items;
        let mut pref_full = pref.clone();
        pref_full.namespace.get_or_insert(pns);
        let plan = bsx::retention_plan(repo_name, &self.ns, &pref_full, &rp.spec, &snaps, now());
        if plan.to_delete.is_empty()
            || plan.status.phase == Some(kstash_api::core::RetentionPolicyApplyPhase::FailedToApply)
        {
            return Ok(bsx::retention_applied(&plan.status, &Ok(())));
        }
        let result = self
            .delete_snapshots(sess, repo_name, &plan.to_delete, &snaps)
            .await;
        if result.is_ok() {
            self.exec
                .events
                .publish(
                    self.bs,
                    false,
                    "RetentionPolicyApplied",
                    "Retention",
                    format!("Deleted Snapshots {}", plan.to_delete.join(", ")),
                )
                .await;
        }
        Ok(bsx::retention_applied(
            &plan.status,
            &result.map_err(|e| e.to_string()),
        ))
    }

    /// Forgets + prunes the restic snapshots of `names`, deletes their YAML copies, then the
    /// Snapshot objects (finalizer removed: the cleanup was just done here).
    async fn delete_snapshots(
        &self,
        sess: &Session,
        repo_name: &str,
        names: &[String],
        snaps: &[Snapshot],
    ) -> Result<(), Error> {
        let repo_api: Api<Repository> = Api::namespaced(self.client.clone(), &self.ns);
        let what = format!("Repository {}/{repo_name}", self.ns);
        let repo = not_found_none(repo_api.get(repo_name).await)
            .map_err(|e| Error::kube(format!("reading {what}"), e))?
            .ok_or(Error::NotFound(what))?;
        let enc = sess
            .repositories
            .iter()
            .find(|r| r.name == repo_name)
            .and_then(|i| i.encryption_secret.as_ref());
        let field = format!("Repository {}/{repo_name} (spec.encryptionSecret)", self.ns);
        let resolved =
            backend::resolve_repository(&self.client, &repo, enc, &self.ns, &field).await?;
        let (dir, password) = (&resolved.dir, resolved.password.expose());
        let deletions: Vec<SnapshotDeletion> = names
            .iter()
            .filter_map(|n| snaps.iter().find(|s| s.metadata.name.as_deref() == Some(n)))
            .map(|s| SnapshotDeletion {
                snapshot_name: s.metadata.name.clone().unwrap_or_default(),
                components: s
                    .status
                    .iter()
                    .flat_map(|st| st.components.iter())
                    .filter_map(|(cname, comp)| {
                        comp.restic_stats
                            .first()
                            .and_then(|r| r.id.clone())
                            .map(|id| ComponentSnapshot {
                                session: s.spec.session.clone().unwrap_or_default(),
                                component: cname.clone(),
                                restic_snapshot_id: id,
                            })
                    })
                    .collect(),
            })
            .collect();
        dir.apply_retention(&deletions, password)
            .await
            .map_err(|e| Error::repo(format!("applying retention to Repository {repo_name}"), e))?;
        let api: Api<Snapshot> = Api::namespaced(self.client.clone(), &self.ns);
        // The Snapshot controller releases each one's `kubestash.com/cleanup` (its data is
        // already forgotten above, so its own cleanup finds nothing left to forget).
        for n in names {
            match api.delete(n, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(Error::kube(format!("deleting Snapshot {}/{n}", self.ns), e)),
            }
        }
        Ok(())
    }

    /// Steps 9-10: history, metrics, final phase.
    async fn finish(
        &self,
        status: BackupSessionStatus,
        snapshots: &[Snapshot],
        retention: Vec<RetentionPolicyApplyStatus>,
        retention_executor: Result<(), String>,
        start: Timestamp,
    ) -> Result<BackupSessionStatus, Error> {
        let history = self.trim_history().await.map_err(|e| e.to_string());
        let steps = bsx::FinishSteps {
            retention,
            retention_executor,
            history,
            metrics: Ok(()),
        };
        Ok(bsx::finish(&status, snapshots, &steps, start, now()))
    }

    async fn trim_history(&self) -> Result<(), Error> {
        let limit = self
            .session_config()
            .and_then(|s| s.config.session_history_limit);
        let all = self
            .api
            .list(&ListParams::default())
            .await
            .map_err(|e| Error::kube(format!("listing BackupSessions in {}", self.ns), e))?
            .items;
        // Each deleted session's finalizer goes through this executor's finalizer helper.
        for n in bsx::sessions_to_delete(self.bs, &all, limit, now()) {
            match self.api.delete(&n, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => {
                    return Err(Error::kube(
                        format!("deleting BackupSession {}/{n}", self.ns),
                        e,
                    ))
                }
            }
        }
        Ok(())
    }
}

/// A task ready to run.
struct PreparedTask {
    loaded: module::LoadedTask,
    task: String,
    params: Vec<(String, String)>,
    conn: target::Connection,
    /// The snapshot components the task produces (the addon's `tasks.components`).
    components: Vec<String>,
    interim: String,
    timeout: Option<Duration>,
}

async fn commit(
    b: kstash_repo::Backup,
    repo: kstash_repo::ResticRepo,
    interim: &str,
    t0: Instant,
) -> Result<bsx::ComponentResult, String> {
    let loc = repo.location().to_string();
    let s = b
        .commit()
        .await
        .map_err(|e| format!("committing to {loc}: {e}"))?;
    let check = repo
        .check(false)
        .await
        .map_err(|e| format!("checking {loc}: {e}"))?;
    if !check.ok {
        // A snapshot the check does not vouch for is not Succeeded: retention never keeps it
        // in place of a verified one. Its data stays in the repository for inspection.
        tracing::warn!(repository = %loc, findings = ?check.findings, "restic check failed");
        return Err(format!(
            "the integrity check of {loc} after committing restic snapshot {} failed: {}; run `restic check` on it",
            s.snapshot_id,
            check.findings.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
        ));
    }
    Ok(bsx::ComponentResult {
        size: kstash_api::size::format_size(s.repository_size),
        duration: t0.elapsed(),
        integrity: check.ok,
        restic_stats: vec![kstash_api::storage::ResticStats {
            id: Some(s.snapshot_id.clone()),
            uploaded: Some(kstash_api::size::format_size(s.bytes_added)),
            host_path: Some(crate::task::sink::normalize_dir(interim)),
            size: Some(kstash_api::size::format_size(s.bytes_processed)),
            start_time: None,
            end_time: None,
        }],
    })
}

/// Where component `component` of `snap` lives below its Repository directory (the layout is
/// `kstash_repo`'s; an invalid session name, refused at admission, gives an empty path).
fn component_path(snap: &Snapshot, component: &str) -> String {
    let session = snap.spec.session.as_deref().unwrap_or("");
    kstash_repo::RepositoryDir::component_path(session, component).unwrap_or_default()
}
