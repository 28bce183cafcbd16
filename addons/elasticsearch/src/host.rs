//! The narrow interface between the addon's logic and its environment.
//!
//! The guest glue implements [`Host`] with the kstash SDK; host-side tests implement it with a
//! fake. Nothing else in the crate touches I/O.

use std::io::{Read, Write};
use std::time::Duration;

/// HTTP methods the addon uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET (never with a body).
    Get,
    /// HEAD.
    Head,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// DELETE.
    Delete,
}

impl Method {
    /// Upper-case method name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

/// One request to the target, relative to its base URL.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Method.
    pub method: Method,
    /// Path and query, starting with `/`, already percent-encoded.
    pub path: String,
    /// Body bytes, if any.
    pub body: Option<Vec<u8>>,
    /// Content type of the body (`application/json` or `application/x-ndjson`).
    pub content_type: &'static str,
}

impl Request {
    /// A request without a body.
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Request {
            method,
            path: path.into(),
            body: None,
            content_type: "application/json",
        }
    }

    /// A request with a JSON body.
    pub fn json(method: Method, path: impl Into<String>, body: &serde_json::Value) -> Self {
        Request {
            method,
            path: path.into(),
            body: Some(serde_json::to_vec(body).expect("JSON values always serialize")),
            content_type: "application/json",
        }
    }

    /// A request with an NDJSON body (`_bulk`).
    pub fn ndjson(method: Method, path: impl Into<String>, body: Vec<u8>) -> Self {
        Request {
            method,
            path: path.into(),
            body: Some(body),
            content_type: "application/x-ndjson",
        }
    }
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Whole body (responses are bounded by one page or one bulk batch).
    pub body: Vec<u8>,
}

/// A request that got no HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportError {
    /// What happened.
    pub message: String,
    /// Whether trying again may help (connection reset/refused, timeout) or not (denied by the
    /// host's sandbox, invalid URL).
    pub retryable: bool,
    /// Whether the server may have received and processed the request: the connection broke or
    /// timed out after it was sent. `false` only when it certainly never arrived (connection
    /// refused, DNS, TLS or connect failure). Repeating a request that may have been processed is
    /// only safe when it is idempotent; a scroll continuation is not (see [`crate::reader`]).
    pub maybe_processed: bool,
}

/// The `wasi:http` error codes (as the SDK's transport errors spell them, `ErrorCode::…`) of a
/// request that never reached the server: it failed while resolving, connecting or shaking
/// hands, before a byte of the request was sent.
const NOT_SENT: [&str; 12] = [
    "ErrorCode::DnsTimeout",
    "ErrorCode::DnsError",
    "ErrorCode::DestinationNotFound",
    "ErrorCode::DestinationUnavailable",
    "ErrorCode::DestinationIpProhibited",
    "ErrorCode::DestinationIpUnroutable",
    "ErrorCode::ConnectionRefused",
    "ErrorCode::ConnectionTimeout",
    "ErrorCode::ConnectionLimitReached",
    "ErrorCode::TlsProtocolError",
    "ErrorCode::TlsCertificateError",
    "ErrorCode::TlsAlertReceived",
];

/// Whether a transport error message of the SDK may mean the server processed the request (see
/// [`TransportError::maybe_processed`]): everything but the codes of [`NOT_SENT`], so an unknown
/// error counts as possibly processed.
pub fn may_have_been_processed(message: &str) -> bool {
    !NOT_SENT.iter().any(|code| {
        message.match_indices(code).any(|(i, _)| {
            // `ConnectionTimeout` must not match inside a longer name.
            !message[i + code.len()..].starts_with(|c: char| c.is_ascii_alphanumeric())
        })
    })
}

/// Log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Detail.
    Debug,
    /// Normal progress.
    Info,
    /// Something the user should know.
    Warn,
    /// A failure.
    Error,
}

/// A named output stream of the component `dump`.
pub trait OutputStream: Write {
    /// Seal the stream; returns the number of bytes the host accepted.
    fn finish(self: Box<Self>) -> std::io::Result<u64>;
}

/// What the addon needs from its environment.
pub trait Host {
    /// Send one request to the target; `Err` is a transport failure (connection refused/reset, …).
    fn send(&mut self, req: &Request) -> Result<Response, TransportError>;
    /// Wait (used for retry backoff).
    fn sleep(&mut self, d: Duration);
    /// Write a log line.
    fn log(&mut self, level: Level, msg: &str);
    /// Report progress of the current stage.
    fn progress(&mut self, done: u64, total: Option<u64>, stage: &str);
    /// Create the named output stream (a file of component `dump`).
    fn create_output(&mut self, name: &str) -> std::io::Result<Box<dyn OutputStream>>;
    /// Names of the input streams (files of component `dump`) available for restore.
    fn input_names(&mut self) -> std::io::Result<Vec<String>>;
    /// Open the named input stream.
    fn open_input(&mut self, name: &str) -> std::io::Result<Box<dyn Read>>;
    /// A random 64-bit value for retry jitter (need not be cryptographic).
    fn random(&mut self) -> u64;
}

#[cfg(test)]
mod tests {
    use super::may_have_been_processed;

    #[test]
    fn only_errors_before_sending_are_surely_unprocessed() {
        for m in [
            "POST /_search/scroll: ErrorCode::ConnectionRefused",
            "GET /: ErrorCode::DnsError(DnsErrorPayload { rcode: None, info_code: None })",
            "GET /: ErrorCode::ConnectionTimeout",
            "GET /: ErrorCode::TlsCertificateError",
        ] {
            assert!(!may_have_been_processed(m), "{m}");
        }
        for m in [
            "POST /_search/scroll: ErrorCode::HttpProtocolError",
            "POST /_search/scroll: ErrorCode::ConnectionTerminated",
            "POST /_search/scroll: ErrorCode::ConnectionReadTimeout",
            "POST /_search/scroll: ErrorCode::HttpResponseTimeout",
            "HTTP body: reading: stream closed",
            "something new",
        ] {
            assert!(may_have_been_processed(m), "{m}");
        }
    }
}
