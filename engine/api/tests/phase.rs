//! Phase calculators against the spec's read algorithms (§1.2, §1.3, §1.5, §1.8, §5.1) and the
//! tutorial's objects.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kstash_api::core::*;
use kstash_api::phase::*;
use kstash_api::shared::{Condition, ConditionStatus, Driver};
use kstash_api::storage::*;

fn cond(t: &str, status: ConditionStatus) -> Condition {
    Condition {
        type_: t.to_string(),
        status,
        last_transition_time: Time("2024-09-19T04:49:38Z".parse().unwrap()),
        observed_generation: None,
        severity: None,
        reason: None,
        message: Some(format!("{t} message")),
    }
}
use ConditionStatus::{False as F, True as T};

fn fixture<K: serde::de::DeserializeOwned>(name: &str) -> K {
    kstash_testkit::crate_fixture(env!("CARGO_MANIFEST_DIR"), name)
}

// ----- BackupConfiguration -----

#[test]
fn tutorial_backup_configurations_are_ready() {
    for f in [
        "backupconfiguration-default.yaml",
        "backupconfiguration-custom.yaml",
    ] {
        let bc: BackupConfiguration = fixture(f);
        let st = bc.status.clone().unwrap();
        assert_eq!(
            backup_configuration_phase(&bc.spec, &st),
            BackupInvokerPhase::Ready,
            "{f}"
        );
    }
}

#[test]
fn backup_configuration_phase_rules() {
    let bc: BackupConfiguration = fixture("backupconfiguration-default.yaml");
    let ok = bc.status.clone().unwrap();
    let phase = |st: &BackupConfigurationStatus| backup_configuration_phase(&bc.spec, st);

    let mut st = ok.clone();
    st.conditions = vec![cond("ValidationPassed", F)];
    assert_eq!(phase(&st), BackupInvokerPhase::Invalid);

    let mut st = ok.clone();
    st.target_found = Some(false);
    assert_eq!(phase(&st), BackupInvokerPhase::NotReady);
    st.target_found = None;
    assert_eq!(phase(&st), BackupInvokerPhase::NotReady);

    let mut st = ok.clone();
    st.backends[0].ready = Some(false);
    assert_eq!(phase(&st), BackupInvokerPhase::NotReady);

    let mut st = ok.clone();
    st.backends.clear();
    assert_eq!(phase(&st), BackupInvokerPhase::NotReady);

    let mut st = ok.clone();
    st.sessions.clear();
    assert_eq!(phase(&st), BackupInvokerPhase::NotReady);

    let mut st = ok.clone();
    st.sessions[0].conditions = vec![cond("SchedulerEnsured", F)];
    assert_eq!(phase(&st), BackupInvokerPhase::NotReady);

    // InitialBackupTriggered and repositories are not part of the calculation.
    let mut st = ok.clone();
    st.sessions[0].conditions = vec![
        cond("SchedulerEnsured", T),
        cond("InitialBackupTriggered", F),
    ];
    st.repositories[0].phase = Some(RepositoryPhase::NotReady);
    assert_eq!(phase(&st), BackupInvokerPhase::Ready);
}

// ----- BackupSession -----

