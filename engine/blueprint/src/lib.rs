//! Renders a BackupBlueprint into a BackupConfiguration for an annotated target.
