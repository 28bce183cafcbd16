//! Types shared by every KubeStash group (`kubestash/apimachinery:apis/types.go`,
//! `kmodules.xyz/client-go/api/v1`), plus the schema helpers used for free-form fields.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Reference to an object of any kind (`apiGroup`, `kind`, `namespace`, `name`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TypedObjectReference {
    /// API group of the referent (empty for the core group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_group: Option<String>,
    /// Kind of the referent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Namespace of the referent (defaults to the referrer's namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the referent.
    pub name: String,
}

/// Reference to an object in the same or another namespace (`namespace`, `name`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    /// Namespace of the referent (defaults to the referrer's namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the referent.
    pub name: String,
}

impl ObjectReference {
    /// The referent's namespace, falling back to `default_ns` when unset or empty.
    pub fn namespace_or<'a>(&'a self, default_ns: &'a str) -> &'a str {
        match self.namespace.as_deref() {
            Some(ns) if !ns.is_empty() => ns,
            _ => default_ns,
        }
    }
}

/// Reference to an object in the same namespace (`apiGroup`, `kind`, `name`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TypedLocalObjectReference {
    /// API group of the referent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_group: Option<String>,
    /// Kind of the referent.
    #[serde(default)]
    pub kind: String,
    /// Name of the referent.
    #[serde(default)]
    pub name: String,
}

/// `TypeMeta` (`apiVersion`, `kind`), used by `BackupBlueprint.spec.subjects`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TypeMeta {
    /// `group/version` of the subject kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Kind of the subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// Status of a condition (`True`, `False`, `Unknown`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not known yet.
    Unknown,
}

/// kmodules condition (`kmapi.Condition`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. `ValidationPassed`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// Last time the condition changed status.
    pub last_transition_time: Time,
    /// Generation of the object the condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Severity (`Error`, `Warning`, `Info`) of a `False` condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// One-word CamelCase reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Condition {
    /// Whether the condition is `True`.
    pub fn is_true(&self) -> bool {
        self.status == ConditionStatus::True
    }
    /// Whether the condition is `False`.
    pub fn is_false(&self) -> bool {
        self.status == ConditionStatus::False
    }
}

/// Condition lookups over a condition list (kmodules `cutil` helpers).
pub trait Conditions {
    /// The condition of type `t`, if present.
    fn find(&self, t: &str) -> Option<&Condition>;
    /// Whether a condition of type `t` exists.
    fn has(&self, t: &str) -> bool {
        self.find(t).is_some()
    }
    /// Whether the condition of type `t` exists and is `True`.
    fn is_true(&self, t: &str) -> bool {
        self.find(t).is_some_and(Condition::is_true)
    }
    /// Whether the condition of type `t` exists and is `False`.
    fn is_false(&self, t: &str) -> bool {
        self.find(t).is_some_and(Condition::is_false)
    }
}

impl Conditions for [Condition] {
    fn find(&self, t: &str) -> Option<&Condition> {
        self.iter().find(|c| c.type_ == t)
    }
}

impl Conditions for Vec<Condition> {
    fn find(&self, t: &str) -> Option<&Condition> {
        self.as_slice().find(t)
    }
}

/// kmodules `SetCondition`: replaces the condition of the same type, keeping its
/// `lastTransitionTime` when the status did not change; appends it otherwise.
pub fn set_condition(conds: &mut Vec<Condition>, mut new: Condition) {
    match conds.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            if old.status == new.status {
                new.last_transition_time = old.last_transition_time.clone();
            }
            *old = new;
        }
        None => conds.push(new),
    }
}

/// Which namespaces may use a shared resource.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum FromNamespaces {
    /// Every namespace.
    All,
    /// Namespaces whose labels match `selector`.
    Selector,
    /// Only the resource's own namespace.
    Same,
}

/// `usagePolicy.allowedNamespaces`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllowedNamespaces {
    /// `All`, `Selector` or `Same` (CRD default `Same`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Same"))]
    pub from: Option<FromNamespaces>,
    /// Namespace label selector, used when `from: Selector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// Usage policy of a shared resource (BackupStorage, RetentionPolicy, HookTemplate, BackupBlueprint).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsagePolicy {
    /// Namespaces allowed to use the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_namespaces: Option<AllowedNamespaces>,
}

