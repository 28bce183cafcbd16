//! The execute half of the operator (BackupSession and RestoreSession executors) against real
//! parts: the embedded control plane, a moto S3 server, the Elasticsearch emulator over TLS with
//! basic auth, the real WASM addon (`scripts/build-addons.sh`) and the `restic` CLI.
//!
//! Only the executors run here (not the control half), so the objects the control half would
//! maintain (BackupConfiguration status `Ready`, Repository) are created directly.

mod support;

use std::time::Duration;

use kstash_api::core::{BackupConfiguration, BackupSession, RestoreSession};
use kstash_api::storage::{Snapshot, SnapshotPhase};
use kstash_es_emulator::{Faults, RunningEmulator};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use support::{
    condition, condition_true, module_file, module_sha256, shipped_addon_yaml, user_indices,
    wait_for, Moto, Restic, TestCluster,
};

const NS: &str = "demo";
const RESTIC_PW: &str = "kstash-test-restic-password";
const ES_PW: &str = "changeme-es";
const TIMEOUT: Duration = Duration::from_secs(240);

/// The executors only, on `cluster` (module dir = the addon build directory).
struct Executors {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Executors {
    async fn start(cluster: &TestCluster, tag: &str) -> Executors {
        let ctx = support::operator_context(
            cluster.cp.client().await.expect("client"),
            kstash_operator::OperatorConfig {
                identity: format!("kstash-test-{tag}"),
                module_dir: Some(module_file().parent().unwrap().to_path_buf()),
                data_dir: cluster.dir.path().join(format!("executor-{tag}")),
                namespace: None,
            },
            4,
        );
        Executors {
            tasks: vec![
                tokio::spawn(kstash_operator::backup_session::run(ctx.clone())),
                tokio::spawn(kstash_operator::restore_session::run(ctx.clone())),
                tokio::spawn(kstash_operator::snapshot::run(ctx)),
            ],
        }
    }

