//! The RestoreSession's next step: a pure function of the session and whether its task runs in
//! this process. A restore not started yet is then decided by [`super::plan`] from what the
//! executor observed ([`super::Observed`] → [`super::Next`]).

use kstash_api::core::{RestorePhase, RestoreSession};

/// What to do with the restore now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing until it changes (terminal, or its task runs here).
    Idle,
    /// It is `Running` but no task of it runs here (the operator restarted): drive it to
    /// `Failed` and resume what it paused ([`super::recover_orphan`]).
    RecoverOrphan,
    /// Not started: observe, then validate, resolve and decide with [`super::plan`].
    Plan,
    /// Not terminal, and another replica holds its live claim: look again in
    /// [`CLAIM_RECHECK`] (to take it over if that replica dies).
    ClaimedElsewhere,
}

/// How often a restore claimed by another replica is looked at.
pub const CLAIM_RECHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// The next step of `rs`; `claimed_elsewhere`: another replica holds its live claim.
pub fn next_step(rs: &RestoreSession, running_here: bool, claimed_elsewhere: bool) -> Step {
    if running_here {
        return Step::Idle;
    }
    match rs.status.as_ref().and_then(|s| s.phase) {
        Some(
            RestorePhase::Succeeded
            | RestorePhase::Failed
            | RestorePhase::Invalid
            | RestorePhase::Unknown,
        ) => Step::Idle,
        _ if claimed_elsewhere => Step::ClaimedElsewhere,
        Some(RestorePhase::Running) => Step::RecoverOrphan,
        _ => Step::Plan,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kstash_api::core::RestoreSessionStatus;

    #[test]
    fn the_next_step_follows_the_phase() {
        let rs = |phase: Option<RestorePhase>| {
            let mut r = RestoreSession::new("restore", Default::default());
            r.metadata.namespace = Some("demo".into());
            r.status = Some(RestoreSessionStatus {
                phase,
                ..Default::default()
            });
            r
        };
        use RestorePhase as P;
        for (phase, running_here, want) in [
            (Some(P::Running), true, Step::Idle),
            (Some(P::Running), false, Step::RecoverOrphan),
            (Some(P::Succeeded), false, Step::Idle),
            (Some(P::Failed), false, Step::Idle),
            (Some(P::Invalid), false, Step::Idle),
            (Some(P::Unknown), false, Step::Idle),
            (None, true, Step::Idle),
            (None, false, Step::Plan),
            (Some(P::Pending), false, Step::Plan),
            (Some(P::Pending), true, Step::Idle),
        ] {
            let got = next_step(&rs(phase), running_here, false);
            assert_eq!(got, want, "{phase:?} running_here={running_here}");
        }
        // Another replica's live claim: wait for it, unless the restore is over.
        for (phase, want) in [
            (None, Step::ClaimedElsewhere),
            (Some(P::Running), Step::ClaimedElsewhere),
            (Some(P::Succeeded), Step::Idle),
            (Some(P::Failed), Step::Idle),
        ] {
            assert_eq!(next_step(&rs(phase), false, true), want, "{phase:?}");
        }
    }
}
