//! End to end: the seed tutorial run by the whole operator (control + execute halves, leader
//! election and the metrics endpoint, as `kstash operator`/`kstash up` assemble them) against the
//! embedded control plane, a moto S3 server, the Elasticsearch emulator (TLS + basic auth) and
//! the real WASM addon built by `scripts/build-addons.sh`. The tutorial's YAML is applied verbatim
//! from `examples/auto-backup/` except the storage endpoint and credentials; the AppBinding KubeDB
//! would create for each Elasticsearch is created by the test (there is no KubeDB here).
//!
//! Expected values come from the tutorial (`shared/reference/seed-elasticsearch-auto-backup.md`)
//! and the spec: names (`appbinding-es-quickstart`, `s3-elasticsearch-repo`, the snapshot name
//! generator), conditions, the retention policy's `successfulSnapshots.last: 5`.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kstash_api::core::{BackupConfiguration, BackupSession, RestoreSession};
use kstash_api::storage::{BackupStorage, Repository, Snapshot};
use kstash_es_emulator::{Faults, RunningEmulator};
use kstash_operator::leader::LeaderConfig;
use kstash_operator::{CancellationToken, ServeOptions};
use kstash_testkit::redis::RedisServer;
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use support::{
    condition, condition_true, module_file, module_sha256, restic_bin, user_indices, wait_for,
    wait_for_object, Moto, TestCluster,
};

const NS: &str = "demo";
/// The tutorial's restic password (`echo -n 'changeit' > RESTIC_PASSWORD`).
const RESTIC_PW: &str = "changeit";
const ES_PW: &str = "es-e2e-password";
const TIMEOUT: Duration = Duration::from_secs(300);
const REPO: &str = "s3-elasticsearch-repo";

// ------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------

fn shipped_addons_yaml() -> String {
    support::example_yaml("addons/elasticsearch.yaml")
}

/// The `sha256` values pinned in the shipped manifest (one per Function).
fn pinned_digests(yaml: &str) -> Vec<String> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| <serde_yaml::Value as serde::Deserialize>::deserialize(d).unwrap())
        .filter(|v| v["kind"].as_str() == Some("Function"))
        .map(|v| {
            v["spec"]["module"]["sha256"]
                .as_str()
                .expect("a shipped Function has spec.module.sha256")
                .to_string()
        })
        .collect()
}

/// The shipped Addon/Functions with the built module's digest, as `kstash up` registers them.
fn shipped_addons_pinned() -> String {
    let digest = module_sha256();
    shipped_addons_yaml()
        .lines()
        .map(|l| match l.find("sha256:") {
            Some(i) if l.trim_start().starts_with("sha256:") => {
                format!("{}sha256: {digest}", &l[..i])
            }
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn emulator(docs: usize, faults: Option<Faults>) -> RunningEmulator {
    support::es_emulator(ES_PW, docs, 16 << 10, 11, faults).await
}

/// 1,200 documents, every search answered `delay_ms` late: a backup that is still running a
/// moment after it started.
async fn slow_emulator(delay_ms: u64, seed: u64) -> RunningEmulator {
    emulator(1200, Some(support::slow(delay_ms, seed))).await
}

/// The operator as `kstash operator` runs it (`kstash_operator::serve`): metrics on a free
/// loopback port, optional leader election. `stop` is a graceful shutdown; `kill` aborts the
/// task as a crash would (no Lease release, running sessions dropped mid-way).
struct Operator {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    metrics: SocketAddr,
    identity: String,
    grace: Duration,
}

impl Operator {
    async fn start(
        cluster: &TestCluster,
        identity: &str,
        leader: Option<LeaderConfig>,
    ) -> Operator {
        Operator::start_with_grace(cluster, identity, leader, Duration::from_secs(10)).await
    }

    /// [`Operator::start`] with `grace` as the shutdown grace period.
    async fn start_with_grace(
        cluster: &TestCluster,
        identity: &str,
        leader: Option<LeaderConfig>,
        grace: Duration,
    ) -> Operator {
        let ctx = support::operator_context(
            cluster.cp.client().await.expect("client"),
            kstash_operator::OperatorConfig {
                identity: identity.to_string(),
                module_dir: Some(module_file().parent().unwrap().to_path_buf()),
                data_dir: cluster.dir.path().join(format!("operator-{identity}")),
                namespace: None,
            },
            2,
        );
        let (listener, metrics) = kstash_operator::metrics::bind("127.0.0.1:0".parse().unwrap())
            .await
            .expect("bind metrics");
        let shutdown = CancellationToken::new();
        let opts = ServeOptions {
            leader_election: leader,
            metrics: Some(listener),
            shutdown: shutdown.clone(),
            shutdown_grace: grace,
            webhook: None,
        };
        let task = tokio::spawn(async move {
            kstash_operator::serve(ctx, opts).await.expect("operator");
        });
        Operator {
            shutdown,
            task,
            metrics,
            identity: identity.to_string(),
            grace,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(self.grace + Duration::from_secs(30), self.task)
            .await
            .expect("the operator stops within 30 s of its grace period")
            .expect("operator task");
    }

    async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    async fn scrape(&self) -> String {
        http_get(self.metrics, "/metrics").await.1
    }
}

/// A plain HTTP/1.1 GET; returns (status code, body).
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect metrics");
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8(buf).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, body.to_string())
}

/// The value of the sample `name{labels}` (labels exactly as rendered) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .map(|v| v.trim().parse().unwrap())
}

/// The tutorial's environment: control plane, moto with bucket `esbackup`, namespace `demo`,
/// the two Secrets, the tutorial's BackupStorage (endpoint → moto) and RetentionPolicy, the
/// shipped Addon/Functions.
struct Tutorial {
    cluster: TestCluster,
    moto: Moto,
    /// In front of moto, when the BackupStorage goes through one.
    proxy: Option<support::CuttableProxy>,
}

impl Tutorial {
    async fn start() -> Tutorial {
        Tutorial::start_with(true, false).await
    }

    /// [`Tutorial::start`], with or without the storage Secret, and with the BackupStorage's
    /// endpoint on a [`support::CuttableProxy`] in front of moto when `proxy` is set.
    async fn start_with(storage_secret: bool, proxy: bool) -> Tutorial {
        let cluster = TestCluster::start().await;
        let moto = Moto::start();
        moto.create_bucket("esbackup");
        cluster.create_namespace(NS).await;
        if storage_secret {
            cluster.create_s3_secret(NS, "s3-secret").await;
        }
        cluster
            .create_secret(NS, "encrypt-secret", &[("RESTIC_PASSWORD", RESTIC_PW)])
            .await;
        let mut storage = support::tutorial_backup_storage(&moto.endpoint(), "esbackup");
        let proxy = match proxy {
            true => Some(support::CuttableProxy::start(moto.port).await),
            false => None,
        };
        if let Some(p) = &proxy {
            storage = storage.replace(&moto.endpoint(), &p.endpoint());
        }
        cluster.apply_yaml(&storage);
        cluster.apply_yaml(&support::tutorial_yaml("retentionpolicy.yaml"));
        cluster.apply_yaml(&shipped_addons_pinned());
        Tutorial {
            cluster,
            moto,
            proxy,
        }
    }

    /// What KubeDB creates for Elasticsearch `name`: its auth Secret and AppBinding (TLS CA in
    /// `caBundle`), pointing at `emu`, with `password`.
    async fn appbinding(&self, name: &str, emu: &RunningEmulator, password: &str) {
        support::es_database(&self.cluster, NS, name, emu, password, false).await;
    }

    fn apply_example(&self, file: &str) {
        self.cluster
            .apply_file(&support::repo_root().join("examples/auto-backup").join(file));
    }

    /// `restic <args>` on the repository of `dir` (KubeStash layout, session `frequent-backup`).
    fn restic(&self, dir: &str, args: &[&str]) -> std::process::Output {
        let repo = format!(
            "s3:{}/esbackup/elastic/{dir}/repository/v1/frequent-backup/dump",
            self.moto.endpoint()
        );
        Command::new(restic_bin())
            .args(args)
            .env("RESTIC_REPOSITORY", &repo)
            .env("RESTIC_PASSWORD", RESTIC_PW)
            .env("AWS_ACCESS_KEY_ID", support::S3_ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", support::S3_SECRET_KEY)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env(
                "RESTIC_CACHE_DIR",
                self.cluster.dir.path().join("restic-cache"),
            )
            .output()
            .expect("run restic")
    }

    /// Keys of the bucket under `prefix` (S3 ListObjectsV2 on moto).
    fn bucket_keys(&self, prefix: &str) -> Vec<String> {
        self.moto.keys("esbackup", prefix)
    }

    async fn sessions_of(&self, bc: &str) -> Vec<BackupSession> {
        let api: Api<BackupSession> = self.cluster.api(NS);
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|s| s.spec.invoker.as_ref().map(|i| i.name.as_str()) == Some(bc))
            .collect()
    }

    /// Waits for a BackupSession of `bc` (other than those in `seen`) to complete; returns it.
    async fn next_completed_session(&self, bc: &str, seen: &[String]) -> BackupSession {
        wait_for(
            &format!("a completed BackupSession of {bc}"),
            TIMEOUT,
            || async {
                self.sessions_of(bc).await.into_iter().find(|s| {
                    !seen.contains(&s.name_any())
                        && s.status
                            .as_ref()
                            .and_then(|st| st.phase)
                            .is_some_and(|p| p.is_completed())
                })
            },
        )
        .await
    }

    /// Creates a BackupSession of `bc` as `kubectl kstash trigger` / the scheduler would.
    async fn trigger(&self, bc: &str, unix: i64) -> String {
        let name = kstash_api::names::backup_session_name(bc, "frequent-backup", unix);
        let bs: BackupSession = serde_json::from_value(serde_json::json!({
            "apiVersion": "core.kubestash.com/v1alpha1", "kind": "BackupSession",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"invoker": {"apiGroup": "core.kubestash.com", "kind": "BackupConfiguration", "name": bc},
                     "session": "frequent-backup"}
        }))
        .unwrap();
        self.cluster
            .api::<BackupSession>(NS)
            .create(&PostParams::default(), &bs)
            .await
            .expect("create BackupSession");
        name
    }

    /// [`Tutorial::trigger`] for `unix` = now + `secs` (distinct names for distinct offsets).
    async fn trigger_in(&self, bc: &str, secs: i64) -> String {
        self.trigger(bc, jiff::Timestamp::now().as_second() + secs)
            .await
    }

    /// Waits for session `name` to complete and asserts it Succeeded (else shows why).
    async fn expect_succeeded(&self, name: &str) -> BackupSession {
        let s = self.wait_session(name).await;
        assert_eq!(phase_of(&s), "Succeeded", "{}", messages(self, &s).await);
        s
    }

    async fn wait_session(&self, name: &str) -> BackupSession {
        let api: Api<BackupSession> = self.cluster.api(NS);
        wait_for_object(&api, name, TIMEOUT, |s| {
            s.status
                .as_ref()
                .and_then(|st| st.phase)
                .is_some_and(|p| p.is_completed())
        })
        .await
    }

    /// Restores `repository`'s latest Snapshot into Elasticsearch `target`; returns the session.
    async fn restore(&self, name: &str, target: &str, repository: &str) -> RestoreSession {
        self.cluster.apply_yaml(&format!(
            r#"apiVersion: core.kubestash.com/v1alpha1
kind: RestoreSession
metadata:
  name: {name}
  namespace: {NS}
spec:
  target: {{apiGroup: kubedb.com, kind: Elasticsearch, name: {target}, namespace: {NS}}}
  dataSource:
    repository: {repository}
    snapshot: latest
    encryptionSecret: {{name: encrypt-secret, namespace: {NS}}}
  addon:
    name: elasticsearch-addon
    tasks:
    - name: logical-backup-restore
"#
        ));
        let api: Api<RestoreSession> = self.cluster.api(NS);
        restore_finished(&api, name).await
    }

    /// A KubeDB Elasticsearch object `name` (restore target) with its AppBinding.
    async fn database(&self, name: &str, emu: &RunningEmulator) {
        support::es_database(&self.cluster, NS, name, emu, ES_PW, true).await;
    }
}

