//! RBAC least-privilege checks: compare (Cluster)Role rules with the requests an operator really
//! made, as recorded by the control plane's audit log (`RunningControlPlane::audit`).

use std::collections::BTreeSet;
use std::fmt;

use k8s_openapi::api::rbac::v1::PolicyRule;
use kstash_controlplane::AuditRecord;

/// One permission a rule grants: a verb on `group/resource[/subresource]`, optionally limited to
/// one object name and (for a Role) to one namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Grant {
    /// API group (`""` = core).
    pub api_group: String,
    /// `resource` or `resource/subresource`, as RBAC writes it.
    pub resource: String,
    /// RBAC verb.
    pub verb: String,
    /// `resourceNames` entry, if the rule has any.
    pub resource_name: Option<String>,
    /// The Role's namespace (`None` for a ClusterRole rule).
    pub namespace: Option<String>,
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = if self.api_group.is_empty() {
            "core"
        } else {
            &self.api_group
        };
        write!(f, "{} {g}/{}", self.verb, self.resource)?;
        if let Some(n) = &self.resource_name {
            write!(f, " (name {n})")?;
        }
        if let Some(ns) = &self.namespace {
            write!(f, " in namespace {ns}")?;
        }
        Ok(())
    }
}

/// `resource` or `resource/subresource` of a request, as RBAC matches it.
pub fn rbac_resource(r: &AuditRecord) -> String {
    match &r.subresource {
        Some(s) => format!("{}/{s}", r.resource),
        None => r.resource.clone(),
    }
}

/// Every (group, resource, verb, name) a rule grants; `namespace` is the Role's namespace.
pub fn grants(rule: &PolicyRule, namespace: Option<&str>) -> Vec<Grant> {
    let groups = rule.api_groups.clone().unwrap_or_default();
    let resources = rule.resources.clone().unwrap_or_default();
    let names: Vec<Option<String>> = match &rule.resource_names {
        Some(n) if !n.is_empty() => n.iter().cloned().map(Some).collect(),
        _ => vec![None],
    };
    let mut out = vec![];
    for g in &groups {
        for r in &resources {
            for v in &rule.verbs {
                for n in &names {
                    out.push(Grant {
                        api_group: g.clone(),
                        resource: r.clone(),
                        verb: v.clone(),
                        resource_name: n.clone(),
                        namespace: namespace.map(str::to_string),
                    });
                }
            }
        }
    }
    out
}

/// Whether `g` authorizes request `r` (Kubernetes RBAC semantics: `*` wildcards, `*/sub`,
/// `resourceNames` never match a request without a name, a Role only in its namespace).
pub fn allows(g: &Grant, r: &AuditRecord) -> bool {
    let group_ok = g.api_group == "*" || g.api_group == r.api_group;
    let verb_ok = g.verb == "*" || g.verb == r.verb;
    let res = rbac_resource(r);
    let res_ok = g.resource == "*"
        || g.resource == res
        || match (&r.subresource, g.resource.strip_prefix("*/")) {
            (Some(s), Some(gs)) => s == gs,
            _ => false,
        };
    let name_ok = match &g.resource_name {
        None => true,
        Some(n) => r.name.as_deref() == Some(n.as_str()),
    };
    let ns_ok = match &g.namespace {
        None => true,
        Some(ns) => r.namespace.as_deref() == Some(ns.as_str()),
    };
    group_ok && verb_ok && res_ok && name_ok && ns_ok
}

/// Compares rules with an audit: `missing` are the requests no rule allows (deduplicated,
/// sorted), `unused` the grants no request used. `rules` are `(Role namespace or None for a
/// ClusterRole, rule)`.
pub fn rbac_gaps_scoped(
    rules: &[(Option<String>, PolicyRule)],
    audit: &[AuditRecord],
) -> (Vec<AuditRecord>, Vec<Grant>) {
    let all: Vec<Grant> = rules
        .iter()
        .flat_map(|(ns, r)| grants(r, ns.as_deref()))
        .collect();
    let missing: BTreeSet<AuditRecord> = audit
        .iter()
        .filter(|r| !all.iter().any(|g| allows(g, r)))
        .cloned()
        .collect();
    let unused: BTreeSet<Grant> = all
        .iter()
        .filter(|g| !audit.iter().any(|r| allows(g, r)))
        .cloned()
        .collect();
    (missing.into_iter().collect(), unused.into_iter().collect())
}

/// [`rbac_gaps_scoped`] for rules that apply in every namespace (a ClusterRole).
pub fn rbac_gaps(rules: &[PolicyRule], audit: &[AuditRecord]) -> (Vec<AuditRecord>, Vec<Grant>) {
    let scoped: Vec<_> = rules.iter().map(|r| (None, r.clone())).collect();
    rbac_gaps_scoped(&scoped, audit)
}
