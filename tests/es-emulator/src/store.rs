//! The in-memory cluster state: indices with shards of documents in insertion order, templates,
//! aliases and open search contexts (PIT and scroll).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::error::{EsError, EsResult};
use crate::mapping;
use crate::settings::{self, FlatSettings};
use crate::util::{fnv1a, glob, now_millis, random_id, SplitMix};

/// `index.version.created` reported for every index (an 8.x index version id).
pub const VERSION_CREATED: &str = "8536000";

/// One stored document.
#[derive(Debug)]
pub struct Doc {
    /// `_id`.
    pub id: String,
    /// `_source` exactly as received.
    pub source: Bytes,
    /// Custom routing, if the document was indexed with one.
    pub routing: Option<String>,
    /// `_version`.
    pub version: u64,
    /// `_seq_no`.
    pub seq_no: u64,
}

/// Slots of a shard in insertion order; `None` marks a deleted or superseded document.
pub type Slots = Arc<Vec<Option<Arc<Doc>>>>;

/// One primary shard.
#[derive(Debug, Default)]
pub struct Shard {
    /// Documents in insertion order (copy-on-write so PIT/scroll snapshots stay frozen).
    pub docs: Slots,
    /// `_id` → slot.
    pub by_id: HashMap<String, usize>,
    /// Number of live documents.
    pub live: usize,
    /// Number of deleted or superseded slots.
    pub deleted: usize,
}

/// One index.
#[derive(Debug)]
pub struct Index {
    /// Name.
    pub name: String,
    /// `index.uuid`.
    pub uuid: String,
    /// Flat settings including the generated ones (uuid, creation_date, provided_name, version).
    pub settings: FlatSettings,
    /// The `mappings` object.
    pub mappings: Map<String, Value>,
    /// Alias name → alias definition (`{}` or filter/routing/is_write_index…).
    pub aliases: BTreeMap<String, Value>,
    /// Primary shards.
    pub shards: Vec<Shard>,
    /// Next `_seq_no`.
    pub next_seq_no: u64,
    /// Closed (`POST /<index>/_close`): metadata stays readable, documents do not.
    pub closed: bool,
    /// The data stream this index backs, if any.
    pub data_stream: Option<String>,
}

impl Index {
    /// Number of live documents.
    pub fn doc_count(&self) -> usize {
        self.shards.iter().map(|s| s.live).sum()
    }

    /// `index.hidden`.
    pub fn hidden(&self) -> bool {
        settings::get_bool(&self.settings, "index.hidden")
    }

    /// `index.number_of_replicas`.
    pub fn replicas(&self) -> usize {
        settings::get_int(&self.settings, "index.number_of_replicas", 1) as usize
    }

    /// `index.max_result_window`.
    pub fn max_result_window(&self) -> i64 {
        settings::get_int(&self.settings, "index.max_result_window", 10_000)
    }

    /// The shard a routing value (or id) lands on.
    pub fn shard_for(&self, routing: &str) -> usize {
        (fnv1a(routing) as usize) % self.shards.len()
    }

    fn write_blocked(&self) -> Option<&'static str> {
        if settings::get_bool(&self.settings, "index.blocks.read_only") {
            Some("FORBIDDEN/5/index read-only (api)")
        } else if settings::get_bool(&self.settings, "index.blocks.write") {
            Some("FORBIDDEN/8/index write (api)")
        } else if settings::get_bool(&self.settings, "index.blocks.read_only_allow_delete") {
            Some("TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, index has read-only-allow-delete block")
        } else {
            None
        }
    }

    /// Looks a document up by id (and routing).
    pub fn get(&self, id: &str, routing: Option<&str>) -> Option<&Arc<Doc>> {
        let shard = &self.shards[self.shard_for(routing.unwrap_or(id))];
        shard
            .by_id
            .get(id)
            .and_then(|slot| shard.docs[*slot].as_ref())
    }
}

