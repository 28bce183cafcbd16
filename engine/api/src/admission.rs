//! Admission rules of KubeStash's webhooks as pure functions (spec §1.3–§1.8, §3.1, §6):
//! `default_*` mutate an object in place, `validate_*` return the first violation as an
//! [`AdmissionError`] naming the field path and the reason (KubeStash's text where the spec
//! quotes it). Existing objects are passed in a [`Lookup`].
//!
//! Deviations from KubeStash quirks (spec §11.11) are documented in docs/api.md and on the
//! functions below.

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;

use crate::addons::Function;
use crate::core::{
    BackupBlueprint, BackupConfiguration, BackupSession, HookExecutorType, HookInfo, HookTemplate,
    RestoreSession,
};
use crate::lookup::default_usage_policy;
pub use crate::lookup::{effective_usage_policy, AdmissionError, Lookup};
use crate::shared::{FromNamespaces, ObjectReference, TypedObjectReference, UsagePolicy};
use crate::storage::{
    BackupStorage, BackupStorageDeletionPolicy, FailedSnapshotsKeepPolicy, Repository,
    RetentionPolicy,
};

fn err<T>(field: impl Into<String>, reason: impl Into<String>) -> Result<T, AdmissionError> {
    Err(AdmissionError {
        field: field.into(),
        reason: reason.into(),
    })
}

fn ns_of<K: ResourceExt>(o: &K) -> String {
    o.namespace().unwrap_or_default()
}

fn same_ref(a: &ObjectReference, a_ns: &str, b: &ObjectReference, b_ns: &str) -> bool {
    a.name == b.name && a.namespace_or(a_ns) == b.namespace_or(b_ns)
}

fn same_target(a: &TypedObjectReference, a_ns: &str, b: &TypedObjectReference, b_ns: &str) -> bool {
    let ns = |r: &TypedObjectReference, d: &str| match r.namespace.as_deref() {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => d.to_string(),
    };
    a.name == b.name
        && a.kind.as_deref().unwrap_or("") == b.kind.as_deref().unwrap_or("")
        && a.api_group.as_deref().unwrap_or("") == b.api_group.as_deref().unwrap_or("")
        && ns(a, a_ns) == ns(b, b_ns)
}

fn norm_dir(d: &str) -> &str {
    d.trim_matches('/')
}

/// Shared `usagePolicy` rule: `from: Selector` needs a selector.
fn validate_usage_policy(p: Option<&UsagePolicy>, field: &str) -> Result<(), AdmissionError> {
    if let Some(an) = p.and_then(|p| p.allowed_namespaces.as_ref()) {
        if an.from == Some(FromNamespaces::Selector) && an.selector.is_none() {
            return err(
                format!("{field}.allowedNamespaces.selector"),
                "selector can not be empty when usage policy is Selector",
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Default BackupStorage / RetentionPolicy lookup (3 passes)
// ---------------------------------------------------------------------------------------------

/// Finds the default object for namespace `ns` in KubeStash's three passes: (a) `default` in
/// the same namespace with `from: Same`; (b) `default` with `from: Selector` matching the
/// namespace's labels; (c) `default` with `from: All`.
fn find_default<'a, T: ResourceExt>(
    items: &'a [T],
    is_default: impl Fn(&T) -> bool,
    policy: impl Fn(&T) -> Option<&UsagePolicy>,
    ns: &str,
    ns_labels: &BTreeMap<String, String>,
) -> Option<&'a T> {
    let from = |t: &T| effective_usage_policy(policy(t)).from_value();
    let defaults: Vec<&T> = items.iter().filter(|t| is_default(t)).collect();
    defaults
        .iter()
        .find(|t| from(t) == Some(FromNamespaces::Same) && ns_of(**t) == ns)
        .or_else(|| {
            defaults.iter().find(|t| {
                from(t) == Some(FromNamespaces::Selector)
                    && effective_usage_policy(policy(t)).allows(&ns_of(**t), ns, ns_labels)
            })
        })
        .or_else(|| {
            defaults
                .iter()
                .find(|t| from(t) == Some(FromNamespaces::All))
        })
        .copied()
}

/// The default BackupStorage for namespace `ns` (3-pass lookup), if any.
pub fn default_backup_storage_for<'a>(ctx: &'a Lookup, ns: &str) -> Option<&'a BackupStorage> {
    find_default(
        &ctx.backup_storages,
        |b| b.spec.default == Some(true),
        |b| b.spec.usage_policy.as_ref(),
        ns,
        &ctx.ns_labels(ns),
    )
}

