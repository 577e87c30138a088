//! Distributed jobs (split and gather), kept by the node that accepted
//! them.
//!
//! A client adds a parent job (`AddJob::map`: the map module, how many
//! parts, runs allowed per part; the parent's own module is the reduce),
//! then each part's input (`AddPart`). Each part becomes a Wasm job of its
//! own whose `parent` is the parent's id, added here like any job: it is
//! replicated, placed by its queue's policy and pulled by idle peers, so
//! parts spread over the cluster. This node always holds a copy of every
//! part (the adding node is a holder; moves keep the sender as one), so
//! every part's end reaches it (`handle_exec_done` here, `Finished` from a
//! peer), and a part whose node dies is delivered again by the holders as
//! any job is. A part that fails runs again alone, as a new job with the
//! same input, up to the allowed runs; then the whole job fails. When
//! every part is done the parent takes their outputs, framed in order
//! (`proto::frame_parts`), as its body and is queued like any Wasm job: its
//! result is the reduce module's output.
//!
//! The parent itself is not replicated: if its node is down, the parts go
//! on running and their results wait with their holders; the parent picks
//! them up after a restart (a holder's re-queue asks the others, who answer
//! with the result).

use bytes::Bytes;

use super::Engine;
use super::getjob::Cause;
use super::timer::Timer;
use crate::api::{AddJob, ErrorCode, JobEventKind, Reply};
use crate::job::{Counters, ErrorClass, Job, JobId, JobResult, JobState, NodeName, UnixMs};
use wasque_sdk::proto::{MapSpec, frame_parts};

/// Most parts one distributed job may have (its status lists each one and
/// must fit in a reply frame).
pub const MAX_PARTS: u32 = 20_000;
/// Most runs one part may be allowed.
pub const MAX_PART_ATTEMPTS: u32 = 100;

impl Engine {
    /// Checks the distributed-job options of an add.
    pub(super) fn check_map(&self, spec: &MapSpec, a: &AddJob) -> Result<(), Reply> {
        let err = |m: String| Err(Reply::error(ErrorCode::Err, m));
        if spec.parts == 0 {
            return err("a distributed job needs at least one part: the input is empty".into());
        }
        if spec.parts > MAX_PARTS {
            return err(format!(
                "{} parts is over the bound of {MAX_PARTS}: use larger parts",
                spec.parts
            ));
        }
        if spec.attempts == 0 || spec.attempts > MAX_PART_ATTEMPTS {
            return err(format!(
                "runs per part must be 1..={MAX_PART_ATTEMPTS}, not {}",
                spec.attempts
            ));
        }
        if a.module.is_none() {
            return err("a distributed job needs a reduce module (MODULE)".into());
        }
        if !a.body.is_empty() {
            return err(
                "a distributed job's input comes in its parts: its body must be empty".into(),
            );
        }
        if a.wait_ms.is_some() || a.delay_secs.is_some() || a.group.is_some() {
            return err(
                "a distributed job takes no wait, DELAY or GROUP: add its parts, then wait for it"
                    .into(),
            );
        }
        if a.asynckey.is_some() {
            // Its parts come with AddPart, which carries no key: a keyed
            // parent would take parts from anyone who knows its id.
            return err(
                "a distributed job takes no ASYNCKEY (its parts could not carry it)".into(),
            );
        }
        if !self.modules.contains_key(&spec.map) && self.peer_with_module(&spec.map).is_none() {
            return Err(super::no_module(&spec.map));
        }
        Ok(())
    }

    /// `AddPart`: the part's input arrives; it runs as a job of its own.
    pub(super) fn add_part(
        &mut self,
        now: UnixMs,
        req: crate::engine::RequestId,
        parent: JobId,
        index: u32,
        body: Bytes,
    ) {
        let reply = match self.check_part(&parent, index, body.len()) {
            Err(reply) => reply,
            // Added before (a client's retry): the same job again.
            Ok(Some(job)) => Reply::JobAdded(job),
            Ok(None) => match self.spawn_part(now, parent, index as usize, body.as_ref().into()) {
                Ok(id) => Reply::JobAdded(id),
                Err(reply) => reply,
            },
        };
        self.reply(req, reply);
    }

    /// Whether a part may be added; `Some(job)` if it already was.
    fn check_part(&self, parent: &JobId, index: u32, len: usize) -> Result<Option<JobId>, Reply> {
        let Some(p) = self.jobs.get(parent) else {
            return Err(super::no_job(parent));
        };
        let Some(g) = p.gather() else {
            return Err(Reply::error(
                ErrorCode::Err,
                format!("job {parent} is not a distributed job"),
            ));
        };
        let Some(part) = g.parts.get(index as usize) else {
            return Err(Reply::error(
                ErrorCode::Err,
                format!(
                    "part {index} is out of range: job {parent} has {} part(s)",
                    g.parts.len()
                ),
            ));
        };
        if let Some(job) = part.job {
            return Ok(Some(job));
        }
        if p.state != JobState::Waiting {
            return Err(Reply::error(
                ErrorCode::Err,
                format!("job {parent} no longer takes parts (it is {})", p.state),
            ));
        }
        if len > self.cfg.max_body_bytes {
            return Err(Reply::error(
                ErrorCode::TooBig,
                format!(
                    "part of {len} bytes is over the node's bound of {} bytes",
                    self.cfg.max_body_bytes
                ),
            ));
        }
        Ok(None)
    }

