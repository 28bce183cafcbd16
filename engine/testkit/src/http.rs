//! A plain HTTP/1 server on a free loopback port whose answers the test writes, and what it
//! was sent (the target an addon fetches from and uploads to).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

pub use hyper::{Method, StatusCode};

/// One request, read whole.
#[derive(Clone, Debug)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The path (without the query).
    pub path: String,
    /// The `Authorization` header (`""` when absent or not text).
    pub authorization: String,
    /// Every header.
    pub headers: hyper::HeaderMap,
    /// The query string (`""` when none).
    pub query: String,
    /// The body (empty when it could not be read).
    pub body: Bytes,
}

/// The bodies of PUT/POST requests by path, with their `Authorization` header.
pub type Uploads = Arc<Mutex<HashMap<String, (String, Vec<u8>)>>>;

/// The server; stopped on drop (or with [`HttpServer::stop`]).
pub struct HttpServer {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Every PUT/POST body, by path (recorded before the handler runs).
    pub uploads: Uploads,
    task: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    /// Serves every request with `handler` (its status and body).
    pub async fn start<F, Fut>(handler: F) -> HttpServer
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = (StatusCode, Bytes)> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let uploads: Uploads = Arc::default();
        let (up, handler) = (uploads.clone(), Arc::new(handler));
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (up, handler) = (up.clone(), handler.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let (up, handler) = (up.clone(), handler.clone());
                            async move {
                                let req = read(req).await;
                                if req.method == Method::PUT || req.method == Method::POST {
                                    up.lock().unwrap().insert(
                                        req.path.clone(),
                                        (req.authorization.clone(), req.body.to_vec()),
                                    );
                                }
                                let (status, body) = handler(req).await;
                                let mut resp = hyper::Response::new(Full::new(body));
                                *resp.status_mut() = status;
                                Ok::<_, Infallible>(resp)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        HttpServer { url, uploads, task }
    }

    /// Stops accepting connections.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read(req: hyper::Request<hyper::body::Incoming>) -> Request {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let headers = req.headers().clone();
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Request {
        method,
        path,
        authorization,
        headers,
        query,
        body,
    }
}
