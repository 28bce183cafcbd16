//! Helpers shared by the emulator's integration tests: locating installed tools (through
//! kstash-testkit), reading the store.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use kstash_es_emulator::RunningEmulator;
use serde_json::Value;

/// A tool under `<repo>/.tools`, or a panic naming the missing tool and how to install it.
pub fn tool(rel: &str) -> PathBuf {
    kstash_testkit::tool(&format!(".tools/{rel}"))
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
