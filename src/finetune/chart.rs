//! Loss curves as an inline SVG line chart (no JavaScript, no external files), for
//! `report.html` and `compare.html`.

use std::fmt::Write;

use crate::report::escape;

/// One curve: a legend name, a CSS colour, points (x, y), dashed or solid.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub color: &'static str,
    pub dashed: bool,
    pub points: Vec<(f64, f64)>,
}

/// Colours that stay apart for up to eight curves.
pub const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// A round tick step giving about `n` ticks over `span`.
fn tick_step(span: f64, n: f64) -> f64 {
    let raw = (span / n).max(1e-12);
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    mag * if norm < 1.5 {
        1.0
    } else if norm < 3.5 {
        2.0
    } else if norm < 7.5 {
        5.0
    } else {
        10.0
    }
}

/// An SVG line chart of `series` with axis labels; empty series are skipped.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let (w, h) = (720.0, 360.0);
    let (left, right, top, bottom) = (60.0, 170.0, 30.0, 45.0);
    let finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().filter(finite).copied())
        .collect();
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        svg,
        r#"<text x="{left}" y="18" font-size="13" font-weight="bold">{}</text>"#,
        escape(title)
    );
    if all.is_empty() {
        svg.push_str(r#"<text x="60" y="60">no data</text></svg>"#);
        return svg;
    }
    let (mut x0, mut x1) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (mut y0, mut y1) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    let pad = (y1 - y0) * 0.05;
    y0 -= pad;
    y1 += pad;
    x0 = x0.min(0.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let sx = |x: f64| left + (x - x0) / (x1 - x0) * pw;
    let sy = |y: f64| top + (1.0 - (y - y0) / (y1 - y0)) * ph;
    let _ = write!(
        svg,
        r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>"##
    );
    let ys = tick_step(y1 - y0, 5.0);
    let mut y = (y0 / ys).ceil() * ys;
    while y <= y1 {
        let py = sy(y);
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{}" y1="{py:.1}" y2="{py:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            left + pw,
            left - 4.0,
            py + 4.0,
            trim_num(y, ys)
        );
        y += ys;
    }
    let xs = tick_step(x1 - x0, 6.0);
    let mut x = (x0 / xs).ceil() * xs;
    while x <= x1 {
        let px = sx(x);
        let _ = write!(
            svg,
            r##"<line x1="{px:.1}" x2="{px:.1}" y1="{top}" y2="{}" stroke="#eee"/><text x="{px:.1}" y="{}" text-anchor="middle">{}</text>"##,
            top + ph,
            top + ph + 14.0,
            trim_num(x, xs)
        );
        x += xs;
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text><text x="14" y="{}" transform="rotate(-90 14 {})" text-anchor="middle">{}</text>"#,
        left + pw / 2.0,
        h - 8.0,
        escape(x_label),
        top + ph / 2.0,
        top + ph / 2.0,
        escape(y_label)
    );
    for (i, s) in series.iter().enumerate() {
        let pts: Vec<String> = s
            .points
            .iter()
            .filter(finite)
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        if pts.is_empty() {
            continue;
        }
        let dash = if s.dashed {
            r#" stroke-dasharray="5,3""#
        } else {
            ""
        };
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.6"{dash} points="{}"/>"#,
            s.color,
            pts.join(" ")
        );
        if s.points.len() <= 40 {
            for p in &pts {
                let (cx, cy) = p.split_once(',').unwrap_or(("0", "0"));
                let _ = write!(svg, r#"<circle cx="{cx}" cy="{cy}" r="2.2" fill="{}"/>"#, s.color);
            }
        }
        let ly = top + 10.0 + i as f64 * 16.0;
        let lx = left + pw + 10.0;
        let _ = write!(
            svg,
            r#"<line x1="{lx}" x2="{}" y1="{ly}" y2="{ly}" stroke="{}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
            lx + 18.0,
            s.color,
            lx + 22.0,
            ly + 4.0,
            escape(&s.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn trim_num(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    format!("{v:.decimals$}")
}

/// Running mean over `k` points (smooths noisy per-step training losses for display).
pub fn smooth(points: &[(f64, f64)], k: usize) -> Vec<(f64, f64)> {
    if k <= 1 {
        return points.to_vec();
    }
    let mut out = Vec::with_capacity(points.len());
    let mut sum = 0.0;
    for (i, &(x, y)) in points.iter().enumerate() {
        sum += y;
        if i >= k {
            sum -= points[i - k].1;
        }
        let n = (i + 1).min(k) as f64;
        out.push((x, sum / n));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_has_a_polyline_per_series_and_escapes_names() {
        let s = |name: &str, c| Series {
            name: name.into(),
            color: c,
            dashed: false,
            points: vec![(1.0, 3.0), (2.0, 2.5), (3.0, 2.4)],
        };
        let svg = line_chart(
            "loss",
            "step",
            "nats",
            &[s("train <raw>", PALETTE[0]), s("val", PALETTE[1])],
        );
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("train &lt;raw&gt;"));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(line_chart("x", "a", "b", &[]).contains("no data"));
    }
}
