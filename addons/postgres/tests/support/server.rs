//! Real PostgreSQL servers for the host tests: Debian's PostgreSQL (installed by
//! `scripts/ensure-tools.sh postgres`), one `initdb` per test binary copied for every server,
//! listening on a loopback port with `scram-sha-256` (and TLS with certificates made here).
//!
//! PostgreSQL refuses to run as root: as root, the servers run as the `postgres` user the
//! Debian package creates. Each server has a watchdog that stops it and removes its directory
//! when the test process ends, however it ends.

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// The superuser's password on every test server.
pub const SUPERUSER_PASSWORD: &str = "s3cret-super";

static COUNTER: AtomicUsize = AtomicUsize::new(0);
static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();

/// The directory of the server binaries (`initdb`, `pg_ctl`, `pg_dump`, `psql`, `pgbench`).
pub fn bindir() -> PathBuf {
    if let Ok(d) = std::env::var("KSTASH_PG_BINDIR") {
        return PathBuf::from(d);
    }
    let base = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<u32> = std::fs::read_dir(base)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}: run scripts/ensure-tools.sh postgres",
                base.display()
            )
        })
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort();
    let v = versions.last().unwrap_or_else(|| {
        panic!(
            "no PostgreSQL under {}: run scripts/ensure-tools.sh postgres",
            base.display()
        )
    });
    base.join(v.to_string()).join("bin")
}

/// A client binary (`psql`, `pg_dump`, …).
pub fn tool(name: &str) -> PathBuf {
    let p = bindir().join(name);
    assert!(
        p.exists(),
        "{} is missing: run scripts/ensure-tools.sh postgres",
        p.display()
    );
    p
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { geteuid() == 0 }
}

extern "C" {
    fn geteuid() -> u32;
    fn getpid() -> i32;
}

/// Runs a server-side command as the user that owns the data directories.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.arg("-u").arg("postgres").arg("--").arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn chown_to_server_user(path: &Path) {
    if is_root() {
        let st = Command::new("chown")
            .arg("-R")
            .arg("postgres:postgres")
            .arg(path)
            .status()
            .expect("chown");
        assert!(st.success(), "chown postgres {}", path.display());
    }
}

