//! What external workers (and operators) do to jobs they hold: NACK,
//! ENQUEUE, DEQUEUE, WORKING, FINISH, PAUSE and DEBUG FLUSHALL, with
//! Disque's semantics.
//!
//! These apply to plain jobs: a Wasm job is run by the node itself, so a
//! worker cannot NACK, re-queue or finish it (such ids are skipped by the
//! counting commands and refused by WORKING and FINISH).

use bytes::Bytes;

use super::getjob::Cause;
use super::{Engine, RequestId, Timer};
use crate::api::{ErrorCode, Reply};
use crate::job::{ErrorClass, JobId, JobResult, JobState, UnixMs};
use crate::queue::Pause;

impl Engine {
    /// NACK (`nack`) or ENQUEUE: queue delivered jobs again at once.
    pub(super) fn requeue_cmd(&mut self, now: UnixMs, req: RequestId, ids: Vec<JobId>, nack: bool) {
        let mut n = 0;
        for id in ids {
            let Some(job) = self.jobs.get(&id) else {
                continue;
            };
            if job.is_wasm() {
                continue;
            }
            let cause = if nack {
                Cause::Nack
            } else if job.counters.attempts > 0 {
                Cause::Again
            } else {
                Cause::First
            };
            if self.enqueue(now, id, cause) {
                self.announce_queued(id);
                n += 1;
            }
        }
        self.reply(req, Reply::Count(n));
    }

    pub(super) fn dequeue_cmd(&mut self, now: UnixMs, req: RequestId, ids: Vec<JobId>) {
        let n = ids.into_iter().filter(|id| self.dequeue(now, *id)).count();
        self.reply(req, Reply::Count(n as u64));
    }

    /// WORKING: postpone the next re-queue by the retry time; refused once
    /// half of the job's TTL has passed (Disque's `-TOOLATE`).
    pub(super) fn working(&mut self, now: UnixMs, req: RequestId, id: JobId) {
        let reply = match self.jobs.get(&id) {
            None => job_not_known(),
            Some(job) if job.is_wasm() => Reply::error(
                ErrorCode::Err,
                "WORKING applies to plain jobs; a Wasm job is run by the node itself",
            ),
            Some(job) if job.state.is_finished() => {
                Reply::error(ErrorCode::Err, format!("job {id} is already {}", job.state))
            }
            Some(job)
                if now.saturating_sub(job.created_at)
                    > job.expires_at.saturating_sub(job.created_at) / 2 =>
            {
                Reply::error(
                    ErrorCode::TooLate,
                    "Half of job TTL already elapsed, you are no longer allowed to postpone the next delivery.",
                )
            }
            Some(job) => {
                let retry_secs = job.retry_ms / 1000;
                self.dequeue(now, id);
                if let Some(job) = self.jobs.get_mut(&id)
                    && job.state == JobState::Active
                {
                    self.arm_requeue(now, id);
                    self.announce_queued(id);
                }
                Reply::Count(retry_secs)
            }
        };
        self.reply(req, reply);
    }

    /// FINISH: an external worker's result for a plain job. The job stops
    /// being delivered, waiters get the result, and it is kept (unless
    /// `nocache`) until acknowledged or expired.
    pub(super) fn finish(
        &mut self,
        now: UnixMs,
        req: RequestId,
        id: JobId,
        output: Bytes,
        exit_code: i32,
    ) {
        let max = self.cfg.max_body_bytes;
        let reply = match self.jobs.get(&id) {
            None => Reply::error(ErrorCode::NoJob, format!("no job {id} on this node")),
            Some(job) if job.is_wasm() => Reply::error(
                ErrorCode::Err,
                "FINISH applies to plain jobs; a Wasm job's result comes from its run",
            ),
            Some(job) if job.state.is_finished() => {
                Reply::error(ErrorCode::Err, format!("job {id} is already {}", job.state))
            }
            Some(_) if output.len() > max => Reply::error(
                ErrorCode::TooBig,
                format!(
                    "result of {} bytes is over the node's bound of {max} bytes",
                    output.len()
                ),
            ),
            Some(_) => {
                self.dequeue(now, id);
                let node = self.cfg.node_id.clone();
                let Some(job) = self.jobs.get_mut(&id) else {
                    return;
                };
                if let Some(t) = job.take_requeue_at() {
                    self.timers.cancel(t, Timer::Requeue(id));
                }
                let result = JobResult {
                    exit_code: Some(exit_code),
                    error_class: (exit_code != 0).then_some(ErrorClass::Exit(exit_code)),
                    message: String::new(),
                    output: output.to_vec(),
                    stderr: Vec::new(),
                    fuel_used: 0,
                    duration_us: now.saturating_sub(job.queued_at).saturating_mul(1000),
                    node,
                };
                job.state = if exit_code == 0 {
                    JobState::Done
                } else {
                    JobState::Failed
                };
                job.counters.ack_times += 1;
                let nocache = job.nocache;
                if self.cfg.events {
                    // Subscribers (RESP SUBSCRIBE, the HTTP feed) learn of
                    // external workers' results too.
                    self.effects
                        .push_back(super::Effect::Event(crate::api::JobEvent {
                            id,
                            queue: job.queue.clone(),
                            kind: crate::api::JobEventKind::Finished {
                                class: result.error_class,
                                run_us: result.duration_us,
                                fuel_used: 0,
                            },
                        }));
                }
                job.result = Some(Box::new(result));
                let status = job.status(now, &self.cfg.node_id);
                if nocache {
                    job.result = None;
                }
                self.journal_put(&id);
                self.finish_waiters(now, id, status);
                Reply::Ok
            }
        };
        self.reply(req, reply);
    }

