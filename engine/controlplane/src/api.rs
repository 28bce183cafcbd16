//! The resource handlers: routing of resource paths, and the synchronous get/list/create/update/
//! patch/delete logic on top of the [`Store`].

use std::sync::{Arc, RwLock};

use base64::Engine;
use serde_json::{json, Value};

use crate::admission;
use crate::objects::{self, deleting, finalizers, ns_name, present};
use crate::patch;
use crate::query::{Query, Selectors};
use crate::resources::{Registry, ResourceDef};
use crate::schema;
use crate::status::{cause, qualified, ApiError, Cause};
use crate::store::{Batch, State, Store};

/// A resource request target.
#[derive(Debug, Clone)]
pub struct Target {
    /// The resource.
    pub def: ResourceDef,
    /// Namespace from the path.
    pub ns: Option<String>,
    /// Object name from the path.
    pub name: Option<String>,
    /// Subresource (`status`, `finalize`).
    pub sub: Option<String>,
}

/// A handler answer.
#[derive(Debug)]
pub struct Reply {
    /// HTTP code.
    pub code: u16,
    /// JSON body.
    pub body: Value,
    /// `Warning` headers.
    pub warnings: Vec<String>,
}

impl Reply {
    fn ok(code: u16, body: Value) -> Self {
        Self {
            code,
            body,
            warnings: vec![],
        }
    }
}

/// The API state shared by all requests.
pub struct Api {
    /// Storage.
    pub store: Store,
    /// Served resources.
    pub registry: RwLock<Registry>,
    /// Wakes the controllers.
    pub wake: tokio::sync::Notify,
    /// The admission hook every create and main-resource update passes ([`admission`]).
    pub admission: Option<admission::Hook>,
}

/// The stored objects as an admission hook reads them.
struct TxObjects<'a>(&'a State);

impl admission::StoredObjects for TxObjects<'_> {
    fn list(&self, group: &str, plural: &str) -> Vec<Value> {
        let group = if group.is_empty() { "core" } else { group };
        self.0
            .list(&format!("{group}/{plural}"), None)
            .iter()
            .map(|a| (**a).clone())
            .collect()
    }
}

const CRD_STORAGE: &str = "apiextensions.k8s.io/customresourcedefinitions";

/// Writing context inside one store transaction.
pub struct Tx<'a> {
    /// State view.
    pub st: &'a State,
    /// RV counter.
    pub rv: &'a mut u64,
    /// Staged ops.
    pub batch: &'a mut Batch,
}

/// Refuses bodies whose top-level shape the handlers index into (the object, `metadata`, a
/// Namespace's `spec`) with a 400 naming the field, so no handler panics on a `"metadata": 5`.
/// A missing or `null` `metadata` becomes `{}`.
fn check_shape(def: &ResourceDef, obj: &mut Value) -> Result<(), ApiError> {
    let Some(m) = obj.as_object_mut() else {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    };
    match m.get("metadata") {
        None | Some(Value::Null) => {
            m.insert("metadata".into(), json!({}));
        }
        Some(Value::Object(_)) => {}
        Some(_) => return Err(ApiError::bad_request("metadata: must be an object")),
    }
    if def.kind == "Namespace" && def.builtin {
        for field in ["spec", "status"] {
            match m.get(field) {
                None | Some(Value::Null) | Some(Value::Object(_)) => {}
                Some(_) => {
                    return Err(ApiError::bad_request(format!("{field}: must be an object")))
                }
            }
        }
    }
    Ok(())
}

impl Tx<'_> {
    /// The current (staged or stored) object.
    pub fn get(&self, storage: &str, ns: &str, name: &str) -> Option<Value> {
        match self.batch.staged(storage, ns, name) {
            Some(v) => v.cloned(),
            None => self.st.get(storage, ns, name).map(|a| (*a).clone()),
        }
    }
    /// Stores `obj` with a fresh RV; if it is being deleted and has no finalizers left, removes it.
    pub fn put(&mut self, storage: &str, mut obj: Value) -> Value {
        *self.rv += 1;
        let rv = *self.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let (ns, name) = ns_name(&obj);
        let ns_fin = obj["spec"]["finalizers"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
            && storage == "core/namespaces";
        if deleting(&obj) && finalizers(&obj).is_empty() && !ns_fin {
            self.batch.delete(storage, &ns, &name, rv);
        } else {
            self.batch.put(storage, &ns, &name, obj.clone(), rv);
        }
        obj
    }
    /// Deletes (or marks for deletion when finalizers exist); returns the object and whether it
    /// is gone.
    pub fn delete(
        &mut self,
        storage: &str,
        mut obj: Value,
        extra_finalizer: Option<&str>,
    ) -> (Value, bool) {
        if let Some(f) = extra_finalizer {
            let mut fins = finalizers(&obj);
            if !fins.iter().any(|x| x == f) {
                fins.push(f.to_string());
                obj["metadata"]["finalizers"] = json!(fins);
            }
        }
        let ns_fin = storage == "core/namespaces";
        if finalizers(&obj).is_empty() && !ns_fin {
            *self.rv += 1;
            let (ns, name) = ns_name(&obj);
            self.batch.delete(storage, &ns, &name, *self.rv);
            obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
            return (obj, true);
        }
        if !deleting(&obj) {
            obj["metadata"]["deletionTimestamp"] = json!(objects::now());
            obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            if obj["metadata"]["generation"].is_i64() {
                obj["metadata"]["generation"] =
                    json!(obj["metadata"]["generation"].as_i64().unwrap_or(0) + 1);
            }
            if ns_fin {
                obj["status"]["phase"] = json!("Terminating");
            }
        }
        let obj = self.put(storage, obj);
        (obj, false)
    }
}

