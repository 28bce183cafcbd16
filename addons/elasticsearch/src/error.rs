//! The addon's error type: every failure names what failed and why.

use thiserror::Error;

/// Everything that can make a backup or restore task fail.
#[derive(Debug, Error)]
pub enum AddonError {
    /// A task parameter or an option inside `args` was unknown or malformed.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParam {
        /// The parameter or option name, e.g. `--limit`.
        name: String,
        /// Why it was refused.
        reason: String,
    },
    /// Elasticsearch answered with an error status (after retries where they apply).
    #[error("{method} {path}: HTTP {status}: {reason}")]
    Remote {
        /// HTTP method of the failed request.
        method: String,
        /// Path and query of the failed request.
        path: String,
        /// Status code returned.
        status: u16,
        /// Elasticsearch's error type and reason, or the body.
        reason: String,
    },
    /// The request could not be sent or its answer not received, after all retries.
    #[error("{method} {path}: connection failed: {reason}")]
    Connect {
        /// HTTP method of the failed request.
        method: String,
        /// Path and query of the failed request.
        path: String,
        /// Transport error text.
        reason: String,
    },
    /// Elasticsearch answered 2xx with a body we could not understand.
    #[error("{what}: unexpected response: {reason}")]
    Protocol {
        /// Which request or step.
        what: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A document failed to index during restore (not retryable).
    #[error("bulk load of index {index} failed for document id {id}: HTTP {status}: {reason}")]
    BulkItem {
        /// Target index.
        index: String,
        /// Document id.
        id: String,
        /// Item status.
        status: u16,
        /// Elasticsearch's error type and reason.
        reason: String,
    },
    /// Reading or loading an index could not be made exact (shard failures, an expired point in
    /// time, a lost scroll page, a count mismatch): the task fails rather than miss documents.
    #[error("index {index}: {reason}")]
    Incomplete {
        /// Index or data stream.
        index: String,
        /// What went wrong and what to do.
        reason: String,
    },
    /// A file of the dump could not be parsed.
    #[error("dump file {file}: {reason}")]
    Data {
        /// File name inside component `dump`.
        file: String,
        /// What was wrong.
        reason: String,
    },
    /// Reading or writing a host stream failed.
    #[error("stream {name}: {reason}")]
    Io {
        /// Stream (file) name.
        name: String,
        /// The I/O error.
        reason: String,
    },
    /// The task refuses to proceed (e.g. restoring over an index that has documents).
    #[error("{0}")]
    Refused(String),
    /// Several indices failed while `--ignoreChildError=true` was not set (or all failed).
    #[error("{count} index job(s) failed; first: {first}")]
    Several {
        /// Number of failed index jobs.
        count: usize,
        /// The first error.
        first: String,
    },
}

impl AddonError {
    /// Shorthand for [`AddonError::InvalidParam`].
    pub fn param(name: impl Into<String>, reason: impl Into<String>) -> Self {
        AddonError::InvalidParam {
            name: name.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`AddonError::Incomplete`].
    pub fn incomplete(index: &str, reason: impl Into<String>) -> Self {
        AddonError::Incomplete {
            index: index.to_string(),
            reason: reason.into(),
        }
    }

    /// Shorthand for an I/O error on a named stream.
    pub fn io(name: &str, err: impl std::fmt::Display) -> Self {
        AddonError::Io {
            name: name.to_string(),
            reason: err.to_string(),
        }
    }

    /// True when this error came from parameter validation.
    pub fn is_invalid_param(&self) -> bool {
        matches!(self, AddonError::InvalidParam { .. })
    }
}

/// Result alias used across the crate.
pub type Result<T, E = AddonError> = std::result::Result<T, E>;
