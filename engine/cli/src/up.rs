//! `kstash up`: kstash on one machine. Starts the embedded control plane (CRDs installed or
//! updated at start), registers the shipped Addon/Function objects pinned to the digests of the
//! modules in the module directory, and runs the operator in the same process until Ctrl-C.
//! The data directory is kept across runs: objects, certificates and the kubeconfig survive.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::Args;
use kstash_api::addons::{Addon, Function};
use kstash_controlplane::{ControlPlane, ServerConfig};
use kstash_operator::{OperatorConfig, ServeOptions};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};

/// The repository this binary was built from (for the default module and manifest directories).
const REPO_ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// Flags of `kstash up`.
#[derive(Args)]
pub struct UpArgs {
    /// State directory (control plane store, certificates, `kubeconfig`, module cache).
    /// Default: `~/.kstash`.
    #[arg(long, env = "KSTASH_UP_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// API server address (loopback only; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// Where `builtin:<name>` modules are (default: the addons built by `scripts/build-addons.sh`).
    #[arg(long, env = "KSTASH_MODULE_DIR")]
    pub module_dir: Option<PathBuf>,
    /// Directory of Addon/Function manifests to register (default: the repository's `examples/addons`).
    #[arg(long)]
    pub addons: Option<PathBuf>,
    /// Address of the operator's `/metrics` endpoint; `off` disables it.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub metrics_addr: String,
    /// The operator's identity.
    #[arg(long)]
    pub identity: Option<String>,
    /// Seconds a shutdown (Ctrl-C, SIGTERM) lets running sessions finish before failing them.
    #[arg(long, default_value_t = kstash_operator::DEFAULT_SHUTDOWN_GRACE.as_secs_f64())]
    pub shutdown_grace: f64,
    #[command(flatten)]
    pub egress: crate::operator::EgressArgs,
    /// Serve the control plane and register the addons, but run no operator: run `kstash
    /// operator` elsewhere (e.g. the OCI image) against the printed kubeconfig.
    #[arg(long)]
    pub no_operator: bool,
}

fn default_data_dir() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME").context("--data-dir not given and $HOME is not set")?;
    Ok(PathBuf::from(home).join(".kstash"))
}

fn existing(p: PathBuf) -> Option<PathBuf> {
    p.is_dir().then(|| p.canonicalize().unwrap_or(p))
}

/// The module file a `builtin:<name>` location resolves to: `<dir>/<name>.wasm`, else
/// `<dir>/<name>_addon.wasm` (the name cargo gives the addon crates), as the executor resolves it.
pub fn builtin_module_path(module_dir: &Path, location: &str) -> Option<PathBuf> {
    let name = location.strip_prefix("builtin:")?;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return None;
    }
    [
        format!("{name}.wasm"),
        format!("{name}_addon.wasm"),
        format!("{}_addon.wasm", name.replace('-', "_")),
    ]
    .into_iter()
    .map(|f| module_dir.join(f))
    .find(|p| p.is_file())
}

/// Reads every `*.yaml` under `dir` (sorted) as a list of objects.
fn read_manifests(dir: &Path) -> anyhow::Result<Vec<(PathBuf, serde_json::Value)>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("--addons {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v: serde_json::Value = serde::Deserialize::deserialize(doc)
                .with_context(|| format!("{}: not valid YAML", f.display()))?;
            if !v.is_null() {
                out.push((f.clone(), v));
            }
        }
    }
    Ok(out)
}

/// Where `scripts/build-addons.sh` of this checkout writes the modules.
fn own_build_dir() -> PathBuf {
    Path::new(REPO_ROOT).join("addons/target/wasm32-wasip2/release")
}

/// How [`pin_digests`] treats a manifest's digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pinning {
    /// The modules are this checkout's own build: pin each Function to what was built.
    OwnBuild,
    /// The modules come from elsewhere: keep every manifest's pin and report a module that does
    /// not match it (the executor refuses to run it).
    Verify,
}

