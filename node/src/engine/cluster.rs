//! The engine's side of the cluster, after Disque's: replication of new
//! jobs to other nodes before the add is answered, acknowledgements that
//! reach every holder (and are retried until they do), re-queue by any
//! holder once RETRY passes (announced with WILLQUEUE, so holders do not
//! all queue at once), results handed to every holder, federation (a node
//! whose consumers starve asks peers for queued jobs), and module fetches
//! for jobs that arrive without their module.
//!
//! Everything here is sans-IO like the rest of the engine: messages leave
//! as [`Effect::Send`], modules are asked for with [`Effect::FetchModule`],
//! and the live peers come in through [`Engine::handle_peers`].

use std::collections::BTreeSet;

use hashbrown::HashMap;

use super::ack::AckWait;
use super::getjob::Cause;
use super::peer::PeerMsg;
use super::{Effect, Engine, RequestId, Timer};
use crate::api::{ErrorCode, Reply};
use crate::job::{Job, JobId, JobState, ModuleHash, NodeName, UnixMs};
use crate::queue::ReadyKey;

/// How long a holder whose retry passed waits for a `Queued` answer
/// before queuing the job itself (Disque waits about as long).
const WILL_QUEUE_MS: u64 = 500;
/// Period of the cluster housekeeping tick: ack retransmission, federation
/// asks, module fetch retries.
const TICK_MS: u64 = 50;
/// The tick's slower chores (acks, module fetches) run this often.
const CHORES_MS: u64 = 250;
/// A queue with blocked GETJOB clients asks peers for jobs at most this
/// often.
const NEED_EVERY_MS: u64 = 250;
/// Idle executor slots ask for Wasm jobs at most this often: executors
/// drain work fast, so they ask again soon (every finished job may ask).
const NEED_WASM_EVERY_MS: u64 = 20;
/// A federation ask goes to at most this many peers with a backlog...
const ASK_BUSIEST: usize = 4;
/// ...and this many others, in turn.
const ASK_PROBES: usize = 2;
/// A module fetch that has not ended after this long is tried again.
const FETCH_RETRY_MS: u64 = 10_000;

/// A synchronous add waiting for its copies.
#[derive(Debug)]
pub(super) struct PendingRepl {
    pub req: RequestId,
    /// Peers asked that have not answered `GotJob` yet.
    pub waiting: Vec<NodeName>,
    pub asked: Vec<NodeName>,
    pub deadline: UnixMs,
    /// When the copies were last sent (see `resend_copies`).
    pub sent_at: UnixMs,
    /// The add also waits for the result (`wait_ms`, ack on result).
    pub wait: Option<(u64, bool)>,
    /// REPLICATE was given; without it (Disque's default of 3, or fewer
    /// reachable nodes) the add settles for the copies the live nodes can
    /// hold when a peer it waited on dies.
    pub explicit: bool,
    /// Later adds with the same idempotency key (`idem.rs`), answered as
    /// this one is: (request, its wait).
    pub also: Vec<(RequestId, Option<(u64, bool)>)>,
}

/// Counters for INFO and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClusterStats {
    pub peers: usize,
    pub copies_sent: u64,
    pub copies_held: u64,
    pub adds_norepl: u64,
    pub acks_pending: usize,
    pub requeued_by_holder: u64,
    pub jobs_moved_out: u64,
    pub jobs_moved_in: u64,
    pub module_fetches: u64,
}

/// What the engine knows of the cluster.
#[derive(Debug, Default)]
pub(super) struct ClusterState {
    pub me: Option<NodeName>,
    pub peers: BTreeSet<NodeName>,
    pub repl: HashMap<JobId, PendingRepl>,
    pub acks: HashMap<JobId, AckWait>,
    pub will_queue: HashMap<JobId, UnixMs>,
    pub awaiting_module: HashMap<ModuleHash, Vec<JobId>>,
    pub fetching: HashMap<ModuleHash, UnixMs>,
    pub need_sent: HashMap<Option<String>, UnixMs>,
    pub tick_at: Option<UnixMs>,
    pub rr: usize,
    /// `CLUSTER LEAVING yes`.
    pub leaving: bool,
    /// When `ask_for_work` last looked (it runs after many inputs).
    pub last_ask: UnixMs,
    /// Turn of the peers probed by federation asks (see `ask_targets`).
    pub ask_turn: usize,
    /// When the tick last resent acks and retried module fetches.
    pub chores_at: UnixMs,
    /// Jobs this node moved to a peer (federation), by job: if that peer
    /// dies they are queued again without waiting for RETRY.
    pub lent: HashMap<JobId, NodeName>,
    /// Adds replicated externally (Disque's: this node leaving, or under
    /// memory pressure) waiting for their copies: once confirmed, the job
    /// is handed to one of its holders and this node keeps none.
    pub external: hashbrown::HashSet<JobId>,
    pub stats: ClusterStats,
}

impl Engine {
    pub(super) fn me(&self) -> NodeName {
        self.cluster.me.unwrap_or(NodeName([0; 20]))
    }

