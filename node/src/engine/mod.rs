//! The engine: all job state of this node, as a sans-IO core.
//!
//! Inputs arrive through `handle_*` methods, each taking the current time as
//! an argument; the engine never reads a clock, opens a socket or touches a
//! file. What it wants done comes out of [`Engine::poll_effect`] (replies,
//! executions, module removals), and [`Engine::poll_timeout`] says when it
//! next wants [`Engine::handle_timeout`] called. The runtime drives it; tests
//! drive it directly with a virtual clock.
//!
//! Order of use, after each input: drain `poll_effect` until `None`, then
//! arm one timer at `poll_timeout`.
//!
//! Durability (`journal.rs`): every change to a job must reach the store.
//! After changing a job in `self.jobs` (any stored field: state, counters,
//! times, result), call `self.journal_put(&id)`; after removing one, call
//! `self.journal_remove(&id)`. The changes come out of `poll_effect` as
//! `Effect::Persist`, ahead of the replies that depend on them. Start-up
//! goes through [`Engine::restore`].

mod ack;
mod after;
mod asynckey;
mod cancel;
mod cluster;
mod effect;
mod explain;
mod fair;
mod gather;
mod getjob;
mod idem;
mod ids;
mod inspect;
mod job_table;
mod journal;
mod life;
mod peer;
mod placement;
mod restore;
mod scan;
mod tenant;
mod timer;
mod worker;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_after;
#[cfg(test)]
mod tests_cluster;
#[cfg(test)]
mod tests_disque;
#[cfg(test)]
mod tests_explain;
#[cfg(test)]
mod tests_gather;
#[cfg(test)]
mod tests_idem;
#[cfg(test)]
mod tests_life;
#[cfg(test)]
mod tests_restore;

use std::collections::VecDeque;

use hashbrown::{HashMap, HashSet};

use bytes::Bytes;

pub use cluster::ClusterStats;
pub use effect::{Effect, RequestId, RunJob};
pub use idem::IdemStats;
pub use journal::{Change, RestoreReport};
pub use peer::PeerMsg;
pub use placement::{Mode, PeerLoad, Policy, QueuePolicy};
pub use tenant::TenantUse;
pub use timer::Timer;

use crate::api::{AddJob, Command, ErrorCode, JobEvent, JobEventKind, ModuleInfo, Reply, bounds};
use crate::exec::Share;
use crate::job::{
    Counters, Gather, Job, JobId, JobResult, JobState, Limits, ModuleHash, NodeName, UnixMs,
};
use crate::queue::{Queues, ReadyKey};
use getjob::{BlockedGet, Cause};
use ids::IdGen;
use timer::Timers;

/// The engine's settings (resolved from the node's config).
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub node_id: String,
    /// 24 bits of the node id, carried in job ids.
    pub node_prefix: u32,
    /// Limits a Wasm job gets when it asks for none.
    pub default_limits: Limits,
    /// The most a Wasm job may ask for.
    pub max_limits: Limits,
    /// Executor slots: how many Wasm jobs are handed to the executor at
    /// once (running, or next in line on an executor thread).
    pub exec_slots: usize,
    /// The same while jobs are short (their recent runs average at most
    /// [`SHORT_JOB_US`]): a deeper executor queue spares a round of thread
    /// wake-ups per job, and holds little work back from priority order or
    /// from peers. Never below `exec_slots`.
    pub exec_slots_short: usize,
    /// Disque's defaults: RETRY 300 s, TTL 1 day.
    pub default_retry_secs: u64,
    pub default_ttl_secs: u64,
    /// Largest job body accepted.
    pub max_body_bytes: usize,
    /// Most jobs this node holds at once.
    pub max_jobs: usize,
    /// Seed for id randomness.
    pub seed: u64,
    /// Emit `Effect::Event` for job events (someone watches: metrics, the
    /// event feed). Off: no event is built at all.
    pub events: bool,
    /// Emit `Effect::Persist` for every job change (`appendonly yes`).
    pub journal: bool,
    /// How long a holder waits for answers before queuing the jobs of a
    /// peer declared down (the rescue's WILLQUEUE round). A peer only cut
    /// off for a moment is declared down too, and is seen again only some
    /// time after the cut heals: it must have the chance to answer (it may
    /// hold the job's ack) before its jobs run a second time.
    pub rescue_grace_ms: u64,
    /// How long an idempotency key is remembered after its job's creation
    /// (`idempotency-window`, in ms); it is remembered at least as long as
    /// the job is held, too (`engine/idem.rs`).
    pub idempotency_window_ms: u64,
    /// Most keys remembered after their jobs are gone
    /// (`idempotency-max-tombstones`); past it, the first to end goes.
    pub idempotency_max_tombstones: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            node_id: "node".into(),
            node_prefix: 0,
            default_limits: Limits {
                fuel: 1_000_000_000,
                memory_bytes: 64 << 20,
                deadline_ms: 10_000,
            },
            max_limits: Limits {
                fuel: 100_000_000_000,
                memory_bytes: 256 << 20,
                deadline_ms: 300_000,
            },
            exec_slots: 2,
            // Same as `exec_slots`.
            exec_slots_short: 0,
            default_retry_secs: 300,
            default_ttl_secs: 86_400,
            max_body_bytes: 8 << 20,
            max_jobs: 10_000_000,
            seed: 0,
            events: false,
            journal: false,
            // Twice Disque's default `cluster-node-timeout` (15 s).
            rescue_grace_ms: 30_000,
            idempotency_window_ms: 86_400_000,
            idempotency_max_tombstones: 1_000_000,
        }
    }
}

/// Counts for `INFO` and node info.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub jobs: usize,
    pub queues: usize,
    pub modules: usize,
    pub running: usize,
    pub timers: usize,
}

