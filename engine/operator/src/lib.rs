//! kstash's operator: the kube-runtime controllers that run KubeStash's backup flow against any
//! Kubernetes API (a real cluster, or kstash's embedded control plane).
//!
//! The decisions live in the pure crate `kstash-rules`; this crate is the I/O shell around
//! them: watches, reads, status patches, events, the addon runtime and the repositories.
//!
//! - [`shell`]: the one reconciler shell (watch, drain, `finalizer()`, error policy, events,
//!   status, metrics, reflector stores) every reconciler of [`reconcilers`] runs in;
//! - `control` half: [`reconcilers`] (BackupStorage, Repository, BackupConfiguration with its
//!   scheduler), [`autobackup`], [`addons`];
//! - `execute` half: [`backup_session`], [`restore_session`] and [`task`], what they need to
//!   run an addon task against a target and a repository; [`snapshot`], which owns
//!   `kubestash.com/cleanup` on Snapshots and deletes their data by `deletionPolicy`.
//!
//! [`run`] starts every controller of the build on one [`Context`]; [`serve`] wraps it in leader
//! election ([`leader`]) and the Prometheus endpoint ([`metrics`]), which is what
//! `kstash operator` and `kstash up` call; with [`ServeOptions::webhook`] every replica also
//! serves the admission rules as webhooks ([`webhook`]). With session claims ([`Context::with_claims`]) the
//! leader runs [`run_control`] and every replica [`run_executors`]: each session runs in the
//! one replica holding its claim (`task::claim`).

mod accept;
pub mod context;
pub mod kinds;
pub mod leader;
pub mod metrics;
pub mod shell;
pub mod storage;

#[cfg(feature = "control")]
pub mod addons;
#[cfg(feature = "control")]
pub mod autobackup;
#[cfg(feature = "control")]
pub mod control;
#[cfg(feature = "control")]
pub mod reconcilers;
#[cfg(feature = "control")]
pub mod webhook;

#[cfg(feature = "execute")]
pub mod backup_session;
#[cfg(feature = "execute")]
pub mod execute;
#[cfg(feature = "execute")]
pub mod restore_session;
#[cfg(feature = "execute")]
pub mod snapshot;
#[cfg(feature = "execute")]
pub mod task;

pub use context::{Context, OperatorConfig};
/// Re-exported for embedders: the shutdown token of [`ServeOptions`].
pub use tokio_util::sync::CancellationToken;

use std::sync::Arc;

/// Runs every controller compiled into this build until `ctx.lifecycle.drain` is cancelled and
/// they have all stopped: the control half stops at once, the executors once their running
/// sessions have finished (or, after `ctx.lifecycle.abort`, failed cleanly).
pub async fn run(ctx: Arc<Context>) {
    futures::join!(run_control(ctx.clone()), run_executors(ctx));
}

/// What only one replica runs (the leader, with leader election): the control half and the
/// Snapshot controller.
pub async fn run_control(ctx: Arc<Context>) {
    let mut controllers: Vec<futures::future::BoxFuture<'static, ()>> = Vec::new();
    #[cfg(feature = "control")]
    {
        let drain = ctx.lifecycle.drain.clone();
        let until_drain = move |f: futures::future::BoxFuture<'static, ()>| {
            let drain = drain.clone();
            Box::pin(async move {
                tokio::select! {
                    _ = drain.cancelled() => {}
                    _ = f => tracing::warn!("a control-half controller ended on its own"),
                }
            }) as futures::future::BoxFuture<'static, ()>
        };
        controllers.push(until_drain(Box::pin(addons::run(ctx.clone()))));
        controllers.push(until_drain(Box::pin(autobackup::run(ctx.clone()))));
        controllers.push(until_drain(Box::pin(run_reconcilers(ctx.clone()))));
    }
    #[cfg(feature = "execute")]
    controllers.push(Box::pin(snapshot::run(ctx.clone())));
    let _ = ctx;
    futures::future::join_all(controllers).await;
}

/// The BackupSession and RestoreSession executors: on every replica when the context has
/// session claims ([`Context::with_claims`]), else beside the control half.
pub async fn run_executors(ctx: Arc<Context>) {
    #[cfg(feature = "execute")]
    futures::join!(
        backup_session::run(ctx.clone()),
        restore_session::run(ctx.clone())
    );
    let _ = ctx;
}

/// Whether the executors share the sessions with other replicas (they run on every replica).
fn shares_sessions(ctx: &Context) -> bool {
    #[cfg(feature = "execute")]
    return ctx.claims.is_some();
    #[cfg(not(feature = "execute"))]
    {
        let _ = ctx;
        false
    }
}

/// The reconcilers of [`reconcilers`]: their reflector stores first, then each in the
/// [`shell`] once every store holds its initial list.
#[cfg(feature = "control")]
async fn run_reconcilers(ctx: Arc<Context>) {
    use kstash_api::core::{BackupBatch, BackupVerificationSession, BackupVerifier};
    use reconcilers::{backup_configuration, backup_storage, repository};
    use shell::{Reconciler, Shell};
    let mut stores = shell::StoreSet::default();
    let storages = backup_storage::BackupStorages::new(&ctx, &mut stores);
    let repositories = repository::Repositories::new(&ctx, &mut stores);
    let configurations = backup_configuration::BackupConfigurations::new(&ctx, &mut stores);
    let (reflectors, ready) = stores.start();
    let controllers = async {
        ready.await;
        futures::join!(
            shell::run(
                storages,
                Shell::new(&ctx, backup_storage::BackupStorages::NAME)
            ),
            shell::run(
                repositories,
                Shell::new(&ctx, repository::Repositories::NAME)
            ),
            shell::run(
                configurations,
                Shell::new(&ctx, backup_configuration::BackupConfigurations::NAME)
            ),
            run_refusal::<BackupBatch>(&ctx),
            run_refusal::<BackupVerifier>(&ctx),
            run_refusal::<BackupVerificationSession>(&ctx),
        );
    };
    tokio::select! {
        _ = reflectors => tracing::warn!("the reflector stores ended"),
        _ = controllers => {}
    }
}

