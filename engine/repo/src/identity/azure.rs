//! The operator's Azure identity, for Azure Blob storages that name no storage Secret:
//!
//! 1. **Azure Workload Identity**: `AZURE_FEDERATED_TOKEN_FILE` (the projected service-account
//!    token), `AZURE_CLIENT_ID`, `AZURE_TENANT_ID` and optionally `AZURE_AUTHORITY_HOST`
//!    (default `https://login.microsoftonline.com/`), as Azure's mutating webhook injects them
//!    into a pod labelled `azure.workload.identity/use: "true"` whose ServiceAccount carries
//!    `azure.workload.identity/client-id`. The token is exchanged at Microsoft Entra ID for a
//!    storage token (scope `https://storage.azure.com/.default`); the file is re-read at each
//!    renewal.
//! 2. Otherwise **anonymous**: requests are sent unsigned (public containers).
//!
//! Azure's instance metadata (managed identity), the Azure CLI and account keys in the
//! environment are never used: they are the node's or the machine's identity.

use std::path::PathBuf;
use std::sync::OnceLock;

use std::time::Duration;

use bytes::Bytes;
use reqsign_azure_storage::Credential;
use reqsign_core::time::Timestamp;
use reqsign_core::{Context, ProvideCredential, ProvideCredentialChain};

use super::{of_process_once, var, Cloud, Explained, IdentityError, LastFailure};

/// Where an Azure storage without a storage Secret gets its credentials.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AzureIdentity {
    /// Whatever this process's environment says ([`AzureIdentity::of_process`]), read at
    /// connect.
    #[default]
    FromProcess,
    /// No workload identity: requests are sent unsigned.
    Anonymous,
    /// Azure Workload Identity.
    Workload(AzureWorkload),
}

/// An Entra ID application federated with the cluster's service-account issuer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AzureWorkload {
    /// The directory (`AZURE_TENANT_ID`).
    pub tenant_id: String,
    /// The application or user-assigned identity (`AZURE_CLIENT_ID`).
    pub client_id: String,
    /// The projected token (`AZURE_FEDERATED_TOKEN_FILE`), read at each renewal.
    pub token_file: PathBuf,
    /// The Entra ID endpoint (`AZURE_AUTHORITY_HOST`).
    pub authority_host: String,
}

impl AzureIdentity {
    /// Reads the identity from environment variables (`env` looks one up). Pure.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Self, IdentityError> {
        let Some(token_file) = var(&env, "AZURE_FEDERATED_TOKEN_FILE") else {
            return Ok(AzureIdentity::Anonymous);
        };
        let missing: Vec<&str> = ["AZURE_CLIENT_ID", "AZURE_TENANT_ID"]
            .into_iter()
            .filter(|k| var(&env, k).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(IdentityError::new(
                Cloud::Azure,
                format!(
                    "AZURE_FEDERATED_TOKEN_FILE is set but {} is not (annotate the operator's \
                     ServiceAccount with azure.workload.identity/client-id)",
                    missing.join(" and ")
                ),
            ));
        }
        Ok(AzureIdentity::Workload(AzureWorkload {
            tenant_id: var(&env, "AZURE_TENANT_ID").unwrap_or_default(),
            client_id: var(&env, "AZURE_CLIENT_ID").unwrap_or_default(),
            token_file: PathBuf::from(token_file),
            authority_host: var(&env, "AZURE_AUTHORITY_HOST")
                .unwrap_or_else(|| "https://login.microsoftonline.com/".into()),
        }))
    }

    /// The identity of this process, read from its environment once.
    pub fn of_process() -> Result<Self, IdentityError> {
        static ONCE: OnceLock<Result<AzureIdentity, IdentityError>> = OnceLock::new();
        of_process_once(&ONCE, |env| AzureIdentity::from_env(env))
    }

    /// This identity with [`AzureIdentity::FromProcess`] replaced by the process's own.
    pub fn resolved(&self) -> Result<Self, IdentityError> {
        match self {
            AzureIdentity::FromProcess => AzureIdentity::of_process(),
            other => Ok(other.clone()),
        }
    }

    /// The credential chain for opendal's Azure Blob service, or `None` for anonymous requests.
    pub(crate) fn credential_chain(
        &self,
        last_failure: &LastFailure,
    ) -> Result<Option<ProvideCredentialChain<Credential>>, IdentityError> {
        Ok(match self.resolved()? {
            AzureIdentity::FromProcess | AzureIdentity::Anonymous => None,
            AzureIdentity::Workload(w) => {
                let provider = EntraExchange {
                    workload: w.clone(),
                };
                Some(ProvideCredentialChain::new().push(Explained::new(
                    provider,
                    Cloud::Azure,
                    format!(
                        "Entra ID {} (tenant {}, client {})",
                        w.authority_host.trim_end_matches('/'),
                        w.tenant_id,
                        w.client_id
                    ),
                    "check the federated credential of the client and the token file \
                     (AZURE_FEDERATED_TOKEN_FILE)",
                    last_failure,
                )))
            }
        })
    }
}