/// A module as the engine knows it.
#[derive(Clone, Copy, Debug)]
struct ModuleEntry {
    size: u64,
    /// Jobs holding the module (queued, delayed or running).
    jobs: u64,
}

/// A request blocked until a job finishes.
#[derive(Clone, Copy, Debug)]
struct Waiter {
    req: RequestId,
    deadline: Option<UnixMs>,
    /// Acknowledge the job once its result is handed to this waiter.
    ack: bool,
    /// The wait of an add-and-wait: on timeout it gets the job's status
    /// (so the caller learns the id), not `NotFinished`.
    add: bool,
}

/// All job state of one node.
#[derive(Debug)]
pub struct Engine {
    cfg: EngineConfig,
    /// Boxed: the table stays small (a million jobs restore in a fraction
    /// of the time: no 450-byte slots to move and fault in).
    jobs: job_table::JobTable,
    queues: Queues,
    modules: HashMap<ModuleHash, ModuleEntry>,
    waiters: HashMap<JobId, Vec<Waiter>>,
    waiting_on: HashMap<RequestId, JobId>,
    /// GETJOB clients blocked on empty queues.
    blocked: HashMap<RequestId, BlockedGet>,
    timers: Timers,
    running: usize,
    /// Recent Wasm runs' average duration, µs (0: none seen yet).
    run_avg_us: u64,
    ids: IdGen,
    effects: VecDeque<Effect>,
    journal: journal::Journal,
    /// Wasm jobs handed to this node's executor and not finished.
    executing: HashSet<JobId>,
    /// When each of those was handed over (EXPLAIN says since when).
    run_started: HashMap<JobId, UnixMs>,
    /// The latest progress each of those reported (`explain.rs`,
    /// [`Engine::handle_progress`]).
    progress: HashMap<JobId, wasque_sdk::proto::Progress>,
    cluster: cluster::ClusterState,
    /// The time of the latest input, for inputs that carry none.
    last_now: UnixMs,
    placement: placement::Placement,
    /// Executor time between tenants (`fair.rs`).
    fair: fair::FairShare,
    /// Per tenant: rate bucket, use, refusals (`tenant.rs`).
    tenant_use: HashMap<std::sync::Arc<str>, TenantUse>,
    /// Requests of tenants not yet answered, with the prefix their reply
    /// loses.
    scoped: HashMap<RequestId, std::sync::Arc<str>>,
    /// Dead letters by queue and the queues' default retry policies.
    dead: life::DeadLetters,
    /// Idempotency keys of jobs no longer held (`idem.rs`).
    idem: idem::Idem,
    /// Jobs waiting for others to end (`after.rs`).
    after: after::AfterIndex,
    /// Disque's memory warning level against `maxmemory` (0 to 3), set by
    /// [`Engine::memory_tick`].
    memory_level: u8,
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Engine {
        let mut journal = journal::Journal::default();
        journal.on = cfg.journal;
        let cluster = cluster::ClusterState {
            me: NodeName::from_hex(&cfg.node_id),
            ..Default::default()
        };
        Engine {
            executing: HashSet::new(),
            run_started: HashMap::new(),
            progress: HashMap::new(),
            cluster,
            last_now: 0,
            placement: placement::Placement {
                rng: cfg.seed ^ 0x9e37_79b9_7f4a_7c15,
                // Nodes start their round-robin at different places, or
                // every node would send its next job to the same node.
                rr: cfg.node_prefix as usize,
                ..Default::default()
            },
            journal,
            dead: life::DeadLetters {
                rng: cfg.seed ^ 0x5851_f42d_4c95_7f2d,
                ..Default::default()
            },
            ids: IdGen::new(cfg.node_prefix, cfg.seed),
            memory_level: 0,
            cfg,
            jobs: job_table::JobTable::default(),
            queues: Queues::default(),
            modules: HashMap::new(),
            waiters: HashMap::new(),
            waiting_on: HashMap::new(),
            blocked: HashMap::new(),
            timers: Timers::default(),
            running: 0,
            run_avg_us: 0,
            effects: VecDeque::new(),
            tenant_use: HashMap::new(),
            fair: fair::FairShare::default(),
            scoped: HashMap::new(),
            idem: idem::Idem::default(),
            after: after::AfterIndex::default(),
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            jobs: self.jobs.len(),
            queues: self.queues.count(),
            modules: self.modules.len(),
            running: self.running,
            timers: self.timers.len(),
        }
    }

    /// Jobs this node holds.
    pub fn job_count(&self) -> usize {
        self.jobs.len()
    }

    /// Jobs ready in queues, plain and Wasm.
    pub fn ready_jobs(&self) -> usize {
        self.queues.iter().map(|(_, q)| q.len()).sum()
    }

    /// `CLUSTER LEAVING`: refuse new jobs, give queued ones to peers.
    pub fn set_leaving(&mut self, on: bool) {
        self.cluster.leaving = on;
    }

    /// `CONFIG SET cluster-node-timeout`: the grace given to peers'
    /// answers when a job's holder goes down follows the new timeout
    /// (twice it, as at start).
    pub fn set_node_timeout(&mut self, timeout_ms: u64) {
        self.cfg.rescue_grace_ms = timeout_ms.saturating_mul(2);
    }

    /// `CONFIG SET appendonly no`: job changes stop reaching the store.
    pub fn set_journal(&mut self, on: bool) {
        self.journal.on = on;
    }

    /// Once a second: the node's memory warning level against `maxmemory`
    /// (`runtime::memory_level`, Disque's). Under pressure idle empty
    /// queues are forgotten sooner, as Disque does: after a thirtieth of
    /// the usual idle time past 75 %, after 2 s past 95 %.
    pub fn memory_tick(&mut self, now: UnixMs, level: u8) {
        self.memory_level = level;
        let idle_ms = match level {
            0 => return,
            1 => crate::queue::QUEUE_IDLE_MS / 30,
            _ => 2_000,
        };
        self.queues.collect_idle(now, 4_096, idle_ms);
    }

