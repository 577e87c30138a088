//! kill -9 under load, restart on the same data dir, check a ledger.
//!
//! Several clients add plain and Wasm jobs, acknowledge and delete some,
//! and RESP workers take plain jobs with GETJOB and acknowledge most of
//! them (one in five is left unacknowledged: handed out, it must survive
//! a kill), while the node is killed with SIGKILL at random moments (20 times in
//! the short version; `WASQUE_LONG_TESTS=1` for 100). After each restart
//! every job whose ADDJOB was answered must still be there with its body
//! byte for byte (or have been acked or deleted), no acked or deleted job
//! may come back, a job's attempts never go backwards, and a plain job
//! is queued, or active once a worker took it (GETJOB hands out the body
//! byte for byte too). At-most-once
//! (RETRY 0) Wasm jobs may be dropped if they were running, but never run
//! twice. Each kill counts the requests in flight; most kills must hit
//! some, or the test proves nothing.
//!
//! Run with `appendfsync always` and `everysec`: a process crash may lose
//! nothing in either (with `everysec` a power loss could, which kill -9
//! cannot show).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasque_sdk::proto::{AddJob, ErrorCode, JobId, JobState, ModuleHash};
use wasque_sdk::{Client, ClientError};
use wasque_tests::node::TestNode;
use wasque_tests::resp::{Value, cmd, connect};

/// A module that spins for a few ms (so some jobs are running at a kill)
/// and ends normally.
const SPIN_WAT: &str = r#"
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (local $i i32)
    (local.set $i (i32.const 3000000))
    (loop $l
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (br_if $l (i32.ne (local.get $i) (i32.const 0))))))
"#;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Plain,
    Wasm,
    /// Wasm, RETRY 0.
    WasmOnce,
}

#[derive(Default)]
struct Ledger {
    /// Answered adds: body and kind.
    added: HashMap<JobId, (Vec<u8>, Kind)>,
    /// Answered acks and deletes.
    gone: HashSet<JobId>,
    /// Acks and deletes sent (answered or not): such a job may be gone.
    maybe_gone: HashSet<JobId>,
    /// Highest attempts seen per job.
    attempts: HashMap<JobId, u32>,
    /// At-most-once jobs dropped by a restart (allowed, counted).
    dropped_once: usize,
    /// Plain jobs a worker's GETJOB handed out.
    delivered: HashSet<JobId>,
    /// GETJOB replies and acks by the workers.
    fetched: u64,
    worker_acks: u64,
    /// What the workers saw wrong (checked with the ledger).
    problems: Vec<String>,
}

