//! The scheduler's pure decision for one session: fire now or not, and when next.
//!
//! Policy (docs/scheduling.md):
//! - Due times are the schedule's minutes in `(since, now]`, where `since` is the last time the
//!   session fired, or the time scheduling started when it never fired (so a new
//!   BackupConfiguration does not fire for minutes before it existed).
//! - **Coalescing**: however many due times passed (engine down, paused), at most one run
//!   fires — for the latest due time. The others are counted in `missed`.
//! - **Starting deadline**: with `startingDeadlineSeconds`, the latest due time fires only if
//!   `now - due <= deadline`; otherwise it is skipped and counted as missed too.
//! - **Paused**: never fires; due times passed while paused are coalesced on resume like any
//!   other missed run (Kubernetes CronJob `suspend` behaves the same way).
//! - The fire time is the scheduled minute, not `now`: the BackupSession name derived from it
//!   is deterministic, so a repeated reconcile cannot create a duplicate.

use jiff::{SignedDuration, Timestamp};

use crate::cron::Schedule;

/// Upper bound of [`Decision::missed`]: counting stops there.
pub const MISSED_CAP: u32 = 10_000;

/// What the scheduler knows about one session.
#[derive(Clone, Copy, Debug)]
pub struct ScheduleState<'a> {
    /// The session's cron schedule.
    pub schedule: &'a Schedule,
    /// `spec.paused` of the BackupConfiguration (or `scheduler.suspend`).
    pub paused: bool,
    /// The scheduled time the session last fired, if ever.
    pub last_fired: Option<Timestamp>,
    /// When scheduling started (the BackupConfiguration's creation time); used when the
    /// session never fired.
    pub since: Timestamp,
    /// Current time.
    pub now: Timestamp,
    /// `scheduler.startingDeadlineSeconds`: how late a run may still start.
    pub starting_deadline_seconds: Option<i64>,
}

/// The scheduler's decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Create a BackupSession for this scheduled time now.
    pub fire_now: Option<Timestamp>,
    /// The next scheduled time strictly after `now` (`None` only beyond year 9999).
    pub next_schedule: Option<Timestamp>,
    /// Due times in `(since, now]` that get no BackupSession of their own (coalesced, skipped
    /// for the deadline, or passed while paused), saturating at [`MISSED_CAP`].
    pub missed: u32,
}

/// Decides whether the session fires now (see the module docs for the policy).
pub fn decide(state: &ScheduleState<'_>) -> Decision {
    let s = state.schedule;
    let since = state.last_fired.unwrap_or(state.since);
    let next_schedule = s.next_after(state.now);
    let latest_due = s
        .prev_at_or_before(state.now)
        .filter(|due| *due > since && *due <= state.now);
    let Some(latest_due) = latest_due else {
        return Decision {
            fire_now: None,
            next_schedule,
            missed: 0,
        };
    };
    let due_count = count_due(s, since, state.now);
    let too_late = state
        .starting_deadline_seconds
        .is_some_and(|d| state.now.duration_since(latest_due) > SignedDuration::from_secs(d));
    let fire_now = (!state.paused && !too_late).then_some(latest_due);
    let missed = if fire_now.is_some() {
        due_count.saturating_sub(1)
    } else {
        due_count
    }
    .min(MISSED_CAP);
    Decision {
        fire_now,
        next_schedule,
        missed,
    }
}

