//! Reads plain SQL scripts the way `psql` does: splits statements at `;` outside quotes,
//! dollar quotes, comments, parentheses and `BEGIN ATOMIC … END` bodies; recognises psql
//! meta-commands at the start of a line; and hands over the data of `COPY … FROM stdin` up to
//! its `\.` line. Streaming: only the current statement is held in memory, COPY data passes
//! through in chunks.

use crate::client::CopySource;
use crate::error::{Error, Result};
use std::io::Read;

const CHUNK: usize = 64 * 1024;

/// One thing a script says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A SQL statement (without the terminating `;`), starting at `line`.
    Statement {
        /// The statement text.
        sql: String,
        /// 1-based line of its first character.
        line: u64,
    },
    /// A psql meta-command such as `\connect app`, at `line`.
    Meta {
        /// The command without backslash, e.g. `connect`.
        command: String,
        /// The rest of the line.
        args: String,
        /// 1-based line.
        line: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Normal,
    Single { escapes: bool },
    Double,
    Dollar,
    LineComment,
    Block { depth: u32 },
}

/// A streaming script reader.
pub struct Script<R: Read> {
    input: R,
    name: String,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    eof: bool,
    line: u64,
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_char(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

impl<R: Read> Script<R> {
    /// Reads `input`, named `name` in errors.
    pub fn new(input: R, name: &str) -> Self {
        Script {
            input,
            name: name.to_string(),
            buf: vec![0; CHUNK],
            pos: 0,
            end: 0,
            eof: false,
            line: 1,
        }
    }

    /// The stream name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The current line.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Ensures at least `n` unread bytes are buffered unless the input ends; returns how many
    /// are available.
    fn want(&mut self, n: usize) -> Result<usize> {
        while self.end - self.pos < n && !self.eof {
            if self.pos > 0 {
                self.buf.copy_within(self.pos..self.end, 0);
                self.end -= self.pos;
                self.pos = 0;
            }
            if self.end == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            match self.input.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(k) => self.end += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(Error::Stream {
                        stream: self.name.clone(),
                        source,
                    })
                }
            }
        }
        Ok(self.end - self.pos)
    }

    fn peek(&mut self, ahead: usize) -> Result<Option<u8>> {
        if self.want(ahead + 1)? > ahead {
            Ok(Some(self.buf[self.pos + ahead]))
        } else {
            Ok(None)
        }
    }

    fn bump(&mut self) -> u8 {
        let b = self.buf[self.pos];
        self.pos += 1;
        if b == b'\n' {
            self.line += 1;
        }
        b
    }

    fn syntax(&self, line: u64, reason: impl Into<String>) -> Error {
        Error::ScriptSyntax {
            stream: self.name.clone(),
            line,
            reason: reason.into(),
        }
    }

    /// Reads a dollar-quote tag (`$tag$` or `$$`) at the current position, if one starts here.
    fn dollar_tag(&mut self) -> Result<Option<Vec<u8>>> {
        let mut i = 1;
        match self.peek(1)? {
            Some(b'$') => return Ok(Some(b"$$".to_vec())),
            Some(b) if is_ident_start(b) => {}
            _ => return Ok(None),
        }
        loop {
            match self.peek(i)? {
                Some(b'$') => {
                    let tag = self.buf[self.pos..self.pos + i + 1].to_vec();
                    return Ok(Some(tag));
                }
                Some(b) if is_ident_char(b) && b != b'$' => i += 1,
                _ => return Ok(None),
            }
        }
    }

