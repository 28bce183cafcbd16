//! Phase calculators, exactly as KubeStash's `CalculatePhase` helpers (spec §1.2, §1.3, §1.5,
//! §1.8, §5.1), plus Snapshot integrity (`GetIntegrity`) and size (`GetSize`) aggregation.
//! Pure functions over the typed status.

use crate::constants::conditions as c;
use crate::core::{
    BackupConfigurationSpec, BackupConfigurationStatus, BackupInvokerPhase, BackupSessionPhase,
    BackupSessionStatus, RestorePhase, RestoreSessionStatus, RetentionPolicyApplyPhase,
};
use crate::shared::{Condition, Conditions, Driver};
use crate::storage::{
    BackupStoragePhase, BackupStorageStatus, RepositoryPhase, RepositoryStatus, SnapshotPhase,
    SnapshotStatus,
};

/// BackupConfiguration phase: `ValidationPassed==False` → `Invalid`; `Ready` iff
/// `targetFound==true`, one ready status backend per spec backend and one session status per
/// spec session, each with `SchedulerEnsured==True`; otherwise `NotReady`.
pub fn backup_configuration_phase(
    spec: &BackupConfigurationSpec,
    status: &BackupConfigurationStatus,
) -> BackupInvokerPhase {
    if status.conditions.is_false(c::TYPE_VALIDATION_PASSED) {
        return BackupInvokerPhase::Invalid;
    }
    let ready = status.target_found == Some(true)
        && status.backends.len() == spec.backends.len()
        && status.backends.iter().all(|b| b.ready == Some(true))
        && status.sessions.len() == spec.sessions.len()
        && status
            .sessions
            .iter()
            .all(|s| s.conditions.is_true(c::TYPE_SCHEDULER_ENSURED));
    if ready {
        BackupInvokerPhase::Ready
    } else {
        BackupInvokerPhase::NotReady
    }
}

/// BackupSession phase (spec §1.3, five steps):
/// 1. `MetricsPushed==False` → Failed; 2. `BackupSkipped==True` → Skipped;
/// 3. `MetricsPushed==True` with a failed step (executor, snapshots, hooks, a retention policy
///    `FailedToApply`, history cleanup, `SnapshotCleanupIncomplete==True`) → Failed;
/// 4. phase from the snapshots; 5. that phase if Pending or `MetricsPushed` exists, else Running.
pub fn backup_session_phase(status: &BackupSessionStatus) -> BackupSessionPhase {
    let conds = &status.conditions;
    if conds.is_false(c::TYPE_METRICS_PUSHED) {
        return BackupSessionPhase::Failed;
    }
    if conds.is_true(c::TYPE_BACKUP_SKIPPED) {
        return BackupSessionPhase::Skipped;
    }
    if conds.is_true(c::TYPE_METRICS_PUSHED)
        && (conds.is_false(c::TYPE_BACKUP_EXECUTOR_ENSURED)
            || conds.is_false(c::TYPE_SNAPSHOTS_ENSURED)
            || conds.is_false(c::TYPE_PRE_BACKUP_HOOKS_EXECUTION_SUCCEEDED)
            || conds.is_false(c::TYPE_POST_BACKUP_HOOKS_EXECUTION_SUCCEEDED)
            || status
                .retention_policies
                .iter()
                .any(|r| r.phase == Some(RetentionPolicyApplyPhase::FailedToApply))
            || conds.is_false(c::TYPE_SESSION_HISTORY_CLEANED)
            || conds.is_true(c::TYPE_SNAPSHOT_CLEANUP_INCOMPLETE))
    {
        return BackupSessionPhase::Failed;
    }
    let phase = snapshots_phase(status);
    if phase == BackupSessionPhase::Pending || conds.has(c::TYPE_METRICS_PUSHED) {
        phase
    } else {
        BackupSessionPhase::Running
    }
}

