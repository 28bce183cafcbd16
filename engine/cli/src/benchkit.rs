//! What the `kstash bench …` commands share: a child's CPU time and peak RSS from `wait4`,
//! medians, and the header line naming the build, the CPUs and the load.

#[cfg(any(feature = "addon", feature = "repo"))]
use anyhow::Context as _;
use anyhow::{bail, Result};

/// What a child process used, from `wait4`.
#[cfg(any(feature = "addon", feature = "repo"))]
pub struct Usage {
    /// User + system CPU seconds.
    pub cpu: f64,
    /// Peak resident set size, bytes.
    pub peak: u64,
}

#[cfg(any(feature = "addon", feature = "repo"))]
/// Waits for `child` with `wait4`, returning its exit status, CPU seconds and peak RSS
/// (the child's own `ru_maxrss`, not the maximum over all children). Linux counts in it the
/// RSS the parent had when it forked the child, so the parent keeps its own RSS small.
pub fn wait_usage(child: &std::process::Child) -> Result<(i32, Usage)> {
    let mut status = 0;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    loop {
        // SAFETY: plain syscall on our own child with valid out-pointers.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).context("wait4");
        }
    }
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    Ok((
        code,
        Usage {
            cpu: t(ru.ru_utime) + t(ru.ru_stime),
            peak: ru.ru_maxrss as u64 * 1024,
        },
    ))
}

#[cfg(feature = "addon")]
/// Median of `v` (the upper middle value for an even count; NaN when empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

/// `release` or `DEBUG`: the profile this binary was built with.
pub fn build_profile() -> &'static str {
    if cfg!(debug_assertions) {
        "DEBUG"
    } else {
        "release"
    }
}

/// `kstash <profile> build, N CPUs, load a b c`.
pub fn machine_line() -> String {
    format!(
        "kstash {} build, {} CPUs, load {}",
        build_profile(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split(' ')
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// Refuses to report ratios from a debug build unless `allow_debug` (a CI smoke run).
pub fn refuse_debug_ratios(allow_debug: bool) -> Result<()> {
    if cfg!(debug_assertions) && !allow_debug {
        bail!(
            "this kstash is a debug build: its ratios would mislead. Build it with \
             `cargo build --release -p kstash`, or pass --allow-debug-build for a smoke run"
        );
    }
    Ok(())
}

/// Runs `cmd` to the end with its stdout and stderr in `log`: wall seconds, CPU seconds, peak
/// RSS and the output. A non-zero exit fails naming `what`, with the output.
pub fn run_timed(
    log: &std::path::Path,
    what: &str,
    cmd: &mut std::process::Command,
) -> Result<(f64, f64, u64, String)> {
    let out = std::fs::File::create(log)?;
    let t = std::time::Instant::now();
    let child = cmd
        .stdout(std::process::Stdio::from(out.try_clone()?))
        .stderr(std::process::Stdio::from(out))
        .spawn()
        .with_context(|| format!("{what}: starting it"))?;
    let (code, usage) = wait_usage(&child)?;
    let secs = t.elapsed().as_secs_f64();
    let text = std::fs::read_to_string(log).unwrap_or_default();
    if code != 0 {
        bail!("{what} failed (exit {code}):\n{text}");
    }
    Ok((secs, usage.cpu, usage.peak, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "addon")]
    #[test]
    fn median_takes_the_middle_value() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 3.0);
        assert!(median(vec![]).is_nan());
    }

    #[test]
    fn debug_ratios_need_the_flag() {
        assert!(refuse_debug_ratios(true).is_ok());
        assert_eq!(refuse_debug_ratios(false).is_err(), cfg!(debug_assertions));
    }
}
