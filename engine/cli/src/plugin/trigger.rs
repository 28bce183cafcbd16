//! `kstash trigger <backupconfiguration> [--session a,b]`: creates one BackupSession per
//! (selected) session, as KubeStash's scheduler and `kubectl kubestash trigger` do (spec §4, §10):
//! name from the generator, owner reference (controller) to the BackupConfiguration, offshoot
//! labels, finalizer, invoker, session, `retryLeft: 0`, `backupTimeout` from the session.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use clap::Args;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kstash_api::constants::{labels, FINALIZER_CLEANUP, GROUP_CORE, VERSION};
use kstash_api::core::{BackupConfiguration, BackupSession, BackupSessionSpec};
use kstash_api::names;
use kstash_api::shared::TypedLocalObjectReference;
use kube::api::PostParams;

use super::cluster::{get, KubeArgs};

/// Kind of the invoker.
const KIND: &str = "BackupConfiguration";

/// Arguments of `trigger`.
#[derive(Args)]
pub struct TriggerArgs {
    /// BackupConfiguration name.
    pub name: String,
    /// Sessions to trigger (comma-separated; default: every session).
    #[arg(long = "session", visible_alias = "sessions", value_delimiter = ',')]
    pub sessions: Vec<String>,
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// The BackupSessions `trigger` creates for `bc` at `now_unix` (pure).
///
/// `selected` empty means every session; an unknown name is an error naming the
/// BackupConfiguration and its sessions.
pub fn backup_sessions(
    bc: &BackupConfiguration,
    selected: &[String],
    now_unix: i64,
) -> Result<Vec<BackupSession>> {
    let name = bc.metadata.name.as_deref().unwrap_or_default();
    let ns = bc.metadata.namespace.as_deref().unwrap_or_default();
    let uid = bc
        .metadata
        .uid
        .as_deref()
        .with_context(|| format!("backupconfiguration {ns}/{name} has no metadata.uid"))?;
    let all: Vec<&str> = bc
        .spec
        .sessions
        .iter()
        .map(|s| s.config.name.as_str())
        .collect();
    if all.is_empty() {
        bail!("backupconfiguration {ns}/{name} has no sessions (spec.sessions is empty)");
    }
    for s in selected {
        if !all.contains(&s.as_str()) {
            bail!(
                "backupconfiguration {ns}/{name} has no session {s:?} (its sessions: {})",
                all.join(", ")
            );
        }
    }
    Ok(bc
        .spec
        .sessions
        .iter()
        .filter(|s| selected.is_empty() || selected.contains(&s.config.name))
        .map(|s| {
            let session = &s.config.name;
            BackupSession {
                metadata: ObjectMeta {
                    name: Some(names::backup_session_name(name, session, now_unix)),
                    namespace: Some(ns.to_string()),
                    labels: Some(BTreeMap::from([
                        (labels::MANAGED_BY.into(), labels::MANAGED_BY_VALUE.into()),
                        (labels::INVOKER_NAME.into(), names::label_value(name)),
                        (labels::INVOKER_NAMESPACE.into(), ns.to_string()),
                        (labels::SESSION_NAME.into(), names::label_value(session)),
                    ])),
                    owner_references: Some(vec![OwnerReference {
                        api_version: format!("{GROUP_CORE}/{VERSION}"),
                        kind: KIND.into(),
                        name: name.to_string(),
                        uid: uid.to_string(),
                        controller: Some(true),
                        block_owner_deletion: Some(true),
                    }]),
                    finalizers: Some(vec![FINALIZER_CLEANUP.into()]),
                    ..Default::default()
                },
                spec: BackupSessionSpec {
                    invoker: Some(TypedLocalObjectReference {
                        api_group: Some(GROUP_CORE.into()),
                        kind: KIND.into(),
                        name: name.to_string(),
                    }),
                    session: Some(session.clone()),
                    retry_left: Some(0),
                    backup_timeout: s.config.backup_timeout.clone(),
                },
                status: None,
            }
        })
        .collect())
}

/// Runs `trigger`.
pub async fn run(args: TriggerArgs) -> Result<()> {
    let cluster = args.kube.connect().await?;
    let ns = cluster.namespace.clone();
    let bc: BackupConfiguration =
        get(&cluster.api(&ns), "backupconfiguration", &ns, &args.name).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("system clock is before 1970")?
        .as_secs() as i64;
    let sessions = backup_sessions(&bc, &args.sessions, now)?;
    if bc.spec.paused == Some(true) {
        eprintln!(
            "warning: backupconfiguration {ns}/{} is paused; the operator may skip these sessions",
            args.name
        );
    }
    let api = cluster.api::<BackupSession>(&ns);
    for bs in sessions {
        let bs_name = bs.metadata.name.clone().unwrap_or_default();
        api.create(&PostParams::default(), &bs)
            .await
            .with_context(|| format!("creating backupsession {ns}/{bs_name}"))?;
        println!("backupsession.core.kubestash.com/{bs_name} created");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bc() -> BackupConfiguration {
        // The tutorial's generated BackupConfiguration (seed tutorial), trimmed to what matters.
        serde_json::from_value(serde_json::json!({
            "apiVersion": "core.kubestash.com/v1alpha1", "kind": "BackupConfiguration",
            "metadata": {"name": "appbinding-es-quickstart", "namespace": "demo",
                         "uid": "1cb6aaf2-b949-4b27-8a29-0d711b88b7e4"},
            "spec": {"sessions": [
                {"name": "frequent-backup", "backupTimeout": "2h",
                 "addon": {"name": "elasticsearch-addon", "tasks": [{"name": "logical-backup"}]}},
                {"name": "weekly", "retryConfig": {"maxRetry": 2}}]}
        }))
        .unwrap()
    }

    #[test]
    fn one_session_per_selected_session() {
        let all = backup_sessions(&bc(), &[], 1726722240).unwrap();
        assert_eq!(all.len(), 2);
        let bs = &all[0];
        // spec §4 example name
        assert_eq!(
            bs.metadata.name.as_deref(),
            Some("appbinding-es-quickstart-frequent-backup-1726722240")
        );
        assert_eq!(
            bs.spec.retry_left,
            Some(0),
            "CLI trigger sets retryLeft 0 (spec §10)"
        );
        assert_eq!(bs.spec.backup_timeout.as_deref(), Some("2h"));
        assert_eq!(all[1].spec.retry_left, Some(0));
        let only = backup_sessions(&bc(), &["weekly".into()], 1).unwrap();
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].spec.session.as_deref(), Some("weekly"));
    }

    #[test]
    fn unknown_session_is_named() {
        let e = backup_sessions(&bc(), &["nightly".into()], 1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "backupconfiguration demo/appbinding-es-quickstart has no session \"nightly\" \
             (its sessions: frequent-backup, weekly)"
        );
    }
}
