//! The `logical-backup-restore` task: reads the dump's files (kstash's or multielasticdump's) and
//! applies them in dependency order: ingest pipelines, ILM policies, component, index and legacy
//! templates; indices (settings/analysis/mappings in one `PUT`, aliases, documents, the deferred
//! settings, closed again if they were closed); data streams; security roles.
//!
//! Every name taken from a file name is validated before the first request, and every document
//! loaded is counted against the dump (and its manifest) and the target's `_count`.

use crate::bulk::{body, examine, Batcher, BulkItem, Op};
use crate::cluster::ClusterInfo;
use crate::error::{AddonError, Result};
use crate::es::{error_reason, error_type, remote_error, Es};
use crate::files::{encode_segment, parse_file_name, DumpType, ParsedName};
use crate::hits::DataLine;
use crate::host::{Level, Method, Request};
use crate::manifest::Manifest;
use crate::meta;
use crate::names::index_name_problem;
use crate::objects::{self, Family};
use crate::options::{Options, Order};
use crate::parts::Part;
use crate::{PartCount, Summary};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

/// The files of one index found in the dump.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexFiles {
    /// Stream name per type.
    pub files: BTreeMap<DumpType, String>,
}

/// What a restore will do, worked out from the stream names alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Indices with their files, filtered by `--match`, in `--order`.
    pub indices: Vec<(String, IndexFiles)>,
    /// Cluster files by family.
    pub cluster: BTreeMap<&'static str, String>,
    /// `.cluster.data_streams.json`.
    pub streams_file: Option<String>,
    /// Data stream documents by stream name (filtered by `--match`).
    pub stream_docs: BTreeMap<String, String>,
    /// `.kstash.manifest.json`.
    pub manifest: Option<String>,
    /// Notes for the log.
    pub notes: Vec<String>,
}

fn refused(file: &str, what: &str, name: &str, why: String) -> AddonError {
    AddonError::Data {
        file: file.to_string(),
        reason: format!("{what} name {name:?} (from the file name) is refused: {why}"),
    }
}

/// Group the dump's stream names (multielasticdump's loader rules plus kstash's own files),
/// validate every name derived from them, filter by `--match` and order by `--order`.
pub fn plan(names: &[String], o: &Options) -> Result<Plan> {
    let mut p = Plan::default();
    let mut by_index: BTreeMap<String, IndexFiles> = BTreeMap::new();
    for name in names {
        match parse_file_name(name) {
            ParsedName::File { index, t } => {
                by_index.entry(index).or_default().files.insert(t, name.clone());
            }
            ParsedName::IndexFile(i) => p.notes.push(format!(
                "{name}: the \"index\" type is not used by kstash; index {i} is created from its settings and mapping files"
            )),
            ParsedName::Unsupported(n) => {
                return Err(AddonError::Data {
                    file: n,
                    reason: "compressed or split dump files (--fsCompress/--fileSize) are not supported".to_string(),
                })
            }
            ParsedName::Cluster(what) => match what.as_str() {
                "data_streams" => p.streams_file = Some(name.clone()),
                w => {
                    if let Some(f) = Family::from_file_what(w) {
                        p.cluster.insert(f.file_what(), name.clone());
                    }
                }
            },
            ParsedName::DataStream(ds) => {
                if let Some(why) = index_name_problem(&ds) {
                    return Err(refused(name, "data stream", &ds, why));
                }
                if o.matcher.is_match(&ds) {
                    p.stream_docs.insert(ds, name.clone());
                }
            }
            ParsedName::Manifest => p.manifest = Some(name.clone()),
            ParsedName::Other => p.notes.push(format!("{name}: not a dump file, ignored")),
        }
    }
    for (index, files) in by_index {
        let file = files.files.values().next().cloned().unwrap_or_default();
        if let Some(why) = index_name_problem(&index) {
            return Err(refused(&file, "index", &index, why));
        }
        let target = o.target_index(&index);
        if let Some(why) = index_name_problem(&target) {
            return Err(refused(&file, "target index", &target, why));
        }
        if o.matcher.is_match(&index) {
            p.indices.push((index, files));
        }
    }
    if o.order == Order::Desc {
        p.indices.reverse();
    }
    Ok(p)
}

