//! Storage configuration: the fields of a KubeStash `BackupStorage` that kstash needs,
//! independent of the typed API crate (the engine converts).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// S3 (or S3-compatible) backend: `spec.storage.s3`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3Config {
    /// Endpoint, with or without scheme (`https://` assumed when missing).
    #[serde(default)]
    pub endpoint: String,
    /// Bucket name.
    pub bucket: String,
    /// Prefix inside the bucket.
    #[serde(default)]
    pub prefix: String,
    /// Region (`us-east-1` when empty).
    #[serde(default)]
    pub region: String,
    /// Secret holding the credentials (empty: credential-less).
    #[serde(default)]
    pub secret_name: String,
    /// Maximum parallel connections (0: default).
    #[serde(default)]
    pub max_connections: i64,
    /// Skip TLS verification.
    #[serde(default, rename = "insecureTLS")]
    pub insecure_tls: bool,
}

/// Google Cloud Storage backend: `spec.storage.gcs`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GcsConfig {
    /// Bucket name.
    pub bucket: String,
    /// Prefix inside the bucket.
    #[serde(default)]
    pub prefix: String,
    /// Secret holding the credentials.
    #[serde(default)]
    pub secret_name: String,
    /// Maximum parallel connections.
    #[serde(default)]
    pub max_connections: i64,
    /// kstash extension (not in KubeStash's CRD): JSON API endpoint, default
    /// `https://storage.googleapis.com` (set for an emulator or a private endpoint).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub endpoint: String,
}

/// Azure Blob backend: `spec.storage.azure`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AzureConfig {
    /// Storage account name.
    pub storage_account: String,
    /// Container name.
    pub container: String,
    /// Prefix inside the container.
    #[serde(default)]
    pub prefix: String,
    /// Secret holding the account key.
    #[serde(default)]
    pub secret_name: String,
    /// Maximum parallel connections.
    #[serde(default)]
    pub max_connections: i64,
    /// kstash extension (not in KubeStash's CRD): blob service endpoint, default
    /// `https://<storageAccount>.blob.core.windows.net` (set for Azurite or sovereign clouds).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub endpoint: String,
}

/// Local backend: a volume mounted at `mountPath` (+ optional `subPath`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalConfig {
    /// Where the volume is mounted.
    pub mount_path: String,
    /// Sub directory inside the volume.
    #[serde(default)]
    pub sub_path: String,
    /// Maximum parallel connections.
    #[serde(default)]
    pub max_connections: i64,
}

/// `spec.storage` of a BackupStorage: exactly one provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "provider", rename_all = "lowercase")]
pub enum Provider {
    /// `provider: s3`.
    S3 {
        /// The `s3` block.
        s3: S3Config,
    },
    /// `provider: gcs`.
    Gcs {
        /// The `gcs` block.
        gcs: GcsConfig,
    },
    /// `provider: azure`.
    Azure {
        /// The `azure` block.
        azure: AzureConfig,
    },
    /// `provider: local`.
    Local {
        /// The `local` block.
        local: LocalConfig,
    },
}

/// Everything needed to reach a BackupStorage: its name (for errors), provider and secret data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageConfig {
    /// `namespace/name` of the BackupStorage, used in error messages.
    pub name: String,
    /// The provider block.
    pub provider: Provider,
    /// Data of the storage secret (already base64-decoded).
    pub secrets: BTreeMap<String, String>,
}

/// Trims trailing `/` as the KubeStash webhook does.
pub(crate) fn trim_slashes(s: &str) -> String {
    s.trim_end_matches('/').to_string()
}

impl StorageConfig {
    /// Builds a config from the `spec.storage` YAML/JSON value of a BackupStorage.
    pub fn from_spec_storage(
        name: &str,
        storage: serde_json::Value,
        secrets: BTreeMap<String, String>,
    ) -> Result<Self> {
        let provider: Provider = serde_json::from_value(storage).map_err(|e| Error::Config {
            storage: name.to_string(),
            field: "spec.storage".into(),
            reason: e.to_string(),
        })?;
        let cfg = StorageConfig {
            name: name.to_string(),
            provider,
            secrets,
        };
        cfg.normalized()
    }

