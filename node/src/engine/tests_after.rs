//! Jobs that run after others (`after.rs`), in one engine and in a few
//! engines wired by hand, on a virtual clock.

use std::collections::BTreeMap;

use super::*;
use crate::job::{AfterSpec, DepState, ErrorClass};

const T0: UnixMs = 1_700_000_000_000;

fn name(i: u8) -> NodeName {
    NodeName([i; 20])
}

fn engine(i: u8) -> Engine {
    Engine::new(EngineConfig {
        exec_slots: 4,
        node_id: name(i).to_string(),
        node_prefix: name(i).prefix(),
        seed: u64::from(i),
        journal: true,
        ..EngineConfig::default()
    })
}

fn module() -> ModuleHash {
    ModuleHash::of(b"module")
}

fn wasm(body: &str, after: &[JobId], any: bool) -> AddJob {
    let mut a = AddJob::new("q", body.as_bytes().to_vec());
    a.module = Some(module());
    a.replicate = Some(1);
    if !after.is_empty() {
        a.after = Some(AfterSpec {
            ids: after.to_vec(),
            any,
        });
    }
    a
}

fn plain(body: &str) -> AddJob {
    let mut a = AddJob::new("q", body.as_bytes().to_vec());
    a.replicate = Some(1);
    a
}

fn result(class: Option<ErrorClass>) -> JobResult {
    JobResult {
        exit_code: class.is_none().then_some(0),
        error_class: class,
        message: if class.is_some() {
            "boom".into()
        } else {
            String::new()
        },
        output: vec![],
        stderr: vec![],
        fuel_used: 1,
        duration_us: 1,
        node: "n".into(),
    }
}

/// One engine with a disk (what the store would hold) and its effects.
struct One {
    e: Engine,
    disk: BTreeMap<JobId, Job>,
    req: u64,
    runs: Vec<(JobId, u32)>,
    replies: Vec<(u64, Reply)>,
}

impl One {
    fn new() -> One {
        One::node(1)
    }

    fn node(i: u8) -> One {
        let mut e = engine(i);
        e.handle_module_added(module(), 10);
        One {
            e,
            disk: BTreeMap::new(),
            req: 0,
            runs: vec![],
            replies: vec![],
        }
    }

    fn drain(&mut self) {
        while let Some(f) = self.e.poll_effect() {
            match f {
                Effect::Persist(Change::Put(job)) => {
                    self.disk.insert(job.id, *job);
                }
                Effect::Persist(Change::Remove(id)) => {
                    self.disk.remove(&id);
                }
                Effect::Run(r) => self.runs.push((r.job, r.attempt)),
                Effect::Reply { to, reply } => self.replies.push((to.0, reply)),
                _ => {}
            }
        }
    }

    fn call(&mut self, now: UnixMs, cmd: Command) -> Reply {
        self.req += 1;
        let req = self.req;
        self.e.handle_command(now, RequestId(req), cmd);
        self.drain();
        let i = self
            .replies
            .iter()
            .position(|(r, _)| *r == req)
            .expect("a reply");
        self.replies.remove(i).1
    }

    fn add(&mut self, a: AddJob) -> JobId {
        match self.call(T0, Command::AddJob(Box::new(a))) {
            Reply::JobAdded(id) => id,
            other => panic!("{other:?}"),
        }
    }

    fn ran(&self, id: JobId) -> Option<u32> {
        self.runs.iter().find(|(j, _)| *j == id).map(|(_, a)| *a)
    }

    fn finish(&mut self, id: JobId, class: Option<ErrorClass>) {
        let attempt = self.ran(id).expect("it ran");
        self.e.handle_exec_done(T0 + 10, id, attempt, result(class));
        self.drain();
    }

    fn state(&self, id: JobId) -> JobState {
        self.e.job(&id).expect("held").state
    }

    fn class(&self, id: JobId) -> Option<ErrorClass> {
        self.e.job(&id)?.result.as_ref()?.error_class
    }
}

