//! Timestamps for table tests.

use jiff::Timestamp;

/// The timestamp of RFC 3339 text (`2024-09-19T04:50:00Z`); panics on bad input.
pub fn ts(s: &str) -> Timestamp {
    s.parse()
        .unwrap_or_else(|e| panic!("{s:?} is not an RFC 3339 timestamp: {e}"))
}