/// The default RetentionPolicy for namespace `ns` (3-pass lookup), if any.
pub fn default_retention_policy_for<'a>(ctx: &'a Lookup, ns: &str) -> Option<&'a RetentionPolicy> {
    find_default(
        &ctx.retention_policies,
        |r| r.spec.default == Some(true),
        |r| r.spec.usage_policy.as_ref(),
        ns,
        &ctx.ns_labels(ns),
    )
}

fn obj_ref<K: ResourceExt>(o: &K) -> ObjectReference {
    ObjectReference {
        namespace: o.namespace(),
        name: o.name_any(),
    }
}

// ---------------------------------------------------------------------------------------------
// BackupConfiguration
// ---------------------------------------------------------------------------------------------

/// Mutating webhook of BackupConfiguration (spec §3.1): with no backends, insert one backend
/// with an empty name pointing at the default BackupStorage; then give each backend without a
/// `retentionPolicy` the default RetentionPolicy. Like KubeStash, stops at the first backend for
/// which no default RetentionPolicy exists (the validator then reports that backend).
pub fn default_backup_configuration(bc: &mut BackupConfiguration, ctx: &Lookup) {
    let ns = ns_of(bc);
    if bc.spec.backends.is_empty() {
        if let Some(bs) = default_backup_storage_for(ctx, &ns) {
            bc.spec.backends.push(crate::core::BackendReference {
                name: String::new(),
                storage_ref: Some(obj_ref(bs)),
                retention_policy: None,
            });
        }
    }
    for b in &mut bc.spec.backends {
        if b.retention_policy.is_none() {
            match default_retention_policy_for(ctx, &ns) {
                Some(rp) => b.retention_policy = Some(obj_ref(rp)),
                None => return,
            }
        }
    }
}

/// What kstash cannot run although KubeStash accepts it, refused rather than silently ignored
/// (docs/concepts.md, "Deliberate differences"): backup hooks (KubeStash runs them in the
/// executor Job's containers, which kstash does not create), backup verifiers, and more than one task per session
/// (kstash writes one `dump` component per session). Checked after
/// [`validate_backup_configuration`]; the error becomes the `ValidationPassed` condition.
pub fn kstash_limits(bc: &BackupConfiguration) -> Result<(), AdmissionError> {
    for (si, s) in bc.spec.sessions.iter().enumerate() {
        if let Some(h) = &s.config.hooks {
            no_hooks(
                &format!("spec.sessions[{si}].hooks"),
                "backup",
                [("preBackup", &h.pre_backup), ("postBackup", &h.post_backup)],
            )?;
        }
        if let Some(ri) = s
            .repositories
            .iter()
            .position(|r| r.backup_verifier.is_some())
        {
            return err(
                format!("spec.sessions[{si}].repositories[{ri}].backupVerifier"),
                "kstash does not run BackupVerifiers (verification would restore into containers \
                 kstash does not create); remove the reference, and verify a Snapshot by \
                 restoring it with a RestoreSession into a scratch target",
            );
        }
        if let Some(addon) = &s.addon {
            if let Some(extra) = addon.tasks.get(1) {
                return err(
                    format!("spec.sessions[{si}].addon.tasks[1]"),
                    format!(
                        "kstash runs one backup task per session; put task {:?} in a session of \
                         its own",
                        extra.name
                    ),
                );
            }
        }
    }
    Ok(())
}

