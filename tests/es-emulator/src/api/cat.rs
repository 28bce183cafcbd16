//! The `_cat` APIs (`indices`, `aliases`, `count`, `health`): a table of cells rendered as
//! aligned text or JSON, with `h=` (column names, aliases, `*` patterns), `s=` (sort keys,
//! `:asc`/`:desc`), `v` (header line), `help`, `format=json`, `bytes=`.

use serde_json::{json, Map, Value};

use super::{Api, Body, Reply, Request};
use crate::error::{EsError, EsResult};
use crate::util::{glob, now_millis};

/// One column: name, aliases, whether it is shown by default, right-aligned (numbers), help.
struct Col {
    name: &'static str,
    aliases: &'static [&'static str],
    default: bool,
    right: bool,
    help: &'static str,
}

const fn col(
    name: &'static str,
    aliases: &'static [&'static str],
    default: bool,
    right: bool,
    help: &'static str,
) -> Col {
    Col {
        name,
        aliases,
        default,
        right,
        help,
    }
}

/// A cell: `None` renders as an empty text cell and a JSON `null`.
type Row = Vec<Option<String>>;

struct Table {
    cols: &'static [Col],
    rows: Vec<Row>,
}

fn human_bytes(n: u64) -> String {
    const UNITS: &[&str] = &["b", "kb", "mb", "gb", "tb"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}b")
    } else {
        format!("{:.1}{}", v, UNITS[u])
    }
}

fn bytes_cell(req: &Request, n: u64) -> String {
    match req.param("bytes") {
        Some("b") => n.to_string(),
        Some("kb") => (n / 1024).to_string(),
        Some("mb") => (n >> 20).to_string(),
        Some("gb") => (n >> 30).to_string(),
        _ => human_bytes(n),
    }
}

