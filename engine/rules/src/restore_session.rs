//! The RestoreSession decision (spec §1.5, §8) as pure functions.
//!
//! [`plan`] validates the RestoreSession, resolves the Snapshot (`latest`, a name, or PITR),
//! reports the dependencies (Snapshot, Addon), the target, the backups to pause and the
//! components to restore, and says what the reconciler should do next ([`Next`]). The other
//! functions record the executor's steps: [`mark_executor`], [`update_component`], [`finish`],
//! [`fail`] and [`recover_orphan`]. Phases always come from the spec's calculator. See
//! docs/sessions.md for the lifecycle and the decisions.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::cond;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kstash_api::admission::{validate_restore_session, Lookup};
use kstash_api::constants::{
    conditions as c, GROUP_ADDONS, GROUP_APPCATALOG, GROUP_KUBEDB, GROUP_STORAGE, SNAPSHOT_LATEST,
};
use kstash_api::core::{
    BackupConfiguration, ResourceFoundStatus, RestorePhase, RestoreSession, RestoreSessionStatus,
};
use kstash_api::phase;
use kstash_api::shared::{set_condition, TypedObjectReference};
use kstash_api::storage::{Snapshot, SnapshotPhase};

use crate::backup_session::{format_go_duration, parse_go_duration, session_duration};

/// Kind reported in `status.dependencies` for the Snapshot.
pub const KIND_SNAPSHOT: &str = "Snapshot";
/// Kind reported in `status.dependencies` for the Addon.
pub const KIND_ADDON: &str = "Addon";
/// Kind of the AppBinding.
pub const KIND_APPBINDING: &str = "AppBinding";

/// Why no plan can be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A metadata field the plan needs is missing.
    #[error("RestoreSession metadata.{0} is missing")]
    MissingMetadata(&'static str),
}

/// Cluster state the decision depends on.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    /// Objects the admission rules consult (HookTemplates).
    pub lookup: &'a Lookup,
    /// Whether `spec.target` exists (`None`: could not be checked).
    pub target_found: Option<bool>,
    /// Snapshots in the data source's namespace.
    pub snapshots: &'a [Snapshot],
    /// Names of the Addons that exist.
    pub addons: &'a BTreeSet<String>,
    /// BackupConfigurations (any namespace) that may target the restore target.
    pub backup_configurations: &'a [BackupConfiguration],
    /// When the restore started (`restoreDeadline` base).
    pub start: Timestamp,
    /// Current time.
    pub now: Timestamp,
}

/// The Snapshot to restore from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedSnapshot {
    /// Snapshot name.
    pub name: String,
    /// Snapshot namespace (`dataSource.namespace`, default the RestoreSession's).
    pub namespace: String,
}

/// What the reconciler does next.
#[derive(Clone, Debug, PartialEq)]
pub enum Next {
    /// Validation failed (phase `Invalid`): nothing to do.
    Invalid,
    /// Wait and reconcile again (the target does not exist yet or could not be checked).
    Wait(String),
    /// The restore cannot run (no Snapshot, no Addon, bad timeout): call [`fail`] with this
    /// message.
    Fail(String),
    /// Pause `pause` (set `spec.paused: true`), then run the restore task for `components` of
    /// `snapshot`.
    Run {
        /// The Snapshot.
        snapshot: ResolvedSnapshot,
        /// Component names to restore.
        components: Vec<String>,
        /// BackupConfigurations to pause now (not yet paused).
        pause: Vec<TypedObjectReference>,
    },
}

/// The decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The desired `status`.
    pub status: RestoreSessionStatus,
    /// The next step.
    pub next: Next,
}

fn snapshot_time(s: &Snapshot) -> Option<Timestamp> {
    s.status
        .as_ref()
        .and_then(|st| st.snapshot_time.as_ref())
        .or(s.metadata.creation_timestamp.as_ref())
        .map(|t| t.0)
}

fn succeeded_of_repo<'a>(
    snapshots: &'a [Snapshot],
    repository: &'a str,
    ns: &'a str,
) -> impl Iterator<Item = (&'a Snapshot, Timestamp)> + 'a {
    snapshots.iter().filter_map(move |s| {
        let ok = s.spec.repository.as_deref() == Some(repository)
            && s.metadata.namespace.as_deref().unwrap_or(ns) == ns
            && s.status.as_ref().and_then(|st| st.phase) == Some(SnapshotPhase::Succeeded);
        if ok {
            snapshot_time(s).map(|t| (s, t))
        } else {
            None
        }
    })
}

fn newest<'a>(it: impl Iterator<Item = (&'a Snapshot, Timestamp)>) -> Option<&'a Snapshot> {
    it.max_by(|(a, ta), (b, tb)| {
        ta.cmp(tb)
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    })
    .map(|(s, _)| s)
}

