//! One `admission.k8s.io/v1` `AdmissionReview` in, its answer out: the pure translation between
//! the API server's webhook protocol and [`kstash_api::webhook::review`].
//!
//! - `POST /validate` ([`Hook::Validate`]): the verdict. A denial answers `allowed: false` with
//!   `status: {code: 403, reason: Forbidden, message}`, where `message` is the rule's
//!   `<field>: <reason>`; the API server prefixes it with `admission webhook "<name>" denied the
//!   request: `, `<name>` being the configuration's webhook name (`<kind>.<group>`), so a
//!   client sees exactly what the embedded control plane answers.
//! - `POST /mutate` ([`Hook::Mutate`]): the defaults, as an RFC 6902 JSON patch from the object
//!   sent to the defaulted one (`patchType: JSONPatch`, base64). An object the rules refuse is
//!   let through unpatched here: the validating webhook, which runs after every mutation,
//!   refuses it with the message.
//!
//! Only `CREATE` and `UPDATE` of a main resource are reviewed; `DELETE`, `CONNECT` and
//! subresources (`status`) are allowed untouched, as are kinds without rules.

use base64::Engine;
use kstash_api::admission::Lookup;
use kstash_api::webhook::{self, Denied, Operation};
use serde::Deserialize;
use serde_json::{json, Value};

/// The `AdmissionReview` apiVersion served.
pub const API_VERSION: &str = "admission.k8s.io/v1";

/// Which webhook a request is for (by the path it was sent to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `POST /validate`: allow or deny.
    Validate,
    /// `POST /mutate`: the defaults as a JSON patch.
    Mutate,
}

impl Hook {
    /// The hook served at `path`, if any.
    pub fn from_path(path: &str) -> Option<Hook> {
        match path {
            "/validate" => Some(Hook::Validate),
            "/mutate" => Some(Hook::Mutate),
            _ => None,
        }
    }

    /// The path the hook is served at.
    pub fn path(self) -> &'static str {
        match self {
            Hook::Validate => "/validate",
            Hook::Mutate => "/mutate",
        }
    }
}

/// A request body that is not a reviewable `AdmissionReview` (answered with HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadReview {
    /// Not JSON, or not shaped like an `AdmissionReview`.
    #[error("the body is not an admission.k8s.io/v1 AdmissionReview: {0}")]
    Decode(String),
    /// Another apiVersion or kind.
    #[error("got {0}; only apiVersion admission.k8s.io/v1, kind AdmissionReview is served (set admissionReviewVersions: [v1] on the webhook)")]
    Version(String),
    /// No `request`.
    #[error("the AdmissionReview has no request")]
    NoRequest,
    /// A `CREATE` or `UPDATE` without the object it is about.
    #[error("request {uid}: {operation} without request.{field}")]
    Missing {
        /// The request's uid.
        uid: String,
        /// `CREATE` or `UPDATE`.
        operation: String,
        /// `object` or `oldObject`.
        field: &'static str,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    request: Option<RequestIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestIn {
    uid: String,
    kind: KindIn,
    #[serde(default)]
    sub_resource: Option<String>,
    operation: String,
    #[serde(default)]
    object: Option<Value>,
    #[serde(default)]
    old_object: Option<Value>,
}

#[derive(Deserialize)]
struct KindIn {
    #[serde(default)]
    group: String,
    kind: String,
}

/// The message a webhook answers for `d`: the rule's `<field>: <reason>` (or the decoding
/// error), without the `admission webhook "…" denied the request: ` prefix the API server adds.
pub fn denial_message(d: &Denied) -> String {
    let (Denied::Rule { webhook, .. } | Denied::Decode { webhook, .. }) = d;
    let full = d.to_string();
    let prefix = format!("admission webhook \"{webhook}\" denied the request: ");
    match full.strip_prefix(&prefix) {
        Some(m) => m.to_string(),
        None => full,
    }
}

/// The RFC 6902 patch that turns `from` into `to` (empty when they are equal).
pub fn json_patch(from: &Value, to: &Value) -> Value {
    serde_json::to_value(json_patch::diff(from, to)).unwrap_or_else(|_| json!([]))
}

