//! The error type of the crate.

use std::time::Duration;

/// Everything that can go wrong in `kstash-repo`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The storage configuration is invalid (names the storage and the field).
    #[error("storage {storage}: invalid configuration: field `{field}`: {reason}")]
    Config {
        /// Storage name.
        storage: String,
        /// Offending field.
        field: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A required secret key is missing.
    #[error("storage {storage}: secret is missing key `{key}`")]
    MissingSecret {
        /// Storage (or repository) name.
        storage: String,
        /// Missing key.
        key: String,
    },
    /// The storage could not be reached or an object operation failed.
    #[error("storage {storage}: {op} `{path}` failed: {}", with_causes(.source))]
    Storage {
        /// Storage name.
        storage: String,
        /// Operation, e.g. `write`.
        op: &'static str,
        /// Object path relative to the storage prefix.
        path: String,
        /// The opendal error (boxed: it is large, and errors travel through every result).
        #[source]
        source: Box<opendal::Error>,
    },
    /// The operator's workload identity gave no credentials for the storage.
    #[error("storage {storage}: {op} `{path}` failed: no credentials from the operator's workload identity: {reason}")]
    Identity {
        /// Storage name.
        storage: String,
        /// Operation.
        op: &'static str,
        /// Object path relative to the storage prefix.
        path: String,
        /// Why STS (or the credentials endpoint) gave none.
        reason: String,
    },
    /// A restic operation failed.
    #[error("restic repository {repo}: {op} failed: {message}")]
    Restic {
        /// Repository location.
        repo: String,
        /// Operation, e.g. `open`.
        op: &'static str,
        /// The rustic_core error, rendered.
        message: String,
    },
    /// The password opens none of the repository's keys.
    #[error(
        "the restic password{} does not open repository {repo}: it is not the password the \
         repository was created with (put that password in the Secret, or point the \
         encryptionSecret at the Secret that holds it)",
        .password_source.as_ref().map(|s| format!(" in {s}")).unwrap_or_default()
    )]
    WrongPassword {
        /// Repository location.
        repo: String,
        /// Where the password came from (`Secret demo/encrypt-secret`), when known.
        password_source: Option<String>,
    },
    /// The repository is locked by someone else for longer than we may wait.
    #[error("restic repository {repo}: still locked after waiting {waited:?}: {holder}")]
    Locked {
        /// Repository location.
        repo: String,
        /// How long we waited.
        waited: Duration,
        /// Description of the lock holder.
        holder: String,
    },
    /// Bad input from the caller (names the parameter).
    #[error("invalid argument `{param}`: {reason}")]
    InvalidArgument {
        /// Parameter name.
        param: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// A backup stream failed or was not finished.
    #[error("backup stream `{path}`: {reason}")]
    Stream {
        /// Path of the file in the snapshot.
        path: String,
        /// What happened.
        reason: String,
    },
    /// Something was not found (snapshot, file).
    #[error("{what} not found: {name}")]
    NotFound {
        /// Kind of thing.
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// A background task panicked or was cancelled.
    #[error("internal task failed: {0}")]
    Task(String),
}

/// Result alias of the crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn restic(repo: &str, op: &'static str, err: impl std::fmt::Display) -> Self {
        Error::Restic {
            repo: repo.to_string(),
            op,
            message: err.to_string(),
        }
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(e: tokio::task::JoinError) -> Self {
        Error::Task(e.to_string())
    }
}

/// An opendal error with the causes below it that its own text leaves out (e.g. why a
/// credential could not be loaded), each once.
fn with_causes(e: &opendal::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let line = c.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        cause = c.source();
    }
    text
}
