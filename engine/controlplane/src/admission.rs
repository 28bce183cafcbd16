//! Admission hooks: the embedded counterpart of a cluster's validating and mutating admission
//! webhooks. A hook sees each create and each update of a main resource (never of `status`),
//! after schema defaulting and validation, inside the write's transaction, with read access to
//! every stored object; it admits the object (possibly mutated) or denies the write, which the
//! client sees as a webhook denial (`403 Forbidden`, `admission webhook "…" denied the request`).
//!
//! The control plane itself knows no rules: whoever starts it installs the hook
//! ([`crate::ServerConfig::admission`]).

use std::sync::Arc;

use serde_json::Value;

/// What is being written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// A new object.
    Create,
    /// A change of an existing object's main resource.
    Update,
}

/// One write under review.
#[derive(Debug)]
pub struct Review<'a> {
    /// API group (`""` for core).
    pub group: &'a str,
    /// Kind.
    pub kind: &'a str,
    /// Create or update.
    pub operation: Operation,
    /// The stored object, on update.
    pub old: Option<&'a Value>,
    /// The object to be stored.
    pub object: &'a Value,
}

/// Read access to the stored objects during a review.
pub trait StoredObjects {
    /// Every stored object of `group`/`plural` (`""` for core kinds), in every namespace.
    fn list(&self, group: &str, plural: &str) -> Vec<Value>;
}

/// A denial: the message the client shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Denial {
    /// Full message, `admission webhook "<name>" denied the request: <field>: <reason>`.
    pub message: String,
}

/// An admission hook.
pub trait AdmissionHook: Send + Sync + std::fmt::Debug {
    /// Admits `review.object`: `Ok(Some(v))` stores `v` instead (a mutation), `Ok(None)` stores
    /// it as it is, `Err` refuses the write.
    fn review(
        &self,
        review: &Review<'_>,
        stored: &dyn StoredObjects,
    ) -> Result<Option<Value>, Denial>;
}

/// A shareable hook.
pub type Hook = Arc<dyn AdmissionHook>;
