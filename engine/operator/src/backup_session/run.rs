//! The backup of an admitted session, in spec §4's order: deadline → Snapshots → executor →
//! task → retention → finish. Each stage that fails ends the pipeline with the session's
//! terminal status (never left `Running`).

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kstash_api::constants::COMPONENT_DUMP;
use kstash_api::core::{BackupSessionStatus, Session};
use kstash_api::shared::TypedObjectReference;
use kstash_api::storage::Snapshot;
use kstash_rules::backup_session as bsx;

use super::{now, Run};
use crate::execute::{patch_status, Error};
use crate::task::target;

impl Run<'_> {
    /// The whole backup; returns the final status (phase terminal). `Err` only for API
    /// failures that leave the session in an unknown state (the caller recovers it).
    pub(super) async fn backup(
        &self,
        mut status: BackupSessionStatus,
        start: Timestamp,
    ) -> Result<BackupSessionStatus, Error> {
        // Steps 2-3: deadline, the session's configuration, the target.
        let (sess, app_ref) = match self.admitted(&mut status, start) {
            Ok(x) => x,
            Err(e) => return self.failed_before_snapshots(status, &e, start).await,
        };
        let conn = target::resolve(&self.client, &app_ref, &self.ns, target::Access::Backup).await;
        let db_version = match &conn {
            Ok(c) if bsx::is_kubedb(&app_ref) => c.db_version.clone(),
            _ => None,
        };

        // Step 4: one Snapshot per repository.
        let mut snapshots = Vec::new();
        let created = self
            .create_snapshots(sess, &app_ref, db_version.as_deref(), &mut snapshots)
            .await;
        let repos = match created {
            Ok(repos) => repos,
            Err(e) => {
                bsx::mark_snapshots_failed(&mut status, &e.to_string(), now());
                return self
                    .finish(status, &snapshots, Vec::new(), Ok(()), start)
                    .await;
            }
        };
        bsx::mark_snapshots_ensured(&mut status, &snapshots, now());
        patch_status(&self.api, &self.name, &status).await?;

        // Step 5: the executor (module, target, repositories).
        let (task, mut targets) = match self.prepare(sess, &repos, snapshots.clone(), conn).await {
            Ok(p) => p,
            Err(e) => {
                return self
                    .executor_failed(status, sess, &snapshots, &e.to_string(), start)
                    .await
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

    /// The deadline (written to `status.backupDeadline`), the session of the configuration and
    /// the target reference (namespace defaulted).
    fn admitted(
        &self,
        status: &mut BackupSessionStatus,
        start: Timestamp,
    ) -> Result<(&Session, TypedObjectReference), Error> {
        status.backup_deadline = bsx::backup_deadline(self.bs, start)?.map(Time);
        let sess = self.session_config().ok_or_else(|| {
            Error::Invalid(format!(
                "{} has no session {:?}",
                self.bc_name(),
                self.bs.spec.session.as_deref().unwrap_or("")
            ))
        })?;
        let mut app_ref =
            self.bc.spec.target.clone().ok_or_else(|| {
                Error::Invalid(format!("{}: spec.target is missing", self.bc_name()))
            })?;
        app_ref.namespace.get_or_insert_with(|| self.ns.clone());
        Ok((sess, app_ref))
    }

    /// Ends a session that failed before any Snapshot was made.
    async fn failed_before_snapshots(
        &self,
        mut status: BackupSessionStatus,
        e: &Error,
        start: Timestamp,
    ) -> Result<BackupSessionStatus, Error> {
        bsx::mark_snapshots_failed(&mut status, &e.to_string(), now());
        self.finish(status, &[], Vec::new(), Ok(()), start).await
    }

    /// Ends a session whose executor could not be ensured: its Snapshots fail with `msg`.
    async fn executor_failed(
        &self,
        mut status: BackupSessionStatus,
        sess: &Session,
        snapshots: &[Snapshot],
        msg: &str,
        start: Timestamp,
    ) -> Result<BackupSessionStatus, Error> {
        bsx::mark_executor(&mut status, &Err(msg.to_string()), now());
        // The module may not have loaded: the addon's components are unknown.
        let unknown = [COMPONENT_DUMP.to_string()];
        let finished = self.fail_snapshots(snapshots, &unknown, msg).await;
        let retention = self.retention(sess, &[]).await;
        self.finish(status, &finished, retention.0, retention.1, start)
            .await
    }
}
