//! Fair share between two tenants on a real node (a `wasque-node` process
//! with its default executor threads, clients over QUIC with tenant
//! tokens): the companion of `fair_share`, which runs the same scenarios
//! in the simulation on 1, 10 and 100 nodes.
//!
//!   cargo build --release -p wasque-benches -p wasque-tests --bin test-wasque-node
//!   target/release/fair_node [SECONDS] [stream]
//!   FAIR_NODE_EXEC_THREADS=1 target/release/fair_node 10 stream   # one executor thread
//!
//! Jobs are the `spin` guest under a fuel limit: each runs until its fuel
//! is spent (ending `out-of-fuel`), so a job's work is exactly its fuel.
//! `heavy` submits ten times as many jobs as `light`, over 10 queues
//! against light's one.
//!
//! **Backlog**: both tenants keep a window of jobs in flight (heavy 160,
//! light 16), so both always wait: first all jobs of one size (heavy
//! keeps 10x the work in flight), then heavy's a tenth of light's fuel
//! (equal work). Measured: each one's share of executor time (the run
//! times of the jobs that finished after a warm-up) against its weight,
//! 1:1 and 3:1, Jain's index over share / weight, and with equal work and
//! weights Jain's index over the two tenants' mean waits. Baseline in the
//! same run: the same queues without tenants (the admin's
//! `heavy-q0`..`heavy-q9` and `light-q`), where queues take turns by count.
//!
//! **Stream**: heavy keeps its backlog; light submits jobs of heavy's
//! size at random times at 15 % of the node's capacity, for three sizes,
//! from its own thread, runtime and connection (another client, as a
//! tenant is).
//! Measured: light's p99 time from submit to result under load against
//! its p99 alone, and its p99 wait (time to result less the run time the
//! node reports).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use wasque_benches::percentile;
use wasque_benches::workload::Rng;
use wasque_sdk::proto::{AddJob, ModuleHash};
use wasque_sdk::{Client, ClientConfig};
use wasque_tests::guests::wasm;
use wasque_tests::node::TestNode;
use wasque_tests::resp::{self, Value};

const ADMIN_PW: &str = "fair-bench";
const QUEUES: usize = 10;
/// Fuel of a light job; heavy's are a tenth.
const LIGHT_FUEL: u64 = 20_000_000;
const HEAVY_FUEL: u64 = LIGHT_FUEL / 10;

/// One finished job: when it was submitted and finished (since the run's
/// start), and how long it ran on the node.
#[derive(Clone, Copy, Debug)]
struct Done {
    submitted_us: u64,
    finished_us: u64,
    run_us: u64,
}

impl Done {
    fn wait_us(&self) -> u64 {
        (self.finished_us - self.submitted_us).saturating_sub(self.run_us)
    }
}

type Log = Arc<Mutex<Vec<Done>>>;

struct Who {
    client: Client,
    module: ModuleHash,
    queues: Vec<String>,
    /// How it connected (light's stream connects again on its own thread).
    cfg: ClientConfig,
}

fn text(v: Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        other => format!("{other:?}"),
    }
}

/// Sets the admin password and adds both tenants with `weights`; returns
/// their tokens (empty without tenants).
fn tenants(node: &TestNode, weights: (u32, u32)) -> anyhow::Result<(String, String)> {
    let mut c = resp::connect(node.addr).ok_or_else(|| anyhow::anyhow!("no RESP connection"))?;
    let _ = resp::cmd(&mut c, &["CONFIG", "SET", "requirepass", ADMIN_PW]);
    let _ = resp::cmd(&mut c, &["AUTH", ADMIN_PW]);
    let mut add = |name: &str, w: u32| -> anyhow::Result<String> {
        match resp::cmd(&mut c, &["TENANT", "ADD", name, "weight", &w.to_string()]) {
            Ok(Value::Array(v)) if v.len() > 2 => Ok(text(v[2].clone())),
            other => anyhow::bail!("TENANT ADD {name}: {other:?}"),
        }
    };
    Ok((add("heavy", weights.0)?, add("light", weights.1)?))
}

