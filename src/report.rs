//! `report.html`: one self-contained page (inline CSS and SVG, no scripts, no
//! network) with the funnel, the per-stage counts, each stage's score histograms
//! split by what it did (with the records nearest its threshold), rejected samples,
//! the sections that stages contribute, and kept/rejected per source.
//!
//! The page is a minijinja template (`src/report/report.html`) rendered with HTML
//! auto-escaping, so record text and file names are escaped by the engine, never
//! by hand; this module only computes what the template shows (geometry included,
//! as fixed-decimal strings, so the page is the same bytes for the same books).

use anyhow::{Context, Result};
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;

use crate::config::Pipeline;
use crate::stage::Flags;
use crate::stats::{RejectSample, RunStats, ScoreExample, ScoreStats, SourceRejections, SCORE_BINS};

/// Rejection reasons shown per source.
const TOP_REASONS: usize = 3;

/// Escape text for HTML element content and attribute values (for the fragments
/// stages still build by hand; the report itself is escaped by its template engine).
pub fn escape(s: &str) -> String {
    minijinja::HtmlEscape(s).to_string()
}

/// Render an HTML template with auto-escaping: `{{ x }}` is escaped, `{{ x|safe }}` is not.
pub fn render_html(name: &str, source: &str, ctx: impl Serialize) -> Result<String> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::Html);
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Block tags on their own lines leave no blank lines behind; the file's last newline stays.
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()?,
    );
    env.add_template(name, source)
        .with_context(|| format!("template {name}: syntax error"))?;
    env.get_template(name)?
        .render(minijinja::Value::from(minijinja::value::Serde(ctx)))
        .with_context(|| format!("template {name}: cannot render"))
}

/// Render the report for a finished run; `sections` are (stage name, HTML fragment).
pub fn render(stats: &RunStats, pipeline: &Pipeline, sections: &[(String, String)]) -> Result<String> {
    let pct = if stats.input > 0 {
        100.0 * stats.kept as f64 / stats.input as f64
    } else {
        0.0
    };
    let page = Page {
        pipeline: pipeline.path.display().to_string(),
        version: env!("CARGO_PKG_VERSION"),
        stats,
        kept_pct: format!("{pct:.1}"),
        mb: format!("{:.1}", stats.bytes_in as f64 / 1e6),
        seconds: format!("{:.2}", stats.seconds),
        cpu_seconds: format!("{:.2}", stats.cpu_seconds),
        funnel: funnel(stats),
        stages: stats
            .stages
            .iter()
            .map(|s| StageRow {
                name: &s.name,
                kind: &s.kind,
                input: s.input,
                kept: s.kept,
                dropped: s.dropped,
                modified: s.modified,
                tagged: s.tagged,
                cpu_seconds: format!("{:.2}", s.cpu_seconds),
                reasons: s.reasons.iter().map(|(r, n)| (r.as_str(), *n)).collect(),
            })
            .collect(),
        scores: stats
            .stages
            .iter()
            .filter(|s| s.scores.iter().any(|c| c.total() > 0))
            .map(|s| StageScores {
                name: &s.name,
                kind: &s.kind,
                charts: s.scores.iter().filter(|c| c.total() > 0).map(chart).collect(),
            })
            .collect(),
        samples: samples_in_stage_order(stats),
        sections: sections
            .iter()
            .map(|(name, html)| Section { name, html })
            .collect(),
        sources: stats
            .sources
            .iter()
            .map(|s| {
                let top: Vec<&SourceRejections> = s.rejections.iter().take(TOP_REASONS).collect();
                let shown: u64 = top.iter().map(|r| r.records).sum();
                SourceRow {
                    name: &s.name,
                    records: s.records,
                    kept: s.kept,
                    rejected: s.rejected,
                    bytes: s.bytes,
                    top,
                    more: s.rejected.saturating_sub(shown),
                    notes: s.notes.join("; "),
                }
            })
            .collect(),
    };
    render_html("report.html", include_str!("report/report.html"), &page)
}

#[derive(Serialize)]
struct Page<'a> {
    pipeline: String,
    version: &'static str,
    stats: &'a RunStats,
    kept_pct: String,
    mb: String,
    seconds: String,
    cpu_seconds: String,
    funnel: Funnel<'a>,
    stages: Vec<StageRow<'a>>,
    scores: Vec<StageScores<'a>>,
    samples: Vec<&'a RejectSample>,
    sections: Vec<Section<'a>>,
    sources: Vec<SourceRow<'a>>,
}