#[test]
fn a_job_waits_until_every_job_it_names_has_ended() {
    let mut n = One::new();
    let a = n.add(plain("a"));
    let b = n.add(wasm("b", &[], false));
    let c = n.add(wasm("c", &[a, b], false));
    assert_eq!(n.state(c), JobState::Waiting);
    assert_eq!(n.ran(c), None, "not run before the others end");
    assert_eq!(n.disk[&c].state, JobState::Waiting, "stored waiting");
    n.finish(b, None);
    assert_eq!(n.state(c), JobState::Waiting, "a is not acknowledged yet");
    let deps = &n.e.job(&c).unwrap().after().unwrap().deps;
    assert_eq!(deps, &vec![(a, DepState::Pending), (b, DepState::Done)]);
    // A plain job ends when it is acknowledged.
    n.call(
        T0 + 20,
        Command::Ack {
            ids: vec![a],
            fast: false,
        },
    );
    assert!(n.ran(c).is_some(), "runs once both ended");
    n.finish(c, None);
    assert_eq!(n.state(c), JobState::Done);
    assert_eq!(n.e.after.waiting(), 0);
}

#[test]
fn a_failure_fails_the_chain_behind_it_without_running_it() {
    let mut n = One::new();
    let a = n.add(wasm("a", &[], false));
    let b = n.add(wasm("b", &[a], false));
    let c = n.add(wasm("c", &[b], false));
    // A waiter on the last job of the chain is answered by the failure.
    n.req += 1;
    let wait = n.req;
    n.e.handle_command(
        T0,
        RequestId(wait),
        Command::Wait {
            id: c,
            timeout_ms: 60_000,
        },
    );
    n.drain();
    n.finish(a, Some(ErrorClass::Trap));
    for id in [b, c] {
        assert_eq!(n.state(id), JobState::Failed);
        assert_eq!(n.class(id), Some(ErrorClass::Dependency));
        assert_eq!(n.ran(id), None);
    }
    let msg = &n.e.job(&b).unwrap().result.as_ref().unwrap().message;
    assert!(
        msg.contains(&a.to_string()) && msg.contains("trap"),
        "{msg}"
    );
    match n.replies.iter().find(|(r, _)| *r == wait) {
        Some((_, Reply::Job(s))) => assert_eq!(s.state, JobState::Failed),
        other => panic!("{other:?}"),
    }
}

#[test]
fn after_any_runs_whatever_the_outcome() {
    let mut n = One::new();
    let a = n.add(wasm("a", &[], false));
    let b = n.add(wasm("b", &[a], true));
    n.finish(a, Some(ErrorClass::OutOfFuel));
    assert!(n.ran(b).is_some());
    let deps = &n.e.job(&b).unwrap().after().unwrap().deps;
    assert!(matches!(deps[0].1, DepState::Failed(ref w) if w.contains("out-of-fuel")));
}

#[test]
fn cancelled_expired_and_dead_jobs_count_as_failures() {
    let mut n = One::new();
    let a = n.add(plain("a"));
    let b = n.add(wasm("b", &[a], false));
    n.call(T0 + 1, Command::Cancel { ids: vec![a] });
    assert_eq!(n.class(b), Some(ErrorClass::Dependency));
    let msg = &n.e.job(&b).unwrap().result.as_ref().unwrap().message;
    assert!(msg.contains("cancelled"), "{msg}");

    let mut short = plain("short");
    short.ttl_secs = Some(5);
    let s = n.add(short);
    let t = n.add(wasm("t", &[s], false));
    n.e.handle_timeout(T0 + 6_000);
    n.drain();
    assert_eq!(n.class(t), Some(ErrorClass::Dependency));
}

