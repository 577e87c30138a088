//! Rebuilding the engine from the jobs the store read back at start:
//! queues, timers and module counts, with TTLs and delays in wall-clock
//! time and DESIGN.md's rules for an unclean stop.

use super::journal::RestoreReport;
use super::{Engine, Timer};
use crate::job::{Job, JobState, UnixMs};
use crate::queue::ReadyKey;

impl Engine {
    /// Takes back `jobs` (as the store held them) at `now`, before the node
    /// serves anything:
    ///
    /// - a job whose TTL passed while the node was down is gone;
    /// - a queued job is ready again in the same order (priority, then id);
    ///   a delayed job whose time came is ready, the others wait for it;
    /// - a Wasm job that was running on this node's executor is queued
    ///   again at once, its attempt counted, unless it is at most once
    ///   (`RETRY 0`): then it is dropped, never run twice;
    /// - a plain job delivered to a worker stays active and is queued
    ///   again at its stored re-queue time (the worker may still be on it);
    /// - a finished Wasm job keeps its result for its ack;
    /// - a job waiting out a retry's backoff (or a NACK's delay) is queued
    ///   when it ends; a dead letter stays dead (no TTL); a Wasm job that
    ///   was running with no attempt left under its retry policy (or one
    ///   that does not retry `node-loss`) becomes a dead letter.
    ///
    /// Changes it makes (removals, re-queues) are journaled like any other.
    pub fn restore(&mut self, now: UnixMs, jobs: Vec<Job>) -> RestoreReport {
        let mut rep = RestoreReport::default();
        self.restore_begin(jobs.len());
        for job in jobs {
            self.restore_job(now, job, &mut rep);
        }
        self.restore_end(now);
        rep
    }

    /// Streaming form of [`Engine::restore`], for a store read record by
    /// record (no second copy of every job): `restore_begin` with the
    /// expected count, `restore_job` for each, then `restore_end`.
    pub fn restore_begin(&mut self, expected_jobs: usize) {
        self.jobs.reserve(expected_jobs);
    }

    /// One job read back (see [`Engine::restore`] for what happens to it).
    pub fn restore_job(&mut self, now: UnixMs, mut job: Job, rep: &mut RestoreReport) {
        let id = job.id;
        self.ids.observe(id);
        if job.state == JobState::Acked && job.nodes.len() > 1 && job.expires_at > now {
            // An ack not yet confirmed by every holder: send it again.
            self.restore_acked_stub(now, job);
            rep.restored += 1;
            return;
        }
        if job.state == JobState::Dead {
            // A dead letter: no TTL, no queue; kept until requeued or purged.
            self.dead_restored(&job);
            self.hold(job);
            rep.finished += 1;
            rep.restored += 1;
            return;
        }
        if job.expires_at <= now || job.state == JobState::Acked {
            rep.expired += 1;
            self.journal_remove(&id);
            self.idem_forgotten(now, &job);
            return;
        }
        let delivered = job.counters.attempts > 0;
        enum Then {
            Ready,
            Delay,
            Requeue(UnixMs),
            Nothing,
        }
        let then = match job.state {
            JobState::Queued | JobState::WaitRepl => Then::Ready,
            // Waiting out a failed run's backoff, or a NACK's delay.
            JobState::Active if job.awaiting_retry() => Then::Delay,
            JobState::Active if job.is_wasm() && delivered && lost_run_is_last(&job) => {
                let r = job.retry_mut().expect("lost_run_is_last has a policy");
                r.last_error = format!("attempt {}: the node stopped during the run", r.attempts);
                job.state = JobState::Dead;
                job.result = None;
                tracing::warn!(job = %id, "job was running when the node stopped and has no attempt left: dead letter");
                self.journal_put(&id);
                self.dead_restored(&job);
                self.hold(job);
                rep.finished += 1;
                rep.restored += 1;
                return;
            }
            JobState::Active if job.is_wasm() && delivered => {
                if job.retry_ms == 0 {
                    rep.dropped_at_most_once += 1;
                    tracing::warn!(job = %id, "at-most-once job was running when the node stopped: dropped, not run twice");
                    self.journal_remove(&id);
                    self.idem_forgotten(now, &job);
                    return;
                }
                rep.requeued_running += 1;
                job.queued_at = now;
                self.journal_put(&id);
                Then::Ready
            }
            JobState::Active => match job.requeue_at() {
                Some(t) => {
                    rep.delivered += 1;
                    Then::Requeue(t)
                }
                None if !delivered && job.ready_at > job.created_at => Then::Delay,
                // DEQUEUE'd with RETRY 0, never delivered: stays so.
                None if !delivered => Then::Nothing,
                // Delivered at most once: active until acked or expired.
                None => {
                    rep.delivered += 1;
                    Then::Nothing
                }
            },
            JobState::Done | JobState::Failed => {
                rep.finished += 1;
                Then::Nothing
            }
            JobState::Acked | JobState::Dead => Then::Nothing,
            // Waiting for jobs it runs after: asks about them at the end.
            JobState::Waiting if job.after().is_some() => {
                self.after_restored(id);
                Then::Nothing
            }
            // A distributed job's parent: its parts report as they finish.
            JobState::Waiting => Then::Nothing,
        };
        if !job.state.is_finished()
            && let Some(m) = job.module()
            && let Some(entry) = self.modules.get_mut(&m)
        {
            entry.jobs += 1;
        }
        self.timers.set(job.expires_at, Timer::Expire(id));
        match then {
            Then::Ready => {
                job.state = JobState::Queued;
                let key = ReadyKey::new(job.priority, id);
                self.queues.push(&job.queue, key, job.is_wasm(), now);
                rep.ready += 1;
            }
            Then::Delay => {
                // Fires at once if its time came while the node was down.
                self.timers.set(job.ready_at, Timer::Ready(id));
                if job.ready_at > now {
                    rep.delayed += 1;
                } else {
                    rep.ready += 1;
                }
            }
            Then::Requeue(t) => self.timers.set(t, Timer::Requeue(id)),
            Then::Nothing => {}
        }
        self.hold(job);
        rep.restored += 1;
    }

    /// Every job is back: jobs waiting for others settle what is known
    /// here and ask about the rest; fire the delays whose time came and
    /// the re-queues due while the node was down.
    pub fn restore_end(&mut self, now: UnixMs) {
        self.after_restore_end(now);
        self.handle_timeout(now);
    }
}

/// Whether a Wasm job whose run was lost with the node (a stop while it
/// ran) must go to its dead-letter queue: its policy does not retry a lost
/// node, or that run was its last attempt.
fn lost_run_is_last(job: &Job) -> bool {
    job.retry()
        .is_some_and(|r| !r.policy.retries_node_loss() || r.attempts >= r.policy.max_attempts)
}