fn session(conds: Vec<Condition>, snaps: &[SnapshotPhase]) -> BackupSessionStatus {
    BackupSessionStatus {
        conditions: conds,
        snapshots: snaps
            .iter()
            .enumerate()
            .map(|(i, p)| SessionSnapshotStatus {
                name: format!("s{i}"),
                phase: Some(*p),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

#[test]
fn backup_session_phase_table() {
    use BackupSessionPhase as P;
    use SnapshotPhase::{Failed as SF, Pending as SP, Running as SR, Succeeded as SS};
    let mp = || cond("MetricsPushed", T);
    let cases: Vec<(&str, BackupSessionStatus, P)> = vec![
        (
            "1. MetricsPushed False -> Failed",
            session(vec![cond("MetricsPushed", F)], &[SS]),
            P::Failed,
        ),
        (
            "2. BackupSkipped True -> Skipped",
            session(vec![cond("BackupSkipped", T)], &[]),
            P::Skipped,
        ),
        (
            "1 before 2",
            session(
                vec![cond("MetricsPushed", F), cond("BackupSkipped", T)],
                &[],
            ),
            P::Failed,
        ),
        (
            "3. executor False",
            session(vec![mp(), cond("BackupExecutorEnsured", F)], &[SS]),
            P::Failed,
        ),
        (
            "3. snapshots False",
            session(vec![mp(), cond("SnapshotsEnsured", F)], &[SS]),
            P::Failed,
        ),
        (
            "3. pre hooks False",
            session(
                vec![mp(), cond("PreBackupHooksExecutionSucceeded", F)],
                &[SS],
            ),
            P::Failed,
        ),
        (
            "3. post hooks False",
            session(
                vec![mp(), cond("PostBackupHooksExecutionSucceeded", F)],
                &[SS],
            ),
            P::Failed,
        ),
        (
            "3. history False",
            session(vec![mp(), cond("SessionHistoryCleaned", F)], &[SS]),
            P::Failed,
        ),
        (
            "3. cleanup incomplete",
            session(vec![mp(), cond("SnapshotCleanupIncomplete", T)], &[SS]),
            P::Failed,
        ),
        (
            "3 needs MetricsPushed: executor False alone -> still Running",
            session(vec![cond("BackupExecutorEnsured", F)], &[SR]),
            P::Running,
        ),
        (
            "4. no snapshots -> Pending",
            session(vec![], &[]),
            P::Pending,
        ),
        (
            "4. all Pending -> Pending",
            session(vec![], &[SP, SP]),
            P::Pending,
        ),
        (
            "4/5. some running, no metrics -> Running",
            session(vec![], &[SS, SR]),
            P::Running,
        ),
        (
            "5. all succeeded but no MetricsPushed -> Running",
            session(vec![], &[SS, SS]),
            P::Running,
        ),
        (
            "5. all succeeded + MetricsPushed -> Succeeded",
            session(vec![mp()], &[SS, SS]),
            P::Succeeded,
        ),
        (
            "4. any failed (all terminal) + MetricsPushed -> Failed",
            session(vec![mp()], &[SS, SF]),
            P::Failed,
        ),
        (
            "4. not all terminal + MetricsPushed -> Running",
            session(vec![mp()], &[SF, SR]),
            P::Running,
        ),
        (
            "5. no snapshots + MetricsPushed -> Pending",
            session(vec![mp()], &[]),
            P::Pending,
        ),
    ];
    for (what, st, want) in cases {
        assert_eq!(backup_session_phase(&st), want, "{what}");
    }
    let mut st = session(vec![mp()], &[SS]);
    st.retention_policies.push(RetentionPolicyApplyStatus {
        phase: Some(RetentionPolicyApplyPhase::FailedToApply),
        ..Default::default()
    });
    assert_eq!(
        backup_session_phase(&st),
        P::Failed,
        "3. retention FailedToApply"
    );
    assert!(P::Skipped.is_completed() && P::Failed.is_completed() && !P::Running.is_completed());
}

#[test]
fn backup_session_summary_messages() {
    use SnapshotPhase::{Failed as SF, Succeeded as SS};
    let st = session(
        vec![cond("MetricsPushed", T), cond("SnapshotsEnsured", F)],
        &[SS],
    );
    assert_eq!(
        backup_session_summary(&st).as_deref(),
        Some("SnapshotsEnsured message")
    );
    let st = session(vec![cond("MetricsPushed", T)], &[SS, SF]);
    assert_eq!(
        backup_session_summary(&st).as_deref(),
        Some("one or more snapshots are failed")
    );
    let mut st = session(vec![cond("MetricsPushed", T)], &[SS]);
    st.retention_policies.push(RetentionPolicyApplyStatus {
        phase: Some(RetentionPolicyApplyPhase::FailedToApply),
        ..Default::default()
    });
    assert_eq!(
        backup_session_summary(&st).as_deref(),
        Some("one or more retention policies are failed to apply")
    );
    assert_eq!(
        backup_session_summary(&session(vec![cond("MetricsPushed", T)], &[SS])),
        None
    );
}

// ----- RestoreSession -----

fn restore(conds: Vec<Condition>, comps: &[RestorePhase]) -> RestoreSessionStatus {
    RestoreSessionStatus {
        conditions: conds,
        total_components: Some(comps.len() as i32),
        components: comps
            .iter()
            .enumerate()
            .map(|(i, p)| {
                (
                    format!("c{i}"),
                    ComponentRestoreStatus {
                        phase: Some(*p),
                        ..Default::default()
                    },
                )
            })
            .collect(),
        ..Default::default()
    }
}

#[test]
fn restore_session_phase_table() {
    use RestorePhase::*;
    let mp = || cond("MetricsPushed", T);
    let cases: Vec<(&str, RestoreSessionStatus, RestorePhase)> = vec![
        (
            "MetricsPushed False",
            restore(vec![cond("MetricsPushed", F)], &[Succeeded]),
            Failed,
        ),
        (
            "ValidationPassed False",
            restore(vec![cond("ValidationPassed", F)], &[]),
            Invalid,
        ),
        (
            "pre hooks False + metrics",
            restore(
                vec![mp(), cond("PreRestoreHooksExecutionSucceeded", F)],
                &[Succeeded],
            ),
            Failed,
        ),
        (
            "post hooks False + metrics",
            restore(
                vec![mp(), cond("PostRestoreHooksExecutionSucceeded", F)],
                &[Succeeded],
            ),
            Failed,
        ),
        (
            "executor False + metrics",
            restore(vec![mp(), cond("RestoreExecutorEnsured", F)], &[Succeeded]),
            Failed,
        ),
        (
            "incomplete + metrics",
            restore(vec![mp(), cond("RestoreIncomplete", T)], &[Running]),
            Failed,
        ),
        ("no components", restore(vec![], &[]), Pending),
        (
            "all succeeded, no metrics -> Running",
            restore(vec![], &[Succeeded, Succeeded]),
            Running,
        ),
        (
            "all succeeded + metrics",
            restore(vec![mp()], &[Succeeded, Succeeded]),
            Succeeded,
        ),
        (
            "all terminal with a failure + metrics",
            restore(vec![mp()], &[Succeeded, Failed]),
            Failed,
        ),
        (
            "all terminal incl. Unknown, no failure -> Unknown even without metrics",
            restore(vec![], &[Succeeded, Unknown]),
            Unknown,
        ),
        (
            "any failed, others running + metrics",
            restore(vec![mp()], &[Failed, Running]),
            Failed,
        ),
        (
            "still running + metrics",
            restore(vec![mp()], &[Succeeded, Running]),
            Running,
        ),
    ];
    for (what, st, want) in cases {
        assert_eq!(restore_session_phase(&st), want, "{what}");
    }
}

// ----- Snapshot -----

#[test]
fn tutorial_snapshots_phase_integrity_and_size() {
    for f in ["snapshot-default.yaml", "snapshot-custom.yaml"] {
        let s: Snapshot = fixture(f);
        let st = s.status.unwrap();
        assert_eq!(snapshot_phase(&st), SnapshotPhase::Succeeded, "{f}");
        assert_eq!(snapshot_integrity(&st), Some(true), "{f}");
        // The tutorial's own status.size is GetSize of the component sizes:
        // component 7.791 KiB -> snapshot 7.790 KiB (Go truncates to whole bytes).
        assert_eq!(Some(snapshot_size(&st)), st.size, "{f}");
    }
}

fn snap(
    conds: Vec<Condition>,
    comps: &[(SnapshotPhase, Option<bool>, Option<Driver>, &str)],
    total: i32,
) -> SnapshotStatus {
    SnapshotStatus {
        conditions: conds,
        total_components: Some(total),
        components: comps
            .iter()
            .enumerate()
            .map(|(i, (p, integ, d, size))| {
                (
                    format!("c{i}"),
                    Component {
                        phase: Some(*p),
                        integrity: *integ,
                        driver: *d,
                        size: Some(size.to_string()),
                        ..Default::default()
                    },
                )
            })
            .collect(),
        ..Default::default()
    }
}

#[test]
fn snapshot_phase_table() {
    use SnapshotPhase::*;
    let up = || cond("SnapshotMetadataUploaded", T);
    let ok = (Succeeded, Some(true), Some(Driver::Restic), "1 KiB");
    let run = (Running, None, Some(Driver::Restic), "1 KiB");
    let bad = (Failed, Some(false), Some(Driver::Restic), "1 KiB");
    let cases: Vec<(&str, SnapshotStatus, SnapshotPhase)> = vec![
        (
            "metadata upload False",
            snap(vec![cond("SnapshotMetadataUploaded", F)], &[ok], 1),
            Failed,
        ),
        (
            "recent list False",
            snap(vec![up(), cond("RecentSnapshotListUpdated", F)], &[ok], 1),
            Failed,
        ),
        (
            "backup incomplete",
            snap(vec![cond("BackupIncomplete", T)], &[], 1),
            Failed,
        ),
        ("no components", snap(vec![up()], &[], 1), Pending),
        (
            "components but no metadata condition",
            snap(vec![], &[ok], 1),
            Running,
        ),
        ("all succeeded", snap(vec![up()], &[ok, ok], 2), Succeeded),
        (
            "fewer succeeded than totalComponents",
            snap(vec![up()], &[ok], 2),
            Running,
        ),
        ("any failed", snap(vec![up()], &[ok, bad], 2), Failed),
        ("running", snap(vec![up()], &[ok, run], 2), Running),
    ];
    for (what, st, want) in cases {
        assert_eq!(snapshot_phase(&st), want, "{what}");
    }
}

#[test]
fn snapshot_integrity_rules() {
    use SnapshotPhase::Succeeded as S;
    assert_eq!(
        snapshot_integrity(&snap(vec![], &[], 0)),
        None,
        "no components"
    );
    assert_eq!(
        snapshot_integrity(&snap(vec![], &[(S, None, Some(Driver::Restic), "1 B")], 1)),
        None,
        "restic component without integrity"
    );
    assert_eq!(
        snapshot_integrity(&snap(
            vec![],
            &[(S, None, Some(Driver::VolumeSnapshotter), "1 B")],
            1
        )),
        Some(true),
        "non-restic component without integrity is skipped"
    );
    assert_eq!(
        snapshot_integrity(&snap(
            vec![],
            &[
                (S, Some(true), Some(Driver::Restic), "1 B"),
                (S, Some(false), Some(Driver::Restic), "1 B")
            ],
            2
        )),
        Some(false),
        "AND over components"
    );
}

#[test]
fn snapshot_size_sums_components() {
    use SnapshotPhase::Succeeded as S;
    let st = snap(
        vec![],
        &[(S, None, None, "509 B"), (S, None, None, "515 B")],
        2,
    );
    assert_eq!(
        snapshot_size(&st),
        "1024 B",
        "strict > threshold keeps 1024 in bytes"
    );
    let st = snap(
        vec![],
        &[(S, None, None, "1 MiB"), (S, None, None, "1 MiB")],
        2,
    );
    assert_eq!(snapshot_size(&st), "2.000 MiB");
}

// ----- Repository / BackupStorage -----

#[test]
fn repository_and_storage_phases() {
    let repo = |c: Vec<Condition>| RepositoryStatus {
        conditions: c,
        ..Default::default()
    };
    assert_eq!(
        repository_phase(&repo(vec![cond("RepositoryInitialized", T)])),
        RepositoryPhase::Ready
    );
    assert_eq!(
        repository_phase(&repo(vec![cond("RepositoryInitialized", F)])),
        RepositoryPhase::NotReady
    );
    assert_eq!(repository_phase(&repo(vec![])), RepositoryPhase::NotReady);

    let bs = |c: Vec<Condition>| BackupStorageStatus {
        conditions: c,
        ..Default::default()
    };
    assert_eq!(
        backup_storage_phase(&bs(vec![cond("BackendInitialized", T)])),
        BackupStoragePhase::Ready,
        "secret condition absent"
    );
    assert_eq!(
        backup_storage_phase(&bs(vec![
            cond("BackendInitialized", T),
            cond("BackendSecretFound", T)
        ])),
        BackupStoragePhase::Ready
    );
    assert_eq!(
        backup_storage_phase(&bs(vec![
            cond("BackendInitialized", T),
            cond("BackendSecretFound", F)
        ])),
        BackupStoragePhase::NotReady
    );
    assert_eq!(
        backup_storage_phase(&bs(vec![cond("BackendInitialized", F)])),
        BackupStoragePhase::NotReady
    );
    assert_eq!(
        backup_storage_phase(&bs(vec![])),
        BackupStoragePhase::NotReady
    );
}
