//! The store's data (`HostState`) and the host side of the `kstash:addon` imports.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::egress::EgressPolicy;
use crate::error::Limit;
use crate::events::{LogLevel, ProgressUpdate, TaskEvents};
use crate::limits::{Limits, TaskLimiter};
use crate::streams::{validate_stream_name, InputSource, OutputSink, StreamReader, StreamWriter};

/// Bindings generated from `sdk/wit` (the same files the guest SDK uses).
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        world: "addon",
        path: "../../sdk/wit",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            "kstash:addon/output.writer": super::WriterHandle,
            "kstash:addon/input.reader": super::ReaderHandle,
            "kstash:addon/tcp.connection": crate::tcp::TcpConnection,
            "kstash:addon/credentials.scram-client": crate::credentials::ScramState,
        },
    });
}

use bindings::kstash::addon::{credentials, input, log, output, progress, report, tcp};

use crate::credentials::{ScramHash, ScramState, SecretEncoding};
use crate::events::{Notice, NoticeKind, PartCount};
use crate::target::{Credentials, ResolvedTarget};
use crate::tcp::{TcpConnection, TcpFailure, TcpMeter};

/// Parts and notices kept per task (more are dropped with one warning).
const MAX_REPORT_ENTRIES: usize = 10_000;

/// Largest single read a guest may ask for.
const MAX_READ: u32 = 4 << 20;
/// Longest log line kept (longer ones are cut).
const MAX_LOG_LINE: usize = 64 << 10;

/// Host end of a guest's `output.writer`.
pub struct WriterHandle {
    name: String,
    inner: Option<Box<dyn StreamWriter>>,
}

/// Host end of a guest's `input.reader`.
pub struct ReaderHandle {
    name: String,
    inner: Box<dyn StreamReader>,
}

/// Everything one task's store holds.
pub(crate) struct HostState {
    pub table: ResourceTable,
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub egress: EgressPolicy,
    pub limiter: TaskLimiter,
    pub limits: Limits,
    pub output: Option<Arc<dyn OutputSink>>,
    pub input: Option<Arc<dyn InputSource>>,
    pub events: Arc<dyn TaskEvents>,
    /// Bytes accepted into output streams.
    pub written: u64,
    /// Finished streams: name and size.
    pub finished: Vec<(String, u64)>,
    pub opened: HashSet<String>,
    pub open_now: u32,
    /// A limit the host enforced (set just before trapping the guest).
    pub limit_hit: Option<(Limit, String)>,
    /// Epoch ticks seen while the guest was running.
    pub cpu_ticks: u64,
    /// TCP accounting and limits of the task.
    pub tcp: Arc<TcpMeter>,
    /// Per-part counts from `report.part`, in first-report order.
    pub parts: Vec<PartCount>,
    /// Notices from `report.add-notice`.
    pub notices: Vec<Notice>,
    /// Raw socket addresses the guest tried (all refused by `wasi:sockets`).
    pub sockets_denied: Arc<std::sync::Mutex<Vec<String>>>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.egress,
        }
    }
}

impl HostState {
    fn trap_limit(&mut self, limit: Limit, detail: String) -> wasmtime::Error {
        self.limit_hit = Some((limit, detail.clone()));
        wasmtime::format_err!("{limit} limit exceeded: {detail}")
    }
}

