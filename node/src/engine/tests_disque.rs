//! Disque's queue semantics on the engine, with a virtual clock: GETJOB
//! (blocking, order, counts), ACK/NACK/ENQUEUE/DEQUEUE/WORKING, RETRY,
//! DELAY, TTL, MAXLEN, PAUSE, FINISH and the scans.

use super::*;
use crate::api::{GetJob, JScan, JobEntry, QScan};
use crate::queue::Pause;

const T0: UnixMs = 1_700_000_000_000;

fn engine() -> Engine {
    Engine::new(EngineConfig {
        node_id: "n1".into(),
        ..EngineConfig::default()
    })
}

fn drain(e: &mut Engine) -> Vec<Effect> {
    std::iter::from_fn(|| e.poll_effect()).collect()
}

/// Runs one command and returns its one reply.
fn call(e: &mut Engine, now: UnixMs, cmd: Command) -> Reply {
    e.handle_command(now, RequestId(u64::MAX), cmd);
    let mut replies: Vec<Reply> = drain(e)
        .into_iter()
        .filter_map(|f| match f {
            Effect::Reply { to, reply } if to == RequestId(u64::MAX) => Some(reply),
            _ => None,
        })
        .collect();
    assert_eq!(replies.len(), 1, "{replies:?}");
    replies.remove(0)
}

fn add(e: &mut Engine, now: UnixMs, q: &str, body: &str, f: impl FnOnce(&mut AddJob)) -> JobId {
    let mut a = AddJob::new(q, body.as_bytes().to_vec());
    f(&mut a);
    match call(e, now, Command::AddJob(Box::new(a))) {
        Reply::JobAdded(id) => id,
        other => panic!("{other:?}"),
    }
}

fn getjob(queues: &[&str]) -> GetJob {
    GetJob {
        queues: queues.iter().map(|s| s.to_string()).collect(),
        nohang: true,
        timeout_ms: 0,
        count: 1,
        withcounters: false,
    }
}

fn get(e: &mut Engine, now: UnixMs, g: GetJob) -> Vec<JobEntry> {
    match call(e, now, Command::GetJob(Box::new(g))) {
        Reply::Jobs(j) => j,
        Reply::Nil => vec![],
        other => panic!("{other:?}"),
    }
}

fn err_code(r: &Reply) -> Option<ErrorCode> {
    match r {
        Reply::Error(e) => Some(e.code),
        _ => None,
    }
}

#[test]
fn getjob_takes_in_order_and_queues_left_to_right() {
    let mut e = engine();
    let a1 = add(&mut e, T0, "a", "a1", |_| {});
    let a2 = add(&mut e, T0, "a", "a2", |_| {});
    let b1 = add(&mut e, T0, "b", "b1", |_| {});
    let mut g = getjob(&["b", "a"]);
    g.count = 10;
    let got: Vec<JobId> = get(&mut e, T0, g).iter().map(|j| j.id).collect();
    assert_eq!(got, vec![b1, a1, a2]);
    assert_eq!(e.job(&a1).unwrap().state, JobState::Active);
    assert!(
        get(&mut e, T0, getjob(&["a", "b"])).is_empty(),
        "NOHANG gives nil"
    );
}

#[test]
fn blocked_clients_are_served_first_come_first_served_by_the_add() {
    let mut e = engine();
    let mut g = getjob(&["q"]);
    g.nohang = false;
    for r in 1..=3 {
        e.handle_command(T0, RequestId(r), Command::GetJob(Box::new(g.clone())));
    }
    assert!(drain(&mut e).is_empty(), "all three block");
    assert_eq!(e.blocked_clients(), 3);
    let j1 = add(&mut e, T0 + 1, "q", "one", |_| {});
    let j2 = add(&mut e, T0 + 2, "q", "two", |_| {});
    // The add's own reply was taken by `call`; the wakes came with it.
    assert_eq!(e.blocked_clients(), 1);
    assert_eq!(e.job(&j1).unwrap().counters.attempts, 1);
    assert_eq!(e.job(&j2).unwrap().counters.attempts, 1);
    // Served in order: request 1 got j1, request 2 got j2 (checked by
    // re-running with effects visible).
    let mut e = engine();
    for r in 1..=2 {
        e.handle_command(T0, RequestId(r), Command::GetJob(Box::new(g.clone())));
    }
    e.handle_command(
        T0,
        RequestId(10),
        Command::AddJob(Box::new(AddJob::new("q", b"x".to_vec()))),
    );
    e.handle_command(
        T0,
        RequestId(11),
        Command::AddJob(Box::new(AddJob::new("q", b"y".to_vec()))),
    );
    let served: Vec<(u64, Vec<u8>)> = drain(&mut e)
        .into_iter()
        .filter_map(|f| match f {
            Effect::Reply {
                to,
                reply: Reply::Jobs(j),
            } => Some((to.0, j[0].body.to_vec())),
            _ => None,
        })
        .collect();
    assert_eq!(served, vec![(1, b"x".to_vec()), (2, b"y".to_vec())]);
}

