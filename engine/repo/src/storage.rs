//! A BackupStorage as an opendal operator: objects under its prefix, nothing about what they
//! mean (the bucket layout is [`crate::layout`]).

use std::sync::Arc;
use std::time::Duration;

use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::{HttpTransporter, OperationContext, Operator};

use crate::config::{Provider, StorageConfig};
use crate::error::{Error, Result};
use crate::identity::{AwsIdentity, AzureIdentity, GcpIdentity, IdentityError, LastFailure};
use crate::io::run_io;

/// Tuning of the storage client (timeouts and retries of every request).
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Timeout of a whole non-I/O operation (stat, delete, list page).
    pub timeout: Duration,
    /// Timeout of one read/write I/O step.
    pub io_timeout: Duration,
    /// Retries of a failed request (with exponential backoff).
    pub retries: usize,
    /// Credentials of an S3 storage that names no storage Secret (the operator's workload
    /// identity; by default read from this process's environment).
    pub aws_identity: AwsIdentity,
    /// The same for a GCS storage.
    pub gcp_identity: GcpIdentity,
    /// The same for an Azure storage.
    pub azure_identity: AzureIdentity,
    /// PEM certificates every storage client trusts beside the system's roots (which honour
    /// `SSL_CERT_FILE`): a private CA of an object store reached without a storage Secret, which
    /// would otherwise carry it as `CA_CERT_DATA`.
    pub ca_certificates: Vec<String>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            timeout: Duration::from_secs(60),
            io_timeout: Duration::from_secs(30),
            retries: 4,
            aws_identity: AwsIdentity::FromProcess,
            gcp_identity: GcpIdentity::FromProcess,
            azure_identity: AzureIdentity::FromProcess,
            ca_certificates: Vec::new(),
        }
    }
}

/// A reachable BackupStorage: the operator is rooted at the storage prefix.
#[derive(Clone, Debug)]
pub struct Storage {
    cfg: Arc<StorageConfig>,
    op: Operator,
    identity_failure: LastFailure,
}

fn install_crypto_provider() {
    // reqwest is built without a bundled provider (ring only, no aws-lc): install ring once.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn http_client(cfg: &StorageConfig, opts: &ConnectOptions) -> Result<reqwest::Client> {
    install_crypto_provider();
    let mut b = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
    let root = |field: &str, pem: &str| {
        reqwest::Certificate::from_pem(pem.as_bytes()).map_err(|e| Error::Config {
            storage: cfg.name.clone(),
            field: field.into(),
            reason: format!("not a PEM certificate: {e}"),
        })
    };
    for pem in &opts.ca_certificates {
        b = b.add_root_certificate(root("the storage client's CA certificates", pem)?);
    }
    let mut max_conn = 0i64;
    if let Provider::S3 { s3 } = &cfg.provider {
        if let Some(pem) = cfg.secrets.get("CA_CERT_DATA") {
            b = b.add_root_certificate(root("secret CA_CERT_DATA", pem)?);
        }
        if s3.insecure_tls {
            b = b.danger_accept_invalid_certs(true);
        }
        max_conn = s3.max_connections;
    }
    if let Provider::Gcs { gcs } = &cfg.provider {
        max_conn = gcs.max_connections;
    }
    if let Provider::Azure { azure } = &cfg.provider {
        max_conn = azure.max_connections;
    }
    if max_conn > 0 {
        b = b.pool_max_idle_per_host(max_conn as usize);
    }
    b.build().map_err(|e| Error::Config {
        storage: cfg.name.clone(),
        field: "spec.storage".into(),
        reason: format!("cannot build HTTP client: {e}"),
    })
}

/// A storage that names no Secret while the operator's workload identity is unusable.
fn no_secret(cfg: &StorageConfig, provider: &str, e: IdentityError) -> Error {
    Error::Config {
        storage: cfg.name.clone(),
        field: format!("spec.storage.{provider}.secretName"),
        reason: format!("no storage Secret is named and {e}"),
    }
}

