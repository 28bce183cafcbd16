//! Expected values come from the tutorial's Snapshot (`kubectl get snapshots … -oyaml`,
//! tutorial-snapshot.yaml, verbatim), the tutorial's session names, spec §1.3/§4/§5.1/§6 and
//! Go's documented `time.ParseDuration`/`Duration.String` outputs.

use super::*;
use kstash_api::core::RetryConfig;
use kstash_api::shared::TypedLocalObjectReference;
use kstash_api::shared::{Condition, ConditionStatus};
use kstash_api::storage::{RepositorySpec, SuccessfulSnapshotsKeepPolicy};

const TUTORIAL_SNAPSHOT: &str = include_str!("tutorial-snapshot.yaml");

use kstash_testkit::ts;

fn tutorial_snapshot() -> Snapshot {
    serde_yaml::from_str(TUTORIAL_SNAPSHOT).unwrap()
}

fn session(name: &str, session: &str, phase: Option<BackupSessionPhase>) -> BackupSession {
    BackupSession {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some("demo".into()),
            ..Default::default()
        },
        spec: BackupSessionSpec {
            invoker: Some(TypedLocalObjectReference {
                api_group: Some("core.kubestash.com".into()),
                kind: "BackupConfiguration".into(),
                name: "appbinding-es-quickstart".into(),
            }),
            session: Some(session.to_string()),
            retry_left: Some(0),
            backup_timeout: None,
        },
        status: phase.map(|p| BackupSessionStatus {
            phase: Some(p),
            ..Default::default()
        }),
    }
}

fn tutorial_session() -> BackupSession {
    session(
        "appbinding-es-quickstart-frequent-backup-1726722361",
        "frequent-backup",
        Some(BackupSessionPhase::Running),
    )
}

fn tutorial_repository() -> Repository {
    Repository {
        metadata: ObjectMeta {
            name: Some("s3-elasticsearch-repo".into()),
            namespace: Some("demo".into()),
            uid: Some("c6859c35-2c70-45b7-a8ed-e9969b009b69".into()),
            ..Default::default()
        },
        spec: RepositorySpec::default(),
        status: None,
    }
}

fn es_ref() -> TypedObjectReference {
    TypedObjectReference {
        api_group: Some("kubedb.com".into()),
        kind: Some("Elasticsearch".into()),
        namespace: Some("demo".into()),
        name: "es-quickstart".into(),
    }
}

fn type_order(conds: &[Condition]) -> Vec<&str> {
    conds.iter().map(|c| c.type_.as_str()).collect()
}

#[test]
fn go_durations_parse() {
    let ok: &[(&str, u64)] = &[
        ("30s", 30_000_000_000),
        ("2m", 120_000_000_000),
        ("1h30m", 5_400_000_000_000),
        ("2h", 7_200_000_000_000),
        ("1.5s", 1_500_000_000),
        ("500ms", 500_000_000),
        ("1h0m0s", 3_600_000_000_000),
        ("300us", 300_000),
        ("300µs", 300_000),
        ("10ns", 10),
        ("0", 0),
        ("+5s", 5_000_000_000),
        (".5m", 30_000_000_000),
    ];
    for (s, nanos) in ok {
        assert_eq!(
            parse_go_duration(s),
            Ok(Duration::from_nanos(*nanos)),
            "{s}"
        );
    }
    assert_eq!(parse_go_duration(""), Err(DurationError::Empty));
    assert_eq!(
        parse_go_duration("10"),
        Err(DurationError::Invalid("10".into()))
    );
    assert_eq!(
        parse_go_duration("s"),
        Err(DurationError::Invalid("s".into()))
    );
    assert_eq!(
        parse_go_duration("1d"),
        Err(DurationError::UnknownUnit {
            input: "1d".into(),
            unit: "d".into()
        })
    );
    assert_eq!(
        parse_go_duration("-1s"),
        Err(DurationError::Negative("-1s".into()))
    );
    let msg = parse_go_duration("1d").unwrap_err().to_string();
    assert!(msg.contains("unknown unit \"d\""), "{msg}");
}

