//! The BackupSession's next step: a pure function of the session and what the reconciler
//! observed (its invoker, the other sessions, whether a task of it runs in this process).

use std::borrow::Borrow;
use std::time::Duration;

use jiff::Timestamp;
use kstash_api::core::{
    BackupConfiguration, BackupInvokerPhase, BackupSession, BackupSessionPhase,
};

use super::skip_reason;
use crate::backup_configuration::KIND_BACKUP_CONFIGURATION;

/// How long a young session waits for its existing invoker's first `Ready` status before it is
/// skipped: the BackupConfiguration controller creates a session in the same pass that writes
/// the configuration's status.
pub const INVOKER_GRACE: Duration = Duration::from_secs(30);
/// How often a session whose task runs here is looked at (to see its retry once it ends).
pub const WHILE_RUNNING: Duration = Duration::from_secs(5);
/// How often a young session looks again for its invoker's `Ready` status.
pub const INVOKER_RECHECK: Duration = Duration::from_secs(1);
/// How often a session claimed by another replica is looked at (to take it over when that
/// replica's claim expires).
pub const CLAIM_RECHECK: Duration = Duration::from_secs(2);
/// How often a session waits for room when this replica runs as many sessions as it may.
pub const BUSY_RECHECK: Duration = Duration::from_secs(3);

/// What the reconciler observed besides the session.
#[derive(Debug, Clone)]
pub struct Observed<'a, O: Borrow<BackupSession>> {
    /// A task of this session runs in this process.
    pub running_here: bool,
    /// The BackupConfiguration `spec.invoker` names (`None`: it does not exist, or the invoker
    /// is not a BackupConfiguration).
    pub invoker: Option<&'a BackupConfiguration>,
    /// The other BackupSessions of the namespace.
    pub others: &'a [O],
    /// Another session of the same invoker and session whose task runs in this process.
    pub running_here_same_session: Option<&'a str>,
    /// With several replicas: the session (`name`) holding the live claim of this session's
    /// invoker and session in another replica (`None`: unclaimed, or a single replica).
    pub claimed_elsewhere: Option<&'a str>,
    /// This replica may start one more session (it runs fewer than its bound).
    pub room_here: bool,
    /// Now.
    pub now: Timestamp,
}

/// What to do with the session now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing until the session changes.
    Idle,
    /// Look again after this long (its task runs here, or its retry is not due yet).
    Requeue(Duration),
    /// Its invoker exists but shows no `Ready` status yet and the session is young: look again
    /// in [`INVOKER_RECHECK`] (within [`INVOKER_GRACE`] of its creation).
    WaitForInvoker,
    /// Do not run it: phase `Skipped` with this message (`BackupSkipped=True`).
    Skip(String),
    /// Claim it and start its backup task.
    Start,
    /// It is `Running` but no task of it runs here nor in a replica holding a live claim (its
    /// executor died): drive it to `Failed` (`recover_orphan`).
    RecoverOrphan,
    /// It failed and its retry is due: create the retry session.
    CreateRetry,
}

/// The message of a session whose invoker kind kstash does not run (`spec.invoker.kind`).
pub fn unsupported_invoker(kind: &str) -> String {
    match kind {
        "BackupBatch" => "Skipped because spec.invoker.kind BackupBatch is not supported by \
                          kstash: back up each target with a BackupConfiguration of its own"
            .to_string(),
        "" => {
            "Skipped because spec.invoker.kind is empty: it must be BackupConfiguration".to_string()
        }
        other => format!(
            "Skipped because spec.invoker.kind {other} is not supported by kstash: it must be \
             BackupConfiguration"
        ),
    }
}

/// The message of a session skipped because `other`, of the same invoker and session, runs.
pub fn overlap_message(other: &str) -> String {
    format!("Skipped because BackupSession {other} of the same session is running")
}

/// Whether the next step of `bs` depends on [`Observed::invoker`] and [`Observed::others`]
/// (a session not started yet): the reconciler reads them only then.
pub fn admitting(bs: &BackupSession) -> bool {
    matches!(
        bs.status.as_ref().and_then(|s| s.phase),
        None | Some(BackupSessionPhase::Pending)
    )
}

