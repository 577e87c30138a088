//! Jobs that run after others (`ADDJOB ... AFTER id [id ...]`).
//!
//! A job added with `AFTER` is held in state `Waiting` by every holder
//! until each job it names has ended; its list, with what each named job
//! came to, is in `JobExtra::after` (so it is in the record and in peer
//! frames). Then it runs as if just added: the node that made it places
//! it, the other holders keep their copy with a RETRY timer, as holders
//! do. If a named job failed (and the add was not `AFTER-ANY`), it fails
//! without running, class `dependency`, and its own dependents fail in
//! turn.
//!
//! How a holder learns that a named job ended:
//! - held here: every end goes through `finish_waiters` (a result, a
//!   dead letter) or `remove_job_as` (acked, expired, cancelled), which
//!   call [`Engine::after_ended`];
//! - held elsewhere: the holder asks every live peer (`AfterQuery`), and
//!   a peer that holds the job unended remembers the asker and tells it
//!   when it ends (`AfterState`), so a chain across nodes moves at once;
//!   the question is asked again every [`POLL_MS`] for jobs still
//!   pending, which covers lost answers and nodes that come back.
//! - A job no live node holds, whose maker (the node its id names) is up
//!   and does not hold it either, has been acknowledged and forgotten (or
//!   expired, or its add failed): it counts as done, the one thing a
//!   cluster without tombstones for every job can say (README states
//!   it). While its maker is down, the job keeps waiting.
//!
//! Tenants: a waiting job sees only the jobs of its own tenant (the
//! `tenant/` prefix of its queue; a job in a queue without one sees every
//! job). Another tenant's job answers as one not held, here and in
//! `AfterQuery`, which carries the asker's scope, so naming another
//! tenant's job tells nothing about it: it counts as gone, that is done.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::Engine;
use super::getjob::Cause;
use super::peer::PeerMsg;
use super::timer::Timer;
use crate::api::{ErrorCode, Reply};
use crate::job::{DepState, ErrorClass, Job, JobId, JobResult, JobState, NodeName, UnixMs};
use wasque_sdk::proto::AfterSpec;

/// Pending jobs held elsewhere are asked about again this often.
pub const POLL_MS: u64 = 1_000;
/// Ids per `AfterQuery` frame.
const QUERY_CHUNK: usize = 512;
/// Peers remembered per job to tell when it ends (more ask again by poll).
const MAX_WATCHERS: usize = 64;

/// Whose jobs a waiting job may see: its tenant, or `None` (every job).
pub type Scope = Option<Arc<str>>;

/// A named job as a waiting job of one scope sees it.
type DepKey = (Scope, JobId);

/// The scope of a job in `queue`.
fn scope_of(queue: &str) -> Scope {
    crate::tenant::tenant_of_queue(queue).map(Arc::from)
}

/// What this node keeps to move waiting jobs along.
#[derive(Debug, Default)]
pub(super) struct AfterIndex {
    /// A named job → the jobs held here that wait for it.
    by_dep: HashMap<DepKey, Vec<JobId>>,
    /// A job held here, not ended → peers (and the scope they asked in)
    /// to tell when it ends.
    watchers: HashMap<JobId, Vec<(NodeName, Scope)>>,
    /// A named job held nowhere here → the live peers asked in the current
    /// round and not yet heard to hold it.
    probes: HashMap<DepKey, Vec<NodeName>>,
    /// When the poll timer is due, if armed.
    poll_at: Option<UnixMs>,
    /// Ends to pass on, and whether a pass is under way: a failure that
    /// fails a chain of jobs moves along it by this queue, not by
    /// recursion, so a long chain cannot exhaust the stack.
    todo: VecDeque<(DepKey, DepState)>,
    draining: bool,
    /// Jobs read back waiting, taken in hand once every job is back.
    restored: Vec<JobId>,
}

impl AfterIndex {
    /// Jobs waiting here for others to end.
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.by_dep.values().map(Vec::len).sum()
    }
}

/// What a job held here has come to, as a job named by `AFTER`.
fn state_of(job: &Job) -> DepState {
    match job.state {
        JobState::Done | JobState::Acked => DepState::Done,
        JobState::Failed => DepState::Failed(
            job.result
                .as_deref()
                .map(super::gather::describe)
                .unwrap_or_else(|| "failed".into()),
        ),
        JobState::Dead => DepState::Failed(format!(
            "dead letter ({})",
            job.retry()
                .map(|r| r.last_error.as_str())
                .filter(|e| !e.is_empty())
                .unwrap_or("no attempt left")
        )),
        JobState::WaitRepl | JobState::Queued | JobState::Active | JobState::Waiting => {
            DepState::Pending
        }
    }
}

