//! `kstash operator`: the controllers against a Kubernetes API (a cluster, or `kstash
//! controlplane`), with optional Lease-based leader election and a Prometheus endpoint.
//! Also the pieces `kstash up` shares: building the operator's context and waiting for a
//! shutdown signal.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use kstash_operator::leader::{LeaderConfig, DEFAULT_LEASE_NAME};
use kstash_operator::task::claim::ClaimConfig;
use kstash_operator::CancellationToken;
use kstash_operator::{Context, OperatorConfig, ServeOptions};

/// Flags of `kstash operator`.
#[derive(Args)]
pub struct OperatorArgs {
    /// Kubeconfig to use (default: `$KUBECONFIG`, `~/.kube/config`, or the in-cluster service account).
    #[arg(long, env = "KSTASH_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Where `builtin:<name>` module locations resolve (`<dir>/<name>.wasm`).
    #[arg(long, env = "KSTASH_MODULE_DIR")]
    pub module_dir: Option<PathBuf>,
    /// Private state directory (the precompiled-module cache).
    #[arg(long, env = "KSTASH_DATA_DIR", default_value = "/var/lib/kstash")]
    pub data_dir: PathBuf,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "KSTASH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Address of the `/metrics` and `/healthz` endpoint; `off` disables it.
    #[arg(long, env = "KSTASH_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: String,
    /// Run the controllers only while holding the leader Lease (for more than one replica).
    #[arg(long, env = "KSTASH_LEADER_ELECT")]
    pub leader_elect: bool,
    /// Namespace of the leader Lease (default: the pod's namespace, else `--namespace`, else `default`).
    #[arg(long, env = "KSTASH_LEADER_ELECT_NAMESPACE")]
    pub leader_elect_namespace: Option<String>,
    /// Name of the leader Lease.
    #[arg(long, default_value = DEFAULT_LEASE_NAME)]
    pub leader_elect_lease_name: String,
    /// Seconds a lease stays valid without renewal.
    #[arg(long, default_value_t = 15.0)]
    pub leader_elect_lease_duration: f64,
    /// Seconds a leader keeps trying to renew before it stops its controllers.
    #[arg(long, default_value_t = 10.0)]
    pub leader_elect_renew_deadline: f64,
    /// Seconds between renewals (leader) and attempts (followers).
    #[arg(long, default_value_t = 2.0)]
    pub leader_elect_retry_period: f64,
    /// This replica's identity (events, Lease holder, restic lock owner). Default: `$POD_NAME`,
    /// else `<hostname>-<pid>`.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Seconds a shutdown (SIGTERM, Ctrl-C) lets running sessions finish before failing them
    /// cleanly; keep the pod's `terminationGracePeriodSeconds` above it.
    #[arg(long, env = "KSTASH_SHUTDOWN_GRACE", default_value_t = kstash_operator::DEFAULT_SHUTDOWN_GRACE.as_secs_f64())]
    pub shutdown_grace: f64,
    /// Most backups, and most restores, this replica runs at once. With `--leader-elect` every
    /// replica runs sessions: each one claims a session with a Lease before running it.
    #[arg(long, env = "KSTASH_MAX_SESSIONS", default_value_t = kstash_operator::task::claim::DEFAULT_MAX_SESSIONS)]
    pub max_sessions: usize,
    #[command(flatten)]
    pub caps: TaskCapArgs,
    #[command(flatten)]
    pub egress: EgressArgs,
    #[command(flatten)]
    pub webhook: WebhookArgs,
}

/// The admission webhooks (docs/operations.md, "Admission webhooks"): kstash's rules served over
/// HTTPS to the API server on every replica, with a certificate the operator keeps in a Secret.
#[derive(Args, Debug, Clone, Default)]
pub struct WebhookArgs {
    /// Serve `POST /validate` and `POST /mutate` over HTTPS on this port (off when absent).
    #[arg(long, env = "KSTASH_WEBHOOK_PORT")]
    pub webhook_port: Option<u16>,
    /// The Service in front of the webhook port: the certificate is for
    /// `<service>.<namespace>.svc` (required with --webhook-port).
    #[arg(long, env = "KSTASH_WEBHOOK_SERVICE")]
    pub webhook_service: Option<String>,
    /// The Secret, in the operator's namespace, holding the webhook's CA and certificate.
    #[arg(long, env = "KSTASH_WEBHOOK_SECRET", default_value = kstash_operator::webhook::DEFAULT_SECRET)]
    pub webhook_secret: String,
    /// The name of both the ValidatingWebhookConfiguration and the MutatingWebhookConfiguration
    /// whose `caBundle` the operator fills (required with --webhook-port).
    #[arg(long, env = "KSTASH_WEBHOOK_CONFIGURATION")]
    pub webhook_configuration: Option<String>,
}

