//! Elasticsearch-shaped errors: `{"error":{"root_cause":[…],"type":…,"reason":…},"status":N}`.

use serde_json::{json, Map, Value};

/// An error answered to the client in Elasticsearch's JSON error format.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {kind}: {reason}")]
pub struct EsError {
    /// HTTP status code.
    pub status: u16,
    /// Elasticsearch exception type, e.g. `index_not_found_exception`.
    pub kind: String,
    /// Human-readable reason, worded like Elasticsearch.
    pub reason: String,
    /// Extra fields placed next to `type`/`reason` (e.g. `index`, `resource.id`).
    pub extra: Vec<(String, Value)>,
    /// Optional root cause that differs from the top-level error (search phase failures).
    pub cause: Option<Box<EsError>>,
}

impl EsError {
    /// A new error with the given status, type and reason.
    pub fn new(status: u16, kind: &str, reason: impl Into<String>) -> Self {
        EsError {
            status,
            kind: kind.to_string(),
            reason: reason.into(),
            extra: Vec::new(),
            cause: None,
        }
    }

    /// Adds an extra field to the error object.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.retain(|(k, _)| k != key);
        self.extra.push((key.to_string(), value.into()));
        self
    }

    /// 400 `illegal_argument_exception`.
    pub fn illegal_argument(reason: impl Into<String>) -> Self {
        Self::new(400, "illegal_argument_exception", reason)
    }

    /// 400 `action_request_validation_exception` with ES's "Validation Failed: 1: …;" wording.
    pub fn validation(reason: &str) -> Self {
        Self::new(
            400,
            "action_request_validation_exception",
            format!("Validation Failed: 1: {reason};"),
        )
    }

    /// 400 `parsing_exception`.
    pub fn parsing(reason: impl Into<String>) -> Self {
        Self::new(400, "parsing_exception", reason)
    }

    /// 404 `index_not_found_exception` for `name`.
    pub fn index_not_found(name: &str) -> Self {
        Self::new(
            404,
            "index_not_found_exception",
            format!("no such index [{name}]"),
        )
        .with("resource.type", "index_or_alias")
        .with("resource.id", name)
        .with("index_uuid", "_na_")
        .with("index", name)
    }

    /// 404 `search_context_missing_exception` for an unknown scroll or PIT id.
    pub fn context_missing(id: &str) -> Self {
        Self::new(
            404,
            "search_context_missing_exception",
            format!("No search context found for id [{id}]"),
        )
    }

    /// 400 `search_phase_execution_exception` ("all shards failed") wrapping `cause`.
    pub fn search_phase(cause: EsError) -> Self {
        let mut e = Self::new(400, "search_phase_execution_exception", "all shards failed")
            .with("phase", "query")
            .with("grouped", true);
        e.status = cause.status;
        e.cause = Some(Box::new(cause));
        e
    }

    fn inner(&self) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), json!(self.kind));
        m.insert("reason".into(), json!(self.reason));
        for (k, v) in &self.extra {
            m.insert(k.clone(), v.clone());
        }
        if let Some(c) = &self.cause {
            m.insert("caused_by".into(), c.inner());
        }
        Value::Object(m)
    }

    /// The full response body.
    pub fn to_json(&self) -> Value {
        let root = match &self.cause {
            Some(c) => c.inner(),
            None => {
                let mut m = Map::new();
                m.insert("type".into(), json!(self.kind));
                m.insert("reason".into(), json!(self.reason));
                for (k, v) in &self.extra {
                    m.insert(k.clone(), v.clone());
                }
                Value::Object(m)
            }
        };
        let mut inner = self.inner();
        inner
            .as_object_mut()
            .expect("object")
            .insert("root_cause".into(), json!([root]));
        // Put root_cause first, like Elasticsearch.
        let mut ordered = Map::new();
        let obj = inner.as_object_mut().expect("object");
        ordered.insert("root_cause".into(), obj.remove("root_cause").expect("root"));
        for (k, v) in std::mem::take(obj) {
            ordered.insert(k, v);
        }
        json!({"error": Value::Object(ordered), "status": self.status})
    }

    /// The per-item error object used inside `_bulk` responses.
    pub fn item_error(&self) -> Value {
        self.inner()
    }
}

/// Result type of request handlers.
pub type EsResult<T> = Result<T, EsError>;
