//! Session claims: with several executor replicas, a session runs in the one replica that holds
//! its claim, a `coordination.k8s.io/v1` Lease per session key in the operator's namespace
//! (docs/executor.md, "Several replicas").
//!
//! - **Acquire**: create the Lease, or replace one whose holder stopped renewing it for its
//!   `leaseDurationSeconds` *as observed on this replica's clock* (the time this replica last
//!   saw its record change, as in [`crate::leader`]), guarded by the read `resourceVersion`: of
//!   two replicas racing for a session exactly one gets it, the other sees a 409.
//! - **Renew**: a task renews the Lease every `renew_period`; when it cannot renew for
//!   `renew_deadline` (shorter than the lease), or finds the Lease taken, it cancels the
//!   claim's `lost` token and the session's task stops before another replica may take over.
//! - **Release**: the Lease is deleted once the session's final status is written (preconditioned
//!   on its uid and resourceVersion), so the next session of the key is admitted at once.
//!
//! The Lease records which session holds it and the holder's identity, host and process, so a
//! replica taking over a dead holder's session knows whose repository locks it left.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use sha2::Digest;
use tokio_util::sync::CancellationToken;

/// Label on every claim Lease (value: the session's kind).
pub const LABEL_CLAIM: &str = "kstash.io/claim";
/// Annotation: `namespace/name` of the session holding the claim.
pub const ANNOTATION_SESSION: &str = "kstash.io/session";
/// Annotation: the claim key in full (the Lease name is its digest).
pub const ANNOTATION_KEY: &str = "kstash.io/session-key";
/// Annotation: host name of the holder's process (restic locks name it).
pub const ANNOTATION_HOST: &str = "kstash.io/holder-host";
/// Annotation: process id of the holder (restic locks name it).
pub const ANNOTATION_PID: &str = "kstash.io/holder-pid";

/// Default most backups, and most restores, one replica runs at once (`kstash operator`).
pub const DEFAULT_MAX_SESSIONS: usize = 16;

/// Where the claims live and their timings.
#[derive(Debug, Clone)]
pub struct ClaimConfig {
    /// Namespace of the claim Leases (the operator's own).
    pub namespace: String,
    /// This replica's identity (`holderIdentity`).
    pub identity: String,
    /// How long a claim stays valid without renewal.
    pub lease_duration: Duration,
    /// A holder that could not renew for this long gives the session up (< `lease_duration`).
    pub renew_deadline: Duration,
    /// How often the holder renews.
    pub renew_period: Duration,
    /// Most backups, and most restores, this replica runs at once (each kind counted apart).
    pub max_sessions: usize,
}

impl ClaimConfig {
    /// The leader election's timings (client-go defaults: 15 s, 10 s, 2 s) and 16 sessions.
    pub fn new(namespace: impl Into<String>, identity: impl Into<String>) -> Self {
        ClaimConfig {
            namespace: namespace.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            renew_period: Duration::from_secs(2),
            max_sessions: DEFAULT_MAX_SESSIONS,
        }
    }

    /// Checks the timings are consistent and the identity and bound are set.
    pub fn validate(&self) -> Result<(), String> {
        if self.lease_duration < Duration::from_secs(1) {
            return Err("session claims: lease duration must be at least 1s".into());
        }
        if self.renew_deadline >= self.lease_duration || self.renew_period >= self.renew_deadline {
            return Err(format!(
                "session claims: need renew period ({:?}) < renew deadline ({:?}) < lease \
                 duration ({:?})",
                self.renew_period, self.renew_deadline, self.lease_duration
            ));
        }
        if self.identity.is_empty() {
            return Err("session claims: identity must not be empty".into());
        }
        if self.max_sessions == 0 {
            return Err("--max-sessions must be at least 1".into());
        }
        Ok(())
    }
}

/// The Lease name of claim key `key`: `kstash-claim-` and 24 hex digits of its sha256 (keys hold
/// `/` and may be longer than a name allows).
pub fn lease_name(key: &str) -> String {
    let d = sha2::Sha256::digest(key.as_bytes());
    let hex: String = d.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("kstash-claim-{hex}")
}