/// Whether `v` is a DNS-1123 label (a Service or a Secret name the certificate names).
fn dns_label(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 63
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !v.starts_with('-')
        && !v.ends_with('-')
}

impl WebhookArgs {
    /// The webhook's config in `namespace` (the operator's), or `None` without --webhook-port.
    pub fn config(
        &self,
        namespace: &str,
    ) -> anyhow::Result<Option<(u16, kstash_operator::webhook::WebhookConfig)>> {
        let Some(port) = self.webhook_port else {
            for (flag, set) in [
                ("--webhook-service", self.webhook_service.is_some()),
                (
                    "--webhook-configuration",
                    self.webhook_configuration.is_some(),
                ),
            ] {
                if set {
                    bail!("{flag} needs --webhook-port (the webhook is off without it)");
                }
            }
            return Ok(None);
        };
        if port == 0 {
            bail!("--webhook-port 0: give the port the webhook Service targets");
        }
        let service = self
            .webhook_service
            .clone()
            .context("--webhook-service is required with --webhook-port: the Service in front of the webhook (its DNS name is in the certificate)")?;
        if !dns_label(&service) {
            bail!("--webhook-service {service:?}: not a Service name (lower-case letters, digits and '-', at most 63)");
        }
        let configuration = self
            .webhook_configuration
            .clone()
            .context("--webhook-configuration is required with --webhook-port: the name of the Validating/MutatingWebhookConfiguration to fill the caBundle of")?;
        if configuration.is_empty() {
            bail!("--webhook-configuration: must not be empty");
        }
        if self.webhook_secret.is_empty() || self.webhook_secret.len() > 253 {
            bail!(
                "--webhook-secret {:?}: not a Secret name",
                self.webhook_secret
            );
        }
        let mut cfg =
            kstash_operator::webhook::WebhookConfig::new(namespace, service, configuration);
        cfg.secret = self.webhook_secret.clone();
        Ok(Some((port, cfg)))
    }
}

/// The most any one addon task may use (admin-set). A Function asks for its own limits in
/// `spec.module.limits`; one asking for more than a cap is refused, one asking nothing gets the
/// runtime's defaults (256Mi, 30m CPU, 6h, 1Ti written, 1Ti to the target) lowered to the caps.
#[derive(Args, Debug, Clone)]
pub struct TaskCapArgs {
    /// Guest memory of one task (a quantity: 512Mi, 1Gi); also the addon pool's slot size.
    #[arg(long, env = "KSTASH_TASK_MAX_MEMORY", default_value = "1Gi")]
    pub task_max_memory: String,
    /// Seconds of CPU time running guest code, per task.
    #[arg(long, env = "KSTASH_TASK_MAX_CPU_TIME", default_value_t = 7200.0)]
    pub task_max_cpu_time: f64,
    /// Seconds of wall-clock time per task.
    #[arg(long, env = "KSTASH_TASK_MAX_WALL_CLOCK", default_value_t = 86400.0)]
    pub task_max_wall_clock: f64,
    /// Bytes one task may write to its output streams (a quantity).
    #[arg(long, env = "KSTASH_TASK_MAX_OUTPUT_BYTES", default_value = "1Ti")]
    pub task_max_output_bytes: String,
    /// Bytes one task may exchange with its target (a quantity).
    #[arg(long, env = "KSTASH_TASK_MAX_TARGET_BYTES", default_value = "1Ti")]
    pub task_max_target_bytes: String,
}