impl output::Host for HostState {
    async fn open(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<WriterHandle>, String>> {
        let Some(sink) = self.output.clone() else {
            return Ok(Err(
                "this task has no output streams (it is not a backup)".to_string()
            ));
        };
        if let Err(e) = validate_stream_name(&name) {
            return Ok(Err(e));
        }
        if self.opened.contains(&name) {
            return Ok(Err(format!(
                "stream {name:?} was already opened by this task"
            )));
        }
        if self.opened.len() as u64 >= u64::from(self.limits.max_streams) {
            let max = self.limits.max_streams;
            return Err(self.trap_limit(Limit::Streams, format!("more than {max} streams")));
        }
        if self.open_now >= self.limits.max_open_streams {
            let max = self.limits.max_open_streams;
            return Err(self.trap_limit(
                Limit::Streams,
                format!("more than {max} streams open at once"),
            ));
        }
        match sink.open(&name).await {
            Ok(w) => {
                self.opened.insert(name.clone());
                self.open_now += 1;
                let r = self.table.push(WriterHandle {
                    name,
                    inner: Some(w),
                })?;
                Ok(Ok(r))
            }
            Err(e) => Ok(Err(format!("opening stream {name:?}: {e}"))),
        }
    }
}

impl output::HostWriter for HostState {
    async fn write(
        &mut self,
        h: Resource<WriterHandle>,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<(), String>> {
        let len = data.len() as u64;
        if self.written.saturating_add(len) > self.limits.max_bytes_written {
            let max = self.limits.max_bytes_written;
            return Err(self.trap_limit(
                Limit::BytesWritten,
                format!(
                    "writing {len} more bytes after {} exceeds {max} bytes",
                    self.written
                ),
            ));
        }
        let w = self.table.get_mut(&h)?;
        let name = w.name.clone();
        let Some(inner) = w.inner.as_mut() else {
            return Ok(Err(format!("stream {name:?} is finished")));
        };
        match inner.write(Bytes::from(data)).await {
            Ok(()) => {
                self.written += len;
                Ok(Ok(()))
            }
            Err(e) => Ok(Err(format!("writing stream {name:?}: {e}"))),
        }
    }

    async fn finish(&mut self, h: Resource<WriterHandle>) -> wasmtime::Result<Result<u64, String>> {
        let w = self.table.get_mut(&h)?;
        let name = w.name.clone();
        let Some(inner) = w.inner.take() else {
            return Ok(Err(format!("stream {name:?} is already finished")));
        };
        self.open_now = self.open_now.saturating_sub(1);
        match inner.finish().await {
            Ok(n) => {
                self.finished.push((name, n));
                Ok(Ok(n))
            }
            Err(e) => Ok(Err(format!("finishing stream {name:?}: {e}"))),
        }
    }

    async fn drop(&mut self, h: Resource<WriterHandle>) -> wasmtime::Result<()> {
        let w = self.table.delete(h)?;
        if w.inner.is_some() {
            // Dropped unfinished: the writer's own Drop aborts the stream.
            self.open_now = self.open_now.saturating_sub(1);
            self.events.log(
                LogLevel::Warn,
                &format!("stream {:?} dropped without finish: aborted", w.name),
            );
        }
        Ok(())
    }
}

impl input::Host for HostState {
    async fn names(&mut self) -> wasmtime::Result<Vec<String>> {
        let Some(src) = self.input.clone() else {
            return Ok(Vec::new());
        };
        match src.names().await {
            Ok(n) => Ok(n),
            Err(e) => {
                self.events
                    .log(LogLevel::Error, &format!("listing input streams: {e}"));
                Ok(Vec::new())
            }
        }
    }

    async fn open(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<ReaderHandle>, String>> {
        let Some(src) = self.input.clone() else {
            return Ok(Err(
                "this task has no input streams (it is not a restore)".to_string()
            ));
        };
        if let Err(e) = validate_stream_name(&name) {
            return Ok(Err(e));
        }
        match src.open(&name).await {
            Ok(inner) => Ok(Ok(self.table.push(ReaderHandle { name, inner })?)),
            Err(e) => Ok(Err(format!("opening input stream {name:?}: {e}"))),
        }
    }
}

impl input::HostReader for HostState {
    async fn read(
        &mut self,
        h: Resource<ReaderHandle>,
        max: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, String>> {
        let r = self.table.get_mut(&h)?;
        let max = max.clamp(1, MAX_READ) as usize;
        match r.inner.read(max).await {
            Ok(b) => Ok(Ok(b.to_vec())),
            Err(e) => Ok(Err(format!("reading input stream {:?}: {e}", r.name))),
        }
    }

    async fn drop(&mut self, h: Resource<ReaderHandle>) -> wasmtime::Result<()> {
        self.table.delete(h)?;
        Ok(())
    }
}

fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl log::Host for HostState {
    async fn write(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        self.events.log(level, cut(&message, MAX_LOG_LINE));
        Ok(())
    }
}

impl progress::Host for HostState {
    async fn report(
        &mut self,
        done: u64,
        total: Option<u64>,
        unit: String,
        stage: String,
    ) -> wasmtime::Result<()> {
        self.events.progress(&ProgressUpdate {
            done,
            total,
            unit: cut(&unit, 64).to_string(),
            stage: cut(&stage, 256).to_string(),
        });
        Ok(())
    }
}

impl bindings::kstash::addon::types::Host for HostState {}

fn tcp_error(e: TcpFailure) -> tcp::TcpError {
    match e {
        TcpFailure::Denied(m) => tcp::TcpError::Denied(m),
        TcpFailure::Connect(m) => tcp::TcpError::Connect(m),
        TcpFailure::Tls(m) => tcp::TcpError::Tls(m),
        TcpFailure::InvalidState(m) => tcp::TcpError::InvalidState(m),
    }
}

impl HostState {
    fn target(&self) -> &ResolvedTarget {
        &self.egress.target
    }

