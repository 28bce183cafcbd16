//! Task parameters and multielasticdump's options inside `args`.
//!
//! KubeStash passes the Addon parameter `args` as one string that the plugin splits on
//! whitespace and hands to multielasticdump. We parse the same options, refuse unknown or
//! malformed ones by name before any request is sent, and accept the other KubeStash
//! parameters (`interimDataDir`, `enableCache`, `scratchDir`, …) as no-ops.

use crate::error::{AddonError, Result};
use crate::matcher::{IndexMatcher, KUBESTASH_DEFAULT_MATCH};
use crate::parts::{Part, PartSet};

/// Which task runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// `logical-backup` (multielasticdump `--direction=dump`).
    Backup,
    /// `logical-backup-restore` (multielasticdump `--direction=load`).
    Restore,
}

impl Task {
    /// The task's KubeStash name.
    pub fn name(self) -> &'static str {
        match self {
            Task::Backup => "logical-backup",
            Task::Restore => "logical-backup-restore",
        }
    }
}

/// Order in which indices are processed (`--order`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Ascending by name.
    Asc,
    /// Descending by name.
    Desc,
}

/// Which kinds of objects `--match` selects (`--matchType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchKinds {
    /// Indices (by name or alias): multielasticdump's `alias`.
    pub indices: bool,
    /// Data streams (by name): multielasticdump's `datastream`.
    pub data_streams: bool,
}

/// Parsed options for one task.
#[derive(Debug, Clone)]
pub struct Options {
    /// Which task.
    pub task: Task,
    /// `--match` (default: KubeStash's default expression, see the docs).
    pub matcher: IndexMatcher,
    /// Parts written/applied (`--ignoreType`, `--includeType`, `--ignore<Type>`).
    pub parts: PartSet,
    /// What `--match` selects (`--matchType`; default both indices and data streams).
    pub match_kinds: MatchKinds,
    /// `--limit`: documents per search page and per bulk request.
    pub limit: u32,
    /// `--size`: maximum documents per index (`None` = all).
    pub size: Option<u64>,
    /// `--offset`: documents skipped at the start of each index (backup).
    pub offset: u64,
    /// `--scrollTime`: keep-alive of the point in time (or scroll) per page.
    pub keep_alive: String,
    /// `--parallel`: slices read per index (each slice is one PIT search stream).
    pub parallel: u32,
    /// `--order`.
    pub order: Order,
    /// `--ignoreChildError`: an index that fails is logged and skipped.
    pub ignore_child_error: bool,
    /// `--prefix`: prepended to the target index name on restore.
    pub prefix: String,
    /// `--suffix`: appended to the target index name on restore.
    pub suffix: String,
    /// `--delete`: delete the target indices before loading (restore).
    pub delete: bool,
    /// `--overwrite`: allow restoring into an existing index that has documents (kstash).
    pub overwrite: bool,
    /// `--maxBulkBytes`: upper bound of one `_bulk` body (kstash).
    pub max_bulk_bytes: usize,
    /// Notes for the log (ignored parameters and options).
    pub notes: Vec<String>,
}

/// Default documents per page / per bulk (multielasticdump: 100; see docs for why 1000).
pub const DEFAULT_LIMIT: u32 = 1000;
/// Default `_bulk` body bound.
pub const DEFAULT_MAX_BULK_BYTES: usize = 5 << 20;

/// KubeStash Addon parameters that are accepted and have no effect here.
const IGNORED_PARAMS: &[&str] = &[
    "interimDataDir",
    "enableCache",
    "scratchDir",
    "waitTimeout",
    "namespace",
    "backupSession",
    "restoreSession",
    "snapshot",
];

/// Options that kstash's host provides itself (connection, credentials, output location).
const HOST_OPTIONS: &[&str] = &[
    "input",
    "output",
    "httpAuthFile",
    "input-ca",
    "output-ca",
    "ca-input",
    "headers",
];

