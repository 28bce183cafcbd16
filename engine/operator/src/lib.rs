//! kstash's operator: the kube-runtime controllers that run KubeStash's backup flow against any
//! Kubernetes API (a real cluster, or kstash's embedded control plane).
//!
//! The decisions live in the pure crate `kstash-controllers`; this crate is the I/O shell around
//! them: watches, reads, status patches, events, the addon runtime and the repositories.
//!
//! - `control` half: [`autobackup`], [`backup_storage`], [`backup_config`] (with its scheduler),
//!   [`repository`], [`addons`];
//! - `execute` half: [`backup_session`], [`restore_session`] and what they need to run an addon
//!   task against a target and a repository.
//!
//! [`run`] starts every controller of the build on one [`Context`]; [`serve`] wraps it in leader
//! election ([`leader`]) and the Prometheus endpoint ([`metrics`]), which is what
//! `kstash operator` and `kstash up` call.

pub mod context;
pub mod leader;
pub mod metrics;
pub mod storage;

#[cfg(feature = "control")]
pub mod addons;
#[cfg(feature = "control")]
pub mod autobackup;
#[cfg(feature = "control")]
pub mod backup_config;
#[cfg(feature = "control")]
pub mod backup_storage;
#[cfg(feature = "control")]
pub mod control;
#[cfg(feature = "control")]
pub mod repository;

#[cfg(feature = "execute")]
pub mod backup_session;
#[cfg(feature = "execute")]
pub mod execute;
#[cfg(feature = "execute")]
pub mod restore_session;

pub use context::{Context, OperatorConfig};
/// Re-exported for embedders: the shutdown token of [`ServeOptions`].
pub use tokio_util::sync::CancellationToken;

use std::sync::Arc;

/// Runs every controller compiled into this build until one of them ends (they end only when
/// their watch streams do, e.g. at shutdown).
pub async fn run(ctx: Arc<Context>) {
    let mut controllers: Vec<futures::future::BoxFuture<'static, ()>> = Vec::new();
    #[cfg(feature = "control")]
    {
        controllers.push(Box::pin(addons::run(ctx.clone())));
        controllers.push(Box::pin(autobackup::run(ctx.clone())));
        controllers.push(Box::pin(backup_storage::run(ctx.clone())));
        controllers.push(Box::pin(backup_config::run(ctx.clone())));
        controllers.push(Box::pin(repository::run(ctx.clone())));
    }
    #[cfg(feature = "execute")]
    {
        controllers.push(Box::pin(backup_session::run(ctx.clone())));
        controllers.push(Box::pin(restore_session::run(ctx.clone())));
    }
    let _ = ctx;
    futures::future::select_all(controllers).await;
}

/// How [`serve`] runs the controllers.
pub struct ServeOptions {
    /// Run the controllers only while holding this Lease (`None`: always, single replica).
    pub leader_election: Option<leader::LeaderConfig>,
    /// Serve `/metrics` and `/healthz` on this listener (bind it with [`metrics::bind`]).
    pub metrics: Option<tokio::net::TcpListener>,
    /// Cancelled to stop: the controllers are dropped, the Lease released, the endpoint closed.
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// Runs the operator until `opts.shutdown` is cancelled: the metrics endpoint on every replica,
/// the controllers ([`run`]) on the leader only (or always without leader election).
pub async fn serve(ctx: Arc<Context>, opts: ServeOptions) -> Result<(), leader::LeaderError> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let leading = Arc::new(AtomicBool::new(false));
    let shutdown = opts.shutdown.clone();
    let metrics_task = opts.metrics.map(|listener| {
        let state = metrics::MetricsState {
            client: ctx.client.clone(),
            namespace: ctx.config.namespace.clone(),
            leading: leading.clone(),
        };
        tokio::spawn(metrics::serve(listener, state, shutdown.clone()))
    });
    match opts.leader_election {
        Some(cfg) => {
            let elector = leader::LeaderElector::new(ctx.client.clone(), cfg)?;
            let c = ctx.clone();
            elector
                .run(shutdown.clone(), leading.clone(), move || run(c.clone()))
                .await;
        }
        None => {
            leading.store(true, Ordering::SeqCst);
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = run(ctx.clone()) => tracing::warn!("the controllers ended"),
            }
            leading.store(false, Ordering::SeqCst);
        }
    }
    shutdown.cancel();
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
    Ok(())
}
