//! Real `kubectl` against the control plane with kstash's CRDs: apply the tutorial's files
//! verbatim, printer columns, `-o yaml`, label/annotate/patch, finalizers, `get -w`, apply
//! idempotence, `create secret generic --from-file` and `create ns` (protobuf bodies).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use kstash_controlplane::{ControlPlane, RunningControlPlane};
use kstash_testkit::cluster::server_config;
use kstash_testkit::{kubectl_bin, repo_root};

struct Kc {
    kubeconfig: PathBuf,
    cache: PathBuf,
}

impl Kc {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(kubectl_bin());
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args);
        c.env("HOME", &self.cache);
        c
    }
    /// Runs kubectl (bounded to 60 s) and returns its output.
    fn run(&self, args: &[&str]) -> Output {
        let mut child = self
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kubectl");
        let start = std::time::Instant::now();
        loop {
            if child.try_wait().expect("wait").is_some() {
                return child.wait_with_output().expect("output");
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                panic!("kubectl {args:?} did not finish within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\nstdout: {stdout}\nstderr: {stderr}"
        );
        stdout
    }
    fn fail(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "kubectl {args:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

async fn start(dir: &Path) -> RunningControlPlane {
    let mut cfg = server_config(dir);
    // As `kstash up` runs it: KubeStash's webhook rules at write time.
    cfg.admission = Some(std::sync::Arc::new(
        kstash_controlplane::kstash_admission::KstashAdmission,
    ));
    ControlPlane::start(cfg)
        .await
        .expect("control plane starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_tutorial_flow() {
    let dir = tempfile::tempdir().expect("tmp");
    let cp = start(dir.path()).await;
    let kc = Kc {
        kubeconfig: cp.kubeconfig_path.clone(),
        cache: dir.path().join("kubectl-cache"),
    };
    let ex = repo_root().join("examples/auto-backup");
    tokio::task::spawn_blocking(move || {
        // `kubectl create ns` and `create secret generic --from-file` (protobuf bodies on ≥1.32).
        assert!(kc.ok(&["create", "ns", "demo"]).contains("namespace/demo created"));
        let files = tempfile::tempdir().expect("tmp");
        std::fs::write(files.path().join("AWS_ACCESS_KEY_ID"), "minio").expect("write");
        std::fs::write(files.path().join("AWS_SECRET_ACCESS_KEY"), "minio123").expect("write");
        let a = files.path().join("AWS_ACCESS_KEY_ID");
        let b = files.path().join("AWS_SECRET_ACCESS_KEY");
        let out = kc.ok(&[
            "create", "secret", "generic", "-n", "demo", "s3-secret",
            &format!("--from-file={}", a.display()), &format!("--from-file={}", b.display()),
        ]);
        assert!(out.contains("secret/s3-secret created"), "{out}");
        let data = kc.ok(&["get", "secret", "-n", "demo", "s3-secret", "-o", "jsonpath={.data.AWS_ACCESS_KEY_ID}"]);
        assert_eq!(data, "bWluaW8=", "base64 of \"minio\"");
        let secrets = kc.ok(&["get", "secrets", "-n", "demo"]);
        assert!(secrets.contains("NAME") && secrets.contains("TYPE") && secrets.contains("Opaque"), "{secrets}");

        // Apply every tutorial file verbatim; a second apply is a no-op.
        let mut yamls: Vec<PathBuf> = std::fs::read_dir(&ex).expect("examples").map(|e| e.expect("entry").path()).filter(|p| p.extension().is_some_and(|e| e == "yaml")).collect();
        yamls.sort();
        assert!(yamls.len() >= 6, "examples/auto-backup has the tutorial files");
        for f in &yamls {
            let out = kc.ok(&["apply", "-f", f.to_str().expect("path")]);
            assert!(out.contains("created"), "{}: {out}", f.display());
        }
        // A second apply changes nothing on the server (same resourceVersion). kubectl prints
        // "unchanged" unless a CRD default was added inside a list item (BackupBlueprint
        // `sessions[].sessionHistoryLimit`): JSON merge patch replaces lists, so kubectl, like
        // against a real API server, sends the list again and prints "configured".
        for f in &yamls {
            let path = f.to_str().expect("path");
            let rv_before = kc.ok(&["get", "-f", path, "-o", "jsonpath={.metadata.resourceVersion}"]);
            let out = kc.ok(&["apply", "-f", path]);
            let rv_after = kc.ok(&["get", "-f", path, "-o", "jsonpath={.metadata.resourceVersion}"]);
            assert_eq!(rv_before, rv_after, "second apply of {} wrote to the server: {out}", f.display());
            if !path.contains("blueprint") {
                assert!(out.contains("unchanged"), "second apply of {}: {out}", f.display());
            }
        }

        // Printer columns from the CRDs.
        let out = kc.ok(&["get", "backupstorage", "-n", "demo"]);
        let header = out.lines().next().expect("header");
        assert!(header.starts_with("NAME") && header.contains("AGE"), "{out}");
        assert!(out.contains("s3-storage"), "{out}");
        let out = kc.ok(&["get", "elasticsearch", "-n", "demo"]);
        assert!(out.contains("es-quickstart") && out.contains("es-quickstart-2"), "{out}");
        let yaml = kc.ok(&["get", "retentionpolicy", "demo-retention", "-n", "demo", "-o", "yaml"]);
        assert!(yaml.contains("maxRetentionPeriod: 2mo") && yaml.contains("kind: RetentionPolicy"), "{yaml}");
        assert!(yaml.contains("resourceVersion:") && yaml.contains("uid:"), "{yaml}");

        // label / annotate / patch --type merge.
        assert!(kc.ok(&["label", "backupstorage", "s3-storage", "-n", "demo", "team=backup"]).contains("labeled"));
        assert!(kc.ok(&["annotate", "backupstorage", "s3-storage", "-n", "demo", "note=hello"]).contains("annotated"));
        kc.ok(&["patch", "retentionpolicy", "demo-retention", "-n", "demo", "--type", "merge", "-p", r#"{"spec":{"maxRetentionPeriod":"3mo"}}"#]);
        let got = kc.ok(&["get", "backupstorage", "s3-storage", "-n", "demo", "-o", "jsonpath={.metadata.labels.team}/{.metadata.annotations.note}"]);
        assert_eq!(got, "backup/hello");
        let got = kc.ok(&["get", "retentionpolicy", "demo-retention", "-n", "demo", "-o", "jsonpath={.spec.maxRetentionPeriod}"]);
        assert_eq!(got, "3mo");
        let out = kc.ok(&["get", "backupstorage", "-n", "demo", "-l", "team=backup", "-o", "name"]);
        assert_eq!(out.trim(), "backupstorage.storage.kubestash.com/s3-storage");
        // Strategic merge on a CR is refused with 415.
        let err = kc.fail(&["patch", "retentionpolicy", "demo-retention", "-n", "demo", "-p", r#"{"spec":{"maxRetentionPeriod":"4mo"}}"#]);
        assert!(err.contains("UnsupportedMediaType") || err.contains("unknown format") || err.contains("strategic"), "{err}");

        // `get -w` sees a change (bounded by --request-timeout).
        let mut watch = kc
            .cmd(&["get", "retentionpolicy", "-n", "demo", "-w", "--request-timeout=6s"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn get -w");
        std::thread::sleep(Duration::from_millis(1500));
        kc.ok(&["label", "retentionpolicy", "demo-retention", "-n", "demo", "changed=yes"]);
        kc.ok(&["apply", "-f", ex.join("retentionpolicy.yaml").to_str().expect("path")]);
        let start = std::time::Instant::now();
        while watch.try_wait().expect("wait").is_none() && start.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = watch.kill();
        let out = watch.wait_with_output().expect("output");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.matches("demo-retention").count() >= 2, "initial row plus a change: {text}");

        // delete waits for finalizers.
        kc.ok(&["patch", "backupstorage", "s3-storage", "-n", "demo", "--type", "merge", "-p", r#"{"metadata":{"finalizers":["kstash.dev/hold"]}}"#]);
        let out = kc.ok(&["delete", "backupstorage", "s3-storage", "-n", "demo", "--wait=false"]);
        assert!(out.contains("deleted"), "{out}");
        let ts = kc.ok(&["get", "backupstorage", "s3-storage", "-n", "demo", "-o", "jsonpath={.metadata.deletionTimestamp}"]);
        assert!(!ts.is_empty(), "still present with a deletionTimestamp");
        let mut waiter = kc.cmd(&["delete", "backupstorage", "s3-storage", "-n", "demo", "--timeout=30s"]).stdout(Stdio::piped()).spawn().expect("spawn delete");
        std::thread::sleep(Duration::from_millis(1000));
        assert!(waiter.try_wait().expect("wait").is_none(), "delete waits while the finalizer is present");
        kc.ok(&["patch", "backupstorage", "s3-storage", "-n", "demo", "--type", "json", "-p", r#"[{"op":"remove","path":"/metadata/finalizers"}]"#]);
        let status = waiter.wait().expect("delete finished");
        assert!(status.success());
        let err = kc.fail(&["get", "backupstorage", "s3-storage", "-n", "demo"]);
        assert!(err.contains("NotFound") && err.contains("not found"), "{err}");

        // Invalid objects get the server's 422 message.
        let bad = files.path().join("bad.yaml");
        std::fs::write(&bad, "apiVersion: storage.kubestash.com/v1alpha1\nkind: RetentionPolicy\nmetadata:\n  name: Bad_Name\n  namespace: demo\nspec: {}\n").expect("write");
        let err = kc.fail(&["apply", "-f", bad.to_str().expect("path")]);
        assert!(err.contains("is invalid") && err.contains("metadata.name"), "{err}");

        // Namespace deletion completes (namespace controller).
        kc.ok(&["delete", "ns", "demo", "--timeout=60s"]);
        let err = kc.fail(&["get", "ns", "demo"]);
        assert!(err.contains("not found"), "{err}");
    })
    .await
    .expect("kubectl flow");
    cp.shutdown().await;
}

/// KubeStash's webhook rules refuse invalid objects when `kubectl` writes them (as a cluster with
/// the webhooks does), with the webhook's message naming the field; status writes and metadata
/// changes are not held to spec rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_refuses_invalid_objects_with_the_webhook_message() {
    let dir = tempfile::tempdir().expect("tmp");
    let cp = start(dir.path()).await;
    let kc = Kc {
        kubeconfig: cp.kubeconfig_path.clone(),
        cache: dir.path().join("kubectl-cache"),
    };
    let files = dir.path().join("yaml");
    std::fs::create_dir_all(&files).expect("mkdir");
    tokio::task::spawn_blocking(move || {
        let write = |name: &str, yaml: &str| {
            let p = files.join(name);
            std::fs::write(&p, yaml).expect("write");
            p.to_str().expect("path").to_string()
        };
        kc.ok(&["create", "ns", "demo"]);
        let storage = |name: &str, bucket: &str| {
            format!("apiVersion: storage.kubestash.com/v1alpha1\nkind: BackupStorage\nmetadata:\n  name: {name}\n  namespace: demo\nspec:\n  default: true\n  deletionPolicy: WipeOut\n  storage:\n    provider: s3\n    s3:\n      bucket: {bucket}/\n      endpoint: http://127.0.0.1:9000\n      secretName: s3-secret\n")
        };
        let first = write("first.yaml", &storage("s3-first", "one"));
        kc.ok(&["apply", "-f", &first]);
        // The mutating rules ran: usagePolicy defaulted, the bucket's trailing `/` trimmed.
        let got = kc.ok(&["get", "backupstorage", "s3-first", "-n", "demo", "-o", "jsonpath={.spec.usagePolicy.allowedNamespaces.from} {.spec.storage.s3.bucket}"]);
        assert_eq!(got, "Same one");
        // A second apply of the same file writes nothing (kubectl still sends the trailing `/`
        // the defaults trimmed, as it would to a cluster with a mutating webhook).
        let rv = |kc: &Kc| kc.ok(&["get", "backupstorage", "s3-first", "-n", "demo", "-o", "jsonpath={.metadata.resourceVersion}"]);
        let before = rv(&kc);
        kc.ok(&["apply", "-f", &first]);
        assert_eq!(rv(&kc), before);

        let second = write("second.yaml", &storage("s3-second", "two"));
        let err = kc.fail(&["apply", "-f", &second]);
        assert!(
            err.contains("Error from server (Forbidden)")
                && err.contains("admission webhook \"backupstorage.storage.kubestash.com\" denied the request: spec.default: multiple default BackupStorages are not allowed within the same namespace"),
            "{err}"
        );
        let err = kc.fail(&["get", "backupstorage", "s3-second", "-n", "demo"]);
        assert!(err.contains("not found"), "a refused object is not stored: {err}");

        let session = |name: &str| {
            format!("apiVersion: core.kubestash.com/v1alpha1\nkind: BackupSession\nmetadata:\n  name: bs-1\n  namespace: demo\nspec:\n  invoker:\n    apiGroup: core.kubestash.com\n    kind: BackupConfiguration\n    name: es-backup\n  session: {name}\n")
        };
        let bs = write("bs.yaml", &session("frequent-backup"));
        kc.ok(&["apply", "-f", &bs]);
        let changed = write("bs-changed.yaml", &session("other-session"));
        let err = kc.fail(&["apply", "-f", &changed]);
        assert!(
            err.contains("admission webhook \"backupsession.core.kubestash.com\" denied the request: spec: spec can not be updated"),
            "{err}"
        );
        assert_eq!(kc.ok(&["get", "backupsession", "bs-1", "-n", "demo", "-o", "jsonpath={.spec.session}"]), "frequent-backup");
        // Metadata and status are not spec: a label and a status write pass.
        kc.ok(&["label", "backupsession", "bs-1", "-n", "demo", "kstash.io/checked=yes"]);
        kc.ok(&["patch", "backupsession", "bs-1", "-n", "demo", "--subresource=status", "--type", "merge", "-p", r#"{"status":{"phase":"Running"}}"#]);
        assert_eq!(kc.ok(&["get", "backupsession", "bs-1", "-n", "demo", "-o", "jsonpath={.status.phase}"]), "Running");
    })
    .await
    .expect("kubectl flow");
    cp.shutdown().await;
}
