//! `quality`: Gopher-style text-quality heuristics, adapted to Chinese.
//!
//! What is measured: each response-side segment of a record (output, assistant
//! turn, chosen, rejected) and each document (`text`) on its own; a record with
//! neither (prompt only) is measured on all its text. The record's values are
//! those of its worst segment per metric (highest for the `max_` checks, lowest
//! for the `min_` checks, mojibake summed). Prompts are left out on purpose:
//! short questions make every ratio noisy, and degenerate generations (loops,
//! mojibake) are what this stage is for. Segments are measured apart because
//! repetition *across* them is normal: a preference pair's chosen and rejected
//! answers share most of their text, and assistants quote earlier turns.
//!
//! Tokens: every CJK character is one token, a run of other letters/digits is
//! one word token; punctuation and whitespace only separate. "Fractions of
//! characters" count the characters of tokens, so Chinese and English texts
//! are on one scale. The metrics, all written to `meta.quality` (rounded to 4
//! decimals):
//! - `dup_line_frac`: characters in lines that repeat an earlier line / all line
//!   characters. Lines are compared after trimming and dropping a leading list
//!   marker (`1.`, `2、`, `-`, `*`, `•`), so a numbered list that loops
//!   (`1. 苹果 … 4. 苹果`) counts as repeated.
//! - `dup_para_frac`: the same for paragraphs (split at blank lines).
//! - `top_ngram_frac`: characters covered by the most frequent token n-gram
//!   (`top_ngram_n`, default 2) / all token characters.
//! - `dup_ngram_frac`: characters covered by token n-grams (`dup_ngram_n`,
//!   default 10) that occur more than once / all token characters: a sentence
//!   looping in one paragraph shows here.
//!   Both n-gram values are computed only with at least `ngram_min_tokens`
//!   tokens (default 50) and are `null` below that (short texts repeat by chance).
//! - `symbol_ratio`: emoji and symbol characters (pictographs U+1F000-1FAFF,
//!   U+2600-27BF, arrows, box drawing, geometric shapes, `#`, `…`) / non-blank characters.
//! - `punct_end_frac`: non-blank lines that end in punctuation (`。！？.!?；;：:…`,
//!   closing quotes and brackets, `，,、`) / non-blank lines.
//! - `cjk_ratio`: CJK characters / letters.
//! - `mojibake`: a count of (a) U+FFFD replacement characters, (b) UTF-8 read as
//!   Latin-1/cp1252: `Ã` or `Â` followed by a character in U+0080-00FF, and `â€`,
//!   (c) UTF-8 Chinese read as GBK: each `锟斤拷`, and each of the lead characters
//!   that the commonest Chinese characters and punctuation turn into (`的` -> `鐨`,
//!   `是` -> `鏄`, `，` -> `锛`, `。` -> `銆`, `“` -> `鈥`, ...; rare in real text;
//!   `涓` and `浜`, real characters, are left out).
//!
//! Defaults were measured (tests/quality_measure.rs, numbers in docs/benchmarks/quality.md): each
//! threshold keeps >= 99% of clean instruction answers and web texts while the
//! labelled repetition loops in `data-samples` fail. A check is switched off by
//! setting a max to 1.0 (or `max_mojibake` very high) or a min to 0.
//!
//! ```toml
//! [[stage]]
//! kind = "quality"
//! max_dup_line_frac = 0.5
//! max_dup_para_frac = 0.5
//! max_top_ngram_frac = 0.35       # top_ngram_n = 2
//! max_dup_ngram_frac = 0.7        # dup_ngram_n = 10, ngram_min_tokens = 50
//! max_symbol_ratio = 0.1
//! min_punct_end_frac = 0.0
//! min_cjk_ratio = 0.0
//! max_mojibake = 2
//! action = "drop"                 # or "tag"
//! ```
//! A failing record is dropped with the first failing check as reason (`dup_lines`,
//! `dup_paras`, `top_ngram`, `dup_ngram`, `symbols`, `punct_end`, `cjk_ratio`,
//! `mojibake`); with `tag` it is kept and `meta.quality.flag` names the check.

