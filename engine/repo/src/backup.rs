//! Streaming backup: any number of named streams, written concurrently, into one restic
//! snapshot, with bounded memory and no temporary files.
//!
//! Design: one write pipeline per backup ([`crate::packer`]), shared by all its streams.
//! Every stream has a thread that chunks what arrives (content-defined, the repository's
//! polynomial, [`crate::chunker`]), hashes each chunk and deduplicates it against the index
//! and against the other streams; new chunks go to the shared worker pool, which compresses,
//! encrypts and packs them, and packs are uploaded concurrently. At commit kstash writes the
//! trees itself ([`crate::tree`]: every file node has its real size and content list), the
//! index files and the snapshot.
//!
//! A backup holds restic's shared lock from `begin_backup` to `commit`/drop.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustic_core::repofile::{Chunker as ChunkerKind, IndexFile, SnapshotFile, SnapshotSummary};
use rustic_core::{Id, SnapshotOptions};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::chunker::{ChunkRule, Chunker};
use crate::error::{Error, Result};
use crate::io::run_blocking;
use crate::locks::{Crypto, RepoLock};
use crate::packer::{stage_times, Job, Kind, Packer, RepoParams, StageTimes};
use crate::restic::{size_of, ResticRepo};
use crate::tree::FileRecord;

/// Largest block queued to a stream's chunker at once.
const BLOCK: usize = 1 << 20;
/// Blocks queued per stream before `write` waits (back-pressure).
const QUEUE: usize = 4;

/// zstd level for restic's `auto` compression. restic 0.14's `auto` is the Go encoder's
/// `SpeedDefault`; with the C library, level 1 compresses Elasticsearch NDJSON dumps both
/// faster and smaller than the default level 3 (64 MiB of the bench's NDJSON: level 1 0.23 s
/// user, 13.9 MB; level 3 0.54 s, 14.7 MB), so kstash uses 1. A level set in the repository
/// config is used as is.
const AUTO_ZSTD_LEVEL: i32 = 1;

/// Options of one backup (one restic snapshot).
#[derive(Clone, Debug, Default)]
pub struct BackupOptions {
    /// Host name recorded in the snapshot (default: this host).
    pub hostname: Option<String>,
    /// Tags recorded in the snapshot.
    pub tags: Vec<String>,
}

/// What a committed backup reports (what the Snapshot status needs).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BackupSummary {
    /// restic snapshot id (64 hex).
    pub snapshot_id: String,
    /// Number of files in the snapshot.
    pub files: u64,
    /// Bytes read from the streams.
    pub bytes_processed: u64,
    /// Bytes uploaded for new data and trees (compressed + encrypted).
    pub bytes_added: u64,
    /// Bytes of new data before compression (restic 0.14's `data_added`).
    pub bytes_added_raw: u64,
    /// Repository size after the backup (like `restic stats --mode raw-data`).
    pub repository_size: u64,
    /// Wall time from `begin_backup` to the end of `commit`.
    pub duration: Duration,
}

enum Slot {
    Open,
    Done(FileRecord),
    Failed(String),
}

struct Inner {
    restic: ResticRepo,
    packer: Arc<Packer>,
    rule: ChunkRule,
    opts: BackupOptions,
    time: jiff::Zoned,
    streams: Mutex<BTreeMap<String, Slot>>,
    lock: tokio::sync::Mutex<Option<RepoLock>>,
    start: Instant,
}

/// A backup in progress. Create files with [`Backup::create_file`], then [`Backup::commit`].
/// Dropping it without commit releases the lock and saves no snapshot.
pub struct Backup {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Backup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backup")
            .field("repository", &self.inner.restic.location)
            .finish()
    }
}

/// Validates an absolute snapshot path (`/a/b.json`).
fn check_file_path(path: &str) -> Result<String> {
    let bad = |reason: &str| Error::InvalidArgument {
        param: "path",
        reason: format!("`{path}` {reason}"),
    };
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| bad("must be absolute (start with `/`)"))?;
    if rest.is_empty()
        || rest
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(bad("must be a normalised path of non-empty segments"));
    }
    Ok(path.to_string())
}

