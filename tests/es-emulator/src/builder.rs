//! Starting and stopping an emulator: [`EmulatorBuilder`] → [`RunningEmulator`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::{Api, Flavor, HandlerFaults, Identity};
use crate::seed::{self, Seed};
use crate::server::{Faults, LoggedRequest, Server, Stats};
use crate::store::Store;
use crate::tls;

/// Errors starting an emulator.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// Binding or file I/O failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Certificates could not be made.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// Seeding failed.
    #[error("seeding: {0}")]
    Seed(#[from] crate::error::EsError),
    /// A fault rate is out of range.
    #[error("invalid fault configuration: {0}")]
    Faults(String),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> EmulatorError {
    let context = context.into();
    move |source| EmulatorError::Io { context, source }
}

/// Configures an emulator. Defaults: `127.0.0.1:0`, plain HTTP, no auth, empty cluster, no faults.
#[derive(Debug, Clone, Default)]
pub struct EmulatorBuilder {
    listen: Option<SocketAddr>,
    tls: bool,
    tls_dir: Option<PathBuf>,
    auth: Option<(String, String)>,
    seed: Option<Seed>,
    faults: Faults,
    request_log: Option<PathBuf>,
    cluster_name: Option<String>,
    flavor: Flavor,
    no_pit: bool,
    builtins: bool,
}

impl EmulatorBuilder {
    /// A builder with the defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Address to listen on (default `127.0.0.1:0`, a free port).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

    /// Serve HTTPS with a freshly generated CA (see [`RunningEmulator::ca_pem`]).
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = on;
        self
    }

    /// Serve HTTPS and write `ca.crt`, `server.crt`, `server.key` into `dir`.
    pub fn tls_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.tls = true;
        self.tls_dir = Some(dir.into());
        self
    }

    /// Require HTTP basic auth with this user and password.
    pub fn auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.auth = Some((user.into(), password.into()));
        self
    }

    /// Seed indices, templates, aliases and documents.
    pub fn seed(mut self, seed: Seed) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Inject faults.
    pub fn faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// Append every request as a JSON line `{method, path, query, status, fault?}` to `path`.
    pub fn request_log(mut self, path: impl Into<PathBuf>) -> Self {
        self.request_log = Some(path.into());
        self
    }

    /// Answer as Elasticsearch 8.19 (default) or OpenSearch 2.x.
    pub fn flavor(mut self, flavor: Flavor) -> Self {
        self.flavor = flavor;
        self
    }

    /// Serve no point-in-time API (as Elasticsearch before 7.10), so clients must scroll.
    pub fn without_pit(mut self) -> Self {
        self.no_pit = true;
        self
    }

    /// Start with what a fresh Elasticsearch 8 cluster has on its own: stack-managed ILM
    /// policies, component and index templates and an ingest pipeline (`_meta.managed: true`).
    pub fn builtins(mut self, on: bool) -> Self {
        self.builtins = on;
        self
    }

    /// `cluster_name` reported by `GET /` (default `kstash-es-emulator`).
    pub fn cluster_name(mut self, name: impl Into<String>) -> Self {
        self.cluster_name = Some(name.into());
        self
    }

    fn check_faults(&self) -> Result<(), EmulatorError> {
        let f = &self.faults;
        for (name, v) in [
            ("rate_429", f.rate_429),
            ("rate_5xx", f.rate_5xx),
            ("drop_rate", f.drop_rate),
            ("delay_rate", f.delay_rate),
            ("bulk_item_429_rate", f.bulk_item_429_rate),
            ("shard_failure_rate", f.shard_failure_rate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(EmulatorError::Faults(format!(
                    "{name} must be within [0, 1], got {v}"
                )));
            }
        }
        if f.rate_429 + f.rate_5xx + f.drop_rate > 1.0 {
            return Err(EmulatorError::Faults(format!(
                "rate_429 + rate_5xx + drop_rate must not exceed 1, got {}",
                f.rate_429 + f.rate_5xx + f.drop_rate
            )));
        }
        Ok(())
    }

    /// Binds, seeds and starts serving on the current tokio runtime.
    pub async fn start(self) -> Result<RunningEmulator, EmulatorError> {
        self.check_faults()?;
        let mut store = Store::new(self.faults.seed ^ 0x00E5);
        if self.builtins && self.flavor == Flavor::Elasticsearch {
            seed::builtins(&mut store);
        }
        if self.auth.is_some() && self.flavor == Flavor::Elasticsearch {
            for (name, role) in crate::api::reserved_roles() {
                store.security.roles.insert(name, role);
            }
            if let Some((user, _)) = &self.auth {
                store.security.users.insert(
                    user.clone(),
                    serde_json::json!({"username": user, "roles": ["superuser"], "full_name": null,
                        "email": null, "metadata": {"_reserved": true}, "enabled": true}),
                );
            }
        }
        if let Some(s) = &self.seed {
            seed::seed(&mut store, s)?;
        }
        let identity = Identity {
            cluster_name: self
                .cluster_name
                .clone()
                .unwrap_or_else(|| "kstash-es-emulator".into()),
            node_name: "kstash-es-node-1".into(),
            version: match self.flavor {
                Flavor::Elasticsearch => crate::ES_VERSION.into(),
                Flavor::OpenSearch => crate::OPENSEARCH_VERSION.into(),
            },
            flavor: self.flavor,
        };
        let mut api = Api::new(
            store,
            identity,
            HandlerFaults {
                bulk_item_429_rate: self.faults.bulk_item_429_rate,
                shard_failure_rate: self.faults.shard_failure_rate,
                pit_expire_every: self.faults.pit_expire_every,
                shuffle_shards: self.faults.shuffle_shards,
                no_pit: self.no_pit,
            },
            self.faults.seed,
        );
        api.security = self.auth.is_some();
        let api = Arc::new(api);
        let log_file = match &self.request_log {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(io(format!("opening request log {}", p.display())))?,
            ),
            None => None,
        };
        let tls = if self.tls {
            Some(tls::generate()?)
        } else {
            None
        };
        if let (Some(dir), Some(t)) = (&self.tls_dir, &tls) {
            std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
            for (name, content) in [
                ("ca.crt", &t.ca_pem),
                ("server.crt", &t.cert_pem),
                ("server.key", &t.key_pem),
            ] {
                let p = dir.join(name);
                std::fs::write(&p, content).map_err(io(format!("writing {}", p.display())))?;
            }
        }
        let addr = self
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = TcpListener::bind(addr)
            .await
            .map_err(io(format!("binding {addr}")))?;
        let addr = listener
            .local_addr()
            .map_err(io("reading the bound address"))?;
        let server = Arc::new(Server::new(
            api,
            self.auth.clone(),
            self.faults.clone(),
            log_file,
        ));
        let (stop_tx, stop_rx) = watch::channel(false);
        let acceptor = tls
            .as_ref()
            .map(|t| tokio_rustls::TlsAcceptor::from(t.config.clone()));
        let task = tokio::spawn(accept_loop(listener, server.clone(), acceptor, stop_rx));
        let scheme = if tls.is_some() { "https" } else { "http" };
        Ok(RunningEmulator {
            url: format!("{scheme}://127.0.0.1:{}", addr.port()),
            addr,
            ca_pem: tls.map(|t| t.ca_pem),
            auth: self.auth,
            server,
            stop: stop_tx,
            task: Some(task),
            runtime: None,
        })
    }

    /// Starts on a dedicated runtime thread, for callers that block (subprocess-driven tests).
    pub fn spawn(self) -> Result<RunningEmulator, EmulatorError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("kstash-es-emulator")
            .build()
            .map_err(io("building the emulator runtime"))?;
        let mut running = rt.block_on(self.start())?;
        running.runtime = Some(rt);
        Ok(running)
    }
}

