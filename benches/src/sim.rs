//! A cluster of real wasque engines in virtual time: the node's sans-IO
//! engine (`wasque_node::engine`), many of them, wired by a simulated
//! network with a fixed latency, fed capacity adverts each second as the
//! node's runtime does, and given simulated executors whose jobs take the
//! time their body asks for, divided by the node's speed. A node's
//! executor is `slots` threads and a queue of `slots * (depth - 1)` jobs
//! handed over but not started, taken in the order the node's executor
//! takes them (`wasque_node::exec::ShareQueue`), and a thread's run set
//! aside at the next epoch tick for a waiting job of a tenant that may go
//! ahead of it (`ShareQueue::pop_ahead_of`), as a node's executor does
//! (its `run::SetAside`). Placement,
//! federation and priorities are the engine's own code; only the sockets,
//! the clock and the Wasm run are simulated. Used by the scheduling
//! evaluation (`sched_eval`) to run the same workloads on 3 to 100 nodes.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use bytes::Bytes;
use wasque_node::api::{Command, Reply};
use wasque_node::engine::{
    Effect, Engine, EngineConfig, Mode, PeerLoad, PeerMsg, Policy, RequestId, RunJob,
};
use wasque_node::exec::{Share, ShareQueue};
use wasque_node::job::{JobId, JobResult, ModuleHash, NodeName, UnixMs};
use wasque_sdk::proto::AddJob;

/// Virtual start time (any fixed instant).
const T0: UnixMs = 1_700_000_000_000;
/// One-way network latency between nodes.
const LATENCY_MS: u64 = 1;
/// How often nodes advertise their capacity (as the runtime does).
const ADVERT_EVERY_MS: u64 = 1000;
/// The node's epoch tick: a running job looks for a job to run ahead of
/// it at most this long after one is handed over.
const EPOCH_MS: u64 = 5;

/// One simulated node.
#[derive(Clone, Copy, Debug)]
pub struct NodeSpec {
    /// Executor slots (threads).
    pub slots: usize,
    /// Jobs handed to the executor per slot: 1, each starts at once;
    /// more, the rest wait in the executor's queue as on a real node
    /// (which hands over 4 per thread).
    pub depth: usize,
    /// 1.0 = normal; 0.25 = a job takes four times as long.
    pub speed: f64,
}

/// One job of a workload.
#[derive(Clone, Debug)]
pub struct JobSpec {
    /// When it is submitted, ms after the start.
    pub at_ms: u64,
    /// The node it is submitted to.
    pub entry: usize,
    pub queue: String,
    pub priority: u8,
    /// Run time on a node of speed 1.0.
    pub work_ms: u64,
}

/// What happened to one job.
#[derive(Clone, Debug)]
pub struct JobOutcome {
    pub submitted: u64,
    pub started: u64,
    pub finished: u64,
    /// Its own run time: `finished - started` less any time it was set
    /// aside for another job.
    pub ran_ms: u64,
    pub node: usize,
    pub priority: u8,
    /// The queue it was added to (a tenant's are `tenant/queue`).
    pub queue: String,
}

/// The outcome of a run.
#[derive(Clone, Debug)]
pub struct SimReport {
    pub jobs: Vec<JobOutcome>,
    /// Jobs never finished before the run's time bound.
    pub unfinished: usize,
    /// Busy slot-ms per node.
    pub busy_ms: Vec<u64>,
    pub slots: Vec<usize>,
    /// From the first submission to the last finish.
    pub makespan_ms: u64,
    /// Peer messages delivered.
    pub messages: u64,
    /// Runs made ahead of a set-aside one (preemption).
    pub ran_ahead: u64,
}

enum Event {
    Submit(usize),
    Deliver {
        to: usize,
        from: usize,
        msg: PeerMsg,
    },
    Done {
        node: usize,
        thread: usize,
        run: RunJob,
        /// Run ahead of the thread's own run, which waits set aside.
        ahead: bool,
    },
    /// Node `i`'s running jobs look for a job to run ahead of them.
    Epoch(usize),
    Timer(usize),
    Adverts,
}

