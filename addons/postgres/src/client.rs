//! A small blocking PostgreSQL client over a [`PgStream`]: startup (TLS, authentication through
//! the environment), simple queries with text results, and streamed `COPY` in both directions.
//! Memory is bounded: `CopyData` is passed through in chunks, never held whole.

use crate::conn::{Connector, PasswordMethod, PgStream, TlsMode};
use crate::error::{Error, Result, ServerError};
use crate::wire::{self, Fields};
use std::io::{self, Write};

const READ_CHUNK: usize = 64 * 1024;
const WRITE_FLUSH: usize = 256 * 1024;

/// The text result of a query: column names and rows (`None` = SQL NULL).
#[derive(Debug, Clone, Default)]
pub struct Rows {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Row values, in order.
    pub rows: Vec<Vec<Option<String>>>,
}

impl Rows {
    /// Iterates the rows with by-name access.
    pub fn iter(&self) -> impl Iterator<Item = Row<'_>> {
        self.rows.iter().map(move |v| Row {
            columns: &self.columns,
            values: v,
        })
    }

    /// The first row, if any.
    pub fn first(&self) -> Option<Row<'_>> {
        self.iter().next()
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there is no row.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// One row with by-name access. Asking for a column the query did not select is a bug in the
/// addon and panics (the host tests cover every query).
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    columns: &'a [String],
    values: &'a [Option<String>],
}

impl<'a> Row<'a> {
    fn idx(&self, name: &str) -> usize {
        self.columns
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("query has no column {name:?} (columns: {:?})", self.columns))
    }

    /// The value, `None` for NULL.
    pub fn opt(&self, name: &str) -> Option<&'a str> {
        self.values[self.idx(name)].as_deref()
    }

    /// The value, `""` for NULL.
    pub fn str(&self, name: &str) -> &'a str {
        self.opt(name).unwrap_or("")
    }

    /// The value as owned text (`""` for NULL).
    pub fn string(&self, name: &str) -> String {
        self.str(name).to_string()
    }

    /// A boolean column (`t`).
    pub fn bool(&self, name: &str) -> bool {
        self.opt(name) == Some("t")
    }

    /// An integer column (0 for NULL or garbage).
    pub fn i64(&self, name: &str) -> i64 {
        self.str(name).parse().unwrap_or(0)
    }

    /// An OID column.
    pub fn oid(&self, name: &str) -> u32 {
        self.str(name).parse().unwrap_or(0)
    }
}

/// Feeds `COPY … FROM STDIN` data: each call appends the next piece to `buf` and returns
/// `false` once the data is exhausted (nothing appended then).
pub trait CopySource {
    /// Appends the next piece of COPY data to `buf`.
    fn next_chunk(&mut self, buf: &mut Vec<u8>) -> Result<bool>;
}

/// What a `COPY … TO STDOUT` moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Rows (CopyData messages in text format are one row each).
    pub rows: u64,
    /// Bytes of COPY data.
    pub bytes: u64,
}

/// A connected, authenticated session.
pub struct Client<S: PgStream> {
    stream: S,
    rbuf: Vec<u8>,
    rpos: usize,
    rend: usize,
    wbuf: Vec<u8>,
    database: String,
    user: String,
    server_params: Vec<(String, String)>,
    notices: Vec<ServerError>,
    broken: bool,
}

