//! What the BackupSession and RestoreSession executors share besides the task modules of
//! [`crate::task`] (docs/executor.md):
//!
//! - [`backend`]: Repository → BackupStorage → Secrets → restic password
//!   ([`kstash_repo::resolve`] over the cluster);
//! - [`error`]: the executors' error type;
//! - [`events`]: their Events.

pub mod backend;
pub mod error;
pub mod events;

pub use error::Error;

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Field manager of every status patch the executors make.
pub const FIELD_MANAGER: &str = "kstash-executor";

/// Replaces the `status` of `name` with `status` (a merge patch of the whole status object, so
/// list fields are replaced, not merged).
pub(crate) async fn patch_status<K, S>(api: &Api<K>, name: &str, status: &S) -> Result<K, Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    <K as Resource>::DynamicType: Default,
    S: Serialize,
{
    let body = serde_json::json!({ "status": status });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER),
        &Patch::Merge(&body),
    )
    .await
    .map_err(|e| {
        Error::kube(
            format!(
                "patch status of {} {name}",
                K::kind(&K::DynamicType::default())
            ),
            e,
        )
    })
}

/// Sets the annotation `key: value` on `name` (a merge patch of its metadata).
pub(crate) async fn annotate<K>(
    api: &Api<K>,
    name: &str,
    key: &str,
    value: &str,
) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    <K as Resource>::DynamicType: Default,
{
    let body = serde_json::json!({ "metadata": { "annotations": { key: value } } });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&body))
        .await
        .map(|_| ())
        .map_err(|e| {
            Error::kube(
                format!(
                    "annotating {} {name} with {key}",
                    K::kind(&K::DynamicType::default())
                ),
                e,
            )
        })
}

/// Why a task stopped when the operator's shutdown grace period ran out (the session's failure
/// message; the next scheduled session runs as usual).
pub const SHUTDOWN_ABORT: &str = "the operator shut down and its grace period ran out before the \
     task finished; the repository was left as it was before this session";

/// Runs an executor's controller over `api` until the operator drains: no new session starts
/// after `ctx.lifecycle.drain`, and the running ones (in-flight reconciles) finish first.
/// Failed reconciles are logged as `<what> reconcile: …`; `error_policy` decides the retry.
pub(crate) async fn run_until_drained<K, S, R, Fut>(
    ctx: &crate::Context,
    api: Api<K>,
    reconcile: R,
    error_policy: fn(
        std::sync::Arc<K>,
        &Error,
        std::sync::Arc<S>,
    ) -> kube::runtime::controller::Action,
    state: std::sync::Arc<S>,
    what: &'static str,
) where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    S: Send + Sync + 'static,
    R: FnMut(std::sync::Arc<K>, std::sync::Arc<S>) -> Fut,
    Fut: std::future::Future<Output = Result<kube::runtime::controller::Action, Error>>
        + Send
        + 'static,
{
    use futures::StreamExt as _;
    kube::runtime::Controller::new(api, kube::runtime::watcher::Config::default())
        .graceful_shutdown_on(ctx.lifecycle.drain.clone().cancelled_owned())
        .run(reconcile, error_policy, state)
        .for_each(|r| {
            if let Err(e) = r {
                tracing::debug!("{what} reconcile: {e}");
            }
            futures::future::ready(())
        })
        .await;
}