    /// The live peers changed (membership): jobs are replicated to, and
    /// acks retried on, these nodes.
    pub fn handle_peers(&mut self, now: UnixMs, live: impl IntoIterator<Item = NodeName>) {
        let me = self.me();
        let live: BTreeSet<NodeName> = live.into_iter().filter(|n| *n != me).collect();
        let gone: Vec<NodeName> = self.cluster.peers.difference(&live).copied().collect();
        let new: Vec<NodeName> = live.difference(&self.cluster.peers).copied().collect();
        tracing::debug!(?gone, ?new, "engine peers changed");
        self.cluster.peers = live;
        for n in &new {
            self.share_policies(*n);
            self.share_retry_defaults(*n);
        }
        if !new.is_empty() {
            self.catch_up(&new);
            self.resend_copies(now);
        }
        self.cluster.stats.peers = self.cluster.peers.len();
        if !gone.is_empty() {
            self.rescue_from(now, &gone);
            self.replace_copies(now, &gone);
        }
        self.arm_tick(now);
    }

    /// Peers seen (again): the acks they have not confirmed and the
    /// WILLQUEUE rounds they have not answered reach them now, not at the
    /// next resend. A peer declared down after a short cut comes back
    /// here, and may hold the ack of a job another holder is about to
    /// queue again.
    fn catch_up(&mut self, new: &[NodeName]) {
        let me = self.me();
        let mut out = Vec::new();
        for (id, a) in &self.cluster.acks {
            for n in a.pending.iter().filter(|n| new.contains(n)) {
                out.push((*n, PeerMsg::SetAck(*id)));
            }
        }
        for p in self.cluster.repl.values_mut() {
            if p.waiting.iter().any(|n| new.contains(n)) {
                p.sent_at = 0;
            }
        }
        for id in self.cluster.will_queue.keys() {
            if let Some(job) = self.jobs.get(id) {
                for n in job.others(me).filter(|n| new.contains(n)) {
                    out.push((n, PeerMsg::WillQueue(*id)));
                }
            }
        }
        for (to, msg) in out {
            tracing::debug!(to = %to, msg = msg.kind(), "peer back: sent again");
            self.send(to, msg);
        }
    }

    /// Synchronous adds still waiting on a peer that was declared down ask
    /// another live peer instead, so they complete before their timeout.
    fn replace_copies(&mut self, now: UnixMs, gone: &[NodeName]) {
        let stuck: Vec<JobId> = self
            .cluster
            .repl
            .iter()
            .filter(|(_, p)| p.waiting.iter().any(|n| gone.contains(n)))
            .map(|(id, _)| *id)
            .collect();
        for id in stuck {
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            let mut spare: Vec<NodeName> = self
                .cluster
                .peers
                .iter()
                .filter(|n| !job.nodes.contains(n))
                .copied()
                .collect();
            let Some(p) = self.cluster.repl.get_mut(&id) else {
                continue;
            };
            let mut fresh = Vec::new();
            for dead in gone {
                if !p.waiting.contains(dead) {
                    continue;
                }
                match spare.pop() {
                    Some(n) => {
                        p.waiting.retain(|w| w != dead);
                        p.asked.push(n);
                        p.waiting.push(n);
                        job.nodes.retain(|h| h != dead);
                        job.nodes.push(n);
                        fresh.push(n);
                    }
                    None if !p.explicit && job.nodes.len() > 2 => {
                        // Default replication: one copy fewer, as if the
                        // dead node had not been reachable at the add.
                        p.waiting.retain(|w| w != dead);
                        p.asked.retain(|w| w != dead);
                        job.nodes.retain(|h| h != dead);
                        job.replicate = job.nodes.len() as u32;
                    }
                    None => {}
                }
            }
            if p.waiting.is_empty() {
                let p = self.cluster.repl.remove(&id).expect("present");
                self.timers.cancel(p.deadline, Timer::ReplTimeout(id));
                self.journal_put(&id);
                self.replicated(now, id, p);
                continue;
            }
            if fresh.is_empty() {
                continue;
            }
            let mut copy = job.clone();
            copy.state = JobState::Active;
            self.journal_put(&id);
            for to in fresh {
                self.cluster.stats.copies_sent += 1;
                self.send(to, PeerMsg::Replicate(Box::new(copy.clone())));
            }
        }
    }

    /// Peers were declared down: jobs that were queued or running there
    /// (the node that added them, or the one they were moved to) are
    /// queued again soon, through a WILLQUEUE round that waits
    /// `rescue_grace_ms` for answers, instead of after RETRY. The grace
    /// lets a node that was only cut off come back and answer (its job is
    /// queued there, or acked); one that stays away past it may run such a
    /// job too (at least once).
    fn rescue_from(&mut self, now: UnixMs, gone: &[NodeName]) {
        let me = self.me();
        let ids: Vec<JobId> = self
            .jobs
            .values()
            .filter(|j| {
                j.state == JobState::Active
                    && j.requeue_at().is_some()
                    && !self.executing.contains(&j.id)
                    && match self.cluster.lent.get(&j.id) {
                        Some(to) => gone.contains(to),
                        None => {
                            j.counters.attempts == 0
                                && j.nodes
                                    .first()
                                    .is_some_and(|n| *n != me && gone.contains(n))
                        }
                    }
            })
            .map(|j| j.id)
            .collect();
        for id in ids {
            self.cluster.lent.remove(&id);
            if let Some(t) = self.jobs.get_mut(&id).and_then(|j| j.take_requeue_at()) {
                self.timers.cancel(t, Timer::Requeue(id));
            }
            self.will_queue_round(now, id, self.cfg.rescue_grace_ms);
        }
    }

