//! Installing kstash: the private local state of `kstash up` (every file it writes 0600, every
//! directory 0700, whatever the umask) and the Helm chart beside KubeDB's CRDs.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kstash_testkit::cluster::server_config;
use kstash_testkit::{chart_dir, helm_bin, kubectl_bin, repo_root, yaml_docs};

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("stat {}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// A `kstash up` child, stopped with SIGTERM (then killed) on drop.
struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `kstash up` under `umask 000` (so only the modes given at creation protect the files)
/// and waits until it printed its `export KUBECONFIG=` line (control plane and operator started).
fn kstash_up(data_dir: &Path) -> Up {
    let exe = env!("CARGO_BIN_EXE_kstash");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"umask 000 && exec "$0" up --data-dir "$1" --listen 127.0.0.1:0 --metrics-addr off --shutdown-grace 1 --addons "$2""#)
        .arg(exe)
        .arg(data_dir)
        .arg(repo_root().join("examples/addons"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning kstash up");
    let stdout = child.stdout.take().expect("stdout");
    let up = Up(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let done = line.starts_with("export KUBECONFIG=");
            let _ = tx.send(line);
            if done {
                return;
            }
        }
    });
    let mut seen = vec![];
    loop {
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) if line.starts_with("export KUBECONFIG=") => return up,
            Ok(line) => seen.push(line),
            Err(e) => panic!("kstash up did not start ({e}); stdout so far: {seen:#?}"),
        }
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let p = e.expect("entry").path();
        out.push(p.clone());
        if std::fs::symlink_metadata(&p).expect("stat").is_dir() {
            walk(&p, out);
        }
    }
}

#[test]
fn kstash_up_writes_every_file_0600_and_every_dir_0700() {
    let tmp = tempfile::tempdir().expect("tmp");
    let state = tmp.path().join("state");
    let check = |when: &str| {
        assert_eq!(mode(&state), 0o700, "{when}: {}", state.display());
        let mut all = vec![];
        walk(&state, &mut all);
        // The files holding credentials or Secrets, named so that a rename cannot hide one.
        let kubeconfig = std::fs::read_to_string(state.join("kubeconfig")).expect("kubeconfig");
        let token = std::fs::read_to_string(state.join("token")).expect("token");
        assert!(
            kubeconfig.contains(&format!("token: {}", token.trim())),
            "the kubeconfig carries the bearer token"
        );
        for f in ["kubeconfig", "token", "server.key", "store.redb"] {
            assert!(all.contains(&state.join(f)), "{when}: {f} was not written");
        }
        for p in &all {
            let meta = std::fs::symlink_metadata(p).expect("stat");
            let want = if meta.is_dir() { 0o700 } else { 0o600 };
            assert!(
                !meta.file_type().is_symlink(),
                "{when}: {} is a symlink",
                p.display()
            );
            assert_eq!(
                mode(p),
                want,
                "{when}: {} is {:o}, not {want:o}",
                p.display(),
                mode(p)
            );
        }
        all.len()
    };

    let up = kstash_up(&state);
    let files = check("first start");
    drop(up);
    assert!(
        files >= 7,
        "expected the store, certificates, token, kubeconfig, operator dir"
    );

    // State left by an older version with wide modes is narrowed at the next start.
    for f in ["kubeconfig", "token", "server.key", "store.redb", "ca.crt"] {
        std::fs::set_permissions(state.join(f), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
    }
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let up = kstash_up(&state);
    check("restart over wide modes");
    drop(up);
}

#[test]
fn kstash_up_refuses_a_shared_data_dir() {
    let tmp = tempfile::tempdir().expect("tmp");
    let shared = tmp.path().join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let out = Command::new(env!("CARGO_BIN_EXE_kstash"))
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--metrics-addr",
            "off",
            "--data-dir",
        ])
        .arg(&shared)
        .output()
        .expect("kstash up");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "kstash up accepted a sticky /tmp-like dir"
    );
    assert!(
        err.contains("--data-dir") && err.contains("sticky"),
        "the error names the flag and the reason: {err}"
    );
    assert_eq!(
        std::fs::read_dir(&shared).expect("ls").count(),
        0,
        "nothing written"
    );
}