#[test]
fn go_durations_format() {
    let cases: &[(u64, &str)] = &[
        (0, "0s"),
        (22_000_000_000, "22s"),
        (65_000_000_000, "1m5s"),
        (1_933_950_652, "1.933950652s"),
        (1_930_101_810, "1.93010181s"),
        (3_600_000_000_000, "1h0m0s"),
        (5_400_000_000_000, "1h30m0s"),
        (500_000_000, "500ms"),
        (1_500, "1.5µs"),
        (999, "999ns"),
    ];
    for (nanos, s) in cases {
        assert_eq!(format_go_duration(Duration::from_nanos(*nanos)), *s);
    }
    // Session durations are whole seconds (tutorial `DURATION 19s`).
    assert_eq!(
        session_duration(ts("2024-09-19T06:30:01Z"), ts("2024-09-19T06:30:20.4Z")),
        "19s"
    );
    assert_eq!(
        session_duration(ts("2024-09-19T06:30:01Z"), ts("2024-09-19T06:31:06Z")),
        "1m5s"
    );
}

#[test]
fn deadline_is_start_plus_timeout() {
    let mut bs = tutorial_session();
    let start = ts("2024-09-19T05:06:01Z");
    assert_eq!(backup_deadline(&bs, start), Ok(None));
    bs.spec.backup_timeout = Some("30m".into());
    let d = backup_deadline(&bs, start).unwrap();
    assert_eq!(d, Some(ts("2024-09-19T05:36:01Z")));
    assert!(!deadline_exceeded(d, ts("2024-09-19T05:36:00Z")));
    assert!(deadline_exceeded(d, ts("2024-09-19T05:36:01Z")));
    bs.spec.backup_timeout = Some("1h30m".into());
    assert_eq!(
        backup_deadline(&bs, start),
        Ok(Some(ts("2024-09-19T06:36:01Z")))
    );
    bs.spec.backup_timeout = Some("thirty".into());
    let e = backup_deadline(&bs, start).unwrap_err();
    assert!(e.to_string().starts_with("spec.backupTimeout: "), "{e}");
}

#[test]
fn skip_rules() {
    let bs = session(
        "appbinding-es-quickstart-frequent-backup-1726722420",
        "frequent-backup",
        None,
    );
    let running = tutorial_session();
    let done = session(
        "appbinding-es-quickstart-frequent-backup-1726722300",
        "frequent-backup",
        Some(BackupSessionPhase::Succeeded),
    );
    let other_session = session(
        "appbinding-es-quickstart-weekly-1726722300",
        "weekly",
        Some(BackupSessionPhase::Running),
    );
    let ready = Some(BackupInvokerPhase::Ready);
    // (invoker phase, others, skipped?)
    let cases: Vec<(Option<BackupInvokerPhase>, Vec<BackupSession>, bool)> = vec![
        (ready, vec![], false),
        (ready, vec![done.clone()], false),
        (ready, vec![other_session.clone()], false),
        (ready, vec![running.clone()], true),
        (ready, vec![done, running.clone(), other_session], true),
        (Some(BackupInvokerPhase::NotReady), vec![], true),
        (Some(BackupInvokerPhase::Invalid), vec![], true),
        (None, vec![], true),
    ];
    for (i, (phase, others, skipped)) in cases.into_iter().enumerate() {
        assert_eq!(
            skip_reason(&bs, phase, &others).is_some(),
            skipped,
            "case {i}"
        );
    }
    // A session never skips because of itself.
    assert_eq!(
        skip_reason(&running, ready, std::slice::from_ref(&running)),
        None
    );

    let msg = skip_reason(&bs, ready, &[running]).unwrap();
    assert!(msg.contains("appbinding-es-quickstart-frequent-backup-1726722361"));
    let mut status = BackupSessionStatus::default();
    let now = ts("2024-09-19T05:07:00Z");
    skip(&mut status, &msg, now);
    assert_eq!(status.phase, Some(BackupSessionPhase::Skipped));
    let c = &status.conditions[0];
    assert_eq!(
        (c.type_.as_str(), c.status, c.reason.as_deref()),
        (
            "BackupSkipped",
            ConditionStatus::True,
            Some("PreRequisitesNotSatisfied")
        )
    );
}