/// Resolves the Snapshot of `rs`'s data source among `snapshots`: with `pitr`, the newest
/// Succeeded Snapshot of the repository taken at or before `targetTime` (strictly before when
/// `exclusive`); `latest`, the newest Succeeded Snapshot of the repository; otherwise the
/// named Snapshot, which must exist. The namespace is `dataSource.namespace`, default the
/// RestoreSession's. Time is `status.snapshotTime`, else the creation time.
pub fn resolve_snapshot(
    rs: &RestoreSession,
    snapshots: &[Snapshot],
) -> Result<ResolvedSnapshot, String> {
    let rs_ns = rs.metadata.namespace.clone().unwrap_or_default();
    let ds = rs
        .spec
        .data_source
        .as_ref()
        .ok_or_else(|| "spec.dataSource: dataSource can not be empty".to_string())?;
    let ns = ds
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or(rs_ns);
    let repo = ds.repository.as_deref().unwrap_or("");
    let found = |s: &Snapshot| ResolvedSnapshot {
        name: s.metadata.name.clone().unwrap_or_default(),
        namespace: ns.clone(),
    };
    if let Some(pitr) = &ds.pitr {
        let target = pitr
            .target_time
            .as_ref()
            .ok_or_else(|| "spec.dataSource.pitr.targetTime can not be empty".to_string())?
            .0;
        let exclusive = pitr.exclusive == Some(true);
        return newest(succeeded_of_repo(snapshots, repo, &ns).filter(|(_, t)| {
            if exclusive {
                *t < target
            } else {
                *t <= target
            }
        }))
        .map(found)
        .ok_or_else(|| {
            format!(
                "no Succeeded Snapshot of repository {ns}/{repo} at or {}before {target}",
                if exclusive { "strictly " } else { "" }
            )
        });
    }
    let name = ds.snapshot.as_deref().unwrap_or("");
    if name == SNAPSHOT_LATEST {
        return newest(succeeded_of_repo(snapshots, repo, &ns))
            .map(found)
            .ok_or_else(|| format!("no Succeeded Snapshot found in repository {ns}/{repo}"));
    }
    snapshots
        .iter()
        .find(|s| {
            s.metadata.name.as_deref() == Some(name)
                && s.metadata.namespace.as_deref().unwrap_or(&ns) == ns
        })
        .ok_or_else(|| format!("Snapshot {ns}/{name} not found"))
        .and_then(|s| {
            let phase = s.status.as_ref().and_then(|st| st.phase);
            if phase == Some(SnapshotPhase::Succeeded) {
                Ok(found(s))
            } else {
                Err(format!(
                    "Snapshot {ns}/{name} is {}, not Succeeded: restore from a Succeeded Snapshot",
                    phase
                        .map(|p| format!("{p:?}"))
                        .unwrap_or_else(|| "without a phase".into())
                ))
            }
        })
}

fn target_ns(t: &TypedObjectReference, default_ns: &str) -> String {
    t.namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| default_ns.to_string())
}

fn is_appbinding(t: &TypedObjectReference) -> bool {
    t.kind.as_deref() == Some(KIND_APPBINDING)
        && t.api_group.as_deref().unwrap_or(GROUP_APPCATALOG) == GROUP_APPCATALOG
}

/// Whether two targets denote the same object: same namespace and name, and same
/// group/kind — or one is a KubeDB database and the other an AppBinding (KubeDB names the
/// AppBinding after the database).
pub fn same_target(
    a: &TypedObjectReference,
    a_ns: &str,
    b: &TypedObjectReference,
    b_ns: &str,
) -> bool {
    if a.name != b.name || target_ns(a, a_ns) != target_ns(b, b_ns) {
        return false;
    }
    let kubedb = |t: &TypedObjectReference| t.api_group.as_deref() == Some(GROUP_KUBEDB);
    let same_kind = a.kind == b.kind
        && a.api_group.as_deref().unwrap_or("") == b.api_group.as_deref().unwrap_or("");
    same_kind || (kubedb(a) && is_appbinding(b)) || (is_appbinding(a) && kubedb(b))
}

