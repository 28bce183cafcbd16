//! restic's repository locks (`locks/<id>`), which rustic_core 0.13 does not implement.
//!
//! Format and rules follow restic: an encrypted JSON document
//! `{time, exclusive, hostname, username, pid, uid, gid}`; a lock is stale when older than
//! 30 minutes, or when it was made on this host by a process that no longer exists. Live
//! locks are refreshed every 5 minutes. A backup takes a non-exclusive lock (waits for
//! exclusive ones), prune takes an exclusive lock (waits for every other lock). Stale locks are
//! removed and logged.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aes256ctr_poly1305aes::aead::Aead;
use aes256ctr_poly1305aes::Aes256CtrPoly1305Aes;
use jiff::Timestamp;
use opendal::Operator;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::error::{Error, Result};
use crate::io::run_io;

/// A lock older than this is stale (restic: 30 min).
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
/// Live locks are rewritten this often (restic: 5 min).
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);

/// The JSON content of a restic lock file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockInfo {
    /// When the lock was (last) written.
    pub time: Timestamp,
    /// Exclusive lock (prune, forget) or shared (backup, check).
    #[serde(default)]
    pub exclusive: bool,
    /// Host of the owner.
    #[serde(default)]
    pub hostname: String,
    /// User of the owner.
    #[serde(default)]
    pub username: String,
    /// Process id of the owner.
    #[serde(default)]
    pub pid: i64,
    /// uid of the owner.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub uid: u32,
    /// gid of the owner.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gid: u32,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// This host's name as restic locks record it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

fn pid_alive(pid: i64) -> bool {
    pid > 0 && std::path::Path::new(&format!("/proc/{pid}")).exists()
}

impl LockInfo {
    /// A lock for this process.
    pub fn mine(exclusive: bool) -> Self {
        LockInfo {
            time: Timestamp::now(),
            exclusive,
            hostname: hostname(),
            username: std::env::var("USER").unwrap_or_else(|_| "kstash".into()),
            pid: i64::from(std::process::id()),
            uid: 0,
            gid: 0,
        }
    }

    /// Why the lock is stale, or `None` if it is live.
    pub fn stale_reason(&self, now: Timestamp) -> Option<String> {
        let age = now.duration_since(self.time);
        if age > jiff::SignedDuration::try_from(STALE_AFTER).unwrap_or_default() {
            return Some(format!("older than {} min", STALE_AFTER.as_secs() / 60));
        }
        if self.hostname == hostname() && !pid_alive(self.pid) {
            return Some(format!(
                "process {} on this host no longer exists",
                self.pid
            ));
        }
        None
    }

    /// One-line description for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} lock by {}@{} pid {} since {}",
            if self.exclusive {
                "exclusive"
            } else {
                "shared"
            },
            self.username,
            self.hostname,
            self.pid,
            self.time
        )
    }
}

/// Encrypts/decrypts restic "unpacked" files with the repository master key.
#[derive(Clone)]
pub(crate) struct Crypto {
    key: [u8; 64],
}

impl std::fmt::Debug for Crypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Crypto(..)")
    }
}

impl Crypto {
    pub(crate) fn from_master(mk: &rustic_core::repofile::MasterKey) -> Self {
        let mut key = [0u8; 64];
        key[0..32].copy_from_slice(&mk.encrypt);
        key[32..48].copy_from_slice(&mk.mac.k);
        key[48..64].copy_from_slice(&mk.mac.r);
        Crypto { key }
    }

    /// From 64 key bytes laid out as restic's (encryption 32, MAC k 16, MAC r 16), e.g. the
    /// scrypt output that encrypts a key file.
    pub(crate) fn from_bytes(key: [u8; 64]) -> Self {
        Crypto { key }
    }

    fn cipher(&self) -> Aes256CtrPoly1305Aes {
        Aes256CtrPoly1305Aes::new(aes256ctr_poly1305aes::Key::from_slice(&self.key))
    }

