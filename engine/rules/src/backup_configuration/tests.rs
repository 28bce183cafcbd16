//! Expected values come from the tutorial's `kubectl get backupconfiguration -oyaml` output
//! (tutorial-bc.yaml, verbatim) and spec §3.2/§4; times are the tutorial's (BC created at
//! 2024-09-19T04:49:38Z, scheduler and initial backup at 04:49:48Z).

use super::*;
use kstash_api::core::{BackupInvokerPhase, RetryConfig};
use kstash_api::storage::RepositoryStatus;

const TUTORIAL: &str = include_str!("tutorial-bc.yaml");

use kstash_testkit::ts;

/// The tutorial's object as the engine sees it on first reconcile: spec and metadata, no
/// status, plus the uid/creationTimestamp the API server set.
fn tutorial_bc() -> BackupConfiguration {
    let mut bc: BackupConfiguration = serde_yaml::from_str(TUTORIAL).unwrap();
    bc.status = None;
    bc
}

fn tutorial_status() -> BackupConfigurationStatus {
    let bc: BackupConfiguration = serde_yaml::from_str(TUTORIAL).unwrap();
    bc.status.unwrap()
}

struct World {
    validation: Option<AdmissionError>,
    target_found: bool,
    backends: BTreeMap<String, BackendObservation>,
    addons: BTreeSet<String>,
    repositories: Vec<Repository>,
    sessions: Vec<BackupSession>,
}

impl World {
    fn tutorial() -> World {
        World {
            validation: None,
            target_found: true,
            backends: BTreeMap::from([(
                "s3-backend".to_string(),
                BackendObservation {
                    storage_phase: Some(BackupStoragePhase::Ready),
                    retention_policy_found: true,
                },
            )]),
            addons: BTreeSet::from(["elasticsearch-addon".to_string()]),
            repositories: vec![],
            sessions: vec![],
        }
    }

    fn plan(&self, bc: &BackupConfiguration, now: &str) -> Plan {
        plan(
            bc,
            &Observed {
                validation_error: self.validation.as_ref(),
                target_found: self.target_found,
                backends: &self.backends,
                addons: &self.addons,
                repositories: &self.repositories,
                backup_sessions: &self.sessions,
                now: ts(now),
            },
        )
        .unwrap()
    }

    /// Applies a plan's writes as the API server would (repositories created, sessions created).
    fn apply(&mut self, bc: &mut BackupConfiguration, plan: &Plan) {
        for change in &plan.repositories {
            match change {
                RepositoryChange::Create(r) => self.repositories.push(r.clone()),
                RepositoryChange::Update(r) => {
                    let cur = self
                        .repositories
                        .iter_mut()
                        .find(|x| x.metadata.name == r.metadata.name)
                        .unwrap();
                    cur.spec = r.spec.clone();
                }
            }
        }
        self.sessions.extend(plan.backup_sessions.iter().cloned());
        bc.status = Some(plan.status.clone());
    }

    fn initialise_repositories(&mut self) {
        for r in &mut self.repositories {
            r.status = Some(RepositoryStatus {
                phase: Some(RepositoryPhase::Ready),
                ..Default::default()
            });
        }
    }
}

fn names_of(sessions: &[BackupSession]) -> Vec<String> {
    sessions
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect()
}

