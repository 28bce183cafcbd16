//! One admission request decided as KubeStash's webhooks decide it: the mutating defaults, then
//! the validation, for every kind that has rules in [`crate::admission`]. Pure: the caller
//! supplies the stored objects the rules consult ([`Lookup`]).
//!
//! The embedded control plane calls [`review`] inside its write path, so `kubectl apply` of an
//! invalid object fails at once with the message a webhook denial gives; a cluster-side webhook
//! server answers an `AdmissionReview` with the same function. The controllers check the same
//! rules again (as `ValidationPassed`) for objects that were written where no webhook ran.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::addons::Function;
use crate::admission::{self as rules, AdmissionError, Lookup};
use crate::core::{
    BackupBlueprint, BackupConfiguration, BackupSession, HookTemplate, RestoreSession,
};
use crate::storage::{BackupStorage, Repository, RetentionPolicy};

/// The operation being admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// A new object.
    Create,
    /// A change of the object's main resource (not of its `status` subresource).
    Update,
}

/// A denied request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// A rule refused the object.
    #[error("admission webhook \"{webhook}\" denied the request: {error}")]
    Rule {
        /// The webhook's name, `<kind>.<group>` in lower case.
        webhook: String,
        /// The field and the reason.
        error: AdmissionError,
    },
    /// The object does not decode as its kind.
    #[error("admission webhook \"{webhook}\" denied the request: the object is not a valid {kind}: {reason}")]
    Decode {
        /// The webhook's name.
        webhook: String,
        /// The kind.
        kind: String,
        /// serde's message (names the field).
        reason: String,
    },
}

impl Denied {
    /// The offending field path (`spec.default`), when a rule named one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Denied::Rule { error, .. } => Some(&error.field),
            Denied::Decode { .. } => None,
        }
    }
}

/// Whether kstash has admission rules for `group`/`kind` (others are admitted untouched).
pub fn reviews(group: &str, kind: &str) -> bool {
    matches!(
        (group, kind),
        (
            "core.kubestash.com",
            "BackupConfiguration"
                | "BackupSession"
                | "BackupBlueprint"
                | "RestoreSession"
                | "HookTemplate"
        ) | (
            "storage.kubestash.com",
            "BackupStorage" | "Repository" | "RetentionPolicy"
        ) | ("addons.kubestash.com", "Function")
    )
}

/// Whether the rules of `kind` consult the [`Lookup`] (others take an empty one: a server can
/// skip gathering the stored objects).
pub fn consults_lookup(kind: &str) -> bool {
    matches!(
        kind,
        "BackupConfiguration" | "RestoreSession" | "BackupStorage" | "RetentionPolicy"
    )
}

/// An update that leaves `spec` as it was (labels, annotations, finalizers, owner references):
/// admitted untouched. The rules are about `spec`; refusing such
/// an update would keep the operator from adding or removing its finalizer on an object that
/// got in unchecked (written before an upgrade, or while no webhook answered), leaving it stuck
/// in deletion and without the condition that reports why it is invalid.
fn metadata_only(op: Operation, old: Option<&Value>, object: &Value) -> bool {
    op == Operation::Update && old.is_some_and(|old| old.get("spec") == object.get("spec"))
}