fn decode_body(body: &[u8], ctype: &str) -> Result<Value, ApiError> {
    if body.starts_with(crate::protobuf::MAGIC) || ctype.contains("protobuf") {
        return crate::protobuf::decode(body)
            .map_err(|e| ApiError::bad_request(format!("unable to decode protobuf body: {e}")));
    }
    if ctype.contains("yaml") {
        let v: serde_yaml::Value = serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
        return serde_json::to_value(v)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding request body: {e}")))
}

fn dry_run(q: &Query) -> bool {
    q.get("dryRun").is_some_and(|v| v == "All")
}

fn strip_metadata_server_fields(meta: &mut Value) {
    if let Some(m) = meta.as_object_mut() {
        m.remove("managedFields");
    }
}

/// Whether anything outside metadata (and status, when split) differs.
fn spec_changed(def: &ResourceDef, old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
            m.remove("apiVersion");
            m.remove("kind");
            if def.status_subresource {
                m.remove("status");
            }
        }
        v
    };
    strip(old) != strip(new)
}

impl Api {
    /// A new API over an opened store.
    pub fn new(store: Store) -> Self {
        let crds: Vec<Value> = store
            .state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .list(CRD_STORAGE, None)
            .iter()
            .map(|a| (**a).clone())
            .collect();
        Self {
            store,
            registry: RwLock::new(Registry::build(&crds)),
            wake: tokio::sync::Notify::new(),
            admission: None,
        }
    }

    /// Installs the admission hook.
    pub fn with_admission(mut self, hook: Option<admission::Hook>) -> Self {
        self.admission = hook;
        self
    }

    /// Runs the admission hook on `obj` (replacing it by the hook's mutation) or answers its
    /// denial as a webhook's: `403 Forbidden` with the hook's message.
    fn review(
        &self,
        st: &State,
        def: &ResourceDef,
        operation: admission::Operation,
        old: Option<&Value>,
        obj: &mut Value,
    ) -> Result<(), ApiError> {
        let Some(hook) = &self.admission else {
            return Ok(());
        };
        let review = admission::Review {
            group: &def.group,
            kind: &def.kind,
            operation,
            old,
            object: obj,
        };
        match hook.review(&review, &TxObjects(st)) {
            Ok(Some(mutated)) => {
                *obj = mutated;
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(denial) => Err(ApiError::forbidden(denial.message)),
        }
    }

    /// Rebuilds the served resources from the stored CRDs.
    pub fn refresh_registry(&self) {
        let crds: Vec<Value> = self
            .store
            .state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .list(CRD_STORAGE, None)
            .iter()
            .map(|a| (**a).clone())
            .collect();
        *self.registry.write().unwrap_or_else(|e| e.into_inner()) = Registry::build(&crds);
    }

    /// A snapshot of the registry.
    pub fn registry(&self) -> Registry {
        self.registry
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Resolves `/api/v1/...` or `/apis/g/v/...` resource paths.
    pub fn route(&self, segs: &[&str]) -> Result<Target, ApiError> {
        let (group, version, rest) = match segs {
            ["api", v, rest @ ..] => ("", *v, rest),
            ["apis", g, v, rest @ ..] => (*g, *v, rest),
            _ => return Err(ApiError::unknown_path()),
        };
        let (ns, rest) = match rest {
            ["namespaces", ns, plural, more @ ..]
                if !matches!(*plural, "status" | "finalize") || !more.is_empty() =>
            {
                (Some(ns.to_string()), {
                    let mut v = vec![*plural];
                    v.extend_from_slice(more);
                    v
                })
            }
            _ => (None, rest.to_vec()),
        };
        let (plural, name, sub) = match rest.as_slice() {
            [p] => (*p, None, None),
            [p, n] => (*p, Some(n.to_string()), None),
            [p, n, s] => (*p, Some(n.to_string()), Some(s.to_string())),
            _ => return Err(ApiError::unknown_path()),
        };
        let reg = self.registry.read().unwrap_or_else(|e| e.into_inner());
        let def = reg
            .find(group, version, plural)
            .cloned()
            .ok_or_else(ApiError::unknown_path)?;
        if ns.is_some() && !def.namespaced {
            return Err(ApiError::unknown_path());
        }
        match sub.as_deref() {
            None => {}
            Some("status") if def.status_subresource => {}
            Some("finalize") if def.kind == "Namespace" && def.group.is_empty() => {}
            Some(_) => return Err(ApiError::unknown_path()),
        }
        Ok(Target { def, ns, name, sub })
    }

    /// GET one object.
    pub fn get(&self, t: &Target) -> Result<Value, ApiError> {
        let name = t.name.as_deref().unwrap_or_default();
        let st = self.store.state.read().unwrap_or_else(|e| e.into_inner());
        let obj = st
            .get(&t.def.storage, t.ns.as_deref().unwrap_or_default(), name)
            .ok_or_else(|| ApiError::not_found(&t.def.group, &t.def.plural, name))?;
        Ok(self.presented(&t.def, &obj))
    }

    fn presented(&self, def: &ResourceDef, obj: &Value) -> Value {
        let mut o = present(def, obj);
        if let Some(s) = &def.schema {
            schema::apply_defaults(&mut o, s);
        }
        o
    }

    /// LIST: (items, list RV, continue token).
    pub fn list(
        &self,
        t: &Target,
        q: &Query,
    ) -> Result<(Vec<Value>, u64, Option<String>), ApiError> {
        let sel = Selectors::from_query(q)?;
        let limit = q.uint("limit")?.filter(|l| *l > 0);
        let (after, list_rv) = match q.get("continue").filter(|c| !c.is_empty()) {
            Some(c) => {
                let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(c)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                    .ok_or_else(|| {
                        ApiError::bad_request(format!("invalid continue token {c:?}"))
                    })?;
                (raw["k"].as_str().map(String::from), raw["rv"].as_u64())
            }
            None => (None, None),
        };
        let st = self.store.state.read().unwrap_or_else(|e| e.into_inner());
        let rv = list_rv.unwrap_or(st.rv);
        let all = st.list(&t.def.storage, t.ns.as_deref());
        let mut items = vec![];
        let mut cont = None;
        for o in all {
            let (ns, name) = ns_name(&o);
            let key = format!("{ns}/{name}");
            if after.as_ref().is_some_and(|a| key <= *a) {
                continue;
            }
            if !sel.matches(&o) {
                continue;
            }
            if limit.is_some_and(|l| items.len() as u64 >= l) {
                let last = items.last().map(|v: &Value| {
                    let (ns, name) = ns_name(v);
                    format!("{ns}/{name}")
                });
                let tok = json!({"k": last, "rv": rv});
                cont =
                    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tok.to_string()));
                break;
            }
            items.push(self.presented(&t.def, &o));
        }
        Ok((items, rv, cont))
    }

