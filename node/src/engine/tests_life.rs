//! Retry policies, NACK with a delay and dead letters (`life.rs`), driven
//! with a virtual clock: backoff times exact, jitter within its bounds,
//! the dead-letter queue after the last attempt, and a restart through
//! the store's record format in the middle of a backoff.

use std::collections::BTreeMap;

use super::*;
use crate::api::{Dlq, DlqOp, GetJob};
use crate::job::{Backoff, ErrorClass, RetryPolicy};
use wasque_sdk::proto::retry::parse_retry_on;

const T0: UnixMs = 1_700_000_000_000;

fn engine() -> Engine {
    Engine::new(EngineConfig {
        exec_slots: 1,
        node_id: "n1".into(),
        journal: true,
        seed: 7,
        ..EngineConfig::default()
    })
}

fn module() -> ModuleHash {
    ModuleHash::of(b"module")
}

fn policy(max: u32, backoff: Backoff, base: u64, cap: u64, on: &str) -> RetryPolicy {
    RetryPolicy {
        max_attempts: max,
        backoff,
        base_ms: base,
        max_ms: cap,
        retry_on: parse_retry_on(on).unwrap(),
    }
}

fn wasm(p: RetryPolicy) -> Command {
    let mut a = AddJob::new("q", b"in".to_vec());
    a.module = Some(module());
    a.retry = Some(p);
    Command::AddJob(Box::new(a))
}

fn plain(p: Option<RetryPolicy>) -> Command {
    let mut a = AddJob::new("p", b"work".to_vec());
    a.retry_secs = Some(10);
    a.retry = p;
    Command::AddJob(Box::new(a))
}

fn failed(code: i32) -> JobResult {
    JobResult {
        exit_code: Some(code),
        error_class: Some(ErrorClass::Exit(code)),
        message: format!("exit status {code}"),
        output: vec![],
        stderr: vec![],
        fuel_used: 1,
        duration_us: 100,
        node: "n1".into(),
    }
}

fn trapped() -> JobResult {
    JobResult {
        exit_code: None,
        error_class: Some(ErrorClass::Trap),
        message: "unreachable".into(),
        ..failed(0)
    }
}

/// Effects drained, and the job changes in them applied to `disk`
/// through the store's record encoding (what a restart reads back).
fn drain(e: &mut Engine, disk: &mut BTreeMap<JobId, Vec<u8>>) -> Vec<Effect> {
    let mut rest = vec![];
    while let Some(f) = e.poll_effect() {
        match f {
            Effect::Persist(Change::Put(job)) => {
                let mut buf = Vec::new();
                crate::store::record::encode(&job, &mut buf).unwrap();
                disk.insert(job.id, buf);
            }
            Effect::Persist(Change::Remove(id)) => {
                disk.remove(&id);
            }
            other => rest.push(other),
        }
    }
    rest
}

