//! Tenancy: which namespaces an object's references may reach.
//!
//! The operator can read Secrets and databases in every namespace, so every reference a user
//! writes is a request it carries out on their behalf. These rules decide, from objects already
//! read, whether the namespace that asks (the *requester*: the BackupConfiguration's,
//! RestoreSession's or Repository's namespace) may reach what it names. They are pure and are
//! applied twice: by the controllers as the object's `ValidationPassed` check, and again by the
//! executors right before any read or write, so a grant withdrawn in between is honoured.
//!
//! - **Targets** stay in the requester's namespace. A BackupConfiguration may back up a target
//!   in another namespace only when the target itself carries the auto-backup annotations naming
//!   a BackupBlueprint of the BackupConfiguration's namespace (the target's owner asked that
//!   blueprint's namespace to back it up). A RestoreSession writes only into its own namespace.
//! - **Shared objects** (BackupStorage, RetentionPolicy, HookTemplate, BackupBlueprint) are used
//!   only as their `usagePolicy` allows (default `Same`).
//! - **Repositories** are reached through their BackupStorage: its `usagePolicy` must allow the
//!   requester.
//! - **Encryption secrets** serve their own namespace. Another namespace may use one only when
//!   the Secret says so: annotation `kstash.io/allowed-namespaces` with that namespace's name
//!   (comma-separated list) or `*`. A RestoreSession may so read another namespace's Repository
//!   only if the storage allows it and it holds the password itself or the owner shared it.
//! - **Directories** of Repositories on one BackupStorage never overlap: the later Repository
//!   whose `spec.path` equals, contains or lies inside another's is refused, so deleting it
//!   (`WipeOut`) cannot remove another's data.

use std::collections::BTreeMap;

use kube::ResourceExt;

use crate::constants::annotations as ann;
use crate::core::{BackupConfiguration, RestoreSession};
use crate::lookup::{effective_usage_policy, AdmissionError, Lookup};
use crate::shared::{ObjectReference, TypedObjectReference, UsagePolicy};
use crate::storage::{BackupStorage, Repository};

fn denied<T>(field: impl Into<String>, reason: impl Into<String>) -> Result<T, AdmissionError> {
    Err(AdmissionError {
        field: field.into(),
        reason: reason.into(),
    })
}

/// The namespace a reference names, `default_ns` when it names none.
pub fn ref_namespace<'a>(explicit: Option<&'a str>, default_ns: &'a str) -> &'a str {
    match explicit {
        Some(ns) if !ns.is_empty() => ns,
        _ => default_ns,
    }
}

/// What a backup target in another namespace shows of itself: `None` when it could not be
/// read (the rule then fails closed).
pub type TargetAnnotations<'a> = Option<&'a BTreeMap<String, String>>;

/// A BackupConfiguration in `bc_ns` backing up `target` (its `spec.target`, `field`).
pub fn backup_target(
    bc_ns: &str,
    target: &TypedObjectReference,
    annotations: TargetAnnotations<'_>,
    field: &str,
) -> Result<(), AdmissionError> {
    let tns = ref_namespace(target.namespace.as_deref(), bc_ns);
    if tns == bc_ns {
        return Ok(());
    }
    let granted = annotations.is_some_and(|a| {
        a.get(ann::BLUEPRINT_NAMESPACE).map(String::as_str) == Some(bc_ns)
            && a.get(ann::BLUEPRINT_NAME).is_some_and(|n| !n.is_empty())
    });
    if granted {
        return Ok(());
    }
    denied(
        format!("{field}.namespace"),
        format!(
            "a BackupConfiguration in namespace {bc_ns:?} may not back up {} {tns}/{}: targets stay in the BackupConfiguration's namespace unless the target carries the annotations {}: {bc_ns} and {} (auto-backup by a blueprint of this namespace)",
            target.kind.as_deref().unwrap_or("target"),
            target.name,
            ann::BLUEPRINT_NAMESPACE,
            ann::BLUEPRINT_NAME,
        ),
    )
}

/// A RestoreSession in `rs_ns` restoring into `target` (`field`): same namespace only.
pub fn restore_target(
    rs_ns: &str,
    target: &TypedObjectReference,
    field: &str,
) -> Result<(), AdmissionError> {
    let tns = ref_namespace(target.namespace.as_deref(), rs_ns);
    if tns == rs_ns {
        return Ok(());
    }
    denied(
        format!("{field}.namespace"),
        format!(
            "a RestoreSession in namespace {rs_ns:?} may not restore into {} {tns}/{}: a restore writes only into its own namespace",
            target.kind.as_deref().unwrap_or("target"),
            target.name,
        ),
    )
}