#[test]
fn tutorial_flow_reaches_the_tutorial_status() {
    let mut bc = tutorial_bc();
    let mut world = World::tutorial();

    // 04:49:38: the BackupStorage is still initialising.
    world.backends.get_mut("s3-backend").unwrap().storage_phase =
        Some(BackupStoragePhase::NotReady);
    let p1 = world.plan(&bc, "2024-09-19T04:49:38Z");
    assert_eq!(p1.status.phase, Some(BackupInvokerPhase::NotReady));
    assert_eq!(
        p1.status.backends[0]
            .storage
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("BackupStorage demo/s3-storage is not ready")
    );
    assert!(p1.backup_sessions.is_empty());
    assert!(p1.status.sessions[0].conditions.is_empty());
    // The Repository is created right away, from the session's repository entry.
    let RepositoryChange::Create(repo) = &p1.repositories[0] else {
        panic!("expected a create: {:?}", p1.repositories);
    };
    assert_eq!(repo.metadata.name.as_deref(), Some("s3-elasticsearch-repo"));
    assert_eq!(repo.metadata.namespace.as_deref(), Some("demo"));
    assert_eq!(
        repo.spec,
        RepositorySpec {
            app_ref: Some(TypedObjectReference {
                api_group: Some("kubedb.com".into()),
                kind: Some("Elasticsearch".into()),
                namespace: Some("demo".into()),
                name: "es-quickstart".into(),
            }),
            storage_ref: Some(ObjectReference {
                namespace: Some("demo".into()),
                name: "s3-storage".into(),
            }),
            path: Some("/es".into()),
            deletion_policy: None,
            encryption_secret: Some(ObjectReference {
                namespace: Some("demo".into()),
                name: "encrypt-secret".into(),
            }),
            paused: None,
        }
    );
    world.apply(&mut bc, &p1);

    // 04:49:48: storage ready -> scheduler ensured, Ready, initial backup.
    world.backends.get_mut("s3-backend").unwrap().storage_phase = Some(BackupStoragePhase::Ready);
    let p2 = world.plan(&bc, "2024-09-19T04:49:48Z");
    assert_eq!(p2.status.phase, Some(BackupInvokerPhase::Ready));
    assert!(p2.repositories.is_empty(), "{:?}", p2.repositories);
    // 04:49:48Z = 1726721388.
    assert_eq!(
        names_of(&p2.backup_sessions),
        ["appbinding-es-quickstart-frequent-backup-1726721388"]
    );
    assert_eq!(
        p2.status.sessions[0].next_schedule.as_deref(),
        Some("2024-09-19T04:50:00Z")
    );
    world.apply(&mut bc, &p2);

    // 04:49:55: the Repository controller initialised the repository; nothing to do.
    world.initialise_repositories();
    let p3 = world.plan(&bc, "2024-09-19T04:49:55Z");
    assert!(p3.repositories.is_empty());
    assert!(p3.backup_sessions.is_empty());
    let mut want = tutorial_status();
    // The 2024 tutorial predates `nextSchedule`; everything else is verbatim.
    want.sessions[0].next_schedule = Some("2024-09-19T04:50:00Z".into());
    assert_eq!(p3.status, want);
    assert_eq!(p3.requeue_at, Some(ts("2024-09-19T04:50:00Z")));
    world.apply(&mut bc, &p3);

    // 04:50:02: first scheduled run, named after the scheduled minute (04:50:00 = 1726721400).
    let p4 = world.plan(&bc, "2024-09-19T04:50:02Z");
    assert_eq!(
        names_of(&p4.backup_sessions),
        ["appbinding-es-quickstart-frequent-backup-1726721400"]
    );
    assert_eq!(
        p4.schedules,
        [SessionSchedule {
            session: "frequent-backup".into(),
            next_schedule: Some(ts("2024-09-19T04:55:00Z")),
            missed: 0,
        }]
    );
    // The condition times do not move while the statuses stay the same.
    assert_eq!(p4.status.conditions, want.conditions);
    assert_eq!(
        p4.status.sessions[0].conditions,
        want.sessions[0].conditions
    );
    world.apply(&mut bc, &p4);

    // A repeated reconcile in the same minute creates nothing more.
    assert!(world
        .plan(&bc, "2024-09-19T04:50:30Z")
        .backup_sessions
        .is_empty());

    // Engine down until 05:52:10: one catch-up run for 05:50, 11 runs missed.
    let p5 = world.plan(&bc, "2024-09-19T05:52:10Z");
    // 05:50:00Z = 1726725000.
    assert_eq!(
        names_of(&p5.backup_sessions),
        ["appbinding-es-quickstart-frequent-backup-1726725000"]
    );
    assert_eq!(p5.schedules[0].missed, 11);
}

