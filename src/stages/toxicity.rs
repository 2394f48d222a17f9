//! `toxicity`: flags offensive text with two detectors, a word list and a trained
//! classifier, and drops or tags the record.
//!
//! Why two: the lexicons (`filters/toxicity/lexicon_*.txt`, from LDNOOBW and
//! houbb/sensitive-word's porn, drugs and gambling categories, filtered against
//! clean exam questions) catch profanity and porn spam with near-zero false
//! positives but miss attacks written in ordinary words; the fastText model
//! (`filters/toxicity/cold_char.bin`, trained on COLD's train split and SWSR's
//! training posts with character n-grams) catches bias, sexism and attacks
//! against groups, which is what COLD and SWSR label.
//!
//! Lexicon matching runs aho-corasick (leftmost-longest) over a lower-cased,
//! full-width-folded copy of each text; terms that start or end with a Latin
//! letter or digit must sit on a word boundary (`ass` does not fire in `class`).
//! The model scores each selected segment separately and the record's score is
//! the maximum, so one toxic turn is not diluted by a long conversation.
//!
//! ```toml
//! [[stage]]
//! kind = "toxicity"
//! lexicon = ["../filters/toxicity/lexicon_zh.txt", "../filters/toxicity/lexicon_en.txt"]
//! model = "../filters/toxicity/cold_char.bin"
//! threshold = 0.65         # P(offensive) at or above this flags the record (0.9 if unset)
//! min_lexicon_hits = 1     # this many lexicon hits flag it (0 = annotate only)
//! fields = "all"           # all | response | prompt
//! action = "drop"          # or "tag"
//! ```
//! `meta.toxicity = {score, lexicon_hits: [{category, field, start, end}], flagged_by}`
//! (character offsets; the matched words are never copied into `meta` or the detail).
//! Drop reason: `toxic`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::json;

use crate::classifier::Classifier;
use crate::record::{Record, TextFields};
use crate::shape::Shape;
use crate::stage::{flag_or_drop, flagged_shape, Action, BuildContext, Flags, Score, Stage, Verdict};
use crate::text::fold_width_and_case;

fn default_threshold() -> f32 {
    0.9
}
fn default_min_hits() -> usize {
    1
}
fn default_positive() -> String {
    "1".into()
}
fn default_true() -> bool {
    true
}

/// `[[stage]] kind = "toxicity"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToxicityConfig {
    /// Word lists: one term per line, optionally `term<TAB>category`; `#` comments.
    #[serde(default)]
    pub lexicon: Vec<PathBuf>,
    /// A fastText model (`curate train-classifier`).
    pub model: Option<PathBuf>,
    /// P(`positive_label`) at or above this flags the record.
    #[serde(default = "default_threshold")]
    pub threshold: f32,
    /// Lexicon hits at or above this flag the record; 0 = annotate only.
    #[serde(default = "default_min_hits")]
    pub min_lexicon_hits: usize,
    /// Which text views are checked (default all).
    #[serde(default)]
    pub fields: TextFields,
    #[serde(default)]
    pub action: Action,
    /// The model's label for offensive text.
    #[serde(default = "default_positive")]
    pub positive_label: String,
    /// Feed the model one token per CJK character (must match how it was trained).
    #[serde(default = "default_true")]
    pub char_split: bool,
}

impl Default for ToxicityConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

/// Word lists up to this many terms are compiled to a DFA.
const DFA_MAX_TERMS: usize = 2000;

/// A compiled word list.
pub struct Lexicon {
    ac: AhoCorasick,
    /// Category of each pattern, by pattern index.
    categories: Vec<String>,
    /// Whether each pattern starts / ends with an ASCII letter or digit.
    bounded: Vec<(bool, bool)>,
}

/// One lexicon hit, in characters of the original text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexiconHit {
    pub category: String,
    pub start: usize,
    pub end: usize,
}

/// Lower-case and fold full-width ASCII, one char for one char (offsets stay valid).
pub fn normalize(text: &str) -> String {
    text.chars().map(fold_width_and_case).collect()
}

impl Lexicon {
    /// Build from `(term, category)` pairs; terms are normalized, empty ones skipped.
    pub fn new(entries: impl IntoIterator<Item = (String, String)>) -> Result<Lexicon> {
        let mut map: BTreeMap<String, String> = BTreeMap::new();
        for (t, c) in entries {
            let t = normalize(t.trim());
            if !t.is_empty() {
                map.entry(t).or_insert(c);
            }
        }
        let bounded = map
            .keys()
            .map(|t| {
                let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
                (alnum(t.chars().next()), alnum(t.chars().last()))
            })
            .collect();
        // A DFA for short lists (machine_text's phrases: a few hundred states, about
        // twice as fast to search as the default NFA); the default for the long
        // word lists, where a DFA would take hundreds of MB. Same matches either way.
        let kind = (map.len() <= DFA_MAX_TERMS).then_some(AhoCorasickKind::DFA);
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .kind(kind)
            .build(map.keys())
            .context("cannot build the lexicon automaton")?;
        Ok(Lexicon {
            ac,
            categories: map.into_values().collect(),
            bounded,
        })
    }

