//! Rendering rules beyond the tutorial: injection safety, usage policy, session selection,
//! naming across namespaces, error messages.

use std::collections::BTreeMap;

use kstash_api::core::BackupBlueprint;
use kstash_blueprint::{render, NamespaceLabels, RenderError};
use proptest::prelude::*;
use serde_json::{json, Value};

fn blueprint(usage: Value, template_ns: Option<&str>) -> BackupBlueprint {
    let mut tpl = json!({
        "backends": [{
            "name": "s3-backend",
            "storageRef": {"namespace": "${namespace}", "name": "s3-store"},
            "retentionPolicy": {"name": "demo-retention", "namespace": "${namespace}"}
        }],
        "sessions": [
            {
                "name": "frequent-backup",
                "scheduler": {"schedule": "${schedule}", "jobTemplate": {"backoffLimit": 1}},
                "repositories": [{"name": "${repoName}", "backend": "s3-backend", "directory": "/es/${namespace}",
                                   "encryptionSecret": {"name": "encrypt-secret", "namespace": "demo"}}],
                "addon": {"name": "elasticsearch-addon", "tasks": [{"name": "logical-backup",
                          "params": {"args": "${args:=--match=^(?![.]).+}", "${keyvar}": "literal-key"}}]}
            },
            {
                "name": "daily",
                "scheduler": {"schedule": "0 0 * * *", "jobTemplate": {}},
                "repositories": [{"name": "daily-repo", "directory": "/daily"}],
                "addon": {"name": "elasticsearch-addon", "tasks": [{"name": "logical-backup"}]}
            }
        ]
    });
    if let Some(ns) = template_ns {
        tpl["namespace"] = json!(ns);
    }
    serde_json::from_value(json!({
        "apiVersion": "core.kubestash.com/v1alpha1",
        "kind": "BackupBlueprint",
        "metadata": {"name": "bp", "namespace": "demo", "labels": {"team": "dba"}},
        "spec": {"usagePolicy": usage, "backupConfigurationTemplate": tpl}
    }))
    .unwrap()
}

fn all() -> Value {
    json!({"allowedNamespaces": {"from": "All"}})
}

fn target(ns: &str, extra: &[(&str, &str)]) -> Value {
    let mut ann = serde_json::Map::new();
    ann.insert("blueprint.kubestash.com/name".into(), json!("bp"));
    ann.insert("blueprint.kubestash.com/namespace".into(), json!("demo"));
    ann.insert(
        "variables.kubestash.com/schedule".into(),
        json!("*/5 * * * *"),
    );
    ann.insert("variables.kubestash.com/repoName".into(), json!("repo"));
    ann.insert("variables.kubestash.com/namespace".into(), json!("demo"));
    for (k, v) in extra {
        ann.insert((*k).into(), json!(v));
    }
    json!({
        "apiVersion": "kubedb.com/v1",
        "kind": "Elasticsearch",
        "metadata": {"name": "es", "namespace": ns, "annotations": ann},
        "spec": {"version": "xpack-8.15.0"}
    })
}

fn ok(t: &Value, bp: &BackupBlueprint) -> Value {
    serde_json::to_value(render(t, bp, &NamespaceLabels::new()).unwrap()).unwrap()
}

#[test]
fn injection_attempts_stay_one_literal_string() {
    let evil = "x\", \"paused\": true, \"y\": \"\\\n${namespace}";
    let t = target("demo", &[("variables.kubestash.com/repoName", evil)]);
    let bc = ok(&t, &blueprint(all(), None));
    let repo = &bc["spec"]["sessions"][0]["repositories"][0];
    assert_eq!(repo["name"], json!(evil));
    assert!(bc["spec"].get("paused").is_none());
    assert!(repo.get("y").is_none());
}

