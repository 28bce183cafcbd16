//! `kstash bench redis`: the Redis addon component through `kstash addon run` (a child process,
//! so its CPU time and peak RSS are its own) against Redis's own tools on the same seeded
//! `redis-server`, side by side in one run: backup vs `redis-cli --rdb`, restore into an empty
//! server vs `redis-cli --pipe` of the same RESP dump (what KubeStash's Redis addon does).
//! Every run is checked: the backup's key count, `DBSIZE` of every restored server.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};
use clap::Args;

use crate::benchkit::{machine_line, median, refuse_debug_ratios, run_timed};

const PASSWORD: &str = "kstash-bench";

/// Arguments of the Redis addon benchmark.
#[derive(Args)]
pub struct RedisBenchArgs {
    /// Keys seeded into the source server (80 % strings, 5 % each hash, list, set, sorted set
    /// of 10 members; every 10th string has a TTL).
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// Size of a string value, bytes.
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// Rounds of every measurement (medians are reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The Redis addon component (built by scripts/build-addons.sh).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../addons/target/wasm32-wasip2/release/redis_addon.wasm"))]
    module: PathBuf,
    /// `redis-server` (Debian's `redis-server`, installed by scripts/ensure-tools.sh redis).
    #[arg(long, default_value = "redis-server")]
    redis_server: PathBuf,
    /// `redis-cli` (Debian's `redis-tools`).
    #[arg(long, default_value = "redis-cli")]
    redis_cli: PathBuf,
    /// Directory for the dumps (default: a temporary directory, removed at the end).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Report ratios from a debug build too (CI's smoke run; never quote them).
    #[arg(long)]
    allow_debug_build: bool,
}

/// A `redis-server` on loopback with a password and no persistence; killed on drop.
struct Server {
    port: u16,
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One timed run of one side.
#[derive(Debug, Clone, Copy)]
struct Sample {
    secs: f64,
    bytes: u64,
    cpu: f64,
    peak: u64,
}

struct Bench {
    args: RedisBenchArgs,
    work: PathBuf,
    kstash: PathBuf,
    password_file: PathBuf,
    cache_dir: PathBuf,
}

/// Runs the benchmark and prints its table.
pub async fn bench(args: RedisBenchArgs) -> anyhow::Result<()> {
    refuse_debug_ratios(args.allow_debug_build)?;
    ensure!(args.rounds > 0, "--rounds: at least 1");
    ensure!(args.keys > 0, "--keys: at least 1");
    ensure!(
        args.module.is_file(),
        "--module {}: not found (build it with scripts/build-addons.sh)",
        args.module.display()
    );
    let work = match &args.work_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("kstash-bench-redis-{}", std::process::id())),
    };
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let password_file = work.join("password");
    write_private(&password_file, PASSWORD)?;
    let b = Bench {
        kstash: std::env::current_exe().context("finding the kstash binary")?,
        cache_dir: work.join("cache"),
        password_file,
        work,
        args,
    };
    let (b_work_is_temp, work_copy) = (b.args.work_dir.is_none(), b.work.clone());
    let table = tokio::task::spawn_blocking(move || b.run())
        .await
        .context("the benchmark thread panicked")?;
    if b_work_is_temp {
        let _ = std::fs::remove_dir_all(&work_copy);
    }
    print!("{}", table?);
    Ok(())
}

fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(content.as_bytes())?;
    Ok(())
}

fn say(msg: &str) {
    eprintln!("{msg}");
}

