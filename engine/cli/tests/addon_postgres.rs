//! The PostgreSQL addon (`addons/postgres`) through `kstash addon run` with the built WASM
//! component, against real PostgreSQL servers on loopback (`scram-sha-256`, one with TLS only):
//! backup → restore into fresh servers (by kstash and by `psql -f`), a `pg_dumpall` script
//! restored by kstash, `pg_dump --schema-only` and per-table checksums as judges; a concurrent
//! writer; failures that must name the object.
//!
//! The servers come from the addon's own host-test support (`initdb` once per binary, copied per
//! server, watchdog cleanup), shared here by path rather than copied.
#![cfg(feature = "addon")]

#[path = "../../../addons/postgres/tests/support/compare.rs"]
mod compare;
#[path = "../../../addons/postgres/tests/support/server.rs"]
#[allow(dead_code)]
mod server;

use compare::{data_of, globals_of, schema_of};
use kstash_testkit::{fresh_addon_module, repo_root};
use server::{Server, ServerOptions, SUPERUSER_PASSWORD};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The PostgreSQL addon, built by `scripts/build-addons.sh` (once per test binary).
fn module() -> &'static str {
    static MODULE: OnceLock<String> = OnceLock::new();
    MODULE.get_or_init(|| {
        let path = fresh_addon_module("postgres_addon.wasm");
        path.to_str().unwrap().to_string()
    })
}