fn snapshot_template(opts: &BackupOptions, time: &jiff::Zoned) -> Result<SnapshotFile> {
    let mut so = SnapshotOptions::default().time(time.clone());
    if let Some(h) = &opts.hostname {
        so = so.host(h.clone());
    }
    for t in &opts.tags {
        so = so.add_tags(t).map_err(|e| Error::InvalidArgument {
            param: "tags",
            reason: e.to_string(),
        })?;
    }
    so.to_snapshot().map_err(|e| Error::InvalidArgument {
        param: "backup options",
        reason: e.to_string(),
    })
}

/// Reads what the pipeline needs from an open repository: config, key, known blob ids.
fn repo_params(me: &ResticRepo) -> Result<(ChunkRule, RepoParams)> {
    let repo = me.open_sync()?;
    let cfg = repo.config();
    let rule = match cfg.chunker() {
        ChunkerKind::Rabin => ChunkRule::Rabin {
            poly: cfg.poly().map_err(|e| me.err("read config", e))?,
            avg: cfg.chunk_size(),
            min: cfg.chunk_min_size(),
            max: cfg.chunk_max_size(),
        },
        ChunkerKind::FixedSize => ChunkRule::Fixed(cfg.chunk_size()),
    };
    if let ChunkRule::Rabin { avg, min, max, .. } = rule {
        if !avg.is_power_of_two() || min > avg || max < avg || min < 64 {
            return Err(me.err(
                "read config",
                format!("unsupported chunk sizes avg {avg}, min {min}, max {max}"),
            ));
        }
    }
    let level = match cfg.zstd().map_err(|e| me.err("read config", e))? {
        // No level in the config: restic's `--compression auto`.
        Some(0) if cfg.compression.is_none() => Some(AUTO_ZSTD_LEVEL),
        other => other,
    };
    let version = cfg.version;
    let crypto = Crypto::from_master(&repo.key());
    let mut known = HashSet::new();
    for item in repo
        .stream_files::<IndexFile>()
        .map_err(|e| me.err("read index", e))?
    {
        let (_, idx) = item.map_err(|e| me.err("read index", e))?;
        for p in idx.packs {
            known.extend(p.blobs.iter().map(|b| *b.id));
        }
    }
    Ok((
        rule,
        RepoParams {
            crypto,
            level,
            version,
            known,
        },
    ))
}

impl ResticRepo {
    /// Starts a backup: creates the repository if needed, takes restic's shared lock (stale
    /// locks are removed; a live exclusive lock is waited for up to the lock wait) and loads
    /// the index for deduplication.
    pub async fn begin_backup(&self, opts: BackupOptions) -> Result<Backup> {
        let start = Instant::now();
        self.open_or_init().await?;
        let lock = self.lock(false).await?;
        let (rule, params) = match self.blocking(|me| repo_params(&me)).await {
            Ok(r) => r,
            Err(e) => {
                lock.release().await?;
                return Err(e);
            }
        };
        let packer = Packer::start(
            self.storage.operator().clone(),
            self.backend.clone(),
            &self.location,
            params,
        );
        Ok(Backup {
            inner: Arc::new(Inner {
                restic: self.clone(),
                packer: Arc::new(packer),
                rule,
                opts,
                time: jiff::Zoned::now(),
                streams: Mutex::new(BTreeMap::new()),
                lock: tokio::sync::Mutex::new(Some(lock)),
                start,
            }),
        })
    }
}

/// What a stream thread has seen so far.
struct StreamState<'a> {
    packer: &'a Packer,
    tx: &'a SyncSender<Job>,
    content: Vec<Id>,
    failed: Option<String>,
}

impl StreamState<'_> {
    /// Hashes a chunk, records it in the file's content and hands it to the pool if new.
    fn emit(&mut self, plain: Vec<u8>) {
        if self.failed.is_some() {
            return;
        }
        let times = stage_times();
        let t = Instant::now();
        let id = Id::new(Sha256::digest(&plain).into());
        StageTimes::add(&times.hash_ns, t);
        self.content.push(id);
        if self.packer.claim(&id) {
            let t = Instant::now();
            let job = Job {
                kind: Kind::Data,
                id,
                plain,
            };
            if self.tx.send(job).is_err() {
                self.failed = Some("the pack workers stopped".into());
            }
            StageTimes::add(&times.queue_wait_ns, t);
        }
    }
}

