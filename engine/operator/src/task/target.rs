//! The target connection: a KubeDB database or an AppBinding → [`kstash_runtime::Target`].
//!
//! A KubeDB target (`kubedb.com`, any kind: `Postgres`, `Redis`, `Elasticsearch`, …, found
//! through API discovery) is reached through the AppBinding of the same name and namespace
//! (KubeDB creates it); an AppBinding target is used as is. The URL is `clientConfig.url`, else
//! `<scheme>://<service>.<namespace>.svc:<port><path>`, any scheme: `http(s)` targets get the
//! runtime's HTTP capability, every other scheme (`redis://`, `postgres://`, …) its TCP
//! capability, pinned to that address. The CA is
//! `clientConfig.caBundle` (base64 PEM); credentials are the `username`/`password` keys of
//! `spec.secret` (fallback `ADMIN_USERNAME`/`ADMIN_PASSWORD`, as the KubeStash plugin reads
//! them). The host injects them; the addon never sees them.

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use kstash_api::constants::{GROUP_APPCATALOG, GROUP_KUBEDB};
use kstash_api::external::{AppBinding, ClientConfig};
use kstash_api::shared::TypedObjectReference;
use kstash_api::tenancy;
use kstash_runtime::{Credentials, Target};
use kube::{Api, ResourceExt};

use super::not_found_none;

/// Why a target connection cannot be resolved.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The target kind is not one kstash knows how to reach.
    #[error("target {0}: unsupported kind (expected a KubeDB database or an AppBinding of {GROUP_APPCATALOG})")]
    UnsupportedKind(String),
    /// An object of the chain does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A field is missing or invalid.
    #[error("{object}: {field}: {reason}")]
    Invalid {
        /// The object (`AppBinding demo/es`).
        object: String,
        /// The field (`spec.clientConfig.caBundle`).
        field: String,
        /// Why.
        reason: String,
    },
    /// The tenancy rules refuse the reference.
    #[error("refused: {0}")]
    Denied(#[from] kstash_api::admission::AdmissionError),
    /// An API call failed.
    #[error("reading {what}: {source}")]
    Kube {
        /// What was read.
        what: String,
        /// The error.
        #[source]
        source: kube::Error,
    },
}

/// A resolved target.
#[derive(Debug, Clone)]
pub struct Connection {
    /// What the runtime needs.
    pub target: Target,
    /// Human description for messages: `AppBinding demo/es-quickstart (https://…:9200)`.
    pub describe: String,
    /// The database version (KubeDB `spec.version`, else the AppBinding's `spec.version`).
    pub db_version: Option<String>,
}

/// `kind namespace/name` of a reference (for messages).
pub fn ref_string(r: &TypedObjectReference, default_ns: &str) -> String {
    format!(
        "{} {}/{}",
        r.kind.as_deref().unwrap_or("<no kind>"),
        r.namespace.as_deref().unwrap_or(default_ns),
        r.name
    )
}

/// Whether `s` is a URL scheme (RFC 3986: a letter, then letters, digits, `+`, `-`, `.`).
fn is_scheme(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic())
        && c.all(|x| x.is_ascii_alphanumeric() || matches!(x, '+' | '-' | '.'))
}

