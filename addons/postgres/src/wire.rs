//! PostgreSQL's frontend/backend protocol (version 3.0): message framing and the few frontend
//! messages the addon sends. Pure byte manipulation, no I/O.

use crate::error::ServerError;

/// Protocol version 3.0 in the startup message.
pub const PROTOCOL_3_0: i32 = 196_608;
/// The `SSLRequest` code.
pub const SSL_REQUEST_CODE: i32 = 80_877_103;
/// Largest backend message the client accepts into memory (everything but `CopyData`, which is
/// streamed). The server's own limit for a single field is 1 GB; catalog rows are far smaller.
pub const MAX_BUFFERED_MESSAGE: usize = 256 * 1024 * 1024;

/// Appends a typed frontend message (`tag`, length, `body`).
pub fn message(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    out.extend_from_slice(body);
}

/// Appends the header of a typed message whose body of `len` bytes follows separately.
pub fn message_header(out: &mut Vec<u8>, tag: u8, len: usize) {
    out.push(tag);
    out.extend_from_slice(&(len as i32 + 4).to_be_bytes());
}

/// The `SSLRequest` packet.
pub fn ssl_request() -> Vec<u8> {
    let mut v = Vec::with_capacity(8);
    v.extend_from_slice(&8i32.to_be_bytes());
    v.extend_from_slice(&SSL_REQUEST_CODE.to_be_bytes());
    v
}

/// The `StartupMessage` with `params` (name, value) pairs.
pub fn startup(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&PROTOCOL_3_0.to_be_bytes());
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// `Query` ('Q').
pub fn query(out: &mut Vec<u8>, sql: &str) {
    out.push(b'Q');
    out.extend_from_slice(&(sql.len() as i32 + 5).to_be_bytes());
    out.extend_from_slice(sql.as_bytes());
    out.push(0);
}

/// `SASLInitialResponse` ('p' with the mechanism name).
pub fn sasl_initial(out: &mut Vec<u8>, mechanism: &str, data: &[u8]) {
    let mut body = Vec::with_capacity(mechanism.len() + 5 + data.len());
    body.extend_from_slice(mechanism.as_bytes());
    body.push(0);
    body.extend_from_slice(&(data.len() as i32).to_be_bytes());
    body.extend_from_slice(data);
    message(out, b'p', &body);
}

/// A field reader over a message body.
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    /// Reads `buf` from the start.
    pub fn new(buf: &'a [u8]) -> Self {
        Fields { buf, pos: 0 }
    }

    /// A big-endian i32, or `None` past the end.
    pub fn i32(&mut self) -> Option<i32> {
        let b = self.buf.get(self.pos..self.pos + 4)?;
        self.pos += 4;
        Some(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A big-endian i16.
    pub fn i16(&mut self) -> Option<i16> {
        let b = self.buf.get(self.pos..self.pos + 2)?;
        self.pos += 2;
        Some(i16::from_be_bytes([b[0], b[1]]))
    }

    /// A NUL-terminated string (lossy UTF-8).
    pub fn cstr(&mut self) -> Option<String> {
        let rest = self.buf.get(self.pos..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        let s = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.pos += end + 1;
        Some(s)
    }

    /// `n` raw bytes.
    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let b = self.buf.get(self.pos..self.pos + n)?;
        self.pos += n;
        Some(b)
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        let b = &self.buf[self.pos.min(self.buf.len())..];
        self.pos = self.buf.len();
        b
    }
}

/// Parses the body of an `ErrorResponse` or `NoticeResponse`.
pub fn parse_error_fields(body: &[u8]) -> ServerError {
    let mut e = ServerError::default();
    let mut f = Fields::new(body);
    while let Some(code) = f.bytes(1).map(|b| b[0]) {
        if code == 0 {
            break;
        }
        let Some(v) = f.cstr() else { break };
        match code {
            b'V' => e.severity = v,
            b'S' if e.severity.is_empty() => e.severity = v,
            b'C' => e.code = v,
            b'M' => e.message = v,
            b'D' => e.detail = Some(v),
            b'H' => e.hint = Some(v),
            b'P' => e.position = v.parse().ok(),
            b'W' => e.context = Some(v),
            _ => {}
        }
    }
    e
}

/// Parses a `DataRow` body into text values (`None` for SQL NULL).
pub fn parse_data_row(body: &[u8]) -> Option<Vec<Option<String>>> {
    let mut f = Fields::new(body);
    let n = f.i16()?;
    let mut out = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n {
        let len = f.i32()?;
        if len < 0 {
            out.push(None);
        } else {
            let b = f.bytes(len as usize)?;
            out.push(Some(String::from_utf8_lossy(b).into_owned()));
        }
    }
    Some(out)
}

/// Parses a `RowDescription` body into column names.
pub fn parse_row_description(body: &[u8]) -> Option<Vec<String>> {
    let mut f = Fields::new(body);
    let n = f.i16()?;
    let mut out = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n {
        out.push(f.cstr()?);
        f.bytes(18)?; // table oid, attnum, type oid, typlen, typmod, format
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_is_framed() {
        let m = startup(&[("user", "u"), ("database", "d")]);
        assert_eq!(
            i32::from_be_bytes([m[0], m[1], m[2], m[3]]) as usize,
            m.len()
        );
        assert_eq!(&m[4..8], &PROTOCOL_3_0.to_be_bytes());
        assert_eq!(&m[8..], b"user\0u\0database\0d\0\0");
    }

    #[test]
    fn error_fields_parse() {
        let body = b"SERROR\0VERROR\0C42P01\0Mrelation \"x\" does not exist\0P15\0\0";
        let e = parse_error_fields(body);
        assert_eq!(e.code, "42P01");
        assert_eq!(e.position, Some(15));
        assert_eq!(e.to_string(), "ERROR 42P01: relation \"x\" does not exist");
    }

    #[test]
    fn data_row_with_null() {
        let mut b = Vec::new();
        b.extend_from_slice(&2i16.to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes());
        b.push(b'a');
        b.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(
            parse_data_row(&b).unwrap(),
            vec![Some("a".to_string()), None]
        );
    }
}