/// Who holds a claim, as observed now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// Nobody: no Lease, an empty holder, or one whose holder stopped renewing it.
    Free {
        /// The dead holder's process (host, pid) when the Lease expired, for its locks.
        expired: Option<(String, i64)>,
    },
    /// A live replica (another one, or an earlier claim of this one): the session holding it.
    Held {
        /// `namespace/name` of the session.
        session: String,
        /// The holder's identity.
        identity: String,
    },
}

/// A held claim: renewed in the background until [`SessionClaim::release`] or drop.
pub struct SessionClaim {
    api: Api<Lease>,
    name: String,
    /// The Lease as this claim first wrote it (holder and acquire time identify the claim).
    written: Lease,
    held: Arc<Mutex<HashSet<String>>>,
    renewer: tokio::task::JoinHandle<()>,
    /// The other process whose expired claim this one replaced (host, pid): its locks are stale.
    pub previous: Option<(String, i64)>,
}

/// The replica's claims: reads and takes session Leases.
pub struct Claims {
    api: Api<Lease>,
    config: ClaimConfig,
    /// Per Lease: the last (holder, renewTime) seen and when it was first seen here.
    observed: Mutex<HashMap<String, (LeaseRecord, Instant)>>,
    /// The Leases this process holds now (never taken over, even under its own identity).
    held: Arc<Mutex<HashSet<String>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

type LeaseRecord = (Option<String>, Option<String>);

/// An API error on a claim Lease.
#[derive(Debug, thiserror::Error)]
#[error("session claim Lease {lease}: {source}")]
pub struct ClaimError {
    /// `namespace/name` of the Lease.
    pub lease: String,
    /// The API error.
    #[source]
    pub source: Box<kube::Error>,
}

fn record(spec: &LeaseSpec) -> LeaseRecord {
    (
        spec.holder_identity.clone().filter(|h| !h.is_empty()),
        spec.renew_time.as_ref().map(|t| t.0.to_string()),
    )
}

fn annotation(lease: &Lease, key: &str) -> Option<String> {
    lease.metadata.annotations.as_ref()?.get(key).cloned()
}

fn holder_process(lease: &Lease) -> Option<(String, i64)> {
    let host = annotation(lease, ANNOTATION_HOST)?;
    let pid = annotation(lease, ANNOTATION_PID)?.parse().ok()?;
    Some((host, pid))
}

/// This process as restic locks name it: (host, pid).
fn this_process() -> (String, i64) {
    (kstash_repo::lock_hostname(), i64::from(std::process::id()))
}

impl Claims {
    /// The claims of this replica (no I/O yet).
    pub fn new(client: kube::Client, config: ClaimConfig) -> Self {
        Claims {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: Mutex::new(HashMap::new()),
            held: Arc::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &ClaimConfig {
        &self.config
    }

    fn err(&self, name: &str, e: kube::Error) -> ClaimError {
        ClaimError {
            lease: format!("{}/{name}", self.config.namespace),
            source: Box::new(e),
        }
    }

    /// Who holds `lease` (read now): free when its holder has not renewed it for its duration
    /// as observed here (a Lease first seen now counts from now).
    fn holder_of(&self, name: &str, lease: &Lease) -> Holder {
        let spec = lease.spec.clone().unwrap_or_default();
        let rec = record(&spec);
        let Some(identity) = rec.0.clone() else {
            return Holder::Free { expired: None };
        };
        let mut seen = lock(&self.observed);
        let at = match seen.get(name) {
            Some((r, at)) if *r == rec => *at,
            _ => {
                let at = Instant::now();
                seen.insert(name.to_string(), (rec, at));
                at
            }
        };
        let duration = spec
            .lease_duration_seconds
            .filter(|s| *s > 0)
            .map(|s| Duration::from_secs(s as u64))
            .unwrap_or(self.config.lease_duration);
        if at.elapsed() >= duration {
            return Holder::Free {
                expired: holder_process(lease),
            };
        }
        Holder::Held {
            session: annotation(lease, ANNOTATION_SESSION).unwrap_or_default(),
            identity,
        }
    }

    /// Who holds the claim on `key`.
    pub async fn holder(&self, key: &str) -> Result<Holder, ClaimError> {
        let name = lease_name(key);
        match self.api.get_opt(&name).await {
            Ok(None) => Ok(Holder::Free { expired: None }),
            Ok(Some(l)) => Ok(self.holder_of(&name, &l)),
            Err(e) => Err(self.err(&name, e)),
        }
    }

    /// Takes the claim on `key` for session `session` (`namespace/name`) of `kind`: `None` when
    /// a live holder has it or another replica won the race. `lost` is cancelled when the
    /// claim is lost while held (renewals failing past the deadline, or the Lease taken).
    pub async fn acquire(
        &self,
        key: &str,
        kind: &str,
        session: &str,
        lost: CancellationToken,
    ) -> Result<Option<SessionClaim>, ClaimError> {
        let name = lease_name(key);
        let now = MicroTime(jiff::Timestamp::now());
        let spec = LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.config.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX),
            ),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            ..LeaseSpec::default()
        };
        let meta = |rv: Option<String>| ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(self.config.namespace.clone()),
            resource_version: rv,
            labels: Some([(LABEL_CLAIM.to_string(), kind.to_string())].into()),
            annotations: Some(
                [
                    (ANNOTATION_SESSION.to_string(), session.to_string()),
                    (ANNOTATION_KEY.to_string(), key.to_string()),
                    (ANNOTATION_HOST.to_string(), kstash_repo::lock_hostname()),
                    (ANNOTATION_PID.to_string(), std::process::id().to_string()),
                ]
                .into(),
            ),
            ..ObjectMeta::default()
        };
        let current = self
            .api
            .get_opt(&name)
            .await
            .map_err(|e| self.err(&name, e))?;
        let (written, previous) = match current {
            None => {
                let lease = Lease {
                    metadata: meta(None),
                    spec: Some(spec),
                };
                (self.api.create(&PostParams::default(), &lease).await, None)
            }
            Some(cur) => {
                let previous = match self.holder_of(&name, &cur) {
                    // A claim this identity wrote in an earlier life (the caller checked that
                    // no task of the key runs here now) is taken over at once.
                    Holder::Held { .. } if lock(&self.held).contains(&name) => return Ok(None),
                    Holder::Held { identity, .. } if identity == self.config.identity => {
                        holder_process(&cur)
                    }
                    Holder::Held { .. } => return Ok(None),
                    Holder::Free { expired } => expired,
                };
                let previous = previous.filter(|p| *p != this_process());
                let mut spec = spec;
                spec.lease_transitions = Some(
                    cur.spec
                        .as_ref()
                        .and_then(|s| s.lease_transitions)
                        .unwrap_or(0)
                        + 1,
                );
                let lease = Lease {
                    metadata: meta(cur.metadata.resource_version.clone()),
                    spec: Some(spec),
                };
                (
                    self.api
                        .replace(&name, &PostParams::default(), &lease)
                        .await,
                    previous,
                )
            }
        };
        let lease = match written {
            Ok(l) => l,
            Err(kube::Error::Api(s)) if s.code == 409 => return Ok(None),
            Err(e) => return Err(self.err(&name, e)),
        };
        lock(&self.held).insert(name.clone());
        let renewer = tokio::spawn(renew(
            self.api.clone(),
            lease.clone(),
            self.config.clone(),
            lost,
        ));
        Ok(Some(SessionClaim {
            api: self.api.clone(),
            name,
            written: lease,
            held: self.held.clone(),
            renewer,
            previous,
        }))
    }
}

