//! Auto-backup controller (spec §2): KubeDB database objects of any kind the cluster serves
//! (`Postgres`, `MySQL`, `MariaDB`, `MongoDB`, `Redis`, `Elasticsearch`, …: every namespaced kind
//! of `kubedb.com` found by API discovery, re-checked every [`DISCOVERY_INTERVAL`] so a CRD
//! installed later is picked up) and `AppBinding`s carrying
//! `blueprint.kubestash.com/name`/`namespace` annotations get the BackupConfiguration rendered
//! from their BackupBlueprint by `kstash_blueprint::render`. Targets are watched as
//! `DynamicObject`s: the engine names no database kind.
//!
//! Decisions (docs/controllers.md):
//! - The BC is created, and **re-rendered and patched** whenever the target's annotations, the
//!   target or the blueprint change (Stash v1 never resynced; kstash keeps the BC in line with
//!   its source). `spec.paused` is never touched, so `kubectl kubestash pause` survives.
//! - The BC carries the label [`SOURCE_UID_LABEL`] (the target's uid) and, when it lives in the
//!   target's namespace, an owner reference to the target: deleting the target garbage-collects
//!   the BC (its finalizer then applies the repositories' deletion policies; the tutorial's
//!   leave them unset, which keeps the Repository and its snapshots).
//! - Annotations removed → the generated BC is deleted, after its repositories are switched to
//!   `deletionPolicy: Retain`, so the Repository and the backed up data are kept.
//! - Blueprint deleted (finalizer `kubestash.com/cleanup` on the blueprint) → with template
//!   `deletionPolicy: OnDelete` the generated BCs are deleted, otherwise they are kept.
//! - A render error (missing variable, refused usage policy, unknown session…) is a Warning
//!   Event `AutoBackupFailed` on the target, whose message names the variable; no BC is created
//!   and an existing one is left as it was.
//! - An AppBinding whose `appRef` object carries the annotations itself is skipped: the
//!   database object is the source (both would render the same `appbinding-<name>` BC).
//! - A BC of the same name that kstash did not generate is never overwritten (Warning Event).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kstash_api::constants::annotations as ann;
use kstash_api::constants::GROUP_KUBEDB;
use kstash_api::constants::{labels, FINALIZER_CLEANUP};
use kstash_api::core::{BackupBlueprint, BackupConfiguration, BlueprintDeletionPolicy};
use kstash_api::external::AppBinding;
use kstash_blueprint::NamespaceLabels;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use crate::control::{self, kube_err, Ctl, Result};
use crate::Context;

/// Label on a generated BackupConfiguration: the uid of the object it was rendered for.
pub const SOURCE_UID_LABEL: &str = "kstash.io/auto-backup-source-uid";
/// Annotation on a generated BackupConfiguration: `<kind>/<namespace>/<name>` of its source.
pub const SOURCE_ANNOTATION: &str = "kstash.io/auto-backup-source";
/// Event reason of a render failure (on the target).
pub const REASON_AUTO_BACKUP_FAILED: &str = "AutoBackupFailed";

/// How often the `kubedb.com` kinds are discovered again (a database CRD installed after the
/// operator started gets its watch within this time).
pub const DISCOVERY_INTERVAL: Duration = Duration::from_secs(30);

/// Runs this controller (every KubeDB kind, AppBinding and BackupBlueprint watches) until they
/// end.
pub async fn run(ctx: Arc<Context>) {
    let ctl = Ctl::new(&ctx, "autobackup");
    futures::join!(
        run_targets(ctl.clone(), ApiResource::erase::<AppBinding>(&())),
        run_database_kinds(ctl.clone()),
        run_blueprints(ctl),
    );
}

/// Discovers the namespaced kinds of `kubedb.com` and runs one target watch per kind.
async fn run_database_kinds(ctl: Arc<Ctl>) {
    let mut running = BTreeSet::new();
    let mut watches = futures::stream::FuturesUnordered::new();
    let mut tick = tokio::time::interval(DISCOVERY_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                match crate::kinds::namespaced_kinds(&ctl.ctx.client, GROUP_KUBEDB).await {
                    Ok(found) => {
                        for ar in found {
                            if running.insert(ar.kind.clone()) {
                                tracing::info!(kind = %ar.kind, group = GROUP_KUBEDB, "auto-backup watches this database kind");
                                watches.push(run_targets(ctl.clone(), ar));
                            }
                        }
                    }
                    Err(e) => tracing::warn!(group = GROUP_KUBEDB, "discovering database kinds: {e}"),
                }
            }
            Some(()) = watches.next(), if !watches.is_empty() => {}
        }
    }
}

