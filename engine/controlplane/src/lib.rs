//! An embedded, durable, Kubernetes-compatible API server.
