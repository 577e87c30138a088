//! What the node keeps on disk under its data dir.
//!
//! - The data dir itself, held by one process at a time through an
//!   exclusive lock on `DATA_DIR/LOCK`, and the node's persistent id
//!   (`DATA_DIR/node-id`): [`DataDir`].
//! - The job store, `DATA_DIR/store/` (with `appendonly yes`, the
//!   default): one record per live job with its state, counters, times
//!   (wall-clock unix ms) and unacknowledged result ([`record`]), in an
//!   embedded store ([`kv`], fjall). Acked, deleted and expired jobs are
//!   deleted from it, so its size follows the live jobs (compaction, and
//!   a [`rewrite`] into `DATA_DIR/store.new` swapped in when little is
//!   live).
//! - Modules and their compiled artifacts live under `modules/` and
//!   `artifacts/` (owned by [`crate::exec`]), the TLS identity under `tls/`
//!   (owned by [`crate::net::identity`]).
//!
//! [`JobStore`] is the runtime's side of the job store: it opens and reads
//! the store at start, takes the engine's [`Change`]s
//! (`Effect::Persist`), writes them itself when the writer thread is idle
//! or sends them to it ([`writer`], group commit), and holds back the
//! replies and hand-outs that depend on them ([`gate`]) until they are
//! written (and synced, with `appendfsync always`).

mod data_dir;
mod gate;
mod journal_file;
pub mod kv;
pub mod record;
mod recover;
mod rewrite;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc::UnboundedSender;

pub use data_dir::{DataDir, DataDirError};
pub use gate::Gate;
pub use kv::{KvError, OpenReport};
pub use recover::open_and_restore;
pub use writer::{Batch, WriterStats, Written};

use crate::api::{ErrorCode, Reply};
use crate::config::AppendFsync;
use crate::engine::{Change, Effect};
use crate::job::JobId;
use kv::Kv;
use writer::Writer;

/// Jobs decoded per chunk handed from the reader thread at start.
const LOAD_CHUNK: usize = 4096;

/// The job store's folder inside the data dir.
pub const STORE_DIR: &str = "store";

/// Why the job store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Kv(#[from] KvError),
    #[error("cannot start the job store's writer thread: {0}")]
    Thread(std::io::Error),
}

/// What was read back at start.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub path: PathBuf,
    /// Records read.
    pub records: u64,
    /// Records that could not be decoded: (key in hex, why). Left on disk
    /// untouched, logged.
    pub undecodable: Vec<(String, String)>,
    pub open: OpenReport,
    /// Opening the store (journal replay included).
    pub open_ms: u64,
    /// Opening and reading every record (and restoring it).
    pub elapsed_ms: u64,
    pub disk_bytes: u64,
}

/// The runtime's side of the job store.
pub struct JobStore {
    writer: Writer,
    gate: Gate<Effect>,
    /// Changes of the current round, not yet handed to the writer.
    open: Vec<Change>,
    /// The current round hands out an at-most-once job: sync before.
    open_sync: bool,
    /// Jobs the node holds, as of the last round.
    live: usize,
}

/// What a finished write lets go.
#[derive(Debug, Default)]
pub struct Released {
    /// Effects to carry out now, in order.
    pub effects: Vec<Effect>,
    /// Jobs whose add could not be written: the engine must forget them
    /// (their `ADDJOB` was answered with an error).
    pub failed_adds: Vec<JobId>,
}

impl JobStore {
    /// Opens the job store under `data_dir`, hands every record read back
    /// (a job, or an idempotency tombstone) to `on_record` (record by
    /// record: no second copy of the jobs in memory),
    /// and starts the writer thread, which reports finished batches to
    /// `written`. `expected` is first called with the store's estimate of
    /// its record count.
    pub fn open(
        data_dir: &Path,
        mode: AppendFsync,
        written: UnboundedSender<Written>,
        expected: impl FnOnce(usize),
        mut on_record: impl FnMut(record::Record),
    ) -> Result<(JobStore, LoadReport), StoreError> {
        let t0 = Instant::now();
        let path = data_dir.join(STORE_DIR);
        rewrite::remove_leftover(&path).map_err(|e| KvError::Io {
            path: rewrite::fresh_path(&path),
            message: format!("cannot delete what an interrupted rewrite left: {e}"),
        })?;
        let (kv, open) = Kv::open(&path)?;
        let open_ms = t0.elapsed().as_millis() as u64;
        expected(kv.approximate_len());
        // Two stages on two threads: this one restores jobs while a scoped
        // reader thread scans and decodes the next chunk.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<record::Record>>(4);
        let kv_ref = &kv;
        let (records, undecodable) = std::thread::scope(|scope| {
            let reader = scope.spawn(move || {
                let mut undecodable = Vec::new();
                let mut chunk = Vec::with_capacity(LOAD_CHUNK);
                let records = kv_ref.scan(|k, v| match record::decode_record(k, v) {
                    Ok(rec) => {
                        chunk.push(rec);
                        if chunk.len() == LOAD_CHUNK {
                            let full =
                                std::mem::replace(&mut chunk, Vec::with_capacity(LOAD_CHUNK));
                            // The receiver only goes away on a panic.
                            let _ = tx.send(full);
                        }
                    }
                    Err(e) => {
                        if undecodable.len() < 1000 {
                            undecodable.push((hex::encode(k), e.to_string()));
                        }
                    }
                });
                if !chunk.is_empty() {
                    let _ = tx.send(chunk);
                }
                (records, undecodable)
            });
            for chunk in rx {
                for rec in chunk {
                    on_record(rec);
                }
            }
            match reader.join() {
                Ok((records, undecodable)) => records.map(|n| (n, undecodable)),
                Err(_) => Err(KvError::Open {
                    path: path.clone(),
                    message: "the store reader thread panicked".into(),
                }),
            }
        })?;
        let report = LoadReport {
            path,
            records,
            undecodable,
            open,
            open_ms,
            elapsed_ms: t0.elapsed().as_millis() as u64,
            disk_bytes: kv.disk_bytes(),
        };
        let writer =
            Writer::spawn(kv, records as usize, mode, written).map_err(StoreError::Thread)?;
        Ok((
            JobStore {
                writer,
                gate: Gate::default(),
                open: Vec::new(),
                open_sync: false,
                live: records as usize,
            },
            report,
        ))
    }

