//! End to end through a node over QUIC (issue 3 §8 c): a node with its
//! executor on its own runtime and threads, and a client on another
//! runtime, talking real QUIC over loopback; `wordcount` on a 1 KiB
//! payload, 64 jobs in flight, each added, waited for and acknowledged in
//! one request. Also the cold path: upload + compile + first result of a
//! ~1 MiB module, and the first job after a restart (no recompilation).
//!
//! The raw wasmtime baseline (a) runs first in the same process and run,
//! with the same limits and thread counts, and each end-to-end row gives
//! its ratio to it.
//!
//! `cargo bench -p wasque-benches --bench e2e`; `WASQUE_BENCH_QUICK=1` for
//! a smoke run, `WASQUE_BENCH_THREADS=1` or `2` for one row alone. Prints a table; `benches/README.md` keeps the figures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use wasque_benches::raw::{DEADLINE_MS, FUEL, JOB_MEMORY, Raw, raw_throughput};
use wasque_benches::{named_runtime, node_config, payload_1k, runtime};
use wasque_node::runtime::Node;
use wasque_sdk::proto::{AddJob, LimitsRequest, ModuleHash, Response};
use wasque_sdk::{Client, ClientConfig};

/// Runs `total` jobs with `in_flight` outstanding; returns (jobs/s, histogram in µs).
async fn load(
    client: &Client,
    module: ModuleHash,
    total: usize,
    in_flight: usize,
) -> (f64, Histogram<u64>) {
    let body = Arc::new(payload_1k());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..in_flight {
        let (client, body, next) = (client.clone(), body.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            // Latencies go to a plain vector during the load and into the
            // histogram after it: the measurement stays off the client's
            // CPU per job.
            let mut took = Vec::with_capacity(total / in_flight + 1);
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
                let mut job = AddJob::new("bench", body.to_vec());
                job.module = Some(module);
                job.limits = LimitsRequest {
                    fuel: Some(FUEL),
                    memory_bytes: Some(JOB_MEMORY),
                    deadline_ms: Some(DEADLINE_MS),
                };
                let t = Instant::now();
                let s = client.run(job, 60_000).await.expect("job runs");
                let r = s.result.expect("finished");
                assert!(r.error_class.is_none(), "{}", r.message);
                took.push(t.elapsed().as_micros() as u64);
            }
            took
        }));
    }
    let mut all = Vec::with_capacity(total);
    for t in tasks {
        all.extend(t.await.expect("load task"));
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    for us in all {
        let _ = h.record(us);
    }
    (rate, h)
}

/// The transport floor: the same client and load against a server with
/// the node's QUIC endpoint that answers each job at once with a finished
/// job's reply (`wasque_benches::echo`): no engine, no executor, no store.
/// Client and server each get one runtime thread, as in the rows above.
fn floor(
    data: &std::path::Path,
    reply: Response,
    module: ModuleHash,
    warm: usize,
    total: usize,
    rounds: usize,
) {
    let server_rt = named_runtime(1, "node-rt");
    let addr = server_rt.block_on(async { wasque_benches::echo::start(data, reply) });
    let client_rt = named_runtime(1, "client-rt");
    let client = client_rt.block_on(async {
        let client = Client::connect(ClientConfig::local(&addr.to_string(), data).expect("ca"))
            .await
            .expect("connect");
        load(&client, module, warm, 64).await;
        client
    });
    let mut best: Option<(f64, Histogram<u64>, Cpu)> = None;
    for _ in 0..rounds {
        let (rate, h, cpu) = measured_load(&client_rt, &client, module, total);
        if best.as_ref().is_none_or(|b| rate > b.0) {
            best = Some((rate, h, cpu));
        }
    }
    let (rate, h, cpu) = best.expect("at least one round");
    println!(
        "| transport floor: the same client, QUIC and frames, a server that answers at once (no node) | {total} | 64 | {rate:.0} | {} µs | {} µs | {:.1} µs ({:.1} + {:.1} + 0) | | | | |",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        per_job(cpu.total(), total),
        per_job(cpu.client, total),
        per_job(cpu.node_io, total),
    );
    drop(client);
    drop(client_rt);
    drop(server_rt);
}