    /// The live peers, for placement and replies.
    pub fn peers(&self) -> impl Iterator<Item = &NodeName> {
        self.cluster.peers.iter()
    }

    pub fn cluster_stats(&self) -> ClusterStats {
        let mut s = self.cluster.stats;
        s.acks_pending = self.cluster.acks.len();
        s
    }

    /// A module fetch ended without the module: try again later (from
    /// another holder, when there is one).
    pub fn handle_module_fetch_failed(&mut self, hash: ModuleHash) {
        self.cluster.fetching.remove(&hash);
    }

    /// A message from a peer's engine.
    pub fn handle_peer(&mut self, now: UnixMs, from: NodeName, msg: PeerMsg) {
        self.last_now = self.last_now.max(now);
        match msg {
            PeerMsg::Replicate(job) => self.on_replicate(now, from, *job),
            PeerMsg::GotJob(id) => self.on_got_job(now, from, id),
            PeerMsg::SetAck(id) => self.on_set_ack(now, from, id),
            PeerMsg::GotAck(id) => self.on_got_ack(from, id),
            PeerMsg::DelJob(id) => self.on_del_job(from, id),
            PeerMsg::WillQueue(id) => self.on_will_queue(now, from, id),
            PeerMsg::Queued(id) => self.on_queued(now, from, id),
            PeerMsg::Finished { id, state, result } => self.on_finished(now, id, state, result),
            PeerMsg::NeedJobs { queue, count } => self.on_need_jobs(now, from, queue, count),
            PeerMsg::Policy { queue, policy } => self.on_policy(queue, policy),
            PeerMsg::Life(job) => self.on_life(now, *job),
            PeerMsg::Cancel(id) => self.on_cancel(now, id),
            PeerMsg::Pause { queue, pause } => self.set_pause(now, &queue, pause),
            PeerMsg::AfterQuery { scope, ids } => self.on_after_query(from, scope, ids),
            PeerMsg::AfterState { scope, states } => self.on_after_state(now, from, scope, states),
            PeerMsg::RetryDefault {
                queue,
                policy,
                set_at,
            } => self.on_retry_default(queue, policy, set_at),
            PeerMsg::YourJobs(jobs) => {
                for job in jobs {
                    self.on_moved_in(now, from, job);
                }
            }
        }
        self.dispatch(now);
        self.ask_for_work(now);
    }

    pub(super) fn send(&mut self, to: NodeName, msg: PeerMsg) {
        self.effects.push_back(Effect::Send { to, msg });
    }

    pub(super) fn arm_tick(&mut self, now: UnixMs) {
        if self.cluster.peers.is_empty() && self.cluster.acks.is_empty() {
            return;
        }
        if self.cluster.tick_at.is_none() {
            let at = now + TICK_MS;
            self.cluster.tick_at = Some(at);
            self.timers.set(at, Timer::ClusterTick);
        }
    }

    /// Copies a new add needs beyond this node, or the refusal.
    pub(super) fn replicas_for(&self, asked: Option<u32>) -> u32 {
        asked.unwrap_or_else(|| (self.cluster.peers.len() as u32 + 1).min(3))
    }

    /// An add's copies: its REPLICATE, or Disque's default of up to 3
    /// (as many as the nodes that may hold one: not this one when the add
    /// is replicated externally).
    pub(super) fn copies_for(&self, a: &crate::api::AddJob) -> u32 {
        if a.replicate.is_none() && self.adds_externally(a) {
            return (self.cluster.peers.len() as u32).min(3);
        }
        self.replicas_for(a.replicate)
    }

    /// Picks `n` live peers, rotating so copies spread evenly.
    pub(super) fn pick_peers(&mut self, n: usize) -> Vec<NodeName> {
        let peers: Vec<NodeName> = self.cluster.peers.iter().copied().collect();
        if peers.is_empty() || n == 0 {
            return vec![];
        }
        self.cluster.rr = self.cluster.rr.wrapping_add(1);
        (0..n.min(peers.len()))
            .map(|i| peers[(self.cluster.rr + i) % peers.len()])
            .collect()
    }

    /// Sends the new job's copies; a synchronous add replies once every
    /// copy is confirmed (or with `-NOREPL` at its deadline).
    pub(super) fn start_replication(
        &mut self,
        now: UnixMs,
        req: Option<RequestId>,
        id: JobId,
        timeout_ms: u64,
        wait: Option<(u64, bool)>,
        explicit: bool,
    ) {
        let me = self.me();
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        let asked: Vec<NodeName> = job.others(me).collect();
        let mut copy = job.clone();
        copy.state = JobState::Active;
        self.cluster.stats.copies_sent += asked.len() as u64;
        // One message for every peer: encoded once by the transport.
        self.effects.push_back(Effect::SendMany {
            to: asked.clone(),
            msg: PeerMsg::Replicate(Box::new(copy)),
        });
        if let Some(req) = req {
            // Disque: a timeout of 0 means the default.
            let ms = if timeout_ms == 0 { 5_000 } else { timeout_ms };
            let deadline = now.saturating_add(ms);
            self.timers.set(deadline, Timer::ReplTimeout(id));
            self.cluster.repl.insert(
                id,
                PendingRepl {
                    req,
                    waiting: asked.clone(),
                    asked,
                    deadline,
                    sent_at: now,
                    wait,
                    explicit,
                    also: Vec::new(),
                },
            );
        }
    }

