//! Private local state: the data directory holds every Secret in clear (`store.redb`), the
//! serving key, the bearer token and a kubeconfig carrying it. Directories are created 0700 and
//! files 0600 by the `open`/`mkdir` call itself (the mode is part of the system call, so no byte
//! is ever readable by another user, whatever the umask); a file or directory left by an older
//! version with a wider mode is narrowed before anything is written to it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Mode of every directory under the data directory.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file under the data directory.
pub const FILE_MODE: u32 = 0o600;

/// A data directory that cannot be made private.
#[derive(Debug, thiserror::Error)]
pub enum PrivateError {
    /// The path exists and is not a directory.
    #[error("{path}: exists and is not a directory")]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// A shared directory (sticky bit, e.g. `/tmp`) or one owned by another user: narrowing its
    /// mode would break other users, and leaving it open would expose the state.
    #[error("{path}: {reason}; pick a directory of your own (it is created 0700)")]
    Shared {
        /// The path.
        path: PathBuf,
        /// Why it is refused.
        reason: String,
    },
    /// A system call failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PrivateError + '_ {
    move |source| PrivateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` (and missing parents) with mode 0700, or narrows an existing directory of
/// this user to 0700. Refuses a shared directory (sticky bit) or one owned by someone else.
pub fn create_dir(dir: &Path) -> Result<(), PrivateError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        match std::fs::metadata(dir) {
            Ok(meta) => {
                if !meta.is_dir() {
                    return Err(PrivateError::NotADirectory {
                        path: dir.to_path_buf(),
                    });
                }
                if meta.mode() & 0o1000 != 0 {
                    return Err(PrivateError::Shared {
                        path: dir.to_path_buf(),
                        reason: "a shared directory (sticky bit set)".into(),
                    });
                }
                // SAFETY: geteuid has no preconditions and cannot fail.
                let me = unsafe { libc::geteuid() };
                if meta.uid() != me {
                    return Err(PrivateError::Shared {
                        path: dir.to_path_buf(),
                        reason: format!("owned by uid {}, not by this user ({me})", meta.uid()),
                    });
                }
                if meta.mode() & 0o777 != DIR_MODE {
                    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))
                        .map_err(io(dir))?;
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)
                .map_err(io(dir)),
            Err(e) => Err(io(dir)(e)),
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir).map_err(io(dir))
}

/// Opens `path` for writing, created 0600; an existing file is narrowed to 0600 (through the
/// open descriptor) before it is truncated. `truncate: false` keeps its content (a database).
pub fn open_file(path: &Path, truncate: bool) -> Result<File, PrivateError> {
    let mut opts = OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(FILE_MODE).custom_flags(libc::O_NOFOLLOW);
    }
    let file = opts.open(path).map_err(io(path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = file.metadata().map_err(io(path))?;
        if meta.permissions().mode() & 0o777 != FILE_MODE {
            file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
                .map_err(io(path))?;
        }
    }
    if truncate {
        file.set_len(0).map_err(io(path))?;
    }
    Ok(file)
}

/// Writes `data` to `path` as a private (0600) file, replacing its content.
pub fn write_file(path: &Path, data: impl AsRef<[u8]>) -> Result<(), PrivateError> {
    let mut file = open_file(path, true)?;
    file.write_all(data.as_ref()).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

/// Sets the process umask to 077, for binaries that hold this state (`kstash up`,
/// `kstash controlplane`): what the process creates without an explicit mode (the operator's
/// module cache) is private too. The files of this module get their mode regardless.
pub fn restrict_umask() {
    #[cfg(unix)]
    // SAFETY: umask only swaps the process's file-creation mask; it has no failure mode.
    unsafe {
        libc::umask(0o077);
    }
}

/// Reads a private file as text, narrowing its mode to 0600 first.
pub fn read_file(path: &Path) -> Result<String, PrivateError> {
    use std::io::Read;
    let mut text = String::new();
    open_file(path, false)?
        .read_to_string(&mut text)
        .map_err(io(path))?;
    Ok(text)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn new_files_and_dirs_are_private_and_old_ones_are_narrowed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        create_dir(&dir).unwrap();
        assert_eq!(mode(&dir), DIR_MODE);
        assert_eq!(mode(&tmp.path().join("a")), DIR_MODE);
        let f = dir.join("token");
        write_file(&f, "secret").unwrap();
        assert_eq!(mode(&f), FILE_MODE);
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "secret");

        // Left by an older version with wide modes: narrowed, content replaced.
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        create_dir(&dir).unwrap();
        write_file(&f, "new").unwrap();
        assert_eq!((mode(&dir), mode(&f)), (DIR_MODE, FILE_MODE));
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "new");

        // open_file without truncation keeps the content (the database file).
        drop(open_file(&f, false).unwrap());
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "new");
    }

    #[test]
    fn shared_dirs_and_symlinks_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let shared = tmp.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let e = create_dir(&shared).unwrap_err();
        assert!(e.to_string().contains("sticky"), "{e}");
        assert_eq!(
            mode(&shared),
            0o1777,
            "a shared directory is left as it was"
        );

        let target = tmp.path().join("elsewhere");
        std::fs::write(&target, "x").unwrap();
        let link = tmp.path().join("kubeconfig");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = write_file(&link, "token").unwrap_err();
        assert!(e.to_string().contains("kubeconfig"), "{e}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "x");
    }
}
