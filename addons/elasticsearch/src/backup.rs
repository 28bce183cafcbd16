//! The `logical-backup` task: the whole cluster by default.
//!
//! 1. `GET /` (Elasticsearch or OpenSearch), then the lists: indices with their aliases
//!    (`GET /_alias`), their open/closed state (`GET /_cat/indices`), data streams.
//! 2. Cluster objects, one `.cluster.<family>.json` file each.
//! 3. Per index, in multielasticdump's layout and order: template → settings → mapping → alias
//!    → data. A closed index is opened for the read and closed again.
//! 4. Per data stream: its definition (in `.cluster.data_streams.json`) and its documents
//!    (`.datastream.<name>.json`), read backing index by backing index.
//! 5. `.kstash.manifest.json` last: the source, the parts, the documents per index.

use crate::cluster::ClusterInfo;
use crate::error::{AddonError, Result};
use crate::es::{get, Es};
use crate::files::{encode_segment, file_name, DumpType};
use crate::hits::dump_line;
use crate::host::{Level, Method, Request};
use crate::manifest::{IndexEntry, Manifest, StreamEntry};
use crate::meta::{encode_double, encode_object, filter_dump_settings};
use crate::names::{cluster_file, data_stream_file, MANIFEST};
use crate::objects::{self, Family};
use crate::options::{Options, Order};
use crate::parts::Part;
use crate::reader::IndexRead;
use crate::{PartCount, Summary};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

/// Documents per slice above which an index is read in slices (when `--parallel` > 1).
pub const SLICE_MIN_DOCS_PER_SLICE: u64 = 10_000;

/// An index selected for backup, with its aliases and state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// Index name.
    pub index: String,
    /// Its alias names.
    pub aliases: Vec<String>,
    /// Closed.
    pub closed: bool,
}

/// From a `GET /_alias` answer, the indices `--match` selects (by name or alias), ordered, without
/// the backing indices of data streams (`backing`), which are read through their stream.
pub fn select_indices(
    aliases_answer: &Value,
    o: &Options,
    backing: &BTreeSet<String>,
    closed: &BTreeSet<String>,
) -> Result<Vec<Selected>> {
    let obj = aliases_answer
        .as_object()
        .ok_or_else(|| AddonError::Protocol {
            what: "GET /_alias".to_string(),
            reason: "answer is not an object".to_string(),
        })?;
    let mut out: Vec<Selected> = obj
        .iter()
        .filter(|(index, _)| !backing.contains(*index))
        .map(|(index, v)| Selected {
            index: index.clone(),
            aliases: v
                .get("aliases")
                .and_then(Value::as_object)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default(),
            closed: closed.contains(index),
        })
        .filter(|s| {
            o.matcher
                .selects(&s.index, s.aliases.iter().map(String::as_str))
        })
        .collect();
    out.sort_by(|a, b| a.index.cmp(&b.index));
    if o.order == Order::Desc {
        out.reverse();
    }
    Ok(out)
}

/// One data stream selected for backup.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectedStream {
    /// Name.
    pub name: String,
    /// Backing indices, oldest first.
    pub indices: Vec<String>,
    /// The `GET /_data_stream` entry.
    pub entry: Value,
}

/// Data streams of a `GET /_data_stream` answer that `--match` selects (system ones never).
pub fn select_streams(answer: &Value, o: &Options) -> Vec<SelectedStream> {
    let mut out: Vec<SelectedStream> = answer
        .get("data_streams")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|d| d.get("system") != Some(&Value::Bool(true)))
        .filter_map(|d| {
            let name = d.get("name")?.as_str()?.to_string();
            let indices = d
                .get("indices")?
                .as_array()?
                .iter()
                .filter_map(|i| i.get("index_name")?.as_str().map(String::from))
                .collect();
            Some(SelectedStream {
                name,
                indices,
                entry: d.clone(),
            })
        })
        .filter(|s| o.matcher.is_match(&s.name))
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    if o.order == Order::Desc {
        out.reverse();
    }
    out
}

