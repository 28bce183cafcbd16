//! `core.kubestash.com/v1alpha1`: BackupConfiguration, BackupSession, BackupBlueprint,
//! RestoreSession, HookTemplate, BackupBatch, BackupVerifier, BackupVerificationSession.
//!
//! Pod templates, volumes, volume sources, runtime settings and raw `params` are kept as
//! free-form JSON (`x-kubernetes-preserve-unknown-fields`); `EnvVar`/`VolumeMount` use the
//! k8s-openapi types. See docs/api.md.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, VolumeMount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::shared::{
    free_object, free_object_list, Condition, ObjectReference, ParameterDefinition, TypeMeta,
    TypedLocalObjectReference, TypedObjectReference, UsagePolicy,
};
use crate::storage::{BackupStoragePhase, RepositoryPhase, SnapshotPhase};

// ---------------------------------------------------------------------------------------------
// Shared pieces of the core group
// ---------------------------------------------------------------------------------------------

/// A backend of a BackupConfiguration: a BackupStorage plus a RetentionPolicy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackendReference {
    /// Backend name, referenced by `repositories[].backend` (empty for a defaulted backend).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The BackupStorage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_ref: Option<ObjectReference>,
    /// The RetentionPolicy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_policy: Option<ObjectReference>,
}

/// `concurrencyPolicy` of the trigger CronJob.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConcurrencyPolicy {
    /// Allow concurrent runs.
    Allow,
    /// Skip a run while the previous one is running.
    Forbid,
    /// Replace the running one.
    Replace,
}

/// Job template of the trigger CronJob (`scheduler.jobTemplate`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobTemplate {
    /// Job parallelism.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<i32>,
    /// Job completions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completions: Option<i32>,
    /// Job active deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<i64>,
    /// Job backoff limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_limit: Option<i32>,
    /// Offshoot `PodTemplateSpec` (`{controller, metadata, spec}`), kept free-form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_object")]
    pub template: Option<Value>,
    /// TTL of finished Jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds_after_finished: Option<i32>,
    /// Job completion mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_mode: Option<String>,
    /// Whether the Job is suspended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
}

/// `scheduler`: configuration of the trigger CronJob of a session.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchedulerSpec {
    /// Cron schedule.
    #[serde(default)]
    pub schedule: String,
    /// Trigger Job template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_template: Option<JobTemplate>,
    /// CronJob starting deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_deadline_seconds: Option<i64>,
    /// CronJob concurrency policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_policy: Option<ConcurrencyPolicy>,
    /// CronJob suspension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// Successful trigger Jobs to keep (doc default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successful_jobs_history_limit: Option<i32>,
    /// Failed trigger Jobs to keep (doc default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_jobs_history_limit: Option<i32>,
}

/// When a hook runs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum HookExecutionPolicy {
    /// Always.
    Always,
    /// Only when the backup/restore succeeded.
    OnSuccess,
    /// Only when it failed.
    OnFailure,
}

/// A hook to run before/after a backup or restore.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HookInfo {
    /// Hook name.
    #[serde(default)]
    pub name: String,
    /// The HookTemplate to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_template: Option<ObjectReference>,
    /// Parameters for the HookTemplate (free map).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_object")]
    pub params: Option<Value>,
    /// Retries (min 0, default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0), extend("default" = 0))]
    pub max_retry: Option<i32>,
    /// Timeout (Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// `Always` (default), `OnSuccess`, `OnFailure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Always"))]
    pub execution_policy: Option<HookExecutionPolicy>,
    /// Extra environment variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variables: Vec<EnvVar>,
    /// Extra volumes (core `Volume`, free-form).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "free_object_list")]
    pub volumes: Vec<Value>,
    /// Extra volume mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    /// Runtime settings of the hook executor (free-form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_object")]
    pub runtime_settings: Option<Value>,
}

/// Backup hooks of a session.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupHooks {
    /// Hooks before the backup.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_backup: Vec<HookInfo>,
    /// Hooks after the backup.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_backup: Vec<HookInfo>,
}

/// `retryConfig` of a session.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryConfig {
    /// Retries of a failed BackupSession (default 1, minimum 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1), extend("default" = 1))]
    pub max_retry: Option<i32>,
    /// Delay before a retry (Go duration, e.g. `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<String>,
}