    fn check_namespace(
        &self,
        st: &State,
        def: &ResourceDef,
        ns: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        if !def.namespaced {
            return Ok(());
        }
        let nso = st
            .get("core/namespaces", "", ns)
            .ok_or_else(|| ApiError::not_found("", "namespaces", ns))?;
        if deleting(&nso) {
            return Err(ApiError::forbidden(format!(
                "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                qualified(&def.group, &def.plural)
            ))
            .with_details(json!({"name": name, "group": def.group, "kind": def.plural, "causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]})));
        }
        Ok(())
    }

    /// Validates and normalises an incoming object for `def`; returns pruned field paths.
    fn admit(
        &self,
        def: &ResourceDef,
        obj: &mut Value,
        url_ns: Option<&str>,
        q: &Query,
    ) -> Result<Vec<String>, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        let av = obj["apiVersion"].as_str().unwrap_or_default().to_string();
        let kind = obj["kind"].as_str().unwrap_or_default().to_string();
        if (!av.is_empty() && av != def.api_version()) || (!kind.is_empty() && kind != def.kind) {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({}) or the kind ({kind}) does not match {}",
                def.api_version(),
                def.kind
            )));
        }
        if !obj["metadata"].is_object() {
            if obj["metadata"].is_null() {
                obj["metadata"] = json!({});
            } else {
                return Err(ApiError::bad_request("metadata: must be an object"));
            }
        }
        if def.group == "events.k8s.io" {
            objects::event_to_core(obj);
        }
        obj["apiVersion"] = json!(def.api_version());
        obj["kind"] = json!(def.kind);
        match (url_ns, obj["metadata"]["namespace"].as_str()) {
            (Some(u), Some(b)) if !b.is_empty() && u != b => {
                return Err(ApiError::bad_request(format!("the namespace of the object ({b}) does not match the namespace on the request ({u})")));
            }
            (Some(u), _) => obj["metadata"]["namespace"] = json!(u),
            (None, _) => {
                if let Some(m) = obj["metadata"].as_object_mut() {
                    m.remove("namespace");
                }
            }
        }
        let mut errs: Vec<Cause> = objects::metadata_errors(obj);
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        errs.extend(objects::name_errors(def, &name));
        if def.builtin {
            // Normalizing indexes into the metadata: refuse wrong shapes there first.
            if !errs.is_empty() {
                return Err(ApiError::invalid(&def.kind, &def.group, &name, errs));
            }
            objects::normalize_builtin(def, obj)?;
        }
        if def.storage == CRD_STORAGE {
            errs.extend(crd_errors(obj));
        }
        let mut dropped = vec![];
        if let Some(s) = &def.schema {
            let mut body = obj.clone();
            if let Some(m) = body.as_object_mut() {
                m.remove("metadata");
                m.remove("apiVersion");
                m.remove("kind");
            }
            schema::prune(&mut body, s, "", &mut dropped);
            schema::apply_defaults(&mut body, s);
            schema::validate(&body, s, "", &mut errs);
            let meta = obj["metadata"].clone();
            *obj = body;
            obj["apiVersion"] = json!(def.api_version());
            obj["kind"] = json!(def.kind);
            obj["metadata"] = meta;
        }
        if !errs.is_empty() {
            return Err(ApiError::invalid(&def.kind, &def.group, &name, errs));
        }
        if !dropped.is_empty() && q.get("fieldValidation") == Some("Strict") {
            let list: Vec<String> = dropped
                .iter()
                .map(|d| format!("unknown field \"{d}\""))
                .collect();
            return Err(ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                def.kind,
                def.version,
                def.kind,
                list.join(", ")
            )));
        }
        if q.get("fieldValidation") == Some("Ignore") {
            dropped.clear();
        }
        Ok(dropped)
    }

    /// POST to a collection.
    pub fn create(
        &self,
        t: &Target,
        body: &[u8],
        ctype: &str,
        q: &Query,
    ) -> Result<Reply, ApiError> {
        let obj = decode_body(body, ctype)?;
        self.create_value(t, obj, q, None)
    }

    fn create_value(
        &self,
        t: &Target,
        mut obj: Value,
        q: &Query,
        managed: Option<Value>,
    ) -> Result<Reply, ApiError> {
        check_shape(&t.def, &mut obj)?;
        if t.def.kind == "Namespace" && obj.is_object() && obj["metadata"].is_object() {
            obj["spec"]["finalizers"] = json!(["kubernetes"]);
        }
        if obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
        {
            if let Some(g) = obj["metadata"]["generateName"]
                .as_str()
                .filter(|g| !g.is_empty())
            {
                let prefix: String = g.chars().take(58).collect();
                obj["metadata"]["name"] = json!(format!("{prefix}{}", objects::name_suffix()));
            } else if obj.is_object() && obj["metadata"].is_object() {
                return Err(ApiError::invalid(
                    obj["kind"].as_str().unwrap_or(&t.def.kind),
                    &t.def.group,
                    "",
                    vec![cause(
                        "FieldValueRequired",
                        "metadata.name",
                        "Required value: name or generateName is required",
                    )],
                ));
            }
        }
        let warnings = self.admit(&t.def, &mut obj, t.ns.as_deref(), q)?;
        let def = t.def.clone();
        let dry = dry_run(q);
        let out = self.store.write(|st, rv, batch| {
            let mut tx = Tx { st, rv, batch };
            let (ns, name) = ns_name(&obj);
            self.check_namespace(st, &def, &ns, &name)?;
            if tx.get(&def.storage, &ns, &name).is_some() {
                return Err(ApiError::already_exists(&def.group, &def.plural, &name));
            }
            self.review(tx.st, &def, admission::Operation::Create, None, &mut obj)?;
            let meta = &mut obj["metadata"];
            strip_metadata_server_fields(meta);
            for f in [
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "resourceVersion",
            ] {
                if let Some(m) = meta.as_object_mut() {
                    m.remove(f);
                }
            }
            if let Some(m) = &managed {
                meta["managedFields"] = m.clone();
            }
            meta["uid"] = json!(objects::uuid());
            meta["creationTimestamp"] = json!(objects::now());
            if !def.builtin || def.storage == CRD_STORAGE {
                meta["generation"] = json!(1);
            }
            if def.status_subresource && !def.builtin {
                if let Some(m) = obj.as_object_mut() {
                    m.remove("status");
                }
            }
            if def.kind == "Namespace" && def.builtin {
                obj["status"] = json!({"phase": "Active"});
            }
            if def.storage == CRD_STORAGE {
                obj["status"] = crd_status(&obj);
                let mut fins = finalizers(&obj);
                fins.push("customresourcecleanup.apiextensions.k8s.io".into());
                obj["metadata"]["finalizers"] = json!(fins);
            }
            if dry {
                return Ok(obj.clone());
            }
            Ok(tx.put(&def.storage, obj.clone()))
        })?;
        self.after_write(&t.def, Some(&out));
        Ok(Reply {
            code: 201,
            body: self.presented(&t.def, &out),
            warnings: warn(warnings),
        })
    }

    /// Refreshes the registry after CRD writes and wakes the controllers when the written
    /// object (None = a deletion) may need garbage collection or finalization.
    fn after_write(&self, def: &ResourceDef, obj: Option<&Value>) {
        if def.storage == CRD_STORAGE {
            self.refresh_registry();
        }
        let relevant =
            obj.is_none_or(|o| deleting(o) || o["metadata"]["ownerReferences"].is_array());
        if relevant {
            self.wake.notify_one();
        }
    }

    /// Computes the stored object for an update of `old` by `new` (status split, generation,
    /// immutable metadata), or an error.
    fn merge_update(
        &self,
        def: &ResourceDef,
        sub: Option<&str>,
        old: &Value,
        mut new: Value,
    ) -> Result<Value, ApiError> {
        check_shape(def, &mut new)?;
        let name = old["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let new_name = new["metadata"]["name"].as_str().unwrap_or_default();
        if !new_name.is_empty() && new_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({new_name}) does not match the name on the URL ({name})"
            )));
        }
        new["metadata"]["name"] = json!(name);
        let applied_managed = new
            .as_object_mut()
            .and_then(|m| m.remove("__apply"))
            .is_some();
        let keep_managed = new["metadata"]["managedFields"].clone();
        match sub {
            Some("status") => {
                let mut o = old.clone();
                o["status"] = new["status"].clone();
                if new["status"].is_null() {
                    if let Some(m) = o.as_object_mut() {
                        m.remove("status");
                    }
                }
                new = o;
            }
            Some("finalize") => {
                let mut o = old.clone();
                o["spec"]["finalizers"] = new["spec"]["finalizers"].clone();
                new = o;
            }
            _ => {
                if def.status_subresource {
                    match old.get("status") {
                        Some(s) => new["status"] = s.clone(),
                        None => {
                            if let Some(m) = new.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
                if def.kind == "Namespace" && def.builtin {
                    new["spec"]["finalizers"] = old["spec"]["finalizers"].clone();
                    if new["spec"]["finalizers"].is_null() {
                        if let Some(m) = new["spec"].as_object_mut() {
                            m.remove("finalizers");
                        }
                    }
                }
                if def.storage == CRD_STORAGE {
                    new["status"] = crd_status(&new);
                }
            }
        }
        let om = &old["metadata"];
        strip_metadata_server_fields(&mut new["metadata"]);
        for f in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match om.get(f) {
                Some(v) => new["metadata"][f] = v.clone(),
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove(f);
                    }
                }
            }
        }
        if applied_managed {
            new["metadata"]["managedFields"] = keep_managed;
        } else if let Some(mf) = om.get("managedFields") {
            new["metadata"]["managedFields"] = mf.clone();
        }
        if deleting(old) {
            let oldf = finalizers(old);
            let added: Vec<String> = finalizers(&new)
                .into_iter()
                .filter(|f| !oldf.contains(f))
                .collect();
            if !added.is_empty() {
                return Err(ApiError::invalid(
                    &def.kind,
                    &def.group,
                    &name,
                    vec![cause("FieldValueForbidden", "metadata.finalizers", format!("Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{{{:?}}}", added.join("\", \"")))],
                ));
            }
        }
        if def.kind == "Secret"
            && old["immutable"].as_bool() == Some(true)
            && (old["data"] != new["data"] || new["immutable"] != old["immutable"])
        {
            return Err(ApiError::invalid(
                &def.kind,
                "",
                &name,
                vec![cause(
                    "FieldValueForbidden",
                    "data",
                    "Forbidden: field is immutable when `immutable` is set",
                )],
            ));
        }
        if om["generation"].is_i64() && spec_changed(def, old, &new) {
            new["metadata"]["generation"] = json!(om["generation"].as_i64().unwrap_or(0) + 1);
        }
        Ok(new)
    }

    /// PUT an object (main resource, `/status` or `/finalize`).
    pub fn update(
        &self,
        t: &Target,
        body: &[u8],
        ctype: &str,
        q: &Query,
    ) -> Result<Reply, ApiError> {
        let mut obj = decode_body(body, ctype)?;
        check_shape(&t.def, &mut obj)?;
        let name = t.name.clone().unwrap_or_default();
        if obj.is_object() && obj["metadata"].is_object() && obj["metadata"]["name"].is_null() {
            obj["metadata"]["name"] = json!(name);
        }
        let want_rv = obj["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let warnings = self.admit(&t.def, &mut obj, t.ns.as_deref(), q)?;
        if want_rv.is_empty() && !t.def.builtin {
            return Err(ApiError::invalid(
                &t.def.kind,
                &t.def.group,
                &name,
                vec![cause(
                    "FieldValueInvalid",
                    "metadata.resourceVersion",
                    "Invalid value: 0: must be specified for an update",
                )],
            ));
        }
        self.write_existing(t, q, Some(&want_rv), warnings, move |_old| Ok(obj))
    }

    /// Applies `f(old)` as an update with RV precondition `want_rv` (if non-empty).
    fn write_existing(
        &self,
        t: &Target,
        q: &Query,
        want_rv: Option<&str>,
        warnings: Vec<String>,
        f: impl FnOnce(&Value) -> Result<Value, ApiError>,
    ) -> Result<Reply, ApiError> {
        let name = t.name.clone().unwrap_or_default();
        let ns = t.ns.clone().unwrap_or_default();
        let def = t.def.clone();
        let dry = dry_run(q);
        let out = self.store.write(|st, rv, batch| {
            let mut tx = Tx { st, rv, batch };
            let old = tx
                .get(&def.storage, &ns, &name)
                .ok_or_else(|| ApiError::not_found(&def.group, &def.plural, &name))?;
            if let Some(w) = want_rv.filter(|w| !w.is_empty()) {
                if old["metadata"]["resourceVersion"].as_str() != Some(w) {
                    return Err(ApiError::conflict(&def.group, &def.plural, &name));
                }
            }
            let mut new = f(&old)?;
            // Admission sees the object as written (before the generation is computed, so a
            // change its defaults undo is no change).
            if t.sub.is_none() && !deleting(&old) {
                self.review(
                    tx.st,
                    &def,
                    admission::Operation::Update,
                    Some(&old),
                    &mut new,
                )?;
            }
            let new = self.merge_update(&def, t.sub.as_deref(), &old, new)?;
            let mut cmp_new = new.clone();
            cmp_new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
            if cmp_new == old || dry {
                return Ok(if dry { new } else { old });
            }
            Ok(tx.put(&def.storage, new))
        })?;
        self.after_write(&t.def, Some(&out));
        Ok(Reply {
            code: 200,
            body: self.presented(&t.def, &out),
            warnings: warn(warnings),
        })
    }

    /// PATCH (json, merge, strategic, apply).
    pub fn patch(
        &self,
        t: &Target,
        body: &[u8],
        ctype: &str,
        q: &Query,
    ) -> Result<Reply, ApiError> {
        let ct = ctype
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        let accepted: &[&str] = if t.def.builtin {
            &[
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/apply-patch+yaml",
                "application/strategic-merge-patch+json",
            ]
        } else {
            &[
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/apply-patch+yaml",
            ]
        };
        if !accepted.contains(&ct.as_str()) {
            return Err(ApiError::unsupported_media(accepted));
        }
        let is_apply = ct == "application/apply-patch+yaml";
        let manager = q.get("fieldManager").unwrap_or_default().to_string();
        if is_apply && manager.is_empty() {
            return Err(ApiError::new(422, "Invalid", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch")
                .with_details(json!({"group": "meta.k8s.io", "kind": "PatchOptions", "causes": [{"reason": "FieldValueRequired", "message": "Required value: is required for apply patch", "field": "fieldManager"}]})));
        }
        if !is_apply && q.get("force").is_some() {
            return Err(ApiError::new(422, "Invalid", "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch")
                .with_details(json!({"group": "meta.k8s.io", "kind": "PatchOptions", "causes": [{"reason": "FieldValueForbidden", "message": "Forbidden: may not be specified for non-apply patch", "field": "force"}]})));
        }
        let p = decode_body(body, if is_apply { "yaml" } else { "json" })?;
        let name = t.name.clone().unwrap_or_default();
        if is_apply {
            return self.apply(t, p, &manager, q.flag("force"), q);
        }
        let want_rv = p["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let def = t.def.clone();
        let ns = t.ns.clone();
        let q2 = q.clone();
        let mut warnings = vec![];
        let warn_ref = &mut warnings;
        let reply = self.write_existing(t, q, Some(&want_rv), vec![], |old| {
            let mut doc = present(&def, old);
            match ct.as_str() {
                "application/json-patch+json" => patch::json_patch(&mut doc, &p).map_err(|e| {
                    ApiError::new(
                        422,
                        "Invalid",
                        format!(
                            "the server rejected our request due to an error in our request: {e}"
                        ),
                    )
                })?,
                "application/merge-patch+json" => {
                    if !p.is_object() {
                        return Err(ApiError::bad_request("a merge patch must be a JSON object"));
                    }
                    patch::merge_patch(&mut doc, &p)
                }
                _ => {
                    if !p.is_object() {
                        return Err(ApiError::bad_request(
                            "a strategic merge patch must be a JSON object",
                        ));
                    }
                    patch::strategic_merge(&mut doc, &p)
                }
            }
            check_shape(&def, &mut doc)?;
            if doc["metadata"]["name"].is_null() {
                doc["metadata"]["name"] = json!(name);
            }
            *warn_ref = self.admit(&def, &mut doc, ns.as_deref(), &q2)?;
            Ok(doc)
        })?;
        Ok(Reply {
            warnings: warn(warnings),
            ..reply
        })
    }

    /// Server-side apply (managedFields-light: per-manager applied field sets in
    /// `metadata.managedFields`, removal of dropped fields, conflicts between Apply managers).
    fn apply(
        &self,
        t: &Target,
        mut applied: Value,
        manager: &str,
        force: bool,
        q: &Query,
    ) -> Result<Reply, ApiError> {
        let def = t.def.clone();
        let name = t.name.clone().unwrap_or_default();
        let ns = t.ns.clone().unwrap_or_default();
        if !applied.is_object() {
            return Err(ApiError::bad_request("an apply patch must be an object"));
        }
        check_shape(&def, &mut applied)?;
        if applied["apiVersion"].as_str() != Some(&def.api_version()) {
            return Err(ApiError::bad_request(format!(
                "Incorrect version specified in apply patch. Specified patch version: {}, expected: {}",
                applied["apiVersion"].as_str().unwrap_or_default(),
                def.api_version()
            )));
        }
        if applied["kind"].as_str() != Some(&def.kind) {
            return Err(ApiError::bad_request(format!(
                "invalid object type: {}",
                applied["kind"].as_str().unwrap_or_default()
            )));
        }
        if !applied["metadata"]["managedFields"].is_null() {
            return Err(ApiError::bad_request("metadata.managedFields must be nil"));
        }
        if let Some(n) = applied["metadata"]["name"].as_str() {
            if n != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
        }
        applied["metadata"]["name"] = json!(name);
        let want_rv = applied["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if let Some(m) = applied["metadata"].as_object_mut() {
            m.remove("resourceVersion");
        }
        let subresource = t.sub.clone().unwrap_or_default();
        let exists = self
            .store
            .state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&def.storage, &ns, &name)
            .is_some();
        let fields = patch::field_set(&applied);
        if !exists {
            let managed = json!([managed_entry(manager, &def, &subresource, &fields)]);
            let mut r = self.create_value(t, applied, q, Some(managed))?;
            r.code = 201;
            return Ok(r);
        }
        let mut warnings = vec![];
        let warn_ref = &mut warnings;
        let q2 = q.clone();
        let reply = self.write_existing(t, q, Some(&want_rv), vec![], |old| {
            let mut doc = present(&def, old);
            let mut managed: Vec<Value> = old["metadata"]["managedFields"].as_array().cloned().unwrap_or_default();
            // Conflicts with other Apply managers of the same subresource.
            let mut conflicts = vec![];
            for m in managed.iter_mut() {
                if m["manager"].as_str() == Some(manager) || m["operation"].as_str() != Some("Apply") || m["subresource"].as_str().unwrap_or_default() != subresource {
                    continue;
                }
                let owned: Vec<String> = m["fieldsV1"]["x-kstash-paths"].as_array().into_iter().flatten().filter_map(|s| s.as_str().map(String::from)).collect();
                let mut keep = vec![];
                for f in owned {
                    if fields.contains(&f) && patch::get_path(&doc, &f) != patch::get_path(&applied, &f) {
                        if force {
                            continue;
                        }
                        conflicts.push((m["manager"].as_str().unwrap_or_default().to_string(), f.clone()));
                    }
                    keep.push(f);
                }
                m["fieldsV1"]["x-kstash-paths"] = json!(keep);
            }
            if !conflicts.is_empty() {
                let causes: Vec<Value> = conflicts
                    .iter()
                    .map(|(m, f)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{m}\" using {}", def.api_version()), "field": format!(".{f}")}))
                    .collect();
                let lines: Vec<String> = conflicts.iter().map(|(m, f)| format!("conflict with \"{m}\" using {}: .{f}", def.api_version())).collect();
                let msg = if lines.len() == 1 {
                    format!("Apply failed with 1 conflict: {}", lines[0])
                } else {
                    format!("Apply failed with {} conflicts: {}", lines.len(), lines.join("\n"))
                };
                return Err(ApiError::new(409, "Conflict", msg).with_details(json!({"name": name, "group": def.group, "kind": def.plural, "causes": causes})));
            }
            // Removal of fields this manager applied before and no longer applies.
            let prev: Vec<String> = managed
                .iter()
                .find(|m| m["manager"].as_str() == Some(manager) && m["operation"].as_str() == Some("Apply") && m["subresource"].as_str().unwrap_or_default() == subresource)
                .map(|m| m["fieldsV1"]["x-kstash-paths"].as_array().into_iter().flatten().filter_map(|s| s.as_str().map(String::from)).collect())
                .unwrap_or_default();
            for f in prev {
                if fields.contains(&f) {
                    continue;
                }
                let owned_by_other = managed.iter().any(|m| {
                    m["manager"].as_str() != Some(manager) && m["fieldsV1"]["x-kstash-paths"].as_array().is_some_and(|a| a.iter().any(|x| x.as_str() == Some(f.as_str())))
                });
                if !owned_by_other {
                    patch::remove_path(&mut doc, &f);
                }
            }
            patch::apply_merge(&mut doc, &applied);
            managed.retain(|m| !(m["manager"].as_str() == Some(manager) && m["operation"].as_str() == Some("Apply") && m["subresource"].as_str().unwrap_or_default() == subresource));
            managed.push(managed_entry(manager, &def, &subresource, &fields));
            *warn_ref = self.admit(&def, &mut doc, t.ns.as_deref(), &q2)?;
            doc["metadata"]["managedFields"] = json!(managed);
            doc["__apply"] = json!(true);
            Ok(doc)
        })?;
        Ok(Reply {
            warnings: warn(warnings),
            ..reply
        })
    }

    /// DELETE one object.
    pub fn delete(&self, t: &Target, body: &[u8], q: &Query) -> Result<Reply, ApiError> {
        let opts = delete_options(body, q)?;
        let name = t.name.clone().unwrap_or_default();
        let ns = t.ns.clone().unwrap_or_default();
        let def = t.def.clone();
        let dry = dry_run(q)
            || opts["dryRun"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == "All"));
        let out = self.store.write(|st, rv, batch| {
            let mut tx = Tx { st, rv, batch };
            let old = tx
                .get(&def.storage, &ns, &name)
                .ok_or_else(|| ApiError::not_found(&def.group, &def.plural, &name))?;
            let pre = &opts["preconditions"];
            if let Some(u) = pre["uid"].as_str() {
                if old["metadata"]["uid"].as_str() != Some(u) {
                    return Err(ApiError::conflict(&def.group, &def.plural, &name));
                }
            }
            if let Some(r) = pre["resourceVersion"].as_str() {
                if old["metadata"]["resourceVersion"].as_str() != Some(r) {
                    return Err(ApiError::conflict(&def.group, &def.plural, &name));
                }
            }
            if dry {
                return Ok((old, false));
            }
            let extra = propagation_finalizer(&def, &opts);
            if deleting(&old) {
                return Ok((old, false));
            }
            Ok(tx.delete(&def.storage, old, extra))
        })?;
        self.after_write(&t.def, None);
        let (obj, gone) = out;
        if gone {
            return Ok(Reply::ok(
                200,
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                    "details": {"name": name, "group": def.group, "kind": def.plural, "uid": obj["metadata"]["uid"]}}),
            ));
        }
        Ok(Reply::ok(200, self.presented(&def, &obj)))
    }

    /// DELETE a collection (selectors apply); answers the List of deleted objects.
    pub fn delete_collection(&self, t: &Target, body: &[u8], q: &Query) -> Result<Reply, ApiError> {
        let opts = delete_options(body, q)?;
        let sel = Selectors::from_query(q)?;
        let def = t.def.clone();
        let ns = t.ns.clone();
        let extra = propagation_finalizer(&def, &opts);
        let items = self.store.write(|st, rv, batch| {
            let mut tx = Tx { st, rv, batch };
            let mut out = vec![];
            for o in st.list(&def.storage, ns.as_deref()) {
                if !sel.matches(&o) || deleting(&o) {
                    continue;
                }
                let (obj, _) = tx.delete(&def.storage, (*o).clone(), extra);
                out.push(present(&def, &obj));
            }
            Ok(out)
        })?;
        self.after_write(&t.def, None);
        Ok(Reply::ok(
            200,
            json!({"kind": format!("{}List", def.kind), "apiVersion": def.api_version(), "metadata": {"resourceVersion": self.store.rv().to_string()}, "items": items}),
        ))
    }
}