    fn on_got_job(&mut self, now: UnixMs, from: NodeName, id: JobId) {
        let Some(p) = self.cluster.repl.get_mut(&id) else {
            return;
        };
        p.waiting.retain(|n| *n != from);
        if !p.waiting.is_empty() {
            return;
        }
        let Some(p) = self.cluster.repl.remove(&id) else {
            return;
        };
        self.timers.cancel(p.deadline, Timer::ReplTimeout(id));
        self.replicated(now, id, p);
    }

    /// Whether an add is replicated externally, as Disque does while the
    /// node is leaving or past 75 % of `maxmemory`: its copies go to peers
    /// only, one of them queues it, and this node keeps none. Not for
    /// adds that need the job here (a wait for its result, a distributed
    /// job, one that waits for other jobs), nor without live peers.
    pub(super) fn adds_externally(&self, a: &crate::api::AddJob) -> bool {
        (self.cluster.leaving || self.memory_level > 0)
            && !self.cluster.peers.is_empty()
            && a.wait_ms.is_none()
            && a.map.is_none()
            && a.after.is_none()
    }

    /// An externally replicated job's copies are out: one holder is asked
    /// to queue it (the federation's hand-over) and this node forgets its
    /// own, which never was live.
    pub(super) fn hand_external(&mut self, now: UnixMs, id: JobId) {
        self.cluster.external.remove(&id);
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        let holders: Vec<NodeName> = job.nodes.clone();
        if holders.is_empty() {
            return;
        }
        self.cluster.rr = self.cluster.rr.wrapping_add(1);
        let target = holders[self.cluster.rr % holders.len()];
        let mut copy = job.clone();
        copy.state = JobState::Queued;
        // Delayed: the holders' own requeue timers queue it when due.
        if copy.ready_at <= now {
            self.cluster.stats.jobs_moved_out += 1;
            self.send(target, PeerMsg::YourJobs(vec![copy]));
        }
        self.remove_job_as(&id, "replicated externally", false);
    }

    /// Every copy is stored: the job becomes live here and the add (and
    /// any add with its idempotency key meanwhile) is answered.
    fn replicated(&mut self, now: UnixMs, id: JobId, p: PendingRepl) {
        if self.cluster.external.contains(&id) {
            self.hand_external(now, id);
            let first = std::iter::once((p.req, Reply::JobAdded(id)));
            let also = p.also.into_iter().map(|(r, _)| (r, Reply::Duplicate(id)));
            for (req, added) in first.chain(also) {
                self.reply(req, added);
            }
            return;
        }
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        job.state = JobState::Active;
        let ready_at = job.ready_at;
        if ready_at > now {
            self.timers.set(ready_at, Timer::Ready(id));
            self.journal_put(&id);
        } else {
            self.place(now, id, Cause::First);
        }
        let first = std::iter::once((p.req, p.wait, Reply::JobAdded(id)));
        let also = p
            .also
            .into_iter()
            .map(|(r, w)| (r, w, Reply::Duplicate(id)));
        for (req, wait, added) in first.chain(also) {
            match wait {
                None => self.reply(req, added),
                Some((ms, ack)) => self.wait(now, req, id, ms.max(1), ack, true),
            }
        }
    }

    /// The add's deadline passed with copies missing: roll it back.
    pub(super) fn repl_timeout(&mut self, now: UnixMs, id: JobId) {
        let Some(p) = self.cluster.repl.remove(&id) else {
            return;
        };
        let _ = now;
        for to in &p.asked {
            self.send(*to, PeerMsg::DelJob(id));
        }
        // The add failed: its idempotency key is not remembered.
        self.remove_job_as(&id, "not replicated in time", false);
        self.cluster.stats.adds_norepl += 1;
        let got = p.asked.len() - p.waiting.len();
        let reply = Reply::error(
            ErrorCode::NoRepl,
            format!(
                "Timeout reached before replicating to the requested number of nodes: {} of {} copies confirmed",
                got + 1,
                p.asked.len() + 1
            ),
        );
        for (req, _) in p.also {
            self.reply(req, reply.clone());
        }
        self.reply(p.req, reply);
    }

