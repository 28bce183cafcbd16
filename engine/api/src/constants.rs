//! Names KubeStash uses on the wire: groups, annotations, labels, finalizer, condition types,
//! reasons and messages (spec §1–§5, `kubestash/apimachinery:apis/constant.go`).

/// `core.kubestash.com`.
pub const GROUP_CORE: &str = "core.kubestash.com";
/// `storage.kubestash.com`.
pub const GROUP_STORAGE: &str = "storage.kubestash.com";
/// `addons.kubestash.com`.
pub const GROUP_ADDONS: &str = "addons.kubestash.com";
/// API version of every KubeStash group.
pub const VERSION: &str = "v1alpha1";
/// KubeDB group.
pub const GROUP_KUBEDB: &str = "kubedb.com";
/// AppBinding group.
pub const GROUP_APPCATALOG: &str = "appcatalog.appscode.com";

/// Finalizer on BackupConfiguration, BackupSession, Snapshot, … .
pub const FINALIZER_CLEANUP: &str = "kubestash.com/cleanup";

/// Auto-backup annotations (spec §2.1).
pub mod annotations {
    /// BackupBlueprint name (required).
    pub const BLUEPRINT_NAME: &str = "blueprint.kubestash.com/name";
    /// BackupBlueprint namespace (required).
    pub const BLUEPRINT_NAMESPACE: &str = "blueprint.kubestash.com/namespace";
    /// Comma-separated subset of blueprint sessions.
    pub const BLUEPRINT_SESSION_NAMES: &str = "blueprint.kubestash.com/session-names";
    /// Pre-2024-03 name of [`BLUEPRINT_SESSION_NAMES`].
    pub const BLUEPRINT_SESSIONS_LEGACY: &str = "blueprint.kubestash.com/sessions";
    /// Prefix of template variables: `variables.kubestash.com/<var>`.
    pub const VARIABLES_PREFIX: &str = "variables.kubestash.com/";
    /// Marks the object being restored.
    pub const RESTORE_BENEFICIARY: &str = "restoresession.kubestash.com/beneficiary";
    /// kstash's own, on a Snapshot: documents (items) the addon reported backing up.
    pub const SNAPSHOT_DOCUMENTS: &str = "kstash.io/documents";
    /// kstash's own, on a Snapshot: bytes the addon's output streams carried.
    pub const SNAPSHOT_STREAM_BYTES: &str = "kstash.io/stream-bytes";
    /// kstash's own, on a Snapshot: the addon's per-part counts (`report.part`), as JSON
    /// `{"<part>": {"items": N, "bytes": N}}`, e.g. a Redis addon's `db0`, `db1`.
    pub const SNAPSHOT_PARTS: &str = "kstash.io/parts";
    /// On a Secret: the other namespaces (comma-separated names, or `*` for all) whose
    /// BackupConfigurations, Repositories and RestoreSessions may use it as their encryption
    /// secret. Without it a Secret serves its own namespace only.
    pub const SECRET_ALLOWED_NAMESPACES: &str = "kstash.io/allowed-namespaces";
    /// kstash's own, on a BackupSession or RestoreSession: the identity of the operator
    /// replica that ran (or runs) its task.
    pub const EXECUTED_BY: &str = "kstash.io/executed-by";
}

