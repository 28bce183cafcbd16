//! The operator's Prometheus endpoint: `GET /metrics` (text exposition format 0.0.4),
//! `GET /healthz` (liveness) and `GET /readyz` (readiness: 503 until the admission webhook, when
//! this replica has one, serves).
//!
//! Every value is computed at scrape time from the API objects (BackupSessions, Snapshots,
//! Repositories, RestoreSessions, BackupConfigurations), not from the controllers' memory: it is
//! right after a restart, identical on every replica (followers included), and independent of
//! the controllers' internals. [`render`] is pure; [`gather`] lists the objects; [`serve`] is
//! the HTTP shell. The metric names are listed in `docs/operator.md`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use kstash_api::core::{BackupConfiguration, BackupSession, RestoreSession};
use kstash_api::storage::{Repository, Snapshot};
use kube::api::{Api, ListParams};
use kube::ResourceExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The objects the metrics are computed from.
#[derive(Debug, Default, Clone)]
pub struct Inputs {
    /// BackupSessions.
    pub backup_sessions: Vec<BackupSession>,
    /// Snapshots.
    pub snapshots: Vec<Snapshot>,
    /// Repositories.
    pub repositories: Vec<Repository>,
    /// RestoreSessions.
    pub restore_sessions: Vec<RestoreSession>,
    /// BackupConfigurations.
    pub backup_configurations: Vec<BackupConfiguration>,
}

/// What a scrape reports beside the objects.
#[derive(Debug, Clone, Copy)]
pub struct ProcessState {
    /// This replica currently leads (runs the controllers).
    pub leader: bool,
    /// Listing the objects succeeded.
    pub scrape_ok: bool,
}

/// Escapes a label value for the text format.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", esc(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, pairs: &[(&str, &str)], value: f64) {
        if pairs.is_empty() {
            let _ = writeln!(self.out, "{name} {value}");
        } else {
            let _ = writeln!(self.out, "{name}{} {value}", labels(pairs));
        }
    }
}

fn phase_str<T: serde::Serialize>(p: &Option<T>) -> String {
    p.as_ref()
        .and_then(|p| serde_json::to_value(p).ok())
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "Unknown".to_string())
}

fn seconds(t: &jiff::Timestamp) -> f64 {
    t.as_millisecond() as f64 / 1000.0
}

fn size_bytes(s: &Option<String>) -> Option<f64> {
    s.as_deref()
        .and_then(|s| kstash_api::size::parse_size(s).ok())
        .map(|b| b as f64)
}

/// What the newest Succeeded Snapshot moved: (its time, documents, stream bytes).
type Moved = (f64, Option<f64>, Option<f64>);

/// A metric family over [`Moved`]: name, help, and the value it picks.
type MovedFamily = (&'static str, &'static str, fn(&Moved) -> Option<f64>);

/// Key of a backup session series: (namespace, invoker, session).
type SessionKey = (String, String, String);

/// Renders the exposition text for `inputs`.
pub fn render(inputs: &Inputs, state: ProcessState) -> String {
    let mut out = String::new();
    let mut f = Family { out: &mut out };
    process(&mut f, state);
    backup_sessions(&mut f, &inputs.backup_sessions);
    snapshots(&mut f, &inputs.snapshots);
    repositories(&mut f, &inputs.repositories);
    restores_and_configurations(&mut f, inputs);
    out
}

/// The process: up, leader, scrape success.
fn process(f: &mut Family<'_>, state: ProcessState) {
    f.header(
        "kstash_operator_up",
        "gauge",
        "1 while the operator process serves.",
    );
    f.sample("kstash_operator_up", &[], 1.0);
    f.header(
        "kstash_operator_leader",
        "gauge",
        "1 if this replica holds the leader Lease and runs the controllers.",
    );
    f.sample(
        "kstash_operator_leader",
        &[],
        if state.leader { 1.0 } else { 0.0 },
    );
    f.header(
        "kstash_metrics_scrape_success",
        "gauge",
        "1 if the API objects behind these metrics could be listed.",
    );
    f.sample(
        "kstash_metrics_scrape_success",
        &[],
        if state.scrape_ok { 1.0 } else { 0.0 },
    );
}

