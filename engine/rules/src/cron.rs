//! Standard 5-field cron schedules in UTC (cron(5) semantics, Vixie cron dialect).
//!
//! `minute hour day-of-month month day-of-week`, each field `*`, a number, a name (`jan`,
//! `mon`; case-insensitive), a range `a-b`, a step `*/n`, `a-b/n` or `a/n` (= `a-max/n`), or a
//! comma list of those. Day-of-week `0` and `7` are Sunday. `?` is accepted as `*` in the two
//! day fields. Macros: `@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`/`@midnight`,
//! `@hourly`.
//!
//! Day matching follows cron(5): when both day fields are restricted (do not start with `*`),
//! a day matching **either** fires; otherwise both must match (the `*` one always does).
//! Note: Kubernetes' CronJob parser (robfig/cron) treats `*/2` as restricted; cron(5), and so
//! kstash, treats any field starting with `*` as unrestricted. See docs/scheduling.md.

use std::fmt;

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// A cron field, used to name the culprit in errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// Minute (0–59).
    Minute,
    /// Hour (0–23).
    Hour,
    /// Day of month (1–31).
    DayOfMonth,
    /// Month (1–12 or `jan`–`dec`).
    Month,
    /// Day of week (0–7 or `sun`–`sat`; 0 and 7 are Sunday).
    DayOfWeek,
}

impl Field {
    const ALL: [Field; 5] = [
        Field::Minute,
        Field::Hour,
        Field::DayOfMonth,
        Field::Month,
        Field::DayOfWeek,
    ];

    fn bounds(self) -> (u32, u32) {
        match self {
            Field::Minute => (0, 59),
            Field::Hour => (0, 23),
            Field::DayOfMonth => (1, 31),
            Field::Month => (1, 12),
            Field::DayOfWeek => (0, 7),
        }
    }

    fn names(self) -> &'static [&'static str] {
        match self {
            Field::Month => &[
                "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
            ],
            Field::DayOfWeek => &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
            _ => &[],
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::DayOfMonth => "day-of-month",
            Field::Month => "month",
            Field::DayOfWeek => "day-of-week",
        })
    }
}

/// Why a cron schedule was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    /// The schedule is empty or blank.
    #[error("cron schedule is empty")]
    Empty,
    /// Not exactly five fields.
    #[error(
        "cron schedule {schedule:?}: expected 5 fields (minute hour day-of-month month \
         day-of-week), got {got}"
    )]
    FieldCount {
        /// The schedule.
        schedule: String,
        /// Number of fields found.
        got: usize,
    },
    /// An `@` macro that is not known.
    #[error(
        "cron schedule {schedule:?}: unknown macro (known: @yearly, @annually, @monthly, \
         @weekly, @daily, @midnight, @hourly)"
    )]
    UnknownMacro {
        /// The schedule.
        schedule: String,
    },
    /// A `TZ=`/`CRON_TZ=` prefix: schedules are always UTC.
    #[error("cron schedule {schedule:?}: time zone prefixes are not supported, schedules are UTC")]
    TimeZone {
        /// The schedule.
        schedule: String,
    },
    /// A field value is malformed or out of range.
    #[error("cron {field} field: invalid value {value:?}: {reason}")]
    Field {
        /// The field.
        field: Field,
        /// The offending value (the list element, or the whole field).
        value: String,
        /// Why.
        reason: String,
    },
}

/// A parsed cron schedule (UTC, minute resolution).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    source: String,
    minutes: u64,
    hours: u32,
    days_of_month: u32,
    months: u16,
    days_of_week: u8,
    dom_restricted: bool,
    dow_restricted: bool,
}

/// How far [`Schedule::next_after`] and [`Schedule::prev_at_or_before`] search (years). The
/// rarest valid schedule (29 February) recurs within 8 years.
const SEARCH_YEARS: i16 = 9;