    /// Parse a word-list file (`term` or `term<TAB>category` per line, `#` comments).
    pub fn parse(text: &str, default_category: &str) -> Vec<(String, String)> {
        text.lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| match l.split_once('\t') {
                Some((t, c)) => (t.to_string(), c.trim().to_string()),
                None => (l.to_string(), default_category.to_string()),
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.categories.len()
    }

    pub fn is_empty(&self) -> bool {
        self.categories.is_empty()
    }

    /// Non-overlapping hits in `text`, leftmost-longest, with word boundaries for Latin terms.
    pub fn find(&self, text: &str) -> Vec<LexiconHit> {
        self.find_normalized(&normalize(text))
    }

    /// [`Lexicon::find`] on a text that is [`normalize`]d already.
    pub fn find_normalized(&self, norm: &str) -> Vec<LexiconHit> {
        let mut hits = Vec::new();
        let (mut byte_pos, mut char_pos) = (0usize, 0usize);
        let alnum_at = |s: &str| s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
        for m in self.ac.find_iter(norm) {
            let id = m.pattern().as_usize();
            let (b_start, b_end) = self.bounded[id];
            if (b_start
                && norm[..m.start()]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_ascii_alphanumeric()))
                || (b_end && alnum_at(&norm[m.end()..]))
            {
                continue;
            }
            char_pos += norm[byte_pos..m.start()].chars().count();
            let len = norm[m.start()..m.end()].chars().count();
            hits.push(LexiconHit {
                category: self.categories[id].clone(),
                start: char_pos,
                end: char_pos + len,
            });
            char_pos += len;
            byte_pos = m.end();
        }
        hits
    }
}

/// The built stage.
pub struct Toxicity {
    cfg: ToxicityConfig,
    lexicon: Option<Lexicon>,
    model: Option<Classifier>,
}

impl Toxicity {
    /// Check the config, load the word lists and the model (once, shared by all threads).
    pub fn new(cfg: ToxicityConfig, cx: &BuildContext) -> Result<Self> {
        if cfg.action == Action::Redact {
            bail!("toxicity: action \"redact\" does not apply; use \"drop\" or \"tag\"");
        }
        if cfg.lexicon.is_empty() && cfg.model.is_none() {
            bail!("toxicity: set `lexicon` (word lists) and/or `model` (a fastText model)");
        }
        if !(0.0..=1.0).contains(&cfg.threshold) {
            bail!("toxicity: threshold must be in 0..=1, got {}", cfg.threshold);
        }
        let lexicon = if cfg.lexicon.is_empty() {
            None
        } else {
            let mut entries = Vec::new();
            for p in &cfg.lexicon {
                let path = cx.resolve(p);
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("toxicity: lexicon {}: cannot read", path.display()))?;
                entries.extend(Lexicon::parse(&text, "lexicon"));
            }
            Some(Lexicon::new(entries)?)
        };
        let model = match &cfg.model {
            Some(p) => {
                let path = cx.resolve(p);
                let m = Classifier::load(&path, cfg.char_split).with_context(|| "toxicity: model")?;
                if !m.labels().contains(&cfg.positive_label) {
                    bail!(
                        "toxicity: model {} has no label `{}` (labels: {:?})",
                        path.display(),
                        cfg.positive_label,
                        m.labels()
                    );
                }
                Some(m)
            }
            None => None,
        };
        Ok(Toxicity { cfg, lexicon, model })
    }
}

