//! The kubectl-plugin verbs through the real `kubectl` (the `kstash` binary symlinked as
//! `kubectl-kstash` on PATH), against the embedded control plane with kstash's CRDs and, for
//! `unlock`/`download`, a `moto` S3 server and the real `restic` CLI. No operator runs: the verbs
//! only talk to the API and the bucket.
//!
//! Expected values come from the spec (§4 BackupSession name/labels/invoker, §5 layout, §10
//! verbs) and the seed tutorial's objects.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kstash_controlplane::{ControlPlane, RunningControlPlane};
use kstash_repo::{BackupOptions, Storage, StorageConfig};
use kstash_testkit::cluster::server_config;
use kstash_testkit::{kubectl_bin, restic_bin, Moto, Restic};

const PASSWORD: &str = "not-so-secret-restic-password";
const BC: &str = "appbinding-es-quickstart";

/// The control plane, a kubeconfig, and a PATH with `kubectl-kstash` on it.
struct Env {
    dir: tempfile::TempDir,
    cp: Option<RunningControlPlane>,
    kubeconfig: PathBuf,
    plugin_dir: PathBuf,
}

impl Env {
    async fn start() -> Env {
        let dir = tempfile::tempdir().expect("tmp");
        let cp = ControlPlane::start(server_config(&dir.path().join("cp")))
            .await
            .expect("control plane starts");
        let plugin_dir = dir.path().join("bin");
        std::fs::create_dir_all(&plugin_dir).unwrap();
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_kstash"),
            plugin_dir.join("kubectl-kstash"),
        )
        .expect("symlink kubectl-kstash");
        let kubeconfig = cp.kubeconfig_path.clone();
        Env {
            dir,
            cp: Some(cp),
            kubeconfig,
            plugin_dir,
        }
    }

    /// `kubectl <args>` with `KUBECONFIG` set and `kubectl-kstash` on PATH, bounded to 120 s.
    async fn kubectl_with(&self, args: &[&str], stdin: Option<&str>, kubeconfig: &Path) -> Output {
        let path = format!(
            "{}:{}",
            self.plugin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = tokio::process::Command::new(kubectl_bin());
        cmd.args(args)
            .env("PATH", path)
            .env("KUBECONFIG", kubeconfig)
            .env("HOME", self.dir.path())
            .env("KSTASH_LOG", "error")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn kubectl");
        if let Some(text) = stdin {
            use tokio::io::AsyncWriteExt;
            let mut w = child.stdin.take().unwrap();
            w.write_all(text.as_bytes()).await.unwrap();
            drop(w);
        }
        tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish within 120 s"))
            .expect("kubectl output")
    }

    async fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with(args, None, &self.kubeconfig).await
    }

    async fn ok(&self, args: &[&str]) -> String {
        check_ok(args, self.kubectl(args).await)
    }

    /// Runs a command that must fail; returns its stderr.
    async fn fail(&self, args: &[&str]) -> String {
        let out = self.kubectl(args).await;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "kubectl {args:?} should fail; stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        stderr
    }

    async fn apply(&self, yaml: &str) {
        let out = self
            .kubectl_with(&["apply", "-f", "-"], Some(yaml), &self.kubeconfig)
            .await;
        check_ok(&["apply"], out);
    }

    async fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a).await).expect("kubectl json")
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // The server's tasks end with the test's runtime; drop it first.
        drop(self.cp.take());
    }
}

