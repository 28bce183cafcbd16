//! The session's Snapshots: created one per repository (step 4), marked running with live
//! progress while the task runs, failed, or finished with their YAML copy in the bucket.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kstash_api::constants::annotations as ann;
use kstash_api::core::{BackupSessionStatus, Session};
use kstash_api::shared::{set_condition, Condition, ConditionStatus, Driver, TypedObjectReference};
use kstash_api::storage::{Component, Repository, Snapshot, SnapshotPhase, SnapshotStatus};
use kstash_rules::backup_session as bsx;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::Api;

use super::{now, RepoTarget, Run, TYPE_BACKUP_PROGRESS};
use crate::execute::error::not_found_none;
use crate::execute::{patch_status, Error};
use crate::task::{progress, report, ulid};

/// `st` without the live progress condition.
pub(super) fn without_progress(mut st: SnapshotStatus) -> SnapshotStatus {
    st.conditions.retain(|c| c.type_ != TYPE_BACKUP_PROGRESS);
    st
}

/// Where component `component` of `snap` lives below its Repository directory (the layout is
/// `kstash_repo`'s; an invalid session name, refused at admission, gives an empty path).
pub(super) fn component_path(snap: &Snapshot, component: &str) -> String {
    let session = snap.spec.session.as_deref().unwrap_or("");
    kstash_repo::RepositoryDir::component_path(session, component).unwrap_or_default()
}

