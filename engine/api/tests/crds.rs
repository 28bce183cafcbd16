//! The generated CRDs match the spec's CRD catalogue (§1): names, scope, short names,
//! categories, printer columns, status subresource, and structural schemas.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kstash_api::crds;

struct Row {
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    short: &'static [&'static str],
    namespaced: bool,
    status: bool,
    in_all: bool,
    /// (name, type, jsonPath) before Age.
    columns: &'static [(&'static str, &'static str, &'static str)],
}

const PHASE: (&str, &str, &str) = ("Phase", "string", ".status.phase");
const DURATION: (&str, &str, &str) = ("Duration", "string", ".status.duration");

/// Spec §1 table, transcribed.
const CATALOGUE: &[Row] = &[
    Row {
        group: "core.kubestash.com",
        kind: "BackupConfiguration",
        plural: "backupconfigurations",
        singular: "backupconfiguration",
        short: &["bc"],
        namespaced: true,
        status: true,
        in_all: true,
        columns: &[PHASE, ("Paused", "boolean", ".spec.paused")],
    },
    Row {
        group: "core.kubestash.com",
        kind: "BackupSession",
        plural: "backupsessions",
        singular: "backupsession",
        short: &[],
        namespaced: true,
        status: true,
        in_all: true,
        columns: &[
            ("Invoker-Type", "string", ".spec.invoker.kind"),
            ("Invoker-Name", "string", ".spec.invoker.name"),
            PHASE,
            DURATION,
        ],
    },
    Row {
        group: "core.kubestash.com",
        kind: "BackupBlueprint",
        plural: "backupblueprints",
        singular: "backupblueprint",
        short: &[],
        namespaced: true,
        status: false,
        in_all: true,
        columns: &[],
    },
    Row {
        group: "core.kubestash.com",
        kind: "RestoreSession",
        plural: "restoresessions",
        singular: "restoresession",
        short: &["restore"],
        namespaced: true,
        status: true,
        in_all: true,
        columns: &[
            ("Repository", "string", ".spec.dataSource.repository"),
            PHASE,
            DURATION,
        ],
    },
    Row {
        group: "core.kubestash.com",
        kind: "HookTemplate",
        plural: "hooktemplates",
        singular: "hooktemplate",
        short: &[],
        namespaced: true,
        status: false,
        in_all: true,
        columns: &[
            ("Executor", "string", ".spec.executor.type"),
            ("Timeout", "string", ".spec.timeout"),
        ],
    },
    Row {
        group: "core.kubestash.com",
        kind: "BackupBatch",
        plural: "backupbatches",
        singular: "backupbatch",
        short: &[],
        namespaced: true,
        status: true,
        in_all: true,
        columns: &[],
    },
    Row {
        group: "core.kubestash.com",
        kind: "BackupVerifier",
        plural: "backupverifier",
        singular: "backupverifier",
        short: &[],
        namespaced: true,
        status: false,
        in_all: true,
        columns: &[],
    },
    Row {
        group: "core.kubestash.com",
        kind: "BackupVerificationSession",
        plural: "backupverificationsession",
        singular: "backupverificationsession",
        short: &[],
        namespaced: true,
        status: true,
        in_all: true,
        columns: &[PHASE, DURATION],
    },
    Row {
        group: "storage.kubestash.com",
        kind: "BackupStorage",
        plural: "backupstorages",
        singular: "backupstorage",
        short: &[],
        namespaced: true,
        status: true,
        in_all: true,
        columns: &[
            ("Provider", "string", ".spec.storage.provider"),
            ("Default", "boolean", ".spec.default"),
            ("Deletion-Policy", "string", ".spec.deletionPolicy"),
            ("Total-Size", "string", ".status.totalSize"),
            PHASE,
        ],
    },
    Row {
        group: "storage.kubestash.com",
        kind: "Repository",
        plural: "repositories",
        singular: "repository",
        short: &["repo"],
        namespaced: true,
        status: true,
        in_all: true,
        columns: &[
            ("Integrity", "boolean", ".status.integrity"),
            ("Snapshot-Count", "integer", ".status.snapshotCount"),
            ("Size", "string", ".status.size"),
            PHASE,
            ("Last-Successful-Backup", "date", ".status.lastBackupTime"),
        ],
    },
    Row {
        group: "storage.kubestash.com",
        kind: "Snapshot",
        plural: "snapshots",
        singular: "snapshot",
        short: &[],
        namespaced: true,
        status: true,
        in_all: false,
        columns: &[
            ("Repository", "string", ".spec.repository"),
            ("Session", "string", ".spec.session"),
            ("Snapshot-Time", "string", ".status.snapshotTime"),
            ("Deletion-Policy", "string", ".spec.deletionPolicy"),
            PHASE,
        ],
    },
    Row {
        group: "storage.kubestash.com",
        kind: "RetentionPolicy",
        plural: "retentionpolicies",
        singular: "retentionpolicy",
        short: &[],
        namespaced: true,
        status: false,
        in_all: false,
        columns: &[
            ("Max-Retention-Period", "string", ".spec.maxRetentionPeriod"),
            ("Default", "boolean", ".spec.default"),
        ],
    },
    Row {
        group: "addons.kubestash.com",
        kind: "Addon",
        plural: "addons",
        singular: "addon",
        short: &[],
        namespaced: false,
        status: false,
        in_all: true,
        columns: &[],
    },
    Row {
        group: "addons.kubestash.com",
        kind: "Function",
        plural: "functions",
        singular: "function",
        short: &["fn"],
        namespaced: false,
        status: false,
        in_all: true,
        columns: &[],
    },
];

