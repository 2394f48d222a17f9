//! Contamination accounting shared by the `decontaminate` stage and `curate audit`:
//! counts per benchmark and subject, the worst records, and their HTML section.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::index::{Hit, Index};
use crate::report::escape;

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
    pub fn html(&self, ix: &Index) -> String {
        let mut h = String::new();
        let pct = |n: u64| {
            if self.scanned == 0 {
                0.0
            } else {
                100.0 * n as f64 / self.scanned as f64
            }
        };
        let _ = write!(
            h,
            "<p>{} of {} records contaminated ({:.3}%). Index: {} items, {} n-grams, {} common n-grams ignored, {} items unmatchable.</p>",
            self.contaminated,
            self.scanned,
            pct(self.contaminated),
            ix.items.len(),
            ix.len(),
            ix.common,
            ix.unmatchable()
        );
        h.push_str(
            "<table><tr><th>benchmark / subject</th><th>records</th><th>rate</th><th>items matched</th></tr>",
        );
        for (b, c) in &self.benchmarks {
            let _ = write!(
                h,
                "<tr><td><b>{}</b></td><td>{}</td><td>{:.3}%</td><td>{} / {}</td></tr>",
                escape(b),
                c.records,
                pct(c.records),
                c.items_matched,
                c.items
            );
            for (s, c) in self.subjects.range(format!("{b}/")..format!("{b}0")) {
                if c.records == 0 {
                    continue;
                }
                let _ = write!(
                    h,
                    "<tr><td>&nbsp;&nbsp;{}</td><td>{}</td><td>{:.3}%</td><td>{} / {}</td></tr>",
                    escape(s.split_once('/').map_or(s.as_str(), |x| x.1)),
                    c.records,
                    pct(c.records),
                    c.items_matched,
                    c.items
                );
            }
        }
        h.push_str("</table>");
        if !self.worst.is_empty() {
            h.push_str(
                "<h3>Most contaminated records</h3><table><tr><th>record</th><th>benchmark item</th></tr>",
            );
            for w in &self.worst {
                let it = &ix.items[w.item as usize];
                let mut item_text = it.question.clone();
                for (l, o) in ["A", "B", "C", "D"].iter().zip(&it.options) {
                    let _ = write!(item_text, "\n{l}. {o}");
                }
                let _ = write!(
                    h,
                    "<tr><td style=\"vertical-align:top;white-space:pre-wrap\"><b>{}</b> ({} {:.2}, n-gram overlap {:.2})\n{}</td><td style=\"vertical-align:top;white-space:pre-wrap\"><b>{} {} {} #{}</b>\n{}</td></tr>",
                    escape(&w.id),
                    escape(&w.evidence),
                    w.score,
                    w.overlap,
                    highlight(ix, &w.text, w.item),
                    escape(&it.benchmark),
                    escape(&it.subject),
                    escape(&it.split),
                    it.row,
                    highlight(ix, &item_text, w.item)
                );
            }
            h.push_str("</table>");
        }
        h
    }
}

/// `text` (t2s-converted) escaped, with the n-grams it shares with `item` in `<mark>`.
pub fn highlight(ix: &Index, text: &str, item: u32) -> String {
    let (conv, spans) = ix.spans(text, item);
    let mut out = String::new();
    let mut at = 0;
    for (s, e) in spans {
        out.push_str(&escape(&conv[at..s]));
        out.push_str("<mark>");
        out.push_str(&escape(&conv[s..e]));
        out.push_str("</mark>");
        at = e;
    }
    out.push_str(&escape(&conv[at..]));
    out
}
