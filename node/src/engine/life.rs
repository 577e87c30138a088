//! A job's second chances and its end: retry policies (attempts, backoff
//! with jitter, the failures retried), NACK with a delay, queue defaults
//! (`QRETRY`), and the dead-letter queues (`DLQ LIST|REQUEUE|PURGE`).
//!
//! A job with a policy counts its attempts in `JobExtra::retry` (runs for
//! Wasm jobs, deliveries for plain jobs), which travels with the job to
//! peers and is stored with it (record format 5). A job out of attempts,
//! or whose failure the policy does not retry, is *buried*: it stays
//! where it is in state `Dead`, out of every ready order and timer (no
//! TTL), holding its last error, and is listed as its queue's
//! `<queue>:dead`. Its other holders are told (`PeerMsg::Life`), so none
//! of them queues it again and each can list it. Jobs without a policy
//! behave as before: Disque's at-least-once, no dead letters.
//!
//! Jitter comes from the engine's seeded generator, never from a clock,
//! so tests with a virtual clock see exact bounds.

use std::collections::BTreeSet;

use hashbrown::HashMap;

use super::getjob::Cause;
use super::{Effect, Engine, PeerMsg, RequestId, Timer};
use crate::api::{Dlq, DlqOp, ErrorCode, Reply};
use crate::job::{
    Backoff, Job, JobId, JobResult, JobState, NodeName, RetryPolicy, RetryStatus, UnixMs,
};
use crate::queue::ReadyKey;

/// Most dead letters one `DLQ LIST` answers.
pub const DLQ_LIST_MAX: u32 = 1000;

/// The dead letters this node holds, by queue, oldest first.
#[derive(Debug, Default)]
pub(super) struct DeadLetters {
    pub by_queue: HashMap<String, BTreeSet<JobId>>,
    /// Queue defaults (`QRETRY`) and when each was set (newest wins
    /// between peers).
    pub defaults: HashMap<String, (RetryPolicy, UnixMs)>,
    /// The jitter's generator state, seeded from the node's seed.
    pub rng: u64,
}

impl DeadLetters {
    fn insert(&mut self, queue: &str, id: JobId) {
        self.by_queue
            .entry(queue.to_string())
            .or_default()
            .insert(id);
    }

    fn remove(&mut self, queue: &str, id: &JobId) {
        if let Some(set) = self.by_queue.get_mut(queue) {
            set.remove(id);
            if set.is_empty() {
                self.by_queue.remove(queue);
            }
        }
    }

    fn of(&self, queue: &str) -> Vec<JobId> {
        self.by_queue
            .get(queue)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Dead letters held, every queue.
    pub fn len(&self) -> usize {
        self.by_queue.values().map(BTreeSet::len).sum()
    }
}

/// The words a failed run leaves as `last-error`.
fn run_error(attempt: u32, r: &JobResult) -> String {
    let class = r.error_class.map(|c| c.to_string()).unwrap_or_default();
    if r.message.is_empty() {
        format!("attempt {attempt}: {class}")
    } else {
        format!("attempt {attempt}: {class}: {}", r.message)
    }
}

impl Engine {
    /// The policy a job added with `asked` gets: its own, else its
    /// queue's default, else none.
    pub(super) fn retry_for(
        &self,
        queue: &str,
        asked: Option<&RetryPolicy>,
    ) -> Option<RetryStatus> {
        let policy = asked
            .cloned()
            .or_else(|| self.dead.defaults.get(queue).map(|(p, _)| p.clone()))?;
        Some(RetryStatus {
            policy,
            attempts: 0,
            last_error: String::new(),
        })
    }

    /// The wait before the attempt after `failed` ones: the policy's delay,
    /// and for exponential backoff a random point in its upper half.
    pub(super) fn backoff_ms(&mut self, policy: &RetryPolicy, failed: u32) -> u64 {
        let d = policy.delay_ms(failed);
        match policy.backoff {
            Backoff::Fixed => d,
            Backoff::Exp => {
                let half = d / 2;
                half + self.random_u64() % (d - half + 1)
            }
        }
    }

    /// Counts one attempt (a run started or a delivery) against the
    /// job's policy.
    pub(super) fn count_attempt(job: &mut Job) {
        if let Some(r) = job.retry_mut() {
            r.attempts = r.attempts.saturating_add(1);
        }
    }

