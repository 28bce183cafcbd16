//! The embedded control plane with every kstash CRD, kubectl against it, and Kubernetes waits.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use kstash_api::shared::Condition;
use kstash_controlplane::{ControlPlane, RunningControlPlane, ServerConfig};
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::Resource;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::moto::{S3_ACCESS_KEY, S3_SECRET_KEY};
use crate::paths::kubectl_bin;
use crate::wait::wait_for;

/// The control plane (all kstash CRDs installed) in a temporary directory.
pub struct TestCluster {
    /// The running control plane (shut down when the test's runtime ends).
    pub cp: RunningControlPlane,
    /// A client for it.
    pub client: kube::Client,
    /// `<data dir>/kubeconfig`.
    pub kubeconfig: PathBuf,
    /// Temporary directory: control-plane data and scratch files; removed on drop.
    pub dir: tempfile::TempDir,
}

/// The control plane's configuration with `kstash_api::crds::all()` bootstrapped.
pub fn server_config(data_dir: &Path) -> ServerConfig {
    let mut cfg = ServerConfig::new(data_dir, "127.0.0.1:0".parse().unwrap());
    cfg.bootstrap_crds = kstash_api::crds::all()
        .into_iter()
        .map(|c| serde_json::to_value(c).unwrap())
        .collect();
    cfg
}

impl TestCluster {
    /// Starts the control plane on a free port with every kstash CRD.
    pub async fn start() -> TestCluster {
        Self::start_with(|_| {}).await
    }

    /// [`TestCluster::start`], adjusting the server's configuration first (e.g. `audit`).
    pub async fn start_with(adjust: impl FnOnce(&mut ServerConfig)) -> TestCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cfg = server_config(&dir.path().join("cp"));
        adjust(&mut cfg);
        let cp = ControlPlane::start(cfg).await.expect("start control plane");
        let client = cp.client().await.expect("control plane client");
        let kubeconfig = cp.kubeconfig_path.clone();
        TestCluster {
            cp,
            client,
            kubeconfig,
            dir,
        }
    }

    /// A client sending `User-Agent: <ua>` (to pick one party's requests out of the audit).
    pub async fn client_with_user_agent(&self, ua: &str) -> kube::Client {
        client_with_user_agent(&self.kubeconfig, ua).await
    }

    /// Runs `kubectl --kubeconfig <cp> <args>` (stdin from `stdin` when given).
    pub fn kubectl_raw(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(kubectl_bin());
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run kubectl");
        if let Some(input) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        child.wait_with_output().expect("kubectl output")
    }

    /// Runs kubectl and returns stdout; panics with stderr when it fails.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = self.kubectl_raw(args, None);
        assert!(
            out.status.success(),
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `kubectl apply -f -` with `yaml` on stdin; panics with stderr when it fails.
    pub fn apply_yaml(&self, yaml: &str) -> String {
        let out = self.kubectl_raw(&["apply", "-f", "-"], Some(yaml));
        assert!(
            out.status.success(),
            "kubectl apply failed: {}\n--- input ---\n{yaml}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `kubectl apply -f <path>`.
    pub fn apply_file(&self, path: &Path) -> String {
        self.kubectl(&["apply", "-f", path.to_str().unwrap()])
    }

    /// Creates a namespace (ignores AlreadyExists).
    pub async fn create_namespace(&self, ns: &str) {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let obj: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
        .unwrap();
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => panic!("create namespace {ns}: {e}"),
        }
    }

    /// Creates (or replaces) an Opaque Secret with string data.
    pub async fn create_secret(&self, ns: &str, name: &str, data: &[(&str, &str)]) {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let obj = crate::builders::secret(ns, name, data);
        let _ = api.delete(name, &Default::default()).await;
        api.create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("create secret {ns}/{name}: {e}"));
    }

    /// The tutorial's storage Secret with moto's test credentials.
    pub async fn create_s3_secret(&self, ns: &str, name: &str) {
        self.create_secret(
            ns,
            name,
            &[
                ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY),
                ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY),
            ],
        )
        .await;
    }

    /// A typed namespaced API.
    pub fn api<K>(&self, ns: &str) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Creates the object `doc` (any served kind, JSON) with the test's client.
    pub async fn create_json(&self, doc: &Value) {
        create_json(&self.client, doc).await
    }

    /// The events (`events.k8s.io/v1`) of namespace `ns` regarding object `name`.
    pub async fn events_for(&self, ns: &str, name: &str) -> Vec<Event> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), ns);
        api.list(&ListParams::default())
            .await
            .expect("list events")
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .collect()
    }

    /// Waits until an Event regarding `name` in `ns` satisfies `pred`; returns it.
    pub async fn wait_for_event(
        &self,
        ns: &str,
        name: &str,
        timeout: Duration,
        pred: impl Fn(&Event) -> bool,
    ) -> Event {
        wait_for(&format!("an event on {ns}/{name}"), timeout, || async {
            self.events_for(ns, name)
                .await
                .into_iter()
                .find(|e| pred(e))
        })
        .await
    }
}

