//! kubectl-plugin verbs (`kubectl kstash <verb>` when the binary is installed or symlinked as
//! `kubectl-kstash`): `trigger`, `pause`, `resume`, `unlock`, `download`, `debug` — KubeStash's
//! `kubectl kubestash` commands (spec §10). See `docs/kubectl-plugin.md`.
//!
//! Every verb talks only to the Kubernetes API (and, for `unlock`/`download`, to the bucket of
//! the BackupStorage); no operator is involved.

mod cluster;
mod debug;
mod download;
mod pause;
mod storage;
mod trigger;
mod unlock;

use clap::{Args, Subcommand};

pub use cluster::KubeArgs;

/// The plugin verbs (top-level subcommands, so `kubectl kstash <verb>` works).
#[derive(Subcommand)]
pub enum PluginCommand {
    /// Start a backup now: create a BackupSession for each (selected) session of a
    /// BackupConfiguration, as the scheduler would.
    Trigger(trigger::TriggerArgs),
    /// Pause a BackupConfiguration (`spec.paused: true`): no new scheduled backups.
    Pause(NamedArgs),
    /// Resume a paused BackupConfiguration (`spec.paused: false`).
    Resume(NamedArgs),
    /// Remove restic locks of a Repository's component repositories (stale ones by default).
    Unlock(unlock::UnlockArgs),
    /// Download the files of a Snapshot's components to a local directory.
    Download(download::DownloadArgs),
    /// Print what an operator needs to find out why something is not working.
    Debug(debug::DebugArgs),
}

/// A verb that takes one object name.
#[derive(Args)]
pub struct NamedArgs {
    /// BackupConfiguration name.
    pub name: String,
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// Runs a plugin verb.
pub async fn run(cmd: PluginCommand) -> anyhow::Result<()> {
    match cmd {
        PluginCommand::Trigger(args) => trigger::run(args).await,
        PluginCommand::Pause(args) => pause::run(args, true).await,
        PluginCommand::Resume(args) => pause::run(args, false).await,
        PluginCommand::Unlock(args) => unlock::run(args).await,
        PluginCommand::Download(args) => download::run(args).await,
        PluginCommand::Debug(args) => debug::run(args).await,
    }
}
