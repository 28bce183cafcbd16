//! Conformance against Elastic's REST API specification (`rest-api-spec/api/*.json`).
//!
//! [`SpecChecker::check`] answers whether a `(method, path, query parameters)` triple is
//! allowed by some endpoint: the path must match one of the endpoint's path patterns (literal
//! segments win over `{part}` segments, like Elasticsearch's router), the method must be listed
//! for that pattern, every query parameter must be documented for the endpoint or in
//! `_common.json`, and a comma list may only fill a part whose type is `list`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::server::{percent_decode, LoggedRequest};

/// Why a request does not conform (or the spec could not be loaded).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    /// The spec directory or a file in it could not be read or parsed.
    #[error("loading the REST API spec: {0}")]
    Load(String),
    /// No endpoint has a path pattern matching the path.
    #[error("{method} {path}: no endpoint of the REST API spec has a matching path")]
    NoRoute {
        /// Method.
        method: String,
        /// Path.
        path: String,
    },
    /// The path matches, but not with this method.
    #[error("{method} {path}: path pattern {pattern} ({endpoints}) allows only {allowed:?}")]
    MethodNotAllowed {
        /// Method.
        method: String,
        /// Path.
        path: String,
        /// The matched pattern.
        pattern: String,
        /// Endpoints having the pattern.
        endpoints: String,
        /// Methods the spec lists.
        allowed: Vec<String>,
    },
    /// A query parameter is not documented for the endpoint.
    #[error(
        "{method} {path}: query parameter [{param}] is not documented for endpoint {endpoint}"
    )]
    UnknownParam {
        /// Method.
        method: String,
        /// Path.
        path: String,
        /// The endpoint.
        endpoint: String,
        /// The offending parameter.
        param: String,
    },
    /// A comma-separated value fills a part that takes a single value.
    #[error("{method} {path}: part {{{part}}} of {endpoint} takes a single value, got [{value}]")]
    NotAList {
        /// Method.
        method: String,
        /// Path.
        path: String,
        /// The endpoint.
        endpoint: String,
        /// The part name.
        part: String,
        /// The value.
        value: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Literal(String),
    Part { name: String, list: bool },
}

/// One path pattern of an endpoint.
#[derive(Debug, Clone)]
pub struct SpecPath {
    /// The pattern, e.g. `/{index}/_search`.
    pub pattern: String,
    /// Allowed methods.
    pub methods: Vec<String>,
    segments: Vec<Segment>,
}

/// One endpoint (one spec file).
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Endpoint name, e.g. `search`.
    pub name: String,
    /// Its path patterns.
    pub paths: Vec<SpecPath>,
    /// Documented query parameters.
    pub params: BTreeSet<String>,
}

/// A conforming request: which endpoint and pattern it matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecMatch {
    /// Endpoint name.
    pub endpoint: String,
    /// Path pattern.
    pub pattern: String,
}

/// Loaded spec.
#[derive(Debug, Clone)]
pub struct SpecChecker {
    endpoints: Vec<Endpoint>,
    common: BTreeSet<String>,
}

impl SpecChecker {
    /// Elastic's Elasticsearch 8.19 spec files shipped in this crate
    /// (`rest-api-spec/elasticsearch`), or `$KSTASH_ES_SPEC_DIR` when set.
    pub fn default_dir() -> PathBuf {
        if let Some(d) = std::env::var_os("KSTASH_ES_SPEC_DIR") {
            return PathBuf::from(d);
        }
        Path::new(env!("CARGO_MANIFEST_DIR")).join("rest-api-spec/elasticsearch")
    }

