//! Component benchmark (issue 22): could the executor take WASI preview 2
//! components at the per-job cost of preview 1 modules? The same Rust
//! `wordcount` source, built once for `wasm32-wasip1` (a core module) and
//! once for `wasm32-wasip2` (a `wasi:cli/command` component), run side by
//! side in one binary, interleaved round by round, all with fuel 1e7, a
//! 64 MiB memory cap, a 5 ms epoch tick and a 10 s deadline, on one thread:
//!
//! - **p1, node**: the module through wasque's `Executor::run_here` (the
//!   node's own preview 1 in `node/src/exec/wasi.rs`);
//! - **p1, wasmtime-wasi**: the module on raw wasmtime with wasmtime-wasi's
//!   preview 1 (the stack recipe of `benches/src/raw.rs`), which tells
//!   wasmtime-wasi's share apart from the component model's;
//! - **p2, component**: the component on wasmtime's component model with
//!   wasmtime-wasi's preview 2 host (`benches/src/component.rs`), set up as
//!   an executor would: one `CommandPre`, a fresh store per job.
//!
//! Printed: compile times, fuel per job, a throughput table (jobs/s,
//! medians of rounds) for a 1 KiB and a 64 KiB payload, then a criterion
//! group for per-job latency. `WASQUE_BENCH_QUICK=1` runs small counts.
//! Needs `rustup target add wasm32-wasip2`.
//!
//! Run: `cargo bench -p wasque-benches --bench component`

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::Criterion;
use tokio::sync::mpsc::unbounded_channel;
use wasque_benches::component::P2;
use wasque_benches::raw::{
    EPOCH_TICK, FUEL, MAX_OUTPUT, MAX_STDERR, NODE_MEMORY, Raw, exec_request, in_tokio_context,
};
use wasque_node::exec::{ExecConfig, ExecRequest, Executor};
use wasque_sdk::proto::JobId;

/// wasque's executor on one thread with the module uploaded.
struct Node {
    exec: Executor,
    req: ExecRequest,
    _dir: tempfile::TempDir,
}

impl Node {
    fn new(wasm: &[u8], payload: &Bytes) -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tx, _done) = unbounded_channel();
        let cfg = ExecConfig {
            threads: 1,
            max_memory_bytes: NODE_MEMORY,
            max_output_bytes: MAX_OUTPUT,
            max_stderr_bytes: MAX_STDERR,
            epoch_tick: EPOCH_TICK,
            node_id: "bench".into(),
            ..ExecConfig::default()
        };
        let exec = Executor::open(cfg, dir.path(), tx).expect("executor opens");
        let hash = exec.put_module(wasm).expect("module accepted").hash;
        let req = exec_request(
            JobId::compose(1_732_000_000_000, 0, 1, false, 3600, 0),
            hash,
            payload.clone(),
            FUEL,
        );
        Node {
            exec,
            req,
            _dir: dir,
        }
    }

    /// Runs the job once; its stdout and fuel used.
    fn run(&self) -> (Vec<u8>, u64) {
        let r = self.exec.run_here(&self.req);
        assert!(r.is_success(), "{r:?}");
        (r.output, r.fuel_used)
    }
}

/// About `len` bytes of words, a newline every ten.
fn words(len: usize) -> Bytes {
    const WORDS: [&str; 7] = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta"];
    let mut s = String::new();
    let mut i = 0;
    while s.len() < len {
        s.push_str(WORDS[i % WORDS.len()]);
        s.push(if i % 10 == 9 { '\n' } else { ' ' });
        i += 1;
    }
    s.truncate(len);
    Bytes::from(s)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `jobs` runs of `f`; jobs per second.
fn rate(jobs: usize, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..jobs {
        f();
    }
    jobs as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let quick = std::env::var("WASQUE_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let (jobs, rounds) = if quick { (1_000, 1) } else { (10_000, 7) };
    let module = wasque_tests::guests::wasm("wordcount");
    let component = wasque_tests::guests::component("wordcount");

    // Compile times (each engine compiles the same bytes again; a node
    // compiles a module once per upload and caches the artifact).
    let t = Instant::now();
    let raw = Raw::new(&module, Some(FUEL), true, 1);
    let p1_compile = t.elapsed();
    let t = Instant::now();
    let p2 = P2::new(&component, FUEL, 1);
    let p2_compile = t.elapsed();
    println!(
        "component benchmark: wordcount, p1 module {} B (compile + link {:.0} ms), p2 component {} B (compile + link {:.0} ms); {jobs} jobs x {rounds} rounds (medians), 1 thread; pagemap_scan available: {}",
        module.len(),
        p1_compile.as_secs_f64() * 1e3,
        component.len(),
        p2_compile.as_secs_f64() * 1e3,
        wasmtime::PoolingAllocationConfig::is_pagemap_scan_available()
    );

    let mut c = Criterion::default().configure_from_args();
    if quick {
        c = c
            .sample_size(10)
            .warm_up_time(Duration::from_millis(100))
            .measurement_time(Duration::from_millis(300));
    }
    println!();
    println!("| wordcount, 1 thread | payload | jobs/s | µs/job | vs p1 node | fuel/job |");
    println!("|---|---|---|---|---|---|");
    for (label, len) in [("1 KiB", 1024), ("64 KiB", 64 << 10)] {
        let payload = words(len);
        let node = Node::new(&module, &payload);
        let want = node.run().0;
        let fuel = in_tokio_context(|| {
            assert_eq!(raw.run(&payload), want, "p1 wasmtime-wasi agrees");
            let (out, p2_fuel) = p2.run(&payload);
            assert_eq!(out, want, "p2 component agrees");
            [node.run().1, 0, p2_fuel]
        });
        // [p1 node, p1 wasmtime-wasi, p2 component]
        let mut samples: [Vec<f64>; 3] = Default::default();
        in_tokio_context(|| {
            // Warm-up: pool slots, caches.
            rate(jobs / 10, || drop(node.run()));
            rate(jobs / 10, || drop(raw.run(&payload)));
            rate(jobs / 10, || drop(p2.run(&payload)));
            for _ in 0..rounds {
                samples[0].push(rate(jobs, || drop(std::hint::black_box(node.run()))));
                samples[1].push(rate(jobs, || drop(std::hint::black_box(raw.run(&payload)))));
                samples[2].push(rate(jobs, || drop(std::hint::black_box(p2.run(&payload)))));
            }
        });
        let names = [
            "p1 module, node executor",
            "p1 module, wasmtime-wasi p1",
            "p2 component, wasmtime-wasi p2",
        ];
        let m = samples.clone().map(median);
        for i in 0..3 {
            println!(
                "| {} | {label} | {:.1}k | {:.1} | {:.2}x | {} |",
                names[i],
                m[i] / 1e3,
                1e6 / m[i],
                m[i] / m[0],
                if i == 1 {
                    "(same module)".to_string()
                } else {
                    fuel[i].to_string()
                },
            );
        }
        for (name, s) in names.iter().zip(&samples) {
            println!(
                "  samples {name}, {label}: {:?}",
                s.iter()
                    .map(|r| (r / 100.0).round() / 10.0)
                    .collect::<Vec<_>>()
            );
        }

        let mut g = c.benchmark_group(format!("component/wordcount-{}", label.replace(' ', "")));
        in_tokio_context(|| {
            g.bench_function("p1_node_run_here", |b| b.iter(|| node.run()));
            g.bench_function("p1_wasmtime_wasi", |b| b.iter(|| raw.run(&payload)));
            g.bench_function("p2_component", |b| b.iter(|| p2.run(&payload)));
        });
        g.finish();
    }
    println!();
    c.final_summary();
}