#[test]
fn backup_session_object_follows_spec_section_4() {
    let mut bc = tutorial_bc();
    bc.spec.sessions[0].config.retry_config = Some(RetryConfig {
        max_retry: Some(2),
        delay: Some("30s".into()),
    });
    bc.spec.sessions[0].config.backup_timeout = Some("2h".into());
    let world = World::tutorial();
    let p = world.plan(&bc, "2024-09-19T04:49:48Z");
    let bs = &p.backup_sessions[0];
    let labels = bs.metadata.labels.clone().unwrap();
    assert_eq!(
        labels,
        BTreeMap::from([
            (
                "app.kubernetes.io/managed-by".into(),
                "kubestash.com".into()
            ),
            (
                "kubestash.com/invoker-name".into(),
                "appbinding-es-quickstart".into()
            ),
            ("kubestash.com/invoker-namespace".into(), "demo".into()),
            (
                "kubestash.com/session-name".into(),
                "frequent-backup".into()
            ),
        ])
    );
    assert_eq!(
        bs.metadata.owner_references,
        Some(vec![OwnerReference {
            api_version: "core.kubestash.com/v1alpha1".into(),
            kind: "BackupConfiguration".into(),
            name: "appbinding-es-quickstart".into(),
            uid: "1cb6aaf2-b949-4b27-8a29-0d711b88b7e4".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }])
    );
    assert_eq!(
        bs.metadata.finalizers,
        Some(vec!["kubestash.com/cleanup".into()])
    );
    assert_eq!(
        bs.spec,
        BackupSessionSpec {
            invoker: Some(TypedLocalObjectReference {
                api_group: Some("core.kubestash.com".into()),
                kind: "BackupConfiguration".into(),
                name: "appbinding-es-quickstart".into(),
            }),
            session: Some("frequent-backup".into()),
            retry_left: Some(2),
            backup_timeout: Some("2h".into()),
        }
    );
}

#[test]
fn retry_left_defaults() {
    let world = World::tutorial();
    let mut bc = tutorial_bc();
    // No retryConfig: no retries.
    let p = world.plan(&bc, "2024-09-19T04:49:48Z");
    assert_eq!(p.backup_sessions[0].spec.retry_left, Some(0));
    // retryConfig without maxRetry: the CRD default 1.
    bc.spec.sessions[0].config.retry_config = Some(RetryConfig::default());
    let p = world.plan(&bc, "2024-09-19T04:49:48Z");
    assert_eq!(p.backup_sessions[0].spec.retry_left, Some(1));
}

#[test]
fn invalid_configuration_creates_nothing() {
    let mut world = World::tutorial();
    world.validation = Some(AdmissionError {
        field: "spec.sessions[0].repositories[0].directory".into(),
        reason: "directory can not be empty".into(),
    });
    let p = world.plan(&tutorial_bc(), "2024-09-19T04:49:38Z");
    assert_eq!(p.status.phase, Some(BackupInvokerPhase::Invalid));
    let v = p.status.conditions.find("ValidationPassed").unwrap();
    assert!(v.is_false());
    assert_eq!(v.reason.as_deref(), Some("ResourceValidationFailed"));
    assert_eq!(
        v.message.as_deref(),
        Some("spec.sessions[0].repositories[0].directory: directory can not be empty")
    );
    assert!(p.repositories.is_empty());
    assert!(p.backup_sessions.is_empty());
    assert_eq!(p.requeue_at, None);
}

#[test]
fn missing_prerequisites_keep_it_not_ready() {
    // Target missing.
    let mut world = World::tutorial();
    world.target_found = false;
    let p = world.plan(&tutorial_bc(), "2024-09-19T04:49:48Z");
    assert_eq!(p.status.target_found, Some(false));
    assert_eq!(p.status.phase, Some(BackupInvokerPhase::NotReady));
    assert!(p.backup_sessions.is_empty());

    // Addon missing: reported in dependencies, no scheduler.
    let mut world = World::tutorial();
    world.addons.clear();
    let p = world.plan(&tutorial_bc(), "2024-09-19T04:49:48Z");
    assert_eq!(
        p.status.dependencies,
        [ResourceFoundStatus {
            kind: Some("Addon".into()),
            name: "elasticsearch-addon".into(),
            found: Some(false),
            ..Default::default()
        }]
    );
    assert_eq!(p.status.phase, Some(BackupInvokerPhase::NotReady));
    assert!(p.backup_sessions.is_empty());

    // BackupStorage and RetentionPolicy missing.
    let mut world = World::tutorial();
    world.backends.clear();
    let p = world.plan(&tutorial_bc(), "2024-09-19T04:49:48Z");
    let b = &p.status.backends[0];
    assert_eq!(b.ready, Some(false));
    assert_eq!(
        b.storage.as_ref().unwrap().reason.as_deref(),
        Some("BackupStorage demo/s3-storage not found")
    );
    let rp = b.retention_policy.as_ref().unwrap();
    assert_eq!(rp.found, Some(false));
    assert_eq!(
        rp.reason.as_deref(),
        Some("RetentionPolicy demo/demo-retention not found")
    );
    assert_eq!(p.status.phase, Some(BackupInvokerPhase::NotReady));
}