impl Schedule {
    /// Parses a 5-field schedule or an `@` macro.
    ///
    /// Errors name the field and the bad value, e.g.
    /// `cron hour field: invalid value "24": 24 is out of range 0-23`. A schedule that can never
    /// fire (`0 0 30 2 *`) is rejected too.
    pub fn parse(s: &str) -> Result<Schedule, CronError> {
        let trimmed = s.trim();
        if trimmed.is_empty() {
            return Err(CronError::Empty);
        }
        let upper = trimmed.to_ascii_uppercase();
        if upper.starts_with("TZ=") || upper.starts_with("CRON_TZ=") {
            return Err(CronError::TimeZone {
                schedule: s.to_string(),
            });
        }
        let expanded = if trimmed.starts_with('@') {
            match trimmed.to_ascii_lowercase().as_str() {
                "@yearly" | "@annually" => "0 0 1 1 *",
                "@monthly" => "0 0 1 * *",
                "@weekly" => "0 0 * * 0",
                "@daily" | "@midnight" => "0 0 * * *",
                "@hourly" => "0 * * * *",
                _ => {
                    return Err(CronError::UnknownMacro {
                        schedule: s.to_string(),
                    })
                }
            }
        } else {
            trimmed
        };
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(CronError::FieldCount {
                schedule: s.to_string(),
                got: parts.len(),
            });
        }
        let mut bits = [0u64; 5];
        for (i, field) in Field::ALL.into_iter().enumerate() {
            bits[i] = parse_field(field, parts[i])?;
        }
        // Day-of-week 7 is Sunday (0).
        let mut dow = bits[4];
        if dow & (1 << 7) != 0 {
            dow = (dow & !(1 << 7)) | 1;
        }
        let is_star = |p: &str| p.starts_with('*') || p.starts_with('?');
        let sched = Schedule {
            source: trimmed.to_string(),
            minutes: bits[0],
            hours: bits[1] as u32,
            days_of_month: bits[2] as u32,
            months: bits[3] as u16,
            days_of_week: dow as u8,
            dom_restricted: !is_star(parts[2]),
            dow_restricted: !is_star(parts[4]),
        };
        sched.check_can_fire(parts[2])?;
        Ok(sched)
    }

    /// The schedule as written (trimmed).
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Rejects a restricted day-of-month that exists in none of the selected months (only
    /// relevant when day-of-week is `*`; otherwise the OR/AND rule lets some day match).
    fn check_can_fire(&self, dom_text: &str) -> Result<(), CronError> {
        if !self.dom_restricted || self.dow_restricted {
            return Ok(());
        }
        const MAX_DAYS: [u32; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        let possible = (1..=12u32).any(|m| {
            self.months & (1 << m) != 0
                && (1..=MAX_DAYS[m as usize - 1]).any(|d| self.days_of_month & (1 << d) != 0)
        });
        if possible {
            Ok(())
        } else {
            Err(CronError::Field {
                field: Field::DayOfMonth,
                value: dom_text.to_string(),
                reason: "no selected month has such a day, the schedule would never fire".into(),
            })
        }
    }

    fn month_matches(&self, dt: DateTime) -> bool {
        self.months & (1 << dt.month()) != 0
    }

    fn day_matches(&self, date: Date) -> bool {
        let dom = self.days_of_month & (1 << date.day()) != 0;
        let wd = date.weekday().to_sunday_zero_offset();
        let dow = self.days_of_week & (1 << wd) != 0;
        if self.dom_restricted && self.dow_restricted {
            dom || dow
        } else {
            dom && dow
        }
    }

    fn hour_matches(&self, dt: DateTime) -> bool {
        self.hours & (1 << dt.hour()) != 0
    }

    fn minute_matches(&self, dt: DateTime) -> bool {
        self.minutes & (1 << dt.minute()) != 0
    }

    fn matches_dt(&self, dt: DateTime) -> bool {
        self.month_matches(dt)
            && self.day_matches(dt.date())
            && self.hour_matches(dt)
            && self.minute_matches(dt)
    }

    /// Whether the UTC minute containing `t` is a scheduled minute.
    pub fn matches(&self, t: Timestamp) -> bool {
        self.matches_dt(TimeZone::UTC.to_datetime(t))
    }

    /// The first scheduled minute strictly after `t`; `None` only when it would lie beyond
    /// jiff's supported range (year 9999).
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let start = minute_floor(TimeZone::UTC.to_datetime(t));
        let limit = start.year().saturating_add(SEARCH_YEARS);
        let mut dt = start.checked_add(1.minute()).ok()?;
        while dt.year() <= limit {
            dt = if !self.month_matches(dt) {
                dt.date()
                    .first_of_month()
                    .checked_add(1.month())
                    .ok()?
                    .to_datetime(Time::midnight())
            } else if !self.day_matches(dt.date()) {
                dt.date().tomorrow().ok()?.to_datetime(Time::midnight())
            } else if !self.hour_matches(dt) {
                minute_zero(dt).checked_add(1.hour()).ok()?
            } else if !self.minute_matches(dt) {
                dt.checked_add(1.minute()).ok()?
            } else {
                return TimeZone::UTC.to_timestamp(dt).ok();
            };
        }
        None
    }

    /// The last scheduled minute at or before `t` (the minute containing `t` counts); `None`
    /// when there is none in the preceding years searched or before jiff's range.
    pub fn prev_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        let mut dt = minute_floor(TimeZone::UTC.to_datetime(t));
        let limit = dt.year().saturating_sub(SEARCH_YEARS);
        while dt.year() >= limit {
            dt = if !self.month_matches(dt) {
                dt.date()
                    .first_of_month()
                    .to_datetime(Time::midnight())
                    .checked_sub(1.minute())
                    .ok()?
            } else if !self.day_matches(dt.date()) {
                dt.date()
                    .to_datetime(Time::midnight())
                    .checked_sub(1.minute())
                    .ok()?
            } else if !self.hour_matches(dt) {
                minute_zero(dt).checked_sub(1.minute()).ok()?
            } else if !self.minute_matches(dt) {
                dt.checked_sub(1.minute()).ok()?
            } else {
                return TimeZone::UTC.to_timestamp(dt).ok();
            };
        }
        None
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl std::str::FromStr for Schedule {
    type Err = CronError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Schedule::parse(s)
    }
}

