//! The executors' error type.

/// Why an executor step failed. The message is what lands in a condition or an Event.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("{what}: {source}")]
    Kube {
        /// What was attempted (names the object).
        what: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// A referenced object does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// An object is missing a field the executor needs, or has a bad value.
    #[error("{0}")]
    Invalid(String),
    /// The repository layer failed.
    #[error("{what}: {source}")]
    Repo {
        /// What was attempted.
        what: String,
        /// The repository error.
        #[source]
        source: kstash_repo::Error,
    },
    /// kube's finalizer helper failed (adding or removing `kubestash.com/cleanup`, or the
    /// reconcile it wraps).
    #[error(transparent)]
    Finalizer(Box<kube::runtime::finalizer::Error<Error>>),
    /// Resolving a Repository's storage or password failed.
    #[error(transparent)]
    Resolve(#[from] kstash_repo::resolve::ResolveError),
    /// Resolving or loading the addon module failed.
    #[error(transparent)]
    Module(Box<crate::task::module::ModuleError>),
    /// Resolving the target connection failed.
    #[error("target: {0}")]
    Target(#[from] crate::task::target::TargetError),
    /// The session asks for something kstash does not run (hooks, …).
    #[error(transparent)]
    Unsupported(kstash_api::admission::AdmissionError),
    /// A BackupSession rule refused the session's fields (deadline, retry).
    #[error(transparent)]
    Session(#[from] kstash_rules::backup_session::SessionError),
    /// The RestoreSession could not be planned.
    #[error(transparent)]
    Plan(#[from] kstash_rules::restore_session::PlanError),
    /// A reference reaches a namespace that did not allow it (the tenancy rules).
    #[error("refused: {0}")]
    Denied(#[from] kstash_api::admission::AdmissionError),
    /// Listing what the admission rules consult failed.
    #[error(transparent)]
    Control(#[from] crate::control::Error),
    /// A parameter could not be resolved.
    #[error(transparent)]
    Params(#[from] crate::task::params::ParamError),
    /// A Function's task limits are malformed or above the operator's caps.
    #[error(transparent)]
    Limits(#[from] crate::task::limits::LimitsError),
    /// Reading or taking a session's claim Lease failed.
    #[error(transparent)]
    Claim(#[from] crate::task::claim::ClaimError),
}

impl From<crate::task::module::ModuleError> for Error {
    fn from(e: crate::task::module::ModuleError) -> Self {
        Error::Module(Box::new(e))
    }
}

impl Error {
    /// A Kubernetes API error with context.
    pub fn kube(what: impl Into<String>, source: kube::Error) -> Self {
        Error::Kube {
            what: what.into(),
            source,
        }
    }

    /// A repository error with context.
    pub fn repo(what: impl Into<String>, source: kstash_repo::Error) -> Self {
        Error::Repo {
            what: what.into(),
            source,
        }
    }
}

pub(crate) use crate::task::not_found_none;