    /// Adds a run of part `index` of `parent` as a job of its own.
    fn spawn_part(
        &mut self,
        now: UnixMs,
        parent: JobId,
        index: usize,
        body: Box<[u8]>,
    ) -> Result<JobId, Reply> {
        let Some(p) = self.jobs.get(&parent) else {
            return Err(super::no_job(&parent));
        };
        let Some(g) = p.gather() else {
            return Err(Reply::error(ErrorCode::Err, "not a distributed job"));
        };
        let map = g.map;
        if !self.modules.contains_key(&map) && self.peer_with_module(&map).is_none() {
            return Err(super::no_module(&map));
        }
        if self.jobs.len() >= self.cfg.max_jobs {
            return Err(Reply::error(
                ErrorCode::Quota,
                format!("node holds its maximum of {} jobs", self.cfg.max_jobs),
            ));
        }
        let (queue, limits, args) = (p.queue.clone(), p.limits(), p.args().to_vec());
        let (priority, retry_ms, expires_at) = (p.priority, p.retry_ms, p.expires_at);
        let ttl_secs = (expires_at.saturating_sub(now) / 1000).max(1);
        let id = self.ids.next(now, false, ttl_secs);
        // Disque's default copies; this node is always one of them.
        let copies = self.replicas_for(None).max(1);
        let mut nodes = Vec::new();
        if copies > 1 {
            nodes.push(self.cluster.me.unwrap_or(NodeName([0; 20])));
            nodes.extend(self.pick_peers(copies as usize - 1));
        }
        let job = Job {
            id,
            queue,
            body,
            priority,
            replicate: copies,
            retry_ms,
            expires_at,
            ready_at: now,
            nocache: false,
            state: JobState::Active,
            created_at: now,
            queued_at: now,
            requeue_at: None,
            counters: Counters::default(),
            result: None,
            nodes,
            extra: crate::job::JobExtra {
                module: Some(map),
                limits: Some(limits),
                args,
                parent: Some(parent),
                ..Default::default()
            }
            .boxed(),
        };
        let replicated = job.nodes.len() > 1;
        let bytes = job.body.len() as u64;
        if let Some(entry) = self.modules.get_mut(&map) {
            entry.jobs += 1;
        }
        self.timers.set(job.expires_at, Timer::Expire(id));
        self.emit(
            &job,
            JobEventKind::Added {
                wasm: true,
                delayed: false,
            },
        );
        self.jobs.insert(Box::new(job));
        self.journal_put(&id);
        if let Some(slot) = self
            .jobs
            .get_mut(&parent)
            .and_then(|p| p.gather_mut())
            .and_then(|g| g.parts.get_mut(index))
        {
            slot.job = Some(id);
            slot.attempts += 1;
            slot.bytes = bytes;
        }
        self.journal_put(&parent);
        if replicated {
            self.start_replication(now, None, id, 0, None, true);
        }
        self.place(now, id, Cause::First);
        Ok(id)
    }

    /// A job finished here or on a peer: if it is a part whose parent this
    /// node keeps, take its result, and run it again, fail the parent or
    /// start the reduce.
    pub(super) fn part_finished(&mut self, now: UnixMs, child: JobId) {
        let Some(job) = self.jobs.get(&child) else {
            return;
        };
        let Some(parent) = job.parent() else {
            return;
        };
        let ok = job.state == JobState::Done;
        let result = job.result.as_deref().cloned();
        let body = job.body.clone();
        let Some(p) = self.jobs.get_mut(&parent) else {
            return;
        };
        if p.state != JobState::Waiting {
            return;
        }
        let Some(g) = p.gather_mut() else {
            return;
        };
        let Some(index) = g.parts.iter().position(|s| s.job == Some(child)) else {
            return;
        };
        let allowed = g.attempts;
        let slot = &mut g.parts[index];
        if slot.done {
            return;
        }
        let class = result.as_ref().and_then(|r| r.error_class);
        if let Some(r) = result {
            slot.node = r.node.clone();
            if ok {
                slot.done = true;
                slot.error.clear();
                slot.output = Some(r.output);
            } else {
                slot.error = describe(&r);
            }
        } else if ok {
            // A finished part without its result cannot be reduced.
            slot.error = "the part's result was not kept".into();
        }
        let done = slot.done;
        let (runs, error) = (slot.attempts, slot.error.clone());
        let all_done = g.all_done();
        self.journal_put(&parent);
        // The parent holds what it needs of the part's job now.
        self.ack_everywhere(now, child, false);
        if done {
            if all_done {
                self.start_reduce(now, parent);
            }
        } else {
            let run = Rerun {
                index,
                runs,
                allowed,
                class,
            };
            self.run_again_or_fail(now, parent, run, body, &error);
        }
    }