    /// The next statement or meta-command; `None` at the end of the script.
    pub fn next_item(&mut self) -> Result<Option<Item>> {
        let mut sql: Vec<u8> = Vec::new();
        let mut start_line = self.line;
        let mut state = State::Normal;
        let mut paren = 0i32;
        let mut tag: Vec<u8> = Vec::new();
        // psql's heuristic for CREATE FUNCTION … BEGIN ATOMIC … END.
        let mut words: Vec<String> = Vec::new();
        let mut begin_depth = 0u32;
        let mut at_line_start = true;
        let mut prev: u8 = b' ';
        loop {
            let Some(b) = self.peek(0)? else {
                // End of input.
                if state != State::Normal && state != State::LineComment {
                    return Err(self.syntax(
                        start_line,
                        "the script ends inside a quoted string, identifier or comment",
                    ));
                }
                let text = String::from_utf8_lossy(&sql).trim().to_string();
                if text.is_empty() {
                    return Ok(None);
                }
                return Ok(Some(Item::Statement {
                    sql: text,
                    line: start_line,
                }));
            };
            let blank = sql.iter().all(|c| c.is_ascii_whitespace());
            match state {
                State::Normal => {
                    if b == b'\\' && at_line_start && blank {
                        let line = self.line;
                        self.bump();
                        let mut raw = Vec::new();
                        while let Some(c) = self.peek(0)? {
                            self.bump();
                            if c == b'\n' {
                                break;
                            }
                            raw.push(c);
                        }
                        let text = String::from_utf8_lossy(&raw)
                            .trim_end_matches('\r')
                            .to_string();
                        let (command, args) = match text.find(|c: char| c.is_whitespace()) {
                            Some(i) => (text[..i].to_string(), text[i..].trim().to_string()),
                            None => (text.clone(), String::new()),
                        };
                        return Ok(Some(Item::Meta {
                            command,
                            args,
                            line,
                        }));
                    }
                    if blank && !b.is_ascii_whitespace() {
                        start_line = self.line;
                    }
                    match b {
                        b'\'' => {
                            let escapes = matches!(prev, b'e' | b'E') && {
                                // E'…' only when the E is a word of its own.
                                let n = sql.len();
                                n < 2 || !is_ident_char(sql[n - 2])
                            };
                            state = State::Single { escapes };
                        }
                        b'"' => state = State::Double,
                        b'-' if self.peek(1)? == Some(b'-') => {
                            state = State::LineComment;
                            // Leading comments are not part of the statement.
                            if blank {
                                self.bump();
                                prev = b'-';
                                continue;
                            }
                        }
                        b'/' if self.peek(1)? == Some(b'*') => {
                            state = State::Block { depth: 1 };
                            sql.push(self.bump());
                            sql.push(self.bump());
                            prev = b'*';
                            at_line_start = false;
                            continue;
                        }
                        b'$' if !is_ident_char(prev) => {
                            if let Some(t) = self.dollar_tag()? {
                                for _ in 0..t.len() {
                                    sql.push(self.bump());
                                }
                                tag = t;
                                state = State::Dollar;
                                prev = b'$';
                                at_line_start = false;
                                continue;
                            }
                        }
                        b'(' => paren += 1,
                        b')' => paren -= 1,
                        b';' if paren <= 0 && begin_depth == 0 => {
                            self.bump();
                            let text = String::from_utf8_lossy(&sql).trim().to_string();
                            if text.is_empty() {
                                // A lone `;`.
                                sql.clear();
                                prev = b';';
                                continue;
                            }
                            return Ok(Some(Item::Statement {
                                sql: text,
                                line: start_line,
                            }));
                        }
                        _ if is_ident_start(b) && !is_ident_char(prev) => {
                            // Read the whole word.
                            let mut w = Vec::new();
                            while let Some(c) = self.peek(0)? {
                                if !is_ident_char(c) {
                                    break;
                                }
                                w.push(c);
                                sql.push(self.bump());
                            }
                            let word = String::from_utf8_lossy(&w).to_ascii_lowercase();
                            if words.len() < 4 {
                                words.push(word.clone());
                            }
                            let is_routine = words.first().map(String::as_str) == Some("create")
                                && (matches!(
                                    words.get(1).map(String::as_str),
                                    Some("function") | Some("procedure")
                                ) || (words.get(1).map(String::as_str) == Some("or")
                                    && words.get(2).map(String::as_str) == Some("replace")
                                    && matches!(
                                        words.get(3).map(String::as_str),
                                        Some("function") | Some("procedure")
                                    )));
                            if is_routine && paren == 0 {
                                match word.as_str() {
                                    "begin" => begin_depth += 1,
                                    "case" if begin_depth >= 1 => begin_depth += 1,
                                    "end" if begin_depth > 0 => begin_depth -= 1,
                                    _ => {}
                                }
                            }
                            prev = *w.last().unwrap_or(&b'a');
                            at_line_start = false;
                            continue;
                        }
                        _ => {}
                    }
                }
                State::Single { escapes } => {
                    if escapes && b == b'\\' {
                        sql.push(self.bump());
                        if self.peek(0)?.is_some() {
                            sql.push(self.bump());
                        }
                        prev = b'x';
                        continue;
                    }
                    if b == b'\'' {
                        if self.peek(1)? == Some(b'\'') {
                            sql.push(self.bump());
                        } else {
                            state = State::Normal;
                        }
                    }
                }
                State::Double => {
                    if b == b'"' {
                        if self.peek(1)? == Some(b'"') {
                            sql.push(self.bump());
                        } else {
                            state = State::Normal;
                        }
                    }
                }
                State::Dollar => {
                    if b == b'$' {
                        let n = tag.len();
                        if self.want(n)? >= n && self.buf[self.pos..self.pos + n] == tag[..] {
                            for _ in 0..n {
                                sql.push(self.bump());
                            }
                            state = State::Normal;
                            prev = b'$';
                            continue;
                        }
                    }
                }
                State::LineComment => {
                    if b == b'\n' {
                        state = State::Normal;
                    }
                    if blank {
                        self.bump();
                        at_line_start = b == b'\n';
                        prev = b;
                        continue;
                    }
                }
                State::Block { depth } => {
                    if b == b'*' && self.peek(1)? == Some(b'/') {
                        sql.push(self.bump());
                        sql.push(self.bump());
                        state = if depth == 1 {
                            State::Normal
                        } else {
                            State::Block { depth: depth - 1 }
                        };
                        prev = b' ';
                        continue;
                    }
                    if b == b'/' && self.peek(1)? == Some(b'*') {
                        sql.push(self.bump());
                        sql.push(self.bump());
                        state = State::Block { depth: depth + 1 };
                        continue;
                    }
                }
            }
            let c = self.bump();
            at_line_start = c == b'\n';
            prev = c;
            if blank && state == State::Normal && c.is_ascii_whitespace() {
                continue;
            }
            sql.push(c);
        }
    }

