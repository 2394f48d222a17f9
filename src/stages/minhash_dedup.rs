//! `minhash_dedup`: drop near-duplicate records (MinHash signatures, LSH bands,
//! union-find clusters over verified candidate pairs, a deterministic keep rule).
//!
//! **Signatures, per record, in parallel (`process`)**: the selected text views are
//! joined and normalized (traditional -> simplified Chinese when `fold_traditional`,
//! full-width ASCII folded to half-width, lower case, every character that is not
//! a letter or digit dropped). Then shingled:
//! - text with a fair share of CJK (`shingle = "auto"`: CJK characters at least
//!   `auto_cjk_share` (default 0.5) of the words, each CJK character counting as a
//!   word): overlapping character `char_ngram`-grams (default 5) over the letters and
//!   digits, so punctuation width and spacing never matter. The share is low on
//!   purpose: Chinese instructions full of code, numbers or English are still
//!   Chinese records, and by words a typo breaks `word_ngram` shingles of single
//!   characters (`tests/minhash_quality.rs` sweeps it; README table);
//! - other text: overlapping `word_ngram`-grams (default 3) of words (runs of
//!   letters and digits; each CJK character is a word of its own).
//!
//! **Speed** (README: alpaca_zh, release build): normalization is one load per
//! character from a 256 KiB table built once (`fold_table`: decontam's memoized
//! fast2s table, width folding, the letter/digit and CJK tests and lower case
//! folded together; the 15 characters fast2s converts by context and the few whose
//! lower case is several characters take a slow path, checked against the
//! per-character code in a test). Shingles are never materialized as strings: a
//! cyclic-polynomial rolling hash (`rolling_hashes`) runs over per-character
//! hashes (character shingles) or per-word hashes (word shingles), one rotate and
//! two xors per shingle, and feeds the signature directly. Buffers are per thread
//! and reused. With one-permutation hashing (the default) each shingle costs one
//! more 64-bit mix and a bin minimum; `classic` takes `num_perm` minimums under
//! multiply-shift permutations `(a*x + b) >> 32`. All constants come from fixed
//! seeds, so signatures are identical on every run and machine.
//! Hand-written rather than a crate: gaoya gives short texts an all-zero
//! signature (they would all collide) and probabilistic-collections has no LSH,
//! panics on short input and is unseeded (GUIDE.md); neither fuses normalization
//! into hashing.
//!
//! **Short texts**: a text with fewer units than the n-gram size gets one shingle,
//! the whole normalized text, so two different short texts never share a
//! signature (only identical ones do). A text with no letter or digit at all is
//! exempt: kept, `meta.dedup = {exempt: true}`, never indexed.
//!
//! **Clusters need the whole input (a prepass)**: with union-find over all pairs
//! and a keep rule such as "longest", a record's fate can depend on records after
//! it, which a single in-order pass cannot know. So the stage asks the executor
//! for a prepass (`Stage::needs_prepass`): the input is read once, the stages
//! before this one run, and every record that reaches it hands its signature to
//! `observe`, which writes it to disk with its `bands` band hashes. `prepare` then
//! sorts the band entries (external sort, spilling at `memory_limit`), compares
//! the members of each LSH bucket (estimated Jaccard = the fraction of equal
//! minimums), unites pairs at or above `threshold`, picks each cluster's kept
//! record by `keep`, and writes one decision per record. In the main pass `decide`
//! only reads the next decision. Files, formats and the bucket rule are in
//! `src/minhash_prepass.rs`; they are the signature / bucket / cluster / filter
//! steps a sharded run splits over machines. Alternatives considered: a star
//! index of kept records in `decide` (the previous version) is one pass but
//! cannot merge chains (A~B, B~C) or keep anything but the first; holding every
//! signature in memory until the end would break the streaming bound. The price
//! of the prepass is reading the input and running the earlier stages twice.
//!
//! **Keep rule** (`keep`): `first` (input order), `longest` (most characters of
//! the compared text), or `quality` (the highest number at the `meta` path
//! `quality_meta` written by an earlier stage, e.g. `"quality.punct_end_frac"`;
//! records without a number there rank last). Ties go to the earlier record.
//! Decisions are computed once, in a fixed order, so they do not depend on the
//! thread count, and a resumed run reads them from where it stopped.
//!
//! **Defaults** (`char_ngram = 5`, `word_ngram = 3`, `threshold = 0.7`) come from
//! `tests/minhash_quality.rs` (README table): on perturbed alpaca_zh records
//! character 5-grams beat 3, 4 and 6 at every threshold from 0.6 up. On real MMLU
//! edits word 3-grams (F1 0.972) and 5-grams (0.981) are close at 0.7; 5-grams
//! keep their precision lower down (short shingles chain the shared
//! `moral_scenarios` template into one giant cluster at 0.6), but lose two of the
//! 16 labelled groups of the bundled samples (an added sentence on a 35-word
//! answer), so 3 stays. Threshold 0.6 scores a little higher on both sets, but
//! precision falls off a cliff just below it (template neighbours merge at 0.5),
//! so the default keeps one step of margin.
//!
//! `bands` and `rows` default to the datasketch search for `threshold`: the pair
//! with `bands * rows <= num_perm` minimizing the weighted false-positive area
//! below the threshold plus the false-negative area above it of the S-curve
//! `1 - (1 - s^rows)^bands`. datasketch weighs both 0.5 (9 x 13 at 0.8, which
//! misses ~15% of pairs at Jaccard 0.88); here `false_negative_weight` defaults
//! to 0.9 (14 x 9 at 0.8: 97.5% of pairs at 0.85 and 99.9% at 0.9 become
//! candidates, 2.7% at 0.5), because every candidate is verified against the full
//! signature, so an LSH false positive costs one comparison while a false
//! negative is a missed duplicate. Set `bands` and `rows` to override.
//!
//! Outputs: `meta.dedup = {cluster, kept_id, similarity}` (`similarity` to the
//! kept record, only on duplicates; `cluster` is the position of the cluster's
//! first record among the records this stage saw), reason `near_duplicate` naming
//! the kept id; `clusters.jsonl` in the output folder (one line per cluster with
//! duplicates); `stats.json` counts and cluster-size histogram; a `report.html`
//! section with the histogram and the largest clusters' texts side by side.
//!
//! ```toml
//! [[stage]]
//! kind = "minhash_dedup"
//! fields = "all"          # all | prompt | response
//! shingle = "auto"        # auto | char | word
//! auto_cjk_share = 0.5     # auto: characters when CJK characters >= this share of words
//! char_ngram = 5
//! word_ngram = 3
//! num_perm = 128
//! hashing = "one_permutation"  # one_permutation | classic
//! threshold = 0.7         # estimated Jaccard for a near duplicate
//! # bands = 16            # with rows: override the derived banding
//! # rows = 8
//! false_negative_weight = 0.9  # for the derived banding; datasketch uses 0.5
//! fold_traditional = true
//! keep = "first"          # first | longest | quality
//! # quality_meta = "quality.punct_end_frac"  # with keep = "quality": higher wins
//! memory_limit = "1GiB"   # band entries held before spilling a sorted run
//! action = "drop"         # drop | tag
//! ```

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::decontam::normalize::{is_cjk, mix, simplify, t2s_table};
use crate::minhash_prepass::{
    self as prepass, round3, DecisionKind, DecisionReader, KeepRule, Observer, Summary,
};
use crate::record::{Record, Role};
use crate::stage::{Action, BuildContext, FinishContext, Stage, Verdict};
use crate::stages::exact_dedup::DedupFields;

