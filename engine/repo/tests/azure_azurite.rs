//! kstash-repo on Azure Blob storage, against Azurite (Microsoft's emulator, from npm) on
//! loopback: kstash writes, kstash reads back byte-identically, `check --read-data` passes.
//! (restic 0.14 cannot be pointed at a custom Azure endpoint, so restic does not verify here;
//! the format itself is verified by restic on local disk and S3 in `restic_interop.rs`.)
//!
//! Azure Workload Identity is tested against Azurite's OAuth mode (HTTPS, bearer tokens whose
//! issuer, audience and lifetime it checks). Microsoft Entra ID cannot run here: its token
//! endpoint is a stand-in that checks the federated-credential exchange as Entra ID documents it
//! (client id, client assertion = the projected token, assertion type, scope, grant type) and
//! issues a token of the shape Entra ID issues for storage.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use kstash_repo::{AzureIdentity, AzureWorkload, ConnectOptions, Storage, StorageConfig};
use kstash_testkit::http::{HttpServer, StatusCode};
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
    /// With OAuth: the CA of its HTTPS certificate (PEM) and the directory holding it.
    tls: Option<(String, tempfile::TempDir)>,
}

impl Azurite {
    /// Plain HTTP, SharedKey only.
    fn start() -> Azurite {
        Self::spawn(None)
    }

    /// HTTPS with OAuth (`--oauth basic`): bearer tokens are accepted when their issuer,
    /// audience and lifetime are Entra ID's for storage.
    fn start_oauth() -> Azurite {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = kstash_testkit::tls::certificates(dir.path());
        Self::spawn(Some((cert, key, ca, dir)))
    }

    fn spawn(
        tls: Option<(
            std::path::PathBuf,
            std::path::PathBuf,
            std::path::PathBuf,
            tempfile::TempDir,
        )>,
    ) -> Azurite {
        let port = free_port();
        let mut cmd = Command::new(tool(".tools/node/node_modules/.bin/azurite-blob"));
        cmd.args([
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &port.to_string(),
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--silent",
        ]);
        if let Some((cert, key, _, _)) = &tls {
            cmd.args(["--oauth", "basic", "--cert"])
                .arg(cert)
                .arg("--key")
                .arg(key);
        }
        let child = ChildGuard::spawn_listening(
            "azurite-blob",
            cmd.stdout(Stdio::null()).stderr(Stdio::null()),
            port,
            Duration::from_secs(60),
        );
        Azurite {
            _child: child,
            port,
            tls: tls.map(|(_, _, ca, dir)| (std::fs::read_to_string(ca).unwrap(), dir)),
        }
    }

    fn scheme(&self) -> &str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    fn endpoint(&self) -> String {
        format!("{}://127.0.0.1:{}/{ACCOUNT}", self.scheme(), self.port)
    }

    /// Creates a container with a SharedKey-signed request (python stdlib, no SDK).
    fn create_container(&self, name: &str) {
        let script = r#"
import base64, email.utils, hashlib, hmac, sys, urllib.request
import ssl
scheme, port, acct, key, name, ca = sys.argv[1:7]
ctx = ssl.create_default_context(cafile=ca) if scheme == "https" else None
date = email.utils.formatdate(usegmt=True)
ver = "2021-08-06"
sts = "PUT\n\n\n\n\napplication/octet-stream\n" + "\n" * 6 + f"x-ms-date:{date}\nx-ms-version:{ver}\n/{acct}/{acct}/{name}\nrestype:container"
sig = base64.b64encode(hmac.new(base64.b64decode(key), sts.encode(), hashlib.sha256).digest()).decode()
req = urllib.request.Request(f"{scheme}://127.0.0.1:{port}/{acct}/{name}?restype=container", data=b"", method="PUT",
    headers={"Content-Type": "application/octet-stream", "x-ms-date": date, "x-ms-version": ver, "Authorization": f"SharedKey {acct}:{sig}"})
print(urllib.request.urlopen(req, context=ctx).status)
"#;
        let py = tool(".tools/venv/bin/python");
        let ca = match &self.tls {
            Some((_, dir)) => dir.path().join("ca.crt").display().to_string(),
            None => String::new(),
        };
        let out = Command::new(&py)
            .args(["-c", script, self.scheme(), &self.port.to_string()])
            .args([ACCOUNT, KEY, name, &ca])
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
    azure_connect(az, container, key).unwrap()
}

fn azure_connect(az: &Azurite, container: &str, key: &str) -> kstash_repo::Result<Storage> {
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

    // A key that is not base64 at all is refused before any request, naming the Secret's key.
    let e = azure_connect(&az, "kstash", "not a key!")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("demo/azure-storage") && e.contains("secret AZURE_ACCOUNT_KEY"),
        "{e}"
    );
}

/// The tenant and client of the workload identity test.
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "1f9a8b5c-0000-4000-8000-00000000c11e";

