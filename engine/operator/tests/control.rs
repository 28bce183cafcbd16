//! The control half of the operator (auto-backup, BackupStorage, BackupConfiguration with its
//! scheduler, Repository) against the real embedded control plane and a real S3 server (moto
//! over HTTP on loopback), driven with `kubectl apply` of the tutorial's YAML
//! (`examples/auto-backup/`, endpoint and credentials pointed at moto).
//!
//! Expected values come from the tutorial (`kubectl get backupconfiguration -oyaml`, verbatim in
//! `engine/rules/src/backup_configuration/tutorial-bc.yaml`) and the spec.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use kstash_api::core::BackupBlueprint;
use kstash_api::core::{BackupConfiguration, BackupInvokerPhase, BackupSession};
use kstash_api::external::Elasticsearch;
use kstash_api::storage::{BackupStorage, BackupStoragePhase, Repository, RepositoryPhase};
use kube::api::ListParams;
use kube::ResourceExt;
use serde_json::Value;
use support::*;

const T: Duration = Duration::from_secs(90);

fn moto() -> &'static Moto {
    static M: OnceLock<Moto> = OnceLock::new();
    M.get_or_init(Moto::start)
}

/// A fresh bucket on the shared moto server.
fn bucket(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let b = format!(
        "{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    moto().create_bucket(&b);
    b
}

/// The tutorial's BackupConfiguration (verbatim `kubectl get -oyaml` output).
fn tutorial_bc() -> Value {
    yaml_file(&repo_root().join("engine/rules/src/backup_configuration/tutorial-bc.yaml"))
}

/// Removes the time-dependent fields (`lastTransitionTime`, `nextSchedule`) from a status.
fn strip_times(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("lastTransitionTime");
            m.remove("nextSchedule");
            m.values_mut().for_each(strip_times);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_times),
        _ => {}
    }
}

/// Namespace `demo` with the tutorial's two Secrets and RetentionPolicy, and the Elasticsearch
/// Addon + Functions.
async fn tutorial_base(c: &TestCluster) {
    c.create_namespace("demo").await;
    c.create_s3_secret("demo", "s3-secret").await;
    c.create_secret("demo", "encrypt-secret", &[("RESTIC_PASSWORD", "changeit")])
        .await;
    c.apply_yaml(&tutorial_yaml("retentionpolicy.yaml"));
    c.apply_yaml(&elasticsearch_addon_yaml(&"ab".repeat(32)));
}

