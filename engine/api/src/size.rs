//! KubeStash's human-readable size strings (spec §5.1, `GetSize`): `"<float> <unit>"` with the
//! 1024-based units `B`, `KiB`, `MiB`, `GiB`, `TiB`; formatted as `%.3f KiB|MiB|GiB|TiB` (strict
//! `>` thresholds) or `%d B`.

/// 1 KiB.
const KIB: u64 = 1 << 10;
/// 1 MiB.
const MIB: u64 = 1 << 20;
/// 1 GiB.
const GIB: u64 = 1 << 30;
/// 1 TiB.
const TIB: u64 = 1 << 40;

/// Why a size string could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SizeError {
    /// The string is not `"<number> <unit>"` (a single space separates them).
    #[error("size {0:?} is not \"<number> <unit>\"")]
    Malformed(String),
    /// The number part is not a finite, non-negative float.
    #[error("size {0:?} has an invalid number")]
    InvalidNumber(String),
    /// The unit is not one of `B`, `KiB`, `MiB`, `GiB`, `TiB`.
    #[error("size {size:?} has unknown unit {unit:?} (expected B, KiB, MiB, GiB or TiB)")]
    UnknownUnit {
        /// The whole size string.
        size: String,
        /// The unit found.
        unit: String,
    },
}

/// Parses `"<float> <unit>"` into bytes like Go's `convertSizeToByte`: the string is split on
/// single spaces, the first part is the number, the second the unit (further parts are ignored,
/// as in Go); the product is truncated toward zero (`uint64(numeral * unit)`).
///
/// Example: `"7.791 KiB"` → 7977 bytes.
pub fn parse_size(size: &str) -> Result<u64, SizeError> {
    let mut parts = size.split(' ');
    let (Some(num), Some(unit)) = (parts.next(), parts.next()) else {
        return Err(SizeError::Malformed(size.to_string()));
    };
    let numeral: f64 = num
        .parse()
        .map_err(|_| SizeError::InvalidNumber(size.to_string()))?;
    if !numeral.is_finite() || numeral < 0.0 {
        return Err(SizeError::InvalidNumber(size.to_string()));
    }
    let factor = match unit {
        "TiB" => TIB,
        "GiB" => GIB,
        "MiB" => MIB,
        "KiB" => KIB,
        "B" => 1,
        other => {
            return Err(SizeError::UnknownUnit {
                size: size.to_string(),
                unit: other.to_string(),
            })
        }
    };
    // `as` saturates at u64::MAX, which is Go's behaviour closely enough for absurd inputs.
    Ok((numeral * factor as f64) as u64)
}

/// Formats bytes like Go's `formatBytes`: above 1 TiB/GiB/MiB/KiB (strictly greater) as
/// `%.3f <unit>`, otherwise `%d B`. Examples: 509 → `509 B`, 1024 → `1024 B`, 7977 →
/// `7.790 KiB`.
pub fn format_size(bytes: u64) -> String {
    let b = bytes as f64;
    if bytes > TIB {
        format!("{:.3} TiB", b / TIB as f64)
    } else if bytes > GIB {
        format!("{:.3} GiB", b / GIB as f64)
    } else if bytes > MIB {
        format!("{:.3} MiB", b / MIB as f64)
    } else if bytes > KIB {
        format!("{:.3} KiB", b / KIB as f64)
    } else {
        format!("{bytes} B")
    }
}

/// Sums size strings into bytes as `Snapshot.GetSize` does: empty strings are skipped, any
/// other unreadable string is an error.
pub fn sum_sizes<'a, I>(sizes: I) -> Result<u64, SizeError>
where
    I: IntoIterator<Item = &'a str>,
{
    let mut total: u64 = 0;
    for s in sizes {
        if s.is_empty() {
            continue;
        }
        total = total.saturating_add(parse_size(s)?);
    }
    Ok(total)
}

/// `Snapshot.GetSize` as a string: the formatted sum of the component sizes, or `""` when any
/// size is unreadable (Go returns the empty string then). An empty list gives `0 B`.
pub fn total_size<'a, I>(sizes: I) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    sum_sizes(sizes).map(format_size).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tutorial_values_parse() {
        // Values from the tutorial's Snapshot status.
        assert_eq!(parse_size("509 B").unwrap(), 509);
        // 7.791 * 1024 = 7977.984 -> truncated to 7977
        assert_eq!(parse_size("7.791 KiB").unwrap(), 7977);
        // 2.141 * 1024 = 2192.384 -> 2192
        assert_eq!(parse_size("2.141 KiB").unwrap(), 2192);
        // 15.974 * 1024 = 16357.376 -> 16357
        assert_eq!(parse_size("15.974 KiB").unwrap(), 16357);
        assert_eq!(parse_size("1 MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("1.5 GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("2 TiB").unwrap(), 2 << 40);
    }

    #[test]
    fn tutorial_snapshot_size_from_component_size() {
        // Tutorial 1: component `dump` size `7.791 KiB`, snapshot status size `7.790 KiB`
        // (the truncation to whole bytes loses the last digit).
        assert_eq!(total_size(["7.791 KiB"]), "7.790 KiB");
        // Tutorial 2: component `15.974 KiB`, snapshot `15.974 KiB`.
        assert_eq!(total_size(["15.974 KiB"]), "15.974 KiB");
    }

    #[test]
    fn format_thresholds_are_strict() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(509), "509 B");
        assert_eq!(format_size(1024), "1024 B");
        assert_eq!(format_size(1025), "1.001 KiB");
        assert_eq!(format_size(1 << 20), "1024.000 KiB");
        assert_eq!(format_size((1 << 20) + 1), "1.000 MiB");
        assert_eq!(format_size(1 << 30), "1024.000 MiB");
        assert_eq!(format_size(1 << 40), "1024.000 GiB");
        assert_eq!(format_size(3 << 40), "3.000 TiB");
        // 1088 B = 1.0625 KiB, an exact tie: Go's %.3f rounds half to even.
        assert_eq!(format_size(1088), "1.062 KiB");
    }

    #[test]
    fn sums_skip_empty_and_fail_on_garbage() {
        assert_eq!(sum_sizes(["509 B", "", "1 KiB"]).unwrap(), 1533);
        assert_eq!(total_size(["509 B", "", "1 KiB"]), "1.497 KiB");
        assert_eq!(total_size(Vec::<&str>::new()), "0 B");
        assert_eq!(total_size(["509"]), "");
        assert!(matches!(parse_size("509"), Err(SizeError::Malformed(_))));
        assert!(matches!(
            parse_size("1 KB"),
            Err(SizeError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_size("x KiB"),
            Err(SizeError::InvalidNumber(_))
        ));
        assert!(matches!(
            parse_size("-1 KiB"),
            Err(SizeError::InvalidNumber(_))
        ));
        assert!(matches!(
            parse_size("1  KiB"),
            Err(SizeError::UnknownUnit { .. })
        ));
    }
}
