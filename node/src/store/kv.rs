//! The embedded key-value store under the job store: fjall (an LSM tree
//! with a checksummed journal), chosen by measurement (`benches/README.md`,
//! "Durability (issue 5)"). Everything fjall-specific lives in this file;
//! the rest of the node sees [`Kv`]'s few methods, so another store can
//! replace it here.
//!
//! Files: `DATA_DIR/store/` is fjall's folder (its journals `*.jnl`, sorted
//! tables, a version file). A torn journal tail (power loss mid-write) is
//! cut at the last whole, checksummed batch when the store opens; [`Kv`]
//! reports how many journal bytes that dropped.
//!
//! Space: a delete is a tombstone, and fjall gives the space back only when
//! its memtable is flushed (journals whose every write is in tables are
//! then deleted) and compaction drops the tombstones with what they shadow.
//! [`Compactor::compact`] does both at once, on demand (the writer thread
//! asks after mass deletes). What stays is the active journal: fjall seals
//! it only once it holds 64 MB, so up to that many bytes of journal remain
//! until it fills.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::journal_file::{self, Verdict};

/// Journals kept before memtables are flushed into tables; what a
/// restart after a crash replays. fjall's least (and default is 512 MiB).
const MAX_JOURNAL_BYTES: u64 = 64 << 20;

/// The store's block cache. The node holds every live job in memory and
/// reads the store only when it starts, so a large cache (fjall's
/// default is 32 MiB) would only hold blocks compactions read.
const CACHE_BYTES: u64 = 4 << 20;

/// The jobs keyspace's memtable (fjall's default is 64 MiB). Each byte
/// is a byte of RSS on top of the jobs themselves; 16 MiB still holds
/// about 100,000 job records, so a job added and acked within that many
/// writes is never written to a table.
const MEMTABLE_BYTES: u64 = 16 << 20;

/// Longest wait for a memtable flush during [`Compactor::compact`]: the
/// store crate's one background worker flushes; if it died (a failed
/// write), nothing would ever flush, and the compaction gives up instead
/// of holding the store open forever.
const FLUSH_WAIT: Duration = Duration::from_secs(60);

/// The keyspace of the store's own bookkeeping (no jobs in it).
const MAINT_KEYSPACE: &str = "maint";

/// One write of a group commit.
#[derive(Debug)]
pub enum Op {
    Put([u8; 16], Vec<u8>),
    Remove([u8; 16]),
}

/// One atomic batch of writes being filled ([`Kv::batch`]).
pub struct Batch<'a> {
    kv: &'a Kv,
    inner: fjall::OwnedWriteBatch,
    len: usize,
}

impl Batch<'_> {
    pub fn put(&mut self, key: [u8; 16], value: &[u8]) {
        self.inner.insert(&self.kv.jobs, key, value);
        self.len += 1;
    }

    pub fn remove(&mut self, key: [u8; 16]) {
        self.inner.remove(&self.kv.jobs, key);
        self.len += 1;
    }

    /// Writes put so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes the batch atomically and hands it to the OS (a process
    /// crash after this loses nothing; a power loss may, until
    /// [`Kv::sync`]). An empty batch writes nothing.
    pub fn commit(self) -> Result<(), KvError> {
        if self.is_empty() {
            return Ok(());
        }
        let kv = self.kv;
        self.inner.commit().map_err(|e| kv.io(e))?;
        kv.db
            .persist(fjall::PersistMode::Buffer)
            .map_err(|e| kv.io(e))
    }
}

/// Why the store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error(
        "the job store at {path} cannot be read: {message}. The node will not start over it (that would lose its jobs): move {path} aside to start empty, or restore it from a backup"
    )]
    Open { path: PathBuf, message: String },
    #[error("job store {path}: {message}")]
    Io { path: PathBuf, message: String },
}

impl KvError {
    /// Whether the disk ran out of space (or the file size limit was hit).
    pub fn is_no_space(&self) -> bool {
        let m = match self {
            KvError::Open { message, .. } | KvError::Io { message, .. } => message,
        };
        m.contains("No space left") || m.contains("File too large") || m.contains("quota")
    }
}

/// What opening the store found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OpenReport {
    /// Journal bytes found before opening.
    pub journal_bytes: u64,
    /// Journal bytes cut away as a torn or corrupt tail.
    pub journal_bytes_dropped: u64,
    /// Time spent checking the journals before opening.
    pub check_ms: u64,
}