/// A busy executor thread of a simulated node.
#[derive(Clone, Copy, Debug)]
struct Busy {
    share: Share,
    /// The event that ends its run, and when.
    done_seq: u64,
    done_at: u64,
    /// What the whole run costs (ms), so what it has used at a tick is
    /// this less what is left of it.
    took: u64,
    /// A run ahead of it is in progress.
    aside: bool,
}

/// The simulated cluster.
pub struct Sim {
    nodes: Vec<Engine>,
    specs: Vec<NodeSpec>,
    names: Vec<NodeName>,
    index: HashMap<NodeName, usize>,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: HashMap<u64, Event>,
    seq: u64,
    now: u64,
    /// The earliest timer event queued per node.
    armed: Vec<Option<u64>>,
    /// Threads busy per node.
    running: Vec<usize>,
    /// Each thread of each node: what it runs, if anything.
    threads: Vec<Vec<Option<Busy>>>,
    /// An `Epoch` event is queued for the node.
    epoch_armed: Vec<bool>,
    /// Runs are never set aside ([`Sim::no_preemption`]).
    no_preempt: bool,
    ran_ahead: u64,
    /// Jobs handed to each node's executor and not started.
    exec_queue: Vec<ShareQueue<RunJob>>,
    /// Executors take queued jobs in arrival order, not tenants' order
    /// ([`Sim::executor_fifo`]).
    fifo: bool,
    busy_ms: Vec<u64>,
    jobs: Vec<JobSpec>,
    by_id: HashMap<JobId, usize>,
    outcomes: Vec<Option<JobOutcome>>,
    started: HashMap<JobId, u64>,
    /// Run time of each started job.
    ran_ms: HashMap<JobId, u64>,
    module: ModuleHash,
    next_req: u64,
    messages: u64,
}

/// Node `i`'s id: scattered like real ids (they are random), so the
/// prefixes the engine derives from them differ.
fn name(i: usize) -> NodeName {
    let mut b = [0u8; 20];
    let mut rng = crate::workload::Rng::new(i as u64 + 1);
    b[..8].copy_from_slice(&rng.next_u64().to_be_bytes());
    b[8..16].copy_from_slice(&(i as u64).to_be_bytes());
    NodeName(b)
}

