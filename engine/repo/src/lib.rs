//! restic-format repositories on opendal storage, laid out as KubeStash lays them out.
//!
//! * [`StorageConfig`] → [`Storage`] (s3, gcs, azure, local; no ambient credentials),
//! * [`layout`]: KubeStash's bucket layout — [`Storage::initialize`] writes
//!   `<prefix>/metadata.yaml`, [`Storage::repository`] gives a [`RepositoryDir`]
//!   (`repository.yaml`, `snapshots/<name>.yaml`), whose [`RepositoryDir::component`] is the
//!   [`ResticRepo`] at `<dir>/`[`ComponentPath`] (`repository/v1/<session>/<component>`):
//!   streaming backup ([`ResticRepo::begin_backup`]), streaming restore
//!   ([`ResticRepo::open_snapshot`]), check, size, forget + prune, locks;
//! * [`resolve`]: Repository → BackupStorage → Secrets → a connected [`RepositoryDir`] and
//!   the restic password (feature `cluster`: from kstash-api's objects and the Kubernetes API).
//!
//! Module dependencies point one way: `storage` ← `restic` ← `layout` ← `resolve`; `backup`
//! and `restore` extend [`ResticRepo`].
//!
//! See `docs/repository.md`.

mod backend;
mod backup;
mod bufpool;
mod chunker;
mod config;
mod error;
pub mod identity;
mod io;
pub mod layout;
mod locks;
mod packer;
pub mod resolve;
mod restic;
mod restore;
mod storage;
mod tree;

pub use backup::{Backup, BackupOptions, BackupSummary, FileWriter};
pub use config::{AzureConfig, GcsConfig, LocalConfig, Provider, S3Config, StorageConfig};
pub use error::{Error, Result};
pub use identity::{
    AwsIdentity, AzureIdentity, AzureWorkload, Cloud, GcpIdentity, GkeMetadata, IdentityError,
    WebIdentity,
};
pub use layout::{
    ComponentPath, ComponentSnapshot, RepositoryDir, SnapshotDeletion, METADATA_FILE,
    REPOSITORY_FILE, RESTIC_DIR, SNAPSHOTS_DIR,
};
pub use locks::{hostname as lock_hostname, FoundLock, LockInfo, RepoLock};
pub use packer::{stage_times, StageTimes};
pub use restic::{CheckReport, PruneReport, ResticRepo, SnapshotInfo, DEFAULT_LOCK_WAIT};
pub use restore::{FileEntry, FileReader, SnapshotReader};
pub use storage::{ConnectOptions, Storage};