    /// User name and password of the target, for the credential calls.
    fn secret(&self) -> Result<(&str, &[u8]), String> {
        match &self.target().credentials {
            Credentials::Basic { username, password } => Ok((username, password.as_bytes())),
            Credentials::Bearer(t) | Credentials::ApiKey(t) => Ok(("", t.as_bytes())),
            Credentials::None => Err("no secret is configured for the target".to_string()),
        }
    }
}

impl tcp::Host for HostState {
    async fn connect(
        &mut self,
    ) -> wasmtime::Result<Result<Resource<TcpConnection>, tcp::TcpError>> {
        let target = self.egress.target.clone();
        match crate::tcp::connect(&target, &self.tcp).await {
            Ok(c) => Ok(Ok(self.table.push(c)?)),
            Err(e) => {
                self.events
                    .log(LogLevel::Warn, &format!("tcp connect: {e:?}"));
                Ok(Err(tcp_error(e)))
            }
        }
    }
}

impl tcp::HostConnection for HostState {
    async fn streams(
        &mut self,
        h: Resource<TcpConnection>,
    ) -> wasmtime::Result<
        Result<
            (
                Resource<wasmtime_wasi::p2::DynInputStream>,
                Resource<wasmtime_wasi::p2::DynOutputStream>,
            ),
            tcp::TcpError,
        >,
    > {
        let conn = self.table.get_mut(&h)?;
        match conn.take_streams() {
            Ok((i, o)) => {
                let i: wasmtime_wasi::p2::DynInputStream = Box::new(i);
                let o: wasmtime_wasi::p2::DynOutputStream = Box::new(o);
                let i = self.table.push(i)?;
                let o = self.table.push(o)?;
                Ok(Ok((i, o)))
            }
            Err(e) => Ok(Err(tcp_error(e))),
        }
    }

    async fn start_tls(
        &mut self,
        h: Resource<TcpConnection>,
    ) -> wasmtime::Result<Result<(), tcp::TcpError>> {
        let target = self.egress.target.clone();
        let conn = self.table.get_mut(&h)?;
        Ok(conn.start_tls(&target).await.map_err(tcp_error))
    }

    async fn is_tls(&mut self, h: Resource<TcpConnection>) -> wasmtime::Result<bool> {
        Ok(self.table.get(&h)?.is_tls())
    }

    async fn byte_counts(&mut self, h: Resource<TcpConnection>) -> wasmtime::Result<(u64, u64)> {
        Ok(self.table.get(&h)?.byte_counts())
    }

    async fn drop(&mut self, h: Resource<TcpConnection>) -> wasmtime::Result<()> {
        self.table.delete(h)?;
        Ok(())
    }
}

impl credentials::Host for HostState {
    async fn username(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(match &self.target().credentials {
            Credentials::Basic { username, .. } => Some(username.clone()),
            _ => None,
        })
    }

    async fn has_secret(&mut self) -> wasmtime::Result<bool> {
        Ok(self.secret().is_ok())
    }

