//! What changed in the engine's job state, for the store to make durable.
//!
//! Every state change of a job comes out of the engine as an
//! [`super::Effect::Persist`] carrying a [`Change`], in the order the
//! changes happened, before any reply or execution that depends on it.
//! The runtime writes them to the store and holds back the effects that
//! followed until the store has them (see `store::Gate`). The engine
//! itself stays sans-IO: it only says what changed.
//!
//! Inside the engine, call `self.journal_put(&id)` after changing a job
//! held in `self.jobs` (added, dequeued, finished, re-queued, counters
//! moved) and `self.journal_remove(id)` after forgetting one (acked,
//! deleted, expired). Both do nothing when journaling is off
//! (`EngineConfig::journal`, i.e. `appendonly no`).
//!
//! Restoring is [`super::Engine::restore`]: it takes the jobs the store
//! read back and rebuilds queues, timers and module counts from them, with
//! the unclean-stop rules of DESIGN.md applied (see [`RestoreReport`]).

use crate::job::{Job, JobId, KeyDigest, Tombstone};

/// One change to make durable.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// The job as it is now (added or changed): a full snapshot, so the
    /// store needs no read-modify-write and the last one written wins.
    Put(Box<Job>),
    /// The job is gone (acked, deleted, expired, dropped).
    Remove(JobId),
    /// An idempotency key outlives its job (`engine/idem.rs`).
    PutTomb(Tombstone),
    /// The key's window ended: forgotten.
    RemoveTomb(KeyDigest),
}

impl Change {
    /// The store key the change writes: a job's id, or a tombstone's
    /// digest (never equal to a job id: see [`KeyDigest`]).
    pub fn key(&self) -> [u8; 16] {
        match self {
            Change::Put(job) => *job.id.0.as_bytes(),
            Change::Remove(id) => *id.0.as_bytes(),
            Change::PutTomb(t) => t.digest.0,
            Change::RemoveTomb(d) => d.0,
        }
    }

    /// Whether this change hands an at-most-once (`RETRY 0`) job out (to an
    /// executor or a worker): it must reach disk before the hand-out, so a
    /// crash can never deliver the job a second time.
    pub fn is_at_most_once_dequeue(&self) -> bool {
        matches!(self, Change::Put(job)
            if job.retry_ms == 0 && job.state == crate::job::JobState::Active)
    }
}

/// What [`super::Engine::restore`] did with the jobs it was given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Jobs held again, in every state.
    pub restored: usize,
    /// Jobs queued and ready now (delays whose time came included).
    pub ready: usize,
    /// Jobs still delayed.
    pub delayed: usize,
    /// Jobs whose TTL passed while the node was down: gone.
    pub expired: usize,
    /// Wasm jobs that were running in this node's executor: queued again
    /// at once, their attempt counted.
    pub requeued_running: usize,
    /// At-most-once (`RETRY 0`) Wasm jobs that were running: dropped, never
    /// run twice.
    pub dropped_at_most_once: usize,
    /// Plain jobs delivered to external workers: kept active with their
    /// stored re-queue time.
    pub delivered: usize,
    /// Finished Wasm jobs waiting for their ack.
    pub finished: usize,
    /// Idempotency keys remembered after their jobs (tombstones) whose
    /// window is still open.
    pub tombstones: usize,
}

/// The engine's record of jobs changed since the last drain.
#[derive(Debug, Default)]
pub(super) struct Journal {
    pub on: bool,
    dirty: hashbrown::HashSet<JobId>,
    /// Jobs not written until something is promised about them: an add
    /// that waits for its result and acks it (`run`) answers only once
    /// the job is finished and gone, so until its wait ends early (or the
    /// job leaves the node) a crash loses nothing anyone was told about.
    /// Such a job costs the store nothing: no put of its body at the add,
    /// none at its result, no delete at its ack.
    deferred: hashbrown::HashSet<JobId>,
    /// Idempotency tombstones made or forgotten since the last drain.
    tombs: hashbrown::HashSet<KeyDigest>,
}

impl super::Engine {
    /// Notes that job `id` changed (or was removed): its new state goes to
    /// the store with the next drain of effects. Call it after any change
    /// to a job's stored fields (see [`crate::store::record`]); cheap, and
    /// several calls in one round make one write.
    pub(super) fn journal_put(&mut self, id: &JobId) {
        if self.journal.on && !self.journal.deferred.contains(id) {
            self.journal.dirty.insert(*id);
        }
    }

    /// Notes that job `id` is gone (acked, deleted, expired).
    pub(super) fn journal_remove(&mut self, id: &JobId) {
        if !self.journal.deferred.remove(id) {
            self.journal_put(id);
        }
    }

    /// Keeps job `id` (just added, nothing written yet) out of the store
    /// until [`Self::journal_promise`] (see [`Journal::deferred`]).
    pub(super) fn journal_defer(&mut self, id: &JobId) {
        if self.journal.on {
            self.journal.deferred.insert(*id);
        }
    }

    /// Something is now promised about job `id` (its add answered before
    /// it finished, or it left for a peer): a deferred job is written.
    pub(super) fn journal_promise(&mut self, id: &JobId) {
        if self.journal.deferred.remove(id) {
            self.journal_put(id);
        }
    }

    /// Notes that the tombstone of `digest` was made or forgotten: written
    /// with the next drain, whatever became of its job (a deferred job's
    /// key is remembered too once it is gone: its add was answered).
    pub(super) fn journal_tomb(&mut self, digest: KeyDigest) {
        if self.journal.on {
            self.journal.tombs.insert(digest);
        }
    }

    /// Turns the jobs changed since the last drain into `Effect::Persist`,
    /// ahead of every other waiting effect (replies and hand-outs depend on
    /// them, never the other way round).
    pub(super) fn flush_journal(&mut self) {
        if !self.journal.tombs.is_empty() {
            let tombs = std::mem::take(&mut self.journal.tombs);
            for d in tombs {
                let change = match self.idem.tomb(&d) {
                    Some(t) => Change::PutTomb(t),
                    None => Change::RemoveTomb(d),
                };
                self.effects.push_front(super::Effect::Persist(change));
            }
        }
        if self.journal.dirty.is_empty() {
            return;
        }
        let dirty = std::mem::take(&mut self.journal.dirty);
        for id in dirty {
            let change = match self.jobs.get(&id) {
                Some(job) => Change::Put(Box::new(job.clone())),
                None => Change::Remove(id),
            };
            self.effects.push_front(super::Effect::Persist(change));
        }
    }
}