/// Whether `bs` is `Running`.
pub fn running(bs: &BackupSession) -> bool {
    bs.status.as_ref().and_then(|s| s.phase) == Some(BackupSessionPhase::Running)
}

/// The next step of `bs`.
pub fn next_step<O: Borrow<BackupSession>>(bs: &BackupSession, obs: &Observed<'_, O>) -> Step {
    if obs.running_here {
        return Step::Requeue(WHILE_RUNNING);
    }
    let status = bs.status.clone().unwrap_or_default();
    match status.phase {
        Some(BackupSessionPhase::Succeeded | BackupSessionPhase::Skipped) => Step::Idle,
        Some(BackupSessionPhase::Failed) => match status.next_retry.as_ref().map(|t| t.0) {
            Some(at) if status.retried == Some(true) => {
                let wait = at.duration_since(obs.now);
                if wait.is_positive() {
                    Step::Requeue(Duration::try_from(wait).unwrap_or(Duration::from_secs(1)))
                } else {
                    Step::CreateRetry
                }
            }
            _ => Step::Idle,
        },
        Some(BackupSessionPhase::Running) if obs.claimed_elsewhere.is_some() => {
            Step::Requeue(CLAIM_RECHECK)
        }
        Some(BackupSessionPhase::Running) => Step::RecoverOrphan,
        _ => admit(bs, obs),
    }
}

/// Whether session `name` is among `others` with a terminal phase.
fn ended<O: Borrow<BackupSession>>(others: &[O], name: &str) -> bool {
    others.iter().map(Borrow::borrow).any(|o| {
        o.metadata.name.as_deref() == Some(name)
            && matches!(
                o.status.as_ref().and_then(|s| s.phase),
                Some(
                    BackupSessionPhase::Succeeded
                        | BackupSessionPhase::Failed
                        | BackupSessionPhase::Skipped
                )
            )
    })
}