/// Refuses the first non-empty hook list of `lists` (`<parent>.<field>`).
fn no_hooks(
    parent: &str,
    what: &str,
    lists: [(&str, &Vec<HookInfo>); 2],
) -> Result<(), AdmissionError> {
    match lists.iter().find(|(_, hooks)| !hooks.is_empty()) {
        Some((field, _)) => err(
            format!("{parent}.{field}"),
            format!(
                "kstash does not run {what} hooks (KubeStash runs them in executor containers, \
                 which kstash does not create); remove them, or run the commands outside kstash"
            ),
        ),
        None => Ok(()),
    }
}

/// [`kstash_limits`] for a RestoreSession: restore hooks and a second restore task are refused.
pub fn kstash_restore_limits(rs: &RestoreSession) -> Result<(), AdmissionError> {
    if let Some(h) = &rs.spec.hooks {
        no_hooks(
            "spec.hooks",
            "restore",
            [
                ("preRestore", &h.pre_restore),
                ("postRestore", &h.post_restore),
            ],
        )?;
    }
    if let Some(extra) = rs.spec.addon.as_ref().and_then(|a| a.tasks.get(1)) {
        return err(
            "spec.addon.tasks[1]",
            format!(
                "kstash runs one restore task per RestoreSession; restore task {:?} with a \
                 RestoreSession of its own",
                extra.name
            ),
        );
    }
    Ok(())
}

