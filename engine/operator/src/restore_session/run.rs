//! [`Next::Run`](kstash_rules::restore_session::Next::Run): the restore task, once per
//! component, each component's files streamed from its restic snapshot as the task's input
//! through the shared runner ([`crate::task::runner`]), with live progress in
//! `components.<name>.progress`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kstash_api::core::RestoreSessionStatus;
use kstash_api::storage::{Repository, Snapshot};
use kstash_repo::resolve::ResolvedRepository;
use kstash_rules::restore_session::{self as rsx, ComponentUpdate, ResolvedSnapshot};
use kstash_runtime::TaskIo;
use kube::Api;

use super::{now, Reconcile};
use crate::backup_session::DEFAULT_INTERIM_DIR;
use crate::execute::{backend, patch_status, Error};
use crate::task::module::{self, LoadedTask, TaskKind};
use crate::task::progress::Progress;
use crate::task::runner::{self, Event};
use crate::task::sink::SnapshotInput;
use crate::task::{params, target};
use tokio_util::sync::CancellationToken;

/// The restore of one RestoreSession.
pub(super) struct Restore<'a> {
    rc: &'a Reconcile<'a>,
    /// Cancelled when this replica loses the restore's claim (with claims only).
    claim_lost: Option<CancellationToken>,
}

/// What every component's run needs, resolved once.
struct Prepared {
    /// The Snapshot asked for, and its object.
    from: ResolvedSnapshot,
    snapshot: Snapshot,
    resolved: ResolvedRepository,
    loaded: LoadedTask,
    task: String,
    function: String,
    params: Vec<(String, String)>,
    conn: target::Connection,
    /// The task's `interimDataDir` (where a component's files are when its stats do not say).
    interim: Option<String>,
    /// `status.restoreDeadline`: each component's task gets the time left until it.
    deadline: Option<Timestamp>,
    /// Each component's task limits (its Function's, under the operator's caps).
    limits: kstash_runtime::Limits,
}

impl<'a> Restore<'a> {
    pub(super) fn new(rc: &'a Reconcile<'a>, claim_lost: Option<CancellationToken>) -> Self {
        Restore { rc, claim_lost }
    }

    /// Runs the restore task per component. `Err` = the executor could not be ensured (the
    /// message goes into `RestoreExecutorEnsured`); component failures are recorded in
    /// `components` and return `Ok`.
    pub(super) async fn restore(
        &self,
        status: &mut RestoreSessionStatus,
        snap: &ResolvedSnapshot,
        components: &[String],
    ) -> Result<(), Error> {
        let deadline = status.restore_deadline.as_ref().map(|t| t.0);
        let p = self.prepare(snap, deadline).await?;
        rsx::mark_executor(status, &Ok(()), now());
        patch_status(&self.rc.api, &self.rc.name, &*status).await?;
        for comp in components {
            self.component(status, &p, comp).await?;
        }
        Ok(())
    }