use anyhow::{bail, Result};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::hash::{HashKeyMap, HashKeySet};
use crate::record::{Record, Role};
use crate::shape::Shape;
use crate::stage::{flag_or_drop, flagged_shape, Action, BuildContext, Flags, Score, Stage, Verdict};
use crate::text::{cjk_ratio, is_cjk};

fn d_line() -> f64 {
    0.5
}
fn d_para() -> f64 {
    0.5
}
fn d_top() -> f64 {
    0.35
}
fn d_top_n() -> usize {
    2
}
fn d_dup() -> f64 {
    0.7
}
fn d_dup_n() -> usize {
    10
}
fn d_min_tokens() -> usize {
    50
}
fn d_symbol() -> f64 {
    0.1
}
fn d_zero() -> f64 {
    0.0
}
fn d_mojibake() -> u64 {
    2
}

/// `[[stage]] kind = "quality"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityConfig {
    #[serde(default = "d_line")]
    pub max_dup_line_frac: f64,
    #[serde(default = "d_para")]
    pub max_dup_para_frac: f64,
    #[serde(default = "d_top")]
    pub max_top_ngram_frac: f64,
    #[serde(default = "d_top_n")]
    pub top_ngram_n: usize,
    #[serde(default = "d_dup")]
    pub max_dup_ngram_frac: f64,
    #[serde(default = "d_dup_n")]
    pub dup_ngram_n: usize,
    #[serde(default = "d_min_tokens")]
    pub ngram_min_tokens: usize,
    #[serde(default = "d_symbol")]
    pub max_symbol_ratio: f64,
    #[serde(default = "d_zero")]
    pub min_punct_end_frac: f64,
    #[serde(default = "d_zero")]
    pub min_cjk_ratio: f64,
    #[serde(default = "d_mojibake")]
    pub max_mojibake: u64,
    #[serde(default)]
    pub action: Action,
}

impl Default for QualityConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse")
    }
}

/// The measured values for one text.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    pub dup_line_frac: f64,
    pub dup_para_frac: f64,
    pub top_ngram_frac: Option<f64>,
    pub dup_ngram_frac: Option<f64>,
    pub symbol_ratio: f64,
    pub punct_end_frac: f64,
    pub cjk_ratio: f64,
    pub mojibake: u64,
}

fn round4(x: f64) -> f64 {
    (x * 10000.0).round() / 10000.0
}

impl Metrics {
    /// Measure `text` with the n-gram settings of `cfg`.
    pub fn compute(text: &str, cfg: &QualityConfig) -> Metrics {
        let tokens = tokenize(text);
        let enough = tokens.len() >= cfg.ngram_min_tokens.max(1);
        Metrics {
            dup_line_frac: dup_unit_frac(text.lines()),
            dup_para_frac: dup_unit_frac(paragraphs(text).into_iter()),
            top_ngram_frac: enough.then(|| top_ngram_frac(&tokens, cfg.top_ngram_n.max(1))),
            dup_ngram_frac: enough.then(|| dup_ngram_frac(&tokens, cfg.dup_ngram_n.max(1))),
            symbol_ratio: symbol_ratio(text),
            punct_end_frac: punct_end_frac(text),
            cjk_ratio: cjk_ratio(text),
            mojibake: mojibake_count(text),
        }
    }

    /// The values as JSON, rounded to 4 decimals.
    pub fn to_json(&self) -> Value {
        json!({
            "dup_line_frac": round4(self.dup_line_frac),
            "dup_para_frac": round4(self.dup_para_frac),
            "top_ngram_frac": self.top_ngram_frac.map(round4),
            "dup_ngram_frac": self.dup_ngram_frac.map(round4),
            "symbol_ratio": round4(self.symbol_ratio),
            "punct_end_frac": round4(self.punct_end_frac),
            "cjk_ratio": round4(self.cjk_ratio),
            "mojibake": self.mojibake,
        })
    }

