//! A blocking TCP stream to the task's target (`kstash:addon/tcp`), with TLS done by the host.
//!
//! ```text
//! let mut conn = TcpStream::connect()?;            // the target's pinned address, no argument
//! if task.target_url().starts_with("rediss://") { conn.start_tls()?; }
//! conn.write_all(b"*1\r\n$4\r\nPING\r\n")?;        // buffered; flushed before every read
//! let mut line = String::new();
//! conn.read_line(&mut line)?;                      // std::io::BufRead
//! ```
//!
//! [`TcpStream`] buffers writes (64 KiB) and flushes them before it blocks on a read, so
//! request/response protocols cannot deadlock on an unflushed request. It implements
//! [`Read`], [`BufRead`] and [`Write`]. For several connections in flight at once, use
//! [`TcpStream::input_pollable`] / [`TcpStream::output_pollable`] with [`crate::poll`].

use std::fmt;
use std::io::{self, BufRead, Read, Write};

use wasip2::io::streams::{InputStream, OutputStream, StreamError};

use crate::bindings::kstash::addon::credentials::{self, SecretEncoding};
use crate::bindings::kstash::addon::tcp::{self, Connection};

/// Bytes buffered before a write goes to the host.
const WRITE_BUF: usize = 64 * 1024;
/// Largest read asked from the host in one call.
const READ_CHUNK: u64 = 64 * 1024;

/// A TCP failure, as the host reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpError {
    /// The host refused the connection (not a TCP target, or outside the egress policy).
    Denied(String),
    /// Connecting failed.
    Connect(String),
    /// The TLS handshake failed.
    Tls(String),
    /// The call is not valid in the connection's state.
    InvalidState(String),
    /// Reading or writing failed (including the host's idle timeout), or the peer closed.
    Io(String),
}

impl fmt::Display for TcpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TcpError::Denied(m) => write!(f, "TCP connection denied by the host: {m}"),
            TcpError::Connect(m) => write!(f, "TCP connect failed: {m}"),
            TcpError::Tls(m) => write!(f, "TLS failed: {m}"),
            TcpError::InvalidState(m) => write!(f, "TCP: {m}"),
            TcpError::Io(m) => write!(f, "TCP I/O: {m}"),
        }
    }
}

impl std::error::Error for TcpError {}

impl From<tcp::TcpError> for TcpError {
    fn from(e: tcp::TcpError) -> Self {
        match e {
            tcp::TcpError::Denied(m) => TcpError::Denied(m),
            tcp::TcpError::Connect(m) => TcpError::Connect(m),
            tcp::TcpError::Tls(m) => TcpError::Tls(m),
            tcp::TcpError::InvalidState(m) => TcpError::InvalidState(m),
        }
    }
}

impl From<TcpError> for io::Error {
    fn from(e: TcpError) -> Self {
        io::Error::other(e.to_string())
    }
}

impl From<TcpError> for crate::TaskError {
    fn from(e: TcpError) -> Self {
        match e {
            TcpError::InvalidState(_) => crate::TaskError::Other(e.to_string()),
            _ => crate::TaskError::Connect(e.to_string()),
        }
    }
}

fn stream_error(e: StreamError) -> io::Error {
    match e {
        StreamError::Closed => io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the target closed the connection",
        ),
        StreamError::LastOperationFailed(err) => io::Error::other(err.to_debug_string()),
    }
}

/// A connection to the task's target. Blocking; see the module docs.
pub struct TcpStream {
    // Field order is drop order: the streams are children of the connection.
    input: InputStream,
    output: OutputStream,
    conn: Connection,
    wbuf: Vec<u8>,
    rbuf: Vec<u8>,
    rpos: usize,
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("tls", &self.conn.is_tls())
            .finish_non_exhaustive()
    }
}

impl TcpStream {
    /// Connects to the task's target (its host and port from `target-url`, pinned by the host).
    pub fn connect() -> Result<Self, TcpError> {
        let conn = tcp::connect()?;
        let (input, output) = conn.streams()?;
        Ok(Self {
            input,
            output,
            conn,
            wbuf: Vec::with_capacity(WRITE_BUF),
            rbuf: Vec::new(),
            rpos: 0,
        })
    }

