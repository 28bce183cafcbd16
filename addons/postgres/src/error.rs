//! The addon's errors: each names the object (parameter, database, table, stream, script line)
//! it is about, and carries the server's own error fields when the server refused something.

use std::fmt;
use std::io;

/// Result with the addon's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An `ErrorResponse` (or `NoticeResponse`) as the server sent it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerError {
    /// `S`: ERROR, FATAL, PANIC (or WARNING, NOTICE… for notices).
    pub severity: String,
    /// `C`: the SQLSTATE, e.g. `42P01`.
    pub code: String,
    /// `M`: the primary message.
    pub message: String,
    /// `D`: detail, if any.
    pub detail: Option<String>,
    /// `H`: hint, if any.
    pub hint: Option<String>,
    /// `P`: 1-based character position in the statement, if any.
    pub position: Option<u32>,
    /// `W`: context (call stack), if any.
    pub context: Option<String>,
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.severity, self.code, self.message)?;
        if let Some(d) = &self.detail {
            write!(f, " (DETAIL: {d})")?;
        }
        if let Some(h) = &self.hint {
            write!(f, " (HINT: {h})")?;
        }
        Ok(())
    }
}

impl ServerError {
    /// Whether the SQLSTATE is `code`.
    pub fn is(&self, code: &str) -> bool {
        self.code == code
    }
}

/// Why a task failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A parameter (or an option inside `args`) is unknown or malformed.
    #[error("parameter {name}: {reason}")]
    Param {
        /// The parameter or option, e.g. `backupCmd` or `args: --jobs`.
        name: String,
        /// Why it was refused.
        reason: String,
    },
    /// The server answered a request with an error.
    #[error("{context}: {server}")]
    Server {
        /// What was being done, naming the object (e.g. `database "app": COPY public.t`).
        context: String,
        /// The server's error fields.
        server: Box<ServerError>,
    },
    /// Authentication was refused (wrong password, unsupported method, bad server signature).
    #[error("authentication of user {user:?} to database {database:?} failed: {reason}")]
    Auth {
        /// The user name.
        user: String,
        /// The database named in the startup message.
        database: String,
        /// The server's message or the client-side reason.
        reason: String,
    },
    /// The connection failed or was cut.
    #[error("{context}: connection failed: {source}")]
    Io {
        /// What was being done, naming the object.
        context: String,
        /// The transport error.
        #[source]
        source: io::Error,
    },
    /// The server sent something the protocol does not allow here.
    #[error("{context}: protocol violation: {detail}")]
    Protocol {
        /// What was being done.
        context: String,
        /// What arrived.
        detail: String,
    },
    /// TLS was required but the server refused it, or the upgrade failed.
    #[error("TLS to the server failed: {0}")]
    Tls(String),
    /// A statement of a restore script failed.
    #[error("{stream} line {line}: {source} (statement: {excerpt})")]
    Script {
        /// The input stream, e.g. `databases/app.sql`.
        stream: String,
        /// 1-based line where the statement starts.
        line: u64,
        /// The statement's first characters.
        excerpt: String,
        /// What went wrong.
        #[source]
        source: Box<Error>,
    },
    /// A restore script cannot be run (bad meta-command, unterminated quote, …).
    #[error("{stream} line {line}: {reason}")]
    ScriptSyntax {
        /// The input stream.
        stream: String,
        /// 1-based line.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// The restore target already holds data.
    #[error("restore target database {database:?} is not empty ({what}); set parameter clean=true to drop and recreate it")]
    NotEmpty {
        /// The database.
        database: String,
        /// What was found, e.g. `3 tables in schema public`.
        what: String,
    },
    /// A host stream failed.
    #[error("stream {stream}: {source}")]
    Stream {
        /// The stream name.
        stream: String,
        /// The host's error.
        #[source]
        source: io::Error,
    },
    /// The source holds something this addon cannot dump faithfully.
    #[error("{0}")]
    Unsupported(String),
}

impl Error {
    /// The server's error fields, if the server refused something (also inside a script error).
    pub fn server(&self) -> Option<&ServerError> {
        match self {
            Error::Server { server, .. } => Some(server),
            Error::Script { source, .. } => source.server(),
            _ => None,
        }
    }

    /// Shorthand for [`Error::Param`].
    pub fn param(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Param {
            name: name.into(),
            reason: reason.into(),
        }
    }
}
