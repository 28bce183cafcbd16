//! Per-task limits and the memory limiter.

use std::time::Duration;

/// Limits of one task. `Default` gives the engine's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Guest linear memory, bytes (default 256 MiB).
    pub memory_bytes: u64,
    /// CPU time executing guest code, measured in epoch ticks (default 30 min).
    pub cpu_time: Duration,
    /// Wall-clock time of the whole task, including time blocked in I/O (default 6 h).
    pub wall_clock: Duration,
    /// Total bytes the task may write to its output streams (default 1 TiB).
    pub max_bytes_written: u64,
    /// Output streams per task in total (default 100 000).
    pub max_streams: u32,
    /// Output streams open at once (default 64).
    pub max_open_streams: u32,
    /// Bytes exchanged with the target over TCP, in and out together (default 1 TiB).
    pub max_target_bytes: u64,
    /// Longest a TCP read or write may wait for the target to make progress (default 10 min).
    pub target_idle: Duration,
    /// TCP connections to the target per task (default 64).
    pub max_connections: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 256 << 20,
            cpu_time: Duration::from_secs(30 * 60),
            wall_clock: Duration::from_secs(6 * 3600),
            max_bytes_written: 1 << 40,
            max_streams: 100_000,
            max_open_streams: 64,
            max_target_bytes: 1 << 40,
            target_idle: Duration::from_secs(600),
            max_connections: 64,
        }
    }
}

/// Caps guest memory and table growth; remembers a refused growth so the host can report it as
/// a memory limit rather than a plain trap.
pub(crate) struct TaskLimiter {
    pub memory_bytes: usize,
    pub hit: Option<String>,
}

impl wasmtime::ResourceLimiter for TaskLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            let msg = format!(
                "guest memory would grow from {current} to {desired} bytes; the limit is {} bytes",
                self.memory_bytes
            );
            self.hit = Some(msg.clone());
            return Err(wasmtime::format_err!(msg));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }

    fn instances(&self) -> usize {
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        16
    }
}