/// Pins (or, with [`Pinning::Verify`], checks) every `Function` with a `builtin:` module
/// against the module found in `module_dir`. Returns one line per Function for the user.
pub fn pin_digests(
    objects: &mut [(PathBuf, serde_json::Value)],
    module_dir: Option<&Path>,
    pinning: Pinning,
) -> Vec<String> {
    let mut notes = Vec::new();
    for (file, obj) in objects.iter_mut() {
        if obj.get("kind").and_then(|k| k.as_str()) != Some("Function") {
            continue;
        }
        let name = obj
            .pointer("/metadata/name")
            .and_then(|n| n.as_str())
            .unwrap_or("?")
            .to_string();
        let Some(location) = obj
            .pointer("/spec/module/location")
            .and_then(|l| l.as_str())
            .map(str::to_string)
        else {
            continue;
        };
        let Some(dir) = module_dir else {
            notes.push(format!(
                "Function {name}: {location} kept as in {} (no module directory)",
                file.display()
            ));
            continue;
        };
        match builtin_module_path(dir, &location) {
            Some(path) => match std::fs::read(&path) {
                Ok(bytes) => {
                    let digest = kstash_runtime::Digest::of(&bytes).hex();
                    let old = obj.pointer("/spec/module/sha256").and_then(|s| s.as_str()).unwrap_or("").to_string();
                    if pinning == Pinning::Verify {
                        notes.push(if old == digest {
                            format!("Function {name}: {location} sha256 {digest} (matches the manifest)")
                        } else {
                            format!(
                                "Function {name}: {location}: {} has sha256 {digest} but {} pins {}; pin kept, so the operator will refuse this module (rebuild it, or update the manifest)",
                                path.display(),
                                file.display(),
                                if old.is_empty() { "none" } else { old.as_str() }
                            )
                        });
                        continue;
                    }
                    if old != digest {
                        notes.push(format!(
                            "Function {name}: {location} pinned to sha256 {digest} of {} (this checkout's build; manifest had {})",
                            path.display(),
                            if old.is_empty() { "none" } else { old.as_str() }
                        ));
                    } else {
                        notes.push(format!("Function {name}: {location} sha256 {digest}"));
                    }
                    obj["spec"]["module"]["sha256"] = serde_json::Value::String(digest);
                }
                Err(e) => notes.push(format!("Function {name}: reading {}: {e}", path.display())),
            },
            None => notes.push(format!(
                "Function {name}: no module for {location} in {} (run scripts/build-addons.sh); manifest digest kept",
                dir.display()
            )),
        }
    }
    notes
}

/// Server-side applies the Addon/Function objects (field manager `kstash-up`).
async fn install(
    client: &kube::Client,
    objects: &[(PathBuf, serde_json::Value)],
) -> anyhow::Result<BTreeMap<String, usize>> {
    let mut counts = BTreeMap::new();
    for (file, obj) in objects {
        let kind = obj.get("kind").and_then(|k| k.as_str()).unwrap_or_default();
        let ar = match kind {
            "Addon" => ApiResource::erase::<Addon>(&()),
            "Function" => ApiResource::erase::<Function>(&()),
            other => bail!(
                "{}: kind {other:?}: only Addon and Function manifests are registered",
                file.display()
            ),
        };
        let name = obj
            .pointer("/metadata/name")
            .and_then(|n| n.as_str())
            .with_context(|| format!("{}: a {kind} without metadata.name", file.display()))?;
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        api.patch(
            name,
            &PatchParams::apply("kstash-up").force(),
            &Patch::Apply(obj),
        )
        .await
        .with_context(|| format!("{}: applying {kind} {name}", file.display()))?;
        *counts.entry(kind.to_string()).or_default() += 1;
    }
    Ok(counts)
}

