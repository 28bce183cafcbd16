//! The parts of a cluster a backup captures and a restore applies, each of which can be left out
//! with `--ignoreType=<name>` (multielasticdump's names where it has them).

use crate::files::DumpType;

/// One part of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    /// Documents of indices (`<i>.json`).
    Data,
    /// Index mappings (`<i>.mapping.json`).
    Mapping,
    /// Index settings (`<i>.settings.json`).
    Settings,
    /// Legacy templates (`<i>.template.json`, `.cluster.legacy_templates.json`).
    Template,
    /// Analysis settings again (`<i>.analyzer.json`; off by default, settings carry it).
    Analyzer,
    /// Index aliases (`<i>.alias.json`).
    Alias,
    /// Closed indices (backed up by opening them for the read, restored closed).
    Closed,
    /// Data streams: their documents and their definition (`.datastream.<name>.json`).
    DataStream,
    /// Composable index templates (`.cluster.index_templates.json`).
    IndexTemplate,
    /// Component templates (`.cluster.component_templates.json`).
    ComponentTemplate,
    /// ILM policies (`.cluster.ilm_policies.json`).
    Ilm,
    /// Ingest pipelines (`.cluster.ingest_pipelines.json`).
    Pipeline,
    /// Security roles and role mappings (`.cluster.security.json`).
    Security,
}

impl Part {
    /// Every part, in the order a restore applies them.
    pub const ALL: [Part; 13] = [
        Part::Pipeline,
        Part::Ilm,
        Part::ComponentTemplate,
        Part::IndexTemplate,
        Part::Template,
        Part::Settings,
        Part::Analyzer,
        Part::Mapping,
        Part::Alias,
        Part::Data,
        Part::Closed,
        Part::DataStream,
        Part::Security,
    ];

    /// The name used by `--ignoreType` / `--includeType`.
    pub fn name(self) -> &'static str {
        match self {
            Part::Data => "data",
            Part::Mapping => "mapping",
            Part::Settings => "settings",
            Part::Template => "template",
            Part::Analyzer => "analyzer",
            Part::Alias => "alias",
            Part::Closed => "closed",
            Part::DataStream => "datastream",
            Part::IndexTemplate => "index_template",
            Part::ComponentTemplate => "component_template",
            Part::Ilm => "ilm",
            Part::Pipeline => "pipeline",
            Part::Security => "security",
        }
    }

    /// Parses a part name.
    pub fn parse(s: &str) -> Option<Part> {
        Part::ALL.into_iter().find(|p| p.name() == s)
    }

    /// The per-index file type of this part, if it has one.
    pub fn dump_type(self) -> Option<DumpType> {
        Some(match self {
            Part::Data => DumpType::Data,
            Part::Mapping => DumpType::Mapping,
            Part::Settings => DumpType::Settings,
            Part::Template => DumpType::Template,
            Part::Analyzer => DumpType::Analyzer,
            Part::Alias => DumpType::Alias,
            _ => return None,
        })
    }

    /// Whether a default backup includes it (everything but the redundant `analyzer`).
    pub fn default_on(self) -> bool {
        self != Part::Analyzer
    }
}

/// The parts that are written (backup) or applied (restore).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartSet(u16);

impl PartSet {
    /// The default: every part except `analyzer`.
    pub fn defaults() -> PartSet {
        let mut s = PartSet(0);
        for p in Part::ALL {
            s.set(p, p.default_on());
        }
        s
    }

    /// No part.
    pub fn none() -> PartSet {
        PartSet(0)
    }

    /// Whether `p` is on.
    pub fn has(&self, p: Part) -> bool {
        self.0 & (1 << p as u16) != 0
    }

    /// Turns `p` on or off.
    pub fn set(&mut self, p: Part, on: bool) {
        if on {
            self.0 |= 1 << p as u16;
        } else {
            self.0 &= !(1 << p as u16);
        }
    }

    /// Whether the per-index file type `t` is on.
    pub fn has_type(&self, t: DumpType) -> bool {
        Part::ALL
            .into_iter()
            .any(|p| p.dump_type() == Some(t) && self.has(p))
    }

    /// The names of the parts that are on, in restore order.
    pub fn names(&self) -> Vec<&'static str> {
        Part::ALL
            .into_iter()
            .filter(|p| self.has(*p))
            .map(Part::name)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_names_and_round_trip() {
        let d = PartSet::defaults();
        assert!(!d.has(Part::Analyzer) && d.has(Part::Alias) && d.has(Part::DataStream));
        for p in Part::ALL {
            assert_eq!(Part::parse(p.name()), Some(p));
        }
        let mut s = PartSet::none();
        s.set(Part::Ilm, true);
        assert_eq!(s.names(), ["ilm"]);
        assert!(d.has_type(DumpType::Alias) && !d.has_type(DumpType::Analyzer));
    }
}