fn runs(fx: &[Effect]) -> Vec<RunJob> {
    fx.iter()
        .filter_map(|f| match f {
            Effect::Run(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

fn reply(fx: &[Effect], req: u64) -> Reply {
    fx.iter()
        .find_map(|f| match f {
            Effect::Reply { to, reply } if to.0 == req => Some(reply.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no reply to {req} in {fx:?}"))
}

fn dlq(queue: &str, op: DlqOp) -> Command {
    Command::Dlq(Box::new(Dlq {
        queue: queue.into(),
        op,
        key: None,
    }))
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

/// Adds a Wasm job with `p`, returns its id and its first run.
fn add_wasm(
    e: &mut Engine,
    disk: &mut BTreeMap<JobId, Vec<u8>>,
    p: RetryPolicy,
) -> (JobId, RunJob) {
    e.handle_command(T0, RequestId(1), wasm(p));
    let fx = drain(e, disk);
    let Reply::JobAdded(id) = reply(&fx, 1) else {
        panic!("{fx:?}")
    };
    (id, runs(&fx).pop().expect("first run"))
}

#[test]
fn a_failed_run_is_retried_after_its_fixed_backoff_and_dead_after_the_last() {
    let mut e = engine();
    let mut disk = BTreeMap::new();
    e.handle_module_added(module(), 1);
    let (id, run) = add_wasm(
        &mut e,
        &mut disk,
        policy(3, Backoff::Fixed, 250, 250, "exit:3"),
    );
    e.handle_command(
        T0,
        RequestId(2),
        Command::Wait {
            id,
            timeout_ms: 60_000,
        },
    );
    let mut now = T0 + 10;
    let mut attempt = run.attempt;
    for k in 1..=3u32 {
        assert_eq!(attempt, k);
        e.handle_exec_done(now, id, attempt, failed(3));
        let fx = drain(&mut e, &mut disk);
        if k == 3 {
            break;
        }
        assert!(runs(&fx).is_empty(), "not before its backoff");
        let job = e.job(&id).unwrap();
        assert_eq!(job.state, JobState::Active);
        assert_eq!(
            job.retry().unwrap().last_error,
            format!("attempt {k}: exit(3): exit status 3")
        );
        // Exactly the fixed backoff: nothing a millisecond before.
        assert_eq!(e.poll_timeout(), Some(now + 250));
        e.handle_timeout(now + 249);
        assert!(runs(&drain(&mut e, &mut disk)).is_empty());
        now += 250;
        e.handle_timeout(now);
        let r = runs(&drain(&mut e, &mut disk));
        assert_eq!(r.len(), 1, "run again at its time");
        attempt = r[0].attempt;
        now += 10;
    }
    let fx = drain(&mut e, &mut disk);
    let job = e.job(&id).expect("a dead letter is kept");
    assert_eq!(job.state, JobState::Dead);
    assert_eq!(job.retry().unwrap().attempts, 3);
    // The waiter learned the end, with the last result.
    let _ = fx;
    e.handle_command(now, RequestId(3), dlq("q", DlqOp::List { count: 10 }));
    let fx = drain(&mut e, &mut disk);
    let Reply::Statuses(list) = reply(&fx, 3) else {
        panic!()
    };
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, id);
    assert_eq!(list[0].state, JobState::Dead);
    assert_eq!(
        list[0].retry.as_ref().unwrap().last_error,
        "attempt 3: exit(3): exit status 3"
    );
    assert_eq!(list[0].result.as_ref().unwrap().exit_code, Some(3));
    // Dead letters never expire.
    e.handle_timeout(now + 10 * 86_400_000);
    assert_eq!(e.job(&id).unwrap().state, JobState::Dead);
}

#[test]
fn the_waiter_of_a_run_that_ends_dead_gets_the_end_and_the_job_stays() {
    let mut e = engine();
    let mut disk = BTreeMap::new();
    e.handle_module_added(module(), 1);
    let mut a = AddJob::new("q", b"in".to_vec());
    a.module = Some(module());
    a.retry = Some(policy(1, Backoff::Fixed, 10, 10, "exit:3"));
    a.wait_ms = Some(10_000);
    a.ack_on_result = true;
    e.handle_command(T0, RequestId(1), Command::AddJob(Box::new(a)));
    let run = runs(&drain(&mut e, &mut disk)).pop().unwrap();
    e.handle_exec_done(T0 + 5, run.job, run.attempt, failed(3));
    let fx = drain(&mut e, &mut disk);
    let Reply::Job(s) = reply(&fx, 1) else {
        panic!("{fx:?}")
    };
    assert_eq!(s.state, JobState::Dead);
    assert_eq!(
        e.dead_letters(),
        1,
        "an ack on result does not drop a dead letter"
    );
}

#[test]
fn exponential_backoff_doubles_with_jitter_in_its_upper_half() {
    let mut e = engine();
    let mut disk = BTreeMap::new();
    e.handle_module_added(module(), 1);
    let (id, run) = add_wasm(
        &mut e,
        &mut disk,
        policy(6, Backoff::Exp, 100, 1000, "exit:3"),
    );
    let mut now = T0 + 1;
    let mut attempt = run.attempt;
    let mut seen = vec![];
    for k in 1..=5u64 {
        e.handle_exec_done(now, id, attempt, failed(3));
        drain(&mut e, &mut disk);
        let at = e.poll_timeout().unwrap();
        let wait = at - now;
        let d = (100u64 << (k - 1)).min(1000);
        assert!(
            (d / 2..=d).contains(&wait),
            "attempt {k}: waited {wait}, cap {d}"
        );
        seen.push(wait);
        now = at;
        e.handle_timeout(now);
        attempt = runs(&drain(&mut e, &mut disk)).pop().unwrap().attempt;
        now += 1;
    }
    // Jitter: not all exactly the cap.
    assert!(
        seen.iter()
            .zip([100, 200, 400, 800, 1000])
            .any(|(w, d)| *w != d),
        "{seen:?}"
    );
}

#[test]
fn a_failure_the_policy_does_not_retry_is_dead_at_once() {
    let mut e = engine();
    let mut disk = BTreeMap::new();
    e.handle_module_added(module(), 1);
    let (id, run) = add_wasm(
        &mut e,
        &mut disk,
        policy(5, Backoff::Fixed, 10, 10, "exit:3"),
    );
    e.handle_exec_done(T0 + 1, id, run.attempt, trapped());
    drain(&mut e, &mut disk);
    let job = e.job(&id).unwrap();
    assert_eq!(job.state, JobState::Dead);
    assert_eq!(
        job.retry().unwrap().last_error,
        "attempt 1: trap: unreachable"
    );
    // A job without a policy fails as before: no dead letter.
    let mut a = AddJob::new("q", b"x".to_vec());
    a.module = Some(module());
    e.handle_command(T0 + 2, RequestId(5), Command::AddJob(Box::new(a)));
    let run = runs(&drain(&mut e, &mut disk)).pop().unwrap();
    e.handle_exec_done(T0 + 3, run.job, run.attempt, failed(3));
    drain(&mut e, &mut disk);
    assert_eq!(e.job(&run.job).unwrap().state, JobState::Failed);
    assert_eq!(e.dead_letters(), 1);
}

#[test]
fn a_plain_job_nacked_past_its_limit_is_dead_and_nack_delay_waits_exactly() {
    let mut e = engine();
    let mut disk = BTreeMap::new();
    e.handle_command(
        T0,
        RequestId(1),
        plain(Some(policy(2, Backoff::Fixed, 0, 0, ""))),
    );
    let Reply::JobAdded(id) = reply(&drain(&mut e, &mut disk), 1) else {
        panic!()
    };
    e.handle_command(T0, RequestId(2), get("p"));
    drain(&mut e, &mut disk);
    // NACK with a delay: back in the queue at +500 ms, not before.
    e.handle_command(
        T0 + 1,
        RequestId(3),
        Command::Nack {
            ids: vec![id],
            delay_ms: Some(500),
        },
    );
    assert_eq!(reply(&drain(&mut e, &mut disk), 3), Reply::Count(1));
    assert_eq!(e.job(&id).unwrap().counters.nacks, 1);
    e.handle_command(T0 + 500, RequestId(4), get("p"));
    assert_eq!(reply(&drain(&mut e, &mut disk), 4), Reply::Nil);
    e.handle_timeout(T0 + 501);
    drain(&mut e, &mut disk);
    e.handle_command(T0 + 501, RequestId(5), get("p"));
    assert!(matches!(reply(&drain(&mut e, &mut disk), 5), Reply::Jobs(j) if j.len() == 1));
    // Second delivery was the last: the NACK buries it.
    e.handle_command(
        T0 + 600,
        RequestId(6),
        Command::Nack {
            ids: vec![id],
            delay_ms: None,
        },
    );
    assert_eq!(reply(&drain(&mut e, &mut disk), 6), Reply::Count(1));
    let job = e.job(&id).unwrap();
    assert_eq!(job.state, JobState::Dead);
    assert_eq!(job.retry().unwrap().last_error, "attempt 2: nacked");
    assert_eq!(e.queues.len_of("p"), 0);
    // And a plain job without a policy NACKed without DELAY: at once.
    e.handle_command(T0 + 700, RequestId(7), plain(None));
    let Reply::JobAdded(id2) = reply(&drain(&mut e, &mut disk), 7) else {
        panic!()
    };
    e.handle_command(T0 + 700, RequestId(8), get("p"));
    drain(&mut e, &mut disk);
    e.handle_command(
        T0 + 701,
        RequestId(9),
        Command::Nack {
            ids: vec![id2],
            delay_ms: None,
        },
    );
    drain(&mut e, &mut disk);
    assert_eq!(e.job(&id2).unwrap().state, JobState::Queued);
}

#[test]
fn a_plain_job_not_acked_within_retry_on_its_last_delivery_is_dead() {
    let mut e = engine();
    let mut disk = BTreeMap::new();
    e.handle_command(
        T0,
        RequestId(1),
        plain(Some(policy(1, Backoff::Fixed, 0, 0, ""))),
    );
    let Reply::JobAdded(id) = reply(&drain(&mut e, &mut disk), 1) else {
        panic!()
    };
    e.handle_command(T0, RequestId(2), get("p"));
    drain(&mut e, &mut disk);
    e.handle_timeout(T0 + 10_000);
    drain(&mut e, &mut disk);
    let job = e.job(&id).unwrap();
    assert_eq!(job.state, JobState::Dead);
    assert_eq!(
        job.retry().unwrap().last_error,
        "attempt 1: not acknowledged within RETRY"
    );
}

#[test]
fn dlq_requeue_gives_fresh_attempts_and_purge_forgets() {
    let mut e = engine();
    let mut disk = BTreeMap::new();
    e.handle_module_added(module(), 1);
    let mut ids = vec![];
    for i in 0..3 {
        let (id, run) = add_wasm(
            &mut e,
            &mut disk,
            policy(1, Backoff::Fixed, 10, 10, "exit:3"),
        );
        e.handle_exec_done(T0 + 1 + i, id, run.attempt, failed(3));
        drain(&mut e, &mut disk);
        ids.push(id);
    }
    assert_eq!(e.dead_letters(), 3);
    assert_eq!(
        e.module(&module()).unwrap().jobs,
        0,
        "dead letters hold no module"
    );
    e.handle_command(
        T0 + 10,
        RequestId(2),
        dlq("q", DlqOp::Requeue { ids: vec![ids[0]] }),
    );
    let fx = drain(&mut e, &mut disk);
    assert_eq!(reply(&fx, 2), Reply::Count(1));
    let r = runs(&fx);
    assert_eq!(r.len(), 1, "queued and run again");
    let job = e.job(&ids[0]).unwrap();
    assert_eq!(
        job.retry().unwrap().attempts,
        1,
        "a fresh count, this run included"
    );
    assert_eq!(job.state, JobState::Active);
    e.handle_command(T0 + 11, RequestId(3), dlq("other", DlqOp::Purge));
    assert_eq!(reply(&drain(&mut e, &mut disk), 3), Reply::Count(0));
    e.handle_command(T0 + 11, RequestId(4), dlq("q", DlqOp::Purge));
    assert_eq!(reply(&drain(&mut e, &mut disk), 4), Reply::Count(2));
    assert!(e.job(&ids[1]).is_none() && e.job(&ids[2]).is_none());
    assert_eq!(e.dead_letters(), 0);
    assert!(!disk.contains_key(&ids[1]), "purged from the store too");
}

/// A restart in the middle of a backoff: the job comes back waiting, runs
/// at its time, and its last attempt still ends in the dead-letter queue;
/// the dead letter survives a second restart.
#[test]
fn a_restart_keeps_the_backoff_the_attempts_and_the_dead_letter() {
    let mut e = engine();
    let mut disk = BTreeMap::new();
    e.handle_module_added(module(), 1);
    let (id, run) = add_wasm(
        &mut e,
        &mut disk,
        policy(2, Backoff::Fixed, 5_000, 5_000, "exit:3"),
    );
    e.handle_exec_done(T0 + 10, id, run.attempt, failed(3));
    drain(&mut e, &mut disk);
    let restart = |disk: &BTreeMap<JobId, Vec<u8>>, now: UnixMs| {
        let mut e = engine();
        e.handle_module_added(module(), 1);
        let jobs: Vec<Job> = disk
            .iter()
            .map(|(id, v)| crate::store::record::decode(&crate::store::record::key(id), v).unwrap())
            .collect();
        e.restore(now, jobs);
        e
    };
    let mut e = restart(&disk, T0 + 1_000);
    let fx = drain(&mut e, &mut disk);
    assert!(runs(&fx).is_empty(), "still in its backoff");
    let job = e.job(&id).unwrap();
    assert_eq!(job.retry().unwrap().attempts, 1);
    assert_eq!(e.poll_timeout(), Some(T0 + 10 + 5_000));
    e.handle_timeout(T0 + 5_010);
    let r = runs(&drain(&mut e, &mut disk))
        .pop()
        .expect("runs at its time");
    e.handle_exec_done(T0 + 5_020, id, r.attempt, failed(3));
    drain(&mut e, &mut disk);
    assert_eq!(e.job(&id).unwrap().state, JobState::Dead);
    let mut e = restart(&disk, T0 + 100_000);
    drain(&mut e, &mut disk);
    assert_eq!(e.dead_letters(), 1);
    assert_eq!(e.job(&id).unwrap().state, JobState::Dead);
}

/// A run lost with the node (a stop while it ran) counts: on its last
/// attempt, or under a policy without `node-loss`, it is a dead letter
/// after the restart; otherwise it runs again.
#[test]
fn a_run_lost_in_a_stop_counts_as_an_attempt() {
    for (on, max, dead) in [
        ("node-loss", 2, false),
        ("node-loss", 1, true),
        ("exit:3", 5, true),
    ] {
        let mut e = engine();
        let mut disk = BTreeMap::new();
        e.handle_module_added(module(), 1);
        let (id, _run) = add_wasm(&mut e, &mut disk, policy(max, Backoff::Fixed, 10, 10, on));
        let mut e2 = engine();
        e2.handle_module_added(module(), 1);
        let jobs: Vec<Job> = disk
            .iter()
            .map(|(id, v)| crate::store::record::decode(&crate::store::record::key(id), v).unwrap())
            .collect();
        e2.restore(T0 + 100, jobs);
        let fx = drain(&mut e2, &mut disk);
        let job = e2.job(&id).unwrap();
        if dead {
            assert_eq!(job.state, JobState::Dead, "{on} max {max}");
            assert!(runs(&fx).is_empty());
            assert_eq!(
                job.retry().unwrap().last_error,
                "attempt 1: the node stopped during the run"
            );
        } else {
            assert_eq!(runs(&fx).len(), 1, "{on} max {max}: runs again");
        }
    }
}

#[test]
fn a_queue_default_applies_to_jobs_added_without_a_policy() {
    let mut e = engine();
    let mut disk = BTreeMap::new();
    let p = policy(4, Backoff::Exp, 100, 1000, "exit:75");
    e.handle_command(
        T0,
        RequestId(1),
        Command::QRetry {
            queue: "p".into(),
            set: Some(Some(p.clone())),
        },
    );
    let fx = drain(&mut e, &mut disk);
    assert!(matches!(reply(&fx, 1), Reply::Words(w) if w[1] == "4"));
    assert!(
        fx.iter()
            .any(|f| matches!(f, Effect::SaveRetryDefaults(all) if all.len() == 1))
    );
    e.handle_command(T0, RequestId(2), plain(None));
    let Reply::JobAdded(id) = reply(&drain(&mut e, &mut disk), 2) else {
        panic!()
    };
    assert_eq!(e.job(&id).unwrap().retry().unwrap().policy, p);
    // A bad policy is refused with the reason.
    let mut bad = p.clone();
    bad.max_attempts = 0;
    e.handle_command(T0, RequestId(3), plain(Some(bad)));
    assert!(
        matches!(reply(&drain(&mut e, &mut disk), 3), Reply::Error(err) if err.message.contains("MAXATTEMPTS"))
    );
}
