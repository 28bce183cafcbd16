//! What a backup task's report adds to its Snapshot (pure): the components the addon declares,
//! its per-part counts and its notices.
//!
//! - Components: the task's `tasks.components` (the runtime falls back to the addon's
//!   `components`); one Snapshot component, with its own restic repository, per name. An addon
//!   that declares none gets [`COMPONENT_DUMP`].
//! - Parts (`report.part`): the annotation `kstash.io/parts` (JSON), e.g. one entry per Redis
//!   logical database.
//! - Warnings (`report.add-notice` warning): the condition [`TYPE_ADDON_WARNINGS`] (status
//!   `True`, the warnings in its message) and a Warning event; the Snapshot still succeeds.
//! - Skipped items on a backup: the Snapshot does not hold everything asked for, so every
//!   component fails with the skipped items named ([`Notes::skipped_error`]).

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kstash_api::constants::COMPONENT_DUMP;
use kstash_api::shared::{Condition, ConditionStatus};
use kstash_runtime::{NoticeKind, TaskDef, TaskReport};

/// Snapshot condition type: the addon reported warnings.
pub const TYPE_ADDON_WARNINGS: &str = "AddonWarnings";
/// Reason of [`TYPE_ADDON_WARNINGS`].
pub const REASON_ADDON_REPORTED_WARNINGS: &str = "AddonReportedWarnings";
/// At most this many notices are quoted in a message.
const MAX_QUOTED: usize = 20;

/// The components a backup task produces: its declared ones, else `dump`.
pub fn components_of(task: Option<&TaskDef>) -> Vec<String> {
    match task {
        Some(t) if !t.components.is_empty() => t.components.clone(),
        _ => vec![COMPONENT_DUMP.to_string()],
    }
}

/// A task report, digested for the Snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notes {
    /// `kstash.io/parts`: JSON of the per-part counts, `None` without parts.
    pub parts: Option<String>,
    /// Warnings (and the addon's plain `warnings`), one message; `None` without.
    pub warnings: Option<String>,
    /// Skipped items, one message; `None` without.
    pub skipped: Option<String>,
}

fn quote(items: &[String]) -> String {
    let mut s = items
        .iter()
        .take(MAX_QUOTED)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if items.len() > MAX_QUOTED {
        s.push_str(&format!("; … and {} more", items.len() - MAX_QUOTED));
    }
    s
}

impl Notes {
    /// Digests `report`.
    pub fn of(report: &TaskReport) -> Notes {
        let parts = (!report.parts.is_empty()).then(|| {
            let m: BTreeMap<&str, serde_json::Value> = report
                .parts
                .iter()
                .map(|p| {
                    (
                        p.name.as_str(),
                        serde_json::json!({"items": p.items, "bytes": p.bytes}),
                    )
                })
                .collect();
            serde_json::to_string(&m).unwrap_or_default()
        });
        let line = |n: &kstash_runtime::Notice| match &n.item {
            Some(i) => format!("{i}: {}", n.message),
            None => n.message.clone(),
        };
        let mut warnings: Vec<String> = report.warnings.clone();
        warnings.extend(
            report
                .notices
                .iter()
                .filter(|n| n.kind == NoticeKind::Warning)
                .map(line),
        );
        let skipped: Vec<String> = report
            .notices
            .iter()
            .filter(|n| n.kind == NoticeKind::Skipped)
            .map(line)
            .collect();
        Notes {
            parts,
            warnings: (!warnings.is_empty()).then(|| {
                format!(
                    "the addon reported {} warning(s): {}",
                    warnings.len(),
                    quote(&warnings)
                )
            }),
            skipped: (!skipped.is_empty()).then(|| quote(&skipped)),
        }
    }

    /// The component error when items were skipped: the backup is incomplete.
    pub fn skipped_error(&self) -> Option<String> {
        self.skipped.as_ref().map(|s| {
            format!("incomplete: the addon skipped items, so the snapshot does not hold everything asked for: {s}")
        })
    }

    /// The Snapshot condition for the warnings, if any.
    pub fn condition(&self, now: Timestamp) -> Option<Condition> {
        self.warnings.as_ref().map(|w| Condition {
            type_: TYPE_ADDON_WARNINGS.into(),
            status: ConditionStatus::True,
            reason: Some(REASON_ADDON_REPORTED_WARNINGS.into()),
            message: Some(w.clone()),
            last_transition_time: Time(now),
            observed_generation: None,
            severity: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kstash_runtime::{Notice, PartCount, TaskKind};

    #[test]
    fn components_from_the_task() {
        let def = TaskDef {
            name: "logical-backup".into(),
            kind: TaskKind::Backup,
            description: String::new(),
            params: vec![],
            components: vec!["globals".into(), "db-app".into()],
        };
        assert_eq!(components_of(Some(&def)), ["globals", "db-app"]);
        let none = TaskDef {
            components: vec![],
            ..def
        };
        assert_eq!(components_of(Some(&none)), ["dump"]);
        assert_eq!(components_of(None), ["dump"]);
    }

    #[test]
    fn parts_warnings_and_skips() {
        let mut r = TaskReport {
            items: 0,
            bytes: 0,
            warnings: vec![],
            bytes_written: 0,
            streams: vec![],
            requests: 0,
            connections: 0,
            target_bytes_in: 0,
            target_bytes_out: 0,
            parts: vec![],
            notices: vec![],
            denied: vec![],
            duration: std::time::Duration::ZERO,
        };
        assert_eq!(Notes::of(&r), Notes::default());
        assert!(Notes::default().condition(Timestamp::UNIX_EPOCH).is_none());
        r.parts = vec![
            PartCount {
                name: "db0".into(),
                items: 3,
                bytes: 40,
            },
            PartCount {
                name: "db1".into(),
                items: 1,
                bytes: 9,
            },
        ];
        r.notices = vec![
            Notice {
                kind: NoticeKind::Warning,
                item: Some("key big".into()),
                message: "read twice".into(),
            },
            Notice {
                kind: NoticeKind::Skipped,
                item: Some("key gone".into()),
                message: "deleted during the backup".into(),
            },
        ];
        let n = Notes::of(&r);
        assert_eq!(
            n.parts.as_deref(),
            Some(r#"{"db0":{"items":3,"bytes":40},"db1":{"items":1,"bytes":9}}"#)
        );
        let c = n.condition(Timestamp::UNIX_EPOCH).unwrap();
        assert_eq!(c.type_, TYPE_ADDON_WARNINGS);
        assert_eq!(
            c.message.as_deref(),
            Some("the addon reported 1 warning(s): key big: read twice")
        );
        assert_eq!(
            n.skipped_error().unwrap(),
            "incomplete: the addon skipped items, so the snapshot does not hold everything asked for: key gone: deleted during the backup"
        );
    }
}
