//! kubectl-plugin verbs: placeholder, replaced by its owner.

/// The plugin verbs (top-level subcommands, so `kubectl kstash <verb>` works).
#[derive(clap::Subcommand)]
pub enum PluginCommand {
    /// Start a BackupSession now.
    Trigger {
        /// BackupConfiguration name.
        name: String,
    },
}

/// Runs a plugin verb.
pub async fn run(_cmd: PluginCommand) -> anyhow::Result<()> {
    anyhow::bail!("plugin verbs are not built yet")
}
