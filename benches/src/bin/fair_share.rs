//! Fair share between tenants, in virtual time on real engines
//! (`wasque_benches::sim`): 1, 10 and 100 nodes.
//!
//!   cargo run --release -p wasque-benches --bin fair_share
//!
//! Two tenants, `heavy` and `light`, submitting 10:1 in job counts.
//!
//! **Backlog**: both submit everything at once, so both always have work
//! waiting: heavy 10x as many jobs, each a tenth of light's fuel (equal
//! total work), over 10 queues against light's one. Measured: each
//! tenant's share of executor time while both wait, against its weight
//! (1:1, then 3:1), and Jain's fairness index over share / weight.
//! Baseline in the same run: the same queues without tenants (named
//! `heavy-q0`, ..., `light-q`), where queues take turns by count.
//!
//! **Stream**: heavy submits at 1.5x the cluster's capacity over 10
//! queues, light at 0.15x over one (10:1 in jobs, same size). Measured:
//! light's p99 wait under that load against its p99 alone, with tenants
//! (fair share) and without (queue turns), and Jain's index over the two
//! tenants' mean wait relative to their waits alone.

use std::fmt::Write as _;

use wasque_benches::percentile;
use wasque_benches::sim::{JobSpec, NodeSpec, Sim, SimReport};
use wasque_benches::workload::Rng;
use wasque_node::engine::{Mode, Policy};

const QUEUES: usize = 10;

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
    sim.set_weight("heavy", weights.0);
    sim.set_weight("light", weights.1);
    sim.run(jobs, 3_600_000)
}

fn is_light(queue: &str) -> bool {
    queue.starts_with("light")
}

/// Both tenants' jobs at t=0 on random nodes: heavy `10 * per_node * n`
/// jobs of 5 ms, light `per_node * n` of 50 ms.
fn backlog(n: usize, tenants: bool, per_node: usize, seed: u64) -> Vec<JobSpec> {
    let (heavy, light) = names(tenants);
    let mut rng = Rng::new(seed);
    let mut jobs = Vec::new();
    for i in 0..per_node * n * 11 {
        let entry = rng.below(n);
        let (queue, work_ms) = if i % 11 == 10 {
            (light.clone(), 50)
        } else {
            (heavy[rng.below(QUEUES)].clone(), 5)
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

/// Executor ms of each tenant among runs started while both had work
/// waiting (before either's last start).
fn shares(r: &SimReport) -> (f64, f64) {
    let last = |light: bool| {
        r.jobs
            .iter()
            .filter(|j| is_light(&j.queue) == light)
            .map(|j| j.started)
            .max()
            .unwrap_or(0)
    };
    let until = last(true).min(last(false));
    let (mut h, mut l) = (0u64, 0u64);
    for j in r.jobs.iter().filter(|j| j.started < until) {
        let ms = j.finished - j.started;
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
    let mut w: Vec<u64> = r
        .jobs
        .iter()
        .filter(|j| is_light(&j.queue) == light)
        .map(|j| j.started - j.submitted)
        .collect();
    w.sort_unstable();
    w
}

fn mean(v: &[u64]) -> f64 {
    v.iter().sum::<u64>() as f64 / v.len().max(1) as f64
}

fn main() {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Backlog: heavy 10x the jobs at a tenth of the fuel, both waiting\n\n| nodes | weights heavy:light | scheduler | heavy share | light share | target heavy | Jain (share/weight) |\n|---|---|---|---|---|---|---|"
    );
    for n in [1usize, 10, 100] {
        let per_node = if n == 100 { 40 } else { 200 };
        for (weights, tenants) in [((1, 1), false), ((1, 1), true), ((3, 1), true)] {
            let r = run(n, tenants, weights, backlog(n, tenants, per_node, 5));
            let (h, l) = shares(&r);
            let target = f64::from(weights.0) / f64::from(weights.0 + weights.1);
            let j = jain(&[h / f64::from(weights.0), l / f64::from(weights.1)]);
            let _ = writeln!(
                out,
                "| {n} | {}:{} | {} | {:.1} % | {:.1} % | {:.0} % | {j:.3} |",
                weights.0,
                weights.1,
                if tenants {
                    "fair share"
                } else {
                    "queue turns (baseline)"
                },
                h * 100.0,
                l * 100.0,
                target * 100.0,
            );
        }
    }
    let _ = writeln!(
        out,
        "\n### Stream: heavy at 1.5x capacity over 10 queues, light at 0.15x over one (20 ms jobs, 60 s)\n\n| nodes | scheduler | light p99 alone ms | light p99 under load ms | ratio | heavy mean wait ms | Jain (mean wait / alone) |\n|---|---|---|---|---|---|---|"
    );
    for n in [1usize, 10, 100] {
        let secs = if n == 100 { 20 } else { 60 };
        for tenants in [false, true] {
            let alone = run(n, tenants, (1, 1), stream(n, tenants, 0.0, 0.15, secs, 9));
            let light_alone = waits(&alone, true);
            let heavy_alone = run(n, tenants, (1, 1), stream(n, tenants, 1.5, 0.0, secs, 9));
            let loaded = run(n, tenants, (1, 1), stream(n, tenants, 1.5, 0.15, secs, 9));
            let (lw, hw) = (waits(&loaded, true), waits(&loaded, false));
            let p_alone = percentile(&light_alone, 0.99).max(1);
            let p_load = percentile(&lw, 0.99);
            let hw_alone = waits(&heavy_alone, false);
            let j = jain(&[
                mean(&lw).max(1.0) / mean(&light_alone).max(1.0),
                mean(&hw).max(1.0) / mean(&hw_alone).max(1.0),
            ]);
            let _ = writeln!(
                out,
                "| {n} | {} | {p_alone} | {p_load} | {:.2}x | {:.0} | {j:.3} |",
                if tenants {
                    "fair share"
                } else {
                    "queue turns (baseline)"
                },
                p_load as f64 / p_alone as f64,
                mean(&hw),
            );
        }
    }
    print!("{out}");
}
