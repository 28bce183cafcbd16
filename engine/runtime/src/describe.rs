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
    /// The snapshot components a backup task produces (from `tasks.components`, else the
    /// addon's `components`); empty for restore tasks. With several, the first segment of each
    /// stream name is its component.
    pub components: Vec<String>,
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

    /// Applies `tasks.components`: each listed backup task gets its components, the others
    /// the addon's. Refuses unknown or restore tasks.
    pub(crate) fn apply_components(
        &mut self,
        per_task: Vec<wit::TaskComponents>,
    ) -> Result<(), String> {
        for t in &mut self.tasks {
            if t.kind == TaskKind::Backup {
                t.components = self.components.clone();
            }
        }
        for tc in per_task {
            let t = self
                .tasks
                .iter_mut()
                .find(|t| t.name == tc.task)
                .ok_or_else(|| format!("components(): task {:?} is not described", tc.task))?;
            if t.kind != TaskKind::Backup {
                return Err(format!(
                    "components(): task {:?} is not a backup task",
                    tc.task
                ));
            }
            t.components = tc.components;
        }
        Ok(())
    }

    /// Checks what the host relies on: a name, unique task names, unique param names per task,
    /// valid unique component names, at least one per backup task.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("empty addon name".to_string());
        }
        for t in &self.tasks {
            if t.kind == TaskKind::Backup && t.components.is_empty() {
                return Err(format!("backup task {:?} produces no component", t.name));
            }
            let mut cs = std::collections::HashSet::new();
            for c in &t.components {
                let valid = !c.is_empty()
                    && c.len() <= 63
                    && c.chars()
                        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-');
                if !valid {
                    return Err(format!(
                        "task {:?}: component name {c:?} must be 1 to 63 of [a-z0-9-]",
                        t.name
                    ));
                }
                if !cs.insert(c.as_str()) {
                    return Err(format!("task {:?}: component {c:?} twice", t.name));
                }
            }
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
                    components: Vec::new(),
                })
                .collect(),
        }
    }
}
