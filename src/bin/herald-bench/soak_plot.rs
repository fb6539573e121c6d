//! The soak's chart: latency (p50, p99) above, table sizes below, over the run's minutes.

use std::path::Path;

use plotters::prelude::*;

use crate::soak::Sample;

/// Fonts tried for the chart's text, in order (Debian's DejaVu and Liberation).
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Draws the chart; `false` (and a line saying why) when there is nothing to draw or no
/// font to write its labels with.
pub fn draw(path: &Path, samples: &[Sample], rate: u32) -> anyhow::Result<bool> {
    if samples.len() < 2 {
        eprintln!("herald-bench: too few samples to draw {}", path.display());
        return Ok(false);
    }
    let Some(font) = FONTS.iter().find_map(|f| std::fs::read(f).ok()) else {
        eprintln!(
            "herald-bench: no font for the chart's labels ({}); no chart",
            FONTS.join(", ")
        );
        return Ok(false);
    };
    // plotters keeps registered fonts for the life of the process.
    plotters::style::register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(font.into_boxed_slice()),
    )
    .map_err(|_| anyhow::anyhow!("the chart's font could not be read"))?;

    let root = BitMapBackend::new(path, (1200, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(450);
    let end = samples.last().map(minutes).unwrap_or(1.0).max(0.1);
    panel(
        &top,
        &format!("herald-bench soak at {rate} msg/s: latency"),
        "enqueue to receive, ms",
        &[
            ("p50", BLUE, |s| s.latency_p50_ms),
            ("p99", RED, |s| s.latency_p99_ms),
        ],
        samples,
        end,
    )?;
    panel(
        &bottom,
        "table sizes (indexes and TOAST included)",
        "MiB",
        &[
            ("all of Herald's", BLACK, |s| s.total_mib),
            ("message", BLUE, |s| s.message_mib),
            ("delivery", GREEN, |s| s.delivery_mib),
            ("attempt", RED, |s| s.attempt_mib),
        ],
        samples,
        end,
    )?;
    root.present()?;
    Ok(true)
}

fn minutes(s: &Sample) -> f64 {
    s.t_s / 60.0
}

/// A line's name, colour and value in a sample.
type Series = (&'static str, RGBColor, fn(&Sample) -> f64);

/// A line per series over the run's minutes, its y axis 10 % above the highest value.
fn panel(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    caption: &str,
    y_desc: &str,
    series: &[Series],
    samples: &[Sample],
    end: f64,
) -> anyhow::Result<()> {
    let max = samples
        .iter()
        .flat_map(|s| series.iter().map(move |(_, _, value)| value(s)))
        .fold(1.0, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..end, 0.0..max)?;
    chart
        .configure_mesh()
        .x_desc("minutes")
        .y_desc(y_desc)
        .label_style(("sans-serif", 14))
        .draw()?;
    for &(name, color, value) in series {
        chart
            .draw_series(LineSeries::new(
                samples.iter().map(|s| (minutes(s), value(s))),
                color.stroke_width(2),
            ))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .label_font(("sans-serif", 14))
        .draw()?;
    Ok(())
}