fn names_blueprint<K: ResourceExt>(o: &K, bp: &BackupBlueprint) -> bool {
    let a = o.annotations();
    a.get(ann::BLUEPRINT_NAME).map(String::as_str) == bp.metadata.name.as_deref()
        && a.get(ann::BLUEPRINT_NAMESPACE).map(String::as_str) == bp.metadata.namespace.as_deref()
}

/// What a target watch reconciles with: the controller's state and the watched kind.
struct TargetCtl {
    ctl: Arc<Ctl>,
    resource: ApiResource,
}

async fn run_targets(ctl: Arc<Ctl>, resource: ApiResource) {
    let api = match &ctl.ctx.config.namespace {
        Some(ns) => Api::<DynamicObject>::namespaced_with(ctl.ctx.client.clone(), ns, &resource),
        None => Api::<DynamicObject>::all_with(ctl.ctx.client.clone(), &resource),
    };
    let controller = Controller::new_with(api, watcher::Config::default(), resource.clone());
    let store = controller.store();
    let ar = resource.clone();
    controller
        .watches(
            control::scoped_api::<BackupBlueprint>(&ctl.ctx),
            watcher::Config::default(),
            move |bp| {
                store
                    .state()
                    .into_iter()
                    .filter(|t| names_blueprint(t.as_ref(), &bp))
                    .map(|t| ObjectRef::from_obj_with(t.as_ref(), ar.clone()))
                    .collect::<Vec<_>>()
            },
        )
        .run(
            reconcile_target,
            control::error_policy,
            Arc::new(TargetCtl { ctl, resource }),
        )
        .for_each(|_| async {})
        .await;
}

async fn namespace_labels(ctx: &Context) -> Result<NamespaceLabels> {
    Ok(Api::<Namespace>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(kube_err("listing Namespaces"))?
        .items
        .into_iter()
        .map(|n| (n.name_any(), n.labels().clone()))
        .collect())
}

/// The BCs generated for the object with this uid (any namespace).
async fn generated_for(ctx: &Context, uid: &str) -> Result<Vec<BackupConfiguration>> {
    Ok(Api::<BackupConfiguration>::all(ctx.client.clone())
        .list(&ListParams::default().labels(&format!("{SOURCE_UID_LABEL}={uid}")))
        .await
        .map_err(kube_err("listing generated BackupConfigurations"))?
        .items)
}

/// Deletes a generated BC, switching its repositories to `Retain` first (data kept).
async fn delete_keeping_data(ctx: &Context, bc: &BackupConfiguration) -> Result<()> {
    let ns = bc.namespace().unwrap_or_default();
    let name = bc.name_any();
    let api: Api<BackupConfiguration> = Api::namespaced(ctx.client.clone(), &ns);
    let mut sessions = bc.spec.sessions.clone();
    for s in &mut sessions {
        for r in &mut s.repositories {
            r.deletion_policy = Some(kstash_api::core::RepositoryDeletionPolicy::Retain);
        }
    }
    let patch = serde_json::json!({"spec": {"sessions": sessions}});
    api.patch(
        &name,
        &PatchParams::apply(control::FIELD_MANAGER),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(kube_err(format!("retaining repositories of {ns}/{name}")))?;
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(e) if control::is_code(&e, 404) => Ok(()),
        Err(e) => Err(kube_err(format!(
            "deleting BackupConfiguration {ns}/{name}"
        ))(e)),
    }
}

/// One target object being reconciled.
struct Target<'a> {
    tc: &'a TargetCtl,
    obj: &'a DynamicObject,
    ns: String,
    name: String,
    uid: String,
}

