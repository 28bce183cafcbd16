//! One restic repository (one KubeStash component path) through rustic_core.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustic_core::repofile::{KeyFile, MasterKey, SnapshotFile};
use rustic_core::{
    CheckOptions, ConfigOptions, Credentials, KeyOptions, OpenStatus, PruneOptions, Repository,
    RepositoryBackends, RepositoryOptions,
};

use crate::backend::OpendalBackend;
use crate::error::{Error, Result};
use crate::io::{run_blocking, run_io};
use crate::locks::{Crypto, FoundLock, Locks, RepoLock};
use crate::storage::Storage;

/// Default time a backup or prune waits for a conflicting live lock.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(300);

/// A restic repository at `<dir>/repository/v1/<session>/<component>` (or any sub path).
#[derive(Clone, Debug)]
pub struct ResticRepo {
    pub(crate) storage: Storage,
    pub(crate) backend: OpendalBackend,
    pub(crate) location: String,
    base: String,
    password: String,
    /// Where the password comes from (`Secret demo/encrypt-secret`), for a wrong-password error.
    password_source: Option<String>,
    /// The master key once a first open derived it from the password (scrypt is costly in
    /// memory and time: one derivation per `ResticRepo` and its clones).
    master: Arc<KeyCache>,
    pub(crate) lock_wait: Duration,
}

/// The cached master key; its `Debug` never shows the key.
#[derive(Default)]
struct KeyCache(OnceLock<MasterKey>);

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "KeyCache(derived)"
        } else {
            "KeyCache(empty)"
        })
    }
}

/// scrypt cost of the key files kstash creates: N = 2^15, r = 8, p = 1 (32 MiB, ~0.1 s), the
/// most restic 0.14 picks itself (it calibrates its keys to at most 60 MiB). rustic_core's
/// default (N = 2^17, 128 MiB per derivation) was most of a backup's peak memory.
const KEY_LOG_N: u8 = 15;

/// A restic key file for `master`, encrypted with a key derived from `password` by scrypt.
fn key_file(master: &MasterKey, password: &str) -> std::result::Result<Vec<u8>, String> {
    let params = scrypt::Params::new(KEY_LOG_N, 8, 1).map_err(|e| e.to_string())?;
    let mut salt = vec![0u8; 64];
    rand::fill(&mut salt[..]);
    let mut derived = [0u8; 64];
    scrypt::scrypt(password.as_bytes(), &salt, &params, &mut derived).map_err(|e| e.to_string())?;
    let plain = serde_json::to_vec(master).map_err(|e| e.to_string())?;
    let kf = KeyFile {
        hostname: Some(crate::locks::hostname()),
        username: Some(std::env::var("USER").unwrap_or_else(|_| "kstash".into())),
        created: Some(jiff::Zoned::now()),
        kdf: "scrypt".into(),
        n: 1 << KEY_LOG_N,
        r: 8,
        p: 1,
        data: crate::locks::Crypto::from_bytes(derived).encrypt(&plain),
        salt,
    };
    serde_json::to_vec(&kf).map_err(|e| e.to_string())
}

/// A restic snapshot as listed by `restic snapshots`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SnapshotInfo {
    /// Full snapshot id (64 hex).
    pub id: String,
    /// First 8 hex digits.
    pub short_id: String,
    /// Snapshot time.
    pub time: jiff::Timestamp,
    /// Host name.
    pub hostname: String,
    /// Backed-up paths.
    pub paths: Vec<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Root tree id.
    pub tree: String,
    /// Bytes processed by the backup (from the summary, 0 if unknown).
    pub total_bytes_processed: u64,
}

impl SnapshotInfo {
    pub(crate) fn from_file(s: &SnapshotFile) -> Self {
        let id = s.id.to_hex().to_string();
        SnapshotInfo {
            short_id: id[..8].to_string(),
            id,
            time: s.time.timestamp(),
            hostname: s.hostname.clone(),
            paths: s.paths.iter().cloned().collect(),
            tags: s.tags.iter().cloned().collect(),
            tree: s.tree.to_hex().to_string(),
            total_bytes_processed: s.summary.as_ref().map_or(0, |x| x.total_bytes_processed),
        }
    }
}

