//! `kstash render` end to end: runs the built binary on the tutorial's example files.
#![cfg(feature = "render")]

use std::path::PathBuf;
use std::process::Command;

fn example(name: &str) -> PathBuf {
    kstash_testkit::repo_root()
        .join("examples/auto-backup")
        .join(name)
}

fn kstash_render(blueprint: &PathBuf, target: &PathBuf) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kstash"))
        .arg("render")
        .arg("--blueprint")
        .arg(blueprint)
        .arg("--target")
        .arg(target)
        .output()
        .expect("run kstash")
}

#[test]
fn renders_the_custom_tutorial_example() {
    let out = kstash_render(
        &example("custom-backup-blueprint.yaml"),
        &example("sample-es-2.yaml"),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bc: serde_json::Value = serde_yaml::from_str(&stdout).unwrap();
    assert_eq!(bc["kind"], "BackupConfiguration");
    assert_eq!(bc["apiVersion"], "core.kubestash.com/v1alpha1");
    assert_eq!(bc["metadata"]["name"], "appbinding-es-quickstart-2");
    assert_eq!(bc["metadata"]["namespace"], "demo");
    let session = &bc["spec"]["sessions"][0];
    assert_eq!(session["scheduler"]["schedule"], "*/5 * * * *");
    assert_eq!(session["repositories"][0]["name"], "s3-elasticsearch-repo");
    assert_eq!(
        session["addon"]["tasks"][0]["params"]["args"],
        "--ignoreType=template,settings"
    );
    // The YAML text itself carries the quoted schedule as kubectl prints it.
    assert!(stdout.contains("schedule: '*/5 * * * *'"), "{stdout}");
}

#[test]
fn multi_document_files_use_first_blueprint_and_first_annotated_target() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("render-multi");
    std::fs::create_dir_all(&dir).unwrap();
    let read = |n: &str| std::fs::read_to_string(example(n)).unwrap();
    let bp = dir.join("bp.yaml");
    std::fs::write(
        &bp,
        format!(
            "{}\n---\n{}\n---\n{}",
            read("backupstorage.yaml"),
            read("default-backupblueprint.yaml"),
            read("custom-backup-blueprint.yaml")
        ),
    )
    .unwrap();
    let target = dir.join("target.yaml");
    std::fs::write(
        &target,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n---\n".to_string()
            + &read("sample-es.yaml"),
    )
    .unwrap();
    let out = kstash_render(&bp, &target);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bc: serde_json::Value =
        serde_yaml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(bc["metadata"]["name"], "appbinding-es-quickstart");
    assert_eq!(
        bc["spec"]["sessions"][0]["repositories"][0]["directory"],
        "/es"
    );
}

#[test]
fn missing_schedule_annotation_fails_with_one_line_reason() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("render-missing");
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(example("sample-es-2.yaml")).unwrap();
    let without: String = text
        .lines()
        .filter(|l| !l.contains("variables.kubestash.com/schedule"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(without, text);
    let target = dir.join("sample-es-2-no-schedule.yaml");
    std::fs::write(&target, without).unwrap();
    let out = kstash_render(&example("custom-backup-blueprint.yaml"), &target);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("\"schedule\""), "{stderr}");
    assert!(
        stderr.contains("variables.kubestash.com/schedule"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_input_exits_non_zero() {
    let out = kstash_render(&example("sample-es.yaml"), &example("sample-es.yaml"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no document of kind BackupBlueprint"),
        "{stderr}"
    );
    let out = kstash_render(
        &example("default-backupblueprint.yaml"),
        &example("nope.yaml"),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[test]
fn annotated_target_without_namespace_gets_a_precise_error() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("render-no-ns");
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(example("sample-es.yaml")).unwrap();
    let without: String = text
        .lines()
        .filter(|l| *l != "  namespace: demo")
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(without, text);
    let target = dir.join("sample-es-no-ns.yaml");
    std::fs::write(&target, without).unwrap();
    let out = kstash_render(&example("default-backupblueprint.yaml"), &target);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("metadata.namespace"), "{stderr}");
}