impl Options {
    /// Parse the task parameters (`args` and the other KubeStash parameters).
    pub fn from_params(task: Task, params: &[(String, String)]) -> Result<Options> {
        let mut args: Option<&str> = None;
        let mut notes = Vec::new();
        for (k, v) in params {
            if k == "args" {
                args = Some(v.as_str());
            } else if IGNORED_PARAMS.contains(&k.as_str()) {
                notes.push(format!(
                    "parameter {k}={v:?} accepted and ignored: kstash streams the dump, no interim directory or cache is used"
                ));
            } else {
                return Err(AddonError::param(
                    k.as_str(),
                    format!(
                        "unknown parameter; known: args, {}",
                        IGNORED_PARAMS.join(", ")
                    ),
                ));
            }
        }
        let mut o = Options::parse_args(task, args.unwrap_or(""))?;
        notes.append(&mut o.notes);
        o.notes = notes;
        Ok(o)
    }

    /// Parse a multielasticdump argument string (split on whitespace, like KubeStash).
    pub fn parse_args(task: Task, args: &str) -> Result<Options> {
        let mut o = Options {
            task,
            matcher: IndexMatcher::new(KUBESTASH_DEFAULT_MATCH).expect("default regex compiles"),
            parts: PartSet::defaults(),
            match_kinds: MatchKinds {
                indices: true,
                data_streams: true,
            },
            limit: DEFAULT_LIMIT,
            size: None,
            offset: 0,
            keep_alive: "10m".to_string(),
            parallel: 1,
            order: Order::Asc,
            ignore_child_error: false,
            prefix: String::new(),
            suffix: String::new(),
            delete: false,
            overwrite: false,
            max_bulk_bytes: DEFAULT_MAX_BULK_BYTES,
            notes: Vec::new(),
        };
        let pairs = split_options(args)?;
        // --includeType first, then --ignoreType and --ignore<Type> (ignoring wins).
        for (name, value) in &pairs {
            if name == "includeType" {
                let list = parse_type_list(name, value)?;
                for p in Part::ALL {
                    o.parts.set(p, list.contains(&p));
                }
            }
        }
        for (name, value) in &pairs {
            let opt = format!("--{name}");
            match name.as_str() {
                "includeType" => {}
                "match" => {
                    o.matcher = IndexMatcher::new(value).map_err(|r| AddonError::param(&opt, r))?;
                }
                "matchType" => {
                    let mut k = MatchKinds {
                        indices: false,
                        data_streams: false,
                    };
                    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        match item {
                            "alias" => k.indices = true,
                            "datastream" => k.data_streams = true,
                            other => {
                                return Err(AddonError::param(
                                    &opt,
                                    format!("{other:?} is not a match type; alias (indices by name or alias), datastream (data streams by name), or both comma-separated"),
                                ))
                            }
                        }
                    }
                    if !k.indices && !k.data_streams {
                        return Err(AddonError::param(&opt, "needs alias, datastream or both"));
                    }
                    o.match_kinds = k;
                }
                "ignoreType" => {
                    for p in parse_type_list(name, value)? {
                        o.parts.set(p, false);
                    }
                }
                "ignoreData" | "ignoreMapping" | "ignoreSettings" | "ignoreTemplate"
                | "ignoreAnalyzer" | "ignoreAlias" => {
                    let p = Part::parse(&name["ignore".len()..].to_ascii_lowercase())
                        .expect("listed names are parts");
                    o.parts.set(p, !parse_bool(&opt, value)?);
                }
                "ignoreIndex" => {
                    if !parse_bool(&opt, value)? {
                        return Err(AddonError::param(
                            &opt,
                            "the \"index\" dump type (<index>.index.json) is not supported; settings, mapping and alias carry the same content",
                        ));
                    }
                }
                "limit" => {
                    o.limit = parse_num(&opt, value, 1, 10_000)? as u32;
                }
                "size" => {
                    let n: i64 = value.parse().map_err(|_| {
                        AddonError::param(&opt, format!("{value:?} is not an integer"))
                    })?;
                    o.size = match n {
                        -1 => None,
                        n if n >= 0 => Some(n as u64),
                        _ => return Err(AddonError::param(&opt, "must be -1 (no limit) or >= 0")),
                    };
                }
                "offset" => o.offset = parse_num(&opt, value, 0, u64::MAX)?,
                "scrollTime" => {
                    validate_time(&opt, value)?;
                    o.keep_alive = value.clone();
                }
                "parallel" => o.parallel = parse_num(&opt, value, 1, 64)? as u32,
                "interval" => {
                    parse_num(&opt, value, 0, u64::MAX)?;
                    o.notes.push(format!(
                        "--interval={value} accepted and ignored: no child processes are spawned"
                    ));
                }
                "order" => {
                    o.order = match value.as_str() {
                        "asc" => Order::Asc,
                        "desc" => Order::Desc,
                        _ => {
                            return Err(AddonError::param(
                                &opt,
                                format!("{value:?} must be asc or desc"),
                            ))
                        }
                    }
                }
                "ignoreChildError" => o.ignore_child_error = parse_bool(&opt, value)?,
                "prefix" => o.prefix = validate_affix(&opt, value)?,
                "suffix" => o.suffix = validate_affix(&opt, value)?,
                "delete" => o.delete = parse_bool(&opt, value)?,
                "overwrite" => o.overwrite = parse_bool(&opt, value)?,
                "maxBulkBytes" => {
                    o.max_bulk_bytes = parse_num(&opt, value, 1024, 100 << 20)? as usize
                }
                "fsCompress" => {
                    if parse_bool(&opt, value)? {
                        return Err(AddonError::param(&opt, "compressed dumps are not supported; the repository compresses and deduplicates the stream"));
                    }
                }
                "direction" => {
                    let want = match task {
                        Task::Backup => "dump",
                        Task::Restore => "load",
                    };
                    if value != want {
                        return Err(AddonError::param(
                            &opt,
                            format!(
                                "{value:?} contradicts task {}, which is --direction={want}",
                                task.name()
                            ),
                        ));
                    }
                }
                n if HOST_OPTIONS.contains(&n) => {
                    return Err(AddonError::param(
                        &opt,
                        "set by kstash from the target's AppBinding and the repository; remove it from args",
                    ));
                }
                _ => {
                    return Err(AddonError::param(
                        &opt,
                        format!("unknown option; supported: {}", SUPPORTED.join(", ")),
                    ))
                }
            }
        }
        Ok(o)
    }

    /// Target index name on restore (`--prefix` + name + `--suffix`).
    pub fn target_index(&self, index: &str) -> String {
        format!("{}{}{}", self.prefix, index, self.suffix)
    }
}

