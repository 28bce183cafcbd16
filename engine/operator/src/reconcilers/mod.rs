//! One reconciler per kind, each a [`crate::shell::Reconciler`] run by [`crate::shell::run`]:
//!
//! - [`backup_storage`]: BackupStorage (backend Secret, `metadata.yaml`, deletion policy);
//! - [`repository`]: Repository (`repository.yaml`, status from its Snapshots, deletion);
//! - [`backup_configuration`]: BackupConfiguration (admission rules, Repositories, scheduler);
//! - [`crate::snapshot`] (execute half, beside the executors that write Snapshots): Snapshot;
//! - [`unsupported`]: BackupBatch, BackupVerifier, BackupVerificationSession, which kstash serves
//!   but does not run, each marked as refused (and [`unsupported::HANDLED_KINDS`], the table of
//!   who handles every served kind);
//! - [`admission`]: the reflector stores behind KubeStash's admission lookups.

pub mod admission;
pub mod backup_configuration;
pub mod backup_storage;
pub mod repository;
pub mod unsupported;