/// Waits for RestoreSession `name` to reach a final phase; returns it.
async fn restore_finished(api: &Api<RestoreSession>, name: &str) -> RestoreSession {
    wait_for_object(api, name, TIMEOUT, |r| {
        matches!(
            r.status
                .as_ref()
                .and_then(|s| s.phase)
                .map(|p| format!("{p:?}"))
                .as_deref(),
            Some("Succeeded" | "Failed" | "Invalid" | "Unknown")
        )
    })
    .await
}

fn phase_of(s: &BackupSession) -> String {
    s.status
        .as_ref()
        .and_then(|st| st.phase)
        .map(|p| format!("{p:?}"))
        .unwrap_or_default()
}

/// Every condition message of a session and of its Snapshots (for failure assertions).
async fn messages(t: &Tutorial, session: &BackupSession) -> String {
    let mut out = serde_yaml::to_string(&session.status).unwrap();
    let snaps: Api<Snapshot> = t.cluster.api(NS);
    for s in snaps.list(&ListParams::default()).await.unwrap().items {
        if s.spec.backup_session.as_deref() == Some(session.name_any().as_str()) {
            out.push_str(&serde_yaml::to_string(&s.status).unwrap());
        }
    }
    out
}

// ------------------------------------------------------------------------------------------
// Tests
// ------------------------------------------------------------------------------------------

/// The shipped manifest pins the module `scripts/build-addons.sh` builds (run
/// `scripts/build-addons.sh --pin` after changing the addon).
#[test]
fn shipped_addon_manifest_pins_the_built_module() {
    let built = module_sha256();
    let pinned = pinned_digests(&shipped_addons_yaml());
    assert_eq!(
        pinned.len(),
        2,
        "examples/addons/elasticsearch.yaml has a backup and a restore Function"
    );
    for p in pinned {
        assert_eq!(
            p, built,
            "examples/addons/elasticsearch.yaml pins {p} but the built module is {built}: run scripts/build-addons.sh --pin"
        );
    }
}