/// The open store.
pub struct Kv {
    path: PathBuf,
    db: fjall::Database,
    jobs: fjall::Keyspace,
    maint: fjall::Keyspace,
}

impl std::fmt::Debug for Kv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kv").field("path", &self.path).finish()
    }
}

impl Kv {
    /// Opens (or creates) the store at `path`, recovering its journal. A
    /// panic inside the store crate while opening becomes an error.
    pub fn open(path: &Path) -> Result<(Kv, OpenReport), KvError> {
        let t = Instant::now();
        let before = check_journals(path)?;
        let check_ms = t.elapsed().as_millis() as u64;
        let opened = quietly(|| {
            let db = fjall::Database::builder(path)
                .manual_journal_persist(true)
                .worker_threads(1)
                // Bounds the journal replayed after a crash (start-up time).
                .max_journaling_size(MAX_JOURNAL_BYTES)
                .cache_size(CACHE_BYTES)
                .open()?;
            let jobs = db.keyspace("jobs", || {
                fjall::KeyspaceCreateOptions::default()
                    .max_memtable_size(MEMTABLE_BYTES)
                    // Bloom filters serve reads of one key, and the node
                    // never makes one (it scans the store when it starts):
                    // building them on every flush and compaction was
                    // work for nothing. A store created before keeps its
                    // own settings.
                    .filter_policy(fjall::config::FilterPolicy::disabled())
            })?;
            let maint = db.keyspace(MAINT_KEYSPACE, fjall::KeyspaceCreateOptions::default)?;
            Ok::<_, fjall::Error>((db, jobs, maint))
        });
        let open_err = |message: String| KvError::Open {
            path: path.to_path_buf(),
            message,
        };
        let (db, jobs, maint) = match opened {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => return Err(open_err(e.to_string())),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into());
                return Err(open_err(format!("the store crate panicked: {what}")));
            }
        };
        let after = journal_bytes(path);
        Ok((
            Kv {
                path: path.to_path_buf(),
                db,
                jobs,
                maint,
            },
            OpenReport {
                journal_bytes: before,
                journal_bytes_dropped: before.saturating_sub(after),
                check_ms,
            },
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Calls `f` with every (key, value), in key order. Stops at the first
    /// read error (a corrupt table), which it returns.
    pub fn scan(&self, mut f: impl FnMut(&[u8], &[u8])) -> Result<u64, KvError> {
        self.scan_while(|k, v| {
            f(k, v);
            true
        })
    }

    /// Like [`Kv::scan`], but stops early once `f` returns false.
    pub fn scan_while(&self, mut f: impl FnMut(&[u8], &[u8]) -> bool) -> Result<u64, KvError> {
        let mut n = 0;
        let scan = quietly(|| {
            for kv in self.jobs.iter() {
                let (k, v) = kv.into_inner()?;
                n += 1;
                if !f(&k, &v) {
                    break;
                }
            }
            Ok::<_, fjall::Error>(())
        });
        match scan {
            Ok(Ok(())) => Ok(n),
            Ok(Err(e)) => Err(KvError::Open {
                path: self.path.clone(),
                message: format!("read error after {n} records: {e}"),
            }),
            Err(_) => Err(KvError::Open {
                path: self.path.clone(),
                message: format!("the store crate panicked reading after {n} records"),
            }),
        }
    }

    /// Writes `ops` as one atomic batch and hands it to the OS (a process
    /// crash after this loses nothing; a power loss may, until [`Kv::sync`]).
    pub fn write(&self, ops: Vec<Op>) -> Result<(), KvError> {
        let mut batch = self.batch();
        for op in ops {
            match op {
                Op::Put(k, v) => batch.put(k, &v),
                Op::Remove(k) => batch.remove(k),
            }
        }
        batch.commit()
    }

    /// An empty batch to fill and [`Batch::commit`]: what [`Kv::write`]
    /// does, for a writer that encodes each value into one reused buffer
    /// (the batch copies a value in as it is put).
    pub fn batch(&self) -> Batch<'_> {
        Batch {
            kv: self,
            inner: self.db.batch().durability(None),
            len: 0,
        }
    }

    /// Whether a write now would go through without being throttled: the
    /// store crate makes a write wait (10-100 ms sleeps) once 20 runs of
    /// tables pile up at its first level or 4 full memtables wait to be
    /// flushed. These are looked at with margins (a write may seal one
    /// more memtable), through the crate's hidden counters; a crate
    /// update that changes them must be checked here.
    pub fn calm(&self) -> bool {
        self.jobs.l0_table_count() < 16 && self.jobs.sealed_memtable_count() < 3
    }

    /// Makes everything written so far durable (fdatasync of the journal).
    pub fn sync(&self) -> Result<(), KvError> {
        self.db
            .persist(fjall::PersistMode::SyncData)
            .map_err(|e| self.io(e))
    }

    /// Records held, estimated without reading them (for sizing tables).
    pub fn approximate_len(&self) -> usize {
        self.jobs.approximate_len()
    }

    /// Bytes the store's files take on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.db.disk_space().unwrap_or(0)
    }

    /// A handle to compact the store from another thread while this one
    /// goes on writing. It keeps the store open: drop it (let a running
    /// [`Compactor::compact`] end) before the store is closed or reopened.
    pub fn compactor(&self) -> Compactor {
        Compactor {
            path: self.path.clone(),
            db: self.db.clone(),
            jobs: self.jobs.clone(),
            maint: self.maint.clone(),
        }
    }

    fn io(&self, e: fjall::Error) -> KvError {
        io_error(&self.path, e)
    }
}

