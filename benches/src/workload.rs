//! The heterogeneous workloads and cluster shapes of the scheduling
//! evaluation, made from a seed so every policy sees the same jobs: short
//! and long jobs, mixed priorities, one hot queue, nodes with different
//! executor counts, one slow node.

use crate::sim::{JobSpec, NodeSpec};

/// splitmix64: a small, good, seedable generator (one workload = one seed).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// The queues: `hot` takes most jobs, four cold ones the rest.
pub fn queues() -> Vec<String> {
    ["hot", "cold1", "cold2", "cold3", "cold4"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Short jobs' run time and long jobs' (on a node of speed 1).
pub const SHORT_MS: u64 = 10;
pub const LONG_MS: u64 = 400;
/// Share of long jobs.
pub const LONG_SHARE: f64 = 0.2;
/// Share of jobs on the hot queue.
pub const HOT_SHARE: f64 = 0.7;
/// Priority of the urgent jobs (10 % of all); the others take 0..=5.
pub const URGENT: u8 = 9;

/// Mean run time of a job on a node of speed 1.
pub fn mean_work_ms() -> f64 {
    LONG_SHARE * LONG_MS as f64 + (1.0 - LONG_SHARE) * SHORT_MS as f64
}

/// `n` nodes: executor slots cycle 4, 2, 1, 8; node 2 is slow (a quarter
/// of the speed: a busy host).
pub fn cluster(n: usize) -> Vec<NodeSpec> {
    (0..n)
        .map(|i| NodeSpec {
            slots: [4, 2, 1, 8][i % 4],
            depth: 1,
            speed: if i == 2 { 0.25 } else { 1.0 },
        })
        .collect()
}

/// Slot-equivalents of a cluster (slots times speed).
pub fn capacity(nodes: &[NodeSpec]) -> f64 {
    nodes.iter().map(|n| n.slots as f64 * n.speed).sum()
}

fn job(rng: &mut Rng, at_ms: u64, entry: usize) -> JobSpec {
    let queues = queues();
    let queue = if rng.unit() < HOT_SHARE {
        queues[0].clone()
    } else {
        queues[1 + rng.below(queues.len() - 1)].clone()
    };
    let priority = if rng.unit() < 0.1 {
        URGENT
    } else {
        rng.below(6) as u8
    };
    let work_ms = if rng.unit() < LONG_SHARE {
        LONG_MS
    } else {
        SHORT_MS
    };
    JobSpec {
        at_ms,
        entry,
        queue,
        priority,
        work_ms,
    }
}

/// A batch: `count` jobs submitted to node 0 over the first 100 ms (one
/// client feeding the cluster through one node). Judged by makespan.
pub fn batch(count: usize, seed: u64) -> Vec<JobSpec> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|i| {
            let at = (i as u64 * 100) / count.max(1) as u64;
            job(&mut rng, at, 0)
        })
        .collect()
}

/// A stream: Poisson arrivals at `load` (0..1) of the cluster's capacity
/// for `secs`, each to a random node. Judged by waiting time.
pub fn stream(nodes: &[NodeSpec], load: f64, secs: u64, seed: u64) -> Vec<JobSpec> {
    let mut rng = Rng::new(seed);
    let rate_per_ms = load * capacity(nodes) / mean_work_ms();
    let mut t = 0.0f64;
    let mut out = Vec::new();
    let end = (secs * 1000) as f64;
    while t < end {
        t += -(1.0 - rng.unit()).ln() / rate_per_ms;
        let entry = rng.below(nodes.len());
        out.push(job(&mut rng, t as u64, entry));
    }
    out
}