struct Load {
    ledger: Arc<Mutex<Ledger>>,
    in_flight: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

fn body_for(n: u64) -> Vec<u8> {
    // 100 bytes, all byte values over time (not only UTF-8).
    (0..100u64)
        .map(|i| (n.wrapping_mul(31).wrapping_add(i * 7) % 256) as u8)
        .collect()
}

async fn client_loop(c: Client, who: u64, module: ModuleHash, load: Arc<Load>) {
    let mut n = who << 32;
    let mut mine: Vec<JobId> = Vec::new();
    for _ in 0..100_000 {
        if load.stop.load(Ordering::Relaxed) {
            return;
        }
        n += 1;
        let roll = n % 10;
        if roll < 6 || mine.len() < 4 {
            let kind = match n % 7 {
                0 => Kind::Wasm,
                1 => Kind::WasmOnce,
                _ => Kind::Plain,
            };
            let body = body_for(n);
            let mut a = AddJob::new(format!("q{}", who % 3), body.clone());
            a.ttl_secs = Some(3600);
            if kind != Kind::Plain {
                a.module = Some(module);
            }
            if kind == Kind::WasmOnce {
                a.retry_secs = Some(0);
            }
            load.in_flight.fetch_add(1, Ordering::SeqCst);
            let r = c.add_job(a).await;
            load.in_flight.fetch_sub(1, Ordering::SeqCst);
            match r {
                Ok(id) => {
                    load.ledger
                        .lock()
                        .expect("ledger")
                        .added
                        .insert(id, (body, kind));
                    mine.push(id);
                }
                Err(_) => return, // the node died
            }
        } else {
            let pick = (n as usize * 7919) % mine.len();
            let id = mine.swap_remove(pick);
            load.ledger.lock().expect("ledger").maybe_gone.insert(id);
            load.in_flight.fetch_add(1, Ordering::SeqCst);
            let r = if roll == 9 {
                c.deljob(vec![id]).await
            } else {
                c.ack(vec![id]).await
            };
            load.in_flight.fetch_sub(1, Ordering::SeqCst);
            match r {
                Ok(_) => {
                    load.ledger.lock().expect("ledger").gone.insert(id);
                }
                Err(_) => return,
            }
        }
    }
}

fn bytes_of(v: &Value) -> Vec<u8> {
    match v {
        Value::BulkString(b) => b.clone(),
        Value::SimpleString(s) => s.clone().into_bytes(),
        _ => vec![],
    }
}

/// A RESP worker: GETJOB from the clients' queues, then ACKJOB for all
/// but one job in five (left handed out, unacknowledged). Ends when the
/// node dies (the connection breaks) or the load stops.
fn worker_loop(addr: SocketAddr, who: u64, load: Arc<Load>) {
    let Some(mut c) = connect(addr) else { return };
    let get = [
        "GETJOB", "TIMEOUT", "50", "COUNT", "4", "FROM", "q0", "q1", "q2",
    ];
    for round in 0..100_000u64 {
        if load.stop.load(Ordering::Relaxed) {
            return;
        }
        load.in_flight.fetch_add(1, Ordering::SeqCst);
        let got = cmd(&mut c, &get);
        load.in_flight.fetch_sub(1, Ordering::SeqCst);
        let jobs = match got {
            Ok(Value::Array(jobs)) => jobs,
            Ok(_) => continue, // nil: nothing within the timeout
            Err(_) => return,
        };
        let mut to_ack = vec![];
        {
            let mut l = load.ledger.lock().expect("ledger");
            l.fetched += 1;
            for (k, j) in jobs.iter().enumerate() {
                let Value::Array(f) = j else { continue };
                let (Some(id), Some(body)) = (f.get(1), f.get(2)) else {
                    l.problems
                        .push(format!("GETJOB entry without id and body: {f:?}"));
                    continue;
                };
                let id_text = String::from_utf8_lossy(&bytes_of(id)).into_owned();
                let Ok(id) = id_text.parse::<JobId>() else {
                    l.problems.push(format!("GETJOB gave a bad id {id_text:?}"));
                    continue;
                };
                if let Some((want, _)) = l.added.get(&id)
                    && *want != bytes_of(body)
                {
                    l.problems.push(format!("{id}: GETJOB body differs"));
                }
                l.delivered.insert(id);
                if !(round + who + k as u64).is_multiple_of(5) {
                    l.maybe_gone.insert(id);
                    to_ack.push((id, id_text));
                }
            }
        }
        if to_ack.is_empty() {
            continue;
        }
        let mut args = vec!["ACKJOB"];
        args.extend(to_ack.iter().map(|(_, t)| t.as_str()));
        load.in_flight.fetch_add(1, Ordering::SeqCst);
        let r = cmd(&mut c, &args);
        load.in_flight.fetch_sub(1, Ordering::SeqCst);
        match r {
            Ok(Value::Int(_)) => {
                let mut l = load.ledger.lock().expect("ledger");
                l.worker_acks += to_ack.len() as u64;
                l.gone.extend(to_ack.iter().map(|(id, _)| *id));
            }
            Ok(other) => {
                let mut l = load.ledger.lock().expect("ledger");
                l.problems.push(format!("ACKJOB answered {other:?}"));
                return;
            }
            Err(_) => return,
        }
    }
}

/// Checks the restarted node against the ledger.
async fn verify(node: &TestNode, ledger: &Arc<Mutex<Ledger>>, round: usize) {
    let c = node.client().await;
    let (added, gone, maybe_gone) = {
        let l = ledger.lock().expect("ledger");
        let added: Vec<(JobId, Vec<u8>, Kind)> = l
            .added
            .iter()
            .map(|(id, (b, k))| (*id, b.clone(), *k))
            .collect();
        (added, l.gone.clone(), l.maybe_gone.clone())
    };
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in added.chunks(added.len().div_ceil(8).max(1)) {
        let chunk = chunk.to_vec();
        let c = c.clone();
        let gone = gone.clone();
        tasks.spawn(async move {
            let mut out = vec![];
            for (id, body, kind) in chunk {
                let r = c.show(id).await;
                out.push((id, body, kind, gone.contains(&id), r));
            }
            out
        });
    }
    let mut results = vec![];
    while let Some(res) = tasks.join_next().await {
        results.extend(res.expect("verify task"));
    }
    let mut l = ledger.lock().expect("ledger");
    let mut problems = std::mem::take(&mut l.problems);
    let mut dropped = vec![];
    {
        for (id, body, kind, is_gone, r) in results {
            match (is_gone, r) {
                (true, Ok(s)) => {
                    problems.push(format!("{id}: acked/deleted but back as {}", s.state))
                }
                (true, Err(_)) => {}
                (false, Ok(s)) => {
                    if s.body != body {
                        problems.push(format!("{id}: body differs"));
                    }
                    let seen = l.attempts.entry(id).or_default();
                    if s.attempts < *seen {
                        problems.push(format!(
                            "{id}: attempts went back {} -> {}",
                            *seen, s.attempts
                        ));
                    }
                    *seen = s.attempts;
                    if kind == Kind::WasmOnce && s.attempts > 1 {
                        problems.push(format!("{id}: RETRY 0 job ran {} times", s.attempts));
                    }
                    // Active: handed out by a GETJOB (answered, or in
                    // flight at the kill), and kept until acked or RETRY.
                    if kind == Kind::Plain
                        && s.state != JobState::Queued
                        && s.state != JobState::Active
                    {
                        problems.push(format!("{id}: plain job in state {}", s.state));
                    }
                    if kind == Kind::Plain && s.state == JobState::Active && s.attempts == 0 {
                        problems.push(format!("{id}: active plain job never delivered"));
                    }
                }
                (false, Err(ClientError::Node(w))) if w.code == ErrorCode::NoJob => {
                    if maybe_gone.contains(&id) {
                        // Its ack was in flight at the kill and reached disk.
                        dropped.push(id);
                    } else if kind == Kind::WasmOnce {
                        dropped.push(id);
                    } else {
                        problems.push(format!("{id}: answered ADDJOB ({kind:?}) lost"));
                    }
                }
                (false, Err(e)) => problems.push(format!("{id}: show failed: {e}")),
            }
        }
    }
    for id in dropped {
        l.added.remove(&id);
        if !maybe_gone.contains(&id) {
            l.dropped_once += 1;
        }
    }
    assert!(
        problems.is_empty(),
        "round {round}: {} problem(s), first: {:?}",
        problems.len(),
        &problems[..problems.len().min(10)]
    );
    // Jobs confirmed gone need no more checking; keep the ledger small.
    let confirmed: Vec<JobId> = l.gone.iter().copied().collect();
    for id in confirmed {
        l.added.remove(&id);
    }
}

fn rng(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

async fn crash_loop(fsync: &str) {
    let long = std::env::var("WASQUE_LONG_TESTS").is_ok_and(|v| v == "1");
    let kills = if long { 100 } else { 20 };
    let deadline = Instant::now() + Duration::from_secs(if long { 1800 } else { 150 });
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let conf = tmp.path().join("wasque.conf");
    std::fs::write(&conf, format!("appendonly yes\nappendfsync {fsync}\n")).expect("conf");
    let conf = conf.to_string_lossy().into_owned();
    let flags = ["--config", conf.as_str(), "--exec-threads", "2"];

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(std::process::id());
    let mut hits = 0;
    let mut total_in_flight = 0;
    let mut module = None;
    for round in 0..kills {
        assert!(
            Instant::now() < deadline,
            "crash test over its time bound at round {round}"
        );
        let t0 = Instant::now();
        let node = TestNode::start_in(&dir, &flags);
        let started = t0.elapsed();
        verify(&node, &ledger, round).await;
        let verified = t0.elapsed();
        let c = node.client().await;
        let m = match module {
            Some(m) => m,
            None => {
                let bytes = wat::parse_str(SPIN_WAT).expect("wat");
                let info = c.put_module(bytes).await.expect("put module");
                module = Some(info.hash);
                info.hash
            }
        };
        let load = Arc::new(Load {
            ledger: ledger.clone(),
            in_flight: Arc::new(AtomicU64::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        });
        let mut clients = tokio::task::JoinSet::new();
        for who in 0..6u64 {
            let c = node.client().await;
            clients.spawn(client_loop(c, who + round as u64 * 16, m, load.clone()));
        }
        for who in 0..2u64 {
            let (addr, load) = (node.addr, load.clone());
            clients.spawn_blocking(move || worker_loop(addr, who, load));
        }
        let wait = 150 + rng(&mut seed) % 350;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let in_flight = load.in_flight.load(Ordering::SeqCst);
        node.kill9();
        load.stop.store(true, Ordering::Relaxed);
        if in_flight > 0 {
            hits += 1;
        }
        total_in_flight += in_flight;
        eprintln!(
            "round {round}: start {started:.2?}, verified {verified:.2?}, killed at {:.2?} with {in_flight} in flight; {} jobs in the ledger",
            t0.elapsed(),
            ledger.lock().expect("ledger").added.len()
        );
        // Over UDP a dead node is noticed only at the idle timeout: stop
        // the clients now (their unanswered requests count for nothing).
        clients.abort_all();
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while clients.join_next().await.is_some() {}
        })
        .await;
    }
    let node = TestNode::start_in(&dir, &flags);
    verify(&node, &ledger, kills).await;
    let l = ledger.lock().expect("ledger");
    eprintln!(
        "appendfsync {fsync}: {kills} kills, {hits} with requests in flight ({total_in_flight} in all); {} live jobs checked at the end, {} acked/deleted, {} RETRY 0 jobs dropped while running; workers: {} GETJOB replies, {} jobs handed out, {} acked",
        l.added.len(),
        l.gone.len(),
        l.dropped_once,
        l.fetched,
        l.delivered.len(),
        l.worker_acks
    );
    assert!(
        l.worker_acks > 0 && l.delivered.len() as u64 > l.worker_acks,
        "the workers took and acked too little to prove anything"
    );
    assert!(
        hits * 4 >= kills * 3,
        "only {hits} of {kills} kills hit requests in flight"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_restart_appendfsync_always() {
    crash_loop("always").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_restart_appendfsync_everysec() {
    crash_loop("everysec").await;
}
