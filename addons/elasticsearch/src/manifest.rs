//! `.kstash.manifest.json`: what a kstash dump holds, written after everything else. A restore
//! checks the documents it reads against it and restores closed indices closed.

use crate::cluster::ClusterInfo;
use crate::parts::PartSet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The value of [`Manifest::format`].
pub const FORMAT: &str = "kstash-elasticsearch-dump";

/// The manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// Layout version (1).
    pub version: u32,
    /// The cluster the dump was made from.
    pub source: Source,
    /// The parts the backup wrote (`--ignoreType` names).
    pub parts: Vec<String>,
    /// Indices by name.
    #[serde(default)]
    pub indices: BTreeMap<String, IndexEntry>,
    /// Data streams by name.
    #[serde(default)]
    pub data_streams: BTreeMap<String, StreamEntry>,
    /// Cluster objects per family (`.cluster.<family>.json`): how many.
    #[serde(default)]
    pub objects: BTreeMap<String, u64>,
}

/// The source cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// `elasticsearch` or `opensearch`.
    pub product: String,
    /// Its version.
    pub version: String,
}

/// One index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// Documents in `<i>.json` (absent when data was left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documents: Option<u64>,
    /// The index was closed (restore closes it again after loading).
    #[serde(default)]
    pub closed: bool,
}

/// One data stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamEntry {
    /// Documents in `.datastream.<name>.json`.
    pub documents: u64,
}

impl Manifest {
    /// An empty manifest for a backup of `info` with `parts`.
    pub fn new(info: &ClusterInfo, parts: PartSet) -> Manifest {
        Manifest {
            format: FORMAT.to_string(),
            version: 1,
            source: Source {
                product: info.product().to_string(),
                version: info.version.clone(),
            },
            parts: parts.names().into_iter().map(String::from).collect(),
            indices: BTreeMap::new(),
            data_streams: BTreeMap::new(),
            objects: BTreeMap::new(),
        }
    }
}
