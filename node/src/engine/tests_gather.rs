//! Distributed jobs on one engine: parts run as jobs of their own, a failed
//! part runs again alone, the reduce gets the outputs in order, and the
//! parent's status shows each part.

use super::*;
use crate::job::ErrorClass;
use wasque_sdk::proto::{MapSpec, PartStatus, frame_parts};

const T0: UnixMs = 1_700_000_000_000;

fn engine() -> Engine {
    let mut e = Engine::new(EngineConfig {
        exec_slots: 8,
        node_id: "n1".into(),
        ..EngineConfig::default()
    });
    e.handle_module_added(map(), 1);
    e.handle_module_added(reduce(), 1);
    e
}

fn map() -> ModuleHash {
    ModuleHash::of(b"map")
}

fn reduce() -> ModuleHash {
    ModuleHash::of(b"reduce")
}

fn parent_add(parts: u32, attempts: u32) -> AddJob {
    let mut a = AddJob::new("mr", Vec::new());
    a.module = Some(reduce());
    a.map = Some(MapSpec {
        map: map(),
        parts,
        attempts,
    });
    a
}

fn drain(e: &mut Engine) -> Vec<Effect> {
    std::iter::from_fn(|| e.poll_effect()).collect()
}

fn call(e: &mut Engine, now: UnixMs, req: u64, cmd: Command) -> (Reply, Vec<RunJob>) {
    e.handle_command(now, RequestId(req), cmd);
    let fx = drain(e);
    let mut reply = None;
    let mut runs = Vec::new();
    for f in fx {
        match f {
            Effect::Reply { to, reply: r } if to.0 == req => reply = Some(r),
            Effect::Run(r) => runs.push(r),
            _ => {}
        }
    }
    (reply.expect("a reply"), runs)
}

/// The runs an engine asked for since its effects were last drained.
pub(super) fn runs_of(e: &mut Engine) -> Vec<RunJob> {
    drain(e)
        .into_iter()
        .filter_map(|f| match f {
            Effect::Run(r) => Some(r),
            _ => None,
        })
        .collect()
}

fn result(out: &[u8], class: Option<ErrorClass>) -> JobResult {
    JobResult {
        exit_code: Some(if class.is_none() { 0 } else { 1 }),
        error_class: class,
        message: if class.is_some() {
            "boom".into()
        } else {
            String::new()
        },
        output: out.to_vec(),
        stderr: vec![],
        fuel_used: 1,
        duration_us: 1,
        node: "n1".into(),
    }
}

fn add_parent(e: &mut Engine, parts: u32, attempts: u32) -> JobId {
    match call(
        e,
        T0,
        1,
        Command::AddJob(Box::new(parent_add(parts, attempts))),
    )
    .0
    {
        Reply::JobAdded(id) => id,
        other => panic!("{other:?}"),
    }
}

fn add_part(e: &mut Engine, parent: JobId, index: u32, body: &str) -> (Reply, Vec<RunJob>) {
    call(
        e,
        T0 + 1,
        100 + index as u64,
        Command::AddPart {
            parent,
            index,
            body: Bytes::copy_from_slice(body.as_bytes()),
        },
    )
}

