//! Journaling and restoring, without a store: the changes an engine emits
//! are applied to a map (what the store would hold), and a second engine
//! restored from that map must hold the same jobs in the same order.

use std::collections::BTreeMap;

use super::*;
use crate::api::GetJob;

const T0: UnixMs = 1_700_000_000_000;

fn engine() -> Engine {
    Engine::new(EngineConfig {
        exec_slots: 1,
        node_id: "n1".into(),
        journal: true,
        ..EngineConfig::default()
    })
}

fn module() -> ModuleHash {
    ModuleHash::of(b"module")
}

/// What the store holds: the last change of each job wins.
#[derive(Default)]
struct Disk(BTreeMap<JobId, Job>);

impl Disk {
    /// Drains the engine's effects, applying changes; returns the others.
    fn drain(&mut self, e: &mut Engine) -> Vec<Effect> {
        let mut rest = vec![];
        let mut seen_other = false;
        while let Some(f) = e.poll_effect() {
            match f {
                Effect::Persist(c) => {
                    assert!(!seen_other, "changes come before what depends on them");
                    match c {
                        Change::Put(job) => {
                            self.0.insert(job.id, *job);
                        }
                        Change::Remove(id) => {
                            self.0.remove(&id);
                        }
                        // No idempotency keys in these tests.
                        Change::PutTomb(_) | Change::RemoveTomb(_) => {}
                    }
                }
                other => {
                    seen_other = true;
                    rest.push(other)
                }
            }
        }
        rest
    }

    fn jobs(&self) -> Vec<Job> {
        self.0.values().cloned().collect()
    }
}

fn add(e: &mut Engine, disk: &mut Disk, req: u64, a: AddJob) -> JobId {
    e.handle_command(T0, RequestId(req), Command::AddJob(Box::new(a)));
    disk.drain(e)
        .into_iter()
        .find_map(|f| match f {
            Effect::Reply {
                reply: Reply::JobAdded(id),
                ..
            } => Some(id),
            _ => None,
        })
        .expect("added")
}

fn plain(queue: &str, body: &str, priority: u8) -> AddJob {
    let mut a = AddJob::new(queue, body.as_bytes().to_vec());
    a.priority = priority;
    a
}

fn getjob(e: &mut Engine, disk: &mut Disk, now: UnixMs, queue: &str, count: u32) -> Vec<JobId> {
    e.handle_command(
        now,
        RequestId(999),
        Command::GetJob(Box::new(GetJob {
            queues: vec![queue.into()],
            nohang: true,
            timeout_ms: 0,
            count,
            withcounters: false,
        })),
    );
    disk.drain(e)
        .into_iter()
        .flat_map(|f| match f {
            Effect::Reply {
                reply: Reply::Jobs(list),
                ..
            } => list.into_iter().map(|j| j.id).collect(),
            _ => vec![],
        })
        .collect()
}

#[test]
fn journal_is_off_unless_asked() {
    let mut e = Engine::new(EngineConfig::default());
    e.handle_command(
        T0,
        RequestId(1),
        Command::AddJob(Box::new(plain("q", "x", 0))),
    );
    let fx: Vec<Effect> = std::iter::from_fn(|| e.poll_effect()).collect();
    assert!(!fx.iter().any(|f| matches!(f, Effect::Persist(_))));
}

#[test]
fn restored_queues_hand_out_the_same_jobs_in_the_same_order() {
    let mut e = engine();
    let mut disk = Disk::default();
    let mut ids = vec![];
    for (i, p) in [0u8, 5, 0, 9, 5].into_iter().enumerate() {
        ids.push(add(
            &mut e,
            &mut disk,
            i as u64 + 1,
            plain("q", &format!("b{i}"), p),
        ));
    }
    assert_eq!(disk.0.len(), 5);
    // The order the original engine would hand out...
    let mut twin = engine();
    let mut twin_disk = Disk::default();
    twin.restore(T0 + 10, disk.jobs());
    twin_disk.drain(&mut twin);
    let expected = getjob(&mut twin, &mut twin_disk, T0 + 10, "q", 10);
    // ...is the order of a node restored from disk.
    let mut r = engine();
    let mut rdisk = Disk::default();
    let rep = r.restore(T0 + 10, disk.jobs());
    assert_eq!(rep.restored, 5);
    assert_eq!(rep.ready, 5);
    rdisk.drain(&mut r);
    let got = getjob(&mut r, &mut rdisk, T0 + 10, "q", 10);
    assert_eq!(got, expected);
    assert_eq!(got[0], ids[3], "priority 9 first");
    assert_eq!(
        &got[1..3],
        &[ids[1], ids[4]],
        "then priority 5, oldest first"
    );
    // Bodies byte for byte.
    for id in &ids {
        assert_eq!(r.job(id).unwrap().body, e.job(id).unwrap().body);
    }
}