#[derive(Serialize)]
struct StageRow<'a> {
    name: &'a str,
    kind: &'a str,
    input: u64,
    kept: u64,
    dropped: u64,
    modified: u64,
    tagged: u64,
    cpu_seconds: String,
    reasons: Vec<(&'a str, u64)>,
}

#[derive(Serialize)]
struct Section<'a> {
    name: &'a str,
    /// Already-escaped HTML from the stage (`Stage::report_html`).
    html: &'a str,
}

#[derive(Serialize)]
struct SourceRow<'a> {
    name: &'a str,
    records: u64,
    kept: u64,
    rejected: u64,
    bytes: u64,
    top: Vec<&'a SourceRejections>,
    /// Rejections not in `top`.
    more: u64,
    notes: String,
}

/// Rejected samples grouped by stage (pipeline order) and reason; input order within a group.
fn samples_in_stage_order(stats: &RunStats) -> Vec<&RejectSample> {
    let pos = |name: &str| {
        stats
            .stages
            .iter()
            .position(|s| s.name == name)
            .unwrap_or(usize::MAX)
    };
    let mut samples: Vec<&RejectSample> = stats.samples.iter().collect();
    samples.sort_by(|a, b| pos(&a.stage).cmp(&pos(&b.stage)).then(a.reason.cmp(&b.reason)));
    samples
}

#[derive(Serialize)]
struct Funnel<'a> {
    width: f64,
    height: f64,
    label_x: f64,
    bar_x: f64,
    rows: Vec<FunnelRow<'a>>,
}

#[derive(Serialize)]
struct FunnelRow<'a> {
    name: &'a str,
    y: String,
    text_y: String,
    kept: u64,
    kept_w: String,
    tagged: u64,
    tagged_x: String,
    tagged_w: String,
    dropped: u64,
    drop_x: String,
    drop_w: String,
    modified: u64,
    note_x: String,
}

/// The funnel's bars: kept (its tagged part marked) and dropped, per stage.
fn funnel(stats: &RunStats) -> Funnel<'_> {
    let (width, label_w, row_h) = (760.0, 170.0, 26.0);
    let bar_w = width - label_w - 250.0;
    let max = stats.input.max(1) as f64;
    let px = |x: f64| format!("{x:.1}");
    let rows = stats
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let y = 5.0 + i as f64 * row_h;
            let kept_w = bar_w * s.kept as f64 / max;
            let tagged_w = bar_w * s.tagged.min(s.kept) as f64 / max;
            let drop_w = bar_w * s.dropped as f64 / max;
            FunnelRow {
                name: &s.name,
                y: px(y),
                text_y: px(y + 14.0),
                kept: s.kept,
                kept_w: px(kept_w),
                tagged: s.tagged,
                tagged_x: px(label_w + kept_w - tagged_w),
                tagged_w: px(tagged_w),
                dropped: s.dropped,
                drop_x: px(label_w + kept_w),
                drop_w: px(drop_w),
                modified: s.modified,
                note_x: px(label_w + kept_w + drop_w + 6.0),
            }
        })
        .collect();
    Funnel {
        width,
        height: row_h * stats.stages.len() as f64 + 10.0,
        label_x: label_w - 8.0,
        bar_x: label_w,
        rows,
    }
}

#[derive(Serialize)]
struct StageScores<'a> {
    name: &'a str,
    kind: &'a str,
    charts: Vec<Chart<'a>>,
}

#[derive(Serialize)]
struct Chart<'a> {
    key: &'a str,
    field: &'a str,
    threshold: String,
    /// `≥ 0.9`, `> 0.5`, `< 0.2`.
    rule: String,
    total: u64,
    passed: u64,
    tagged: u64,
    dropped: u64,
    /// Records whose value is on the flagged side of the threshold.
    on_flagged_side: u64,
    max: u64,
    lo: String,
    hi: String,
    bar_w: String,
    bars: Vec<Bar>,
    threshold_x: String,
    /// `start`, `middle` or `end`: the threshold's label stays inside the chart.
    threshold_anchor: &'static str,
    /// The shaded flagged side.
    flag_x: String,
    flag_w: String,
    near_pass: Vec<Example<'a>>,
    near_flag: Vec<Example<'a>>,
}

#[derive(Serialize)]
struct Bar {
    label: String,
    x: String,
    passed: u64,
    tagged: u64,
    dropped: u64,
    /// Stacked from the axis up: passed, tagged, dropped.
    segments: Vec<Segment>,
}

#[derive(Serialize)]
struct Segment {
    y: String,
    h: String,
    color: &'static str,
}

