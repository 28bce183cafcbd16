//! kstash's admission rules served to a Kubernetes API server as its validating and mutating
//! webhooks (`kstash operator --webhook-port`), on every replica, leader or not.
//!
//! - [`review`]: an `AdmissionReview` in, its answer out (pure);
//! - [`certs`]: the self-signed CA and serving certificate (pure);
//! - [`cluster`]: the certificate's Secret and the configurations' `caBundle`;
//! - [`server`]: the HTTPS shell.
//!
//! [`run`] starts this replica's own reflector stores of what the rules look up (a Service
//! routes each call to any replica), gets or creates the certificate, fills the `caBundle`,
//! and serves once the stores hold their initial lists. Every [`WebhookConfig::resync`] it
//! checks the Secret again (renewing a leaf within 30 days of expiry, picking up another
//! replica's renewal) and puts back a `caBundle` that was reset (e.g. by `helm upgrade`).

pub mod certs;
pub mod cluster;
pub mod review;
pub mod server;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::reconcilers::admission::AdmissionStores;
use crate::Context;

/// Default name of the certificate's Secret.
pub const DEFAULT_SECRET: &str = "kstash-webhook-cert";
/// Default interval between certificate and `caBundle` checks.
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(60);

/// Where the webhook's certificate and configurations are.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// The operator's namespace: the Secret's, and the Service's.
    pub namespace: String,
    /// The Service routing to the webhook port (the certificate is for
    /// `<service>.<namespace>.svc`).
    pub service: String,
    /// The certificate's Secret (`kubernetes.io/tls` plus `ca.crt` and `ca.key`).
    pub secret: String,
    /// The name of both the ValidatingWebhookConfiguration and the MutatingWebhookConfiguration.
    pub configuration: String,
    /// How often the Secret and the `caBundle` are checked again.
    pub resync: Duration,
}

impl WebhookConfig {
    /// A config with the default Secret name and resync interval.
    pub fn new(
        namespace: impl Into<String>,
        service: impl Into<String>,
        configuration: impl Into<String>,
    ) -> Self {
        WebhookConfig {
            namespace: namespace.into(),
            service: service.into(),
            secret: DEFAULT_SECRET.to_string(),
            configuration: configuration.into(),
            resync: DEFAULT_RESYNC,
        }
    }
}

/// The webhook [`crate::serve`] runs: the bound port and its config.
pub struct WebhookOptions {
    /// Bound HTTPS listener.
    pub listener: TcpListener,
    /// Certificate and configurations.
    pub config: WebhookConfig,
}

/// Gets (or makes) the certificate, retrying every few seconds until it succeeds or `stop`.
async fn first_bundle(
    client: &kube::Client,
    cfg: &WebhookConfig,
    stop: &CancellationToken,
) -> Option<certs::CertBundle> {
    loop {
        match cluster::ensure_secret(client, cfg).await {
            Ok(b) => return Some(b),
            Err(e) => tracing::warn!(error = %e, "webhook certificate: retrying in 5s"),
        }
        tokio::select! {
            _ = stop.cancelled() => return None,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// One resync: the Secret (renewed if due, or renewed by another replica), then the caBundle.
async fn resync(client: &kube::Client, cfg: &WebhookConfig, tls: &server::TlsState) {
    match cluster::ensure_secret(client, cfg).await {
        Ok(b) => {
            match tls.set(&b) {
                Ok(true) => tracing::info!("webhook: serving the renewed certificate"),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "webhook: keeping the current certificate"),
            }
            if let Err(e) = cluster::sync_ca_bundles(client, cfg, &b.ca_crt).await {
                tracing::warn!(error = %e, "webhook caBundle");
            }
        }
        Err(e) => tracing::warn!(error = %e, "webhook certificate"),
    }
}

/// Serves the webhook until `stop` (see the module's documentation).
/// `serving` is set once the server answers (the replica's `/readyz`).
pub async fn run(
    ctx: Arc<Context>,
    opts: WebhookOptions,
    stop: CancellationToken,
    serving: Arc<std::sync::atomic::AtomicBool>,
) {
    let cfg = opts.config;
    let client = ctx.client.clone();
    let mut set = crate::shell::StoreSet::default();
    let stores = AdmissionStores::new(&ctx, &mut set);
    let (reflectors, ready) = set.start();
    let reflectors = tokio::spawn({
        let stop = stop.clone();
        async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = reflectors => tracing::warn!("webhook: the reflector stores ended"),
            }
        }
    });
    let Some(bundle) = first_bundle(&client, &cfg, &stop).await else {
        return;
    };
    let tls = match server::TlsState::new(&bundle) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, secret = %cfg.secret, "webhook not served: delete the Secret to have it regenerated");
            return;
        }
    };
    if let Err(e) = cluster::sync_ca_bundles(&client, &cfg, &bundle.ca_crt).await {
        tracing::warn!(error = %e, "webhook caBundle");
    }
    // Serve only with complete stores: an empty lookup would admit, say, a second default
    // BackupStorage.
    tokio::pin!(ready);
    tokio::select! {
        _ = stop.cancelled() => return,
        _ = &mut ready => {}
        _ = tokio::time::sleep(Duration::from_secs(30)) => {
            tracing::warn!(
                "webhook: the admission stores have not listed within 30s (a missing CRD or \
                 RBAC grant?); calls to this replica wait until they have"
            );
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = &mut ready => {}
            }
        }
    }
    let maintenance = tokio::spawn({
        let (stop, tls, cfg, client) = (stop.clone(), tls.clone(), cfg.clone(), client.clone());
        async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(cfg.resync) => {}
                }
                resync(&client, &cfg, &tls).await;
            }
        }
    });
    tracing::info!(
        service = %format!("{}.{}.svc", cfg.service, cfg.namespace),
        "webhook serving /validate and /mutate"
    );
    serving.store(true, std::sync::atomic::Ordering::SeqCst);
    server::serve(opts.listener, tls, stores, stop).await;
    let _ = maintenance.await;
    let _ = reflectors.await;
}
