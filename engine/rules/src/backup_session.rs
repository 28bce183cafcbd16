//! The BackupSession executor's pure steps (spec §1.3, §4, §5.1, §6, §11.6–11.8).
//!
//! Each function takes typed inputs (the objects and the results of the I/O the executor did)
//! and returns the objects or status to write; the executor does the I/O in the order of spec
//! §4 and calls these in between. See docs/sessions.md for the lifecycle and the decisions.
//!
//! - [`skip_reason`] / [`skip`]: admission (another session running, invoker not Ready);
//! - [`backup_deadline`]: `backupDeadline = start + backupTimeout` ([`parse_go_duration`]);
//! - [`snapshots_to_create`] / [`mark_snapshots_ensured`]: one Snapshot per repository;
//! - [`finish_snapshot`]: a Snapshot's status from the executor's result;
//! - [`retention_plan`] / [`retention_applied`]: the Snapshots to delete and `retentionPolicy[]`;
//! - [`sessions_to_delete`]: session history trimming;
//! - [`finish`]: the session's final conditions, phase and duration;
//! - [`retry`]: the retry BackupSession;
//! - [`recover_orphan`]: a `Running` session whose executor is gone → Failed;
//! - [`step::next_step`]: which of these the reconciler does now.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::time::Duration;

use crate::cond;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kstash_api::constants::{
    conditions as c, labels, FINALIZER_CLEANUP, GROUP_KUBEDB, GROUP_STORAGE, SNAPSHOT_VERSION_V1,
    VERSION,
};
use kstash_api::core::{
    BackupInvokerPhase, BackupSession, BackupSessionPhase, BackupSessionSpec, BackupSessionStatus,
    RetentionPolicyApplyPhase, RetentionPolicyApplyStatus, RetryConfig, SessionSnapshotStatus,
};
use kstash_api::names;
use kstash_api::phase;
use kstash_api::retention::{self, Decision, RetentionRules, SnapshotInfo};
use kstash_api::shared::{set_condition, Condition, Driver, ObjectReference, TypedObjectReference};
use kstash_api::storage::{
    Component, DeletionPolicy, Repository, ResticStats, RetentionPolicySpec, Snapshot,
    SnapshotPhase, SnapshotSpec, SnapshotStatus, SnapshotType,
};

/// Kind of a Repository (Snapshot owner references).
pub const KIND_REPOSITORY: &str = "Repository";

/// Why a step cannot be computed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// A metadata field the step needs is missing.
    #[error("{object} metadata.{field} is missing")]
    MissingMetadata {
        /// Kind of the object.
        object: &'static str,
        /// The missing field.
        field: &'static str,
    },
    /// A spec field the step needs is missing.
    #[error("BackupSession {0} is missing")]
    MissingSpec(&'static str),
    /// A duration field does not parse.
    #[error("{field}: {source}")]
    Duration {
        /// Field path, e.g. `spec.backupTimeout`.
        field: &'static str,
        /// The parse error.
        source: DurationError,
    },
    /// A Snapshot ID is not a ULID.
    #[error("snapshotID {0:?} is not a ULID (26 Crockford base32 characters)")]
    BadSnapshotId(String),
    /// A repository has no Snapshot ID.
    #[error("no snapshotID given for repository {0:?}")]
    MissingSnapshotId(String),
}

// ---------------------------------------------------------------------------------------------
// Go durations
// ---------------------------------------------------------------------------------------------

/// Why a Go duration string does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Empty string.
    #[error("duration is empty")]
    Empty,
    /// Not `<number><unit>` sequences.
    #[error("invalid duration {0:?}: expected <number><unit>… with units ns, us, µs, ms, s, m, h (e.g. \"30s\", \"1h30m\")")]
    Invalid(String),
    /// A unit other than `ns us µs ms s m h`.
    #[error("invalid duration {input:?}: unknown unit {unit:?} (use ns, us, µs, ms, s, m or h)")]
    UnknownUnit {
        /// The input.
        input: String,
        /// The unit found.
        unit: String,
    },
    /// A leading `-`: timeouts and delays cannot be negative.
    #[error("invalid duration {0:?}: must not be negative")]
    Negative(String),
    /// Too large.
    #[error("invalid duration {0:?}: too large")]
    Overflow(String),
}

