//! kstash addon for Redis (Addon `redis-addon`).
//!
//! - `logical-backup`: every logical database with keys (from `INFO keyspace`), every key type
//!   (string, list, hash, set, sorted set, stream), TTLs as `PEXPIREAT` (absolute, from the
//!   server's `TIME`), written as one RESP command file `dump.resp` that `redis-cli --pipe`
//!   loads. Big keys are read in chunks (`LRANGE`, `HSCAN`, `SSCAN`, `ZSCAN`, `XRANGE`), so
//!   memory stays bounded by the chunk size (and the largest single string value).
//! - `logical-backup-restore`: sends every command of every input stream (files in this format
//!   from elsewhere, e.g. redis-dump-go, work too) into a Redis that must be empty unless
//!   `allow-non-empty=true`.
//!
//! Consistency: `SCAN` is not a point-in-time view; keys written during the backup may or may
//! not be in it, and a key changed between chunks may be captured half old, half new.
//! Redis Cluster is refused (`cluster_enabled:1`).
//!
//! Authentication: the host writes the password (`AUTH [user] <password>`); the addon never
//! holds it. TLS: `rediss://` targets use direct TLS done by the host.

mod resp;

use std::io::{BufReader, Write};

use kstash_sdk::prelude::*;
use resp::{call, command, read_reply, Reply};

/// Elements per chunk of a big key, and keys per SCAN batch.
const CHUNK: usize = 1000;
/// Commands sent before their replies are read during a restore.
const PIPELINE: usize = 1000;
/// The output stream's name.
const DUMP: &str = "dump.resp";

struct Redis;

fn param(name: &str, description: &str, kind: ParamKind, default: Option<&str>) -> ParamDef {
    ParamDef {
        name: name.to_string(),
        description: description.to_string(),
        kind,
        required: false,
        default_value: default.map(str::to_string),
    }
}

impl Addon for Redis {
    fn describe() -> Description {
        Description {
            name: "redis-addon".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            summary: "Redis logical backup as a RESP command file (redis-cli --pipe loads it)"
                .to_string(),
            tasks: vec![
                TaskDef {
                    name: "logical-backup".to_string(),
                    kind: TaskKind::Backup,
                    description: "Dumps every key of every database, with TTLs.".to_string(),
                    params: vec![],
                },
                TaskDef {
                    name: "logical-backup-restore".to_string(),
                    kind: TaskKind::Restore,
                    description: "Loads the dump into an empty Redis.".to_string(),
                    params: vec![param(
                        "allow-non-empty",
                        "Restore into a Redis that already holds keys",
                        ParamKind::Boolean,
                        Some("false"),
                    )],
                },
            ],
            components: vec!["dump".to_string()],
        }
    }

    fn backup(task: &Task) -> Result<TaskSummary, TaskError> {
        task.params().reject_unknown(&[])?;
        let mut c = connect(task)?;
        let dbs = databases(&mut c)?;
        let mut out = OutputStream::open(DUMP)?;
        let mut total_keys = 0u64;
        for db in dbs {
            let keys = backup_db(&mut c, db, &mut out)?;
            total_keys += keys.0;
            report::part(&format!("db{db}"), keys.0, keys.1);
        }
        let bytes = out.finish()?;
        Ok(TaskSummary {
            items: total_keys,
            bytes,
            warnings: vec![],
        })
    }

    fn restore(task: &Task) -> Result<TaskSummary, TaskError> {
        task.params().reject_unknown(&["allow-non-empty"])?;
        let allow = task.params().boolean_or("allow-non-empty", false)?;
        let mut c = connect(task)?;
        if !allow {
            let dbs = databases(&mut c)?;
            if !dbs.is_empty() {
                return Err(TaskError::InvalidParams(format!(
                    "the target Redis is not empty (databases with keys: {}); restore into an empty one or set allow-non-empty=true",
                    dbs.iter().map(|d| format!("db{d}")).collect::<Vec<_>>().join(", ")
                )));
            }
        }
        let (mut commands, mut bytes) = (0u64, 0u64);
        let names = input_names();
        if names.is_empty() {
            return Err(TaskError::Io(
                "the snapshot has no stream to restore".to_string(),
            ));
        }
        for name in &names {
            let input = InputStream::open(name)?;
            let (n, b) = restore_stream(&mut c, name, input)?;
            commands += n;
            bytes += b;
            report::part(name, n, b);
        }
        Ok(TaskSummary {
            items: commands,
            bytes,
            warnings: vec![],
        })
    }
}

