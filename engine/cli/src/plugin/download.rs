//! `kstash download <snapshot> [--destination DIR] [--components a,b]`: restores the files of
//! each component of a Snapshot (its restic snapshots, `status.components.<c>.resticStats[].id`,
//! in `<repo.spec.path>/<component.path>`) to `DIR/<snapshot>/<component>/…`, with a progress
//! bar (spec §10).

use std::path::{Component as PathComponent, Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use kstash_api::storage::Snapshot;
use kstash_repo::{FileEntry, SnapshotReader};
use tokio::io::AsyncWriteExt;

use super::cluster::{get, KubeArgs};
use super::storage;

/// Arguments of `download`.
#[derive(Args)]
pub struct DownloadArgs {
    /// Snapshot name.
    pub snapshot: String,
    /// Local directory; files go to `<destination>/<snapshot>/<component>/`.
    #[arg(long, default_value = ".")]
    pub destination: PathBuf,
    /// Components to download (comma-separated; default: all).
    #[arg(long, value_delimiter = ',')]
    pub components: Vec<String>,
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// The local path of snapshot file `path` below `base` (no absolute or `..` components).
pub fn local_path(base: &Path, path: &str) -> Result<PathBuf> {
    let rel = Path::new(path.trim_start_matches('/'));
    let mut out = base.to_path_buf();
    for c in rel.components() {
        match c {
            PathComponent::Normal(p) => out.push(p),
            PathComponent::CurDir => {}
            _ => bail!("refusing unsafe path {path:?} in the snapshot"),
        }
    }
    if out == base {
        bail!("refusing empty path {path:?} in the snapshot");
    }
    Ok(out)
}

/// Checks that a Snapshot's component name (from its status, written by whoever can write
/// Snapshots) is a plain name: it becomes a directory below the destination, so no separator, no
/// `.`/`..`, no NUL, not empty.
pub fn plain_component_name(snapshot: &str, name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
        bail!(
            "snapshot {snapshot}: status.components key {name:?} is not a plain name (it would \
             become a directory below --destination); refusing to download"
        );
    }
    Ok(())
}

/// One restic snapshot of a component, opened, with its files.
struct Part {
    component: String,
    reader: SnapshotReader,
    files: Vec<FileEntry>,
}

/// Runs `download`.
pub async fn run(args: DownloadArgs) -> Result<()> {
    let cluster = args.kube.connect().await?;
    let ns = cluster.namespace.clone();
    let snap: Snapshot = get(&cluster.api(&ns), "snapshot", &ns, &args.snapshot).await?;
    let full = format!("{ns}/{}", args.snapshot);
    let repo_name = snap
        .spec
        .repository
        .as_deref()
        .filter(|r| !r.is_empty())
        .with_context(|| format!("snapshot {full}: spec.repository is not set"))?;
    let components = snap
        .status
        .as_ref()
        .map(|s| s.components.clone())
        .unwrap_or_default();
    if components.is_empty() {
        bail!("snapshot {full} has no components in its status (backup not finished?)");
    }
    for c in &args.components {
        if !components.contains_key(c) {
            bail!(
                "snapshot {full} has no component {c:?} (its components: {})",
                components.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
    let repo = storage::open(&cluster, &ns, repo_name)
        .await
        .with_context(|| format!("snapshot {full}"))?;

    // Open every restic snapshot first: the total size drives the progress bar.
    let mut parts = Vec::new();
    for name in components.keys() {
        plain_component_name(&full, name)?;
    }
    for (name, comp) in &components {
        if !args.components.is_empty() && !args.components.contains(name) {
            continue;
        }
        let path = comp
            .path
            .as_deref()
            .with_context(|| format!("snapshot {full}: component {name} has no path"))?;
        let ids: Vec<&str> = comp
            .restic_stats
            .iter()
            .filter_map(|s| s.id.as_deref())
            .collect();
        if ids.is_empty() {
            bail!("snapshot {full}: component {name} has no resticStats id (backup not finished?)");
        }
        let restic = repo.component(path)?;
        for id in ids {
            let reader = restic
                .open_snapshot(id)
                .await
                .with_context(|| format!("snapshot {full}: component {name}"))?;
            let files = reader.files().await?;
            parts.push(Part {
                component: name.clone(),
                reader,
                files,
            });
        }
    }

    let total: u64 = parts.iter().flat_map(|p| &p.files).map(|f| f.size).sum();
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let root = args.destination.join(&args.snapshot);
    let mut count = 0usize;
    for part in &parts {
        let base = root.join(&part.component);
        for f in &part.files {
            bar.set_message(format!("{}{}", part.component, f.path));
            let dest = local_path(&base, &f.path)?;
            if let Some(dir) = dest.parent() {
                tokio::fs::create_dir_all(dir)
                    .await
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            let mut out = tokio::fs::File::create(&dest)
                .await
                .with_context(|| format!("creating {}", dest.display()))?;
            let mut r = part.reader.open(&f.path).await?;
            while let Some(block) = r
                .next_block()
                .await
                .with_context(|| format!("snapshot {full}: reading {}", f.path))?
            {
                out.write_all(&block)
                    .await
                    .with_context(|| format!("writing {}", dest.display()))?;
                bar.inc(block.len() as u64);
            }
            out.flush().await?;
            count += 1;
        }
    }
    bar.finish_and_clear();
    println!(
        "snapshot {full}: downloaded {count} file(s), {total} bytes to {}",
        root.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn component_names_must_be_plain() {
        for bad in ["", ".", "..", "../etc", "a/b", "/abs", "a\\b", "a\0b"] {
            let e = super::plain_component_name("demo/snap", bad).unwrap_err();
            assert!(e.to_string().contains("not a plain name"), "{bad:?}: {e}");
        }
        for good in ["dump", "es-quickstart", "manifest.v1", "data_0"] {
            super::plain_component_name("demo/snap", good).unwrap();
        }
    }

    use super::*;

    #[test]
    fn local_paths_stay_below_the_destination() {
        let base = Path::new("/tmp/out/dump");
        assert_eq!(
            local_path(base, "/logs.json").unwrap(),
            Path::new("/tmp/out/dump/logs.json")
        );
        assert_eq!(
            local_path(base, "/a/b.json").unwrap(),
            Path::new("/tmp/out/dump/a/b.json")
        );
        assert!(local_path(base, "/../etc/passwd").is_err());
        assert!(local_path(base, "/").is_err());
    }
}