/// Starts the control plane and the operator; runs until Ctrl-C/SIGTERM.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    if !args.listen.ip().is_loopback() {
        bail!(
            "--listen {}: kstash up only serves on a loopback address",
            args.listen
        );
    }
    let data_dir = match args.data_dir.clone() {
        Some(d) => d,
        None => default_data_dir()?,
    };
    // The store holds every Secret in clear and the kubeconfig the bearer token: 0700/0600.
    // Whatever else this process writes (the operator's module cache) is private as well.
    kstash_controlplane::private::restrict_umask();
    kstash_controlplane::private::create_dir(&data_dir).context("--data-dir")?;
    let data_dir = data_dir.canonicalize()?;
    kstash_controlplane::private::create_dir(&data_dir.join("operator")).context("--data-dir")?;
    let module_dir = match args.module_dir.clone() {
        Some(d) if d.is_dir() => Some(d.canonicalize()?),
        Some(d) => bail!("--module-dir {}: not a directory", d.display()),
        None => existing(own_build_dir()),
    };
    let addons_dir = match args.addons.clone() {
        Some(d) if d.is_dir() => Some(d),
        Some(d) => bail!("--addons {}: not a directory", d.display()),
        None => existing(Path::new(REPO_ROOT).join("examples/addons")),
    };
    let metrics_addr = crate::operator::parse_metrics_addr(&args.metrics_addr)?;

    let crds = kstash_api::crds::all()
        .into_iter()
        .map(|c| serde_json::to_value(c).context("serialising a CRD"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut cfg = ServerConfig::new(&data_dir, args.listen);
    cfg.bootstrap_crds = crds;
    // KubeStash's webhook rules at write time: an invalid object is refused by `kubectl apply`.
    cfg.admission = Some(std::sync::Arc::new(
        kstash_controlplane::kstash_admission::KstashAdmission,
    ));
    let cp = ControlPlane::start(cfg)
        .await
        .with_context(|| format!("starting the control plane in {}", data_dir.display()))?;
    let client = cp
        .client()
        .await
        .context("connecting to the control plane")?;

    match &addons_dir {
        Some(dir) => {
            let mut objects = read_manifests(dir)?;
            // Only modules this checkout built are re-pinned; any other directory is checked
            // against the manifests' pins.
            let pinning = match (&module_dir, own_build_dir().canonicalize()) {
                (Some(d), Ok(own)) if *d == own => Pinning::OwnBuild,
                _ => Pinning::Verify,
            };
            for note in pin_digests(&mut objects, module_dir.as_deref(), pinning) {
                println!("addons: {note}");
            }
            let counts = install(&client, &objects).await?;
            println!("addons: registered {counts:?} from {}", dir.display());
        }
        None => println!("addons: no manifest directory (pass --addons DIR); none registered"),
    }

    if args.no_operator {
        println!(
            "kstash up: control plane {} (data in {}); no operator (--no-operator)",
            cp.url(),
            data_dir.display()
        );
        println!("export KUBECONFIG={}", cp.kubeconfig_path.display());
        crate::operator::shutdown_on_signal().cancelled().await;
        cp.shutdown().await;
        println!("kstash up: stopped");
        return Ok(());
    }

    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("kstash-up-{}", crate::operator::default_identity()));
    let ctx = crate::operator::build_context(
        client,
        OperatorConfig {
            identity,
            module_dir: module_dir.clone(),
            data_dir: data_dir.join("operator"),
            namespace: None,
        },
        args.egress.rules(),
        None,
        crate::operator::TaskCapArgs::default().caps()?,
        kstash_operator::task::claim::DEFAULT_MAX_SESSIONS,
    )?;
    let metrics = crate::operator::bind_metrics(metrics_addr).await?;
    println!(
        "kstash up: control plane {} (data in {})",
        cp.url(),
        data_dir.display()
    );
    match &module_dir {
        Some(d) => println!("modules: {}", d.display()),
        None => println!("modules: none found (run scripts/build-addons.sh or pass --module-dir)"),
    }
    println!("export KUBECONFIG={}", cp.kubeconfig_path.display());
    let shutdown = crate::operator::shutdown_on_signal();
    let served = kstash_operator::serve(
        ctx,
        ServeOptions {
            leader_election: None,
            metrics,
            shutdown,
            shutdown_grace: crate::operator::secs("shutdown-grace", args.shutdown_grace)?,
            // The embedded control plane runs the same rules in its write path.
            webhook: None,
        },
    )
    .await;
    cp.shutdown().await;
    served?;
    println!("kstash up: stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_functions_are_pinned_to_the_module_digest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("elasticsearch_addon.wasm"), b"module bytes").unwrap();
        let mut objs = vec![(
            PathBuf::from("x.yaml"),
            serde_json::json!({"kind": "Function", "metadata": {"name": "f"},
                "spec": {"module": {"location": "builtin:elasticsearch", "sha256": "00"}}}),
        )];
        let notes = pin_digests(&mut objs, Some(dir.path()), Pinning::OwnBuild);
        // `printf 'module bytes' | sha256sum`
        let want = "5c073b6de205a83e4df87dcd07111be224ad4435a8c08ca0ba10e68dcf38fe92";
        let got = objs[0]
            .1
            .pointer("/spec/module/sha256")
            .unwrap()
            .as_str()
            .unwrap();
        assert_eq!(got, want);
        assert!(notes[0].contains("pinned"), "{notes:?}");
    }

    #[test]
    fn modules_from_elsewhere_are_checked_not_pinned() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("elasticsearch.wasm"), b"module bytes").unwrap();
        let mut objs = vec![(
            PathBuf::from("x.yaml"),
            serde_json::json!({"kind": "Function", "metadata": {"name": "f"},
                "spec": {"module": {"location": "builtin:elasticsearch", "sha256": "00"}}}),
        )];
        let notes = pin_digests(&mut objs, Some(dir.path()), Pinning::Verify);
        assert_eq!(objs[0].1.pointer("/spec/module/sha256").unwrap(), "00");
        assert!(notes[0].contains("will refuse this module"), "{notes:?}");
    }

    #[test]
    fn builtin_names_cannot_escape_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(builtin_module_path(dir.path(), "builtin:../x").is_none());
        assert!(builtin_module_path(dir.path(), "/abs/x.wasm").is_none());
    }
}