#[test]
fn tutorial_snapshot_object() {
    let bs = tutorial_session();
    let repo = tutorial_repository();
    let targets = [SnapshotTarget {
        repository: &repo,
        snapshot_id: "01J84ARHWBR8PFEVENBRKEA9PD".into(),
    }];
    let got = snapshots_to_create(&bs, &targets, &es_ref(), Some("8.15.0")).unwrap();
    assert_eq!(got.len(), 1);

    // The tutorial's object minus what the API server and the status writer add.
    let mut want = tutorial_snapshot();
    want.metadata.creation_timestamp = None;
    want.metadata.generation = None;
    want.metadata.resource_version = None;
    want.metadata.uid = None;
    want.status = None;
    assert_eq!(got[0], want);

    // Without a known version, no db-version label.
    let got = snapshots_to_create(&bs, &targets, &es_ref(), None).unwrap();
    assert!(!got[0]
        .metadata
        .labels
        .as_ref()
        .unwrap()
        .contains_key("kubedb.com/db-version"));
    assert!(is_kubedb(&es_ref()));
}

#[test]
fn one_snapshot_per_repository_and_session_status() {
    let bs = tutorial_session();
    let repo = tutorial_repository();
    let mut repo2 = tutorial_repository();
    repo2.metadata.name = Some("gcs-repo".into());
    repo2.metadata.namespace = Some("backups".into());
    let targets = [
        SnapshotTarget {
            repository: &repo,
            snapshot_id: "01J84ARHWBR8PFEVENBRKEA9PD".into(),
        },
        SnapshotTarget {
            repository: &repo2,
            snapshot_id: "01J84FJBJZD2GJYHGTRCSQG17F".into(),
        },
    ];
    let snaps = snapshots_to_create(&bs, &targets, &es_ref(), None).unwrap();
    let names: Vec<_> = snaps
        .iter()
        .map(|s| {
            (
                s.metadata.name.clone().unwrap(),
                s.metadata.namespace.clone().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![
            (
                "s3-elasticsearch-repo-appbindingtart-frequent-backup-1726722361".to_string(),
                "demo".to_string()
            ),
            (
                "gcs-repo-appbinding-es-quickstart-frequent-backup-1726722361".to_string(),
                "backups".to_string()
            ),
        ]
    );
    let mut status = BackupSessionStatus::default();
    let now = ts("2024-09-19T05:06:01Z");
    mark_snapshots_ensured(&mut status, &snaps, now);
    assert_eq!(status.total_snapshots, Some(2));
    assert_eq!(
        status.snapshots[0],
        SessionSnapshotStatus {
            name: "s3-elasticsearch-repo-appbindingtart-frequent-backup-1726722361".into(),
            phase: Some(SnapshotPhase::Pending),
            app_ref: Some(es_ref()),
            repository: Some("s3-elasticsearch-repo".into()),
        }
    );
    let c = &status.conditions[0];
    assert_eq!(c.type_, "SnapshotsEnsured");
    assert_eq!(c.reason.as_deref(), Some("SuccessfullyEnsuredSnapshots"));
    assert_eq!(
        c.message.as_deref(),
        Some("Snapshots have been ensured successfully.")
    );
    // All snapshots Pending, no MetricsPushed: Pending (calculator step 4/5).
    assert_eq!(status.phase, Some(BackupSessionPhase::Pending));

    mark_snapshots_failed(&mut status, "repositories.storage is down", now);
    assert_eq!(
        status.conditions[0].reason.as_deref(),
        Some("FailedToEnsureSnapshots")
    );
}

#[test]
fn snapshot_inputs_are_checked() {
    let bs = tutorial_session();
    let repo = tutorial_repository();
    let t = |id: &str| {
        vec![SnapshotTarget {
            repository: &repo,
            snapshot_id: id.into(),
        }]
    };
    assert_eq!(
        snapshots_to_create(&bs, &t("not-a-ulid"), &es_ref(), None),
        Err(SessionError::BadSnapshotId("not-a-ulid".into()))
    );
    assert_eq!(
        snapshots_to_create(&bs, &t(""), &es_ref(), None),
        Err(SessionError::MissingSnapshotId(
            "s3-elasticsearch-repo".into()
        ))
    );
    // 'U' is not Crockford base32; first char above 7 overflows 128 bits.
    assert!(!is_ulid("01J84ARHWBR8PFEVENBRKEA9PU"));
    assert!(!is_ulid("81J84ARHWBR8PFEVENBRKEA9PD"));
    let mut no_uid = tutorial_repository();
    no_uid.metadata.uid = None;
    let t2 = [SnapshotTarget {
        repository: &no_uid,
        snapshot_id: "01J84ARHWBR8PFEVENBRKEA9PD".into(),
    }];
    let e = snapshots_to_create(&bs, &t2, &es_ref(), None).unwrap_err();
    assert_eq!(e.to_string(), "Repository metadata.uid is missing");
}

fn tutorial_result() -> SnapshotResult {
    SnapshotResult {
        component: "dump".into(),
        path: "repository/v1/frequent-backup/dump".into(),
        backup: Ok(ComponentResult {
            size: "7.791 KiB".into(),
            duration: Duration::from_nanos(1_933_950_652),
            integrity: true,
            restic_stats: vec![ResticStats {
                id: Some("147fa51e71e523631e74ba3195499995696c6ac69560e1c7f4ab1b4222a97a73".into()),
                uploaded: Some("2.141 KiB".into()),
                host_path: Some("/kubestash-interim/data".into()),
                size: Some("509 B".into()),
                start_time: None,
                end_time: None,
            }],
        }),
        recent_list_updated: Ok(()),
        metadata_uploaded: Ok(()),
    }
}

#[test]
fn finished_snapshot_matches_the_tutorial() {
    let tutorial = tutorial_snapshot();
    let mut fresh = tutorial.clone();
    fresh.status = None;
    let st = finish_snapshot(&fresh, &tutorial_result(), ts("2024-09-19T05:06:12Z"));
    let want = tutorial.status.clone().unwrap();
    assert_eq!(st.components, want.components);
    assert_eq!(st.phase, Some(SnapshotPhase::Succeeded));
    assert_eq!(st.integrity, Some(true));
    assert_eq!(st.size.as_deref(), Some("7.790 KiB"));
    assert_eq!(st.total_components, Some(1));
    assert_eq!(st.snapshot_time, want.snapshot_time);
    assert_eq!(
        type_order(&st.conditions),
        vec!["RecentSnapshotListUpdated", "SnapshotMetadataUploaded"]
    );
    for (got, want) in st.conditions.iter().zip(&want.conditions) {
        assert_eq!(
            (&got.status, &got.reason, &got.message),
            (&want.status, &want.reason, &want.message)
        );
    }
}

#[test]
fn failed_snapshot_results() {
    let mut fresh = tutorial_snapshot();
    fresh.status = None;
    let now = ts("2024-09-19T05:06:12Z");
    // (backup, recent list, metadata) → (snapshot phase, component phase)
    let cases: Vec<(SnapshotResult, SnapshotPhase, SnapshotPhase)> = vec![
        (
            SnapshotResult {
                backup: Err("elasticdump exited with 1".into()),
                ..tutorial_result()
            },
            SnapshotPhase::Failed,
            SnapshotPhase::Failed,
        ),
        (
            SnapshotResult {
                metadata_uploaded: Err("S3: connection refused".into()),
                ..tutorial_result()
            },
            SnapshotPhase::Failed,
            SnapshotPhase::Succeeded,
        ),
        (
            SnapshotResult {
                recent_list_updated: Err("conflict".into()),
                ..tutorial_result()
            },
            SnapshotPhase::Failed,
            SnapshotPhase::Succeeded,
        ),
    ];
    for (i, (result, phase, comp_phase)) in cases.into_iter().enumerate() {
        let st = finish_snapshot(&fresh, &result, now);
        assert_eq!(st.phase, Some(phase), "case {i}");
        assert_eq!(st.components["dump"].phase, Some(comp_phase), "case {i}");
        assert_eq!(
            st.components["dump"].path.as_deref(),
            Some("repository/v1/frequent-backup/dump")
        );
    }
    let st = finish_snapshot(
        &fresh,
        &SnapshotResult {
            backup: Err("elasticdump exited with 1".into()),
            ..tutorial_result()
        },
        now,
    );
    assert_eq!(
        st.components["dump"].error.as_deref(),
        Some("elasticdump exited with 1")
    );
    // A failed component has no integrity yet: snapshot integrity unknown.
    assert_eq!(st.integrity, None);
}

fn ensured_status(now: Timestamp) -> BackupSessionStatus {
    let bs = tutorial_session();
    let repo = tutorial_repository();
    let targets = [SnapshotTarget {
        repository: &repo,
        snapshot_id: "01J84ARHWBR8PFEVENBRKEA9PD".into(),
    }];
    let snaps = snapshots_to_create(&bs, &targets, &es_ref(), None).unwrap();
    let mut st = BackupSessionStatus::default();
    mark_snapshots_ensured(&mut st, &snaps, now);
    mark_executor(&mut st, &Ok(()), now);
    st
}

fn ok_steps() -> FinishSteps {
    FinishSteps {
        retention: vec![RetentionPolicyApplyStatus {
            ref_: Some(ObjectReference {
                namespace: Some("demo".into()),
                name: "demo-retention".into(),
            }),
            repository: Some("s3-elasticsearch-repo".into()),
            phase: Some(RetentionPolicyApplyPhase::Applied),
            error: None,
        }],
        retention_executor: Ok(()),
        history: Ok(()),
        metrics: Ok(()),
    }
}

#[test]
fn finish_session() {
    let start = ts("2024-09-19T05:06:01Z");
    let now = ts("2024-09-19T05:06:23Z");
    let st = ensured_status(start);
    // While the executor runs, the phase is Running once a snapshot runs.
    let mut running = st.clone();
    running.snapshots[0].phase = Some(SnapshotPhase::Running);
    assert_eq!(
        phase::backup_session_phase(&running),
        BackupSessionPhase::Running
    );

    let done = tutorial_snapshot();
    let out = finish(&st, std::slice::from_ref(&done), &ok_steps(), start, now);
    assert_eq!(out.phase, Some(BackupSessionPhase::Succeeded));
    assert_eq!(out.duration.as_deref(), Some("22s"));
    assert_eq!(out.snapshots[0].phase, Some(SnapshotPhase::Succeeded));
    assert_eq!(
        type_order(&out.conditions),
        vec![
            "SnapshotsEnsured",
            "BackupExecutorEnsured",
            "RetentionPolicyExecutorEnsured",
            "SessionHistoryCleaned",
            "MetricsPushed"
        ]
    );
    assert_eq!(
        out.conditions[1].message.as_deref(),
        Some("Backup Executor has been ensured successfully.")
    );
    assert_eq!(
        out.conditions[4].message.as_deref(),
        Some("Metrics have been pushed successfully.")
    );

    // Failures: each one alone makes the session Failed (calculator steps 1, 3, 4).
    let mut failed_snapshot = done.clone();
    failed_snapshot.status.as_mut().unwrap().phase = Some(SnapshotPhase::Failed);
    let mut bad_retention = ok_steps();
    bad_retention.retention[0].phase = Some(RetentionPolicyApplyPhase::FailedToApply);
    let cases: Vec<(Snapshot, FinishSteps)> = vec![
        (failed_snapshot, ok_steps()),
        (
            done.clone(),
            FinishSteps {
                metrics: Err("pushgateway down".into()),
                ..ok_steps()
            },
        ),
        (
            done.clone(),
            FinishSteps {
                history: Err("forbidden".into()),
                ..ok_steps()
            },
        ),
        (
            done.clone(),
            FinishSteps {
                retention_executor: Err("boom".into()),
                retention: vec![RetentionPolicyApplyStatus {
                    phase: Some(RetentionPolicyApplyPhase::Pending),
                    ..ok_steps().retention[0].clone()
                }],
                ..ok_steps()
            },
        ),
        (done.clone(), bad_retention),
    ];
    for (i, (snap, steps)) in cases.into_iter().enumerate() {
        let out = finish(&st, &[snap], &steps, start, now);
        assert_eq!(out.phase, Some(BackupSessionPhase::Failed), "case {i}");
    }
    let out = finish(
        &st,
        &[done],
        &FinishSteps {
            metrics: Err("pushgateway down".into()),
            ..ok_steps()
        },
        start,
        now,
    );
    assert_eq!(
        phase::backup_session_summary(&out).as_deref(),
        Some("pushgateway down")
    );
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
            ..Default::default()
        }),
    }
}