#[test]
fn ttl_and_delay_count_in_wall_clock_time_while_down() {
    let mut e = engine();
    let mut disk = Disk::default();
    let mut short = plain("q", "short-ttl", 0);
    short.ttl_secs = Some(10);
    let short = add(&mut e, &mut disk, 1, short);
    let mut delayed = plain("q", "delayed", 0);
    delayed.delay_secs = Some(5);
    let delayed = add(&mut e, &mut disk, 2, delayed);
    let mut later = plain("q", "later", 0);
    later.delay_secs = Some(60);
    let later = add(&mut e, &mut disk, 3, later);

    // Down for 7 s: the delay of 5 s came, the TTL of 10 s did not.
    let mut r = engine();
    let mut rdisk = Disk(disk.0.clone());
    let rep = r.restore(T0 + 7_000, disk.jobs());
    rdisk.drain(&mut r);
    assert_eq!(rep.expired, 0);
    assert_eq!(r.job(&delayed).unwrap().state, JobState::Queued);
    assert_eq!(
        r.job(&later).unwrap().state,
        JobState::Active,
        "still delayed (Disque: active)"
    );
    let next = r.poll_timeout().expect("a timer");
    assert!(
        (T0 + 10_000..T0 + 10_000 + super::timer::EXPIRY_SLOT_MS).contains(&next),
        "next: the short TTL"
    );
    assert_eq!(
        rdisk.0[&delayed].state,
        JobState::Queued,
        "the change is journaled"
    );

    // Down for 11 s: the short TTL passed: gone, and gone from disk.
    let mut r = engine();
    let mut rdisk = Disk(disk.0.clone());
    let rep = r.restore(T0 + 11_000, disk.jobs());
    rdisk.drain(&mut r);
    assert_eq!(rep.expired, 1);
    assert!(r.job(&short).is_none());
    assert!(!rdisk.0.contains_key(&short));
}

#[test]
fn a_delivered_plain_job_keeps_its_requeue_time_and_counters() {
    let mut e = engine();
    let mut disk = Disk::default();
    let mut a = plain("q", "work", 0);
    a.retry_secs = Some(30);
    let id = add(&mut e, &mut disk, 1, a);
    assert_eq!(getjob(&mut e, &mut disk, T0 + 1, "q", 1), vec![id]);
    let stored = &disk.0[&id];
    assert_eq!(stored.state, JobState::Active);
    assert_eq!(stored.counters.attempts, 1);
    assert_eq!(stored.requeue_at(), Some(T0 + 1 + 30_000));

    // Restarted 10 s later: still active, re-queued at the stored time.
    let mut r = engine();
    let mut rdisk = Disk(disk.0.clone());
    let rep = r.restore(T0 + 10_000, disk.jobs());
    rdisk.drain(&mut r);
    assert_eq!(rep.delivered, 1);
    assert_eq!(r.job(&id).unwrap().state, JobState::Active);
    assert!(getjob(&mut r, &mut rdisk, T0 + 10_000, "q", 1).is_empty());
    r.handle_timeout(T0 + 1 + 30_000);
    rdisk.drain(&mut r);
    let job = r.job(&id).unwrap();
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.counters.additional_deliveries, 1);
    assert_eq!(rdisk.0[&id].counters.additional_deliveries, 1);
}

#[test]
fn a_running_wasm_job_is_queued_again_at_once_unless_at_most_once() {
    let mut e = engine();
    e.handle_module_added(module(), 10);
    let mut disk = Disk::default();
    let mut a = AddJob::new("w", b"run me".to_vec());
    a.module = Some(module());
    let again = add(&mut e, &mut disk, 1, a);
    assert_eq!(disk.0[&again].state, JobState::Active, "dequeue journaled");
    assert_eq!(disk.0[&again].counters.attempts, 1);
    let mut a = AddJob::new("w", b"once".to_vec());
    a.module = Some(module());
    a.retry_secs = Some(0);
    let once = add(&mut e, &mut disk, 2, a);
    // Only one executor slot: pretend the second ran too (on disk).
    let mut jobs = disk.jobs();
    for j in &mut jobs {
        if j.id == once {
            j.state = JobState::Active;
            j.counters.attempts = 1;
        }
    }

    let mut r = engine();
    r.handle_module_added(module(), 10);
    let mut rdisk = Disk(jobs.iter().map(|j| (j.id, j.clone())).collect());
    let rep = r.restore(T0 + 100, jobs);
    let fx = rdisk.drain(&mut r);
    assert_eq!(rep.requeued_running, 1);
    assert_eq!(rep.dropped_at_most_once, 1);
    assert!(
        r.job(&once).is_none() && !rdisk.0.contains_key(&once),
        "never run twice"
    );
    let run = fx
        .iter()
        .find_map(|f| match f {
            Effect::Run(r) => Some(r.clone()),
            _ => None,
        })
        .expect("runs again at once");
    assert_eq!(run.job, again);
    assert_eq!(run.attempt, 2, "the lost attempt is counted");
}

