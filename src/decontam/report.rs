//! Contamination accounting shared by the `decontaminate` stage and `curate audit`:
//! counts per benchmark and subject, the worst records, and their HTML section.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::index::{Hit, Index};

/// Counts for one benchmark or one subject.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counts {
    /// Records contaminated by at least one of its items.
    pub records: u64,
    /// Distinct items matched.
    pub items_matched: u64,
    /// Items it has.
    pub items: u64,
}

/// One of the worst records, kept for the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Worst {
    pub id: String,
    pub overlap: f64,
    /// Evidence kind of the best hit (`ngram`, `fuzzy`, `reordered`) and its score.
    #[serde(default)]
    pub evidence: String,
    #[serde(default)]
    pub score: f64,
    pub item: u32,
    pub text: String,
}

/// Running totals (mergeable, serializable for resume).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tally {
    pub scanned: u64,
    pub contaminated: u64,
    /// benchmark -> counts; subject key is `benchmark/subject`.
    pub benchmarks: BTreeMap<String, Counts>,
    pub subjects: BTreeMap<String, Counts>,
    /// item index -> records hit, for `items_matched`.
    pub item_hits: BTreeMap<u32, u64>,
    pub worst: Vec<Worst>,
}

/// The record text kept for a worst-record entry (characters).
const KEEP_CHARS: usize = 2000;

impl Tally {
    /// Count one scanned record with its hits; keep it among the `keep` worst.
    pub fn add(&mut self, ix: &Index, id: &str, text: &str, hits: &[Hit], keep: usize) {
        self.scanned += 1;
        if hits.is_empty() {
            return;
        }
        self.contaminated += 1;
        let mut benches: Vec<&str> = Vec::new();
        let mut subjects: Vec<String> = Vec::new();
        for h in hits {
            let it = &ix.items[h.item as usize];
            benches.push(&it.benchmark);
            subjects.push(format!("{}/{}", it.benchmark, it.subject));
            *self.item_hits.entry(h.item).or_default() += 1;
        }
        benches.sort_unstable();
        benches.dedup();
        subjects.sort_unstable();
        subjects.dedup();
        for b in benches {
            self.benchmarks.entry(b.to_string()).or_default().records += 1;
        }
        for s in subjects {
            self.subjects.entry(s).or_default().records += 1;
        }
        let best = &hits[0];
        let worse = |w: &Worst| (-(w.overlap), w.id.clone());
        if self.worst.len() < keep
            || self
                .worst
                .last()
                .is_some_and(|w| worse(w) > (-best.overlap, id.to_string()))
        {
            self.worst.push(Worst {
                id: id.to_string(),
                overlap: best.overlap,
                evidence: best.evidence.as_str().to_string(),
                score: best.score,
                item: best.item,
                text: text.chars().take(KEEP_CHARS).collect(),
            });
            self.worst
                .sort_by(|a, b| b.overlap.total_cmp(&a.overlap).then(a.id.cmp(&b.id)));
            self.worst.truncate(keep);
        }
    }

    /// Fill in item totals (`items`, `items_matched`) from the index.
    pub fn finish(&mut self, ix: &Index) {
        for c in self.benchmarks.values_mut().chain(self.subjects.values_mut()) {
            c.items = 0;
            c.items_matched = 0;
        }
        for (i, it) in ix.items.iter().enumerate() {
            let matched = self.item_hits.contains_key(&(i as u32)) as u64;
            let b = self.benchmarks.entry(it.benchmark.clone()).or_default();
            b.items += 1;
            b.items_matched += matched;
            if matched > 0 {
                let s = self
                    .subjects
                    .entry(format!("{}/{}", it.benchmark, it.subject))
                    .or_default();
                s.items_matched += 1;
            }
            if let Some(s) = self.subjects.get_mut(&format!("{}/{}", it.benchmark, it.subject)) {
                s.items += 1;
            }
        }
    }

