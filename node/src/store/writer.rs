//! The store's writer thread: group commit.
//!
//! The driver hands it numbered batches of [`Change`]s. The thread takes
//! every batch already waiting, coalesces them (the last snapshot of a job
//! wins), writes them as one store batch, hands it to the OS, syncs when a
//! batch asks for it (`appendfsync always`, or an at-most-once dequeue)
//! and answers with the highest batch number done: every writer waiting in
//! that group shares one sync. With `everysec`, written data is synced at
//! most about a second later; with `no`, the OS decides.
//!
//! Deletes are tombstones until the store compacts; after many of them
//! (more than [`COMPACT_MIN_REMOVES`], and more than the jobs still live)
//! the thread starts a compaction on a thread of its own
//! ([`super::kv::Compactor`]), one at a time, while it goes on writing, so
//! the store's size follows the live jobs within seconds of mass removals.
//!
//! What compaction cannot give back is fjall's active journal (up to
//! 64 MB). Once the writer has been idle for a moment (no batch for
//! 200 ms), the store takes at least [`REWRITE_MIN_BYTES`] and at least
//! [`REWRITE_RATIO`] times what its live jobs need, and there are at most
//! [`REWRITE_MAX_LIVE`] of them, the thread rewrites the store
//! ([`super::rewrite`]): a short pause, only when little is live and
//! nothing is being written, so it never stalls a loaded node.
//!
//! A failed write (disk full) is answered with its reason; the changes are
//! kept and written again with the next batch or after a second, and the
//! store is reopened first (the store crate refuses writes after a failed
//! one until reopened).
//!
//! **Written on the driver's thread.** When the writer has nothing in
//! hand (every batch before answered, its state not locked by a sync, a
//! compaction's start or a rewrite) and a batch needs no sync, the driver
//! writes it itself ([`Writer::write_here`]) and carries on with the
//! replies it held, as redis writes its AOF in its event loop: the adds
//! then wait for one `write`, not for this thread to wake and answer
//! (how the driver lets a round grow first: `Driver::carry_out` in
//! `runtime.rs`). A store that would throttle a write
//! ([`Kv::calm`]) gets it on the thread: a throttled write sleeps, and the
//! driver's thread serves every connection. The thread still syncs
//! (`everysec`, and every batch that asks), compacts and rewrites; it
//! counts a write done here as activity, so a rewrite never overlaps a
//! busy moment.

use hashbrown::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tokio::sync::mpsc::UnboundedSender;

use super::kv::{Compacted, Kv, KvError, allocated_bytes};
use super::record;
use super::rewrite;
use crate::config::AppendFsync;
use crate::engine::Change;

/// One batch for the writer.
#[derive(Debug)]
pub struct Batch {
    pub seq: u64,
    pub changes: Vec<Change>,
    /// Sync before answering.
    pub sync: bool,
    /// Jobs the node holds once this batch is written (what the store
    /// holds, as records).
    pub live: usize,
}

/// The writer's answer: every batch up to `seq` is done (`Ok`), or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub seq: u64,
    pub result: Result<(), String>,
}

/// Counters of the writer, for INFO, `/metrics`, `/readyz` and benchmarks.
#[derive(Debug)]
pub struct WriterStats {
    pub groups: AtomicU64,
    pub syncs: AtomicU64,
    pub records_written: AtomicU64,
    pub failures: AtomicU64,
    pub disk_bytes: AtomicU64,
    /// Compactions finished (see [`COMPACT_MIN_REMOVES`]).
    pub compactions: AtomicU64,
    /// Rewrites finished (see [`REWRITE_MIN_BYTES`]).
    pub rewrites: AtomicU64,
    /// Groups written on the driver's thread ([`Writer::write_here`]),
    /// out of [`WriterStats::groups`].
    pub groups_here: AtomicU64,
    /// Time of each group write (handing the batch to the store), seconds.
    pub write_seconds: Histogram,
    /// Time of each sync to disk, seconds.
    pub sync_seconds: Histogram,
    /// Why the store cannot write right now; `None` while it can.
    pub broken: Mutex<Option<String>>,
}

