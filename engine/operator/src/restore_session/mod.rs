//! The RestoreSession executor (spec §1.5, §8; docs/executor.md).
//!
//! Watches RestoreSessions and dispatches on the pure step of
//! [`kstash_rules::restore_session::step::next_step`]: a terminal restore (or one whose task
//! runs here) is left alone; a `Running` restore with no live task here (engine restart) is
//! driven to Failed and its paused backups are resumed; one not started yet is observed and
//! planned by `restore_session::plan` (validation, the Snapshot `latest` or by name,
//! dependencies, the target, the BackupConfigurations of the target to pause), whose
//! [`Next`] says what to do: mark it Invalid, wait, fail, or run. Running pauses those
//! configurations, runs the Addon's restore task per component through the shared task runner
//! ([`crate::task::runner`], see `run.rs`), then resumes them and finishes (`MetricsPushed`,
//! phase by the calculator).

mod pause;
mod run;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kstash_api::core::{BackupConfiguration, RestorePhase, RestoreSession, RestoreSessionStatus};
use kstash_api::shared::TypedObjectReference;
use kstash_api::storage::Snapshot;
use kstash_rules::restore_session::step::{self, Step};
use kstash_rules::restore_session::{self as rsx, Next, ResolvedSnapshot};
use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::Api;

use crate::execute::error::not_found_none;
use crate::execute::events::Events;
use crate::execute::{annotate, patch_status, Error};
use crate::task::claim::{Holder, SessionClaim};
use crate::task::runner::Live;
use crate::Context;
use kstash_api::constants::annotations;
use tokio_util::sync::CancellationToken;

use pause::{resume, set_paused};

struct Executor {
    ctx: Arc<Context>,
    events: Events,
    /// The restores whose task runs in this executor.
    live: Live,
}

/// Runs this controller until its watch ends.
pub async fn run(ctx: Arc<Context>) {
    let api: Api<RestoreSession> = ctx.scoped_api();
    let exec = Arc::new(Executor {
        events: Events::new(ctx.client.clone(), &ctx.config.identity),
        ctx,
        live: Live::default(),
    });
    let ctx = exec.ctx.clone();
    crate::execute::run_until_drained(&ctx, api, reconcile, error_policy, exec, "restore session")
        .await;
}

fn error_policy(rs: Arc<RestoreSession>, err: &Error, _: Arc<Executor>) -> Action {
    tracing::warn!(
        restore = rs.metadata.name.as_deref().unwrap_or(""),
        "restore session: {err}"
    );
    Action::requeue(Duration::from_secs(5))
}

fn now() -> Timestamp {
    Timestamp::now()
}

/// One restore being reconciled: the fresh object and where it lives.
struct Reconcile<'a> {
    exec: &'a Executor,
    client: kube::Client,
    rs: &'a RestoreSession,
    api: Api<RestoreSession>,
    ns: String,
    name: String,
    start: Timestamp,
}

