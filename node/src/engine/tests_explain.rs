//! EXPLAIN (`explain.rs`) driven directly with a virtual clock: each
//! state a job can wait in gives its reason kind and exact fields, and a
//! job on two engines (relayed by hand) is named with the node that has
//! it in hand.

use super::*;
use crate::api::GetJob;
use crate::job::{Backoff, ErrorClass, RetryPolicy};
use crate::queue::Pause;
use wasque_sdk::proto::{Explain, ExplainValue, Reason};

const T0: UnixMs = 1_700_000_000_000;

fn engine(slots: usize) -> Engine {
    Engine::new(EngineConfig {
        exec_slots: slots,
        node_id: "n1".into(),
        ..EngineConfig::default()
    })
}

fn module() -> ModuleHash {
    ModuleHash::of(b"module")
}

fn wasm(queue: &str, priority: u8) -> AddJob {
    let mut a = AddJob::new(queue, b"x".to_vec());
    a.module = Some(module());
    a.priority = priority;
    a
}

/// Adds a job and returns its id.
fn add(e: &mut Engine, now: UnixMs, req: u64, a: AddJob) -> JobId {
    e.handle_command(now, RequestId(req), Command::AddJob(Box::new(a)));
    let mut id = None;
    while let Some(f) = e.poll_effect() {
        if let Effect::Reply {
            to,
            reply: Reply::JobAdded(j),
        } = f
            && to.0 == req
        {
            id = Some(j);
        }
    }
    id.expect("job added")
}

fn explain(e: &mut Engine, now: UnixMs, id: JobId) -> Option<Explain> {
    e.handle_command(now, RequestId(999), Command::Explain { id });
    let mut out = None;
    while let Some(f) = e.poll_effect() {
        if let Effect::Reply { to, reply } = f
            && to.0 == 999
        {
            out = Some(reply);
        }
    }
    match out.expect("a reply") {
        Reply::Explain(x) => Some(*x),
        Reply::Error(err) => {
            assert_eq!(err.code, ErrorCode::NoJob);
            None
        }
        other => panic!("{other:?}"),
    }
}

fn reason<'a>(x: &'a Explain, kind: &str) -> &'a Reason {
    x.reasons
        .iter()
        .find(|r| r.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} reason in {x:#?}"))
}

fn int(r: &Reason, name: &str) -> u64 {
    r.field(name)
        .and_then(ExplainValue::as_int)
        .unwrap_or_else(|| panic!("no number {name} in {r:?}"))
}

fn text<'a>(r: &'a Reason, name: &str) -> &'a str {
    r.field(name)
        .and_then(ExplainValue::as_text)
        .unwrap_or_else(|| panic!("no text {name} in {r:?}"))
}

#[test]
fn queued_jobs_count_those_ahead_and_name_the_busy_slots() {
    let mut e = engine(1);
    e.handle_module_added(module(), 10);
    let running = add(&mut e, T0, 1, wasm("q", 0));
    let a = add(&mut e, T0 + 1, 2, wasm("q", 0));
    let b = add(&mut e, T0 + 2, 3, wasm("q", 0));
    let high = add(&mut e, T0 + 3, 4, wasm("q", 5));
    let c = add(&mut e, T0 + 4, 5, wasm("q", 0));

    let x = explain(&mut e, T0 + 10, running).unwrap();
    assert_eq!(x.state, JobState::Active);
    let r = reason(&x, "running");
    assert_eq!(int(r, "since-at"), T0);
    assert_eq!(int(r, "attempt"), 1);
    assert_eq!(int(r, "deadline-at"), T0 + 10_000);
    assert_eq!(text(r, "node"), "n1");

    // Behind the higher-priority job and the two older ones.
    let x = explain(&mut e, T0 + 10, c).unwrap();
    let q = reason(&x, "queued");
    assert_eq!(int(q, "ahead"), 3);
    assert_eq!(int(q, "ahead-higher"), 1);
    assert_eq!(int(q, "priority"), 0);
    assert_eq!(int(q, "queue-len"), 4);
    assert!(q.text.contains("behind 3 job(s)"), "{}", q.text);
    let s = reason(&x, "waiting-for-slot");
    assert_eq!((int(s, "slots"), int(s, "busy")), (1, 1));
    assert!(
        x.summary().contains("every executor slot"),
        "{}",
        x.summary()
    );

    let x = explain(&mut e, T0 + 10, high).unwrap();
    assert_eq!(int(reason(&x, "queued"), "ahead"), 0);
    let x = explain(&mut e, T0 + 10, b).unwrap();
    assert_eq!(int(reason(&x, "queued"), "ahead"), 2);
    let _ = a;

    // A job the node does not hold: no explanation (NOJOB).
    e.handle_command(
        T0 + 20,
        RequestId(50),
        Command::Ack {
            ids: vec![c],
            fast: false,
        },
    );
    while e.poll_effect().is_some() {}
    assert!(explain(&mut e, T0 + 20, c).is_none());
}

