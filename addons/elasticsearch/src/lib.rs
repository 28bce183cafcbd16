//! kstash's Elasticsearch addon: logical backup and restore in multielasticdump's format.
//!
//! The logic lives in pure modules that build and test on the host; [`host::Host`] is the only
//! door to the outside. On `wasm32` a thin glue module implements it with the kstash SDK and
//! exports the component.

pub mod backup;
pub mod bulk;
pub mod describe;
pub mod error;
pub mod es;
pub mod files;
pub mod hits;
pub mod host;
pub mod matcher;
pub mod meta;
pub mod options;
pub mod reader;
pub mod restore;
pub mod retry;

#[cfg(target_arch = "wasm32")]
mod guest;

use error::Result;
use host::{Host, Level};
use options::{Options, Task};

/// What a finished task reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Indices done.
    pub indices: u64,
    /// Documents written (backup) or loaded (restore).
    pub documents: u64,
    /// Bytes written to streams (backup) or sent in `_bulk` bodies (restore).
    pub bytes: u64,
    /// Files written (backup).
    pub files: u64,
    /// Non-fatal problems.
    pub warnings: Vec<String>,
}

/// Run `task` with `params` against `host`. Parameters are validated before any request.
pub fn run_task(host: &mut dyn Host, task: Task, params: &[(String, String)]) -> Result<Summary> {
    let opts = Options::from_params(task, params)?;
    for n in &opts.notes {
        host.log(Level::Info, n);
    }
    let mut es = es::Es::new(host);
    let mut summary = match task {
        Task::Backup => backup::run(&mut es, &opts)?,
        Task::Restore => restore::run(&mut es, &opts)?,
    };
    if es.retries > 0 {
        summary.warnings.push(format!(
            "{} requests retried (429/5xx/connection errors)",
            es.retries
        ));
    }
    let msg = format!(
        "{}: {} indices, {} documents, {} bytes, {} requests, {} retries",
        task.name(),
        summary.indices,
        summary.documents,
        summary.bytes,
        es.requests,
        es.retries
    );
    es.log(Level::Info, msg);
    Ok(summary)
}