/// The objects of one cluster family read from the dump: the family, its file and the
/// `(name, body)` pairs.
type FamilyObjects = (Family, String, Vec<(String, Value)>);

/// Everything read from the dump before the first request.
struct Loaded {
    plan: Plan,
    manifest: Option<Manifest>,
    objects: Vec<FamilyObjects>,
    streams: Vec<Value>,
}

fn load(es: &mut Es, o: &Options) -> Result<Loaded> {
    let names = es
        .host()
        .input_names()
        .map_err(|e| AddonError::io("(list)", e))?;
    let plan = plan(&names, o)?;
    let manifest = match &plan.manifest {
        Some(f) => {
            let v = read_meta(es, f)?;
            Some(
                serde_json::from_value::<Manifest>(v).map_err(|e| AddonError::Data {
                    file: f.clone(),
                    reason: format!("not a kstash manifest: {e}"),
                })?,
            )
        }
        None => None,
    };
    let mut objects = Vec::new();
    for family in Family::ALL {
        if !o.parts.has(family.part()) {
            continue;
        }
        let mut entries = match plan.cluster.get(family.file_what()) {
            Some(f) => {
                let v = read_meta(es, f)?;
                objects::decode(family, f, &v)?
            }
            None => Vec::new(),
        };
        if family == Family::LegacyTemplates {
            // multielasticdump repeats every legacy template in each `<i>.template.json`.
            let mut seen: BTreeSet<String> = entries.iter().map(|(n, _)| n.clone()).collect();
            for (_, files) in &plan.indices {
                let Some(f) = files.files.get(&DumpType::Template) else {
                    continue;
                };
                let v = read_meta(es, f)?;
                for (n, b) in objects::decode(family, f, &v)? {
                    if meta::is_system_template(&n) {
                        continue;
                    }
                    if seen.insert(n.clone()) {
                        entries.push((n, b));
                    }
                }
            }
        }
        if !entries.is_empty() {
            let file = plan
                .cluster
                .get(family.file_what())
                .cloned()
                .unwrap_or_default();
            objects.push((family, file, entries));
        }
    }
    let mut streams = Vec::new();
    if o.parts.has(Part::DataStream) {
        if let Some(f) = &plan.streams_file {
            let v = read_meta(es, f)?;
            for d in v
                .get("data_streams")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let name = d.get("name").and_then(Value::as_str).unwrap_or_default();
                if let Some(why) = index_name_problem(name) {
                    return Err(AddonError::Data {
                        file: f.clone(),
                        reason: format!("data stream name {name:?} is refused: {why}"),
                    });
                }
                if o.matcher.is_match(name) {
                    streams.push(d.clone());
                }
            }
        }
        for ds in plan.stream_docs.keys() {
            if !streams.iter().any(|d| d["name"] == json!(ds)) {
                streams.push(json!({ "name": ds }));
            }
        }
    }
    Ok(Loaded {
        plan,
        manifest,
        objects,
        streams,
    })
}

