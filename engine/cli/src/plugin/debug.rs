//! `kstash debug backup|restore|repository|backupstorage <name>`: what an operator needs to find
//! out why something does not work — the object's phase and conditions, the related
//! BackupSessions / Repositories / Snapshots, and the recent Events (spec §10 `debug`).

use std::fmt::Write as _;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use k8s_openapi::api::core::v1::Event;
use kstash_api::constants::labels;
use kstash_api::core::{BackupConfiguration, BackupSession, RestoreSession};
use kstash_api::names;
use kstash_api::storage::{BackupStorage, Repository, Snapshot};
use kube::api::ListParams;
use serde_json::Value;

use super::cluster::{get, Cluster, KubeArgs};

/// Arguments of `debug`.
#[derive(Args)]
pub struct DebugArgs {
    #[command(subcommand)]
    pub target: DebugTarget,
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// What to debug.
#[derive(Subcommand)]
pub enum DebugTarget {
    /// A BackupConfiguration, its sessions, repositories, snapshots and events.
    Backup {
        /// BackupConfiguration name.
        name: String,
    },
    /// A RestoreSession and its events.
    Restore {
        /// RestoreSession name.
        name: String,
    },
    /// A Repository, its snapshots and events.
    #[command(visible_alias = "repo")]
    Repository {
        /// Repository name.
        name: String,
    },
    /// A BackupStorage, its repositories and events.
    Backupstorage {
        /// BackupStorage name.
        name: String,
    },
}

/// How many BackupSessions/Snapshots/Events to show.
const RECENT: usize = 10;

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_str().unwrap_or("-")
}

