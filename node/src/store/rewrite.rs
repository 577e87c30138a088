//! Rewriting the job store: its live records copied into a fresh store
//! beside it (`DATA_DIR/store.new`), which is then swapped in atomically.
//!
//! Why: fjall gives back the space of deleted records through flushes and
//! compaction ([`super::kv::Compactor`]), but not the journal it is
//! writing, which it seals (and then deletes) only once it holds 64 MB,
//! and fjall 3.1 has no call to seal it sooner. So a store whose jobs were
//! removed keeps up to 64 MB of journal, across restarts too. A rewrite is
//! Disque's AOF rewrite: cheap when little is live, which is exactly when
//! it is worth doing; the writer thread runs it while it writes nothing
//! else (`store/writer.rs` says when).
//!
//! Crash safety: the fresh store is written and synced, both stores are
//! closed, and the two directories are exchanged with one
//! `renameat2(RENAME_EXCHANGE)`; `store.new` (then the old store) is
//! deleted last. At any moment `store/` is a whole store holding every
//! live record (before the exchange the old one, after it the new one,
//! and both hold the same records since the writer wrote nothing in
//! between), so whatever `store.new` a crash leaves behind is deleted at
//! the next start ([`remove_leftover`]).

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::kv::{Kv, KvError, Op};

/// Records copied per batch into the fresh store.
const COPY_BATCH: usize = 4096;

/// What a rewrite did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewritten {
    pub records: u64,
    pub millis: u64,
}

/// Why a rewrite did not happen; the store is open again either way.
#[derive(Debug)]
pub struct NotRewritten {
    /// The store, open (`None` if it could not be reopened: `why` says).
    pub kv: Option<Kv>,
    pub why: KvError,
    /// The filesystem cannot exchange directories: do not try again.
    pub unsupported: bool,
}

/// Where the fresh store is written: beside the store.
pub fn fresh_path(store: &Path) -> PathBuf {
    let mut name = store.file_name().unwrap_or_default().to_os_string();
    name.push(".new");
    store.with_file_name(name)
}

/// Deletes what an interrupted rewrite left (see the module's comment:
/// `store/` is always the store to open).
pub fn remove_leftover(store: &Path) -> std::io::Result<()> {
    let fresh = fresh_path(store);
    if fresh.exists() {
        tracing::warn!(
            path = %fresh.display(),
            "job store: deleting what an interrupted rewrite left"
        );
        std::fs::remove_dir_all(&fresh)?;
    }
    Ok(())
}

/// Copies the live records of `kv` into a fresh store and swaps it in,
/// unless there are more than `max_records` of them (then nothing
/// changes). Closes `kv` on the way: the store comes back open, rewritten
/// or not. Nothing else may write to the store meanwhile.
pub fn rewrite(kv: Kv, max_records: u64) -> Result<(Kv, Rewritten), Box<NotRewritten>> {
    let t0 = Instant::now();
    let path = kv.path().to_path_buf();
    let fresh = fresh_path(&path);
    let copied = copy_live(&kv, &fresh, max_records);
    // Both stores are closed before the exchange (fjall keeps files open).
    drop(kv);
    let failed = |why: KvError, unsupported: bool| {
        let _ = std::fs::remove_dir_all(&fresh);
        let (kv, why) = match Kv::open(&path) {
            Ok((kv, _)) => (Some(kv), why),
            Err(e) => (None, e),
        };
        Box::new(NotRewritten {
            kv,
            why,
            unsupported,
        })
    };
    let records = match copied {
        Ok(n) => n,
        Err(e) => return Err(failed(e, false)),
    };
    let io = |what: &str, e: std::io::Error| KvError::Io {
        path: path.clone(),
        message: format!("{what}: {e}"),
    };
    if let Err(e) = exchange(&fresh, &path) {
        let unsupported = e.raw_os_error() == Some(libc::EINVAL)
            || e.raw_os_error() == Some(libc::ENOSYS)
            || e.kind() == std::io::ErrorKind::Unsupported;
        return Err(failed(
            io("swapping in the rewritten store", e),
            unsupported,
        ));
    }
    if let Some(parent) = path.parent()
        && let Err(e) = std::fs::File::open(parent).and_then(|d| d.sync_all())
    {
        tracing::warn!(
            "job store: syncing {} after the swap: {e}",
            parent.display()
        );
    }
    if let Err(e) = std::fs::remove_dir_all(&fresh) {
        tracing::warn!(
            path = %fresh.display(),
            "job store: the store before the rewrite could not be deleted: {e}"
        );
    }
    match Kv::open(&path) {
        Ok((kv, _)) => Ok((
            kv,
            Rewritten {
                records,
                millis: t0.elapsed().as_millis() as u64,
            },
        )),
        Err(why) => Err(Box::new(NotRewritten {
            kv: None,
            why,
            unsupported: false,
        })),
    }
}

