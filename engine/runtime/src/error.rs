//! Error types: loading a module, and the four ways a task can fail.

use std::fmt;

use crate::digest::Digest;

/// Why a module could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The module's SHA-256 differs from the pinned digest.
    #[error("module digest mismatch: pinned {pinned}, actual {actual}")]
    DigestMismatch {
        /// The digest the `Function` (or `--digest`) pins.
        pinned: Digest,
        /// The digest of the bytes given.
        actual: Digest,
    },
    /// Reading the module file failed.
    #[error("reading module {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The bytes are not a valid component, or do not target the `kstash:addon@0.2.0` world.
    #[error("module {digest} is not a valid kstash addon component: {message}")]
    Invalid {
        /// Digest of the module.
        digest: Digest,
        /// What the compiler or linker said.
        message: String,
    },
    /// `describe()` failed (trapped or returned garbage).
    #[error("module {digest}: describe() failed: {message}")]
    Describe {
        /// Digest of the module.
        digest: Digest,
        /// What happened.
        message: String,
    },
    /// The runtime itself could not be set up (engine or pool configuration).
    #[error("runtime setup: {0}")]
    Setup(String),
}

/// Which per-task limit was exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Guest linear memory (bytes).
    Memory,
    /// CPU time spent executing guest code (epoch ticks).
    Cpu,
    /// Wall-clock time of the whole task.
    WallClock,
    /// Total bytes written to output streams.
    BytesWritten,
    /// Number of output streams open at once or in total.
    Streams,
    /// Bytes exchanged with the target over TCP (in and out together).
    TargetBytes,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::Memory => "memory",
            Limit::Cpu => "cpu time",
            Limit::WallClock => "wall clock",
            Limit::BytesWritten => "bytes written",
            Limit::Streams => "streams",
            Limit::TargetBytes => "target bytes",
        })
    }
}

/// The addon's own error category (the `task-error` variant of the WIT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestErrorKind {
    /// A parameter is missing or malformed.
    InvalidParams,
    /// The target answered with an error.
    Remote,
    /// Talking to the target failed.
    Connect,
    /// A host stream failed.
    Io,
    /// Anything else.
    Other,
}

impl fmt::Display for GuestErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GuestErrorKind::InvalidParams => "invalid parameters",
            GuestErrorKind::Remote => "target error",
            GuestErrorKind::Connect => "connection error",
            GuestErrorKind::Io => "stream error",
            GuestErrorKind::Other => "error",
        })
    }
}

/// Why a task failed. `Trap`, `LimitExceeded`, `Denied` and `Guest` are the four kinds a running
/// guest can end in; `Invalid` and `EgressDenied` are refused before the guest runs.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TaskError {
    /// The guest trapped (panic, unreachable, out-of-bounds...). `message` carries the trap and
    /// the last lines the guest wrote to stderr (a Rust panic message lands there).
    #[error("addon trapped: {message}")]
    Trap {
        /// Trap description and the guest's last stderr lines.
        message: String,
    },
    /// A per-task limit stopped the guest.
    #[error("addon exceeded its {limit} limit: {detail}")]
    LimitExceeded {
        /// Which limit.
        limit: Limit,
        /// The limit's value and what was attempted.
        detail: String,
    },
    /// The guest asked for something the sandbox forbids (HTTP to another origin, a raw socket
    /// to any address) and failed.
    #[error("addon request denied: {target} is not the task's target {allowed}")]
    Denied {
        /// What the guest tried to reach (`scheme://host:port`, or `socket <addr>`).
        target: String,
        /// The only endpoint allowed.
        allowed: String,
    },
    /// The target resolved to an address the runtime's egress policy refuses (link-local, cloud
    /// metadata, outside the allowed ranges). Nothing was connected to; the guest did not run.
    #[error("target {target} refused by the egress policy: {reason}")]
    EgressDenied {
        /// The target URL's endpoint (`scheme://host:port`).
        target: String,
        /// The refused address.
        address: std::net::SocketAddr,
        /// Which rule refused it.
        reason: String,
    },
    /// The addon returned an error of its own.
    #[error("addon failed ({kind}): {message}")]
    Guest {
        /// The category the addon chose.
        kind: GuestErrorKind,
        /// The addon's message.
        message: String,
    },
    /// The task was refused before running (unknown task, bad target URL or TLS files, missing
    /// streams for its kind).
    #[error("invalid task: {0}")]
    Invalid(String),
}

impl TaskError {
    /// Short name of the kind: `trap`, `limit`, `denied`, `egress`, `guest` or `invalid`.
    pub fn kind(&self) -> &'static str {
        match self {
            TaskError::Trap { .. } => "trap",
            TaskError::LimitExceeded { .. } => "limit",
            TaskError::Denied { .. } => "denied",
            TaskError::EgressDenied { .. } => "egress",
            TaskError::Guest { .. } => "guest",
            TaskError::Invalid(_) => "invalid",
        }
    }
}
