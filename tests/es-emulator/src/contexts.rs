//! Open search contexts (points in time and scrolls), kept apart from the cluster state so that
//! searches renewing a keep-alive never wait for a bulk holding the store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crate::store::{ScrollState, Snapshot};

/// An open search context.
#[derive(Debug)]
pub struct Context {
    /// The frozen view.
    pub snapshot: Arc<Snapshot>,
    /// When it expires.
    pub expires: Instant,
    /// `Some` for scrolls, `None` for PITs.
    pub scroll: Option<ScrollState>,
}

/// Every open context by id.
#[derive(Debug, Default)]
pub struct Contexts {
    /// Contexts by id.
    pub map: HashMap<String, Context>,
    next: u64,
}

impl Contexts {
    /// Registers a context and returns its id (base64, so clients treat it as opaque).
    pub fn open(&mut self, ctx: Context, kind: &str, cluster_uuid: &str) -> String {
        use base64::Engine as _;
        self.expire();
        self.next += 1;
        let raw = format!("{kind}:{}:{cluster_uuid}", self.next);
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        self.map.insert(id.clone(), ctx);
        id
    }

    /// Drops expired contexts.
    pub fn expire(&mut self) {
        let now = Instant::now();
        self.map.retain(|_, c| c.expires > now);
    }

    /// Shard contexts held by open scrolls (Elasticsearch counts `search.max_open_scroll_context`
    /// per shard).
    pub fn scroll_shards(&self) -> usize {
        self.map
            .values()
            .filter(|c| c.scroll.is_some())
            .map(|c| c.snapshot.shards.len())
            .sum()
    }
}