/// Labels (spec §2.2, §4, §5.1).
pub mod labels {
    /// `app.kubernetes.io/managed-by`.
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    /// Value of [`MANAGED_BY`].
    pub const MANAGED_BY_VALUE: &str = "kubestash.com";
    /// `app.kubernetes.io/component`.
    pub const COMPONENT: &str = "app.kubernetes.io/component";
    /// Component value of backup job pods.
    pub const COMPONENT_BACKUP: &str = "kubestash-backup";
    /// Component value of retention-policy job pods.
    pub const COMPONENT_RETENTION_POLICY: &str = "kubestash-retention-policy";
    /// Invoker name.
    pub const INVOKER_NAME: &str = "kubestash.com/invoker-name";
    /// Invoker namespace.
    pub const INVOKER_NAMESPACE: &str = "kubestash.com/invoker-namespace";
    /// Session name.
    pub const SESSION_NAME: &str = "kubestash.com/session-name";
    /// Snapshot: repository name.
    pub const REPO_NAME: &str = "kubestash.com/repo-name";
    /// Snapshot: target kind.
    pub const APP_REF_KIND: &str = "kubestash.com/app-ref-kind";
    /// Snapshot: target name.
    pub const APP_REF_NAME: &str = "kubestash.com/app-ref-name";
    /// Snapshot: target namespace.
    pub const APP_REF_NAMESPACE: &str = "kubestash.com/app-ref-namespace";
    /// Snapshot of a KubeDB target: database version (e.g. `8.15.0`).
    pub const KUBEDB_DB_VERSION: &str = "kubedb.com/db-version";
}

/// Elasticsearch logical-backup component name.
pub const COMPONENT_DUMP: &str = "dump";
/// Dashboard component name.
pub const COMPONENT_DASHBOARD: &str = "dashboard";
/// Repository layout version used in component paths.
pub const SNAPSHOT_VERSION_V1: &str = "v1";
/// Directory of restic repositories inside a Repository path.
pub const DIR_REPOSITORY: &str = "repository";
/// Directory of Snapshot YAML copies inside a Repository path.
pub const DIR_SNAPSHOTS: &str = "snapshots";
/// Backend metadata file at the storage prefix.
pub const FILE_BACKEND_METADATA: &str = "metadata.yaml";
/// Repository CR copy inside a Repository path.
pub const FILE_REPOSITORY: &str = "repository.yaml";
/// `snapshot: latest` in a RestoreSession.
pub const SNAPSHOT_LATEST: &str = "latest";
/// Prefix of retention-policy job names.
pub const PREFIX_RETENTION_POLICY: &str = "retentionpolicy";
/// Prefix of trigger CronJob names.
pub const PREFIX_TRIGGER: &str = "trigger";
/// Restic password key of an encryption Secret.
pub const RESTIC_PASSWORD: &str = "RESTIC_PASSWORD";

/// Condition types, reasons and messages.
pub mod conditions {
    // ----- shared -----
    /// Validation result (BackupConfiguration, RestoreSession).
    pub const TYPE_VALIDATION_PASSED: &str = "ValidationPassed";
    /// Reason: validation passed.
    pub const REASON_RESOURCE_VALIDATION_PASSED: &str = "ResourceValidationPassed";
    /// Reason: validation failed.
    pub const REASON_RESOURCE_VALIDATION_FAILED: &str = "ResourceValidationFailed";
    /// Message: validation passed.
    pub const MSG_VALIDATION_PASSED: &str = "Validation has been passed successfully.";
    /// Metrics pushed — the final step of sessions.
    pub const TYPE_METRICS_PUSHED: &str = "MetricsPushed";
    /// Reason: metrics pushed.
    pub const REASON_SUCCESSFULLY_PUSHED_METRICS: &str = "SuccessfullyPushedMetrics";
    /// Reason: metrics push failed.
    pub const REASON_FAILED_TO_PUSH_METRICS: &str = "FailedToPushMetrics";
    /// Message: metrics pushed.
    pub const MSG_METRICS_PUSHED: &str = "Metrics have been pushed successfully.";

