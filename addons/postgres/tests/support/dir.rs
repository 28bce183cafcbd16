//! A [`Sink`] that writes components as files under a directory, and helpers to read them back.

use postgres_addon::backup::Sink;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Components as files under `root` (a component `databases/app.sql` is `root/databases/app.sql`).
pub struct DirSink {
    /// The directory.
    pub root: PathBuf,
}

impl Sink for DirSink {
    fn create(&mut self, name: &str) -> std::io::Result<Box<dyn Write + '_>> {
        let p = self.root.join(name);
        std::fs::create_dir_all(p.parent().unwrap())?;
        Ok(Box::new(std::io::BufWriter::new(std::fs::File::create(p)?)))
    }
}

/// The components under `root`, as (name, reader), globals first.
pub fn components(root: &Path) -> Vec<(String, Box<dyn Read>)> {
    let mut names = Vec::new();
    if root.join("globals.sql").exists() {
        names.push("globals.sql".to_string());
    }
    if let Ok(rd) = std::fs::read_dir(root.join("databases")) {
        let mut dbs: Vec<String> = rd
            .map(|e| format!("databases/{}", e.unwrap().file_name().to_string_lossy()))
            .collect();
        dbs.sort();
        names.extend(dbs);
    }
    names
        .into_iter()
        .map(|n| {
            let f: Box<dyn Read> = Box::new(std::fs::File::open(root.join(&n)).unwrap());
            (n, f)
        })
        .collect()
}
