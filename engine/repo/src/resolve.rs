//! From a KubeStash Repository to its bytes, the one place that walks the references:
//!
//! ```text
//! Repository ns/name ── spec.storageRef ──▶ BackupStorage ── spec.storage.<provider>.secretName ──▶ storage Secret
//!        │                                        (in the BackupStorage's namespace)
//!        └── spec.encryptionSecret (or the session's) ──▶ Secret, key RESTIC_PASSWORD ──▶ restic password
//! ```
//!
//! The objects come from an [`Objects`] source — the cluster ([`cluster::ClusterObjects`],
//! feature `cluster`), manifest files (`kstash repo`), or a test's table — as the plain records
//! of this module; the rules live here: a reference without a namespace means the referring
//! object's namespace, the provider is the one `spec.storage.provider` names, a Secret's
//! `stringData` wins over its `data` (as the API server merges them), and every error names
//! the object, the field and what is wrong. A wrapper around an [`Objects`] is the place for
//! per-namespace checks before a read (tenancy).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;

use crate::config::{Provider, StorageConfig};
use crate::error::Error;
use crate::layout::{ComponentPath, RepositoryDir};
use crate::restic::ResticRepo;
use crate::storage::Storage;

#[cfg(feature = "cluster")]
pub mod cluster;

/// The key of the restic password in an encryption Secret.
pub const RESTIC_PASSWORD: &str = "RESTIC_PASSWORD";

/// A namespaced object's `namespace/name`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// `namespace/name`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// A reference (`name`, optional `namespace`) made from inside namespace `from`: an empty or
    /// missing namespace means `from`.
    pub fn referenced(name: &str, namespace: Option<&str>, from: &str) -> Self {
        let ns = namespace.filter(|n| !n.is_empty()).unwrap_or(from);
        ObjectKey::new(ns, name)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What resolution needs of a Repository object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepositoryRecord {
    /// The Repository.
    pub key: ObjectKey,
    /// `spec.storageRef`, namespace filled in.
    pub storage_ref: Option<ObjectKey>,
    /// `spec.path`.
    pub path: Option<String>,
    /// `spec.encryptionSecret`, namespace filled in.
    pub encryption_secret: Option<ObjectKey>,
}

/// What resolution needs of a BackupStorage object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupStorageRecord {
    /// The BackupStorage.
    pub key: ObjectKey,
    /// `spec.storage`, typed (`None` when it is absent).
    pub provider: Option<Provider>,
}

/// A Secret's data as the API returns it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretRecord {
    /// The Secret.
    pub key: ObjectKey,
    /// `data` (decoded bytes).
    pub data: BTreeMap<String, Vec<u8>>,
    /// `stringData` (present on objects not yet normalised by an API server).
    pub string_data: BTreeMap<String, String>,
}

impl fmt::Debug for SecretRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&String> = self.data.keys().chain(self.string_data.keys()).collect();
        f.debug_struct("SecretRecord")
            .field("key", &self.key)
            .field("keys", &keys)
            .finish()
    }
}

impl SecretRecord {
    /// The value of `key` as text: `stringData` wins over `data`; `None` when absent.
    pub fn get(&self, key: &str) -> Result<Option<String>, ResolveError> {
        if let Some(v) = self.string_data.get(key) {
            return Ok(Some(v.clone()));
        }
        match self.data.get(key) {
            None => Ok(None),
            Some(b) => String::from_utf8(b.clone())
                .map(Some)
                .map_err(|_| ResolveError::NotUtf8 {
                    secret: self.key.clone(),
                    key: key.to_string(),
                }),
        }
    }

    /// Every key as text (`stringData` winning over `data`).
    pub fn strings(&self) -> Result<BTreeMap<String, String>, ResolveError> {
        let mut out = BTreeMap::new();
        for k in self.data.keys().chain(self.string_data.keys()) {
            if let Some(v) = self.get(k)? {
                out.insert(k.clone(), v);
            }
        }
        Ok(out)
    }
}

/// Where the objects come from. `Ok(None)` means "does not exist"; an `Err` is a failed read.
pub trait Objects: Sync {
    /// The Repository `key`.
    fn repository(
        &self,
        key: &ObjectKey,
    ) -> impl Future<Output = Result<Option<RepositoryRecord>, ResolveError>> + Send;
    /// The BackupStorage `key`.
    fn backup_storage(
        &self,
        key: &ObjectKey,
    ) -> impl Future<Output = Result<Option<BackupStorageRecord>, ResolveError>> + Send;
    /// The Secret `key`.
    fn secret(
        &self,
        key: &ObjectKey,
    ) -> impl Future<Output = Result<Option<SecretRecord>, ResolveError>> + Send;
}