/// Decides one request: `Ok(Some(object))` admits the object as mutated by the defaults,
/// `Ok(None)` admits it unchanged (no rules for the kind), `Err` denies it.
pub fn review(
    group: &str,
    kind: &str,
    op: Operation,
    old: Option<&Value>,
    object: &Value,
    lookup: &Lookup,
) -> Result<Option<Value>, Denied> {
    if !reviews(group, kind) || metadata_only(op, old, object) {
        return Ok(None);
    }
    let webhook = format!("{}.{group}", kind.to_lowercase());
    let r = Reviewer {
        webhook: &webhook,
        kind,
        op,
        old,
        object,
    };
    // Every arm that reads `lookup` is listed in `consults_lookup`.
    match kind {
        "BackupConfiguration" => r.run(|bc: &mut BackupConfiguration, _| {
            rules::default_backup_configuration(bc, lookup);
            rules::validate_backup_configuration(bc, lookup)?;
            rules::kstash_limits(bc)
        }),
        "BackupSession" => r.run(
            |bs: &mut BackupSession, old: Option<BackupSession>| match old {
                Some(old) => rules::validate_backup_session_update(&old, bs),
                None => Ok(()),
            },
        ),
        "BackupBlueprint" => r.run(|bp: &mut BackupBlueprint, _| {
            rules::default_backup_blueprint(bp);
            rules::validate_backup_blueprint(bp)
        }),
        "RestoreSession" => r.run(|rs: &mut RestoreSession, _| {
            rules::validate_restore_session(rs, lookup)?;
            rules::kstash_restore_limits(rs)
        }),
        "HookTemplate" => r.run(|ht: &mut HookTemplate, _| {
            rules::default_hook_template(ht);
            rules::validate_hook_template(ht)
        }),
        "BackupStorage" => r.run(|bs: &mut BackupStorage, old: Option<BackupStorage>| {
            rules::default_backup_storage(bs);
            rules::validate_backup_storage(old.as_ref(), bs, lookup)
        }),
        "Repository" => r.run(|repo: &mut Repository, old: Option<Repository>| match old {
            Some(old) => rules::validate_repository_update(&old, repo),
            None => Ok(()),
        }),
        "RetentionPolicy" => r.run(|rp: &mut RetentionPolicy, _| {
            rules::default_retention_policy(rp);
            rules::validate_retention_policy(rp, lookup)
        }),
        "Function" => r.run(|f: &mut Function, _| rules::validate_function(f)),
        _ => Ok(None),
    }
}

struct Reviewer<'a> {
    webhook: &'a str,
    kind: &'a str,
    op: Operation,
    old: Option<&'a Value>,
    object: &'a Value,
}

impl Reviewer<'_> {
    fn decode<K: DeserializeOwned>(&self, v: &Value) -> Result<K, Denied> {
        serde_json::from_value(v.clone()).map_err(|e| Denied::Decode {
            webhook: self.webhook.to_string(),
            kind: self.kind.to_string(),
            reason: e.to_string(),
        })
    }

    /// Decodes the object (and the stored one on update), applies `rule`, and merges the `spec`
    /// the defaults produced back into the object as sent, so fields the typed model does not
    /// know survive.
    fn run<K: DeserializeOwned + Serialize>(
        &self,
        rule: impl FnOnce(&mut K, Option<K>) -> Result<(), AdmissionError>,
    ) -> Result<Option<Value>, Denied> {
        let mut typed: K = self.decode(self.object)?;
        let old = match (self.op, self.old) {
            (Operation::Update, Some(o)) => Some(self.decode(o)?),
            _ => None,
        };
        rule(&mut typed, old).map_err(|error| Denied::Rule {
            webhook: self.webhook.to_string(),
            error,
        })?;
        let defaulted = serde_json::to_value(&typed).map_err(|e| Denied::Decode {
            webhook: self.webhook.to_string(),
            kind: self.kind.to_string(),
            reason: e.to_string(),
        })?;
        // The defaults only ever set `spec` fields; metadata and status stay as sent.
        let mut out = self.object.clone();
        if let (Some(spec), Some(slot)) = (defaulted.get("spec"), out.get_mut("spec")) {
            merge_defaults(slot, spec);
        }
        Ok(Some(out))
    }
}

