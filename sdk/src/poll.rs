//! Waiting on several WASI pollables at once: the building block for keeping several TCP
//! connections (and `wasi:http` requests) in flight from one guest.
//!
//! ```text
//! let ready = kstash_sdk::poll::wait_any(&[&a.input_pollable(), &b.input_pollable()]);
//! for i in ready { /* stream i has bytes (or end of stream): `try_read` it */ }
//! ```
//! A blocking-style executor over these (`http::send_all`, N bulk requests in flight) is not
//! part of this version of the SDK.

pub use wasip2::io::poll::Pollable;

/// Blocks until at least one of `pollables` is ready; returns the indices of the ready ones.
pub fn wait_any(pollables: &[&Pollable]) -> Vec<usize> {
    if pollables.is_empty() {
        return Vec::new();
    }
    wasip2::io::poll::poll(pollables)
        .into_iter()
        .map(|i| i as usize)
        .collect()
}