/// The chunking thread of one stream: chunk, hash, deduplicate, hand new chunks to the pool.
fn stream_thread(
    mut rx: mpsc::Receiver<Bytes>,
    rule: ChunkRule,
    packer: Arc<Packer>,
    tx: SyncSender<Job>,
) -> std::result::Result<FileRecord, String> {
    let mut chunker = Chunker::new(rule, packer.chunk_pool());
    let mut st = StreamState {
        packer: &packer,
        tx: &tx,
        content: vec![],
        failed: None,
    };
    let mut size = 0u64;
    while let Some(block) = rx.blocking_recv() {
        let t = Instant::now();
        chunker.feed(&block, &mut |c| st.emit(c));
        StageTimes::add(&stage_times().chunk_ns, t);
        size += block.len() as u64;
        if let Some(e) = st.failed.take().or_else(|| packer.failure()) {
            return Err(e);
        }
    }
    chunker.finish(&mut |c| st.emit(c));
    if let Some(e) = st.failed.take().or_else(|| packer.failure()) {
        return Err(e);
    }
    Ok(FileRecord {
        size,
        content: st.content,
    })
}

impl Backup {
    /// Starts a file of the snapshot at absolute `path`. Its content is chunked, packed and
    /// uploaded while it is written, concurrently with other files.
    pub async fn create_file(&self, path: &str) -> Result<FileWriter> {
        let path = check_file_path(path)?;
        let Some(jobs) = self.inner.packer.sender() else {
            return Err(Error::InvalidArgument {
                param: "path",
                reason: format!("`{path}`: the backup is already committing"),
            });
        };
        {
            let mut streams = self.inner.streams.lock().unwrap();
            if streams.contains_key(&path) {
                return Err(Error::InvalidArgument {
                    param: "path",
                    reason: format!("`{path}` was already created in this backup"),
                });
            }
            streams.insert(path.clone(), Slot::Open);
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let (rule, packer) = (self.inner.rule.clone(), self.inner.packer.clone());
        let task = tokio::spawn(run_blocking(move || stream_thread(rx, rule, packer, jobs)));
        Ok(FileWriter {
            inner: self.inner.clone(),
            path,
            tx: Some(tx),
            task: Some(task),
            written: 0,
        })
    }

    /// Finishes the backup: every created file must have been finished. Writes the trees, the
    /// index and the snapshot, releases the lock and reports.
    pub async fn commit(self) -> Result<BackupSummary> {
        let res = self.commit_inner().await;
        let released = match self.inner.lock.lock().await.take() {
            Some(lock) => lock.release().await,
            None => Ok(()),
        };
        // The backup's own failure is the one worth reporting.
        let summary = res?;
        released.map(|_| summary)
    }

    async fn commit_inner(&self) -> Result<BackupSummary> {
        let files: BTreeMap<String, FileRecord> = {
            let streams = self.inner.streams.lock().unwrap();
            if streams.is_empty() {
                return Err(Error::InvalidArgument {
                    param: "backup",
                    reason: "no file was created; a snapshot needs at least one".into(),
                });
            }
            let mut v = BTreeMap::new();
            for (path, slot) in streams.iter() {
                match slot {
                    Slot::Done(r) => {
                        v.insert(path.clone(), r.clone());
                    }
                    Slot::Open => {
                        return Err(Error::Stream {
                            path: path.clone(),
                            reason: "was not finished before commit".into(),
                        })
                    }
                    Slot::Failed(r) => {
                        return Err(Error::Stream {
                            path: path.clone(),
                            reason: r.clone(),
                        })
                    }
                }
            }
            v
        };
        let mut snap = snapshot_template(&self.inner.opts, &self.inner.time)?;
        let packer = self.inner.packer.clone();
        let mtime = self.inner.time.timestamp();
        let start = self.inner.start;
        let backup_start = self.inner.time.clone();
        let (id, size, summary) = self
            .inner
            .restic
            .blocking(move |me| {
                packer.drain()?;
                let root = crate::tree::store(&files, mtime, &packer)?;
                packer.flush()?;
                let st = packer.stats();
                let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
                let mut s = SnapshotSummary::default();
                s.files_new = files.len() as u64;
                s.total_files_processed = files.len() as u64;
                s.total_bytes_processed = files.values().map(|f| f.size).sum();
                s.data_blobs = get(&st.data_blobs);
                s.tree_blobs = get(&st.tree_blobs);
                s.data_added = get(&st.data_added) + get(&st.tree_added);
                s.data_added_packed = get(&st.data_added_packed) + get(&st.tree_added_packed);
                s.data_added_files = get(&st.data_added);
                s.data_added_files_packed = get(&st.data_added_packed);
                s.data_added_trees = get(&st.tree_added);
                s.data_added_trees_packed = get(&st.tree_added_packed);
                s.command = "kstash backup".into();
                let end = jiff::Zoned::now();
                let secs = start.elapsed().as_secs_f64();
                s.backup_start = backup_start;
                s.backup_end = end;
                s.backup_duration = secs;
                s.total_duration = secs;
                snap.tree = root;
                for p in files.keys() {
                    snap.paths.add(p.clone());
                }
                snap.summary = Some(s.clone());
                let json = serde_json::to_vec(&snap).map_err(|e| me.err("encode snapshot", e))?;
                let id = packer.write_unpacked(rustic_core::FileType::Snapshot, &json)?;
                let size = size_of(&me, &me.open_sync()?)?;
                Ok((id, size, s))
            })
            .await?;
        Ok(BackupSummary {
            snapshot_id: id.to_hex().to_string(),
            files: summary.total_files_processed,
            bytes_processed: summary.total_bytes_processed,
            bytes_added: summary.data_added_packed,
            bytes_added_raw: summary.data_added,
            repository_size: size,
            duration: start.elapsed(),
        })
    }
}

/// Writer of one file of a backup: async, back-pressured (bounded queue), `Send`.
/// Call [`FileWriter::finish`]; a writer dropped unfinished makes the commit fail.
pub struct FileWriter {
    inner: Arc<Inner>,
    path: String,
    tx: Option<mpsc::Sender<Bytes>>,
    task: Option<tokio::task::JoinHandle<Result<std::result::Result<FileRecord, String>>>>,
    written: u64,
}

impl std::fmt::Debug for FileWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWriter")
            .field("path", &self.path)
            .field("written", &self.written)
            .finish()
    }
}

