//! The BackupConfiguration reconcile decision (spec §3.2, §4) as a pure function.
//!
//! [`plan`] takes the BackupConfiguration and what the reconciler observed in the cluster
//! ([`Observed`]) and returns the desired `status`, the Repositories to create or update and
//! the BackupSessions to create ([`Plan`]). The reconciler does the I/O; when an action fails it
//! reports that instead of the planned success (see docs/scheduling.md).
//!
//! Decisions beyond the spec:
//! - Nothing is created while validation fails (phase `Invalid`).
//! - `SchedulerEnsured` is set once the scheduler's prerequisites exist: the target, every
//!   backend ready and every Addon found (an invalid cron schedule sets it `False` with the
//!   parse error). So a missing Addon keeps the configuration `NotReady` even though the
//!   spec's phase calculator does not look at dependencies.
//! - `nextSchedule` is RFC 3339 UTC (`2024-09-19T04:50:00Z`), absent while paused or not Ready.
//! - Repositories get no owner reference: their lifetime follows
//!   `repositories[].deletionPolicy` when the BackupConfiguration is deleted (finalizer), not
//!   the garbage collector. `Retain` maps to the Repository's default (`Delete`) policy, since
//!   it only tells the BackupConfiguration's finalizer to leave the Repository alone.
//! - A Repository's `path` is immutable: a changed `directory` is reported on the repository
//!   status instead of updated.
//! - BackupSessions are created only while the BackupConfiguration is `Ready` and not paused.
//!   The initial backup is triggered once per session (and not if the session already has a
//!   BackupSession); in that same pass no scheduled run fires (they are coalesced).
//! - Any BackupSession of a session counts as its last fire (time from its `-<unix>` name
//!   suffix, else its creation time), so a manual trigger just before a scheduled minute
//!   absorbs that run.

use std::collections::{BTreeMap, BTreeSet};

use crate::cond;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kstash_api::admission::AdmissionError;
use kstash_api::constants::{conditions as c, labels, FINALIZER_CLEANUP, GROUP_CORE, VERSION};
use kstash_api::core::{
    BackendStatus, BackupConfiguration, BackupConfigurationStatus, BackupSession,
    BackupSessionSpec, RepoStatus, RepositoryDeletionPolicy, RepositoryInfo, ResourceFoundStatus,
    RetentionPolicyStatus, Session, SessionStatus, StorageStatus,
};
use kstash_api::names;
use kstash_api::phase;
use kstash_api::shared::{
    set_condition, Conditions, ObjectReference, TypedLocalObjectReference, TypedObjectReference,
};
use kstash_api::storage::{
    BackupStoragePhase, DeletionPolicy, Repository, RepositoryPhase, RepositorySpec,
};

use crate::cron::Schedule;
use crate::schedule::{decide, ScheduleState};

/// Kind of the BackupConfiguration (owner references, invoker).
pub const KIND_BACKUP_CONFIGURATION: &str = "BackupConfiguration";
/// Kind reported in `status.dependencies` for the Addon.
pub const KIND_ADDON: &str = "Addon";

/// What the reconciler observed about one backend.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackendObservation {
    /// Phase of the referenced BackupStorage; `None` when it does not exist.
    pub storage_phase: Option<BackupStoragePhase>,
    /// Whether the referenced RetentionPolicy exists.
    pub retention_policy_found: bool,
}

/// Cluster state the decision depends on.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    /// Result of `kstash_api::admission::validate_backup_configuration` (`None` = passed).
    pub validation_error: Option<&'a AdmissionError>,
    /// Whether `spec.target` exists.
    pub target_found: bool,
    /// Per backend name (`spec.backends[].name`).
    pub backends: &'a BTreeMap<String, BackendObservation>,
    /// Names of the Addons that exist.
    pub addons: &'a BTreeSet<String>,
    /// Repositories in the BackupConfiguration's namespace.
    pub repositories: &'a [Repository],
    /// BackupSessions whose invoker is this BackupConfiguration.
    pub backup_sessions: &'a [BackupSession],
    /// Current time.
    pub now: Timestamp,
}

/// A Repository write.
#[derive(Clone, Debug, PartialEq)]
pub enum RepositoryChange {
    /// Create this Repository.
    Create(Repository),
    /// Replace the existing Repository's spec with this object's (same name).
    Update(Repository),
}

