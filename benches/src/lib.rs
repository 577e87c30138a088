//! Set-up shared by the benchmarks in `benches/benches/`: a node
//! configuration on a free loopback port, a multi-thread runtime, the
//! standard 1 KiB `wordcount` payload, the raw wasmtime baseline and the
//! QUIC echo server that gives the end-to-end bench its transport floor,
//! and a WASI preview 2 component runner (the component bench).

pub mod component;
pub mod echo;
pub mod plot;
pub mod raw;
pub mod sim;
pub mod workload;

use std::path::Path;

use wasque_node::config::Config;

/// A node's defaults on a free port, with `dir` as its data dir, HTTP off
/// and `threads` executor threads.
pub fn node_config(dir: &Path, threads: usize) -> Config {
    let mut cfg = Config::defaults();
    cfg.port = wasque_tests::node::free_port();
    cfg.http_port = None;
    cfg.appendonly = std::env::var_os("WASQUE_BENCH_NO_AOF").is_none();
    cfg.data_dir = dir.to_path_buf();
    cfg.exec_threads = threads;
    cfg
}

/// A multi-thread Tokio runtime with `threads` workers.
pub fn runtime(threads: usize) -> tokio::runtime::Runtime {
    named_runtime(threads, "tokio-rt-worker")
}

/// [`runtime`] with its threads named (a profile by thread tells the
/// node's from the client's).
pub fn named_runtime(threads: usize, name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("runtime")
}

/// 1 KiB of space-separated words: the payload of the `wordcount` benches.
pub fn payload_1k() -> Vec<u8> {
    let words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta"];
    let mut out = Vec::with_capacity(1024);
    let mut i = 0;
    while out.len() < 1024 - 8 {
        out.extend_from_slice(words[i % words.len()].as_bytes());
        out.push(b' ');
        i += 1;
    }
    out.resize(1024, b' ');
    out
}

/// The `q` quantile (0..=1) of sorted values, nearest rank; 0 when empty.
pub fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Resident set size of process `pid`, in KiB, from `/proc` (0 if it is
/// gone or the platform has no `/proc`).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}