impl TaskCapArgs {
    /// The caps as the runtime's limits (the fields a Function can ask for).
    pub fn caps(&self) -> anyhow::Result<kstash_runtime::Limits> {
        use kstash_operator::task::limits::parse_bytes;
        let bytes = |flag: &str, v: &str| {
            parse_bytes(v).map_err(|e| anyhow::anyhow!("--{flag} {v:?}: {e}"))
        };
        Ok(kstash_runtime::Limits {
            memory_bytes: bytes("task-max-memory", &self.task_max_memory)?,
            cpu_time: secs("task-max-cpu-time", self.task_max_cpu_time)?,
            wall_clock: secs("task-max-wall-clock", self.task_max_wall_clock)?,
            max_bytes_written: bytes("task-max-output-bytes", &self.task_max_output_bytes)?,
            max_target_bytes: bytes("task-max-target-bytes", &self.task_max_target_bytes)?,
            ..kstash_runtime::Limits::default()
        })
    }
}

impl Default for TaskCapArgs {
    fn default() -> Self {
        TaskCapArgs {
            task_max_memory: "1Gi".into(),
            task_max_cpu_time: 7200.0,
            task_max_wall_clock: 86400.0,
            task_max_output_bytes: "1Ti".into(),
            task_max_target_bytes: "1Ti".into(),
        }
    }
}

/// The egress policy of every addon task (admin-set; see docs/security.md): which addresses a
/// target may resolve to. Each flag takes CIDR ranges or addresses, repeated or comma-separated.
#[derive(Args, Debug, Clone, Default)]
pub struct EgressArgs {
    /// Only these ranges may be targets (default: every address not denied).
    #[arg(long = "egress-allow", env = "KSTASH_EGRESS_ALLOW", value_delimiter = ',', value_parser = parse_range)]
    pub allow: Vec<kstash_runtime::IpRange>,
    /// Ranges refused, in addition to the built-in denial of link-local and cloud-metadata
    /// addresses.
    #[arg(long = "egress-deny", env = "KSTASH_EGRESS_DENY", value_delimiter = ',', value_parser = parse_range)]
    pub deny: Vec<kstash_runtime::IpRange>,
    /// Ranges allowed whatever the other rules (and the built-in denial) say, e.g. a database
    /// on a link-local address.
    #[arg(long = "egress-allow-exception", env = "KSTASH_EGRESS_ALLOW_EXCEPTION", value_delimiter = ',', value_parser = parse_range)]
    pub allow_exceptions: Vec<kstash_runtime::IpRange>,
}

impl EgressArgs {
    /// The runtime's rules: the built-in denials plus these flags.
    pub fn rules(&self) -> kstash_runtime::EgressRules {
        let mut rules = kstash_runtime::EgressRules::default();
        rules.allow.extend(self.allow.iter().cloned());
        rules.deny.extend(self.deny.iter().cloned());
        rules
            .allow_exceptions
            .extend(self.allow_exceptions.iter().cloned());
        rules
    }
}

/// One CIDR range or address of an `--egress-*` flag.
fn parse_range(v: &str) -> Result<kstash_runtime::IpRange, String> {
    v.trim()
        .parse()
        .map_err(|e| format!("{v:?} is not a CIDR range or IP address: {e}"))
}

/// `<hostname>-<pid>`.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "kstash".to_string());
    format!("{host}-{}", std::process::id())
}

/// `--<flag> v` as a duration; refuses a negative, zero or non-finite value.
pub fn secs(flag: &str, v: f64) -> anyhow::Result<Duration> {
    if !(v.is_finite() && v > 0.0) {
        bail!("--{flag} {v}: must be a positive number of seconds");
    }
    Ok(Duration::from_secs_f64(v))
}

/// Parses `--metrics-addr` (`off` disables the endpoint).
pub fn parse_metrics_addr(v: &str) -> anyhow::Result<Option<SocketAddr>> {
    if v.eq_ignore_ascii_case("off") || v.is_empty() {
        return Ok(None);
    }
    v.parse()
        .map(Some)
        .with_context(|| format!("--metrics-addr {v:?}: expected HOST:PORT or `off`"))
}

