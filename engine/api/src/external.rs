//! External kinds: KubeDB `kubedb.com/v1 Elasticsearch`, `Redis` and `Postgres`, and
//! `appcatalog.appscode.com/v1alpha1 AppBinding`. Only the fields kstash uses are typed; every
//! other field is kept in a flattened map (`x-kubernetes-preserve-unknown-fields`).
//!
//! The engine itself reaches database objects of any kind through API discovery
//! (`DynamicObject`): these types exist so kstash's embedded control plane and `kstash crds`
//! (third-party CRDs, for clusters without KubeDB) serve the kinds of its shipped addons.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::shared::{free_object, TypedObjectReference};

/// `Elasticsearch.spec` (the fields the tutorial uses; the rest kept in `extra`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubedb.com",
    version = "v1",
    kind = "Elasticsearch",
    plural = "elasticsearches",
    singular = "elasticsearch",
    shortname = "es",
    namespaced,
    status = "ElasticsearchStatus",
    derive = "PartialEq",
    category = "datastore",
    category = "kubedb",
    category = "appscode",
    category = "all",
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".spec.version"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.phase"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ElasticsearchSpec {
    /// ElasticsearchVersion name, e.g. `xpack-8.15.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// TLS on the HTTP layer.
    #[serde(rename = "enableSSL", default, skip_serializing_if = "Option::is_none")]
    pub enable_ssl: Option<bool>,
    /// Number of nodes (combined topology).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// `Durable` or `Ephemeral`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_type: Option<String>,
    /// PVC spec (free-form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_object")]
    pub storage: Option<Value>,
    /// `Delete`, `Halt`, `WipeOut`, `DoNotTerminate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<String>,
    /// Every other field, kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// `Elasticsearch.status` (phase typed, the rest kept).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ElasticsearchStatus {
    /// `Provisioning`, `Ready`, `Critical`, `NotReady`, `Halted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Every other field.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// `Redis.spec` (KubeDB; the fields kstash reads, the rest kept in `extra`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubedb.com",
    version = "v1",
    kind = "Redis",
    plural = "redises",
    singular = "redis",
    shortname = "rd",
    namespaced,
    status = "DatabaseStatus",
    derive = "PartialEq",
    category = "datastore",
    category = "kubedb",
    category = "appscode",
    category = "all",
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".spec.version"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.phase"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RedisSpec {
    /// RedisVersion name, e.g. `7.2.4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `Standalone`, `Cluster` or `Sentinel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// `Delete`, `Halt`, `WipeOut`, `DoNotTerminate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<String>,
    /// Every other field, kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// `Postgres.spec` (KubeDB; the fields kstash reads, the rest kept in `extra`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubedb.com",
    version = "v1",
    kind = "Postgres",
    plural = "postgreses",
    singular = "postgres",
    shortname = "pg",
    namespaced,
    status = "DatabaseStatus",
    derive = "PartialEq",
    category = "datastore",
    category = "kubedb",
    category = "appscode",
    category = "all",
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".spec.version"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.phase"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PostgresSpec {
    /// PostgresVersion name, e.g. `16.1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `Delete`, `Halt`, `WipeOut`, `DoNotTerminate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<String>,
    /// Every other field, kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// The status of a KubeDB database object (phase typed, the rest kept).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseStatus {
    /// `Provisioning`, `Ready`, `Critical`, `NotReady`, `Halted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Every other field.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A service reference in an AppBinding `clientConfig`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceReference {
    /// URL scheme: `http`, `https`, `redis`, `postgres`, … (`http` when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// Service name (same namespace as the AppBinding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// URL path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Query string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

/// How to connect to the app.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientConfig {
    /// Full URL (takes precedence over `service`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Service reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceReference>,
    /// PEM CA bundle, base64 in JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
    /// Skip TLS verification.
    #[serde(
        rename = "insecureSkipTLSVerify",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub insecure_skip_tls_verify: Option<bool>,
    /// TLS server name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

/// Reference to the credentials Secret (`username`/`password`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretReference {
    /// Secret name.
    #[serde(default)]
    pub name: String,
    /// Other fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// `AppBinding.spec`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "appcatalog.appscode.com",
    version = "v1alpha1",
    kind = "AppBinding",
    plural = "appbindings",
    singular = "appbinding",
    shortname = "app",
    namespaced,
    derive = "PartialEq",
    category = "catalog",
    category = "appscode",
    category = "all",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".spec.version"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AppBindingSpec {
    /// The app this binding describes (for KubeDB: the database CR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_ref: Option<TypedObjectReference>,
    /// App type, e.g. `kubedb.com/elasticsearch`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// App version, e.g. `8.15.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Connection settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_config: Option<ClientConfig>,
    /// Credentials Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretReference>,
    /// Secret key transforms (free-form).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::shared::free_object_list")]
    pub secret_transforms: Vec<Value>,
    /// App parameters (free-form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_object")]
    pub parameters: Option<Value>,
    /// Every other field, kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}