/// Gives back the space of deleted records; see [`Compactor::compact`].
#[derive(Clone)]
pub struct Compactor {
    path: PathBuf,
    db: fjall::Database,
    jobs: fjall::Keyspace,
    maint: fjall::Keyspace,
}

/// What a compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    pub disk_bytes_before: u64,
    pub disk_bytes_after: u64,
}

impl Compactor {
    /// Shrinks the store to about what is live: flushes the memtable
    /// (tombstones included) into a table, after which fjall deletes every
    /// sealed journal; merges every table into one run, which drops the
    /// deleted records and their tombstones; then flushes a marker in the
    /// bookkeeping keyspace, which is what makes fjall let go of the tables
    /// the merge replaced (it frees old table versions when a memtable is
    /// rotated). Blocks the caller for as long as that takes (reading and
    /// writing what is live); other threads may write meanwhile.
    pub fn compact(&self) -> Result<Compacted, KvError> {
        let disk_bytes_before = allocated_bytes(&self.path);
        self.flush(&self.jobs)?;
        self.jobs.major_compact().map_err(|e| self.io(e))?;
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let mut batch = self.db.batch().durability(None);
        batch.insert(&self.maint, "compacted-at", at.to_le_bytes());
        batch.commit().map_err(|e| self.io(e))?;
        self.flush(&self.maint)?;
        Ok(Compacted {
            disk_bytes_before,
            disk_bytes_after: allocated_bytes(&self.path),
        })
    }

