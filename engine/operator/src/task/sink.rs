//! The runtime's stream traits onto the repository layer, with nothing staged on disk.
//!
//! - [`RepoOutput`]: each output stream `<name>` becomes the file `<dir>/<name>` of one restic
//!   snapshot per repository of the session and component. With one component every stream is
//!   that component's; with several, a stream `<component>/<rest>` becomes the file
//!   `<dir>/<rest>` of that component's snapshot (the same bytes are written to every repository;
//!   `dir` is the task's `interimDataDir`, `/kubestash-interim/data` by default, so the restic
//!   snapshot has the paths KubeStash's plugin produces and restic/multielasticdump can restore
//!   it as they would KubeStash's).
//! - [`SnapshotInput`]: the files under `<dir>/` of a restic snapshot become the input streams
//!   of a restore task, named relative to `dir` (prefixed `<component>/` when the Snapshot has
//!   several components, so a restore task sees the names its backup wrote).

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use kstash_repo::{Backup, FileReader, FileWriter, SnapshotReader};
use kstash_runtime::{async_trait, InputSource, OutputSink, StreamReader, StreamWriter};

use super::progress::Progress;

fn io_err(e: kstash_repo::Error) -> io::Error {
    io::Error::other(e.to_string())
}

/// Output streams → files of the backups in progress (one per repository and component).
pub struct RepoOutput {
    /// Per component (the addon's order): its backups, one per repository.
    routes: Vec<(String, Vec<Arc<Backup>>)>,
    dir: String,
    progress: Arc<Progress>,
}

impl RepoOutput {
    /// Streams go to `<dir>/<name>` in every backup of their component (see the module doc).
    pub fn new(
        routes: Vec<(String, Vec<Arc<Backup>>)>,
        dir: &str,
        progress: Arc<Progress>,
    ) -> Self {
        RepoOutput {
            routes,
            dir: normalize_dir(dir),
            progress,
        }
    }

    /// The backups and the file name of stream `name`.
    fn route<'a>(&'a self, name: &'a str) -> io::Result<(&'a Vec<Arc<Backup>>, &'a str)> {
        route(&self.routes, name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
    }
}

/// Which component's entry of `routes` stream `name` goes to, and its name there (pure).
pub fn route<'a, T>(routes: &'a [(String, T)], name: &'a str) -> Result<(&'a T, &'a str), String> {
    match routes {
        [] => Err(format!(
            "stream {name:?}: the task has no component to write to"
        )),
        [(_, only)] => Ok((only, name)),
        _ => {
            let found = name
                .split_once('/')
                .and_then(|(c, rest)| routes.iter().find(|(n, _)| n == c).map(|(_, t)| (t, rest)));
            found.ok_or_else(|| {
                let names: Vec<&str> = routes.iter().map(|(n, _)| n.as_str()).collect();
                format!(
                    "stream {name:?}: the task declares components {}, so a stream name must start with `<component>/`",
                    names.join(", ")
                )
            })
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
        let (backups, file) = self.route(name)?;
        let path = format!("{}/{file}", self.dir);
        let mut writers = Vec::with_capacity(backups.len());
        for b in backups {
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
    /// `<component>/` when the Snapshot has several components, else empty.
    prefix: String,
    progress: Arc<Progress>,
}

impl SnapshotInput {
    /// Streams are the files under `dir` of `reader`'s snapshot, their names prefixed
    /// `<component>/` when `component` is given (a Snapshot of several components).
    pub fn new(
        reader: SnapshotReader,
        dir: &str,
        component: Option<&str>,
        progress: Arc<Progress>,
    ) -> Self {
        SnapshotInput {
            reader,
            dir: normalize_dir(dir),
            prefix: component.map(|c| format!("{c}/")).unwrap_or_default(),
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
            .filter_map(|f| {
                f.path
                    .strip_prefix(&prefix)
                    .map(|n| format!("{}{n}", self.prefix))
            })
            .collect();
        names.sort();
        Ok(names)
    }

    async fn open(&self, name: &str) -> io::Result<Box<dyn StreamReader>> {
        kstash_runtime::validate_stream_name(name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let name = name.strip_prefix(&self.prefix).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("stream {name:?}: not in component {:?}", self.prefix),
            )
        })?;
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

    #[test]
    fn routes() {
        let one = [("dump".to_string(), 1)];
        assert_eq!(super::route(&one, "a/b.json").unwrap(), (&1, "a/b.json"));
        let two = [("globals".to_string(), 1), ("db-app".to_string(), 2)];
        assert_eq!(
            super::route(&two, "db-app/dump.sql").unwrap(),
            (&2, "dump.sql")
        );
        assert_eq!(super::route(&two, "globals/g.sql").unwrap(), (&1, "g.sql"));
        assert_eq!(
            super::route(&two, "other/x").unwrap_err(),
            "stream \"other/x\": the task declares components globals, db-app, so a stream name must start with `<component>/`"
        );
        assert!(super::route::<i32>(&[], "x").is_err());
    }
}