    pub(crate) fn encrypt(&self, plain: &[u8]) -> Vec<u8> {
        let mut n = [0u8; 16];
        rand::fill(&mut n);
        let nonce = aes256ctr_poly1305aes::aead::Nonce::<Aes256CtrPoly1305Aes>::from_slice(&n);
        let mut out = n.to_vec();
        out.extend(self.cipher().encrypt(nonce, plain).expect("encryption"));
        out
    }

    /// Appends `nonce ‖ AES-256-CTR(plain) ‖ Poly1305` to `out`, encrypting in place (no
    /// allocation when `out` has room).
    pub(crate) fn encrypt_append(&self, plain: &[u8], out: &mut Vec<u8>) {
        use aes256ctr_poly1305aes::aead::AeadInPlace as _;
        let mut n = [0u8; 16];
        rand::fill(&mut n);
        let nonce = aes256ctr_poly1305aes::aead::Nonce::<Aes256CtrPoly1305Aes>::from_slice(&n);
        out.reserve(plain.len() + 32);
        out.extend_from_slice(&n);
        let start = out.len();
        out.extend_from_slice(plain);
        let tag = self
            .cipher()
            .encrypt_in_place_detached(nonce, b"", &mut out[start..])
            .expect("encryption");
        out.extend_from_slice(&tag);
    }

    /// Decrypts and, for restic v2 files, decompresses (`0x02` + zstd) an unpacked file.
    pub(crate) fn decrypt(&self, data: &[u8]) -> Option<Vec<u8>> {
        if data.len() < 32 {
            return None;
        }
        let nonce =
            aes256ctr_poly1305aes::aead::Nonce::<Aes256CtrPoly1305Aes>::from_slice(&data[..16]);
        let plain = self.cipher().decrypt(nonce, &data[16..]).ok()?;
        match plain.first() {
            Some(2) => zstd::decode_all(&plain[1..]).ok(),
            _ => Some(plain),
        }
    }
}

/// Lock handling of one restic repository.
#[derive(Clone, Debug)]
pub(crate) struct Locks {
    op: Operator,
    dir: String,
    repo: String,
    crypto: Crypto,
}

/// One lock file found in the repository.
#[derive(Clone, Debug)]
pub struct FoundLock {
    /// Lock file id.
    pub id: String,
    /// Its content (`None` if it cannot be decrypted with our key).
    pub info: Option<LockInfo>,
}

impl Locks {
    pub(crate) fn new(op: Operator, base: &str, repo: &str, crypto: Crypto) -> Self {
        Locks {
            op,
            dir: format!("{}/locks/", base.trim_matches('/')),
            repo: repo.to_string(),
            crypto,
        }
    }

    fn storage_err(&self, op: &'static str, e: opendal::Error) -> Error {
        Error::Restic {
            repo: self.repo.clone(),
            op,
            message: e.to_string(),
        }
    }

    /// Lists and decodes all lock files.
    pub(crate) async fn list(&self) -> Result<Vec<FoundLock>> {
        let (op, dir, crypto) = (self.op.clone(), self.dir.clone(), self.crypto.clone());
        let r = run_io(async move {
            let entries = match op.list(&dir).await {
                Ok(v) => v,
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(vec![]),
                Err(e) => return Err(e),
            };
            let mut out = vec![];
            for e in entries.into_iter().filter(|e| e.metadata().is_file()) {
                let data = match op.read(e.path()).await {
                    Ok(d) => d.to_vec(),
                    // Removed meanwhile by its owner.
                    Err(err) if err.kind() == opendal::ErrorKind::NotFound => continue,
                    Err(err) => return Err(err),
                };
                let info = crypto
                    .decrypt(&data)
                    .and_then(|p| serde_json::from_slice::<LockInfo>(&p).ok());
                out.push(FoundLock {
                    id: e.name().to_string(),
                    info,
                });
            }
            Ok(out)
        })
        .await?;
        r.map_err(|e| self.storage_err("list locks", e))
    }

    pub(crate) async fn remove(&self, id: &str) -> Result<()> {
        let (op, path) = (self.op.clone(), format!("{}{id}", self.dir));
        run_io(async move { op.delete(&path).await })
            .await?
            .map_err(|e| self.storage_err("remove lock", e))
    }