    async fn write_secret(
        &mut self,
        conn: Resource<TcpConnection>,
        encoding: credentials::SecretEncoding,
    ) -> wasmtime::Result<Result<(), String>> {
        let encoding = match encoding {
            credentials::SecretEncoding::Raw => SecretEncoding::Raw,
            credentials::SecretEncoding::NulTerminated => SecretEncoding::NulTerminated,
            credentials::SecretEncoding::LengthPrefixedNulTerminated => {
                SecretEncoding::LengthPrefixedNulTerminated
            }
            credentials::SecretEncoding::RespBulkString => SecretEncoding::RespBulkString,
        };
        let framed = match self
            .secret()
            .and_then(|(_, pw)| crate::credentials::frame_secret(pw, encoding))
        {
            Ok(f) => f,
            Err(e) => return Ok(Err(e)),
        };
        let c = self.table.get(&conn)?;
        let res = c.write_host_bytes(&framed).await;
        drop(zeroize(framed));
        Ok(res)
    }

    async fn write_md5_response(
        &mut self,
        conn: Resource<TcpConnection>,
        salt: Vec<u8>,
    ) -> wasmtime::Result<Result<(), String>> {
        let answer = match self.secret() {
            Ok((user, pw)) => crate::credentials::md5_response(pw, user, &salt),
            Err(e) => return Ok(Err(e)),
        };
        let c = self.table.get(&conn)?;
        Ok(c.write_host_bytes(&answer).await)
    }

    async fn scram_start(
        &mut self,
        mechanism: credentials::ScramMechanism,
    ) -> wasmtime::Result<Result<Resource<ScramState>, String>> {
        let hash = match mechanism {
            credentials::ScramMechanism::ScramSha256 => ScramHash::Sha256,
            credentials::ScramMechanism::ScramSha1 => ScramHash::Sha1,
        };
        let state = match self
            .secret()
            .and_then(|(user, pw)| ScramState::new(hash, user, pw))
        {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        Ok(Ok(self.table.push(state)?))
    }
}

fn zeroize(mut v: Vec<u8>) -> Vec<u8> {
    v.iter_mut().for_each(|b| *b = 0);
    v
}

impl credentials::HostScramClient for HostState {
    async fn client_first(&mut self, h: Resource<ScramState>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.table.get_mut(&h)?.client_first())
    }

    async fn client_final(
        &mut self,
        h: Resource<ScramState>,
        server_first: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, String>> {
        Ok(self.table.get_mut(&h)?.client_final(&server_first))
    }

    async fn verify_server_final(
        &mut self,
        h: Resource<ScramState>,
        server_final: Vec<u8>,
    ) -> wasmtime::Result<Result<(), String>> {
        Ok(self.table.get_mut(&h)?.verify_server_final(&server_final))
    }

    async fn drop(&mut self, h: Resource<ScramState>) -> wasmtime::Result<()> {
        self.table.delete(h)?;
        Ok(())
    }
}

impl report::Host for HostState {
    async fn part(&mut self, count: report::PartCount) -> wasmtime::Result<()> {
        let count = PartCount {
            name: cut(&count.name, 256).to_string(),
            items: count.items,
            bytes: count.bytes,
        };
        self.events.part(&count);
        if let Some(p) = self.parts.iter_mut().find(|p| p.name == count.name) {
            *p = count;
        } else if self.parts.len() < MAX_REPORT_ENTRIES {
            self.parts.push(count);
        } else if self.parts.len() == MAX_REPORT_ENTRIES {
            self.events.log(
                LogLevel::Warn,
                &format!("more than {MAX_REPORT_ENTRIES} parts reported: the rest is not kept"),
            );
        }
        Ok(())
    }

    async fn add_notice(&mut self, notice: report::Notice) -> wasmtime::Result<()> {
        let notice = Notice {
            kind: match notice.kind {
                report::NoticeKind::Warning => NoticeKind::Warning,
                report::NoticeKind::Skipped => NoticeKind::Skipped,
            },
            item: notice.item.map(|i| cut(&i, 256).to_string()),
            message: cut(&notice.message, 4096).to_string(),
        };
        self.events.notice(&notice);
        if self.notices.len() < MAX_REPORT_ENTRIES {
            self.notices.push(notice);
        }
        Ok(())
    }
}