    /// A part's run failed: run it again as a new job if it has runs
    /// left, else fail the parent.
    fn run_again_or_fail(
        &mut self,
        now: UnixMs,
        parent: JobId,
        r: Rerun,
        body: Box<[u8]>,
        last: &str,
    ) {
        let index = r.index;
        let why = if r.runs < r.allowed {
            match self.spawn_part(now, parent, index, body) {
                Ok(_) => return,
                Err(reply) => format!("part {index} could not run again: {}", reply_text(&reply)),
            }
        } else {
            format!("part {index} failed {} time(s); last: {last}", r.runs)
        };
        self.part_gave_up(parent, index);
        self.fail_parent(now, parent, r.class, why);
    }

    fn part_gave_up(&mut self, parent: JobId, index: usize) {
        if let Some(slot) = self
            .jobs
            .get_mut(&parent)
            .and_then(|p| p.gather_mut())
            .and_then(|g| g.parts.get_mut(index))
        {
            slot.failed = true;
        }
    }

    /// Every part is done: the parent runs the reduce over their outputs.
    fn start_reduce(&mut self, now: UnixMs, parent: JobId) {
        let Some(p) = self.jobs.get_mut(&parent) else {
            return;
        };
        let Some(g) = p.gather_mut() else {
            return;
        };
        let outputs: Vec<Vec<u8>> = g
            .parts
            .iter_mut()
            .map(|s| s.output.take().unwrap_or_default())
            .collect();
        p.body = frame_parts(&outputs).into_boxed_slice();
        p.state = JobState::Active;
        p.queued_at = now;
        self.journal_put(&parent);
        self.place(now, parent, Cause::First);
    }

    /// The parent fails without running its reduce; its unfinished parts
    /// are acknowledged everywhere (nobody needs them any more).
    fn fail_parent(
        &mut self,
        now: UnixMs,
        parent: JobId,
        class: Option<ErrorClass>,
        message: String,
    ) {
        let node = self.cfg.node_id.clone();
        let Some(p) = self.jobs.get_mut(&parent) else {
            return;
        };
        p.state = JobState::Failed;
        p.result = Some(Box::new(JobResult {
            exit_code: None,
            error_class: Some(class.unwrap_or(ErrorClass::Trap)),
            message,
            output: Vec::new(),
            stderr: Vec::new(),
            fuel_used: 0,
            duration_us: 0,
            node,
        }));
        if let Some(m) = p.module()
            && let Some(entry) = self.modules.get_mut(&m)
        {
            entry.jobs = entry.jobs.saturating_sub(1);
        }
        let running: Vec<JobId> = p
            .gather()
            .map(|g| {
                g.parts
                    .iter()
                    .filter(|s| !s.done)
                    .filter_map(|s| s.job)
                    .collect()
            })
            .unwrap_or_default();
        let status = p.status(now, &self.cfg.node_id);
        self.journal_put(&parent);
        for child in running {
            if self
                .jobs
                .get(&child)
                .is_some_and(|j| !j.state.is_finished())
            {
                self.ack_everywhere(now, child, false);
            }
        }
        self.finish_waiters(now, parent, status);
    }

    /// A job was removed here. A parent's unfinished parts go with it; a
    /// part deleted by hand counts as a failed run of that part.
    pub(super) fn gather_removed(&mut self, job: &Job, why: &str) {
        let now = self.last_now;
        if let Some(g) = job.gather()
            && job.state == JobState::Waiting
        {
            for child in g.parts.iter().filter(|s| !s.done).filter_map(|s| s.job) {
                if self.jobs.contains_key(&child) {
                    self.ack_everywhere(now, child, false);
                }
            }
        }
        let Some(parent) = job.parent() else {
            return;
        };
        if why != "deleted" {
            return;
        }
        let Some(g) = self
            .jobs
            .get_mut(&parent)
            .filter(|p| p.state == JobState::Waiting)
            .and_then(|p| p.gather_mut())
        else {
            return;
        };
        let Some(index) = g.parts.iter().position(|s| s.job == Some(job.id)) else {
            return;
        };
        let (allowed, slot) = (g.attempts, &mut g.parts[index]);
        if slot.done {
            return;
        }
        slot.error = "its job was deleted".into();
        let run = Rerun {
            index,
            runs: slot.attempts,
            allowed,
            class: None,
        };
        self.journal_put(&parent);
        self.run_again_or_fail(now, parent, run, job.body.clone(), "its job was deleted");
    }
}

/// Where a part whose run failed stands.
struct Rerun {
    index: usize,
    runs: u32,
    allowed: u32,
    class: Option<ErrorClass>,
}

/// A failed run, in a line: `class: message`.
/// `class: message` of a failed result.
pub(super) fn describe(r: &JobResult) -> String {
    let class = r
        .error_class
        .map(|c| c.to_string())
        .unwrap_or_else(|| "failed".into());
    if r.message.is_empty() {
        class
    } else {
        format!("{class}: {}", r.message)
    }
}

fn reply_text(r: &Reply) -> String {
    match r {
        Reply::Error(e) => e.message.clone(),
        other => format!("{other:?}"),
    }
}
