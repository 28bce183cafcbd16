//! What kstash's integration tests share, in one place (docs/crates.md):
//!
//! - [`paths`]: the repository root, the tools `scripts/ensure-tools.sh` installs (a missing
//!   tool is a panic naming the script, never a skip), the examples and the built addon;
//! - [`process`]: free ports, child processes killed on drop (and by a watchdog if the test
//!   process dies), a cuttable TCP relay to simulate an outage;
//! - [`moto`]: a real S3 server ([`Moto`]);
//! - [`restic`]: the real `restic` CLI against a repository location;
//! - [`wait`]: polling with a timeout that names what it waited for;
//! - [`time`]: timestamps from RFC 3339 text;
//! - feature `cluster`: [`cluster::TestCluster`] (the embedded control plane with every kstash
//!   CRD, kubectl, Secrets, events), Kubernetes waits, object [`builders`] and [`rbac`] rules
//!   compared with the control plane's audit;
//! - feature `http`: a loopback HTTP server whose answers the test writes ([`http`]);
//! - feature `redis`: a real `redis-server` with a password, optionally TLS only ([`redis`]);
//! - feature `es`: the Elasticsearch emulator, in-process or as its binary, and what KubeDB
//!   creates for a database ([`es`]).
//!
//! Everything a helper starts is stopped on drop. This crate is a dev-dependency only: nothing
//! here reaches the `kstash` binary.

pub mod moto;
pub mod paths;
pub mod process;
pub mod restic;
pub mod time;
pub mod tls;
pub mod wait;

#[cfg(feature = "cluster")]
pub mod builders;
#[cfg(feature = "cluster")]
pub mod cluster;
#[cfg(feature = "es")]
pub mod es;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "cluster")]
pub mod rbac;
#[cfg(feature = "redis")]
pub mod redis;

pub use moto::{Moto, S3_ACCESS_KEY, S3_SECRET_KEY};
pub use paths::{
    addon_module, addon_path, addon_sha256, build_addons, chart_dir, crate_fixture, example_yaml,
    fresh_addon_module, helm_bin, helm_template, kubectl_bin, module_file, module_sha256, moto_bin,
    repo_root, restic_bin, tool, tutorial_doc, tutorial_yaml, workspace_bin, yaml_docs, yaml_file,
};
pub use process::{
    free_port, output, output_async, wait_listening, watchdog, ChildGuard, CuttableProxy,
};
pub use restic::Restic;
pub use time::ts;
pub use wait::wait_for;

#[cfg(feature = "cluster")]
pub use cluster::{condition, condition_true, wait_for_absent, wait_for_object, TestCluster};
