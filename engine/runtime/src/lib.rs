//! The addon host: runs WASM addon components (`kstash:addon@0.1.0`, see `sdk/wit`) in a sandbox.
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

mod describe;
mod digest;
mod egress;
mod error;
mod events;
mod host;
mod limits;
mod runtime;
mod streams;
mod target;

pub use describe::{AddonDescription, ParamDef, ParamKind, TaskDef, TaskKind};
pub use digest::{Digest, DigestParseError};
pub use error::{GuestErrorKind, Limit, LoadError, TaskError};
pub use events::{LogLevel, ProgressUpdate, TaskEvents, TracingEvents};
pub use limits::Limits;
pub use runtime::{Addon, LoadSource, Runtime, RuntimeConfig, TaskIo, TaskReport, TaskSpec};
pub use streams::{
    validate_stream_name, DirInput, DirOutput, DiscardOutput, InputSource, MemoryStreams,
    OutputSink, StreamReader, StreamWriter,
};
pub use target::{ClientCert, Credentials, Target};

/// `async_trait`, re-exported for implementors of the stream traits.
pub use async_trait::async_trait;