/// Parses a Go duration (`time.ParseDuration`): `[+]?(<int>[.<frac>]<unit>)+` or `0`, units
/// `ns us µs ms s m h`. Negative durations are rejected (they are timeouts and delays).
pub fn parse_go_duration(s: &str) -> Result<Duration, DurationError> {
    let input = s;
    let mut s = s.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if let Some(rest) = s.strip_prefix('-') {
        if rest == "0" {
            return Ok(Duration::ZERO);
        }
        return Err(DurationError::Negative(input.to_string()));
    }
    s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let invalid = || DurationError::Invalid(input.to_string());
    let overflow = || DurationError::Overflow(input.to_string());
    let mut total: u128 = 0;
    while !s.is_empty() {
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let int = &s[..int_len];
        s = &s[int_len..];
        let mut frac = "";
        if let Some(rest) = s.strip_prefix('.') {
            let n = rest.bytes().take_while(u8::is_ascii_digit).count();
            frac = &rest[..n];
            s = &rest[n..];
        }
        if int.is_empty() && frac.is_empty() {
            return Err(invalid());
        }
        let unit_len = s
            .char_indices()
            .find(|(_, ch)| ch.is_ascii_digit() || *ch == '.')
            .map(|(i, _)| i)
            .unwrap_or(s.len());
        let unit = &s[..unit_len];
        s = &s[unit_len..];
        let per: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(invalid()),
            other => {
                return Err(DurationError::UnknownUnit {
                    input: input.to_string(),
                    unit: other.to_string(),
                })
            }
        };
        let whole: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| overflow())?
        };
        let mut nanos = whole.checked_mul(per).ok_or_else(overflow)?;
        // Fraction: digits beyond nanosecond precision are dropped, as Go does.
        let mut scale = per;
        for d in frac.bytes() {
            scale /= 10;
            if scale == 0 {
                break;
            }
            nanos += u128::from(d - b'0') * scale;
        }
        total = total.checked_add(nanos).ok_or_else(overflow)?;
    }
    u64::try_from(total)
        .map(Duration::from_nanos)
        .map_err(|_| overflow())
}

/// Formats a duration as Go's `Duration.String`: `0s`, `500ms`, `1.5µs`, `22s`, `1m5s`,
/// `1.93395065s`, `1h0m0s`.
pub fn format_go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    fn frac(value: u128, unit: u128, digits: usize) -> String {
        let whole = value / unit;
        let rest = value % unit;
        if rest == 0 {
            return whole.to_string();
        }
        let f = format!("{rest:0digits$}");
        format!("{whole}.{}", f.trim_end_matches('0'))
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", frac(nanos, 1_000, 3));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", frac(nanos, 1_000_000, 6));
    }
    let secs_ns = nanos % 60_000_000_000;
    let mins = nanos / 60_000_000_000;
    let s = format!("{}s", frac(secs_ns, 1_000_000_000, 9));
    if mins == 0 {
        return s;
    }
    let (h, m) = (mins / 60, mins % 60);
    if h == 0 {
        format!("{m}m{s}")
    } else {
        format!("{h}h{m}m{s}")
    }
}

/// A session's `status.duration`: whole seconds (Go `Round(time.Second).String()`), e.g. `22s`,
/// `1m5s`. `end` before `start` gives `0s`.
pub fn session_duration(start: Timestamp, end: Timestamp) -> String {
    let d = end.duration_since(start);
    let secs = if d.is_negative() {
        0
    } else {
        let ms = d.as_millis();
        ((ms + 500) / 1000) as u64
    };
    format_go_duration(Duration::from_secs(secs))
}

fn add(
    t: Timestamp,
    d: Duration,
    field: &'static str,
    raw: &str,
) -> Result<Timestamp, SessionError> {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|sd| t.checked_add(sd).ok())
        .ok_or(SessionError::Duration {
            field,
            source: DurationError::Overflow(raw.to_string()),
        })
}

/// `backupDeadline = start + spec.backupTimeout`; `None` without a timeout.
pub fn backup_deadline(
    bs: &BackupSession,
    start: Timestamp,
) -> Result<Option<Timestamp>, SessionError> {
    let Some(raw) = bs.spec.backup_timeout.as_deref().filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let d = parse_go_duration(raw).map_err(|source| SessionError::Duration {
        field: "spec.backupTimeout",
        source,
    })?;
    add(start, d, "spec.backupTimeout", raw).map(Some)
}

/// Whether the deadline has passed at `now` (`GetRemainingTimeoutDuration` errors then).
pub fn deadline_exceeded(deadline: Option<Timestamp>, now: Timestamp) -> bool {
    deadline.is_some_and(|d| now >= d)
}

// ---------------------------------------------------------------------------------------------
// Conditions helpers
// ---------------------------------------------------------------------------------------------

/// Sets a condition from a step result: `Ok` → True with `ok_reason`/`ok_msg`, `Err(e)` →
/// False with `err_reason` and `e` as the message.
fn set_result(
    conds: &mut Vec<Condition>,
    type_: &str,
    result: &Result<(), String>,
    (ok_reason, ok_msg): (&str, &str),
    err_reason: &str,
    now: Timestamp,
) {
    let c = match result {
        Ok(()) => cond(type_, true, ok_reason, ok_msg, now),
        Err(e) => cond(type_, false, err_reason, e, now),
    };
    set_condition(conds, c);
}

