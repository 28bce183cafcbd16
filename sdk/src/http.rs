//! A blocking, streaming HTTP client on raw `wasi:http` 0.2.12.
//!
//! Why not `wstd`: wstd 0.6.8 fails about half of GET requests against a hyper host (it writes an
//! empty body hyper already dropped). This client never opens the body of a request without one,
//! sends requests that carry a body with a `Content-Length` when it is known (chunked otherwise),
//! and reports the exact `wasi:http` error code (e.g. `HttpRequestDenied`). Blocking I/O keeps
//! addon code ordinary Rust: responses are `std::io::Read`, uploads take any `std::io::Read`.
//!
//! Only the task's target can be reached; the host attaches its credentials, so never set an
//! `Authorization` header yourself. Send search/scroll bodies with POST: a GET body is dropped.

use std::fmt;
use std::io::{self, Read};

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingResponse, Method, OutgoingBody, OutgoingRequest,
    RequestOptions, Scheme,
};
use wasip2::io::streams::{InputStream, OutputStream, StreamError};

/// Largest slice handed to the host in one body write.
const UPLOAD_CHUNK: usize = 64 * 1024;
/// Largest read from a response body in one host call.
const READ_CHUNK: u64 = 64 * 1024;

/// An HTTP failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The base URL or a path could not be used.
    InvalidUrl(String),
    /// A header name or value was refused.
    InvalidHeader(String),
    /// The host refused the request: its origin is not the task's target.
    Denied(String),
    /// The request failed in transit (the `wasi:http` error code).
    Transport(String),
    /// Reading or writing a body failed.
    Body(String),
    /// The target answered with a non-success status (see [`Response::error_for_status`]).
    Status {
        /// HTTP status code.
        status: u16,
        /// Request method and path.
        request: String,
        /// The start of the response body.
        body: String,
    },
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::InvalidUrl(m) => write!(f, "invalid URL: {m}"),
            HttpError::InvalidHeader(m) => write!(f, "invalid header: {m}"),
            HttpError::Denied(m) => write!(f, "request denied by the host: {m}"),
            HttpError::Transport(m) => write!(f, "HTTP request failed: {m}"),
            HttpError::Body(m) => write!(f, "HTTP body: {m}"),
            HttpError::Status {
                status,
                request,
                body,
            } => write!(f, "{request} returned HTTP {status}: {body}"),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for io::Error {
    fn from(e: HttpError) -> Self {
        io::Error::other(e.to_string())
    }
}

fn transport(code: ErrorCode, what: &str) -> HttpError {
    match code {
        ErrorCode::HttpRequestDenied => HttpError::Denied(what.to_string()),
        other => HttpError::Transport(format!("{what}: {other:?}")),
    }
}

/// A client bound to one origin (scheme, host, port) and an optional base path.
#[derive(Debug, Clone)]
pub struct Client {
    https: bool,
    authority: String,
    base_path: String,
}

impl Client {
    /// A client for `base_url`, e.g. `https://es.demo.svc:9200` or `http://127.0.0.1:8080/api`.
    pub fn new(base_url: &str) -> Result<Self, HttpError> {
        let (https, rest) = if let Some(r) = base_url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = base_url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(HttpError::InvalidUrl(format!(
                "{base_url:?}: must start with http:// or https://"
            )));
        };
        if rest.contains(['?', '#']) {
            return Err(HttpError::InvalidUrl(format!(
                "target URL {base_url:?}: must not contain `?` or `#` (the base path is joined with every request path)"
            )));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(HttpError::InvalidUrl(format!(
                "{base_url:?}: needs a host and no user info"
            )));
        }
        Ok(Self {
            https,
            authority: authority.to_string(),
            base_path: path.trim_end_matches('/').to_string(),
        })
    }

    /// A request with any method; `path` may carry a query (`/_search?size=10`).
    pub fn request(&self, method: &str, path: &str) -> RequestBuilder {
        RequestBuilder {
            client: self.clone(),
            method: method.to_ascii_uppercase(),
            path: path.to_string(),
            headers: Vec::new(),
            timeout_ms: None,
        }
    }

    /// A GET request (never carries a body).
    pub fn get(&self, path: &str) -> RequestBuilder {
        self.request("GET", path)
    }
    /// A HEAD request.
    pub fn head(&self, path: &str) -> RequestBuilder {
        self.request("HEAD", path)
    }
    /// A POST request; use it for any request with a body.
    pub fn post(&self, path: &str) -> RequestBuilder {
        self.request("POST", path)
    }
    /// A PUT request.
    pub fn put(&self, path: &str) -> RequestBuilder {
        self.request("PUT", path)
    }
    /// A DELETE request.
    pub fn delete(&self, path: &str) -> RequestBuilder {
        self.request("DELETE", path)
    }
}

