//! Resolution as a table: each case a set of objects and the error (or result) it gives.

use super::*;
use crate::config::{LocalConfig, S3Config};

fn key(ns: &str, name: &str) -> ObjectKey {
    ObjectKey::new(ns, name)
}

fn secret(ns: &str, name: &str, kv: &[(&str, &str)]) -> SecretRecord {
    SecretRecord {
        key: key(ns, name),
        data: kv
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect(),
        string_data: BTreeMap::new(),
    }
}

fn local_root() -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "kstash-resolve-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The tutorial's objects: Repository demo/es-repo in BackupStorage demo/s3-storage, password
/// in demo/encrypt-secret.
fn tutorial() -> MemoryObjects {
    MemoryObjects {
        repositories: vec![RepositoryRecord {
            key: key("demo", "es-repo"),
            storage_ref: Some(key("demo", "s3-storage")),
            path: Some("/es".into()),
            encryption_secret: Some(key("demo", "encrypt-secret")),
        }],
        backup_storages: vec![BackupStorageRecord {
            key: key("demo", "s3-storage"),
            provider: Some(Provider::S3 {
                s3: S3Config {
                    endpoint: "http://127.0.0.1:1".into(),
                    bucket: "esbackup/".into(),
                    prefix: "elastic".into(),
                    secret_name: "s3-secret".into(),
                    ..Default::default()
                },
            }),
        }],
        secrets: vec![
            secret(
                "demo",
                "s3-secret",
                &[("AWS_ACCESS_KEY_ID", "a"), ("AWS_SECRET_ACCESS_KEY", "b")],
            ),
            secret("demo", "encrypt-secret", &[("RESTIC_PASSWORD", "changeit")]),
        ],
    }
}

#[tokio::test]
async fn the_tutorial_resolves_to_its_directory_and_password() {
    let r = resolve(&tutorial(), &key("demo", "es-repo"), None)
        .await
        .unwrap();
    assert_eq!(r.dir.path(), "es");
    assert_eq!(r.backup_storage, key("demo", "s3-storage"));
    assert_eq!(r.password.expose(), "changeit");
    assert_eq!(r.password.source(), "Secret demo/encrypt-secret");
    assert_eq!(r.storage().config().secrets["AWS_ACCESS_KEY_ID"], "a");
    let c = r
        .component(&ComponentPath::new("frequent-backup", "dump").unwrap())
        .unwrap();
    assert_eq!(
        c.location(),
        "s3:http://127.0.0.1:1/esbackup/elastic/es/repository/v1/frequent-backup/dump"
    );
    assert!(!format!("{:?}", r.password).contains("changeit"));
}