/// Step 4 of [`backup_session_phase`]: none → Pending; all Pending → Pending; not all terminal
/// → Running; any Failed → Failed; else Succeeded.
fn snapshots_phase(status: &BackupSessionStatus) -> BackupSessionPhase {
    let snaps = &status.snapshots;
    if snaps.is_empty() {
        return BackupSessionPhase::Pending;
    }
    let count = |p: SnapshotPhase| snaps.iter().filter(|s| s.phase == Some(p)).count();
    let (pending, succeeded, failed) = (
        count(SnapshotPhase::Pending),
        count(SnapshotPhase::Succeeded),
        count(SnapshotPhase::Failed),
    );
    if pending == snaps.len() {
        BackupSessionPhase::Pending
    } else if succeeded + failed != snaps.len() {
        BackupSessionPhase::Running
    } else if failed > 0 {
        BackupSessionPhase::Failed
    } else {
        BackupSessionPhase::Succeeded
    }
}

/// BackupSession failure summary (`GetSummary`): the first `False` condition's message, else
/// "one or more snapshots are failed", else "one or more retention policies are failed to
/// apply"; `None` when nothing failed.
pub fn backup_session_summary(status: &BackupSessionStatus) -> Option<String> {
    if let Some(cond) = status.conditions.iter().find(|c| c.is_false()) {
        return Some(cond.message.clone().unwrap_or_default());
    }
    if status
        .snapshots
        .iter()
        .any(|s| s.phase == Some(SnapshotPhase::Failed))
    {
        return Some(c::MSG_SNAPSHOTS_FAILED.to_string());
    }
    if status
        .retention_policies
        .iter()
        .any(|r| r.phase == Some(RetentionPolicyApplyPhase::FailedToApply))
    {
        return Some(c::MSG_RETENTION_POLICIES_FAILED.to_string());
    }
    None
}

/// RestoreSession phase (spec §1.5): `MetricsPushed==False` → Failed; `ValidationPassed==False`
/// → Invalid; `MetricsPushed==True` with failed hooks, `RestoreExecutorEnsured==False` or
/// `RestoreIncomplete==True` → Failed; then the components' phase, returned if Pending, Unknown
/// or `MetricsPushed` exists, else Running.
pub fn restore_session_phase(status: &RestoreSessionStatus) -> RestorePhase {
    let conds = &status.conditions;
    if conds.is_false(c::TYPE_METRICS_PUSHED) {
        return RestorePhase::Failed;
    }
    if conds.is_false(c::TYPE_VALIDATION_PASSED) {
        return RestorePhase::Invalid;
    }
    if conds.is_true(c::TYPE_METRICS_PUSHED)
        && (conds.is_false(c::TYPE_PRE_RESTORE_HOOKS_EXECUTION_SUCCEEDED)
            || conds.is_false(c::TYPE_POST_RESTORE_HOOKS_EXECUTION_SUCCEEDED)
            || conds.is_false(c::TYPE_RESTORE_EXECUTOR_ENSURED)
            || conds.is_true(c::TYPE_RESTORE_INCOMPLETE))
    {
        return RestorePhase::Failed;
    }
    let phase = restore_components_phase(status);
    if matches!(phase, RestorePhase::Pending | RestorePhase::Unknown)
        || conds.has(c::TYPE_METRICS_PUSHED)
    {
        phase
    } else {
        RestorePhase::Running
    }
}

/// Components' phase of a restore: none → Pending; all Succeeded → Succeeded; all terminal with
/// a Failed → Failed; all terminal with an Unknown and no Failed → Unknown; any Failed → Failed;
/// else Running. "All" counts against `totalComponents` (or the map size when unset).
fn restore_components_phase(status: &RestoreSessionStatus) -> RestorePhase {
    if status.components.is_empty() {
        return RestorePhase::Pending;
    }
    let total = status
        .total_components
        .map(|t| t.max(0) as usize)
        .unwrap_or(status.components.len());
    let count = |p: RestorePhase| {
        status
            .components
            .values()
            .filter(|c| c.phase == Some(p))
            .count()
    };
    let (ok, failed, unknown) = (
        count(RestorePhase::Succeeded),
        count(RestorePhase::Failed),
        count(RestorePhase::Unknown),
    );
    let terminal = ok + failed + unknown == total;
    if ok == total {
        RestorePhase::Succeeded
    } else if terminal && failed > 0 {
        RestorePhase::Failed
    } else if terminal {
        RestorePhase::Unknown
    } else if failed > 0 {
        RestorePhase::Failed
    } else {
        RestorePhase::Running
    }
}

