//! The real `restic` CLI as the judge of what kstash wrote.

use std::path::PathBuf;
use std::process::{Command, Output};

use crate::paths::restic_bin;

/// `restic` against one repository: its location, password and environment.
#[derive(Clone, Debug)]
pub struct Restic {
    /// `RESTIC_REPOSITORY` (`s3:http://127.0.0.1:<port>/<bucket>/…`, or a local path).
    pub location: String,
    /// `RESTIC_PASSWORD`.
    pub password: String,
    /// Extra environment (S3 credentials, region).
    pub env: Vec<(String, String)>,
    /// `RESTIC_CACHE_DIR` (`None`: `--no-cache`).
    pub cache_dir: Option<PathBuf>,
}

impl Restic {
    /// restic on `location` with `password` and `env`, without a cache.
    pub fn new(location: impl Into<String>, password: &str, env: Vec<(String, String)>) -> Self {
        Restic {
            location: location.into(),
            password: password.to_string(),
            env,
            cache_dir: None,
        }
    }

    /// The same, with `RESTIC_CACHE_DIR` = `dir`.
    pub fn with_cache(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// The command, environment set, ready for arguments.
    pub fn command(&self) -> Command {
        let mut c = Command::new(restic_bin());
        c.env("RESTIC_REPOSITORY", &self.location)
            .env("RESTIC_PASSWORD", &self.password);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        match &self.cache_dir {
            Some(d) => {
                c.env("RESTIC_CACHE_DIR", d);
            }
            None => {
                c.arg("--no-cache");
            }
        }
        c
    }

    /// Runs `restic <args>` and returns its output (success not checked).
    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run restic")
    }

    /// Runs `restic <args>`; panics with stderr when it fails; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "restic {} on {}: {}",
            args.join(" "),
            self.location,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `restic snapshots --json`, parsed.
    pub fn snapshots(&self) -> Vec<serde_json::Value> {
        serde_json::from_str(&self.ok(&["snapshots", "--json"])).expect("restic snapshots JSON")
    }
}
