//! Line charts drawn on the server as SVG: no script, nothing to load, and the page shows
//! its charts in the HTML it is sent. A series is one value per minute; a minute without a
//! value (no attempts, no sample) is a gap in the line, not a zero.

/// The drawing area, in SVG units (the stylesheet scales it to the page).
pub const WIDTH: f64 = 600.0;
pub const HEIGHT: f64 = 120.0;
/// Room above the highest point and below zero.
const PAD: f64 = 6.0;

#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub title: &'static str,
    /// The line: an SVG path (`M x y L x y …`, a new `M` after each gap).
    pub path: String,
    /// Values with a gap on both sides, which a line cannot show: drawn as dots (an SVG
    /// path of zero-length segments, which a round line cap draws as a dot).
    pub dots: String,
    /// The top of the scale, with its unit.
    pub top: String,
    /// The latest value, with its unit ("–" when there is none).
    pub latest: String,
    /// Whether the series has any value at all.
    pub empty: bool,
}

/// How a series' values read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    PerMinute,
    Percent,
    Milliseconds,
    Deliveries,
}

impl Unit {
    pub fn show(self, v: f64) -> String {
        let n = if v >= 100.0 || v.fract() == 0.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.1}")
        };
        match self {
            Unit::PerMinute => format!("{n}/min"),
            Unit::Percent => format!("{n}%"),
            Unit::Milliseconds => format!("{n} ms"),
            Unit::Deliveries => n,
        }
    }
}

/// A chart of `values` (oldest first). The scale runs from 0 to the highest value, or to
/// `ceiling` when given (100 for a percentage).
pub fn line(
    title: &'static str,
    unit: Unit,
    values: &[Option<f64>],
    ceiling: Option<f64>,
) -> Chart {
    let highest = values.iter().flatten().copied().fold(0.0_f64, f64::max);
    let top = ceiling.unwrap_or(if highest > 0.0 { highest } else { 1.0 });
    let step = if values.len() > 1 {
        WIDTH / (values.len() - 1) as f64
    } else {
        0.0
    };
    let y = |v: f64| HEIGHT - PAD - (v.clamp(0.0, top) / top) * (HEIGHT - 2.0 * PAD);
    let mut path = String::new();
    let mut dots = String::new();
    let mut drawing = false;
    let present = |i: usize| values.get(i).is_some_and(Option::is_some);
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(v) => {
                let x = if values.len() > 1 {
                    step * i as f64
                } else {
                    WIDTH / 2.0
                };
                let (x, y) = (format!("{x:.1}"), format!("{:.1}", y(*v)));
                path.push_str(&format!("{}{x} {y} ", if drawing { "L" } else { "M" }));
                if !present(i.wrapping_sub(1)) && !present(i + 1) {
                    dots.push_str(&format!("M{x} {y} l0 0 "));
                }
                drawing = true;
            }
            None => drawing = false,
        }
    }
    let latest = values.iter().rev().flatten().next().copied();
    Chart {
        title,
        path: path.trim_end().to_string(),
        dots: dots.trim_end().to_string(),
        top: unit.show(top),
        latest: latest.map(|v| unit.show(v)).unwrap_or_else(|| "–".into()),
        empty: latest.is_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_is_scaled_to_its_highest_value() {
        let c = line(
            "Rate",
            Unit::PerMinute,
            &[Some(0.0), Some(5.0), Some(10.0)],
            None,
        );
        assert_eq!(c.path, "M0.0 114.0 L300.0 60.0 L600.0 6.0");
        assert!(c.dots.is_empty());
        assert_eq!((c.top.as_str(), c.latest.as_str()), ("10/min", "10/min"));
        assert!(!c.empty);
    }

    #[test]
    fn missing_minutes_break_the_line() {
        let c = line(
            "Ratio",
            Unit::Percent,
            &[Some(100.0), None, Some(50.0), Some(50.0)],
            Some(100.0),
        );
        assert_eq!(c.path, "M0.0 6.0 M400.0 60.0 L600.0 60.0");
        assert_eq!(c.dots, "M0.0 6.0 l0 0", "a lone minute is a dot");
        assert_eq!(c.top, "100%");
    }

    #[test]
    fn an_empty_series_says_so() {
        let c = line("Latency", Unit::Milliseconds, &[None, None], None);
        assert!(c.empty && c.path.is_empty());
        assert_eq!(c.latest, "–");
        let one = line("One", Unit::Deliveries, &[Some(3.0)], None);
        assert_eq!(
            (one.path.as_str(), one.dots.as_str()),
            ("M300.0 6.0", "M300.0 6.0 l0 0")
        );
    }

    #[test]
    fn values_read_with_their_unit() {
        assert_eq!(Unit::Milliseconds.show(12.345), "12.3 ms");
        assert_eq!(Unit::Percent.show(99.5), "99.5%");
        assert_eq!(Unit::Deliveries.show(1500.0), "1500");
    }
}
