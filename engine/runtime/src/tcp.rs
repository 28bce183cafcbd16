//! The host side of `kstash:addon/tcp`: one TCP connection to the task's pinned target address,
//! exposed to the guest as WASI input/output streams, with TLS (direct or as an upgrade) done by
//! the host, byte counting, the task's byte and idle limits, and a way for the host to write the
//! target's secret into the connection (`credentials`).
//!
//! The transport sits behind `tokio::io::split` halves shared by the connection resource and its
//! two streams, so reads and writes can be in flight at once, and `start-tls` can reunite the
//! halves, do the handshake and split the TLS stream again under the same guest streams.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use wasmtime_wasi::p2::{InputStream, OutputStream, Pollable, StreamError, StreamResult};

use crate::error::Limit;
use crate::target::ResolvedTarget;

/// Output bytes the host buffers for a connection before `check-write` says 0.
const MAX_PENDING_OUT: usize = 1 << 20;
/// Bytes read from the socket at once.
const READ_CHUNK: usize = 64 * 1024;
/// Time allowed for connecting and for a TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a TCP call failed (mirrors the WIT `tcp-error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TcpFailure {
    Denied(String),
    Connect(String),
    Tls(String),
    InvalidState(String),
}

/// Task-wide TCP accounting and limits, shared by every connection of the task.
#[derive(Debug)]
pub(crate) struct TcpMeter {
    /// Bytes delivered to the guest.
    pub bytes_in: AtomicU64,
    /// Bytes accepted from the guest.
    pub bytes_out: AtomicU64,
    /// Connections opened.
    pub connections: AtomicU32,
    /// Bytes allowed in and out together.
    pub max_bytes: u64,
    /// Longest wait for a read or write to make progress.
    pub idle: Duration,
    /// Connections allowed per task.
    pub max_connections: u32,
    /// A limit a stream enforced (the guest is trapped just after).
    pub limit_hit: Mutex<Option<(Limit, String)>>,
}

impl TcpMeter {
    pub fn new(max_bytes: u64, idle: Duration, max_connections: u32) -> Self {
        Self {
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            connections: AtomicU32::new(0),
            max_bytes,
            idle,
            max_connections,
            limit_hit: Mutex::new(None),
        }
    }

