//! `decontaminate`: find records that contain benchmark items (MMLU, C-Eval,
//! CMMLU) and drop or tag them.
//!
//! Training on a benchmark's test questions inflates the scores a model gets on
//! it. The stage builds one n-gram index over every item of the `[[benchmark]]`
//! tables it names (once, at start; shared read-only by all workers) and checks
//! all text of each record against it: verbatim copies, options re-lettered or
//! reformatted, the question inside a longer prompt, the question without its
//! options, light edits, and question plus answer are caught; other exam
//! questions on the same subjects are not. Matching (normalization, n-gram
//! sizes, overlap, short items) is described in [`crate::decontam::index`].
//! Scanning runs at 50-100 MB/s per core (docs/benchmarks/decontam.md).
//!
//! ```toml
//! [[benchmark]]                    # top-level, one per benchmark
//! name = "ceval"
//! format = "ceval"                 # mmlu | ceval | cmmlu
//! path = "../data/ceval"           # release folder, split folder or one CSV
//!
//! [[stage]]
//! kind = "decontaminate"
//! benchmarks = ["ceval"]           # names of [[benchmark]] tables (default: all)
//! action = "drop"                  # drop | tag
//! ngram_en = 13                    # word n-grams for English items
//! ngram_zh = 8                     # character n-grams for Chinese items
//! threshold = 0.35                 # overlap from which a record is contaminated
//! max_items_per_ngram = 10         # n-grams shared by more items are ignored
//! verify_ngram_en = 5              # extra candidate word n-grams (0: off)
//! verify_threshold = 0.2           # n-gram overlap from which a candidate is aligned
//! keyword_threshold_en = 0.2       # keyword weight share from which a candidate is aligned
//! keyword_threshold_zh = 0.5
//! min_similarity = 0.8             # character alignment a candidate needs
//! report_records = 10              # worst records shown in the report
//! ```
//! `meta.decontam = {hits: [{benchmark, split, subject, row, evidence, score,
//! overlap}]}` on contaminated records (best first; `evidence` is `ngram`,
//! `fuzzy` or `reordered`, see [`crate::decontam::Evidence`]); reason `contaminated`.

use std::sync::{Arc, Mutex};

use anyhow::{bail, Result};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::decontam::report::Tally;
use crate::decontam::{build_index, BenchmarkSpec, Index, MatchConfig};
use crate::record::Record;
use crate::shape::Shape;
use crate::stage::{Action, BuildContext, Stage, Verdict};

/// `[[stage]] kind = "decontaminate"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecontamConfig {
    /// Names of `[[benchmark]]` tables to match against; all of them when absent.
    pub benchmarks: Option<Vec<String>>,
    #[serde(default)]
    pub action: Action,
    pub ngram_en: Option<usize>,
    pub ngram_zh: Option<usize>,
    pub threshold: Option<f64>,
    pub max_items_per_ngram: Option<usize>,
    pub verify_ngram_en: Option<usize>,
    pub min_similarity: Option<f64>,
    pub verify_threshold: Option<f64>,
    pub keyword_threshold_en: Option<f64>,
    pub keyword_threshold_zh: Option<f64>,
    pub letter_gram_en: Option<usize>,
    pub letter_threshold_en: Option<f64>,
    pub ngram_verify_below: Option<f64>,
    pub rare_word_threshold_en: Option<f64>,
    #[serde(default = "default_report_records")]
    pub report_records: usize,
    /// The pipeline's `[[benchmark]]` tables (paths resolved), filled in by the registry.
    #[serde(skip)]
    pub available: Vec<BenchmarkSpec>,
}

fn default_report_records() -> usize {
    10
}

/// The built stage.
pub struct Decontaminate {
    action: Action,
    index: Arc<Index>,
    specs: Vec<String>,
    keep: usize,
    tally: Mutex<Tally>,
}