/// Answers one `AdmissionReview` body for `hook`; `lookup` is called only when a rule needs
/// the stored objects.
pub fn answer(
    hook: Hook,
    body: &[u8],
    lookup: impl FnOnce() -> Lookup,
) -> Result<Value, BadReview> {
    let review: ReviewIn =
        serde_json::from_slice(body).map_err(|e| BadReview::Decode(e.to_string()))?;
    if review.api_version != API_VERSION || review.kind != "AdmissionReview" {
        return Err(BadReview::Version(format!(
            "apiVersion {:?}, kind {:?}",
            review.api_version, review.kind
        )));
    }
    let req = review.request.ok_or(BadReview::NoRequest)?;
    let response = decide(hook, &req, lookup)?;
    Ok(json!({"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}))
}

fn decide(
    hook: Hook,
    req: &RequestIn,
    lookup: impl FnOnce() -> Lookup,
) -> Result<Value, BadReview> {
    let allowed = json!({"uid": req.uid, "allowed": true});
    let op = match req.operation.as_str() {
        "CREATE" => Operation::Create,
        "UPDATE" => Operation::Update,
        _ => return Ok(allowed),
    };
    if req.sub_resource.as_deref().is_some_and(|s| !s.is_empty())
        || !webhook::reviews(&req.kind.group, &req.kind.kind)
    {
        return Ok(allowed);
    }
    let missing = |field| BadReview::Missing {
        uid: req.uid.clone(),
        operation: req.operation.clone(),
        field,
    };
    let object = req.object.as_ref().ok_or_else(|| missing("object"))?;
    let old = match op {
        Operation::Update => Some(
            req.old_object
                .as_ref()
                .ok_or_else(|| missing("oldObject"))?,
        ),
        Operation::Create => None,
    };
    let lookup = if webhook::consults_lookup(&req.kind.kind) {
        lookup()
    } else {
        Lookup::default()
    };
    let verdict = webhook::review(&req.kind.group, &req.kind.kind, op, old, object, &lookup);
    Ok(match (hook, verdict) {
        (Hook::Validate, Ok(_)) => allowed,
        (Hook::Validate, Err(d)) => json!({
            "uid": req.uid,
            "allowed": false,
            "status": {"code": 403, "reason": "Forbidden", "message": denial_message(&d)},
        }),
        (Hook::Mutate, Ok(Some(defaulted))) => {
            let patch = json_patch(object, &defaulted);
            if patch.as_array().is_none_or(|a| a.is_empty()) {
                allowed
            } else {
                let bytes = serde_json::to_vec(&patch).unwrap_or_default();
                json!({
                    "uid": req.uid,
                    "allowed": true,
                    "patchType": "JSONPatch",
                    "patch": base64::engine::general_purpose::STANDARD.encode(bytes),
                })
            }
        }
        // No rules for the kind, or refused: the validating webhook has the last word.
        (Hook::Mutate, _) => allowed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(name: &str, default: bool) -> Value {
        json!({"apiVersion": "storage.kubestash.com/v1alpha1", "kind": "BackupStorage",
               "metadata": {"name": name, "namespace": "demo"},
               "spec": {"default": default, "deletionPolicy": "WipeOut",
                        "storage": {"provider": "s3", "s3": {"bucket": "b/", "endpoint": "http://s3/", "prefix": "p/"}}}})
    }

    fn review_body(op: &str, kind: (&str, &str), object: Value, old: Option<Value>) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": API_VERSION, "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": kind.0, "version": "v1alpha1", "kind": kind.1},
                "resource": {"group": kind.0, "version": "v1alpha1", "resource": "x"},
                "operation": op, "object": object, "oldObject": old,
                "userInfo": {"username": "admin"},
            }
        }))
        .unwrap()
    }

    const BS: (&str, &str) = ("storage.kubestash.com", "BackupStorage");

    #[test]
    fn allowed_answers_echo_the_uid_and_version() {
        let out = answer(
            Hook::Validate,
            &review_body("CREATE", BS, storage("a", true), None),
            Lookup::default,
        )
        .unwrap();
        assert_eq!(out["apiVersion"], API_VERSION);
        assert_eq!(out["kind"], "AdmissionReview");
        assert_eq!(
            out["response"],
            json!({"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": true})
        );
    }

    #[test]
    fn denials_carry_403_and_the_rule_message_without_the_api_servers_prefix() {
        let lookup = || Lookup {
            backup_storages: vec![serde_json::from_value(storage("a", true)).unwrap()],
            ..Default::default()
        };
        let out = answer(
            Hook::Validate,
            &review_body("CREATE", BS, storage("b", true), None),
            lookup,
        )
        .unwrap();
        assert_eq!(
            out["response"],
            json!({"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": false,
                   "status": {"code": 403, "reason": "Forbidden",
                              "message": "spec.default: multiple default BackupStorages are not allowed within the same namespace"}})
        );
        // What the API server shows is the embedded control plane's message.
        let d = webhook::review(
            BS.0,
            BS.1,
            Operation::Create,
            None,
            &storage("b", true),
            &lookup(),
        )
        .unwrap_err();
        assert_eq!(
            format!(
                "admission webhook \"backupstorage.storage.kubestash.com\" denied the request: {}",
                out["response"]["status"]["message"].as_str().unwrap()
            ),
            d.to_string()
        );
        // The mutating webhook lets it through unpatched: validation refuses it.
        let out = answer(
            Hook::Mutate,
            &review_body("CREATE", BS, storage("b", true), None),
            lookup,
        )
        .unwrap();
        assert_eq!(out["response"]["allowed"], true);
        assert!(out["response"].get("patch").is_none());
    }

    #[test]
    fn the_mutation_patch_applied_back_yields_the_defaulted_object() {
        let object = storage("a", false);
        let out = answer(
            Hook::Mutate,
            &review_body("CREATE", BS, object.clone(), None),
            Lookup::default,
        )
        .unwrap();
        let r = &out["response"];
        assert_eq!(r["allowed"], true);
        assert_eq!(r["patchType"], "JSONPatch");
        let patch: Vec<json_patch::PatchOperation> = serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(r["patch"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        let mut patched = object.clone();
        json_patch::patch(&mut patched, &patch).unwrap();
        let defaulted = webhook::review(
            BS.0,
            BS.1,
            Operation::Create,
            None,
            &object,
            &Lookup::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(patched, defaulted);
        assert_eq!(patched["spec"]["storage"]["s3"]["bucket"], "b");
        assert_eq!(
            patched["spec"]["usagePolicy"]["allowedNamespaces"]["from"],
            "Same"
        );
        // Defaulting the defaulted object changes nothing: no patch.
        let again = answer(
            Hook::Mutate,
            &review_body("CREATE", BS, defaulted, None),
            Lookup::default,
        )
        .unwrap();
        assert_eq!(
            again["response"],
            json!({"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": true})
        );
    }

    #[test]
    fn updates_compare_with_the_old_object() {
        let bs = json!({"apiVersion": "core.kubestash.com/v1alpha1", "kind": "BackupSession",
                        "metadata": {"name": "s", "namespace": "demo"},
                        "spec": {"invoker": {"apiGroup": "core.kubestash.com", "kind": "BackupConfiguration", "name": "bc"}, "session": "a"}});
        let mut changed = bs.clone();
        changed["spec"]["session"] = json!("b");
        let kind = ("core.kubestash.com", "BackupSession");
        let out = answer(
            Hook::Validate,
            &review_body("UPDATE", kind, changed.clone(), Some(bs.clone())),
            Lookup::default,
        )
        .unwrap();
        assert_eq!(out["response"]["allowed"], false);
        assert_eq!(
            out["response"]["status"]["message"],
            "spec: spec can not be updated"
        );
        let err = answer(
            Hook::Validate,
            &review_body("UPDATE", kind, changed, None),
            Lookup::default,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("UPDATE without request.oldObject"),
            "{err}"
        );
    }

    #[test]
    fn deletes_subresources_and_other_kinds_pass_untouched() {
        let bad =
            json!({"metadata": {"name": "x", "namespace": "demo"}, "spec": {"default": "yes"}});
        for (op, sub, kind) in [
            ("DELETE", None, BS),
            ("CONNECT", None, BS),
            ("UPDATE", Some("status"), BS),
            ("CREATE", None, ("", "Secret")),
        ] {
            let mut body: Value =
                serde_json::from_slice(&review_body(op, kind, bad.clone(), Some(bad.clone())))
                    .unwrap();
            if let Some(s) = sub {
                body["request"]["subResource"] = json!(s);
            }
            for hook in [Hook::Validate, Hook::Mutate] {
                let out = answer(hook, &serde_json::to_vec(&body).unwrap(), || {
                    panic!("no lookup for {op} {sub:?} {kind:?}")
                })
                .unwrap();
                assert_eq!(
                    out["response"],
                    json!({"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": true}),
                    "{op} {sub:?} {kind:?}"
                );
            }
        }
        // Undecodable objects of a reviewed kind are refused, naming the kind.
        let out = answer(
            Hook::Validate,
            &review_body("CREATE", BS, bad, None),
            Lookup::default,
        )
        .unwrap();
        let m = out["response"]["status"]["message"].as_str().unwrap();
        assert!(
            m.starts_with("the object is not a valid BackupStorage"),
            "{m}"
        );
    }

    #[test]
    fn bad_bodies_are_named() {
        let e = answer(Hook::Validate, b"not json", Lookup::default).unwrap_err();
        assert!(matches!(e, BadReview::Decode(_)), "{e}");
        let e = answer(
            Hook::Validate,
            br#"{"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"}"#,
            Lookup::default,
        )
        .unwrap_err();
        assert!(e.to_string().contains("admission.k8s.io/v1beta1"), "{e}");
        let e = answer(
            Hook::Validate,
            br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}"#,
            Lookup::default,
        )
        .unwrap_err();
        assert_eq!(e, BadReview::NoRequest);
        assert_eq!(Hook::from_path("/validate"), Some(Hook::Validate));
        assert_eq!(Hook::from_path(Hook::Mutate.path()), Some(Hook::Mutate));
        assert_eq!(Hook::from_path("/"), None);
    }
}
