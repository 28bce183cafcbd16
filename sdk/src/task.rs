//! The [`Addon`] trait an author implements and the [`Task`] handed to each entry point.

use crate::http::{Client, HttpError};
use crate::params::Params;
use crate::{Description, TaskComponents, TaskContext, TaskError, TaskSummary};

/// A kstash addon. Implement it on a unit struct and export it with [`crate::export_addon!`].
pub trait Addon {
    /// Describes the addon: name, version, tasks with their parameters, components produced.
    /// Must not do I/O.
    fn describe() -> Description;
    /// The components each backup task produces (KubeStash snapshot components). The default,
    /// an empty list, means every backup task produces `describe().components`. When a task has
    /// several, the first segment of each output stream's name names its component. Must not do
    /// I/O.
    fn components() -> Vec<TaskComponents> {
        Vec::new()
    }
    /// Runs a task of kind `backup`: read from the target, write [`crate::OutputStream`]s.
    fn backup(task: &Task) -> Result<TaskSummary, TaskError>;
    /// Runs a task of kind `restore`: read [`crate::InputStream`]s, write to the target.
    fn restore(task: &Task) -> Result<TaskSummary, TaskError>;
}

/// One task invocation: its name, parameters and target.
#[derive(Debug)]
pub struct Task {
    name: String,
    params: Params,
    target_url: String,
}

impl Task {
    /// Builds a task from the host's context.
    pub fn from_context(ctx: TaskContext) -> Self {
        Self {
            name: ctx.task,
            params: Params::new(ctx.params),
            target_url: ctx.target_url,
        }
    }

    /// The task name, e.g. `logical-backup`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The task's parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The target's base URL, e.g. `https://es.demo.svc:9200`.
    pub fn target_url(&self) -> &str {
        &self.target_url
    }

    /// An HTTP client for the target. The host attaches the credentials.
    pub fn target(&self) -> Result<Client, HttpError> {
        Client::new(&self.target_url)
    }
}

#[doc(hidden)]
pub fn __run_backup<A: Addon>(ctx: TaskContext) -> Result<TaskSummary, TaskError> {
    A::backup(&Task::from_context(ctx))
}

#[doc(hidden)]
pub fn __run_restore<A: Addon>(ctx: TaskContext) -> Result<TaskSummary, TaskError> {
    A::restore(&Task::from_context(ctx))
}

impl From<std::io::Error> for TaskError {
    fn from(e: std::io::Error) -> Self {
        TaskError::Io(e.to_string())
    }
}

impl From<HttpError> for TaskError {
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::Status { .. } => TaskError::Remote(e.to_string()),
            HttpError::InvalidUrl(_) | HttpError::InvalidHeader(_) => {
                TaskError::Other(e.to_string())
            }
            _ => TaskError::Connect(e.to_string()),
        }
    }
}

impl From<crate::params::ParamError> for TaskError {
    fn from(e: crate::params::ParamError) -> Self {
        TaskError::InvalidParams(e.to_string())
    }
}