#[tokio::test]
async fn each_broken_link_names_the_object_and_the_field() {
    type Edit = fn(&mut MemoryObjects);
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "no repository",
            |o| o.repositories.clear(),
            "Repository demo/es-repo not found",
        ),
        (
            "no path",
            |o| o.repositories[0].path = Some("/".into()),
            "Repository demo/es-repo: spec.path is not set",
        ),
        (
            "no storageRef",
            |o| o.repositories[0].storage_ref = None,
            "Repository demo/es-repo: spec.storageRef is not set",
        ),
        (
            "no BackupStorage",
            |o| o.backup_storages.clear(),
            "the storage of Repository demo/es-repo (spec.storageRef): BackupStorage demo/s3-storage not found",
        ),
        (
            "no spec.storage",
            |o| o.backup_storages[0].provider = None,
            "BackupStorage demo/s3-storage: spec.storage is not set",
        ),
        (
            "no storage secret",
            |o| o.secrets.retain(|s| s.key.name != "s3-secret"),
            "storage secret of BackupStorage demo/s3-storage (spec.storage.s3.secretName): Secret demo/s3-secret not found",
        ),
        (
            "storage secret lacks a key",
            |o| o.secrets[0].data.remove("AWS_SECRET_ACCESS_KEY").map(|_| ()).unwrap(),
            "storage demo/s3-storage: secret is missing key `AWS_SECRET_ACCESS_KEY`",
        ),
        (
            "no encryptionSecret",
            |o| o.repositories[0].encryption_secret = None,
            "Repository demo/es-repo: spec.encryptionSecret is not set",
        ),
        (
            "no encryption secret",
            |o| o.secrets.retain(|s| s.key.name != "encrypt-secret"),
            "encryption secret of Repository demo/es-repo (spec.encryptionSecret): Secret demo/encrypt-secret not found",
        ),
        (
            "empty password",
            |o| o.secrets[1] = secret("demo", "encrypt-secret", &[("RESTIC_PASSWORD", "")]),
            "encryption Secret demo/encrypt-secret: key RESTIC_PASSWORD is missing or empty",
        ),
        (
            "password not UTF-8",
            |o| {
                o.secrets[1]
                    .data
                    .insert("RESTIC_PASSWORD".into(), vec![0xff, 0xfe]);
            },
            "Secret demo/encrypt-secret: data.RESTIC_PASSWORD is not valid UTF-8",
        ),
        (
            "empty bucket",
            |o| {
                o.backup_storages[0].provider = Some(Provider::S3 {
                    s3: S3Config {
                        bucket: "/".into(),
                        ..Default::default()
                    },
                })
            },
            "storage demo/s3-storage: invalid configuration: field `spec.storage.s3.bucket`: must not be empty",
        ),
    ];
    for (what, edit, want) in cases {
        let mut o = tutorial();
        edit(&mut o);
        let got = resolve(&o, &key("demo", "es-repo"), None)
            .await
            .err()
            .unwrap_or_else(|| panic!("{what}: resolved"))
            .to_string();
        assert_eq!(got, want, "{what}");
    }
}

#[tokio::test]
async fn a_session_encryption_secret_overrides_the_repository_one() {
    let mut o = tutorial();
    o.secrets
        .push(secret("other", "pw", &[("RESTIC_PASSWORD", "session-pw")]));
    o.secrets.push(SecretRecord {
        key: key("other", "shadowed"),
        data: [("RESTIC_PASSWORD".to_string(), b"from-data".to_vec())].into(),
        string_data: [(
            "RESTIC_PASSWORD".to_string(),
            "from-string-data".to_string(),
        )]
        .into(),
    });
    let field = "BackupConfiguration demo/bc (spec.sessions[0].repositories[0].encryptionSecret)";
    let r = resolve(
        &o,
        &key("demo", "es-repo"),
        Some((key("other", "pw"), field)),
    )
    .await
    .unwrap();
    assert_eq!(r.password.expose(), "session-pw");
    let r = resolve(
        &o,
        &key("demo", "es-repo"),
        Some((key("other", "shadowed"), field)),
    )
    .await
    .unwrap();
    assert_eq!(r.password.expose(), "from-string-data", "stringData wins");
    let e = resolve(
        &o,
        &key("demo", "es-repo"),
        Some((key("other", "nope"), field)),
    )
    .await
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        format!("encryption secret of {field}: Secret other/nope not found")
    );
}

#[tokio::test]
async fn a_wrong_password_is_reported_as_such_naming_its_secret() {
    let root = local_root();
    let mut o = tutorial();
    o.backup_storages[0].provider = Some(Provider::Local {
        local: LocalConfig {
            mount_path: root.display().to_string(),
            ..Default::default()
        },
    });
    let path = ComponentPath::new("frequent-backup", "dump").unwrap();
    let r = resolve(&o, &key("demo", "es-repo"), None).await.unwrap();
    r.component(&path).unwrap().init().await.unwrap();

    o.secrets[1] = secret("demo", "encrypt-secret", &[("RESTIC_PASSWORD", "not-it")]);
    let r = resolve(&o, &key("demo", "es-repo"), None).await.unwrap();
    let repo = r.component(&path).unwrap();
    let e = repo.snapshots().await.unwrap_err();
    assert!(matches!(e, Error::WrongPassword { .. }), "{e:?}");
    let msg = e.to_string();
    let want = format!(
        "the restic password in Secret demo/encrypt-secret does not open repository {}",
        repo.location()
    );
    assert!(msg.starts_with(&want), "{msg}");
    let _ = std::fs::remove_dir_all(root);
}