/// One measured load of `total` jobs, 64 in flight, on `rt`: jobs/s, the
/// latencies in µs, and the CPU each part spent meanwhile.
fn measured_load(
    rt: &tokio::runtime::Runtime,
    client: &Client,
    module: ModuleHash,
    total: usize,
) -> (f64, Histogram<u64>, Cpu) {
    rt.block_on(async {
        let cpu = Cpu::now();
        let (rate, h) = load(client, module, total, 64).await;
        (rate, h, Cpu::now().since(cpu))
    })
}

/// A synthetic module with about `target` bytes of code, so compile time is
/// that of a real ~1 MiB module rather than of a data segment.
fn big_module(target: usize) -> Vec<u8> {
    let mut wat = String::from(
        "(module\n (import \"wasi_snapshot_preview1\" \"proc_exit\" (func $exit (param i32)))\n (memory (export \"memory\") 1)\n",
    );
    let mut n = 0;
    while wat.len() < target * 6 {
        wat.push_str(&format!(
            " (func $f{n} (param i32) (result i32) (local i32) local.get 0 i32.const {n} i32.add local.tee 1 i32.const 7 i32.mul local.get 1 i32.xor i32.const 13 i32.rotl local.get 0 i32.sub i32.const 3 i32.shr_u local.get 1 i32.add)\n"
        ));
        n += 1;
    }
    wat.push_str(" (func (export \"_start\") i32.const 1 call $f0 drop)\n)\n");
    wat::parse_str(&wat).expect("generated WAT is valid")
}

