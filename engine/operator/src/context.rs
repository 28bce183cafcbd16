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
    /// With several executor replicas: the per-session claims (`None`: this process is the
    /// only executor, see [`Context::with_claims`]).
    #[cfg(feature = "execute")]
    pub claims: Option<crate::task::claim::Claims>,
    /// The most any one task may use (memory, CPU time, wall clock, output and target bytes);
    /// a Function asking for more is refused. Default: the runtime's defaults.
    pub task_caps: kstash_runtime::Limits,
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
            #[cfg(feature = "execute")]
            claims: None,
            task_caps: kstash_runtime::Limits::default(),
        }
    }

    /// This context with `caps` as the most any one task may use.
    pub fn with_task_caps(mut self, caps: kstash_runtime::Limits) -> Self {
        self.task_caps = caps;
        self
    }

    /// This context with session claims: its executors share the sessions with other replicas
    /// (each session runs in the one replica holding its Lease, at most
    /// `config.max_sessions` per kind here), and [`crate::serve`] runs them on every replica,
    /// not only on the leader.
    #[cfg(feature = "execute")]
    pub fn with_claims(mut self, config: crate::task::claim::ClaimConfig) -> Self {
        self.claims = Some(crate::task::claim::Claims::new(self.client.clone(), config));
        self
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
