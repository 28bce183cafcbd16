//! The BackupSession executor (spec §4, §5, §6; docs/executor.md).
//!
//! Watches BackupSessions and dispatches on the pure step of
//! [`kstash_rules::backup_session::step::next_step`], computed from the fresh object and what
//! was observed (its invoker, the other sessions, the sessions whose task runs here):
//!
//! - `Skip` / `WaitForInvoker` / `Idle` / `Requeue`: admission (spec §4 step 1) and waiting;
//! - `Start` (`start.rs`): claims the session in the shared live map
//!   ([`crate::task::runner::Live`]) and runs it in the order of spec §4 (`run.rs`): deadline
//!   → one Snapshot per repository (`snapshots.rs`) → executor (Addon task → Function →
//!   digest-pinned WASM module; target connection from the AppBinding: `prepare.rs`) → the task
//!   streams into each repository's components through the shared runner (`run_task.rs`) →
//!   Snapshot status and its YAML copy in the bucket → retention (`retention.rs`) → session
//!   history → `MetricsPushed` → phase (`history.rs`);
//! - `RecoverOrphan` (`recover.rs`): a session found `Running` with no live task in this
//!   executor (the engine restarted) is driven to `Failed` by `recover_orphan`;
//! - `CreateRetry` (`retry.rs`): a failed session with `retryLeft` gets its retry when due.
//!
//! Every decision comes from `kstash_rules::backup_session`; this module does the I/O.

mod history;
mod prepare;
mod recover;
mod retention;
mod retry;
mod run;
mod run_task;
mod snapshots;
mod start;

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kstash_api::constants::FINALIZER_CLEANUP;
use kstash_api::core::{BackupConfiguration, BackupSession, Session};
use kstash_api::storage::{Repository, Snapshot};
use kstash_repo::resolve::ResolvedRepository;
use kstash_repo::RepositoryDir;
use kstash_rules::backup_session as bsx;
use kstash_rules::backup_session::step::{self, Step};
use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as FinalizerEvent};
use kube::Api;

use crate::execute::error::not_found_none;
use crate::execute::events::Events;
use crate::execute::{patch_status, Error};
use crate::task::claim::Holder;
use crate::task::module;
use crate::task::runner::Live;
use crate::task::target;
use crate::Context;

/// Condition type of the live progress on a running Snapshot (removed when it finishes).
pub const TYPE_BACKUP_PROGRESS: &str = "BackupProgress";
/// Default `interimDataDir`: where the dump's files live inside the restic snapshot.
pub const DEFAULT_INTERIM_DIR: &str = "/kubestash-interim/data";
/// How often live progress is patched (one interval for backup and restore).
pub use crate::task::runner::PROGRESS_INTERVAL;

/// How soon a session is looked at again after this executor acted on it.
const AFTER_ACTION: Duration = Duration::from_secs(1);

/// The executor's state: sessions running in this process.
pub struct Executor {
    ctx: Arc<Context>,
    events: Events,
    /// The sessions whose task runs in this executor, by uid and by [`session_key`].
    live: Live,
}

impl Executor {
    /// This replica may start one more session (always, without claims).
    fn room_here(&self) -> bool {
        match &self.ctx.claims {
            Some(c) => self.live.len() < c.config().max_sessions,
            None => true,
        }
    }
}

/// Runs this controller until its watch ends.
pub async fn run(ctx: Arc<Context>) {
    let api: Api<BackupSession> = ctx.scoped_api();
    let exec = Arc::new(Executor {
        events: Events::new(ctx.client.clone(), &ctx.config.identity),
        ctx,
        live: Live::default(),
    });
    let ctx = exec.ctx.clone();
    crate::execute::run_until_drained(&ctx, api, reconcile, error_policy, exec, "backup session")
        .await;
}

fn error_policy(bs: Arc<BackupSession>, err: &Error, _: Arc<Executor>) -> Action {
    tracing::warn!(
        session = bs.metadata.name.as_deref().unwrap_or(""),
        "backup session: {err}"
    );
    Action::requeue(Duration::from_secs(5))
}

/// The overlap key of `bs`: `namespace/invoker kind/invoker name/session`.
fn session_key(bs: &BackupSession) -> String {
    let inv = bs.spec.invoker.as_ref();
    format!(
        "{}/{}/{}/{}",
        bs.metadata.namespace.as_deref().unwrap_or(""),
        inv.map(|i| i.kind.as_str()).unwrap_or(""),
        inv.map(|i| i.name.as_str()).unwrap_or(""),
        bs.spec.session.as_deref().unwrap_or("")
    )
}

