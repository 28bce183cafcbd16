//! Admission rules (spec §1.3–§1.8, §3.1, §6): each rule with the field it names and KubeStash's
//! message where the spec quotes it.

use std::collections::BTreeMap;

use kstash_api::addons::Function;
use kstash_api::admission::*;
use kstash_api::core::{
    BackupBlueprint, BackupConfiguration, BackupSession, HookTemplate, RestoreSession,
};
use kstash_api::shared::FromNamespaces;
use kstash_api::storage::{BackupStorage, Repository, RetentionPolicy};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

fn example<K: DeserializeOwned>(name: &str) -> K {
    kstash_testkit::tutorial_doc(name)
}

fn obj<K: DeserializeOwned>(v: Value) -> K {
    serde_json::from_value(v).unwrap()
}

fn tutorial_lookup() -> Lookup {
    Lookup {
        backup_storages: vec![example("backupstorage.yaml")],
        retention_policies: vec![example("retentionpolicy.yaml")],
        ..Default::default()
    }
}

/// The tutorial's generated BackupConfiguration spec (from `kubectl get backupconfiguration -oyaml`).
fn tutorial_bc() -> BackupConfiguration {
    let mut bc: BackupConfiguration = kstash_testkit::crate_fixture(
        env!("CARGO_MANIFEST_DIR"),
        "backupconfiguration-default.yaml",
    );
    bc.status = None;
    bc
}

fn expect_err(r: Result<(), AdmissionError>, field: &str, reason_contains: &str) {
    let e = r.expect_err("expected a rejection");
    assert_eq!(e.field, field, "{e}");
    assert!(
        e.reason.contains(reason_contains),
        "reason {:?} should contain {reason_contains:?}",
        e.reason
    );
}

fn storage(
    name: &str,
    ns: &str,
    default: bool,
    from: &str,
    bucket: &str,
    prefix: &str,
) -> BackupStorage {
    obj(json!({
        "apiVersion": "storage.kubestash.com/v1alpha1", "kind": "BackupStorage",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"storage": {"provider": "s3", "s3": {"bucket": bucket, "prefix": prefix, "region": "us-east-1"}},
                 "default": default,
                 "usagePolicy": {"allowedNamespaces": {"from": from, "selector": {"matchLabels": {"team": "a"}}}}}
    }))
}

// ----- BackupConfiguration: mutating -----

#[test]
fn bc_defaults_backend_and_retention_from_the_tutorial_defaults() {
    let mut bc = tutorial_bc();
    bc.spec.backends.clear();
    for r in &mut bc.spec.sessions[0].repositories {
        r.backend = None;
    }
    default_backup_configuration(&mut bc, &tutorial_lookup());
    assert_eq!(
        serde_json::to_value(&bc.spec.backends).unwrap(),
        json!([{"storageRef": {"namespace": "demo", "name": "s3-storage"},
                "retentionPolicy": {"namespace": "demo", "name": "demo-retention"}}]),
        "one backend with an empty name"
    );
    validate_backup_configuration(&bc, &tutorial_lookup()).unwrap();
}

#[test]
fn default_storage_lookup_uses_three_passes() {
    let ctx = Lookup {
        backup_storages: vec![
            storage("all", "infra", true, "All", "b1", "p"),
            storage("sel", "infra", true, "Selector", "b2", "p"),
            storage("same", "demo", true, "Same", "b3", "p"),
            storage("not-default", "demo", false, "Same", "b4", "p"),
        ],
        namespaces: BTreeMap::from([(
            "team-a".to_string(),
            BTreeMap::from([("team".to_string(), "a".to_string())]),
        )]),
        ..Default::default()
    };
    let name =
        |ns: &str| default_backup_storage_for(&ctx, ns).map(|b| b.metadata.name.clone().unwrap());
    assert_eq!(
        name("demo").as_deref(),
        Some("same"),
        "pass (a): same namespace, from Same"
    );
    assert_eq!(
        name("team-a").as_deref(),
        Some("sel"),
        "pass (b): selector matches namespace labels"
    );
    assert_eq!(
        name("elsewhere").as_deref(),
        Some("all"),
        "pass (c): from All"
    );
    let none = Lookup {
        backup_storages: vec![storage("x", "demo", true, "Same", "b", "p")],
        ..Default::default()
    };
    assert!(default_backup_storage_for(&none, "other").is_none());
}

