//! What a running task tells its caller: log lines and progress.

/// Severity of a task log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal messages (and the guest's stdout).
    Info,
    /// Unexpected but not fatal (and the guest's stderr).
    Warn,
    /// A failure.
    Error,
}

/// One progress report from the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressUpdate {
    /// Units done in this stage.
    pub done: u64,
    /// Units in this stage, if known.
    pub total: Option<u64>,
    /// Unit name, e.g. `bytes` or `documents`.
    pub unit: String,
    /// Stage name, e.g. `index logs`.
    pub stage: String,
}

/// Counts of one part of a task's result (an index, a database...), from the guest's `report`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartCount {
    /// Part name, e.g. `db0` or `index logs`.
    pub name: String,
    /// Items of the part.
    pub items: u64,
    /// Payload bytes of the part.
    pub bytes: u64,
}

/// What a [`Notice`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    /// Unexpected, did not stop the task.
    Warning,
    /// An item left out on purpose: the result is partial.
    Skipped,
}

/// A structured warning or skipped item from the guest's `report`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Warning or skipped.
    pub kind: NoticeKind,
    /// The item concerned, if any.
    pub item: Option<String>,
    /// What happened.
    pub message: String,
}

/// Receives a task's log lines, progress and structured results as they happen. Called from
/// the task's thread: keep it cheap.
pub trait TaskEvents: Send + Sync {
    /// A log line (from the guest's `log` import, or its stdout/stderr).
    fn log(&self, level: LogLevel, message: &str);
    /// A progress report.
    fn progress(&self, update: &ProgressUpdate);
    /// The guest set the counts of a part (also in [`crate::TaskReport::parts`] at the end).
    fn part(&self, _count: &PartCount) {}
    /// The guest reported a notice (also in [`crate::TaskReport::notices`] at the end).
    fn notice(&self, _notice: &Notice) {}
}

/// Forwards log lines to `tracing` (target `kstash_runtime::guest`) and ignores progress.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingEvents;

impl TaskEvents for TracingEvents {
    fn log(&self, level: LogLevel, message: &str) {
        match level {
            LogLevel::Trace => tracing::trace!(target: "kstash_runtime::guest", "{message}"),
            LogLevel::Debug => tracing::debug!(target: "kstash_runtime::guest", "{message}"),
            LogLevel::Info => tracing::info!(target: "kstash_runtime::guest", "{message}"),
            LogLevel::Warn => tracing::warn!(target: "kstash_runtime::guest", "{message}"),
            LogLevel::Error => tracing::error!(target: "kstash_runtime::guest", "{message}"),
        }
    }

    fn progress(&self, _update: &ProgressUpdate) {}
}