#[derive(Serialize)]
struct Example<'a> {
    value: String,
    outcome: crate::stats::Outcome,
    id: &'a str,
    origin: &'a str,
    preview: &'a str,
}

/// Plot area of a histogram (SVG units): x from `X0` to `X1`, the axis at `Y1`.
const X0: f64 = 40.0;
const X1: f64 = 430.0;
const Y0: f64 = 18.0;
const Y1: f64 = 120.0;

/// A value as the report prints it: up to four decimals, no trailing zeros.
fn num(v: f64) -> String {
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

fn example(e: &ScoreExample) -> Example<'_> {
    Example {
        value: num(e.value),
        outcome: e.outcome,
        id: &e.id,
        origin: &e.origin,
        preview: &e.preview,
    }
}

/// One score's histogram and examples, laid out for the template.
fn chart(c: &ScoreStats) -> Chart<'_> {
    let px = |x: f64| format!("{x:.1}");
    let [lo, hi] = c.score.range;
    let sx = |v: f64| X0 + ((v - lo) / (hi - lo)).clamp(0.0, 1.0) * (X1 - X0);
    let step = (X1 - X0) / SCORE_BINS as f64;
    let totals: Vec<u64> = (0..SCORE_BINS)
        .map(|b| c.passed[b] + c.tagged[b] + c.dropped[b])
        .collect();
    let max = totals.iter().copied().max().unwrap_or(0);
    // Square-root heights: one record in a bin stays visible beside thousands.
    let scale = (Y1 - Y0) / (max.max(1) as f64).sqrt();
    let bars = (0..SCORE_BINS)
        .filter(|&b| totals[b] > 0)
        .map(|b| {
            let height = (totals[b] as f64).sqrt() * scale;
            let mut y = Y1;
            let mut segments = Vec::new();
            for (n, color) in [
                (c.passed[b], "#3b82f6"),
                (c.tagged[b], "#f59e0b"),
                (c.dropped[b], "#ef4444"),
            ] {
                if n == 0 {
                    continue;
                }
                let h = height * n as f64 / totals[b] as f64;
                y -= h;
                segments.push(Segment {
                    y: px(y),
                    h: px(h),
                    color,
                });
            }
            let from = lo + (hi - lo) * b as f64 / SCORE_BINS as f64;
            let to = lo + (hi - lo) * (b + 1) as f64 / SCORE_BINS as f64;
            Bar {
                label: format!("{} to {}", num(from), num(to)),
                x: px(X0 + step * b as f64 + 0.75),
                passed: c.passed[b],
                tagged: c.tagged[b],
                dropped: c.dropped[b],
                segments,
            }
        })
        .collect();
    let t = c.score.threshold;
    let tx = sx(t);
    let (flag_x, flag_w) = match c.score.flags {
        Flags::AtOrAbove | Flags::Above => (tx, X1 - tx),
        Flags::Below => (X0, tx - X0),
    };
    let rule = match c.score.flags {
        Flags::AtOrAbove => format!("≥ {}", num(t)),
        Flags::Above => format!("> {}", num(t)),
        Flags::Below => format!("< {}", num(t)),
    };
    Chart {
        key: &c.score.key,
        field: &c.score.field,
        threshold: num(t),
        rule,
        total: c.total(),
        passed: c.passed.iter().sum(),
        tagged: c.tagged.iter().sum(),
        dropped: c.dropped.iter().sum(),
        on_flagged_side: c.flagged_side,
        max,
        lo: num(lo),
        hi: num(hi),
        bar_w: px(step - 1.5),
        bars,
        threshold_x: px(tx),
        threshold_anchor: if tx < X0 + 50.0 {
            "start"
        } else if tx > X1 - 50.0 {
            "end"
        } else {
            "middle"
        },
        flag_x: px(flag_x),
        flag_w: px(flag_w),
        near_pass: c
            .near_threshold
            .iter()
            .filter(|e| !e.flagged_side)
            .map(example)
            .collect(),
        near_flag: c
            .near_threshold
            .iter()
            .filter(|e| e.flagged_side)
            .map(example)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_markup() {
        assert_eq!(
            super::escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#x27;"
        );
    }

    #[test]
    fn template_escapes_values_but_not_safe_ones() {
        let html = super::render_html(
            "t.html",
            "{{ a }}|{{ b|safe }}",
            minijinja::context! { a => "<script>", b => "<b>x</b>" },
        )
        .unwrap();
        assert_eq!(html, "&lt;script&gt;|<b>x</b>");
    }
}