#[test]
fn defaults_lists_and_map_keys() {
    let bc = ok(&target("demo", &[]), &blueprint(all(), None));
    let task = &bc["spec"]["sessions"][0]["addon"]["tasks"][0];
    // `${args:=…}` default used when the annotation is absent.
    assert_eq!(task["params"]["args"], "--match=^(?![.]).+");
    // Map keys are not substituted (no variable `keyvar` needed).
    assert_eq!(task["params"]["${keyvar}"], "literal-key");
    assert_eq!(
        bc["spec"]["sessions"][0]["repositories"][0]["directory"],
        "/es/demo"
    );
    // Both sessions, defaults materialised in each.
    assert_eq!(bc["spec"]["sessions"].as_array().unwrap().len(), 2);
    assert_eq!(bc["spec"]["sessions"][1]["sessionHistoryLimit"], 1);
    assert_eq!(
        bc["spec"]["sessions"][1]["scheduler"]["jobTemplate"]["template"],
        json!({"controller": {}, "metadata": {}, "spec": {"resources": {}}})
    );
    assert_eq!(
        bc["metadata"]["labels"],
        json!({"team": "dba", "app.kubernetes.io/managed-by": "kubestash.com",
               "kubestash.com/invoker-name": "bp", "kubestash.com/invoker-namespace": "demo"})
    );
}

#[test]
fn session_selection_new_and_legacy_annotation() {
    let bp = blueprint(all(), None);
    for key in [
        "blueprint.kubestash.com/session-names",
        "blueprint.kubestash.com/sessions",
    ] {
        let bc = ok(&target("demo", &[(key, " daily ")]), &bp);
        let sessions = bc["spec"]["sessions"].as_array().unwrap();
        assert_eq!(sessions.len(), 1, "{key}");
        assert_eq!(sessions[0]["name"], "daily");
    }
    let err = render(
        &target(
            "demo",
            &[("blueprint.kubestash.com/session-names", "daily,hourly")],
        ),
        &bp,
        &BTreeMap::new(),
    )
    .unwrap_err();
    assert!(matches!(&err, RenderError::UnknownSession { session, .. } if session == "hourly"));
    let msg = err.to_string();
    assert!(
        msg.contains("blueprint.kubestash.com/session-names")
            && msg.contains("frequent-backup,daily"),
        "{msg}"
    );
}

#[test]
fn usage_policy_refusals_name_policy_and_namespace() {
    // Default (no usagePolicy) = Same: a target in `prod` may not use a blueprint of `demo`.
    let bp = blueprint(Value::Null, None);
    let err = render(&target("prod", &[]), &bp, &BTreeMap::new()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("Same") && msg.contains("\"prod\"") && msg.contains("demo/bp"),
        "{msg}"
    );
    // Same namespace is fine.
    ok(&target("demo", &[]), &bp);

    // Selector: decided on the target namespace's labels.
    let sel = json!({"allowedNamespaces": {"from": "Selector",
                     "selector": {"matchLabels": {"backup": "yes"}}}});
    let bp = blueprint(sel, None);
    let mut labels = NamespaceLabels::new();
    labels.insert(
        "prod".into(),
        [("backup".to_string(), "yes".to_string())].into(),
    );
    labels.insert(
        "dev".into(),
        [("backup".to_string(), "no".to_string())].into(),
    );
    assert!(render(&target("prod", &[]), &bp, &labels).is_ok());
    let err = render(&target("dev", &[]), &bp, &labels).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RenderError::UsagePolicyRefused { .. }));
    assert!(
        msg.contains("Selector") && msg.contains("\"dev\"") && msg.contains("backup"),
        "{msg}"
    );
}

#[test]
fn cross_namespace_name_and_template_namespace() {
    // Target in `prod`, template namespace unset -> BC in the blueprint's namespace `demo`,
    // named `<target-ns>-<kind>-<name>`.
    let bc = ok(&target("prod", &[]), &blueprint(all(), None));
    assert_eq!(bc["metadata"]["name"], "prod-appbinding-es");
    assert_eq!(bc["metadata"]["namespace"], "demo");
    assert_eq!(bc["spec"]["target"]["namespace"], "prod");
    // Template namespace = target namespace -> plain name.
    let bc = ok(&target("prod", &[]), &blueprint(all(), Some("prod")));
    assert_eq!(bc["metadata"]["name"], "appbinding-es");
    assert_eq!(bc["metadata"]["namespace"], "prod");
    // The template namespace may be a variable.
    let t = target("prod", &[("variables.kubestash.com/bcns", "prod")]);
    let bc = ok(&t, &blueprint(all(), Some("${bcns}")));
    assert_eq!(bc["metadata"]["name"], "appbinding-es");
    assert_eq!(bc["metadata"]["namespace"], "prod");
}