/// Run the restore.
pub fn run(es: &mut Es, o: &Options) -> Result<Summary> {
    let mut summary = Summary::default();
    let loaded = load(es, o)?;
    let Loaded {
        plan,
        manifest,
        objects,
        streams,
    } = loaded;
    for n in &plan.notes {
        es.log(Level::Info, n);
    }
    let info = ClusterInfo::detect(es)?;
    es.log(
        Level::Info,
        format!(
            "target: {} {}; {} indices, {} data streams, {} object families to restore",
            info.product(),
            info.version,
            plan.indices.len(),
            streams.len(),
            objects.len()
        ),
    );
    if o.delete {
        delete_targets(es, o, &plan, &streams)?;
    }

    // Cluster objects before the indices that use them (security last).
    for (family, file, entries) in objects.iter().filter(|(f, _, _)| *f != Family::Security) {
        restore_objects(es, &info, *family, file, entries, &mut summary)?;
    }

    let mut failures = Vec::new();
    let closed: BTreeSet<String> = manifest
        .as_ref()
        .map(|m| {
            m.indices
                .iter()
                .filter(|(_, e)| e.closed)
                .map(|(n, _)| n.clone())
                .collect()
        })
        .unwrap_or_default();
    for (index, files) in &plan.indices {
        let expected = manifest
            .as_ref()
            .and_then(|m| m.indices.get(index))
            .and_then(|e| e.documents);
        let job = restore_index(
            es,
            o,
            index,
            files,
            expected,
            closed.contains(index),
            &mut summary,
        );
        match job {
            Ok(docs) => {
                summary.indices += 1;
                summary
                    .parts
                    .push(PartCount::new("index", &o.target_index(index), docs));
            }
            Err(e) if o.ignore_child_error => {
                let msg = format!("index {index}: {e} (skipped: --ignoreChildError=true)");
                es.log(Level::Error, &msg);
                summary.warnings.push(msg);
                failures.push(e);
            }
            Err(e) => return Err(e),
        }
    }
    for def in &streams {
        let name = def["name"].as_str().unwrap_or_default().to_string();
        let expected = manifest
            .as_ref()
            .and_then(|m| m.data_streams.get(&name))
            .map(|e| e.documents);
        let file = plan.stream_docs.get(&name).cloned();
        match restore_stream(es, o, def, file.as_deref(), expected, &mut summary) {
            Ok(docs) => summary
                .parts
                .push(PartCount::new("data_stream", &name, docs)),
            Err(e) if o.ignore_child_error => {
                let msg = format!("data stream {name}: {e} (skipped: --ignoreChildError=true)");
                es.log(Level::Error, &msg);
                summary.warnings.push(msg);
                failures.push(e);
            }
            Err(e) => return Err(e),
        }
    }
    let jobs = plan.indices.len() + streams.len();
    if jobs > 0 && failures.len() == jobs {
        return Err(AddonError::Several {
            count: failures.len(),
            first: failures[0].to_string(),
        });
    }
    for (family, file, entries) in objects.iter().filter(|(f, _, _)| *f == Family::Security) {
        restore_objects(es, &info, *family, file, entries, &mut summary)?;
    }
    Ok(summary)
}

fn delete_targets(es: &mut Es, o: &Options, plan: &Plan, streams: &[Value]) -> Result<()> {
    let targets: Vec<String> = plan
        .indices
        .iter()
        .map(|(i, _)| o.target_index(i))
        .collect();
    for chunk in targets.chunks(50) {
        let list: Vec<String> = chunk.iter().map(|t| encode_segment(t)).collect();
        es.ok(&Request::new(
            Method::Delete,
            format!("/{}?ignore_unavailable=true", list.join(",")),
        ))?;
    }
    for d in streams {
        let name = d["name"].as_str().unwrap_or_default();
        let req = Request::new(
            Method::Delete,
            format!("/_data_stream/{}", encode_segment(name)),
        );
        let r = es.send(&req)?;
        if !(200..300).contains(&r.status) && r.status != 404 {
            return Err(remote_error(&req, &r));
        }
    }
    es.log(
        Level::Info,
        format!(
            "--delete: deleted {} target indices and {} data streams (where present)",
            targets.len(),
            streams.len()
        ),
    );
    Ok(())
}

fn restore_objects(
    es: &mut Es,
    info: &ClusterInfo,
    family: Family,
    file: &str,
    entries: &[(String, Value)],
    summary: &mut Summary,
) -> Result<()> {
    let unavailable = match family {
        Family::IlmPolicies => !info.has_ilm(),
        Family::Security => !info.has_xpack_security(),
        Family::ComponentTemplates | Family::IndexTemplates => !info.has_composable_templates(),
        _ => false,
    };
    if unavailable {
        return Err(AddonError::Refused(format!(
            "{file}: {} {}(s) to restore, but {} {} has no API for them; pass --ignoreType={} to restore without them",
            entries.len(),
            family.label(),
            info.product(),
            info.version,
            family.part().name()
        )));
    }
    for (name, body) in entries {
        objects::put(es, family, name, body).map_err(|e| match e {
            AddonError::Remote {
                method,
                path,
                status,
                reason,
            } if family == Family::Security => AddonError::Remote {
                method,
                path,
                status,
                reason: format!("{reason}; pass --ignoreType=security to restore without roles"),
            },
            other => other,
        })?;
    }
    es.log(
        Level::Info,
        format!("{} {}(s) restored", entries.len(), family.label()),
    );
    summary
        .parts
        .push(PartCount::new(family.file_what(), "", entries.len() as u64));
    Ok(())
}

