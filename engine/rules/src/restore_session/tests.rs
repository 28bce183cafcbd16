//! Expected values come from the tutorial's RestoreSession (spec §8,
//! `kubedb/docs:.../kubestash/logical/examples/restoresession.yaml`), the tutorial's Snapshot
//! names and times, and spec §1.5 (conditions, phase calculator, webhook messages).

use super::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kstash_api::core::{BackupConfigurationSpec, PitrSpec};
use kstash_api::shared::{Condition, ConditionStatus};
use kstash_api::storage::{Component, SnapshotSpec, SnapshotStatus};

const TUTORIAL_RESTORE: &str = r#"
apiVersion: core.kubestash.com/v1alpha1
kind: RestoreSession
metadata:
  name: es-quickstart-restore
  namespace: demo
spec:
  target:
    apiGroup: kubedb.com
    kind: Elasticsearch
    name: restore-es
    namespace: demo
  dataSource:
    repository: s3-elasticsearch-repo
    snapshot: latest
    encryptionSecret:
      name: encrypt-secret
      namespace: demo
  addon:
    name: elasticsearch-addon
    tasks:
      - name: logical-backup-restore
"#;

use kstash_testkit::ts;

fn tutorial_rs() -> RestoreSession {
    serde_yaml::from_str(TUTORIAL_RESTORE).unwrap()
}

fn snap(name: &str, repo: &str, phase: SnapshotPhase, time: &str) -> Snapshot {
    Snapshot {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some("demo".into()),
            ..Default::default()
        },
        spec: SnapshotSpec {
            repository: Some(repo.to_string()),
            session: Some("frequent-backup".into()),
            ..Default::default()
        },
        status: Some(SnapshotStatus {
            phase: Some(phase),
            snapshot_time: Some(Time(ts(time))),
            components: BTreeMap::from([("dump".to_string(), Component::default())]),
            total_components: Some(1),
            ..Default::default()
        }),
    }
}

const REPO: &str = "s3-elasticsearch-repo";
const S1: &str = "s3-elasticsearch-repo-appbindingtart-frequent-backup-1726722361";
const S2: &str = "s3-elasticsearch-repo-appbindingtart-frequent-backup-1726727401";

fn snapshots() -> Vec<Snapshot> {
    vec![
        snap(S1, REPO, SnapshotPhase::Succeeded, "2024-09-19T05:06:01Z"),
        snap(S2, REPO, SnapshotPhase::Succeeded, "2024-09-19T06:30:01Z"),
        // Newer but failed / running / another repository: never "latest".
        snap(
            "failed-one",
            REPO,
            SnapshotPhase::Failed,
            "2024-09-19T06:35:00Z",
        ),
        snap(
            "running-one",
            REPO,
            SnapshotPhase::Running,
            "2024-09-19T06:40:00Z",
        ),
        snap(
            "customize-blueprint-appbinding-ses-2-frequent-backup-1725597000",
            "customize-blueprint",
            SnapshotPhase::Succeeded,
            "2024-09-20T04:30:00Z",
        ),
    ]
}

fn bc(name: &str, target: TypedObjectReference, paused: bool) -> BackupConfiguration {
    BackupConfiguration {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("demo".into()),
            ..Default::default()
        },
        spec: BackupConfigurationSpec {
            target: Some(target),
            paused: paused.then_some(true),
            ..Default::default()
        },
        status: None,
    }
}

fn es(name: &str) -> TypedObjectReference {
    TypedObjectReference {
        api_group: Some("kubedb.com".into()),
        kind: Some("Elasticsearch".into()),
        namespace: Some("demo".into()),
        name: name.into(),
    }
}

fn appbinding(name: &str) -> TypedObjectReference {
    TypedObjectReference {
        api_group: Some("appcatalog.appscode.com".into()),
        kind: Some("AppBinding".into()),
        namespace: None,
        name: name.into(),
    }
}

fn bc_ref(name: &str) -> TypedObjectReference {
    TypedObjectReference {
        api_group: Some("core.kubestash.com".into()),
        kind: Some("BackupConfiguration".into()),
        namespace: Some("demo".into()),
        name: name.into(),
    }
}

struct World {
    lookup: Lookup,
    target_found: Option<bool>,
    snapshots: Vec<Snapshot>,
    addons: BTreeSet<String>,
    bcs: Vec<BackupConfiguration>,
}

impl World {
    fn tutorial() -> World {
        World {
            lookup: Lookup::default(),
            target_found: Some(true),
            snapshots: snapshots(),
            addons: BTreeSet::from(["elasticsearch-addon".to_string()]),
            bcs: vec![
                bc("appbinding-restore-es", es("restore-es"), false),
                bc("appbinding-es-quickstart", es("es-quickstart"), false),
                bc("paused-by-user", appbinding("restore-es"), true),
                bc("by-appbinding", appbinding("restore-es"), false),
            ],
        }
    }

