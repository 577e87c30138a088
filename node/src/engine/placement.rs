//! Where a job runs: each queue's scheduling policy and mode (`QPOLICY`),
//! known to every node, and collocation groups.
//!
//! - `pull` (passive, the default): a job stays queued where it was added
//!   and idle executors or blocked workers elsewhere pull it (federation,
//!   `engine/cluster.rs`).
//! - `push` (active): the node that accepts a job chooses a target by the
//!   queue's policy and hands the job over (`YourJobs`), keeping a
//!   holder's copy.
//!
//! Policies: `round-robin`, `random`, `least-loaded` (fewest ready and
//! running jobs, from the peers' capacity adverts plus what this node sent
//! them since), `priority` (as least-loaded for placement; in pull mode a
//! starving node is sent the highest-priority jobs first), `resource`
//! (lowest executor use, then memory). A job with a `GROUP` key always goes
//! to the group's node: the live node with the highest rendezvous hash of
//! (group, node), the same on every node, so a group moves together to
//! one other node when its node dies.

use std::collections::HashMap;

use super::Engine;
use super::getjob::Cause;
use super::peer::PeerMsg;
use crate::job::{JobId, JobState, NodeName, UnixMs};

/// Up to this many nodes, load-based policies compare every node.
const COMPARE_ALL_UP_TO: usize = 8;

/// A queue's placement policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Policy {
    RoundRobin,
    Random,
    #[default]
    LeastLoaded,
    Priority,
    Resource,
}

impl Policy {
    pub fn as_str(&self) -> &'static str {
        match self {
            Policy::RoundRobin => "round-robin",
            Policy::Random => "random",
            Policy::LeastLoaded => "least-loaded",
            Policy::Priority => "priority",
            Policy::Resource => "resource",
        }
    }

    pub fn parse(s: &str) -> Option<Policy> {
        Some(match s.to_ascii_lowercase().as_str() {
            "round-robin" | "roundrobin" | "rr" => Policy::RoundRobin,
            "random" => Policy::Random,
            "least-loaded" | "leastloaded" => Policy::LeastLoaded,
            "priority" => Policy::Priority,
            "resource" => Policy::Resource,
            _ => return None,
        })
    }
}

/// Active (push) or passive (pull) scheduling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Mode {
    Push,
    #[default]
    Pull,
}

impl Mode {
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Push => "push",
            Mode::Pull => "pull",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        match s.to_ascii_lowercase().as_str() {
            "push" => Some(Mode::Push),
            "pull" => Some(Mode::Pull),
            _ => None,
        }
    }
}

/// A queue's scheduling settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueuePolicy {
    pub policy: Policy,
    pub mode: Mode,
    /// When set, for the newest-wins merge between nodes.
    pub set_at: UnixMs,
}

/// A peer's load as this node knows it (from its capacity advert).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerLoad {
    pub exec_slots: u32,
    pub exec_busy: u32,
    pub queued: u64,
    pub rss_bytes: u64,
    /// Ready jobs of its busiest queues.
    pub queues: HashMap<String, u64>,
    /// The largest memory cap a job may have there (0: unknown).
    pub max_memory_bytes: u64,
    /// Modules it holds compiled (module affinity).
    pub modules: std::collections::HashSet<crate::job::ModuleHash>,
    /// Jobs this node pushed to it since its last advert.
    pub sent: u64,
}

/// Placement state of the engine.
#[derive(Debug, Default)]
pub(super) struct Placement {
    pub policies: HashMap<String, QueuePolicy>,
    pub loads: HashMap<NodeName, PeerLoad>,
    pub rr: usize,
    pub rng: u64,
    /// Jobs handed to each node by push placement (for tests and INFO).
    pub pushed: u64,
}

/// The rendezvous weight of `node` for `group`: FNV-1a over both, mixed.
fn weight(group: &str, node: &NodeName) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in group.bytes().chain(node.0.iter().copied()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^ (h >> 29)
}

impl Engine {
    /// A queue's policy (the default when never set).
    pub fn queue_policy(&self, queue: &str) -> QueuePolicy {
        self.placement
            .policies
            .get(queue)
            .copied()
            .unwrap_or_default()
    }

    /// `QPOLICY queue policy MODE m`: sets it here and tells every peer.
    pub(super) fn set_queue_policy(&mut self, now: UnixMs, queue: &str, p: QueuePolicy) {
        let p = QueuePolicy { set_at: now, ..p };
        self.placement.policies.insert(queue.to_string(), p);
        self.save_policies();
        let peers: Vec<NodeName> = self.cluster.peers.iter().copied().collect();
        for to in peers {
            self.send(
                to,
                PeerMsg::Policy {
                    queue: queue.to_string(),
                    policy: p,
                },
            );
        }
    }