    /// Counts `n` more bytes, or records the byte limit and returns the trap.
    fn charge(&self, n: usize, counter: &AtomicU64) -> StreamResult<()> {
        let total = self.bytes_in.load(Ordering::Relaxed) + self.bytes_out.load(Ordering::Relaxed);
        if total.saturating_add(n as u64) > self.max_bytes {
            let detail = format!(
                "exchanging {n} more bytes with the target after {total} exceeds {} bytes",
                self.max_bytes
            );
            *self.limit_hit.lock().expect("tcp meter lock") =
                Some((Limit::TargetBytes, detail.clone()));
            return Err(StreamError::Trap(wasmtime::format_err!("{detail}")));
        }
        counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// Plain TCP or TLS over it.
enum Transport {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ReadState {
    Open,
    Eof,
    Failed(String),
}

struct ReadSide {
    half: Option<ReadHalf<Transport>>,
    /// Received, not yet delivered to the guest.
    buf: BytesMut,
    state: ReadState,
}

struct WriteSide {
    half: Option<WriteHalf<Transport>>,
    /// Accepted from the guest (or the host's secret), not yet on the socket.
    buf: BytesMut,
    failed: Option<String>,
}

/// What a connection and its streams share.
struct Shared {
    rd: tokio::sync::Mutex<ReadSide>,
    wr: tokio::sync::Mutex<WriteSide>,
    tls: AtomicBool,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    meter: Arc<TcpMeter>,
}

/// Host end of a guest's `tcp.connection`.
pub struct TcpConnection {
    shared: Arc<Shared>,
    streams_taken: bool,
    peer: SocketAddr,
}

impl std::fmt::Debug for TcpConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpConnection")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

fn split(t: Transport) -> (ReadHalf<Transport>, WriteHalf<Transport>) {
    tokio::io::split(t)
}

/// Opens a connection to the target's pinned addresses (first that answers).
pub(crate) async fn connect(
    target: &ResolvedTarget,
    meter: &Arc<TcpMeter>,
) -> Result<TcpConnection, TcpFailure> {
    if target.origin.is_some() {
        return Err(TcpFailure::Denied(format!(
            "the task's target {} is an HTTP endpoint: use wasi:http",
            target.endpoint
        )));
    }
    let n = meter.connections.load(Ordering::Relaxed);
    if n >= meter.max_connections {
        return Err(TcpFailure::Denied(format!(
            "the task may open at most {} connections",
            meter.max_connections
        )));
    }
    let mut last = String::from("no address");
    for addr in &target.addrs {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                meter.connections.fetch_add(1, Ordering::Relaxed);
                let (rd, wr) = split(Transport::Plain(s));
                return Ok(TcpConnection {
                    peer: *addr,
                    streams_taken: false,
                    shared: Arc::new(Shared {
                        rd: tokio::sync::Mutex::new(ReadSide {
                            half: Some(rd),
                            buf: BytesMut::new(),
                            state: ReadState::Open,
                        }),
                        wr: tokio::sync::Mutex::new(WriteSide {
                            half: Some(wr),
                            buf: BytesMut::new(),
                            failed: None,
                        }),
                        tls: AtomicBool::new(false),
                        bytes_in: AtomicU64::new(0),
                        bytes_out: AtomicU64::new(0),
                        meter: meter.clone(),
                    }),
                });
            }
            Ok(Err(e)) => last = format!("{addr}: {e}"),
            Err(_) => last = format!("{addr}: timed out after {CONNECT_TIMEOUT:?}"),
        }
    }
    Err(TcpFailure::Connect(format!(
        "connecting to {}: {last}",
        target.endpoint
    )))
}

/// Writes everything buffered, then flushes the transport. Cancel-safe: bytes leave the buffer
/// only once written.
async fn drain(w: &mut WriteSide, idle: Duration) -> Result<(), String> {
    if let Some(e) = &w.failed {
        return Err(e.clone());
    }
    let Some(half) = w.half.as_mut() else {
        return Err("connection is closed".to_string());
    };
    while !w.buf.is_empty() {
        match tokio::time::timeout(idle, half.write(&w.buf)).await {
            Ok(Ok(0)) => {
                w.failed = Some("the target closed the connection".to_string());
                break;
            }
            Ok(Ok(n)) => w.buf.advance(n),
            Ok(Err(e)) => {
                w.failed = Some(format!("writing to the target: {e}"));
                break;
            }
            Err(_) => {
                w.failed = Some(format!("the target accepted no byte for {idle:?}"));
                break;
            }
        }
    }
    if w.failed.is_none() {
        match tokio::time::timeout(idle, half.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => w.failed = Some(format!("writing to the target: {e}")),
            Err(_) => w.failed = Some(format!("the target accepted no byte for {idle:?}")),
        }
    }
    match &w.failed {
        Some(e) => Err(e.clone()),
        None => Ok(()),
    }
}

impl TcpConnection {
    /// The guest's input and output streams (once).
    pub(crate) fn take_streams(&mut self) -> Result<(TcpInput, TcpOutput), TcpFailure> {
        if self.streams_taken {
            return Err(TcpFailure::InvalidState(
                "the streams of this connection were already taken".to_string(),
            ));
        }
        self.streams_taken = true;
        Ok((
            TcpInput {
                shared: self.shared.clone(),
            },
            TcpOutput {
                shared: self.shared.clone(),
            },
        ))
    }

    /// Whether TLS is active.
    pub(crate) fn is_tls(&self) -> bool {
        self.shared.tls.load(Ordering::Relaxed)
    }

    /// Bytes delivered to and accepted from the guest on this connection.
    pub(crate) fn byte_counts(&self) -> (u64, u64) {
        (
            self.shared.bytes_in.load(Ordering::Relaxed),
            self.shared.bytes_out.load(Ordering::Relaxed),
        )
    }