    /// A Wasm run of a job with a policy failed. Either it is retried
    /// after its backoff (true: the job is active again, waiting), or it
    /// is buried (true), or the job has no policy (false: it fails as
    /// before). `job` is active with this run's attempt.
    pub(super) fn after_failed_run(&mut self, now: UnixMs, id: JobId, result: &JobResult) -> bool {
        let Some(job) = self.jobs.get_mut(&id) else {
            return false;
        };
        let Some(r) = job.retry_mut() else {
            return false;
        };
        let class = result
            .error_class
            .unwrap_or(crate::job::ErrorClass::Internal);
        r.last_error = run_error(r.attempts, result);
        let again = r.policy.retries(class) && r.attempts < r.policy.max_attempts;
        if !again {
            let why = r.last_error.clone();
            job.result = Some(Box::new(result.clone()));
            self.bury(now, id, why, true);
            return true;
        }
        let (policy, failed) = (r.policy.clone(), r.attempts);
        let wait = self.backoff_ms(&policy, failed);
        tracing::debug!(job = %id, failed, wait, "failed run: retried after its backoff");
        self.retry_later(now, id, wait);
        true
    }

    /// Makes an active job wait `wait_ms` before it is placed again (a
    /// retry's backoff, a NACK's delay). Other holders hear it is in hand
    /// (the job answers their WILLQUEUE meanwhile: `awaiting_retry`).
    fn retry_later(&mut self, now: UnixMs, id: JobId, wait_ms: u64) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if let Some(t) = job.take_requeue_at() {
            self.timers.cancel(t, Timer::Requeue(id));
        }
        if job.ready_at > now {
            self.timers.cancel(job.ready_at, Timer::Ready(id));
        }
        job.state = JobState::Active;
        job.queued_at = now;
        job.ready_at = now.saturating_add(wait_ms.max(1));
        self.timers.set(job.ready_at, Timer::Ready(id));
        self.journal_put(&id);
        if self.cfg.events
            && let Some(job) = self.jobs.get(&id)
        {
            self.effects.push_back(Effect::Event(crate::api::JobEvent {
                id,
                queue: job.queue.clone(),
                kind: crate::api::JobEventKind::Requeued,
            }));
        }
        self.announce_queued(id);
    }

    /// Whether a job about to be queued again (a NACK, its RETRY passing,
    /// its run lost with a node) must be buried instead; buries it if so.
    /// `lost`: the attempt was lost with its node, not given back.
    pub(super) fn bury_if_spent(&mut self, now: UnixMs, id: JobId, why: &str, lost: bool) -> bool {
        let Some(r) = self.jobs.get(&id).and_then(|j| j.retry()) else {
            return false;
        };
        let spent = r.attempts >= r.policy.max_attempts;
        let refused = lost && !r.policy.retries_node_loss();
        if !spent && !refused {
            return false;
        }
        let why = format!("attempt {}: {why}", r.attempts);
        self.bury(now, id, why, true);
        true
    }