    /// The memory warning level the last [`Self::memory_tick`] set.
    pub fn memory_level(&self) -> u8 {
        self.memory_level
    }

    /// A job, if this node holds it.
    pub fn job(&self, id: &JobId) -> Option<&Job> {
        self.jobs.get(id)
    }

    // ---- inputs -------------------------------------------------------

    /// A command from a front door; its reply comes out as an effect
    /// addressed to `req`, now or (for blocking commands) later.
    pub fn handle_command(&mut self, now: UnixMs, req: RequestId, cmd: Command) {
        self.last_now = now;
        self.queues.collect(now, 16);
        let cmd = match cmd {
            Command::As { tenant, cmd } => {
                let Some(cmd) = self.scope(now, req, &tenant, *cmd) else {
                    return;
                };
                self.scoped.insert(req, tenant.prefix.clone());
                cmd
            }
            cmd => cmd,
        };
        let (key, cmd) = match cmd {
            Command::WithKey { key, cmd } => (Some(key), *cmd),
            cmd => (None, cmd),
        };
        let Some(cmd) = self.unlock(req, key.as_deref(), cmd) else {
            return;
        };
        match cmd {
            Command::AddJob(add) => self.add_job(now, req, *add),
            Command::AddPart {
                parent,
                index,
                body,
            } => self.add_part(now, req, parent, index, body),
            Command::Show { id } => {
                let reply = match self.jobs.get(&id) {
                    Some(job) => {
                        let mut s = job.status(now, &self.cfg.node_id);
                        s.progress = self.progress.get(&id).cloned();
                        Reply::Job(Box::new(s))
                    }
                    None => no_job(&id),
                };
                self.reply(req, reply);
            }
            Command::Explain { id } => {
                let reply = match self.explain(now, &id) {
                    Some(x) => Reply::Explain(Box::new(x)),
                    None => no_job(&id),
                };
                self.reply(req, reply);
            }
            Command::Wait { id, timeout_ms } => {
                match bounds::timeout_ms("wait timeout", timeout_ms) {
                    Ok(ms) => self.wait(now, req, id, ms, false, false),
                    Err(e) => self.reply(req, Reply::error(ErrorCode::Err, e)),
                }
            }
            Command::Ack { ids, fast } => {
                let mut n = 0;
                for id in ids {
                    if self.ack_everywhere(now, id, fast) {
                        n += 1;
                    }
                }
                self.reply(req, Reply::Count(n));
            }
            Command::DelJob { ids } => {
                let mut n = 0;
                for id in ids {
                    if self.remove_job(&id, "deleted") {
                        n += 1;
                    }
                }
                self.reply(req, Reply::Count(n));
            }
            Command::ListModules => {
                let mut list: Vec<ModuleInfo> = self
                    .modules
                    .iter()
                    .map(|(h, m)| module_info(*h, m, &self.cfg.node_id))
                    .collect();
                list.sort_by_key(|m| m.hash);
                let cat = wasque_sdk::proto::ModuleCatalogue {
                    modules: list,
                    unanswered: Vec::new(),
                };
                self.reply(req, Reply::Modules(cat));
            }
            Command::StatModule { hash } => {
                let reply = match self.modules.get(&hash) {
                    Some(m) => Reply::Module(module_info(hash, m, &self.cfg.node_id)),
                    None => no_module(&hash),
                };
                self.reply(req, reply);
            }
            Command::Inspect(q) => {
                let answer = self.inspect(now, q);
                self.reply(req, Reply::Inspect(Box::new(answer)));
            }
            Command::DeleteModule { hash } => {
                let reply = match self.modules.get(&hash) {
                    None => no_module(&hash),
                    Some(m) if m.jobs > 0 => Reply::error(
                        ErrorCode::Err,
                        format!(
                            "module {hash} is used by {} queued or running job(s); ack or delete them first",
                            m.jobs
                        ),
                    ),
                    Some(_) => {
                        self.modules.remove(&hash);
                        self.effects.push_back(Effect::RemoveModule(hash));
                        Reply::Ok
                    }
                };
                self.reply(req, reply);
            }
            Command::GetJob(g) => self.get_job(now, req, *g),
            Command::Cancel { ids } => self.cancel_cmd(now, req, ids),
            Command::Nack { ids, delay_ms } => self.nack_cmd(now, req, ids, delay_ms),
            Command::Dlq(d) => self.dlq_cmd(now, req, *d),
            Command::QRetry { queue, set } => self.qretry_cmd(now, req, queue, set),
            Command::Enqueue { ids } => self.requeue_cmd(now, req, ids, false),
            Command::Dequeue { ids } => self.dequeue_cmd(now, req, ids),
            Command::Working { id } => self.working(now, req, id),
            Command::Finish {
                id,
                output,
                exit_code,
            } => self.finish(now, req, id, output, exit_code),
            Command::QLen { queue } => {
                let n = self.queues.len_of(&queue) as u64;
                self.reply(req, Reply::Count(n));
            }
            Command::QPeek { queue, count } => self.qpeek(req, &queue, count),
            Command::QStat { queue } => self.qstat(now, req, &queue),
            Command::QScan(q) => self.qscan(req, q),
            Command::JScan(j) => self.jscan(now, req, *j),
            // Taken apart above.
            Command::WithKey { .. } | Command::As { .. } => {}
            // The driver panics on it before it gets here.
            Command::DebugPanicDriver => self.reply(req, Reply::Ok),
            Command::Pause { queue, set, bcast } => self.pause(now, req, queue, set, bcast),
            Command::FlushAll => self.flush_all(now, req),
            Command::QPolicy { queue, set } => {
                if let Some((policy, mode)) = set {
                    self.set_queue_policy(
                        now,
                        &queue,
                        QueuePolicy {
                            policy,
                            mode,
                            set_at: now,
                        },
                    );
                }
                let p = self.queue_policy(&queue);
                self.reply(
                    req,
                    Reply::Words(vec![p.policy.as_str().into(), p.mode.as_str().into()]),
                );
            }
        }
        self.dispatch(now);
    }

