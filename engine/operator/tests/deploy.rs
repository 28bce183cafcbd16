//! Cluster deployment (`engine/deploy/`): the Helm chart renders with the real `helm`, every
//! rendered document parses and is the kind/apiVersion a cluster expects, the CRDs are exactly
//! `kstash_api::crds::all()`, the plain manifests are the chart's rendering, the Deployment is
//! locked down, the Dockerfile copies only paths that exist, the RBAC rules are exactly what
//! the operator uses (compared with the audit of a real run against the embedded control plane),
//! and the admission webhooks the chart configures are served by the operator with the answers
//! the embedded control plane gives, under a certificate the operator made.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::rbac::v1::PolicyRule;
use kstash_controlplane::AuditRecord;
use serde_json::{json, Value};
use support::rbac;
use support::{
    create_json, es_database, get_json, helm_template, list_json, module_file, module_sha256,
    operator_context_with, repo_root, tutorial_doc, wait_for, yaml_docs, Moto, TestCluster,
};

fn deploy_dir() -> PathBuf {
    repo_root().join("engine/deploy")
}

fn render(extra: &[&str]) -> Vec<Value> {
    yaml_docs(&helm_template(extra).unwrap_or_else(|e| panic!("helm template {extra:?}: {e}")))
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let v = of_kind(docs, kind);
    assert_eq!(v.len(), 1, "expected exactly one {kind}, got {}", v.len());
    v[0]
}

/// kstash's own CRDs (the chart's `crds/`): KubeDB's Elasticsearch and AppCatalog's AppBinding
/// are KubeDB's, installed only on request (engine/cli/tests/install.rs checks those).
fn crds_expected() -> BTreeMap<String, Value> {
    kstash_api::crds::all()
        .into_iter()
        .map(|c| {
            let v = serde_json::to_value(&c).unwrap();
            (v["metadata"]["name"].as_str().unwrap().to_string(), v)
        })
        .filter(|(name, _)| {
            !name.ends_with(".kubedb.com") && !name.ends_with(".appcatalog.appscode.com")
        })
        .collect()
}

fn crds_in(docs: &[Value]) -> BTreeMap<String, Value> {
    of_kind(docs, "CustomResourceDefinition")
        .into_iter()
        .map(|c| {
            (
                c["metadata"]["name"].as_str().unwrap().to_string(),
                c.clone(),
            )
        })
        .collect()
}

/// The object of `kind` named `name`.
fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let v: Vec<_> = of_kind(docs, kind)
        .into_iter()
        .filter(|d| d["metadata"]["name"] == name)
        .collect();
    assert_eq!(
        v.len(),
        1,
        "expected exactly one {kind} {name}, got {}",
        v.len()
    );
    v[0]
}

/// The rules of every Role (all in the release namespace).
fn role_rules(docs: &[Value]) -> Vec<PolicyRule> {
    of_kind(docs, "Role")
        .into_iter()
        .flat_map(rules_of)
        .collect()
}

fn container(docs: &[Value]) -> Value {
    let d = one(docs, "Deployment");
    let cs = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(cs.len(), 1, "one container");
    cs[0].clone()
}

fn args(docs: &[Value]) -> Vec<String> {
    container(docs)["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn default_render_has_every_object_with_its_api_version() {
    let docs = render(&["--include-crds"]);
    let mut kinds: BTreeMap<(String, String), usize> = BTreeMap::new();
    for d in &docs {
        let k = (
            d["apiVersion"].as_str().expect("apiVersion").to_string(),
            d["kind"].as_str().expect("kind").to_string(),
        );
        *kinds.entry(k).or_default() += 1;
        assert!(
            d["metadata"]["name"].is_string(),
            "every object is named: {d}"
        );
    }
    let expected: BTreeMap<(String, String), usize> = [
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition", 14),
        ("v1", "ServiceAccount", 1),
        ("v1", "Service", 2),
        ("rbac.authorization.k8s.io/v1", "ClusterRole", 1),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", 1),
        ("rbac.authorization.k8s.io/v1", "Role", 2),
        ("rbac.authorization.k8s.io/v1", "RoleBinding", 2),
        (
            "admissionregistration.k8s.io/v1",
            "ValidatingWebhookConfiguration",
            1,
        ),
        (
            "admissionregistration.k8s.io/v1",
            "MutatingWebhookConfiguration",
            1,
        ),
        ("apps/v1", "Deployment", 1),
        ("addons.kubestash.com/v1alpha1", "Addon", 1),
        ("addons.kubestash.com/v1alpha1", "Function", 2),
    ]
    .into_iter()
    .map(|(a, k, n)| ((a.to_string(), k.to_string()), n))
    .collect();
    assert_eq!(kinds, expected);
    // Namespaced objects land in the release namespace; cluster-scoped ones carry none.
    for d in &docs {
        let kind = d["kind"].as_str().unwrap();
        let namespaced = matches!(
            kind,
            "ServiceAccount" | "Service" | "Role" | "RoleBinding" | "Deployment"
        );
        assert_eq!(
            d["metadata"]["namespace"].as_str(),
            namespaced.then_some("kstash"),
            "{kind} namespace"
        );
    }
    // The bindings point at the chart's ServiceAccount and roles.
    let sa = one(&docs, "ServiceAccount")["metadata"]["name"].clone();
    for kind in ["ClusterRoleBinding", "RoleBinding"] {
        for b in of_kind(&docs, kind) {
            assert_eq!(
                b["subjects"],
                json!([{"kind": "ServiceAccount", "name": sa, "namespace": "kstash"}])
            );
            let role_kind = kind.trim_end_matches("Binding");
            assert_eq!(b["roleRef"]["kind"], role_kind);
            named(&docs, role_kind, b["roleRef"]["name"].as_str().unwrap());
        }
    }
    let dep = one(&docs, "Deployment");
    assert_eq!(dep["spec"]["template"]["spec"]["serviceAccountName"], sa);
    // The metrics and webhook Services select the operator's pods on the container's ports.
    let pod_labels = dep["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .unwrap();
    for (name, port) in [("kstash-metrics", "metrics"), ("kstash-webhook", "webhook")] {
        let svc = named(&docs, "Service", name);
        for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
            assert_eq!(pod_labels.get(k), Some(v), "{name} selector {k}");
        }
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], port);
    }
    let c = container(&docs);
    let ports: Vec<(&str, i64)> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["containerPort"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ports, [("metrics", 8080), ("webhook", 9443)]);
}

