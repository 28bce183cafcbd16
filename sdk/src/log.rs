//! The task log. Lines go to the host's log for the task (and `kstash addon run` prints them).
//! Anything written to stdout/stderr also lands there, as `info`/`warn` lines.

use crate::bindings::kstash::addon::log::{write, Level};

/// Logs a trace line.
pub fn trace(message: &str) {
    write(Level::Trace, message);
}
/// Logs a debug line.
pub fn debug(message: &str) {
    write(Level::Debug, message);
}
/// Logs an info line.
pub fn info(message: &str) {
    write(Level::Info, message);
}
/// Logs a warning.
pub fn warn(message: &str) {
    write(Level::Warn, message);
}
/// Logs an error.
pub fn error(message: &str) {
    write(Level::Error, message);
}
