//! The addon's self-description, as host types (converted from the WIT record).

use crate::host::bindings::kstash::addon::types as wit;

/// How a parameter's value parses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// Any text.
    Text,
    /// A signed 64-bit integer.
    Integer,
    /// `true` or `false`.
    Boolean,
    /// Comma-separated text items.
    TextList,
}

/// One parameter a task accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamDef {
    /// Parameter name.
    pub name: String,
    /// One line for humans.
    pub description: String,
    /// How the value parses.
    pub kind: ParamKind,
    /// Whether the task fails without it.
    pub required: bool,
    /// Value used when absent.
    pub default_value: Option<String>,
}

/// Whether a task writes streams (backup) or reads them (restore).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// Produces output streams.
    Backup,
    /// Consumes input streams.
    Restore,
}

/// One task an addon offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskDef {
    /// Task name, e.g. `logical-backup`.
    pub name: String,
    /// Backup or restore.
    pub kind: TaskKind,
    /// One line for humans.
    pub description: String,
    /// Its parameters.
    pub params: Vec<ParamDef>,
}

/// What an addon says about itself (`describe()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddonDescription {
    /// Addon name.
    pub name: String,
    /// Addon version.
    pub version: String,
    /// One line for humans.
    pub summary: String,
    /// Its tasks.
    pub tasks: Vec<TaskDef>,
    /// Snapshot components its backups produce, e.g. `dump`.
    pub components: Vec<String>,
}

impl AddonDescription {
    /// The task named `name`.
    pub fn task(&self, name: &str) -> Option<&TaskDef> {
        self.tasks.iter().find(|t| t.name == name)
    }

    /// Checks what the host relies on: a name, unique task names, unique param names per task.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("empty addon name".to_string());
        }
        let mut seen = std::collections::HashSet::new();
        for t in &self.tasks {
            if !seen.insert(t.name.as_str()) {
                return Err(format!("task {:?} is described twice", t.name));
            }
            let mut ps = std::collections::HashSet::new();
            for p in &t.params {
                if !ps.insert(p.name.as_str()) {
                    return Err(format!("task {:?}: parameter {:?} twice", t.name, p.name));
                }
            }
        }
        Ok(())
    }
}

impl From<wit::Description> for AddonDescription {
    fn from(d: wit::Description) -> Self {
        Self {
            name: d.name,
            version: d.version,
            summary: d.summary,
            components: d.components,
            tasks: d
                .tasks
                .into_iter()
                .map(|t| TaskDef {
                    name: t.name,
                    kind: match t.kind {
                        wit::TaskKind::Backup => TaskKind::Backup,
                        wit::TaskKind::Restore => TaskKind::Restore,
                    },
                    description: t.description,
                    params: t
                        .params
                        .into_iter()
                        .map(|p| ParamDef {
                            name: p.name,
                            description: p.description,
                            kind: match p.kind {
                                wit::ParamKind::Text => ParamKind::Text,
                                wit::ParamKind::Integer => ParamKind::Integer,
                                wit::ParamKind::Boolean => ParamKind::Boolean,
                                wit::ParamKind::TextList => ParamKind::TextList,
                            },
                            required: p.required,
                            default_value: p.default_value,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}
