//! Retention selection (spec §6): given the Snapshots of one Repository and a RetentionPolicy,
//! decide for every Snapshot whether to keep or delete it, with the reasons.
//!
//! Semantics (see `docs/retention.md` for the sources and the decisions):
//! - Snapshots are evaluated **per session** (a Repository may hold several sessions).
//! - `Pending`/`Running` Snapshots are never deleted and take no part in the rules.
//! - Successful Snapshots: restic's `forget` rules, newest first — `last` keeps the N newest;
//!   `hourly|daily|weekly|monthly|yearly` keep the newest Snapshot of each of the N most recent
//!   hours/days/ISO weeks/months/years that have one; a Snapshot is selected when any rule
//!   selects it (union). Buckets are computed in UTC.
//! - Failed Snapshots: the `failedSnapshots.last` newest are kept, independently of the
//!   successful ones (failed Snapshots never push successful ones out).
//! - `maxRetentionPeriod` is a hard cap: a Snapshot whose time is before `now − period` is
//!   deleted even if a count rule selected it. Without any count rule, every successful
//!   Snapshot within the period is kept.
//! - Safeguard: the newest successful Snapshot of a session is never deleted.
//! - With neither a period nor a count rule, successful Snapshots are all kept.

use std::collections::BTreeMap;
use std::fmt;

use jiff::{tz::TimeZone, Timestamp};

use crate::period::{parse_max_retention_period, PeriodError, RetentionPeriod};
use crate::storage::{RetentionPolicySpec, Snapshot, SnapshotPhase};

/// One Snapshot as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Snapshot name (unique within the repository).
    pub name: String,
    /// Session (`spec.session`) that produced it.
    pub session: String,
    /// Phase (`status.phase`).
    pub phase: SnapshotPhase,
    /// Snapshot time (`status.snapshotTime`, else the creation time).
    pub time: Timestamp,
}

impl SnapshotInfo {
    /// Reads a Snapshot CR: time = `status.snapshotTime`, else `metadata.creationTimestamp`;
    /// phase = `status.phase`, `Pending` when unset; session = `spec.session` (empty when
    /// unset). `None` when the Snapshot has no name or no time at all: such a Snapshot cannot
    /// be placed in time and must simply be kept by the caller.
    pub fn from_snapshot(s: &Snapshot) -> Option<Self> {
        let status = s.status.as_ref();
        let time = status
            .and_then(|st| st.snapshot_time.as_ref())
            .or(s.metadata.creation_timestamp.as_ref())?
            .0;
        Some(SnapshotInfo {
            name: s.metadata.name.clone()?,
            session: s.spec.session.clone().unwrap_or_default(),
            phase: status
                .and_then(|st| st.phase)
                .unwrap_or(SnapshotPhase::Pending),
            time,
        })
    }
}

/// A RetentionPolicy reduced to the numbers the selection needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionRules {
    /// `maxRetentionPeriod`, parsed.
    pub max_retention_period: Option<RetentionPeriod>,
    /// `successfulSnapshots.last`.
    pub last: u32,
    /// `successfulSnapshots.hourly`.
    pub hourly: u32,
    /// `successfulSnapshots.daily`.
    pub daily: u32,
    /// `successfulSnapshots.weekly`.
    pub weekly: u32,
    /// `successfulSnapshots.monthly`.
    pub monthly: u32,
    /// `successfulSnapshots.yearly`.
    pub yearly: u32,
    /// `failedSnapshots.last` (the webhook default is 1).
    pub failed_last: u32,
}

impl RetentionRules {
    /// Whether any successful count rule (`last` … `yearly`) is greater than zero.
    pub fn has_count_rule(&self) -> bool {
        self.last > 0
            || self.hourly > 0
            || self.daily > 0
            || self.weekly > 0
            || self.monthly > 0
            || self.yearly > 0
    }
}

fn count(v: Option<i32>) -> u32 {
    v.map(|n| n.max(0) as u32).unwrap_or(0)
}

impl TryFrom<&RetentionPolicySpec> for RetentionRules {
    type Error = PeriodError;

    /// Reads the spec; `failedSnapshots.last` defaults to 1 (webhook/CRD default), negative
    /// counts count as 0. Fails only when `maxRetentionPeriod` does not parse.
    fn try_from(spec: &RetentionPolicySpec) -> Result<Self, PeriodError> {
        let max_retention_period = match spec.max_retention_period.as_deref() {
            Some(s) if !s.trim().is_empty() => Some(parse_max_retention_period(s)?),
            _ => None,
        };
        let s = spec.successful_snapshots.clone().unwrap_or_default();
        Ok(RetentionRules {
            max_retention_period,
            last: count(s.last),
            hourly: count(s.hourly),
            daily: count(s.daily),
            weekly: count(s.weekly),
            monthly: count(s.monthly),
            yearly: count(s.yearly),
            failed_last: spec
                .failed_snapshots
                .as_ref()
                .and_then(|f| f.last)
                .map(|n| n.max(0) as u32)
                .unwrap_or(1),
        })
    }
}