/// Result of an integrity check (`restic check` equivalent).
#[derive(Clone, Debug, serde::Serialize)]
pub struct CheckReport {
    /// No error-level finding.
    pub ok: bool,
    /// Whether pack contents were read and verified (`--read-data`).
    pub read_data: bool,
    /// Findings (`<level>: <message>`), warnings included.
    pub findings: Vec<String>,
}

/// Result of forget + prune.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PruneReport {
    /// Repository location.
    pub repository: String,
    /// restic snapshot ids removed.
    pub forgotten: Vec<String>,
    /// Repository size after pruning (bytes of stored blobs).
    pub size_after: u64,
}

pub(crate) fn repo_options() -> RepositoryOptions {
    // No local cache: kstash writes nothing to local disk.
    RepositoryOptions::default().no_cache(true)
}

impl ResticRepo {
    pub(crate) fn new(storage: Storage, base: &str, password: &str) -> Result<Self> {
        if password.is_empty() {
            return Err(Error::MissingSecret {
                storage: format!("{} (encryption secret)", storage.config().name),
                key: "RESTIC_PASSWORD".into(),
            });
        }
        let base = crate::storage::check_rel_path("restic repository path", base)?;
        let location = storage.config().restic_url(&base);
        let backend = OpendalBackend::new(storage.operator().clone(), &base, &location);
        Ok(ResticRepo {
            storage,
            backend,
            location,
            base,
            password: password.to_string(),
            password_source: None,
            master: Arc::default(),
            lock_wait: DEFAULT_LOCK_WAIT,
        })
    }

    /// The restic URL of this repository (`s3:<endpoint>/<bucket>/…`, or a local path).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Names where the password comes from (e.g. `Secret demo/encrypt-secret`): a password that
    /// opens no key of the repository is then reported as "the restic password in <source>
    /// does not open repository <location>".
    pub fn with_password_source(mut self, source: impl Into<String>) -> Self {
        self.password_source = Some(source.into());
        self
    }

    /// How long backup/prune wait for conflicting live locks (default 5 min).
    pub fn with_lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    pub(crate) fn err(&self, op: &'static str, e: impl std::fmt::Display) -> Error {
        Error::restic(&self.location, op, e)
    }

    pub(crate) fn open_with(&self, be: OpendalBackend) -> Result<Repository<OpenStatus>> {
        let backends = RepositoryBackends::new(Arc::new(be), None);
        let credentials = match self.master.0.get() {
            Some(mk) => Credentials::Masterkey(mk.clone()),
            None => Credentials::password(&self.password),
        };
        let repo = Repository::new(&repo_options(), &backends)
            .and_then(|r| r.open(&credentials))
            .map_err(|e| {
                if e.is_incorrect_password() {
                    Error::WrongPassword {
                        repo: self.location.clone(),
                        password_source: self.password_source.clone(),
                    }
                } else {
                    self.err("open", e)
                }
            })?;
        let _ = self.master.0.set(repo.key());
        Ok(repo)
    }