/// The BackupConfigurations that back up `target` (namespace default `rs_ns`), as references
/// `{apiGroup: core.kubestash.com, kind: BackupConfiguration, namespace, name}`, each with
/// whether it is paused now.
pub fn backups_of_target(
    target: &TypedObjectReference,
    rs_ns: &str,
    bcs: &[BackupConfiguration],
) -> Vec<(TypedObjectReference, bool)> {
    bcs.iter()
        .filter_map(|bc| {
            let ns = bc.metadata.namespace.clone().unwrap_or_default();
            let t = bc.spec.target.as_ref()?;
            same_target(target, rs_ns, t, &ns).then(|| {
                (
                    TypedObjectReference {
                        api_group: Some(kstash_api::constants::GROUP_CORE.to_string()),
                        kind: Some(
                            crate::backup_configuration::KIND_BACKUP_CONFIGURATION.to_string(),
                        ),
                        namespace: Some(ns),
                        name: bc.metadata.name.clone().unwrap_or_default(),
                    },
                    bc.spec.paused == Some(true),
                )
            })
        })
        .collect()
}

/// `restoreDeadline = start + spec.restoreTimeout`; `None` without a timeout.
pub fn restore_deadline(
    rs: &RestoreSession,
    start: Timestamp,
) -> Result<Option<Timestamp>, String> {
    let Some(raw) = rs.spec.restore_timeout.as_deref().filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let d = parse_go_duration(raw).map_err(|e| format!("spec.restoreTimeout: {e}"))?;
    SignedDuration::try_from(d)
        .ok()
        .and_then(|sd| start.checked_add(sd).ok())
        .map(Some)
        .ok_or_else(|| format!("spec.restoreTimeout: {raw:?} is too large"))
}

/// Computes the decision for `rs` (see the module docs). Earlier status fields the plan does
/// not own (components progress, hooks, conditions set by later steps) are kept.
pub fn plan(rs: &RestoreSession, obs: &Observed<'_>) -> Result<Plan, PlanError> {
    let ns = rs
        .metadata
        .namespace
        .clone()
        .ok_or(PlanError::MissingMetadata("namespace"))?;
    rs.metadata
        .name
        .as_ref()
        .ok_or(PlanError::MissingMetadata("name"))?;
    let now = obs.now;
    let mut status = rs.status.clone().unwrap_or_default();

    // 1. Validation.
    if let Err(e) = validate_restore_session(rs, obs.lookup) {
        set_condition(
            &mut status.conditions,
            cond(
                c::TYPE_VALIDATION_PASSED,
                false,
                c::REASON_RESOURCE_VALIDATION_FAILED,
                &e.to_string(),
                now,
            ),
        );
        status.phase = Some(phase::restore_session_phase(&status));
        return Ok(Plan {
            status,
            next: Next::Invalid,
        });
    }
    set_condition(
        &mut status.conditions,
        cond(
            c::TYPE_VALIDATION_PASSED,
            true,
            c::REASON_RESOURCE_VALIDATION_PASSED,
            c::MSG_VALIDATION_PASSED,
            now,
        ),
    );

    // 2. Dependencies: Snapshot, Addon.
    let resolved = resolve_snapshot(rs, obs.snapshots);
    let ds = rs.spec.data_source.clone().unwrap_or_default();
    let snap_ns = ds
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or(ns.clone());
    status.dependencies = vec![ResourceFoundStatus {
        api_group: Some(GROUP_STORAGE.to_string()),
        kind: Some(KIND_SNAPSHOT.to_string()),
        name: match &resolved {
            Ok(r) => r.name.clone(),
            Err(_) => ds.snapshot.clone().unwrap_or_default(),
        },
        namespace: Some(snap_ns),
        found: Some(resolved.is_ok()),
    }];
    let addon = rs
        .spec
        .addon
        .as_ref()
        .map(|a| a.name.clone())
        .unwrap_or_default();
    let addon_found = !addon.is_empty() && obs.addons.contains(&addon);
    status.dependencies.push(ResourceFoundStatus {
        api_group: Some(GROUP_ADDONS.to_string()),
        kind: Some(KIND_ADDON.to_string()),
        name: addon.clone(),
        namespace: None,
        found: Some(addon_found),
    });

    // 3. Deadline.
    let deadline = restore_deadline(rs, obs.start);
    if let Ok(d) = &deadline {
        status.restore_deadline = d.map(Time);
    }

    // 4. Target.
    status.target_found = obs.target_found;
    let target_cond = match obs.target_found {
        Some(true) => cond(
            c::TYPE_RESTORE_TARGET_FOUND,
            true,
            "TargetAvailable",
            "Restore target has been found.",
            now,
        ),
        Some(false) => cond(
            c::TYPE_RESTORE_TARGET_FOUND,
            false,
            "TargetNotAvailable",
            "Restore target does not exist yet.",
            now,
        ),
        None => cond(
            c::TYPE_RESTORE_TARGET_FOUND,
            false,
            c::REASON_UNABLE_TO_CHECK_TARGET_AVAILABILITY,
            "Unable to check whether the restore target exists.",
            now,
        ),
    };
    set_condition(&mut status.conditions, target_cond);

    let failure = match (&resolved, addon_found, &deadline) {
        (Err(e), _, _) => Some(e.clone()),
        (_, false, _) if addon.is_empty() => Some("spec.addon.name is empty".to_string()),
        (_, false, _) => Some(format!("Addon {addon:?} not found")),
        (_, _, Err(e)) => Some(e.clone()),
        _ => None,
    };
    if let Some(msg) = failure {
        status.phase = Some(phase::restore_session_phase(&status));
        return Ok(Plan {
            status,
            next: Next::Fail(msg),
        });
    }
    if obs.target_found != Some(true) {
        status.phase = Some(phase::restore_session_phase(&status));
        let msg = match obs.target_found {
            Some(_) => "waiting for the restore target to exist",
            None => "unable to check the restore target",
        };
        return Ok(Plan {
            status,
            next: Next::Wait(msg.to_string()),
        });
    }
    let snapshot = resolved.expect("checked above");

    // 5. Backups to pause: those targeting the object and not paused by someone else. Already
    // recorded ones stay recorded (they are paused by us now).
    let mut pause = Vec::new();
    if let Some(target) = &rs.spec.target {
        for (r, paused) in backups_of_target(target, &ns, obs.backup_configurations) {
            let recorded = status.paused_backups.contains(&r);
            if !paused && !recorded {
                pause.push(r.clone());
                status.paused_backups.push(r);
            }
        }
    }

    // 6. Components: the requested ones, else all of the Snapshot's.
    let components: Vec<String> = if ds.components.is_empty() {
        obs.snapshots
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(snapshot.name.as_str()))
            .and_then(|s| s.status.as_ref())
            .map(|st| st.components.keys().cloned().collect())
            .unwrap_or_default()
    } else {
        ds.components.clone()
    };
    // `components` entries appear when the executor reports them (a Pending entry would make
    // the calculator say Running before anything runs).
    status.total_components = Some(components.len() as i32);
    status.phase = Some(phase::restore_session_phase(&status));
    Ok(Plan {
        status,
        next: Next::Run {
            snapshot,
            components,
            pause,
        },
    })
}

