//! Addon task → Function → WASM module, pinned by its SHA-256.
//!
//! `Function.spec.module.location` (kstash extension, docs/api.md):
//! - `builtin:<name>` → `<module_dir>/<name>.wasm`, else `<module_dir>/<name>_addon.wasm`;
//! - an absolute file path;
//! - `https://…` is refused for now (no download in the executor: a module must be reviewed
//!   and placed by the operator's administrator).
//!
//! The bytes are loaded through [`kstash_runtime::Runtime::load`], which refuses them unless
//! their SHA-256 equals `spec.module.sha256` (the error shows both digests). A Function without
//! a module (a KubeStash container-only Function) is reported as unsupported.

use std::path::{Path, PathBuf};

use kstash_api::addons::{Addon as AddonCr, Function, Task};
use kstash_runtime::{Addon, Digest, Runtime};
use kube::Api;

use super::not_found_none;

/// Why the module of a task cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// The Addon does not exist.
    #[error("Addon {0} not found")]
    AddonNotFound(String),
    /// The Addon has no such task.
    #[error("Addon {addon} has no {kind} task {task:?}")]
    TaskNotFound {
        /// The Addon.
        addon: String,
        /// backup or restore.
        kind: &'static str,
        /// The task.
        task: String,
    },
    /// The task names no Function.
    #[error("Addon {addon} task {task}: spec.function is empty")]
    NoFunction {
        /// The Addon.
        addon: String,
        /// The task.
        task: String,
    },
    /// The Function does not exist.
    #[error("Function {0} not found")]
    FunctionNotFound(String),
    /// The Function has only container fields.
    #[error("Function {0} has no spec.module: container Functions are unsupported by kstash (add spec.module {{location, sha256}} to run it as a WASM addon)")]
    NoModule(String),
    /// The location form is not supported.
    #[error("Function {function}: spec.module.location {location:?}: {reason}")]
    Location {
        /// The Function.
        function: String,
        /// The location.
        location: String,
        /// Why.
        reason: String,
    },
    /// The pinned digest is malformed.
    #[error("Function {function}: spec.module.sha256 {value:?} must be 64 lowercase hex digits")]
    BadDigest {
        /// The Function.
        function: String,
        /// The value.
        value: String,
    },
    /// The module file cannot be read.
    #[error("Function {function}: reading module {path}: {source}")]
    Read {
        /// The Function.
        function: String,
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The runtime refused the module (digest mismatch, invalid component, …).
    #[error("Function {function}: module {path}: {source}")]
    Load {
        /// The Function.
        function: String,
        /// The file.
        path: String,
        /// The runtime's error.
        #[source]
        source: kstash_runtime::LoadError,
    },
    /// The module does not implement the task.
    #[error("Function {function}: module {name} {version} does not implement task {task:?} (it has: {have})")]
    TaskNotInModule {
        /// The Function.
        function: String,
        /// Module name.
        name: String,
        /// Module version.
        version: String,
        /// The task.
        task: String,
        /// The module's tasks.
        have: String,
    },
    /// An API call failed.
    #[error("reading {what}: {source}")]
    Kube {
        /// What was read.
        what: String,
        /// The error.
        #[source]
        source: kube::Error,
    },
}

/// The candidate files of a module location (pure).
pub fn candidates(
    function: &str,
    location: &str,
    module_dir: Option<&Path>,
) -> Result<Vec<PathBuf>, ModuleError> {
    let err = |reason: &str| ModuleError::Location {
        function: function.to_string(),
        location: location.to_string(),
        reason: reason.to_string(),
    };
    if let Some(name) = location.strip_prefix("builtin:") {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(err("a builtin name is letters, digits, '-' and '_'"));
        }
        let dir = module_dir.ok_or_else(|| {
            err("builtin modules need the operator's module directory (--module-dir)")
        })?;
        return Ok(vec![
            dir.join(format!("{name}.wasm")),
            dir.join(format!("{name}_addon.wasm")),
        ]);
    }
    if location.starts_with("https://") || location.starts_with("http://") {
        return Err(err(
            "remote modules are not supported yet; place the file on the operator's disk and use builtin:<name> or an absolute path",
        ));
    }
    let p = Path::new(location);
    if !p.is_absolute() {
        return Err(err("must be builtin:<name> or an absolute file path"));
    }
    Ok(vec![p.to_path_buf()])
}

/// The pinned digest of `spec.module.sha256` (pure).
pub fn pinned_digest(function: &str, sha256: &str) -> Result<Digest, ModuleError> {
    let bad = || ModuleError::BadDigest {
        function: function.to_string(),
        value: sha256.to_string(),
    };
    if sha256.len() != 64
        || !sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(bad());
    }
    format!("sha256:{sha256}").parse().map_err(|_| bad())
}

