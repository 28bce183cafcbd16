//! Outgoing HTTP for a task: only to the target's origin, to its pinned addresses, with the
//! host's TLS settings and the target's credentials. Everything else is `HttpRequestDenied`.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Scheme;
use http_body_util::BodyExt;
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::target::{Origin, ResolvedTarget};

type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;
type SendFuture =
    Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), HttpError>> + Send>;

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(600);
const DEFAULT_BETWEEN_BYTES_TIMEOUT: Duration = Duration::from_secs(600);

/// The per-task HTTP policy (the `WasiHttpHooks` of the task's store).
pub(crate) struct EgressPolicy {
    pub target: ResolvedTarget,
    /// Origins the guest tried and was refused, in order.
    pub denied: Vec<String>,
    /// Requests sent to the target.
    pub requests: u64,
}

impl EgressPolicy {
    pub fn new(target: ResolvedTarget) -> Self {
        Self {
            target,
            denied: Vec::new(),
            requests: 0,
        }
    }
}

fn request_origin(uri: &http::Uri) -> Result<Origin, String> {
    let https = match uri.scheme() {
        Some(s) if *s == Scheme::HTTPS => true,
        Some(s) if *s == Scheme::HTTP => false,
        Some(s) => return Err(format!("{s}://")),
        None => true,
    };
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or("");
    Origin::from_authority(https, authority).map_err(|_| format!("{uri}"))
}

impl WasiHttpHooks for EgressPolicy {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> SendFuture {
        let origin = match request_origin(request.uri()) {
            Ok(o) => o,
            Err(what) => {
                self.denied.push(what.clone());
                tracing::warn!(target: "kstash_runtime::egress", "denied request to {what}");
                return Box::new(async { Err(HttpError::HttpRequestDenied) });
            }
        };
        if self.target.origin.as_ref() != Some(&origin) {
            let what = origin.to_string();
            tracing::warn!(
                target: "kstash_runtime::egress",
                "denied request to {what} (the target is {})",
                self.target.endpoint
            );
            self.denied.push(what);
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        self.requests += 1;
        // The host, not the guest, authenticates: replace whatever the guest set.
        let headers = request.headers_mut();
        headers.remove(http::header::AUTHORIZATION);
        if let Some(auth) = &self.target.auth {
            headers.insert(http::header::AUTHORIZATION, auth.clone());
        }
        Box::new(send(request, options, self.target.clone()))
    }
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Io for T {}

async fn connect(target: &ResolvedTarget, timeout: Duration) -> Result<TcpStream, HttpError> {
    let mut last = None;
    for addr in &target.addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) => last = Some(HttpError::Connect(e)),
            Err(_) => last = Some(HttpError::ConnectionTimeout),
        }
    }
    Err(last.unwrap_or(HttpError::DestinationNotFound))
}

async fn send(
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    target: ResolvedTarget,
) -> Result<(http::Response<WasiBody>, IoFuture), HttpError> {
    let connect_timeout = options
        .and_then(|o| o.connect_timeout)
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let first_byte_timeout = options
        .and_then(|o| o.first_byte_timeout)
        .unwrap_or(DEFAULT_FIRST_BYTE_TIMEOUT);
    let between_bytes_timeout = options
        .and_then(|o| o.between_bytes_timeout)
        .unwrap_or(DEFAULT_BETWEEN_BYTES_TIMEOUT)
        .max(Duration::from_millis(1));

    let tcp = connect(&target, connect_timeout).await?;
    let stream: Box<dyn Io> = match &target.tls {
        Some(cfg) => {
            let name = crate::target::server_name(&target.endpoint.host)
                .map_err(|_| HttpError::HttpRequestUriInvalid)?;
            let tls = tokio::time::timeout(
                connect_timeout,
                tokio_rustls::TlsConnector::from(cfg.clone()).connect(name, tcp),
            )
            .await
            .map_err(|_| HttpError::ConnectionTimeout)?
            .map_err(|e| {
                tracing::warn!(target: "kstash_runtime::egress", "TLS to {} failed: {e}", target.endpoint);
                HttpError::Tls(e)
            })?;
            Box::new(tls)
        }
        None => Box::new(tcp),
    };
    let (mut sender, conn) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| HttpError::ConnectionTimeout)??;

    // Origin-form on the wire (the Host header carries the authority).
    let pq = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".to_string());
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(pq)
        .build()
        .map_err(|_| HttpError::HttpRequestUriInvalid)?;

    // Drive the connection in its own task; the response body is read through hyper's channel.
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let res = conn.await;
        let _ = done_tx.send(res);
    });
    let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
        .await
        .map_err(|_| HttpError::ConnectionReadTimeout)?
        .map_err(HttpError::from)?;
    let response = response.map(|incoming| {
        TimedBody {
            incoming,
            timeout: Box::pin(tokio::time::sleep(between_bytes_timeout)),
            every: between_bytes_timeout,
        }
        .boxed_unsync()
    });
    let io: IoFuture = Box::new(async move {
        match done_rx.await {
            Ok(Ok(())) | Err(_) => Ok(()),
            Ok(Err(e)) if e.is_timeout() => Err(HttpError::HttpResponseTimeout),
            Ok(Err(e)) => Err(HttpError::from(e)),
        }
    });
    Ok((response, io))
}

/// A response body that fails when no frame arrives within `every`.
struct TimedBody {
    incoming: hyper::body::Incoming,
    timeout: Pin<Box<tokio::time::Sleep>>,
    every: Duration,
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, HttpError>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(HttpError::from(e)))),
            Poll::Ready(Some(Ok(frame))) => {
                let next = tokio::time::Instant::now() + self.every;
                self.timeout.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                ready!(self.timeout.as_mut().poll(cx));
                Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        http_body::Body::is_end_stream(&self.incoming)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::Body::size_hint(&self.incoming)
    }
}
