//! The component's glue: binds [`Connector`]/[`PgStream`], [`Sink`] and the component readers
//! to the kstash SDK (`kstash:addon@0.2.0`).
//!
//! - [`Connector::connect`] is `tcp.connect()` (the host connects to the target's pinned host
//!   and port; the addon names no address);
//! - [`PgStream::start_tls`] is `start-tls` after the server answered `S` to `SSLRequest`
//!   (the host verifies the server with the target's CA bundle);
//! - SASL is `credentials.scram-start(SCRAM-SHA-256)`, `client-final`, `verify-server-final`;
//!   cleartext and md5 passwords are written into the stream by the host (`write-secret`
//!   framed as a `PasswordMessage` body, `write-md5-response`): the addon never holds the
//!   password;
//! - the user is `credentials.username()` (default `postgres`);
//! - TLS is chosen by the target URL's `sslmode` query parameter: `disable`; `allow`/`prefer`
//!   (default: ask, continue in plain text on `N`); `require`/`verify-ca`/`verify-full` (ask,
//!   fail on `N`). Whenever TLS is used the host verifies the certificate and the name.
//! - components become host streams through [`crate::stream_names`].

use std::io::{self, Read, Write};

use kstash_sdk::credentials::{Scram, SecretEncoding};
use kstash_sdk::prelude::*;

use crate::backup::{self, Sink};
use crate::conn::{Connector, PasswordMethod, PgStream, TlsMode};
use crate::error::Error;
use crate::options::{self, BackupOptions, RestoreOptions};
use crate::restore;
use crate::stream_names::{component_name, stream_name};

/// The component every backup belongs to (KubeStash's postgres-addon stores `dump`).
const COMPONENT: &str = "dump";

/// A connection to the target through the host.
struct HostStream {
    tcp: TcpStream,
    scram: Option<Scram>,
}

impl Read for HostStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tcp.read(buf)
    }
}

impl Write for HostStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tcp.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

impl PgStream for HostStream {
    fn start_tls(&mut self) -> io::Result<()> {
        self.tcp.start_tls().map_err(io::Error::from)
    }

    fn sasl_start(&mut self, mechanisms: &[String]) -> Result<(String, Vec<u8>), String> {
        if !mechanisms.iter().any(|m| m == "SCRAM-SHA-256") {
            return Err(format!(
                "the server offers SASL mechanisms {mechanisms:?}; only SCRAM-SHA-256 (without channel binding) is supported"
            ));
        }
        let scram = Scram::start()?;
        let first = scram.client_first();
        let mech = scram.mechanism().to_string();
        self.scram = Some(scram);
        Ok((mech, first))
    }

    fn sasl_continue(&mut self, server_first: &[u8]) -> Result<Vec<u8>, String> {
        self.scram
            .as_ref()
            .ok_or("SASL continue before SASL start")?
            .client_final(server_first)
    }

    fn sasl_finish(&mut self, server_final: &[u8]) -> Result<(), String> {
        self.scram
            .take()
            .ok_or("SASL final before SASL start")?
            .verify_server_final(server_final)
    }

    fn send_password(&mut self, method: PasswordMethod) -> Result<(), String> {
        if !credentials::has_secret() {
            return Err(
                "the server asks for a password and none is configured for the target".into(),
            );
        }
        self.tcp.write_all(b"p").map_err(|e| e.to_string())?;
        match method {
            PasswordMethod::Cleartext => self
                .tcp
                .write_secret(SecretEncoding::LengthPrefixedNulTerminated),
            PasswordMethod::Md5 { salt } => self.tcp.write_md5_response(&salt),
        }
        .map_err(|e| e.to_string())?;
        self.tcp.flush().map_err(|e| e.to_string())
    }
}

/// The task's target as the host reaches it.
struct HostConnector {
    user: String,
    tls: TlsMode,
}

impl HostConnector {
    fn new(task: &Task) -> Result<Self, TaskError> {
        Ok(Self {
            user: credentials::username()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| "postgres".to_string()),
            tls: tls_mode(task.target_url())?,
        })
    }
}

impl Connector for HostConnector {
    type Stream = HostStream;
    fn connect(&mut self) -> io::Result<HostStream> {
        Ok(HostStream {
            tcp: TcpStream::connect().map_err(io::Error::from)?,
            scram: None,
        })
    }
    fn user(&self) -> String {
        self.user.clone()
    }
    fn tls_mode(&self) -> TlsMode {
        self.tls
    }
}

/// The TLS mode from `postgres[ql]://host:port[/…][?sslmode=…]`.
fn tls_mode(url: &str) -> Result<TlsMode, TaskError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(TaskError::InvalidParams(format!(
            "target URL {url:?}: the PostgreSQL addon needs postgres:// or postgresql://"
        )));
    }
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    let mut mode = TlsMode::Prefer;
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        if k != "sslmode" {
            return Err(TaskError::InvalidParams(format!(
                "target URL {url:?}: query parameter {k:?} is not supported (only sslmode)"
            )));
        }
        mode = match v {
            "disable" => TlsMode::Disable,
            "allow" | "prefer" => TlsMode::Prefer,
            "require" | "verify-ca" | "verify-full" => TlsMode::Require,
            other => {
                return Err(TaskError::InvalidParams(format!(
                    "target URL {url:?}: sslmode {other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                )))
            }
        };
    }
    Ok(mode)
}

/// Components written as host output streams; the previous one is sealed when the next opens.
#[derive(Default)]
struct HostSink {
    current: Option<OutputStream>,
    written: u64,
}

impl HostSink {
    fn seal(&mut self) -> io::Result<()> {
        if let Some(prev) = self.current.take() {
            let name = prev.name().to_string();
            self.written += prev
                .finish()
                .map_err(|e| io::Error::other(format!("finishing stream {name}: {e}")))?;
        }
        Ok(())
    }
}

impl Sink for HostSink {
    fn create(&mut self, name: &str) -> io::Result<Box<dyn Write + '_>> {
        self.seal()?;
        let out = OutputStream::open(&stream_name(name))?;
        Ok(Box::new(self.current.insert(out)))
    }
}

