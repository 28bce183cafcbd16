//! `storage.kubestash.com/v1alpha1`: BackupStorage, Repository, Snapshot, RetentionPolicy.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::shared::{
    free_object, free_object_list, Condition, Driver, ObjectReference, TypedObjectReference,
    UsagePolicy,
};

// ---------------------------------------------------------------------------------------------
// BackupStorage
// ---------------------------------------------------------------------------------------------

/// S3 (or compatible) backend.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Spec {
    /// Endpoint, e.g. `us-east-1.linodeobjects.com` or `http://127.0.0.1:9000`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// Prefix inside the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Secret with `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (empty = credential-less).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// Max parallel connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<i64>,
    /// Skip TLS verification.
    #[serde(
        rename = "insecureTLS",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub insecure_tls: Option<bool>,
}

/// Google Cloud Storage backend.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GcsSpec {
    /// Bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// Prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Max parallel connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<i64>,
    /// Secret with `GOOGLE_PROJECT_ID`/`GOOGLE_SERVICE_ACCOUNT_JSON_KEY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
}

/// Azure Blob backend.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureSpec {
    /// Storage account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_account: Option<String>,
    /// Container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Max parallel connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<i64>,
    /// Secret with `AZURE_ACCOUNT_KEY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
}

/// Local (volume) backend: an inline core VolumeSource plus mount settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalSpec {
    /// Where the volume is mounted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_path: Option<String>,
    /// Sub-path inside the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
    /// Max parallel connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<i64>,
    /// The inline VolumeSource (`hostPath`, `nfs`, `persistentVolumeClaim`, …), kept free-form.
    #[serde(flatten)]
    pub volume_source: BTreeMap<String, Value>,
}

/// `spec.storage` of a BackupStorage.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Backend {
    /// `s3`, `gcs`, `azure`, `local` (no CRD enum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// S3 settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Spec>,
    /// GCS settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs: Option<GcsSpec>,
    /// Azure settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureSpec>,
    /// Local volume settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalSpec>,
}

/// `deletionPolicy` of a BackupStorage, Repository or Snapshot.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BackupStorageDeletionPolicy {
    /// Delete the CRs, keep the data.
    Delete,
    /// Also delete the backed up data.
    WipeOut,
}

/// Alias: Repository and Snapshot use the same `Delete`/`WipeOut` enum.
pub type DeletionPolicy = BackupStorageDeletionPolicy;

/// `BackupStorage.spec`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "storage.kubestash.com",
    version = "v1alpha1",
    kind = "BackupStorage",
    plural = "backupstorages",
    singular = "backupstorage",
    namespaced,
    status = "BackupStorageStatus",
    derive = "PartialEq",
    category = "kubestash",
    category = "appscode",
    category = "all",
    printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".spec.storage.provider"}"#,
    printcolumn = r#"{"name":"Default","type":"boolean","jsonPath":".spec.default"}"#,
    printcolumn = r#"{"name":"Deletion-Policy","type":"string","jsonPath":".spec.deletionPolicy"}"#,
    printcolumn = r#"{"name":"Total-Size","type":"string","jsonPath":".status.totalSize"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BackupStorageSpec {
    /// Backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Backend>,
    /// Namespaces allowed to use it (webhook default `from: Same`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_policy: Option<UsagePolicy>,
    /// Default BackupStorage of its namespace (at most one per namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<bool>,
    /// `Delete` (default) or `WipeOut`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Delete"))]
    pub deletion_policy: Option<BackupStorageDeletionPolicy>,
    /// Runtime settings of initializer/cleaner jobs (free-form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_object")]
    pub runtime_settings: Option<Value>,
}

/// Phase of a BackupStorage.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BackupStoragePhase {
    /// Initialized.
    Ready,
    /// Not initialized.
    NotReady,
}

/// A Repository stored in a BackupStorage.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryInfoStatus {
    /// Repository name.
    #[serde(default)]
    pub name: String,
    /// Repository namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Path in the storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Whether the CR is synced with the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced: Option<bool>,
    /// Sync error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `BackupStorage.status`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupStorageStatus {
    /// Phase (see [`crate::phase::backup_storage_phase`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackupStoragePhase>,
    /// Sum of repository sizes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_size: Option<String>,
    /// Repositories in this storage.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<RepositoryInfoStatus>,
    /// `BackendInitialized`, `BackendSecretFound`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

// ---------------------------------------------------------------------------------------------
// Repository
// ---------------------------------------------------------------------------------------------