/// Scheduling outcome of one session (for events, metrics and requeueing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionSchedule {
    /// Session name.
    pub session: String,
    /// Next scheduled time (`None` when paused, not ready or the schedule is invalid).
    pub next_schedule: Option<Timestamp>,
    /// Scheduled runs that got no BackupSession (see [`crate::schedule::Decision::missed`]).
    pub missed: u32,
}

/// The reconcile decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The desired `status`.
    pub status: BackupConfigurationStatus,
    /// Repositories to create or update.
    pub repositories: Vec<RepositoryChange>,
    /// BackupSessions to create (initial and scheduled).
    pub backup_sessions: Vec<BackupSession>,
    /// Scheduling outcome per session.
    pub schedules: Vec<SessionSchedule>,
    /// When to reconcile again at the latest (earliest next schedule).
    pub requeue_at: Option<Timestamp>,
}

/// Why no plan can be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A metadata field the plan needs is missing.
    #[error("BackupConfiguration metadata.{0} is missing")]
    MissingMetadata(&'static str),
}

/// Computes the reconcile decision for `bc` (see the module docs).
pub fn plan(bc: &BackupConfiguration, obs: &Observed<'_>) -> Result<Plan, PlanError> {
    let name = bc
        .metadata
        .name
        .clone()
        .ok_or(PlanError::MissingMetadata("name"))?;
    let ns = bc
        .metadata
        .namespace
        .clone()
        .ok_or(PlanError::MissingMetadata("namespace"))?;
    let uid = bc
        .metadata
        .uid
        .clone()
        .ok_or(PlanError::MissingMetadata("uid"))?;
    let spec = &bc.spec;
    let prev = bc.status.clone().unwrap_or_default();
    let now = obs.now;
    let valid = obs.validation_error.is_none();

    let mut status = BackupConfigurationStatus {
        conditions: prev.conditions.clone(),
        ..Default::default()
    };

    // 1. Validation.
    let validation = match obs.validation_error {
        None => cond(
            c::TYPE_VALIDATION_PASSED,
            true,
            c::REASON_RESOURCE_VALIDATION_PASSED,
            c::MSG_VALIDATION_PASSED,
            now,
        ),
        Some(e) => cond(
            c::TYPE_VALIDATION_PASSED,
            false,
            c::REASON_RESOURCE_VALIDATION_FAILED,
            &e.to_string(),
            now,
        ),
    };
    set_condition(&mut status.conditions, validation);

    // 2. Target.
    status.target_found = Some(obs.target_found);

    // 3. Backends.
    status.backends = spec
        .backends
        .iter()
        .map(|b| backend_status(b, obs.backends.get(&b.name), &ns))
        .collect();

    // 4. Dependencies: each distinct Addon, in session order.
    let mut seen = BTreeSet::new();
    for s in &spec.sessions {
        if let Some(addon) = s.addon.as_ref().filter(|a| !a.name.is_empty()) {
            if seen.insert(addon.name.clone()) {
                status.dependencies.push(ResourceFoundStatus {
                    kind: Some(KIND_ADDON.to_string()),
                    name: addon.name.clone(),
                    found: Some(obs.addons.contains(&addon.name)),
                    ..Default::default()
                });
            }
        }
    }

    // 5. Repositories.
    let target = spec.target.as_ref().map(|t| TypedObjectReference {
        namespace: Some(
            t.namespace
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| ns.clone()),
        ),
        ..t.clone()
    });
    let mut repo_changes = Vec::new();
    for s in &spec.sessions {
        for r in &s.repositories {
            let (st, change) = repository(bc, &ns, target.as_ref(), r, obs.repositories, valid);
            status.repositories.push(st);
            repo_changes.extend(change);
        }
    }

    // 6. Sessions: scheduler (+ nextSchedule), computed before the phase; the initial backup
    // and scheduled runs need the phase, so they are added after it.
    let schedules: Vec<Result<Schedule, String>> = spec
        .sessions
        .iter()
        .map(|s| match &s.config.scheduler {
            None => Err(format!("session {:?} has no scheduler", s.config.name)),
            Some(sch) => Schedule::parse(&sch.schedule).map_err(|e| e.to_string()),
        })
        .collect();
    // The scheduler is ensured once its prerequisites exist: the target, ready backends and
    // the Addons (the phase calculator itself ignores the Addon).
    let prerequisites = obs.target_found
        && status.backends.iter().all(|b| b.ready == Some(true))
        && status.dependencies.iter().all(|d| d.found == Some(true));
    for (s, sched) in spec.sessions.iter().zip(&schedules) {
        let mut conditions = prev
            .sessions
            .iter()
            .find(|p| p.name == s.config.name)
            .map(|p| p.conditions.clone())
            .unwrap_or_default();
        let ensured = match (valid, sched) {
            (false, _) => Some(cond(
                c::TYPE_SCHEDULER_ENSURED,
                false,
                c::REASON_SCHEDULER_NOT_ENSURED,
                "validation failed",
                now,
            )),
            (true, Err(e)) => Some(cond(
                c::TYPE_SCHEDULER_ENSURED,
                false,
                c::REASON_SCHEDULER_NOT_ENSURED,
                e,
                now,
            )),
            (true, Ok(_)) if prerequisites => Some(cond(
                c::TYPE_SCHEDULER_ENSURED,
                true,
                c::REASON_SCHEDULER_ENSURED,
                c::MSG_SCHEDULER_ENSURED,
                now,
            )),
            // Waiting for the target, a backend or the Addon: keep what was there.
            (true, Ok(_)) => None,
        };
        if let Some(ensured) = ensured {
            set_condition(&mut conditions, ensured);
        }
        status.sessions.push(SessionStatus {
            name: s.config.name.clone(),
            next_schedule: None,
            conditions,
        });
    }

    // 7. Phase, exactly by the spec's calculator.
    let phase = phase::backup_configuration_phase(spec, &status);
    status.phase = Some(phase);
    let ready = phase == kstash_api::core::BackupInvokerPhase::Ready;
    let paused = spec.paused == Some(true);

    // 8. Initial backup and scheduled runs.
    let since = bc
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(now);
    let mut sessions_out = Vec::new();
    let mut schedules_out = Vec::new();
    for ((s, sched), st) in spec
        .sessions
        .iter()
        .zip(&schedules)
        .zip(status.sessions.iter_mut())
    {
        let mut out = SessionSchedule {
            session: s.config.name.clone(),
            next_schedule: None,
            missed: 0,
        };
        let Ok(sched) = sched else {
            schedules_out.push(out);
            continue;
        };
        if !ready || paused {
            schedules_out.push(out);
            continue;
        }
        let mut last_fired = last_fire(obs.backup_sessions, &name, &s.config.name);
        if !st.conditions.is_true(c::TYPE_INITIAL_BACKUP_TRIGGERED) {
            if last_fired.is_none() {
                sessions_out.push(backup_session(&name, &ns, &uid, s, now));
                last_fired = Some(now);
            }
            set_condition(
                &mut st.conditions,
                cond(
                    c::TYPE_INITIAL_BACKUP_TRIGGERED,
                    true,
                    c::REASON_SUCCESSFULLY_TRIGGERED_INITIAL_BACKUP,
                    c::MSG_INITIAL_BACKUP_TRIGGERED,
                    now,
                ),
            );
        }
        let decision = decide(&ScheduleState {
            schedule: sched,
            paused,
            last_fired,
            since,
            now,
            starting_deadline_seconds: s
                .config
                .scheduler
                .as_ref()
                .and_then(|x| x.starting_deadline_seconds),
        });
        if let Some(at) = decision.fire_now {
            sessions_out.push(backup_session(&name, &ns, &uid, s, at));
        }
        st.next_schedule = decision.next_schedule.map(|t| t.to_string());
        out.next_schedule = decision.next_schedule;
        out.missed = decision.missed;
        schedules_out.push(out);
    }

    let requeue_at = schedules_out.iter().filter_map(|s| s.next_schedule).min();
    Ok(Plan {
        status,
        repositories: repo_changes,
        backup_sessions: sessions_out,
        schedules: schedules_out,
        requeue_at,
    })
}