fn build_operator(
    cfg: &StorageConfig,
    opts: &ConnectOptions,
    identity_failure: &LastFailure,
) -> Result<Operator> {
    let cfg_err = |e: opendal::Error| Error::Config {
        storage: cfg.name.clone(),
        field: "spec.storage".into(),
        reason: e.to_string(),
    };
    let root = format!("/{}", cfg.prefix());
    let op = match &cfg.provider {
        Provider::S3 { s3 } => {
            let endpoint = if s3.endpoint.is_empty() {
                String::new()
            } else if s3.endpoint.contains("://") {
                s3.endpoint.clone()
            } else {
                format!("https://{}", s3.endpoint)
            };
            let region = if s3.region.is_empty() {
                "us-east-1"
            } else {
                &s3.region
            };
            // No ambient credentials: no ~/.aws, no env, no instance metadata.
            let mut b = opendal::services::S3::default()
                .bucket(&s3.bucket)
                .root(&root)
                .region(region)
                .disable_config_load()
                .disable_ec2_metadata();
            if !endpoint.is_empty() {
                b = b.endpoint(&endpoint);
            }
            if s3.secret_name.is_empty() {
                // No storage Secret: the operator's own workload identity, else unsigned.
                let chain = opts
                    .aws_identity
                    .credential_chain(identity_failure)
                    .map_err(|e| no_secret(cfg, "s3", e))?;
                b = match chain {
                    Some(chain) => b.credential_provider_chain(chain),
                    None => b.skip_signature(),
                };
            } else {
                b = b
                    .access_key_id(cfg.secret("AWS_ACCESS_KEY_ID")?)
                    .secret_access_key(cfg.secret("AWS_SECRET_ACCESS_KEY")?);
                if let Some(t) = cfg.secrets.get("AWS_SESSION_TOKEN") {
                    b = b.session_token(t);
                }
            }
            Operator::new(b).map_err(cfg_err)?
        }
        Provider::Gcs { gcs } => {
            use base64::Engine as _;
            let mut b = opendal::services::Gcs::default()
                .bucket(&gcs.bucket)
                .root(&root)
                .disable_config_load()
                .disable_vm_metadata();
            if !gcs.endpoint.is_empty() {
                b = b.endpoint(gcs.endpoint.trim_end_matches('/'));
            }
            if gcs.secret_name.is_empty() {
                // No storage Secret: the operator's own workload identity, else unsigned.
                let chain = opts
                    .gcp_identity
                    .credential_chain(identity_failure)
                    .map_err(|e| no_secret(cfg, "gcs", e))?;
                b = match chain {
                    Some(chain) => b.credential_provider_chain(chain),
                    None => b.skip_signature(),
                };
            } else {
                let json = cfg.secret("GOOGLE_SERVICE_ACCOUNT_JSON_KEY")?;
                b = b.credential(&base64::engine::general_purpose::STANDARD.encode(json));
            }
            Operator::new(b).map_err(cfg_err)?
        }
        Provider::Azure { azure } => {
            let mut b = opendal::services::Azblob::default()
                .container(&azure.container)
                .root(&root)
                .account_name(&azure.storage_account)
                .endpoint(&if azure.endpoint.is_empty() {
                    format!("https://{}.blob.core.windows.net", azure.storage_account)
                } else {
                    azure.endpoint.trim_end_matches('/').to_string()
                });
            // Always an explicit chain: opendal's default one reads keys from the environment,
            // the node's managed identity (IMDS) and the Azure CLI, none of them this storage's.
            b = if azure.secret_name.is_empty() {
                // No storage Secret: the operator's own workload identity, else unsigned.
                let chain = opts
                    .azure_identity
                    .credential_chain(identity_failure)
                    .map_err(|e| no_secret(cfg, "azure", e))?;
                match chain {
                    Some(chain) => b.credential_provider_chain(chain),
                    None => b.skip_signature(),
                }
            } else {
                let account_key = cfg.secret("AZURE_ACCOUNT_KEY")?;
                {
                    use base64::Engine as _;
                    base64::engine::general_purpose::STANDARD
                        .decode(account_key.trim())
                        .map_err(|e| Error::Config {
                            storage: cfg.name.clone(),
                            field: "secret AZURE_ACCOUNT_KEY".into(),
                            reason: format!("not a base64 account key: {e}"),
                        })?;
                }
                let key = reqsign_azure_storage::StaticCredentialProvider::new_shared_key(
                    &azure.storage_account,
                    account_key.trim(),
                );
                b.credential_provider_chain(reqsign_core::ProvideCredentialChain::new().push(key))
            };
            Operator::new(b).map_err(cfg_err)?
        }
        Provider::Local { local } => {
            // The mount itself is never created: a volume that is not mounted would otherwise
            // turn into a directory of the container's own (lost with the pod) or fail later
            // on a read-only root file system with a less helpful error.
            if !std::path::Path::new(&local.mount_path).is_dir() {
                return Err(Error::Config {
                    storage: cfg.name.clone(),
                    field: "spec.storage.local.mountPath".into(),
                    reason: format!(
                        "{} is not a directory this process can see; in a cluster, mount the \
                         volume into the operator's pod at that path (Helm value \
                         localStorage.volumes)",
                        local.mount_path
                    ),
                });
            }
            let path = format!(
                "{}/{}",
                local.mount_path.trim_end_matches('/'),
                local.sub_path.trim_matches('/')
            );
            Operator::new(opendal::services::Fs::default().root(&path)).map_err(cfg_err)?
        }
    };
    let op = if matches!(cfg.provider, Provider::Local { .. }) {
        op
    } else {
        let transport =
            opendal_http_transport_reqwest::ReqwestTransport::new(http_client(cfg, opts)?);
        op.with_context(
            OperationContext::new().with_http_transport(HttpTransporter::new(transport)),
        )
    };
    Ok(op
        .layer(
            TimeoutLayer::new()
                .with_timeout(opts.timeout)
                .with_io_timeout(opts.io_timeout),
        )
        .layer(
            RetryLayer::new()
                .with_max_times(opts.retries)
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(5))
                .with_jitter(),
        ))
}

