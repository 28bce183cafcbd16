//! Helpers shared by the integration tests: locating installed tools, reading the store.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kstash_es_emulator::RunningEmulator;
use serde_json::Value;

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

/// A tool under `<repo>/.tools`, or a panic naming the missing tool and how to install it.
pub fn tool(rel: &str) -> PathBuf {
    let p = repo_root().join(".tools").join(rel);
    assert!(
        p.exists(),
        "required tool {} is missing: run scripts/ensure-tools.sh",
        p.display()
    );
    p
}

/// One stored document: source and routing.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDoc {
    /// `_source` parsed.
    pub source: Value,
    /// `_routing`.
    pub routing: Option<String>,
}

/// Every document of `index` in the emulator, by id.
pub fn docs_of(emu: &RunningEmulator, index: &str) -> BTreeMap<String, StoredDoc> {
    let store = emu.api().store();
    let idx = store
        .indices
        .get(index)
        .unwrap_or_else(|| panic!("index {index} is missing"));
    idx.shards
        .iter()
        .flat_map(|s| s.docs.iter().flatten())
        .map(|d| {
            (
                d.id.clone(),
                StoredDoc {
                    source: serde_json::from_slice(&d.source).expect("stored source is JSON"),
                    routing: d.routing.clone(),
                },
            )
        })
        .collect()
}

/// Index names in the emulator.
pub fn index_names(emu: &RunningEmulator) -> Vec<String> {
    emu.api().store().indices.keys().cloned().collect()
}
