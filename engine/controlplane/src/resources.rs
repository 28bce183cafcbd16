//! The served resource types: built-in kinds and those defined by CRDs, plus the discovery and
//! OpenAPI documents derived from them.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// One served resource (a group/version/plural).
#[derive(Debug, Clone)]
pub struct ResourceDef {
    /// API group (`""` for core).
    pub group: String,
    /// Version served.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Plural resource name.
    pub plural: String,
    /// Singular resource name.
    pub singular: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Short names.
    pub short_names: Vec<String>,
    /// Categories.
    pub categories: Vec<String>,
    /// Whether a `/status` subresource exists (status split).
    pub status_subresource: bool,
    /// The CRD's openAPIV3Schema, if any.
    pub schema: Option<Value>,
    /// CRD `additionalPrinterColumns`.
    pub printer_columns: Vec<Value>,
    /// Built-in (compiled) kind: strategic merge patch allowed, unconditional updates allowed.
    pub builtin: bool,
    /// The storage key shared by all versions (and by both Event APIs).
    pub storage: String,
}

impl ResourceDef {
    /// `apiVersion` string.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
    /// `group/version` path prefix (`api/v1` or `apis/g/v`).
    pub fn gv_path(&self) -> String {
        if self.group.is_empty() {
            format!("api/{}", self.version)
        } else {
            format!("apis/{}/{}", self.group, self.version)
        }
    }
    fn verbs() -> Value {
        json!([
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch"
        ])
    }
    /// Legacy discovery rows (the resource and its status subresource).
    pub fn discovery_rows(&self) -> Vec<Value> {
        let hash = {
            let d = Sha256::digest(format!("{}/{}", self.api_version(), self.kind).as_bytes());
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &d[..8])
        };
        let mut row = json!({
            "name": self.plural, "singularName": self.singular, "namespaced": self.namespaced,
            "kind": self.kind, "verbs": Self::verbs(), "storageVersionHash": hash,
        });
        if !self.short_names.is_empty() {
            row["shortNames"] = json!(self.short_names);
        }
        if !self.categories.is_empty() {
            row["categories"] = json!(self.categories);
        }
        let mut rows = vec![row];
        if self.status_subresource {
            rows.push(json!({"name": format!("{}/status", self.plural), "singularName": "",
                "namespaced": self.namespaced, "kind": self.kind, "verbs": ["get", "patch", "update"]}));
        }
        if self.group.is_empty() && self.plural == "namespaces" {
            rows.push(
                json!({"name": "namespaces/finalize", "singularName": "", "namespaced": false,
                "kind": "Namespace", "verbs": ["update"]}),
            );
        }
        rows
    }
}

#[allow(clippy::too_many_arguments)]
fn builtin(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    short: &[&str],
    status: bool,
    storage: &str,
) -> ResourceDef {
    ResourceDef {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: vec![],
        status_subresource: status,
        schema: None,
        printer_columns: vec![],
        builtin: true,
        storage: storage.into(),
    }
}

/// The built-in kinds served by every control plane.
pub fn builtins() -> Vec<ResourceDef> {
    vec![
        builtin(
            "",
            "v1",
            "Namespace",
            "namespaces",
            false,
            &["ns"],
            true,
            "core/namespaces",
        ),
        builtin(
            "",
            "v1",
            "Secret",
            "secrets",
            true,
            &[],
            false,
            "core/secrets",
        ),
        builtin(
            "",
            "v1",
            "ConfigMap",
            "configmaps",
            true,
            &["cm"],
            false,
            "core/configmaps",
        ),
        builtin(
            "",
            "v1",
            "ServiceAccount",
            "serviceaccounts",
            true,
            &["sa"],
            false,
            "core/serviceaccounts",
        ),
        builtin(
            "",
            "v1",
            "Event",
            "events",
            true,
            &["ev"],
            false,
            "core/events",
        ),
        builtin(
            "events.k8s.io",
            "v1",
            "Event",
            "events",
            true,
            &["ev"],
            false,
            "core/events",
        ),
        builtin(
            "coordination.k8s.io",
            "v1",
            "Lease",
            "leases",
            true,
            &[],
            false,
            "coordination.k8s.io/leases",
        ),
        // Stored for clients that install them (the kstash chart); this control plane runs
        // kstash's rules in its own write path and calls no webhook.
        builtin(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
            false,
            &[],
            false,
            "admissionregistration.k8s.io/validatingwebhookconfigurations",
        ),
        builtin(
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
            false,
            &[],
            false,
            "admissionregistration.k8s.io/mutatingwebhookconfigurations",
        ),
        builtin(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
            &["crd", "crds"],
            true,
            "apiextensions.k8s.io/customresourcedefinitions",
        ),
    ]
}

