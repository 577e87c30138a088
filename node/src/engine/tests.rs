//! The engine driven directly: no sockets, no clock, no sleeps.

use super::timer::EXPIRY_SLOT_MS;
use super::*;
use crate::job::{ErrorClass, LimitsRequest};

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

fn wasm_job(queue: &str, body: &str) -> AddJob {
    let mut a = AddJob::new(queue, body.as_bytes().to_vec());
    a.module = Some(module());
    a
}

fn drain(e: &mut Engine) -> Vec<Effect> {
    std::iter::from_fn(|| e.poll_effect()).collect()
}

fn added(effects: &[Effect], req: u64) -> JobId {
    effects
        .iter()
        .find_map(|f| match f {
            Effect::Reply {
                to,
                reply: Reply::JobAdded(id),
            } if to.0 == req => Some(*id),
            _ => None,
        })
        .expect("job added")
}

pub(super) fn ok_result(out: &str) -> JobResult {
    JobResult {
        exit_code: Some(0),
        error_class: None,
        message: String::new(),
        output: out.as_bytes().to_vec(),
        stderr: vec![],
        fuel_used: 10,
        duration_us: 5,
        node: "n1".into(),
    }
}

#[test]
fn wasm_job_runs_and_wakes_its_waiter() {
    let mut e = engine(1);
    e.handle_module_added(module(), 100);
    e.handle_command(
        T0,
        RequestId(1),
        Command::AddJob(Box::new(wasm_job("q", "hi"))),
    );
    let fx = drain(&mut e);
    let id = added(&fx, 1);
    let run = fx
        .iter()
        .find_map(|f| match f {
            Effect::Run(r) => Some(r.clone()),
            _ => None,
        })
        .expect("run effect");
    assert_eq!(run.job, id);
    assert_eq!(&run.body[..], b"hi");
    assert_eq!(e.job(&id).unwrap().state, JobState::Active);

    e.handle_command(
        T0 + 1,
        RequestId(2),
        Command::Wait {
            id,
            timeout_ms: 1000,
        },
    );
    assert!(drain(&mut e).is_empty(), "wait blocks");
    e.handle_exec_done(T0 + 2, id, run.attempt, ok_result("2\n"));
    let fx = drain(&mut e);
    match &fx[..] {
        [
            Effect::Reply {
                to,
                reply: Reply::Job(s),
            },
        ] => {
            assert_eq!(*to, RequestId(2));
            assert_eq!(s.state, JobState::Done);
            assert_eq!(s.result.as_ref().unwrap().output, b"2\n");
        }
        other => panic!("{other:?}"),
    }
    // The wait's timer is gone with it.
    let ttl_end = e.job(&id).unwrap().expires_at;
    let next = e.poll_timeout().expect("the TTL's timer");
    assert!((ttl_end..ttl_end + EXPIRY_SLOT_MS).contains(&next));
}