#[test]
fn retention_keeps_last_n_of_the_repository() {
    let snaps = vec![
        snap(
            "s-1",
            "s3-elasticsearch-repo",
            SnapshotPhase::Succeeded,
            "2024-09-19T05:00:00Z",
        ),
        snap(
            "s-2",
            "s3-elasticsearch-repo",
            SnapshotPhase::Succeeded,
            "2024-09-19T05:05:00Z",
        ),
        snap(
            "s-3",
            "s3-elasticsearch-repo",
            SnapshotPhase::Succeeded,
            "2024-09-19T05:10:00Z",
        ),
        snap(
            "s-4",
            "s3-elasticsearch-repo",
            SnapshotPhase::Running,
            "2024-09-19T05:15:00Z",
        ),
        snap(
            "s-5",
            "s3-elasticsearch-repo",
            SnapshotPhase::Failed,
            "2024-09-19T05:01:00Z",
        ),
        snap(
            "s-6",
            "s3-elasticsearch-repo",
            SnapshotPhase::Failed,
            "2024-09-19T05:06:00Z",
        ),
        snap(
            "o-1",
            "other-repo",
            SnapshotPhase::Succeeded,
            "2024-09-19T04:00:00Z",
        ),
    ];
    let policy = RetentionPolicySpec {
        successful_snapshots: Some(SuccessfulSnapshotsKeepPolicy {
            last: Some(2),
            ..Default::default()
        }),
        ..Default::default()
    };
    let rp = ObjectReference {
        namespace: Some("demo".into()),
        name: "demo-retention".into(),
    };
    let now = ts("2024-09-19T05:16:00Z");
    let plan = retention_plan("s3-elasticsearch-repo", "demo", &rp, &policy, &snaps, now);
    // last: 2 keeps s-3, s-2; failedSnapshots.last defaults to 1 → s-6 kept, s-5 deleted;
    // s-4 is running; o-1 belongs to another repository.
    let mut del = plan.to_delete.clone();
    del.sort();
    assert_eq!(del, vec!["s-1", "s-5"]);
    assert_eq!(plan.status.phase, Some(RetentionPolicyApplyPhase::Pending));
    assert_eq!(plan.status.ref_, Some(rp.clone()));
    assert_eq!(
        retention_applied(&plan.status, &Ok(())).phase,
        Some(RetentionPolicyApplyPhase::Applied)
    );
    let failed = retention_applied(&plan.status, &Err("restic forget: locked".into()));
    assert_eq!(failed.phase, Some(RetentionPolicyApplyPhase::FailedToApply));
    assert_eq!(failed.error.as_deref(), Some("restic forget: locked"));

    let bad = RetentionPolicySpec {
        max_retention_period: Some("10".into()),
        ..Default::default()
    };
    let plan = retention_plan("s3-elasticsearch-repo", "demo", &rp, &bad, &snaps, now);
    assert!(plan.to_delete.is_empty());
    assert_eq!(
        plan.status.phase,
        Some(RetentionPolicyApplyPhase::FailedToApply)
    );
    assert!(plan
        .status
        .error
        .as_deref()
        .unwrap()
        .starts_with("spec.maxRetentionPeriod: "));
    // A failed plan stays failed.
    assert_eq!(
        retention_applied(&plan.status, &Ok(())).phase,
        Some(RetentionPolicyApplyPhase::FailedToApply)
    );
}

