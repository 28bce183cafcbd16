//! The operator's AWS identity: where an S3 storage whose BackupStorage names no Secret gets its
//! credentials, read once from the operator's environment as the AWS SDKs read it:
//!
//! 1. **Web identity** (EKS IRSA, or any OIDC provider federated with IAM): `AWS_ROLE_ARN` and
//!    `AWS_WEB_IDENTITY_TOKEN_FILE` (the projected service-account token), optionally
//!    `AWS_ROLE_SESSION_NAME`. kstash calls STS `AssumeRoleWithWebIdentity` and re-reads the
//!    token file each time the credentials are renewed (the kubelet rotates it). The STS
//!    endpoint is `AWS_ENDPOINT_URL_STS` when set, else the regional endpoint when
//!    `AWS_STS_REGIONAL_ENDPOINTS=regional`, else `https://sts.amazonaws.com`.
//! 2. **Container credentials** (EKS Pod Identity, ECS task roles):
//!    `AWS_CONTAINER_CREDENTIALS_FULL_URI` or `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`, with
//!    `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` / `AWS_CONTAINER_AUTHORIZATION_TOKEN`.
//! 3. Otherwise **anonymous**: requests are sent unsigned (public buckets, anonymous
//!    endpoints).
//!
//! Static keys in the environment, `~/.aws` files and the node's instance metadata are never
//! used: they are not the operator's identity but the machine's.

use std::fmt;
use std::path::PathBuf;
use std::sync::OnceLock;

use bytes::Bytes;
use reqsign_aws_v4::{Credential, ECSCredentialProvider};
use reqsign_core::time::Timestamp;
use reqsign_core::{Context, ProvideCredential, ProvideCredentialChain};

use super::{of_process_once, Cloud, Explained, IdentityError, LastFailure};

/// Where an S3 storage without a storage Secret gets its credentials.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AwsIdentity {
    /// Whatever this process's environment says ([`AwsIdentity::of_process`]), read at connect.
    #[default]
    FromProcess,
    /// No workload identity: requests are sent unsigned.
    Anonymous,
    /// `AssumeRoleWithWebIdentity` with a projected token file (IRSA).
    WebIdentity(WebIdentity),
    /// The container credentials endpoint (EKS Pod Identity, ECS task role), configured by the
    /// `AWS_CONTAINER_*` variables of the operator's environment.
    Container,
}

/// An IAM role assumed with a web identity token (EKS IRSA).
#[derive(Clone, PartialEq, Eq)]
pub struct WebIdentity {
    /// The role to assume (`AWS_ROLE_ARN`).
    pub role_arn: String,
    /// The projected service-account token (`AWS_WEB_IDENTITY_TOKEN_FILE`), read at each renewal.
    pub token_file: PathBuf,
    /// The session name STS records (`AWS_ROLE_SESSION_NAME`, default `kstash`).
    pub session_name: String,
    /// The STS endpoint URL, e.g. `https://sts.amazonaws.com`.
    pub sts_endpoint: String,
}

impl fmt::Debug for WebIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebIdentity")
            .field("role_arn", &self.role_arn)
            .field("token_file", &self.token_file)
            .field("session_name", &self.session_name)
            .field("sts_endpoint", &self.sts_endpoint)
            .finish()
    }
}

