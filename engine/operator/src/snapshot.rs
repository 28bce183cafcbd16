//! Snapshot: the owner of `kubestash.com/cleanup` on Snapshots. However a Snapshot is deleted
//! — by hand, by retention, by its Repository's, BackupStorage's or namespace's deletion — this
//! reconciler's cleanup runs before the finalizer goes: `deletionPolicy: WipeOut` forgets its
//! restic snapshots (and prunes) and deletes its YAML copy in the bucket; `Delete` (the
//! default) keeps the data (`kstash_rules::snapshot::cleanup` decides).
//!
//! When the data can no longer be reached because the Repository, its BackupStorage or a
//! Secret is already gone (a namespace deletion removes Secrets first), the data is kept, a
//! Warning Event says so, and the finalizer is released: a Snapshot never stays Terminating
//! for want of objects that will not come back.

use std::sync::Arc;

use kstash_api::constants::FINALIZER_CLEANUP;
use kstash_api::storage::{Repository, Snapshot};
use kstash_api::tenancy;
use kstash_repo::ComponentPath;
use kstash_rules::snapshot::{cleanup, Cleanup, ComponentData};
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::ResourceExt;

use crate::shell::error::repo_error;
use crate::shell::{self, describe, Error, ErrorKind, Reconciler, Result, Shell};
use crate::storage;

/// The Snapshot controller.
#[derive(Default)]
pub struct Snapshots;

/// Runs the Snapshot controller in the shell until the operator drains.
pub async fn run(ctx: Arc<crate::Context>) {
    shell::run(Snapshots, Shell::new(&ctx, Snapshots::NAME)).await
}

impl Reconciler for Snapshots {
    type Object = Snapshot;
    const NAME: &'static str = "snapshot";
    const FINALIZER: Option<&'static str> = Some(FINALIZER_CLEANUP);

    fn watched(&self, cx: &Shell) -> Api<Snapshot> {
        cx.ctx.scoped_api()
    }

    fn api_of(&self, cx: &Shell, obj: &Snapshot) -> Api<Snapshot> {
        shell::namespaced_api(cx, obj)
    }

    /// The executors write a Snapshot's status; nothing to do until it is deleted.
    async fn apply(&self, _snap: Arc<Snapshot>, _cx: &Shell) -> Result<Action> {
        Ok(Action::await_change())
    }

    async fn cleanup(&self, snap: Arc<Snapshot>, cx: &Shell) -> Result<Action> {
        let Cleanup::DeleteData {
            session,
            components,
        } = cleanup(&snap)
        else {
            return Ok(Action::await_change());
        };
        match wipe_out(&snap, cx, &session, &components).await {
            Ok(()) => Ok(Action::await_change()),
            Err(e) if e.kind == ErrorKind::NotFound => {
                let note = format!("data kept: it cannot be reached any more ({e})");
                cx.events
                    .warning(snap.as_ref(), "SnapshotDataKept", "Delete", note)
                    .await;
                Ok(Action::await_change())
            }
            Err(e) => Err(e),
        }
    }
}

/// Forgets the restic snapshots of `components` and deletes the Snapshot's YAML copy.
async fn wipe_out(
    snap: &Snapshot,
    cx: &Shell,
    session: &str,
    components: &[ComponentData],
) -> Result<()> {
    let object = describe(snap);
    let ns = snap.namespace().unwrap_or_default();
    let repo_name = snap.spec.repository.as_deref().unwrap_or_default();
    let repo = cx
        .api::<Repository>(&ns)
        .get_opt(repo_name)
        .await
        .map_err(|e| Error::api(&object, format!("reading Repository {ns}/{repo_name}"), e))?
        .ok_or_else(|| {
            Error::message(
                ErrorKind::NotFound,
                &object,
                format!("Repository {ns}/{repo_name} (spec.repository) not found"),
            )
        })?;
    // A Repository the tenancy rules refuse (another's storage or directory) is never written.
    let lookup = crate::control::admission_lookup(&cx.ctx)
        .await
        .map_err(|e| Error::message(ErrorKind::Api, &object, e.to_string()))?;
    let foreign = match tenancy::password_secret(&repo, None, &ns) {
        Some((sns, sname)) if sns != ns => {
            crate::execute::backend::secret_annotations(cx.client(), &sns, &sname)
                .await
                .map_err(|e| Error::api(&object, format!("reading Secret {sns}/{sname}"), e))?
        }
        _ => None,
    };
    if let Err(denied) = tenancy::repository(&repo, &lookup, foreign.as_ref()) {
        return Err(Error::message(
            ErrorKind::NotFound,
            &object,
            format!("Repository {ns}/{repo_name} is refused: {denied}"),
        ));
    }
    let resolved = storage::resolve(cx.client(), &repo, None, &object).await?;
    for c in components {
        let path = match c.path.as_deref() {
            Some(p) => ComponentPath::parse(p),
            None => ComponentPath::new(session, &c.component),
        }
        .map_err(|e| repo_error(&object, e))?;
        let restic = resolved
            .component(&path)
            .map_err(|e| repo_error(&object, e))?;
        let report = restic
            .forget_and_prune(std::slice::from_ref(&c.restic_snapshot_id))
            .await
            .map_err(|e| repo_error(&object, e))?;
        tracing::info!(snapshot = %object, component = %c.component, ?report, "forgotten");
    }
    resolved
        .dir
        .delete_snapshot_yaml(&snap.name_any())
        .await
        .map_err(|e| repo_error(&object, e))?;
    Ok(())
}