/// Records the executor step: `RestoreExecutorEnsured` True/False.
pub fn mark_executor(
    status: &mut RestoreSessionStatus,
    result: &Result<(), String>,
    now: Timestamp,
) {
    let c = match result {
        Ok(()) => cond(
            c::TYPE_RESTORE_EXECUTOR_ENSURED,
            true,
            c::REASON_SUCCESSFULLY_ENSURED_RESTORE_EXECUTOR,
            "Restore Executor has been ensured successfully.",
            now,
        ),
        Err(e) => cond(
            c::TYPE_RESTORE_EXECUTOR_ENSURED,
            false,
            c::REASON_FAILED_TO_ENSURE_RESTORE_EXECUTOR,
            e,
            now,
        ),
    };
    set_condition(&mut status.conditions, c);
    status.phase = Some(phase::restore_session_phase(status));
}

/// Live progress of a component restore (`components.<name>.progress`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Progress {
    /// Seconds since the component's restore started.
    pub seconds_elapsed: f64,
    /// Percent done (0–100), when the total is known.
    pub percent_done: Option<f64>,
    /// Total files (documents for Elasticsearch).
    pub total_files: Option<u64>,
    /// Files (documents) done.
    pub files_done: u64,
    /// Bytes restored, KubeStash size format.
    pub restore_done: String,
    /// Total bytes, KubeStash size format.
    pub total: Option<String>,
    /// Speed, e.g. `1.000 MiB/s`.
    pub speed: Option<String>,
}

impl Progress {
    /// The JSON object the status stores (`secondsElapsed`, `percentDone`, `totalFiles`,
    /// `filesDone`, `restoreDone`, `total`, `speed`; absent values omitted).
    pub fn to_value(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("secondsElapsed".into(), self.seconds_elapsed.into());
        if let Some(p) = self.percent_done {
            m.insert("percentDone".into(), p.into());
        }
        if let Some(t) = self.total_files {
            m.insert("totalFiles".into(), t.into());
        }
        m.insert("filesDone".into(), self.files_done.into());
        m.insert("restoreDone".into(), self.restore_done.clone().into());
        if let Some(t) = &self.total {
            m.insert("total".into(), t.clone().into());
        }
        if let Some(s) = &self.speed {
            m.insert("speed".into(), s.clone().into());
        }
        serde_json::Value::Object(m)
    }
}