/// The addon task to run: which Addon, task and kind.
#[derive(Debug, Clone, Copy)]
pub enum TaskKind {
    /// `spec.backupTasks`.
    Backup,
    /// `spec.restoreTasks`.
    Restore,
}

/// A loaded task: the Addon task definition, the Function, and the loaded module.
#[derive(Clone)]
pub struct LoadedTask {
    /// The Addon's task (parameters with defaults).
    pub task: Task,
    /// The Function.
    pub function: Function,
    /// The loaded module.
    pub addon: Addon,
    /// The module file.
    pub path: PathBuf,
}

/// Resolves `addon`'s `task` → Function → module, and loads it (digest-pinned).
pub async fn load(
    client: &kube::Client,
    runtime: &Runtime,
    module_dir: Option<&Path>,
    addon: &str,
    task: &str,
    kind: TaskKind,
) -> Result<LoadedTask, ModuleError> {
    let kube_err = |what: String| move |source: kube::Error| ModuleError::Kube { what, source };
    let addons: Api<AddonCr> = Api::all(client.clone());
    let a = not_found_none(addons.get(addon).await)
        .map_err(kube_err(format!("Addon {addon}")))?
        .ok_or_else(|| ModuleError::AddonNotFound(addon.to_string()))?;
    let (t, kname) = match kind {
        TaskKind::Backup => (a.spec.backup_task(task), "backup"),
        TaskKind::Restore => (a.spec.restore_task(task), "restore"),
    };
    let t = t.cloned().ok_or_else(|| ModuleError::TaskNotFound {
        addon: addon.to_string(),
        kind: kname,
        task: task.to_string(),
    })?;
    let fname = t
        .function
        .clone()
        .filter(|f| !f.is_empty())
        .ok_or_else(|| ModuleError::NoFunction {
            addon: addon.to_string(),
            task: task.to_string(),
        })?;
    let functions: Api<Function> = Api::all(client.clone());
    let f = not_found_none(functions.get(&fname).await)
        .map_err(kube_err(format!("Function {fname}")))?
        .ok_or_else(|| ModuleError::FunctionNotFound(fname.clone()))?;
    let m = f
        .spec
        .module
        .clone()
        .ok_or_else(|| ModuleError::NoModule(fname.clone()))?;
    let digest = pinned_digest(&fname, &m.sha256)?;
    let cands = candidates(&fname, &m.location, module_dir)?;
    let path = cands
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| ModuleError::Read {
            function: fname.clone(),
            path: cands
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" or "),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        })?;
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|source| ModuleError::Read {
            function: fname.clone(),
            path: path.display().to_string(),
            source,
        })?;
    let loaded = runtime
        .load(&bytes, &digest)
        .await
        .map_err(|source| ModuleError::Load {
            function: fname.clone(),
            path: path.display().to_string(),
            source,
        })?;
    let desc = loaded.description();
    if !desc.tasks.iter().any(|d| d.name == task) {
        return Err(ModuleError::TaskNotInModule {
            function: fname,
            name: desc.name.clone(),
            version: desc.version.clone(),
            task: task.to_string(),
            have: desc
                .tasks
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(LoadedTask {
        task: t,
        function: f,
        addon: loaded,
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let dir = Path::new("/opt/kstash/modules");
        assert_eq!(
            candidates("f", "builtin:elasticsearch", Some(dir)).unwrap(),
            vec![
                dir.join("elasticsearch.wasm"),
                dir.join("elasticsearch_addon.wasm")
            ]
        );
        assert_eq!(
            candidates("f", "/x/y.wasm", None).unwrap(),
            vec![PathBuf::from("/x/y.wasm")]
        );
        let e = candidates(
            "elasticsearch-backup",
            "https://example.com/es.wasm",
            Some(dir),
        )
        .unwrap_err();
        assert!(e
            .to_string()
            .starts_with("Function elasticsearch-backup: spec.module.location \"https://example.com/es.wasm\": remote modules are not supported"));
        assert!(candidates("f", "rel/x.wasm", Some(dir)).is_err());
        assert!(candidates("f", "builtin:../x", Some(dir)).is_err());
        assert!(candidates("f", "builtin:es", None)
            .unwrap_err()
            .to_string()
            .contains("--module-dir"));
    }

    #[test]
    fn digests() {
        let hex = "ab".repeat(32);
        assert_eq!(
            pinned_digest("f", &hex).unwrap().to_string(),
            format!("sha256:{hex}")
        );
        assert_eq!(
            pinned_digest("f", "ABC").unwrap_err().to_string(),
            "Function f: spec.module.sha256 \"ABC\" must be 64 lowercase hex digits"
        );
    }
}
