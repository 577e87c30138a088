//! Fair share between tenants, in virtual time on real engines
//! (`wasque_benches::sim`): 1, 10 and 100 nodes.
//!
//!   cargo run --release -p wasque-benches --bin fair_share -- [--plots benches/plots] [--depth N] [--fifo] [--no-preempt]
//!
//! Two tenants, `heavy` and `light`, submitting 10:1 in job counts.
//! Nodes of 4 executor threads, each handed `--depth` jobs per thread (4
//! by default, as a real node: the rest wait in the executor's queue and
//! are taken in tenants' order; 1: each starts at once, the model of the
//! runs before the executor queue was simulated). `--fifo`: the threads
//! take queued jobs in arrival order, as a node's did before tenants'
//! order (for comparison). `--no-preempt`: a thread never sets its run
//! aside for a waiting tenant's job (the executor before preemption).
//!
//! **Backlog**: both submit everything at once, so both always have work
//! waiting, heavy 10x as many jobs over 10 queues against light's one:
//! first all of one size (heavy submits 10x the work), then heavy's each
//! a tenth of light's (equal work). Measured: each tenant's share of
//! executor time in the first half of the time both had work, against
//! its weight (1:1, then 3:1), and Jain's fairness index over share /
//! weight; with equal work and weights, Jain's index over the two
//! tenants' mean waits. Baseline in the same run: the same queues
//! without tenants (named `heavy-q0`, ..., `light-q`), where queues take
//! turns by count.
//!
//! **Stream**: heavy submits at 1.5x the cluster's capacity over 10
//! queues, light at 0.15x over one (10:1 in jobs, same size). Measured:
//! light's p99 time from submit to result under that load against its
//! p99 alone (a running heavy job is set aside at the next 5 ms epoch
//! tick for a light one; with `--no-preempt` a light job under load
//! waits for one to end: about one run), and its p99 wait in the queue,
//! with tenants (fair share) and without (queue turns).

use std::fmt::Write as _;

use wasque_benches::percentile;
use wasque_benches::sim::{JobOutcome, JobSpec, NodeSpec, Sim, SimReport};
use wasque_benches::workload::Rng;
use wasque_node::engine::{Mode, Policy};

const QUEUES: usize = 10;
/// Jobs handed to the executor per thread (`--depth`).
static DEPTH: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
/// Executor queues in arrival order (`--fifo`).
static FIFO: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Runs are never set aside (`--no-preempt`).
static NO_PREEMPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn names(tenants: bool) -> (Vec<String>, String) {
    let (h, l) = if tenants {
        ("heavy/q", "light/q".to_string())
    } else {
        ("heavy-q", "light-q".to_string())
    };
    ((0..QUEUES).map(|i| format!("{h}{i}")).collect(), l)
}

fn all_queues(tenants: bool) -> Vec<String> {
    let (mut h, l) = names(tenants);
    h.push(l);
    h
}

fn nodes(n: usize) -> Vec<NodeSpec> {
    (0..n)
        .map(|_| NodeSpec {
            slots: 4,
            depth: DEPTH.get().copied().unwrap_or(4),
            speed: 1.0,
        })
        .collect()
}

fn run(n: usize, tenants: bool, weights: (u32, u32), jobs: Vec<JobSpec>) -> SimReport {
    let specs = nodes(n);
    let mut sim = Sim::new(
        &specs,
        &all_queues(tenants),
        Policy::LeastLoaded,
        Mode::Push,
    );
    if FIFO.load(std::sync::atomic::Ordering::Relaxed) {
        sim.executor_fifo();
    }
    if NO_PREEMPT.load(std::sync::atomic::Ordering::Relaxed) {
        sim.no_preemption();
    }
    sim.set_weight("heavy", weights.0);
    sim.set_weight("light", weights.1);
    sim.run(jobs, 3_600_000)
}

fn is_light(queue: &str) -> bool {
    queue.starts_with("light")
}

/// Both tenants' jobs at t=0 on random nodes: heavy `10 * per_node * n`
/// jobs of `heavy_ms`, light `per_node * n` of 50 ms.
fn backlog(n: usize, tenants: bool, per_node: usize, heavy_ms: u64, seed: u64) -> Vec<JobSpec> {
    let (heavy, light) = names(tenants);
    let mut rng = Rng::new(seed);
    let mut jobs = Vec::new();
    for i in 0..per_node * n * 11 {
        let entry = rng.below(n);
        let (queue, work_ms) = if i % 11 == 10 {
            (light.clone(), 50)
        } else {
            (heavy[rng.below(QUEUES)].clone(), heavy_ms)
        };
        jobs.push(JobSpec {
            at_ms: 0,
            entry,
            queue,
            priority: 0,
            work_ms,
        });
    }
    jobs
}

/// Each tenant's executor time in the first half of the time both had
/// work (before either's last start): runs clipped to that window. A run
/// counts its own time, not the time it was set aside for another.
fn shares(r: &SimReport) -> (f64, f64) {
    shares_in(r, None)
}

