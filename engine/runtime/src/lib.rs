//! The addon host: runs WASM addon components (`kstash:addon@0.2.0`, see `sdk/wit`) in a sandbox.
//!
//! ```text
//! let rt = Runtime::new(RuntimeConfig { cache_dir: Some(dir), ..Default::default() })?;
//! let addon = rt.load(&wasm_bytes, &pinned_digest).await?;          // refuses a wrong digest
//! let out = Arc::new(DirOutput::new("out"));
//! let report = addon.run(
//!     TaskSpec { task: "logical-backup".into(), params, target: Target::new(url), limits: Limits::default() },
//!     TaskIo { output: Some(out), input: None, events: Arc::new(TracingEvents) },
//! ).await?;                                                          // TaskError: trap/limit/denied/guest
//! ```
//!
//! See `docs/runtime.md` for the sandbox model and the decisions behind it.

mod credentials;
mod describe;
mod digest;
mod egress;
mod error;
mod events;
mod host;
mod limits;
mod netpolicy;
mod runtime;
mod streams;
mod target;
mod tcp;

pub use describe::{AddonDescription, ParamDef, ParamKind, TaskDef, TaskKind};
pub use digest::{Digest, DigestParseError};
pub use error::{GuestErrorKind, Limit, LoadError, TaskError};
pub use events::{
    LogLevel, Notice, NoticeKind, PartCount, ProgressUpdate, TaskEvents, TracingEvents,
};
pub use limits::Limits;
pub use netpolicy::{EgressRules, IpRange, IpRangeParseError, METADATA_AND_LINK_LOCAL};
pub use runtime::{Addon, LoadSource, Runtime, RuntimeConfig, TaskIo, TaskReport, TaskSpec};
pub use streams::{
    validate_stream_name, DirInput, DirOutput, DiscardOutput, InputSource, MemoryStreams,
    OutputSink, StreamReader, StreamWriter,
};
pub use target::{ClientCert, Credentials, Target};

/// `async_trait`, re-exported for implementors of the stream traits.
pub use async_trait::async_trait;
