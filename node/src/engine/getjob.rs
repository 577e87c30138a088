//! Queueing plain jobs and handing them to external workers: Disque's
//! ENQUEUE/DEQUEUE procedures, GETJOB, and the GETJOB clients blocked on
//! empty queues.
//!
//! Blocked clients are served first come, first served, by the enqueue
//! itself: whatever puts a plain job in a queue (ADDJOB, a delay ending, a
//! retry, NACK, ENQUEUE, PAUSE clearing an output pause) calls
//! [`Engine::serve_blocked`], which hands ready jobs to the oldest blocked
//! clients of that queue. Nothing polls.

use super::{Engine, RequestId, Timer};
use crate::api::{ErrorCode, GetJob, JobEntry, Reply};
use crate::job::{JobId, JobState, UnixMs};
use crate::queue::ReadyKey;

/// A GETJOB waiting for a job.
#[derive(Clone, Debug)]
pub(super) struct BlockedGet {
    pub queues: Vec<String>,
    pub withcounters: bool,
    pub deadline: Option<UnixMs>,
}

/// Why a job is being queued: decides which Disque counter moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cause {
    /// Its first time in the queue (add, or its delay ended).
    First,
    /// Again without a NACK (retry timer, ENQUEUE): an additional delivery.
    Again,
    /// A worker's NACK.
    Nack,
}

impl Engine {
    /// Disque's ENQUEUE procedure: puts an active job in its queue's ready
    /// order. Refused for a job already queued, finished, running on an
    /// executor, or delivered once with RETRY 0 (at most once). Returns
    /// whether the job was queued.
    pub(super) fn enqueue(&mut self, now: UnixMs, id: JobId, cause: Cause) -> bool {
        if self.jobs.get(&id).is_some_and(|j| j.awaits_deps()) && self.after_arrived(now, id) {
            return false;
        }
        let Some(job) = self.jobs.get_mut(&id) else {
            return false;
        };
        let delivered = job.counters.attempts > 0;
        if job.state != JobState::Active
            || self.executing.contains(&id)
            || (job.retry_ms == 0 && delivered)
        {
            return false;
        }
        if let Some(t) = job.take_requeue_at() {
            self.timers.cancel(t, Timer::Requeue(id));
        }
        if job.ready_at > now {
            // Queued before its delay ended (ENQUEUE): the delay is over.
            self.timers.cancel(job.ready_at, Timer::Ready(id));
            job.ready_at = now;
        }
        job.state = JobState::Queued;
        job.queued_at = now;
        match cause {
            Cause::First => {}
            Cause::Again => job.counters.additional_deliveries += 1,
            Cause::Nack => job.counters.nacks += 1,
        }
        let (wasm, key) = (job.is_wasm(), ReadyKey::new(job.priority, id));
        if wasm && !self.module_ready_for(now, id) {
            // Queued, but waits for its module to arrive from a peer.
            self.journal_put(&id);
            return true;
        }
        // The queue's name is borrowed from the job, not cloned: a clone
        // and its drop are two atomic operations on every add, and each
        // makes the CPU wait for the job's fresh stores (benches/README.md,
        // RESP, session 24). Cloned only when a client waits to be served.
        let Some(job) = self.jobs.get(&id) else {
            return false;
        };
        let waiting = self.queues.push(&job.queue, key, wasm, now);
        let serve = (waiting && !wasm).then(|| job.queue.clone());
        self.journal_put(&id);
        if let Some(queue) = serve {
            self.serve_blocked(now, &queue);
        }
        true
    }

    /// Disque's DEQUEUE procedure: takes a queued plain job out of its
    /// queue; it becomes active and is queued again after its retry time
    /// unless acknowledged. Returns whether it was queued.
    pub(super) fn dequeue(&mut self, now: UnixMs, id: JobId) -> bool {
        let Some(job) = self.jobs.get_mut(&id) else {
            return false;
        };
        if job.state != JobState::Queued || job.is_wasm() {
            return false;
        }
        let key = ReadyKey::new(job.priority, id);
        job.state = JobState::Active;
        let queue = job.queue.clone();
        self.queues.remove(&queue, key, false);
        self.arm_requeue(now, id);
        true
    }