    /// Writes a lock file of this process; it counts as held (see [`held`]) from before it
    /// exists until [`Locks::forget`].
    async fn write(&self, info: &LockInfo) -> Result<String> {
        let data = self
            .crypto
            .encrypt(&serde_json::to_vec(info).expect("lock json"));
        let id = hex::encode(sha2::Sha256::digest(&data));
        held().insert(id.clone());
        let (op, path) = (self.op.clone(), format!("{}{id}", self.dir));
        let written = run_io(async move { op.write(&path, data).await.map(|_| ()) })
            .await
            .and_then(|r| r.map_err(|e| self.storage_err("write lock", e)));
        if let Err(e) = written {
            held().remove(&id);
            return Err(e);
        }
        Ok(id)
    }

    /// This process no longer holds lock `id` (whether or not its file could be removed).
    fn forget(id: &str) {
        held().remove(id);
    }

    /// Removes stale locks (logged); returns the live locks that conflict with the wanted kind.
    async fn conflicts(&self, exclusive: bool, own: Option<&str>) -> Result<Vec<LockInfo>> {
        let now = Timestamp::now();
        let mut live = vec![];
        for l in self.list().await? {
            if Some(l.id.as_str()) == own {
                continue;
            }
            let Some(info) = l.info else {
                tracing::warn!(repo = %self.repo, lock = %l.id, "ignoring a lock file that cannot be decrypted");
                continue;
            };
            let left_by_us = info.hostname == hostname()
                && info.pid == i64::from(std::process::id())
                && !held().contains(&l.id);
            let stale = match left_by_us {
                true => Some(
                    "left by this process after the operation that took it ended (removing it \
                     failed then, e.g. the storage was unreachable)"
                        .to_string(),
                ),
                false => info.stale_reason(now),
            };
            if let Some(reason) = stale {
                tracing::warn!(repo = %self.repo, lock = %l.id, holder = %info.describe(), %reason, "removing stale lock");
                self.remove(&l.id).await?;
                continue;
            }
            if exclusive || info.exclusive {
                live.push(info);
            }
        }
        Ok(live)
    }