/// [`shares`] with each node's own window: the first half of the time
/// both tenants had work on that node. What a node's fair share decides,
/// apart from how evenly placement spread each tenant's work: with the
/// cluster's window, a node whose light work ran out early (or that got
/// little of it) counts heavy-only time until the last node's light work
/// ends.
fn shares_per_node(r: &SimReport) -> (f64, f64) {
    let nodes = r.slots.len();
    shares_in(r, Some(nodes))
}

fn shares_in(r: &SimReport, per_node: Option<usize>) -> (f64, f64) {
    let last = |light: bool, node: Option<usize>| {
        r.jobs
            .iter()
            .filter(|j| is_light(&j.queue) == light && node.is_none_or(|n| j.node == n))
            .map(|j| j.started)
            .max()
            .unwrap_or(0)
    };
    let untils: Vec<u64> = match per_node {
        None => vec![last(true, None).min(last(false, None)) / 2],
        Some(n) => (0..n)
            .map(|i| last(true, Some(i)).min(last(false, Some(i))) / 2)
            .collect(),
    };
    let (mut h, mut l) = (0u64, 0u64);
    for j in &r.jobs {
        let until = if per_node.is_some() {
            untils[j.node]
        } else {
            untils[0]
        };
        if j.started >= until {
            continue;
        }
        let ms = (j.finished.min(until) - j.started).min(j.ran_ms);
        if is_light(&j.queue) {
            l += ms;
        } else {
            h += ms;
        }
    }
    let t = (h + l).max(1) as f64;
    (h as f64 / t, l as f64 / t)
}

fn jain(x: &[f64]) -> f64 {
    let s: f64 = x.iter().sum();
    let q: f64 = x.iter().map(|v| v * v).sum();
    s * s / (x.len() as f64 * q)
}

/// Poisson-ish arrivals over `secs`: heavy at `heavy_load`, light at
/// `light_load` of the cluster's capacity, jobs of 20 ms.
fn stream(
    n: usize,
    tenants: bool,
    heavy_load: f64,
    light_load: f64,
    secs: u64,
    seed: u64,
) -> Vec<JobSpec> {
    let (heavy, light) = names(tenants);
    let mut rng = Rng::new(seed);
    let capacity = (n * 4) as f64 / 20.0; // jobs per ms
    let mut jobs = Vec::new();
    for (load, is_light) in [(heavy_load, false), (light_load, true)] {
        if load <= 0.0 {
            continue;
        }
        let rate = capacity * load;
        let mut t = 0.0;
        while t < (secs * 1000) as f64 {
            t += -(1.0 - rng.unit()).ln() / rate;
            let queue = if is_light {
                light.clone()
            } else {
                heavy[rng.below(QUEUES)].clone()
            };
            jobs.push(JobSpec {
                at_ms: t as u64,
                entry: rng.below(n),
                queue,
                priority: 0,
                work_ms: 20,
            });
        }
    }
    jobs.sort_by_key(|j| j.at_ms);
    jobs
}

fn waits(r: &SimReport, light: bool) -> Vec<u64> {
    sorted(r, light, |j| j.started - j.submitted)
}

/// Submit to result: the wait and the run.
fn latencies(r: &SimReport, light: bool) -> Vec<u64> {
    sorted(r, light, |j| j.finished - j.submitted)
}

fn sorted(r: &SimReport, light: bool, f: impl Fn(&JobOutcome) -> u64) -> Vec<u64> {
    let mut w: Vec<u64> = r
        .jobs
        .iter()
        .filter(|j| is_light(&j.queue) == light)
        .map(f)
        .collect();
    w.sort_unstable();
    w
}

fn mean(v: &[u64]) -> f64 {
    v.iter().sum::<u64>() as f64 / v.len().max(1) as f64
}