/// Validating webhook of BackupConfiguration (create and update), rules 1–5 of spec §3.1.
/// First error wins.
///
/// Deviations (safe side, docs/api.md): a repository with an empty `backend` must resolve to
/// exactly one backend (the one with an empty name, or the only backend); directory reuse
/// inside the BC is rejected when both repositories resolve to the same BackupStorage (KubeStash
/// also rejects it across different storages, a code quirk).
pub fn validate_backup_configuration(
    bc: &BackupConfiguration,
    ctx: &Lookup,
) -> Result<(), AdmissionError> {
    let ns = ns_of(bc);
    let spec = &bc.spec;

    // Rule 1: backends.
    if spec.backends.is_empty() {
        return err("spec.backends", "backend can not be empty");
    }
    let mut names = BTreeSet::new();
    for (i, b) in spec.backends.iter().enumerate() {
        if !names.insert(b.name.as_str()) {
            return err(
                format!("spec.backends[{i}].name"),
                format!("duplicate backend name {:?}", b.name),
            );
        }
        if b.retention_policy.is_none() {
            return err(
                format!("spec.backends[{i}].retentionPolicy"),
                format!("no RetentionPolicy is found for backend {:?}", b.name),
            );
        }
        if b.storage_ref.is_none() {
            return err(
                format!("spec.backends[{i}].storageRef"),
                format!("storageRef can not be empty for backend {:?}", b.name),
            );
        }
    }

    // Rule 2: sessions.
    if spec.sessions.is_empty() {
        return err("spec.sessions", "sessions can not be empty");
    }
    let mut session_names = BTreeSet::new();
    for (si, s) in spec.sessions.iter().enumerate() {
        let sf = format!("spec.sessions[{si}]");
        if s.config.name.is_empty() {
            return err(format!("{sf}.name"), "session name can not be empty");
        }
        if !session_names.insert(s.config.name.as_str()) {
            return err(
                format!("{sf}.name"),
                format!("duplicate session name {:?}", s.config.name),
            );
        }
        if s.config.scheduler.is_none() {
            return err(
                format!("{sf}.scheduler"),
                format!("scheduler can not be empty for session {:?}", s.config.name),
            );
        }
        let Some(addon) = &s.addon else {
            return err(format!("{sf}.addon"), "addon can not be empty");
        };
        if addon.name.is_empty() {
            return err(format!("{sf}.addon.name"), "addon name can not be empty");
        }
        if addon.tasks.is_empty() {
            return err(format!("{sf}.addon.tasks"), "addon tasks can not be empty");
        }
        for (ti, t) in addon.tasks.iter().enumerate() {
            if t.name.is_empty() {
                return err(
                    format!("{sf}.addon.tasks[{ti}].name"),
                    "task name can not be empty",
                );
            }
        }
        if s.repositories.is_empty() {
            return err(
                format!("{sf}.repositories"),
                "repositories can not be empty",
            );
        }
        let mut repo_names = BTreeSet::new();
        for (ri, r) in s.repositories.iter().enumerate() {
            let rf = format!("{sf}.repositories[{ri}]");
            if r.name.is_empty() {
                return err(format!("{rf}.name"), "repository name can not be empty");
            }
            if !repo_names.insert(r.name.as_str()) {
                return err(
                    format!("{rf}.name"),
                    format!(
                        "duplicate repository name {:?} in session {:?}",
                        r.name, s.config.name
                    ),
                );
            }
            let storage = resolve_backend_storage(bc, r.backend.as_deref()).map_err(|reason| {
                AdmissionError {
                    field: format!("{rf}.backend"),
                    reason,
                }
            })?;
            if r.directory.as_deref().unwrap_or("").is_empty() {
                return err(
                    format!("{rf}.directory"),
                    format!("directory can not be empty for repository {:?}", r.name),
                );
            }
            if let Some(existing) = ctx
                .repositories
                .iter()
                .find(|x| x.name_any() == r.name && ns_of(*x) == ns)
            {
                let app_ok = match (&existing.spec.app_ref, &spec.target) {
                    (Some(a), Some(t)) => same_target(a, &ns, t, &ns),
                    (None, None) => true,
                    _ => false,
                };
                if !app_ok {
                    return err(
                        format!("{rf}.name"),
                        format!(
                            "repository {:?} already exists in the cluster with a different appRef",
                            r.name
                        ),
                    );
                }
                let storage_ok = existing
                    .spec
                    .storage_ref
                    .as_ref()
                    .is_some_and(|sr| same_ref(sr, &ns, storage, &ns));
                if !storage_ok {
                    return err(
                        format!("{rf}.name"),
                        format!(
                            "repository {:?} already exists in the cluster with a different storageRef",
                            r.name
                        ),
                    );
                }
            }
        }
    }

    // Rule 3: directory uniqueness, inside the BC and across the cluster.
    let mut dirs: BTreeMap<(String, String, String), &str> = BTreeMap::new();
    for (si, s) in spec.sessions.iter().enumerate() {
        for (ri, r) in s.repositories.iter().enumerate() {
            let rf = format!("spec.sessions[{si}].repositories[{ri}].directory");
            let dir = norm_dir(r.directory.as_deref().unwrap_or("")).to_string();
            let storage =
                resolve_backend_storage(bc, r.backend.as_deref()).expect("checked by rule 2");
            let key = (
                storage.namespace_or(&ns).to_string(),
                storage.name.clone(),
                dir.clone(),
            );
            match dirs.get(&key) {
                Some(other) if *other != r.name => {
                    return err(
                        rf,
                        format!(
                            "repository {:?} and {:?} can not use the same directory {:?} of the same backend",
                            other, r.name, r.directory.as_deref().unwrap_or("")
                        ),
                    )
                }
                _ => {
                    dirs.insert(key, &r.name);
                }
            }
            for other in &ctx.repositories {
                let same_obj = other.name_any() == r.name && ns_of(other) == ns;
                let other_ns = ns_of(other);
                if !same_obj
                    && other
                        .spec
                        .storage_ref
                        .as_ref()
                        .is_some_and(|sr| same_ref(sr, &other_ns, storage, &ns))
                    && norm_dir(other.spec.path.as_deref().unwrap_or("")) == dir
                {
                    return err(
                        rf,
                        format!(
                            "repository {}/{} already uses the directory {:?} of BackupStorage {}/{}",
                            other_ns,
                            other.name_any(),
                            r.directory.as_deref().unwrap_or(""),
                            storage.namespace_or(&ns),
                            storage.name
                        ),
                    );
                }
            }
        }
    }

    // Rule 4: usage policies of the referenced BackupStorages/RetentionPolicies.
    let labels = ctx.ns_labels(&ns);
    for (i, b) in spec.backends.iter().enumerate() {
        let sr = b.storage_ref.as_ref().expect("checked by rule 1");
        if let Some(bs) = ctx
            .backup_storages
            .iter()
            .find(|x| x.name_any() == sr.name && ns_of(*x) == sr.namespace_or(&ns))
        {
            let allowed = effective_usage_policy(bs.spec.usage_policy.as_ref()).allows(
                &ns_of(bs),
                &ns,
                &labels,
            );
            if !allowed {
                return err(
                    format!("spec.backends[{i}].storageRef"),
                    format!(
                        "namespace {ns:?} is not allowed to refer BackupStorage {}/{}; check the usagePolicy of the BackupStorage",
                        ns_of(bs),
                        bs.name_any()
                    ),
                );
            }
        }
        let rp_ref = b.retention_policy.as_ref().expect("checked by rule 1");
        if let Some(rp) = ctx
            .retention_policies
            .iter()
            .find(|x| x.name_any() == rp_ref.name && ns_of(*x) == rp_ref.namespace_or(&ns))
        {
            let allowed = effective_usage_policy(rp.spec.usage_policy.as_ref()).allows(
                &ns_of(rp),
                &ns,
                &labels,
            );
            if !allowed {
                return err(
                    format!("spec.backends[{i}].retentionPolicy"),
                    format!(
                        "namespace {ns:?} is not allowed to refer RetentionPolicy {}/{}; check the usagePolicy of the RetentionPolicy",
                        ns_of(rp),
                        rp.name_any()
                    ),
                );
            }
        }
    }

    // Rule 5: HookTemplate usage policies.
    for (si, s) in spec.sessions.iter().enumerate() {
        if let Some(h) = &s.config.hooks {
            check_hooks(
                &h.pre_backup,
                &format!("spec.sessions[{si}].hooks.preBackup"),
                &ns,
                ctx,
            )?;
            check_hooks(
                &h.post_backup,
                &format!("spec.sessions[{si}].hooks.postBackup"),
                &ns,
                ctx,
            )?;
        }
    }
    Ok(())
}