/// An AppBinding in `ns` whose `spec.appRef` names `app_ns` (auto-backup follows it).
pub fn app_ref(ns: &str, app_ns: Option<&str>, field: &str) -> Result<(), AdmissionError> {
    let app_ns = ref_namespace(app_ns, ns);
    if app_ns == ns {
        return Ok(());
    }
    denied(
        format!("{field}.namespace"),
        format!(
            "an AppBinding in namespace {ns:?} may not refer to an application in namespace {app_ns:?}"
        ),
    )
}

/// May `requester_ns` (labels `labels`) use the shared object `kind ns/name` with `policy`?
pub fn usage(
    requester_ns: &str,
    labels: &BTreeMap<String, String>,
    (kind, ns, name): (&str, &str, &str),
    policy: Option<&UsagePolicy>,
    field: &str,
) -> Result<(), AdmissionError> {
    if effective_usage_policy(policy).allows(ns, requester_ns, labels) {
        return Ok(());
    }
    denied(
        field,
        format!(
            "namespace {requester_ns:?} is not allowed to refer {kind} {ns}/{name}; check the usagePolicy of the {kind}"
        ),
    )
}

/// What a Secret shows of itself: its annotations, `None` when it could not be read (the rule
/// then fails closed for another namespace).
pub type SecretAnnotations<'a> = Option<&'a BTreeMap<String, String>>;

/// May `requester_ns` use Secret `sns/sname` (with `annotations`) as a restic password?
pub fn encryption_secret(
    requester_ns: &str,
    (sns, sname): (&str, &str),
    annotations: SecretAnnotations<'_>,
    field: &str,
) -> Result<(), AdmissionError> {
    if sns == requester_ns {
        return Ok(());
    }
    let granted = annotations
        .and_then(|a| a.get(ann::SECRET_ALLOWED_NAMESPACES))
        .is_some_and(|v| {
            v.split(',')
                .map(str::trim)
                .any(|n| n == "*" || n == requester_ns)
        });
    if granted {
        return Ok(());
    }
    denied(
        format!("{field}.namespace"),
        format!(
            "Secret {sns}/{sname} may not be used as an encryption secret by namespace {requester_ns:?}: a Secret serves its own namespace unless its annotation {} lists {requester_ns:?} (or `*`)",
            ann::SECRET_ALLOWED_NAMESPACES
        ),
    )
}

/// [`usage`] of a BackupStorage.
pub fn storage_usage(
    requester_ns: &str,
    labels: &BTreeMap<String, String>,
    storage: &BackupStorage,
    field: &str,
) -> Result<(), AdmissionError> {
    usage(
        requester_ns,
        labels,
        (
            "BackupStorage",
            &storage.namespace().unwrap_or_default(),
            &storage.name_any(),
        ),
        storage.spec.usage_policy.as_ref(),
        field,
    )
}

/// The restic password Secret a requester in `requester_ns` uses for `repo`: `requested` (the
/// one it wrote, namespace defaulting to `requester_ns`) or the Repository's own
/// `spec.encryptionSecret` (namespace defaulting to the Repository's). `(namespace, name)`.
pub fn password_secret(
    repo: &Repository,
    requested: Option<&ObjectReference>,
    requester_ns: &str,
) -> Option<(String, String)> {
    let repo_ns = repo.namespace().unwrap_or_default();
    match requested {
        Some(s) => Some((s.namespace_or(requester_ns).to_string(), s.name.clone())),
        None => repo
            .spec
            .encryption_secret
            .as_ref()
            .map(|s| (s.namespace_or(&repo_ns).to_string(), s.name.clone())),
    }
}

/// The BackupStorage a Repository names, from `storages`.
pub fn storage_of<'a>(
    repo: &Repository,
    storages: &'a [BackupStorage],
) -> Option<&'a BackupStorage> {
    let r = repo.spec.storage_ref.as_ref()?;
    let rns = repo.namespace().unwrap_or_default();
    let sns = r.namespace_or(&rns);
    storages
        .iter()
        .find(|b| b.name_any() == r.name && b.namespace().as_deref() == Some(sns))
}

