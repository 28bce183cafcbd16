//! Guest SDK for kstash database addons.
//!
//! An addon is a WebAssembly component built with plain
//! `cargo build --release --target wasm32-wasip2`. It implements [`Addon`] and exports it with
//! [`export_addon!`]:
//!
//! ```text
//! use kstash_sdk::prelude::*;
//!
//! struct MyAddon;
//! impl Addon for MyAddon {
//!     fn describe() -> Description { /* name, version, tasks, components */ }
//!     fn backup(task: &Task) -> Result<TaskSummary, TaskError> {
//!         let resp = task.target().get("/_cat/indices").send()?.error_for_status()?;
//!         let mut out = OutputStream::open("indices.txt")?;
//!         std::io::copy(&mut resp.into_reader(), &mut out)?;
//!         let bytes = out.finish()?;
//!         Ok(TaskSummary { items: 1, bytes, warnings: vec![] })
//!     }
//!     fn restore(task: &Task) -> Result<TaskSummary, TaskError> { /* ... */ }
//! }
//! export_addon!(MyAddon);
//! ```
//!
//! What is inside:
//! - [`bindings`]: the raw bindings of the `kstash:addon@0.2.0` world (`sdk/wit/addon.wit`);
//! - [`http`]: a blocking, streaming HTTP client on raw `wasi:http` (no credentials needed: the
//!   host attaches them to requests for the target);
//! - [`streams`]: [`OutputStream`] (`std::io::Write`) and [`InputStream`] (`std::io::Read`)
//!   over the host's named streams;
//! - [`tcp`]: [`TcpStream`], a blocking TCP stream to the target (`Read`, `BufRead`, `Write`)
//!   with TLS (also as an upgrade) done by the host;
//! - [`credentials`]: the target's user name, and the host using its secret for the guest
//!   (write it into a connection, SCRAM-SHA-256, PostgreSQL md5);
//! - [`params`]: typed access to task parameters with errors that name the parameter;
//! - [`log`] and [`progress`]: the task log and the progress display;
//! - [`poll`]: wait on several pollables (TCP streams, HTTP) at once;
//! - [`report`]: per-part counts and warnings/skipped items for the Snapshot status.

pub mod credentials;
pub mod http;
pub mod log;
pub mod params;
pub mod poll;
pub mod progress;
pub mod report;
pub mod streams;
mod task;
pub mod tcp;

/// Raw bindings of the `kstash:addon@0.2.0` world. Most addons need only the re-exports at the
/// crate root.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "addon",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_kstash_addon_world",
        default_bindings_module: "kstash_sdk::bindings",
        // Reuse the WASI bindings of the `wasip2` crate instead of generating a second copy.
        with: {
            "wasi:http/types@0.2.12": wasip2::http::types,
            "wasi:http/outgoing-handler@0.2.12": wasip2::http::outgoing_handler,
            "wasi:io/error@0.2.12": wasip2::io::error,
            "wasi:io/poll@0.2.12": wasip2::io::poll,
            "wasi:io/streams@0.2.12": wasip2::io::streams,
            "wasi:clocks/monotonic-clock@0.2.12": wasip2::clocks::monotonic_clock,
        },
    });
}

pub use bindings::kstash::addon::types::{
    Description, ParamDef, ParamKind, TaskComponents, TaskContext, TaskDef, TaskError, TaskKind,
    TaskSummary,
};
pub use http::{Client, HttpError, Response};
pub use params::Params;
pub use streams::{input_names, InputStream, OutputStream};
pub use task::{Addon, Task};
pub use tcp::{TcpError, TcpStream};

#[doc(hidden)]
pub use task::{__run_backup, __run_restore};

/// The raw WASI 0.2.12 bindings (`wasip2` crate), for what the SDK does not wrap.
pub use wasip2 as wasi;

/// Everything an addon usually needs, in one `use kstash_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::http::{Client, HttpError, Response};
    pub use crate::params::Params;
    pub use crate::streams::{input_names, InputStream, OutputStream};
    pub use crate::task::{Addon, Task};
    pub use crate::tcp::{TcpError, TcpStream};
    pub use crate::{credentials, export_addon, log, progress, report};
    pub use crate::{
        Description, ParamDef, ParamKind, TaskComponents, TaskDef, TaskError, TaskKind, TaskSummary,
    };
}

/// Exports a type implementing [`Addon`] as the component's `kstash:addon/tasks` export.
/// Use it exactly once, at the crate root of a `cdylib` crate.
#[macro_export]
macro_rules! export_addon {
    ($addon:ty) => {
        const _: () = {
            struct __KstashAddonExport;
            impl $crate::bindings::exports::kstash::addon::tasks::Guest for __KstashAddonExport {
                fn describe() -> $crate::Description {
                    <$addon as $crate::Addon>::describe()
                }
                fn components() -> ::std::vec::Vec<$crate::TaskComponents> {
                    <$addon as $crate::Addon>::components()
                }
                fn backup(
                    ctx: $crate::TaskContext,
                ) -> ::core::result::Result<$crate::TaskSummary, $crate::TaskError> {
                    $crate::__run_backup::<$addon>(ctx)
                }
                fn restore(
                    ctx: $crate::TaskContext,
                ) -> ::core::result::Result<$crate::TaskSummary, $crate::TaskError> {
                    $crate::__run_restore::<$addon>(ctx)
                }
            }
            $crate::bindings::__export_kstash_addon_world!(
                __KstashAddonExport with_types_in $crate::bindings
            );
        };
    };
}
