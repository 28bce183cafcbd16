//! [`Step::Start`](kstash_rules::backup_session::step::Step::Start): claim the session, run its
//! backup to a terminal phase, write it, publish the outcome and create a due retry.

use kstash_api::constants::annotations;
use kstash_api::core::{
    BackupConfiguration, BackupSession, BackupSessionPhase, BackupSessionStatus,
};
use kstash_rules::backup_session as bsx;
use kstash_rules::backup_session::step;

use super::{now, session_key, Claimed, Reconcile, Run};
use crate::execute::error::not_found_none;
use crate::execute::{annotate, patch_status, Error};
use crate::task::claim::SessionClaim;
use tokio_util::sync::CancellationToken;

impl Reconcile<'_> {
    /// Claims the session here (uid and overlap key: a session of the same invoker and session
    /// that claimed it first makes this one `Skipped`; with several replicas, also its claim
    /// Lease), then runs it to its end. A claim another replica won first leaves the session
    /// to it.
    pub(super) async fn start(&self, uid: &str, bc: &BackupConfiguration) -> Result<(), Error> {
        let key = session_key(self.bs);
        let live = match self.exec.live.claim(uid, Some((&key, &self.name))) {
            Ok(c) => c,
            Err(other) => return self.skip(step::overlap_message(&other)).await,
        };
        let lost = CancellationToken::new();
        let claim = match self.take_claim(step::admitting, lost.clone()).await? {
            Claimed::Elsewhere => return Ok(()),
            c => c,
        };
        let outcome = self.run_claimed(bc, claim.lease(), &lost).await;
        claim.release().await;
        drop(live);
        // The retry is created once the claim and the live entry are gone, so it is admitted
        // rather than skipped as overlapping this session.
        match outcome? {
            Some(retry) => super::retry::create(&self.api, &retry).await,
            None => Ok(()),
        }
    }

    /// The backup of the claimed session to its terminal status; returns the retry due now.
    /// When the claim is lost (`lost`, with claims only) the backup stops where it is, as in a
    /// crash, and nothing more is written: the replica that takes the claim over ends it.
    async fn run_claimed(
        &self,
        bc: &BackupConfiguration,
        claim: Option<&SessionClaim>,
        lost: &CancellationToken,
    ) -> Result<Option<BackupSession>, Error> {
        let claimed = claim.is_some();
        let identity = &self.exec.ctx.config.identity;
        annotate(&self.api, &self.name, annotations::EXECUTED_BY, identity).await?;
        let run = Run {
            exec: self.exec,
            client: self.client.clone(),
            bs: self.bs,
            bc,
            api: self.api.clone(),
            ns: self.ns.clone(),
            name: self.name.clone(),
            claim_lost: claimed.then(|| lost.clone()),
            dead_holder: claim.and_then(|c| c.previous.clone()),
        };
        let start = now();
        let status = self.bs.status.clone().unwrap_or_default();
        let backup = async {
            match run.backup(status, start).await {
                Ok(s) => s,
                Err(e) => run.ended_by(e, start).await,
            }
        };
        let status = tokio::select! {
            s = backup => s,
            _ = lost.cancelled(), if claimed => {
                tracing::warn!(session = %self.name, "the session's claim was lost: the backup stopped; the replica taking the claim over ends the session");
                return Ok(None);
            }
        };
        run.conclude(status).await
    }

    /// Whether the session, read again now, passes `test`.
    pub(super) async fn still(&self, test: fn(&BackupSession) -> bool) -> Result<bool, Error> {
        let fresh = not_found_none(self.api.get(&self.name).await).map_err(|e| {
            Error::kube(
                format!("reading BackupSession {}/{}", self.ns, self.name),
                e,
            )
        })?;
        Ok(fresh.as_ref().is_some_and(test))
    }
}

impl Run<'_> {
    /// An API failure in the middle of the backup: the session must still end (never left
    /// `Running`), as an orphan would.
    async fn ended_by(&self, e: Error, start: jiff::Timestamp) -> BackupSessionStatus {
        tracing::warn!(session = %self.name, "backup failed: {e}");
        let snaps = self.session_snapshots().await;
        let mut st = self
            .api
            .get_status(&self.name)
            .await
            .ok()
            .and_then(|b| b.status)
            .unwrap_or_default();
        bsx::mark_executor(&mut st, &Err(e.to_string()), now());
        let rec = bsx::recover_orphan(&st, &snaps, &Ok(()), start, now());
        self.write_snapshot_statuses(&rec.snapshots).await;
        rec.status
    }

    /// Writes the terminal status (with its retry marked) and publishes the outcome; returns the
    /// retry session when it is due now (the caller creates it).
    async fn conclude(
        &self,
        mut status: BackupSessionStatus,
    ) -> Result<Option<BackupSession>, Error> {
        let retry_cfg = self
            .session_config()
            .and_then(|s| s.config.retry_config.clone());
        let retry =
            bsx::retry(self.bs, &mut status, retry_cfg.as_ref(), now()).unwrap_or_else(|e| {
                tracing::warn!(session = %self.name, "retry: {e}");
                None
            });
        patch_status(&self.api, &self.name, &status).await?;
        self.publish_outcome(&status).await;
        Ok(retry.filter(|r| r.at <= now()).map(|r| r.session))
    }

    async fn publish_outcome(&self, status: &BackupSessionStatus) {
        let events = &self.exec.events;
        if status.phase == Some(BackupSessionPhase::Succeeded) {
            let msg = format!(
                "BackupSession succeeded in {}",
                status.duration.as_deref().unwrap_or("")
            );
            events
                .publish(self.bs, false, "BackupSessionSucceeded", "Backup", msg)
                .await
        } else {
            let summary = kstash_api::phase::backup_session_summary(status).unwrap_or_default();
            let msg = format!("BackupSession failed: {summary}");
            events
                .publish(self.bs, true, "BackupSessionFailed", "Backup", msg)
                .await
        }
    }
}
