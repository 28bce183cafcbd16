//! Renders a BackupBlueprint into a BackupConfiguration for an annotated target (spec §2).
//!
//! Pure: the caller supplies the target object (any kind, as JSON), the BackupBlueprint and the
//! labels of the namespaces involved; [`render`] returns the BackupConfiguration or a
//! [`RenderError`] that names the annotation, variable, field or policy at fault.
//! See `docs/blueprint-rendering.md`.

pub mod envsubst;
mod target;

use std::collections::BTreeMap;

use kstash_api::constants::{annotations, labels};
use kstash_api::core::{BackendReference, BackupBlueprint, BackupConfiguration, Session};
use kstash_api::names;
use kstash_api::shared::{FromNamespaces, TypedObjectReference, UsagePolicy};
use serde_json::Value;

pub use envsubst::{substitute, SubstError, Vars};
pub use target::{AutoBackupAnnotations, TargetInfo};

/// Labels of namespaces by name (used for `usagePolicy` `from: Selector`).
pub type NamespaceLabels = BTreeMap<String, BTreeMap<String, String>>;

/// Why a BackupConfiguration cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The target object lacks a field the renderer needs.
    #[error("target: {field} is missing or not a string")]
    InvalidTarget {
        /// JSON path of the field, e.g. `metadata.name`.
        field: String,
    },
    /// A required annotation is missing on the target.
    #[error("target {target}: annotation {annotation} is required")]
    MissingAnnotation {
        /// `<namespace>/<name>` of the target.
        target: String,
        /// The annotation key.
        annotation: String,
    },
    /// The blueprint given is not the one the annotations name.
    #[error("target {target} names BackupBlueprint {wanted} (annotations {name_annotation}, {namespace_annotation}) but {given} was given")]
    BlueprintMismatch {
        /// `<namespace>/<name>` of the target.
        target: String,
        /// `<namespace>/<name>` from the annotations.
        wanted: String,
        /// `<namespace>/<name>` of the blueprint supplied.
        given: String,
        /// `blueprint.kubestash.com/name`.
        name_annotation: String,
        /// `blueprint.kubestash.com/namespace`.
        namespace_annotation: String,
    },
    /// The blueprint has no `spec.backupConfigurationTemplate`.
    #[error("BackupBlueprint {blueprint}: spec.backupConfigurationTemplate is required")]
    MissingTemplate {
        /// `<namespace>/<name>` of the blueprint.
        blueprint: String,
    },
    /// The session-names annotation names a session the blueprint does not have.
    #[error("annotation {annotation} names session {session:?}, which BackupBlueprint {blueprint} does not define (sessions: {available})")]
    UnknownSession {
        /// The annotation key used.
        annotation: String,
        /// The unknown session name.
        session: String,
        /// `<namespace>/<name>` of the blueprint.
        blueprint: String,
        /// Comma-separated sessions of the blueprint.
        available: String,
    },
    /// No session left to render.
    #[error("BackupBlueprint {blueprint}: no session selected (spec.backupConfigurationTemplate.sessions is empty)")]
    NoSessions {
        /// `<namespace>/<name>` of the blueprint.
        blueprint: String,
    },
    /// The blueprint's usage policy does not allow the target's namespace.
    #[error("BackupBlueprint {blueprint}: usagePolicy (allowedNamespaces.from: {policy}) does not allow namespace {namespace:?}")]
    UsagePolicyRefused {
        /// `<namespace>/<name>` of the blueprint.
        blueprint: String,
        /// The `from` value (`Same`, `Selector`, …) with the selector when relevant.
        policy: String,
        /// The target's namespace.
        namespace: String,
    },
    /// A `${var}` without value and without default.
    #[error("variable {variable:?} used in {field} has no value: set annotation {annotation} on the target")]
    MissingVariable {
        /// Variable name.
        variable: String,
        /// The annotation that would supply it (`variables.kubestash.com/<var>`).
        annotation: String,
        /// Template field where it is used.
        field: String,
    },
    /// Any other substitution error in a template field.
    #[error("{field}: {source}")]
    Substitution {
        /// Template field.
        field: String,
        /// The error.
        source: SubstError,
    },
    /// The substituted template does not fit the BackupConfiguration types.
    #[error(
        "BackupBlueprint {blueprint}: template does not form a valid BackupConfiguration: {reason}"
    )]
    InvalidTemplate {
        /// `<namespace>/<name>` of the blueprint.
        blueprint: String,
        /// Deserialisation error.
        reason: String,
    },
}

