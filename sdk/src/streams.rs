//! The host's named streams as `std::io::Write` (backup) and `std::io::Read` (restore).

use std::io;

use crate::bindings::kstash::addon::{input, output};

/// Bytes buffered in the guest before one host call; large enough to make the boundary cheap
/// (the lab measured ~15 GB/s at 64 KiB), small enough to keep host buffers bounded.
const WRITE_CHUNK: usize = 64 * 1024;

/// A named output stream of a backup. Buffered; call [`OutputStream::finish`] to seal it
/// (dropping it unfinished aborts the stream).
pub struct OutputStream {
    name: String,
    writer: Option<output::Writer>,
    buf: Vec<u8>,
    written: u64,
}

impl OutputStream {
    /// Opens a new stream, e.g. `indices/logs/data.ndjson`.
    pub fn open(name: &str) -> io::Result<Self> {
        let writer = output::open(name)
            .map_err(|e| io::Error::other(format!("open output stream {name:?}: {e}")))?;
        Ok(Self {
            name: name.to_string(),
            writer: Some(writer),
            buf: Vec::with_capacity(WRITE_CHUNK),
            written: 0,
        })
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes written so far (including buffered ones).
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        let writer = self
            .writer
            .as_ref()
            .ok_or_else(|| io::Error::other("stream already finished"))?;
        writer
            .write(data)
            .map_err(|e| io::Error::other(format!("write to stream {:?}: {e}", self.name)))
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let buf = std::mem::take(&mut self.buf);
            let res = self.send(&buf);
            self.buf = buf;
            self.buf.clear();
            res?;
        }
        Ok(())
    }

    /// Flushes and seals the stream; returns the bytes the host accepted.
    pub fn finish(mut self) -> io::Result<u64> {
        self.flush_buf()?;
        let writer = self.writer.take().expect("writer present until finish");
        writer
            .finish()
            .map_err(|e| io::Error::other(format!("finish stream {:?}: {e}", self.name)))
    }
}

impl io::Write for OutputStream {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > WRITE_CHUNK {
            self.flush_buf()?;
        }
        if data.len() >= WRITE_CHUNK {
            for chunk in data.chunks(WRITE_CHUNK) {
                self.send(chunk)?;
            }
        } else {
            self.buf.extend_from_slice(data);
        }
        self.written += data.len() as u64;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_buf()
    }
}

/// The names of every input stream of this restore, sorted.
pub fn input_names() -> Vec<String> {
    input::names()
}

/// A named input stream of a restore.
pub struct InputStream {
    name: String,
    reader: input::Reader,
    eof: bool,
}

impl InputStream {
    /// Opens a stream by name.
    pub fn open(name: &str) -> io::Result<Self> {
        let reader = input::open(name)
            .map_err(|e| io::Error::other(format!("open input stream {name:?}: {e}")))?;
        Ok(Self {
            name: name.to_string(),
            reader,
            eof: false,
        })
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl io::Read for InputStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.eof || buf.is_empty() {
            return Ok(0);
        }
        let max = buf.len().min(WRITE_CHUNK) as u32;
        let data = self
            .reader
            .read(max)
            .map_err(|e| io::Error::other(format!("read stream {:?}: {e}", self.name)))?;
        if data.is_empty() {
            self.eof = true;
            return Ok(0);
        }
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        Ok(n)
    }
}