/// Settings common to a backup session (`SessionConfig`, inlined into [`Session`]).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionConfig {
    /// Session name.
    #[serde(default)]
    pub name: String,
    /// Trigger CronJob configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<SchedulerSpec>,
    /// Pre/post backup hooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<BackupHooks>,
    /// Retry policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_config: Option<RetryConfig>,
    /// Backup timeout (Go duration); none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_timeout: Option<String>,
    /// BackupSessions to keep per session (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 1))]
    pub session_history_limit: Option<i32>,
}

/// A volume an addon task receives (`addonVolumes[]`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddonVolumeInfo {
    /// Volume name (as in the Addon's `volumeTemplate`).
    #[serde(default)]
    pub name: String,
    /// Volume source (core VolumeSource + `volumeClaimTemplate`, free-form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_object")]
    pub source: Option<Value>,
}

/// Target volumes of a task.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetVolumeInfo {
    /// Volumes (free-form).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "free_object_list")]
    pub volumes: Vec<Value>,
    /// Volume mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    /// PVC templates (free-form).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "free_object_list")]
    pub volume_claim_templates: Vec<Value>,
}

/// A task of an Addon to run.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskReference {
    /// Task name (e.g. `logical-backup`).
    #[serde(default)]
    pub name: String,
    /// Extra environment variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variables: Vec<EnvVar>,
    /// Task parameters (free map, e.g. `{args: --ignoreType=template,settings}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_object")]
    pub params: Option<Value>,
    /// Target volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_volumes: Option<TargetVolumeInfo>,
    /// Overrides of the Addon's volumes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addon_volumes: Vec<AddonVolumeInfo>,
}

/// The Addon and tasks a session runs (`AddonInfo`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddonInfo {
    /// Addon name (cluster-scoped).
    #[serde(default)]
    pub name: String,
    /// Tasks to run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<TaskReference>,
    /// Container runtime settings of the executor (free-form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_object")]
    pub container_runtime_settings: Option<Value>,
    /// Pod template of the executor Job (free-form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_object")]
    pub job_template: Option<Value>,
}

/// What happens to a Repository when its BackupConfiguration is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RepositoryDeletionPolicy {
    /// Delete the Repository and Snapshot CRs, keep the data.
    Delete,
    /// Also delete the backed up data.
    WipeOut,
    /// Keep the Repository CR.
    Retain,
}

/// A repository of a session (`RepositoryInfo`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryInfo {
    /// Repository name.
    #[serde(default)]
    pub name: String,
    /// Backend name in `spec.backends` (empty = the default backend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// BackupVerifier to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_verifier: Option<ObjectReference>,
    /// Directory under the storage prefix (= Repository `spec.path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<String>,
    /// Secret with `RESTIC_PASSWORD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_secret: Option<ObjectReference>,
    /// `Delete`, `WipeOut` or `Retain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<RepositoryDeletionPolicy>,
}

/// A backup session of a BackupConfiguration: [`SessionConfig`] + `addon` + `repositories`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    /// Session settings (inlined).
    #[serde(flatten)]
    pub config: SessionConfig,
    /// The Addon to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addon: Option<AddonInfo>,
    /// Repositories to back up into.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<RepositoryInfo>,
}

/// Phase of a backup invoker (BackupConfiguration, BackupBatch).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BackupInvokerPhase {
    /// Not every prerequisite is ready.
    NotReady,
    /// Ready to back up.
    Ready,
    /// Validation failed.
    Invalid,
}

/// Status of the BackupStorage of a backend.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageStatus {
    /// The BackupStorage.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub ref_: Option<ObjectReference>,
    /// Its phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackupStoragePhase>,
    /// Why it is not ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Status of the RetentionPolicy of a backend.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionPolicyStatus {
    /// The RetentionPolicy.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub ref_: Option<ObjectReference>,
    /// Whether it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found: Option<bool>,
    /// Why it was not found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Status of a backend.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackendStatus {
    /// Backend name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Storage Ready and RetentionPolicy found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    /// Storage status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageStatus>,
    /// RetentionPolicy status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_policy: Option<RetentionPolicyStatus>,
}

