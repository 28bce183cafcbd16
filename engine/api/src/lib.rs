//! KubeStash API types (core/storage/addons `v1alpha1`), the external kinds the engine reads,
//! CRD generation, and the pure helpers of the spec: name generators, phase calculators,
//! size format, retention period parsing and selection, and admission rules.
//!
//! Pure: no I/O.

pub mod addons;
pub mod admission;
pub mod constants;
pub mod core;
pub mod crds;
pub mod external;
pub mod lookup;
pub mod names;
pub mod period;
pub mod phase;
pub mod reference;
pub mod retention;
pub mod shared;
pub mod size;
pub mod storage;
pub mod tenancy;
pub mod webhook;