/// A client for the control plane of `kubeconfig` sending `User-Agent: <ua>` (to pick one
/// party's requests out of the audit).
pub async fn client_with_user_agent(kubeconfig: &Path, ua: &str) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let mut cfg =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .unwrap();
    cfg.headers.push((
        http::header::USER_AGENT,
        ua.parse().expect("a header value"),
    ));
    kube::Client::try_from(cfg).unwrap()
}

/// The API resource of `kind`: core `Namespace`/`Secret`, or a kstash CRD's kind.
pub fn resource_of(kind: &str) -> kube::api::ApiResource {
    let core = |k: &str, plural: &str| kube::api::ApiResource {
        group: String::new(),
        version: "v1".into(),
        api_version: "v1".into(),
        kind: k.into(),
        plural: plural.into(),
    };
    match kind {
        "Namespace" => return core("Namespace", "namespaces"),
        "Secret" => return core("Secret", "secrets"),
        _ => {}
    }
    let crd = kstash_api::crds::by_kind(kind).unwrap_or_else(|| panic!("no CRD for kind {kind}"));
    let version = crd.spec.versions[0].name.clone();
    kube::api::ApiResource {
        api_version: format!("{}/{version}", crd.spec.group),
        group: crd.spec.group.clone(),
        version,
        kind: kind.into(),
        plural: crd.spec.names.plural.clone(),
    }
}

/// Creates the object `doc` (JSON of any kind [`resource_of`] knows) with `client`.
pub async fn create_json(client: &kube::Client, doc: &Value) {
    let kind = doc["kind"].as_str().expect("kind");
    let ar = resource_of(kind);
    let obj: DynamicObject = serde_json::from_value(doc.clone()).unwrap();
    let api: Api<DynamicObject> = match doc["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    api.create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("create {kind} {}: {e}", doc["metadata"]["name"]));
}

/// Object `ns/name` of `kind` as JSON (`None`: absent or unreadable).
pub async fn get_json(client: &kube::Client, kind: &str, ns: &str, name: &str) -> Option<Value> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource_of(kind));
    let o = api.get_opt(name).await.ok()??;
    serde_json::to_value(o).ok()
}

/// Every object of `kind` in `ns` as JSON (empty when the list fails).
pub async fn list_json(client: &kube::Client, kind: &str, ns: &str) -> Vec<Value> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource_of(kind));
    match api.list(&Default::default()).await {
        Ok(l) => l
            .items
            .into_iter()
            .map(|o| serde_json::to_value(o).unwrap())
            .collect(),
        Err(_) => vec![],
    }
}

/// Waits until object `name` exists and satisfies `pred`; returns it. On timeout the panic
/// shows the object's last state.
pub async fn wait_for_object<K>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
    pred: impl Fn(&K) -> bool,
) -> K
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + serde::Serialize,
    <K as Resource>::DynamicType: Default,
{
    let deadline = Instant::now() + timeout;
    loop {
        let got = api.get_opt(name).await.expect("get object");
        match &got {
            Some(o) if pred(o) => return o.clone(),
            _ => {}
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {timeout:?} waiting for {} {name}; last state:\n{}",
                K::kind(&Default::default()),
                got.map(|o| serde_yaml::to_string(&o).unwrap())
                    .unwrap_or_else(|| "<absent>".into())
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until object `name` no longer exists; on timeout the panic shows its last state.
pub async fn wait_for_absent<K>(api: &Api<K>, name: &str, timeout: Duration)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + serde::Serialize,
{
    let deadline = Instant::now() + timeout;
    loop {
        let got = api.get_opt(name).await.expect("get object");
        let Some(o) = got else { return };
        if Instant::now() >= deadline {
            panic!(
                "timed out after {timeout:?} waiting for {name} to be deleted; last state:\n{}",
                serde_yaml::to_string(&o).unwrap()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The condition of type `type_`, if present.
pub fn condition<'a>(conds: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conds.iter().find(|c| c.type_ == type_)
}

/// Whether condition `type_` is present and `True`.
pub fn condition_true(conds: &[Condition], type_: &str) -> bool {
    condition(conds, type_).is_some_and(|c| c.is_true())
}