#[test]
fn retention_defaulting_stops_at_the_first_miss() {
    let mut bc = tutorial_bc();
    bc.spec.backends[0].retention_policy = None;
    let ctx = Lookup {
        backup_storages: tutorial_lookup().backup_storages,
        ..Default::default()
    };
    default_backup_configuration(&mut bc, &ctx);
    assert!(bc.spec.backends[0].retention_policy.is_none());
    expect_err(
        validate_backup_configuration(&bc, &ctx),
        "spec.backends[0].retentionPolicy",
        "no RetentionPolicy is found for backend \"s3-backend\"",
    );
}

// ----- BackupConfiguration: validating -----

#[test]
fn tutorial_bc_is_valid() {
    validate_backup_configuration(&tutorial_bc(), &tutorial_lookup()).unwrap();
}

/// What kstash cannot run is refused by field, never silently ignored.
#[test]
fn kstash_limits_refuse_hooks_and_a_second_task() {
    kstash_limits(&tutorial_bc()).unwrap();
    let mut hooks = tutorial_bc();
    hooks.spec.sessions[0].config.hooks = Some(obj(json!({
        "preBackup": [{"name": "freeze", "hookTemplate": {"name": "es-freeze"}}]
    })));
    expect_err(
        kstash_limits(&hooks),
        "spec.sessions[0].hooks.preBackup",
        "does not run backup hooks",
    );
    let mut tasks = tutorial_bc();
    let addon = tasks.spec.sessions[0].addon.as_mut().unwrap();
    addon.tasks.push(obj(json!({"name": "manifest-backup"})));
    expect_err(
        kstash_limits(&tasks),
        "spec.sessions[0].addon.tasks[1]",
        "\"manifest-backup\" in a session of its own",
    );
    let mut verifier = tutorial_bc();
    verifier.spec.sessions[0].repositories[0].backup_verifier =
        Some(obj(json!({"name": "es-verifier"})));
    expect_err(
        kstash_limits(&verifier),
        "spec.sessions[0].repositories[0].backupVerifier",
        "does not run BackupVerifiers",
    );
    let rs: RestoreSession = obj(json!({
        "apiVersion": "core.kubestash.com/v1alpha1", "kind": "RestoreSession",
        "metadata": {"name": "r", "namespace": "demo"},
        "spec": {"addon": {"name": "elasticsearch-addon", "tasks": [{"name": "logical-backup-restore"}]},
                 "hooks": {"postRestore": [{"name": "notify", "hookTemplate": {"name": "slack"}}]}}
    }));
    expect_err(
        kstash_restore_limits(&rs),
        "spec.hooks.postRestore",
        "does not run restore hooks",
    );
}