/// `requester_ns` reading or writing `repo` (on `storage`, `None` when it does not exist) with
/// the password of `requested` (`None`: the Repository's own `spec.encryptionSecret`), whose
/// Secret shows `secret_annotations`; `field` names where the requester wrote the secret.
pub fn repository_access(
    requester_ns: &str,
    labels: &BTreeMap<String, String>,
    repo: &Repository,
    storage: Option<&BackupStorage>,
    requested: Option<&ObjectReference>,
    secret_annotations: SecretAnnotations<'_>,
    field: &str,
) -> Result<(), AdmissionError> {
    let repo_ns = repo.namespace().unwrap_or_default();
    let object = format!("Repository {repo_ns}/{}", repo.name_any());
    let Some(storage) = storage else {
        let r = repo.spec.storage_ref.clone().unwrap_or_default();
        return denied(
            format!("{object} spec.storageRef"),
            format!(
                "BackupStorage {}/{} not found",
                r.namespace_or(&repo_ns),
                r.name
            ),
        );
    };
    storage_usage(
        requester_ns,
        labels,
        storage,
        &format!("{object} spec.storageRef"),
    )?;
    let Some((sns, sname)) = password_secret(repo, requested, requester_ns) else {
        return denied(
            format!("{object} spec.encryptionSecret"),
            "missing (and none was given)",
        );
    };
    let field = match requested {
        Some(_) => field.to_string(),
        None => format!("{object} spec.encryptionSecret"),
    };
    encryption_secret(requester_ns, (&sns, &sname), secret_annotations, &field)
}

/// The annotations of the Secrets in other namespaces that an object names, by
/// `(namespace, name)`; a Secret missing here could not be read.
pub type ForeignSecrets = BTreeMap<(String, String), BTreeMap<String, String>>;

/// The encryption secrets a BackupConfiguration names outside its namespace (to read them
/// before [`backup_configuration`]).
pub fn foreign_secrets(bc: &BackupConfiguration) -> Vec<(String, String)> {
    let ns = bc.namespace().unwrap_or_default();
    bc.spec
        .sessions
        .iter()
        .flat_map(|s| &s.repositories)
        .filter_map(|r| r.encryption_secret.as_ref())
        .map(|s| (s.namespace_or(&ns).to_string(), s.name.clone()))
        .filter(|(sns, _)| *sns != ns)
        .collect()
}

/// The tenancy checks of a BackupConfiguration beyond the usage policies of its storages,
/// retention policies and hook templates (admission checks those): its target (with the
/// target's annotations, `None` when it does not exist) and each repository's encryption
/// secret (`secrets`: see [`foreign_secrets`]).
pub fn backup_configuration(
    bc: &BackupConfiguration,
    target_annotations: TargetAnnotations<'_>,
    secrets: &ForeignSecrets,
) -> Result<(), AdmissionError> {
    let ns = bc.namespace().unwrap_or_default();
    if let Some(t) = &bc.spec.target {
        backup_target(&ns, t, target_annotations, "spec.target")?;
    }
    for (si, s) in bc.spec.sessions.iter().enumerate() {
        for (ri, r) in s.repositories.iter().enumerate() {
            let Some(secret) = r.encryption_secret.as_ref() else {
                continue;
            };
            let key = (secret.namespace_or(&ns).to_string(), secret.name.clone());
            encryption_secret(
                &ns,
                (&key.0, &key.1),
                secrets.get(&key),
                &format!("spec.sessions[{si}].repositories[{ri}].encryptionSecret"),
            )?;
        }
    }
    Ok(())
}

/// The data source of a RestoreSession, when its Repository is in `lookup`: the storage's
/// `usagePolicy` must allow the RestoreSession's namespace. (The executor checks everything
/// again, the encryption secret included, failing closed, once it has read the Snapshot's
/// Repository.)
pub fn restore_source(rs: &RestoreSession, lookup: &Lookup) -> Result<(), AdmissionError> {
    let ns = rs.namespace().unwrap_or_default();
    let Some(ds) = &rs.spec.data_source else {
        return Ok(());
    };
    let Some(name) = ds.repository.as_deref().filter(|n| !n.is_empty()) else {
        return Ok(());
    };
    let rns = ref_namespace(ds.namespace.as_deref(), &ns);
    let Some(repo) = lookup
        .repositories
        .iter()
        .find(|r| r.name_any() == name && r.namespace().as_deref() == Some(rns))
    else {
        return Ok(());
    };
    let Some(storage) = storage_of(repo, &lookup.backup_storages) else {
        return Ok(());
    };
    storage_usage(
        &ns,
        &lookup.ns_labels(&ns),
        storage,
        &format!("spec.dataSource.repository (Repository {rns}/{name} spec.storageRef)"),
    )
}