    /// Adds the store could not write (their `ADDJOB` was answered with
    /// the error): forgotten, their idempotency keys too.
    pub fn handle_failed_adds(&mut self, now: UnixMs, ids: Vec<JobId>) {
        self.last_now = self.last_now.max(now);
        for id in ids {
            self.remove_job_as(&id, "not written (its add failed)", false);
        }
        self.dispatch(now);
    }

    /// A blocked request's client went away: forget its waiter.
    pub fn handle_cancel(&mut self, req: RequestId) {
        self.scoped.remove(&req);
        if let Some(id) = self.waiting_on.remove(&req) {
            self.drop_waiter(&id, req);
        }
        // Queues note their idle time from their own last use.
        self.unblock(0, req);
    }

    /// A module was stored and compiled by the executor (upload, or found
    /// on disk at start). Idempotent.
    pub fn handle_module_added(&mut self, hash: ModuleHash, size: u64) {
        self.modules
            .entry(hash)
            .or_insert(ModuleEntry { size, jobs: 0 });
        if self.cluster.fetching.contains_key(&hash)
            || self.cluster.awaiting_module.contains_key(&hash)
        {
            // Jobs that came from peers without it can run now.
            let now = self.last_now;
            self.module_arrived(now, hash);
        }
    }

    /// Info on a module the engine knows.
    pub fn module(&self, hash: &ModuleHash) -> Option<ModuleInfo> {
        self.modules
            .get(hash)
            .map(|m| module_info(*hash, m, &self.cfg.node_id))
    }

    /// Every module the node holds, by hash (the module catalogue's
    /// answer to a peer).
    pub fn modules_held(&self) -> Vec<(ModuleHash, u64, u64)> {
        let mut list: Vec<_> = self
            .modules
            .iter()
            .map(|(h, m)| (*h, m.size, m.jobs))
            .collect();
        list.sort_by_key(|m| m.0);
        list
    }

    /// The unfinished jobs held here that need module `hash`, held or not
    /// (a job waiting for a fetch, a holder's copy, a distributed job's
    /// parts to come): how many, and the oldest `max_ids` of them. With a
    /// tenant, only that tenant's jobs count. A scan of every job (about
    /// a millisecond per 100,000): asked when a module is removed.
    pub fn module_users(
        &self,
        hash: &ModuleHash,
        tenant: Option<&str>,
        max_ids: usize,
    ) -> (u64, Vec<JobId>) {
        let mut ids = std::collections::BTreeSet::new();
        let mut count = 0u64;
        for j in self.jobs.values() {
            if j.state.is_finished() {
                continue;
            }
            if j.module() != Some(*hash) && j.gather().is_none_or(|g| g.map != *hash) {
                continue;
            }
            if let Some(t) = tenant
                && crate::tenant::tenant_of_queue(&j.queue) != Some(t)
            {
                continue;
            }
            count += 1;
            // The oldest ones (ids order by age), whatever the table's order.
            ids.insert(j.id);
            if ids.len() > max_ids {
                ids.pop_last();
            }
        }
        (count, ids.into_iter().collect())
    }

