//! kstash-repo on Google Cloud Storage's JSON API, against `gcp-storage-emulator` (PyPI, pure
//! Python, installed by `scripts/ensure-tools.sh gcs`) on loopback: the layout files, a
//! two-stream backup, a byte-identical restore, `check --read-data`, a second backup that
//! deduplicates, forget + prune, and locks released.
//!
//! The emulator does not authenticate, so the storage is anonymous (empty `secretName`: opendal
//! sends unsigned requests); the service-account path (`GOOGLE_SERVICE_ACCOUNT_JSON_KEY`, an
//! OAuth token exchange with Google) is not exercised. restic 0.14 cannot be pointed at a custom
//! GCS endpoint, so restic does not verify here; the format is verified by restic on local disk
//! and S3 in `restic_interop.rs`.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use kstash_repo::{Storage, StorageConfig};
use kstash_testkit::{free_port, tool, ChildGuard};

mod common;
use common::{backup_files, layout_backup_restore_check};

/// Starts the emulator with one fidelity fix: an object uploaded without a `Content-Type`
/// gets `application/octet-stream`, as on GCS (the emulator stores `null`, which GCS never
/// returns and opendal's response parser rejects: "invalid type: null, expected a string").
const LAUNCHER: &str = r#"
import sys
from gcp_storage_emulator.handlers import objects
_make = objects._make_object_resource
def _with_default_type(base_url, bucket, name, content_type, length, metadata=None):
    return _make(base_url, bucket, name, content_type or "application/octet-stream", length, metadata)
objects._make_object_resource = _with_default_type
from gcp_storage_emulator.__main__ import main
sys.exit(main(sys.argv[1:]))
"#;

/// gcp-storage-emulator on a free loopback port, in memory, with one bucket; killed on drop.
struct GcsEmulator {
    _child: ChildGuard,
    port: u16,
}

impl GcsEmulator {
    fn start(bucket: &str) -> GcsEmulator {
        // The emulator's own entry point must be there (scripts/ensure-tools.sh gcs).
        tool(".tools/gcs-venv/bin/gcp-storage-emulator");
        let port = free_port();
        let child = ChildGuard::spawn_listening(
            "gcp-storage-emulator",
            Command::new(tool(".tools/gcs-venv/bin/python"))
                .args(["-c", LAUNCHER])
                .args(["start", "--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--in-memory", "--default-bucket", bucket, "--quiet"])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            port,
            Duration::from_secs(60),
        );
        GcsEmulator {
            _child: child,
            port,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn gcs_storage(emu: &GcsEmulator, bucket: &str) -> Storage {
    let spec = serde_json::json!({
        "provider": "gcs",
        "gcs": {
            "bucket": bucket,
            "prefix": "demo/",
            "endpoint": emu.endpoint(),
        }
    });
    Storage::connect(
        StorageConfig::from_spec_storage("demo/gcs-storage", spec, BTreeMap::new()).unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_emulator_backup_restore_check_dedup_prune() {
    let emu = GcsEmulator::start("kstash");
    let storage = gcs_storage(&emu, "kstash");
    let (repo, files, first) = layout_backup_restore_check(
        &storage,
        "gs:kstash:/demo/es/repository/v1/frequent-backup/dump",
    )
    .await;

    // The same streams again: no data is stored a second time (only the new trees).
    let second = backup_files(&repo, &files).await.unwrap();
    assert!(
        second.bytes_added_raw < 4096,
        "second backup re-added {} B",
        second.bytes_added_raw
    );
    assert_eq!(repo.snapshots().await.unwrap().len(), 2);

    // Forget the first snapshot and prune: listing and deleting objects work too.
    repo.forget_and_prune(std::slice::from_ref(&first.snapshot_id))
        .await
        .unwrap();
    let left = repo.snapshots().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, second.snapshot_id);
    let check = repo.check(true).await.unwrap();
    assert!(check.ok, "{:?}", check.findings);
    assert!(repo.list_locks().await.unwrap().is_empty());
}
