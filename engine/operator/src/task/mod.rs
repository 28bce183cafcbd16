//! What an addon task needs, shared by the BackupSession and RestoreSession executors
//! (docs/executor.md):
//!
//! - [`params`]: KubeStash's `${var:=default}` forms and the task's parameter map;
//! - [`target`]: AppBinding (`clientConfig`, `caBundle`, Secret) → [`kstash_runtime::Target`];
//! - [`module`]: Addon task → Function → WASM module (location + pinned sha256) → loaded addon;
//! - [`sink`]: the runtime's output/input streams onto repository backups and snapshots;
//! - [`progress`]: live progress (documents, bytes) collected from the task's events;
//! - [`runner`]: the one task runner (the addon call, its progress ticker, abort on shutdown)
//!   and the live map of the sessions whose task runs here;
//! - [`limits`]: a task's limits, from its Function under the operator's caps;
//! - [`claim`]: the per-session Leases that let several executor replicas share the sessions;
//! - [`ulid`]: Snapshot IDs.
//!
//! Nothing here imports the executors: they import these modules, never the other way round.

pub mod claim;
pub mod limits;
pub mod module;
pub mod params;
pub mod progress;
pub mod report;
pub mod runner;
pub mod sink;
pub mod target;
pub mod ulid;

/// `Ok(None)` for a 404, the object otherwise.
pub(crate) fn not_found_none<T>(r: Result<T, kube::Error>) -> Result<Option<T>, kube::Error> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}
