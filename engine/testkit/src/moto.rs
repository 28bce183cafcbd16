//! A real S3 server: moto on a free loopback port.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::paths::moto_bin;
use crate::process::{free_port, ChildGuard};

/// S3 credentials the tests put in storage Secrets (moto accepts any).
pub const S3_ACCESS_KEY: &str = "AKIAKSTASHTEST";
/// Secret key matching [`S3_ACCESS_KEY`].
pub const S3_SECRET_KEY: &str = "kstash-test-secret-key";

/// A moto S3 server, killed on drop.
pub struct Moto {
    child: ChildGuard,
    /// The port it listens on.
    pub port: u16,
}

impl Moto {
    /// Starts moto and waits (up to 30 s) until it accepts connections.
    pub fn start() -> Moto {
        let port = free_port();
        let child = ChildGuard::spawn_listening(
            "moto_server",
            Command::new(moto_bin())
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            port,
            Duration::from_secs(30),
        );
        Moto { child, port }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (`PUT /<bucket>` on a plain socket; moto needs no signature for it).
    pub fn create_bucket(&self, bucket: &str) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect moto");
        write!(
            s,
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(
            resp.split_whitespace().nth(1) == Some("200"),
            "create bucket {bucket}: {}",
            resp.lines().next().unwrap_or_default()
        );
    }

    /// The keys of `bucket` under `prefix` (ListObjectsV2 through curl, at most 1000).
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let out = Command::new("curl")
            .args([
                "-sf",
                &format!(
                    "{}/{bucket}?list-type=2&prefix={prefix}&max-keys=1000",
                    self.endpoint()
                ),
            ])
            .output()
            .expect("curl");
        assert!(out.status.success(), "listing bucket {bucket} failed");
        let xml = String::from_utf8(out.stdout).unwrap();
        xml.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }

    /// The `restic` environment for this server's test credentials.
    pub fn restic_env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), S3_ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), S3_SECRET_KEY.into()),
            ("AWS_DEFAULT_REGION".into(), "us-east-1".into()),
        ]
    }

    /// A kstash-repo client on `bucket/prefix` of this server (to check what kstash wrote).
    #[cfg(feature = "repo")]
    pub fn storage(&self, bucket: &str, prefix: &str) -> kstash_repo::Storage {
        let cfg = kstash_repo::StorageConfig {
            name: "test".into(),
            provider: kstash_repo::Provider::S3 {
                s3: kstash_repo::S3Config {
                    endpoint: self.endpoint(),
                    bucket: bucket.into(),
                    prefix: prefix.into(),
                    region: "us-east-1".into(),
                    secret_name: "test".into(),
                    ..Default::default()
                },
            },
            secrets: [
                ("AWS_ACCESS_KEY_ID".to_string(), S3_ACCESS_KEY.to_string()),
                (
                    "AWS_SECRET_ACCESS_KEY".to_string(),
                    S3_SECRET_KEY.to_string(),
                ),
            ]
            .into_iter()
            .collect(),
        };
        kstash_repo::Storage::connect(cfg).unwrap()
    }

    /// Sends a signal (`-STOP`, `-CONT`, ...) to the server process.
    pub fn signal(&self, sig: &str) {
        self.child.signal(sig);
    }
}