/// How a text is cut into shingles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShingleMode {
    /// Characters for CJK-majority text, words otherwise.
    #[default]
    Auto,
    Char,
    Word,
}

/// How a signature is computed from the shingle hashes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hashing {
    /// `num_perm` independent permutations (multiply-shift), a minimum each.
    Classic,
    /// One permutation split into `num_perm` bins, empty bins densified.
    #[default]
    OnePermutation,
}

/// `[[stage]] kind = "minhash_dedup"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinhashConfig {
    #[serde(default)]
    pub fields: DedupFields,
    #[serde(default)]
    pub shingle: ShingleMode,
    /// `shingle = "auto"` cuts by characters when CJK characters >= this share of the words.
    #[serde(default = "d_auto_cjk_share")]
    pub auto_cjk_share: f64,
    #[serde(default = "d_char_ngram")]
    pub char_ngram: usize,
    #[serde(default = "d_word_ngram")]
    pub word_ngram: usize,
    #[serde(default = "d_num_perm")]
    pub num_perm: usize,
    #[serde(default)]
    pub hashing: Hashing,
    #[serde(default = "d_threshold")]
    pub threshold: f64,
    #[serde(default)]
    pub bands: Option<usize>,
    #[serde(default)]
    pub rows: Option<usize>,
    #[serde(default = "d_fn_weight")]
    pub false_negative_weight: f64,
    #[serde(default = "yes")]
    pub fold_traditional: bool,
    #[serde(default)]
    pub keep: KeepRule,
    /// Dotted `meta` path of the number `keep = "quality"` ranks by.
    #[serde(default)]
    pub quality_meta: Option<String>,
    /// Bytes of band entries held in memory before a sorted run is spilled.
    #[serde(default = "d_memory_limit", deserialize_with = "de_bytes")]
    pub memory_limit: u64,
    #[serde(default)]
    pub action: Action,
}

fn d_auto_cjk_share() -> f64 {
    0.5
}
fn d_char_ngram() -> usize {
    5
}
fn d_word_ngram() -> usize {
    3
}
fn d_num_perm() -> usize {
    128
}
fn d_threshold() -> f64 {
    0.7
}
fn d_fn_weight() -> f64 {
    0.9
}
fn d_memory_limit() -> u64 {
    1 << 30
}
fn yes() -> bool {
    true
}

/// A byte count: an integer, or a string such as `"512MiB"`, `"2GB"`, `"64k"`.
fn de_bytes<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Bytes {
        N(u64),
        S(String),
    }
    match Bytes::deserialize(d)? {
        Bytes::N(n) => Ok(n),
        Bytes::S(s) => parse_bytes(&s).map_err(serde::de::Error::custom),
    }
}

