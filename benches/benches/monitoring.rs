//! What monitoring costs, and how the dashboard copes with a deep queue
//! (issue 8 §4), all in one run:
//!
//! 0. The same cost without sockets or threads, which a busy 2-core
//!    machine cannot blur: the engine driven in-process through a job's
//!    whole life (add, run order, result, ack), with events off, and with
//!    events on and every event handed to a `Monitor` as the driver does.
//!    Best of 7 interleaved runs, ns per job.
//! 1. Job throughput of one node over QUIC (wordcount, 1 KiB payload, 64
//!    jobs in flight, add + wait + ack in one request, as `e2e`) with HTTP
//!    off (no metrics, no events built at all), with HTTP on (metrics and
//!    job events counted), and with HTTP on and an event-feed client
//!    reading. Interleaved rounds, medians.
//! 2. A node holding 100,000 queued jobs: API answer times (`/api/cluster`,
//!    `/api/queues`, `/api/jobs?limit=50`, `/metrics`), and the dashboard
//!    in headless Chromium (`tests/browser/dashboard.mjs measure`): time to
//!    the node row, the queue row and the live feed, and its JS heap.
//!
//! `cargo bench -p wasque-benches --bench monitoring`;
//! `WASQUE_BENCH_QUICK=1` for a smoke run. Prints markdown tables;
//! `benches/README.md` keeps the figures.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasque_benches::{payload_1k, runtime};
use wasque_node::api::{Command, Reply};
use wasque_node::config::Config;
use wasque_node::engine::{Effect, Engine, EngineConfig, RequestId};
use wasque_node::monitor::Monitor;
use wasque_node::runtime::Node;
use wasque_sdk::proto::{AddJob, JobResult, ModuleHash};
use wasque_sdk::{Client, ClientConfig};
use wasque_tests::http::{self, EventStream};

fn node_config(dir: &Path, http: bool) -> Config {
    let mut cfg = wasque_benches::node_config(dir, 2);
    cfg.http_port = http.then_some(0);
    cfg
}

