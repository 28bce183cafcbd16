//! BackupConfiguration controller (spec §3, §4): defaulting and admission rules
//! (`ValidationPassed`), target, backends, dependencies, the Repositories, the scheduler and
//! the initial backup, phase; finalizer `kubestash.com/cleanup` applying
//! `repositories[].deletionPolicy`.
//!
//! The decision is `kstash_rules::backup_configuration::plan`; this module observes the cluster,
//! calls it and performs the writes. The scheduler is the controller's requeue: each reconcile
//! of a Ready configuration is scheduled again at the earliest `nextSchedule` (plus one second),
//! and `schedule::decide` coalesces whatever was missed while the operator was down.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Namespace;
use kstash_api::addons::Addon;
use kstash_api::admission::{self, Lookup};
use kstash_api::constants::{conditions as c, FINALIZER_CLEANUP, GROUP_APPCATALOG, GROUP_KUBEDB};
use kstash_api::core::{
    BackupConfiguration, BackupInvokerPhase, BackupSession, HookTemplate, RepositoryDeletionPolicy,
};
use kstash_api::external::{AppBinding, Elasticsearch};
use kstash_api::shared::TypedObjectReference;
use kstash_api::storage::{BackupStorage, Repository, RetentionPolicy};
use kstash_rules::backup_configuration::{
    mark_initial_backup_failed, plan, BackendObservation, Observed, RepositoryChange,
};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt;

use crate::control::{self, kube_err, Ctl, Error, Result};
use crate::Context;

/// Poll interval while a configuration is not Ready (waiting for storage, target, Addon).
const NOT_READY_RETRY: Duration = Duration::from_secs(5);
/// Longest sleep of the scheduler (a safety net; the next schedule normally comes first).
const MAX_SLEEP: Duration = Duration::from_secs(300);