fn minute_floor(dt: DateTime) -> DateTime {
    dt.date()
        .to_datetime(Time::constant(dt.hour(), dt.minute(), 0, 0))
}

fn minute_zero(dt: DateTime) -> DateTime {
    dt.date().to_datetime(Time::constant(dt.hour(), 0, 0, 0))
}

fn field_err(field: Field, value: &str, reason: impl Into<String>) -> CronError {
    CronError::Field {
        field,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Parses one field into a bitset (bit n = value n).
fn parse_field(field: Field, text: &str) -> Result<u64, CronError> {
    if text.is_empty() {
        return Err(field_err(field, text, "empty field"));
    }
    let mut bits = 0u64;
    for item in text.split(',') {
        bits |= parse_item(field, item)?;
    }
    Ok(bits)
}

fn parse_item(field: Field, item: &str) -> Result<u64, CronError> {
    let (min, max) = field.bounds();
    if item.is_empty() {
        return Err(field_err(field, item, "empty list element"));
    }
    let (range, step) = match item.split_once('/') {
        Some((r, s)) => {
            let step: u32 = s.parse().map_err(|_| {
                field_err(field, item, format!("step {s:?} is not a positive number"))
            })?;
            if step == 0 {
                return Err(field_err(field, item, "step must be at least 1"));
            }
            (r, Some(step))
        }
        None => (item, None),
    };
    let star =
        range == "*" || (range == "?" && matches!(field, Field::DayOfMonth | Field::DayOfWeek));
    let (lo, hi) = if star {
        // `*` covers 0-6 for day-of-week (7 is only an alias).
        (min, if field == Field::DayOfWeek { 6 } else { max })
    } else if let Some((a, b)) = range.split_once('-') {
        let lo = parse_value(field, item, a)?;
        let hi = parse_value(field, item, b)?;
        if lo > hi {
            return Err(field_err(
                field,
                item,
                format!("range start {lo} is after its end {hi}"),
            ));
        }
        (lo, hi)
    } else {
        let v = parse_value(field, item, range)?;
        // `a/n` means `a-max/n` (max 6 for day-of-week, as `*`); a lone value is itself.
        let end = if field == Field::DayOfWeek { 6 } else { max };
        (v, if step.is_some() { end.max(v) } else { v })
    };
    let step = step.unwrap_or(1);
    let mut bits = 0u64;
    let mut v = lo;
    while v <= hi {
        bits |= 1 << v;
        v += step;
    }
    Ok(bits)
}

fn parse_value(field: Field, item: &str, text: &str) -> Result<u32, CronError> {
    let (min, max) = field.bounds();
    let lower = text.to_ascii_lowercase();
    if let Some(i) = field.names().iter().position(|n| *n == lower) {
        return Ok(i as u32 + if field == Field::Month { 1 } else { 0 });
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        let hint = match field {
            Field::Month => " (expected 1-12 or jan-dec)",
            Field::DayOfWeek => " (expected 0-7 or sun-sat)",
            _ => "",
        };
        return Err(field_err(
            field,
            item,
            format!("{text:?} is not a number{hint}"),
        ));
    }
    match text.parse::<u32>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(field_err(
            field,
            item,
            format!("{text} is out of range {min}-{max}"),
        )),
    }
}

#[cfg(test)]
mod tests;
