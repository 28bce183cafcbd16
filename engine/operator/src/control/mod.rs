//! What the `control` controllers share: the error type, event publishing, status patches,
//! conditions and the error policy.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kstash_api::shared::{set_condition, Condition, ConditionStatus};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::Context;

/// The field manager of every write of the control controllers.
pub const FIELD_MANAGER: &str = "kstash-operator";

/// Why a reconcile failed (it is retried by the error policy).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("{what}: {source}")]
    Kube {
        /// What was being done.
        what: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
    /// Resolving a storage or reading a secret failed.
    #[error(transparent)]
    Storage(#[from] kstash_repo::resolve::ResolveError),
    /// A storage operation failed.
    #[error(transparent)]
    Repo(#[from] kstash_repo::Error),
    /// The finalizer helper failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// An object lacks a field the reconciler needs.
    #[error("{object}: {field} is missing")]
    MissingField {
        /// `kind namespace/name`.
        object: String,
        /// The field.
        field: &'static str,
    },
    /// The pure decision refused the object.
    #[error("{0}")]
    Plan(String),
}

/// `Result` of a reconcile.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Wraps a kube error with what was being done.
pub fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |e| Error::Kube {
        what,
        source: Box::new(e),
    }
}

/// Whether a kube error is an API `status` with this HTTP code.
pub fn is_code(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// The error policy of every control controller: log, then retry after 10 s.
pub fn error_policy<K: ResourceExt, C>(obj: Arc<K>, err: &Error, _ctx: Arc<C>) -> Action {
    tracing::warn!(
        object = %format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any()),
        error = %err,
        "reconcile failed"
    );
    Action::requeue(Duration::from_secs(10))
}

/// Publishes Kubernetes Events for one controller (deduplicated by kube's recorder cache).
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
}

impl Events {
    /// A publisher reporting as `controller` with the operator's identity as instance.
    pub fn new(ctx: &Context, controller: &str) -> Self {
        Events {
            recorder: Recorder::new(
                ctx.client.clone(),
                Reporter {
                    controller: format!("kstash-{controller}"),
                    instance: Some(ctx.config.identity.clone()),
                },
            ),
        }
    }

    /// Publishes an event on `obj`; a failure is logged, never fatal.
    pub async fn publish<K>(&self, obj: &K, warning: bool, reason: &str, action: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        self.publish_with(obj, &(), warning, reason, action, note)
            .await
    }

    /// [`Self::publish`] for a kind known at run time (a `DynamicObject` and its resource).
    pub async fn publish_with<K: Resource>(
        &self,
        obj: &K,
        dt: &K::DynamicType,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
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
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(dt)).await {
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

/// A condition of type `type_`, `True` when `ok`.
pub fn condition(type_: &str, ok: bool, reason: &str, message: &str) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: if ok {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        },
        last_transition_time: Time(Timestamp::now()),
        observed_generation: None,
        severity: None,
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
    }
}

/// Sets a condition (its transition time moves only when its status changes).
pub fn set(conds: &mut Vec<Condition>, type_: &str, ok: bool, reason: &str, message: &str) {
    set_condition(conds, condition(type_, ok, reason, message));
}

/// Merge-patches `status` of `name` when it differs from `current`.
pub async fn patch_status<K, S>(
    api: &Api<K>,
    name: &str,
    current: Option<&S>,
    status: &S,
) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    if current == Some(status) {
        return Ok(());
    }
    let patch = serde_json::json!({ "status": status });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(kube_err(format!("patching status of {name}")))?;
    Ok(())
}

/// What a control-half reconciler gets: the shared context and its controller's event recorder.
pub struct Ctl {
    /// The operator's context.
    pub ctx: Arc<Context>,
    /// Events reported as `kstash-<controller>`.
    pub events: Events,
}

impl Ctl {
    /// The state of controller `controller` (its name in events).
    pub fn new(ctx: &Arc<Context>, controller: &str) -> Arc<Ctl> {
        Arc::new(Ctl {
            events: Events::new(ctx, controller),
            ctx: ctx.clone(),
        })
    }
}

/// An `Api` over every namespace, or the operator's one namespace.
pub fn scoped_api<K>(ctx: &Context) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as Resource>::DynamicType: Default,
{
    ctx.scoped_api()
}

/// `namespace/name` of an object.
pub fn id<K: ResourceExt>(o: &K) -> String {
    format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any())
}

/// Maps the finalizer helper's error to ours.
pub fn finalizer_err(e: kube::runtime::finalizer::Error<Error>) -> Error {
    use kube::runtime::finalizer::Error as F;
    match e {
        F::ApplyFailed(e) | F::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    }
}

async fn list_all<K>(ctx: &Context, what: &str) -> Result<Vec<K>>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    <K as kube::Resource>::DynamicType: Default,
{
    let api: Api<K> = Api::all(ctx.client.clone());
    Ok(api
        .list(&kube::api::ListParams::default())
        .await
        .map_err(kube_err(format!("listing {what}")))?
        .items)
}

/// What the admission webhooks of KubeStash would look at (every namespace).
pub async fn admission_lookup(ctx: &Context) -> Result<kstash_api::admission::Lookup> {
    let nss: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(ctx.client.clone());
    let namespaces = nss
        .list(&kube::api::ListParams::default())
        .await
        .map_err(kube_err("listing Namespaces"))?
        .items
        .into_iter()
        .map(|n| (n.name_any(), n.labels().clone()))
        .collect();
    Ok(kstash_api::admission::Lookup {
        backup_storages: list_all::<kstash_api::storage::BackupStorage>(ctx, "BackupStorages")
            .await?,
        retention_policies: list_all::<kstash_api::storage::RetentionPolicy>(
            ctx,
            "RetentionPolicies",
        )
        .await?,
        repositories: list_all::<kstash_api::storage::Repository>(ctx, "Repositories").await?,
        hook_templates: list_all::<kstash_api::core::HookTemplate>(ctx, "HookTemplates").await?,
        namespaces,
    })
}
