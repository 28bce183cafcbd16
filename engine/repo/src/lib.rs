//! restic-format repositories on opendal storage, laid out as KubeStash lays them out.
//!
//! * [`StorageConfig`] → [`Storage`] (s3, gcs, azure, local; no ambient credentials),
//! * [`Storage::initialize`] writes `<prefix>/metadata.yaml`, [`Storage::repository`] gives a
//!   [`RepositoryDir`] (`repository.yaml`, `snapshots/<name>.yaml`),
//! * [`RepositoryDir::component`] gives the [`ResticRepo`] at
//!   `<dir>/repository/v1/<session>/<component>`: streaming backup ([`ResticRepo::begin_backup`]),
//!   streaming restore ([`ResticRepo::open_snapshot`]), check, size, forget + prune, locks.
//!
//! See `docs/repository.md`.

mod backend;
mod backup;
mod bufpool;
mod chunker;
mod config;
mod error;
mod io;
mod locks;
mod packer;
mod restic;
mod restore;
mod storage;
mod tree;

pub use backup::{Backup, BackupOptions, BackupSummary, FileWriter};
pub use config::{AzureConfig, GcsConfig, LocalConfig, Provider, S3Config, StorageConfig};
pub use error::{Error, Result};
pub use locks::{FoundLock, LockInfo, RepoLock};
pub use packer::{stage_times, StageTimes};
pub use restic::{CheckReport, PruneReport, ResticRepo, SnapshotInfo, DEFAULT_LOCK_WAIT};
pub use restore::{FileEntry, FileReader, SnapshotReader};
pub use storage::{
    ComponentSnapshot, ConnectOptions, RepositoryDir, SnapshotDeletion, Storage, METADATA_FILE,
    REPOSITORY_FILE, RESTIC_DIR, SNAPSHOTS_DIR,
};