    // ----- BackupConfiguration sessions[] -----
    /// Trigger CronJob ensured.
    pub const TYPE_SCHEDULER_ENSURED: &str = "SchedulerEnsured";
    /// Reason: scheduler ensured.
    pub const REASON_SCHEDULER_ENSURED: &str = "SchedulerEnsured";
    /// Reason: scheduler not ensured.
    pub const REASON_SCHEDULER_NOT_ENSURED: &str = "SchedulerNotEnsured";
    /// Message: scheduler ensured.
    pub const MSG_SCHEDULER_ENSURED: &str = "Scheduler has been ensured successfully.";
    /// Initial backup triggered.
    pub const TYPE_INITIAL_BACKUP_TRIGGERED: &str = "InitialBackupTriggered";
    /// Reason: initial backup triggered.
    pub const REASON_SUCCESSFULLY_TRIGGERED_INITIAL_BACKUP: &str =
        "SuccessfullyTriggeredInitialBackup";
    /// Reason: initial backup trigger failed.
    pub const REASON_FAILED_TO_TRIGGER_INITIAL_BACKUP: &str = "FailedToTriggerInitialBackup";
    /// Message: initial backup triggered.
    pub const MSG_INITIAL_BACKUP_TRIGGERED: &str =
        "Initial backup has been triggered successfully.";

    // ----- BackupSession -----
    /// Session skipped.
    pub const TYPE_BACKUP_SKIPPED: &str = "BackupSkipped";
    /// Reason: prerequisites not satisfied.
    pub const REASON_PREREQUISITES_NOT_SATISFIED: &str = "PreRequisitesNotSatisfied";
    /// Session history cleaned.
    pub const TYPE_SESSION_HISTORY_CLEANED: &str = "SessionHistoryCleaned";
    /// Reason: history cleaned.
    pub const REASON_SUCCESSFULLY_CLEANED_SESSION_HISTORY: &str =
        "SuccessfullyCleanedSessionHistory";
    /// Reason: history cleanup failed.
    pub const REASON_FAILED_TO_CLEAN_SESSION_HISTORY: &str = "FailedToCleanSessionHistory";
    /// Pre-backup hooks.
    pub const TYPE_PRE_BACKUP_HOOKS_EXECUTION_SUCCEEDED: &str = "PreBackupHooksExecutionSucceeded";
    /// Reason: pre-backup hooks succeeded.
    pub const REASON_SUCCESSFULLY_EXECUTED_PRE_BACKUP_HOOKS: &str =
        "SuccessfullyExecutedPreBackupHooks";
    /// Reason: pre-backup hooks failed.
    pub const REASON_FAILED_TO_EXECUTE_PRE_BACKUP_HOOKS: &str = "FailedToExecutePreBackupHooks";
    /// Post-backup hooks.
    pub const TYPE_POST_BACKUP_HOOKS_EXECUTION_SUCCEEDED: &str =
        "PostBackupHooksExecutionSucceeded";
    /// Reason: post-backup hooks succeeded.
    pub const REASON_SUCCESSFULLY_EXECUTED_POST_BACKUP_HOOKS: &str =
        "SuccessfullyExecutedPostBackupHooks";
    /// Reason: post-backup hooks failed.
    pub const REASON_FAILED_TO_EXECUTE_POST_BACKUP_HOOKS: &str = "FailedToExecutePostBackupHooks";
    /// Backup executor ensured.
    pub const TYPE_BACKUP_EXECUTOR_ENSURED: &str = "BackupExecutorEnsured";
    /// Reason: executor ensured.
    pub const REASON_SUCCESSFULLY_ENSURED_BACKUP_EXECUTOR: &str =
        "SuccessfullyEnsuredBackupExecutor";
    /// Reason: executor failed.
    pub const REASON_FAILED_TO_ENSURE_BACKUP_EXECUTOR: &str = "FailedToEnsureBackupExecutor";
    /// Message: executor ensured.
    pub const MSG_BACKUP_EXECUTOR_ENSURED: &str = "Backup Executor has been ensured successfully.";
    /// Retention-policy executor ensured.
    pub const TYPE_RETENTION_POLICY_EXECUTOR_ENSURED: &str = "RetentionPolicyExecutorEnsured";
    /// Reason: retention executor ensured.
    pub const REASON_SUCCESSFULLY_ENSURED_RETENTION_POLICY_EXECUTOR: &str =
        "SuccessfullyEnsuredRetentionPolicyExecutor";
    /// Reason: retention executor failed.
    pub const REASON_FAILED_TO_ENSURE_RETENTION_POLICY_EXECUTOR: &str =
        "FailedToEnsureRetentionPolicyExecutor";
    /// Snapshots ensured.
    pub const TYPE_SNAPSHOTS_ENSURED: &str = "SnapshotsEnsured";
    /// Reason: snapshots ensured.
    pub const REASON_SUCCESSFULLY_ENSURED_SNAPSHOTS: &str = "SuccessfullyEnsuredSnapshots";
    /// Reason: snapshots failed.
    pub const REASON_FAILED_TO_ENSURE_SNAPSHOTS: &str = "FailedToEnsureSnapshots";
    /// Message: snapshots ensured.
    pub const MSG_SNAPSHOTS_ENSURED: &str = "Snapshots have been ensured successfully.";
    /// Snapshot cleanup incomplete.
    pub const TYPE_SNAPSHOT_CLEANUP_INCOMPLETE: &str = "SnapshotCleanupIncomplete";
    /// Reason: cleanup terminated early.
    pub const REASON_SNAPSHOT_CLEANUP_TERMINATED_BEFORE_COMPLETION: &str =
        "SnapshotCleanupTerminatedBeforeCompletion";
    /// Pod pending too long (type and reason are the same string).
    pub const TYPE_POD_PENDING_TOO_LONG: &str = "PodHasBeenInPendingStateForLongerThanExpected";
    /// Reason of [`TYPE_POD_PENDING_TOO_LONG`].
    pub const REASON_POD_PENDING_TOO_LONG: &str = "PodHasBeenInPendingStateForLongerThanExpected";
    /// Summary message when a snapshot failed (`GetSummary`).
    pub const MSG_SNAPSHOTS_FAILED: &str = "one or more snapshots are failed";
    /// Summary message when a retention policy failed (`GetSummary`).
    pub const MSG_RETENTION_POLICIES_FAILED: &str =
        "one or more retention policies are failed to apply";

