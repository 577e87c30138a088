//! The data dir: created on first start, locked for the life of the node
//! so a second process on the same dir stops with a clear message and
//! touches nothing, and home of the node's persistent id.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why the data dir cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("cannot use data dir {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "data dir {0} is in use by another wasque-node process (one node per data dir: stop the other node, or pass --data-dir DIR)"
    )]
    Locked(PathBuf),
    #[error(
        "{path} does not hold a node id (40 hex digits): {found:?}; restore it from a backup, or delete it to start this node under a new id"
    )]
    BadNodeId { path: PathBuf, found: String },
}

/// A locked data dir. The lock is released when this is dropped (or the
/// process dies: the kernel drops the lock with the file).
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    node_id: String,
    _lock: File,
}

impl DataDir {
    /// Creates (if needed) and locks `path`, and reads or makes the node id.
    pub fn open(path: &Path) -> Result<DataDir, DataDirError> {
        let io = |source| DataDirError::Io {
            path: path.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(path).map_err(io)?;
        let lock_path = path.join("LOCK");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| DataDirError::Io {
                path: lock_path.clone(),
                source,
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(DataDirError::Locked(path.to_path_buf()));
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(DataDirError::Io {
                    path: lock_path,
                    source,
                });
            }
        }
        let node_id = read_or_make_node_id(&path.join("node-id"))?;
        Ok(DataDir {
            path: path.to_path_buf(),
            node_id,
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The node's id: 40 lowercase hex digits, as Disque's.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }
}

fn read_or_make_node_id(file: &Path) -> Result<String, DataDirError> {
    let io = |source| DataDirError::Io {
        path: file.to_path_buf(),
        source,
    };
    match std::fs::read_to_string(file) {
        Ok(s) => {
            let id = s.trim();
            if id.len() == 40 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(id.to_ascii_lowercase())
            } else {
                Err(DataDirError::BadNodeId {
                    path: file.to_path_buf(),
                    found: id.chars().take(60).collect(),
                })
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let bytes: [u8; 20] = rand::random();
            let id = hex::encode(bytes);
            let tmp = file.with_extension("tmp");
            let mut f = File::create(&tmp).map_err(io)?;
            writeln!(f, "{id}").map_err(io)?;
            f.sync_all().map_err(io)?;
            std::fs::rename(&tmp, file).map_err(io)?;
            Ok(id)
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_process_per_data_dir_and_a_stable_id() {
        let dir = tempfile::tempdir().unwrap();
        let a = DataDir::open(dir.path()).unwrap();
        assert_eq!(a.node_id().len(), 40);
        let e = DataDir::open(dir.path()).unwrap_err();
        assert!(matches!(e, DataDirError::Locked(_)), "{e}");
        let id = a.node_id().to_string();
        drop(a);
        let b = DataDir::open(dir.path()).unwrap();
        assert_eq!(b.node_id(), id);
    }

    #[test]
    fn a_damaged_node_id_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("node-id"), "zzz").unwrap();
        let e = DataDir::open(dir.path()).unwrap_err();
        assert!(e.to_string().contains("node id"), "{e}");
    }
}