/// Keep or delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Keep the Snapshot.
    Keep,
    /// Delete the Snapshot.
    Delete,
}

/// A calendar bucket rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Bucket {
    /// `successfulSnapshots.hourly`
    Hourly,
    /// `successfulSnapshots.daily`
    Daily,
    /// `successfulSnapshots.weekly` (ISO weeks)
    Weekly,
    /// `successfulSnapshots.monthly`
    Monthly,
    /// `successfulSnapshots.yearly`
    Yearly,
}

/// Why a Snapshot is kept or deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Pending/Running: never deleted.
    InProgress(SnapshotPhase),
    /// Selected by `successfulSnapshots.last` (1-based rank among successful, newest first).
    Last(u32),
    /// Newest Snapshot of the calendar bucket `key` (`2024-09-19T05` etc.), which is the
    /// `rank`-th bucket kept by that rule.
    Bucket(Bucket, String, u32),
    /// Successful, no count rule, within `maxRetentionPeriod`.
    WithinMaxRetentionPeriod,
    /// No rule applies at all (neither period nor counts): kept.
    NoRule,
    /// The newest successful Snapshot of its session is never deleted.
    NewestSuccessful,
    /// Selected by `failedSnapshots.last` (1-based rank among failed, newest first).
    FailedLast(u32),
    /// Older than `now − maxRetentionPeriod`.
    OlderThanMaxRetentionPeriod(RetentionPeriod),
    /// Successful but selected by no count rule.
    NotSelected,
    /// Failed and beyond `failedSnapshots.last`.
    ExcessFailed(u32),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::InProgress(p) => write!(f, "in progress ({p:?})"),
            Reason::Last(n) => write!(f, "last #{n}"),
            Reason::Bucket(b, key, n) => {
                let rule = match b {
                    Bucket::Hourly => "hourly",
                    Bucket::Daily => "daily",
                    Bucket::Weekly => "weekly",
                    Bucket::Monthly => "monthly",
                    Bucket::Yearly => "yearly",
                };
                write!(f, "{rule} #{n} ({key})")
            }
            Reason::WithinMaxRetentionPeriod => write!(f, "within maxRetentionPeriod"),
            Reason::NoRule => write!(f, "no retention rule"),
            Reason::NewestSuccessful => write!(f, "newest successful snapshot"),
            Reason::FailedLast(n) => write!(f, "failed last #{n}"),
            Reason::OlderThanMaxRetentionPeriod(p) => {
                write!(f, "older than maxRetentionPeriod {p}")
            }
            Reason::NotSelected => write!(f, "not selected by any successfulSnapshots rule"),
            Reason::ExcessFailed(n) => {
                write!(f, "beyond failedSnapshots.last={n}")
            }
        }
    }
}

/// The decision for one Snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Snapshot name.
    pub name: String,
    /// Its session.
    pub session: String,
    /// Its time.
    pub time: Timestamp,
    /// Keep or delete.
    pub action: Action,
    /// Every reason that applies (keep reasons for kept ones; for deleted ones the deleting
    /// reason, plus the keep reasons it overrode).
    pub reasons: Vec<Reason>,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let action = match self.action {
            Action::Keep => "keep  ",
            Action::Delete => "delete",
        };
        let reasons: Vec<String> = self.reasons.iter().map(|r| r.to_string()).collect();
        write!(
            f,
            "{action} {} [{}] {}: {}",
            self.session,
            self.time,
            self.name,
            reasons.join("; ")
        )
    }
}

/// Bucket key of `t` for `bucket`, in UTC (`2024-09-19T05`, `2024-09-19`, `2024-W38`,
/// `2024-09`, `2024`).
pub fn bucket_key(bucket: Bucket, t: Timestamp) -> String {
    let dt = t.to_zoned(TimeZone::UTC).datetime();
    match bucket {
        Bucket::Hourly => format!(
            "{:04}-{:02}-{:02}T{:02}",
            dt.year(),
            dt.month(),
            dt.day(),
            dt.hour()
        ),
        Bucket::Daily => format!("{:04}-{:02}-{:02}", dt.year(), dt.month(), dt.day()),
        Bucket::Weekly => {
            let w = dt.date().iso_week_date();
            format!("{:04}-W{:02}", w.year(), w.week())
        }
        Bucket::Monthly => format!("{:04}-{:02}", dt.year(), dt.month()),
        Bucket::Yearly => format!("{:04}", dt.year()),
    }
}

