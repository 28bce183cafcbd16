//! A minimal native Elasticsearch client (hyper 1, optional TLS with a given CA), used by the
//! tests and to measure the emulator's own ceiling with a PIT + `search_after` paging scan.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// Client errors.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not `http(s)://host:port`.
    #[error("invalid url [{0}]: expected http(s)://host:port")]
    Url(String),
    /// TLS setup failed.
    #[error("tls: {0}")]
    Tls(String),
    /// Connecting or transferring failed.
    #[error("{0}")]
    Io(String),
    /// The response was not what the scan expected.
    #[error("unexpected response {status}: {body}")]
    Unexpected {
        /// Status.
        status: u16,
        /// Body.
        body: String,
    },
}

/// One keep-alive connection to an emulator (or any Elasticsearch).
pub struct EsClient {
    host: String,
    port: u16,
    tls: Option<tokio_rustls::TlsConnector>,
    auth: Option<String>,
    conn: Mutex<Option<SendRequest<Full<Bytes>>>>,
}

impl EsClient {
    /// A client for `url`; `ca_pem` is required for `https`.
    pub fn new(
        url: &str,
        auth: Option<(&str, &str)>,
        ca_pem: Option<&str>,
    ) -> Result<Self, ClientError> {
        use base64::Engine as _;
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| ClientError::Url(url.into()))?;
        let hostport = rest.trim_end_matches('/');
        let (host, port) = hostport
            .rsplit_once(':')
            .ok_or_else(|| ClientError::Url(url.into()))?;
        let port: u16 = port.parse().map_err(|_| ClientError::Url(url.into()))?;
        let tls = match scheme {
            "http" => None,
            "https" => {
                let pem = ca_pem
                    .ok_or_else(|| ClientError::Tls("https needs a CA certificate".into()))?;
                let mut roots = rustls::RootCertStore::empty();
                for c in rustls_pemfile::certs(&mut pem.as_bytes()) {
                    let c = c.map_err(|e| ClientError::Tls(e.to_string()))?;
                    roots.add(c).map_err(|e| ClientError::Tls(e.to_string()))?;
                }
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let cfg = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| ClientError::Tls(e.to_string()))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                Some(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
            }
            _ => return Err(ClientError::Url(url.into())),
        };
        Ok(EsClient {
            host: host.to_string(),
            port,
            tls,
            auth: auth.map(|(u, p)| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                )
            }),
            conn: Mutex::new(None),
        })
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, ClientError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| {
                ClientError::Io(format!("connecting to {}:{}: {e}", self.host, self.port))
            })?;
        let _ = tcp.set_nodelay(true);
        let hs = |e: hyper::Error| ClientError::Io(format!("handshake: {e}"));
        match &self.tls {
            None => {
                let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                    .await
                    .map_err(hs)?;
                tokio::spawn(conn);
                Ok(send)
            }
            Some(tls) => {
                let name = ServerName::try_from(self.host.clone())
                    .map_err(|e| ClientError::Tls(e.to_string()))?;
                let stream = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| ClientError::Tls(e.to_string()))?;
                let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(hs)?;
                tokio::spawn(conn);
                Ok(send)
            }
        }
    }

    /// Sends a request and returns the status and the whole body.
    pub async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<(Bytes, &str)>,
    ) -> Result<(u16, Bytes), ClientError> {
        let mut guard = self.conn.lock().await;
        let mut send = match guard.take() {
            Some(s) if !s.is_closed() => s,
            _ => self.connect().await?,
        };
        send.ready()
            .await
            .map_err(|e| ClientError::Io(e.to_string()))?;
        let mut b = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(header::HOST, format!("{}:{}", self.host, self.port))
            .header(header::ACCEPT, "application/json");
        if let Some(a) = &self.auth {
            b = b.header(header::AUTHORIZATION, a);
        }
        let (bytes, ct) = body.unwrap_or((Bytes::new(), "application/json"));
        let req = b
            .header(header::CONTENT_TYPE, ct)
            .body(Full::new(bytes))
            .map_err(|e| ClientError::Io(e.to_string()))?;
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| ClientError::Io(e.to_string()))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Io(format!("reading the response body: {e}")))?
            .to_bytes();
        *guard = Some(send);
        Ok((status, body))
    }

    /// Sends an optional JSON body and parses a JSON answer (`Null` for an empty body).
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), ClientError> {
        let body = body.map(|v| {
            (
                Bytes::from(serde_json::to_vec(v).expect("json")),
                "application/json",
            )
        });
        let (status, bytes) = self.request(method, path, body).await?;
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|e| ClientError::Unexpected {
                status,
                body: format!(
                    "not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                ),
            })?
        };
        Ok((status, v))
    }
}

/// Result of a paging scan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScanReport {
    /// Documents read.
    pub docs: u64,
    /// Response bytes read.
    pub bytes: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Reads a whole index with PIT + `search_after` sorted by `_shard_doc`, `page` hits per request,
/// as a backup tool would; returns documents, bytes and time.
pub async fn pit_scan(
    client: &EsClient,
    index: &str,
    page: usize,
) -> Result<ScanReport, ClientError> {
    let start = Instant::now();
    let unexpected = |status: u16, v: &Value| ClientError::Unexpected {
        status,
        body: v.to_string(),
    };
    let (status, pit) = client
        .json(Method::POST, &format!("/{index}/_pit?keep_alive=1m"), None)
        .await?;
    let mut pit_id = pit["id"]
        .as_str()
        .ok_or_else(|| unexpected(status, &pit))?
        .to_string();
    let (mut docs, mut bytes) = (0u64, 0u64);
    let mut after: Option<Value> = None;
    loop {
        let mut body = json!({
            "size": page,
            "sort": [{"_shard_doc": "asc"}],
            "track_total_hits": false,
            "pit": {"id": pit_id, "keep_alive": "1m"},
        });
        if let Some(a) = &after {
            body["search_after"] = a.clone();
        }
        let (status, raw) = client
            .request(
                Method::POST,
                "/_search",
                Some((
                    Bytes::from(serde_json::to_vec(&body).expect("json")),
                    "application/json",
                )),
            )
            .await?;
        bytes += raw.len() as u64;
        let v: Value = serde_json::from_slice(&raw).map_err(|e| ClientError::Unexpected {
            status,
            body: e.to_string(),
        })?;
        let hits = v["hits"]["hits"]
            .as_array()
            .ok_or_else(|| unexpected(status, &v))?;
        if hits.is_empty() {
            break;
        }
        docs += hits.len() as u64;
        after = hits.last().map(|h| h["sort"].clone());
        if let Some(id) = v["pit_id"].as_str() {
            pit_id = id.to_string();
        }
    }
    let _ = client
        .json(Method::DELETE, "/_pit", Some(&json!({"id": pit_id})))
        .await?;
    Ok(ScanReport {
        docs,
        bytes,
        seconds: start.elapsed().as_secs_f64(),
    })
}
