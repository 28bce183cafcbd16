//! Scale-out: three `kstash operator` processes with leader election on one embedded control
//! plane share the BackupSessions through their per-session claim Leases. Ten
//! BackupConfigurations back up a slowed-down Elasticsearch emulator into moto in three waves;
//! one replica is killed with SIGKILL in the middle of the second wave. Every session must run
//! exactly once (one restic snapshot per Succeeded session, each session annotated with the one
//! replica that ran it), at least two replicas must have run sessions, the killed replica's
//! sessions must end terminal soon after its claims expire, no restic lock may be left and the
//! real `restic check` must pass on every repository.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kstash_api::constants::annotations::EXECUTED_BY;
use kstash_api::core::BackupSession;
use kstash_testkit::builders::{backup_session, shipped_addon_yaml, tutorial_backup_storage};
use kstash_testkit::cluster::TestCluster;
use kstash_testkit::es::{es_database, es_emulator, slow};
use kstash_testkit::{module_file, module_sha256, wait_for, ChildGuard, Moto, Restic};
use kube::api::{ListParams, PostParams};
use kube::ResourceExt;

const NS: &str = "demo";
const RESTIC_PW: &str = "changeit";
const ES_PW: &str = "es-replicas-password";
const CONFIGS: usize = 10;
const WAVES: usize = 3;
/// The claim Lease duration the replicas run with (seconds).
const LEASE_SECS: u64 = 6;
const TIMEOUT: Duration = Duration::from_secs(300);

/// One `kstash operator` process with leader election (and so session claims).
fn replica(cluster: &TestCluster, data: &Path, identity: &str) -> ChildGuard {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kstash"));
    cmd.arg("operator")
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .arg("--module-dir")
        .arg(module_file().parent().unwrap())
        .arg("--data-dir")
        .arg(data.join(identity))
        .args([
            "--identity",
            identity,
            "--metrics-addr",
            "off",
            "--leader-elect",
            "--leader-elect-namespace",
            "default",
            "--leader-elect-lease-duration",
            &LEASE_SECS.to_string(),
            "--leader-elect-renew-deadline",
            "4",
            "--leader-elect-retry-period",
            "0.5",
            "--max-sessions",
            "4",
            "--shutdown-grace",
            "5",
        ])
        .env("RUST_LOG", "warn");
    ChildGuard::spawn(identity, &mut cmd)
}

fn backup_configuration(i: usize) -> String {
    format!(
        r#"apiVersion: core.kubestash.com/v1alpha1
kind: BackupConfiguration
metadata:
  name: bc-{i}
  namespace: {NS}
spec:
  target: {{apiGroup: appcatalog.appscode.com, kind: AppBinding, name: es-{i}, namespace: {NS}}}
  backends:
  - name: s3-backend
    storageRef: {{name: s3-storage, namespace: {NS}}}
    retentionPolicy: {{name: demo-retention, namespace: {NS}}}
  sessions:
  - name: frequent-backup
    sessionHistoryLimit: 10
    scheduler:
      schedule: "0 0 1 1 *"
    repositories:
    - name: repo-{i}
      backend: s3-backend
      directory: /es-{i}
      encryptionSecret: {{name: encrypt-secret, namespace: {NS}}}
    addon:
      name: elasticsearch-addon
      tasks:
      - name: logical-backup
"#
    )
}

fn phase(s: &BackupSession) -> String {
    s.status
        .as_ref()
        .and_then(|st| st.phase)
        .map(|p| format!("{p:?}"))
        .unwrap_or_default()
}

fn terminal(s: &BackupSession) -> bool {
    matches!(phase(s).as_str(), "Succeeded" | "Failed" | "Skipped")
}

async fn sessions(cluster: &TestCluster) -> Vec<BackupSession> {
    cluster
        .api::<BackupSession>(NS)
        .list(&ListParams::default())
        .await
        .expect("list BackupSessions")
        .items
}