/// Tutorial section 1 (default blueprint): auto-backup → Ready BackupConfiguration → initial
/// BackupSession → Snapshot + bucket layout + restic-checkable repository; retention after
/// more sessions than `successfulSnapshots.last`; restore into a fresh target; `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tutorial_default_blueprint_backup_retention_restore_and_metrics() {
    let t = Tutorial::start().await;
    let source = emulator(1500, None).await;
    t.appbinding("es-quickstart", &source, ES_PW).await;
    let op = Operator::start(&t.cluster, "e2e-default", None).await;

    t.apply_example("default-backupblueprint.yaml");
    t.apply_example("sample-es.yaml");

    // BackupConfiguration `appbinding-es-quickstart`, Ready with the tutorial's conditions.
    let bcs: Api<BackupConfiguration> = t.cluster.api(NS);
    let bc = wait_for_object(&bcs, "appbinding-es-quickstart", TIMEOUT, |b| {
        b.status
            .as_ref()
            .and_then(|s| s.phase)
            .map(|p| format!("{p:?}"))
            .as_deref()
            == Some("Ready")
    })
    .await;
    let st = bc.status.clone().unwrap();
    assert!(condition_true(&st.conditions, "ValidationPassed"), "{st:?}");
    assert_eq!(st.target_found, Some(true));
    let session = st
        .sessions
        .iter()
        .find(|s| s.name == "frequent-backup")
        .expect("session status");
    assert!(
        condition_true(&session.conditions, "SchedulerEnsured"),
        "{session:?}"
    );
    assert!(
        condition_true(&session.conditions, "InitialBackupTriggered"),
        "{session:?}"
    );
    assert_eq!(st.repositories.first().map(|r| r.name.as_str()), Some(REPO));
    let target = bc.spec.target.clone().expect("target");
    assert_eq!(
        (target.kind.as_deref(), target.name.as_str()),
        (Some("Elasticsearch"), "es-quickstart")
    );

    // The initial backup succeeds.
    let first = t
        .next_completed_session("appbinding-es-quickstart", &[])
        .await;
    assert_eq!(
        phase_of(&first),
        "Succeeded",
        "{}",
        messages(&t, &first).await
    );

    // Its Snapshot: the generator's name, labels, the dump component.
    let snap_name = kstash_api::names::snapshot_name(REPO, &first.name_any());
    let snaps: Api<Snapshot> = t.cluster.api(NS);
    let snap = wait_for_object(&snaps, &snap_name, TIMEOUT, |s| {
        s.status
            .as_ref()
            .and_then(|st| st.phase)
            .map(|p| format!("{p:?}"))
            .as_deref()
            == Some("Succeeded")
    })
    .await;
    assert_eq!(
        snap.labels()
            .get("kubestash.com/repo-name")
            .map(String::as_str),
        Some(REPO)
    );
    assert_eq!(
        snap.labels()
            .get("kubestash.com/app-ref-name")
            .map(String::as_str),
        Some("es-quickstart")
    );
    assert_eq!(snap.spec.session.as_deref(), Some("frequent-backup"));
    let sst = snap.status.clone().unwrap();
    assert!(
        condition_true(&sst.conditions, "SnapshotMetadataUploaded"),
        "{sst:?}"
    );
    assert!(
        condition_true(&sst.conditions, "RecentSnapshotListUpdated"),
        "{sst:?}"
    );
    let dump = sst.components.get("dump").expect("components.dump");
    assert_eq!(
        dump.driver.as_ref().map(|d| format!("{d:?}")).as_deref(),
        Some("Restic")
    );
    assert_eq!(dump.integrity, Some(true));
    assert!(!dump.restic_stats.is_empty(), "{dump:?}");
    assert!(dump.size.is_some() && dump.duration.is_some(), "{dump:?}");
    assert_eq!(
        dump.path.as_deref(),
        Some("repository/v1/frequent-backup/dump")
    );

    // The Repository's status.
    let repos: Api<Repository> = t.cluster.api(NS);
    let repo = wait_for_object(&repos, REPO, TIMEOUT, |r| {
        r.status
            .as_ref()
            .is_some_and(|s| s.snapshot_count.unwrap_or(0) >= 1 && s.integrity == Some(true))
    })
    .await;
    assert!(repo.status.as_ref().unwrap().size.is_some());

    // The bucket: KubeStash layout and a repository the restic CLI checks and dumps.
    let keys = t.bucket_keys("elastic/");
    for want in [
        "elastic/metadata.yaml".to_string(),
        "elastic/es/repository.yaml".to_string(),
        format!("elastic/es/snapshots/{snap_name}.yaml"),
    ] {
        assert!(keys.contains(&want), "bucket lacks {want}: {keys:?}");
    }
    let check = t.restic("es", &["check", "--read-data"]);
    assert!(
        check.status.success(),
        "restic check: {}",
        String::from_utf8_lossy(&check.stderr)
    );

    // Retention: 5 more sessions (6 successful > successfulSnapshots.last = 5).
    let mut done = vec![first.name_any()];
    let base = jiff::Timestamp::now().as_second();
    for i in 0..5 {
        let name = t
            .trigger("appbinding-es-quickstart", base + 60 * (i + 1))
            .await;
        t.expect_succeeded(&name).await;
        done.push(name);
    }
    let kept = wait_for("exactly 5 Snapshots after retention", TIMEOUT, || async {
        let items: Vec<Snapshot> = snaps
            .list(&ListParams::default().labels(&format!("kubestash.com/repo-name={REPO}")))
            .await
            .unwrap()
            .items;
        (items.len() == 5).then_some(items)
    })
    .await;
    let kept_names: Vec<String> = kept.iter().map(|s| s.name_any()).collect();
    assert!(
        !kept_names.contains(&snap_name),
        "the oldest Snapshot was pruned: {kept_names:?}"
    );
    let out = t.restic("es", &["snapshots", "--json"]);
    assert!(
        out.status.success(),
        "restic snapshots: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.len(), 5, "restic repository keeps 5 snapshots");

    // Restore into a fresh Elasticsearch: every user index with every document.
    let fresh = emulator(0, None).await;
    t.database("restore-es", &fresh).await;
    let rs = t.restore("restore-default", "restore-es", REPO).await;
    assert_eq!(
        rs.status
            .as_ref()
            .and_then(|s| s.phase)
            .map(|p| format!("{p:?}"))
            .as_deref(),
        Some("Succeeded"),
        "{}",
        serde_yaml::to_string(&rs.status).unwrap()
    );
    let want = user_indices(&source);
    assert_eq!(want.len(), 3);
    assert_eq!(user_indices(&fresh), want);

    // Metrics agree with the API objects.
    let text = op.scrape().await;
    assert_eq!(sample(&text, "kstash_operator_up"), Some(1.0), "{text}");
    assert_eq!(sample(&text, "kstash_operator_leader"), Some(1.0), "{text}");
    let succeeded = t
        .sessions_of("appbinding-es-quickstart")
        .await
        .iter()
        .filter(|s| phase_of(s) == "Succeeded")
        .count();
    let l = r#"namespace="demo",invoker="appbinding-es-quickstart",session="frequent-backup""#;
    assert_eq!(
        sample(
            &text,
            &format!("kstash_backup_sessions{{{l},phase=\"Succeeded\"}}")
        ),
        Some(succeeded as f64),
        "{text}"
    );
    assert!(
        sample(
            &text,
            &format!("kstash_backup_last_success_timestamp_seconds{{{l}}}")
        )
        .is_some(),
        "{text}"
    );
    let rl = format!(r#"namespace="demo",repository="{REPO}""#);
    let count = repos
        .get(REPO)
        .await
        .unwrap()
        .status
        .unwrap()
        .snapshot_count
        .unwrap();
    assert_eq!(
        sample(&text, &format!("kstash_repository_snapshot_count{{{rl}}}")),
        Some(count as f64),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!("kstash_snapshots{{{rl},phase=\"Succeeded\"}}")
        ),
        Some(5.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("kstash_repository_integrity{{{rl}}}")),
        Some(1.0),
        "{text}"
    );
    let documents: usize = want.iter().map(|(_, n)| n).sum();
    assert_eq!(
        sample(&text, &format!("kstash_snapshot_last_documents{{{rl}}}")),
        Some(documents as f64),
        "every document of the source is counted in the newest snapshot: {text}"
    );
    assert!(
        sample(&text, &format!("kstash_snapshot_last_stream_bytes{{{rl}}}"))
            .is_some_and(|b| b > 0.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"kstash_restore_sessions{namespace="demo",phase="Succeeded"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        http_get(op.metrics, "/healthz").await,
        (200, "ok\n".to_string())
    );
    assert_eq!(http_get(op.metrics, "/nope").await.0, 404);

    // Deleting the BackupStorage (the tutorial's is `WipeOut`) deletes its Repository and,
    // through the Snapshot controller, every Snapshot: none stays Terminating. (The
    // BackupConfiguration still names the storage, so it creates its Repository again: a new
    // object, not the one that was deleted.)
    let storages: Api<BackupStorage> = t.cluster.api(NS);
    let old_repo = repos.get(REPO).await.unwrap().metadata.uid;
    storages
        .delete("s3-storage", &Default::default())
        .await
        .expect("delete the BackupStorage");
    let snaps: Api<Snapshot> = t.cluster.api(NS);
    wait_for(
        "the BackupStorage, its Repository and its Snapshots to be gone",
        Duration::from_secs(90),
        || async {
            let left = snaps.list(&Default::default()).await.ok()?.items;
            let storage_gone = storages.get_opt("s3-storage").await.ok()?.is_none();
            let repo = repos.get_opt(REPO).await.ok()?;
            let repo_gone = repo.is_none_or(|r| r.metadata.uid != old_repo);
            (left.is_empty() && storage_gone && repo_gone).then_some(())
        },
    )
    .await;
    op.stop().await;
}

/// Tutorial section 2 (customized blueprint with variables): schedule, repository name,
/// namespace and args come from the `variables.kubestash.com/*` annotations.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tutorial_customized_blueprint_with_variables() {
    let t = Tutorial::start().await;
    // The custom blueprint names BackupStorage `s3-store` (spec §11.12): the same storage under that name.
    t.cluster.apply_yaml(
        &support::tutorial_backup_storage(&t.moto.endpoint(), "esbackup")
            .replace("name: s3-storage", "name: s3-store")
            .replace("default: true", "default: false"),
    );
    let source = emulator(800, None).await;
    t.appbinding("es-quickstart-2", &source, ES_PW).await;
    let op = Operator::start(&t.cluster, "e2e-custom", None).await;
    t.apply_example("custom-backup-blueprint.yaml");
    t.apply_example("sample-es-2.yaml");

    let bcs: Api<BackupConfiguration> = t.cluster.api(NS);
    let bc = wait_for_object(&bcs, "appbinding-es-quickstart-2", TIMEOUT, |b| {
        b.status
            .as_ref()
            .and_then(|s| s.phase)
            .map(|p| format!("{p:?}"))
            .as_deref()
            == Some("Ready")
    })
    .await;
    let s = &bc.spec.sessions[0];
    assert_eq!(s.config.scheduler.as_ref().unwrap().schedule, "*/5 * * * *");
    assert_eq!(s.repositories[0].name, REPO);
    assert_eq!(s.repositories[0].directory.as_deref(), Some("/ess"));
    let params = s.addon.as_ref().unwrap().tasks[0].params.clone().unwrap();
    assert_eq!(params["args"], "--ignoreType=template,settings");
    assert_eq!(
        bc.spec.backends[0].storage_ref.as_ref().unwrap().name,
        "s3-store"
    );
    let next = bc.status.as_ref().unwrap().sessions[0]
        .next_schedule
        .clone();
    assert!(
        next.is_some(),
        "status.sessions[0].nextSchedule is set: {:?}",
        bc.status
    );

    let first = t
        .next_completed_session("appbinding-es-quickstart-2", &[])
        .await;
    assert_eq!(
        phase_of(&first),
        "Succeeded",
        "{}",
        messages(&t, &first).await
    );
    let snap_name = kstash_api::names::snapshot_name(REPO, &first.name_any());
    let snaps: Api<Snapshot> = t.cluster.api(NS);
    wait_for_object(&snaps, &snap_name, TIMEOUT, |s| {
        s.status
            .as_ref()
            .and_then(|st| st.phase)
            .map(|p| format!("{p:?}"))
            .as_deref()
            == Some("Succeeded")
    })
    .await;
    let keys = t.bucket_keys("elastic/ess/");
    assert!(
        keys.contains(&format!("elastic/ess/snapshots/{snap_name}.yaml")),
        "{keys:?}"
    );
    let check = t.restic("ess", &["check", "--read-data"]);
    assert!(
        check.status.success(),
        "restic check: {}",
        String::from_utf8_lossy(&check.stderr)
    );

    let fresh = emulator(0, None).await;
    t.database("restore-es-2", &fresh).await;
    let rs = t.restore("restore-custom", "restore-es-2", REPO).await;
    assert_eq!(
        rs.status
            .as_ref()
            .and_then(|s| s.phase)
            .map(|p| format!("{p:?}"))
            .as_deref(),
        Some("Succeeded"),
        "{}",
        serde_yaml::to_string(&rs.status).unwrap()
    );
    assert_eq!(user_indices(&fresh), user_indices(&source));
    op.stop().await;
}

/// A wrong Elasticsearch password fails the session with a message that says so; after the
/// Secret is fixed the next session succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_es_password_fails_clearly_then_the_next_backup_succeeds() {
    let t = Tutorial::start().await;
    let source = emulator(300, None).await;
    t.appbinding("es-quickstart", &source, "not-the-password")
        .await;
    let op = Operator::start(&t.cluster, "e2e-badpw", None).await;
    t.apply_example("default-backupblueprint.yaml");
    t.apply_example("sample-es.yaml");

    let first = t
        .next_completed_session("appbinding-es-quickstart", &[])
        .await;
    assert_eq!(phase_of(&first), "Failed");
    let msgs = messages(&t, &first).await;
    assert!(
        msgs.contains("401") || msgs.to_lowercase().contains("auth"),
        "the failure names the authentication error:\n{msgs}"
    );

    t.cluster
        .create_secret(
            NS,
            "es-quickstart-elastic-cred",
            &[("username", "elastic"), ("password", ES_PW)],
        )
        .await;
    let name = t.trigger_in("appbinding-es-quickstart", 60).await;
    t.expect_succeeded(&name).await;
    op.stop().await;
}

