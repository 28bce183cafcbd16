//! The host ends of the named streams: traits the engine implements (the repository layer writes
//! each stream into a snapshot as it arrives), plus a directory writer/reader, an in-memory
//! collector and a discarding sink.
//!
//! All methods are async so an implementation can apply back-pressure: the guest's `write` call
//! blocks until the returned future completes. Several streams of one task may be open at once.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where a backup task's output streams go.
#[async_trait]
pub trait OutputSink: Send + Sync {
    /// Opens stream `name` (already validated by [`validate_stream_name`], opened once per task).
    async fn open(&self, name: &str) -> io::Result<Box<dyn StreamWriter>>;
}

/// One open output stream. Dropping it without [`StreamWriter::finish`] aborts the stream: the
/// implementation must discard what it received.
#[async_trait]
pub trait StreamWriter: Send {
    /// Appends `data` (at most 1 MiB per call). Completing late is back-pressure.
    async fn write(&mut self, data: Bytes) -> io::Result<()>;
    /// Seals the stream; returns the total bytes received.
    async fn finish(self: Box<Self>) -> io::Result<u64>;
}

/// Where a restore task's input streams come from.
#[async_trait]
pub trait InputSource: Send + Sync {
    /// Every stream name, sorted.
    async fn names(&self) -> io::Result<Vec<String>>;
    /// Opens stream `name`.
    async fn open(&self, name: &str) -> io::Result<Box<dyn StreamReader>>;
}

/// One open input stream.
#[async_trait]
pub trait StreamReader: Send {
    /// Reads up to `max` bytes; empty means end of stream.
    async fn read(&mut self, max: usize) -> io::Result<Bytes>;
}

/// Checks a stream name: `/`-separated segments of `[A-Za-z0-9._-]`, none empty, `.` or `..`,
/// at most 512 bytes. Names map to relative file paths, so this keeps them inside a directory.
pub fn validate_stream_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 512 {
        return Err(format!("stream name {name:?} must be 1 to 512 bytes"));
    }
    for seg in name.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(format!(
                "stream name {name:?}: empty, `.` or `..` path segment"
            ));
        }
        if let Some(c) = seg
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(format!(
                "stream name {name:?}: character {c:?} not allowed (use A-Z a-z 0-9 . _ - /)"
            ));
        }
    }
    Ok(())
}

/// Writes each stream to a file `<dir>/<name>` (through `<name>.partial`, renamed on finish).
#[derive(Debug, Clone)]
pub struct DirOutput {
    dir: PathBuf,
}

impl DirOutput {
    /// Streams go under `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
}

#[async_trait]
impl OutputSink for DirOutput {
    async fn open(&self, name: &str) -> io::Result<Box<dyn StreamWriter>> {
        validate_stream_name(name).map_err(io::Error::other)?;
        let path = self.dir.join(name);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let partial = PathBuf::from(format!("{}.partial", path.display()));
        let file = tokio::fs::File::create(&partial).await?;
        Ok(Box::new(DirWriter {
            file: Some(tokio::io::BufWriter::with_capacity(256 * 1024, file)),
            partial,
            path,
            bytes: 0,
        }))
    }
}

struct DirWriter {
    file: Option<tokio::io::BufWriter<tokio::fs::File>>,
    partial: PathBuf,
    path: PathBuf,
    bytes: u64,
}

#[async_trait]
impl StreamWriter for DirWriter {
    async fn write(&mut self, data: Bytes) -> io::Result<()> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("finished"))?;
        file.write_all(&data).await?;
        self.bytes += data.len() as u64;
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> io::Result<u64> {
        let mut file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("finished"))?;
        file.flush().await?;
        file.into_inner().sync_all().await?;
        tokio::fs::rename(&self.partial, &self.path).await?;
        Ok(self.bytes)
    }
}

impl Drop for DirWriter {
    fn drop(&mut self) {
        if self.file.is_some() {
            // Aborted: never leave a half stream that looks complete.
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

/// Reads streams from the files under a directory (names are relative paths with `/`).
#[derive(Debug, Clone)]
pub struct DirInput {
    dir: PathBuf,
}

impl DirInput {
    /// Streams are the regular files under `dir`, recursively.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let ty = entry.file_type()?;
        let path = entry.path();
        if ty.is_dir() {
            walk(root, &path, out)?;
        } else if ty.is_file() {
            let rel = path.strip_prefix(root).map_err(io::Error::other)?;
            let name = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            if !name.ends_with(".partial") {
                out.push(name);
            }
        }
    }
    Ok(())
}

#[async_trait]
impl InputSource for DirInput {
    async fn names(&self) -> io::Result<Vec<String>> {
        let dir = self.dir.clone();
        let mut names = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            walk(&dir, &dir, &mut out).map(|()| out)
        })
        .await
        .map_err(io::Error::other)??;
        names.sort();
        Ok(names)
    }