/// A component's state as the executor reports it.
#[derive(Clone, Debug, PartialEq)]
pub enum ComponentUpdate {
    /// Running, with live progress.
    Running(Progress),
    /// Done, with the final progress and how long it took.
    Succeeded(Progress, Duration),
    /// Failed with an error, after `Duration`.
    Failed(String, Duration),
}

/// Records a component's progress/result; phase by the calculator.
pub fn update_component(status: &mut RestoreSessionStatus, name: &str, update: &ComponentUpdate) {
    let comp = status.components.entry(name.to_string()).or_default();
    match update {
        ComponentUpdate::Running(p) => {
            comp.phase = Some(RestorePhase::Running);
            comp.progress = Some(p.to_value());
        }
        ComponentUpdate::Succeeded(p, d) => {
            comp.phase = Some(RestorePhase::Succeeded);
            comp.progress = Some(p.to_value());
            comp.duration = Some(format_go_duration(*d));
            comp.error = None;
        }
        ComponentUpdate::Failed(e, d) => {
            comp.phase = Some(RestorePhase::Failed);
            comp.duration = Some(format_go_duration(*d));
            comp.error = Some(e.clone());
        }
    }
    status.phase = Some(phase::restore_session_phase(status));
}

fn set_metrics(status: &mut RestoreSessionStatus, metrics: &Result<(), String>, now: Timestamp) {
    let c = match metrics {
        Ok(()) => cond(
            c::TYPE_METRICS_PUSHED,
            true,
            c::REASON_SUCCESSFULLY_PUSHED_METRICS,
            c::MSG_METRICS_PUSHED,
            now,
        ),
        Err(e) => cond(
            c::TYPE_METRICS_PUSHED,
            false,
            c::REASON_FAILED_TO_PUSH_METRICS,
            e,
            now,
        ),
    };
    set_condition(&mut status.conditions, c);
}

/// Finishes the restore after the components are terminal and the backups resumed:
/// `MetricsPushed` (last), phase by the calculator, `duration` from `start`. Returns the
/// backups to resume (`pausedBackups`).
pub fn finish(
    status: &mut RestoreSessionStatus,
    metrics: &Result<(), String>,
    start: Timestamp,
    now: Timestamp,
) -> Vec<TypedObjectReference> {
    set_metrics(status, metrics, now);
    status.phase = Some(phase::restore_session_phase(status));
    status.duration = Some(session_duration(start, now));
    status.paused_backups.clone()
}

/// Fails the restore before it ran (no Snapshot, no Addon, bad timeout, deadline exceeded):
/// `RestoreExecutorEnsured=False` with `message`, `MetricsPushed` from `metrics`, phase
/// (Failed) and duration. Returns the backups to resume.
pub fn fail(
    status: &mut RestoreSessionStatus,
    message: &str,
    metrics: &Result<(), String>,
    start: Timestamp,
    now: Timestamp,
) -> Vec<TypedObjectReference> {
    mark_executor(status, &Err(message.to_string()), now);
    finish(status, metrics, start, now)
}

/// Drives a restore found `Running` whose executor is gone to Failed: non-terminal components
/// become Failed with an error, `RestoreIncomplete=True` /
/// `RestoreExecutorTerminatedBeforeCompletion`, then [`finish`]. Returns the backups to resume.
pub fn recover_orphan(
    status: &mut RestoreSessionStatus,
    metrics: &Result<(), String>,
    start: Timestamp,
    now: Timestamp,
) -> Vec<TypedObjectReference> {
    let msg =
        "The restore executor terminated before completion (engine restarted or executor lost).";
    for comp in status.components.values_mut() {
        if !matches!(
            comp.phase,
            Some(RestorePhase::Succeeded | RestorePhase::Failed | RestorePhase::Unknown)
        ) {
            comp.phase = Some(RestorePhase::Failed);
            comp.error = Some(msg.to_string());
        }
    }
    set_condition(
        &mut status.conditions,
        cond(
            c::TYPE_RESTORE_INCOMPLETE,
            true,
            c::REASON_RESTORE_EXECUTOR_TERMINATED_BEFORE_COMPLETION,
            msg,
            now,
        ),
    );
    finish(status, metrics, start, now)
}

/// Components' phases by name (for events and metrics).
pub fn component_phases(status: &RestoreSessionStatus) -> BTreeMap<String, Option<RestorePhase>> {
    status
        .components
        .iter()
        .map(|(k, v)| (k.clone(), v.phase))
        .collect()
}

pub mod step;

#[cfg(test)]
mod tests;