fn task_error(e: Error) -> TaskError {
    let text = e.to_string();
    match e {
        Error::Param { .. } | Error::NotEmpty { .. } => TaskError::InvalidParams(text),
        Error::Auth { .. } | Error::Io { .. } | Error::Tls(_) => TaskError::Connect(text),
        Error::Stream { .. } => TaskError::Io(text),
        Error::Server { .. } | Error::Script { .. } | Error::ScriptSyntax { .. } => {
            TaskError::Remote(text)
        }
        _ => TaskError::Other(text),
    }
}

fn param(name: &str, description: &str, kind: ParamKind, default: Option<&str>) -> ParamDef {
    ParamDef {
        name: name.to_string(),
        description: description.to_string(),
        kind,
        required: false,
        default_value: default.map(str::to_string),
    }
}

fn common_params() -> Vec<ParamDef> {
    vec![
        param(
            "args",
            "Options of the dump command (backup) or of psql (restore), split like a shell",
            ParamKind::Text,
            None,
        ),
        param(
            "user",
            "Must be the user of the target's credentials",
            ParamKind::Text,
            None,
        ),
        param(
            "enableCache",
            "Accepted for KubeStash compatibility; no effect",
            ParamKind::Boolean,
            None,
        ),
        param(
            "scratchDir",
            "Accepted for KubeStash compatibility; no effect",
            ParamKind::Text,
            None,
        ),
    ]
}

struct Postgres;

impl Addon for Postgres {
    fn describe() -> Description {
        let mut backup_params = common_params();
        backup_params.push(param(
            "backupCmd",
            "pg_dumpall (globals and every database) or pg_dump (one database)",
            ParamKind::Text,
            Some("pg_dumpall"),
        ));
        let mut restore_params = common_params();
        restore_params.push(param(
            "clean",
            "Drop and recreate target databases that exist or are not empty",
            ParamKind::Boolean,
            Some("false"),
        ));
        restore_params.push(param(
            "continueOnError",
            "Go on after a failing statement (reported), like psql without ON_ERROR_STOP",
            ParamKind::Boolean,
            Some("false"),
        ));
        Description {
            name: "postgres-addon".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            summary: "PostgreSQL logical backup as plain SQL scripts (pg_dumpall/pg_dump format), restore like psql".to_string(),
            tasks: vec![
                TaskDef {
                    name: options::Task::Backup.name().to_string(),
                    kind: TaskKind::Backup,
                    description: "Dumps the globals and each database as plain SQL scripts, one REPEATABLE READ snapshot per database.".to_string(),
                    params: backup_params,
                },
                TaskDef {
                    name: options::Task::Restore.name().to_string(),
                    kind: TaskKind::Restore,
                    description: "Runs the scripts (kstash's, pg_dump -Fp's or pg_dumpall's) into empty databases.".to_string(),
                    params: restore_params,
                },
            ],
            components: vec![COMPONENT.to_string()],
        }
    }

    fn backup(task: &Task) -> Result<TaskSummary, TaskError> {
        let mut connector = HostConnector::new(task)?;
        let opts = BackupOptions::from_params(task.params().pairs(), &connector.user)
            .map_err(task_error)?;
        for note in &opts.notes {
            log::info(note);
        }
        let mut sink = HostSink::default();
        let report = backup::backup(&mut connector, &opts, &mut sink, &mut |m| log::info(m))
            .map_err(task_error)?;
        sink.seal()?;
        let mut rows = 0;
        for (name, stats) in &report.components {
            report::part(name, stats.rows, 0);
            rows += stats.rows;
        }
        for w in &report.warnings {
            report::warning(None, w);
        }
        Ok(TaskSummary {
            items: rows,
            bytes: sink.written,
            warnings: report.warnings,
        })
    }

    fn restore(task: &Task) -> Result<TaskSummary, TaskError> {
        let mut connector = HostConnector::new(task)?;
        let opts = RestoreOptions::from_params(task.params().pairs(), &connector.user)
            .map_err(task_error)?;
        for note in &opts.notes {
            log::info(note);
        }
        let names = input_names();
        if names.is_empty() {
            return Err(TaskError::Io(
                "the snapshot has no stream to restore".to_string(),
            ));
        }
        let mut components: Vec<(String, Box<dyn Read>)> = Vec::with_capacity(names.len());
        for name in &names {
            let input = InputStream::open(name)?;
            let component = component_name(name).unwrap_or_else(|| name.clone());
            components.push((component, Box::new(input)));
        }
        let report = restore::restore(&mut connector, &opts, components).map_err(task_error)?;
        for e in &report.errors {
            report::skipped("statement", e);
        }
        let mut warnings = report.warnings.clone();
        warnings.extend(report.errors.iter().cloned());
        for w in &report.warnings {
            report::warning(None, w);
        }
        Ok(TaskSummary {
            items: report.statements,
            bytes: 0,
            warnings,
        })
    }
}

export_addon!(Postgres);
