//! Opening a `BackupStorage` from the cluster: read its backend secret, build the
//! `kstash_repo::StorageConfig` and connect; and reading a repository's encryption password.
//!
//! Compiled in both halves of the operator (the executors open repositories with it too).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kstash_api::storage::{Backend, BackupStorage};
use kube::api::Api;
use kube::ResourceExt;

/// The key of the restic password in an encryption Secret.
pub const RESTIC_PASSWORD_KEY: &str = "RESTIC_PASSWORD";

/// Why a storage (or its encryption secret) could not be opened. Every variant names the object.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// `spec.storage` is absent.
    #[error("BackupStorage {storage}: `spec.storage` is missing")]
    MissingBackend {
        /// `namespace/name` of the BackupStorage.
        storage: String,
    },
    /// The secret named by the backend does not exist.
    #[error("BackupStorage {storage}: secret {namespace}/{secret} (spec.storage.{provider}.secretName) not found")]
    SecretNotFound {
        /// `namespace/name` of the BackupStorage.
        storage: String,
        /// Provider block (`s3`, `gcs`, ...).
        provider: String,
        /// Namespace of the secret.
        namespace: String,
        /// Secret name.
        secret: String,
    },
    /// A secret value is not UTF-8.
    #[error("secret {namespace}/{secret}: key `{key}` is not valid UTF-8")]
    NotUtf8 {
        /// Namespace of the secret.
        namespace: String,
        /// Secret name.
        secret: String,
        /// Key.
        key: String,
    },
    /// The encryption secret does not exist.
    #[error("encryption secret {namespace}/{secret} not found")]
    EncryptionSecretNotFound {
        /// Namespace.
        namespace: String,
        /// Secret name.
        secret: String,
    },
    /// The encryption secret lacks `RESTIC_PASSWORD` (or it is empty).
    #[error("encryption secret {namespace}/{secret}: key `{key}` is missing or empty")]
    MissingKey {
        /// Namespace.
        namespace: String,
        /// Secret name.
        secret: String,
        /// The missing key.
        key: String,
    },
    /// Reading from the Kubernetes API failed.
    #[error("{what}: Kubernetes API error: {source}")]
    Kube {
        /// What was being read.
        what: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
    /// The storage configuration is invalid or the storage unreachable (names the storage and
    /// the missing key/field).
    #[error(transparent)]
    Repo(#[from] kstash_repo::Error),
}

/// `(provider block name, secretName)` of a backend, if it names a secret.
pub fn backend_secret_name(backend: &Backend) -> Option<(&'static str, String)> {
    let (provider, name) = if let Some(s3) = &backend.s3 {
        ("s3", s3.secret_name.clone())
    } else if let Some(gcs) = &backend.gcs {
        ("gcs", gcs.secret_name.clone())
    } else if let Some(az) = &backend.azure {
        ("azure", az.secret_name.clone())
    } else {
        return None;
    };
    name.filter(|n| !n.is_empty()).map(|n| (provider, n))
}

/// Decodes a Secret's `data` (and `stringData`, for objects not yet normalised) to strings.
pub fn secret_strings(secret: &Secret) -> Result<BTreeMap<String, String>, StorageError> {
    let mut out = BTreeMap::new();
    if let Some(sd) = &secret.string_data {
        out.extend(sd.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    if let Some(data) = &secret.data {
        for (k, v) in data {
            let s = String::from_utf8(v.0.clone()).map_err(|_| StorageError::NotUtf8 {
                namespace: secret.namespace().unwrap_or_default(),
                secret: secret.name_any(),
                key: k.clone(),
            })?;
            out.insert(k.clone(), s);
        }
    }
    Ok(out)
}

/// `namespace/name` of a BackupStorage (the name used in every storage error).
pub fn storage_id(bs: &BackupStorage) -> String {
    format!("{}/{}", bs.namespace().unwrap_or_default(), bs.name_any())
}

/// Builds the storage config of `bs`: reads its backend secret (in the BackupStorage's
/// namespace) and converts `spec.storage`. No storage I/O.
pub async fn storage_config(
    client: &kube::Client,
    bs: &BackupStorage,
) -> Result<kstash_repo::StorageConfig, StorageError> {
    let id = storage_id(bs);
    let backend = bs
        .spec
        .storage
        .as_ref()
        .ok_or_else(|| StorageError::MissingBackend {
            storage: id.clone(),
        })?;
    let ns = bs.namespace().unwrap_or_default();
    let secrets = match backend_secret_name(backend) {
        None => BTreeMap::new(),
        Some((provider, name)) => {
            let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
            let secret = api.get_opt(&name).await.map_err(|e| StorageError::Kube {
                what: format!("BackupStorage {id}: reading secret {ns}/{name}"),
                source: Box::new(e),
            })?;
            let secret = secret.ok_or_else(|| StorageError::SecretNotFound {
                storage: id.clone(),
                provider: provider.to_string(),
                namespace: ns.clone(),
                secret: name.clone(),
            })?;
            secret_strings(&secret)?
        }
    };
    let value = serde_json::to_value(backend).expect("Backend serializes to JSON");
    Ok(kstash_repo::StorageConfig::from_spec_storage(
        &id, value, secrets,
    )?)
}

/// Opens the storage of a BackupStorage (secret read from its namespace). The client is built
/// without I/O; call `verify()` on it to check reachability.
pub async fn connect(
    client: &kube::Client,
    bs: &BackupStorage,
) -> Result<kstash_repo::Storage, StorageError> {
    let cfg = storage_config(client, bs).await?;
    Ok(kstash_repo::Storage::connect(cfg)?)
}

/// Reads `RESTIC_PASSWORD` from the encryption Secret `namespace/secret_name`.
pub async fn encryption_password(
    client: &kube::Client,
    namespace: &str,
    secret_name: &str,
) -> Result<String, StorageError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = api
        .get_opt(secret_name)
        .await
        .map_err(|e| StorageError::Kube {
            what: format!("reading encryption secret {namespace}/{secret_name}"),
            source: Box::new(e),
        })?
        .ok_or_else(|| StorageError::EncryptionSecretNotFound {
            namespace: namespace.to_string(),
            secret: secret_name.to_string(),
        })?;
    let data = secret_strings(&secret)?;
    match data.get(RESTIC_PASSWORD_KEY) {
        Some(p) if !p.is_empty() => Ok(p.clone()),
        _ => Err(StorageError::MissingKey {
            namespace: namespace.to_string(),
            secret: secret_name.to_string(),
            key: RESTIC_PASSWORD_KEY.to_string(),
        }),
    }
}
