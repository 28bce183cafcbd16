//! Durable object storage: a redb database holding every object and a bounded event log, an
//! in-memory copy for reads, and a broadcast channel feeding watches.
//!
//! Every write runs through [`Store::write`], which holds the single writer lock, commits one redb
//! transaction (fsync'd, `Durability::Immediate`) and only then updates memory and notifies
//! watchers, so an acknowledged write survives `kill -9`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::status::ApiError;

const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// How many past events are kept for watch resumption.
pub const HISTORY: usize = 50_000;

/// Watch event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Removed.
    Deleted,
}

impl EventType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
    fn parse(s: &str) -> Self {
        match s {
            "ADDED" => EventType::Added,
            "DELETED" => EventType::Deleted,
            _ => EventType::Modified,
        }
    }
}

/// One change to one object.
#[derive(Debug, Clone)]
pub struct Event {
    /// The resourceVersion of the change.
    pub rv: u64,
    /// The event type.
    pub kind: EventType,
    /// Storage key of the resource.
    pub storage: String,
    /// The object after the change (the last state for deletions, with the deletion's RV).
    pub object: Arc<Value>,
    /// The object before the change.
    pub prev: Option<Arc<Value>>,
}

/// Storage errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database: {0}")]
    Db(String),
}

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(e.to_string())
}

/// The in-memory state.
#[derive(Default)]
pub struct State {
    /// Latest resourceVersion.
    pub rv: u64,
    /// storage → "ns/name" → object.
    pub objects: HashMap<String, BTreeMap<String, Arc<Value>>>,
    /// Recent events, oldest first.
    pub history: VecDeque<Arc<Event>>,
    /// Events at or below this RV are no longer in `history`.
    pub compacted: u64,
}

impl State {
    /// Gets one object.
    pub fn get(&self, storage: &str, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.objects.get(storage)?.get(&obj_key(ns, name)).cloned()
    }
    /// All objects of a resource (optionally in one namespace), in key order.
    pub fn list(&self, storage: &str, ns: Option<&str>) -> Vec<Arc<Value>> {
        let Some(m) = self.objects.get(storage) else {
            return vec![];
        };
        match ns {
            Some(ns) => {
                let prefix = format!("{ns}/");
                m.range(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(&prefix))
                    .map(|(_, v)| v.clone())
                    .collect()
            }
            None => m.values().cloned().collect(),
        }
    }
}

/// `ns/name` (cluster-scoped objects have an empty namespace).
pub fn obj_key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

/// A staged write: objects to put (`Some`) or remove (`None`).
#[derive(Default)]
pub struct Batch {
    /// (storage, ns, name, new object or None for delete, resourceVersion of the change).
    pub ops: Vec<(String, String, String, Option<Value>, u64)>,
}

impl Batch {
    /// Stages a create/update (the object already carries its new resourceVersion `rv`).
    pub fn put(&mut self, storage: &str, ns: &str, name: &str, obj: Value, rv: u64) {
        self.ops
            .push((storage.into(), ns.into(), name.into(), Some(obj), rv));
    }
    /// Stages a removal at resourceVersion `rv`.
    pub fn delete(&mut self, storage: &str, ns: &str, name: &str, rv: u64) {
        self.ops
            .push((storage.into(), ns.into(), name.into(), None, rv));
    }
    /// The staged state of an object, if this batch touches it (`Some(None)` = deleted).
    pub fn staged(&self, storage: &str, ns: &str, name: &str) -> Option<Option<&Value>> {
        self.ops
            .iter()
            .rev()
            .find(|o| o.0 == storage && o.1 == ns && o.2 == name)
            .map(|o| o.3.as_ref())
    }
}

/// The store.
pub struct Store {
    db: redb::Database,
    write_lock: Mutex<()>,
    /// Shared state (read lock for reads).
    pub state: RwLock<State>,
    /// Every committed event.
    pub tx: broadcast::Sender<Arc<Event>>,
}

