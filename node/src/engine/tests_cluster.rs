//! Several engines wired together by hand: their `Effect::Send`s are
//! delivered (or dropped, for a node the test cut off) by a tiny
//! simulated network, with a virtual clock. No sockets, no sleeps.

use super::*;
use crate::api::GetJob;

const T0: UnixMs = 1_700_000_000_000;
const RESCUE_GRACE_MS: u64 = 2_000;

fn name(i: u8) -> NodeName {
    NodeName([i; 20])
}

struct Net {
    nodes: Vec<Engine>,
    /// Replies seen, per node: (request, reply).
    replies: Vec<Vec<(u64, Reply)>>,
    /// Module fetches asked for, per node.
    fetches: Vec<Vec<ModuleHash>>,
    runs: Vec<Vec<RunJob>>,
    /// Nodes cut off: nothing goes to or from them.
    down: Vec<bool>,
    now: UnixMs,
    next_req: u64,
}

impl Net {
    fn new(n: u8) -> Net {
        let nodes: Vec<Engine> = (1..=n)
            .map(|i| {
                Engine::new(EngineConfig {
                    node_id: name(i).to_string(),
                    node_prefix: name(i).prefix(),
                    seed: u64::from(i),
                    exec_slots: 2,
                    rescue_grace_ms: RESCUE_GRACE_MS,
                    ..EngineConfig::default()
                })
            })
            .collect();
        let mut net = Net {
            replies: vec![vec![]; n as usize],
            fetches: vec![vec![]; n as usize],
            runs: vec![vec![]; n as usize],
            down: vec![false; n as usize],
            nodes,
            now: T0,
            next_req: 1,
        };
        net.membership();
        net
    }

    fn membership(&mut self) {
        let live: Vec<NodeName> = (0..self.nodes.len())
            .filter(|i| !self.down[*i])
            .map(|i| name(i as u8 + 1))
            .collect();
        for (i, e) in self.nodes.iter_mut().enumerate() {
            if !self.down[i] {
                e.handle_peers(self.now, live.clone());
            }
        }
        self.settle();
    }

    fn idx(n: NodeName) -> usize {
        n.0[0] as usize - 1
    }