/// Writes every record of `kv` into a new store at `fresh`, synced and
/// closed. Gives up past `max_records`.
fn copy_live(kv: &Kv, fresh: &Path, max_records: u64) -> Result<u64, KvError> {
    let io = |e: std::io::Error| KvError::Io {
        path: fresh.to_path_buf(),
        message: e.to_string(),
    };
    if fresh.exists() {
        std::fs::remove_dir_all(fresh).map_err(io)?;
    }
    let (new, _) = Kv::open(fresh)?;
    let mut ops = Vec::with_capacity(COPY_BATCH);
    let mut failed = None;
    let mut records = 0u64;
    kv.scan_while(|k, v| {
        records += 1;
        if records > max_records {
            return false;
        }
        let Ok(key) = k.try_into() else {
            // Not a job key: not the node's record, not copied.
            return true;
        };
        ops.push(Op::Put(key, v.to_vec()));
        if ops.len() == COPY_BATCH
            && let Err(e) = new.write(std::mem::take(&mut ops))
        {
            failed = Some(e);
            return false;
        }
        true
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    if records > max_records {
        return Err(KvError::Io {
            path: kv.path().to_path_buf(),
            message: format!("more than {max_records} records live: not rewritten"),
        });
    }
    new.write(ops)?;
    new.sync()?;
    Ok(records)
}

/// Exchanges two directories atomically.
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let a = CString::new(a.as_os_str().as_bytes())?;
    let b = CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: both are NUL-terminated paths that outlive the call; the
    // call only reads them.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::kv::allocated_bytes;

    fn key(i: u32) -> [u8; 16] {
        let mut k = [0u8; 16];
        k[..4].copy_from_slice(&i.to_be_bytes());
        k
    }

    #[test]
    fn a_rewrite_keeps_the_live_records_and_drops_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let (kv, _) = Kv::open(&path).unwrap();
        for chunk in (0..20_000u32).collect::<Vec<_>>().chunks(500) {
            kv.write(
                chunk
                    .iter()
                    .map(|&i| Op::Put(key(i), vec![i as u8; 180]))
                    .collect(),
            )
            .unwrap();
        }
        for chunk in (100..20_000u32).collect::<Vec<_>>().chunks(500) {
            kv.write(chunk.iter().map(|&i| Op::Remove(key(i))).collect())
                .unwrap();
        }
        kv.sync().unwrap();
        let before = allocated_bytes(&path);
        assert!(before > 3_000_000, "{before}");
        // Too many live records: nothing changes.
        let e = rewrite(kv, 99).unwrap_err();
        let kv = e.kv.expect("reopened");
        assert!(!fresh_path(&path).exists());
        let (kv, done) = rewrite(kv, 1000).unwrap();
        assert_eq!(done.records, 100);
        let after = allocated_bytes(&path);
        assert!(after < 200_000, "{before} -> {after} bytes");
        assert!(!fresh_path(&path).exists());
        kv.write(vec![Op::Put(key(7), b"again".to_vec())]).unwrap();
        kv.sync().unwrap();
        drop(kv);
        let (kv, _) = Kv::open(&path).unwrap();
        let mut seen = vec![];
        kv.scan(|k, v| seen.push((k.to_vec(), v.to_vec()))).unwrap();
        assert_eq!(seen.len(), 100);
        assert_eq!(seen[7], (key(7).to_vec(), b"again".to_vec()));
        assert_eq!(seen[99], (key(99).to_vec(), vec![99u8; 180]));
    }

    #[test]
    fn a_leftover_fresh_store_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        std::fs::create_dir_all(fresh_path(&path).join("x")).unwrap();
        remove_leftover(&path).unwrap();
        assert!(!fresh_path(&path).exists());
    }
}
