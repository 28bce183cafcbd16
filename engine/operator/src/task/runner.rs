//! The one task runner of the BackupSession and RestoreSession executors (docs/executor.md):
//! [`start`] makes the addon call (`kstash_runtime::Addon::run`) and [`Running::next`] ticks
//! every [`PROGRESS_INTERVAL`] (the executor patches live progress) until the task ends, or
//! stops it when the operator's grace period runs out (`Lifecycle::abort`); [`Live`] is the map of the sessions whose task runs in this process
//! (one per uid, and one per overlap key), released by the [`Claim`] guard.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::{interval_at, Instant, Interval};

use kstash_runtime::{Addon, Limits, TaskError, TaskIo, TaskReport, TaskSpec};
use tokio_util::sync::CancellationToken;

use crate::execute::SHUTDOWN_ABORT;

/// How often live progress is patched (backup and restore).
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);

/// Why a task run ended without a report.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The addon failed.
    #[error(transparent)]
    Task(#[from] TaskError),
    /// The operator's shutdown grace period ran out first ([`SHUTDOWN_ABORT`]).
    #[error("{SHUTDOWN_ABORT}")]
    Aborted,
    /// This replica lost the session's claim ([`CLAIM_LOST`]).
    #[error("{CLAIM_LOST}")]
    ClaimLost,
}

/// Why a task stopped when this replica lost the session's claim (it could not renew its Lease
/// in time, or another replica took it over).
pub const CLAIM_LOST: &str = "this operator replica lost the session's claim (its Lease could \
     not be renewed in time or was taken over) and stopped the task; the repository was left as \
     it was before this session";

/// One addon call: the loaded module, the task and its parameters, the target and the I/O.
pub struct Call<'a> {
    /// The loaded module.
    pub addon: &'a Addon,
    /// The task's name.
    pub task: String,
    /// The task's parameters, in order.
    pub params: Vec<(String, String)>,
    /// The only endpoint the task may reach.
    pub target: kstash_runtime::Target,
    /// The task's limits ([`crate::task::limits::resolve`]).
    pub limits: Limits,
    /// The session's own time limit, when shorter than `limits.wall_clock` it wins.
    pub wall_clock: Option<Duration>,
    /// Output (backup) or input (restore) streams and the event sink.
    pub io: TaskIo,
}

/// A started addon call: [`Running::next`] says when to patch progress and when it ended.
pub struct Running<'a> {
    task: Pin<Box<dyn Future<Output = Result<TaskReport, TaskError>> + Send + 'a>>,
    tick: Interval,
    abort: CancellationToken,
    claim_lost: Option<CancellationToken>,
}

/// What a [`Running`] task did next.
#[derive(Debug)]
pub enum Event {
    /// [`PROGRESS_INTERVAL`] passed: time to patch the live progress.
    Tick,
    /// The task ended (or was aborted); it is over.
    Done(Result<TaskReport, RunError>),
}

/// Starts `call`, to be driven by [`Running::next`] until [`Event::Done`]; `abort` stops it
/// (the operator's shutdown grace period ran out). Dropping the [`Running`] drops the task's
/// I/O (and so its references to the streams).
/// With `claim_lost`, the task also stops when that token is cancelled (the session's claim was
/// lost: [`RunError::ClaimLost`]).
pub fn start<'a>(
    call: Call<'a>,
    abort: &CancellationToken,
    claim_lost: Option<&CancellationToken>,
) -> Running<'a> {
    let mut limits = call.limits;
    if let Some(d) = call.wall_clock {
        limits.wall_clock = limits.wall_clock.min(d);
    }
    let spec = TaskSpec {
        task: call.task,
        params: call.params,
        target: call.target,
        limits,
    };
    Running {
        task: Box::pin(call.addon.run(spec, call.io)),
        tick: interval_at(Instant::now() + PROGRESS_INTERVAL, PROGRESS_INTERVAL),
        abort: abort.clone(),
        claim_lost: claim_lost.cloned(),
    }
}

impl Running<'_> {
    /// Waits for the next tick or the end of the task.
    pub async fn next(&mut self) -> Event {
        tokio::select! {
            r = &mut self.task => Event::Done(r.map_err(RunError::from)),
            _ = self.abort.cancelled() => Event::Done(Err(RunError::Aborted)),
            _ = async {
                match &self.claim_lost {
                    Some(t) => t.cancelled().await,
                    None => std::future::pending().await,
                }
            } => Event::Done(Err(RunError::ClaimLost)),
            _ = self.tick.tick() => Event::Tick,
        }
    }
}

