//! Where things are: the repository root, the tools, the examples, the built addon.

use std::path::{Path, PathBuf};
use std::process::Command;

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

/// The `restic` CLI; panics when it is not in `PATH`.
pub fn restic_bin() -> &'static str {
    let ok = Command::new("restic")
        .arg("version")
        .output()
        .map(|o| o.status.success());
    assert!(
        matches!(ok, Ok(true)),
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

/// The built Elasticsearch addon; panics when `scripts/build-addons.sh` has not built it.
pub fn module_file() -> PathBuf {
    let p = repo_root().join("addons/target/wasm32-wasip2/release/elasticsearch_addon.wasm");
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
