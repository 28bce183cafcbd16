//! The pure rules of every KubeStash kind kstash runs: validation, defaults and the
//! observe → plan decisions its reconcilers call. No I/O: every function takes the objects and
//! what the reconciler observed, and returns what to write; each module has its table tests
//! beside it (`<module>/tests.rs`).
//!
//! - [`backup_configuration`]: the BackupConfiguration decision (status, Repositories and
//!   BackupSessions to create), with [`cron`] (5-field cron schedules in UTC) and [`schedule`]
//!   (when a session fires: missed runs, starting deadline, pause);
//! - [`backup_session`]: the BackupSession's next step and its parts (skip, snapshots, finish,
//!   retention, history, retry, orphan recovery);
//! - [`restore_session`]: the RestoreSession's next step and plan (validation, snapshot
//!   resolution, dependencies, paused backups, components, phase);
//! - [`repository`]: the Repository's status from its Snapshots;
//! - [`snapshot`]: what deleting a Snapshot does to its data (`deletionPolicy`).

pub mod backup_configuration;
pub mod backup_session;
pub mod cron;
pub mod repository;
pub mod restore_session;
pub mod schedule;
pub mod snapshot;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kstash_api::shared::{Condition, ConditionStatus};

/// A condition of type `type_`, `True` when `ok`, with KubeStash's reason and message.
pub(crate) fn cond(
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: if ok {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        },
        last_transition_time: Time(now),
        observed_generation: None,
        severity: None,
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
    }
}