impl AwsIdentity {
    /// Reads the identity from environment variables (`env` looks one up). Pure: the caller
    /// decides which environment it is.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Self, IdentityError> {
        let var = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        match (var("AWS_ROLE_ARN"), var("AWS_WEB_IDENTITY_TOKEN_FILE")) {
            (Some(role_arn), Some(token_file)) => {
                let sts_endpoint = match var("AWS_ENDPOINT_URL_STS") {
                    Some(url) => url.trim_end_matches('/').to_string(),
                    None => {
                        let regional =
                            var("AWS_STS_REGIONAL_ENDPOINTS").as_deref() == Some("regional");
                        match var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")) {
                            Some(region) if regional => {
                                format!("https://sts.{region}.amazonaws.com")
                            }
                            _ => "https://sts.amazonaws.com".to_string(),
                        }
                    }
                };
                return Ok(AwsIdentity::WebIdentity(WebIdentity {
                    role_arn,
                    token_file: PathBuf::from(token_file),
                    session_name: var("AWS_ROLE_SESSION_NAME").unwrap_or_else(|| "kstash".into()),
                    sts_endpoint,
                }));
            }
            (Some(_), None) => {
                return Err(IdentityError::new(
                    Cloud::Aws,
                    "AWS_ROLE_ARN is set but AWS_WEB_IDENTITY_TOKEN_FILE is not (for IRSA, \
                     annotate the operator's ServiceAccount with eks.amazonaws.com/role-arn)",
                ))
            }
            (None, Some(_)) => {
                return Err(IdentityError::new(
                    Cloud::Aws,
                    "AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not",
                ))
            }
            (None, None) => {}
        }
        if var("AWS_CONTAINER_CREDENTIALS_FULL_URI").is_some()
            || var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").is_some()
        {
            return Ok(AwsIdentity::Container);
        }
        Ok(AwsIdentity::Anonymous)
    }

    /// The identity of this process, read from its environment once.
    pub fn of_process() -> Result<Self, IdentityError> {
        static ONCE: OnceLock<Result<AwsIdentity, IdentityError>> = OnceLock::new();
        of_process_once(&ONCE, |env| AwsIdentity::from_env(env))
    }

    /// This identity with [`AwsIdentity::FromProcess`] replaced by the process's own.
    pub fn resolved(&self) -> Result<Self, IdentityError> {
        match self {
            AwsIdentity::FromProcess => AwsIdentity::of_process(),
            other => Ok(other.clone()),
        }
    }

    /// The credential chain for opendal's S3 service, or `None` for anonymous requests. Why the
    /// last attempt to get credentials failed is kept in `last_failure` (the chain itself only
    /// reports "failed to load signing credential").
    pub(crate) fn credential_chain(
        &self,
        last_failure: &LastFailure,
    ) -> Result<Option<ProvideCredentialChain<Credential>>, IdentityError> {
        Ok(match self.resolved()? {
            AwsIdentity::FromProcess | AwsIdentity::Anonymous => None,
            AwsIdentity::WebIdentity(w) => {
                Some(ProvideCredentialChain::new().push(WebIdentityProvider {
                    identity: w,
                    last_failure: last_failure.clone(),
                }))
            }
            AwsIdentity::Container => Some(ProvideCredentialChain::new().push(Explained::new(
                ECSCredentialProvider::new(),
                Cloud::Aws,
                "the container credentials endpoint (AWS_CONTAINER_CREDENTIALS_*)".into(),
                "check the EKS Pod Identity association of the operator's ServiceAccount",
                last_failure,
            ))),
        })
    }
}

/// STS `AssumeRoleWithWebIdentity` against a configurable endpoint (reqsign's own provider
/// only knows AWS's endpoints). The request is unsigned, as STS requires for this action.
#[derive(Debug)]
struct WebIdentityProvider {
    identity: WebIdentity,
    last_failure: LastFailure,
}

impl ProvideCredential for WebIdentityProvider {
    type Credential = Credential;

    async fn provide_credential(&self, ctx: &Context) -> reqsign_core::Result<Option<Credential>> {
        let result = self.assume_role(ctx).await;
        let mut last = self.last_failure.lock().unwrap_or_else(|e| e.into_inner());
        match &result {
            Ok(_) => *last = None,
            Err(e) => {
                tracing::warn!(role = %self.identity.role_arn, "workload identity: {e}");
                *last = Some(e.to_string());
            }
        }
        result.map(Some)
    }
}

impl WebIdentityProvider {
    async fn assume_role(&self, ctx: &Context) -> reqsign_core::Result<Credential> {
        let w = &self.identity;
        let token = tokio::fs::read_to_string(&w.token_file)
            .await
            .map_err(|e| {
                reqsign_core::Error::config_invalid(format!(
                    "cannot read the web identity token file {} (AWS_WEB_IDENTITY_TOKEN_FILE): {e}",
                    w.token_file.display()
                ))
            })?;
        let body = form(&[
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", "2011-06-15"),
            ("RoleArn", &w.role_arn),
            ("RoleSessionName", &w.session_name),
            ("WebIdentityToken", token.trim()),
        ]);
        let req = http::Request::builder()
            .method("POST")
            .uri(format!("{}/", w.sts_endpoint))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Bytes::from(body))
            .map_err(|e| reqsign_core::Error::config_invalid(format!("STS request: {e}")))?;
        let resp = ctx.http_send(req).await.map_err(|e| {
            e.with_context(format!(
                "STS AssumeRoleWithWebIdentity at {}",
                w.sts_endpoint
            ))
        })?;
        let text = String::from_utf8_lossy(resp.body());
        if !resp.status().is_success() {
            let code = xml_text(&text, "Code").unwrap_or_default();
            let message = xml_text(&text, "Message").unwrap_or_else(|| text.trim().to_string());
            let err = reqsign_core::Error::credential_invalid(format!(
                "STS AssumeRoleWithWebIdentity of role {} at {} answered {}: {code} {message}",
                w.role_arn,
                w.sts_endpoint,
                resp.status()
            ));
            return Err(err.set_retryable(resp.status().is_server_error()));
        }
        parse_credentials(&text)
    }
}