/// Every option name accepted in `args`.
pub const SUPPORTED: &[&str] = &[
    "--match",
    "--matchType",
    "--ignoreType",
    "--includeType",
    "--ignoreData",
    "--ignoreMapping",
    "--ignoreSettings",
    "--ignoreTemplate",
    "--ignoreAnalyzer",
    "--ignoreAlias",
    "--ignoreIndex",
    "--limit",
    "--size",
    "--offset",
    "--scrollTime",
    "--parallel",
    "--interval",
    "--order",
    "--ignoreChildError",
    "--prefix",
    "--suffix",
    "--delete",
    "--overwrite",
    "--maxBulkBytes",
    "--fsCompress",
    "--direction",
];

/// Split `args` into `(name, value)` pairs: `--name=value`, `--name value`, or `--name` (= true).
fn split_options(args: &str) -> Result<Vec<(String, String)>> {
    let toks: Vec<&str> = args.split_whitespace().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let tok = toks[i];
        let Some(body) = tok.strip_prefix("--") else {
            return Err(AddonError::param(
                tok,
                "unexpected argument: options look like --name=value",
            ));
        };
        if body.is_empty() {
            return Err(AddonError::param(tok, "empty option name"));
        }
        if let Some((name, value)) = body.split_once('=') {
            if name.is_empty() {
                return Err(AddonError::param(tok, "empty option name"));
            }
            out.push((name.to_string(), value.to_string()));
        } else if i + 1 < toks.len() && !toks[i + 1].starts_with("--") {
            out.push((body.to_string(), toks[i + 1].to_string()));
            i += 1;
        } else {
            out.push((body.to_string(), "true".to_string()));
        }
        i += 1;
    }
    Ok(out)
}

fn parse_bool(opt: &str, v: &str) -> Result<bool> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(AddonError::param(
            opt,
            format!("{v:?} must be true or false"),
        )),
    }
}

fn parse_num(opt: &str, v: &str, min: u64, max: u64) -> Result<u64> {
    let n: u64 = v
        .parse()
        .map_err(|_| AddonError::param(opt, format!("{v:?} is not a non-negative integer")))?;
    if n < min || n > max {
        return Err(AddonError::param(
            opt,
            format!("{n} is out of range {min}..={max}"),
        ));
    }
    Ok(n)
}