/// The chart's webhooks: one per kind `kstash_api::webhook::reviews` covers (exactly those of
/// kstash's CRDs), named `<kind>.<group>`, on CREATE and UPDATE, served by the operator's
/// webhook Service, the caBundle left to the operator.
#[test]
fn webhook_configurations_cover_exactly_the_reviewed_kinds() {
    let docs = render(&["--include-crds"]);
    let mut reviewed: Vec<(String, String, String)> = crds_in(&docs)
        .values()
        .filter_map(|c| {
            let group = c["spec"]["group"].as_str().unwrap();
            let kind = c["spec"]["names"]["kind"].as_str().unwrap();
            kstash_api::webhook::reviews(group, kind).then(|| {
                (
                    group.to_string(),
                    kind.to_string(),
                    c["spec"]["names"]["plural"].as_str().unwrap().to_string(),
                )
            })
        })
        .collect();
    reviewed.sort();
    assert_eq!(reviewed.len(), 9, "{reviewed:?}");
    for (kind, path) in [
        ("ValidatingWebhookConfiguration", "/validate"),
        ("MutatingWebhookConfiguration", "/mutate"),
    ] {
        let cfg = one(&docs, kind);
        assert_eq!(cfg["metadata"]["name"], "kstash");
        let mut got: Vec<(String, String, String)> = vec![];
        for w in cfg["webhooks"].as_array().unwrap() {
            let rules = w["rules"].as_array().unwrap();
            assert_eq!(rules.len(), 1, "{w}");
            let r = &rules[0];
            let group = r["apiGroups"][0].as_str().unwrap().to_string();
            let plural = r["resources"][0].as_str().unwrap().to_string();
            let (_, k, _) = reviewed
                .iter()
                .find(|(g, _, p)| *g == group && *p == plural)
                .unwrap_or_else(|| {
                    panic!("{kind} has a rule for {group}/{plural}, which kstash does not review")
                });
            assert_eq!(w["name"], format!("{}.{group}", k.to_lowercase()), "{w}");
            assert_eq!(r["operations"], json!(["CREATE", "UPDATE"]));
            assert_eq!(r["apiVersions"], json!(["v1alpha1"]));
            assert_eq!(r["apiGroups"].as_array().unwrap().len(), 1);
            assert_eq!(
                r["resources"].as_array().unwrap().len(),
                1,
                "no subresources"
            );
            assert_eq!(w["sideEffects"], "None");
            assert_eq!(w["admissionReviewVersions"], json!(["v1"]));
            assert_eq!(w["failurePolicy"], "Ignore");
            assert_eq!(
                w["clientConfig"],
                json!({"service": {"name": "kstash-webhook", "namespace": "kstash", "path": path, "port": 443}}),
                "no caBundle: the operator fills it"
            );
            got.push((group, k.clone(), plural));
        }
        got.sort();
        assert_eq!(got, reviewed, "{kind}");
    }
    // The operator is told the same names.
    let a = args(&docs);
    for want in [
        "--webhook-port=9443",
        "--webhook-service=kstash-webhook",
        "--webhook-secret=kstash-webhook-cert",
        "--webhook-configuration=kstash",
    ] {
        assert!(a.iter().any(|x| x == want), "missing arg {want} in {a:?}");
    }
    // failurePolicy is a value.
    let fail = render(&["--set", "webhook.failurePolicy=Fail"]);
    assert!(one(&fail, "ValidatingWebhookConfiguration")["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|w| w["failurePolicy"] == "Fail"));
}

#[test]
fn chart_crds_are_the_api_crates_crds() {
    let expected = crds_expected();
    assert_eq!(expected.len(), 14, "the 14 KubeStash kinds");
    let rendered = crds_in(&render(&["--include-crds"]));
    assert_eq!(
        rendered.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (name, crd) in &expected {
        assert_eq!(
            &rendered[name], crd,
            "CRD {name} differs from kstash_api::crds::all(): run engine/deploy/generate.sh"
        );
    }
    // Without --include-crds, helm leaves them to the crds/ directory (installed first).
    assert!(crds_in(&render(&[])).is_empty());
}

#[test]
fn plain_manifests_are_the_charts_rendering() {
    let dir = deploy_dir().join("manifests");
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("manifests/{f}: {e}"))
    };
    let ns = yaml_docs(&read("00-namespace.yaml"));
    assert_eq!(
        ns,
        vec![json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kstash"}})]
    );
    let crds = yaml_docs(&read("01-crds.yaml"));
    assert_eq!(crds.len(), 14);
    assert_eq!(
        crds_in(&crds),
        crds_expected(),
        "manifests/01-crds.yaml is stale: run engine/deploy/generate.sh"
    );
    assert_eq!(
        yaml_docs(&read("02-kstash.yaml")),
        render(&[]),
        "manifests/02-kstash.yaml is stale: run engine/deploy/generate.sh"
    );
}

#[test]
fn deployment_is_locked_down_and_leader_elected() {
    let docs = render(&[]);
    let dep = one(&docs, "Deployment");
    let pod = &dep["spec"]["template"]["spec"];
    assert_eq!(dep["spec"]["replicas"], 2, "a standby replica by default");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_ne!(pod["securityContext"]["runAsUser"], 0);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let c = container(&docs);
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert!(sc["capabilities"]["add"].is_null(), "no capability added");
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert!(c["resources"]["requests"]["cpu"].is_string());
    assert!(c["resources"]["requests"]["memory"].is_string());
    // The pod is sized from its tasks: 256Mi + maxSessions x the task memory cap.
    assert_eq!(c["resources"]["limits"]["memory"], "2304Mi");
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(c[probe]["httpGet"]["port"], "metrics", "{probe}");
    }
    let a = args(&docs);
    assert_eq!(a[0], "operator");
    for want in [
        "--leader-elect",
        "--leader-elect-namespace=$(POD_NAMESPACE)",
        "--leader-elect-lease-name=kstash-operator",
        "--identity=$(POD_NAME)",
        "--module-dir=/usr/lib/kstash/addons",
        "--data-dir=/var/lib/kstash",
        "--metrics-addr=0.0.0.0:8080",
        "--max-sessions=4",
        "--task-max-memory=512Mi",
    ] {
        assert!(a.iter().any(|x| x == want), "missing arg {want} in {a:?}");
    }
    // The root file system is read-only: the data dir and /tmp are writable volumes.
    let mounts: Vec<&str> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap())
        .collect();
    assert_eq!(mounts, ["/var/lib/kstash", "/tmp"]);
    // The module digest is on the pod template, so changing the pinned module rolls the pods.
    let sha = function_sha256s(&docs);
    assert_eq!(
        dep["spec"]["template"]["metadata"]["annotations"]
            ["kstash.dev/elasticsearch-module-sha256"],
        sha[0]
    );
}