    /// Skips the rest of the line the last statement ended on (psql reads COPY data from the
    /// next line).
    fn skip_rest_of_line(&mut self) -> Result<()> {
        while let Some(b) = self.peek(0)? {
            self.bump();
            if b == b'\n' {
                break;
            }
        }
        Ok(())
    }

    /// The data of a `COPY … FROM stdin` that just ended, up to (not including) its `\.` line.
    pub fn copy_data(&mut self) -> Result<CopyData<'_, R>> {
        self.skip_rest_of_line()?;
        Ok(CopyData {
            script: self,
            at_line_start: true,
            done: false,
        })
    }
}

/// COPY data of a script as a [`CopySource`].
pub struct CopyData<'a, R: Read> {
    script: &'a mut Script<R>,
    at_line_start: bool,
    done: bool,
}

impl<R: Read> CopySource for CopyData<'_, R> {
    fn next_chunk(&mut self, out: &mut Vec<u8>) -> Result<bool> {
        if self.done {
            return Ok(false);
        }
        let s = &mut *self.script;
        let limit = CHUNK;
        while out.len() < limit {
            if self.at_line_start {
                let avail = s.want(4)?;
                if avail == 0 {
                    self.done = true;
                    break;
                }
                let b = &s.buf[s.pos..s.pos + avail.min(4)];
                let is_end = b.starts_with(b"\\.")
                    && (b.len() == 2
                        || b[2] == b'\n'
                        || (b[2] == b'\r' && (b.len() == 3 || b[3] == b'\n')));
                if is_end {
                    s.pos += 2;
                    if s.peek(0)? == Some(b'\r') {
                        s.pos += 1;
                    }
                    if s.peek(0)? == Some(b'\n') {
                        s.bump();
                    }
                    self.done = true;
                    break;
                }
            }
            if s.want(1)? == 0 {
                self.done = true;
                break;
            }
            // Copy up to the end of this line (inclusive) or of the buffer.
            let avail = &s.buf[s.pos..s.end];
            let room = limit - out.len();
            let (take, ends_line) = match avail.iter().position(|&c| c == b'\n') {
                Some(i) if i < room => (i + 1, true),
                _ => (avail.len().min(room), false),
            };
            out.extend_from_slice(&avail[..take]);
            if ends_line {
                s.line += 1;
            }
            s.pos += take;
            self.at_line_start = ends_line;
        }
        Ok(!out.is_empty() || !self.done)
    }
}