impl Default for WriterStats {
    fn default() -> Self {
        // 10 µs .. ~10 s, ×2 per bucket: fsync latency spans that range.
        let buckets = || exponential_buckets(0.000_01, 2.0, 21);
        WriterStats {
            groups: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            records_written: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            disk_bytes: AtomicU64::new(0),
            compactions: AtomicU64::new(0),
            rewrites: AtomicU64::new(0),
            groups_here: AtomicU64::new(0),
            write_seconds: Histogram::new(buckets()),
            sync_seconds: Histogram::new(buckets()),
            broken: Mutex::new(None),
        }
    }
}

impl WriterStats {
    /// Why the store cannot write, if it cannot.
    pub fn broken(&self) -> Option<String> {
        self.broken
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set_broken(&self, why: Option<String>) {
        *self
            .broken
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = why;
    }
}

/// Most batches coalesced into one group commit.
const MAX_GROUP_BATCHES: usize = 4096;
/// How long a broken store waits before it is reopened and retried.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Deletes written since the last compaction that start the next one,
/// at least; and there must be more of them than live jobs (then at least
/// half of what the store holds is dead weight, and a compaction, which
/// reads and rewrites what is live, costs less than what was deleted).
pub const COMPACT_MIN_REMOVES: u64 = 10_000;
/// Least time from the end of one compaction to the start of the next
/// (bounds the work spent on compaction under a steady add/ack churn).
const COMPACT_PAUSE: Duration = Duration::from_secs(1);
/// Store size (allocated bytes) from which an idle writer rewrites it,
/// if little is live: below it the journal is left to grow (Disque's
/// `auto-aof-rewrite-min-size` is 64 MB).
pub const REWRITE_MIN_BYTES: u64 = 4 << 20;
/// ... and if the store takes at least this many times what its live
/// jobs need (at [`REWRITE_BYTES_PER_JOB`] each).
const REWRITE_RATIO: u64 = 4;
const REWRITE_BYTES_PER_JOB: u64 = 256;
/// ... and if at most this many jobs are live: the rewrite copies them
/// while nothing is written (about 50 ms for this many here).
pub const REWRITE_MAX_LIVE: usize = 20_000;
/// Least time between two rewrites, and between two looks at the size.
const REWRITE_PAUSE: Duration = Duration::from_secs(10);
const REWRITE_LOOK_EVERY: Duration = Duration::from_secs(1);
/// No batch for this long: the writer is idle (it syncs for `everysec`,
/// compacts, and may rewrite once nothing was written for this long).
const IDLE_AFTER: Duration = Duration::from_millis(200);

/// The handle to the writer thread. Dropping the handle's sender (through
/// [`Writer::finish`]) makes the thread write what is left, sync, close
/// the store and end.
pub struct Writer {
    tx: Option<Sender<Batch>>,
    thread: Option<JoinHandle<()>>,
    /// The thread's state, locked by it for each group and each idle turn,
    /// and tried by [`Writer::write_here`].
    state: Arc<Mutex<State>>,
    mode: AppendFsync,
    pub stats: Arc<WriterStats>,
}

impl Writer {
    /// Starts the thread over `kv`, which holds `live` jobs.
    pub fn spawn(
        kv: Kv,
        live: usize,
        mode: AppendFsync,
        done: UnboundedSender<Written>,
    ) -> std::io::Result<Writer> {
        let (tx, rx) = channel();
        let stats = Arc::new(WriterStats::default());
        let state = Arc::new(Mutex::new(State::new(kv, live, mode, done, stats.clone())));
        let st = state.clone();
        let thread = std::thread::Builder::new()
            .name("wasque-store".into())
            .spawn(move || {
                // Replies wait on its rounds, as on the I/O threads'.
                crate::thread_class::latency();
                run(&st, rx)
            })?;
        Ok(Writer {
            tx: Some(tx),
            thread: Some(thread),
            state,
            mode,
            stats,
        })
    }

    /// Queues a batch. Returns false if the thread is gone.
    pub fn submit(&self, batch: Batch) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.send(batch).is_ok())
    }

    /// Whether [`Writer::write_here`] can take any batch at all
    /// (`appendfsync always` sends every one to the thread).
    pub fn may_write_here(&self) -> bool {
        self.mode != AppendFsync::Always
    }

    /// Writes `batch` on the calling thread and answers it, if that can be
    /// done without waiting: see the module's comment. The caller must
    /// have every batch it submitted before answered (the thread then
    /// holds none, so the store gets the batches in order). Hands the
    /// batch back when it is for the thread: one that asks for a sync,
    /// `appendfsync always`, a store that failed or would throttle, or a
    /// thread busy with its state.
    pub fn write_here(&self, batch: Batch) -> Result<Written, Batch> {
        match self.state.try_lock() {
            Ok(mut state) => state.write_here(batch),
            Err(_) => Err(batch),
        }
    }

    /// Lets the thread finish (write, sync, close) and hands back its
    /// handle to join.
    pub fn finish(mut self) -> Option<JoinHandle<()>> {
        self.tx = None;
        self.thread.take()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // The thread ends on its own once the sender is gone; nobody joins.
        self.tx = None;
    }
}

