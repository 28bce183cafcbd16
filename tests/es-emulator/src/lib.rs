//! An Elasticsearch 8 REST emulator for tests, held honest by the official spec and clients.
//!
//! Start one in-process with [`EmulatorBuilder`]; check requests against Elastic's REST API
//! spec with [`spec::SpecChecker`]. The binary `kstash-es-emulator` wraps the same builder.

#![warn(missing_docs)]

pub mod api;
pub mod builder;
pub mod client;
pub mod contexts;
pub mod datastreams;
pub mod error;
pub mod ingest;
pub mod mapping;
pub mod query;
pub mod resolve;
pub mod search;
pub mod seed;
pub mod server;
pub mod settings;
pub mod spec;
pub mod store;
pub mod tls;
pub mod util;

pub use api::{Flavor, HandlerFaults};
pub use builder::{EmulatorBuilder, EmulatorError, RunningEmulator};
pub use seed::Seed;
pub use server::{Faults, LoggedRequest, Stats};

/// The Elasticsearch version the emulator reports.
pub const ES_VERSION: &str = "8.19.2";
/// The OpenSearch version the emulator reports in OpenSearch mode.
pub const OPENSEARCH_VERSION: &str = "2.19.1";