/// Number of scheduled minutes in `(since, now]`, counting at most `MISSED_CAP + 1` (the
/// extra one is the run that may fire).
fn count_due(s: &Schedule, since: Timestamp, now: Timestamp) -> u32 {
    let mut n = 0u32;
    let mut t = since;
    while let Some(next) = s.next_after(t) {
        if next > now || n > MISSED_CAP {
            break;
        }
        n += 1;
        t = next;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    use kstash_testkit::ts;

    struct Case {
        name: &'static str,
        schedule: &'static str,
        paused: bool,
        last: Option<&'static str>,
        since: &'static str,
        now: &'static str,
        deadline: Option<i64>,
        fire: Option<&'static str>,
        next: &'static str,
        missed: u32,
    }

    const CREATED: &str = "2024-09-19T04:49:38Z";

    #[test]
    fn decision_table() {
        let cases = [
            Case {
                name: "new BC, nothing due yet",
                schedule: "*/5 * * * *",
                paused: false,
                last: None,
                since: CREATED,
                now: "2024-09-19T04:49:48Z",
                deadline: None,
                fire: None,
                next: "2024-09-19T04:50:00Z",
                missed: 0,
            },
            Case {
                name: "first scheduled run after creation",
                schedule: "*/5 * * * *",
                paused: false,
                last: None,
                since: CREATED,
                now: "2024-09-19T04:50:01Z",
                deadline: None,
                fire: Some("2024-09-19T04:50:00Z"),
                next: "2024-09-19T04:55:00Z",
                missed: 0,
            },
            Case {
                name: "already fired for this minute",
                schedule: "*/5 * * * *",
                paused: false,
                last: Some("2024-09-19T04:50:00Z"),
                since: CREATED,
                now: "2024-09-19T04:50:30Z",
                deadline: None,
                fire: None,
                next: "2024-09-19T04:55:00Z",
                missed: 0,
            },
            Case {
                name: "engine down 1h: 12 due (04:55..05:50), one fires for 05:50, 11 missed",
                schedule: "*/5 * * * *",
                paused: false,
                last: Some("2024-09-19T04:50:00Z"),
                since: CREATED,
                now: "2024-09-19T05:52:10Z",
                deadline: None,
                fire: Some("2024-09-19T05:50:00Z"),
                next: "2024-09-19T05:55:00Z",
                missed: 11,
            },
            Case {
                name: "within the starting deadline",
                schedule: "*/5 * * * *",
                paused: false,
                last: Some("2024-09-19T04:50:00Z"),
                since: CREATED,
                now: "2024-09-19T04:56:00Z",
                deadline: Some(60),
                fire: Some("2024-09-19T04:55:00Z"),
                next: "2024-09-19T05:00:00Z",
                missed: 0,
            },
            Case {
                name: "past the starting deadline: skipped",
                schedule: "*/5 * * * *",
                paused: false,
                last: Some("2024-09-19T04:50:00Z"),
                since: CREATED,
                now: "2024-09-19T04:56:01Z",
                deadline: Some(60),
                fire: None,
                next: "2024-09-19T05:00:00Z",
                missed: 1,
            },
            Case {
                name: "paused: never fires, due times count as missed",
                schedule: "*/5 * * * *",
                paused: true,
                last: Some("2024-09-19T04:50:00Z"),
                since: CREATED,
                now: "2024-09-19T05:06:00Z",
                deadline: None,
                fire: None,
                next: "2024-09-19T05:10:00Z",
                missed: 3,
            },
            Case {
                name: "daily, engine down 3 days: one catch-up",
                schedule: "@daily",
                paused: false,
                last: Some("2024-09-20T00:00:00Z"),
                since: CREATED,
                now: "2024-09-23T08:00:00Z",
                deadline: None,
                fire: Some("2024-09-23T00:00:00Z"),
                next: "2024-09-24T00:00:00Z",
                missed: 2,
            },
            Case {
                name: "clock behind the last fire: nothing due",
                schedule: "*/5 * * * *",
                paused: false,
                last: Some("2024-09-19T05:00:00Z"),
                since: CREATED,
                now: "2024-09-19T04:58:00Z",
                deadline: None,
                fire: None,
                next: "2024-09-19T05:00:00Z",
                missed: 0,
            },
        ];
        for c in cases {
            let sched = Schedule::parse(c.schedule).unwrap();
            let got = decide(&ScheduleState {
                schedule: &sched,
                paused: c.paused,
                last_fired: c.last.map(ts),
                since: ts(c.since),
                now: ts(c.now),
                starting_deadline_seconds: c.deadline,
            });
            let want = Decision {
                fire_now: c.fire.map(ts),
                next_schedule: Some(ts(c.next)),
                missed: c.missed,
            };
            assert_eq!(got, want, "{}", c.name);
        }
    }

    #[test]
    fn missed_saturates() {
        // Every minute for ~1 month: 43 200 due times, counting stops at the cap.
        let sched = Schedule::parse("* * * * *").unwrap();
        let d = decide(&ScheduleState {
            schedule: &sched,
            paused: false,
            last_fired: Some(ts("2024-09-01T00:00:00Z")),
            since: ts("2024-09-01T00:00:00Z"),
            now: ts("2024-10-01T00:00:30Z"),
            starting_deadline_seconds: None,
        });
        assert_eq!(d.fire_now, Some(ts("2024-10-01T00:00:00Z")));
        assert_eq!(d.missed, MISSED_CAP);
    }

    proptest::proptest! {
        #[test]
        fn decision_invariants(
            idx in 0..4usize,
            last in 1_600_000_000i64..1_700_000_000,
            gap in 0i64..400_000,
            paused: bool,
            deadline in proptest::option::of(0i64..10_000),
        ) {
            let exprs = ["*/5 * * * *", "@hourly", "30 2 * * mon-fri", "0 12 25 * sun"];
            let sched = Schedule::parse(exprs[idx]).unwrap();
            let last = Timestamp::from_second(last).unwrap();
            let now = Timestamp::from_second(last.as_second() + gap).unwrap();
            let d = decide(&ScheduleState {
                schedule: &sched,
                paused,
                last_fired: Some(last),
                since: last,
                now,
                starting_deadline_seconds: deadline,
            });
            proptest::prop_assert!(d.next_schedule.unwrap() > now);
            if let Some(f) = d.fire_now {
                proptest::prop_assert!(!paused);
                proptest::prop_assert!(f > last && f <= now && sched.matches(f));
                // It is the latest due time.
                proptest::prop_assert!(sched.next_after(f).unwrap() > now);
            }
            // Fired + missed = every due time in (last, now] (small gaps stay under the cap).
            let mut due = 0;
            let mut t = last;
            while let Some(n) = sched.next_after(t).filter(|n| *n <= now) {
                due += 1;
                t = n;
            }
            proptest::prop_assert_eq!(d.missed + u32::from(d.fire_now.is_some()), due);
        }
    }
}
