//! Idempotency keys: `ADDJOB ... IDEMPOTENCY key` (and `AddJob::
//! idempotency_key` over QUIC). A second add with the same key to the same
//! queue, while the node remembers the key, adds nothing and answers the
//! first job's id; an add-and-wait waits on that job.
//!
//! What the node remembers, and for how long:
//!
//! - while the job is held here (any state, as a holder's copy too), the
//!   job itself: `JobTable` indexes keyed jobs by the key's digest
//!   ([`KeyDigest`]: queue and key, so per queue and per tenant), and the
//!   key travels with the job to its other holders and into its record;
//! - once it is gone (acked, deleted, expired, cancelled), a tombstone
//!   (digest → id) until the job's creation plus its window (the add's
//!   `IDEMPOTENCY-WINDOW`, else the node's `idempotency-window`), kept in
//!   the store as a record of its own, so a late retry of the client
//!   still gets the id after an ack or a restart.
//!
//! So a key is remembered for at least its window and at least as long as
//! its job lives. An add that was refused or rolled back (`-NOREPL`, a
//! copy whose add was not replicated, an add the store could not write)
//! leaves no tombstone: its client was told it failed. Tombstones are
//! bounded in number (`idempotency-max-tombstones`): past the bound, the
//! one whose window ends first is forgotten early.

use std::collections::BTreeSet;

use hashbrown::HashMap;

use super::journal::RestoreReport;
use super::{Engine, RequestId, Timer};
use crate::api::{AddJob, ErrorCode, Reply};
use crate::job::{Job, JobId, JobState, KeyDigest, Tombstone, UnixMs};

/// Most tombstones one timer firing forgets (the rest at once after, in
/// further rounds of the same `handle_timeout`).
const SWEEP_BATCH: usize = 10_000;

/// The keys of jobs this node no longer holds.
#[derive(Debug, Default)]
pub(super) struct Idem {
    /// digest → (the job's id, when the key is forgotten).
    tombs: HashMap<KeyDigest, (JobId, UnixMs)>,
    /// The same, by the end of their window (the sweep's order, and which
    /// to forget first past the bound).
    order: BTreeSet<(UnixMs, KeyDigest)>,
    /// When the `Tombstones` timer is armed.
    sweep_at: Option<UnixMs>,
    /// Adds answered as duplicates.
    hits: u64,
    /// Tombstones forgotten before their window ended (the bound).
    dropped_early: u64,
}

impl Idem {
    /// The tombstone of `digest`, if the node keeps one.
    pub fn tomb(&self, digest: &KeyDigest) -> Option<Tombstone> {
        self.tombs.get(digest).map(|&(id, expires_at)| Tombstone {
            digest: *digest,
            id,
            expires_at,
        })
    }
}

/// Figures of the idempotency index, for INFO.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IdemStats {
    /// Jobs held that carry a key.
    pub keyed_jobs: usize,
    /// Keys remembered after their jobs.
    pub tombstones: usize,
    /// Adds answered with an earlier job's id.
    pub hits: u64,
    /// Tombstones forgotten early because of `idempotency-max-tombstones`.
    pub dropped_early: u64,
}

impl Engine {
    pub fn idem_stats(&self) -> IdemStats {
        IdemStats {
            keyed_jobs: self.jobs.keyed(),
            tombstones: self.idem.tombs.len(),
            hits: self.idem.hits,
            dropped_early: self.idem.dropped_early,
        }
    }