/// The BackupSession series, gathered per (session key, phase) and per session key.
#[derive(Default)]
struct SessionSeries {
    by_phase: BTreeMap<(SessionKey, String), u64>,
    dur: BTreeMap<(SessionKey, String), (f64, u64)>,
    last_success: BTreeMap<SessionKey, f64>,
    last_done: BTreeMap<SessionKey, (f64, f64)>,
}

impl SessionSeries {
    fn of(sessions: &[BackupSession]) -> Self {
        let mut s = SessionSeries::default();
        for bs in sessions {
            s.add(bs);
        }
        s
    }

    fn add(&mut self, bs: &BackupSession) {
        let ns = bs.namespace().unwrap_or_default();
        let invoker = bs
            .spec
            .invoker
            .as_ref()
            .map(|i| i.name.clone())
            .unwrap_or_default();
        let session = bs.spec.session.clone().unwrap_or_default();
        let key = (ns, invoker, session);
        let status = bs.status.clone().unwrap_or_default();
        let phase = phase_str(&status.phase);
        *self
            .by_phase
            .entry((key.clone(), phase.clone()))
            .or_default() += 1;
        let d = status
            .duration
            .as_deref()
            .and_then(|d| kstash_rules::backup_session::parse_go_duration(d).ok())
            .map(|d| d.as_secs_f64());
        let created = bs
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| seconds(&t.0));
        let completed = status.phase.map(|p| p.is_completed()).unwrap_or(false);
        let (Some(d), true) = (d, completed) else {
            return;
        };
        let e = self.dur.entry((key.clone(), phase.clone())).or_default();
        e.0 += d;
        e.1 += 1;
        if let Some(c) = created {
            let end = c + d;
            let slot = self.last_done.entry(key.clone()).or_insert((f64::MIN, 0.0));
            if end > slot.0 {
                *slot = (end, d);
            }
            if phase == "Succeeded" {
                let s = self.last_success.entry(key).or_insert(f64::MIN);
                *s = s.max(end);
            }
        }
    }
}

/// BackupSessions: counts by phase, durations, last success and last duration per session.
fn backup_sessions(f: &mut Family<'_>, sessions: &[BackupSession]) {
    let series = SessionSeries::of(sessions);
    f.header(
        "kstash_backup_sessions",
        "gauge",
        "BackupSessions in the cluster by configuration, session and phase.",
    );
    for (((ns, inv, ses), phase), n) in &series.by_phase {
        f.sample(
            "kstash_backup_sessions",
            &[
                ("namespace", ns.as_str()),
                ("invoker", inv.as_str()),
                ("session", ses.as_str()),
                ("phase", phase.as_str()),
            ],
            *n as f64,
        );
    }
    f.header(
        "kstash_backup_session_duration_seconds",
        "summary",
        "Durations of the completed BackupSessions still in the cluster.",
    );
    for (((ns, inv, ses), phase), (sum, count)) in &series.dur {
        let l = [
            ("namespace", ns.as_str()),
            ("invoker", inv.as_str()),
            ("session", ses.as_str()),
            ("phase", phase.as_str()),
        ];
        f.sample("kstash_backup_session_duration_seconds_sum", &l, *sum);
        f.sample(
            "kstash_backup_session_duration_seconds_count",
            &l,
            *count as f64,
        );
    }
    let last_done = series.last_done.iter().map(|(k, (_, d))| (k, *d));
    session_gauge(
        f,
        "kstash_backup_last_duration_seconds",
        "Duration of the most recently completed BackupSession.",
        last_done,
    );
    session_gauge(
        f,
        "kstash_backup_last_success_timestamp_seconds",
        "End time (unix seconds) of the last Succeeded BackupSession.",
        series.last_success.iter().map(|(k, t)| (k, *t)),
    );
}