    /// Takes one effect of the engine: a change goes into the open batch;
    /// a reply or an at-most-once run waits behind the changes before it.
    /// Returns the effect if it may be carried out now.
    ///
    /// Any other run starts at once, before its job is written: nothing was
    /// promised yet (the add's reply waits), and a job running when the
    /// node dies runs again after a restart anyway. Its end then often
    /// lands in the same group commit as its start, which the writer folds
    /// into one record (or none, when a `run` request acks it at once).
    pub fn admit(&mut self, effect: Effect) -> Option<Effect> {
        match effect {
            Effect::Persist(change) => {
                self.open_sync |= change.is_at_most_once_dequeue();
                self.open.push(change);
                None
            }
            Effect::Run(run) if !run.job.at_most_once() => Some(Effect::Run(run)),
            e @ (Effect::Reply { .. } | Effect::Run(_)) => {
                match self.gate.depends_on(!self.open.is_empty()) {
                    Some(batch) => {
                        self.gate.hold(batch, e);
                        None
                    }
                    None => Some(e),
                }
            }
            other => Some(other),
        }
    }

    /// Ends a round of the driver: with `here`, writes the open batch on
    /// the calling thread if it may ([`JobStore::may_write_here`] and
    /// `writer.rs`), else hands it to the writer thread. A batch written
    /// here is answered at once: hand the answer to [`JobStore::written`]
    /// as if the writer had sent it. `live` is how many jobs the node
    /// holds now (the writer compacts the store when deletes outnumber
    /// them).
    pub fn end_round(&mut self, live: usize, here: bool) -> Option<Written> {
        self.live = live;
        if self.open.is_empty() {
            return None;
        }
        let here = here && self.may_write_here();
        let seq = self.gate.next_batch();
        let mut batch = Batch {
            seq,
            changes: std::mem::take(&mut self.open),
            sync: std::mem::take(&mut self.open_sync),
            live,
        };
        if here {
            match self.writer.write_here(batch) {
                Ok(written) => return Some(written),
                Err(b) => batch = b,
            }
        }
        if !self.writer.submit(batch) {
            tracing::error!("job store writer is gone; changes are not written");
        }
        None
    }

    /// Whether the open round has changes to write.
    pub fn round_is_open(&self) -> bool {
        !self.open.is_empty()
    }

    /// Whether [`JobStore::end_round`] may write the open round here: it
    /// needs no sync, and the thread holds no earlier batch that it would
    /// overtake. (The writer may still hand it to the thread.)
    pub fn may_write_here(&self) -> bool {
        !self.open_sync && self.writer.may_write_here() && self.gate.in_flight() == 0
    }

    /// The writer finished (or failed) every batch up to `w.seq`: what
    /// that lets go is added to `out` (the caller's, reused round after
    /// round rather than allocated for each).
    pub fn written(&mut self, w: Written, out: &mut Released) {
        for (_, effect) in self.gate.release(w.seq) {
            match (&w.result, effect) {
                (
                    Err(why),
                    Effect::Reply {
                        to,
                        reply: Reply::JobAdded(id),
                    },
                ) => {
                    out.failed_adds.push(id);
                    out.effects.push(Effect::Reply {
                        to,
                        reply: Reply::error(ErrorCode::Err, format!("job not added: {why}")),
                    });
                }
                // A repeated add (idempotency key) whose round could not be
                // written: the client retries; the job it named is not
                // forgotten for it (its own add, if in this round, is).
                (
                    Err(why),
                    Effect::Reply {
                        to,
                        reply: Reply::Duplicate(_),
                    },
                ) => {
                    out.effects.push(Effect::Reply {
                        to,
                        reply: Reply::error(ErrorCode::Err, format!("job not added: {why}")),
                    });
                }
                (_, effect) => out.effects.push(effect),
            }
        }
    }

    /// Effects waiting for the writer.
    pub fn held(&self) -> usize {
        self.gate.held()
    }

    pub fn stats(&self) -> Arc<WriterStats> {
        self.writer.stats.clone()
    }

    /// Stops taking changes: the writer thread writes what is left, syncs
    /// and closes the store. Join the handle to wait for it.
    pub fn finish(mut self) -> Option<std::thread::JoinHandle<()>> {
        // Written either way; nothing waits for the answer any more.
        let _ = self.end_round(self.live, false);
        self.writer.finish()
    }
}
