//! The `logical-backup-restore` task: read the dump's files and load them per index in
//! multielasticdump's order (template, settings/index creation, analyzer, mapping, alias, data).

use crate::bulk::{body, examine, Batcher, BulkItem};
use crate::error::{AddonError, Result};
use crate::es::{error_reason, remote_error, Es};
use crate::files::{encode_segment, parse_file_name, DumpType, ParsedName};
use crate::hits::DataLine;
use crate::host::{Level, Method, Request};
use crate::meta;
use crate::options::{Options, Order};
use crate::Summary;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

/// The files of one index found in the dump.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexFiles {
    /// Stream name per type.
    pub files: BTreeMap<DumpType, String>,
}

/// The restore plan: indices with their files, and notes for the log.
pub type Plan = (Vec<(String, IndexFiles)>, Vec<String>);

/// Group the dump's stream names by index (multielasticdump's loader rules), filtered by
/// `--match` and ordered by `--order`.
pub fn plan(names: &[String], o: &Options) -> Result<Plan> {
    let mut by_index: BTreeMap<String, IndexFiles> = BTreeMap::new();
    let mut notes = Vec::new();
    for name in names {
        match parse_file_name(name) {
            ParsedName::File { index, t } => {
                by_index.entry(index).or_default().files.insert(t, name.clone());
            }
            ParsedName::IndexFile(i) => notes.push(format!(
                "{name}: the \"index\" type is not used by kstash; index {i} is created from its settings and mapping files"
            )),
            ParsedName::Unsupported(n) => {
                return Err(AddonError::Data {
                    file: n,
                    reason: "compressed or split dump files (--fsCompress/--fileSize) are not supported".to_string(),
                })
            }
            ParsedName::Other => notes.push(format!("{name}: not a dump file, ignored")),
        }
    }
    let mut out: Vec<(String, IndexFiles)> = by_index
        .into_iter()
        .filter(|(i, _)| o.matcher.is_match(i))
        .collect();
    if o.order == Order::Desc {
        out.reverse();
    }
    Ok((out, notes))
}

