//! BackupConfiguration (spec §3, §4): defaulting and admission rules (`ValidationPassed`),
//! target, backends, dependencies, the Repositories, the scheduler and the initial backup,
//! phase; deletion (finalizer `kubestash.com/cleanup`) applies `repositories[].deletionPolicy`.
//!
//! The decision is `kstash_rules::backup_configuration::plan`; this reconciler observes (from
//! the stores, plus a GET of the target), calls it and performs the writes. The scheduler is
//! the requeue: a Ready configuration is reconciled again at its earliest `nextSchedule` (plus
//! one second), and `schedule::decide` coalesces whatever was missed while the operator was
//! down.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kstash_api::addons::Addon;
use kstash_api::admission::{self, AdmissionError, Lookup};
use kstash_api::constants::{conditions as c, FINALIZER_CLEANUP};
use kstash_api::core::{
    BackupConfiguration, BackupInvokerPhase, BackupSession, RepositoryDeletionPolicy,
};
use kstash_api::shared::TypedObjectReference;
use kstash_api::storage::{BackupStorage, BackupStoragePhase, Repository};
use kstash_api::tenancy;
use kstash_rules::backup_configuration::{
    mark_initial_backup_failed, plan, BackendObservation, Observed, Plan, RepositoryChange,
};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::ResourceExt;

use super::admission::AdmissionStores;
use crate::execute::backend;
use crate::shell::{self, describe, status, Error, ErrorKind, Reconciler, Result, Shell, StoreSet};

/// Poll interval while a configuration is not Ready (waiting for storage, target, Addon).
const NOT_READY_RETRY: Duration = Duration::from_secs(5);
/// Longest sleep of the scheduler (a safety net; the next schedule normally comes first).
const MAX_SLEEP: Duration = Duration::from_secs(300);

/// The BackupConfiguration controller.
pub struct BackupConfigurations {
    admission: AdmissionStores,
    addons: Store<Addon>,
    sessions: Store<BackupSession>,
    configurations: Store<BackupConfiguration>,
}

impl BackupConfigurations {
    /// Reads the admission objects, Addons, BackupSessions and BackupConfigurations from
    /// `stores`.
    pub fn new(ctx: &crate::Context, stores: &mut StoreSet) -> Self {
        BackupConfigurations {
            admission: AdmissionStores::new(ctx, stores),
            addons: stores.store(Api::all(ctx.client.clone())),
            sessions: stores.store(ctx.scoped_api()),
            configurations: stores.store(ctx.scoped_api()),
        }
    }
}

impl Reconciler for BackupConfigurations {
    type Object = BackupConfiguration;
    const NAME: &'static str = "backupconfiguration";
    const FINALIZER: Option<&'static str> = Some(FINALIZER_CLEANUP);

    fn watched(&self, cx: &Shell) -> Api<BackupConfiguration> {
        cx.ctx.scoped_api()
    }

    fn api_of(&self, cx: &Shell, obj: &BackupConfiguration) -> Api<BackupConfiguration> {
        shell::namespaced_api(cx, obj)
    }

