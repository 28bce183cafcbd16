//! Kinds kstash serves but does not run (BackupBatch, BackupVerifier, BackupVerificationSession):
//! each object gets a `Ready=False` condition with reason [`REASON_KIND_NOT_SUPPORTED`] and a
//! Warning Event naming the kind and what to use instead, so nothing is silently accepted and
//! never acted on. [`HANDLED_KINDS`] is the table of every served kind and who handles it; a
//! test walks the CRDs against it.

use std::marker::PhantomData;
use std::sync::Arc;

use kstash_api::core::{
    BackupBatch, BackupBatchStatus, BackupInvokerPhase, BackupVerificationSession,
    BackupVerificationSessionPhase, BackupVerificationSessionStatus, BackupVerifier,
};
use kstash_api::shared::Condition;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::shell::{self, describe, status, Reconciler, Result, Shell};

/// Reason of the `Ready=False` condition and the Warning Event on a kind kstash does not run.
pub const REASON_KIND_NOT_SUPPORTED: &str = "KindNotSupported";

/// Who handles a served kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// A reconciler or executor of the operator acts on it (the name says which).
    Reconciler(&'static str),
    /// Read by the operator when another object names it (no controller of its own).
    Referenced,
    /// Refused: [`Unsupported`] marks every object of the kind.
    Refused,
}

/// Every KubeStash kind kstash serves and who handles it.
pub const HANDLED_KINDS: &[(&str, Handling)] = &[
    ("BackupStorage", Handling::Reconciler("backupstorage")),
    ("Repository", Handling::Reconciler("repository")),
    ("Snapshot", Handling::Reconciler("snapshot")),
    ("RetentionPolicy", Handling::Referenced),
    (
        "BackupConfiguration",
        Handling::Reconciler("backupconfiguration"),
    ),
    ("BackupSession", Handling::Reconciler("backupsession")),
    ("BackupBlueprint", Handling::Referenced),
    ("RestoreSession", Handling::Reconciler("restoresession")),
    ("HookTemplate", Handling::Referenced),
    ("BackupBatch", Handling::Refused),
    ("BackupVerifier", Handling::Refused),
    ("BackupVerificationSession", Handling::Refused),
    ("Addon", Handling::Reconciler("addons")),
    ("Function", Handling::Reconciler("addons")),
];

/// A kind kstash does not run, and how its refusal is written.
pub trait NotRun:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// The controller's name (Events `kstash-<name>`).
    const CONTROLLER: &'static str;
    /// What the user should do instead.
    const INSTEAD: &'static str;
    /// The status recording the refusal, `None` for a kind without status.
    fn refused_status(&self, ready: Condition) -> Option<serde_json::Value>;
    /// Whether the object already carries the refusal.
    fn already_refused(&self) -> bool;
}

fn has_refusal(conds: &[Condition]) -> bool {
    conds
        .iter()
        .any(|c| c.reason.as_deref() == Some(REASON_KIND_NOT_SUPPORTED))
}

impl NotRun for BackupBatch {
    const CONTROLLER: &'static str = "backupbatch";
    const INSTEAD: &'static str =
        "create one BackupConfiguration per target (spec.targets) instead";
    fn refused_status(&self, ready: Condition) -> Option<serde_json::Value> {
        let mut st = self.status.clone().unwrap_or_default();
        st.phase = Some(BackupInvokerPhase::Invalid);
        kstash_api::shared::set_condition(&mut st.conditions, ready);
        serde_json::to_value::<BackupBatchStatus>(st).ok()
    }
    fn already_refused(&self) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| has_refusal(&s.conditions))
    }
}

impl NotRun for BackupVerificationSession {
    const CONTROLLER: &'static str = "backupverificationsession";
    const INSTEAD: &'static str =
        "verify a Snapshot by restoring it with a RestoreSession into a scratch target";
    fn refused_status(&self, ready: Condition) -> Option<serde_json::Value> {
        let mut st = self.status.clone().unwrap_or_default();
        st.phase = Some(BackupVerificationSessionPhase::Skipped);
        kstash_api::shared::set_condition(&mut st.conditions, ready);
        serde_json::to_value::<BackupVerificationSessionStatus>(st).ok()
    }
    fn already_refused(&self) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| has_refusal(&s.conditions))
    }
}