async fn reconcile(obj: Arc<BackupSession>, exec: Arc<Executor>) -> Result<Action, Error> {
    let ns = obj.metadata.namespace.clone().unwrap_or_default();
    let name = obj.metadata.name.clone().unwrap_or_default();
    let api: Api<BackupSession> = Api::namespaced(exec.ctx.client.clone(), &ns);
    // Always act on the fresh object, never on a possibly stale cache entry.
    let Some(bs) = not_found_none(api.get(&name).await)
        .map_err(|e| Error::kube(format!("reading BackupSession {ns}/{name}"), e))?
    else {
        return Ok(Action::await_change());
    };
    // kube's helper owns `kubestash.com/cleanup` (other controllers' finalizers stay): a
    // session holds no data of its own, so its cleanup has nothing to release.
    finalizer(&api, FINALIZER_CLEANUP, Arc::new(bs), |ev| async {
        match ev {
            FinalizerEvent::Apply(bs) => Reconcile::new(&exec, &bs).apply().await,
            FinalizerEvent::Cleanup(_) => Ok(Action::await_change()),
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

fn now() -> Timestamp {
    Timestamp::now()
}

fn start_time(bs: &BackupSession) -> Timestamp {
    bs.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or_else(now)
}

/// One BackupSession being reconciled: the fresh object and where it lives.
struct Reconcile<'a> {
    exec: &'a Executor,
    client: kube::Client,
    bs: &'a BackupSession,
    api: Api<BackupSession>,
    ns: String,
    name: String,
}

impl<'a> Reconcile<'a> {
    fn new(exec: &'a Executor, bs: &'a BackupSession) -> Self {
        let client = exec.ctx.client.clone();
        let ns = bs.metadata.namespace.clone().unwrap_or_default();
        Reconcile {
            exec,
            api: Api::namespaced(client.clone(), &ns),
            client,
            bs,
            ns,
            name: bs.metadata.name.clone().unwrap_or_default(),
        }
    }

    /// Observes, takes the next step of [`step::next_step`] and says when to look again.
    async fn apply(&self) -> Result<Action, Error> {
        let uid = self.bs.metadata.uid.clone().unwrap_or_default();
        let running_here = self.exec.live.contains(&uid);
        // The invoker and the other sessions matter only to a session not started yet.
        let (invoker, others) = if !running_here && step::admitting(self.bs) {
            (self.invoker().await?, self.sessions().await?)
        } else {
            (None, Vec::new())
        };
        let key = session_key(self.bs);
        let holder = self.exec.live.holder(&key);
        let claimed = match running_here || holder.is_some() {
            true => None,
            false => self.claimed_elsewhere(&key).await?,
        };
        let observed = step::Observed {
            running_here,
            invoker: invoker.as_ref(),
            others: &others,
            running_here_same_session: holder.as_deref(),
            claimed_elsewhere: claimed.as_deref(),
            room_here: self.exec.room_here(),
            now: now(),
        };
        match step::next_step(self.bs, &observed) {
            Step::Idle => Ok(Action::await_change()),
            Step::Requeue(after) => Ok(Action::requeue(after)),
            Step::WaitForInvoker => Ok(Action::requeue(step::INVOKER_RECHECK)),
            Step::Skip(msg) => {
                self.skip(msg).await?;
                Ok(Action::requeue(AFTER_ACTION))
            }
            Step::Start => {
                let bc = invoker.expect("next_step starts a session only with a Ready invoker");
                self.start(&uid, &bc).await?;
                Ok(Action::requeue(AFTER_ACTION))
            }
            Step::RecoverOrphan => {
                self.recover().await?;
                Ok(Action::requeue(AFTER_ACTION))
            }
            Step::CreateRetry => self.create_due_retry().await,
        }
    }

    /// With claims, the session holding the live claim of `key` in another replica (`None`:
    /// unclaimed, expired, a terminal session, or a single replica).
    async fn claimed_elsewhere(&self, key: &str) -> Result<Option<String>, Error> {
        let Some(claims) = &self.exec.ctx.claims else {
            return Ok(None);
        };
        if !step::admitting(self.bs) && !step::running(self.bs) {
            return Ok(None);
        }
        Ok(match claims.holder(key).await? {
            Holder::Held { session, identity } if identity != claims.config().identity => Some(
                session
                    .rsplit_once('/')
                    .map(|(_, n)| n.to_string())
                    .unwrap_or(session),
            ),
            // Free, or a Lease this replica's identity wrote in an earlier life (no task of
            // the key runs here now): it is this replica's to take over.
            _ => None,
        })
    }

    /// [`Step::Skip`]: phase `Skipped` (`BackupSkipped=True`) with `msg`, and an Event.
    async fn skip(&self, msg: String) -> Result<(), Error> {
        let mut status = self.bs.status.clone().unwrap_or_default();
        bsx::skip(&mut status, &msg, now());
        patch_status(&self.api, &self.name, &status).await?;
        self.exec
            .events
            .publish(self.bs, false, "BackupSkipped", "Skip", msg)
            .await;
        Ok(())
    }

    /// The BackupConfiguration invoking the session (`None` when it does not exist or the
    /// invoker is not a BackupConfiguration).
    async fn invoker(&self) -> Result<Option<BackupConfiguration>, Error> {
        let Some(inv) = self.bs.spec.invoker.as_ref() else {
            return Ok(None);
        };
        if inv.kind != "BackupConfiguration" {
            return Ok(None);
        }
        let api: Api<BackupConfiguration> = Api::namespaced(self.client.clone(), &self.ns);
        not_found_none(api.get(&inv.name).await).map_err(|e| {
            Error::kube(
                format!("reading BackupConfiguration {}/{}", self.ns, inv.name),
                e,
            )
        })
    }

    /// The BackupSessions of the namespace.
    async fn sessions(&self) -> Result<Vec<BackupSession>, Error> {
        Ok(self
            .api
            .list(&ListParams::default())
            .await
            .map_err(|e| Error::kube(format!("listing BackupSessions in {}", self.ns), e))?
            .items)
    }
}

/// Repository `repo_name` of namespace `ns`, resolved with the encryption Secret that session
/// `sess` names for it (retention, and unlocking a dead holder's locks).
async fn session_repository(
    client: &kube::Client,
    ns: &str,
    sess: &Session,
    repo_name: &str,
) -> Result<ResolvedRepository, Error> {
    let repo_api: Api<Repository> = Api::namespaced(client.clone(), ns);
    let what = format!("Repository {ns}/{repo_name}");
    let repo = not_found_none(repo_api.get(repo_name).await)
        .map_err(|e| Error::kube(format!("reading {what}"), e))?
        .ok_or(Error::NotFound(what))?;
    let enc = sess
        .repositories
        .iter()
        .find(|r| r.name == repo_name)
        .and_then(|i| i.encryption_secret.as_ref());
    let field = format!("Repository {ns}/{repo_name} (spec.encryptionSecret)");
    crate::execute::backend::resolve_repository(client, &repo, enc, ns, &field).await
}

/// What taking a session's claim gave.
enum Claimed {
    /// No claims: this process is the only executor.
    Alone,
    /// This replica holds the claim.
    Held(Box<crate::task::claim::SessionClaim>),
    /// Another replica holds it, or the session moved on meanwhile: leave it.
    Elsewhere,
}

impl Claimed {
    fn lease(&self) -> Option<&crate::task::claim::SessionClaim> {
        match self {
            Claimed::Held(c) => Some(c),
            _ => None,
        }
    }

    /// Releases the claim, if held.
    async fn release(self) {
        if let Claimed::Held(c) = self {
            c.release().await;
        }
    }
}

impl Reconcile<'_> {
    /// With claims, takes this session's claim (`lost` is cancelled if it is lost later) and
    /// reads the session again: it must still pass `still` (another replica may have moved it
    /// on between our read and our claim).
    async fn take_claim(
        &self,
        still: fn(&BackupSession) -> bool,
        lost: tokio_util::sync::CancellationToken,
    ) -> Result<Claimed, Error> {
        let Some(claims) = &self.exec.ctx.claims else {
            return Ok(Claimed::Alone);
        };
        let session = format!("{}/{}", self.ns, self.name);
        let key = session_key(self.bs);
        let Some(c) = claims
            .acquire(&key, "BackupSession", &session, lost)
            .await?
        else {
            return Ok(Claimed::Elsewhere);
        };
        if !self.still(still).await? {
            c.release().await;
            return Ok(Claimed::Elsewhere);
        }
        Ok(Claimed::Held(Box::new(c)))
    }
}

/// The session `bs` runs in `bc` (`spec.sessions[]` by name).
fn session_of<'b>(bc: &'b BackupConfiguration, bs: &BackupSession) -> Option<&'b Session> {
    bc.spec
        .sessions
        .iter()
        .find(|s| Some(&s.config.name) == bs.spec.session.as_ref())
}

