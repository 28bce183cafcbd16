//! `kstash render`: a dry run of auto-backup. Reads a BackupBlueprint and an annotated target
//! from YAML files and prints the BackupConfiguration the autobackup controller would create.
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use clap::Args;
use kstash_api::constants::annotations;
use kstash_api::core::BackupBlueprint;
use kstash_blueprint::{render, NamespaceLabels};
use serde::Deserialize;
use serde_json::Value;

/// Arguments of `kstash render`.
#[derive(Args)]
pub struct RenderArgs {
    /// YAML file holding the BackupBlueprint (the first `kind: BackupBlueprint` document is used).
    #[arg(long, value_name = "FILE")]
    pub blueprint: PathBuf,
    /// YAML file holding the annotated target (the first document carrying
    /// `blueprint.kubestash.com/name` is used).
    #[arg(long, value_name = "FILE")]
    pub target: PathBuf,
}

/// Runs `kstash render`.
pub async fn run(args: RenderArgs) -> anyhow::Result<()> {
    let bp_docs = read_docs(&args.blueprint)?;
    let target_docs = read_docs(&args.target)?;
    let bp_value = bp_docs
        .iter()
        .find(|d| d.get("kind").and_then(Value::as_str) == Some("BackupBlueprint"))
        .ok_or_else(|| {
            anyhow!(
                "{}: no document of kind BackupBlueprint",
                args.blueprint.display()
            )
        })?;
    let blueprint: BackupBlueprint = serde_json::from_value(bp_value.clone())
        .with_context(|| format!("{}: invalid BackupBlueprint", args.blueprint.display()))?;
    let target = target_docs
        .iter()
        .find(|d| {
            d.pointer("/metadata/annotations")
                .and_then(Value::as_object)
                .is_some_and(|a| a.contains_key(annotations::BLUEPRINT_NAME))
        })
        .ok_or_else(|| {
            anyhow!(
                "{}: no object with annotation blueprint.kubestash.com/name",
                args.target.display()
            )
        })?;
    // Namespace objects in either file supply labels for `from: Selector` usage policies.
    let mut ns_labels = NamespaceLabels::new();
    for d in bp_docs.iter().chain(target_docs.iter()) {
        if d.get("kind").and_then(Value::as_str) == Some("Namespace") {
            if let Some(name) = d.pointer("/metadata/name").and_then(Value::as_str) {
                let labels = d
                    .pointer("/metadata/labels")
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter()
                            .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                            .collect()
                    })
                    .unwrap_or_default();
                ns_labels.insert(name.to_string(), labels);
            }
        }
    }
    let bc = render(target, &blueprint, &ns_labels)?;
    print!("{}", serde_yaml::to_string(&bc)?);
    Ok(())
}

/// Every non-empty YAML document of `path`, as JSON values.
fn read_docs(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v =
            Value::deserialize(doc).with_context(|| format!("{}: invalid YAML", path.display()))?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    if docs.is_empty() {
        bail!("{}: no YAML document", path.display());
    }
    Ok(docs)
}