    fn on_replicate(&mut self, now: UnixMs, from: NodeName, mut job: crate::job::Job) {
        tracing::debug!(job = %job.id, from = %from, nodes = ?job.nodes, "replicate in");
        let id = job.id;
        if self.jobs.contains_key(&id) || self.cluster.acks.contains_key(&id) {
            // Already held (a retransmission) or acknowledged here.
            self.send(from, PeerMsg::GotJob(id));
            return;
        }
        if job.expires_at <= now {
            return;
        }
        self.ids.observe(id);
        let me = self.me();
        if !job.nodes.contains(&me) {
            job.nodes.push(me);
        }
        job.state = JobState::Active;
        job.counters.attempts = 0;
        // Held, not queued: queued here only if nobody acks it within RETRY.
        let base = job.created_at.max(job.ready_at);
        let at = base.saturating_add(job.retry_ms).max(now + 1);
        job.set_requeue_at((job.retry_ms > 0).then_some(at));
        if let Some(t) = job.requeue_at() {
            self.timers.set(t, Timer::Requeue(id));
        }
        self.timers.set(job.expires_at, Timer::Expire(id));
        let module = job.module();
        if let Some(m) = module
            && let Some(entry) = self.modules.get_mut(&m)
        {
            entry.jobs += 1;
        }
        self.hold(job);
        self.journal_put(&id);
        self.cluster.stats.copies_held += 1;
        if let Some(m) = module {
            self.want_module(now, m, from);
        }
        self.send(from, PeerMsg::GotJob(id));
        // A copy that waits for other jobs to end waits here too.
        if self.jobs.get(&id).is_some_and(|j| j.awaits_deps()) {
            self.after_arrived(now, id);
        }
    }

    /// Starts fetching a module this node lacks (once for many jobs).
    pub(super) fn want_module(&mut self, now: UnixMs, hash: ModuleHash, from: NodeName) {
        if self.modules.contains_key(&hash) || self.cluster.fetching.contains_key(&hash) {
            return;
        }
        self.cluster.fetching.insert(hash, now);
        self.cluster.stats.module_fetches += 1;
        self.effects.push_back(Effect::FetchModule { hash, from });
    }

    /// A module arrived: queue the jobs that waited for it.
    pub(super) fn module_arrived(&mut self, now: UnixMs, hash: ModuleHash) {
        self.cluster.fetching.remove(&hash);
        let Some(ids) = self.cluster.awaiting_module.remove(&hash) else {
            return;
        };
        for id in ids {
            let Some(job) = self.jobs.get(&id) else {
                continue;
            };
            if job.state == JobState::Queued {
                let (q, key) = (job.queue.clone(), ReadyKey::new(job.priority, id));
                self.queues.push(&q, key, true, now);
                if let Some(entry) = self.modules.get_mut(&hash) {
                    entry.jobs += 1;
                }
            }
        }
        self.dispatch(now);
    }

    /// A peer to fetch module `m` from for `job`: a live peer whose advert
    /// lists the module (the job's holders first), else the job's first
    /// other holder.
    pub(super) fn module_source(&self, job: &Job, m: &ModuleHash) -> Option<NodeName> {
        let me = self.me();
        let advertises = |n: &NodeName| {
            self.cluster.peers.contains(n)
                && self
                    .placement
                    .loads
                    .get(n)
                    .is_some_and(|l| l.modules.contains(m))
        };
        job.others(me)
            .find(|n| advertises(n))
            .or_else(|| self.peer_with_module(m))
            .or_else(|| job.others(me).next())
    }

    /// Some live peer whose advert lists module `m`.
    pub(super) fn peer_with_module(&self, m: &ModuleHash) -> Option<NodeName> {
        self.cluster.peers.iter().copied().find(|n| {
            self.placement
                .loads
                .get(n)
                .is_some_and(|l| l.modules.contains(m))
        })
    }

    /// Called when a Wasm job is to be queued here: false if its module is
    /// missing (the job waits, and the module is fetched from a holder).
    pub(super) fn module_ready_for(&mut self, now: UnixMs, id: JobId) -> bool {
        let Some(job) = self.jobs.get(&id) else {
            return true;
        };
        let Some(m) = job.module() else {
            return true;
        };
        if self.modules.contains_key(&m) {
            return true;
        }
        let from = self.module_source(job, &m);
        self.cluster.awaiting_module.entry(m).or_default().push(id);
        if let Some(from) = from {
            self.want_module(now, m, from);
        }
        false
    }

    /// A retry timer fired on a job other nodes also hold: announce the
    /// re-queue first. Returns false for a job kept on this node only.
    pub(super) fn requeue_announced(&mut self, now: UnixMs, id: JobId) -> bool {
        self.will_queue_round(now, id, WILL_QUEUE_MS)
    }

    /// Sends WILLQUEUE to the job's other holders and queues it here if
    /// none answers within `wait_ms`. False for a job held here only.
    fn will_queue_round(&mut self, now: UnixMs, id: JobId, wait_ms: u64) -> bool {
        let me = self.me();
        let Some(job) = self.jobs.get(&id) else {
            return true;
        };
        let others: Vec<NodeName> = job.others(me).collect();
        if others.is_empty() {
            return false;
        }
        tracing::debug!(job = %id, ?others, "retry time: will-queue out");
        for to in &others {
            self.send(*to, PeerMsg::WillQueue(id));
        }
        let at = now.saturating_add(wait_ms);
        if let Some(old) = self.cluster.will_queue.insert(id, at) {
            self.timers.cancel(old, Timer::WillQueue(id));
        }
        self.timers.set(at, Timer::WillQueue(id));
        true
    }