#[test]
fn blocked_getjob_times_out_with_nil_at_its_deadline() {
    let mut e = engine();
    let mut g = getjob(&["q", "r"]);
    g.nohang = false;
    g.timeout_ms = 50;
    e.handle_command(T0, RequestId(1), Command::GetJob(Box::new(g)));
    assert!(drain(&mut e).is_empty());
    assert_eq!(e.poll_timeout(), Some(T0 + 50));
    e.handle_timeout(T0 + 49);
    assert!(drain(&mut e).is_empty());
    e.handle_timeout(T0 + 50);
    assert!(matches!(
        &drain(&mut e)[..],
        [Effect::Reply {
            reply: Reply::Nil,
            ..
        }]
    ));
    assert_eq!(e.blocked_clients(), 0);
    // A later job is not handed to the gone client.
    add(&mut e, T0 + 60, "q", "x", |_| {});
    assert_eq!(e.queues.len_of("q"), 1);
}

#[test]
fn cancelled_blocked_client_gets_nothing() {
    let mut e = engine();
    let mut g = getjob(&["q"]);
    g.nohang = false;
    e.handle_command(T0, RequestId(1), Command::GetJob(Box::new(g)));
    e.handle_cancel(RequestId(1));
    add(&mut e, T0, "q", "x", |_| {});
    assert_eq!(e.queues.len_of("q"), 1);
}

#[test]
fn retry_requeues_and_counts_additional_deliveries() {
    let mut e = engine();
    let id = add(&mut e, T0, "q", "x", |a| a.retry_secs = Some(2));
    assert_eq!(get(&mut e, T0, getjob(&["q"]))[0].id, id);
    assert_eq!(e.queues.len_of("q"), 0);
    e.handle_timeout(T0 + 1_999);
    assert_eq!(e.queues.len_of("q"), 0);
    e.handle_timeout(T0 + 2_000);
    assert_eq!(e.queues.len_of("q"), 1);
    let mut g = getjob(&["q"]);
    g.withcounters = true;
    let got = get(&mut e, T0 + 2_001, g);
    assert_eq!(got[0].counters, Some((0, 1)));
    // ACK ends it: no more re-queues.
    assert_eq!(
        call(
            &mut e,
            T0 + 2_002,
            Command::Ack {
                ids: vec![id],
                fast: false
            }
        ),
        Reply::Count(1)
    );
    e.handle_timeout(T0 + 10_000);
    assert_eq!(e.queues.len_of("q"), 0);
    assert!(e.job(&id).is_none());
}

#[test]
fn retry_zero_is_at_most_once() {
    let mut e = engine();
    let id = add(&mut e, T0, "q", "x", |a| a.retry_secs = Some(0));
    assert!(id.at_most_once());
    assert_eq!(get(&mut e, T0, getjob(&["q"])).len(), 1);
    e.handle_timeout(T0 + 3_600_000);
    assert_eq!(e.queues.len_of("q"), 0);
    assert_eq!(
        call(
            &mut e,
            T0,
            Command::Nack {
                ids: vec![id],
                delay_ms: None,
            }
        ),
        Reply::Count(0)
    );
    assert_eq!(
        call(&mut e, T0, Command::Enqueue { ids: vec![id] }),
        Reply::Count(0)
    );
    assert_eq!(
        e.job(&id).unwrap().state,
        JobState::Active,
        "kept until acked"
    );
}

