//! What the target is: Elasticsearch or OpenSearch (`GET /`), and the parts of its API that
//! differ between the two.

use crate::error::{AddonError, Result};
use crate::es::{get, Es};
use serde_json::Value;

/// The product behind the target URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Elasticsearch.
    Elasticsearch,
    /// OpenSearch.
    OpenSearch,
}

/// What `GET /` says about the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    /// The product.
    pub flavor: Flavor,
    /// `version.number`.
    pub version: String,
    /// Major and minor version.
    pub major_minor: (u32, u32),
}

impl ClusterInfo {
    /// Reads a `GET /` answer.
    pub fn from_answer(v: &Value) -> Result<ClusterInfo> {
        let version = v
            .pointer("/version/number")
            .and_then(Value::as_str)
            .ok_or_else(|| AddonError::Protocol {
                what: "GET /".into(),
                reason: "no version.number: is the target Elasticsearch or OpenSearch?".into(),
            })?
            .to_string();
        let flavor = match v.pointer("/version/distribution").and_then(Value::as_str) {
            Some("opensearch") => Flavor::OpenSearch,
            _ => Flavor::Elasticsearch,
        };
        let mut nums = version
            .split(['.', '-'])
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let major_minor = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
        Ok(ClusterInfo {
            flavor,
            version,
            major_minor,
        })
    }

    /// Asks the target.
    pub fn detect(es: &mut Es) -> Result<ClusterInfo> {
        let v = es.ok_json(&get("/"))?;
        Self::from_answer(&v)
    }

    /// The product's name for logs and the manifest.
    pub fn product(&self) -> &'static str {
        match self.flavor {
            Flavor::Elasticsearch => "elasticsearch",
            Flavor::OpenSearch => "opensearch",
        }
    }

    /// Whether the target has a point-in-time API (Elasticsearch 7.10+, OpenSearch 2.4+).
    pub fn has_pit(&self) -> bool {
        match self.flavor {
            Flavor::Elasticsearch => self.major_minor >= (7, 10),
            Flavor::OpenSearch => self.major_minor >= (2, 4),
        }
    }

    /// Whether the target has ILM (`_ilm`); OpenSearch has ISM instead.
    pub fn has_ilm(&self) -> bool {
        self.flavor == Flavor::Elasticsearch && self.major_minor >= (6, 6)
    }

    /// Whether the target may have X-Pack's security API (`_security`).
    pub fn has_xpack_security(&self) -> bool {
        self.flavor == Flavor::Elasticsearch
    }

    /// Whether the target has composable and component templates (7.8+, all OpenSearch).
    pub fn has_composable_templates(&self) -> bool {
        self.flavor == Flavor::OpenSearch || self.major_minor >= (7, 8)
    }

    /// Whether the target has data streams (7.9+, OpenSearch 1.0+).
    pub fn has_data_streams(&self) -> bool {
        self.flavor == Flavor::OpenSearch || self.major_minor >= (7, 9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn detects_elasticsearch_and_opensearch() {
        let es = ClusterInfo::from_answer(
            &json!({"version": {"number": "8.19.2", "build_flavor": "default"}}),
        )
        .unwrap();
        assert_eq!(
            (es.flavor, es.major_minor),
            (Flavor::Elasticsearch, (8, 19))
        );
        assert!(es.has_pit() && es.has_ilm() && es.has_xpack_security());
        let os = ClusterInfo::from_answer(
            &json!({"version": {"distribution": "opensearch", "number": "2.19.1"}}),
        )
        .unwrap();
        assert_eq!(os.flavor, Flavor::OpenSearch);
        assert!(os.has_pit() && !os.has_ilm() && !os.has_xpack_security());
        let old = ClusterInfo::from_answer(&json!({"version": {"number": "7.9.3"}})).unwrap();
        assert!(!old.has_pit());
        assert!(ClusterInfo::from_answer(&json!({"tagline": "x"})).is_err());
    }
}
