//! The generated schemas accept, keep and default the tutorial's objects the way an API server
//! would (`crds::prune_default_validate`), prune fields KubeStash's types don't have, and reject
//! bad values.

use std::path::PathBuf;
use std::sync::OnceLock;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

use kstash_api::crds;
use serde_json::{json, Value};

fn load(path: PathBuf) -> Value {
    kstash_testkit::yaml_file(&path)
}

fn apply(obj: &Value) -> Result<Value, Vec<crds::SchemaViolation>> {
    static ALL: OnceLock<Vec<CustomResourceDefinition>> = OnceLock::new();
    let kind = obj["kind"].as_str().unwrap();
    let crd = ALL
        .get_or_init(crds::all)
        .iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind}"));
    crds::prune_default_validate(crds::schema_of(crd).unwrap(), obj)
}

#[test]
fn tutorial_objects_are_accepted_unchanged() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let files = [
        root.join("../../examples/auto-backup/backupstorage.yaml"),
        root.join("../../examples/auto-backup/retentionpolicy.yaml"),
        root.join("../../examples/auto-backup/sample-es.yaml"),
        root.join("../../examples/auto-backup/sample-es-2.yaml"),
        root.join("tests/fixtures/backupconfiguration-default.yaml"),
        root.join("tests/fixtures/backupconfiguration-custom.yaml"),
        root.join("tests/fixtures/snapshot-default.yaml"),
        root.join("tests/fixtures/snapshot-custom.yaml"),
    ];
    for f in files {
        let obj = load(f.clone());
        let out = apply(&obj).unwrap_or_else(|e| panic!("{}: {e:#?}", f.display()));
        assert_eq!(out, obj, "{} changed by prune/default", f.display());
    }
}

#[test]
fn blueprints_get_the_crd_default_session_history_limit() {
    // The tutorial's stored BackupConfiguration shows `sessionHistoryLimit: 1` materialised by
    // the CRD default although neither blueprint sets it (spec §1.2).
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for f in [
        "default-backupblueprint.yaml",
        "custom-backup-blueprint.yaml",
    ] {
        let obj = load(root.join("../../examples/auto-backup").join(f));
        let out = apply(&obj).unwrap_or_else(|e| panic!("{f}: {e:#?}"));
        let mut want = obj.clone();
        want["spec"]["backupConfigurationTemplate"]["sessions"][0]["sessionHistoryLimit"] =
            json!(1);
        assert_eq!(out, want, "{f}");
    }
}

#[test]
fn unknown_fields_are_pruned_but_free_form_ones_kept() {
    let bc = json!({
        "apiVersion": "core.kubestash.com/v1alpha1", "kind": "BackupConfiguration",
        "metadata": {"name": "appbinding-es-quickstart", "namespace": "demo"},
        "spec": {"sessions": [{
            "name": "frequent-backup",
            // commented out in KubeStash's Go type -> pruned by the CRD (spec §0)
            "failurePolicy": "Retry",
            "scheduler": {"schedule": "*/5 * * * *",
                          "jobTemplate": {"template": {"controller": {}, "metadata": {}, "spec": {"resources": {}}}}},
            "retryConfig": {"delay": "30s"},
            "addon": {"name": "elasticsearch-addon", "tasks": [{"name": "logical-backup", "params": {"args": "--x", "n": 3}}]}
        }]}
    });
    let out = apply(&bc).unwrap();
    let s = &out["spec"]["sessions"][0];
    assert!(s.get("failurePolicy").is_none(), "unknown field pruned");
    assert_eq!(
        s["scheduler"]["jobTemplate"]["template"],
        json!({"controller": {}, "metadata": {}, "spec": {"resources": {}}})
    );
    assert_eq!(
        s["addon"]["tasks"][0]["params"],
        json!({"args": "--x", "n": 3})
    );
    assert_eq!(
        s["retryConfig"],
        json!({"delay": "30s", "maxRetry": 1}),
        "maxRetry defaults to 1"
    );
    assert_eq!(s["sessionHistoryLimit"], 1);
}