/// Overlays the non-null values of `defaulted` onto `out` (objects recursively; arrays and
/// scalars replaced), leaving keys `defaulted` does not have untouched.
fn merge_defaults(out: &mut Value, defaulted: &Value) {
    match (out, defaulted) {
        (Value::Object(o), Value::Object(d)) => {
            for (k, v) in d {
                if v.is_null() {
                    continue;
                }
                match o.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge_defaults(slot, v),
                    _ => {
                        o.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (slot, d) => *slot = d.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn storage(name: &str, default: bool, bucket: &str) -> Value {
        json!({"apiVersion": "storage.kubestash.com/v1alpha1", "kind": "BackupStorage",
               "metadata": {"name": name, "namespace": "demo"},
               "spec": {"default": default, "deletionPolicy": "WipeOut",
                        "storage": {"provider": "s3", "s3": {"bucket": bucket, "endpoint": "http://s3/", "prefix": "p/"}},
                        "x-unknown": 1}})
    }

    #[test]
    fn backup_storage_defaults_and_one_default_per_namespace() {
        let first = storage("a", true, "one");
        let out = review(
            "storage.kubestash.com",
            "BackupStorage",
            Operation::Create,
            None,
            &first,
            &Lookup::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            out["spec"]["usagePolicy"]["allowedNamespaces"]["from"],
            "Same"
        );
        assert_eq!(out["spec"]["storage"]["s3"]["prefix"], "p");
        assert_eq!(
            out["spec"]["x-unknown"], 1,
            "unknown fields survive the defaults"
        );

        let lookup = Lookup {
            backup_storages: vec![serde_json::from_value(first).unwrap()],
            ..Default::default()
        };
        let second = storage("b", true, "two");
        let e = review(
            "storage.kubestash.com",
            "BackupStorage",
            Operation::Create,
            None,
            &second,
            &lookup,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "admission webhook \"backupstorage.storage.kubestash.com\" denied the request: spec.default: multiple default BackupStorages are not allowed within the same namespace"
        );
        assert_eq!(e.field(), Some("spec.default"));
    }

    #[test]
    fn backup_session_spec_is_immutable_and_status_free() {
        let bs = json!({"apiVersion": "core.kubestash.com/v1alpha1", "kind": "BackupSession",
                        "metadata": {"name": "s", "namespace": "demo"},
                        "spec": {"invoker": {"apiGroup": "core.kubestash.com", "kind": "BackupConfiguration", "name": "bc"}, "session": "frequent-backup"}});
        assert!(review(
            "core.kubestash.com",
            "BackupSession",
            Operation::Create,
            None,
            &bs,
            &Lookup::default()
        )
        .is_ok());
        let mut changed = bs.clone();
        changed["spec"]["session"] = json!("other");
        let e = review(
            "core.kubestash.com",
            "BackupSession",
            Operation::Update,
            Some(&bs),
            &changed,
            &Lookup::default(),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .ends_with("denied the request: spec: spec can not be updated"),
            "{e}"
        );
        let mut labelled = bs.clone();
        labelled["metadata"]["labels"] = json!({"a": "b"});
        assert!(review(
            "core.kubestash.com",
            "BackupSession",
            Operation::Update,
            Some(&bs),
            &labelled,
            &Lookup::default()
        )
        .is_ok());
    }

    #[test]
    fn metadata_only_updates_of_invalid_objects_are_admitted() {
        // Two defaults in one namespace (one got in unchecked): its finalizer still comes and
        // goes, a spec change is still refused.
        let first = storage("a", true, "one");
        let second = storage("b", true, "two");
        let lookup = Lookup {
            backup_storages: vec![
                serde_json::from_value(first).unwrap(),
                serde_json::from_value(second.clone()).unwrap(),
            ],
            ..Default::default()
        };
        let review_update = |new: &Value| {
            review(
                "storage.kubestash.com",
                "BackupStorage",
                Operation::Update,
                Some(&second),
                new,
                &lookup,
            )
        };
        let mut finalized = second.clone();
        finalized["metadata"]["finalizers"] = json!(["kstash.io/cleanup"]);
        assert_eq!(review_update(&finalized), Ok(None));
        let mut deleting = finalized.clone();
        deleting["metadata"]["deletionTimestamp"] = json!("2026-12-08T03:00:00Z");
        deleting["metadata"]["finalizers"] = json!([]);
        assert_eq!(review_update(&deleting), Ok(None));
        let mut changed = second.clone();
        changed["spec"]["storage"]["s3"]["prefix"] = json!("q");
        assert!(review_update(&changed).is_err());
    }

    #[test]
    fn undecodable_objects_are_denied_naming_the_kind_and_other_kinds_pass() {
        let bad =
            json!({"metadata": {"name": "x", "namespace": "demo"}, "spec": {"default": "yes"}});
        let e = review(
            "storage.kubestash.com",
            "BackupStorage",
            Operation::Create,
            None,
            &bad,
            &Lookup::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("not a valid BackupStorage"), "{e}");
        assert_eq!(
            review(
                "",
                "Secret",
                Operation::Create,
                None,
                &bad,
                &Lookup::default()
            ),
            Ok(None)
        );
    }
}
