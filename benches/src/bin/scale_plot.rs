//! Draws the scale curve of `benches/scale.sh` from its raw output: per
//! backlog level, memory per queued job, add-get-ack cycles per second
//! and the cycle's p99, for the node and for redis-server.
//!
//!   target/release/scale_plot benches/runs/scale-jobs-<stamp>.txt benches/plots/scale-jobs.png

use std::path::Path;

use anyhow::{Context, Result, bail};
use plotters::prelude::*;

/// One measured row: (level, bytes per job, cycles per second, p99 µs).
type Row = (f64, f64, f64, f64);

/// The rows of one system (`wasque` or `redis`) from the raw output's
/// `level=N SYSTEM key=value...` lines.
fn rows(raw: &str, system: &str) -> Result<Vec<Row>> {
    let mut out = Vec::new();
    for line in raw.lines().filter(|l| l.starts_with("level=")) {
        let mut words = line.split_whitespace();
        let level = words.next().unwrap_or_default();
        if words.next() != Some(system) {
            continue;
        }
        let field = |key: &str| -> Result<f64> {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
                .with_context(|| format!("no {key} in: {line}"))?
                .parse::<f64>()
                .with_context(|| format!("{key} in: {line}"))
        };
        let level: f64 = level.trim_start_matches("level=").parse()?;
        out.push((
            level,
            field("bytes_per_job")?,
            field("cycles_per_sec")?,
            field("p99_us")?,
        ));
    }
    Ok(out)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [raw, png] = args.as_slice() else {
        bail!("usage: scale_plot RAW.txt OUT.png");
    };
    let raw = std::fs::read_to_string(raw).with_context(|| format!("read {raw}"))?;
    let series = [
        ("wasque-node", rows(&raw, "wasque")?, RED),
        ("redis-server (list)", rows(&raw, "redis")?, BLUE),
    ];
    let levels: Vec<f64> = series
        .iter()
        .flat_map(|s| s.1.iter().map(|r| r.0))
        .collect();
    if levels.is_empty() {
        bail!("no `level=` rows in the raw output");
    }
    let lo = levels.iter().copied().fold(f64::MAX, f64::min) * 0.7;
    let hi = levels.iter().copied().fold(0.0, f64::max) * 1.4;

    wasque_benches::plot::font()?;
    let root = BitMapBackend::new(Path::new(png), (900, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((3, 1));
    type Pick = fn(&Row) -> f64;
    let picks: [(&str, Pick); 3] = [
        ("RSS per queued job (bytes)", |r| r.1),
        ("add-get-ack cycles/s, 50 clients", |r| r.2),
        ("p99 of one cycle (ms)", |r| r.3 / 1000.0),
    ];
    for (panel, (title, pick)) in panels.iter().zip(picks) {
        let ymax = series
            .iter()
            .flat_map(|s| s.1.iter().map(pick))
            .fold(1.0f64, f64::max)
            * 1.15;
        let mut chart = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 18))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d((lo..hi).log_scale(), 0.0..ymax)?;
        chart
            .configure_mesh()
            .x_desc("jobs queued")
            .x_label_formatter(&|v| format!("{v:.0e}"))
            .draw()?;
        for (name, rows, color) in &series {
            chart
                .draw_series(LineSeries::new(rows.iter().map(|r| (r.0, pick(r))), color))?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
            chart.draw_series(
                rows.iter()
                    .map(|r| Circle::new((r.0, pick(r)), 3, color.filled())),
            )?;
        }
        chart.configure_series_labels().border_style(BLACK).draw()?;
    }
    root.present()?;
    println!("wrote {png}");
    Ok(())
}
