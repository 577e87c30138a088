//! Scale curve over modules (issue 23): the node's executor (its own
//! `Executor`, two threads, in this process) holding 1, 10, 100 and 1,000
//! distinct modules, with jobs spread evenly at random over all of them,
//! once with the node's default `exec-memory-cow yes` and once with `no`.
//! The baseline is each curve's first row, one module, in the same run.
//!
//!   cargo build --release -p wasque-benches --bin scale_modules
//!   target/release/scale_modules [JOBS=20000] | tee benches/runs/scale-modules-<stamp>.txt
//!
//! The modules are the `wordcount` guest, each with a custom section
//! that makes its bytes (and so its hash) its own: same code, compiled
//! once per module as any upload is. Per level: the time to compile the
//! new uploads, RSS per module, then `JOBS` jobs (1 KiB of words, 512 in
//! flight) with jobs/s and p50 / p99 from submit to result. Last, an
//! executor is opened again on the same data dir, as a restarted node
//! is: how many modules came back from their precompiled artifacts (the
//! on-disk cache) and how many had to be compiled again, and how long that
//! took. Every stored module stays loaded (there is no eviction), so the
//! in-memory cache hits on every job by construction: what grows with the
//! module count is memory, and what a job pays is its instance's code
//! being cold in the CPU's caches. Plot: `benches/plots/scale-modules.png`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use plotters::prelude::*;
use tokio::sync::mpsc::unbounded_channel;
use wasque_benches::raw::{EPOCH_TICK, FUEL, NODE_MEMORY, exec_request};
use wasque_benches::workload::Rng;
use wasque_benches::{payload_1k, percentile};
use wasque_node::exec::{ExecConfig, Executor};
use wasque_sdk::proto::{JobId, ModuleHash};

const LEVELS: [usize; 4] = [1, 10, 100, 1000];
const WINDOW: usize = 512;
const THREADS: usize = 2;

/// `base` with a custom section `wasque-scale` holding `n`: a valid module
/// with the same code and its own hash.
fn variant(base: &[u8], n: usize) -> Vec<u8> {
    let name = b"wasque-scale";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(&(n as u64).to_le_bytes());
    let mut out = base.to_vec();
    out.push(0); // custom section
    let mut len = payload.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(&payload);
    out
}

/// This process's resident set size, in KiB.
fn rss_kib() -> u64 {
    wasque_benches::rss_kib(std::process::id())
}

fn config(memory_cow: bool) -> ExecConfig {
    ExecConfig {
        threads: THREADS,
        max_memory_bytes: NODE_MEMORY,
        epoch_tick: EPOCH_TICK,
        memory_cow,
        node_id: "scale".into(),
        ..ExecConfig::default()
    }
}

/// One level's figures.
struct Row {
    modules: usize,
    compile_ms_per_module: f64,
    rss_kib: u64,
    jobs_per_sec: f64,
    p50_us: u64,
    p99_us: u64,
}

fn main() -> Result<()> {
    let jobs: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()
        .context("JOBS")?
        .unwrap_or(20_000);
    let base = std::fs::read(wasque_tests::guests::wasm_path("wordcount"))
        .context("the wordcount guest (built by wasque-tests)")?;
    let payload = Bytes::from(payload_1k());
    let on = curve(true, &base, &payload, jobs)?;
    let off = curve(false, &base, &payload, jobs)?;
    plot(
        &on,
        &off,
        std::path::Path::new("benches/plots/scale-modules.png"),
    )?;
    Ok(())
}

