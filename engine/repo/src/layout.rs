//! KubeStash's bucket layout on a [`Storage`], and the one place that knows it:
//!
//! ```text
//! <prefix>/metadata.yaml                                 BackupStorage initialised (BackendMeta)
//! <prefix>/<path>/repository.yaml                        Repository initialised (its CR copy)
//! <prefix>/<path>/snapshots/<snapshot>.yaml              Snapshot CR copies
//! <prefix>/<path>/repository/v1/<session>/<component>/   one restic repository per component
//! ```
//!
//! `<path>` is `Repository.spec.path`; `repository/v1/<session>/<component>` is a
//! [`ComponentPath`], the string KubeStash writes in `Snapshot.status.components.<c>.path` and
//! `Repository.status.componentPaths`. Inside a component directory the files are restic's own
//! (`config`, `keys/`, `index/`, `snapshots/`, `locks/`, `data/00..ff/`).

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::restic::{PruneReport, ResticRepo};
use crate::storage::{check_name, check_rel_path, Storage};

/// Name of the storage initialisation marker (`<prefix>/metadata.yaml`).
pub const METADATA_FILE: &str = "metadata.yaml";
/// Name of the repository initialisation marker (`<path>/repository.yaml`).
pub const REPOSITORY_FILE: &str = "repository.yaml";
/// Directory of the Snapshot YAML copies (`<path>/snapshots/<name>.yaml`).
pub const SNAPSHOTS_DIR: &str = "snapshots";
/// Directory of the restic repositories (`<path>/repository/v1/<session>/<component>`).
pub const RESTIC_DIR: &str = "repository/v1";

/// restic's directories of one repository other than `data/` (whose 256 sub-directories
/// `00`..`ff` are listed separately).
const RESTIC_SUBDIRS: [&str; 4] = ["keys", "index", "snapshots", "locks"];

/// Where one component's restic repository lives below a Repository directory:
/// `repository/v1/<session>/<component>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ComponentPath {
    session: String,
    component: String,
}

impl ComponentPath {
    /// The path of `component` of backup session `session` (names without `/`).
    pub fn new(session: &str, component: &str) -> Result<Self> {
        check_name("session", session)?;
        check_name("component", component)?;
        Ok(ComponentPath {
            session: session.to_string(),
            component: component.to_string(),
        })
    }

    /// Parses `repository/v1/<session>/<component>` (leading/trailing `/` allowed).
    pub fn parse(path: &str) -> Result<Self> {
        let bad = || Error::InvalidArgument {
            param: "component path",
            reason: format!("{path:?} is not {RESTIC_DIR}/<session>/<component>"),
        };
        let rest = path
            .trim_matches('/')
            .strip_prefix(RESTIC_DIR)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(bad)?;
        match rest.split('/').collect::<Vec<_>>().as_slice() {
            [session, component] => Self::new(session, component).map_err(|_| bad()),
            _ => Err(bad()),
        }
    }

    /// The backup session's name (e.g. `frequent-backup`).
    pub fn session(&self) -> &str {
        &self.session
    }

    /// The component's name (e.g. `dump`).
    pub fn component(&self) -> &str {
        &self.component
    }
}

impl fmt::Display for ComponentPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{RESTIC_DIR}/{}/{}", self.session, self.component)
    }
}

impl FromStr for ComponentPath {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl Storage {
    /// Storage initialisation: uploads `<prefix>/metadata.yaml` (KubeStash's BackendMeta).
    pub async fn initialize(&self, metadata_yaml: &[u8]) -> Result<()> {
        self.write(METADATA_FILE, metadata_yaml.to_vec()).await
    }

    /// Reads `<prefix>/metadata.yaml`, `None` if the storage was never initialised.
    pub async fn metadata(&self) -> Result<Option<Vec<u8>>> {
        self.read(METADATA_FILE).await
    }

    /// Deletes `<prefix>/metadata.yaml` (a BackupStorage wiped out).
    pub async fn delete_metadata(&self) -> Result<()> {
        self.delete(METADATA_FILE).await
    }

    /// The directory of one KubeStash Repository (`Repository.spec.path`).
    pub fn repository(&self, dir: &str) -> Result<RepositoryDir> {
        Ok(RepositoryDir {
            storage: self.clone(),
            dir: check_rel_path("repository path", dir)?,
        })
    }
}

/// One KubeStash Repository directory: `repository.yaml`, `snapshots/` and the restic repos.
#[derive(Clone, Debug)]
pub struct RepositoryDir {
    storage: Storage,
    dir: String,
}

impl RepositoryDir {
    /// The directory relative to the storage prefix.
    pub fn path(&self) -> &str {
        &self.dir
    }

    /// The storage this directory lives on.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Repository initialisation: uploads `<dir>/repository.yaml`.
    pub async fn initialize(&self, repository_yaml: &[u8]) -> Result<()> {
        self.storage
            .write(
                &format!("{}/{REPOSITORY_FILE}", self.dir),
                repository_yaml.to_vec(),
            )
            .await
    }

    /// Reads `<dir>/repository.yaml`.
    pub async fn repository_yaml(&self) -> Result<Option<Vec<u8>>> {
        self.storage
            .read(&format!("{}/{REPOSITORY_FILE}", self.dir))
            .await
    }

    fn snapshot_path(&self, name: &str) -> Result<String> {
        check_name("snapshot name", name)?;
        Ok(format!("{}/{SNAPSHOTS_DIR}/{name}.yaml", self.dir))
    }

    /// Uploads the Snapshot copy `<dir>/snapshots/<name>.yaml`.
    pub async fn put_snapshot_yaml(&self, name: &str, yaml: &[u8]) -> Result<()> {
        self.storage
            .write(&self.snapshot_path(name)?, yaml.to_vec())
            .await
    }

