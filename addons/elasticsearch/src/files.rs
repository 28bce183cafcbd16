//! File names of component `dump`, exactly as multielasticdump names them.

/// The kinds of files written per index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DumpType {
    /// Documents: `<i>.json`.
    Data,
    /// `<i>.mapping.json`.
    Mapping,
    /// `<i>.settings.json`.
    Settings,
    /// `<i>.template.json`.
    Template,
    /// `<i>.analyzer.json`.
    Analyzer,
    /// `<i>.alias.json`.
    Alias,
}

impl DumpType {
    /// All types, in no particular order.
    pub const ALL: [DumpType; 6] = [
        DumpType::Data,
        DumpType::Mapping,
        DumpType::Settings,
        DumpType::Template,
        DumpType::Analyzer,
        DumpType::Alias,
    ];

    /// Name used in `--ignoreType` / `--includeType` and in file names.
    pub fn name(self) -> &'static str {
        match self {
            DumpType::Data => "data",
            DumpType::Mapping => "mapping",
            DumpType::Settings => "settings",
            DumpType::Template => "template",
            DumpType::Analyzer => "analyzer",
            DumpType::Alias => "alias",
        }
    }

    /// Parse a type name (lower case).
    pub fn parse(s: &str) -> Option<DumpType> {
        DumpType::ALL.into_iter().find(|t| t.name() == s)
    }
}

/// The file name for `index` and `t`: `<i>.json` or `<i>.<type>.json`.
pub fn file_name(index: &str, t: DumpType) -> String {
    match t {
        DumpType::Data => format!("{index}.json"),
        other => format!("{index}.{}.json", other.name()),
    }
}

/// What a file name in a dump means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedName {
    /// A file of `index` of type `t`.
    File {
        /// Index name (from the file name).
        index: String,
        /// Its type.
        t: DumpType,
    },
    /// multielasticdump's `<i>.index.json` (not used by kstash: settings/mapping/alias suffice).
    IndexFile(String),
    /// A compressed (`--fsCompress`) or split (`--fileSize`) file, which kstash cannot load.
    Unsupported(String),
    /// A cluster-level file of kstash (`.cluster.<what>.json`).
    Cluster(String),
    /// A data stream's documents (`.datastream.<name>.json`).
    DataStream(String),
    /// kstash's manifest (`.kstash.manifest.json`).
    Manifest,
    /// Not a dump file (e.g. a metadata file some plugin left next to the dump).
    Other,
}

/// Interpret a file name the way multielasticdump's loader does.
pub fn parse_file_name(name: &str) -> ParsedName {
    // Only the base name counts; hosts may present names with a directory prefix.
    let base = name.rsplit('/').next().unwrap_or(name);
    if base == crate::names::MANIFEST {
        return ParsedName::Manifest;
    }
    if let Some(what) = base
        .strip_prefix(".cluster.")
        .and_then(|r| r.strip_suffix(".json"))
        .filter(|w| crate::names::CLUSTER_FILES.contains(w))
    {
        return ParsedName::Cluster(what.to_string());
    }
    if let Some(ds) = base
        .strip_prefix(".datastream.")
        .and_then(|r| r.strip_suffix(".json"))
    {
        return ParsedName::DataStream(ds.to_string());
    }
    if base.ends_with(".json.gz") || base.contains(".split-") {
        return ParsedName::Unsupported(base.to_string());
    }
    let Some(stem) = base.strip_suffix(".json") else {
        return ParsedName::Other;
    };
    if stem.is_empty() {
        return ParsedName::Other;
    }
    if let Some((index, kind)) = stem.rsplit_once('.') {
        if !index.is_empty() {
            if kind == "index" {
                return ParsedName::IndexFile(index.to_string());
            }
            if let Some(t) = DumpType::parse(kind).filter(|t| *t != DumpType::Data) {
                return ParsedName::File {
                    index: index.to_string(),
                    t,
                };
            }
        }
    }
    ParsedName::File {
        index: stem.to_string(),
        t: DumpType::Data,
    }
}

/// Percent-encode an index name (or any path segment) for a URL path,
/// like multielasticdump's `encodeURIComponent`.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_multielasticdump() {
        // es-backup-format.md §1.2
        assert_eq!(file_name("my-index", DumpType::Data), "my-index.json");
        assert_eq!(
            file_name("my-index", DumpType::Mapping),
            "my-index.mapping.json"
        );
        assert_eq!(
            file_name("my-index", DumpType::Settings),
            "my-index.settings.json"
        );
        assert_eq!(
            file_name("my-index", DumpType::Template),
            "my-index.template.json"
        );
        assert_eq!(
            file_name("my-index", DumpType::Analyzer),
            "my-index.analyzer.json"
        );
        assert_eq!(
            file_name("my-index", DumpType::Alias),
            "my-index.alias.json"
        );
    }

    #[test]
    fn parse_round_trips_and_keeps_dots_in_index_names() {
        for t in DumpType::ALL {
            for idx in ["my-index", "logs.2024.01", "a"] {
                assert_eq!(
                    parse_file_name(&file_name(idx, t)),
                    ParsedName::File {
                        index: idx.to_string(),
                        t
                    }
                );
            }
        }
        assert_eq!(
            parse_file_name("logs.2024.json"),
            ParsedName::File {
                index: "logs.2024".into(),
                t: DumpType::Data
            }
        );
        assert_eq!(
            parse_file_name("dir/x.mapping.json"),
            ParsedName::File {
                index: "x".into(),
                t: DumpType::Mapping
            }
        );
    }

    #[test]
    fn special_files() {
        assert_eq!(
            parse_file_name("x.index.json"),
            ParsedName::IndexFile("x".into())
        );
        assert!(matches!(
            parse_file_name("x.json.gz"),
            ParsedName::Unsupported(_)
        ));
        assert!(matches!(
            parse_file_name("x.split-1.json"),
            ParsedName::Unsupported(_)
        ));
        assert_eq!(parse_file_name("metadata.yaml"), ParsedName::Other);
        assert_eq!(
            parse_file_name(".kstash.manifest.json"),
            ParsedName::Manifest
        );
        assert_eq!(
            parse_file_name(".cluster.ilm_policies.json"),
            ParsedName::Cluster("ilm_policies".into())
        );
        assert_eq!(
            parse_file_name(".datastream.logs-app.json"),
            ParsedName::DataStream("logs-app".into())
        );
        assert_eq!(parse_file_name(".json"), ParsedName::Other);
    }

    #[test]
    fn encodes_like_encode_uri_component() {
        assert_eq!(encode_segment("my-index_1.a"), "my-index_1.a");
        assert_eq!(encode_segment("a b/c"), "a%20b%2Fc");
        assert_eq!(encode_segment("é"), "%C3%A9");
        assert_eq!(encode_segment("a,b*"), "a%2Cb*");
    }
}
