//! From a Repository to its bytes: Repository → BackupStorage (`spec.storageRef`) → storage
//! Secret (`spec.storage.<provider>.secretName`, in the BackupStorage's namespace) and
//! encryption Secret (`spec.encryptionSecret`, key `RESTIC_PASSWORD`) → the component restic
//! repositories at `<repo.spec.path>/<component path>` (spec §5.2).

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::Secret;
use kstash_api::constants::RESTIC_PASSWORD;
use kstash_api::storage::{Backend, BackupStorage, Repository};
use kstash_repo::{RepositoryDir, ResticRepo, Storage, StorageConfig};

use super::cluster::{get, Cluster};

/// A Repository opened on its storage, with the password of its component repositories.
pub struct OpenedRepository {
    /// `namespace/name` of the Repository (for messages).
    pub name: String,
    /// The Repository object.
    pub repository: Repository,
    /// Its directory on the storage.
    pub dir: RepositoryDir,
    password: String,
}

impl OpenedRepository {
    /// The restic repository at component path `repository/v1/<session>/<component>`.
    pub fn component(&self, path: &str) -> Result<ResticRepo> {
        let (session, component) = parse_component_path(path)
            .with_context(|| format!("repository {}: component path {path:?}", self.name))?;
        Ok(self.dir.component(session, component, &self.password)?)
    }
}

/// Splits `repository/v1/<session>/<component>` into `(session, component)`.
pub fn parse_component_path(path: &str) -> Result<(&str, &str)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["repository", "v1", session, component]
            if !session.is_empty() && !component.is_empty() =>
        {
            Ok((*session, *component))
        }
        _ => bail!("expected repository/v1/<session>/<component>"),
    }
}

/// The storage Secret's name of a backend (`spec.storage.<provider>.secretName`).
fn secret_name(b: &Backend) -> Option<&str> {
    let s = match b.provider.as_deref() {
        Some("s3") => b.s3.as_ref().and_then(|s| s.secret_name.as_deref()),
        Some("gcs") => b.gcs.as_ref().and_then(|s| s.secret_name.as_deref()),
        Some("azure") => b.azure.as_ref().and_then(|s| s.secret_name.as_deref()),
        _ => None,
    };
    s.filter(|s| !s.is_empty())
}

/// A Secret's data as strings.
async fn secret_data(cluster: &Cluster, ns: &str, name: &str) -> Result<BTreeMap<String, String>> {
    let secret: Secret = get(&cluster.api(ns), "secret", ns, name).await?;
    let mut out = BTreeMap::new();
    for (k, v) in secret.data.unwrap_or_default() {
        let s = String::from_utf8(v.0)
            .with_context(|| format!("secret {ns}/{name}: data.{k} is not UTF-8"))?;
        out.insert(k, s);
    }
    for (k, v) in secret.string_data.unwrap_or_default() {
        out.insert(k, v);
    }
    Ok(out)
}

/// Reads Repository `ns/name`, its BackupStorage and Secrets, and connects to the storage.
pub async fn open(cluster: &Cluster, ns: &str, name: &str) -> Result<OpenedRepository> {
    let full = format!("{ns}/{name}");
    let repository: Repository = get(&cluster.api(ns), "repository", ns, name).await?;
    let storage_ref = repository
        .spec
        .storage_ref
        .as_ref()
        .with_context(|| format!("repository {full}: spec.storageRef is not set"))?;
    let bs_ns = storage_ref.namespace_or(ns).to_string();
    let bs: BackupStorage = get(
        &cluster.api(&bs_ns),
        "backupstorage",
        &bs_ns,
        &storage_ref.name,
    )
    .await?;
    let bs_full = format!("{bs_ns}/{}", storage_ref.name);
    let backend = bs
        .spec
        .storage
        .as_ref()
        .with_context(|| format!("backupstorage {bs_full}: spec.storage is not set"))?;
    let secrets = match secret_name(backend) {
        Some(secret) => secret_data(cluster, &bs_ns, secret)
            .await
            .with_context(|| format!("storage secret of backupstorage {bs_full}"))?,
        None => BTreeMap::new(),
    };
    let cfg = StorageConfig::from_spec_storage(&bs_full, serde_json::to_value(backend)?, secrets)?;
    let storage = Storage::connect(cfg)?;
    let path = repository
        .spec
        .path
        .as_deref()
        .filter(|p| !p.is_empty())
        .with_context(|| format!("repository {full}: spec.path is not set"))?;
    let dir = storage.repository(path.trim_matches('/'))?;
    let enc = repository
        .spec
        .encryption_secret
        .as_ref()
        .with_context(|| format!("repository {full}: spec.encryptionSecret is not set"))?;
    let enc_ns = enc.namespace_or(ns).to_string();
    let password = secret_data(cluster, &enc_ns, &enc.name)
        .await
        .with_context(|| format!("encryption secret of repository {full}"))?
        .remove(RESTIC_PASSWORD)
        .filter(|p| !p.is_empty())
        .with_context(|| {
            format!(
                "repository {full}: encryption secret {enc_ns}/{} has no {RESTIC_PASSWORD} key",
                enc.name
            )
        })?;
    Ok(OpenedRepository {
        name: full,
        repository,
        dir,
        password,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_paths() {
        assert_eq!(
            parse_component_path("repository/v1/frequent-backup/dump").unwrap(),
            ("frequent-backup", "dump")
        );
        assert!(parse_component_path("repository/v1/dump").is_err());
        assert!(parse_component_path("repo/v1/a/b").is_err());
    }
}
