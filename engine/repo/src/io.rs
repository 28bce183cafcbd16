//! The async/sync bridge.
//!
//! rustic_core is synchronous and runs its own worker threads; opendal is async. All storage
//! I/O runs on one small, crate-private multi-thread tokio runtime (`kstash-repo-io`, 2 worker
//! threads). Sync code (rustic_core's backend calls, from any thread) waits for I/O with
//! [`block_io`], which spawns the future on that runtime and parks the calling thread on the
//! join handle: it never panics whatever runtime context the caller is in, and the one HTTP
//! connection pool always lives on the runtime that drives it. Async callers reach the same
//! runtime with [`run_io`]. rustic_core calls themselves run in `spawn_blocking`.

use std::future::Future;
use std::sync::OnceLock;

use crate::error::{Error, Result};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kstash-repo-io")
            .enable_all()
            .build()
            .expect("building the kstash-repo I/O runtime")
    })
}

/// Runs an I/O future on the I/O runtime from synchronous code (any thread).
pub(crate) fn block_io<F>(fut: F) -> Result<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    futures::executor::block_on(runtime().spawn(fut)).map_err(Error::from)
}

/// Runs an I/O future on the I/O runtime from async code.
pub(crate) async fn run_io<F>(fut: F) -> Result<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    runtime().spawn(fut).await.map_err(Error::from)
}

/// Runs blocking (rustic_core) work on the blocking pool of the I/O runtime.
pub(crate) async fn run_blocking<F, T>(f: F) -> Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    runtime().spawn_blocking(f).await.map_err(Error::from)
}

/// Spawns an I/O future on the I/O runtime (from any thread) without waiting for it.
pub(crate) fn spawn_io<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    runtime().spawn(fut)
}