    /// Nobody answered the WILLQUEUE: queue the job here and say so.
    pub(super) fn will_queue_due(&mut self, now: UnixMs, id: JobId) {
        if self.cluster.will_queue.remove(&id).is_none() {
            return;
        }
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        if job.state != JobState::Active || self.executing.contains(&id) {
            return;
        }
        tracing::debug!(job = %id, "no answer to will-queue: queued again");
        // A Wasm job queued by a holder lost its run with a node.
        let (why, lost) = if job.is_wasm() {
            ("its node was lost", true)
        } else {
            ("not acknowledged within RETRY", false)
        };
        if self.bury_if_spent(now, id, why, lost) {
            return;
        }
        if self.place(now, id, Cause::Again) {
            self.cluster.stats.requeued_by_holder += 1;
            // Queued here: say so. Handed to another node (push, group):
            // that node has it queued and answers WILLQUEUE itself.
            if self
                .jobs
                .get(&id)
                .is_some_and(|j| j.state == JobState::Queued)
            {
                self.announce_queued(id);
            }
        } else {
            self.arm_holder_requeue(now, id);
        }
    }

    /// Tells the other holders this node has the job queued or in hand.
    pub(super) fn announce_queued(&mut self, id: JobId) {
        let me = self.me();
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        let others: Vec<NodeName> = job.others(me).collect();
        for to in others {
            self.send(to, PeerMsg::Queued(id));
        }
    }