/// How a document write treats an existing document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpType {
    /// Create or replace.
    Index,
    /// Create only; an existing id is a 409 conflict.
    Create,
}

/// A successful write.
#[derive(Debug, Clone)]
pub struct WriteOutcome {
    /// Concrete index written to.
    pub index: String,
    /// Document id.
    pub id: String,
    /// New `_version`.
    pub version: u64,
    /// `created`, `updated`, `deleted`, `not_found` or `noop`.
    pub result: &'static str,
    /// `_seq_no`.
    pub seq_no: u64,
    /// HTTP status of the item.
    pub status: u16,
}

/// One shard as seen by a search: frozen slots plus where they come from.
#[derive(Debug, Clone)]
pub struct ShardView {
    /// Index name.
    pub index: Arc<str>,
    /// Shard number inside the index.
    pub shard: u32,
    /// Frozen document slots.
    pub docs: Slots,
    /// Live documents in `docs`.
    pub live: usize,
    /// The index's `max_result_window`.
    pub max_result_window: i64,
    /// The index's mappings when the view was taken (field types for queries).
    pub mappings: Arc<Map<String, Value>>,
}

/// The set of shards a search runs over; a PIT or scroll keeps one frozen.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Shards in order (index name order, then shard number).
    pub shards: Vec<ShardView>,
}

/// Scroll state.
#[derive(Debug)]
pub struct ScrollState {
    /// Matching documents in result order: (shard ordinal in the snapshot, slot).
    pub order: Vec<(u32, u32)>,
    /// Next position in `order`.
    pub pos: usize,
    /// Page size.
    pub size: usize,
    /// Whether `_source` is returned.
    pub source: crate::search::SourceFilter,
    /// Sort values are returned when the scroll is sorted.
    pub sort: Vec<crate::search::SortKey>,
}

/// One data stream: its backing indices, oldest first (the last is the write index).
#[derive(Debug, Clone, PartialEq)]
pub struct DataStream {
    /// Name.
    pub name: String,
    /// The composable template it was created from.
    pub template: String,
    /// Backing index names, oldest first.
    pub indices: Vec<String>,
    /// Generation (the number of the newest backing index).
    pub generation: u64,
    /// `data_stream.hidden` of the template.
    pub hidden: bool,
    /// `data_stream.allow_custom_routing` of the template.
    pub allow_custom_routing: bool,
    /// `_meta` of the template, copied at creation.
    pub meta: Option<Value>,
}

/// One ILM policy.
#[derive(Debug, Clone, PartialEq)]
pub struct IlmPolicy {
    /// The `policy` object as stored.
    pub policy: Value,
    /// Incremented by every PUT.
    pub version: u64,
    /// Last PUT, milliseconds since the epoch.
    pub modified_ms: u64,
}

/// Persistent and transient cluster settings (flat keys).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterSettings {
    /// `persistent`.
    pub persistent: FlatSettings,
    /// `transient`.
    pub transient: FlatSettings,
}

impl ClusterSettings {
    /// A setting's effective value (transient wins).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.transient.get(key).or_else(|| self.persistent.get(key))
    }
}

/// The security realm's native objects (only used when the emulator requires authentication).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Security {
    /// Roles by name (reserved ones carry `metadata._reserved: true`).
    pub roles: BTreeMap<String, Value>,
    /// Role mappings by name.
    pub role_mappings: BTreeMap<String, Value>,
    /// Users by name, as `GET /_security/user` shows them (never a password).
    pub users: BTreeMap<String, Value>,
}

