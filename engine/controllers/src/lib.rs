//! The kube-runtime controllers that run KubeStash's backup flow.
//!
//! This crate currently holds the pure decision logic the reconcilers call (no I/O):
//! - [`cron`]: standard 5-field cron schedules in UTC;
//! - [`schedule`]: when a session fires (missed runs, starting deadline, pause);
//! - [`backup_config`]: the BackupConfiguration reconcile decision (status, Repositories and
//!   BackupSessions to create).

pub mod backup_config;
pub mod cron;
pub mod schedule;
