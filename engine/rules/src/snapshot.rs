//! What deleting a Snapshot does to its data (spec §1.8, §6): `deletionPolicy: WipeOut` forgets
//! its restic snapshots (and prunes) and deletes its YAML copy in the bucket; `Delete` (the
//! default) deletes the object only and keeps the data, so a re-created BackupStorage finds it
//! again. Retention sets `WipeOut` before it deletes a Snapshot, as KubeStash does.

use kstash_api::storage::{DeletionPolicy, Snapshot};

/// The restic snapshot behind one component of a Snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentData {
    /// The component (`dump`).
    pub component: String,
    /// Its path below the Repository directory (`repository/v1/<session>/<component>`).
    pub path: Option<String>,
    /// The restic snapshot id (`resticStats[0].id`).
    pub restic_snapshot_id: String,
}

/// What the Snapshot's deletion does with its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cleanup {
    /// `deletionPolicy: Delete`: the data stays.
    KeepData,
    /// `deletionPolicy: WipeOut`: forget these restic snapshots, delete the YAML copy.
    DeleteData {
        /// The session the Snapshot belongs to (its component repositories' session).
        session: String,
        /// Components with a restic snapshot (a failed component has none).
        components: Vec<ComponentData>,
    },
}

/// The cleanup of a Snapshot being deleted.
pub fn cleanup(s: &Snapshot) -> Cleanup {
    if s.spec.deletion_policy != Some(DeletionPolicy::WipeOut) {
        return Cleanup::KeepData;
    }
    let components = s
        .status
        .iter()
        .flat_map(|st| st.components.iter())
        .filter_map(|(name, c)| {
            let id = c.restic_stats.first().and_then(|r| r.id.clone())?;
            Some(ComponentData {
                component: name.clone(),
                path: c.path.clone(),
                restic_snapshot_id: id,
            })
        })
        .collect();
    Cleanup::DeleteData {
        session: s.spec.session.clone().unwrap_or_default(),
        components,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kstash_api::storage::{Component, ResticStats, SnapshotSpec, SnapshotStatus};

    fn snap(policy: Option<DeletionPolicy>, id: Option<&str>) -> Snapshot {
        let mut s = Snapshot::new(
            "s3-elasticsearch-repo-appbinding-es-quickstart-frequent-backup-1726722240",
            SnapshotSpec {
                session: Some("frequent-backup".into()),
                deletion_policy: policy,
                ..Default::default()
            },
        );
        s.status = Some(SnapshotStatus {
            components: [(
                "dump".to_string(),
                Component {
                    path: Some("repository/v1/frequent-backup/dump".into()),
                    restic_stats: vec![ResticStats {
                        id: id.map(str::to_string),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            )]
            .into(),
            ..Default::default()
        });
        s
    }

    #[test]
    fn the_deletion_policy_decides_what_happens_to_the_data() {
        let id = "147fa51e71e523631e74ba3195499995696c6ac69560e1c7f4ab1b4222a97a73";
        let wipe = Cleanup::DeleteData {
            session: "frequent-backup".into(),
            components: vec![ComponentData {
                component: "dump".into(),
                path: Some("repository/v1/frequent-backup/dump".into()),
                restic_snapshot_id: id.into(),
            }],
        };
        let cases = [
            (None, Some(id), Cleanup::KeepData),
            (Some(DeletionPolicy::Delete), Some(id), Cleanup::KeepData),
            (Some(DeletionPolicy::WipeOut), Some(id), wipe),
            (
                Some(DeletionPolicy::WipeOut),
                None,
                Cleanup::DeleteData {
                    session: "frequent-backup".into(),
                    components: vec![],
                },
            ),
        ];
        for (i, (policy, id, want)) in cases.into_iter().enumerate() {
            assert_eq!(cleanup(&snap(policy, id)), want, "case {i}");
        }
    }
}
