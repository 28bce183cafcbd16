//! Reading the annotated target object: identity, auto-backup annotations, and the
//! `spec.target` of the generated BackupConfiguration.

use std::collections::BTreeMap;

use kstash_api::constants::{annotations, GROUP_APPCATALOG, GROUP_KUBEDB};
use kstash_api::shared::TypedObjectReference;
use serde_json::Value;

use crate::envsubst::Vars;
use crate::RenderError;

/// Identity of the annotated object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetInfo {
    /// API group (`""` for the core group).
    pub group: String,
    /// Kind, e.g. `Elasticsearch`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
    /// `spec.appRef` of an AppBinding, when present.
    pub app_ref: Option<TypedObjectReference>,
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

impl TargetInfo {
    /// Reads `apiVersion`, `kind`, `metadata.{name,namespace,annotations}` and, for an
    /// AppBinding, `spec.appRef`.
    pub fn from_object(obj: &Value) -> Result<Self, RenderError> {
        let field = |f: &str| RenderError::InvalidTarget { field: f.into() };
        let api_version = str_at(obj, &["apiVersion"]).ok_or_else(|| field("apiVersion"))?;
        let kind = str_at(obj, &["kind"]).ok_or_else(|| field("kind"))?;
        let name = str_at(obj, &["metadata", "name"]).ok_or_else(|| field("metadata.name"))?;
        let namespace =
            str_at(obj, &["metadata", "namespace"]).ok_or_else(|| field("metadata.namespace"))?;
        let group = api_version
            .rsplit_once('/')
            .map(|(g, _)| g)
            .unwrap_or("")
            .to_string();
        let annotations = obj
            .pointer("/metadata/annotations")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let app_ref = if kind == "AppBinding" && group == GROUP_APPCATALOG {
            obj.pointer("/spec/appRef")
                .and_then(|r| serde_json::from_value::<TypedObjectReference>(r.clone()).ok())
                .filter(|r| !r.name.is_empty())
        } else {
            None
        };
        Ok(TargetInfo {
            group,
            kind: kind.to_string(),
            name: name.to_string(),
            namespace: namespace.to_string(),
            annotations,
            app_ref,
        })
    }

    /// `<namespace>/<name>`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The kind the auto-backup controller sees, used in the BackupConfiguration name: KubeDB
    /// databases are seen through their AppBinding (same name), so `AppBinding`; any other
    /// object is seen as itself.
    pub fn source_kind(&self) -> &str {
        if self.group == GROUP_KUBEDB {
            "AppBinding"
        } else {
            &self.kind
        }
    }

    /// `spec.target` of the BackupConfiguration: the object itself (a KubeDB database gives
    /// `{apiGroup: kubedb.com, kind: Elasticsearch, name, namespace}`); an AppBinding with
    /// `spec.appRef` gives that reference (namespace defaulted to the AppBinding's).
    pub fn backup_target(&self) -> TypedObjectReference {
        if let Some(r) = &self.app_ref {
            let mut r = r.clone();
            if r.namespace.as_deref().unwrap_or("").is_empty() {
                r.namespace = Some(self.namespace.clone());
            }
            return r;
        }
        TypedObjectReference {
            api_group: Some(self.group.clone()).filter(|g| !g.is_empty()),
            kind: Some(self.kind.clone()),
            namespace: Some(self.namespace.clone()),
            name: self.name.clone(),
        }
    }
}

/// The auto-backup annotations of a target (spec §2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoBackupAnnotations {
    /// `blueprint.kubestash.com/name`.
    pub blueprint_name: String,
    /// `blueprint.kubestash.com/namespace`.
    pub blueprint_namespace: String,
    /// The session-names annotation used (new or legacy key) and its comma-separated items;
    /// `None` = every session of the blueprint.
    pub session_names: Option<(String, Vec<String>)>,
    /// `variables.kubestash.com/<var>` values by `<var>`.
    pub variables: Vars,
}

impl AutoBackupAnnotations {
    /// Whether `annotations` ask for auto-backup (carry `blueprint.kubestash.com/name`).
    pub fn requested(annotations: &BTreeMap<String, String>) -> bool {
        annotations.contains_key(annotations::BLUEPRINT_NAME)
    }

    /// Reads the annotations of `target`; name and namespace annotations are required.
    pub fn from_target(target: &TargetInfo) -> Result<Self, RenderError> {
        let a = &target.annotations;
        let required = |key: &str| {
            a.get(key)
                .filter(|v| !v.trim().is_empty())
                .map(|v| v.trim().to_string())
                .ok_or_else(|| RenderError::MissingAnnotation {
                    target: target.id(),
                    annotation: key.to_string(),
                })
        };
        let blueprint_name = required(annotations::BLUEPRINT_NAME)?;
        let blueprint_namespace = required(annotations::BLUEPRINT_NAMESPACE)?;
        let session_names = [
            annotations::BLUEPRINT_SESSION_NAMES,
            annotations::BLUEPRINT_SESSIONS_LEGACY,
        ]
        .iter()
        .find_map(|key| a.get(*key).map(|v| (key.to_string(), v)))
        .map(|(key, v)| {
            let items: Vec<String> = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            (key, items)
        })
        .filter(|(_, items)| !items.is_empty());
        let variables = a
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(annotations::VARIABLES_PREFIX)
                    .filter(|name| !name.is_empty())
                    .map(|name| (name.to_string(), v.clone()))
            })
            .collect();
        Ok(AutoBackupAnnotations {
            blueprint_name,
            blueprint_namespace,
            session_names,
            variables,
        })
    }
}