/// A scratch directory removed with the servers' scratch root when the test process ends.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir()
        .join(format!("kstash-pg-{}", std::process::id()))
        .join(format!("t-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A 0600 file holding `password`.
fn password_file(name: &str, password: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = scratch(&format!("pw-{name}")).join("password");
    std::fs::write(&p, password).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// How `kstash addon run` reaches one server as one user.
struct Target<'a> {
    server: &'a Server,
    user: &'a str,
    password: &'a str,
}

impl<'a> Target<'a> {
    fn superuser(server: &'a Server) -> Self {
        Target {
            server,
            user: "postgres",
            password: SUPERUSER_PASSWORD,
        }
    }

    fn command(&self, task: &str, params: &[(&str, &str)]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kstash"));
        let tls = self.server.ca_pem.is_some();
        let url = format!(
            "postgres://127.0.0.1:{}?sslmode={}",
            self.server.port,
            if tls { "require" } else { "disable" }
        );
        let pw = password_file(
            &format!("{}-{}", self.server.port, self.user),
            self.password,
        );
        c.args(["addon", "run", "--module", module(), "--task", task])
            .arg("--target-url")
            .arg(url)
            .arg("--username")
            .arg(self.user)
            .arg("--password-file")
            .arg(pw);
        if tls {
            let ca = self.server.dir.join("ca.pem");
            std::fs::write(&ca, self.server.ca_pem.as_ref().unwrap()).unwrap();
            c.arg("--ca-file").arg(ca);
        }
        for (k, v) in params {
            c.arg("--param").arg(format!("{k}={v}"));
        }
        c
    }

    fn backup(&self, params: &[(&str, &str)], out: &Path) -> Output {
        self.command("logical-backup", params)
            .arg("--out-dir")
            .arg(out)
            .output()
            .expect("kstash addon run")
    }

    fn restore(&self, params: &[(&str, &str)], dir: &Path) -> Output {
        self.command("logical-backup-restore", params)
            .arg("--in-dir")
            .arg(dir)
            .output()
            .expect("kstash addon run")
    }
}

fn ok(o: Output, what: &str) -> Output {
    assert!(
        o.status.success(),
        "{what} failed: {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn failed(o: Output, what: &str) -> String {
    assert!(
        !o.status.success(),
        "{what} succeeded but must fail: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The files of a backup directory, relative, sorted (globals first).
fn files_of(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort_by_key(|n| (!n.contains("globals"), n.clone()));
    out
}

/// A database name with characters outside the host's stream-name alphabet.
const ODD_DB: &str = "we/ird %db_ä";

/// Roles alice and bob, database `app` with every object kind (the addon's fixture), database
/// `bench` with `pgbench -i` tables.
fn populate(s: &Server) {
    s.psql(
        "postgres",
        "CREATE ROLE alice LOGIN PASSWORD 'alice-pw'; CREATE ROLE bob; GRANT bob TO alice",
    );
    s.psql("postgres", "CREATE DATABASE app");
    s.psql("postgres", "CREATE DATABASE bench");
    // A name the host's stream names cannot hold as it is (space, `/`, `%`, `_`, non-ASCII).
    s.psql("postgres", &format!("CREATE DATABASE \"{ODD_DB}\""));
    s.psql(
        ODD_DB,
        "CREATE TABLE public.t (id int PRIMARY KEY, s text); INSERT INTO public.t SELECT g, 'ä' || g FROM generate_series(1, 100) g",
    );
    let fixture = repo_root().join("addons/postgres/tests/fixtures/all_kinds.sql");
    ok(s.psql_file("app", &fixture), "the all-kinds fixture");
    ok(
        s.cmd("pgbench")
            .args(["-i", "-q", "-s", "1", "bench"])
            .output()
            .unwrap(),
        "pgbench -i",
    );
}

/// The plain source server, populated once per test binary.
fn source() -> &'static Server {
    static SRC: OnceLock<Server> = OnceLock::new();
    SRC.get_or_init(|| {
        let s = Server::start(ServerOptions::default());
        populate(&s);
        s
    })
}

fn assert_same(src: &Server, dst: &Server, how: &str) {
    for db in ["app", "bench", ODD_DB] {
        let (a, b) = (schema_of(src, db), schema_of(dst, db));
        if a != b {
            let d = scratch(&format!("diff-{how}-{db}").replace([' ', '/'], "_"));
            std::fs::write(d.join("source.sql"), &a).unwrap();
            std::fs::write(d.join("restored.sql"), &b).unwrap();
            panic!(
                "{how}: pg_dump --schema-only of {db} differs: diff {0}/source.sql {0}/restored.sql",
                d.display()
            );
        }
        assert_eq!(data_of(src, db), data_of(dst, db), "{how}: data of {db}");
    }
    assert_eq!(globals_of(src), globals_of(dst), "{how}: globals");
}

#[test]
fn backup_restores_identically_by_kstash_and_psql_and_restores_pg_dumpall() {
    let src = source();
    let dump = scratch("all");
    ok(Target::superuser(src).backup(&[], &dump), "backup");
    let files = files_of(&dump);
    for want in [
        "globals.sql",
        "databases/app.sql",
        "databases/bench.sql",
        "databases/we_252Fird_20_2525db_5F_C3_A4.sql",
    ] {
        assert!(
            files.iter().any(|f| f.ends_with(want)),
            "{want} not among {files:?}"
        );
    }
    for f in &files {
        let text = std::fs::read(dump.join(f)).unwrap();
        assert!(
            !String::from_utf8_lossy(&text).contains(SUPERUSER_PASSWORD),
            "{f} holds the superuser's password"
        );
    }

    // kstash restore into a fresh server.
    let dst = Server::start(ServerOptions::default());
    ok(Target::superuser(&dst).restore(&[], &dump), "restore");
    assert_same(src, &dst, "kstash restore");

    // Restoring again into the now non-empty server is refused, naming the database and the
    // parameter that allows it; with it, the result is the same.
    let err = failed(
        Target::superuser(&dst).restore(&[], &dump),
        "restore into a non-empty server",
    );
    assert!(
        (err.contains("\"app\"") || err.contains("\"bench\"")) && err.contains("clean"),
        "{err}"
    );
    ok(
        Target::superuser(&dst).restore(&[("clean", "true")], &dump),
        "restore with clean",
    );
    assert_same(src, &dst, "kstash restore with clean");
    drop(dst);

    // psql -f of kstash's scripts, globals first.
    let viapsql = Server::start(ServerOptions::default());
    for f in &files {
        ok(
            viapsql.psql_file("postgres", &dump.join(f)),
            &format!("psql -f {f}"),
        );
    }
    assert_same(src, &viapsql, "psql -f");
    drop(viapsql);

    // kstash restores pg_dumpall's script of the same server.
    let dumpall = scratch("dumpall");
    ok(
        src.cmd("pg_dumpall")
            .arg("-f")
            .arg(dumpall.join("dumpfile.sql"))
            .output()
            .unwrap(),
        "pg_dumpall",
    );
    let dst = Server::start(ServerOptions::default());
    ok(
        Target::superuser(&dst).restore(&[], &dumpall),
        "restore of pg_dumpall's script",
    );
    assert_same(src, &dst, "pg_dumpall script");
}

#[test]
fn backup_over_tls_restores_into_a_plain_server() {
    let tls = Server::start(ServerOptions { tls: true });
    tls.psql("postgres", "CREATE DATABASE tlsdb");
    tls.psql(
        "tlsdb",
        "CREATE TABLE public.t (id int PRIMARY KEY, s text); INSERT INTO public.t SELECT g, md5(g::text) FROM generate_series(1, 5000) g",
    );
    let dump = scratch("tls");
    ok(
        Target::superuser(&tls).backup(&[], &dump),
        "backup over TLS",
    );
    // Without TLS the server refuses the connection (hostnossl reject): the task fails.
    let mut plain = Target::superuser(&tls).command("logical-backup", &[]);
    let args: Vec<String> = plain
        .get_args()
        .map(|a| {
            a.to_string_lossy()
                .replace("sslmode=require", "sslmode=disable")
        })
        .collect();
    plain = Command::new(env!("CARGO_BIN_EXE_kstash"));
    plain.args(args).arg("--out-dir").arg(scratch("tls-plain"));
    let err = failed(plain.output().unwrap(), "backup with sslmode=disable");
    assert!(
        err.contains("pg_hba") || err.contains("SSL") || err.contains("28000"),
        "{err}"
    );

    let dst = Server::start(ServerOptions::default());
    ok(Target::superuser(&dst).restore(&[], &dump), "restore");
    assert_eq!(schema_of(&tls, "tlsdb"), schema_of(&dst, "tlsdb"));
    assert_eq!(data_of(&tls, "tlsdb"), data_of(&dst, "tlsdb"));
}

#[test]
fn one_snapshot_under_a_concurrent_writer() {
    let s = Server::start(ServerOptions::default());
    s.psql("postgres", "CREATE DATABASE shop");
    s.psql(
        "shop",
        "CREATE TABLE public.a (id int PRIMARY KEY, v bigint); CREATE TABLE public.filler AS SELECT g FROM generate_series(1, 200000) g; \
         CREATE TABLE public.b (id int PRIMARY KEY, v bigint); INSERT INTO public.a VALUES (1, 0); INSERT INTO public.b VALUES (1, 0)",
    );
    let script = scratch("writer").join("writer.sql");
    std::fs::write(
        &script,
        "BEGIN;\nUPDATE public.a SET v = v + 1;\nUPDATE public.b SET v = v + 1;\nCOMMIT;\n",
    )
    .unwrap();
    // pgbench as the writer: one client, the two updates in one transaction, until killed.
    let mut writer = s
        .cmd("pgbench")
        .args(["-n", "-c", "1", "-T", "600", "-f"])
        .arg(&script)
        .arg("shop")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let value_of = |script: &str, table: &str| -> u64 {
        let at = script
            .find(&format!("COPY public.{table} "))
            .unwrap_or_else(|| panic!("no COPY of {table}"));
        let row = script[at..].lines().nth(1).unwrap();
        row.split('\t').nth(1).unwrap().trim().parse().unwrap()
    };
    let mut seen = Vec::new();
    for i in 0..3 {
        let dir = scratch(&format!("consistent-{i}"));
        ok(
            Target::superuser(&s).backup(&[("backupCmd", "pg_dump"), ("args", "shop")], &dir),
            "backup",
        );
        let f = files_of(&dir)
            .into_iter()
            .find(|f| f.ends_with("shop.sql"))
            .expect("shop.sql");
        let text = std::fs::read_to_string(dir.join(f)).unwrap();
        let (a, b) = (value_of(&text, "a"), value_of(&text, "b"));
        assert_eq!(a, b, "backup {i} shows one update without the other");
        seen.push(a);
    }
    let _ = writer.kill();
    let _ = writer.wait();
    assert!(
        seen.last() > seen.first(),
        "the writer ran during the backups: values {seen:?}"
    );
}

/// Waits until a backend of `application`-less client runs a query matching `like` in `db`,
/// then runs `action` (a statement) on the server; returns whether it did.
fn when_running(
    s: &Server,
    db: &str,
    like: &str,
    action: &str,
    child: &mut std::process::Child,
) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        let pid = s.psql(
            "postgres",
            &format!("SELECT pid FROM pg_stat_activity WHERE datname = '{db}' AND query LIKE '{like}' AND pid <> pg_backend_pid() LIMIT 1"),
        );
        let pid = pid.trim();
        if !pid.is_empty() {
            s.psql("postgres", &action.replace("$PID", pid));
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[test]
fn failures_name_the_object() {
    let s = Server::start(ServerOptions::default());
    s.psql("postgres", "CREATE ROLE carol LOGIN PASSWORD 'carol-pw'");
    for db in ["perm", "big", "doomed"] {
        s.psql("postgres", &format!("CREATE DATABASE {db}"));
    }
    s.psql("perm", "CREATE TABLE public.open_t (x int); GRANT SELECT ON public.open_t TO carol; CREATE TABLE public.secret (x int)");
    s.psql("big", "CREATE TABLE public.bulk AS SELECT g AS id, repeat('x', 200) AS pad FROM generate_series(1, 400000) g");
    s.psql("doomed", "CREATE TABLE public.d (x int)");

    // A wrong password.
    let wrong = Target {
        server: &s,
        user: "postgres",
        password: "not-the-password",
    };
    let err = failed(
        wrong.backup(&[], &scratch("wrongpw")),
        "backup with a wrong password",
    );
    assert!(err.contains("postgres") && err.contains("28P01"), "{err}");

    // No permission on a table.
    let carol = Target {
        server: &s,
        user: "carol",
        password: "carol-pw",
    };
    let err = failed(
        carol.backup(
            &[("backupCmd", "pg_dump"), ("args", "perm")],
            &scratch("perm"),
        ),
        "backup without permission",
    );
    assert!(
        err.contains("public.secret") && err.contains("42501"),
        "{err}"
    );

    // An unknown parameter is refused by name.
    let err = failed(
        Target::superuser(&s).backup(&[("frobnicate", "1")], &scratch("unknown")),
        "backup with an unknown parameter",
    );
    assert!(err.contains("frobnicate"), "{err}");
    let err = failed(
        Target::superuser(&s).restore(&[("frobnicate", "1")], &scratch("unknown-r")),
        "restore with an unknown parameter",
    );
    assert!(err.contains("frobnicate"), "{err}");

    // The addon's backend terminated in the middle of a COPY.
    let mut run = Target::superuser(&s)
        .command(
            "logical-backup",
            &[("backupCmd", "pg_dump"), ("args", "big")],
        )
        .arg("--out-dir")
        .arg(scratch("cut"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let cut = when_running(
        &s,
        "big",
        "COPY %",
        "SELECT pg_terminate_backend($PID)",
        &mut run,
    );
    let err = failed(run.wait_with_output().unwrap(), "backup cut mid-COPY");
    assert!(cut, "the COPY was never seen running: {err}");
    assert!(
        err.contains("public.bulk") && err.contains("\"big\""),
        "{err}"
    );

    // A database dropped while the backup reads another one (databases are dumped by name:
    // big, doomed, perm); superuser backs up all.
    let mut run = Target::superuser(&s)
        .command("logical-backup", &[])
        .arg("--out-dir")
        .arg(scratch("doomed"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let dropped = when_running(
        &s,
        "big",
        "COPY %",
        "DROP DATABASE doomed WITH (FORCE)",
        &mut run,
    );
    let err = failed(
        run.wait_with_output().unwrap(),
        "backup of a dropped database",
    );
    assert!(dropped, "the COPY was never seen running: {err}");
    assert!(err.contains("\"doomed\""), "{err}");
}

#[test]
fn bench_postgres_runs_end_to_end_at_a_tiny_size() {
    let o = Command::new(env!("CARGO_BIN_EXE_kstash"))
        .args([
            "bench", "postgres", "--scale", "1", "--rounds", "1", "--module",
        ])
        .arg(module())
        .arg("--bindir")
        .arg(server::bindir())
        .arg("--allow-debug-build")
        .output()
        .expect("kstash bench postgres");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "bench: {}\n{out}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    for row in [
        "kstash backup",
        "pg_dump -Fp",
        "kstash restore",
        "psql -f (pg_dump's script)",
        "backup vs pg_dump -Fp",
        "pgbench -i -s 1 (100011 rows",
    ] {
        assert!(out.contains(row), "no {row:?} in:\n{out}");
    }
    if cfg!(debug_assertions) {
        let o = Command::new(env!("CARGO_BIN_EXE_kstash"))
            .args(["bench", "postgres", "--scale", "1", "--module"])
            .arg(module())
            .output()
            .unwrap();
        assert!(!o.status.success());
        assert!(String::from_utf8_lossy(&o.stderr).contains("--allow-debug-build"));
    }
}