    /// Resolves the Snapshot, its Repository, the module, the target and the parameters.
    async fn prepare(
        &self,
        snap: &ResolvedSnapshot,
        deadline: Option<Timestamp>,
    ) -> Result<Prepared, Error> {
        let (client, rs) = (&self.rc.client, self.rc.rs);
        let snapshot = Api::<Snapshot>::namespaced(client.clone(), &snap.namespace)
            .get(&snap.name)
            .await
            .map_err(|e| {
                Error::kube(
                    format!("reading Snapshot {}/{}", snap.namespace, snap.name),
                    e,
                )
            })?;
        let repo_name = snapshot.spec.repository.clone().unwrap_or_default();
        let repo: Repository = Api::<Repository>::namespaced(client.clone(), &snap.namespace)
            .get(&repo_name)
            .await
            .map_err(|e| {
                Error::kube(
                    format!("reading Repository {}/{repo_name}", snap.namespace),
                    e,
                )
            })?;
        let enc = rs
            .spec
            .data_source
            .as_ref()
            .and_then(|d| d.encryption_secret.as_ref());
        let field = format!(
            "RestoreSession {}/{} (spec.dataSource.encryptionSecret)",
            self.rc.ns, self.rc.name
        );
        let resolved = backend::resolve_repository(client, &repo, enc, &self.rc.ns, &field).await?;
        let addon = rs
            .spec
            .addon
            .as_ref()
            .ok_or_else(|| Error::Invalid("spec.addon is missing".into()))?;
        let tref = addon
            .tasks
            .first()
            .ok_or_else(|| Error::Invalid("spec.addon.tasks is empty".into()))?;
        kstash_api::admission::kstash_restore_limits(rs).map_err(Error::Unsupported)?;
        let ctx = &self.rc.exec.ctx;
        let loaded = module::load(
            client,
            &ctx.runtime,
            ctx.config.module_dir.as_deref(),
            &addon.name,
            &tref.name,
            TaskKind::Restore,
        )
        .await?;
        let tgt = rs
            .spec
            .target
            .as_ref()
            .ok_or_else(|| Error::Invalid("spec.target is missing".into()))?;
        let conn = target::resolve(client, tgt, &self.rc.ns, target::Access::Restore).await?;
        let builtins = [
            ("namespace", self.rc.ns.clone()),
            ("restoreSession", self.rc.name.clone()),
            ("snapshot", snap.name.clone()),
        ];
        let field = format!(
            "RestoreSession {}/{} spec.addon.tasks[0].params",
            self.rc.ns, self.rc.name
        );
        let vars = params::variables(
            &loaded.task.parameters,
            tref.params.as_ref(),
            &builtins,
            &field,
        )?;
        let function = loaded.function.metadata.name.clone().unwrap_or_default();
        params::resolve_args(&function, &loaded.function.spec.args, &vars)?;
        let declared = loaded
            .addon
            .description()
            .tasks
            .iter()
            .find(|t| t.name == tref.name)
            .map(|t| t.params.clone())
            .unwrap_or_default();
        let params = params::task_params(&tref.name, &declared, &vars)?;
        let limits = crate::task::limits::of_function(&loaded.function, &ctx.task_caps)?;
        Ok(Prepared {
            limits,
            from: snap.clone(),
            snapshot,
            resolved,
            loaded,
            task: tref.name.clone(),
            function,
            params,
            conn,
            interim: vars.get("interimDataDir").cloned(),
            deadline,
        })
    }

    /// Restores component `comp` and records its outcome (`Err`: the status patch failed).
    async fn component(
        &self,
        status: &mut RestoreSessionStatus,
        p: &Prepared,
        comp: &str,
    ) -> Result<(), Error> {
        let t0 = Instant::now();
        let progress = Arc::new(Progress::new(self.rc.name.clone()));
        let result = self.run_component(status, p, comp, &progress, t0).await;
        let update = match result {
            Ok(()) => ComponentUpdate::Succeeded(to_progress(&progress, 0, t0), t0.elapsed()),
            Err(e) => {
                let e = e.to_string();
                self.rc
                    .exec
                    .events
                    .publish(self.rc.rs, true, "RestoreTaskFailed", "Restore", e.clone())
                    .await;
                ComponentUpdate::Failed(e, t0.elapsed())
            }
        };
        rsx::update_component(status, comp, &update);
        patch_status(&self.rc.api, &self.rc.name, &*status).await?;
        Ok(())
    }

