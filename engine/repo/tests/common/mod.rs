//! What the repository tests share: NDJSON that looks like an Elasticsearch dump, writing files
//! into a backup (streams interleaved, some from other tasks, as an addon writes them), reading a
//! snapshot back, and comparing without dumping megabytes on failure.
//!
//! Use it from a test binary with `mod common;` (file `tests/common/mod.rs`).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write as _;

use kstash_repo::{BackupOptions, BackupSummary, ResticRepo, Storage};
use tokio::io::AsyncReadExt;

/// `len` bytes of Elasticsearch-dump-like NDJSON, the same for the same `seed`.
pub fn ndjson(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let words = [
        "error", "warning", "info", "request", "response", "user", "order", "payment", "cache",
        "miss", "hit", "database", "query", "slow", "latency", "backend", "snapshot", "backup",
    ];
    let mut out = Vec::with_capacity(len + 512);
    while out.len() < len {
        let n = next();
        let msg: Vec<&str> = (0..6 + (n % 10) as usize)
            .map(|i| words[((n >> (i * 4)) % words.len() as u64) as usize])
            .collect();
        writeln!(
            out,
            "{{\"_index\":\"logs-2026.11\",\"_id\":\"{:016x}{:016x}\",\"_source\":{{\"level\":\"INFO\",\"host\":\"node-{:02}\",\"latency_ms\":{},\"msg\":\"{}\"}}}}",
            n,
            next(),
            n % 40,
            n % 5000,
            msg.join(" ")
        )
        .unwrap();
    }
    out.truncate(len);
    out
}

/// Backs `files` up into one snapshot of `repo` as an addon would: half the streams written
/// from other tasks, the other half interleaved in 300 kB writes.
pub async fn backup_files(
    repo: &ResticRepo,
    files: &BTreeMap<String, Vec<u8>>,
) -> kstash_repo::Result<kstash_repo::BackupSummary> {
    let b = repo.begin_backup(BackupOptions::default()).await?;
    let entries: Vec<(&String, &Vec<u8>)> = files.iter().collect();
    let half = entries.len().div_ceil(2);
    let mut handles = vec![];
    for (path, data) in &entries[half..] {
        let mut w = b.create_file(path).await?;
        let data = (*data).clone();
        handles.push(tokio::spawn(async move {
            for c in data.chunks(100_000) {
                w.write(c).await?;
            }
            w.finish().await
        }));
    }
    let mut ws = vec![];
    for (path, _) in &entries[..half] {
        ws.push(b.create_file(path).await?);
    }
    let mut off = 0;
    loop {
        let mut any = false;
        for (w, (_, data)) in ws.iter_mut().zip(&entries[..half]) {
            if off < data.len() {
                let end = (off + 300_000).min(data.len());
                w.write(&data[off..end]).await?;
                any = true;
            }
        }
        if !any {
            break;
        }
        off += 300_000;
    }
    for w in ws {
        w.finish().await?;
    }
    for h in handles {
        h.await.unwrap()?;
    }
    b.commit().await
}

/// Every file of `snapshot`, read back through the restore streams.
pub async fn restore_all(repo: &ResticRepo, snapshot: &str) -> BTreeMap<String, Vec<u8>> {
    let r = repo.open_snapshot(snapshot).await.unwrap();
    let mut out = BTreeMap::new();
    for f in r.files().await.unwrap() {
        let mut rd = r.open(&f.path).await.unwrap();
        let mut buf = vec![];
        rd.read_to_end(&mut buf).await.unwrap();
        assert_eq!(buf.len() as u64, f.size);
        out.insert(f.path, buf);
    }
    out
}

/// Compares restored files without dumping megabytes on failure.
pub fn assert_same_files(got: &BTreeMap<String, Vec<u8>>, want: &BTreeMap<String, Vec<u8>>) {
    let summary = |m: &BTreeMap<String, Vec<u8>>| {
        m.iter()
            .map(|(k, v)| (k.clone(), v.len()))
            .collect::<Vec<_>>()
    };
    assert_eq!(summary(got), summary(want), "restored paths/sizes differ");
    for (k, v) in want {
        assert!(got[k] == *v, "restored content of {k} differs");
    }
}

/// On `storage`: the layout files (`metadata.yaml`, `es/repository.yaml`), component
/// `frequent-backup/dump` of directory `es` (its location must be `location`), a backup of two
/// streams, restored byte-identically from `latest`, and `check --read-data`. Returns the
/// component, the files and the backup's summary.
pub async fn layout_backup_restore_check(
    storage: &Storage,
    location: &str,
) -> (ResticRepo, BTreeMap<String, Vec<u8>>, BackupSummary) {
    storage.verify().await.unwrap();
    storage.initialize(b"kind: BackendMeta\n").await.unwrap();
    let dir = storage.repository("es").unwrap();
    dir.initialize(b"kind: Repository\n").await.unwrap();
    let repo = dir.component("frequent-backup", "dump", "pw").unwrap();
    assert_eq!(repo.location(), location);

    let files = BTreeMap::from([
        ("/logs.json".to_string(), ndjson(1, 3 << 20)),
        ("/users.json".to_string(), ndjson(2, 100_000)),
    ]);
    let sum = backup_files(&repo, &files).await.unwrap();
    assert_eq!(sum.files, 2);
    assert_eq!(sum.bytes_processed, (3 << 20) + 100_000);

    let latest = repo.open_snapshot("latest").await.unwrap();
    assert_eq!(latest.snapshot().id, sum.snapshot_id);
    assert_same_files(&restore_all(&repo, "latest").await, &files);
    let check = repo.check(true).await.unwrap();
    assert!(check.ok, "{:?}", check.findings);
    (repo, files, sum)
}
