//! Connecting to the cluster like kubectl does: `--kubeconfig` (else `$KUBECONFIG`, else
//! `~/.kube/config`, else the in-cluster service account), `--context`, and `-n/--namespace`
//! (else the context's namespace, else `default`).

use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// kubectl's connection flags.
#[derive(Args, Clone, Debug, Default)]
pub struct KubeArgs {
    /// Namespace of the object (default: the kubeconfig context's namespace).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Path to the kubeconfig file (default: `$KUBECONFIG`, then `~/.kube/config`).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
}

/// A connected client and the namespace the verb works in.
pub struct Cluster {
    /// The API client.
    pub client: Client,
    /// `-n`, else the context's namespace, else `default`.
    pub namespace: String,
}

impl KubeArgs {
    /// Loads the kubeconfig (or in-cluster config) and builds a client.
    pub async fn connect(&self) -> Result<Cluster> {
        let config = self.config().await?;
        let namespace = match &self.namespace {
            Some(ns) if !ns.is_empty() => ns.clone(),
            _ => config.default_namespace.clone(),
        };
        let client = Client::try_from(config).context("building the Kubernetes client")?;
        Ok(Cluster { client, namespace })
    }

    async fn config(&self) -> Result<Config> {
        let opts = KubeConfigOptions {
            context: self.context.clone(),
            cluster: None,
            user: None,
        };
        let kubeconfig = match &self.kubeconfig {
            Some(path) => Some(
                Kubeconfig::read_from(path)
                    .with_context(|| format!("--kubeconfig {}: cannot read", path.display()))?,
            ),
            None => match Kubeconfig::read() {
                Ok(kc) => Some(kc),
                Err(e) if std::env::var_os("KUBECONFIG").is_some() => {
                    return Err(anyhow!(e)).context("$KUBECONFIG: cannot read");
                }
                Err(_) => None,
            },
        };
        match kubeconfig {
            Some(kc) => Config::from_custom_kubeconfig(kc, &opts)
                .await
                .map_err(|e| match &self.context {
                    Some(ctx) => anyhow!(e).context(format!("--context {ctx}")),
                    None => anyhow!(e).context("loading the kubeconfig"),
                }),
            None => Config::incluster().map_err(|e| {
                anyhow!(e).context(
                    "no kubeconfig found (pass --kubeconfig or set KUBECONFIG) and not running in a cluster",
                )
            }),
        }
    }
}

impl Cluster {
    /// A namespaced API handle in `ns`.
    pub fn api<K>(&self, ns: &str) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), ns)
    }
}

/// Gets `kind ns/name`, with errors that name the object: `backupconfiguration demo/foo not found`.
pub async fn get<K>(api: &Api<K>, kind: &str, ns: &str, name: &str) -> Result<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name)
        .await
        .with_context(|| format!("reading {kind} {ns}/{name}"))?
        .ok_or_else(|| anyhow!("{kind} {ns}/{name} not found"))
}
