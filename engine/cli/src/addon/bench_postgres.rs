//! `kstash bench postgres`: the PostgreSQL addon component through `kstash addon run` (a child
//! process, so its CPU time and peak RSS are its own) against PostgreSQL's own tools on the same
//! `pgbench -i` database, side by side in one run: backup vs `pg_dump -Fp`, restore into a fresh
//! server vs `psql -f` of pg_dump's script. Every run is checked: each restored server must hold
//! every row of every pgbench table with the same `pgbench_accounts` balance sum.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{bail, ensure, Context as _};
use clap::Args;

use crate::benchkit::{machine_line, median, refuse_debug_ratios, run_timed};

const PASSWORD: &str = "kstash-bench";
/// The database `pgbench -i` fills.
const DB: &str = "bench";
/// The tables `pgbench -i` creates (`pgbench_history` stays empty).
const TABLES: [&str; 4] = [
    "pgbench_accounts",
    "pgbench_branches",
    "pgbench_tellers",
    "pgbench_history",
];

/// Arguments of the PostgreSQL addon benchmark.
#[derive(Args)]
pub struct PostgresBenchArgs {
    /// `pgbench -i` scale factor: 100,000 `pgbench_accounts` rows per unit (70 ≈ 1 GiB on disk).
    #[arg(long, default_value_t = 70)]
    scale: u32,
    /// Rounds of every measurement (medians are reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The PostgreSQL addon component (built by scripts/build-addons.sh).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../addons/target/wasm32-wasip2/release/postgres_addon.wasm"))]
    module: PathBuf,
    /// Directory of `initdb`, `pg_ctl`, `pgbench`, `pg_dump`, `psql` (default: the newest
    /// `/usr/lib/postgresql/<version>/bin`, installed by scripts/ensure-tools.sh postgres).
    #[arg(long)]
    bindir: Option<PathBuf>,
    /// Directory for the servers and dumps (default: a temporary directory, removed at the end).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Report ratios from a debug build too (CI's smoke run; never quote them).
    #[arg(long)]
    allow_debug_build: bool,
}

