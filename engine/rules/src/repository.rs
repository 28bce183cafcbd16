//! The Repository's status from its Snapshots (spec §5.4): `snapshotCount`, `lastBackupTime`,
//! `integrity`, `recentSnapshots`, `componentPaths`, and the size they report.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kstash_api::storage::{Snapshot, SnapshotInfo, SnapshotPhase, SnapshotType};

/// At most this many `recentSnapshots` (KubeStash docs: 5).
pub const RECENT_SNAPSHOTS: usize = 5;

fn name(s: &Snapshot) -> String {
    s.metadata.name.clone().unwrap_or_default()
}

/// What the Snapshots of a Repository add up to (pure; see the module docs).
#[derive(Debug, Default, PartialEq)]
pub struct SnapshotAggregate {
    /// Number of Snapshot objects.
    pub count: i32,
    /// `snapshotTime` of the newest succeeded full backup.
    pub last_backup_time: Option<Time>,
    /// AND of the succeeded snapshots' integrity (`None` when none reports one).
    pub integrity: Option<bool>,
    /// Newest first, at most [`RECENT_SNAPSHOTS`].
    pub recent: Vec<SnapshotInfo>,
    /// Union of the component paths, sorted.
    pub component_paths: Vec<String>,
    /// Sum over component paths of the newest succeeded snapshot's component size (bytes).
    pub size_from_snapshots: Option<u64>,
    /// Names of the succeeded snapshots (fingerprint for the size cache).
    pub fingerprint: String,
}

fn snapshot_time(s: &Snapshot) -> Option<jiff::Timestamp> {
    s.status
        .as_ref()
        .and_then(|st| st.snapshot_time.as_ref())
        .map(|t| t.0)
        .or_else(|| s.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Aggregates the Snapshots of one Repository.
pub fn aggregate(snapshots: &[Snapshot]) -> SnapshotAggregate {
    let mut sorted: Vec<&Snapshot> = snapshots.iter().collect();
    sorted.sort_by(|a, b| {
        snapshot_time(b)
            .cmp(&snapshot_time(a))
            .then_with(|| name(b).cmp(&name(a)))
    });
    let phase = |s: &Snapshot| s.status.as_ref().and_then(|st| st.phase);
    let succeeded: Vec<&Snapshot> = sorted
        .iter()
        .copied()
        .filter(|s| phase(s) == Some(SnapshotPhase::Succeeded))
        .collect();
    let last_backup_time = succeeded
        .iter()
        .find(|s| s.spec.type_ != Some(SnapshotType::IncrementalBackup))
        .and_then(|s| snapshot_time(s).map(Time));
    let integrities: Vec<bool> = succeeded
        .iter()
        .filter_map(|s| s.status.as_ref().and_then(|st| st.integrity))
        .collect();
    let integrity = (!integrities.is_empty()).then(|| integrities.iter().all(|i| *i));
    let recent = sorted
        .iter()
        .take(RECENT_SNAPSHOTS)
        .map(|s| SnapshotInfo {
            name: name(s),
            phase: phase(s),
            session: s.spec.session.clone(),
            size: s.status.as_ref().and_then(|st| st.size.clone()),
            snapshot_time: snapshot_time(s).map(Time),
        })
        .collect();
    let mut paths = BTreeSet::new();
    for s in &sorted {
        if let Some(st) = &s.status {
            paths.extend(st.components.values().filter_map(|c| c.path.clone()));
        }
    }
    // Size: each component repository's size as reported by its newest succeeded snapshot.
    let mut size: Option<u64> = None;
    for p in &paths {
        let newest = succeeded.iter().find_map(|s| {
            s.status.as_ref().and_then(|st| {
                st.components
                    .values()
                    .find(|c| c.path.as_deref() == Some(p))
                    .and_then(|c| c.size.as_deref())
                    .and_then(|sz| kstash_api::size::parse_size(sz).ok())
            })
        });
        if let Some(b) = newest {
            size = Some(size.unwrap_or(0) + b);
        }
    }
    SnapshotAggregate {
        count: snapshots.len() as i32,
        last_backup_time,
        integrity,
        recent,
        component_paths: paths.into_iter().collect(),
        size_from_snapshots: size,
        fingerprint: succeeded
            .iter()
            .map(|s| name(s))
            .collect::<Vec<_>>()
            .join(","),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kstash_api::storage::{Component, SnapshotSpec, SnapshotStatus};

    fn snap(name: &str, t: &str, phase: SnapshotPhase, size: &str, integrity: bool) -> Snapshot {
        let mut s = Snapshot::new(
            name,
            SnapshotSpec {
                repository: Some("s3-elasticsearch-repo".into()),
                session: Some("frequent-backup".into()),
                type_: Some(SnapshotType::FullBackup),
                ..Default::default()
            },
        );
        s.status = Some(SnapshotStatus {
            phase: Some(phase),
            snapshot_time: Some(Time(t.parse().unwrap())),
            integrity: Some(integrity),
            size: Some(size.into()),
            components: [(
                "dump".to_string(),
                Component {
                    path: Some("repository/v1/frequent-backup/dump".into()),
                    size: Some(size.into()),
                    ..Default::default()
                },
            )]
            .into_iter()
            .collect(),
            ..Default::default()
        });
        s
    }

    #[test]
    fn aggregate_follows_the_spec_fields() {
        let snaps: Vec<Snapshot> = (0..7)
            .map(|i| {
                snap(
                    &format!("s-{i}"),
                    &format!("2024-09-19T04:5{i}:00Z"),
                    if i == 6 {
                        SnapshotPhase::Failed
                    } else {
                        SnapshotPhase::Succeeded
                    },
                    &format!("{} KiB", i + 1),
                    true,
                )
            })
            .collect();
        let a = aggregate(&snaps);
        assert_eq!(a.count, 7);
        let names: Vec<&str> = a.recent.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["s-6", "s-5", "s-4", "s-3", "s-2"]);
        // Newest *succeeded* snapshot gives the time and the component size.
        assert_eq!(
            a.last_backup_time.unwrap().0,
            "2024-09-19T04:55:00Z".parse::<jiff::Timestamp>().unwrap()
        );
        assert_eq!(a.size_from_snapshots, Some(6 * 1024));
        assert_eq!(a.integrity, Some(true));
        assert_eq!(a.component_paths, ["repository/v1/frequent-backup/dump"]);
    }

    #[test]
    fn no_snapshots_means_no_integrity_and_no_size() {
        let a = aggregate(&[]);
        assert_eq!(a.count, 0);
        assert_eq!(a.integrity, None);
        assert_eq!(a.size_from_snapshots, None);
        assert!(a.recent.is_empty());
    }
}