    /// An execution ended.
    pub fn handle_exec_done(
        &mut self,
        now: UnixMs,
        job_id: JobId,
        attempt: u32,
        result: JobResult,
    ) {
        self.last_now = self.last_now.max(now);
        self.running = self.running.saturating_sub(1);
        self.executing.remove(&job_id);
        self.run_started.remove(&job_id);
        self.progress.remove(&job_id);
        self.run_avg_us = match self.run_avg_us {
            0 => result.duration_us.max(1),
            avg => (avg * 7 + result.duration_us) / 8,
        };
        self.fair.finished(&job_id, result.fuel_used);
        if let Some(job) = self.jobs.get(&job_id)
            && crate::tenant::tenant_of_queue(&job.queue).is_some()
        {
            let (queue, memory) = (job.queue.clone(), job.limits().memory_bytes);
            self.charge_tenant(&queue, result.fuel_used, memory, result.duration_us);
        }
        let this_run = self
            .jobs
            .get(&job_id)
            .is_some_and(|j| j.state == JobState::Active && j.counters.attempts == attempt);
        // A failure of a job with a retry policy: run again after its
        // backoff, or buried (life.rs).
        let has_policy = self.jobs.get(&job_id).is_some_and(|j| j.retry().is_some());
        let handled = this_run && !result.is_success() && has_policy && {
            if self.cfg.events
                && let Some(job) = self.jobs.get(&job_id)
            {
                self.effects.push_back(Effect::Event(JobEvent {
                    id: job_id,
                    queue: job.queue.clone(),
                    kind: JobEventKind::Finished {
                        class: result.error_class,
                        run_us: result.duration_us,
                        fuel_used: result.fuel_used,
                    },
                }));
            }
            self.after_failed_run(now, job_id, &result)
        };
        if this_run
            && !handled
            && let Some(job) = self.jobs.get_mut(&job_id)
        {
            job.state = if result.is_success() {
                JobState::Done
            } else {
                JobState::Failed
            };
            if let Some(m) = job.module()
                && let Some(entry) = self.modules.get_mut(&m)
            {
                entry.jobs = entry.jobs.saturating_sub(1);
            }
            let nocache = job.nocache;
            let finished = JobEventKind::Finished {
                class: result.error_class,
                run_us: result.duration_us,
                fuel_used: result.fuel_used,
            };
            job.result = Some(Box::new(result.clone()));
            let status = job.status(now, &self.cfg.node_id);
            if nocache {
                job.result = None;
            }
            if self.cfg.events {
                self.effects.push_back(Effect::Event(JobEvent {
                    id: job_id,
                    queue: job.queue.clone(),
                    kind: finished,
                }));
            }
            self.journal_put(&job_id);
            self.share_result(job_id);
            self.finish_waiters(now, job_id, status);
            self.part_finished(now, job_id);
        }
        self.dispatch(now);
        // Slots free and nothing ready here: peers may have a backlog.
        self.ask_for_work(now);
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: UnixMs) {
        self.last_now = now;
        while let Some(t) = self.timers.pop_due(now) {
            match t {
                Timer::Ready(id) => {
                    self.place(now, id, Cause::First);
                }
                Timer::Expire(id) => {
                    // TTL ends fire by slot (timer.rs): the job may be gone,
                    // or be another holding of the id with a later end.
                    let Some(job) = self.jobs.get(&id) else {
                        continue;
                    };
                    if job.expires_at > now || job.state == JobState::Dead {
                        continue;
                    }
                    if job.state == JobState::Acked {
                        self.cluster.acks.remove(&id);
                        self.drop_acked_stub(&id);
                    } else {
                        self.remove_job(&id, "expired (TTL)");
                    }
                }
                Timer::ReplTimeout(id) => self.repl_timeout(now, id),
                Timer::WillQueue(id) => self.will_queue_due(now, id),
                Timer::ClusterTick => self.cluster_tick(now),
                Timer::Tombstones => self.sweep_tombstones(now),
                Timer::AfterPoll => self.after_poll(now),
                Timer::Requeue(id) => {
                    let Some(job) = self.jobs.get_mut(&id) else {
                        continue;
                    };
                    job.set_requeue_at(None);
                    tracing::debug!(job = %id, state = ?job.state, "retry timer");
                    if self.requeue_announced(now, id) {
                        continue;
                    }
                    let Some(job) = self.jobs.get(&id) else {
                        continue;
                    };
                    let paused_in = self.queues.get(&job.queue).is_some_and(|q| q.pause.input);
                    if paused_in {
                        // Disque: a queue paused in input takes nothing
                        // back; try again after another retry period.
                        self.arm_requeue(now, id);
                    } else if self.bury_if_spent(now, id, "not acknowledged within RETRY", false) {
                        continue;
                    } else if self.enqueue(now, id, Cause::Again)
                        && self.cfg.events
                        && let Some(job) = self.jobs.get(&id)
                    {
                        self.effects.push_back(Effect::Event(JobEvent {
                            id,
                            queue: job.queue.clone(),
                            kind: JobEventKind::Requeued,
                        }));
                    }
                }
                Timer::WaitTimeout(req) => {
                    if self.blocked_timeout(now, req) {
                        continue;
                    }
                    if let Some(id) = self.waiting_on.remove(&req) {
                        // Answered before its end: from now on it must last.
                        self.journal_promise(&id);
                        let waiter = self.drop_waiter(&id, req);
                        let reply = match self.jobs.get(&id) {
                            Some(job) if waiter.is_some_and(|w| w.add) => {
                                Reply::Job(Box::new(job.status(now, &self.cfg.node_id)))
                            }
                            _ => Reply::NotFinished,
                        };
                        self.reply(req, reply);
                    }
                }
            }
        }
        self.dispatch(now);
    }

    // ---- outputs ------------------------------------------------------

