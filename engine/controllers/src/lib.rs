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
