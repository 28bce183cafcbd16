//! The operator's Google Cloud identity, for GCS storages that name no storage Secret:
//!
//! 1. **Workload identity federation**: `GOOGLE_APPLICATION_CREDENTIALS` names an
//!    `external_account` configuration whose `credential_source` is a token file (the projected
//!    service-account token) or a URL. The subject token is exchanged at Google's STS (the
//!    configuration's `token_url`), optionally for a service account's token
//!    (`service_account_impersonation_url`). Any other kind of file (a service-account key, an
//!    `authorized_user`, an AWS or executable source) is refused: a key belongs in the storage
//!    Secret, and the other sources read the machine's identity or run programs.
//! 2. **GKE Workload Identity**: `KSTASH_GCP_WORKLOAD_IDENTITY=gke`. The GKE metadata server
//!    (`GCE_METADATA_HOST`, default `metadata.google.internal`) gives the token of the Google
//!    service account bound to the operator's Kubernetes ServiceAccount
//!    (`iam.gke.io/gcp-service-account`). It must be opted into: on a node pool without Workload
//!    Identity the same address answers with the *node's* service account, which a tenant's
//!    storage must not borrow.
//! 3. Otherwise **anonymous**: requests are sent unsigned.

use std::path::PathBuf;
use std::sync::OnceLock;

use reqsign_core::ProvideCredentialChain;
use reqsign_google::{Credential, FileCredentialProvider, VmMetadataCredentialProvider};

use super::{of_process_once, var, Cloud, Explained, IdentityError, LastFailure};

/// The variable that opts into GKE Workload Identity.
pub const GKE_VARIABLE: &str = "KSTASH_GCP_WORKLOAD_IDENTITY";

/// Where a GCS storage without a storage Secret gets its credentials.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum GcpIdentity {
    /// Whatever this process's environment says ([`GcpIdentity::of_process`]), read at connect.
    #[default]
    FromProcess,
    /// No workload identity: requests are sent unsigned.
    Anonymous,
    /// GKE Workload Identity through the GKE metadata server.
    Gke(GkeMetadata),
    /// Workload identity federation: an `external_account` configuration file.
    Federation(PathBuf),
}

/// The GKE metadata server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GkeMetadata {
    /// `host[:port]` of the metadata server (`GCE_METADATA_HOST`).
    pub host: String,
}

impl GcpIdentity {
    /// Reads the identity from environment variables (`env` looks one up). Pure.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Self, IdentityError> {
        let gke = match var(&env, GKE_VARIABLE) {
            None => None,
            Some(v) if v == "gke" => Some(GkeMetadata {
                host: var(&env, "GCE_METADATA_HOST")
                    .unwrap_or_else(|| "metadata.google.internal".into()),
            }),
            Some(v) => {
                return Err(IdentityError::new(
                    Cloud::Gcp,
                    format!("{GKE_VARIABLE} is `{v}`; the only value is `gke`"),
                ))
            }
        };
        match (var(&env, "GOOGLE_APPLICATION_CREDENTIALS"), gke) {
            (Some(_), Some(_)) => Err(IdentityError::new(
                Cloud::Gcp,
                format!("both GOOGLE_APPLICATION_CREDENTIALS and {GKE_VARIABLE} are set; set one"),
            )),
            (Some(file), None) => Ok(GcpIdentity::Federation(PathBuf::from(file))),
            (None, Some(gke)) => Ok(GcpIdentity::Gke(gke)),
            (None, None) => Ok(GcpIdentity::Anonymous),
        }
    }

    /// The identity of this process, read from its environment once.
    pub fn of_process() -> Result<Self, IdentityError> {
        static ONCE: OnceLock<Result<GcpIdentity, IdentityError>> = OnceLock::new();
        of_process_once(&ONCE, |env| GcpIdentity::from_env(env))
    }

    /// This identity with [`GcpIdentity::FromProcess`] replaced by the process's own.
    pub fn resolved(&self) -> Result<Self, IdentityError> {
        match self {
            GcpIdentity::FromProcess => GcpIdentity::of_process(),
            other => Ok(other.clone()),
        }
    }

    /// The credential chain for opendal's GCS service, or `None` for anonymous requests.
    pub(crate) fn credential_chain(
        &self,
        last_failure: &LastFailure,
    ) -> Result<Option<ProvideCredentialChain<Credential>>, IdentityError> {
        Ok(match self.resolved()? {
            GcpIdentity::FromProcess | GcpIdentity::Anonymous => None,
            GcpIdentity::Gke(gke) => Some(ProvideCredentialChain::new().push(Explained::new(
                VmMetadataCredentialProvider::new().with_endpoint(&gke.host),
                Cloud::Gcp,
                format!("the GKE metadata server {}", gke.host),
                "enable Workload Identity on the node pool and annotate the operator's \
                 ServiceAccount with iam.gke.io/gcp-service-account",
                last_failure,
            ))),
            GcpIdentity::Federation(path) => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    IdentityError::new(
                        Cloud::Gcp,
                        format!(
                            "cannot read GOOGLE_APPLICATION_CREDENTIALS {}: {e}",
                            path.display()
                        ),
                    )
                })?;
                check_federation_config(&text).map_err(|reason| {
                    IdentityError::new(
                        Cloud::Gcp,
                        format!(
                            "GOOGLE_APPLICATION_CREDENTIALS {}: {reason}",
                            path.display()
                        ),
                    )
                })?;
                let path = path.display().to_string();
                Some(ProvideCredentialChain::new().push(Explained::new(
                    FileCredentialProvider::new(&path),
                    Cloud::Gcp,
                    format!("the external account of {path}"),
                    "check the workload identity pool provider and the token file",
                    last_failure,
                )))
            }
        })
    }
}

