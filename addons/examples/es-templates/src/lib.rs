//! `elasticsearch-templates`: the worked example of `docs/addon-authoring.md`.
//!
//! Backs up an Elasticsearch cluster's index templates, the part of a cluster that
//! `elasticsearch-addon` (and multielasticdump) leave out: component templates
//! (`/_component_template`), composable index templates (`/_index_template`) and legacy
//! templates (`/_template`). One output stream per family, one template per line:
//! `{"name":"<name>","template":{…the GET answer's body…}}`. The restore PUTs them back in
//! dependency order (components before the index templates composed of them), refusing to
//! replace an existing template unless `overwrite=true`.
//!
//! Build: `cargo build --release --target wasm32-wasip2` (here or in `addons/`).
//! Run:   `kstash addon run --module es_templates_addon.wasm --task templates-backup
//!         --target-url http://127.0.0.1:9200 --out-dir out/`

use std::io::{BufRead, BufReader, Write};

use kstash_sdk::prelude::*;
use serde_json::{json, Value};

const BACKUP: &str = "templates-backup";
const RESTORE: &str = "templates-restore";

/// One family of templates: where it lives in the REST API and which stream holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Component,
    Index,
    Legacy,
}

impl Family {
    /// Dependency order: an index template may be composed of component templates.
    const ALL: [Family; 3] = [Family::Component, Family::Index, Family::Legacy];

    /// The value used in the `types` parameter.
    fn param_value(self) -> &'static str {
        match self {
            Family::Component => "component",
            Family::Index => "index",
            Family::Legacy => "legacy",
        }
    }

    /// REST path of the family (`GET <path>/<names>`, `PUT <path>/<name>`).
    fn path(self) -> &'static str {
        match self {
            Family::Component => "/_component_template",
            Family::Index => "/_index_template",
            Family::Legacy => "/_template",
        }
    }

    /// Output stream (one file of the snapshot).
    fn stream(self) -> &'static str {
        match self {
            Family::Component => "component_templates.ndjson",
            Family::Index => "index_templates.ndjson",
            Family::Legacy => "legacy_templates.ndjson",
        }
    }

    /// Label for logs and errors.
    fn label(self) -> &'static str {
        match self {
            Family::Component => "component template",
            Family::Index => "index template",
            Family::Legacy => "legacy template",
        }
    }

    /// Turns a GET answer into `(name, body)` pairs. Composable families answer
    /// `{"component_templates":[{"name":…,"component_template":{…}}]}` (resp. `index_…`);
    /// legacy templates answer `{"<name>":{…}}`.
    fn parse_answer(self, answer: &Value) -> Result<Vec<(String, Value)>, String> {
        let (list_key, item_key) = match self {
            Family::Component => ("component_templates", "component_template"),
            Family::Index => ("index_templates", "index_template"),
            Family::Legacy => {
                let map = answer.as_object().ok_or("expected a JSON object")?;
                return Ok(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
            }
        };
        let items = answer[list_key]
            .as_array()
            .ok_or_else(|| format!("expected `{list_key}` to be an array"))?;
        items
            .iter()
            .map(|item| {
                let name = item["name"].as_str().ok_or("an item without `name`")?;
                let body = item
                    .get(item_key)
                    .ok_or_else(|| format!("item `{name}` has no `{item_key}`"))?;
                Ok((name.to_string(), body.clone()))
            })
            .collect()
    }
}

/// The `types` parameter: which families, in dependency order.
fn families(params: &Params) -> Result<Vec<Family>, TaskError> {
    let wanted = params.list("types");
    if wanted.is_empty() {
        return match params.get("types") {
            Some(v) => Err(invalid(
                "types",
                v,
                "name at least one of component, index, legacy",
            )),
            None => Ok(Family::ALL.to_vec()),
        };
    }
    for w in &wanted {
        if !Family::ALL.iter().any(|f| f.param_value() == w) {
            return Err(invalid(
                "types",
                w,
                "unknown template type (expected component, index or legacy)",
            ));
        }
    }
    Ok(Family::ALL
        .into_iter()
        .filter(|f| wanted.iter().any(|w| w == f.param_value()))
        .collect())
}

/// The `names` parameter: comma-separated names or `*` patterns, sent as one path segment.
fn name_patterns(params: &Params) -> Result<String, TaskError> {
    let Some(raw) = params.get("names") else {
        return Ok("*".to_string());
    };
    let items = params.list("names");
    if items.is_empty() {
        return Err(invalid(
            "names",
            raw,
            "name at least one template or pattern",
        ));
    }
    for item in &items {
        if let Some(c) = item
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "-_.*+".contains(*c)))
        {
            return Err(invalid(
                "names",
                item,
                &format!("character {c:?} is not allowed in a template name or pattern"),
            ));
        }
    }
    Ok(items.join(","))
}

fn invalid(name: &str, value: &str, reason: &str) -> TaskError {
    TaskError::InvalidParams(format!(
        "parameter `{name}`: invalid value {value:?}: {reason}"
    ))
}

/// System and stack-managed templates are skipped unless `includeSystem=true`: names starting
/// with `.`, and templates whose `_meta.managed` is `true` (Elasticsearch recreates those).
fn is_system(name: &str, body: &Value) -> bool {
    name.starts_with('.') || body["_meta"]["managed"].as_bool() == Some(true)
}

struct Templates;

fn param(name: &str, description: &str, kind: ParamKind, default: &str) -> ParamDef {
    ParamDef {
        name: name.to_string(),
        description: description.to_string(),
        kind,
        required: false,
        default_value: Some(default.to_string()),
    }
}

fn types_param() -> ParamDef {
    param(
        "types",
        "Template families: component, index, legacy",
        ParamKind::TextList,
        "component,index,legacy",
    )
}