/// The newest `/usr/lib/postgresql/<version>/bin`.
fn default_bindir() -> anyhow::Result<PathBuf> {
    let base = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(base)
        .with_context(|| {
            format!(
                "{}: install PostgreSQL (scripts/ensure-tools.sh postgres)",
                base.display()
            )
        })?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .with_context(|| format!("no PostgreSQL version under {}", base.display()))?;
    Ok(base.join(newest.to_string()).join("bin"))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// One server on 127.0.0.1 (scram-sha-256, no fsync); stopped on drop.
struct Server {
    data: PathBuf,
    port: u16,
    pg_ctl: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = server_user(&self.pg_ctl)
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `program` as the owner of the data directories (`postgres` when running as root: the server
/// refuses to run as root).
fn server_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn checked(out: Output, what: &str) -> anyhow::Result<String> {
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One timed run of one side.
#[derive(Debug, Clone, Copy)]
struct Sample {
    secs: f64,
    cpu: f64,
    peak: u64,
    /// The dump's size (the backup's output, the restore's input).
    dump_bytes: u64,
}

/// What the seeded database holds, to check every restore against.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Contents {
    rows: Vec<(String, u64)>,
    balance_sum: i64,
}

impl Contents {
    fn total_rows(&self) -> u64 {
        self.rows.iter().map(|(_, n)| n).sum()
    }
}

struct Bench {
    args: PostgresBenchArgs,
    bindir: PathBuf,
    work: PathBuf,
    template: PathBuf,
    kstash: PathBuf,
    password_file: PathBuf,
    cache_dir: PathBuf,
    servers: std::cell::Cell<usize>,
}

/// Runs the benchmark and prints its table.
pub async fn bench(args: PostgresBenchArgs) -> anyhow::Result<()> {
    refuse_debug_ratios(args.allow_debug_build)?;
    ensure!(args.rounds > 0, "--rounds: at least 1");
    ensure!(args.scale > 0, "--scale: at least 1");
    ensure!(
        args.module.is_file(),
        "--module {}: not found (build it with scripts/build-addons.sh)",
        args.module.display()
    );
    let bindir = match &args.bindir {
        Some(d) => d.clone(),
        None => default_bindir()?,
    };
    for tool in ["initdb", "pg_ctl", "pgbench", "pg_dump", "psql"] {
        ensure!(
            bindir.join(tool).is_file(),
            "--bindir {}: no {tool} (install PostgreSQL: scripts/ensure-tools.sh postgres)",
            bindir.display()
        );
    }
    let temp = args.work_dir.is_none();
    let work = match &args.work_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("kstash-bench-pg-{}", std::process::id())),
    };
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let b = Bench {
        kstash: std::env::current_exe().context("finding the kstash binary")?,
        cache_dir: work.join("cache"),
        password_file: work.join("password"),
        template: work.join("template"),
        bindir,
        work: work.clone(),
        args,
        servers: std::cell::Cell::new(0),
    };
    let table = tokio::task::spawn_blocking(move || b.run())
        .await
        .context("the benchmark thread panicked")?;
    if temp {
        let _ = std::fs::remove_dir_all(&work);
    }
    print!("{}", table?);
    Ok(())
}

fn say(msg: &str) {
    eprintln!("{msg}");
}

impl Bench {
    fn tool(&self, name: &str) -> PathBuf {
        self.bindir.join(name)
    }

    fn run(&self) -> anyhow::Result<String> {
        self.prepare()?;
        let source = self.start_server()?;
        say(&format!("seeding: pgbench -i -s {} ...", self.args.scale));
        self.psql(&source, "postgres", &format!("CREATE DATABASE {DB}"))?;
        checked(
            self.client(&source, "pgbench")
                .args(["-i", "-q", "-s", &self.args.scale.to_string(), DB])
                .output()?,
            "pgbench -i",
        )?;
        let want = self.contents(&source)?;
        let db_bytes: u64 = self
            .psql(&source, DB, &format!("SELECT pg_database_size('{DB}')"))?
            .trim()
            .parse()
            .context("pg_database_size")?;
        {
            say("compiling the component (not counted) ...");
            let empty = self.start_server()?;
            let dir = self.work.join("warm-up");
            self.kstash_backup(&empty, "postgres", &dir)?;
            let _ = std::fs::remove_dir_all(&dir);
        }
        let mut rows: [Vec<Sample>; 4] = Default::default();
        for round in 1..=self.args.rounds {
            let tag = format!("round {round}/{}", self.args.rounds);
            let dir = self.work.join(format!("kstash-{round}"));
            say(&format!("{tag}: kstash backup ..."));
            rows[0].push(self.kstash_backup(&source, DB, &dir)?);
            say(&format!("{tag}: pg_dump -Fp ..."));
            let script = self.work.join(format!("pg_dump-{round}.sql"));
            rows[1].push(self.pg_dump(&source, &script)?);
            say(&format!("{tag}: kstash restore ..."));
            rows[2].push(self.kstash_restore(&dir, &want)?);
            say(&format!("{tag}: psql -f ..."));
            rows[3].push(self.psql_restore(&script, &want)?);
            let _ = std::fs::remove_dir_all(&dir);
            let _ = std::fs::remove_file(&script);
        }
        Ok(self.table(&rows, &want, db_bytes))
    }

    /// The work directory readable by the server user, the password file, the template cluster.
    fn prepare(&self) -> anyhow::Result<()> {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        std::fs::set_permissions(&self.work, std::fs::Permissions::from_mode(0o755))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&self.password_file)?;
        f.write_all(PASSWORD.as_bytes())?;
        let pwfile = self.work.join("initdb-password");
        std::fs::write(&pwfile, PASSWORD)?;
        self.chown(&pwfile)?;
        let tdir = self.work.join("t");
        std::fs::create_dir_all(&tdir)?;
        self.chown(&tdir)?;
        say("initdb (once) ...");
        checked(
            server_user(&self.tool("initdb"))
                .arg("-D")
                .arg(tdir.join("data"))
                .args(["-U", "postgres", "--auth=scram-sha-256", "-E", "UTF8"])
                .args(["--locale=C.UTF-8", "--no-sync"])
                .arg(format!("--pwfile={}", pwfile.display()))
                .output()?,
            "initdb",
        )?;
        std::fs::remove_file(&pwfile)?;
        std::fs::rename(tdir.join("data"), &self.template)?;
        Ok(())
    }

    fn chown(&self, path: &Path) -> anyhow::Result<()> {
        if is_root() {
            let st = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(path)
                .status()?;
            ensure!(st.success(), "chown postgres {}", path.display());
        }
        Ok(())
    }

    /// A new server: a copy of the template cluster, started on a free port.
    fn start_server(&self) -> anyhow::Result<Server> {
        let n = self.servers.get();
        self.servers.set(n + 1);
        let dir = self.work.join(format!("server-{n}"));
        std::fs::create_dir_all(&dir)?;
        let data = dir.join("data");
        let st = Command::new("cp")
            .arg("-a")
            .arg(&self.template)
            .arg(&data)
            .status()?;
        ensure!(st.success(), "copying the template cluster");
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))?;
        write!(
            conf,
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
             shared_buffers = 128MB\nmax_wal_size = 4GB\nlog_min_messages = warning\n",
            dir.display()
        )?;
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
        )?;
        self.chown(&dir)?;
        checked(
            server_user(&self.tool("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(dir.join("log"))
                .args(["-w", "-t", "60", "start"])
                .output()?,
            "pg_ctl start",
        )?;
        Ok(Server {
            data,
            port,
            pg_ctl: self.tool("pg_ctl"),
        })
    }

    /// A client tool connected to `s` as the superuser over TCP.
    fn client(&self, s: &Server, tool: &str) -> Command {
        let mut c = Command::new(self.tool(tool));
        c.env("PGHOST", "127.0.0.1")
            .env("PGPORT", s.port.to_string())
            .env("PGUSER", "postgres")
            .env("PGPASSWORD", PASSWORD)
            .env("PGSSLMODE", "disable")
            .env_remove("PGDATABASE")
            .env_remove("PGSERVICE");
        c
    }

    fn psql(&self, s: &Server, db: &str, sql: &str) -> anyhow::Result<String> {
        checked(
            self.client(s, "psql")
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
                .output()?,
            &format!("psql {sql:?}"),
        )
    }

    /// Row counts of the pgbench tables and the accounts' balance sum.
    fn contents(&self, s: &Server) -> anyhow::Result<Contents> {
        let mut rows = Vec::new();
        for t in TABLES {
            let n = self.psql(s, DB, &format!("SELECT count(*) FROM {t}"))?;
            rows.push((t.to_string(), n.trim().parse().context("count(*)")?));
        }
        let sum = self.psql(
            s,
            DB,
            "SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts",
        )?;
        Ok(Contents {
            rows,
            balance_sum: sum.trim().parse().context("sum(abalance)")?,
        })
    }

    /// Runs `cmd` to the end; its wall time, CPU and peak RSS. `what` names it in errors.
    fn timed(&self, what: &str, cmd: &mut Command) -> anyhow::Result<(f64, f64, u64)> {
        let (secs, cpu, peak, _) = run_timed(&self.work.join("child.log"), what, cmd)?;
        Ok((secs, cpu, peak))
    }

    fn addon_run(&self, s: &Server, task: &str) -> Command {
        let mut c = Command::new(&self.kstash);
        c.args(["addon", "run", "--module"])
            .arg(&self.args.module)
            .arg("--cache-dir")
            .arg(&self.cache_dir)
            .args(["--task", task, "--target-url"])
            .arg(format!("postgres://127.0.0.1:{}?sslmode=disable", s.port))
            .args(["--username", "postgres", "--password-file"])
            .arg(&self.password_file);
        c
    }

    /// `kstash addon run logical-backup` of database `db` alone (`backupCmd=pg_dump`, as
    /// `pg_dump -Fp` on the other side).
    fn kstash_backup(&self, s: &Server, db: &str, dir: &Path) -> anyhow::Result<Sample> {
        std::fs::create_dir_all(dir)?;
        let mut cmd = self.addon_run(s, "logical-backup");
        cmd.args(["--param", "backupCmd=pg_dump", "--param"])
            .arg(format!("args={db}"))
            .arg("--out-dir")
            .arg(dir);
        let (secs, cpu, peak) = self.timed("kstash addon run logical-backup", &mut cmd)?;
        Ok(Sample {
            secs,
            cpu,
            peak,
            dump_bytes: dir_bytes(dir)?,
        })
    }

    fn pg_dump(&self, s: &Server, script: &Path) -> anyhow::Result<Sample> {
        let mut cmd = self.client(s, "pg_dump");
        cmd.args(["-Fp", "-f"]).arg(script).arg(DB);
        let (secs, cpu, peak) = self.timed("pg_dump -Fp", &mut cmd)?;
        Ok(Sample {
            secs,
            cpu,
            peak,
            dump_bytes: std::fs::metadata(script)?.len(),
        })
    }

    /// A fresh server with an empty database `bench` (created untimed on both sides).
    fn empty_target(&self) -> anyhow::Result<Server> {
        let s = self.start_server()?;
        self.psql(&s, "postgres", &format!("CREATE DATABASE {DB}"))?;
        Ok(s)
    }

    fn check_restored(&self, what: &str, s: &Server, want: &Contents) -> anyhow::Result<()> {
        let got = self.contents(s)?;
        ensure!(
            &got == want,
            "{what}: the restored database holds {got:?}, the source {want:?}"
        );
        Ok(())
    }

    fn kstash_restore(&self, dir: &Path, want: &Contents) -> anyhow::Result<Sample> {
        let target = self.empty_target()?;
        let mut cmd = self.addon_run(&target, "logical-backup-restore");
        cmd.arg("--in-dir").arg(dir);
        let (secs, cpu, peak) = self.timed("kstash addon run logical-backup-restore", &mut cmd)?;
        self.check_restored("kstash restore", &target, want)?;
        Ok(Sample {
            secs,
            cpu,
            peak,
            dump_bytes: dir_bytes(dir)?,
        })
    }

    fn psql_restore(&self, script: &Path, want: &Contents) -> anyhow::Result<Sample> {
        let target = self.empty_target()?;
        let mut cmd = self.client(&target, "psql");
        cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", DB, "-f"])
            .arg(script);
        let (secs, cpu, peak) = self.timed("psql -f", &mut cmd)?;
        self.check_restored("psql -f", &target, want)?;
        Ok(Sample {
            secs,
            cpu,
            peak,
            dump_bytes: std::fs::metadata(script)?.len(),
        })
    }

    fn table(&self, rows: &[Vec<Sample>; 4], want: &Contents, db_bytes: u64) -> String {
        let n_rows = want.total_rows() as f64;
        fn m(v: &[Sample], f: impl Fn(&Sample) -> f64) -> f64 {
            median(v.iter().map(f).collect())
        }
        let mut out = format!(
            "PostgreSQL addon benchmark: pgbench -i -s {} ({} rows, database {:.0} MiB), {} round(s), medians; {}\n\n",
            self.args.scale,
            want.total_rows(),
            db_bytes as f64 / (1u64 << 20) as f64,
            self.args.rounds,
            machine_line()
        );
        out += &format!(
            "{:<28} {:>8} {:>11} {:>9} {:>10} {:>8} {:>10}\n",
            "side", "secs", "rows/s", "MB/s", "dump MiB", "CPU s", "peak RSS"
        );
        let names = [
            "kstash backup",
            "pg_dump -Fp",
            "kstash restore",
            "psql -f (pg_dump's script)",
        ];
        for (name, v) in names.iter().zip(rows) {
            out += &format!(
                "{:<28} {:>8.2} {:>11.0} {:>9.1} {:>10.0} {:>8.2} {:>6.0} MiB\n",
                name,
                m(v, |s| s.secs),
                m(v, |s| n_rows / s.secs),
                m(v, |s| db_bytes as f64 / s.secs / 1e6),
                m(v, |s| s.dump_bytes as f64) / (1u64 << 20) as f64,
                m(v, |s| s.cpu),
                m(v, |s| s.peak as f64) / (1u64 << 20) as f64,
            );
        }
        let ratio = |a: &[Sample], b: &[Sample]| m(b, |s| s.secs) / m(a, |s| s.secs);
        out += &format!(
            "\nratios (peer time / kstash time, > 1 = kstash faster): backup vs pg_dump -Fp {:.2}x, \
             restore vs psql -f {:.2}x\n\
             (MB/s is the source database's size, pg_database_size, over each side's time)\n",
            ratio(&rows[0], &rows[1]),
            ratio(&rows[2], &rows[3]),
        );
        out
    }
}

/// Total size of the files under `dir`.
fn dir_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let meta = e.metadata()?;
        total += if meta.is_dir() {
            dir_bytes(&e.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}
