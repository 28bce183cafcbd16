//! Streaming backup: any number of named streams, written concurrently, into one restic
//! snapshot, with bounded memory and no temporary files.
//!
//! Design (rustic_core 0.13 keeps its chunker/packer/indexer crate-private; its public write
//! path is `Repository::archive`, which iterates one `ReadSource` sequentially and silently
//! skips entries whose reader fails):
//!
//! * every stream gets its own `archive()` run on a blocking thread, fed by a bounded channel
//!   (8 × ≤1 MiB blocks): the stream is chunked (content-defined, restic polynomial),
//!   deduplicated against the index, compressed, encrypted and uploaded *while it arrives*,
//!   independently of the other streams, so producers never wait on each other;
//! * the per-stream snapshot files are not stored (the backend swallows snapshot writes of
//!   this session), only their trees, packs and index files are;
//! * `commit()` checks every stream really went through (bytes counted by the writer equal the
//!   bytes processed by the archiver; a failed reader would otherwise be skipped), merges the
//!   per-stream trees into one tree (sorted node names, as restic requires) with
//!   `merge_snapshots`, and saves the single snapshot.
//!
//! A backup holds restic's shared lock from `begin_backup` to `commit`/drop.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustic_core::repofile::{Metadata, Node, NodeType, SnapshotFile};
use rustic_core::{
    IndexedIdsStatus, ParentOptions, ReadSource, ReadSourceEntry, ReadSourceOpen, Repository,
    RusticResult, SnapshotOptions,
};
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::io::run_blocking;
use crate::locks::RepoLock;
use crate::restic::{size_of, ResticRepo};

/// Largest block handed to the archiver at once.
const BLOCK: usize = 1 << 20;
/// Blocks queued per stream before `write` waits (back-pressure).
const QUEUE: usize = 8;

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

enum Msg {
    Data(Bytes),
    End,
}

struct ChannelReader {
    rx: mpsc::Receiver<Msg>,
    cur: Bytes,
    ended: bool,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if !self.cur.is_empty() {
                let n = self.cur.len().min(buf.len());
                buf[..n].copy_from_slice(&self.cur.split_to(n));
                return Ok(n);
            }
            if self.ended {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Msg::Data(b)) => self.cur = b,
                Some(Msg::End) => self.ended = true,
                None => {
                    return Err(std::io::Error::other(
                        "stream dropped before it was finished",
                    ))
                }
            }
        }
    }
}

struct OpenOnce(ChannelReader);

impl ReadSourceOpen for OpenOnce {
    type Reader = ChannelReader;
    fn open(self) -> RusticResult<Self::Reader> {
        Ok(self.0)
    }
}

/// A `ReadSource` with exactly one file whose content arrives over a channel.
struct ChannelSource {
    path: PathBuf,
    mtime: jiff::Timestamp,
    reader: Mutex<Option<ChannelReader>>,
}

impl ReadSource for ChannelSource {
    type Open = OpenOnce;
    type Iter = std::iter::Once<RusticResult<ReadSourceEntry<OpenOnce>>>;

    fn size(&self) -> RusticResult<Option<u64>> {
        Ok(None)
    }

    fn entries(&self) -> Self::Iter {
        let name = self.path.file_name().unwrap_or(OsStr::new("stream"));
        let meta = Metadata {
            mode: Some(0o100644),
            mtime: Some(self.mtime),
            ..Default::default()
        };
        let node = Node::new_node(name, NodeType::File, meta);
        let open = self.reader.lock().unwrap().take().map(OpenOnce);
        std::iter::once(Ok(ReadSourceEntry {
            path: self.path.clone(),
            node,
            open,
        }))
    }
}

enum Slot {
    Open,
    Done(Box<SnapshotFile>),
    Failed(String),
}

struct Inner {
    restic: ResticRepo,
    backend: crate::backend::OpendalBackend,
    repo: Arc<Repository<IndexedIdsStatus>>,
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

impl ResticRepo {
    /// Starts a backup: creates the repository if needed, takes restic's shared lock (stale
    /// locks are removed; a live exclusive lock is waited for up to the lock wait) and loads
    /// the index for deduplication.
    pub async fn begin_backup(&self, opts: BackupOptions) -> Result<Backup> {
        let start = Instant::now();
        self.open_or_init().await?;
        let lock = self.lock(false).await?;
        let backend = self.backend.swallowing();
        let be2 = backend.clone();
        let repo = match self
            .blocking(move |me| {
                me.open_with(be2)?
                    .to_indexed_ids()
                    .map_err(|e| me.err("read index", e))
            })
            .await
        {
            Ok(r) => r,
            Err(e) => {
                lock.release().await?;
                return Err(e);
            }
        };
        Ok(Backup {
            inner: Arc::new(Inner {
                restic: self.clone(),
                backend,
                repo: Arc::new(repo),
                opts,
                time: jiff::Zoned::now(),
                streams: Mutex::new(BTreeMap::new()),
                lock: tokio::sync::Mutex::new(Some(lock)),
                start,
            }),
        })
    }
}

impl Backup {
    /// Starts a file of the snapshot at absolute `path`. Its content is chunked, packed and
    /// uploaded while it is written, concurrently with other files.
    pub async fn create_file(&self, path: &str) -> Result<FileWriter> {
        let path = check_file_path(path)?;
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
        let src = ChannelSource {
            path: PathBuf::from(&path),
            mtime: self.inner.time.timestamp(),
            reader: Mutex::new(Some(ChannelReader {
                rx,
                cur: Bytes::new(),
                ended: false,
            })),
        };
        let snap = snapshot_template(&self.inner.opts, &self.inner.time)?;
        let repo = self.inner.repo.clone();
        let location = self.inner.restic.location.clone();
        let p2 = path.clone();
        let task = tokio::spawn(run_blocking(move || {
            let bopts = rustic_core::BackupOptions::default()
                .no_scan(true)
                .parent_opts(ParentOptions::default().force(true));
            repo.archive(&bopts, &src, snap, &[PathBuf::from(&p2)])
                .map_err(|e| Error::restic(&location, "backup", e))
        }));
        Ok(FileWriter {
            inner: self.inner.clone(),
            path,
            tx: Some(tx),
            task: Some(task),
            written: 0,
        })
    }

