//! The addon host: runs WASM addon components in a sandbox.