    /// Starts TLS (the host verifies the target with its CA bundle and presents the client
    /// certificate, if any). Call it right after [`TcpStream::connect`] for direct TLS, or after
    /// the protocol's upgrade answer (e.g. PostgreSQL's `S` to an `SSLRequest`). Fails if bytes
    /// were received and not read yet.
    pub fn start_tls(&mut self) -> Result<(), TcpError> {
        if self.rpos < self.rbuf.len() {
            return Err(TcpError::InvalidState(
                "bytes received before the TLS handshake were not read (refusing to mix them with TLS)"
                    .to_string(),
            ));
        }
        self.flush().map_err(|e| TcpError::Io(e.to_string()))?;
        self.conn.start_tls()?;
        Ok(())
    }

    /// Whether TLS is active.
    pub fn is_tls(&self) -> bool {
        self.conn.is_tls()
    }

    /// Bytes received from and sent to the target so far, as the host counts them.
    pub fn byte_counts(&self) -> (u64, u64) {
        self.conn.byte_counts()
    }

    /// The raw host connection (for [`crate::credentials`]).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Has the host write the target's secret, framed as `encoding`, after the bytes written so
    /// far (they are flushed first). The secret never enters the guest.
    pub fn write_secret(&mut self, encoding: SecretEncoding) -> Result<(), TcpError> {
        self.flush().map_err(|e| TcpError::Io(e.to_string()))?;
        credentials::write_secret(&self.conn, encoding).map_err(TcpError::Io)
    }

    /// Has the host write PostgreSQL's `md5` password answer for `salt` (see
    /// `credentials.write-md5-response`).
    pub fn write_md5_response(&mut self, salt: &[u8]) -> Result<(), TcpError> {
        self.flush().map_err(|e| TcpError::Io(e.to_string()))?;
        credentials::write_md5_response(&self.conn, salt).map_err(TcpError::Io)
    }

    /// The pollable of the input stream: ready when bytes (or end of stream) can be read.
    pub fn input_pollable(&self) -> wasip2::io::poll::Pollable {
        self.input.subscribe()
    }

    /// The pollable of the output stream: ready when bytes can be written.
    pub fn output_pollable(&self) -> wasip2::io::poll::Pollable {
        self.output.subscribe()
    }

    /// Bytes received and buffered, not yet read.
    pub fn buffered(&self) -> &[u8] {
        &self.rbuf[self.rpos..]
    }

    /// Reads without blocking: what is buffered plus what the host has already received.
    /// Returns 0 if nothing is available now (not end of stream; that is an `UnexpectedEof`).
    pub fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.rpos == self.rbuf.len() {
            self.rbuf = self.input.read(READ_CHUNK).map_err(stream_error)?;
            self.rpos = 0;
        }
        let n = buf.len().min(self.rbuf.len() - self.rpos);
        buf[..n].copy_from_slice(&self.rbuf[self.rpos..self.rpos + n]);
        self.rpos += n;
        Ok(n)
    }

    fn send_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let permit = self.output.check_write().map_err(stream_error)?;
            if permit == 0 {
                self.output.subscribe().block();
                continue;
            }
            let n = data.len().min(permit as usize);
            self.output.write(&data[..n]).map_err(stream_error)?;
            data = &data[n..];
        }
        Ok(())
    }
}

impl Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let avail = self.fill_buf()?;
        let n = buf.len().min(avail.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for TcpStream {
    /// Flushes pending writes, then blocks until bytes arrive. End of stream is an empty slice.
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.rpos == self.rbuf.len() {
            self.flush()?;
            match self.input.blocking_read(READ_CHUNK) {
                Ok(b) => {
                    self.rbuf = b;
                    self.rpos = 0;
                }
                Err(StreamError::Closed) => {
                    self.rbuf.clear();
                    self.rpos = 0;
                }
                Err(e) => return Err(stream_error(e)),
            }
        }
        Ok(&self.rbuf[self.rpos..])
    }

    fn consume(&mut self, amt: usize) {
        self.rpos = (self.rpos + amt).min(self.rbuf.len());
    }
}

impl Write for TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.wbuf.len() + buf.len() > WRITE_BUF {
            self.flush_wbuf()?;
        }
        if buf.len() >= WRITE_BUF {
            self.send_all(buf)?;
        } else {
            self.wbuf.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    /// Sends the buffered bytes and waits until the host accepted them.
    fn flush(&mut self) -> io::Result<()> {
        self.flush_wbuf()?;
        self.output.blocking_flush().map_err(stream_error)
    }
}

impl TcpStream {
    fn flush_wbuf(&mut self) -> io::Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.wbuf);
        let res = self.send_all(&buf);
        self.wbuf = buf;
        self.wbuf.clear();
        res
    }
}