/// Renders the BackupConfiguration for `target` (any Kubernetes object as JSON) from
/// `blueprint`, with `namespace_labels` for `from: Selector` usage policies (a namespace
/// missing from the map has no labels).
pub fn render(
    target: &Value,
    blueprint: &BackupBlueprint,
    namespace_labels: &NamespaceLabels,
) -> Result<BackupConfiguration, RenderError> {
    let info = TargetInfo::from_object(target)?;
    let ann = AutoBackupAnnotations::from_target(&info)?;
    let bp_name = blueprint.metadata.name.clone().unwrap_or_default();
    let bp_ns = blueprint.metadata.namespace.clone().unwrap_or_default();
    let bp_id = format!("{bp_ns}/{bp_name}");
    if ann.blueprint_name != bp_name || ann.blueprint_namespace != bp_ns {
        return Err(RenderError::BlueprintMismatch {
            target: info.id(),
            wanted: format!("{}/{}", ann.blueprint_namespace, ann.blueprint_name),
            given: bp_id,
            name_annotation: annotations::BLUEPRINT_NAME.into(),
            namespace_annotation: annotations::BLUEPRINT_NAMESPACE.into(),
        });
    }
    check_usage_policy(blueprint, &bp_id, &bp_ns, &info.namespace, namespace_labels)?;
    let template = blueprint
        .spec
        .backup_configuration_template
        .as_ref()
        .ok_or_else(|| RenderError::MissingTemplate {
            blueprint: bp_id.clone(),
        })?;
    let sessions = select_sessions(&template.sessions, &ann, &bp_id)?;

    let backends_json = to_json(&template.backends);
    let backends_json = substitute_tree(backends_json, &ann.variables, "spec.backends")?;
    let sessions_json = to_json(&sessions);
    let sessions_json = substitute_tree(sessions_json, &ann.variables, "spec.sessions")?;
    let invalid = |e: serde_json::Error| RenderError::InvalidTemplate {
        blueprint: bp_id.clone(),
        reason: e.to_string(),
    };
    let backends: Vec<BackendReference> = serde_json::from_value(backends_json).map_err(invalid)?;
    let mut sessions: Vec<Session> = serde_json::from_value(sessions_json).map_err(invalid)?;
    for s in &mut sessions {
        materialize_session_defaults(s);
    }

    // The template namespace may use variables too (e.g. `${namespace}`).
    let template_ns = match template.namespace.as_deref() {
        Some(ns) => substitute_tree(
            Value::String(ns.to_string()),
            &ann.variables,
            "spec.backupConfigurationTemplate.namespace",
        )?
        .as_str()
        .unwrap_or_default()
        .to_string(),
        None => String::new(),
    };
    let bc_namespace = if template_ns.is_empty() {
        bp_ns.clone()
    } else {
        template_ns
    };
    let name = names::auto_backup_config_name(
        info.source_kind(),
        &info.name,
        &info.namespace,
        &bc_namespace,
    );
    let mut bc = BackupConfiguration::new(
        &name,
        kstash_api::core::BackupConfigurationSpec {
            target: Some(info.backup_target()),
            backends,
            sessions,
            paused: None,
        },
    );
    bc.metadata.namespace = Some(bc_namespace);
    let mut l = blueprint.metadata.labels.clone().unwrap_or_default();
    l.insert(labels::MANAGED_BY.into(), labels::MANAGED_BY_VALUE.into());
    l.insert(labels::INVOKER_NAME.into(), names::label_value(&bp_name));
    l.insert(labels::INVOKER_NAMESPACE.into(), names::label_value(&bp_ns));
    bc.metadata.labels = Some(l);
    Ok(bc)
}