    fn watches(
        &self,
        c: Controller<BackupConfiguration>,
        cx: &Shell,
    ) -> Controller<BackupConfiguration> {
        let (by_repo, by_storage) = (self.configurations.clone(), self.configurations.clone());
        // A Repository's phase is part of the status: reconcile the BCs that list it.
        c.watches(
            cx.ctx.scoped_api::<Repository>(),
            watcher::Config::default(),
            move |r| {
                let ns = r.namespace();
                by_repo
                    .state_filter(|bc| {
                        bc.namespace() == ns
                            && bc
                                .spec
                                .sessions
                                .iter()
                                .any(|s| s.repositories.iter().any(|x| x.name == r.name_any()))
                    })
                    .iter()
                    .map(|bc| ObjectRef::from_obj(bc.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        // So is each backend's BackupStorage phase.
        .watches(
            cx.ctx.scoped_api::<BackupStorage>(),
            watcher::Config::default(),
            move |st| {
                let (name, ns) = (st.name_any(), st.namespace().unwrap_or_default());
                by_storage
                    .state_filter(|bc| {
                        let bns = bc.namespace().unwrap_or_default();
                        bc.spec.backends.iter().any(|b| {
                            b.storage_ref
                                .as_ref()
                                .is_some_and(|r| r.name == name && r.namespace_or(&bns) == ns)
                        })
                    })
                    .iter()
                    .map(|bc| ObjectRef::from_obj(bc.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
    }

    async fn apply(&self, bc: Arc<BackupConfiguration>, cx: &Shell) -> Result<Action> {
        let lookup = self.admission.lookup();
        if default_backends(&bc, &lookup, cx).await? {
            return Ok(Action::requeue(Duration::from_millis(200)));
        }
        let ns = bc.namespace().unwrap_or_default();
        let target = match &bc.spec.target {
            Some(t) => target_annotations(cx, t, &ns).await.map_err(|e| {
                Error::api(describe(bc.as_ref()), "reading the target (spec.target)", e)
            })?,
            None => None,
        };
        let mut secrets = tenancy::ForeignSecrets::new();
        for (sns, sname) in tenancy::foreign_secrets(&bc) {
            let found = backend::secret_annotations(cx.client(), &sns, &sname)
                .await
                .map_err(|e| {
                    Error::api(
                        describe(bc.as_ref()),
                        format!("reading Secret {sns}/{sname}"),
                        e,
                    )
                })?;
            if let Some(a) = found {
                secrets.insert((sns, sname), a);
            }
        }
        let validation = admission::validate_backup_configuration(&bc, &lookup)
            .and_then(|()| admission::kstash_limits(&bc))
            .and_then(|()| tenancy::backup_configuration(&bc, target.as_ref(), &secrets))
            .err();
        let now = Timestamp::now();
        let mut plan = self
            .plan(&bc, target.is_some(), &lookup, validation.as_ref(), now)
            .await?;
        write_repositories(&bc, cx, &plan).await?;
        create_sessions(&bc, cx, &mut plan, now).await?;
        report(&bc, cx, &plan, validation.as_ref()).await?;
        Ok(next_wake(&plan, now))
    }

    /// Deletion: BackupSessions are owned (garbage collected). Each repository follows its
    /// `deletionPolicy`: `Delete` deletes the Repository CR (data kept), `WipeOut` switches the
    /// Repository to `WipeOut` and deletes it (data deleted by the Repository controller),
    /// `Retain` and **unset** keep it (the safe default: KubeStash's is undocumented). A
    /// Repository another BackupConfiguration still uses is always kept.
    async fn cleanup(&self, bc: Arc<BackupConfiguration>, cx: &Shell) -> Result<Action> {
        let (ns, name) = (bc.namespace(), bc.name_any());
        let others = self
            .configurations
            .state_filter(|o| o.namespace() == ns && o.name_any() != name);
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
                    cx.events
                        .normal(
                            bc.as_ref(),
                            "RepositoryKept",
                            "Delete",
                            format!(
                                "Repository {}/{} is used by another BackupConfiguration: kept",
                                ns.as_deref().unwrap_or_default(),
                                r.name
                            ),
                        )
                        .await;
                    continue;
                }
                delete_repository(&bc, cx, &r.name, policy).await?;
            }
        }
        Ok(Action::await_change())
    }
}

impl BackupConfigurations {
    /// Observes (stores and the target) and calls the pure plan.
    async fn plan(
        &self,
        bc: &BackupConfiguration,
        target_found: bool,
        lookup: &Lookup,
        validation: Option<&AdmissionError>,
        now: Timestamp,
    ) -> Result<Plan> {
        let ns = bc.namespace().unwrap_or_default();
        let backends = backend_observations(bc, lookup);
        let addons: BTreeSet<String> = self.addons.state().iter().map(|a| a.name_any()).collect();
        let repositories: Vec<Repository> = lookup
            .repositories
            .iter()
            .filter(|r| r.namespace().as_deref() == Some(ns.as_str()))
            .cloned()
            .collect();
        let name = bc.name_any();
        let sessions: Vec<BackupSession> = self
            .sessions
            .state_filter(|s| {
                s.namespace().as_deref() == Some(ns.as_str())
                    && s.spec
                        .invoker
                        .as_ref()
                        .is_some_and(|i| i.name == name && i.kind == "BackupConfiguration")
            })
            .iter()
            .map(|s| (**s).clone())
            .collect();
        let obs = Observed {
            validation_error: validation,
            target_found,
            backends: &backends,
            addons: &addons,
            repositories: &repositories,
            backup_sessions: &sessions,
            now,
        };
        plan(bc, &obs).map_err(|e| Error::message(ErrorKind::Invalid, describe(bc), e.to_string()))
    }
}

/// The mutating webhook: defaults BackupStorage / RetentionPolicy. `true` when it patched (the
/// change comes back through the watch).
async fn default_backends(bc: &BackupConfiguration, lookup: &Lookup, cx: &Shell) -> Result<bool> {
    let mut defaulted = bc.clone();
    admission::default_backup_configuration(&mut defaulted, lookup);
    if defaulted.spec.backends == bc.spec.backends {
        return Ok(false);
    }
    let patch = serde_json::json!({"spec": {"backends": defaulted.spec.backends}});
    shell::namespaced_api(cx, bc)
        .patch(
            &bc.name_any(),
            &PatchParams::apply(status::FIELD_MANAGER),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(|e| Error::api(describe(bc), "defaulting spec.backends", e))?;
    Ok(true)
}

/// The BackupStorage phase and RetentionPolicy presence of each backend.
fn backend_observations(
    bc: &BackupConfiguration,
    lookup: &Lookup,
) -> BTreeMap<String, BackendObservation> {
    let ns = bc.namespace().unwrap_or_default();
    bc.spec
        .backends
        .iter()
        .map(|b| {
            let storage_phase = b.storage_ref.as_ref().and_then(|r| {
                lookup
                    .backup_storages
                    .iter()
                    .find(|s| {
                        s.name_any() == r.name
                            && s.namespace().as_deref() == Some(r.namespace_or(&ns))
                    })
                    .map(|s| {
                        s.status
                            .as_ref()
                            .and_then(|st| st.phase)
                            .unwrap_or(BackupStoragePhase::NotReady)
                    })
            });
            let retention_policy_found = b.retention_policy.as_ref().is_some_and(|r| {
                lookup.retention_policies.iter().any(|p| {
                    p.name_any() == r.name && p.namespace().as_deref() == Some(r.namespace_or(&ns))
                })
            });
            (
                b.name.clone(),
                BackendObservation {
                    storage_phase,
                    retention_policy_found,
                },
            )
        })
        .collect()
}

/// The target object's annotations, `None` when it does not exist (any kind through API
/// discovery; a kind the server does not serve counts as not found).
pub async fn target_annotations(
    cx: &Shell,
    t: &TypedObjectReference,
    default_ns: &str,
) -> std::result::Result<Option<BTreeMap<String, String>>, kube::Error> {
    let ns = t
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(default_ns);
    Ok(crate::kinds::get(
        cx.client(),
        t.api_group.as_deref().unwrap_or(""),
        t.kind.as_deref().unwrap_or(""),
        ns,
        &t.name,
    )
    .await?
    .map(|o| o.metadata.annotations.unwrap_or_default()))
}

/// Creates or updates the Repositories of the plan.
async fn write_repositories(bc: &BackupConfiguration, cx: &Shell, plan: &Plan) -> Result<()> {
    let ns = bc.namespace().unwrap_or_default();
    let api: Api<Repository> = cx.api(&ns);
    for change in &plan.repositories {
        match change {
            RepositoryChange::Create(r) => match api.create(&PostParams::default(), r).await {
                Ok(_) => {
                    cx.events
                        .normal(
                            bc,
                            "RepositoryCreated",
                            "Create",
                            format!("Repository {ns}/{} created", r.name_any()),
                        )
                        .await
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => {
                    return Err(Error::api(
                        describe(bc),
                        format!("creating Repository {ns}/{}", r.name_any()),
                        e,
                    ))
                }
            },
            RepositoryChange::Update(r) => {
                let patch = serde_json::json!({"spec": {
                    "encryptionSecret": r.spec.encryption_secret,
                    "deletionPolicy": r.spec.deletion_policy}});
                api.patch(
                    &r.name_any(),
                    &PatchParams::apply(status::FIELD_MANAGER),
                    &Patch::Merge(&patch),
                )
                .await
                .map_err(|e| {
                    Error::api(
                        describe(bc),
                        format!("updating Repository {ns}/{}", r.name_any()),
                        e,
                    )
                })?;
            }
        }
    }
    Ok(())
}

/// Creates the BackupSessions of the plan (initial and scheduled); a failed initial backup is
/// recorded in the plan's status.
async fn create_sessions(
    bc: &BackupConfiguration,
    cx: &Shell,
    plan: &mut Plan,
    now: Timestamp,
) -> Result<()> {
    let ns = bc.namespace().unwrap_or_default();
    let api: Api<BackupSession> = cx.api(&ns);
    for s in plan.backup_sessions.clone() {
        let session = s.spec.session.clone().unwrap_or_default();
        match api.create(&PostParams::default(), &s).await {
            Ok(_) => {
                cx.events
                    .normal(
                        bc,
                        "BackupSessionCreated",
                        "Trigger",
                        format!(
                            "BackupSession {ns}/{} created for session {session}",
                            s.name_any()
                        ),
                    )
                    .await
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {}
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
                cx.events
                    .warning(bc, "BackupSessionCreationFailed", "Trigger", msg)
                    .await;
            }
        }
    }
    for s in &plan.schedules {
        if s.missed > 0 {
            cx.events
                .warning(bc, "MissedSchedule", "Schedule",
                    format!("session {}: {} scheduled run(s) got no BackupSession (coalesced, paused or past the starting deadline)", s.session, s.missed))
                .await;
        }
    }
    Ok(())
}

/// Writes the status; an Event when the phase changed.
async fn report(
    bc: &BackupConfiguration,
    cx: &Shell,
    plan: &Plan,
    validation: Option<&AdmissionError>,
) -> Result<()> {
    let prev = bc.status.as_ref().and_then(|s| s.phase);
    let api = shell::namespaced_api(cx, bc);
    status::update(&api, &bc.name_any(), bc.status.as_ref(), &plan.status).await?;
    if plan.status.phase != prev {
        let phase = plan
            .status
            .phase
            .map(|p| format!("{p:?}"))
            .unwrap_or_default();
        let invalid = plan.status.phase == Some(BackupInvokerPhase::Invalid);
        let note = match validation {
            Some(e) => format!("phase {phase}: {e}"),
            None => format!("phase {phase}"),
        };
        cx.events
            .publish(bc, invalid, &format!("Phase{phase}"), "Reconcile", note)
            .await;
    }
    Ok(())
}

/// The scheduler's next wake-up.
fn next_wake(plan: &Plan, now: Timestamp) -> Action {
    if plan.status.phase != Some(BackupInvokerPhase::Ready) {
        return Action::requeue(NOT_READY_RETRY);
    }
    let wait = plan
        .requeue_at
        .map(|at| {
            let secs = (at.as_second() - now.as_second()).max(0) as u64;
            Duration::from_secs(secs + 1)
        })
        .unwrap_or(MAX_SLEEP);
    Action::requeue(wait.min(MAX_SLEEP))
}

/// Deletes Repository `name` of `bc`'s namespace (switched to `WipeOut` first by that policy).
async fn delete_repository(
    bc: &BackupConfiguration,
    cx: &Shell,
    name: &str,
    policy: RepositoryDeletionPolicy,
) -> Result<()> {
    let ns = bc.namespace().unwrap_or_default();
    let api: Api<Repository> = cx.api(&ns);
    if policy == RepositoryDeletionPolicy::WipeOut {
        let patch = serde_json::json!({"spec": {"deletionPolicy": "WipeOut"}});
        match api
            .patch(
                name,
                &PatchParams::apply(status::FIELD_MANAGER),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
            Err(e) => {
                return Err(Error::api(
                    describe(bc),
                    format!("setting WipeOut on Repository {ns}/{name}"),
                    e,
                ))
            }
        }
    }
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(Error::api(
            describe(bc),
            format!("deleting Repository {ns}/{name}"),
            e,
        )),
    }
}