#[test]
fn bad_cron_is_scheduler_not_ensured() {
    let mut bc = tutorial_bc();
    bc.spec.sessions[0]
        .config
        .scheduler
        .as_mut()
        .unwrap()
        .schedule = "*/5 25 * * *".into();
    let p = World::tutorial().plan(&bc, "2024-09-19T04:49:48Z");
    let c = p.status.sessions[0]
        .conditions
        .find("SchedulerEnsured")
        .unwrap();
    assert!(c.is_false());
    assert_eq!(c.reason.as_deref(), Some("SchedulerNotEnsured"));
    assert_eq!(
        c.message.as_deref(),
        Some("cron hour field: invalid value \"25\": 25 is out of range 0-23")
    );
    assert_eq!(p.status.phase, Some(BackupInvokerPhase::NotReady));
    assert!(p.backup_sessions.is_empty());
}

#[test]
fn paused_is_ready_but_fires_nothing() {
    let mut bc = tutorial_bc();
    bc.spec.paused = Some(true);
    let p = World::tutorial().plan(&bc, "2024-09-19T04:49:48Z");
    assert_eq!(p.status.phase, Some(BackupInvokerPhase::Ready));
    assert!(p.backup_sessions.is_empty());
    assert_eq!(p.status.sessions[0].next_schedule, None);
    assert!(!p.status.sessions[0]
        .conditions
        .has("InitialBackupTriggered"));
}

#[test]
fn existing_session_counts_as_initial_backup() {
    // A session created before (e.g. the status write was lost) is not duplicated.
    let bc = tutorial_bc();
    let mut world = World::tutorial();
    let first = world.plan(&bc, "2024-09-19T04:49:48Z");
    world.sessions = first.backup_sessions.clone();
    let again = world.plan(&bc, "2024-09-19T04:49:50Z");
    assert!(again.backup_sessions.is_empty());
    assert!(again.status.sessions[0]
        .conditions
        .is_true("InitialBackupTriggered"));
}

#[test]
fn repository_updates_and_immutable_path() {
    let bc = tutorial_bc();
    let mut world = World::tutorial();
    let p = world.plan(&bc, "2024-09-19T04:49:38Z");
    world.apply(&mut bc.clone(), &p);
    world.initialise_repositories();

    // A changed encryption secret is updated in place.
    let mut bc2 = bc.clone();
    bc2.spec.sessions[0].repositories[0].encryption_secret = Some(ObjectReference {
        namespace: Some("demo".into()),
        name: "other-secret".into(),
    });
    bc2.spec.sessions[0].repositories[0].deletion_policy = Some(RepositoryDeletionPolicy::WipeOut);
    let p = world.plan(&bc2, "2024-09-19T04:50:38Z");
    let RepositoryChange::Update(r) = &p.repositories[0] else {
        panic!("expected an update: {:?}", p.repositories);
    };
    assert_eq!(
        r.spec.encryption_secret.as_ref().unwrap().name,
        "other-secret"
    );
    assert_eq!(r.spec.deletion_policy, Some(DeletionPolicy::WipeOut));
    assert_eq!(r.spec.path.as_deref(), Some("/es"));

    // A changed directory cannot be applied: reported, not written.
    let mut bc3 = bc.clone();
    bc3.spec.sessions[0].repositories[0].directory = Some("/es2".into());
    let p = world.plan(&bc3, "2024-09-19T04:50:38Z");
    assert!(p.repositories.is_empty());
    assert_eq!(
        p.status.repositories[0],
        RepoStatus {
            name: "s3-elasticsearch-repo".into(),
            phase: Some(RepositoryPhase::NotReady),
            reason: Some(
                "Repository path is immutable: it is \"/es\", the session wants directory \"/es2\""
                    .into()
            ),
            verification_configured: None,
        }
    );
}

