//! The soak run (issue 23): a 3-node cluster under mixed load for a long
//! time, one node killed (SIGKILL) and restarted on its data dir every few
//! minutes, and every 10 s a sample of what would show a leak or a slow
//! decay: each node's RSS, open files and store size, and the p99 of the
//! load's own requests in that window. A healthy node stays flat.
//!
//!   cargo build --release -p wasque-benches -p wasque-tests --bin soak --bin test-wasque-node
//!   target/release/soak [MINUTES=30] [KILL_EVERY_SECS=300]
//!
//! The load: 45 RESP clients loop ADDJOB -> GETJOB -> ACKJOB on plain jobs
//! (Disque's default of 3 copies, RETRY 5 s so a job delivered by a killed
//! node is queued again soon) and 5 QUIC clients run `fib` Wasm jobs, each
//! client on its own node in turn; a client whose node is down (or whose
//! call fails) moves to the next node. Nodes run with their default flags
//! (`appendonly yes`, `appendfsync everysec`).
//!
//! Output: a CSV row per sample (`benches/runs/soak-<stamp>.csv`), a plot
//! (`benches/plots/soak.png`) and a summary comparing the first and the
//! last third of the run: median RSS, open files and store size per node,
//! and the p99s. `--check` makes the run fail when a node's open files or
//! RSS in the last third exceed the first third's by more than a margin
//! (the short CI run uses it, and writes its output to a temp dir; the
//! margin is wide: it catches leaks, not noise).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use plotters::prelude::*;
use wasque_benches::rss_kib;
use wasque_sdk::proto::{AddJob, ModuleHash};
use wasque_sdk::{Client, ClientConfig};
use wasque_tests::guests::wasm;
use wasque_tests::node::{TestNode, form_cluster};
use wasque_tests::resp::{self, Value};

const NODES: usize = 3;
const RESP_CLIENTS: usize = 45;
const WASM_CLIENTS: usize = 5;
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// A killed node stays down this long before its restart.
const DOWN_FOR: Duration = Duration::from_secs(2);

/// What every load thread sees of the cluster.
struct Cluster {
    addrs: Vec<std::net::SocketAddr>,
    up: Vec<AtomicBool>,
    stop: AtomicBool,
    /// Latency of one plain cycle (µs), and of one Wasm run (µs), this
    /// window; swapped out at every sample.
    cycles: Mutex<Histogram<u64>>,
    runs: Mutex<Histogram<u64>>,
    errors: AtomicU64,
}