    /// A peer's `QPOLICY`: the newest setting wins.
    pub(super) fn on_policy(&mut self, queue: String, p: QueuePolicy) {
        let newer = self
            .placement
            .policies
            .get(&queue)
            .is_none_or(|old| p.set_at > old.set_at);
        if newer {
            self.placement.policies.insert(queue, p);
            self.save_policies();
        }
    }

    fn save_policies(&mut self) {
        let mut all: Vec<(String, QueuePolicy)> = self
            .placement
            .policies
            .iter()
            .map(|(q, p)| (q.clone(), *p))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        self.effects.push_back(super::Effect::SavePolicies(all));
    }

    /// The policies kept by an earlier run.
    pub fn restore_policies(&mut self, saved: Vec<(String, QueuePolicy)>) {
        self.placement.policies.extend(saved);
    }

    /// Tells a peer that just came up every policy set here.
    pub(super) fn share_policies(&mut self, to: NodeName) {
        let all: Vec<(String, QueuePolicy)> = self
            .placement
            .policies
            .iter()
            .map(|(q, p)| (q.clone(), *p))
            .collect();
        for (queue, policy) in all {
            self.send(to, PeerMsg::Policy { queue, policy });
        }
    }

    /// A peer's capacity advert.
    pub fn handle_peer_load(&mut self, node: NodeName, load: PeerLoad) {
        self.placement.loads.insert(node, load);
    }

    /// Up to `n` modules this node holds.
    pub fn module_hashes(&self, n: usize) -> Vec<crate::job::ModuleHash> {
        self.modules.keys().take(n).copied().collect()
    }