    /// Moves a job to its queue's dead-letter queue: state `Dead`, out of
    /// its ready order, timers and module count, waiters answered (an
    /// add-and-wait's ack is not carried out: the dead letter stays), and,
    /// with `tell`, the other holders told.
    pub(super) fn bury(&mut self, now: UnixMs, id: JobId, why: String, tell: bool) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if job.state == JobState::Dead || job.state == JobState::Acked {
            return;
        }
        tracing::debug!(job = %id, why, "dead letter");
        let was = job.state;
        if let Some(t) = job.take_requeue_at() {
            self.timers.cancel(t, Timer::Requeue(id));
        }
        if job.ready_at > job.created_at {
            self.timers.cancel(job.ready_at, Timer::Ready(id));
        }
        self.timers.cancel(job.expires_at, Timer::Expire(id));
        if was == JobState::Queued {
            self.queues
                .remove(&job.queue, ReadyKey::new(job.priority, id), job.is_wasm());
        }
        if !was.is_finished()
            && let Some(m) = job.module()
            && let Some(entry) = self.modules.get_mut(&m)
        {
            entry.jobs = entry.jobs.saturating_sub(1);
        }
        job.state = JobState::Dead;
        if let Some(r) = job.retry_mut() {
            r.last_error = why;
        }
        let queue = job.queue.to_string();
        let status = job.status(now, &self.cfg.node_id);
        let others: Vec<_> = match self.cluster.me {
            Some(me) if tell => job.others(me).collect(),
            _ => Vec::new(),
        };
        let copy = (!others.is_empty()).then(|| Box::new(job.clone()));
        if let Some(at) = self.cluster.will_queue.remove(&id) {
            self.timers.cancel(at, Timer::WillQueue(id));
        }
        self.cluster.lent.remove(&id);
        self.dead.insert(&queue, id);
        self.journal_promise(&id);
        self.journal_put(&id);
        if let Some(copy) = copy {
            for to in others {
                self.send(to, PeerMsg::Life(copy.clone()));
            }
        }
        self.finish_waiters(now, id, status);
        self.part_finished(now, id);
    }

    /// Takes a job out of the dead-letter queue with fresh attempts: it is
    /// active again (its TTL starts over if it ran out meanwhile), and,
    /// with `place`, queued.
    fn revive(&mut self, now: UnixMs, id: JobId, place: bool) -> bool {
        let Some(job) = self.jobs.get_mut(&id) else {
            return false;
        };
        if job.state != JobState::Dead {
            return false;
        }
        let queue = job.queue.to_string();
        job.state = JobState::Active;
        job.result = None;
        job.counters.attempts = 0;
        job.counters.nacks = 0;
        job.counters.additional_deliveries = 0;
        job.ready_at = now;
        job.queued_at = now;
        if let Some(r) = job.retry_mut() {
            r.attempts = 0;
        }
        let ttl = job.expires_at.saturating_sub(job.created_at).max(1000);
        if job.expires_at <= now {
            job.expires_at = now.saturating_add(ttl);
        }
        self.timers.set(job.expires_at, Timer::Expire(id));
        if let Some(m) = job.module()
            && let Some(entry) = self.modules.get_mut(&m)
        {
            entry.jobs += 1;
        }
        self.dead.remove(&queue, &id);
        self.journal_put(&id);
        if place {
            let me = self.cluster.me;
            if let Some(job) = self.jobs.get(&id)
                && let Some(me) = me
            {
                let others: Vec<_> = job.others(me).collect();
                let copy = Box::new(job.clone());
                for to in others {
                    self.send(to, PeerMsg::Life(copy.clone()));
                }
            }
            self.place(now, id, Cause::First);
        } else {
            // A holder's copy: queued by this node only if the one that
            // revived it neither runs nor acks it in time.
            self.arm_holder_requeue(now, id);
        }
        true
    }

    /// A peer moved a job into or out of its dead-letter queue.
    pub(super) fn on_life(&mut self, now: UnixMs, job: Job) {
        let id = job.id;
        let Some(held) = self.jobs.get_mut(&id) else {
            return;
        };
        if held.state == JobState::Acked {
            return;
        }
        match job.state {
            JobState::Dead => {
                if held.state == JobState::Dead || self.executing.contains(&id) {
                    return;
                }
                let why = job
                    .retry()
                    .map(|r| r.last_error.clone())
                    .unwrap_or_default();
                if let Some(r) = job.retry() {
                    held.extra_mut().retry = Some(r.clone());
                }
                held.result = job.result;
                self.bury(now, id, why, false);
            }
            _ => {
                self.revive(now, id, false);
            }
        }
    }

    /// NACK: put delivered plain jobs back, at once or after a delay (the
    /// given one, else the job's backoff if it has a policy); a job past
    /// its attempts is buried instead.
    pub(super) fn nack_cmd(
        &mut self,
        now: UnixMs,
        req: RequestId,
        ids: Vec<JobId>,
        delay_ms: Option<u64>,
    ) {
        if let Some(d) = delay_ms
            && let Err(e) = crate::api::bounds::timeout_ms("NACK DELAY", d)
        {
            self.reply(req, Reply::error(ErrorCode::Err, e));
            return;
        }
        let mut n = 0;
        for id in ids {
            let Some(job) = self.jobs.get(&id) else {
                continue;
            };
            if job.is_wasm() || job.state != JobState::Active || self.executing.contains(&id) {
                continue;
            }
            if job.retry_ms == 0 && job.counters.attempts > 0 {
                // At most once: never queued again.
                continue;
            }
            let policy = job.retry().map(|r| (r.policy.clone(), r.attempts));
            if self.bury_if_spent(now, id, "nacked", false) {
                n += 1;
                continue;
            }
            let wait = match (delay_ms, policy) {
                (Some(d), _) => d,
                (None, Some((p, failed))) => self.backoff_ms(&p, failed),
                (None, None) => 0,
            };
            if wait == 0 {
                if self.enqueue(now, id, Cause::Nack) {
                    self.announce_queued(id);
                    n += 1;
                }
                continue;
            }
            if let Some(job) = self.jobs.get_mut(&id) {
                job.counters.nacks += 1;
            }
            self.retry_later(now, id, wait);
            n += 1;
        }
        self.reply(req, Reply::Count(n));
    }

    /// DLQ LIST / REQUEUE / PURGE.
    pub(super) fn dlq_cmd(&mut self, now: UnixMs, req: RequestId, d: Dlq) {
        let key = d.key.as_deref();
        let mine: Vec<JobId> = self
            .dead
            .of(&d.queue)
            .into_iter()
            .filter(|id| self.jobs.get(id).is_some_and(|j| j.opens_with(key)))
            .collect();
        let reply = match d.op {
            DlqOp::List { count } => {
                let count = count.clamp(1, DLQ_LIST_MAX) as usize;
                let node = self.cfg.node_id.clone();
                Reply::Statuses(
                    mine.iter()
                        .take(count)
                        .filter_map(|id| self.jobs.get(id))
                        .map(|j| j.status(now, &node))
                        .collect(),
                )
            }
            DlqOp::Requeue { ids } => {
                let pick: Vec<JobId> = if ids.is_empty() {
                    mine
                } else {
                    ids.into_iter().filter(|id| mine.contains(id)).collect()
                };
                let n = pick
                    .into_iter()
                    .filter(|id| self.revive(now, *id, true))
                    .count();
                Reply::Count(n as u64)
            }
            DlqOp::Purge => {
                let mut n = 0;
                for id in mine {
                    self.ack_everywhere(now, id, false);
                    n += 1;
                }
                Reply::Count(n)
            }
        };
        self.reply(req, reply);
    }

    /// Forgets a removed job's place in the dead-letter index.
    pub(super) fn dead_removed(&mut self, job: &Job) {
        if job.state == JobState::Dead {
            self.dead.remove(&job.queue, &job.id);
        }
    }

    /// A dead letter read back from the store.
    pub(super) fn dead_restored(&mut self, job: &Job) {
        self.dead.insert(&job.queue, job.id);
    }

    /// Dead letters this node holds (for INFO and tests).
    pub fn dead_letters(&self) -> usize {
        self.dead.len()
    }

    /// QRETRY: set, clear and report a queue's default retry policy.
    pub(super) fn qretry_cmd(
        &mut self,
        now: UnixMs,
        req: RequestId,
        queue: String,
        set: Option<Option<RetryPolicy>>,
    ) {
        if let Some(p) = &set {
            if let Some(p) = p
                && let Err(e) = p.check()
            {
                self.reply(req, Reply::error(ErrorCode::Err, e));
                return;
            }
            self.set_retry_default(queue.clone(), p.clone(), now);
            let peers: Vec<_> = self.cluster.peers.iter().copied().collect();
            for to in peers {
                self.send(
                    to,
                    PeerMsg::RetryDefault {
                        queue: queue.clone(),
                        policy: p.clone(),
                        set_at: now,
                    },
                );
            }
        }
        let words = self
            .dead
            .defaults
            .get(&queue)
            .map(|(p, _)| p.words())
            .unwrap_or_default();
        self.reply(req, Reply::Words(words));
    }

    fn set_retry_default(&mut self, queue: String, p: Option<RetryPolicy>, at: UnixMs) {
        match p {
            Some(p) => {
                self.dead.defaults.insert(queue, (p, at));
            }
            None => {
                self.dead.defaults.remove(&queue);
            }
        }
        self.save_retry_defaults();
    }

    /// A peer's QRETRY: the newest setting wins (a clear is kept as the
    /// absence of a default, so an older set arriving later wins; QRETRY
    /// again fixes it).
    pub(super) fn on_retry_default(&mut self, queue: String, p: Option<RetryPolicy>, at: UnixMs) {
        let newer = self.dead.defaults.get(&queue).is_none_or(|(_, t)| at > *t);
        if newer {
            self.set_retry_default(queue, p, at);
        }
    }

    fn save_retry_defaults(&mut self) {
        let mut all: Vec<(String, RetryPolicy, UnixMs)> = self
            .dead
            .defaults
            .iter()
            .map(|(q, (p, t))| (q.clone(), p.clone(), *t))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        self.effects.push_back(Effect::SaveRetryDefaults(all));
    }

    /// The queue defaults kept by an earlier run.
    pub fn restore_retry_defaults(&mut self, saved: Vec<(String, RetryPolicy, UnixMs)>) {
        for (q, p, t) in saved {
            self.dead.defaults.insert(q, (p, t));
        }
    }

    /// Tells a peer that just came up every queue default set here.
    pub(super) fn share_retry_defaults(&mut self, to: NodeName) {
        let all: Vec<(String, RetryPolicy, UnixMs)> = self
            .dead
            .defaults
            .iter()
            .map(|(q, (p, t))| (q.clone(), p.clone(), *t))
            .collect();
        for (queue, policy, set_at) in all {
            self.send(
                to,
                PeerMsg::RetryDefault {
                    queue,
                    policy: Some(policy),
                    set_at,
                },
            );
        }
    }

    /// splitmix64 over the engine's seeded state.
    fn random_u64(&mut self) -> u64 {
        self.dead.rng = self.dead.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.dead.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