fn read_text(es: &mut Es, name: &str) -> Result<String> {
    let mut r = es
        .host()
        .open_input(name)
        .map_err(|e| AddonError::io(name, e))?;
    let mut s = String::new();
    r.read_to_string(&mut s)
        .map_err(|e| AddonError::io(name, e))?;
    Ok(s)
}

fn read_meta(es: &mut Es, name: &str) -> Result<Value> {
    let text = read_text(es, name)?;
    meta::decode(&text).map_err(|reason| AddonError::Data {
        file: name.to_string(),
        reason,
    })
}

fn data_err(file: &str, reason: impl Into<String>) -> AddonError {
    AddonError::Data {
        file: file.to_string(),
        reason: reason.into(),
    }
}

/// `GET /<t>/_count` (shard failures are an error).
fn count(es: &mut Es, target: &str) -> Result<u64> {
    let req = Request::new(Method::Get, format!("/{}/_count", encode_segment(target)));
    let v = es.ok_json(&req)?;
    crate::reader::check_shards(target, &req, &v)?;
    Ok(v.get("count").and_then(Value::as_u64).unwrap_or(0))
}

/// Restores one index; returns the documents loaded.
fn restore_index(
    es: &mut Es,
    o: &Options,
    index: &str,
    files: &IndexFiles,
    expected: Option<u64>,
    closed: bool,
    summary: &mut Summary,
) -> Result<u64> {
    let target = o.target_index(index);
    let seg = encode_segment(&target);
    let file = |t: DumpType| files.files.get(&t).filter(|_| o.parts.has_type(t)).cloned();

    let settings = match file(DumpType::Settings) {
        Some(n) => {
            let doc = read_meta(es, &n)?;
            Some(meta::restore_settings(&doc).map_err(|r| data_err(&n, r))?)
        }
        None => None,
    };
    let analysis = match file(DumpType::Analyzer) {
        Some(n) => {
            let doc = read_meta(es, &n)?;
            meta::analysis_settings(&doc).map_err(|r| data_err(&n, r))?
        }
        None => None,
    };
    let mappings = match file(DumpType::Mapping) {
        Some(n) => {
            let doc = read_meta(es, &n)?;
            Some(meta::restore_mappings(&doc).map_err(|r| data_err(&n, r))?)
        }
        None => None,
    };

    // Existing index: refuse if it has documents unless --overwrite.
    let head = es.send(&Request::new(Method::Head, format!("/{seg}")))?;
    let mut create = true;
    if head.status == 200 {
        let n = count(es, &target)?;
        if n > 0 && !o.overwrite {
            return Err(AddonError::Refused(format!(
                "index {target} already exists and has {n} documents; restore refuses to mix data. \
                 Pass --overwrite=true (replace it) or --delete=true (delete all restored indices first)"
            )));
        }
        if o.overwrite {
            es.ok(&Request::new(Method::Delete, format!("/{seg}")))?;
            es.log(
                Level::Warn,
                format!("index {target}: existed with {n} documents; deleted (--overwrite=true)"),
            );
        } else {
            create = false;
            es.log(Level::Warn, format!("index {target}: exists and is empty; keeping its settings and adding the mappings"));
        }
    } else if head.status != 404 {
        return Err(remote_error(
            &Request::new(Method::Head, format!("/{seg}")),
            &head,
        ));
    }

    let mut deferred = Map::new();
    if create {
        let mut body = Map::new();
        if let Some(s) = &settings {
            if !s.removed.is_empty() {
                es.log(
                    Level::Debug,
                    format!(
                        "index {target}: settings not restored: {}",
                        s.removed.join(", ")
                    ),
                );
            }
            body.insert("settings".into(), s.create.clone());
            deferred = s.deferred.clone();
        }
        if let Some(a) = &analysis {
            let settings = body
                .entry("settings")
                .or_insert_with(|| json!({"index": {}}));
            settings["index"]["analysis"] = a.clone();
        }
        if let Some(m) = &mappings {
            body.insert("mappings".into(), m.clone());
        }
        es.ok(&Request::json(
            Method::Put,
            format!("/{seg}"),
            &Value::Object(body),
        ))?;
    } else if let Some(m) = &mappings {
        es.ok(&Request::json(Method::Put, format!("/{seg}/_mapping"), m))?;
    }

    if let Some(n) = file(DumpType::Alias) {
        let doc = read_meta(es, &n)?;
        let aliases = meta::restore_aliases(&doc).map_err(|r| data_err(&n, r))?;
        if !aliases.is_empty() {
            let actions: Vec<Value> = aliases
                .into_iter()
                .map(|(alias, opts)| {
                    let mut add = match opts {
                        Value::Object(m) => m,
                        _ => Map::new(),
                    };
                    add.insert("index".into(), Value::String(target.clone()));
                    add.insert("alias".into(), Value::String(alias));
                    json!({ "add": add })
                })
                .collect();
            es.ok(&Request::json(
                Method::Post,
                "/_aliases",
                &json!({ "actions": actions }),
            ))?;
        }
    }

    let mut docs = 0;
    if let Some(n) = file(DumpType::Data) {
        let loaded = load_data(es, o, &target, &n, Op::Index)?;
        summary.documents += loaded.acked;
        summary.bytes += loaded.bytes;
        docs = loaded.acked;
        verify(es, &target, &n, &loaded, expected, true)?;
        if loaded.replaced > 0 {
            let w = format!(
                "index {target}: {} lines of {n} repeated an id already loaded (the later line won)",
                loaded.replaced
            );
            es.log(Level::Warn, &w);
            summary.warnings.push(w);
        }
    }
    if !deferred.is_empty() {
        es.ok(&Request::json(
            Method::Put,
            format!("/{seg}/_settings"),
            &json!({ "index": deferred }),
        ))?;
    }
    if closed && o.parts.has(Part::Closed) {
        es.ok(&Request::new(Method::Post, format!("/{seg}/_close")))?;
        es.log(
            Level::Info,
            format!("index {target}: closed again, as in the dump"),
        );
    }
    Ok(docs)
}