#[test]
fn default_retry_is_a_tenth_of_the_ttl() {
    let mut e = engine();
    let id = add(&mut e, T0, "q", "x", |a| a.ttl_secs = Some(30));
    assert_eq!(e.job(&id).unwrap().retry_ms, 3_000);
    let id = add(&mut e, T0, "q", "x", |a| a.ttl_secs = Some(5));
    assert_eq!(e.job(&id).unwrap().retry_ms, 1_000);
    let id = add(&mut e, T0, "q", "x", |_| {});
    assert_eq!(e.job(&id).unwrap().retry_ms, 300_000);
}

#[test]
fn nack_requeues_at_once_and_counts_nacks() {
    let mut e = engine();
    let id = add(&mut e, T0, "q", "x", |_| {});
    get(&mut e, T0, getjob(&["q"]));
    assert_eq!(
        call(
            &mut e,
            T0,
            Command::Nack {
                ids: vec![id],
                delay_ms: None,
            }
        ),
        Reply::Count(1)
    );
    assert_eq!(
        call(
            &mut e,
            T0,
            Command::Nack {
                ids: vec![id],
                delay_ms: None,
            }
        ),
        Reply::Count(0),
        "already queued"
    );
    let mut g = getjob(&["q"]);
    g.withcounters = true;
    assert_eq!(get(&mut e, T0, g)[0].counters, Some((1, 0)));
    assert!(e.job(&id).unwrap().requeue_at().is_some());
}

#[test]
fn working_postpones_and_refuses_after_half_the_ttl() {
    let mut e = engine();
    let id = add(&mut e, T0, "q", "x", |a| {
        a.retry_secs = Some(10);
        a.ttl_secs = Some(100);
    });
    get(&mut e, T0, getjob(&["q"]));
    assert_eq!(
        call(&mut e, T0 + 9_000, Command::Working { id }),
        Reply::Count(10)
    );
    e.handle_timeout(T0 + 10_000);
    assert_eq!(e.queues.len_of("q"), 0, "postponed");
    e.handle_timeout(T0 + 19_000);
    assert_eq!(e.queues.len_of("q"), 1);
    let r = call(&mut e, T0 + 50_001, Command::Working { id });
    assert_eq!(err_code(&r), Some(ErrorCode::TooLate));
    let unknown = JobId::compose(T0, 1, 1, false, 60, 1);
    assert_eq!(
        err_code(&call(&mut e, T0, Command::Working { id: unknown })),
        Some(ErrorCode::NoJob)
    );
}

#[test]
fn delay_then_ttl() {
    let mut e = engine();
    let id = add(&mut e, T0, "q", "x", |a| {
        a.delay_secs = Some(1);
        a.ttl_secs = Some(3);
    });
    assert_eq!(e.queues.len_of("q"), 0);
    assert_eq!(e.job(&id).unwrap().state, JobState::Active);
    assert_eq!(
        e.job(&id).unwrap().status(T0, "n1").delay_within,
        Some(1_000)
    );
    e.handle_timeout(T0 + 1_000);
    assert_eq!(e.queues.len_of("q"), 1);
    e.handle_timeout(T0 + 3_000 + super::timer::EXPIRY_SLOT_MS);
    assert!(e.job(&id).is_none(), "expired");
    assert_eq!(e.queues.len_of("q"), 0);
    let r = call(
        &mut e,
        T0,
        Command::AddJob(Box::new({
            let mut a = AddJob::new("q", b"x".to_vec());
            a.delay_secs = Some(10);
            a.ttl_secs = Some(10);
            a
        })),
    );
    assert_eq!(err_code(&r), Some(ErrorCode::Err));
}

#[test]
fn delayed_job_wakes_a_blocked_client() {
    let mut e = engine();
    add(&mut e, T0, "q", "x", |a| a.delay_secs = Some(2));
    let mut g = getjob(&["q"]);
    g.nohang = false;
    e.handle_command(T0, RequestId(1), Command::GetJob(Box::new(g)));
    assert!(drain(&mut e).is_empty());
    e.handle_timeout(T0 + 2_000);
    assert!(matches!(
        &drain(&mut e)[..],
        [Effect::Reply {
            to: RequestId(1),
            reply: Reply::Jobs(_)
        }]
    ));
}