impl<S: PgStream> Client<S> {
    /// Connects to `database` as the connector's user, asking for TLS as the connector says,
    /// and authenticates through the stream.
    pub fn connect<C: Connector<Stream = S>>(connector: &mut C, database: &str) -> Result<Self> {
        let user = connector.user();
        let ctx = || format!("connecting to database {database:?}");
        let mut stream = connector.connect().map_err(|source| Error::Io {
            context: ctx(),
            source,
        })?;
        let mode = connector.tls_mode();
        if mode != TlsMode::Disable {
            let io = |source| Error::Io {
                context: ctx(),
                source,
            };
            stream.write_all(&wire::ssl_request()).map_err(io)?;
            stream.flush().map_err(io)?;
            let mut answer = [0u8; 1];
            stream.read_exact(&mut answer).map_err(io)?;
            match answer[0] {
                b'S' => stream
                    .start_tls()
                    .map_err(|e| Error::Tls(format!("upgrade after SSLRequest: {e}")))?,
                b'N' if mode == TlsMode::Require => {
                    return Err(Error::Tls(
                        "the server does not accept TLS (answered N to SSLRequest)".into(),
                    ))
                }
                b'N' => {}
                other => {
                    return Err(Error::Protocol {
                        context: ctx(),
                        detail: format!("unexpected answer {other:#04x} to SSLRequest"),
                    })
                }
            }
        }
        let mut c = Client {
            stream,
            rbuf: vec![0; READ_CHUNK],
            rpos: 0,
            rend: 0,
            wbuf: Vec::with_capacity(WRITE_FLUSH),
            database: database.to_string(),
            user: user.clone(),
            server_params: Vec::new(),
            notices: Vec::new(),
            broken: false,
        };
        let startup = wire::startup(&[
            ("user", &user),
            ("database", database),
            ("application_name", "kstash"),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO"),
        ]);
        c.wbuf.extend_from_slice(&startup);
        c.flush(&ctx())?;
        c.authenticate()?;
        Ok(c)
    }

    fn auth_err(&self, reason: impl Into<String>) -> Error {
        Error::Auth {
            user: self.user.clone(),
            database: self.database.clone(),
            reason: reason.into(),
        }
    }

    fn authenticate(&mut self) -> Result<()> {
        let ctx = format!("connecting to database {:?}", self.database);
        loop {
            let (tag, body) = self.read_message(&ctx)?;
            match tag {
                b'R' => {
                    let mut f = Fields::new(&body);
                    let kind = f.i32().unwrap_or(-1);
                    match kind {
                        0 => {}
                        3 => self
                            .stream
                            .send_password(PasswordMethod::Cleartext)
                            .map_err(|e| self.auth_err(e))?,
                        5 => {
                            let s = f.bytes(4).ok_or_else(|| self.auth_err("short MD5 salt"))?;
                            let salt = [s[0], s[1], s[2], s[3]];
                            self.stream
                                .send_password(PasswordMethod::Md5 { salt })
                                .map_err(|e| self.auth_err(e))?;
                        }
                        10 => {
                            let mut mechs = Vec::new();
                            while let Some(m) = f.cstr() {
                                if m.is_empty() {
                                    break;
                                }
                                mechs.push(m);
                            }
                            let (mech, first) =
                                self.stream.sasl_start(&mechs).map_err(|e| self.auth_err(e))?;
                            wire::sasl_initial(&mut self.wbuf, &mech, &first);
                            self.flush(&ctx)?;
                        }
                        11 => {
                            let resp = self
                                .stream
                                .sasl_continue(f.rest())
                                .map_err(|e| self.auth_err(e))?;
                            wire::message(&mut self.wbuf, b'p', &resp);
                            self.flush(&ctx)?;
                        }
                        12 => self
                            .stream
                            .sasl_finish(f.rest())
                            .map_err(|e| self.auth_err(e))?,
                        other => {
                            return Err(self.auth_err(format!(
                                "the server asks for authentication method {other}, which kstash does not support (use scram-sha-256, md5 or password)"
                            )))
                        }
                    }
                }
                b'E' => {
                    let e = wire::parse_error_fields(&body);
                    self.broken = true;
                    if e.code.starts_with("28") {
                        return Err(self.auth_err(e.to_string()));
                    }
                    return Err(Error::Server {
                        context: ctx,
                        server: Box::new(e),
                    });
                }
                b'K' | b'v' => {}
                b'Z' => return Ok(()),
                other => {
                    return Err(Error::Protocol {
                        context: ctx,
                        detail: format!("unexpected message {:?} during startup", other as char),
                    })
                }
            }
        }
    }