#[test]
fn a_paused_queue_and_a_delay_are_named() {
    let mut e = engine(1);
    e.handle_module_added(module(), 10);
    e.handle_command(
        T0,
        RequestId(1),
        Command::Pause {
            queue: "q".into(),
            set: Some(Pause {
                input: false,
                output: true,
            }),
            bcast: false,
        },
    );
    while e.poll_effect().is_some() {}
    let id = add(&mut e, T0, 2, wasm("q", 0));
    let x = explain(&mut e, T0 + 1, id).unwrap();
    assert_eq!(x.state, JobState::Queued);
    let p = reason(&x, "paused");
    assert_eq!(text(p, "pause"), "out");
    assert!(p.text.contains("PAUSE q none"), "{}", p.text);

    let mut d = wasm("later", 0);
    d.delay_secs = Some(30);
    let id = add(&mut e, T0, 3, d);
    let x = explain(&mut e, T0 + 5_000, id).unwrap();
    let r = reason(&x, "delayed");
    assert_eq!(int(r, "ready-at"), T0 + 30_000);
    assert_eq!(int(r, "in-ms"), 25_000);
    assert!(r.text.contains("in 25.0 s"), "{}", r.text);
}

#[test]
fn a_failed_run_waits_out_its_backoff_as_attempt_k_of_n() {
    let mut e = engine(1);
    e.handle_module_added(module(), 10);
    let mut a = wasm("q", 0);
    a.retry = Some(RetryPolicy {
        max_attempts: 3,
        backoff: Backoff::Fixed,
        base_ms: 2_000,
        max_ms: 2_000,
        retry_on: wasque_sdk::proto::retry::parse_retry_on("exit:3").unwrap(),
    });
    let id = add(&mut e, T0, 1, a);
    e.handle_exec_done(
        T0 + 100,
        id,
        1,
        JobResult {
            exit_code: Some(3),
            error_class: Some(ErrorClass::Exit(3)),
            message: "exit status 3".into(),
            output: vec![],
            stderr: vec![],
            fuel_used: 1,
            duration_us: 100,
            node: "n1".into(),
        },
    );
    while e.poll_effect().is_some() {}
    let x = explain(&mut e, T0 + 600, id).unwrap();
    let r = reason(&x, "retry-backoff");
    assert_eq!(int(r, "attempt"), 1);
    assert_eq!(int(r, "max-attempts"), 3);
    assert_eq!(int(r, "ready-at"), T0 + 2_100);
    assert_eq!(int(r, "in-ms"), 1_500);
    assert!(text(r, "last-error").contains("exit"), "{r:?}");
    assert!(r.text.contains("attempt 2 of 3"), "{}", r.text);
}

#[test]
fn a_plain_job_is_queued_for_a_worker_then_delivered() {
    let mut e = engine(1);
    let mut a = AddJob::new("p", b"w".to_vec());
    a.retry_secs = Some(60);
    let id = add(&mut e, T0, 1, a);
    let x = explain(&mut e, T0, id).unwrap();
    assert!(reason(&x, "queued").text.contains("GETJOB"), "{x:?}");
    e.handle_command(
        T0 + 1_000,
        RequestId(2),
        Command::GetJob(Box::new(GetJob {
            queues: vec!["p".into()],
            nohang: true,
            timeout_ms: 0,
            count: 1,
            withcounters: false,
        })),
    );
    while e.poll_effect().is_some() {}
    let x = explain(&mut e, T0 + 2_000, id).unwrap();
    let r = reason(&x, "delivered");
    assert_eq!(int(r, "attempt"), 1);
    assert_eq!(int(r, "requeue-at"), T0 + 61_000);
}

#[test]
fn finished_jobs_say_how_and_wait_for_their_ack() {
    let mut e = engine(1);
    e.handle_module_added(module(), 10);
    let id = add(&mut e, T0, 1, wasm("q", 0));
    e.handle_exec_done(T0 + 5, id, 1, super::tests::ok_result("hi"));
    while e.poll_effect().is_some() {}
    let x = explain(&mut e, T0 + 6, id).unwrap();
    let r = reason(&x, "finished");
    assert_eq!(text(r, "class"), "ok");
    assert!(r.text.contains("ACKJOB"), "{}", r.text);
}

/// Two engines, their peer messages relayed until quiet; other effects
/// dropped.
fn relay(nodes: &mut [Engine], now: UnixMs) {
    for _ in 0..1_000 {
        let mut moved = false;
        for i in 0..nodes.len() {
            while let Some(f) = nodes[i].poll_effect() {
                let (to, msg) = match f {
                    Effect::Send { to, msg } => (vec![to], msg),
                    Effect::SendMany { to, msg } => (to, msg),
                    _ => continue,
                };
                moved = true;
                for t in to {
                    let j = usize::from(t.0[0]) - 1;
                    nodes[j].handle_peer(now, node(i + 1), msg.clone());
                }
            }
        }
        if !moved {
            return;
        }
    }
    panic!("the relay did not settle");
}

fn node(i: usize) -> NodeName {
    NodeName([i as u8; 20])
}

