//! The typed adapter from kstash-api's objects (and the Kubernetes API) to the records of
//! [`super`] (feature `cluster`): the only conversion of a `BackupStorage.spec.storage` into a
//! [`Provider`], field by field, without going through JSON.

use k8s_openapi::api::core::v1::Secret;
use kstash_api::storage::{Backend, BackupStorage, Repository};
use kube::{Api, ResourceExt};

use super::{
    BackupStorageRecord, ObjectKey, Objects, RepositoryRecord, ResolveError, SecretRecord,
};
use crate::config::{AzureConfig, GcsConfig, LocalConfig, Provider, S3Config};

impl From<&Repository> for RepositoryRecord {
    fn from(r: &Repository) -> Self {
        let ns = r.namespace().unwrap_or_default();
        RepositoryRecord {
            key: ObjectKey::new(ns.clone(), r.name_any()),
            storage_ref: r
                .spec
                .storage_ref
                .as_ref()
                .filter(|s| !s.name.is_empty())
                .map(|s| ObjectKey::referenced(&s.name, s.namespace.as_deref(), &ns)),
            path: r.spec.path.clone(),
            encryption_secret: r
                .spec
                .encryption_secret
                .as_ref()
                .filter(|s| !s.name.is_empty())
                .map(|s| ObjectKey::referenced(&s.name, s.namespace.as_deref(), &ns)),
        }
    }
}

impl TryFrom<&BackupStorage> for BackupStorageRecord {
    type Error = ResolveError;

    fn try_from(bs: &BackupStorage) -> Result<Self, ResolveError> {
        let key = ObjectKey::new(bs.namespace().unwrap_or_default(), bs.name_any());
        let provider = match &bs.spec.storage {
            None => None,
            Some(b) => Some(provider(b, &format!("BackupStorage {key}"))?),
        };
        Ok(BackupStorageRecord { key, provider })
    }
}

/// `spec.storage` of a BackupStorage (`object`, for errors) as a [`Provider`]: the block that
/// `provider` names must be present; other blocks are ignored.
pub fn provider(b: &Backend, object: &str) -> Result<Provider, ResolveError> {
    let invalid = |field: &str, reason: String| ResolveError::Invalid {
        object: object.to_string(),
        field: field.to_string(),
        reason,
    };
    let s = |v: &Option<String>| v.clone().unwrap_or_default();
    let n = |v: &Option<i64>| v.unwrap_or(0);
    let block = |name: &str| {
        invalid(
            &format!("spec.storage.{name}"),
            format!("missing (spec.storage.provider is {name})"),
        )
    };
    Ok(match b.provider.as_deref().unwrap_or("") {
        "s3" => {
            let x = b.s3.as_ref().ok_or_else(|| block("s3"))?;
            Provider::S3 {
                s3: S3Config {
                    endpoint: s(&x.endpoint),
                    bucket: s(&x.bucket),
                    prefix: s(&x.prefix),
                    region: s(&x.region),
                    secret_name: s(&x.secret_name),
                    max_connections: n(&x.max_connections),
                    insecure_tls: x.insecure_tls.unwrap_or(false),
                },
            }
        }
        "gcs" => {
            let x = b.gcs.as_ref().ok_or_else(|| block("gcs"))?;
            Provider::Gcs {
                gcs: GcsConfig {
                    bucket: s(&x.bucket),
                    prefix: s(&x.prefix),
                    secret_name: s(&x.secret_name),
                    max_connections: n(&x.max_connections),
                    endpoint: String::new(),
                },
            }
        }
        "azure" => {
            let x = b.azure.as_ref().ok_or_else(|| block("azure"))?;
            Provider::Azure {
                azure: AzureConfig {
                    storage_account: s(&x.storage_account),
                    container: s(&x.container),
                    prefix: s(&x.prefix),
                    secret_name: s(&x.secret_name),
                    max_connections: n(&x.max_connections),
                    endpoint: String::new(),
                },
            }
        }
        "local" => {
            let x = b.local.as_ref().ok_or_else(|| block("local"))?;
            Provider::Local {
                local: LocalConfig {
                    mount_path: s(&x.mount_path),
                    sub_path: s(&x.sub_path),
                    max_connections: n(&x.max_connections),
                },
            }
        }
        other => {
            return Err(invalid(
                "spec.storage.provider",
                format!("{other:?}: must be one of s3, gcs, azure, local"),
            ))
        }
    })
}