    /// Finishes the backup: every created file must have been finished. Merges the per-file
    /// trees into one snapshot, saves it, releases the lock and reports.
    pub async fn commit(self) -> Result<BackupSummary> {
        let res = self.commit_inner().await;
        if let Some(lock) = self.inner.lock.lock().await.take() {
            lock.release().await?;
        }
        res
    }

    async fn commit_inner(&self) -> Result<BackupSummary> {
        let partials: Vec<SnapshotFile> = {
            let streams = self.inner.streams.lock().unwrap();
            if streams.is_empty() {
                return Err(Error::InvalidArgument {
                    param: "backup",
                    reason: "no file was created; a snapshot needs at least one".into(),
                });
            }
            let mut v = vec![];
            for (path, slot) in streams.iter() {
                match slot {
                    Slot::Done(s) => v.push((**s).clone()),
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
        let mut summary = rustic_core::repofile::SnapshotSummary::default();
        for p in &partials {
            if let Some(s) = &p.summary {
                summary.files_new += s.files_new;
                summary.files_changed += s.files_changed;
                summary.files_unmodified += s.files_unmodified;
                summary.total_files_processed += s.total_files_processed;
                summary.total_bytes_processed += s.total_bytes_processed;
                summary.data_blobs += s.data_blobs;
                summary.data_added += s.data_added;
                summary.data_added_packed += s.data_added_packed;
                summary.data_added_files += s.data_added_files;
                summary.data_added_files_packed += s.data_added_files_packed;
                summary.data_added_trees += s.data_added_trees;
                summary.data_added_trees_packed += s.data_added_trees_packed;
                summary.tree_blobs += s.tree_blobs;
            }
        }
        let mut snap = snapshot_template(&self.inner.opts, &self.inner.time)?;
        snap.summary = Some(summary);
        let files = partials.len() as u64;
        let start = self.inner.start;
        let (saved, size) = self
            .inner
            .restic
            .blocking(move |me| {
                let repo = me
                    .open_sync()?
                    .to_indexed_ids()
                    .map_err(|e| me.err("read index", e))?;
                let saved = repo
                    .merge_snapshots(&partials, &|a, b| a.name.cmp(&b.name), snap)
                    .map_err(|e| me.err("save snapshot", e))?;
                let size = size_of(&me, &repo.drop_index())?;
                Ok((saved, size))
            })
            .await?;
        let s = saved.summary.clone().unwrap_or_default();
        Ok(BackupSummary {
            snapshot_id: saved.id.to_hex().to_string(),
            files,
            bytes_processed: s.total_bytes_processed,
            bytes_added: s.data_added_packed,
            bytes_added_raw: s.data_added,
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
    tx: Option<mpsc::Sender<Msg>>,
    task: Option<tokio::task::JoinHandle<Result<Result<SnapshotFile>>>>,
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

    /// Appends bytes (copied in blocks of at most 1 MiB); waits when the archiver is behind.
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
        if tx.send(Msg::Data(data)).await.is_err() {
            let reason = self.failure().await;
            return Err(self.fail(reason));
        }
        self.written += len;
        Ok(())
    }

    async fn failure(&mut self) -> String {
        self.tx = None;
        let reason = match self.task.take() {
            Some(t) => match t.await {
                Ok(Ok(Err(e))) => e.to_string(),
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
                Ok(Ok(Ok(_))) => "archiver stopped reading".into(),
            },
            None => "archiver stopped".into(),
        };
        match self.inner.backend.last_error() {
            Some(e) => format!("{reason}; storage error: {e}"),
            None => reason,
        }
    }

    fn with_storage_error(&self, reason: String) -> String {
        match self.inner.backend.last_error() {
            Some(e) => format!("{reason}; storage error: {e}"),
            None => reason,
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

    /// Ends the file and waits until all of it is stored. Returns the bytes written.
    pub async fn finish(mut self) -> Result<u64> {
        let Some(tx) = self.tx.take() else {
            return Err(self.fail("already finished".into()));
        };
        let _ = tx.send(Msg::End).await;
        drop(tx);
        let res = match self.task.take() {
            Some(t) => t.await,
            None => return Err(self.fail("archiver missing".into())),
        };
        let snap = match res {
            Ok(Ok(Ok(s))) => s,
            Ok(Ok(Err(e))) => return Err(self.fail(self.with_storage_error(e.to_string()))),
            Ok(Err(e)) => return Err(self.fail(e.to_string())),
            Err(e) => return Err(self.fail(e.to_string())),
        };
        let s = snap.summary.clone().unwrap_or_default();
        let files = s.files_new + s.files_changed + s.files_unmodified;
        if files != 1 || s.total_bytes_processed != self.written {
            let reason = self.with_storage_error(format!(
                "archiver stored {files} file(s) and {} bytes, but {} bytes were written",
                s.total_bytes_processed, self.written
            ));
            return Err(self.fail(reason));
        }
        self.inner
            .streams
            .lock()
            .unwrap()
            .insert(self.path.clone(), Slot::Done(Box::new(snap)));
        Ok(self.written)
    }
}