    /// PAUSE: change and report a queue's pause state. Clearing an output
    /// pause serves the queue's blocked clients and executors at once.
    /// With `bcast` (Disque's BCAST), every live peer takes the state the
    /// queue is left in (`PeerMsg::Pause`).
    pub(super) fn pause(
        &mut self,
        now: UnixMs,
        req: RequestId,
        queue: String,
        set: Option<Pause>,
        bcast: bool,
    ) {
        if let Some(p) = set {
            self.set_pause(now, &queue, p);
        }
        let pause = self
            .queues
            .get(&queue)
            .map_or(Pause::default(), |q| q.pause);
        let peers: Vec<_> = self.cluster.peers.iter().copied().collect();
        if bcast && !peers.is_empty() {
            self.effects.push_back(super::Effect::SendMany {
                to: peers,
                msg: super::PeerMsg::Pause {
                    queue: queue.clone(),
                    pause,
                },
            });
        }
        self.reply(req, Reply::Paused(pause.as_str()));
    }

    /// Sets a queue's pause flags (from PAUSE, or a peer's BCAST).
    pub(super) fn set_pause(&mut self, now: UnixMs, queue: &str, p: Pause) {
        let changes = self
            .queues
            .get(queue)
            .map_or(p.is_paused(), |q| q.pause != p);
        if changes {
            let q = self.queues.entry(queue, now);
            let was_out = q.pause.output;
            q.pause = p;
            if was_out && !p.output {
                self.queues.resume_wasm(queue);
                self.serve_blocked(now, queue);
            }
            self.queues.note_if_idle(queue, now);
            self.save_pauses();
        }
    }

    /// Hands the runtime every paused queue's flags to keep: a restart
    /// must find a queue paused as it was left.
    fn save_pauses(&mut self) {
        let all = self.queues.paused();
        self.effects.push_back(super::Effect::SavePauses(all));
    }

    /// The pause flags kept by an earlier run (before any job is restored,
    /// so a queue paused in output keeps its jobs from the executors).
    pub fn restore_pauses(&mut self, now: UnixMs, saved: Vec<(String, Pause)>) {
        for (queue, p) in saved {
            if p.is_paused() {
                self.queues.entry(&queue, now).pause = p;
            }
        }
    }

    /// DEBUG FLUSHALL: forget every job and queue. Blocked GETJOBs get nil,
    /// job waiters an error; running executions finish into nothing.
    pub(super) fn flush_all(&mut self, now: UnixMs, req: RequestId) {
        let blocked: Vec<RequestId> = self.blocked.keys().copied().collect();
        for r in blocked {
            self.blocked_timeout(now, r);
        }
        let ids: Vec<JobId> = self.jobs.keys().copied().collect();
        for id in ids {
            self.remove_job(&id, "flushed");
        }
        self.idem_flush();
        let paused = self.queues.paused();
        self.queues.clear();
        if !paused.is_empty() {
            self.save_pauses();
        }
        for m in self.modules.values_mut() {
            m.jobs = 0;
        }
        self.reply(req, Reply::Ok);
    }
}

/// WORKING's answer for a job this node does not hold (Disque's words).
pub(super) fn job_not_known() -> Reply {
    Reply::error(
        ErrorCode::NoJob,
        "Job not known in the context of this node.",
    )
}