/// Checks one load: lines read = manifest count, and (after a refresh) the target's `_count`
/// = documents created.
fn verify(
    es: &mut Es,
    target: &str,
    file: &str,
    loaded: &LoadStats,
    expected: Option<u64>,
    fresh: bool,
) -> Result<()> {
    if let Some(want) = expected {
        if loaded.lines != want {
            return Err(AddonError::incomplete(
                target,
                format!(
                    "{file} holds {} documents but the dump's manifest lists {want}: the dump is incomplete or was changed",
                    loaded.lines
                ),
            ));
        }
    }
    es.ok(&Request::new(
        Method::Post,
        format!("/{}/_refresh", encode_segment(target)),
    ))?;
    if fresh {
        let n = count(es, target)?;
        let want = loaded.lines - loaded.replaced;
        if n != want {
            return Err(AddonError::incomplete(
                target,
                format!(
                    "{} documents read from {file} ({} acknowledged), but the target counts {n}",
                    want, loaded.acked
                ),
            ));
        }
    }
    Ok(())
}

/// What one data file's load did.
struct LoadStats {
    /// Lines (documents) read.
    lines: u64,
    /// Documents acknowledged.
    acked: u64,
    /// Acknowledged as `updated`: a line repeated an id.
    replaced: u64,
    /// Bytes sent.
    bytes: u64,
}