/// Materialises the defaults the tutorial's stored BackupConfiguration shows (spec §1.2):
/// `sessionHistoryLimit: 1` (CRD default) and, when a scheduler is set,
/// `scheduler.jobTemplate.template: {controller: {}, metadata: {}, spec: {resources: {}}}`
/// (Go's serialisation of the zero-value offshoot PodTemplateSpec). Idempotent; existing values
/// are kept.
pub fn materialize_session_defaults(session: &mut Session) {
    if session.config.session_history_limit.is_none() {
        session.config.session_history_limit = Some(1);
    }
    if let Some(sched) = session.config.scheduler.as_mut() {
        let jt = sched.job_template.get_or_insert_with(Default::default);
        let tpl = jt
            .template
            .get_or_insert_with(|| Value::Object(Default::default()));
        if let Value::Object(m) = tpl {
            m.entry("controller")
                .or_insert_with(|| Value::Object(Default::default()));
            m.entry("metadata")
                .or_insert_with(|| Value::Object(Default::default()));
            let spec = m
                .entry("spec")
                .or_insert_with(|| Value::Object(Default::default()));
            if let Value::Object(spec) = spec {
                spec.entry("resources")
                    .or_insert_with(|| Value::Object(Default::default()));
            }
        }
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    // Serialising these plain data types cannot fail.
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn select_sessions(
    all: &[Session],
    ann: &AutoBackupAnnotations,
    bp_id: &str,
) -> Result<Vec<Session>, RenderError> {
    let selected: Vec<Session> = match &ann.session_names {
        None => all.to_vec(),
        Some((annotation, wanted)) => {
            for w in wanted {
                if !all.iter().any(|s| &s.config.name == w) {
                    return Err(RenderError::UnknownSession {
                        annotation: annotation.clone(),
                        session: w.clone(),
                        blueprint: bp_id.to_string(),
                        available: all
                            .iter()
                            .map(|s| s.config.name.as_str())
                            .collect::<Vec<_>>()
                            .join(","),
                    });
                }
            }
            all.iter()
                .filter(|s| wanted.contains(&s.config.name))
                .cloned()
                .collect()
        }
    };
    if selected.is_empty() {
        return Err(RenderError::NoSessions {
            blueprint: bp_id.to_string(),
        });
    }
    Ok(selected)
}

fn check_usage_policy(
    blueprint: &BackupBlueprint,
    bp_id: &str,
    bp_ns: &str,
    target_ns: &str,
    namespace_labels: &NamespaceLabels,
) -> Result<(), RenderError> {
    // Webhook default: `from: Same` when the policy (or its `from`) is unset.
    let mut policy = blueprint
        .spec
        .usage_policy
        .clone()
        .unwrap_or_else(UsagePolicy::same);
    if policy.from_value().is_none() {
        let selector = policy
            .allowed_namespaces
            .as_ref()
            .and_then(|a| a.selector.clone());
        policy = UsagePolicy::same();
        if let Some(a) = policy.allowed_namespaces.as_mut() {
            a.selector = selector;
        }
    }
    let empty = BTreeMap::new();
    let ns_labels = namespace_labels.get(target_ns).unwrap_or(&empty);
    if policy.allows(bp_ns, target_ns, ns_labels) {
        return Ok(());
    }
    let from = policy.from_value().unwrap_or(FromNamespaces::Same);
    let description = match from {
        FromNamespaces::Selector => {
            let sel = policy
                .allowed_namespaces
                .as_ref()
                .and_then(|a| a.selector.as_ref())
                .map(|s| serde_json::to_string(s).unwrap_or_default())
                .unwrap_or_else(|| "<none>".into());
            format!("Selector, selector: {sel}, namespace labels: {ns_labels:?}")
        }
        FromNamespaces::Same => format!("Same, blueprint namespace {bp_ns:?}"),
        FromNamespaces::All => "All".into(),
    };
    Err(RenderError::UsagePolicyRefused {
        blueprint: bp_id.to_string(),
        policy: description,
        namespace: target_ns.to_string(),
    })
}

/// Substitutes `${…}` in every string value of `v` (never in map keys, never in serialised
/// text). `path` is the JSON path used in error messages.
pub fn substitute_tree(v: Value, vars: &Vars, path: &str) -> Result<Value, RenderError> {
    Ok(match v {
        Value::String(s) => Value::String(substitute(&s, vars).map_err(|e| match e {
            SubstError::Missing { variable } => RenderError::MissingVariable {
                annotation: format!("{}{variable}", annotations::VARIABLES_PREFIX),
                variable,
                field: path.to_string(),
            },
            source => RenderError::Substitution {
                field: path.to_string(),
                source,
            },
        })?),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| substitute_tree(item, vars, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, item)| {
                    let p = format!("{path}.{k}");
                    substitute_tree(item, vars, &p).map(|v| (k, v))
                })
                .collect::<Result<_, _>>()?,
        ),
        other => other,
    })
}

/// Convenience: the `spec.target` a BackupConfiguration gets for `target` (see
/// [`TargetInfo::backup_target`]).
pub fn backup_target(target: &Value) -> Result<TypedObjectReference, RenderError> {
    Ok(TargetInfo::from_object(target)?.backup_target())
}