fn warn(dropped: Vec<String>) -> Vec<String> {
    dropped
        .into_iter()
        .map(|d| format!("unknown field \"{d}\""))
        .collect()
}

fn managed_entry(
    manager: &str,
    def: &ResourceDef,
    sub: &str,
    fields: &std::collections::BTreeSet<String>,
) -> Value {
    let mut e = json!({"manager": manager, "operation": "Apply", "apiVersion": def.api_version(), "time": objects::now(),
        "fieldsType": "FieldsV1", "fieldsV1": {"x-kstash-paths": fields.iter().collect::<Vec<_>>()}});
    if !sub.is_empty() {
        e["subresource"] = json!(sub);
    }
    e
}

fn delete_options(body: &[u8], q: &Query) -> Result<Value, ApiError> {
    // A protobuf-encoded DeleteOptions (`k8s\0` envelope, sent by Helm's client for Secrets):
    // its options are not decoded; the defaults (background propagation, no preconditions) apply.
    let mut opts = if body.iter().all(|b| b.is_ascii_whitespace()) || body.starts_with(b"k8s\0") {
        json!({})
    } else {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?;
        if !v.is_object() {
            return Err(ApiError::bad_request("DeleteOptions must be a JSON object"));
        }
        v
    };
    if let Some(p) = q.get("propagationPolicy") {
        opts["propagationPolicy"] = json!(p);
    }
    if let Some(p) = opts["propagationPolicy"].as_str() {
        if !matches!(p, "Background" | "Foreground" | "Orphan") {
            return Err(ApiError::new(422, "Invalid", format!("DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\"")));
        }
    }
    if q.get("orphanDependents") == Some("true") || opts["orphanDependents"].as_bool() == Some(true)
    {
        opts["propagationPolicy"] = json!("Orphan");
    }
    Ok(opts)
}