/// Whether a waiting job of `scope` may see `job`.
fn visible(scope: &Scope, job: &Job) -> bool {
    match scope {
        None => true,
        Some(t) => crate::tenant::tenant_of_queue(&job.queue) == Some(&**t),
    }
}

/// What a job removed from this node for `why` had come to.
fn state_at_removal(job: &Job, why: &str) -> DepState {
    match state_of(job) {
        DepState::Pending if why == "acknowledged" => DepState::Done,
        DepState::Pending => DepState::Failed(why.to_string()),
        s => s,
    }
}

impl Engine {
    /// Checks an add's `AFTER` list.
    pub(super) fn check_after(
        &self,
        queue: &str,
        spec: &AfterSpec,
        map: bool,
    ) -> Result<(), Reply> {
        spec.check().map_err(|e| Reply::error(ErrorCode::Err, e))?;
        if map {
            return Err(Reply::error(
                ErrorCode::Err,
                "a distributed job takes no AFTER: add its parts once the jobs it needs are done",
            ));
        }
        // A job this node made and no longer holds cannot be told from one
        // never made: refuse it here rather than run at once on a typo.
        let me = self.cfg.node_prefix;
        let scope = scope_of(queue);
        if let Some(id) = spec
            .ids
            .iter()
            .find(|id| id.node_prefix() == me && self.local_state(&scope, id).is_none())
        {
            return Err(Reply::error(
                ErrorCode::NoJob,
                format!(
                    "AFTER names job {id}, which this node made but no longer holds (acknowledged, expired, or never added)"
                ),
            ));
        }
        Ok(())
    }

    /// What a job has come to as this node knows it, seen from `scope`;
    /// `None`: not held (or not visible).
    fn local_state(&self, scope: &Scope, id: &JobId) -> Option<DepState> {
        match self.jobs.get(id) {
            Some(job) if visible(scope, job) => Some(state_of(job)),
            Some(_) => None,
            None if self.cluster.acks.contains_key(id) => Some(DepState::Done),
            None => None,
        }
    }

    /// [`Self::local_state`], and a job this node made and no longer
    /// holds is gone: done (see the module's comment).
    fn known_state(&self, scope: &Scope, id: &JobId) -> Option<DepState> {
        self.local_state(scope, id)
            .or_else(|| (id.node_prefix() == self.cfg.node_prefix).then_some(DepState::Done))
    }

    /// A job that waits for others arrived here (an add, a peer's copy, a
    /// restart): hold it in `Waiting`, settle what is known here, ask the
    /// peers about the rest. Returns false when it need not wait (every
    /// named job had ended): the caller then treats it as any job; a
    /// failed one has been failed already.
    pub(super) fn after_arrived(&mut self, now: UnixMs, id: JobId) -> bool {
        let Some((scope, pending)) = self.jobs.get(&id).and_then(|j| {
            let pending = j.after()?.pending().collect::<Vec<_>>();
            Some((scope_of(&j.queue), pending))
        }) else {
            return false;
        };
        for dep in &pending {
            if let Some(s) = self.known_state(&scope, dep)
                && s != DepState::Pending
                && let Some(a) = self.jobs.get_mut(&id).and_then(|j| j.after_mut())
            {
                a.settle(*dep, s);
            }
        }
        let Some(job) = self.jobs.get_mut(&id) else {
            return false;
        };
        match job.after().and_then(|a| a.outcome()) {
            Some(Ok(())) => return false,
            Some(Err(why)) => {
                job.state = JobState::Waiting;
                self.after_failed(now, id, why);
                return true;
            }
            None => {}
        }
        job.state = JobState::Waiting;
        if let Some(t) = job.take_requeue_at() {
            self.timers.cancel(t, Timer::Requeue(id));
        }
        let remote: Vec<JobId> = job
            .after()
            .map(|a| a.pending().collect())
            .unwrap_or_default();
        for dep in &remote {
            let list = self.after.by_dep.entry((scope.clone(), *dep)).or_default();
            if !list.contains(&id) {
                list.push(id);
            }
        }
        self.journal_put(&id);
        let remote: Vec<JobId> = remote
            .into_iter()
            .filter(|d| self.known_state(&scope, d).is_none())
            .collect();
        self.after_ask(&scope, remote);
        self.arm_after_poll(now);
        true
    }

    /// A job read back at start waits for others: see to it once every
    /// job is back (one it waits for may come later in the store).
    pub(super) fn after_restored(&mut self, id: JobId) {
        self.after.restored.push(id);
    }