impl DecontamConfig {
    fn matching(&self) -> MatchConfig {
        let d = MatchConfig::default();
        MatchConfig {
            ngram_en: self.ngram_en.unwrap_or(d.ngram_en),
            ngram_zh: self.ngram_zh.unwrap_or(d.ngram_zh),
            threshold: self.threshold.unwrap_or(d.threshold),
            max_items_per_ngram: self.max_items_per_ngram.unwrap_or(d.max_items_per_ngram),
            verify_ngram_en: self.verify_ngram_en.unwrap_or(d.verify_ngram_en),
            min_similarity: self.min_similarity.unwrap_or(d.min_similarity),
            verify_threshold: self.verify_threshold.unwrap_or(d.verify_threshold),
            keyword_threshold_en: self.keyword_threshold_en.unwrap_or(d.keyword_threshold_en),
            keyword_threshold_zh: self.keyword_threshold_zh.unwrap_or(d.keyword_threshold_zh),
            letter_gram_en: self.letter_gram_en.unwrap_or(d.letter_gram_en),
            letter_threshold_en: self.letter_threshold_en.unwrap_or(d.letter_threshold_en),
            ngram_verify_below: self.ngram_verify_below.unwrap_or(d.ngram_verify_below),
            rare_word_threshold_en: self.rare_word_threshold_en.unwrap_or(d.rare_word_threshold_en),
        }
    }
}

impl Decontaminate {
    /// Load the benchmarks and build the index.
    pub fn new(cfg: DecontamConfig, cx: &BuildContext) -> Result<Self> {
        if cfg.action == Action::Redact {
            bail!("decontaminate: action \"redact\" does not apply; use \"drop\" or \"tag\"");
        }
        let specs: Vec<BenchmarkSpec> = match &cfg.benchmarks {
            None => cfg.available.clone(),
            Some(names) => names
                .iter()
                .map(|n| {
                    cfg.available
                        .iter()
                        .find(|s| &s.name == n)
                        .cloned()
                        .ok_or_else(|| anyhow::anyhow!("decontaminate: no [[benchmark]] table named `{n}`"))
                })
                .collect::<Result<_>>()?,
        };
        if specs.is_empty() {
            bail!("decontaminate: no benchmarks; add [[benchmark]] tables (name, format, path)");
        }
        let specs: Vec<BenchmarkSpec> = specs
            .into_iter()
            .map(|mut s| {
                s.path = cx.resolve(&s.path);
                s
            })
            .collect();
        let index = build_index(&specs, cfg.matching())?;
        Ok(Decontaminate {
            action: cfg.action,
            index: Arc::new(index),
            specs: specs.iter().map(|s| s.name.clone()).collect(),
            keep: cfg.report_records,
            tally: Mutex::new(Tally::default()),
        })
    }

    /// The index, for tools that reuse it.
    pub fn index(&self) -> &Arc<Index> {
        &self.index
    }
}

/// `meta.decontam.hits` for a record's hits.
pub fn hits_json(ix: &Index, hits: &[crate::decontam::Hit]) -> Value {
    Value::Array(
        hits.iter()
            .map(|h| {
                let it = &ix.items[h.item as usize];
                json!({"benchmark": it.benchmark, "split": it.split, "subject": it.subject, "row": it.row, "evidence": h.evidence.as_str(), "score": (h.score * 1000.0).round() / 1000.0, "overlap": (h.overlap * 1000.0).round() / 1000.0})
            })
            .collect(),
    )
}

