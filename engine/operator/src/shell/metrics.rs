//! What the shell counts for `/metrics`: reconciles and failures per controller (process-wide;
//! each replica reports its own).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use super::error::ErrorKind;

/// Counts of one controller.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ControllerCounts {
    /// Reconciles run.
    pub reconciles: u64,
    /// Seconds spent in them.
    pub seconds: f64,
    /// Failed reconciles by failure kind.
    pub failures: BTreeMap<&'static str, u64>,
}

static COUNTS: Mutex<BTreeMap<&'static str, ControllerCounts>> = Mutex::new(BTreeMap::new());

/// Records one reconcile of `controller`.
pub fn record(controller: &'static str, took: Duration, failure: Option<ErrorKind>) {
    let mut m = COUNTS.lock().unwrap_or_else(|e| e.into_inner());
    let c = m.entry(controller).or_default();
    c.reconciles += 1;
    c.seconds += took.as_secs_f64();
    if let Some(k) = failure {
        *c.failures.entry(k.as_str()).or_default() += 1;
    }
}

/// The counts so far, by controller.
pub fn snapshot() -> BTreeMap<&'static str, ControllerCounts> {
    COUNTS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}
