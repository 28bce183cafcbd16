//! Ports, child processes that die with the test, and a relay that can be cut.

use std::ffi::OsStr;
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `program args` to completion (stdin closed) and returns its output; panics when it cannot
/// be started.
pub fn output(program: impl AsRef<OsStr>, args: &[&str]) -> Output {
    let program = program.as_ref();
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.to_string_lossy()))
}

/// [`output`] without blocking the test's runtime.
pub async fn output_async(program: impl AsRef<OsStr>, args: &[&str]) -> Output {
    let program = program.as_ref();
    tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| panic!("run {}: {e}", program.to_string_lossy()))
}

/// Starts a shell that kills `child_pid` once this test process is gone (destructors do not
/// run when a test binary is killed).
pub fn watchdog(child_pid: u32) {
    let _ = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "while kill -0 {} 2>/dev/null; do sleep 1; done; kill {} 2>/dev/null",
            std::process::id(),
            child_pid
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

/// Waits (up to `timeout`) until `127.0.0.1:<port>` accepts connections.
pub fn wait_listening(what: &str, port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on port {port} within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A child process killed (and reaped) on drop, and by a [`watchdog`] if the test dies.
#[derive(Debug)]
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// Spawns `cmd` (stdout/stderr as configured by the caller) under a watchdog.
    pub fn spawn(what: &str, cmd: &mut Command) -> ChildGuard {
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {what}: {e}"));
        watchdog(child.id());
        ChildGuard(child)
    }

    /// [`ChildGuard::spawn`], then waits (up to `timeout`) until it listens on `port`.
    pub fn spawn_listening(
        what: &str,
        cmd: &mut Command,
        port: u16,
        timeout: Duration,
    ) -> ChildGuard {
        let child = Self::spawn(what, cmd);
        wait_listening(what, port, timeout);
        child
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// Sends a signal (`-STOP`, `-CONT`, …) to the process.
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args([sig, &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success(), "kill {sig} {}", self.0.id());
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TCP relay on a free loopback port in front of `upstream`, that can be cut to simulate an
/// outage of the server behind it: while cut, every connection (open or new) is closed at once.
pub struct CuttableProxy {
    /// The port it listens on.
    pub port: u16,
    state: Arc<Mutex<CancellationToken>>,
    up: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl CuttableProxy {
    /// Starts relaying `127.0.0.1:<port>` to `127.0.0.1:<upstream>`.
    pub async fn start(upstream: u16) -> CuttableProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(CancellationToken::new()));
        let up = Arc::new(AtomicBool::new(true));
        let (st, u) = (state.clone(), up.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !u.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let cut = st.lock().unwrap().clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = cut.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        });
        CuttableProxy {
            port,
            state,
            up,
            task,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The outage starts: open connections are closed, new ones closed as soon as accepted.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        let mut t = self.state.lock().unwrap();
        t.cancel();
        *t = CancellationToken::new();
    }

    /// The outage ends.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.state.lock().unwrap().cancel();
    }
}
