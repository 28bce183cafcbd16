//! The Redis addon (`addons/redis`) through `kstash addon run` against real `redis-server`s on
//! loopback with a password: backup, restore into a second empty server, `redis-cli --pipe` of
//! the same dump into a third; every key of every database compared with `redis-cli`.
#![cfg(feature = "addon")]

use std::collections::BTreeMap;
use std::path::PathBuf;

use kstash_testkit::fresh_addon_module;
use kstash_testkit::redis::RedisServer as Redis;

const PASSWORD: &str = "p@ss word";

/// The Redis addon, built by `scripts/build-addons.sh` (run here once).
fn module() -> PathBuf {
    fresh_addon_module("redis_addon.wasm")
}

/// Every key of every database, as `redis-cli` shows it.
trait Contents {
    fn contents(&self) -> BTreeMap<(u32, String), (String, i64, String)>;
}

impl Contents for Redis {
    /// Every key of every database: (db, key) → (type, expiry as unix ms or -1, value text).
    /// The expiry is absolute (`PEXPIRETIME`), so servers read at different moments compare.
    fn contents(&self) -> BTreeMap<(u32, String), (String, i64, String)> {
        let mut all = BTreeMap::new();
        for db in 0..16 {
            let keys = self
                .cli_command(db)
                .arg("--raw")
                .args(["--scan"])
                .output()
                .unwrap();
            for key in String::from_utf8_lossy(&keys.stdout).lines() {
                let ty = self.cli(db, &["TYPE", key]);
                let expires_at: i64 = self
                    .cli(db, &["PEXPIRETIME", key])
                    .trim_matches(|c: char| !c.is_ascii_digit() && c != '-')
                    .parse()
                    .unwrap();
                let sorted = |s: String| {
                    let mut l: Vec<String> = s
                        .lines()
                        .map(|l| l.split_once(") ").map_or(l, |x| x.1).to_string())
                        .collect();
                    l.sort();
                    l.join("\n")
                };
                let value = match ty.as_str() {
                    "string" => self.cli(db, &["GET", key]),
                    "list" => self.cli(db, &["LRANGE", key, "0", "-1"]),
                    "hash" => {
                        // Pairs, sorted by field.
                        let flat = self
                            .cli_command(db)
                            .arg("--no-raw")
                            .args(["HGETALL", key])
                            .output()
                            .unwrap();
                        let lines: Vec<String> = String::from_utf8_lossy(&flat.stdout)
                            .lines()
                            .map(|l| l.split_once(") ").map_or(l, |x| x.1).to_string())
                            .collect();
                        let mut pairs: Vec<String> =
                            lines.chunks(2).map(|p| p.join(" => ")).collect();
                        pairs.sort();
                        pairs.join("\n")
                    }
                    "set" => sorted(self.cli(db, &["SMEMBERS", key])),
                    "zset" => self.cli(db, &["ZRANGE", key, "0", "-1", "WITHSCORES"]),
                    "stream" => format!(
                        "{}\n{}\n{}",
                        self.cli(db, &["XRANGE", key, "-", "+"]),
                        self.cli(db, &["XINFO", "GROUPS", key])
                            .lines()
                            .filter(|l| !l.contains("lag") && !l.contains("entries-read"))
                            .collect::<Vec<_>>()
                            .join("\n"),
                        self.cli(db, &["XINFO", "STREAM", key])
                            .lines()
                            .skip_while(|l| !l.contains("last-generated-id"))
                            .take(2)
                            .collect::<Vec<_>>()
                            .join("\n"),
                    ),
                    other => panic!("unexpected type {other}"),
                };
                all.insert((db, key.to_string()), (ty, expires_at, value));
            }
        }
        all
    }
}

fn kstash(args: &[&str]) -> std::process::Output {
    kstash_testkit::output(env!("CARGO_BIN_EXE_kstash"), args)
}