/// Restores one data stream: created from its template, its write index's mappings added, its
/// documents loaded with `create`.
fn restore_stream(
    es: &mut Es,
    o: &Options,
    def: &Value,
    file: Option<&str>,
    expected: Option<u64>,
    summary: &mut Summary,
) -> Result<u64> {
    let name = def["name"].as_str().unwrap_or_default();
    let seg = encode_segment(name);
    let req = Request::new(Method::Put, format!("/_data_stream/{seg}"));
    let r = es.send(&req)?;
    if !(200..300).contains(&r.status) {
        if error_type(&r.body).as_deref() != Some("resource_already_exists_exception") {
            return Err(AddonError::Remote {
                method: "PUT".into(),
                path: req.path.clone(),
                status: r.status,
                reason: format!(
                    "{}; a data stream is created from its index template, which the dump restores unless --ignoreType=index_template",
                    error_reason(&r.body)
                ),
            });
        }
        let n = count(es, name)?;
        if n > 0 && !o.overwrite {
            return Err(AddonError::Refused(format!(
                "data stream {name} already exists and has {n} documents; restore refuses to mix data. Pass --overwrite=true or --delete=true"
            )));
        }
        if n > 0 {
            es.ok(&Request::new(
                Method::Delete,
                format!("/_data_stream/{seg}"),
            ))?;
            es.ok(&req)?;
            es.log(
                Level::Warn,
                format!(
                    "data stream {name}: existed with {n} documents; deleted (--overwrite=true)"
                ),
            );
        }
    }
    if let Some(props) = def.pointer("/mappings/properties") {
        es.ok(&Request::json(
            Method::Put,
            format!("/{seg}/_mapping"),
            &json!({ "properties": props }),
        ))?;
    }
    let Some(file) = file.filter(|_| o.parts.has(Part::Data)) else {
        return Ok(0);
    };
    let loaded = load_data(es, o, name, file, Op::Create)?;
    summary.documents += loaded.acked;
    summary.bytes += loaded.bytes;
    verify(es, name, file, &loaded, expected, true)?;
    es.log(
        Level::Info,
        format!("data stream {name}: {} documents loaded", loaded.acked),
    );
    Ok(loaded.acked)
}

/// Streams a data file into `_bulk` batches.
fn load_data(es: &mut Es, o: &Options, target: &str, name: &str, op: Op) -> Result<LoadStats> {
    let reader = es
        .host()
        .open_input(name)
        .map_err(|e| AddonError::io(name, e))?;
    let reader = std::io::BufReader::with_capacity(1 << 16, reader);
    let stream = serde_json::Deserializer::from_reader(reader).into_iter::<DataLine>();
    let mut batcher = Batcher::new(o.limit as usize, o.max_bulk_bytes);
    let stage = format!("index {target}");
    let mut out = LoadStats {
        lines: 0,
        acked: 0,
        replaced: 0,
        bytes: 0,
    };
    for (n, line) in stream.enumerate() {
        let line_no = n + 1;
        let line = line.map_err(|e| data_err(name, format!("document {line_no}: {e}")))?;
        out.lines += 1;
        let item = BulkItem::with_op(target, &line, op).map_err(|r| data_err(name, r))?;
        if let Some(batch) = batcher.push(item) {
            send_batch(es, target, batch, &mut out)?;
            es.host().progress(out.acked, None, &stage);
        }
    }
    let rest = batcher.take();
    if !rest.is_empty() {
        send_batch(es, target, rest, &mut out)?;
        es.host().progress(out.acked, None, &stage);
    }
    es.log(
        Level::Info,
        format!("index {target}: {} documents loaded", out.acked),
    );
    Ok(out)
}

