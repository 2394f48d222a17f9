//! MinHash signatures: text normalization fused into shingle hashing, one-permutation
//! hashing with densification (or `num_perm` classic permutations), LSH band keys
//! and the datasketch banding for a threshold. The `minhash_dedup` stage computes
//! these per record in parallel; [`super::store`] clusters them.
//!
//! **Speed** (docs/benchmarks/dedup.md): normalization is one load per character
//! from a 256 KiB table built once (`fold_table`: decontam's memoized fast2s table,
//! width folding, the letter/digit and CJK tests and lower case folded together;
//! the 15 characters fast2s converts by context and the few whose lower case is
//! several characters take a slow path, checked against the per-character code in
//! a test). Shingles are never materialized as strings: a cyclic-polynomial rolling
//! hash (`rolling_hashes`) runs over per-character hashes (character shingles) or
//! per-word hashes (word shingles), one rotate and two xors per shingle, and feeds
//! the signature directly. Buffers are per thread and reused. All constants come
//! from fixed seeds, so signatures are identical on every run and machine.
//!
//! Hand-written rather than a crate: gaoya gives short texts an all-zero signature
//! (they would all collide) and probabilistic-collections has no LSH, panics on
//! short input and is unseeded; neither fuses normalization into hashing.

use serde::Deserialize;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::common::{remainder, CommonWindows, WINDOW};
use crate::decontam::normalize::mix;
use crate::text::{fold_width, is_cjk, simplify, t2s_table};

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

/// The settings that shape a signature (the `minhash_dedup` keys of the same names).
#[derive(Debug, Clone)]
pub struct Shingling {
    pub shingle: ShingleMode,
    /// `shingle = "auto"` cuts by characters when CJK characters >= this share of the words.
    pub auto_cjk_share: f64,
    pub char_ngram: usize,
    pub word_ngram: usize,
    pub num_perm: usize,
    pub hashing: Hashing,
    pub fold_traditional: bool,
}

impl Default for Shingling {
    fn default() -> Self {
        Shingling {
            shingle: ShingleMode::Auto,
            auto_cjk_share: 0.5,
            char_ngram: 5,
            word_ngram: 3,
            num_perm: 128,
            hashing: Hashing::OnePermutation,
            fold_traditional: true,
        }
    }
}

/// Signatures and band keys for one setting: the permutation constants and the
/// densification probes, computed once.
pub struct MinHasher {
    cfg: Shingling,
    bands: usize,
    rows: usize,
    /// Permutation constants `(a, b)`, `a` odd.
    perms: Vec<(u64, u64)>,
    /// Densification probes for one-permutation signatures.
    probes: Probes,
    /// The same for the response's and the prompt's [`RESPONSE_BINS`]-bin signatures.
    segment_probes: Probes,
}

impl MinHasher {
    /// The hasher for `cfg` with `bands` x `rows` LSH bands (`bands * rows <= num_perm`).
    pub fn new(cfg: Shingling, bands: usize, rows: usize) -> MinHasher {
        let mut st = PERM_SEED;
        let perms = (0..cfg.num_perm)
            .map(|_| (splitmix(&mut st) | 1, splitmix(&mut st)))
            .collect();
        let probes = Probes::new(cfg.num_perm);
        MinHasher {
            cfg,
            bands,
            rows,
            perms,
            probes,
            segment_probes: Probes::new(RESPONSE_BINS),
        }
    }

