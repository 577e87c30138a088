//! What the benches' plots share: the font and grouped bar charts.

use std::path::Path;

use plotters::prelude::*;

/// Registers a TTF font as "sans-serif" for plotters (it draws text with
/// no system font lookup here).
pub fn font() -> anyhow::Result<()> {
    let candidates = [
        std::env::var("WASQUE_PLOT_FONT").unwrap_or_default(),
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf".into(),
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf".into(),
    ];
    for c in candidates.iter().filter(|c| !c.is_empty()) {
        if let Ok(bytes) = std::fs::read(c) {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| anyhow::anyhow!("{c} is not a usable font"))?;
            return Ok(());
        }
    }
    anyhow::bail!(
        "no TTF font for the plots (install Debian's fonts-dejavu-core or set WASQUE_PLOT_FONT)"
    )
}

/// Grouped bars: `groups` along x, one bar per series in each; with
/// `log`, a logarithmic y axis (drawn as log10 on a linear one, labelled
/// in powers of ten; values below 1 are drawn at 1).
pub fn grouped_bars(
    path: &Path,
    title: &str,
    y: &str,
    groups: &[String],
    series: &[(String, Vec<f64>)],
    log: bool,
) -> anyhow::Result<()> {
    let scale = |v: f64| if log { v.max(1.0).log10() } else { v };
    let root = BitMapBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .map(scale)
        .fold(0.0f64, f64::max);
    // Headroom for the legend.
    let top = if log { top.ceil() + 1.0 } else { top * 1.4 };
    let width = 0.8 / series.len().max(1) as f64;
    let colors = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
    ];
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..(groups.len() as f64), 0f64..top.max(1e-9))?;
    let decades = top as usize + 1;
    let label = |v: &f64| {
        if log {
            format!("{:.0}", 10f64.powf(*v))
        } else {
            format!("{v:.1}")
        }
    };
    let mut mesh = chart.configure_mesh();
    mesh.disable_x_mesh()
        .x_labels(0)
        .y_label_formatter(&label)
        .y_desc(y);
    if log {
        mesh.y_labels(decades);
    }
    mesh.draw()?;
    let area = chart.plotting_area();
    for (k, g) in groups.iter().enumerate() {
        let (px, _) = area.map_coordinate(&(k as f64 + 0.4, 0.0));
        root.draw(&Text::new(
            g.clone(),
            (px, area.get_pixel_range().1.end + 8),
            ("sans-serif", 15),
        ))?;
    }
    for (s, (name, values)) in series.iter().enumerate() {
        let color = colors[s % colors.len()];
        chart
            .draw_series(values.iter().enumerate().map(|(k, v)| {
                let x0 = k as f64 + 0.1 + s as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width * 0.9, scale(*v))], color.filled())
            }))?
            .label(name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
