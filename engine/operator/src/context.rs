//! What every controller shares: the API client, the addon runtime, the operator's settings.

use std::path::PathBuf;
use std::sync::Arc;

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

/// Shared by every controller; cheap to clone behind an `Arc`.
pub struct Context {
    /// The Kubernetes API client.
    pub client: kube::Client,
    /// The addon host (one per process: it owns the compiled-module cache and the pooling allocator).
    pub runtime: Arc<kstash_runtime::Runtime>,
    /// The operator's settings.
    pub config: OperatorConfig,
}