    pub(super) fn after_restore_end(&mut self, now: UnixMs) {
        for id in std::mem::take(&mut self.after.restored) {
            if !self.after_arrived(now, id)
                && let Some(job) = self.jobs.get_mut(&id)
                && job.state == JobState::Waiting
            {
                // Every job it waited for had ended before the stop.
                job.state = JobState::Active;
                self.after_ready(now, id);
            }
        }
    }

    /// A job held here ended (a result, a dead letter) or is about to be
    /// removed (`removed_for`): settle the jobs waiting for it, tell the
    /// peers that asked.
    pub(super) fn after_ended(&mut self, now: UnixMs, id: JobId, removed_for: Option<&str>) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        let state = match removed_for {
            Some(why) => state_at_removal(job, why),
            None => state_of(job),
        };
        let scope = scope_of(&job.queue);
        if removed_for.is_some() {
            // A waiting job that goes away waits no more.
            let pending: Vec<JobId> = job
                .after()
                .map(|a| a.pending().collect())
                .unwrap_or_default();
            for dep in pending {
                self.unwatch((scope.clone(), dep), id);
            }
        }
        if state == DepState::Pending {
            return;
        }
        if let Some(peers) = self.after.watchers.remove(&id) {
            for (to, asked) in peers {
                let msg = PeerMsg::AfterState {
                    scope: asked.as_deref().map(str::to_string),
                    states: vec![(id, Some(state.clone()))],
                };
                self.send(to, msg);
            }
        }
        // The jobs waiting for it that may see it: those of its tenant and
        // those that see every job.
        self.settle_dependents(now, (None, id), state.clone());
        if scope.is_some() {
            self.settle_dependents(now, (scope, id), state);
        }
    }

    fn unwatch(&mut self, key: DepKey, waiter: JobId) {
        if let Some(list) = self.after.by_dep.get_mut(&key) {
            list.retain(|w| *w != waiter);
            if list.is_empty() {
                self.after.by_dep.remove(&key);
                self.after.probes.remove(&key);
            }
        }
    }

    /// `dep` ended as `state`: every job here waiting for it takes note,
    /// and runs or fails if that decides it (a failure passes on to its
    /// own dependents through the queue, see [`AfterIndex::todo`]).
    fn settle_dependents(&mut self, now: UnixMs, dep: DepKey, state: DepState) {
        self.after.todo.push_back((dep, state));
        if self.after.draining {
            return;
        }
        self.after.draining = true;
        while let Some((dep, state)) = self.after.todo.pop_front() {
            self.settle_one(now, dep, state);
        }
        self.after.draining = false;
    }

    fn settle_one(&mut self, now: UnixMs, key: DepKey, state: DepState) {
        let Some(waiting) = self.after.by_dep.remove(&key) else {
            return;
        };
        self.after.probes.remove(&key);
        let dep = key.1;
        for id in waiting {
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            if job.state != JobState::Waiting {
                continue;
            }
            let Some(a) = job.after_mut() else {
                continue;
            };
            if !a.settle(dep, state.clone()) {
                continue;
            }
            let outcome = a.outcome();
            self.journal_put(&id);
            match outcome {
                None => {}
                Some(Ok(())) => self.after_ready(now, id),
                Some(Err(why)) => self.after_failed(now, id, why),
            }
        }
    }

    /// Every job it waited for ended well (or ended, with `AFTER-ANY`): it
    /// runs as if just added.
    fn after_ready(&mut self, now: UnixMs, id: JobId) {
        let me = self.cfg.node_prefix;
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let scope = scope_of(&job.queue);
        for dep in job
            .after()
            .map(|a| a.deps.iter().map(|(d, _)| *d).collect::<Vec<_>>())
            .unwrap_or_default()
        {
            if let Some(list) = self.after.by_dep.get_mut(&(scope.clone(), dep)) {
                list.retain(|w| *w != id);
            }
        }
        job.state = JobState::Active;
        job.queued_at = now;
        tracing::debug!(job = %id, "the jobs it runs after have ended: ready");
        let maker = id.node_prefix() == me || job.nodes.len() <= 1;
        if !maker {
            // A holder's copy: queued here only if its maker does not
            // take it within RETRY.
            self.arm_holder_requeue(now, id);
            return;
        }
        if job.ready_at > now {
            let at = job.ready_at;
            self.timers.set(at, Timer::Ready(id));
            self.journal_put(&id);
        } else {
            self.place(now, id, Cause::First);
        }
        self.dispatch(now);
    }

    /// A job it waited for failed: it fails too, without running, class
    /// `dependency`; its holders get the result as from a run.
    fn after_failed(&mut self, now: UnixMs, id: JobId, why: String) {
        let node = self.cfg.node_id.clone();
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        tracing::debug!(job = %id, why, "a job it runs after failed");
        job.state = JobState::Failed;
        if let Some(m) = job.module()
            && let Some(entry) = self.modules.get_mut(&m)
        {
            entry.jobs = entry.jobs.saturating_sub(1);
        }
        if let Some(t) = job.take_requeue_at() {
            self.timers.cancel(t, Timer::Requeue(id));
        }
        job.result = Some(Box::new(JobResult {
            exit_code: None,
            error_class: Some(ErrorClass::Dependency),
            message: why,
            output: Vec::new(),
            stderr: Vec::new(),
            fuel_used: 0,
            duration_us: 0,
            node,
        }));
        let status = job.status(now, &self.cfg.node_id);
        self.journal_put(&id);
        self.share_result(id);
        self.finish_waiters(now, id, status);
    }

    /// Asks every live peer about jobs not held here, as `scope` sees
    /// them.
    fn after_ask(&mut self, scope: &Scope, ids: Vec<JobId>) {
        if ids.is_empty() || self.cluster.peers.is_empty() {
            return;
        }
        let peers: Vec<NodeName> = self.cluster.peers.iter().copied().collect();
        for id in &ids {
            self.after
                .probes
                .insert((scope.clone(), *id), peers.clone());
        }
        for chunk in ids.chunks(QUERY_CHUNK) {
            for to in &peers {
                let msg = PeerMsg::AfterQuery {
                    scope: scope.as_deref().map(str::to_string),
                    ids: chunk.to_vec(),
                };
                self.send(*to, msg);
            }
        }
    }

    fn arm_after_poll(&mut self, now: UnixMs) {
        if self.after.poll_at.is_none() && !self.after.by_dep.is_empty() {
            let at = now + POLL_MS;
            self.after.poll_at = Some(at);
            self.timers.set(at, Timer::AfterPoll);
        }
    }

    /// The poll timer: ask again about every pending job held elsewhere;
    /// settle those whose maker is this node and that are gone.
    pub(super) fn after_poll(&mut self, now: UnixMs) {
        self.after.poll_at = None;
        let me = self.cfg.node_prefix;
        let mut ask: HashMap<Scope, Vec<JobId>> = HashMap::new();
        let mut gone = Vec::new();
        for (scope, dep) in self.after.by_dep.keys() {
            match self.local_state(scope, dep) {
                // Jobs held here end through `after_ended`.
                Some(_) => {}
                None if dep.node_prefix() == me => gone.push((scope.clone(), *dep)),
                None => ask.entry(scope.clone()).or_default().push(*dep),
            }
        }
        for key in gone {
            self.settle_dependents(now, key, DepState::Done);
        }
        for (scope, ids) in ask {
            self.after_ask(&scope, ids);
        }
        self.arm_after_poll(now);
    }

    /// A peer asks what these jobs came to.
    pub(super) fn on_after_query(
        &mut self,
        from: NodeName,
        scope: Option<String>,
        ids: Vec<JobId>,
    ) {
        let scope: Scope = scope.map(Arc::from);
        let mut answer = Vec::with_capacity(ids.len().min(QUERY_CHUNK));
        for id in ids.into_iter().take(QUERY_CHUNK) {
            let state = self.local_state(&scope, &id);
            if state == Some(DepState::Pending) {
                let w = self.after.watchers.entry(id).or_default();
                let entry = (from, scope.clone());
                if !w.contains(&entry) && w.len() < MAX_WATCHERS {
                    w.push(entry);
                }
            }
            answer.push((id, state));
        }
        let msg = PeerMsg::AfterState {
            scope: scope.as_deref().map(str::to_string),
            states: answer,
        };
        self.send(from, msg);
    }

    /// A peer's answer: what each job came to there (`None`: not held).
    pub(super) fn on_after_state(
        &mut self,
        now: UnixMs,
        from: NodeName,
        scope: Option<String>,
        states: Vec<(JobId, Option<DepState>)>,
    ) {
        let scope: Scope = scope.map(Arc::from);
        for (dep, state) in states {
            let key = (scope.clone(), dep);
            match state {
                Some(DepState::Pending) => {
                    // Held there, not ended: it tells us when it does.
                    self.after.probes.remove(&key);
                }
                Some(s) => self.settle_dependents(now, key, s),
                None => {
                    let Some(left) = self.after.probes.get_mut(&key) else {
                        continue;
                    };
                    left.retain(|n| *n != from);
                    // Every live peer said "not held": gone, if its maker
                    // is among them (up, and without it).
                    let maker_up = self
                        .cluster
                        .peers
                        .iter()
                        .any(|n| n.prefix() == dep.node_prefix());
                    if left.is_empty() && maker_up {
                        self.after.probes.remove(&key);
                        self.settle_dependents(now, key, DepState::Done);
                    }
                }
            }
        }
        self.dispatch(now);
    }
}
