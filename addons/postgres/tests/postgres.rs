//! Host tests of the PostgreSQL addon against real PostgreSQL servers.

mod support;

use postgres_addon::client::Client;
use postgres_addon::conn::TlsMode;
use support::native::NativeConnector;
use support::server::{Server, ServerOptions, SUPERUSER_PASSWORD};

#[test]
fn connects_with_scram_and_tls() {
    let plain = Server::start(ServerOptions::default());
    let mut c = NativeConnector::new(&plain.addr(), "postgres", SUPERUSER_PASSWORD);
    let mut client = Client::connect(&mut c, "postgres").expect("connect");
    let rows = client.query("version", "SELECT current_setting('server_version_num') AS v, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").unwrap();
    assert!(rows.first().unwrap().i64("v") >= 130000);
    assert!(!rows.first().unwrap().bool("ssl"));
    client.close();

    let tls = Server::start(ServerOptions { tls: true });
    let mut c = NativeConnector::new(&tls.addr(), "postgres", SUPERUSER_PASSWORD);
    c.tls = TlsMode::Require;
    c.ca_pem = tls.ca_pem.clone();
    let mut client = Client::connect(&mut c, "postgres").expect("connect over TLS");
    let rows = client
        .query(
            "ssl",
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        )
        .unwrap();
    assert!(rows.first().unwrap().bool("ssl"));
    client.close();

    let mut bad = NativeConnector::new(&plain.addr(), "postgres", "wrong");
    let err = Client::connect(&mut bad, "postgres")
        .err()
        .expect("wrong password fails");
    let msg = err.to_string();
    assert!(
        msg.contains("authentication of user \"postgres\"") && msg.contains("28P01"),
        "{msg}"
    );
}

use postgres_addon::backup::{backup, BackupReport};
use postgres_addon::options::{BackupOptions, RestoreOptions};
use postgres_addon::restore::{restore, RestoreReport};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use support::dir::{components, DirSink};

fn params(kv: &[(&str, &str)]) -> Vec<(String, String)> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kstash-pg-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn kstash_backup(
    server: &Server,
    kv: &[(&str, &str)],
    dir: &Path,
) -> postgres_addon::error::Result<BackupReport> {
    let opts = BackupOptions::from_params(&params(kv), "postgres")?;
    let mut c = NativeConnector::new(&server.addr(), "postgres", SUPERUSER_PASSWORD);
    backup(
        &mut c,
        &opts,
        &mut DirSink {
            root: dir.to_path_buf(),
        },
        &mut |_| {},
    )
}

fn kstash_restore(
    server: &Server,
    kv: &[(&str, &str)],
    dir: &Path,
) -> postgres_addon::error::Result<RestoreReport> {
    let opts = RestoreOptions::from_params(&params(kv), "postgres")?;
    let mut c = NativeConnector::new(&server.addr(), "postgres", SUPERUSER_PASSWORD);
    restore(&mut c, &opts, components(dir))
}

