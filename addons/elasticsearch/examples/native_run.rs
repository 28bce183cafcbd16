//! Run a task natively (no WASM, no sandbox) against a plain-HTTP target, with streams in a
//! directory: a development aid to try the addon's logic against the emulator.
//!
//! `cargo run --example native_run -- backup|restore http://127.0.0.1:9200 DIR [ARGS]`

use elasticsearch_addon::host::{Host, Level, OutputStream, Request, Response, TransportError};
use elasticsearch_addon::options::Task;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

struct Native {
    authority: String,
    dir: PathBuf,
    n: u64,
}

struct FileOut(std::fs::File);
impl Write for FileOut {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}
impl OutputStream for FileOut {
    fn finish(mut self: Box<Self>) -> std::io::Result<u64> {
        self.0.flush()?;
        Ok(self.0.metadata()?.len())
    }
}

fn http(authority: &str, req: &Request) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(authority)?;
    let body = req.body.clone().unwrap_or_default();
    let mut head = format!(
        "{} {} HTTP/1.1\r\nhost: {authority}\r\naccept: application/json\r\nconnection: close\r\n",
        req.method.as_str(),
        req.path
    );
    if req.body.is_some() {
        head.push_str(&format!(
            "content-type: {}\r\ncontent-length: {}\r\n",
            req.content_type,
            body.len()
        ));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(&body)?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let (mut len, mut chunked) = (None, false);
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').unwrap_or((l, ""));
        if k.eq_ignore_ascii_case("content-length") {
            len = v.trim().parse::<usize>().ok();
        }
        if k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked") {
            chunked = true;
        }
    }
    let mut out = Vec::new();
    if req.method == elasticsearch_addon::host::Method::Head {
    } else if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let n = usize::from_str_radix(line.trim(), 16).map_err(std::io::Error::other)?;
            if n == 0 {
                break;
            }
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk)?;
            out.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = len {
        out.resize(n, 0);
        r.read_exact(&mut out)?;
    } else {
        r.read_to_end(&mut out)?;
    }
    Ok(Response { status, body: out })
}

impl Host for Native {
    fn send(&mut self, req: &Request) -> Result<Response, TransportError> {
        http(&self.authority, req).map_err(|e| TransportError {
            message: e.to_string(),
            retryable: true,
            maybe_processed: e.kind() != std::io::ErrorKind::ConnectionRefused,
        })
    }
    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d)
    }
    fn log(&mut self, level: Level, msg: &str) {
        eprintln!("[{level:?}] {msg}");
    }
    fn progress(&mut self, _done: u64, _total: Option<u64>, _stage: &str) {}
    fn create_output(&mut self, name: &str) -> std::io::Result<Box<dyn OutputStream>> {
        Ok(Box::new(FileOut(std::fs::File::create(
            self.dir.join(name),
        )?)))
    }
    fn input_names(&mut self) -> std::io::Result<Vec<String>> {
        let mut v: Vec<String> = std::fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        v.sort();
        Ok(v)
    }
    fn open_input(&mut self, name: &str) -> std::io::Result<Box<dyn Read>> {
        Ok(Box::new(std::fs::File::open(self.dir.join(name))?))
    }
    fn random(&mut self) -> u64 {
        self.n = self
            .n
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.n >> 11
    }
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 4 {
        eprintln!("usage: native_run backup|restore http://HOST:PORT DIR [ARGS]");
        std::process::exit(2);
    }
    let task = if a[1] == "backup" {
        Task::Backup
    } else {
        Task::Restore
    };
    let authority = a[2]
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let dir = PathBuf::from(&a[3]);
    std::fs::create_dir_all(&dir).expect("create dir");
    let mut params = Vec::new();
    if let Some(args) = a.get(4) {
        params.push(("args".to_string(), args.clone()));
    }
    let mut host = Native {
        authority,
        dir,
        n: 1,
    };
    match elasticsearch_addon::run_task(&mut host, task, &params) {
        Ok(s) => println!("{s:?}"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