/// Whether `current` is still the claim `mine` wrote: same holder and same acquire time (a
/// later claim of the same identity has another).
fn same_claim(current: &Lease, mine: &Lease) -> bool {
    let key = |l: &Lease| {
        l.spec
            .as_ref()
            .map(|s| (s.holder_identity.clone(), s.acquire_time.clone()))
    };
    key(current).is_some() && key(current) == key(mine)
}

/// Renews `lease` every `renew_period` until aborted; cancels `lost` when it could not renew for
/// `renew_deadline` (a request that hangs counts: each is bounded by the time left), or the
/// Lease is no longer this claim's.
async fn renew(api: Api<Lease>, mut lease: Lease, cfg: ClaimConfig, lost: CancellationToken) {
    let name = lease.metadata.name.clone().unwrap_or_default();
    let mut last = Instant::now();
    loop {
        tokio::time::sleep(cfg.renew_period).await;
        let left = cfg.renew_deadline.saturating_sub(last.elapsed());
        if left.is_zero() {
            tracing::warn!(lease = %name, "session claim not renewed within the renew deadline: stopping the session");
            lost.cancel();
            return;
        }
        if let Some(spec) = lease.spec.as_mut() {
            spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        }
        let renewed =
            tokio::time::timeout(left, api.replace(&name, &PostParams::default(), &lease)).await;
        match renewed {
            Ok(Ok(l)) => {
                lease = l;
                last = Instant::now();
            }
            // A 409 also follows a renewal that landed but whose answer was lost: adopt the
            // stored version if it is still this claim.
            Ok(Err(kube::Error::Api(s))) if s.code == 409 => match api.get_opt(&name).await {
                Ok(Some(current)) if same_claim(&current, &lease) => lease = current,
                Ok(_) => {
                    tracing::warn!(lease = %name, "session claim taken by another replica: stopping the session");
                    lost.cancel();
                    return;
                }
                Err(e) => {
                    tracing::warn!(lease = %name, error = %e, "renewing the session claim failed")
                }
            },
            Ok(Err(kube::Error::Api(s))) if s.code == 404 => {
                tracing::warn!(lease = %name, "session claim deleted: stopping the session");
                lost.cancel();
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!(lease = %name, error = %e, "renewing the session claim failed")
            }
            Err(_) => tracing::warn!(lease = %name, "renewing the session claim timed out"),
        }
    }
}