/// The operator killed mid-backup: after a restart the interrupted session reaches a terminal
/// phase (never stays Running) and the next backup succeeds (the dead executor's restic lock
/// does not block it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operator_killed_mid_backup_then_the_session_ends_and_the_next_succeeds() {
    let t = Tutorial::start().await;
    // Every search request is slowed down so the backup is still running when the operator dies.
    let source = slow_emulator(300, 3).await;
    t.appbinding("es-quickstart", &source, ES_PW).await;
    let op = Operator::start(&t.cluster, "e2e-crash-1", None).await;
    t.apply_example("default-backupblueprint.yaml");
    t.apply_example("sample-es.yaml");

    let running = wait_for("a Running BackupSession", TIMEOUT, || async {
        t.sessions_of("appbinding-es-quickstart")
            .await
            .into_iter()
            .find(|s| phase_of(s) == "Running")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    op.kill().await;
    let api: Api<BackupSession> = t.cluster.api(NS);
    assert_eq!(
        phase_of(&api.get(&running.name_any()).await.unwrap()),
        "Running",
        "the session was still running when the operator died"
    );

    let op2 = Operator::start(&t.cluster, "e2e-crash-2", None).await;
    let ended = t.wait_session(&running.name_any()).await;
    assert!(
        matches!(phase_of(&ended).as_str(), "Failed" | "Succeeded"),
        "interrupted session ends terminal: {:?}",
        ended.status
    );
    let name = t.trigger_in("appbinding-es-quickstart", 60).await;
    t.expect_succeeded(&name).await;
    op2.stop().await;
}

/// Two operators on one Lease: exactly one leads; a graceful stop hands over at once; a killed
/// leader is replaced after the lease expires; `/metrics` says who leads.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_election_one_leads_and_the_lease_is_handed_over() {
    let cluster = TestCluster::start().await;
    let lease_cfg = |id: &str| {
        let mut c = LeaderConfig::new("default", "kstash-operator", id);
        c.lease_duration = Duration::from_secs(4);
        c.renew_deadline = Duration::from_secs(3);
        c.retry_period = Duration::from_millis(500);
        c
    };
    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), "default");
    let holder = || async {
        leases
            .get_opt("kstash-operator")
            .await
            .unwrap()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .filter(|h| !h.is_empty())
    };
    let leader_metric = |op: &Operator| {
        let addr = op.metrics;
        async move {
            sample(
                &http_get(addr, "/metrics").await.1,
                "kstash_operator_leader",
            )
        }
    };

    let a = Operator::start(&cluster, "op-a", Some(lease_cfg("op-a"))).await;
    let b = Operator::start(&cluster, "op-b", Some(lease_cfg("op-b"))).await;
    let first = wait_for("a leader", Duration::from_secs(30), || async {
        holder().await
    })
    .await;
    let (leader, follower) = if first == a.identity { (a, b) } else { (b, a) };
    // Stable: over several retry periods the holder does not change and only one says it leads.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(holder().await.as_deref(), Some(leader.identity.as_str()));
        assert_eq!(leader_metric(&leader).await, Some(1.0));
        assert_eq!(leader_metric(&follower).await, Some(0.0));
    }
    let transitions0 = leases
        .get("kstash-operator")
        .await
        .unwrap()
        .spec
        .unwrap()
        .lease_transitions
        .unwrap_or(0);

    // Graceful stop releases the lease: the follower takes over well before the 4 s expiry.
    let t0 = Instant::now();
    let old = leader.identity.clone();
    leader.stop().await;
    wait_for("the follower to lead", Duration::from_secs(10), || async {
        (holder().await.as_deref() == Some(follower.identity.as_str())).then_some(())
    })
    .await;
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "handover after release took {:?}",
        t0.elapsed()
    );
    wait_for(
        "the new leader's metric",
        Duration::from_secs(5),
        || async { (leader_metric(&follower).await == Some(1.0)).then_some(()) },
    )
    .await;

    // The old leader comes back as a follower; the new leader is killed (no release): the
    // lease is taken over only after it expires.
    let back = Operator::start(&cluster, &old, Some(lease_cfg(&old))).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(holder().await.as_deref(), Some(follower.identity.as_str()));
    assert_eq!(leader_metric(&back).await, Some(0.0));
    let t1 = Instant::now();
    follower.kill().await;
    wait_for(
        "the restarted operator to lead",
        Duration::from_secs(20),
        || async { (holder().await.as_deref() == Some(old.as_str())).then_some(()) },
    )
    .await;
    assert!(
        t1.elapsed() >= Duration::from_secs(3),
        "a killed leader's lease is honoured until it expires ({:?})",
        t1.elapsed()
    );
    let lease = leases.get("kstash-operator").await.unwrap().spec.unwrap();
    assert_eq!(lease.lease_transitions.unwrap_or(0), transitions0 + 2);
    assert_eq!(lease.lease_duration_seconds, Some(4));
    back.stop().await;
}

/// The storage Secret does not exist: the BackupStorage says which Secret is missing, the
/// configuration is not Ready and no backup runs; once the Secret is created everything goes
/// Ready and the initial backup succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storage_secret_missing_is_reported_then_the_backup_runs_once_it_exists() {
    let t = Tutorial::start_with(false, false).await;
    let source = emulator(300, None).await;
    t.appbinding("es-quickstart", &source, ES_PW).await;
    let op = Operator::start(&t.cluster, "e2e-no-secret", None).await;
    t.apply_example("default-backupblueprint.yaml");
    t.apply_example("sample-es.yaml");

    let storages: Api<BackupStorage> = t.cluster.api(NS);
    let bs = wait_for_object(&storages, "s3-storage", TIMEOUT, |b| {
        b.status.as_ref().is_some_and(|s| {
            condition(&s.conditions, "BackendSecretFound")
                .is_some_and(|c| c.status == kstash_api::shared::ConditionStatus::False)
        })
    })
    .await;
    let c = condition(
        &bs.status.as_ref().unwrap().conditions,
        "BackendSecretFound",
    )
    .unwrap()
    .clone();
    assert!(
        c.message.as_deref().unwrap_or("").contains("s3-secret"),
        "the condition names the missing Secret: {c:?}"
    );
    let bcs: Api<BackupConfiguration> = t.cluster.api(NS);
    let bc = wait_for_object(&bcs, "appbinding-es-quickstart", TIMEOUT, |b| {
        b.status.as_ref().and_then(|s| s.phase).is_some()
    })
    .await;
    let phase = bc.status.as_ref().and_then(|s| s.phase);
    assert_ne!(
        phase.map(|p| format!("{p:?}")).as_deref(),
        Some("Ready"),
        "a configuration whose storage has no Secret is not Ready: {:?}",
        bc.status
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        t.sessions_of("appbinding-es-quickstart")
            .await
            .iter()
            .all(|s| phase_of(s) != "Succeeded"),
        "no backup succeeds without storage credentials"
    );

    t.cluster.create_s3_secret(NS, "s3-secret").await;
    wait_for_object(&storages, "s3-storage", TIMEOUT, |b| {
        b.status.as_ref().is_some_and(|s| {
            condition_true(&s.conditions, "BackendSecretFound")
                && condition_true(&s.conditions, "BackendInitialized")
        })
    })
    .await;
    let s = wait_for(
        "a Succeeded BackupSession after the Secret appeared",
        TIMEOUT,
        || async {
            t.sessions_of("appbinding-es-quickstart")
                .await
                .into_iter()
                .find(|s| phase_of(s) == "Succeeded")
        },
    )
    .await;
    assert_eq!(phase_of(&s), "Succeeded");
    op.stop().await;
}

/// The S3 endpoint goes down while a backup runs: the session fails with a message that names
/// the storage, the earlier snapshot still passes `restic check --read-data`, no lock is left
/// behind, and once S3 is back the next session succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_down_during_a_session_fails_it_clearly_then_the_next_succeeds() {
    let t = Tutorial::start_with(true, true).await;
    let proxy = t.proxy.as_ref().expect("the proxy started");
    let source = slow_emulator(400, 5).await;
    t.appbinding("es-quickstart", &source, ES_PW).await;
    let op = Operator::start(&t.cluster, "e2e-s3-down", None).await;
    t.apply_example("default-backupblueprint.yaml");
    t.apply_example("sample-es.yaml");
    let first = t
        .next_completed_session("appbinding-es-quickstart", &[])
        .await;
    assert_eq!(
        phase_of(&first),
        "Succeeded",
        "{}",
        messages(&t, &first).await
    );

    // The outage, in the middle of the next backup.
    let name = t.trigger_in("appbinding-es-quickstart", 60).await;
    let api: Api<BackupSession> = t.cluster.api(NS);
    // Cut as soon as the session runs: it cannot finish without writing to S3 afterwards (at
    // the least its snapshot), and a fast backup could otherwise complete before a later cut.
    wait_for_object(&api, &name, TIMEOUT, |s| phase_of(s) == "Running").await;
    proxy.cut();
    let failed = t.wait_session(&name).await;
    proxy.restore();
    assert_eq!(phase_of(&failed), "Failed", "{:?}", failed.status);
    let why = messages(&t, &failed).await;
    assert!(
        why.contains("s3-storage") || why.contains("esbackup") || why.contains("127.0.0.1"),
        "the failure names the storage: {why}"
    );

    // The earlier snapshot is intact (checked without locking: the failed backup's lock may
    // still be on its way out).
    let check = t.restic("es", &["--no-lock", "check", "--read-data"]);
    assert!(
        check.status.success(),
        "restic check after the outage: {}",
        String::from_utf8_lossy(&check.stderr)
    );

    // S3 is back: the next session succeeds, and leaves no lock behind (the failed session's
    // lock, if its removal failed during the outage, is cleared by the next one).
    let next = t.trigger_in("appbinding-es-quickstart", 120).await;
    t.expect_succeeded(&next).await;
    let locks = t.restic("es", &["list", "locks", "--no-lock"]);
    assert!(locks.status.success());
    assert!(
        String::from_utf8_lossy(&locks.stdout).trim().is_empty(),
        "no lock is left: {}",
        String::from_utf8_lossy(&locks.stdout)
    );
    let check = t.restic("es", &["check", "--read-data"]);
    assert!(
        check.status.success(),
        "restic check (locking) after the next session: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    op.stop().await;
}