fn display(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Appends a conditions table; conditions that are not healthy are marked with `!`.
fn conditions(out: &mut String, indent: &str, conds: &Value) {
    let Some(list) = conds.as_array().filter(|l| !l.is_empty()) else {
        let _ = writeln!(out, "{indent}Conditions: none");
        return;
    };
    let _ = writeln!(out, "{indent}Conditions:");
    for c in list {
        let ty = s(c, &["type"]);
        let status = s(c, &["status"]);
        // Condition types whose True is a problem (KubeStash's negative conditions).
        let negative = matches!(
            ty,
            "BackupSkipped"
                | "SnapshotCleanupIncomplete"
                | "BackupIncomplete"
                | "RestoreIncomplete"
                | "PodHasBeenInPendingStateForLongerThanExpected"
        );
        let bad = (status == "False") ^ (negative && status == "True");
        let _ = writeln!(
            out,
            "{indent}  {} {ty}={status} reason={} message={:?} at {}",
            if bad { "!" } else { " " },
            s(c, &["reason"]),
            c["message"].as_str().unwrap_or(""),
            s(c, &["lastTransitionTime"]),
        );
    }
}

/// Events whose involved object is `name` (and `kind` when given), oldest first, last N.
async fn events(cluster: &Cluster, ns: &str, kind: &str, name: &str) -> Result<Vec<Event>> {
    let lp = ListParams::default().fields(&format!("involvedObject.name={name}"));
    let mut list: Vec<Event> = cluster
        .api::<Event>(ns)
        .list(&lp)
        .await
        .with_context(|| format!("listing events of {kind} {ns}/{name}"))?
        .items
        .into_iter()
        .filter(|e| e.involved_object.kind.as_deref().is_none_or(|k| k == kind))
        .collect();
    let when = |e: &Event| {
        serde_json::to_value(e)
            .ok()
            .map(|v| {
                for k in ["lastTimestamp", "eventTime", "firstTimestamp"] {
                    if let Some(t) = v[k].as_str() {
                        return t.to_string();
                    }
                }
                v["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .unwrap_or_default()
    };
    list.sort_by_key(when);
    let skip = list.len().saturating_sub(RECENT);
    Ok(list.into_iter().skip(skip).collect())
}

fn print_events(out: &mut String, kind: &str, name: &str, evs: &[Event]) {
    if evs.is_empty() {
        let _ = writeln!(out, "Events of {kind} {name}: none");
        return;
    }
    let _ = writeln!(out, "Events of {kind} {name}:");
    for e in evs {
        let v = serde_json::to_value(e).unwrap_or_default();
        let at = ["lastTimestamp", "eventTime", "firstTimestamp"]
            .iter()
            .find_map(|k| v[*k].as_str())
            .unwrap_or("-");
        let _ = writeln!(
            out,
            "  {at} {:<8} {:<32} {}",
            e.type_.as_deref().unwrap_or("-"),
            e.reason.as_deref().unwrap_or("-"),
            e.message.as_deref().unwrap_or("").trim()
        );
    }
}

fn header(out: &mut String, kind: &str, ns: &str, name: &str, status: &Value) {
    let _ = writeln!(out, "{kind} {ns}/{name}");
    let _ = writeln!(out, "  Phase: {}", display(&status["phase"]));
}

/// Appends the newest Snapshots of Repository `repo` (by the `kubestash.com/repo-name` label).
async fn snapshots(out: &mut String, cluster: &Cluster, ns: &str, repo: &str) -> Result<()> {
    let lp = ListParams::default().labels(&format!(
        "{}={}",
        labels::REPO_NAME,
        names::label_value(repo)
    ));
    let mut list = cluster
        .api::<Snapshot>(ns)
        .list(&lp)
        .await
        .with_context(|| format!("listing snapshots of repository {ns}/{repo}"))?
        .items;
    list.sort_by_key(|s| s.metadata.name.clone());
    let _ = writeln!(out, "  Snapshots ({} in total, newest last):", list.len());
    let skip = list.len().saturating_sub(RECENT);
    for snap in list.iter().skip(skip) {
        let v = serde_json::to_value(snap)?;
        let st = &v["status"];
        let _ = writeln!(
            out,
            "    {} phase={} time={} size={} integrity={}",
            s(&v, &["metadata", "name"]),
            display(&st["phase"]),
            display(&st["snapshotTime"]),
            display(&st["size"]),
            display(&st["integrity"]),
        );
        if let Some(comps) = st["components"].as_object() {
            for (c, cv) in comps {
                if cv["phase"] != "Succeeded" || cv.get("error").is_some() {
                    let _ = writeln!(
                        out,
                        "      ! component {c}: phase={} error={}",
                        display(&cv["phase"]),
                        display(&cv["error"])
                    );
                }
            }
        }
        if st["phase"] == "Failed" {
            conditions(out, "      ", &st["conditions"]);
        }
    }
    Ok(())
}

async fn debug_backup(cluster: &Cluster, ns: &str, name: &str) -> Result<String> {
    let mut out = String::new();
    let bc: BackupConfiguration = get(&cluster.api(ns), "backupconfiguration", ns, name).await?;
    let v = serde_json::to_value(&bc)?;
    header(&mut out, "BackupConfiguration", ns, name, &v["status"]);
    let _ = writeln!(out, "  Paused: {}", bc.spec.paused.unwrap_or(false));
    let _ = writeln!(
        out,
        "  Target found: {}",
        display(&v["status"]["targetFound"])
    );
    conditions(&mut out, "  ", &v["status"]["conditions"]);
    for b in v["status"]["backends"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  Backend {}: ready={} storage phase={} retention policy found={}",
            s(b, &["name"]),
            display(&b["ready"]),
            display(&b["storage"]["phase"]),
            display(&b["retentionPolicy"]["found"])
        );
    }
    for sess in v["status"]["sessions"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "  Session {}:", s(sess, &["name"]));
        conditions(&mut out, "    ", &sess["conditions"]);
    }

    let lp = ListParams::default().labels(&format!(
        "{}={}",
        labels::INVOKER_NAME,
        names::label_value(name)
    ));
    let mut sessions: Vec<BackupSession> = cluster
        .api::<BackupSession>(ns)
        .list(&lp)
        .await
        .with_context(|| format!("listing backupsessions of backupconfiguration {ns}/{name}"))?
        .items
        .into_iter()
        .filter(|b| b.spec.invoker.as_ref().is_some_and(|i| i.name == name))
        .collect();
    sessions.sort_by_key(|b| b.metadata.name.clone());
    let _ = writeln!(
        out,
        "BackupSessions ({} in total, newest last):",
        sessions.len()
    );
    let skip = sessions.len().saturating_sub(RECENT);
    for b in sessions.iter().skip(skip) {
        let bv = serde_json::to_value(b)?;
        let st = &bv["status"];
        let _ = writeln!(
            out,
            "  {} session={} phase={} duration={} retryLeft={}",
            s(&bv, &["metadata", "name"]),
            s(&bv, &["spec", "session"]),
            display(&st["phase"]),
            display(&st["duration"]),
            display(&bv["spec"]["retryLeft"]),
        );
        if st["phase"] != "Succeeded" {
            if let Some(summary) = b
                .status
                .as_ref()
                .and_then(kstash_api::phase::backup_session_summary)
            {
                let _ = writeln!(out, "    summary: {summary}");
            }
            conditions(&mut out, "    ", &st["conditions"]);
        }
    }

    let mut repos: Vec<String> = bc
        .spec
        .sessions
        .iter()
        .flat_map(|s| s.repositories.iter().map(|r| r.name.clone()))
        .collect();
    repos.sort();
    repos.dedup();
    for r in &repos {
        match cluster.api::<Repository>(ns).get_opt(r).await? {
            None => {
                let _ = writeln!(out, "Repository {ns}/{r}: ! not found");
            }
            Some(repo) => {
                let rv = serde_json::to_value(&repo)?;
                let st = &rv["status"];
                let _ = writeln!(
                    out,
                    "Repository {ns}/{r}: phase={} snapshots={} size={} integrity={} last backup={}",
                    display(&st["phase"]),
                    display(&st["snapshotCount"]),
                    display(&st["size"]),
                    display(&st["integrity"]),
                    display(&st["lastBackupTime"]),
                );
                snapshots(&mut out, cluster, ns, r).await?;
            }
        }
    }
    let evs = events(cluster, ns, "BackupConfiguration", name).await?;
    print_events(&mut out, "backupconfiguration", name, &evs);
    if let Some(last) = sessions.last().and_then(|b| b.metadata.name.clone()) {
        let evs = events(cluster, ns, "BackupSession", &last).await?;
        print_events(&mut out, "backupsession", &last, &evs);
    }
    Ok(out)
}

async fn debug_restore(cluster: &Cluster, ns: &str, name: &str) -> Result<String> {
    let mut out = String::new();
    let rs: RestoreSession = get(&cluster.api(ns), "restoresession", ns, name).await?;
    let v = serde_json::to_value(&rs)?;
    header(&mut out, "RestoreSession", ns, name, &v["status"]);
    let _ = writeln!(
        out,
        "  Data source: repository={} snapshot={}",
        s(&v, &["spec", "dataSource", "repository"]),
        s(&v, &["spec", "dataSource", "snapshot"])
    );
    let _ = writeln!(out, "  Duration: {}", display(&v["status"]["duration"]));
    conditions(&mut out, "  ", &v["status"]["conditions"]);
    if let Some(comps) = v["status"]["components"].as_object() {
        for (c, cv) in comps {
            let _ = writeln!(
                out,
                "  Component {c}: phase={} duration={} error={}",
                display(&cv["phase"]),
                display(&cv["duration"]),
                display(&cv["error"])
            );
        }
    }
    let evs = events(cluster, ns, "RestoreSession", name).await?;
    print_events(&mut out, "restoresession", name, &evs);
    Ok(out)
}

async fn debug_repository(cluster: &Cluster, ns: &str, name: &str) -> Result<String> {
    let mut out = String::new();
    let repo: Repository = get(&cluster.api(ns), "repository", ns, name).await?;
    let v = serde_json::to_value(&repo)?;
    header(&mut out, "Repository", ns, name, &v["status"]);
    let _ = writeln!(
        out,
        "  Storage: {}/{} path={}",
        v["spec"]["storageRef"]["namespace"].as_str().unwrap_or(ns),
        s(&v, &["spec", "storageRef", "name"]),
        s(&v, &["spec", "path"])
    );
    let st = &v["status"];
    let _ = writeln!(
        out,
        "  Snapshots: {}  Size: {}  Integrity: {}  Last backup: {}",
        display(&st["snapshotCount"]),
        display(&st["size"]),
        display(&st["integrity"]),
        display(&st["lastBackupTime"])
    );
    let paths: Vec<String> = repo
        .status
        .as_ref()
        .map(|s| s.component_paths.clone())
        .unwrap_or_default();
    let _ = writeln!(out, "  Component paths: {}", paths.join(", "));
    conditions(&mut out, "  ", &st["conditions"]);
    snapshots(&mut out, cluster, ns, name).await?;
    let evs = events(cluster, ns, "Repository", name).await?;
    print_events(&mut out, "repository", name, &evs);
    Ok(out)
}

async fn debug_backup_storage(cluster: &Cluster, ns: &str, name: &str) -> Result<String> {
    let mut out = String::new();
    let bs: BackupStorage = get(&cluster.api(ns), "backupstorage", ns, name).await?;
    let v = serde_json::to_value(&bs)?;
    header(&mut out, "BackupStorage", ns, name, &v["status"]);
    let _ = writeln!(
        out,
        "  Provider: {}  Default: {}  Deletion policy: {}  Total size: {}",
        s(&v, &["spec", "storage", "provider"]),
        display(&v["spec"]["default"]),
        display(&v["spec"]["deletionPolicy"]),
        display(&v["status"]["totalSize"])
    );
    conditions(&mut out, "  ", &v["status"]["conditions"]);
    for r in v["status"]["repositories"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  Repository {}/{} path={} size={} synced={} error={}",
            s(r, &["namespace"]),
            s(r, &["name"]),
            s(r, &["path"]),
            display(&r["size"]),
            display(&r["synced"]),
            display(&r["error"])
        );
    }
    let evs = events(cluster, ns, "BackupStorage", name).await?;
    print_events(&mut out, "backupstorage", name, &evs);
    Ok(out)
}

/// Runs `debug`.
pub async fn run(args: DebugArgs) -> Result<()> {
    let cluster = args.kube.connect().await?;
    let ns = cluster.namespace.clone();
    let out = match &args.target {
        DebugTarget::Backup { name } => debug_backup(&cluster, &ns, name).await?,
        DebugTarget::Restore { name } => debug_restore(&cluster, &ns, name).await?,
        DebugTarget::Repository { name } => debug_repository(&cluster, &ns, name).await?,
        DebugTarget::Backupstorage { name } => debug_backup_storage(&cluster, &ns, name).await?,
    };
    print!("{out}");
    Ok(())
}
