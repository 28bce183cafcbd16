//! Streaming restore: the files of a snapshot as async readers.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use rustic_core::repofile::{Node, NodeType, SnapshotFile};
use rustic_core::{IndexedFullStatus, LsOptions, Repository};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::io::run_blocking;
use crate::restic::{ResticRepo, SnapshotInfo};

/// Size of the blocks read from the repository and queued ahead of the reader.
const BLOCK: usize = 1 << 20;
/// Blocks queued ahead of the reader (bounded memory: `QUEUE * BLOCK`).
const QUEUE: usize = 4;

/// A file of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FileEntry {
    /// Absolute path inside the snapshot (`/…`).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
}

/// An opened snapshot with its index loaded: list and stream its files.
#[derive(Clone)]
pub struct SnapshotReader {
    repo: Arc<Repository<IndexedFullStatus>>,
    snap: Arc<SnapshotFile>,
    info: SnapshotInfo,
    location: String,
}

impl std::fmt::Debug for SnapshotReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotReader")
            .field("location", &self.location)
            .field("snapshot", &self.info.id)
            .finish()
    }
}

impl ResticRepo {
    /// Opens a snapshot (`latest` allowed) for streaming restore.
    pub async fn open_snapshot(&self, id: &str) -> Result<SnapshotReader> {
        SnapshotReader::load(self, id).await
    }
}

impl SnapshotReader {
    async fn load(r: &ResticRepo, id: &str) -> Result<Self> {
        let id = id.to_string();
        r.blocking(move |me| {
            let repo = me.open_sync()?;
            let snap = repo
                .get_snapshot_from_str(&id, |_| true)
                .map_err(|e| Error::NotFound {
                    what: "snapshot",
                    name: format!("{id} in {}: {e}", me.location),
                })?;
            let repo = repo.to_indexed().map_err(|e| me.err("read index", e))?;
            Ok(SnapshotReader {
                info: SnapshotInfo::from_file(&snap),
                snap: Arc::new(snap),
                repo: Arc::new(repo),
                location: me.location.clone(),
            })
        })
        .await
    }

    /// The snapshot.
    pub fn snapshot(&self) -> &SnapshotInfo {
        &self.info
    }

    /// All regular files, sorted by path.
    pub async fn files(&self) -> Result<Vec<FileEntry>> {
        let me = self.clone();
        run_blocking(move || {
            let root = me
                .repo
                .node_from_snapshot_and_path(&me.snap, "")
                .map_err(|e| Error::restic(&me.location, "read tree", e))?;
            let mut out = vec![];
            for item in me
                .repo
                .ls(&root, &LsOptions::default())
                .map_err(|e| Error::restic(&me.location, "list files", e))?
            {
                let (path, node) =
                    item.map_err(|e| Error::restic(&me.location, "list files", e))?;
                if node.node_type == NodeType::File {
                    out.push(FileEntry {
                        path: format!("/{}", path.display()),
                        size: me.content_size(&node)?,
                    });
                }
            }
            out.sort_by(|a, b| a.path.cmp(&b.path));
            Ok(out)
        })
        .await?
    }

    /// File size; streams written by rustic_core's archiver carry size 0 in their node, so the
    /// size is taken from the content blobs then.
    fn content_size(&self, node: &Node) -> Result<u64> {
        if node.meta.size > 0 {
            return Ok(node.meta.size);
        }
        let mut n = 0u64;
        for id in node.content.iter().flatten() {
            let e = self
                .repo
                .get_index_entry(id)
                .map_err(|e| Error::restic(&self.location, "read index", e))?;
            n += u64::from(e.data_length());
        }
        Ok(n)
    }

    fn node(&self, path: &str) -> Result<Node> {
        let node = self
            .repo
            .node_from_path(self.snap.tree, Path::new(path.trim_start_matches('/')))
            .map_err(|_| Error::NotFound {
                what: "file",
                name: format!("{path} in snapshot {}", self.info.short_id),
            })?;
        if node.node_type != NodeType::File {
            return Err(Error::InvalidArgument {
                param: "path",
                reason: format!("{path} is not a regular file"),
            });
        }
        Ok(node)
    }

    /// Opens a file (absolute path `/…` or relative) as an async reader. Blocks are read
    /// ahead by a background thread with bounded memory.
    pub async fn open(&self, path: &str) -> Result<FileReader> {
        let me = self.clone();
        let p = path.to_string();
        let (size, open) = run_blocking(move || {
            let node = me.node(&p)?;
            let size = me.content_size(&node)?;
            let open = me
                .repo
                .open_file(&node)
                .map_err(|e| Error::restic(&me.location, "open file", e))?;
            Ok::<_, Error>((size, open))
        })
        .await??;
        let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(QUEUE);
        let (repo, location) = (self.repo.clone(), self.location.clone());
        std::thread::Builder::new()
            .name("kstash-restore".into())
            .spawn(move || {
                let mut off = 0u64;
                while off < size {
                    let len = BLOCK.min((size - off) as usize);
                    let r = repo
                        .read_file_at(&open, off as usize, len)
                        .map_err(|e| std::io::Error::other(format!("{location}: {e}")));
                    let failed = r.is_err();
                    if let Ok(b) = &r {
                        off += b.len() as u64;
                        if b.is_empty() {
                            let _ = tx.blocking_send(Err(std::io::Error::other(
                                "unexpected end of file content",
                            )));
                            return;
                        }
                    }
                    if tx.blocking_send(r).is_err() || failed {
                        return;
                    }
                }
            })
            .map_err(|e| Error::Task(e.to_string()))?;
        Ok(FileReader {
            rx,
            cur: Bytes::new(),
            size,
        })
    }
}

/// An async reader over one file of a snapshot.
#[derive(Debug)]
pub struct FileReader {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    cur: Bytes,
    size: u64,
}

impl FileReader {
    /// Size of the file in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Next block of content, `None` at the end.
    pub async fn next_block(&mut self) -> std::io::Result<Option<Bytes>> {
        if !self.cur.is_empty() {
            return Ok(Some(std::mem::take(&mut self.cur)));
        }
        self.rx.recv().await.transpose()
    }
}

impl AsyncRead for FileReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            if !self.cur.is_empty() {
                let n = self.cur.len().min(buf.remaining());
                let chunk = self.cur.split_to(n);
                buf.put_slice(&chunk);
                return Poll::Ready(Ok(()));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(b))) => self.cur = b,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