/// A graceful shutdown (SIGTERM in a pod) lets a running session finish within the grace
/// period; when the grace period is too short, the session is failed with a message saying so
/// (never left `Running`), and the next operator's session succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_shutdown_finishes_a_running_session_or_fails_it_cleanly() {
    let t = Tutorial::start().await;
    let source = slow_emulator(400, 9).await;
    t.appbinding("es-quickstart", &source, ES_PW).await;
    let api: Api<BackupSession> = t.cluster.api(NS);

    // A long grace period: the initial backup, running at shutdown, finishes.
    let op =
        Operator::start_with_grace(&t.cluster, "e2e-grace-1", None, Duration::from_secs(120)).await;
    t.apply_example("default-backupblueprint.yaml");
    t.apply_example("sample-es.yaml");
    let running = wait_for("a Running BackupSession", TIMEOUT, || async {
        t.sessions_of("appbinding-es-quickstart")
            .await
            .into_iter()
            .find(|s| phase_of(s) == "Running")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    op.stop().await;
    let done = api.get(&running.name_any()).await.unwrap();
    assert_eq!(
        phase_of(&done),
        "Succeeded",
        "the session running at shutdown finished within the grace period: {}",
        messages(&t, &done).await
    );

    // A grace period shorter than the backup: the session is failed, and says why.
    let op =
        Operator::start_with_grace(&t.cluster, "e2e-grace-2", None, Duration::from_millis(300))
            .await;
    let name = t.trigger_in("appbinding-es-quickstart", 60).await;
    wait_for_object(&api, &name, TIMEOUT, |s| phase_of(s) == "Running").await;
    op.stop().await;
    let stopped = api.get(&name).await.unwrap();
    assert_eq!(phase_of(&stopped), "Failed", "{:?}", stopped.status);
    let why = messages(&t, &stopped).await;
    assert!(
        why.contains("shut down"),
        "the failure says the operator shut down: {why}"
    );

    // The next operator runs the next session.
    let op = Operator::start(&t.cluster, "e2e-grace-3", None).await;
    let next = t.trigger_in("appbinding-es-quickstart", 120).await;
    t.expect_succeeded(&next).await;
    op.stop().await;
}

// ------------------------------------------------------------------------------------------
// A TCP addon through the operator: KubeDB Redis + AppBinding (redis://), real redis-servers
// ------------------------------------------------------------------------------------------

/// The `requirepass` of the test's Redis servers (in the AppBinding's auth Secret).
const REDIS_PW: &str = "redis e2e p@ss";

/// What a Redis holds, as `redis-cli` shows it.
trait Contents {
    fn contents(&self) -> std::collections::BTreeMap<(u32, String), (String, bool, String)>;
}

impl Contents for RedisServer {
    /// Every key of databases 0–15, read with `redis-cli`: (db, key) → (type, has a TTL, value).
    fn contents(&self) -> std::collections::BTreeMap<(u32, String), (String, bool, String)> {
        let mut all = std::collections::BTreeMap::new();
        for db in 0..16 {
            let keys = self.cli(db, &["--scan"]);
            for key in keys.lines().map(|k| k.trim_matches('"')) {
                let ty = self.cli(db, &["TYPE", key]);
                let ttl = self.cli(db, &["PTTL", key]);
                // Without redis-cli's `N) ` numbering.
                let items = |args: &[&str]| -> Vec<String> {
                    self.cli(db, args)
                        .lines()
                        .map(|l| l.split_once(") ").map_or(l, |x| x.1).to_string())
                        .collect()
                };
                // Unordered members (set members, hash field/value pairs), sorted.
                let sorted = |mut l: Vec<String>| {
                    l.sort();
                    l.join("\n")
                };
                let value = match ty.as_str() {
                    "string" => self.cli(db, &["GET", key]),
                    "list" => self.cli(db, &["LRANGE", key, "0", "-1"]),
                    "hash" => sorted(
                        items(&["HGETALL", key])
                            .chunks(2)
                            .map(|p| p.join(" => "))
                            .collect(),
                    ),
                    "set" => sorted(items(&["SMEMBERS", key])),
                    "zset" => self.cli(db, &["ZRANGE", key, "0", "-1", "WITHSCORES"]),
                    "stream" => self.cli(db, &["XRANGE", key, "-", "+"]),
                    other => panic!("unexpected type {other} of {key}"),
                };
                let has_ttl = !ttl.contains("-1");
                all.insert((db, key.to_string()), (ty, has_ttl, value));
            }
        }
        all
    }
}

/// What KubeDB creates for Redis `name`: the auth Secret (user `default`, the `requirepass`)
/// and the AppBinding, here with `clientConfig.url` `redis://127.0.0.1:<port>`; with
/// `kubedb_object`, the `Redis` object itself (without annotations).
async fn redis_database(t: &Tutorial, name: &str, server: &RedisServer, kubedb_object: bool) {
    t.cluster
        .create_secret(
            NS,
            &format!("{name}-auth"),
            &[("username", "default"), ("password", REDIS_PW)],
        )
        .await;
    if kubedb_object {
        t.cluster.apply_yaml(&format!(
            "apiVersion: kubedb.com/v1\nkind: Redis\nmetadata:\n  name: {name}\n  namespace: {NS}\n\
             spec:\n  version: 7.2.4\n  mode: Standalone\n"
        ));
    }
    t.cluster.apply_yaml(&format!(
        r#"apiVersion: appcatalog.appscode.com/v1alpha1
kind: AppBinding
metadata:
  name: {name}
  namespace: {NS}
spec:
  appRef: {{apiGroup: kubedb.com, kind: Redis, name: {name}, namespace: {NS}}}
  type: kubedb.com/redis
  version: 7.2.4
  clientConfig:
    url: redis://127.0.0.1:{port}
  secret:
    name: {name}-auth
"#,
        port = server.port
    ));
}

/// The documents of `examples/<rel>` of kind `kind`.
fn example_of_kind(rel: &str, kind: &str) -> String {
    support::example_yaml(rel)
        .split("\n---\n")
        .filter(|d| d.lines().any(|l| l == format!("kind: {kind}")))
        .collect::<Vec<_>>()
        .join("\n---\n")
}

/// The documents of `examples/redis/<file>` of kind `kind`.
fn redis_example(file: &str, kind: &str) -> String {
    example_of_kind(&format!("redis/{file}"), kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_auto_backup_and_restore_through_the_operator() {
    let t = Tutorial::start().await;
    // The shipped Redis Addon/Functions, pinned to the module scripts/build-addons.sh builds.
    let redis_yaml = support::example_yaml("addons/redis.yaml");
    let built = support::addon_path("redis_addon.wasm");
    let digest = support::addon_sha256("redis_addon.wasm");
    assert!(
        pinned_digests(&redis_yaml).iter().all(|d| *d == digest),
        "examples/addons/redis.yaml pins another module than the built one: run scripts/build-addons.sh --pin"
    );
    t.cluster.apply_yaml(&redis_yaml);

    // The source Redis: keys of several types, with TTLs, in two logical databases.
    let source = RedisServer::start(REDIS_PW);
    for (db, args) in [
        (0, vec!["SET", "greeting", "hello world"]),
        (0, vec!["SET", "session:1", "tok", "EX", "86400"]),
        (0, vec!["RPUSH", "queue", "a", "b", "c"]),
        (0, vec!["HSET", "user:1", "name", "Ada", "lang", "en"]),
        (0, vec!["SADD", "tags", "x", "y", "z"]),
        (0, vec!["ZADD", "board", "1", "one", "2.5", "two"]),
        (0, vec!["XADD", "events", "1-1", "k", "v"]),
        (3, vec!["SET", "other-db", "yes"]),
        (3, vec!["RPUSH", "l3", "1"]),
    ] {
        source.cli(db, &args);
    }
    let want = source.contents();
    assert_eq!(want.len(), 9, "{want:?}");
    redis_database(&t, "redis-quickstart", &source, false).await;
    let op = Operator::start(&t.cluster, "e2e-redis", None).await;

    // The example's annotated Redis object and blueprint (examples/redis).
    t.cluster
        .apply_yaml(&redis_example("backupblueprint.yaml", "BackupBlueprint"));
    t.cluster
        .apply_yaml(&redis_example("sample-redis.yaml", "Redis"));

    let bcs: Api<BackupConfiguration> = t.cluster.api(NS);
    let bc = wait_for_object(&bcs, "appbinding-redis-quickstart", TIMEOUT, |b| {
        b.status
            .as_ref()
            .and_then(|s| s.phase)
            .map(|p| format!("{p:?}"))
            .as_deref()
            == Some("Ready")
    })
    .await;
    let target = bc.spec.target.clone().expect("target");
    assert_eq!(
        (
            target.api_group.as_deref(),
            target.kind.as_deref(),
            target.name.as_str()
        ),
        (Some("kubedb.com"), Some("Redis"), "redis-quickstart")
    );
    assert_eq!(bc.status.unwrap().target_found, Some(true));

    let first = t
        .next_completed_session("appbinding-redis-quickstart", &[])
        .await;
    assert_eq!(
        phase_of(&first),
        "Succeeded",
        "{}",
        messages(&t, &first).await
    );
    let snap_name = kstash_api::names::snapshot_name("s3-redis-repo", &first.name_any());
    let snaps: Api<Snapshot> = t.cluster.api(NS);
    let snap = wait_for_object(&snaps, &snap_name, TIMEOUT, |s| {
        s.status
            .as_ref()
            .and_then(|st| st.phase)
            .is_some_and(|p| format!("{p:?}") == "Succeeded")
    })
    .await;
    // The component is the one the addon declares (`tasks.components` of the module).
    let runtime = kstash_runtime::Runtime::new(Default::default()).unwrap();
    let addon = runtime
        .load(&std::fs::read(&built).unwrap(), &digest.parse().unwrap())
        .await
        .unwrap();
    let declared = addon
        .description()
        .tasks
        .iter()
        .find(|d| d.name == "logical-backup")
        .unwrap()
        .components
        .clone();
    let st = snap.status.clone().unwrap();
    assert_eq!(
        st.components.keys().cloned().collect::<Vec<_>>(),
        declared,
        "{st:?}"
    );
    let comp = &st.components[&declared[0]];
    assert_eq!(comp.integrity, Some(true), "{comp:?}");
    assert_eq!(
        comp.path.as_deref(),
        Some(format!("repository/v1/frequent-backup/{}", declared[0]).as_str())
    );
    // The addon's per-database counts: 7 keys in db0, 2 in db3.
    let parts: serde_json::Value = serde_json::from_str(
        snap.annotations()
            .get(kstash_api::constants::annotations::SNAPSHOT_PARTS)
            .expect("parts annotation"),
    )
    .unwrap();
    assert_eq!(parts["db0"]["items"], 7, "{parts}");
    assert_eq!(parts["db3"]["items"], 2, "{parts}");
    assert_eq!(
        snap.annotations()
            .get(kstash_api::constants::annotations::SNAPSHOT_DOCUMENTS)
            .map(String::as_str),
        Some("9")
    );

    // Restore into a second, empty Redis (KubeDB object + AppBinding), the example's session.
    let restored = RedisServer::start(REDIS_PW);
    redis_database(&t, "redis-restored", &restored, true).await;
    t.cluster
        .apply_yaml(&redis_example("restoresession.yaml", "RestoreSession"));
    let rss: Api<RestoreSession> = t.cluster.api(NS);
    let rs = restore_finished(&rss, "redis-restore").await;
    let rst = rs.status.clone().unwrap();
    assert_eq!(
        rst.phase.map(|p| format!("{p:?}")).as_deref(),
        Some("Succeeded"),
        "{rst:?}"
    );
    assert!(rst.components.contains_key(&declared[0]), "{rst:?}");
    assert_eq!(
        restored.contents(),
        want,
        "restored keys differ from the source's"
    );

    // A second restore into the now non-empty server is refused by the addon, clearly.
    t.cluster.apply_yaml(
        &redis_example("restoresession.yaml", "RestoreSession")
            .replace("name: redis-restore\n", "name: redis-restore-again\n"),
    );
    let again = restore_finished(&rss, "redis-restore-again").await;
    let ast = again.status.clone().unwrap();
    assert_eq!(
        ast.phase.map(|p| format!("{p:?}")).as_deref(),
        Some("Failed"),
        "{ast:?}"
    );
    let err = ast.components[&declared[0]]
        .error
        .clone()
        .unwrap_or_default();
    assert!(err.contains("not empty"), "{err}");
    op.stop().await;
}

// ------------------------------------------------------------------------------------------
// The same through the PostgreSQL addon: KubeDB Postgres + AppBinding (postgres://), real
// PostgreSQL 15 servers with scram-sha-256
// ------------------------------------------------------------------------------------------

/// The superuser password of the test's PostgreSQL servers (in the AppBinding's auth Secret).
const PG_PW: &str = "pg e2e p@ss";

/// A PostgreSQL 15 server on 127.0.0.1 (`initdb --auth=scram-sha-256`), run as the `postgres`
/// user when the tests run as root; stopped on drop.
struct PgServer {
    port: u16,
    dir: std::path::PathBuf,
}

fn pg_bin(name: &str) -> std::path::PathBuf {
    let p = std::path::Path::new("/usr/lib/postgresql/15/bin").join(name);
    assert!(
        p.exists(),
        "{} missing: run scripts/ensure-tools.sh postgres",
        p.display()
    );
    p
}

/// `program` as the owner of the data directory (`runuser -u postgres` under root).
fn as_pg_user(program: &std::path::Path) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn checked(mut c: Command, what: &str) -> String {
    let o = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        o.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

impl PgServer {
    fn start() -> PgServer {
        let dir = std::env::temp_dir().join(format!(
            "kstash-e2e-pg-{}-{}",
            std::process::id(),
            support::free_port()
        ));
        std::fs::create_dir_all(dir.join("sock")).unwrap();
        std::fs::write(dir.join("pwfile"), PG_PW).unwrap();
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status();
        let data = dir.join("data");
        let mut initdb = as_pg_user(&pg_bin("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=scram-sha-256", "-E", "UTF8"])
            .args(["--locale=C.UTF-8", "--no-sync"])
            .arg(format!("--pwfile={}", dir.join("pwfile").display()));
        checked(initdb, "initdb");
        let port = support::free_port();
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             fsync = off\nmax_connections = 20\nshared_buffers = 16MB\n",
            dir.join("sock").display()
        );
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(&mut f, conf.as_bytes()).unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
        )
        .unwrap();
        let mut start = as_pg_user(&pg_bin("pg_ctl"));
        start
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("log"))
            .args(["-w", "-t", "60", "start"]);
        checked(start, "pg_ctl start");
        PgServer { port, dir }
    }

    /// `psql -X -At -v ON_ERROR_STOP=1 -d <db> -c <sql>` as the superuser over TCP (scram).
    fn psql(&self, db: &str, sql: &str) -> String {
        let mut c = Command::new(pg_bin("psql"));
        c.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ])
            .env("PGPASSWORD", PG_PW)
            .env("PGSSLMODE", "disable");
        checked(c, &format!("psql {sql}")).trim().to_string()
    }

    /// What the test compares: the user databases, `app`'s schema (pg_dump) and its rows.
    fn contents(&self) -> (String, String, String) {
        let dbs = self.psql(
            "postgres",
            "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database WHERE NOT datistemplate",
        );
        let mut dump = Command::new(pg_bin("pg_dump"));
        dump.args(["--schema-only", "--no-comments", "-h", "127.0.0.1"])
            .args(["-p", &self.port.to_string(), "-U", "postgres", "app"])
            .env("PGPASSWORD", PG_PW)
            .env("PGSSLMODE", "disable");
        // pg_dump prints a random `\restrict` key per run: leave those lines out.
        let schema: String = checked(dump, "pg_dump --schema-only app")
            .lines()
            .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
            .collect::<Vec<_>>()
            .join("\n");
        let rows = self.psql(
            "app",
            "SELECT count(*) || ' ' || md5(string_agg(id || ':' || v || ':' || coalesce(tag, '-'), ',' ORDER BY id)) FROM items",
        );
        (dbs, schema, rows)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let mut stop = as_pg_user(&pg_bin("pg_ctl"));
        stop.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "stop"]);
        let _ = stop.output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What KubeDB creates for Postgres `name`: the auth Secret (superuser) and the AppBinding with