/// The federated-credential exchange at Entra ID. reqsign's provider does the same request but
/// drops Entra ID's answer on failure, and its `AADSTS…` description is what tells the admin
/// which part of the federation is wrong (issuer, subject, audience).
#[derive(Debug)]
struct EntraExchange {
    workload: AzureWorkload,
}

/// Entra ID's token answer, success or error.
#[derive(serde::Deserialize)]
struct EntraAnswer {
    access_token: Option<String>,
    expires_in: Option<u64>,
    error: Option<String>,
    error_description: Option<String>,
}

impl ProvideCredential for EntraExchange {
    type Credential = Credential;

    async fn provide_credential(&self, ctx: &Context) -> reqsign_core::Result<Option<Credential>> {
        let w = &self.workload;
        let token = tokio::fs::read_to_string(&w.token_file)
            .await
            .map_err(|e| {
                reqsign_core::Error::config_invalid(format!(
                    "cannot read the federated token file {} (AZURE_FEDERATED_TOKEN_FILE): {e}",
                    w.token_file.display()
                ))
            })?;
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("scope", "https://storage.azure.com/.default")
            .append_pair("client_id", &w.client_id)
            .append_pair(
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            )
            .append_pair("client_assertion", token.trim())
            .append_pair("grant_type", "client_credentials")
            .finish();
        let url = format!(
            "{}/{}/oauth2/v2.0/token",
            w.authority_host.trim_end_matches('/'),
            w.tenant_id
        );
        let req = http::Request::builder()
            .method("POST")
            .uri(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Bytes::from(body))
            .map_err(|e| reqsign_core::Error::config_invalid(format!("token request: {e}")))?;
        let resp = ctx.http_send(req).await?;
        let status = resp.status();
        let answer: Option<EntraAnswer> = serde_json::from_slice(resp.body()).ok();
        match answer {
            Some(EntraAnswer {
                access_token: Some(token),
                expires_in,
                ..
            }) if status.is_success() => {
                let expires = Timestamp::now() + Duration::from_secs(expires_in.unwrap_or(300));
                Ok(Some(Credential::with_bearer_token(&token, Some(expires))))
            }
            answer => {
                let why = match answer {
                    Some(a) => format!(
                        "{} {}",
                        a.error.unwrap_or_default(),
                        a.error_description.unwrap_or_default()
                    ),
                    None => String::from_utf8_lossy(resp.body()).trim().to_string(),
                };
                Err(reqsign_core::Error::credential_invalid(format!(
                    "{url} answered {status}: {}",
                    why.trim()
                ))
                .set_retryable(status.is_server_error()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{env_lookup, tests::env};
    use super::*;

    #[test]
    fn identity_from_environment() {
        let injected = env(&[
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                "/var/run/secrets/azure/tokens/azure-identity-token",
            ),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_TENANT_ID", "t"),
        ]);
        let AzureIdentity::Workload(w) = AzureIdentity::from_env(env_lookup(&injected)).unwrap()
        else {
            panic!("expected workload identity")
        };
        assert_eq!(w.authority_host, "https://login.microsoftonline.com/");
        assert_eq!((w.client_id.as_str(), w.tenant_id.as_str()), ("c", "t"));

        let half = env(&[
            ("AZURE_FEDERATED_TOKEN_FILE", "/t"),
            ("AZURE_CLIENT_ID", "c"),
        ]);
        let e = AzureIdentity::from_env(env_lookup(&half)).unwrap_err();
        assert!(e.to_string().contains("AZURE_TENANT_ID is not"), "{e}");

        // A client id alone means a managed identity through IMDS: the node's, never used.
        let imds = env(&[("AZURE_CLIENT_ID", "c"), ("AZURE_STORAGE_KEY", "k")]);
        assert_eq!(
            AzureIdentity::from_env(env_lookup(&imds)).unwrap(),
            AzureIdentity::Anonymous
        );
    }
}