/// Waits until the auto-backup controller put its finalizer on the blueprint.
async fn wait_blueprint_finalizer(c: &TestCluster) {
    wait_for_object(
        &c.api::<BackupBlueprint>("demo"),
        "es-quickstart-backup-blueprint",
        T,
        |b| b.finalizers().iter().any(|f| f == "kubestash.com/cleanup"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tutorial_flow_reaches_ready_and_the_initial_backup_session() {
    let c = TestCluster::start().await;
    let b = bucket("tutorial");
    tutorial_base(&c).await;
    c.apply_yaml(&tutorial_backup_storage(&moto().endpoint(), &b));
    c.apply_yaml(&tutorial_yaml("default-backupblueprint.yaml"));
    c.apply_yaml(&tutorial_yaml("sample-es.yaml"));
    c.apply_yaml(&appbinding_yaml(
        "demo",
        "es-quickstart",
        "https://127.0.0.1:9200",
        &[],
    ));
    let _op = c.start_operator().await;

    // BackupStorage Ready, metadata.yaml in the bucket under the prefix.
    let bs = wait_for_object(&c.api::<BackupStorage>("demo"), "s3-storage", T, |s| {
        s.status.as_ref().and_then(|s| s.phase) == Some(BackupStoragePhase::Ready)
    })
    .await;
    let st = bs.status.unwrap();
    assert!(condition_true(&st.conditions, "BackendSecretFound"));
    let init = condition(&st.conditions, "BackendInitialized").unwrap();
    assert!(init.is_true());
    assert_eq!(
        init.reason.as_deref(),
        Some("BackendInitializationSucceeded")
    );
    assert_eq!(
        init.message.as_deref(),
        Some("Successfully initialized backend.")
    );
    let storage = moto().storage(&b, "elastic");
    assert!(
        storage.metadata().await.unwrap().is_some(),
        "elastic/metadata.yaml missing"
    );

    // The BackupConfiguration: the tutorial's spec and, once the Repository is initialised, the
    // tutorial's status (timestamps aside).
    let bcs = c.api::<BackupConfiguration>("demo");
    let want = tutorial_bc();
    let mut want_status = want["status"].clone();
    strip_times(&mut want_status);
    let bc = wait_for_object(&bcs, "appbinding-es-quickstart", T, |bc| {
        let mut got = serde_json::to_value(&bc.status).unwrap();
        strip_times(&mut got);
        got == want_status
    })
    .await;
    assert_eq!(serde_json::to_value(&bc.spec).unwrap(), want["spec"]);
    for (k, v) in want["metadata"]["labels"].as_object().unwrap() {
        assert_eq!(
            bc.labels().get(k).map(String::as_str),
            v.as_str(),
            "label {k}"
        );
    }
    assert!(bc.finalizers().iter().any(|f| f == "kubestash.com/cleanup"));
    let owner = &bc.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Elasticsearch", "es-quickstart")
    );
    let next = bc.status.as_ref().unwrap().sessions[0]
        .next_schedule
        .clone()
        .unwrap();
    let next: jiff::Timestamp = next.parse().expect("nextSchedule is RFC 3339");
    assert_eq!(
        next.as_second() % 300,
        0,
        "*/5 schedule: nextSchedule on a 5-minute mark"
    );

    // The Repository: initialised, repository.yaml at <prefix>/<directory>/.
    let repo = wait_for_object(
        &c.api::<Repository>("demo"),
        "s3-elasticsearch-repo",
        T,
        |r| r.status.as_ref().and_then(|s| s.phase) == Some(RepositoryPhase::Ready),
    )
    .await;
    let rs = repo.status.unwrap();
    let ri = condition(&rs.conditions, "RepositoryInitialized").unwrap();
    assert_eq!(
        ri.reason.as_deref(),
        Some("RepositoryInitializationSucceeded")
    );
    assert_eq!(
        ri.message.as_deref(),
        Some("Successfully initialized repository")
    );
    // The execute half runs in the same operator: the initial session may already have produced
    // its Snapshot by the time the Repository is Ready.
    assert!(
        matches!(rs.snapshot_count, Some(0) | Some(1)),
        "a new repository counts at most the initial session's snapshot: {:?}",
        rs.snapshot_count
    );
    assert_eq!(repo.spec.path.as_deref(), Some("/es"));
    let yaml = storage
        .repository("es")
        .unwrap()
        .repository_yaml()
        .await
        .unwrap();
    let yaml: Value =
        serde_yaml::from_slice(&yaml.expect("elastic/es/repository.yaml missing")).unwrap();
    assert_eq!(yaml["kind"], "Repository");
    assert_eq!(yaml["metadata"]["name"], "s3-elasticsearch-repo");

    // BackupStorage lists the repository.
    let bs = wait_for_object(&c.api::<BackupStorage>("demo"), "s3-storage", T, |s| {
        s.status
            .as_ref()
            .is_some_and(|s| !s.repositories.is_empty())
    })
    .await;
    let r0 = &bs.status.unwrap().repositories[0];
    assert_eq!(
        (r0.name.as_str(), r0.path.as_deref()),
        ("s3-elasticsearch-repo", Some("/es"))
    );

    // Exactly one initial BackupSession, named and labelled as the spec says.
    let sessions = c
        .api::<BackupSession>("demo")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(sessions.len(), 1, "one initial BackupSession");
    let s = &sessions[0];
    let name = s.name_any();
    let unix = name
        .strip_prefix("appbinding-es-quickstart-frequent-backup-")
        .unwrap_or_else(|| panic!("BackupSession name {name}"));
    assert!(unix.parse::<i64>().is_ok(), "unix-seconds suffix in {name}");
    let l = s.labels();
    assert_eq!(
        l.get("app.kubernetes.io/managed-by").map(String::as_str),
        Some("kubestash.com")
    );
    assert_eq!(
        l.get("kubestash.com/invoker-name").map(String::as_str),
        Some("appbinding-es-quickstart")
    );
    assert_eq!(
        l.get("kubestash.com/invoker-namespace").map(String::as_str),
        Some("demo")
    );
    assert_eq!(
        l.get("kubestash.com/session-name").map(String::as_str),
        Some("frequent-backup")
    );
    let inv = s.spec.invoker.as_ref().unwrap();
    assert_eq!(
        (
            inv.api_group.as_deref(),
            inv.kind.as_str(),
            inv.name.as_str()
        ),
        (
            Some("core.kubestash.com"),
            "BackupConfiguration",
            "appbinding-es-quickstart"
        )
    );
    assert_eq!(s.spec.session.as_deref(), Some("frequent-backup"));
    assert_eq!(s.owner_references()[0].name, "appbinding-es-quickstart");

    // kubectl shows it as the tutorial does.
    let table = c.kubectl(&["get", "backupconfiguration", "-n", "demo"]);
    let row = table
        .lines()
        .find(|l| l.starts_with("appbinding-es-quickstart"))
        .unwrap();
    assert!(row.contains("Ready"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_variable_is_an_event_on_the_target_then_renders_once_annotated() {
    let c = TestCluster::start().await;
    c.create_namespace("demo").await;
    c.apply_yaml(&tutorial_yaml("custom-backup-blueprint.yaml"));
    let es = tutorial_yaml("sample-es-2.yaml").replace(
        "    variables.kubestash.com/schedule: \"*/5 * * * *\"\n",
        "",
    );
    assert!(!es.contains("variables.kubestash.com/schedule"));
    c.apply_yaml(&es);
    let _op = c.start_operator().await;

    let ev = c
        .wait_for_event("demo", "es-quickstart-2", T, |e| {
            e.reason.as_deref() == Some("AutoBackupFailed")
        })
        .await;
    assert_eq!(ev.type_.as_deref(), Some("Warning"));
    let note = ev.note.unwrap_or_default();
    assert!(
        note.contains("\"schedule\""),
        "event names the variable: {note}"
    );
    assert!(note.contains("variables.kubestash.com/schedule"), "{note}");
    let bcs = c.api::<BackupConfiguration>("demo");
    assert!(bcs
        .get_opt("appbinding-es-quickstart-2")
        .await
        .unwrap()
        .is_none());

    // Adding the annotation re-renders: the BC appears with the variables substituted.
    c.kubectl(&[
        "annotate",
        "elasticsearch",
        "-n",
        "demo",
        "es-quickstart-2",
        "variables.kubestash.com/schedule=*/5 * * * *",
    ]);
    let bc = wait_for_object(&bcs, "appbinding-es-quickstart-2", T, |_| true).await;
    let s = &bc.spec.sessions[0];
    assert_eq!(s.config.scheduler.as_ref().unwrap().schedule, "*/5 * * * *");
    assert_eq!(s.repositories[0].name, "s3-elasticsearch-repo");
    assert_eq!(
        bc.spec.backends[0]
            .storage_ref
            .as_ref()
            .unwrap()
            .namespace
            .as_deref(),
        Some("demo")
    );

    // Changing a variable updates the BC.
    c.kubectl(&[
        "annotate",
        "--overwrite",
        "elasticsearch",
        "-n",
        "demo",
        "es-quickstart-2",
        "variables.kubestash.com/schedule=0 * * * *",
    ]);
    wait_for_object(&bcs, "appbinding-es-quickstart-2", T, |bc| {
        bc.spec.sessions[0]
            .config
            .scheduler
            .as_ref()
            .unwrap()
            .schedule
            == "0 * * * *"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blueprint_target_and_annotation_lifecycle() {
    let c = TestCluster::start().await;
    c.create_namespace("demo").await;
    c.apply_yaml(&tutorial_yaml("default-backupblueprint.yaml"));
    c.apply_yaml(&tutorial_yaml("sample-es.yaml"));
    let other =
        tutorial_yaml("sample-es.yaml").replace("name: es-quickstart\n", "name: es-other\n");
    c.apply_yaml(&other);
    let third =
        tutorial_yaml("sample-es.yaml").replace("name: es-quickstart\n", "name: es-third\n");
    c.apply_yaml(&third);
    let _op = c.start_operator().await;
    let bcs = c.api::<BackupConfiguration>("demo");
    for n in [
        "appbinding-es-quickstart",
        "appbinding-es-other",
        "appbinding-es-third",
    ] {
        wait_for_object(&bcs, n, T, |bc| {
            bc.finalizers().iter().any(|f| f == "kubestash.com/cleanup")
        })
        .await;
    }

    // Annotations removed: the BC goes.
    c.kubectl(&[
        "annotate",
        "elasticsearch",
        "-n",
        "demo",
        "es-other",
        "blueprint.kubestash.com/name-",
        "blueprint.kubestash.com/namespace-",
    ]);
    wait_for_absent(&bcs, "appbinding-es-other", T).await;

    // Target deleted: the BC is garbage-collected through its owner reference.
    c.kubectl(&["delete", "elasticsearch", "-n", "demo", "es-third"]);
    wait_for_absent(&bcs, "appbinding-es-third", T).await;

    // Blueprint deleted with deletionPolicy OnDelete: its BC is deleted, then the blueprint.
    wait_blueprint_finalizer(&c).await;
    c.kubectl(&[
        "delete",
        "backupblueprint",
        "-n",
        "demo",
        "es-quickstart-backup-blueprint",
        "--wait=false",
    ]);
    wait_for_absent(&bcs, "appbinding-es-quickstart", T).await;
    wait_for_absent(
        &c.api::<BackupBlueprint>("demo"),
        "es-quickstart-backup-blueprint",
        T,
    )
    .await;
    // ... and it is not re-created from the annotated target.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(bcs
        .get_opt("appbinding-es-quickstart")
        .await
        .unwrap()
        .is_none());
    assert!(c
        .api::<Elasticsearch>("demo")
        .get_opt("es-quickstart")
        .await
        .unwrap()
        .is_some());
}

/// Blueprint without `deletionPolicy`: deleting it keeps the generated BC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blueprint_without_on_delete_keeps_the_configuration() {
    let c = TestCluster::start().await;
    c.create_namespace("demo").await;
    let bp =
        tutorial_yaml("default-backupblueprint.yaml").replace("    deletionPolicy: OnDelete\n", "");
    assert!(!bp.contains("OnDelete"));
    c.apply_yaml(&bp);
    c.apply_yaml(&tutorial_yaml("sample-es.yaml"));
    let _op = c.start_operator().await;
    let bcs = c.api::<BackupConfiguration>("demo");
    wait_for_object(&bcs, "appbinding-es-quickstart", T, |_| true).await;
    wait_blueprint_finalizer(&c).await;
    c.kubectl(&[
        "delete",
        "backupblueprint",
        "-n",
        "demo",
        "es-quickstart-backup-blueprint",
    ]);
    wait_for_absent(
        &c.api::<BackupBlueprint>("demo"),
        "es-quickstart-backup-blueprint",
        T,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(bcs
        .get_opt("appbinding-es-quickstart")
        .await
        .unwrap()
        .is_some());
}

/// `*/1 * * * *`: after the initial session, the next scheduled minute creates the next
/// BackupSession (named for that minute); once paused, no further session is created and
/// `nextSchedule` is cleared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_minute_schedule_fires_and_pause_stops_it() {
    let c = TestCluster::start().await;
    let b = bucket("schedule");
    tutorial_base(&c).await;
    // The custom blueprint references BackupStorage `s3-store` (tutorial quirk, spec §11.12).
    c.apply_yaml(
        &tutorial_backup_storage(&moto().endpoint(), &b)
            .replace("name: s3-storage", "name: s3-store"),
    );
    c.apply_yaml(&tutorial_yaml("custom-backup-blueprint.yaml"));
    c.apply_yaml(&tutorial_yaml("sample-es-2.yaml").replace("\"*/5 * * * *\"", "\"*/1 * * * *\""));
    let _op = c.start_operator().await;
    let bcs = c.api::<BackupConfiguration>("demo");
    wait_for_object(&bcs, "appbinding-es-quickstart-2", T, |bc| {
        bc.status.as_ref().and_then(|s| s.phase) == Some(BackupInvokerPhase::Ready)
    })
    .await;
    let sessions = c.api::<BackupSession>("demo");
    let list = || async {
        let mut v: Vec<String> = sessions
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|s| s.name_any())
            .collect();
        v.sort();
        v
    };
    let first = wait_for("the initial BackupSession", T, || async {
        list().await.first().cloned()
    })
    .await;
    let scheduled = wait_for(
        "a scheduled BackupSession",
        Duration::from_secs(100),
        || async { list().await.into_iter().find(|n| *n != first) },
    )
    .await;
    let unix: i64 = scheduled.rsplit('-').next().unwrap().parse().unwrap();
    assert_eq!(
        unix % 60,
        0,
        "{scheduled} is named for its scheduled minute"
    );

    // Pause: nextSchedule cleared, no new session over the next minute boundary.
    c.kubectl(&[
        "patch",
        "backupconfiguration",
        "-n",
        "demo",
        "appbinding-es-quickstart-2",
        "--type=merge",
        "-p",
        r#"{"spec":{"paused":true}}"#,
    ]);
    wait_for_object(&bcs, "appbinding-es-quickstart-2", T, |bc| {
        bc.status
            .as_ref()
            .is_some_and(|s| s.sessions[0].next_schedule.is_none())
    })
    .await;
    let before = list().await;
    let now = jiff::Timestamp::now().as_second();
    let wait = 60 - now % 60 + 5;
    tokio::time::sleep(Duration::from_secs(wait as u64)).await;
    assert_eq!(list().await, before, "no BackupSession while paused");
    // The auto-backup controller never un-pauses it.
    let bc = bcs.get("appbinding-es-quickstart-2").await.unwrap();
    assert_eq!(bc.spec.paused, Some(true));
}

/// Kinds kstash serves but does not run are marked refused, never silently accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinds_kstash_does_not_run_are_marked_refused() {
    use kstash_api::core::{BackupBatch, BackupVerificationSession};
    let c = TestCluster::start().await;
    c.create_namespace("demo").await;
    c.apply_yaml(
        r#"apiVersion: core.kubestash.com/v1alpha1
kind: BackupBatch
metadata: {name: nightly, namespace: demo}
spec:
  targets: [{name: es, appRef: {kind: Elasticsearch, name: es-quickstart}}]
---
apiVersion: core.kubestash.com/v1alpha1
kind: BackupVerifier
metadata: {name: es-verifier, namespace: demo}
spec: {type: RestoreOnly}
---
apiVersion: core.kubestash.com/v1alpha1
kind: BackupVerificationSession
metadata: {name: verify-1, namespace: demo}
spec: {session: full-backup, repository: es-repo}
"#,
    );
    let _op = c.start_operator().await;
    let refused = |conds: &[kstash_api::shared::Condition]| {
        conds.iter().any(|c| {
            c.type_ == "Ready"
                && c.reason.as_deref() == Some("KindNotSupported")
                && c.message
                    .as_deref()
                    .is_some_and(|m| m.contains("kstash does not run"))
        })
    };
    let bb = wait_for_object(&c.api::<BackupBatch>("demo"), "nightly", T, |b| {
        b.status.as_ref().is_some_and(|s| refused(&s.conditions))
    })
    .await;
    assert_eq!(bb.status.unwrap().phase, Some(BackupInvokerPhase::Invalid));
    let vs = wait_for_object(
        &c.api::<BackupVerificationSession>("demo"),
        "verify-1",
        T,
        |v| v.status.as_ref().is_some_and(|s| refused(&s.conditions)),
    )
    .await;
    assert_eq!(
        vs.status.unwrap().phase,
        Some(kstash_api::core::BackupVerificationSessionPhase::Skipped)
    );
    for name in ["nightly", "es-verifier", "verify-1"] {
        c.wait_for_event("demo", name, T, |e| {
            e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some("KindNotSupported")
        })
        .await;
    }
}