/// Checks that a relative path has no empty, `.` or `..` segments.
pub(crate) fn check_rel_path(param: &'static str, p: &str) -> Result<String> {
    let t = p.trim_matches('/');
    if t.is_empty() || t.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err(Error::InvalidArgument {
            param,
            reason: format!("`{p}` is not a relative path of non-empty segments"),
        });
    }
    Ok(t.to_string())
}

pub(crate) fn check_name(param: &'static str, n: &str) -> Result<()> {
    if n.is_empty() || n.contains('/') || n == "." || n == ".." {
        return Err(Error::InvalidArgument {
            param,
            reason: format!("`{n}` must be a non-empty name without `/`"),
        });
    }
    Ok(())
}

impl Storage {
    /// Builds the storage client (no I/O yet) with default timeouts.
    pub fn connect(cfg: StorageConfig) -> Result<Self> {
        Self::connect_with(cfg, &ConnectOptions::default())
    }

    /// Builds the storage client with explicit timeouts/retries.
    pub fn connect_with(cfg: StorageConfig, opts: &ConnectOptions) -> Result<Self> {
        let cfg = cfg.normalized()?;
        let identity_failure = LastFailure::default();
        let op = build_operator(&cfg, opts, &identity_failure)?;
        Ok(Storage {
            cfg: Arc::new(cfg),
            op,
            identity_failure,
        })
    }

    /// The configuration this storage was built from.
    pub fn config(&self) -> &StorageConfig {
        &self.cfg
    }

    pub(crate) fn operator(&self) -> &Operator {
        &self.op
    }

    pub(crate) fn err(&self, op: &'static str, path: &str, e: opendal::Error) -> Error {
        let failure = self
            .identity_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(reason) = failure.filter(|_| e.kind() == opendal::ErrorKind::Unexpected) {
            return Error::Identity {
                storage: self.cfg.name.clone(),
                op,
                path: path.to_string(),
                reason,
            };
        }
        Error::Storage {
            storage: self.cfg.name.clone(),
            op,
            path: path.to_string(),
            source: Box::new(e),
        }
    }

    /// Checks the storage is reachable (lists the prefix).
    pub async fn verify(&self) -> Result<()> {
        let op = self.op.clone();
        run_io(async move { op.list_with("/").limit(1).await.map(|_| ()) })
            .await?
            .map_err(|e| self.err("list", "/", e))
    }

    /// Writes an object (path relative to the storage prefix).
    pub async fn write(&self, path: &str, data: Vec<u8>) -> Result<()> {
        let (op, p) = (self.op.clone(), path.to_string());
        run_io(async move { op.write(&p, data).await.map(|_| ()) })
            .await?
            .map_err(|e| self.err("write", path, e))
    }

    /// Reads an object; `None` when it does not exist.
    pub async fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let (op, p) = (self.op.clone(), path.to_string());
        match run_io(async move { op.read(&p).await }).await? {
            Ok(b) => Ok(Some(b.to_vec())),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err("read", path, e)),
        }
    }

    /// Deletes an object (absent objects are fine).
    pub async fn delete(&self, path: &str) -> Result<()> {
        let (op, p) = (self.op.clone(), path.to_string());
        run_io(async move { op.delete(&p).await })
            .await?
            .map_err(|e| self.err("delete", path, e))
    }

    /// Lists the file names directly below directory `dir` (relative to the prefix).
    pub async fn list_names(&self, dir: &str) -> Result<Vec<String>> {
        let d = format!("{}/", dir.trim_matches('/'));
        let (op, d2) = (self.op.clone(), d.clone());
        let entries = match run_io(async move { op.list(&d2).await }).await? {
            Ok(v) => v,
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(self.err("list", &d, e)),
        };
        let mut names: Vec<String> = entries
            .into_iter()
            .filter(|e| e.metadata().is_file())
            .map(|e| e.name().to_string())
            .collect();
        names.sort();
        Ok(names)
    }
}
