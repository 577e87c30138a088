//! Idempotency keys in one engine (`idem.rs`), on a virtual clock: what a
//! repeated add answers, for how long, and what a restart keeps.

use std::collections::BTreeMap;

use super::*;
use crate::job::{KeyDigest, Tombstone};

const T0: UnixMs = 1_700_000_000_000;
const WINDOW_MS: u64 = 60_000;

fn engine() -> Engine {
    Engine::new(EngineConfig {
        node_id: "n1".into(),
        journal: true,
        idempotency_window_ms: WINDOW_MS,
        ..EngineConfig::default()
    })
}

fn module() -> ModuleHash {
    ModuleHash::of(b"module")
}

fn keyed(queue: &str, body: &str, key: &str) -> AddJob {
    let mut a = AddJob::new(queue, body.as_bytes().to_vec());
    a.idempotency_key = Some(key.into());
    a
}

/// What the store would hold: jobs and tombstones, the last change wins.
#[derive(Default)]
struct Disk {
    jobs: BTreeMap<JobId, Job>,
    tombs: BTreeMap<KeyDigest, Tombstone>,
}

impl Disk {
    /// Drains the engine's effects, applying changes; returns the others.
    fn drain(&mut self, e: &mut Engine) -> Vec<Effect> {
        let mut rest = vec![];
        while let Some(f) = e.poll_effect() {
            match f {
                Effect::Persist(Change::Put(job)) => {
                    self.jobs.insert(job.id, *job);
                }
                Effect::Persist(Change::Remove(id)) => {
                    self.jobs.remove(&id);
                }
                Effect::Persist(Change::PutTomb(t)) => {
                    self.tombs.insert(t.digest, t);
                }
                Effect::Persist(Change::RemoveTomb(d)) => {
                    self.tombs.remove(&d);
                }
                other => rest.push(other),
            }
        }
        rest
    }

    /// A fresh engine restored from what is on disk, at `now`.
    fn restart(&mut self, now: UnixMs) -> Engine {
        let mut e = engine();
        let mut rep = RestoreReport::default();
        e.restore_begin(self.jobs.len());
        for job in self.jobs.values() {
            e.restore_job(now, job.clone(), &mut rep);
        }
        for t in self.tombs.values() {
            e.restore_tombstone(now, *t, &mut rep);
        }
        e.restore_end(now);
        self.drain(&mut e);
        e
    }
}

/// Sends a command at `now`; its reply.
fn call(e: &mut Engine, disk: &mut Disk, now: UnixMs, req: u64, cmd: Command) -> Reply {
    e.handle_command(now, RequestId(req), cmd);
    disk.drain(e)
        .into_iter()
        .find_map(|f| match f {
            Effect::Reply { to, reply } if to.0 == req => Some(reply),
            _ => None,
        })
        .expect("a reply")
}

fn add(e: &mut Engine, disk: &mut Disk, now: UnixMs, a: AddJob) -> JobId {
    match call(e, disk, now, 1, Command::AddJob(Box::new(a))) {
        Reply::JobAdded(id) | Reply::Duplicate(id) => id,
        other => panic!("add refused: {other:?}"),
    }
}

fn ack(e: &mut Engine, disk: &mut Disk, now: UnixMs, id: JobId) {
    let r = call(
        e,
        disk,
        now,
        2,
        Command::Ack {
            ids: vec![id],
            fast: false,
        },
    );
    assert_eq!(r, Reply::Count(1));
}

#[test]
fn a_repeated_add_answers_the_first_id_and_adds_nothing() {
    let mut e = engine();
    let mut disk = Disk::default();
    let first = add(&mut e, &mut disk, T0, keyed("q", "a", "k1"));
    let again = add(&mut e, &mut disk, T0 + 10, keyed("q", "other body", "k1"));
    assert_eq!(again, first);
    assert_eq!(e.job_count(), 1);
    assert_eq!(e.ready_jobs(), 1, "queued once");
    // Another queue, another key, or no key: new jobs.
    let other_queue = add(&mut e, &mut disk, T0 + 20, keyed("q2", "a", "k1"));
    let other_key = add(&mut e, &mut disk, T0 + 30, keyed("q", "a", "k2"));
    let unkeyed = add(&mut e, &mut disk, T0 + 40, AddJob::new("q", b"a".to_vec()));
    let all = [first, other_queue, other_key, unkeyed];
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            assert_ne!(a, b);
        }
    }
    assert_eq!(e.job_count(), 4);
    assert_eq!(e.idem_stats().hits, 1);
    assert_eq!(e.idem_stats().keyed_jobs, 3);
}