impl Stage for Toxicity {
    fn kind(&self) -> &'static str {
        "toxicity"
    }

    fn process(&self, record: &mut Record) -> Result<Verdict> {
        let mut score: Option<f32> = None;
        let mut hits = Vec::new();
        let mut categories: BTreeMap<String, usize> = BTreeMap::new();
        for (seg, text) in record.texts() {
            if !self.cfg.fields.selects(seg.role) || text.trim().is_empty() {
                continue;
            }
            if let Some(m) = &self.model {
                let p = m.prob(text, &self.cfg.positive_label);
                score = Some(score.map_or(p, |s| s.max(p)));
            }
            if let Some(lex) = &self.lexicon {
                for h in lex.find(text) {
                    *categories.entry(h.category.clone()).or_default() += 1;
                    hits.push(json!({"category": h.category, "field": seg.path.to_string(), "start": h.start, "end": h.end}));
                }
            }
        }
        let mut flagged_by = Vec::new();
        let mut why = Vec::new();
        if let Some(s) = score {
            if s >= self.cfg.threshold {
                flagged_by.push("model");
                why.push(format!("score {s:.3} >= {}", self.cfg.threshold));
            }
        }
        if self.cfg.min_lexicon_hits > 0 && hits.len() >= self.cfg.min_lexicon_hits {
            flagged_by.push("lexicon");
            let cats: Vec<String> = categories.iter().map(|(c, n)| format!("{c} {n}")).collect();
            why.push(format!("{} lexicon hits ({})", hits.len(), cats.join(", ")));
        }
        let meta = json!({
            "score": score.map(|s| (s as f64 * 10000.0).round() / 10000.0),
            "lexicon_hits": hits,
            "flagged_by": flagged_by,
        });
        if flagged_by.is_empty() {
            record.annotate("toxicity", meta);
            return Ok(Verdict::Keep);
        }
        let detail = why.join("; ");
        Ok(flag_or_drop(
            record,
            "toxicity",
            meta,
            self.cfg.action,
            "toxic",
            detail,
        ))
    }

    fn annotations(&self) -> Vec<(&'static str, Shape)> {
        let hit = Shape::object(&[
            ("category", Shape::Str),
            ("field", Shape::Str),
            ("start", Shape::Int),
            ("end", Shape::Int),
        ]);
        let found = Shape::object(&[
            ("score", Shape::Float),
            ("lexicon_hits", Shape::list(hit)),
            ("flagged_by", Shape::list(Shape::Str)),
        ]);
        vec![("toxicity", flagged_shape(self.cfg.action, found))]
    }

    fn scores(&self) -> Vec<Score> {
        let t = Score::decimal(self.cfg.threshold);
        vec![Score::unit("toxicity", "score", t, Flags::AtOrAbove)]
    }

    fn describe(&self) -> String {
        format!(
            "lexicon {} terms, model {}, threshold {}, min_lexicon_hits {}, fields {:?}, action {:?}",
            self.lexicon.as_ref().map_or(0, |l| l.len()),
            self.cfg
                .model
                .as_ref()
                .map_or("none".to_string(), |p| p.display().to_string()),
            self.cfg.threshold,
            self.cfg.min_lexicon_hits,
            self.cfg.fields,
            self.cfg.action
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::testing::{build_in, run, try_build};

    fn lexicon() -> Lexicon {
        Lexicon::new(Lexicon::parse(
            "# comment\n傻逼\tporn\n操你妈\tporn\nass\tobscene\nfuck\n",
            "obscene",
        ))
        .unwrap()
    }

    #[test]
    fn lexicon_finds_longest_with_char_offsets_and_word_boundaries() {
        let lex = lexicon();
        let hits = lex.find("你个ＦＵＣＫ傻逼，操你妈");
        assert_eq!(
            hits,
            vec![
                LexiconHit {
                    category: "obscene".into(),
                    start: 2,
                    end: 6
                },
                LexiconHit {
                    category: "porn".into(),
                    start: 6,
                    end: 8
                },
                LexiconHit {
                    category: "porn".into(),
                    start: 9,
                    end: 12
                },
            ]
        );
        assert!(lex.find("a class of passengers, 乳制品").is_empty());
        assert_eq!(lex.find("kick ass!").len(), 1);
    }

    #[test]
    fn stage_drops_and_tags_without_quoting() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("lex.txt"), "傻逼\tporn\n").unwrap();
        let s = build_in(
            dir.path(),
            "lexicon = [\"lex.txt\"]\nfields = \"response\"",
            Toxicity::new,
        );
        let (v, _) = run(&s, json!({"instruction": "你是傻逼吗", "output": "我是助手"}));
        assert_eq!(v, Verdict::Keep);
        let (v, r) = run(&s, json!({"instruction": "问", "output": "你这个傻逼"}));
        assert_eq!(v, Verdict::drop("toxic", "1 lexicon hits (porn 1)"));
        assert_eq!(
            r.meta["toxicity"]["lexicon_hits"][0],
            json!({"category": "porn", "field": "output", "start": 3, "end": 5})
        );
        assert_eq!(r.meta["toxicity"]["score"], serde_json::Value::Null);
        let s = build_in(
            dir.path(),
            "lexicon = [\"lex.txt\"]\naction = \"tag\"",
            Toxicity::new,
        );
        let (v, r) = run(&s, json!({"text": "傻逼"}));
        assert_eq!(
            v,
            Verdict::Tagged {
                reason: "toxic".into()
            }
        );
        assert_eq!(r.meta["toxicity"]["flagged_by"], json!(["lexicon"]));
    }

    #[test]
    fn rejects_bad_configs() {
        for bad in [
            "",
            "lexicon = [\"x\"]\naction = \"redact\"",
            "model = \"m.bin\"\nthreshold = 2.0",
            "lexicon = [\"/nonexistent/x.txt\"]",
        ] {
            assert!(try_build(bad, Toxicity::new).is_err(), "{bad}");
        }
        assert!(toml::from_str::<ToxicityConfig>("lexicons = []").is_err());
    }
}