/// Send one batch; resend items rejected with 429 (with backoff) until they succeed; fail on
/// any other item error. Default pipelines are skipped (`pipeline=_none`): the documents were
/// processed when they were first indexed.
fn send_batch(
    es: &mut Es,
    target: &str,
    mut batch: Vec<BulkItem>,
    out: &mut LoadStats,
) -> Result<()> {
    let path = format!("/{}/_bulk?pipeline=_none", encode_segment(target));
    let mut attempt = 1;
    let mut resent = false;
    loop {
        let payload = body(&batch);
        out.bytes += payload.len() as u64;
        let req = Request::ndjson(Method::Post, path.clone(), payload);
        let retries_before = es.retries;
        let r = es.send(&req)?;
        // A request sent again after a lost answer or a 5xx may have been applied the first
        // time: its `updated` items are then our own earlier writes, not ids repeated in the
        // file. Only answers to a request sent once count as repeated ids (so a real repeat in a
        // resent request makes the final `_count` check fail rather than pass wrongly).
        // Sticky for the batch: an item answered 429 in a resent request may have been written
        // by the lost first one, so its later `updated` is ours too.
        resent |= es.retries != retries_before;
        if r.status == 413 {
            return Err(AddonError::Remote {
                method: "POST".into(),
                path,
                status: 413,
                reason: format!("{}; lower --maxBulkBytes or --limit", error_reason(&r.body)),
            });
        }
        if !(200..300).contains(&r.status) {
            return Err(remote_error(&req, &r));
        }
        let ex = examine(&r.body, &batch).map_err(|reason| AddonError::Protocol {
            what: format!("POST {path}"),
            reason,
        })?;
        out.acked += ex.ok as u64;
        if !resent {
            out.replaced += (ex.ok - ex.created) as u64;
        }
        if let Some(f) = ex.failed.first() {
            return Err(AddonError::BulkItem {
                index: target.to_string(),
                id: f.id.clone(),
                status: f.status,
                reason: f.reason.clone(),
            });
        }
        if ex.retry.is_empty() {
            return Ok(());
        }
        if attempt >= es.backoff.max_attempts {
            let first = &batch[ex.retry[0]];
            return Err(AddonError::BulkItem {
                index: target.to_string(),
                id: first.id.clone().unwrap_or_else(|| "(generated)".into()),
                status: 429,
                reason: format!(
                    "still rejected after {attempt} attempts ({} documents)",
                    ex.retry.len()
                ),
            });
        }
        let keep: BTreeSet<usize> = ex.retry.iter().copied().collect();
        batch = batch
            .into_iter()
            .enumerate()
            .filter(|(i, _)| keep.contains(i))
            .map(|(_, it)| it)
            .collect();
        let r = es.host().random();
        let d = es.backoff.delay(attempt, r);
        es.log(
            Level::Debug,
            format!(
                "index {target}: {} documents rejected with 429; resending in {d:?}",
                batch.len()
            ),
        );
        es.host().sleep(d);
        es.retries += 1;
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Task;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn plan_groups_files_filters_and_refuses_compressed() {
        let o = Options::parse_args(Task::Restore, "").unwrap();
        let n = names(&[
            "a.json",
            "a.mapping.json",
            "a.settings.json",
            "a.template.json",
            ".kibana.json",
            "b.index.json",
            "b.json",
            "metadata.yaml",
            ".cluster.ilm_policies.json",
            ".cluster.data_streams.json",
            ".datastream.logs-app.json",
            ".kstash.manifest.json",
        ]);
        let p = plan(&n, &o).unwrap();
        let idx: Vec<&str> = p.indices.iter().map(|(i, _)| i.as_str()).collect();
        assert_eq!(idx, ["a", "b"]);
        assert_eq!(p.indices[0].1.files.len(), 4);
        assert_eq!(p.notes.len(), 2);
        assert_eq!(
            p.cluster.get("ilm_policies").map(String::as_str),
            Some(".cluster.ilm_policies.json")
        );
        assert!(p.streams_file.is_some() && p.manifest.is_some());
        assert_eq!(p.stream_docs.keys().collect::<Vec<_>>(), ["logs-app"]);
        assert!(matches!(
            plan(&names(&["a.json.gz"]), &o),
            Err(AddonError::Data { .. })
        ));
    }

    #[test]
    fn crafted_file_names_are_refused_before_any_request() {
        let o = Options::parse_args(Task::Restore, "--match=^.*$").unwrap();
        for bad in [
            "_all.json",
            "*.json",
            "-x.json",
            "+x.mapping.json",
            "a,b.json",
            "A.json",
            ".datastream.*.json",
        ] {
            let e = plan(&names(&[bad]), &o).unwrap_err().to_string();
            assert!(e.contains("is refused"), "{bad}: {e}");
        }
        let o = Options::parse_args(Task::Restore, "--prefix=x --suffix=y").unwrap();
        assert!(plan(&names(&["ok.json"]), &o).is_ok());
    }
}