/// Status of a Repository the invoker manages.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepoStatus {
    /// Repository name.
    #[serde(default)]
    pub name: String,
    /// Repository phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RepositoryPhase>,
    /// Why it is not ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Whether a BackupVerifier is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_configured: Option<bool>,
}

/// Whether a dependency (e.g. the Addon) exists.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceFoundStatus {
    /// API group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_group: Option<String>,
    /// Kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Whether it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found: Option<bool>,
}

/// Status of a session of an invoker.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionStatus {
    /// Session name.
    #[serde(default)]
    pub name: String,
    /// Next scheduled run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule: Option<String>,
    /// `SchedulerEnsured`, `InitialBackupTriggered`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

// ---------------------------------------------------------------------------------------------
// BackupConfiguration
// ---------------------------------------------------------------------------------------------

/// `BackupConfiguration.spec`: what to back up, where, and when.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "core.kubestash.com",
    version = "v1alpha1",
    kind = "BackupConfiguration",
    plural = "backupconfigurations",
    singular = "backupconfiguration",
    shortname = "bc",
    namespaced,
    status = "BackupConfigurationStatus",
    derive = "PartialEq",
    category = "kubestash",
    category = "appscode",
    category = "all",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Paused","type":"boolean","jsonPath":".spec.paused"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BackupConfigurationSpec {
    /// The object to back up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TypedObjectReference>,
    /// Backends (defaulted from the default BackupStorage/RetentionPolicy when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<BackendReference>,
    /// Backup sessions (required, non-empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sessions: Vec<Session>,
    /// Pauses scheduling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
}

/// `BackupConfiguration.status`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupConfigurationStatus {
    /// `NotReady`, `Ready`, `Invalid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackupInvokerPhase>,
    /// Whether the target exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_found: Option<bool>,
    /// Backend statuses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<BackendStatus>,
    /// Repository statuses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<RepoStatus>,
    /// Dependencies (the Addon).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<ResourceFoundStatus>,
    /// Session statuses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sessions: Vec<SessionStatus>,
    /// `ValidationPassed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

// ---------------------------------------------------------------------------------------------
// BackupSession
// ---------------------------------------------------------------------------------------------

/// `BackupSession.spec` (immutable).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "core.kubestash.com",
    version = "v1alpha1",
    kind = "BackupSession",
    plural = "backupsessions",
    singular = "backupsession",
    namespaced,
    status = "BackupSessionStatus",
    derive = "PartialEq",
    category = "kubestash",
    category = "appscode",
    category = "all",
    printcolumn = r#"{"name":"Invoker-Type","type":"string","jsonPath":".spec.invoker.kind"}"#,
    printcolumn = r#"{"name":"Invoker-Name","type":"string","jsonPath":".spec.invoker.name"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Duration","type":"string","jsonPath":".status.duration"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BackupSessionSpec {
    /// The BackupConfiguration/BackupBatch that invoked this session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoker: Option<TypedLocalObjectReference>,
    /// Session name in the invoker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Retries left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_left: Option<i32>,
    /// Timeout (Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_timeout: Option<String>,
}

/// Phase of a BackupSession.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BackupSessionPhase {
    /// Not started.
    Pending,
    /// In progress.
    Running,
    /// Done.
    Succeeded,
    /// Failed.
    Failed,
    /// Skipped (prerequisites not satisfied).
    Skipped,
}

impl BackupSessionPhase {
    /// `IsCompleted`: Succeeded, Failed or Skipped.
    pub fn is_completed(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Skipped)
    }
}

/// A Snapshot a BackupSession produced.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionSnapshotStatus {
    /// Snapshot name.
    #[serde(default)]
    pub name: String,
    /// Snapshot phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<SnapshotPhase>,
    /// Target of the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_ref: Option<TypedObjectReference>,
    /// Repository name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
}

/// Phase of a hook execution.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum HookPhase {
    /// Succeeded.
    Succeeded,
    /// Failed.
    Failed,
    /// Not run yet.
    Pending,
}

/// Execution status of one hook.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HookExecutionStatus {
    /// Hook name.
    #[serde(default)]
    pub name: String,
    /// Hook phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<HookPhase>,
}

