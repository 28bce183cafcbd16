//! An Elasticsearch 8 REST emulator for tests, held honest by the official spec and clients.
//!
//! Start one in-process with [`EmulatorBuilder`]; check requests against Elastic's REST API
//! spec with [`spec::SpecChecker`]. The binary `kstash-es-emulator` wraps the same builder.

#![warn(missing_docs)]

pub mod api;
pub mod builder;
pub mod client;
pub mod error;
pub mod mapping;
pub mod search;
pub mod seed;
pub mod server;
pub mod settings;
pub mod spec;
pub mod store;
pub mod tls;
pub mod util;

pub use builder::{EmulatorBuilder, EmulatorError, RunningEmulator};
pub use seed::Seed;
pub use server::{Faults, LoggedRequest, Stats};

/// The Elasticsearch version the emulator reports.
pub const ES_VERSION: &str = "8.19.2";
