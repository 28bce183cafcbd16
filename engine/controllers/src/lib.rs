//! The kube-runtime controllers that run KubeStash's backup flow.
//!
//! This crate currently holds the pure decision logic the reconcilers call (no I/O):
//! - [`cron`]: standard 5-field cron schedules in UTC;
//! - [`schedule`]: when a session fires (missed runs, starting deadline, pause);
//! - [`backup_config`]: the BackupConfiguration reconcile decision (status, Repositories and
//!   BackupSessions to create);
//! - [`backup_session`]: the BackupSession executor's steps (skip, snapshots, finish, retention,
//!   history, retry, orphan recovery);
//! - [`restore_session`]: the RestoreSession decision (validation, snapshot resolution,
//!   dependencies, paused backups, components, phase).

pub mod backup_config;
pub mod backup_session;
pub mod cron;
pub mod restore_session;
pub mod schedule;

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
