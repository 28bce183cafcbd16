//! Step 8: retention per repository — the RetentionPolicy's plan (`retention_plan`), then the
//! restic snapshots forgotten and pruned, their YAML copies and the Snapshot objects deleted.

use kstash_api::core::{RetentionPolicyApplyPhase, RetentionPolicyApplyStatus, Session};
use kstash_api::shared::ObjectReference;
use kstash_api::storage::{RetentionPolicy, Snapshot};
use kstash_repo::{ComponentSnapshot, SnapshotDeletion};
use kstash_rules::backup_session as bsx;
use kube::api::{DeleteParams, ListParams};
use kube::Api;

use super::{now, Run};
use crate::execute::error::not_found_none;
use crate::execute::Error;

impl Run<'_> {
    /// Step 8: retention per repository; returns the entries and the executor result.
    pub(super) async fn retention(
        &self,
        sess: &Session,
        repos: &[(Option<String>, String)],
    ) -> (Vec<RetentionPolicyApplyStatus>, Result<(), String>) {
        let mut entries = Vec::new();
        let mut exec_result = Ok(());
        for (backend_name, repo) in repos {
            let backend = match backend_name {
                Some(b) if !b.is_empty() => self.bc.spec.backends.iter().find(|x| &x.name == b),
                _ => self.bc.spec.backends.first(),
            };
            let Some(pref) = backend.and_then(|b| b.retention_policy.clone()) else {
                continue;
            };
            match self.apply_retention(sess, repo, &pref).await {
                Ok(entry) => entries.push(entry),
                Err(e) => {
                    exec_result = Err(e.to_string());
                    entries.push(RetentionPolicyApplyStatus {
                        ref_: Some(pref.clone()),
                        repository: Some(repo.clone()),
                        phase: Some(RetentionPolicyApplyPhase::FailedToApply),
                        error: Some(e.to_string()),
                    });
                }
            }
        }
        (entries, exec_result)
    }

    async fn apply_retention(
        &self,
        sess: &Session,
        repo_name: &str,
        pref: &ObjectReference,
    ) -> Result<RetentionPolicyApplyStatus, Error> {
        let pns = pref.namespace_or(&self.ns).to_string();
        let rp_api: Api<RetentionPolicy> = Api::namespaced(self.client.clone(), &pns);
        let what = format!("RetentionPolicy {pns}/{}", pref.name);
        let rp = not_found_none(rp_api.get(&pref.name).await)
            .map_err(|e| Error::kube(format!("reading {what}"), e))?
            .ok_or(Error::NotFound(what))?;
        let snap_api: Api<Snapshot> = Api::namespaced(self.client.clone(), &self.ns);
        let snaps = snap_api
            .list(&ListParams::default())
            .await
            .map_err(|e| Error::kube(format!("listing Snapshots in {}", self.ns), e))?
            .items;
        let mut pref_full = pref.clone();
        pref_full.namespace.get_or_insert(pns);
        let plan = bsx::retention_plan(repo_name, &self.ns, &pref_full, &rp.spec, &snaps, now());
        if plan.to_delete.is_empty()
            || plan.status.phase == Some(RetentionPolicyApplyPhase::FailedToApply)
        {
            return Ok(bsx::retention_applied(&plan.status, &Ok(())));
        }
        let result = self
            .delete_snapshots(sess, repo_name, &plan.to_delete, &snaps)
            .await;
        if result.is_ok() {
            self.exec
                .events
                .publish(
                    self.bs,
                    false,
                    "RetentionPolicyApplied",
                    "Retention",
                    format!("Deleted Snapshots {}", plan.to_delete.join(", ")),
                )
                .await;
        }
        Ok(bsx::retention_applied(
            &plan.status,
            &result.map_err(|e| e.to_string()),
        ))
    }

    /// Forgets + prunes the restic snapshots of `names`, deletes their YAML copies, then the
    /// Snapshot objects (finalizer removed: the cleanup was just done here).
    async fn delete_snapshots(
        &self,
        sess: &Session,
        repo_name: &str,
        names: &[String],
        snaps: &[Snapshot],
    ) -> Result<(), Error> {
        let resolved = super::session_repository(&self.client, &self.ns, sess, repo_name).await?;
        let (dir, password) = (&resolved.dir, resolved.password.expose());
        let deletions: Vec<SnapshotDeletion> = names
            .iter()
            .filter_map(|n| snaps.iter().find(|s| s.metadata.name.as_deref() == Some(n)))
            .map(|s| SnapshotDeletion {
                snapshot_name: s.metadata.name.clone().unwrap_or_default(),
                components: s
                    .status
                    .iter()
                    .flat_map(|st| st.components.iter())
                    .filter_map(|(cname, comp)| {
                        comp.restic_stats
                            .first()
                            .and_then(|r| r.id.clone())
                            .map(|id| ComponentSnapshot {
                                session: s.spec.session.clone().unwrap_or_default(),
                                component: cname.clone(),
                                restic_snapshot_id: id,
                            })
                    })
                    .collect(),
            })
            .collect();
        dir.apply_retention(&deletions, password)
            .await
            .map_err(|e| Error::repo(format!("applying retention to Repository {repo_name}"), e))?;
        let api: Api<Snapshot> = Api::namespaced(self.client.clone(), &self.ns);
        // The Snapshot controller releases each one's `kubestash.com/cleanup` (its data is
        // already forgotten above, so its own cleanup finds nothing left to forget).
        for n in names {
            match api.delete(n, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(Error::kube(format!("deleting Snapshot {}/{n}", self.ns), e)),
            }
        }
        Ok(())
    }
}
