//! Retention selection: example tables (expected values reasoned from restic's documented
//! `forget` semantics and the spec §6, not from the code), snapshot tests of the full decision
//! text, and property tests.

use jiff::Timestamp;
use kstash_api::period::parse_max_retention_period;
use kstash_api::retention::{
    bucket_key, select, to_delete, Action, Bucket, Decision, RetentionRules, SnapshotInfo,
};
use kstash_api::storage::{RetentionPolicySpec, SnapshotPhase};
use kstash_testkit::ts;
use proptest::prelude::*;

fn snap(name: &str, session: &str, phase: SnapshotPhase, time: &str) -> SnapshotInfo {
    SnapshotInfo {
        name: name.into(),
        session: session.into(),
        phase,
        time: ts(time),
    }
}

use SnapshotPhase::{Failed, Pending, Running, Succeeded};

fn kept(d: &[Decision]) -> Vec<&str> {
    d.iter()
        .filter(|d| d.action == Action::Keep)
        .map(|d| d.name.as_str())
        .collect()
}

fn render(d: &[Decision]) -> String {
    d.iter().map(|d| format!("{d}\n")).collect()
}

/// The tutorial's RetentionPolicy `demo-retention`.
fn tutorial_rules() -> RetentionRules {
    let spec: RetentionPolicySpec = serde_yaml::from_str(
        "default: true\nfailedSnapshots:\n  last: 2\nmaxRetentionPeriod: 2mo\nsuccessfulSnapshots:\n  last: 5\nusagePolicy:\n  allowedNamespaces:\n    from: All\n",
    )
    .unwrap();
    RetentionRules::try_from(&spec).unwrap()
}

#[test]
fn tutorial_policy_converts() {
    let r = tutorial_rules();
    assert_eq!(r.last, 5);
    assert_eq!(r.failed_last, 2);
    assert_eq!(r.max_retention_period.unwrap().to_minutes(), 86_400);
    // failedSnapshots absent -> webhook default {last: 1}
    let spec: RetentionPolicySpec =
        serde_yaml::from_str("successfulSnapshots:\n  daily: 3\n").unwrap();
    let r = RetentionRules::try_from(&spec).unwrap();
    assert_eq!(
        (r.daily, r.failed_last, r.max_retention_period),
        (3, 1, None)
    );
    let bad: RetentionPolicySpec = serde_yaml::from_str("maxRetentionPeriod: \"10\"\n").unwrap();
    assert!(RetentionRules::try_from(&bad).is_err());
}

#[test]
fn snapshot_cr_converts() {
    // The tutorial's Snapshot (trimmed to the fields retention reads).
    let cr: kstash_api::storage::Snapshot = serde_yaml::from_str(
        "apiVersion: storage.kubestash.com/v1alpha1
kind: Snapshot
metadata:
  creationTimestamp: \"2024-09-19T05:06:01Z\"
  name: s3-elasticsearch-repo-appbindingtart-frequent-backup-1726722361
  namespace: demo
spec:
  repository: s3-elasticsearch-repo
  session: frequent-backup
status:
  phase: Succeeded
  snapshotTime: \"2024-09-19T05:06:01Z\"
",
    )
    .unwrap();
    let info = SnapshotInfo::from_snapshot(&cr).unwrap();
    assert_eq!(
        info,
        snap(
            "s3-elasticsearch-repo-appbindingtart-frequent-backup-1726722361",
            "frequent-backup",
            Succeeded,
            "2024-09-19T05:06:01Z"
        )
    );
    let mut no_time = cr.clone();
    no_time.status = None;
    no_time.metadata.creation_timestamp = None;
    assert_eq!(SnapshotInfo::from_snapshot(&no_time), None);
}

fn tutorial_snapshots() -> Vec<SnapshotInfo> {
    let mut v = Vec::new();
    // 8 successful backups every 5 minutes from 05:06:01 (SNAPSHOT-COUNT 8 in the tutorial).
    for i in 0..8 {
        let t = ts("2024-09-19T05:06:01Z") + jiff::SignedDuration::from_mins(5 * i);
        let unix = t.as_second();
        v.push(SnapshotInfo {
            name: format!("s3-elasticsearch-repo-appbindingtart-frequent-backup-{unix}"),
            session: "frequent-backup".into(),
            phase: Succeeded,
            time: t,
        });
    }
    v.push(snap(
        "failed-a",
        "frequent-backup",
        Failed,
        "2024-09-19T04:50:00Z",
    ));
    v.push(snap(
        "failed-b",
        "frequent-backup",
        Failed,
        "2024-09-19T04:55:00Z",
    ));
    v.push(snap(
        "failed-c",
        "frequent-backup",
        Failed,
        "2024-09-19T05:00:00Z",
    ));
    v.push(snap(
        "running",
        "frequent-backup",
        Running,
        "2024-09-19T05:46:01Z",
    ));
    v.push(snap(
        "ancient",
        "frequent-backup",
        Succeeded,
        "2024-07-01T00:00:00Z",
    ));
    v
}