    /// Writes a key file for a new master key (kstash's scrypt cost) and returns the key;
    /// rustic_core then initialises the repository with it (`Credentials::Masterkey`).
    fn new_key(&self) -> Result<MasterKey> {
        use rustic_core::WriteBackend as _;
        let master = MasterKey::new();
        let json = key_file(&master, &self.password).map_err(|e| self.err("create key", e))?;
        let id = rustic_core::Id::new(
            sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&json)).into(),
        );
        self.backend
            .write_bytes(rustic_core::FileType::Key, &id, false, json.into())
            .map_err(|e| self.err("write key", e))?;
        Ok(master)
    }

    /// Opens the repository (blocking; call from blocking context).
    pub(crate) fn open_sync(&self) -> Result<Repository<OpenStatus>> {
        self.open_with(self.backend.clone())
    }

    pub(crate) async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(ResticRepo) -> Result<T> + Send + 'static,
    {
        let me = self.clone();
        run_blocking(move || f(me)).await?
    }

    /// Whether the restic repository exists (its `config` file is present).
    pub async fn exists(&self) -> Result<bool> {
        let op = self.storage.operator().clone();
        let path = self
            .backend
            .path(rustic_core::FileType::Config, &Default::default());
        match run_io(async move { op.stat(&path).await }).await? {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.err("stat config", e)),
        }
    }

    /// Creates the repository (restic format v2, zstd) with the password as its first key.
    pub async fn init(&self) -> Result<()> {
        self.blocking(|me| {
            let backends = RepositoryBackends::new(Arc::new(me.backend.clone()), None);
            let master = me.new_key()?;
            Repository::new(&repo_options(), &backends)
                .and_then(|r| {
                    r.init(
                        &Credentials::Masterkey(master.clone()),
                        &KeyOptions::default(),
                        &ConfigOptions::default(),
                    )
                })
                .map_err(|e| me.err("init", e))?;
            let _ = me.master.0.set(master);
            Ok(())
        })
        .await
    }

    /// Creates the repository (v2, zstd) with a given Rabin chunker polynomial instead of a
    /// random one, like `restic init --copy-chunker-params`: repositories sharing a
    /// polynomial cut the same data at the same points (so they deduplicate alike). The
    /// polynomial must be irreducible of degree 53, as restic's are (`0x3DA3358B4DC173` is
    /// the one restic's chunker tests use).
    pub async fn init_with_chunker_polynomial(&self, poly: u64) -> Result<()> {
        if poly >> 53 != 1 || poly & 1 == 0 {
            return Err(Error::InvalidArgument {
                param: "chunker polynomial",
                reason: format!("{poly:#x} is not of degree 53 with a constant term"),
            });
        }
        self.blocking(move |me| {
            let backends = RepositoryBackends::new(Arc::new(me.backend.clone()), None);
            let config =
                rustic_core::repofile::ConfigFile::new(2, rustic_core::Id::random().into(), poly);
            let master = me.new_key()?;
            Repository::new(&repo_options(), &backends)
                .and_then(|r| {
                    r.init_with_config(
                        &Credentials::Masterkey(master.clone()),
                        &KeyOptions::default(),
                        config,
                    )
                })
                .map_err(|e| me.err("init", e))?;
            let _ = me.master.0.set(master);
            Ok(())
        })
        .await
    }

    /// Opens the repository, creating it first if it does not exist. Returns `true` if created.
    pub async fn open_or_init(&self) -> Result<bool> {
        if self.exists().await? {
            self.blocking(|me| me.open_sync().map(|_| ())).await?;
            Ok(false)
        } else {
            self.init().await?;
            Ok(true)
        }
    }

    pub(crate) async fn locks(&self) -> Result<Locks> {
        let crypto = self
            .blocking(|me| me.open_sync().map(|r| Crypto::from_master(&r.key())))
            .await?;
        Ok(Locks::new(
            self.storage.operator().clone(),
            &self.base(),
            &self.location,
            crypto,
        ))
    }

    pub(crate) fn base(&self) -> String {
        self.base.clone()
    }

    /// Takes restic's lock (exclusive or shared), waiting up to the lock wait for conflicts;
    /// stale locks are removed and logged.
    pub async fn lock(&self, exclusive: bool) -> Result<RepoLock> {
        self.locks().await?.acquire(exclusive, self.lock_wait).await
    }

    /// Lists the lock files (`restic list locks` + `restic cat lock`).
    pub async fn list_locks(&self) -> Result<Vec<FoundLock>> {
        self.locks().await?.list().await
    }

    /// Removes stale locks, or every lock with `all` (`restic unlock [--remove-all]`).
    /// Returns the number removed.
    pub async fn unlock(&self, all: bool) -> Result<usize> {
        let locks = self.locks().await?;
        let now = jiff::Timestamp::now();
        let mut n = 0;
        for l in locks.list().await? {
            let stale = l.info.as_ref().and_then(|i| i.stale_reason(now));
            if all || stale.is_some() {
                tracing::warn!(repo = %self.location, lock = %l.id, reason = ?stale, "removing lock");
                locks.remove(&l.id).await?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Removes the locks left by process `pid` on `host` (a dead holder whose session another
    /// replica took over: on another host restic's rules would keep them for 30 minutes).
    /// Returns the number removed.
    pub async fn unlock_held_by(&self, host: &str, pid: i64) -> Result<usize> {
        let locks = self.locks().await?;
        let mut n = 0;
        for l in locks.list().await? {
            if l.info
                .as_ref()
                .is_some_and(|i| i.hostname == host && i.pid == pid)
            {
                tracing::warn!(repo = %self.location, lock = %l.id, %host, pid, "removing a dead holder's lock");
                locks.remove(&l.id).await?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// All snapshots, oldest first.
    pub async fn snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        self.blocking(|me| {
            let repo = me.open_sync()?;
            let mut snaps = repo
                .get_all_snapshots()
                .map_err(|e| me.err("list snapshots", e))?;
            snaps.sort_by(|a, b| a.time.cmp(&b.time));
            Ok(snaps.iter().map(SnapshotInfo::from_file).collect())
        })
        .await
    }

    /// Resolves a snapshot id, unique prefix, or `latest` (the newest snapshot).
    pub async fn snapshot(&self, id: &str) -> Result<SnapshotInfo> {
        let id = id.to_string();
        self.blocking(move |me| {
            let repo = me.open_sync()?;
            repo.get_snapshot_from_str(&id, |_| true)
                .map(|s| SnapshotInfo::from_file(&s))
                .map_err(|e| match repo.get_all_snapshots() {
                    Ok(v) if v.is_empty() => Error::NotFound {
                        what: "snapshot",
                        name: format!("{id} (repository {} has no snapshots)", me.location),
                    },
                    _ => me.err("find snapshot", e),
                })
        })
        .await
    }

    /// Integrity check, like `restic check [--read-data]`.
    pub async fn check(&self, read_data: bool) -> Result<CheckReport> {
        self.blocking(move |me| {
            let repo = me.open_sync()?;
            let res = repo
                .check(CheckOptions::default().read_data(read_data))
                .map_err(|e| me.err("check", e))?;
            Ok(CheckReport {
                ok: res.is_ok().is_ok(),
                read_data,
                findings: res
                    .0
                    .iter()
                    .map(|(level, e)| format!("{level:?}: {e}"))
                    .collect(),
            })
        })
        .await
    }

    /// Repository size: bytes of all stored blobs (data + trees, compressed and encrypted),
    /// like `restic stats --mode raw-data`.
    pub async fn size(&self) -> Result<u64> {
        self.blocking(|me| {
            let repo = me.open_sync()?;
            size_of(&me, &repo)
        })
        .await
    }

    /// Forgets the given restic snapshots (full ids or unique prefixes) and prunes, under the
    /// exclusive lock. Ids of snapshots already gone are skipped (a retried deletion finishes
    /// the job); with none left to forget nothing is pruned.
    pub async fn forget_and_prune(&self, ids: &[String]) -> Result<PruneReport> {
        let lock = self.lock(true).await?;
        let ids = ids.to_vec();
        let res = self
            .blocking(move |me| {
                let repo = me.open_sync()?;
                let snaps: Vec<SnapshotFile> = repo
                    .get_all_snapshots()
                    .map_err(|e| me.err("find snapshots to forget", e))?
                    .into_iter()
                    .filter(|s| {
                        let hex = s.id.to_hex();
                        ids.iter()
                            .any(|i| !i.is_empty() && hex.starts_with(i.as_str()))
                    })
                    .collect();
                if !snaps.is_empty() {
                    let sids: Vec<_> = snaps.iter().map(|s| s.id).collect();
                    repo.delete_snapshots(&sids)
                        .map_err(|e| me.err("forget", e))?;
                    let opts = PruneOptions::default();
                    let plan = repo.prune_plan(&opts).map_err(|e| me.err("prune", e))?;
                    repo.prune(&opts, plan).map_err(|e| me.err("prune", e))?;
                }
                Ok(PruneReport {
                    repository: me.location.clone(),
                    forgotten: snaps.iter().map(|s| s.id.to_hex().to_string()).collect(),
                    size_after: size_of(&me, &repo)?,
                })
            })
            .await;
        lock.release().await?;
        res
    }
}

pub(crate) fn size_of(me: &ResticRepo, repo: &Repository<OpenStatus>) -> Result<u64> {
    let infos = repo.infos_index().map_err(|e| me.err("stats", e))?;
    Ok(infos.blobs.iter().map(|b| b.size).sum())
}
