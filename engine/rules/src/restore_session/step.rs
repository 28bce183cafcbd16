//! The RestoreSession's next step: a pure function of the session, whether its task runs in
//! this process, and what the reconciler observed for its [`plan`].

use kstash_api::core::{RestorePhase, RestoreSession};

use super::{plan, Observed, Plan, PlanError};

/// What to do with the restore now.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Nothing until it changes (terminal, or its task runs here).
    Idle,
    /// It is `Running` but no task of it runs here (the operator restarted): drive it to
    /// `Failed` and resume what it paused ([`super::recover_orphan`]).
    RecoverOrphan,
    /// Validate, resolve and decide ([`Plan::next`]).
    Plan(Box<Plan>),
}

/// The next step of `rs`.
pub fn next_step(
    rs: &RestoreSession,
    running_here: bool,
    obs: &Observed<'_>,
) -> Result<Step, PlanError> {
    if running_here {
        return Ok(Step::Idle);
    }
    match rs.status.as_ref().and_then(|s| s.phase) {
        Some(
            RestorePhase::Succeeded
            | RestorePhase::Failed
            | RestorePhase::Invalid
            | RestorePhase::Unknown,
        ) => Ok(Step::Idle),
        Some(RestorePhase::Running) => Ok(Step::RecoverOrphan),
        _ => plan(rs, obs).map(|p| Step::Plan(Box::new(p))),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use kstash_api::admission::Lookup;
    use kstash_api::core::RestoreSessionStatus;

    #[test]
    fn the_next_step_follows_the_phase() {
        let lookup = Lookup::default();
        let addons = BTreeSet::new();
        let now: jiff::Timestamp = "2024-09-19T05:00:00Z".parse().unwrap();
        let obs = Observed {
            lookup: &lookup,
            target_found: Some(true),
            snapshots: &[],
            addons: &addons,
            backup_configurations: &[],
            start: now,
            now,
        };
        let rs = |phase: Option<RestorePhase>| {
            let mut r = RestoreSession::new("restore", Default::default());
            r.metadata.namespace = Some("demo".into());
            r.metadata.uid = Some("uid".into());
            r.status = Some(RestoreSessionStatus {
                phase,
                ..Default::default()
            });
            r
        };
        use RestorePhase as P;
        for (phase, running_here, want) in [
            (Some(P::Running), true, Some(Step::Idle)),
            (Some(P::Running), false, Some(Step::RecoverOrphan)),
            (Some(P::Succeeded), false, Some(Step::Idle)),
            (Some(P::Failed), false, Some(Step::Idle)),
            (Some(P::Invalid), false, Some(Step::Idle)),
            (Some(P::Unknown), false, Some(Step::Idle)),
            (None, true, Some(Step::Idle)),
            (None, false, None),
            (Some(P::Pending), false, None),
        ] {
            let got = next_step(&rs(phase), running_here, &obs).unwrap();
            match want {
                Some(w) => assert_eq!(got, w, "{phase:?} running_here={running_here}"),
                None => assert!(
                    matches!(got, Step::Plan(_)),
                    "{phase:?}: a restore not started yet is planned: {got:?}"
                ),
            }
        }
    }
}
