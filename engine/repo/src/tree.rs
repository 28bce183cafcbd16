//! The tree blobs of a streaming backup, written by kstash itself so every file node carries
//! its real `size` and `content` (restic `ls -l`, `restore --verify`).

use std::collections::BTreeMap;
use std::ffi::OsStr;

use rustic_core::repofile::{Metadata, Node, NodeType, Tree};
use rustic_core::{DataId, Id, TreeId};

use crate::error::{Error, Result};
use crate::packer::{Job, Kind, Packer};

/// Go's `os.FileMode` bits as restic stores them: `0644` file, `ModeDir | 0755` directory.
const FILE_MODE: u32 = 0o644;
const DIR_MODE: u32 = (1 << 31) | 0o755;

/// A finished file of the backup.
#[derive(Clone, Debug)]
pub(crate) struct FileRecord {
    /// Bytes written.
    pub(crate) size: u64,
    /// Data blob ids, in order.
    pub(crate) content: Vec<Id>,
}

enum Entry<'a> {
    File(&'a FileRecord),
    Dir(BTreeMap<&'a str, Entry<'a>>),
}

fn insert<'a>(
    dir: &mut BTreeMap<&'a str, Entry<'a>>,
    full: &str,
    segs: &[&'a str],
    rec: &'a FileRecord,
) -> Result<()> {
    let conflict = || Error::InvalidArgument {
        param: "path",
        reason: format!("`{full}` is both a file and a directory in this backup"),
    };
    match segs {
        [] => Err(conflict()),
        [name] => match dir.insert(*name, Entry::File(rec)) {
            None => Ok(()),
            Some(_) => Err(conflict()),
        },
        [name, rest @ ..] => match dir
            .entry(*name)
            .or_insert_with(|| Entry::Dir(BTreeMap::new()))
        {
            Entry::Dir(sub) => insert(sub, full, rest, rec),
            Entry::File(_) => Err(conflict()),
        },
    }
}

/// Tree nodes and their blobs, children first; returns the root tree id.
fn save(
    dir: &BTreeMap<&str, Entry<'_>>,
    mtime: jiff::Timestamp,
    out: &mut dyn FnMut(TreeId, Vec<u8>) -> Result<()>,
) -> Result<TreeId> {
    let mut nodes = Vec::with_capacity(dir.len());
    for (name, e) in dir {
        let node = match e {
            Entry::File(rec) => {
                let meta = Metadata {
                    mode: Some(FILE_MODE),
                    mtime: Some(mtime),
                    size: rec.size,
                    ..Default::default()
                };
                let mut n = Node::new_node(OsStr::new(name), NodeType::File, meta);
                n.content = Some(rec.content.iter().map(|id| DataId::from(*id)).collect());
                n
            }
            Entry::Dir(sub) => {
                let meta = Metadata {
                    mode: Some(DIR_MODE),
                    mtime: Some(mtime),
                    ..Default::default()
                };
                let mut n = Node::new_node(OsStr::new(name), NodeType::Dir, meta);
                n.subtree = Some(save(sub, mtime, out)?);
                n
            }
        };
        nodes.push(node);
    }
    let (bytes, id) = Tree { nodes }
        .serialize()
        .map_err(|e| Error::InvalidArgument {
            param: "tree",
            reason: e.to_string(),
        })?;
    out(id, bytes)?;
    Ok(id)
}

/// Builds the directory trees of `files` (absolute, normalised paths), hands every tree blob
/// to `out` (id, plaintext) and returns the root tree id. Names are sorted byte-wise, as
/// restic requires.
pub(crate) fn build(
    files: &BTreeMap<String, FileRecord>,
    mtime: jiff::Timestamp,
    out: &mut dyn FnMut(TreeId, Vec<u8>) -> Result<()>,
) -> Result<TreeId> {
    let mut root = BTreeMap::new();
    for (path, rec) in files {
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        insert(&mut root, path, &segs, rec)?;
    }
    save(&root, mtime, out)
}

/// Stores the trees of `files` through the packer (skipping trees already in the repository).
pub(crate) fn store(
    files: &BTreeMap<String, FileRecord>,
    mtime: jiff::Timestamp,
    packer: &Packer,
) -> Result<TreeId> {
    build(files, mtime, &mut |id, plain| {
        let id: Id = *id;
        if packer.claim(&id) {
            packer.store_now(Job {
                kind: Kind::Tree,
                id,
                plain,
            })?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(size: u64) -> FileRecord {
        FileRecord {
            size,
            content: vec![Id::new([size as u8; 32])],
        }
    }

    #[test]
    fn nested_trees_sorted_with_sizes_and_content() {
        let files = BTreeMap::from([
            ("/b.json".to_string(), rec(2)),
            ("/a/y.json".to_string(), rec(3)),
            ("/a/x.json".to_string(), rec(4)),
        ]);
        let mut trees: Vec<(TreeId, serde_json::Value)> = vec![];
        let root = build(&files, jiff::Timestamp::UNIX_EPOCH, &mut |id, b| {
            trees.push((id, serde_json::from_slice(&b).unwrap()));
            Ok(())
        })
        .unwrap();
        assert_eq!(trees.len(), 2);
        assert_eq!(trees[1].0, root);
        let sub = &trees[0].1["nodes"];
        assert_eq!(sub[0]["name"], "x.json");
        assert_eq!(sub[0]["size"], 4);
        assert_eq!(sub[0]["type"], "file");
        assert_eq!(sub[0]["mode"], 0o644);
        assert_eq!(sub[1]["name"], "y.json");
        let top = &trees[1].1["nodes"];
        assert_eq!(top[0]["name"], "a");
        assert_eq!(top[0]["type"], "dir");
        assert_eq!(top[0]["subtree"], trees[0].0.to_hex().as_str());
        assert_eq!(top[1]["name"], "b.json");
        assert_eq!(top[1]["content"][0], hex::encode([2u8; 32]));
    }

    #[test]
    fn file_and_directory_with_the_same_path_is_refused() {
        let files = BTreeMap::from([("/a".to_string(), rec(1)), ("/a/b".to_string(), rec(1))]);
        let err = build(&files, jiff::Timestamp::UNIX_EPOCH, &mut |_, _| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`/a/b` is both a file and a directory"),
            "{err}"
        );
    }
}
