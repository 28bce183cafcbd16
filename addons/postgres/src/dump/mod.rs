//! Dumps one database as a plain SQL script, like `pg_dump -Fp`: pre-data, data (`COPY … FROM
//! stdin` blocks streamed straight from `COPY … TO STDOUT`, sequence values, large objects),
//! post-data, then privileges. Everything is read in one REPEATABLE READ snapshot.

pub mod acl;
pub mod catalog;
pub mod objects;

use crate::client::Client;
use crate::conn::PgStream;
use crate::error::{Error, Result};
use crate::options::Pattern;
use objects::{Body, Section};
use std::io::Write;

/// What to put into a database's script.
#[derive(Debug, Clone, Default)]
pub struct DumpOptions {
    /// Definitions only (`--schema-only`).
    pub schema_only: bool,
    /// Data only (`--data-only`).
    pub data_only: bool,
    /// No `ALTER … OWNER TO` (`--no-owner`).
    pub no_owner: bool,
    /// No GRANT/REVOKE (`--no-privileges`).
    pub no_privileges: bool,
    /// No COMMENT ON (`--no-comments`).
    pub no_comments: bool,
    /// Large objects are dumped (default; `--no-large-objects`/`--no-blobs` turns it off).
    pub large_objects: bool,
    /// Only these schemas (`--schema`), empty = all.
    pub include_schemas: Vec<Pattern>,
    /// Not these schemas (`--exclude-schema`).
    pub exclude_schemas: Vec<Pattern>,
    /// Not these tables (`--exclude-table`).
    pub exclude_tables: Vec<Pattern>,
    /// Not the data of these tables (`--exclude-table-data`).
    pub exclude_table_data: Vec<Pattern>,
    /// No data of unlogged tables (`--no-unlogged-table-data`).
    pub no_unlogged_table_data: bool,
}

impl DumpOptions {
    /// Whether objects of `schema` are dumped.
    pub fn schema_wanted(&self, schema: &str) -> bool {
        (self.include_schemas.is_empty()
            || self.include_schemas.iter().any(|p| p.matches_name(schema)))
            && !self.exclude_schemas.iter().any(|p| p.matches_name(schema))
    }

    /// Whether `schema.table` is left out entirely.
    pub fn table_excluded(&self, schema: &str, table: &str) -> bool {
        self.exclude_tables
            .iter()
            .any(|p| p.matches_qualified(schema, table))
    }

    /// Whether the rows of `schema.table` are dumped.
    pub fn data_wanted(&self, schema: &str, table: &str, persistence: char) -> bool {
        let unlogged_skipped = self.no_unlogged_table_data && persistence == 'u';
        !(unlogged_skipped
            || self
                .exclude_table_data
                .iter()
                .any(|p| p.matches_qualified(schema, table)))
    }
}

/// What dumping one database did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DbStats {
    /// Schema objects written.
    pub objects: u64,
    /// Tables whose data was written.
    pub tables: u64,
    /// Rows written.
    pub rows: u64,
    /// Large objects written.
    pub large_objects: u64,
}

/// The session settings every script starts with (as pg_dump writes them).
pub const SCRIPT_SETTINGS: &str = "SET statement_timeout = 0;\n\
SET lock_timeout = 0;\n\
SET idle_in_transaction_session_timeout = 0;\n\
SET client_encoding = 'UTF8';\n\
SET standard_conforming_strings = on;\n\
SELECT pg_catalog.set_config('search_path', '', false);\n\
SET check_function_bodies = false;\n\
SET xmloption = content;\n\
SET client_min_messages = warning;\n\
SET row_security = off;\n";

/// Prepares a session for reading: stable output formats, empty search_path (so the server's
/// deparsers qualify every name), no row security (a table it would filter fails instead).
pub fn prepare_session<S: PgStream>(c: &mut Client<S>) -> Result<()> {
    c.execute(
        "preparing the session",
        "SET DateStyle = ISO; SET IntervalStyle = postgres; SET extra_float_digits = 3; \
         SET statement_timeout = 0; SET lock_timeout = 0; SET idle_in_transaction_session_timeout = 0; \
         SET row_security = off; SET bytea_output = hex; SET standard_conforming_strings = on; \
         SET quote_all_identifiers = off; SELECT pg_catalog.set_config('search_path', '', false)",
    )
}

/// Opens the dump's transaction: REPEATABLE READ, READ ONLY, and exports its snapshot so that
/// further readers can share it (`SET TRANSACTION SNAPSHOT`). Returns the snapshot name.
pub fn begin_snapshot<S: PgStream>(c: &mut Client<S>) -> Result<String> {
    c.execute(
        "starting the snapshot",
        "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
    )?;
    let rows = c.query(
        "exporting the snapshot",
        "SELECT pg_catalog.pg_export_snapshot() AS s",
    )?;
    Ok(rows.first().map(|r| r.string("s")).unwrap_or_default())
}

/// Joins a snapshot exported by [`begin_snapshot`] on another session.
pub fn join_snapshot<S: PgStream>(c: &mut Client<S>, snapshot: &str) -> Result<()> {
    c.execute(
        "starting a reader",
        "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
    )?;
    c.execute(
        &format!("importing snapshot {snapshot}"),
        &format!("SET TRANSACTION SNAPSHOT {}", crate::sql::literal(snapshot)),
    )
}