    /// Takes a lock, waiting up to `wait` for conflicting live locks to go away.
    pub(crate) async fn acquire(&self, exclusive: bool, wait: Duration) -> Result<RepoLock> {
        let start = std::time::Instant::now();
        loop {
            let conflicts = self.conflicts(exclusive, None).await?;
            if conflicts.is_empty() {
                let id = self.write(&LockInfo::mine(exclusive)).await?;
                // Someone may have locked concurrently: re-check, back off if so.
                let again = self.conflicts(exclusive, Some(&id)).await?;
                if again.is_empty() {
                    return Ok(RepoLock::start(self.clone(), id, exclusive));
                }
                Locks::forget(&id);
                self.remove(&id).await?;
            }
            if start.elapsed() >= wait {
                let holder = self
                    .conflicts(exclusive, None)
                    .await?
                    .iter()
                    .map(LockInfo::describe)
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(Error::Locked {
                    repo: self.repo.clone(),
                    waited: wait,
                    holder: if holder.is_empty() {
                        "lock contention".into()
                    } else {
                        holder
                    },
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// A held lock: refreshed in the background, removed by [`RepoLock::release`] (or, best
/// effort, on drop).
#[derive(Debug)]
pub struct RepoLock {
    locks: Locks,
    id: Arc<Mutex<String>>,
    refresher: Option<tokio::task::JoinHandle<()>>,
    released: bool,
}

impl RepoLock {
    fn start(locks: Locks, id: String, exclusive: bool) -> Self {
        let id = Arc::new(Mutex::new(id));
        let (l2, id2) = (locks.clone(), id.clone());
        let task = async move {
            loop {
                tokio::time::sleep(REFRESH_EVERY).await;
                if let Ok(new) = l2.write(&LockInfo::mine(exclusive)).await {
                    let old = std::mem::replace(&mut *id2.lock().unwrap(), new);
                    Locks::forget(&old);
                    let _ = l2.remove(&old).await;
                }
            }
        };
        let refresher = tokio::runtime::Handle::try_current()
            .map(|h| h.spawn(task))
            .ok();
        RepoLock {
            locks,
            id,
            refresher,
            released: false,
        }
    }

    /// Removes the lock file.
    pub async fn release(mut self) -> Result<()> {
        self.released = true;
        if let Some(t) = self.refresher.take() {
            t.abort();
        }
        let id = self.id.lock().unwrap().clone();
        Locks::forget(&id);
        self.locks.remove(&id).await
    }
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        if let Some(t) = self.refresher.take() {
            t.abort();
        }
        let (locks, id) = (self.locks.clone(), self.id.lock().unwrap().clone());
        Locks::forget(&id);
        // Best effort, retried for about half a minute (the storage may be briefly down: the
        // reason the operation failed). A file left behind is removed by this process's next
        // lock on the repository, or by anyone once it is stale.
        let _ = std::thread::spawn(move || {
            for pause in [0u64, 1, 2, 4, 8, 16] {
                std::thread::sleep(Duration::from_secs(pause));
                if futures::executor::block_on(locks.remove(&id)).is_ok() {
                    return;
                }
            }
            tracing::warn!(repo = %locks.repo, lock = %id, "could not remove a lock after its operation ended; it is removed by the next lock taken here");
        });
    }
}

/// IDs of the lock files this process holds now (across every repository).
fn held() -> std::sync::MutexGuard<'static, std::collections::HashSet<String>> {
    static HELD: std::sync::LazyLock<Mutex<std::collections::HashSet<String>>> =
        std::sync::LazyLock::new(Default::default);
    HELD.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crypto() -> Crypto {
        Crypto { key: [7u8; 64] }
    }

    #[test]
    fn encrypt_decrypt_roundtrip_and_tamper_detection() {
        let c = crypto();
        let data = c.encrypt(br#"{"time":"2026-11-27T00:00:00Z"}"#);
        assert_eq!(data.len(), 16 + 31 + 16, "nonce + plaintext + MAC");
        assert_eq!(
            c.decrypt(&data).unwrap(),
            br#"{"time":"2026-11-27T00:00:00Z"}"#
        );
        let mut bad = data.clone();
        bad[20] ^= 1;
        assert!(c.decrypt(&bad).is_none());
    }

    #[test]
    fn decrypts_restic_v2_compressed_unpacked_files() {
        let c = crypto();
        let mut plain = vec![2u8];
        plain.extend(zstd::encode_all(&br#"{"exclusive":true}"#[..], 3).unwrap());
        assert_eq!(
            c.decrypt(&c.encrypt(&plain)).unwrap(),
            br#"{"exclusive":true}"#
        );
    }

    #[test]
    fn staleness_follows_restic_rules() {
        let now = Timestamp::now();
        let mut l = LockInfo::mine(false);
        assert_eq!(l.stale_reason(now), None, "own live process, fresh");
        l.time = now - jiff::SignedDuration::from_secs(31 * 60);
        assert!(l.stale_reason(now).unwrap().contains("older than 30 min"));
        let mut dead = LockInfo::mine(true);
        dead.pid = i64::from(u32::MAX);
        assert!(dead.stale_reason(now).unwrap().contains("no longer exists"));
        let mut other_host = dead.clone();
        other_host.hostname = "some-other-host".into();
        assert_eq!(
            other_host.stale_reason(now),
            None,
            "remote pids are not checked"
        );
    }

    #[test]
    fn parses_restic_lock_json() {
        let j = r#"{"time":"2026-11-27T01:02:03.123456789+01:00","exclusive":false,"hostname":"h","username":"root","pid":42,"uid":0,"gid":0}"#;
        let l: LockInfo = serde_json::from_str(j).unwrap();
        assert_eq!(l.pid, 42);
        assert!(!l.exclusive);
        assert!(l.describe().starts_with("shared lock by root@h pid 42"));
    }
}