#[test]
fn parts_run_alone_then_the_reduce_gets_their_outputs_in_order() {
    let mut e = engine();
    let parent = add_parent(&mut e, 3, 2);
    assert_eq!(e.job(&parent).unwrap().state, JobState::Waiting);
    let mut runs = Vec::new();
    for (i, body) in ["a", "b", "c"].iter().enumerate() {
        let (reply, r) = add_part(&mut e, parent, i as u32, body);
        assert!(matches!(reply, Reply::JobAdded(_)), "{reply:?}");
        runs.extend(r);
    }
    assert_eq!(runs.len(), 3, "each part runs as a job of its own");
    assert!(runs.iter().all(|r| r.module == map()));
    // Adding a part again answers with its job, and runs nothing more.
    let (again, extra) = add_part(&mut e, parent, 0, "a");
    assert_eq!(again, Reply::JobAdded(runs[0].job));
    assert!(extra.is_empty());

    // Part 1 fails once: only it runs again.
    e.handle_exec_done(
        T0 + 2,
        runs[1].job,
        runs[1].attempt,
        result(b"", Some(ErrorClass::Trap)),
    );
    let retry = runs_of(&mut e);
    assert_eq!(retry.len(), 1);
    assert_eq!(&retry[0].body[..], b"b");
    assert_ne!(retry[0].job, runs[1].job, "a new job for the new run");
    let status = e.job(&parent).unwrap().status(T0 + 2, "n1");
    assert_eq!(status.parts[1].attempts, 2);
    assert_eq!(status.parts[1].state, "running");
    assert!(
        status.parts[1].error.contains("trap"),
        "{:?}",
        status.parts[1]
    );

    // The others finish in another order than they were added.
    e.handle_exec_done(T0 + 3, runs[2].job, runs[2].attempt, result(b"C", None));
    e.handle_exec_done(T0 + 3, runs[0].job, runs[0].attempt, result(b"A", None));
    assert!(
        runs_of(&mut e).is_empty(),
        "the reduce waits for every part"
    );
    assert_eq!(
        PartStatus::done(&e.job(&parent).unwrap().status(T0 + 3, "n1").parts),
        2
    );
    e.handle_exec_done(T0 + 4, retry[0].job, retry[0].attempt, result(b"BB", None));
    let red = runs_of(&mut e);
    assert_eq!(red.len(), 1);
    assert_eq!(red[0].job, parent);
    assert_eq!(red[0].module, reduce());
    assert_eq!(
        &red[0].body[..],
        &frame_parts(&[b"A".to_vec(), b"BB".to_vec(), b"C".to_vec()])[..]
    );
    // Parts' jobs are acknowledged once their result is with the parent.
    for r in runs.iter().chain(&retry) {
        assert!(e.job(&r.job).is_none(), "part job {} kept", r.job);
    }
    e.handle_exec_done(T0 + 5, parent, red[0].attempt, result(b"total", None));
    let s = e.job(&parent).unwrap().status(T0 + 5, "n1");
    assert_eq!(s.state, JobState::Done);
    assert_eq!(s.result.unwrap().output, b"total");
    assert!(s.parts.iter().all(|p| p.state == "done"));
}

#[test]
fn a_part_that_keeps_failing_fails_the_parent_and_stops_the_others() {
    let mut e = engine();
    let parent = add_parent(&mut e, 2, 2);
    let (_, r0) = add_part(&mut e, parent, 0, "x");
    let (_, r1) = add_part(&mut e, parent, 1, "y");
    // A waiter on the parent learns of the failure.
    let (_, _) = {
        e.handle_command(
            T0 + 1,
            RequestId(9),
            Command::Wait {
                id: parent,
                timeout_ms: 60_000,
            },
        );
        (drain(&mut e), ())
    };
    e.handle_exec_done(
        T0 + 2,
        r0[0].job,
        r0[0].attempt,
        result(b"", Some(ErrorClass::OutOfFuel)),
    );
    let again = runs_of(&mut e);
    assert_eq!(again.len(), 1);
    e.handle_exec_done(
        T0 + 3,
        again[0].job,
        again[0].attempt,
        result(b"", Some(ErrorClass::OutOfFuel)),
    );
    let fx = drain(&mut e);
    let status = fx
        .iter()
        .find_map(|f| match f {
            Effect::Reply {
                to: RequestId(9),
                reply: Reply::Job(s),
            } => Some(s.clone()),
            _ => None,
        })
        .expect("the waiter is answered");
    assert_eq!(status.state, JobState::Failed);
    let res = status.result.unwrap();
    assert_eq!(res.error_class, Some(ErrorClass::OutOfFuel));
    assert!(
        res.message.contains("part 0 failed 2 time(s)"),
        "{}",
        res.message
    );
    assert_eq!(status.parts[0].state, "failed");
    // The other part is not needed any more.
    assert!(e.job(&r1[0].job).is_none());
}

