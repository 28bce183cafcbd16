//! RESP2: encoding commands and reading replies (pure logic over `BufRead`/`Write`).

use std::io::{self, BufRead, Write};

/// A RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`
    Error(String),
    /// `:1`
    Integer(i64),
    /// `$n` (None for `$-1`)
    Bulk(Option<Vec<u8>>),
    /// `*n` (None for `*-1`)
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The bytes of a bulk or simple string.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Reply::Bulk(Some(b)) => Some(b),
            Reply::Simple(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    /// Text of a bulk or simple string (lossy).
    pub fn text(&self) -> String {
        self.bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    }

    /// The elements of an array (empty for a nil array or another type).
    pub fn into_array(self) -> Vec<Reply> {
        match self {
            Reply::Array(Some(v)) => v,
            _ => Vec::new(),
        }
    }
}

/// Appends one command as a RESP array of bulk strings.
pub fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

fn line(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut l = Vec::new();
    r.read_until(b'\n', &mut l)?;
    if l.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection",
        ));
    }
    if !l.ends_with(b"\r\n") {
        return Err(bad("RESP line without CRLF"));
    }
    l.truncate(l.len() - 2);
    Ok(l)
}

fn number(b: &[u8]) -> io::Result<i64> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            bad(format!(
                "RESP: not a number: {:?}",
                String::from_utf8_lossy(b)
            ))
        })
}

/// Reads one reply.
pub fn read_reply(r: &mut impl BufRead) -> io::Result<Reply> {
    let l = line(r)?;
    let (&t, rest) = l.split_first().ok_or_else(|| bad("empty RESP line"))?;
    Ok(match t {
        b'+' => Reply::Simple(String::from_utf8_lossy(rest).into_owned()),
        b'-' => Reply::Error(String::from_utf8_lossy(rest).into_owned()),
        b':' => Reply::Integer(number(rest)?),
        b'$' => {
            let n = number(rest)?;
            if n < 0 {
                Reply::Bulk(None)
            } else {
                let mut b = vec![0u8; n as usize + 2];
                r.read_exact(&mut b)?;
                if !b.ends_with(b"\r\n") {
                    return Err(bad("bulk string without CRLF"));
                }
                b.truncate(n as usize);
                Reply::Bulk(Some(b))
            }
        }
        b'*' => {
            let n = number(rest)?;
            if n < 0 {
                Reply::Array(None)
            } else {
                let mut v = Vec::with_capacity(n.min(4096) as usize);
                for _ in 0..n {
                    v.push(read_reply(r)?);
                }
                Reply::Array(Some(v))
            }
        }
        other => return Err(bad(format!("unknown RESP type byte {other:#04x}"))),
    })
}

/// Reads one command (a RESP array of bulk strings) from a command file; `None` at the end.
/// The whole command is returned as its raw bytes, ready to send.
pub fn read_command(r: &mut impl BufRead, raw: &mut Vec<u8>) -> io::Result<bool> {
    raw.clear();
    let mut l = Vec::new();
    if r.read_until(b'\n', &mut l)? == 0 {
        return Ok(false);
    }
    if !l.starts_with(b"*") || !l.ends_with(b"\r\n") {
        return Err(bad(format!(
            "command file: expected a RESP array, found {:?}",
            String::from_utf8_lossy(&l[..l.len().min(40)])
        )));
    }
    let n = number(&l[1..l.len() - 2])?;
    raw.extend_from_slice(&l);
    for _ in 0..n {
        l.clear();
        r.read_until(b'\n', &mut l)?;
        if !l.starts_with(b"$") || !l.ends_with(b"\r\n") {
            return Err(bad("command file: expected a bulk string"));
        }
        let len = number(&l[1..l.len() - 2])?;
        if len < 0 {
            return Err(bad("command file: nil argument"));
        }
        raw.extend_from_slice(&l);
        let start = raw.len();
        raw.resize(start + len as usize + 2, 0);
        r.read_exact(&mut raw[start..])?;
        if !raw.ends_with(b"\r\n") {
            return Err(bad("command file: bulk string without CRLF"));
        }
    }
    Ok(true)
}

/// Writes `cmd` and reads its reply (the stream flushes before reading).
pub fn call<S: BufRead + Write>(s: &mut S, args: &[&[u8]]) -> io::Result<Reply> {
    let mut buf = Vec::new();
    command(&mut buf, args);
    s.write_all(&buf)?;
    read_reply(s)
}
