//! `docs/reference/crds.md` is generated from the types: this test fails when the checked-in file
//! is stale, and rewrites it with `KSTASH_UPDATE_REFERENCE=1`.

use std::path::Path;

use kstash_api::reference::{markdown, REGENERATE};

#[test]
fn crd_reference_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/reference/crds.md");
    let generated = markdown(&kstash_api::crds::all());
    if std::env::var_os("KSTASH_UPDATE_REFERENCE").is_some() {
        std::fs::create_dir_all(path.parent().expect("docs/reference")).expect("mkdir");
        std::fs::write(&path, &generated).expect("write docs/reference/crds.md");
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == generated,
        "{} is stale (or missing): the CRD types changed. Regenerate it with:\n    {REGENERATE}",
        path.display()
    );
}

#[test]
fn reference_documents_every_kind_and_field_facts() {
    let md = markdown(&kstash_api::crds::all());
    // Every kind of the spec's catalogue (§1) plus the external kinds.
    for kind in [
        "BackupConfiguration",
        "BackupSession",
        "BackupBlueprint",
        "RestoreSession",
        "HookTemplate",
        "BackupBatch",
        "BackupVerifier",
        "BackupVerificationSession",
        "BackupStorage",
        "Repository",
        "Snapshot",
        "RetentionPolicy",
        "Addon",
        "Function",
        "Elasticsearch",
        "AppBinding",
    ] {
        assert!(
            md.contains(&format!("\n## {kind}\n")),
            "missing section for {kind}"
        );
    }
    // Facts from the spec's §1 table and §1.8 defaults.
    assert!(md.contains("| [Repository](#repository) | `storage.kubestash.com/v1alpha1` | Namespaced | `repo` |"), "repository row");
    assert!(
        md.contains("| [Addon](#addon) | `addons.kubestash.com/v1alpha1` | Cluster | – |"),
        "addon row"
    );
    assert!(md.contains("| Plural / singular | `backupverifier` / `backupverifier` |"));
    let deletion = md
        .lines()
        .find(|l| l.starts_with("| `spec.deletionPolicy` | string |") && l.contains("`WipeOut`"))
        .expect("a deletionPolicy row with its enum");
    assert!(
        deletion.contains("`\"Delete\"`"),
        "default Delete: {deletion}"
    );
    let max_retry = md
        .lines()
        .find(|l| l.starts_with("| `spec.sessions[].retryConfig.maxRetry` |"))
        .expect("retryConfig.maxRetry row");
    assert!(
        max_retry.contains("`1`") && max_retry.contains("min 1"),
        "{max_retry}"
    );
    // Map values of Snapshot status components.
    assert!(md.contains("| `status.components.<key>.path` |"));
}
