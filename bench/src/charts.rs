//! The benchmark's figures as SVG charts, for readers who are not
//! engineers: titles in words, units on the axes, the values printed on
//! the bars. Each function takes plain figures and returns the SVG text;
//! the caller writes it where it wants (`caucus-bench --charts DIR`).
//!
//! Relays whose name starts with `caucus` are drawn in blue, the others in
//! grey, so that Caucus's standing shows at a glance.

use std::ops::Range;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{SegmentValue, SegmentedCoord};
use plotters::coord::types::RangedCoordusize;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("drawing a chart: {0}")]
pub struct ChartError(String);

impl<E: std::error::Error + Send + Sync> From<DrawingAreaErrorKind<E>> for ChartError {
    fn from(e: DrawingAreaErrorKind<E>) -> Self {
        Self(e.to_string())
    }
}

const FONT: &str = "sans-serif";
const OURS: RGBColor = RGBColor(31, 97, 175);
const THEIRS: RGBColor = RGBColor(150, 150, 150);
/// p50, p99, p99.9: light to dark.
const PERCENTILES: [(&str, RGBColor); 3] = [
    ("median (p50)", RGBColor(158, 202, 225)),
    ("p99: 1 in 100 slower", RGBColor(66, 146, 198)),
    ("p99.9: 1 in 1,000 slower", RGBColor(8, 69, 148)),
];

fn color_of(relay: &str) -> RGBColor {
    if relay.starts_with("caucus") {
        OURS
    } else {
        THEIRS
    }
}

/// `12345.6` as `12,346`.
fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < -0.5 { format!("-{out}") } else { out }
}

/// Milliseconds with as many decimals as they need.
fn ms(v: f64) -> String {
    match v {
        v if v < 1.0 => format!("{v:.2}"),
        v if v < 100.0 => format!("{v:.1}"),
        v => thousands(v),
    }
}

/// An axis tick in ms: `20`, `1,000`, `0.5`.
fn tick(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        thousands(v)
    } else {
        let text = ms(v);
        text.trim_end_matches('0').to_owned()
    }
}

/// `n` bars (segments) `0..n` on an axis: an integer range is inclusive.
fn rows(n: usize) -> SegmentedCoord<RangedCoordusize> {
    (0..n.saturating_sub(1)).into_segmented()
}

/// Draw on an SVG of `size` pixels and return its text.
fn svg(
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), ChartError>,
) -> Result<String, ChartError> {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
    }
    Ok(text)
}

/// The legend, upper left, as every chart here draws it.
fn legend<'a, X: Ranged, Y: Ranged>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
) -> Result<(), ChartError> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .label_font((FONT, 14))
        .draw()?;
    Ok(())
}

/// Delivered envelopes per second at saturation, one horizontal bar per
/// relay (in the order given, top to bottom), the value printed beside
/// each.
pub fn delivered_per_relay(bars: &[(&str, f64)]) -> Result<String, ChartError> {
    let n = bars.len();
    let max = bars.iter().map(|b| b.1).fold(1.0, f64::max);
    svg((1000, 120 + 56 * n as u32), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Envelopes delivered per second, more is better", (FONT, 24))
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(240)
            .build_cartesian_2d(0.0..max * 1.18, rows(n))?;
        let name = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) => bars
                .get(n.saturating_sub(i + 1))
                .map_or_else(String::new, |b| b.0.to_owned()),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&name)
            .x_label_formatter(&|v| thousands(*v))
            .x_desc("envelopes delivered to members per second (median of the runs)")
            .label_style((FONT, 14))
            .draw()?;
        // Row 0 is the bottom: the first relay goes at the top.
        let row = |i: usize| n.saturating_sub(i + 1);
        chart.draw_series(bars.iter().enumerate().map(|(i, (relay, v))| {
            let mut bar = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(row(i))),
                    (*v, SegmentValue::Exact(row(i) + 1)),
                ],
                color_of(relay).filled(),
            );
            bar.set_margin(9, 9, 0, 0);
            bar
        }))?;
        let label = TextStyle::from((FONT, 15).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        chart.draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
            EmptyElement::at((*v, SegmentValue::CenterOf(row(i))))
                + Text::new(format!("{}/s", thousands(*v)), (6, 0), label.clone())
        }))?;
        Ok(())
    })
}

/// A log-scale range in ms around `values`, from a power of ten.
fn log_range(values: impl Iterator<Item = f64>) -> Range<f64> {
    let (lo, hi) = values
        .filter(|v| *v > 0.0)
        .fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if hi <= 0.0 {
        return 0.1..10.0;
    }
    let lo = 10f64.powf(lo.log10().floor()).min(lo / 2.0);
    // Room above the highest bar for its label and the legend.
    lo..hi * 12.0
}

