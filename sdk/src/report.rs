//! Structured results for the Snapshot status (`kstash:addon/report`): per-part counts and
//! warnings/skipped items. Report as the task goes: a task that fails later still shows what it
//! got through.

use crate::bindings::kstash::addon::report::{self, Notice, NoticeKind, PartCount};

/// Sets the counts of part `name` (e.g. `db0`, `index logs`); a later call replaces them.
pub fn part(name: &str, items: u64, bytes: u64) {
    report::part(&PartCount {
        name: name.to_string(),
        items,
        bytes,
    });
}

/// Reports a warning about `item` (or the whole task with `None`).
pub fn warning(item: Option<&str>, message: &str) {
    report::add_notice(&Notice {
        kind: NoticeKind::Warning,
        item: item.map(str::to_string),
        message: message.to_string(),
    });
}

/// Reports that `item` was left out of the result on purpose, and why (the result is partial).
pub fn skipped(item: &str, reason: &str) {
    report::add_notice(&Notice {
        kind: NoticeKind::Skipped,
        item: Some(item.to_string()),
        message: reason.to_string(),
    });
}
