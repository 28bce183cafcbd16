//! A real `redis-server` on loopback with a password (optionally TLS only), and `redis-cli`
//! against it.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{free_port, ChildGuard};
use crate::tls::certificates;

/// A `redis-server` on 127.0.0.1 with `requirepass`, no persistence; killed on drop.
pub struct RedisServer {
    /// The port it listens on (its TLS port when it speaks TLS only).
    pub port: u16,
    /// The `requirepass`.
    pub password: String,
    /// CA certificate file when the server speaks TLS only.
    pub tls_ca: Option<PathBuf>,
    _child: ChildGuard,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// A plain server with `password`.
    pub fn start(password: &str) -> RedisServer {
        Self::spawn(password, false)
    }

    /// A server that speaks TLS only (`--port 0 --tls-port P`, a certificate for 127.0.0.1
    /// from a fresh CA, [`RedisServer::tls_ca`]); clients need no certificate.
    pub fn start_tls(password: &str) -> RedisServer {
        Self::spawn(password, true)
    }

    fn spawn(password: &str, tls: bool) -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut cmd = Command::new("redis-server");
        let mut tls_ca = None;
        if tls {
            let (ca, cert, key) = certificates(dir.path());
            cmd.args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--tls-auth-clients",
                "no",
            ])
            .arg("--tls-cert-file")
            .arg(&cert)
            .arg("--tls-key-file")
            .arg(&key)
            .arg("--tls-ca-cert-file")
            .arg(&ca);
            tls_ca = Some(ca);
        } else {
            cmd.args(["--port", &port.to_string()]);
        }
        cmd.args(["--bind", "127.0.0.1"])
            .args([
                "--requirepass",
                password,
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null());
        let child = ChildGuard::spawn(
            "redis-server (scripts/ensure-tools.sh redis installs it)",
            &mut cmd,
        );
        let r = RedisServer {
            port,
            password: password.to_string(),
            tls_ca,
            _child: child,
            _dir: dir,
        };
        let start = Instant::now();
        while r.cli(0, &["PING"]) != "PONG" {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    /// `redis-cli -h 127.0.0.1 -p <port> -a <password> -n <db>` (with `--tls --cacert` for a
    /// TLS server), ready for more arguments.
    pub fn cli_command(&self, db: u32) -> Command {
        let mut c = Command::new("redis-cli");
        c.args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args([
                "-a",
                &self.password,
                "--no-auth-warning",
                "-n",
                &db.to_string(),
            ]);
        if let Some(ca) = &self.tls_ca {
            c.arg("--tls").arg("--cacert").arg(ca);
        }
        c
    }

    /// Runs one command with `redis-cli --no-raw` (quoted, escaped output); returns stdout
    /// without its trailing newline.
    pub fn cli(&self, db: u32, args: &[&str]) -> String {
        let o = self
            .cli_command(db)
            .arg("--no-raw")
            .args(args)
            .output()
            .expect("redis-cli must be installed (scripts/ensure-tools.sh redis)");
        String::from_utf8_lossy(&o.stdout).trim_end().to_string()
    }
}