/// Runs the controller that marks every `K` as not run by kstash.
#[cfg(feature = "control")]
async fn run_refusal<K: reconcilers::unsupported::NotRun>(ctx: &Arc<Context>) {
    use shell::Shell;
    shell::run(
        reconcilers::unsupported::Unsupported::<K>::default(),
        Shell::new(ctx, K::CONTROLLER),
    )
    .await
}

/// How long a graceful shutdown lets running sessions finish before failing them (the
/// Deployment's `terminationGracePeriodSeconds` must be longer).
pub const DEFAULT_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// After the grace period, how long the aborted sessions get to record their failure.
const ABORT_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// How [`serve`] runs the controllers.
pub struct ServeOptions {
    /// Run the controllers only while holding this Lease (`None`: always, single replica).
    pub leader_election: Option<leader::LeaderConfig>,
    /// Serve `/metrics` and `/healthz` on this listener (bind it with [`metrics::bind`]).
    pub metrics: Option<tokio::net::TcpListener>,
    /// Cancelled to stop: no new work starts; running sessions get `shutdown_grace` to finish,
    /// then are failed cleanly; then the Lease is released and the endpoint closed.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// See [`DEFAULT_SHUTDOWN_GRACE`].
    pub shutdown_grace: std::time::Duration,
    /// Serve the admission webhooks on every replica (leader or not) until the end.
    #[cfg(feature = "control")]
    pub webhook: Option<webhook::WebhookOptions>,
}

/// Runs the operator until `opts.shutdown` is cancelled and the running sessions are done: the
/// metrics endpoint and the webhook on every replica, the controllers ([`run`]) on the leader only (or always
/// without leader election).
pub async fn serve(ctx: Arc<Context>, opts: ServeOptions) -> Result<(), leader::LeaderError> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let leading = Arc::new(AtomicBool::new(false));
    let shutdown = opts.shutdown.clone();
    let metrics_stop = tokio_util::sync::CancellationToken::new();
    // Ready at once without a webhook; with one, once it serves.
    let ready = Arc::new(AtomicBool::new(
        opts.webhook.is_none() || !cfg!(feature = "control"),
    ));
    let metrics_task = opts.metrics.map(|listener| {
        let state = metrics::MetricsState {
            client: ctx.client.clone(),
            namespace: ctx.config.namespace.clone(),
            leading: leading.clone(),
            ready: ready.clone(),
        };
        tokio::spawn(metrics::serve(listener, state, metrics_stop.clone()))
    });
    #[cfg(feature = "control")]
    let webhook_task = opts
        .webhook
        .map(|w| tokio::spawn(webhook::run(ctx.clone(), w, metrics_stop.clone(), ready)));
    // Shutdown → drain at once → abort after the grace period.
    let lifecycle = ctx.lifecycle.clone();
    let grace = opts.shutdown_grace;
    let stopper = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            shutdown.cancelled().await;
            tracing::info!(grace = ?grace, "shutting down: no new sessions; running ones get the grace period");
            lifecycle.drain.cancel();
            tokio::time::sleep(grace).await;
            if !lifecycle.abort.is_cancelled() {
                tracing::warn!("shutdown grace period over: failing the sessions still running");
            }
            lifecycle.abort.cancel();
        }
    });
    // However the controllers behave, the process is gone ABORT_WAIT after the grace period.
    let deadline = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.cancelled().await;
            tokio::time::sleep(grace + ABORT_WAIT).await;
        }
    };
    match opts.leader_election {
        Some(cfg) => {
            let elector = leader::LeaderElector::new(ctx.client.clone(), cfg)?;
            let c = ctx.clone();
            let shared = shares_sessions(&ctx);
            // With session claims the executors run on every replica, outside the election;
            // without, everything runs on the leader only.
            let led = move || {
                let c = c.clone();
                async move {
                    match shared {
                        true => run_control(c).await,
                        false => run(c).await,
                    }
                }
            };
            let executors = {
                let c = ctx.clone();
                async move {
                    if shared {
                        run_executors(c).await
                    }
                }
            };
            tokio::select! {
                _ = async { futures::join!(elector.run(shutdown.clone(), leading.clone(), led), executors) } => {}
                _ = deadline => tracing::warn!("controllers still running {ABORT_WAIT:?} after the grace period: stopping them"),
            }
        }
        None => {
            leading.store(true, Ordering::SeqCst);
            tokio::select! {
                _ = run(ctx.clone()) => {
                    if !shutdown.is_cancelled() {
                        tracing::warn!("the controllers ended");
                    }
                }
                _ = deadline => tracing::warn!("controllers still running {ABORT_WAIT:?} after the grace period: stopping them"),
            }
            leading.store(false, Ordering::SeqCst);
        }
    }
    // The controllers ended on their own (not at a shutdown): stop what is left.
    ctx.lifecycle.drain.cancel();
    ctx.lifecycle.abort.cancel();
    stopper.abort();
    metrics_stop.cancel();
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
    #[cfg(feature = "control")]
    if let Some(t) = webhook_task {
        let _ = t.await;
    }
    Ok(())
}