fn scheduler(tenants: bool) -> &'static str {
    if tenants {
        "fair share"
    } else {
        "queue turns (baseline)"
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let plots = args
        .iter()
        .position(|a| a == "--plots")
        .and_then(|i| args.get(i + 1))
        .map(std::path::PathBuf::from);
    let depth = args
        .iter()
        .position(|a| a == "--depth")
        .and_then(|i| args.get(i + 1))
        .map_or(Ok(4), |d| d.parse::<usize>())?;
    let _ = DEPTH.set(depth.max(1));
    let fifo = args.iter().any(|a| a == "--fifo");
    FIFO.store(fifo, std::sync::atomic::Ordering::Relaxed);
    let no_preempt = args.iter().any(|a| a == "--no-preempt");
    NO_PREEMPT.store(no_preempt, std::sync::atomic::Ordering::Relaxed);
    println!(
        "executor depth: {} jobs per thread; executor order: {}; preemption: {}\n",
        depth.max(1),
        if fifo {
            "arrival (--fifo)"
        } else {
            "tenants' (ShareQueue)"
        },
        if no_preempt {
            "off (--no-preempt)"
        } else {
            "on"
        }
    );
    let mut out = String::new();
    // Light's share (%) in the first backlog, per node count: baseline
    // 1:1, fair share 1:1, fair share 3:1.
    let mut light_share = [vec![], vec![], vec![]];
    // Light's p99 to result (ms) per node count: alone, baseline, fair.
    let mut stream_p99 = [vec![], vec![], vec![]];
    for (heavy_ms, what) in [
        (50, "heavy 10x the jobs of light, all of 50 ms"),
        (
            5,
            "heavy 10x the jobs at a tenth of the size (5 ms against 50 ms): equal work",
        ),
    ] {
        let _ = writeln!(
            out,
            "### Backlog: {what}\n\n| nodes | weights heavy:light | scheduler | heavy share | light share | target heavy | Jain (share/weight) | mean wait heavy / light ms | Jain (mean waits) | heavy share, each node's window | Jain, each node's window |\n|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for n in [1usize, 10, 100] {
            let per_node = if n == 100 { 100 } else { 200 };
            for (weights, tenants) in [((1, 1), false), ((1, 1), true), ((3, 1), true)] {
                let r = run(
                    n,
                    tenants,
                    weights,
                    backlog(n, tenants, per_node, heavy_ms, 5),
                );
                let (h, l) = shares(&r);
                let (hn, ln) = shares_per_node(&r);
                let jn = jain(&[hn / f64::from(weights.0), ln / f64::from(weights.1)]);
                if heavy_ms == 50 {
                    let k = match (tenants, weights) {
                        (false, _) => 0,
                        (true, (1, 1)) => 1,
                        _ => 2,
                    };
                    light_share[k].push(l * 100.0);
                }
                let target = f64::from(weights.0) / f64::from(weights.0 + weights.1);
                let j = jain(&[h / f64::from(weights.0), l / f64::from(weights.1)]);
                let (wh, wl) = (mean(&waits(&r, false)), mean(&waits(&r, true)));
                // Waits are comparable only where both tenants have the
                // same work and the same weight.
                let jw = if heavy_ms == 5 && weights == (1, 1) {
                    format!("{:.3}", jain(&[wh, wl]))
                } else {
                    "-".to_string()
                };
                let _ = writeln!(
                    out,
                    "| {n} | {}:{} | {} | {:.1} % | {:.1} % | {:.0} % | {j:.3} | {wh:.0} / {wl:.0} | {jw} | {:.1} % | {jn:.3} |",
                    weights.0,
                    weights.1,
                    scheduler(tenants),
                    h * 100.0,
                    l * 100.0,
                    target * 100.0,
                    hn * 100.0,
                );
            }
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "### Stream: heavy at 1.5x capacity over 10 queues, light at 0.15x over one (20 ms jobs)\n\n| nodes | scheduler | light p99 to result alone ms | light p99 to result under load ms | ratio | light p99 queue wait under load ms | heavy share of runs | runs ahead of a set-aside one |\n|---|---|---|---|---|---|---|---|"
    );
    for n in [1usize, 10, 100] {
        let secs = if n == 100 { 20 } else { 60 };
        for tenants in [false, true] {
            let alone = run(n, tenants, (1, 1), stream(n, tenants, 0.0, 0.15, secs, 9));
            let loaded = run(n, tenants, (1, 1), stream(n, tenants, 1.5, 0.15, secs, 9));
            let p_alone = percentile(&latencies(&alone, true), 0.99).max(1);
            let p_load = percentile(&latencies(&loaded, true), 0.99);
            let w_load = percentile(&waits(&loaded, true), 0.99);
            let heavy = loaded.jobs.iter().filter(|j| !is_light(&j.queue)).count();
            if !tenants {
                stream_p99[0].push(p_alone as f64);
            }
            stream_p99[1 + usize::from(tenants)].push(p_load as f64);
            let _ = writeln!(
                out,
                "| {n} | {} | {p_alone} | {p_load} | {:.2}x | {w_load} | {:.1} % | {} |",
                scheduler(tenants),
                p_load as f64 / p_alone as f64,
                100.0 * heavy as f64 / loaded.jobs.len().max(1) as f64,
                loaded.ran_ahead,
            );
        }
    }
    print!("{out}");
    if let Some(dir) = plots {
        wasque_benches::plot::font()?;
        std::fs::create_dir_all(&dir)?;
        let groups: Vec<String> = ["1 node", "10 nodes", "100 nodes"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let [b, f1, f3] = light_share;
        wasque_benches::plot::grouped_bars(
            &dir.join("fair-share-light-share.png"),
            "Light tenant's share of executor time (heavy submits 10x)",
            "% of executor time",
            &groups,
            &[
                ("queue turns, 1:1 (target 50 %)".to_string(), b),
                ("fair share, 1:1 (target 50 %)".to_string(), f1),
                ("fair share, 3:1 (target 25 %)".to_string(), f3),
            ],
            false,
        )?;
        let [a, b, f] = stream_p99;
        wasque_benches::plot::grouped_bars(
            &dir.join("fair-share-stream-p99.png"),
            "Light tenant's p99 time to result, heavy at 1.5x capacity",
            "ms (log)",
            &groups,
            &[
                ("light alone".to_string(), a),
                ("under load, queue turns".to_string(), b),
                ("under load, fair share".to_string(), f),
            ],
            true,
        )?;
    }
    Ok(())
}