/// Snapshot phase (spec §5.1): `SnapshotMetadataUploaded==False`,
/// `RecentSnapshotListUpdated==False` or `BackupIncomplete==True` → Failed; no components →
/// Pending; with `SnapshotMetadataUploaded` present → the components' phase (all
/// `totalComponents` Succeeded → Succeeded; any Failed → Failed; else Running); else Running.
pub fn snapshot_phase(status: &SnapshotStatus) -> SnapshotPhase {
    let conds = &status.conditions;
    if conds.is_false(c::TYPE_SNAPSHOT_METADATA_UPLOADED)
        || conds.is_false(c::TYPE_RECENT_SNAPSHOT_LIST_UPDATED)
        || conds.is_true(c::TYPE_BACKUP_INCOMPLETE)
    {
        return SnapshotPhase::Failed;
    }
    if status.components.is_empty() {
        return SnapshotPhase::Pending;
    }
    if !conds.has(c::TYPE_SNAPSHOT_METADATA_UPLOADED) {
        return SnapshotPhase::Running;
    }
    let count = |p: SnapshotPhase| {
        status
            .components
            .values()
            .filter(|c| c.phase == Some(p))
            .count()
    };
    let total = status.total_components.unwrap_or(0).max(0) as usize;
    if count(SnapshotPhase::Succeeded) == total {
        SnapshotPhase::Succeeded
    } else if count(SnapshotPhase::Failed) > 0 {
        SnapshotPhase::Failed
    } else {
        SnapshotPhase::Running
    }
}

/// Snapshot integrity (`GetIntegrity`): `None` when there are no components or a restic
/// component has no integrity yet; otherwise the AND over components that report one.
pub fn snapshot_integrity(status: &SnapshotStatus) -> Option<bool> {
    if status.components.is_empty() {
        return None;
    }
    let mut result = true;
    for comp in status.components.values() {
        match comp.integrity {
            None if comp.driver == Some(Driver::Restic) => return None,
            None => {}
            Some(i) => result &= i,
        }
    }
    Some(result)
}

/// Snapshot size (`GetSize`): the sum of the component sizes in KubeStash's format
/// (`7.791 KiB` → `7.790 KiB` after Go's truncation); `""` if a size is unreadable.
pub fn snapshot_size(status: &SnapshotStatus) -> String {
    crate::size::total_size(
        status
            .components
            .values()
            .map(|c| c.size.as_deref().unwrap_or("")),
    )
}

/// Repository phase: Ready iff `RepositoryInitialized==True`.
pub fn repository_phase(status: &RepositoryStatus) -> RepositoryPhase {
    if status.conditions.is_true(c::TYPE_REPOSITORY_INITIALIZED) {
        RepositoryPhase::Ready
    } else {
        RepositoryPhase::NotReady
    }
}

/// BackupStorage phase: Ready iff `BackendInitialized==True` and `BackendSecretFound` is absent
/// or True.
pub fn backup_storage_phase(status: &BackupStorageStatus) -> BackupStoragePhase {
    let conds: &[Condition] = &status.conditions;
    let secret_ok = conds
        .find(c::TYPE_BACKEND_SECRET_FOUND)
        .is_none_or(Condition::is_true);
    if conds.is_true(c::TYPE_BACKEND_INITIALIZED) && secret_ok {
        BackupStoragePhase::Ready
    } else {
        BackupStoragePhase::NotReady
    }
}
