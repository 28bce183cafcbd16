//! Every YAML object of the tutorial (examples/auto-backup and the `kubectl get -oyaml` outputs
//! copied into tests/fixtures) parses into the typed API and serializes back to the same JSON.

use kstash_api::core::{BackupBlueprint, BackupConfiguration, BackupConfigurationSpec};
use kstash_api::external::Elasticsearch;
use kstash_api::storage::{BackupStorage, RetentionPolicy, Snapshot};
use kstash_testkit::{crate_fixture, tutorial_doc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// Parses `original` as `T`, serializes it back and requires equality with the input.
fn round_trip<T: DeserializeOwned + Serialize>(what: &str, original: Value) -> T {
    let typed: T = serde_json::from_value(original.clone())
        .unwrap_or_else(|e| panic!("{what}: does not parse into the typed API: {e}"));
    let back = serde_json::to_value(&typed).expect("serialize");
    assert_eq!(
        back,
        original,
        "{what}: typed round trip lost or changed data\nback:\n{}",
        serde_yaml::to_string(&back).unwrap()
    );
    typed
}

fn example(name: &str) -> Value {
    tutorial_doc(name)
}

fn fixture(name: &str) -> Value {
    crate_fixture(env!("CARGO_MANIFEST_DIR"), name)
}

#[test]
fn backupstorage_example_round_trips() {
    let bs: BackupStorage = round_trip("backupstorage.yaml", example("backupstorage.yaml"));
    let s3 = bs.spec.storage.unwrap().s3.unwrap();
    assert_eq!(s3.bucket.as_deref(), Some("esbackup"));
    assert_eq!(s3.prefix.as_deref(), Some("elastic"));
    assert_eq!(bs.spec.default, Some(true));
}

#[test]
fn retentionpolicy_example_round_trips() {
    let rp: RetentionPolicy = round_trip("retentionpolicy.yaml", example("retentionpolicy.yaml"));
    assert_eq!(rp.spec.max_retention_period.as_deref(), Some("2mo"));
    assert_eq!(rp.spec.successful_snapshots.unwrap().last, Some(5));
    assert_eq!(rp.spec.failed_snapshots.unwrap().last, Some(2));
}

#[test]
fn blueprint_examples_round_trip() {
    let d: BackupBlueprint = round_trip(
        "default-backupblueprint.yaml",
        example("default-backupblueprint.yaml"),
    );
    let t = d.spec.backup_configuration_template.unwrap();
    assert_eq!(t.sessions[0].config.name, "frequent-backup");
    assert_eq!(
        t.sessions[0].config.scheduler.as_ref().unwrap().schedule,
        "*/5 * * * *"
    );
    let c: BackupBlueprint = round_trip(
        "custom-backup-blueprint.yaml",
        example("custom-backup-blueprint.yaml"),
    );
    let t = c.spec.backup_configuration_template.unwrap();
    assert_eq!(t.sessions[0].repositories[0].name, "${repoName}");
    assert_eq!(
        t.sessions[0].addon.as_ref().unwrap().tasks[0].params,
        Some(serde_json::json!({"args": "${args}"}))
    );
}

#[test]
fn elasticsearch_examples_round_trip() {
    for f in ["sample-es.yaml", "sample-es-2.yaml"] {
        let es: Elasticsearch = round_trip(f, example(f));
        assert_eq!(es.spec.version.as_deref(), Some("xpack-8.15.0"));
        assert_eq!(es.spec.enable_ssl, Some(true));
    }
}

#[test]
fn tutorial_backupconfigurations_round_trip() {
    for f in [
        "backupconfiguration-default.yaml",
        "backupconfiguration-custom.yaml",
    ] {
        let bc: BackupConfiguration = round_trip(f, fixture(f));
        let spec: &BackupConfigurationSpec = &bc.spec;
        assert_eq!(spec.sessions[0].config.session_history_limit, Some(1));
        assert_eq!(
            bc.metadata.finalizers.as_deref(),
            Some(&["kubestash.com/cleanup".to_string()][..])
        );
        assert_eq!(
            bc.status.unwrap().phase,
            Some(kstash_api::core::BackupInvokerPhase::Ready)
        );
    }
}

#[test]
fn tutorial_snapshots_round_trip() {
    for (f, size) in [
        ("snapshot-default.yaml", "7.791 KiB"),
        ("snapshot-custom.yaml", "15.974 KiB"),
    ] {
        let s: Snapshot = round_trip(f, fixture(f));
        let st = s.status.unwrap();
        let dump = &st.components["dump"];
        assert_eq!(dump.size.as_deref(), Some(size));
        assert_eq!(
            dump.restic_stats[0].host_path.as_deref(),
            Some("/kubestash-interim/data")
        );
    }
}

#[test]
fn restic_stats_accepts_the_summary_shape_and_writes_flat() {
    let nested = serde_json::json!({
        "summary": {"id": "147fa51e", "uploaded": "2.141 KiB", "hostPath": "/kubestash-interim/data",
                    "size": "509 B", "startTime": "2024-09-19T05:06:01Z", "endTime": "2024-09-19T05:06:03Z"},
        "progress": {"percentDone": 1}
    });
    let flat = serde_json::json!({
        "id": "147fa51e", "uploaded": "2.141 KiB", "hostPath": "/kubestash-interim/data",
        "size": "509 B", "startTime": "2024-09-19T05:06:01Z", "endTime": "2024-09-19T05:06:03Z"
    });
    let a: kstash_api::storage::ResticStats = serde_json::from_value(nested).unwrap();
    let b: kstash_api::storage::ResticStats = serde_json::from_value(flat.clone()).unwrap();
    assert_eq!(a, b);
    assert_eq!(serde_json::to_value(&a).unwrap(), flat);
}
