//! kstash's admission rules as this control plane's hook: KubeStash's validating and mutating
//! webhooks ([`kstash_api::webhook::review`]), with the stored BackupStorages,
//! RetentionPolicies, Repositories, HookTemplates and namespace labels as their lookup. `kstash
//! up` and `kstash controlplane` install it, so `kubectl apply` of an invalid object fails at once,
//! naming the field, as it does in a cluster where the webhooks run.

use std::collections::BTreeMap;

use kstash_api::admission::Lookup;
use kstash_api::webhook::{self, Operation};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::admission::{self, AdmissionHook, Denial, Review, StoredObjects};

/// The hook.
#[derive(Debug, Default, Clone, Copy)]
pub struct KstashAdmission;

fn decoded<K: DeserializeOwned>(stored: &dyn StoredObjects, group: &str, plural: &str) -> Vec<K> {
    stored
        .list(group, plural)
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect()
}

fn lookup(stored: &dyn StoredObjects) -> Lookup {
    let namespaces = stored
        .list("", "namespaces")
        .into_iter()
        .filter_map(|ns| {
            let name = ns["metadata"]["name"].as_str()?.to_string();
            let labels: BTreeMap<String, String> =
                serde_json::from_value(ns["metadata"]["labels"].clone()).unwrap_or_default();
            Some((name, labels))
        })
        .collect();
    Lookup {
        backup_storages: decoded(stored, "storage.kubestash.com", "backupstorages"),
        retention_policies: decoded(stored, "storage.kubestash.com", "retentionpolicies"),
        repositories: decoded(stored, "storage.kubestash.com", "repositories"),
        hook_templates: decoded(stored, "core.kubestash.com", "hooktemplates"),
        namespaces,
    }
}

impl AdmissionHook for KstashAdmission {
    fn review(
        &self,
        review: &Review<'_>,
        stored: &dyn StoredObjects,
    ) -> Result<Option<Value>, Denial> {
        if !webhook::reviews(review.group, review.kind) {
            return Ok(None);
        }
        let op = match review.operation {
            admission::Operation::Create => Operation::Create,
            admission::Operation::Update => Operation::Update,
        };
        webhook::review(
            review.group,
            review.kind,
            op,
            review.old,
            review.object,
            &lookup(stored),
        )
        .map_err(|d| Denial {
            message: d.to_string(),
        })
    }
}