impl SessionClaim {
    /// Stops renewing and deletes the Lease (only the version this claim wrote last), so the
    /// next session of the key is admitted at once. A failed delete is logged: the Lease then
    /// expires by itself.
    pub async fn release(self) {
        self.renewer.abort();
        // A renewal in flight when the renewer was stopped may still land: try again on a
        // conflict, as long as the Lease is still this claim's.
        for _ in 0..3 {
            let current = match self.api.get_opt(&self.name).await {
                Ok(Some(l)) => l,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(lease = %self.name, error = %e, "releasing the session claim");
                    return;
                }
            };
            if !same_claim(&current, &self.written) {
                return;
            }
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: current.metadata.uid.clone(),
                    resource_version: current.metadata.resource_version.clone(),
                }),
                ..DeleteParams::default()
            };
            match self.api.delete(&self.name, &dp).await {
                Ok(_) => return,
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(kube::Error::Api(s)) if s.code == 404 => return,
                Err(e) => {
                    tracing::warn!(lease = %self.name, error = %e, "releasing the session claim");
                    return;
                }
            }
        }
        tracing::warn!(lease = %self.name, "releasing the session claim: it kept changing; it expires by itself");
    }
}

impl Drop for SessionClaim {
    fn drop(&mut self) {
        self.renewer.abort();
        lock(&self.held).remove(&self.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_names_are_short_stable_and_distinct() {
        let a = lease_name("demo/BackupConfiguration/db/frequent-backup");
        assert_eq!(a, lease_name("demo/BackupConfiguration/db/frequent-backup"));
        assert_ne!(
            a,
            lease_name("demo/BackupConfiguration/db2/frequent-backup")
        );
        assert_eq!(a.len(), "kstash-claim-".len() + 24);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
    }

    #[test]
    fn timings_and_bounds_are_validated() {
        let mut c = ClaimConfig::new("kstash", "op-a");
        assert!(c.validate().is_ok());
        c.renew_deadline = Duration::from_secs(30);
        assert!(c.validate().unwrap_err().contains("renew deadline"));
        let mut c = ClaimConfig::new("kstash", "op-a");
        c.max_sessions = 0;
        assert!(c.validate().unwrap_err().contains("--max-sessions"));
    }
}
