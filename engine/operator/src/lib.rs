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
//! [`run`] starts every controller of the build on one [`Context`].

pub mod context;

#[cfg(feature = "control")]
pub mod addons;
#[cfg(feature = "control")]
pub mod autobackup;
#[cfg(feature = "control")]
pub mod backup_config;
#[cfg(feature = "control")]
pub mod backup_storage;
#[cfg(feature = "control")]
pub mod repository;

#[cfg(feature = "execute")]
pub mod backup_session;
#[cfg(feature = "execute")]
pub mod restore_session;

pub use context::{Context, OperatorConfig};

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
