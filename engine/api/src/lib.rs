//! KubeStash API types (core/storage/addons v1alpha1), CRDs, names, phases and admission rules.
