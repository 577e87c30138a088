//! The scheduling evaluation in virtual time (issue 7 §4): the same
//! heterogeneous workloads under every placement policy and both modes, on
//! simulated clusters of real engines (`wasque_benches::sim`) of 3 to 100
//! nodes. Prints markdown tables and draws PNG plots.
//!
//!   cargo run --release -p wasque-benches --bin sched_eval -- [--quick] [--plots DIR]
//!
//! Baseline: `random` with `pull`, in the same run.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use plotters::prelude::*;
use wasque_benches::percentile;
use wasque_benches::sim::{NodeSpec, Sim, SimReport};
use wasque_benches::workload::{self, URGENT};
use wasque_node::engine::{Mode, Policy};

const POLICIES: [Policy; 5] = [
    Policy::RoundRobin,
    Policy::Random,
    Policy::LeastLoaded,
    Policy::Priority,
    Policy::Resource,
];
const MODES: [Mode; 2] = [Mode::Push, Mode::Pull];

/// What one run is judged by.
#[derive(Clone, Debug)]
struct Figures {
    policy: Policy,
    mode: Mode,
    makespan_ms: u64,
    jobs_per_s: f64,
    wait_p50: u64,
    wait_p99: u64,
    urgent_p99: u64,
    /// Busy share of each node's slots over the makespan.
    util: Vec<f64>,
    unfinished: usize,
    messages: u64,
}

fn figures(policy: Policy, mode: Mode, r: &SimReport) -> Figures {
    let mut waits: Vec<u64> = r.jobs.iter().map(|j| j.started - j.submitted).collect();
    waits.sort_unstable();
    let mut urgent: Vec<u64> = r
        .jobs
        .iter()
        .filter(|j| j.priority == URGENT)
        .map(|j| j.started - j.submitted)
        .collect();
    urgent.sort_unstable();
    let span = r.makespan_ms.max(1) as f64;
    Figures {
        policy,
        mode,
        makespan_ms: r.makespan_ms,
        jobs_per_s: r.jobs.len() as f64 * 1000.0 / span,
        wait_p50: percentile(&waits, 0.5),
        wait_p99: percentile(&waits, 0.99),
        urgent_p99: percentile(&urgent, 0.99),
        util: r
            .busy_ms
            .iter()
            .zip(&r.slots)
            .map(|(b, s)| *b as f64 / (*s as f64 * span))
            .collect(),
        unfinished: r.unfinished,
        messages: r.messages,
    }
}

fn run_all(nodes: &[NodeSpec], jobs: &[wasque_benches::sim::JobSpec]) -> Vec<Figures> {
    let mut out = Vec::new();
    for mode in MODES {
        for policy in POLICIES {
            let sim = Sim::new(nodes, &workload::queues(), policy, mode);
            let r = sim.run(jobs.to_vec(), 3_600_000);
            out.push(figures(policy, mode, &r));
        }
    }
    out
}

fn baseline(rows: &[Figures]) -> &Figures {
    rows.iter()
        .find(|f| f.policy == Policy::Random && f.mode == Mode::Pull)
        .expect("the baseline runs")
}

fn table(title: &str, rows: &[Figures]) -> String {
    let base = baseline(rows);
    let mut s = format!(
        "\n### {title}\n\n| policy | mode | makespan s | vs baseline | jobs/s | wait p50 ms | wait p99 ms | urgent p99 ms | node use % | unfinished |\n|---|---|---|---|---|---|---|---|---|---|\n"
    );
    for f in rows {
        let util = f
            .util
            .iter()
            .map(|u| format!("{:.0}", u * 100.0))
            .collect::<Vec<_>>()
            .join("/");
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} | {:.2}x | {:.0} | {} | {} | {} | {} | {} |",
            f.policy.as_str(),
            f.mode.as_str(),
            f.makespan_ms as f64 / 1000.0,
            base.makespan_ms as f64 / f.makespan_ms.max(1) as f64,
            f.jobs_per_s,
            f.wait_p50,
            f.wait_p99,
            f.urgent_p99,
            util,
            f.unfinished
        );
    }
    s
}

/// Grouped bars: one group per policy, one bar per mode.
fn bars(
    path: &std::path::Path,
    title: &str,
    y: &str,
    rows: &[Figures],
    value: impl Fn(&Figures) -> f64,
) -> anyhow::Result<()> {
    let groups: Vec<String> = POLICIES.iter().map(|p| p.as_str().to_string()).collect();
    let series: Vec<(String, Vec<f64>)> = MODES
        .iter()
        .map(|mode| {
            let v = POLICIES
                .iter()
                .map(|p| {
                    rows.iter()
                        .find(|f| f.mode == *mode && f.policy == *p)
                        .map_or(0.0, &value)
                })
                .collect();
            (mode.as_str().to_string(), v)
        })
        .collect();
    wasque_benches::plot::grouped_bars(path, title, y, &groups, &series, false)
}