/// The whole cluster state.
#[derive(Debug)]
pub struct Store {
    /// Indices by name.
    pub indices: BTreeMap<String, Index>,
    /// Legacy templates, normalised (`order`, `index_patterns`, `settings`, `mappings`, `aliases`).
    pub templates: BTreeMap<String, Value>,
    /// Composable index templates (the body as stored).
    pub index_templates: BTreeMap<String, Value>,
    /// Component templates (the body as stored).
    pub component_templates: BTreeMap<String, Value>,
    /// Data streams by name.
    pub data_streams: BTreeMap<String, DataStream>,
    /// ILM policies by name.
    pub ilm_policies: BTreeMap<String, IlmPolicy>,
    /// Ingest pipelines by id (the body as stored).
    pub pipelines: BTreeMap<String, Value>,
    /// `_cluster/settings`.
    pub cluster_settings: ClusterSettings,
    /// Roles, role mappings and users.
    pub security: Security,
    /// Cluster uuid.
    pub cluster_uuid: String,
    /// Random source for ids.
    pub rng: SplitMix,
}

impl Store {
    /// An empty cluster; `seed` makes generated ids reproducible.
    pub fn new(seed: u64) -> Self {
        let mut rng = SplitMix(seed ^ 0x5EED);
        let cluster_uuid = random_id(&mut rng, 22);
        Store {
            indices: BTreeMap::new(),
            templates: BTreeMap::new(),
            index_templates: BTreeMap::new(),
            component_templates: BTreeMap::new(),
            data_streams: BTreeMap::new(),
            ilm_policies: BTreeMap::new(),
            pipelines: BTreeMap::new(),
            cluster_settings: ClusterSettings::default(),
            security: Security::default(),
            cluster_uuid,
            rng,
        }
    }

    /// Validates an index name like `MetadataCreateIndexService.validateIndexOrAliasName`.
    pub fn validate_index_name(name: &str) -> EsResult<()> {
        let invalid = |why: &str| {
            Err(EsError::new(
                400,
                "invalid_index_name_exception",
                format!("Invalid index name [{name}], {why}"),
            )
            .with("index_uuid", "_na_")
            .with("index", name))
        };
        if name.is_empty() {
            return invalid("must not be empty");
        }
        if name != name.to_lowercase() {
            return invalid("must be lowercase");
        }
        if name.starts_with('_') || name.starts_with('-') || name.starts_with('+') {
            return invalid("must not start with '_', '-', or '+'");
        }
        if name == "." || name == ".." {
            return invalid("must not be '.' or '..'");
        }
        if let Some(c) = name.chars().find(|c| {
            matches!(
                c,
                '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ' ' | ',' | '#' | ':'
            )
        }) {
            return invalid(&format!(
                "must not contain the following characters [' ','\"','*',',','/','<','>','?','\\\\','|'] (found '{c}')"
            ));
        }
        if name.len() > 255 {
            return invalid(&format!("index name is too long, ({} > 255)", name.len()));
        }
        Ok(())
    }

    /// Whether `name` is an alias of some index.
    pub fn is_alias(&self, name: &str) -> bool {
        self.indices.values().any(|i| i.aliases.contains_key(name))
    }

    /// Creates an index from a create-index body (`settings`, `mappings`, `aliases`), applying
    /// matching templates first. A name matched by a data-stream template is refused, as
    /// Elasticsearch does.
    pub fn create_index(&mut self, name: &str, body: &Value) -> EsResult<()> {
        Self::validate_index_name(name)?;
        if let Some((t, tpl)) = self.best_index_template(name) {
            if tpl.get("data_stream").is_some() {
                return Err(EsError::illegal_argument(format!(
                    "cannot create index with name [{name}], because it matches with template [{t}] that creates data streams only, use create data stream api instead"
                )));
            }
        }
        self.create_index_unchecked(name, body)
    }

    /// The highest-priority composable template whose patterns match `name`.
    pub fn best_index_template(&self, name: &str) -> Option<(&String, &Value)> {
        let mut best: Option<(&String, &Value)> = None;
        for (tname, t) in &self.index_templates {
            if patterns(t).iter().any(|p| glob(p, name)) {
                let prio = t.get("priority").and_then(Value::as_i64).unwrap_or(0);
                let better = best.is_none_or(|(_, b)| {
                    prio > b.get("priority").and_then(Value::as_i64).unwrap_or(0)
                });
                if better {
                    best = Some((tname, t));
                }
            }
        }
        best
    }

