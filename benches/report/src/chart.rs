//! Draws docs/benchmarks-echo.svg: closed-loop throughput and p99 latency against connections.
//!
//! One row of two panels per payload size: messages per second (linear y) and p99 latency in µs
//! (log y), both over connections on a log x axis, one coloured line per server. Points with no
//! median (a failed or skipped server) are simply not drawn. Only the SVG backend is used, so
//! text is left to the viewer's sans-serif font.

use std::path::Path;

use plotters::prelude::*;

use crate::data::{Cell, Field, Medians, Mode};
use crate::markdown::int;

const PANEL_WIDTH: u32 = 640;
const PANEL_HEIGHT: u32 = 400;
const TITLE_HEIGHT: u32 = 40;

/// A line per server: (connections, value) pairs in increasing connections.
type Series = Vec<(String, Vec<(f64, f64)>)>;

/// Fixed colours (Tableau 10) so a server keeps its colour from chart to chart; coreio is red
/// and drawn thicker.
const COLOURS: [(&str, RGBColor); 8] = [
    ("coreio", RGBColor(214, 39, 40)),
    ("coreio-epoll", RGBColor(255, 127, 14)),
    ("tokio-ct", RGBColor(31, 119, 180)),
    ("tokio-mt", RGBColor(23, 190, 207)),
    ("smol", RGBColor(44, 160, 44)),
    ("monoio", RGBColor(148, 103, 189)),
    ("glommio", RGBColor(140, 86, 75)),
    ("uring-raw", RGBColor(127, 127, 127)),
];

/// For servers not in [`COLOURS`].
const SPARE_COLOURS: [RGBColor; 2] = [RGBColor(227, 119, 194), RGBColor(188, 189, 34)];

fn style(server: &str, index: usize) -> (RGBColor, u32) {
    match COLOURS.iter().find(|(name, _)| *name == server) {
        Some((name, colour)) => (*colour, if *name == "coreio" { 3 } else { 2 }),
        None => (SPARE_COLOURS[index % SPARE_COLOURS.len()], 2),
    }
}

pub fn draw(path: &Path, medians: &Medians, servers: &[String]) -> Result<(), String> {
    let mut sizes: Vec<u64> = medians
        .keys()
        .filter(|(cell, _)| cell.mode == Mode::Closed)
        .map(|(cell, _)| cell.size)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    if sizes.is_empty() {
        return Err("no closed-loop results to draw".into());
    }
    let height = TITLE_HEIGHT + PANEL_HEIGHT * sizes.len() as u32;
    let root = SVGBackend::new(path, (2 * PANEL_WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root
        .titled(
            "Echo servers on one pinned core: closed-loop throughput and p99 latency",
            ("sans-serif", 22),
        )
        .map_err(err)?;
    let panels = root.split_evenly((sizes.len(), 2));
    for (row, &size) in sizes.iter().enumerate() {
        let throughput = series(medians, servers, size, |s| s.msgs_per_s);
        let p99 = series(medians, servers, size, |s| s.p99_us);
        panel(
            &panels[2 * row],
            &format!("{size} B: messages per second"),
            "msgs/s",
            &throughput,
            false,
        )?;
        panel(
            &panels[2 * row + 1],
            &format!("{size} B: p99 latency"),
            "p99 (µs, log)",
            &p99,
            true,
        )?;
    }
    root.present().map_err(err)
}

fn series(medians: &Medians, servers: &[String], size: u64, field: Field) -> Series {
    servers
        .iter()
        .map(|server| {
            let points = medians
                .iter()
                .filter(|((cell, name), _)| {
                    name == server && cell.mode == Mode::Closed && cell.size == size
                })
                .filter_map(|((Cell { conns, .. }, _), s)| {
                    field(s).filter(|v| *v > 0.0).map(|v| (*conns as f64, v))
                })
                .collect();
            (server.clone(), points)
        })
        .collect()
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    y_desc: &str,
    series: &Series,
    log_y: bool,
) -> Result<(), String> {
    let points = series.iter().flat_map(|(_, points)| points.iter());
    let (mut x_min, mut x_max, mut y_min, mut y_max) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points {
        x_min = x_min.min(x);
        x_max = x_max.max(x);
        y_min = y_min.min(y);
        y_max = y_max.max(y);
    }
    if x_min > x_max {
        // Nothing measured at this size: leave the panel with its caption only.
        area.titled(&format!("{caption}: no data"), ("sans-serif", 18))
            .map_err(err)?;
        return Ok(());
    }
    // Some air around the points; log axes need strictly positive bounds.
    let x_range = (x_min / 1.5).max(0.5)..x_max * 1.5;
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80);
    if log_y {
        let mut chart = builder
            .build_cartesian_2d(x_range.log_scale(), decades(y_min, y_max).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("connections (log)")
            .y_desc(y_desc)
            .y_labels(12)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| int(*y))
            .draw()
            .map_err(err)?;
        // Latency grows with connections: the lower right is where the lines are not.
        lines(&mut chart, series, SeriesLabelPosition::LowerRight)
    } else {
        let mut chart = builder
            .build_cartesian_2d(x_range.log_scale(), 0.0..y_max * 1.15)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("connections (log)")
            .y_desc(y_desc)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| int(*y))
            .draw()
            .map_err(err)?;
        // Throughput grows with connections: the upper left is where the lines are not.
        lines(&mut chart, series, SeriesLabelPosition::UpperLeft)
    }
}

fn lines<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    series: &Series,
    legend: SeriesLabelPosition,
) -> Result<(), String>
where
    DB: DrawingBackend + 'a,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (index, (server, points)) in series.iter().enumerate() {
        if points.is_empty() {
            continue;
        }
        let (color, width) = style(server, index);
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(width),
            ))
            .map_err(err)?
            .label(server)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(width))
            });
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(legend)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(err)
}

/// The whole decades around [min, max]: plotters labels a log axis from its first power of ten
/// up, so a range that starts between two powers would lose its lower labels.
fn decades(min: f64, max: f64) -> std::ops::Range<f64> {
    let low = 10f64.powf(min.log10().floor());
    let mut high = 10f64.powf(max.log10().ceil());
    if high <= low {
        high = low * 10.0;
    }
    low..high
}

fn err(error: impl std::fmt::Display) -> String {
    format!("drawing the chart: {error}")
}