/// One line per policy: `value` against cluster size.
fn lines(
    path: &PathBuf,
    title: &str,
    y: &str,
    sizes: &[usize],
    series: &[(String, Vec<f64>)],
) -> anyhow::Result<()> {
    let root = BitMapBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let max = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0f64, f64::max)
        * 1.1;
    let xmax = *sizes.last().unwrap_or(&1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((2f64..xmax * 1.1).log_scale(), 0f64..max.max(1e-9))?;
    chart.configure_mesh().x_desc("nodes").y_desc(y).draw()?;
    for (i, (name, values)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                sizes.iter().zip(values).map(|(n, v)| (*n as f64, *v)),
                color.stroke_width(2),
            ))?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let plots = args
        .iter()
        .position(|a| a == "--plots")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let started = Instant::now();
    let mut out = String::new();
    let three = workload::cluster(3);
    let _ = writeln!(
        out,
        "Cluster of 3: slots {:?}, node 2 at a quarter of the speed; jobs {} ms ({:.0} %) or {} ms, 70 % on one hot queue, 10 % urgent (priority {URGENT}).",
        three.iter().map(|n| n.slots).collect::<Vec<_>>(),
        workload::SHORT_MS,
        (1.0 - workload::LONG_SHARE) * 100.0,
        workload::LONG_MS,
    );

    let batch_n = if quick { 500 } else { 3000 };
    let batch = workload::batch(batch_n, 7);
    let batch_rows = run_all(&three, &batch);
    out.push_str(&table(
        &format!("Batch: {batch_n} jobs through node 0, 3 nodes"),
        &batch_rows,
    ));

    let secs = if quick { 10 } else { 30 };
    let stream = workload::stream(&three, 0.7, secs, 11);
    let stream_rows = run_all(&three, &stream);
    out.push_str(&table(
        &format!(
            "Stream: {} jobs over {secs} s at 70 % of capacity, random entry nodes, 3 nodes",
            stream.len()
        ),
        &stream_rows,
    ));

    let sizes: Vec<usize> = if quick {
        vec![3, 10, 30]
    } else {
        vec![3, 10, 30, 100]
    };
    let mut by_size: Vec<Vec<Figures>> = Vec::new();
    let _ = writeln!(
        out,
        "\n### Scaling: the stream at 70 % of capacity ({secs} s), 3 to {} nodes\n\n| nodes | jobs | policy | mode | wait p50 ms | wait p99 ms | urgent p99 ms | makespan s | messages/job |\n|---|---|---|---|---|---|---|---|---|",
        sizes.last().unwrap_or(&3)
    );
    for &n in &sizes {
        let nodes = workload::cluster(n);
        let jobs = workload::stream(&nodes, 0.7, secs, 13);
        let t = Instant::now();
        let rows = run_all(&nodes, &jobs);
        eprintln!(
            "{n} nodes: {} jobs x 10 runs in {:.1?}",
            jobs.len(),
            t.elapsed()
        );
        for f in &rows {
            let _ = writeln!(
                out,
                "| {n} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} |",
                jobs.len(),
                f.policy.as_str(),
                f.mode.as_str(),
                f.wait_p50,
                f.wait_p99,
                f.urgent_p99,
                f.makespan_ms as f64 / 1000.0,
                f.messages as f64 / jobs.len().max(1) as f64,
            );
        }
        by_size.push(rows);
    }
    let _ = writeln!(
        out,
        "\n(simulated in {:.1?} of wall time)",
        started.elapsed()
    );
    println!("{out}");

    if let Some(dir) = plots {
        wasque_benches::plot::font()?;
        std::fs::create_dir_all(&dir)?;
        bars(
            &dir.join("sched-batch-makespan.png"),
            &format!("Batch of {batch_n} jobs on 3 unequal nodes: makespan"),
            "seconds",
            &batch_rows,
            |f| f.makespan_ms as f64 / 1000.0,
        )?;
        bars(
            &dir.join("sched-stream-p99.png"),
            "Stream at 70 % load on 3 unequal nodes: p99 wait",
            "ms",
            &stream_rows,
            |f| f.wait_p99 as f64,
        )?;
        bars(
            &dir.join("sched-batch-urgent-p99.png"),
            "Batch: p99 wait of the urgent (priority 9) jobs",
            "seconds",
            &batch_rows,
            |f| f.urgent_p99 as f64 / 1000.0,
        )?;
        for mode in MODES {
            let series: Vec<(String, Vec<f64>)> = POLICIES
                .iter()
                .map(|p| {
                    let v = by_size
                        .iter()
                        .map(|rows| {
                            rows.iter()
                                .find(|f| f.policy == *p && f.mode == mode)
                                .map_or(0.0, |f| f.wait_p99 as f64)
                        })
                        .collect();
                    (p.as_str().to_string(), v)
                })
                .collect();
            lines(
                &dir.join(format!("sched-scaling-p99-{}.png", mode.as_str())),
                &format!("p99 wait at 70 % load, {} mode", mode.as_str()),
                "ms",
                &sizes,
                &series,
            )?;
        }
        eprintln!("plots in {}", dir.display());
    }
    Ok(())
}