/// Every backing index of a `GET /_data_stream` answer.
fn backing_indices(answer: &Value) -> BTreeSet<String> {
    answer
        .get("data_streams")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|d| {
            d.get("indices")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter_map(|i| {
            i.get("index_name")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .collect()
}

/// Closed indices from a `GET /_cat/indices?format=json&h=index,status` answer.
fn closed_indices(answer: &Value) -> BTreeSet<String> {
    answer
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r.get("status").and_then(Value::as_str) == Some("close"))
        .filter_map(|r| r.get("index").and_then(Value::as_str).map(String::from))
        .collect()
}

/// Run the backup.
pub fn run(es: &mut Es, o: &Options) -> Result<Summary> {
    let mut summary = Summary::default();
    let info = ClusterInfo::detect(es)?;
    es.log(
        Level::Info,
        format!("target: {} {}", info.product(), info.version),
    );
    let mut manifest = Manifest::new(&info, o.parts);

    // 1. What there is.
    let aliases = es.ok_json(&get("/_alias?expand_wildcards=all"))?;
    let cat = es.ok_json(&get(
        "/_cat/indices?format=json&h=index,status&expand_wildcards=all",
    ))?;
    let closed = closed_indices(&cat);
    let streams_answer = if info.has_data_streams() {
        es.ok_json(&get("/_data_stream?expand_wildcards=all"))?
    } else {
        json!({"data_streams": []})
    };
    let backing = backing_indices(&streams_answer);
    let mut selected = if o.match_kinds.indices {
        select_indices(&aliases, o, &backing, &closed)?
    } else {
        Vec::new()
    };
    if !o.parts.has(Part::Closed) {
        for s in selected.iter().filter(|s| s.closed) {
            summary.skipped.push(format!(
                "index {}: closed, left out (--ignoreType=closed)",
                s.index
            ));
        }
        selected.retain(|s| !s.closed);
    }
    let streams = if o.match_kinds.data_streams && o.parts.has(Part::DataStream) {
        select_streams(&streams_answer, o)
    } else {
        Vec::new()
    };
    es.log(
        Level::Info,
        format!(
            "{} of {} indices and {} data streams match --match={}",
            selected.len(),
            aliases.as_object().map_or(0, Map::len),
            streams.len(),
            o.matcher.source()
        ),
    );

    // 2. Cluster objects.
    let mut legacy_templates = None;
    for family in Family::ALL {
        if !o.parts.has(family.part()) {
            continue;
        }
        let available = match family {
            Family::IlmPolicies => info.has_ilm(),
            Family::Security => info.has_xpack_security(),
            Family::ComponentTemplates | Family::IndexTemplates => info.has_composable_templates(),
            _ => true,
        };
        if !available {
            let msg = format!(
                "{}s: not available on {} {}, left out",
                family.label(),
                info.product(),
                info.version
            );
            es.log(Level::Info, &msg);
            summary.skipped.push(msg);
            continue;
        }
        let Some(entries) = objects::fetch(es, family)? else {
            summary.skipped.push(format!(
                "{}s: the API is not available on this cluster, left out",
                family.label()
            ));
            continue;
        };
        let content = objects::encode(family, &entries);
        write_file(
            es,
            &cluster_file(family.file_what()),
            (serde_json::to_string(&content).expect("JSON") + "\n").as_bytes(),
            &mut summary,
        )?;
        manifest
            .objects
            .insert(family.file_what().to_string(), entries.len() as u64);
        summary
            .parts
            .push(PartCount::new(family.file_what(), "", entries.len() as u64));
        es.log(
            Level::Info,
            format!("{} {}(s) backed up", entries.len(), family.label()),
        );
        if family == Family::LegacyTemplates {
            legacy_templates = Some(content);
        }
    }

    // 3. Indices.
    let mut failures: Vec<AddonError> = Vec::new();
    for s in &selected {
        match backup_index(es, &info, o, s, legacy_templates.as_ref(), &mut summary) {
            Ok(docs) => {
                summary.indices += 1;
                summary.parts.push(PartCount::new("index", &s.index, docs));
                manifest.indices.insert(
                    s.index.clone(),
                    IndexEntry {
                        documents: o.parts.has(Part::Data).then_some(docs),
                        closed: s.closed,
                    },
                );
            }
            Err(e) if o.ignore_child_error => {
                let msg = format!("index {}: {e} (skipped: --ignoreChildError=true)", s.index);
                es.log(Level::Error, &msg);
                summary.warnings.push(msg);
                failures.push(e);
            }
            Err(e) => return Err(e),
        }
    }

    // 4. Data streams.
    if !streams.is_empty() {
        let mut defs = Vec::new();
        for st in &streams {
            match backup_stream(es, &info, o, st, &mut summary) {
                Ok((docs, def)) => {
                    summary
                        .parts
                        .push(PartCount::new("data_stream", &st.name, docs));
                    manifest
                        .data_streams
                        .insert(st.name.clone(), StreamEntry { documents: docs });
                    defs.push(def);
                }
                Err(e) if o.ignore_child_error => {
                    let msg = format!(
                        "data stream {}: {e} (skipped: --ignoreChildError=true)",
                        st.name
                    );
                    es.log(Level::Error, &msg);
                    summary.warnings.push(msg);
                    failures.push(e);
                }
                Err(e) => return Err(e),
            }
        }
        let content = json!({ "data_streams": defs });
        write_file(
            es,
            &cluster_file("data_streams"),
            (serde_json::to_string(&content).expect("JSON") + "\n").as_bytes(),
            &mut summary,
        )?;
    }
    let jobs = selected.len() + streams.len();
    if jobs > 0 && failures.len() == jobs {
        return Err(AddonError::Several {
            count: failures.len(),
            first: failures[0].to_string(),
        });
    }

    // 5. The manifest, last: its presence says the dump is whole.
    let text = serde_json::to_string(&manifest).expect("JSON") + "\n";
    write_file(es, MANIFEST, text.as_bytes(), &mut summary)?;
    Ok(summary)
}

fn write_file(es: &mut Es, name: &str, content: &[u8], summary: &mut Summary) -> Result<()> {
    let mut out = es
        .host()
        .create_output(name)
        .map_err(|e| AddonError::io(name, e))?;
    out.write_all(content)
        .map_err(|e| AddonError::io(name, e))?;
    let n = out.finish().map_err(|e| AddonError::io(name, e))?;
    summary.bytes += n;
    summary.files += 1;
    Ok(())
}

/// `index.number_of_shards` of a `GET /<i>/_settings` answer (1 when unreadable).
fn shard_count(settings: &Value) -> u32 {
    settings
        .as_object()
        .and_then(|m| m.values().next())
        .and_then(|e| e.pointer("/settings/index/number_of_shards"))
        .and_then(|v| {
            v.as_str()
                .and_then(|s| s.parse().ok())
                .or(v.as_u64().map(|n| n as u32))
        })
        .unwrap_or(1)
}

/// Backs up one index; returns its documents.
fn backup_index(
    es: &mut Es,
    info: &ClusterInfo,
    o: &Options,
    s: &Selected,
    templates: Option<&Value>,
    summary: &mut Summary,
) -> Result<u64> {
    let index = &s.index;
    let seg = encode_segment(index);
    if let Some(t) = templates {
        write_file(
            es,
            &file_name(index, DumpType::Template),
            encode_double(t).as_bytes(),
            summary,
        )?;
    }
    // Settings are read when they are written, or for the shard count OpenSearch reads by.
    let want_settings = o.parts.has(Part::Settings) || o.parts.has(Part::Analyzer);
    let mut settings = if want_settings || info.flavor == crate::cluster::Flavor::OpenSearch {
        es.ok_json(&get(format!("/{seg}/_settings")))?
    } else {
        Value::Null
    };
    let shards = shard_count(&settings);
    if want_settings {
        filter_dump_settings(&mut settings);
        let line = encode_double(&settings);
        if o.parts.has(Part::Settings) {
            write_file(
                es,
                &file_name(index, DumpType::Settings),
                line.as_bytes(),
                summary,
            )?;
        }
        if o.parts.has(Part::Analyzer) {
            write_file(
                es,
                &file_name(index, DumpType::Analyzer),
                line.as_bytes(),
                summary,
            )?;
        }
    }
    if o.parts.has(Part::Mapping) {
        let mapping = es.ok_json(&get(format!("/{seg}/_mapping")))?;
        write_file(
            es,
            &file_name(index, DumpType::Mapping),
            encode_object(&mapping).as_bytes(),
            summary,
        )?;
    }
    if o.parts.has(Part::Alias) {
        let alias = es.ok_json(&get(format!("/{seg}/_alias")))?;
        write_file(
            es,
            &file_name(index, DumpType::Alias),
            encode_double(&alias).as_bytes(),
            summary,
        )?;
    }
    if !o.parts.has(Part::Data) {
        return Ok(0);
    }
    let name = file_name(index, DumpType::Data);
    let mut out = es
        .host()
        .create_output(&name)
        .map_err(|e| AddonError::io(&name, e))?;
    let docs = with_open_index(es, index, s.closed, |es| {
        read_into(es, info, o, index, shards, out.as_mut(), &name)
    })?;
    let n = out.finish().map_err(|e| AddonError::io(&name, e))?;
    summary.bytes += n;
    summary.files += 1;
    summary.documents += docs;
    es.log(
        Level::Info,
        format!("index {index}: {docs} documents, {n} bytes"),
    );
    Ok(docs)
}

/// Runs `f` with `index` open: a closed index is opened first and closed again afterwards,
/// whatever `f` returns.
fn with_open_index<T>(
    es: &mut Es,
    index: &str,
    closed: bool,
    f: impl FnOnce(&mut Es) -> Result<T>,
) -> Result<T> {
    if !closed {
        return f(es);
    }
    let seg = encode_segment(index);
    es.log(
        Level::Warn,
        format!("index {index} is closed: opening it to read its documents, closing it again afterwards"),
    );
    es.ok(&Request::new(
        Method::Post,
        format!("/{seg}/_open?wait_for_active_shards=all"),
    ))?;
    let result = f(es);
    let closed_again = es.ok(&Request::new(Method::Post, format!("/{seg}/_close")));
    match (result, closed_again) {
        (Ok(v), Ok(_)) => Ok(v),
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(AddonError::incomplete(
            index,
            format!("read, but closing it again failed: {e}; close it by hand"),
        )),
    }
}

/// Reads every document of `index` (an index or a backing index) into `out`; returns the count.
fn read_into(
    es: &mut Es,
    info: &ClusterInfo,
    o: &Options,
    index: &str,
    shards: u32,
    out: &mut dyn crate::host::OutputStream,
    stream_name: &str,
) -> Result<u64> {
    let parallel = slice_count(es, o, index)?;
    let mut reader = IndexRead::open(es, info, index, o.limit, &o.keep_alive, shards, parallel)?;
    let stage = format!("index {index}");
    let limit = o.size;
    let (mut written, mut skipped) = (0u64, 0u64);
    let mut buf = Vec::with_capacity(1 << 16);
    let result = (|| -> Result<()> {
        loop {
            let remaining =
                limit.map(|l| l.saturating_sub(written) + o.offset.saturating_sub(skipped));
            if remaining == Some(0) {
                return Ok(());
            }
            let max = remaining.map_or(u32::MAX, |r| r.min(u32::MAX as u64) as u32);
            let Some(page) = reader.next_page(es, max)? else {
                return Ok(());
            };
            buf.clear();
            for hit in page.hits {
                if skipped < o.offset {
                    skipped += 1;
                    continue;
                }
                if limit.is_some_and(|l| written >= l) {
                    break;
                }
                dump_line(&hit, &mut buf);
                written += 1;
            }
            out.write_all(&buf)
                .map_err(|e| AddonError::io(stream_name, e))?;
            let total = (reader.slice_count() == 1).then(|| {
                let t = reader.expected.saturating_sub(o.offset);
                limit.map_or(t, |l| t.min(l))
            });
            es.host().progress(written, total, &stage);
        }
    })();
    let checked = result.and_then(|()| reader.check_complete(written, o.offset, limit));
    if reader.shard_retries > 0 {
        es.log(
            Level::Warn,
            format!(
                "index {index}: {} pages asked again after shard failures",
                reader.shard_retries
            ),
        );
    }
    reader.close(es);
    checked?;
    Ok(written)
}

/// Backs up one data stream: its backing indices' documents into one file; returns the document
/// count and the stream's definition for `.cluster.data_streams.json`.
fn backup_stream(
    es: &mut Es,
    info: &ClusterInfo,
    o: &Options,
    st: &SelectedStream,
    summary: &mut Summary,
) -> Result<(u64, Value)> {
    let name = data_stream_file(&st.name);
    let mut def = st.entry.clone();
    if let Some(write_index) = st.indices.last() {
        let m = es.ok_json(&get(format!("/{}/_mapping", encode_segment(write_index))))?;
        if let Some(mappings) = m.get(write_index).and_then(|e| e.get("mappings")) {
            def["mappings"] = mappings.clone();
        }
    }
    let mut out = es
        .host()
        .create_output(&name)
        .map_err(|e| AddonError::io(&name, e))?;
    let mut docs = 0u64;
    let closed: BTreeMap<String, bool> = {
        let cat = es.ok_json(&get(format!(
            "/_cat/indices/{}?format=json&h=index,status&expand_wildcards=all",
            encode_segment(&format!(".ds-{}-*", st.name))
        )))?;
        closed_indices(&cat)
            .into_iter()
            .map(|i| (i, true))
            .collect()
    };
    for b in &st.indices {
        let shards = if info.flavor == crate::cluster::Flavor::OpenSearch {
            shard_count(&es.ok_json(&get(format!("/{}/_settings", encode_segment(b))))?)
        } else {
            1
        };
        let is_closed = closed.contains_key(b);
        docs += with_open_index(es, b, is_closed, |es| {
            read_into(es, info, o, b, shards, out.as_mut(), &name)
        })?;
    }
    let n = out.finish().map_err(|e| AddonError::io(&name, e))?;
    summary.bytes += n;
    summary.files += 1;
    summary.documents += docs;
    es.log(
        Level::Info,
        format!(
            "data stream {}: {docs} documents from {} backing indices, {n} bytes",
            st.name,
            st.indices.len()
        ),
    );
    Ok((docs, def))
}

/// Slices for one index: `--parallel` when the index has at least
/// [`SLICE_MIN_DOCS_PER_SLICE`] documents per slice, else 1.
fn slice_count(es: &mut Es, o: &Options, index: &str) -> Result<u32> {
    if o.parallel <= 1 || o.offset > 0 || o.size.is_some() {
        return Ok(1);
    }
    let req = get(format!("/{}/_count", encode_segment(index)));
    let v = es.ok_json(&req)?;
    crate::reader::check_shards(index, &req, &v)?;
    let count = v.get("count").and_then(Value::as_u64).unwrap_or(0);
    Ok(slices_for(count, o.parallel))
}

/// Pure rule behind [`slice_count`].
pub fn slices_for(count: u64, parallel: u32) -> u32 {
    let by_size = (count / SLICE_MIN_DOCS_PER_SLICE).min(parallel as u64) as u32;
    by_size.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Task;

    fn opts(args: &str) -> Options {
        Options::parse_args(Task::Backup, args).unwrap()
    }

    #[test]
    fn selection_by_name_or_alias_sorted_without_backing_indices() {
        let answer = json!({
            "zeta": {"aliases": {}},
            ".kibana_1": {"aliases": {".kibana": {}}},
            "alpha": {"aliases": {"current": {}}},
            "kubedb-system": {"aliases": {}},
            "apm-agent-configuration": {"aliases": {}},
            "shut": {"aliases": {}},
            ".ds-logs-x-2024.01.01-000001": {"aliases": {}}
        });
        let backing: BTreeSet<String> = [".ds-logs-x-2024.01.01-000001".to_string()].into();
        let closed: BTreeSet<String> = ["shut".to_string()].into();
        let names = |o: &Options| -> Vec<String> {
            select_indices(&answer, o, &backing, &closed)
                .unwrap()
                .into_iter()
                .map(|s| s.index)
                .collect()
        };
        assert_eq!(names(&opts("")), ["alpha", "shut", "zeta"]);
        assert_eq!(names(&opts("--match=^current$")), ["alpha"]);
        assert_eq!(
            names(&opts("--match=^.*$ --order=desc")),
            [
                "zeta",
                "shut",
                "kubedb-system",
                "apm-agent-configuration",
                "alpha",
                ".kibana_1"
            ]
        );
        let sel = select_indices(&answer, &opts(""), &backing, &closed).unwrap();
        assert!(sel.iter().any(|s| s.index == "shut" && s.closed));
        assert!(select_indices(&json!([]), &opts(""), &backing, &closed).is_err());
    }

    #[test]
    fn streams_selected_by_name_system_ones_never() {
        let answer = json!({"data_streams": [
            {"name": "logs-app", "indices": [{"index_name": ".ds-logs-app-1"}], "system": false},
            {"name": ".fleet-x", "indices": [], "system": true},
            {"name": "metrics-y", "indices": [], "system": false}]});
        let s = select_streams(&answer, &opts("--match=^logs"));
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].indices, [".ds-logs-app-1"]);
        assert_eq!(backing_indices(&answer).len(), 1);
    }

    #[test]
    fn slices_only_for_big_indices() {
        assert_eq!(slices_for(0, 4), 1);
        assert_eq!(slices_for(9_999, 4), 1);
        assert_eq!(slices_for(25_000, 4), 2);
        assert_eq!(slices_for(10_000_000, 4), 4);
        assert_eq!(slices_for(10_000_000, 1), 1);
    }
}