// ---------------------------------------------------------------------------------------------
// Admission / skip
// ---------------------------------------------------------------------------------------------

fn same_key(a: &BackupSession, b: &BackupSession) -> bool {
    let inv = |x: &BackupSession| {
        x.spec
            .invoker
            .as_ref()
            .map(|i| (i.kind.clone(), i.name.clone()))
    };
    a.metadata.namespace == b.metadata.namespace
        && inv(a).is_some()
        && inv(a) == inv(b)
        && a.spec.session == b.spec.session
}

/// Why `bs` must be skipped (spec §4 step 1), or `None` to go on: another BackupSession of the
/// same invoker and session is `Running`, or the invoker is not `Ready` (`None` = not found).
pub fn skip_reason<O: Borrow<BackupSession>>(
    bs: &BackupSession,
    invoker_phase: Option<BackupInvokerPhase>,
    others: &[O],
) -> Option<String> {
    let invoker = bs
        .spec
        .invoker
        .as_ref()
        .map(|i| format!("{} {}", i.kind, i.name))
        .unwrap_or_else(|| "invoker".to_string());
    if let Some(running) = others.iter().map(Borrow::borrow).find(|o| {
        o.metadata.name != bs.metadata.name
            && same_key(o, bs)
            && o.status.as_ref().and_then(|s| s.phase) == Some(BackupSessionPhase::Running)
    }) {
        return Some(format!(
            "Skipped because BackupSession {} of the same session is running",
            running.metadata.name.as_deref().unwrap_or("")
        ));
    }
    match invoker_phase {
        Some(BackupInvokerPhase::Ready) => None,
        Some(p) => Some(format!(
            "Skipped because {invoker} is not Ready (phase {p:?})"
        )),
        None => Some(format!("Skipped because {invoker} was not found")),
    }
}

/// Marks the session skipped: `BackupSkipped=True` / `PreRequisitesNotSatisfied` with
/// `message`, phase by the calculator (Skipped).
pub fn skip(status: &mut BackupSessionStatus, message: &str, now: Timestamp) {
    set_condition(
        &mut status.conditions,
        cond(
            c::TYPE_BACKUP_SKIPPED,
            true,
            c::REASON_PREREQUISITES_NOT_SATISFIED,
            message,
            now,
        ),
    );
    status.phase = Some(phase::backup_session_phase(status));
}

// ---------------------------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------------------------

/// One repository of the session and the Snapshot ID (a fresh ULID) to give its Snapshot.
#[derive(Clone, Debug)]
pub struct SnapshotTarget<'a> {
    /// The Repository (name, namespace and uid are required).
    pub repository: &'a Repository,
    /// ULID for `spec.snapshotID`.
    pub snapshot_id: String,
}

/// Whether `s` is a ULID: 26 Crockford base32 characters, the first at most `7`.
pub fn is_ulid(s: &str) -> bool {
    s.len() == 26
        && s.bytes().next().is_some_and(|b| (b'0'..=b'7').contains(&b))
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b.is_ascii_uppercase() && !b"ILOU".contains(&b)))
}

