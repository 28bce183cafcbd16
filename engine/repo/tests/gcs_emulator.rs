//! kstash-repo on Google Cloud Storage's JSON API, against `gcp-storage-emulator` (PyPI, pure
//! Python, installed by `scripts/ensure-tools.sh gcs`) on loopback: the layout files, a
//! two-stream backup, a byte-identical restore, `check --read-data`, a second backup that
//! deduplicates, forget + prune, and locks released.
//!
//! The emulator does not authenticate by itself, so the main test's storage is anonymous (empty
//! `secretName`: opendal sends unsigned requests). For the operator's workload identity the
//! launcher makes it authenticate as GCS does: every request needs `Authorization: Bearer
//! <token>` with the one token the test issues, else `401` with GCS's error body. Google's token
//! issuers cannot run here: the GKE metadata server and Google's STS are stand-ins answering
//! as Google documents them (the metadata server demands `Metadata-Flavor: Google`; STS checks
//! the token-exchange form). The service-account key path (`GOOGLE_SERVICE_ACCOUNT_JSON_KEY`, a
//! signed JWT exchanged with Google) is not exercised. restic 0.14 cannot be pointed at a custom
//! GCS endpoint, so restic does not verify here; the format is verified by restic on local disk
//! and S3 in `restic_interop.rs`.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use kstash_repo::{ConnectOptions, GcpIdentity, GkeMetadata, Storage, StorageConfig};
use kstash_testkit::http::{HttpServer, Method, StatusCode};
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
import json, os
from gcp_storage_emulator import server
required = os.environ.get("KSTASH_TEST_BEARER")
if required:
    def _authenticated(handle):
        def check(self):
            auth = self.headers.get("Authorization") or ""
            if auth == "Bearer " + required:
                return handle(self)
            msg = ("Anonymous caller does not have storage.objects.list access to the Google Cloud Storage bucket."
                   if not auth else "Invalid Credentials")
            body = json.dumps({"error": {"code": 401, "message": msg,
                                         "errors": [{"message": msg, "domain": "global", "reason": "required"}]}}).encode()
            self.send_response(401)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        return check
    for m in ("do_GET", "do_POST", "do_PUT", "do_DELETE", "do_PATCH"):
        setattr(server.RequestHandler, m, _authenticated(getattr(server.RequestHandler, m)))
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
        Self::spawn(bucket, None)
    }

    /// Requests must carry `Authorization: Bearer <token>`.
    fn start_authenticated(bucket: &str, token: &str) -> GcsEmulator {
        Self::spawn(bucket, Some(token))
    }

    fn spawn(bucket: &str, bearer: Option<&str>) -> GcsEmulator {
        // The emulator's own entry point must be there (scripts/ensure-tools.sh gcs).
        tool(".tools/gcs-venv/bin/gcp-storage-emulator");
        let port = free_port();
        let child = ChildGuard::spawn_listening(
            "gcp-storage-emulator",
            Command::new(tool(".tools/gcs-venv/bin/python"))
                .args(["-c", LAUNCHER])
                .args(["start", "--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--in-memory", "--default-bucket", bucket, "--quiet"])
                .env("KSTASH_TEST_BEARER", bearer.unwrap_or(""))
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

/// The access token the stand-in issuers give and the authenticating emulator accepts.
const ACCESS_TOKEN: &str = "ya29.c.kstash-test-access-token";

/// A GCS storage with no storage Secret, reached with `identity`.
fn identity_storage(emu: &GcsEmulator, bucket: &str, identity: GcpIdentity) -> Storage {
    let spec = serde_json::json!({
        "provider": "gcs",
        "gcs": { "bucket": bucket, "prefix": "wi/", "endpoint": emu.endpoint() }
    });
    let opts = ConnectOptions {
        gcp_identity: identity,
        retries: 0,
        ..ConnectOptions::default()
    };
    let cfg = StorageConfig::from_spec_storage("demo/gcs-wi", spec, BTreeMap::new()).unwrap();
    Storage::connect_with(cfg, &opts).unwrap()
}

/// The stand-in for the GKE metadata server: the token of the pod's Google service account,
/// only to requests with `Metadata-Flavor: Google` (as the real one demands); `enabled: false`
/// answers as a node pool without Workload Identity for this account does (404).
async fn gke_metadata(enabled: bool) -> HttpServer {
    HttpServer::start(move |req| async move {
        let flavor = req
            .headers
            .get("metadata-flavor")
            .and_then(|v| v.to_str().ok());
        if flavor != Some("Google") {
            return (
                StatusCode::FORBIDDEN,
                "Missing Metadata-Flavor:Google header.".into(),
            );
        }
        let path = "/computeMetadata/v1/instance/service-accounts/default/token";
        if !enabled || req.method != Method::GET || req.path != path {
            return (StatusCode::NOT_FOUND, "Not Found".into());
        }
        if !req.query.contains("devstorage.read_write") {
            return (
                StatusCode::BAD_REQUEST,
                format!("scope: {}", req.query).into(),
            );
        }
        let body = serde_json::json!({
            "access_token": ACCESS_TOKEN, "expires_in": 3599, "token_type": "Bearer"
        });
        (StatusCode::OK, body.to_string().into())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gke_workload_identity_backs_up_without_a_secret() {
    let emu = GcsEmulator::start_authenticated("kstash", ACCESS_TOKEN);
    let metadata = gke_metadata(true).await;
    let gke = |m: &HttpServer| {
        GcpIdentity::Gke(GkeMetadata {
            host: m.url.trim_start_matches("http://").to_string(),
        })
    };
    let storage = identity_storage(&emu, "kstash", gke(&metadata));
    let (repo, _, _) = layout_backup_restore_check(
        &storage,
        "gs:kstash:/wi/es/repository/v1/frequent-backup/dump",
    )
    .await;
    assert!(repo.list_locks().await.unwrap().is_empty());

    // Unsigned requests are refused by the authenticating emulator, as by GCS.
    let anonymous = identity_storage(&emu, "kstash", GcpIdentity::Anonymous);
    let e = anonymous.verify().await.unwrap_err().to_string();
    assert!(
        e.contains("demo/gcs-wi") && e.contains("Anonymous caller"),
        "{e}"
    );

    // Workload Identity not enabled: the error names the metadata server and what to fix.
    let disabled = gke_metadata(false).await;
    let storage = identity_storage(&emu, "kstash", gke(&disabled));
    let e = storage.verify().await.unwrap_err().to_string();
    assert!(
        e.contains("GKE metadata server") && e.contains("iam.gke.io/gcp-service-account"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_identity_federation_backs_up_without_a_secret() {
    let emu = GcsEmulator::start_authenticated("kstash", ACCESS_TOKEN);
    let dir = tempfile::tempdir().unwrap();
    let subject = "eyJhbGciOiJSUzI1NiJ9.projected-service-account-token.sig";
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, subject).unwrap();
    let audience = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/k8s/providers/cluster";
    // Google's STS: the token exchange of RFC 8693 as Google's STS takes it.
    let sts = HttpServer::start(move |req| async move {
        let form: BTreeMap<String, String> = form_urlencoded::parse(&req.body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let expected = [
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            (
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            ("audience", audience),
            ("subject_token", subject),
        ];
        let wrong: Vec<&str> = expected
            .iter()
            .filter(|(k, v)| form.get(*k).map(String::as_str) != Some(*v))
            .map(|(k, _)| *k)
            .collect();
        if req.path != "/v1/token" || !wrong.is_empty() {
            let body = serde_json::json!({
                "error": "invalid_grant",
                "error_description": format!("wrong fields: {wrong:?}"),
            });
            return (StatusCode::BAD_REQUEST, body.to_string().into());
        }
        let body = serde_json::json!({
            "access_token": ACCESS_TOKEN,
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "token_type": "Bearer", "expires_in": 3600,
        });
        (StatusCode::OK, body.to_string().into())
    })
    .await;
    let config = dir.path().join("credential-configuration.json");
    let write_config = |source: serde_json::Value| {
        let cfg = serde_json::json!({
            "type": "external_account",
            "audience": audience,
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": format!("{}/v1/token", sts.url),
            "credential_source": source,
        });
        std::fs::write(&config, cfg.to_string()).unwrap();
    };
    write_config(serde_json::json!({ "file": token_file, "format": { "type": "text" } }));
    let storage = identity_storage(&emu, "kstash", GcpIdentity::Federation(config.clone()));
    let (repo, _, _) = layout_backup_restore_check(
        &storage,
        "gs:kstash:/wi/es/repository/v1/frequent-backup/dump",
    )
    .await;
    assert!(repo.list_locks().await.unwrap().is_empty());
    assert!(
        !sts.uploads.lock().unwrap().is_empty(),
        "the projected token was never exchanged"
    );

    // A source that reads the node's identity is refused before any request, naming the file.
    write_config(serde_json::json!({
        "environment_id": "aws1", "region_url": "http://169.254.169.254/latest/meta-data/placement/availability-zone"
    }));
    let spec = serde_json::json!({
        "provider": "gcs",
        "gcs": { "bucket": "kstash", "prefix": "wi/", "endpoint": emu.endpoint() }
    });
    let opts = ConnectOptions {
        gcp_identity: GcpIdentity::Federation(config.clone()),
        ..ConnectOptions::default()
    };
    let cfg = StorageConfig::from_spec_storage("demo/gcs-wi", spec, BTreeMap::new()).unwrap();
    let e = Storage::connect_with(cfg, &opts).unwrap_err().to_string();
    assert!(
        e.contains("spec.storage.gcs.secretName")
            && e.contains("credential-configuration.json")
            && e.contains("node's identity"),
        "{e}"
    );
}