/// `clientConfig.url` `postgres://127.0.0.1:<port>/postgres?sslmode=disable`; with
/// `kubedb_object`, the `Postgres` object itself (without annotations).
async fn pg_database(t: &Tutorial, name: &str, server: &PgServer, kubedb_object: bool) {
    t.cluster
        .create_secret(
            NS,
            &format!("{name}-auth"),
            &[("username", "postgres"), ("password", PG_PW)],
        )
        .await;
    if kubedb_object {
        t.cluster.apply_yaml(&format!(
            "apiVersion: kubedb.com/v1\nkind: Postgres\nmetadata:\n  name: {name}\n  namespace: {NS}\n\
             spec:\n  version: \"15.5\"\n"
        ));
    }
    t.cluster.apply_yaml(&format!(
        r#"apiVersion: appcatalog.appscode.com/v1alpha1
kind: AppBinding
metadata:
  name: {name}
  namespace: {NS}
spec:
  appRef: {{apiGroup: kubedb.com, kind: Postgres, name: {name}, namespace: {NS}}}
  type: kubedb.com/postgres
  version: "15.5"
  clientConfig:
    url: postgres://127.0.0.1:{port}/postgres?sslmode=disable
  secret:
    name: {name}-auth
"#,
        port = server.port
    ));
}

