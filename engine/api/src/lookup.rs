//! What the admission rules ([`crate::admission`]) and the tenancy rules ([`crate::tenancy`])
//! share: the error naming a field, the stored objects a rule consults, and the usage policy a
//! stored object is held to. Both rule sets depend on this module, never on each other's
//! internals.

use std::collections::BTreeMap;

use crate::core::HookTemplate;
use crate::shared::{FromNamespaces, UsagePolicy};
use crate::storage::{BackupStorage, Repository, RetentionPolicy};

/// A rejected admission: the offending field path and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct AdmissionError {
    /// Field path, e.g. `spec.sessions[0].repositories[0].directory`.
    pub field: String,
    /// Reason.
    pub reason: String,
}

/// Existing cluster objects the rules consult.
#[derive(Clone, Debug, Default)]
pub struct Lookup {
    /// All BackupStorages (every namespace).
    pub backup_storages: Vec<BackupStorage>,
    /// All RetentionPolicies.
    pub retention_policies: Vec<RetentionPolicy>,
    /// All Repositories.
    pub repositories: Vec<Repository>,
    /// All HookTemplates.
    pub hook_templates: Vec<HookTemplate>,
    /// Namespace name → labels (a namespace missing here has no labels).
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

impl Lookup {
    /// The labels of namespace `ns` (none when it is not known).
    pub fn ns_labels(&self, ns: &str) -> BTreeMap<String, String> {
        self.namespaces.get(ns).cloned().unwrap_or_default()
    }
}

/// The usage policy a stored object is held to: its own with KubeStash's webhook defaults
/// applied (missing policy or missing `from` → `Same`). Objects written where no mutating webhook
/// ran (the embedded control plane, a cluster without kstash's webhook) are read through this,
/// so a BackupStorage without `usagePolicy` serves its own namespace and no other.
pub fn effective_usage_policy(p: Option<&UsagePolicy>) -> UsagePolicy {
    let mut policy = p.cloned();
    default_usage_policy(&mut policy);
    policy.unwrap_or_else(UsagePolicy::same)
}

/// Defaults a missing usage policy (or a missing `from`) to `Same`.
pub(crate) fn default_usage_policy(p: &mut Option<UsagePolicy>) {
    let policy = p.get_or_insert_with(UsagePolicy::same);
    let an = policy
        .allowed_namespaces
        .get_or_insert_with(Default::default);
    if an.from.is_none() {
        an.from = Some(FromNamespaces::Same);
    }
}