impl NotRun for BackupVerifier {
    const CONTROLLER: &'static str = "backupverifier";
    const INSTEAD: &'static str =
        "verify a Snapshot by restoring it with a RestoreSession into a scratch target";
    fn refused_status(&self, _ready: Condition) -> Option<serde_json::Value> {
        None
    }
    fn already_refused(&self) -> bool {
        false
    }
}

/// The message of the refusal of `kind`.
pub fn refusal_message(kind: &str, instead: &str) -> String {
    format!("kstash does not run {kind} objects; nothing will act on this one: {instead}")
}

/// The controller that marks every object of `K` as refused.
pub struct Unsupported<K>(PhantomData<fn() -> K>);

impl<K> Default for Unsupported<K> {
    fn default() -> Self {
        Unsupported(PhantomData)
    }
}

impl<K: NotRun> Reconciler for Unsupported<K> {
    type Object = K;
    const NAME: &'static str = K::CONTROLLER;
    const FINALIZER: Option<&'static str> = None;

    fn watched(&self, cx: &Shell) -> Api<K> {
        cx.ctx.scoped_api()
    }

    fn api_of(&self, cx: &Shell, obj: &K) -> Api<K> {
        shell::namespaced_api(cx, obj)
    }

    async fn apply(&self, obj: Arc<K>, cx: &Shell) -> Result<Action> {
        if obj.already_refused() {
            return Ok(Action::await_change());
        }
        let kind = K::kind(&());
        let message = refusal_message(&kind, K::INSTEAD);
        let ready = status::condition("Ready", false, REASON_KIND_NOT_SUPPORTED, &message);
        if let Some(st) = obj.refused_status(ready) {
            let api = shell::namespaced_api(cx, obj.as_ref());
            status::replace(&api, &obj.name_any(), &st).await?;
        }
        cx.events
            .warning(
                obj.as_ref(),
                REASON_KIND_NOT_SUPPORTED,
                "Refuse",
                format!("{}: {message}", describe(obj.as_ref())),
            )
            .await;
        Ok(Action::await_change())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every served kind has a reconciler or a documented refusal, and nothing else is listed.
    #[test]
    fn every_served_kind_is_handled_or_refused() {
        // KubeDB / AppCatalog kinds are targets (read by auto-backup and the executors), not
        // kinds kstash reconciles.
        let served: Vec<String> = kstash_api::crds::all()
            .iter()
            .filter(|c| c.spec.group.ends_with("kubestash.com"))
            .map(|c| c.spec.names.kind.clone())
            .collect();
        for kind in &served {
            assert!(
                HANDLED_KINDS.iter().any(|(k, _)| k == kind),
                "{kind} is served but has neither a reconciler nor a refusal in HANDLED_KINDS"
            );
        }
        for (kind, _) in HANDLED_KINDS {
            assert!(
                served.iter().any(|k| k == kind),
                "{kind} is in HANDLED_KINDS but not served"
            );
        }
        let concepts = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/concepts.md"
        ))
        .expect("docs/concepts.md");
        for (kind, h) in HANDLED_KINDS {
            if *h == Handling::Refused {
                assert!(
                    concepts.contains(&format!("`{kind}`")),
                    "the refusal of {kind} is not documented in docs/concepts.md"
                );
            }
        }
    }

    #[test]
    fn refusals_carry_the_reason_and_a_phase() {
        let ready = status::condition("Ready", false, REASON_KIND_NOT_SUPPORTED, "m");
        let bb = BackupBatch::new("b", Default::default());
        let st = bb.refused_status(ready.clone()).expect("status");
        assert_eq!(st["phase"], "Invalid");
        assert_eq!(st["conditions"][0]["reason"], REASON_KIND_NOT_SUPPORTED);
        let v = BackupVerificationSession::new("v", Default::default());
        let st = v.refused_status(ready).expect("status");
        assert_eq!(st["phase"], "Skipped");
        let refused: BackupVerificationSession = serde_json::from_value(serde_json::json!({
            "apiVersion": "core.kubestash.com/v1alpha1", "kind": "BackupVerificationSession",
            "metadata": {"name": "v"}, "spec": {}, "status": st,
        }))
        .expect("parses");
        assert!(refused.already_refused());
        assert!(!v.already_refused());
    }
}