#[test]
fn bad_distributed_jobs_are_refused_with_a_reason() {
    let mut e = engine();
    let err = |r: Reply| match r {
        Reply::Error(w) => w.message,
        other => panic!("{other:?}"),
    };
    let m = err(call(&mut e, T0, 1, Command::AddJob(Box::new(parent_add(0, 3)))).0);
    assert!(m.contains("empty"), "{m}");
    let mut a = parent_add(2, 3);
    a.map.as_mut().unwrap().map = ModuleHash::of(b"unknown");
    assert!(matches!(
        call(&mut e, T0, 2, Command::AddJob(Box::new(a))).0,
        Reply::Error(w) if w.code == ErrorCode::NoModule
    ));
    let mut a = parent_add(2, 3);
    a.body = b"input".to_vec();
    assert!(err(call(&mut e, T0, 3, Command::AddJob(Box::new(a))).0).contains("parts"));
    let mut a = parent_add(2, 3);
    a.asynckey = Some("k".into());
    let m = err(call(&mut e, T0, 5, Command::AddJob(Box::new(a))).0);
    assert!(m.contains("ASYNCKEY"), "{m}");
    let parent = add_parent(&mut e, 2, 3);
    let m = err(add_part(&mut e, parent, 2, "z").0);
    assert!(m.contains("out of range"), "{m}");
    // A plain job takes no parts.
    let plain = match call(
        &mut e,
        T0,
        4,
        Command::AddJob(Box::new(AddJob::new("q", b"x".to_vec()))),
    )
    .0
    {
        Reply::JobAdded(id) => id,
        other => panic!("{other:?}"),
    };
    assert!(err(add_part(&mut e, plain, 0, "z").0).contains("not a distributed job"));
}

#[test]
fn deleting_a_waiting_parent_stops_its_parts() {
    let mut e = engine();
    let parent = add_parent(&mut e, 2, 1);
    let (_, r0) = add_part(&mut e, parent, 0, "x");
    assert_eq!(
        call(&mut e, T0 + 2, 5, Command::DelJob { ids: vec![parent] }).0,
        Reply::Count(1)
    );
    assert!(e.job(&r0[0].job).is_none());
}

#[test]
fn a_parent_and_its_parts_survive_a_restart() {
    let mut e = engine();
    let parent = add_parent(&mut e, 2, 2);
    let (_, r0) = add_part(&mut e, parent, 0, "x");
    e.handle_exec_done(T0 + 2, r0[0].job, r0[0].attempt, result(b"X", None));
    let (_, r1) = add_part(&mut e, parent, 1, "y");
    drain(&mut e);
    // What the store holds, through the record format.
    let mut jobs: Vec<Job> = vec![];
    for id in [parent, r1[0].job] {
        let mut buf = Vec::new();
        crate::store::record::encode(e.job(&id).unwrap(), &mut buf).unwrap();
        jobs.push(crate::store::record::decode(&crate::store::record::key(&id), &buf).unwrap());
    }
    let mut e2 = engine();
    let mut rep = RestoreReport::default();
    for j in jobs {
        e2.restore_job(T0 + 10, j, &mut rep);
    }
    e2.restore_end(T0 + 10);
    let s = e2.job(&parent).unwrap().status(T0 + 10, "n1");
    assert_eq!(s.state, JobState::Waiting);
    assert_eq!(s.parts[0].state, "done");
    // The running part was queued again by the restart and runs.
    let runs = runs_of(&mut e2);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].job, r1[0].job);
    e2.handle_exec_done(T0 + 11, runs[0].job, runs[0].attempt, result(b"Y", None));
    let red = runs_of(&mut e2);
    assert_eq!(red.len(), 1);
    assert_eq!(
        &red[0].body[..],
        &frame_parts(&[b"X".to_vec(), b"Y".to_vec()])[..]
    );
}
