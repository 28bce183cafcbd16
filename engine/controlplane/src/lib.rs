//! `kstash-controlplane`: an embedded, durable, Kubernetes-compatible API server for kubectl and
//! kube-rs, serving core kinds (Namespace, Secret, ConfigMap, Event, ServiceAccount, Lease) and
//! CustomResourceDefinitions over HTTPS with bearer-token auth, stored in redb.
//!
//! ```no_run
//! # async fn f() -> Result<(), kstash_controlplane::Error> {
//! use kstash_controlplane::{ControlPlane, ServerConfig};
//! let cp = ControlPlane::start(ServerConfig::new("/tmp/cp", "127.0.0.1:0".parse().unwrap())).await?;
//! let client = cp.client().await?;
//! # drop(client);
//! cp.shutdown().await;
//! # Ok(()) }
//! ```

pub mod admission;
pub mod api;
pub mod audit;
pub mod controllers;
pub mod kstash_admission;
pub mod objects;
pub mod patch;
pub mod private;
pub mod protobuf;
pub mod query;
pub mod resources;
pub mod schema;
pub mod server;
pub mod status;
pub mod store;
pub mod table;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::api::{Api, Target};
pub use crate::audit::AuditRecord;
use crate::query::Query;

/// Control plane errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// File-system or socket error.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Certificate / TLS setup error.
    #[error("TLS: {0}")]
    Tls(String),
    /// Storage error.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// A bootstrap object was rejected.
    #[error("bootstrap: {0}")]
    Bootstrap(String),
    /// Building a kube client failed.
    #[error("client: {0}")]
    Client(String),
    /// The data directory or a file in it cannot be kept private.
    #[error("private state: {0}")]
    Private(#[from] private::PrivateError),
}

/// Configuration of a control plane.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Data directory: database, certificates, token and `kubeconfig` (created 0700, files 0600;
    /// see [`private`]).
    pub data_dir: PathBuf,
    /// Listen address (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// CustomResourceDefinitions (`apiextensions.k8s.io/v1` JSON) installed or updated at start.
    pub bootstrap_crds: Vec<Value>,
    /// Record every authenticated resource request as RBAC would authorize it
    /// (read with [`RunningControlPlane::audit`]). Off by default.
    pub audit: bool,
    /// The admission hook (validating and mutating rules) every create and main-resource update
    /// passes; none by default.
    pub admission: Option<admission::Hook>,
}

impl ServerConfig {
    /// A config with no bootstrap CRDs.
    pub fn new(data_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        Self {
            data_dir: data_dir.into(),
            listen,
            bootstrap_crds: vec![],
            audit: false,
            admission: None,
        }
    }
}

/// Entry point.
pub struct ControlPlane;