impl Bench {
    fn run(&self) -> anyhow::Result<String> {
        let source = self.start_server("source")?;
        say(&format!("seeding {} keys ...", self.args.keys));
        let seed = self.work.join("seed.resp");
        write_seed(&seed, self.args.keys, self.args.value_bytes)?;
        self.pipe(&source, &seed)?;
        let have = self.dbsize(&source)?;
        ensure!(
            have == self.args.keys,
            "seeding: DBSIZE {have}, expected {}",
            self.args.keys
        );
        {
            say("compiling the component (not counted) ...");
            let empty = self.start_server("warm-up")?;
            let dir = self.work.join("warm-up");
            self.kstash_backup(&empty, &dir)?;
            let _ = std::fs::remove_dir_all(&dir);
        }
        let mut rows: [Vec<Sample>; 4] = Default::default();
        for round in 1..=self.args.rounds {
            let tag = format!("round {round}/{}", self.args.rounds);
            let dir = self.work.join(format!("kstash-{round}"));
            say(&format!("{tag}: kstash backup ..."));
            rows[0].push(self.kstash_backup(&source, &dir)?);
            say(&format!("{tag}: redis-cli --rdb ..."));
            rows[1].push(self.rdb_backup(&source, round)?);
            let dump = dir.join("dump.resp");
            say(&format!("{tag}: kstash restore ..."));
            rows[2].push(self.kstash_restore(&dir, &dump)?);
            say(&format!("{tag}: redis-cli --pipe ..."));
            rows[3].push(self.pipe_restore(&dump)?);
            if self.args.work_dir.is_none() {
                let _ = std::fs::remove_dir_all(&dir);
                let _ = std::fs::remove_file(self.work.join(format!("dump-{round}.rdb")));
            }
        }
        Ok(self.table(&rows))
    }