#[test]
fn a_run_answered_after_its_end_is_never_written_unless_its_wait_ends_first() {
    let mut e = engine();
    e.handle_module_added(module(), 10);
    let mut disk = Disk::default();
    let run = |body: &str, wait_ms: u64| {
        let mut a = AddJob::new("w", body.as_bytes().to_vec());
        a.module = Some(module());
        a.wait_ms = Some(wait_ms);
        a.ack_on_result = true;
        Command::AddJob(Box::new(a))
    };
    let done = || JobResult {
        exit_code: Some(0),
        error_class: None,
        message: String::new(),
        output: b"1".to_vec(),
        stderr: vec![],
        fuel_used: 1,
        duration_us: 1,
        node: "n1".into(),
    };
    let ran = |fx: &[Effect]| {
        fx.iter()
            .find_map(|f| match f {
                Effect::Run(r) => Some(r.job),
                _ => None,
            })
            .expect("runs")
    };
    // Added, run, finished, answered and acked: nothing reached the store.
    e.handle_command(T0, RequestId(1), run("quick", 5_000));
    let quick = ran(&disk.drain(&mut e));
    assert!(disk.0.is_empty(), "no write at the add");
    e.handle_exec_done(T0 + 1, quick, 1, done());
    let fx = disk.drain(&mut e);
    assert!(
        matches!(&fx[..], [Effect::Reply { reply: Reply::Job(s), .. }] if s.body.is_empty()),
        "{fx:?}"
    );
    assert!(disk.0.is_empty() && e.job(&quick).is_none());

    // Its wait ends first: the answer promises a job, written before it.
    e.handle_command(T0 + 2, RequestId(2), run("slow", 100));
    let slow = ran(&disk.drain(&mut e));
    assert!(disk.0.is_empty());
    e.handle_timeout(T0 + 200);
    let fx = disk.drain(&mut e);
    assert!(
        matches!(&fx[..], [Effect::Reply { reply: Reply::Job(s), .. }] if !s.state.is_finished())
    );
    assert_eq!(disk.0[&slow].state, JobState::Active);
    // From then on it is journaled like any job, its removal included.
    e.handle_exec_done(T0 + 300, slow, 1, done());
    disk.drain(&mut e);
    assert_eq!(disk.0[&slow].state, JobState::Done);
    e.handle_command(
        T0 + 400,
        RequestId(3),
        Command::Ack {
            ids: vec![slow],
            fast: false,
        },
    );
    disk.drain(&mut e);
    assert!(disk.0.is_empty());
}

#[test]
fn finished_results_wait_for_their_ack_and_acks_stay_gone() {
    let mut e = engine();
    e.handle_module_added(module(), 10);
    let mut disk = Disk::default();
    let mut a = AddJob::new("w", b"x".to_vec());
    a.module = Some(module());
    let id = add(&mut e, &mut disk, 1, a);
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
    e.handle_exec_done(T0 + 1, id, 1, result.clone());
    disk.drain(&mut e);
    assert_eq!(disk.0[&id].result.as_deref(), Some(&result));
    let other = add(&mut e, &mut disk, 2, plain("q", "acked", 0));
    e.handle_command(
        T0 + 2,
        RequestId(3),
        Command::Ack {
            ids: vec![other],
            fast: false,
        },
    );
    disk.drain(&mut e);
    assert!(!disk.0.contains_key(&other), "an ack removes the record");

    let mut r = engine();
    r.handle_module_added(module(), 10);
    let rep = r.restore(T0 + 5, disk.jobs());
    assert_eq!(rep.finished, 1);
    let job = r.job(&id).unwrap();
    assert_eq!(job.state, JobState::Done);
    assert_eq!(job.result.as_deref(), Some(&result));
    assert!(r.job(&other).is_none());
}

#[test]
fn ids_made_after_a_restore_are_greater_even_if_the_clock_stepped_back() {
    let mut e = engine();
    let mut disk = Disk::default();
    let first = add(&mut e, &mut disk, 1, plain("q", "a", 0));
    let mut r = engine();
    r.restore(T0 - 60_000, disk.jobs());
    let mut rdisk = Disk::default();
    r.handle_command(
        T0 - 60_000,
        RequestId(2),
        Command::AddJob(Box::new(plain("q", "b", 0))),
    );
    let id = rdisk
        .drain(&mut r)
        .into_iter()
        .find_map(|f| match f {
            Effect::Reply {
                reply: Reply::JobAdded(id),
                ..
            } => Some(id),
            _ => None,
        })
        .unwrap();
    assert!(id > first);
}