export_addon!(Redis);

fn remote(what: &str, r: &Reply) -> TaskError {
    TaskError::Remote(format!("{what}: unexpected reply {r:?}"))
}

fn ok_or_remote(what: &str, r: Reply) -> Result<Reply, TaskError> {
    match r {
        Reply::Error(e) => Err(TaskError::Remote(format!("{what}: {e}"))),
        r => Ok(r),
    }
}

/// Connects, starts TLS for `rediss://`, authenticates through the host, refuses a cluster.
fn connect(task: &Task) -> Result<TcpStream, TaskError> {
    let url = task.target_url();
    let tls = url.starts_with("rediss://");
    if !(tls || url.starts_with("redis://")) {
        return Err(TaskError::InvalidParams(format!(
            "target URL {url:?}: the Redis addon needs redis:// or rediss://"
        )));
    }
    let mut c = TcpStream::connect()?;
    if tls {
        c.start_tls()?;
    }
    if credentials::has_secret() {
        let mut head = Vec::new();
        match credentials::username().filter(|u| !u.is_empty()) {
            Some(user) => {
                head.extend_from_slice(b"*3\r\n$4\r\nAUTH\r\n");
                head.extend_from_slice(format!("${}\r\n{user}\r\n", user.len()).as_bytes());
            }
            None => head.extend_from_slice(b"*2\r\n$4\r\nAUTH\r\n"),
        }
        c.write_all(&head)?;
        c.write_secret(credentials::SecretEncoding::RespBulkString)?;
        match read_reply(&mut c)? {
            Reply::Simple(s) if s == "OK" => {}
            Reply::Error(e) => return Err(TaskError::Connect(format!("AUTH failed: {e}"))),
            r => return Err(remote("AUTH", &r)),
        }
    }
    let info = ok_or_remote("INFO cluster", call(&mut c, &[b"INFO", b"cluster"])?)?.text();
    if info.lines().any(|l| l.trim() == "cluster_enabled:1") {
        return Err(TaskError::InvalidParams(
            "the target is a Redis Cluster node: cluster mode is not supported (back up each primary as a standalone target is not offered either)".to_string(),
        ));
    }
    Ok(c)
}

/// The databases holding keys, from `INFO keyspace` (`db3:keys=...`).
fn databases(c: &mut TcpStream) -> Result<Vec<u32>, TaskError> {
    let info = ok_or_remote("INFO keyspace", call(c, &[b"INFO", b"keyspace"])?)?.text();
    let mut dbs: Vec<u32> = info
        .lines()
        .filter_map(|l| l.strip_prefix("db")?.split(':').next()?.parse().ok())
        .collect();
    dbs.sort_unstable();
    Ok(dbs)
}

fn server_time_ms(c: &mut TcpStream) -> Result<i64, TaskError> {
    let r = ok_or_remote("TIME", call(c, &[b"TIME"])?)?.into_array();
    let secs: i64 = r
        .first()
        .map(|r| r.text())
        .unwrap_or_default()
        .parse()
        .unwrap_or(0);
    let micros: i64 = r
        .get(1)
        .map(|r| r.text())
        .unwrap_or_default()
        .parse()
        .unwrap_or(0);
    if secs == 0 {
        return Err(TaskError::Remote("TIME: unexpected reply".to_string()));
    }
    Ok(secs * 1000 + micros / 1000)
}

/// Writes one database; returns (keys, bytes written).
fn backup_db(c: &mut TcpStream, db: u32, out: &mut OutputStream) -> Result<(u64, u64), TaskError> {
    let dbs = db.to_string();
    ok_or_remote("SELECT", call(c, &[b"SELECT", dbs.as_bytes()])?)?;
    let start = out.bytes_written();
    let mut buf = Vec::new();
    command(&mut buf, &[b"SELECT", dbs.as_bytes()]);
    out.write_all(&buf)?;
    let mut cursor = b"0".to_vec();
    let mut keys = 0u64;
    loop {
        let r = ok_or_remote("SCAN", call(c, &[b"SCAN", &cursor, b"COUNT", b"1000"])?)?;
        let mut parts = r.into_array().into_iter();
        cursor = parts
            .next()
            .and_then(|r| r.bytes().map(<[u8]>::to_vec))
            .unwrap_or_default();
        let batch: Vec<Vec<u8>> = parts
            .next()
            .map(Reply::into_array)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|r| r.bytes().map(<[u8]>::to_vec))
            .collect();
        let now = server_time_ms(c)?;
        keys += dump_batch(c, &batch, now, out)?;
        progress::report(keys, None, "keys", &format!("db{db}"));
        if cursor == b"0" || cursor.is_empty() {
            break;
        }
    }
    Ok((keys, out.bytes_written() - start))
}