    /// Ready jobs per queue, busiest first (at most `n` queues): what this
    /// node tells its peers.
    pub fn busiest_queues(&self, n: usize) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> = self
            .queues
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(name, q)| (name.to_string(), q.len() as u64))
            .collect();
        all.sort_by_key(|q| std::cmp::Reverse(q.1));
        all.truncate(n);
        all
    }

    /// The group's node among the live ones (this node included).
    pub(super) fn group_owner(&self, group: &str) -> NodeName {
        let me = self.cluster.me.unwrap_or(NodeName([0; 20]));
        std::iter::once(me)
            .chain(self.cluster.peers.iter().copied())
            .max_by_key(|n| weight(group, n))
            .unwrap_or(me)
    }

    /// (jobs of `queue` ready or running per executor slot, per-mille of
    /// executor use) of a node: this one from its own state, a peer from
    /// its last advert plus what was pushed to it since. Per slot, so a
    /// node with eight slots takes eight times the jobs of a node with one
    /// (measured in the scheduling evaluation: unnormalised counts sent
    /// as many jobs to a one-slot node as to an eight-slot one).
    fn load_of(&self, n: &NodeName, queue: &str) -> (u64, u64) {
        let me = self.cluster.me.unwrap_or(NodeName([0; 20]));
        if *n == me {
            let ready = self.queues.len_of(queue) as u64;
            let slots = self.cfg.exec_slots.max(1) as u64;
            return (
                (ready + self.running as u64) * 1000 / slots,
                (self.running as u64 * 1000) / slots,
            );
        }
        match self.placement.loads.get(n) {
            Some(l) => {
                let slots = u64::from(l.exec_slots.max(1));
                let queued = l.queues.get(queue).copied().unwrap_or(0);
                (
                    (queued + u64::from(l.exec_busy) + l.sent) * 1000 / slots,
                    (u64::from(l.exec_busy) + l.sent) * 1000 / slots,
                )
            }
            // No advert yet (it just joined): idle until it says otherwise.
            None => (0, 0),
        }
    }

    /// Whether `n` can run `job`: a Wasm job's memory cap must fit the
    /// node's maximum (peers that have not said are given the benefit).
    fn fits(&self, n: &NodeName, job: &crate::job::Job) -> bool {
        if !job.is_wasm() {
            return true;
        }
        match self.placement.loads.get(n) {
            Some(l) if l.max_memory_bytes > 0 => job.limits().memory_bytes <= l.max_memory_bytes,
            _ => true,
        }
    }

    /// Whether `n` already holds the job's module compiled.
    fn has_module(&self, n: &NodeName, job: &crate::job::Job) -> bool {
        let me = self.cluster.me.unwrap_or(NodeName([0; 20]));
        let Some(m) = job.module() else { return true };
        if *n == me {
            return self.modules.contains_key(&m);
        }
        self.placement
            .loads
            .get(n)
            .is_some_and(|l| l.modules.contains(&m))
    }

    /// xorshift64*, seeded from the node's seed: a number below `n`.
    fn random_below(&mut self, n: usize) -> usize {
        let mut x = self.placement.rng | 1;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.placement.rng = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n.max(1)
    }

    /// The nodes a load-based policy compares: all of them in a small
    /// cluster; in a large one two picked at random ("power of two
    /// choices"). Every node comparing every node from adverts a second
    /// old sends the whole cluster's new jobs to the same few nodes
    /// between adverts: the scheduling evaluation measured p99 waits of
    /// 765 ms for least-loaded against 209 ms for random on 100 nodes.
    fn candidates(&mut self, nodes: Vec<NodeName>) -> Vec<NodeName> {
        if nodes.len() <= COMPARE_ALL_UP_TO {
            return nodes;
        }
        let a = self.random_below(nodes.len());
        let mut b = self.random_below(nodes.len() - 1);
        if b >= a {
            b += 1;
        }
        vec![nodes[a], nodes[b]]
    }

    /// The node a new job should run on, by its queue's policy, among the
    /// nodes that can run it; nodes holding its module win ties.
    fn choose(&mut self, id: &JobId) -> NodeName {
        let me = self.cluster.me.unwrap_or(NodeName([0; 20]));
        let Some(job) = self.jobs.get(id).cloned() else {
            return me;
        };
        let queue: &str = &job.queue;
        let mut nodes: Vec<NodeName> = std::iter::once(me)
            .chain(self.cluster.peers.iter().copied())
            .filter(|n| *n == me || self.fits(n, &job))
            .collect();
        nodes.sort();
        match self.queue_policy(queue).policy {
            Policy::RoundRobin => {
                self.placement.rr = self.placement.rr.wrapping_add(1);
                nodes[self.placement.rr % nodes.len()]
            }
            Policy::Random => {
                let k = self.random_below(nodes.len());
                nodes[k]
            }
            Policy::LeastLoaded | Policy::Priority => self
                .candidates(nodes)
                .into_iter()
                .min_by_key(|n| {
                    (
                        self.load_of(n, queue).0,
                        !self.has_module(n, &job),
                        *n != me,
                    )
                })
                .unwrap_or(me),
            Policy::Resource => self
                .candidates(nodes)
                .into_iter()
                .min_by_key(|n| {
                    let rss = if *n == me {
                        0
                    } else {
                        self.placement
                            .loads
                            .get(n)
                            .map_or(u64::MAX, |l| l.rss_bytes)
                    };
                    (
                        self.load_of(n, queue).1,
                        rss,
                        !self.has_module(n, &job),
                        *n != me,
                    )
                })
                .unwrap_or(me),
        }
    }

    /// Where a job that is about to be queued here should go: `None` keeps
    /// it here (pull mode, or the policy chose this node).
    fn target_for(&mut self, id: &JobId) -> Option<NodeName> {
        let me = self.cluster.me?;
        if self.cluster.peers.is_empty() {
            return None;
        }
        let job = self.jobs.get(id)?;
        if let Some(g) = job.group().map(str::to_string) {
            let owner = self.group_owner(&g);
            return (owner != me).then_some(owner);
        }
        if self.queue_policy(&job.queue).mode != Mode::Push {
            return None;
        }
        let t = self.choose(id);
        (t != me).then_some(t)
    }

    /// Queues a job this node accepted, or hands it to the node its queue's
    /// policy (or its group) names. Returns whether it was queued or sent.
    pub(super) fn place(&mut self, now: UnixMs, id: JobId, cause: Cause) -> bool {
        if self.jobs.get(&id).is_some_and(|j| j.awaits_deps()) && self.after_arrived(now, id) {
            return false;
        }
        let Some(target) = self.target_for(&id) else {
            return self.enqueue(now, id, cause);
        };
        let Some(job) = self.jobs.get_mut(&id) else {
            return false;
        };
        if job.state != JobState::Active && job.state != JobState::WaitRepl {
            return false;
        }
        let me = self.cluster.me.unwrap_or(NodeName([0; 20]));
        if job.nodes.is_empty() {
            job.nodes.push(me);
        }
        if !job.nodes.contains(&target) {
            job.nodes.push(target);
        }
        job.state = JobState::Active;
        job.queued_at = now;
        match cause {
            Cause::First => {}
            Cause::Again => job.counters.additional_deliveries += 1,
            Cause::Nack => job.counters.nacks += 1,
        }
        let mut copy = job.clone();
        copy.state = JobState::Queued;
        self.journal_promise(&id);
        self.cluster.lent.insert(id, target);
        self.placement.loads.entry(target).or_default().sent += 1;
        self.placement.pushed += 1;
        self.arm_holder_requeue(now, id);
        self.send(target, PeerMsg::YourJobs(vec![copy]));
        true
    }

    /// Whether federation may move this job away (a group's job stays with
    /// its group's node).
    pub(super) fn movable(&self, id: &JobId) -> bool {
        let me = self.cluster.me.unwrap_or(NodeName([0; 20]));
        match self.jobs.get(id).and_then(|j| j.group()) {
            Some(g) => self.group_owner(g) != me,
            None => true,
        }
    }
}