/// Runs this controller until its watch ends.
pub async fn run(ctx: Arc<Context>) {
    let ctl = Ctl::new(&ctx, "backupconfiguration");
    let bcs = control::scoped_api::<BackupConfiguration>(&ctx);
    let controller = Controller::new(bcs, watcher::Config::default());
    let (by_repo, by_storage) = (controller.store(), controller.store());
    controller
        // A Repository's phase is part of the status: reconcile the BCs that list it.
        .watches(
            control::scoped_api::<Repository>(&ctx),
            watcher::Config::default(),
            move |r| {
                let ns = r.namespace();
                by_repo
                    .state()
                    .into_iter()
                    .filter(|bc| {
                        bc.namespace() == ns
                            && bc
                                .spec
                                .sessions
                                .iter()
                                .any(|s| s.repositories.iter().any(|x| x.name == r.name_any()))
                    })
                    .map(|bc| ObjectRef::from_obj(bc.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        // So is each backend's BackupStorage phase.
        .watches(
            control::scoped_api::<BackupStorage>(&ctx),
            watcher::Config::default(),
            move |st| {
                let (name, ns) = (st.name_any(), st.namespace().unwrap_or_default());
                by_storage
                    .state()
                    .into_iter()
                    .filter(|bc| {
                        let bns = bc.namespace().unwrap_or_default();
                        bc.spec.backends.iter().any(|b| {
                            b.storage_ref
                                .as_ref()
                                .is_some_and(|r| r.name == name && r.namespace_or(&bns) == ns)
                        })
                    })
                    .map(|bc| ObjectRef::from_obj(bc.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .run(reconcile, control::error_policy, ctl)
        .for_each(|_| async {})
        .await;
}

async fn reconcile(bc: Arc<BackupConfiguration>, ctl: Arc<Ctl>) -> Result<Action> {
    let ns = bc.namespace().unwrap_or_default();
    let api: Api<BackupConfiguration> = Api::namespaced(ctl.ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER_CLEANUP, bc, |ev| async {
        match ev {
            Finalizer::Apply(bc) => apply(&bc, &ctl).await,
            Finalizer::Cleanup(bc) => cleanup(&bc, &ctl).await,
        }
    })
    .await
    .map_err(control::finalizer_err)
}

async fn list_all<K>(ctx: &Context, what: &str) -> Result<Vec<K>>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    <K as kube::Resource>::DynamicType: Default,
{
    let api: Api<K> = Api::all(ctx.client.clone());
    Ok(api
        .list(&ListParams::default())
        .await
        .map_err(kube_err(format!("listing {what}")))?
        .items)
}

/// What the admission webhooks of KubeStash would look at (every namespace).
pub async fn admission_lookup(ctx: &Context) -> Result<Lookup> {
    let nss: Api<Namespace> = Api::all(ctx.client.clone());
    let namespaces = nss
        .list(&ListParams::default())
        .await
        .map_err(kube_err("listing Namespaces"))?
        .items
        .into_iter()
        .map(|n| (n.name_any(), n.labels().clone()))
        .collect();
    Ok(Lookup {
        backup_storages: list_all::<BackupStorage>(ctx, "BackupStorages").await?,
        retention_policies: list_all::<RetentionPolicy>(ctx, "RetentionPolicies").await?,
        repositories: list_all::<Repository>(ctx, "Repositories").await?,
        hook_templates: list_all::<HookTemplate>(ctx, "HookTemplates").await?,
        namespaces,
    })
}

/// Whether the target object exists: KubeDB Elasticsearch and AppBinding directly, any other
/// kind through API discovery (an undiscoverable kind counts as not found).
pub async fn target_exists(
    ctx: &Context,
    t: &TypedObjectReference,
    default_ns: &str,
) -> Result<bool> {
    let ns = t
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(default_ns);
    let group = t.api_group.as_deref().unwrap_or("");
    let kind = t.kind.as_deref().unwrap_or("");
    let what = format!("reading target {group}/{kind} {ns}/{}", t.name);
    let found = match (group, kind) {
        (GROUP_KUBEDB, "Elasticsearch") => Api::<Elasticsearch>::namespaced(ctx.client.clone(), ns)
            .get_opt(&t.name)
            .await
            .map_err(kube_err(what))?
            .is_some(),
        (GROUP_APPCATALOG, "AppBinding") => Api::<AppBinding>::namespaced(ctx.client.clone(), ns)
            .get_opt(&t.name)
            .await
            .map_err(kube_err(what))?
            .is_some(),
        _ => {
            let Ok(g) = kube::discovery::group(&ctx.client, group).await else {
                return Ok(false);
            };
            let Some((ar, _)) = g.recommended_kind(kind) else {
                return Ok(false);
            };
            Api::<DynamicObject>::namespaced_with(ctx.client.clone(), ns, &ar)
                .get_opt(&t.name)
                .await
                .map_err(kube_err(what))?
                .is_some()
        }
    };
    Ok(found)
}

async fn apply(bc: &BackupConfiguration, ctl: &Ctl) -> Result<Action> {
    let ctx = &ctl.ctx;
    let ns = bc.namespace().unwrap_or_default();
    let name = bc.name_any();
    let api: Api<BackupConfiguration> = Api::namespaced(ctx.client.clone(), &ns);
    let lookup = admission_lookup(ctx).await?;

    // Mutating webhook: default BackupStorage / RetentionPolicy. Persist and wait for the
    // change to come back through the watch.
    let mut defaulted = bc.clone();
    admission::default_backup_configuration(&mut defaulted, &lookup);
    if defaulted.spec.backends != bc.spec.backends {
        let patch = serde_json::json!({"spec": {"backends": defaulted.spec.backends}});
        api.patch(
            &name,
            &PatchParams::apply(control::FIELD_MANAGER),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(kube_err(format!(
            "defaulting BackupConfiguration {ns}/{name}"
        )))?;
        return Ok(Action::requeue(Duration::from_millis(200)));
    }

    // Observe.
    let validation = admission::validate_backup_configuration(bc, &lookup)
        .and_then(|()| admission::kstash_limits(bc))
        .err();
    let target_found = match &bc.spec.target {
        Some(t) => target_exists(ctx, t, &ns).await?,
        None => false,
    };
    let mut backends = BTreeMap::new();
    for b in &bc.spec.backends {
        let storage_phase = b.storage_ref.as_ref().and_then(|r| {
            lookup
                .backup_storages
                .iter()
                .find(|s| {
                    s.name_any() == r.name && s.namespace().as_deref() == Some(r.namespace_or(&ns))
                })
                .map(|s| {
                    s.status
                        .as_ref()
                        .and_then(|st| st.phase)
                        .unwrap_or(kstash_api::storage::BackupStoragePhase::NotReady)
                })
        });
        let retention_policy_found = b.retention_policy.as_ref().is_some_and(|r| {
            lookup.retention_policies.iter().any(|p| {
                p.name_any() == r.name && p.namespace().as_deref() == Some(r.namespace_or(&ns))
            })
        });
        backends.insert(
            b.name.clone(),
            BackendObservation {
                storage_phase,
                retention_policy_found,
            },
        );
    }
    let addons: BTreeSet<String> = Api::<Addon>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(kube_err("listing Addons"))?
        .items
        .iter()
        .map(|a| a.name_any())
        .collect();
    let repositories: Vec<Repository> = lookup
        .repositories
        .iter()
        .filter(|r| r.namespace().as_deref() == Some(ns.as_str()))
        .cloned()
        .collect();
    let sessions = invoked_sessions(ctx, &ns, &name).await?;
    let now = Timestamp::now();
    let obs = Observed {
        validation_error: validation.as_ref(),
        target_found,
        backends: &backends,
        addons: &addons,
        repositories: &repositories,
        backup_sessions: &sessions,
        now,
    };
    let mut plan = plan(bc, &obs).map_err(|e| Error::Plan(e.to_string()))?;

    // Act: Repositories.
    let rapi: Api<Repository> = Api::namespaced(ctx.client.clone(), &ns);
    for change in &plan.repositories {
        match change {
            RepositoryChange::Create(r) => match rapi.create(&PostParams::default(), r).await {
                Ok(_) => {
                    ctl.events
                        .publish(
                            bc,
                            false,
                            "RepositoryCreated",
                            "Create",
                            format!("Repository {ns}/{} created", r.name_any()),
                        )
                        .await
                }
                Err(e) if control::is_code(&e, 409) => {}
                Err(e) => {
                    return Err(kube_err(format!(
                        "creating Repository {ns}/{}",
                        r.name_any()
                    ))(e))
                }
            },
            RepositoryChange::Update(r) => {
                let patch = serde_json::json!({"spec": {
                    "encryptionSecret": r.spec.encryption_secret,
                    "deletionPolicy": r.spec.deletion_policy}});
                rapi.patch(
                    &r.name_any(),
                    &PatchParams::apply(control::FIELD_MANAGER),
                    &Patch::Merge(&patch),
                )
                .await
                .map_err(kube_err(format!(
                    "updating Repository {ns}/{}",
                    r.name_any()
                )))?;
            }
        }
    }

    // Act: BackupSessions (initial and scheduled).
    let bsapi: Api<BackupSession> = Api::namespaced(ctx.client.clone(), &ns);
    for s in &plan.backup_sessions {
        let session = s.spec.session.clone().unwrap_or_default();
        match bsapi.create(&PostParams::default(), s).await {
            Ok(_) => {
                ctl.events
                    .publish(
                        bc,
                        false,
                        "BackupSessionCreated",
                        "Trigger",
                        format!(
                            "BackupSession {ns}/{} created for session {session}",
                            s.name_any()
                        ),
                    )
                    .await
            }
            Err(e) if control::is_code(&e, 409) => {}
            Err(e) => {
                let was_triggered = bc.status.as_ref().is_some_and(|st| {
                    st.sessions.iter().any(|x| {
                        x.name == session
                            && x.conditions
                                .iter()
                                .any(|c| c.type_ == c::TYPE_INITIAL_BACKUP_TRIGGERED && c.is_true())
                    })
                });
                let msg = format!("creating BackupSession {ns}/{}: {e}", s.name_any());
                if !was_triggered {
                    mark_initial_backup_failed(&mut plan.status, &session, &msg, now);
                }
                ctl.events
                    .publish(bc, true, "BackupSessionCreationFailed", "Trigger", msg)
                    .await;
            }
        }
    }
    for s in &plan.schedules {
        if s.missed > 0 {
            ctl.events
                .publish(bc, true, "MissedSchedule", "Schedule",
                    format!("session {}: {} scheduled run(s) got no BackupSession (coalesced, paused or past the starting deadline)", s.session, s.missed))
                .await;
        }
    }

    // Status.
    let prev_phase = bc.status.as_ref().and_then(|s| s.phase);
    control::patch_status(&api, &name, bc.status.as_ref(), &plan.status).await?;
    if plan.status.phase != prev_phase {
        let phase = plan
            .status
            .phase
            .map(|p| format!("{p:?}"))
            .unwrap_or_default();
        let invalid = plan.status.phase == Some(BackupInvokerPhase::Invalid);
        let note = match &validation {
            Some(e) => format!("phase {phase}: {e}"),
            None => format!("phase {phase}"),
        };
        ctl.events
            .publish(bc, invalid, &format!("Phase{phase}"), "Reconcile", note)
            .await;
    }

    // Schedule the next wake-up.
    let ready = plan.status.phase == Some(BackupInvokerPhase::Ready);
    if !ready {
        return Ok(Action::requeue(NOT_READY_RETRY));
    }
    let wait = plan
        .requeue_at
        .map(|at| {
            let secs = (at.as_second() - now.as_second()).max(0) as u64;
            Duration::from_secs(secs + 1)
        })
        .unwrap_or(MAX_SLEEP);
    Ok(Action::requeue(wait.min(MAX_SLEEP)))
}

/// BackupSessions of `ns` whose invoker is this BackupConfiguration.
async fn invoked_sessions(ctx: &Context, ns: &str, name: &str) -> Result<Vec<BackupSession>> {
    let api: Api<BackupSession> = Api::namespaced(ctx.client.clone(), ns);
    Ok(api
        .list(&ListParams::default())
        .await
        .map_err(kube_err(format!("listing BackupSessions in {ns}")))?
        .items
        .into_iter()
        .filter(|s| {
            s.spec
                .invoker
                .as_ref()
                .is_some_and(|i| i.name == name && i.kind == "BackupConfiguration")
        })
        .collect())
}

/// Deletion: BackupSessions are owned (garbage collected). Each repository follows its
/// `deletionPolicy`: `Delete` deletes the Repository CR (data kept), `WipeOut` switches the
/// Repository to `WipeOut` and deletes it (data deleted by the Repository controller), `Retain`
/// and **unset** keep it (the safe default: KubeStash's is undocumented). A Repository another
/// BackupConfiguration still uses is always kept.
async fn cleanup(bc: &BackupConfiguration, ctl: &Ctl) -> Result<Action> {
    let ctx = &ctl.ctx;
    let ns = bc.namespace().unwrap_or_default();
    let name = bc.name_any();
    let others: Vec<BackupConfiguration> =
        Api::<BackupConfiguration>::namespaced(ctx.client.clone(), &ns)
            .list(&ListParams::default())
            .await
            .map_err(kube_err(format!("listing BackupConfigurations in {ns}")))?
            .items
            .into_iter()
            .filter(|o| o.name_any() != name)
            .collect();
    let rapi: Api<Repository> = Api::namespaced(ctx.client.clone(), &ns);
    for s in &bc.spec.sessions {
        for r in &s.repositories {
            let policy = r
                .deletion_policy
                .unwrap_or(RepositoryDeletionPolicy::Retain);
            if policy == RepositoryDeletionPolicy::Retain {
                continue;
            }
            let shared = others.iter().any(|o| {
                o.spec
                    .sessions
                    .iter()
                    .any(|os| os.repositories.iter().any(|or| or.name == r.name))
            });
            if shared {
                ctl.events
                    .publish(
                        bc,
                        false,
                        "RepositoryKept",
                        "Delete",
                        format!(
                            "Repository {ns}/{} is used by another BackupConfiguration: kept",
                            r.name
                        ),
                    )
                    .await;
                continue;
            }
            if policy == RepositoryDeletionPolicy::WipeOut {
                let patch = serde_json::json!({"spec": {"deletionPolicy": "WipeOut"}});
                match rapi
                    .patch(
                        &r.name,
                        &PatchParams::apply(control::FIELD_MANAGER),
                        &Patch::Merge(&patch),
                    )
                    .await
                {
                    Ok(_) => {}
                    Err(e) if control::is_code(&e, 404) => continue,
                    Err(e) => {
                        return Err(kube_err(format!(
                            "setting WipeOut on Repository {ns}/{}",
                            r.name
                        ))(e))
                    }
                }
            }
            match rapi.delete(&r.name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if control::is_code(&e, 404) => {}
                Err(e) => return Err(kube_err(format!("deleting Repository {ns}/{}", r.name))(e)),
            }
        }
    }
    Ok(Action::await_change())
}
