//! [`Step::CreateRetry`](kstash_rules::backup_session::step::Step::CreateRetry): the retry of a
//! failed session, created once its `nextRetry` is reached.

use kstash_api::core::BackupSession;
use kstash_rules::backup_session as bsx;
use kube::api::PostParams;
use kube::runtime::controller::Action;
use kube::Api;

use super::{session_of, Reconcile};
use crate::execute::Error;

impl Reconcile<'_> {
    /// Creates the retry session due now (its name carries `nextRetry`, so re-creating it is a
    /// no-op), from the invoker's `retryConfig`; nothing when the invoker is gone.
    pub(super) async fn create_due_retry(&self) -> Result<Action, Error> {
        let st = self.bs.status.clone().unwrap_or_default();
        let Some(next) = st.next_retry.as_ref().map(|t| t.0) else {
            return Ok(Action::await_change());
        };
        let Some(bc) = self.invoker().await? else {
            return Ok(Action::await_change());
        };
        let cfg = session_of(&bc, self.bs).and_then(|s| s.config.retry_config.clone());
        let delay = cfg
            .as_ref()
            .and_then(|c| c.delay.as_deref())
            .filter(|d| !d.is_empty())
            .and_then(|d| bsx::parse_go_duration(d).ok())
            .unwrap_or_default();
        let mut fresh = st.clone();
        fresh.retried = None;
        fresh.next_retry = None;
        // `retry` adds the delay to its base: the base that gives `nextRetry` back.
        let base = next
            .checked_sub(jiff::SignedDuration::try_from(delay).unwrap_or_default())
            .unwrap_or(next);
        if let Ok(Some(r)) = bsx::retry(self.bs, &mut fresh, cfg.as_ref(), base) {
            create(&self.api, &r.session).await?;
        }
        Ok(Action::await_change())
    }
}

/// Creates the retry session `s` (already existing is fine).
pub(super) async fn create(api: &Api<BackupSession>, s: &BackupSession) -> Result<(), Error> {
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
