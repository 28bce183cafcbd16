//! Test guest for the kstash sandbox. The `mode` parameter selects the behaviour:
//!
//! | mode     | does                                                                     |
//! |----------|--------------------------------------------------------------------------|
//! | `noop`   | returns at once (benchmarks instantiate + call)                          |
//! | `fetch`  | GETs `path` of the target into stream `body` (a well-behaved task)       |
//! | `write`  | writes `bytes` bytes (unbounded without it) to stream `data`, 64 KiB chunks |
//! | `read`   | GETs `path` and discards the body (HTTP read throughput)                 |
//! | `spin`   | loops forever                                                            |
//! | `alloc`  | allocates and touches memory without bound                               |
//! | `sleep`  | blocks in a host call (monotonic clock) for an hour                      |
//! | `egress` | GETs `url`, a host other than the target                                 |
//! | `probe`  | tries files, environment, args and raw sockets; reports into `probe`     |
//! | `panic`  | panics                                                                   |
//! | `fail`   | returns a guest error                                                    |
//! | `tcp`    | TCP to the target: `tls`/`starttls`, `secret` (RESP `AUTH`), sends `send`, stream `reply` |
//! | `socket` | raw `wasi:sockets` connect to `addr` (must be denied)                    |
//! | `dns`    | raw connect to `host:port` by name (must be denied)                      |

use std::io::{Read, Write};

use kstash_sdk::prelude::*;

struct Hostile;

impl Addon for Hostile {
    fn describe() -> Description {
        Description {
            name: "hostile".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            summary: "Sandbox test guest".to_string(),
            tasks: vec![
                TaskDef {
                    name: "run".to_string(),
                    kind: TaskKind::Backup,
                    description: "Runs the behaviour named by `mode`.".to_string(),
                    params: vec![ParamDef {
                        name: "mode".to_string(),
                        description: "Behaviour to run".to_string(),
                        kind: ParamKind::Text,
                        required: true,
                        default_value: None,
                    }],
                },
                TaskDef {
                    name: "restore".to_string(),
                    kind: TaskKind::Restore,
                    description: "Reads every input stream and reports its size.".to_string(),
                    params: vec![],
                },
            ],
            components: vec!["dump".to_string()],
        }
    }

    fn backup(task: &Task) -> Result<TaskSummary, TaskError> {
        let p = task.params();
        match p.required("mode")? {
            "noop" => Ok(summary(0, 0)),
            "fetch" => {
                let resp = task
                    .target()?
                    .get(p.required("path")?)
                    .send()?
                    .error_for_status()?;
                let mut out = OutputStream::open("body")?;
                let n = std::io::copy(&mut resp.into_reader(), &mut out)?;
                out.finish()?;
                Ok(summary(1, n))
            }
            "read" => {
                let resp = task
                    .target()?
                    .get(p.required("path")?)
                    .send()?
                    .error_for_status()?;
                let mut r = resp.into_reader();
                let mut buf = vec![0u8; 64 * 1024];
                let mut n = 0u64;
                loop {
                    let k = r.read(&mut buf)?;
                    if k == 0 {
                        break;
                    }
                    n += k as u64;
                }
                Ok(summary(1, n))
            }
            "write" => {
                let limit = p.integer("bytes")?.map(|b| b as u64);
                let chunk = vec![0x5au8; 64 * 1024];
                let mut out = OutputStream::open("data")?;
                let mut n = 0u64;
                while limit.is_none_or(|l| n < l) {
                    let k = limit.map_or(chunk.len() as u64, |l| (l - n).min(chunk.len() as u64));
                    out.write_all(&chunk[..k as usize])?;
                    n += k;
                }
                let n = out.finish()?;
                Ok(summary(1, n))
            }
            "spin" => {
                let mut x = 1u64;
                loop {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            }
            "alloc" => {
                let mut keep: Vec<Vec<u8>> = Vec::new();
                loop {
                    keep.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&keep);
                }
            }
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                Ok(summary(0, 0))
            }
            "egress" => {
                let url = p.required("url")?;
                let client = Client::new(url)?;
                let resp = client.get("/").send()?;
                Ok(summary(resp.status() as u64, 0))
            }
            "probe" => probe(),
            "tcp" => tcp(p),
            "socket" | "dns" => {
                let addr = p.required("addr")?;
                match std::net::TcpStream::connect(addr) {
                    Ok(_) => Ok(summary(1, 0)),
                    Err(e) => Err(TaskError::Connect(format!("connect {addr}: {e}"))),
                }
            }
            "panic" => panic!("hostile guest panics on purpose"),
            "fail" => Err(TaskError::Remote(
                "the target said no (on purpose)".to_string(),
            )),
            other => Err(TaskError::InvalidParams(format!(
                "parameter `mode`: unknown mode {other:?}"
            ))),
        }
    }

    fn restore(_task: &Task) -> Result<TaskSummary, TaskError> {
        let mut out = Vec::new();
        let names = input_names();
        let mut total = 0;
        for name in &names {
            let mut s = InputStream::open(name)?;
            let mut data = Vec::new();
            s.read_to_end(&mut data)?;
            total += data.len() as u64;
            out.push(format!("{name}={}", data.len()));
        }
        kstash_sdk::log::info(&out.join(","));
        Ok(TaskSummary {
            items: names.len() as u64,
            bytes: total,
            warnings: out,
        })
    }
}