/// Builds the operator's shared context: the addon runtime (cache under `data_dir`) and settings.
/// With `claims`, the executors share the sessions with other replicas; at most `max_tasks`
/// addon tasks run at once, each within `caps`.
pub fn build_context(
    client: kube::Client,
    config: OperatorConfig,
    egress: kstash_runtime::EgressRules,
    claims: Option<ClaimConfig>,
    caps: kstash_runtime::Limits,
    max_tasks: usize,
) -> anyhow::Result<Arc<Context>> {
    if let Some(dir) = &config.module_dir {
        if !dir.is_dir() {
            bail!("--module-dir {}: not a directory", dir.display());
        }
    }
    let cache = config.data_dir.join("module-cache");
    std::fs::create_dir_all(&cache)
        .with_context(|| format!("--data-dir: creating {}", cache.display()))?;
    let runtime = kstash_runtime::Runtime::new(kstash_runtime::RuntimeConfig {
        cache_dir: Some(cache),
        egress,
        max_concurrent_tasks: u32::try_from(max_tasks.max(1)).unwrap_or(u32::MAX),
        max_task_memory: caps.memory_bytes,
        ..Default::default()
    })
    .context("starting the addon runtime")?;
    let ctx = Context::new(client, Arc::new(runtime), config).with_task_caps(caps);
    Ok(Arc::new(match claims {
        Some(c) => ctx.with_claims(c),
        None => ctx,
    }))
}

/// Binds the metrics endpoint at `addr` (if any) and prints its URL.
pub async fn bind_metrics(
    addr: Option<SocketAddr>,
) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    let Some(a) = addr else { return Ok(None) };
    let (l, bound) = kstash_operator::metrics::bind(a)
        .await
        .with_context(|| format!("--metrics-addr {a}: binding"))?;
    println!("metrics: http://{bound}/metrics");
    Ok(Some(l))
}

/// A token cancelled on Ctrl-C or SIGTERM.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async {
                match term.as_mut() {
                    Some(s) => { s.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
        tracing::info!("shutting down");
        t.cancel();
    });
    token
}

async fn client_from(kubeconfig: Option<&Path>) -> anyhow::Result<kube::Client> {
    match kubeconfig {
        None => kube::Client::try_default()
            .await
            .context("connecting to Kubernetes (KUBECONFIG, ~/.kube/config or in-cluster)"),
        Some(p) => {
            let kc = kube::config::Kubeconfig::read_from(p)
                .with_context(|| format!("--kubeconfig {}", p.display()))?;
            let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .with_context(|| format!("--kubeconfig {}", p.display()))?;
            kube::Client::try_from(cfg).context("building the Kubernetes client")
        }
    }
}

fn pod_namespace() -> Option<String> {
    std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
}