    /// Delivers messages until the network is quiet.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                while let Some(fx) = self.nodes[i].poll_effect() {
                    moved = true;
                    match fx {
                        Effect::Send { to, msg } => {
                            let j = Net::idx(to);
                            if !self.down[i] && !self.down[j] {
                                let now = self.now;
                                self.nodes[j].handle_peer(now, name(i as u8 + 1), msg);
                            }
                        }
                        Effect::SendMany { to, msg } => {
                            for to in to {
                                let j = Net::idx(to);
                                if !self.down[i] && !self.down[j] {
                                    let now = self.now;
                                    self.nodes[j].handle_peer(now, name(i as u8 + 1), msg.clone());
                                }
                            }
                        }
                        Effect::Reply { to, reply } => self.replies[i].push((to.0, reply)),
                        Effect::FetchModule { hash, .. } => self.fetches[i].push(hash),
                        Effect::Run(r) => self.runs[i].push(r),
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

    fn command(&mut self, node: usize, cmd: Command) -> u64 {
        let req = self.next_req;
        self.next_req += 1;
        let now = self.now;
        self.nodes[node].handle_command(now, RequestId(req), cmd);
        self.settle();
        req
    }

    fn reply(&self, node: usize, req: u64) -> Option<&Reply> {
        self.replies[node]
            .iter()
            .find(|(r, _)| *r == req)
            .map(|(_, r)| r)
    }

    fn advance(&mut self, ms: u64) {
        // Step in small increments so timers fire in order across nodes.
        let end = self.now + ms;
        while self.now < end {
            self.now = (self.now + 50).min(end);
            let now = self.now;
            for i in 0..self.nodes.len() {
                if !self.down[i] {
                    self.nodes[i].handle_timeout(now);
                }
            }
            self.settle();
        }
    }

    fn add(&mut self, node: usize, a: AddJob) -> JobId {
        let req = self.command(node, Command::AddJob(Box::new(a)));
        match self.reply(node, req) {
            Some(Reply::JobAdded(id)) => *id,
            other => panic!("add failed: {other:?}"),
        }
    }
}

fn plain(queue: &str, body: &str, replicate: u32, retry: u64) -> AddJob {
    let mut a = AddJob::new(queue, body.as_bytes().to_vec());
    a.replicate = Some(replicate);
    a.retry_secs = Some(retry);
    a
}

fn get(queue: &str) -> Command {
    Command::GetJob(Box::new(GetJob {
        queues: vec![queue.into()],
        count: 1,
        timeout_ms: 0,
        nohang: true,
        withcounters: false,
    }))
}

fn got_ids(r: Option<&Reply>) -> Vec<JobId> {
    match r {
        Some(Reply::Jobs(j)) => j.iter().map(|e| e.id).collect(),
        _ => vec![],
    }
}

#[test]
fn replicate_3_holds_a_copy_on_three_nodes_before_answering() {
    let mut net = Net::new(3);
    let id = net.add(0, plain("q", "hello", 3, 60));
    for e in &net.nodes {
        let job = e.job(&id).expect("every node holds a copy");
        assert_eq!(job.nodes.len(), 3);
    }
    // Queued where it was added; held (not queued) elsewhere.
    assert_eq!(net.nodes[0].job(&id).unwrap().state, JobState::Queued);
    assert_eq!(net.nodes[1].job(&id).unwrap().state, JobState::Active);
    assert_eq!(net.nodes[1].ready_jobs(), 0);
    // Default replication: min(3, nodes).
    let id2 = net.add(1, AddJob::new("q", b"x".to_vec()));
    assert_eq!(net.nodes[1].job(&id2).unwrap().replicate, 3);
}

#[test]
fn too_few_nodes_or_silent_nodes_answer_norepl_and_leave_nothing() {
    let mut net = Net::new(3);
    let req = net.command(0, Command::AddJob(Box::new(plain("q", "x", 4, 60))));
    assert!(matches!(net.reply(0, req), Some(Reply::Error(e)) if e.code == ErrorCode::NoRepl));

    // Node 3 stops answering but membership has not noticed yet.
    net.down[2] = true;
    let mut a = plain("q", "x", 3, 60);
    a.timeout_ms = 200;
    let req = net.command(0, Command::AddJob(Box::new(a)));
    assert!(net.reply(0, req).is_none(), "waits for copies");
    net.advance(300);
    assert!(matches!(net.reply(0, req), Some(Reply::Error(e)) if e.code == ErrorCode::NoRepl));
    assert_eq!(net.nodes[0].stats().jobs, 0, "no half-created job left");
    assert_eq!(net.nodes[1].stats().jobs, 0, "the copy made was deleted");
}

#[test]
fn a_copy_lost_on_the_way_is_sent_again_before_the_add_times_out() {
    // Node 3 restarts before membership notices: the first copy is lost
    // and node 3 never leaves the live set, so only a resend reaches it.
    let mut net = Net::new(3);
    net.down[2] = true;
    let mut a = plain("q", "x", 3, 60);
    a.timeout_ms = 5_000;
    let req = net.command(0, Command::AddJob(Box::new(a)));
    net.advance(600);
    assert!(net.reply(0, req).is_none(), "waits for node 3");
    net.down[2] = false;
    net.advance(1_000);
    let Some(Reply::JobAdded(id)) = net.reply(0, req) else {
        panic!("add not answered: {:?}", net.reply(0, req));
    };
    assert!(net.nodes[2].job(id).is_some());
}

#[test]
fn async_add_answers_at_once_and_replicates_in_background() {
    let mut net = Net::new(3);
    net.down[2] = true;
    let mut a = plain("q", "x", 3, 60);
    a.asynchronous = true;
    let id = net.add(0, a);
    assert_eq!(net.nodes[0].job(&id).unwrap().state, JobState::Queued);
    assert!(net.nodes[1].job(&id).is_some());
}

#[test]
fn an_ack_on_any_holder_removes_every_copy_even_one_that_was_away() {
    let mut net = Net::new(3);
    let id = net.add(0, plain("q", "x", 3, 60));
    net.down[2] = true;
    let req = net.command(
        1,
        Command::Ack {
            ids: vec![id],
            fast: false,
        },
    );
    assert!(matches!(net.reply(1, req), Some(Reply::Count(1))));
    assert!(net.nodes[2].job(&id).is_some(), "node 3 was cut off");
    assert_eq!(net.nodes[1].cluster_stats().acks_pending, 1);
    // Nodes 1 and 2 keep acked stubs (durable) while node 3 is away, as
    // Disque does; node 3's retry passing meanwhile is answered with the
    // ack, not a re-queue. Node 1 collects the ack itself after a while
    // too, and still waits on node 3.
    net.advance(2_500);
    for n in [0, 1] {
        assert_eq!(net.nodes[n].job(&id).unwrap().state, JobState::Acked);
        assert_eq!(net.nodes[n].cluster_stats().acks_pending, 1);
    }
    // Node 3 comes back: the ack is sent again until it confirms, then
    // every stub goes (DELJOB).
    net.down[2] = false;
    net.advance(1_500);
    for n in 0..3 {
        assert!(net.nodes[n].job(&id).is_none(), "node {} forgot it", n + 1);
        assert_eq!(net.nodes[n].cluster_stats().acks_pending, 0);
    }
}

#[test]
fn holders_forget_an_ack_at_once_when_all_are_reachable_and_fastack_keeps_no_stub() {
    let mut net = Net::new(3);
    let id = net.add(0, plain("q", "x", 3, 60));
    let req = net.command(
        1,
        Command::Ack {
            ids: vec![id],
            fast: false,
        },
    );
    assert!(matches!(net.reply(1, req), Some(Reply::Count(1))));
    net.advance(10);
    for n in 0..3 {
        assert!(net.nodes[n].job(&id).is_none(), "node {} forgot it", n + 1);
        assert_eq!(net.nodes[n].cluster_stats().acks_pending, 0);
    }
    // An ack sent to a node that never held the job reaches the holders.
    let id = net.add(0, plain("q", "x", 2, 60));
    let outsider = (0..3).find(|n| net.nodes[*n].job(&id).is_none()).unwrap();
    let req = net.command(
        outsider,
        Command::Ack {
            ids: vec![id],
            fast: true,
        },
    );
    assert!(matches!(net.reply(outsider, req), Some(Reply::Count(0))));
    net.advance(10);
    for n in 0..3 {
        assert!(net.nodes[n].job(&id).is_none(), "node {} forgot it", n + 1);
        assert_eq!(net.nodes[n].cluster_stats().acks_pending, 0);
    }
}

#[test]
fn an_acked_stub_survives_a_restart_and_its_ack_goes_out_again() {
    let mut net = Net::new(2);
    let id = net.add(0, plain("q", "x", 2, 60));
    net.down[1] = true;
    net.command(
        0,
        Command::Ack {
            ids: vec![id],
            fast: false,
        },
    );
    let stub = net.nodes[0].job(&id).unwrap().clone();
    assert_eq!(stub.state, JobState::Acked);
    // Node 1 restarts from its store: the stub comes back.
    let mut fresh = Engine::new(EngineConfig {
        node_id: name(1).to_string(),
        exec_slots: 2,
        ..EngineConfig::default()
    });
    let now = net.now;
    let rep = fresh.restore(now, vec![stub]);
    assert_eq!(rep.restored, 1);
    net.nodes[0] = fresh;
    net.down[1] = false;
    net.membership();
    net.advance(1_000);
    assert!(net.nodes[1].job(&id).is_none(), "the ack reached node 2");
    assert!(net.nodes[0].job(&id).is_none());
}

#[test]
fn an_ack_for_a_job_never_seen_reaches_the_holders() {
    let mut net = Net::new(3);
    let id = net.add(0, plain("q", "x", 2, 60));
    let holders: Vec<usize> = (0..3)
        .filter(|i| net.nodes[*i].job(&id).is_some())
        .collect();
    let stranger = (0..3).find(|i| !holders.contains(i)).unwrap();
    net.command(
        stranger,
        Command::Ack {
            ids: vec![id],
            fast: false,
        },
    );
    for h in holders {
        assert!(net.nodes[h].job(&id).is_none());
    }
}

/// The ack of a node that never held a keyed job (it cannot check the
/// key) does not remove the job from its holders; a holder's ack with the
/// key does.
#[test]
fn a_keyed_job_ignores_the_ack_of_a_node_that_never_held_it() {
    for copies in [1, 2] {
        let mut net = Net::new(3);
        let mut a = plain("q", "x", copies, 60);
        a.asynckey = Some("k1".into());
        let id = net.add(0, a);
        let holders: Vec<usize> = (0..3)
            .filter(|i| net.nodes[*i].job(&id).is_some())
            .collect();
        let stranger = (0..3).find(|i| !holders.contains(i)).unwrap();
        let ack = || Command::Ack {
            ids: vec![id],
            fast: false,
        };
        net.command(stranger, ack());
        for h in &holders {
            assert!(net.nodes[*h].job(&id).is_some(), "{copies} copies: kept");
        }
        net.command(
            holders[0],
            Command::WithKey {
                key: "k1".into(),
                cmd: Box::new(ack()),
            },
        );
        for h in &holders {
            assert!(net.nodes[*h].job(&id).is_none(), "{copies} copies: acked");
        }
    }
}

#[test]
fn a_holder_requeues_when_the_node_with_the_job_dies() {
    let mut net = Net::new(3);
    let id = net.add(0, plain("q", "work", 3, 2));
    let r = net.command(0, get("q"));
    assert_eq!(got_ids(net.reply(0, r)), vec![id]);
    // Node 1 (consumer's node) dies with the job delivered, never acked.
    net.down[0] = true;
    net.membership();
    net.advance(3_000);
    let queued: Vec<usize> = (1..3)
        .filter(|i| net.nodes[*i].job(&id).unwrap().state == JobState::Queued)
        .collect();
    assert_eq!(queued.len(), 1, "exactly one holder queued it again");
    let r = net.command(queued[0], get("q"));
    assert_eq!(got_ids(net.reply(queued[0], r)), vec![id]);
}

#[test]
fn no_holder_requeues_while_the_job_is_queued_or_in_hand() {
    let mut net = Net::new(3);
    let id = net.add(0, plain("q", "work", 3, 1));
    // Queued at node 1 and never fetched: others ask, node 1 answers.
    net.advance(2_500);
    for i in 1..3 {
        assert_eq!(net.nodes[i].job(&id).unwrap().state, JobState::Active);
    }
    assert_eq!(net.nodes[0].job(&id).unwrap().state, JobState::Queued);
}

#[test]
fn a_starving_node_pulls_jobs_from_a_peer_that_has_them_queued() {
    let mut net = Net::new(2);
    let id = net.add(0, plain("q", "far", 1, 60));
    // A worker blocks on node 2, where nothing is queued.
    let req = net.command(
        1,
        Command::GetJob(Box::new(GetJob {
            queues: vec!["q".into()],
            count: 1,
            timeout_ms: 5_000,
            nohang: false,
            withcounters: false,
        })),
    );
    assert_eq!(got_ids(net.reply(1, req)), vec![id], "moved and delivered");
    // Node 1 keeps a holder's copy, not queued.
    assert_eq!(net.nodes[0].job(&id).unwrap().state, JobState::Active);
    // The ack at node 2 clears node 1's copy too.
    net.command(
        1,
        Command::Ack {
            ids: vec![id],
            fast: false,
        },
    );
    assert!(net.nodes[0].job(&id).is_none());
}

/// A peer whose consumers starve asks `from` for a job of `q`.
fn need(net: &mut Net, asker: usize, from: usize) {
    let now = net.now;
    net.nodes[from].handle_peer(
        now,
        name(asker as u8 + 1),
        PeerMsg::NeedJobs {
            queue: Some("q".into()),
            count: 1,
        },
    );
    net.settle();
}

/// Three nodes; a job added on node 1 with a copy on one peer (the
/// replica), then moved by federation to the other (the borrower).
/// Returns (net, job, replica, borrower).
fn lent_to_the_third_node() -> (Net, JobId, usize, usize) {
    let mut net = Net::new(3);
    let id = net.add(0, plain("q", "x", 2, 2));
    let replica = (1..3).find(|i| net.nodes[*i].job(&id).is_some()).unwrap();
    let borrower = 3 - replica;
    need(&mut net, borrower, 0);
    (net, id, replica, borrower)
}

#[test]
fn a_job_moved_twice_is_forgotten_everywhere_once_acked() {
    // Found by the fault test: moved from its node to a starving peer,
    // then on to its other holder, whose own list lacked the middle node;
    // that node never heard of the ack and queued the job again.
    let (mut net, id, replica, middle) = lent_to_the_third_node();
    assert_eq!(net.nodes[middle].job(&id).unwrap().state, JobState::Queued);
    need(&mut net, replica, middle);
    let req = net.command(replica, get("q"));
    assert_eq!(got_ids(net.reply(replica, req)), vec![id]);
    net.command(
        replica,
        Command::Ack {
            ids: vec![id],
            fast: false,
        },
    );
    for (i, node) in net.nodes.iter().enumerate() {
        assert!(node.job(&id).is_none(), "node {} still holds it", i + 1);
    }
    net.advance(5_000);
    for (i, node) in net.nodes.iter().enumerate() {
        assert!(node.job(&id).is_none(), "node {} queued it again", i + 1);
    }
}

#[test]
fn a_holder_that_does_not_know_the_borrower_leaves_a_lent_job_alone() {
    let (mut net, id, replica, borrower) = lent_to_the_third_node();
    // The replica's retry passes; the lender answers for the borrower.
    net.advance(2_600);
    assert_eq!(
        net.nodes[borrower].job(&id).unwrap().state,
        JobState::Queued
    );
    assert_eq!(net.nodes[replica].job(&id).unwrap().state, JobState::Active);
    assert_eq!(net.nodes[replica].cluster_stats().requeued_by_holder, 0);
}

#[test]
fn wasm_copies_fetch_their_module_and_results_reach_every_holder() {
    let mut net = Net::new(3);
    let m = ModuleHash::of(b"m");
    net.nodes[0].handle_module_added(m, 10);
    let mut a = plain("w", "in", 3, 60);
    a.module = Some(m);
    let id = net.add(0, a);
    assert_eq!(net.fetches[1], vec![m], "node 2 fetches the module once");
    assert_eq!(net.fetches[2], vec![m]);
    let run = net.runs[0]
        .iter()
        .find(|r| r.job == id)
        .expect("runs on node 1")
        .clone();
    let result = JobResult {
        exit_code: Some(0),
        error_class: None,
        message: String::new(),
        output: b"out".to_vec(),
        stderr: vec![],
        fuel_used: 1,
        duration_us: 1,
        node: "n1".into(),
    };
    let now = net.now;
    net.nodes[0].handle_exec_done(now, id, run.attempt, result);
    net.settle();
    for e in &net.nodes {
        let job = e.job(&id).unwrap();
        assert_eq!(job.state, JobState::Done);
        assert_eq!(job.result.as_ref().unwrap().output, b"out");
    }
}

#[test]
fn a_run_acked_on_its_result_leaves_no_copy_on_any_holder() {
    // `run` (wait for the result, ack it once sent): the finished copies
    // the other holders got with the result go too. The soak run found
    // them kept until their TTL.
    let mut net = Net::new(3);
    let m = ModuleHash::of(b"m");
    for e in &mut net.nodes {
        e.handle_module_added(m, 10);
    }
    let mut a = plain("w", "in", 3, 60);
    a.module = Some(m);
    a.wait_ms = Some(10_000);
    a.ack_on_result = true;
    let req = net.command(0, Command::AddJob(Box::new(a)));
    assert!(net.reply(0, req).is_none(), "waits for the result");
    let ran = finish_runs(&mut net, |_| b"out".to_vec());
    assert_eq!(ran.iter().sum::<usize>(), 1);
    assert!(matches!(net.reply(0, req), Some(Reply::Job(_))));
    net.advance(10);
    for (i, e) in net.nodes.iter().enumerate() {
        assert_eq!(e.stats().jobs, 0, "node {} keeps a copy", i + 1);
        assert_eq!(e.cluster_stats().acks_pending, 0);
    }
}

#[test]
fn a_wasm_job_whose_node_died_runs_elsewhere_once_its_module_arrives() {
    let mut net = Net::new(2);
    let m = ModuleHash::of(b"m");
    net.nodes[0].handle_module_added(m, 10);
    let mut a = plain("w", "in", 2, 1);
    a.module = Some(m);
    let id = net.add(0, a);
    assert!(net.runs[0].iter().any(|r| r.job == id));
    net.down[0] = true;
    net.membership();
    net.advance(2_000);
    assert!(net.runs[1].is_empty(), "no module yet: it waits");
    net.nodes[1].handle_module_added(m, 10);
    net.settle();
    assert!(
        net.runs[1].iter().any(|r| r.job == id),
        "runs once the module is here"
    );
}

#[test]
fn when_a_node_is_declared_down_its_jobs_are_queued_elsewhere_without_waiting_for_retry() {
    let mut net = Net::new(3);
    let queued_there = net.add(0, plain("q", "a", 3, 600));
    // A job moved to node 3 by federation, then node 3 dies with it.
    let moved = net.add(1, plain("m", "b", 1, 600));
    let req = net.command(
        2,
        Command::GetJob(Box::new(GetJob {
            queues: vec!["m".into()],
            count: 1,
            timeout_ms: 1_000,
            nohang: false,
            withcounters: false,
        })),
    );
    assert_eq!(got_ids(net.reply(2, req)), vec![moved]);
    net.down[0] = true;
    net.down[2] = true;
    net.membership();
    net.advance(RESCUE_GRACE_MS - 500);
    assert_eq!(
        net.nodes[1].job(&queued_there).unwrap().state,
        JobState::Active,
        "waits for the grace: the nodes may only be cut off"
    );
    net.advance(1_000);
    assert_eq!(
        net.nodes[1].job(&queued_there).unwrap().state,
        JobState::Queued
    );
    assert_eq!(net.nodes[1].job(&moved).unwrap().state, JobState::Queued);
}

#[test]
fn a_node_declared_down_after_a_short_cut_answers_with_its_ack_instead_of_a_second_run() {
    let mut net = Net::new(2);
    let id = net.add(0, plain("q", "x", 2, 600));
    let r = net.command(0, get("q"));
    assert_eq!(got_ids(net.reply(0, r)), vec![id]);
    // Cut: the ack on node 1 never reaches node 2, and each declares the
    // other down.
    net.down[1] = true;
    let r = net.command(
        0,
        Command::Ack {
            ids: vec![id],
            fast: false,
        },
    );
    assert!(matches!(net.reply(0, r), Some(Reply::Count(1))));
    let now = net.now;
    net.nodes[0].handle_peers(now, [name(1)]);
    net.nodes[1].handle_peers(now, [name(2)]);
    net.settle();
    // Healed, but membership sees the peers again only a while later.
    net.down[1] = false;
    net.advance(RESCUE_GRACE_MS - 500);
    assert_eq!(net.nodes[1].job(&id).unwrap().state, JobState::Active);
    net.membership();
    assert!(net.nodes[1].job(&id).is_none(), "the ack arrived on return");
    net.advance(RESCUE_GRACE_MS);
    let r = net.command(1, get("q"));
    assert!(got_ids(net.reply(1, r)).is_empty());
    assert_eq!(net.nodes[0].cluster_stats().acks_pending, 0);
}

#[test]
fn an_add_waiting_on_a_node_declared_down_gets_its_copy_elsewhere() {
    let mut net = Net::new(4);
    net.down[1] = true; // dead, but membership has not noticed yet
    let mut a = plain("q", "x", 2, 60);
    a.timeout_ms = 5_000;
    // Round-robin picks node 2 first for this add.
    let mut req = 0;
    for _ in 0..3 {
        req = net.command(0, Command::AddJob(Box::new(a.clone())));
        if net.reply(0, req).is_none() {
            break;
        }
    }
    assert!(net.reply(0, req).is_none(), "an add waits on the dead node");
    net.membership();
    assert!(
        matches!(net.reply(0, req), Some(Reply::JobAdded(_))),
        "answered once another node holds the copy: {:?}",
        net.reply(0, req)
    );
}

#[test]
fn a_default_replication_add_settles_for_the_live_nodes_when_one_dies() {
    let mut net = Net::new(3);
    net.down[2] = true;
    let req = net.command(
        0,
        Command::AddJob(Box::new(AddJob::new("q", b"x".to_vec()))),
    );
    assert!(net.reply(0, req).is_none(), "waits for three copies");
    net.membership();
    let Some(Reply::JobAdded(id)) = net.reply(0, req) else {
        panic!("{:?}", net.reply(0, req))
    };
    assert_eq!(net.nodes[0].job(id).unwrap().replicate, 2);
    assert!(net.nodes[1].job(id).is_some());
    // An explicit REPLICATE 3 is not softened.
    net.down[2] = false;
    net.membership();
    net.down[2] = true;
    let req = net.command(0, Command::AddJob(Box::new(plain("q", "y", 3, 60))));
    net.membership();
    net.advance(6_000);
    assert!(matches!(net.reply(0, req), Some(Reply::Error(e)) if e.code == ErrorCode::NoRepl));
}

fn qlen(e: &Engine, q: &str) -> usize {
    e.queues.len_of(q)
}

#[test]
fn push_round_robin_spreads_a_queue_over_every_node_and_every_node_knows_the_policy() {
    let mut net = Net::new(3);
    let req = net.command(
        0,
        Command::QPolicy {
            queue: "q".into(),
            set: Some((Policy::RoundRobin, Mode::Push)),
        },
    );
    assert_eq!(
        net.reply(0, req),
        Some(&Reply::Words(vec!["round-robin".into(), "push".into()]))
    );
    assert_eq!(net.nodes[2].queue_policy("q").mode, Mode::Push);
    for i in 0..30 {
        net.add(0, plain("q", &format!("j{i}"), 1, 60));
    }
    let lens: Vec<usize> = net.nodes.iter().map(|e| qlen(e, "q")).collect();
    assert_eq!(lens, vec![10, 10, 10]);
    // Pull (the default) keeps jobs where they were added.
    for i in 0..6 {
        net.add(1, plain("other", &format!("o{i}"), 1, 60));
    }
    assert_eq!(qlen(&net.nodes[1], "other"), 6);
}

#[test]
fn a_group_runs_on_one_node_and_moves_together_when_that_node_dies() {
    let mut net = Net::new(3);
    let mut ids = Vec::new();
    for i in 0..8 {
        let mut a = plain("g", &format!("j{i}"), 2, 600);
        a.group = Some("tenant-7".into());
        ids.push(net.add(i % 3, a));
    }
    let owner = (0..3).find(|i| qlen(&net.nodes[*i], "g") > 0).unwrap();
    assert_eq!(
        qlen(&net.nodes[owner], "g"),
        8,
        "every job of the group on one node"
    );
    net.down[owner] = true;
    net.membership();
    net.advance(RESCUE_GRACE_MS + 500);
    let holders: Vec<usize> = (0..3)
        .filter(|i| *i != owner && qlen(&net.nodes[*i], "g") > 0)
        .collect();
    assert_eq!(holders.len(), 1, "the group moved to one node");
    // Every job whose copy survived is there.
    let survivors = ids
        .iter()
        .filter(|id| (0..3).any(|i| i != owner && net.nodes[i].job(id).is_some()))
        .count();
    assert_eq!(qlen(&net.nodes[holders[0]], "g"), survivors);
}

#[test]
fn a_node_that_comes_up_later_learns_the_policies() {
    let mut net = Net::new(2);
    net.down[1] = true;
    net.membership();
    net.command(
        0,
        Command::QPolicy {
            queue: "q".into(),
            set: Some((Policy::Resource, Mode::Push)),
        },
    );
    assert_eq!(net.nodes[1].queue_policy("q").policy, Policy::LeastLoaded);
    net.down[1] = false;
    net.membership();
    assert_eq!(net.nodes[1].queue_policy("q").policy, Policy::Resource);
}

#[test]
fn least_loaded_push_sends_wasm_jobs_to_idle_peers() {
    let mut net = Net::new(2);
    let m = ModuleHash::of(b"m");
    for e in &mut net.nodes {
        e.handle_module_added(m, 10);
    }
    net.command(
        0,
        Command::QPolicy {
            queue: "w".into(),
            set: Some((Policy::LeastLoaded, Mode::Push)),
        },
    );
    net.nodes[0].handle_peer_load(
        name(2),
        PeerLoad {
            exec_slots: 2,
            ..Default::default()
        },
    );
    for i in 0..10 {
        let mut a = plain("w", &format!("{i}"), 1, 60);
        a.module = Some(m);
        net.add(0, a);
    }
    assert_eq!(
        net.runs[0].len() + net.runs[1].len(),
        4,
        "both nodes' slots in use"
    );
    assert!(!net.runs[1].is_empty(), "the idle peer got work");
}

#[test]
fn push_placement_skips_nodes_whose_memory_maximum_is_below_the_job_cap() {
    let mut net = Net::new(3);
    let m = ModuleHash::of(b"m");
    for e in &mut net.nodes {
        e.handle_module_added(m, 10);
    }
    net.command(
        0,
        Command::QPolicy {
            queue: "w".into(),
            set: Some((Policy::RoundRobin, Mode::Push)),
        },
    );
    // Node 2 takes at most 1 MiB per job; these jobs ask for 64 MiB.
    net.nodes[0].handle_peer_load(
        name(2),
        PeerLoad {
            exec_slots: 2,
            max_memory_bytes: 1 << 20,
            ..Default::default()
        },
    );
    for i in 0..12 {
        let mut a = plain("w", &format!("{i}"), 1, 60);
        a.module = Some(m);
        net.add(0, a);
    }
    assert!(
        net.runs[1].is_empty(),
        "node 2 cannot hold the jobs' memory"
    );
    assert!(!net.runs[2].is_empty());
    // Every job is on node 1; the pushed ones are on node 3 too.
    assert_eq!(net.nodes[0].stats().jobs, 12);
    assert_eq!(net.nodes[1].stats().jobs, 0);
}

/// Finishes every run the net has recorded so far, on the node that ran
/// it, with `out(body)` as output; returns how many ran per node.
fn finish_runs(net: &mut Net, out: impl Fn(&[u8]) -> Vec<u8>) -> Vec<usize> {
    let mut per = vec![0; net.nodes.len()];
    for (i, ran) in per.iter_mut().enumerate() {
        let runs = std::mem::take(&mut net.runs[i]);
        for r in runs {
            if net.down[i] {
                continue;
            }
            *ran += 1;
            let now = net.now;
            let res = JobResult {
                exit_code: Some(0),
                error_class: None,
                message: String::new(),
                output: out(&r.body),
                stderr: vec![],
                fuel_used: 1,
                duration_us: 1,
                node: name(i as u8 + 1).to_string(),
            };
            net.nodes[i].handle_exec_done(now, r.job, r.attempt, res);
        }
    }
    net.settle();
    per
}

fn distributed(net: &mut Net, node: usize, parts: &[&str]) -> JobId {
    let (map, reduce) = (ModuleHash::of(b"map"), ModuleHash::of(b"reduce"));
    for e in &mut net.nodes {
        e.handle_module_added(map, 10);
        e.handle_module_added(reduce, 10);
    }
    let mut a = AddJob::new("mr", Vec::new());
    a.module = Some(reduce);
    a.map = Some(wasque_sdk::proto::MapSpec {
        map,
        parts: parts.len() as u32,
        attempts: 3,
    });
    let parent = net.add(node, a);
    for (i, p) in parts.iter().enumerate() {
        let req = net.command(
            node,
            Command::AddPart {
                parent,
                index: i as u32,
                body: Bytes::copy_from_slice(p.as_bytes()),
            },
        );
        assert!(matches!(net.reply(node, req), Some(Reply::JobAdded(_))));
    }
    parent
}

#[test]
fn a_distributed_job_runs_its_parts_on_every_node_and_gathers_on_its_own() {
    let mut net = Net::new(3);
    net.command(
        0,
        Command::QPolicy {
            queue: "mr".into(),
            set: Some((Policy::RoundRobin, Mode::Push)),
        },
    );
    let parts = ["a", "b", "c", "d", "e", "f"];
    let parent = distributed(&mut net, 0, &parts);
    let per = finish_runs(&mut net, |b| b.to_ascii_uppercase());
    assert!(
        per.iter().all(|n| *n >= 1),
        "parts ran on every node: {per:?}"
    );
    // Every part's result reached the parent's node; the reduce runs once
    // somewhere with the outputs in order.
    let reduce: Vec<RunJob> = net.runs.iter().flatten().cloned().collect();
    assert_eq!(reduce.len(), 1, "{reduce:?}");
    assert_eq!(reduce[0].job, parent);
    let outs: Vec<Vec<u8>> = parts
        .iter()
        .map(|p| p.to_ascii_uppercase().into_bytes())
        .collect();
    assert_eq!(
        &reduce[0].body[..],
        &wasque_sdk::proto::frame_parts(&outs)[..]
    );
    finish_runs(&mut net, |_| b"ABCDEF".to_vec());
    let s = net.nodes[0].job(&parent).unwrap().status(net.now, "n");
    assert_eq!(s.state, JobState::Done);
    assert_eq!(s.result.unwrap().output, b"ABCDEF");
    let nodes: HashSet<&str> = s.parts.iter().map(|p| p.node.as_str()).collect();
    assert_eq!(nodes.len(), 3, "the parent shows where each part ran");
    // The parts' jobs are gone everywhere.
    for e in &net.nodes {
        assert_eq!(e.job_count() - usize::from(e.job(&parent).is_some()), 0);
    }
}

#[test]
fn a_distributed_job_survives_the_death_of_a_node_running_parts() {
    let mut net = Net::new(3);
    net.command(
        0,
        Command::QPolicy {
            queue: "mr".into(),
            set: Some((Policy::RoundRobin, Mode::Push)),
        },
    );
    let parent = distributed(&mut net, 0, &["a", "b", "c", "d", "e", "f"]);
    // Node 3 dies with its parts in hand; the others finish theirs.
    net.down[2] = true;
    net.runs[2].clear();
    finish_runs(&mut net, |b| b.to_vec());
    net.membership();
    // Its parts are delivered again by the holders and finish.
    for _ in 0..5 {
        finish_runs(&mut net, |b| b.to_vec());
        net.advance(1_000);
        if net.nodes[0].job(&parent).unwrap().state == JobState::Done {
            break;
        }
    }
    let s = net.nodes[0].job(&parent).unwrap().status(net.now, "n");
    assert_eq!(s.state, JobState::Done, "{:?}", s.parts);
    assert_eq!(
        s.result.unwrap().output.len(),
        // The reduce echoed here: six 1-byte outputs, each framed.
        6 * 5
    );
}

/// A dead letter is told to every holder (none queues it again after
/// RETRY), and a DLQ REQUEUE on another holder brings it back there.
#[test]
fn a_dead_letter_reaches_every_holder_and_is_requeued_from_any() {
    let mut net = Net::new(2);
    let mut a = plain("q", "work", 2, 2);
    a.retry = Some(crate::job::RetryPolicy::new(1));
    let id = net.add(0, a);
    let r = net.command(0, get("q"));
    assert_eq!(got_ids(net.reply(0, r)), vec![id]);
    let r = net.command(
        0,
        Command::Nack {
            ids: vec![id],
            delay_ms: None,
        },
    );
    assert_eq!(net.reply(0, r), Some(&Reply::Count(1)));
    for i in 0..2 {
        assert_eq!(
            net.nodes[i].job(&id).unwrap().state,
            JobState::Dead,
            "node {i}"
        );
    }
    net.advance(5_000);
    for i in 0..2 {
        assert_eq!(
            net.nodes[i].job(&id).unwrap().state,
            JobState::Dead,
            "node {i}"
        );
    }
    let r = net.command(
        1,
        Command::Dlq(Box::new(crate::api::Dlq {
            queue: "q".into(),
            op: crate::api::DlqOp::Requeue { ids: vec![] },
            key: None,
        })),
    );
    assert_eq!(net.reply(1, r), Some(&Reply::Count(1)));
    assert_eq!(net.nodes[0].job(&id).unwrap().state, JobState::Active);
    assert_eq!(net.nodes[0].dead_letters(), 0);
    let r = net.command(1, get("q"));
    assert_eq!(got_ids(net.reply(1, r)), vec![id]);
}

/// An add answered with a new job's id or, for a repeated key, the
/// earlier job's.
fn add_keyed(net: &mut Net, node: usize, a: AddJob) -> JobId {
    let req = net.command(node, Command::AddJob(Box::new(a)));
    match net.reply(node, req) {
        Some(Reply::JobAdded(id) | Reply::Duplicate(id)) => *id,
        other => panic!("add failed: {other:?}"),
    }
}

fn keyed(replicate: u32, key: &str) -> AddJob {
    let mut a = plain("q", "x", replicate, 60);
    a.idempotency_key = Some(key.into());
    a
}

#[test]
fn a_holder_of_a_copy_answers_a_repeated_add_with_the_first_id() {
    let mut net = Net::new(3);
    let id = add_keyed(&mut net, 0, keyed(2, "k"));
    let holder = (1..3)
        .find(|i| net.nodes[*i].job(&id).is_some())
        .expect("a copy on a peer");
    let other = 3 - holder;
    assert_eq!(add_keyed(&mut net, holder, keyed(2, "k")), id);
    assert_eq!(net.nodes[holder].job_count(), 1, "nothing added there");
    // After the ack, every holder remembers the key.
    let req = net.command(
        0,
        Command::Ack {
            ids: vec![id],
            fast: false,
        },
    );
    assert!(matches!(net.reply(0, req), Some(Reply::Count(1))));
    assert!(net.nodes[holder].job(&id).is_none());
    assert_eq!(add_keyed(&mut net, holder, keyed(2, "k")), id);
    assert_eq!(add_keyed(&mut net, 0, keyed(2, "k")), id);
    // A node that never held the job cannot know the key (README's
    // window of doubt): it adds a job of its own.
    assert_ne!(add_keyed(&mut net, other, keyed(1, "k")), id);
}

#[test]
fn a_repeated_add_while_the_first_waits_for_copies_gets_its_answer() {
    let mut net = Net::new(2);
    net.down[1] = true;
    let mut a = keyed(2, "k");
    a.timeout_ms = 200;
    let first = net.command(0, Command::AddJob(Box::new(a.clone())));
    let second = net.command(0, Command::AddJob(Box::new(a.clone())));
    assert!(net.reply(0, first).is_none() && net.reply(0, second).is_none());
    net.advance(300);
    for req in [first, second] {
        assert!(
            matches!(net.reply(0, req), Some(Reply::Error(e)) if e.code == ErrorCode::NoRepl),
            "{:?}",
            net.reply(0, req)
        );
    }
    // The failed add left no key behind, here or on the peer.
    assert_eq!(net.nodes[0].idem_stats().tombstones, 0);
    net.down[1] = false;
    let first = net.command(0, Command::AddJob(Box::new(a.clone())));
    let second = net.command(0, Command::AddJob(Box::new(a)));
    let (Some(Reply::JobAdded(x)), Some(Reply::Duplicate(y))) =
        (net.reply(0, first), net.reply(0, second))
    else {
        panic!("{:?} {:?}", net.reply(0, first), net.reply(0, second));
    };
    assert_eq!(x, y);
    assert_eq!(net.nodes[1].idem_stats().tombstones, 0);
}

/// `PAUSE q in BCAST` on one node pauses q on every live node; the
/// others do not pass it on, and without BCAST only the node changes.
#[test]
fn pause_bcast_reaches_every_node() {
    let mut net = Net::new(3);
    let pause = |set, bcast| Command::Pause {
        queue: "q".into(),
        set,
        bcast,
    };
    let only_in = Some(crate::queue::Pause {
        input: true,
        output: false,
    });
    let req = net.command(0, pause(only_in, false));
    net.settle();
    assert_eq!(net.reply(0, req), Some(&Reply::Paused("in")));
    let req = net.command(1, pause(None, false));
    net.settle();
    assert_eq!(net.reply(1, req), Some(&Reply::Paused("none")));

    net.command(0, pause(only_in, true));
    net.settle();
    for n in 1..3 {
        let req = net.command(n, pause(None, false));
        net.settle();
        assert_eq!(net.reply(n, req), Some(&Reply::Paused("in")), "node {n}");
        let req = net.command(n, Command::AddJob(Box::new(plain("q", "x", 1, 60))));
        net.settle();
        assert!(
            matches!(net.reply(n, req), Some(Reply::Error(e)) if e.code == ErrorCode::Paused),
            "node {n}: {:?}",
            net.reply(n, req)
        );
    }
    // BCAST of the state as it is: clearing on node 0 clears everywhere.
    net.command(0, pause(Some(crate::queue::Pause::default()), true));
    net.settle();
    for n in 0..3 {
        let req = net.command(n, pause(None, false));
        net.settle();
        assert_eq!(net.reply(n, req), Some(&Reply::Paused("none")), "node {n}");
    }
}

/// Which nodes hold `id`, and which of them have it queued.
fn holders(net: &Net, id: &JobId) -> (Vec<usize>, Vec<usize>) {
    let held: Vec<usize> = (0..net.nodes.len())
        .filter(|i| net.nodes[*i].job(id).is_some())
        .collect();
    let queued = held
        .iter()
        .copied()
        .filter(|i| net.nodes[*i].job(id).unwrap().state == JobState::Queued)
        .collect();
    (held, queued)
}

#[test]
fn a_leaving_node_replicates_adds_externally_and_keeps_no_copy() {
    let mut net = Net::new(4);
    net.nodes[0].set_leaving(true);
    let id = net.add(0, plain("q", "x", 2, 60));
    assert!(net.nodes[0].job(&id).is_none(), "no local copy");
    assert_eq!(net.nodes[0].stats().jobs, 0);
    let (held, queued) = holders(&net, &id);
    assert_eq!(held.len(), 2, "two copies, both on peers: {held:?}");
    assert_eq!(queued.len(), 1, "one holder queues it: {queued:?}");
    // A worker at the queueing node gets it; its ack removes every copy.
    let req = net.command(queued[0], get("q"));
    assert_eq!(got_ids(net.reply(queued[0], req)), vec![id]);
    net.command(
        queued[0],
        Command::Ack {
            ids: vec![id],
            fast: false,
        },
    );
    net.advance(1_000);
    assert!(holders(&net, &id).0.is_empty());

    // Asynchronous: answered at once, still no local copy.
    let mut a = plain("q", "y", 3, 60);
    a.asynchronous = true;
    let id = net.add(0, a);
    assert!(net.nodes[0].job(&id).is_none());
    let (held, queued) = holders(&net, &id);
    assert_eq!((held.len(), queued.len()), (3, 1), "{held:?} {queued:?}");

    // More copies than peers: refused, nothing left anywhere.
    let req = net.command(0, Command::AddJob(Box::new(plain("q", "z", 4, 60))));
    assert!(matches!(net.reply(0, req), Some(Reply::Error(e)) if e.code == ErrorCode::NoRepl));
    assert_eq!(net.nodes[0].stats().jobs, 0);
}

#[test]
fn a_leaving_node_alone_refuses_adds() {
    let mut net = Net::new(1);
    net.nodes[0].set_leaving(true);
    let req = net.command(0, Command::AddJob(Box::new(plain("q", "x", 1, 60))));
    assert!(matches!(net.reply(0, req), Some(Reply::Error(e)) if e.code == ErrorCode::Leaving));
}

#[test]
fn memory_pressure_replicates_externally_and_forgets_idle_queues_sooner() {
    let mut net = Net::new(3);
    let now = net.now;
    net.nodes[0].memory_tick(now, 1);
    let id = net.add(0, plain("q", "x", 1, 60));
    assert!(net.nodes[0].job(&id).is_none(), "past 75 %: no local copy");
    assert_eq!(holders(&net, &id).1.len(), 1);
    net.nodes[0].memory_tick(now, 0);
    let id = net.add(0, plain("q", "x", 1, 60));
    assert!(net.nodes[0].job(&id).is_some(), "pressure gone: kept here");

    // An emptied queue is kept for minutes without pressure, for 2 s past
    // 95 %.
    let id = net.add(0, plain("empty", "x", 1, 0));
    let req = net.command(0, get("empty"));
    assert_eq!(got_ids(net.reply(0, req)), vec![id]);
    net.command(
        0,
        Command::Ack {
            ids: vec![id],
            fast: false,
        },
    );
    let queues = net.nodes[0].stats().queues;
    net.advance(2_500);
    let now = net.now;
    net.nodes[0].memory_tick(now, 0);
    assert_eq!(net.nodes[0].stats().queues, queues);
    net.nodes[0].memory_tick(now, 2);
    assert_eq!(net.nodes[0].memory_level(), 2);
    assert_eq!(net.nodes[0].stats().queues, queues - 1);
}

#[test]
fn getjob_on_a_leaving_node_serves_what_is_queued_then_answers_leaving() {
    let mut net = Net::new(2);
    let id = net.add(0, plain("q", "x", 1, 60));
    net.nodes[0].set_leaving(true);
    let mut g = get("q");
    if let Command::GetJob(b) = &mut g {
        b.nohang = false;
        b.timeout_ms = 1_000;
    }
    let req = net.command(0, g);
    assert_eq!(got_ids(net.reply(0, req)), vec![id]);
    let mut g = get("q");
    if let Command::GetJob(b) = &mut g {
        b.nohang = false;
    }
    let req = net.command(0, g);
    assert!(
        matches!(net.reply(0, req), Some(Reply::Error(e)) if e.code == ErrorCode::Leaving),
        "{:?}",
        net.reply(0, req)
    );
}