async fn reconcile(obj: Arc<RestoreSession>, exec: Arc<Executor>) -> Result<Action, Error> {
    let ns = obj.metadata.namespace.clone().unwrap_or_default();
    let name = obj.metadata.name.clone().unwrap_or_default();
    let client = exec.ctx.client.clone();
    let api: Api<RestoreSession> = Api::namespaced(client.clone(), &ns);
    // Always act on the fresh object, never on a possibly stale cache entry.
    let Some(rs) = not_found_none(api.get(&name).await)
        .map_err(|e| Error::kube(format!("reading RestoreSession {ns}/{name}"), e))?
    else {
        return Ok(Action::await_change());
    };
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    let start = rs
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or_else(now);
    let r = Reconcile {
        exec: &exec,
        client,
        rs: &rs,
        api,
        ns,
        name,
        start,
    };
    let running_here = exec.live.contains(&uid);
    let claimed_elsewhere = !running_here && r.claimed_elsewhere().await?;
    match step::next_step(&rs, running_here, claimed_elsewhere) {
        Step::Idle => Ok(Action::await_change()),
        Step::ClaimedElsewhere => Ok(Action::requeue(step::CLAIM_RECHECK)),
        Step::RecoverOrphan => {
            let _live = exec.live.enter(&uid);
            let Some(claim) = r.claim(RestorePhase::Running).await? else {
                return Ok(Action::requeue(step::CLAIM_RECHECK));
            };
            let done = r.recover().await;
            claim.release().await;
            done
        }
        Step::Plan if !exec.room_here() => Ok(Action::requeue(BUSY_RECHECK)),
        Step::Plan => {
            let _live = exec.live.enter(&uid);
            let Some(claim) = r.claim(RestorePhase::Pending).await? else {
                return Ok(Action::requeue(step::CLAIM_RECHECK));
            };
            let identity = &exec.ctx.config.identity;
            annotate(&r.api, &r.name, annotations::EXECUTED_BY, identity).await?;
            // A lost claim stops the restore where it is, as a crash would; the replica that
            // takes the claim over ends it.
            let done = match claim.lost() {
                None => r.plan(None).await,
                Some(lost) => tokio::select! {
                    d = r.plan(Some(lost.clone())) => d,
                    _ = lost.cancelled() => {
                        tracing::warn!(restore = %r.name, "the restore's claim was lost: the restore stopped; the replica taking the claim over ends it");
                        Ok(Action::requeue(step::CLAIM_RECHECK))
                    }
                },
            };
            claim.release().await;
            done
        }
    }
}

/// How often a restore waits for room when this replica runs as many as it may.
const BUSY_RECHECK: Duration = Duration::from_secs(3);

impl Executor {
    /// This replica may start one more restore (always, without claims).
    fn room_here(&self) -> bool {
        match &self.ctx.claims {
            Some(c) => self.live.len() < c.config().max_sessions,
            None => true,
        }
    }
}

/// A restore's claim: its Lease with several replicas, nothing with one.
struct RestoreClaim {
    lease: Option<SessionClaim>,
    lost: CancellationToken,
}

impl RestoreClaim {
    /// Cancelled when the claim is lost (`None` without claims).
    fn lost(&self) -> Option<CancellationToken> {
        self.lease.as_ref().map(|_| self.lost.clone())
    }

    async fn release(self) {
        if let Some(l) = self.lease {
            l.release().await;
        }
    }
}

impl Reconcile<'_> {
    fn claim_key(&self) -> String {
        format!("RestoreSession/{}/{}", self.ns, self.name)
    }

    /// With claims: another replica holds this restore's live claim.
    async fn claimed_elsewhere(&self) -> Result<bool, Error> {
        let Some(claims) = &self.exec.ctx.claims else {
            return Ok(false);
        };
        if matches!(
            self.rs.status.as_ref().and_then(|s| s.phase),
            Some(
                RestorePhase::Succeeded
                    | RestorePhase::Failed
                    | RestorePhase::Invalid
                    | RestorePhase::Unknown
            )
        ) {
            return Ok(false);
        }
        Ok(match claims.holder(&self.claim_key()).await? {
            Holder::Held { identity, .. } => identity != claims.config().identity,
            Holder::Free { .. } => false,
        })
    }

    /// Takes the restore's claim (with claims) and checks that it is still in `phase` (`Pending`
    /// stands for not started: no phase or `Pending`). `None`: another replica has it, or it
    /// moved on.
    async fn claim(&self, phase: RestorePhase) -> Result<Option<RestoreClaim>, Error> {
        let lost = CancellationToken::new();
        let Some(claims) = &self.exec.ctx.claims else {
            return Ok(Some(RestoreClaim { lease: None, lost }));
        };
        let session = format!("{}/{}", self.ns, self.name);
        let Some(lease) = claims
            .acquire(&self.claim_key(), "RestoreSession", &session, lost.clone())
            .await?
        else {
            return Ok(None);
        };
        let fresh = not_found_none(self.api.get(&self.name).await)
            .map_err(|e| Error::kube(format!("reading RestoreSession {session}"), e))?;
        let now_phase = fresh
            .as_ref()
            .and_then(|r| r.status.as_ref())
            .and_then(|s| s.phase);
        let same = match phase {
            RestorePhase::Pending => matches!(now_phase, None | Some(RestorePhase::Pending)),
            p => now_phase == Some(p),
        };
        if fresh.is_none() || !same {
            lease.release().await;
            return Ok(None);
        }
        Ok(Some(RestoreClaim {
            lease: Some(lease),
            lost,
        }))
    }
}