    /// The database this session is connected to.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The user this session authenticated as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// A `ParameterStatus` value the server reported (e.g. `server_version`).
    pub fn server_param(&self, name: &str) -> Option<&str> {
        self.server_params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Takes the notices (warnings) received so far.
    pub fn take_notices(&mut self) -> Vec<ServerError> {
        std::mem::take(&mut self.notices)
    }

    /// Whether the connection failed and must not be used any more.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    fn context(&self, what: &str) -> String {
        format!("database {:?}: {what}", self.database)
    }

    fn io_err(&mut self, ctx: &str, source: io::Error) -> Error {
        self.broken = true;
        Error::Io {
            context: ctx.to_string(),
            source,
        }
    }

    fn flush(&mut self, ctx: &str) -> Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let r = self
            .stream
            .write_all(&self.wbuf)
            .and_then(|_| self.stream.flush());
        self.wbuf.clear();
        r.map_err(|e| self.io_err(ctx, e))
    }

    fn fill(&mut self, ctx: &str) -> Result<()> {
        if self.rpos == self.rend {
            self.rpos = 0;
            self.rend = 0;
        }
        if self.rend == self.rbuf.len() {
            self.rbuf.copy_within(self.rpos..self.rend, 0);
            self.rend -= self.rpos;
            self.rpos = 0;
        }
        loop {
            match self.stream.read(&mut self.rbuf[self.rend..]) {
                Ok(0) => {
                    return Err(self.io_err(
                        ctx,
                        io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the server closed the connection",
                        ),
                    ))
                }
                Ok(n) => {
                    self.rend += n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.io_err(ctx, e)),
            }
        }
    }

    fn read_exact_buf(&mut self, n: usize, ctx: &str) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            if self.rpos == self.rend {
                self.fill(ctx)?;
            }
            let take = (n - out.len()).min(self.rend - self.rpos);
            out.extend_from_slice(&self.rbuf[self.rpos..self.rpos + take]);
            self.rpos += take;
        }
        Ok(out)
    }

    fn read_header(&mut self, ctx: &str) -> Result<(u8, usize)> {
        while self.rend - self.rpos < 5 {
            self.fill(ctx)?;
        }
        let b = &self.rbuf[self.rpos..self.rpos + 5];
        let tag = b[0];
        let len = i32::from_be_bytes([b[1], b[2], b[3], b[4]]);
        self.rpos += 5;
        if len < 4 || len as usize - 4 > wire::MAX_BUFFERED_MESSAGE && tag != b'd' {
            self.broken = true;
            return Err(Error::Protocol {
                context: ctx.to_string(),
                detail: format!("message {:?} with length {len}", tag as char),
            });
        }
        Ok((tag, len as usize - 4))
    }

    /// Reads one message, handling the asynchronous ones (notices, parameter status,
    /// notifications) on the way.
    fn read_message(&mut self, ctx: &str) -> Result<(u8, Vec<u8>)> {
        loop {
            let (tag, len) = self.read_header(ctx)?;
            let body = self.read_exact_buf(len, ctx)?;
            match tag {
                b'N' => self.notices.push(wire::parse_error_fields(&body)),
                b'S' => {
                    let mut f = Fields::new(&body);
                    if let (Some(k), Some(v)) = (f.cstr(), f.cstr()) {
                        self.server_params.retain(|(n, _)| *n != k);
                        self.server_params.push((k, v));
                    }
                }
                b'A' => {}
                _ => return Ok((tag, body)),
            }
        }
    }

    /// Reads until `ReadyForQuery` after an error, then returns the error.
    fn drain_with(&mut self, ctx: &str, err: ServerError) -> Error {
        let fatal = err.severity == "FATAL" || err.severity == "PANIC";
        if fatal {
            self.broken = true;
        } else {
            loop {
                match self.read_message(ctx) {
                    Ok((b'Z', _)) => break,
                    Ok(_) => continue,
                    Err(_) => break,
                }
            }
        }
        Error::Server {
            context: ctx.to_string(),
            server: Box::new(err),
        }
    }

    /// Runs `sql` (one or more statements) and returns the rows of the last result.
    pub fn query(&mut self, what: &str, sql: &str) -> Result<Rows> {
        let ctx = self.context(what);
        wire::query(&mut self.wbuf, sql);
        self.flush(&ctx)?;
        let mut rows = Rows::default();
        let mut failure: Option<ServerError> = None;
        loop {
            let (tag, body) = self.read_message(&ctx)?;
            match tag {
                b'T' => {
                    rows = Rows {
                        columns: wire::parse_row_description(&body).unwrap_or_default(),
                        rows: Vec::new(),
                    }
                }
                b'D' => {
                    rows.rows
                        .push(wire::parse_data_row(&body).ok_or_else(|| Error::Protocol {
                            context: ctx.clone(),
                            detail: "malformed DataRow".into(),
                        })?)
                }
                b'C' | b'I' => {}
                b'E' => {
                    let e = wire::parse_error_fields(&body);
                    if e.severity == "FATAL" || e.severity == "PANIC" {
                        return Err(self.drain_with(&ctx, e));
                    }
                    failure = Some(e);
                }
                b'G' => {
                    // A COPY FROM STDIN where a plain statement was expected: refuse it.
                    wire::message(
                        &mut self.wbuf,
                        b'f',
                        b"COPY FROM STDIN is not expected here\0",
                    );
                    self.flush(&ctx)?;
                }
                b'H' | b'd' | b'c' => {}
                b'Z' => break,
                other => {
                    self.broken = true;
                    return Err(Error::Protocol {
                        context: ctx,
                        detail: format!("unexpected message {:?}", other as char),
                    });
                }
            }
        }
        match failure {
            Some(e) => Err(Error::Server {
                context: ctx,
                server: Box::new(e),
            }),
            None => Ok(rows),
        }
    }

    /// Runs `sql` for its effect.
    pub fn execute(&mut self, what: &str, sql: &str) -> Result<()> {
        self.query(what, sql).map(|_| ())
    }

    /// Runs a `COPY … TO STDOUT` and passes its data to `sink` as it arrives. A failing sink
    /// is reported as [`Error::Stream`] naming `sink_name`.
    pub fn copy_out(
        &mut self,
        what: &str,
        sql: &str,
        sink: &mut dyn Write,
        sink_name: &str,
    ) -> Result<CopyStats> {
        let ctx = self.context(what);
        wire::query(&mut self.wbuf, sql);
        self.flush(&ctx)?;
        let mut stats = CopyStats::default();
        let mut failure: Option<ServerError> = None;
        let mut sink_error: Option<io::Error> = None;
        loop {
            let (tag, len) = self.read_header(&ctx)?;
            if tag == b'd' {
                stats.rows += 1;
                stats.bytes += len as u64;
                let mut left = len;
                while left > 0 {
                    if self.rpos == self.rend {
                        self.fill(&ctx)?;
                    }
                    let take = left.min(self.rend - self.rpos);
                    if sink_error.is_none() {
                        if let Err(e) = sink.write_all(&self.rbuf[self.rpos..self.rpos + take]) {
                            sink_error = Some(e);
                        }
                    }
                    self.rpos += take;
                    left -= take;
                }
                continue;
            }
            let body = self.read_exact_buf(len, &ctx)?;
            match tag {
                b'H' | b'c' | b'C' | b'A' | b'T' | b'D' | b'I' => {}
                b'N' => self.notices.push(wire::parse_error_fields(&body)),
                b'S' => {}
                b'E' => {
                    let e = wire::parse_error_fields(&body);
                    if e.severity == "FATAL" || e.severity == "PANIC" {
                        return Err(self.drain_with(&ctx, e));
                    }
                    failure = Some(e);
                }
                b'Z' => break,
                other => {
                    self.broken = true;
                    return Err(Error::Protocol {
                        context: ctx,
                        detail: format!("unexpected message {:?} in COPY OUT", other as char),
                    });
                }
            }
        }
        if let Some(e) = failure {
            return Err(Error::Server {
                context: ctx,
                server: Box::new(e),
            });
        }
        if let Some(source) = sink_error {
            return Err(Error::Stream {
                stream: sink_name.to_string(),
                source,
            });
        }
        Ok(stats)
    }

    /// Runs a `COPY … FROM STDIN`, feeding it from `source` until it is exhausted. Returns the
    /// rows the server reports. If the server refuses the COPY, `source` is still drained so
    /// that a script reader stands after the data.
    pub fn copy_in(&mut self, what: &str, sql: &str, source: &mut dyn CopySource) -> Result<u64> {
        let ctx = self.context(what);
        wire::query(&mut self.wbuf, sql);
        self.flush(&ctx)?;
        // Wait for CopyInResponse (or an error).
        let mut failure: Option<ServerError> = None;
        loop {
            let (tag, body) = self.read_message(&ctx)?;
            match tag {
                b'G' => break,
                b'E' => {
                    let e = wire::parse_error_fields(&body);
                    if e.severity == "FATAL" || e.severity == "PANIC" {
                        return Err(self.drain_with(&ctx, e));
                    }
                    failure = Some(e);
                }
                b'Z' => {
                    let mut sink = Vec::new();
                    while source.next_chunk(&mut sink)? {
                        sink.clear();
                    }
                    return Err(Error::Server {
                        context: ctx,
                        server: Box::new(failure.unwrap_or_else(|| ServerError {
                            severity: "ERROR".into(),
                            message: "the statement is not a COPY FROM STDIN".into(),
                            ..Default::default()
                        })),
                    });
                }
                _ => {}
            }
        }
        let mut chunk = Vec::with_capacity(READ_CHUNK);
        let mut source_error = None;
        loop {
            chunk.clear();
            match source.next_chunk(&mut chunk) {
                Ok(true) => {
                    if chunk.is_empty() {
                        continue;
                    }
                    wire::message_header(&mut self.wbuf, b'd', chunk.len());
                    if self.wbuf.len() + chunk.len() > WRITE_FLUSH {
                        self.flush(&ctx)?;
                        let r = self.stream.write_all(&chunk);
                        if let Err(e) = r {
                            return Err(self.io_err(&ctx, e));
                        }
                    } else {
                        self.wbuf.extend_from_slice(&chunk);
                    }
                }
                Ok(false) => break,
                Err(e) => {
                    source_error = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = source_error {
            wire::message(&mut self.wbuf, b'f', b"the input failed\0");
            self.flush(&ctx)?;
            loop {
                match self.read_message(&ctx)? {
                    (b'Z', _) => break,
                    _ => continue,
                }
            }
            return Err(e);
        }
        wire::message(&mut self.wbuf, b'c', &[]);
        self.flush(&ctx)?;
        let mut rows = 0u64;
        loop {
            let (tag, body) = self.read_message(&ctx)?;
            match tag {
                b'C' => {
                    let tagtext = Fields::new(&body).cstr().unwrap_or_default();
                    rows = tagtext
                        .rsplit(' ')
                        .next()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                }
                b'E' => {
                    let e = wire::parse_error_fields(&body);
                    if e.severity == "FATAL" || e.severity == "PANIC" {
                        return Err(self.drain_with(&ctx, e));
                    }
                    failure = Some(e);
                }
                b'Z' => break,
                _ => {}
            }
        }
        match failure {
            Some(e) => Err(Error::Server {
                context: ctx,
                server: Box::new(e),
            }),
            None => Ok(rows),
        }
    }

    /// Says goodbye (`Terminate`); errors are ignored.
    pub fn close(mut self) {
        if !self.broken {
            wire::message(&mut self.wbuf, b'X', &[]);
            let _ = self.flush("closing");
        }
    }
}