/// Runs `cmd`, panicking with its stderr on failure; returns stdout.
fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// `helm template` of the chart (release `kstash`, namespace `kstash`) as parsed documents.
fn helm_template(extra: &[&str]) -> Vec<serde_json::Value> {
    yaml_docs(
        &kstash_testkit::helm_template(extra)
            .unwrap_or_else(|e| panic!("helm template {extra:?} failed: {e}")),
    )
}

const THIRD_PARTY: [&str; 4] = [
    "elasticsearches.kubedb.com",
    "redises.kubedb.com",
    "postgreses.kubedb.com",
    "appbindings.appcatalog.appscode.com",
];

fn crd_names(docs: &[serde_json::Value]) -> Vec<String> {
    let mut names: Vec<String> = docs
        .iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .map(|d| d["metadata"]["name"].as_str().expect("name").to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn helm_template_with_defaults_renders_no_kubedb_or_appcatalog_crd() {
    let own: Vec<String> = {
        let mut v: Vec<String> = kstash_api::crds::all()
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .filter(|n| !THIRD_PARTY.contains(&n.as_str()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(own.len(), 14, "the KubeStash kinds");
    assert_eq!(crd_names(&helm_template(&["--include-crds"])), own);
    assert!(crd_names(&helm_template(&[])).is_empty());
    // For clusters without KubeDB, on request: all four, marked so Helm never deletes them.
    let with = helm_template(&["--set", "thirdPartyCRDs.install=true"]);
    let mut want: Vec<String> = THIRD_PARTY.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(crd_names(&with), want);
    for d in with
        .iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
    {
        assert_eq!(
            d["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
            "{}",
            d["metadata"]["name"]
        );
    }
    // The plain manifests: kstash's own CRDs in 01-crds.yaml, KubeDB's apart.
    let manifests = repo_root().join("engine/deploy/manifests");
    let parse = |f: &str| -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(manifests.join(f)).expect(f);
        serde_yaml::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).expect("YAML"))
            .filter(|v: &serde_json::Value| !v.is_null())
            .collect()
    };
    assert_eq!(crd_names(&parse("01-crds.yaml")), own);
    assert_eq!(crd_names(&parse("01-third-party-crds.yaml")), want);
    assert!(crd_names(&parse("02-kstash.yaml")).is_empty());
}

/// Storage-only stand-ins for the built-in kinds the chart renders and the embedded control plane
/// does not serve (Deployment, RBAC), so that a real `helm install` completes against it. Nothing
/// runs them; what this test looks at is the CRDs.
fn stand_in_crd(group: &str, kind: &str, plural: &str, scope: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {"group": group, "scope": scope,
            "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(), "listKind": format!("{kind}List")},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_beside_kubedb_leaves_its_crd_untouched() {
    use kstash_controlplane::ControlPlane;
    let tmp = tempfile::tempdir().expect("tmp");
    // kstash's CRDs but KubeDB's as KubeDB installed it, and stand-ins for what helm installs.
    let mut cfg = server_config(&tmp.path().join("cp"));
    let mut crds: Vec<serde_json::Value> = kstash_api::crds::all()
        .iter()
        .map(|c| serde_json::to_value(c).expect("CRD"))
        .filter(|c| c["metadata"]["name"] != THIRD_PARTY[1])
        .collect();
    // KubeDB's Elasticsearch CRD as KubeDB installed it: marked, with a version kstash does not
    // ship; AppCatalog's AppBinding is absent (a cluster where only KubeDB's database CRD exists).
    for c in crds
        .iter_mut()
        .filter(|c| c["metadata"]["name"] == THIRD_PARTY[0])
    {
        c["metadata"]["labels"] = serde_json::json!({"app.kubernetes.io/managed-by": "kubedb"});
        let mut v1alpha2 = c["spec"]["versions"][0].clone();
        v1alpha2["name"] = "v1alpha2".into();
        v1alpha2["storage"] = false.into();
        c["spec"]["versions"]
            .as_array_mut()
            .expect("versions")
            .push(v1alpha2);
    }
    for (g, k, p, s) in [
        ("apps", "Deployment", "deployments", "Namespaced"),
        (
            "rbac.authorization.k8s.io",
            "ClusterRole",
            "clusterroles",
            "Cluster",
        ),
        (
            "rbac.authorization.k8s.io",
            "ClusterRoleBinding",
            "clusterrolebindings",
            "Cluster",
        ),
        ("rbac.authorization.k8s.io", "Role", "roles", "Namespaced"),
        (
            "rbac.authorization.k8s.io",
            "RoleBinding",
            "rolebindings",
            "Namespaced",
        ),
    ] {
        crds.push(stand_in_crd(g, k, p, s));
    }
    cfg.bootstrap_crds = crds;
    let cp = ControlPlane::start(cfg).await.expect("control plane");
    let kubeconfig = cp.kubeconfig_path.clone();
    let helm_home = tmp.path().join("helm");
    let env = |c: &mut Command| {
        c.env("KUBECONFIG", &kubeconfig)
            .env("HELM_CONFIG_HOME", helm_home.join("config"))
            .env("HELM_CACHE_HOME", helm_home.join("cache"))
            .env("HELM_DATA_HOME", helm_home.join("data"));
    };
    let kubectl = |args: &[&str]| {
        let mut c = Command::new(kubectl_bin());
        env(&mut c);
        run_ok(c.args(args))
    };
    let get_crd = |name: &str| -> serde_json::Value {
        serde_json::from_str(&kubectl(&["get", "crd", name, "-o", "json"])).expect("JSON")
    };
    let has_crd = |name: &str| {
        let mut c = Command::new(kubectl_bin());
        env(&mut c);
        c.args(["get", "crd", name])
            .output()
            .expect("kubectl")
            .status
            .success()
    };
    let helm = |verb: &str| {
        let mut c = Command::new(helm_bin());
        env(&mut c);
        c.args([verb, "kstash"]);
        if verb != "uninstall" {
            // No OpenAPI document on the embedded control plane; no metrics or webhook Service
            // (core/v1 Service is not served).
            c.arg(chart_dir()).args([
                "--set",
                "thirdPartyCRDs.install=true",
                "--set",
                "metrics.enabled=false",
                "--set",
                "webhook.enabled=false",
                "--disable-openapi-validation",
            ]);
        }
        run_ok(c.args(["--namespace", "kstash"]))
    };
    kubectl(&["create", "namespace", "kstash"]);
    let kubedb_before = get_crd(THIRD_PARTY[0]);
    let own_before = get_crd("backupconfigurations.core.kubestash.com");
    assert!(!has_crd(THIRD_PARTY[1]));

    helm("install");
    let kubedb_after = get_crd(THIRD_PARTY[0]);
    assert_eq!(
        kubedb_after, kubedb_before,
        "helm install changed KubeDB's elasticsearches.kubedb.com"
    );
    // Known (not yet handled): Helm 4 updates an existing CRD from `crds/` at install (its
    // generation moves), so kstash's own KubeStash CRDs are re-applied over KubeStash's.
    assert_eq!(
        get_crd("backupconfigurations.core.kubestash.com")["metadata"]["uid"],
        own_before["metadata"]["uid"],
        "an existing KubeStash CRD is never replaced"
    );
    // The missing one was created, owned by the release and kept by policy.
    let appbinding = get_crd(THIRD_PARTY[1]);
    assert_eq!(
        appbinding["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    assert_eq!(
        appbinding["metadata"]["annotations"]["meta.helm.sh/release-name"],
        "kstash"
    );
    let manifest = {
        let mut c = Command::new(helm_bin());
        env(&mut c);
        run_ok(c.args(["get", "manifest", "kstash", "--namespace", "kstash"]))
    };
    assert!(
        !manifest.contains(&format!("name: {}", THIRD_PARTY[0])),
        "the release does not carry KubeDB's CRD"
    );

    // An upgrade neither re-applies nor deletes either of them.
    helm("upgrade");
    assert_eq!(get_crd(THIRD_PARTY[0]), kubedb_before, "after helm upgrade");
    assert_eq!(
        get_crd(THIRD_PARTY[1])["metadata"]["resourceVersion"],
        appbinding["metadata"]["resourceVersion"],
        "helm upgrade rewrote the AppBinding CRD it had created"
    );
    helm("uninstall");
    assert_eq!(
        get_crd(THIRD_PARTY[0]),
        kubedb_before,
        "after helm uninstall"
    );
    assert!(has_crd(THIRD_PARTY[1]), "helm uninstall deleted a kept CRD");
    cp.shutdown().await;
}