fn populate(r: &Redis) {
    let ok = |out: String| assert!(!out.contains("ERR"), "{out}");
    ok(r.cli(0, &["SET", "greeting", "hello world"]));
    ok(r.cli(0, &["SET", "binary", "line1\nline2\r\n\ttail"]));
    ok(r.cli(0, &["SET", "expiring", "soon", "PX", "86400000"]));
    let items: Vec<String> = (0..2500).map(|i| format!("item-{i}")).collect();
    let mut args = vec!["RPUSH", "biglist"];
    args.extend(items.iter().map(String::as_str));
    ok(r.cli(0, &args));
    let fields: Vec<String> = (0..1500)
        .flat_map(|i| [format!("f{i}"), format!("v{i}")])
        .collect();
    let mut args = vec!["HSET", "bighash"];
    args.extend(fields.iter().map(String::as_str));
    ok(r.cli(0, &args));
    ok(r.cli(0, &["EXPIRE", "bighash", "3600"]));
    let members: Vec<String> = (0..1200).map(|i| format!("m{i}")).collect();
    let mut args = vec!["SADD", "bigset"];
    args.extend(members.iter().map(String::as_str));
    ok(r.cli(0, &args));
    ok(r.cli(
        3,
        &[
            "ZADD", "scores", "1.5", "alice", "-2", "bob", "1e10", "carol",
        ],
    ));
    ok(r.cli(3, &["XADD", "events", "1-1", "type", "a", "n", "1"]));
    ok(r.cli(3, &["XADD", "events", "2-0", "type", "b"]));
    ok(r.cli(3, &["XGROUP", "CREATE", "events", "readers", "1-1"]));
    ok(r.cli(15, &["SET", "last db", "value with spaces"]));
    // Past the addon's pipelined first reads: a string over 64 KiB, a sorted set over one page.
    let big = "x".repeat(100 * 1024);
    ok(r.cli(0, &["SET", "bigstring", &big]));
    let scored: Vec<String> = (0..300)
        .flat_map(|i| [i.to_string(), format!("p{i}")])
        .collect();
    let mut args = vec!["ZADD", "bigzset"];
    args.extend(scored.iter().map(String::as_str));
    ok(r.cli(0, &args));
}

#[test]
fn backup_restore_and_redis_cli_pipe_give_the_same_keys() {
    let wasm = module();
    let wasm = wasm.to_str().unwrap();
    let (src, dst, piped) = (
        Redis::start(PASSWORD),
        Redis::start(PASSWORD),
        Redis::start(PASSWORD),
    );
    populate(&src);
    let work = tempfile::tempdir().unwrap();
    let pw = work.path().join("password");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    let pw = pw.to_str().unwrap();
    let dump = work.path().join("dump");
    let dump_s = dump.to_str().unwrap();
    let url = |r: &Redis| format!("redis://127.0.0.1:{}", r.port);

    let o = kstash(&[
        "addon",
        "run",
        "--module",
        wasm,
        "--task",
        "logical-backup",
        "--target-url",
        &url(&src),
        "--username",
        "default",
        "--password-file",
        pw,
        "--out-dir",
        dump_s,
    ]);
    assert!(
        o.status.success(),
        "backup failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = std::fs::read(dump.join("dump.resp")).unwrap();
    assert!(
        !String::from_utf8_lossy(&text).contains(PASSWORD),
        "the dump holds the password"
    );

    let restore = |r: &Redis| {
        kstash(&[
            "addon",
            "run",
            "--module",
            wasm,
            "--task",
            "logical-backup-restore",
            "--target-url",
            &url(r),
            "--username",
            "default",
            "--password-file",
            pw,
            "--in-dir",
            dump_s,
        ])
    };
    let o = restore(&dst);
    assert!(
        o.status.success(),
        "restore failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );

    // A second restore into the now non-empty server is refused, naming the way out.
    let o = restore(&dst);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("not empty") && err.contains("allow-non-empty"),
        "{err}"
    );

    let file = std::fs::File::open(dump.join("dump.resp")).unwrap();
    let o = piped
        .cli_command(0)
        .arg("--pipe")
        .stdin(file)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("errors: 0"),
        "redis-cli --pipe: {out}"
    );

    let want = src.contents();
    assert_eq!(want.len(), 11, "{want:#?}");
    for (name, got) in [("restored", dst.contents()), ("piped", piped.contents())] {
        assert_eq!(
            want.keys().collect::<Vec<_>>(),
            got.keys().collect::<Vec<_>>(),
            "{name}: keys differ"
        );
        for (k, (ty, ttl, value)) in &want {
            let (gty, gttl, gvalue) = &got[k];
            assert_eq!((ty, value), (gty, gvalue), "{name}: key {k:?}");
            if *ttl < 0 {
                assert_eq!(ttl, gttl, "{name}: key {k:?} has no TTL");
            } else {
                assert!(
                    (ttl - gttl).abs() <= 1000,
                    "{name}: key {k:?}: expires at {ttl} vs {gttl} (unix ms)"
                );
            }
        }
    }
}

