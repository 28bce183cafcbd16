//! kstash-repo against real parts: the Debian `restic` CLI and a `moto` S3 server on loopback.
//!
//! Every repository kstash writes is verified by restic (`snapshots --json`, `check
//! --read-data`, `dump` byte-identical), on local disk and on S3; a restic-made repository is
//! read by kstash; dedup, locks and storage faults are exercised.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kstash_repo::{BackupOptions, ConnectOptions, Error, Provider, Storage, StorageConfig};
use kstash_testkit::{Moto, Restic};

mod common;
use common::{assert_same_files, backup_files, ndjson, restore_all};

const PASSWORD: &str = "kstash-test-password";

fn shared_moto() -> &'static Moto {
    static M: OnceLock<Moto> = OnceLock::new();
    M.get_or_init(Moto::start)
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "kstash-repo-{tag}-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

fn s3_secrets() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("AWS_ACCESS_KEY_ID".to_string(), "AKTEST".to_string()),
        ("AWS_SECRET_ACCESS_KEY".to_string(), "SKTEST".to_string()),
    ])
}

fn s3_storage(moto: &Moto, bucket: &str, opts: &ConnectOptions) -> Storage {
    moto.create_bucket(bucket);
    let v = serde_json::json!({"provider": "s3", "s3": {
        "endpoint": format!("{}/", moto.endpoint()), "bucket": format!("{bucket}/"),
        "prefix": "elastic/", "region": "us-east-1", "secretName": "s3-secret"}});
    let cfg = StorageConfig::from_spec_storage("demo/s3-storage", v, s3_secrets()).unwrap();
    Storage::connect_with(cfg, opts).unwrap()
}

fn local_storage(dir: &Path) -> Storage {
    let v = serde_json::json!({"provider": "local", "local": {"mountPath": dir.to_str().unwrap(), "subPath": "prefix"}});
    Storage::connect(
        StorageConfig::from_spec_storage("demo/local-storage", v, BTreeMap::new()).unwrap(),
    )
    .unwrap()
}

/// The `restic` CLI on `location` (no cache), with the test's password and S3 credentials.
fn restic_at(location: &str) -> Restic {
    Restic::new(location, PASSWORD, s3_secrets().into_iter().collect())
}

fn restic(location: &str, args: &[&str]) -> std::process::Output {
    restic_at(location).run(args)
}