fn function_sha256s(docs: &[Value]) -> Vec<String> {
    of_kind(docs, "Function")
        .iter()
        .map(|f| f["spec"]["module"]["sha256"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn overrides_change_what_they_say() {
    // No leader election: a single replica, replaced (never two at once), no Lease role.
    let docs = render(&[
        "--set",
        "leaderElection.enabled=false",
        "--set",
        "replicaCount=1",
    ]);
    for kind in ["Role", "RoleBinding"] {
        let names: Vec<&Value> = of_kind(&docs, kind)
            .iter()
            .map(|d| &d["metadata"]["name"])
            .collect();
        assert_eq!(names, [&json!("kstash-webhook")], "no Lease {kind}");
    }
    assert_eq!(
        one(&docs, "Deployment")["spec"]["strategy"]["type"],
        "Recreate"
    );
    assert!(!args(&docs).iter().any(|a| a.starts_with("--leader-elect")));
    let err = helm_template(&["--set", "leaderElection.enabled=false"]).unwrap_err();
    assert!(
        err.contains("replicaCount") && err.contains("leaderElection.enabled"),
        "two replicas without leader election must be refused, got: {err}"
    );

    // A local storage's volume is mounted into the operator's pod where the BackupStorage says.
    let docs = render(&[
        "--set",
        "localStorage.volumes[0].name=backups",
        "--set",
        "localStorage.volumes[0].mountPath=/backups",
        "--set",
        "localStorage.volumes[0].volume.persistentVolumeClaim.claimName=backup-pvc",
    ]);
    let c = container(&docs);
    assert!(
        c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "backups" && m["mountPath"] == "/backups"),
        "{c}"
    );
    let pod = &one(&docs, "Deployment")["spec"]["template"]["spec"];
    assert!(
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == "backups"
                && v["persistentVolumeClaim"]["claimName"] == "backup-pvc"),
        "{pod}"
    );

    // Egress policy: each list becomes its `kstash operator --egress-*` flag; none by default.
    let docs = render(&[
        "--set",
        "egress.allow={10.0.0.0/8,192.168.1.5}",
        "--set",
        "egress.deny={10.9.0.0/16}",
        "--set",
        "egress.allowExceptions={169.254.10.0/24}",
    ]);
    let a = args(&docs);
    for flag in [
        "--egress-allow=10.0.0.0/8,192.168.1.5",
        "--egress-deny=10.9.0.0/16",
        "--egress-allow-exception=169.254.10.0/24",
    ] {
        assert!(a.iter().any(|x| x == flag), "{flag} in {a:?}");
    }
    assert!(!args(&render(&[])).iter().any(|x| x.starts_with("--egress")));

    // rbac.kubedbResources: the KubeDB kinds the operator may read.
    let docs = render(&["--set", "rbac.kubedbResources={redises}"]);
    let kubedb: Vec<String> = rules_of(one(&docs, "ClusterRole"))
        .iter()
        .filter(|r| r.api_groups.iter().flatten().any(|g| g == "kubedb.com"))
        .flat_map(|r| r.resources.clone().unwrap_or_default())
        .collect();
    assert_eq!(kubedb, ["redises/finalizers", "redises"]);

    // ServiceMonitor on demand, pointing at the metrics port.
    let docs = render(&["--set", "metrics.serviceMonitor.enabled=true"]);
    let sm = one(&docs, "ServiceMonitor");
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    assert!(of_kind(&render(&[]), "ServiceMonitor").is_empty());

    // Metrics off: no metrics Service, port, or probes on it.
    let docs = render(&["--set", "metrics.enabled=false"]);
    let services: Vec<&Value> = of_kind(&docs, "Service")
        .iter()
        .map(|d| &d["metadata"]["name"])
        .collect();
    assert_eq!(services, [&json!("kstash-webhook")]);
    assert_eq!(container(&docs)["ports"].as_array().unwrap().len(), 1);
    assert!(container(&docs)["readinessProbe"].is_null());
    let docs = render(&[
        "--set",
        "metrics.enabled=false",
        "--set",
        "webhook.enabled=false",
    ]);
    assert!(container(&docs)["ports"].is_null());

    // Webhook off: no configurations, Service, Secret Role or grant, and no flags.
    let docs = render(&["--set", "webhook.enabled=false"]);
    for kind in [
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    ] {
        assert!(of_kind(&docs, kind).is_empty(), "{kind}");
    }
    assert!(of_kind(&docs, "Service")
        .iter()
        .all(|s| s["metadata"]["name"] != "kstash-webhook"));
    assert!(role_rules(&docs)
        .iter()
        .all(|r| r.resources.iter().flatten().all(|x| x != "secrets")));
    assert!(rules_of(one(&docs, "ClusterRole")).iter().all(|r| r
        .api_groups
        .iter()
        .flatten()
        .all(|g| g != "admissionregistration.k8s.io")));
    assert!(!args(&docs).iter().any(|a| a.starts_with("--webhook")));
    let ports = container(&docs)["ports"].clone();
    assert_eq!(ports.as_array().unwrap().len(), 1, "{ports}");

    // Image by digest; one namespace watched; extra args appended.
    let digest = format!("sha256:{}", "ab".repeat(32));
    let docs = render(&[
        "--set",
        &format!("image.digest={digest}"),
        "--set",
        "watchNamespace=demo",
        "--set",
        "extraArgs[0]=--verbose",
    ]);
    assert_eq!(
        container(&docs)["image"],
        format!("ghcr.io/kstash/kstash@{digest}")
    );
    let a = args(&docs);
    assert!(a.contains(&"--namespace=demo".to_string()), "{a:?}");
    assert_eq!(a.last().map(String::as_str), Some("--verbose"));
    assert_eq!(
        container(&render(&["--set", "image.tag=v9"]))["image"],
        "ghcr.io/kstash/kstash:v9"
    );

    // No RBAC and an existing ServiceAccount.
    let docs = render(&[
        "--set",
        "rbac.create=false",
        "--set",
        "serviceAccount.create=false",
        "--set",
        "serviceAccount.name=backup-sa",
    ]);
    for k in [
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ServiceAccount",
    ] {
        assert!(
            of_kind(&docs, k).is_empty(),
            "{k} rendered with rbac.create=false"
        );
    }
    assert_eq!(
        one(&docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"],
        "backup-sa"
    );

    // Addons: a malformed digest is refused naming the value; install=false ships none.
    let err = helm_template(&["--set", "addons.elasticsearch.sha256=not-hex"]).unwrap_err();
    assert!(
        err.contains("addons.elasticsearch.sha256") && err.contains("not-hex"),
        "{err}"
    );
    let docs = render(&["--set", "addons.install=false"]);
    assert!(of_kind(&docs, "Addon").is_empty() && of_kind(&docs, "Function").is_empty());
}

#[test]
fn addon_manifests_are_valid_and_digest_pinned() {
    let docs = render(&[]);
    let crds = kstash_api::crds::all();
    let crd_of = |kind: &str| {
        crds.iter()
            .find(|c| c.spec.names.kind == kind)
            .unwrap_or_else(|| panic!("no CRD for {kind}"))
    };
    // Spec §9.1: the catalog's tasks, functions and parameter defaults.
    let addon = one(&docs, "Addon");
    let stored = kstash_api::crds::prune_default_validate(
        kstash_api::crds::schema_of(crd_of("Addon")).unwrap(),
        addon,
    )
    .unwrap_or_else(|e| panic!("Addon rejected by its CRD schema: {e:?}"));
    let typed: kstash_api::addons::Addon = serde_json::from_value(stored).unwrap();
    assert_eq!(typed.metadata.name.as_deref(), Some("elasticsearch-addon"));
    let b = typed
        .spec
        .backup_task("logical-backup")
        .expect("logical-backup");
    assert_eq!(b.function.as_deref(), Some("elasticsearch-backup"));
    let r = typed
        .spec
        .restore_task("logical-backup-restore")
        .expect("logical-backup-restore");
    assert_eq!(r.function.as_deref(), Some("elasticsearch-restore"));
    let defaults: BTreeMap<_, _> = b
        .parameters
        .iter()
        .map(|p| (p.name.as_str(), p.default.as_deref()))
        .collect();
    assert_eq!(
        defaults,
        BTreeMap::from([
            (
                "args",
                Some("--match=^(?![.])(?!apm-agent-configuration)(?!kubedb-system).+")
            ),
            ("interimDataDir", Some("/kubestash-interim/data")),
            ("enableCache", Some("true")),
            ("scratchDir", Some("/kubestash-tmp")),
        ])
    );
    assert_eq!(b.parameters, r.parameters);

    let values: Value = serde_yaml::from_str(
        &std::fs::read_to_string(deploy_dir().join("helm/kstash/values.yaml")).unwrap(),
    )
    .unwrap();
    let pinned = values["addons"]["elasticsearch"]["sha256"]
        .as_str()
        .unwrap();
    let module_dir = values["addons"]["moduleDir"].as_str().unwrap();
    let mut names = vec![];
    for f in of_kind(&docs, "Function") {
        let stored = kstash_api::crds::prune_default_validate(
            kstash_api::crds::schema_of(crd_of("Function")).unwrap(),
            f,
        )
        .unwrap_or_else(|e| panic!("Function rejected by its CRD schema: {e:?}"));
        let typed: kstash_api::addons::Function = serde_json::from_value(stored).unwrap();
        kstash_api::admission::validate_function(&typed)
            .unwrap_or_else(|e| panic!("Function {:?}: {e:?}", typed.metadata.name));
        let m = typed.spec.module.as_ref().expect("module");
        assert_eq!(m.location, "builtin:elasticsearch");
        assert_eq!(m.sha256, pinned);
        names.push(typed.metadata.name.clone().unwrap());
    }
    names.sort();
    assert_eq!(names, ["elasticsearch-backup", "elasticsearch-restore"]);
    // builtin:elasticsearch resolves to <moduleDir>/elasticsearch.wasm: the Dockerfile puts it there.
    let dockerfile = std::fs::read_to_string(deploy_dir().join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("/out/addons/elasticsearch.wasm"));
    assert!(dockerfile.contains(&format!("/out/addons/ {module_dir}/")));
}

#[test]
fn dockerfile_copies_only_existing_paths_and_runs_as_non_root() {
    let root = repo_root();
    let text = std::fs::read_to_string(deploy_dir().join("Dockerfile")).unwrap();
    let mut sources = vec![];
    let mut users = vec![];
    let mut stages = vec![];
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("FROM") => stages.push(line.to_string()),
            Some("USER") => users.push(words.next().unwrap().to_string()),
            Some("COPY") => {
                let rest: Vec<&str> = words.collect();
                if rest.iter().any(|w| w.starts_with("--from=")) {
                    continue;
                }
                let srcs = &rest[..rest.len() - 1];
                sources.extend(srcs.iter().map(|s| s.to_string()));
            }
            _ => {}
        }
    }
    assert_eq!(
        stages.len(),
        2,
        "multi-stage: builder + runtime: {stages:?}"
    );
    assert!(stages[0].starts_with("FROM rust:1.95"), "{}", stages[0]);
    assert!(!sources.is_empty());
    for s in &sources {
        assert!(
            root.join(s).exists(),
            "Dockerfile copies {s}, which does not exist"
        );
    }
    // Everything the workspace needs to build `kstash` is in the context.
    for member in [
        "engine",
        "tests",
        "sdk",
        "addons",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        assert!(
            sources.iter().any(|s| s == member),
            "Dockerfile does not copy {member}"
        );
    }
    assert_eq!(users.last().map(String::as_str), Some("65532:65532"));
    // The module file the builder copies is the one cargo produces for the addon crate.
    let manifest: toml_like::Package = toml_like::package(
        &std::fs::read_to_string(root.join("addons/elasticsearch/Cargo.toml")).unwrap(),
    );
    let wasm = format!(
        "addons/target/wasm32-wasip2/release/{}.wasm",
        manifest.name.replace('-', "_")
    );
    assert!(text.contains(&wasm), "Dockerfile must copy {wasm}");
}