impl Run<'_> {
    fn snapshot_api(&self) -> Api<Snapshot> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Step 4: the session's Repositories, and one Snapshot per repository pushed to
    /// `snapshots` (those made before a failure stay there).
    pub(super) async fn create_snapshots(
        &self,
        sess: &Session,
        app_ref: &TypedObjectReference,
        db_version: Option<&str>,
        snapshots: &mut Vec<Snapshot>,
    ) -> Result<Vec<Repository>, Error> {
        let repos = self.repositories(sess).await?;
        let seed = self.bs.metadata.uid.clone().unwrap_or_default();
        let ms = now().as_millisecond().max(0) as u64;
        let targets: Vec<bsx::SnapshotTarget<'_>> = repos
            .iter()
            .map(|r| bsx::SnapshotTarget {
                repository: r,
                snapshot_id: ulid::new(ms, &seed),
            })
            .collect();
        let wanted = bsx::snapshots_to_create(self.bs, &targets, app_ref, db_version)?;
        for s in &wanted {
            snapshots.push(self.ensure_snapshot(s).await?);
        }
        Ok(repos)
    }

    async fn repositories(&self, sess: &Session) -> Result<Vec<Repository>, Error> {
        let api: Api<Repository> = Api::namespaced(self.client.clone(), &self.ns);
        if sess.repositories.is_empty() {
            return Err(Error::Invalid(format!(
                "{} session {}: no repositories",
                self.bc_name(),
                sess.config.name
            )));
        }
        let mut out = Vec::new();
        for r in &sess.repositories {
            let what = format!("Repository {}/{}", self.ns, r.name);
            let repo = not_found_none(api.get(&r.name).await)
                .map_err(|e| Error::kube(format!("reading {what}"), e))?
                .ok_or(Error::NotFound(what))?;
            out.push(repo);
        }
        Ok(out)
    }

    async fn ensure_snapshot(&self, s: &Snapshot) -> Result<Snapshot, Error> {
        let ns = s.metadata.namespace.clone().unwrap_or_default();
        let name = s.metadata.name.clone().unwrap_or_default();
        let api: Api<Snapshot> = Api::namespaced(self.client.clone(), &ns);
        match api.create(&PostParams::default(), s).await {
            Ok(x) => Ok(x),
            Err(kube::Error::Api(e)) if e.code == 409 => api
                .get(&name)
                .await
                .map_err(|e| Error::kube(format!("reading Snapshot {ns}/{name}"), e)),
            Err(e) => Err(Error::kube(format!("creating Snapshot {ns}/{name}"), e)),
        }
    }

    /// The Snapshots of this session (best effort: empty when listing fails).
    pub(super) async fn session_snapshots(&self) -> Vec<Snapshot> {
        self.snapshot_api()
            .list(&ListParams::default())
            .await
            .map(|l| {
                l.items
                    .into_iter()
                    .filter(|s| s.spec.backup_session.as_deref() == Some(self.name.as_str()))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(super) async fn write_snapshot_statuses(&self, list: &[(String, SnapshotStatus)]) {
        let api = self.snapshot_api();
        for (n, st) in list {
            if let Err(e) = patch_status(&api, n, &without_progress(st.clone())).await {
                tracing::warn!(snapshot = %n, "{e}");
            }
        }
    }

    /// Every component of every Snapshot failed with `msg`.
    pub(super) async fn fail_snapshots(
        &self,
        snapshots: &[Snapshot],
        components: &[String],
        msg: &str,
    ) -> Vec<Snapshot> {
        let api = self.snapshot_api();
        let mut out = Vec::new();
        for s in snapshots {
            let mut s2 = s.clone();
            for comp in components {
                let r = bsx::SnapshotResult {
                    component: comp.clone(),
                    path: component_path(s, comp),
                    backup: Err(msg.to_string()),
                    recent_list_updated: Ok(()),
                    metadata_uploaded: Ok(()),
                };
                s2.status = Some(bsx::finish_snapshot(&s2, &r, now()));
            }
            let st = s2.status.clone().unwrap_or_default();
            let name = s.metadata.name.clone().unwrap_or_default();
            if let Err(e) = patch_status(&api, &name, &st).await {
                tracing::warn!(snapshot = %name, "{e}");
            }
            out.push(s2);
        }
        out
    }

    /// Marks `components` of every target's Snapshot `Running` (with the progress `note`),
    /// and the session's phase.
    pub(super) async fn patch_running(
        &self,
        status: &mut BackupSessionStatus,
        targets: &mut [RepoTarget],
        components: &[String],
        note: Option<String>,
    ) -> Result<(), Error> {
        let api = self.snapshot_api();
        for t in targets.iter_mut() {
            let st = running_status(&t.snapshot, components, note.as_deref());
            let name = t.snapshot.metadata.name.clone().unwrap_or_default();
            patch_status(&api, &name, &st).await?;
            if let Some(e) = status.snapshots.iter_mut().find(|e| e.name == name) {
                e.phase = st.phase;
            }
            t.snapshot.status = Some(st);
        }
        status.phase = Some(kstash_api::phase::backup_session_phase(status));
        patch_status(&self.api, &self.name, &*status).await?;
        Ok(())
    }

    /// Step 7: the Snapshot's final status from its components' results, the counts of what the
    /// task moved (annotations), and its YAML copy in the bucket.
    pub(super) async fn finish_snapshot(
        &self,
        t: &RepoTarget,
        backups: Vec<(String, Result<bsx::ComponentResult, String>)>,
        totals: &progress::Snapshot,
        notes: &report::Notes,
    ) -> Snapshot {
        let name = t.snapshot.metadata.name.clone().unwrap_or_default();
        let mut snap = t.snapshot.clone();
        if backups.iter().all(|(_, b)| b.is_ok()) {
            self.record_counts(&mut snap, totals, notes).await;
        }
        snap.status = Some(without_progress(snap.status.clone().unwrap_or_default()));
        let mut result = None;
        for (comp, backup) in backups {
            let r = bsx::SnapshotResult {
                path: component_path(&snap, &comp),
                component: comp,
                backup,
                recent_list_updated: Ok(()),
                metadata_uploaded: Ok(()),
            };
            snap.status = Some(bsx::finish_snapshot(&snap, &r, now()));
            result = Some(r);
        }
        if let Some(c) = notes.condition(now()) {
            let mut st = snap.status.clone().unwrap_or_default();
            set_condition(&mut st.conditions, c);
            snap.status = Some(st);
        }
        let mut st = snap.status.clone().unwrap_or_default();
        let Some(mut result) = result else {
            return snap;
        };
        if let Err(e) = upload_yaml(t, &snap, &st).await {
            result.metadata_uploaded = Err(format!("uploading snapshots/{name}.yaml: {e}"));
            st = bsx::finish_snapshot(&snap, &result, now());
        }
        if let Err(e) = patch_status(&self.snapshot_api(), &name, &st).await {
            tracing::warn!(snapshot = %name, "{e}");
        }
        snap.status = Some(st);
        snap
    }

    /// What the task moved, for `/metrics` (and the bucket's YAML copy): annotations on the
    /// Snapshot object and on `snap`.
    async fn record_counts(
        &self,
        snap: &mut Snapshot,
        totals: &progress::Snapshot,
        notes: &report::Notes,
    ) {
        let name = snap.metadata.name.clone().unwrap_or_default();
        let mut counts = vec![
            (ann::SNAPSHOT_DOCUMENTS, totals.items.to_string()),
            (ann::SNAPSHOT_STREAM_BYTES, totals.bytes.to_string()),
        ];
        if let Some(parts) = &notes.parts {
            counts.push((ann::SNAPSHOT_PARTS, parts.clone()));
        }
        let patch = serde_json::json!({"metadata": {"annotations":
            counts.iter().cloned().collect::<BTreeMap<_, _>>()}});
        if let Err(e) = self
            .snapshot_api()
            .patch_metadata(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(snapshot = %name, "recording the document count: {e}");
        }
        let a = snap
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        for (k, v) in counts {
            a.insert(k.to_string(), v);
        }
    }
}

/// `snap`'s status with `components` `Running` and the live progress condition `note`.
fn running_status(snap: &Snapshot, components: &[String], note: Option<&str>) -> SnapshotStatus {
    let mut st = snap.status.clone().unwrap_or_default();
    for name in components {
        let comp = st
            .components
            .entry(name.clone())
            .or_insert_with(|| Component {
                path: Some(component_path(snap, name)),
                driver: Some(Driver::Restic),
                ..Default::default()
            });
        comp.phase = Some(SnapshotPhase::Running);
    }
    st.total_components = Some(st.components.len() as i32);
    if let Some(n) = note {
        set_condition(
            &mut st.conditions,
            Condition {
                type_: TYPE_BACKUP_PROGRESS.into(),
                status: ConditionStatus::True,
                reason: Some("InProgress".into()),
                message: Some(n.to_string()),
                last_transition_time: Time(now()),
                observed_generation: None,
                severity: None,
            },
        );
    }
    st.phase = Some(kstash_api::phase::snapshot_phase(&st));
    st.last_update_time = Some(Time(now()));
    st
}

/// Uploads `snapshots/<name>.yaml` (the Snapshot with status `st`) to the repository.
async fn upload_yaml(t: &RepoTarget, snap: &Snapshot, st: &SnapshotStatus) -> Result<(), String> {
    let name = snap.metadata.name.clone().unwrap_or_default();
    let mut copy = snap.clone();
    copy.status = Some(st.clone());
    copy.metadata.managed_fields = None;
    let yaml = serde_yaml::to_string(&copy).map_err(|e| e.to_string())?;
    t.dir
        .put_snapshot_yaml(&name, yaml.as_bytes())
        .await
        .map_err(|e| e.to_string())
}