/// A running control plane.
pub struct RunningControlPlane {
    /// Path of the written kubeconfig (`<data_dir>/kubeconfig`).
    pub kubeconfig_path: PathBuf,
    /// The bound address.
    pub addr: SocketAddr,
    /// The bearer token.
    pub token: String,
    /// The CA certificate (PEM).
    pub ca_pem: String,
    api: Arc<Api>,
    audit: Option<Arc<audit::AuditLog>>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ControlPlane {
    /// Opens the store, installs the bootstrap CRDs and default namespaces, writes the kubeconfig
    /// and starts serving HTTPS.
    pub async fn start(config: ServerConfig) -> Result<RunningControlPlane, Error> {
        private::create_dir(&config.data_dir)?;
        let creds = tls::load_or_create(&config.data_dir)?;
        let tls_cfg = tls::server_config(&creds)?;
        let db_path = config.data_dir.join("store.redb");
        // Every Secret is stored in clear: the file exists 0600 before redb writes its header.
        drop(private::open_file(&db_path, false)?);
        let store = tokio::task::spawn_blocking(move || store::Store::open(&db_path))
            .await
            .map_err(|e| Error::Bootstrap(e.to_string()))??;
        let api = Arc::new(Api::new(store).with_admission(config.admission.clone()));
        bootstrap(&api, &config.bootstrap_crds)?;
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let server_url = format!("https://{addr}");
        let kubeconfig_path = config.data_dir.join("kubeconfig");
        private::write_file(&kubeconfig_path, tls::kubeconfig(&server_url, &creds))?;
        let (stop, stop_rx) = watch::channel(false);
        let audit_log = config.audit.then(|| Arc::new(audit::AuditLog::default()));
        let ctx = Arc::new(server::Ctx {
            audit: audit_log.clone(),
            api: api.clone(),
            token: creds.token.clone(),
            shutdown: stop_rx.clone(),
            addr: addr.to_string(),
        });
        let acceptor = tokio_rustls::TlsAcceptor::from(tls_cfg);
        let mut tasks = vec![];
        let mut accept_stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let (sock, _) = tokio::select! {
                    r = listener.accept() => match r { Ok(s) => s, Err(_) => continue },
                    _ = accept_stop.changed() => return,
                };
                let acceptor = acceptor.clone();
                let ctx = ctx.clone();
                let mut conn_stop = ctx.shutdown.clone();
                tokio::spawn(async move {
                    let _ = sock.set_nodelay(true);
                    let Ok(Ok(tls)) =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(sock)).await
                    else {
                        return;
                    };
                    let svc =
                        hyper::service::service_fn(move |req| server::handle(ctx.clone(), req));
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection(TokioIo::new(tls), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = conn_stop.changed() => {}
                    }
                });
            }
        }));
        let ctl_api = api.clone();
        let mut ctl_stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = ctl_api.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = ctl_stop.changed() => return,
                }
                loop {
                    let a = ctl_api.clone();
                    let changed = tokio::task::spawn_blocking(move || controllers::reconcile(&a))
                        .await
                        .unwrap_or(false);
                    if !changed {
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
        Ok(RunningControlPlane {
            kubeconfig_path,
            addr,
            token: creds.token,
            ca_pem: creds.ca_pem,
            api,
            audit: audit_log,
            stop,
            tasks,
        })
    }
}

fn bootstrap(api: &Api, crds: &[Value]) -> Result<(), Error> {
    let q = Query::default();
    let route = |segs: &[&str]| api.route(segs).map_err(|e| Error::Bootstrap(e.message));
    let ns_t = route(&["api", "v1", "namespaces"])?;
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let t = Target {
            name: Some(ns.into()),
            ..ns_t.clone()
        };
        if api.get(&t).is_err() {
            let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
                .to_string();
            api.create(&ns_t, body.as_bytes(), "application/json", &q)
                .map_err(|e| Error::Bootstrap(e.message))?;
        }
    }
    let crd_t = route(&[
        "apis",
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
    ])?;
    for crd in crds {
        let name = crd["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let t = Target {
            name: Some(name.clone()),
            ..crd_t.clone()
        };
        match api.get(&t) {
            Err(_) => {
                let body = serde_json::to_vec(crd).map_err(|e| Error::Bootstrap(e.to_string()))?;
                api.create(&crd_t, &body, "application/json", &q)
                    .map_err(|e| Error::Bootstrap(format!("CRD {name}: {}", e.message)))?;
            }
            Ok(cur) => {
                if cur["spec"] != crd["spec"] {
                    let mut c = crd.clone();
                    c["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"].clone();
                    let body =
                        serde_json::to_vec(&c).map_err(|e| Error::Bootstrap(e.to_string()))?;
                    api.update(&t, &body, "application/json", &q)
                        .map_err(|e| Error::Bootstrap(format!("CRD {name}: {}", e.message)))?;
                }
            }
        }
    }
    Ok(())
}

impl RunningControlPlane {
    /// The API server URL.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// A `kube::Client` for this control plane (built from the written kubeconfig).
    pub async fn client(&self) -> Result<kube::Client, Error> {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig_path)
            .map_err(|e| Error::Client(e.to_string()))?;
        let cfg =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| Error::Client(e.to_string()))?;
        kube::Client::try_from(cfg).map_err(|e| Error::Client(e.to_string()))
    }

    /// Every authenticated resource request so far, in arrival order, as RBAC names it (empty
    /// unless [`ServerConfig::audit`] was set).
    pub fn audit(&self) -> Vec<audit::AuditRecord> {
        self.audit.as_ref().map(|a| a.records()).unwrap_or_default()
    }

    /// The latest resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.api.store.rv()
    }

    /// Stops serving, ends every connection and watch, and closes the database.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let api = self.api;
        for _ in 0..500 {
            if Arc::strong_count(&api) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(api);
    }
}

/// Re-exported so embedders use the same kube-rs version.
pub use k8s_openapi;
/// Re-exported so embedders use the same kube-rs version.
pub use kube;