async fn connect(node: &TestNode, token: Option<String>, heavy: bool) -> anyhow::Result<Who> {
    let tenants = token.is_some();
    let mut cfg: ClientConfig = node.client_config();
    cfg.token = token;
    let client = Client::connect(cfg.clone()).await?;
    let module = client.put_module(wasm("spin")).await?.hash;
    let queues = match (heavy, tenants) {
        (true, true) => (0..QUEUES).map(|i| format!("q{i}")).collect(),
        (true, false) => (0..QUEUES).map(|i| format!("heavy-q{i}")).collect(),
        (false, true) => vec!["q".to_string()],
        (false, false) => vec!["light-q".to_string()],
    };
    Ok(Who {
        client,
        module,
        queues,
        cfg,
    })
}

/// Runs `stream` for `who` on its own OS thread, runtime and connection,
/// after `start_after`: light is another client of the node, as a tenant
/// is, not tasks queued behind heavy's 160 in this process's runtime (on
/// 2 cores that queueing was part of what light's 0.25 ms jobs waited).
fn stream_apart(
    who: &Who,
    per_sec: f64,
    fuel: u64,
    start_after: Duration,
    until: Duration,
) -> std::thread::JoinHandle<anyhow::Result<Vec<Done>>> {
    let (cfg, queues) = (who.cfg.clone(), who.queues.clone());
    std::thread::spawn(move || {
        wasque_node::thread_class::latency();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let client = Client::connect(cfg.clone()).await?;
            let module = client.put_module(wasm("spin")).await?.hash;
            let who = Arc::new(Who {
                client,
                module,
                queues,
                cfg,
            });
            tokio::time::sleep(start_after).await;
            let log: Log = Default::default();
            stream(who, per_sec, fuel, Instant::now(), until, log.clone()).await;
            let done = log.lock().await.clone();
            Ok(done)
        })
    })
}

/// Waits for a thread of `stream_apart` without blocking the runtime.
async fn joined(
    h: std::thread::JoinHandle<anyhow::Result<Vec<Done>>>,
) -> anyhow::Result<Vec<Done>> {
    tokio::task::spawn_blocking(move || h.join())
        .await?
        .map_err(|_| anyhow::anyhow!("light's stream thread panicked"))?
}

/// Runs one spin job of `fuel` in `queue`; logs it.
async fn one(who: Arc<Who>, queue: String, fuel: u64, t0: Instant, log: Log) {
    let mut job = AddJob::new(queue, Vec::new());
    job.module = Some(who.module);
    job.limits.fuel = Some(fuel);
    job.replicate = Some(1);
    let submitted_us = t0.elapsed().as_micros() as u64;
    if let Ok(s) = who.client.run(job, 120_000).await
        && let Some(r) = s.result
    {
        let finished_us = t0.elapsed().as_micros() as u64;
        log.lock().await.push(Done {
            submitted_us,
            finished_us,
            run_us: r.duration_us,
        });
    }
}