    // ----- RestoreSession -----
    /// Restore executor ensured.
    pub const TYPE_RESTORE_EXECUTOR_ENSURED: &str = "RestoreExecutorEnsured";
    /// Reason: restore executor ensured.
    pub const REASON_SUCCESSFULLY_ENSURED_RESTORE_EXECUTOR: &str =
        "SuccessfullyEnsuredRestoreExecutor";
    /// Reason: restore executor failed.
    pub const REASON_FAILED_TO_ENSURE_RESTORE_EXECUTOR: &str = "FailedToEnsureRestoreExecutor";
    /// Pre-restore hooks.
    pub const TYPE_PRE_RESTORE_HOOKS_EXECUTION_SUCCEEDED: &str =
        "PreRestoreHooksExecutionSucceeded";
    /// Post-restore hooks.
    pub const TYPE_POST_RESTORE_HOOKS_EXECUTION_SUCCEEDED: &str =
        "PostRestoreHooksExecutionSucceeded";
    /// Restore target found.
    pub const TYPE_RESTORE_TARGET_FOUND: &str = "RestoreTargetFound";
    /// Reason: could not check the target.
    pub const REASON_UNABLE_TO_CHECK_TARGET_AVAILABILITY: &str = "UnableToCheckTargetAvailability";
    /// Restore incomplete.
    pub const TYPE_RESTORE_INCOMPLETE: &str = "RestoreIncomplete";
    /// Reason: restore executor terminated early.
    pub const REASON_RESTORE_EXECUTOR_TERMINATED_BEFORE_COMPLETION: &str =
        "RestoreExecutorTerminatedBeforeCompletion";