    /// The first failing check: (reason, detail).
    pub fn failure(&self, cfg: &QualityConfig) -> Option<(&'static str, String)> {
        let over = |name: &'static str, what: &str, v: f64, max: f64| {
            (v > max).then(|| (name, format!("{what} {:.4} > max {max}", v)))
        };
        over(
            "dup_lines",
            "dup_line_frac",
            self.dup_line_frac,
            cfg.max_dup_line_frac,
        )
        .or_else(|| {
            over(
                "dup_paras",
                "dup_para_frac",
                self.dup_para_frac,
                cfg.max_dup_para_frac,
            )
        })
        .or_else(|| {
            self.top_ngram_frac
                .and_then(|v| over("top_ngram", "top_ngram_frac", v, cfg.max_top_ngram_frac))
        })
        .or_else(|| {
            self.dup_ngram_frac
                .and_then(|v| over("dup_ngram", "dup_ngram_frac", v, cfg.max_dup_ngram_frac))
        })
        .or_else(|| over("symbols", "symbol_ratio", self.symbol_ratio, cfg.max_symbol_ratio))
        .or_else(|| {
            (self.punct_end_frac < cfg.min_punct_end_frac).then(|| {
                (
                    "punct_end",
                    format!(
                        "punct_end_frac {:.4} < min {}",
                        self.punct_end_frac, cfg.min_punct_end_frac
                    ),
                )
            })
        })
        .or_else(|| {
            (self.cjk_ratio < cfg.min_cjk_ratio).then(|| {
                (
                    "cjk_ratio",
                    format!("cjk_ratio {:.4} < min {}", self.cjk_ratio, cfg.min_cjk_ratio),
                )
            })
        })
        .or_else(|| {
            (self.mojibake > cfg.max_mojibake).then(|| {
                (
                    "mojibake",
                    format!("{} mojibake characters > max {}", self.mojibake, cfg.max_mojibake),
                )
            })
        })
    }
}

/// Tokens as (hash of the token's text, its character count) (see the module docs).
fn tokenize(text: &str) -> Vec<(u64, usize)> {
    let mut out = Vec::with_capacity(text.len() / 3);
    let token = |s: &str, n: usize| (xxhash_rust::xxh3::xxh3_64(s.as_bytes()), n);
    let mut word_start: Option<usize> = None;
    let mut word_chars = 0;
    for (i, c) in text.char_indices() {
        if is_cjk(c) {
            if let Some(s) = word_start.take() {
                out.push(token(&text[s..i], word_chars));
            }
            out.push(token(&text[i..i + c.len_utf8()], 1));
        } else if c.is_alphanumeric() {
            if word_start.is_none() {
                word_start = Some(i);
                word_chars = 0;
            }
            word_chars += 1;
        } else if let Some(s) = word_start.take() {
            out.push(token(&text[s..i], word_chars));
        }
    }
    if let Some(s) = word_start {
        out.push(token(&text[s..], word_chars));
    }
    out
}

fn strip_list_marker(line: &str) -> &str {
    let t = line.trim();
    let digits = t.len() - t.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let rest = &t[digits..];
    for m in [".", "、", ")", "）", "．"] {
        if digits > 0 {
            if let Some(r) = rest.strip_prefix(m) {
                return r.trim();
            }
        }
    }
    for m in ["- ", "* ", "• ", "·"] {
        if let Some(r) = t.strip_prefix(m) {
            return r.trim();
        }
    }
    t
}

/// Characters in units that repeat an earlier unit / all unit characters.
fn dup_unit_frac<'a>(units: impl Iterator<Item = &'a str>) -> f64 {
    // Units by their 64-bit hash: a collision between two different lines is
    // vanishingly unlikely, and hashing once is cheaper than keeping the strings.
    let mut seen: HashKeySet<u64> = HashKeySet::default();
    let (mut dup, mut total) = (0usize, 0usize);
    for u in units {
        let key = strip_list_marker(u);
        if key.is_empty() {
            continue;
        }
        let n = u.trim().chars().count();
        total += n;
        if !seen.insert(xxhash_rust::xxh3::xxh3_64(key.as_bytes())) {
            dup += n;
        }
    }
    if total == 0 {
        0.0
    } else {
        dup as f64 / total as f64
    }
}

fn paragraphs(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        if line.trim().is_empty() {
            if let Some(s) = start.take() {
                out.push(text[s..pos].trim());
            }
        } else if start.is_none() {
            start = Some(pos);
        }
        pos += line.len();
    }
    if let Some(s) = start {
        out.push(text[s..].trim());
    }
    out
}

