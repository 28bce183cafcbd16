//! Shared test harness of the operator's integration tests: the embedded control plane (with
//! every kstash CRD), a `moto` S3 server on a free loopback port, `kubectl` against the control
//! plane, Secrets, the operator running in a background task, and wait helpers with timeouts.
//!
//! Everything started here is stopped on drop (child processes are killed; a watchdog shell
//! kills them too if the test process dies without running destructors).
//!
//! Use it from a test binary with `mod support;` (file `tests/support/mod.rs`).

#![allow(dead_code)]

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use kstash_api::shared::Condition;
use kstash_controlplane::{ControlPlane, RunningControlPlane, ServerConfig};
use kube::api::{Api, ListParams, PostParams};
use kube::Resource;
use serde::de::DeserializeOwned;

/// The repository root (derived from `CARGO_MANIFEST_DIR`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// `<repo>/.tools/bin/kubectl`; panics with a clear message when it is missing.
pub fn kubectl_bin() -> PathBuf {
    let p = repo_root().join(".tools/bin/kubectl");
    assert!(
        p.exists(),
        "kubectl not found at {}: run scripts/ensure-tools.sh",
        p.display()
    );
    p
}

/// `<repo>/.tools/venv/bin/moto_server`; panics with a clear message when it is missing.
pub fn moto_bin() -> PathBuf {
    let p = repo_root().join(".tools/venv/bin/moto_server");
    assert!(
        p.exists(),
        "moto_server not found at {}: run scripts/ensure-tools.sh",
        p.display()
    );
    p
}

/// The text of `examples/auto-backup/<file>` (the tutorial's YAML, verbatim).
pub fn tutorial_yaml(file: &str) -> String {
    let p = repo_root().join("examples/auto-backup").join(file);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a shell that kills `child_pid` once this test process is gone.
fn watchdog(child_pid: u32) {
    let _ = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "while kill -0 {} 2>/dev/null; do sleep 1; done; kill {} 2>/dev/null",
            std::process::id(),
            child_pid
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

/// S3 credentials the tests put in the storage Secret (moto accepts any).
pub const S3_ACCESS_KEY: &str = "AKIAKSTASHTEST";
/// Secret key matching [`S3_ACCESS_KEY`].
pub const S3_SECRET_KEY: &str = "kstash-test-secret-key";

/// A moto S3 server on a free loopback port, killed on drop.
pub struct Moto {
    child: Child,
    /// The port it listens on.
    pub port: u16,
}

impl Moto {
    /// Starts moto and waits (up to 30 s) until it accepts connections.
    pub fn start() -> Moto {
        let port = free_port();
        let child = Command::new(moto_bin())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        watchdog(child.id());
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto { child, port }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (S3 `PUT /<bucket>` through kstash-repo's own S3 client is not exposed,
    /// so this uses a raw HTTP request on a blocking socket).
    pub fn create_bucket(&self, bucket: &str) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect moto");
        write!(
            s,
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(
            resp.split_whitespace().nth(1) == Some("200"),
            "create bucket {bucket}: {}",
            resp.lines().next().unwrap_or_default()
        );
    }

    /// A kstash-repo client on `bucket/prefix` of this server (to check what the operator wrote).
    pub fn storage(&self, bucket: &str, prefix: &str) -> kstash_repo::Storage {
        let v = serde_json::json!({"provider": "s3", "s3": {
            "endpoint": self.endpoint(), "bucket": bucket, "prefix": prefix,
            "region": "us-east-1", "secretName": "test"}});
        let secrets = [
            ("AWS_ACCESS_KEY_ID".to_string(), S3_ACCESS_KEY.to_string()),
            (
                "AWS_SECRET_ACCESS_KEY".to_string(),
                S3_SECRET_KEY.to_string(),
            ),
        ]
        .into_iter()
        .collect();
        let cfg = kstash_repo::StorageConfig::from_spec_storage("test", v, secrets).unwrap();
        kstash_repo::Storage::connect(cfg).unwrap()
    }

    /// Sends a signal (`-STOP`, `-CONT`, ...) to the server process.
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success(), "kill {sig} moto");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The embedded control plane (all kstash CRDs installed) in a temporary directory.
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

impl TestCluster {
    /// Starts the control plane on a free port with `kstash_api::crds::all()` bootstrapped.
    pub async fn start() -> TestCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cfg = ServerConfig::new(dir.path().join("cp"), "127.0.0.1:0".parse().unwrap());
        cfg.bootstrap_crds = kstash_api::crds::all()
            .into_iter()
            .map(|c| serde_json::to_value(c).unwrap())
            .collect();
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
        let string_data: serde_json::Map<String, serde_json::Value> = data
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
            .collect();
        let obj: Secret = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": ns},
            "type": "Opaque", "stringData": string_data}))
        .unwrap();
        let _ = api.delete(name, &Default::default()).await;
        api.create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("create secret {ns}/{name}: {e}"));
    }

    /// The tutorial's storage Secret `s3-secret` with moto's test credentials.
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

    /// Starts the operator (every controller of this build) on this cluster in a background
    /// task; aborted when the returned handle drops.
    pub async fn start_operator(&self) -> OperatorHandle {
        self.start_operator_with(|_| {}).await
    }

    /// Like [`TestCluster::start_operator`], with a chance to adjust the config first.
    pub async fn start_operator_with(
        &self,
        adjust: impl FnOnce(&mut kstash_operator::OperatorConfig),
    ) -> OperatorHandle {
        let data_dir = self.dir.path().join("operator");
        std::fs::create_dir_all(&data_dir).unwrap();
        let mut config = kstash_operator::OperatorConfig {
            identity: "kstash-test".into(),
            module_dir: None,
            data_dir,
            namespace: None,
        };
        adjust(&mut config);
        let client = self.cp.client().await.expect("operator client");
        let ctx = operator_context(client, config, 2);
        let task = tokio::spawn(kstash_operator::run(ctx.clone()));
        OperatorHandle { ctx, task }
    }

    /// A typed namespaced API.
    pub fn api<K>(&self, ns: &str) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), ns)
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