    /// `(bands, rows)` in force.
    pub fn banding(&self) -> (usize, usize) {
        (self.bands, self.rows)
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

    /// The verification sketch of a record (see [`Verify`]): the document signature
    /// of `prompt` + `response` (the same as [`MinHasher::signature`] of the two
    /// joined), then a [`RESPONSE_BINS`]-bin signature of `response` alone and one
    /// of `prompt` alone ([`PROMPT_BINS`]), the document's shingle count, and a
    /// sample of at most [`SEQ_SLOTS`] of its characters in order; `split`: the
    /// record has a prompt side and a response side (the per-segment guard
    /// applies). `None` when it has no letter or digit.
    pub fn sketch(&self, prompt: &str, response: &str, split: bool) -> Option<Vec<u32>> {
        let p = self.cfg.num_perm;
        let mut out = Vec::with_capacity(p + SKETCH_EXTRA);
        let mut doc = String::with_capacity(prompt.len() + response.len() + 1);
        doc.push_str(prompt);
        doc.push('\n');
        doc.push_str(response);
        out.extend(self.signature(&doc)?);
        SCRATCH.with(|cell| {
            let mut scratch = cell.borrow_mut();
            let Scratch {
                units, words, sketch, ..
            } = &mut *scratch;
            // The response alone: its own small signature, shingled as the document is.
            normalize_into(&doc, self.cfg.fold_traditional, units);
            let by_char = by_char(&self.cfg, units);
            let mut n_shingles = 0u32;
            for_each_shingle(&self.cfg, units, by_char, words, |_| n_shingles += 1);
            let doc_chars = std::mem::take(&mut units.chars);
            normalize_into(response, self.cfg.fold_traditional, units);
            let resp_units = units.chars.len();
            if units.chars.is_empty() {
                out.extend(std::iter::repeat_n(u32::MAX, RESPONSE_BINS));
            } else {
                sketch.reset(RESPONSE_BINS);
                for_each_shingle(&self.cfg, units, by_char, words, |h| sketch.add(h));
                out.extend(sketch.finish(&self.segment_probes));
            }
            // The prompt alone: a short question beside a long answer keeps only a
            // few characters in the sample below, too few to compare by runs.
            normalize_into(prompt, self.cfg.fold_traditional, units);
            if units.chars.is_empty() {
                out.extend(std::iter::repeat_n(u32::MAX, PROMPT_BINS));
            } else {
                sketch.reset(PROMPT_BINS);
                for_each_shingle(&self.cfg, units, by_char, words, |h| sketch.add(h));
                out.extend(sketch.finish(&self.segment_probes));
            }
            out.push(n_shingles);
            // The prompt side is the document's characters before the response's.
            let prompt_units = doc_chars.len().saturating_sub(resp_units);
            sample_sequence(&doc_chars, prompt_units, split, &mut out);
            units.chars = doc_chars;
            scratch.trim();
        });
        Some(out)
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
fn by_char(cfg: &Shingling, u: &Units) -> bool {
    match cfg.shingle {
        ShingleMode::Char => true,
        ShingleMode::Word => false,
        // Each CJK character is a word too.
        ShingleMode::Auto => u.cjk > 0 && u.cjk as f64 >= cfg.auto_cjk_share * u.words() as f64,
    }
}

/// Hand every shingle hash of `u` to `sink` (`words` is scratch for word hashes).
fn for_each_shingle(cfg: &Shingling, u: &Units, by_char: bool, words: &mut Vec<u64>, sink: impl FnMut(u64)) {
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

/// Per-thread buffers of [`MinHasher::signature`], reused from record to record.
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
fn shingles(cfg: &Shingling, text: &str) -> (Vec<u64>, bool) {
    let mut u = Units::default();
    normalize_into(text, cfg.fold_traditional, &mut u);
    let by_char = by_char(cfg, &u);
    let mut out = Vec::new();
    if !u.chars.is_empty() {
        for_each_shingle(cfg, &u, by_char, &mut Vec::new(), |h| out.push(h));
    }
    (out, by_char)
}

/// Bins of the response-only signature in a verification sketch.
pub const RESPONSE_BINS: usize = 32;
/// Characters sampled into a verification sketch, at most.
pub const SEQ_SLOTS: usize = 256;
/// Bins of the prompt-only signature in a verification sketch (as many as the response's).
pub const PROMPT_BINS: usize = RESPONSE_BINS;
/// Where the document's shingle count is, after the document signature.
const COUNT_AT: usize = RESPONSE_BINS + PROMPT_BINS;
/// Words a verification sketch has after the document signature: the response and
/// prompt signatures, the shingle count, the sample's header (split, level, length)
/// and the sample.
pub const SKETCH_EXTRA: usize = COUNT_AT + 3 + SEQ_SLOTS;
const SEQ_SEED: u64 = 0x7365_7100_0000_0001; // "seq"
const HAS_SPLIT: u32 = 1 << 31;
/// Estimated Jaccard below which a pair is not verified further.
const MIN_JACCARD: f64 = 0.2;

/// The character sample of a sketch: every character whose selection hash (of the
/// character and the one before it) has at least `level` trailing zero bits, with
/// the smallest level that keeps at most [`SEQ_SLOTS`] (all of them in a text of up
/// to 256 letters and digits). Each slot holds the selection hash (high 16 bits) and
/// the character's hash (low 16 bits), so two samples taken at different levels are
/// compared at the coarser one. A typo changes one character and the selection of
/// the next, so the sample keeps the text's edit rate (about twice it, sampled).
fn sample_sequence(chars: &[u32], prompt_units: usize, split: bool, out: &mut Vec<u32>) {
    let word = |i: usize| -> u32 {
        let c = chars[i] as u64;
        let prev = if i == 0 { 0 } else { chars[i - 1] as u64 };
        let sel = (mix(prev.wrapping_mul(0x9e37_79b9) ^ c ^ SEQ_SEED) >> 48) as u32;
        let ch = (mix(prev.wrapping_mul(0x85eb_ca6b) ^ c ^ SEQ_SEED.rotate_left(17)) & 0xffff) as u32;
        (sel << 16) | ch
    };
    let mut tz = [0usize; 18];
    for i in 0..chars.len() {
        tz[((word(i) >> 16) | 1 << 16).trailing_zeros() as usize] += 1;
    }
    // count(level) = characters with at least `level` trailing zeros.
    let mut level = 0usize;
    let mut count = chars.len();
    while count > SEQ_SLOTS && level < 16 {
        count -= tz[level];
        level += 1;
    }
    let mut sample = Vec::with_capacity(SEQ_SLOTS);
    let mut split_at = 0usize;
    for i in 0..chars.len() {
        let w = word(i);
        if (w >> 16).trailing_zeros() as usize >= level && sample.len() < SEQ_SLOTS {
            sample.push(w);
            if i < prompt_units {
                split_at = sample.len();
            }
        }
    }
    out.push(if split { HAS_SPLIT } else { 0 } | (level as u32) << 16 | split_at as u32);
    out.push(sample.len() as u32);
    out.extend_from_slice(&sample);
    out.extend(std::iter::repeat_n(0, SEQ_SLOTS - sample.len()));
}

/// Runs of equal characters shorter than this do not count in [`lcs`]: unrelated
/// texts share many scattered characters (English letters above all), a text with
/// typos shares long runs between them.
const MIN_RUN: usize = 3;

/// The longest common subsequence of two character samples (by the characters'
/// hashes) made of runs of at least [`MIN_RUN`] consecutive equal characters in
/// both (LCS>=k, Benson et al. 2016): `dp[i][j]` is the best of `dp[i-1][j]`,
/// `dp[i][j-1]`, and, when the last `r >= MIN_RUN` characters agree, `dp[i-k][j-k] + k`
/// (a run starts) or `dp[i-1][j-1] + 1` (`r > MIN_RUN`: a run goes on).
fn lcs(a: &[u32], b: &[u32]) -> usize {
    if a.len() < MIN_RUN || b.len() < MIN_RUN {
        return usize::from(a == b) * a.len();
    }
    let k = MIN_RUN;
    let w = b.len() + 1;
    // Rows i-k..=i of dp and of the run length, in a ring of k+1 rows.
    let mut dp = vec![0u16; (k + 1) * w];
    let mut run = vec![0u16; (k + 1) * w];
    for i in 1..=a.len() {
        let (cur, prev, back) = (i % (k + 1), (i - 1) % (k + 1), (i + 1) % (k + 1)); // back = i-k
        let x = a[i - 1] & 0xffff;
        dp[cur * w] = 0;
        run[cur * w] = 0;
        for j in 1..=b.len() {
            let r = if x == b[j - 1] & 0xffff {
                run[prev * w + j - 1] + 1
            } else {
                0
            };
            run[cur * w + j] = r;
            let mut best = dp[prev * w + j].max(dp[cur * w + j - 1]);
            if r as usize >= k {
                best = best.max(dp[back * w + j - k] + k as u16);
                if r as usize > k {
                    best = best.max(dp[prev * w + j - 1] + 1);
                }
            }
            dp[cur * w + j] = best;
        }
    }
    dp[(a.len() % (k + 1)) * w + b.len()] as usize
}

/// Differing stretches longer than this many sampled characters count against
/// [`gap_similarity`]; shorter ones (a typo breaks one or two) do not.
const MAX_GAP: usize = 8;

/// Gaps up to this many sampled characters on each side count in [`align`]'s
/// typo-tolerant match.
const TYPO_GAP: usize = 16;

/// A long differing stretch whose characters match one by one (an LCS of single
/// characters) at least this share of its longer side is a cluster of typos, not
/// other text: a typo breaks runs of [`MIN_RUN`] but leaves most characters.
/// Chosen on typo variants of the tune part's records (docs/benchmarks/dedup.md).
const GAP_MATCH: f64 = 0.35;

/// Window of [`covered`]: long enough that unrelated texts rarely share one.
const MOVED_RUN: usize = 8;

/// Per character of `a`: whether it is in a window of [`MOVED_RUN`] consecutive
/// characters that also occurs somewhere in `b`.
fn covered(a: &[u32], b: &[u32]) -> Vec<bool> {
    let k = MOVED_RUN;
    let mut out = vec![false; a.len()];
    if a.len() < k || b.len() < k {
        return out;
    }
    let key = |w: &[u32]| {
        w.iter()
            .fold(0u64, |h, &x| h.rotate_left(16) ^ (x & 0xffff) as u64)
    };
    let mut windows: Vec<u64> = b.windows(k).map(key).collect();
    windows.sort_unstable();
    for (p, w) in a.windows(k).enumerate() {
        if windows.binary_search(&key(w)).is_ok() {
            out[p..p + k].iter_mut().for_each(|m| *m = true);
        }
    }
    out
}

/// Edit-aware similarity of two character samples: 1 minus the share of the text
/// (mean length) that lies in differing stretches longer than [`MAX_GAP`] between
/// the runs of an LCS>=[`MIN_RUN`] alignment (leading and trailing ones included),
/// at least 0. Typos leave only short gaps (1 - ~0.05 at 8%), while two texts
/// sharing a long template differ in one long stretch, their content (as low as the
/// template's share, however much of it matches by chance).
fn gap_similarity(a: &[u32], b: &[u32]) -> f64 {
    align(a, b).0
}

/// [`gap_similarity`], and the characters matched by the alignment's runs plus,
/// inside each short gap between them (both sides at most [`TYPO_GAP`]), its
/// characters matched one by one: an LCS that tolerates typos, which break runs.
fn align(a: &[u32], b: &[u32]) -> (f64, usize) {
    let (n, m) = (a.len(), b.len());
    if n == 0 || m == 0 {
        return (if n == m { 1.0 } else { 0.0 }, 0);
    }
    ALIGN.with(|cell| {
        let (dp, run) = &mut *cell.borrow_mut();
        align_in(a, b, dp, run)
    })
}

thread_local! {
    /// [`align`]'s tables, reused: up to 257 x 257 cells each, every pair.
    static ALIGN: std::cell::RefCell<(Vec<u16>, Vec<u16>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

fn align_in(a: &[u32], b: &[u32], dp: &mut Vec<u16>, run: &mut Vec<u16>) -> (f64, usize) {
    let (n, m) = (a.len(), b.len());
    let k = MIN_RUN;
    let w = m + 1;
    // Row 0 and column 0 are zero; every other cell is written before it is read.
    dp.resize((n + 1) * w, 0);
    run.resize((n + 1) * w, 0);
    dp[..w].fill(0);
    run[..w].fill(0);
    for i in 1..=n {
        let x = a[i - 1] & 0xffff;
        dp[i * w] = 0;
        run[i * w] = 0;
        for j in 1..=m {
            let r = if x == b[j - 1] & 0xffff {
                run[(i - 1) * w + j - 1] + 1
            } else {
                0
            };
            run[i * w + j] = r;
            let mut best = dp[(i - 1) * w + j].max(dp[i * w + j - 1]);
            if r as usize >= k {
                best = best.max(dp[(i - k) * w + j - k] + k as u16);
                if r as usize > k {
                    best = best.max(dp[(i - 1) * w + j - 1] + 1);
                }
            }
            dp[i * w + j] = best;
        }
    }
    // Characters in a run of MIN_RUN found anywhere in the other text: text that
    // moved (reordered paragraphs) rather than differs.
    let moved_a = covered(a, b);
    let moved_b = covered(b, a);
    // Walk the alignment back; sum the long gaps between matched characters.
    let (mut i, mut j) = (n, m);
    let (mut next_i, mut next_j) = (n + 1, m + 1);
    let mut long = 0usize;
    let mut typo_matched = dp[n * w + m] as usize;
    let mut gap = |i: usize, j: usize, next_i: usize, next_j: usize| {
        // 1-based positions i+1..next_i-1 of `a` (0-based i..next_i-1), likewise `b`.
        let (sa, sb) = (&a[i..next_i - 1], &b[j..next_j - 1]);
        let gi = moved_a[i..next_i - 1].iter().filter(|&&m| !m).count();
        let gj = moved_b[j..next_j - 1].iter().filter(|&&m| !m).count();
        let short = !sa.is_empty() && !sb.is_empty() && sa.len().max(sb.len()) <= TYPO_GAP;
        let two_sided_long = gi.min(gj) > 2 && gi.max(gj) > MAX_GAP;
        if !short && !two_sided_long {
            return;
        }
        let one_by_one = single_lcs(sa, sb);
        if short {
            typo_matched += one_by_one;
        }
        // Text on one side only (added, removed, cut) is not a difference here, nor
        // a stretch where typos fall close together (its characters still match one
        // by one, out of runs).
        if two_sided_long && (one_by_one as f64) < GAP_MATCH * sa.len().max(sb.len()) as f64 {
            long += gi.max(gj);
        }
    };
    while i > 0 && j > 0 {
        let d = dp[i * w + j];
        if d == dp[(i - 1) * w + j] {
            i -= 1;
        } else if d == dp[i * w + j - 1] {
            j -= 1;
        } else {
            let r = run[i * w + j] as usize;
            let step = if r > k && d == dp[(i - 1) * w + j - 1] + 1 {
                1
            } else {
                k
            };
            for _ in 0..step {
                gap(i, j, next_i, next_j);
                (next_i, next_j) = (i, j);
                i -= 1;
                j -= 1;
            }
        }
    }
    gap(0, 0, next_i, next_j);
    (
        (1.0 - long as f64 / ((n + m) as f64 / 2.0)).max(0.0),
        typo_matched,
    )
}

/// Order-free overlap of two character samples: how many runs of [`MIN_RUN`]
/// characters they share (as multisets).
fn run_overlap(a: &[u32], b: &[u32]) -> usize {
    let runs = |s: &[u32]| -> Vec<u64> {
        s.windows(MIN_RUN)
            .map(|w| w.iter().fold(0u64, |h, &x| h << 16 | (x & 0xffff) as u64))
            .collect()
    };
    multiset_common(runs(a), runs(b))
}

/// Characters two samples share, counted as multisets: a bound on every common
/// subsequence of the two.
fn bag_overlap(a: &[u32], b: &[u32]) -> usize {
    let chars = |s: &[u32]| -> Vec<u64> { s.iter().map(|&x| (x & 0xffff) as u64).collect() };
    multiset_common(chars(a), chars(b))
}

/// The size of the multiset intersection of `x` and `y` (sorted here).
fn multiset_common(mut x: Vec<u64>, mut y: Vec<u64>) -> usize {
    x.sort_unstable();
    y.sort_unstable();
    let (mut i, mut j, mut both) = (0, 0, 0usize);
    while i < x.len() && j < y.len() {
        match x[i].cmp(&y[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                both += 1;
                i += 1;
                j += 1;
            }
        }
    }
    both
}

/// The plain longest common subsequence of two short stretches of characters.
fn single_lcs(a: &[u32], b: &[u32]) -> usize {
    let mut row = vec![0usize; b.len() + 1];
    for &x in a {
        let mut diag = 0;
        for (j, &y) in b.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = if x & 0xffff == y & 0xffff {
                diag + 1
            } else {
                up.max(row[j])
            };
            diag = up;
        }
    }
    row[b.len()]
}

/// `2 * LCS / (|a| + |b|)`: 1 for equal samples (and two empty ones).
fn lcs_similarity(a: &[u32], b: &[u32]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    2.0 * lcs(a, b) as f64 / (a.len() + b.len()) as f64
}

/// How two verification sketches ([`MinHasher::sketch`]) are judged near duplicates
/// (the `minhash_dedup` keys of the same names; chosen on the tune part of
/// `tests/minhash_labelled.rs`). A pair is a near duplicate when
///
/// 1. **per segment** (only when both records have a prompt side and a response
///    side): the prompts' character samples have LCS similarity at least
///    `segment_threshold`, or their estimated Jaccard does (a short prompt keeps few
///    sampled characters), and the responses have one of the two too (a reordered
///    answer keeps its shingles, not its order) — this is what separates "the same
///    question with a different answer";
/// 2. **not a template pair** (when the corpus's common text was counted,
///    [`super::common`]): with the text that at least `template_records` records
///    hold set aside, when both sides have content left, that content matches (LCS
///    or runs in any order cover `coverage` of the shorter side) and has no long
///    stretch that differs on both sides (`edit_threshold`, as in 4) — items of one
///    exam template whose slot texts recur in other slots fail here;
/// 3. estimated Jaccard at least `reorder_jaccard` (a reordered text keeps its
///    shingles, not its order): a duplicate, whatever follows;
/// 4. **no long difference**: [`gap_similarity`] at least `edit_threshold` (a long
///    shared template with other content differs in one long two-sided stretch;
///    typos leave short gaps, and a cluster of them still matches character by
///    character);
/// 5. one of: estimated Jaccard of the documents at least `threshold`; estimated
///    containment of the smaller document's shingles at least `containment`
///    (truncation, a sentence or boilerplate added); typo-tolerant LCS similarity
///    ([`align`]) of the character samples at least `coverage` (typos: each one
///    breaks `n` shingles but only one or two sampled characters).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verify {
    pub num_perm: usize,
    pub threshold: f64,
    pub containment: f64,
    pub edit_threshold: f64,
    pub coverage: f64,
    pub reorder_jaccard: f64,
    pub segment_threshold: f64,
    /// Records that must hold a window of text for it to count as a template
    /// ([`super::common`]); 0 turns the template rule off.
    pub template_records: u32,
}

impl Verify {
    /// Words per sketch.
    pub fn width(&self) -> usize {
        self.num_perm + SKETCH_EXTRA
    }

    /// Estimated Jaccard of the documents (what `meta` reports).
    pub fn similarity(&self, a: &[u32], b: &[u32]) -> f64 {
        estimate(&a[..self.num_perm], &b[..self.num_perm])
    }

    /// Where a sketch's sample header (split flag, level, prompt length) is.
    fn head(&self) -> usize {
        self.num_perm + COUNT_AT + 1
    }

    /// The level a sketch's sample was taken at.
    fn level(&self, s: &[u32]) -> u32 {
        (s[self.head()] >> 16) & 0xff
    }

    /// The character sample of a sketch at `level`, and how much of it is the prompt's.
    fn sample(&self, s: &[u32], level: u32) -> (Vec<u32>, usize) {
        let p = self.head();
        let split_at = (s[p] & 0xffff) as usize;
        let len = (s[p + 1] as usize).min(SEQ_SLOTS);
        let seq = &s[p + 2..p + 2 + len];
        let mut out = Vec::with_capacity(len);
        let mut prompt = 0;
        for (i, &w) in seq.iter().enumerate() {
            if (w >> 16).trailing_zeros() >= level {
                out.push(w);
                if i < split_at {
                    prompt = out.len();
                }
            }
        }
        (out, prompt)
    }

    /// A sketch's own character sample and its level (what [`CommonWindows::add`] counts).
    pub fn own_sample(&self, s: &[u32]) -> (Vec<u32>, u32) {
        let level = self.level(s);
        (self.sample(s, level).0, level)
    }

    /// Whether two sketches are near duplicates (the rules above), with the corpus's
    /// common text when it was counted.
    pub fn matches(&self, a: &[u32], b: &[u32], common: Option<&CommonWindows>) -> bool {
        let p = self.num_perm;
        let j = estimate(&a[..p], &b[..p]);
        // Below this no rule passes in practice (a text with 8% typos keeps ~0.45).
        if j < MIN_JACCARD {
            return false;
        }
        let head = self.head();
        let level = self.level(a).max(self.level(b));
        let ((sa, pa), (sb, pb)) = (self.sample(a, level), self.sample(b, level));
        // Most candidates fail every rule: the characters the samples share (as
        // multisets) bound every LCS below, so no alignment is computed for a pair
        // that no rule could pass (the result is the same, only sooner).
        let (na, nb) = (a[p + COUNT_AT] as f64, b[p + COUNT_AT] as f64);
        let inter = j * (na + nb) / (1.0 + j);
        let contained = na.min(nb) > 0.0 && inter / na.min(nb) >= self.containment;
        let shared = bag_overlap(&sa, &sb);
        if j < self.threshold.min(self.reorder_jaccard)
            && !contained
            && 2.0 * (shared as f64) / ((sa.len() + sb.len()).max(1) as f64) < self.coverage
        {
            return false;
        }
        if a[head] & HAS_SPLIT != 0 && b[head] & HAS_SPLIT != 0 {
            let jp = estimate(
                &a[p + RESPONSE_BINS..p + COUNT_AT],
                &b[p + RESPONSE_BINS..p + COUNT_AT],
            );
            if jp < self.segment_threshold && lcs_similarity(&sa[..pa], &sb[..pb]) < self.segment_threshold {
                return false;
            }
            let jr = estimate(&a[p..p + RESPONSE_BINS], &b[p..p + RESPONSE_BINS]);
            if jr < self.segment_threshold && lcs_similarity(&sa[pa..], &sb[pb..]) < self.segment_threshold {
                return false;
            }
        }
        // The template veto: set aside text that many records hold; when both sides
        // have content beyond it, that content must match (most of the shorter side,
        // in order or in any order).
        if let Some(c) = common {
            let (ma, mb) = (c.common_mask(&sa, level), c.common_mask(&sb, level));
            let (ra, rb) = (remainder(&sa, &ma, WINDOW), remainder(&sb, &mb, WINDOW));
            let has_template = ma.iter().any(|&m| m) || mb.iter().any(|&m| m);
            if has_template && !ra.is_empty() && !rb.is_empty() {
                let (la, lb) = (ra.len() as f64, rb.len() as f64);
                let (common_seq, runs) = (lcs(&ra, &rb) as f64, run_overlap(&ra, &rb) as f64);
                let runs_per_side = (la.min(lb) - (MIN_RUN - 1) as f64).max(1.0);
                let within = (common_seq / la.min(lb)).max(runs / runs_per_side);
                if within < self.coverage || gap_similarity(&ra, &rb) < self.edit_threshold {
                    return false;
                }
            }
        }
        // A reordered text keeps its shingles (high Jaccard) but not its order: no
        // veto at `reorder_jaccard` and above.
        if j >= self.reorder_jaccard {
            return true;
        }
        // The veto: a long stretch that differs on both sides (a shared template
        // with other content), however similar the rest.
        let (gap, typo_matched) = align(&sa, &sb);
        if gap < self.edit_threshold {
            return false;
        }
        if j >= self.threshold {
            return true;
        }
        if contained {
            return true;
        }
        2.0 * typo_matched as f64 / (sa.len() + sb.len()) as f64 >= self.coverage
    }
}

/// Estimated Jaccard similarity: the fraction of equal minimums.
pub fn estimate(a: &[u32], b: &[u32]) -> f64 {
    let eq = a.iter().zip(b).filter(|(x, y)| x == y).count();
    eq as f64 / a.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn hasher(cfg: Shingling) -> MinHasher {
        MinHasher::new(cfg, 20, 6)
    }

    fn exact_jaccard(cfg: &Shingling, a: &str, b: &str) -> f64 {
        let sa: HashSet<u64> = shingles(cfg, a).0.into_iter().collect();
        let sb: HashSet<u64> = shingles(cfg, b).0.into_iter().collect();
        sa.intersection(&sb).count() as f64 / sa.union(&sb).count() as f64
    }

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
            crate::text::to_simplified(text)
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
            let s = hasher(Shingling {
                hashing,
                ..Shingling::default()
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
        let s = hasher(Shingling {
            hashing: Hashing::OnePermutation,
            ..Shingling::default()
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
    fn short_texts_do_not_collide() {
        let s = hasher(Shingling::default());
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
        let cfg = Shingling::default();
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
        let a = hasher(Shingling::default());
        let b = hasher(Shingling::default());
        let t = random_text(7, 80, true);
        assert_eq!(a.signature(&t), b.signature(&t));
        // Pinned: a change here changes every stored signature and resumed state.
        let sig = a.signature("数据清洗是训练大模型的第一步").unwrap();
        assert_eq!(sig.len(), 128);
        let again = hasher(Shingling::default()).signature("数据清洗是训练大模型的第一步");
        assert_eq!(Some(sig), again);
    }

    fn verify() -> Verify {
        Verify {
            num_perm: 128,
            threshold: 0.6,
            containment: 0.9,
            edit_threshold: 0.85,
            coverage: 0.75,
            reorder_jaccard: 0.8,
            segment_threshold: 0.4,
            template_records: 32,
        }
    }

    /// Every `every`-th letter replaced by another.
    fn with_typos(t: &str, every: usize) -> String {
        t.chars()
            .enumerate()
            .map(|(i, c)| match (i % every == every / 2, c.is_ascii_lowercase()) {
                (true, true) => ((c as u8 - b'a' + 7) % 26 + b'a') as char,
                (true, false) if c.is_alphanumeric() => '错',
                _ => c,
            })
            .collect()
    }

    #[test]
    fn verification_tolerates_typos_and_reordering_but_not_another_answer_or_template() {
        let s = hasher(Shingling {
            shingle: ShingleMode::Char,
            ..Shingling::default()
        });
        let v = verify();
        let q = "请介绍一下长城的历史，以及它在中国古代军事防御中所起的作用。";
        let a = "长城始建于春秋战国时期，秦始皇统一六国后将各国长城连接起来。明朝时又进行了大规模修筑，形成了今天我们看到的样子。它在古代主要用于抵御北方游牧民族的侵扰。";
        let b = "光合作用是植物利用光能，把二氧化碳和水转化为有机物并释放氧气的过程。它是地球上几乎所有生命的能量来源，也维持着大气中氧气的含量。";
        let sk = |p: &str, r: &str| s.sketch(p, r, true).unwrap();
        let orig = sk(q, a);
        assert_eq!(orig.len(), v.width());
        assert!(v.matches(&orig, &orig, None));
        // About 7% of the characters mistyped: Jaccard of 5-grams is far below 0.6.
        let typo = sk(&with_typos(q, 14), &with_typos(a, 14));
        assert!(v.similarity(&orig, &typo) < 0.6, "{}", v.similarity(&orig, &typo));
        assert!(v.matches(&orig, &typo, None));
        // The same question with another answer.
        assert!(!v.matches(&orig, &sk(q, b), None));
        // Sentences of the answer reordered.
        let mut ss: Vec<&str> = a.split_inclusive('。').collect();
        ss.rotate_left(1);
        assert!(v.matches(&orig, &sk(q, &ss.concat()), None));
        // English: typos, and a long shared template with other content.
        let t = |x: &str, y: &str| {
            format!(
                "For which of the following two situations does the person described act in a way that is clearly unfair or dishonest, judged by the common standards of most people today? Situation 1 | {x} Situation 2 | {y}\nA. Unfair, Unfair\nB. Unfair, Fair\nC. Fair, Unfair\nD. Fair, Fair"
            )
        };
        let e1 = s
            .sketch(
                "",
                &t(
                    "I took the last cookie without asking anyone.",
                    "I returned the wallet I found to its owner.",
                ),
                false,
            )
            .unwrap();
        let e2 = s
            .sketch(
                "",
                &t(
                    "I copied my friend's homework and handed it in.",
                    "I told my boss the project was late because of me.",
                ),
                false,
            )
            .unwrap();
        assert!(!v.matches(&e1, &e2, None), "template pair merged");
        let text = t(
            "I took the last cookie without asking anyone.",
            "I returned the wallet I found to its owner.",
        );
        let e3 = s.sketch("", &with_typos(&text, 16), false).unwrap();
        assert!(v.matches(&e1, &e3, None));
    }

    /// The moral-scenarios shape: one long template, two slots, slot texts recurring
    /// in other items and in either slot.
    #[test]
    fn template_items_sharing_a_slot_text_are_not_duplicates_once_the_template_is_counted() {
        let s = hasher(Shingling {
            shingle: ShingleMode::Char,
            char_ngram: 3,
            ..Shingling::default()
        });
        let v = Verify {
            threshold: 0.5,
            containment: 0.8,
            edit_threshold: 0.9,
            segment_threshold: 0.3,
            ..verify()
        };
        let t = |x: &str, y: &str| {
            format!("请阅读下面两个情景，判断主人公（使用第一人称）的做法是否明显违反了当今社会普遍认可的道德标准，并从选项中选出正确答案。情景一：{x} 情景二：{y}\nA. 违反，违反\nB. 违反，不违反\nC. 不违反，违反\nD. 不违反，不违反")
        };
        let slots: Vec<String> = (0..20).map(|i| random_text(100 + i, 12, true)).collect();
        let items: Vec<Vec<u32>> = (0..40)
            .map(|k| {
                s.sketch("", &t(&slots[k % 20], &slots[(k * 7 + 3) % 20]), false)
                    .unwrap()
            })
            .collect();
        let mut common = CommonWindows::new(40 * 500, 1 << 20, v.template_records as u8);
        for it in &items {
            let (sample, level) = v.own_sample(it);
            common.add(&sample, level);
        }
        // `T A B` against `T C A`: A aligns across the slots, B and C are one-sided.
        let (a, b, c) = (&slots[1], &slots[2], &slots[3]);
        let tab = s.sketch("", &t(a, b), false).unwrap();
        let tca = s.sketch("", &t(c, a), false).unwrap();
        assert!(
            v.matches(&tab, &tca, None),
            "without the counts the pair looks like a duplicate"
        );
        assert!(!v.matches(&tab, &tca, Some(&common)), "template pair merged");
        // A real duplicate of a template item still is one: typos, and the same item.
        let typo = s.sketch("", &with_typos(&t(a, b), 14), false).unwrap();
        assert!(v.matches(&tab, &typo, Some(&common)));
        assert!(v.matches(&tab, &tab, Some(&common)));
    }

    #[test]
    fn a_short_prompt_with_a_typo_is_judged_by_its_shingles() {
        let s = hasher(Shingling {
            shingle: ShingleMode::Char,
            char_ngram: 3,
            ..Shingling::default()
        });
        let v = Verify {
            segment_threshold: 0.3,
            ..verify()
        };
        // A long answer puts the sample at a level where the prompt keeps a few characters.
        let answer = random_text(5, 400, true);
        let a = s.sketch("解释人类大脑如何处理语言信息。", &answer, true).unwrap();
        let b = s.sketch("解释人类大脑怎样处理语言信息。", &answer, true).unwrap();
        assert!(v.matches(&a, &b, None));
        // Another question with the same answer is not a duplicate.
        let c = s.sketch("请写一首关于秋天的诗歌并解释。", &answer, true).unwrap();
        assert!(!v.matches(&a, &c, None));
    }

    /// The level-0 character sample of a text (every letter and digit, in order).
    fn seq(t: &str) -> Vec<u32> {
        let mut u = Units::default();
        normalize_into(t, true, &mut u);
        let mut out = Vec::new();
        sample_sequence(&u.chars, 0, false, &mut out);
        out[2..2 + out[1] as usize].to_vec()
    }

    #[test]
    fn a_cluster_of_typos_is_not_a_long_difference() {
        let a = seq("the quick brown fox jumps over the lazy dog and runs far away into the green forest");
        // Every fourth letter changed over four words: no run of three survives there,
        // half the characters still match one by one.
        let b = seq("the quick brown fox juxps ower tke laqy dog and runs far away into the green forest");
        let (gap, matched) = align(&a, &b);
        assert_eq!(gap, 1.0);
        assert!(matched > lcs(&a, &b), "{matched} vs {}", lcs(&a, &b));
        // Other words of the same length are a long difference.
        let c = seq("the quick brown fox sleeps under a tree dog and runs far away into the green forest");
        assert!(gap_similarity(&a, &c) < 0.9, "{}", gap_similarity(&a, &c));
    }

    #[test]
    fn gap_similarity_counts_long_two_sided_differences_only() {
        let a = seq("the quick brown fox jumps over the lazy dog and runs far away into the green forest");
        assert_eq!(gap_similarity(&a, &a), 1.0);
        // Text added at the end or removed: one-sided.
        let b = seq("the quick brown fox jumps over the lazy dog and runs far away into the green forest, never to be seen again by anyone");
        assert_eq!(gap_similarity(&a, &b), 1.0);
        // The middle replaced by other text: two-sided and long.
        let c = seq(
            "the quick brown fox sleeps all day long under a big warm blanket far away into the green forest",
        );
        assert!(gap_similarity(&a, &c) < 0.8, "{}", gap_similarity(&a, &c));
        assert_eq!(lcs(&a, &a), a.len());
        assert!(lcs_similarity(&a, &c) < 1.0);
    }
}