/// `pg_dump --schema-only` of `db`, without the random `\restrict`/`\unrestrict` key lines.
fn schema_of(server: &Server, db: &str) -> String {
    let out = server
        .cmd("pg_dump")
        .args(["--schema-only", "-d", db])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("\\restrict ") && !l.starts_with("\\unrestrict "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every table's rows (of every user schema, partitions and inheritance children separately),
/// each as an md5 of its sorted text rows, plus sequence values and large objects.
fn data_of(server: &Server, db: &str) -> String {
    let tables = server.psql(
        db,
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_' ORDER BY 1",
    );
    let mut out = String::new();
    for t in tables.lines() {
        let sum = server.psql(
            db,
            &format!("SELECT count(*) || ' ' || coalesce(md5(string_agg(x::text, E'\\n' ORDER BY x::text)), '-') FROM ONLY {t} x"),
        );
        out.push_str(&format!("{t} {sum}"));
    }
    out.push_str(&server.psql(
        db,
        "SELECT string_agg(format('%I.%I', schemaname, sequencename) || '=' || coalesce(last_value::text, 'null'), ',' ORDER BY schemaname, sequencename) FROM pg_sequences",
    ));
    out.push_str(&server.psql(
        db,
        "SELECT count(*) || ' ' || coalesce(md5(string_agg(md5(lo_get(oid)), ',' ORDER BY oid)), '-') FROM pg_largeobject_metadata",
    ));
    out
}

/// Roles (without the superuser), memberships and database settings.
fn globals_of(server: &Server) -> String {
    server.psql(
        "postgres",
        "SELECT string_agg(rolname || ':' || rolcanlogin || rolcreatedb || coalesce(rolpassword, '-'), ',' ORDER BY rolname) FROM pg_authid WHERE rolname !~ '^pg_' AND rolname <> 'postgres' \
         UNION ALL SELECT string_agg(pg_get_userbyid(roleid) || '>' || pg_get_userbyid(member), ',' ORDER BY pg_get_userbyid(roleid), pg_get_userbyid(member)) FROM pg_auth_members WHERE pg_get_userbyid(roleid) !~ '^pg_' \
         UNION ALL SELECT string_agg(d.datname || coalesce(array_to_string(s.setconfig, ';'), ''), ',' ORDER BY d.datname) FROM pg_database d LEFT JOIN pg_db_role_setting s ON s.setdatabase = d.oid",
    )
}

/// The source: roles alice and bob, database `app` with every object kind, database
/// `bench` with `pgbench -i` tables.
fn source() -> &'static Server {
    static SRC: OnceLock<Server> = OnceLock::new();
    SRC.get_or_init(|| {
        let s = Server::start(ServerOptions::default());
        s.psql(
            "postgres",
            "CREATE ROLE alice LOGIN PASSWORD 'alice-pw'; CREATE ROLE bob; GRANT bob TO alice",
        );
        s.psql("postgres", "CREATE DATABASE app");
        s.psql("postgres", "CREATE DATABASE bench");
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/all_kinds.sql");
        let out = s.psql_file("app", &fixture);
        assert!(
            out.status.success(),
            "fixture: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = s
            .cmd("pgbench")
            .args(["-i", "-q", "-s", "1", "bench"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pgbench -i: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        s
    })
}

fn assert_same(src: &Server, dst: &Server, how: &str) {
    for db in ["app", "bench"] {
        let (a, b) = (schema_of(src, db), schema_of(dst, db));
        if a != b {
            let pa = scratch(&format!("{how}-{db}-src.sql"));
            std::fs::write(pa.join("schema.sql"), &a).unwrap();
            std::fs::write(pa.join("restored.sql"), &b).unwrap();
            panic!("{how}: pg_dump --schema-only of {db} differs; see diff {}/schema.sql {}/restored.sql", pa.display(), pa.display());
        }
        assert_eq!(data_of(src, db), data_of(dst, db), "{how}: data of {db}");
    }
    assert_eq!(globals_of(src), globals_of(dst), "{how}: globals");
}

#[test]
fn kstash_backup_restores_identically_with_kstash_and_psql() {
    let src = source();
    let dir = scratch("all");
    let report = kstash_backup(src, &[], &dir).expect("backup");
    let names: Vec<&str> = report.components.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.contains(&"globals.sql")
            && names.contains(&"databases/app.sql")
            && names.contains(&"databases/bench.sql"),
        "{names:?}"
    );

    let dst = Server::start(ServerOptions::default());
    let r = kstash_restore(&dst, &[], &dir).expect("kstash restore");
    assert!(r.errors.is_empty() && r.rows > 100_000, "{r:?}");
    assert_same(src, &dst, "kstash restore");

    // A second restore into the same server refuses, naming the database.
    let err = kstash_restore(&dst, &[], &dir).unwrap_err().to_string();
    assert!(
        err.contains("\"app\"") || err.contains("\"bench\"") || err.contains("postgres"),
        "{err}"
    );

    let viapsql = Server::start(ServerOptions::default());
    for (name, _) in components(&dir) {
        let out = viapsql.psql_file("postgres", &dir.join(&name));
        assert!(
            out.status.success(),
            "psql -f {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_same(src, &viapsql, "psql -f");
}

#[test]
fn kstash_restores_pg_dumpall_and_pg_dump_scripts() {
    let src = source();
    let dir = scratch("dumpall");
    let out = src
        .cmd("pg_dumpall")
        .arg("-f")
        .arg(dir.join("dumpfile.sql"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_dumpall: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dst = Server::start(ServerOptions::default());
    let opts = RestoreOptions::from_params(&[], "postgres").unwrap();
    let mut c = NativeConnector::new(&dst.addr(), "postgres", SUPERUSER_PASSWORD);
    let f: Box<dyn std::io::Read> =
        Box::new(std::fs::File::open(dir.join("dumpfile.sql")).unwrap());
    let r = restore(&mut c, &opts, vec![("dumpfile.sql".into(), f)])
        .expect("restore pg_dumpall script");
    assert!(r.errors.is_empty(), "{r:?}");
    assert_same(src, &dst, "pg_dumpall script");
}