fn main() {
    let quick = std::env::var_os("WASQUE_BENCH_QUICK").is_some();
    let (warm, total) = if quick {
        (200, 2_000)
    } else {
        (5_000, 100_000)
    };
    let wasm = wasque_tests::guests::wasm("wordcount");
    let dir = tempfile::tempdir().expect("tempdir");

    let payload = bytes::Bytes::from(payload_1k());
    let thread_counts = thread_counts();
    let rounds = if quick {
        1
    } else {
        env_or("WASQUE_BENCH_ROUNDS", 5)
    };

    println!("## wasque end to end over QUIC (wordcount, 1 KiB payload)\n");
    // Raw (a) and end to end (c) take turns, round after round, so a slow
    // spell of this shared machine weighs on both; the row gives the best
    // round of each and every round's ratio. CPU per job is the CPU time
    // of the threads over the measured load: the client's runtime, the
    // node's I/O runtime and its executor threads (steadier than jobs/s).
    println!(
        "| setup | jobs | in flight | jobs/s | p50 | p99 | CPU per job (client + node I/O + executor) | (a) raw, same threads | (a) CPU per job | (c)/(a) | each round |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    // A finished job's reply as the node sends it, for the floor below.
    let mut floor_reply = None;
    for &threads in &thread_counts {
        let raw = Raw::new(&wasm, Some(FUEL), true, threads);
        raw_throughput(&raw, &payload, threads, warm, true);
        let data = dir.path().join(format!("e2e-{threads}"));
        let cfg = node_config(&data, threads);
        // The node's own runtime as `wasque-node` builds and sizes it
        // (io-threads).
        let node_rt = std::sync::Arc::new(
            wasque_node::cli::io_runtime(env_or("WASQUE_BENCH_IO_THREADS", cfg.io_threads))
                .expect("runtime"),
        );
        // A thread inside the runtime, as the binary's is (with one I/O
        // thread the runtime runs its tasks only there).
        let (io_stop, io_thread) =
            wasque_node::cli::drive_io_runtime(node_rt.clone()).expect("I/O thread");
        let node = node_rt.block_on(Node::start(cfg)).expect("node starts");
        let addr = node.quic_addr().to_string();
        // One connection's client: one runtime thread (a second one only
        // adds hand-offs; `WASQUE_BENCH_CLIENT_THREADS` to try more).
        let client_rt = named_runtime(env_or("WASQUE_BENCH_CLIENT_THREADS", 1), "client-rt");
        let (client, module) = client_rt.block_on(async {
            let client = Client::connect(ClientConfig::local(&addr, &data).expect("ca"))
                .await
                .expect("connect");
            let module = client.put_module(&wasm).await.expect("upload").hash;
            load(&client, module, warm, 64).await;
            (client, module)
        });
        if floor_reply.is_none() {
            let mut job = AddJob::new("bench", payload.to_vec());
            job.module = Some(module);
            let status = client_rt
                .block_on(client.run(job, 60_000))
                .expect("job runs");
            floor_reply = Some(Response::Job(Box::new(status)));
        }
        let mut best_raw = (0.0f64, Cpu::default());
        let mut best: Option<(f64, Histogram<u64>, Cpu)> = None;
        let mut ratios = Vec::new();
        for _ in 0..rounds {
            let cpu = Cpu::now();
            let d = raw_throughput(&raw, &payload, threads, total, true);
            let raw_rate = total as f64 / d.as_secs_f64();
            if raw_rate > best_raw.0 {
                best_raw = (raw_rate, Cpu::now().since(cpu));
            }
            let (rate, h, cpu) = measured_load(&client_rt, &client, module, total);
            ratios.push(format!("{:.2}x", rate / raw_rate));
            if best.as_ref().is_none_or(|b| rate > b.0) {
                best = Some((rate, h, cpu));
            }
        }
        let (rate, h, cpu) = best.expect("at least one round");
        println!(
            "| node, {threads} executor thread(s), client in the same process | {total} | 64 | {rate:.0} | {} µs | {} µs | {:.1} µs ({:.1} + {:.1} + {:.1}) | {:.0} | {:.1} µs | {:.2}x | {} |",
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            per_job(cpu.total(), total),
            per_job(cpu.client, total),
            per_job(cpu.node_io, total),
            per_job(cpu.executor, total),
            best_raw.0,
            per_job(best_raw.1.total(), total),
            rate / best_raw.0,
            ratios.join(" ")
        );
        drop(client);
        drop(client_rt);
        node_rt.block_on(node.shutdown());
        let _ = io_stop.send(());
        let _ = io_thread.join();
    }

    if let Some(reply) = floor_reply {
        floor(
            &dir.path().join("floor"),
            reply,
            ModuleHash::of(&wasm),
            warm,
            total,
            rounds,
        );
    }

    if thread_counts.len() == 1 {
        return;
    }
    println!("\n## cold path\n");
    let big = big_module(1 << 20);
    let data = dir.path().join("cold");
    let node_rt = runtime(2);
    let node = node_rt
        .block_on(Node::start(node_config(&data, 2)))
        .expect("node starts");
    let addr = node.quic_addr().to_string();
    let (upload_compile, first_result, hash) = node_rt.block_on(async {
        let client = Client::connect(ClientConfig::local(&addr, &data).expect("ca"))
            .await
            .expect("connect");
        let t = Instant::now();
        let info = client.put_module(&big).await.expect("upload");
        assert!(info.compiled_now);
        let uc = t.elapsed();
        let mut job = AddJob::new("cold", Vec::new());
        job.module = Some(info.hash);
        let s = client.run(job, 60_000).await.expect("runs");
        assert!(s.result.expect("finished").error_class.is_none());
        (uc, t.elapsed(), info.hash)
    });
    node_rt.block_on(node.shutdown());
    println!("| step | time |");
    println!("|---|---|");
    println!("| module size | {} KiB |", big.len() / 1024);
    println!(
        "| upload + validate + compile | {:.1} ms |",
        ms(upload_compile)
    );
    println!(
        "| upload + compile + first result | {:.1} ms |",
        ms(first_result)
    );

    let t = Instant::now();
    let node = node_rt
        .block_on(Node::start(node_config(&data, 2)))
        .expect("node restarts");
    let started = t.elapsed();
    let addr = node.quic_addr().to_string();
    let (first, loaded, compiled) = node_rt.block_on(async {
        let client = Client::connect(ClientConfig::local(&addr, &data).expect("ca"))
            .await
            .expect("connect");
        let mut job = AddJob::new("cold", Vec::new());
        job.module = Some(hash);
        let s = client.run(job, 60_000).await.expect("runs");
        assert!(s.result.expect("finished").error_class.is_none());
        let info = client.node_info().await.expect("info");
        (t.elapsed(), info.modules_loaded, info.modules_compiled)
    });
    node_rt.block_on(node.shutdown());
    println!(
        "| restart: node start (artifact loaded, {loaded} module(s), {compiled} compiled) | {:.1} ms |",
        ms(started)
    );
    println!(
        "| restart: start + connect + first result | {:.1} ms |",
        ms(first)
    );
    let _ = Duration::ZERO;
}

/// CPU time so far of the threads of this process, by part: the client's
/// runtime, the node's I/O runtime, the executor threads, and the rest.
#[derive(Clone, Copy, Default)]
struct Cpu {
    client: Duration,
    node_io: Duration,
    executor: Duration,
    other: Duration,
}

impl Cpu {
    fn now() -> Cpu {
        // The process's own line counts threads that have ended too (the
        // raw rounds' threads); what the named threads do not account for
        // is `other`.
        let mut cpu = Cpu {
            other: stat_cpu(std::path::Path::new("/proc/self/stat"))
                .map_or(Duration::ZERO, |(_, t)| t),
            ..Cpu::default()
        };
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return cpu;
        };
        for task in tasks.flatten() {
            let Some((name, t)) = stat_cpu(&task.path().join("stat")) else {
                continue;
            };
            let part = match name.as_str() {
                n if n.starts_with("client-rt") => &mut cpu.client,
                // The node's runtime (`wasque-io`, as the binary names it);
                // the transport floor's server is `node-rt`.
                n if n.starts_with("wasque-io") || n.starts_with("node-rt") => &mut cpu.node_io,
                n if n.starts_with("wasque-exec") => &mut cpu.executor,
                _ => continue,
            };
            *part += t;
            cpu.other = cpu.other.saturating_sub(t);
        }
        cpu
    }

    fn since(self, start: Cpu) -> Cpu {
        Cpu {
            client: self.client.saturating_sub(start.client),
            node_io: self.node_io.saturating_sub(start.node_io),
            executor: self.executor.saturating_sub(start.executor),
            other: self.other.saturating_sub(start.other),
        }
    }

    fn total(&self) -> Duration {
        self.client + self.node_io + self.executor + self.other
    }
}

/// The name and CPU time (user and system) in a `/proc/.../stat` file.
fn stat_cpu(path: &std::path::Path) -> Option<(String, Duration)> {
    let stat = std::fs::read_to_string(path).ok()?;
    // `pid (comm) state ...`: the name may hold spaces; utime and stime are
    // the 12th and 13th fields after it, in clock ticks.
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(').map_or("", |(_, n)| n).to_string();
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some((name, Duration::from_micros(ticks * 1_000_000 / hz)))
}

/// Microseconds per job.
fn per_job(d: Duration, jobs: usize) -> f64 {
    d.as_secs_f64() * 1e6 / jobs as f64
}

/// Executor thread counts to measure: 1 and 2, or the one that
/// `WASQUE_BENCH_THREADS` names (to profile one row alone; the cold path
/// is left out then).
fn thread_counts() -> Vec<usize> {
    match env_or("WASQUE_BENCH_THREADS", 0) {
        n @ (1 | 2) => vec![n],
        _ => vec![1, 2],
    }
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
