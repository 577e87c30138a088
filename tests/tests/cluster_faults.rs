//! A ledger checker over a three-node cluster of real processes, in the
//! style of Jepsen: producers add jobs (REPLICATE 2 and 3, some ASYNC) to
//! random nodes, workers GETJOB and ACKJOB on random nodes (an ACKJOB
//! that gets no answer, its node killed with the ack in hand, is sent
//! again to another node, as a client that did not hear it does), while the test
//! partitions a node for shorter and longer than RETRY and
//! `cluster-node-timeout` (`DEBUG PARTITION`, a fault layer in the peer
//! transport), and kills one with SIGKILL and restarts it on its data dir.
//!
//! Checked at the end:
//! - no loss: every job whose synchronous ADDJOB was answered is
//!   delivered and acked (never more than one node is down at once, fewer
//!   than any job's copies); ASYNC jobs are counted apart;
//! - no resurrection: a job delivered again after its ack was answered is
//!   allowed only if a fault longer than RETRY overlapped that time (a
//!   holder cut off longer than RETRY may deliver it again, as in Disque);
//!   every such case is counted and reported;
//! - duplicate deliveries (at-least-once) are counted and reported.
//!
//! The short version runs in CI; `WASQUE_LONG_TESTS=1` repeats the fault
//! schedule three times.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::Value;
use wasque_tests::node::TestNode;
use wasque_tests::resp::{cmd, connect};

const RETRY_SECS: u64 = 3;
const NODE_TIMEOUT_MS: &str = "1500";

#[derive(Default)]
struct Ledger {
    /// Answered adds: id → (body, synchronous, node, answered at).
    added: Mutex<HashMap<String, (String, bool, usize, Instant)>>,
    /// Every delivery: (id, node index, when).
    deliveries: Mutex<Vec<(String, usize, Instant)>>,
    /// When each job's first ACKJOB was answered.
    acked: Mutex<HashMap<String, Instant>>,
    /// Faults: (what, from, to, longer than RETRY).
    faults: Mutex<Vec<(String, Instant, Instant, bool)>>,
}

fn text(v: &Value) -> String {
    match v {
        Value::SimpleString(s) => s.clone(),
        Value::Okay => "OK".into(),
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        other => format!("{other:?}"),
    }
}

/// A tiny deterministic generator (no extra dependency).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

fn node_id(addr: SocketAddr) -> String {
    let mut c = connect(addr).expect("connect");
    let Value::Array(h) = cmd(&mut c, &["HELLO"]).unwrap() else {
        panic!("HELLO")
    };
    text(&h[1])
}

