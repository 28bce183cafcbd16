//! The kube-runtime controllers that run KubeStash's backup flow.