#[test]
fn missing_metadata_is_an_error() {
    let mut bc = tutorial_bc();
    bc.metadata.uid = None;
    let world = World::tutorial();
    let err = plan(
        &bc,
        &Observed {
            validation_error: None,
            target_found: true,
            backends: &world.backends,
            addons: &world.addons,
            repositories: &[],
            backup_sessions: &[],
            now: ts("2024-09-19T04:49:48Z"),
        },
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "BackupConfiguration metadata.uid is missing"
    );
}

#[test]
fn defaulted_backend_and_two_sessions() {
    // Admission defaulting gives one backend with an empty name; repositories leave `backend`
    // empty. Two sessions share the Addon: one dependency entry.
    let mut bc = tutorial_bc();
    bc.spec.backends[0].name = String::new();
    bc.spec.sessions[0].repositories[0].backend = None;
    let mut second = bc.spec.sessions[0].clone();
    second.config.name = "daily".into();
    second.config.scheduler.as_mut().unwrap().schedule = "@daily".into();
    second.repositories[0].name = "daily-repo".into();
    second.repositories[0].directory = Some("/es-daily".into());
    bc.spec.sessions.push(second);
    let mut world = World::tutorial();
    world.backends = BTreeMap::from([(
        String::new(),
        BackendObservation {
            storage_phase: Some(BackupStoragePhase::Ready),
            retention_policy_found: true,
        },
    )]);
    let p = world.plan(&bc, "2024-09-19T04:49:48Z");
    assert_eq!(p.status.phase, Some(BackupInvokerPhase::Ready));
    assert_eq!(p.status.dependencies.len(), 1);
    let storages: Vec<_> = p
        .repositories
        .iter()
        .map(|c| match c {
            RepositoryChange::Create(r) => (
                r.metadata.name.clone().unwrap(),
                r.spec.storage_ref.clone().unwrap().name,
                r.spec.path.clone().unwrap(),
            ),
            RepositoryChange::Update(r) => panic!("unexpected update {r:?}"),
        })
        .collect();
    assert_eq!(
        storages,
        [
            (
                "s3-elasticsearch-repo".into(),
                "s3-storage".into(),
                "/es".into()
            ),
            ("daily-repo".into(), "s3-storage".into(), "/es-daily".into()),
        ]
    );
    assert_eq!(
        names_of(&p.backup_sessions),
        [
            "appbinding-es-quickstart-frequent-backup-1726721388",
            "appbinding-es-quickstart-daily-1726721388",
        ]
    );
    // The earliest next schedule drives the requeue.
    assert_eq!(p.requeue_at, Some(ts("2024-09-19T04:50:00Z")));
    assert_eq!(
        p.status.sessions[1].next_schedule.as_deref(),
        Some("2024-09-20T00:00:00Z")
    );
}

#[test]
fn failed_initial_backup_is_retried() {
    let bc = tutorial_bc();
    let world = World::tutorial();
    let mut p = world.plan(&bc, "2024-09-19T04:49:48Z");
    assert_eq!(p.backup_sessions.len(), 1);
    // The create failed: the reconciler records it.
    mark_initial_backup_failed(
        &mut p.status,
        "frequent-backup",
        "backupsessions.core.kubestash.com is forbidden",
        ts("2024-09-19T04:49:48Z"),
    );
    let c = p.status.sessions[0]
        .conditions
        .find("InitialBackupTriggered")
        .unwrap();
    assert!(c.is_false());
    assert_eq!(c.reason.as_deref(), Some("FailedToTriggerInitialBackup"));
    let mut bc = bc;
    bc.status = Some(p.status);
    // Next reconcile (no session exists) triggers it again.
    let again = world.plan(&bc, "2024-09-19T04:49:53Z");
    assert_eq!(
        names_of(&again.backup_sessions),
        ["appbinding-es-quickstart-frequent-backup-1726721393"]
    );
    assert!(again.status.sessions[0]
        .conditions
        .is_true("InitialBackupTriggered"));
}