impl Addon for Templates {
    fn describe() -> Description {
        Description {
            name: "elasticsearch-templates".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            summary: "Backs up and restores Elasticsearch component, index and legacy templates"
                .to_string(),
            tasks: vec![
                TaskDef {
                    name: BACKUP.to_string(),
                    kind: TaskKind::Backup,
                    description: "One stream per template family, one template per line"
                        .to_string(),
                    params: vec![
                        types_param(),
                        param(
                            "names",
                            "Template names or * patterns, comma-separated",
                            ParamKind::TextList,
                            "*",
                        ),
                        param(
                            "includeSystem",
                            "Also back up .-prefixed and _meta.managed templates",
                            ParamKind::Boolean,
                            "false",
                        ),
                    ],
                },
                TaskDef {
                    name: RESTORE.to_string(),
                    kind: TaskKind::Restore,
                    description: "PUTs the templates back, components first".to_string(),
                    params: vec![
                        types_param(),
                        param(
                            "overwrite",
                            "Replace templates that already exist (otherwise the task fails)",
                            ParamKind::Boolean,
                            "false",
                        ),
                    ],
                },
            ],
            components: vec!["templates".to_string()],
        }
    }

    fn backup(task: &Task) -> Result<TaskSummary, TaskError> {
        // 1. Parameters: every one is checked before the first request.
        let params = task.params();
        params.reject_unknown(&["types", "names", "includeSystem"])?;
        let families = families(params)?;
        let names = name_patterns(params)?;
        let include_system = params.boolean_or("includeSystem", false)?;

        let es = task.target()?;
        let (mut items, mut bytes, mut warnings) = (0u64, 0u64, Vec::new());
        for (i, family) in families.iter().enumerate() {
            // 2. Read: a missing explicit name is a 404, not a failure of the whole task.
            let path = format!("{}/{names}", family.path());
            let resp = es.get(&path).send()?;
            let mut templates = if resp.status() == 404 {
                let w = format!("no {} matches {names:?}", family.label());
                log::warn(&w);
                warnings.push(w);
                Vec::new()
            } else {
                let body = resp.error_for_status()?.bytes()?;
                let answer: Value = serde_json::from_slice(&body).map_err(|e| {
                    TaskError::Remote(format!("GET {path}: the answer is not JSON: {e}"))
                })?;
                family
                    .parse_answer(&answer)
                    .map_err(|e| TaskError::Remote(format!("GET {path}: {e}")))?
            };
            templates.sort_by(|a, b| a.0.cmp(&b.0));

            // 3. Write: one stream per family, one line per template, streamed to the host.
            let mut out = OutputStream::open(family.stream())?;
            let mut kept = 0u64;
            for (name, body) in &templates {
                if !include_system && is_system(name, body) {
                    log::debug(&format!("skipping system {} {name}", family.label()));
                    continue;
                }
                serde_json::to_writer(&mut out, &json!({"name": name, "template": body}))
                    .map_err(|e| TaskError::Io(e.to_string()))?;
                out.write_all(b"\n")?;
                kept += 1;
            }
            bytes += out.finish()?;
            items += kept;
            log::info(&format!("{kept} {}(s) backed up", family.label()));
            progress::report(
                i as u64 + 1,
                Some(families.len() as u64),
                "families",
                "backup",
            );
        }
        Ok(TaskSummary {
            items,
            bytes,
            warnings,
        })
    }

    fn restore(task: &Task) -> Result<TaskSummary, TaskError> {
        let params = task.params();
        params.reject_unknown(&["types", "overwrite"])?;
        let families = families(params)?;
        let overwrite = params.boolean_or("overwrite", false)?;

        let es = task.target()?;
        let available = input_names();
        let (mut items, mut bytes, mut warnings) = (0u64, 0u64, Vec::new());
        for name in &available {
            if !Family::ALL.iter().any(|f| f.stream() == name) {
                let w = format!("ignoring unknown stream {name}");
                log::warn(&w);
                warnings.push(w);
            }
        }
        for family in families {
            if !available.iter().any(|n| n == family.stream()) {
                log::info(&format!("no {} in the snapshot", family.stream()));
                continue;
            }
            // Line by line: memory holds one template, whatever the stream's size.
            let input = BufReader::new(InputStream::open(family.stream())?);
            for (n, line) in input.lines().enumerate() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                let bad =
                    |e: &str| TaskError::Other(format!("{} line {}: {e}", family.stream(), n + 1));
                let v: Value = serde_json::from_str(&line).map_err(|e| bad(&e.to_string()))?;
                let name = v["name"].as_str().ok_or_else(|| bad("no `name`"))?;
                let body = serde_json::to_vec(&v["template"]).map_err(|e| bad(&e.to_string()))?;
                let mut path = format!("{}/{}", family.path(), encode(name));
                if !overwrite {
                    path.push_str("?create=true");
                }
                let resp = es
                    .put(&path)
                    .header("content-type", "application/json")
                    .send_bytes(&body)?;
                if resp.status() == 400 {
                    let text = resp.text()?;
                    if text.contains("already exists") {
                        return Err(TaskError::Remote(format!(
                            "{} `{name}` already exists on the target; \
                             pass overwrite=true to replace it",
                            family.label()
                        )));
                    }
                    return Err(TaskError::Remote(format!(
                        "PUT {path} returned HTTP 400: {text}"
                    )));
                }
                resp.error_for_status()?;
                items += 1;
                bytes += body.len() as u64;
                progress::report(items, None, "templates", "restore");
            }
        }
        Ok(TaskSummary {
            items,
            bytes,
            warnings,
        })
    }
}

/// Percent-encodes a template name for one path segment.
fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.+".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

export_addon!(Templates);