/// `Repository.spec`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "storage.kubestash.com",
    version = "v1alpha1",
    kind = "Repository",
    plural = "repositories",
    singular = "repository",
    shortname = "repo",
    namespaced,
    status = "RepositoryStatus",
    derive = "PartialEq",
    category = "kubestash",
    category = "appscode",
    category = "all",
    printcolumn = r#"{"name":"Integrity","type":"boolean","jsonPath":".status.integrity"}"#,
    printcolumn = r#"{"name":"Snapshot-Count","type":"integer","jsonPath":".status.snapshotCount"}"#,
    printcolumn = r#"{"name":"Size","type":"string","jsonPath":".status.size"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Last-Successful-Backup","type":"date","jsonPath":".status.lastBackupTime"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RepositorySpec {
    /// Target the repository holds backups of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_ref: Option<TypedObjectReference>,
    /// The BackupStorage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_ref: Option<ObjectReference>,
    /// Directory under the storage prefix (immutable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `Delete` (default) or `WipeOut`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Delete"))]
    pub deletion_policy: Option<DeletionPolicy>,
    /// Secret with `RESTIC_PASSWORD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_secret: Option<ObjectReference>,
    /// Paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
}

/// Phase of a Repository.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RepositoryPhase {
    /// Not initialized.
    NotReady,
    /// Initialized.
    Ready,
}

/// A recent Snapshot of a Repository.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotInfo {
    /// Snapshot name.
    #[serde(default)]
    pub name: String,
    /// Phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<SnapshotPhase>,
    /// Session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Snapshot time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_time: Option<Time>,
}

/// `Repository.status`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryStatus {
    /// Phase (see [`crate::phase::repository_phase`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RepositoryPhase>,
    /// Last successful backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup_time: Option<Time>,
    /// Integrity of all snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity: Option<bool>,
    /// Number of Snapshot CRs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_count: Option<i32>,
    /// Size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Newest snapshots first (at most 5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_snapshots: Vec<SnapshotInfo>,
    /// `RepositoryInitialized`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Component restic repository paths, e.g. `repository/v1/frequent-backup/dump`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub component_paths: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Snapshot
// ---------------------------------------------------------------------------------------------

/// `FullBackup` or `IncrementalBackup`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SnapshotType {
    /// Full.
    FullBackup,
    /// Incremental.
    IncrementalBackup,
}

/// `Snapshot.spec`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "storage.kubestash.com",
    version = "v1alpha1",
    kind = "Snapshot",
    plural = "snapshots",
    singular = "snapshot",
    namespaced,
    status = "SnapshotStatus",
    derive = "PartialEq",
    category = "kubestash",
    category = "appscode",
    printcolumn = r#"{"name":"Repository","type":"string","jsonPath":".spec.repository"}"#,
    printcolumn = r#"{"name":"Session","type":"string","jsonPath":".spec.session"}"#,
    printcolumn = r#"{"name":"Snapshot-Time","type":"string","jsonPath":".status.snapshotTime"}"#,
    printcolumn = r#"{"name":"Deletion-Policy","type":"string","jsonPath":".spec.deletionPolicy"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotSpec {
    /// ULID, e.g. `01J84ARHWBR8PFEVENBRKEA9PD`.
    #[serde(
        rename = "snapshotID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub snapshot_id: Option<String>,
    /// `FullBackup` or `IncrementalBackup`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<SnapshotType>,
    /// Repository name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Session name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// BackupSession name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_session: Option<String>,
    /// Layout version (`v1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_ref: Option<TypedObjectReference>,
    /// `Delete` (default) or `WipeOut`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Delete"))]
    pub deletion_policy: Option<DeletionPolicy>,
    /// Paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
}

/// Phase of a Snapshot or one of its components.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SnapshotPhase {
    /// Not started.
    Pending,
    /// In progress.
    Running,
    /// Done.
    Succeeded,
    /// Failed.
    Failed,
}

/// Verification result of a Snapshot.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum VerificationStatus {
    /// Verified.
    Verified,
    /// Not verified.
    NotVerified,
    /// Verification failed.
    VerificationFailed,
}

/// restic stats of one backed up host path.
///
/// Accepts both shapes on input: the flat 2024 shape `{id, uploaded, hostPath, size, startTime,
/// endTime}` and the 2026 shape `{summary: {…}, progress: {…}}`; always serializes flat (the
/// tutorial's shape). `progress` is dropped. See docs/api.md.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", from = "ResticStatsWire")]
pub struct ResticStats {
    /// restic snapshot id (64 hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Bytes uploaded, KubeStash size format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded: Option<String>,
    /// Backed up path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    /// Size of the backed up data, KubeStash size format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Start time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// End time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Time>,
}

/// The `summary` of the 2026 resticStats shape (same fields as the flat shape).
#[derive(Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResticStatsSummary {
    /// restic snapshot id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Bytes uploaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded: Option<String>,
    /// Backed up path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    /// Size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Start time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// End time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Time>,
}