#[test]
fn bc_rules_name_the_field() {
    let ctx = tutorial_lookup();
    let check = |edit: &dyn Fn(&mut BackupConfiguration), field: &str, reason: &str| {
        let mut bc = tutorial_bc();
        edit(&mut bc);
        expect_err(validate_backup_configuration(&bc, &ctx), field, reason);
    };
    check(
        &|bc| bc.spec.backends.clear(),
        "spec.backends",
        "backend can not be empty",
    );
    check(
        &|bc| {
            let b = bc.spec.backends[0].clone();
            bc.spec.backends.push(b)
        },
        "spec.backends[1].name",
        "duplicate backend name",
    );
    check(
        &|bc| bc.spec.backends[0].storage_ref = None,
        "spec.backends[0].storageRef",
        "storageRef can not be empty",
    );
    check(
        &|bc| bc.spec.sessions.clear(),
        "spec.sessions",
        "sessions can not be empty",
    );
    check(
        &|bc| bc.spec.sessions[0].config.name.clear(),
        "spec.sessions[0].name",
        "session name can not be empty",
    );
    check(
        &|bc| {
            let s = bc.spec.sessions[0].clone();
            bc.spec.sessions.push(s)
        },
        "spec.sessions[1].name",
        "duplicate session name",
    );
    check(
        &|bc| bc.spec.sessions[0].config.scheduler = None,
        "spec.sessions[0].scheduler",
        "scheduler can not be empty",
    );
    check(
        &|bc| bc.spec.sessions[0].addon = None,
        "spec.sessions[0].addon",
        "addon can not be empty",
    );
    check(
        &|bc| bc.spec.sessions[0].addon.as_mut().unwrap().name.clear(),
        "spec.sessions[0].addon.name",
        "addon name can not be empty",
    );
    check(
        &|bc| bc.spec.sessions[0].addon.as_mut().unwrap().tasks.clear(),
        "spec.sessions[0].addon.tasks",
        "addon tasks can not be empty",
    );
    check(
        &|bc| {
            bc.spec.sessions[0].addon.as_mut().unwrap().tasks[0]
                .name
                .clear()
        },
        "spec.sessions[0].addon.tasks[0].name",
        "task name can not be empty",
    );
    check(
        &|bc| bc.spec.sessions[0].repositories.clear(),
        "spec.sessions[0].repositories",
        "repositories can not be empty",
    );
    check(
        &|bc| {
            let r = bc.spec.sessions[0].repositories[0].clone();
            bc.spec.sessions[0].repositories.push(r)
        },
        "spec.sessions[0].repositories[1].name",
        "duplicate repository name",
    );
    check(
        &|bc| bc.spec.sessions[0].repositories[0].backend = Some("gcs-backend".into()),
        "spec.sessions[0].repositories[0].backend",
        "backend \"gcs-backend\" is not present in spec.backends",
    );
    check(
        &|bc| bc.spec.sessions[0].repositories[0].directory = None,
        "spec.sessions[0].repositories[0].directory",
        "directory can not be empty",
    );
}

#[test]
fn bc_directory_must_be_unique_within_and_across() {
    let ctx = tutorial_lookup();
    let mut bc = tutorial_bc();
    let mut r2 = bc.spec.sessions[0].repositories[0].clone();
    r2.name = "other-repo".into();
    bc.spec.sessions[0].repositories.push(r2);
    expect_err(
        validate_backup_configuration(&bc, &ctx),
        "spec.sessions[0].repositories[1].directory",
        "same directory",
    );

    // Another Repository (different name) of the same storage already uses /es.
    let mut ctx = tutorial_lookup();
    ctx.repositories.push(obj::<Repository>(json!({
        "apiVersion": "storage.kubestash.com/v1alpha1", "kind": "Repository",
        "metadata": {"name": "someone-else", "namespace": "prod"},
        "spec": {"storageRef": {"name": "s3-storage", "namespace": "demo"}, "path": "/es"}
    })));
    expect_err(
        validate_backup_configuration(&tutorial_bc(), &ctx),
        "spec.sessions[0].repositories[0].directory",
        "already uses the directory",
    );
}

#[test]
fn bc_existing_repository_must_match_app_and_storage() {
    let mut ctx = tutorial_lookup();
    let repo = |app: &str| {
        obj::<Repository>(json!({
            "apiVersion": "storage.kubestash.com/v1alpha1", "kind": "Repository",
            "metadata": {"name": "s3-elasticsearch-repo", "namespace": "demo"},
            "spec": {"appRef": {"apiGroup": "kubedb.com", "kind": "Elasticsearch", "name": app, "namespace": "demo"},
                     "storageRef": {"name": "s3-storage", "namespace": "demo"}, "path": "/es"}
        }))
    };
    ctx.repositories = vec![repo("es-quickstart")];
    validate_backup_configuration(&tutorial_bc(), &ctx).unwrap();
    ctx.repositories = vec![repo("es-quickstart-2")];
    expect_err(
        validate_backup_configuration(&tutorial_bc(), &ctx),
        "spec.sessions[0].repositories[0].name",
        "different appRef",
    );
}