/// The URL of an AppBinding's `clientConfig`, any scheme (pure). An `http(s)` URL must not carry
/// a query or fragment (its path is a base joined with every request path); no URL may carry a
/// fragment.
pub fn url_of(cc: &ClientConfig, ns: &str, object: &str) -> Result<String, TargetError> {
    let invalid = |field: &str, reason: &str| TargetError::Invalid {
        object: object.to_string(),
        field: field.to_string(),
        reason: reason.to_string(),
    };
    let check = |url: &str, field: &str| -> Result<(), TargetError> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(invalid(
                field,
                &format!("{url:?} has no scheme (e.g. https://, redis://, postgres://)"),
            ));
        };
        if !is_scheme(scheme) {
            return Err(invalid(
                field,
                &format!("{url:?}: invalid scheme {scheme:?}"),
            ));
        }
        if rest.split(['/', '?', '#']).next().unwrap_or("").is_empty() {
            return Err(invalid(field, &format!("{url:?} has no host")));
        }
        let http = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
        if rest.contains('#') || (http && rest.contains('?')) {
            return Err(invalid(
                field,
                &format!(
                    "{url:?} must not contain {}",
                    if http {
                        "`?` or `#` (an http(s) target's path is a base path)"
                    } else {
                        "`#`"
                    }
                ),
            ));
        }
        Ok(())
    };
    if let Some(u) = cc.url.as_deref().filter(|u| !u.is_empty()) {
        check(u, "spec.clientConfig.url")?;
        return Ok(u.trim_end_matches('/').to_string());
    }
    let svc = cc
        .service
        .as_ref()
        .ok_or_else(|| invalid("spec.clientConfig", "neither url nor service is set"))?;
    let name = svc
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid("spec.clientConfig.service.name", "missing"))?;
    let scheme = svc
        .scheme
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or("http");
    if !is_scheme(scheme) {
        return Err(invalid(
            "spec.clientConfig.service.scheme",
            &format!("{scheme:?} is not a URL scheme"),
        ));
    }
    let port = svc
        .port
        .ok_or_else(|| invalid("spec.clientConfig.service.port", "missing"))?;
    let mut url = format!("{scheme}://{name}.{ns}.svc:{port}");
    if let Some(p) = svc.path.as_deref().filter(|p| !p.is_empty() && *p != "/") {
        if p.contains(['?', '#']) {
            return Err(invalid(
                "spec.clientConfig.service.path",
                &format!("{p:?} must not contain `?` or `#` (put a query in service.query)"),
            ));
        }
        if !p.starts_with('/') {
            url.push('/');
        }
        url.push_str(p.trim_end_matches('/'));
    }
    if let Some(q) = svc.query.as_deref().filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(q);
        check(&url, "spec.clientConfig.service.query")?;
    }
    Ok(url)
}

/// The CA bundle of `clientConfig.caBundle` (base64 of PEM; plain PEM is accepted too).
pub fn ca_of(cc: &ClientConfig, object: &str) -> Result<Option<Vec<u8>>, TargetError> {
    let Some(b) = cc.ca_bundle.as_deref().filter(|b| !b.is_empty()) else {
        return Ok(None);
    };
    if b.contains("-----BEGIN") {
        return Ok(Some(b.as_bytes().to_vec()));
    }
    let pem = base64::engine::general_purpose::STANDARD
        .decode(b.trim())
        .map_err(|e| TargetError::Invalid {
            object: object.to_string(),
            field: "spec.clientConfig.caBundle".into(),
            reason: format!("not base64: {e}"),
        })?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE") {
        return Err(TargetError::Invalid {
            object: object.to_string(),
            field: "spec.clientConfig.caBundle".into(),
            reason: "does not contain a PEM certificate".into(),
        });
    }
    Ok(Some(pem))
}

/// Basic credentials from a Secret's data (`username`/`password`, fallback
/// `ADMIN_USERNAME`/`ADMIN_PASSWORD`).
pub fn credentials_of(
    data: &BTreeMap<String, String>,
    object: &str,
) -> Result<Credentials, TargetError> {
    let pick = |a: &str, b: &str| data.get(a).or_else(|| data.get(b)).cloned();
    match (
        pick("username", "ADMIN_USERNAME"),
        pick("password", "ADMIN_PASSWORD"),
    ) {
        (Some(username), Some(password)) => Ok(Credentials::Basic { username, password }),
        (u, _) => Err(TargetError::Invalid {
            object: object.to_string(),
            field: if u.is_none() {
                "data.username"
            } else {
                "data.password"
            }
            .into(),
            reason: "missing (keys username/password or ADMIN_USERNAME/ADMIN_PASSWORD)".into(),
        }),
    }
}

/// Decoded data of a Secret.
pub fn secret_data(s: &Secret) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
        .collect();
    for (k, v) in s.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone());
    }
    out
}

