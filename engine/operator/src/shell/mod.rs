//! The reconciler shell: what every controller of the operator runs in.
//!
//! A controller is a [`Reconciler`] — the kind it reconciles, its extra watches, `apply` and
//! `cleanup` — and [`run`] does the rest the same way for all of them: the watch, the drain on
//! shutdown, kube's [`finalizer`](kube::runtime::finalizer()) helper (the finalizer is added
//! before the first `apply` and removed after `cleanup`, by JSON patch; no other code touches a
//! finalizer list), the error policy (log; a Warning Event with the hint for failures the user
//! can act on; a retry delay by [`ErrorKind`]), and the reconcile counts of `/metrics`.
//!
//! - [`error`]: the typed error (object, kind, hint, cause);
//! - [`events`]: Event publishing;
//! - [`status`]: status patches and conditions;
//! - [`stores`]: the shared reflector stores;
//! - [`metrics`]: the reconcile counts.

pub mod error;
pub mod events;
pub mod metrics;
pub mod status;
pub mod stores;

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::runtime::watcher;
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use error::{describe, Error, ErrorKind, Result};
pub use events::Events;
pub use stores::StoreSet;

use crate::Context;

/// How a controller stops when the operator drains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// At once (reconciles in flight are dropped; they are idempotent).
    Now,
    /// No new reconcile starts; those in flight finish.
    FinishRunning,
}

/// What the shell gives every reconcile: the operator's context and the controller's Events.
pub struct Shell {
    /// The operator's context.
    pub ctx: Arc<Context>,
    /// Events reported as `kstash-<controller>`.
    pub events: Events,
}

impl Shell {
    /// The shell of controller `name`.
    pub fn new(ctx: &Arc<Context>, name: &str) -> Shell {
        Shell {
            events: Events::new(ctx.client.clone(), name, &ctx.config.identity),
            ctx: ctx.clone(),
        }
    }

    /// The API client.
    pub fn client(&self) -> &kube::Client {
        &self.ctx.client
    }

    /// A typed API in namespace `ns`.
    pub fn api<K>(&self, ns: &str) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.ctx.client.clone(), ns)
    }
}

/// A controller: the kind it reconciles and what it does with an object.
pub trait Reconciler: Send + Sync + 'static {
    /// The kind.
    type Object: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug
        + Send
        + Sync
        + 'static;

    /// The controller's name (Events `kstash-<name>`, logs, metrics).
    const NAME: &'static str;
    /// The finalizer it holds on its objects, `None` for none.
    const FINALIZER: Option<&'static str>;
    /// How it stops on drain.
    const DRAIN: Drain = Drain::Now;

    /// The objects it watches (all namespaces, or the operator's namespace).
    fn watched(&self, cx: &Shell) -> Api<Self::Object>;

    /// The API of one object (for the finalizer patches).
    fn api_of(&self, cx: &Shell, obj: &Self::Object) -> Api<Self::Object>;

    /// Extra watches that map other kinds' changes to objects of this kind.
    fn watches(&self, c: Controller<Self::Object>, _cx: &Shell) -> Controller<Self::Object> {
        c
    }

    /// Brings the world in line with `obj` (not being deleted; the finalizer is in place).
    fn apply(
        &self,
        obj: Arc<Self::Object>,
        cx: &Shell,
    ) -> impl Future<Output = Result<Action>> + Send;

    /// `obj` is being deleted: release what it holds; the finalizer goes when this succeeds.
    fn cleanup(
        &self,
        _obj: Arc<Self::Object>,
        _cx: &Shell,
    ) -> impl Future<Output = Result<Action>> + Send {
        async { Ok(Action::await_change()) }
    }
}

struct Running<R> {
    reconciler: R,
    shell: Shell,
}

/// Runs `reconciler` until its watch ends or the operator drains.
pub async fn run<R: Reconciler>(reconciler: R, shell: Shell) {
    let drain = shell.ctx.lifecycle.drain.clone();
    let c = Controller::new(reconciler.watched(&shell), watcher::Config::default());
    let mut c = reconciler.watches(c, &shell);
    if R::DRAIN == Drain::FinishRunning {
        c = c.graceful_shutdown_on(drain.clone().cancelled_owned());
    }
    let state = Arc::new(Running { reconciler, shell });
    let controller = c
        .run(reconcile::<R>, error_policy::<R>, state)
        .for_each(|r| {
            if let Err(e) = r {
                tracing::debug!(controller = R::NAME, "reconcile: {e}");
            }
            futures::future::ready(())
        });
    match R::DRAIN {
        Drain::FinishRunning => controller.await,
        Drain::Now => {
            tokio::select! {
                _ = drain.cancelled() => {}
                _ = controller => tracing::warn!(controller = R::NAME, "the controller ended on its own"),
            }
        }
    }
}

async fn reconcile<R: Reconciler>(obj: Arc<R::Object>, state: Arc<Running<R>>) -> Result<Action> {
    let t0 = Instant::now();
    let (r, cx) = (&state.reconciler, &state.shell);
    let result = match R::FINALIZER {
        None => r.apply(obj, cx).await,
        Some(name) => {
            let object = describe(obj.as_ref());
            let api = r.api_of(cx, &obj);
            finalizer(&api, name, obj, |ev| async {
                match ev {
                    Finalizer::Apply(o) => r.apply(o, cx).await,
                    Finalizer::Cleanup(o) => r.cleanup(o, cx).await,
                }
            })
            .await
            .map_err(|e| error::finalizer_error(&object, e))
        }
    };
    metrics::record(R::NAME, t0.elapsed(), result.as_ref().err().map(|e| e.kind));
    result
}

fn error_policy<R: Reconciler>(obj: Arc<R::Object>, err: &Error, state: Arc<Running<R>>) -> Action {
    tracing::warn!(
        controller = R::NAME,
        object = %err.object,
        kind = err.kind.as_str(),
        hint = err.hint.as_deref().unwrap_or(""),
        "reconcile failed: {err}"
    );
    if err.kind.is_reported() {
        let note = err.to_string();
        tokio::spawn(async move {
            state
                .shell
                .events
                .warning(obj.as_ref(), "ReconcileFailed", "Reconcile", note)
                .await;
        });
    }
    Action::requeue(err.kind.retry_after())
}

/// `Api` of a namespaced object in its namespace.
pub fn namespaced_api<K>(cx: &Shell, obj: &K) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as Resource>::DynamicType: Default,
{
    Api::namespaced(
        cx.ctx.client.clone(),
        obj.meta().namespace.as_deref().unwrap_or_default(),
    )
}

/// The requeue of a healthy object: look again after `d` (drift, time-based rules).
pub fn requeue(d: Duration) -> Action {
    Action::requeue(d)
}