    /// Returns a copy with trailing slashes trimmed and required fields checked.
    pub fn normalized(mut self) -> Result<Self> {
        let err = |field: &str, reason: &str| Error::Config {
            storage: self.name.clone(),
            field: field.to_string(),
            reason: reason.to_string(),
        };
        match &mut self.provider {
            Provider::S3 { s3 } => {
                s3.bucket = trim_slashes(&s3.bucket);
                s3.endpoint = trim_slashes(&s3.endpoint);
                s3.prefix = trim_slashes(&s3.prefix);
                if s3.bucket.is_empty() {
                    return Err(err("spec.storage.s3.bucket", "must not be empty"));
                }
            }
            Provider::Gcs { gcs } => {
                gcs.bucket = trim_slashes(&gcs.bucket);
                gcs.prefix = trim_slashes(&gcs.prefix);
                if gcs.bucket.is_empty() {
                    return Err(err("spec.storage.gcs.bucket", "must not be empty"));
                }
            }
            Provider::Azure { azure } => {
                azure.prefix = trim_slashes(&azure.prefix);
                if azure.container.is_empty() {
                    return Err(err("spec.storage.azure.container", "must not be empty"));
                }
                if azure.storage_account.is_empty() {
                    return Err(err(
                        "spec.storage.azure.storageAccount",
                        "must not be empty",
                    ));
                }
            }
            Provider::Local { local } => {
                if local.mount_path.is_empty() {
                    return Err(err("spec.storage.local.mountPath", "must not be empty"));
                }
                if !local.mount_path.starts_with('/') {
                    return Err(err(
                        "spec.storage.local.mountPath",
                        "must be an absolute path",
                    ));
                }
            }
        }
        Ok(self)
    }

    /// Returns secret `key` or an error naming the storage and the key.
    pub(crate) fn secret(&self, key: &str) -> Result<&str> {
        self.secrets
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| Error::MissingSecret {
                storage: self.name.clone(),
                key: key.to_string(),
            })
    }

    /// The prefix inside the bucket/container/volume (no leading or trailing `/`).
    pub fn prefix(&self) -> String {
        let p = match &self.provider {
            Provider::S3 { s3 } => s3.prefix.clone(),
            Provider::Gcs { gcs } => gcs.prefix.clone(),
            Provider::Azure { azure } => azure.prefix.clone(),
            Provider::Local { local } => local.sub_path.clone(),
        };
        p.trim_matches('/').to_string()
    }

    /// The restic repository URL for directory `dir` below the prefix, as KubeStash's restic
    /// wrapper builds it (`s3:<endpoint>/<bucket>/<prefix>/<dir>`, `gs:…`, `azure:…`, local path).
    pub fn restic_url(&self, dir: &str) -> String {
        let join = |parts: &[&str]| {
            parts
                .iter()
                .map(|p| p.trim_matches('/'))
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .join("/")
        };
        match &self.provider {
            Provider::S3 { s3 } => {
                let ep = if s3.endpoint.is_empty() {
                    "s3.amazonaws.com".to_string()
                } else {
                    s3.endpoint.clone()
                };
                format!("s3:{}/{}", ep, join(&[&s3.bucket, &s3.prefix, dir]))
            }
            Provider::Gcs { gcs } => {
                format!("gs:{}:/{}", gcs.bucket, join(&[&gcs.prefix, dir]))
            }
            Provider::Azure { azure } => {
                format!("azure:{}:/{}", azure.container, join(&[&azure.prefix, dir]))
            }
            Provider::Local { local } => {
                format!("/{}", join(&[&local.mount_path, &local.sub_path, dir]))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tutorial_s3_storage_and_trims_slashes() {
        let v: serde_json::Value = serde_yaml::from_str(
            "provider: s3\ns3:\n  endpoint: us-east-1.linodeobjects.com/\n  bucket: esbackup/\n  region: us-east-1\n  prefix: elastic/\n  secretName: s3-secret\n",
        )
        .unwrap();
        let cfg = StorageConfig::from_spec_storage("demo/s3-storage", v, BTreeMap::new()).unwrap();
        assert_eq!(
            cfg.restic_url("es/repository/v1/frequent-backup/dump"),
            "s3:us-east-1.linodeobjects.com/esbackup/elastic/es/repository/v1/frequent-backup/dump"
        );
        assert_eq!(cfg.prefix(), "elastic");
    }

    #[test]
    fn missing_bucket_names_the_field() {
        let v = serde_json::json!({"provider": "s3", "s3": {"bucket": "/"}});
        let e = StorageConfig::from_spec_storage("demo/st", v, BTreeMap::new()).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("demo/st") && msg.contains("spec.storage.s3.bucket"),
            "{msg}"
        );
    }

    #[test]
    fn missing_secret_key_names_storage_and_key() {
        let v = serde_json::json!({"provider": "local", "local": {"mountPath": "/data"}});
        let cfg = StorageConfig::from_spec_storage("demo/local", v, BTreeMap::new()).unwrap();
        let msg = cfg.secret("AWS_ACCESS_KEY_ID").unwrap_err().to_string();
        assert_eq!(
            msg,
            "storage demo/local: secret is missing key `AWS_ACCESS_KEY_ID`"
        );
    }
}