/// A line protocol against the test server: optional TLS, optional host-written secret, one
/// request line, one reply line into stream `reply`.
fn tcp(p: &Params) -> Result<TaskSummary, TaskError> {
    use std::io::BufRead;
    let mut c = TcpStream::connect()?;
    if p.boolean_or("tls", false)? {
        c.start_tls()?;
    }
    if p.boolean_or("starttls", false)? {
        c.write_all(b"STARTTLS\n")?;
        if p.boolean_or("early", false)? {
            // Let the reply arrive on the host unread, then try the upgrade: must be refused.
            c.flush()?;
            c.input_pollable().block();
            std::thread::sleep(std::time::Duration::from_millis(200));
            c.start_tls()?;
        }
        let mut ok = String::new();
        c.read_line(&mut ok)?;
        if ok != "OK\n" {
            return Err(TaskError::Remote(format!("STARTTLS answered {ok:?}")));
        }
        c.start_tls()?;
    }
    if p.boolean_or("secret", false)? {
        if !credentials::has_secret() {
            return Err(TaskError::Other("no secret configured".into()));
        }
        let user = credentials::username().unwrap_or_default();
        c.write_all(format!("AUTH {user} ").as_bytes())?;
        c.write_secret(credentials::SecretEncoding::RespBulkString)?;
    }
    c.write_all(p.required("send")?.as_bytes())?;
    c.write_all(b"\n")?;
    let mut reply = String::new();
    c.read_line(&mut reply)?;
    let mut out = OutputStream::open("reply")?;
    out.write_all(format!("{reply}tls={}\n", c.is_tls()).as_bytes())?;
    let n = out.finish()?;
    let (inb, outb) = c.byte_counts();
    report::part("tcp", inb, outb);
    report::warning(Some("tcp"), "reported on purpose");
    Ok(summary(1, n))
}

fn summary(items: u64, bytes: u64) -> TaskSummary {
    TaskSummary {
        items,
        bytes,
        warnings: vec![],
    }
}

/// Tries every ambient capability and writes one line per attempt into stream `probe`.
fn probe() -> Result<TaskSummary, TaskError> {
    let mut lines = Vec::new();
    lines.push(format!(
        "file /etc/passwd: {}",
        match std::fs::read_to_string("/etc/passwd") {
            Ok(s) => format!("READ {} bytes", s.len()),
            Err(e) => format!("denied ({e})"),
        }
    ));
    lines.push(format!(
        "dir /: {}",
        match std::fs::read_dir("/") {
            Ok(d) => format!("LISTED {} entries", d.count()),
            Err(e) => format!("denied ({e})"),
        }
    ));
    lines.push(format!(
        "file write /tmp/kstash-probe: {}",
        match std::fs::write("/tmp/kstash-probe", b"x") {
            Ok(()) => "WRITTEN".to_string(),
            Err(e) => format!("denied ({e})"),
        }
    ));
    let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
    lines.push(format!("env: {} variables {vars:?}", vars.len()));
    lines.push(format!("args: {} arguments", std::env::args().count()));
    lines.push(format!("tcp 127.0.0.1:22: {}", tcp_probe()));
    let mut out = OutputStream::open("probe")?;
    out.write_all(lines.join("\n").as_bytes())?;
    let n = out.finish()?;
    Ok(summary(lines.len() as u64, n))
}

fn tcp_probe() -> String {
    use wasip2_sockets::*;
    let net = instance_network::instance_network();
    let sock = match tcp_create_socket::create_tcp_socket(network::IpAddressFamily::Ipv4) {
        Ok(s) => s,
        Err(e) => return format!("denied at create ({e:?})"),
    };
    let addr = network::IpSocketAddress::Ipv4(network::Ipv4SocketAddress {
        port: 22,
        address: (127, 0, 0, 1),
    });
    if let Err(e) = sock.start_connect(&net, addr) {
        return format!("denied ({e:?})");
    }
    sock.subscribe().block();
    match sock.finish_connect() {
        Ok(_) => "CONNECTED".to_string(),
        Err(e) => format!("denied ({e:?})"),
    }
}

mod wasip2_sockets {
    pub use kstash_sdk::wasi::sockets::{instance_network, network, tcp_create_socket};
}

export_addon!(Hostile);