    /// Endpoints transcribed by kstash (`rest-api-spec/supplement`, see its NOTICE).
    pub fn supplement_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("rest-api-spec/supplement")
    }

    /// Loads [`Self::default_dir`] and the Elasticsearch part of the supplement; an endpoint
    /// defined by Elastic's files wins over a transcribed one. Panics with a clear message when a
    /// file is absent or malformed.
    pub fn load_default() -> Self {
        let dir = Self::default_dir();
        let mut s = Self::load(&dir).unwrap_or_else(|e| {
            panic!(
                "Elastic's REST API spec is required at {} (shipped in this crate, or set KSTASH_ES_SPEC_DIR): {e}",
                dir.display()
            )
        });
        s.add_file(&Self::supplement_dir().join("elasticsearch-8.19.json"));
        s
    }

    fn add_file(&mut self, f: &Path) {
        let extra = Self::load_file(f).unwrap_or_else(|e| panic!("{e}"));
        for ep in extra {
            if !self.endpoints.iter().any(|e| e.name == ep.name) {
                self.endpoints.push(ep);
            }
        }
    }

    fn load_file(f: &Path) -> Result<Vec<Endpoint>, SpecError> {
        let text = std::fs::read_to_string(f)
            .map_err(|e| SpecError::Load(format!("{}: {e}", f.display())))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| SpecError::Load(format!("{}: {e}", f.display())))?;
        let obj = v.as_object().filter(|m| !m.is_empty()).ok_or_else(|| {
            SpecError::Load(format!("{}: not an endpoint definition", f.display()))
        })?;
        obj.iter()
            .map(|(name, body)| {
                parse_endpoint(name, body)
                    .map_err(|e| SpecError::Load(format!("{} ({name}): {e}", f.display())))
            })
            .collect()
    }

    /// The spec an OpenSearch 2.x client must follow: OpenSearch's point-in-time endpoints
    /// instead of Elasticsearch's (`open_point_in_time`, `close_point_in_time` are removed), the
    /// Elasticsearch 8.19 files for everything the two share. Panics when a directory is absent.
    pub fn load_opensearch() -> Self {
        let mut s = Self::load_default();
        s.endpoints
            .retain(|e| e.name != "open_point_in_time" && e.name != "close_point_in_time");
        s.add_file(&Self::supplement_dir().join("opensearch-2.x.json"));
        s
    }

    /// Loads every `*.json` in `dir` (`_common.json` gives the parameters all endpoints accept).
    pub fn load(dir: &Path) -> Result<Self, SpecError> {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| SpecError::Load(format!("{}: {e}", dir.display())))?;
        let mut endpoints = Vec::new();
        let mut common = BTreeSet::new();
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f)
                .map_err(|e| SpecError::Load(format!("{}: {e}", f.display())))?;
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| SpecError::Load(format!("{}: {e}", f.display())))?;
            if f.file_name().is_some_and(|n| n == "_common.json") {
                common.extend(
                    v["params"]
                        .as_object()
                        .into_iter()
                        .flat_map(|m| m.keys().cloned()),
                );
                continue;
            }
            drop(v);
            endpoints.extend(Self::load_file(&f)?);
        }
        if endpoints.is_empty() {
            return Err(SpecError::Load(format!(
                "{}: no endpoint definitions",
                dir.display()
            )));
        }
        Ok(SpecChecker { endpoints, common })
    }

    /// Loaded endpoints.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// Checks a request. `path` may be percent-encoded and may carry a query string, whose
    /// parameters are checked together with `params`.
    pub fn check<'a>(
        &self,
        method: &str,
        path: &str,
        params: impl IntoIterator<Item = &'a str>,
    ) -> Result<SpecMatch, SpecError> {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let mut names: Vec<String> = params.into_iter().map(String::from).collect();
        names.extend(
            crate::server::parse_query(query)
                .into_iter()
                .map(|(k, _)| k),
        );
        let segs: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect();
        // Candidate patterns with their priority key: literal (0) beats part (1), position by position.
        let mut best: Option<Vec<u8>> = None;
        let mut hits: Vec<(&Endpoint, &SpecPath)> = Vec::new();
        for ep in &self.endpoints {
            for p in &ep.paths {
                if p.segments.len() != segs.len() {
                    continue;
                }
                let ok = p.segments.iter().zip(&segs).all(|(s, v)| match s {
                    Segment::Literal(l) => l == v,
                    Segment::Part { .. } => !v.is_empty(),
                });
                if !ok {
                    continue;
                }
                let key: Vec<u8> = p
                    .segments
                    .iter()
                    .map(|s| u8::from(matches!(s, Segment::Part { .. })))
                    .collect();
                match &best {
                    Some(b) if key > *b => continue,
                    Some(b) if key < *b => hits.clear(),
                    _ => {}
                }
                best = Some(key);
                hits.push((ep, p));
            }
        }
        if hits.is_empty() {
            return Err(SpecError::NoRoute {
                method: method.into(),
                path: path.into(),
            });
        }
        let with_method: Vec<&(&Endpoint, &SpecPath)> = hits
            .iter()
            .filter(|(_, p)| p.methods.iter().any(|m| m == method))
            .collect();
        if with_method.is_empty() {
            let mut allowed: Vec<String> =
                hits.iter().flat_map(|(_, p)| p.methods.clone()).collect();
            allowed.sort();
            allowed.dedup();
            return Err(SpecError::MethodNotAllowed {
                method: method.into(),
                path: path.into(),
                pattern: hits[0].1.pattern.clone(),
                endpoints: hits
                    .iter()
                    .map(|(e, _)| e.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                allowed,
            });
        }
        let mut last_err = None;
        'candidates: for (ep, p) in with_method {
            for (s, v) in p.segments.iter().zip(&segs) {
                if let Segment::Part { name, list: false } = s {
                    if v.contains(',') {
                        last_err = Some(SpecError::NotAList {
                            method: method.into(),
                            path: path.into(),
                            endpoint: ep.name.clone(),
                            part: name.clone(),
                            value: v.clone(),
                        });
                        continue 'candidates;
                    }
                }
            }
            for n in &names {
                if !ep.params.contains(n) && !self.common.contains(n) {
                    last_err = Some(SpecError::UnknownParam {
                        method: method.into(),
                        path: path.into(),
                        endpoint: ep.name.clone(),
                        param: n.clone(),
                    });
                    continue 'candidates;
                }
            }
            return Ok(SpecMatch {
                endpoint: ep.name.clone(),
                pattern: p.pattern.clone(),
            });
        }
        Err(last_err.expect("at least one candidate was rejected"))
    }

    /// Checks a request from the emulator's request log.
    pub fn check_logged(&self, r: &LoggedRequest) -> Result<SpecMatch, SpecError> {
        self.check(&r.method, &r.path, r.query.keys().map(String::as_str))
    }
}

fn parse_endpoint(name: &str, body: &Value) -> Result<Endpoint, String> {
    let paths = body["url"]["paths"].as_array().ok_or("missing url.paths")?;
    let mut out = Vec::new();
    for p in paths {
        let pattern = p["path"]
            .as_str()
            .ok_or("path without a pattern")?
            .to_string();
        let methods: Vec<String> = p["methods"]
            .as_array()
            .ok_or("path without methods")?
            .iter()
            .filter_map(|m| m.as_str().map(String::from))
            .collect();
        let segments = pattern
            .split('/')
            .filter(|s| !s.is_empty())
            .map(
                |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(part) => Segment::Part {
                        name: part.to_string(),
                        list: p["parts"][part]["type"].as_str() == Some("list"),
                    },
                    None => Segment::Literal(s.to_string()),
                },
            )
            .collect();
        out.push(SpecPath {
            pattern,
            methods,
            segments,
        });
    }
    let params = body["params"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    Ok(Endpoint {
        name: name.to_string(),
        paths: out,
        params,
    })
}
