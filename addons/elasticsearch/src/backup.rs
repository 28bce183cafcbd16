//! The `logical-backup` task: list indices, then write each index's files in
//! multielasticdump's layout (template → settings → mapping → analyzer → alias → data).

use crate::error::{AddonError, Result};
use crate::es::{get, Es};
use crate::files::{encode_segment, file_name, DumpType};
use crate::hits::dump_line;
use crate::host::Level;
use crate::meta::{encode_double, encode_object, filter_dump_settings, is_system_template};
use crate::options::{Options, Order};
use crate::reader::DocReader;
use crate::Summary;
use serde_json::{Map, Value};
use std::io::Write;

/// Index count above which an index is read in slices (when `--parallel` > 1).
pub const SLICE_MIN_DOCS_PER_SLICE: u64 = 10_000;

/// An index selected for backup, with its aliases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// Index name.
    pub index: String,
    /// Its alias names.
    pub aliases: Vec<String>,
}

/// From a `GET /_alias` answer, the indices `--match` selects (by name or alias), ordered.
pub fn select_indices(aliases_answer: &Value, o: &Options) -> Result<Vec<Selected>> {
    let obj = aliases_answer
        .as_object()
        .ok_or_else(|| AddonError::Protocol {
            what: "GET /_alias".to_string(),
            reason: "answer is not an object".to_string(),
        })?;
    let mut out: Vec<Selected> = obj
        .iter()
        .map(|(index, v)| Selected {
            index: index.clone(),
            aliases: v
                .get("aliases")
                .and_then(Value::as_object)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default(),
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

/// Run the backup.
pub fn run(es: &mut Es, o: &Options) -> Result<Summary> {
    let mut summary = Summary::default();
    let aliases = es.ok_json(&get("/_alias"))?;
    let selected = select_indices(&aliases, o)?;
    es.log(
        Level::Info,
        format!(
            "{} of {} indices match --match={}",
            selected.len(),
            aliases.as_object().map_or(0, Map::len),
            o.matcher.source()
        ),
    );
    let templates = if o.types.template {
        let mut t = es.ok_json(&get("/_template"))?;
        if let Some(m) = t.as_object_mut() {
            m.retain(|name, _| !is_system_template(name));
        }
        Some(t)
    } else {
        None
    };
    let mut failures: Vec<AddonError> = Vec::new();
    for s in &selected {
        match backup_index(es, o, &s.index, templates.as_ref(), &mut summary) {
            Ok(()) => summary.indices += 1,
            Err(e) if o.ignore_child_error => {
                let msg = format!("index {}: {e} (skipped: --ignoreChildError=true)", s.index);
                es.log(Level::Error, &msg);
                summary.warnings.push(msg);
                failures.push(e);
            }
            Err(e) => return Err(e),
        }
    }
    if !selected.is_empty() && failures.len() == selected.len() {
        return Err(AddonError::Several {
            count: failures.len(),
            first: failures[0].to_string(),
        });
    }
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

fn backup_index(
    es: &mut Es,
    o: &Options,
    index: &str,
    templates: Option<&Value>,
    summary: &mut Summary,
) -> Result<()> {
    let seg = encode_segment(index);
    if let Some(t) = templates {
        write_file(
            es,
            &file_name(index, DumpType::Template),
            encode_double(t).as_bytes(),
            summary,
        )?;
    }
    if o.types.settings || o.types.analyzer {
        let mut settings = es.ok_json(&get(format!("/{seg}/_settings")))?;
        filter_dump_settings(&mut settings);
        let line = encode_double(&settings);
        if o.types.settings {
            write_file(
                es,
                &file_name(index, DumpType::Settings),
                line.as_bytes(),
                summary,
            )?;
        }
        if o.types.analyzer {
            write_file(
                es,
                &file_name(index, DumpType::Analyzer),
                line.as_bytes(),
                summary,
            )?;
        }
    }
    if o.types.mapping {
        let mapping = es.ok_json(&get(format!("/{seg}/_mapping")))?;
        write_file(
            es,
            &file_name(index, DumpType::Mapping),
            encode_object(&mapping).as_bytes(),
            summary,
        )?;
    }
    if o.types.alias {
        let alias = es.ok_json(&get(format!("/{seg}/_alias")))?;
        write_file(
            es,
            &file_name(index, DumpType::Alias),
            encode_double(&alias).as_bytes(),
            summary,
        )?;
    }
    if o.types.data {
        backup_data(es, o, index, summary)?;
    }
    Ok(())
}

fn backup_data(es: &mut Es, o: &Options, index: &str, summary: &mut Summary) -> Result<()> {
    let name = file_name(index, DumpType::Data);
    let stage = format!("index {index}");
    let mut out = es
        .host()
        .create_output(&name)
        .map_err(|e| AddonError::io(&name, e))?;
    let mut written: u64 = 0;
    let mut skipped: u64 = 0;
    let limit = o.size;
    let slices = slice_count(es, o, index)?;
    let mut buf = Vec::with_capacity(1 << 16);
    for slice_id in 0..slices {
        let slice = (slices > 1).then_some((slice_id, slices));
        let mut reader = DocReader::open(es, index, o.limit, &o.keep_alive, slice)?;
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
                out.write_all(&buf).map_err(|e| AddonError::io(&name, e))?;
                let total = reader.total().map(|t| {
                    let t = t.saturating_sub(o.offset);
                    limit.map_or(t, |l| t.min(l))
                });
                es.host()
                    .progress(written, if slices > 1 { None } else { total }, &stage);
            }
        })();
        reader.close(es);
        result?;
    }
    let n = out.finish().map_err(|e| AddonError::io(&name, e))?;
    summary.bytes += n;
    summary.files += 1;
    summary.documents += written;
    es.log(
        Level::Info,
        format!("index {index}: {written} documents, {n} bytes"),
    );
    Ok(())
}

/// Slices for one index: `--parallel` when the index has at least
/// [`SLICE_MIN_DOCS_PER_SLICE`] documents per slice, else 1.
fn slice_count(es: &mut Es, o: &Options, index: &str) -> Result<u32> {
    if o.parallel <= 1 || o.offset > 0 || o.size.is_some() {
        return Ok(1);
    }
    let v = es.ok_json(&get(format!("/{}/_count", encode_segment(index))))?;
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
    use serde_json::json;

    fn opts(args: &str) -> Options {
        Options::parse_args(Task::Backup, args).unwrap()
    }

    #[test]
    fn selection_by_name_or_alias_sorted() {
        // GET /_alias answer shape: {"<index>":{"aliases":{…}}}
        let answer = json!({
            "zeta": {"aliases": {}},
            ".kibana_1": {"aliases": {".kibana": {}}},
            "alpha": {"aliases": {"current": {}}},
            "kubedb-system": {"aliases": {}},
            "apm-agent-configuration": {"aliases": {}}
        });
        let names = |o: &Options| -> Vec<String> {
            select_indices(&answer, o)
                .unwrap()
                .into_iter()
                .map(|s| s.index)
                .collect()
        };
        assert_eq!(names(&opts("")), ["alpha", "zeta"]);
        assert_eq!(names(&opts("--match=^current$")), ["alpha"]);
        assert_eq!(
            names(&opts("--match=^.*$ --order=desc")),
            [
                "zeta",
                "kubedb-system",
                "apm-agent-configuration",
                "alpha",
                ".kibana_1"
            ]
        );
        assert!(select_indices(&json!([]), &opts("")).is_err());
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