    // ----- Snapshot -----
    /// Metadata uploaded.
    pub const TYPE_SNAPSHOT_METADATA_UPLOADED: &str = "SnapshotMetadataUploaded";
    /// Reason: metadata uploaded.
    pub const REASON_SUCCESSFULLY_UPLOADED_SNAPSHOT_METADATA: &str =
        "SuccessfullyUploadedSnapshotMetadata";
    /// Reason: metadata upload failed.
    pub const REASON_FAILED_TO_UPLOAD_SNAPSHOT_METADATA: &str = "FailedToUploadSnapshotMetadata";
    /// Message: metadata uploaded.
    pub const MSG_SNAPSHOT_METADATA_UPLOADED: &str = "Metadata uploaded to backend successfully";
    /// Recent snapshot list updated.
    pub const TYPE_RECENT_SNAPSHOT_LIST_UPDATED: &str = "RecentSnapshotListUpdated";
    /// Reason: list updated.
    pub const REASON_SUCCESSFULLY_UPDATED_RECENT_SNAPSHOT_LIST: &str =
        "SuccessfullyUpdatedRecentSnapshotList";
    /// Reason: list update failed.
    pub const REASON_FAILED_TO_UPDATE_RECENT_SNAPSHOT_LIST: &str =
        "FailedToUpdateRecentSnapshotList";
    /// Message: list updated.
    pub const MSG_RECENT_SNAPSHOT_LIST_UPDATED: &str = "Recent snapshot list updated successfully";
    /// Backup incomplete.
    pub const TYPE_BACKUP_INCOMPLETE: &str = "BackupIncomplete";
    /// Reason: backup executor terminated early.
    pub const REASON_BACKUP_EXECUTOR_TERMINATED_BEFORE_COMPLETION: &str =
        "BackupExecutorTerminatedBeforeCompletion";

    // ----- Repository -----
    /// Repository initialized.
    pub const TYPE_REPOSITORY_INITIALIZED: &str = "RepositoryInitialized";
    /// Reason: repository initialized.
    pub const REASON_REPOSITORY_INITIALIZATION_SUCCEEDED: &str =
        "RepositoryInitializationSucceeded";
    /// Reason: repository initialization failed.
    pub const REASON_REPOSITORY_INITIALIZATION_FAILED: &str = "RepositoryInitializationFailed";
    /// Message: repository initialized.
    pub const MSG_REPOSITORY_INITIALIZED: &str = "Successfully initialized repository";

    // ----- BackupStorage -----
    /// Backend initialized.
    pub const TYPE_BACKEND_INITIALIZED: &str = "BackendInitialized";
    /// Reason: backend initialized.
    pub const REASON_BACKEND_INITIALIZATION_SUCCEEDED: &str = "BackendInitializationSucceeded";
    /// Reason: backend initialization failed.
    pub const REASON_BACKEND_INITIALIZATION_FAILED: &str = "BackendInitializationFailed";
    /// Message: backend initialized.
    pub const MSG_BACKEND_INITIALIZED: &str = "Successfully initialized backend.";
    /// Backend secret found.
    pub const TYPE_BACKEND_SECRET_FOUND: &str = "BackendSecretFound";
    /// Reason: secret available.
    pub const REASON_BACKEND_SECRET_AVAILABLE: &str = "BackendSecretAvailable";
    /// Reason: secret missing.
    pub const REASON_BACKEND_SECRET_NOT_AVAILABLE: &str = "BackendSecretNotAvailable";
    /// Message: secret exists.
    pub const MSG_BACKEND_SECRET_FOUND: &str = "Backend secret exists.";

    // ----- BackupVerificationSession -----
    /// Verification skipped.
    pub const TYPE_BACKUP_VERIFICATION_SKIPPED: &str = "BackupVerificationSkipped";
    /// Reason: snapshot already verified.
    pub const REASON_SNAPSHOT_ALREADY_VERIFIED: &str = "SnapshotAlreadyVerified";
    /// Verification history cleaned.
    pub const TYPE_VERIFICATION_SESSION_HISTORY_CLEANED: &str = "VerificationSessionHistoryCleaned";
    /// Verification executor ensured.
    pub const TYPE_VERIFICATION_EXECUTOR_ENSURED: &str = "VerificationExecutorEnsured";
    /// Restore succeeded (verification).
    pub const TYPE_RESTORE_SUCCEEDED: &str = "RestoreSucceeded";
    /// Backup verified.
    pub const TYPE_BACKUP_VERIFIED: &str = "BackupVerified";
}