    fn start_server(&self, name: &str) -> anyhow::Result<Server> {
        let dir = self.work.join(format!("server-{name}"));
        std::fs::create_dir_all(&dir)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(&self.args.redis_server)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--requirepass",
                PASSWORD,
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            // `redis-cli --rdb` is a replica sync: start it at once, not after the default 5 s
            // wait for more replicas.
            .args(["--repl-diskless-sync-delay", "0"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (install it: scripts/ensure-tools.sh redis)",
                    self.args.redis_server.display()
                )
            })?;
        let server = Server { port, child };
        let t = Instant::now();
        while self.cli(&server, &["PING"]).map(|o| o.trim() == "PONG") != Ok(true) {
            ensure!(
                t.elapsed() < Duration::from_secs(20),
                "redis-server on port {port} did not answer PING within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    fn cli_command(&self, s: &Server) -> Command {
        let mut c = Command::new(&self.args.redis_cli);
        c.env("REDISCLI_AUTH", PASSWORD)
            .args(["-h", "127.0.0.1", "-p", &s.port.to_string()]);
        c
    }

    /// `redis-cli <args>`'s stdout (Err as text, so a waiting loop can compare it).
    fn cli(&self, s: &Server, args: &[&str]) -> Result<String, String> {
        let o = self
            .cli_command(s)
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if !o.status.success() {
            return Err(String::from_utf8_lossy(&o.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    fn dbsize(&self, s: &Server) -> anyhow::Result<u64> {
        let out = self
            .cli(s, &["DBSIZE"])
            .map_err(|e| anyhow::anyhow!("redis-cli DBSIZE: {e}"))?;
        out.trim()
            .parse()
            .with_context(|| format!("redis-cli DBSIZE answered {out:?}"))
    }

    /// `redis-cli --pipe < file` into `s`, untimed (seeding).
    fn pipe(&self, s: &Server, file: &Path) -> anyhow::Result<()> {
        let out = self
            .cli_command(s)
            .arg("--pipe")
            .stdin(File::open(file)?)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()?;
        ensure!(
            out.status.success(),
            "redis-cli --pipe failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// Runs `cmd` to the end; its wall time, CPU, peak RSS and output. `what` names it in errors.
    fn timed(&self, what: &str, cmd: &mut Command) -> anyhow::Result<(f64, f64, u64, String)> {
        run_timed(&self.work.join("child.log"), what, cmd)
    }

    fn addon_run(&self, s: &Server, task: &str) -> Command {
        let mut c = Command::new(&self.kstash);
        c.args(["addon", "run", "--module"])
            .arg(&self.args.module)
            .arg("--cache-dir")
            .arg(&self.cache_dir)
            .args(["--task", task, "--target-url"])
            .arg(format!("redis://127.0.0.1:{}", s.port))
            .args(["--username", "default", "--password-file"])
            .arg(&self.password_file);
        c
    }

    fn kstash_backup(&self, s: &Server, dir: &Path) -> anyhow::Result<Sample> {
        std::fs::create_dir_all(dir)?;
        let mut cmd = self.addon_run(s, "logical-backup");
        cmd.arg("--out-dir").arg(dir);
        let (secs, cpu, peak, out) = self.timed("kstash addon run logical-backup", &mut cmd)?;
        let items = items_of(&out).context("kstash addon run printed no item count")?;
        let want = self.dbsize(s)?;
        ensure!(
            items == want,
            "kstash backup: {items} keys, the server holds {want}"
        );
        let bytes = std::fs::metadata(dir.join("dump.resp"))?.len();
        Ok(Sample {
            secs,
            bytes,
            cpu,
            peak,
        })
    }

    fn rdb_backup(&self, s: &Server, round: usize) -> anyhow::Result<Sample> {
        let file = self.work.join(format!("dump-{round}.rdb"));
        let mut cmd = self.cli_command(s);
        cmd.arg("--rdb").arg(&file);
        let (secs, cpu, peak, _) = self.timed("redis-cli --rdb", &mut cmd)?;
        let bytes = std::fs::metadata(&file)?.len();
        ensure!(bytes > 0, "redis-cli --rdb wrote an empty file");
        Ok(Sample {
            secs,
            bytes,
            cpu,
            peak,
        })
    }

    fn kstash_restore(&self, dir: &Path, dump: &Path) -> anyhow::Result<Sample> {
        let target = self.start_server("restore-kstash")?;
        let mut cmd = self.addon_run(&target, "logical-backup-restore");
        cmd.arg("--in-dir").arg(dir);
        let (secs, cpu, peak, _) =
            self.timed("kstash addon run logical-backup-restore", &mut cmd)?;
        self.check_restored("kstash restore", &target)?;
        Ok(Sample {
            secs,
            bytes: std::fs::metadata(dump)?.len(),
            cpu,
            peak,
        })
    }

    fn pipe_restore(&self, dump: &Path) -> anyhow::Result<Sample> {
        let target = self.start_server("restore-pipe")?;
        let mut cmd = self.cli_command(&target);
        cmd.arg("--pipe").stdin(File::open(dump)?);
        let (secs, cpu, peak, out) = self.timed("redis-cli --pipe", &mut cmd)?;
        ensure!(
            out.contains("errors: 0"),
            "redis-cli --pipe reported errors:\n{out}"
        );
        self.check_restored("redis-cli --pipe", &target)?;
        Ok(Sample {
            secs,
            bytes: std::fs::metadata(dump)?.len(),
            cpu,
            peak,
        })
    }

    fn check_restored(&self, what: &str, s: &Server) -> anyhow::Result<()> {
        let n = self.dbsize(s)?;
        ensure!(
            n == self.args.keys,
            "{what}: DBSIZE {n} after the restore, expected {}",
            self.args.keys
        );
        Ok(())
    }

    fn table(&self, rows: &[Vec<Sample>; 4]) -> String {
        let keys = self.args.keys as f64;
        fn m(v: &[Sample], f: impl Fn(&Sample) -> f64) -> f64 {
            median(v.iter().map(f).collect())
        }
        let mut out = format!(
            "Redis addon benchmark: {} keys ({}-byte strings), {} round(s), medians; {}\n\n",
            self.args.keys,
            self.args.value_bytes,
            self.args.rounds,
            machine_line()
        );
        out += &format!(
            "{:<34} {:>8} {:>11} {:>9} {:>8} {:>10}\n",
            "side", "secs", "keys/s", "MB/s", "CPU s", "peak RSS"
        );
        let names = [
            "kstash backup -> dump.resp",
            "redis-cli --rdb -> dump.rdb",
            "kstash restore <- dump.resp",
            "redis-cli --pipe <- dump.resp",
        ];
        for (name, v) in names.iter().zip(rows) {
            out += &format!(
                "{:<34} {:>8.2} {:>11.0} {:>9.1} {:>8.2} {:>7.0} MiB\n",
                name,
                m(v, |s| s.secs),
                m(v, |s| keys / s.secs),
                m(v, |s| s.bytes as f64 / s.secs / 1e6),
                m(v, |s| s.cpu),
                m(v, |s| s.peak as f64) / (1u64 << 20) as f64,
            );
        }
        let ratio = |a: &[Sample], b: &[Sample]| m(b, |s| s.secs) / m(a, |s| s.secs);
        out += &format!(
            "\nratios (peer time / kstash time, > 1 = kstash faster): backup vs redis-cli --rdb {:.2}x, \
             restore vs redis-cli --pipe {:.2}x\n\
             (MB/s counts each side's own output: the RESP dump for kstash and --pipe, the RDB file for --rdb)\n",
            ratio(&rows[0], &rows[1]),
            ratio(&rows[2], &rows[3]),
        );
        out
    }
}

/// The item count of `kstash addon run`'s summary line (`task … finished in …: N items, …`).
fn items_of(out: &str) -> Option<u64> {
    out.lines()
        .filter(|l| l.starts_with("task ") && l.contains(" finished in "))
        .find_map(|l| {
            let rest = l.split_once(": ")?.1;
            rest.split_once(" items")?.0.trim().parse().ok()
        })
}

/// A RESP command, as `redis-cli --pipe` reads it.
fn command(w: &mut impl std::io::Write, args: &[&[u8]]) -> std::io::Result<()> {
    write!(w, "*{}\r\n", args.len())?;
    for a in args {
        write!(w, "${}\r\n", a.len())?;
        w.write_all(a)?;
        w.write_all(b"\r\n")?;
    }
    Ok(())
}

/// The seed: `keys` keys, 80 % strings of `value_bytes`, 5 % each of hash, list, set and sorted
/// set with 10 members; every 10th string expires in an hour.
fn write_seed(path: &Path, keys: u64, value_bytes: usize) -> anyhow::Result<()> {
    let mut w = BufWriter::new(File::create(path)?);
    let value: Vec<u8> = (0..value_bytes).map(|i| b'a' + (i % 26) as u8).collect();
    for i in 0..keys {
        let n = i.to_string();
        match i % 20 {
            0 => {
                let k = format!("h:{n}");
                let mut args: Vec<Vec<u8>> = vec![b"HSET".to_vec(), k.into_bytes()];
                for f in 0..10 {
                    args.push(format!("f{f}").into_bytes());
                    args.push(format!("v{f}-{n}").into_bytes());
                }
                command(&mut w, &args.iter().map(Vec::as_slice).collect::<Vec<_>>())?;
            }
            1 | 2 => {
                let (cmd, k) = if i % 20 == 1 {
                    ("RPUSH", format!("l:{n}"))
                } else {
                    ("SADD", format!("s:{n}"))
                };
                let mut args: Vec<Vec<u8>> = vec![cmd.as_bytes().to_vec(), k.into_bytes()];
                args.extend((0..10).map(|m| format!("m{m}-{n}").into_bytes()));
                command(&mut w, &args.iter().map(Vec::as_slice).collect::<Vec<_>>())?;
            }
            3 => {
                let k = format!("z:{n}");
                let mut args: Vec<Vec<u8>> = vec![b"ZADD".to_vec(), k.into_bytes()];
                for m in 0..10 {
                    args.push(m.to_string().into_bytes());
                    args.push(format!("m{m}-{n}").into_bytes());
                }
                command(&mut w, &args.iter().map(Vec::as_slice).collect::<Vec<_>>())?;
            }
            _ => {
                let k = format!("k:{n}");
                command(&mut w, &[b"SET", k.as_bytes(), &value])?;
                if i % 10 == 4 {
                    command(&mut w, &[b"PEXPIRE", k.as_bytes(), b"3600000"])?;
                }
            }
        }
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_line_gives_the_item_count() {
        let out = "digest: sha256:ab\ntask logical-backup finished in 1.20s: 1000 items, 5 bytes, 0 requests\n";
        assert_eq!(items_of(out), Some(1000));
        assert_eq!(items_of("nothing"), None);
    }

    #[test]
    fn the_seed_is_resp_with_every_kind() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("seed.resp");
        write_seed(&p, 20, 4).unwrap();
        let s = std::fs::read_to_string(&p).unwrap();
        for cmd in ["HSET", "RPUSH", "SADD", "ZADD", "SET", "PEXPIRE"] {
            assert!(s.contains(&format!("${}\r\n{cmd}\r\n", cmd.len())), "{cmd}");
        }
        assert_eq!(s.matches("*").count(), 20 + 2, "20 keys + 2 PEXPIRE");
    }
}