    /// Reads a Snapshot copy.
    pub async fn snapshot_yaml(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.storage.read(&self.snapshot_path(name)?).await
    }

    /// Deletes a Snapshot copy.
    pub async fn delete_snapshot_yaml(&self, name: &str) -> Result<()> {
        self.storage.delete(&self.snapshot_path(name)?).await
    }

    /// Names of the Snapshot copies (without `.yaml`), sorted.
    pub async fn snapshot_names(&self) -> Result<Vec<String>> {
        Ok(self
            .storage
            .list_names(&format!("{}/{SNAPSHOTS_DIR}", self.dir))
            .await?
            .into_iter()
            .filter_map(|n| n.strip_suffix(".yaml").map(str::to_string))
            .collect())
    }

    /// Component path as in Snapshot status: `repository/v1/<session>/<component>`.
    pub fn component_path(session: &str, component: &str) -> Result<String> {
        Ok(ComponentPath::new(session, component)?.to_string())
    }

    /// The restic repository of (session, component), encrypted with `password`
    /// (the encryption secret's `RESTIC_PASSWORD`). Not opened yet.
    pub fn component(&self, session: &str, component: &str, password: &str) -> Result<ResticRepo> {
        self.component_at(&ComponentPath::new(session, component)?, password)
    }

    /// The restic repository at `path`, encrypted with `password`. Not opened yet.
    pub fn component_at(&self, path: &ComponentPath, password: &str) -> Result<ResticRepo> {
        ResticRepo::new(
            self.storage.clone(),
            &format!("{}/{path}", self.dir),
            password,
        )
    }

    /// Retention execution: for each Snapshot chosen by the retention policy, forgets its
    /// restic snapshots in each component repository, prunes those repositories, then deletes
    /// the Snapshot copies from the bucket. restic snapshots already gone are skipped, so a
    /// repeated call after a partial failure finishes the job.
    pub async fn apply_retention(
        &self,
        deletions: &[SnapshotDeletion],
        password: &str,
    ) -> Result<Vec<PruneReport>> {
        use std::collections::BTreeMap;
        let mut per_repo: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for d in deletions {
            for c in &d.components {
                per_repo
                    .entry((c.session.clone(), c.component.clone()))
                    .or_default()
                    .push(c.restic_snapshot_id.clone());
            }
        }
        let mut reports = vec![];
        for ((session, component), ids) in per_repo {
            let repo = self.component(&session, &component, password)?;
            reports.push(repo.forget_and_prune(&ids).await?);
        }
        for d in deletions {
            self.delete_snapshot_yaml(&d.snapshot_name).await?;
        }
        Ok(reports)
    }

    /// Deletes every file of this directory: the restic repositories at `components`, the
    /// Snapshot copies and `repository.yaml` (a Repository wiped out). Returns the number of
    /// files deleted. The storage lists one directory level at a time, so restic's layout is
    /// walked explicitly.
    pub async fn wipe(&self, components: &[ComponentPath]) -> Result<usize> {
        let mut n = 0;
        for c in components {
            let base = format!("{}/{c}", self.dir);
            let mut dirs: Vec<String> = RESTIC_SUBDIRS
                .iter()
                .map(|d| format!("{base}/{d}"))
                .collect();
            dirs.extend((0..=255u8).map(|b| format!("{base}/data/{b:02x}")));
            dirs.push(base);
            n += self.delete_files_in(&dirs).await?;
        }
        let own = [format!("{}/{SNAPSHOTS_DIR}", self.dir), self.dir.clone()];
        n += self.delete_files_in(&own).await?;
        Ok(n)
    }

    async fn delete_files_in(&self, dirs: &[String]) -> Result<usize> {
        let mut n = 0;
        for d in dirs {
            for f in self.storage.list_names(d).await? {
                self.storage.delete(&format!("{d}/{f}")).await?;
                n += 1;
            }
        }
        Ok(n)
    }
}

/// One Snapshot CR whose data is deleted (by retention, or its own `WipeOut` deletion).
#[derive(Clone, Debug)]
pub struct SnapshotDeletion {
    /// Snapshot CR name (its YAML copy is `snapshots/<name>.yaml`).
    pub snapshot_name: String,
    /// The restic snapshots behind its components.
    pub components: Vec<ComponentSnapshot>,
}

/// The restic snapshot of one component of a Snapshot.
#[derive(Clone, Debug)]
pub struct ComponentSnapshot {
    /// Backup session name (e.g. `frequent-backup`).
    pub session: String,
    /// Component name (e.g. `dump`).
    pub component: String,
    /// restic snapshot id (full or unique prefix).
    pub restic_snapshot_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_paths_round_trip_and_name_the_shape() {
        let p = ComponentPath::new("frequent-backup", "dump").unwrap();
        assert_eq!(p.to_string(), "repository/v1/frequent-backup/dump");
        assert_eq!(
            ComponentPath::parse("/repository/v1/frequent-backup/dump/").unwrap(),
            p
        );
        assert_eq!(p.session(), "frequent-backup");
        assert_eq!(p.component(), "dump");
        for bad in [
            "repository/v1/dump",
            "repo/v1/a/b",
            "repository/v1/a/b/c",
            "repository/v1//b",
            "repository/v1/../b",
        ] {
            let e = ComponentPath::parse(bad).unwrap_err().to_string();
            assert!(
                e.contains("repository/v1/<session>/<component>"),
                "{bad}: {e}"
            );
        }
        assert!(ComponentPath::new("a/b", "c").is_err());
    }
}