/// One gauge family with a sample per session key.
fn session_gauge<'k>(
    f: &mut Family<'_>,
    name: &str,
    help: &str,
    samples: impl Iterator<Item = (&'k SessionKey, f64)>,
) {
    f.header(name, "gauge", help);
    for ((ns, inv, ses), v) in samples {
        f.sample(
            name,
            &[
                ("namespace", ns.as_str()),
                ("invoker", inv.as_str()),
                ("session", ses.as_str()),
            ],
            v,
        );
    }
}

/// The Snapshot series: counts by (namespace, repository, phase); per (namespace, repository)
/// the newest Succeeded one's size and what it moved.
#[derive(Default)]
struct SnapshotSeries {
    counts: BTreeMap<(String, String, String), u64>,
    newest: BTreeMap<(String, String), (f64, f64)>,
    /// Newest Succeeded Snapshot's (time, documents, stream bytes), from kstash's annotations.
    moved: BTreeMap<(String, String), Moved>,
}

impl SnapshotSeries {
    fn of(snapshots: &[Snapshot]) -> Self {
        let mut s = SnapshotSeries::default();
        for snap in snapshots {
            s.add(snap);
        }
        s
    }

    fn add(&mut self, s: &Snapshot) {
        let ns = s.namespace().unwrap_or_default();
        let repo = s.spec.repository.clone().unwrap_or_default();
        let status = s.status.clone().unwrap_or_default();
        let phase = phase_str(&status.phase);
        *self
            .counts
            .entry((ns.clone(), repo.clone(), phase.clone()))
            .or_default() += 1;
        if phase != "Succeeded" {
            return;
        }
        let t = status
            .snapshot_time
            .as_ref()
            .or(s.metadata.creation_timestamp.as_ref())
            .map(|t| seconds(&t.0))
            .unwrap_or(0.0);
        let count = |k: &str| {
            s.annotations()
                .get(k)
                .and_then(|v| v.parse::<u64>().ok())
                .map(|v| v as f64)
        };
        let docs = count(kstash_api::constants::annotations::SNAPSHOT_DOCUMENTS);
        let bytes = count(kstash_api::constants::annotations::SNAPSHOT_STREAM_BYTES);
        if docs.is_some() || bytes.is_some() {
            let slot =
                self.moved
                    .entry((ns.clone(), repo.clone()))
                    .or_insert((f64::MIN, None, None));
            if t > slot.0 {
                *slot = (t, docs, bytes);
            }
        }
        if let Some(b) = size_bytes(&status.size) {
            let slot = self.newest.entry((ns, repo)).or_insert((f64::MIN, 0.0));
            if t > slot.0 {
                *slot = (t, b);
            }
        }
    }
}

/// Snapshots: counts by repository and phase; size of the newest succeeded one.
fn snapshots(f: &mut Family<'_>, snapshots: &[Snapshot]) {
    let series = SnapshotSeries::of(snapshots);
    f.header(
        "kstash_snapshots",
        "gauge",
        "Snapshots in the cluster by repository and phase.",
    );
    for ((ns, repo, phase), n) in &series.counts {
        f.sample(
            "kstash_snapshots",
            &[
                ("namespace", ns.as_str()),
                ("repository", repo.as_str()),
                ("phase", phase.as_str()),
            ],
            *n as f64,
        );
    }
    f.header(
        "kstash_snapshot_last_size_bytes",
        "gauge",
        "Size of the newest Succeeded Snapshot of a repository.",
    );
    for ((ns, repo), (_, b)) in &series.newest {
        f.sample(
            "kstash_snapshot_last_size_bytes",
            &[("namespace", ns.as_str()), ("repository", repo.as_str())],
            *b,
        );
    }
    let moved_families: [MovedFamily; 2] = [
        (
            "kstash_snapshot_last_documents",
            "Documents (items) the addon backed up in the newest Succeeded Snapshot of a repository.",
            |m| m.1,
        ),
        (
            "kstash_snapshot_last_stream_bytes",
            "Bytes the addon's output carried into the newest Succeeded Snapshot of a repository.",
            |m| m.2,
        ),
    ];
    for (name, help, value) in moved_families {
        f.header(name, "gauge", help);
        for ((ns, repo), m) in &series.moved {
            if let Some(v) = value(m) {
                f.sample(
                    name,
                    &[("namespace", ns.as_str()), ("repository", repo.as_str())],
                    v,
                );
            }
        }
    }
}

