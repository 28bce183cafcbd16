//! Installing kstash: the private local state of `kstash up` (every file it writes 0600, every
//! directory 0700, whatever the umask) and the Helm chart beside KubeDB's CRDs.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("stat {}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// A `kstash up` child, stopped with SIGTERM (then killed) on drop.
struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `kstash up` under `umask 000` (so only the modes given at creation protect the files)
/// and waits until it printed its `export KUBECONFIG=` line (control plane and operator started).
fn kstash_up(data_dir: &Path) -> Up {
    let exe = env!("CARGO_BIN_EXE_kstash");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"umask 000 && exec "$0" up --data-dir "$1" --listen 127.0.0.1:0 --metrics-addr off --shutdown-grace 1 --addons "$2""#)
        .arg(exe)
        .arg(data_dir)
        .arg(repo_root().join("examples/addons"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning kstash up");
    let stdout = child.stdout.take().expect("stdout");
    let up = Up(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let done = line.starts_with("export KUBECONFIG=");
            let _ = tx.send(line);
            if done {
                return;
            }
        }
    });
    let mut seen = vec![];
    loop {
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) if line.starts_with("export KUBECONFIG=") => return up,
            Ok(line) => seen.push(line),
            Err(e) => panic!("kstash up did not start ({e}); stdout so far: {seen:#?}"),
        }
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let p = e.expect("entry").path();
        out.push(p.clone());
        if std::fs::symlink_metadata(&p).expect("stat").is_dir() {
            walk(&p, out);
        }
    }
}

#[test]
fn kstash_up_writes_every_file_0600_and_every_dir_0700() {
    let tmp = tempfile::tempdir().expect("tmp");
    let state = tmp.path().join("state");
    let check = |when: &str| {
        assert_eq!(mode(&state), 0o700, "{when}: {}", state.display());
        let mut all = vec![];
        walk(&state, &mut all);
        // The files holding credentials or Secrets, named so that a rename cannot hide one.
        let kubeconfig = std::fs::read_to_string(state.join("kubeconfig")).expect("kubeconfig");
        let token = std::fs::read_to_string(state.join("token")).expect("token");
        assert!(
            kubeconfig.contains(&format!("token: {}", token.trim())),
            "the kubeconfig carries the bearer token"
        );
        for f in ["kubeconfig", "token", "server.key", "store.redb"] {
            assert!(all.contains(&state.join(f)), "{when}: {f} was not written");
        }
        for p in &all {
            let meta = std::fs::symlink_metadata(p).expect("stat");
            let want = if meta.is_dir() { 0o700 } else { 0o600 };
            assert!(
                !meta.file_type().is_symlink(),
                "{when}: {} is a symlink",
                p.display()
            );
            assert_eq!(
                mode(p),
                want,
                "{when}: {} is {:o}, not {want:o}",
                p.display(),
                mode(p)
            );
        }
        all.len()
    };

    let up = kstash_up(&state);
    let files = check("first start");
    drop(up);
    assert!(
        files >= 7,
        "expected the store, certificates, token, kubeconfig, operator dir"
    );

    // State left by an older version with wide modes is narrowed at the next start.
    for f in ["kubeconfig", "token", "server.key", "store.redb", "ca.crt"] {
        std::fs::set_permissions(state.join(f), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
    }
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let up = kstash_up(&state);
    check("restart over wide modes");
    drop(up);
}

#[test]
fn kstash_up_refuses_a_shared_data_dir() {
    let tmp = tempfile::tempdir().expect("tmp");
    let shared = tmp.path().join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let out = Command::new(env!("CARGO_BIN_EXE_kstash"))
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--metrics-addr",
            "off",
            "--data-dir",
        ])
        .arg(&shared)
        .output()
        .expect("kstash up");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "kstash up accepted a sticky /tmp-like dir"
    );
    assert!(
        err.contains("--data-dir") && err.contains("sticky"),
        "the error names the flag and the reason: {err}"
    );
    assert_eq!(
        std::fs::read_dir(&shared).expect("ls").count(),
        0,
        "nothing written"
    );
}