#[test]
fn other_kinds_and_appbindings() {
    let bp = blueprint(all(), None);
    let mut sts = target("demo", &[]);
    sts["apiVersion"] = json!("apps/v1");
    sts["kind"] = json!("StatefulSet");
    sts["metadata"]["name"] = json!("sample-sts");
    let bc = ok(&sts, &bp);
    assert_eq!(bc["metadata"]["name"], "statefulset-sample-sts");
    assert_eq!(
        bc["spec"]["target"],
        json!({"apiGroup": "apps", "kind": "StatefulSet", "name": "sample-sts", "namespace": "demo"})
    );
    // External database: an annotated AppBinding without appRef is the target itself.
    let mut ab = target("demo", &[]);
    ab["apiVersion"] = json!("appcatalog.appscode.com/v1alpha1");
    ab["kind"] = json!("AppBinding");
    ab["metadata"]["name"] = json!("ext-es");
    let bc = ok(&ab, &bp);
    assert_eq!(bc["metadata"]["name"], "appbinding-ext-es");
    assert_eq!(bc["spec"]["target"]["kind"], "AppBinding");
    assert_eq!(bc["spec"]["target"]["apiGroup"], "appcatalog.appscode.com");
    // A KubeDB AppBinding: target is its appRef.
    ab["spec"] =
        json!({"appRef": {"apiGroup": "kubedb.com", "kind": "Elasticsearch", "name": "ext-es"}});
    let bc = ok(&ab, &bp);
    assert_eq!(
        bc["spec"]["target"],
        json!({"apiGroup": "kubedb.com", "kind": "Elasticsearch", "name": "ext-es", "namespace": "demo"})
    );
}

#[test]
fn precise_errors() {
    let bp = blueprint(all(), None);
    let mut t = target("demo", &[]);
    t["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove("blueprint.kubestash.com/namespace");
    let msg = render(&t, &bp, &BTreeMap::new()).unwrap_err().to_string();
    assert!(
        msg.contains("blueprint.kubestash.com/namespace is required"),
        "{msg}"
    );

    let t = target("demo", &[("blueprint.kubestash.com/name", "other")]);
    let err = render(&t, &bp, &BTreeMap::new()).unwrap_err();
    assert!(
        matches!(err, RenderError::BlueprintMismatch { .. }),
        "{err}"
    );

    let mut t = target("demo", &[]);
    t["metadata"].as_object_mut().unwrap().remove("namespace");
    let err = render(&t, &bp, &BTreeMap::new()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "target: metadata.namespace is missing or not a string"
    );

    let t = target("demo", &[("variables.kubestash.com/repoName", "ok")]);
    let mut bad = bp.clone();
    bad.spec
        .backup_configuration_template
        .as_mut()
        .unwrap()
        .sessions[0]
        .config
        .scheduler
        .as_mut()
        .unwrap()
        .schedule = "${schedule:?required}".into();
    let err = render(&t, &bad, &BTreeMap::new()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("\":?\"") && msg.contains("spec.sessions[0].scheduler.schedule"),
        "{msg}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever a variable's value, it lands verbatim in exactly the fields that use it.
    #[test]
    fn any_value_is_inserted_verbatim(value in "\\PC*|[\"\\\\\n${}:=#%/ a-z]{0,24}") {
        let t = target("demo", &[("variables.kubestash.com/repoName", value.as_str())]);
        let bc = ok(&t, &blueprint(all(), None));
        prop_assert_eq!(&bc["spec"]["sessions"][0]["repositories"][0]["name"], &json!(value));
        prop_assert_eq!(&bc["spec"]["sessions"][0]["scheduler"]["schedule"], &json!("*/5 * * * *"));
    }
}