#[test]
fn tutorial_policy_table() {
    let d = select(
        &tutorial_snapshots(),
        &tutorial_rules(),
        ts("2024-09-19T05:50:00Z"),
    );
    // last: 5 keeps the five newest successful (05:26:01 .. 05:41:01); failed last: 2 keeps
    // the two newest failed; the running one is never touched.
    assert_eq!(
        kept(&d),
        vec![
            "running",
            "s3-elasticsearch-repo-appbindingtart-frequent-backup-1726724461",
            "s3-elasticsearch-repo-appbindingtart-frequent-backup-1726724161",
            "s3-elasticsearch-repo-appbindingtart-frequent-backup-1726723861",
            "s3-elasticsearch-repo-appbindingtart-frequent-backup-1726723561",
            "s3-elasticsearch-repo-appbindingtart-frequent-backup-1726723261",
            "failed-c",
            "failed-b",
        ]
    );
    assert_eq!(
        to_delete(&d),
        vec![
            "s3-elasticsearch-repo-appbindingtart-frequent-backup-1726722961",
            "s3-elasticsearch-repo-appbindingtart-frequent-backup-1726722661",
            "s3-elasticsearch-repo-appbindingtart-frequent-backup-1726722361",
            "failed-a",
            "ancient",
        ]
    );
}

#[test]
fn tutorial_policy_snapshot_text() {
    let d = select(
        &tutorial_snapshots(),
        &tutorial_rules(),
        ts("2024-09-19T05:50:00Z"),
    );
    let expected = "\
keep   frequent-backup [2024-09-19T05:46:01Z] running: in progress (Running)
keep   frequent-backup [2024-09-19T05:41:01Z] s3-elasticsearch-repo-appbindingtart-frequent-backup-1726724461: last #1
keep   frequent-backup [2024-09-19T05:36:01Z] s3-elasticsearch-repo-appbindingtart-frequent-backup-1726724161: last #2
keep   frequent-backup [2024-09-19T05:31:01Z] s3-elasticsearch-repo-appbindingtart-frequent-backup-1726723861: last #3
keep   frequent-backup [2024-09-19T05:26:01Z] s3-elasticsearch-repo-appbindingtart-frequent-backup-1726723561: last #4
keep   frequent-backup [2024-09-19T05:21:01Z] s3-elasticsearch-repo-appbindingtart-frequent-backup-1726723261: last #5
delete frequent-backup [2024-09-19T05:16:01Z] s3-elasticsearch-repo-appbindingtart-frequent-backup-1726722961: not selected by any successfulSnapshots rule
delete frequent-backup [2024-09-19T05:11:01Z] s3-elasticsearch-repo-appbindingtart-frequent-backup-1726722661: not selected by any successfulSnapshots rule
delete frequent-backup [2024-09-19T05:06:01Z] s3-elasticsearch-repo-appbindingtart-frequent-backup-1726722361: not selected by any successfulSnapshots rule
keep   frequent-backup [2024-09-19T05:00:00Z] failed-c: failed last #1
keep   frequent-backup [2024-09-19T04:55:00Z] failed-b: failed last #2
delete frequent-backup [2024-09-19T04:50:00Z] failed-a: beyond failedSnapshots.last=2
delete frequent-backup [2024-07-01T00:00:00Z] ancient: older than maxRetentionPeriod 2mo
";
    assert_eq!(render(&d), expected);
}

#[test]
fn calendar_buckets() {
    // ISO 8601: 2024-12-30 (Monday) is in week 1 of 2025; 2021-01-03 (Sunday) in week 53 of 2020.
    assert_eq!(
        bucket_key(Bucket::Weekly, ts("2024-12-30T12:00:00Z")),
        "2025-W01"
    );
    assert_eq!(
        bucket_key(Bucket::Weekly, ts("2021-01-03T12:00:00Z")),
        "2020-W53"
    );
    assert_eq!(
        bucket_key(Bucket::Hourly, ts("2024-09-19T05:06:01Z")),
        "2024-09-19T05"
    );
    assert_eq!(
        bucket_key(Bucket::Daily, ts("2024-09-19T23:59:59Z")),
        "2024-09-19"
    );
    assert_eq!(
        bucket_key(Bucket::Monthly, ts("2024-09-19T05:06:01Z")),
        "2024-09"
    );
    assert_eq!(
        bucket_key(Bucket::Yearly, ts("2024-09-19T05:06:01Z")),
        "2024"
    );
}

