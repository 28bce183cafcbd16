//! `RetentionPolicy.spec.maxRetentionPeriod` grammar (spec §6): a sequence of `<int><unit>`
//! with units `y`, `mo`, `w`, `d`, `h`, `m` (`mo` matched before `m`), in any order, each number
//! with an optional leading `-`; surrounding whitespace is trimmed; a repeated unit overwrites
//! the earlier value. `ToMinutes`: m=1, h=60, d=1440, w=10080, mo=30 d, y=365 d.

use std::fmt;

/// Minutes per unit.
const MIN_PER_HOUR: i64 = 60;
const MIN_PER_DAY: i64 = 24 * MIN_PER_HOUR;
const MIN_PER_WEEK: i64 = 7 * MIN_PER_DAY;
const MIN_PER_MONTH: i64 = 30 * MIN_PER_DAY;
const MIN_PER_YEAR: i64 = 365 * MIN_PER_DAY;

/// A parsed `maxRetentionPeriod`: one count per unit (0 when absent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionPeriod {
    /// `y`
    pub years: i64,
    /// `mo`
    pub months: i64,
    /// `w`
    pub weeks: i64,
    /// `d`
    pub days: i64,
    /// `h`
    pub hours: i64,
    /// `m`
    pub minutes: i64,
}

/// Why a `maxRetentionPeriod` string is invalid. Messages name the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    /// Empty (or whitespace-only) string.
    #[error("maxRetentionPeriod: empty duration")]
    Empty,
    /// A unit (or other text) where a number was expected, e.g. `"mo"`.
    #[error("maxRetentionPeriod {input:?}: no number found at {rest:?}")]
    NoNumber {
        /// The whole input.
        input: String,
        /// The text where a number was expected.
        rest: String,
    },
    /// A number with no unit after it, e.g. `"10"`.
    #[error("maxRetentionPeriod {input:?}: no unit found after number {number} (units: y, mo, w, d, h, m)")]
    NoUnit {
        /// The whole input.
        input: String,
        /// The number without unit.
        number: String,
    },
    /// An unknown unit, e.g. the second `m` of `"1mm"`.
    #[error("maxRetentionPeriod {input:?}: invalid unit at {rest:?} after number {number} (units: y, mo, w, d, h, m)")]
    InvalidUnit {
        /// The whole input.
        input: String,
        /// The number before the bad unit.
        number: String,
        /// The text from the bad unit on.
        rest: String,
    },
    /// The number does not fit in 64 bits.
    #[error("maxRetentionPeriod {input:?}: number {number} is out of range")]
    OutOfRange {
        /// The whole input.
        input: String,
        /// The number.
        number: String,
    },
}

/// Parses a `maxRetentionPeriod` such as `2mo`, `1y2mo`, `-1d`; inner whitespace is an error.
/// See the module doc for the grammar.
pub fn parse_max_retention_period(s: &str) -> Result<RetentionPeriod, PeriodError> {
    let input = s;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(PeriodError::Empty);
    }
    let mut p = RetentionPeriod::default();
    while !rest.is_empty() {
        let (negative, after_sign) = match rest.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let digits = after_sign
            .bytes()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 {
            return Err(PeriodError::NoNumber {
                input: input.to_string(),
                rest: rest.to_string(),
            });
        }
        let number_text = &after_sign[..digits];
        let shown = if negative {
            format!("-{number_text}")
        } else {
            number_text.to_string()
        };
        let mut n: i64 = number_text.parse().map_err(|_| PeriodError::OutOfRange {
            input: input.to_string(),
            number: shown.clone(),
        })?;
        if negative {
            n = -n;
        }
        let unit_text = &after_sign[digits..];
        if unit_text.is_empty() {
            return Err(PeriodError::NoUnit {
                input: input.to_string(),
                number: shown,
            });
        }
        let (slot, len) = if unit_text.starts_with("mo") {
            (&mut p.months, 2)
        } else {
            match unit_text.as_bytes()[0] {
                b'y' => (&mut p.years, 1),
                b'w' => (&mut p.weeks, 1),
                b'd' => (&mut p.days, 1),
                b'h' => (&mut p.hours, 1),
                b'm' => (&mut p.minutes, 1),
                _ => {
                    return Err(PeriodError::InvalidUnit {
                        input: input.to_string(),
                        number: shown,
                        rest: unit_text.to_string(),
                    })
                }
            }
        };
        *slot = n;
        rest = &unit_text[len..];
    }
    Ok(p)
}

