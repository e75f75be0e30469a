//! Charts as SVG, drawn on the server: a line chart for histories and trends, bars for
//! distributions. Every label is escaped; every chart has a title and a description for
//! screen readers, and the numbers stay readable without colour (labels on bars, points
//! with values in their titles).

use std::fmt::Write;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 30.0;

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// A round step for about `ticks` intervals over `span`.
fn nice_step(span: f64, ticks: f64) -> f64 {
    let raw = (span / ticks).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    let f = raw / magnitude;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// The y range shown: `fixed` when given, else from 0 (or the lowest value below 0) to a
/// round number at or above the highest.
fn y_range(values: impl Iterator<Item = f64>, fixed: Option<(f64, f64)>) -> (f64, f64, f64) {
    if let Some((lo, hi)) = fixed {
        return (lo, hi, nice_step(hi - lo, 4.0));
    }
    let (mut lo, mut hi) = (0.0f64, 0.0f64);
    for v in values {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if hi <= lo {
        hi = lo + 1.0;
    }
    let step = nice_step(hi - lo, 4.0);
    ((lo / step).floor() * step, (hi / step).ceil() * step, step)
}

fn number(v: f64) -> String {
    if v.abs() >= 1_000_000.0 {
        format!("{:.1}M", v / 1_000_000.0)
    } else if v.abs() >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn open(out: &mut String, title: &str, description: &str) {
    let _ = write!(
        out,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" xmlns="http://www.w3.org/2000/svg"><title>{}</title><desc>{}</desc>"#,
        escape(title),
        escape(description)
    );
}

fn grid(out: &mut String, lo: f64, hi: f64, step: f64) {
    let mut v = lo;
    while v <= hi + step / 2.0 {
        let y = TOP + (hi - v) / (hi - lo) * (HEIGHT - TOP - BOTTOM);
        let _ = write!(
            out,
            r#"<line class="grid" x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}"/><text class="axis" x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            number(v)
        );
        v += step;
    }
}

/// One line of a line chart.
pub(crate) struct Series<'a> {
    pub name: &'a str,
    /// A CSS class giving its colour (`s1`, `s2`, ...).
    pub class: &'a str,
    pub values: Vec<f64>,
}

/// A line chart of one or more series over the same `labels` (days, oldest first), with the
/// y axis over `fixed` when given (a score's 0 to 100).
pub(crate) fn line(title: &str, labels: &[String], series: &[Series<'_>], fixed: Option<(f64, f64)>) -> String {
    let mut out = String::new();
    let description = if labels.is_empty() {
        "No data yet.".to_owned()
    } else {
        let last: Vec<String> =
            series.iter().filter_map(|s| s.values.last().map(|v| format!("{} {}", s.name, number(*v)))).collect();
        format!("From {} to {}; latest: {}.", labels[0], labels[labels.len() - 1], last.join(", "))
    };
    open(&mut out, title, &description);
    if labels.is_empty() {
        let _ = write!(
            out,
            r#"<text class="empty" x="{}" y="{}" text-anchor="middle">No data yet</text></svg>"#,
            WIDTH / 2.0,
            HEIGHT / 2.0
        );
        return out;
    }
    let (lo, hi, step) = y_range(series.iter().flat_map(|s| s.values.iter().copied()), fixed);
    grid(&mut out, lo, hi, step);
    let n = labels.len();
    let x = |i: usize| {
        if n == 1 { (LEFT + WIDTH - RIGHT) / 2.0 } else { LEFT + i as f64 * (WIDTH - LEFT - RIGHT) / (n - 1) as f64 }
    };
    let y = |v: f64| TOP + (hi - v.clamp(lo, hi)) / (hi - lo) * (HEIGHT - TOP - BOTTOM);
    for (i, label) in
        [0, n / 2, n - 1].into_iter().collect::<std::collections::BTreeSet<_>>().into_iter().map(|i| (i, &labels[i]))
    {
        let anchor = if i == 0 {
            "start"
        } else if i == n - 1 {
            "end"
        } else {
            "middle"
        };
        let _ = write!(
            out,
            r#"<text class="axis" x="{:.1}" y="{}" text-anchor="{anchor}">{}</text>"#,
            x(i),
            HEIGHT - 8.0,
            escape(label)
        );
    }
    for s in series {
        let points: Vec<String> =
            s.values.iter().enumerate().map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v))).collect();
        let _ = write!(
            out,
            r#"<g class="series {}"><polyline fill="none" points="{}"/>"#,
            escape(s.class),
            points.join(" ")
        );
        for (i, v) in s.values.iter().enumerate() {
            let _ = write!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2.5"><title>{}: {} on {}</title></circle>"#,
                x(i),
                y(*v),
                escape(s.name),
                number(*v),
                escape(&labels[i])
            );
        }
        out.push_str("</g>");
    }
    if series.len() > 1 {
        let mut lx = LEFT + 4.0;
        for s in series {
            let _ = write!(
                out,
                r#"<g class="series {}"><rect x="{lx:.1}" y="2" width="10" height="4"/></g><text class="legend" x="{:.1}" y="9">{}</text>"#,
                escape(s.class),
                lx + 14.0,
                escape(s.name)
            );
            lx += 24.0 + 7.0 * s.name.len() as f64;
        }
    }
    out.push_str("</svg>");
    out
}

