//! [`Step::RecoverOrphan`](kstash_rules::backup_session::step::Step::RecoverOrphan): a `Running`
//! session with no live task here (its executor died) is driven to `Failed`.

use kstash_api::storage::Snapshot;
use kstash_rules::backup_session as bsx;
use kstash_rules::backup_session::step;
use kube::Api;

use super::snapshots::without_progress;
use super::{now, session_of, session_repository, start_time, Claimed, Reconcile};
use crate::execute::error::not_found_none;
use crate::execute::{patch_status, Error};

impl Reconcile<'_> {
    /// `recover_orphan` on the session and its Snapshots, its retry, and an Event. With
    /// several replicas, only under the session's claim (taken over from the dead holder,
    /// whose repository locks are removed); another replica that took it first keeps it.
    pub(super) async fn recover(&self) -> Result<(), Error> {
        let lost = tokio_util::sync::CancellationToken::new();
        let claim = match self.take_claim(step::running, lost).await? {
            Claimed::Elsewhere => return Ok(()),
            c => c,
        };
        let dead = claim.lease().and_then(|c| c.previous.as_ref());
        let recovered = self.recover_claimed(dead).await;
        claim.release().await;
        // As after a run: the retry is created once the claim is released.
        match recovered? {
            Some(retry) => super::retry::create(&self.api, &retry).await,
            None => Ok(()),
        }
    }

    /// The recovery proper; returns the retry session due now.
    async fn recover_claimed(
        &self,
        dead: Option<&(String, i64)>,
    ) -> Result<Option<kstash_api::core::BackupSession>, Error> {
        let status = self.bs.status.clone().unwrap_or_default();
        let snap_api: Api<Snapshot> = Api::namespaced(self.client.clone(), &self.ns);
        let mut snaps = Vec::new();
        for s in &status.snapshots {
            if let Ok(Some(x)) = not_found_none(snap_api.get(&s.name).await) {
                snaps.push(x);
            }
        }
        if let Some((host, pid)) = dead {
            self.unlock_dead_holder(&snaps, host, *pid).await;
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
        Ok(retry.filter(|r| r.at <= now()).map(|r| r.session))
    }
}

impl Reconcile<'_> {
    /// Removes the restic locks process `pid` on `host` (the session's dead executor) left in
    /// the components of the session's Snapshots. Failures are logged: restic's own rules
    /// still end such a lock after 30 minutes.
    async fn unlock_dead_holder(&self, snaps: &[Snapshot], host: &str, pid: i64) {
        let bc = match self.invoker().await {
            Ok(Some(bc)) => bc,
            _ => return,
        };
        let Some(sess) = session_of(&bc, self.bs) else {
            return;
        };
        let session = self.bs.spec.session.clone().unwrap_or_default();
        for snap in snaps {
            let Some(repo_name) = snap.spec.repository.as_deref() else {
                continue;
            };
            let resolved = match session_repository(&self.client, &self.ns, sess, repo_name).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(repository = %repo_name, "unlocking a dead holder's locks: {e}");
                    continue;
                }
            };
            let components = snap.status.iter().flat_map(|s| s.components.keys());
            for comp in components {
                let opened = kstash_repo::ComponentPath::new(&session, comp)
                    .and_then(|p| resolved.component(&p));
                let removed = match opened {
                    Ok(r) => r.unlock_held_by(host, pid).await,
                    Err(e) => Err(e),
                };
                match removed {
                    Ok(n) if n > 0 => {
                        tracing::info!(repository = %repo_name, component = %comp, removed = n, %host, pid, "removed the dead executor's locks")
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(repository = %repo_name, component = %comp, "unlocking a dead holder's locks: {e}")
                    }
                }
            }
        }
    }
}
