//! Progress reporting. The host throttles and displays it (a progress bar on a terminal).

/// Reports `done` of `total` (if known) `unit`s (e.g. `"bytes"`, `"documents"`) in `stage`.
pub fn report(done: u64, total: Option<u64>, unit: &str, stage: &str) {
    crate::bindings::kstash::addon::progress::report(done, total, unit, stage);
}