async fn reconcile_target(obj: Arc<DynamicObject>, tc: Arc<TargetCtl>) -> Result<Action> {
    if obj.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let t = Target {
        tc: &tc,
        obj: &obj,
        ns: obj.namespace().unwrap_or_default(),
        name: obj.name_any(),
        uid: obj.uid().unwrap_or_default(),
    };
    // Annotations gone: delete what was generated for this object, keep the data.
    if !obj.annotations().contains_key(ann::BLUEPRINT_NAME) {
        t.remove_generated().await?;
        return Ok(Action::await_change());
    }
    let target_json = serde_json::to_value(obj.as_ref()).expect("object serializes");
    if t.tc.resource.kind == "AppBinding" && t.defers_to_database(&target_json).await? {
        return Ok(Action::await_change());
    }
    let Some(bp) = t.blueprint(&target_json).await? else {
        return Ok(Action::await_change());
    };
    let Some(bc) = t.render(&target_json, &bp).await? else {
        return Ok(Action::await_change());
    };
    t.apply(&bc, &bp).await
}

impl Target<'_> {
    /// A Warning Event `AutoBackupFailed` on the target.
    async fn failed(&self, action: &str, msg: String) {
        self.tc
            .ctl
            .events
            .publish_with(
                self.obj,
                &self.tc.resource,
                true,
                REASON_AUTO_BACKUP_FAILED,
                action,
                msg,
            )
            .await;
    }

    /// A Normal Event on the target.
    async fn done(&self, reason: &str, action: &str, msg: String) {
        self.tc
            .ctl
            .events
            .publish_with(self.obj, &self.tc.resource, false, reason, action, msg)
            .await;
    }

    /// The annotations are gone: every BC generated for the target is deleted (repositories
    /// and snapshots kept).
    async fn remove_generated(&self) -> Result<()> {
        let ctx = &self.tc.ctl.ctx;
        for bc in generated_for(ctx, &self.uid).await? {
            delete_keeping_data(ctx, &bc).await?;
            let msg = format!(
                "annotation {} removed: BackupConfiguration {}/{} deleted (repositories and snapshots kept)",
                ann::BLUEPRINT_NAME,
                bc.namespace().unwrap_or_default(),
                bc.name_any()
            );
            self.done("AutoBackupRemoved", "Delete", msg).await;
        }
        Ok(())
    }

    /// Whether an AppBinding leaves the BC to its annotated database object (or its `appRef`
    /// is refused by the tenancy rules: a Warning Event).
    async fn defers_to_database(&self, target_json: &serde_json::Value) -> Result<bool> {
        let app_ref = &target_json["spec"]["appRef"];
        if let Err(denied) =
            kstash_api::tenancy::app_ref(&self.ns, app_ref["namespace"].as_str(), "spec.appRef")
        {
            self.failed("Validate", format!("refused: {denied}")).await;
            return Ok(true);
        }
        if app_ref["apiGroup"] != GROUP_KUBEDB {
            return Ok(false);
        }
        let rns = app_ref["namespace"]
            .as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or(&self.ns);
        let db = crate::kinds::get(
            &self.tc.ctl.ctx.client,
            GROUP_KUBEDB,
            app_ref["kind"].as_str().unwrap_or_default(),
            rns,
            app_ref["name"].as_str().unwrap_or_default(),
        )
        .await
        .map_err(kube_err("reading the AppBinding's appRef"))?;
        Ok(db.is_some_and(|db| db.annotations().contains_key(ann::BLUEPRINT_NAME)))
    }

    /// The BackupBlueprint the annotations name (`None`, with a Warning Event, when it is
    /// missing or not named fully).
    async fn blueprint(&self, target_json: &serde_json::Value) -> Result<Option<BackupBlueprint>> {
        let a = self.obj.annotations();
        let bp_name = a.get(ann::BLUEPRINT_NAME).cloned().unwrap_or_default();
        let bp_ns = a.get(ann::BLUEPRINT_NAMESPACE).cloned().unwrap_or_default();
        if bp_ns.is_empty() {
            // Missing namespace annotation: let the renderer report it.
            let err = kstash_blueprint::render(
                target_json,
                &BackupBlueprint::new(&bp_name, Default::default()),
                &Default::default(),
            )
            .err()
            .map(|e| e.to_string())
            .unwrap_or_else(|| format!("annotation {} is required", ann::BLUEPRINT_NAMESPACE));
            self.failed("Render", err).await;
            return Ok(None);
        }
        let bp = Api::<BackupBlueprint>::namespaced(self.tc.ctl.ctx.client.clone(), &bp_ns)
            .get_opt(&bp_name)
            .await
            .map_err(kube_err(format!(
                "reading BackupBlueprint {bp_ns}/{bp_name}"
            )))?
            .filter(|b| b.metadata.deletion_timestamp.is_none());
        if bp.is_none() {
            let msg = format!(
                "BackupBlueprint {bp_ns}/{bp_name} (annotations {}, {}) not found",
                ann::BLUEPRINT_NAME,
                ann::BLUEPRINT_NAMESPACE
            );
            self.failed("Render", msg).await;
        }
        Ok(bp)
    }

    /// The BC rendered from `bp` for the target, defaulted, labelled with its source (and owned
    /// by it in its namespace); `None`, with a Warning Event, when rendering fails.
    async fn render(
        &self,
        target_json: &serde_json::Value,
        bp: &BackupBlueprint,
    ) -> Result<Option<BackupConfiguration>> {
        let ctx = &self.tc.ctl.ctx;
        let ns_labels = namespace_labels(ctx).await?;
        let mut bc = match kstash_blueprint::render(target_json, bp, &ns_labels) {
            Ok(bc) => bc,
            Err(e) => {
                let msg = format!("BackupBlueprint {}: {e}", blueprint_ref(bp));
                self.failed("Render", msg).await;
                return Ok(None);
            }
        };
        let lookup = crate::control::admission_lookup(ctx).await?;
        kstash_api::admission::default_backup_configuration(&mut bc, &lookup);
        let ar = &self.tc.resource;
        bc.labels_mut()
            .insert(SOURCE_UID_LABEL.into(), self.uid.clone());
        bc.annotations_mut().insert(
            SOURCE_ANNOTATION.into(),
            format!("{}/{}/{}", ar.kind, self.ns, self.name),
        );
        if bc.namespace().unwrap_or_default() == self.ns {
            bc.metadata.owner_references = Some(vec![OwnerReference {
                api_version: ar.api_version.clone(),
                kind: ar.kind.clone(),
                name: self.name.clone(),
                uid: self.uid.clone(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]);
        }
        Ok(Some(bc))
    }

    /// Creates `bc`, or patches the one generated for this target when it differs (one that
    /// kstash did not generate is left unchanged, with a Warning Event).
    async fn apply(&self, bc: &BackupConfiguration, bp: &BackupBlueprint) -> Result<Action> {
        let bc_ns = bc.namespace().unwrap_or_default();
        let bc_name = bc.name_any();
        let bp_ref = blueprint_ref(bp);
        let api: Api<BackupConfiguration> = Api::namespaced(self.tc.ctl.ctx.client.clone(), &bc_ns);
        let existing = api.get_opt(&bc_name).await.map_err(kube_err(format!(
            "reading BackupConfiguration {bc_ns}/{bc_name}"
        )))?;
        let Some(existing) = existing else {
            api.create(&PostParams::default(), bc)
                .await
                .map_err(kube_err(format!(
                    "creating BackupConfiguration {bc_ns}/{bc_name}"
                )))?;
            let msg = format!(
                "BackupConfiguration {bc_ns}/{bc_name} created from BackupBlueprint {bp_ref}"
            );
            self.done("BackupConfigurationCreated", "Render", msg).await;
            return Ok(Action::requeue(Duration::from_secs(600)));
        };
        if existing.labels().get(SOURCE_UID_LABEL) != Some(&self.uid) {
            let msg = format!(
                "BackupConfiguration {bc_ns}/{bc_name} exists and was not generated for this object: left unchanged"
            );
            self.failed("Render", msg).await;
            return Ok(Action::await_change());
        }
        if !same_generated(&existing, bc) {
            let patch = serde_json::json!({
                "metadata": {"labels": bc.labels(), "annotations": bc.annotations()},
                "spec": {"target": bc.spec.target, "backends": bc.spec.backends, "sessions": bc.spec.sessions},
            });
            api.patch(
                &bc_name,
                &PatchParams::apply(control::FIELD_MANAGER),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(kube_err(format!(
                "updating BackupConfiguration {bc_ns}/{bc_name}"
            )))?;
            let msg = format!(
                "BackupConfiguration {bc_ns}/{bc_name} re-rendered from BackupBlueprint {bp_ref}"
            );
            self.done("BackupConfigurationUpdated", "Render", msg).await;
        }
        Ok(Action::requeue(Duration::from_secs(600)))
    }
}

/// `namespace/name` of a blueprint.
fn blueprint_ref(bp: &BackupBlueprint) -> String {
    format!(
        "{}/{}",
        bp.metadata.namespace.as_deref().unwrap_or(""),
        bp.metadata.name.as_deref().unwrap_or("")
    )
}

/// Whether the existing generated BC already is what was rendered (target, backends, sessions
/// and every rendered label).
fn same_generated(existing: &BackupConfiguration, bc: &BackupConfiguration) -> bool {
    existing.spec.target == bc.spec.target
        && existing.spec.backends == bc.spec.backends
        && existing.spec.sessions == bc.spec.sessions
        && bc
            .labels()
            .iter()
            .all(|(k, v)| existing.labels().get(k) == Some(v))
}

async fn run_blueprints(ctl: Arc<Ctl>) {
    let api = control::scoped_api::<BackupBlueprint>(&ctl.ctx);
    Controller::new(api, watcher::Config::default())
        .run(reconcile_blueprint, control::error_policy, ctl)
        .for_each(|_| async {})
        .await;
}

async fn reconcile_blueprint(bp: Arc<BackupBlueprint>, ctl: Arc<Ctl>) -> Result<Action> {
    let ns = bp.namespace().unwrap_or_default();
    let api: Api<BackupBlueprint> = Api::namespaced(ctl.ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER_CLEANUP, bp, |ev| async {
        match ev {
            Finalizer::Apply(_) => Ok(Action::await_change()),
            Finalizer::Cleanup(bp) => blueprint_deleted(&bp, &ctl).await,
        }
    })
    .await
    .map_err(control::finalizer_err)
}

/// Template `deletionPolicy: OnDelete` → delete the generated BCs; otherwise keep them.
async fn blueprint_deleted(bp: &BackupBlueprint, ctl: &Ctl) -> Result<Action> {
    let ctx = &ctl.ctx;
    let on_delete = bp
        .spec
        .backup_configuration_template
        .as_ref()
        .and_then(|t| t.deletion_policy)
        == Some(BlueprintDeletionPolicy::OnDelete);
    let selector = format!(
        "{}={},{}={},{}",
        labels::INVOKER_NAME,
        kstash_api::names::label_value(&bp.name_any()),
        labels::INVOKER_NAMESPACE,
        kstash_api::names::label_value(&bp.namespace().unwrap_or_default()),
        SOURCE_UID_LABEL
    );
    let bcs = Api::<BackupConfiguration>::all(ctx.client.clone())
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(kube_err("listing generated BackupConfigurations"))?
        .items;
    for bc in bcs {
        let (bns, bname) = (bc.namespace().unwrap_or_default(), bc.name_any());
        if on_delete {
            let api: Api<BackupConfiguration> = Api::namespaced(ctx.client.clone(), &bns);
            match api.delete(&bname, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if control::is_code(&e, 404) => {}
                Err(e) => {
                    return Err(kube_err(format!(
                        "deleting BackupConfiguration {bns}/{bname}"
                    ))(e))
                }
            }
            ctl.events
                .publish(&bc, false, "BlueprintDeleted", "Delete",
                    format!("BackupBlueprint {} deleted with deletionPolicy OnDelete: BackupConfiguration deleted", control::id(bp)))
                .await;
        } else {
            ctl.events
                .publish(&bc, false, "BlueprintDeleted", "Delete",
                    format!("BackupBlueprint {} deleted without deletionPolicy OnDelete: BackupConfiguration kept", control::id(bp)))
                .await;
        }
    }
    Ok(Action::await_change())
}
