//! Kubernetes Events of the executors (best effort: a failed publish is logged, never fatal).

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Resource;

/// Publishes Events as `kstash-executor` / the operator's identity.
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
}

impl Events {
    /// A publisher for `identity`.
    pub fn new(client: kube::Client, identity: &str) -> Self {
        Events {
            recorder: Recorder::new(
                client,
                Reporter {
                    controller: "kstash-executor".into(),
                    instance: Some(identity.to_string()),
                },
            ),
        }
    }

    /// Publishes a Normal (`warning == false`) or Warning event about `obj`.
    pub async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        action: &str,
        note: impl Into<String>,
    ) {
        let note: String = note.into();
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            note: Some(note.chars().take(1000).collect()),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::debug!(%reason, "publishing event failed: {e}");
        }
    }
}