#[test]
fn a_wrong_password_fails_as_a_connection_error() {
    let wasm = module();
    let r = Redis::start(PASSWORD);
    let work = tempfile::tempdir().unwrap();
    let pw = work.path().join("password");
    std::fs::write(&pw, "wrong").unwrap();
    let o = kstash(&[
        "addon",
        "run",
        "--module",
        wasm.to_str().unwrap(),
        "--task",
        "logical-backup",
        "--target-url",
        &format!("redis://127.0.0.1:{}", r.port),
        "--username",
        "default",
        "--password-file",
        pw.to_str().unwrap(),
        "--out-dir",
        work.path().join("d").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("AUTH failed") && !err.contains("wrong\""),
        "{err}"
    );
}

#[test]
fn backup_over_tls_verified_with_the_ca_restores_into_a_plain_server() {
    let wasm = module();
    let wasm = wasm.to_str().unwrap();
    let (src, dst) = (Redis::start_tls(PASSWORD), Redis::start(PASSWORD));
    populate(&src);
    let work = tempfile::tempdir().unwrap();
    let pw = work.path().join("password");
    std::fs::write(&pw, PASSWORD).unwrap();
    let pw = pw.to_str().unwrap();
    let dump = work.path().join("dump");
    let ca = src.tls_ca.clone().unwrap();
    let tls_url = format!("rediss://127.0.0.1:{}", src.port);
    let backup = |extra: &[&str]| {
        let mut args = vec![
            "addon",
            "run",
            "--module",
            wasm,
            "--task",
            "logical-backup",
            "--target-url",
            &tls_url,
            "--username",
            "default",
            "--password-file",
            pw,
            "--out-dir",
            dump.to_str().unwrap(),
        ];
        args.extend(extra);
        kstash(&args)
    };
    // Without the CA the host does not trust the server.
    let o = backup(&[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("TLS"), "{err}");
    let o = backup(&["--ca-file", ca.to_str().unwrap()]);
    assert!(
        o.status.success(),
        "TLS backup failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = kstash(&[
        "addon",
        "run",
        "--module",
        wasm,
        "--task",
        "logical-backup-restore",
        "--target-url",
        &format!("redis://127.0.0.1:{}", dst.port),
        "--username",
        "default",
        "--password-file",
        pw,
        "--in-dir",
        dump.to_str().unwrap(),
    ]);
    assert!(
        o.status.success(),
        "restore failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (want, got) = (src.contents(), dst.contents());
    assert_eq!(want.len(), 11);
    for (k, (ty, _, value)) in &want {
        let (gty, _, gvalue) = &got[k];
        assert_eq!((ty, value), (gty, gvalue), "key {k:?}");
    }
}

/// `kstash bench redis` at a tiny size, so it cannot rot (not a timed test: only its checks and
/// its table are asserted); a debug build refuses ratios without the flag.
#[test]
fn bench_redis_runs_end_to_end_at_a_tiny_size() {
    let wasm = module();
    let wasm = wasm.to_str().unwrap();
    let o = kstash(&[
        "bench",
        "redis",
        "--keys",
        "2000",
        "--rounds",
        "1",
        "--module",
        wasm,
        "--allow-debug-build",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "bench: {}\n{out}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    for row in [
        "kstash backup -> dump.resp",
        "redis-cli --rdb -> dump.rdb",
        "kstash restore <- dump.resp",
        "redis-cli --pipe <- dump.resp",
        "backup vs redis-cli --rdb",
        "2000 keys",
    ] {
        assert!(out.contains(row), "no {row:?} in:\n{out}");
    }
    if cfg!(debug_assertions) {
        let o = kstash(&["bench", "redis", "--keys", "10", "--module", wasm]);
        assert!(!o.status.success());
        assert!(String::from_utf8_lossy(&o.stderr).contains("--allow-debug-build"));
    }
}
