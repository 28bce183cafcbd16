//! The HTTPS shell of the webhook: TLS (rustls, ring) with a certificate that can be swapped
//! while serving, HTTP/1.1, `POST /validate` and `POST /mutate` answered by
//! [`review::answer`], a body that is not an `AdmissionReview` answered `400`.

use std::convert::Infallible;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::certs::CertBundle;
use super::review::{self, Hook};
use crate::reconcilers::admission::AdmissionStores;

/// The largest request body read (the API server sends at most a few MiB per object).
const MAX_BODY: usize = 8 << 20;
/// Most connections served at once; more wait in the listen queue. Bounds the memory the
/// bodies and their reviews take (the Service is reachable from every pod).
const MAX_CONNECTIONS: usize = 64;
/// Deadline of a TLS handshake, of a request's headers and of its body: a client that stalls
/// loses its connection instead of holding it. The API server's own call timeout is at most
/// 30 s.
const CLIENT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// The TLS configuration being served; [`TlsState::set`] swaps it for new connections.
#[derive(Clone)]
pub struct TlsState {
    current: Arc<RwLock<(Arc<rustls::ServerConfig>, String)>>,
}

/// The serving certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("loading the webhook serving certificate: {0}")]
pub struct TlsError(String);

fn server_config(bundle: &CertBundle) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let err = |e: &dyn std::fmt::Display| TlsError(e.to_string());
    let certs: Vec<_> = rustls_pemfile::certs(&mut bundle.tls_crt.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| err(&e))?;
    let key = rustls_pemfile::private_key(&mut bundle.tls_key.as_bytes())
        .map_err(|e| err(&e))?
        .ok_or_else(|| TlsError("tls.key holds no private key".into()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| err(&e))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| err(&e))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

impl TlsState {
    /// Serves `bundle`'s leaf.
    pub fn new(bundle: &CertBundle) -> Result<TlsState, TlsError> {
        Ok(TlsState {
            current: Arc::new(RwLock::new((
                server_config(bundle)?,
                bundle.tls_crt.clone(),
            ))),
        })
    }

    /// Serves `bundle`'s leaf from the next connection on (no-op when it is the same);
    /// `true` when it changed.
    pub fn set(&self, bundle: &CertBundle) -> Result<bool, TlsError> {
        if self
            .current
            .read()
            .map(|c| c.1 == bundle.tls_crt)
            .unwrap_or(false)
        {
            return Ok(false);
        }
        let cfg = server_config(bundle)?;
        if let Ok(mut c) = self.current.write() {
            *c = (cfg, bundle.tls_crt.clone());
        }
        Ok(true)
    }

    fn get(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.current.read().ok().map(|c| c.0.clone())
    }
}

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response<Full<Bytes>> {
    let mut m = msg.into();
    m.push('\n');
    reply(status, "text/plain; charset=utf-8", m.into_bytes())
}

async fn handle(
    stores: AdmissionStores,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let Some(hook) = Hook::from_path(req.uri().path()) else {
        return Ok(text(
            StatusCode::NOT_FOUND,
            format!(
                "{} is not served: POST an AdmissionReview to /validate or /mutate",
                req.uri().path()
            ),
        ));
    };
    if req.method() != Method::POST {
        return Ok(text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{}: only POST is served", hook.path()),
        ));
    }
    let collect = Limited::new(req.into_body(), MAX_BODY).collect();
    let body = match tokio::time::timeout(CLIENT_DEADLINE, collect).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) => {
            return Ok(text(
                StatusCode::BAD_REQUEST,
                format!("reading the request body (at most {MAX_BODY} bytes): {e}"),
            ))
        }
        Err(_) => {
            return Ok(text(
                StatusCode::REQUEST_TIMEOUT,
                format!("the request body did not arrive within {CLIENT_DEADLINE:?}"),
            ))
        }
    };
    Ok(match review::answer(hook, &body, || stores.lookup()) {
        Ok(v) => reply(
            StatusCode::OK,
            "application/json",
            serde_json::to_vec(&v).unwrap_or_default(),
        ),
        Err(e) => {
            tracing::warn!(path = hook.path(), error = %e, "webhook: bad request");
            text(StatusCode::BAD_REQUEST, e.to_string())
        }
    })
}

/// Serves the webhook on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    tls: TlsState,
    stores: AdmissionStores,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let slot = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let Some(tcp) = crate::accept::next(&listener, &shutdown, "webhook").await else {
            return;
        };
        let Some(cfg) = tls.get() else { continue };
        let (stores, shutdown) = (stores.clone(), shutdown.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let handshake = tokio_rustls::TlsAcceptor::from(cfg).accept(tcp);
            let stream = match tokio::time::timeout(CLIENT_DEADLINE, handshake).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "webhook: TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!("webhook: TLS handshake timed out");
                    return;
                }
            };
            let svc = hyper::service::service_fn(move |req| handle(stores.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(CLIENT_DEADLINE)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            tokio::select! {
                _ = shutdown.cancelled() => {}
                r = conn => if let Err(e) = r { tracing::debug!(error = %e, "webhook: connection ended"); },
            }
        });
    }
}