/// The operator running in a background task; aborted on drop.
pub struct OperatorHandle {
    /// Its context.
    pub ctx: Arc<kstash_operator::Context>,
    task: tokio::task::JoinHandle<()>,
}

impl OperatorHandle {
    /// Stops the operator and waits until its task has ended.
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for OperatorHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Polls `f` every 200 ms until it returns `Some`; panics naming `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
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

/// Waits until object `name` no longer exists.
pub async fn wait_for_absent<K>(api: &Api<K>, name: &str, timeout: Duration)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    wait_for(&format!("{name} to be deleted"), timeout, || async {
        api.get_opt(name)
            .await
            .expect("get object")
            .is_none()
            .then_some(())
    })
    .await
}

/// The condition of type `type_`, if present.
pub fn condition<'a>(conds: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conds.iter().find(|c| c.type_ == type_)
}

/// Whether condition `type_` is present and `True`.
pub fn condition_true(conds: &[Condition], type_: &str) -> bool {
    condition(conds, type_)
        .map(|c| c.is_true())
        .unwrap_or(false)
}

/// The tutorial's BackupStorage (`demo/s3-storage`) pointed at `moto`'s `bucket` (endpoint and
/// credentials are the only changes, as the issue allows).
pub fn tutorial_backup_storage(moto: &Moto, bucket: &str) -> String {
    tutorial_yaml("backupstorage.yaml")
        .replace(
            "endpoint: us-east-1.linodeobjects.com",
            &format!("endpoint: {}", moto.endpoint()),
        )
        .replace("bucket: esbackup", &format!("bucket: {bucket}"))
}

/// The Elasticsearch Addon and its two Functions (KubeStash catalog shape + kstash's `module`),
/// as the Helm chart ships them, with `sha256` as the module digest.
pub fn elasticsearch_addon_yaml(sha256: &str) -> String {
    format!(
        r#"apiVersion: addons.kubestash.com/v1alpha1
kind: Addon
metadata:
  name: elasticsearch-addon
spec:
  backupTasks:
    - name: logical-backup
      function: elasticsearch-backup
      driver: Restic
      executor: Job
      singleton: true
  restoreTasks:
    - name: logical-backup-restore
      function: elasticsearch-restore
      driver: Restic
      executor: Job
      singleton: true
---
apiVersion: addons.kubestash.com/v1alpha1
kind: Function
metadata:
  name: elasticsearch-backup
spec:
  image: ghcr.io/kubedb/elasticsearch-restic-plugin:v0.11.0
  args: ["backup", "--namespace=${{namespace:=default}}", "--es-args=${{args:=}}"]
  module:
    location: builtin:elasticsearch
    sha256: "{sha256}"
---
apiVersion: addons.kubestash.com/v1alpha1
kind: Function
metadata:
  name: elasticsearch-restore
spec:
  image: ghcr.io/kubedb/elasticsearch-restic-plugin:v0.11.0
  args: ["restore", "--namespace=${{namespace:=default}}", "--es-args=${{args:=}}"]
  module:
    location: builtin:elasticsearch
    sha256: "{sha256}"
"#
    )
}

/// The AppBinding KubeDB creates for an Elasticsearch (same name/namespace, `appRef` to it),
/// connecting to `url` with credentials Secret `<name>-elastic-cred`.
pub fn appbinding_yaml(ns: &str, name: &str, url: &str, annotations: &[(&str, &str)]) -> String {
    let ann: String = annotations
        .iter()
        .map(|(k, v)| format!("    {k}: {}\n", serde_json::to_string(v).unwrap()))
        .collect();
    let ann = if ann.is_empty() {
        String::new()
    } else {
        format!("  annotations:\n{ann}")
    };
    format!(
        r#"apiVersion: appcatalog.appscode.com/v1alpha1
kind: AppBinding
metadata:
  name: {name}
  namespace: {ns}
{ann}spec:
  appRef:
    apiGroup: kubedb.com
    kind: Elasticsearch
    name: {name}
    namespace: {ns}
  type: kubedb.com/elasticsearch
  version: 8.15.0
  clientConfig:
    url: {url}
  secret:
    name: {name}-elastic-cred
"#
    )
}

/// The operator's context as `kstash operator` builds it: an addon runtime running at most
/// `max_tasks` tasks, its module cache under `config.data_dir/cache`.
pub fn operator_context(
    client: kube::Client,
    config: kstash_operator::OperatorConfig,
    max_tasks: u32,
) -> Arc<kstash_operator::Context> {
    std::fs::create_dir_all(&config.data_dir).unwrap();
    let runtime = kstash_runtime::Runtime::new(kstash_runtime::RuntimeConfig {
        cache_dir: Some(config.data_dir.join("cache")),
        max_concurrent_tasks: max_tasks,
        ..Default::default()
    })
    .expect("addon runtime");
    Arc::new(kstash_operator::Context::new(
        client,
        Arc::new(runtime),
        config,
    ))
}

/// The built Elasticsearch addon; panics when it was not built.
pub fn module_file() -> PathBuf {
    let p = repo_root().join("addons/target/wasm32-wasip2/release/elasticsearch_addon.wasm");
    assert!(
        p.is_file(),
        "the Elasticsearch addon is not built at {}: run scripts/build-addons.sh",
        p.display()
    );
    p
}

/// The sha256 (hex) of [`module_file`].
pub fn module_sha256() -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(std::fs::read(module_file()).unwrap()))
}

/// The `restic` CLI; panics when it is not in PATH.
pub fn restic_bin() -> &'static str {
    let ok = Command::new("restic")
        .arg("version")
        .output()
        .map(|o| o.status.success());
    assert!(
        matches!(ok, Ok(true)),
        "the restic CLI is not in PATH: run scripts/ensure-tools.sh"
    );
    "restic"
}

/// Base64 (standard alphabet) of `s`.
pub fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// An Elasticsearch emulator over TLS with basic auth `elastic`/`password`, seeded with `docs`
/// documents over 3 indices (documents up to `large_doc_bytes`, seed `seed`), with `faults`.
pub async fn es_emulator(
    password: &str,
    docs: usize,
    large_doc_bytes: usize,
    seed: u64,
    faults: Option<kstash_es_emulator::Faults>,
) -> kstash_es_emulator::RunningEmulator {
    let mut b = kstash_es_emulator::EmulatorBuilder::new()
        .tls(true)
        .auth("elastic", password);
    if docs > 0 {
        b = b.seed(kstash_es_emulator::Seed {
            docs,
            indices: 3,
            large_doc_bytes,
            seed,
        });
    }
    if let Some(f) = faults {
        b = b.faults(f);
    }
    b.start().await.expect("start the ES emulator")
}

/// What KubeDB creates for Elasticsearch `name` in `ns`: the credentials Secret
/// `<name>-elastic-cred` (`elastic`/`password`) and the AppBinding pointing at `emu` (its CA in
/// `caBundle`); with `kubedb_object`, the `Elasticsearch` object itself (`enableSSL: true`).
pub async fn es_database(
    cluster: &TestCluster,
    ns: &str,
    name: &str,
    emu: &kstash_es_emulator::RunningEmulator,
    password: &str,
    kubedb_object: bool,
) {
    cluster
        .create_secret(
            ns,
            &format!("{name}-elastic-cred"),
            &[("username", "elastic"), ("password", password)],
        )
        .await;
    let ca = emu.ca_pem.as_deref().expect("a TLS emulator has a CA");
    let appbinding = appbinding_yaml(ns, name, &emu.url, &[]).replace(
        &format!("    url: {}\n", emu.url),
        &format!("    url: {}\n    caBundle: {}\n", emu.url, b64(ca)),
    );
    if kubedb_object {
        cluster.apply_yaml(&format!(
            "apiVersion: kubedb.com/v1\nkind: Elasticsearch\nmetadata:\n  name: {name}\n  \
             namespace: {ns}\nspec:\n  version: xpack-8.15.0\n  enableSSL: true\n  replicas: 1\n"
        ));
    }
    cluster.apply_yaml(&appbinding);
}

/// A TCP relay on a free loopback port in front of `upstream`, that can be cut to simulate an
/// outage of the server behind it: while cut, every connection (open or new) is closed at once.
pub struct CuttableProxy {
    /// The port it listens on.
    pub port: u16,
    state: Arc<std::sync::Mutex<tokio_util::sync::CancellationToken>>,
    up: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl CuttableProxy {
    /// Starts relaying `127.0.0.1:<port>` to `127.0.0.1:<upstream>`.
    pub async fn start(upstream: u16) -> CuttableProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(std::sync::Mutex::new(
            tokio_util::sync::CancellationToken::new(),
        ));
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (st, u) = (state.clone(), up.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !u.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let cut = st.lock().unwrap().clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = cut.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        });
        CuttableProxy {
            port,
            state,
            up,
            task,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The outage starts: open connections are closed, new ones closed as soon as accepted.
    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        let mut t = self.state.lock().unwrap();
        t.cancel();
        *t = tokio_util::sync::CancellationToken::new();
    }

    /// The outage ends.
    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.state.lock().unwrap().cancel();
    }
}
