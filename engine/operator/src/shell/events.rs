//! Kubernetes Events of one controller (best effort: a failed publish is logged, never fatal;
//! kube's recorder folds repeats into a series).

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Resource;

/// Publishes Events as `kstash-<controller>` with the operator's identity as instance.
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
}

impl Events {
    /// A publisher for controller `controller` of operator `identity`.
    pub fn new(client: kube::Client, controller: &str, identity: &str) -> Self {
        Events {
            recorder: Recorder::new(
                client,
                Reporter {
                    controller: format!("kstash-{controller}"),
                    instance: Some(identity.to_string()),
                },
            ),
        }
    }

    /// A Normal event about `obj`.
    pub async fn normal<K>(&self, obj: &K, reason: &str, action: &str, note: impl Into<String>)
    where
        K: Resource<DynamicType = ()>,
    {
        self.publish(obj, false, reason, action, note.into()).await
    }

    /// A Warning event about `obj`.
    pub async fn warning<K>(&self, obj: &K, reason: &str, action: &str, note: impl Into<String>)
    where
        K: Resource<DynamicType = ()>,
    {
        self.publish(obj, true, reason, action, note.into()).await
    }

    /// A Normal (`warning == false`) or Warning event about `obj`.
    pub async fn publish<K>(&self, obj: &K, warning: bool, reason: &str, action: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            note: Some(truncate(note, 1000)),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(reason, error = %e, "could not publish event");
        }
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}