#[test]
fn bad_lists_are_refused_with_a_reason() {
    let mut n = One::new();
    let a = n.add(plain("a"));
    let unknown = JobId::compose(T0, 9, name(1).prefix(), false, 60, 1);
    let refused = |n: &mut One, ids: Vec<JobId>| match n
        .call(T0, Command::AddJob(Box::new(wasm("x", &ids, false))))
    {
        Reply::Error(e) => e.message,
        other => panic!("{other:?}"),
    };
    let m = refused(&mut n, vec![unknown]);
    assert!(m.contains("no longer holds"), "{m}");
    let m = refused(&mut n, vec![a, a]);
    assert!(m.contains("twice"), "{m}");
    let mut none = wasm("x", &[], false);
    none.after = Some(AfterSpec {
        ids: vec![],
        any: false,
    });
    match n.call(T0, Command::AddJob(Box::new(none))) {
        Reply::Error(e) => assert!(e.message.contains("at least one"), "{e:?}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_waiting_job_survives_a_restart_and_runs_after_it() {
    let mut n = One::new();
    let a = n.add(wasm("a", &[], false));
    let b = n.add(wasm("b", &[a], false));
    let c = n.add(wasm("c", &[a], false));
    // The node stops while a runs: after the restart a runs again, and
    // its end moves b and c.
    let disk = n.disk.clone();
    let mut e = engine(1);
    e.handle_module_added(module(), 10);
    let mut rep = RestoreReport::default();
    e.restore_begin(disk.len());
    for job in disk.into_values() {
        e.restore_job(T0 + 100, job, &mut rep);
    }
    e.restore_end(T0 + 100);
    let mut n2 = One {
        e,
        disk: BTreeMap::new(),
        req: 100,
        runs: vec![],
        replies: vec![],
    };
    n2.drain();
    assert_eq!(n2.state(b), JobState::Waiting);
    assert_eq!(n2.state(c), JobState::Waiting);
    assert!(n2.ran(a).is_some(), "a was running: it runs again");
    n2.finish(a, None);
    assert!(n2.ran(b).is_some() && n2.ran(c).is_some());
}

#[test]
fn a_chain_of_ten_thousand_fails_without_deep_recursion() {
    let mut n = One::new();
    let first = n.add(wasm("0", &[], false));
    let mut last = first;
    for i in 1..10_000 {
        last = n.add(wasm(&i.to_string(), &[last], false));
    }
    // On a thread with a small stack: recursion per link would overflow.
    let mut moved = n;
    let last_class = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            moved.finish(first, Some(ErrorClass::Trap));
            moved.class(last)
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(last_class, Some(ErrorClass::Dependency));
}

// ---- across nodes ------------------------------------------------------

/// Engines wired by hand: sends delivered at once, `down` nodes cut off.
struct Net {
    nodes: Vec<One>,
    down: Vec<bool>,
    now: UnixMs,
}

impl Net {
    fn new(n: u8) -> Net {
        let nodes: Vec<One> = (1..=n).map(One::node).collect();
        let mut net = Net {
            nodes,
            down: vec![false; n as usize],
            now: T0,
        };
        net.membership();
        net
    }

    fn membership(&mut self) {
        let live: Vec<NodeName> = (0..self.nodes.len())
            .filter(|i| !self.down[*i])
            .map(|i| name(i as u8 + 1))
            .collect();
        let now = self.now;
        for (i, one) in self.nodes.iter_mut().enumerate() {
            if !self.down[i] {
                one.e.handle_peers(now, live.clone());
            }
        }
        self.settle();
    }

    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                while let Some(fx) = self.nodes[i].e.poll_effect() {
                    moved = true;
                    let deliver = |to: NodeName, msg: PeerMsg, nodes: &mut Vec<One>| {
                        let j = to.0[0] as usize - 1;
                        if !self.down[i] && !self.down[j] {
                            nodes[j].e.handle_peer(self.now, name(i as u8 + 1), msg);
                        }
                    };
                    match fx {
                        Effect::Send { to, msg } => deliver(to, msg, &mut self.nodes),
                        Effect::SendMany { to, msg } => {
                            for t in to {
                                deliver(t, msg.clone(), &mut self.nodes);
                            }
                        }
                        Effect::Run(r) => self.nodes[i].runs.push((r.job, r.attempt)),
                        Effect::Reply { to, reply } => self.nodes[i].replies.push((to.0, reply)),
                        _ => {}
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("network did not settle");
    }

    fn add(&mut self, node: usize, a: AddJob) -> JobId {
        let now = self.now;
        let one = &mut self.nodes[node];
        one.req += 1;
        let req = one.req;
        one.e
            .handle_command(now, RequestId(req), Command::AddJob(Box::new(a)));
        self.settle();
        match self.nodes[node].replies.iter().find(|(r, _)| *r == req) {
            Some((_, Reply::JobAdded(id))) => *id,
            other => panic!("{other:?}"),
        }
    }

    fn finish(&mut self, node: usize, id: JobId, class: Option<ErrorClass>) {
        let attempt = self.nodes[node].ran(id).expect("it ran there");
        let now = self.now;
        self.nodes[node]
            .e
            .handle_exec_done(now, id, attempt, result(class));
        self.settle();
    }

    fn advance(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.now = (self.now + 100).min(end);
            for i in 0..self.nodes.len() {
                if !self.down[i] {
                    let now = self.now;
                    self.nodes[i].e.handle_timeout(now);
                }
            }
            self.settle();
        }
    }
}

#[test]
fn a_job_on_another_node_is_told_at_once_when_its_dependency_ends() {
    let mut net = Net::new(3);
    let a = net.add(0, wasm("a", &[], false));
    let c = net.add(2, wasm("c", &[a], false));
    assert_eq!(net.nodes[2].state(c), JobState::Waiting);
    net.finish(0, a, None);
    // No timer moved: the holder of a told the node that asked.
    assert!(net.nodes[2].ran(c).is_some(), "c runs as soon as a ends");
}

#[test]
fn a_failure_on_another_node_fails_the_dependent_and_its_copies() {
    let mut net = Net::new(3);
    let a = net.add(0, wasm("a", &[], false));
    let mut dep = wasm("c", &[a], false);
    dep.replicate = Some(2);
    let c = net.add(1, dep);
    net.finish(0, a, Some(ErrorClass::Deadline));
    for one in &net.nodes {
        if let Some(job) = one.e.job(&c) {
            assert_eq!(job.state, JobState::Failed);
            assert_eq!(
                job.result.as_ref().unwrap().error_class,
                Some(ErrorClass::Dependency)
            );
        }
    }
    assert!(net.nodes.iter().filter(|n| n.e.job(&c).is_some()).count() >= 2);
}

#[test]
fn a_job_acknowledged_and_forgotten_counts_as_done_while_its_maker_is_up() {
    let mut net = Net::new(3);
    let a = net.add(0, plain("a"));
    let now = net.now;
    net.nodes[0].req += 1;
    let req = net.nodes[0].req;
    net.nodes[0].e.handle_command(
        now,
        RequestId(req),
        Command::Ack {
            ids: vec![a],
            fast: true,
        },
    );
    net.settle();
    assert!(net.nodes[0].e.job(&a).is_none());
    let c = net.add(1, wasm("c", &[a], false));
    assert!(
        net.nodes[1].ran(c).is_some(),
        "every live node said: not held"
    );
}

#[test]
fn while_the_maker_is_down_an_unknown_job_keeps_its_dependents_waiting() {
    let mut net = Net::new(3);
    let a = net.add(0, plain("a"));
    net.down[0] = true;
    net.membership();
    let c = net.add(1, wasm("c", &[a], false));
    net.advance(5_000);
    assert_eq!(net.nodes[1].state(c), JobState::Waiting);
    // The maker is back, with a: acked there now, c runs.
    net.down[0] = false;
    net.membership();
    let now = net.now;
    net.nodes[0].req += 1;
    let req = net.nodes[0].req;
    net.nodes[0].e.handle_command(
        now,
        RequestId(req),
        Command::Ack {
            ids: vec![a],
            fast: true,
        },
    );
    net.settle();
    net.advance(2 * after::POLL_MS);
    assert!(net.nodes[1].ran(c).is_some());
}

#[test]
fn the_maker_of_a_waiting_job_runs_it_and_its_holders_do_not() {
    let mut net = Net::new(3);
    let a = net.add(0, wasm("a", &[], false));
    let mut dep = wasm("c", &[a], false);
    dep.replicate = Some(3);
    let c = net.add(1, dep);
    for one in &net.nodes {
        assert_eq!(one.state(c), JobState::Waiting);
    }
    net.finish(0, a, None);
    net.advance(1_000);
    let ran: Vec<usize> = (0..3).filter(|i| net.nodes[*i].ran(c).is_some()).collect();
    assert_eq!(ran, vec![1], "only its maker runs it");
}

#[test]
fn a_tenant_sees_only_its_own_jobs_as_dependencies() {
    // One node: bob naming alice's job is told what any unknown id gets.
    let mut n = One::new();
    let mut alices = plain("a");
    alices.queue = "alice/q".into();
    let a = n.add(alices);
    let mut bobs = wasm("b", &[a], false);
    bobs.queue = "bob/q".into();
    match n.call(T0, Command::AddJob(Box::new(bobs))) {
        Reply::Error(e) => assert!(e.message.contains("no longer holds"), "{e:?}"),
        other => panic!("{other:?}"),
    }

    // Across nodes: alice's job is pending on node 0, and bob's job on
    // node 1 does not wait for it (not held anywhere it may look).
    let mut net = Net::new(2);
    let mut alices = plain("a");
    alices.queue = "alice/q".into();
    let a = net.add(0, alices);
    let mut bobs = wasm("b", &[a], false);
    bobs.queue = "bob/q".into();
    let b = net.add(1, bobs);
    assert!(net.nodes[1].ran(b).is_some(), "bob learns nothing of a");
    assert_eq!(net.nodes[0].state(a), JobState::Queued, "a untouched");
    // Alice's own job on node 1 waits for it.
    let mut alices2 = wasm("c", &[a], false);
    alices2.queue = "alice/q2".into();
    let c = net.add(1, alices2);
    assert_eq!(net.nodes[1].state(c), JobState::Waiting);
}