/// The whole curve with `exec-memory-cow` set to `memory_cow`, on a fresh
/// executor and data dir.
fn curve(memory_cow: bool, base: &[u8], payload: &Bytes, jobs: usize) -> Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let (tx, mut done) = unbounded_channel();
    let exec = Executor::open(config(memory_cow), dir.path(), tx)?;
    let rss0 = rss_kib();
    println!(
        "\n# exec-memory-cow {}: wordcount variants, {THREADS} executor threads, {jobs} jobs per level, {WINDOW} in flight, RSS with the executor open {rss0} KiB",
        if memory_cow { "yes" } else { "no" }
    );
    println!(
        "| modules | compile ms per new module | RSS over the open executor MiB | RSS per module KiB | jobs/s | vs 1 module | p50 ms | p99 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut hashes: Vec<ModuleHash> = Vec::new();
    let mut rows: Vec<Row> = Vec::new();
    let mut rng = Rng::new(7);
    for level in LEVELS {
        let t = Instant::now();
        let new = level - hashes.len();
        for n in hashes.len()..level {
            hashes.push(exec.put_module(&variant(base, n))?.hash);
        }
        let compile_ms = t.elapsed().as_secs_f64() * 1000.0 / new.max(1) as f64;
        let rss = rss_kib();

        let mut started: HashMap<JobId, Instant> = HashMap::new();
        let mut lat: Vec<u64> = Vec::with_capacity(jobs);
        let mut seq = 0u64;
        let mut submit = |started: &mut HashMap<JobId, Instant>, rng: &mut Rng| {
            seq += 1;
            let job = JobId::compose(
                1_732_000_000_000 + seq / 65_536,
                (seq % 65_536) as u16,
                1,
                false,
                3600,
                0,
            );
            let module = hashes[rng.below(hashes.len())];
            started.insert(job, Instant::now());
            exec.submit(exec_request(job, module, payload.clone(), FUEL));
        };
        let t = Instant::now();
        let mut sent = 0;
        while sent < jobs.min(WINDOW) {
            submit(&mut started, &mut rng);
            sent += 1;
        }
        while lat.len() < jobs {
            let d = done.blocking_recv().context("executor stopped")?;
            anyhow::ensure!(d.result.is_success(), "{:?}", d.result);
            if let Some(s) = started.remove(&d.job) {
                lat.push(s.elapsed().as_micros() as u64);
            }
            if sent < jobs {
                submit(&mut started, &mut rng);
                sent += 1;
            }
        }
        let secs = t.elapsed().as_secs_f64();
        lat.sort_unstable();
        let row = Row {
            modules: level,
            compile_ms_per_module: compile_ms,
            rss_kib: rss,
            jobs_per_sec: jobs as f64 / secs,
            p50_us: percentile(&lat, 0.50),
            p99_us: percentile(&lat, 0.99),
        };
        let base_rate = rows.first().map_or(row.jobs_per_sec, |r| r.jobs_per_sec);
        println!(
            "| {} | {:.1} | {:.1} | {:.0} | {:.0} | {:.2}x | {:.2} | {:.2} |",
            row.modules,
            row.compile_ms_per_module,
            row.rss_kib.saturating_sub(rss0) as f64 / 1024.0,
            (row.rss_kib.saturating_sub(rss0)) as f64 / row.modules as f64,
            row.jobs_per_sec,
            row.jobs_per_sec / base_rate,
            row.p50_us as f64 / 1000.0,
            row.p99_us as f64 / 1000.0,
        );
        rows.push(row);
    }
    exec.shutdown();
    drop(exec);

    // A restart on the same data dir: modules come back from their
    // artifacts, none is compiled again.
    let (tx, _done) = unbounded_channel();
    let t = Instant::now();
    let again = Executor::open(config(memory_cow), dir.path(), tx)?;
    let took = t.elapsed();
    let s = again.stats();
    println!(
        "\nrestart with {} modules: open {:.2} s, {} loaded from artifacts, {} compiled again",
        again.modules().len(),
        took.as_secs_f64(),
        s.modules_loaded,
        s.modules_compiled
    );
    again.shutdown();
    drop(again);
    std::thread::sleep(Duration::from_millis(10));
    Ok(rows)
}

fn plot(on: &[Row], off: &[Row], png: &std::path::Path) -> Result<()> {
    wasque_benches::plot::font()?;
    if let Some(dir) = png.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let root = BitMapBackend::new(png, (900, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((2, 1));
    type Pick = fn(&Row) -> f64;
    let picks: [(&str, Pick); 2] = [
        ("jobs/s, 2 executor threads", |r| r.jobs_per_sec),
        ("RSS (MiB)", |r| r.rss_kib as f64 / 1024.0),
    ];
    for (panel, (title, pick)) in panels.iter().zip(picks) {
        let ymax = on.iter().chain(off).map(pick).fold(1.0f64, f64::max) * 1.15;
        let mut chart = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 18))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d((0.7f64..1500.0).log_scale(), 0.0..ymax)?;
        chart
            .configure_mesh()
            .x_desc("modules held, jobs spread over all")
            .draw()?;
        for (name, rows, color) in [
            ("exec-memory-cow yes (default)", on, RED),
            ("exec-memory-cow no", off, BLUE),
        ] {
            chart
                .draw_series(LineSeries::new(
                    rows.iter().map(|r| (r.modules as f64, pick(r))),
                    color,
                ))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
            chart.draw_series(
                rows.iter()
                    .map(|r| Circle::new((r.modules as f64, pick(r)), 3, color.filled())),
            )?;
        }
        chart.configure_series_labels().border_style(BLACK).draw()?;
    }
    root.present()?;
    Ok(())
}