/// Runs `total` jobs with 64 outstanding; returns jobs/s.
async fn load(client: &Client, module: ModuleHash, total: usize) -> f64 {
    let body = Arc::new(payload_1k());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (client, body, next) = (client.clone(), body.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let mut job = AddJob::new("bench", body.to_vec());
                job.module = Some(module);
                let s = client.run(job, 60_000).await.expect("job runs");
                assert!(s.result.expect("finished").error_class.is_none());
            }
        }));
    }
    for t in tasks {
        t.await.expect("load task");
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// A feed client reading every event until `stop`; counts events.
fn feed_reader(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    seen: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let Ok(mut feed) = EventStream::open(addr, "/api/events") else {
            return;
        };
        while !stop.load(Ordering::Relaxed) {
            if feed
                .next(Instant::now() + Duration::from_millis(200))
                .is_some()
            {
                seen.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
}

/// ns per job through the engine alone (and the monitor, with `events`).
fn engine_only(jobs: u64, events: bool) -> f64 {
    let mut e = Engine::new(EngineConfig {
        exec_slots: 64,
        events,
        ..EngineConfig::default()
    });
    let monitor = Monitor::new();
    let module = ModuleHash::of(b"bench module");
    e.handle_module_added(module, 1);
    let body = payload_1k();
    let now = 1_700_000_000_000u64;
    let started = Instant::now();
    let mut req = 0;
    let mut runs = Vec::with_capacity(64);
    let mut done = Vec::with_capacity(64);
    let drain = |e: &mut Engine, runs: &mut Vec<_>, done: &mut Vec<_>| {
        while let Some(fx) = e.poll_effect() {
            match fx {
                Effect::Run(r) => runs.push((r.job, r.attempt)),
                Effect::Reply {
                    reply: Reply::JobAdded(id),
                    ..
                } => done.push(id),
                Effect::Event(ev) => monitor.job_event(now, ev),
                _ => {}
            }
        }
    };
    for i in 0..jobs {
        req += 1;
        let mut a = AddJob::new("bench", body.clone());
        a.module = Some(module);
        e.handle_command(now + i / 1000, RequestId(req), Command::AddJob(Box::new(a)));
        drain(&mut e, &mut runs, &mut done);
        for (job, attempt) in runs.drain(..) {
            let r = JobResult {
                exit_code: Some(0),
                error_class: None,
                message: String::new(),
                output: b"120\n".to_vec(),
                stderr: Vec::new(),
                fuel_used: 5_000,
                duration_us: 9,
                node: String::new(),
            };
            e.handle_exec_done(now + i / 1000, job, attempt, r);
        }
        drain(&mut e, &mut runs, &mut done);
        if !done.is_empty() {
            req += 1;
            e.handle_command(
                now + i / 1000,
                RequestId(req),
                Command::Ack {
                    ids: std::mem::take(&mut done),
                    fast: false,
                },
            );
            drain(&mut e, &mut runs, &mut done);
        }
    }
    started.elapsed().as_nanos() as f64 / jobs as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::var_os("WASQUE_BENCH_QUICK").is_some();
    let (warm, total, rounds, queued) = if quick {
        (200, 2_000, 1, 5_000)
    } else {
        (3_000, 40_000, 5, 100_000)
    };
    let wasm = wasque_tests::guests::wasm("wordcount");
    let dir = tempfile::tempdir().expect("tempdir");

    // ---- 0. engine alone, events off / on + monitor ---------------------
    let n = if quick { 20_000 } else { 200_000 };
    let (mut off_ns, mut on_ns) = (f64::MAX, f64::MAX);
    for _ in 0..7 {
        off_ns = off_ns.min(engine_only(n, false));
        on_ns = on_ns.min(engine_only(n, true));
    }
    println!(
        "## Monitoring cost in the engine and driver, no I/O ({n} jobs: add, run order, result, ack; best of 7)\n"
    );
    println!("| setup | ns per job | jobs/s on one core |");
    println!("|---|---|---|");
    println!("| events off | {off_ns:.0} | {:.0} |", 1e9 / off_ns);
    println!(
        "| events on, each counted by the monitor | {on_ns:.0} | {:.0} |",
        1e9 / on_ns
    );
    println!(
        "| monitoring's share | +{:.0} ns | {:+.1} % |\n",
        on_ns - off_ns,
        (on_ns / off_ns - 1.0) * 100.0
    );

    // ---- 1. throughput with and without monitoring --------------------
    #[derive(Clone, Copy, PartialEq)]
    enum Setup {
        Off,
        On,
        OnWithFeed,
    }
    let setups = [Setup::Off, Setup::On, Setup::OnWithFeed];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); setups.len()];
    let mut feed_events = 0;
    for round in 0..rounds {
        for (i, setup) in setups.iter().enumerate() {
            let data = dir.path().join(format!("tp-{round}-{i}"));
            let node_rt = runtime(2);
            let node = node_rt
                .block_on(Node::start(node_config(&data, *setup != Setup::Off)))
                .expect("node starts");
            let addr = node.quic_addr().to_string();
            let stop = Arc::new(AtomicBool::new(false));
            let seen = Arc::new(AtomicU64::new(0));
            let reader = (*setup == Setup::OnWithFeed)
                .then(|| {
                    node.http_addr()
                        .map(|a| feed_reader(a, stop.clone(), seen.clone()))
                })
                .flatten();
            let client_rt = runtime(2);
            let rate = client_rt.block_on(async {
                let client = Client::connect(ClientConfig::local(&addr, &data).expect("ca"))
                    .await
                    .expect("connect");
                let module = client.put_module(&wasm).await.expect("upload").hash;
                load(&client, module, warm).await;
                load(&client, module, total).await
            });
            stop.store(true, Ordering::Relaxed);
            if let Some(r) = reader {
                let _ = r.join();
                feed_events = feed_events.max(seen.load(Ordering::Relaxed));
            }
            rates[i].push(rate);
            drop(client_rt);
            node_rt.block_on(node.shutdown());
        }
    }
    let off = median(rates[0].clone());
    println!(
        "## Monitoring cost on job throughput (wordcount, 1 KiB, 64 in flight, 2 executor threads)\n"
    );
    println!("| setup | jobs/s (median of {rounds}) | vs off | all rounds |");
    println!("|---|---|---|---|");
    for (i, name) in [
        "HTTP off (no metrics, no events)",
        "HTTP on: metrics + job events counted",
        "HTTP on + one event-feed client reading",
    ]
    .iter()
    .enumerate()
    {
        let m = median(rates[i].clone());
        let all: Vec<String> = rates[i].iter().map(|r| format!("{r:.0}")).collect();
        println!("| {name} | {m:.0} | {:.3}x | {} |", m / off, all.join(", "));
    }
    println!(
        "\n(feed client received up to {feed_events} events in one round: job events are capped per client, ticks once a second)\n"
    );

    // ---- 2. a deep queue: API answer times and the dashboard ----------
    let data = dir.path().join("deep");
    let node_rt = runtime(2);
    let node = node_rt
        .block_on(Node::start(node_config(&data, true)))
        .expect("node starts");
    let addr = node.quic_addr().to_string();
    let http_addr = node.http_addr().expect("http on");
    let t = Instant::now();
    node_rt.block_on(async {
        let client = Client::connect(ClientConfig::local(&addr, &data).expect("ca"))
            .await
            .expect("connect");
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (client, next) = (client.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < queued {
                    client
                        .add_job(AddJob::new("deep", vec![b'x'; 100]))
                        .await
                        .expect("add");
                }
            }));
        }
        for t in tasks {
            t.await.expect("add task");
        }
    });
    let fill = t.elapsed();
    println!(
        "## A node holding {queued} queued jobs (plain, 100-byte bodies; filled in {:.1} s)\n",
        fill.as_secs_f64()
    );
    println!("| request | median of 7 | bytes |");
    println!("|---|---|---|");
    for path in [
        "/api/cluster",
        "/api/queues",
        "/api/jobs?limit=50",
        "/api/jobs?state=queued&limit=50",
        "/metrics",
        "/",
    ] {
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..7 {
            let t = Instant::now();
            let r = http::get(http_addr, path).expect("GET");
            assert_eq!(r.status, 200, "{path}");
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            size = r.body.len();
        }
        println!("| `GET {path}` | {:.2} ms | {size} |", median(times));
    }

    let browser_dir = wasque_tests::guests::repo_root().join("tests/browser");
    let have_browser = Path::new("/usr/bin/chromium").exists()
        && browser_dir.join("node_modules/playwright-core").exists();
    if have_browser {
        let out = dir.path().join("shots");
        let url = format!("http://{http_addr}/");
        let mut child = std::process::Command::new("node")
            .arg(browser_dir.join("dashboard.mjs"))
            .args(["measure", &url])
            .arg(&out)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("node dashboard.mjs");
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Ok(Some(s)) = child.try_wait() {
                break Some(s);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut text = String::new();
        if let Some(mut o) = child.stdout.take() {
            use std::io::Read;
            let _ = o.read_to_string(&mut text);
        }
        println!("\n### Dashboard in headless Chromium, {queued} queued jobs\n");
        match status {
            Some(s) if s.success() => println!("```\n{}\n```", text.trim()),
            other => println!("dashboard measure failed: {other:?} {text}"),
        }
    } else {
        println!("\n(dashboard figures skipped: no Chromium or no tests/browser/node_modules)");
    }
    node_rt.block_on(node.shutdown());
}