/// Why a Repository (or its storage, or its password) cannot be resolved. Every variant names
/// the object and the field; none holds a secret value.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// A referenced object does not exist.
    #[error("{}{kind} {key} not found", referenced_by.as_ref().map(|r| format!("{what} of {r}: ")).unwrap_or_default())]
    NotFound {
        /// What the object is for (`the storage`, `encryption secret`, …).
        what: &'static str,
        /// Its kind (`BackupStorage`, `Secret`, …).
        kind: &'static str,
        /// The missing object.
        key: ObjectKey,
        /// `<Kind> ns/name (<field>)` that refers to it.
        referenced_by: Option<String>,
    },
    /// A field resolution needs is missing or empty.
    #[error("{object}: {field} is not set")]
    MissingField {
        /// `<Kind> ns/name`.
        object: String,
        /// The field.
        field: &'static str,
    },
    /// A Secret lacks a key (or it is empty).
    #[error("{what} Secret {secret}: key {key} is missing or empty")]
    MissingKey {
        /// What the Secret is for.
        what: &'static str,
        /// The Secret.
        secret: ObjectKey,
        /// The key.
        key: &'static str,
    },
    /// A Secret value is not UTF-8.
    #[error("Secret {secret}: data.{key} is not valid UTF-8")]
    NotUtf8 {
        /// The Secret.
        secret: ObjectKey,
        /// The key.
        key: String,
    },
    /// A field has a value kstash cannot use.
    #[error("{object}: {field}: {reason}")]
    Invalid {
        /// `<Kind> ns/name`.
        object: String,
        /// The field.
        field: String,
        /// Why.
        reason: String,
    },
    /// Reading an object failed (the API, a file).
    #[error("reading {what}: {source}")]
    Read {
        /// `<Kind> ns/name`.
        what: String,
        /// The error of the source.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The storage configuration is invalid, or the storage client cannot be built.
    #[error(transparent)]
    Storage(#[from] Error),
}

/// The restic password and where it came from. Its `Debug` never shows the value.
#[derive(Clone)]
pub struct Password {
    value: String,
    /// The Secret holding it.
    pub secret: ObjectKey,
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Password(Secret {})", self.secret)
    }
}

impl Password {
    /// A password read from `secret`.
    pub fn new(value: String, secret: ObjectKey) -> Self {
        Password { value, secret }
    }

    /// The password.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// `Secret ns/name`, as restic's wrong-password error names it.
    pub fn source(&self) -> String {
        format!("Secret {}", self.secret)
    }
}

/// A Repository resolved to its directory on a connected storage and its restic password.
#[derive(Clone, Debug)]
pub struct ResolvedRepository {
    /// The Repository.
    pub repository: ObjectKey,
    /// The BackupStorage it is stored in.
    pub backup_storage: ObjectKey,
    /// Its directory (`spec.path`) on the storage.
    pub dir: RepositoryDir,
    /// The restic password of its component repositories.
    pub password: Password,
}

impl ResolvedRepository {
    /// The storage client.
    pub fn storage(&self) -> &Storage {
        self.dir.storage()
    }

    /// The restic repository of `path`, its password labelled with its Secret. Not opened.
    pub fn component(&self, path: &ComponentPath) -> Result<ResticRepo, Error> {
        Ok(self
            .dir
            .component_at(path, self.password.expose())?
            .with_password_source(self.password.source()))
    }
}

/// The storage configuration of a BackupStorage: its provider and the data of its storage
/// Secret (`spec.storage.<provider>.secretName`, in the BackupStorage's namespace). No storage
/// I/O.
pub async fn storage_config(
    objects: &impl Objects,
    bs: &BackupStorageRecord,
) -> Result<StorageConfig, ResolveError> {
    let object = format!("BackupStorage {}", bs.key);
    let provider = bs
        .provider
        .clone()
        .ok_or_else(|| ResolveError::MissingField {
            object: object.clone(),
            field: "spec.storage",
        })?;
    let secrets = match provider.secret_name() {
        None => BTreeMap::new(),
        Some((block, name)) => {
            let key = ObjectKey::new(bs.key.namespace.clone(), name);
            let secret = objects
                .secret(&key)
                .await?
                .ok_or_else(|| ResolveError::NotFound {
                    what: "storage secret",
                    kind: "Secret",
                    key,
                    referenced_by: Some(format!("{object} (spec.storage.{block}.secretName)")),
                })?;
            secret.strings()?
        }
    };
    Ok(StorageConfig {
        name: bs.key.to_string(),
        provider,
        secrets,
    }
    .normalized()?)
}

/// Connects to a BackupStorage (reads its storage Secret; no storage I/O yet).
pub async fn connect(
    objects: &impl Objects,
    bs: &BackupStorageRecord,
) -> Result<Storage, ResolveError> {
    Ok(Storage::connect(storage_config(objects, bs).await?)?)
}

/// The restic password: key `RESTIC_PASSWORD` of Secret `secret`, which `referenced_by`
/// (`Repository demo/x (spec.encryptionSecret)`) names.
pub async fn password(
    objects: &impl Objects,
    secret: &ObjectKey,
    referenced_by: &str,
) -> Result<Password, ResolveError> {
    let record = objects
        .secret(secret)
        .await?
        .ok_or_else(|| ResolveError::NotFound {
            what: "encryption secret",
            kind: "Secret",
            key: secret.clone(),
            referenced_by: Some(referenced_by.to_string()),
        })?;
    match record.get(RESTIC_PASSWORD)? {
        Some(p) if !p.is_empty() => Ok(Password::new(p, secret.clone())),
        _ => Err(ResolveError::MissingKey {
            what: "encryption",
            secret: secret.clone(),
            key: RESTIC_PASSWORD,
        }),
    }
}

