//! rustic_core's backend traits implemented on an opendal operator (restic's file layout).

use bytes::Bytes;
use opendal::{Buffer, Operator};
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend,
};

use crate::io::block_io;

/// A restic repository below `base` on an opendal operator.
#[derive(Clone, Debug)]
pub(crate) struct OpendalBackend {
    op: Operator,
    base: String,
    location: String,
}

fn rerr(
    op: &str,
    path: &str,
    e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> Box<RusticError> {
    RusticError::with_source(ErrorKind::Backend, "storage operation failed", e)
        .attach_context("operation", op.to_string())
        .attach_context("path", path.to_string())
}

fn join_err(e: crate::error::Error) -> Box<RusticError> {
    RusticError::with_source(ErrorKind::Backend, "storage task failed", e)
}

impl OpendalBackend {
    pub(crate) fn new(op: Operator, base: &str, location: &str) -> Self {
        OpendalBackend {
            op,
            base: base.trim_matches('/').to_string(),
            location: location.to_string(),
        }
    }

    /// Path of a repository file relative to the storage root.
    pub(crate) fn dir(&self, name: &str) -> String {
        format!("{}/{}/", self.base, name)
    }

    pub(crate) fn path(&self, tpe: FileType, id: &Id) -> String {
        let hex = id.to_hex();
        let hex: &str = &hex;
        match tpe {
            FileType::Config => format!("{}/config", self.base),
            FileType::Pack => format!("{}/data/{}/{}", self.base, &hex[0..2], hex),
            other => format!("{}/{}/{}", self.base, other.dirname(), hex),
        }
    }
}

impl ReadBackend for OpendalBackend {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        let op = self.op.clone();
        if tpe == FileType::Config {
            let path = self.path(tpe, &Id::default());
            let p2 = path.clone();
            let r = block_io(async move { op.stat(&p2).await }).map_err(join_err)?;
            return match r {
                Ok(m) => Ok(vec![(Id::default(), m.content_length() as u32)]),
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(vec![]),
                Err(e) => Err(rerr("stat", &path, e)),
            };
        }
        let dir = self.dir(tpe.dirname());
        let d2 = dir.clone();
        let r = block_io(async move {
            let entries = match op.list_with(&d2).recursive(true).await {
                Ok(v) => v,
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(vec![]),
                Err(e) => return Err(e),
            };
            let mut out = Vec::with_capacity(entries.len());
            for e in entries {
                if !e.metadata().is_file() {
                    continue;
                }
                let mut size = e.metadata().content_length();
                if size == 0 {
                    size = op.stat(e.path()).await?.content_length();
                }
                out.push((e.name().to_string(), size));
            }
            Ok(out)
        })
        .map_err(join_err)?
        .map_err(|e| rerr("list", &dir, e))?;
        Ok(r.into_iter()
            .filter_map(|(name, size)| name.parse::<Id>().ok().map(|id| (id, size as u32)))
            .collect())
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        let (op, path) = (self.op.clone(), self.path(tpe, id));
        let p2 = path.clone();
        let r = block_io(async move { op.read(&p2).await })
            .map_err(join_err)
            .and_then(|r| r.map(|b| b.to_bytes()).map_err(|e| rerr("read", &path, e)));
        r
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        let (op, path) = (self.op.clone(), self.path(tpe, id));
        let p2 = path.clone();
        let range = u64::from(offset)..u64::from(offset) + u64::from(length);
        block_io(async move { op.read_with(&p2).range(range).await })
            .map_err(join_err)?
            .map(|b| b.to_bytes())
            .map_err(|e| rerr("read", &path, e))
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.path(tpe, id)
    }
}

impl WriteBackend for OpendalBackend {
    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        let (op, path) = (self.op.clone(), self.path(tpe, id));
        let p2 = path.clone();
        let buf = Buffer::from(content.into_vec());
        let r = block_io(async move { op.write(&p2, buf).await })
            .map_err(join_err)
            .and_then(|r| r.map(|_| ()).map_err(|e| rerr("write", &path, e)));
        r
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        let (op, path) = (self.op.clone(), self.path(tpe, id));
        let p2 = path.clone();
        block_io(async move { op.delete(&p2).await })
            .map_err(join_err)?
            .map_err(|e| rerr("delete", &path, e))
    }
}
