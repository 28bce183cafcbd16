//! CustomResourceDefinitions of every kstash kind plus the external kinds, generated from the
//! Rust types (kube `CustomResource` derive + schemars, made structural by kube's rewriter).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, JSONSchemaProps,
    JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;
use serde_json::{Map, Value};

use crate::{addons, core, external, storage};

/// Every CRD kstash serves: the 14 KubeStash kinds followed by KubeDB `Elasticsearch`, `Redis`,
/// `Postgres` and `AppBinding`. Each printer-column list ends with `Age`.
pub fn all() -> Vec<CustomResourceDefinition> {
    let mut out = vec![
        core::BackupConfiguration::crd(),
        core::BackupSession::crd(),
        core::BackupBlueprint::crd(),
        core::RestoreSession::crd(),
        core::HookTemplate::crd(),
        core::BackupBatch::crd(),
        core::BackupVerifier::crd(),
        core::BackupVerificationSession::crd(),
        storage::BackupStorage::crd(),
        storage::Repository::crd(),
        storage::Snapshot::crd(),
        storage::RetentionPolicy::crd(),
        addons::Addon::crd(),
        addons::Function::crd(),
        external::Elasticsearch::crd(),
        external::Redis::crd(),
        external::Postgres::crd(),
        external::AppBinding::crd(),
    ];
    for crd in &mut out {
        finish(crd);
    }
    out
}

/// The CRD whose `spec.names.kind` is `kind`, if any.
pub fn by_kind(kind: &str) -> Option<CustomResourceDefinition> {
    all().into_iter().find(|c| c.spec.names.kind == kind)
}

/// Appends the `Age` column and makes `metadata` a plain object node.
fn finish(crd: &mut CustomResourceDefinition) {
    for v in &mut crd.spec.versions {
        let cols = v.additional_printer_columns.get_or_insert_with(Vec::new);
        cols.push(CustomResourceColumnDefinition {
            name: "Age".into(),
            type_: "date".into(),
            json_path: ".metadata.creationTimestamp".into(),
            ..Default::default()
        });
    }
}

/// Structural-schema violations of `schema` (empty = structural): every node must have a `type`
/// unless it is `x-kubernetes-preserve-unknown-fields` or `x-kubernetes-int-or-string`, no
/// `$ref`, and `anyOf`/`oneOf`/`allOf` branches must not carry types or defaults.
pub fn structural_errors(schema: &JSONSchemaProps) -> Vec<String> {
    let mut errs = Vec::new();
    check_node(schema, "", true, &mut errs);
    errs
}

fn check_node(s: &JSONSchemaProps, path: &str, needs_type: bool, errs: &mut Vec<String>) {
    let free = s.x_kubernetes_preserve_unknown_fields == Some(true);
    let ios = s.x_kubernetes_int_or_string == Some(true);
    if s.ref_path.is_some() {
        errs.push(format!("{path}: $ref is not allowed"));
    }
    if needs_type && s.type_.is_none() && !free && !ios {
        errs.push(format!("{path}: node has no type"));
    }
    for (k, p) in s.properties.iter().flatten() {
        check_node(p, &format!("{path}.{k}"), true, errs);
    }
    if let Some(items) = &s.items {
        match items {
            JSONSchemaPropsOrArray::Schema(i) => check_node(i, &format!("{path}[]"), true, errs),
            JSONSchemaPropsOrArray::Schemas(_) => {
                errs.push(format!("{path}: tuple items are not structural"))
            }
        }
    }
    if let Some(JSONSchemaPropsOrBool::Schema(a)) = &s.additional_properties {
        check_node(a, &format!("{path}{{}}"), true, errs);
    }
    for (kw, list) in [
        ("anyOf", &s.any_of),
        ("oneOf", &s.one_of),
        ("allOf", &s.all_of),
    ] {
        for (i, b) in list.iter().flatten().enumerate() {
            if b.type_.is_some() || b.default.is_some() || b.nullable.is_some() {
                errs.push(format!(
                    "{path}.{kw}[{i}]: branch sets type/default/nullable"
                ));
            }
        }
    }
}

/// The OpenAPI v3 schema of the (single) version of `crd`.
pub fn schema_of(crd: &CustomResourceDefinition) -> Option<&JSONSchemaProps> {
    crd.spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
}

/// One schema violation, shaped like a Kubernetes `StatusCause`: `field` is the path without a
/// leading dot (`spec.deletionPolicy`), `reason` is `FieldValueNotSupported`,
/// `FieldValueRequired` or `FieldValueInvalid`, and `message` is kube-openapi's text
/// (`Unsupported value: "Bogus": supported values: "Delete", "WipeOut"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaViolation {
    /// Field path, e.g. `spec.sessions[0].retryConfig.maxRetry`.
    pub field: String,
    /// StatusCause reason.
    pub reason: &'static str,
    /// Message as the API server words it.
    pub message: String,
}