#[test]
fn bc_usage_policies_must_allow_the_namespace() {
    let mut ctx = tutorial_lookup();
    ctx.backup_storages[0].spec.usage_policy =
        Some(kstash_api::shared::UsagePolicy::from(FromNamespaces::Same));
    let mut bc = tutorial_bc();
    bc.metadata.namespace = Some("prod".into());
    bc.spec.sessions[0].repositories[0].encryption_secret = None;
    expect_err(
        validate_backup_configuration(&bc, &ctx),
        "spec.backends[0].storageRef",
        "not allowed to refer BackupStorage demo/s3-storage",
    );

    let mut ctx = tutorial_lookup();
    ctx.retention_policies[0].spec.usage_policy =
        Some(kstash_api::shared::UsagePolicy::from(FromNamespaces::Same));
    expect_err(
        validate_backup_configuration(&bc, &ctx),
        "spec.backends[0].retentionPolicy",
        "not allowed to refer RetentionPolicy demo/demo-retention",
    );
}

/// KubeStash's webhook defaults a missing `usagePolicy` to `from: Same`: an object stored without
/// one (no webhook ran) serves its own namespace, and only it.
#[test]
fn missing_usage_policy_means_same_namespace() {
    let mut ctx = tutorial_lookup();
    ctx.backup_storages[0].spec.usage_policy = None;
    ctx.retention_policies[0].spec.usage_policy = None;
    let bc = tutorial_bc();
    assert_eq!(bc.metadata.namespace.as_deref(), Some("demo"));
    validate_backup_configuration(&bc, &ctx).expect("own namespace");

    let mut other = bc.clone();
    other.metadata.namespace = Some("prod".into());
    other.spec.sessions[0].repositories[0].encryption_secret = None;
    expect_err(
        validate_backup_configuration(&other, &ctx),
        "spec.backends[0].storageRef",
        "namespace \"prod\" is not allowed to refer BackupStorage demo/s3-storage",
    );
    ctx.backup_storages[0].spec.usage_policy =
        Some(kstash_api::shared::UsagePolicy::from(FromNamespaces::All));
    expect_err(
        validate_backup_configuration(&other, &ctx),
        "spec.backends[0].retentionPolicy",
        "namespace \"prod\" is not allowed to refer RetentionPolicy demo/demo-retention",
    );

    // A `usagePolicy` with `allowedNamespaces` but no `from` is `Same` too.
    let mut ctx = tutorial_lookup();
    ctx.backup_storages[0].spec.usage_policy = Some(obj(json!({"allowedNamespaces": {}})));
    ctx.retention_policies[0].spec.usage_policy = Some(obj(json!({})));
    validate_backup_configuration(&bc, &ctx).expect("own namespace, no from");
    expect_err(
        validate_backup_configuration(&other, &ctx),
        "spec.backends[0].storageRef",
        "not allowed to refer BackupStorage demo/s3-storage",
    );

    // The default lookup: a `default: true` storage without a policy is the default of its own
    // namespace (pass (a)), never of another.
    let mut ctx = tutorial_lookup();
    ctx.backup_storages[0].spec.usage_policy = None;
    ctx.retention_policies[0].spec.usage_policy = None;
    assert_eq!(
        default_backup_storage_for(&ctx, "demo").and_then(|b| b.metadata.name.clone()),
        Some("s3-storage".to_string())
    );
    assert_eq!(
        default_retention_policy_for(&ctx, "demo").and_then(|r| r.metadata.name.clone()),
        Some("demo-retention".to_string())
    );
    assert!(default_backup_storage_for(&ctx, "prod").is_none());
    assert!(default_retention_policy_for(&ctx, "prod").is_none());
    let mut bare = bc.clone();
    bare.spec.backends.clear();
    for r in &mut bare.spec.sessions[0].repositories {
        r.backend = None;
    }
    default_backup_configuration(&mut bare, &ctx);
    validate_backup_configuration(&bare, &ctx).expect("defaulted in its own namespace");
    assert_eq!(
        effective_usage_policy(None).from_value(),
        Some(FromNamespaces::Same)
    );
}

#[test]
fn bc_hook_template_usage_policy() {
    let mut ctx = tutorial_lookup();
    ctx.hook_templates.push(obj::<HookTemplate>(json!({
        "apiVersion": "core.kubestash.com/v1alpha1", "kind": "HookTemplate",
        "metadata": {"name": "notify", "namespace": "ops"},
        "spec": {"executor": {"type": "Function", "function": {"name": "x"}}}
    })));
    let mut bc = tutorial_bc();
    bc.spec.sessions[0].config.hooks = Some(obj(
        json!({"preBackup": [{"name": "n", "hookTemplate": {"name": "notify", "namespace": "ops"}}]}),
    ));
    expect_err(
        validate_backup_configuration(&bc, &ctx),
        "spec.sessions[0].hooks.preBackup[0].hookTemplate",
        "HookTemplate ops/notify",
    );
}