fn daily_hourly_set() -> Vec<SnapshotInfo> {
    vec![
        snap("d1-10:00", "s", Succeeded, "2024-01-01T10:00:00Z"),
        snap("d1-11:30", "s", Succeeded, "2024-01-01T11:30:00Z"),
        snap("d2-09:00", "s", Succeeded, "2024-01-02T09:00:00Z"),
        snap("d3-23:59", "s", Succeeded, "2024-01-03T23:59:00Z"),
        snap("d3-23:10", "s", Succeeded, "2024-01-03T23:10:00Z"),
        snap("d4-00:01", "s", Succeeded, "2024-01-04T00:01:00Z"),
    ]
}

#[test]
fn keep_daily_newest_per_day() {
    // restic: --keep-daily n keeps the newest snapshot of each of the n last days with one.
    let rules = RetentionRules {
        daily: 3,
        ..Default::default()
    };
    let d = select(&daily_hourly_set(), &rules, ts("2024-01-05T00:00:00Z"));
    assert_eq!(kept(&d), vec!["d4-00:01", "d3-23:59", "d2-09:00"]);
}

#[test]
fn keep_hourly_and_last_union() {
    // hourly 2: 2024-01-04T00 (d4-00:01), 2024-01-03T23 (d3-23:59); last 3 adds d3-23:10.
    let rules = RetentionRules {
        hourly: 2,
        last: 3,
        ..Default::default()
    };
    let d = select(&daily_hourly_set(), &rules, ts("2024-01-05T00:00:00Z"));
    assert_eq!(kept(&d), vec!["d4-00:01", "d3-23:59", "d3-23:10"]);
    let h = select(
        &daily_hourly_set(),
        &RetentionRules {
            hourly: 4,
            ..Default::default()
        },
        ts("2024-01-05T00:00:00Z"),
    );
    // hours with snapshots, newest first: 04T00, 03T23, 02T09, 01T11 -> four kept, 01T10 not.
    assert_eq!(
        kept(&h),
        vec!["d4-00:01", "d3-23:59", "d2-09:00", "d1-11:30"]
    );
}

#[test]
fn keep_monthly_and_yearly() {
    let set = vec![
        snap("jan15", "s", Succeeded, "2023-01-15T00:00:00Z"),
        snap("jan31", "s", Succeeded, "2023-01-31T00:00:00Z"),
        snap("feb01", "s", Succeeded, "2023-02-01T00:00:00Z"),
        snap("feb28", "s", Succeeded, "2023-02-28T00:00:00Z"),
        snap("mar01", "s", Succeeded, "2023-03-01T00:00:00Z"),
        snap("y2022", "s", Succeeded, "2022-06-01T00:00:00Z"),
        snap("y2021", "s", Succeeded, "2021-06-01T00:00:00Z"),
    ];
    let now = ts("2023-04-01T00:00:00Z");
    let m = select(
        &set,
        &RetentionRules {
            monthly: 2,
            ..Default::default()
        },
        now,
    );
    assert_eq!(kept(&m), vec!["mar01", "feb28"]);
    let y = select(
        &set,
        &RetentionRules {
            yearly: 2,
            ..Default::default()
        },
        now,
    );
    assert_eq!(kept(&y), vec!["mar01", "y2022"]);
}

#[test]
fn period_only_keeps_within_and_newest_successful() {
    let set = vec![
        snap("old1", "s", Succeeded, "2024-01-01T00:00:00Z"),
        snap("old2", "s", Succeeded, "2024-01-02T00:00:00Z"),
        snap("oldfail", "s", Failed, "2024-01-03T00:00:00Z"),
    ];
    let rules = RetentionRules {
        max_retention_period: Some(parse_max_retention_period("1d").unwrap()),
        failed_last: 1,
        ..Default::default()
    };
    // Everything is older than 1 day: all would go, but the newest successful stays.
    let d = select(&set, &rules, ts("2024-02-01T00:00:00Z"));
    assert_eq!(kept(&d), vec!["old2"]);
    assert_eq!(to_delete(&d), vec!["oldfail", "old1"]);
    // Within the period, successful ones are all kept when no count rule exists.
    let d = select(&set, &rules, ts("2024-01-02T12:00:00Z"));
    assert_eq!(kept(&d), vec!["oldfail", "old2"]);
}

#[test]
fn sessions_are_independent_and_no_rule_keeps_all() {
    let set = vec![
        snap("a1", "a", Succeeded, "2024-01-01T00:00:00Z"),
        snap("a2", "a", Succeeded, "2024-01-02T00:00:00Z"),
        snap("b1", "b", Succeeded, "2024-01-03T00:00:00Z"),
        snap("b2", "b", Succeeded, "2024-01-04T00:00:00Z"),
        snap("bp", "b", Pending, "2024-01-05T00:00:00Z"),
    ];
    let d = select(
        &set,
        &RetentionRules {
            last: 1,
            ..Default::default()
        },
        ts("2024-01-06T00:00:00Z"),
    );
    assert_eq!(kept(&d), vec!["a2", "bp", "b2"]);
    let all = select(&set, &RetentionRules::default(), ts("2024-01-06T00:00:00Z"));
    assert_eq!(to_delete(&all), Vec::<&str>::new());
}