    fn plan(&self, rs: &RestoreSession) -> Plan {
        plan(
            rs,
            &Observed {
                lookup: &self.lookup,
                target_found: self.target_found,
                snapshots: &self.snapshots,
                addons: &self.addons,
                backup_configurations: &self.bcs,
                start: ts("2024-09-19T07:00:00Z"),
                now: ts("2024-09-19T07:00:00Z"),
            },
        )
        .unwrap()
    }
}

fn cond_of<'a>(st: &'a RestoreSessionStatus, t: &str) -> &'a Condition {
    st.conditions.iter().find(|c| c.type_ == t).unwrap()
}

#[test]
fn tutorial_restore_plan() {
    let world = World::tutorial();
    let p = world.plan(&tutorial_rs());
    assert_eq!(
        p.next,
        Next::Run {
            snapshot: ResolvedSnapshot {
                name: S2.into(),
                namespace: "demo".into()
            },
            components: vec!["dump".into()],
            pause: vec![bc_ref("appbinding-restore-es"), bc_ref("by-appbinding")],
        }
    );
    let st = &p.status;
    assert_eq!(
        cond_of(st, "ValidationPassed").reason.as_deref(),
        Some("ResourceValidationPassed")
    );
    assert_eq!(st.target_found, Some(true));
    assert_eq!(
        st.dependencies,
        vec![
            ResourceFoundStatus {
                api_group: Some("storage.kubestash.com".into()),
                kind: Some("Snapshot".into()),
                name: S2.into(),
                namespace: Some("demo".into()),
                found: Some(true),
            },
            ResourceFoundStatus {
                api_group: Some("addons.kubestash.com".into()),
                kind: Some("Addon".into()),
                name: "elasticsearch-addon".into(),
                namespace: None,
                found: Some(true),
            },
        ]
    );
    assert_eq!(
        st.paused_backups,
        vec![bc_ref("appbinding-restore-es"), bc_ref("by-appbinding")]
    );
    assert_eq!(st.total_components, Some(1));
    assert!(st.components.is_empty());
    assert_eq!(st.phase, Some(RestorePhase::Pending));
    assert_eq!(st.restore_deadline, None);

    // Reconciling again after pausing: nothing new to pause, the record stays.
    let mut rs = tutorial_rs();
    rs.status = Some(p.status.clone());
    let mut world2 = World::tutorial();
    for b in &mut world2.bcs {
        if b.metadata.name.as_deref() != Some("appbinding-es-quickstart") {
            b.spec.paused = Some(true);
        }
    }
    let p2 = world2.plan(&rs);
    match p2.next {
        Next::Run { pause, .. } => assert!(pause.is_empty()),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(p2.status.paused_backups, p.status.paused_backups);
}

#[test]
fn snapshot_resolution_table() {
    let snaps = snapshots();
    let mk = |snapshot: Option<&str>, pitr: Option<(&str, bool)>, ns: Option<&str>| {
        let mut rs = tutorial_rs();
        let ds = rs.spec.data_source.as_mut().unwrap();
        ds.snapshot = snapshot.map(str::to_string);
        ds.namespace = ns.map(str::to_string);
        ds.pitr = pitr.map(|(t, exclusive)| PitrSpec {
            target_time: Some(Time(ts(t))),
            exclusive: Some(exclusive),
        });
        rs
    };
    let cases: Vec<(RestoreSession, Result<&str, &str>)> = vec![
        (mk(Some("latest"), None, None), Ok(S2)),
        (mk(Some(S1), None, None), Ok(S1)),
        (mk(Some(S1), None, Some("demo")), Ok(S1)),
        (
            mk(Some("nope"), None, None),
            Err("Snapshot demo/nope not found"),
        ),
        // A named Snapshot must be Succeeded: a failed or running one is refused by name.
        (
            mk(Some("failed-one"), None, None),
            Err("Snapshot demo/failed-one is Failed, not Succeeded: restore from a Succeeded Snapshot"),
        ),
        (
            mk(Some("running-one"), None, None),
            Err("Snapshot demo/running-one is Running, not Succeeded: restore from a Succeeded Snapshot"),
        ),
        // Another namespace has none of these snapshots.
        (
            mk(Some("latest"), None, Some("prod")),
            Err("no Succeeded Snapshot found in repository prod/s3-elasticsearch-repo"),
        ),
        // PITR: latest at/before the target time; exclusive drops the exact match.
        (mk(None, Some(("2024-09-19T06:30:01Z", false)), None), Ok(S2)),
        (mk(None, Some(("2024-09-19T06:30:01Z", true)), None), Ok(S1)),
        (mk(None, Some(("2024-09-19T06:00:00Z", false)), None), Ok(S1)),
        (mk(None, Some(("2024-09-19T07:00:00Z", false)), None), Ok(S2)),
        (
            mk(None, Some(("2024-09-19T05:06:01Z", true)), None),
            Err("no Succeeded Snapshot of repository demo/s3-elasticsearch-repo at or strictly before 2024-09-19T05:06:01Z"),
        ),
    ];
    for (i, (rs, want)) in cases.into_iter().enumerate() {
        let got = resolve_snapshot(&rs, &snaps);
        match want {
            Ok(name) => assert_eq!(got.map(|r| r.name), Ok(name.to_string()), "case {i}"),
            Err(msg) => assert_eq!(got, Err(msg.to_string()), "case {i}"),
        }
    }
}

#[test]
fn invalid_restore_session() {
    let world = World::tutorial();
    let mut rs = tutorial_rs();
    rs.spec.data_source.as_mut().unwrap().snapshot = None;
    let p = world.plan(&rs);
    assert_eq!(p.next, Next::Invalid);
    assert_eq!(p.status.phase, Some(RestorePhase::Invalid));
    let c = cond_of(&p.status, "ValidationPassed");
    assert_eq!(c.status, ConditionStatus::False);
    assert_eq!(
        c.message.as_deref(),
        Some("spec.dataSource.snapshot: snapshot can not be empty")
    );

    let mut rs = tutorial_rs();
    rs.spec.data_source.as_mut().unwrap().repository = None;
    let p = world.plan(&rs);
    assert_eq!(p.status.phase, Some(RestorePhase::Invalid));

    let mut rs = tutorial_rs();
    rs.metadata.namespace = None;
    let e = plan(
        &rs,
        &Observed {
            lookup: &world.lookup,
            target_found: Some(true),
            snapshots: &[],
            addons: &world.addons,
            backup_configurations: &[],
            start: ts("2024-09-19T07:00:00Z"),
            now: ts("2024-09-19T07:00:00Z"),
        },
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "RestoreSession metadata.namespace is missing"
    );
}

#[test]
fn missing_dependencies_and_target() {
    let start = ts("2024-09-19T07:00:00Z");
    // No snapshot at all: fail, dependency not found.
    let mut world = World::tutorial();
    world.snapshots.clear();
    let p = world.plan(&tutorial_rs());
    let Next::Fail(msg) = &p.next else {
        panic!("{:?}", p.next)
    };
    assert_eq!(
        msg,
        "no Succeeded Snapshot found in repository demo/s3-elasticsearch-repo"
    );
    assert_eq!(p.status.dependencies[0].found, Some(false));
    let mut st = p.status.clone();
    let resume = fail(&mut st, msg, &Ok(()), start, ts("2024-09-19T07:00:02Z"));
    assert!(resume.is_empty());
    assert_eq!(st.phase, Some(RestorePhase::Failed));
    assert_eq!(st.duration.as_deref(), Some("2s"));
    let c = cond_of(&st, "RestoreExecutorEnsured");
    assert_eq!(
        (c.status, c.reason.as_deref(), c.message.as_deref()),
        (
            ConditionStatus::False,
            Some("FailedToEnsureRestoreExecutor"),
            Some(msg.as_str())
        )
    );

    // No Addon.
    let mut world = World::tutorial();
    world.addons.clear();
    let p = world.plan(&tutorial_rs());
    assert_eq!(
        p.next,
        Next::Fail("Addon \"elasticsearch-addon\" not found".into())
    );
    assert_eq!(p.status.dependencies[1].found, Some(false));

    // Target missing / unknown: wait, Pending, RestoreTargetFound False.
    for (found, reason) in [
        (Some(false), "TargetNotAvailable"),
        (None, "UnableToCheckTargetAvailability"),
    ] {
        let mut world = World::tutorial();
        world.target_found = found;
        let p = world.plan(&tutorial_rs());
        assert!(matches!(p.next, Next::Wait(_)), "{:?}", p.next);
        assert_eq!(p.status.phase, Some(RestorePhase::Pending));
        let c = cond_of(&p.status, "RestoreTargetFound");
        assert_eq!(
            (c.status, c.reason.as_deref()),
            (ConditionStatus::False, Some(reason))
        );
    }

    // Bad timeout.
    let world = World::tutorial();
    let mut rs = tutorial_rs();
    rs.spec.restore_timeout = Some("ten minutes".into());
    let p = world.plan(&rs);
    let Next::Fail(msg) = &p.next else {
        panic!("{:?}", p.next)
    };
    assert!(msg.starts_with("spec.restoreTimeout: "), "{msg}");
    rs.spec.restore_timeout = Some("10m".into());
    let p = world.plan(&rs);
    assert_eq!(
        p.status.restore_deadline,
        Some(Time(ts("2024-09-19T07:10:00Z")))
    );
}

#[test]
fn components_progress_and_finish() {
    let world = World::tutorial();
    let start = ts("2024-09-19T07:00:00Z");
    let mut st = world.plan(&tutorial_rs()).status;
    mark_executor(&mut st, &Ok(()), start);
    assert_eq!(
        cond_of(&st, "RestoreExecutorEnsured").reason.as_deref(),
        Some("SuccessfullyEnsuredRestoreExecutor")
    );
    let progress = Progress {
        seconds_elapsed: 3.0,
        percent_done: Some(50.0),
        total_files: Some(20),
        files_done: 10,
        restore_done: "1.000 KiB".into(),
        total: Some("2.000 KiB".into()),
        speed: None,
    };
    update_component(&mut st, "dump", &ComponentUpdate::Running(progress.clone()));
    assert_eq!(st.phase, Some(RestorePhase::Running));
    assert_eq!(
        st.components["dump"].progress,
        Some(serde_json::json!({
            "secondsElapsed": 3.0, "percentDone": 50.0, "totalFiles": 20, "filesDone": 10,
            "restoreDone": "1.000 KiB", "total": "2.000 KiB"
        }))
    );

    let mut ok = st.clone();
    update_component(
        &mut ok,
        "dump",
        &ComponentUpdate::Succeeded(progress.clone(), Duration::from_millis(5_250)),
    );
    assert_eq!(ok.components["dump"].duration.as_deref(), Some("5.25s"));
    // Components done but MetricsPushed missing: still Running (calculator step 5).
    assert_eq!(ok.phase, Some(RestorePhase::Running));
    let resume = finish(&mut ok, &Ok(()), start, ts("2024-09-19T07:00:06Z"));
    assert_eq!(resume, ok.paused_backups);
    assert_eq!(resume.len(), 2);
    assert_eq!(ok.phase, Some(RestorePhase::Succeeded));
    assert_eq!(ok.duration.as_deref(), Some("6s"));
    assert_eq!(ok.conditions.last().unwrap().type_, "MetricsPushed");

    let mut bad = st.clone();
    update_component(
        &mut bad,
        "dump",
        &ComponentUpdate::Failed(
            "index demo: mapping conflict".into(),
            Duration::from_secs(2),
        ),
    );
    // Terminal but MetricsPushed missing: Running (calculator step 5).
    assert_eq!(bad.phase, Some(RestorePhase::Running));
    finish(&mut bad, &Ok(()), start, ts("2024-09-19T07:00:06Z"));
    assert_eq!(bad.phase, Some(RestorePhase::Failed));
    assert_eq!(
        bad.components["dump"].error.as_deref(),
        Some("index demo: mapping conflict")
    );

    // Metrics failing fails the restore (calculator step 1).
    let mut m = ok.clone();
    finish(
        &mut m,
        &Err("pushgateway down".into()),
        start,
        ts("2024-09-19T07:00:06Z"),
    );
    assert_eq!(m.phase, Some(RestorePhase::Failed));

    // Executor lost mid-restore.
    let mut orphan = st.clone();
    let resume = recover_orphan(&mut orphan, &Ok(()), start, ts("2024-09-19T07:05:00Z"));
    assert_eq!(resume.len(), 2);
    assert_eq!(orphan.phase, Some(RestorePhase::Failed));
    assert_eq!(orphan.components["dump"].phase, Some(RestorePhase::Failed));
    let c = cond_of(&orphan, "RestoreIncomplete");
    assert_eq!(
        (c.status, c.reason.as_deref()),
        (
            ConditionStatus::True,
            Some("RestoreExecutorTerminatedBeforeCompletion")
        )
    );
    assert_eq!(
        component_phases(&orphan),
        BTreeMap::from([("dump".to_string(), Some(RestorePhase::Failed))])
    );
}

#[test]
fn target_matching() {
    // (restore target, bc target, same?)
    let cases = [
        (es("restore-es"), es("restore-es"), true),
        (es("restore-es"), appbinding("restore-es"), true),
        (appbinding("restore-es"), es("restore-es"), true),
        (es("restore-es"), es("es-quickstart"), false),
        (
            es("restore-es"),
            TypedObjectReference {
                namespace: Some("prod".into()),
                ..es("restore-es")
            },
            false,
        ),
        (
            es("restore-es"),
            TypedObjectReference {
                api_group: Some("apps".into()),
                kind: Some("StatefulSet".into()),
                ..es("restore-es")
            },
            false,
        ),
    ];
    for (i, (a, b, same)) in cases.iter().enumerate() {
        assert_eq!(same_target(a, "demo", b, "demo"), *same, "case {i}");
    }
}
