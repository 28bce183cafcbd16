//! [`Step::RecoverOrphan`](kstash_rules::backup_session::step::Step::RecoverOrphan): a `Running`
//! session with no live task here (its executor died) is driven to `Failed`.

use kstash_api::storage::Snapshot;
use kstash_rules::backup_session as bsx;
use kube::Api;

use super::snapshots::without_progress;
use super::{now, session_of, start_time, Reconcile};
use crate::execute::error::not_found_none;
use crate::execute::{patch_status, Error};

impl Reconcile<'_> {
    /// `recover_orphan` on the session and its Snapshots, its retry, and an Event.
    pub(super) async fn recover(&self) -> Result<(), Error> {
        let status = self.bs.status.clone().unwrap_or_default();
        let snap_api: Api<Snapshot> = Api::namespaced(self.client.clone(), &self.ns);
        let mut snaps = Vec::new();
        for s in &status.snapshots {
            if let Ok(Some(x)) = not_found_none(snap_api.get(&s.name).await) {
                snaps.push(x);
            }
        }
        let rec = bsx::recover_orphan(&status, &snaps, &Ok(()), start_time(self.bs), now());
        for (sname, st) in &rec.snapshots {
            let st = without_progress(st.clone());
            if let Err(e) = patch_status(&snap_api, sname, &st).await {
                tracing::warn!(snapshot = %sname, "recovery: {e}");
            }
        }
        let mut st = rec.status;
        let bc = self.invoker().await?;
        let cfg = bc
            .as_ref()
            .and_then(|b| session_of(b, self.bs))
            .and_then(|s| s.config.retry_config.clone());
        let retry = bsx::retry(self.bs, &mut st, cfg.as_ref(), now())
            .ok()
            .flatten();
        patch_status(&self.api, &self.name, &st).await?;
        self.exec
            .events
            .publish(
                self.bs,
                true,
                "BackupSessionFailed",
                "Recover",
                bsx::MSG_EXECUTOR_TERMINATED,
            )
            .await;
        if let Some(r) = retry {
            if r.at <= now() {
                super::retry::create(&self.api, &r.session).await?;
            }
        }
        Ok(())
    }
}