/// A Repository gauge: name, help, and the value it reads from the status.
type RepositoryFamily = (
    &'static str,
    &'static str,
    fn(&kstash_api::storage::RepositoryStatus) -> Option<f64>,
);

/// Repositories: status fields.
fn repositories(f: &mut Family<'_>, repositories: &[Repository]) {
    let repo_rows: Vec<_> = repositories
        .iter()
        .map(|r| {
            (
                r.namespace().unwrap_or_default(),
                r.name_any(),
                r.status.clone().unwrap_or_default(),
            )
        })
        .collect();
    let families: [RepositoryFamily; 4] = [
        (
            "kstash_repository_size_bytes",
            "Repository.status.size.",
            |st| size_bytes(&st.size),
        ),
        (
            "kstash_repository_snapshot_count",
            "Repository.status.snapshotCount.",
            |st| st.snapshot_count.map(|c| c as f64),
        ),
        (
            "kstash_repository_last_backup_timestamp_seconds",
            "Repository.status.lastBackupTime (unix seconds).",
            |st| st.last_backup_time.as_ref().map(|t| seconds(&t.0)),
        ),
        (
            "kstash_repository_integrity",
            "Repository.status.integrity (1 true, 0 false).",
            |st| st.integrity.map(|i| if i { 1.0 } else { 0.0 }),
        ),
    ];
    for (name, help, value) in families {
        f.header(name, "gauge", help);
        for (ns, repo, st) in &repo_rows {
            if let Some(v) = value(st) {
                f.sample(
                    name,
                    &[("namespace", ns.as_str()), ("repository", repo.as_str())],
                    v,
                );
            }
        }
    }
}

/// RestoreSessions and BackupConfigurations by phase.
fn restores_and_configurations(f: &mut Family<'_>, inputs: &Inputs) {
    let mut restores: BTreeMap<(String, String), u64> = BTreeMap::new();
    for r in &inputs.restore_sessions {
        let phase = phase_str(&r.status.as_ref().and_then(|s| s.phase));
        *restores
            .entry((r.namespace().unwrap_or_default(), phase))
            .or_default() += 1;
    }
    f.header(
        "kstash_restore_sessions",
        "gauge",
        "RestoreSessions in the cluster by phase.",
    );
    for ((ns, phase), n) in &restores {
        f.sample(
            "kstash_restore_sessions",
            &[("namespace", ns.as_str()), ("phase", phase.as_str())],
            *n as f64,
        );
    }
    f.header(
        "kstash_backup_configuration_ready",
        "gauge",
        "1 if the BackupConfiguration's phase is Ready.",
    );
    for bc in &inputs.backup_configurations {
        let phase = phase_str(&bc.status.as_ref().and_then(|s| s.phase));
        f.sample(
            "kstash_backup_configuration_ready",
            &[
                ("namespace", bc.namespace().unwrap_or_default().as_str()),
                ("name", bc.name_any().as_str()),
                ("phase", phase.as_str()),
            ],
            if phase == "Ready" { 1.0 } else { 0.0 },
        );
    }
}

