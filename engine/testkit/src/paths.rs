//! Where things are: the repository root, the tools, the examples, the built addon.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde::de::DeserializeOwned;
use serde_json::Value;

/// The repository root (this crate lives in `engine/testkit`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// `<repo>/<rel>`; panics naming `scripts/ensure-tools.sh` when it is missing.
pub fn tool(rel: &str) -> PathBuf {
    let p = repo_root().join(rel);
    assert!(
        p.exists(),
        "{} is missing: run scripts/ensure-tools.sh",
        p.display()
    );
    p
}

/// `<repo>/.tools/bin/kubectl`.
pub fn kubectl_bin() -> PathBuf {
    tool(".tools/bin/kubectl")
}

/// `<repo>/.tools/venv/bin/moto_server`.
pub fn moto_bin() -> PathBuf {
    tool(".tools/venv/bin/moto_server")
}

/// `<repo>/.tools/bin/helm`.
pub fn helm_bin() -> PathBuf {
    tool(".tools/bin/helm")
}

/// The `restic` CLI; panics when it is not in `PATH` (looked for once per test process).
pub fn restic_bin() -> &'static str {
    static FOUND: OnceLock<bool> = OnceLock::new();
    let found = *FOUND.get_or_init(|| {
        Command::new("restic")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    assert!(
        found,
        "the restic CLI is not in PATH: run scripts/ensure-tools.sh"
    );
    "restic"
}

/// The text of `examples/<rel>`.
pub fn example_yaml(rel: &str) -> String {
    let p = repo_root().join("examples").join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// The text of `examples/auto-backup/<file>` (the tutorial's YAML, verbatim).
pub fn tutorial_yaml(file: &str) -> String {
    example_yaml(&format!("auto-backup/{file}"))
}

/// The Helm chart, `engine/deploy/helm/kstash`.
pub fn chart_dir() -> PathBuf {
    repo_root().join("engine/deploy/helm/kstash")
}

/// `helm template kstash <chart> --namespace kstash <extra>`: `Ok(stdout)` or `Err(stderr)`.
pub fn helm_template(extra: &[&str]) -> Result<String, String> {
    let out = Command::new(helm_bin())
        .args(["template", "kstash"])
        .arg(chart_dir())
        .args(["--namespace", "kstash"])
        .args(extra)
        .output()
        .expect("run helm");
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Every non-empty document of a YAML stream, as JSON values; panics on an unparsable one.
pub fn yaml_docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| {
            <Value as serde::Deserialize>::deserialize(d)
                .unwrap_or_else(|e| panic!("unparsable document: {e}"))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// The YAML file at `path` as `K` (a typed object, or a JSON `Value`); panics naming the file
/// when it cannot be read or parsed.
pub fn yaml_file<K: DeserializeOwned>(path: &Path) -> K {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// `examples/auto-backup/<file>` (the tutorial's YAML) as `K`.
pub fn tutorial_doc<K: DeserializeOwned>(file: &str) -> K {
    yaml_file(&repo_root().join("examples/auto-backup").join(file))
}

/// `<manifest_dir>/tests/fixtures/<name>` (a test crate's own YAML fixtures; pass
/// `env!("CARGO_MANIFEST_DIR")`) as `K`.
pub fn crate_fixture<K: DeserializeOwned>(manifest_dir: &str, name: &str) -> K {
    yaml_file(&Path::new(manifest_dir).join("tests/fixtures").join(name))
}

/// Runs `scripts/build-addons.sh -q` (every guest of `addons/`), once per test process.
pub fn build_addons() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let ok = Command::new("bash")
            .arg(repo_root().join("scripts/build-addons.sh"))
            .arg("-q")
            .status()
            .expect("run scripts/build-addons.sh")
            .success();
        assert!(ok, "scripts/build-addons.sh failed");
    });
}

/// `addons/target/wasm32-wasip2/release/<file>`, whether it exists or not.
pub fn addon_path(file: &str) -> PathBuf {
    repo_root()
        .join("addons/target/wasm32-wasip2/release")
        .join(file)
}

/// A guest built by `scripts/build-addons.sh` (which runs here once if the module is missing).
pub fn addon_module(file: &str) -> PathBuf {
    let path = addon_path(file);
    if !path.is_file() {
        build_addons();
    }
    assert!(path.is_file(), "{} missing", path.display());
    path
}

/// A guest freshly built: `scripts/build-addons.sh` runs once per test process (it rebuilds
/// what changed), then the module must exist.
pub fn fresh_addon_module(file: &str) -> PathBuf {
    build_addons();
    let path = addon_path(file);
    assert!(path.is_file(), "{} missing", path.display());
    path
}

/// The built Elasticsearch addon; panics when `scripts/build-addons.sh` has not built it.
pub fn module_file() -> PathBuf {
    let p = addon_path("elasticsearch_addon.wasm");
    assert!(
        p.is_file(),
        "the Elasticsearch addon is not built at {}: run scripts/build-addons.sh",
        p.display()
    );
    p
}

/// The sha256 (hex) of [`module_file`].
pub fn module_sha256() -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(std::fs::read(module_file()).unwrap()))
}

/// The sha256 (hex) of the built guest `file`; panics naming `scripts/build-addons.sh` when it
/// is not built.
pub fn addon_sha256(file: &str) -> String {
    use sha2::Digest as _;
    let p = addon_path(file);
    let bytes = std::fs::read(&p).unwrap_or_else(|e| {
        panic!(
            "{} ({e}): the addon is built by scripts/build-addons.sh",
            p.display()
        )
    });
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A binary of this workspace built next to the running test (`target/<profile>/<name>`).
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    // target/<profile>/deps/<test>-<hash> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let p = dir.join(name);
    assert!(
        p.is_file(),
        "{} is not built: cargo build -p <its crate> (cargo test builds it for its own package)",
        p.display()
    );
    p
}