/// Writes the script of the database `c` is connected to, between `prologue` (database
/// creation, `\connect`) and `epilogue` (database-level comment, settings, privileges).
/// `on_table` is called before each table's data with the table's name.
#[allow(clippy::too_many_arguments)]
pub fn dump_database<S: PgStream>(
    c: &mut Client<S>,
    version: u32,
    opts: &DumpOptions,
    prologue: &str,
    epilogue: &str,
    out: &mut dyn Write,
    stream: &str,
    on_table: &mut dyn FnMut(&str),
) -> Result<DbStats> {
    let w = |out: &mut dyn Write, s: &str| -> Result<()> {
        out.write_all(s.as_bytes()).map_err(|source| Error::Stream {
            stream: stream.to_string(),
            source,
        })
    };
    let loaded = catalog::load(c, version, opts)?;
    let sorted = objects::sort(loaded.objs)?;
    let mut stats = DbStats::default();
    let server_version = c.server_param("server_version").unwrap_or("?").to_string();
    w(
        out,
        &format!(
            "--\n-- PostgreSQL database dump of {:?} by kstash postgres-addon {}\n-- Server version {server_version}\n--\n\n",
            c.database(),
            env!("CARGO_PKG_VERSION")
        ),
    )?;
    w(out, prologue)?;
    w(out, SCRIPT_SETTINGS)?;
    w(out, "\n")?;
    let mut section = None;
    for o in &sorted {
        let skip = match o.section {
            Section::Data => opts.schema_only,
            _ => opts.data_only,
        };
        if skip {
            continue;
        }
        if section != Some(o.section) {
            section = Some(o.section);
            let name = match o.section {
                Section::PreData => "pre-data",
                Section::Data => "data",
                Section::PostData => "post-data",
            };
            w(out, &format!("--\n-- Section: {name}\n--\n\n"))?;
        }
        w(
            out,
            &format!("--\n-- {}\n--\n\n", crate::sql::comment_text(&o.label)),
        )?;
        match &o.body {
            Body::Sql(sql) => {
                w(out, sql)?;
                stats.objects += 1;
            }
            Body::TableData { qname, columns } => {
                on_table(qname);
                let cols = columns
                    .as_ref()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default();
                w(out, &format!("COPY {qname}{cols} FROM stdin;\n"))?;
                let copied = c.copy_out(
                    &format!("COPY {qname}"),
                    &format!("COPY {qname}{cols} TO STDOUT"),
                    out,
                    stream,
                )?;
                w(out, "\\.\n")?;
                stats.tables += 1;
                stats.rows += copied.rows;
            }
            Body::BlobData { oid } => {
                write_large_object(c, *oid, out, stream)?;
                stats.large_objects += 1;
            }
        }
        w(out, "\n")?;
    }
    if !opts.data_only && !opts.no_privileges {
        let acls: Vec<&objects::Obj> = sorted.iter().filter(|o| !o.acl.is_empty()).collect();
        if !acls.is_empty() {
            w(out, "--\n-- Privileges\n--\n\n")?;
            for o in acls {
                w(
                    out,
                    &format!("-- ACL {}\n", crate::sql::comment_text(&o.label)),
                )?;
                w(out, &o.acl)?;
                w(out, "\n")?;
            }
        }
    }
    w(out, epilogue)?;
    w(
        out,
        &format!(
            "--\n-- PostgreSQL database dump of {:?} complete\n--\n",
            c.database()
        ),
    )?;
    Ok(stats)
}

/// Writes a large object's contents as `lowrite` calls of at most 64 KiB each.
fn write_large_object<S: PgStream>(
    c: &mut Client<S>,
    oid: u32,
    out: &mut dyn Write,
    stream: &str,
) -> Result<()> {
    let what = format!("reading large object {oid}");
    let rows = c.query(
        &what,
        &format!("SELECT pg_catalog.lo_open('{oid}', 262144) AS fd"),
    )?;
    let fd = rows.first().map(|r| r.string("fd")).unwrap_or_default();
    let io = |source| Error::Stream {
        stream: stream.to_string(),
        source,
    };
    out.write_all(format!("BEGIN;\n\nSELECT pg_catalog.lo_open('{oid}', 131072);\n").as_bytes())
        .map_err(io)?;
    loop {
        let rows = c.query(
            &what,
            &format!("SELECT pg_catalog.loread({fd}, 65536) AS d"),
        )?;
        let data = rows.first().map(|r| r.string("d")).unwrap_or_default();
        if data.len() <= 2 {
            break;
        }
        out.write_all(format!("SELECT pg_catalog.lowrite(0, '{data}');\n").as_bytes())
            .map_err(io)?;
    }
    c.execute(&what, &format!("SELECT pg_catalog.lo_close({fd})"))?;
    out.write_all(b"SELECT pg_catalog.lo_close(0);\n\nCOMMIT;\n")
        .map_err(io)?;
    Ok(())
}