/// The one field of a Cargo.toml this test needs, without a TOML dependency.
mod toml_like {
    pub struct Package {
        pub name: String,
    }
    pub fn package(text: &str) -> Package {
        let mut in_pkg = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_pkg = line == "[package]";
            } else if in_pkg {
                if let Some(v) = line.strip_prefix("name") {
                    let v = v.trim().trim_start_matches('=').trim().trim_matches('"');
                    return Package {
                        name: v.to_string(),
                    };
                }
            }
        }
        panic!("no [package] name");
    }
}

fn rules_of(doc: &Value) -> Vec<PolicyRule> {
    serde_json::from_value(doc["rules"].clone()).expect("rules")
}

#[test]
fn rbac_has_no_wildcards_and_no_write_on_inputs() {
    let docs = render(&[]);
    let cluster = rules_of(one(&docs, "ClusterRole"));
    let role = rules_of(named(&docs, "Role", "kstash-leader-election"));
    let webhook_role = rules_of(named(&docs, "Role", "kstash-webhook"));
    for r in cluster.iter().chain(&role) {
        for g in rbac::grants(r, None) {
            assert!(
                !g.api_group.contains('*') && !g.resource.contains('*') && g.verb != "*",
                "wildcard grant: {g}"
            );
            // What users own is read only: the operator never writes targets, policies, the
            // addon catalog or Secrets (blueprints only get the operator's finaliser: patch).
            let read_only = [
                "retentionpolicies",
                "addons",
                "functions",
                "elasticsearches",
                "appbindings",
                "secrets",
                "namespaces",
            ];
            let kubedb_object = g.api_group == "kubedb.com" && !g.resource.ends_with("/finalizers");
            if read_only.contains(&g.resource.as_str()) || kubedb_object {
                assert!(
                    matches!(g.verb.as_str(), "get" | "list" | "watch"),
                    "write grant on a user-owned input: {g}"
                );
            }
            if g.resource == "backupblueprints" {
                assert!(
                    matches!(g.verb.as_str(), "get" | "list" | "watch" | "patch"),
                    "blueprints: {g}"
                );
            }
            // The operator only patches; `update` is for owners' finalizers (owner references
            // with blockOwnerDeletion) and the Lease (client-go's replace).
            if g.verb == "update" {
                assert!(
                    g.resource.ends_with("/finalizers") || g.resource == "leases",
                    "update outside finalizers/leases: {g}"
                );
            }
            assert!(g.verb != "escalate" && g.verb != "bind" && g.verb != "impersonate");
        }
    }
    // Secrets: get by name only, never list/watch (which would expose every Secret's data).
    let secret_verbs: Vec<String> = cluster
        .iter()
        .flat_map(|r| rbac::grants(r, None))
        .filter(|g| g.resource == "secrets")
        .map(|g| g.verb)
        .collect();
    assert_eq!(secret_verbs, ["get"]);
    // The webhook's Role: its certificate Secret in the release namespace, created once (RBAC
    // cannot name what is created), read and renewed by name only; never listed or watched.
    let mut secret_grants: Vec<(String, Option<String>)> = webhook_role
        .iter()
        .flat_map(|r| rbac::grants(r, None))
        .map(|g| {
            assert_eq!((g.api_group.as_str(), g.resource.as_str()), ("", "secrets"));
            (g.verb, g.resource_name)
        })
        .collect();
    secret_grants.sort();
    let cert = Some("kstash-webhook-cert".to_string());
    assert_eq!(
        secret_grants,
        [
            ("create".to_string(), None),
            ("get".to_string(), cert.clone()),
            ("update".to_string(), cert)
        ]
    );
    // The webhook configurations: the two named after the release, get and patch only.
    let admission: Vec<String> = cluster
        .iter()
        .flat_map(|r| rbac::grants(r, None))
        .filter(|g| g.api_group == "admissionregistration.k8s.io")
        .map(|g| g.to_string())
        .collect();
    assert_eq!(
        admission,
        [
            "get admissionregistration.k8s.io/validatingwebhookconfigurations (name kstash)",
            "patch admissionregistration.k8s.io/validatingwebhookconfigurations (name kstash)",
            "get admissionregistration.k8s.io/mutatingwebhookconfigurations (name kstash)",
            "patch admissionregistration.k8s.io/mutatingwebhookconfigurations (name kstash)",
        ]
    );
    // The leader-election Role: the release namespace's Leases (leader election and session
    // claims), never listed or watched.
    for g in role.iter().flat_map(|r| rbac::grants(r, None)) {
        assert_eq!(
            (g.api_group.as_str(), g.resource.as_str()),
            ("coordination.k8s.io", "leases")
        );
        assert!(
            ["create", "get", "update", "delete"].contains(&g.verb.as_str()),
            "{g}"
        );
    }
}

