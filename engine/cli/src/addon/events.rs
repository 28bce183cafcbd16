//! Task log and progress on the terminal: a progress bar on a TTY, plain lines otherwise.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use kstash_runtime::{LogLevel, ProgressUpdate, TaskEvents};

/// Shows a task's events on stderr.
pub struct CliEvents {
    bar: Option<ProgressBar>,
    plain: Mutex<(Instant, String)>,
}

impl CliEvents {
    /// A bar when stderr is a terminal, plain lines (at most one per second per stage) otherwise.
    pub fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} {per_sec}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Self {
            bar,
            plain: Mutex::new((Instant::now() - Duration::from_secs(10), String::new())),
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Default for CliEvents {
    fn default() -> Self {
        Self::new()
    }
}

impl TaskEvents for CliEvents {
    fn log(&self, level: LogLevel, message: &str) {
        let line = format!("[{}] {message}", level_name(level));
        match &self.bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn progress(&self, u: &ProgressUpdate) {
        match &self.bar {
            Some(b) => {
                b.set_message(format!("{} ({})", u.stage, u.unit));
                b.set_length(u.total.unwrap_or(0).max(u.done));
                b.set_position(u.done);
            }
            None => {
                let mut last = self.plain.lock().expect("progress lock");
                let done = u.total.is_some_and(|t| u.done >= t);
                if done || last.1 != u.stage || last.0.elapsed() >= Duration::from_secs(1) {
                    *last = (Instant::now(), u.stage.clone());
                    match u.total {
                        Some(t) => eprintln!("progress: {} {}/{} {}", u.stage, u.done, t, u.unit),
                        None => eprintln!("progress: {} {} {}", u.stage, u.done, u.unit),
                    }
                }
            }
        }
    }
}

fn level_name(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Trace => "trace",
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    }
}
