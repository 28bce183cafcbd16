//! `addons.kubestash.com/v1alpha1`: Addon and Function (cluster-scoped).
//!
//! Extension: `Function.spec.module` references the WASM component kstash runs instead of the
//! container image (see docs/api.md); the container fields of KubeStash are kept.

use k8s_openapi::api::core::v1::{ContainerPort, VolumeDevice, VolumeMount};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::shared::{free_object, Driver, ParameterDefinition};

/// How a task is executed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum TaskExecutor {
    /// A Job.
    Job,
    /// A sidecar container.
    Sidecar,
    /// An ephemeral container.
    EphemeralContainer,
    /// Multi-level Job.
    MultiLevelJob,
}

/// A volume an Addon task needs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeTemplate {
    /// Volume name.
    #[serde(default)]
    pub name: String,
    /// What it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<String>,
    /// Volume source (free-form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_object")]
    pub source: Option<Value>,
}

/// A backup or restore task of an Addon.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    /// Task name, e.g. `logical-backup`.
    #[serde(default)]
    pub name: String,
    /// Function name, e.g. `elasticsearch-backup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// Driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<Driver>,
    /// Executor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<TaskExecutor>,
    /// Run once per session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub singleton: Option<bool>,
    /// Parameters with defaults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<ParameterDefinition>,
    /// Volumes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_template: Vec<VolumeTemplate>,
    /// Volume mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
}

/// `Addon.spec`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "addons.kubestash.com",
    version = "v1alpha1",
    kind = "Addon",
    plural = "addons",
    singular = "addon",
    derive = "PartialEq",
    category = "kubestash",
    category = "appscode",
    category = "all"
)]
#[serde(rename_all = "camelCase")]
pub struct AddonSpec {
    /// Backup tasks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backup_tasks: Vec<Task>,
    /// Restore tasks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restore_tasks: Vec<Task>,
}

impl AddonSpec {
    /// The backup task named `name`.
    pub fn backup_task(&self, name: &str) -> Option<&Task> {
        self.backup_tasks.iter().find(|t| t.name == name)
    }
    /// The restore task named `name`.
    pub fn restore_task(&self, name: &str) -> Option<&Task> {
        self.restore_tasks.iter().find(|t| t.name == name)
    }
}

/// kstash extension: the WASM component a Function runs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunctionModule {
    /// A file path, an `https://` URL or `builtin:<name>`.
    #[schemars(length(min = 1))]
    pub location: String,
    /// SHA-256 of the module bytes, 64 lowercase hex digits.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub sha256: String,
    /// Limits of each task run from this module (unset: the operator's defaults). Each is
    /// capped by the operator's settings: a value above its cap is refused, never lowered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<TaskLimits>,
}

/// kstash extension: what one task of a Function may use.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskLimits {
    /// Guest memory, a Kubernetes quantity (`512Mi`, `1Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// CPU time running guest code, a Go duration (`30m`, `2h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_time: Option<String>,
    /// Wall-clock time of the whole task, a Go duration (`6h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_clock: Option<String>,
    /// Bytes the task may write to its output streams (backup), a quantity (`2Ti`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_bytes: Option<String>,
    /// Bytes exchanged with the target, in and out together, a quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_bytes: Option<String>,
}

/// `Function.spec`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "addons.kubestash.com",
    version = "v1alpha1",
    kind = "Function",
    plural = "functions",
    singular = "function",
    shortname = "fn",
    derive = "PartialEq",
    category = "kubestash",
    category = "appscode",
    category = "all"
)]
#[serde(rename_all = "camelCase")]
pub struct FunctionSpec {
    /// Container image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Entrypoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Arguments (envsubst templates, e.g. `--es-args=${args:=}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    /// Volume mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    /// Volume devices.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_devices: Vec<VolumeDevice>,
    /// Container runtime settings (free-form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_object")]
    pub runtime_settings: Option<Value>,
    /// Available versions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub available_versions: Vec<String>,
    /// kstash extension: the WASM component to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<FunctionModule>,
}