/// A request being built. Finish it with [`send`](Self::send),
/// [`send_bytes`](Self::send_bytes) or [`send_reader`](Self::send_reader).
#[derive(Debug)]
pub struct RequestBuilder {
    client: Client,
    method: String,
    path: String,
    headers: Vec<(String, Vec<u8>)>,
    timeout_ms: Option<u64>,
}

impl RequestBuilder {
    /// Adds a header (e.g. `content-type: application/json`).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.as_bytes().to_vec()));
        self
    }

    /// Sets connect, first-byte and between-bytes timeouts (the host's defaults apply otherwise).
    pub fn timeout_ms(mut self, ms: u64) -> Self {
        self.timeout_ms = Some(ms);
        self
    }

    fn describe(&self) -> String {
        format!("{} {}{}", self.method, self.client.base_path, self.path)
    }

    fn prepare(&self, content_length: Option<u64>) -> Result<OutgoingRequest, HttpError> {
        let mut headers = self.headers.clone();
        if let Some(n) = content_length {
            headers.push(("content-length".to_string(), n.to_string().into_bytes()));
        }
        let fields =
            Fields::from_list(&headers).map_err(|e| HttpError::InvalidHeader(format!("{e:?}")))?;
        let req = OutgoingRequest::new(fields);
        let method = match self.method.as_str() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_string()),
        };
        let bad = |what: &str| HttpError::InvalidUrl(format!("{}: bad {what}", self.describe()));
        req.set_method(&method).map_err(|_| bad("method"))?;
        let scheme = if self.client.https {
            Scheme::Https
        } else {
            Scheme::Http
        };
        req.set_scheme(Some(&scheme)).map_err(|_| bad("scheme"))?;
        req.set_authority(Some(&self.client.authority))
            .map_err(|_| bad("authority"))?;
        let mut path = format!("{}{}", self.client.base_path, self.path);
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        req.set_path_with_query(Some(&path))
            .map_err(|_| bad("path"))?;
        Ok(req)
    }

    fn options(&self) -> Option<RequestOptions> {
        self.timeout_ms.map(|ms| {
            let o = RequestOptions::new();
            let ns = ms.saturating_mul(1_000_000);
            let _ = o.set_connect_timeout(Some(ns));
            let _ = o.set_first_byte_timeout(Some(ns));
            let _ = o.set_between_bytes_timeout(Some(ns));
            o
        })
    }

    /// Sends the request without a body.
    pub fn send(self) -> Result<Response, HttpError> {
        let req = self.prepare(None)?;
        // Never call `req.body()` here: hyper drops a GET's body, and writing to it would fail.
        let what = self.describe();
        let fut = outgoing_handler::handle(req, self.options()).map_err(|c| transport(c, &what))?;
        wait_response(fut, what)
    }

    /// Sends the request with `body` (and its `Content-Length`).
    pub fn send_bytes(self, body: &[u8]) -> Result<Response, HttpError> {
        self.send_body(&mut io::Cursor::new(body), Some(body.len() as u64))
    }

    /// Streams the request body from `body`; pass `content_length` if known (chunked otherwise).
    pub fn send_reader<R: Read>(
        self,
        body: &mut R,
        content_length: Option<u64>,
    ) -> Result<Response, HttpError> {
        self.send_body(body, content_length)
    }

    fn send_body(
        self,
        body: &mut dyn Read,
        content_length: Option<u64>,
    ) -> Result<Response, HttpError> {
        let what = self.describe();
        let req = self.prepare(content_length)?;
        let out_body = req
            .body()
            .map_err(|_| HttpError::Body(format!("{what}: body already taken")))?;
        let fut = outgoing_handler::handle(req, self.options()).map_err(|c| transport(c, &what))?;
        let upload = {
            let stream = out_body
                .write()
                .map_err(|_| HttpError::Body(format!("{what}: body stream already taken")))?;
            let res = pump_upload(body, &stream);
            drop(stream);
            res
        };
        match upload {
            Ok(()) => OutgoingBody::finish(out_body, None).map_err(|c| transport(c, &what))?,
            Err(e) => {
                drop(out_body);
                // A server may answer before it has read the whole body (a 429 or 503 under
                // load, a 413, a denial); the host then closes the body stream. That answer is
                // the request's result: return it so the caller sees the status and can retry.
                // Only a success without the whole body uploaded is an upload error.
                return match wait_response(fut, what.clone()) {
                    Ok(resp) if !(200..300).contains(&resp.status()) => Ok(resp),
                    Ok(_) => Err(HttpError::Body(format!("{what}: upload: {e}"))),
                    Err(resp_err) => Err(resp_err),
                };
            }
        }
        wait_response(fut, what)
    }
}

