//! What the addon is: name, tasks and parameters as in KubeStash's catalog.

/// Addon name, as KubeStash's `Addon` object names it.
pub const NAME: &str = "elasticsearch-addon";
/// The snapshot component the backup produces.
pub const COMPONENT: &str = "dump";
/// Backup task name.
pub const BACKUP_TASK: &str = "logical-backup";
/// Restore task name.
pub const RESTORE_TASK: &str = "logical-backup-restore";

/// One parameter definition (mirrors the WIT `param-def`, without SDK types).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// Name.
    pub name: &'static str,
    /// One line for humans.
    pub description: &'static str,
    /// Default value.
    pub default: Option<&'static str>,
    /// Whether it is a boolean (`true`/`false`); otherwise text.
    pub boolean: bool,
}

/// The parameters of both tasks (KubeStash's catalog defaults).
pub fn params() -> Vec<Param> {
    vec![
        Param {
            name: "args",
            description: "multielasticdump options, split on whitespace (see docs/elasticsearch-addon.md)",
            default: Some(default_args()),
            boolean: false,
        },
        Param {
            name: "interimDataDir",
            description: "accepted for KubeStash compatibility and ignored: the dump is streamed, no interim directory is used",
            default: Some("/kubestash-interim/data"),
            boolean: false,
        },
        Param {
            name: "enableCache",
            description: "accepted for KubeStash compatibility and ignored",
            default: Some("true"),
            boolean: true,
        },
        Param {
            name: "scratchDir",
            description: "accepted for KubeStash compatibility and ignored",
            default: Some("/kubestash-tmp"),
            boolean: false,
        },
    ]
}

/// `--match=<KubeStash default>`.
pub fn default_args() -> &'static str {
    // Kept as a literal so it can be a &'static str; checked against the matcher's constant in tests.
    "--match=^(?![.])(?!apm-agent-configuration)(?!kubedb-system).+"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matcher::KUBESTASH_DEFAULT_MATCH;

    #[test]
    fn catalog_defaults() {
        assert_eq!(default_args(), format!("--match={KUBESTASH_DEFAULT_MATCH}"));
        let p = params();
        let names: Vec<_> = p.iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            ["args", "interimDataDir", "enableCache", "scratchDir"]
        );
        assert_eq!(p[1].default, Some("/kubestash-interim/data"));
    }
}
