//! Executor benchmark (issue 3 §8 a/b): wasque's executor beside a raw
//! wasmtime baseline, in the same run, on the same module.
//!
//! - (a) raw wasmtime, written here with the recipe of the stack notes:
//!   pooling allocator with keep-resident pages and `PAGEMAP_SCAN`, one
//!   `InstancePre`, `Bytes` input pipes, `_start` looked up once, a
//!   current-thread Tokio context per thread; fuel 1e7, a 64 MiB memory cap
//!   and the same epoch ticker as wasque.
//! - (b) wasque's `Executor` through its own API: `submit` (all jobs queued
//!   at once, results drained in batches; and a closed loop of 512 in
//!   flight answering each result), and `run_here` on the caller's threads.
//!
//! Printed first: a throughput table (jobs/s with 1 and 2 threads, medians
//! of interleaved rounds, ratio b/a) and the fuel and epoch overheads on a
//! CPU-bound `fib(25)`. Then a criterion group for single-thread per-job
//! latency. `WASQUE_BENCH_QUICK=1` runs everything with small counts.
//!
//! Run: `cargo bench -p wasque-benches --bench exec`

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::Criterion;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use wasque_benches::raw::{
    EPOCH_TICK, FUEL, MAX_OUTPUT, MAX_STDERR, NODE_MEMORY, Raw, exec_request, in_tokio_context,
    raw_throughput,
};
use wasque_node::exec::{ExecConfig, ExecDone, ExecRequest, Executor};
use wasque_sdk::proto::JobId;

/// Jobs kept in flight through `Executor::submit`.
const WINDOW: usize = 512;

struct Sizes {
    jobs: usize,
    rounds: usize,
    fib_jobs: usize,
    fib_rounds: usize,
}

fn main() {
    let quick = std::env::var("WASQUE_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let sizes = if quick {
        Sizes {
            jobs: 2_000,
            rounds: 1,
            fib_jobs: 2,
            fib_rounds: 1,
        }
    } else {
        Sizes {
            jobs: 20_000,
            rounds: 7,
            fib_jobs: 10,
            fib_rounds: 5,
        }
    };
    let wordcount = std::fs::read(wasque_tests::guests::wasm_path("wordcount"))
        .expect("wordcount guest is readable");
    let fib = std::fs::read(wasque_tests::guests::wasm_path("fib")).expect("fib guest is readable");
    let payload = words_payload(1024);

    println!(
        "executor benchmark: wordcount, {} B payload, {} jobs x {} rounds (medians); pagemap_scan available: {}",
        payload.len(),
        sizes.jobs,
        sizes.rounds,
        wasmtime::PoolingAllocationConfig::is_pagemap_scan_available()
    );
    throughput(&wordcount, &payload, &sizes);
    overheads(&fib, &sizes);

    let mut c = Criterion::default().configure_from_args();
    if quick {
        c = c
            .sample_size(10)
            .warm_up_time(Duration::from_millis(100))
            .measurement_time(Duration::from_millis(300));
    }
    latency(&mut c, &wordcount, &payload);
    c.final_summary();
}