async fn accept_loop(
    listener: TcpListener,
    server: Arc<Server>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => continue,
            },
            _ = stop.changed() => return,
        };
        let _ = tcp.set_nodelay(true);
        let server = server.clone();
        let acceptor = acceptor.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| server.clone().serve(req));
            let builder = hyper::server::conn::http1::Builder::new();
            match acceptor {
                Some(acc) => {
                    let Ok(tls) = acc.accept(tcp).await else {
                        return;
                    };
                    tokio::select! {
                        _ = builder.serve_connection(TokioIo::new(tls), svc) => {}
                        _ = stop.changed() => {}
                    }
                }
                None => {
                    tokio::select! {
                        _ = builder.serve_connection(TokioIo::new(tcp), svc) => {}
                        _ = stop.changed() => {}
                    }
                }
            }
        });
    }
}

/// A serving emulator; it stops when dropped.
pub struct RunningEmulator {
    /// Base URL, e.g. `https://127.0.0.1:40123` (no trailing slash).
    pub url: String,
    /// Bound address.
    pub addr: SocketAddr,
    /// The CA certificate (PEM) when serving HTTPS.
    pub ca_pem: Option<String>,
    /// The basic-auth user and password, if required.
    pub auth: Option<(String, String)>,
    server: Arc<Server>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl RunningEmulator {
    /// Counters (requests, injected faults).
    pub fn stats(&self) -> Stats {
        self.server.stats()
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.server.requests()
    }

    /// The handlers and cluster state, for direct inspection in tests.
    pub fn api(&self) -> &Arc<Api> {
        &self.server.api
    }

    /// Writes the CA certificate to `path` (HTTPS only).
    pub fn write_ca(&self, path: &Path) -> std::io::Result<()> {
        match &self.ca_pem {
            Some(pem) => std::fs::write(path, pem),
            None => Err(std::io::Error::other(
                "the emulator serves plain HTTP; there is no CA",
            )),
        }
    }

    /// Stops accepting and closes open connections.
    pub fn stop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        self.stop();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