/// Run the restore.
pub fn run(es: &mut Es, o: &Options) -> Result<Summary> {
    let mut summary = Summary::default();
    let names = es
        .host()
        .input_names()
        .map_err(|e| AddonError::io("(list)", e))?;
    let (indices, notes) = plan(&names, o)?;
    for n in notes {
        es.log(Level::Info, n);
    }
    es.log(
        Level::Info,
        format!(
            "{} indices to restore (of {} streams)",
            indices.len(),
            names.len()
        ),
    );
    if o.delete && !indices.is_empty() {
        let targets: Vec<String> = indices.iter().map(|(i, _)| o.target_index(i)).collect();
        for chunk in targets.chunks(50) {
            let list: Vec<String> = chunk.iter().map(|t| encode_segment(t)).collect();
            es.ok(&Request::new(
                Method::Delete,
                format!("/{}?ignore_unavailable=true", list.join(",")),
            ))?;
        }
        es.log(
            Level::Info,
            format!(
                "--delete: deleted {} target indices (where present)",
                targets.len()
            ),
        );
    }
    if o.types.template {
        restore_templates(es, &indices)?;
    }
    let mut failures = Vec::new();
    for (index, files) in &indices {
        match restore_index(es, o, index, files, &mut summary) {
            Ok(()) => summary.indices += 1,
            Err(e) if o.ignore_child_error => {
                let msg = format!("index {index}: {e} (skipped: --ignoreChildError=true)");
                es.log(Level::Error, &msg);
                summary.warnings.push(msg);
                failures.push(e);
            }
            Err(e) => return Err(e),
        }
    }
    if !indices.is_empty() && failures.len() == indices.len() {
        return Err(AddonError::Several {
            count: failures.len(),
            first: failures[0].to_string(),
        });
    }
    Ok(summary)
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

/// PUT every legacy template found in the dump once (the same set is repeated per index).
fn restore_templates(es: &mut Es, indices: &[(String, IndexFiles)]) -> Result<()> {
    let mut seen = BTreeSet::new();
    for (_, files) in indices {
        let Some(name) = files.files.get(&DumpType::Template) else {
            continue;
        };
        let doc = read_meta(es, name)?;
        let Value::Object(templates) = doc else {
            return Err(data_err(name, "templates are not an object"));
        };
        for (tname, body) in templates {
            if !seen.insert(tname.clone()) {
                continue;
            }
            if meta::is_system_template(&tname) {
                es.log(
                    Level::Info,
                    format!(
                        "template {tname} skipped: a system template (elasticdump's templateRegex)"
                    ),
                );
                continue;
            }
            es.ok(&Request::json(
                Method::Put,
                format!("/_template/{}", encode_segment(&tname)),
                &body,
            ))?;
            es.log(Level::Info, format!("template {tname} restored"));
        }
    }
    Ok(())
}

fn restore_index(
    es: &mut Es,
    o: &Options,
    index: &str,
    files: &IndexFiles,
    summary: &mut Summary,
) -> Result<()> {
    let target = o.target_index(index);
    let seg = encode_segment(&target);
    let file = |t: DumpType| files.files.get(&t).filter(|_| o.types.has(t)).cloned();

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
        let count_req = Request::new(Method::Get, format!("/{seg}/_count"));
        let count = es
            .ok_json(&count_req)?
            .get("count")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if count > 0 && !o.overwrite {
            return Err(AddonError::Refused(format!(
                "index {target} already exists and has {count} documents; restore refuses to mix data. \
                 Pass --overwrite=true (replace it) or --delete=true (delete all restored indices first)"
            )));
        }
        if o.overwrite {
            es.ok(&Request::new(Method::Delete, format!("/{seg}")))?;
            es.log(
                Level::Warn,
                format!(
                    "index {target}: existed with {count} documents; deleted (--overwrite=true)"
                ),
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

    let mut blocks = None;
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
            blocks = s.blocks.clone();
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

    if let Some(n) = file(DumpType::Data) {
        let docs = load_data(es, o, &target, &n)?;
        summary.documents += docs.0;
        summary.bytes += docs.1;
    }
    if let Some(b) = blocks {
        es.ok(&Request::json(
            Method::Put,
            format!("/{seg}/_settings"),
            &json!({"index": {"blocks": b}}),
        ))?;
    }
    es.ok(&Request::new(Method::Post, format!("/{seg}/_refresh")))?;
    Ok(())
}

/// Stream `<i>.json` into `_bulk` batches; returns (documents, bytes sent).
fn load_data(es: &mut Es, o: &Options, target: &str, name: &str) -> Result<(u64, u64)> {
    let reader = es
        .host()
        .open_input(name)
        .map_err(|e| AddonError::io(name, e))?;
    let reader = std::io::BufReader::with_capacity(1 << 16, reader);
    let stream = serde_json::Deserializer::from_reader(reader).into_iter::<DataLine>();
    let mut batcher = Batcher::new(o.limit as usize, o.max_bulk_bytes);
    let stage = format!("index {target}");
    let (mut docs, mut bytes) = (0u64, 0u64);
    for (n, line) in stream.enumerate() {
        let line_no = n + 1;
        let line = line.map_err(|e| data_err(name, format!("document {line_no}: {e}")))?;
        let item = BulkItem::from_line(target, &line).map_err(|r| data_err(name, r))?;
        if let Some(batch) = batcher.push(item) {
            bytes += send_batch(es, target, batch, &mut docs)?;
            es.host().progress(docs, None, &stage);
        }
    }
    let rest = batcher.take();
    if !rest.is_empty() {
        bytes += send_batch(es, target, rest, &mut docs)?;
        es.host().progress(docs, None, &stage);
    }
    es.log(
        Level::Info,
        format!("index {target}: {docs} documents loaded"),
    );
    Ok((docs, bytes))
}

/// Send one batch; resend items rejected with 429 (with backoff) until they succeed; fail on
/// any other item error. Returns the bytes sent.
pub fn send_batch(
    es: &mut Es,
    target: &str,
    mut batch: Vec<BulkItem>,
    docs: &mut u64,
) -> Result<u64> {
    let path = format!("/{}/_bulk", encode_segment(target));
    let mut sent_bytes = 0u64;
    let mut attempt = 1;
    loop {
        let payload = body(&batch);
        sent_bytes += payload.len() as u64;
        let req = Request::ndjson(Method::Post, path.clone(), payload);
        let r = es.send(&req)?;
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
        *docs += ex.ok as u64;
        if let Some(f) = ex.failed.first() {
            return Err(AddonError::BulkItem {
                index: target.to_string(),
                id: f.id.clone(),
                status: f.status,
                reason: f.reason.clone(),
            });
        }
        if ex.retry.is_empty() {
            return Ok(sent_bytes);
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

    #[test]
    fn plan_groups_files_filters_and_refuses_compressed() {
        let o = Options::parse_args(Task::Restore, "").unwrap();
        let names: Vec<String> = [
            "a.json",
            "a.mapping.json",
            "a.settings.json",
            "a.template.json",
            ".kibana.json",
            "b.index.json",
            "b.json",
            "metadata.yaml",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (plan, notes) = plan(&names, &o).unwrap();
        let idx: Vec<&str> = plan.iter().map(|(i, _)| i.as_str()).collect();
        assert_eq!(idx, ["a", "b"]);
        assert_eq!(plan[0].1.files.len(), 4);
        assert_eq!(
            plan[1].1.files.keys().collect::<Vec<_>>(),
            [&DumpType::Data]
        );
        assert_eq!(notes.len(), 2);
        let bad = vec!["a.json.gz".to_string()];
        assert!(matches!(
            super::plan(&bad, &o),
            Err(AddonError::Data { .. })
        ));
    }
}