impl Stage for Decontaminate {
    fn kind(&self) -> &'static str {
        "decontaminate"
    }

    fn process(&self, record: &mut Record) -> Result<Verdict> {
        let text = record.full_text();
        let hits = self.index.scan(&text);
        {
            let mut t = self.tally.lock().unwrap_or_else(|e| e.into_inner());
            t.add(&self.index, &record.id, &text, &hits, self.keep);
        }
        if hits.is_empty() {
            return Ok(Verdict::Keep);
        }
        record.annotate("decontam", json!({ "hits": hits_json(&self.index, &hits) }));
        if self.action == Action::Tag {
            return Ok(Verdict::Tagged {
                reason: "contaminated".into(),
            });
        }
        let it = &self.index.items[hits[0].item as usize];
        Ok(Verdict::drop(
            "contaminated",
            format!(
                "{} {} {} #{} ({} {:.2}){}",
                it.benchmark,
                it.subject,
                it.split,
                it.row,
                hits[0].evidence.as_str(),
                hits[0].score,
                if hits.len() > 1 {
                    format!(" and {} more", hits.len() - 1)
                } else {
                    String::new()
                }
            ),
        ))
    }

    fn save_state(&self) -> Result<Option<Vec<u8>>> {
        let t = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        Ok(Some(serde_json::to_vec(&*t)?))
    }

    fn load_state(&mut self, state: &[u8]) -> Result<()> {
        *self.tally.get_mut().unwrap_or_else(|e| e.into_inner()) = serde_json::from_slice(state)?;
        Ok(())
    }

    fn summary(&self) -> Option<Value> {
        let mut t = self.tally.lock().unwrap_or_else(|e| e.into_inner()).clone();
        t.finish(&self.index);
        Some(t.to_json(&self.index))
    }

    fn report_html(&self) -> Option<String> {
        let mut t = self.tally.lock().unwrap_or_else(|e| e.into_inner()).clone();
        t.finish(&self.index);
        t.html(&self.index).ok()
    }

    fn annotations(&self) -> Vec<(&'static str, Shape)> {
        let hit = Shape::object(&[
            ("benchmark", Shape::Str),
            ("split", Shape::Str),
            ("subject", Shape::Str),
            ("row", Shape::Int),
            ("evidence", Shape::Str),
            ("score", Shape::Float),
            ("overlap", Shape::Float),
        ]);
        vec![("decontam", Shape::object(&[("hits", Shape::list(hit))]))]
    }

    fn describe(&self) -> String {
        let ix = &self.index;
        format!(
            "{} ({} items, {} n-grams), n = {} words / {} chars, threshold {}, action {:?}",
            self.specs.join(", "),
            ix.items.len(),
            ix.len(),
            ix.cfg.ngram_en,
            ix.cfg.ngram_zh,
            ix.cfg.threshold,
            self.action
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decontam::BenchFormat;
    use crate::stages::testing::{run, try_build_in};

    /// The stage over one C-Eval item written into `dir`.
    fn stage(extra: &str, dir: &std::path::Path) -> Result<Decontaminate> {
        std::fs::write(
            dir.join("net_val.csv"),
            "id,question,A,B,C,D,answer,explanation\n0,TCP 协议建立连接的过程通常称为____,两次握手,三次握手,四次挥手,滑动窗口,B,\n",
        )
        .unwrap();
        try_build_in(dir, extra, |mut cfg: DecontamConfig, cx| {
            cfg.available = vec![BenchmarkSpec {
                name: "ceval".into(),
                format: BenchFormat::Ceval,
                path: "net_val.csv".into(),
            }];
            Decontaminate::new(cfg, cx)
        })
    }

    #[test]
    fn drops_or_tags_contaminated_records() {
        let t = tempfile::tempdir().unwrap();
        let s = stage("", t.path()).unwrap();
        let (v, r) = run(
            &s,
            json!({"instruction": "TCP 协议建立连接的过程通常称为什么？", "output": "三次握手"}),
        );
        assert!(
            matches!(v, Verdict::Drop { ref reason, .. } if reason == "contaminated"),
            "{v:?}"
        );
        assert_eq!(r.meta["decontam"]["hits"][0]["subject"], "net");
        assert_eq!(r.meta["decontam"]["hits"][0]["split"], "val");
        assert_eq!(r.meta["decontam"]["hits"][0]["evidence"], "ngram");
        assert!(r.meta["decontam"]["hits"][0]["score"].as_f64().unwrap() >= 0.35);
        let (v, clean) = run(
            &s,
            json!({"instruction": "UDP 是什么协议？", "output": "无连接的传输层协议"}),
        );
        assert_eq!(v, Verdict::Keep);
        assert!(!clean.meta.contains_key("decontam"));
        let s = stage("action = \"tag\"", t.path()).unwrap();
        let (v, r) = run(
            &s,
            json!({"text": "TCP 协议建立连接的过程通常称为____ A.两次握手 B.三次握手"}),
        );
        assert_eq!(
            v,
            Verdict::Tagged {
                reason: "contaminated".into()
            }
        );
        assert!(r.meta.contains_key("decontam"));
        let sum = s.summary().unwrap();
        assert_eq!(sum["contaminated"], 1);
        assert!(s.report_html().unwrap().contains("<mark>"));
    }

    #[test]
    fn config_errors() {
        let t = tempfile::tempdir().unwrap();
        assert!(stage("benchmarks = [\"mmlu\"]", t.path()).is_err());
        assert!(stage("action = \"redact\"", t.path()).is_err());
        assert!(stage("threshold = 0", t.path()).is_err());
        assert!(toml::from_str::<DecontamConfig>("colour = 1").is_err());
    }
}