/// Keys whose first reads are pipelined together: with [`FIRST_PAGE`] items per collection and
/// strings up to [`PIPELINED_STRING`] bytes, one window holds at most a few MiB of replies.
const WINDOW: usize = 100;
/// Items of a collection's first, pipelined read (the rest is read in chunks of [`CHUNK`]).
const FIRST_PAGE: usize = 100;
/// Strings longer than this are read on their own, not in a pipelined window.
const PIPELINED_STRING: u64 = 64 * 1024;

/// What the first pipelined round trip tells of a key.
struct KeyMeta {
    ty: String,
    ttl_ms: i64,
    /// `STRLEN` of a string (None for other types, whose `STRLEN` answers WRONGTYPE).
    strlen: Option<u64>,
}

/// `TYPE`, `PTTL` and `STRLEN` of every key of `keys`, pipelined in one write.
fn key_metas(c: &mut TcpStream, keys: &[Vec<u8>]) -> Result<Vec<KeyMeta>, TaskError> {
    let mut buf = Vec::new();
    for key in keys {
        command(&mut buf, &[b"TYPE", key]);
        command(&mut buf, &[b"PTTL", key]);
        command(&mut buf, &[b"STRLEN", key]);
    }
    c.write_all(&buf)?;
    let mut out = Vec::with_capacity(keys.len());
    for _ in keys {
        let ty = ok_or_remote("TYPE", read_reply(c)?)?.text();
        let ttl_ms = match ok_or_remote("PTTL", read_reply(c)?)? {
            Reply::Integer(n) => n,
            r => return Err(remote("PTTL", &r)),
        };
        let strlen = match read_reply(c)? {
            Reply::Integer(n) => u64::try_from(n).ok(),
            _ => None,
        };
        out.push(KeyMeta { ty, ttl_ms, strlen });
    }
    Ok(out)
}

/// Queues the first read of a key's value for a pipelined window: the value of a string up to
/// [`PIPELINED_STRING`] bytes, the first [`FIRST_PAGE`] items of a list, hash, set or sorted
/// set. False for what is read key by key (long strings, streams, other types).
fn first_read(m: &KeyMeta, key: &[u8], buf: &mut Vec<u8>) -> bool {
    let last = (FIRST_PAGE - 1).to_string();
    let page = FIRST_PAGE.to_string();
    match m.ty.as_str() {
        "string" if m.strlen.is_some_and(|n| n <= PIPELINED_STRING) => command(buf, &[b"GET", key]),
        "list" => command(buf, &[b"LRANGE", key, b"0", last.as_bytes()]),
        "hash" => command(buf, &[b"HSCAN", key, b"0", b"COUNT", page.as_bytes()]),
        "set" => command(buf, &[b"SSCAN", key, b"0", b"COUNT", page.as_bytes()]),
        "zset" => command(buf, &[b"ZSCAN", key, b"0", b"COUNT", page.as_bytes()]),
        _ => return false,
    }
    true
}

/// Writes the keys of one SCAN batch in order (data, then TTL): one pipelined round trip for
/// the batch's `TYPE`/`PTTL`/`STRLEN`, one per [`WINDOW`] keys for their first reads, more
/// only for keys bigger than that. Returns how many were written (a key that vanished
/// meanwhile is not).
fn dump_batch(
    c: &mut TcpStream,
    keys: &[Vec<u8>],
    now_ms: i64,
    out: &mut OutputStream,
) -> Result<u64, TaskError> {
    let metas = key_metas(c, keys)?;
    let mut written = 0;
    for (keys, metas) in keys.chunks(WINDOW).zip(metas.chunks(WINDOW)) {
        let mut buf = Vec::new();
        let pipelined: Vec<bool> = keys
            .iter()
            .zip(metas)
            .map(|(k, m)| first_read(m, k, &mut buf))
            .collect();
        c.write_all(&buf)?;
        let mut firsts = Vec::with_capacity(keys.len());
        for ((&p, m), key) in pipelined.iter().zip(metas).zip(keys) {
            firsts.push(if p {
                let what = format!("reading {} {:?}", m.ty, String::from_utf8_lossy(key));
                Some(ok_or_remote(&what, read_reply(c)?)?)
            } else {
                None
            });
        }
        for ((key, m), first) in keys.iter().zip(metas).zip(firsts) {
            if dump_key(c, key, &m.ty, first, out)? {
                written += 1;
                if m.ttl_ms > 0 {
                    let at = (now_ms + m.ttl_ms).to_string();
                    let mut buf = Vec::new();
                    command(&mut buf, &[b"PEXPIREAT", key, at.as_bytes()]);
                    out.write_all(&buf)?;
                }
            }
        }
    }
    Ok(written)
}