/// About `len` bytes of space-separated words.
fn words_payload(len: usize) -> Bytes {
    const WORDS: [&str; 12] = [
        "lorem",
        "ipsum",
        "dolor",
        "sit",
        "amet",
        "consectetur",
        "adipiscing",
        "elit",
        "sed",
        "do",
        "eiusmod",
        "tempor",
    ];
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

fn expected_count(payload: &[u8]) -> Vec<u8> {
    let n = payload
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .count();
    format!("{n}\n").into_bytes()
}

// ---------------------------------------------------------------------------
// (b) wasque

struct Wasque {
    exec: Executor,
    done: UnboundedReceiver<ExecDone>,
    req: ExecRequest,
    _dir: tempfile::TempDir,
}

impl Wasque {
    fn new(wasm: &[u8], payload: &Bytes, threads: usize, fuel: u64) -> Wasque {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tx, done) = unbounded_channel();
        let cfg = ExecConfig {
            threads,
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
            fuel,
        );
        Wasque {
            exec,
            done,
            req,
            _dir: dir,
        }
    }

    /// `jobs` jobs through `submit`, all queued at once; results drained
    /// from `done` every millisecond (a consumer that batches, so the
    /// executor threads rarely have to wake it); wall time.
    fn submit_all_throughput(&mut self, jobs: usize) -> Duration {
        let t = Instant::now();
        for _ in 0..jobs {
            self.exec.submit(self.req.clone());
        }
        let mut got = 0;
        while got < jobs {
            std::thread::sleep(Duration::from_millis(1));
            while let Ok(d) = self.done.try_recv() {
                assert!(d.result.is_success(), "{:?}", d.result);
                got += 1;
            }
        }
        t.elapsed()
    }

    /// `jobs` jobs through `submit`, `WINDOW` in flight, each result
    /// answered by a new submit (a closed-loop consumer that waits on
    /// `done`); wall time.
    fn submit_throughput(&mut self, jobs: usize) -> Duration {
        let t = Instant::now();
        let mut sent = 0;
        while sent < jobs.min(WINDOW) {
            self.exec.submit(self.req.clone());
            sent += 1;
        }
        let mut got = 0;
        while got < jobs {
            // Wait for one result, then take whatever else is ready, as an
            // async consumer's `recv_many` would: fewer park/unpark rounds.
            let first = self.done.blocking_recv().expect("executor is running");
            let mut batch = vec![first];
            while let Ok(d) = self.done.try_recv() {
                batch.push(d);
            }
            for d in batch {
                assert!(d.result.is_success(), "{:?}", d.result);
                got += 1;
                if sent < jobs {
                    self.exec.submit(self.req.clone());
                    sent += 1;
                }
            }
        }
        t.elapsed()
    }

    /// `jobs` jobs through `run_here` on `threads` caller threads.
    fn run_here_throughput(&self, threads: usize, jobs: usize) -> Duration {
        let t = Instant::now();
        std::thread::scope(|s| {
            for i in 0..threads {
                let n = jobs / threads + usize::from(i < jobs % threads);
                s.spawn(move || {
                    for _ in 0..n {
                        std::hint::black_box(self.exec.run_here(&self.req));
                    }
                });
            }
        });
        t.elapsed()
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn rate(jobs: usize, d: Duration) -> f64 {
    jobs as f64 / d.as_secs_f64()
}

fn throughput(wasm: &[u8], payload: &Bytes, sizes: &Sizes) {
    let want = expected_count(payload);
    let raw = [
        Raw::new(wasm, Some(FUEL), true, 1),
        Raw::new(wasm, Some(FUEL), true, 2),
    ];
    let mut wq = [
        Wasque::new(wasm, payload, 1, FUEL),
        Wasque::new(wasm, payload, 2, FUEL),
    ];
    // Both produce the right answer before anything is timed.
    assert_eq!(in_tokio_context(|| raw[0].run(payload)), want);
    let r = wq[0].exec.run_here(&wq[0].req);
    assert!(r.is_success(), "{r:?}");
    assert_eq!(r.output, want);

    let jobs = sizes.jobs;
    // [raw, submit window, run_here, raw without Tokio context, submit all]
    //   x [1 thread, 2 threads]
    let mut samples: [[Vec<f64>; 2]; 5] = Default::default();
    // Warm-up: fault in pool slots, threads, caches.
    for t in 0..2 {
        raw_throughput(&raw[t], payload, t + 1, jobs / 10, true);
        wq[t].submit_throughput(jobs / 10);
    }
    for _ in 0..sizes.rounds {
        for t in 0..2 {
            let d = raw_throughput(&raw[t], payload, t + 1, jobs, true);
            samples[0][t].push(rate(jobs, d));
            samples[1][t].push(rate(jobs, wq[t].submit_throughput(jobs)));
            samples[2][t].push(rate(jobs, wq[t].run_here_throughput(t + 1, jobs)));
            let d = raw_throughput(&raw[t], payload, t + 1, jobs, false);
            samples[3][t].push(rate(jobs, d));
            samples[4][t].push(rate(jobs, wq[t].submit_all_throughput(jobs)));
        }
    }
    let m = samples.clone().map(|per| per.map(median));
    println!();
    println!(
        "| setup (wordcount, 1 KiB, fuel 1e7, 64 MiB cap, 5 ms epoch tick) | jobs/s, 1 thread | jobs/s, 2 threads | b/a, 1 thread | b/a, 2 threads |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| (a) raw wasmtime (stack recipe) | {:.1}k | {:.1}k | | |",
        m[0][0] / 1e3,
        m[0][1] / 1e3
    );
    println!(
        "| (b) wasque `Executor::submit`, all {jobs} queued, results drained every 1 ms | {:.1}k | {:.1}k | {:.2} | {:.2} |",
        m[4][0] / 1e3,
        m[4][1] / 1e3,
        m[4][0] / m[0][0],
        m[4][1] / m[0][1]
    );
    println!(
        "| (b) wasque `Executor::submit`, {WINDOW} in flight, consumer waits on each result | {:.1}k | {:.1}k | {:.2} | {:.2} |",
        m[1][0] / 1e3,
        m[1][1] / 1e3,
        m[1][0] / m[0][0],
        m[1][1] / m[0][1]
    );
    println!(
        "| (b) wasque `Executor::run_here` | {:.1}k | {:.1}k | {:.2} | {:.2} |",
        m[2][0] / 1e3,
        m[2][1] / 1e3,
        m[2][0] / m[0][0],
        m[2][1] / m[0][1]
    );
    println!(
        "| (a') raw wasmtime, no Tokio context per thread (wasmtime-wasi's global runtime) | {:.1}k | {:.1}k | | |",
        m[3][0] / 1e3,
        m[3][1] / 1e3
    );
    let names = [
        "raw",
        "submit-window",
        "run_here",
        "raw-no-tokio",
        "submit-all",
    ];
    for (name, per) in names.iter().zip(&samples) {
        println!(
            "  samples {name}: 1 thread {:?} | 2 threads {:?}",
            per[0]
                .iter()
                .map(|r| (r / 100.0).round() / 10.0)
                .collect::<Vec<_>>(),
            per[1]
                .iter()
                .map(|r| (r / 100.0).round() / 10.0)
                .collect::<Vec<_>>()
        );
    }
}

/// Fuel and epoch overheads on CPU-bound `fib(25)`, raw wasmtime, against
/// an unlimited run of the same engine settings; wasque's `run_here` (fuel
/// and epoch both on) beside them.
fn overheads(wasm: &[u8], sizes: &Sizes) {
    let payload = Bytes::from_static(b"25");
    let big_fuel = u64::MAX / 2;
    let variants = [
        ("unlimited", Raw::new(wasm, None, false, 1)),
        ("fuel", Raw::new(wasm, Some(big_fuel), false, 1)),
        ("epoch", Raw::new(wasm, None, true, 1)),
        ("fuel + epoch", Raw::new(wasm, Some(big_fuel), true, 1)),
    ];
    let wq = Wasque::new(wasm, &payload, 1, big_fuel);
    let r = wq.exec.run_here(&wq.req);
    assert_eq!(r.output, b"75025\n", "{r:?}");
    let mut per_job: Vec<Vec<f64>> = vec![Vec::new(); variants.len() + 1];
    in_tokio_context(|| {
        for (_, raw) in &variants {
            assert_eq!(raw.run(&payload), b"75025\n");
        }
        for _ in 0..sizes.fib_rounds {
            for (i, (_, raw)) in variants.iter().enumerate() {
                let t = Instant::now();
                for _ in 0..sizes.fib_jobs {
                    std::hint::black_box(raw.run(&payload));
                }
                per_job[i].push(t.elapsed().as_secs_f64() * 1e3 / sizes.fib_jobs as f64);
            }
        }
    });
    for _ in 0..sizes.fib_rounds {
        let t = Instant::now();
        for _ in 0..sizes.fib_jobs {
            std::hint::black_box(wq.exec.run_here(&wq.req));
        }
        per_job[variants.len()].push(t.elapsed().as_secs_f64() * 1e3 / sizes.fib_jobs as f64);
    }
    let m: Vec<f64> = per_job.into_iter().map(median).collect();
    println!();
    println!("| fib(25), 1 thread | ms per job | overhead vs unlimited |");
    println!("|---|---|---|");
    for (i, (name, _)) in variants.iter().enumerate() {
        println!(
            "| raw wasmtime, {name} | {:.2} | {:+.1} % |",
            m[i],
            (m[i] / m[0] - 1.0) * 100.0
        );
    }
    let w = m[variants.len()];
    println!(
        "| wasque `run_here` (fuel + epoch) | {w:.2} | {:+.1} % |",
        (w / m[0] - 1.0) * 100.0
    );
    println!();
}

/// Single-thread per-job latency through criterion.
fn latency(c: &mut Criterion, wasm: &[u8], payload: &Bytes) {
    let raw = Raw::new(wasm, Some(FUEL), true, 1);
    let wq = Wasque::new(wasm, payload, 1, FUEL);
    let mut g = c.benchmark_group("exec/wordcount-1KiB");
    in_tokio_context(|| {
        g.bench_function("a_raw_wasmtime", |b| b.iter(|| raw.run(payload)));
        g.bench_function("b_wasque_run_here", |b| {
            b.iter(|| wq.exec.run_here(&wq.req))
        });
    });
    g.finish();
}
