//! The runtime's stream traits onto the repository layer, with nothing staged on disk.
//!
//! - [`RepoOutput`]: each output stream `<name>` becomes the file `<dir>/<name>` of one restic
//!   snapshot per repository of the session (the same bytes are written to every repository;
//!   `dir` is the task's `interimDataDir`, `/kubestash-interim/data` by default, so the restic
//!   snapshot has the paths KubeStash's plugin produces and restic/multielasticdump can restore
//!   it as they would KubeStash's).
//! - [`SnapshotInput`]: the files under `<dir>/` of a restic snapshot become the input streams
//!   of a restore task, named relative to `dir`.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use kstash_repo::{Backup, FileReader, FileWriter, SnapshotReader};
use kstash_runtime::{async_trait, InputSource, OutputSink, StreamReader, StreamWriter};

use super::progress::Progress;

fn io_err(e: kstash_repo::Error) -> io::Error {
    io::Error::other(e.to_string())
}

/// Output streams → files of the backups in progress (one per repository).
pub struct RepoOutput {
    backups: Vec<Arc<Backup>>,
    dir: String,
    progress: Arc<Progress>,
}

impl RepoOutput {
    /// Streams go to `<dir>/<name>` in every backup of `backups`.
    pub fn new(backups: Vec<Arc<Backup>>, dir: &str, progress: Arc<Progress>) -> Self {
        RepoOutput {
            backups,
            dir: normalize_dir(dir),
            progress,
        }
    }
}

/// `/a/b/` → `/a/b`; empty → `` (files at the root).
pub fn normalize_dir(dir: &str) -> String {
    let d = dir.trim_end_matches('/');
    if d.is_empty() {
        String::new()
    } else if d.starts_with('/') {
        d.to_string()
    } else {
        format!("/{d}")
    }
}

#[async_trait]
impl OutputSink for RepoOutput {
    async fn open(&self, name: &str) -> io::Result<Box<dyn StreamWriter>> {
        kstash_runtime::validate_stream_name(name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let path = format!("{}/{name}", self.dir);
        let mut writers = Vec::with_capacity(self.backups.len());
        for b in &self.backups {
            writers.push(b.create_file(&path).await.map_err(io_err)?);
        }
        Ok(Box::new(TeeWriter {
            writers,
            written: 0,
            progress: self.progress.clone(),
        }))
    }
}

struct TeeWriter {
    writers: Vec<FileWriter>,
    written: u64,
    progress: Arc<Progress>,
}

#[async_trait]
impl StreamWriter for TeeWriter {
    async fn write(&mut self, data: Bytes) -> io::Result<()> {
        let n = data.len() as u64;
        for w in &mut self.writers {
            w.write_bytes(data.clone()).await.map_err(io_err)?;
        }
        self.written += n;
        self.progress.add_bytes(n);
        Ok(())
    }

    async fn finish(self: Box<Self>) -> io::Result<u64> {
        for w in self.writers {
            w.finish().await.map_err(io_err)?;
        }
        Ok(self.written)
    }
}

/// A restic snapshot's files under `dir` → the input streams of a restore task.
pub struct SnapshotInput {
    reader: SnapshotReader,
    dir: String,
    progress: Arc<Progress>,
}

impl SnapshotInput {
    /// Streams are the files under `dir` of `reader`'s snapshot.
    pub fn new(reader: SnapshotReader, dir: &str, progress: Arc<Progress>) -> Self {
        SnapshotInput {
            reader,
            dir: normalize_dir(dir),
            progress,
        }
    }
}

#[async_trait]
impl InputSource for SnapshotInput {
    async fn names(&self) -> io::Result<Vec<String>> {
        let prefix = format!("{}/", self.dir);
        let mut names: Vec<String> = self
            .reader
            .files()
            .await
            .map_err(io_err)?
            .into_iter()
            .filter_map(|f| f.path.strip_prefix(&prefix).map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }

    async fn open(&self, name: &str) -> io::Result<Box<dyn StreamReader>> {
        kstash_runtime::validate_stream_name(name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let r = self
            .reader
            .open(&format!("{}/{name}", self.dir))
            .await
            .map_err(io_err)?;
        Ok(Box::new(BlockReader {
            inner: r,
            pending: Bytes::new(),
            progress: self.progress.clone(),
        }))
    }
}

struct BlockReader {
    inner: FileReader,
    pending: Bytes,
    progress: Arc<Progress>,
}

#[async_trait]
impl StreamReader for BlockReader {
    async fn read(&mut self, max: usize) -> io::Result<Bytes> {
        if self.pending.is_empty() {
            match self.inner.next_block().await? {
                Some(b) => self.pending = b,
                None => return Ok(Bytes::new()),
            }
        }
        let n = max.max(1).min(self.pending.len());
        let out = self.pending.split_to(n);
        self.progress.add_bytes(out.len() as u64);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dirs() {
        assert_eq!(
            super::normalize_dir("/kubestash-interim/data/"),
            "/kubestash-interim/data"
        );
        assert_eq!(super::normalize_dir("data"), "/data");
        assert_eq!(super::normalize_dir("/"), "");
    }
}