    /// [`Self::create_index`] without the data-stream template check.
    pub fn create_index_unchecked(&mut self, name: &str, body: &Value) -> EsResult<()> {
        self.create_index_from(name, name, body)
    }

    /// Creates `name` with the templates that match `template_name` (a backing index gets its
    /// data stream's template).
    pub fn create_index_from(
        &mut self,
        name: &str,
        template_name: &str,
        body: &Value,
    ) -> EsResult<()> {
        Self::validate_index_name(name)?;
        if let Some(existing) = self.indices.get(name) {
            return Err(EsError::new(
                400,
                "resource_already_exists_exception",
                format!("index [{name}/{}] already exists", existing.uuid),
            )
            .with("index_uuid", existing.uuid.clone())
            .with("index", name));
        }
        if self.is_alias(name) {
            return Err(EsError::new(
                400,
                "invalid_index_name_exception",
                format!("Invalid index name [{name}], already exists as alias"),
            )
            .with("index", name));
        }
        let obj = match body {
            Value::Null => Map::new(),
            Value::Object(m) => m.clone(),
            _ => return Err(EsError::parsing("request body must be an object")),
        };
        for k in obj.keys() {
            if !matches!(k.as_str(), "settings" | "mappings" | "aliases") {
                return Err(EsError::parsing(format!(
                    "unknown key [{k}] for create index"
                )));
            }
        }
        let (mut flat, mut mappings, mut aliases) = self.templates_for(template_name)?;
        if template_name != name {
            aliases.clear();
        }
        if let Some(s) = obj.get("settings") {
            let mut user = settings::flatten(s)?;
            settings::validate_for_create(&mut user)?;
            flat.extend(user);
        }
        if let Some(m) = obj.get("mappings") {
            let m = match m.as_object() {
                Some(o) if o.len() == 1 && o.contains_key("_doc") => &o["_doc"],
                _ => m,
            };
            mapping::merge(&mut mappings, m)?;
        }
        if let Some(a) = obj.get("aliases") {
            let a = a
                .as_object()
                .ok_or_else(|| EsError::parsing("[aliases] must be an object"))?;
            for (alias, def) in a {
                aliases.insert(alias.clone(), normalize_alias(def)?);
            }
        }
        for alias in aliases.keys() {
            if self.indices.contains_key(alias) || alias == name {
                return Err(EsError::new(
                    400,
                    "invalid_alias_name_exception",
                    format!("Invalid alias name [{alias}]: an index or data stream exists with the same name as the alias"),
                ));
            }
        }
        let uuid = random_id(&mut self.rng, 22);
        flat.entry("index.number_of_shards".into())
            .or_insert_with(|| json!("1"));
        flat.entry("index.number_of_replicas".into())
            .or_insert_with(|| json!("1"));
        flat.entry("index.routing.allocation.include._tier_preference".into())
            .or_insert_with(|| json!("data_content"));
        flat.entry("index.creation_date".into())
            .or_insert_with(|| json!(now_millis().to_string()));
        flat.insert("index.uuid".into(), json!(uuid));
        flat.insert("index.provided_name".into(), json!(name));
        flat.insert("index.version.created".into(), json!(VERSION_CREATED));
        let shards = settings::get_int(&flat, "index.number_of_shards", 1).max(1) as usize;
        self.indices.insert(
            name.to_string(),
            Index {
                name: name.to_string(),
                uuid,
                settings: flat,
                mappings,
                aliases,
                shards: (0..shards).map(|_| Shard::default()).collect(),
                next_seq_no: 0,
                closed: false,
                data_stream: None,
            },
        );
        Ok(())
    }