    /// Opens the component's restic snapshot and runs the task on it; `Err` is the component's
    /// failure message.
    async fn run_component(
        &self,
        status: &mut RestoreSessionStatus,
        p: &Prepared,
        comp: &str,
        progress: &Arc<Progress>,
        t0: Instant,
    ) -> Result<(), ComponentError> {
        let stats = p
            .snapshot
            .status
            .as_ref()
            .and_then(|s| s.components.get(comp))
            .and_then(|c| c.restic_stats.first().cloned())
            .unwrap_or_default();
        let id = component_id(&p.snapshot, &p.from, comp)?;
        let host = stats
            .host_path
            .clone()
            .or_else(|| p.interim.clone())
            .unwrap_or_else(|| DEFAULT_INTERIM_DIR.to_string());
        let session = p.snapshot.spec.session.clone().unwrap_or_default();
        let repo = kstash_repo::ComponentPath::new(&session, comp)
            .and_then(|c| p.resolved.component(&c))?;
        let reader = repo
            .open_snapshot(&id)
            .await
            .map_err(|source| ComponentError::Open {
                id: id.clone(),
                location: repo.location().to_string(),
                source: Box::new(source),
            })?;
        let total: u64 = reader.files().await?.iter().map(|f| f.size).sum();
        // Several components: each restore task sees `<component>/<file>`, the names its backup
        // wrote (task::sink).
        let several = p
            .snapshot
            .status
            .as_ref()
            .is_some_and(|s| s.components.len() > 1);
        let input = Arc::new(SnapshotInput::new(
            reader,
            &host,
            several.then_some(comp),
            progress.clone(),
        ));
        let call = runner::Call {
            addon: &p.loaded.addon,
            task: p.task.clone(),
            params: p.params.clone(),
            target: p.conn.target.clone(),
            limits: p.limits,
            wall_clock: p.deadline.map(wall_clock_until),
            io: TaskIo {
                output: None,
                input: Some(input),
                events: progress.clone(),
            },
        };
        let mut task = runner::start(
            call,
            &self.rc.exec.ctx.lifecycle.abort,
            self.claim_lost.as_ref(),
        );
        let result = loop {
            match task.next().await {
                Event::Done(r) => break r,
                Event::Tick => {
                    let now = to_progress(progress, total, t0);
                    rsx::update_component(status, comp, &ComponentUpdate::Running(now));
                    if let Err(e) = patch_status(&self.rc.api, &self.rc.name, &*status).await {
                        tracing::debug!("progress patch: {e}");
                    }
                }
            }
        };
        result.map(|_| ()).map_err(|source| ComponentError::Task {
            task: p.task.clone(),
            function: p.function.clone(),
            target: p.conn.describe.clone(),
            source: Box::new(source),
        })
    }
}

/// The time left until `deadline`, at least one second.
fn wall_clock_until(deadline: Timestamp) -> Duration {
    let left = deadline.duration_since(now());
    Duration::try_from(left)
        .unwrap_or(Duration::from_secs(1))
        .max(Duration::from_secs(1))
}

/// The restic snapshot id of component `comp` of `snapshot`. Exactly the snapshot asked for: a
/// component it does not hold, or holds without a restic snapshot id, fails naming both (never
/// restic's `latest`).
fn component_id(
    snapshot: &Snapshot,
    snap: &ResolvedSnapshot,
    comp: &str,
) -> Result<String, ComponentError> {
    let c = snapshot
        .status
        .as_ref()
        .and_then(|s| s.components.get(comp));
    let id = c
        .and_then(|c| c.restic_stats.first())
        .and_then(|s| s.id.clone());
    let named = format!("{}/{}", snap.namespace, snap.name);
    match (c, id) {
        (Some(_), Some(id)) => Ok(id),
        (None, _) => Err(ComponentError::NotInSnapshot {
            component: comp.to_string(),
            snapshot: named,
            has: snapshot
                .status
                .as_ref()
                .map(|s| s.components.keys().cloned().collect::<Vec<_>>().join(", "))
                .unwrap_or_default(),
        }),
        (Some(_), None) => Err(ComponentError::NoResticId {
            component: comp.to_string(),
            snapshot: named,
        }),
    }
}

/// Why one component of a restore failed (the message lands in `components.<c>` and in the
/// `RestoreTaskFailed` Event).
#[derive(Debug, thiserror::Error)]
enum ComponentError {
    /// The Snapshot does not hold the component.
    #[error("component {component:?} is not in Snapshot {snapshot} (it has: {has})")]
    NotInSnapshot {
        component: String,
        snapshot: String,
        has: String,
    },
    /// The Snapshot holds the component without a restic snapshot id.
    #[error("component {component:?} of Snapshot {snapshot} records no restic snapshot id")]
    NoResticId { component: String, snapshot: String },
    /// The component's repository could not be opened, or its files listed.
    #[error(transparent)]
    Repo(Box<kstash_repo::Error>),
    /// Opening the restic snapshot failed.
    #[error("opening restic snapshot {id} of {location}: {source}")]
    Open {
        id: String,
        location: String,
        #[source]
        source: Box<kstash_repo::Error>,
    },
    /// The restore task failed (or was aborted).
    #[error("task {task} (Function {function}) against {target} failed: {source}")]
    Task {
        task: String,
        function: String,
        target: String,
        #[source]
        source: Box<runner::RunError>,
    },
}

impl From<kstash_repo::Error> for ComponentError {
    fn from(e: kstash_repo::Error) -> Self {
        ComponentError::Repo(Box::new(e))
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
