//! What KubeStash's admission webhooks look at, from the stores: Namespaces (usage policies),
//! BackupStorages, RetentionPolicies, Repositories and HookTemplates of every namespace.

use k8s_openapi::api::core::v1::Namespace;
use kstash_api::admission::Lookup;
use kstash_api::core::HookTemplate;
use kstash_api::storage::{BackupStorage, Repository, RetentionPolicy};
use kube::api::Api;
use kube::runtime::reflector::Store;
use kube::ResourceExt;

use crate::shell::StoreSet;

/// The stores behind [`Lookup`].
#[derive(Clone)]
pub struct AdmissionStores {
    namespaces: Store<Namespace>,
    backup_storages: Store<BackupStorage>,
    retention_policies: Store<RetentionPolicy>,
    repositories: Store<Repository>,
    hook_templates: Store<HookTemplate>,
}

impl AdmissionStores {
    /// Registers the stores (every namespace).
    pub fn new(ctx: &crate::Context, stores: &mut StoreSet) -> Self {
        let c = || ctx.client.clone();
        AdmissionStores {
            namespaces: stores.store(Api::all(c())),
            backup_storages: stores.store(Api::all(c())),
            retention_policies: stores.store(Api::all(c())),
            repositories: stores.store(Api::all(c())),
            hook_templates: stores.store(Api::all(c())),
        }
    }

    /// The lookup the admission rules take.
    pub fn lookup(&self) -> Lookup {
        fn all<K>(s: &Store<K>) -> Vec<K>
        where
            K: kube::Resource<DynamicType = ()> + Clone + 'static,
        {
            s.state().iter().map(|o| (**o).clone()).collect()
        }
        Lookup {
            backup_storages: all(&self.backup_storages),
            retention_policies: all(&self.retention_policies),
            repositories: all(&self.repositories),
            hook_templates: all(&self.hook_templates),
            namespaces: self
                .namespaces
                .state()
                .iter()
                .map(|n| (n.name_any(), n.labels().clone()))
                .collect(),
        }
    }

    /// The Namespaces' labels (blueprint variables).
    pub fn namespace_labels(&self) -> kstash_blueprint::NamespaceLabels {
        self.namespaces
            .state()
            .iter()
            .map(|n| (n.name_any(), n.labels().clone()))
            .collect()
    }
}