impl FileWriter {
    /// Path of the file in the snapshot.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends bytes (copied in blocks of at most 1 MiB); waits when the pipeline is behind.
    pub async fn write(&mut self, data: &[u8]) -> Result<()> {
        for chunk in data.chunks(BLOCK) {
            self.write_bytes(Bytes::copy_from_slice(chunk)).await?;
        }
        Ok(())
    }

    /// Appends a block without copying.
    pub async fn write_bytes(&mut self, data: Bytes) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let len = data.len() as u64;
        let tx = self.tx.as_ref().ok_or_else(|| Error::Stream {
            path: self.path.clone(),
            reason: "already finished".into(),
        })?;
        if tx.send(data).await.is_err() {
            let reason = self.failure().await;
            return Err(self.fail(reason));
        }
        self.written += len;
        Ok(())
    }

    async fn failure(&mut self) -> String {
        self.tx = None;
        match self.task.take() {
            Some(t) => match t.await {
                Ok(Ok(Err(e))) => e,
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
                Ok(Ok(Ok(_))) => "the chunker stopped reading".into(),
            },
            None => "the chunker stopped".into(),
        }
    }

    fn fail(&self, reason: String) -> Error {
        self.inner
            .streams
            .lock()
            .unwrap()
            .insert(self.path.clone(), Slot::Failed(reason.clone()));
        Error::Stream {
            path: self.path.clone(),
            reason,
        }
    }

    /// Ends the file and waits until all of it is chunked and handed to the pack pipeline
    /// (stored for good at commit). Returns the bytes written.
    pub async fn finish(mut self) -> Result<u64> {
        let Some(tx) = self.tx.take() else {
            return Err(self.fail("already finished".into()));
        };
        drop(tx);
        let res = match self.task.take() {
            Some(t) => t.await,
            None => return Err(self.fail("chunker missing".into())),
        };
        let rec = match res {
            Ok(Ok(Ok(r))) => r,
            Ok(Ok(Err(e))) => return Err(self.fail(e)),
            Ok(Err(e)) => return Err(self.fail(e.to_string())),
            Err(e) => return Err(self.fail(e.to_string())),
        };
        if rec.size != self.written {
            let reason = format!(
                "the chunker stored {} bytes, but {} bytes were written",
                rec.size, self.written
            );
            return Err(self.fail(reason));
        }
        self.inner
            .streams
            .lock()
            .unwrap()
            .insert(self.path.clone(), Slot::Done(rec));
        Ok(self.written)
    }
}