    /// Settings, mappings and aliases contributed by the templates matching `name`: the
    /// highest-priority composable template (with its component templates) if any matches,
    /// otherwise every matching legacy template in `order`.
    #[allow(clippy::type_complexity)]
    pub fn templates_for(
        &self,
        name: &str,
    ) -> EsResult<(FlatSettings, Map<String, Value>, BTreeMap<String, Value>)> {
        let mut flat = FlatSettings::new();
        let mut mappings = Map::new();
        let mut aliases = BTreeMap::new();
        let matches = |t: &Value| patterns(t).iter().any(|p| glob(p, name));
        let best = self.best_index_template(name);
        let apply = |tpl: &Value,
                     flat: &mut FlatSettings,
                     mappings: &mut Map<String, Value>,
                     aliases: &mut BTreeMap<String, Value>|
         -> EsResult<()> {
            if let Some(s) = tpl.get("settings") {
                flat.extend(settings::flatten(s)?);
            }
            if let Some(m) = tpl.get("mappings") {
                if m.as_object().is_some_and(|o| !o.is_empty()) {
                    mapping::merge(mappings, m)?;
                }
            }
            if let Some(a) = tpl.get("aliases").and_then(Value::as_object) {
                for (k, v) in a {
                    aliases.insert(k.clone(), normalize_alias(v)?);
                }
            }
            Ok(())
        };
        if let Some((_, t)) = best {
            for c in t
                .get("composed_of")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if let Some(ct) = self
                    .component_templates
                    .get(c)
                    .and_then(|c| c.get("template"))
                {
                    apply(ct, &mut flat, &mut mappings, &mut aliases)?;
                }
            }
            if let Some(tt) = t.get("template") {
                apply(tt, &mut flat, &mut mappings, &mut aliases)?;
            }
        } else {
            let mut legacy: Vec<&Value> = self.templates.values().filter(|t| matches(t)).collect();
            legacy.sort_by_key(|t| t.get("order").and_then(Value::as_i64).unwrap_or(0));
            for t in legacy {
                apply(t, &mut flat, &mut mappings, &mut aliases)?;
            }
        }
        flat.remove("index.hidden");
        Ok((flat, mappings, aliases))
    }

    /// The concrete index a write to `name` goes to (an alias resolves to its write index).
    pub fn write_target(&self, name: &str) -> EsResult<Option<String>> {
        if self.indices.contains_key(name) {
            return Ok(Some(name.to_string()));
        }
        let holders: Vec<(&String, &Value)> = self
            .indices
            .iter()
            .filter_map(|(n, i)| i.aliases.get(name).map(|a| (n, a)))
            .collect();
        match holders.len() {
            0 => Ok(None),
            1 => Ok(Some(holders[0].0.clone())),
            _ => holders
                .iter()
                .find(|(_, a)| a.get("is_write_index") == Some(&Value::Bool(true)))
                .map(|(n, _)| Some((*n).clone()))
                .ok_or_else(|| {
                    EsError::illegal_argument(format!(
                        "no write index is defined for alias [{name}]. The write index may be explicitly disabled using is_write_index=false or the alias points to multiple indices without one being designated as a write index"
                    ))
                }),
        }
    }

    /// Resolves (auto-creating if needed) the index a document write goes to.
    pub fn ensure_write_index(&mut self, name: &str, require_alias: bool) -> EsResult<String> {
        if require_alias && !self.is_alias(name) {
            return Err(EsError::index_not_found(name)
                .with("reason_detail", "require_alias")
                .with_reason(format!("no such index [{name}] and [require_alias] request flag is [true] and [{name}] is not an alias")));
        }
        match self.write_target(name)? {
            Some(n) => Ok(n),
            None => {
                self.create_index(name, &Value::Null)?;
                Ok(name.to_string())
            }
        }
    }

    /// Indexes (creates or replaces) one document. `source` must be a JSON object.
    #[allow(clippy::too_many_arguments)]
    pub fn index_doc(
        &mut self,
        index: &str,
        id: Option<String>,
        source: Bytes,
        parsed: &Value,
        routing: Option<String>,
        op: OpType,
        if_seq_no: Option<u64>,
    ) -> EsResult<WriteOutcome> {
        let id = match id {
            Some(id) => {
                if id.is_empty() {
                    return Err(EsError::validation(
                        "if _id is specified it must not be empty",
                    ));
                }
                if id.len() > 512 {
                    return Err(EsError::validation(&format!(
                        "id [{id}] is too long, must be no longer than 512 bytes but was: {}",
                        id.len()
                    )));
                }
                id
            }
            None => random_id(&mut self.rng, 20),
        };
        if !parsed.is_object() {
            return Err(EsError::new(
                400,
                "document_parsing_exception",
                "[1:1] failed to parse: Malformed content, must start with an object",
            ));
        }
        let idx = self
            .indices
            .get_mut(index)
            .ok_or_else(|| EsError::index_not_found(index))?;
        if idx.closed {
            return Err(crate::resolve::index_closed(index, &idx.uuid));
        }
        if let Some(block) = idx.write_blocked() {
            let status = if block.starts_with("TOO_MANY") {
                429
            } else {
                403
            };
            return Err(EsError::new(
                status,
                "cluster_block_exception",
                format!("index [{index}] blocked by: [{block}];"),
            ));
        }
        let routing_required = idx.mappings.get("_routing").and_then(|r| r.get("required"))
            == Some(&Value::Bool(true));
        if routing_required && routing.is_none() {
            return Err(EsError::new(
                400,
                "routing_missing_exception",
                format!("routing is required for [{index}]/[{id}]"),
            ));
        }
        mapping::apply_document(&mut idx.mappings, parsed, &id)?;
        let shard_no = idx.shard_for(routing.as_deref().unwrap_or(&id));
        let seq_no = idx.next_seq_no;
        let shard = &mut idx.shards[shard_no];
        let existing = shard.by_id.get(&id).copied();
        let mut version = 1;
        if let Some(slot) = existing {
            let old = shard.docs[slot].as_ref().expect("indexed slot is live");
            if op == OpType::Create {
                return Err(EsError::new(
                    409,
                    "version_conflict_engine_exception",
                    format!(
                        "[{id}]: version conflict, document already exists (current version [{}])",
                        old.version
                    ),
                )
                .with("index_uuid", idx.uuid.clone())
                .with("shard", shard_no.to_string())
                .with("index", index));
            }
            if let Some(s) = if_seq_no {
                if s != old.seq_no {
                    return Err(EsError::new(
                        409,
                        "version_conflict_engine_exception",
                        format!("[{id}]: version conflict, required seqNo [{s}], primary term [1]. current document has seqNo [{}] and primary term [1]", old.seq_no),
                    ));
                }
            }
            version = old.version + 1;
            Arc::make_mut(&mut shard.docs)[slot] = None;
            shard.live -= 1;
            shard.deleted += 1;
        } else if if_seq_no.is_some() {
            return Err(EsError::new(
                409,
                "version_conflict_engine_exception",
                format!("[{id}]: version conflict, document does not exist"),
            ));
        }
        let docs = Arc::make_mut(&mut shard.docs);
        docs.push(Some(Arc::new(Doc {
            id: id.clone(),
            source,
            routing,
            version,
            seq_no,
        })));
        shard.by_id.insert(id.clone(), docs.len() - 1);
        shard.live += 1;
        idx.next_seq_no += 1;
        Ok(WriteOutcome {
            index: index.to_string(),
            id,
            version,
            result: if existing.is_some() {
                "updated"
            } else {
                "created"
            },
            seq_no,
            status: if existing.is_some() { 200 } else { 201 },
        })
    }

    /// Deletes one document; a missing document is `not_found` (404), not an error.
    pub fn delete_doc(
        &mut self,
        index: &str,
        id: &str,
        routing: Option<&str>,
    ) -> EsResult<WriteOutcome> {
        let idx = self
            .indices
            .get_mut(index)
            .ok_or_else(|| EsError::index_not_found(index))?;
        if idx.closed {
            return Err(crate::resolve::index_closed(index, &idx.uuid));
        }
        if let Some(block) = idx.write_blocked() {
            return Err(EsError::new(
                403,
                "cluster_block_exception",
                format!("index [{index}] blocked by: [{block}];"),
            ));
        }
        let shard_no = idx.shard_for(routing.unwrap_or(id));
        let seq_no = idx.next_seq_no;
        idx.next_seq_no += 1;
        let shard = &mut idx.shards[shard_no];
        match shard.by_id.remove(id) {
            Some(slot) => {
                let version = shard.docs[slot]
                    .as_ref()
                    .map(|d| d.version + 1)
                    .unwrap_or(1);
                Arc::make_mut(&mut shard.docs)[slot] = None;
                shard.live -= 1;
                shard.deleted += 1;
                Ok(WriteOutcome {
                    index: index.into(),
                    id: id.into(),
                    version,
                    result: "deleted",
                    seq_no,
                    status: 200,
                })
            }
            None => Ok(WriteOutcome {
                index: index.into(),
                id: id.into(),
                version: 1,
                result: "not_found",
                seq_no,
                status: 404,
            }),
        }
    }

    /// A frozen view of the named indices' shards, in index-name and shard order.
    pub fn snapshot(&self, names: &[String]) -> Snapshot {
        self.snapshot_rotated(names, 0)
    }

    /// [`Self::snapshot`] with the shard list rotated left by `rotate` places, so that shard
    /// ordinals (and `_shard_doc` values) differ from another snapshot of the same indices, as
    /// they may in Elasticsearch when a point in time is reopened.
    pub fn snapshot_rotated(&self, names: &[String], rotate: usize) -> Snapshot {
        let mut sorted: Vec<&String> = names.iter().collect();
        sorted.sort();
        let mut shards = Vec::new();
        for n in sorted {
            if let Some(idx) = self.indices.get(n) {
                let name: Arc<str> = Arc::from(n.as_str());
                let mappings = Arc::new(idx.mappings.clone());
                for (i, s) in idx.shards.iter().enumerate() {
                    shards.push(ShardView {
                        index: name.clone(),
                        shard: i as u32,
                        docs: s.docs.clone(),
                        live: s.live,
                        max_result_window: idx.max_result_window(),
                        mappings: mappings.clone(),
                    });
                }
            }
        }
        if !shards.is_empty() {
            let n = rotate % shards.len();
            shards.rotate_left(n);
        }
        Snapshot { shards }
    }
}

