//! The Elasticsearch emulator (in-process, or its `kstash-es-emulator` binary) and what KubeDB
//! creates for a database.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

pub use kstash_es_emulator::{Faults, RunningEmulator};

use crate::builders::{appbinding_yaml, b64};
use crate::cluster::TestCluster;
use crate::process::ChildGuard;

/// An emulator over TLS with basic auth `elastic`/`password`, seeded with `docs` documents over
/// 3 indices (documents up to `large_doc_bytes`, seed `seed`), with `faults`.
pub async fn es_emulator(
    password: &str,
    docs: usize,
    large_doc_bytes: usize,
    seed: u64,
    faults: Option<Faults>,
) -> RunningEmulator {
    let mut b = kstash_es_emulator::EmulatorBuilder::new()
        .tls(true)
        .auth("elastic", password);
    if docs > 0 {
        b = b.seed(kstash_es_emulator::Seed {
            docs,
            indices: 3,
            large_doc_bytes,
            seed,
        });
    }
    if let Some(f) = faults {
        b = b.faults(f);
    }
    b.start().await.expect("start the ES emulator")
}

/// Every search request of the emulator delayed by `delay_ms` (a backup that is still running
/// when the test acts).
pub fn slow(delay_ms: u64, seed: u64) -> Faults {
    Faults {
        delay_ms,
        delay_rate: 1.0,
        seed,
        paths: vec!["/_search".into()],
        ..Faults::default()
    }
}

/// User indices (not `.`-prefixed) of `emu` and their document counts.
pub fn user_indices(emu: &RunningEmulator) -> Vec<(String, usize)> {
    let store = emu.api().store();
    store
        .indices
        .values()
        .filter(|i| !i.name.starts_with('.'))
        .map(|i| (i.name.clone(), i.doc_count()))
        .collect()
}

/// What KubeDB creates for Elasticsearch `name` in `ns`: the credentials Secret
/// `<name>-elastic-cred` (`elastic`/`password`) and the AppBinding pointing at `emu` (its CA in
/// `caBundle`); with `kubedb_object`, the `Elasticsearch` object itself (`enableSSL: true`).
pub async fn es_database(
    cluster: &TestCluster,
    ns: &str,
    name: &str,
    emu: &RunningEmulator,
    password: &str,
    kubedb_object: bool,
) {
    cluster
        .create_secret(
            ns,
            &format!("{name}-elastic-cred"),
            &[("username", "elastic"), ("password", password)],
        )
        .await;
    let ca = emu.ca_pem.as_deref().expect("a TLS emulator has a CA");
    let appbinding = appbinding_yaml(ns, name, &emu.url, &[]).replace(
        &format!("    url: {}\n", emu.url),
        &format!("    url: {}\n    caBundle: {}\n", emu.url, b64(ca)),
    );
    if kubedb_object {
        cluster.apply_yaml(&format!(
            "apiVersion: kubedb.com/v1\nkind: Elasticsearch\nmetadata:\n  name: {name}\n  \
             namespace: {ns}\nspec:\n  version: xpack-8.15.0\n  enableSSL: true\n  replicas: 1\n"
        ));
    }
    cluster.apply_yaml(&appbinding);
}

/// The `kstash-es-emulator` binary running (plain HTTP, no auth), killed on drop.
pub struct EmulatorProcess {
    _child: ChildGuard,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl EmulatorProcess {
    /// Starts `bin` with `args` (e.g. `--seed-docs`) on a free port and reads its URL.
    pub fn start(bin: &Path, args: &[&str]) -> EmulatorProcess {
        let mut child = ChildGuard::spawn(
            "kstash-es-emulator",
            Command::new(bin)
                .args(["--listen", "127.0.0.1:0"])
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        );
        let out = child.0.stdout.take().expect("stdout");
        let mut url = String::new();
        BufReader::new(out)
            .read_line(&mut url)
            .expect("the emulator prints its URL");
        let url = url.trim().to_string();
        assert!(url.starts_with("http"), "emulator printed {url:?}");
        EmulatorProcess { _child: child, url }
    }
}