impl UsagePolicy {
    /// The policy `{allowedNamespaces: {from: Same}}` that the webhooks default to.
    pub fn same() -> Self {
        Self::from(FromNamespaces::Same)
    }

    /// A policy with the given `from` and no selector.
    pub fn from(from: FromNamespaces) -> Self {
        UsagePolicy {
            allowed_namespaces: Some(AllowedNamespaces {
                from: Some(from),
                selector: None,
            }),
        }
    }

    /// The effective `from` value, if set.
    pub fn from_value(&self) -> Option<FromNamespaces> {
        self.allowed_namespaces.as_ref().and_then(|a| a.from)
    }

    /// KubeStash `UsageAllowed`: may an object in namespace `ns_name` (with labels `ns_labels`)
    /// use a resource living in `resource_ns`? `All` → yes; `Same` → same namespace;
    /// `Selector` → the selector matches the namespace's labels (invalid/missing selector → no).
    /// A missing `from` → no.
    pub fn allows(
        &self,
        resource_ns: &str,
        ns_name: &str,
        ns_labels: &BTreeMap<String, String>,
    ) -> bool {
        let Some(an) = &self.allowed_namespaces else {
            return false;
        };
        match an.from {
            Some(FromNamespaces::All) => true,
            Some(FromNamespaces::Same) => resource_ns == ns_name,
            Some(FromNamespaces::Selector) => an
                .selector
                .as_ref()
                .is_some_and(|s| selector_matches(s, ns_labels).unwrap_or(false)),
            None => false,
        }
    }
}

/// Matches a label selector against labels. `Err` for an invalid selector (unknown operator,
/// `In`/`NotIn` without values, `Exists`/`DoesNotExist` with values). An empty selector matches
/// everything.
pub fn selector_matches(
    sel: &LabelSelector,
    labels: &BTreeMap<String, String>,
) -> Result<bool, String> {
    if let Some(ml) = &sel.match_labels {
        for (k, v) in ml {
            if labels.get(k) != Some(v) {
                return Ok(false);
            }
        }
    }
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.as_deref().unwrap_or(&[]);
        let got = labels.get(&e.key);
        let ok = match e.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(format!(
                    "operator {} needs values for key {}",
                    e.operator, e.key
                ))
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(format!(
                    "operator {} takes no values for key {}",
                    e.operator, e.key
                ))
            }
            "In" => got.is_some_and(|g| values.contains(g)),
            "NotIn" => !got.is_some_and(|g| values.contains(g)),
            "Exists" => got.is_some(),
            "DoesNotExist" => got.is_none(),
            op => return Err(format!("unknown selector operator {op:?}")),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A parameter an Addon task or HookTemplate accepts.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParameterDefinition {
    /// Parameter name.
    pub name: String,
    /// What the parameter is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<String>,
    /// Whether the parameter must be given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
    /// Default value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// Backup driver of an Addon task / Snapshot component.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Driver {
    /// restic.
    Restic,
    /// WAL-G.
    WalG,
    /// CSI volume snapshots.
    VolumeSnapshotter,
    /// Solr backup API.
    Solr,
    /// Cassandra Medusa.
    Medusa,
    /// clickhouse-backup.
    ClickHouseBackup,
    /// neo4j-admin.
    Neo4jAdmin,
}

/// Schema of a free-form object: `{type: object, x-kubernetes-preserve-unknown-fields: true}`.
/// Used for pod templates, volumes, runtime settings and raw `params` (see docs/api.md).
pub fn free_object(_: &mut SchemaGenerator) -> Schema {
    Schema::try_from(json!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    }))
    .expect("static schema")
}

/// Schema of a list of free-form objects.
pub fn free_object_list(_: &mut SchemaGenerator) -> Schema {
    Schema::try_from(json!({
        "type": "array",
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
    }))
    .expect("static schema")
}

/// A free-form JSON value (object) kept verbatim.
pub type FreeObject = Value;