fn api<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Lists the objects the metrics are computed from (in `namespace`, or all namespaces).
pub async fn gather(client: &kube::Client, namespace: Option<&str>) -> Result<Inputs, kube::Error> {
    let lp = ListParams::default();
    Ok(Inputs {
        backup_sessions: api::<BackupSession>(client, namespace)
            .list(&lp)
            .await?
            .items,
        snapshots: api::<Snapshot>(client, namespace).list(&lp).await?.items,
        repositories: api::<Repository>(client, namespace).list(&lp).await?.items,
        restore_sessions: api::<RestoreSession>(client, namespace)
            .list(&lp)
            .await?
            .items,
        backup_configurations: api::<BackupConfiguration>(client, namespace)
            .list(&lp)
            .await?
            .items,
    })
}

/// What the HTTP handler needs.
#[derive(Clone)]
pub struct MetricsState {
    /// The API client.
    pub client: kube::Client,
    /// Namespace the operator watches (`None`: all).
    pub namespace: Option<String>,
    /// Whether this replica leads.
    pub leading: Arc<AtomicBool>,
    /// Whether this replica serves everything it was asked to (its admission webhook answers,
    /// when it has one): `/readyz` is 503 until then.
    pub ready: Arc<AtomicBool>,
}

async fn handle(
    state: MetricsState,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let resp = |code: StatusCode, ctype: &str, body: String| {
        Response::builder()
            .status(code)
            .header("content-type", ctype)
            .body(Full::new(Bytes::from(body)))
            .expect("static response parts are valid")
    };
    if req.method() != hyper::Method::GET {
        return Ok(resp(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET\n".into(),
        ));
    }
    match req.uri().path() {
        "/metrics" => {
            let (inputs, ok) = match gather(&state.client, state.namespace.as_deref()).await {
                Ok(i) => (i, true),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: listing objects failed");
                    (Inputs::default(), false)
                }
            };
            let text = render(
                &inputs,
                ProcessState {
                    leader: state.leading.load(Ordering::SeqCst),
                    scrape_ok: ok,
                },
            );
            Ok(resp(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                text,
            ))
        }
        "/healthz" => Ok(resp(StatusCode::OK, "text/plain", "ok\n".into())),
        "/readyz" if state.ready.load(Ordering::SeqCst) => {
            Ok(resp(StatusCode::OK, "text/plain", "ok\n".into()))
        }
        "/readyz" => Ok(resp(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "the admission webhook is not serving yet\n".into(),
        )),
        _ => Ok(resp(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /metrics\n".into(),
        )),
    }
}

/// Serves `/metrics`, `/healthz` (the process answers) and `/readyz` (it serves everything it
/// was asked to) on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, state: MetricsState, shutdown: CancellationToken) {
    while let Some(stream) = crate::accept::next(&listener, &shutdown, "metrics").await {
        let state = state.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(state.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            tokio::select! {
                _ = shutdown.cancelled() => {}
                r = conn => if let Err(e) = r { tracing::debug!(error = %e, "metrics: connection ended"); },
            }
        });
    }
}