/// Bars with their values on top: a distribution over `labels`.
pub(crate) fn bars(title: &str, labels: &[String], values: &[f64], classes: &[&str]) -> String {
    let mut out = String::new();
    let total: f64 = values.iter().sum();
    let description =
        labels.iter().zip(values).map(|(l, v)| format!("{l}: {}", number(*v))).collect::<Vec<_>>().join(", ");
    open(&mut out, title, &format!("{description}. Total {}.", number(total)));
    let (lo, hi, step) = y_range(values.iter().copied(), None);
    grid(&mut out, lo, hi, step);
    let n = values.len().max(1) as f64;
    let slot = (WIDTH - LEFT - RIGHT) / n;
    for (i, (label, v)) in labels.iter().zip(values).enumerate() {
        let h = (v - lo) / (hi - lo) * (HEIGHT - TOP - BOTTOM);
        let x = LEFT + i as f64 * slot + slot * 0.1;
        let y = HEIGHT - BOTTOM - h;
        let class = classes.get(i).copied().unwrap_or("s1");
        let _ = write!(
            out,
            r#"<g class="bar {}"><rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{h:.1}"><title>{}: {}</title></rect></g><text class="value" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text class="axis" x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            escape(class),
            slot * 0.8,
            escape(label),
            number(*v),
            x + slot * 0.4,
            (y - 3.0).max(TOP - 2.0),
            number(*v),
            x + slot * 0.4,
            HEIGHT - 8.0,
            escape(label)
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(svg: &str, needle: &str) -> usize {
        svg.matches(needle).count()
    }

    #[test]
    fn steps_are_round() {
        assert_eq!(nice_step(100.0, 4.0), 50.0);
        assert_eq!(nice_step(7.0, 4.0), 2.0);
        assert_eq!(nice_step(0.9, 4.0), 0.5);
        assert_eq!(y_range([3.0, 17.0].into_iter(), None), (0.0, 20.0, 5.0));
        assert_eq!(y_range([-3.0, 4.0].into_iter(), None), (-4.0, 4.0, 2.0));
    }

    #[test]
    fn a_line_has_a_point_per_value_placed_by_its_value() {
        let labels: Vec<String> = ["2026-10-01", "2026-10-02", "2026-10-03"].map(String::from).to_vec();
        let svg = line(
            "Health",
            &labels,
            &[Series { name: "health", class: "s1", values: vec![0.0, 50.0, 100.0] }],
            Some((0.0, 100.0)),
        );
        assert_eq!(count(&svg, "<circle"), 3);
        // 0 sits on the bottom line, 100 on the top one, the middle value half way.
        let bottom = HEIGHT - BOTTOM;
        assert!(svg.contains(&format!("{LEFT:.1},{bottom:.1} ")), "{svg}");
        assert!(svg.contains(&format!("{:.1},{TOP:.1}\"", WIDTH - RIGHT)), "{svg}");
        assert!(svg.contains(&format!("{:.1},{:.1} ", (LEFT + WIDTH - RIGHT) / 2.0, (TOP + bottom) / 2.0)));
        assert!(svg.contains("<desc>From 2026-10-01 to 2026-10-03; latest: health 100.</desc>"));
    }

    #[test]
    fn an_empty_chart_says_so() {
        let svg = line("Nothing", &[], &[], None);
        assert!(svg.contains("No data yet"));
        assert_eq!(count(&svg, "<circle"), 0);
    }

    #[test]
    fn bars_are_as_tall_as_their_share_of_the_axis() {
        let labels: Vec<String> = ["a", "b<c"].map(String::from).to_vec();
        let svg = bars("Bands", &labels, &[10.0, 20.0], &["s1", "s2"]);
        let full = HEIGHT - TOP - BOTTOM;
        assert!(svg.contains(&format!(r#"height="{:.1}""#, full / 2.0)), "{svg}");
        assert!(svg.contains(&format!(r#"height="{full:.1}""#)));
        assert!(svg.contains("b&lt;c"), "labels are escaped");
        assert!(svg.contains("Total 30."));
    }
}
