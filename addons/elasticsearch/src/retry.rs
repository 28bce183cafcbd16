//! Retry policy: which answers are retried, and how long to wait.

use std::time::Duration;

/// Exponential backoff with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Attempts in total (first try included).
    pub max_attempts: u32,
    /// Delay before the first retry.
    pub initial: Duration,
    /// Upper bound of one delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            max_attempts: 10,
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// Delay before retry number `retry` (1-based): `min(max, initial·2^(retry−1))`, scaled by a
    /// jitter factor in [0.5, 1.0] taken from `random`.
    pub fn delay(&self, retry: u32, random: u64) -> Duration {
        let exp = retry.saturating_sub(1).min(20);
        let base = self.initial.saturating_mul(1u32 << exp).min(self.max);
        let frac = 0.5 + (random % 1000) as f64 / 2000.0;
        base.mul_f64(frac)
    }
}

/// Whether a whole-request HTTP status is worth retrying (429 and 5xx, like elasticdump).
pub fn retryable_status(status: u16) -> bool {
    status == 429 || (500..=599).contains(&status)
}

/// Whether a 429 body is a permanent circuit-breaker trip (not retryable).
pub fn permanent_circuit_breaker(body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    v.get("error")
        .and_then(|e| e.get("durability"))
        .and_then(|d| d.as_str())
        == Some("PERMANENT")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_and_capped() {
        let b = Backoff {
            max_attempts: 5,
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        // random = 999 gives factor ~1.0, random = 0 gives 0.5
        assert_eq!(b.delay(1, 0), Duration::from_millis(50));
        assert!(b.delay(1, 999) <= Duration::from_millis(100));
        assert!(b.delay(3, 999) > Duration::from_millis(390));
        assert!(b.delay(30, 999) <= Duration::from_secs(1));
    }

    #[test]
    fn statuses() {
        assert!(retryable_status(429) && retryable_status(503) && retryable_status(500));
        assert!(!retryable_status(400) && !retryable_status(404) && !retryable_status(200));
    }

    #[test]
    fn circuit_breaker_permanence() {
        assert!(permanent_circuit_breaker(br#"{"error":{"type":"circuit_breaking_exception","durability":"PERMANENT"},"status":429}"#));
        assert!(!permanent_circuit_breaker(br#"{"error":{"type":"circuit_breaking_exception","durability":"TRANSIENT"},"status":429}"#));
        assert!(!permanent_circuit_breaker(b"nope"));
    }
}
