//! The error every reconciler returns: the object it was reconciling, what kind of failure it
//! is (which decides the retry and whether the user is told), a hint for the user, and the
//! typed cause (never flattened to a string).

use std::fmt;
use std::time::Duration;

use kube::{Resource, ResourceExt};

/// What kind of failure a reconcile hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// A Kubernetes API call failed (transient: retried soon, not reported as an Event).
    Api,
    /// An object the reconcile depends on does not exist.
    NotFound,
    /// The object (or one it refers to) has a value kstash cannot use.
    Invalid,
    /// The storage (bucket, credentials) could not be reached or used.
    Storage,
    /// A restic repository operation failed.
    Repository,
    /// Adding or removing this controller's finalizer failed.
    Finalizer,
}

impl ErrorKind {
    /// The label value in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Api => "api",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Invalid => "invalid",
            ErrorKind::Storage => "storage",
            ErrorKind::Repository => "repository",
            ErrorKind::Finalizer => "finalizer",
        }
    }

    /// How long the error policy waits before the next attempt.
    pub fn retry_after(self) -> Duration {
        match self {
            ErrorKind::Api | ErrorKind::Finalizer => Duration::from_secs(5),
            ErrorKind::Storage | ErrorKind::Repository => Duration::from_secs(10),
            ErrorKind::NotFound | ErrorKind::Invalid => Duration::from_secs(30),
        }
    }

    /// Whether the user is told with a Warning Event (transient API errors are only logged).
    pub fn is_reported(self) -> bool {
        !matches!(self, ErrorKind::Api)
    }
}

/// Why a reconcile failed.
#[derive(Debug)]
pub struct Error {
    /// `<Kind> namespace/name` of the object being reconciled.
    pub object: String,
    /// The kind of failure.
    pub kind: ErrorKind,
    /// What the user can do about it, when kstash knows.
    pub hint: Option<String>,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.object, self.source)?;
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// A message as an error source (for failures kstash itself detects).
#[derive(Debug)]
pub struct Message(pub String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}

/// A Kubernetes API call that failed, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct ApiCall {
    /// What was being done (`patching status of Snapshot demo/x`).
    pub what: String,
    /// The API error.
    #[source]
    pub source: kube::Error,
}

impl Error {
    /// An error of `kind` about `object`, caused by `source`.
    pub fn new(
        kind: ErrorKind,
        object: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error {
            object: object.into(),
            kind,
            hint: None,
            source: source.into(),
        }
    }

    /// A failed API call while reconciling `object`.
    pub fn api(object: impl Into<String>, what: impl Into<String>, source: kube::Error) -> Self {
        let kind = match &source {
            kube::Error::Api(s) if s.code == 404 => ErrorKind::NotFound,
            kube::Error::Api(s) if s.code == 422 || s.code == 400 => ErrorKind::Invalid,
            _ => ErrorKind::Api,
        };
        Error::new(
            kind,
            object,
            ApiCall {
                what: what.into(),
                source,
            },
        )
    }

    /// A failure kstash detected itself (`message` says what and why).
    pub fn message(kind: ErrorKind, object: impl Into<String>, message: impl Into<String>) -> Self {
        Error::new(kind, object, Message(message.into()))
    }

    /// The same error with a hint for the user.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The typed cause.
    pub fn cause(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self.source.as_ref()
    }
}

/// `<Kind> namespace/name` of an object (cluster-scoped: `<Kind> name`).
pub fn describe<K: Resource<DynamicType = ()>>(o: &K) -> String {
    match o.namespace() {
        Some(ns) => format!("{} {ns}/{}", K::kind(&()), o.name_any()),
        None => format!("{} {}", K::kind(&()), o.name_any()),
    }
}

/// `Result` of a reconcile step.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Maps a [`kstash_repo::resolve::ResolveError`] while reconciling `object` to the failure kind
/// it is (a missing object, a bad field, an unreachable storage, a failed read).
pub fn resolve_error(object: &str, e: kstash_repo::resolve::ResolveError) -> Error {
    use kstash_repo::resolve::ResolveError as R;
    let kind = match &e {
        R::NotFound { .. } => ErrorKind::NotFound,
        R::MissingField { .. } | R::MissingKey { .. } | R::NotUtf8 { .. } | R::Invalid { .. } => {
            ErrorKind::Invalid
        }
        R::Read { .. } => ErrorKind::Api,
        R::Storage(_) => ErrorKind::Storage,
    };
    Error::new(kind, object, e)
}

/// Maps a [`kstash_repo::Error`] while reconciling `object`.
pub fn repo_error(object: &str, e: kstash_repo::Error) -> Error {
    let kind = match &e {
        kstash_repo::Error::Storage { .. }
        | kstash_repo::Error::Config { .. }
        | kstash_repo::Error::MissingSecret { .. } => ErrorKind::Storage,
        _ => ErrorKind::Repository,
    };
    let hint = matches!(e, kstash_repo::Error::WrongPassword { .. })
        .then_some("the RESTIC_PASSWORD of the encryption Secret must be the repository's");
    let err = Error::new(kind, object, e);
    match hint {
        Some(h) => err.with_hint(h),
        None => err,
    }
}

/// Maps the finalizer helper's error to ours (`object` names what was reconciled).
pub fn finalizer_error(object: &str, e: kube::runtime::finalizer::Error<Error>) -> Error {
    use kube::runtime::finalizer::Error as F;
    match e {
        F::ApplyFailed(e) | F::CleanupFailed(e) => e,
        F::AddFinalizer(k) => {
            Error::api(object, "adding the finalizer", k).with_kind(ErrorKind::Finalizer)
        }
        F::RemoveFinalizer(k) => {
            Error::api(object, "removing the finalizer", k).with_kind(ErrorKind::Finalizer)
        }
        other => Error::message(ErrorKind::Finalizer, object, other.to_string()),
    }
}

impl Error {
    fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }
}