/// Records that creating the initial BackupSession of `session` failed:
/// `InitialBackupTriggered=False` / `FailedToTriggerInitialBackup` with `error` as the message,
/// so the next [`plan`] tries again. Does nothing for an unknown session.
pub fn mark_initial_backup_failed(
    status: &mut BackupConfigurationStatus,
    session: &str,
    error: &str,
    now: Timestamp,
) {
    if let Some(st) = status.sessions.iter_mut().find(|s| s.name == session) {
        set_condition(
            &mut st.conditions,
            cond(
                c::TYPE_INITIAL_BACKUP_TRIGGERED,
                false,
                c::REASON_FAILED_TO_TRIGGER_INITIAL_BACKUP,
                error,
                now,
            ),
        );
    }
}

fn backend_status(
    b: &kstash_api::core::BackendReference,
    seen: Option<&BackendObservation>,
    ns: &str,
) -> BackendStatus {
    let default = BackendObservation::default();
    let seen = seen.unwrap_or(&default);
    let show = |r: &Option<ObjectReference>| {
        r.as_ref()
            .map(|r| format!("{}/{}", r.namespace_or(ns), r.name))
            .unwrap_or_default()
    };
    let storage_ok = seen.storage_phase == Some(BackupStoragePhase::Ready);
    let storage_reason = match seen.storage_phase {
        None => Some(format!("BackupStorage {} not found", show(&b.storage_ref))),
        Some(BackupStoragePhase::NotReady) => Some(format!(
            "BackupStorage {} is not ready",
            show(&b.storage_ref)
        )),
        Some(BackupStoragePhase::Ready) => None,
    };
    BackendStatus {
        name: b.name.clone(),
        ready: Some(storage_ok && seen.retention_policy_found),
        storage: Some(StorageStatus {
            ref_: b.storage_ref.clone(),
            phase: Some(seen.storage_phase.unwrap_or(BackupStoragePhase::NotReady)),
            reason: storage_reason,
        }),
        retention_policy: Some(RetentionPolicyStatus {
            ref_: b.retention_policy.clone(),
            found: Some(seen.retention_policy_found),
            reason: (!seen.retention_policy_found)
                .then(|| format!("RetentionPolicy {} not found", show(&b.retention_policy))),
        }),
    }
}

