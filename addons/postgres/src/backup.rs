//! The `logical-backup` task: the globals script and one plain SQL script per database, each
//! written to a component the addon names (see [`GLOBALS_COMPONENT`] and
//! [`database_component`]).

use crate::client::Client;
use crate::conn::{Connector, PgStream};
use crate::dump::{self, DbStats};
use crate::error::{Error, Result};
use crate::globals::{self, Database};
use crate::options::{BackupCmd, BackupOptions};
use std::io::Write;

/// The component holding roles and memberships (`pg_dumpall --globals-only`).
pub const GLOBALS_COMPONENT: &str = "globals.sql";

/// The component holding database `db`'s script: `databases/<db>.sql`, with `%`, `/` and
/// control characters of the name percent-encoded so that any database name is one file name.
pub fn database_component(db: &str) -> String {
    let mut s = String::from("databases/");
    for c in db.chars() {
        if c == '%' || c == '/' || c == '\\' || c.is_control() {
            let mut b = [0u8; 4];
            for byte in c.encode_utf8(&mut b).bytes() {
                s.push_str(&format!("%{byte:02X}"));
            }
        } else {
            s.push(c);
        }
    }
    s.push_str(".sql");
    s
}

/// The database a component name stands for (inverse of [`database_component`]).
pub fn component_database(component: &str) -> Option<String> {
    let name = component.strip_prefix("databases/")?.strip_suffix(".sql")?;
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Where the task's output goes: one byte stream per component.
pub trait Sink {
    /// Opens component `name` for writing; it is complete when the writer is dropped after a
    /// successful flush.
    fn create(&mut self, name: &str) -> std::io::Result<Box<dyn Write + '_>>;
}

/// What a backup wrote.
#[derive(Debug, Clone, Default)]
pub struct BackupReport {
    /// Components written, in order, with what each database's script holds.
    pub components: Vec<(String, DbStats)>,
    /// Things the operator should know (ignored options, passwords not readable).
    pub warnings: Vec<String>,
}

fn stream_err(name: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Stream {
        stream: name.to_string(),
        source,
    }
}

fn version<S: PgStream>(c: &Client<S>) -> Result<u32> {
    let v = c.server_param("server_version_num").unwrap_or("");
    let n: u32 = match v.parse() {
        Ok(n) => n,
        Err(_) => {
            // Servers before 12 do not report server_version_num at startup; "15.4" style.
            let text = c.server_param("server_version").unwrap_or("0");
            let major: u32 = text
                .split(|ch: char| !ch.is_ascii_digit())
                .next()
                .unwrap_or("0")
                .parse()
                .unwrap_or(0);
            major * 10000
        }
    };
    if n < 130000 {
        return Err(Error::Unsupported(format!(
            "server version {} is not supported: PostgreSQL 13 or later is needed",
            c.server_param("server_version").unwrap_or("?")
        )));
    }
    Ok(n)
}

/// Runs the backup: connects as the connector's user, writes the globals (pg_dumpall) and each
/// selected database's script. Each database is read in one REPEATABLE READ snapshot.
pub fn backup<C: Connector>(
    connector: &mut C,
    opts: &BackupOptions,
    sink: &mut dyn Sink,
    log: &mut dyn FnMut(&str),
) -> Result<BackupReport> {
    let mut report = BackupReport {
        warnings: opts.notes.clone(),
        ..Default::default()
    };
    let first_db = match opts.cmd {
        BackupCmd::PgDumpall => opts.maintenance_db.clone(),
        BackupCmd::PgDump => opts.database.clone().unwrap_or_else(|| "postgres".into()),
    };
    let mut main = Client::connect(connector, &first_db)?;
    let version = version(&main)?;
    let all = globals::databases(&mut main, version)?;
    if opts.globals {
        log(&format!("writing {GLOBALS_COMPONENT}"));
        let script = globals::globals_script(
            &mut main,
            version,
            opts.no_role_passwords,
            opts.dump.no_comments,
            &mut report.warnings,
        )?;
        let mut w = sink
            .create(GLOBALS_COMPONENT)
            .map_err(stream_err(GLOBALS_COMPONENT))?;
        w.write_all(script.as_bytes())
            .map_err(stream_err(GLOBALS_COMPONENT))?;
        w.flush().map_err(stream_err(GLOBALS_COMPONENT))?;
        report
            .components
            .push((GLOBALS_COMPONENT.to_string(), DbStats::default()));
    }
    main.close();
    if opts.globals_only {
        return Ok(report);
    }
    let selected: Vec<&Database> = match opts.cmd {
        BackupCmd::PgDump => {
            let name = opts.database.as_deref().unwrap_or_default();
            let db = all.iter().find(|d| d.name == name).ok_or_else(|| {
                Error::Unsupported(format!("database {name:?} does not exist on the target"))
            })?;
            vec![db]
        }
        BackupCmd::PgDumpall => all
            .iter()
            .filter(|d| d.allow_conn && d.name != "template0")
            .filter(|d| {
                !opts
                    .exclude_databases
                    .iter()
                    .any(|p| p.matches_name(&d.name))
            })
            .collect(),
    };
    for db in selected {
        let component = database_component(&db.name);
        log(&format!("dumping database {:?} into {component}", db.name));
        let stats = dump_one(connector, version, db, opts, sink, &component)?;
        report.components.push((component, stats));
    }
    Ok(report)
}

fn dump_one<C: Connector>(
    connector: &mut C,
    version: u32,
    db: &Database,
    opts: &BackupOptions,
    sink: &mut dyn Sink,
    component: &str,
) -> Result<DbStats> {
    let mut c = Client::connect(connector, &db.name)?;
    dump::prepare_session(&mut c)?;
    dump::begin_snapshot(&mut c)?;
    if let Some(t) = &opts.lock_wait_timeout {
        c.execute(
            "setting lock_timeout",
            &format!("SET lock_timeout = {}", crate::sql::literal(t)),
        )?;
    }
    let prologue = globals::prologue(db, opts.create, opts.clean, opts.dump.no_owner);
    let epilogue = if opts.dump.data_only {
        String::new()
    } else {
        globals::epilogue(
            &mut c,
            db,
            opts.dump.no_owner,
            opts.dump.no_privileges,
            opts.dump.no_comments,
        )?
    };
    let mut w = sink.create(component).map_err(stream_err(component))?;
    let stats = dump::dump_database(
        &mut c,
        version,
        &opts.dump,
        &prologue,
        &epilogue,
        &mut *w,
        component,
        &mut |_| {},
    )?;
    w.flush().map_err(stream_err(component))?;
    c.execute("ending the snapshot", "COMMIT")?;
    c.close();
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_names_round_trip() {
        for name in ["app", "We'ird/db%x", "ümlaut db", "a\\b"] {
            let c = database_component(name);
            assert!(!c[10..].contains('/'), "{c}");
            assert_eq!(component_database(&c).as_deref(), Some(name));
        }
        assert_eq!(database_component("app"), "databases/app.sql");
        assert_eq!(component_database("globals.sql"), None);
    }
}