impl Store {
    /// Opens (or creates) the database at `path` and loads it.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = redb::Database::create(path).map_err(db_err)?;
        {
            let w = db.begin_write().map_err(db_err)?;
            w.open_table(OBJECTS).map_err(db_err)?;
            w.open_table(LOG).map_err(db_err)?;
            w.open_table(META).map_err(db_err)?;
            w.commit().map_err(db_err)?;
        }
        let mut state = State::default();
        {
            let r = db.begin_read().map_err(db_err)?;
            let meta = r.open_table(META).map_err(db_err)?;
            state.rv = meta
                .get("rv")
                .map_err(db_err)?
                .map(|g| g.value())
                .unwrap_or(0);
            let objs = r.open_table(OBJECTS).map_err(db_err)?;
            for item in objs.iter().map_err(db_err)? {
                let (k, v) = item.map_err(db_err)?;
                let key = k.value().to_string();
                let Some((storage, rest)) = key.split_once('\0') else {
                    continue;
                };
                let Ok(obj) = serde_json::from_slice::<Value>(v.value()) else {
                    continue;
                };
                state
                    .objects
                    .entry(storage.to_string())
                    .or_default()
                    .insert(rest.replace('\0', "/"), Arc::new(obj));
            }
            let log = r.open_table(LOG).map_err(db_err)?;
            for item in log.iter().map_err(db_err)? {
                let (k, v) = item.map_err(db_err)?;
                let Ok(e) = serde_json::from_slice::<Value>(v.value()) else {
                    continue;
                };
                state.history.push_back(Arc::new(Event {
                    rv: k.value(),
                    kind: EventType::parse(e["t"].as_str().unwrap_or_default()),
                    storage: e["s"].as_str().unwrap_or_default().to_string(),
                    object: Arc::new(e["o"].clone()),
                    prev: None,
                }));
            }
            state.compacted = state.history.front().map(|e| e.rv - 1).unwrap_or(state.rv);
        }
        let (tx, _) = broadcast::channel(65_536);
        Ok(Self {
            db,
            write_lock: Mutex::new(()),
            state: RwLock::new(state),
            tx,
        })
    }

    /// Latest resourceVersion.
    pub fn rv(&self) -> u64 {
        self.state.read().unwrap_or_else(|e| e.into_inner()).rv
    }

    /// Runs `f` under the writer lock with a read view of the state, then commits what it staged.
    /// `f` assigns resourceVersions through the `next_rv` counter it is given.
    pub fn write<T>(
        &self,
        f: impl FnOnce(&State, &mut u64, &mut Batch) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let _w = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut batch = Batch::default();
        let mut next_rv;
        let out = {
            let st = self.state.read().unwrap_or_else(|e| e.into_inner());
            next_rv = st.rv;
            f(&st, &mut next_rv, &mut batch)?
        };
        if batch.ops.is_empty() {
            return Ok(out);
        }
        self.commit(batch, next_rv).map_err(ApiError::internal)?;
        Ok(out)
    }

    fn commit(&self, batch: Batch, new_rv: u64) -> Result<(), StoreError> {
        let mut events = vec![];
        {
            let st = self.state.read().unwrap_or_else(|e| e.into_inner());
            let w = self.db.begin_write().map_err(db_err)?;
            {
                let mut objs = w.open_table(OBJECTS).map_err(db_err)?;
                let mut log = w.open_table(LOG).map_err(db_err)?;
                let mut meta = w.open_table(META).map_err(db_err)?;
                for (storage, ns, name, obj, rv) in &batch.ops {
                    let rv = *rv;
                    let key = format!("{storage}\0{ns}\0{name}");
                    let prev = st.get(storage, ns, name);
                    let (kind, object) = match obj {
                        Some(o) => {
                            objs.insert(
                                key.as_str(),
                                serde_json::to_vec(o).map_err(db_err)?.as_slice(),
                            )
                            .map_err(db_err)?;
                            (
                                if prev.is_some() {
                                    EventType::Modified
                                } else {
                                    EventType::Added
                                },
                                o.clone(),
                            )
                        }
                        None => {
                            objs.remove(key.as_str()).map_err(db_err)?;
                            let mut last = prev.as_deref().cloned().unwrap_or(Value::Null);
                            // The DELETED event carries the RV of the deletion.
                            if last.is_object() {
                                last["metadata"]["resourceVersion"] = json!(rv.to_string());
                            }
                            (EventType::Deleted, last)
                        }
                    };
                    let rec = json!({"t": kind.as_str(), "s": storage, "o": object});
                    log.insert(rv, serde_json::to_vec(&rec).map_err(db_err)?.as_slice())
                        .map_err(db_err)?;
                    events.push(Event {
                        rv,
                        kind,
                        storage: storage.clone(),
                        object: Arc::new(object),
                        prev,
                    });
                }
                meta.insert("rv", new_rv).map_err(db_err)?;
                // Bound the durable log.
                if log.len().map_err(db_err)? as usize > HISTORY + 1000 {
                    let cut = new_rv.saturating_sub(HISTORY as u64);
                    log.retain_in(..cut, |_, _| false).map_err(db_err)?;
                }
            }
            w.commit().map_err(db_err)?;
        }
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        st.rv = new_rv;
        for ((storage, ns, name, obj, _), ev) in batch.ops.into_iter().zip(events) {
            let m = st.objects.entry(storage).or_default();
            match obj {
                Some(o) => {
                    m.insert(obj_key(&ns, &name), Arc::new(o));
                }
                None => {
                    m.remove(&obj_key(&ns, &name));
                }
            }
            let ev = Arc::new(ev);
            st.history.push_back(ev.clone());
            while st.history.len() > HISTORY {
                if let Some(old) = st.history.pop_front() {
                    st.compacted = old.rv;
                }
            }
            let _ = self.tx.send(ev);
        }
        Ok(())
    }
}