#[test]
fn a_wasm_job_added_twice_runs_once() {
    let mut e = engine();
    let mut disk = Disk::default();
    e.handle_module_added(module(), 100);
    let mut a = keyed("q", "a", "k");
    a.module = Some(module());
    let first = add(&mut e, &mut disk, T0, a.clone());
    assert_eq!(add(&mut e, &mut disk, T0 + 1, a), first);
    e.handle_command(T0 + 2, RequestId(3), Command::Show { id: first });
    let runs = e.running;
    assert_eq!(runs, 1, "one run");
}

#[test]
fn after_an_ack_the_key_answers_until_its_window_ends() {
    let mut e = engine();
    let mut disk = Disk::default();
    let id = add(&mut e, &mut disk, T0, keyed("q", "a", "k"));
    ack(&mut e, &mut disk, T0 + 100, id);
    assert_eq!(e.job_count(), 0);
    assert_eq!(e.idem_stats().tombstones, 1);
    assert_eq!(disk.tombs.len(), 1, "the tombstone is stored");
    assert_eq!(add(&mut e, &mut disk, T0 + 1_000, keyed("q", "b", "k")), id);
    assert_eq!(e.job_count(), 0, "nothing added");
    // An add-and-wait learns the job is gone, with its id.
    let mut w = keyed("q", "b", "k");
    w.wait_ms = Some(1_000);
    match call(
        &mut e,
        &mut disk,
        T0 + 1_000,
        5,
        Command::AddJob(Box::new(w)),
    ) {
        Reply::Error(err) => {
            assert_eq!(err.code, ErrorCode::NoJob);
            assert!(err.message.contains(&id.to_string()), "{}", err.message);
        }
        other => panic!("{other:?}"),
    }
    // The window ends: the tombstone is swept (from memory and disk) and
    // the key adds a new job.
    e.handle_timeout(T0 + WINDOW_MS);
    disk.drain(&mut e);
    assert_eq!(e.idem_stats().tombstones, 0);
    assert!(disk.tombs.is_empty());
    let new = add(&mut e, &mut disk, T0 + WINDOW_MS + 1, keyed("q", "c", "k"));
    assert_ne!(new, id);
}

#[test]
fn a_key_lasts_as_long_as_its_job_even_past_the_window() {
    let mut e = engine();
    let mut disk = Disk::default();
    let mut a = keyed("q", "a", "k");
    a.ttl_secs = Some(3_600);
    let id = add(&mut e, &mut disk, T0, a.clone());
    let later = T0 + 10 * WINDOW_MS;
    e.handle_timeout(later);
    assert_eq!(add(&mut e, &mut disk, later, a.clone()), id);
    // Acked past its window: no tombstone, the key is free.
    ack(&mut e, &mut disk, later, id);
    assert_eq!(e.idem_stats().tombstones, 0);
    assert_ne!(add(&mut e, &mut disk, later + 1, a), id);
}

