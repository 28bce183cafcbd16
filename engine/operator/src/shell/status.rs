//! Status writes and conditions.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kstash_api::shared::{set_condition, Condition, ConditionStatus};
use kube::api::{Api, Patch, PatchParams};
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::{Error, Result};

/// The field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "kstash-operator";

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

/// Replaces `status` of `name` (a merge patch of the whole status object, so list fields are
/// replaced, not merged). `object` names the reconciled object in errors.
pub async fn replace<K, S>(api: &Api<K>, name: &str, status: &S) -> Result<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    <K as Resource>::DynamicType: Default,
    S: Serialize,
{
    let kind = K::kind(&Default::default()).to_string();
    let ns = api_namespace(api);
    let body = serde_json::json!({ "status": status });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER),
        &Patch::Merge(&body),
    )
    .await
    .map_err(|e| {
        Error::api(
            format!("{kind} {ns}{name}"),
            format!("patching the status of {kind} {ns}{name}"),
            e,
        )
    })
}

/// [`replace`] only when `status` differs from `current`.
pub async fn update<K, S>(api: &Api<K>, name: &str, current: Option<&S>, status: &S) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    <K as Resource>::DynamicType: Default,
    S: Serialize + PartialEq,
{
    if current == Some(status) {
        return Ok(());
    }
    replace(api, name, status).await.map(|_| ())
}

fn api_namespace<K>(api: &Api<K>) -> String
where
    K: Resource,
    <K as Resource>::DynamicType: Default,
{
    let url = api.resource_url();
    url.split("/namespaces/")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .map(|n| format!("{n}/"))
        .unwrap_or_default()
}