/// The checks of a Repository object itself (its namespace as the requester): its storage's
/// `usagePolicy`, its encryption secret (whose annotations are `secret_annotations` when it is
/// in another namespace) and its directory. A storage that is not in `lookup` is left to the
/// caller (it reports "not found").
pub fn repository(
    repo: &Repository,
    lookup: &Lookup,
    secret_annotations: SecretAnnotations<'_>,
) -> Result<(), AdmissionError> {
    let ns = repo.namespace().unwrap_or_default();
    if let Some(storage) = storage_of(repo, &lookup.backup_storages) {
        storage_usage(&ns, &lookup.ns_labels(&ns), storage, "spec.storageRef")?;
    }
    if let Some((sns, sname)) = password_secret(repo, None, &ns) {
        encryption_secret(
            &ns,
            (&sns, &sname),
            secret_annotations,
            "spec.encryptionSecret",
        )?;
    }
    repository_directory(repo, &lookup.repositories)
}

/// `spec.path` as a list of components (`/a//b/` → `["a", "b"]`).
fn components(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect()
}

/// Refuses `repo` when its directory overlaps that of an earlier Repository (by creation time,
/// then namespace/name) on the same BackupStorage.
pub fn repository_directory(repo: &Repository, all: &[Repository]) -> Result<(), AdmissionError> {
    let key = |r: &Repository| {
        let ns = r.namespace().unwrap_or_default();
        let s = r.spec.storage_ref.clone().unwrap_or_default();
        (s.namespace_or(&ns).to_string(), s.name)
    };
    let order = |r: &Repository| {
        (
            r.metadata.creation_timestamp.clone().map(|t| t.0),
            r.namespace().unwrap_or_default(),
            r.name_any(),
        )
    };
    let mine = components(repo.spec.path.as_deref().unwrap_or(""));
    for other in all {
        if other.uid().is_some() && other.uid() == repo.uid()
            || (other.namespace(), other.name_any()) == (repo.namespace(), repo.name_any())
        {
            continue;
        }
        if key(other) != key(repo) || order(other) > order(repo) {
            continue;
        }
        let theirs = components(other.spec.path.as_deref().unwrap_or(""));
        let n = mine.len().min(theirs.len());
        if mine[..n] == theirs[..n] {
            let (sns, sname) = key(repo);
            return denied(
                "spec.path",
                format!(
                    "{:?} overlaps the directory {:?} of Repository {}/{} on BackupStorage {sns}/{sname}; choose a directory that neither contains nor lies inside another repository's",
                    repo.spec.path.as_deref().unwrap_or(""),
                    other.spec.path.as_deref().unwrap_or(""),
                    other.namespace().unwrap_or_default(),
                    other.name_any()
                ),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::FromNamespaces;
    use crate::storage::{BackupStorageSpec, RepositorySpec};

    fn storage(ns: &str, from: FromNamespaces) -> BackupStorage {
        let mut b = BackupStorage::new(
            "s3",
            BackupStorageSpec {
                usage_policy: Some(UsagePolicy::from(from)),
                ..Default::default()
            },
        );
        b.metadata.namespace = Some(ns.into());
        b
    }

    fn repo(
        ns: &str,
        name: &str,
        storage: (&str, &str),
        path: &str,
        secret_ns: Option<&str>,
    ) -> Repository {
        let mut r = Repository::new(
            name,
            RepositorySpec {
                storage_ref: Some(ObjectReference {
                    name: storage.1.into(),
                    namespace: Some(storage.0.into()),
                }),
                path: Some(path.into()),
                encryption_secret: Some(ObjectReference {
                    name: "key".into(),
                    namespace: secret_ns.map(str::to_string),
                }),
                ..Default::default()
            },
        );
        r.metadata.namespace = Some(ns.into());
        r
    }

    fn target(ns: Option<&str>) -> TypedObjectReference {
        TypedObjectReference {
            api_group: Some("kubedb.com".into()),
            kind: Some("Redis".into()),
            namespace: ns.map(str::to_string),
            name: "db".into(),
        }
    }

    #[test]
    fn targets_stay_in_their_namespace_unless_the_target_asked_for_the_blueprint() {
        assert!(backup_target("a", &target(None), None, "spec.target").is_ok());
        assert!(backup_target("a", &target(Some("a")), None, "spec.target").is_ok());
        let e = backup_target("a", &target(Some("b")), None, "spec.target").unwrap_err();
        assert_eq!(e.field, "spec.target.namespace");
        assert!(e.reason.contains("b/db"), "{e}");
        let mut asked = BTreeMap::new();
        asked.insert(ann::BLUEPRINT_NAME.to_string(), "bp".to_string());
        asked.insert(ann::BLUEPRINT_NAMESPACE.to_string(), "other".to_string());
        assert!(backup_target("a", &target(Some("b")), Some(&asked), "spec.target").is_err());
        asked.insert(ann::BLUEPRINT_NAMESPACE.to_string(), "a".to_string());
        assert!(backup_target("a", &target(Some("b")), Some(&asked), "spec.target").is_ok());
        // A restore never crosses.
        assert!(restore_target("a", &target(None), "spec.target").is_ok());
        let e = restore_target("a", &target(Some("b")), "spec.target").unwrap_err();
        assert!(e.to_string().starts_with("spec.target.namespace: "), "{e}");
        assert!(app_ref("a", Some("b"), "spec.appRef").is_err());
        assert!(app_ref("a", Some(""), "spec.appRef").is_ok());
    }

    #[test]
    fn repositories_are_reached_through_the_storage_policy_and_a_key_shared_on_purpose() {
        let none = BTreeMap::new();
        let same = storage("b", FromNamespaces::Same);
        let r = repo("b", "r", ("b", "s3"), "/x", None);
        // The owner.
        assert!(repository_access("b", &none, &r, Some(&same), None, None, "f").is_ok());
        // Another namespace: the storage's policy refuses.
        let e = repository_access("a", &none, &r, Some(&same), None, None, "f").unwrap_err();
        assert!(
            e.reason.contains("not allowed to refer BackupStorage b/s3"),
            "{e}"
        );
        // A shared storage: the victim's key is still not the requester's…
        let all = storage("b", FromNamespaces::All);
        let e = repository_access("a", &none, &r, Some(&all), None, None, "f").unwrap_err();
        assert_eq!(e.field, "Repository b/r spec.encryptionSecret.namespace");
        let mut other = BTreeMap::new();
        other.insert(
            ann::SECRET_ALLOWED_NAMESPACES.to_string(),
            "c, d".to_string(),
        );
        assert!(repository_access("a", &none, &r, Some(&all), None, Some(&other), "f").is_err());
        // …unless its Secret lists the requester (or `*`), or the requester holds a key itself.
        let mut shared = BTreeMap::new();
        shared.insert(
            ann::SECRET_ALLOWED_NAMESPACES.to_string(),
            "c, a".to_string(),
        );
        assert!(repository_access("a", &none, &r, Some(&all), None, Some(&shared), "f").is_ok());
        shared.insert(ann::SECRET_ALLOWED_NAMESPACES.to_string(), "*".to_string());
        assert!(repository_access("a", &none, &r, Some(&all), None, Some(&shared), "f").is_ok());
        let own = ObjectReference {
            name: "mine".into(),
            namespace: None,
        };
        assert!(repository_access("a", &none, &r, Some(&all), Some(&own), None, "f").is_ok());
        // A storage that does not exist fails closed.
        assert!(repository_access("b", &none, &r, None, None, None, "f").is_err());
    }

    #[test]
    fn directories_on_one_storage_never_overlap() {
        let mut first = repo("a", "first", ("s", "s3"), "/tenant/a", None);
        first.metadata.uid = Some("1".into());
        let all = vec![first.clone()];
        for (path, ok) in [
            ("/tenant/b", true),
            ("/tenant/a", false),
            ("tenant/a/", false),
            ("/tenant", false),
            ("/", false),
            ("/tenant/a/deeper", false),
            ("/tenant/ab", true),
        ] {
            let mut r = repo("b", "later", ("s", "s3"), path, None);
            r.metadata.uid = Some("2".into());
            assert_eq!(repository_directory(&r, &all).is_ok(), ok, "{path}");
        }
        // The earlier one is never refused because of a later one.
        let mut later = repo("b", "later", ("s", "s3"), "/", None);
        later.metadata.uid = Some("2".into());
        later.metadata.creation_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
        );
        first.metadata.creation_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                jiff::Timestamp::now() - jiff::SignedDuration::from_secs(60),
            ));
        assert!(repository_directory(&first, &[first.clone(), later.clone()]).is_ok());
        assert!(repository_directory(&later, &[first, later.clone()]).is_err());
        // Another storage is another namespace of directories.
        let other = repo("b", "o", ("t", "s3"), "/tenant/a", None);
        assert!(repository_directory(&other, &all).is_ok());
    }
}