    /// Seals `ks`'s memtable and waits (at most [`FLUSH_WAIT`]) until the
    /// store crate's worker has written it to a table.
    fn flush(&self, ks: &fjall::Keyspace) -> Result<(), KvError> {
        ks.rotate_memtable().map_err(|e| self.io(e))?;
        let deadline = Instant::now() + FLUSH_WAIT;
        while self.db.outstanding_flushes() > 0 || ks.sealed_memtable_count() > 0 {
            if Instant::now() >= deadline {
                return Err(KvError::Io {
                    path: self.path.clone(),
                    message: format!("a memtable flush did not end within {FLUSH_WAIT:?}"),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    fn io(&self, e: fjall::Error) -> KvError {
        io_error(&self.path, e)
    }
}

fn io_error(path: &Path, e: fjall::Error) -> KvError {
    let mut message = e.to_string();
    // The store crate stops at its first failed write ("poisoned"), which
    // may have been a background flush: say why, if the disk is full.
    if !message.contains("No space") && no_space_left(path) {
        message = format!("No space left on device ({message})");
    }
    KvError::Io {
        path: path.to_path_buf(),
        message,
    }
}

/// Bytes the files under `path` take on the disk (allocated blocks: the
/// store's journals are sparse files of a fixed length).
pub fn allocated_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    each_file(path, |_, m| total += m.blocks() * 512);
    total
}

/// Calls `f` with every file under `path` (at most 10,000 directories
/// deep and wide, so a strange tree cannot hold the node up).
fn each_file(path: &Path, mut f: impl FnMut(&std::fs::DirEntry, &std::fs::Metadata)) {
    let mut stack = vec![path.to_path_buf()];
    let mut dirs = 0;
    while let Some(d) = stack.pop() {
        dirs += 1;
        if dirs > 10_000 {
            break;
        }
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                f(&e, &m);
            }
        }
    }
}

/// Whether the filesystem of `dir` has no room for a small file.
fn no_space_left(dir: &Path) -> bool {
    let probe = dir.join(".space-probe");
    let full = match std::fs::write(&probe, [0u8; 64 * 1024]) {
        Ok(()) => false,
        Err(e) => {
            e.kind() == std::io::ErrorKind::StorageFull
                || e.kind() == std::io::ErrorKind::QuotaExceeded
                || e.kind() == std::io::ErrorKind::FileTooLarge
        }
    };
    let _ = std::fs::remove_file(&probe);
    full
}

/// Checks the journals before the store crate opens them
/// ([`journal_file`]): cuts a torn tail; refuses damage in the middle.
/// Returns the bytes of journal data found.
fn check_journals(path: &Path) -> Result<u64, KvError> {
    let open_err = |message: String| KvError::Open {
        path: path.to_path_buf(),
        message,
    };
    let (verdict, bytes) =
        journal_file::check(path).map_err(|e| open_err(format!("reading its journals: {e}")))?;
    match verdict {
        Verdict::Whole => Ok(bytes),
        Verdict::TornTail { file, at, dropped } => {
            tracing::warn!(
                file = %file.display(),
                at,
                dropped,
                "job store: the journal ends in a damaged batch (a write cut short); cutting it there"
            );
            journal_file::cut(&file, at).map_err(|e| {
                open_err(format!("cutting the torn tail of {}: {e}", file.display()))
            })?;
            Ok(bytes)
        }
        Verdict::Damaged {
            file,
            at,
            next_file,
            next,
        } => {
            let later = if next_file == file {
                String::new()
            } else {
                " and move the later journals aside".to_string()
            };
            Err(open_err(format!(
                "journal {} is damaged at byte {at}, and whole batches follow it (from byte {next} of {}): \
                 that is not a write cut short by a crash, and cutting the journal there would drop \
                 the accepted changes after it. Restore the store from a backup; or, to keep only \
                 what comes before the damage, cut the journal there (`truncate -s {at} {}`){later}",
                file.display(),
                next_file.display(),
                file.display(),
            )))
        }
    }
}

/// Bytes of journal data under `path`: each journal file up to its last
/// non-zero byte (the store preallocates journals with zeros, so the file
/// length says nothing; a torn write leaves garbage before the zeros).
fn journal_bytes(path: &Path) -> u64 {
    let mut total = 0;
    each_file(path, |e, m| {
        if e.file_name().to_string_lossy().ends_with(".jnl") {
            total += journal_file::data_end(&e.path()).unwrap_or(m.len());
        }
    });
    total
}

/// Runs `f`, turning a panic inside the store crate into an `Err` without
/// the default hook printing it as a crash: a damaged store is reported by
/// the caller as a refusal with its own message. The hook is wrapped once
/// for the process and stays quiet only on the thread inside `quietly`, so
/// a panic elsewhere meanwhile is still printed (the writer thread opens
/// and reads stores while the node runs: reopen, rewrite).
fn quietly<T>(f: impl FnOnce() -> T) -> std::thread::Result<T> {
    use std::cell::Cell;
    thread_local!(static QUIET: Cell<bool> = const { Cell::new(false) });
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.with(Cell::get) {
                tracing::debug!("store crate panic: {info}");
            } else {
                previous(info);
            }
        }));
    });
    let was = QUIET.with(|q| q.replace(true));
    let out = std::panic::catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(i: u8) -> [u8; 16] {
        [i; 16]
    }

    #[test]
    fn writes_survive_a_reopen_and_deletes_stay_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        {
            let (kv, rep) = Kv::open(&path).unwrap();
            assert_eq!(rep.journal_bytes_dropped, 0);
            kv.write(vec![
                Op::Put(k(1), b"one".to_vec()),
                Op::Put(k(2), b"two".to_vec()),
            ])
            .unwrap();
            kv.write(vec![Op::Remove(k(1))]).unwrap();
            kv.sync().unwrap();
        }
        let (kv, _) = Kv::open(&path).unwrap();
        let mut seen = vec![];
        kv.scan(|k, v| seen.push((k.to_vec(), v.to_vec()))).unwrap();
        assert_eq!(seen, vec![(k(2).to_vec(), b"two".to_vec())]);
    }

    #[test]
    fn a_torn_journal_tail_is_cut_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live");
        let crashed = dir.path().join("crashed");
        {
            let (kv, _) = Kv::open(&live).unwrap();
            kv.write(vec![Op::Put(k(1), vec![1; 100])]).unwrap();
            kv.write(vec![Op::Put(k(2), vec![2; 100])]).unwrap();
            kv.sync().unwrap();
            // The files as a crash right now leaves them.
            copy_dir(&live, &crashed);
        }
        // A torn write: the end of the last batch is garbage.
        let jnl = find_journal(&crashed).expect("a journal file");
        let end = journal_file::data_end(&jnl).unwrap();
        let mut bytes = std::fs::read(&jnl).unwrap();
        for b in &mut bytes[end as usize - 8..end as usize] {
            *b ^= 0x5A;
        }
        std::fs::write(&jnl, &bytes).unwrap();
        let (kv, rep) = Kv::open(&crashed).unwrap();
        assert!(rep.journal_bytes_dropped > 0, "{rep:?}");
        let mut keys = vec![];
        kv.scan(|k, _| keys.push(k.to_vec())).unwrap();
        assert_eq!(
            keys,
            vec![k(1).to_vec()],
            "what is before the tear survives"
        );
    }

    /// Bytes of the store's files other than journals (tables, versions).
    fn table_bytes(path: &Path) -> u64 {
        allocated_bytes(path) - journal_alloc(path)
    }

    fn journal_alloc(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        let mut total = 0;
        each_file(path, |e, m| {
            if e.path().extension().is_some_and(|x| x == "jnl") {
                total += m.blocks() * 512;
            }
        });
        total
    }

    #[test]
    fn compacting_after_deleting_everything_gives_the_tables_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let (kv, _) = Kv::open(&path).unwrap();
        let n: u32 = 50_000;
        let key = |i: u32| {
            let mut k = [0u8; 16];
            k[..4].copy_from_slice(&i.to_be_bytes());
            k
        };
        let value = |i: u32| {
            let mut v = vec![0u8; 180];
            for (j, b) in v.iter_mut().enumerate() {
                *b = (i as usize * 31 + j * 7) as u8;
            }
            v
        };
        for chunk in (0..n).collect::<Vec<_>>().chunks(256) {
            kv.write(chunk.iter().map(|&i| Op::Put(key(i), value(i))).collect())
                .unwrap();
        }
        // Into tables, as a long-running node's records are.
        kv.compactor().compact().unwrap();
        let full = table_bytes(&path);
        assert!(full > 1_000_000, "{n} records in tables: {full} bytes");
        for chunk in (0..n).collect::<Vec<_>>().chunks(256) {
            kv.write(chunk.iter().map(|&i| Op::Remove(key(i))).collect())
                .unwrap();
        }
        kv.sync().unwrap();
        assert!(table_bytes(&path) >= full, "deletes alone free nothing");
        let c = kv.compactor().compact().unwrap();
        let tables = table_bytes(&path);
        assert!(
            tables < 200_000,
            "tables after deleting all and compacting: {tables} bytes (were {full}); {c:?}"
        );
        assert!(c.disk_bytes_after < c.disk_bytes_before, "{c:?}");
        let mut left = 0;
        kv.scan(|_, _| left += 1).unwrap();
        assert_eq!(left, 0);
        // The store is still whole: writes and a reopen work.
        kv.write(vec![Op::Put(k(7), b"seven".to_vec())]).unwrap();
        kv.sync().unwrap();
        drop(kv);
        let (kv, _) = Kv::open(&path).unwrap();
        let mut seen = vec![];
        kv.scan(|k, v| seen.push((k.to_vec(), v.to_vec()))).unwrap();
        assert_eq!(seen, vec![(k(7).to_vec(), b"seven".to_vec())]);
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                copy_dir(&p, &to.join(e.file_name()));
            } else {
                std::fs::copy(&p, to.join(e.file_name())).unwrap();
            }
        }
    }

    fn find_journal(path: &Path) -> Option<PathBuf> {
        let mut stack = vec![path.to_path_buf()];
        let mut found = None;
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).ok()?.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "jnl")
                    && std::fs::metadata(&p).is_ok_and(|m| m.len() > 0)
                {
                    found = Some(p);
                }
            }
        }
        found
    }
}