fn check(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn scratch_root() -> PathBuf {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { getpid() };
    let d = std::env::temp_dir().join(format!("kstash-pg-{pid}"));
    std::fs::create_dir_all(&d).expect("scratch dir");
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    d
}

fn template() -> &'static Path {
    TEMPLATE.get_or_init(|| {
        let root = scratch_root();
        let dir = root.join("template");
        let pwfile = root.join("pwfile");
        std::fs::write(&pwfile, SUPERUSER_PASSWORD).expect("pwfile");
        chown_to_server_user(&root);
        let out = as_server_user(&tool("initdb"))
            .arg("-D")
            .arg(&dir)
            .args([
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .expect("initdb");
        check(out, "initdb");
        let _ = std::fs::remove_file(&pwfile);
        dir
    })
}

/// Options of a new server.
#[derive(Default, Clone, Copy)]
pub struct ServerOptions {
    /// Only TLS connections are accepted (`hostssl` in pg_hba.conf).
    pub tls: bool,
}

/// One running server.
pub struct Server {
    /// Its directory (data, socket, certificates, log).
    pub dir: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The CA certificate (PEM) for TLS servers.
    pub ca_pem: Option<Vec<u8>>,
}

impl Server {
    /// Starts a new server from the binary's template cluster.
    pub fn start(opts: ServerOptions) -> Server {
        let template = template();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = scratch_root().join(format!("server-{n}"));
        std::fs::create_dir_all(&dir).expect("server dir");
        let data = dir.join("data");
        let st = Command::new("cp")
            .arg("-a")
            .arg(template)
            .arg(&data)
            .status()
            .expect("cp");
        assert!(st.success(), "copy the template cluster");
        let sock = dir.join("sock");
        std::fs::create_dir_all(&sock).expect("sock dir");
        let port = free_port();
        let mut conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 40\n\
             shared_buffers = 32MB\nmax_wal_size = 1GB\nlog_min_messages = warning\n",
            sock.display()
        );
        let mut hba = String::from("local all all trust\n");
        let mut ca_pem = None;
        if opts.tls {
            let ca = make_certs(&data);
            ca_pem = Some(ca);
            conf.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
            hba.push_str("hostssl all all 127.0.0.1/32 scram-sha-256\nhostnossl all all 127.0.0.1/32 reject\n");
        } else {
            hba.push_str("host all all 127.0.0.1/32 scram-sha-256\n");
        }
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .expect("postgresql.conf");
        f.write_all(conf.as_bytes()).expect("write conf");
        std::fs::write(data.join("pg_hba.conf"), hba).expect("pg_hba.conf");
        chown_to_server_user(&dir);
        let out = as_server_user(&tool("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("log"))
            .args(["-w", "-t", "60", "start"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("pg_ctl start");
        if !out.status.success() {
            let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
            panic!(
                "pg_ctl start failed: {}\n{log}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        spawn_watchdog(&dir);
        Server { dir, port, ca_pem }
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A client tool command with the connection environment set (superuser, password).
    pub fn cmd(&self, tool_name: &str) -> Command {
        let mut c = Command::new(tool(tool_name));
        c.env("PGHOST", "127.0.0.1")
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", "postgres")
            .env("PGPASSWORD", SUPERUSER_PASSWORD)
            .env(
                "PGSSLMODE",
                if self.ca_pem.is_some() {
                    "require"
                } else {
                    "disable"
                },
            )
            .env("PGCONNECT_TIMEOUT", "20")
            .env_remove("PGDATABASE")
            .env_remove("PGSERVICE");
        c
    }

    /// Runs SQL with `psql -v ON_ERROR_STOP=1` as the superuser and returns stdout
    /// (unaligned, tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self
            .cmd("psql")
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                db,
                "-c",
                sql,
            ])
            .output()
            .expect("psql");
        String::from_utf8(check(out, &format!("psql -d {db} -c {sql}")).stdout).expect("utf8")
    }

    /// Like [`Server::psql`], returning the error output instead of panicking.
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = self
            .cmd("psql")
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                db,
                "-c",
                sql,
            ])
            .output()
            .expect("psql");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Runs a script file with `psql -v ON_ERROR_STOP=1 -f`.
    pub fn psql_file(&self, db: &str, file: &Path) -> Output {
        self.cmd("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-f"])
            .arg(file)
            .output()
            .expect("psql -f")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = as_server_user(&tool("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Stops the server and removes its directory once this test process is gone (statics are
/// never dropped, and a panicking test must not leave servers behind).
fn spawn_watchdog(dir: &Path) {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { getpid() };
    let pg_ctl = tool("pg_ctl");
    let stop = if is_root() {
        format!(
            "runuser -u postgres -- {} -D {}/data -m immediate stop",
            pg_ctl.display(),
            dir.display()
        )
    } else {
        format!(
            "{} -D {}/data -m immediate stop",
            pg_ctl.display(),
            dir.display()
        )
    };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {d}; \
         rm -rf {root}/template {root}/pwfile {root}/t-* 2>/dev/null; rmdir {root} 2>/dev/null; true",
        d = dir.display(),
        root = dir.parent().unwrap().display()
    );
    // The watchdog outlives this process on purpose; it is never waited for.
    #[allow(clippy::zombie_processes)]
    let _watchdog = Command::new("setsid")
        .arg("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("watchdog");
}

/// Makes a CA and a server certificate for `localhost`/127.0.0.1 in `data`; returns the CA PEM.
fn make_certs(data: &Path) -> Vec<u8> {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(data)
            .output()
            .expect("openssl (scripts/ensure-tools.sh postgres installs it)");
        check(out, &format!("openssl {}", args.join(" ")));
    };
    run(&[
        "req",
        "-x509",
        "-new",
        "-nodes",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=kstash test CA",
    ]);
    run(&[
        "req",
        "-new",
        "-nodes",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        data.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    std::fs::set_permissions(
        data.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("chmod key");
    let ca = std::fs::read(data.join("ca.crt")).expect("ca.crt");
    let _ = std::fs::remove_file(data.join("ca.key"));
    ca
}