/// The backend a repository uses: the named one, or for an empty name the backend with an
/// empty name, else the only backend.
fn resolve_backend<'a>(
    bc: &'a BackupConfiguration,
    r: &RepositoryInfo,
) -> Option<&'a kstash_api::core::BackendReference> {
    let backends = &bc.spec.backends;
    match r.backend.as_deref().filter(|b| !b.is_empty()) {
        Some(name) => backends.iter().find(|b| b.name == name),
        None => backends
            .iter()
            .find(|b| b.name.is_empty())
            .or(if backends.len() == 1 {
                backends.first()
            } else {
                None
            }),
    }
}

fn repository(
    bc: &BackupConfiguration,
    ns: &str,
    target: Option<&TypedObjectReference>,
    r: &RepositoryInfo,
    existing: &[Repository],
    valid: bool,
) -> (RepoStatus, Option<RepositoryChange>) {
    let current = existing.iter().find(|x| {
        x.metadata.name.as_deref() == Some(r.name.as_str())
            && x.metadata.namespace.as_deref().unwrap_or(ns) == ns
    });
    let mut st = RepoStatus {
        name: r.name.clone(),
        phase: Some(RepositoryPhase::NotReady),
        reason: None,
        verification_configured: r.backup_verifier.as_ref().map(|_| true),
    };
    if let Some(cur) = current {
        let cur_status = cur.status.clone().unwrap_or_default();
        st.phase = Some(
            cur_status
                .phase
                .unwrap_or_else(|| phase::repository_phase(&cur_status)),
        );
    }
    if !valid {
        return (st, None);
    }
    let desired = RepositorySpec {
        app_ref: target.cloned(),
        storage_ref: resolve_backend(bc, r).and_then(|b| b.storage_ref.clone()),
        path: r.directory.clone(),
        deletion_policy: match r.deletion_policy {
            Some(RepositoryDeletionPolicy::WipeOut) => Some(DeletionPolicy::WipeOut),
            Some(RepositoryDeletionPolicy::Delete) => Some(DeletionPolicy::Delete),
            Some(RepositoryDeletionPolicy::Retain) | None => None,
        },
        encryption_secret: r.encryption_secret.clone(),
        paused: None,
    };
    match current {
        None => {
            st.reason = Some("Repository is being created".to_string());
            let repo = Repository {
                metadata: ObjectMeta {
                    name: Some(r.name.clone()),
                    namespace: Some(ns.to_string()),
                    labels: Some(BTreeMap::from([(
                        labels::MANAGED_BY.to_string(),
                        labels::MANAGED_BY_VALUE.to_string(),
                    )])),
                    ..Default::default()
                },
                spec: desired,
                status: None,
            };
            (st, Some(RepositoryChange::Create(repo)))
        }
        Some(cur) => {
            if cur.spec.path != desired.path {
                st.phase = Some(RepositoryPhase::NotReady);
                st.reason = Some(format!(
                    "Repository path is immutable: it is {:?}, the session wants directory {:?}",
                    cur.spec.path.as_deref().unwrap_or(""),
                    desired.path.as_deref().unwrap_or("")
                ));
                return (st, None);
            }
            let wanted = RepositorySpec {
                paused: cur.spec.paused,
                deletion_policy: desired.deletion_policy.or(cur.spec.deletion_policy),
                ..desired
            };
            if cur.spec == wanted {
                (st, None)
            } else {
                let mut updated = cur.clone();
                updated.spec = wanted;
                updated.status = None;
                (st, Some(RepositoryChange::Update(updated)))
            }
        }
    }
}