#[test]
fn rbac_gaps_follow_kubernetes_rbac_semantics() {
    let rule = |groups: &[&str], res: &[&str], verbs: &[&str], names: &[&str]| PolicyRule {
        api_groups: Some(groups.iter().map(|s| s.to_string()).collect()),
        resources: Some(res.iter().map(|s| s.to_string()).collect()),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        resource_names: (!names.is_empty()).then(|| names.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    };
    let rec =
        |verb: &str, g: &str, r: &str, sub: Option<&str>, ns: Option<&str>, name: Option<&str>| {
            AuditRecord {
                verb: verb.into(),
                api_group: g.into(),
                resource: r.into(),
                subresource: sub.map(Into::into),
                namespace: ns.map(Into::into),
                name: name.map(Into::into),
                user_agent: None,
            }
        };
    let rules = vec![
        (
            None,
            rule(
                &["storage.kubestash.com"],
                &["snapshots"],
                &["get", "delete"],
                &[],
            ),
        ),
        (
            None,
            rule(
                &["storage.kubestash.com"],
                &["snapshots/status"],
                &["patch"],
                &[],
            ),
        ),
        (
            Some("kstash".to_string()),
            rule(
                &["coordination.k8s.io"],
                &["leases"],
                &["get", "update"],
                &["kstash-operator"],
            ),
        ),
    ];
    let audit = vec![
        rec(
            "get",
            "storage.kubestash.com",
            "snapshots",
            None,
            Some("demo"),
            Some("s1"),
        ),
        // The status subresource needs its own rule: `snapshots` does not cover it ...
        rec(
            "update",
            "storage.kubestash.com",
            "snapshots",
            Some("status"),
            Some("demo"),
            Some("s1"),
        ),
        // ... and `snapshots/status` does not cover the main resource.
        rec(
            "patch",
            "storage.kubestash.com",
            "snapshots",
            Some("status"),
            Some("demo"),
            Some("s1"),
        ),
        rec(
            "get",
            "coordination.k8s.io",
            "leases",
            None,
            Some("kstash"),
            Some("kstash-operator"),
        ),
        // Another name, another namespace: not covered by the Role.
        rec(
            "get",
            "coordination.k8s.io",
            "leases",
            None,
            Some("kstash"),
            Some("other"),
        ),
        rec(
            "get",
            "coordination.k8s.io",
            "leases",
            None,
            Some("demo"),
            Some("kstash-operator"),
        ),
    ];
    let (missing, unused) = rbac::rbac_gaps_scoped(&rules, &audit);
    let missing: Vec<_> = missing
        .iter()
        .map(|r| {
            (
                r.verb.as_str(),
                rbac::rbac_resource(r),
                r.namespace.clone(),
                r.name.clone(),
            )
        })
        .collect();
    assert_eq!(
        missing,
        vec![
            (
                "get",
                "leases".to_string(),
                Some("demo".into()),
                Some("kstash-operator".into())
            ),
            (
                "get",
                "leases".to_string(),
                Some("kstash".into()),
                Some("other".into())
            ),
            (
                "update",
                "snapshots/status".to_string(),
                Some("demo".into()),
                Some("s1".into())
            ),
        ]
    );
    let unused: Vec<String> = unused.iter().map(|g| g.to_string()).collect();
    assert_eq!(
        unused,
        [
            "update coordination.k8s.io/leases (name kstash-operator) in namespace kstash",
            "delete storage.kubestash.com/snapshots",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// RBAC least privilege against a real run: the operator under the chart's rules.

/// The User-Agent of the operator's client, so the audit tells its requests from the test's.
const OPERATOR_UA: &str = "kstash-operator-under-rbac-test";

/// Grants the run below does not exercise, each with the reason it is still needed.
/// `(verb, group, resource)`; a grant missing from the run and from this list fails the test.
const UNUSED_BUT_NEEDED: &[(&str, &str, &str, &str)] = &[
    (
        "patch",
        "core.kubestash.com",
        "backupbatches/status",
        "a BackupBatch (not run by kstash) is marked KindNotSupported in its status; the run creates none",
    ),
    (
        "patch",
        "core.kubestash.com",
        "backupverificationsession/status",
        "a BackupVerificationSession (not run by kstash) is marked KindNotSupported; the run creates none",
    ),
    (
        "get",
        "storage.kubestash.com",
        "snapshots",
        "the executor reads the Snapshots of a session whose executor died (recovery after a restart); a clean run reads none",
    ),
    (
        "delete",
        "core.kubestash.com",
        "backupconfigurations",
        "auto-backup deletes a BackupConfiguration when its target or blueprint goes (blueprint deletionPolicy); the run deletes nothing",
    ),
    (
        "delete",
        "core.kubestash.com",
        "backupsessions",
        "session history trimming deletes sessions beyond sessionHistoryLimit; the run has one session",
    ),
    (
        "patch",
        "core.kubestash.com",
        "backupsessions",
        "the cleanup finaliser is removed when a session is deleted (history trimming); the run deletes none",
    ),
    (
        "get",
        "core.kubestash.com",
        "restoresessions",
        "the RestoreSession executor reads a RestoreSession only when one exists; the run is a backup",
    ),
    (
        "patch",
        "core.kubestash.com",
        "restoresessions",
        "finaliser of a RestoreSession; the run is a backup",
    ),
    (
        "patch",
        "core.kubestash.com",
        "restoresessions/status",
        "RestoreSession progress and phase; the run is a backup",
    ),
    (
        "update",
        "core.kubestash.com",
        "backupconfigurations/finalizers",
        "OwnerReferencesPermissionEnforcement: a BackupSession's owner reference to its BackupConfiguration blocks owner deletion; checked at admission, never a request of its own",
    ),
    (
        "update",
        "storage.kubestash.com",
        "repositories/finalizers",
        "OwnerReferencesPermissionEnforcement: a Snapshot's owner reference to its Repository blocks owner deletion",
    ),
    (
        "update",
        "kubedb.com",
        "elasticsearches/finalizers",
        "OwnerReferencesPermissionEnforcement: a BackupConfiguration's owner reference to its Elasticsearch target blocks owner deletion",
    ),
    (
        "update",
        "appcatalog.appscode.com",
        "appbindings/finalizers",
        "OwnerReferencesPermissionEnforcement: a BackupConfiguration's owner reference to its AppBinding target blocks owner deletion",
    ),
    (
        "delete",
        "storage.kubestash.com",
        "repositories",
        "Repositories are deleted with their BackupConfiguration (repositories[].deletionPolicy) or a WipeOut BackupStorage",
    ),
    (
        "delete",
        "storage.kubestash.com",
        "snapshots",
        "retention deletes Snapshots beyond successfulSnapshots.last (5); the run makes one",
    ),
    (
        "patch",
        "storage.kubestash.com",
        "snapshots",
        "retention marks a Snapshot WipeOut before deleting it and its finaliser is removed on deletion; the run deletes none",
    ),
    (
        "update",
        "",
        "secrets",
        "the webhook's serving certificate is renewed 30 days before it expires (a year after it is made); the run's is new",
    ),
    (
        "patch",
        "events.k8s.io",
        "events",
        "the event recorder patches an Event's series when the same event repeats within its cache window",
    ),
];

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rbac_is_exactly_what_a_real_run_uses() {
    // The chart's rules (default values: release namespace kstash).
    let chart = render(&[]);
    let cluster_rules = rules_of(one(&chart, "ClusterRole"));
    let namespace_rules = role_rules(&chart);
    let lease_name = "kstash-operator";

    // The embedded control plane with its audit on, serving kstash's CRDs.
    let cluster = TestCluster::start_with(|cfg| cfg.audit = true).await;
    let tmp = &cluster.dir;
    let test_client = cluster.client.clone();

    // Real parts: S3 (moto), Elasticsearch (the emulator, TLS + basic auth), the addon module.
    let moto = Moto::start();
    moto.create_bucket("esbackup");
    let emu = kstash_es_emulator::EmulatorBuilder::new()
        .tls(true)
        .auth("elastic", "es-pass")
        .seed(kstash_es_emulator::Seed {
            docs: 200,
            indices: 2,
            large_doc_bytes: 0,
            seed: 7,
        })
        .start()
        .await
        .unwrap();
    let wasm = std::fs::read(module_file()).unwrap();
    let sha = module_sha256();
    let module_dir = tmp.path().join("modules");
    std::fs::create_dir_all(&module_dir).unwrap();
    std::fs::write(module_dir.join("elasticsearch.wasm"), &wasm).unwrap();

    // The tutorial's objects (examples/auto-backup), the storage pointed at the local S3 server,
    // plus what KubeDB would have created (the AppBinding and its Secret) and the chart's Addon
    // and Functions pinned to the module built here.
    for ns in ["kstash", "demo"] {
        cluster.create_namespace(ns).await;
    }
    cluster.create_s3_secret("demo", "s3-secret").await;
    cluster
        .create_secret("demo", "encrypt-secret", &[("RESTIC_PASSWORD", "changeit")])
        .await;
    es_database(&cluster, "demo", "es-quickstart", &emu, "es-pass", false).await;
    let mut storage: Value = tutorial_doc("backupstorage.yaml");
    storage["spec"]["storage"]["s3"]["endpoint"] = json!(moto.endpoint());
    create_json(&test_client, &storage).await;
    create_json(&test_client, &tutorial_doc("retentionpolicy.yaml")).await;
    create_json(&test_client, &tutorial_doc("default-backupblueprint.yaml")).await;
    let addons = yaml_docs(
        &helm_template(&[
            "--show-only",
            "templates/addons.yaml",
            "--set",
            &format!("addons.elasticsearch.sha256={sha}"),
        ])
        .unwrap(),
    );
    for d in &addons {
        create_json(&test_client, d).await;
    }
    create_json(&test_client, &tutorial_doc("sample-es.yaml")).await;
    apply_webhook_configurations(&test_client, &chart).await;

    // The operator, as the chart runs it: leader election on the Lease in the release namespace,
    // session claims there too, the metrics endpoint, the webhook, every controller.
    let op_client = cluster.client_with_user_agent(OPERATOR_UA).await;
    let ctx = operator_context_with(
        op_client.clone(),
        kstash_operator::OperatorConfig {
            identity: "kstash-0".into(),
            module_dir: Some(module_dir.clone()),
            data_dir: tmp.path().join("data"),
            namespace: None,
        },
        kstash_runtime::RuntimeConfig::default().max_concurrent_tasks,
        Some(kstash_operator::task::claim::ClaimConfig::new(
            "kstash", "kstash-0",
        )),
    );
    let (metrics, metrics_addr) = kstash_operator::metrics::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let opts = kstash_operator::ServeOptions {
        leader_election: Some(kstash_operator::leader::LeaderConfig::new(
            "kstash", lease_name, "kstash-0",
        )),
        metrics: Some(metrics),
        shutdown: shutdown.clone(),
        shutdown_grace: kstash_operator::DEFAULT_SHUTDOWN_GRACE,
        webhook: Some(webhook_options(&chart).await.0),
    };
    let operator = tokio::spawn(kstash_operator::serve(ctx, opts));

    // The tutorial's flow: BackupConfiguration Ready, Repository initialised, a BackupSession
    // and its Snapshot Succeeded.
    let bc_name = "appbinding-es-quickstart";
    wait_for(
        "BackupConfiguration demo/appbinding-es-quickstart Ready",
        Duration::from_secs(120),
        || async {
            let bc = get_json(&test_client, "BackupConfiguration", "demo", bc_name).await?;
            (bc["status"]["phase"] == "Ready").then_some(())
        },
    )
    .await;
    wait_for(
        "Repository demo/s3-elasticsearch-repo Ready",
        Duration::from_secs(60),
        || async {
            let r = get_json(&test_client, "Repository", "demo", "s3-elasticsearch-repo").await?;
            (r["status"]["phase"] == "Ready").then_some(())
        },
    )
    .await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(180);
    loop {
        let sessions = list_json(&test_client, "BackupSession", "demo").await;
        if sessions.iter().any(|s| s["status"]["phase"] == "Succeeded") {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            let snaps = list_json(&test_client, "Snapshot", "demo").await;
            panic!(
                "timed out after 180s waiting for a BackupSession Succeeded\nsessions: {}\nsnapshots: {}",
                serde_json::to_string_pretty(&sessions).unwrap(),
                serde_json::to_string_pretty(&snaps).unwrap()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    wait_for("a Snapshot Succeeded", Duration::from_secs(60), || async {
        let snaps = list_json(&test_client, "Snapshot", "demo").await;
        snaps
            .iter()
            .any(|s| s["status"]["phase"] == "Succeeded")
            .then_some(())
    })
    .await;
    // The webhook's certificate is made and its CA in both configurations.
    wait_for_ca_bundles(&test_client).await;
    // One scrape (computed from the API objects by the operator's client), then a clean stop
    // (which releases the Lease).
    let scrape = http_get(metrics_addr, "/metrics").await;
    assert!(scrape.contains("kstash_operator_leader 1"), "{scrape}");
    shutdown.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(60), operator)
        .await
        .expect("operator stops within 60 s")
        .unwrap()
        .unwrap();

    let audit: Vec<AuditRecord> = cluster
        .cp
        .audit()
        .into_iter()
        .filter(|r| r.user_agent.as_deref() == Some(OPERATOR_UA))
        .collect();
    assert!(
        !audit.is_empty(),
        "the operator's requests are in the audit"
    );
    let rules: Vec<(Option<String>, PolicyRule)> = cluster_rules
        .iter()
        .map(|r| (None, r.clone()))
        .chain(
            namespace_rules
                .iter()
                .map(|r| (Some("kstash".to_string()), r.clone())),
        )
        .collect();
    let (missing, unused) = rbac::rbac_gaps_scoped(&rules, &audit);
    let missing: Vec<String> = missing
        .iter()
        .map(|r| {
            format!(
                "{} {}/{} ns={:?} name={:?}",
                r.verb,
                r.api_group,
                rbac::rbac_resource(r),
                r.namespace,
                r.name
            )
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(
        missing.is_empty(),
        "the operator made requests the chart's RBAC does not allow:\n{}",
        missing.join("\n")
    );
    let unexplained: Vec<String> = unused
        .iter()
        .filter(|g| {
            !UNUSED_BUT_NEEDED
                .iter()
                .any(|(v, grp, res, _)| *v == g.verb && *grp == g.api_group && *res == g.resource)
        })
        // rbac.kubedbResources: auto-backup watches, and targets and restores read, every
        // KubeDB kind the cluster serves; the run backs up an Elasticsearch only (the control
        // plane also serves Redis and Postgres, so those are watched but never read by name).
        .filter(|g| g.api_group != "kubedb.com" || g.resource.starts_with("elasticsearches"))
        .map(|g| g.to_string())
        .collect();
    assert!(
        unexplained.is_empty(),
        "the chart grants what the operator did not use (remove it, or list it with a reason in UNUSED_BUT_NEEDED):\n{}",
        unexplained.join("\n")
    );
    drop(emu);
    let TestCluster { cp, .. } = cluster;
    cp.shutdown().await;
}

// The admission webhooks, served by the operator to the embedded control plane's callers as
// the API server calls them.

/// The value of `--<flag>=` in the chart's Deployment args.
fn chart_arg(docs: &[Value], flag: &str) -> String {
    let prefix = format!("--{flag}=");
    args(docs)
        .iter()
        .find_map(|a| a.strip_prefix(&prefix).map(str::to_string))
        .unwrap_or_else(|| panic!("the chart passes no {prefix}"))
}

/// Creates the chart's Validating/MutatingWebhookConfiguration.
async fn apply_webhook_configurations(client: &kube::Client, chart: &[Value]) {
    use k8s_openapi::api::admissionregistration::v1::{
        MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
    };
    let pp = kube::api::PostParams::default();
    let v: ValidatingWebhookConfiguration =
        serde_json::from_value(one(chart, "ValidatingWebhookConfiguration").clone()).unwrap();
    kube::Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .create(&pp, &v)
        .await
        .unwrap();
    let m: MutatingWebhookConfiguration =
        serde_json::from_value(one(chart, "MutatingWebhookConfiguration").clone()).unwrap();
    kube::Api::<MutatingWebhookConfiguration>::all(client.clone())
        .create(&pp, &m)
        .await
        .unwrap();
}

/// The webhook as the chart's flags configure it (release namespace `kstash`), on a free
/// loopback port.
async fn webhook_options(
    chart: &[Value],
) -> (
    kstash_operator::webhook::WebhookOptions,
    std::net::SocketAddr,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = kstash_operator::webhook::WebhookConfig::new(
        "kstash",
        chart_arg(chart, "webhook-service"),
        chart_arg(chart, "webhook-configuration"),
    );
    config.secret = chart_arg(chart, "webhook-secret");
    (
        kstash_operator::webhook::WebhookOptions { listener, config },
        addr,
    )
}

/// Both configurations as stored: (validating, mutating).
async fn webhook_configurations(client: &kube::Client) -> (Value, Value) {
    use k8s_openapi::api::admissionregistration::v1::{
        MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
    };
    let v = kube::Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .get("kstash")
        .await
        .unwrap();
    let m = kube::Api::<MutatingWebhookConfiguration>::all(client.clone())
        .get("kstash")
        .await
        .unwrap();
    (
        serde_json::to_value(v).unwrap(),
        serde_json::to_value(m).unwrap(),
    )
}

async fn webhook_secret(client: &kube::Client) -> Option<k8s_openapi::api::core::v1::Secret> {
    kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), "kstash")
        .get_opt("kstash-webhook-cert")
        .await
        .unwrap()
}

/// Waits until the operator has written the webhook Secret and set its CA as the caBundle of
/// every webhook of both configurations; returns the CA (PEM) read back from the
/// ValidatingWebhookConfiguration.
async fn wait_for_ca_bundles(client: &kube::Client) -> String {
    use base64::Engine;
    wait_for(
        "the webhook Secret and the caBundle of both configurations",
        Duration::from_secs(60),
        || async {
            let secret = webhook_secret(client).await?;
            assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
            let data = secret.data?;
            for key in ["tls.crt", "tls.key", "ca.crt"] {
                assert!(data.contains_key(key), "Secret key {key}");
            }
            let want = base64::engine::general_purpose::STANDARD.encode(&data["ca.crt"].0);
            let (v, m) = webhook_configurations(client).await;
            for cfg in [&v, &m] {
                let hooks = cfg["webhooks"].as_array()?;
                if !hooks.iter().all(|w| w["clientConfig"]["caBundle"] == want) {
                    return None;
                }
            }
            let read_back = base64::engine::general_purpose::STANDARD
                .decode(v["webhooks"][0]["clientConfig"]["caBundle"].as_str()?)
                .unwrap();
            Some(String::from_utf8(read_back).unwrap())
        },
    )
    .await
}

/// An HTTPS client trusting only `ca_pem`, with `host` resolving to `addr` (as the API server
/// reaches `<service>.<namespace>.svc`).
fn webhook_client(ca_pem: &str, host: &str, addr: std::net::SocketAddr) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .resolve(host, addr)
        .build()
        .unwrap()
}

/// The `AdmissionReview` the API server sends for `operation` of `object`.
fn admission_review(uid: &str, operation: &str, object: &Value, old: Option<&Value>) -> Value {
    let (group, version) = object["apiVersion"]
        .as_str()
        .unwrap()
        .split_once('/')
        .unwrap();
    let kind = object["kind"].as_str().unwrap();
    let gvk = json!({"group": group, "version": version, "kind": kind});
    let gvr =
        json!({"group": group, "version": version, "resource": support::resource_of(kind).plural});
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid, "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
            "name": object["metadata"]["name"], "namespace": object["metadata"]["namespace"],
            "operation": operation,
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
            "object": object, "oldObject": old.cloned().unwrap_or(Value::Null), "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1",
                        "kind": if operation == "CREATE" { "CreateOptions" } else { "UpdateOptions" }},
        }
    })
}

/// POSTs `body` to `url`: (HTTP status, body).
async fn post(client: &reqwest::Client, url: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let r = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e:?}"));
    let status = r.status().as_u16();
    (status, r.bytes().await.unwrap().to_vec())
}