/// Checks that a credentials file is an `external_account` reading a file or a URL.
fn check_federation_config(text: &str) -> Result<(), String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    match v["type"].as_str() {
        Some("external_account") => {}
        Some(other) => {
            return Err(format!(
                "is of type `{other}`; only `external_account` (workload identity federation) \
                 is read from the environment, a key belongs in the storage Secret \
                 (GOOGLE_SERVICE_ACCOUNT_JSON_KEY)"
            ))
        }
        None => return Err("has no `type`".into()),
    }
    let source = &v["credential_source"];
    if source.get("environment_id").is_some() || source.get("executable").is_some() {
        return Err(
            "credential_source must be a `file` or a `url` (an AWS source reads the node's \
             identity, an executable runs a program)"
                .into(),
        );
    }
    if source.get("file").is_none() && source.get("url").is_none() {
        return Err("credential_source has neither `file` nor `url`".into());
    }
    if let Some(url) = source["url"].as_str() {
        if is_metadata_url(url) {
            return Err(format!(
                "credential_source.url {url} is an instance metadata address: the node's \
                 identity, not the pod's"
            ));
        }
    }
    match source["format"]["type"].as_str() {
        Some("text" | "json") => {}
        _ => {
            return Err(
                "credential_source.format.type must be `text` or `json` (gcloud writes it with \
                 --credential-source-type; for a projected token: {\"type\": \"text\"})"
                    .into(),
            )
        }
    }
    for field in ["audience", "subject_token_type", "token_url"] {
        if v[field].as_str().is_none() {
            return Err(format!("`{field}` is missing"));
        }
    }
    Ok(())
}

/// Whether `url` names a cloud's instance metadata service (link-local addresses and the
/// metadata host names).
fn is_metadata_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    }
    .to_ascii_lowercase();
    if matches!(
        host.as_str(),
        "metadata.google.internal" | "metadata" | "metadata.goog"
    ) {
        return true;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => a.is_link_local(),
        Ok(std::net::IpAddr::V6(a)) => {
            (a.segments()[0] & 0xffc0) == 0xfe80 || a.segments()[..4] == [0xfd00, 0xec2, 0, 0]
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{env_lookup, tests::env};
    use super::*;

    #[test]
    fn identity_from_environment() {
        assert_eq!(
            GcpIdentity::from_env(env_lookup(&env(&[]))).unwrap(),
            GcpIdentity::Anonymous
        );
        assert_eq!(
            GcpIdentity::from_env(env_lookup(&env(&[(GKE_VARIABLE, "gke")]))).unwrap(),
            GcpIdentity::Gke(GkeMetadata {
                host: "metadata.google.internal".into()
            })
        );
        assert_eq!(
            GcpIdentity::from_env(env_lookup(&env(&[
                (GKE_VARIABLE, "gke"),
                ("GCE_METADATA_HOST", "127.0.0.1:9")
            ])))
            .unwrap(),
            GcpIdentity::Gke(GkeMetadata {
                host: "127.0.0.1:9".into()
            })
        );
        // The metadata server alone is the node's identity: not without the opt-in.
        assert_eq!(
            GcpIdentity::from_env(env_lookup(&env(&[("GCE_METADATA_HOST", "x")]))).unwrap(),
            GcpIdentity::Anonymous
        );
        let e = GcpIdentity::from_env(env_lookup(&env(&[(GKE_VARIABLE, "yes")]))).unwrap_err();
        assert!(e.to_string().contains("only value is `gke`"), "{e}");
        let both = env(&[
            (GKE_VARIABLE, "gke"),
            ("GOOGLE_APPLICATION_CREDENTIALS", "/x.json"),
        ]);
        let e = GcpIdentity::from_env(env_lookup(&both)).unwrap_err();
        assert!(e.to_string().contains("set one"), "{e}");
    }

    #[test]
    fn only_federation_files_are_read_from_the_environment() {
        let file = r#"{"type":"external_account","audience":"//iam.googleapis.com/x",
            "subject_token_type":"urn:ietf:params:oauth:token-type:jwt",
            "token_url":"https://sts.googleapis.com/v1/token",
            "credential_source":{"file":"/var/run/secrets/tokens/gcp","format":{"type":"text"}}}"#;
        check_federation_config(file).unwrap();
        let url = file.replace(
            r#""file":"/var/run/secrets/tokens/gcp""#,
            r#""url":"http://x/token""#,
        );
        check_federation_config(&url).unwrap();
        for imds in [
            "http://169.254.169.254/metadata/identity/oauth2/token",
            "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/identity",
            "http://[fd00:ec2::254]/latest",
        ] {
            let bad = file.replace(
                r#""file":"/var/run/secrets/tokens/gcp""#,
                &format!(r#""url":"{imds}""#),
            );
            assert!(
                check_federation_config(&bad)
                    .unwrap_err()
                    .contains("instance metadata"),
                "{imds}"
            );
        }
        let unformatted = file.replace(r#","format":{"type":"text"}"#, "");
        assert!(check_federation_config(&unformatted)
            .unwrap_err()
            .contains("format.type"));
        let key = r#"{"type":"service_account","private_key":"k"}"#;
        assert!(check_federation_config(key)
            .unwrap_err()
            .contains("storage Secret"));
        let aws = file.replace(
            r#""file":"/var/run/secrets/tokens/gcp""#,
            r#""environment_id":"aws1","region_url":"http://169.254.169.254""#,
        );
        assert!(check_federation_config(&aws)
            .unwrap_err()
            .contains("node's identity"));
        assert!(check_federation_config("{")
            .unwrap_err()
            .contains("not JSON"));
    }
}