fn find<'a>(all: &'a [CustomResourceDefinition], kind: &str) -> &'a CustomResourceDefinition {
    all.iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind}"))
}

#[test]
fn every_kind_of_the_catalogue_matches_the_spec_table() {
    let all = crds::all();
    assert_eq!(
        all.len(),
        CATALOGUE.len() + 4,
        "14 KubeStash kinds + Elasticsearch, Redis, Postgres + AppBinding"
    );
    for row in CATALOGUE {
        let crd = find(&all, row.kind);
        let n = &crd.spec.names;
        assert_eq!(crd.spec.group, row.group, "{}", row.kind);
        assert_eq!(n.plural, row.plural, "{}", row.kind);
        assert_eq!(n.singular.as_deref(), Some(row.singular), "{}", row.kind);
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some(format!("{}.{}", row.plural, row.group).as_str())
        );
        let short: Vec<&str> = n.short_names.iter().flatten().map(String::as_str).collect();
        assert_eq!(short, row.short, "{} short names", row.kind);
        assert_eq!(
            crd.spec.scope,
            if row.namespaced {
                "Namespaced"
            } else {
                "Cluster"
            },
            "{}",
            row.kind
        );
        let cats: Vec<&str> = n.categories.iter().flatten().map(String::as_str).collect();
        let mut want = vec!["kubestash", "appscode"];
        if row.in_all {
            want.push("all");
        }
        assert_eq!(cats, want, "{} categories", row.kind);
        assert_eq!(crd.spec.versions.len(), 1);
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        assert!(v.served && v.storage);
        let has_status = v
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some();
        assert_eq!(has_status, row.status, "{} status subresource", row.kind);
        let cols: Vec<(&str, &str, &str)> = v
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| (c.name.as_str(), c.type_.as_str(), c.json_path.as_str()))
            .collect();
        let mut want_cols = row.columns.to_vec();
        want_cols.push(("Age", "date", ".metadata.creationTimestamp"));
        assert_eq!(cols, want_cols, "{} printer columns", row.kind);
    }
}

#[test]
fn external_kinds_are_served() {
    let all = crds::all();
    let es = find(&all, "Elasticsearch");
    assert_eq!(es.spec.group, "kubedb.com");
    assert_eq!(es.spec.versions[0].name, "v1");
    assert_eq!(es.spec.names.plural, "elasticsearches");
    for (kind, plural) in [("Redis", "redises"), ("Postgres", "postgreses")] {
        let db = find(&all, kind);
        assert_eq!(db.spec.group, "kubedb.com");
        assert_eq!(db.spec.versions[0].name, "v1");
        assert_eq!(db.spec.names.plural, plural);
        assert_eq!(db.spec.scope, "Namespaced");
    }
    let ab = find(&all, "AppBinding");
    assert_eq!(ab.spec.group, "appcatalog.appscode.com");
    assert_eq!(ab.spec.versions[0].name, "v1alpha1");
}

#[test]
fn every_schema_is_structural() {
    for crd in crds::all() {
        let schema = crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .unwrap_or_else(|| panic!("{} has no schema", crd.spec.names.kind));
        let errs = crds::structural_errors(schema);
        assert!(errs.is_empty(), "{}: {errs:#?}", crd.spec.names.kind);
        let text = serde_json::to_string(schema).unwrap();
        assert!(!text.contains("$ref"), "{} has a $ref", crd.spec.names.kind);
    }
}

#[test]
fn crd_defaults_from_the_spec_are_in_the_schemas() {
    let bc = serde_json::to_value(crds::by_kind("BackupConfiguration").unwrap()).unwrap();
    let session = &bc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["properties"]["sessions"]["items"]["properties"];
    assert_eq!(session["sessionHistoryLimit"]["default"], 1);
    assert_eq!(
        session["retryConfig"]["properties"]["maxRetry"]["default"],
        1
    );
    assert_eq!(
        session["retryConfig"]["properties"]["maxRetry"]["minimum"],
        1.0
    );
    let bs = serde_json::to_value(crds::by_kind("BackupStorage").unwrap()).unwrap();
    let spec =
        &bs["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    assert_eq!(spec["deletionPolicy"]["default"], "Delete");
    assert_eq!(
        spec["usagePolicy"]["properties"]["allowedNamespaces"]["properties"]["from"]["default"],
        "Same"
    );
    let rp = serde_json::to_value(crds::by_kind("RetentionPolicy").unwrap()).unwrap();
    let spec =
        &rp["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    assert_eq!(spec["failedSnapshots"]["properties"]["last"]["default"], 1);
    // The offshoot pod template stays free-form so `controller: {}` is not pruned.
    let tmpl = &session["scheduler"]["properties"]["jobTemplate"]["properties"]["template"];
    assert_eq!(tmpl["x-kubernetes-preserve-unknown-fields"], true);
}