    /// Flushes pending output, then does a TLS handshake (server name = the target's host).
    pub(crate) async fn start_tls(&mut self, target: &ResolvedTarget) -> Result<(), TcpFailure> {
        let cfg = target.tcp_tls.clone().ok_or_else(|| {
            TcpFailure::InvalidState("the target has no TLS configuration".to_string())
        })?;
        let idle = self.shared.meter.idle;
        let mut rd = self.shared.rd.lock().await;
        let mut wr = self.shared.wr.lock().await;
        if self.shared.tls.load(Ordering::Relaxed) {
            return Err(TcpFailure::InvalidState(
                "TLS is already active".to_string(),
            ));
        }
        if !rd.buf.is_empty() {
            return Err(TcpFailure::InvalidState(format!(
                "{} bytes were received before the TLS handshake and not read: refusing to mix plaintext with TLS",
                rd.buf.len()
            )));
        }
        if rd.state != ReadState::Open {
            return Err(TcpFailure::InvalidState(
                "the target closed the connection".to_string(),
            ));
        }
        drain(&mut wr, idle)
            .await
            .map_err(TcpFailure::InvalidState)?;
        let (Some(r), Some(w)) = (rd.half.take(), wr.half.take()) else {
            return Err(TcpFailure::InvalidState("connection is closed".to_string()));
        };
        let Transport::Plain(tcp) = r.unsplit(w) else {
            return Err(TcpFailure::InvalidState(
                "TLS is already active".to_string(),
            ));
        };
        let name = crate::target::server_name(&target.endpoint.host)
            .map_err(|e| TcpFailure::Tls(format!("server name {:?}: {e}", target.endpoint.host)))?;
        let tls = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio_rustls::TlsConnector::from(cfg).connect(name, tcp),
        )
        .await
        .map_err(|_| TcpFailure::Tls(format!("handshake timed out after {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| TcpFailure::Tls(format!("handshake with {}: {e}", target.endpoint)))?;
        let (r, w) = split(Transport::Tls(Box::new(tls)));
        rd.half = Some(r);
        wr.half = Some(w);
        self.shared.tls.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Writes `data` after the pending output and flushes it all (used for secrets: not counted
    /// and never kept in a buffer after the call).
    pub(crate) async fn write_host_bytes(&self, data: &[u8]) -> Result<(), String> {
        let idle = self.shared.meter.idle;
        let mut wr = self.shared.wr.lock().await;
        wr.buf.extend_from_slice(data);
        let res = drain(&mut wr, idle).await;
        if res.is_err() {
            // Never keep a secret around in a failed connection's buffer.
            wr.buf.iter_mut().for_each(|b| *b = 0);
            wr.buf.clear();
        }
        res
    }
}

/// The guest's `input-stream` of a connection.
pub(crate) struct TcpInput {
    shared: Arc<Shared>,
}

/// The guest's `output-stream` of a connection.
pub(crate) struct TcpOutput {
    shared: Arc<Shared>,
}

fn busy() -> StreamError {
    StreamError::trap("connection is busy in another host call")
}

#[async_trait::async_trait]
impl Pollable for TcpInput {
    async fn ready(&mut self) {
        let idle = self.shared.meter.idle;
        let mut rd = self.shared.rd.lock().await;
        if !rd.buf.is_empty() || rd.state != ReadState::Open {
            return;
        }
        let ReadSide { half, buf, state } = &mut *rd;
        let Some(half) = half.as_mut() else {
            *state = ReadState::Failed("connection is closed".to_string());
            return;
        };
        buf.reserve(READ_CHUNK);
        match tokio::time::timeout(idle, half.read_buf(buf)).await {
            Ok(Ok(0)) => *state = ReadState::Eof,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => *state = ReadState::Failed(format!("reading from the target: {e}")),
            Err(_) => {
                *state = ReadState::Failed(format!(
                    "idle timeout: the target sent no byte for {idle:?}"
                ))
            }
        }
    }
}

impl InputStream for TcpInput {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        let mut rd = self.shared.rd.try_lock().map_err(|_| busy())?;
        if !rd.buf.is_empty() {
            let n = size.min(rd.buf.len());
            self.shared.meter.charge(n, &self.shared.meter.bytes_in)?;
            self.shared.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
            return Ok(rd.buf.split_to(n).freeze());
        }
        match &rd.state {
            ReadState::Open => Ok(Bytes::new()),
            ReadState::Eof => Err(StreamError::Closed),
            ReadState::Failed(e) => Err(StreamError::LastOperationFailed(wasmtime::format_err!(
                "{e}"
            ))),
        }
    }
}

#[async_trait::async_trait]
impl Pollable for TcpOutput {
    async fn ready(&mut self) {
        let idle = self.shared.meter.idle;
        let mut wr = self.shared.wr.lock().await;
        let _ = drain(&mut wr, idle).await;
    }
}

impl OutputStream for TcpOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        let mut wr = self.shared.wr.try_lock().map_err(|_| busy())?;
        if let Some(e) = &wr.failed {
            return Err(StreamError::LastOperationFailed(wasmtime::format_err!(
                "{e}"
            )));
        }
        if wr.buf.len() + bytes.len() > MAX_PENDING_OUT {
            return Err(StreamError::trap("write exceeds what check-write allowed"));
        }
        self.shared
            .meter
            .charge(bytes.len(), &self.shared.meter.bytes_out)?;
        self.shared
            .bytes_out
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        wr.buf.extend_from_slice(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        // Everything buffered is written by `ready`; a flush only needs the next `ready`.
        let wr = self.shared.wr.try_lock().map_err(|_| busy())?;
        match &wr.failed {
            Some(e) => Err(StreamError::LastOperationFailed(wasmtime::format_err!(
                "{e}"
            ))),
            None => Ok(()),
        }
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        let wr = self.shared.wr.try_lock().map_err(|_| busy())?;
        if let Some(e) = &wr.failed {
            return Err(StreamError::LastOperationFailed(wasmtime::format_err!(
                "{e}"
            )));
        }
        Ok(MAX_PENDING_OUT - wr.buf.len())
    }
}