/// Hook statuses of a session.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HookStatus {
    /// Pre hooks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_hooks: Vec<HookExecutionStatus>,
    /// Post hooks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_hooks: Vec<HookExecutionStatus>,
}

/// Phase of applying a retention policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RetentionPolicyApplyPhase {
    /// Not applied yet.
    Pending,
    /// Applied.
    Applied,
    /// Failed.
    FailedToApply,
}

/// Result of applying a RetentionPolicy to a repository.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionPolicyApplyStatus {
    /// The RetentionPolicy.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub ref_: Option<ObjectReference>,
    /// Repository name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RetentionPolicyApplyPhase>,
    /// Error, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `BackupSession.status`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupSessionStatus {
    /// Phase (see [`crate::phase::backup_session_phase`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackupSessionPhase>,
    /// Duration (Go duration string, e.g. `22s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Deadline from `backupTimeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_deadline: Option<Time>,
    /// Number of Snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_snapshots: Option<i32>,
    /// Snapshots of this session.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<SessionSnapshotStatus>,
    /// Hook statuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<HookStatus>,
    /// Retention policy results (JSON key is singular).
    #[serde(
        rename = "retentionPolicy",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub retention_policies: Vec<RetentionPolicyApplyStatus>,
    /// Whether a retry session was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retried: Option<bool>,
    /// When the retry is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry: Option<Time>,
    /// Conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

// ---------------------------------------------------------------------------------------------
// BackupBlueprint
// ---------------------------------------------------------------------------------------------

/// `deletionPolicy` of a blueprint's generated BackupConfigurations.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BlueprintDeletionPolicy {
    /// Delete generated BackupConfigurations when the blueprint is deleted.
    OnDelete,
}

/// Template of the generated BackupConfiguration.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupConfigurationTemplate {
    /// Namespace of the generated BackupConfiguration (default: the blueprint's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Backends (may contain `${vars}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<BackendReference>,
    /// Sessions (may contain `${vars}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sessions: Vec<Session>,
    /// `OnDelete` or unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<BlueprintDeletionPolicy>,
}

/// `BackupBlueprint.spec`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "core.kubestash.com",
    version = "v1alpha1",
    kind = "BackupBlueprint",
    plural = "backupblueprints",
    singular = "backupblueprint",
    namespaced,
    derive = "PartialEq",
    category = "kubestash",
    category = "appscode",
    category = "all"
)]
#[serde(rename_all = "camelCase")]
pub struct BackupBlueprintSpec {
    /// The BackupConfiguration template (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_configuration_template: Option<BackupConfigurationTemplate>,
    /// Kinds to watch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<TypeMeta>,
    /// Namespaces allowed to use the blueprint (webhook default `from: Same`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_policy: Option<UsagePolicy>,
}

// ---------------------------------------------------------------------------------------------
// RestoreSession
// ---------------------------------------------------------------------------------------------

/// Point-in-time recovery target.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PitrSpec {
    /// Target time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_time: Option<Time>,
    /// Exclude a Snapshot taken exactly at `targetTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusive: Option<bool>,
}

/// Where to restore from.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreDataSource {
    /// Namespace of the Repository (default: the RestoreSession's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Repository name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Snapshot name or `latest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// Point-in-time recovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pitr: Option<PitrSpec>,
    /// Components to restore (empty = all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<String>,
    /// Secret with `RESTIC_PASSWORD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_secret: Option<ObjectReference>,
}

/// Restore hooks.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreHooks {
    /// Hooks before the restore.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_restore: Vec<HookInfo>,
    /// Hooks after the restore.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_restore: Vec<HookInfo>,
}

/// `RestoreSession.spec`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "core.kubestash.com",
    version = "v1alpha1",
    kind = "RestoreSession",
    plural = "restoresessions",
    singular = "restoresession",
    shortname = "restore",
    namespaced,
    status = "RestoreSessionStatus",
    derive = "PartialEq",
    category = "kubestash",
    category = "appscode",
    category = "all",
    printcolumn = r#"{"name":"Repository","type":"string","jsonPath":".spec.dataSource.repository"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Duration","type":"string","jsonPath":".status.duration"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RestoreSessionSpec {
    /// The object to restore into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TypedObjectReference>,
    /// Where to restore from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_source: Option<RestoreDataSource>,
    /// Addon and restore tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addon: Option<AddonInfo>,
    /// Restore hooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<RestoreHooks>,
    /// Timeout (Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_timeout: Option<String>,
    /// Manifest restore options (free-form; unused for logical restores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_object")]
    pub manifest_options: Option<Value>,
}