/// Binds the metrics address (port 0 picks a free one) and returns the listener and its address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind(addr).await?;
    let a = l.local_addr()?;
    Ok((l, a))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kstash_api::core::{BackupSessionPhase, BackupSessionSpec, BackupSessionStatus};
    use kstash_api::storage::SnapshotPhase;

    fn session(
        name: &str,
        phase: BackupSessionPhase,
        created: i64,
        duration: &str,
    ) -> BackupSession {
        let mut bs = BackupSession::new(
            name,
            BackupSessionSpec {
                invoker: Some(kstash_api::shared::TypedLocalObjectReference {
                    api_group: Some("core.kubestash.com".into()),
                    kind: "BackupConfiguration".into(),
                    name: "appbinding-es".into(),
                }),
                session: Some("frequent-backup".into()),
                ..Default::default()
            },
        );
        bs.metadata.namespace = Some("demo".into());
        bs.metadata.creation_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                jiff::Timestamp::from_second(created).unwrap(),
            ));
        bs.status = Some(BackupSessionStatus {
            phase: Some(phase),
            duration: Some(duration.into()),
            ..Default::default()
        });
        bs
    }

    #[test]
    fn sessions_by_phase_durations_and_last_success() {
        let inputs = Inputs {
            backup_sessions: vec![
                session("a", BackupSessionPhase::Succeeded, 1000, "10s"),
                session("b", BackupSessionPhase::Succeeded, 2000, "1m30s"),
                session("c", BackupSessionPhase::Failed, 3000, "2s"),
            ],
            ..Default::default()
        };
        let t = render(
            &inputs,
            ProcessState {
                leader: true,
                scrape_ok: true,
            },
        );
        let l = r#"namespace="demo",invoker="appbinding-es",session="frequent-backup""#;
        assert!(t.contains("kstash_operator_up 1\n"), "{t}");
        assert!(t.contains("kstash_operator_leader 1\n"), "{t}");
        assert!(
            t.contains(&format!(
                "kstash_backup_sessions{{{l},phase=\"Succeeded\"}} 2\n"
            )),
            "{t}"
        );
        assert!(
            t.contains(&format!(
                "kstash_backup_sessions{{{l},phase=\"Failed\"}} 1\n"
            )),
            "{t}"
        );
        assert!(
            t.contains(&format!(
                "kstash_backup_session_duration_seconds_sum{{{l},phase=\"Succeeded\"}} 100\n"
            )),
            "{t}"
        );
        assert!(
            t.contains(&format!(
                "kstash_backup_session_duration_seconds_count{{{l},phase=\"Succeeded\"}} 2\n"
            )),
            "{t}"
        );
        assert!(
            t.contains(&format!(
                "kstash_backup_last_success_timestamp_seconds{{{l}}} 2090\n"
            )),
            "{t}"
        );
        assert!(
            t.contains(&format!("kstash_backup_last_duration_seconds{{{l}}} 2\n")),
            "{t}"
        );
    }

    fn snapshot(name: &str, time: i64, phase: SnapshotPhase, docs: Option<&str>) -> Snapshot {
        let mut s: Snapshot = serde_json::from_value(serde_json::json!({
            "apiVersion": "storage.kubestash.com/v1alpha1", "kind": "Snapshot",
            "metadata": {"name": name, "namespace": "demo"},
            "spec": {"repository": "s3-repo"}
        }))
        .unwrap();
        if let Some(d) = docs {
            s.metadata.annotations = Some(
                [
                    ("kstash.io/documents".to_string(), d.to_string()),
                    ("kstash.io/stream-bytes".to_string(), "4096".to_string()),
                ]
                .into(),
            );
        }
        s.status = Some(kstash_api::storage::SnapshotStatus {
            phase: Some(phase),
            snapshot_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                jiff::Timestamp::from_second(time).unwrap(),
            )),
            ..Default::default()
        });
        s
    }

    #[test]
    fn documents_and_bytes_of_the_newest_succeeded_snapshot() {
        let inputs = Inputs {
            snapshots: vec![
                snapshot("old", 1000, SnapshotPhase::Succeeded, Some("2000")),
                snapshot("new", 2000, SnapshotPhase::Succeeded, Some("2100")),
                snapshot("failed", 3000, SnapshotPhase::Failed, None),
            ],
            ..Default::default()
        };
        let t = render(
            &inputs,
            ProcessState {
                leader: true,
                scrape_ok: true,
            },
        );
        let l = r#"{namespace="demo",repository="s3-repo"}"#;
        assert!(
            t.contains(&format!("kstash_snapshot_last_documents{l} 2100\n")),
            "{t}"
        );
        assert!(
            t.contains(&format!("kstash_snapshot_last_stream_bytes{l} 4096\n")),
            "{t}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(labels(&[("a", "x\"y\\z\n")]), r#"{a="x\"y\\z\n"}"#);
    }
}
