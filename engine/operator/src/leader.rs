//! Leader election on a `coordination.k8s.io/v1` Lease, so two operators never run the same
//! controllers (and so never the same BackupSession).
//!
//! The algorithm is client-go's `leaderelection` with a Lease lock:
//! - a candidate reads the Lease; it takes it when nobody holds it, or when the holder has not
//!   renewed it for `leaseDurationSeconds` **as observed on the candidate's own clock** (the
//!   time the candidate last saw the record change), so clock skew between machines does not
//!   matter;
//! - every write is a `replace` carrying the read `resourceVersion`, so two candidates racing
//!   for an expired lease cannot both win (the loser gets a 409 and stays a follower);
//! - the leader renews every `renew_period`; if it cannot renew within `renew_deadline` (shorter
//!   than the lease duration) it stops its controllers *before* another replica may take over;
//! - on shutdown the leader releases the Lease (empty holder), so a follower takes over at once.
//!
//! The pure part ([`next_lease`]) decides what to write; [`LeaderElector`] does the I/O.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio_util::sync::CancellationToken;

/// Default Lease name of the operator.
pub const DEFAULT_LEASE_NAME: &str = "kstash-operator";

/// Timings and identity of one candidate.
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This candidate's identity (`holderIdentity` when leading).
    pub identity: String,
    /// How long a lease stays valid without renewal (`leaseDurationSeconds`).
    pub lease_duration: Duration,
    /// A leader that could not renew for this long stops leading (must be < `lease_duration`).
    pub renew_deadline: Duration,
    /// How often the leader renews and a follower retries.
    pub retry_period: Duration,
}

impl LeaderConfig {
    /// client-go's defaults: 15 s lease, 10 s renew deadline, 2 s retry period.
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// Checks the timings are consistent (renew deadline shorter than the lease, retry shorter
    /// than the renew deadline, lease at least one second).
    pub fn validate(&self) -> Result<(), LeaderError> {
        if self.lease_duration < Duration::from_secs(1) {
            return Err(LeaderError::Config(
                "lease duration must be at least 1s".into(),
            ));
        }
        if self.renew_deadline >= self.lease_duration {
            return Err(LeaderError::Config(format!(
                "renew deadline ({:?}) must be shorter than the lease duration ({:?})",
                self.renew_deadline, self.lease_duration
            )));
        }
        if self.retry_period >= self.renew_deadline {
            return Err(LeaderError::Config(format!(
                "retry period ({:?}) must be shorter than the renew deadline ({:?})",
                self.retry_period, self.renew_deadline
            )));
        }
        if self.identity.is_empty() {
            return Err(LeaderError::Config("identity must not be empty".into()));
        }
        Ok(())
    }
}

/// Leader election errors.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// Inconsistent settings.
    #[error("leader election: {0}")]
    Config(String),
    /// The API call on the Lease failed.
    #[error("leader election: Lease {lease}: {source}")]
    Kube {
        /// `namespace/name` of the Lease.
        lease: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
}

/// The Lease spec a candidate should write, or `None` when another holder's lease is still valid.
///
/// `expired` says whether the current holder's lease has run out as observed locally.
pub fn next_lease(
    current: Option<&LeaseSpec>,
    identity: &str,
    expired: bool,
    now: jiff::Timestamp,
    lease_duration: Duration,
) -> Option<LeaseSpec> {
    let secs = i32::try_from(lease_duration.as_secs().max(1)).unwrap_or(i32::MAX);
    let fresh = |transitions: i32| LeaseSpec {
        holder_identity: Some(identity.to_string()),
        lease_duration_seconds: Some(secs),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    };
    let Some(cur) = current else {
        return Some(fresh(0));
    };
    let holder = cur.holder_identity.as_deref().filter(|h| !h.is_empty());
    let transitions = cur.lease_transitions.unwrap_or(0);
    match holder {
        Some(h) if h == identity => Some(LeaseSpec {
            renew_time: Some(MicroTime(now)),
            lease_duration_seconds: Some(secs),
            acquire_time: cur.acquire_time.clone().or(Some(MicroTime(now))),
            ..cur.clone()
        }),
        Some(_) if !expired => None,
        Some(_) => Some(fresh(transitions + 1)),
        None => Some(fresh(if cur.acquire_time.is_some() {
            transitions + 1
        } else {
            transitions
        })),
    }
}