/// The `response` of an `AdmissionReview` answer, checked to echo `uid`.
async fn review_response(client: &reqwest::Client, url: &str, review: &Value) -> Value {
    let (status, body) = post(client, url, serde_json::to_vec(review).unwrap()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let out: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(out["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(out["kind"], "AdmissionReview");
    assert_eq!(out["response"]["uid"], review["request"]["uid"]);
    out["response"].clone()
}

/// What the API server reports for a denial: `admission webhook "<name>" denied the request:
/// <message>`, `<name>` being the webhook of `cfg` whose rule matches `object`.
fn api_server_denial(cfg: &Value, object: &Value, response: &Value) -> String {
    assert_eq!(response["allowed"], false, "{response}");
    assert_eq!(response["status"]["code"], 403);
    assert_eq!(response["status"]["reason"], "Forbidden");
    let group = object["apiVersion"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let plural = support::resource_of(object["kind"].as_str().unwrap()).plural;
    let hook = cfg["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| {
            let r = &w["rules"][0];
            r["apiGroups"][0] == group && r["resources"][0] == plural.as_str()
        })
        .unwrap_or_else(|| panic!("no webhook for {group}/{plural}"));
    format!(
        "admission webhook \"{}\" denied the request: {}",
        hook["name"].as_str().unwrap(),
        response["status"]["message"].as_str().unwrap()
    )
}

/// `kubectl apply` of `yaml` to the embedded control plane, which must refuse it: the
/// `admission webhook "…" denied the request: …` part of its error.
fn kubectl_refusal(cluster: &TestCluster, yaml: &str) -> String {
    let out = cluster.kubectl_raw(&["apply", "-f", "-"], Some(yaml));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "kubectl apply must be refused:\n{yaml}"
    );
    assert!(err.contains("Error from server (Forbidden)"), "{err}");
    let i = err
        .find("admission webhook")
        .unwrap_or_else(|| panic!("{err}"));
    err[i..].trim_end().to_string()
}

fn storage_yaml(name: &str, bucket: &str, default: bool) -> String {
    format!("apiVersion: storage.kubestash.com/v1alpha1\nkind: BackupStorage\nmetadata:\n  name: {name}\n  namespace: demo\nspec:\n  default: {default}\n  deletionPolicy: WipeOut\n  storage:\n    provider: s3\n    s3:\n      bucket: {bucket}/\n      endpoint: http://127.0.0.1:9000\n      secretName: s3-secret\n")
}

fn session_yaml(session: &str) -> String {
    format!("apiVersion: core.kubestash.com/v1alpha1\nkind: BackupSession\nmetadata:\n  name: bs-1\n  namespace: demo\nspec:\n  invoker:\n    apiGroup: core.kubestash.com\n    kind: BackupConfiguration\n    name: es-backup\n  session: {session}\n")
}

/// One operator replica as the chart runs it (leader election, session claims, the webhook).
struct Replica {
    task: tokio::task::JoinHandle<Result<(), kstash_operator::leader::LeaderError>>,
    shutdown: tokio_util::sync::CancellationToken,
    addr: std::net::SocketAddr,
    /// `/metrics`, `/healthz`, `/readyz`.
    metrics: std::net::SocketAddr,
}

impl Replica {
    async fn start(cluster: &TestCluster, chart: &[Value], identity: &str) -> Replica {
        let ctx = operator_context_with(
            cluster.client.clone(),
            kstash_operator::OperatorConfig {
                identity: identity.into(),
                module_dir: None,
                data_dir: cluster.dir.path().join(identity),
                namespace: None,
            },
            1,
            Some(kstash_operator::task::claim::ClaimConfig::new(
                "kstash", identity,
            )),
        );
        let (webhook, addr) = webhook_options(chart).await;
        let (metrics_listener, metrics) =
            kstash_operator::metrics::bind("127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let opts = kstash_operator::ServeOptions {
            leader_election: Some(kstash_operator::leader::LeaderConfig::new(
                "kstash",
                "kstash-operator",
                identity,
            )),
            metrics: Some(metrics_listener),
            shutdown: shutdown.clone(),
            shutdown_grace: Duration::from_secs(5),
            webhook: Some(webhook),
        };
        Replica {
            task: tokio::spawn(kstash_operator::serve(ctx, opts)),
            shutdown,
            addr,
            metrics,
        }
    }

    /// The status of `GET /readyz`.
    async fn readiness(&self) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(self.metrics).await.unwrap();
        tcp.write_all(b"GET /readyz HTTP/1.0\r\nHost: kstash\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).await.unwrap();
        answer
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0)
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the replica stops within 30 s")
            .unwrap()
            .unwrap();
    }
}

/// Every replica serves kstash's rules as the API server's webhooks, with a certificate the
/// operator made, kept in its Secret and trusted through the caBundle it set; the answers are
/// exactly what `kubectl apply` gets from the embedded control plane; a restart reuses the
/// certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhook_answers_as_the_control_plane_with_the_operators_certificate() {
    use base64::Engine;
    let chart = render(&[]);
    // The control plane as `kstash up` runs it: kstash's rules in its write path.
    let cluster = TestCluster::start_with(|cfg| {
        cfg.admission = Some(std::sync::Arc::new(
            kstash_controlplane::kstash_admission::KstashAdmission,
        ))
    })
    .await;
    let client = cluster.client.clone();
    for ns in ["kstash", "demo"] {
        cluster.create_namespace(ns).await;
    }
    apply_webhook_configurations(&client, &chart).await;
    // Another pod holds the leader Lease for the whole test: serving must not wait for it.
    let lease: k8s_openapi::api::coordination::v1::Lease = serde_json::from_value(json!({
        "metadata": {"name": "kstash-operator", "namespace": "kstash"},
        "spec": {"holderIdentity": "kstash-elsewhere", "leaseDurationSeconds": 3600,
                 "renewTime": jiff::Timestamp::now().to_string()}
    }))
    .unwrap();
    kube::Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client.clone(), "kstash")
        .create(&Default::default(), &lease)
        .await
        .unwrap();

    // Two replicas start at once (both may try to create the Secret: one wins, both use it).
    let a = Replica::start(&cluster, &chart, "kstash-a").await;
    let b = Replica::start(&cluster, &chart, "kstash-b").await;
    let ca = wait_for_ca_bundles(&client).await;
    let secret = webhook_secret(&client).await.unwrap();
    let (vwc, mwc) = webhook_configurations(&client).await;
    let host = format!("{}.kstash.svc", chart_arg(&chart, "webhook-service"));
    let path = |cfg: &Value| {
        cfg["webhooks"][0]["clientConfig"]["service"]["path"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let urls = |addr: std::net::SocketAddr| {
        (
            format!("https://{host}:{}{}", addr.port(), path(&vwc)),
            format!("https://{host}:{}{}", addr.port(), path(&mwc)),
        )
    };
    let (validate, mutate) = urls(a.addr);
    let http_a = webhook_client(&ca, &host, a.addr);
    let http_b = webhook_client(&ca, &host, b.addr);

    // (a) A second default BackupStorage in a namespace.
    cluster.apply_yaml(&storage_yaml("s3-first", "one", true));
    let second: Value = serde_yaml::from_str(&storage_yaml("s3-second", "two", true)).unwrap();
    let refused_default = kubectl_refusal(&cluster, &storage_yaml("s3-second", "two", true));
    assert!(
        refused_default.ends_with(
            "spec.default: multiple default BackupStorages are not allowed within the same namespace"
        ),
        "{refused_default}"
    );
    let review = admission_review(
        "7f0b2c1e-0001-4e51-9a41-000000000001",
        "CREATE",
        &second,
        None,
    );
    // The replica's own stores see s3-first within the watch latency.
    let response = wait_for(
        "the webhook refuses a second default BackupStorage",
        Duration::from_secs(30),
        || async {
            let r = review_response(&http_a, &validate, &review).await;
            (r["allowed"] == false).then_some(r)
        },
    )
    .await;
    assert_eq!(api_server_denial(&vwc, &second, &response), refused_default);
    // The other replica (not the leader either) answers the same.
    let (validate_b, _) = urls(b.addr);
    let response_b = wait_for(
        "replica b refuses it too",
        Duration::from_secs(30),
        || async {
            let r = review_response(&http_b, &validate_b, &review).await;
            (r["allowed"] == false).then_some(r)
        },
    )
    .await;
    assert_eq!(response_b, response);
    // Serving, so Ready (the chart's readiness probe is /readyz).
    assert_eq!((a.readiness().await, b.readiness().await), (200, 200));

    // (b) An update of a BackupSession's spec (immutable).
    cluster.apply_yaml(&session_yaml("frequent-backup"));
    let refused = kubectl_refusal(&cluster, &session_yaml("other-session"));
    assert!(
        refused.ends_with("spec: spec can not be updated"),
        "{refused}"
    );
    let stored = get_json(&client, "BackupSession", "demo", "bs-1")
        .await
        .unwrap();
    let mut changed = stored.clone();
    changed["spec"]["session"] = json!("other-session");
    let review = admission_review(
        "7f0b2c1e-0002-4e51-9a41-000000000002",
        "UPDATE",
        &changed,
        Some(&stored),
    );
    let response = review_response(&http_a, &validate, &review).await;
    assert_eq!(api_server_denial(&vwc, &changed, &response), refused);
    // Its status subresource is not the webhook's business.
    let mut status_review = review.clone();
    status_review["request"]["subResource"] = json!("status");
    assert_eq!(
        review_response(&http_a, &validate, &status_review).await["allowed"],
        true
    );

    // (c) A valid BackupStorage: allowed, and the mutation patch turns what kubectl sends into
    // what the embedded control plane stores.
    let sent: Value = serde_yaml::from_str(&storage_yaml("s3-third", "three", false)).unwrap();
    let review = admission_review(
        "7f0b2c1e-0003-4e51-9a41-000000000003",
        "CREATE",
        &sent,
        None,
    );
    let allowed = review_response(&http_a, &validate, &review).await;
    assert_eq!(
        allowed,
        json!({"uid": "7f0b2c1e-0003-4e51-9a41-000000000003", "allowed": true})
    );
    let mutation = review_response(&http_a, &mutate, &review).await;
    assert_eq!(mutation["allowed"], true);
    assert_eq!(mutation["patchType"], "JSONPatch");
    let patch: json_patch::Patch = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(mutation["patch"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let mut patched = sent.clone();
    json_patch::patch(&mut patched, &patch).unwrap();
    cluster.apply_yaml(&storage_yaml("s3-third", "three", false));
    let stored = get_json(&client, "BackupStorage", "demo", "s3-third")
        .await
        .unwrap();
    assert_eq!(patched["spec"], stored["spec"]);
    assert_eq!(patched["spec"]["storage"]["s3"]["bucket"], "three");
    assert_eq!(
        patched["spec"]["usagePolicy"]["allowedNamespaces"]["from"],
        "Same"
    );

    // Not an AdmissionReview: 400, naming what is wrong.
    let (status, body) = post(&http_a, &validate, b"{\"kind\": \"Pod\"}".to_vec()).await;
    assert_eq!(status, 400);
    assert!(
        String::from_utf8_lossy(&body).contains("only apiVersion admission.k8s.io/v1"),
        "{}",
        String::from_utf8_lossy(&body)
    );

    // (d) An update that only adds a finalizer is admitted even where the spec would be refused
    // (a second default that got in unchecked): the operator's finalizer can come and go.
    let mut finalized = second.clone();
    finalized["metadata"]["finalizers"] = json!(["kstash.io/cleanup"]);
    let review = admission_review(
        "7f0b2c1e-0005-4e51-9a41-000000000005",
        "UPDATE",
        &finalized,
        Some(&second),
    );
    assert_eq!(
        review_response(&http_a, &validate, &review).await["allowed"],
        true
    );

    // (e) A client that connects and never speaks loses its connection (10 s handshake
    // deadline) instead of holding it.
    let started = std::time::Instant::now();
    let mut stalled = tokio::net::TcpStream::connect(a.addr).await.unwrap();
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::io::AsyncReadExt::read(&mut stalled, &mut buf),
    )
    .await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "a stalled connection was kept: {read:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );

    // A restart reuses the Secret and the caBundle: nothing is regenerated or patched.
    a.stop().await;
    b.stop().await;
    let c = Replica::start(&cluster, &chart, "kstash-c").await;
    let (validate_c, _) = urls(c.addr);
    let http_c = webhook_client(&ca, &host, c.addr);
    let review = admission_review(
        "7f0b2c1e-0004-4e51-9a41-000000000004",
        "CREATE",
        &second,
        None,
    );
    let response = wait_for(
        "the restarted replica serves with the same CA",
        Duration::from_secs(30),
        || async {
            let r = http_c
                .post(&validate_c)
                .body(serde_json::to_vec(&review).unwrap())
                .send()
                .await
                .ok()?;
            let v: Value = serde_json::from_slice(&r.bytes().await.ok()?).ok()?;
            (v["response"]["allowed"] == false).then(|| v["response"].clone())
        },
    )
    .await;
    assert_eq!(api_server_denial(&vwc, &second, &response), refused_default);
    let after = webhook_secret(&client).await.unwrap();
    assert_eq!(
        after.metadata.resource_version, secret.metadata.resource_version,
        "the Secret is not rewritten"
    );
    assert_eq!(after.data, secret.data);
    let (vwc_after, mwc_after) = webhook_configurations(&client).await;
    assert_eq!(
        vwc_after["metadata"]["resourceVersion"],
        vwc["metadata"]["resourceVersion"]
    );
    assert_eq!(
        mwc_after["metadata"]["resourceVersion"],
        mwc["metadata"]["resourceVersion"]
    );
    c.stop().await;
    let TestCluster { cp, .. } = cluster;
    cp.shutdown().await;
}