fn pump_upload(body: &mut dyn Read, stream: &OutputStream) -> Result<(), String> {
    let mut buf = vec![0u8; UPLOAD_CHUNK];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("reading the body source: {e}")),
        };
        let mut off = 0;
        while off < n {
            let permit = stream.check_write().map_err(stream_err)?;
            if permit == 0 {
                stream.subscribe().block();
                continue;
            }
            let m = (permit as usize).min(n - off);
            stream.write(&buf[off..off + m]).map_err(stream_err)?;
            off += m;
        }
    }
    // Every byte has been handed over. With a Content-Length the host closes the body as soon as
    // it has them all, so a closed stream from here on means "complete", not "failed".
    match stream.flush() {
        Ok(()) => {}
        Err(StreamError::Closed) => return Ok(()),
        Err(e) => return Err(stream_err(e)),
    }
    loop {
        // Wait until the flush is done (check-write reports capacity again).
        match stream.check_write() {
            Ok(0) => stream.subscribe().block(),
            Ok(_) | Err(StreamError::Closed) => return Ok(()),
            Err(e) => return Err(stream_err(e)),
        }
    }
}

fn stream_err(e: StreamError) -> String {
    match e {
        StreamError::Closed => "stream closed".to_string(),
        StreamError::LastOperationFailed(err) => err.to_debug_string(),
    }
}

fn wait_response(
    fut: wasip2::http::types::FutureIncomingResponse,
    what: String,
) -> Result<Response, HttpError> {
    let resp = loop {
        match fut.get() {
            Some(r) => break r,
            None => fut.subscribe().block(),
        }
    };
    let resp = resp
        .map_err(|_| HttpError::Transport(format!("{what}: response already taken")))?
        .map_err(|c| transport(c, &what))?;
    Response::new(resp, what)
}

/// A response whose body has not been read yet.
pub struct Response {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    request: String,
    body: BodyReader,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("request", &self.request)
            .finish_non_exhaustive()
    }
}

impl Response {
    fn new(resp: IncomingResponse, request: String) -> Result<Self, HttpError> {
        let status = resp.status();
        let headers = resp.headers().entries();
        let body = resp
            .consume()
            .map_err(|_| HttpError::Body(format!("{request}: body already consumed")))?;
        let stream = body
            .stream()
            .map_err(|_| HttpError::Body(format!("{request}: body stream already taken")))?;
        Ok(Self {
            status,
            headers,
            request,
            body: BodyReader {
                stream: Some(stream),
                _body: Some(body),
                _response: resp,
            },
        })
    }

    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The first value of header `name` (case-insensitive), if it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The `Content-Length`, if the target sent one.
    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length")
            .and_then(|v| v.trim().parse().ok())
    }

    /// Turns a non-2xx response into [`HttpError::Status`] with the start of its body.
    pub fn error_for_status(self) -> Result<Self, HttpError> {
        if (200..300).contains(&self.status) {
            return Ok(self);
        }
        let status = self.status;
        let request = self.request.clone();
        let mut excerpt = Vec::new();
        let _ = self.into_reader().take(2048).read_to_end(&mut excerpt);
        Err(HttpError::Status {
            status,
            request,
            body: String::from_utf8_lossy(&excerpt).into_owned(),
        })
    }

    /// The body as a `std::io::Read` (streams; nothing is buffered beyond one read).
    pub fn into_reader(self) -> BodyReader {
        self.body
    }

    /// Reads the whole body into memory.
    pub fn bytes(self) -> Result<Vec<u8>, HttpError> {
        let what = self.request.clone();
        let mut out = Vec::new();
        self.into_reader()
            .read_to_end(&mut out)
            .map_err(|e| HttpError::Body(format!("{what}: {e}")))?;
        Ok(out)
    }

    /// Reads the whole body as UTF-8 text (invalid bytes replaced).
    pub fn text(self) -> Result<String, HttpError> {
        Ok(String::from_utf8_lossy(&self.bytes()?).into_owned())
    }
}

/// A response body as `std::io::Read`.
pub struct BodyReader {
    // Field order is drop order: the stream is a child of the body, the body of the response.
    stream: Option<InputStream>,
    _body: Option<IncomingBody>,
    _response: IncomingResponse,
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(stream) = self.stream.as_ref() else {
            return Ok(0);
        };
        if buf.is_empty() {
            return Ok(0);
        }
        let max = (buf.len() as u64).min(READ_CHUNK);
        loop {
            match stream.blocking_read(max) {
                Ok(data) if data.is_empty() => continue,
                Ok(data) => {
                    buf[..data.len()].copy_from_slice(&data);
                    return Ok(data.len());
                }
                Err(StreamError::Closed) => {
                    self.stream = None;
                    return Ok(0);
                }
                Err(StreamError::LastOperationFailed(e)) => {
                    self.stream = None;
                    return Err(io::Error::other(format!(
                        "reading the response body: {}",
                        e.to_debug_string()
                    )));
                }
            }
        }
    }
}