fn propagation_finalizer(_def: &ResourceDef, opts: &Value) -> Option<&'static str> {
    match opts["propagationPolicy"].as_str() {
        Some("Foreground") => Some("foregroundDeletion"),
        Some("Orphan") => Some("orphan"),
        _ => None,
    }
}

fn crd_errors(obj: &Value) -> Vec<Cause> {
    let mut errs = vec![];
    let spec = &obj["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let plural = spec["names"]["plural"].as_str().unwrap_or_default();
    if group.is_empty() {
        errs.push(cause("FieldValueRequired", "spec.group", "Required value"));
    }
    if plural.is_empty() {
        errs.push(cause(
            "FieldValueRequired",
            "spec.names.plural",
            "Required value",
        ));
    }
    if spec["names"]["kind"]
        .as_str()
        .unwrap_or_default()
        .is_empty()
    {
        errs.push(cause(
            "FieldValueRequired",
            "spec.names.kind",
            "Required value",
        ));
    }
    if !matches!(spec["scope"].as_str(), Some("Namespaced") | Some("Cluster")) {
        errs.push(cause(
            "FieldValueNotSupported",
            "spec.scope",
            format!(
                "Unsupported value: {}: supported values: \"Cluster\", \"Namespaced\"",
                spec["scope"]
            ),
        ));
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        errs.push(cause(
            "FieldValueInvalid",
            "spec.versions",
            "Invalid value: null: must have exactly one version marked as storage version",
        ));
    }
    if versions
        .iter()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .count()
        != 1
        && !versions.is_empty()
    {
        errs.push(cause(
            "FieldValueInvalid",
            "spec.versions",
            "Invalid value: must have exactly one version marked as storage version",
        ));
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        errs.push(cause(
            "FieldValueInvalid",
            "metadata.name",
            format!("Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        if !v["schema"]["openAPIV3Schema"].is_object() {
            errs.push(cause(
                "FieldValueRequired",
                &format!("spec.versions[{i}].schema.openAPIV3Schema"),
                "Required value: schemas are required",
            ));
        }
    }
    errs
}

fn crd_status(obj: &Value) -> Value {
    let names = obj["spec"]["names"].clone();
    let mut accepted = names.clone();
    if accepted["singular"].is_null() {
        accepted["singular"] = json!(names["kind"].as_str().unwrap_or_default().to_lowercase());
    }
    if accepted["listKind"].is_null() {
        accepted["listKind"] = json!(format!(
            "{}List",
            names["kind"].as_str().unwrap_or_default()
        ));
    }
    let storage: Vec<Value> = obj["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .map(|v| v["name"].clone())
        .collect();
    let t = obj["status"]["conditions"][0]["lastTransitionTime"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(objects::now);
    json!({
        "acceptedNames": accepted,
        "storedVersions": storage,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": t},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": t}
        ]
    })
}

/// Shared API handle.
pub type SharedApi = Arc<Api>;