    async fn open(&self, name: &str) -> io::Result<Box<dyn StreamReader>> {
        validate_stream_name(name).map_err(io::Error::other)?;
        let file = tokio::fs::File::open(self.dir.join(name)).await?;
        Ok(Box::new(FileReader { file }))
    }
}

struct FileReader {
    file: tokio::fs::File,
}

#[async_trait]
impl StreamReader for FileReader {
    async fn read(&mut self, max: usize) -> io::Result<Bytes> {
        let mut buf = vec![0u8; max];
        let n = self.file.read(&mut buf).await?;
        buf.truncate(n);
        Ok(Bytes::from(buf))
    }
}

/// Accepts every stream and discards the bytes, counting them (benchmarks, dry runs).
#[derive(Debug, Clone, Default)]
pub struct DiscardOutput {
    total: Arc<std::sync::atomic::AtomicU64>,
}

impl DiscardOutput {
    /// A new sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes received by finished and unfinished streams so far.
    pub fn total_bytes(&self) -> u64 {
        self.total.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[async_trait]
impl OutputSink for DiscardOutput {
    async fn open(&self, _name: &str) -> io::Result<Box<dyn StreamWriter>> {
        Ok(Box::new(DiscardWriter {
            total: self.total.clone(),
            bytes: 0,
        }))
    }
}

struct DiscardWriter {
    total: Arc<std::sync::atomic::AtomicU64>,
    bytes: u64,
}

#[async_trait]
impl StreamWriter for DiscardWriter {
    async fn write(&mut self, data: Bytes) -> io::Result<()> {
        self.bytes += data.len() as u64;
        self.total
            .fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    async fn finish(self: Box<Self>) -> io::Result<u64> {
        Ok(self.bytes)
    }
}

/// Keeps finished streams in memory (tests, small tasks). Also an [`InputSource`].
#[derive(Debug, Clone, Default)]
pub struct MemoryStreams {
    streams: Arc<Mutex<BTreeMap<String, Bytes>>>,
}

impl MemoryStreams {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a stream.
    pub fn insert(&self, name: &str, data: impl Into<Bytes>) {
        self.streams
            .lock()
            .expect("memory streams lock")
            .insert(name.to_string(), data.into());
    }

    /// A finished stream's bytes.
    pub fn get(&self, name: &str) -> Option<Bytes> {
        self.streams
            .lock()
            .expect("memory streams lock")
            .get(name)
            .cloned()
    }

    /// Names of the finished streams, sorted.
    pub fn stream_names(&self) -> Vec<String> {
        self.streams
            .lock()
            .expect("memory streams lock")
            .keys()
            .cloned()
            .collect()
    }
}

#[async_trait]
impl OutputSink for MemoryStreams {
    async fn open(&self, name: &str) -> io::Result<Box<dyn StreamWriter>> {
        Ok(Box::new(MemoryWriter {
            name: name.to_string(),
            buf: Vec::new(),
            into: self.clone(),
        }))
    }
}

struct MemoryWriter {
    name: String,
    buf: Vec<u8>,
    into: MemoryStreams,
}

#[async_trait]
impl StreamWriter for MemoryWriter {
    async fn write(&mut self, data: Bytes) -> io::Result<()> {
        self.buf.extend_from_slice(&data);
        Ok(())
    }

    async fn finish(self: Box<Self>) -> io::Result<u64> {
        let n = self.buf.len() as u64;
        self.into.insert(&self.name, self.buf);
        Ok(n)
    }
}

#[async_trait]
impl InputSource for MemoryStreams {
    async fn names(&self) -> io::Result<Vec<String>> {
        Ok(self.stream_names())
    }

    async fn open(&self, name: &str) -> io::Result<Box<dyn StreamReader>> {
        let data = self.get(name).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("no stream {name:?}"))
        })?;
        Ok(Box::new(MemoryReader { data }))
    }
}

struct MemoryReader {
    data: Bytes,
}

#[async_trait]
impl StreamReader for MemoryReader {
    async fn read(&mut self, max: usize) -> io::Result<Bytes> {
        let n = max.min(self.data.len());
        Ok(self.data.split_to(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_stay_inside_the_directory() {
        assert!(validate_stream_name("indices/logs/data.ndjson").is_ok());
        assert!(validate_stream_name("dump").is_ok());
        for bad in ["", "../etc/passwd", "a//b", "/abs", "a/./b", "a b", "a\\b"] {
            assert!(validate_stream_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