/// Who reaches a target, for the tenancy rules ([`kstash_api::tenancy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A backup (a BackupConfiguration's `spec.target`): another namespace only where the
    /// target asked for a blueprint of the requester's namespace.
    Backup,
    /// A restore (a RestoreSession's `spec.target`): its own namespace only.
    Restore,
}

/// Resolves `target` (namespace defaulting to `default_ns`, the requester's namespace) to a
/// connection, after the tenancy check for `access`: a refusal reads no AppBinding Secret.
pub async fn resolve(
    client: &kube::Client,
    target: &TypedObjectReference,
    default_ns: &str,
    access: Access,
) -> Result<Connection, TargetError> {
    let ns = target
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(default_ns)
        .to_string();
    if access == Access::Restore {
        tenancy::restore_target(default_ns, target, "spec.target")?;
    }
    let group = target.api_group.as_deref().unwrap_or("");
    let kube_err = |what: String| move |source: kube::Error| TargetError::Kube { what, source };
    let mut db_version = None;
    if group == GROUP_KUBEDB {
        let kind = target.kind.as_deref().unwrap_or("");
        let what = format!("{kind} {ns}/{} ({GROUP_KUBEDB})", target.name);
        let db = crate::kinds::get(client, GROUP_KUBEDB, kind, &ns, &target.name)
            .await
            .map_err(kube_err(what.clone()))?
            .ok_or(TargetError::NotFound(what))?;
        if access == Access::Backup {
            tenancy::backup_target(default_ns, target, Some(db.annotations()), "spec.target")?;
        }
        db_version = db.data["spec"]["version"].as_str().map(str::to_string);
    } else if group != GROUP_APPCATALOG || target.kind.as_deref() != Some("AppBinding") {
        return Err(TargetError::UnsupportedKind(ref_string(target, default_ns)));
    }
    let object = format!("AppBinding {ns}/{}", target.name);
    let api: Api<AppBinding> = Api::namespaced(client.clone(), &ns);
    let ab = not_found_none(api.get(&target.name).await)
        .map_err(kube_err(object.clone()))?
        .ok_or_else(|| TargetError::NotFound(object.clone()))?;
    if access == Access::Backup && group != GROUP_KUBEDB {
        tenancy::backup_target(default_ns, target, Some(ab.annotations()), "spec.target")?;
    }
    let cc = ab
        .spec
        .client_config
        .clone()
        .ok_or_else(|| TargetError::Invalid {
            object: object.clone(),
            field: "spec.clientConfig".into(),
            reason: "missing".into(),
        })?;
    if !ab.spec.secret_transforms.is_empty() {
        return Err(TargetError::Invalid {
            object,
            field: "spec.secretTransforms".into(),
            reason: "not supported by kstash yet".into(),
        });
    }
    let url = url_of(&cc, &ns, &object)?;
    if cc.insecure_skip_tls_verify == Some(true) {
        tracing::warn!(%object, "insecureSkipTLSVerify is ignored: kstash always verifies TLS (set caBundle)");
    }
    let mut t = Target::new(url.clone());
    t.ca_bundle_pem = ca_of(&cc, &object)?;
    if let Some(sref) = ab.spec.secret.as_ref().filter(|s| !s.name.is_empty()) {
        let sname = format!("Secret {ns}/{} (spec.secret of {object})", sref.name);
        let sapi: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let s = not_found_none(sapi.get(&sref.name).await)
            .map_err(kube_err(sname.clone()))?
            .ok_or_else(|| TargetError::NotFound(sname.clone()))?;
        t.credentials = credentials_of(&secret_data(&s), &sname)?;
    }
    Ok(Connection {
        target: t,
        describe: format!("{object} ({url})"),
        db_version: db_version.or_else(|| ab.spec.version.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kstash_api::external::ServiceReference;

    #[test]
    fn url_from_url_or_service() {
        let cc = ClientConfig {
            url: Some("https://127.0.0.1:9200/".into()),
            ..Default::default()
        };
        assert_eq!(url_of(&cc, "demo", "a").unwrap(), "https://127.0.0.1:9200");
        // KubeDB's AppBinding for the tutorial's es-quickstart (spec §9.2 step 4).
        let cc = ClientConfig {
            service: Some(ServiceReference {
                scheme: Some("https".into()),
                name: Some("es-quickstart".into()),
                port: Some(9200),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            url_of(&cc, "demo", "a").unwrap(),
            "https://es-quickstart.demo.svc:9200"
        );
        let err = url_of(&ClientConfig::default(), "demo", "AppBinding demo/x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "AppBinding demo/x: spec.clientConfig: neither url nor service is set"
        );
        let url = |u: &str| {
            url_of(
                &ClientConfig {
                    url: Some(u.into()),
                    ..Default::default()
                },
                "demo",
                "AppBinding demo/x",
            )
        };
        assert_eq!(
            url("redis://127.0.0.1:6379").unwrap(),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(
            url("postgres://db:5432/app?sslmode=require").unwrap(),
            "postgres://db:5432/app?sslmode=require"
        );
        assert_eq!(url("mongodb://m:27017/").unwrap(), "mongodb://m:27017");
        assert_eq!(
            url("https://es:9200/?x=1").unwrap_err().to_string(),
            "AppBinding demo/x: spec.clientConfig.url: \"https://es:9200/?x=1\" must not contain `?` or `#` (an http(s) target's path is a base path)"
        );
        assert_eq!(
            url("redis://r:6379#a").unwrap_err().to_string(),
            "AppBinding demo/x: spec.clientConfig.url: \"redis://r:6379#a\" must not contain `#`"
        );
        assert!(url("127.0.0.1:6379")
            .unwrap_err()
            .to_string()
            .contains("spec.clientConfig.url: \"127.0.0.1:6379\" has no scheme"));
        assert!(url("re dis://x")
            .unwrap_err()
            .to_string()
            .contains("invalid scheme"));
        // KubeDB's AppBinding of a Redis: the service with scheme redis.
        let svc = |scheme: &str, query: Option<&str>| ClientConfig {
            service: Some(ServiceReference {
                scheme: Some(scheme.into()),
                name: Some("rd".into()),
                port: Some(6379),
                query: query.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            url_of(&svc("redis", None), "demo", "a").unwrap(),
            "redis://rd.demo.svc:6379"
        );
        assert_eq!(
            url_of(&svc("postgresql", Some("sslmode=disable")), "demo", "a").unwrap(),
            "postgresql://rd.demo.svc:6379?sslmode=disable"
        );
        assert!(url_of(&svc("http", Some("a=b")), "demo", "a")
            .unwrap_err()
            .to_string()
            .contains("spec.clientConfig.service.query"));
        assert!(url_of(&svc("re dis", None), "demo", "a")
            .unwrap_err()
            .to_string()
            .contains("spec.clientConfig.service.scheme"));
    }

    #[test]
    fn ca_and_credentials() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let b64 = base64::engine::general_purpose::STANDARD.encode(pem);
        let cc = ClientConfig {
            ca_bundle: Some(b64),
            ..Default::default()
        };
        assert_eq!(ca_of(&cc, "a").unwrap().unwrap(), pem.as_bytes());
        let bad = ClientConfig {
            ca_bundle: Some("!!".into()),
            ..Default::default()
        };
        assert!(ca_of(&bad, "AppBinding demo/x")
            .unwrap_err()
            .to_string()
            .starts_with("AppBinding demo/x: spec.clientConfig.caBundle: not base64"));
        let data: BTreeMap<String, String> = [
            ("ADMIN_USERNAME".to_string(), "elastic".to_string()),
            ("ADMIN_PASSWORD".to_string(), "pw".to_string()),
        ]
        .into();
        assert!(
            matches!(credentials_of(&data, "s").unwrap(), Credentials::Basic { username, .. } if username == "elastic")
        );
        let data: BTreeMap<String, String> =
            [("username".to_string(), "elastic".to_string())].into();
        assert_eq!(
            credentials_of(&data, "Secret demo/s").unwrap_err().to_string(),
            "Secret demo/s: data.password: missing (keys username/password or ADMIN_USERNAME/ADMIN_PASSWORD)"
        );
    }
}