#[test]
fn executor_slots_bound_running_jobs() {
    let mut e = engine(2);
    e.handle_module_added(module(), 1);
    for i in 0..5 {
        e.handle_command(
            T0,
            RequestId(i),
            Command::AddJob(Box::new(wasm_job("q", "x"))),
        );
    }
    let runs: Vec<RunJob> = drain(&mut e)
        .into_iter()
        .filter_map(|f| match f {
            Effect::Run(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(runs.len(), 2);
    assert_eq!(e.stats().running, 2);
    e.handle_exec_done(T0 + 1, runs[0].job, 1, ok_result(""));
    let more = drain(&mut e)
        .into_iter()
        .filter(|f| matches!(f, Effect::Run(_)))
        .count();
    assert_eq!(more, 1);
}

#[test]
fn unknown_module_and_bounds_are_refused() {
    let mut e = engine(1);
    e.handle_command(
        T0,
        RequestId(1),
        Command::AddJob(Box::new(wasm_job("q", "x"))),
    );
    assert!(matches!(
        &drain(&mut e)[..],
        [Effect::Reply { reply: Reply::Error(err), .. }] if err.code == ErrorCode::NoModule
    ));
    e.handle_module_added(module(), 1);
    let mut a = wasm_job("q", "x");
    a.limits = LimitsRequest {
        fuel: Some(u64::MAX),
        ..Default::default()
    };
    e.handle_command(T0, RequestId(2), Command::AddJob(Box::new(a)));
    assert!(matches!(
        &drain(&mut e)[..],
        [Effect::Reply { reply: Reply::Error(err), .. }] if err.code == ErrorCode::Quota
    ));
    let mut a = AddJob::new("q", vec![0u8; (8 << 20) + 1]);
    a.replicate = None;
    e.handle_command(T0, RequestId(3), Command::AddJob(Box::new(a)));
    assert!(matches!(
        &drain(&mut e)[..],
        [Effect::Reply { reply: Reply::Error(err), .. }] if err.code == ErrorCode::TooBig
    ));
    let mut a = AddJob::new("q", b"x".to_vec());
    a.replicate = Some(3);
    e.handle_command(T0, RequestId(4), Command::AddJob(Box::new(a)));
    assert!(matches!(
        &drain(&mut e)[..],
        [Effect::Reply { reply: Reply::Error(err), .. }] if err.code == ErrorCode::NoRepl
    ));
    assert_eq!(e.stats().jobs, 0, "nothing half-created");
}

#[test]
fn add_and_wait_acks_after_the_result() {
    let mut e = engine(1);
    e.handle_module_added(module(), 1);
    let mut a = wasm_job("q", "x");
    a.wait_ms = Some(5_000);
    a.ack_on_result = true;
    e.handle_command(T0, RequestId(9), Command::AddJob(Box::new(a)));
    let run = drain(&mut e)
        .into_iter()
        .find_map(|f| match f {
            Effect::Run(r) => Some(r),
            _ => None,
        })
        .unwrap();
    let mut failed = ok_result("");
    failed.error_class = Some(ErrorClass::OutOfFuel);
    e.handle_exec_done(T0 + 3, run.job, run.attempt, failed);
    match &drain(&mut e)[..] {
        [
            Effect::Reply {
                to,
                reply: Reply::Job(s),
            },
        ] => {
            assert_eq!(to.0, 9);
            assert_eq!(s.state, JobState::Failed);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e.stats().jobs, 0);
    assert_eq!(e.stats().timers, 0);
}

#[test]
fn wait_times_out_on_the_virtual_clock() {
    let mut e = engine(0); // no executors: the job never runs
    e.handle_module_added(module(), 1);
    e.handle_command(
        T0,
        RequestId(1),
        Command::AddJob(Box::new(wasm_job("q", "x"))),
    );
    let id = added(&drain(&mut e), 1);
    e.handle_command(T0, RequestId(2), Command::Wait { id, timeout_ms: 50 });
    assert_eq!(e.poll_timeout(), Some(T0 + 50));
    e.handle_timeout(T0 + 49);
    assert!(drain(&mut e).is_empty());
    e.handle_timeout(T0 + 50);
    assert!(matches!(
        &drain(&mut e)[..],
        [Effect::Reply {
            reply: Reply::NotFinished,
            ..
        }]
    ));
    // A cancelled wait leaves nothing behind.
    e.handle_command(T0, RequestId(3), Command::Wait { id, timeout_ms: 50 });
    e.handle_cancel(RequestId(3));
    assert_eq!(e.stats().timers, 1);
}

#[test]
fn delay_and_ttl_follow_the_clock() {
    let mut e = engine(0);
    let mut a = AddJob::new("q", b"x".to_vec());
    a.delay_secs = Some(2);
    a.ttl_secs = Some(10);
    e.handle_command(T0, RequestId(1), Command::AddJob(Box::new(a)));
    let id = added(&drain(&mut e), 1);
    assert_eq!(e.queues.len_of("q"), 0);
    e.handle_timeout(T0 + 2_000);
    assert_eq!(e.queues.len_of("q"), 1);
    // TTL ends fire by slot: at most a slot late (Disque's cron is not
    // exact either).
    e.handle_timeout(T0 + 10_000 - 1);
    assert!(e.job(&id).is_some());
    e.handle_timeout(T0 + 10_000 + EXPIRY_SLOT_MS);
    assert!(e.job(&id).is_none());
    assert_eq!(e.queues.len_of("q"), 0);
}

#[test]
fn nocache_hands_the_result_to_present_waiters_only() {
    let mut e = engine(1);
    e.handle_module_added(module(), 1);
    let mut a = wasm_job("q", "x");
    a.nocache = true;
    e.handle_command(T0, RequestId(1), Command::AddJob(Box::new(a)));
    let fx = drain(&mut e);
    let id = added(&fx, 1);
    e.handle_command(
        T0,
        RequestId(2),
        Command::Wait {
            id,
            timeout_ms: 100,
        },
    );
    e.handle_exec_done(T0 + 1, id, 1, ok_result("out"));
    let fx = drain(&mut e);
    assert!(matches!(&fx[..], [Effect::Reply { reply: Reply::Job(s), .. }] if s.result.is_some()));
    e.handle_command(T0 + 2, RequestId(3), Command::Show { id });
    assert!(matches!(
        &drain(&mut e)[..],
        [Effect::Reply { reply: Reply::Job(s), .. }] if s.result.is_none() && s.state == JobState::Done
    ));
}

#[test]
fn module_in_use_cannot_be_deleted_and_deljob_wakes_waiters() {
    let mut e = engine(0);
    e.handle_module_added(module(), 1);
    e.handle_command(
        T0,
        RequestId(1),
        Command::AddJob(Box::new(wasm_job("q", "x"))),
    );
    let id = added(&drain(&mut e), 1);
    e.handle_command(T0, RequestId(2), Command::DeleteModule { hash: module() });
    assert!(matches!(
        &drain(&mut e)[..],
        [Effect::Reply {
            reply: Reply::Error(_),
            ..
        }]
    ));
    e.handle_command(
        T0,
        RequestId(3),
        Command::Wait {
            id,
            timeout_ms: 1000,
        },
    );
    e.handle_command(T0, RequestId(4), Command::DelJob { ids: vec![id] });
    let fx = drain(&mut e);
    assert_eq!(fx.len(), 2);
    e.handle_command(T0, RequestId(5), Command::DeleteModule { hash: module() });
    let fx = drain(&mut e);
    assert!(fx.contains(&Effect::RemoveModule(module())));
    assert_eq!(e.stats().timers, 0);
}

#[test]
fn module_users_counts_unfinished_jobs_held_or_not_by_tenant() {
    let mut e = engine(1);
    e.handle_module_added(module(), 1);
    // A module only a peer holds: adds naming it are taken, and it is
    // fetched where the job runs.
    let other = ModuleHash::of(b"elsewhere");
    let peer = NodeName::from_hex(&"ab".repeat(20)).unwrap();
    e.handle_peers(T0, [peer]);
    e.handle_peer_load(
        peer,
        PeerLoad {
            exec_slots: 1,
            modules: [other].into_iter().collect(),
            ..Default::default()
        },
    );
    let mut ids = Vec::new();
    for (i, q) in ["q", "alice/q", "alice/r", "bob/q"].iter().enumerate() {
        let mut a = wasm_job(q, "x");
        a.delay_secs = Some(60);
        a.replicate = Some(1);
        e.handle_command(T0, RequestId(i as u64), Command::AddJob(Box::new(a)));
        ids.push(added(&drain(&mut e), i as u64));
    }
    let mut a = wasm_job("alice/q", "y");
    a.module = Some(other);
    a.delay_secs = Some(60);
    a.replicate = Some(1);
    e.handle_command(T0, RequestId(10), Command::AddJob(Box::new(a)));
    let far = added(&drain(&mut e), 10);
    let mut want = ids.clone();
    want.sort();
    assert_eq!(e.module_users(&module(), None, 10), (4, want.clone()));
    assert_eq!(e.module_users(&module(), None, 2), (4, want[..2].to_vec()));
    let mut alices = vec![ids[1], ids[2]];
    alices.sort();
    assert_eq!(e.module_users(&module(), Some("alice"), 10), (2, alices));
    assert_eq!(e.module_users(&module(), Some("carol"), 10), (0, vec![]));
    // Not held here, needed all the same.
    assert!(e.module(&other).is_none());
    assert_eq!(e.module_users(&other, None, 10), (1, vec![far]));
    // A job gone (deleted) or finished no longer counts.
    e.handle_command(T0, RequestId(20), Command::DelJob { ids: vec![ids[0]] });
    drain(&mut e);
    assert_eq!(e.module_users(&module(), None, 10).0, 3);
    assert_eq!(e.modules_held(), vec![(module(), 1, 3)]);
}

#[test]
fn a_wait_after_a_nocache_job_finished_answers_at_once() {
    let mut e = engine(1);
    e.handle_module_added(module(), 1);
    let mut a = wasm_job("q", "x");
    a.nocache = true;
    e.handle_command(T0, RequestId(1), Command::AddJob(Box::new(a)));
    let id = added(&drain(&mut e), 1);
    e.handle_exec_done(T0 + 1, id, 1, ok_result("out"));
    drain(&mut e);
    e.handle_command(
        T0 + 2,
        RequestId(2),
        Command::Wait {
            id,
            timeout_ms: 60_000,
        },
    );
    assert!(matches!(
        &drain(&mut e)[..],
        [Effect::Reply { reply: Reply::Job(s), .. }] if s.state == JobState::Done && s.result.is_none()
    ));
}

#[test]
fn short_jobs_get_a_deeper_executor_queue_and_long_ones_do_not() {
    let mut e = Engine::new(EngineConfig {
        exec_slots: 2,
        exec_slots_short: 5,
        node_id: "n1".into(),
        ..EngineConfig::default()
    });
    e.handle_module_added(module(), 100);
    for i in 0..20 {
        e.handle_command(
            T0,
            RequestId(i),
            Command::AddJob(Box::new(wasm_job("q", "x"))),
        );
    }
    let runs = |fx: Vec<Effect>| -> Vec<RunJob> {
        fx.into_iter()
            .filter_map(|f| match f {
                Effect::Run(r) => Some(r),
                _ => None,
            })
            .collect()
    };
    // Nothing measured yet: the plain depth.
    let mut held = runs(drain(&mut e));
    assert_eq!(held.len(), 2);
    let finish = |e: &mut Engine, r: RunJob, us: u64| {
        let mut res = ok_result("1");
        res.duration_us = us;
        e.handle_exec_done(T0 + 1, r.job, r.attempt, res);
        runs(drain(e))
    };
    // A short run: the executor may hold five.
    let r = held.remove(0);
    held.extend(finish(&mut e, r, 12));
    assert_eq!(held.len(), 5);
    // Long runs bring the average up: back to two once the extra ones end.
    for _ in 0..6 {
        let r = held.remove(0);
        held.extend(finish(&mut e, r, 5_000));
    }
    assert_eq!(held.len(), 2, "{} handed out", held.len());
}

/// With tenants, a group with no job in hand that the fair share picks
/// is handed one job over the executor slots (it then runs next on the
/// executor, `exec/share.rs`), and only one; a group with jobs in hand
/// never goes over. Runs carry their group: untenanted ones the default.
#[test]
fn a_tenant_with_nothing_in_hand_gets_one_run_over_the_slots() {
    let runs = super::tests_gather::runs_of;
    let mut e = engine(2);
    e.handle_module_added(module(), 1);
    e.handle_command(
        T0,
        RequestId(1),
        Command::AddJob(Box::new(wasm_job("plain", "x"))),
    );
    let plain = runs(&mut e);
    assert_eq!(plain.len(), 1);
    assert_eq!(plain[0].share, crate::exec::Share::default());
    e.handle_exec_done(T0, plain[0].job, 1, ok_result(""));
    drain(&mut e);

    for i in 0..6 {
        e.handle_command(
            T0,
            RequestId(10 + i),
            Command::AddJob(Box::new(wasm_job("heavy/q", "x"))),
        );
    }
    let heavy = runs(&mut e);
    assert_eq!(heavy.len(), 2, "the slots bound one tenant");
    assert_eq!(e.stats().running, 2);
    assert_ne!(heavy[0].share.group, 0);

    for i in 0..3 {
        e.handle_command(
            T0,
            RequestId(20 + i),
            Command::AddJob(Box::new(wasm_job("light/q", "x"))),
        );
    }
    let light = runs(&mut e);
    assert_eq!(light.len(), 1, "one run over the slots, not more");
    assert_ne!(light[0].share.group, heavy[0].share.group);
    assert_eq!(e.stats().running, 3);

    // A heavy run ends: still at the slots, no new run.
    e.handle_exec_done(T0 + 1, heavy[0].job, 1, ok_result(""));
    assert!(runs(&mut e).is_empty());
    // Light's ends: a slot frees; light has a run again, in the slot or
    // over the slots, and nobody more than that.
    e.handle_exec_done(T0 + 2, light[0].job, 1, ok_result(""));
    let next = runs(&mut e);
    assert!(next.iter().any(|r| r.share == light[0].share), "{next:?}");
    assert!(next.len() <= 2, "{next:?}");
    assert_eq!(e.stats().running, 1 + next.len());
}
