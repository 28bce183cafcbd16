//! Opt-in audit of resource requests, named the way RBAC authorizes them.
//!
//! A real API server authorizes every authenticated resource request as
//! `(verb, apiGroup, resource, subresource, namespace, name)`. The control plane records exactly
//! that tuple (before routing, so requests for kinds it does not serve are recorded too) when
//! [`crate::ServerConfig::audit`] is on; [`crate::RunningControlPlane::audit`] returns the log.
//! Tests compare it with a ClusterRole's rules to prove least privilege.

use std::sync::Mutex;

use http::Method;

/// One authorized resource request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AuditRecord {
    /// RBAC verb: `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`.
    pub verb: String,
    /// API group (`""` for the core group).
    pub api_group: String,
    /// Plural resource name (`backupsessions`, `leases`, `secrets`).
    pub resource: String,
    /// Subresource (`status`, `finalize`), if any.
    pub subresource: Option<String>,
    /// Namespace from the path (`None` for cluster-scoped or all-namespaces requests).
    pub namespace: Option<String>,
    /// Object name from the path (`None` for collection requests).
    pub name: Option<String>,
    /// The request's `User-Agent` header (a real API server's audit `userAgent`), which tells
    /// clients sharing the one token apart.
    pub user_agent: Option<String>,
}

/// The RBAC view of one request: `None` for non-resource URLs (`/api`, `/apis/...` discovery,
/// `/openapi/v3`, `/version`, health) and for methods RBAC does not map to a verb.
///
/// `segs` are the path's non-empty segments; `watch` is the `watch` query flag. The caller
/// fills [`AuditRecord::user_agent`].
pub fn record_for(method: &Method, segs: &[&str], watch: bool) -> Option<AuditRecord> {
    let (group, rest) = match segs {
        ["api", _v, rest @ ..] => ("", rest),
        ["apis", g, _v, rest @ ..] => (*g, rest),
        _ => return None,
    };
    let (namespace, rest): (Option<&str>, &[&str]) = match rest {
        ["namespaces", ns, plural, more @ ..]
            if !matches!(*plural, "status" | "finalize") || !more.is_empty() =>
        {
            (Some(*ns), &rest[2..])
        }
        _ => (None, rest),
    };
    let (resource, name, subresource) = match rest {
        [p] => (*p, None, None),
        [p, n] => (*p, Some(*n), None),
        [p, n, s] => (*p, Some(*n), Some(*s)),
        _ => return None,
    };
    let verb = if method == Method::GET || method == Method::HEAD {
        match (watch, name.is_some()) {
            (true, _) => "watch",
            (false, true) => "get",
            (false, false) => "list",
        }
    } else if method == Method::POST {
        "create"
    } else if method == Method::PUT {
        "update"
    } else if method == Method::PATCH {
        "patch"
    } else if method == Method::DELETE {
        if name.is_some() {
            "delete"
        } else {
            "deletecollection"
        }
    } else {
        return None;
    };
    // A namespace object's own path (`/api/v1/namespaces/demo`) names the namespace itself.
    let namespace = if group.is_empty() && resource == "namespaces" {
        None
    } else {
        namespace
    };
    Some(AuditRecord {
        verb: verb.to_string(),
        api_group: group.to_string(),
        resource: resource.to_string(),
        subresource: subresource.map(str::to_string),
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        user_agent: None,
    })
}

/// The in-memory audit log of one running control plane.
#[derive(Debug, Default)]
pub struct AuditLog {
    records: Mutex<Vec<AuditRecord>>,
}

impl AuditLog {
    /// Appends one record.
    pub fn push(&self, r: AuditRecord) {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(r);
    }

    /// Every record so far, in arrival order.
    pub fn records(&self) -> Vec<AuditRecord> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(method: Method, path: &str, watch: bool) -> Option<AuditRecord> {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        record_for(&method, &segs, watch)
    }

    fn t(verb: &str, g: &str, r: &str, sub: Option<&str>, ns: Option<&str>) -> AuditRecord {
        AuditRecord {
            verb: verb.into(),
            api_group: g.into(),
            resource: r.into(),
            subresource: sub.map(Into::into),
            namespace: ns.map(Into::into),
            name: None,
            user_agent: None,
        }
    }

    #[test]
    fn verbs_follow_rbac_names() {
        let base = "/apis/core.kubestash.com/v1alpha1/namespaces/demo/backupsessions";
        assert_eq!(
            rec(Method::GET, base, false),
            Some(t(
                "list",
                "core.kubestash.com",
                "backupsessions",
                None,
                Some("demo")
            ))
        );
        assert_eq!(rec(Method::GET, base, true).unwrap().verb, "watch");
        assert_eq!(rec(Method::POST, base, false).unwrap().verb, "create");
        assert_eq!(
            rec(Method::DELETE, base, false).unwrap().verb,
            "deletecollection"
        );
        let one = format!("{base}/s1");
        assert_eq!(rec(Method::GET, &one, false).unwrap().verb, "get");
        assert_eq!(rec(Method::PUT, &one, false).unwrap().verb, "update");
        assert_eq!(rec(Method::PATCH, &one, false).unwrap().verb, "patch");
        assert_eq!(rec(Method::DELETE, &one, false).unwrap().verb, "delete");
        let st = rec(Method::PATCH, &format!("{one}/status"), false).unwrap();
        assert_eq!(st.subresource.as_deref(), Some("status"));
        assert_eq!(st.name.as_deref(), Some("s1"));
    }

    #[test]
    fn core_group_cluster_scope_and_namespaces() {
        assert_eq!(
            rec(Method::GET, "/api/v1/secrets", true),
            Some(t("watch", "", "secrets", None, None))
        );
        let ns = rec(Method::GET, "/api/v1/namespaces/demo", false).unwrap();
        assert_eq!((ns.resource.as_str(), ns.namespace), ("namespaces", None));
        let fin = rec(Method::PUT, "/api/v1/namespaces/demo/finalize", false).unwrap();
        assert_eq!(
            (fin.resource.as_str(), fin.subresource.as_deref()),
            ("namespaces", Some("finalize"))
        );
        let lease = rec(
            Method::PUT,
            "/apis/coordination.k8s.io/v1/namespaces/kstash/leases/kstash-operator",
            false,
        )
        .unwrap();
        assert_eq!(lease.api_group, "coordination.k8s.io");
        assert_eq!(lease.namespace.as_deref(), Some("kstash"));
        assert_eq!(lease.name.as_deref(), Some("kstash-operator"));
    }

    #[test]
    fn non_resource_urls_are_not_recorded() {
        for p in [
            "/api",
            "/apis",
            "/api/v1",
            "/apis/core.kubestash.com/v1alpha1",
            "/version",
        ] {
            assert_eq!(rec(Method::GET, p, false), None, "{p}");
        }
        assert_eq!(rec(Method::GET, "/openapi/v3", false), None);
    }
}