    /// Kills the executors (as an engine crash would: running tasks are dropped mid-way).
    async fn kill(self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

async fn emulator(docs: usize, faults: Option<Faults>) -> RunningEmulator {
    support::es_emulator(ES_PW, docs, 32 << 10, 7, faults).await
}

/// A KubeDB Elasticsearch `name` and its AppBinding pointing at `emu` (TLS CA in `caBundle`),
/// with credentials Secret `<name>-elastic-cred` holding `password`.
async fn database(cluster: &TestCluster, name: &str, emu: &RunningEmulator, password: &str) {
    support::es_database(cluster, NS, name, emu, password, true).await;
}

struct Env {
    cluster: TestCluster,
    moto: Moto,
    bucket: String,
}

async fn env(bucket: &str) -> Env {
    let cluster = TestCluster::start().await;
    let moto = Moto::start();
    moto.create_bucket(bucket);
    cluster.create_namespace(NS).await;
    cluster.create_s3_secret(NS, "s3-secret").await;
    cluster
        .create_secret(NS, "encrypt-secret", &[("RESTIC_PASSWORD", RESTIC_PW)])
        .await;
    cluster.apply_yaml(&format!(
        r#"apiVersion: storage.kubestash.com/v1alpha1
kind: BackupStorage
metadata:
  name: s3-storage
  namespace: {NS}
spec:
  storage:
    provider: s3
    s3:
      endpoint: {endpoint}
      bucket: {bucket}
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
kind: RetentionPolicy
metadata:
  name: demo-retention
  namespace: {NS}
spec:
  default: true
  failedSnapshots:
    last: 2
  maxRetentionPeriod: 2mo
  successfulSnapshots:
    last: 1
  usagePolicy:
    allowedNamespaces:
      from: Same
"#,
        endpoint = moto.endpoint()
    ));
    cluster.apply_yaml(&shipped_addon_yaml(
        "elasticsearch-addon",
        "elasticsearch",
        &module_sha256(),
    ));
    Env {
        cluster,
        moto,
        bucket: bucket.to_string(),
    }
}

/// A BackupConfiguration `bc` of `db` with its own Repository `repo` (directory `dir`), made
/// `Ready` as the control half would.
async fn backup_configuration(
    e: &Env,
    bc: &str,
    db: &str,
    repo: &str,
    dir: &str,
    addon: &str,
    args: &str,
) {
    e.cluster.apply_yaml(&format!(
        r#"apiVersion: storage.kubestash.com/v1alpha1
kind: Repository
metadata:
  name: {repo}
  namespace: {NS}
spec:
  appRef: {{apiGroup: kubedb.com, kind: Elasticsearch, name: {db}, namespace: {NS}}}
  storageRef: {{name: s3-storage, namespace: {NS}}}
  path: /{dir}
  deletionPolicy: Delete
  encryptionSecret: {{name: encrypt-secret, namespace: {NS}}}
---
apiVersion: core.kubestash.com/v1alpha1
kind: BackupConfiguration
metadata:
  name: {bc}
  namespace: {NS}
spec:
  target: {{apiGroup: kubedb.com, kind: Elasticsearch, name: {db}, namespace: {NS}}}
  backends:
  - name: s3-backend
    storageRef: {{name: s3-storage, namespace: {NS}}}
    retentionPolicy: {{name: demo-retention, namespace: {NS}}}
  sessions:
  - name: frequent-backup
    sessionHistoryLimit: 1
    scheduler:
      schedule: "*/5 * * * *"
    repositories:
    - name: {repo}
      backend: s3-backend
      directory: /{dir}
      encryptionSecret: {{name: encrypt-secret, namespace: {NS}}}
    addon:
      name: {addon}
      tasks:
      - name: logical-backup
        params:
          args: "{args}"
"#
    ));
    let api: Api<BackupConfiguration> = e.cluster.api(NS);
    api.patch_status(
        bc,
        &PatchParams::default(),
        &Patch::Merge(&serde_json::json!({"status": {"phase": "Ready"}})),
    )
    .await
    .expect("mark the BackupConfiguration Ready");
}

/// Creates BackupSession `<bc>-frequent-backup-<unix>` as the scheduler would.
async fn trigger(e: &Env, bc: &str, unix: i64) -> String {
    let name = kstash_api::names::backup_session_name(bc, "frequent-backup", unix);
    let bs: BackupSession = serde_json::from_value(serde_json::json!({
        "apiVersion": "core.kubestash.com/v1alpha1", "kind": "BackupSession",
        "metadata": {"name": name, "namespace": NS, "finalizers": ["kubestash.com/cleanup"]},
        "spec": {"invoker": {"apiGroup": "core.kubestash.com", "kind": "BackupConfiguration", "name": bc},
                 "session": "frequent-backup", "retryLeft": 0, "backupTimeout": "5m"}
    }))
    .unwrap();
    e.cluster
        .api::<BackupSession>(NS)
        .create(&PostParams::default(), &bs)
        .await
        .expect("create BackupSession");
    name
}

async fn wait_session_done(e: &Env, name: &str) -> BackupSession {
    let api: Api<BackupSession> = e.cluster.api(NS);
    wait_for(
        &format!("BackupSession {name} to finish"),
        TIMEOUT,
        || async {
            api.get(name).await.ok().filter(|b| {
                matches!(
                    b.status
                        .as_ref()
                        .and_then(|s| s.phase)
                        .map(|p| p.is_completed()),
                    Some(true)
                )
            })
        },
    )
    .await
}

fn restic(e: &Env, dir: &str, args: &[&str]) -> std::process::Output {
    let repo = format!(
        "s3:{}/{}/elastic/{dir}/repository/v1/frequent-backup/dump",
        e.moto.endpoint(),
        e.bucket
    );
    Restic::new(repo, RESTIC_PW, e.moto.restic_env())
        .with_cache(e.cluster.dir.path().join("restic-cache"))
        .run(args)
}

/// Every `n`-th live document of `index`: `(id, routing, source JSON)`.
fn sample_docs(
    emu: &RunningEmulator,
    index: &str,
    n: usize,
) -> Vec<(String, Option<String>, serde_json::Value)> {
    let store = emu.api().store();
    let idx = &store.indices[index];
    let mut docs: Vec<_> = idx
        .shards
        .iter()
        .flat_map(|s| s.docs.iter().flatten())
        .map(|d| {
            (
                d.id.clone(),
                d.routing.clone(),
                serde_json::from_slice(&d.source).unwrap(),
            )
        })
        .collect();
    docs.sort_by(|a: &(String, Option<String>, serde_json::Value), b| a.0.cmp(&b.0));
    let step = (docs.len() / n).max(1);
    docs.into_iter().step_by(step).take(n).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_snapshot_bucket_restic_and_restore_round_trip() {
    let e = env("es-exec-roundtrip").await;
    let source = emulator(1500, None).await;
    database(&e.cluster, "es-quickstart", &source, ES_PW).await;
    backup_configuration(
        &e,
        "appbinding-es-quickstart",
        "es-quickstart",
        "s3-elasticsearch-repo",
        "es",
        "elasticsearch-addon",
        "--ignoreType=template,settings",
    )
    .await;
    let exec = Executors::start(&e.cluster, "a").await;

    // --- BackupSession → Snapshot (spec §4, §5.1) ---
    let t0 = jiff::Timestamp::now().as_second();
    let bs_name = trigger(&e, "appbinding-es-quickstart", t0).await;
    let bs = wait_session_done(&e, &bs_name).await;
    let st = bs.status.clone().unwrap();
    assert_eq!(
        st.phase.map(|p| format!("{p:?}")).as_deref(),
        Some("Succeeded"),
        "session status: {st:#?}"
    );
    for t in [
        "SnapshotsEnsured",
        "BackupExecutorEnsured",
        "RetentionPolicyExecutorEnsured",
        "SessionHistoryCleaned",
        "MetricsPushed",
    ] {
        assert!(
            condition_true(&st.conditions, t),
            "{t} in {:#?}",
            st.conditions
        );
    }
    assert_eq!(
        st.conditions.last().unwrap().type_,
        "MetricsPushed",
        "MetricsPushed is last"
    );
    assert_eq!(st.total_snapshots, Some(1));
    let snap_name = kstash_api::names::snapshot_name("s3-elasticsearch-repo", &bs_name);
    assert_eq!(st.snapshots[0].name, snap_name);
    assert!(st.duration.is_some());

    let snap: Snapshot = e.cluster.api::<Snapshot>(NS).get(&snap_name).await.unwrap();
    let labels = snap.metadata.labels.clone().unwrap();
    assert_eq!(labels["kubestash.com/repo-name"], "s3-elasticsearch-repo");
    assert_eq!(labels["kubestash.com/app-ref-kind"], "Elasticsearch");
    assert_eq!(labels["kubestash.com/app-ref-name"], "es-quickstart");
    assert_eq!(labels["kubestash.com/app-ref-namespace"], NS);
    assert_eq!(labels["kubedb.com/db-version"], "xpack-8.15.0");
    assert_eq!(snap.spec.version.as_deref(), Some("v1"));
    assert!(kstash_rules::backup_session::is_ulid(
        snap.spec.snapshot_id.as_deref().unwrap()
    ));
    let sst = snap.status.clone().unwrap();
    assert_eq!(sst.phase, Some(SnapshotPhase::Succeeded));
    assert_eq!(sst.total_components, Some(1));
    assert_eq!(sst.integrity, Some(true));
    let dump = &sst.components["dump"];
    assert_eq!(
        dump.path.as_deref(),
        Some("repository/v1/frequent-backup/dump")
    );
    assert_eq!(
        dump.driver.map(|d| format!("{d:?}")).as_deref(),
        Some("Restic")
    );
    assert_eq!(dump.integrity, Some(true));
    assert!(dump.duration.as_deref().unwrap().ends_with('s'));
    let rs0 = &dump.restic_stats[0];
    assert_eq!(rs0.host_path.as_deref(), Some("/kubestash-interim/data"));
    let restic_id = rs0.id.clone().unwrap();
    assert_eq!(restic_id.len(), 64);
    for s in [
        dump.size.as_deref(),
        rs0.size.as_deref(),
        rs0.uploaded.as_deref(),
        sst.size.as_deref(),
    ] {
        let s = s.expect("a size");
        assert!(kstash_api::size::parse_size(s).unwrap() > 0, "size {s}");
    }
    for t in ["SnapshotMetadataUploaded", "RecentSnapshotListUpdated"] {
        assert!(condition_true(&sst.conditions, t), "{t}");
    }
    assert!(condition(&sst.conditions, "BackupProgress").is_none());

    // --- the bucket (spec §5.3) and restic's own check ---
    let storage = e.moto.storage(&e.bucket, "elastic");
    let yaml = storage
        .read(&format!("es/snapshots/{snap_name}.yaml"))
        .await
        .unwrap()
        .expect("snapshots/<name>.yaml in the bucket");
    let copy: Snapshot = serde_yaml::from_slice(&yaml).unwrap();
    assert_eq!(copy.metadata.name.as_deref(), Some(snap_name.as_str()));
    assert_eq!(
        copy.status.unwrap().components["dump"].restic_stats[0]
            .id
            .as_deref(),
        Some(restic_id.as_str())
    );
    let out = restic(&e, "es", &["check", "--read-data"]);
    assert!(
        out.status.success(),
        "restic check --read-data: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = restic(&e, "es", &["snapshots", "--json"]);
    let snaps: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(snaps[0]["id"].as_str(), Some(restic_id.as_str()));
    let indices = user_indices(&source);
    assert!(indices.len() >= 3, "{indices:?}");
    let (idx0, count0) = indices[0].clone();
    let out = restic(
        &e,
        "es",
        &[
            "dump",
            &restic_id,
            &format!("/kubestash-interim/data/{idx0}.json"),
        ],
    );
    assert!(
        out.status.success(),
        "restic dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        count0,
        "documents of {idx0} in the dump"
    );

    // --- a second session: retention keeps 1 successful Snapshot, history keeps 1 session ---
    let bs2 = trigger(&e, "appbinding-es-quickstart", t0 + 60).await;
    let done2 = wait_session_done(&e, &bs2).await;
    let st2 = done2.status.unwrap();
    assert_eq!(
        st2.phase.map(|p| format!("{p:?}")).as_deref(),
        Some("Succeeded"),
        "{st2:#?}"
    );
    assert_eq!(
        st2.retention_policies[0]
            .phase
            .map(|p| format!("{p:?}"))
            .as_deref(),
        Some("Applied")
    );
    support::wait_for_absent(
        &e.cluster.api::<Snapshot>(NS),
        &snap_name,
        Duration::from_secs(30),
    )
    .await;
    support::wait_for_absent(
        &e.cluster.api::<BackupSession>(NS),
        &bs_name,
        Duration::from_secs(30),
    )
    .await;
    assert!(storage
        .read(&format!("es/snapshots/{snap_name}.yaml"))
        .await
        .unwrap()
        .is_none());
    let out = restic(&e, "es", &["snapshots", "--json"]);
    let snaps: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        snaps.as_array().unwrap().len(),
        1,
        "restic keeps one snapshot: {snaps}"
    );
    assert_ne!(snaps[0]["id"].as_str(), Some(restic_id.as_str()));

    // --- RestoreSession into a fresh target (spec §8) ---
    let fresh = emulator(0, None).await;
    database(&e.cluster, "es-restore", &fresh, ES_PW).await;
    e.cluster.apply_yaml(&format!(
        r#"apiVersion: core.kubestash.com/v1alpha1
kind: RestoreSession
metadata:
  name: es-quickstart-restore
  namespace: {NS}
spec:
  target:
    apiGroup: appcatalog.appscode.com
    kind: AppBinding
    name: es-restore
    namespace: {NS}
  dataSource:
    repository: s3-elasticsearch-repo
    snapshot: latest
    encryptionSecret:
      name: encrypt-secret
      namespace: {NS}
  addon:
    name: elasticsearch-addon
    tasks:
    - name: logical-backup-restore
"#
    ));
    let api: Api<RestoreSession> = e.cluster.api(NS);
    let rs = wait_for("RestoreSession to finish", TIMEOUT, || async {
        api.get("es-quickstart-restore").await.ok().filter(|r| {
            matches!(
                r.status
                    .as_ref()
                    .and_then(|s| s.phase)
                    .map(|p| format!("{p:?}"))
                    .as_deref(),
                Some("Succeeded" | "Failed" | "Invalid")
            )
        })
    })
    .await;
    let rst = rs.status.unwrap();
    assert_eq!(
        rst.phase.map(|p| format!("{p:?}")).as_deref(),
        Some("Succeeded"),
        "{rst:#?}"
    );
    assert_eq!(rst.total_components, Some(1));
    let comp = &rst.components["dump"];
    let progress = comp.progress.clone().unwrap();
    let restored: Vec<(String, usize)> = user_indices(&fresh);
    assert_eq!(restored, indices, "every user index with every document");
    let total_docs: usize = indices.iter().map(|(_, n)| n).sum();
    assert_eq!(
        progress["filesDone"].as_u64(),
        Some(total_docs as u64),
        "{progress}"
    );
    assert!(condition_true(&rst.conditions, "RestoreExecutorEnsured"));
    assert!(condition_true(&rst.conditions, "MetricsPushed"));
    for (idx, _) in &indices {
        for (id, routing, src) in sample_docs(&source, idx, 5) {
            let store = fresh.api().store();
            let d = store.indices[idx]
                .get(&id, routing.as_deref())
                .unwrap_or_else(|| panic!("{idx}/{id} restored"));
            let got: serde_json::Value = serde_json::from_slice(&d.source).unwrap();
            assert_eq!(got, src, "{idx}/{id}");
        }
    }

    // --- deleting a Snapshot by hand, WipeOut: its data is forgotten, another controller's
    // finalizer survives (only kubestash.com/cleanup is removed, by the Snapshot controller) ---
    let snaps_api: Api<Snapshot> = e.cluster.api(NS);
    let snap2 = kstash_api::names::snapshot_name("s3-elasticsearch-repo", &bs2);
    snaps_api
        .patch(
            &snap2,
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({
                "metadata": {"finalizers": ["kubestash.com/cleanup", "kstash.test/other"]},
                "spec": {"deletionPolicy": "WipeOut"}
            })),
        )
        .await
        .expect("add another finalizer and WipeOut");
    snaps_api
        .delete(&snap2, &Default::default())
        .await
        .expect("delete the Snapshot");
    support::wait_for_object(&snaps_api, &snap2, Duration::from_secs(60), |s| {
        s.metadata.finalizers.as_deref() == Some(&["kstash.test/other".to_string()][..])
    })
    .await;
    let out = restic(&e, "es", &["snapshots", "--json"]);
    let left: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(left.as_array().map(Vec::len), Some(0), "forgotten: {left}");
    assert!(storage
        .read(&format!("es/snapshots/{snap2}.yaml"))
        .await
        .unwrap()
        .is_none());
    snaps_api
        .patch(
            &snap2,
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({"metadata": {"finalizers": null}})),
        )
        .await
        .expect("the test removes its own finalizer");
    support::wait_for_absent(&snaps_api, &snap2, Duration::from_secs(30)).await;

    // --- deleting the Repository: its Snapshots go with it (owner references), each through
    // the Snapshot controller, which honours the Snapshot's deletionPolicy (Delete: the restic
    // snapshot is kept in the bucket) ---
    let bs3 = trigger(&e, "appbinding-es-quickstart", t0 + 120).await;
    let done3 = wait_session_done(&e, &bs3).await;
    assert_eq!(
        done3
            .status
            .and_then(|s| s.phase)
            .map(|p| format!("{p:?}"))
            .as_deref(),
        Some("Succeeded")
    );
    let snap3 = kstash_api::names::snapshot_name("s3-elasticsearch-repo", &bs3);
    let kept = snaps_api.get(&snap3).await.expect("the third Snapshot");
    assert!(kept
        .finalizers()
        .iter()
        .any(|f| f == "kubestash.com/cleanup"));
    let restic_id3 = kept.status.as_ref().unwrap().components["dump"].restic_stats[0]
        .id
        .clone()
        .expect("restic id of the third snapshot");
    let repos: Api<kstash_api::storage::Repository> = e.cluster.api(NS);
    repos
        .delete("s3-elasticsearch-repo", &Default::default())
        .await
        .expect("delete the Repository");
    support::wait_for_absent(&snaps_api, &snap3, Duration::from_secs(60)).await;
    let out = restic(&e, "es", &["snapshots", "--json"]);
    let left: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        left.as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"].as_str() == Some(restic_id3.as_str())),
        "deletionPolicy Delete keeps the data: {left}"
    );
    exec.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failures_name_their_cause_and_a_killed_executor_ends_failed() {
    let e = env("es-exec-failures").await;
    let good = emulator(300, None).await;
    // Wrong password: the AppBinding's Secret does not match the server.
    database(&e.cluster, "es-badpw", &good, "not-the-password").await;
    backup_configuration(
        &e,
        "appbinding-es-badpw",
        "es-badpw",
        "repo-badpw",
        "badpw",
        "elasticsearch-addon",
        "--limit=100",
    )
    .await;
    // Digest mismatch: an Addon whose Functions pin another digest.
    let wrong = "0".repeat(64);
    e.cluster.apply_yaml(&shipped_addon_yaml(
        "es-wrong-digest",
        "es-wrong-digest",
        &wrong,
    ));
    database(&e.cluster, "es-digest", &good, ES_PW).await;
    backup_configuration(
        &e,
        "appbinding-es-digest",
        "es-digest",
        "repo-digest",
        "digest",
        "es-wrong-digest",
        "--limit=100",
    )
    .await;
    // Task limits from the Function: one asks for more memory than the operator's cap, one
    // gives its task one second of wall clock against a slow server.
    let with_limits = |name: &str, limits: &str| {
        shipped_addon_yaml(name, name, &module_sha256()).replace(
            &format!("    sha256: \"{}\"", module_sha256()),
            &format!("    sha256: \"{}\"\n    limits: {limits}", module_sha256()),
        )
    };
    e.cluster
        .apply_yaml(&with_limits("es-too-much", "{memory: 8Gi}"));
    e.cluster.apply_yaml(&with_limits(
        "es-one-second",
        "{wallClock: 1s, memory: 64Mi}",
    ));
    database(&e.cluster, "es-limits", &good, ES_PW).await;
    backup_configuration(
        &e,
        "appbinding-es-too-much",
        "es-limits",
        "repo-too-much",
        "too-much",
        "es-too-much",
        "--limit=100",
    )
    .await;
    // A slow server for the killed-executor case (every request delayed).
    let slow = emulator(
        2000,
        Some(Faults {
            delay_ms: 150,
            delay_rate: 1.0,
            seed: 1,
            ..Faults::default()
        }),
    )
    .await;
    database(&e.cluster, "es-slow", &slow, ES_PW).await;
    backup_configuration(
        &e,
        "appbinding-es-slow",
        "es-slow",
        "repo-slow",
        "slow",
        "elasticsearch-addon",
        "--limit=50",
    )
    .await;

    database(&e.cluster, "es-slow-limited", &slow, ES_PW).await;
    backup_configuration(
        &e,
        "appbinding-es-one-second",
        "es-slow-limited",
        "repo-one-second",
        "one-second",
        "es-one-second",
        "--limit=50",
    )
    .await;

    let exec = Executors::start(&e.cluster, "1").await;
    let now = jiff::Timestamp::now().as_second();
    let too_much = trigger(&e, "appbinding-es-too-much", now).await;
    let one_second = trigger(&e, "appbinding-es-one-second", now).await;
    let badpw = trigger(&e, "appbinding-es-badpw", now).await;
    let digest = trigger(&e, "appbinding-es-digest", now).await;
    let slow_bs = trigger(&e, "appbinding-es-slow", now).await;

    // Wrong password → Failed; the Snapshot's component error names the target.
    let b = wait_session_done(&e, &badpw).await;
    let st = b.status.unwrap();
    assert_eq!(
        st.phase.map(|p| format!("{p:?}")).as_deref(),
        Some("Failed"),
        "{st:#?}"
    );
    let snap = e
        .cluster
        .api::<Snapshot>(NS)
        .get(&kstash_api::names::snapshot_name("repo-badpw", &badpw))
        .await
        .unwrap();
    let sst = snap.status.unwrap();
    assert_eq!(sst.phase, Some(SnapshotPhase::Failed));
    let err = sst.components["dump"].error.clone().unwrap();
    assert!(err.contains("AppBinding demo/es-badpw"), "{err}");
    assert!(err.contains(&good.url), "{err}");
    assert!(
        err.contains("401") || err.to_lowercase().contains("auth"),
        "{err}"
    );
    let ev = e
        .cluster
        .wait_for_event(NS, &badpw, Duration::from_secs(30), |ev| {
            ev.reason.as_deref() == Some("BackupTaskFailed")
        })
        .await;
    assert!(ev
        .note
        .unwrap_or_default()
        .contains("AppBinding demo/es-badpw"));

    // Digest mismatch → Failed; BackupExecutorEnsured=False names both digests.
    let b = wait_session_done(&e, &digest).await;
    let st = b.status.unwrap();
    assert_eq!(
        st.phase.map(|p| format!("{p:?}")).as_deref(),
        Some("Failed"),
        "{st:#?}"
    );
    let c = condition(&st.conditions, "BackupExecutorEnsured").expect("BackupExecutorEnsured");
    let msg = c.message.clone().unwrap_or_default();
    assert_eq!(c.reason.as_deref(), Some("FailedToEnsureBackupExecutor"));
    assert!(msg.contains(&format!("sha256:{wrong}")), "{msg}");
    assert!(
        msg.contains(&format!("sha256:{}", module_sha256())),
        "{msg}"
    );
    assert!(msg.contains("es-wrong-digest-backup"), "{msg}");

    // A Function asking for more than the operator's cap is refused before anything runs,
    // naming the field, the cap and the flag.
    let b = wait_session_done(&e, &too_much).await;
    let st = b.status.unwrap();
    assert_eq!(
        st.phase.map(|p| format!("{p:?}")).as_deref(),
        Some("Failed"),
        "{st:#?}"
    );
    let c = condition(&st.conditions, "BackupExecutorEnsured").expect("BackupExecutorEnsured");
    let msg = c.message.clone().unwrap_or_default();
    assert!(
        msg.contains("Function es-too-much-backup: spec.module.limits.memory 8Gi is above the operator's cap 256Mi (kstash operator --task-max-memory)"),
        "{msg}"
    );
    // A Function's own wall clock stops its task: Failed, the component naming the limit.
    let b = wait_session_done(&e, &one_second).await;
    let st = b.status.unwrap();
    assert_eq!(
        st.phase.map(|p| format!("{p:?}")).as_deref(),
        Some("Failed"),
        "{st:#?}"
    );
    let snap = e
        .cluster
        .api::<Snapshot>(NS)
        .get(&kstash_api::names::snapshot_name(
            "repo-one-second",
            &one_second,
        ))
        .await
        .unwrap();
    let err = snap.status.unwrap().components["dump"]
        .error
        .clone()
        .unwrap_or_default();
    assert!(err.contains("wall clock"), "{err}");

    // Killed executor: wait until the slow backup runs, kill the executors, start new ones.
    let api: Api<BackupSession> = e.cluster.api(NS);
    let snap_api: Api<Snapshot> = e.cluster.api(NS);
    let slow_snap = kstash_api::names::snapshot_name("repo-slow", &slow_bs);
    wait_for(
        "the slow backup to run and report progress",
        TIMEOUT,
        || async {
            let s = snap_api.get(&slow_snap).await.ok()?;
            let st = s.status?;
            condition(&st.conditions, "BackupProgress")
                .filter(|c| {
                    c.message
                        .as_deref()
                        .is_some_and(|m| !m.contains(": 0 documents"))
                })
                .map(|_| ())
        },
    )
    .await;
    let running = api.get(&slow_bs).await.unwrap();
    assert_eq!(
        running
            .status
            .unwrap()
            .phase
            .map(|p| format!("{p:?}"))
            .as_deref(),
        Some("Running")
    );
    exec.kill().await;
    let exec2 = Executors::start(&e.cluster, "2").await;
    let b = wait_session_done(&e, &slow_bs).await;
    let st = b.status.unwrap();
    assert_eq!(
        st.phase.map(|p| format!("{p:?}")).as_deref(),
        Some("Failed"),
        "{st:#?}"
    );
    assert!(condition_true(&st.conditions, "SnapshotCleanupIncomplete"));
    let s = snap_api.get(&slow_snap).await.unwrap().status.unwrap();
    assert_eq!(s.phase, Some(SnapshotPhase::Failed));
    assert!(condition_true(&s.conditions, "BackupIncomplete"));

    // The next session of the same configuration succeeds (the server is just slow).
    let next = trigger(&e, "appbinding-es-slow", now + 60).await;
    let b = wait_session_done(&e, &next).await;
    let st = b.status.unwrap();
    assert_eq!(
        st.phase.map(|p| format!("{p:?}")).as_deref(),
        Some("Succeeded"),
        "{st:#?}"
    );

    // Deleting the namespace (the tutorial's own cleanup) ends: every Snapshot passes the
    // Snapshot controller (Failed and Succeeded ones alike), none stays Terminating with
    // `kubestash.com/cleanup`, and the namespace goes.
    let left = snap_api.list(&Default::default()).await.unwrap().items;
    assert!(left.len() >= 2, "Snapshots to clean up: {}", left.len());
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(e.cluster.client.clone());
    namespaces
        .delete(NS, &Default::default())
        .await
        .expect("delete the namespace");
    support::wait_for_absent(&namespaces, NS, Duration::from_secs(90)).await;
    exec2.kill().await;
}