#[test]
fn maxlen_and_replicate_and_paused_are_refused() {
    let mut e = engine();
    add(&mut e, T0, "q", "1", |_| {});
    let mut a = AddJob::new("q", b"2".to_vec());
    a.maxlen = Some(1);
    assert_eq!(
        err_code(&call(&mut e, T0, Command::AddJob(Box::new(a)))),
        Some(ErrorCode::MaxLen)
    );
    let mut a = AddJob::new("q", b"2".to_vec());
    a.replicate = Some(2);
    assert_eq!(
        err_code(&call(&mut e, T0, Command::AddJob(Box::new(a)))),
        Some(ErrorCode::NoRepl)
    );
    let set = Some(Pause {
        input: true,
        output: false,
    });
    assert_eq!(
        call(
            &mut e,
            T0,
            Command::Pause {
                queue: "q".into(),
                set,
                bcast: false,
            }
        ),
        Reply::Paused("in")
    );
    let a = AddJob::new("q", b"3".to_vec());
    assert_eq!(
        err_code(&call(&mut e, T0, Command::AddJob(Box::new(a)))),
        Some(ErrorCode::Paused)
    );
    assert_eq!(
        call(
            &mut e,
            T0,
            Command::Pause {
                queue: "q".into(),
                set: None,
                bcast: false,
            }
        ),
        Reply::Paused("in")
    );
    assert_eq!(
        call(
            &mut e,
            T0,
            Command::Pause {
                queue: "x".into(),
                set: None,
                bcast: false,
            }
        ),
        Reply::Paused("none")
    );
}

#[test]
fn pause_out_holds_getjob_until_cleared() {
    let mut e = engine();
    let set = Some(Pause {
        input: false,
        output: true,
    });
    call(
        &mut e,
        T0,
        Command::Pause {
            queue: "q".into(),
            set,
            bcast: false,
        },
    );
    add(&mut e, T0, "q", "x", |_| {});
    assert!(get(&mut e, T0, getjob(&["q"])).is_empty());
    let mut g = getjob(&["q"]);
    g.nohang = false;
    e.handle_command(T0, RequestId(1), Command::GetJob(Box::new(g)));
    assert!(drain(&mut e).is_empty());
    e.handle_command(
        T0,
        RequestId(2),
        Command::Pause {
            queue: "q".into(),
            set: Some(Pause::default()),
            bcast: false,
        },
    );
    let fx = drain(&mut e);
    assert!(
        fx.iter().any(|f| matches!(
            f,
            Effect::Reply {
                to: RequestId(1),
                reply: Reply::Jobs(_)
            }
        )),
        "{fx:?}"
    );
    assert!(fx.iter().any(|f| matches!(
        f,
        Effect::Reply {
            to: RequestId(2),
            reply: Reply::Paused("none")
        }
    )));
}

#[test]
fn enqueue_dequeue_and_qlen() {
    let mut e = engine();
    let id = add(&mut e, T0, "q", "x", |_| {});
    assert_eq!(
        call(&mut e, T0, Command::QLen { queue: "q".into() }),
        Reply::Count(1)
    );
    assert_eq!(
        call(&mut e, T0, Command::Dequeue { ids: vec![id] }),
        Reply::Count(1)
    );
    assert_eq!(
        call(&mut e, T0, Command::Dequeue { ids: vec![id] }),
        Reply::Count(0)
    );
    assert_eq!(
        call(&mut e, T0, Command::QLen { queue: "q".into() }),
        Reply::Count(0)
    );
    assert_eq!(
        call(&mut e, T0, Command::Enqueue { ids: vec![id] }),
        Reply::Count(1)
    );
    assert_eq!(
        call(&mut e, T0, Command::QLen { queue: "q".into() }),
        Reply::Count(1)
    );
    assert_eq!(
        e.job(&id).unwrap().counters.additional_deliveries,
        0,
        "never delivered"
    );
}