/// An n-gram's key from its tokens' hashes (order matters).
fn ngram_key(tokens: &[(u64, usize)]) -> u64 {
    let mut h = 0u64;
    for (t, _) in tokens {
        h = (h.rotate_left(23) ^ t).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    h
}

fn top_ngram_frac(tokens: &[(u64, usize)], n: usize) -> f64 {
    let total: usize = tokens.iter().map(|t| t.1).sum();
    if tokens.len() < n || total == 0 {
        return 0.0;
    }
    let mut counts: HashKeyMap<u64, (usize, usize)> =
        HashKeyMap::with_capacity_and_hasher(tokens.len(), Default::default());
    for w in tokens.windows(n) {
        let e = counts
            .entry(ngram_key(w))
            .or_insert((0, w.iter().map(|t| t.1).sum()));
        e.0 += 1;
    }
    let best = counts.values().map(|(c, chars)| c * chars).max().unwrap_or(0);
    (best as f64 / total as f64).min(1.0)
}

fn dup_ngram_frac(tokens: &[(u64, usize)], n: usize) -> f64 {
    let total: usize = tokens.iter().map(|t| t.1).sum();
    if tokens.len() < n || total == 0 {
        return 0.0;
    }
    let keys: Vec<u64> = tokens.windows(n).map(ngram_key).collect();
    let mut counts: HashKeyMap<u64, usize> =
        HashKeyMap::with_capacity_and_hasher(keys.len(), Default::default());
    for k in &keys {
        *counts.entry(*k).or_insert(0) += 1;
    }
    let mut covered = vec![false; tokens.len()];
    for (i, k) in keys.iter().enumerate() {
        if counts[k] > 1 {
            covered[i..i + n].iter_mut().for_each(|c| *c = true);
        }
    }
    let dup: usize = tokens
        .iter()
        .zip(&covered)
        .filter(|(_, c)| **c)
        .map(|(t, _)| t.1)
        .sum();
    dup as f64 / total as f64
}

fn is_symbol(c: char) -> bool {
    matches!(c as u32,
        0x1F000..=0x1FAFF   // emoji, pictographs
        | 0x2600..=0x27BF   // misc symbols, dingbats
        | 0x2190..=0x21FF   // arrows
        | 0x2300..=0x23FF   // misc technical
        | 0x2500..=0x25FF   // box drawing, blocks, geometric shapes
        | 0x2B00..=0x2BFF   // misc symbols and arrows
        | 0xFE0F)
        || c == '#'
        || c == '…'
}

fn symbol_ratio(text: &str) -> f64 {
    let (mut sym, mut all) = (0usize, 0usize);
    for c in text.chars().filter(|c| !c.is_whitespace()) {
        all += 1;
        if is_symbol(c) {
            sym += 1;
        }
    }
    if all == 0 {
        0.0
    } else {
        sym as f64 / all as f64
    }
}

const END_PUNCT: &str = "。！？.!?；;：:…\"'”’」』）)】》〉~～，,、";

fn punct_end_frac(text: &str) -> f64 {
    let (mut ends, mut lines) = (0usize, 0usize);
    for l in text.lines() {
        let l = l.trim();
        if let Some(c) = l.chars().last() {
            lines += 1;
            if END_PUNCT.contains(c) {
                ends += 1;
            }
        }
    }
    if lines == 0 {
        0.0
    } else {
        ends as f64 / lines as f64
    }
}

/// Lead characters of common Chinese text (and punctuation) decoded as GBK (the list
/// `is_gbk_mojibake_lead` matches).
#[cfg(test)]
const GBK_MOJIBAKE: &str = "鐨鏄鍦鎴鏈杩锛銆鈥浣鍙璇鍥鍒鍜瀛鏃灏寰鐢骞澶鏉";

/// One of the lead characters above (a `match`: `str::contains` per character was a
/// search; a test checks the two lists agree).
fn is_gbk_mojibake_lead(c: char) -> bool {
    matches!(
        c,
        '鐨' | '鏄'
            | '鍦'
            | '鎴'
            | '鏈'
            | '杩'
            | '锛'
            | '銆'
            | '鈥'
            | '浣'
            | '鍙'
            | '璇'
            | '鍥'
            | '鍒'
            | '鍜'
            | '瀛'
            | '鏃'
            | '灏'
            | '寰'
            | '鐢'
            | '骞'
            | '澶'
            | '鏉'
    )
}

/// The mojibake count (module docs).
pub fn mojibake_count(text: &str) -> u64 {
    let mut n = text.matches("锟斤拷").count() as u64;
    let mut prev: Option<char> = None;
    for c in text.chars() {
        if c == '\u{FFFD}' || is_gbk_mojibake_lead(c) {
            n += 1;
        }
        if let Some(p) = prev {
            if (p == 'Ã' || p == 'Â') && ('\u{80}'..='\u{FF}').contains(&c) || (p == 'â' && c == '€') {
                n += 1;
            }
        }
        prev = Some(c);
    }
    n
}

/// The built stage.
pub struct Quality {
    cfg: QualityConfig,
}

impl Quality {
    /// Check the config and build the stage.
    pub fn new(cfg: QualityConfig, _cx: &BuildContext) -> Result<Self> {
        if cfg.action == Action::Redact {
            bail!("quality: action \"redact\" does not apply; use \"drop\" or \"tag\"");
        }
        for (name, v) in [
            ("max_dup_line_frac", cfg.max_dup_line_frac),
            ("max_dup_para_frac", cfg.max_dup_para_frac),
            ("max_top_ngram_frac", cfg.max_top_ngram_frac),
            ("max_dup_ngram_frac", cfg.max_dup_ngram_frac),
            ("max_symbol_ratio", cfg.max_symbol_ratio),
            ("min_punct_end_frac", cfg.min_punct_end_frac),
            ("min_cjk_ratio", cfg.min_cjk_ratio),
        ] {
            if !(0.0..=1.0).contains(&v) {
                bail!("quality: {name} = {v} is not in 0..1");
            }
        }
        if cfg.top_ngram_n == 0 || cfg.dup_ngram_n == 0 {
            bail!("quality: top_ngram_n and dup_ngram_n must be >= 1");
        }
        Ok(Quality { cfg })
    }
}

/// The texts the stage measures: each response and document, else everything.
pub fn measured_texts(record: &Record) -> Vec<String> {
    let parts: Vec<String> = record
        .texts()
        .into_iter()
        .filter(|(s, _)| matches!(s.role, Role::Response | Role::Document))
        .map(|(_, t)| t.to_string())
        .collect();
    if parts.is_empty() {
        vec![record.full_text()]
    } else {
        parts
    }
}

impl Metrics {
    /// The worst value of each metric over several segments (module docs).
    pub fn worst(all: &[Metrics]) -> Metrics {
        let opt_max = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(x), Some(y)) => Some(x.max(y)),
            (x, None) => x,
            (None, y) => y,
        };
        let mut it = all.iter();
        let mut w = it.next().cloned().expect("at least one segment");
        for m in it {
            w.dup_line_frac = w.dup_line_frac.max(m.dup_line_frac);
            w.dup_para_frac = w.dup_para_frac.max(m.dup_para_frac);
            w.top_ngram_frac = opt_max(w.top_ngram_frac, m.top_ngram_frac);
            w.dup_ngram_frac = opt_max(w.dup_ngram_frac, m.dup_ngram_frac);
            w.symbol_ratio = w.symbol_ratio.max(m.symbol_ratio);
            w.punct_end_frac = w.punct_end_frac.min(m.punct_end_frac);
            w.cjk_ratio = w.cjk_ratio.min(m.cjk_ratio);
            w.mojibake += m.mojibake;
        }
        w
    }
}