    /// (Re)starts the retry timer of an active plain job.
    pub(super) fn arm_requeue(&mut self, now: UnixMs, id: JobId) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if let Some(t) = job.take_requeue_at() {
            self.timers.cancel(t, Timer::Requeue(id));
        }
        if job.retry_ms > 0 && !job.is_wasm() {
            let at = now.saturating_add(job.retry_ms);
            job.set_requeue_at(Some(at));
            self.timers.set(at, Timer::Requeue(id));
        }
        self.journal_put(&id);
    }

    /// Marks a job just taken from a ready order as delivered to a worker.
    fn deliver(&mut self, now: UnixMs, id: JobId, withcounters: bool) -> Option<JobEntry> {
        let job = self.jobs.get_mut(&id)?;
        job.state = JobState::Active;
        job.counters.attempts += 1;
        Self::count_attempt(job);
        tracing::debug!(job = %id, attempts = job.counters.attempts, "delivered");
        if self.cfg.events {
            self.effects
                .push_back(super::Effect::Event(crate::api::JobEvent {
                    id,
                    queue: job.queue.clone(),
                    kind: crate::api::JobEventKind::Started {
                        attempt: job.counters.attempts,
                        ready_since: super::inspect::ready_since(job),
                    },
                }));
        }
        let entry = JobEntry {
            queue: String::from(&*job.queue),
            id,
            body: bytes::Bytes::copy_from_slice(&job.body),
            counters: withcounters
                .then_some((job.counters.nacks, job.counters.additional_deliveries)),
        };
        self.arm_requeue(now, id);
        Some(entry)
    }

    /// GETJOB: jobs from the first queues that have some, left to right,
    /// round after round until `count`; else nil (NOHANG) or block.
    pub(super) fn get_job(&mut self, now: UnixMs, req: RequestId, g: GetJob) {
        if g.queues.is_empty() || g.count == 0 {
            self.reply(req, Reply::error(ErrorCode::Err, "syntax error"));
            return;
        }
        let count = g.count as usize;
        let mut out = Vec::with_capacity(count.min(64));
        'rounds: loop {
            let before = out.len();
            for q in &g.queues {
                if out.len() == count {
                    break 'rounds;
                }
                let Some(id) = self.queues.pop_plain(q, now) else {
                    continue;
                };
                if let Some(entry) = self.deliver(now, id, g.withcounters) {
                    out.push(entry);
                }
            }
            if out.len() == before {
                break;
            }
        }
        if !out.is_empty() {
            self.reply(req, Reply::Jobs(out));
        } else if g.nohang {
            self.reply(req, Reply::Nil);
        } else if self.cluster.leaving {
            // Disque: a leaving node does not block a worker that would
            // wait for jobs it no longer takes; the client moves on.
            self.reply(
                req,
                Reply::error(
                    crate::api::ErrorCode::Leaving,
                    "GETJOB while the node is leaving: no job queued here, try another node",
                ),
            );
        } else {
            self.block(now, req, g);
        }
    }

    fn block(&mut self, now: UnixMs, req: RequestId, g: GetJob) {
        let mut queues: Vec<String> = Vec::with_capacity(g.queues.len());
        for q in g.queues {
            if !queues.contains(&q) {
                self.queues.entry(&q, now).blocked.push_back(req.0);
                queues.push(q);
            }
        }
        let deadline = (g.timeout_ms > 0).then(|| now.saturating_add(g.timeout_ms));
        if let Some(d) = deadline {
            self.timers.set(d, Timer::WaitTimeout(req));
        }
        // Federation: peers may have jobs for these queues (asked at once,
        // whatever other asks went out just before).
        let ask = !queues.is_empty();
        self.blocked.insert(
            req,
            BlockedGet {
                queues,
                withcounters: g.withcounters,
                deadline,
            },
        );
        if ask {
            self.cluster.last_ask = 0;
            self.ask_for_work(now);
        }
    }

    /// Forgets a blocked GETJOB (answered, timed out or gone); returns it.
    pub(super) fn unblock(&mut self, now: UnixMs, req: RequestId) -> Option<BlockedGet> {
        let b = self.blocked.remove(&req)?;
        for name in &b.queues {
            if let Some(q) = self.queues.get_mut(name) {
                q.blocked.retain(|r| *r != req.0);
                self.queues.note_if_idle(name, now);
            }
        }
        if let Some(d) = b.deadline {
            self.timers.cancel(d, Timer::WaitTimeout(req));
        }
        Some(b)
    }

    /// A blocked GETJOB's timeout: it gets nil. Returns whether `req` was one.
    pub(super) fn blocked_timeout(&mut self, now: UnixMs, req: RequestId) -> bool {
        if self.unblock(now, req).is_some() {
            self.reply(req, Reply::Nil);
            true
        } else {
            false
        }
    }

    /// Hands ready plain jobs of `queue` to its blocked clients, oldest
    /// client first, one job each (as Disque does).
    pub(super) fn serve_blocked(&mut self, now: UnixMs, queue: &str) {
        loop {
            let Some(q) = self.queues.get(queue) else {
                return;
            };
            if q.pause.output || q.plain.is_empty() {
                return;
            }
            let Some(&req) = q.blocked.front() else {
                return;
            };
            let req = RequestId(req);
            let Some(b) = self.unblock(now, req) else {
                // Not a blocked GETJOB any more: drop the stale entry.
                if let Some(q) = self.queues.get_mut(queue) {
                    q.blocked.pop_front();
                }
                continue;
            };
            let Some(id) = self.queues.pop_plain(queue, now) else {
                return;
            };
            if let Some(entry) = self.deliver(now, id, b.withcounters) {
                self.reply(req, Reply::Jobs(vec![entry]));
            }
        }
    }

    /// Blocked GETJOB clients right now.
    pub fn blocked_clients(&self) -> usize {
        self.blocked.len()
    }
}