#[test]
fn finish_stores_the_result_and_wakes_waiters() {
    let mut e = engine();
    let id = add(&mut e, T0, "q", "x", |a| a.retry_secs = Some(1));
    get(&mut e, T0, getjob(&["q"]));
    e.handle_command(
        T0,
        RequestId(7),
        Command::Wait {
            id,
            timeout_ms: 10_000,
        },
    );
    assert!(drain(&mut e).is_empty());
    e.handle_command(
        T0 + 5,
        RequestId(8),
        Command::Finish {
            id,
            output: Bytes::from_static(b"out"),
            exit_code: 0,
        },
    );
    let fx = drain(&mut e);
    assert!(fx.iter().any(|f| matches!(f, Effect::Reply { to: RequestId(7), reply: Reply::Job(s) } if s.result.as_ref().unwrap().output == b"out")));
    assert!(fx.iter().any(|f| matches!(
        f,
        Effect::Reply {
            to: RequestId(8),
            reply: Reply::Ok
        }
    )));
    assert_eq!(e.job(&id).unwrap().state, JobState::Done);
    e.handle_timeout(T0 + 5_000);
    assert_eq!(
        e.queues.len_of("q"),
        0,
        "a finished job is not delivered again"
    );
    match call(&mut e, T0 + 6, Command::Wait { id, timeout_ms: 0 }) {
        Reply::Job(s) => assert_eq!(s.result.unwrap().output, b"out"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn qpeek_qstat_and_scans() {
    let mut e = engine();
    let ids: Vec<JobId> = (0..5)
        .map(|i| add(&mut e, T0 + i, "q", &i.to_string(), |_| {}))
        .collect();
    add(&mut e, T0, "other", "o", |_| {});
    match call(
        &mut e,
        T0,
        Command::QPeek {
            queue: "q".into(),
            count: 2,
        },
    ) {
        Reply::Jobs(j) => assert_eq!(j.iter().map(|j| j.id).collect::<Vec<_>>(), ids[..2]),
        other => panic!("{other:?}"),
    }
    match call(
        &mut e,
        T0,
        Command::QPeek {
            queue: "q".into(),
            count: -2,
        },
    ) {
        Reply::Jobs(j) => assert_eq!(
            j.iter().map(|j| j.id).collect::<Vec<_>>(),
            vec![ids[4], ids[3]]
        ),
        other => panic!("{other:?}"),
    }
    get(&mut e, T0 + 2_000, getjob(&["q"]));
    match call(&mut e, T0 + 3_000, Command::QStat { queue: "q".into() }) {
        Reply::QStat(s) => {
            assert_eq!(
                (s.len, s.jobs_in, s.jobs_out, s.age_secs, s.idle_secs),
                (4, 5, 1, 3, 1)
            );
            assert_eq!(s.pause, "none");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        call(
            &mut e,
            T0,
            Command::QStat {
                queue: "nope".into()
            }
        ),
        Reply::Nil
    );

    // JSCAN in pages of 2 sees all 6 jobs once.
    let mut seen = Vec::new();
    let mut cursor = 0;
    for _ in 0..10 {
        let r = call(
            &mut e,
            T0,
            Command::JScan(Box::new(JScan {
                cursor,
                count: 2,
                ..JScan::default()
            })),
        );
        let Reply::JobScan { cursor: next, jobs } = r else {
            panic!()
        };
        seen.extend(jobs);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(seen.len(), 6);
    let r = call(
        &mut e,
        T0,
        Command::JScan(Box::new(JScan {
            busyloop: true,
            queue: Some("q".into()),
            states: vec![JobState::Active],
            ..JScan::default()
        })),
    );
    assert!(
        matches!(r, Reply::JobScan { cursor: 0, ref jobs } if jobs.len() == 1),
        "{r:?}"
    );

    let mut names = Vec::new();
    let mut cursor = 0;
    for _ in 0..10 {
        let r = call(
            &mut e,
            T0,
            Command::QScan(QScan {
                cursor,
                count: 1,
                ..QScan::default()
            }),
        );
        let Reply::QueueScan {
            cursor: next,
            queues,
        } = r
        else {
            panic!()
        };
        names.extend(queues);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    names.sort();
    assert_eq!(names, vec!["other".to_string(), "q".to_string()]);
    let r = call(
        &mut e,
        T0,
        Command::QScan(QScan {
            minlen: Some(2),
            busyloop: true,
            ..QScan::default()
        }),
    );
    assert_eq!(
        r,
        Reply::QueueScan {
            cursor: 0,
            queues: vec!["q".into()]
        }
    );
}

#[test]
fn flushall_forgets_everything() {
    let mut e = engine();
    add(&mut e, T0, "q", "x", |_| {});
    let mut g = getjob(&["z"]);
    g.nohang = false;
    e.handle_command(T0, RequestId(1), Command::GetJob(Box::new(g)));
    e.handle_command(T0, RequestId(2), Command::FlushAll);
    let fx = drain(&mut e);
    assert!(fx.iter().any(|f| matches!(
        f,
        Effect::Reply {
            to: RequestId(1),
            reply: Reply::Nil
        }
    )));
    assert_eq!(e.stats().jobs, 0);
    assert_eq!(e.stats().queues, 0);
    assert_eq!(e.poll_timeout(), None);
}

/// Every job-addressed command, on a job added with `asynckey k1`: sent
/// without the key or with another one, the reply is exactly the reply for
/// a job the node does not hold (same id, an engine that never saw it) and
/// the job is untouched; sent with the key, it reaches the job.
#[test]
fn asynckey_locks_every_job_command() {
    fn keyed(deliver: bool) -> (Engine, JobId) {
        let mut e = engine();
        let id = add(&mut e, T0, "q", "x", |a| a.asynckey = Some("k1".into()));
        if deliver {
            assert_eq!(get(&mut e, T0, getjob(&["q"])).len(), 1);
        }
        (e, id)
    }
    fn with(key: Option<&str>, cmd: Command) -> Command {
        match key {
            Some(k) => Command::WithKey {
                key: k.into(),
                cmd: Box::new(cmd),
            },
            None => cmd,
        }
    }
    type Make = fn(JobId) -> Command;
    // (name, whether the job is delivered first, the command)
    let table: &[(&str, bool, Make)] = &[
        ("show", false, |id| Command::Show { id }),
        ("wait", false, |id| Command::Wait { id, timeout_ms: 0 }),
        ("working", true, |id| Command::Working { id }),
        ("ackjob", false, |id| Command::Ack {
            ids: vec![id],
            fast: false,
        }),
        ("fastack", false, |id| Command::Ack {
            ids: vec![id],
            fast: true,
        }),
        ("deljob", false, |id| Command::DelJob { ids: vec![id] }),
        ("nack", true, |id| Command::Nack {
            ids: vec![id],
            delay_ms: None,
        }),
        ("enqueue", true, |id| Command::Enqueue { ids: vec![id] }),
        ("dequeue", false, |id| Command::Dequeue { ids: vec![id] }),
    ];
    for (name, deliver, make) in table {
        let state = if *deliver {
            JobState::Active
        } else {
            JobState::Queued
        };
        for wrong in [None, Some("nope"), Some("k1\0"), Some("")] {
            let (mut e, id) = keyed(*deliver);
            let want = call(&mut engine(), T0, with(wrong, make(id)));
            let got = call(&mut e, T0, with(wrong, make(id)));
            assert_eq!(got, want, "{name} with {wrong:?}: as a missing job");
            assert_eq!(e.job(&id).map(|j| j.state), Some(state), "{name} {wrong:?}");
        }
        let (mut e, id) = keyed(*deliver);
        let got = call(&mut e, T0, with(Some("k1"), make(id)));
        let missing = call(&mut engine(), T0, make(id));
        assert_ne!(got, missing, "{name} with the key reaches the job");
    }
    // JSCAN lists the keyed job only with its key.
    let (mut e, _) = keyed(false);
    let scan = |key: Option<&str>| with(key, Command::JScan(Box::default()));
    let listed = |r: Reply| match r {
        Reply::JobScan { jobs, .. } => jobs.len(),
        other => panic!("{other:?}"),
    };
    assert_eq!(listed(call(&mut e, T0, scan(None))), 0);
    assert_eq!(listed(call(&mut e, T0, scan(Some("nope")))), 0);
    assert_eq!(listed(call(&mut e, T0, scan(Some("k1")))), 1);
}

/// Client values at the ends of their types: every one that meets the
/// clock is refused with a clear error when out of range, and the largest
/// in-range ones give a job whose times did not wrap (Disque's own checks
/// added `now + value` unchecked).
#[test]
fn extreme_client_values_are_refused_or_kept_without_wrapping() {
    use crate::api::bounds::{MAX_JOB_SECS, MAX_TIMEOUT_MS};
    let mut e = engine();
    let refused = |e: &mut Engine, f: &dyn Fn(&mut AddJob)| {
        let mut a = AddJob::new("q", b"x".to_vec());
        f(&mut a);
        let r = call(e, T0, Command::AddJob(Box::new(a)));
        match r {
            Reply::Error(w) => w.message,
            other => panic!("accepted: {other:?}"),
        }
    };
    for big in [u64::MAX, i64::MAX as u64, MAX_JOB_SECS + 1] {
        assert!(refused(&mut e, &|a| a.ttl_secs = Some(big)).contains("TTL"));
        assert!(refused(&mut e, &|a| a.retry_secs = Some(big)).contains("RETRY"));
        assert!(refused(&mut e, &|a| a.delay_secs = Some(big)).contains("DELAY"));
    }
    for big in [u64::MAX, i64::MAX as u64, MAX_TIMEOUT_MS + 1] {
        assert!(refused(&mut e, &|a| a.timeout_ms = big).contains("timeout"));
        assert!(refused(&mut e, &|a| a.wait_ms = Some(big)).contains("wait"));
        let id = add(&mut e, T0, "w", "x", |_| {});
        let r = call(
            &mut e,
            T0,
            Command::Wait {
                id,
                timeout_ms: big,
            },
        );
        assert_eq!(err_code(&r), Some(ErrorCode::Err), "{r:?}");
    }
    assert!(refused(&mut e, &|a| a.ttl_secs = Some(0)).contains("TTL"));
    assert!(refused(&mut e, &|a| a.priority = u8::MAX).contains("priority"));
    for (f, what) in [
        (
            &(|a: &mut AddJob| a.limits.fuel = Some(u64::MAX)) as &dyn Fn(&mut AddJob),
            "fuel",
        ),
        (
            &|a: &mut AddJob| a.limits.memory_bytes = Some(u64::MAX),
            "memory",
        ),
        (
            &|a: &mut AddJob| a.limits.deadline_ms = Some(u64::MAX),
            "deadline",
        ),
        (&|a: &mut AddJob| a.limits.fuel = Some(0), "fuel"),
    ] {
        let mut a = AddJob::new("q", b"x".to_vec());
        a.module = Some(ModuleHash([7; 32]));
        f(&mut a);
        match call(&mut e, T0, Command::AddJob(Box::new(a))) {
            Reply::Error(w) => assert!(w.message.contains(what), "{w:?}"),
            other => panic!("{what}: {other:?}"),
        }
    }
    // The largest values in range: kept, with times that did not wrap.
    let id = add(&mut e, T0, "q", "x", |a| {
        a.ttl_secs = Some(MAX_JOB_SECS);
        a.retry_secs = Some(MAX_JOB_SECS);
        a.delay_secs = Some(MAX_JOB_SECS - 1);
        a.timeout_ms = MAX_TIMEOUT_MS;
        a.maxlen = Some(u64::MAX);
    });
    let job = e.job(&id).expect("kept");
    assert_eq!(job.expires_at, T0 + MAX_JOB_SECS * 1000);
    assert!(job.expires_at > T0);
    assert_eq!(job.retry_ms, MAX_JOB_SECS * 1000);
    // A far timer fires nothing now, and the engine goes on.
    e.handle_timeout(T0 + 1);
    assert!(e.job(&id).is_some());
    let r = call(
        &mut e,
        T0,
        Command::QPeek {
            queue: "q".into(),
            count: i64::MIN,
        },
    );
    assert!(matches!(r, Reply::Jobs(_)), "{r:?}");
    let r = call(
        &mut e,
        T0,
        Command::GetJob(Box::new(GetJob {
            count: u32::MAX,
            timeout_ms: u64::MAX,
            ..getjob(&["q"])
        })),
    );
    assert!(matches!(r, Reply::Nil | Reply::Jobs(_)), "{r:?}");
}