    /// The next effect to carry out.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.flush_journal();
        self.effects.pop_front()
    }

    /// When the engine next wants `handle_timeout`.
    pub fn poll_timeout(&self) -> Option<UnixMs> {
        self.timers.next()
    }

    // ---- internals ----------------------------------------------------

    fn reply(&mut self, to: RequestId, mut reply: Reply) {
        if !self.scoped.is_empty()
            && let Some(prefix) = self.scoped.remove(&to)
        {
            tenant::unscope(&prefix, &mut reply);
        }
        self.effects.push_back(Effect::Reply { to, reply });
    }

    fn add_job(&mut self, now: UnixMs, req: RequestId, a: AddJob) {
        if self.add_deduped(now, req, &a) {
            return;
        }
        match self.check_add(&a) {
            Ok(limits) => {
                let ttl_secs = a.ttl_secs.unwrap_or(self.cfg.default_ttl_secs);
                // Disque: RETRY defaults to a tenth of the TTL, at most the
                // node default (5 minutes) and at least 1 s.
                let retry_secs = a.retry_secs.unwrap_or_else(|| {
                    (ttl_secs / 10).clamp(1, self.cfg.default_retry_secs.max(1))
                });
                // Checked in range by check_add; saturating all the same,
                // so no client value can wrap the clock.
                let delay_ms = a.delay_secs.unwrap_or(0).saturating_mul(1000);
                let id = self.ids.next(now, retry_secs == 0, ttl_secs);
                // A distributed job's parent stays on this node (its parts
                // are replicated; see gather.rs).
                let copies = if a.map.is_some() {
                    1
                } else {
                    self.copies_for(&a).max(1)
                };
                let external = self.adds_externally(&a);
                let mut nodes = Vec::new();
                if external {
                    // Every copy on a peer (check_add made sure there are
                    // enough).
                    nodes.extend(self.pick_peers(copies as usize));
                } else if copies > 1 {
                    nodes.push(self.cluster.me.unwrap_or(NodeName([0; 20])));
                    nodes.extend(self.pick_peers(copies as usize - 1));
                }
                // A synchronous add waits for its copies before it is live.
                let sync_repl = (external || nodes.len() > 1) && !a.asynchronous;
                let job = Job {
                    id,
                    queue: self.queues.intern(&a.queue),
                    body: a.body.into_boxed_slice(),
                    priority: a.priority,
                    replicate: copies,
                    retry_ms: retry_secs.saturating_mul(1000),
                    expires_at: now.saturating_add(ttl_secs.saturating_mul(1000)),
                    ready_at: now.saturating_add(delay_ms),
                    nocache: a.nocache,
                    state: if a.map.is_some() {
                        JobState::Waiting
                    } else if sync_repl {
                        JobState::WaitRepl
                    } else {
                        JobState::Active
                    },
                    created_at: now,
                    queued_at: now,
                    requeue_at: None,
                    counters: Counters::default(),
                    result: None,
                    nodes,
                    extra: crate::job::JobExtra {
                        module: a.module,
                        limits: a.module.map(|_| limits),
                        args: a.args,
                        group: a.group,
                        parent: None,
                        asynckey: a.asynckey,
                        gather: a
                            .map
                            .map(|m| Box::new(Gather::new(m.map, m.parts, m.attempts))),
                        retry: self.retry_for(&a.queue, a.retry.as_ref()),
                        idempotency_window_ms: a
                            .idempotency_key
                            .as_ref()
                            .and(a.idempotency_window_secs)
                            .map(|s| s.saturating_mul(1000)),
                        idempotency_key: a.idempotency_key,
                        after: a.after.as_ref().map(crate::job::AfterStatus::new),
                    }
                    .boxed(),
                };
                let replicated = external || job.nodes.len() > 1;
                if let Some(m) = job.module()
                    && let Some(entry) = self.modules.get_mut(&m)
                {
                    entry.jobs += 1;
                }
                self.timers.set(job.expires_at, Timer::Expire(id));
                if delay_ms > 0 && !sync_repl {
                    self.timers.set(job.ready_at, Timer::Ready(id));
                }
                self.emit(
                    &job,
                    JobEventKind::Added {
                        wasm: job.is_wasm(),
                        delayed: delay_ms > 0,
                    },
                );
                let parent = job.gather().is_some();
                self.jobs.insert(Box::new(job));
                // A `run` (add, wait and ack in one request) kept on this
                // node only is answered after its end: nothing to write
                // before its wait ends early (journal.rs, `deferred`).
                if a.wait_ms.is_some() && a.ack_on_result && !replicated && !parent && delay_ms == 0
                {
                    self.journal_defer(&id);
                }
                self.journal_put(&id);
                if parent {
                    self.reply(req, Reply::JobAdded(id));
                    return;
                }
                if external {
                    self.cluster.external.insert(id);
                }
                if sync_repl {
                    let wait = a.wait_ms.map(|ms| (ms, a.ack_on_result));
                    let explicit = a.replicate.is_some();
                    self.start_replication(now, Some(req), id, a.timeout_ms, wait, explicit);
                    return;
                }
                if external {
                    // ASYNC: the copies are on their way; this node keeps
                    // none (Disque's discard of the local copy).
                    self.start_replication(now, None, id, a.timeout_ms, None, true);
                    self.hand_external(now, id);
                    self.reply(req, Reply::JobAdded(id));
                    return;
                }
                if replicated {
                    self.start_replication(now, None, id, a.timeout_ms, None, true);
                }
                if delay_ms == 0 {
                    self.place(now, id, Cause::First);
                }
                match a.wait_ms {
                    None => self.reply(req, Reply::JobAdded(id)),
                    Some(ms) => self.wait(now, req, id, ms.max(1), a.ack_on_result, true),
                }
            }
            Err(reply) => self.reply(req, reply),
        }
    }

    /// Checks an add against the node's bounds; returns the job's limits.
    fn check_add(&self, a: &AddJob) -> Result<Limits, Reply> {
        if self.cluster.leaving && !self.adds_externally(a) {
            return Err(Reply::error(
                ErrorCode::Leaving,
                "This node is leaving the cluster: add the job to another node",
            ));
        }
        if a.queue.is_empty() {
            return Err(Reply::error(ErrorCode::Err, "queue name is empty"));
        }
        if a.body.len() > self.cfg.max_body_bytes {
            return Err(Reply::error(
                ErrorCode::TooBig,
                format!(
                    "job body of {} bytes is over the node's bound of {} bytes",
                    a.body.len(),
                    self.cfg.max_body_bytes
                ),
            ));
        }
        if a.priority > 9 {
            return Err(Reply::error(ErrorCode::Err, "priority must be 0..=9"));
        }
        if a.ttl_secs == Some(0) {
            return Err(Reply::error(ErrorCode::Err, "TTL must be a number > 0"));
        }
        // Every value that meets the clock, in range (api/bounds.rs): the
        // typed doors (QUIC) reach here with whatever u64 they were sent.
        let range = [
            ("TTL", a.ttl_secs.map(|v| bounds::secs("TTL", v))),
            ("RETRY", a.retry_secs.map(|v| bounds::secs("RETRY", v))),
            ("DELAY", a.delay_secs.map(|v| bounds::secs("DELAY", v))),
            ("timeout", Some(bounds::timeout_ms("timeout", a.timeout_ms))),
            ("wait", a.wait_ms.map(|v| bounds::timeout_ms("wait", v))),
        ];
        for (_, r) in range {
            if let Some(Err(e)) = r {
                return Err(Reply::error(ErrorCode::Err, e));
            }
        }
        let copies = self.copies_for(a);
        if a.retry_secs == Some(0) && copies > 1 {
            return Err(Reply::error(
                ErrorCode::Err,
                "With RETRY set to 0 please explicitly set REPLICATE to 1 (at-most-once delivery)",
            ));
        }
        let ttl = a.ttl_secs.unwrap_or(self.cfg.default_ttl_secs);
        if a.delay_secs.is_some_and(|d| d >= ttl) {
            return Err(Reply::error(
                ErrorCode::Err,
                "The specified DELAY is greater than TTL. Job refused since would never be delivered",
            ));
        }
        // Replicated externally, every copy is on a peer.
        let reachable = self.cluster.peers.len() as u32 + u32::from(!self.adds_externally(a));
        if copies > reachable {
            return Err(Reply::error(
                ErrorCode::NoRepl,
                format!(
                    "Not enough reachable nodes for the requested replication level ({copies} copies, {reachable} node(s) reachable)"
                ),
            ));
        }
        if copies == 0 {
            return Err(Reply::error(ErrorCode::Err, "REPLICATE must be >= 1"));
        }
        if self.queues.get(&a.queue).is_some_and(|q| q.pause.input) {
            return Err(Reply::error(
                ErrorCode::Paused,
                "Queue paused in input, try later",
            ));
        }
        if let Some(max) = a.maxlen
            && self.queues.len_of(&a.queue) as u64 >= max
        {
            return Err(Reply::error(
                ErrorCode::MaxLen,
                format!("queue {} is at its MAXLEN of {max}", a.queue),
            ));
        }
        if self.jobs.len() >= self.cfg.max_jobs {
            return Err(Reply::error(
                ErrorCode::Quota,
                format!("node holds its maximum of {} jobs", self.cfg.max_jobs),
            ));
        }
        let (d, mx) = (self.cfg.default_limits, self.cfg.max_limits);
        let limits = Limits {
            fuel: a.limits.fuel.unwrap_or(d.fuel),
            memory_bytes: a.limits.memory_bytes.unwrap_or(d.memory_bytes),
            deadline_ms: a.limits.deadline_ms.unwrap_or(d.deadline_ms),
        };
        for (what, asked, max) in [
            ("fuel", limits.fuel, mx.fuel),
            ("memory", limits.memory_bytes, mx.memory_bytes),
            ("deadline (ms)", limits.deadline_ms, mx.deadline_ms),
        ] {
            if asked > max {
                return Err(Reply::error(
                    ErrorCode::Quota,
                    format!("{what} of {asked} is over the node maximum of {max}"),
                ));
            }
            if asked == 0 {
                return Err(Reply::error(ErrorCode::Err, format!("{what} must be > 0")));
            }
        }
        if let Some(spec) = &a.map {
            self.check_map(spec, a)?;
        }
        if let Some(p) = &a.retry {
            p.check().map_err(|e| Reply::error(ErrorCode::Err, e))?;
        }
        if let Some(spec) = &a.after {
            self.check_after(&a.queue, spec, a.map.is_some())?;
        }
        // Names are resolved by the door (`Handle::scoped`); one that got
        // here unresolved must not become a plain job.
        if let Some(name) = &a.module_name {
            return Err(Reply::error(
                ErrorCode::NoModule,
                format!("module name {name} was not resolved to a hash"),
            ));
        }
        // A module only a peer holds is fine: it is fetched by hash where
        // the job runs.
        if let Some(m) = &a.module
            && !self.modules.contains_key(m)
            && self.peer_with_module(m).is_none()
        {
            return Err(no_module(m));
        }
        Ok(limits)
    }

    fn wait(
        &mut self,
        now: UnixMs,
        req: RequestId,
        id: JobId,
        timeout_ms: u64,
        ack: bool,
        add: bool,
    ) {
        let Some(job) = self.jobs.get(&id) else {
            self.reply(req, no_job(&id));
            return;
        };
        // Finished: answer now. A `nocache` job's result went to the waiters
        // present when it finished; a later wait learns the job is done,
        // with no result, instead of waiting for an end that has passed.
        if job.state.is_finished() {
            let status = job.status(now, &self.cfg.node_id);
            let dead = job.state == JobState::Dead;
            self.reply(req, Reply::Job(Box::new(status)));
            if ack && !dead {
                // Its other holders hold the finished copy too.
                self.ack_everywhere(now, id, false);
            }
            return;
        }
        if timeout_ms == 0 {
            self.reply(req, Reply::NotFinished);
            return;
        }
        let deadline = now.saturating_add(timeout_ms);
        self.timers.set(deadline, Timer::WaitTimeout(req));
        self.waiting_on.insert(req, id);
        self.waiters.entry(id).or_default().push(Waiter {
            req,
            deadline: Some(deadline),
            ack,
            add,
        });
    }

    fn drop_waiter(&mut self, id: &JobId, req: RequestId) -> Option<Waiter> {
        let list = self.waiters.get_mut(id)?;
        let found = list.iter().position(|w| w.req == req).map(|pos| {
            let w = list.swap_remove(pos);
            if let Some(d) = w.deadline {
                self.timers.cancel(d, Timer::WaitTimeout(req));
            }
            w
        });
        if list.is_empty() {
            self.waiters.remove(id);
        }
        found
    }

    /// Hands a finished job's status to everyone waiting on it.
    ///
    /// The add's own waiter gets the status without the body: the client
    /// sent it, and echoing it doubled the bytes of every `run`'s reply.
    fn finish_waiters(&mut self, now: UnixMs, id: JobId, status: wasque_sdk::proto::JobStatus) {
        // Every end of a job passes here: jobs that wait for it learn it.
        self.after_ended(now, id, None);
        let Some(list) = self.waiters.remove(&id) else {
            return;
        };
        let n = list.len();
        let mut status = Some(status);
        let mut ack = false;
        for (i, w) in list.into_iter().enumerate() {
            self.waiting_on.remove(&w.req);
            if let Some(d) = w.deadline {
                self.timers.cancel(d, Timer::WaitTimeout(w.req));
            }
            ack |= w.ack;
            // The last waiter (most often the only one) takes it uncopied.
            let Some(mut s) = (if i + 1 < n {
                status.clone()
            } else {
                status.take()
            }) else {
                continue;
            };
            if w.add {
                s.body = Vec::new();
            }
            self.reply(w.req, Reply::Job(Box::new(s)));
        }
        // A dead letter stays for the operator, whoever waited on it.
        if ack
            && self
                .jobs
                .get(&id)
                .is_some_and(|j| j.state != JobState::Dead)
        {
            // As ACKJOB: the job's other holders keep a finished copy
            // (results go to every holder) until they hear of the ack.
            self.ack_everywhere(now, id, false);
        }
    }

    /// Keeps a job that came from elsewhere (a peer, the store): its queue
    /// name is shared with the queue's, like that of a job added here.
    fn hold(&mut self, mut job: Job) {
        job.queue = self.queues.intern(&job.queue);
        self.jobs.insert(Box::new(job));
    }

    /// Forgets a job wherever it is; waiters learn why. Returns whether the
    /// node held it. Its idempotency key, if it has one, is remembered
    /// until its window ends (`idem.rs`).
    fn remove_job(&mut self, id: &JobId, why: &str) -> bool {
        self.remove_job_as(id, why, true)
    }

    /// [`Self::remove_job`]; `remember: false` for a job whose add failed
    /// (its key must not answer later adds).
    fn remove_job_as(&mut self, id: &JobId, why: &str, remember: bool) -> bool {
        self.after_ended(self.last_now, *id, Some(why));
        let Some(job) = self.jobs.remove(id) else {
            return false;
        };
        tracing::debug!(job = %id, why, "removed");
        if remember {
            self.idem_forgotten(self.last_now, &job);
        }
        self.dead_removed(&job);
        self.cluster.lent.remove(id);
        self.cluster.external.remove(id);
        self.journal_remove(id);
        self.emit(&job, JobEventKind::Removed(inspect::removal(why)));
        self.timers.cancel(job.expires_at, Timer::Expire(*id));
        if job.ready_at > job.created_at {
            self.timers.cancel(job.ready_at, Timer::Ready(*id));
        }
        if let Some(t) = job.requeue_at() {
            self.timers.cancel(t, Timer::Requeue(*id));
        }
        if job.state == JobState::Queued {
            self.queues
                .remove(&job.queue, ReadyKey::new(job.priority, *id), job.is_wasm());
        }
        if !job.state.is_finished()
            && let Some(m) = job.module()
            && let Some(entry) = self.modules.get_mut(&m)
        {
            entry.jobs = entry.jobs.saturating_sub(1);
        }
        if let Some(list) = self.waiters.remove(id) {
            for w in list {
                self.waiting_on.remove(&w.req);
                if let Some(d) = w.deadline {
                    self.timers.cancel(d, Timer::WaitTimeout(w.req));
                }
                self.reply(
                    w.req,
                    Reply::error(
                        ErrorCode::NoJob,
                        format!("job {id} was {why} before it finished"),
                    ),
                );
            }
        }
        self.gather_removed(&job, why);
        true
    }

    /// Starts Wasm jobs while executor slots are free; with tenants, also
    /// over the slots for a tenant group the fair share picks that has
    /// fewer runs in hand than its weight's part of the slots
    /// (`FairShare::under_share`): at most twice the slots in all, or one
    /// more per group when the groups outnumber the slots.
    fn dispatch(&mut self, now: UnixMs) {
        let slots = self.slots_now();
        loop {
            let full = self.running >= slots;
            let popped = if self.queues.wasm_untenanted() {
                if full {
                    break;
                }
                self.queues.pop_wasm(now).map(|id| (id, Share::default()))
            } else {
                let ready = self.queues.wasm_groups();
                let total = self.fair.weight_total(&ready);
                if full && !ready.iter().any(|g| self.fair.under_share(g, total, slots)) {
                    break;
                }
                // Over the slots only for the group the fair share picks,
                // and only below its part: the picking by fuel used stays
                // what decides each tenant's share.
                let group = self.fair.pick(&ready).to_string();
                if full && !self.fair.under_share(&group, total, slots) {
                    break;
                }
                self.queues
                    .pop_wasm_in(now, &group)
                    .map(|id| (id, self.fair.started(id, &group)))
            };
            let Some((id, share)) = popped else {
                break;
            };
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            let Some(module) = job.module() else {
                continue;
            };
            job.state = JobState::Active;
            job.counters.attempts += 1;
            Self::count_attempt(job);
            self.running += 1;
            self.executing.insert(id);
            self.run_started.insert(id, now);
            if self.cfg.events {
                self.effects.push_back(Effect::Event(JobEvent {
                    id,
                    queue: job.queue.clone(),
                    kind: JobEventKind::Started {
                        attempt: job.counters.attempts,
                        ready_since: inspect::ready_since(job),
                    },
                }));
            }
            self.effects.push_back(Effect::Run(RunJob {
                job: id,
                attempt: job.counters.attempts,
                module,
                body: Bytes::copy_from_slice(&job.body),
                args: job.args().to_vec(),
                limits: job.limits(),
                share,
            }));
            self.journal_put(&id);
        }
    }
}

impl Engine {
    /// Executor slots the engine fills now: more while jobs are short.
    fn slots_now(&self) -> usize {
        if self.run_avg_us > 0 && self.run_avg_us <= SHORT_JOB_US {
            self.cfg.exec_slots_short.max(self.cfg.exec_slots)
        } else {
            self.cfg.exec_slots
        }
    }
}

/// Wasm jobs whose runs average at most this long (µs) are short: the
/// executor may hold [`EngineConfig::exec_slots_short`] of them, at most
/// a millisecond or so of work per thread.
pub const SHORT_JOB_US: u64 = 50;

fn no_job(id: &JobId) -> Reply {
    Reply::error(ErrorCode::NoJob, format!("no job {id} on this node"))
}

fn no_module(hash: &ModuleHash) -> Reply {
    Reply::error(
        ErrorCode::NoModule,
        format!("no module {hash} on this node (upload it first: wasque module put FILE.wasm)"),
    )
}

fn module_info(hash: ModuleHash, m: &ModuleEntry, me: &str) -> ModuleInfo {
    ModuleInfo {
        hash,
        size: m.size,
        compiled_now: false,
        jobs: m.jobs,
        holders: vec![me.to_string()],
        names: Vec::new(),
    }
}