#[test]
fn session_history_keeps_the_newest() {
    use BackupSessionPhase::*;
    let name = |t: i64| format!("appbinding-es-quickstart-frequent-backup-{t}");
    let all = vec![
        session(&name(1726722000), "frequent-backup", Some(Succeeded)),
        session(&name(1726722060), "frequent-backup", Some(Failed)),
        session(&name(1726722120), "frequent-backup", Some(Skipped)),
        session(&name(1726722180), "frequent-backup", Some(Running)),
        session(&name(1726722240), "frequent-backup", Some(Succeeded)),
        session(
            "appbinding-es-quickstart-weekly-1726722000",
            "weekly",
            Some(Succeeded),
        ),
    ];
    let current = session(&name(1726722300), "frequent-backup", Some(Running));
    let now = ts("2024-09-19T05:05:00Z");
    // limit 1 (the default): only the current one is kept; the running one survives.
    assert_eq!(
        sessions_to_delete(&current, &all, None, now),
        vec![
            name(1726722240),
            name(1726722120),
            name(1726722060),
            name(1726722000)
        ]
    );
    assert_eq!(
        sessions_to_delete(&current, &all, Some(3), now),
        vec![name(1726722120), name(1726722060), name(1726722000)]
    );
    assert!(sessions_to_delete(&current, &all, Some(10), now).is_empty());
    // limit 0 still never deletes the current session.
    assert_eq!(sessions_to_delete(&current, &all, Some(0), now).len(), 4);
    // A failed session whose retry is still due is kept.
    let mut waiting = all.clone();
    let st = waiting[1].status.as_mut().unwrap();
    st.retried = Some(true);
    st.next_retry = Some(Time(ts("2024-09-19T05:10:00Z")));
    assert_eq!(
        sessions_to_delete(&current, &waiting, None, now),
        vec![name(1726722240), name(1726722120), name(1726722000)]
    );
}