// ----- BackupStorage -----

#[test]
fn backup_storage_defaulting_trims_and_sets_same() {
    let mut bs: BackupStorage = obj(json!({
        "apiVersion": "storage.kubestash.com/v1alpha1", "kind": "BackupStorage",
        "metadata": {"name": "s", "namespace": "demo"},
        "spec": {"storage": {"provider": "s3", "s3": {"endpoint": "http://127.0.0.1:9000/", "bucket": "esbackup/", "prefix": "elastic/"}}}
    }));
    default_backup_storage(&mut bs);
    let s3 = bs.spec.storage.as_ref().unwrap().s3.as_ref().unwrap();
    assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert_eq!(s3.bucket.as_deref(), Some("esbackup"));
    assert_eq!(s3.prefix.as_deref(), Some("elastic"));
    assert_eq!(
        bs.spec.usage_policy.as_ref().unwrap().from_value(),
        Some(FromNamespaces::Same)
    );
    assert_eq!(
        serde_json::to_value(bs.spec.deletion_policy).unwrap(),
        json!("Delete")
    );
}

#[test]
fn backup_storage_rules() {
    let tutorial: BackupStorage = example("backupstorage.yaml");
    let ctx = Lookup {
        backup_storages: vec![tutorial.clone()],
        ..Default::default()
    };
    validate_backup_storage(None, &tutorial, &ctx).expect("re-validating itself is fine");

    let second_default = storage("other", "demo", true, "Same", "otherbucket", "x");
    expect_err(
        validate_backup_storage(None, &second_default, &ctx),
        "spec.default",
        "multiple default BackupStorages are not allowed within the same namespace",
    );

    let same_dir = storage("copy", "prod", false, "Same", "esbackup", "elastic/");
    expect_err(
        validate_backup_storage(None, &same_dir, &ctx),
        "spec.storage",
        "no two BackupStorage should point to the same directory of the same bucket",
    );
    let other_prefix = storage("copy", "prod", false, "Same", "esbackup", "elastic2");
    validate_backup_storage(None, &other_prefix, &ctx).unwrap();

    let mut sel = storage("sel", "prod", false, "Selector", "b9", "p");
    sel.spec
        .usage_policy
        .as_mut()
        .unwrap()
        .allowed_namespaces
        .as_mut()
        .unwrap()
        .selector = None;
    expect_err(
        validate_backup_storage(None, &sel, &ctx),
        "spec.usagePolicy.allowedNamespaces.selector",
        "selector",
    );

    let mut old = tutorial.clone();
    old.status = Some(obj(
        json!({"repositories": [{"name": "s3-elasticsearch-repo", "namespace": "demo", "path": "/es"}]}),
    ));
    let mut new = tutorial.clone();
    new.spec
        .storage
        .as_mut()
        .unwrap()
        .s3
        .as_mut()
        .unwrap()
        .prefix = Some("moved".into());
    expect_err(
        validate_backup_storage(Some(&old), &new, &Lookup::default()),
        "spec.storage",
        "BackupStorage is currently in use and cannot be modified",
    );
    let mut unused = old.clone();
    unused.status = None;
    validate_backup_storage(Some(&unused), &new, &Lookup::default()).unwrap();
}

// ----- RetentionPolicy -----