/// The storageRef of the backend a repository uses: the named backend, or for an empty name the
/// backend with an empty name, or the only backend.
pub(crate) fn resolve_backend_storage<'a>(
    bc: &'a BackupConfiguration,
    backend: Option<&str>,
) -> Result<&'a ObjectReference, String> {
    let backends = &bc.spec.backends;
    let name = backend.unwrap_or("");
    let found = backends.iter().find(|b| b.name == name).or_else(|| {
        if name.is_empty() && backends.len() == 1 {
            backends.first()
        } else {
            None
        }
    });
    match found {
        Some(b) => b
            .storage_ref
            .as_ref()
            .ok_or_else(|| format!("backend {name:?} has no storageRef")),
        None if name.is_empty() => {
            Err("backend can not be empty when spec.backends has several backends".to_string())
        }
        None => Err(format!("backend {name:?} is not present in spec.backends")),
    }
}

fn check_hooks(
    hooks: &[HookInfo],
    field: &str,
    ns: &str,
    ctx: &Lookup,
) -> Result<(), AdmissionError> {
    let labels = ctx.ns_labels(ns);
    for (i, h) in hooks.iter().enumerate() {
        let Some(r) = &h.hook_template else { continue };
        if let Some(ht) = ctx
            .hook_templates
            .iter()
            .find(|x| x.name_any() == r.name && ns_of(*x) == r.namespace_or(ns))
        {
            // HookTemplate's CRD/webhook default is `from: Same` when unset.
            let policy = effective_usage_policy(ht.spec.usage_policy.as_ref());
            if !policy.allows(&ns_of(ht), ns, &labels) {
                return err(
                    format!("{field}[{i}].hookTemplate"),
                    format!(
                        "namespace {ns:?} is not allowed to refer HookTemplate {}/{}; check the usagePolicy of the HookTemplate",
                        ns_of(ht),
                        ht.name_any()
                    ),
                );
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// BackupStorage
// ---------------------------------------------------------------------------------------------

/// Mutating webhook of BackupStorage: trim trailing `/` from s3 bucket/endpoint/prefix, gcs
/// bucket/prefix and azure prefix; default `usagePolicy` to `from: Same`; default
/// `deletionPolicy` to `Delete` (the CRD default).
pub fn default_backup_storage(bs: &mut BackupStorage) {
    let trim = |s: &mut Option<String>| {
        if let Some(v) = s {
            *v = v.trim_end_matches('/').to_string();
        }
    };
    if let Some(st) = &mut bs.spec.storage {
        if let Some(s3) = &mut st.s3 {
            trim(&mut s3.bucket);
            trim(&mut s3.endpoint);
            trim(&mut s3.prefix);
        }
        if let Some(g) = &mut st.gcs {
            trim(&mut g.bucket);
            trim(&mut g.prefix);
        }
        if let Some(a) = &mut st.azure {
            trim(&mut a.prefix);
        }
    }
    default_usage_policy(&mut bs.spec.usage_policy);
    if bs.spec.deletion_policy.is_none() {
        bs.spec.deletion_policy = Some(BackupStorageDeletionPolicy::Delete);
    }
}

/// The directory identity of a BackupStorage: provider + (s3: bucket, region, prefix | gcs:
/// bucket, prefix | azure: account, container, prefix). `None` for other providers.
fn storage_location(bs: &BackupStorage) -> Option<(String, Vec<String>)> {
    let st = bs.spec.storage.as_ref()?;
    let s = |v: &Option<String>| norm_dir(v.as_deref().unwrap_or("")).to_string();
    let provider = st.provider.clone().unwrap_or_default();
    match provider.as_str() {
        "s3" => st.s3.as_ref().map(|x| {
            (
                provider.clone(),
                vec![s(&x.bucket), s(&x.region), s(&x.prefix)],
            )
        }),
        "gcs" => st
            .gcs
            .as_ref()
            .map(|x| (provider.clone(), vec![s(&x.bucket), s(&x.prefix)])),
        "azure" => st.azure.as_ref().map(|x| {
            (
                provider.clone(),
                vec![s(&x.storage_account), s(&x.container), s(&x.prefix)],
            )
        }),
        _ => None,
    }
}

/// Validating webhook of BackupStorage on create (`old == None`) and update: at most one
/// default per namespace; `Selector` needs a selector; no two BackupStorages may point to the
/// same directory of the same bucket; on update, `spec.storage` is immutable once
/// `status.repositories` is non-empty.
pub fn validate_backup_storage(
    old: Option<&BackupStorage>,
    bs: &BackupStorage,
    ctx: &Lookup,
) -> Result<(), AdmissionError> {
    let ns = ns_of(bs);
    let name = bs.name_any();
    let is_self = |o: &BackupStorage| o.name_any() == name && ns_of(o) == ns;
    if bs.spec.default == Some(true)
        && ctx
            .backup_storages
            .iter()
            .any(|o| !is_self(o) && ns_of(o) == ns && o.spec.default == Some(true))
    {
        return err(
            "spec.default",
            "multiple default BackupStorages are not allowed within the same namespace",
        );
    }
    validate_usage_policy(bs.spec.usage_policy.as_ref(), "spec.usagePolicy")?;
    if let Some(loc) = storage_location(bs) {
        if ctx
            .backup_storages
            .iter()
            .any(|o| !is_self(o) && storage_location(o).as_ref() == Some(&loc))
        {
            return err(
                "spec.storage",
                "no two BackupStorage should point to the same directory of the same bucket",
            );
        }
    }
    if let Some(old) = old {
        let in_use = old
            .status
            .as_ref()
            .is_some_and(|s| !s.repositories.is_empty());
        if in_use && old.spec.storage != bs.spec.storage {
            return err(
                "spec.storage",
                "BackupStorage is currently in use and cannot be modified",
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// RetentionPolicy
// ---------------------------------------------------------------------------------------------

/// Mutating webhook of RetentionPolicy: default `usagePolicy` to `from: Same` and
/// `failedSnapshots` to `{last: 1}` when unset.
pub fn default_retention_policy(rp: &mut RetentionPolicy) {
    default_usage_policy(&mut rp.spec.usage_policy);
    if rp.spec.failed_snapshots.is_none() {
        rp.spec.failed_snapshots = Some(FailedSnapshotsKeepPolicy { last: Some(1) });
    }
}

/// Validating webhook of RetentionPolicy: `maxRetentionPeriod` parses; one of
/// `maxRetentionPeriod`/`successfulSnapshots` is given; `Selector` needs a selector; at most
/// one default per namespace.
pub fn validate_retention_policy(rp: &RetentionPolicy, ctx: &Lookup) -> Result<(), AdmissionError> {
    let period = rp
        .spec
        .max_retention_period
        .as_deref()
        .filter(|p| !p.is_empty());
    if let Some(p) = period {
        if let Err(e) = crate::period::parse_max_retention_period(p) {
            return err("spec.maxRetentionPeriod", e.to_string());
        }
    }
    if period.is_none() && rp.spec.successful_snapshots.is_none() {
        return err(
            "spec",
            "one of maxRetentionPeriod and successfulSnapshots policy must be provided",
        );
    }
    validate_usage_policy(rp.spec.usage_policy.as_ref(), "spec.usagePolicy")?;
    let (ns, name) = (ns_of(rp), rp.name_any());
    if rp.spec.default == Some(true)
        && ctx.retention_policies.iter().any(|o| {
            !(o.name_any() == name && ns_of(o) == ns)
                && ns_of(o) == ns
                && o.spec.default == Some(true)
        })
    {
        return err(
            "spec.default",
            "multiple default RetentionPolicies are not allowed within the same namespace",
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// BackupBlueprint
// ---------------------------------------------------------------------------------------------

/// Mutating webhook of BackupBlueprint: default `usagePolicy` to `from: Same`.
pub fn default_backup_blueprint(bp: &mut BackupBlueprint) {
    default_usage_policy(&mut bp.spec.usage_policy);
}

/// Validating webhook of BackupBlueprint: `backupConfigurationTemplate` required; `Selector`
/// needs a selector.
///
/// Deviation (docs/api.md): KubeStash also checks the referenced BackupStorage's usage policy
/// against the *blueprint's* namespace; kstash leaves that check to the BackupConfiguration
/// webhook, which runs on every generated BC with the right (target) namespace.
pub fn validate_backup_blueprint(bp: &BackupBlueprint) -> Result<(), AdmissionError> {
    if bp.spec.backup_configuration_template.is_none() {
        return err(
            "spec.backupConfigurationTemplate",
            "backupConfigurationTemplate can not be empty",
        );
    }
    validate_usage_policy(bp.spec.usage_policy.as_ref(), "spec.usagePolicy")
}

// ---------------------------------------------------------------------------------------------
// RestoreSession / BackupSession / HookTemplate / Repository / Function
// ---------------------------------------------------------------------------------------------

/// Validating webhook of RestoreSession: with `pitr`, `pitr.targetTime` and `repository` are
/// required; otherwise `snapshot` is required and `snapshot: latest` needs `repository`;
/// referenced HookTemplates must allow the namespace.
pub fn validate_restore_session(rs: &RestoreSession, ctx: &Lookup) -> Result<(), AdmissionError> {
    let Some(ds) = &rs.spec.data_source else {
        return err("spec.dataSource", "dataSource can not be empty");
    };
    let repo_empty = ds.repository.as_deref().unwrap_or("").is_empty();
    if let Some(pitr) = &ds.pitr {
        if pitr.target_time.is_none() {
            return err(
                "spec.dataSource.pitr.targetTime",
                "targetTime can not be empty for point-in-time recovery",
            );
        }
        if repo_empty {
            return err(
                "spec.dataSource.repository",
                "repository can not be empty for point-in-time recovery",
            );
        }
    } else {
        let snapshot = ds.snapshot.as_deref().unwrap_or("");
        if snapshot.is_empty() {
            return err("spec.dataSource.snapshot", "snapshot can not be empty");
        }
        if snapshot == crate::constants::SNAPSHOT_LATEST && repo_empty {
            return err(
                "spec.dataSource.repository",
                "repository can not be empty when snapshot is \"latest\"",
            );
        }
    }
    let ns = ns_of(rs);
    if let Some(t) = &rs.spec.target {
        crate::tenancy::restore_target(&ns, t, "spec.target")?;
    }
    crate::tenancy::restore_source(rs, ctx)?;
    if let Some(h) = &rs.spec.hooks {
        check_hooks(&h.pre_restore, "spec.hooks.preRestore", &ns, ctx)?;
        check_hooks(&h.post_restore, "spec.hooks.postRestore", &ns, ctx)?;
    }
    Ok(())
}

/// Validating webhook of BackupSession on update: the spec is immutable.
pub fn validate_backup_session_update(
    old: &BackupSession,
    new: &BackupSession,
) -> Result<(), AdmissionError> {
    if old.spec != new.spec {
        return err("spec", "spec can not be updated");
    }
    Ok(())
}

/// Validating webhook of Repository on update: `spec.path` is immutable.
pub fn validate_repository_update(
    old: &Repository,
    new: &Repository,
) -> Result<(), AdmissionError> {
    if old.spec.path != new.spec.path {
        return err("spec.path", "repository path can not be updated");
    }
    Ok(())
}

/// Mutating webhook of HookTemplate: default `usagePolicy` to `from: Same`.
pub fn default_hook_template(ht: &mut HookTemplate) {
    default_usage_policy(&mut ht.spec.usage_policy);
}

/// Validating webhook of HookTemplate: a Function executor needs `function`; a Pod executor
/// needs `pod.selector` whose every comma item contains `=`; non-Function executors need
/// `action`.
pub fn validate_hook_template(ht: &HookTemplate) -> Result<(), AdmissionError> {
    validate_usage_policy(ht.spec.usage_policy.as_ref(), "spec.usagePolicy")?;
    let Some(ex) = &ht.spec.executor else {
        return err("spec.executor", "executor can not be empty");
    };
    match ex.type_ {
        Some(HookExecutorType::Function) if ex.function.is_none() => {
            return err(
                "spec.executor.function",
                "function can not be empty for Function executor",
            );
        }
        Some(HookExecutorType::Pod) => {
            let sel = ex
                .pod
                .as_ref()
                .and_then(|p| p.selector.as_deref())
                .unwrap_or("");
            if sel.is_empty() {
                return err(
                    "spec.executor.pod.selector",
                    "pod selector can not be empty for Pod executor",
                );
            }
            if let Some(bad) = sel.split(',').find(|item| !item.contains('=')) {
                return err(
                    "spec.executor.pod.selector",
                    format!("invalid selector item {bad:?}: expected key=value"),
                );
            }
        }
        _ => {}
    }
    if ex.type_ != Some(HookExecutorType::Function) && ht.spec.action.is_none() {
        return err(
            "spec.action",
            "action can not be empty for non-Function executor",
        );
    }
    Ok(())
}

/// Validates the kstash extension `Function.spec.module`: `location` is a file path, an
/// `https://` URL or `builtin:<name>`; `sha256` is 64 lowercase hex digits.
pub fn validate_function(f: &Function) -> Result<(), AdmissionError> {
    let Some(m) = &f.spec.module else {
        return Ok(());
    };
    let loc = m.location.as_str();
    if loc.is_empty() {
        return err("spec.module.location", "location can not be empty");
    }
    if let Some(name) = loc.strip_prefix("builtin:") {
        if name.is_empty() {
            return err("spec.module.location", "builtin: needs a module name");
        }
    } else if loc.contains("://") && !loc.starts_with("https://") {
        return err(
            "spec.module.location",
            format!("{loc:?}: only file paths, https:// URLs and builtin:<name> are allowed"),
        );
    }
    if m.sha256.len() != 64
        || !m
            .sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return err(
            "spec.module.sha256",
            "sha256 must be 64 lowercase hex digits",
        );
    }
    Ok(())
}