/// An unsigned JWT with `claims` (Azurite's basic OAuth checks claims, not signatures).
fn jwt(claims: serde_json::Value) -> String {
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
    };
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "kid": "test"});
    format!("{}.{}.c2lnbmF0dXJl", b64(&header), b64(&claims))
}

/// The stand-in for Entra ID's token endpoint: the federated-credential exchange of the client
/// whose federated credential trusts `subject` (the projected service-account token).
async fn entra_id(subject: String) -> HttpServer {
    HttpServer::start(move |req| {
        let subject = subject.clone();
        async move {
            let form: BTreeMap<String, String> = url_form(&String::from_utf8_lossy(&req.body));
            let path_ok = req.path == format!("/{TENANT}/oauth2/v2.0/token");
            let expected = [
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT),
                ("scope", "https://storage.azure.com/.default"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", subject.trim()),
            ];
            let wrong: Vec<&str> = expected
                .iter()
                .filter(|(k, v)| form.get(*k).map(String::as_str) != Some(*v))
                .map(|(k, _)| *k)
                .collect();
            if !path_ok || !wrong.is_empty() {
                let body = serde_json::json!({
                    "error": "invalid_client",
                    "error_description": format!(
                        "AADSTS700213: No matching federated identity record found for presented \
                         assertion (path {}, wrong: {wrong:?})",
                        req.path
                    ),
                });
                return (StatusCode::BAD_REQUEST, body.to_string().into());
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let token = jwt(serde_json::json!({
                "aud": "https://storage.azure.com",
                "iss": format!("https://sts.windows.net/{TENANT}/"),
                "iat": now - 60, "nbf": now - 60, "exp": now + 3600,
                "tid": TENANT, "appid": CLIENT, "oid": CLIENT, "ver": "1.0",
            }));
            let body = serde_json::json!({
                "token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                "access_token": token,
            });
            (StatusCode::OK, body.to_string().into())
        }
    })
    .await
}

/// `application/x-www-form-urlencoded`, decoded.
fn url_form(body: &str) -> BTreeMap<String, String> {
    form_urlencoded::parse(body.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A storage with no storage Secret, reached with `identity`.
fn identity_storage(az: &Azurite, container: &str, identity: AzureIdentity) -> Storage {
    let spec = serde_json::json!({
        "provider": "azure",
        "azure": {
            "storageAccount": ACCOUNT,
            "container": container,
            "prefix": "wi/",
            "endpoint": az.endpoint(),
        }
    });
    let opts = ConnectOptions {
        azure_identity: identity,
        ca_certificates: vec![az.tls.as_ref().unwrap().0.clone()],
        retries: 0,
        ..ConnectOptions::default()
    };
    let cfg = StorageConfig::from_spec_storage("demo/azure-wi", spec, BTreeMap::new()).unwrap();
    Storage::connect_with(cfg, &opts).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_workload_identity_backs_up_without_a_secret() {
    let az = Azurite::start_oauth();
    az.create_container("kstash");
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("azure-identity-token");
    let subject = jwt(serde_json::json!({
        "iss": "https://oidc.example.com/cluster", "sub": "system:serviceaccount:kstash:kstash",
        "aud": ["api://AzureADTokenExchange"],
    }));
    std::fs::write(&token_file, &subject).unwrap();
    let entra = entra_id(subject).await;
    let workload = |file: &std::path::Path| {
        AzureIdentity::Workload(AzureWorkload {
            tenant_id: TENANT.into(),
            client_id: CLIENT.into(),
            token_file: file.to_path_buf(),
            authority_host: format!("{}/", entra.url),
        })
    };

    // The pod's identity: the exchanged token is accepted for every operation of a backup.
    let storage = identity_storage(&az, "kstash", workload(&token_file));
    let (repo, _, _) = layout_backup_restore_check(
        &storage,
        "azure:kstash:/wi/es/repository/v1/frequent-backup/dump",
    )
    .await;
    assert!(repo.list_locks().await.unwrap().is_empty());
    assert!(
        !entra.uploads.lock().unwrap().is_empty(),
        "the storage token was not fetched from the token endpoint"
    );

    // No identity: unsigned requests, refused by the service for a private container.
    let anonymous = identity_storage(&az, "kstash", AzureIdentity::Anonymous);
    let e = anonymous.verify().await.unwrap_err().to_string();
    assert!(e.contains("demo/azure-wi"), "{e}");

    // A token the federated credential does not trust: the error says where and why.
    let other = dir.path().join("other-token");
    std::fs::write(&other, "not-the-projected-token").unwrap();
    let refused = identity_storage(&az, "kstash", workload(&other));
    let e = refused.verify().await.unwrap_err().to_string();
    assert!(
        e.contains("Azure workload identity") && e.contains("AADSTS700213"),
        "{e}"
    );
}