/// Newest first; ties broken by name so that the result never depends on input order.
fn newest_first(a: &&SnapshotInfo, b: &&SnapshotInfo) -> std::cmp::Ordering {
    b.time.cmp(&a.time).then_with(|| b.name.cmp(&a.name))
}

/// Decides keep/delete for every Snapshot at time `now`. The result is sorted by session, then
/// newest first (then name), whatever the input order.
pub fn select(snapshots: &[SnapshotInfo], rules: &RetentionRules, now: Timestamp) -> Vec<Decision> {
    let cutoff: Option<Timestamp> = rules.max_retention_period.map(|p| {
        let secs = p.to_minutes().saturating_mul(60);
        now.checked_sub(jiff::SignedDuration::from_secs(secs))
            .unwrap_or(Timestamp::MIN)
    });
    let mut by_session: BTreeMap<&str, Vec<&SnapshotInfo>> = BTreeMap::new();
    for s in snapshots {
        by_session.entry(s.session.as_str()).or_default().push(s);
    }
    let mut out = Vec::with_capacity(snapshots.len());
    for (_, mut group) in by_session {
        group.sort_by(newest_first);
        select_session(&group, rules, cutoff, &mut out);
    }
    out
}

fn select_session(
    group: &[&SnapshotInfo],
    rules: &RetentionRules,
    cutoff: Option<Timestamp>,
    out: &mut Vec<Decision>,
) {
    // Keep reasons for successful snapshots, by index in `group`.
    let mut keep: Vec<Vec<Reason>> = vec![Vec::new(); group.len()];
    let successful: Vec<usize> = (0..group.len())
        .filter(|&i| group[i].phase == SnapshotPhase::Succeeded)
        .collect();
    for (rank, &i) in successful.iter().take(rules.last as usize).enumerate() {
        keep[i].push(Reason::Last(rank as u32 + 1));
    }
    for (bucket, n) in [
        (Bucket::Hourly, rules.hourly),
        (Bucket::Daily, rules.daily),
        (Bucket::Weekly, rules.weekly),
        (Bucket::Monthly, rules.monthly),
        (Bucket::Yearly, rules.yearly),
    ] {
        let mut left = n;
        let mut last_key: Option<String> = None;
        for &i in &successful {
            if left == 0 {
                break;
            }
            let key = bucket_key(bucket, group[i].time);
            if last_key.as_deref() != Some(key.as_str()) {
                keep[i].push(Reason::Bucket(bucket, key.clone(), n - left + 1));
                left -= 1;
                last_key = Some(key);
            }
        }
    }
    let newest_successful = successful.first().copied();
    let counts = rules.has_count_rule();
    let mut failed_rank = 0u32;
    for (i, s) in group.iter().enumerate() {
        let too_old = cutoff.is_some_and(|c| s.time < c);
        let period = rules.max_retention_period.unwrap_or_default();
        let (action, reasons) = match s.phase {
            SnapshotPhase::Pending | SnapshotPhase::Running => {
                (Action::Keep, vec![Reason::InProgress(s.phase)])
            }
            SnapshotPhase::Failed => {
                failed_rank += 1;
                if failed_rank > rules.failed_last {
                    (
                        Action::Delete,
                        vec![Reason::ExcessFailed(rules.failed_last)],
                    )
                } else if too_old {
                    (
                        Action::Delete,
                        vec![
                            Reason::OlderThanMaxRetentionPeriod(period),
                            Reason::FailedLast(failed_rank),
                        ],
                    )
                } else {
                    (Action::Keep, vec![Reason::FailedLast(failed_rank)])
                }
            }
            SnapshotPhase::Succeeded => {
                let mut reasons = std::mem::take(&mut keep[i]);
                let newest = newest_successful == Some(i);
                if too_old {
                    if newest {
                        reasons.push(Reason::NewestSuccessful);
                        (Action::Keep, reasons)
                    } else {
                        reasons.insert(0, Reason::OlderThanMaxRetentionPeriod(period));
                        (Action::Delete, reasons)
                    }
                } else if counts {
                    if !reasons.is_empty() {
                        (Action::Keep, reasons)
                    } else if newest {
                        (Action::Keep, vec![Reason::NewestSuccessful])
                    } else {
                        (Action::Delete, vec![Reason::NotSelected])
                    }
                } else if cutoff.is_some() {
                    (Action::Keep, vec![Reason::WithinMaxRetentionPeriod])
                } else {
                    (Action::Keep, vec![Reason::NoRule])
                }
            }
        };
        out.push(Decision {
            name: s.name.clone(),
            session: s.session.clone(),
            time: s.time,
            action,
            reasons,
        });
    }
}

/// Names of the Snapshots [`select`] deletes, in its order.
pub fn to_delete(decisions: &[Decision]) -> Vec<&str> {
    decisions
        .iter()
        .filter(|d| d.action == Action::Delete)
        .map(|d| d.name.as_str())
        .collect()
}