fn parse_type_list(name: &str, v: &str) -> Result<Vec<Part>> {
    let opt = format!("--{name}");
    let mut out = Vec::new();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if item == "index" {
            if name == "includeType" {
                return Err(AddonError::param(
                    &opt,
                    "the \"index\" dump type is not supported",
                ));
            }
            continue; // already not written
        }
        match Part::parse(item) {
            Some(p) => out.push(p),
            None => {
                let names: Vec<&str> = Part::ALL.iter().map(|p| p.name()).collect();
                return Err(AddonError::param(
                    &opt,
                    format!("unknown type {item:?}; types: {}, index", names.join(", ")),
                ));
            }
        }
    }
    if out.is_empty() && name == "includeType" {
        return Err(AddonError::param(&opt, "needs at least one type"));
    }
    Ok(out)
}

/// Elasticsearch time units: `d h m s ms micros nanos`.
fn validate_time(opt: &str, v: &str) -> Result<()> {
    let digits = v.bytes().take_while(u8::is_ascii_digit).count();
    let unit = &v[digits..];
    if digits == 0 || !["d", "h", "m", "s", "ms", "micros", "nanos"].contains(&unit) {
        return Err(AddonError::param(
            opt,
            format!("{v:?} is not an Elasticsearch time value like 10m, 90s or 1h"),
        ));
    }
    if v[..digits].parse::<u64>().map(|n| n == 0).unwrap_or(true) {
        return Err(AddonError::param(
            opt,
            format!("{v:?} must be greater than zero"),
        ));
    }
    Ok(())
}

