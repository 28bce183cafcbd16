//! kstash's Elasticsearch addon: logical backup and restore in multielasticdump's format.
//!
//! The logic lives in pure modules that build and test on the host; [`host::Host`] is the only
//! door to the outside. On `wasm32` a thin glue module implements it with the kstash SDK and
//! exports the component.

pub mod backup;
pub mod bulk;
pub mod cluster;
pub mod describe;
pub mod error;
pub mod es;
pub mod files;
pub mod hits;
pub mod host;
pub mod manifest;
pub mod matcher;
pub mod meta;
pub mod names;
pub mod objects;
pub mod options;
pub mod parts;
pub mod reader;
pub mod restore;
pub mod retry;

#[cfg(target_arch = "wasm32")]
mod guest;

use error::Result;
use host::{Host, Level};
use options::{Options, Task};

/// How many items one part of the dump holds: documents of an index or data stream, or objects
/// of a cluster family. The engine records these in the Snapshot status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartCount {
    /// `index`, `data_stream`, or a cluster family (`index_templates`, `ilm_policies`, …).
    pub kind: String,
    /// The index or data stream name (empty for a cluster family).
    pub name: String,
    /// Documents (index, data stream) or objects (cluster family).
    pub items: u64,
}

impl PartCount {
    /// A count.
    pub fn new(kind: &str, name: &str, items: u64) -> Self {
        PartCount {
            kind: kind.to_string(),
            name: name.to_string(),
            items,
        }
    }

    /// `index/<name>`, `data_stream/<name>` or the family name: the part's label.
    pub fn label(&self) -> String {
        if self.name.is_empty() {
            self.kind.clone()
        } else {
            format!("{}/{}", self.kind, self.name)
        }
    }
}

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
    /// Counts per part (per index, per data stream, per cluster family).
    pub parts: Vec<PartCount>,
    /// What was deliberately left out, and why (a parameter, or the API is absent).
    pub skipped: Vec<String>,
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
    for p in &summary.parts {
        es.log(Level::Info, format!("count {} = {}", p.label(), p.items));
    }
    for s in &summary.skipped {
        es.log(Level::Info, format!("left out: {s}"));
    }
    Ok(summary)
}