#[test]
fn retention_policy_rules() {
    let mut rp: RetentionPolicy = obj(json!({
        "apiVersion": "storage.kubestash.com/v1alpha1", "kind": "RetentionPolicy",
        "metadata": {"name": "r", "namespace": "demo"}, "spec": {"maxRetentionPeriod": "30d"}
    }));
    default_retention_policy(&mut rp);
    assert_eq!(rp.spec.failed_snapshots.as_ref().unwrap().last, Some(1));
    assert_eq!(
        rp.spec.usage_policy.as_ref().unwrap().from_value(),
        Some(FromNamespaces::Same)
    );
    validate_retention_policy(&rp, &Lookup::default()).unwrap();

    let tutorial: RetentionPolicy = example("retentionpolicy.yaml");
    let mut t2 = tutorial.clone();
    default_retention_policy(&mut t2);
    assert_eq!(
        t2.spec.failed_snapshots.as_ref().unwrap().last,
        Some(2),
        "explicit value kept"
    );
    validate_retention_policy(&tutorial, &Lookup::default()).unwrap();

    let mut none = rp.clone();
    none.spec.max_retention_period = None;
    expect_err(
        validate_retention_policy(&none, &Lookup::default()),
        "spec",
        "one of maxRetentionPeriod and successfulSnapshots policy must be provided",
    );

    for bad in ["10", "1mm", "mo"] {
        let mut b = rp.clone();
        b.spec.max_retention_period = Some(bad.into());
        expect_err(
            validate_retention_policy(&b, &Lookup::default()),
            "spec.maxRetentionPeriod",
            "",
        );
    }

    let mut d = rp.clone();
    d.spec.default = Some(true);
    let ctx = Lookup {
        retention_policies: vec![tutorial],
        ..Default::default()
    };
    expect_err(
        validate_retention_policy(&d, &ctx),
        "spec.default",
        "multiple default",
    );
}

// ----- BackupBlueprint -----

#[test]
fn blueprint_rules() {
    let mut bp: BackupBlueprint = example("default-backupblueprint.yaml");
    validate_backup_blueprint(&bp).unwrap();
    let mut bare = bp.clone();
    bare.spec.usage_policy = None;
    default_backup_blueprint(&mut bare);
    assert_eq!(
        bare.spec.usage_policy.unwrap().from_value(),
        Some(FromNamespaces::Same)
    );
    bp.spec.backup_configuration_template = None;
    expect_err(
        validate_backup_blueprint(&bp),
        "spec.backupConfigurationTemplate",
        "can not be empty",
    );
    let mut sel: BackupBlueprint = example("custom-backup-blueprint.yaml");
    sel.spec.usage_policy = Some(kstash_api::shared::UsagePolicy::from(
        FromNamespaces::Selector,
    ));
    expect_err(
        validate_backup_blueprint(&sel),
        "spec.usagePolicy.allowedNamespaces.selector",
        "selector",
    );
}

// ----- RestoreSession -----

#[test]
fn restore_session_rules() {
    let rs = |ds: Value| -> RestoreSession {
        obj(json!({
            "apiVersion": "core.kubestash.com/v1alpha1", "kind": "RestoreSession",
            "metadata": {"name": "r", "namespace": "demo"},
            "spec": {"target": {"apiGroup": "kubedb.com", "kind": "Elasticsearch", "name": "restore-es", "namespace": "demo"},
                     "dataSource": ds,
                     "addon": {"name": "elasticsearch-addon", "tasks": [{"name": "logical-backup-restore"}]}}
        }))
    };
    let ctx = Lookup::default();
    // The kubedb guide's RestoreSession (spec §8).
    validate_restore_session(
        &rs(
            json!({"repository": "s3-elasticsearch-repo", "snapshot": "latest",
        "encryptionSecret": {"name": "encrypt-secret", "namespace": "demo"}}),
        ),
        &ctx,
    )
    .unwrap();
    expect_err(
        validate_restore_session(&rs(json!({"repository": "x"})), &ctx),
        "spec.dataSource.snapshot",
        "snapshot can not be empty",
    );
    expect_err(
        validate_restore_session(&rs(json!({"snapshot": "latest"})), &ctx),
        "spec.dataSource.repository",
        "latest",
    );
    validate_restore_session(
        &rs(json!({"snapshot": "s3-elasticsearch-repo-appbindingtart-frequent-backup-1726722361"})),
        &ctx,
    )
    .unwrap();
    expect_err(
        validate_restore_session(
            &rs(json!({"repository": "x", "pitr": {"exclusive": true}})),
            &ctx,
        ),
        "spec.dataSource.pitr.targetTime",
        "targetTime",
    );
    expect_err(
        validate_restore_session(
            &rs(json!({"pitr": {"targetTime": "2024-09-19T05:06:01Z"}})),
            &ctx,
        ),
        "spec.dataSource.repository",
        "point-in-time",
    );
    validate_restore_session(
        &rs(json!({"repository": "x", "pitr": {"targetTime": "2024-09-19T05:06:01Z"}})),
        &ctx,
    )
    .unwrap();
}