fn pair() -> Vec<Engine> {
    let mut nodes: Vec<Engine> = (1..=2)
        .map(|i| {
            Engine::new(EngineConfig {
                node_id: node(i).to_string(),
                node_prefix: node(i).prefix(),
                seed: i as u64,
                exec_slots: 1,
                ..EngineConfig::default()
            })
        })
        .collect();
    for e in nodes.iter_mut() {
        e.handle_peers(T0, [node(1), node(2)]);
    }
    relay(&mut nodes, T0);
    nodes
}

/// Adds on node `at` and relays; the reply is not awaited.
fn add_on(nodes: &mut [Engine], at: usize, req: u64, a: AddJob) -> JobId {
    nodes[at].handle_command(T0, RequestId(req), Command::AddJob(Box::new(a)));
    let mut id = None;
    let mut rest = Vec::new();
    while let Some(f) = nodes[at].poll_effect() {
        match f {
            Effect::Reply {
                reply: Reply::JobAdded(j),
                ..
            } => id = Some(j),
            f @ (Effect::Send { .. } | Effect::SendMany { .. }) => rest.push(f),
            _ => {}
        }
    }
    // Put the messages back in order for the relay.
    let id = id.or_else(|| {
        rest.iter().find_map(|f| match f {
            Effect::SendMany {
                msg: PeerMsg::Replicate(j),
                ..
            } => Some(j.id),
            _ => None,
        })
    });
    nodes[at].effects.extend(rest);
    relay(nodes, T0);
    id.expect("an id")
}

#[test]
fn copies_on_two_nodes_name_the_node_in_hand() {
    let mut nodes = pair();
    // Replicated to both: node 2 keeps a holder's copy, node 1 queued it.
    let mut a = AddJob::new("p", b"w".to_vec());
    a.replicate = Some(2);
    let id = add_on(&mut nodes, 0, 1, a);
    let x = explain(&mut nodes[0], T0, id).unwrap();
    assert_eq!(x.state, JobState::Queued, "{x:?}");
    let x = explain(&mut nodes[1], T0, id).unwrap();
    let r = reason(&x, "held-elsewhere");
    assert_eq!(text(r, "node"), node(1).to_string());
    assert_eq!(x.elsewhere(), Some(node(1).to_string().as_str()));
    assert!(r.text.contains("which added it"), "{}", r.text);

    // A group's job goes to its group's node: lent there, queued there.
    let mut lent = None;
    for g in 0..32 {
        let mut a = wasm("gq", 0);
        a.module = None;
        a.replicate = Some(1);
        a.group = Some(format!("g{g}"));
        let id = add_on(&mut nodes, 0, 10 + g, a);
        let x = explain(&mut nodes[0], T0, id).unwrap();
        if x.reasons[0].kind == "lent" {
            lent = Some((id, x));
            break;
        }
    }
    let (id, x) = lent.expect("some group lives on node 2");
    let r = reason(&x, "lent");
    assert_eq!(text(r, "node"), node(2).to_string());
    assert_eq!(r.field("node-up"), Some(&ExplainValue::Bool(true)));
    let there = explain(&mut nodes[1], T0, id).unwrap();
    assert_eq!(there.state, JobState::Queued);
    assert_eq!(int(reason(&there, "queued"), "ahead"), 0);
}

#[test]
fn an_add_waiting_for_its_copies_says_on_whom() {
    let mut nodes = pair();
    let mut a = AddJob::new("p", b"w".to_vec());
    a.replicate = Some(2);
    a.timeout_ms = 3_000;
    nodes[0].handle_command(T0, RequestId(1), Command::AddJob(Box::new(a)));
    // The copy never reaches node 2 (the message is dropped).
    let mut id = None;
    while let Some(f) = nodes[0].poll_effect() {
        if let Effect::SendMany {
            msg: PeerMsg::Replicate(j),
            ..
        } = f
        {
            id = Some(j.id);
        }
    }
    let id = id.expect("replicated");
    let x = explain(&mut nodes[0], T0 + 1_000, id).unwrap();
    assert_eq!(x.state, JobState::WaitRepl);
    let r = reason(&x, "wait-repl");
    assert_eq!((int(r, "answered"), int(r, "asked")), (0, 1));
    assert_eq!(text(r, "waiting-on"), node(2).to_string());
    assert_eq!(int(r, "deadline-at"), T0 + 3_000);
    assert!(r.text.contains("NOREPL in 2.0 s"), "{}", r.text);
}

#[test]
fn a_job_moved_to_a_node_without_its_module_waits_for_the_fetch() {
    let mut nodes = pair();
    nodes[0].handle_module_added(module(), 10);
    let mut found = false;
    for g in 0..32 {
        let mut a = wasm("mq", 0);
        a.replicate = Some(1);
        a.group = Some(format!("g{g}"));
        let id = add_on(&mut nodes, 0, 10 + g, a);
        let Some(x) = explain(&mut nodes[1], T0, id) else {
            continue;
        };
        let r = reason(&x, "waiting-for-module");
        assert_eq!(text(r, "module"), module().to_hex());
        assert_eq!(text(r, "from"), node(1).to_string());
        found = true;
        break;
    }
    assert!(found, "some group lives on node 2");
}