/// Phase of a RestoreSession or restored component.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RestorePhase {
    /// Not started.
    Pending,
    /// In progress.
    Running,
    /// Failed.
    Failed,
    /// Done.
    Succeeded,
    /// Validation failed.
    Invalid,
    /// Unknown outcome.
    Unknown,
}

/// Restore status of one component.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentRestoreStatus {
    /// Phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RestorePhase>,
    /// Progress (`secondsElapsed`, `percentDone`, …; free-form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_object")]
    pub progress: Option<Value>,
    /// Duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Error, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Hook statuses of a restore.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreHookStatus {
    /// Pre hooks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_hooks: Vec<HookExecutionStatus>,
    /// Post hooks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_hooks: Vec<HookExecutionStatus>,
}

/// `RestoreSession.status`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreSessionStatus {
    /// Phase (see [`crate::phase::restore_session_phase`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RestorePhase>,
    /// Whether the target exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_found: Option<bool>,
    /// Duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Deadline from `restoreTimeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_deadline: Option<Time>,
    /// Number of components to restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_components: Option<i32>,
    /// Per-component status.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub components: BTreeMap<String, ComponentRestoreStatus>,
    /// Hook statuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<RestoreHookStatus>,
    /// Dependencies (Snapshot, Addon).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<ResourceFoundStatus>,
    /// Backups paused during the restore.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paused_backups: Vec<TypedObjectReference>,
    /// Conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

// ---------------------------------------------------------------------------------------------
// HookTemplate
// ---------------------------------------------------------------------------------------------

/// Executor type of a HookTemplate.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum HookExecutorType {
    /// Run a Function in a Job.
    Function,
    /// Run in a pod matching a selector.
    Pod,
    /// Run in the operator.
    Operator,
}

/// Pod execution strategy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PodHookExecutionStrategy {
    /// One matching pod.
    ExecuteOnOne,
    /// Every matching pod.
    ExecuteOnAll,
}

/// Function executor of a hook.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunctionHookExecutorSpec {
    /// Function name.
    #[serde(default)]
    pub name: String,
    /// Environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Volume mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    /// Volumes (free-form).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "free_object_list")]
    pub volumes: Vec<Value>,
}

/// Pod executor of a hook.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodHookExecutorSpec {
    /// Selector `k=v,k2=v2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Owner reference (free-form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_object")]
    pub owner: Option<Value>,
    /// `ExecuteOnOne` (default) or `ExecuteOnAll`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "ExecuteOnOne"))]
    pub strategy: Option<PodHookExecutionStrategy>,
}

/// Hook executor.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HookExecutor {
    /// Executor type.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<HookExecutorType>,
    /// Function executor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionHookExecutorSpec>,
    /// Pod executor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodHookExecutorSpec>,
}

/// `HookTemplate.spec`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "core.kubestash.com",
    version = "v1alpha1",
    kind = "HookTemplate",
    plural = "hooktemplates",
    singular = "hooktemplate",
    namespaced,
    derive = "PartialEq",
    category = "kubestash",
    category = "appscode",
    category = "all",
    printcolumn = r#"{"name":"Executor","type":"string","jsonPath":".spec.executor.type"}"#,
    printcolumn = r#"{"name":"Timeout","type":"string","jsonPath":".spec.timeout"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct HookTemplateSpec {
    /// Namespaces allowed to use the template (default `from: Same`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_policy: Option<UsagePolicy>,
    /// Parameters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<ParameterDefinition>,
    /// Prober handler (`exec`/`httpGet`/`httpPost`/`tcpSocket`; free-form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_object")]
    pub action: Option<Value>,
    /// Executor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<HookExecutor>,
}

// ---------------------------------------------------------------------------------------------
// BackupBatch
// ---------------------------------------------------------------------------------------------

/// A target of a BackupBatch.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetReference {
    /// Target name within the batch.
    #[serde(default)]
    pub name: String,
    /// The object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_ref: Option<TypedObjectReference>,
}