fn restic_ok(location: &str, args: &[&str]) -> Vec<u8> {
    let out = restic(location, args);
    assert!(
        out.status.success(),
        "restic {args:?} on {location} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// restic's chunker test polynomial (`testPol` in github.com/restic/chunker), irreducible of
/// degree 53: repositories initialised with it cut the same data at the same points, so the
/// dedup numbers below are reproducible (a fresh repository draws a random polynomial).
const POLY: u64 = 0x3DA3358B4DC173;

/// `restic backup --stdin --json` of `data` as `name`; returns restic's summary message.
fn restic_stdin(location: &str, name: &str, data: &[u8]) -> serde_json::Value {
    let mut child = restic_at(location)
        .command()
        .args(["backup", "--json", "--stdin"])
        .args(["--stdin-filename", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&data).unwrap());
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(
        out.status.success(),
        "restic backup --stdin: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message_type"] == "summary")
        .expect("restic printed a summary")
}

/// restic's own view: snapshots, check --read-data, dump of every file byte-identical.
fn verify_with_restic(location: &str, files: &BTreeMap<String, Vec<u8>>, expect_snapshots: usize) {
    let snaps: serde_json::Value =
        serde_json::from_slice(&restic_ok(location, &["snapshots", "--json", "--no-lock"]))
            .unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), expect_snapshots, "{snaps}");
    let latest = snaps.as_array().unwrap().last().unwrap();
    let mut paths: Vec<String> = latest["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    paths.sort();
    assert_eq!(paths, files.keys().cloned().collect::<Vec<_>>());
    let check = restic_ok(location, &["check", "--read-data", "--no-lock"]);
    assert!(
        String::from_utf8_lossy(&check).contains("no errors were found"),
        "{}",
        String::from_utf8_lossy(&check)
    );
    // restic ls: every file node carries its real size (restic 0.14 `ls --json` node lines)
    let ls = restic_ok(location, &["ls", "--json", "--no-lock", "latest"]);
    let sizes: BTreeMap<String, u64> = String::from_utf8_lossy(&ls)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "file")
        .map(|v| {
            (
                v["path"].as_str().unwrap().to_string(),
                v["size"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let want: BTreeMap<String, u64> = files
        .iter()
        .map(|(k, v)| (k.clone(), v.len() as u64))
        .collect();
    assert_eq!(sizes, want, "restic ls sizes");
    for (path, data) in files {
        let dumped = restic_ok(location, &["dump", "--no-lock", "latest", path]);
        assert!(
            dumped == *data,
            "restic dump {path}: content differs ({} vs {} bytes)",
            dumped.len(),
            data.len()
        );
    }
}

/// Writes `files` concurrently: the first half interleaved round-robin from one task (a
/// producer writing several files at once), the rest from their own tasks.
fn es_files(seed: u64, sizes: &[usize]) -> BTreeMap<String, Vec<u8>> {
    let names = [
        "/logs.json",
        "/logs.mapping.json",
        "/logs.settings.json",
        "/orders.json",
        "/users.json",
    ];
    sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| (names[i].to_string(), ndjson(seed + i as u64, n)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_layout_streams_and_restic_verification() {
    let tmp = TempDir::new("local");
    let storage = local_storage(&tmp.0);
    storage.verify().await.unwrap();
    storage
        .initialize(b"apiVersion: config.kubestash.com/v1alpha1\nkind: BackendMeta\n")
        .await
        .unwrap();
    let dir = storage.repository("es/").unwrap();
    dir.initialize(b"kind: Repository\n").await.unwrap();
    dir.put_snapshot_yaml(
        "s3-elasticsearch-repo-appbindingtart-frequent-backup-1726722361",
        b"kind: Snapshot\n",
    )
    .await
    .unwrap();
    let root = tmp.0.join("prefix");
    assert!(root.join("metadata.yaml").is_file());
    assert!(root.join("es/repository.yaml").is_file());
    assert!(root
        .join("es/snapshots/s3-elasticsearch-repo-appbindingtart-frequent-backup-1726722361.yaml")
        .is_file());
    assert_eq!(
        dir.snapshot_names().await.unwrap(),
        vec!["s3-elasticsearch-repo-appbindingtart-frequent-backup-1726722361".to_string()]
    );

    let repo = dir.component("frequent-backup", "dump", PASSWORD).unwrap();
    let location = repo.location().to_string();
    assert_eq!(
        PathBuf::from(&location),
        root.join("es/repository/v1/frequent-backup/dump")
    );
    // four concurrent streams, including a tiny one and an empty one
    let mut files = es_files(1, &[6 << 20, 3 << 20, 200, 2 << 20]);
    files.insert("/empty.json".into(), vec![]);
    let sum = backup_files(&repo, &files).await.unwrap();
    println!("local backup: {sum:?}");
    assert_eq!(sum.files, 5);
    assert_eq!(
        sum.bytes_processed,
        files.values().map(|v| v.len() as u64).sum::<u64>()
    );
    assert!(root
        .join("es/repository/v1/frequent-backup/dump/config")
        .is_file());
    // One key file, scrypt within restic's own calibration bound (at most 60 MiB per
    // derivation: 128 · N · r bytes), which restic opens below.
    let keys: Vec<_> = std::fs::read_dir(root.join("es/repository/v1/frequent-backup/dump/keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let key: serde_json::Value = serde_json::from_slice(&std::fs::read(&keys[0]).unwrap()).unwrap();
    assert_eq!(key["kdf"], "scrypt");
    let (n, r) = (key["N"].as_u64().unwrap(), key["r"].as_u64().unwrap());
    assert!(128 * n * r <= 60 << 20, "scrypt N={n} r={r}");
    verify_with_restic(&location, &files, 1);

    // kstash's own view: latest, files, streaming restore, check, size == restic raw-data
    let snaps = repo.snapshots().await.unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].id, sum.snapshot_id);
    assert_eq!(repo.snapshot("latest").await.unwrap().id, sum.snapshot_id);
    assert_same_files(&restore_all(&repo, "latest").await, &files);
    let check = repo.check(true).await.unwrap();
    assert!(check.ok, "{:?}", check.findings);
    let stats: serde_json::Value = serde_json::from_slice(&restic_ok(
        &location,
        &["stats", "--mode", "raw-data", "--json", "--no-lock"],
    ))
    .unwrap();
    // size() counts every stored blob; restic's raw-data the referenced ones: kstash writes
    // no unreferenced blob, so they are equal.
    let raw = stats["total_size"].as_u64().unwrap();
    let size = repo.size().await.unwrap();
    println!("size {size} B, restic stats raw-data {raw} B");
    assert_eq!(size, raw, "size vs restic stats raw-data");
    assert_eq!(sum.repository_size, size);
    // no lock left behind
    assert!(repo.list_locks().await.unwrap().is_empty());

    // bad input is named
    let b = repo.begin_backup(BackupOptions::default()).await.unwrap();
    let e = b.create_file("relative.json").await.unwrap_err();
    assert!(e.to_string().contains("`path`"), "{e}");
    let w = b.create_file("/unfinished.json").await.unwrap();
    drop(w);
    let e = b.commit().await.unwrap_err();
    assert!(e.to_string().contains("/unfinished.json"), "{e}");
    assert_eq!(repo.snapshots().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_roundtrip_dedup_retention_and_restic_made_repo() {
    let moto = shared_moto();
    let storage = s3_storage(moto, "interop", &ConnectOptions::default());
    storage.verify().await.unwrap();
    storage.initialize(b"kind: BackendMeta\n").await.unwrap();
    let dir = storage.repository("es").unwrap();
    let repo = dir.component("frequent-backup", "dump", PASSWORD).unwrap();
    let location = repo.location().to_string();
    assert_eq!(
        location,
        format!(
            "s3:{}/interop/elastic/es/repository/v1/frequent-backup/dump",
            moto.endpoint()
        )
    );
    repo.init_with_chunker_polynomial(POLY).await.unwrap();
    let files = es_files(10, &[8 << 20, 1 << 20, 300]);
    let first = backup_files(&repo, &files).await.unwrap();
    verify_with_restic(&location, &files, 1);
    assert_same_files(&restore_all(&repo, &first.snapshot_id[..8]).await, &files);

    // same streams again: almost nothing added
    let second = backup_files(&repo, &files).await.unwrap();
    println!(
        "dedup: first added {} B (packed) of {} B; second added {} B (packed), {} B raw",
        first.bytes_added, first.bytes_processed, second.bytes_added, second.bytes_added_raw
    );
    assert_eq!(second.bytes_processed, first.bytes_processed);
    // only tree metadata (new mtimes) is added, no data
    assert!(
        second.bytes_added_raw < 4096,
        "identical data must not be stored again: {}",
        second.bytes_added_raw
    );
    assert!(
        second.bytes_added < 4096,
        "second backup added {} B",
        second.bytes_added
    );

    // one stream changed in the middle (256 KiB of 8 MiB): adds about the changed part
    let mut changed = files.clone();
    let big = changed.get_mut("/logs.json").unwrap();
    let fresh = ndjson(999, 256 << 10);
    big[4 << 20..(4 << 20) + (256 << 10)].copy_from_slice(&fresh);
    let third = backup_files(&repo, &changed).await.unwrap();
    println!(
        "changed 256 KiB of {} B: added {} B raw, {} B packed",
        third.bytes_processed, third.bytes_added_raw, third.bytes_added
    );
    assert!(third.bytes_added_raw >= 256 << 10);
    // Bound from restic's chunker parameters (min 512 KiB, average 1 MiB = split mask 2^20,
    // max 8 MiB): a change re-adds the chunk it starts in, the change itself, and chunks
    // until the cut points resynchronise — about two average chunks plus the change, plus
    // the new tree blobs (< 4 KiB). With a random polynomial this is only the expectation
    // (measured over 60 random polynomials on this data: 0.7 to 5.2 MB, median 2.2 MB, the
    // variation seen before the polynomial was fixed); with `POLY` the cut points, hence the
    // number, are fixed (2 342 960 B).
    let bound = (2 << 20) + (256 << 10) + 4096;
    assert!(
        third.bytes_added_raw <= bound,
        "a 256 KiB change re-added {} B (bound {bound} B)",
        third.bytes_added_raw
    );
    // restic itself, in a repository with the same chunker polynomial (`init --from-repo
    // --copy-chunker-params`), backing up the same two versions of the stream, adds the same
    // data: only the tree blobs (one per snapshot, < 2 KiB each) may differ.
    let twin = storage
        .repository("es-twin")
        .unwrap()
        .component("frequent-backup", "dump", PASSWORD)
        .unwrap();
    let init = restic_at(twin.location())
        .command()
        .args(["init", "--copy-chunker-params", "--from-repo", &location])
        .env("RESTIC_FROM_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    restic_stdin(twin.location(), "logs.json", &files["/logs.json"]);
    let oracle = restic_stdin(twin.location(), "logs.json", &changed["/logs.json"]);
    let restic_added = oracle["data_added"].as_u64().unwrap();
    println!("restic re-added {restic_added} B for the same change");
    assert!(
        third.bytes_added_raw.abs_diff(restic_added) < 4096,
        "kstash re-added {} B, restic {restic_added} B",
        third.bytes_added_raw
    );
    verify_with_restic(&location, &changed, 3);

    // retention: forget the first two, prune; the YAML copies go too
    for n in ["snap-1", "snap-2", "snap-3"] {
        dir.put_snapshot_yaml(n, b"kind: Snapshot\n").await.unwrap();
    }
    let del = |name: &str, id: &str| kstash_repo::SnapshotDeletion {
        snapshot_name: name.into(),
        components: vec![kstash_repo::ComponentSnapshot {
            session: "frequent-backup".into(),
            component: "dump".into(),
            restic_snapshot_id: id.into(),
        }],
    };
    let reports = dir
        .apply_retention(
            &[
                del("snap-1", &first.snapshot_id),
                del("snap-2", &second.snapshot_id),
            ],
            PASSWORD,
        )
        .await
        .unwrap();
    assert_eq!(reports[0].forgotten.len(), 2);
    assert_eq!(
        dir.snapshot_names().await.unwrap(),
        vec!["snap-3".to_string()]
    );
    verify_with_restic(&location, &changed, 1);
    assert_same_files(&restore_all(&repo, "latest").await, &changed);

    // a repository made by `restic backup --stdin` is read by kstash
    let rrepo = dir
        .component("frequent-backup", "restic-made", PASSWORD)
        .unwrap();
    restic_ok(rrepo.location(), &["init"]);
    let data = ndjson(77, 3 << 20);
    let mut child = restic_at(rrepo.location())
        .command()
        .args(["backup", "--stdin", "--stdin-filename", "dump.ndjson"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&data).unwrap();
    assert!(child.wait().unwrap().success());
    let snaps = rrepo.snapshots().await.unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].paths, vec!["/dump.ndjson".to_string()]);
    let got = restore_all(&rrepo, "latest").await;
    assert!(
        got.get("/dump.ndjson") == Some(&data),
        "restic-made file restored differently"
    );
    assert!(rrepo.check(true).await.unwrap().ok);
    // and kstash can append to it, restic still happy
    let extra = BTreeMap::from([("/dump.ndjson".to_string(), data.clone())]);
    let s = backup_files(&rrepo, &extra).await.unwrap();
    assert!(
        s.bytes_added_raw < 4096,
        "dedup across tools: {}",
        s.bytes_added_raw
    );
    verify_with_restic(rrepo.location(), &extra, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_stale_from_killed_process_and_live_exclusive() {
    let tmp = TempDir::new("locks");
    let storage = local_storage(&tmp.0);
    let dir = storage.repository("es").unwrap();
    let repo = dir.component("frequent-backup", "dump", PASSWORD).unwrap();
    repo.init().await.unwrap();
    let locks_dir = tmp
        .0
        .join("prefix/es/repository/v1/frequent-backup/dump/locks");

    // a restic backup killed mid-way leaves its lock behind
    let mut child = restic_at(repo.location())
        .command()
        .args(["backup", "--stdin", "--stdin-filename", "x.json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&ndjson(5, 1 << 20)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_dir(&locks_dir)
        .map(|d| d.count())
        .unwrap_or(0)
        == 0
    {
        assert!(Instant::now() < deadline, "restic did not lock");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);
    let left = repo.list_locks().await.unwrap();
    assert_eq!(left.len(), 1, "the killed restic left its lock");
    let info = left[0].info.clone().expect("kstash decodes restic's lock");
    assert!(!info.exclusive);
    assert!(info.stale_reason(jiff::Timestamp::now()).is_some());

    // …which never blocks the next backup: removed (logged) and the backup succeeds
    let quick = repo.clone().with_lock_wait(Duration::from_secs(2));
    let files = es_files(3, &[1 << 20]);
    backup_files(&quick, &files).await.unwrap();
    assert!(repo.list_locks().await.unwrap().is_empty());
    verify_with_restic(repo.location(), &files, 1);

    // a live exclusive lock: backup waits the bounded time, then fails clearly
    let held = repo.lock(true).await.unwrap();
    let out = restic(
        repo.location(),
        &["backup", "--stdin", "--stdin-filename", "y"],
    );
    assert!(
        !out.status.success(),
        "restic must see kstash's exclusive lock"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("locked exclusively"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t0 = Instant::now();
    let wait = Duration::from_millis(1500);
    let err = repo
        .clone()
        .with_lock_wait(wait)
        .begin_backup(BackupOptions::default())
        .await
        .unwrap_err();
    assert!(t0.elapsed() >= wait);
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    assert!(err.to_string().contains("exclusive lock by"), "{err}");
    held.release().await.unwrap();
    backup_files(&quick, &files).await.unwrap();
    assert_eq!(repo.unlock(false).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_server_paused_mid_backup_then_recovers() {
    // A dedicated server: pausing it (SIGSTOP) must not disturb the other tests. moto keeps
    // its data in memory, so "stopped" is simulated by freezing the process, not killing it.
    let moto = Moto::start();
    let opts = ConnectOptions {
        timeout: Duration::from_secs(3),
        io_timeout: Duration::from_secs(2),
        retries: 1,
        ..ConnectOptions::default()
    };
    let storage = s3_storage(&moto, "faults", &opts);
    let repo = storage
        .repository("es")
        .unwrap()
        .component("frequent-backup", "dump", PASSWORD)
        .unwrap();
    let location = repo.location().to_string();
    let files = es_files(20, &[2 << 20]);
    backup_files(&repo, &files).await.unwrap();

    let b = repo.begin_backup(BackupOptions::default()).await.unwrap();
    let mut w = b.create_file("/logs.json").await.unwrap();
    w.write(&ndjson(21, 1 << 20)).await.unwrap();
    moto.signal("-STOP");
    let t0 = Instant::now();
    // Blobs are packed and uploaded in 16 MiB packs, so the stalled upload surfaces at the
    // next write/finish naming the stream, or at the latest at commit naming the pack.
    let res = tokio::time::timeout(Duration::from_secs(90), async {
        for i in 0..64u64 {
            w.write(&ndjson(100 + i, 1 << 20)).await?;
        }
        w.finish().await?;
        b.commit().await
    })
    .await
    .expect("a stalled storage must fail within the timeouts, not hang");
    let err = res.unwrap_err();
    println!(
        "backup with paused S3 failed after {:?}: {err}",
        t0.elapsed()
    );
    let msg = err.to_string();
    assert!(
        msg.contains("/logs.json") || msg.contains("upload pack"),
        "{err}"
    );
    moto.signal("-CONT");

    verify_with_restic(&location, &files, 1);
    let again = es_files(30, &[3 << 20, 1000]);
    backup_files(&repo, &again).await.unwrap();
    verify_with_restic(&location, &again, 2);
}

#[tokio::test]
async fn storage_errors_name_the_storage_and_the_key() {
    let v = serde_json::json!({"provider": "s3", "s3": {"endpoint": "http://127.0.0.1:9", "bucket": "b", "secretName": "s"}});
    let secrets = BTreeMap::from([("AWS_ACCESS_KEY_ID".to_string(), "a".to_string())]);
    let cfg = StorageConfig::from_spec_storage("demo/s3", v.clone(), secrets).unwrap();
    let e = Storage::connect(cfg).unwrap_err().to_string();
    assert_eq!(
        e,
        "storage demo/s3: secret is missing key `AWS_SECRET_ACCESS_KEY`"
    );

    let cfg = StorageConfig::from_spec_storage("demo/s3", v, s3_secrets()).unwrap();
    assert!(matches!(cfg.provider, Provider::S3 { .. }));
    let opts = ConnectOptions {
        timeout: Duration::from_secs(2),
        io_timeout: Duration::from_secs(2),
        retries: 0,
        ..ConnectOptions::default()
    };
    let st = Storage::connect_with(cfg, &opts).unwrap();
    let e = st.verify().await.unwrap_err().to_string();
    assert!(e.starts_with("storage demo/s3: list"), "{e}");

    // A local storage whose volume is not mounted is refused, naming the field; nothing is
    // created in its place.
    let tmp = TempDir::new("unmounted");
    let missing = tmp.0.join("not-mounted");
    let v =
        serde_json::json!({"provider": "local", "local": {"mountPath": missing.to_str().unwrap()}});
    let cfg = StorageConfig::from_spec_storage("demo/local-storage", v, BTreeMap::new()).unwrap();
    let e = Storage::connect(cfg)
        .map(|_| ())
        .expect_err("an unmounted volume is refused")
        .to_string();
    assert!(
        e.contains("spec.storage.local.mountPath") && e.contains("is not a directory"),
        "{e}"
    );
    assert!(
        !missing.exists(),
        "nothing is created in place of the volume"
    );

    let tmp = TempDir::new("pw");
    let e = local_storage(&tmp.0)
        .repository("es")
        .unwrap()
        .component("s", "c", "")
        .unwrap_err()
        .to_string();
    assert!(e.contains("RESTIC_PASSWORD"), "{e}");
}