/// The sessions whose task runs in this process: their uids, and `overlap key → session name`
/// for the sessions that must not run twice at once (a BackupSession's invoker and session).
#[derive(Debug, Default)]
pub struct Live {
    uids: Mutex<HashSet<String>>,
    keys: Mutex<HashMap<String, String>>,
}

/// A claimed place in [`Live`]; dropping it releases the uid and the key.
#[derive(Debug)]
pub struct Claim<'a> {
    live: &'a Live,
    uid: String,
    key: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Live {
    /// Whether a task of the session with this uid runs here.
    pub fn contains(&self, uid: &str) -> bool {
        lock(&self.uids).contains(uid)
    }

    /// How many sessions run here.
    pub fn len(&self) -> usize {
        lock(&self.uids).len()
    }

    /// Whether no session runs here.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The session whose task runs here under the overlap key `key`.
    pub fn holder(&self, key: &str) -> Option<String> {
        lock(&self.keys).get(key).cloned()
    }

    /// Claims `uid` alone (a session without an overlap key: a restore).
    pub fn enter(&self, uid: &str) -> Claim<'_> {
        lock(&self.uids).insert(uid.to_string());
        Claim {
            live: self,
            uid: uid.to_string(),
            key: None,
        }
    }

    /// Claims `uid`, and `key` for the session `name` when given. `Err` names the other session
    /// holding `key` (nothing is claimed then).
    pub fn claim(&self, uid: &str, key: Option<(&str, &str)>) -> Result<Claim<'_>, String> {
        let mut keys = lock(&self.keys);
        if let Some((key, name)) = key {
            if let Some(other) = keys.get(key).filter(|o| o.as_str() != name) {
                return Err(other.clone());
            }
            keys.insert(key.to_string(), name.to_string());
        }
        lock(&self.uids).insert(uid.to_string());
        Ok(Claim {
            live: self,
            uid: uid.to_string(),
            key: key.map(|(k, _)| k.to_string()),
        })
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        lock(&self.live.uids).remove(&self.uid);
        if let Some(k) = &self.key {
            lock(&self.live.keys).remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(
        task: impl Future<Output = Result<TaskReport, TaskError>> + Send + 'static,
        abort: &CancellationToken,
    ) -> Running<'static> {
        Running {
            task: Box::pin(task),
            tick: interval_at(Instant::now() + PROGRESS_INTERVAL, PROGRESS_INTERVAL),
            abort: abort.clone(),
            claim_lost: None,
        }
    }

    #[tokio::test]
    async fn a_running_task_ticks_ends_and_is_aborted() {
        let abort = CancellationToken::new();
        let failed = async { Err(TaskError::Invalid("no such task".into())) };
        match running(failed, &abort).next().await {
            Event::Done(Err(RunError::Task(TaskError::Invalid(m)))) => {
                assert_eq!(m, "no such task")
            }
            other => panic!("the task's own error: {other:?}"),
        }

        let mut forever = running(std::future::pending(), &abort);
        let t0 = std::time::Instant::now();
        assert!(matches!(forever.next().await, Event::Tick));
        assert!(
            t0.elapsed() >= PROGRESS_INTERVAL,
            "the first tick after one interval"
        );
        abort.cancel();
        match forever.next().await {
            Event::Done(Err(e @ RunError::Aborted)) => assert_eq!(e.to_string(), SHUTDOWN_ABORT),
            other => panic!("aborted: {other:?}"),
        }
    }

    #[test]
    fn a_claim_holds_the_uid_and_the_key_until_dropped() {
        let live = Live::default();
        let a = live.claim("uid-a", Some(("demo/bc/s", "a"))).unwrap();
        assert!(live.contains("uid-a"));
        assert_eq!(live.holder("demo/bc/s").as_deref(), Some("a"));
        assert_eq!(
            live.claim("uid-b", Some(("demo/bc/s", "b"))).unwrap_err(),
            "a"
        );
        assert!(!live.contains("uid-b"), "a refused claim holds nothing");
        let r = live.enter("uid-r");
        drop(a);
        assert!(!live.contains("uid-a"));
        assert_eq!(live.holder("demo/bc/s"), None);
        assert!(live.contains("uid-r"));
        drop(r);
        assert!(!live.contains("uid-r"));
    }
}