/// Runs the operator until Ctrl-C/SIGTERM.
pub async fn run(args: OperatorArgs) -> anyhow::Result<()> {
    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let metrics_addr = parse_metrics_addr(&args.metrics_addr)?;
    let leader = if args.leader_elect {
        let ns = args
            .leader_elect_namespace
            .clone()
            .or_else(pod_namespace)
            .or_else(|| args.namespace.clone())
            .unwrap_or_else(|| "default".to_string());
        let mut cfg = LeaderConfig::new(ns, args.leader_elect_lease_name.clone(), identity.clone());
        cfg.lease_duration = secs(
            "leader-elect-lease-duration",
            args.leader_elect_lease_duration,
        )?;
        cfg.renew_deadline = secs(
            "leader-elect-renew-deadline",
            args.leader_elect_renew_deadline,
        )?;
        cfg.retry_period = secs("leader-elect-retry-period", args.leader_elect_retry_period)?;
        cfg.validate()?;
        Some(cfg)
    } else {
        None
    };
    // With leader election every replica runs sessions, each under its claim Lease (in the
    // leader Lease's namespace, with its timings).
    let claims = match &leader {
        Some(l) => {
            let mut c = ClaimConfig::new(l.namespace.clone(), identity.clone());
            c.lease_duration = l.lease_duration;
            c.renew_deadline = l.renew_deadline;
            c.renew_period = l.retry_period;
            c.max_sessions = args.max_sessions;
            c.validate().map_err(anyhow::Error::msg)?;
            Some(c)
        }
        None if args.max_sessions == 0 => bail!("--max-sessions must be at least 1"),
        None => None,
    };
    // The webhook's Secret lives in the operator's own namespace.
    let own_namespace = pod_namespace()
        .or_else(|| args.namespace.clone())
        .unwrap_or_else(|| "default".to_string());
    let webhook = args.webhook.config(&own_namespace)?;
    let client = client_from(args.kubeconfig.as_deref()).await?;
    let ctx = build_context(
        client,
        OperatorConfig {
            identity: identity.clone(),
            module_dir: args.module_dir.clone(),
            data_dir: args.data_dir.clone(),
            namespace: args.namespace.clone(),
        },
        args.egress.rules(),
        claims,
        args.caps.caps()?,
        args.max_sessions,
    )?;
    let metrics = bind_metrics(metrics_addr).await?;
    let webhook = match webhook {
        Some((port, config)) => {
            let addr = SocketAddr::from(([0, 0, 0, 0], port));
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--webhook-port {port}: binding"))?;
            println!(
                "webhook: https://{}.{}.svc:{port}/validate and /mutate (certificate in Secret {}/{})",
                config.service, config.namespace, config.namespace, config.secret
            );
            Some(kstash_operator::webhook::WebhookOptions { listener, config })
        }
        None => None,
    };
    println!(
        "kstash operator {identity} running ({}; {})",
        match &args.namespace {
            Some(ns) => format!("namespace {ns}"),
            None => "all namespaces".to_string(),
        },
        match &leader {
            Some(l) => format!(
                "leader election on Lease {}/{}; sessions claimed per replica, at most {} at once",
                l.namespace, l.name, args.max_sessions
            ),
            None => "no leader election".to_string(),
        }
    );
    let shutdown = shutdown_on_signal();
    kstash_operator::serve(
        ctx,
        ServeOptions {
            leader_election: leader,
            metrics,
            shutdown,
            shutdown_grace: secs("shutdown-grace", args.shutdown_grace)?,
            webhook,
        },
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod webhook_tests {
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        webhook: super::WebhookArgs,
    }

    fn config(
        args: &[&str],
    ) -> anyhow::Result<Option<(u16, kstash_operator::webhook::WebhookConfig)>> {
        let mut all = vec!["x"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).unwrap().webhook.config("kstash")
    }

    #[test]
    fn webhook_flags_are_off_by_default_and_name_what_is_missing() {
        assert!(config(&[]).unwrap().is_none());
        let (port, cfg) = config(&[
            "--webhook-port=9443",
            "--webhook-service=kstash-webhook",
            "--webhook-configuration=kstash",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(port, 9443);
        assert_eq!(
            (
                cfg.namespace.as_str(),
                cfg.service.as_str(),
                cfg.secret.as_str(),
                cfg.configuration.as_str()
            ),
            ("kstash", "kstash-webhook", "kstash-webhook-cert", "kstash")
        );
        for (args, flag) in [
            (
                &["--webhook-port=9443", "--webhook-configuration=k"][..],
                "--webhook-service is required",
            ),
            (
                &["--webhook-port=9443", "--webhook-service=s"][..],
                "--webhook-configuration is required",
            ),
            (
                &[
                    "--webhook-port=0",
                    "--webhook-service=s",
                    "--webhook-configuration=k",
                ][..],
                "--webhook-port 0",
            ),
            (
                &[
                    "--webhook-port=9443",
                    "--webhook-service=Bad_Name",
                    "--webhook-configuration=k",
                ][..],
                "--webhook-service \"Bad_Name\"",
            ),
            (
                &["--webhook-service=s"][..],
                "--webhook-service needs --webhook-port",
            ),
        ] {
            let e = config(args).unwrap_err().to_string();
            assert!(e.contains(flag), "{args:?}: {e}");
        }
    }
}

#[cfg(test)]
mod egress_tests {
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        egress: super::EgressArgs,
    }

    #[test]
    fn egress_flags_add_to_the_built_in_rules() {
        let cli = Cli::try_parse_from([
            "x",
            "--egress-allow",
            "10.0.0.0/8,192.168.1.5",
            "--egress-deny=10.9.0.0/16",
            "--egress-allow-exception",
            "169.254.10.0/24",
        ])
        .unwrap();
        let r = cli.egress.rules();
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert!(r.check(ip("10.1.2.3")).is_ok());
        assert!(r.check(ip("192.168.1.5")).is_ok());
        assert!(r.check(ip("192.168.1.6")).is_err());
        assert!(r.check(ip("10.9.1.1")).is_err());
        assert!(r.check(ip("169.254.10.7")).is_ok());
        assert!(r.check(ip("169.254.169.254")).is_err());
        let d = Cli::try_parse_from(["x"]).unwrap().egress.rules();
        assert_eq!(d, kstash_runtime::EgressRules::default());
        let err = Cli::try_parse_from(["x", "--egress-deny", "10.0.0.0/99"])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("--egress-deny") && err.contains("10.0.0.0/99"),
            "{err}"
        );
    }
}
