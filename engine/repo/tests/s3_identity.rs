//! The operator's workload identity for S3: a BackupStorage that names no storage Secret backs
//! up with credentials from STS `AssumeRoleWithWebIdentity` and a projected token file (EKS
//! IRSA), against a moto server that enforces IAM the way AWS does — static keys it never
//! issued and unsigned requests are refused by the same server, so a passing backup can only
//! have used the role's temporary credentials.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{assert_same_files, backup_files, ndjson, restore_all};
use kstash_repo::{AwsIdentity, ConnectOptions, Storage, StorageConfig, WebIdentity};
use kstash_testkit::process::{wait_listening, ChildGuard};
use kstash_testkit::{free_port, moto_bin};

/// moto with IAM enforced after its first request (the test's bucket creation), one role
/// `kstash-backup` allowed `s3:*` and trusting an OIDC provider. Two corrections make moto's
/// IAM checks behave as AWS's: `AssumeRoleWithWebIdentity` is callable without AWS credentials
/// (moto demands a signature for it once IAM is enforced), and the signature is checked over the
/// query as AWS canonicalises it (moto takes the raw query, so `prefix=demo/`, which AWS reads
/// as `prefix=demo%2F`, would never match a correct signature).
const MOTO_WITH_IAM: &str = r#"
import json, sys
from urllib.parse import quote, unquote, urlsplit, urlunsplit
from moto.core import authorization as auth
from moto.iam import access_control
_create = access_control.IAMRequestBase._create_aws_request
def create_aws_request(self):
    request = _create(self)
    parts = urlsplit(request.url)
    pairs = [p.partition("=") for p in parts.query.split("&") if p]
    query = "&".join(quote(unquote(k), safe="-_.~") + "=" + quote(unquote(v), safe="-_.~") for k, _, v in pairs)
    request.url = urlunsplit(parts._replace(query=query))
    return request
access_control.IAMRequestBase._create_aws_request = create_aws_request
_authorize = auth.ActionAuthenticatorMixin._authenticate_and_authorize_action
def authorize(self, iam_request_cls, resource="*"):
    if self._get_action() == "AssumeRoleWithWebIdentity":
        return
    return _authorize(self, iam_request_cls, resource)
auth.ActionAuthenticatorMixin._authenticate_and_authorize_action = authorize
from moto.iam.models import iam_backends
iam = iam_backends["123456789012"]["global"]
trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
         "Action": "sts:AssumeRoleWithWebIdentity",
         "Principal": {"Federated": "arn:aws:iam::123456789012:oidc-provider/kstash.test"}}]}
iam.create_role("kstash-backup", json.dumps(trust), "/", None, "", [], None)
iam.put_role_policy("kstash-backup", "s3", json.dumps({"Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
from moto.server import main
main(sys.argv[1:])
"#;

const ROLE: &str = "arn:aws:iam::123456789012:role/kstash-backup";
const PASSWORD: &str = "irsa-test-password";

struct IamMoto {
    _child: ChildGuard,
    endpoint: String,
}

fn start_moto_with_iam(bucket: &str) -> IamMoto {
    let port = free_port();
    let child = ChildGuard::spawn(
        "moto (IAM enforced)",
        Command::new(moto_bin().with_file_name("python"))
            .args([
                "-c",
                MOTO_WITH_IAM,
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_listening("moto (IAM enforced)", port, Duration::from_secs(30));
    let endpoint = format!("http://127.0.0.1:{port}");
    // The one request moto serves before enforcing IAM.
    let out = Command::new("curl")
        .args(["-sf", "-X", "PUT", &format!("{endpoint}/{bucket}")])
        .output()
        .expect("curl");
    assert!(out.status.success(), "creating bucket {bucket} failed");
    IamMoto {
        _child: child,
        endpoint,
    }
}

/// A BackupStorage's `spec.storage` with no `secretName`.
fn storage_config(endpoint: &str, bucket: &str) -> StorageConfig {
    let spec = serde_json::json!({"provider": "s3", "s3": {
        "endpoint": endpoint, "bucket": bucket, "region": "us-east-1", "prefix": "demo"}});
    StorageConfig::from_spec_storage("demo/s3-irsa", spec, BTreeMap::new()).unwrap()
}

fn opts(identity: AwsIdentity) -> ConnectOptions {
    ConnectOptions {
        timeout: Duration::from_secs(10),
        io_timeout: Duration::from_secs(10),
        retries: 0,
        aws_identity: identity,
        ..ConnectOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_without_secret_backs_up_with_the_operators_web_identity() {
    let moto = start_moto_with_iam("irsa");
    let dir = tempfile_dir();
    let token_file = dir.join("token");
    // What the kubelet projects: a service-account JWT (STS verifies it on AWS; moto does not).
    std::fs::write(
        &token_file,
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6a3N0YXNoOmtzdGFzaCJ9.c2ln\n",
    )
    .unwrap();
    let web = AwsIdentity::WebIdentity(WebIdentity {
        role_arn: ROLE.into(),
        token_file: token_file.clone(),
        session_name: "kstash-test".into(),
        sts_endpoint: moto.endpoint.clone(),
    });

    // Without an identity the same storage is refused by the server: IAM is enforced.
    let anonymous = Storage::connect_with(
        storage_config(&moto.endpoint, "irsa"),
        &opts(AwsIdentity::Anonymous),
    )
    .unwrap();
    assert!(
        anonymous.verify().await.is_err(),
        "unsigned requests must be refused"
    );
    // Keys moto never issued are refused too.
    let mut with_keys = storage_config(&moto.endpoint, "irsa");
    if let kstash_repo::Provider::S3 { s3 } = &mut with_keys.provider {
        s3.secret_name = "static".into();
    }
    with_keys.secrets = BTreeMap::from([
        ("AWS_ACCESS_KEY_ID".to_string(), "AKIANOTISSUED".to_string()),
        ("AWS_SECRET_ACCESS_KEY".to_string(), "nope".to_string()),
    ]);
    let e = Storage::connect_with(with_keys, &opts(web.clone()))
        .unwrap()
        .verify()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("InvalidAccessKeyId"),
        "an explicit Secret wins over the identity: {e}"
    );

    // With the web identity: a whole backup, restore and full check.
    let storage =
        Storage::connect_with(storage_config(&moto.endpoint, "irsa"), &opts(web.clone())).unwrap();
    storage.verify().await.unwrap();
    storage.initialize(b"kind: BackendMeta\n").await.unwrap();
    let repo = storage
        .repository("es")
        .unwrap()
        .component("frequent-backup", "dump", PASSWORD)
        .unwrap();
    repo.init().await.unwrap();
    let files = BTreeMap::from([
        ("/logs.json".to_string(), ndjson(7, 3 << 20)),
        ("/orders.json".to_string(), ndjson(8, 200_000)),
    ]);
    let summary = backup_files(&repo, &files).await.unwrap();
    assert_same_files(&restore_all(&repo, &summary.snapshot_id).await, &files);
    let report = repo.check(true).await.unwrap();
    assert!(
        report.ok && report.read_data,
        "check: {:?}",
        report.findings
    );

    // A token file that went missing is named, with the variable that points at it.
    std::fs::remove_file(&token_file).unwrap();
    let fresh = Storage::connect_with(storage_config(&moto.endpoint, "irsa"), &opts(web)).unwrap();
    let e = fresh.verify().await.unwrap_err().to_string();
    assert!(e.contains("AWS_WEB_IDENTITY_TOKEN_FILE"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A fresh directory under the system's temp dir.
fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "kstash-irsa-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