#[test]
fn failed_never_evict_successful() {
    // Many failed runs after one success: the success is still kept by last: 1.
    let mut set = vec![snap("ok", "s", Succeeded, "2024-01-01T00:00:00Z")];
    for i in 0..5 {
        set.push(snap(
            &format!("f{i}"),
            "s",
            Failed,
            &format!("2024-01-01T0{}:00:00Z", i + 1),
        ));
    }
    let rules = RetentionRules {
        last: 1,
        failed_last: 2,
        ..Default::default()
    };
    let d = select(&set, &rules, ts("2024-01-02T00:00:00Z"));
    assert_eq!(kept(&d), vec!["f4", "f3", "ok"]);
}

// ------------------------------------------------------------------------------------------
// Property tests
// ------------------------------------------------------------------------------------------

fn arb_phase() -> impl Strategy<Value = SnapshotPhase> {
    prop_oneof![
        6 => Just(Succeeded),
        2 => Just(Failed),
        1 => Just(Running),
        1 => Just(Pending),
    ]
}

fn arb_snapshots() -> impl Strategy<Value = Vec<SnapshotInfo>> {
    // Times within ~3 years before 2026-01-01, with many collisions in coarse buckets.
    prop::collection::vec(
        (arb_phase(), 0i64..(3 * 365 * 24), 0i64..3600, 0usize..3),
        0..40,
    )
    .prop_map(|items| {
        items
            .into_iter()
            .enumerate()
            .map(|(i, (phase, hours, secs, session))| SnapshotInfo {
                name: format!("snap-{i:03}"),
                session: format!("session-{session}"),
                phase,
                time: ts("2026-01-01T00:00:00Z")
                    - jiff::SignedDuration::from_secs(hours * 3600 + secs),
            })
            .collect()
    })
}

fn arb_rules() -> impl Strategy<Value = RetentionRules> {
    (
        prop::option::of(prop_oneof![
            Just("1d"),
            Just("1w"),
            Just("2mo"),
            Just("1y"),
            Just("3h")
        ]),
        prop::array::uniform6(prop_oneof![3 => Just(0u32), 1 => 1u32..6]),
        0u32..4,
    )
        .prop_map(|(period, c, failed_last)| RetentionRules {
            max_retention_period: period.map(|p| parse_max_retention_period(p).unwrap()),
            last: c[0],
            hourly: c[1],
            daily: c[2],
            weekly: c[3],
            monthly: c[4],
            yearly: c[5],
            failed_last,
        })
}

fn now() -> Timestamp {
    ts("2026-01-01T00:00:00Z")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn never_deletes_newest_successful(snaps in arb_snapshots(), rules in arb_rules()) {
        prop_assume!(rules.has_count_rule() || rules.max_retention_period.is_some());
        let d = select(&snaps, &rules, now());
        for session in ["session-0", "session-1", "session-2"] {
            let newest = snaps
                .iter()
                .filter(|s| s.session == session && s.phase == Succeeded)
                .max_by(|a, b| a.time.cmp(&b.time).then_with(|| a.name.cmp(&b.name)));
            if let Some(n) = newest {
                let dec = d.iter().find(|x| x.name == n.name).unwrap();
                prop_assert_eq!(dec.action, Action::Keep, "{}", dec);
            }
        }
    }

    #[test]
    fn never_deletes_in_progress(snaps in arb_snapshots(), rules in arb_rules()) {
        let d = select(&snaps, &rules, now());
        prop_assert_eq!(d.len(), snaps.len());
        for s in snaps.iter().filter(|s| matches!(s.phase, Running | Pending)) {
            let dec = d.iter().find(|x| x.name == s.name).unwrap();
            prop_assert_eq!(dec.action, Action::Keep);
        }
    }

    #[test]
    fn idempotent(snaps in arb_snapshots(), rules in arb_rules()) {
        let d = select(&snaps, &rules, now());
        let keep: Vec<SnapshotInfo> = snaps
            .iter()
            .filter(|s| d.iter().any(|x| x.name == s.name && x.action == Action::Keep))
            .cloned()
            .collect();
        let again = select(&keep, &rules, now());
        prop_assert_eq!(to_delete(&again), Vec::<&str>::new(), "{}", render(&again));
    }

    #[test]
    fn order_independent(
        snaps in arb_snapshots(),
        rules in arb_rules(),
        seed in any::<u64>(),
    ) {
        let d = select(&snaps, &rules, now());
        // Deterministic shuffle from the seed.
        let mut shuffled = snaps.clone();
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        prop_assert_eq!(select(&shuffled, &rules, now()), d);
    }
}