/// Input form of [`ResticStats`]: union of both shapes (also the CRD schema, so an API server
/// accepts and keeps either).
#[derive(Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResticStatsWire {
    /// restic snapshot id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Bytes uploaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded: Option<String>,
    /// Backed up path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    /// Size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Start time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// End time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Time>,
    /// 2026 shape: the summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<ResticStatsSummary>,
    /// 2026 shape: progress (free-form; dropped when converted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_object")]
    pub progress: Option<Value>,
}

impl From<ResticStatsWire> for ResticStats {
    fn from(w: ResticStatsWire) -> Self {
        let s = w.summary.unwrap_or_default();
        ResticStats {
            id: w.id.or(s.id),
            uploaded: w.uploaded.or(s.uploaded),
            host_path: w.host_path.or(s.host_path),
            size: w.size.or(s.size),
            start_time: w.start_time.or(s.start_time),
            end_time: w.end_time.or(s.end_time),
        }
    }
}

/// One backed up component of a Snapshot (ES: `dump`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Component {
    /// restic repository path, e.g. `repository/v1/frequent-backup/dump`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<SnapshotPhase>,
    /// Size of the component's restic repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// `restic check` result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity: Option<bool>,
    /// Error, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<Driver>,
    /// restic stats.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<ResticStatsWire>")]
    pub restic_stats: Vec<ResticStats>,
    /// Solr stats (free-form).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "free_object_list")]
    pub solr_stats: Vec<Value>,
    /// WAL-G stats (free-form).
    #[serde(rename = "walGStats", default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_object")]
    pub wal_g_stats: Option<Value>,
    /// Medusa stats (free-form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_object")]
    pub medusa_stats: Option<Value>,
    /// Volume snapshotter stats (free-form).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "free_object_list")]
    pub volume_snapshotter_stats: Vec<Value>,
    /// Log stats (free-form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_object")]
    pub log_stats: Option<Value>,
    /// ClickHouse stats (free-form).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "free_object_list")]
    pub click_house_stats: Vec<Value>,
    /// Neo4j stats (free-form).
    #[serde(rename = "neo4jStats", default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "free_object_list")]
    pub neo4j_stats: Vec<Value>,
}

/// `Snapshot.status`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotStatus {
    /// Phase (see [`crate::phase::snapshot_phase`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<SnapshotPhase>,
    /// Verification result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_status: Option<VerificationStatus>,
    /// Verification session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_session: Option<String>,
    /// When the snapshot was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_time: Option<Time>,
    /// Last update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
    /// Total size (KubeStash size format).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Integrity of all components.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity: Option<bool>,
    /// Conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Number of components.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_components: Option<i32>,
    /// Components by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub components: BTreeMap<String, Component>,
}

// ---------------------------------------------------------------------------------------------
// RetentionPolicy
// ---------------------------------------------------------------------------------------------

/// How many successful Snapshots to keep.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SuccessfulSnapshotsKeepPolicy {
    /// Keep the last N.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<i32>,
    /// Keep one per hour for N hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hourly: Option<i32>,
    /// Keep one per day for N days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily: Option<i32>,
    /// Keep one per week for N weeks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekly: Option<i32>,
    /// Keep one per month for N months.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly: Option<i32>,
    /// Keep one per year for N years.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yearly: Option<i32>,
}

/// How many failed Snapshots to keep.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailedSnapshotsKeepPolicy {
    /// Keep the last N failed (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 1))]
    pub last: Option<i32>,
}

/// `RetentionPolicy.spec`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "storage.kubestash.com",
    version = "v1alpha1",
    kind = "RetentionPolicy",
    plural = "retentionpolicies",
    singular = "retentionpolicy",
    namespaced,
    derive = "PartialEq",
    category = "kubestash",
    category = "appscode",
    printcolumn = r#"{"name":"Max-Retention-Period","type":"string","jsonPath":".spec.maxRetentionPeriod"}"#,
    printcolumn = r#"{"name":"Default","type":"boolean","jsonPath":".spec.default"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RetentionPolicySpec {
    /// Delete Snapshots older than this (`y mo w d h m`, e.g. `2mo`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retention_period: Option<String>,
    /// Namespaces allowed to use it (webhook default `from: Same`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_policy: Option<UsagePolicy>,
    /// Successful snapshots to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successful_snapshots: Option<SuccessfulSnapshotsKeepPolicy>,
    /// Failed snapshots to keep (webhook default `{last: 1}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_snapshots: Option<FailedSnapshotsKeepPolicy>,
    /// Default RetentionPolicy of its namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<bool>,
}
