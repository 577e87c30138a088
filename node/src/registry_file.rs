//! The file a replicated registry keeps in the data dir: the tenants, the
//! schedules, the module names and the cluster's admission set each hold
//! one JSON document with a format number. It is checked when the node
//! starts (a file that does not parse stops the start rather than lose
//! records peers rely on) and written private (0600, through a temporary
//! file and a rename) after every change that changed something. A change
//! that cannot be written is undone in memory, so a registry never tells
//! its peers about a record it would lose at its next start.
//!
//! What is replicated, and how records merge, stays with each registry:
//! this module owns only the file and the lock around the state.

use std::path::PathBuf;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A registry's state, as its file holds it.
pub trait Document: Clone + Default {
    /// The file's fields besides `format`.
    type File: Serialize + DeserializeOwned;
    /// The format this node reads and writes.
    const FORMAT: u32;
    /// What to tell the user about a file that does not parse.
    const IF_DAMAGED: &'static str;
    fn to_file(&self) -> Self::File;
    fn from_file(file: Self::File) -> Result<Self, String>;
    /// Whether what the file holds is the same in `self` and `before`
    /// (node-local parts of the state do not count): nothing to write.
    fn unchanged(&self, before: &Self) -> bool;
}

/// The one field every registry file has. (Not a `#[serde(flatten)]`
/// envelope: flattening breaks maps with integer keys, which the
/// schedules have.)
#[derive(Deserialize)]
struct Format {
    format: u32,
}

/// Why a registry file could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A registry's state behind its lock, and the file it is saved to.
#[derive(Debug, Default)]
pub struct RegistryFile<D> {
    path: Option<PathBuf>,
    state: RwLock<D>,
}

impl<D: Document> RegistryFile<D> {
    /// The state saved at `path` (the default state if there is no file).
    pub fn open(path: PathBuf) -> Result<Self, OpenError> {
        let state = match std::fs::read(&path) {
            Ok(bytes) => {
                let damaged = |e: serde_json::Error| {
                    OpenError::Invalid(format!(
                        "{} does not parse: {e} ({})",
                        path.display(),
                        D::IF_DAMAGED
                    ))
                };
                let Format { format } = serde_json::from_slice(&bytes).map_err(damaged)?;
                if format != D::FORMAT {
                    return Err(OpenError::Invalid(format!(
                        "{} is in format {format}; this node reads format {}",
                        path.display(),
                        D::FORMAT
                    )));
                }
                let body: D::File = serde_json::from_slice(&bytes).map_err(damaged)?;
                D::from_file(body)
                    .map_err(|e| OpenError::Invalid(format!("{}: {e}", path.display())))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => D::default(),
            Err(e) => return Err(e.into()),
        };
        Ok(RegistryFile {
            path: Some(path),
            state: RwLock::new(state),
        })
    }

    /// A state kept in memory only (tests).
    pub fn in_memory() -> Self {
        RegistryFile {
            path: None,
            state: RwLock::new(D::default()),
        }
    }

    pub fn read(&self) -> RwLockReadGuard<'_, D> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// For node-local parts of the state only: nothing written here is
    /// saved.
    pub fn write_local(&self) -> RwLockWriteGuard<'_, D> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `f` and saves the file if it changed anything; if the file
    /// cannot be written the state is put back as it was.
    pub fn change<T, E: From<std::io::Error>>(
        &self,
        f: impl FnOnce(&mut D) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut st = self.write_local();
        let before = st.clone();
        let out = f(&mut st)?;
        if st.unchanged(&before) {
            return Ok(out);
        }
        if let Some(path) = &self.path
            && let Err(e) = save(path, &*st)
        {
            *st = before;
            return Err(e.into());
        }
        Ok(out)
    }
}

fn save<D: Document>(path: &std::path::Path, st: &D) -> std::io::Result<()> {
    let mut doc = serde_json::to_value(st.to_file()).map_err(std::io::Error::other)?;
    let Some(fields) = doc.as_object_mut() else {
        return Err(std::io::Error::other(
            "a registry file must be a JSON object",
        ));
    };
    fields.insert("format".into(), D::FORMAT.into());
    let bytes = serde_json::to_vec_pretty(&doc).map_err(std::io::Error::other)?;
    crate::net::identity::write_secret(path, &bytes)
}

/// The first 8 bytes of a SHA-256 as a number: the digest peers compare
/// in adverts (0 stands for an empty registry).
pub fn digest64(h: Sha256) -> u64 {
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_le_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, Default, PartialEq)]
    struct Names {
        names: Vec<String>,
        /// Node-local: not in the file.
        reads: u32,
    }

    #[derive(Serialize, Deserialize)]
    struct NamesFile {
        names: Vec<String>,
    }

    impl Document for Names {
        type File = NamesFile;
        const FORMAT: u32 = 3;
        const IF_DAMAGED: &'static str = "move it aside";
        fn to_file(&self) -> NamesFile {
            NamesFile {
                names: self.names.clone(),
            }
        }
        fn from_file(f: NamesFile) -> Result<Self, String> {
            if f.names.iter().any(|n| n.is_empty()) {
                return Err("an empty name".into());
            }
            Ok(Names {
                names: f.names,
                reads: 0,
            })
        }
        fn unchanged(&self, before: &Self) -> bool {
            self.names == before.names
        }
    }

    #[test]
    fn changes_are_saved_reopened_and_undone_when_the_file_cannot_be_written() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("names.json");
        let r: RegistryFile<Names> = RegistryFile::open(path.clone()).unwrap();
        r.change(|s| {
            s.names.push("a".into());
            Ok::<_, std::io::Error>(())
        })
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("\"format\": 3") && text.contains("\"a\""),
            "{text}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again: RegistryFile<Names> = RegistryFile::open(path.clone()).unwrap();
        assert_eq!(again.read().names, vec!["a".to_string()]);

        // A node-local change writes nothing.
        std::fs::remove_file(&path).unwrap();
        r.change(|s| {
            s.reads += 1;
            Ok::<_, std::io::Error>(())
        })
        .unwrap();
        assert!(!path.exists());

        // The file's place cannot be written: the change is undone.
        std::fs::create_dir(&path).unwrap();
        let e = r.change(|s| {
            s.names.push("b".into());
            Ok::<_, std::io::Error>(())
        });
        assert!(e.is_err());
        assert_eq!(r.read().names, vec!["a".to_string()]);
    }

    #[test]
    fn a_damaged_or_foreign_file_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("names.json");
        std::fs::write(&path, b"{not json").unwrap();
        let e = RegistryFile::<Names>::open(path.clone()).unwrap_err();
        assert!(
            e.to_string().contains("does not parse") && e.to_string().contains("move it aside")
        );
        std::fs::write(&path, br#"{"format": 4, "names": []}"#).unwrap();
        let e = RegistryFile::<Names>::open(path.clone()).unwrap_err();
        assert!(e.to_string().contains("format 4"), "{e}");
        std::fs::write(&path, br#"{"format": 3, "names": [""]}"#).unwrap();
        let e = RegistryFile::<Names>::open(path.clone()).unwrap_err();
        assert!(e.to_string().contains("an empty name"), "{e}");
        let none = RegistryFile::<Names>::open(tmp.path().join("absent.json")).unwrap();
        assert!(none.read().names.is_empty());
    }
}