#[test]
fn malformed_keys_are_refused_with_a_clear_error() {
    let mut e = engine();
    let mut disk = Disk::default();
    for (key, words) in [("", "empty"), (&*"k".repeat(257), "longer than 256")] {
        let r = call(
            &mut e,
            &mut disk,
            T0,
            7,
            Command::AddJob(Box::new(keyed("q", "a", key))),
        );
        match r {
            Reply::Error(err) => {
                assert_eq!(err.code, ErrorCode::Err);
                assert!(err.message.contains(words), "{}", err.message);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(e.job_count(), 0);
    add(&mut e, &mut disk, T0, keyed("q", "a", &"k".repeat(256)));
}

#[test]
fn a_duplicate_add_and_wait_waits_on_the_first_job() {
    let mut e = engine();
    let mut disk = Disk::default();
    e.handle_module_added(module(), 100);
    let mut a = keyed("q", "a", "k");
    a.module = Some(module());
    let id = add(&mut e, &mut disk, T0, a.clone());
    let mut w = a.clone();
    w.wait_ms = Some(5_000);
    w.ack_on_result = true;
    e.handle_command(T0 + 1, RequestId(9), Command::AddJob(Box::new(w)));
    assert!(
        disk.drain(&mut e)
            .iter()
            .all(|f| !matches!(f, Effect::Reply { to, .. } if to.0 == 9)),
        "waits"
    );
    e.handle_exec_done(T0 + 5, id, 1, super::tests::ok_result("out"));
    let fx = disk.drain(&mut e);
    let status = fx
        .iter()
        .find_map(|f| match f {
            Effect::Reply {
                to,
                reply: Reply::Job(s),
            } if to.0 == 9 => Some(s.clone()),
            _ => None,
        })
        .expect("the duplicate's wait answered");
    assert_eq!(status.id, id);
    assert_eq!(status.result.expect("result").output, b"out");
    // Its ack on result removed the job; the key is remembered.
    assert_eq!(e.job_count(), 0);
    assert_eq!(add(&mut e, &mut disk, T0 + 10, a), id);
}

#[test]
fn keys_and_tombstones_survive_a_restart() {
    let mut e = engine();
    let mut disk = Disk::default();
    let acked = add(&mut e, &mut disk, T0, keyed("q", "a", "gone"));
    ack(&mut e, &mut disk, T0 + 1, acked);
    let held = add(&mut e, &mut disk, T0 + 2, keyed("q", "b", "held"));
    assert_eq!(disk.tombs.len(), 1);
    let mut e = disk.restart(T0 + 1_000);
    assert_eq!(e.idem_stats().tombstones, 1);
    assert_eq!(e.idem_stats().keyed_jobs, 1);
    assert_eq!(
        add(&mut e, &mut disk, T0 + 1_001, keyed("q", "x", "gone")),
        acked
    );
    assert_eq!(
        add(&mut e, &mut disk, T0 + 1_002, keyed("q", "x", "held")),
        held
    );
    assert_eq!(e.job_count(), 1);
    // A restart after the window drops the tombstone from disk too.
    let mut e = disk.restart(T0 + WINDOW_MS + 1);
    assert_eq!(e.idem_stats().tombstones, 0);
    assert!(disk.tombs.is_empty());
    assert_ne!(
        add(
            &mut e,
            &mut disk,
            T0 + WINDOW_MS + 2,
            keyed("q", "x", "gone")
        ),
        acked
    );
}

#[test]
fn a_job_expired_while_the_node_was_down_leaves_its_key_remembered() {
    let mut e = engine();
    let mut disk = Disk::default();
    let mut a = keyed("q", "a", "k");
    a.ttl_secs = Some(10);
    let id = add(&mut e, &mut disk, T0, a.clone());
    let mut e = disk.restart(T0 + 20_000);
    assert_eq!(e.job_count(), 0, "expired");
    assert_eq!(disk.tombs.len(), 1, "its key is kept on disk");
    assert_eq!(add(&mut e, &mut disk, T0 + 20_001, a), id);
}

#[test]
fn tombstones_are_bounded_and_the_first_to_end_goes_first() {
    let mut e = Engine::new(EngineConfig {
        node_id: "n1".into(),
        journal: true,
        idempotency_window_ms: WINDOW_MS,
        idempotency_max_tombstones: 2,
        ..EngineConfig::default()
    });
    let mut disk = Disk::default();
    let mut ids = vec![];
    for (i, k) in ["a", "b", "c"].iter().enumerate() {
        let now = T0 + i as u64;
        let id = add(&mut e, &mut disk, now, keyed("q", "x", k));
        ack(&mut e, &mut disk, now, id);
        ids.push(id);
    }
    let st = e.idem_stats();
    assert_eq!((st.tombstones, st.dropped_early), (2, 1));
    assert_eq!(disk.tombs.len(), 2);
    assert_ne!(
        add(&mut e, &mut disk, T0 + 10, keyed("q", "x", "a")),
        ids[0]
    );
    assert_eq!(
        add(&mut e, &mut disk, T0 + 11, keyed("q", "x", "c")),
        ids[2]
    );
}

#[test]
fn deljob_and_flushall_keep_and_forget_keys() {
    let mut e = engine();
    let mut disk = Disk::default();
    let id = add(&mut e, &mut disk, T0, keyed("q", "a", "k"));
    let r = call(
        &mut e,
        &mut disk,
        T0 + 1,
        3,
        Command::DelJob { ids: vec![id] },
    );
    assert_eq!(r, Reply::Count(1));
    assert_eq!(add(&mut e, &mut disk, T0 + 2, keyed("q", "a", "k")), id);
    call(&mut e, &mut disk, T0 + 3, 4, Command::FlushAll);
    assert_eq!(e.idem_stats().tombstones, 0);
    assert!(disk.tombs.is_empty());
    assert_ne!(add(&mut e, &mut disk, T0 + 4, keyed("q", "a", "k")), id);
}

#[test]
fn an_add_the_store_could_not_write_leaves_no_key() {
    let mut e = engine();
    let mut disk = Disk::default();
    let id = add(&mut e, &mut disk, T0, keyed("q", "a", "k"));
    e.handle_failed_adds(T0 + 1, vec![id]);
    disk.drain(&mut e);
    assert_eq!(e.idem_stats().tombstones, 0);
    assert_ne!(add(&mut e, &mut disk, T0 + 2, keyed("q", "a", "k")), id);
}

#[test]
fn a_tenants_key_is_its_own() {
    let mut e = engine();
    let mut disk = Disk::default();
    let t = |name: &str| {
        std::sync::Arc::new(crate::tenant::Tenant {
            name: name.into(),
            prefix: format!("{name}/").into(),
            quotas: Default::default(),
            modules: Default::default(),
        })
    };
    let as_ = |name: &str, a: AddJob| Command::As {
        tenant: t(name),
        cmd: Box::new(Command::AddJob(Box::new(a))),
    };
    let r1 = call(&mut e, &mut disk, T0, 1, as_("alice", keyed("q", "a", "k")));
    let r2 = call(
        &mut e,
        &mut disk,
        T0 + 1,
        2,
        as_("bob", keyed("q", "a", "k")),
    );
    let r3 = call(
        &mut e,
        &mut disk,
        T0 + 2,
        3,
        as_("alice", keyed("q", "b", "k")),
    );
    let (Reply::JobAdded(a1), Reply::JobAdded(b1), Reply::Duplicate(a2)) = (r1, r2, r3) else {
        panic!("adds refused");
    };
    assert_ne!(a1, b1);
    assert_eq!(a1, a2);
}

#[test]
fn an_add_may_give_its_key_a_window_of_its_own() {
    let mut e = engine();
    let mut disk = Disk::default();
    let mut long = keyed("q", "a", "long");
    long.idempotency_window_secs = Some(3_600);
    let mut none = keyed("q", "b", "none");
    none.idempotency_window_secs = Some(0);
    let long_id = add(&mut e, &mut disk, T0, long.clone());
    let none_id = add(&mut e, &mut disk, T0, none.clone());
    ack(&mut e, &mut disk, T0 + 1, long_id);
    ack(&mut e, &mut disk, T0 + 1, none_id);
    // Window 0: forgotten with its job. An hour: past the node's minute,
    // and across a restart.
    assert_ne!(add(&mut e, &mut disk, T0 + 2, none.clone()), none_id);
    let later = T0 + 10 * WINDOW_MS;
    let mut e = disk.restart(later);
    assert_eq!(add(&mut e, &mut disk, later, long.clone()), long_id);
    e.handle_timeout(T0 + 3_600_000);
    disk.drain(&mut e);
    assert_ne!(add(&mut e, &mut disk, T0 + 3_600_001, long), long_id);
    // Out of range: refused.
    let mut bad = keyed("q", "c", "bad");
    bad.idempotency_window_secs = Some(u64::MAX);
    match call(&mut e, &mut disk, T0, 9, Command::AddJob(Box::new(bad))) {
        Reply::Error(err) => assert!(err.message.contains("window"), "{}", err.message),
        other => panic!("{other:?}"),
    }
}