/// Parse `"512MiB"`, `"2GB"`, `"64k"`, `"1000"` (binary multiples for K/M/G with or without `i`/`B`).
pub fn parse_bytes(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size like \"512MiB\""))?;
    let mult: u64 = match unit
        .trim()
        .to_ascii_lowercase()
        .trim_end_matches('b')
        .trim_end_matches('i')
    {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return Err(format!("`{s}`: unknown unit (use K, M, G, T)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("`{s}` is too large"))
}

impl Default for MinhashConfig {
    fn default() -> Self {
        MinhashConfig {
            fields: DedupFields::All,
            shingle: ShingleMode::Auto,
            auto_cjk_share: d_auto_cjk_share(),
            char_ngram: d_char_ngram(),
            word_ngram: d_word_ngram(),
            num_perm: d_num_perm(),
            hashing: Hashing::default(),
            threshold: d_threshold(),
            bands: None,
            rows: None,
            false_negative_weight: d_fn_weight(),
            fold_traditional: true,
            keep: KeepRule::First,
            quality_meta: None,
            memory_limit: d_memory_limit(),
            action: Action::Drop,
        }
    }
}

/// A record's text captured for the report (members of the largest clusters).
#[derive(Debug, Clone, PartialEq)]
struct Shown {
    cluster: u32,
    kept: bool,
    similarity: f32,
    id: String,
    text: String,
}

/// Characters of a record's text shown in the report.
const SHOWN_CHARS: usize = 400;

/// The built stage.
pub struct MinhashDedup {
    cfg: MinhashConfig,
    bands: usize,
    rows: usize,
    /// Permutation constants `(a, b)`, `a` odd.
    perms: Vec<(u64, u64)>,
    /// Densification probes for one-permutation signatures.
    probes: Probes,
    /// The prepass folder, once the executor gave it.
    dir: Option<PathBuf>,
    /// While the prepass observes records.
    observer: Option<Observer>,
    /// The finished prepass: from here on `process` does nothing and `decide` reads decisions.
    prepared: Option<Summary>,
    decisions: Option<DecisionReader>,
    /// Byte offset of the next decision (the saved state).
    cursor: u64,
    decided: u64,
    shown: Vec<Shown>,
}

const PERM_SEED: u64 = 0x6d69_6e68_6173_6801; // "minhash" + 1

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The datasketch banding for a threshold: `(bands, rows)` with `bands * rows <=
/// num_perm` minimizing `(1 - fn_weight)` * false-positive area + `fn_weight` *
/// false-negative area under the S-curve (datasketch's weights are 0.5 / 0.5).
pub fn optimal_bands_rows(threshold: f64, num_perm: usize, fn_weight: f64) -> (usize, usize) {
    fn integrate(f: impl Fn(f64) -> f64, a: f64, b: f64) -> f64 {
        // Composite Simpson; the integrands are smooth polynomials.
        let n = 200;
        let h = (b - a) / n as f64;
        let mut s = f(a) + f(b);
        for i in 1..n {
            let w = if i % 2 == 1 { 4.0 } else { 2.0 };
            s += w * f(a + i as f64 * h);
        }
        s * h / 3.0
    }
    let mut best = (f64::INFINITY, 1, 1);
    for b in 1..=num_perm {
        for r in 1..=num_perm / b {
            let p = |s: f64| 1.0 - (1.0 - s.powi(r as i32)).powi(b as i32);
            let fp = integrate(p, 0.0, threshold);
            let fneg = integrate(|s| 1.0 - p(s), threshold, 1.0);
            let err = (1.0 - fn_weight) * fp + fn_weight * fneg;
            if err < best.0 {
                best = (err, b, r);
            }
        }
    }
    (best.1, best.2)
}

const OPH_SEED: u64 = 0x6f70_6800_6d69_6e68; // "oph" "minh"

/// One-permutation hashing with optimal densification (Li, Owen & Zhang 2012;
/// Shrivastava 2017): one hash per shingle; its high bits pick one of `bins`
/// bins and its low 32 bits compete for that bin's minimum. An empty bin takes
/// the value of the first non-empty bin on its own fixed pseudo-random probe
/// sequence, which depends only on the bin number, so two texts' signatures
/// still agree in a bin with probability equal to their Jaccard similarity.
/// Cost: one multiply per shingle instead of `bins`.
pub fn one_permutation_signature(hashes: &[u64], bins: usize) -> Vec<u32> {
    let mut sketch = OnePermutation::default();
    sketch.reset(bins);
    for &x in hashes {
        sketch.add(x);
    }
    sketch.finish(&Probes::new(bins))
}

/// Steps of each bin's densification probe sequence computed ahead in [`Probes`].
const PROBES_AHEAD: usize = 16;

/// Bin `j`'s densification probe sequence: a splitmix stream seeded by `j`,
/// reduced to a bin by multiply-shift (no division).
#[inline]
fn next_probe(state: &mut u64, bins: usize) -> usize {
    (((splitmix(state) >> 32) * bins as u64) >> 32) as usize
}

/// The first [`PROBES_AHEAD`] steps of every bin's probe sequence, and the stream
/// state after them (a longer search, rare, goes on from there). Short texts
/// leave most bins empty, and densifying them was half the signature time when
/// each probe computed its splitmix step; a table load has no dependency chain.
pub struct Probes {
    bins: usize,
    ahead: Vec<u16>,
    state: Vec<u64>,
}

impl Probes {
    /// The probe table for `bins` bins (at most 65,536).
    pub fn new(bins: usize) -> Probes {
        let mut ahead = Vec::with_capacity(bins * PROBES_AHEAD);
        let mut state = Vec::with_capacity(bins);
        for j in 0..bins {
            let mut st = OPH_SEED ^ ((j as u64) << 32);
            for _ in 0..PROBES_AHEAD {
                ahead.push(next_probe(&mut st, bins) as u16);
            }
            state.push(st);
        }
        Probes { bins, ahead, state }
    }
}

/// The running bin minimums of [`one_permutation_signature`], and a bit per
/// bin saying whether it holds one (so densification walks only the empty bins,
/// without a mispredicted branch per bin).
#[derive(Default)]
struct OnePermutation {
    mins: Vec<u32>,
    filled: Vec<u64>,
}

impl OnePermutation {
    fn reset(&mut self, bins: usize) {
        self.mins.clear();
        self.mins.resize(bins, u32::MAX);
        self.filled.clear();
        self.filled.resize(bins.div_ceil(64), 0);
    }

    #[inline]
    fn add(&mut self, x: u64) {
        let mut st = x ^ OPH_SEED;
        let h = splitmix(&mut st);
        let bin = (((h >> 32) * self.mins.len() as u64) >> 32) as usize;
        let v = h as u32;
        if let (Some(m), Some(f)) = (self.mins.get_mut(bin), self.filled.get_mut(bin >> 6)) {
            // An empty bin holds u32::MAX, so `min` alone is right unless v is u32::MAX too.
            *m = (*m).min(v);
            *f |= 1 << (bin & 63);
        }
    }

    #[inline]
    fn is_filled(&self, k: usize) -> bool {
        self.filled[k >> 6] >> (k & 63) & 1 == 1
    }

    /// The signature, empty bins densified (all `u32::MAX` when nothing was added).
    fn finish(&self, probes: &Probes) -> Vec<u32> {
        let bins = self.mins.len();
        assert_eq!(probes.bins, bins, "probe table for another signature length");
        let mut out = self.mins.clone();
        if self.filled.iter().all(|&w| w == 0) {
            return out;
        }
        for (w, &word) in self.filled.iter().enumerate() {
            let mut empty = !word;
            while empty != 0 {
                let j = w * 64 + empty.trailing_zeros() as usize;
                empty &= empty - 1;
                if j >= bins {
                    break;
                }
                let ahead = &probes.ahead[j * PROBES_AHEAD..(j + 1) * PROBES_AHEAD];
                let k = match ahead.iter().find(|&&k| self.is_filled(k as usize)) {
                    Some(&k) => k as usize,
                    None => {
                        let mut st = probes.state[j];
                        loop {
                            let k = next_probe(&mut st, bins);
                            if self.is_filled(k) {
                                break k;
                            }
                        }
                    }
                };
                out[j] = self.mins[k];
            }
        }
        out
    }
}

/// Full-width ASCII (`Ａ１！`) to half-width.
#[inline]
fn fold_width(c: char) -> char {
    match c as u32 {
        0xFF01..=0xFF5E => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        0x3000 => ' ',
        _ => c,
    }
}

/// [`fold_table`] entry bits: the folded character is in the low 21 bits; a
/// letter or digit has `ALNUM` (every other character only separates words).
const ALNUM: u32 = 1 << 24;
/// The letter is a CJK character (a word of its own).
const CJK: u32 = 1 << 25;
/// The character needs [`fold_slow`]: fast2s converts it by its neighbours, or
/// its lower case is several characters (`İ`).
const SLOW: u32 = 1 << 26;
const CHAR_BITS: u32 = (1 << 21) - 1;

/// The normalization of every BMP character, computed once per setting of
/// `fold_traditional` (256 KiB each): traditional -> simplified (decontam's
/// memoized fast2s table), full-width -> half-width, then lower case, with the
/// letter/digit and CJK tests folded into the entry. Per character that is one
/// load instead of three hash lookups, a width match, two Unicode property
/// searches and a lower-case iterator.
fn fold_table(fold_traditional: bool) -> &'static [u32] {
    static WITH_T2S: std::sync::OnceLock<Vec<u32>> = std::sync::OnceLock::new();
    static WITHOUT_T2S: std::sync::OnceLock<Vec<u32>> = std::sync::OnceLock::new();
    let cell = if fold_traditional { &WITH_T2S } else { &WITHOUT_T2S };
    cell.get_or_init(|| {
        let t2s = t2s_table();
        (0..0x10000u32)
            .map(|u| {
                let Some(c) = char::from_u32(u) else {
                    return 0; // surrogates: never in a str
                };
                let simple = if fold_traditional && c.len_utf8() == 3 {
                    match t2s[u as usize] {
                        0 => return SLOW, // converted by context
                        s => char::from_u32(s as u32).unwrap_or(c),
                    }
                } else {
                    c
                };
                let w = fold_width(simple);
                if !w.is_alphanumeric() {
                    return 0;
                }
                let mut lower = w.to_lowercase();
                match (lower.next(), lower.next()) {
                    (Some(l), None) => l as u32 | ALNUM | if is_cjk(w) { CJK } else { 0 },
                    _ => SLOW,
                }
            })
            .collect()
    })
}

/// A text normalized for shingling: its letters and digits (folded as
/// [`fold_table`] says) and where its words start.
#[derive(Default)]
struct Units {
    /// The kept characters, in order.
    chars: Vec<u32>,
    /// Index in `chars` where each word starts, plus `chars.len()`. A word is a
    /// run of non-CJK letters and digits, or one CJK character.
    word_at: Vec<u32>,
    /// CJK characters among `chars`.
    cjk: usize,
    /// Whether the last kept character continues a non-CJK word.
    in_word: bool,
}

impl Units {
    #[inline]
    fn push(&mut self, c: u32, cjk: bool) {
        if cjk || !self.in_word {
            self.word_at.push(self.chars.len() as u32);
        }
        self.cjk += cjk as usize;
        self.in_word = !cjk;
        self.chars.push(c);
    }

    fn words(&self) -> usize {
        self.word_at.len() - 1
    }
}

/// Normalize `text` into `u` (cleared first): the steps of [`fold_table`], every
/// character that is not a letter or digit dropped.
fn normalize_into(text: &str, fold_traditional: bool, u: &mut Units) {
    let table = fold_table(fold_traditional);
    u.chars.clear();
    u.word_at.clear();
    u.cjk = 0;
    u.in_word = false;
    // The previous original character: fast2s's context (`'0'` at the start).
    let mut prev = '0';
    let mut it = text.chars();
    while let Some(c) = it.next() {
        let e = table.get(c as usize).copied().unwrap_or(SLOW);
        if e & ALNUM != 0 {
            u.push(e & CHAR_BITS, e & CJK != 0);
        } else if e & SLOW != 0 {
            let next = it.clone().next().unwrap_or('0');
            fold_slow(c, prev, next, fold_traditional, u);
        } else {
            u.in_word = false;
        }
        prev = c;
    }
    u.word_at.push(u.chars.len() as u32);
}

/// The characters [`fold_table`] cannot answer alone: outside the BMP, converted
/// by context, or lower-cased to several characters.
#[cold]
fn fold_slow(c: char, prev: char, next: char, fold_traditional: bool, u: &mut Units) {
    let simple = if fold_traditional && c.len_utf8() == 3 {
        simplify(t2s_table(), prev, c, || next)
    } else {
        c
    };
    let w = fold_width(simple);
    if !w.is_alphanumeric() {
        u.in_word = false;
        return;
    }
    let cjk = is_cjk(w);
    if cjk || !u.in_word {
        u.word_at.push(u.chars.len() as u32);
    }
    u.cjk += cjk as usize;
    u.in_word = !cjk;
    for l in w.to_lowercase() {
        u.chars.push(l as u32);
    }
}

const CHAR_SEED: u64 = 0x6368_6172_0000_0001; // "char"
const WORD_SEED: u64 = 0x776f_7264_0000_0001; // "word"
const FNV_PRIME: u64 = 0x100_0000_01b3;

/// The hash of one word: FNV-1a over its characters, then a 64-bit finalizer.
#[inline]
fn word_hash(chars: &[u32]) -> u64 {
    let mut h = WORD_SEED;
    for &c in chars {
        h = (h ^ c as u64).wrapping_mul(FNV_PRIME);
    }
    mix(h)
}

/// The hash of every window of `k` consecutive values out of `n` (`value(i)`),
/// or one hash of all `n` when `n < k` (so a short text still has a shingle of
/// its own): a cyclic polynomial ("buzhash", Cohen 1997), rolled forward with
/// one rotate and two xors per window instead of rehashing `k` values.
#[inline]
fn rolling_hashes(n: usize, k: usize, value: impl Fn(usize) -> u64, mut sink: impl FnMut(u64)) {
    if n == 0 {
        return;
    }
    let k = k.min(n);
    let out_rot = (k % 64) as u32;
    let mut h = 0u64;
    for i in 0..k {
        h = h.rotate_left(1) ^ value(i);
    }
    sink(h);
    for i in k..n {
        h = h.rotate_left(1) ^ value(i - k).rotate_left(out_rot) ^ value(i);
        sink(h);
    }
}

/// Whether a normalized text is shingled by characters.
fn by_char(cfg: &MinhashConfig, u: &Units) -> bool {
    match cfg.shingle {
        ShingleMode::Char => true,
        ShingleMode::Word => false,
        // Each CJK character is a word too.
        ShingleMode::Auto => u.cjk > 0 && u.cjk as f64 >= cfg.auto_cjk_share * u.words() as f64,
    }
}

/// Hand every shingle hash of `u` to `sink` (`words` is scratch for word hashes).
fn for_each_shingle(
    cfg: &MinhashConfig,
    u: &Units,
    by_char: bool,
    words: &mut Vec<u64>,
    sink: impl FnMut(u64),
) {
    if by_char {
        // Each character's hash is a multiply-xorshift of its code point.
        let chars = &u.chars;
        rolling_hashes(
            chars.len(),
            cfg.char_ngram,
            |i| mix(chars[i] as u64 ^ CHAR_SEED),
            sink,
        );
    } else {
        words.clear();
        words.extend(
            u.word_at
                .windows(2)
                .map(|w| word_hash(&u.chars[w[0] as usize..w[1] as usize])),
        );
        rolling_hashes(words.len(), cfg.word_ngram, |i| words[i], sink);
    }
}

/// Per-thread buffers of [`MinhashDedup::signature`], reused from record to record.
#[derive(Default)]
struct Scratch {
    units: Units,
    words: Vec<u64>,
    hashes: Vec<u64>,
    sketch: OnePermutation,
}

impl Scratch {
    /// Give back the memory of an unusually long record (bounded memory per thread).
    fn trim(&mut self) {
        const KEEP: usize = 1 << 20;
        if self.units.chars.capacity() > KEEP {
            *self = Scratch::default();
        }
        if self.hashes.capacity() > KEEP || self.words.capacity() > KEEP {
            self.hashes = Vec::new();
            self.words = Vec::new();
        }
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// The shingle hashes of a text and whether it was cut by characters.
#[cfg(test)]
fn shingles(cfg: &MinhashConfig, text: &str) -> (Vec<u64>, bool) {
    let mut u = Units::default();
    normalize_into(text, cfg.fold_traditional, &mut u);
    let by_char = by_char(cfg, &u);
    let mut out = Vec::new();
    if !u.chars.is_empty() {
        for_each_shingle(cfg, &u, by_char, &mut Vec::new(), |h| out.push(h));
    }
    (out, by_char)
}

/// Estimated Jaccard similarity: the fraction of equal minimums.
pub fn estimate(a: &[u32], b: &[u32]) -> f64 {
    let eq = a.iter().zip(b).filter(|(x, y)| x == y).count();
    eq as f64 / a.len().max(1) as f64
}

impl MinhashDedup {
    /// Check the config and build the stage.
    pub fn new(cfg: MinhashConfig, _cx: &BuildContext) -> Result<Self> {
        if cfg.action == Action::Redact {
            bail!("minhash_dedup: action \"redact\" does not apply; use \"drop\" or \"tag\"");
        }
        if !(1..=1024).contains(&cfg.num_perm) {
            bail!("minhash_dedup: num_perm must be 1..=1024, got {}", cfg.num_perm);
        }
        if !(cfg.threshold > 0.0 && cfg.threshold <= 1.0) {
            bail!(
                "minhash_dedup: threshold must be in (0, 1], got {}",
                cfg.threshold
            );
        }
        if !(0.0..=1.0).contains(&cfg.false_negative_weight) {
            bail!("minhash_dedup: false_negative_weight must be in [0, 1]");
        }
        if !(0.0..=1.0).contains(&cfg.auto_cjk_share) {
            bail!(
                "minhash_dedup: auto_cjk_share must be in [0, 1], got {}",
                cfg.auto_cjk_share
            );
        }
        if cfg.char_ngram == 0 || cfg.word_ngram == 0 {
            bail!("minhash_dedup: char_ngram and word_ngram must be at least 1");
        }
        match (cfg.keep, &cfg.quality_meta) {
            (KeepRule::Quality, None) => {
                bail!("minhash_dedup: keep = \"quality\" needs `quality_meta`, the meta path of a number")
            }
            (KeepRule::First | KeepRule::Longest, Some(_)) => {
                bail!("minhash_dedup: `quality_meta` applies only with keep = \"quality\"")
            }
            _ => {}
        }
        if cfg.memory_limit < 1 << 20 {
            bail!("minhash_dedup: memory_limit must be at least 1MiB");
        }
        let (bands, rows) = match (cfg.bands, cfg.rows) {
            (Some(b), Some(r)) => {
                if b == 0 || r == 0 || b * r > cfg.num_perm {
                    bail!(
                        "minhash_dedup: bands * rows must be 1..=num_perm ({}), got {b} x {r}",
                        cfg.num_perm
                    );
                }
                (b, r)
            }
            (None, None) => optimal_bands_rows(cfg.threshold, cfg.num_perm, cfg.false_negative_weight),
            _ => bail!("minhash_dedup: set both `bands` and `rows`, or neither (derived from `threshold`)"),
        };
        let mut st = PERM_SEED;
        let perms = (0..cfg.num_perm)
            .map(|_| (splitmix(&mut st) | 1, splitmix(&mut st)))
            .collect();
        let probes = Probes::new(cfg.num_perm);
        Ok(MinhashDedup {
            cfg,
            bands,
            rows,
            perms,
            probes,
            dir: None,
            observer: None,
            prepared: None,
            decisions: None,
            cursor: 0,
            decided: 0,
            shown: Vec::new(),
        })
    }

    /// The MinHash signature of a text; `None` when it has no letter or digit.
    pub fn signature(&self, text: &str) -> Option<Vec<u32>> {
        SCRATCH.with(|cell| {
            let mut scratch = cell.borrow_mut();
            let Scratch {
                units,
                words,
                hashes,
                sketch,
            } = &mut *scratch;
            normalize_into(text, self.cfg.fold_traditional, units);
            if units.chars.is_empty() {
                return None;
            }
            let by_char = by_char(&self.cfg, units);
            let sig = match self.cfg.hashing {
                Hashing::Classic => {
                    hashes.clear();
                    for_each_shingle(&self.cfg, units, by_char, words, |h| hashes.push(h));
                    self.classic_signature(hashes)
                }
                Hashing::OnePermutation => {
                    sketch.reset(self.cfg.num_perm);
                    for_each_shingle(&self.cfg, units, by_char, words, |h| sketch.add(h));
                    sketch.finish(&self.probes)
                }
            };
            scratch.trim();
            Some(sig)
        })
    }

    /// `num_perm` multiply-shift permutations, the minimum of each.
    fn classic_signature(&self, hashes: &[u64]) -> Vec<u32> {
        let mut mins = vec![u32::MAX; self.perms.len()];
        for &x in hashes {
            for (m, &(a, b)) in mins.iter_mut().zip(&self.perms) {
                let v = (a.wrapping_mul(x).wrapping_add(b) >> 32) as u32;
                if v < *m {
                    *m = v;
                }
            }
        }
        mins
    }

    /// The LSH band hashes of a signature (`bands` of them, each over `rows` values).
    pub fn band_keys(&self, sig: &[u32]) -> Vec<u64> {
        let mut buf = Vec::with_capacity(self.rows * 4);
        (0..self.bands)
            .map(|b| {
                buf.clear();
                for v in &sig[b * self.rows..(b + 1) * self.rows] {
                    buf.extend_from_slice(&v.to_le_bytes());
                }
                xxh3_64_with_seed(&buf, b as u64)
            })
            .collect()
    }

    fn selected_text(&self, record: &Record) -> String {
        let mut out = String::new();
        for (seg, text) in record.texts() {
            let take = match self.cfg.fields {
                DedupFields::All => true,
                DedupFields::Prompt => matches!(seg.role, Role::Prompt | Role::System),
                DedupFields::Response => seg.role == Role::Response,
            };
            if take {
                out.push_str(text);
                out.push('\n');
            }
        }
        out
    }

    /// `(bands, rows)` in force.
    pub fn banding(&self) -> (usize, usize) {
        (self.bands, self.rows)
    }

    fn params(&self) -> prepass::Params {
        prepass::Params {
            num_perm: self.cfg.num_perm,
            bands: self.bands,
            threshold: self.cfg.threshold,
            keep: self.cfg.keep,
            memory_limit: self.cfg.memory_limit,
            show_clusters: 10,
            show_members: 4,
        }
    }

    /// The number at the dotted `quality_meta` path, if there is one.
    fn quality_of(&self, record: &Record) -> Option<f64> {
        let path = self.cfg.quality_meta.as_deref()?;
        let mut parts = path.split('.');
        let mut v = record.meta.get(parts.next()?)?;
        for p in parts {
            v = v.get(p)?;
        }
        v.as_f64().filter(|x| x.is_finite())
    }

    fn prepass_dir(&self) -> Result<&Path> {
        self.dir
            .as_deref()
            .context("minhash_dedup: no prepass folder (the executor runs a prepass first)")
    }
}

impl Stage for MinhashDedup {
    fn kind(&self) -> &'static str {
        "minhash_dedup"
    }

    fn process(&self, record: &mut Record) -> Result<Verdict> {
        if self.prepared.is_some() {
            return Ok(Verdict::Keep); // the main pass: decisions are made
        }
        // Scratch for `observe`: characters, then the signature and band keys (none: exempt).
        let text = self.selected_text(record);
        record.scratch.clear();
        record.scratch.push(text.chars().count() as u64);
        if let Some(sig) = self.signature(&text) {
            let keys = self.band_keys(&sig);
            record.scratch.extend(sig.into_iter().map(u64::from));
            record.scratch.extend(keys);
        }
        Ok(Verdict::Keep)
    }

    fn is_sequential(&self) -> bool {
        true
    }

    fn needs_prepass(&self) -> bool {
        true
    }

    fn open_prepass(&mut self, dir: &Path, complete: bool) -> Result<()> {
        self.dir = Some(dir.to_path_buf());
        if complete {
            self.prepared = Some(prepass::load_summary(dir)?);
        } else {
            self.observer = Some(Observer::create(dir, self.params())?);
        }
        Ok(())
    }

    fn observe(&mut self, record: &Record) -> Result<()> {
        let quality = self.quality_of(record);
        let (p, b) = (self.cfg.num_perm, self.bands);
        let s = &record.scratch;
        let chars = s.first().copied().unwrap_or(0).min(u32::MAX as u64) as u32;
        let observer = self
            .observer
            .as_mut()
            .context("minhash_dedup: observe before open_prepass")?;
        if s.len() == 1 + p + b {
            let sig: Vec<u32> = s[1..1 + p].iter().map(|&v| v as u32).collect();
            observer.add(&record.id, Some((&sig, &s[1 + p..])), chars, quality)
        } else if s.len() == 1 {
            observer.add(&record.id, None, chars, quality)
        } else {
            bail!(
                "minhash_dedup: {} scratch values, expected 1 or {}",
                s.len(),
                1 + p + b
            )
        }
    }

    fn prepare(&mut self) -> Result<()> {
        let observer = self
            .observer
            .take()
            .context("minhash_dedup: prepare before open_prepass")?;
        self.prepared = Some(observer.finish()?);
        Ok(())
    }

    fn cluster_params(&self) -> Option<prepass::Params> {
        Some(self.params())
    }

    fn close_observe(&mut self) -> Result<()> {
        let observer = self
            .observer
            .take()
            .context("minhash_dedup: close_observe before open_prepass")?;
        observer.close()?;
        Ok(())
    }

    fn decide(&mut self, record: &mut Record) -> Result<Verdict> {
        if self.decisions.is_none() {
            let dir = self.prepass_dir()?.to_path_buf();
            self.decisions = Some(DecisionReader::open(&dir, self.cursor)?);
        }
        let reader = self.decisions.as_mut().expect("opened above");
        let d = reader
            .next_decision()?
            .context("minhash_dedup: more records than the prepass saw (input changed?)")?;
        self.cursor = reader.position();
        if d.id_hash != xxh3_64(record.id.as_bytes()) {
            bail!(
                "minhash_dedup: record {} is not the one the prepass saw at this position (input changed?)",
                self.decided
            );
        }
        self.decided += 1;
        let kept_id = match d.kind {
            DecisionKind::Exempt => {
                record.annotate("dedup", json!({ "exempt": true }));
                return Ok(Verdict::Keep);
            }
            DecisionKind::Duplicate => d.kept_id.clone(),
            DecisionKind::Unique | DecisionKind::Kept => record.id.clone(),
        };
        if d.shown {
            let text: String = record.full_text().chars().take(SHOWN_CHARS).collect();
            self.shown.push(Shown {
                cluster: d.cluster,
                kept: d.kind == DecisionKind::Kept,
                similarity: d.similarity,
                id: record.id.clone(),
                text,
            });
        }
        if d.kind != DecisionKind::Duplicate {
            record.annotate("dedup", json!({ "cluster": d.cluster, "kept_id": kept_id }));
            return Ok(Verdict::Keep);
        }
        let sim = round3(d.similarity as f64);
        record.annotate(
            "dedup",
            json!({ "cluster": d.cluster, "kept_id": kept_id, "similarity": sim }),
        );
        if self.cfg.action == Action::Tag {
            return Ok(Verdict::Keep);
        }
        Ok(Verdict::drop(
            "near_duplicate",
            format!(
                "near duplicate of `{kept_id}` (cluster {} of {} records, estimated Jaccard {sim:.3})",
                d.cluster, d.size
            ),
        ))
    }

    fn save_state(&self) -> Result<Option<Vec<u8>>> {
        // Where the main pass is in decisions.bin, and the texts captured for the report.
        let mut out = Vec::new();
        out.extend_from_slice(b"MH02");
        out.extend_from_slice(&self.cursor.to_le_bytes());
        out.extend_from_slice(&self.decided.to_le_bytes());
        for s in &self.shown {
            out.extend_from_slice(&s.cluster.to_le_bytes());
            out.push(u8::from(s.kept));
            out.extend_from_slice(&s.similarity.to_le_bytes());
            for t in [&s.id, &s.text] {
                out.extend_from_slice(&(t.len() as u32).to_le_bytes());
                out.extend_from_slice(t.as_bytes());
            }
        }
        Ok(Some(out))
    }

    fn load_state(&mut self, state: &[u8]) -> Result<()> {
        fn take<'a>(s: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
            if s.len() < n {
                bail!("minhash_dedup: truncated state");
            }
            let (a, b) = s.split_at(n);
            *s = b;
            Ok(a)
        }
        fn string(s: &mut &[u8]) -> Result<String> {
            let n = u32::from_le_bytes(take(s, 4)?.try_into()?) as usize;
            Ok(std::str::from_utf8(take(s, n)?)?.to_string())
        }
        let mut s = state;
        if take(&mut s, 4)? != b"MH02" {
            bail!("minhash_dedup: state of another version");
        }
        self.cursor = u64::from_le_bytes(take(&mut s, 8)?.try_into()?);
        self.decided = u64::from_le_bytes(take(&mut s, 8)?.try_into()?);
        self.decisions = None;
        self.shown.clear();
        while !s.is_empty() {
            let cluster = u32::from_le_bytes(take(&mut s, 4)?.try_into()?);
            let kept = take(&mut s, 1)?[0] == 1;
            let similarity = f32::from_le_bytes(take(&mut s, 4)?.try_into()?);
            let id = string(&mut s)?;
            let text = string(&mut s)?;
            self.shown.push(Shown {
                cluster,
                kept,
                similarity,
                id,
                text,
            });
        }
        Ok(())
    }

    fn finish(&mut self, cx: &FinishContext) -> Result<()> {
        // clusters.jsonl next to stats.json, copied whole (tmp + rename).
        let Some(dir) = &self.dir else { return Ok(()) };
        let src = dir.join("clusters.jsonl");
        if !src.exists() {
            // A rank of a sharded run: the clusters of the whole run are in `global/`.
            return Ok(());
        }
        let dst = cx.output_dir.join("clusters.jsonl");
        let tmp = cx.output_dir.join("clusters.jsonl.tmp");
        std::fs::copy(&src, &tmp).with_context(|| format!("{}: cannot copy", src.display()))?;
        std::fs::rename(&tmp, &dst).with_context(|| format!("{}: cannot write", dst.display()))?;
        Ok(())
    }

    fn summary(&self) -> Option<Value> {
        let sum = self.prepared.as_ref()?;
        let histogram: serde_json::Map<String, Value> = sum
            .cluster_sizes
            .iter()
            .map(|(l, n)| (l.clone(), json!(n)))
            .collect();
        Some(json!({
            "records": sum.records,
            "kept": sum.clusters,
            "dropped": if self.cfg.action == Action::Drop { sum.duplicates } else { 0 },
            "duplicates": sum.duplicates,
            "exempt": sum.exempt,
            "clusters_with_duplicates": sum.clusters_with_duplicates,
            "cluster_sizes": histogram,
            "largest_cluster": sum.largest_cluster,
            "largest": sum.largest,
            "keep": sum.keep,
            "pairs_compared": sum.pairs_compared,
            "pairs_similar": sum.pairs_similar,
            "band_runs": sum.band_runs,
            "bands": self.bands,
            "rows": self.rows,
            "false_negative_weight": self.cfg.false_negative_weight,
            "threshold": self.cfg.threshold,
        }))
    }

    fn report_html(&self) -> Option<String> {
        use crate::report::escape;
        use std::fmt::Write;
        let sum = self.prepared.as_ref()?;
        let mut h = String::new();
        let _ = write!(
            h,
            "<p>{} near duplicates in {} clusters with more than one record ({}: {:?}); {} records without text exempt. \
             Threshold {} (estimated Jaccard), {} bands x {} rows; {} candidate pairs compared, {} similar. \
             Every cluster is listed in <code>clusters.jsonl</code>.</p>",
            sum.duplicates,
            sum.clusters_with_duplicates,
            if self.cfg.action == Action::Drop { "dropped, kept by" } else { "tagged, kept by" },
            sum.keep,
            sum.exempt,
            self.cfg.threshold,
            self.bands,
            self.rows,
            sum.pairs_compared,
            sum.pairs_similar,
        );
        h.push_str("<table><tr><th>cluster size</th><th>clusters</th></tr>");
        for (k, v) in &sum.cluster_sizes {
            let _ = write!(h, "<tr><td>{}</td><td>{v}</td></tr>", escape(k));
        }
        h.push_str("</table>");
        if !sum.largest.is_empty() {
            h.push_str("<h3>Largest clusters (kept record first)</h3>");
        }
        for big in &sum.largest {
            let _ = write!(
                h,
                "<p>cluster {}: {} records, kept <code>{}</code></p><table><tr>",
                big.cluster,
                big.size,
                escape(&big.kept_id)
            );
            let mut members: Vec<&Shown> = self.shown.iter().filter(|s| s.cluster == big.cluster).collect();
            members.sort_by_key(|s| !s.kept); // stable: the kept record, then input order
            for m in &members {
                let label = if m.kept {
                    "kept".to_string()
                } else {
                    format!("similarity {:.3}", m.similarity)
                };
                let _ = write!(h, "<th>{} ({label})</th>", escape(&m.id));
            }
            h.push_str("</tr><tr>");
            for m in &members {
                let _ = write!(
                    h,
                    "<td style=\"vertical-align:top;white-space:pre-wrap\">{}</td>",
                    escape(&m.text)
                );
            }
            h.push_str("</tr></table>");
        }
        Some(h)
    }

    fn describe(&self) -> String {
        format!(
            "fields {:?}, shingle {:?} (char {}, word {}), num_perm {} ({:?}), threshold {}, {} bands x {} rows, keep {:?}, action {:?}",
            self.cfg.fields,
            self.cfg.shingle,
            self.cfg.char_ngram,
            self.cfg.word_ngram,
            self.cfg.num_perm,
            self.cfg.hashing,
            self.cfg.threshold,
            self.bands,
            self.rows,
            self.cfg.keep,
            self.cfg.action
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn stage(cfg: MinhashConfig) -> MinhashDedup {
        MinhashDedup::new(
            cfg,
            &BuildContext {
                config_dir: ".".into(),
            },
        )
        .unwrap()
    }

    fn exact_jaccard(cfg: &MinhashConfig, a: &str, b: &str) -> f64 {
        let sa: HashSet<u64> = shingles(cfg, a).0.into_iter().collect();
        let sb: HashSet<u64> = shingles(cfg, b).0.into_iter().collect();
        sa.intersection(&sb).count() as f64 / sa.union(&sb).count() as f64
    }

    /// Deterministic pseudo-random text from a small vocabulary.
    fn random_text(seed: u64, words: usize, chinese: bool) -> String {
        let zh = [
            "数据", "清洗", "模型", "训练", "质量", "中文", "文本", "指令", "回答", "问题", "方法", "系统",
        ];
        let en = [
            "data", "clean", "model", "train", "quality", "text", "answer", "question", "method", "system",
            "the", "of",
        ];
        let mut st = seed;
        (0..words)
            .map(|_| {
                let i = (splitmix(&mut st) % 12) as usize;
                if chinese {
                    zh[i].to_string()
                } else {
                    format!("{} ", en[i])
                }
            })
            .collect()
    }

    /// Replace a fraction of the words, so pairs span the whole Jaccard range.
    fn mutate(seed: u64, text: &str, chinese: bool, frac: f64) -> String {
        let mut st = seed ^ 0xabcdef;
        let unit: Vec<String> = if chinese {
            text.chars()
                .collect::<Vec<_>>()
                .chunks(2)
                .map(|c| c.iter().collect())
                .collect()
        } else {
            text.split_whitespace().map(|w| format!("{w} ")).collect()
        };
        unit.into_iter()
            .map(|w| {
                if (splitmix(&mut st) % 1000) as f64 / 1000.0 < frac {
                    if chinese {
                        "变化".to_string()
                    } else {
                        "changed ".to_string()
                    }
                } else {
                    w
                }
            })
            .collect()
    }

    /// The normalization as it was written before the fold table: fast2s over the
    /// whole text, then width, letter/digit test, CJK test and lower case per character.
    fn reference_units(text: &str, fold_traditional: bool) -> (Vec<u32>, Vec<u32>, usize) {
        let text = if fold_traditional {
            crate::decontam::normalize::to_simplified(text)
        } else {
            std::borrow::Cow::Borrowed(text)
        };
        let (mut chars, mut word_at, mut cjk_count) = (Vec::new(), Vec::new(), 0);
        let mut in_word = false;
        for c in text.chars() {
            let c = fold_width(c);
            if !c.is_alphanumeric() {
                in_word = false;
                continue;
            }
            let cjk = is_cjk(c);
            cjk_count += cjk as usize;
            if cjk || !in_word {
                word_at.push(chars.len() as u32);
            }
            in_word = !cjk;
            chars.extend(c.to_lowercase().map(|l| l as u32));
        }
        word_at.push(chars.len() as u32);
        (chars, word_at, cjk_count)
    }

    #[test]
    fn fold_table_matches_the_per_character_normalization() {
        // Every character (BMP and a few beyond), each between other neighbours,
        // and fast2s's context characters in and out of their contexts.
        let all: String = (0..=0x10FFFFu32)
            .filter(|u| *u < 0x10000 || u % 97 == 0)
            .filter_map(char::from_u32)
            .collect();
        let texts = [
            all.as_str(),
            "乾隆的乾兒子一邊乾淨利落地擲出了一個乾卦，一邊嘴裡嚼着芒果乾。",
            "企畫 計畫 企劃 畫圖 畫畫 兒寬 答覆 甚夥 瞭望 幺麽 樊於期 看著 苧麻 闔家 鍾書 校讎",
            "乾",
            "İstanbul ǅ ﬁ ẞ Ａ１！ 数据ABC123 𠀀𠀁 def",
            "",
        ];
        for fold_traditional in [true, false] {
            for t in texts {
                let mut u = Units::default();
                normalize_into(t, fold_traditional, &mut u);
                let (chars, word_at, cjk) = reference_units(t, fold_traditional);
                assert!(
                    u.chars == chars,
                    "chars differ (fold_traditional {fold_traditional}) in {:.40}",
                    t
                );
                assert!(u.word_at == word_at, "words differ in {:.40}", t);
                assert_eq!(u.cjk, cjk);
            }
        }
    }

    #[test]
    fn rolling_hashes_are_the_windows_hashed_whole() {
        let values: Vec<u64> = (0..200u64).map(|i| mix(i % 13 + 1)).collect();
        for k in [1, 2, 5, 63, 64, 65, 130, 250] {
            let mut rolled = Vec::new();
            rolling_hashes(values.len(), k, |i| values[i], |h| rolled.push(h));
            let whole: Vec<u64> = values
                .windows(k.min(values.len()))
                .map(|w| w.iter().fold(0u64, |h, &v| h.rotate_left(1) ^ v))
                .collect();
            assert_eq!(rolled, whole, "k {k}");
        }
        let mut none = Vec::new();
        rolling_hashes(0, 5, |_| 0, |h| none.push(h));
        assert!(none.is_empty());
    }

    #[test]
    fn jaccard_estimate_tracks_exact_jaccard() {
        for hashing in [Hashing::Classic, Hashing::OnePermutation] {
            let s = stage(MinhashConfig {
                hashing,
                ..MinhashConfig::default()
            });
            let mut errs = Vec::new();
            for i in 0..300u64 {
                let chinese = i % 2 == 0;
                // From 20 words (fewer shingles than bins: densification at work) to 300.
                let a = random_text(i, 20 + (i as usize * 7) % 280, chinese);
                let b = mutate(i, &a, chinese, (i % 10) as f64 / 12.0);
                let exact = exact_jaccard(&s.cfg, &a, &b);
                let est = estimate(&s.signature(&a).unwrap(), &s.signature(&b).unwrap());
                // Standard error sqrt(J(1-J)/128) <= 0.044; 4 sigma never fails by chance here.
                assert!(
                    (est - exact).abs() < 0.18,
                    "{hashing:?} pair {i}: exact {exact:.3} est {est:.3}"
                );
                errs.push(est - exact);
            }
            let n = errs.len() as f64;
            let mean_abs = errs.iter().map(|e| e.abs()).sum::<f64>() / n;
            let bias = errs.iter().sum::<f64>() / n;
            assert!(mean_abs < 0.04, "{hashing:?}: mean abs error {mean_abs:.4}");
            assert!(bias.abs() < 0.01, "{hashing:?}: bias {bias:.4}");
        }
    }

    #[test]
    fn one_permutation_handles_short_and_identical_texts() {
        let s = stage(MinhashConfig {
            hashing: Hashing::OnePermutation,
            ..MinhashConfig::default()
        });
        let a = s.signature("好").unwrap();
        let b = s.signature("是的").unwrap();
        assert!(estimate(&a, &b) < 0.1);
        assert_eq!(s.signature("好！"), Some(a));
        let t = random_text(3, 100, true);
        assert_eq!(
            estimate(&s.signature(&t).unwrap(), &s.signature(&t).unwrap()),
            1.0
        );
        // Pinned values: a change here changes every stored signature.
        let sig = one_permutation_signature(&[1, 2, 3], 8);
        assert_eq!(sig.len(), 8);
        assert_eq!(sig, one_permutation_signature(&[3, 2, 1], 8));
    }

    #[test]
    fn bands_and_rows_follow_the_threshold() {
        for (t, p) in [(0.5, 128), (0.8, 128), (0.9, 256), (0.7, 64)] {
            let (b, r) = optimal_bands_rows(t, p, 0.5);
            assert!(b * r <= p);
            // The S-curve's steepest point (1/b)^(1/r) sits near the threshold.
            let knee = (1.0 / b as f64).powf(1.0 / r as f64);
            assert!((knee - t).abs() < 0.12, "t {t}: {b} x {r}, knee {knee:.3}");
        }
        // datasketch's MinHashLSH(threshold=0.8, num_perm=128) uses 9 bands of 13 rows.
        assert_eq!(optimal_bands_rows(0.8, 128, 0.5), (9, 13));
        assert_eq!(optimal_bands_rows(0.7, 128, 0.5), (14, 9));
        // Weighing false negatives more gives more, shorter bands (the default).
        assert_eq!(optimal_bands_rows(0.8, 128, 0.9), (14, 9));
        let s = stage(MinhashConfig::default());
        assert_eq!((s.bands, s.rows), (20, 6)); // threshold 0.7
                                                // Higher thresholds need more rows per band.
        assert!(optimal_bands_rows(0.9, 128, 0.5).1 > optimal_bands_rows(0.5, 128, 0.5).1);
        let s = stage(MinhashConfig {
            bands: Some(16),
            rows: Some(8),
            ..MinhashConfig::default()
        });
        assert_eq!((s.bands, s.rows), (16, 8));
        let bad = MinhashDedup::new(
            MinhashConfig {
                bands: Some(20),
                rows: Some(8),
                ..MinhashConfig::default()
            },
            &BuildContext {
                config_dir: ".".into(),
            },
        );
        assert!(bad.is_err());
    }

    #[test]
    fn short_texts_do_not_collide() {
        let s = stage(MinhashConfig::default());
        let texts = [
            "好",
            "是的",
            "ok",
            "no",
            "谢谢你",
            "yes please",
            "1",
            "2",
            "你好呀",
            "hi",
        ];
        let sigs: Vec<Vec<u32>> = texts.iter().map(|t| s.signature(t).unwrap()).collect();
        for i in 0..sigs.len() {
            for j in i + 1..sigs.len() {
                assert!(estimate(&sigs[i], &sigs[j]) < 0.1, "{} vs {}", texts[i], texts[j]);
            }
        }
        assert!(s.signature("").is_none());
        assert!(s.signature("……！？ ...").is_none());
        // The same short text (after folding) is the same signature.
        assert_eq!(s.signature("好！"), s.signature("好"));
    }

    #[test]
    fn chinese_is_shingled_by_character() {
        let cfg = MinhashConfig::default();
        let (h, by_char) = shingles(&cfg, "今天天气很好，我们去公园散步吧。");
        assert!(by_char);
        // 14 letters -> 10 character 5-grams.
        assert_eq!(h.len(), 10);
        let (h, by_char) = shingles(&cfg, "The quick brown fox jumps over the lazy dog");
        assert!(!by_char);
        assert_eq!(h.len(), 7); // 9 words -> 7 word 3-grams
                                // Punctuation width, spacing, case and traditional characters fold away.
        assert_eq!(
            shingles(&cfg, "今天天氣很好，我們去公園散步吧。").0,
            shingles(&cfg, "今天天气很好,我们 去公园散步吧!").0
        );
        assert_eq!(
            shingles(&cfg, "Ｈｅｌｌｏ, World!").0,
            shingles(&cfg, "hello world").0
        );
    }

    #[test]
    fn signatures_are_deterministic() {
        let a = stage(MinhashConfig::default());
        let b = stage(MinhashConfig::default());
        let t = random_text(7, 80, true);
        assert_eq!(a.signature(&t), b.signature(&t));
        // Pinned: a change here changes every stored signature and resumed state.
        let sig = a.signature("数据清洗是训练大模型的第一步").unwrap();
        assert_eq!(sig.len(), 128);
        let again = stage(MinhashConfig::default()).signature("数据清洗是训练大模型的第一步");
        assert_eq!(Some(sig), again);
    }

    #[test]
    fn state_round_trips() {
        let mut s = stage(MinhashConfig::default());
        s.cursor = 1234;
        s.decided = 17;
        s.shown.push(Shown {
            cluster: 3,
            kept: true,
            similarity: 0.75,
            id: "a:1".into(),
            text: "长城是中国古代的军事防御工程".into(),
        });
        let bytes = s.save_state().unwrap().unwrap();
        let mut t = stage(MinhashConfig::default());
        t.load_state(&bytes).unwrap();
        assert_eq!((t.cursor, t.decided), (1234, 17));
        assert_eq!(t.shown, s.shown);
        assert_eq!(t.save_state().unwrap().unwrap(), bytes);
        assert!(t.load_state(&bytes[..bytes.len() - 3]).is_err());
        assert!(t.load_state(b"MH01").is_err());
    }

    #[test]
    fn sizes_and_keep_rules_are_checked() {
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("2GB"), Ok(2 << 30));
        assert_eq!(parse_bytes("64k"), Ok(64 << 10));
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert!(parse_bytes("lots").is_err());
        let cx = BuildContext {
            config_dir: ".".into(),
        };
        let quality_without_path = MinhashConfig {
            keep: KeepRule::Quality,
            ..MinhashConfig::default()
        };
        assert!(MinhashDedup::new(quality_without_path, &cx).is_err());
        let path_without_quality = MinhashConfig {
            quality_meta: Some("quality.x".into()),
            ..MinhashConfig::default()
        };
        assert!(MinhashDedup::new(path_without_quality, &cx).is_err());
        let mut r = crate::record::test_record(json!({"text": "abc"}));
        r.annotate("quality", json!({"score": 0.5, "flag": "x"}));
        let s = stage(MinhashConfig {
            keep: KeepRule::Quality,
            quality_meta: Some("quality.score".into()),
            ..MinhashConfig::default()
        });
        assert_eq!(s.quality_of(&r), Some(0.5));
        let s = stage(MinhashConfig {
            keep: KeepRule::Quality,
            quality_meta: Some("quality.flag".into()),
            ..MinhashConfig::default()
        });
        assert_eq!(s.quality_of(&r), None);
    }
}