/// A session not started yet: run it, wait for its invoker, or skip it (spec §4 step 1).
fn admit<O: Borrow<BackupSession>>(bs: &BackupSession, obs: &Observed<'_, O>) -> Step {
    let kind = bs.spec.invoker.as_ref().map(|i| i.kind.as_str());
    if kind != Some(KIND_BACKUP_CONFIGURATION) {
        return Step::Skip(unsupported_invoker(kind.unwrap_or("")));
    }
    let phase = obs
        .invoker
        .and_then(|b| b.status.as_ref())
        .and_then(|s| s.phase);
    let created = bs
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(obs.now);
    let young = obs.now.duration_since(created).as_secs_f64() < INVOKER_GRACE.as_secs_f64();
    if obs.invoker.is_some() && phase != Some(BackupInvokerPhase::Ready) && young {
        return Step::WaitForInvoker;
    }
    if let Some(msg) = skip_reason(bs, phase, obs.others) {
        return Step::Skip(msg);
    }
    if let Some(other) = obs
        .running_here_same_session
        .filter(|o| Some(*o) != bs.metadata.name.as_deref())
    {
        return Step::Skip(overlap_message(other));
    }
    match obs.claimed_elsewhere {
        // The holder ended but has not released its claim yet (it does right after writing its
        // final status): wait for the release rather than skip.
        Some(other) if ended(obs.others, other) => return Step::Requeue(CLAIM_RECHECK),
        Some(other) if Some(other) != bs.metadata.name.as_deref() => {
            return Step::Skip(overlap_message(other))
        }
        Some(_) => return Step::Requeue(CLAIM_RECHECK),
        None => {}
    }
    if !obs.room_here {
        return Step::Requeue(BUSY_RECHECK);
    }
    Step::Start
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kstash_api::core::{BackupConfigurationStatus, BackupSessionStatus};

    use kstash_testkit::ts;

    fn session(name: &str, kind: &str, phase: Option<BackupSessionPhase>) -> BackupSession {
        let mut bs: BackupSession = serde_json::from_value(serde_json::json!({
            "apiVersion": "core.kubestash.com/v1alpha1", "kind": "BackupSession",
            "metadata": {"name": name, "namespace": "demo",
                         "creationTimestamp": "2024-09-19T04:50:00Z"},
            "spec": {"invoker": {"apiGroup": "core.kubestash.com", "kind": kind,
                                 "name": "appbinding-es-quickstart"},
                     "session": "frequent-backup"}
        }))
        .unwrap();
        bs.status = Some(BackupSessionStatus {
            phase,
            ..Default::default()
        });
        bs
    }

    fn bc(phase: Option<BackupInvokerPhase>) -> BackupConfiguration {
        let mut b = BackupConfiguration::new("appbinding-es-quickstart", Default::default());
        b.metadata.namespace = Some("demo".into());
        b.status = Some(BackupConfigurationStatus {
            phase,
            ..Default::default()
        });
        b
    }

    fn retry(mut bs: BackupSession, at: &str) -> BackupSession {
        let st = bs.status.get_or_insert_with(Default::default);
        st.retried = Some(true);
        st.next_retry = Some(Time(ts(at)));
        bs
    }

    #[test]
    fn the_next_step_follows_the_phase_and_the_observations() {
        use BackupSessionPhase as P;
        let ready = bc(Some(BackupInvokerPhase::Ready));
        let not_ready = bc(Some(BackupInvokerPhase::NotReady));
        let no_status = bc(None);
        let running_other = session("other-1726722000", "BackupConfiguration", Some(P::Running));
        let young = ts("2024-09-19T04:50:10Z");
        let old = ts("2024-09-19T04:52:00Z");
        let s = |p| session("s-1726722240", "BackupConfiguration", p);
        #[allow(clippy::type_complexity)]
        let cases: Vec<(&str, BackupSession, bool, Option<&BackupConfiguration>, Vec<BackupSession>, Option<&str>, Timestamp, Step)> = vec![
            ("pending, invoker Ready", s(None), false, Some(&ready), vec![], None, old, Step::Start),
            ("Pending phase, invoker Ready", s(Some(P::Pending)), false, Some(&ready), vec![], None, old, Step::Start),
            ("its task runs here", s(Some(P::Running)), true, Some(&ready), vec![], None, old, Step::Requeue(WHILE_RUNNING)),
            ("Running, no task here", s(Some(P::Running)), false, Some(&ready), vec![], None, old, Step::RecoverOrphan),
            ("Succeeded", s(Some(P::Succeeded)), false, Some(&ready), vec![], None, old, Step::Idle),
            ("Skipped", s(Some(P::Skipped)), false, Some(&ready), vec![], None, old, Step::Idle),
            ("Failed, no retry", s(Some(P::Failed)), false, Some(&ready), vec![], None, old, Step::Idle),
            ("Failed, retry due", retry(s(Some(P::Failed)), "2024-09-19T04:51:00Z"), false, Some(&ready), vec![], None, old, Step::CreateRetry),
            ("Failed, retry later", retry(s(Some(P::Failed)), "2024-09-19T04:52:30Z"), false, Some(&ready), vec![], None, old, Step::Requeue(Duration::from_secs(30))),
            ("young, invoker not Ready yet", s(None), false, Some(&not_ready), vec![], None, young, Step::WaitForInvoker),
            ("young, invoker without status", s(None), false, Some(&no_status), vec![], None, young, Step::WaitForInvoker),
            ("young, invoker Ready", s(None), false, Some(&ready), vec![], None, young, Step::Start),
            ("Pending, its task runs here", s(None), true, Some(&ready), vec![], None, old, Step::Requeue(WHILE_RUNNING)),
            ("Failed, retried but no nextRetry", { let mut b = s(Some(P::Failed)); b.status.as_mut().unwrap().retried = Some(true); b }, false, None, vec![], None, old, Step::Idle),
            ("its own task holds the session key", s(None), false, Some(&ready), vec![], Some("s-1726722240"), old, Step::Start),
            ("empty invoker kind", session("e-1", "", None), false, None, vec![], None, old, Step::Skip(unsupported_invoker(""))),
            ("another invoker kind", session("r-1", "RestoreSession", None), false, None, vec![], None, old, Step::Skip(unsupported_invoker("RestoreSession"))),
            ("old, invoker not Ready", s(None), false, Some(&not_ready), vec![], None, old,
                Step::Skip("Skipped because BackupConfiguration appbinding-es-quickstart is not Ready (phase NotReady)".into())),
            ("invoker missing", s(None), false, None, vec![], None, young,
                Step::Skip("Skipped because BackupConfiguration appbinding-es-quickstart was not found".into())),
            ("another session Running", s(None), false, Some(&ready), vec![running_other], None, old,
                Step::Skip("Skipped because BackupSession other-1726722000 of the same session is running".into())),
            ("another session's task runs here", s(None), false, Some(&ready), vec![], Some("other-1726722000"), old,
                Step::Skip("Skipped because BackupSession other-1726722000 of the same session is running".into())),
            ("BackupBatch invoker", session("b-1", "BackupBatch", None), false, None, vec![], None, old,
                Step::Skip(unsupported_invoker("BackupBatch"))),
        ];
        for (what, bs, running_here, invoker, others, here, now, want) in cases {
            let obs = Observed {
                running_here,
                invoker,
                others: &others,
                running_here_same_session: here,
                claimed_elsewhere: None,
                room_here: true,
                now,
            };
            assert_eq!(next_step(&bs, &obs), want, "{what}");
        }
        assert!(unsupported_invoker("BackupBatch").contains("spec.invoker.kind BackupBatch"));
    }

    #[test]
    fn claims_of_other_replicas_and_the_bound_decide_admission_and_recovery() {
        use BackupSessionPhase as P;
        let ready = bc(Some(BackupInvokerPhase::Ready));
        let old = ts("2024-09-19T04:52:00Z");
        let s = |p| session("s-1726722240", "BackupConfiguration", p);
        let cases: Vec<(&str, BackupSession, Option<&str>, bool, Step)> = vec![
            (
                "pending, claimed by itself elsewhere",
                s(None),
                Some("s-1726722240"),
                true,
                Step::Requeue(CLAIM_RECHECK),
            ),
            (
                "pending, another session claimed elsewhere",
                s(None),
                Some("other-1"),
                true,
                Step::Skip(overlap_message("other-1")),
            ),
            (
                "pending, no room here",
                s(None),
                None,
                false,
                Step::Requeue(BUSY_RECHECK),
            ),
            (
                "pending, room and unclaimed",
                s(None),
                None,
                true,
                Step::Start,
            ),
            (
                "Running, claimed elsewhere",
                s(Some(P::Running)),
                Some("s-1726722240"),
                true,
                Step::Requeue(CLAIM_RECHECK),
            ),
            (
                "Running, its claim expired",
                s(Some(P::Running)),
                None,
                false,
                Step::RecoverOrphan,
            ),
            (
                "Succeeded, whatever the claims",
                s(Some(P::Succeeded)),
                Some("x"),
                false,
                Step::Idle,
            ),
        ];
        let ended_other = session("other-0", "BackupConfiguration", Some(P::Succeeded));
        let others = [ended_other];
        for (what, bs, claimed, room, want) in cases.into_iter().chain([(
            "pending, an ended session's claim not released yet",
            s(None),
            Some("other-0"),
            true,
            Step::Requeue(CLAIM_RECHECK),
        )]) {
            let obs = Observed::<BackupSession> {
                running_here: false,
                invoker: Some(&ready),
                others: &others,
                running_here_same_session: None,
                claimed_elsewhere: claimed,
                room_here: room,
                now: old,
            };
            assert_eq!(next_step(&bs, &obs), want, "{what}");
        }
    }

    #[test]
    fn only_a_session_not_started_yet_is_admitted() {
        use BackupSessionPhase as P;
        let s = |p| session("s-1", "BackupConfiguration", p);
        assert!(admitting(&s(None)));
        assert!(admitting(&s(Some(P::Pending))));
        for p in [P::Running, P::Succeeded, P::Failed, P::Skipped] {
            assert!(!admitting(&s(Some(p))), "{p:?}");
        }
    }
}