impl Reconcile<'_> {
    /// [`Step::RecoverOrphan`]: Failed, what it paused resumed, an Event.
    async fn recover(&self) -> Result<Action, Error> {
        let mut status = self.rs.status.clone().unwrap_or_default();
        let paused = rsx::recover_orphan(&mut status, &Ok(()), self.start, now());
        resume(&self.client, &paused, &self.ns).await;
        patch_status(&self.api, &self.name, &status).await?;
        self.exec
            .events
            .publish(
                self.rs,
                true,
                "RestoreSessionFailed",
                "Recover",
                "The restore executor terminated before completion (engine restarted or executor lost).",
            )
            .await;
        Ok(Action::await_change())
    }

    /// [`Step::Plan`]: observes, plans and dispatches on the plan's [`Next`]; the task stops
    /// when `claim_lost` is cancelled.
    async fn plan(&self, claim_lost: Option<CancellationToken>) -> Result<Action, Error> {
        let observed = self.observe().await?;
        let plan = rsx::plan(self.rs, &observed.view(self.start))?;
        let mut status = plan.status;
        match plan.next {
            Next::Invalid => self.invalid(&status).await,
            Next::Wait(msg) => self.wait(&status, &msg).await,
            Next::Fail(msg) => self.fail(&mut status, msg).await,
            Next::Run {
                snapshot,
                components,
                pause,
            } => {
                self.run(status, &snapshot, &components, &pause, claim_lost)
                    .await
            }
        }
    }

    /// What [`rsx::plan`] reads: the Snapshots of the data source, the Addons, every
    /// BackupConfiguration, whether the target exists, and the admission lookup.
    async fn observe(&self) -> Result<Observed, Error> {
        let ds_ns = self
            .rs
            .spec
            .data_source
            .as_ref()
            .and_then(|d| d.namespace.clone())
            .unwrap_or_else(|| self.ns.clone());
        let snapshots = Api::<Snapshot>::namespaced(self.client.clone(), &ds_ns)
            .list(&ListParams::default())
            .await
            .map_err(|e| Error::kube(format!("listing Snapshots in {ds_ns}"), e))?
            .items;
        let addons = Api::<kstash_api::addons::Addon>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| Error::kube("listing Addons", e))?
            .items
            .into_iter()
            .filter_map(|a| a.metadata.name)
            .collect();
        let backup_configurations = Api::<BackupConfiguration>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| Error::kube("listing BackupConfigurations", e))?
            .items;
        let target_found = match self.rs.spec.target.as_ref() {
            Some(t) => target_exists(&self.client, t, &self.ns).await,
            None => Some(false),
        };
        let lookup = crate::control::admission_lookup(&self.exec.ctx).await?;
        Ok(Observed {
            lookup,
            target_found,
            snapshots,
            addons,
            backup_configurations,
        })
    }

    /// [`Next::Invalid`]: phase `Invalid` and an Event.
    async fn invalid(&self, status: &RestoreSessionStatus) -> Result<Action, Error> {
        patch_status(&self.api, &self.name, status).await?;
        self.exec
            .events
            .publish(
                self.rs,
                true,
                "RestoreSessionInvalid",
                "Validate",
                "RestoreSession failed validation",
            )
            .await;
        Ok(Action::await_change())
    }

    /// [`Next::Wait`]: the status so far, and a look again in 5 s.
    async fn wait(&self, status: &RestoreSessionStatus, msg: &str) -> Result<Action, Error> {
        patch_status(&self.api, &self.name, status).await?;
        tracing::info!(restore = %self.name, "waiting: {msg}");
        Ok(Action::requeue(Duration::from_secs(5)))
    }

    /// [`Next::Fail`]: Failed with `msg`, what it paused resumed, an Event.
    async fn fail(&self, status: &mut RestoreSessionStatus, msg: String) -> Result<Action, Error> {
        let paused = rsx::fail(status, &msg, &Ok(()), self.start, now());
        resume(&self.client, &paused, &self.ns).await;
        patch_status(&self.api, &self.name, &*status).await?;
        self.exec
            .events
            .publish(self.rs, true, "RestoreSessionFailed", "Restore", msg)
            .await;
        Ok(Action::await_change())
    }

    /// [`Next::Run`]: pauses the target's backups, restores every component, resumes them,
    /// finishes, and publishes the outcome.
    async fn run(
        &self,
        mut status: RestoreSessionStatus,
        snapshot: &ResolvedSnapshot,
        components: &[String],
        pause: &[TypedObjectReference],
        claim_lost: Option<CancellationToken>,
    ) -> Result<Action, Error> {
        for p in pause {
            if let Err(e) = set_paused(&self.client, p, &self.ns, true).await {
                let paused = rsx::fail(&mut status, &e.to_string(), &Ok(()), self.start, now());
                resume(&self.client, &paused, &self.ns).await;
                patch_status(&self.api, &self.name, &status).await?;
                return Ok(Action::await_change());
            }
        }
        patch_status(&self.api, &self.name, &status).await?;
        let result = run::Restore::new(self, claim_lost)
            .restore(&mut status, snapshot, components)
            .await;
        let paused = match result {
            Ok(()) => rsx::finish(&mut status, &Ok(()), self.start, now()),
            Err(e) => rsx::fail(&mut status, &e.to_string(), &Ok(()), self.start, now()),
        };
        resume(&self.client, &paused, &self.ns).await;
        patch_status(&self.api, &self.name, &status).await?;
        self.publish_outcome(&status).await;
        Ok(Action::await_change())
    }

    async fn publish_outcome(&self, status: &RestoreSessionStatus) {
        let ok = status.phase == Some(RestorePhase::Succeeded);
        let reason = if ok {
            "RestoreSessionSucceeded"
        } else {
            "RestoreSessionFailed"
        };
        let msg = format!(
            "RestoreSession {:?} after {}",
            status.phase.unwrap_or(RestorePhase::Unknown),
            status.duration.as_deref().unwrap_or("")
        );
        self.exec
            .events
            .publish(self.rs, !ok, reason, "Restore", msg)
            .await;
    }
}

/// The objects [`Reconcile::observe`] read, owned ([`Observed::view`] lends them to the plan).
struct Observed {
    lookup: kstash_api::admission::Lookup,
    target_found: Option<bool>,
    snapshots: Vec<Snapshot>,
    addons: BTreeSet<String>,
    backup_configurations: Vec<BackupConfiguration>,
}

impl Observed {
    fn view(&self, start: Timestamp) -> rsx::Observed<'_> {
        rsx::Observed {
            lookup: &self.lookup,
            target_found: self.target_found,
            snapshots: &self.snapshots,
            addons: &self.addons,
            backup_configurations: &self.backup_configurations,
            start,
            now: now(),
        }
    }
}

/// Whether `target` exists, any kind through API discovery (`None`: the check failed; a kind
/// the server does not serve counts as not found).
async fn target_exists(client: &kube::Client, t: &TypedObjectReference, ns: &str) -> Option<bool> {
    let tns = t
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(ns);
    crate::kinds::get(
        client,
        t.api_group.as_deref().unwrap_or(""),
        t.kind.as_deref().unwrap_or(""),
        tns,
        &t.name,
    )
    .await
    .ok()
    .map(|o| o.is_some())
}
