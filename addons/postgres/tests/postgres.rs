//! Host tests of the PostgreSQL addon against real PostgreSQL servers.

mod support;

use postgres_addon::client::Client;
use postgres_addon::conn::TlsMode;
use support::compare::{data_of, globals_of, schema_of};
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

    // A backup over TLS, restored over TLS into the same server with clean=true.
    tls.psql("postgres", "CREATE DATABASE tdb");
    tls.psql(
        "tdb",
        "CREATE TABLE public.t AS SELECT g, md5(g::text) AS h FROM generate_series(1, 1000) g",
    );
    let before = data_of(&tls, "tdb");
    let dir = scratch("tls");
    let opts = BackupOptions::from_params(&[], "postgres").unwrap();
    backup(
        &mut c,
        &opts,
        &mut DirSink { root: dir.clone() },
        &mut |_| {},
    )
    .expect("backup over TLS");
    tls.psql("tdb", "DELETE FROM public.t WHERE g > 10");
    let opts = RestoreOptions::from_params(&params(&[("clean", "true")]), "postgres").unwrap();
    let r = restore(&mut c, &opts, components(&dir)).expect("restore over TLS");
    assert!(r.warnings.iter().any(|w| w.contains("\"tdb\"")), "{r:?}");
    assert_eq!(data_of(&tls, "tdb"), before);

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
    // Under the servers' scratch root, which their watchdogs remove when the test process ends.
    let d = std::env::temp_dir()
        .join(format!("kstash-pg-{}", std::process::id()))
        .join(format!("t-{name}"));
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

    // pg_dump -Fp of one database (no CREATE DATABASE), after pg_dumpall --globals-only.
    let one = scratch("pgdump");
    std::fs::create_dir_all(one.join("databases")).unwrap();
    let out = src
        .cmd("pg_dumpall")
        .args(["--globals-only", "-f"])
        .arg(one.join("globals.sql"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_dumpall -g: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = src
        .cmd("pg_dump")
        .args(["-Fp", "-d", "app", "-f"])
        .arg(one.join("databases/app.sql"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dst = Server::start(ServerOptions::default());
    let r = kstash_restore(&dst, &[], &one).expect("restore pg_dump script");
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(
        schema_of(src, "app"),
        schema_of(&dst, "app"),
        "pg_dump script: schema of app"
    );
    assert_eq!(
        data_of(src, "app"),
        data_of(&dst, "app"),
        "pg_dump script: data of app"
    );
}

fn backup_with(
    c: &mut NativeConnector,
    kv: &[(&str, &str)],
    dir: &Path,
) -> postgres_addon::error::Result<BackupReport> {
    let opts = BackupOptions::from_params(&params(kv), &c.user.clone())?;
    backup(
        c,
        &opts,
        &mut DirSink {
            root: dir.to_path_buf(),
        },
        &mut |_| {},
    )
}

#[test]
fn failures_name_the_object() {
    let s = Server::start(ServerOptions::default());
    s.psql("postgres", "CREATE ROLE carol LOGIN PASSWORD 'carol-pw'");
    for db in ["perm", "doomed", "big"] {
        s.psql("postgres", &format!("CREATE DATABASE {db}"));
    }
    s.psql("perm", "CREATE TABLE public.open_t (x int); GRANT SELECT ON public.open_t TO carol; CREATE TABLE public.secret (x int)");
    s.psql("big", "CREATE TABLE public.bulk AS SELECT g AS id, repeat('x', 100) AS pad FROM generate_series(1, 50000) g");

    // No permission on a table.
    let mut carol = NativeConnector::new(&s.addr(), "carol", "carol-pw");
    let err = backup_with(
        &mut carol,
        &[("backupCmd", "pg_dump"), ("args", "perm")],
        &scratch("perm"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("public.secret") && err.contains("42501"),
        "{err}"
    );

    // A database dropped after it was listed, before it was dumped.
    let mut c = NativeConnector::new(&s.addr(), "postgres", SUPERUSER_PASSWORD);
    let dropper = Server {
        dir: s.dir.clone(),
        port: s.port,
        ca_pem: None,
    };
    let hook: support::native::ConnectHook =
        std::sync::Arc::new(std::sync::Mutex::new(move |i: usize| {
            if i == 1 {
                dropper.psql("postgres", "DROP DATABASE doomed WITH (FORCE)");
            }
        }));
    c.connect_hook = Some(hook);
    let err = backup_with(&mut c, &[], &scratch("doomed"))
        .unwrap_err()
        .to_string();
    std::mem::forget(c); // its hook holds a second handle on `s`'s directory
    assert!(err.contains("\"doomed\"") && err.contains("3D000"), "{err}");

    // A connection cut in the middle of a table's COPY.
    let mut c = NativeConnector::new(&s.addr(), "postgres", SUPERUSER_PASSWORD);
    let hook: support::native::ReadHook =
        std::sync::Arc::new(std::sync::Mutex::new(|i: usize, read: u64| {
            if i == 1 && read > 2_000_000 {
                support::native::ReadAction::Cut
            } else {
                support::native::ReadAction::Continue
            }
        }));
    c.read_hook = Some(hook);
    let err = backup_with(
        &mut c,
        &[("backupCmd", "pg_dump"), ("args", "big")],
        &scratch("cut"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("COPY public.bulk") && err.contains("\"big\""),
        "{err}"
    );

    // Restore: the first failing statement stops it, with its line; a non-empty target is refused.
    let dir = scratch("badscript");
    std::fs::create_dir_all(dir.join("databases")).unwrap();
    std::fs::write(
        dir.join("databases/fresh.sql"),
        "SET client_min_messages = warning;\nCREATE TABLE public.ok (x int);\nCREATE TABLE public.bad (x nosuchtype);\nCREATE TABLE public.never (x int);\n",
    )
    .unwrap();
    let err = kstash_restore(&s, &[], &dir).unwrap_err().to_string();
    assert!(
        err.contains("databases/fresh.sql line 3") && err.contains("nosuchtype"),
        "{err}"
    );
    assert_eq!(
        s.psql(
            "fresh",
            "SELECT count(*) FROM pg_class WHERE relname = 'never'"
        )
        .trim(),
        "0"
    );
    let err = kstash_restore(&s, &[], &dir).unwrap_err().to_string();
    assert!(
        err.contains("\"fresh\" is not empty") && err.contains("1 relations"),
        "{err}"
    );
    let r = kstash_restore(&s, &[("clean", "true"), ("continueOnError", "true")], &dir).unwrap();
    assert_eq!(r.errors.len(), 1, "{r:?}");
    assert_eq!(
        s.psql(
            "fresh",
            "SELECT count(*) FROM pg_class WHERE relname IN ('ok', 'never')"
        )
        .trim(),
        "2"
    );

    // Unknown parameters are refused by name before anything is contacted.
    let err = kstash_restore(&s, &[("frobnicate", "1")], &dir)
        .unwrap_err()
        .to_string();
    assert!(err.contains("frobnicate"), "{err}");
}

#[test]
fn one_snapshot_per_database_under_a_concurrent_writer() {
    let s = Server::start(ServerOptions::default());
    s.psql("postgres", "CREATE DATABASE shop");
    s.psql(
        "shop",
        "CREATE TABLE public.a (id int PRIMARY KEY, v bigint); CREATE TABLE public.filler AS SELECT g FROM generate_series(1, 100000) g; \
         CREATE TABLE public.b (id int PRIMARY KEY, v bigint); INSERT INTO public.a VALUES (1, 0); INSERT INTO public.b VALUES (1, 0)",
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let addr = s.addr();
    let flag = stop.clone();
    let writer = std::thread::spawn(move || {
        let mut c = NativeConnector::new(&addr, "postgres", SUPERUSER_PASSWORD);
        let mut client = Client::connect(&mut c, "shop").expect("writer connects");
        let mut n = 0u64;
        while !flag.load(std::sync::atomic::Ordering::SeqCst) {
            client
                .execute(
                    "writer",
                    "BEGIN; UPDATE public.a SET v = v + 1; UPDATE public.b SET v = v + 1; COMMIT",
                )
                .expect("writer");
            n += 1;
        }
        n
    });
    let value_of = |script: &str, table: &str| -> u64 {
        let at = script
            .find(&format!("COPY public.{table} "))
            .unwrap_or_else(|| panic!("no COPY of {table}"));
        let row = script[at..].lines().nth(1).unwrap();
        row.split('\t').nth(1).unwrap().trim().parse().unwrap()
    };
    let mut seen = Vec::new();
    for i in 0..4 {
        let dir = scratch(&format!("consistent-{i}"));
        kstash_backup(&s, &[("backupCmd", "pg_dump"), ("args", "shop")], &dir).expect("backup");
        let script = std::fs::read_to_string(dir.join("databases/shop.sql")).unwrap();
        let (a, b) = (value_of(&script, "a"), value_of(&script, "b"));
        assert_eq!(a, b, "backup {i} shows one update without the other");
        seen.push(a);
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let writes = writer.join().unwrap();
    assert!(
        writes > 0 && seen.last() > seen.first(),
        "the writer ran during the backups: {writes} writes, values {seen:?}"
    );
}