impl Cluster {
    /// The next node after `from` that is up (`from` itself if it is).
    fn live_from(&self, from: usize) -> usize {
        (0..NODES)
            .map(|k| (from + k) % NODES)
            .find(|i| self.up[*i].load(Ordering::Relaxed))
            .unwrap_or(from)
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

/// One RESP client: add, get, ack, for as long as the run lasts.
fn resp_client(c: Arc<Cluster>, me: usize) {
    let body = format!("soak-{me}-{}", "x".repeat(80));
    let mut at = me % NODES;
    let mut conn = None;
    while !c.stop.load(Ordering::Relaxed) {
        let Some(con) = conn.as_mut() else {
            at = c.live_from(at);
            conn = resp::connect(c.addrs[at]);
            if conn.is_none() {
                at = (at + 1) % NODES;
                std::thread::sleep(Duration::from_millis(100));
            }
            continue;
        };
        let t = Instant::now();
        let ok = (|| -> Option<()> {
            resp::cmd(con, &["ADDJOB", "soak", &body, "0", "RETRY", "5"]).ok()?;
            let got = resp::cmd(con, &["GETJOB", "TIMEOUT", "1000", "FROM", "soak"]).ok()?;
            let Value::Array(jobs) = got else {
                return Some(()); // nothing within the timeout: not an error
            };
            let Some(Value::Array(job)) = jobs.first() else {
                return Some(());
            };
            let id = resp::text(job.get(1)?);
            resp::cmd(con, &["ACKJOB", &id]).ok()?;
            Some(())
        })();
        match ok {
            Some(()) => {
                let us = t.elapsed().as_micros() as u64;
                let _ = c.cycles.lock().map(|mut h| h.record(us.max(1)));
            }
            None => {
                c.errors.fetch_add(1, Ordering::Relaxed);
                conn = None;
                at = (at + 1) % NODES;
            }
        }
    }
}

/// One QUIC client running `fib(20)` jobs, moving on when its node fails.
async fn wasm_client(c: Arc<Cluster>, cfgs: Arc<Vec<ClientConfig>>, module: ModuleHash, me: usize) {
    let mut at = me % NODES;
    let mut client: Option<Client> = None;
    while !c.stop.load(Ordering::Relaxed) {
        let Some(cl) = client.as_ref() else {
            at = c.live_from(at);
            match tokio::time::timeout(Duration::from_secs(5), Client::connect(cfgs[at].clone()))
                .await
            {
                Ok(Ok(cl)) => client = Some(cl),
                _ => {
                    at = (at + 1) % NODES;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            continue;
        };
        let mut job = AddJob::new("soak-wasm", b"20".to_vec());
        job.module = Some(module);
        let t = Instant::now();
        match tokio::time::timeout(Duration::from_secs(30), cl.run(job, 20_000)).await {
            Ok(Ok(s)) if s.result.is_some() => {
                let us = t.elapsed().as_micros() as u64;
                let _ = c.runs.lock().map(|mut h| h.record(us.max(1)));
            }
            _ => {
                c.errors.fetch_add(1, Ordering::Relaxed);
                client = None;
                at = (at + 1) % NODES;
            }
        }
    }
}

fn open_files(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0)
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// One sample: per node (RSS KiB, open files, store bytes), then the
/// window's cycle and run counts and p99s (µs), and errors so far.
#[derive(Clone, Debug)]
struct Sample {
    at_s: f64,
    nodes: Vec<(u64, u64, u64)>,
    cycles: u64,
    cycle_p99_us: u64,
    runs: u64,
    run_p99_us: u64,
    errors: u64,
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let check = args.iter().any(|a| a == "--check");
    let nums: Vec<u64> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let minutes = nums.first().copied().unwrap_or(30);
    let kill_every = Duration::from_secs(nums.get(1).copied().unwrap_or(300));
    let total = Duration::from_secs(minutes * 60);
    if total < SAMPLE_EVERY * 3 {
        bail!("run at least 1 minute (3 samples of 10 s each third is the least to compare)");
    }
    let repo = wasque_tests::guests::repo_root();
    let stamp = std::process::Command::new("date")
        .arg("+%Y%m%d-%H%M%S")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "run".into());

    let tmp = tempfile::tempdir()?;
    let dirs: Vec<PathBuf> = (0..NODES)
        .map(|i| tmp.path().join(format!("n{i}")))
        .collect();
    let started: Vec<TestNode> = dirs.iter().map(|d| TestNode::start_in(d, &[])).collect();
    form_cluster(&started);
    let mut nodes: Vec<Option<TestNode>> = started.into_iter().map(Some).collect();
    let ports: Vec<u16> = nodes
        .iter()
        .map(|n| n.as_ref().map_or(0, |n| n.addr.port()))
        .collect();
    let cfgs: Arc<Vec<ClientConfig>> = Arc::new(
        nodes
            .iter()
            .map(|n| n.as_ref().expect("started").client_config())
            .collect(),
    );
    let cluster = Arc::new(Cluster {
        addrs: nodes
            .iter()
            .map(|n| n.as_ref().expect("started").addr)
            .collect(),
        up: (0..NODES).map(|_| AtomicBool::new(true)).collect(),
        stop: AtomicBool::new(false),
        cycles: Mutex::new(histogram()),
        runs: Mutex::new(histogram()),
        errors: AtomicU64::new(0),
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let module = rt.block_on(async {
        let mut hash = None;
        for cfg in cfgs.iter() {
            let c = Client::connect(cfg.clone()).await?;
            hash = Some(c.put_module(wasm("fib")).await?.hash);
        }
        hash.context("no node took the module")
    })?;

    let mut threads = Vec::new();
    for i in 0..RESP_CLIENTS {
        let c = cluster.clone();
        threads.push(std::thread::spawn(move || resp_client(c, i)));
    }
    let mut tasks = Vec::new();
    for i in 0..WASM_CLIENTS {
        tasks.push(rt.spawn(wasm_client(cluster.clone(), cfgs.clone(), module, i)));
    }

    println!(
        "soak: {minutes} min, a node killed every {} s, {RESP_CLIENTS} RESP + {WASM_CLIENTS} Wasm clients",
        kill_every.as_secs()
    );
    let t0 = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let mut next_sample = SAMPLE_EVERY;
    let mut next_kill = kill_every;
    let mut victim = 0usize;
    while t0.elapsed() < total {
        std::thread::sleep(Duration::from_millis(200));
        if t0.elapsed() >= next_kill {
            next_kill += kill_every;
            let v = victim % NODES;
            victim += 1;
            cluster.up[v].store(false, Ordering::Relaxed);
            if let Some(n) = nodes[v].take() {
                n.kill9();
            }
            println!("{:>7.1} s: node {v} killed", t0.elapsed().as_secs_f64());
            std::thread::sleep(DOWN_FOR);
            nodes[v] = Some(TestNode::start_at(&dirs[v], ports[v], &[]));
            cluster.up[v].store(true, Ordering::Relaxed);
            println!("{:>7.1} s: node {v} back", t0.elapsed().as_secs_f64());
        }
        if t0.elapsed() >= next_sample {
            next_sample += SAMPLE_EVERY;
            let take = |h: &Mutex<Histogram<u64>>| {
                let mut h = h.lock().unwrap_or_else(|p| p.into_inner());
                let out = (h.len(), h.value_at_quantile(0.99));
                h.reset();
                out
            };
            let (cycles, cycle_p99_us) = take(&cluster.cycles);
            let (runs, run_p99_us) = take(&cluster.runs);
            let s = Sample {
                at_s: t0.elapsed().as_secs_f64(),
                nodes: (0..NODES)
                    .map(|i| {
                        let pid = nodes[i].as_ref().map_or(0, |n| n.pid());
                        (
                            rss_kib(pid),
                            open_files(pid),
                            dir_bytes(&dirs[i].join("store")),
                        )
                    })
                    .collect(),
                cycles,
                cycle_p99_us,
                runs,
                run_p99_us,
                errors: cluster.errors.load(Ordering::Relaxed),
            };
            println!(
                "{:>7.1} s: rss MiB {:?}, files {:?}, store MiB {:?}, {} cycles p99 {:.1} ms, {} runs p99 {:.1} ms, {} errors",
                s.at_s,
                s.nodes.iter().map(|n| n.0 / 1024).collect::<Vec<_>>(),
                s.nodes.iter().map(|n| n.1).collect::<Vec<_>>(),
                s.nodes.iter().map(|n| n.2 >> 20).collect::<Vec<_>>(),
                s.cycles,
                s.cycle_p99_us as f64 / 1000.0,
                s.runs,
                s.run_p99_us as f64 / 1000.0,
                s.errors
            );
            samples.push(s);
        }
    }
    cluster.stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    rt.block_on(async {
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(40), t).await;
        }
    });
    for n in nodes.into_iter().flatten() {
        n.kill9();
    }

    // The short checked run (CI) keeps its output out of the repository.
    let out = if check {
        tmp.path().to_path_buf()
    } else {
        repo.join("benches")
    };
    let runs_dir = out.join("runs");
    std::fs::create_dir_all(&runs_dir)?;
    let csv = runs_dir.join(format!("soak-{stamp}.csv"));
    let mut text = String::from("at_s");
    for i in 0..NODES {
        text += &format!(",rss_kib_{i},files_{i},store_bytes_{i}");
    }
    text += ",cycles,cycle_p99_us,runs,run_p99_us,errors\n";
    for s in &samples {
        text += &format!("{:.1}", s.at_s);
        for n in &s.nodes {
            text += &format!(",{},{},{}", n.0, n.1, n.2);
        }
        text += &format!(
            ",{},{},{},{},{}\n",
            s.cycles, s.cycle_p99_us, s.runs, s.run_p99_us, s.errors
        );
    }
    std::fs::write(&csv, text)?;
    println!("samples: {}", csv.display());
    let png = out.join("plots/soak.png");
    std::fs::create_dir_all(out.join("plots"))?;
    if let Err(e) = plot(&samples, &png) {
        println!("no plot: {e}");
    } else {
        println!("plot: {}", png.display());
    }

    // First third against last third. A sample taken while a node was
    // down reads 0 for it: those are left out.
    let third = samples.len() / 3;
    let (first, last) = (&samples[..third], &samples[samples.len() - third..]);
    let mut leaks = Vec::new();
    for i in 0..NODES {
        let pick = |s: &[Sample], f: fn(&(u64, u64, u64)) -> u64| {
            median(
                s.iter()
                    .map(|x| f(&x.nodes[i]))
                    .filter(|v| *v > 0)
                    .collect(),
            )
        };
        let (r0, r1) = (pick(first, |n| n.0), pick(last, |n| n.0));
        let (f0, f1) = (pick(first, |n| n.1), pick(last, |n| n.1));
        let (s0, s1) = (pick(first, |n| n.2), pick(last, |n| n.2));
        println!(
            "node {i}: RSS {} -> {} MiB, open files {f0} -> {f1}, store {} -> {} MiB (median, first third -> last third)",
            r0 / 1024,
            r1 / 1024,
            s0 >> 20,
            s1 >> 20
        );
        // Margins for leaks, not noise: every client's connection may move
        // to one node after kills, plus 50 more files; 1.5x and 64 MiB
        // more memory.
        if f1 > f0 + (RESP_CLIENTS + WASM_CLIENTS) as u64 + 50 {
            leaks.push(format!("node {i}: open files {f0} -> {f1}"));
        }
        if r1 > r0 + r0 / 2 && r1 > r0 + 64 * 1024 {
            leaks.push(format!("node {i}: RSS {} -> {} MiB", r0 / 1024, r1 / 1024));
        }
    }
    let p = |s: &[Sample], f: fn(&Sample) -> u64| median(s.iter().map(f).collect());
    println!(
        "plain cycle p99 {:.1} -> {:.1} ms, Wasm run p99 {:.1} -> {:.1} ms (median of the windows), {} cycles and {} runs in all, {} errors (calls to a node that died)",
        p(first, |s| s.cycle_p99_us) as f64 / 1000.0,
        p(last, |s| s.cycle_p99_us) as f64 / 1000.0,
        p(first, |s| s.run_p99_us) as f64 / 1000.0,
        p(last, |s| s.run_p99_us) as f64 / 1000.0,
        samples.iter().map(|s| s.cycles).sum::<u64>(),
        samples.iter().map(|s| s.runs).sum::<u64>(),
        cluster.errors.load(Ordering::Relaxed)
    );
    if samples.iter().map(|s| s.cycles).sum::<u64>() == 0 {
        bail!("no plain cycle completed");
    }
    if check && !leaks.is_empty() {
        bail!("not flat: {}", leaks.join("; "));
    }
    Ok(())
}

/// Four panels against minutes: RSS, open files, store size per node, and
/// the two p99s.
fn plot(samples: &[Sample], png: &Path) -> Result<()> {
    wasque_benches::plot::font()?;
    let root = BitMapBackend::new(png, (1000, 1100)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((4, 1));
    let xmax = samples.last().map_or(1.0, |s| s.at_s / 60.0).max(0.1);
    let colors = [RED, BLUE, GREEN];
    type Pick = fn(&Sample, usize) -> f64;
    let per_node: [(&str, Pick); 3] = [
        ("RSS (MiB)", |s, i| s.nodes[i].0 as f64 / 1024.0),
        ("open files", |s, i| s.nodes[i].1 as f64),
        ("store (MiB)", |s, i| s.nodes[i].2 as f64 / 1048576.0),
    ];
    for (panel, (title, f)) in panels.iter().zip(per_node) {
        let ymax = samples
            .iter()
            .flat_map(|s| (0..NODES).map(move |i| f(s, i)))
            .fold(1.0f64, f64::max)
            * 1.1;
        let mut chart = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 18))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..xmax, 0.0..ymax)?;
        chart.configure_mesh().x_desc("minutes").draw()?;
        for (i, color) in colors.iter().enumerate() {
            chart
                .draw_series(LineSeries::new(
                    samples.iter().map(|s| (s.at_s / 60.0, f(s, i))),
                    color,
                ))?
                .label(format!("node {i}"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        }
        chart.configure_series_labels().border_style(BLACK).draw()?;
    }
    let ymax = samples
        .iter()
        .map(|s| s.cycle_p99_us.max(s.run_p99_us) as f64 / 1000.0)
        .fold(1.0f64, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(&panels[3])
        .caption("p99 per 10 s window (ms)", ("sans-serif", 18))
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..xmax, 0.0..ymax)?;
    chart.configure_mesh().x_desc("minutes").draw()?;
    chart
        .draw_series(LineSeries::new(
            samples
                .iter()
                .map(|s| (s.at_s / 60.0, s.cycle_p99_us as f64 / 1000.0)),
            &RED,
        ))?
        .label("plain add-get-ack cycle")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
    chart
        .draw_series(LineSeries::new(
            samples
                .iter()
                .map(|s| (s.at_s / 60.0, s.run_p99_us as f64 / 1000.0)),
            &BLUE,
        ))?
        .label("Wasm run (fib 20)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
    chart.configure_series_labels().border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}