/// Send-to-delivery latency at half load: for each relay (in the order
/// given) its p50, p99 and p99.9 in milliseconds, as a group of bars on a
/// log scale, the values printed on the bars.
pub fn latency_per_relay(relays: &[(&str, [f64; 3])]) -> Result<String, ChartError> {
    // Each relay takes four slots on the x axis: its three bars and a gap.
    let n = relays.len();
    let range = log_range(relays.iter().flat_map(|r| r.1));
    svg((240 * n as u32 + 160, 560), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                "Time from sending to delivery at half load, less is better",
                (FONT, 24),
            )
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(rows(4 * n), range.clone().log_scale())?;
        let name = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(j) if j % 4 == 1 => relays
                .get(j / 4)
                .map_or_else(String::new, |r| r.0.to_owned()),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(4 * n)
            .x_label_formatter(&name)
            .y_label_formatter(&|v| tick(*v))
            .y_desc("milliseconds (log scale)")
            .label_style((FONT, 14))
            .draw()?;
        let floor = range.start;
        let label =
            TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
        for (k, (what, color)) in PERCENTILES.iter().enumerate() {
            chart
                .draw_series(relays.iter().enumerate().map(|(i, (_, v))| {
                    let slot = 4 * i + k;
                    let mut bar = Rectangle::new(
                        [
                            (SegmentValue::Exact(slot), floor),
                            (SegmentValue::Exact(slot + 1), v[k].max(floor)),
                        ],
                        color.filled(),
                    );
                    bar.set_margin(0, 0, 2, 2);
                    bar
                }))?
                .label(*what)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled())
                });
            chart.draw_series(relays.iter().enumerate().map(|(i, (_, v))| {
                EmptyElement::at((SegmentValue::CenterOf(4 * i + k), v[k].max(floor)))
                    + Text::new(ms(v[k]), (0, -3), label.clone())
            }))?;
        }
        legend(&mut chart)
    })
}

/// Which figure of a service's day point.
type Pick = fn(&(usize, f64, f64)) -> f64;

/// A mediation service's day: p99 and p50 send-to-delivery latency in
/// milliseconds against the number of concurrent sessions, one point per
/// `(sessions, p99_ms, p50_ms)`, with the 50 ms target and the 100 ms
/// limit drawn across.
pub fn sessions_vs_p99(points: &[(usize, f64, f64)]) -> Result<String, ChartError> {
    let mut points = points.to_vec();
    points.sort_by_key(|p| p.0);
    let x_max = points.iter().map(|p| p.0).max().unwrap_or(1).max(1) as f64 * 1.08;
    let y_max = points.iter().map(|p| p.1.max(p.2)).fold(110.0, f64::max) * 1.15;
    svg((1000, 600), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                "Delivery time as the service grows (a mediation service's day), less is better",
                (FONT, 22),
            )
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_label_formatter(&|v| thousands(*v))
            .y_label_formatter(&|v| tick(*v))
            .x_desc("concurrent mediation sessions")
            .y_desc("milliseconds from sending to delivery")
            .label_style((FONT, 14))
            .draw()?;
        let lines = [
            (50.0, "target: p99 ≤ 50 ms", RGBColor(46, 139, 87)),
            (100.0, "limit: p99 ≤ 100 ms", RGBColor(200, 60, 40)),
        ];
        for (at, what, color) in lines {
            chart
                .draw_series(DashedLineSeries::new(
                    [(0.0, at), (x_max, at)],
                    8,
                    6,
                    color.stroke_width(2),
                ))?
                .label(what)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        // p99's values above its points, p50's below.
        let above =
            TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
        let below = TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
        let series: [(&str, RGBColor, Pick, _, i32); 2] = [
            ("p99: 1 in 100 deliveries slower", OURS, |p| p.1, above, -7),
            ("median (p50)", RGBColor(120, 170, 220), |p| p.2, below, 7),
        ];
        for (what, color, y, value, dy) in series {
            let at = |p: &(usize, f64, f64)| (p.0 as f64, y(p));
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(at),
                    color.stroke_width(3),
                ))?
                .label(what)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 18, y)], color.stroke_width(3))
                });
            chart.draw_series(points.iter().map(|p| {
                EmptyElement::at(at(p))
                    + Circle::new((0, 0), 4, color.filled())
                    + Text::new(ms(y(p)), (0, dy), value.clone())
            }))?;
        }
        legend(&mut chart)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_service_day_is_an_svg_with_its_labels_and_lines() {
        let svg = sessions_vs_p99(&[
            (10_000, 38.5, 6.2),
            (2_000, 9.1, 2.0),
            (20_000, 140.0, 31.0),
        ])
        .unwrap();
        let path = std::env::temp_dir().join(format!("caucus-chart-{}.svg", std::process::id()));
        std::fs::write(&path, &svg).unwrap();
        let back = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(back.starts_with("<svg") && back.trim_end().ends_with("</svg>"));
        for label in [
            "Delivery time as the service grows",
            "concurrent mediation sessions",
            "target: p99 ≤ 50 ms",
            "limit: p99 ≤ 100 ms",
            "20,000",
            "38.5",
            "140",
        ] {
            assert!(back.contains(label), "no {label:?} in the chart");
        }
    }

    #[test]
    fn figures_read_as_words() {
        assert_eq!(thousands(1_234_567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(ms(0.4567), "0.46");
        assert_eq!(ms(2.84), "2.8");
        assert_eq!(ms(1234.0), "1,234");
        assert_eq!(tick(20.0), "20");
        assert_eq!(tick(0.5), "0.5");
        let bars = delivered_per_relay(&[
            ("caucus (durable ack)", 36_803.0),
            ("nats-server", 129_519.0),
        ])
        .unwrap();
        assert!(bars.contains("36,803/s") && bars.contains("nats-server"));
        let lat = latency_per_relay(&[
            ("caucus (durable ack)", [3.1, 46.2, 80.0]),
            ("bare relay", [0.4, 2.8, 5.0]),
        ])
        .unwrap();
        assert!(lat.contains("46") && lat.contains("bare relay") && lat.contains("p99.9"));
    }
}