fn restic_of(moto: &Moto, i: usize, cache: &Path) -> Restic {
    let location = format!(
        "s3:{}/esbackup/elastic/es-{i}/repository/v1/frequent-backup/dump",
        moto.endpoint()
    );
    Restic::new(location, RESTIC_PW, moto.restic_env()).with_cache(cache)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_share_the_sessions_and_a_killed_one_loses_none() {
    let cluster = TestCluster::start().await;
    let moto = Moto::start();
    moto.create_bucket("esbackup");
    cluster.create_namespace(NS).await;
    cluster.create_s3_secret(NS, "s3-secret").await;
    cluster
        .create_secret(NS, "encrypt-secret", &[("RESTIC_PASSWORD", RESTIC_PW)])
        .await;
    cluster.apply_yaml(&tutorial_backup_storage(&moto.endpoint(), "esbackup"));
    cluster.apply_yaml(&kstash_testkit::tutorial_yaml("retentionpolicy.yaml"));
    cluster.apply_yaml(&shipped_addon_yaml(
        "elasticsearch-addon",
        "elasticsearch",
        &module_sha256(),
    ));
    // Every search answered 300 ms late: each backup runs for a few seconds.
    let emu = es_emulator(ES_PW, 1200, 4 << 10, 7, Some(slow(300, 7))).await;
    for i in 0..CONFIGS {
        es_database(&cluster, NS, &format!("es-{i}"), &emu, ES_PW, false).await;
        cluster.apply_yaml(&backup_configuration(i));
    }

    let data = cluster.dir.path().join("replicas");
    let ids = ["op-a", "op-b", "op-c"];
    let mut replicas: BTreeMap<&str, ChildGuard> = ids
        .iter()
        .map(|id| (*id, replica(&cluster, &data, id)))
        .collect();
    wait_for("every BackupConfiguration Ready", TIMEOUT, || async {
        let api = cluster.api::<kstash_api::core::BackupConfiguration>(NS);
        let bcs = api.list(&ListParams::default()).await.ok()?.items;
        (bcs.len() == CONFIGS
            && bcs.iter().all(|b| {
                b.status.as_ref().and_then(|s| s.phase)
                    == Some(kstash_api::core::BackupInvokerPhase::Ready)
            }))
        .then_some(())
    })
    .await;

    let api = cluster.api::<BackupSession>(NS);
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut killed: Option<(String, Vec<String>, Duration)> = None;
    for wave in 0..WAVES {
        // Wave 0 is each configuration's initial backup (created when it turns Ready); the
        // others are triggered here, as `kubectl kstash trigger` would.
        let names: Vec<String> = match wave {
            0 => {
                wait_for("every initial backup", TIMEOUT, || async {
                    let all = sessions(&cluster).await;
                    (all.len() >= CONFIGS).then(|| all.iter().map(|s| s.name_any()).collect())
                })
                .await
            }
            _ => {
                let mut names = Vec::new();
                for i in 0..CONFIGS {
                    let unix = base + 100 * wave as i64;
                    let bs = backup_session(NS, &format!("bc-{i}"), "frequent-backup", unix);
                    names.push(bs.name_any());
                    api.create(&PostParams::default(), &bs)
                        .await
                        .expect("create BackupSession");
                }
                names
            }
        };
        if wave == 1 {
            // Kill -9 a replica while it runs a session of this wave.
            let victim = wait_for("a session Running in a replica", TIMEOUT, || async {
                let all = sessions(&cluster).await;
                all.iter()
                    .filter(|s| names.contains(&s.name_any()) && phase(s) == "Running")
                    .find_map(|s| s.annotations().get(EXECUTED_BY).cloned())
            })
            .await;
            let guard = replicas
                .remove(victim.as_str())
                .expect("the victim is a replica");
            guard.signal("-KILL");
            drop(guard);
            // What it was running when it died (read after the kill: nothing it owns changes
            // any more, and no other replica may take its claims before they expire).
            let running: Vec<String> = sessions(&cluster)
                .await
                .iter()
                .filter(|s| {
                    phase(s) == "Running" && s.annotations().get(EXECUTED_BY) == Some(&victim)
                })
                .map(|s| s.name_any())
                .collect();
            assert!(!running.is_empty(), "{victim} was running a session");
            let at = Instant::now();
            // Its sessions end once another replica sees their claims expire (the wait's bound
            // is generous; the figure is printed below).
            let bound = Duration::from_secs(LEASE_SECS + 60);
            wait_for("the killed replica's sessions to end", bound, || async {
                let all = sessions(&cluster).await;
                running
                    .iter()
                    .all(|n| all.iter().any(|s| &s.name_any() == n && terminal(s)))
                    .then_some(())
            })
            .await;
            killed = Some((victim, running, at.elapsed()));
        }
        wait_for(&format!("wave {wave} to end"), TIMEOUT, || async {
            let all = sessions(&cluster).await;
            let ended = names
                .iter()
                .all(|n| all.iter().any(|s| &s.name_any() == n && terminal(s)));
            ended.then_some(())
        })
        .await;
    }
    let (victim, interrupted, kill_to_terminal) = killed.expect("a replica was killed");

    // Every session ended; who ran what.
    let all = sessions(&cluster).await;
    let ours: Vec<&BackupSession> = all
        .iter()
        .filter(|s| {
            s.spec
                .invoker
                .as_ref()
                .is_some_and(|i| i.name.starts_with("bc-"))
        })
        .collect();
    let mut per_replica: BTreeMap<String, usize> = BTreeMap::new();
    let mut succeeded_per_bc: BTreeMap<String, usize> = BTreeMap::new();
    for s in &ours {
        let by = s
            .annotations()
            .get(EXECUTED_BY)
            .cloned()
            .unwrap_or_else(|| panic!("{} says which replica ran it", s.name_any()));
        *per_replica.entry(by).or_default() += 1;
        let p = phase(s);
        if interrupted.contains(&s.name_any()) {
            assert!(
                matches!(p.as_str(), "Failed" | "Succeeded"),
                "the killed replica's session {} ends terminal: {p} {:?}",
                s.name_any(),
                s.status
            );
        } else if p != "Succeeded" {
            // A retry or a next session can only follow the interrupted ones.
            panic!("{} is {p}: {:?}", s.name_any(), s.status);
        }
        if p == "Succeeded" {
            let bc = s.spec.invoker.as_ref().unwrap().name.clone();
            *succeeded_per_bc.entry(bc).or_default() += 1;
        }
    }
    assert!(
        ours.len() >= CONFIGS * WAVES,
        "at least {} sessions, got {}",
        CONFIGS * WAVES,
        ours.len()
    );
    let ran = per_replica.values().filter(|n| **n > 0).count();
    assert!(
        ran >= 2,
        "at least two replicas ran sessions: {per_replica:?}"
    );

    // Exactly once: one restic snapshot per Succeeded session, no lock left, restic check.
    let cache = cluster.dir.path().join("restic-cache");
    for i in 0..CONFIGS {
        let bc = format!("bc-{i}");
        let restic = restic_of(&moto, i, &cache);
        let snaps = restic.snapshots();
        assert_eq!(
            snaps.len(),
            succeeded_per_bc.get(&bc).copied().unwrap_or(0),
            "{bc}: one restic snapshot per Succeeded session"
        );
        let locks = moto.keys(
            "esbackup",
            &format!("elastic/es-{i}/repository/v1/frequent-backup/dump/locks/"),
        );
        assert!(locks.is_empty(), "{bc}: locks left: {locks:?}");
        restic.ok(&["check"]);
    }
    println!(
        "scale-out: {} sessions on {CONFIGS} BackupConfigurations; sessions per replica \
         {per_replica:?}; {victim} killed with {} Running ({interrupted:?}); they ended \
         terminal {:.1} s after the kill (claim Lease {LEASE_SECS} s)",
        ours.len(),
        interrupted.len(),
        kill_to_terminal.as_secs_f64()
    );
    drop(replicas);
}