    /// The job an add of `key` to `queue` would duplicate: one held here,
    /// or one whose tombstone is still in its window.
    pub(super) fn idem_lookup(&self, now: UnixMs, queue: &str, key: &str) -> Option<JobId> {
        let digest = KeyDigest::of(queue, key);
        let held = self.jobs.by_key(&digest);
        let gone = self
            .idem
            .tombs
            .get(&digest)
            .filter(|(_, until)| *until > now)
            .map(|(id, _)| *id);
        // Both (two jobs with one key met here): the older one's id.
        match (held, gone) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Answers `a` as a duplicate if its key names a job the node
    /// remembers; `false` if the add must go on. The key is checked first.
    pub(super) fn add_deduped(&mut self, now: UnixMs, req: RequestId, a: &AddJob) -> bool {
        let Some(key) = a.idempotency_key.as_deref() else {
            return false;
        };
        if let Err(e) = wasque_sdk::proto::check_idempotency_key(key) {
            self.reply(req, Reply::error(ErrorCode::Err, e));
            return true;
        }
        if let Some(Err(e)) = a
            .idempotency_window_secs
            .map(|s| crate::api::bounds::secs("idempotency window", s))
        {
            self.reply(req, Reply::error(ErrorCode::Err, e));
            return true;
        }
        // A wait out of range is refused by `check_add`, as without a key.
        if a.wait_ms
            .is_some_and(|ms| crate::api::bounds::timeout_ms("wait", ms).is_err())
        {
            return false;
        }
        let Some(id) = self.idem_lookup(now, &a.queue, key) else {
            return false;
        };
        self.idem.hits += 1;
        tracing::debug!(job = %id, queue = %a.queue, "add answered by its idempotency key");
        let wait = a.wait_ms.map(|ms| (ms, a.ack_on_result));
        let Some(job) = self.jobs.get(&id) else {
            let reply = match wait {
                None => Reply::Duplicate(id),
                Some(_) => Reply::error(
                    ErrorCode::NoJob,
                    format!(
                        "job {id} was added with this idempotency key and is gone (acknowledged, deleted or expired): its result is not kept"
                    ),
                ),
            };
            self.reply(req, reply);
            return true;
        };
        // The first add still waits for its copies: this one gets the
        // same answer when it comes.
        if job.state == JobState::WaitRepl
            && let Some(p) = self.cluster.repl.get_mut(&id)
        {
            p.also.push((req, wait));
            return true;
        }
        match wait {
            Some((ms, ack)) if job.opens_with(a.asynckey.as_deref()) => {
                self.wait(now, req, id, ms.max(1), ack, true);
            }
            _ => {
                // Answered: from now on the job must last (a `run` kept
                // out of the store is written).
                self.journal_promise(&id);
                self.reply(req, Reply::Duplicate(id));
            }
        }
        true
    }

    /// A job added with a key left this node for good (acked, deleted,
    /// expired, cancelled): its key is remembered until the window ends.
    pub(super) fn idem_forgotten(&mut self, now: UnixMs, job: &Job) {
        let Some(digest) = job.key_digest() else {
            return;
        };
        let window = job
            .idempotency_window_ms()
            .unwrap_or(self.cfg.idempotency_window_ms);
        let until = job.created_at.saturating_add(window);
        if until <= now || self.cfg.idempotency_max_tombstones == 0 {
            return;
        }
        if let Some(&(held, held_until)) = self.idem.tombs.get(&digest) {
            // Two jobs with one key (see `JobTable::keys`): the older
            // job's id stays the answer.
            if held_until > now && held < job.id {
                return;
            }
            self.idem.order.remove(&(held_until, digest));
        }
        self.keep_tomb(digest, job.id, until, true);
        self.arm_sweep();
    }

    /// Keeps a tombstone (`write`: and has the store write it), forgetting
    /// the first to end past the bound.
    fn keep_tomb(&mut self, digest: KeyDigest, id: JobId, until: UnixMs, write: bool) {
        self.idem.tombs.insert(digest, (id, until));
        self.idem.order.insert((until, digest));
        if write {
            self.journal_tomb(digest);
        }
        while self.idem.tombs.len() > self.cfg.idempotency_max_tombstones {
            let Some((_, first)) = self.idem.order.pop_first() else {
                break;
            };
            self.idem.tombs.remove(&first);
            self.idem.dropped_early += 1;
            self.journal_tomb(first);
        }
    }

    /// A tombstone read back at start: kept if its window is open, else
    /// deleted from the store.
    pub fn restore_tombstone(&mut self, now: UnixMs, t: Tombstone, rep: &mut RestoreReport) {
        if t.expires_at <= now || self.cfg.idempotency_max_tombstones == 0 {
            self.journal_tomb(t.digest);
            return;
        }
        if let Some(&(held, held_until)) = self.idem.tombs.get(&t.digest) {
            self.idem.order.remove(&(held_until, t.digest));
            if held < t.id {
                self.idem.order.insert((held_until, t.digest));
                return;
            }
        }
        self.keep_tomb(t.digest, t.id, t.expires_at, false);
        self.arm_sweep();
        rep.tombstones += 1;
    }

    /// Arms the sweep at the first window's end.
    fn arm_sweep(&mut self) {
        let Some(&(first, _)) = self.idem.order.first() else {
            return;
        };
        if let Some(at) = self.idem.sweep_at {
            if at <= first {
                return;
            }
            self.timers.cancel(at, Timer::Tombstones);
        }
        self.idem.sweep_at = Some(first);
        self.timers.set(first, Timer::Tombstones);
    }

    /// The `Tombstones` timer: forgets the keys whose window ended.
    pub(super) fn sweep_tombstones(&mut self, now: UnixMs) {
        self.idem.sweep_at = None;
        for _ in 0..SWEEP_BATCH {
            let Some(&(until, digest)) = self.idem.order.first() else {
                break;
            };
            if until > now {
                break;
            }
            self.idem.order.pop_first();
            self.idem.tombs.remove(&digest);
            self.journal_tomb(digest);
        }
        self.arm_sweep();
    }

    /// DEBUG FLUSHALL: every tombstone is forgotten too.
    pub(super) fn idem_flush(&mut self) {
        if let Some(at) = self.idem.sweep_at.take() {
            self.timers.cancel(at, Timer::Tombstones);
        }
        self.idem.order.clear();
        let digests: Vec<KeyDigest> = self.idem.tombs.drain().map(|(d, _)| d).collect();
        for d in digests {
            self.journal_tomb(d);
        }
    }
}
