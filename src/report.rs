//! `report.html`: one self-contained page (inline CSS and SVG, no scripts, no
//! network) with the funnel, the per-stage counts, rejected samples and the
//! sections that stages contribute.

use std::fmt::Write;

use crate::config::Pipeline;
use crate::stats::RunStats;

/// Escape text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn funnel_svg(stats: &RunStats) -> String {
    let width = 760.0;
    let label_w = 170.0;
    let bar_w = width - label_w - 250.0;
    let row_h = 26.0;
    let h = row_h * stats.stages.len() as f64 + 10.0;
    let max = stats.input.max(1) as f64;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" role="img" aria-label="records kept and dropped per stage">"#
    );
    for (i, s) in stats.stages.iter().enumerate() {
        let y = 5.0 + i as f64 * row_h;
        let kept_w = bar_w * s.kept as f64 / max;
        let drop_w = bar_w * s.dropped as f64 / max;
        let _ = write!(
            svg,
            r##"<text x="{x}" y="{ty}" text-anchor="end" font-size="13">{name}</text><rect x="{bx}" y="{y}" width="{kept_w:.1}" height="18" fill="#3b82f6"><title>kept {kept}</title></rect><rect x="{dx:.1}" y="{y}" width="{drop_w:.1}" height="18" fill="#ef4444"><title>dropped {dropped}</title></rect><text x="{lx:.1}" y="{ty}" font-size="12">{kept} kept, {dropped} dropped{modified}{tagged}</text>"##,
            x = label_w - 8.0,
            ty = y + 14.0,
            name = escape(&s.name),
            bx = label_w,
            dx = label_w + kept_w,
            lx = label_w + kept_w + drop_w + 6.0,
            kept = s.kept,
            dropped = s.dropped,
            modified = if s.modified > 0 {
                format!(", {} modified", s.modified)
            } else {
                String::new()
            },
            tagged = if s.tagged > 0 {
                format!(", {} tagged", s.tagged)
            } else {
                String::new()
            },
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Render the report for a finished run; `sections` are (stage name, HTML fragment).
pub fn render(stats: &RunStats, pipeline: &Pipeline, sections: &[(String, String)]) -> String {
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>curate report</title><style>");
    h.push_str(
        "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1000px;color:#111;padding:0 1em}\
         table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}\
         td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f4f6}\
         .pre{white-space:pre-wrap;font-family:ui-monospace,monospace;font-size:12px;max-width:520px;overflow-wrap:anywhere}\
         .muted{color:#666}h2{margin-top:1.6em;border-bottom:1px solid #ddd}",
    );
    h.push_str("</style></head><body>\n");
    let pct = if stats.input > 0 {
        100.0 * stats.kept as f64 / stats.input as f64
    } else {
        0.0
    };
    let _ = write!(
        h,
        "<h1>curate report</h1><p class=\"muted\">pipeline {} &middot; curate {}</p>\
         <p><b>{}</b> input records &rarr; <b>{}</b> kept ({pct:.1}%), <b>{}</b> rejected &middot; {:.1} MB read in {:.2} s ({:.2} CPU-s)</p>",
        escape(&pipeline.path.display().to_string()),
        env!("CARGO_PKG_VERSION"),
        stats.input,
        stats.kept,
        stats.rejected,
        stats.bytes_in as f64 / 1e6,
        stats.seconds,
        stats.cpu_seconds,
    );
    h.push_str("<h2>Funnel</h2>");
    h.push_str(&funnel_svg(stats));
    h.push_str("<h2>Stages</h2><table><tr><th>stage</th><th>kind</th><th>in</th><th>kept</th><th>dropped</th><th>modified</th><th>tagged</th><th>CPU s</th><th>reasons</th></tr>");
    for s in &stats.stages {
        let reasons = s
            .reasons
            .iter()
            .map(|(r, n)| format!("{} {n}", escape(r)))
            .collect::<Vec<_>>()
            .join("<br>");
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{:.2}</td><td>{reasons}</td></tr>",
            escape(&s.name),
            escape(&s.kind),
            s.input,
            s.kept,
            s.dropped,
            s.modified,
            s.tagged,
            s.cpu_seconds
        );
    }
    h.push_str("</table>");
    if !stats.samples.is_empty() {
        h.push_str("<h2>Rejected samples</h2><table><tr><th>stage / reason</th><th>record</th><th>detail</th><th>text</th></tr>");
        // Grouped by stage (pipeline order) and reason; input order within a group.
        let pos = |name: &str| {
            stats
                .stages
                .iter()
                .position(|s| s.name == name)
                .unwrap_or(usize::MAX)
        };
        let mut samples: Vec<&crate::stats::RejectSample> = stats.samples.iter().collect();
        samples.sort_by(|a, b| pos(&a.stage).cmp(&pos(&b.stage)).then(a.reason.cmp(&b.reason)));
        for s in samples {
            let _ = write!(
                h,
                "<tr><td>{} / {}</td><td>{}<br><span class=muted>{}</span></td><td>{}</td><td class=pre>{}</td></tr>",
                escape(&s.stage),
                escape(&s.reason),
                escape(&s.id),
                escape(&s.origin),
                escape(&s.detail),
                escape(&s.preview)
            );
        }
        h.push_str("</table>");
    }
    for (name, html) in sections {
        let _ = write!(h, "<h2>Stage {}</h2>{html}", escape(name));
    }
    h.push_str("<h2>Sources</h2><table><tr><th>source</th><th>records</th><th>bytes</th><th>notes</th></tr>");
    for s in &stats.sources {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=n>{}</td><td class=n>{}</td><td>{}</td></tr>",
            escape(&s.name),
            s.records,
            s.bytes,
            escape(&s.notes.join("; "))
        );
    }
    h.push_str("</table></body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_markup() {
        assert_eq!(
            super::escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
