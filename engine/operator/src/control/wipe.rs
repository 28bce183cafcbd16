//! `WipeOut`: deleting a Repository's data from its storage.
//!
//! kstash-repo lists files one directory level at a time, so the restic layout is walked
//! explicitly: `config`, `keys/`, `index/`, `snapshots/`, `locks/`, `data/00..ff/` of every
//! component repository, then `snapshots/*.yaml` and `repository.yaml` of the Repository.

use kstash_repo::Storage;

/// Deletes every file of the restic repository at `<dir>/<component_path>`.
async fn wipe_restic(storage: &Storage, base: &str) -> kstash_repo::Result<usize> {
    let mut n = 0;
    let mut dirs: Vec<String> = ["keys", "index", "snapshots", "locks"]
        .iter()
        .map(|d| format!("{base}/{d}"))
        .collect();
    dirs.extend((0..=255u8).map(|b| format!("{base}/data/{b:02x}")));
    dirs.push(base.to_string());
    for d in dirs {
        for f in storage.list_names(&d).await? {
            storage.delete(&format!("{d}/{f}")).await?;
            n += 1;
        }
    }
    Ok(n)
}

/// Deletes a Repository directory's files: the restic repositories at `component_paths`
/// (relative to the directory, e.g. `repository/v1/frequent-backup/dump`), the Snapshot YAML
/// copies and `repository.yaml`. Returns the number of files deleted.
pub async fn wipe_repository(
    storage: &Storage,
    dir: &str,
    component_paths: &[String],
) -> kstash_repo::Result<usize> {
    let dir = dir.trim_matches('/');
    let mut n = 0;
    for p in component_paths {
        n += wipe_restic(storage, &format!("{dir}/{}", p.trim_matches('/'))).await?;
    }
    for d in [format!("{dir}/snapshots"), dir.to_string()] {
        for f in storage.list_names(&d).await? {
            storage.delete(&format!("{d}/{f}")).await?;
            n += 1;
        }
    }
    Ok(n)
}