    /// The numbers as JSON (`stats.json` summary, `audit.json`).
    pub fn to_json(&self, ix: &Index) -> Value {
        let rate = |n: u64| {
            if self.scanned == 0 {
                0.0
            } else {
                n as f64 / self.scanned as f64
            }
        };
        let per = |m: &BTreeMap<String, Counts>| -> Value {
            m.iter()
                .map(|(k, c)| {
                    (
                        k.clone(),
                        json!({"records": c.records, "rate": rate(c.records), "items": c.items, "items_matched": c.items_matched}),
                    )
                })
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        json!({
            "scanned": self.scanned,
            "contaminated": self.contaminated,
            "rate": rate(self.contaminated),
            "benchmarks": per(&self.benchmarks),
            "subjects": per(&self.subjects),
            "index": {"items": ix.items.len(), "ngrams": ix.len(), "common_ngrams_dropped": ix.common, "unmatchable_items": ix.unmatchable()},
            "worst": self.worst.iter().map(|w| {
                let it = &ix.items[w.item as usize];
                json!({"id": w.id, "overlap": w.overlap, "evidence": w.evidence, "score": w.score, "benchmark": it.benchmark, "split": it.split, "subject": it.subject, "row": it.row})
            }).collect::<Vec<_>>(),
        })
    }

    /// An HTML section: rates per benchmark and subject, worst records side by side.
    pub fn html(&self, ix: &Index) -> anyhow::Result<String> {
        let pct = |n: u64| {
            if self.scanned == 0 {
                0.0
            } else {
                100.0 * n as f64 / self.scanned as f64
            }
        };
        let row = |name: &str, c: &Counts| {
            json!({
                "name": name,
                "records": c.records,
                "rate": format!("{:.3}", pct(c.records)),
                "matched": format!("{} / {}", c.items_matched, c.items),
            })
        };
        let benchmarks: Vec<Value> = self
            .benchmarks
            .iter()
            .map(|(b, c)| {
                let subjects: Vec<Value> = self
                    .subjects
                    .range(format!("{b}/")..format!("{b}0"))
                    .filter(|(_, c)| c.records > 0)
                    .map(|(s, c)| row(s.split_once('/').map_or(s.as_str(), |x| x.1), c))
                    .collect();
                let mut r = row(b, c);
                r["subjects"] = json!(subjects);
                r
            })
            .collect();
        let worst: Vec<Value> = self
            .worst
            .iter()
            .map(|w| {
                let it = &ix.items[w.item as usize];
                let mut item_text = it.question.clone();
                for (l, o) in ["A", "B", "C", "D"].iter().zip(&it.options) {
                    let _ = write!(item_text, "\n{l}. {o}");
                }
                json!({
                    "id": w.id,
                    "evidence": w.evidence,
                    "score": format!("{:.2}", w.score),
                    "overlap": format!("{:.2}", w.overlap),
                    "text": highlight(ix, &w.text, w.item),
                    "item": format!("{} {} {} #{}", it.benchmark, it.subject, it.split, it.row),
                    "item_text": highlight(ix, &item_text, w.item),
                })
            })
            .collect();
        let ctx = json!({
            "contaminated": self.contaminated,
            "scanned": self.scanned,
            "rate": format!("{:.3}", pct(self.contaminated)),
            "items": ix.items.len(),
            "ngrams": ix.len(),
            "common": ix.common,
            "unmatchable": ix.unmatchable(),
            "benchmarks": benchmarks,
            "worst": worst,
        });
        crate::report::render_html("decontaminate.html", SECTION_TEMPLATE, ctx)
    }
}

/// The section of `report.html` and `audit.html` (auto-escaped: `crate::report::render_html`).
const SECTION_TEMPLATE: &str = r#"{% macro marked(pieces) %}{% for text, mark in pieces %}{% if mark %}<mark>{{ text }}</mark>{% else %}{{ text }}{% endif %}{% endfor %}{% endmacro %}
<p>{{ contaminated }} of {{ scanned }} records contaminated ({{ rate }}%). Index: {{ items }} items, {{ ngrams }} n-grams, {{ common }} common n-grams ignored, {{ unmatchable }} items unmatchable.</p>
<table><tr><th>benchmark / subject</th><th>records</th><th>rate</th><th>items matched</th></tr>
{% for b in benchmarks %}<tr><td><b>{{ b.name }}</b></td><td>{{ b.records }}</td><td>{{ b.rate }}%</td><td>{{ b.matched }}</td></tr>
{% for s in b.subjects %}<tr><td>&nbsp;&nbsp;{{ s.name }}</td><td>{{ s.records }}</td><td>{{ s.rate }}%</td><td>{{ s.matched }}</td></tr>
{% endfor %}{% endfor %}</table>
{% if worst %}<h3>Most contaminated records</h3><table><tr><th>record</th><th>benchmark item</th></tr>
{% for w in worst %}<tr><td style="vertical-align:top;white-space:pre-wrap"><b>{{ w.id }}</b> ({{ w.evidence }} {{ w.score }}, n-gram overlap {{ w.overlap }})
{{ marked(w.text) }}</td><td style="vertical-align:top;white-space:pre-wrap"><b>{{ w.item }}</b>
{{ marked(w.item_text) }}</td></tr>
{% endfor %}</table>
{% endif %}"#;

/// `text` (t2s-converted) in pieces, each paired with whether it is an n-gram shared
/// with `item` (the report marks those).
pub fn highlight(ix: &Index, text: &str, item: u32) -> Vec<(String, bool)> {
    let (conv, spans) = ix.spans(text, item);
    let mut out = Vec::new();
    let mut at = 0;
    for (s, e) in spans {
        if s > at {
            out.push((conv[at..s].to_string(), false));
        }
        out.push((conv[s..e].to_string(), true));
        at = e;
    }
    if at < conv.len() {
        out.push((conv[at..].to_string(), false));
    }
    out
}