#[test]
fn retry_after_delay() {
    let mut bs = session(
        "appbinding-es-quickstart-frequent-backup-1726722361",
        "frequent-backup",
        None,
    );
    bs.spec.retry_left = Some(2);
    bs.metadata.finalizers = Some(vec!["kubestash.com/cleanup".into()]);
    let cfg = RetryConfig {
        max_retry: Some(2),
        delay: Some("2m".into()),
    };
    let now = Timestamp::from_second(1726722400).unwrap();
    let mut st = BackupSessionStatus {
        phase: Some(BackupSessionPhase::Failed),
        ..Default::default()
    };
    let r = retry(&bs, &mut st, Some(&cfg), now).unwrap().unwrap();
    assert_eq!(r.at, Timestamp::from_second(1726722520).unwrap());
    assert_eq!(
        r.session.metadata.name.as_deref(),
        Some("appbinding-es-quickstart-frequent-backup-1726722520")
    );
    assert_eq!(r.session.spec.retry_left, Some(1));
    assert_eq!(r.session.spec.session, bs.spec.session);
    assert_eq!(r.session.spec.invoker, bs.spec.invoker);
    assert_eq!(r.session.metadata.finalizers, bs.metadata.finalizers);
    assert_eq!(st.retried, Some(true));
    assert_eq!(st.next_retry, Some(Time(r.at)));
    // Already retried: nothing more.
    assert_eq!(retry(&bs, &mut st, Some(&cfg), now), Ok(None));

    // Not failed, or no retries left: nothing.
    for (phase, left) in [
        (BackupSessionPhase::Succeeded, 2),
        (BackupSessionPhase::Skipped, 2),
        (BackupSessionPhase::Failed, 0),
    ] {
        let mut b = bs.clone();
        b.spec.retry_left = Some(left);
        let mut st = BackupSessionStatus {
            phase: Some(phase),
            ..Default::default()
        };
        assert_eq!(retry(&b, &mut st, Some(&cfg), now), Ok(None));
        assert_eq!(st.retried, None);
    }
    // No delay: at once.
    let mut st = BackupSessionStatus {
        phase: Some(BackupSessionPhase::Failed),
        ..Default::default()
    };
    let r = retry(&bs, &mut st, None, now).unwrap().unwrap();
    assert_eq!(r.at, now);
    // A bad delay names the field.
    let mut st = BackupSessionStatus {
        phase: Some(BackupSessionPhase::Failed),
        ..Default::default()
    };
    let bad = RetryConfig {
        max_retry: Some(1),
        delay: Some("2 minutes".into()),
    };
    let e = retry(&bs, &mut st, Some(&bad), now).unwrap_err();
    assert!(e.to_string().starts_with("retryConfig.delay: "), "{e}");
}