impl EsError {
    /// Replaces the reason.
    pub fn with_reason(mut self, reason: String) -> Self {
        self.reason = reason;
        self
    }
}

/// `index_patterns` of a template as a list.
pub fn patterns(t: &Value) -> Vec<String> {
    match t.get("index_patterns") {
        Some(Value::String(s)) => s.split(',').map(|p| p.trim().to_string()).collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

/// Normalises an alias definition: `routing` expands to `index_routing` and `search_routing`.
pub fn normalize_alias(def: &Value) -> EsResult<Value> {
    let mut out = Map::new();
    let Some(obj) = def.as_object() else {
        return Ok(json!({}));
    };
    for (k, v) in obj {
        match k.as_str() {
            "routing" => {
                let r = v
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| v.to_string());
                out.insert("index_routing".into(), json!(r));
                out.insert("search_routing".into(), json!(r));
            }
            "index_routing" | "search_routing" => {
                let r = v
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| v.to_string());
                out.insert(k.clone(), json!(r));
            }
            "filter" | "is_write_index" | "is_hidden" => {
                out.insert(k.clone(), v.clone());
            }
            other => {
                return Err(EsError::illegal_argument(format!(
                    "[alias] unknown field [{other}]"
                )))
            }
        }
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(store: &mut Store, index: &str, id: &str, routing: Option<&str>) -> WriteOutcome {
        let src = json!({"id": id});
        store
            .index_doc(
                index,
                Some(id.into()),
                Bytes::from(src.to_string()),
                &src,
                routing.map(String::from),
                OpType::Index,
                None,
            )
            .unwrap()
    }

    #[test]
    fn create_conflict_and_names() {
        let mut s = Store::new(1);
        s.create_index("a", &Value::Null).unwrap();
        let e = s.create_index("a", &Value::Null).unwrap_err();
        assert_eq!(
            (e.status, e.kind.as_str()),
            (400, "resource_already_exists_exception")
        );
        let e = s.create_index("Upper", &Value::Null).unwrap_err();
        assert_eq!(e.kind, "invalid_index_name_exception");
        assert!(s.create_index("_x", &Value::Null).is_err());
    }

    #[test]
    fn reindexing_moves_a_document_to_the_end_and_snapshots_stay_frozen() {
        let mut s = Store::new(1);
        s.create_index("a", &Value::Null).unwrap();
        doc(&mut s, "a", "1", None);
        doc(&mut s, "a", "2", None);
        let snap = s.snapshot(&["a".to_string()]);
        let w = doc(&mut s, "a", "1", None);
        assert_eq!((w.result, w.version), ("updated", 2));
        let live: Vec<&str> = s.indices["a"].shards[0]
            .docs
            .iter()
            .flatten()
            .map(|d| d.id.as_str())
            .collect();
        assert_eq!(live, ["2", "1"]);
        assert_eq!(snap.shards[0].docs.iter().flatten().count(), 2);
        assert_eq!(snap.shards[0].docs[0].as_ref().unwrap().version, 1);
    }

    #[test]
    fn routing_is_needed_to_find_a_routed_document() {
        let mut s = Store::new(1);
        s.create_index("r", &json!({"settings": {"number_of_shards": 4}}))
            .unwrap();
        for i in 0..20 {
            doc(&mut s, "r", &i.to_string(), Some("user-7"));
        }
        let idx = &s.indices["r"];
        assert_eq!(idx.shards.iter().filter(|sh| sh.live > 0).count(), 1);
        assert_eq!(
            idx.get("3", Some("user-7")).unwrap().routing.as_deref(),
            Some("user-7")
        );
    }

    #[test]
    fn legacy_and_composable_templates_apply_on_create() {
        let mut s = Store::new(1);
        s.templates.insert(
            "t".into(),
            json!({"order": 0, "index_patterns": ["logs-*"], "settings": {"index": {"number_of_shards": "3"}}, "mappings": {"properties": {"m": {"type": "keyword"}}}, "aliases": {"all-logs": {}}}),
        );
        s.create_index("logs-1", &Value::Null).unwrap();
        let i = &s.indices["logs-1"];
        assert_eq!(i.shards.len(), 3);
        assert!(i.aliases.contains_key("all-logs"));
        s.component_templates.insert(
            "c".into(),
            json!({"template": {"settings": {"number_of_replicas": 0}}}),
        );
        s.index_templates.insert("it".into(), json!({"index_patterns": ["logs-*"], "composed_of": ["c"], "priority": 5, "template": {"settings": {"number_of_shards": 2}}}));
        s.create_index("logs-2", &Value::Null).unwrap();
        let i = &s.indices["logs-2"];
        assert_eq!(i.shards.len(), 2);
        assert_eq!(i.replicas(), 0);
        assert!(
            !i.aliases.contains_key("all-logs"),
            "legacy templates are ignored when a composable one matches"
        );
    }
}