// ----- BackupSession / Repository / HookTemplate / Function -----

#[test]
fn backup_session_spec_is_immutable() {
    let bs: BackupSession = obj(json!({
        "apiVersion": "core.kubestash.com/v1alpha1", "kind": "BackupSession",
        "metadata": {"name": "appbinding-es-quickstart-frequent-backup-1726722240", "namespace": "demo"},
        "spec": {"invoker": {"apiGroup": "core.kubestash.com", "kind": "BackupConfiguration", "name": "appbinding-es-quickstart"},
                 "session": "frequent-backup", "retryLeft": 1}
    }));
    let mut status_only = bs.clone();
    status_only.status = Some(Default::default());
    validate_backup_session_update(&bs, &status_only).unwrap();
    let mut changed = bs.clone();
    changed.spec.retry_left = Some(0);
    expect_err(
        validate_backup_session_update(&bs, &changed),
        "spec",
        "spec can not be updated",
    );
}

#[test]
fn repository_path_is_immutable() {
    let r: Repository = obj(
        json!({"apiVersion": "storage.kubestash.com/v1alpha1", "kind": "Repository",
        "metadata": {"name": "r", "namespace": "demo"}, "spec": {"path": "/es"}}),
    );
    let mut moved = r.clone();
    moved.spec.path = Some("/ess".into());
    expect_err(
        validate_repository_update(&r, &moved),
        "spec.path",
        "repository path can not be updated",
    );
}

#[test]
fn hook_template_rules() {
    let ht = |spec: Value| -> HookTemplate {
        obj(
            json!({"apiVersion": "core.kubestash.com/v1alpha1", "kind": "HookTemplate", "metadata": {"name": "h", "namespace": "demo"}, "spec": spec}),
        )
    };
    validate_hook_template(&ht(
        json!({"executor": {"type": "Function", "function": {"name": "f"}}}),
    ))
    .unwrap();
    expect_err(
        validate_hook_template(&ht(json!({"executor": {"type": "Function"}}))),
        "spec.executor.function",
        "function",
    );
    expect_err(
        validate_hook_template(&ht(
            json!({"executor": {"type": "Pod", "pod": {"selector": "app=es,tier"}}, "action": {"exec": {"command": ["true"]}}}),
        )),
        "spec.executor.pod.selector",
        "tier",
    );
    expect_err(
        validate_hook_template(&ht(
            json!({"executor": {"type": "Pod", "pod": {"selector": "app=es"}}}),
        )),
        "spec.action",
        "action",
    );
    validate_hook_template(&ht(json!({"executor": {"type": "Pod", "pod": {"selector": "app=es"}}, "action": {"exec": {"command": ["true"]}}}))).unwrap();
}

#[test]
fn function_module_extension_rules() {
    let f = |module: Value| -> Function {
        obj(
            json!({"apiVersion": "addons.kubestash.com/v1alpha1", "kind": "Function", "metadata": {"name": "elasticsearch-backup"},
                   "spec": {"image": "ghcr.io/kubedb/elasticsearch-restic-plugin:v0.1.0", "module": module}}),
        )
    };
    let sha = "0".repeat(64);
    validate_function(&f(
        json!({"location": "builtin:elasticsearch", "sha256": sha}),
    ))
    .unwrap();
    validate_function(&f(
        json!({"location": "/var/lib/kstash/es.wasm", "sha256": sha}),
    ))
    .unwrap();
    validate_function(&f(
        json!({"location": "https://example.com/es.wasm", "sha256": sha}),
    ))
    .unwrap();
    expect_err(
        validate_function(&f(
            json!({"location": "http://example.com/es.wasm", "sha256": sha}),
        )),
        "spec.module.location",
        "https",
    );
    expect_err(
        validate_function(&f(json!({"location": "builtin:", "sha256": sha}))),
        "spec.module.location",
        "builtin",
    );
    expect_err(
        validate_function(&f(json!({"location": "builtin:x", "sha256": "ABC"}))),
        "spec.module.sha256",
        "64 lowercase hex",
    );
}