/// What the writer thread works on: the store and what is not yet
/// written or synced. The thread holds it locked while it works; the
/// driver's thread borrows it for a write when it is free.
struct State {
    kv: Option<Kv>,
    path: std::path::PathBuf,
    mode: AppendFsync,
    done: UnboundedSender<Written>,
    stats: Arc<WriterStats>,
    /// Changes not yet written (coalesced by store key: a job's id or a
    /// tombstone's digest).
    unwritten: HashMap<[u8; 16], Change>,
    /// Written but not yet synced.
    dirty: bool,
    last_sync: Instant,
    /// When a group was last written, by either thread.
    last_write: Option<Instant>,
    /// Why the last write failed; the store is reopened before the next.
    broken: Option<(String, Instant)>,
    buf: Vec<u8>,
    /// Jobs live, as the last batch said.
    live: usize,
    /// Deletes written since the last compaction started.
    removes: u64,
    /// The running compaction, if any.
    compaction: Option<JoinHandle<Result<Compacted, KvError>>>,
    /// When the last compaction ended.
    compacted_at: Option<Instant>,
    /// When the last rewrite ended, and when the size was last looked at.
    rewritten_at: Option<Instant>,
    rewrite_looked_at: Option<Instant>,
    /// The filesystem cannot swap a rewritten store in.
    rewrite_unsupported: bool,
    /// Allocated bytes right after the last rewrite: the next one waits
    /// until the store is twice that (a filesystem that allocates fjall's
    /// preallocated journal in full would otherwise rewrite every time).
    rewrite_floor: u64,
}