fn bulk_items(r: Reply) -> Vec<Vec<u8>> {
    r.into_array()
        .into_iter()
        .filter_map(|r| r.bytes().map(<[u8]>::to_vec))
        .collect()
}

/// Emits `cmd key items...` for one chunk.
fn emit(
    out: &mut OutputStream,
    cmd: &[u8],
    key: &[u8],
    items: &[Vec<u8>],
) -> Result<(), TaskError> {
    if items.is_empty() {
        return Ok(());
    }
    let mut args: Vec<&[u8]> = Vec::with_capacity(items.len() + 2);
    args.push(cmd);
    args.push(key);
    args.extend(items.iter().map(Vec::as_slice));
    let mut buf = Vec::new();
    command(&mut buf, &args);
    out.write_all(&buf)?;
    Ok(())
}

/// `*SCAN key cursor COUNT n` until the cursor is 0, emitting each chunk (swapping pairs for
/// ZADD); `first` is the answer to the first page (cursor 0), already read.
fn scan_key(
    c: &mut TcpStream,
    scan: &[u8],
    key: &[u8],
    out: &mut OutputStream,
    emit_cmd: &[u8],
    score_first: bool,
    first: Reply,
) -> Result<(), TaskError> {
    let mut reply = first;
    loop {
        let mut parts = reply.into_array().into_iter();
        let cursor = parts
            .next()
            .and_then(|r| r.bytes().map(<[u8]>::to_vec))
            .unwrap_or_default();
        let mut items = parts.next().map(bulk_items).unwrap_or_default();
        if score_first {
            for pair in items.chunks_mut(2) {
                pair.swap(0, 1);
            }
        }
        emit(out, emit_cmd, key, &items)?;
        if cursor == b"0" || cursor.is_empty() {
            return Ok(());
        }
        reply = ok_or_remote("SCAN", call(c, &[scan, key, &cursor, b"COUNT", b"1000"])?)?;
    }
}

/// Writes one key's data (of type `ty`; `first` is its pipelined first read, see
/// [`first_read`]); false if it vanished meanwhile. The caller writes its TTL.
fn dump_key(
    c: &mut TcpStream,
    key: &[u8],
    ty: &str,
    first: Option<Reply>,
    out: &mut OutputStream,
) -> Result<bool, TaskError> {
    match (ty, first) {
        ("none", _) => return Ok(false),
        ("string", first) => {
            let v = match first {
                Some(v) => v,
                None => ok_or_remote("GET", call(c, &[b"GET", key])?)?,
            };
            let Some(v) = v.bytes() else { return Ok(false) };
            let mut buf = Vec::new();
            command(&mut buf, &[b"SET", key, v]);
            out.write_all(&buf)?;
        }
        ("list", Some(first)) => {
            let mut items = bulk_items(first);
            let (mut start, mut asked) = (0usize, FIRST_PAGE);
            loop {
                emit(out, b"RPUSH", key, &items)?;
                if items.len() < asked {
                    break;
                }
                start += asked;
                asked = CHUNK;
                let (s, e) = (start.to_string(), (start + CHUNK - 1).to_string());
                items = bulk_items(ok_or_remote(
                    "LRANGE",
                    call(c, &[b"LRANGE", key, s.as_bytes(), e.as_bytes()])?,
                )?);
            }
        }
        ("hash", Some(first)) => scan_key(c, b"HSCAN", key, out, b"HSET", false, first)?,
        ("set", Some(first)) => scan_key(c, b"SSCAN", key, out, b"SADD", false, first)?,
        ("zset", Some(first)) => scan_key(c, b"ZSCAN", key, out, b"ZADD", true, first)?,
        ("stream", _) => dump_stream(c, key, out)?,
        (other, _) => {
            report::skipped(
                &String::from_utf8_lossy(key),
                &format!("key type {other:?} is not supported"),
            );
            return Ok(false);
        }
    }
    Ok(true)
}