/// The time of the newest BackupSession of `bc`/`session`: its `-<unix seconds>` name suffix,
/// else its creation time.
fn last_fire(sessions: &[BackupSession], bc: &str, session: &str) -> Option<Timestamp> {
    sessions
        .iter()
        .filter(|b| {
            b.spec.session.as_deref() == Some(session)
                && b.spec
                    .invoker
                    .as_ref()
                    .is_some_and(|i| i.kind == KIND_BACKUP_CONFIGURATION && i.name == bc)
        })
        .filter_map(|b| {
            let from_name = b
                .metadata
                .name
                .as_deref()
                .and_then(names::split_numeric_suffix)
                .and_then(|(_, digits)| digits.parse::<i64>().ok())
                .and_then(|s| Timestamp::from_second(s).ok());
            from_name.or_else(|| b.metadata.creation_timestamp.as_ref().map(|t| t.0))
        })
        .max()
}

/// The BackupSession for `session` at time `at` (spec §4): name from the generator, owner
/// reference to the BackupConfiguration, invoker labels, `retryLeft` = `retryConfig.maxRetry`
/// (CRD default 1 when `retryConfig` is set without it; 0 without `retryConfig`).
fn backup_session(bc_name: &str, ns: &str, uid: &str, s: &Session, at: Timestamp) -> BackupSession {
    let name = names::backup_session_name(bc_name, &s.config.name, at.as_second());
    let retry_left = s
        .config
        .retry_config
        .as_ref()
        .map(|r| r.max_retry.unwrap_or(1));
    BackupSession {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(ns.to_string()),
            labels: Some(BTreeMap::from([
                (
                    labels::MANAGED_BY.to_string(),
                    labels::MANAGED_BY_VALUE.to_string(),
                ),
                (
                    labels::INVOKER_NAME.to_string(),
                    names::label_value(bc_name),
                ),
                (labels::INVOKER_NAMESPACE.to_string(), ns.to_string()),
                (
                    labels::SESSION_NAME.to_string(),
                    names::label_value(&s.config.name),
                ),
            ])),
            owner_references: Some(vec![OwnerReference {
                api_version: format!("{GROUP_CORE}/{VERSION}"),
                kind: KIND_BACKUP_CONFIGURATION.to_string(),
                name: bc_name.to_string(),
                uid: uid.to_string(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            finalizers: Some(vec![FINALIZER_CLEANUP.to_string()]),
            ..Default::default()
        },
        spec: BackupSessionSpec {
            invoker: Some(TypedLocalObjectReference {
                api_group: Some(GROUP_CORE.to_string()),
                kind: KIND_BACKUP_CONFIGURATION.to_string(),
                name: bc_name.to_string(),
            }),
            session: Some(s.config.name.clone()),
            retry_left: Some(retry_left.unwrap_or(0)),
            backup_timeout: s.config.backup_timeout.clone(),
        },
        status: None,
    }
}

#[cfg(test)]
mod tests;