/// What identifies one observed state of the Lease: its holder and its renew time.
type LeaseRecord = (Option<String>, Option<String>);

/// One candidate: reads, takes, renews and releases the Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderConfig,
    /// The last (holder, renewTime) seen and when it was first seen locally.
    observed: Option<(LeaseRecord, Instant)>,
}

impl LeaderElector {
    /// A candidate using `client` (no I/O yet).
    pub fn new(client: kube::Client, config: LeaderConfig) -> Result<Self, LeaderError> {
        config.validate()?;
        Ok(Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
        })
    }

    /// The settings.
    pub fn config(&self) -> &LeaderConfig {
        &self.config
    }

    fn err(&self, e: kube::Error) -> LeaderError {
        LeaderError::Kube {
            lease: format!("{}/{}", self.config.namespace, self.config.name),
            source: Box::new(e),
        }
    }

    /// Takes or renews the Lease. `Ok(true)`: this candidate leads now.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, LeaderError> {
        let now = jiff::Timestamp::now();
        let current = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(|e| self.err(e))?;
        let Some(mut lease) = current else {
            let spec = next_lease(
                None,
                &self.config.identity,
                false,
                now,
                self.config.lease_duration,
            )
            .expect("a missing lease can always be taken");
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(self.err(e)),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let key: LeaseRecord = (
            spec.holder_identity.clone(),
            spec.renew_time.as_ref().map(|t| t.0.to_string()),
        );
        let seen_at = match &self.observed {
            Some((k, at)) if *k == key => *at,
            _ => {
                let at = Instant::now();
                self.observed = Some((key, at));
                at
            }
        };
        let duration = spec
            .lease_duration_seconds
            .filter(|s| *s > 0)
            .map(|s| Duration::from_secs(s as u64))
            .unwrap_or(self.config.lease_duration);
        let expired = seen_at.elapsed() >= duration;
        let Some(next) = next_lease(
            Some(&spec),
            &self.config.identity,
            expired,
            now,
            self.config.lease_duration,
        ) else {
            return Ok(false);
        };
        lease.spec = Some(next);
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Gives the Lease up if this candidate holds it (empty holder, 1 s duration), so a follower
    /// takes over without waiting for the lease to expire.
    pub async fn release(&mut self) -> Result<(), LeaderError> {
        let Some(mut lease) = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(|e| self.err(e))?
        else {
            return Ok(());
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        lease.spec = Some(spec);
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Campaigns until `shutdown`: whenever this candidate leads, runs `lead()` (the
    /// controllers), and drops it as soon as leadership is lost. `leading` mirrors the state.
    /// Returns when `shutdown` is cancelled (after releasing the Lease) or when the led future
    /// ends by itself.
    pub async fn run<F, Fut>(
        mut self,
        shutdown: CancellationToken,
        leading: Arc<AtomicBool>,
        mut lead: F,
    ) where
        F: FnMut() -> Fut,
        Fut: Future<Output = ()>,
    {
        let cfg = self.config.clone();
        loop {
            // Follower: retry until the lease is ours.
            loop {
                match self.try_acquire_or_renew().await {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "leader election: acquiring failed"),
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(cfg.retry_period) => {}
                }
            }
            tracing::info!(identity = %cfg.identity, lease = %cfg.name, "leader election: became the leader");
            leading.store(true, Ordering::SeqCst);
            // Boxed so that `drop` below really drops (stops) the controllers.
            let mut controllers = Box::pin(lead());
            let mut last_renew = Instant::now();
            // At shutdown the controllers drain (running sessions finish or fail cleanly): keep
            // the Lease renewed until they have ended, so no other replica starts meanwhile.
            let mut draining = false;
            let lost = loop {
                tokio::select! {
                    _ = shutdown.cancelled(), if !draining => draining = true,
                    _ = controllers.as_mut() => {
                        if !draining {
                            tracing::warn!("leader election: the controllers ended");
                        }
                        break false;
                    }
                    _ = tokio::time::sleep(cfg.retry_period) => {
                        match self.try_acquire_or_renew().await {
                            Ok(true) => last_renew = Instant::now(),
                            Ok(false) => break true,
                            Err(e) => {
                                tracing::warn!(error = %e, "leader election: renewing failed");
                                if last_renew.elapsed() >= cfg.renew_deadline {
                                    break true;
                                }
                            }
                        }
                        if last_renew.elapsed() >= cfg.renew_deadline {
                            break true;
                        }
                    }
                }
            };
            leading.store(false, Ordering::SeqCst);
            if lost {
                tracing::warn!(identity = %cfg.identity, "leader election: lost the lease; controllers stopped");
                continue;
            }
            // Shutdown (or the controllers ended): stop them, then hand the lease over.
            drop(controllers);
            if let Err(e) = self.release().await {
                tracing::warn!(error = %e, "leader election: releasing the lease failed");
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn missing_lease_is_taken_with_zero_transitions() {
        let l = next_lease(None, "a", false, ts(100), Duration::from_secs(15)).unwrap();
        assert_eq!(l.holder_identity.as_deref(), Some("a"));
        assert_eq!(l.lease_duration_seconds, Some(15));
        assert_eq!(l.lease_transitions, Some(0));
        assert_eq!(l.renew_time, Some(MicroTime(ts(100))));
    }

    #[test]
    fn holder_renews_keeping_acquire_time_and_transitions() {
        let cur = next_lease(None, "a", false, ts(100), Duration::from_secs(15)).unwrap();
        let l = next_lease(Some(&cur), "a", false, ts(105), Duration::from_secs(15)).unwrap();
        assert_eq!(l.acquire_time, Some(MicroTime(ts(100))));
        assert_eq!(l.renew_time, Some(MicroTime(ts(105))));
        assert_eq!(l.lease_transitions, Some(0));
    }

    #[test]
    fn valid_foreign_lease_is_left_alone_expired_one_is_taken_over() {
        let cur = next_lease(None, "a", false, ts(100), Duration::from_secs(15)).unwrap();
        assert!(next_lease(Some(&cur), "b", false, ts(101), Duration::from_secs(15)).is_none());
        let l = next_lease(Some(&cur), "b", true, ts(130), Duration::from_secs(15)).unwrap();
        assert_eq!(l.holder_identity.as_deref(), Some("b"));
        assert_eq!(l.lease_transitions, Some(1));
        assert_eq!(l.acquire_time, Some(MicroTime(ts(130))));
    }

    #[test]
    fn released_lease_is_taken_at_once() {
        let mut cur = next_lease(None, "a", false, ts(100), Duration::from_secs(15)).unwrap();
        cur.holder_identity = None;
        let l = next_lease(Some(&cur), "b", false, ts(101), Duration::from_secs(15)).unwrap();
        assert_eq!(l.holder_identity.as_deref(), Some("b"));
        assert_eq!(l.lease_transitions, Some(1));
    }

    #[test]
    fn timings_are_validated() {
        let mut c = LeaderConfig::new("ns", "l", "me");
        assert!(c.validate().is_ok());
        c.renew_deadline = Duration::from_secs(20);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("renew deadline"), "{e}");
        let mut c = LeaderConfig::new("ns", "l", "");
        c.identity.clear();
        assert!(c.validate().unwrap_err().to_string().contains("identity"));
    }
}