/// The nodes `addr` reaches, itself included (CLUSTER INFO counts the
/// others, as Disque does).
fn reachable(addr: SocketAddr) -> usize {
    let Some(mut c) = connect(addr) else { return 0 };
    let info = cmd(&mut c, &["CLUSTER", "INFO"])
        .map(|v| text(&v))
        .unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("cluster_reachable_nodes:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map_or(0, |others| others + 1)
}

fn wait_all_see_all(addrs: &[SocketAddr], secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if addrs.iter().all(|a| reachable(*a) == addrs.len()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let seen: Vec<usize> = addrs.iter().map(|a| reachable(*a)).collect();
    panic!("cluster did not re-form within {secs} s: reachable per node {seen:?}");
}

fn producer(seed: u64, addrs: Arc<Vec<SocketAddr>>, ledger: Arc<Ledger>, stop: Arc<AtomicBool>) {
    let mut rng = Lcg(seed);
    let mut conns: Vec<Option<redis::Connection>> = addrs.iter().map(|_| None).collect();
    let mut n = 0u64;
    for _ in 0..100_000 {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let i = rng.next(addrs.len());
        if conns[i].is_none() {
            conns[i] = connect(addrs[i]);
        }
        let Some(c) = conns[i].as_mut() else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        n += 1;
        let body = format!("p{seed}-{n}");
        let repl = if n.is_multiple_of(2) { "2" } else { "3" };
        let sync = !n.is_multiple_of(5);
        let retry = RETRY_SECS.to_string();
        let mut args = vec![
            "ADDJOB",
            "q",
            &body,
            "2000",
            "REPLICATE",
            repl,
            "RETRY",
            &retry,
        ];
        if !sync {
            args.push("ASYNC");
        }
        match cmd(c, &args) {
            Ok(v) => {
                let id = text(&v);
                ledger
                    .added
                    .lock()
                    .unwrap()
                    .insert(id, (body, sync, i, Instant::now()));
            }
            Err(e) if e.is_io_error() || e.is_timeout() => conns[i] = None,
            Err(_) => {} // NOREPL while a node is down or cut off
        }
        std::thread::sleep(Duration::from_millis(8));
    }
}

fn worker(
    seed: u64,
    addrs: Arc<Vec<SocketAddr>>,
    ledger: Arc<Ledger>,
    done: Arc<AtomicBool>,
    acks: Arc<AtomicU64>,
) {
    let mut rng = Lcg(seed);
    let mut conns: Vec<Option<redis::Connection>> = addrs.iter().map(|_| None).collect();
    for _ in 0..1_000_000 {
        if done.load(Ordering::Relaxed) {
            break;
        }
        let i = rng.next(addrs.len());
        if conns[i].is_none() {
            conns[i] = connect(addrs[i]);
        }
        let Some(c) = conns[i].as_mut() else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let got = match cmd(c, &["GETJOB", "TIMEOUT", "200", "COUNT", "8", "FROM", "q"]) {
            Ok(Value::Array(jobs)) => jobs,
            Ok(_) => continue,
            Err(_) => {
                conns[i] = None;
                continue;
            }
        };
        let now = Instant::now();
        let mut ids = Vec::new();
        for j in got {
            if let Value::Array(f) = j {
                let id = text(&f[1]);
                ledger.deliveries.lock().unwrap().push((id.clone(), i, now));
                ids.push(id);
            }
        }
        let mut args = vec!["ACKJOB"];
        args.extend(ids.iter().map(String::as_str));
        let mut answered = matches!(cmd(c, &args), Ok(Value::Int(_)));
        if !answered {
            conns[i] = None;
            // No answer (the node died with the ack in hand, perhaps after
            // it had passed it on): the job was delivered and its ack sent,
            // but not confirmed. Send it again elsewhere, as a client that
            // did not hear the answer does: acks are idempotent.
            for k in 1..=3 * addrs.len() {
                let j = (i + k) % addrs.len();
                if let Some(mut c) = connect(addrs[j])
                    && matches!(cmd(&mut c, &args), Ok(Value::Int(_)))
                {
                    answered = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        if answered {
            let at = Instant::now();
            let mut acked = ledger.acked.lock().unwrap();
            for id in ids {
                acked.entry(id).or_insert(at);
                acks.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[test]
fn no_answered_job_is_lost_and_acked_jobs_come_back_only_after_long_faults() {
    let rounds = if std::env::var("WASQUE_LONG_TESTS").is_ok() {
        3
    } else {
        1
    };
    let tmp = tempfile::tempdir().unwrap();
    let dirs: Vec<_> = (0..3).map(|i| tmp.path().join(format!("n{i}"))).collect();
    let extra = [
        "--cluster-node-timeout",
        NODE_TIMEOUT_MS,
        "--enable-debug-command",
    ];
    let mut nodes: Vec<Option<TestNode>> = dirs
        .iter()
        .map(|d| Some(TestNode::start_in(d, &extra)))
        .collect();
    let addrs: Arc<Vec<SocketAddr>> =
        Arc::new(nodes.iter().map(|n| n.as_ref().unwrap().addr).collect());
    let ids: Vec<String> = addrs.iter().map(|a| node_id(*a)).collect();
    for (i, (a, id)) in addrs.iter().zip(&ids).enumerate() {
        eprintln!("n{i}: {a} {id}");
    }
    {
        let mut c = connect(addrs[0]).unwrap();
        for a in &addrs[1..] {
            cmd(
                &mut c,
                &["CLUSTER", "MEET", "127.0.0.1", &a.port().to_string()],
            )
            .unwrap();
        }
    }
    wait_all_see_all(&addrs, 20);

    let started = Instant::now();
    let ledger = Arc::new(Ledger::default());
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicU64::new(0));
    let producers: Vec<_> = (0..2)
        .map(|s| {
            let (a, l, st) = (addrs.clone(), ledger.clone(), stop.clone());
            std::thread::spawn(move || producer(s + 1, a, l, st))
        })
        .collect();
    let workers: Vec<_> = (0..2)
        .map(|s| {
            let (a, l, d, k) = (addrs.clone(), ledger.clone(), done.clone(), acks.clone());
            std::thread::spawn(move || worker(s + 11, a, l, d, k))
        })
        .collect();

    let fault = |what: &str, from: Instant, long: bool| {
        ledger
            .faults
            .lock()
            .unwrap()
            .push((what.to_string(), from, Instant::now(), long));
    };
    let partition = |victim: usize, secs: f64| {
        let others: Vec<&str> = (0..3)
            .filter(|i| *i != victim)
            .map(|i| ids[i].as_str())
            .collect();
        let mut c = connect(addrs[victim]).unwrap();
        let mut args = vec!["DEBUG", "PARTITION"];
        args.extend(others);
        let from = Instant::now();
        assert_eq!(text(&cmd(&mut c, &args).unwrap()), "OK");
        std::thread::sleep(Duration::from_secs_f64(secs));
        cmd(&mut c, &["DEBUG", "HEAL"]).unwrap();
        fault(
            &format!("partition n{victim} {secs}s"),
            from,
            secs >= RETRY_SECS as f64,
        );
    };

    for round in 0..rounds {
        std::thread::sleep(Duration::from_secs(2));
        // Shorter than RETRY and than the node timeout.
        partition(2 - round % 3, 1.0);
        std::thread::sleep(Duration::from_secs(2));
        // Longer than both.
        partition((2 - round % 3 + 1) % 3, 5.0);
        wait_all_see_all(&addrs, 30);
        // kill -9 and restart after longer than RETRY.
        let victim = (round + 1) % 3;
        let from = Instant::now();
        nodes[victim].take().unwrap().kill9();
        std::thread::sleep(Duration::from_secs(RETRY_SECS + 1));
        nodes[victim] = Some(TestNode::start_at(
            &dirs[victim],
            addrs[victim].port(),
            &extra,
        ));
        wait_all_see_all(&addrs, 30);
        fault(&format!("kill -9 n{victim}"), from, true);
    }
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    for p in producers {
        p.join().unwrap();
    }
    // Let the workers drain: every answered synchronous add must be acked.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let missing = {
            let added = ledger.added.lock().unwrap();
            let acked = ledger.acked.lock().unwrap();
            added
                .iter()
                .filter(|(id, (_, sync, ..))| *sync && !acked.contains_key(*id))
                .count()
        };
        if missing == 0 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Give re-deliveries after acks a chance to show up before checking.
    std::thread::sleep(Duration::from_secs(RETRY_SECS + 1));
    done.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }

    let added = ledger.added.lock().unwrap();
    let acked = ledger.acked.lock().unwrap();
    let deliveries = ledger.deliveries.lock().unwrap();
    let faults = ledger.faults.lock().unwrap();
    let sync_total = added.values().filter(|(_, s, ..)| *s).count();
    let lost: Vec<&String> = added
        .iter()
        .filter(|(id, (_, sync, ..))| *sync && !acked.contains_key(*id))
        .map(|(id, _)| id)
        .collect();
    let async_unacked = added
        .iter()
        .filter(|(id, (_, sync, ..))| !*sync && !acked.contains_key(*id))
        .count();
    let mut per_job: HashMap<&str, u32> = HashMap::new();
    let mut after_ack_allowed = 0;
    let mut after_ack_forbidden = Vec::new();
    for (id, node, at) in deliveries.iter() {
        *per_job.entry(id).or_default() += 1;
        if let Some(acked_at) = acked.get(id)
            && at > acked_at
        {
            let covered = faults.iter().any(|(_, from, to, long)| {
                *long && *from <= *at && *to + Duration::from_secs(RETRY_SECS + 2) >= *acked_at
            });
            if covered {
                after_ack_allowed += 1;
            } else {
                after_ack_forbidden.push((id.clone(), *node));
            }
        }
    }
    let duplicates: u32 = per_job.values().map(|n| n.saturating_sub(1)).sum();
    eprintln!(
        "ledger: {} adds answered ({sync_total} synchronous), {} acked, {} deliveries, \
         {duplicates} duplicate deliveries, {after_ack_allowed} re-deliveries after an ack \
         (each during a fault longer than RETRY), {async_unacked} ASYNC jobs not acked, faults: {:?}",
        added.len(),
        acked.len(),
        deliveries.len(),
        faults.iter().map(|f| f.0.clone()).collect::<Vec<_>>(),
    );
    assert!(sync_total > 100, "the load must add a fair number of jobs");
    let delivered: Vec<bool> = lost
        .iter()
        .map(|id| deliveries.iter().any(|(d, ..)| d == *id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} answered jobs lost: {:?} (delivered to a worker: {:?})",
        lost.len(),
        &lost[..lost.len().min(10)],
        &delivered[..delivered.len().min(10)]
    );
    if !after_ack_forbidden.is_empty() {
        // A timeline per job (ms since the test started) to tell which
        // fault, if any, it overlapped.
        let ms = |t: &Instant| t.duration_since(started).as_millis();
        for (id, _) in &after_ack_forbidden {
            let add = added.get(id).map(|(_, sync, n, t)| (*sync, *n, ms(t)));
            let got: Vec<(usize, u128)> = deliveries
                .iter()
                .filter(|(d, ..)| d == id)
                .map(|(_, n, t)| (*n, ms(t)))
                .collect();
            eprintln!(
                "{id}: added (sync, node, at) {add:?}, delivered (node, at) {got:?}, acked at {:?}",
                acked.get(id).map(ms)
            );
        }
        for (what, from, to, long) in faults.iter() {
            eprintln!(
                "fault {what}: {} ms to {} ms (long: {long})",
                ms(from),
                ms(to)
            );
        }
    }
    assert!(
        after_ack_forbidden.is_empty(),
        "acked jobs delivered again with no long fault: {after_ack_forbidden:?}"
    );
}