fn check_ok(args: &[&str], out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kubectl {args:?} failed:\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The tutorial's generated BackupConfiguration (seed tutorial), plus a second session.
const BC_YAML: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: core.kubestash.com/v1alpha1
kind: BackupConfiguration
metadata:
  name: appbinding-es-quickstart
  namespace: demo
spec:
  backends:
  - name: s3-backend
    retentionPolicy:
      name: demo-retention
      namespace: demo
    storageRef:
      name: s3-storage
      namespace: demo
  sessions:
  - addon:
      name: elasticsearch-addon
      tasks:
      - name: logical-backup
    name: frequent-backup
    repositories:
    - backend: s3-backend
      directory: /es
      encryptionSecret:
        name: encrypt-secret
        namespace: demo
      name: s3-elasticsearch-repo
    scheduler:
      schedule: '*/5 * * * *'
    sessionHistoryLimit: 1
  - addon:
      name: elasticsearch-addon
      tasks:
      - name: logical-backup
    name: weekly
    backupTimeout: 2h
    retryConfig:
      maxRetry: 2
    repositories:
    - backend: s3-backend
      directory: /es-weekly
      encryptionSecret:
        name: encrypt-secret
        namespace: demo
      name: s3-weekly-repo
    scheduler:
      schedule: '0 0 * * 0'
  target:
    apiGroup: kubedb.com
    kind: Elasticsearch
    name: es-quickstart
    namespace: demo
"#;

fn sessions_of(list: &serde_json::Value, session: &str) -> Vec<serde_json::Value> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["spec"]["session"] == session)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_pause_resume_debug_through_kubectl() {
    let env = Env::start().await;
    env.apply(BC_YAML).await;
    let plugins = env.ok(&["plugin", "list"]).await;
    assert!(plugins.contains("kubectl-kstash"), "{plugins}");
    let bc = env
        .json(&["get", "backupconfiguration", "-n", "demo", BC])
        .await;
    let uid = bc["metadata"]["uid"].as_str().unwrap().to_string();

    // trigger: one BackupSession per session, as the scheduler creates them (spec §4, §10).
    let before = now();
    let out = env.ok(&["kstash", "trigger", BC, "-n", "demo"]).await;
    let after = now();
    assert_eq!(out.lines().count(), 2, "{out}");
    let list = env.json(&["get", "backupsession", "-n", "demo"]).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    for (session, timeout) in [("frequent-backup", None), ("weekly", Some("2h"))] {
        let found = sessions_of(&list, session);
        assert_eq!(found.len(), 1, "one session {session}");
        let bs = &found[0];
        let name = bs["metadata"]["name"].as_str().unwrap();
        let prefix = format!("{BC}-{session}-");
        let secs: i64 = name
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{name} starts with {prefix}"))
            .parse()
            .expect("unix seconds suffix");
        assert!(
            (before..=after).contains(&secs),
            "{secs} in {before}..={after}"
        );
        assert!(
            out.contains(&format!("backupsession.core.kubestash.com/{name} created")),
            "{out}"
        );
        let labels = &bs["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/managed-by"], "kubestash.com");
        assert_eq!(labels["kubestash.com/invoker-name"], BC);
        assert_eq!(labels["kubestash.com/invoker-namespace"], "demo");
        assert_eq!(labels["kubestash.com/session-name"], session);
        let owner = &bs["metadata"]["ownerReferences"][0];
        assert_eq!(owner["apiVersion"], "core.kubestash.com/v1alpha1");
        assert_eq!(owner["kind"], "BackupConfiguration");
        assert_eq!(owner["name"], BC);
        assert_eq!(owner["uid"], uid.as_str());
        assert_eq!(owner["controller"], true);
        assert_eq!(bs["metadata"]["finalizers"][0], "kubestash.com/cleanup");
        let invoker = &bs["spec"]["invoker"];
        assert_eq!(invoker["apiGroup"], "core.kubestash.com");
        assert_eq!(invoker["kind"], "BackupConfiguration");
        assert_eq!(invoker["name"], BC);
        assert_eq!(
            bs["spec"]["retryLeft"], 0,
            "CLI trigger: retryLeft 0 even with maxRetry"
        );
        assert_eq!(bs["spec"]["backupTimeout"].as_str(), timeout);
    }
    let table = env.ok(&["get", "backupsession", "-n", "demo"]).await;
    assert!(
        table.contains("INVOKER-TYPE") && table.contains("BackupConfiguration"),
        "{table}"
    );

    // --session picks one; KubeStash's --sessions spelling works too.
    tokio::time::sleep(Duration::from_millis(1100)).await; // a new unix second, a new name
    let out = env
        .ok(&["kstash", "trigger", BC, "-n", "demo", "--session", "weekly"])
        .await;
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains(&format!("{BC}-weekly-")), "{out}");
    let list = env.json(&["get", "backupsession", "-n", "demo"]).await;
    assert_eq!(sessions_of(&list, "weekly").len(), 2);
    assert_eq!(sessions_of(&list, "frequent-backup").len(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    env.ok(&[
        "kstash",
        "trigger",
        BC,
        "-n",
        "demo",
        "--sessions",
        "frequent-backup",
    ])
    .await;
    let list = env.json(&["get", "backupsession", "-n", "demo"]).await;
    assert_eq!(sessions_of(&list, "frequent-backup").len(), 2);

    // pause / resume flip spec.paused (and the PAUSED printer column).
    let out = env.ok(&["kstash", "pause", BC, "-n", "demo"]).await;
    assert!(out.contains("paused"), "{out}");
    let get_paused = [
        "get",
        "backupconfiguration",
        "-n",
        "demo",
        BC,
        "-o",
        "jsonpath={.spec.paused}",
    ];
    assert_eq!(env.ok(&get_paused).await, "true");
    let table = env.ok(&["get", "bc", "-n", "demo"]).await;
    assert!(
        table.contains("PAUSED") && table.contains("true"),
        "{table}"
    );
    let out = env.ok(&["kstash", "resume", BC, "-n", "demo"]).await;
    assert!(out.contains("resumed"), "{out}");
    assert_eq!(env.ok(&get_paused).await, "false");

    // The namespace comes from the kubeconfig context like kubectl's: a context with
    // `namespace: demo`, chosen with --context, through --kubeconfig.
    let kc2 = env.dir.path().join("kubeconfig-demo");
    std::fs::copy(&env.kubeconfig, &kc2).unwrap();
    let kc2s = kc2.to_str().unwrap();
    env.ok(&[
        "config",
        "set-context",
        "demo-ctx",
        "--cluster=kstash",
        "--user=kstash",
        "--namespace=demo",
        "--kubeconfig",
        kc2s,
    ])
    .await;
    env.ok(&[
        "kstash",
        "pause",
        BC,
        "--kubeconfig",
        kc2s,
        "--context",
        "demo-ctx",
    ])
    .await;
    assert_eq!(env.ok(&get_paused).await, "true");
    // … and the current context of $KUBECONFIG.
    env.ok(&["config", "use-context", "demo-ctx", "--kubeconfig", kc2s])
        .await;
    let out = env
        .kubectl_with(&["kstash", "resume", BC], None, &kc2)
        .await;
    check_ok(&["kstash", "resume"], out);
    assert_eq!(env.ok(&get_paused).await, "false");
    // Without a namespace the kubeconfig's own context says `default`: not found there.
    let err = env.fail(&["kstash", "pause", BC]).await;
    assert!(
        err.contains(&format!("backupconfiguration default/{BC} not found")),
        "{err}"
    );

    // debug: status, sessions, events.
    env.apply(&format!(
        r#"
apiVersion: v1
kind: Event
metadata:
  name: {BC}.test1
  namespace: demo
involvedObject:
  apiVersion: core.kubestash.com/v1alpha1
  kind: BackupConfiguration
  name: {BC}
  namespace: demo
reason: FailedToEnsureScheduler
message: backend s3-backend is not ready
type: Warning
lastTimestamp: "2026-11-27T04:00:00Z"
"#
    ))
    .await;
    let out = env
        .ok(&["kstash", "debug", "backup", BC, "-n", "demo"])
        .await;
    assert!(
        out.contains(&format!("BackupConfiguration demo/{BC}")),
        "{out}"
    );
    assert!(out.contains("Paused: false"), "{out}");
    assert!(out.contains("BackupSessions (4 in total"), "{out}");
    assert!(out.contains(&format!("{BC}-weekly-")), "{out}");
    assert!(
        out.contains("Repository demo/s3-elasticsearch-repo: ! not found"),
        "{out}"
    );
    assert!(
        out.contains("Warning  FailedToEnsureScheduler")
            && out.contains("backend s3-backend is not ready"),
        "{out}"
    );

    // Errors name the object and what is wrong.
    let err = env.fail(&["kstash", "trigger", "nope", "-n", "demo"]).await;
    assert!(
        err.contains("backupconfiguration demo/nope not found"),
        "{err}"
    );
    let err = env
        .fail(&[
            "kstash",
            "trigger",
            BC,
            "-n",
            "demo",
            "--session",
            "nightly",
        ])
        .await;
    assert!(
        err.contains(&format!("backupconfiguration demo/{BC} has no session \"nightly\" (its sessions: frequent-backup, weekly)")),
        "{err}"
    );
    let err = env.fail(&["kstash", "resume", "nope", "-n", "demo"]).await;
    assert!(
        err.contains("backupconfiguration demo/nope not found"),
        "{err}"
    );
    let err = env
        .fail(&["kstash", "debug", "repo", "nope", "-n", "demo"])
        .await;
    assert!(err.contains("repository demo/nope not found"), "{err}");
    let err = env
        .fail(&["kstash", "pause", BC, "-n", "demo", "--context", "missing"])
        .await;
    assert!(err.contains("--context missing"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// unlock and download: moto S3 + restic
// ---------------------------------------------------------------------------------------------

/// Deterministic pseudo-random NDJSON of `len` bytes.
fn ndjson(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 128);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(
            format!(
                "{{\"_index\":\"logs\",\"_id\":\"{x:016x}\",\"_source\":{{\"n\":{}}}}}\n",
                x % 9973
            )
            .as_bytes(),
        );
    }
    out.truncate(len);
    out
}

fn restic(location: &str, args: &[&str]) -> Command {
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKTEST"),
        ("AWS_SECRET_ACCESS_KEY", "SKTEST"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ];
    let env = env.map(|(k, v)| (k.to_string(), v.to_string())).into();
    let mut c = Restic::new(location, PASSWORD, env).command();
    c.args(args);
    c
}

fn restic_locks(location: &str) -> usize {
    let out = restic(location, &["list", "locks", "--no-lock"])
        .output()
        .expect("restic list locks");
    assert!(
        out.status.success(),
        "restic list locks: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlock_and_download_with_s3_and_restic() {
    restic_bin();
    let moto = Moto::start();
    moto.create_bucket("esbackup");
    let env = Env::start().await;
    let endpoint = moto.endpoint();

    // The tutorial's storage objects, pointing at moto.
    env.apply(&format!(
        r#"
apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: v1
kind: Secret
metadata:
  name: s3-secret
  namespace: demo
stringData:
  AWS_ACCESS_KEY_ID: AKTEST
  AWS_SECRET_ACCESS_KEY: SKTEST
---
apiVersion: v1
kind: Secret
metadata:
  name: encrypt-secret
  namespace: demo
stringData:
  RESTIC_PASSWORD: {PASSWORD}
---
apiVersion: storage.kubestash.com/v1alpha1
kind: BackupStorage
metadata:
  name: s3-storage
  namespace: demo
spec:
  storage:
    provider: s3
    s3:
      endpoint: {endpoint}
      bucket: esbackup
      region: us-east-1
      prefix: elastic
      secretName: s3-secret
  usagePolicy:
    allowedNamespaces:
      from: All
  default: true
  deletionPolicy: Delete
---
apiVersion: storage.kubestash.com/v1alpha1
kind: Repository
metadata:
  name: s3-elasticsearch-repo
  namespace: demo
spec:
  appRef:
    apiGroup: kubedb.com
    kind: Elasticsearch
    name: es-quickstart
    namespace: demo
  storageRef:
    name: s3-storage
    namespace: demo
  path: /es
  encryptionSecret:
    name: encrypt-secret
    namespace: demo
"#
    ))
    .await;

    // A backup written by kstash_repo where KubeStash puts it (spec §5.3).
    let spec_storage = serde_json::json!({"provider": "s3", "s3": {
        "endpoint": endpoint, "bucket": "esbackup", "prefix": "elastic", "region": "us-east-1",
        "secretName": "s3-secret"}});
    let secrets = [
        ("AWS_ACCESS_KEY_ID", "AKTEST"),
        ("AWS_SECRET_ACCESS_KEY", "SKTEST"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let storage = Storage::connect(
        StorageConfig::from_spec_storage("demo/s3-storage", spec_storage, secrets).unwrap(),
    )
    .unwrap();
    let dir = storage.repository("es").unwrap();
    let repo = dir.component("frequent-backup", "dump", PASSWORD).unwrap();
    repo.open_or_init().await.unwrap();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("/logs-2026.11.json", ndjson(1, 3 << 20)),
        ("/metrics.json", ndjson(2, 200_000)),
        ("/empty-index.json", Vec::new()),
    ];
    let b = repo.begin_backup(BackupOptions::default()).await.unwrap();
    for (path, data) in &files {
        let mut w = b.create_file(path).await.unwrap();
        w.write(data).await.unwrap();
        w.finish().await.unwrap();
    }
    let summary = b.commit().await.unwrap();
    let location = repo.location().to_string();
    assert_eq!(
        location,
        format!("s3:{endpoint}/esbackup/elastic/es/repository/v1/frequent-backup/dump")
    );

    // Its Snapshot object, named by the spec's generator, status as the tutorial shows it.
    let snap = "s3-elasticsearch-repo-appbindingtart-frequent-backup-1726722361";
    env.apply(&format!(
        r#"
apiVersion: storage.kubestash.com/v1alpha1
kind: Snapshot
metadata:
  name: {snap}
  namespace: demo
  labels:
    kubestash.com/repo-name: s3-elasticsearch-repo
spec:
  appRef:
    apiGroup: kubedb.com
    kind: Elasticsearch
    name: es-quickstart
    namespace: demo
  backupSession: appbinding-es-quickstart-frequent-backup-1726722361
  deletionPolicy: Delete
  repository: s3-elasticsearch-repo
  session: frequent-backup
  snapshotID: 01J84ARHWBR8PFEVENBRKEA9PD
  type: FullBackup
  version: v1
"#
    ))
    .await;
    let status = serde_json::json!({"status": {
        "components": {"dump": {"driver": "Restic", "integrity": true,
            "path": "repository/v1/frequent-backup/dump", "phase": "Succeeded",
            "resticStats": [{"hostPath": "/kubestash-interim/data", "id": summary.snapshot_id}]}},
        "phase": "Succeeded", "totalComponents": 1}})
    .to_string();
    env.ok(&[
        "patch",
        "snapshot",
        snap,
        "-n",
        "demo",
        "--subresource=status",
        "--type=merge",
        "-p",
        &status,
    ])
    .await;

    // download: byte-identical files under <destination>/<snapshot>/<component>/.
    let dest = env.dir.path().join("download");
    let dest_s = dest.to_str().unwrap();
    let out = env
        .ok(&[
            "kstash",
            "download",
            snap,
            "-n",
            "demo",
            "--destination",
            dest_s,
        ])
        .await;
    let total: usize = files.iter().map(|(_, d)| d.len()).sum();
    assert!(
        out.contains(&format!("downloaded 3 file(s), {total} bytes")),
        "{out}"
    );
    for (path, data) in &files {
        let got = std::fs::read(dest.join(snap).join("dump").join(&path[1..])).unwrap();
        assert!(got == *data, "{path}: downloaded bytes differ");
    }
    let err = env
        .fail(&[
            "kstash",
            "download",
            snap,
            "-n",
            "demo",
            "--destination",
            dest_s,
            "--components",
            "dashboard",
        ])
        .await;
    assert!(
        err.contains(&format!(
            "snapshot demo/{snap} has no component \"dashboard\" (its components: dump)"
        )),
        "{err}"
    );
    let err = env
        .fail(&["kstash", "download", "nope", "-n", "demo"])
        .await;
    assert!(err.contains("snapshot demo/nope not found"), "{err}");

    // unlock: a stale lock left by a killed `restic backup` (this host, dead pid).
    let mut held = restic(
        &location,
        &["backup", "--stdin", "--stdin-filename", "x.json"],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("restic backup");
    let deadline = Instant::now() + Duration::from_secs(60);
    while restic_locks(&location) == 0 {
        assert!(Instant::now() < deadline, "restic never took its lock");
        std::thread::sleep(Duration::from_millis(200));
    }
    held.kill().unwrap();
    held.wait().unwrap();
    assert_eq!(
        restic_locks(&location),
        1,
        "the killed restic left its lock"
    );

    // No status.componentPaths yet: the error says what to do.
    let err = env
        .fail(&["kstash", "unlock", "s3-elasticsearch-repo", "-n", "demo"])
        .await;
    assert!(
        err.contains("repository demo/s3-elasticsearch-repo: status.componentPaths is empty"),
        "{err}"
    );
    env.ok(&[
        "patch",
        "repository",
        "s3-elasticsearch-repo",
        "-n",
        "demo",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"componentPaths":["repository/v1/frequent-backup/dump"],"phase":"Ready"}}"#,
    ])
    .await;
    let out = env
        .ok(&["kstash", "unlock", "s3-elasticsearch-repo", "-n", "demo"])
        .await;
    assert!(
        out.contains("repository/v1/frequent-backup/dump: removed 1 lock(s)"),
        "{out}"
    );
    assert_eq!(restic_locks(&location), 0, "restic sees no lock");

    // A live lock (held by this process) is kept unless --remove-all.
    let lock = repo.lock(true).await.unwrap();
    assert_eq!(restic_locks(&location), 1);
    let out = env
        .ok(&["kstash", "unlock", "s3-elasticsearch-repo", "-n", "demo"])
        .await;
    assert!(
        out.contains("removed 0 lock(s)") && out.contains("kept live lock"),
        "{out}"
    );
    assert_eq!(restic_locks(&location), 1);
    let out = env
        .ok(&[
            "kstash",
            "unlock",
            "s3-elasticsearch-repo",
            "-n",
            "demo",
            "--remove-all",
        ])
        .await;
    assert!(out.contains("removed 1 lock(s)"), "{out}");
    assert_eq!(restic_locks(&location), 0);
    let _ = lock.release().await;
    // restic agrees the repository is healthy and unlocked.
    let check = restic(&location, &["check"]).output().unwrap();
    assert!(
        check.status.success(),
        "restic check: {}",
        String::from_utf8_lossy(&check.stderr)
    );

    // debug repository shows the snapshot.
    let out = env
        .ok(&[
            "kstash",
            "debug",
            "repository",
            "s3-elasticsearch-repo",
            "-n",
            "demo",
        ])
        .await;
    assert!(
        out.contains("Repository demo/s3-elasticsearch-repo"),
        "{out}"
    );
    assert!(out.contains(&format!("{snap} phase=Succeeded")), "{out}");

    // Errors: a missing encryption secret is named.
    env.ok(&["delete", "secret", "encrypt-secret", "-n", "demo"])
        .await;
    let err = env
        .fail(&["kstash", "unlock", "s3-elasticsearch-repo", "-n", "demo"])
        .await;
    assert!(
        err.contains("secret demo/encrypt-secret not found"),
        "{err}"
    );
    assert!(
        err.contains("encryption secret of repository demo/s3-elasticsearch-repo"),
        "{err}"
    );
}