/// Per-target settings of a batch session.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchSessionTarget {
    /// Target name.
    #[serde(default)]
    pub name: String,
    /// Addon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addon: Option<AddonInfo>,
    /// Repositories.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<RepositoryInfo>,
}

/// A session of a BackupBatch.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchSession {
    /// Session settings (inlined).
    #[serde(flatten)]
    pub config: SessionConfig,
    /// Targets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<BatchSessionTarget>,
}

/// `BackupBatch.spec` (shape only; not used by the tutorial).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "core.kubestash.com",
    version = "v1alpha1",
    kind = "BackupBatch",
    plural = "backupbatches",
    singular = "backupbatch",
    namespaced,
    status = "BackupBatchStatus",
    derive = "PartialEq",
    category = "kubestash",
    category = "appscode",
    category = "all"
)]
#[serde(rename_all = "camelCase")]
pub struct BackupBatchSpec {
    /// Backends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<BackendReference>,
    /// Targets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetReference>,
    /// Sessions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sessions: Vec<BatchSession>,
    /// Pauses scheduling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
}

/// `BackupBatch.status`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupBatchStatus {
    /// Phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackupInvokerPhase>,
    /// Backend statuses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<BackendStatus>,
    /// Repository statuses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<RepoStatus>,
    /// Dependencies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<ResourceFoundStatus>,
    /// Session statuses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sessions: Vec<SessionStatus>,
    /// Target statuses (free-form).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "free_object_list")]
    pub targets: Vec<Value>,
    /// Conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

// ---------------------------------------------------------------------------------------------
// BackupVerifier / BackupVerificationSession
// ---------------------------------------------------------------------------------------------

/// Verification type.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum VerificationType {
    /// Restore only.
    RestoreOnly,
    /// Restore and run a query.
    Query,
    /// Restore and run a script.
    Script,
}

/// Restore options of a verifier.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreOption {
    /// Restore target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TypedObjectReference>,
    /// Addon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addon_info: Option<AddonInfo>,
}

/// Script verifier.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScriptVerifierSpec {
    /// Script path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
}

/// `BackupVerifier.spec` (shape only).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "core.kubestash.com",
    version = "v1alpha1",
    kind = "BackupVerifier",
    plural = "backupverifier",
    singular = "backupverifier",
    namespaced,
    derive = "PartialEq",
    category = "kubestash",
    category = "appscode",
    category = "all"
)]
#[serde(rename_all = "camelCase")]
pub struct BackupVerifierSpec {
    /// Restore options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_option: Option<RestoreOption>,
    /// Schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<SchedulerSpec>,
    /// Function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// Volumes (free-form).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "free_object_list")]
    pub volumes: Vec<Value>,
    /// Volume mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    /// Verification type.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<VerificationType>,
    /// Query (free-form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_object")]
    pub query: Option<Value>,
    /// Script.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<ScriptVerifierSpec>,
    /// Retry policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_config: Option<RetryConfig>,
    /// Sessions to keep (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 1))]
    pub session_history_limit: Option<i32>,
    /// Runtime settings (free-form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_object")]
    pub runtime_settings: Option<Value>,
}

/// Phase of a BackupVerificationSession.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BackupVerificationSessionPhase {
    /// Running.
    Running,
    /// Succeeded.
    Succeeded,
    /// Failed.
    Failed,
    /// Skipped.
    Skipped,
}

/// `BackupVerificationSession.spec` (shape only).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "core.kubestash.com",
    version = "v1alpha1",
    kind = "BackupVerificationSession",
    plural = "backupverificationsession",
    singular = "backupverificationsession",
    namespaced,
    status = "BackupVerificationSessionStatus",
    derive = "PartialEq",
    category = "kubestash",
    category = "appscode",
    category = "all",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Duration","type":"string","jsonPath":".status.duration"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BackupVerificationSessionSpec {
    /// Invoker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoker: Option<TypedLocalObjectReference>,
    /// Session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// Retries left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_left: Option<i32>,
}

/// `BackupVerificationSession.status`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupVerificationSessionStatus {
    /// Phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackupVerificationSessionPhase>,
    /// Duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retried: Option<bool>,
    /// Conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