    /// (Re)arms the retry timer of a copy held here, Wasm or plain.
    pub(super) fn arm_holder_requeue(&mut self, now: UnixMs, id: JobId) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if let Some(t) = job.take_requeue_at() {
            self.timers.cancel(t, Timer::Requeue(id));
        }
        if job.retry_ms > 0 && !job.state.is_finished() {
            let at = now.saturating_add(job.retry_ms);
            job.set_requeue_at(Some(at));
            self.timers.set(at, Timer::Requeue(id));
        }
        self.journal_put(&id);
    }

    fn on_will_queue(&mut self, now: UnixMs, from: NodeName, id: JobId) {
        tracing::debug!(job = %id, from = %from, state = ?self.jobs.get(&id).map(|j| j.state), "will-queue in");
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        if job.state == JobState::Acked {
            self.send(from, PeerMsg::SetAck(id));
            return;
        }
        if job.state.is_finished() {
            let msg = PeerMsg::Finished {
                id,
                state: job.state,
                result: if job.nocache {
                    None
                } else {
                    job.result.as_deref().cloned()
                },
            };
            self.send(from, msg);
            return;
        }
        // Lent to a live peer counts too: the asker may not know that peer.
        // A job its maker holds until the jobs it runs after end counts.
        let in_hand = job.state == JobState::Queued
            || job.state == JobState::Waiting && id.node_prefix() == self.cfg.node_prefix
            || self.executing.contains(&id)
            || job.awaiting_retry()
            || job.requeue_at().is_some_and(|t| t > now) && job.counters.attempts > 0
            || self
                .cluster
                .lent
                .get(&id)
                .is_some_and(|n| self.cluster.peers.contains(n));
        if in_hand {
            self.send(from, PeerMsg::Queued(id));
        }
    }

    fn on_queued(&mut self, now: UnixMs, from: NodeName, id: JobId) {
        tracing::debug!(job = %id, from = %from, state = ?self.jobs.get(&id).map(|j| j.state), "queued in");
        let me = self.me();
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        match job.state {
            JobState::Active if !self.executing.contains(&id) => {
                if let Some(at) = self.cluster.will_queue.remove(&id) {
                    self.timers.cancel(at, Timer::WillQueue(id));
                }
                self.arm_holder_requeue(now, id);
            }
            // Both queued it: the node with the greater id steps back.
            JobState::Queued if from < me => {
                let (q, key, wasm) = (
                    job.queue.clone(),
                    ReadyKey::new(job.priority, id),
                    job.is_wasm(),
                );
                self.queues.remove(&q, key, wasm);
                if let Some(job) = self.jobs.get_mut(&id) {
                    job.state = JobState::Active;
                }
                self.arm_holder_requeue(now, id);
            }
            _ => {}
        }
    }

    /// A Wasm job finished here: every other holder keeps the result.
    pub(super) fn share_result(&mut self, id: JobId) {
        let me = self.me();
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        let others: Vec<NodeName> = job.others(me).collect();
        if others.is_empty() {
            return;
        }
        let msg = PeerMsg::Finished {
            id,
            state: job.state,
            result: if job.nocache {
                None
            } else {
                job.result.as_deref().cloned()
            },
        };
        for to in others {
            self.send(to, msg.clone());
        }
    }

    fn on_finished(
        &mut self,
        now: UnixMs,
        id: JobId,
        state: JobState,
        result: Option<crate::job::JobResult>,
    ) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if job.state.is_finished() || self.executing.contains(&id) {
            return;
        }
        let was_queued = job.state == JobState::Queued;
        let (q, key, wasm) = (
            job.queue.clone(),
            ReadyKey::new(job.priority, id),
            job.is_wasm(),
        );
        job.state = state;
        job.result = result.map(Box::new);
        if let Some(t) = job.take_requeue_at() {
            self.timers.cancel(t, Timer::Requeue(id));
        }
        if let Some(m) = job.module()
            && let Some(entry) = self.modules.get_mut(&m)
        {
            entry.jobs = entry.jobs.saturating_sub(1);
        }
        let status = job.status(now, &self.cfg.node_id);
        if was_queued {
            self.queues.remove(&q, key, wasm);
        }
        if let Some(at) = self.cluster.will_queue.remove(&id) {
            self.timers.cancel(at, Timer::WillQueue(id));
        }
        self.journal_put(&id);
        self.finish_waiters(now, id, status);
        self.part_finished(now, id);
    }

    /// Federation: a peer's consumers starve. Give it queued jobs this
    /// node cannot serve soon (plain jobs nobody here is blocked on; Wasm
    /// jobs beyond what this node's executors will start next).
    fn on_need_jobs(&mut self, now: UnixMs, from: NodeName, queue: Option<String>, count: u32) {
        let count = count.clamp(1, 64) as usize;
        let mut ids = Vec::new();
        match &queue {
            Some(q) => {
                let Some(qq) = self.queues.get(q) else {
                    return;
                };
                if !qq.blocked.is_empty() && !self.cluster.leaving {
                    return;
                }
                while ids.len() < count {
                    match self.queues.pop_plain(q, now) {
                        Some(id) => ids.push(id),
                        None => break,
                    }
                }
            }
            None => {
                let ready: usize = self.queues.iter().map(|(_, q)| q.wasm.len()).sum();
                let free = self.cfg.exec_slots.saturating_sub(self.running);
                // Jobs that would wait here for a slot; half go to each
                // asker, so several idle peers share a backlog.
                let spare = if self.cluster.leaving {
                    ready
                } else {
                    ready.saturating_sub(free)
                };
                let give = count.min(spare.div_ceil(2).max(usize::from(self.cluster.leaving)));
                // Under the `priority` policy anywhere, the highest-priority
                // jobs go first; otherwise queues take turns.
                let by_priority = self
                    .placement
                    .policies
                    .values()
                    .any(|p| p.policy == super::Policy::Priority);
                while ids.len() < give {
                    let next = if by_priority {
                        self.queues.pop_wasm_highest(now)
                    } else {
                        self.queues.pop_wasm(now)
                    };
                    match next {
                        Some(id) => ids.push(id),
                        None => break,
                    }
                }
            }
        }
        // A group's jobs stay with the group's node.
        let (ids, stay): (Vec<JobId>, Vec<JobId>) =
            ids.into_iter().partition(|id| self.movable(id));
        for id in stay {
            if let Some(job) = self.jobs.get(&id) {
                let (q, key, wasm) = (
                    job.queue.clone(),
                    ReadyKey::new(job.priority, id),
                    job.is_wasm(),
                );
                self.queues.push(&q, key, wasm, now);
            }
        }
        if ids.is_empty() {
            return;
        }
        let mut moved = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            if !job.nodes.contains(&from) {
                if job.nodes.is_empty() {
                    job.nodes.push(self.cluster.me.unwrap_or(NodeName([0; 20])));
                }
                job.nodes.push(from);
            }
            // The copy kept here becomes a holder's copy: re-queued by this
            // node only if the receiver neither runs nor acks it in time.
            job.state = JobState::Active;
            let mut copy = job.clone();
            copy.state = JobState::Queued;
            moved.push(copy);
            // A peer has it now: a crash here must not lose track of it.
            self.journal_promise(&id);
            self.cluster.lent.insert(id, from);
            self.arm_holder_requeue(now, id);
        }
        self.cluster.stats.jobs_moved_out += moved.len() as u64;
        self.send(from, PeerMsg::YourJobs(moved));
    }

    fn on_moved_in(&mut self, now: UnixMs, from: NodeName, mut job: crate::job::Job) {
        tracing::debug!(job = %job.id, from = %from, nodes = ?job.nodes, "moved in");
        let id = job.id;
        self.queues.note_import(&job.queue, now);
        self.cluster.stats.jobs_moved_in += 1;
        if let Some(held) = self.jobs.get_mut(&id) {
            // The sender may know holders this copy does not (it borrowed
            // the job itself): an ack here must reach them all.
            for n in job.nodes.iter().chain([&from]) {
                if !held.nodes.contains(n) {
                    held.nodes.push(*n);
                }
            }
            // The sender's counters include deliveries made there.
            let (c, m) = (&mut held.counters, job.counters);
            c.nacks = c.nacks.max(m.nacks);
            c.additional_deliveries = c.additional_deliveries.max(m.additional_deliveries);
            // And attempts counted against its retry policy there.
            if let (Some(mine), Some(theirs)) = (held.retry_mut(), job.retry()) {
                mine.attempts = mine.attempts.max(theirs.attempts);
            }
            match held.state {
                JobState::Active if !self.executing.contains(&id) => {
                    if !self.enqueue(now, id, Cause::First) {
                        self.journal_put(&id);
                    }
                }
                // Acked here already: the sender may not have heard.
                JobState::Acked => self.send(from, PeerMsg::SetAck(id)),
                _ => self.journal_put(&id),
            }
            return;
        }
        if self.cluster.acks.contains_key(&id) || job.expires_at <= now {
            return;
        }
        self.ids.observe(id);
        let me = self.me();
        for n in [from, me] {
            if !job.nodes.contains(&n) {
                job.nodes.push(n);
            }
        }
        job.state = JobState::Active;
        job.set_requeue_at(None);
        job.counters.attempts = 0;
        self.timers.set(job.expires_at, Timer::Expire(id));
        if let Some(m) = job.module()
            && let Some(entry) = self.modules.get_mut(&m)
        {
            entry.jobs += 1;
        }
        self.hold(job);
        self.journal_put(&id);
        self.enqueue(now, id, Cause::First);
    }

    /// The housekeeping tick: resend unconfirmed acks, ask peers for work
    /// where consumers starve, retry stuck module fetches.
    pub(super) fn cluster_tick(&mut self, now: UnixMs) {
        self.cluster.tick_at = None;
        // An idle node asks for work every tick; the rest less often.
        self.ask_for_work(now);
        if now.saturating_sub(self.cluster.chores_at) < CHORES_MS {
            self.arm_tick(now);
            return;
        }
        self.cluster.chores_at = now;
        self.resend_acks(now);
        self.resend_copies(now);
        // Module fetches that never ended.
        self.cluster
            .fetching
            .retain(|_, at| now.saturating_sub(*at) < FETCH_RETRY_MS);
        let waiting: Vec<(ModuleHash, JobId)> = self
            .cluster
            .awaiting_module
            .iter()
            .filter_map(|(m, ids)| ids.first().map(|id| (*m, *id)))
            .collect();
        for (m, id) in waiting {
            let from = self.jobs.get(&id).and_then(|j| self.module_source(j, &m));
            if let Some(from) = from {
                self.want_module(now, m, from);
            }
        }
        self.ask_for_work(now);
        self.arm_tick(now);
    }

    /// Whom a federation ask goes to: the peers whose last advert shows
    /// a backlog (of that queue, or of Wasm jobs beyond their free slots),
    /// busiest first, up to [`ASK_BUSIEST`]; plus [`ASK_PROBES`] others in
    /// turn, which finds a backlog newer than the adverts. Asking every
    /// peer made federation traffic grow with the cluster (the scheduling
    /// evaluation measured 155 messages per job on 100 nodes).
    fn ask_targets(&mut self, queue: Option<&str>) -> Vec<NodeName> {
        let peers: Vec<NodeName> = self.cluster.peers.iter().copied().collect();
        if peers.len() <= ASK_BUSIEST + ASK_PROBES {
            return peers;
        }
        let backlog = |n: &NodeName| -> u64 {
            let Some(l) = self.placement.loads.get(n) else {
                return 0;
            };
            match queue {
                Some(q) => l.queues.get(q).copied().unwrap_or(0),
                None => l
                    .queued
                    .saturating_sub(u64::from(l.exec_slots.saturating_sub(l.exec_busy))),
            }
        };
        let mut busy: Vec<(u64, NodeName)> = peers
            .iter()
            .map(|n| (backlog(n), *n))
            .filter(|(b, _)| *b > 0)
            .collect();
        busy.sort_by(|a, b| b.cmp(a));
        let mut out: Vec<NodeName> = busy.into_iter().take(ASK_BUSIEST).map(|(_, n)| n).collect();
        for k in 0..peers.len() {
            if out.len() >= ASK_BUSIEST + ASK_PROBES {
                break;
            }
            let n = peers[(self.cluster.ask_turn + k) % peers.len()];
            if !out.contains(&n) {
                out.push(n);
            }
        }
        self.cluster.ask_turn = self.cluster.ask_turn.wrapping_add(ASK_PROBES);
        out
    }

    /// Federation, the asking side: queues with blocked GETJOB clients and
    /// nothing ready, and idle executor slots with no Wasm job ready.
    pub(super) fn ask_for_work(&mut self, now: UnixMs) {
        if self.cluster.peers.is_empty()
            || now.saturating_sub(self.cluster.last_ask) < NEED_WASM_EVERY_MS
        {
            return;
        }
        self.cluster.last_ask = now;
        let mut asks: Vec<(Option<String>, u32)> = Vec::new();
        for (name, q) in self.queues.iter() {
            if !q.blocked.is_empty() && q.plain.is_empty() {
                asks.push((Some(name.to_string()), q.blocked.len() as u32));
            }
        }
        // Enough Wasm jobs for the free slots plus one in reserve per
        // slot: a slot that finishes starts the next job at once instead
        // of idling for a round trip (the scheduling evaluation measured
        // pulling only for free slots at 65 % use of a 2-slot node).
        let ready_wasm: usize = self.queues.iter().map(|(_, q)| q.wasm.len()).sum();
        let free = self.cfg.exec_slots.saturating_sub(self.running);
        let want = free + self.cfg.exec_slots;
        if want > ready_wasm && self.cfg.exec_slots > 0 {
            asks.push((None, (want - ready_wasm) as u32));
        }
        for (queue, count) in asks {
            let last = self.cluster.need_sent.get(&queue).copied().unwrap_or(0);
            let every = if queue.is_none() {
                NEED_WASM_EVERY_MS
            } else {
                NEED_EVERY_MS
            };
            if now.saturating_sub(last) < every {
                continue;
            }
            self.cluster.need_sent.insert(queue.clone(), now);
            for to in &self.ask_targets(queue.as_deref()) {
                self.send(
                    *to,
                    PeerMsg::NeedJobs {
                        queue: queue.clone(),
                        count,
                    },
                );
            }
        }
        if self.cluster.need_sent.len() > 4096 {
            self.cluster
                .need_sent
                .retain(|_, at| now.saturating_sub(*at) < NEED_EVERY_MS);
        }
    }
}