impl RetentionPeriod {
    /// Total minutes (mo = 30 days, y = 365 days); saturates instead of overflowing.
    pub fn to_minutes(&self) -> i64 {
        [
            (self.years, MIN_PER_YEAR),
            (self.months, MIN_PER_MONTH),
            (self.weeks, MIN_PER_WEEK),
            (self.days, MIN_PER_DAY),
            (self.hours, MIN_PER_HOUR),
            (self.minutes, 1),
        ]
        .iter()
        .fold(0i64, |acc, (n, f)| acc.saturating_add(n.saturating_mul(*f)))
    }

    /// The period as a [`std::time::Duration`]; `None` when the total is negative.
    pub fn to_duration(&self) -> Option<std::time::Duration> {
        let m = self.to_minutes();
        u64::try_from(m)
            .ok()
            .map(|m| std::time::Duration::from_secs(m.saturating_mul(60)))
    }
}

impl fmt::Display for RetentionPeriod {
    /// Canonical form, largest unit first, zero units omitted (`0m` when all are zero).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = [
            (self.years, "y"),
            (self.months, "mo"),
            (self.weeks, "w"),
            (self.days, "d"),
            (self.hours, "h"),
            (self.minutes, "m"),
        ];
        let mut any = false;
        for (n, u) in parts {
            if n != 0 {
                write!(f, "{n}{u}")?;
                any = true;
            }
        }
        if !any {
            write!(f, "0m")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minutes(s: &str) -> i64 {
        parse_max_retention_period(s).unwrap().to_minutes()
    }

    #[test]
    fn spec_values() {
        // spec §6 / tutorial RetentionPolicy `maxRetentionPeriod: 2mo` = 86 400 min.
        assert_eq!(minutes("2mo"), 86_400);
        assert_eq!(minutes("1y"), 365 * 1440);
        assert_eq!(minutes("1w"), 10_080);
        assert_eq!(minutes("1d"), 1440);
        assert_eq!(minutes("1h"), 60);
        assert_eq!(minutes("1m"), 1);
    }

    #[test]
    fn sequences_any_order_and_mo_before_m() {
        let p = parse_max_retention_period("1y2mo3w4d5h6m").unwrap();
        assert_eq!(
            p,
            RetentionPeriod {
                years: 1,
                months: 2,
                weeks: 3,
                days: 4,
                hours: 5,
                minutes: 6
            }
        );
        assert_eq!(
            parse_max_retention_period("6m1mo").unwrap(),
            RetentionPeriod {
                months: 1,
                minutes: 6,
                ..Default::default()
            }
        );
        assert_eq!(minutes("5m2h"), 125);
    }

    #[test]
    fn whitespace_trimmed_negative_and_overwrite() {
        assert_eq!(minutes("  3d \n"), 3 * 1440);
        assert_eq!(minutes("-1d"), -1440);
        assert_eq!(minutes("1d-2h"), 1440 - 120);
        assert_eq!(minutes("1d2d"), 2 * 1440);
        assert_eq!(
            parse_max_retention_period("-1d").unwrap().to_duration(),
            None
        );
        assert_eq!(
            parse_max_retention_period("2mo").unwrap().to_duration(),
            Some(std::time::Duration::from_secs(86_400 * 60))
        );
    }

    #[test]
    fn spec_errors() {
        assert!(matches!(
            parse_max_retention_period("10"),
            Err(PeriodError::NoUnit { .. })
        ));
        assert!(matches!(
            parse_max_retention_period("1mm"),
            Err(PeriodError::NoNumber { .. })
        ));
        assert!(matches!(
            parse_max_retention_period("mo"),
            Err(PeriodError::NoNumber { .. })
        ));
        assert!(matches!(
            parse_max_retention_period("1x"),
            Err(PeriodError::InvalidUnit { .. })
        ));
        assert!(matches!(
            parse_max_retention_period("1d 2h"),
            Err(PeriodError::NoNumber { .. })
        ));
        assert_eq!(parse_max_retention_period("  "), Err(PeriodError::Empty));
        assert!(matches!(
            parse_max_retention_period("99999999999999999999d"),
            Err(PeriodError::OutOfRange { .. })
        ));
        let msg = parse_max_retention_period("10").unwrap_err().to_string();
        assert!(
            msg.contains("maxRetentionPeriod") && msg.contains("no unit"),
            "{msg}"
        );
    }

    #[test]
    fn display_round_trips() {
        for s in ["2mo", "1y2mo3w4d5h6m", "-1d", "0m"] {
            let p = parse_max_retention_period(s).unwrap();
            assert_eq!(parse_max_retention_period(&p.to_string()).unwrap(), p);
        }
    }
}