fn validate_affix(opt: &str, v: &str) -> Result<String> {
    if v.chars()
        .any(|c| c.is_ascii_uppercase() || "\\/*?\"<>|,# ".contains(c))
    {
        return Err(AddonError::param(
            opt,
            format!("{v:?} contains characters not allowed in index names (upper case or \\ / * ? \" < > | , #)"),
        ));
    }
    Ok(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &str) -> Result<Options> {
        Options::parse_args(Task::Backup, args)
    }

    fn err_name(e: AddonError) -> String {
        match e {
            AddonError::InvalidParam { name, .. } => name,
            other => panic!("expected InvalidParam, got {other}"),
        }
    }

    #[test]
    fn defaults_are_every_part_but_analyzer_with_kubestash_match() {
        let o = p("").unwrap();
        assert_eq!(o.parts, PartSet::defaults());
        assert!(o.parts.has(Part::Alias) && o.parts.has(Part::Ilm) && !o.parts.has(Part::Analyzer));
        assert!(o.match_kinds.indices && o.match_kinds.data_streams);
        assert_eq!(o.matcher.source(), KUBESTASH_DEFAULT_MATCH);
        assert_eq!(o.keep_alive, "10m");
        assert_eq!(o.size, None);
    }

    #[test]
    fn kubestash_default_args_parse() {
        let o = p("--match=^(?![.])(?!apm-agent-configuration)(?!kubedb-system).+").unwrap();
        assert!(!o.matcher.is_match(".kibana"));
        assert!(o.matcher.is_match("products"));
    }

    #[test]
    fn tutorial_ignore_type_template_settings() {
        // seed tutorial: args: --ignoreType=template,settings
        let o = p("--ignoreType=template,settings").unwrap();
        assert!(o.parts.has(Part::Data) && o.parts.has(Part::Mapping));
        assert!(!o.parts.has(Part::Template) && !o.parts.has(Part::Settings));
        assert!(o.parts.has(Part::Alias) && !o.parts.has(Part::Analyzer));
    }

    #[test]
    fn documented_match_and_ignore_type_combination() {
        // KubeStash docs: --match=^(?![.])(?!searchguard).+ --ignoreType=template
        let o = p("--match=^(?![.])(?!searchguard).+ --ignoreType=template").unwrap();
        assert!(!o.matcher.is_match("searchguard"));
        assert!(!o.parts.has(Part::Template) && o.parts.has(Part::Settings));
    }

    #[test]
    fn include_type_selects_exactly_those_and_keeps_child_errors_fatal() {
        let o = p("--includeType=data,alias").unwrap();
        assert_eq!(o.parts.names(), ["alias", "data"]);
        assert!(!o.ignore_child_error);
    }

    #[test]
    fn space_separated_values_and_bare_flags() {
        let o = p("--limit 500 --delete --size=10 --ignoreAlias=true").unwrap();
        assert_eq!(o.limit, 500);
        assert!(o.delete);
        assert_eq!(o.size, Some(10));
        assert!(!o.parts.has(Part::Alias));
    }

    #[test]
    fn numeric_and_time_options() {
        let o = p("--limit=100 --size=-1 --scrollTime=5m --parallel=4 --offset=3 --order=desc")
            .unwrap();
        assert_eq!((o.limit, o.size, o.parallel, o.offset), (100, None, 4, 3));
        assert_eq!(o.keep_alive, "5m");
        assert_eq!(o.order, Order::Desc);
    }

    #[test]
    fn unknown_and_malformed_options_are_named() {
        assert_eq!(err_name(p("--bogus=1").unwrap_err()), "--bogus");
        assert_eq!(err_name(p("--limit=abc").unwrap_err()), "--limit");
        assert_eq!(err_name(p("--limit=0").unwrap_err()), "--limit");
        assert_eq!(err_name(p("--limit=10001").unwrap_err()), "--limit");
        assert_eq!(err_name(p("--size=-2").unwrap_err()), "--size");
        assert_eq!(err_name(p("--scrollTime=10x").unwrap_err()), "--scrollTime");
        assert_eq!(err_name(p("--scrollTime=0m").unwrap_err()), "--scrollTime");
        assert_eq!(err_name(p("--delete=yes").unwrap_err()), "--delete");
        assert_eq!(
            err_name(p("--ignoreType=template,bogus").unwrap_err()),
            "--ignoreType"
        );
        assert_eq!(
            err_name(p("--includeType=index").unwrap_err()),
            "--includeType"
        );
        assert_eq!(err_name(p("--matchType=index").unwrap_err()), "--matchType");
        let o = p("--matchType=datastream").unwrap();
        assert!(o.match_kinds.data_streams && !o.match_kinds.indices);
        assert_eq!(
            err_name(p("--ignoreType=ilm,bogus").unwrap_err()),
            "--ignoreType"
        );
        assert!(!p("--ignoreType=ilm,pipeline,security")
            .unwrap()
            .parts
            .has(Part::Ilm));
        assert_eq!(
            err_name(p("--fsCompress=true").unwrap_err()),
            "--fsCompress"
        );
        assert_eq!(err_name(p("--input=http://x").unwrap_err()), "--input");
        assert_eq!(err_name(p("--prefix=ABC").unwrap_err()), "--prefix");
        assert_eq!(err_name(p("stray").unwrap_err()), "stray");
        assert_eq!(err_name(p("--=x").unwrap_err()), "--=x");
        assert_eq!(err_name(p("--direction=load").unwrap_err()), "--direction");
    }

    #[test]
    fn bad_match_names_option_and_position() {
        let e = p("--match=^(?![.]abc").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("--match") && msg.contains("position"), "{msg}");
    }

    #[test]
    fn kubestash_params_are_accepted_and_noted() {
        let params = vec![
            (
                "args".to_string(),
                "--ignoreType=template,settings".to_string(),
            ),
            (
                "interimDataDir".to_string(),
                "/kubestash-interim/data".to_string(),
            ),
            ("enableCache".to_string(), "true".to_string()),
            ("scratchDir".to_string(), "/kubestash-tmp".to_string()),
        ];
        let o = Options::from_params(Task::Restore, &params).unwrap();
        assert!(!o.parts.has(Part::Settings));
        assert_eq!(o.notes.len(), 3);
        assert!(o.notes.iter().any(|n| n.contains("interimDataDir")));
        let bad = vec![("argz".to_string(), String::new())];
        assert_eq!(
            err_name(Options::from_params(Task::Backup, &bad).unwrap_err()),
            "argz"
        );
    }

    #[test]
    fn prefix_suffix_build_target_names() {
        let o = Options::parse_args(Task::Restore, "--prefix=restored- --suffix=-v2").unwrap();
        assert_eq!(o.target_index("products"), "restored-products-v2");
    }
}