#[test]
fn bad_values_are_rejected_with_their_path() {
    let bs = json!({
        "apiVersion": "storage.kubestash.com/v1alpha1", "kind": "BackupStorage",
        "metadata": {"name": "s", "namespace": "demo"},
        "spec": {"storage": {"provider": "s3", "s3": {"bucket": "b"}}, "deletionPolicy": "Nope"}
    });
    let errs = apply(&bs).unwrap_err();
    assert!(
        errs.iter().any(|e| e.field == "spec.deletionPolicy"
            && e.reason == "FieldValueNotSupported"
            && e.message == r#"Unsupported value: "Nope": supported values: "Delete", "WipeOut""#),
        "{errs:?}"
    );

    let bc = json!({
        "apiVersion": "core.kubestash.com/v1alpha1", "kind": "BackupConfiguration",
        "metadata": {"name": "x", "namespace": "demo"},
        "spec": {"sessions": [{"name": "s", "retryConfig": {"maxRetry": 0}}]}
    });
    let errs = apply(&bc).unwrap_err();
    assert!(
        errs.iter().any(|e| e.to_string()
            == "spec.sessions[0].retryConfig.maxRetry: Invalid value: 0: spec.sessions[0].retryConfig.maxRetry in body should be greater than or equal to 1"),
        "{errs:?}"
    );

    let f = json!({
        "apiVersion": "addons.kubestash.com/v1alpha1", "kind": "Function",
        "metadata": {"name": "elasticsearch-backup"},
        "spec": {"module": {"location": "builtin:elasticsearch", "sha256": "not-hex"}}
    });
    let errs = apply(&f).unwrap_err();
    assert!(
        errs.iter().any(|e| e.field == "spec.module.sha256"
            && e.message == r#"Invalid value: "not-hex": spec.module.sha256 in body should match '^[0-9a-f]{64}$'"#),
        "{errs:?}"
    );

    let repo = json!({
        "apiVersion": "storage.kubestash.com/v1alpha1", "kind": "Repository",
        "metadata": {"name": "r", "namespace": "demo"},
        "spec": {"storageRef": {"namespace": "demo"}}
    });
    let errs = apply(&repo).unwrap_err();
    let wrong_type = json!({
        "apiVersion": "storage.kubestash.com/v1alpha1", "kind": "Repository",
        "metadata": {"name": "r", "namespace": "demo"},
        "spec": {"paused": "yes"}
    });
    let type_errs = apply(&wrong_type).unwrap_err();
    assert_eq!(
        type_errs[0].to_string(),
        r#"spec.paused: Invalid value: "string": spec.paused in body must be of type boolean: "string""#
    );
    assert!(
        errs.iter().any(|e| e.field == "spec.storageRef.name"
            && e.reason == "FieldValueRequired"
            && e.message == "Required value"),
        "{errs:?}"
    );
}

#[test]
fn restic_stats_summary_shape_is_stored() {
    let snap = json!({
        "apiVersion": "storage.kubestash.com/v1alpha1", "kind": "Snapshot",
        "metadata": {"name": "s", "namespace": "demo"},
        "spec": {"repository": "s3-elasticsearch-repo", "deletionPolicy": "Delete"},
        "status": {"components": {"dump": {"driver": "Restic", "resticStats": [
            {"summary": {"id": "abc", "hostPath": "/kubestash-interim/data", "size": "509 B", "uploaded": "2.141 KiB"},
             "progress": {"percentDone": 1}}]}}}
    });
    assert_eq!(apply(&snap).unwrap(), snap);
}

#[test]
fn real_kubedb_objects_keep_their_other_fields() {
    let es = json!({
        "apiVersion": "kubedb.com/v1", "kind": "Elasticsearch",
        "metadata": {"name": "es-quickstart", "namespace": "demo"},
        "spec": {"version": "xpack-8.15.0", "enableSSL": true, "replicas": 2, "storageType": "Durable",
                 "authSecret": {"name": "es-quickstart-elastic-cred"},
                 "podTemplate": {"spec": {"containers": [{"name": "elasticsearch", "resources": {"limits": {"memory": "1536Mi"}}}]}},
                 "tls": {"issuerRef": {"apiGroup": "cert-manager.io", "kind": "Issuer", "name": "es-ca"}},
                 "deletionPolicy": "Delete"},
        "status": {"phase": "Ready", "observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True"}]}
    });
    assert_eq!(apply(&es).unwrap(), es);
    let ab = json!({
        "apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding",
        "metadata": {"name": "es-quickstart", "namespace": "demo"},
        "spec": {"appRef": {"apiGroup": "kubedb.com", "kind": "Elasticsearch", "name": "es-quickstart", "namespace": "demo"},
                 "clientConfig": {"service": {"name": "es-quickstart", "port": 9200, "scheme": "https"}, "caBundle": "LS0tLS1CRUdJTi0t"},
                 "secret": {"name": "es-quickstart-elastic-cred"},
                 "tlsSecret": {"name": "es-quickstart-client-cert"},
                 "type": "kubedb.com/elasticsearch", "version": "8.15.0",
                 "parameters": {"apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "StashAddon"}}
    });
    assert_eq!(apply(&ab).unwrap(), ab);
    let typed: kstash_api::external::AppBinding = serde_json::from_value(ab.clone()).unwrap();
    assert_eq!(
        serde_json::to_value(&typed).unwrap(),
        ab,
        "typed AppBinding round trip"
    );
}