/// A token of a statement, for recognising the few statements restore treats specially.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// An unquoted word, lower-cased.
    Word(String),
    /// A double-quoted identifier, unquoted.
    Quoted(String),
    /// A string literal (any kind), raw text.
    Literal(String),
    /// Anything else (one character).
    Other(char),
}

/// Splits a statement into tokens (comments dropped). Good enough to identify names in
/// `CREATE DATABASE x`, `CREATE ROLE x`, `ALTER ROLE x … PASSWORD '…'`.
pub fn tokens(sql: &str) -> Vec<Token> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '"' {
            let mut s = String::new();
            i += 1;
            while i < chars.len() {
                if chars[i] == '"' {
                    if chars.get(i + 1) == Some(&'"') {
                        s.push('"');
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                s.push(chars[i]);
                i += 1;
            }
            out.push(Token::Quoted(s));
        } else if c == '\'' {
            let start = i;
            i += 1;
            while i < chars.len() {
                if chars[i] == '\'' {
                    if chars.get(i + 1) == Some(&'\'') {
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                i += 1;
            }
            out.push(Token::Literal(chars[start..i].iter().collect()));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            let w: String = chars[start..i].iter().collect();
            // E'…' literal
            if (w == "E" || w == "e") && chars.get(i) == Some(&'\'') {
                continue;
            }
            out.push(Token::Word(w.to_lowercase()));
        } else {
            out.push(Token::Other(c));
            i += 1;
        }
    }
    out
}

/// The identifier a token names (`Word` lower-cased, `Quoted` as written).
pub fn ident_of(t: &Token) -> Option<String> {
    match t {
        Token::Word(w) => Some(w.clone()),
        Token::Quoted(q) => Some(q.clone()),
        _ => None,
    }
}

/// Whether `sql` is a `COPY … FROM STDIN`.
pub fn is_copy_from_stdin(sql: &str) -> bool {
    let t = tokens(sql);
    if t.first() != Some(&Token::Word("copy".into())) {
        return false;
    }
    t.windows(2)
        .any(|w| w[0] == Token::Word("from".into()) && w[1] == Token::Word("stdin".into()))
}

/// Parses the argument of `\connect` as psql does for pg_dump's output: a database name,
/// possibly double-quoted, or `-reuse-previous=on "dbname='…'"` (a libpq connection string).
pub fn connect_target(args: &str) -> Option<String> {
    let mut words = Vec::new();
    let chars: Vec<char> = args.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_whitespace() {
            i += 1;
            continue;
        }
        let mut w = String::new();
        let mut quoted = false;
        while i < chars.len() && !chars[i].is_whitespace() {
            if chars[i] == '"' {
                quoted = true;
                i += 1;
                while i < chars.len() {
                    if chars[i] == '"' {
                        if chars.get(i + 1) == Some(&'"') {
                            w.push('"');
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    w.push(chars[i]);
                    i += 1;
                }
            } else if chars[i] == '\'' {
                quoted = true;
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                    }
                    w.push(chars[i]);
                    i += 1;
                }
                i += 1;
            } else {
                w.push(chars[i]);
                i += 1;
            }
        }
        words.push((w, quoted));
    }
    let mut it = words
        .into_iter()
        .filter(|(w, q)| *q || !w.starts_with("-reuse-previous"));
    let (first, _) = it.next()?;
    if first.contains('=') {
        return conninfo_dbname(&first);
    }
    if first == "-" {
        return None;
    }
    Some(first)
}

/// The `dbname` of a libpq `key=value` connection string.
fn conninfo_dbname(s: &str) -> Option<String> {
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let start = i;
        while i < chars.len() && chars[i] != '=' && !chars[i].is_whitespace() {
            i += 1;
        }
        let key: String = chars[start..i].iter().collect();
        while i < chars.len() && (chars[i].is_whitespace() || chars[i] == '=') {
            i += 1;
        }
        let mut val = String::new();
        if chars.get(i) == Some(&'\'') {
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    i += 1;
                }
                val.push(chars[i]);
                i += 1;
            }
            i += 1;
        } else {
            while i < chars.len() && !chars[i].is_whitespace() {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    i += 1;
                }
                val.push(chars[i]);
                i += 1;
            }
        }
        if key == "dbname" {
            return Some(val);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(s: &str) -> Vec<Item> {
        let mut sc = Script::new(s.as_bytes(), "t.sql");
        let mut v = Vec::new();
        while let Some(i) = sc.next_item().unwrap() {
            v.push(i);
        }
        v
    }

    fn stmts(s: &str) -> Vec<String> {
        items(s)
            .into_iter()
            .filter_map(|i| match i {
                Item::Statement { sql, .. } => Some(sql),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn splits_on_semicolons_outside_quotes_and_comments() {
        let s = "-- c;\nSELECT 'a;''b';\nSELECT \"x;\" FROM t; /* ; */ SELECT 1;\nSELECT E'\\';';";
        assert_eq!(
            stmts(s),
            [
                "SELECT 'a;''b'",
                "SELECT \"x;\" FROM t",
                "/* ; */ SELECT 1",
                "SELECT E'\\';'"
            ]
        );
    }

    #[test]
    fn dollar_quotes_and_atomic_bodies() {
        let s = "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;\n\
                 CREATE FUNCTION g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END;\n\
                 SELECT $$a;b$$, a$1$b;";
        let v = stmts(s);
        assert_eq!(v.len(), 3, "{v:?}");
        assert!(v[1].ends_with("END"), "{}", v[1]);
        assert_eq!(v[2], "SELECT $$a;b$$, a$1$b");
    }

    #[test]
    fn parentheses_keep_statements_together() {
        assert_eq!(
            stmts("CREATE RULE r AS ON INSERT TO t DO ALSO (SELECT 1; SELECT 2);"),
            ["CREATE RULE r AS ON INSERT TO t DO ALSO (SELECT 1; SELECT 2)"]
        );
    }

    #[test]
    fn meta_commands_and_lines() {
        let v = items("SET a = 1;\n\\connect app\n\n-- x\nSELECT 1;\n");
        assert_eq!(
            v[1],
            Item::Meta {
                command: "connect".into(),
                args: "app".into(),
                line: 2
            }
        );
        assert_eq!(
            v[2],
            Item::Statement {
                sql: "SELECT 1".into(),
                line: 5
            }
        );
    }

    #[test]
    fn copy_data_until_terminator() {
        let s = "COPY t (a) FROM stdin;\n1\tx\n\\.x\n2\n\\.\nSELECT 2;\n";
        let mut sc = Script::new(s.as_bytes(), "t.sql");
        let Some(Item::Statement { sql, .. }) = sc.next_item().unwrap() else {
            panic!()
        };
        assert!(is_copy_from_stdin(&sql));
        let mut data = Vec::new();
        {
            let mut cd = sc.copy_data().unwrap();
            let mut chunk = Vec::new();
            while cd.next_chunk(&mut chunk).unwrap() {
                data.extend_from_slice(&chunk);
                chunk.clear();
            }
        }
        assert_eq!(data, b"1\tx\n\\.x\n2\n");
        assert_eq!(
            sc.next_item().unwrap(),
            Some(Item::Statement {
                sql: "SELECT 2".into(),
                line: 6
            })
        );
    }

    #[test]
    fn connect_targets() {
        assert_eq!(connect_target("app").as_deref(), Some("app"));
        assert_eq!(connect_target("\"My DB\"").as_deref(), Some("My DB"));
        assert_eq!(
            connect_target(r#"-reuse-previous=on "dbname='we\'ird db'""#).as_deref(),
            Some("we'ird db")
        );
    }

    #[test]
    fn tokenizes_names() {
        let t = tokens("CREATE DATABASE \"A b\" WITH TEMPLATE = template0 -- x\n;");
        assert_eq!(t[2], Token::Quoted("A b".into()));
        assert_eq!(t[3], Token::Word("with".into()));
    }
}