/// The BackupStorage a Repository is stored in, and the Repository's directory in it.
pub async fn backup_storage_of(
    objects: &impl Objects,
    repo: &RepositoryRecord,
) -> Result<(BackupStorageRecord, String), ResolveError> {
    let object = format!("Repository {}", repo.key);
    let path = repo
        .path
        .as_deref()
        .map(|p| p.trim_matches('/'))
        .filter(|p| !p.is_empty())
        .ok_or_else(|| ResolveError::MissingField {
            object: object.clone(),
            field: "spec.path",
        })?
        .to_string();
    let sref = repo
        .storage_ref
        .clone()
        .ok_or_else(|| ResolveError::MissingField {
            object: object.clone(),
            field: "spec.storageRef",
        })?;
    let bs = objects
        .backup_storage(&sref)
        .await?
        .ok_or_else(|| ResolveError::NotFound {
            what: "the storage",
            kind: "BackupStorage",
            key: sref,
            referenced_by: Some(format!("{object} (spec.storageRef)")),
        })?;
    Ok((bs, path))
}

/// Resolves Repository `repo`: its BackupStorage, storage Secret, directory and restic
/// password. `encryption_secret` overrides the Repository's `spec.encryptionSecret` (a
/// session's `repositories[].encryptionSecret`, a restore's `dataSource.encryptionSecret`),
/// named by `override_field` in errors.
pub async fn resolve(
    objects: &impl Objects,
    repo: &ObjectKey,
    encryption_secret: Option<(ObjectKey, &str)>,
) -> Result<ResolvedRepository, ResolveError> {
    let record = objects
        .repository(repo)
        .await?
        .ok_or_else(|| ResolveError::NotFound {
            what: "the repository",
            kind: "Repository",
            key: repo.clone(),
            referenced_by: None,
        })?;
    resolve_record(objects, &record, encryption_secret).await
}

/// [`resolve`] for a Repository already read.
pub async fn resolve_record(
    objects: &impl Objects,
    record: &RepositoryRecord,
    encryption_secret: Option<(ObjectKey, &str)>,
) -> Result<ResolvedRepository, ResolveError> {
    let object = format!("Repository {}", record.key);
    let (bs, path) = backup_storage_of(objects, record).await?;
    let (secret, referenced_by) = match encryption_secret {
        Some((key, by)) => (key, by.to_string()),
        None => (
            record
                .encryption_secret
                .clone()
                .ok_or_else(|| ResolveError::MissingField {
                    object: object.clone(),
                    field: "spec.encryptionSecret",
                })?,
            format!("{object} (spec.encryptionSecret)"),
        ),
    };
    let password = password(objects, &secret, &referenced_by).await?;
    let storage = connect(objects, &bs).await?;
    let dir = storage
        .repository(&path)
        .map_err(|e| ResolveError::Invalid {
            object,
            field: "spec.path".into(),
            reason: e.to_string(),
        })?;
    Ok(ResolvedRepository {
        repository: record.key.clone(),
        backup_storage: bs.key,
        dir,
        password,
    })
}

impl Provider {
    /// `(provider block, secretName)` when the backend names a storage Secret.
    pub fn secret_name(&self) -> Option<(&'static str, &str)> {
        let (block, name) = match self {
            Provider::S3 { s3 } => ("s3", s3.secret_name.as_str()),
            Provider::Gcs { gcs } => ("gcs", gcs.secret_name.as_str()),
            Provider::Azure { azure } => ("azure", azure.secret_name.as_str()),
            Provider::Local { .. } => return None,
        };
        (!name.is_empty()).then_some((block, name))
    }
}

/// An [`Objects`] over records held in memory (manifest files, tests).
#[derive(Clone, Debug, Default)]
pub struct MemoryObjects {
    /// Repositories.
    pub repositories: Vec<RepositoryRecord>,
    /// BackupStorages.
    pub backup_storages: Vec<BackupStorageRecord>,
    /// Secrets.
    pub secrets: Vec<SecretRecord>,
}

impl Objects for MemoryObjects {
    async fn repository(&self, key: &ObjectKey) -> Result<Option<RepositoryRecord>, ResolveError> {
        Ok(self.repositories.iter().find(|r| &r.key == key).cloned())
    }

    async fn backup_storage(
        &self,
        key: &ObjectKey,
    ) -> Result<Option<BackupStorageRecord>, ResolveError> {
        Ok(self.backup_storages.iter().find(|r| &r.key == key).cloned())
    }

    async fn secret(&self, key: &ObjectKey) -> Result<Option<SecretRecord>, ResolveError> {
        Ok(self.secrets.iter().find(|r| &r.key == key).cloned())
    }
}

#[cfg(test)]
mod tests;