impl Sim {
    /// A cluster of `specs.len()` nodes, every queue set to `policy` and
    /// `mode` (`queues` names them), with one module known everywhere.
    pub fn new(specs: &[NodeSpec], queues: &[String], policy: Policy, mode: Mode) -> Sim {
        let names: Vec<NodeName> = (0..specs.len()).map(name).collect();
        let module = ModuleHash::of(b"sim");
        let mut nodes: Vec<Engine> = specs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut e = Engine::new(EngineConfig {
                    node_id: names[i].to_string(),
                    node_prefix: names[i].prefix(),
                    seed: i as u64 + 1,
                    exec_slots: s.slots * s.depth.max(1),
                    ..EngineConfig::default()
                });
                e.handle_module_added(module, 1);
                e
            })
            .collect();
        for e in &mut nodes {
            e.handle_peers(T0, names.iter().copied());
        }
        let n = specs.len();
        let mut sim = Sim {
            index: names.iter().enumerate().map(|(i, n)| (*n, i)).collect(),
            nodes,
            specs: specs.to_vec(),
            names,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            seq: 0,
            now: 0,
            armed: vec![None; n],
            running: vec![0; n],
            threads: specs.iter().map(|s| vec![None; s.slots]).collect(),
            epoch_armed: vec![false; n],
            no_preempt: false,
            ran_ahead: 0,
            exec_queue: (0..n).map(|_| ShareQueue::default()).collect(),
            fifo: false,
            busy_ms: vec![0; n],
            jobs: Vec::new(),
            by_id: HashMap::new(),
            outcomes: Vec::new(),
            started: HashMap::new(),
            ran_ms: HashMap::new(),
            module,
            next_req: 1,
            messages: 0,
        };
        // Every node learns the policies (set on node 0, broadcast).
        for q in queues {
            sim.command(
                0,
                Command::QPolicy {
                    queue: q.clone(),
                    set: Some((policy, mode)),
                },
            );
        }
        sim.drain_all();
        sim.adverts();
        sim.drain_all();
        sim
    }

    /// A tenant's fair-share weight on every node (as the registry would
    /// pass it on).
    pub fn set_weight(&mut self, tenant: &str, weight: u32) {
        for e in &mut self.nodes {
            e.set_tenant_weight(tenant, weight);
        }
    }

    /// Executors take queued jobs in arrival order, as a node's did
    /// before tenants' order (`exec/share.rs`): for comparison.
    pub fn executor_fifo(&mut self) {
        self.fifo = true;
    }

    /// Threads never set a run aside for a waiting one (the executor
    /// before preemption): for comparison.
    pub fn no_preemption(&mut self) {
        self.no_preempt = true;
    }

    /// The share a run is queued under in the executor.
    fn share_of(&self, run: &RunJob) -> Share {
        if self.fifo {
            Share::default()
        } else {
            run.share
        }
    }

    fn push(&mut self, at: u64, ev: Event) -> u64 {
        self.seq += 1;
        self.events.insert(self.seq, ev);
        self.queue.push(Reverse((at, self.seq)));
        self.seq
    }

    /// Queues an `Epoch` for node `i` at its next tick, when a job waits
    /// and a thread runs one that might be set aside.
    fn arm_epoch(&mut self, i: usize) {
        if self.no_preempt || self.epoch_armed[i] || self.exec_queue[i].is_empty() {
            return;
        }
        if !self.threads[i].iter().flatten().any(|b| !b.aside) {
            return;
        }
        self.epoch_armed[i] = true;
        let at = (self.now / EPOCH_MS + 1) * EPOCH_MS;
        self.push(at, Event::Epoch(i));
    }

    /// At a tick, each thread of node `i` whose run is not already set
    /// aside runs the job the executor lets go ahead of it, if any; its
    /// own run ends that much later.
    fn epoch(&mut self, i: usize) {
        self.epoch_armed[i] = false;
        for t in 0..self.threads[i].len() {
            let Some(busy) = self.threads[i][t] else {
                continue;
            };
            if busy.aside {
                continue;
            }
            // Not aside: what is left of it is its own run's.
            let used = busy
                .took
                .saturating_sub(busy.done_at.saturating_sub(self.now));
            let Some((_, run)) = self.exec_queue[i].pop_ahead_of(busy.share, used) else {
                continue;
            };
            let took = self.took(i, &run);
            self.busy_ms[i] += took;
            self.ran_ahead += 1;
            self.started.entry(run.job).or_insert(self.now);
            self.ran_ms.insert(run.job, took);
            // Queued first: at an equal time it ends before the run it
            // went ahead of.
            self.push(
                self.now + took,
                Event::Done {
                    node: i,
                    thread: t,
                    run,
                    ahead: true,
                },
            );
            // The thread's own run ends `took` later.
            if let Some(ev) = self.events.remove(&busy.done_seq) {
                let done_at = busy.done_at + took;
                let done_seq = self.push(done_at, ev);
                self.threads[i][t] = Some(Busy {
                    done_seq,
                    done_at,
                    aside: true,
                    ..busy
                });
            }
        }
    }

    fn took(&self, i: usize, run: &RunJob) -> u64 {
        let work = body_work(&run.body);
        ((work as f64) / self.specs[i].speed).ceil().max(1.0) as u64
    }

    fn command(&mut self, node: usize, cmd: Command) -> RequestId {
        let req = RequestId(self.next_req);
        self.next_req += 1;
        self.nodes[node].handle_command(T0 + self.now, req, cmd);
        req
    }

    /// Every node's capacity, as each peer's advert would carry it.
    fn adverts(&mut self) {
        let loads: Vec<PeerLoad> = (0..self.nodes.len())
            .map(|i| {
                let e = &self.nodes[i];
                PeerLoad {
                    exec_slots: (self.specs[i].slots * self.specs[i].depth.max(1)) as u32,
                    exec_busy: self.running[i] as u32,
                    queued: e.ready_jobs() as u64,
                    // The resource policy reads memory: a slow node is one
                    // whose host is busy with something else.
                    rss_bytes: ((1.0 / self.specs[i].speed) * 100e6) as u64,
                    queues: e.busiest_queues(64).into_iter().collect(),
                    max_memory_bytes: 256 << 20,
                    modules: [self.module].into_iter().collect(),
                    sent: 0,
                }
            })
            .collect();
        for (i, e) in self.nodes.iter_mut().enumerate() {
            for (j, l) in loads.iter().enumerate() {
                if i != j {
                    e.handle_peer_load(self.names[j], l.clone());
                }
            }
        }
    }

    /// Carries out one effect of node `i`.
    fn effect(&mut self, i: usize, fx: Effect) {
        match fx {
            Effect::Send { to, msg } => {
                let to = self.index[&to];
                self.push(self.now + LATENCY_MS, Event::Deliver { to, from: i, msg });
            }
            Effect::SendMany { to, msg } => {
                for t in to {
                    let to = self.index[&t];
                    let msg = msg.clone();
                    self.push(self.now + LATENCY_MS, Event::Deliver { to, from: i, msg });
                }
            }
            Effect::Run(run) => {
                let share = self.share_of(&run);
                self.exec_queue[i].push(share, run);
                self.start_runs(i);
                self.arm_epoch(i);
            }
            // Replies, events, persistence: nothing to simulate.
            _ => {}
        }
    }

    /// Node `i`'s free threads take queued runs.
    fn start_runs(&mut self, i: usize) {
        while self.running[i] < self.specs[i].slots {
            let Some(thread) = self.threads[i].iter().position(Option::is_none) else {
                break;
            };
            let Some((share, run)) = self.exec_queue[i].pop() else {
                break;
            };
            let took = self.took(i, &run);
            self.running[i] += 1;
            self.busy_ms[i] += took;
            self.started.entry(run.job).or_insert(self.now);
            self.ran_ms.insert(run.job, took);
            let done_at = self.now + took;
            let done_seq = self.push(
                done_at,
                Event::Done {
                    node: i,
                    thread,
                    run,
                    ahead: false,
                },
            );
            self.threads[i][thread] = Some(Busy {
                share,
                done_seq,
                done_at,
                took,
                aside: false,
            });
        }
    }

    /// Carries out node `i`'s effects and re-arms its timer.
    fn drain(&mut self, i: usize) {
        while let Some(fx) = self.nodes[i].poll_effect() {
            self.effect(i, fx);
        }
        if let Some(t) = self.nodes[i].poll_timeout() {
            let at = t.saturating_sub(T0).max(self.now);
            if self.armed[i].is_none_or(|a| at < a || a < self.now) {
                self.armed[i] = Some(at);
                self.push(at, Event::Timer(i));
            }
        }
    }

    fn drain_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.drain(i);
        }
    }

    fn submit(&mut self, j: usize) {
        let spec = self.jobs[j].clone();
        let mut a = AddJob::new(spec.queue.clone(), spec.work_ms.to_be_bytes().to_vec());
        a.module = Some(self.module);
        a.priority = spec.priority;
        a.replicate = Some(1);
        a.retry_secs = Some(3600);
        let req = self.command(spec.entry, Command::AddJob(Box::new(a)));
        // The add answers at once (one copy): its reply names the id.
        while let Some(fx) = self.nodes[spec.entry].poll_effect() {
            match fx {
                Effect::Reply {
                    to,
                    reply: Reply::JobAdded(id),
                } if to == req => {
                    self.by_id.insert(id, j);
                }
                other => self.effect(spec.entry, other),
            }
        }
        self.drain(spec.entry);
    }

    /// Runs `jobs` to the end (or until `limit_ms` of virtual time).
    pub fn run(mut self, jobs: Vec<JobSpec>, limit_ms: u64) -> SimReport {
        self.outcomes = vec![None; jobs.len()];
        for (j, spec) in jobs.iter().enumerate() {
            self.push(spec.at_ms, Event::Submit(j));
        }
        self.jobs = jobs;
        self.push(ADVERT_EVERY_MS, Event::Adverts);
        let mut done = 0;
        let total = self.jobs.len();
        while let Some(Reverse((at, seq))) = self.queue.pop() {
            if at > limit_ms || done == total {
                break;
            }
            self.now = at;
            let Some(ev) = self.events.remove(&seq) else {
                continue;
            };
            match ev {
                Event::Submit(j) => self.submit(j),
                Event::Deliver { to, from, msg } => {
                    self.messages += 1;
                    self.nodes[to].handle_peer(T0 + at, self.names[from], msg);
                    self.drain(to);
                }
                Event::Done {
                    node,
                    thread,
                    run,
                    ahead,
                } => {
                    let share = self.share_of(&run);
                    let cost = self.ran_ms.get(&run.job).copied().unwrap_or(0);
                    self.exec_queue[node].finished(share, cost);
                    if ahead {
                        // The set-aside run goes on.
                        if let Some(b) = self.threads[node][thread].as_mut() {
                            b.aside = false;
                        }
                    } else {
                        self.running[node] -= 1;
                        self.threads[node][thread] = None;
                        // The thread takes its next job before the engine
                        // hears of this one's end, as on a node.
                        self.start_runs(node);
                    }
                    self.arm_epoch(node);
                    if let Some(&j) = self.by_id.get(&run.job)
                        && self.outcomes[j].is_none()
                    {
                        let started = self.started.get(&run.job).copied().unwrap_or(at);
                        self.outcomes[j] = Some(JobOutcome {
                            submitted: self.jobs[j].at_ms,
                            started,
                            finished: at,
                            ran_ms: self.ran_ms.get(&run.job).copied().unwrap_or(at - started),
                            node,
                            priority: self.jobs[j].priority,
                            queue: self.jobs[j].queue.clone(),
                        });
                        done += 1;
                    }
                    let result = JobResult {
                        exit_code: Some(0),
                        error_class: None,
                        message: String::new(),
                        output: Vec::new(),
                        stderr: Vec::new(),
                        // Fuel is work, whatever the node's speed.
                        fuel_used: body_work(&run.body) * 1_000,
                        duration_us: 0,
                        node: self.names[node].to_string(),
                    };
                    self.nodes[node].handle_exec_done(T0 + at, run.job, run.attempt, result);
                    self.drain(node);
                }
                Event::Epoch(i) => self.epoch(i),
                Event::Timer(i) => {
                    if self.armed[i] == Some(at) {
                        self.armed[i] = None;
                    }
                    self.nodes[i].handle_timeout(T0 + at);
                    self.drain(i);
                }
                Event::Adverts => {
                    self.adverts();
                    self.drain_all();
                    self.push(at + ADVERT_EVERY_MS, Event::Adverts);
                }
            }
        }
        let jobs: Vec<JobOutcome> = self.outcomes.iter().flatten().cloned().collect();
        let first = self.jobs.iter().map(|j| j.at_ms).min().unwrap_or(0);
        let last = jobs.iter().map(|j| j.finished).max().unwrap_or(first);
        SimReport {
            unfinished: total - jobs.len(),
            makespan_ms: last - first,
            busy_ms: self.busy_ms,
            slots: self.specs.iter().map(|s| s.slots).collect(),
            messages: self.messages,
            ran_ahead: self.ran_ahead,
            jobs,
        }
    }
}

/// A body's run time (the simulated executor reads it back).
pub fn body_work(body: &Bytes) -> u64 {
    body.get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(1)
}