/// Keeps `window` jobs of `fuel` in flight over `who`'s queues until
/// `until`.
async fn backlog(who: Arc<Who>, window: usize, fuel: u64, t0: Instant, until: Duration, log: Log) {
    let mut tasks = Vec::new();
    for w in 0..window {
        let (who, log) = (who.clone(), log.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(w as u64 + 1);
            while t0.elapsed() < until {
                let q = who.queues[rng.below(who.queues.len())].clone();
                one(who.clone(), q, fuel, t0, log.clone()).await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Submits jobs of `fuel` at random times, `per_sec` on average, until
/// `until`, then waits for them.
async fn stream(who: Arc<Who>, per_sec: f64, fuel: u64, t0: Instant, until: Duration, log: Log) {
    let mut rng = Rng::new(77);
    let mut tasks = Vec::new();
    let mut at = 0.0f64;
    loop {
        at += -(1.0 - rng.unit()).ln() / per_sec;
        if at >= until.as_secs_f64() {
            break;
        }
        let due = t0 + Duration::from_secs_f64(at);
        tokio::time::sleep_until(due.into()).await;
        let q = who.queues[0].clone();
        tasks.push(tokio::spawn(one(who.clone(), q, fuel, t0, log.clone())));
    }
    for t in tasks {
        let _ = t.await;
    }
}

fn run_us_after(log: &[Done], from_us: u64, until_us: u64) -> u64 {
    log.iter()
        .filter(|d| d.finished_us >= from_us && d.finished_us <= until_us)
        .map(|d| d.run_us)
        .sum()
}

fn jain(x: &[f64]) -> f64 {
    let s: f64 = x.iter().sum();
    let q: f64 = x.iter().map(|v| v * v).sum();
    s * s / (x.len() as f64 * q)
}

fn waits(log: &[Done]) -> Vec<u64> {
    let mut w: Vec<u64> = log.iter().map(Done::wait_us).collect();
    w.sort_unstable();
    w
}

fn mean(v: &[u64]) -> f64 {
    v.iter().sum::<u64>() as f64 / v.len().max(1) as f64
}

/// A fresh node, with tenants (weights) or without.
async fn setup(weights: Option<(u32, u32)>) -> anyhow::Result<(TestNode, Arc<Who>, Arc<Who>)> {
    // FAIR_NODE_EXEC_THREADS=n runs the node with n executor threads
    // instead of its default (one per core).
    let threads = std::env::var("FAIR_NODE_EXEC_THREADS").ok();
    let args: Vec<&str> = match &threads {
        Some(n) => vec!["--exec-threads", n],
        None => vec![],
    };
    let node = TestNode::start(&args);
    let (ht, lt) = match weights {
        Some(w) => {
            let (h, l) = tenants(&node, w)?;
            (Some(format!("heavy:{h}")), Some(format!("light:{l}")))
        }
        None => (None, None),
    };
    let heavy = Arc::new(connect(&node, ht, true).await?);
    let light = Arc::new(connect(&node, lt, false).await?);
    Ok((node, heavy, light))
}

async fn backlog_row(
    weights: Option<(u32, u32)>,
    heavy_fuel: u64,
    secs: u64,
) -> anyhow::Result<String> {
    let (node, heavy, light) = setup(weights).await?;
    let (hl, ll): (Log, Log) = Default::default();
    let t0 = Instant::now();
    let until = Duration::from_secs(secs);
    let h = tokio::spawn(backlog(heavy, 160, heavy_fuel, t0, until, hl.clone()));
    let l = tokio::spawn(backlog(light, 16, LIGHT_FUEL, t0, until, ll.clone()));
    let _ = tokio::join!(h, l);
    drop(node);
    let (hl, ll) = (hl.lock().await.clone(), ll.lock().await.clone());
    // While both surely wait: after a warm-up, before the windows drain.
    let (from, to) = (2_000_000, secs * 1_000_000);
    let (h, l) = (run_us_after(&hl, from, to), run_us_after(&ll, from, to));
    let t = (h + l).max(1) as f64;
    let (hs, ls) = (h as f64 / t, l as f64 / t);
    let (wh, wl) = weights.unwrap_or((1, 1));
    let target = f64::from(wh) / f64::from(wh + wl);
    let j = jain(&[hs / f64::from(wh), ls / f64::from(wl)]);
    let in_window = |log: &[Done]| -> Vec<u64> {
        let mut w: Vec<u64> = log
            .iter()
            .filter(|d| d.finished_us >= from && d.finished_us <= to)
            .map(Done::wait_us)
            .collect();
        w.sort_unstable();
        w
    };
    let (mh, ml) = (mean(&in_window(&hl)), mean(&in_window(&ll)));
    // Waits are comparable where both keep the same work in flight and
    // have the same weight.
    let jw = if heavy_fuel == HEAVY_FUEL && wh == wl {
        format!("{:.3}", jain(&[mh, ml]))
    } else {
        "-".to_string()
    };
    Ok(format!(
        "| {wh}:{wl} | {} | {} / {} | {:.1} % | {:.1} % | {:.0} % | {j:.3} | {:.0} / {:.0} | {jw} |",
        scheduler(weights.is_some()),
        hl.len(),
        ll.len(),
        hs * 100.0,
        ls * 100.0,
        target * 100.0,
        mh / 1000.0,
        ml / 1000.0,
    ))
}

/// Jobs per second the node runs of heavy's size, both slots busy.
async fn capacity() -> anyhow::Result<f64> {
    let (node, heavy, _) = setup(None).await?;
    let log: Log = Default::default();
    let t0 = Instant::now();
    backlog(
        heavy,
        32,
        HEAVY_FUEL,
        t0,
        Duration::from_secs(4),
        log.clone(),
    )
    .await;
    drop(node);
    let log = log.lock().await;
    let n = log.iter().filter(|d| d.finished_us >= 1_000_000).count();
    Ok(n as f64 / 3.0)
}

/// `cap`: jobs per second of heavy's size the node runs.
async fn stream_row(tenants: bool, secs: u64, cap: f64, fuel: u64) -> anyhow::Result<String> {
    let weights = tenants.then_some((1, 1));
    let until = Duration::from_secs(secs);
    let light_rate = cap * 0.15 * HEAVY_FUEL as f64 / fuel as f64;
    // Light alone.
    let (node, _, light) = setup(weights).await?;
    let la = joined(stream_apart(
        &light,
        light_rate,
        fuel,
        Duration::ZERO,
        until,
    ))
    .await?;
    drop(node);
    // Both; light starts once heavy's backlog stands.
    let (node, heavy, light) = setup(weights).await?;
    let hl: Log = Default::default();
    let t0 = Instant::now();
    let h = tokio::spawn(backlog(heavy, 160, fuel, t0, until, hl.clone()));
    let l = stream_apart(
        &light,
        light_rate,
        fuel,
        Duration::from_secs(1),
        until - Duration::from_secs(1),
    );
    let (_, ll) = tokio::join!(h, joined(l));
    drop(node);
    let ll = ll?;
    let hl = hl.lock().await.clone();
    let p_alone = percentile(&latencies(&la), 0.99).max(1);
    let p_load = percentile(&latencies(&ll), 0.99);
    let w_load = percentile(&waits(&ll), 0.99);
    Ok(format!(
        "| {fuel} | {} | {} | {:.2} | {:.2} | {:.2}x | {:.2} | {} |",
        scheduler(tenants),
        ll.len(),
        p_alone as f64 / 1000.0,
        p_load as f64 / 1000.0,
        p_load as f64 / p_alone as f64,
        w_load as f64 / 1000.0,
        hl.len(),
    ))
}

fn scheduler(tenants: bool) -> &'static str {
    if tenants {
        "fair share"
    } else {
        "queue turns (baseline)"
    }
}

/// Submit to result: the wait and the run.
fn latencies(log: &[Done]) -> Vec<u64> {
    let mut w: Vec<u64> = log.iter().map(|d| d.finished_us - d.submitted_us).collect();
    w.sort_unstable();
    w
}

fn main() -> anyhow::Result<()> {
    let secs: u64 = match std::env::args().nth(1) {
        Some(s) => s.parse()?,
        None => 15,
    };
    // `stream` as the second argument: only the stream scenarios.
    let stream_only = std::env::args().nth(2).as_deref() == Some("stream");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .on_thread_start(wasque_node::thread_class::latency)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let backlogs = if stream_only { 0 } else { 2 };
        for (heavy_fuel, what) in [
            (LIGHT_FUEL, "all jobs of fuel {LIGHT_FUEL}: heavy keeps 10x the work in flight"),
            (HEAVY_FUEL, "heavy's jobs of fuel {HEAVY_FUEL}, light's of {LIGHT_FUEL}: equal work in flight"),
        ]
        .into_iter()
        .take(backlogs)
        {
            let what = what
                .replace("{LIGHT_FUEL}", &LIGHT_FUEL.to_string())
                .replace("{HEAVY_FUEL}", &HEAVY_FUEL.to_string());
            println!(
                "### Backlog on one node, heavy 160 jobs in flight over 10 queues, light 16 over one; {what}; {secs} s\n"
            );
            println!(
                "| weights heavy:light | scheduler | jobs heavy / light | heavy share | light share | target heavy | Jain (share/weight) | mean wait heavy / light ms | Jain (mean waits) |\n|---|---|---|---|---|---|---|---|---|"
            );
            for w in [None, Some((1, 1)), Some((3, 1))] {
                println!("{}", backlog_row(w, heavy_fuel, secs).await?);
            }
            println!();
        }
        let cap = capacity().await?;
        println!(
            "### Stream on one node: heavy keeps 160 jobs in flight over 10 queues, light submits at random times at 15 % of the node's capacity ({cap:.0} jobs/s of fuel {HEAVY_FUEL}) to one queue; jobs of one size; {secs} s\n"
        );
        println!(
            "| fuel per job | scheduler | light jobs | light p99 to result alone ms | light p99 to result under load ms | ratio | light p99 queue wait under load ms | heavy jobs |\n|---|---|---|---|---|---|---|---|"
        );
        for fuel in [HEAVY_FUEL, LIGHT_FUEL, LIGHT_FUEL * 10] {
            for tenants in [false, true] {
                println!("{}", stream_row(tenants, secs, cap, fuel).await?);
            }
        }
        anyhow::Ok(())
    })
}
