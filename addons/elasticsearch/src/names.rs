//! Names that reach request paths: index and data stream names (from the cluster, or from a
//! dump's file names on restore) and the names of cluster objects. Everything a restore derives
//! from a file name is checked here before the first request, so a crafted dump cannot make the
//! addon send `DELETE /_all` or `PUT /*`.

/// Why a name is refused, in Elasticsearch's words where it has them.
pub fn index_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if name == "_all" {
        return Some("[_all] names every index".into());
    }
    if name == "." || name == ".." {
        return Some("must not be '.' or '..'".into());
    }
    if let Some(c) = name.chars().next().filter(|c| matches!(c, '_' | '-' | '+')) {
        return Some(format!("must not start with '{c}'"));
    }
    if name.chars().any(|c| c.is_uppercase()) {
        return Some("must be lowercase".into());
    }
    if let Some(c) = name.chars().find(|c| {
        matches!(
            c,
            '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ' ' | ',' | '#' | ':'
        ) || c.is_control()
    }) {
        return Some(format!(
            "must not contain {c:?} (wildcards, lists and \\ / * ? \" < > | , # : space are not allowed)"
        ));
    }
    if name.len() > 255 {
        return Some(format!("is too long ({} > 255 bytes)", name.len()));
    }
    None
}

/// Why the name of a template, pipeline, policy or role is refused: it must be one concrete name
/// (no wildcard, no list, no path separator).
pub fn object_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if name == "_all" || name == "." || name == ".." {
        return Some(format!("[{name}] is not a concrete name"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| matches!(c, '*' | '?' | ',' | '/' | '\\') || c.is_control())
    {
        return Some(format!("must not contain {c:?}"));
    }
    None
}

/// The manifest kstash writes last (`.kstash.manifest.json`).
pub const MANIFEST: &str = ".kstash.manifest.json";

/// The file of a cluster-level part (`.cluster.<what>.json`).
pub fn cluster_file(what: &str) -> String {
    format!(".cluster.{what}.json")
}

/// The documents of a data stream (`.datastream.<name>.json`).
pub fn data_stream_file(name: &str) -> String {
    format!(".datastream.{name}.json")
}

/// Every cluster file kstash writes, by content.
pub const CLUSTER_FILES: &[&str] = &[
    "legacy_templates",
    "component_templates",
    "index_templates",
    "ilm_policies",
    "ingest_pipelines",
    "data_streams",
    "security",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_could_widen_a_request() {
        for bad in [
            "_all", "*", "a*", "-x", "_x", "+x", "a,b", "A", "a b", "a/b", ".", "..", "", "a?",
            "a#", "a:b",
        ] {
            assert!(index_name_problem(bad).is_some(), "{bad:?} must be refused");
        }
        for ok in ["logs-2024.01", ".kibana_1", "ü-index", "a+b", "x_y"] {
            assert_eq!(index_name_problem(ok), None, "{ok}");
        }
        assert!(index_name_problem(&"a".repeat(256)).is_some());
        assert!(object_name_problem("logs@mappings").is_none());
        for bad in ["*", "a,b", "_all", "a/b", ""] {
            assert!(object_name_problem(bad).is_some(), "{bad:?}");
        }
    }
}
