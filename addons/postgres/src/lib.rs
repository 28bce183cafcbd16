//! kstash's PostgreSQL addon: logical backup and restore as plain SQL scripts, like
//! `pg_dumpall`/`pg_dump` and `psql`, speaking PostgreSQL's wire protocol itself.
//!
//! The logic is generic over [`conn::Connector`] (a byte stream to the target that the
//! environment can upgrade to TLS and authenticate) and builds and tests on the host; on
//! `wasm32` a thin glue module binds it to the kstash SDK.

pub mod backup;
pub mod client;
pub mod conn;
pub mod dump;
pub mod error;
pub mod globals;
pub mod options;
pub mod restore;
pub mod script;
pub mod sql;
pub mod stream_names;
pub mod wire;

#[cfg(target_arch = "wasm32")]
mod guest;