#[test]
fn orphaned_running_session_is_failed() {
    let start = ts("2024-09-19T05:06:01Z");
    let now = ts("2024-09-19T05:20:00Z");
    let mut st = ensured_status(start);
    let mut running = tutorial_snapshot();
    {
        let s = running.status.as_mut().unwrap();
        s.conditions.clear();
        s.phase = Some(SnapshotPhase::Running);
        s.components.get_mut("dump").unwrap().phase = Some(SnapshotPhase::Running);
    }
    st.snapshots[0].phase = Some(SnapshotPhase::Running);
    st.phase = Some(phase::backup_session_phase(&st));
    assert_eq!(st.phase, Some(BackupSessionPhase::Running));

    for metrics in [Ok(()), Err("pushgateway down".to_string())] {
        let r = recover_orphan(&st, std::slice::from_ref(&running), &metrics, start, now);
        assert_eq!(r.status.phase, Some(BackupSessionPhase::Failed));
        assert_eq!(r.status.duration.as_deref(), Some("13m59s"));
        let cleanup = r
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "SnapshotCleanupIncomplete")
            .unwrap();
        assert_eq!(cleanup.status, ConditionStatus::True);
        assert_eq!(
            cleanup.reason.as_deref(),
            Some("SnapshotCleanupTerminatedBeforeCompletion")
        );
        assert_eq!(r.snapshots.len(), 1);
        let (name, ss) = &r.snapshots[0];
        assert_eq!(
            name,
            "s3-elasticsearch-repo-appbindingtart-frequent-backup-1726722361"
        );
        assert_eq!(ss.phase, Some(SnapshotPhase::Failed));
        let inc = ss
            .conditions
            .iter()
            .find(|c| c.type_ == "BackupIncomplete")
            .unwrap();
        assert_eq!(
            (inc.status, inc.reason.as_deref()),
            (
                ConditionStatus::True,
                Some("BackupExecutorTerminatedBeforeCompletion")
            )
        );
        assert_eq!(r.status.snapshots[0].phase, Some(SnapshotPhase::Failed));
    }

    // Died before any Snapshot existed: still Failed.
    let bare = BackupSessionStatus {
        phase: Some(BackupSessionPhase::Running),
        ..Default::default()
    };
    let r = recover_orphan(&bare, &[], &Ok(()), start, now);
    assert_eq!(r.status.phase, Some(BackupSessionPhase::Failed));
    assert!(r.snapshots.is_empty());

    // A Snapshot that already succeeded is left alone.
    let done = tutorial_snapshot();
    let r = recover_orphan(&st, &[done], &Ok(()), start, now);
    assert!(r.snapshots.is_empty());
    assert_eq!(r.status.snapshots[0].phase, Some(SnapshotPhase::Succeeded));
    assert_eq!(r.status.phase, Some(BackupSessionPhase::Failed));
}