/// The Snapshots to create for `bs` (spec §5.1), one per repository, in the given order:
/// name from [`names::snapshot_name`], the Repository's namespace, labels
/// (`kubestash.com/repo-name`, `app-ref-kind/name/namespace`, `kubedb.com/db-version` when
/// `db_version` is known), controller owner reference to the Repository, finalizer
/// `kubestash.com/cleanup`, and spec `{snapshotID, type: FullBackup, version: v1, session,
/// backupSession, repository, appRef, deletionPolicy: Delete}`.
///
/// `app_ref` is the invoker's target with its namespace filled in.
pub fn snapshots_to_create(
    bs: &BackupSession,
    targets: &[SnapshotTarget<'_>],
    app_ref: &TypedObjectReference,
    db_version: Option<&str>,
) -> Result<Vec<Snapshot>, SessionError> {
    let bs_name = bs
        .metadata
        .name
        .clone()
        .ok_or(SessionError::MissingMetadata {
            object: "BackupSession",
            field: "name",
        })?;
    let session = bs
        .spec
        .session
        .clone()
        .ok_or(SessionError::MissingSpec("spec.session"))?;
    let missing = |field| SessionError::MissingMetadata {
        object: "Repository",
        field,
    };
    targets
        .iter()
        .map(|t| {
            let repo = t.repository;
            let repo_name = repo.metadata.name.clone().ok_or(missing("name"))?;
            let repo_ns = repo
                .metadata
                .namespace
                .clone()
                .ok_or(missing("namespace"))?;
            let uid = repo.metadata.uid.clone().ok_or(missing("uid"))?;
            if t.snapshot_id.is_empty() {
                return Err(SessionError::MissingSnapshotId(repo_name));
            }
            if !is_ulid(&t.snapshot_id) {
                return Err(SessionError::BadSnapshotId(t.snapshot_id.clone()));
            }
            let mut lbls = BTreeMap::from([
                (
                    labels::REPO_NAME.to_string(),
                    names::label_value(&repo_name),
                ),
                (
                    labels::APP_REF_KIND.to_string(),
                    names::label_value(app_ref.kind.as_deref().unwrap_or("")),
                ),
                (
                    labels::APP_REF_NAME.to_string(),
                    names::label_value(&app_ref.name),
                ),
                (
                    labels::APP_REF_NAMESPACE.to_string(),
                    names::label_value(app_ref.namespace.as_deref().unwrap_or("")),
                ),
            ]);
            if let Some(v) = db_version.filter(|v| !v.is_empty()) {
                lbls.insert(labels::KUBEDB_DB_VERSION.to_string(), names::label_value(v));
            }
            Ok(Snapshot {
                metadata: ObjectMeta {
                    name: Some(names::snapshot_name(&repo_name, &bs_name)),
                    namespace: Some(repo_ns),
                    labels: Some(lbls),
                    owner_references: Some(vec![OwnerReference {
                        api_version: format!("{GROUP_STORAGE}/{VERSION}"),
                        kind: KIND_REPOSITORY.to_string(),
                        name: repo_name.clone(),
                        uid,
                        controller: Some(true),
                        block_owner_deletion: Some(true),
                    }]),
                    finalizers: Some(vec![FINALIZER_CLEANUP.to_string()]),
                    ..Default::default()
                },
                spec: SnapshotSpec {
                    snapshot_id: Some(t.snapshot_id.clone()),
                    type_: Some(SnapshotType::FullBackup),
                    repository: Some(repo_name),
                    session: Some(session.clone()),
                    backup_session: Some(bs_name.clone()),
                    version: Some(SNAPSHOT_VERSION_V1.to_string()),
                    app_ref: Some(app_ref.clone()),
                    deletion_policy: Some(DeletionPolicy::Delete),
                    paused: None,
                },
                status: None,
            })
        })
        .collect()
}

/// Whether an appRef is a KubeDB database (its Snapshots get `kubedb.com/db-version`).
pub fn is_kubedb(app_ref: &TypedObjectReference) -> bool {
    app_ref.api_group.as_deref() == Some(GROUP_KUBEDB)
}

/// Records the ensured Snapshots on the session: `snapshots[]` (`Pending` unless the Snapshot
/// already has a phase), `totalSnapshots`, `SnapshotsEnsured=True`; phase by the calculator.
pub fn mark_snapshots_ensured(
    status: &mut BackupSessionStatus,
    snapshots: &[Snapshot],
    now: Timestamp,
) {
    status.snapshots = snapshots
        .iter()
        .map(|s| SessionSnapshotStatus {
            name: s.metadata.name.clone().unwrap_or_default(),
            phase: Some(
                s.status
                    .as_ref()
                    .and_then(|st| st.phase)
                    .unwrap_or(SnapshotPhase::Pending),
            ),
            app_ref: s.spec.app_ref.clone(),
            repository: s.spec.repository.clone(),
        })
        .collect();
    status.total_snapshots = Some(snapshots.len() as i32);
    set_condition(
        &mut status.conditions,
        cond(
            c::TYPE_SNAPSHOTS_ENSURED,
            true,
            c::REASON_SUCCESSFULLY_ENSURED_SNAPSHOTS,
            c::MSG_SNAPSHOTS_ENSURED,
            now,
        ),
    );
    status.phase = Some(phase::backup_session_phase(status));
}

/// Records that creating the Snapshots failed: `SnapshotsEnsured=False` /
/// `FailedToEnsureSnapshots` with `error`.
pub fn mark_snapshots_failed(status: &mut BackupSessionStatus, error: &str, now: Timestamp) {
    set_condition(
        &mut status.conditions,
        cond(
            c::TYPE_SNAPSHOTS_ENSURED,
            false,
            c::REASON_FAILED_TO_ENSURE_SNAPSHOTS,
            error,
            now,
        ),
    );
    status.phase = Some(phase::backup_session_phase(status));
}

/// Records the executor step: `BackupExecutorEnsured` True/False.
pub fn mark_executor(
    status: &mut BackupSessionStatus,
    result: &Result<(), String>,
    now: Timestamp,
) {
    set_result(
        &mut status.conditions,
        c::TYPE_BACKUP_EXECUTOR_ENSURED,
        result,
        (
            c::REASON_SUCCESSFULLY_ENSURED_BACKUP_EXECUTOR,
            c::MSG_BACKUP_EXECUTOR_ENSURED,
        ),
        c::REASON_FAILED_TO_ENSURE_BACKUP_EXECUTOR,
        now,
    );
    status.phase = Some(phase::backup_session_phase(status));
}

/// What the executor produced for one component.
#[derive(Clone, Debug, PartialEq)]
pub struct ComponentResult {
    /// Size of the component's restic repository (KubeStash size format, `7.791 KiB`).
    pub size: String,
    /// How long the component's backup took.
    pub duration: Duration,
    /// `restic check` result.
    pub integrity: bool,
    /// `restic backup` summaries.
    pub restic_stats: Vec<ResticStats>,
}

/// The executor's result for one Snapshot, plus the two bookkeeping steps after it.
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotResult {
    /// Component name (Elasticsearch: `dump`).
    pub component: String,
    /// Where its restic repository lives below the Repository directory
    /// (`repository/v1/<session>/<component>`, from `kstash_repo::ComponentPath`).
    pub path: String,
    /// The backup: success, or failure with a message.
    pub backup: Result<ComponentResult, String>,
    /// Updating the Repository's `recentSnapshots` (`RecentSnapshotListUpdated`).
    pub recent_list_updated: Result<(), String>,
    /// Uploading the Snapshot YAML copy (`SnapshotMetadataUploaded`).
    pub metadata_uploaded: Result<(), String>,
}

/// The finished Snapshot status (spec §5.1): `components.<component>` (driver Restic, path,
/// phase, size, duration, integrity, resticStats; error on failure), `totalComponents: 1`,
/// conditions `RecentSnapshotListUpdated` then `SnapshotMetadataUploaded` (the tutorial's
/// order), `snapshotTime` (kept, else the creation time, else `now`), `lastUpdateTime`,
/// integrity/size/phase by the spec's helpers.
pub fn finish_snapshot(
    snapshot: &Snapshot,
    result: &SnapshotResult,
    now: Timestamp,
) -> SnapshotStatus {
    let mut st = snapshot.status.clone().unwrap_or_default();
    let path = result.path.clone();
    let comp = match &result.backup {
        Ok(r) => Component {
            path: Some(path),
            phase: Some(SnapshotPhase::Succeeded),
            size: Some(r.size.clone()),
            duration: Some(format_go_duration(r.duration)),
            integrity: Some(r.integrity),
            driver: Some(Driver::Restic),
            restic_stats: r.restic_stats.clone(),
            ..Default::default()
        },
        Err(e) => Component {
            path: Some(path),
            phase: Some(SnapshotPhase::Failed),
            error: Some(e.clone()),
            driver: Some(Driver::Restic),
            ..Default::default()
        },
    };
    st.components.insert(result.component.clone(), comp);
    st.total_components = Some(st.components.len() as i32);
    set_result(
        &mut st.conditions,
        c::TYPE_RECENT_SNAPSHOT_LIST_UPDATED,
        &result.recent_list_updated,
        (
            c::REASON_SUCCESSFULLY_UPDATED_RECENT_SNAPSHOT_LIST,
            c::MSG_RECENT_SNAPSHOT_LIST_UPDATED,
        ),
        c::REASON_FAILED_TO_UPDATE_RECENT_SNAPSHOT_LIST,
        now,
    );
    set_result(
        &mut st.conditions,
        c::TYPE_SNAPSHOT_METADATA_UPLOADED,
        &result.metadata_uploaded,
        (
            c::REASON_SUCCESSFULLY_UPLOADED_SNAPSHOT_METADATA,
            c::MSG_SNAPSHOT_METADATA_UPLOADED,
        ),
        c::REASON_FAILED_TO_UPLOAD_SNAPSHOT_METADATA,
        now,
    );
    if st.snapshot_time.is_none() {
        st.snapshot_time = Some(
            snapshot
                .metadata
                .creation_timestamp
                .clone()
                .unwrap_or(Time(now)),
        );
    }
    st.last_update_time = Some(Time(now));
    st.integrity = phase::snapshot_integrity(&st);
    let size = phase::snapshot_size(&st);
    st.size = (!size.is_empty()).then_some(size);
    st.phase = Some(phase::snapshot_phase(&st));
    st
}

// ---------------------------------------------------------------------------------------------
// Retention
// ---------------------------------------------------------------------------------------------

/// What retention decided for one repository.
#[derive(Clone, Debug, PartialEq)]
pub struct RetentionPlan {
    /// Snapshot names to delete (their `deletionPolicy` is set to `WipeOut` first, spec §6).
    pub to_delete: Vec<String>,
    /// Every decision, for events and logs.
    pub decisions: Vec<Decision>,
    /// The `status.retentionPolicy[]` entry: `Pending`, or `FailedToApply` when the policy is
    /// unusable (its `maxRetentionPeriod` does not parse).
    pub status: RetentionPolicyApplyStatus,
}

/// Retention for `repository` (spec §6): selects, among `snapshots` whose `spec.repository`
/// is `repository` (and which are in `repository_namespace`), the ones to delete with
/// [`retention::select`]. Snapshots that cannot be placed in time are kept.
pub fn retention_plan(
    repository: &str,
    repository_namespace: &str,
    policy_ref: &ObjectReference,
    policy: &RetentionPolicySpec,
    snapshots: &[Snapshot],
    now: Timestamp,
) -> RetentionPlan {
    let mut status = RetentionPolicyApplyStatus {
        ref_: Some(policy_ref.clone()),
        repository: Some(repository.to_string()),
        phase: Some(RetentionPolicyApplyPhase::Pending),
        error: None,
    };
    let rules = match RetentionRules::try_from(policy) {
        Ok(r) => r,
        Err(e) => {
            status.phase = Some(RetentionPolicyApplyPhase::FailedToApply);
            status.error = Some(format!("spec.maxRetentionPeriod: {e}"));
            return RetentionPlan {
                to_delete: vec![],
                decisions: vec![],
                status,
            };
        }
    };
    let infos: Vec<SnapshotInfo> = snapshots
        .iter()
        .filter(|s| {
            s.spec.repository.as_deref() == Some(repository)
                && s.metadata
                    .namespace
                    .as_deref()
                    .unwrap_or(repository_namespace)
                    == repository_namespace
        })
        .filter_map(SnapshotInfo::from_snapshot)
        .collect();
    let decisions = retention::select(&infos, &rules, now);
    let to_delete = retention::to_delete(&decisions)
        .into_iter()
        .map(str::to_string)
        .collect();
    RetentionPlan {
        to_delete,
        decisions,
        status,
    }
}

/// The entry after deleting the Snapshots: `Applied`, or `FailedToApply` with the error.
pub fn retention_applied(
    planned: &RetentionPolicyApplyStatus,
    result: &Result<(), String>,
) -> RetentionPolicyApplyStatus {
    let mut st = planned.clone();
    if st.phase == Some(RetentionPolicyApplyPhase::FailedToApply) {
        return st;
    }
    match result {
        Ok(()) => {
            st.phase = Some(RetentionPolicyApplyPhase::Applied);
            st.error = None;
        }
        Err(e) => {
            st.phase = Some(RetentionPolicyApplyPhase::FailedToApply);
            st.error = Some(e.clone());
        }
    }
    st
}

// ---------------------------------------------------------------------------------------------
// Session history
// ---------------------------------------------------------------------------------------------

/// When a session was triggered: its `-<unix seconds>` name suffix, else its creation time.
pub fn session_time(bs: &BackupSession) -> Option<Timestamp> {
    bs.metadata
        .name
        .as_deref()
        .and_then(names::split_numeric_suffix)
        .and_then(|(_, d)| d.parse::<i64>().ok())
        .and_then(|s| Timestamp::from_second(s).ok())
        .or_else(|| bs.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// The BackupSessions to delete so that the newest `limit` (`sessionHistoryLimit`, default 1)
/// of `current`'s invoker and session remain (spec §4 step 9). Ordered newest first by
/// [`session_time`] (then name); `current`, sessions not completed (Pending/Running) and
/// sessions whose retry is still due at `now` are never deleted. Names, oldest last.
pub fn sessions_to_delete<O: Borrow<BackupSession>>(
    current: &BackupSession,
    all: &[O],
    limit: Option<i32>,
    now: Timestamp,
) -> Vec<String> {
    let limit = limit.unwrap_or(1).max(0) as usize;
    let mut same: Vec<&BackupSession> = all
        .iter()
        .map(Borrow::borrow)
        .filter(|b| b.metadata.name != current.metadata.name && same_key(b, current))
        .chain(std::iter::once(current))
        .collect();
    same.sort_by(|a, b| {
        session_time(b)
            .cmp(&session_time(a))
            .then_with(|| b.metadata.name.cmp(&a.metadata.name))
    });
    same.into_iter()
        .skip(limit)
        .filter(|b| b.metadata.name != current.metadata.name)
        .filter(|b| {
            let st = b.status.clone().unwrap_or_default();
            let completed = st.phase.is_some_and(BackupSessionPhase::is_completed);
            let retry_due =
                st.retried == Some(true) && st.next_retry.as_ref().is_some_and(|t| t.0 > now);
            completed && !retry_due
        })
        .filter_map(|b| b.metadata.name.clone())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Finish
// ---------------------------------------------------------------------------------------------

/// Results of the steps after the executor (spec §4 steps 8–10).
#[derive(Clone, Debug, PartialEq)]
pub struct FinishSteps {
    /// Retention entries per repository (from [`retention_applied`]).
    pub retention: Vec<RetentionPolicyApplyStatus>,
    /// Running retention (`RetentionPolicyExecutorEnsured`).
    pub retention_executor: Result<(), String>,
    /// Session history cleanup (`SessionHistoryCleaned`).
    pub history: Result<(), String>,
    /// Pushing metrics (`MetricsPushed`, always last).
    pub metrics: Result<(), String>,
}

/// Finishes the session: `snapshots[].phase` from the finished Snapshots (matched by name),
/// `retentionPolicy[]`, conditions `RetentionPolicyExecutorEnsured`, `SessionHistoryCleaned`,
/// `MetricsPushed` appended in that order (earlier conditions stay first), phase by the
/// spec's calculator and `duration` from `start` (whole seconds). When the retention executor
/// failed, retention entries not `Applied` become `FailedToApply` with its error.
pub fn finish(
    status: &BackupSessionStatus,
    snapshots: &[Snapshot],
    steps: &FinishSteps,
    start: Timestamp,
    now: Timestamp,
) -> BackupSessionStatus {
    let mut st = status.clone();
    for s in &mut st.snapshots {
        if let Some(found) = snapshots
            .iter()
            .find(|x| x.metadata.name.as_deref() == Some(s.name.as_str()))
        {
            s.phase = found.status.as_ref().and_then(|x| x.phase).or(s.phase);
        }
    }
    st.retention_policies = steps.retention.clone();
    if let Err(e) = &steps.retention_executor {
        // The spec's calculator ignores RetentionPolicyExecutorEnsured; a retention that never
        // ran is reported as not applied, so the session fails (spec §11.7).
        for r in &mut st.retention_policies {
            if r.phase != Some(RetentionPolicyApplyPhase::Applied) {
                r.phase = Some(RetentionPolicyApplyPhase::FailedToApply);
                r.error.get_or_insert_with(|| e.clone());
            }
        }
    }
    set_result(
        &mut st.conditions,
        c::TYPE_RETENTION_POLICY_EXECUTOR_ENSURED,
        &steps.retention_executor,
        (
            c::REASON_SUCCESSFULLY_ENSURED_RETENTION_POLICY_EXECUTOR,
            "Retention policy executor has been ensured successfully.",
        ),
        c::REASON_FAILED_TO_ENSURE_RETENTION_POLICY_EXECUTOR,
        now,
    );
    set_result(
        &mut st.conditions,
        c::TYPE_SESSION_HISTORY_CLEANED,
        &steps.history,
        (
            c::REASON_SUCCESSFULLY_CLEANED_SESSION_HISTORY,
            "Successfully cleaned up backup history",
        ),
        c::REASON_FAILED_TO_CLEAN_SESSION_HISTORY,
        now,
    );
    set_result(
        &mut st.conditions,
        c::TYPE_METRICS_PUSHED,
        &steps.metrics,
        (c::REASON_SUCCESSFULLY_PUSHED_METRICS, c::MSG_METRICS_PUSHED),
        c::REASON_FAILED_TO_PUSH_METRICS,
        now,
    );
    st.phase = Some(phase::backup_session_phase(&st));
    st.duration = Some(session_duration(start, now));
    st
}

// ---------------------------------------------------------------------------------------------
// Retry
// ---------------------------------------------------------------------------------------------

/// A retry to create.
#[derive(Clone, Debug, PartialEq)]
pub struct Retry {
    /// When to create it (`now + retryConfig.delay`); its name carries this time.
    pub at: Timestamp,
    /// The BackupSession to create at `at`.
    pub session: BackupSession,
}

/// The retry of a finished session (spec §4 "Retry"): when its phase is Failed, `retryLeft > 0`
/// and it was not retried yet, a new BackupSession named by the generator at
/// `now + retryConfig.delay` (same namespace, labels, owner references and finalizers,
/// `retryLeft - 1`). Marks `status.retried = true` and `status.nextRetry = at` on `bs`'s
/// status. `None` when no retry is due.
pub fn retry(
    bs: &BackupSession,
    status: &mut BackupSessionStatus,
    retry_config: Option<&RetryConfig>,
    now: Timestamp,
) -> Result<Option<Retry>, SessionError> {
    let left = bs.spec.retry_left.unwrap_or(0);
    if status.phase != Some(BackupSessionPhase::Failed) || left <= 0 || status.retried == Some(true)
    {
        return Ok(None);
    }
    let invoker = bs
        .spec
        .invoker
        .as_ref()
        .ok_or(SessionError::MissingSpec("spec.invoker"))?;
    let session = bs
        .spec
        .session
        .as_deref()
        .ok_or(SessionError::MissingSpec("spec.session"))?;
    let raw = retry_config.and_then(|r| r.delay.as_deref()).unwrap_or("");
    let delay = if raw.is_empty() {
        Duration::ZERO
    } else {
        parse_go_duration(raw).map_err(|source| SessionError::Duration {
            field: "retryConfig.delay",
            source,
        })?
    };
    let at = add(now, delay, "retryConfig.delay", raw)?;
    let name = names::backup_session_name(&invoker.name, session, at.as_second());
    let next = BackupSession {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: bs.metadata.namespace.clone(),
            labels: bs.metadata.labels.clone(),
            owner_references: bs.metadata.owner_references.clone(),
            finalizers: bs.metadata.finalizers.clone(),
            ..Default::default()
        },
        spec: BackupSessionSpec {
            retry_left: Some(left - 1),
            ..bs.spec.clone()
        },
        status: None,
    };
    status.retried = Some(true);
    status.next_retry = Some(Time(at));
    Ok(Some(Retry { at, session: next }))
}

// ---------------------------------------------------------------------------------------------
// Orphan recovery
// ---------------------------------------------------------------------------------------------

/// Message of the orphan-recovery conditions.
pub const MSG_EXECUTOR_TERMINATED: &str =
    "The backup executor terminated before completion (engine restarted or executor lost).";

/// A recovered session and the Snapshot statuses to write.
#[derive(Clone, Debug, PartialEq)]
pub struct Recovery {
    /// The session's status (phase Failed).
    pub status: BackupSessionStatus,
    /// `(snapshot name, new status)` for every Snapshot that was not terminal.
    pub snapshots: Vec<(String, SnapshotStatus)>,
}

/// Drives a session found `Running` whose executor is gone (spec §11.6) to a terminal phase:
/// each of its non-terminal Snapshots gets `BackupIncomplete=True` /
/// `BackupExecutorTerminatedBeforeCompletion` (phase Failed by the Snapshot calculator); the
/// session gets `SnapshotCleanupIncomplete=True`, `MetricsPushed` from `metrics`, snapshot
/// phases, phase (Failed) and duration from `start`.
pub fn recover_orphan(
    status: &BackupSessionStatus,
    snapshots: &[Snapshot],
    metrics: &Result<(), String>,
    start: Timestamp,
    now: Timestamp,
) -> Recovery {
    let mut out = Vec::new();
    let mut st = status.clone();
    for s in snapshots {
        let Some(name) = s.metadata.name.clone() else {
            continue;
        };
        let mut ss = s.status.clone().unwrap_or_default();
        let terminal = matches!(
            ss.phase,
            Some(SnapshotPhase::Succeeded | SnapshotPhase::Failed)
        );
        if !terminal {
            set_condition(
                &mut ss.conditions,
                cond(
                    c::TYPE_BACKUP_INCOMPLETE,
                    true,
                    c::REASON_BACKUP_EXECUTOR_TERMINATED_BEFORE_COMPLETION,
                    MSG_EXECUTOR_TERMINATED,
                    now,
                ),
            );
            for comp in ss.components.values_mut() {
                if !matches!(
                    comp.phase,
                    Some(SnapshotPhase::Succeeded | SnapshotPhase::Failed)
                ) {
                    comp.phase = Some(SnapshotPhase::Failed);
                    comp.error = Some(MSG_EXECUTOR_TERMINATED.to_string());
                }
            }
            ss.last_update_time = Some(Time(now));
            ss.phase = Some(phase::snapshot_phase(&ss));
            out.push((name.clone(), ss.clone()));
        }
        if let Some(entry) = st.snapshots.iter_mut().find(|e| e.name == name) {
            entry.phase = ss.phase;
        }
    }
    // Snapshots listed on the session but gone from the cluster cannot finish either.
    for entry in &mut st.snapshots {
        if !matches!(
            entry.phase,
            Some(SnapshotPhase::Succeeded | SnapshotPhase::Failed)
        ) {
            entry.phase = Some(SnapshotPhase::Failed);
        }
    }
    set_condition(
        &mut st.conditions,
        cond(
            c::TYPE_SNAPSHOT_CLEANUP_INCOMPLETE,
            true,
            c::REASON_SNAPSHOT_CLEANUP_TERMINATED_BEFORE_COMPLETION,
            MSG_EXECUTOR_TERMINATED,
            now,
        ),
    );
    set_result(
        &mut st.conditions,
        c::TYPE_METRICS_PUSHED,
        metrics,
        (c::REASON_SUCCESSFULLY_PUSHED_METRICS, c::MSG_METRICS_PUSHED),
        c::REASON_FAILED_TO_PUSH_METRICS,
        now,
    );
    st.phase = Some(phase::backup_session_phase(&st));
    st.duration = Some(session_duration(start, now));
    Recovery {
        status: st,
        snapshots: out,
    }
}

pub mod step;

#[cfg(test)]
mod tests;