/// A stream: entries with `XADD key id field value...` in chunks of `XRANGE`, then its
/// consumer groups (`XGROUP CREATE key group last-delivered-id`; pending entries are not kept).
fn dump_stream(c: &mut TcpStream, key: &[u8], out: &mut OutputStream) -> Result<(), TaskError> {
    let mut start = b"-".to_vec();
    let mut last_id: Option<Vec<u8>> = None;
    loop {
        let n = CHUNK.to_string();
        let r = ok_or_remote(
            "XRANGE",
            call(c, &[b"XRANGE", key, &start, b"+", b"COUNT", n.as_bytes()])?,
        )?;
        let entries = r.into_array();
        let count = entries.len();
        for e in entries {
            let mut e = e.into_array().into_iter();
            let id = e
                .next()
                .and_then(|r| r.bytes().map(<[u8]>::to_vec))
                .unwrap_or_default();
            let fields = e.next().map(bulk_items).unwrap_or_default();
            let mut args: Vec<&[u8]> = vec![b"XADD", key, &id];
            args.extend(fields.iter().map(Vec::as_slice));
            let mut buf = Vec::new();
            command(&mut buf, &args);
            out.write_all(&buf)?;
            last_id = Some(id);
        }
        if count < CHUNK {
            break;
        }
        let Some(id) = &last_id else { break };
        start = [b"(".as_slice(), id].concat();
    }
    // The stream's own last id (it may be past the last entry after deletions).
    let info = ok_or_remote("XINFO STREAM", call(c, &[b"XINFO", b"STREAM", key])?)?.into_array();
    let mut it = info.into_iter();
    while let Some(k) = it.next() {
        let v = it.next();
        if k.text() == "last-generated-id" {
            if let Some(id) = v.and_then(|v| v.bytes().map(<[u8]>::to_vec)) {
                let mut buf = Vec::new();
                command(&mut buf, &[b"XSETID", key, &id]);
                out.write_all(&buf)?;
            }
        }
    }
    let groups = ok_or_remote("XINFO GROUPS", call(c, &[b"XINFO", b"GROUPS", key])?)?.into_array();
    for g in groups {
        let mut it = g.into_array().into_iter();
        let (mut name, mut last) = (None, None);
        while let Some(k) = it.next() {
            let v = it.next();
            match k.text().as_str() {
                "name" => name = v.and_then(|v| v.bytes().map(<[u8]>::to_vec)),
                "last-delivered-id" => last = v.and_then(|v| v.bytes().map(<[u8]>::to_vec)),
                _ => {}
            }
        }
        if let (Some(name), Some(last)) = (name, last) {
            let mut buf = Vec::new();
            command(&mut buf, &[b"XGROUP", b"CREATE", key, &name, &last]);
            out.write_all(&buf)?;
        }
    }
    Ok(())
}

/// Sends every command of one stream, `PIPELINE` at a time; fails on the first error reply
/// naming the stream and the command's position. Returns (commands, bytes).
fn restore_stream(
    c: &mut TcpStream,
    name: &str,
    input: InputStream,
) -> Result<(u64, u64), TaskError> {
    let mut r = BufReader::with_capacity(256 * 1024, input);
    let mut raw = Vec::new();
    let (mut sent, mut bytes) = (0u64, 0u64);
    let mut pending = 0usize;
    loop {
        let more = resp::read_command(&mut r, &mut raw)
            .map_err(|e| TaskError::Io(format!("{name}: command {}: {e}", sent + 1)))?;
        if more {
            c.write_all(&raw)?;
            bytes += raw.len() as u64;
            sent += 1;
            pending += 1;
        }
        if pending == PIPELINE || (!more && pending > 0) {
            let first = sent - pending as u64;
            for i in 0..pending {
                if let Reply::Error(e) = read_reply(c)? {
                    return Err(TaskError::Remote(format!(
                        "{name}: command {} failed: {e}",
                        first + i as u64 + 1
                    )));
                }
            }
            pending = 0;
            progress::report(sent, None, "commands", name);
        }
        if !more {
            return Ok((sent, bytes));
        }
    }
}