impl std::fmt::Display for SchemaViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// What an API server does with an object against a structural schema, in its order: drop
/// `null`s of non-nullable fields, prune unknown fields (keeping
/// `x-kubernetes-preserve-unknown-fields` subtrees), apply `default`s to missing properties of
/// present objects, then validate `type`, `enum`, `required`, `pattern`, `minimum`. Top-level
/// `apiVersion`, `kind` and `metadata` are kept as they are. Returns the resulting object, or
/// every violation.
pub fn prune_default_validate(
    schema: &JSONSchemaProps,
    value: &Value,
) -> Result<Value, Vec<SchemaViolation>> {
    let mut v = value.clone();
    let mut errs = Vec::new();
    if let Value::Object(root) = &mut v {
        let meta: Vec<(String, Value)> = ["apiVersion", "kind", "metadata"]
            .iter()
            .filter_map(|k| root.remove(*k).map(|x| (k.to_string(), x)))
            .collect();
        walk(schema, &mut v, "", &mut errs);
        if let Value::Object(root) = &mut v {
            for (k, x) in meta {
                root.insert(k, x);
            }
        }
    } else {
        walk(schema, &mut v, "", &mut errs);
    }
    if errs.is_empty() {
        Ok(v)
    } else {
        Err(errs)
    }
}

/// Go `%v`-ish rendering of a value in messages: strings quoted, others as JSON.
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn invalid(errs: &mut Vec<SchemaViolation>, field: &str, message: String) {
    errs.push(SchemaViolation {
        field: field.to_string(),
        reason: "FieldValueInvalid",
        message,
    });
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn walk(s: &JSONSchemaProps, v: &mut Value, path: &str, errs: &mut Vec<SchemaViolation>) {
    let free = s.x_kubernetes_preserve_unknown_fields == Some(true);
    if s.x_kubernetes_int_or_string == Some(true) {
        if !(v.is_string() || v.is_i64() || v.is_u64()) {
            let t = type_name(v);
            invalid(
                errs,
                path,
                format!(
                    "Invalid value: \"{t}\": {path} in body must be of type int-or-string: \"{t}\""
                ),
            );
        }
        return;
    }
    let ty = s.type_.as_deref().unwrap_or("");
    let type_ok = match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => true,
    };
    if !type_ok {
        let t = type_name(v);
        invalid(
            errs,
            path,
            format!("Invalid value: \"{t}\": {path} in body must be of type {ty}: \"{t}\""),
        );
        return;
    }
    if let Some(allowed) = &s.enum_ {
        if !allowed.iter().any(|a| a.0 == *v) {
            let list: Vec<String> = allowed.iter().map(|a| shown(&a.0)).collect();
            errs.push(SchemaViolation {
                field: path.to_string(),
                reason: "FieldValueNotSupported",
                message: format!(
                    "Unsupported value: {}: supported values: {}",
                    shown(v),
                    list.join(", ")
                ),
            });
        }
    }
    if let (Some(p), Value::String(text)) = (&s.pattern, &*v) {
        match regex::Regex::new(p) {
            Ok(re) if !re.is_match(text) => invalid(
                errs,
                path,
                format!("Invalid value: {text:?}: {path} in body should match '{p}'"),
            ),
            Ok(_) => {}
            Err(e) => invalid(errs, path, format!("schema pattern {p:?} is invalid: {e}")),
        }
    }
    if let (Some(min), Some(n)) = (s.minimum, v.as_f64()) {
        if n < min {
            invalid(
                errs,
                path,
                format!(
                    "Invalid value: {}: {path} in body should be greater than or equal to {min}",
                    shown(v)
                ),
            );
        }
    }
    match v {
        Value::Object(map) => walk_object(s, map, path, free, errs),
        Value::Array(items) => {
            if let Some(JSONSchemaPropsOrArray::Schema(item)) = &s.items {
                for (i, x) in items.iter_mut().enumerate() {
                    walk(item, x, &format!("{path}[{i}]"), errs);
                }
            }
        }
        _ => {}
    }
}

fn walk_object(
    s: &JSONSchemaProps,
    map: &mut Map<String, Value>,
    path: &str,
    free: bool,
    errs: &mut Vec<SchemaViolation>,
) {
    let props = s.properties.as_ref();
    let additional = match &s.additional_properties {
        Some(JSONSchemaPropsOrBool::Schema(a)) => Some(a.as_ref()),
        _ => None,
    };
    let keys: Vec<String> = map.keys().cloned().collect();
    for k in keys {
        let child = props.and_then(|p| p.get(&k)).or(additional);
        match child {
            Some(cs) => {
                if map[&k].is_null() && cs.nullable != Some(true) {
                    map.remove(&k);
                    continue;
                }
                walk(cs, map.get_mut(&k).expect("present"), &join(path, &k), errs);
            }
            None if free => {}
            None => {
                map.remove(&k);
            }
        }
    }
    for (k, cs) in props.into_iter().flatten() {
        if !map.contains_key(k) {
            if let Some(d) = &cs.default {
                map.insert(k.clone(), d.0.clone());
            }
        }
    }
    for r in s.required.iter().flatten() {
        if !map.contains_key(r) {
            errs.push(SchemaViolation {
                field: join(path, r),
                reason: "FieldValueRequired",
                message: "Required value".to_string(),
            });
        }
    }
}