impl Stage for Quality {
    fn kind(&self) -> &'static str {
        "quality"
    }

    fn process(&self, record: &mut Record) -> Result<Verdict> {
        let each: Vec<Metrics> = measured_texts(record)
            .iter()
            .map(|t| Metrics::compute(t, &self.cfg))
            .collect();
        let m = Metrics::worst(&each);
        let meta = m.to_json();
        match m.failure(&self.cfg) {
            None => {
                record.annotate("quality", meta);
                Ok(Verdict::Keep)
            }
            Some((reason, detail)) => Ok(flag_or_drop(
                record,
                "quality",
                meta,
                self.cfg.action,
                reason,
                detail.to_string(),
            )),
        }
    }

    fn annotations(&self) -> Vec<(&'static str, Shape)> {
        let f = Shape::Float;
        let metrics = Shape::object(&[
            ("dup_line_frac", f.clone()),
            ("dup_para_frac", f.clone()),
            ("top_ngram_frac", f.clone()),
            ("dup_ngram_frac", f.clone()),
            ("symbol_ratio", f.clone()),
            ("punct_end_frac", f.clone()),
            ("cjk_ratio", f),
            ("mojibake", Shape::Int),
        ]);
        vec![("quality", flagged_shape(self.cfg.action, metrics))]
    }

    fn scores(&self) -> Vec<Score> {
        let c = &self.cfg;
        [
            ("dup_line_frac", c.max_dup_line_frac, Flags::Above),
            ("dup_para_frac", c.max_dup_para_frac, Flags::Above),
            ("top_ngram_frac", c.max_top_ngram_frac, Flags::Above),
            ("dup_ngram_frac", c.max_dup_ngram_frac, Flags::Above),
            ("symbol_ratio", c.max_symbol_ratio, Flags::Above),
            ("punct_end_frac", c.min_punct_end_frac, Flags::Below),
            ("cjk_ratio", c.min_cjk_ratio, Flags::Below),
        ]
        .into_iter()
        .map(|(field, t, flags)| Score::unit("quality", field, t, flags))
        .collect()
    }

    fn describe(&self) -> String {
        let c = &self.cfg;
        format!(
            "dup_line <= {}, dup_para <= {}, top_{}gram <= {}, dup_{}gram <= {} (>= {} tokens), symbols <= {}, punct_end >= {}, cjk >= {}, mojibake <= {}, action {:?}",
            c.max_dup_line_frac,
            c.max_dup_para_frac,
            c.top_ngram_n,
            c.max_top_ngram_frac,
            c.dup_ngram_n,
            c.max_dup_ngram_frac,
            c.ngram_min_tokens,
            c.max_symbol_ratio,
            c.min_punct_end_frac,
            c.min_cjk_ratio,
            c.max_mojibake,
            c.action
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::testing::{build, run, try_build};

    #[test]
    fn gbk_mojibake_leads_are_the_listed_characters() {
        for c in GBK_MOJIBAKE.chars() {
            assert!(is_gbk_mojibake_lead(c), "{c}");
        }
        let listed = GBK_MOJIBAKE.chars().count();
        let matched = ('\u{0}'..=char::MAX).filter(|&c| is_gbk_mojibake_lead(c)).count();
        assert_eq!(listed, matched);
    }

    fn m(text: &str) -> Metrics {
        Metrics::compute(text, &QualityConfig::default())
    }

    const CLEAN: &str =
        "长城是中国古代规模最大的军事防御工程，东起辽宁虎山，西至甘肃嘉峪关，全长两万多公里。\
        它始建于春秋战国时期，历经秦、汉、明等朝代的修筑和扩建，是中华民族智慧和力量的象征。";

    #[test]
    fn clean_text_passes_every_check() {
        let x = m(CLEAN);
        assert_eq!(x.failure(&QualityConfig::default()), None, "{x:?}");
        assert_eq!(x.dup_line_frac, 0.0);
        assert!(x.cjk_ratio > 0.99);
        assert_eq!(x.mojibake, 0);
    }

    #[test]
    fn repeated_lines_and_numbered_list_loops() {
        let list = "1. 苹果\n2. 香蕉\n3. 橙子\n4. 苹果\n5. 香蕉\n6. 橙子\n7. 苹果";
        let x = m(list);
        assert!(x.dup_line_frac > 0.5, "{x:?}");
        assert_eq!(x.failure(&QualityConfig::default()).unwrap().0, "dup_lines");
        let paras = "第一段。\n\n第二段。\n\n第一段。\n\n第一段。";
        assert!((m(paras).dup_para_frac - 0.5).abs() < 1e-9);
    }

    #[test]
    fn sentence_loop_shows_in_ngram_fractions() {
        let looped = format!("{CLEAN}{}", "长城是中华民族的象征。".repeat(20));
        let x = m(&looped);
        assert!(x.dup_ngram_frac.unwrap() > 0.5, "{x:?}");
        assert_eq!(x.failure(&QualityConfig::default()).unwrap().0, "dup_ngram");
        let clean = m(CLEAN);
        assert!(clean.dup_ngram_frac.unwrap() < 0.1, "{clean:?}");
        assert!(clean.top_ngram_frac.unwrap() < 0.1, "{clean:?}");
        // Short texts get no n-gram values at all.
        assert_eq!(m("哈哈哈哈哈哈").top_ngram_frac, None);
        let x = m(&"ha ha ".repeat(40));
        assert!(x.top_ngram_frac.unwrap() > 0.9, "{x:?}");
    }

    #[test]
    fn symbols_punctuation_and_cjk_ratio() {
        let x = m("🔥🔥🔥 限时抢购 🔥🔥🔥 ➡️ 点击");
        assert!(x.symbol_ratio > 0.3, "{x:?}");
        assert_eq!(x.failure(&QualityConfig::default()).unwrap().0, "symbols");
        assert!((m("第一行。\n第二行\n第三行！\nfour.").punct_end_frac - 0.75).abs() < 1e-9);
        assert!((m("中文abc").cjk_ratio - 0.4).abs() < 1e-9);
        let s = build("min_cjk_ratio = 0.5\nmin_punct_end_frac = 0.5", Quality::new);
        let (v, _) = run(&s, json!({"text": "English text only."}));
        assert!(matches!(v, Verdict::Drop { reason, .. } if reason == "cjk_ratio"));
        let (v, _) = run(&s, json!({"text": "没有标点的行\n另一行"}));
        assert!(matches!(v, Verdict::Drop { reason, .. } if reason == "punct_end"));
    }

    #[test]
    fn mojibake_from_real_mis_decoding() {
        let bytes = CLEAN.as_bytes();
        // UTF-8 read as GBK.
        let (gbk, _, _) = encoding_rs::GBK.decode(bytes);
        let x = m(&gbk);
        assert!(x.mojibake > 10, "{gbk} {x:?}");
        assert_eq!(x.failure(&QualityConfig::default()).unwrap().0, "mojibake");
        // UTF-8 read as Latin-1 (windows-1252).
        let (latin, _, _) = encoding_rs::WINDOWS_1252.decode("café – “naïve” résumé".as_bytes());
        assert!(m(&latin).mojibake >= 3, "{latin}");
        // GBK bytes read as UTF-8: replacement characters.
        let (gbk_bytes, _, _) = encoding_rs::GBK.encode(CLEAN);
        let lossy = String::from_utf8_lossy(&gbk_bytes);
        assert!(m(&lossy).mojibake > 10);
        assert_eq!(m("锟斤拷锟斤拷").mojibake, 2);
        assert_eq!(m("café “naïve” résumé，涓涓细流").mojibake, 0);
    }

    #[test]
    fn measures_responses_tags_and_rounds() {
        let s = build("action = \"tag\"", Quality::new);
        let (v, r) = run(
            &s,
            json!({
                "instruction": "列出水果。列出水果。",
                "output": "1. 苹果\n2. 苹果\n3. 苹果"
            }),
        );
        assert_eq!(
            v,
            Verdict::Tagged {
                reason: "dup_lines".into()
            }
        );
        let q = &r.meta["quality"];
        assert_eq!(q["flag"], "dup_lines");
        assert_eq!(q["dup_line_frac"], 0.6667);
        assert!(q["top_ngram_frac"].is_null());
        // Chosen and rejected are measured apart: sharing text is normal for a pair.
        let s = build("", Quality::new);
        let (v, _) = run(&s, json!({"prompt": "p", "chosen": CLEAN, "rejected": CLEAN}));
        assert_eq!(v, Verdict::Keep);
        let (v, r) = run(
            &s,
            json!({"prompt": "p", "chosen": CLEAN, "rejected": "1. 好\n2. 好\n3. 好"}),
        );
        assert_eq!(v, Verdict::drop("dup_lines", "dup_line_frac 0.6667 > max 0.5"));
        assert_eq!(r.meta["quality"]["cjk_ratio"], 1.0);
        assert!(try_build("max_symbol_ratio = 2.0", Quality::new).is_err());
    }
}
