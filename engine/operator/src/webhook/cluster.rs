//! The webhook's certificate in the cluster: get-or-create the Secret holding the
//! [`CertBundle`], renew it when [`certs::check`] says so, and keep the `caBundle` of every
//! webhook of the Validating/MutatingWebhookConfiguration equal to its CA.
//!
//! Any replica may write: creation races end in `409 AlreadyExists` and the loser reads the
//! winner's Secret; renewals replace the Secret with its `resourceVersion` as a precondition,
//! so of two replicas renewing at once one wins and the other reads the winner's.

use base64::Engine;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use super::certs::{self, CertBundle, CertError, Verdict};
use super::WebhookConfig;

/// Reading or writing the webhook's Secret or configurations failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// An API call failed (`what` names the object).
    #[error("{what}: {source}")]
    Api {
        /// The call and object.
        what: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Certificates could not be made.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// Other replicas kept changing the Secret.
    #[error("Secret {0}: still changing under concurrent writers after several attempts; retrying later")]
    Contended(String),
}

fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> ClusterError {
    let what = what.into();
    move |source| ClusterError::Api { what, source }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

fn secret_object(cfg: &WebhookConfig, bundle: &CertBundle, rv: Option<String>) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(cfg.secret.clone()),
            namespace: Some(cfg.namespace.clone()),
            resource_version: rv,
            labels: Some(
                [(
                    "app.kubernetes.io/managed-by".to_string(),
                    "kstash-operator".to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(bundle.to_data()),
        ..Default::default()
    }
}

/// The Secret's bundle, created or renewed as needed (see the module's documentation).
pub async fn ensure_secret(
    client: &kube::Client,
    cfg: &WebhookConfig,
) -> Result<CertBundle, ClusterError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &cfg.namespace);
    let name = format!("{}/{}", cfg.namespace, cfg.secret);
    for _ in 0..5 {
        let now = jiff::Timestamp::now();
        let current = api
            .get_opt(&cfg.secret)
            .await
            .map_err(api_err(format!("reading Secret {name}")))?;
        let Some(secret) = current else {
            let bundle = certs::generate(&cfg.service, &cfg.namespace, now)?;
            match api
                .create(&PostParams::default(), &secret_object(cfg, &bundle, None))
                .await
            {
                Ok(_) => {
                    tracing::info!(secret = %name, "webhook certificate created");
                    return Ok(bundle);
                }
                // Another replica created it first: use theirs.
                Err(e) if is_status(&e, 409) => continue,
                Err(e) => return Err(api_err(format!("creating Secret {name}"))(e)),
            }
        };
        let stored = CertBundle::from_data(&secret.data.clone().unwrap_or_default());
        let next = match &stored {
            Ok(b) => match certs::check(b, &cfg.service, &cfg.namespace, now) {
                Verdict::Keep => return Ok(b.clone()),
                Verdict::RenewLeaf => {
                    tracing::info!(secret = %name, "webhook serving certificate expires within {} days: renewing it", certs::RENEW_BEFORE_DAYS);
                    certs::renew_leaf(b, &cfg.service, &cfg.namespace, now)?
                }
                Verdict::Regenerate(why) => {
                    tracing::warn!(secret = %name, reason = %why, "webhook certificate unusable: making a new CA and certificate");
                    certs::generate(&cfg.service, &cfg.namespace, now)?
                }
            },
            Err(e) => {
                tracing::warn!(secret = %name, error = %e, "webhook certificate unreadable: making a new CA and certificate");
                certs::generate(&cfg.service, &cfg.namespace, now)?
            }
        };
        let rv = secret.metadata.resource_version.clone();
        match api
            .replace(
                &cfg.secret,
                &PostParams::default(),
                &secret_object(cfg, &next, rv),
            )
            .await
        {
            Ok(_) => return Ok(next),
            // Another replica renewed it first: read theirs.
            Err(e) if is_status(&e, 409) => continue,
            Err(e) => return Err(api_err(format!("updating Secret {name}"))(e)),
        }
    }
    Err(ClusterError::Contended(name))
}

/// The JSON patch setting `caBundle` on every webhook of `config` whose value differs (each
/// guarded by a `test` of the webhook's name), or `None` when all match.
pub fn ca_bundle_patch(config: &Value, ca_pem: &str) -> Option<Value> {
    let want = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let mut ops = vec![];
    for (i, w) in config["webhooks"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        if w["clientConfig"]["caBundle"].as_str() == Some(want.as_str()) {
            continue;
        }
        ops.push(json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": w["name"]}));
        ops.push(json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": want}));
    }
    (!ops.is_empty()).then(|| Value::Array(ops))
}

async fn sync_one<K>(client: &kube::Client, name: &str, ca_pem: &str) -> Result<bool, ClusterError>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let kind = K::kind(&());
    let api: Api<K> = Api::all(client.clone());
    let Some(obj) = api
        .get_opt(name)
        .await
        .map_err(api_err(format!("reading {kind} {name}")))?
    else {
        tracing::warn!(%kind, %name, "webhook configuration not found: the API server does not call the webhook (install the chart with webhook.enabled=true, or pass the right --webhook-configuration)");
        return Ok(false);
    };
    let value = serde_json::to_value(&obj).unwrap_or_default();
    let Some(patch) = ca_bundle_patch(&value, ca_pem) else {
        return Ok(true);
    };
    let patch: json_patch::Patch = serde_json::from_value(patch).unwrap_or_default();
    api.patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
        .map_err(api_err(format!("patching the caBundle of {kind} {name}")))?;
    tracing::info!(%kind, %name, "webhook caBundle updated");
    Ok(true)
}

/// Sets the `caBundle` of both configurations named `cfg.configuration` to `ca_pem` where it
/// differs; `Ok(true)` when both exist.
pub async fn sync_ca_bundles(
    client: &kube::Client,
    cfg: &WebhookConfig,
    ca_pem: &str,
) -> Result<bool, ClusterError> {
    let v = sync_one::<ValidatingWebhookConfiguration>(client, &cfg.configuration, ca_pem).await?;
    let m = sync_one::<MutatingWebhookConfiguration>(client, &cfg.configuration, ca_pem).await?;
    Ok(v && m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patch_touches_only_webhooks_whose_ca_bundle_differs() {
        let want = base64::engine::general_purpose::STANDARD.encode("CA");
        let cfg = json!({"webhooks": [
            {"name": "a.x.io", "clientConfig": {"service": {"name": "s"}}},
            {"name": "b.x.io", "clientConfig": {"caBundle": want}},
            {"name": "c.x.io", "clientConfig": {"caBundle": "b2xk"}},
        ]});
        let p = ca_bundle_patch(&cfg, "CA").unwrap();
        assert_eq!(
            p,
            json!([
                {"op": "test", "path": "/webhooks/0/name", "value": "a.x.io"},
                {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": want},
                {"op": "test", "path": "/webhooks/2/name", "value": "c.x.io"},
                {"op": "add", "path": "/webhooks/2/clientConfig/caBundle", "value": want},
            ])
        );
        let mut patched = cfg.clone();
        let ops: json_patch::Patch = serde_json::from_value(p).unwrap();
        json_patch::patch(&mut patched, &ops).unwrap();
        assert_eq!(ca_bundle_patch(&patched, "CA"), None);
    }
}
