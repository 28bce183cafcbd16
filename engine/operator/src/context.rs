//! What every controller shares: the API client, the addon runtime, the operator's settings and
//! its lifecycle (how it stops).

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

/// The operator's settings (from `kstash operator` flags or `kstash up`).
#[derive(Debug, Clone)]
pub struct OperatorConfig {
    /// Who this operator is: the events' reporting controller/instance and the lock/lease holder.
    pub identity: String,
    /// Where `builtin:<name>` module locations resolve: `<module_dir>/<name>.wasm`.
    pub module_dir: Option<PathBuf>,
    /// Private directory for the runtime's precompiled-module cache and other engine state.
    pub data_dir: PathBuf,
    /// Watch only this namespace (`None`: all namespaces).
    pub namespace: Option<String>,
}

/// How a running operator stops, in two steps (see docs/operator.md, "Graceful shutdown").
///
/// 1. `drain`: no new work starts — the control half stops, the executors take no new session —
///    while the sessions already running go on.
/// 2. `abort`, once the grace period has passed: the sessions still running stop, and each is
///    driven to `Failed` with a condition naming the shutdown, its repository locks released.
#[derive(Debug, Clone, Default)]
pub struct Lifecycle {
    /// Cancelled when the operator starts to shut down.
    pub drain: CancellationToken,
    /// Cancelled when the grace period is over.
    pub abort: CancellationToken,
}

/// Shared by every controller; cheap to clone behind an `Arc`.
pub struct Context {
    /// The Kubernetes API client.
    pub client: kube::Client,
    /// The addon host (one per process: it owns the compiled-module cache and the pooling allocator).
    pub runtime: Arc<kstash_runtime::Runtime>,
    /// The operator's settings.
    pub config: OperatorConfig,
    /// Drain and abort signals (set by [`crate::serve`]).
    pub lifecycle: Lifecycle,
}

impl Context {
    /// A context that runs until [`crate::serve`]'s shutdown says otherwise.
    pub fn new(
        client: kube::Client,
        runtime: Arc<kstash_runtime::Runtime>,
        config: OperatorConfig,
    ) -> Self {
        Context {
            client,
            runtime,
            config,
            lifecycle: Lifecycle::default(),
        }
    }

    /// An `Api` over every namespace, or the operator's one namespace.
    pub fn scoped_api<K>(&self) -> kube::Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        match &self.config.namespace {
            Some(ns) => kube::Api::namespaced(self.client.clone(), ns),
            None => kube::Api::all(self.client.clone()),
        }
    }
}