/// The `Credentials` of an `AssumeRoleWithWebIdentityResponse`.
fn parse_credentials(xml: &str) -> reqsign_core::Result<Credential> {
    let field = |tag: &str| {
        xml_text(xml, tag).ok_or_else(|| {
            reqsign_core::Error::unexpected(format!("STS answer has no <{tag}>: {xml}"))
        })
    };
    let expires_in = match xml_text(xml, "Expiration") {
        Some(t) => Some(t.parse::<Timestamp>()?),
        None => None,
    };
    Ok(Credential {
        access_key_id: field("AccessKeyId")?,
        secret_access_key: field("SecretAccessKey")?,
        session_token: Some(field("SessionToken")?),
        expires_in,
    })
}

/// The text of the first `<tag>…</tag>` element, XML entities decoded.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    let raw = xml[start..end].trim();
    Some(
        raw.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// `application/x-www-form-urlencoded` of `pairs`.
fn form(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    out.push(b as char)
                }
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::super::{env_lookup, tests::env};
    use super::*;

    #[test]
    fn identity_from_environment() {
        let irsa = env(&[
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/kstash"),
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
            ),
        ]);
        let AwsIdentity::WebIdentity(w) = AwsIdentity::from_env(env_lookup(&irsa)).unwrap() else {
            panic!("expected web identity")
        };
        assert_eq!(w.sts_endpoint, "https://sts.amazonaws.com");
        assert_eq!(w.session_name, "kstash");

        let mut regional = irsa.clone();
        regional.insert("AWS_STS_REGIONAL_ENDPOINTS".into(), "regional".into());
        regional.insert("AWS_REGION".into(), "eu-west-1".into());
        let AwsIdentity::WebIdentity(w) = AwsIdentity::from_env(env_lookup(&regional)).unwrap()
        else {
            panic!()
        };
        assert_eq!(w.sts_endpoint, "https://sts.eu-west-1.amazonaws.com");

        let mut custom = regional.clone();
        custom.insert(
            "AWS_ENDPOINT_URL_STS".into(),
            "http://127.0.0.1:5000/".into(),
        );
        custom.insert("AWS_ROLE_SESSION_NAME".into(), "op-0".into());
        let AwsIdentity::WebIdentity(w) = AwsIdentity::from_env(env_lookup(&custom)).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (w.sts_endpoint.as_str(), w.session_name.as_str()),
            ("http://127.0.0.1:5000", "op-0")
        );

        let half = env(&[("AWS_ROLE_ARN", "arn:aws:iam::1:role/kstash")]);
        let err = AwsIdentity::from_env(env_lookup(&half)).unwrap_err();
        assert!(
            err.to_string().contains("AWS_WEB_IDENTITY_TOKEN_FILE"),
            "{err}"
        );

        let pod = env(&[(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "http://169.254.170.23/v1/credentials",
        )]);
        assert_eq!(
            AwsIdentity::from_env(env_lookup(&pod)).unwrap(),
            AwsIdentity::Container
        );

        // Static keys in the environment are the machine's, not the operator's identity.
        let keys = env(&[
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
        ]);
        assert_eq!(
            AwsIdentity::from_env(env_lookup(&keys)).unwrap(),
            AwsIdentity::Anonymous
        );
    }

    #[test]
    fn sts_answer_parsed() {
        let xml = r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult><Credentials>
    <SessionToken>FQo&amp;Gb/+=</SessionToken><SecretAccessKey>secret</SecretAccessKey>
    <Expiration>2030-01-02T03:04:05Z</Expiration><AccessKeyId>ASIAEXAMPLE</AccessKeyId>
  </Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"#;
        let c = parse_credentials(xml).unwrap();
        assert_eq!(c.access_key_id, "ASIAEXAMPLE");
        assert_eq!(c.session_token.as_deref(), Some("FQo&Gb/+="));
        assert!(c.expires_in.is_some());
        assert!(parse_credentials("<Error/>").is_err());
        assert_eq!(form(&[("a b", "x/y+z=")]), "a%20b=x%2Fy%2Bz%3D");
    }
}
