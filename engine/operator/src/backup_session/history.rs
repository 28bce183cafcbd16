//! Steps 9-10: the session history (`sessionHistoryLimit`), `MetricsPushed` and the final
//! phase.

use jiff::Timestamp;
use kstash_api::core::{BackupSessionStatus, RetentionPolicyApplyStatus};
use kstash_api::storage::Snapshot;
use kstash_rules::backup_session as bsx;
use kube::api::{DeleteParams, ListParams};

use super::{now, Run};
use crate::execute::Error;

impl Run<'_> {
    /// Steps 9-10: history, metrics, final phase.
    pub(super) async fn finish(
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
