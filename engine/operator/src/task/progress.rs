//! Live progress of a task, collected from the addon's events and the stream adapters.
//!
//! The Elasticsearch addon reports `documents` done (and the total when known) per stage
//! (`index <name>`); the stream adapters count bytes. The executors read a [`Snapshot`] of it
//! every few seconds and patch it into the Snapshot / RestoreSession status.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use kstash_runtime::{LogLevel, ProgressUpdate, TaskEvents};

/// Progress of one task.
#[derive(Debug, Default)]
pub struct Progress {
    stages: Mutex<BTreeMap<String, (u64, Option<u64>)>>,
    /// Bytes moved through the streams (written to, or read from, the repository).
    pub bytes: AtomicU64,
    /// The session this task belongs to (log field).
    pub session: String,
}

/// A point-in-time copy of [`Progress`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Items (documents) done, over all stages.
    pub items: u64,
    /// Total items, when every stage reported one.
    pub total: Option<u64>,
    /// Bytes moved.
    pub bytes: u64,
    /// The latest stage reported.
    pub stage: Option<String>,
}

impl Progress {
    /// A new progress for `session`.
    pub fn new(session: impl Into<String>) -> Self {
        Progress {
            session: session.into(),
            ..Default::default()
        }
    }

    /// Adds `n` bytes.
    pub fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// The current totals.
    pub fn snapshot(&self) -> Snapshot {
        let stages = self.stages.lock().unwrap_or_else(|e| e.into_inner());
        let items = stages.values().map(|(d, _)| d).sum();
        let total = stages
            .values()
            .map(|(_, t)| *t)
            .sum::<Option<u64>>()
            .filter(|_| !stages.is_empty());
        Snapshot {
            items,
            total,
            bytes: self.bytes.load(Ordering::Relaxed),
            stage: stages.keys().next_back().cloned(),
        }
    }
}

impl Snapshot {
    /// One line for a condition message: `1200 documents, 1.234 MiB`.
    pub fn message(&self, verb: &str) -> String {
        let docs = match self.total {
            Some(t) => format!("{}/{t} documents", self.items),
            None => format!("{} documents", self.items),
        };
        format!(
            "{verb}: {docs}, {}",
            kstash_api::size::format_size(self.bytes)
        )
    }
}

impl TaskEvents for Progress {
    fn log(&self, level: LogLevel, message: &str) {
        match level {
            LogLevel::Warn | LogLevel::Error => {
                tracing::warn!(session = %self.session, "addon: {message}")
            }
            LogLevel::Info => tracing::info!(session = %self.session, "addon: {message}"),
            _ => tracing::debug!(session = %self.session, "addon: {message}"),
        }
    }

    fn progress(&self, u: &ProgressUpdate) {
        let mut stages = self.stages.lock().unwrap_or_else(|e| e.into_inner());
        stages.insert(u.stage.clone(), (u.done, u.total));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(stage: &str, done: u64, total: Option<u64>) -> ProgressUpdate {
        ProgressUpdate {
            done,
            total,
            unit: "documents".into(),
            stage: stage.into(),
        }
    }

    #[test]
    fn sums_stages_and_keeps_the_latest_per_stage() {
        let p = Progress::new("s");
        p.progress(&up("index a", 100, Some(300)));
        p.progress(&up("index a", 300, Some(300)));
        p.progress(&up("index b", 50, Some(200)));
        p.add_bytes(2048);
        let s = p.snapshot();
        assert_eq!((s.items, s.total, s.bytes), (350, Some(500), 2048));
        assert_eq!(
            s.message("Backing up"),
            "Backing up: 350/500 documents, 2.000 KiB"
        );
        p.progress(&up("index c", 1, None));
        assert_eq!(p.snapshot().total, None);
    }
}
