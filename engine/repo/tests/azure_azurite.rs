//! kstash-repo on Azure Blob storage, against Azurite (Microsoft's emulator, from npm) on
//! loopback: kstash writes, kstash reads back byte-identically, `check --read-data` passes.
//! (restic 0.14 cannot be pointed at a custom Azure endpoint, so restic does not verify here;
//! the format itself is verified by restic on local disk and S3 in `restic_interop.rs`.)

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use kstash_repo::{Storage, StorageConfig};
use kstash_testkit::{free_port, tool, ChildGuard};

mod common;
use common::layout_backup_restore_check;

/// Azurite's well-known development account and key.
const ACCOUNT: &str = "devstoreaccount1";
const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Azurite's blob service on a free loopback port, in memory, killed on drop.
struct Azurite {
    _child: ChildGuard,
    port: u16,
}

impl Azurite {
    fn start() -> Azurite {
        let port = free_port();
        let child = ChildGuard::spawn_listening(
            "azurite-blob",
            Command::new(tool(".tools/node/node_modules/.bin/azurite-blob"))
                .args([
                    "--blobHost",
                    "127.0.0.1",
                    "--blobPort",
                    &port.to_string(),
                    "--inMemoryPersistence",
                    "--skipApiVersionCheck",
                    "--disableTelemetry",
                    "--silent",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            port,
            Duration::from_secs(60),
        );
        Azurite {
            _child: child,
            port,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    /// Creates a container with a SharedKey-signed request (python stdlib, no SDK).
    fn create_container(&self, name: &str) {
        let script = r#"
import base64, email.utils, hashlib, hmac, sys, urllib.request
port, acct, key, name = sys.argv[1:5]
date = email.utils.formatdate(usegmt=True)
ver = "2021-08-06"
sts = "PUT\n\n\n\n\napplication/octet-stream\n" + "\n" * 6 + f"x-ms-date:{date}\nx-ms-version:{ver}\n/{acct}/{acct}/{name}\nrestype:container"
sig = base64.b64encode(hmac.new(base64.b64decode(key), sts.encode(), hashlib.sha256).digest()).decode()
req = urllib.request.Request(f"http://127.0.0.1:{port}/{acct}/{name}?restype=container", data=b"", method="PUT",
    headers={"Content-Type": "application/octet-stream", "x-ms-date": date, "x-ms-version": ver, "Authorization": f"SharedKey {acct}:{sig}"})
print(urllib.request.urlopen(req).status)
"#;
        let py = tool(".tools/venv/bin/python");
        let out = Command::new(&py)
            .args(["-c", script, &self.port.to_string(), ACCOUNT, KEY, name])
            .output()
            .unwrap_or_else(|e| panic!("{}: {e} — run scripts/ensure-tools.sh", py.display()));
        assert!(
            out.status.success(),
            "creating container {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn azure_storage(az: &Azurite, container: &str, key: &str) -> Storage {
    let spec = serde_json::json!({
        "provider": "azure",
        "azure": {
            "storageAccount": ACCOUNT,
            "container": container,
            "prefix": "demo/",
            "secretName": "azure-secret",
            "endpoint": az.endpoint(),
        }
    });
    let secrets = BTreeMap::from([("AZURE_ACCOUNT_KEY".to_string(), key.to_string())]);
    Storage::connect(StorageConfig::from_spec_storage("demo/azure-storage", spec, secrets).unwrap())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azurite_backup_restore_check_and_bad_key() {
    let az = Azurite::start();
    az.create_container("kstash");
    let storage = azure_storage(&az, "kstash", KEY);
    let (repo, _, _) = layout_backup_restore_check(
        &storage,
        "azure:kstash:/demo/es/repository/v1/frequent-backup/dump",
    )
    .await;
    assert!(repo.list_locks().await.unwrap().is_empty());

    // A wrong account key is refused by the service, and the error names the storage.
    let bad = azure_storage(&az, "kstash", "AAAA");
    let e = bad.verify().await.unwrap_err().to_string();
    assert!(e.contains("demo/azure-storage"), "{e}");
}
