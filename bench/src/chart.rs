//! The SVG chart of the latency and throughput rows (plotters).

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use crate::report::{
    fmt_bytes_rate, fmt_ns, fmt_rate, Results, Row, Unit, G_RT4K, G_RT64, G_RT64_1CPU,
    G_RT64_LOADED, G_RT8, G_TP1M, G_TP4K, G_TP64, G_TP64_LOADED,
};
use crate::util::Res;

const PANELS: [&str; 9] = [
    G_RT8,
    G_RT64,
    G_RT4K,
    G_RT64_1CPU,
    G_RT64_LOADED,
    G_TP64,
    G_TP4K,
    G_TP1M,
    G_TP64_LOADED,
];

fn color(r: &Row) -> RGBColor {
    if r.contender.starts_with("shmkit") {
        if r.reference {
            RGBColor(0x1f, 0x4e, 0x9a)
        } else {
            RGBColor(0x4a, 0x86, 0xd8)
        }
    } else if r.contender.contains("floor") {
        RGBColor(0x3c, 0x9a, 0x5a)
    } else if r.contender.starts_with("Python") {
        RGBColor(0xe0, 0x8a, 0x2c)
    } else {
        RGBColor(0x8a, 0x8a, 0x8a)
    }
}

/// Value drawn for a row: time in µs, or bytes per second for throughput.
fn shown(r: &Row, v: f64) -> f64 {
    match r.unit {
        Unit::Ns => v / 1e3,
        Unit::PerSec => v * r.bytes.unwrap_or(1) as f64,
    }
}

pub fn draw(res: &Results, path: &std::path::Path) -> Res<()> {
    let panels: Vec<(&str, Vec<&Row>)> = PANELS
        .iter()
        .map(|g| {
            (
                *g,
                res.rows
                    .iter()
                    .filter(|r| r.group == *g && r.median.is_some())
                    .collect::<Vec<_>>(),
            )
        })
        .filter(|(_, rows)| !rows.is_empty())
        .collect();
    if panels.is_empty() {
        return Ok(());
    }
    let row_px = 22u32;
    let heights: Vec<u32> = panels
        .iter()
        .map(|(_, rows)| 70 + row_px * rows.len() as u32)
        .collect();
    let total: u32 = heights.iter().sum::<u32>() + 40;
    let root = SVGBackend::new(path, (1100, total)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title, mut rest) = root.split_vertically(40);
    title.draw(&Text::new(
        format!(
            "shmkit vs peers — {} ({} mode). Bars: median; tick: p99 (slow tail). Log scale.",
            res.meta.date_utc, res.meta.mode
        ),
        (10, 12),
        ("sans-serif", 16).into_font(),
    ))?;
    for ((group, rows), h) in panels.iter().zip(&heights) {
        let (area, below) = rest.split_vertically(*h);
        rest = below;
        let unit = rows[0].unit;
        let vals: Vec<f64> = rows
            .iter()
            .flat_map(|r| [r.median, r.p99].into_iter().flatten().map(|v| shown(r, v)))
            .filter(|v| *v > 0.0)
            .collect();
        // Whole decades, so that every panel's axis is labelled at powers
        // of ten (a narrow range got crowded minor labels and none at its
        // low end).
        let decade = |v: f64, up: bool| {
            let e = v.log10();
            10f64.powf(if up { e.ceil() } else { e.floor() })
        };
        let lo = decade(vals.iter().cloned().fold(f64::MAX, f64::min) / 1.5, false);
        let hi = decade(vals.iter().cloned().fold(0.0, f64::max) * 3.0, true);
        let n = rows.len() as i32;
        let x_desc = match unit {
            Unit::Ns => "µs per round trip (lower is better)",
            Unit::PerSec => "bytes per second (higher is better)",
        };
        let mut chart = ChartBuilder::on(&area)
            .caption(*group, ("sans-serif", 15).into_font())
            .margin(6)
            .margin_right(40)
            .x_label_area_size(28)
            .y_label_area_size(300)
            .build_cartesian_2d((lo..hi).log_scale(), (0..n).into_segmented())?;
        let names: Vec<String> = rows.iter().map(|r| r.contender.clone()).collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_desc(x_desc)
            .x_label_formatter(&|x| match unit {
                Unit::Ns => fmt_ns(*x * 1e3),
                Unit::PerSec => fmt_bytes_rate(*x),
            })
            .y_labels(rows.len())
            .y_label_formatter(&|y| match y {
                SegmentValue::CenterOf(i) if *i >= 0 && *i < n => {
                    names[(n - 1 - *i) as usize].clone()
                }
                _ => String::new(),
            })
            .label_style(("sans-serif", 12))
            .draw()?;
        for (i, r) in rows.iter().enumerate() {
            // The first row (the reference) on top.
            let i = n - 1 - i as i32;
            let m = shown(r, r.median.unwrap());
            let mut bar = Rectangle::new(
                [
                    (lo, SegmentValue::Exact(i)),
                    (m, SegmentValue::Exact(i + 1)),
                ],
                color(r).filled(),
            );
            bar.set_margin(3, 3, 0, 0);
            chart.draw_series(std::iter::once(bar))?;
            if let Some(p) = r.p99 {
                let p = shown(r, p);
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(p, SegmentValue::Exact(i)), (p, SegmentValue::Exact(i + 1))],
                    BLACK.stroke_width(2),
                )))?;
            }
            let label = match unit {
                Unit::Ns => fmt_ns(r.median.unwrap()),
                Unit::PerSec => format!(
                    "{} msg/s",
                    fmt_rate(r.median.unwrap()).trim_end_matches("/s")
                ),
            };
            chart.draw_series(std::iter::once(Text::new(
                label,
                (m * 1.08, SegmentValue::CenterOf(i)),
                ("sans-serif", 11).into_font(),
            )))?;
        }
    }
    root.present()?;
    Ok(())
}