impl From<&Secret> for SecretRecord {
    fn from(s: &Secret) -> Self {
        SecretRecord {
            key: ObjectKey::new(s.namespace().unwrap_or_default(), s.name_any()),
            data: s
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect(),
            string_data: s.string_data.clone().unwrap_or_default(),
        }
    }
}

/// [`Objects`] read from the Kubernetes API (one GET per object, by name).
#[derive(Clone)]
pub struct ClusterObjects {
    client: kube::Client,
}

impl ClusterObjects {
    /// Reads with `client`.
    pub fn new(client: kube::Client) -> Self {
        ClusterObjects { client }
    }
}

async fn get<K>(
    client: &kube::Client,
    kind: &str,
    key: &ObjectKey,
) -> Result<Option<K>, ResolveError>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    <K as kube::Resource>::DynamicType: Default,
{
    Api::<K>::namespaced(client.clone(), &key.namespace)
        .get_opt(&key.name)
        .await
        .map_err(|e| ResolveError::Read {
            what: format!("{kind} {key}"),
            source: Box::new(e),
        })
}

impl Objects for ClusterObjects {
    async fn repository(&self, key: &ObjectKey) -> Result<Option<RepositoryRecord>, ResolveError> {
        Ok(get::<Repository>(&self.client, "Repository", key)
            .await?
            .as_ref()
            .map(RepositoryRecord::from))
    }

    async fn backup_storage(
        &self,
        key: &ObjectKey,
    ) -> Result<Option<BackupStorageRecord>, ResolveError> {
        get::<BackupStorage>(&self.client, "BackupStorage", key)
            .await?
            .as_ref()
            .map(BackupStorageRecord::try_from)
            .transpose()
    }

    async fn secret(&self, key: &ObjectKey) -> Result<Option<SecretRecord>, ResolveError> {
        Ok(get::<Secret>(&self.client, "Secret", key)
            .await?
            .as_ref()
            .map(SecretRecord::from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_blocks_convert_field_by_field() {
        let b: Backend = serde_json::from_value(serde_json::json!({
            "provider": "s3",
            "s3": {"endpoint": "us-east-1.linodeobjects.com", "bucket": "esbackup",
                   "region": "us-east-1", "prefix": "elastic", "secretName": "s3-secret",
                   "maxConnections": 4, "insecureTLS": true},
            "gcs": {"bucket": "ignored"}
        }))
        .unwrap();
        let p = provider(&b, "BackupStorage demo/s3-storage").unwrap();
        assert_eq!(
            p,
            Provider::S3 {
                s3: S3Config {
                    endpoint: "us-east-1.linodeobjects.com".into(),
                    bucket: "esbackup".into(),
                    prefix: "elastic".into(),
                    region: "us-east-1".into(),
                    secret_name: "s3-secret".into(),
                    max_connections: 4,
                    insecure_tls: true,
                }
            }
        );
        assert_eq!(p.secret_name(), Some(("s3", "s3-secret")));
        let none: Backend =
            serde_json::from_value(serde_json::json!({"s3": {"bucket": "b"}})).unwrap();
        assert_eq!(
            provider(&none, "BackupStorage demo/x").unwrap_err().to_string(),
            "BackupStorage demo/x: spec.storage.provider: \"\": must be one of s3, gcs, azure, local"
        );
        let missing: Backend =
            serde_json::from_value(serde_json::json!({"provider": "gcs"})).unwrap();
        assert_eq!(
            provider(&missing, "BackupStorage demo/x")
                .unwrap_err()
                .to_string(),
            "BackupStorage demo/x: spec.storage.gcs: missing (spec.storage.provider is gcs)"
        );
    }

    #[test]
    fn secrets_keep_string_data_over_data() {
        let s: Secret = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "encrypt-secret", "namespace": "demo"},
            "data": {"RESTIC_PASSWORD": "b2xk", "OTHER": "eA=="},
            "stringData": {"RESTIC_PASSWORD": "new"}
        }))
        .unwrap();
        let r = SecretRecord::from(&s);
        assert_eq!(r.key, ObjectKey::new("demo", "encrypt-secret"));
        assert_eq!(r.get("RESTIC_PASSWORD").unwrap().as_deref(), Some("new"));
        assert_eq!(r.get("OTHER").unwrap().as_deref(), Some("x"));
        assert!(!format!("{r:?}").contains("new"), "Debug hides values");
    }
}