/// The documents of `examples/postgres/<file>` of kind `kind`.
fn postgres_example(file: &str, kind: &str) -> String {
    example_of_kind(&format!("postgres/{file}"), kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_auto_backup_and_restore_through_the_operator() {
    let t = Tutorial::start().await;
    let pg_yaml = support::example_yaml("addons/postgres.yaml");
    let built = support::addon_path("postgres_addon.wasm");
    let digest = support::addon_sha256("postgres_addon.wasm");
    assert!(
        pinned_digests(&pg_yaml).iter().all(|d| *d == digest),
        "examples/addons/postgres.yaml pins another module than the built one: run scripts/build-addons.sh --pin"
    );
    t.cluster.apply_yaml(&pg_yaml);

    // The source: database `app` with a table, an index, a view and 500 rows.
    let source = PgServer::start();
    source.psql("postgres", "CREATE DATABASE app");
    source.psql(
        "app",
        "CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL, tag text);\
         CREATE INDEX items_tag ON items (tag);\
         CREATE VIEW tagged AS SELECT id, tag FROM items WHERE tag IS NOT NULL;\
         INSERT INTO items SELECT g, 'value ' || g, CASE WHEN g % 3 = 0 THEN 'x' END FROM generate_series(1, 500) g",
    );
    let want = source.contents();
    assert!(want.2.starts_with("500 "), "{want:?}");
    pg_database(&t, "pg-quickstart", &source, false).await;
    let op = Operator::start(&t.cluster, "e2e-postgres", None).await;

    t.cluster
        .apply_yaml(&postgres_example("backupblueprint.yaml", "BackupBlueprint"));
    t.cluster
        .apply_yaml(&postgres_example("sample-postgres.yaml", "Postgres"));

    let bcs: Api<BackupConfiguration> = t.cluster.api(NS);
    let bc = wait_for_object(&bcs, "appbinding-pg-quickstart", TIMEOUT, |b| {
        b.status
            .as_ref()
            .and_then(|s| s.phase)
            .map(|p| format!("{p:?}"))
            .as_deref()
            == Some("Ready")
    })
    .await;
    let target = bc.spec.target.clone().expect("target");
    assert_eq!(
        (target.kind.as_deref(), target.name.as_str()),
        (Some("Postgres"), "pg-quickstart")
    );
    let first = t
        .next_completed_session("appbinding-pg-quickstart", &[])
        .await;
    assert_eq!(
        phase_of(&first),
        "Succeeded",
        "{}",
        messages(&t, &first).await
    );
    let snap_name = kstash_api::names::snapshot_name("s3-postgres-repo", &first.name_any());
    let snaps: Api<Snapshot> = t.cluster.api(NS);
    let snap = wait_for_object(&snaps, &snap_name, TIMEOUT, |s| {
        s.status
            .as_ref()
            .and_then(|st| st.phase)
            .is_some_and(|p| format!("{p:?}") == "Succeeded")
    })
    .await;
    let runtime = kstash_runtime::Runtime::new(Default::default()).unwrap();
    let addon = runtime
        .load(&std::fs::read(&built).unwrap(), &digest.parse().unwrap())
        .await
        .unwrap();
    let declared = addon
        .description()
        .tasks
        .iter()
        .find(|d| d.name == "logical-backup")
        .unwrap()
        .components
        .clone();
    let st = snap.status.clone().unwrap();
    assert_eq!(
        st.components.keys().cloned().collect::<Vec<_>>(),
        declared,
        "{st:?}"
    );

    // Restore into a second, fresh server.
    let restored = PgServer::start();
    pg_database(&t, "pg-restored", &restored, true).await;
    t.cluster
        .apply_yaml(&postgres_example("restoresession.yaml", "RestoreSession"));
    let rss: Api<RestoreSession> = t.cluster.api(NS);
    let rs = restore_finished(&rss, "pg-restore").await;
    let rst = rs.status.clone().unwrap();
    assert_eq!(
        rst.phase.map(|p| format!("{p:?}")).as_deref(),
        Some("Succeeded"),
        "{rst:?}"
    );
    assert_eq!(restored.contents(), want, "restored PostgreSQL differs");
    op.stop().await;
}

// ------------------------------------------------------------------------------------------
// Tenancy: a second namespace tries to reach the first one's data through kstash
// ------------------------------------------------------------------------------------------

const ATTACKER: &str = "attacker";

/// An AppBinding `name` in `ns` for `server` with its auth Secret `<name>-auth`.
async fn redis_appbinding(t: &Tutorial, ns: &str, name: &str, server: &RedisServer) {
    t.cluster
        .create_secret(
            ns,
            &format!("{name}-auth"),
            &[("username", "default"), ("password", REDIS_PW)],
        )
        .await;
    t.cluster.apply_yaml(&format!(
        r#"apiVersion: appcatalog.appscode.com/v1alpha1
kind: AppBinding
metadata:
  name: {name}
  namespace: {ns}
spec:
  type: kubedb.com/redis
  version: 7.2.4
  clientConfig:
    url: redis://127.0.0.1:{port}
  secret:
    name: {name}-auth
"#,
        port = server.port
    ));
}

/// A BackupConfiguration `name` in `ns` of AppBinding `target_ns/target` into Repository `repo`
/// (directory `/<repo>`) on the tutorial's storage, with encryption Secret `key_ns/encrypt-key`.
fn redis_bc(
    name: &str,
    ns: &str,
    (target_ns, target): (&str, &str),
    repo: &str,
    key_ns: &str,
) -> String {
    format!(
        r#"apiVersion: core.kubestash.com/v1alpha1
kind: BackupConfiguration
metadata:
  name: {name}
  namespace: {ns}
spec:
  target: {{apiGroup: appcatalog.appscode.com, kind: AppBinding, name: {target}, namespace: {target_ns}}}
  backends:
  - name: s3-backend
    storageRef: {{name: s3-storage, namespace: {NS}}}
    retentionPolicy: {{name: demo-retention, namespace: {NS}}}
  sessions:
  - name: frequent-backup
    scheduler:
      schedule: "0 0 1 1 *"
    repositories:
    - name: {repo}
      backend: s3-backend
      directory: /{repo}
      encryptionSecret: {{name: encrypt-key, namespace: {key_ns}}}
    addon:
      name: redis-addon
      tasks:
      - name: logical-backup
"#
    )
}

/// A RestoreSession `name` in the attacker's namespace from `demo/victim-repo`'s latest
/// Snapshot into AppBinding `target_ns/target`, with `encryption` (`None`: the Repository's).
fn redis_rs(
    name: &str,
    (target_ns, target): (&str, &str),
    encryption: Option<(&str, &str)>,
) -> String {
    let enc = encryption
        .map(|(ns, n)| format!("    encryptionSecret: {{name: {n}, namespace: {ns}}}\n"))
        .unwrap_or_default();
    format!(
        r#"apiVersion: core.kubestash.com/v1alpha1
kind: RestoreSession
metadata:
  name: {name}
  namespace: {ATTACKER}
spec:
  target: {{apiGroup: appcatalog.appscode.com, kind: AppBinding, name: {target}, namespace: {target_ns}}}
  dataSource:
    namespace: {NS}
    repository: victim-repo
    snapshot: latest
{enc}  addon:
    name: redis-addon
    tasks:
    - name: logical-backup-restore
"#
    )
}

async fn restore_done(t: &Tutorial, name: &str) -> RestoreSession {
    restore_finished(&t.cluster.api(ATTACKER), name).await
}

fn phase_and_status(rs: &RestoreSession) -> (String, String) {
    let st = rs.status.clone().unwrap_or_default();
    (
        st.phase.map(|p| format!("{p:?}")).unwrap_or_default(),
        serde_json::to_string(&st).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenancy_attacks_fail_closed_and_the_victims_data_is_untouched() {
    let t = Tutorial::start().await;
    t.cluster
        .apply_yaml(&support::example_yaml("addons/redis.yaml"));
    // The victim (namespace demo, the tutorial's storage `from: All`): a Redis and its backup.
    let victim = RedisServer::start(REDIS_PW);
    for (db, args) in [
        (0, vec!["SET", "secret", "the victim's data"]),
        (0, vec!["HSET", "account:1", "iban", "XX00"]),
        (2, vec!["RPUSH", "orders", "1", "2"]),
    ] {
        victim.cli(db, &args);
    }
    let want = victim.contents();
    redis_appbinding(&t, NS, "redis-victim", &victim).await;
    t.cluster
        .create_secret(NS, "encrypt-key", &[("RESTIC_PASSWORD", RESTIC_PW)])
        .await;
    t.cluster.apply_yaml(&redis_bc(
        "victim",
        NS,
        (NS, "redis-victim"),
        "victim-repo",
        NS,
    ));
    // The attacker: its own namespace, key and (empty) Redis.
    t.cluster.create_namespace(ATTACKER).await;
    t.cluster
        .create_secret(ATTACKER, "encrypt-key", &[("RESTIC_PASSWORD", "a guess")])
        .await;
    let stolen = RedisServer::start(REDIS_PW);
    redis_appbinding(&t, ATTACKER, "redis-attacker", &stolen).await;
    let op = Operator::start(&t.cluster, "e2e-tenancy", None).await;

    let bcs: Api<BackupConfiguration> = t.cluster.api(NS);
    wait_for_object(&bcs, "victim", TIMEOUT, |b| {
        b.status
            .as_ref()
            .and_then(|s| s.phase)
            .map(|p| format!("{p:?}"))
            .as_deref()
            == Some("Ready")
    })
    .await;
    // The configuration's initial backup.
    let first = t.next_completed_session("victim", &[]).await;
    assert_eq!(
        phase_of(&first),
        "Succeeded",
        "{}",
        messages(&t, &first).await
    );
    let snaps: Api<Snapshot> = t.cluster.api(NS);
    let snap_name = kstash_api::names::snapshot_name("victim-repo", &first.name_any());
    let snap = wait_for_object(&snaps, &snap_name, TIMEOUT, |s| {
        s.status
            .as_ref()
            .and_then(|st| st.phase)
            .is_some_and(|p| format!("{p:?}") == "Succeeded")
    })
    .await;
    let victim_snapshot = serde_json::to_value(&snap.status).unwrap();

    // 1. A BackupConfiguration in the attacker's namespace that backs up the victim's database.
    // 2. One that uses the victim's encryption Secret.
    t.cluster.apply_yaml(&redis_bc(
        "steal-target",
        ATTACKER,
        (NS, "redis-victim"),
        "steal-target",
        ATTACKER,
    ));
    t.cluster.apply_yaml(&redis_bc(
        "steal-key",
        ATTACKER,
        (ATTACKER, "redis-attacker"),
        "steal-key",
        NS,
    ));
    let abcs: Api<BackupConfiguration> = t.cluster.api(ATTACKER);
    for (bc, field) in [
        ("steal-target", "spec.target.namespace"),
        (
            "steal-key",
            "spec.sessions[0].repositories[0].encryptionSecret.namespace",
        ),
    ] {
        let b = wait_for_object(&abcs, bc, TIMEOUT, |b| {
            b.status
                .as_ref()
                .and_then(|s| condition(&s.conditions, "ValidationPassed"))
                .is_some_and(|c| !c.is_true())
        })
        .await;
        let st = b.status.unwrap();
        let msg = condition(&st.conditions, "ValidationPassed")
            .and_then(|c| c.message.clone())
            .unwrap_or_default();
        assert!(
            msg.starts_with(field) && msg.contains("demo/"),
            "{bc}: {msg}"
        );
        assert_eq!(format!("{:?}", st.phase.unwrap()), "Invalid", "{bc}: {msg}");
    }

    // 3. The victim's own storage (`usagePolicy: Same`): neither a BackupConfiguration nor a
    //    Repository of the attacker may use it.
    t.cluster.apply_yaml(
        &support::tutorial_backup_storage(&t.moto.endpoint(), "esbackup")
            .replace("name: s3-storage", "name: victim-only")
            .replace("from: All", "from: Same")
            .replace("default: true", "default: false")
            .replace("prefix: elastic", "prefix: victim-only"),
    );
    t.cluster.apply_yaml(
        &redis_bc(
            "steal-storage",
            ATTACKER,
            (ATTACKER, "redis-attacker"),
            "steal-storage",
            ATTACKER,
        )
        .replace(
            "name: s3-storage, namespace: demo",
            "name: victim-only, namespace: demo",
        ),
    );
    let b = wait_for_object(&abcs, "steal-storage", TIMEOUT, |b| {
        b.status
            .as_ref()
            .and_then(|s| condition(&s.conditions, "ValidationPassed"))
            .is_some_and(|c| !c.is_true())
    })
    .await;
    let msg = condition(&b.status.unwrap().conditions, "ValidationPassed")
        .and_then(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        msg.starts_with("spec.backends[0].storageRef: ")
            && msg.contains("not allowed to refer BackupStorage demo/victim-only"),
        "{msg}"
    );
    t.cluster.apply_yaml(&format!(
        r#"apiVersion: storage.kubestash.com/v1alpha1
kind: Repository
metadata:
  name: on-victim-storage
  namespace: {ATTACKER}
spec:
  storageRef: {{name: victim-only, namespace: {NS}}}
  path: /mine
  deletionPolicy: WipeOut
  encryptionSecret: {{name: encrypt-key, namespace: {ATTACKER}}}
"#
    ));
    let repos: Api<Repository> = t.cluster.api(ATTACKER);
    let r = wait_for_object(&repos, "on-victim-storage", TIMEOUT, |r| {
        r.status
            .as_ref()
            .and_then(|s| condition(&s.conditions, "RepositoryInitialized"))
            .is_some_and(|c| c.reason.as_deref() == Some("TenancyRefused"))
    })
    .await;
    let msg = condition(&r.status.unwrap().conditions, "RepositoryInitialized")
        .and_then(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        msg.starts_with("spec.storageRef: ") && msg.contains("demo/victim-only"),
        "{msg}"
    );
    assert!(
        t.bucket_keys("victim-only/mine").is_empty(),
        "the refused Repository wrote nothing into the victim's storage"
    );

    // 4. An annotated AppBinding of the attacker whose appRef names the victim's database.
    t.cluster.apply_yaml(&format!(
        r#"apiVersion: appcatalog.appscode.com/v1alpha1
kind: AppBinding
metadata:
  name: pointing-away
  namespace: {ATTACKER}
  annotations:
    blueprint.kubestash.com/name: redis-backup-blueprint
    blueprint.kubestash.com/namespace: {NS}
spec:
  appRef: {{apiGroup: kubedb.com, kind: Redis, name: redis-victim, namespace: {NS}}}
  type: kubedb.com/redis
  clientConfig:
    url: redis://127.0.0.1:{port}
"#,
        port = stolen.port
    ));
    let ev = t
        .cluster
        .wait_for_event(ATTACKER, "pointing-away", TIMEOUT, |e| {
            e.reason.as_deref() == Some("AutoBackupFailed")
        })
        .await;
    let note = ev.note.unwrap_or_default();
    assert!(note.contains("spec.appRef.namespace"), "{note}");
    assert!(abcs
        .get_opt("appbinding-pointing-away")
        .await
        .unwrap()
        .is_none());

    // 5. A Repository on the victim's directory, WipeOut: refused, and deleting it wipes nothing.
    t.cluster.apply_yaml(&format!(
        r#"apiVersion: storage.kubestash.com/v1alpha1
kind: Repository
metadata:
  name: overlap
  namespace: {ATTACKER}
spec:
  storageRef: {{name: s3-storage, namespace: {NS}}}
  path: /victim-repo
  deletionPolicy: WipeOut
  encryptionSecret: {{name: encrypt-key, namespace: {ATTACKER}}}
"#
    ));
    let r = wait_for_object(&repos, "overlap", TIMEOUT, |r| {
        r.status
            .as_ref()
            .and_then(|s| condition(&s.conditions, "RepositoryInitialized"))
            .is_some_and(|c| c.reason.as_deref() == Some("TenancyRefused"))
    })
    .await;
    let msg = condition(&r.status.unwrap().conditions, "RepositoryInitialized")
        .and_then(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        msg.starts_with("spec.path: ") && msg.contains("demo/victim-repo"),
        "{msg}"
    );
    let keys_before = t.bucket_keys("elastic/victim-repo/");
    assert!(!keys_before.is_empty());
    repos
        .delete("overlap", &Default::default())
        .await
        .expect("delete the Repository");
    wait_for("the refused Repository to be gone", TIMEOUT, || async {
        repos
            .get_opt("overlap")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(t.bucket_keys("elastic/victim-repo/"), keys_before);

    // 6. Restore the victim's snapshot with the victim's key: refused before any read.
    // 7. Restore into the victim's database: refused.
    t.cluster
        .apply_yaml(&redis_rs("steal-data", (ATTACKER, "redis-attacker"), None));
    t.cluster.apply_yaml(&redis_rs(
        "overwrite",
        (NS, "redis-victim"),
        Some((ATTACKER, "encrypt-key")),
    ));
    let (phase, st) = phase_and_status(&restore_done(&t, "steal-data").await);
    assert_eq!(phase, "Failed", "{st}");
    assert!(
        st.contains("spec.encryptionSecret.namespace")
            && st.contains("kstash.io/allowed-namespaces"),
        "{st}"
    );
    let (phase, st) = phase_and_status(&restore_done(&t, "overwrite").await);
    assert_eq!(phase, "Invalid", "{st}");
    assert!(st.contains("spec.target.namespace"), "{st}");
    assert!(
        stolen.contents().is_empty(),
        "nothing reached the attacker's Redis"
    );
    assert_eq!(victim.contents(), want, "the victim's Redis is untouched");

    // The allowed case: the victim shares its key with the attacker's namespace on purpose.
    t.cluster.apply_yaml(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: encrypt-key\n  namespace: {NS}\n  \
         annotations:\n    kstash.io/allowed-namespaces: \"{ATTACKER}\"\n\
         stringData:\n  RESTIC_PASSWORD: {RESTIC_PW}\n"
    ));
    t.cluster
        .apply_yaml(&redis_rs("shared", (ATTACKER, "redis-attacker"), None));
    let (phase, st) = phase_and_status(&restore_done(&t, "shared").await);
    assert_eq!(phase, "Succeeded", "{st}");
    assert_eq!(stolen.contents(), want, "the shared restore is complete");

    // The victim: its Snapshot, BackupConfiguration and data as they were; its next backup runs.
    let snap = snaps.get(&snap_name).await.unwrap();
    assert_eq!(serde_json::to_value(&snap.status).unwrap(), victim_snapshot);
    for (name, c) in &snap.status.clone().unwrap().components {
        let path = c.path.clone().expect("component path");
        let out = Command::new(restic_bin())
            .args(["check", "--read-data"])
            .env(
                "RESTIC_REPOSITORY",
                format!(
                    "s3:{}/esbackup/elastic/victim-repo/{path}",
                    t.moto.endpoint()
                ),
            )
            .env("RESTIC_PASSWORD", RESTIC_PW)
            .env("AWS_ACCESS_KEY_ID", support::S3_ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", support::S3_SECRET_KEY)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env(
                "RESTIC_CACHE_DIR",
                t.cluster.dir.path().join("restic-cache"),
            )
            .output()
            .expect("run restic");
        assert!(
            out.status.success(),
            "restic check of the victim's {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let bc = bcs.get("victim").await.unwrap();
    assert_ne!(bc.spec.paused, Some(true));
    let next = t.trigger_in("victim", 60).await;
    t.expect_succeeded(&next).await;
    assert_eq!(victim.contents(), want);
    op.stop().await;
}