/// The writer thread: takes every batch waiting, writes them as one
/// group, answers, and works on the store while idle; at the end, writes
/// what is left, syncs and closes the store.
fn run(state: &Mutex<State>, rx: Receiver<Batch>) {
    let lock = || state.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let first = match rx.recv_timeout(IDLE_AFTER) {
            Ok(b) => b,
            Err(RecvTimeoutError::Timeout) => {
                lock().idle();
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut s = lock();
        let mut seq = first.seq;
        let mut sync = first.sync || s.mode == AppendFsync::Always;
        s.live = first.live;
        s.take(first.changes);
        for _ in 1..MAX_GROUP_BATCHES {
            let Ok(b) = rx.try_recv() else { break };
            seq = b.seq;
            sync |= b.sync;
            s.live = b.live;
            s.take(b.changes);
        }
        let result = s.commit(sync);
        if result.is_err() {
            s.stats.failures.fetch_add(1, Ordering::Relaxed);
        }
        let _ = s.done.send(Written { seq, result });
        s.maybe_sync_everysec();
        s.maybe_compact();
    }
    // Closing: what is left, synced.
    let mut s = lock();
    s.end_compaction();
    if s.commit(true).is_err() {
        tracing::error!(
            path = %s.path.display(),
            unwritten = s.unwritten.len(),
            "job store: changes could not be written at shutdown"
        );
    }
    // The store closes here, on this thread, not when the handle goes.
    s.kv = None;
}

impl State {
    fn new(
        kv: Kv,
        live: usize,
        mode: AppendFsync,
        done: UnboundedSender<Written>,
        stats: Arc<WriterStats>,
    ) -> State {
        stats.disk_bytes.store(kv.disk_bytes(), Ordering::Relaxed);
        State {
            path: kv.path().to_path_buf(),
            kv: Some(kv),
            mode,
            done,
            stats,
            unwritten: HashMap::new(),
            dirty: false,
            last_sync: Instant::now(),
            last_write: None,
            broken: None,
            buf: Vec::new(),
            live,
            removes: 0,
            compaction: None,
            compacted_at: None,
            rewritten_at: None,
            rewrite_looked_at: None,
            rewrite_unsupported: false,
            rewrite_floor: 0,
        }
    }

    /// See [`Writer::write_here`].
    fn write_here(&mut self, batch: Batch) -> Result<Written, Batch> {
        if batch.sync
            || self.mode == AppendFsync::Always
            || self.broken.is_some()
            || !self.unwritten.is_empty()
            || !self.kv.as_ref().is_some_and(Kv::calm)
        {
            return Err(batch);
        }
        self.live = batch.live;
        self.take(batch.changes);
        let result = self.commit(false);
        if result.is_err() {
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.groups_here.fetch_add(1, Ordering::Relaxed);
        Ok(Written {
            seq: batch.seq,
            result,
        })
    }

    fn take(&mut self, changes: Vec<Change>) {
        for c in changes {
            self.unwritten.insert(c.key(), c);
        }
    }

    /// Nothing new: retry a broken store, or sync for `everysec`.
    fn idle(&mut self) {
        if let Some(kv) = &self.kv {
            self.stats
                .disk_bytes
                .store(kv.disk_bytes(), Ordering::Relaxed);
        }
        if self
            .broken
            .as_ref()
            .is_some_and(|(_, at)| at.elapsed() >= RETRY_AFTER)
            && !self.unwritten.is_empty()
        {
            match self.commit(false) {
                Ok(()) => tracing::warn!("job store: writes resumed"),
                Err(e) => tracing::warn!("job store still failing: {e}"),
            }
        }
        self.maybe_sync_everysec();
        self.maybe_compact();
        self.maybe_rewrite();
    }

    /// Rewrites the store if it is much bigger than what is live and
    /// little is live (see the module's comment). Only called when idle.
    fn maybe_rewrite(&mut self) {
        let every = |at: Option<Instant>, d: Duration| at.is_none_or(|t| t.elapsed() >= d);
        if self.rewrite_unsupported
            || self.kv.is_none()
            || self.compaction.is_some()
            || self.broken.is_some()
            || !self.unwritten.is_empty()
            || self.last_write.is_some_and(|t| t.elapsed() < IDLE_AFTER)
            || self.live > REWRITE_MAX_LIVE
            || !every(self.rewritten_at, REWRITE_PAUSE)
            || !every(self.rewrite_looked_at, REWRITE_LOOK_EVERY)
        {
            return;
        }
        self.rewrite_looked_at = Some(Instant::now());
        let bytes = allocated_bytes(&self.path);
        let needed = self.live as u64 * REWRITE_BYTES_PER_JOB;
        if bytes < REWRITE_MIN_BYTES
            || bytes < needed.saturating_mul(REWRITE_RATIO)
            || bytes < self.rewrite_floor.saturating_mul(2)
        {
            return;
        }
        // Everything written is synced into the rewrite; nothing is unsynced after.
        let Some(kv) = self.kv.take() else { return };
        // Twice the live count: records the node is about to delete (an
        // ack in flight) are copied too; far more means the count is off.
        let max = (self.live as u64 * 2).max(1000);
        match rewrite::rewrite(kv, max) {
            Ok((kv, done)) => {
                // Synced, and no deletes left in it to compact.
                self.dirty = false;
                self.removes = 0;
                self.last_sync = Instant::now();
                self.stats.rewrites.fetch_add(1, Ordering::Relaxed);
                let after = allocated_bytes(&self.path);
                self.rewrite_floor = after;
                tracing::info!(
                    records = done.records,
                    millis = done.millis,
                    before_bytes = bytes,
                    after_bytes = after,
                    "job store rewritten"
                );
                self.stats
                    .disk_bytes
                    .store(kv.disk_bytes(), Ordering::Relaxed);
                self.kv = Some(kv);
            }
            Err(e) => {
                let e = *e;
                tracing::warn!("job store: not rewritten: {}", e.why);
                self.rewrite_unsupported = e.unsupported;
                match e.kv {
                    Some(kv) => self.kv = Some(kv),
                    // Reopened before the next write, like after a failed write.
                    None => {
                        self.fail(&e.why);
                    }
                }
            }
        }
        self.rewritten_at = Some(Instant::now());
    }

    /// Reaps a finished compaction; starts one if deletes since the last
    /// are many, both in number and against the live jobs.
    fn maybe_compact(&mut self) {
        if self.compaction.as_ref().is_some_and(|c| c.is_finished()) {
            self.end_compaction();
        }
        if self.compaction.is_some()
            || self.broken.is_some()
            || self.removes < COMPACT_MIN_REMOVES
            || self.removes <= self.live as u64
            || self
                .compacted_at
                .is_some_and(|at| at.elapsed() < COMPACT_PAUSE)
        {
            return;
        }
        let Some(kv) = &self.kv else { return };
        let compactor = kv.compactor();
        tracing::debug!(
            removes = self.removes,
            live = self.live,
            "job store: compacting after deletes"
        );
        self.removes = 0;
        let stats = self.stats.clone();
        match std::thread::Builder::new()
            .name("wasque-store-compact".into())
            .spawn(move || {
                let compacted = compactor.compact();
                if compacted.is_ok() {
                    stats.compactions.fetch_add(1, Ordering::Relaxed);
                }
                compacted
            }) {
            Ok(handle) => self.compaction = Some(handle),
            Err(e) => tracing::warn!("job store: cannot start a compaction thread: {e}"),
        }
    }

    /// Waits for the running compaction, if any, and logs how it went.
    /// The compaction holds the store open: this comes before the store is
    /// closed or reopened.
    fn end_compaction(&mut self) {
        let Some(handle) = self.compaction.take() else {
            return;
        };
        self.compacted_at = Some(Instant::now());
        match handle.join() {
            Ok(Ok(c)) => {
                tracing::info!(
                    before_bytes = c.disk_bytes_before,
                    after_bytes = c.disk_bytes_after,
                    "job store compacted"
                );
            }
            Ok(Err(e)) => tracing::warn!("job store: compaction failed: {e}"),
            Err(_) => tracing::error!("job store: the compaction thread panicked"),
        }
        if let Some(kv) = &self.kv {
            self.stats
                .disk_bytes
                .store(kv.disk_bytes(), Ordering::Relaxed);
        }
    }

    fn maybe_sync_everysec(&mut self) {
        if self.mode == AppendFsync::EverySec
            && self.broken.is_none()
            && self.dirty
            && self.last_sync.elapsed() >= Duration::from_secs(1)
            && let Some(kv) = &self.kv
        {
            let t = Instant::now();
            let synced = kv.sync();
            self.stats.sync_seconds.observe(t.elapsed().as_secs_f64());
            match synced {
                Ok(()) => {
                    self.stats.syncs.fetch_add(1, Ordering::Relaxed);
                    self.dirty = false;
                    self.last_sync = Instant::now();
                }
                Err(e) => {
                    self.fail(&e);
                }
            }
        }
    }

    fn fail(&mut self, e: &KvError) -> String {
        let why = if e.is_no_space() {
            format!("the disk is full, jobs cannot be written: {e}")
        } else {
            format!("jobs cannot be written: {e}")
        };
        if self
            .broken
            .as_ref()
            .is_none_or(|(before, _)| *before != why)
        {
            tracing::error!("job store: {why}");
        }
        self.broken = Some((why.clone(), Instant::now()));
        self.stats.set_broken(Some(why.clone()));
        why
    }

    /// Writes every unwritten change (and syncs if asked).
    fn commit(&mut self, sync: bool) -> Result<(), String> {
        if let Some((why, at)) = &self.broken {
            if at.elapsed() < RETRY_AFTER {
                return Err(why.clone());
            }
            // The store crate refuses writes after a failed one: reopen.
            self.end_compaction();
            self.kv = None;
            match Kv::open(&self.path) {
                Ok((kv, _)) => self.kv = Some(kv),
                Err(e) => return Err(self.fail(&e)),
            }
        }
        let Some(kv) = &self.kv else {
            return Err("the job store is closed".into());
        };
        if !self.unwritten.is_empty() {
            // Each record is encoded into the one buffer and copied into
            // the batch from there (no value of its own per record).
            let mut batch = kv.batch();
            let mut removes = 0;
            for change in self.unwritten.values() {
                match change {
                    Change::Put(job) => match record::encode(job, &mut self.buf) {
                        Ok(()) => batch.put(record::key(&job.id), &self.buf),
                        Err(e) => tracing::error!(job = %job.id, "cannot encode job record: {e}"),
                    },
                    Change::Remove(id) => {
                        removes += 1;
                        batch.remove(record::key(id));
                    }
                    Change::PutTomb(t) => match record::encode_tomb(t, &mut self.buf) {
                        Ok(()) => batch.put(record::tomb_key(&t.digest), &self.buf),
                        Err(e) => tracing::error!(job = %t.id, "cannot encode tombstone: {e}"),
                    },
                    Change::RemoveTomb(d) => {
                        removes += 1;
                        batch.remove(record::tomb_key(d));
                    }
                }
            }
            let n = batch.len() as u64;
            let t = Instant::now();
            let wrote = batch.commit();
            self.stats.write_seconds.observe(t.elapsed().as_secs_f64());
            if let Err(e) = wrote {
                return Err(self.fail(&e));
            }
            self.unwritten.clear();
            self.removes += removes;
            self.dirty = true;
            self.last_write = Some(Instant::now());
            self.stats.records_written.fetch_add(n, Ordering::Relaxed);
            self.stats.groups.fetch_add(1, Ordering::Relaxed);
        }
        if sync && self.dirty && self.mode != AppendFsync::No {
            let t = Instant::now();
            let synced = kv.sync();
            self.stats.sync_seconds.observe(t.elapsed().as_secs_f64());
            if let Err(e) = synced {
                return Err(self.fail(&e));
            }
            self.stats.syncs.fetch_add(1, Ordering::Relaxed);
            self.dirty = false;
            self.last_sync = Instant::now();
        }
        if self.broken.take().is_some() {
            self.stats.set_broken(None);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::Job;
    use crate::store::kv::allocated_bytes;
    use crate::store::record::sample_job;

    /// Submits `changes` as one batch and waits until it is written.
    fn write(
        w: &Writer,
        rx: &mut tokio::sync::mpsc::UnboundedReceiver<Written>,
        seq: u64,
        changes: Vec<Change>,
        live: usize,
    ) {
        assert!(w.submit(Batch {
            seq,
            changes,
            sync: false,
            live,
        }));
        let done = rx.blocking_recv().expect("an answer");
        assert_eq!(
            done,
            Written {
                seq,
                result: Ok(())
            }
        );
    }

    #[test]
    fn the_store_shrinks_after_its_jobs_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let (kv, _) = Kv::open(&path).unwrap();
        let compactor = kv.compactor();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let w = Writer::spawn(kv, 0, AppendFsync::No, tx).unwrap();
        let n = 30_000u64;
        let jobs: Vec<Job> = (0..n)
            .map(|i| sample_job(1_700_000_000_000 + i, &[7; 100]))
            .collect();
        for (i, chunk) in jobs.chunks(1000).enumerate() {
            let changes = chunk
                .iter()
                .map(|j| Change::Put(Box::new(j.clone())))
                .collect();
            write(&w, &mut rx, i as u64 + 1, changes, (i + 1) * 1000);
        }
        // The records in tables, as a long-running node's are; fewer
        // deletes than live jobs start no compaction.
        compactor.compact().unwrap();
        drop(compactor);
        let full = allocated_bytes(&path) - journal_bytes_allocated(&path);
        let kept = 2_000;
        write(
            &w,
            &mut rx,
            100,
            jobs[..2_000].iter().map(|j| Change::Remove(j.id)).collect(),
            n as usize - 2_000,
        );
        let mut seq = 100;
        for chunk in jobs[2_000..n as usize - kept].chunks(1000) {
            seq += 1;
            let changes = chunk.iter().map(|j| Change::Remove(j.id)).collect();
            write(&w, &mut rx, seq, changes, kept);
        }
        // Compacted within seconds, without more writes.
        let t = Instant::now();
        loop {
            let after = allocated_bytes(&path) - journal_bytes_allocated(&path);
            if after < full / 4 && w.stats.compactions.load(Ordering::Relaxed) >= 1 {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(8),
                "store without its journal: {after} bytes after removing {} of {n} jobs \
                 ({full} before); compactions: {}",
                n as usize - kept,
                w.stats.compactions.load(Ordering::Relaxed)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        w.finish().unwrap().join().unwrap();
        let (kv, _) = Kv::open(&path).unwrap();
        let mut left = 0;
        kv.scan(|_, _| left += 1).unwrap();
        assert_eq!(left, kept);
    }

    /// A batch that needs no sync is written on the caller's thread and
    /// answered at once; the thread syncs it (`everysec`) within about a
    /// second all the same. A batch that asks for a sync, and any batch
    /// with `appendfsync always`, is handed back for the thread.
    #[test]
    fn a_batch_without_a_sync_is_written_here_and_synced_by_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let (kv, _) = Kv::open(&path).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let w = Writer::spawn(kv, 0, AppendFsync::EverySec, tx).unwrap();
        let jobs: Vec<Job> = (0..3)
            .map(|i| sample_job(1_700_000_000_000 + i, &[7; 100]))
            .collect();
        let batch = |seq: u64, sync| Batch {
            seq,
            changes: vec![Change::Put(Box::new(jobs[seq as usize - 1].clone()))],
            sync,
            live: seq as usize,
        };
        let t = Instant::now();
        assert_eq!(
            w.write_here(batch(1, false)).expect("written here"),
            Written {
                seq: 1,
                result: Ok(())
            }
        );
        assert_eq!(w.stats.groups_here.load(Ordering::Relaxed), 1);
        // Synced by the thread, though it was never handed a batch.
        while w.stats.syncs.load(Ordering::Relaxed) == 0 {
            assert!(t.elapsed() < Duration::from_secs(5), "not synced");
            std::thread::sleep(Duration::from_millis(20));
        }
        let handed_back = w
            .write_here(batch(2, true))
            .expect_err("a sync is for the thread");
        write(&w, &mut rx, 2, handed_back.changes, 2);
        assert_eq!(w.stats.groups_here.load(Ordering::Relaxed), 1);
        w.finish().unwrap().join().unwrap();

        let (kv, _) = Kv::open(&path).unwrap();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let w = Writer::spawn(kv, 2, AppendFsync::Always, tx).unwrap();
        assert!(w.write_here(batch(3, false)).is_err(), "always syncs");
        w.finish().unwrap().join().unwrap();
        let (kv, _) = Kv::open(&path).unwrap();
        let mut keys = vec![];
        kv.scan(|k, _| keys.push(k.to_vec())).unwrap();
        let mut want: Vec<Vec<u8>> = jobs[..2]
            .iter()
            .map(|j| record::key(&j.id).to_vec())
            .collect();
        want.sort();
        assert_eq!(keys, want);
    }

    fn journal_bytes_allocated(path: &std::path::Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::read_dir(path)
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "jnl"))
            // A rewrite may delete files while this looks.
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.blocks() * 512)
            .sum()
    }

    #[test]
    fn a_small_store_gives_its_journal_back_once_its_jobs_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let (kv, _) = Kv::open(&path).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let w = Writer::spawn(kv, 0, AppendFsync::EverySec, tx).unwrap();
        let n = 20_000u64;
        let kept = 10;
        let jobs: Vec<Job> = (0..n)
            .map(|i| sample_job(1_700_000_000_000 + i, &[7; 100]))
            .collect();
        let mut seq = 0;
        for (i, chunk) in jobs.chunks(500).enumerate() {
            seq += 1;
            let changes = chunk
                .iter()
                .map(|j| Change::Put(Box::new(j.clone())))
                .collect();
            write(&w, &mut rx, seq, changes, (i + 1) * 500);
        }
        for chunk in jobs[kept..].chunks(500) {
            seq += 1;
            let changes = chunk.iter().map(|j| Change::Remove(j.id)).collect();
            write(&w, &mut rx, seq, changes, kept);
        }
        let full = allocated_bytes(&path);
        assert!(full > REWRITE_MIN_BYTES, "{full} bytes");
        // Idle now: the journal (all fjall kept) goes within seconds.
        let t = Instant::now();
        loop {
            let now = allocated_bytes(&path);
            if now < 300_000 && w.stats.rewrites.load(Ordering::Relaxed) >= 1 {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "store: {now} bytes after removing {} of {n} jobs ({full} before)",
                n as usize - kept
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // Writes go on into the rewritten store, and survive a reopen.
        seq += 1;
        write(&w, &mut rx, seq, vec![Change::Remove(jobs[0].id)], kept - 1);
        w.finish().unwrap().join().unwrap();
        let (kv, _) = Kv::open(&path).unwrap();
        let mut left = vec![];
        kv.scan(|k, v| left.push((k.to_vec(), v.to_vec()))).unwrap();
        assert_eq!(left.len(), kept - 1);
        let mut buf = vec![];
        record::encode(&jobs[1], &mut buf).unwrap();
        assert_eq!(left[0], (record::key(&jobs[1].id).to_vec(), buf));
    }
}
