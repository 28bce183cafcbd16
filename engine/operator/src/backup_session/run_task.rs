//! Step 6: the backup task through the shared runner ([`crate::task::runner`]), streaming into
//! one restic backup per repository and component; then each backup committed and checked
//! (or abandoned) and each Snapshot finished.

use std::sync::Arc;
use std::time::Instant;

use kstash_api::core::BackupSessionStatus;
use kstash_api::storage::Snapshot;
use kstash_repo::{Backup, BackupOptions, ResticRepo};
use kstash_rules::backup_session as bsx;
use kstash_runtime::{TaskIo, TaskReport};

use super::{PreparedTask, RepoTarget, Run};
use crate::execute::Error;
use crate::task::progress::Progress;
use crate::task::report;
use crate::task::runner::{self, Event, RunError};
use crate::task::sink::RepoOutput;

/// One open restic backup per component, per repository (`[target][component]`).
type Backups = Vec<Vec<(Arc<Backup>, ResticRepo)>>;

/// Each component's result, per repository.
type Results = Vec<Vec<(String, Result<bsx::ComponentResult, String>)>>;

impl Run<'_> {
    /// Runs the task and finishes every target's Snapshot. `Err` only for a failed status
    /// patch before the task started.
    pub(super) async fn run_task(
        &self,
        status: &mut BackupSessionStatus,
        task: PreparedTask,
        targets: &mut [RepoTarget],
    ) -> Result<Vec<Snapshot>, Error> {
        let t0 = Instant::now();
        let backups = match self.open_backups(&task, targets).await {
            Ok(b) => b,
            Err(e) => {
                let snaps: Vec<Snapshot> = targets.iter().map(|t| t.snapshot.clone()).collect();
                let msg = e.to_string();
                return Ok(self.fail_snapshots(&snaps, &task.components, &msg).await);
            }
        };
        self.patch_running(status, targets, &task.components, None)
            .await?;
        let start_msg = format!("Running task {} against {}", task.task, task.conn.describe);
        self.exec
            .events
            .publish(self.bs, false, "BackupStarted", "Backup", start_msg)
            .await;
        let progress = Arc::new(Progress::new(self.name.clone()));
        let result = self
            .run_addon(status, &task, targets, &backups, &progress)
            .await;
        let done = progress.snapshot();
        let (results, notes) = match result {
            Ok(report) => {
                let notes = report::Notes::of(&report);
                let results = self.commit_all(&notes, backups, &task, t0).await;
                let msg = done.message("Backed up");
                self.exec
                    .events
                    .publish(self.bs, false, "BackupTaskSucceeded", "Backup", msg)
                    .await;
                (results, notes)
            }
            Err(e) => {
                drop(backups);
                (
                    self.task_failed(&task, targets, e).await,
                    Default::default(),
                )
            }
        };
        let mut finished = Vec::new();
        for (t, r) in targets.iter().zip(results) {
            finished.push(self.finish_snapshot(t, r, &done, &notes).await);
        }
        Ok(finished)
    }

    /// Removes the locks of the dead holder whose claim this run took over (logged on failure:
    /// restic's rules still end them after 30 minutes).
    async fn unlock_dead_holder(&self, repo: &kstash_repo::ResticRepo) {
        let Some((host, pid)) = &self.dead_holder else {
            return;
        };
        if let Err(e) = repo.unlock_held_by(host, *pid).await {
            tracing::warn!(session = %self.name, "removing the dead holder's locks: {e}");
        }
    }

    /// Opens one restic backup per repository and component; `Err` names the one that failed.
    async fn open_backups(
        &self,
        task: &PreparedTask,
        targets: &[RepoTarget],
    ) -> Result<Backups, OpenError> {
        let session = self.bs.spec.session.clone().unwrap_or_default();
        let mut backups = Vec::new();
        for t in targets {
            let mut per_component = Vec::new();
            for comp in &task.components {
                let path = kstash_repo::ComponentPath::new(&session, comp);
                let opened = match path.and_then(|p| t.resolved.component(&p)) {
                    Ok(repo) => {
                        self.unlock_dead_holder(&repo).await;
                        repo.begin_backup(BackupOptions::default())
                            .await
                            .map(|b| (Arc::new(b), repo))
                    }
                    Err(e) => Err(e),
                };
                per_component.push(opened.map_err(|source| OpenError {
                    repository: t.repo.metadata.name.clone().unwrap_or_default(),
                    component: comp.clone(),
                    source,
                })?);
            }
            backups.push(per_component);
        }
        Ok(backups)
    }

    /// The addon call, its output routed to `backups`, live progress patched on every tick.
    async fn run_addon(
        &self,
        status: &mut BackupSessionStatus,
        prepared: &PreparedTask,
        targets: &mut [RepoTarget],
        backups: &Backups,
        progress: &Arc<Progress>,
    ) -> Result<TaskReport, RunError> {
        let routes = prepared
            .components
            .iter()
            .enumerate()
            .map(|(i, c)| (c.clone(), backups.iter().map(|b| b[i].0.clone()).collect()))
            .collect();
        let output = Arc::new(RepoOutput::new(routes, &prepared.interim, progress.clone()));
        let call = runner::Call {
            addon: &prepared.loaded.addon,
            task: prepared.task.clone(),
            params: prepared.params.clone(),
            target: prepared.conn.target.clone(),
            limits: prepared.limits,
            wall_clock: prepared.timeout,
            io: TaskIo {
                output: Some(output),
                input: None,
                events: progress.clone(),
            },
        };
        let mut task = runner::start(
            call,
            &self.exec.ctx.lifecycle.abort,
            self.claim_lost.as_ref(),
        );
        let report = loop {
            match task.next().await {
                Event::Done(r) => break r?,
                Event::Tick => {
                    let note = progress.snapshot().message("Backing up");
                    let components = &prepared.components;
                    if let Err(e) = self
                        .patch_running(status, targets, components, Some(note))
                        .await
                    {
                        tracing::debug!(session = %self.name, "progress patch: {e}");
                    }
                }
            }
        };
        tracing::info!(session = %self.name, items = report.items, bytes = report.bytes_written, "task done");
        Ok(report)
    }

    /// Commits (and checks) every backup, or abandons them all when the report says the task
    /// skipped data.
    async fn commit_all(
        &self,
        notes: &report::Notes,
        backups: Backups,
        task: &PreparedTask,
        t0: Instant,
    ) -> Results {
        let skipped = notes.skipped_error();
        let mut results = Vec::new();
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
        if let Some(w) = &notes.warnings {
            self.exec
                .events
                .publish(self.bs, true, "BackupTaskWarnings", "Backup", w.clone())
                .await;
        }
        results
    }

    /// The task failed: an Event, and every component of every target failed with its message.
    async fn task_failed(
        &self,
        task: &PreparedTask,
        targets: &[RepoTarget],
        e: RunError,
    ) -> Results {
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
        targets
            .iter()
            .map(|_| {
                task.components
                    .iter()
                    .map(|c| (c.clone(), Err(msg.clone())))
                    .collect()
            })
            .collect()
    }
}

/// A restic backup of one repository's component could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("Repository {repository} (component {component}): {source}")]
struct OpenError {
    repository: String,
    component: String,
    #[source]
    source: kstash_repo::Error,
}

/// Commits backup `b` to `repo` and checks the repository; the component's result.
async fn commit(
    b: Backup,
    repo: ResticRepo,
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