/// One repository of the session, resolved.
struct RepoTarget {
    info_backend: Option<String>,
    repo: Repository,
    resolved: ResolvedRepository,
    dir: RepositoryDir,
    snapshot: Snapshot,
}

/// A task ready to run.
struct PreparedTask {
    loaded: module::LoadedTask,
    task: String,
    params: Vec<(String, String)>,
    conn: target::Connection,
    /// The snapshot components the task produces (the addon's `tasks.components`).
    components: Vec<String>,
    interim: String,
    timeout: Option<Duration>,
    /// The task's limits (its Function's, under the operator's caps).
    limits: kstash_runtime::Limits,
}

/// The backup of one admitted session ([`Step::Start`]).
struct Run<'a> {
    exec: &'a Executor,
    client: kube::Client,
    bs: &'a BackupSession,
    bc: &'a BackupConfiguration,
    api: Api<BackupSession>,
    ns: String,
    name: String,
    /// Cancelled when this replica loses the session's claim (with claims only).
    claim_lost: Option<tokio_util::sync::CancellationToken>,
    /// The process (host, pid) whose expired claim this run took over: its locks are removed
    /// from the repositories before the backup opens them.
    dead_holder: Option<(String, i64)>,
}

impl Run<'_> {
    fn session_config(&self) -> Option<&Session> {
        session_of(self.bc, self.bs)
    }

    fn bc_name(&self) -> String {
        format!(
            "BackupConfiguration {}/{}",
            self.ns,
            self.bc.metadata.name.as_deref().unwrap_or("")
        )
    }
}