impl Table {
    fn render(mut self, req: &Request) -> EsResult<Reply> {
        if req.flag("help") {
            let mut text = String::new();
            for c in self.cols {
                let aliases = c.aliases.join(",");
                text.push_str(&format!("{:<24} | {:<28} | {}\n", c.name, aliases, c.help));
            }
            return Ok(text_reply(text));
        }
        let display: Vec<usize> = match req.param("h") {
            Some(h) => {
                let mut out = Vec::new();
                for want in h.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    for (i, c) in self.cols.iter().enumerate() {
                        let hit = glob(want, c.name) || c.aliases.contains(&want);
                        if hit && !out.contains(&i) {
                            out.push(i);
                        }
                    }
                }
                out
            }
            None => (0..self.cols.len())
                .filter(|i| self.cols[*i].default)
                .collect(),
        };
        if let Some(sorts) = req.param("s") {
            let mut keys = Vec::new();
            for spec in sorts.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let (name, desc) = match spec.rsplit_once(':') {
                    Some((n, "desc")) => (n, true),
                    Some((n, "asc")) => (n, false),
                    _ => (spec, false),
                };
                let pos = self
                    .cols
                    .iter()
                    .position(|c| c.name == name || c.aliases.contains(&name))
                    .ok_or_else(|| {
                        EsError::illegal_argument(format!(
                            "Unable to sort by unknown sort key `{name}`"
                        ))
                    })?;
                keys.push((pos, desc));
            }
            self.rows.sort_by(|a, b| {
                for (pos, desc) in &keys {
                    let (x, y) = (&a[*pos], &b[*pos]);
                    let o = match (
                        x.as_deref().and_then(|v| v.parse::<f64>().ok()),
                        y.as_deref().and_then(|v| v.parse::<f64>().ok()),
                    ) {
                        (Some(i), Some(j)) => {
                            i.partial_cmp(&j).unwrap_or(std::cmp::Ordering::Equal)
                        }
                        _ => x.cmp(y),
                    };
                    let o = if *desc { o.reverse() } else { o };
                    if o != std::cmp::Ordering::Equal {
                        return o;
                    }
                }
                std::cmp::Ordering::Equal
            });
        }
        if req.param("format") == Some("json") {
            let arr: Vec<Value> = self
                .rows
                .iter()
                .map(|r| {
                    let m: Map<String, Value> = display
                        .iter()
                        .map(|i| (self.cols[*i].name.to_string(), json!(r[*i])))
                        .collect();
                    Value::Object(m)
                })
                .collect();
            return Ok(Reply::ok(Value::Array(arr)));
        }
        let mut lines: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                display
                    .iter()
                    .map(|i| r[*i].clone().unwrap_or_default())
                    .collect()
            })
            .collect();
        if req.flag("v") {
            lines.insert(
                0,
                display
                    .iter()
                    .map(|i| self.cols[*i].name.to_string())
                    .collect(),
            );
        }
        let widths: Vec<usize> = (0..display.len())
            .map(|k| {
                lines
                    .iter()
                    .map(|l| l[k].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut text = String::new();
        for (n, l) in lines.iter().enumerate() {
            let cells: Vec<String> = l
                .iter()
                .enumerate()
                .map(|(k, c)| {
                    let w = widths[k];
                    let header = n == 0 && req.flag("v");
                    if self.cols[display[k]].right && !header {
                        format!("{c:>w$}")
                    } else {
                        format!("{c:<w$}")
                    }
                })
                .collect();
            text.push_str(cells.join(" ").trim_end());
            text.push('\n');
        }
        Ok(text_reply(text))
    }
}

fn text_reply(text: String) -> Reply {
    Reply {
        status: 200,
        body: Body::Raw(text.into(), "text/plain; charset=UTF-8"),
    }
}

const INDEX_COLS: &[Col] = &[
    col("health", &["h"], true, false, "current health status"),
    col("status", &["s"], true, false, "open/close status"),
    col("index", &["i", "idx"], true, false, "index name"),
    col("uuid", &["id", "uuid"], true, false, "index uuid"),
    col(
        "pri",
        &["p", "shards.primary", "shardsPrimary"],
        true,
        true,
        "number of primary shards",
    ),
    col(
        "rep",
        &["r", "shards.replica", "shardsReplica"],
        true,
        true,
        "number of replica shards",
    ),
    col(
        "docs.count",
        &["dc", "docsCount"],
        true,
        true,
        "available docs",
    ),
    col(
        "docs.deleted",
        &["dd", "docsDeleted"],
        true,
        true,
        "deleted docs",
    ),
    col(
        "creation.date",
        &["cd"],
        false,
        true,
        "index creation date (millisecond value)",
    ),
    col(
        "creation.date.string",
        &["cds"],
        false,
        false,
        "index creation date (as string)",
    ),
    col(
        "store.size",
        &["ss", "storeSize"],
        true,
        true,
        "store size of primaries & replicas",
    ),
    col("pri.store.size", &[], true, true, "store size of primaries"),
    col("dataset.size", &[], true, true, "total size of dataset"),
];

/// `GET /_cat/indices[/<index>]`.
pub fn indices(api: &Api, req: &Request, expr: Option<&str>) -> EsResult<Reply> {
    let health = match req.param("health") {
        None => None,
        Some(h @ ("green" | "yellow" | "red")) => Some(h.to_string()),
        Some(other) => {
            return Err(EsError::illegal_argument(format!(
                "unknown health status [{other}]"
            )))
        }
    };
    let store = api.store();
    // Bare `_cat/indices` lists open and closed indices but not hidden ones.
    let names = store.resolve(expr.unwrap_or("*"), req.resolve_opts("open,closed", false)?)?;
    let mut rows = Vec::new();
    for n in names {
        let idx = &store.indices[&n];
        if health.as_deref().is_some_and(|h| h != "green") {
            continue;
        }
        let size: u64 = idx
            .shards
            .iter()
            .flat_map(|s| s.docs.iter().flatten())
            .map(|d| d.source.len() as u64 + 64)
            .sum();
        let total = size * (1 + idx.replicas() as u64);
        let created = idx
            .settings
            .get("index.creation_date")
            .and_then(Value::as_str)
            .unwrap_or("0")
            .to_string();
        let open = !idx.closed;
        let when_open = |v: String| open.then_some(v);
        rows.push(vec![
            Some("green".to_string()),
            Some(if open { "open" } else { "close" }.to_string()),
            Some(n.clone()),
            Some(idx.uuid.clone()),
            Some(idx.shards.len().to_string()),
            Some(idx.replicas().to_string()),
            when_open(idx.doc_count().to_string()),
            when_open(
                idx.shards
                    .iter()
                    .map(|s| s.deleted)
                    .sum::<usize>()
                    .to_string(),
            ),
            Some(created.clone()),
            Some(iso_millis(created.parse().unwrap_or(0))),
            when_open(bytes_cell(req, total)),
            when_open(bytes_cell(req, size)),
            when_open(bytes_cell(req, size)),
        ]);
    }
    Table {
        cols: INDEX_COLS,
        rows,
    }
    .render(req)
}

const ALIAS_COLS: &[Col] = &[
    col("alias", &["a"], true, false, "alias name"),
    col("index", &["i", "idx"], true, false, "index alias points to"),
    col("filter", &["f", "fi"], true, false, "filter"),
    col(
        "routing.index",
        &["ri", "routingIndex"],
        true,
        false,
        "index routing",
    ),
    col(
        "routing.search",
        &["rs", "routingSearch"],
        true,
        false,
        "search routing",
    ),
    col(
        "is_write_index",
        &["w", "isWriteIndex"],
        true,
        false,
        "write index",
    ),
];

/// `GET /_cat/aliases[/<name>]`.
pub fn aliases(api: &Api, req: &Request, name: Option<&str>) -> EsResult<Reply> {
    let store = api.store();
    let patterns: Option<Vec<&str>> = name.map(|n| n.split(',').collect());
    let mut rows = Vec::new();
    for (index, idx) in &store.indices {
        for (alias, def) in &idx.aliases {
            if patterns
                .as_ref()
                .is_some_and(|ps| !ps.iter().any(|p| glob(p, alias)))
            {
                continue;
            }
            let s = |k: &str| {
                Some(
                    def.get(k)
                        .map(|v| {
                            v.as_str()
                                .map(String::from)
                                .unwrap_or_else(|| v.to_string())
                        })
                        .unwrap_or_else(|| "-".into()),
                )
            };
            rows.push(vec![
                Some(alias.clone()),
                Some(index.clone()),
                Some(
                    if def.get("filter").is_some() {
                        "*"
                    } else {
                        "-"
                    }
                    .to_string(),
                ),
                s("index_routing"),
                s("search_routing"),
                s("is_write_index"),
            ]);
        }
    }
    rows.sort();
    Table {
        cols: ALIAS_COLS,
        rows,
    }
    .render(req)
}

const COUNT_COLS: &[Col] = &[
    col(
        "epoch",
        &["t", "time"],
        true,
        true,
        "seconds since 1970-01-01 00:00:00",
    ),
    col(
        "timestamp",
        &["ts", "hms", "hhmmss"],
        true,
        false,
        "time in HH:MM:SS",
    ),
    col(
        "count",
        &["dc", "docs.count", "docsCount"],
        true,
        true,
        "the document count",
    ),
];

/// `GET /_cat/count[/<index>]`.
pub fn count(api: &Api, req: &Request, expr: Option<&str>) -> EsResult<Reply> {
    let store = api.store();
    let names = store.resolve(expr.unwrap_or("_all"), req.resolve_opts("open", true)?)?;
    let n: usize = names.iter().map(|n| store.indices[n].doc_count()).sum();
    let (epoch, ts) = epoch_and_time();
    Table {
        cols: COUNT_COLS,
        rows: vec![vec![Some(epoch), Some(ts), Some(n.to_string())]],
    }
    .render(req)
}

const HEALTH_COLS: &[Col] = &[
    col(
        "epoch",
        &["t", "time"],
        true,
        true,
        "seconds since 1970-01-01 00:00:00",
    ),
    col(
        "timestamp",
        &["ts", "hms", "hhmmss"],
        true,
        false,
        "time in HH:MM:SS",
    ),
    col("cluster", &["cl"], true, false, "cluster name"),
    col("status", &["st"], true, false, "health status"),
    col(
        "node.total",
        &["nt", "nodeTotal"],
        true,
        true,
        "total number of nodes",
    ),
    col(
        "node.data",
        &["nd", "nodeData"],
        true,
        true,
        "number of nodes that can store data",
    ),
    col(
        "shards",
        &["t", "sh", "shards.total", "shardsTotal"],
        true,
        true,
        "total number of shards",
    ),
    col(
        "pri",
        &["p", "shards.primary", "shardsPrimary"],
        true,
        true,
        "number of primary shards",
    ),
    col(
        "relo",
        &["r", "shards.relocating", "shardsRelocating"],
        true,
        true,
        "number of relocating nodes",
    ),
    col(
        "init",
        &["i", "shards.initializing", "shardsInitializing"],
        true,
        true,
        "number of initializing nodes",
    ),
    col(
        "unassign",
        &["u", "shards.unassigned", "shardsUnassigned"],
        true,
        true,
        "number of unassigned shards",
    ),
    col(
        "unassign.pri",
        &["up", "shards.unassigned.primary", "shardsUnassignedPrimary"],
        true,
        true,
        "number of unassigned primary shards",
    ),
    col(
        "pending_tasks",
        &["pt", "pendingTasks"],
        true,
        true,
        "number of pending tasks",
    ),
    col(
        "max_task_wait_time",
        &["mtwt", "maxTaskWaitTime"],
        true,
        true,
        "wait time of longest task pending",
    ),
    col(
        "active_shards_percent",
        &["asp", "activeShardsPercent"],
        true,
        true,
        "active number of shards in percent",
    ),
];

/// `GET /_cat/health`.
pub fn health(api: &Api, req: &Request) -> EsResult<Reply> {
    let store = api.store();
    let (mut pri, mut all) = (0usize, 0usize);
    for idx in store.indices.values() {
        pri += idx.shards.len();
        all += idx.shards.len() * (1 + idx.replicas());
    }
    let (epoch, ts) = epoch_and_time();
    let mut row = vec![
        Some(epoch),
        Some(ts),
        Some(api.identity.cluster_name.clone()),
        Some("green".into()),
        Some("1".into()),
        Some("1".into()),
        Some(all.to_string()),
        Some(pri.to_string()),
        Some("0".into()),
        Some("0".into()),
        Some("0".into()),
        Some("0".into()),
        Some("0".into()),
        Some("-".into()),
        Some("100.0%".into()),
    ];
    let cols = if req.param("ts") == Some("false") {
        row.drain(..2);
        &HEALTH_COLS[2..]
    } else {
        HEALTH_COLS
    };
    Table {
        cols,
        rows: vec![row],
    }
    .render(req)
}

fn epoch_and_time() -> (String, String) {
    let secs = now_millis() / 1000;
    let t = secs % 86_400;
    (
        secs.to_string(),
        format!("{:02}:{:02}:{:02}", t / 3600, (t / 60) % 60, t % 60),
    )
}

/// `2024-03-01T10:20:30.000Z` of a Unix time in milliseconds.
fn iso_millis(ms: u64) -> String {
    let date = crate::datastreams::date_stamp(ms).replace('.', "-");
    let t = (ms / 1000) % 86_400;
    format!(
        "{date}T{:02}:{:02}:{:02}.{:03}Z",
        t / 3600,
        (t / 60) % 60,
        t % 60,
        ms % 1000
    )
}