fn str_list(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The resource definitions a CRD object serves (one per served version).
pub fn from_crd(crd: &Value) -> Vec<ResourceDef> {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default().to_string();
    let names = &spec["names"];
    let plural = names["plural"].as_str().unwrap_or_default().to_string();
    let kind = names["kind"].as_str().unwrap_or_default().to_string();
    let singular = names["singular"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| kind.to_lowercase());
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    let mut out = vec![];
    for v in spec["versions"].as_array().into_iter().flatten() {
        if v["served"].as_bool() == Some(false) {
            continue;
        }
        out.push(ResourceDef {
            group: group.clone(),
            version: v["name"].as_str().unwrap_or_default().to_string(),
            kind: kind.clone(),
            plural: plural.clone(),
            singular: singular.clone(),
            namespaced,
            short_names: str_list(&names["shortNames"]),
            categories: str_list(&names["categories"]),
            status_subresource: v["subresources"]["status"].is_object(),
            schema: v["schema"]["openAPIV3Schema"]
                .as_object()
                .map(|o| Value::Object(o.clone())),
            printer_columns: v["additionalPrinterColumns"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
            builtin: false,
            storage: format!("{group}/{plural}"),
        });
    }
    out
}

/// All served resources: built-ins plus the CRDs' (in the CRDs' order).
#[derive(Debug, Clone, Default)]
pub struct Registry {
    /// The resources.
    pub defs: Vec<ResourceDef>,
}

impl Registry {
    /// Builds the registry from the stored CRD objects.
    pub fn build(crds: &[Value]) -> Self {
        let mut defs = builtins();
        for crd in crds {
            if crd["metadata"]["deletionTimestamp"].is_string() {
                // Still served while its objects are cleaned up.
            }
            defs.extend(from_crd(crd));
        }
        Self { defs }
    }
    /// Finds a resource by group, version and plural.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceDef> {
        self.defs
            .iter()
            .find(|d| d.group == group && d.version == version && d.plural == plural)
    }
    /// Finds any served version of a storage key (the first = preferred).
    pub fn by_storage(&self, storage: &str) -> Option<&ResourceDef> {
        self.defs.iter().find(|d| d.storage == storage)
    }
    /// Finds by apiVersion + kind.
    pub fn by_gvk(&self, api_version: &str, kind: &str) -> Option<&ResourceDef> {
        self.defs
            .iter()
            .find(|d| d.api_version() == api_version && d.kind == kind)
    }
    /// Groups (non-core) in order, each with its versions in order.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = vec![];
        for d in &self.defs {
            if d.group.is_empty() {
                continue;
            }
            match out.iter_mut().find(|(g, _)| g == &d.group) {
                Some((_, vs)) => {
                    if !vs.contains(&d.version) {
                        vs.push(d.version.clone())
                    }
                }
                None => out.push((d.group.clone(), vec![d.version.clone()])),
            }
        }
        out
    }
    /// `/apis` (legacy APIGroupList).
    pub fn api_group_list(&self) -> Value {
        let groups: Vec<Value> = self
            .groups()
            .into_iter()
            .map(|(g, vs)| {
                let versions: Vec<Value> = vs
                    .iter()
                    .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                    .collect();
                json!({"name": g, "versions": versions, "preferredVersion": versions[0].clone()})
            })
            .collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }
    /// `/apis/<g>` (APIGroup), if the group exists.
    pub fn api_group(&self, group: &str) -> Option<Value> {
        let (g, vs) = self.groups().into_iter().find(|(g, _)| g == group)?;
        let versions: Vec<Value> = vs
            .iter()
            .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
            .collect();
        Some(
            json!({"kind": "APIGroup", "apiVersion": "v1", "name": g, "versions": versions, "preferredVersion": versions[0].clone()}),
        )
    }
    /// `/api/v1` or `/apis/<g>/<v>` (APIResourceList), if served.
    pub fn resource_list(&self, group: &str, version: &str) -> Option<Value> {
        let rows: Vec<Value> = self
            .defs
            .iter()
            .filter(|d| d.group == group && d.version == version)
            .flat_map(|d| d.discovery_rows())
            .collect();
        if rows.is_empty() {
            return None;
        }
        let gv = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        Some(
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": rows}),
        )
    }
    /// `/openapi/v3` index; `hash` of each document makes kubectl's cache correct.
    pub fn openapi_index(&self) -> Value {
        let mut paths = serde_json::Map::new();
        let mut gvs: Vec<String> = vec![];
        for d in &self.defs {
            let p = d.gv_path();
            if !gvs.contains(&p) {
                gvs.push(p);
            }
        }
        for p in gvs {
            let (g, v) = split_gv_path(&p);
            let doc = self.openapi_doc(&g, &v).unwrap_or(Value::Null);
            let hash = hex_hash(&doc.to_string());
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={hash}")}),
            );
        }
        json!({"paths": paths})
    }
    /// One OpenAPI 3 document for a group/version: one PATCH operation per kind with its GVK and
    /// the `fieldValidation` parameter (what kubectl checks), plus the CRD schemas.
    pub fn openapi_doc(&self, group: &str, version: &str) -> Option<Value> {
        let defs: Vec<&ResourceDef> = self
            .defs
            .iter()
            .filter(|d| d.group == group && d.version == version)
            .collect();
        if defs.is_empty() {
            return None;
        }
        let mut paths = serde_json::Map::new();
        let mut schemas = serde_json::Map::new();
        for d in defs {
            let base = if d.group.is_empty() {
                format!("/api/{}", d.version)
            } else {
                format!("/apis/{}/{}", d.group, d.version)
            };
            let path = if d.namespaced {
                format!("{base}/namespaces/{{namespace}}/{}/{{name}}", d.plural)
            } else {
                format!("{base}/{}/{{name}}", d.plural)
            };
            let gvk = json!({"group": d.group, "version": d.version, "kind": d.kind});
            let q = |n: &str| json!({"name": n, "in": "query", "schema": {"type": "string"}, "uniqueItems": true});
            let mut content = serde_json::Map::new();
            for t in [
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/apply-patch+yaml",
            ] {
                content.insert(t.into(), json!({"schema": {"type": "object"}}));
            }
            paths.insert(
                path,
                json!({"patch": {
                    "operationId": format!("patch{}", d.kind),
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": gvk,
                    "parameters": [q("dryRun"), q("fieldManager"), q("fieldValidation"), q("force")],
                    "requestBody": {"content": content},
                    "responses": {"200": {"description": "OK"}}
                }}),
            );
            let name = format!(
                "{}.{}.{}",
                if d.group.is_empty() {
                    "io.k8s.api.core".to_string()
                } else {
                    d.group.split('.').rev().collect::<Vec<_>>().join(".")
                },
                d.version,
                d.kind
            );
            let mut schema = d.schema.clone().unwrap_or_else(
                || json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
            );
            schema["x-kubernetes-group-version-kind"] = json!([gvk]);
            schemas.insert(name, schema);
        }
        Some(json!({
            "openapi": "3.0.0",
            "info": {"title": "kstash", "version": "v1.33.0"},
            "paths": paths,
            "components": {"schemas": schemas}
        }))
    }
}

/// Splits `api/v1` / `apis/g/v` into (group, version).
pub fn split_gv_path(p: &str) -> (String, String) {
    let parts: Vec<&str> = p.split('/').collect();
    match parts.as_slice() {
        ["api", v] => (String::new(), v.to_string()),
        ["apis", g, v] => (g.to_string(), v.to_string()),
        _ => (String::new(), String::new()),
    }
}

/// A short hex hash of a string.
pub fn hex_hash(s: &str) -> String {
    let d = Sha256::digest(s.as_bytes());
    d[..8].iter().map(|b| format!("{b:02X}")).collect()
}
