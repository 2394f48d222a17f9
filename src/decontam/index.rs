//! The n-gram index over benchmark items, and matching a text against it.
//!
//! Every item (question plus options, see [`super::normalize`]) becomes a token
//! stream; English items (most tokens are words) are cut into word n-grams
//! (`ngram_en`, 13 as in GPT-3 and lm-eval-harness), Chinese items into character
//! n-grams (`ngram_zh`). Each n-gram is hashed (polynomial rolling hash over the
//! token hashes, 64 bits) into one map `n-gram -> items`. N-grams shared by more
//! than `max_items_per_ngram` items (`下列说法正确的是…`, `which of the following`)
//! are dropped: they say nothing about one item.
//!
//! An item has two n-gram sets: `Q`, the n-grams inside the question, and `F`, all
//! n-grams of question plus options. A text matches an item with
//! `overlap = max(|Q ∩ T| / |Q|, |F ∩ T| / |F|)` (distinct, non-common n-grams;
//! `Q` only counts when it has at least [`MIN_Q`] n-grams), and is
//! contaminated by it when `overlap >= threshold`; a fraction counts only with at
//! least [`MIN_HITS`] matched n-grams behind it (all of them for smaller sets). `Q` catches the question
//! without its options, or with options reordered; `F` catches items whose
//! question alone is short or generic.
//!
//! Short items: an item whose question has fewer than `n + MIN_GRAMS - 1` tokens
//! uses the short size `ceil(n / 2)` (7 words, 4 characters by default) for all
//! its n-grams, so a short question still gives `Q` n-grams and options still
//! count; an item with fewer tokens than the short size in all is skipped
//! (counted in [`Index::skipped`]). An item whose n-grams are all common cannot
//! match. A short question is generic (`教育是一种`), so the question alone
//! decides only when it has at least [`MIN_SHORT_Q_TOKENS`] tokens (any item) and,
//! for short items, all its n-grams are found; otherwise a matched n-gram must
//! reach into the options.
//!
//! Verified candidates (light edits, reordering, shuffled options): English items
//! also get `verify_ngram_en`-word candidate n-grams, and every item keeps its
//! [`KEYWORDS`] rarest token pairs (word pairs, CJK character pairs) weighted by
//! rarity. An item whose main or candidate overlap reaches `verify_threshold`, or
//! whose keyword weight found anywhere in the text reaches `keyword_threshold_en` /
//! `_zh`, is aligned with the text clause by clause, character by character
//! (`Index::verify`), and matches with `min_similarity` ([`Evidence::Fuzzy`] or
//! [`Evidence::Reordered`]). Options alone never match: the question must carry
//! its share in both paths; a question n-gram that one of the item's options
//! repeats counts for the options, and text an option matched nearly in full is
//! hidden from the question's alignment. English items also get word grams
//! (`letter_gram_en`: from each word, the fewest whole words with 10+ bytes of
//! text), which survive 2-5% changed letters; records dense in present
//! smallest-size n-grams (15%+) look them up, and an item with
//! `letter_threshold_en` of them found is checked the same way. English items also
//! keep their rare single words (4+ bytes, in at most 15 items), probed in every
//! record: an item with `rare_word_threshold_en` of them (3+) within a stretch
//! about twice its length, and half its long words in the record, is checked the
//! same way too (copies with most words but no word runs intact). An n-gram hit
//! with an overlap below `ngram_verify_below` must align too (a shared phrase,
//! `进入社会主义初级阶段的`, is not a copy).
//!
//! Scanning (the hot path, >= 50 MB/s per core) never builds an n-gram list per
//! size: one pass makes prefix hashes of the tokens, then probes a Bloom filter of
//! every item's n-grams of the smallest size in use (`present`, common ones
//! included) once per token. A text n-gram of any size can only be indexed when
//! all its smallest-size n-grams are present, so a running count of consecutive
//! present ones rules out nearly every window of clean text for all five sizes at
//! once. The few windows left go through a Bloom filter of the map's keys
//! (`filter`), then the map. The filters have no false negatives, so the keys found
//! are exactly those of checking every window of every size against the map.
//! Both filters take 8 bits per key (4 + 4 MiB for MMLU + C-Eval + CMMLU).
//! Buffers are per thread and reused (no allocation per record).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::loaders::BenchItem;
use super::normalize::{mix, tokenize, tokenize_into, Token};

/// Fewest n-grams the question should have at the item's size before the short size is used.
pub const MIN_GRAMS: usize = 3;

/// Matched n-grams needed before an overlap fraction counts (all, for smaller sets).
pub const MIN_HITS: u32 = 3;

/// Fewest question n-grams for the question alone to decide a match.
pub const MIN_Q: usize = 2;

/// Fewest question tokens (English words, Chinese characters) for any item's
/// question alone to decide a match (for a short item, only when all its n-grams
/// are found too).
pub const MIN_SHORT_Q_TOKENS: [u32; 2] = [8, 12];

const P: u64 = 0x9e37_79b9_7f4a_7c15 | 1;

/// Bloom filter bits per key, before rounding the size up to a power of two
/// (three bits set per key in one 64-bit word: 2-5% false positives; smaller
/// filters miss the cache less, which matters more).
const BLOOM_BITS_PER_KEY: usize = 8;

/// Largest Bloom filter (2^27 bits = 16 MiB); past it false positives rise,
/// results do not change.
const BLOOM_MAX_BITS: usize = 1 << 27;

/// Matching parameters (shared by the `decontaminate` stage and `curate audit`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MatchConfig {
    /// Word n-gram size for English items.
    pub ngram_en: usize,
    /// Character n-gram size for Chinese items.
    pub ngram_zh: usize,
    /// Overlap (fraction of the item's n-grams found) from which a text is contaminated.
    pub threshold: f64,
    /// N-grams shared by more items than this are ignored.
    pub max_items_per_ngram: usize,
    /// Word n-gram size of the verified candidate path for English items (0: off):
    /// an item whose `verify_ngram_en`-gram overlap reaches `threshold` matches when
    /// its question aligns with the text with `min_similarity`.
    pub verify_ngram_en: usize,
    /// Share of the item's characters the clause-by-clause alignment must match.
    pub min_similarity: f64,
    /// N-gram overlap from which an item below `threshold` is checked character by
    /// character (main or candidate n-grams).
    pub verify_threshold: f64,
    /// Share of an English item's keyword weight (its rarest word pairs, found
    /// anywhere in the text) from which it is checked character by character.
    pub keyword_threshold_en: f64,
    /// The same for Chinese items (character pairs: a copy keeps more of them).
    pub keyword_threshold_zh: f64,
    /// Word grams of English items (0: off): from each word, the fewest whole words
    /// with at least `letter_gram_en` bytes of text, so a changed letter spoils only
    /// the one or two grams over its word. Looked up only in records where 15% of
    /// the smallest-size n-grams are an item's.
    pub letter_gram_en: usize,
    /// Share of an English item's word grams found from which it is checked
    /// character by character.
    pub letter_threshold_en: f64,
    /// An n-gram hit with an overlap below this must also align with the record
    /// (`min_similarity`): a shared phrase is not a copy of the item.
    pub ngram_verify_below: f64,
    /// Share of an English item's rare words (single words of at least
    /// [`RARE_WORD_BYTES`] bytes in at most [`RARE_WORD_MAX_ITEMS`] items), found in
    /// any record within a stretch about twice the item's length (at least
    /// [`MIN_HITS`], one in the question), from which it is checked character by
    /// character once half its long words are in the record too (0: off). Heavily
    /// edited copies keep few intact word runs but most words.
    pub rare_word_threshold_en: f64,
}

impl Default for MatchConfig {
    fn default() -> Self {
        MatchConfig {
            ngram_en: 13,
            ngram_zh: 8,
            threshold: 0.35,
            max_items_per_ngram: 10,
            verify_ngram_en: 5,
            min_similarity: 0.8,
            verify_threshold: 0.2,
            keyword_threshold_en: 0.2,
            keyword_threshold_zh: 0.5,
            letter_gram_en: 10,
            letter_threshold_en: 0.3,
            ngram_verify_below: 0.5,
            rare_word_threshold_en: 0.3,
        }
    }
}

/// Identity hasher: keys are already mixed 64-bit hashes.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 keys")
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = x;
    }
}

type Map<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// Posting lists from `(key, posting)` pairs sorted by key: each key maps to
/// `(start, len)` in one postings vector, and a Bloom filter (hash rotation `rotate`)
/// holds the keys. A key with more than `max` postings is left out (common); `kept`
/// sees every posting that goes in. Also returns how many keys were left out.
fn posting_lists(
    pairs: &[(u64, u32)],
    max: usize,
    rotate: u32,
    mut kept: impl FnMut(u32),
) -> (Map<(u32, u32)>, Vec<u32>, Bloom, usize) {
    // The exact numbers of keys and postings (one pass over the sorted pairs): no
    // rehash or regrowth while filling.
    let (mut keys, mut kept_len) = (0, 0);
    for run in pairs.chunk_by(|a, b| a.0 == b.0).filter(|run| run.len() <= max) {
        keys += 1;
        kept_len += run.len();
    }
    let mut map: Map<(u32, u32)> = Map::default();
    map.reserve(keys);
    let mut postings = Vec::with_capacity(kept_len);
    let mut common = 0;
    for run in pairs.chunk_by(|a, b| a.0 == b.0) {
        if run.len() > max {
            common += 1;
            continue;
        }
        map.insert(run[0].0, (postings.len() as u32, run.len() as u32));
        for &(_, p) in run {
            postings.push(p);
            kept(p);
        }
    }
    let mut filter = Bloom::new(map.len(), rotate);
    for &k in map.keys() {
        filter.insert(k);
    }
    (map, postings, filter, common)
}

/// A blocked Bloom filter over 64-bit keys that are already mixed: each key sets
/// three bits of one 64-bit word, so a probe touches one cache line. No false
/// negatives; a cheap "no" before the map, which lives in main memory.
struct Bloom {
    words: Vec<u64>,
    mask: usize,
    /// Bits of the key the word index comes from (filters over the same keys use
    /// different bits, so their false positives are independent).
    rotate: u32,
}

impl Bloom {
    fn new(keys: usize, rotate: u32) -> Bloom {
        let bits = (keys.max(1) * BLOOM_BITS_PER_KEY)
            .next_power_of_two()
            .clamp(64, BLOOM_MAX_BITS);
        Bloom {
            words: vec![0; bits / 64],
            mask: bits / 64 - 1,
            rotate,
        }
    }

    #[inline]
    fn slot(&self, key: u64) -> (usize, u64) {
        let h = key.rotate_left(self.rotate);
        // Word from the low bits, the three bit positions from the top 18.
        let bits = 1u64 << (h >> 58) | 1u64 << ((h >> 52) & 63) | 1u64 << ((h >> 46) & 63);
        (h as usize & self.mask, bits)
    }

    fn insert(&mut self, key: u64) {
        let (w, b) = self.slot(key);
        self.words[w] |= b;
    }

    #[inline]
    fn contains(&self, key: u64) -> bool {
        let (w, b) = self.slot(key);
        self.words[w] & b == b
    }

    fn bytes(&self) -> usize {
        self.words.len() * 8
    }
}

/// Per-thread buffers reused by every scan (no allocation per record).
#[derive(Default)]
struct Scratch {
    toks: Vec<Token>,
    /// `prefix[k]`: rolling hash of the first `k` tokens.
    prefix: Vec<u64>,
    /// Consecutive present presence-size n-grams from each token on.
    run: Vec<u32>,
    keys: Vec<u64>,
    found: Vec<u64>,
    /// Keyword keys of the text that are in the keyword map, sorted and distinct.
    kfound: Vec<u64>,
    /// Word gram keys of the text that are in the word gram map, sorted and distinct.
    lfound: Vec<u64>,
    /// Rare word keys of the text that are in the rare word map, with the token
    /// position of their first occurrence; sorted and distinct by key.
    wfound: Vec<(u64, u32)>,
    /// Every long word of the text: (key, token position).
    wkeys: Vec<(u64, u32)>,
    /// (item, position << 1 | in_question) of every found rare word.
    wcounts: Vec<(u32, u32)>,
    /// (item, posting flags) of every found n-gram.
    counts: Vec<(u32, u32)>,
    /// Alignment rows of the character-level check.
    dp: Vec<(i32, u32)>,
    /// Items checked character by character (for measuring).
    verified: usize,
}

impl Scratch {
    /// Let go of buffers a huge record grew (memory stays bounded per thread).
    fn trim(&mut self) {
        // 64 Ki tokens (a few hundred KB of text): at most ~4 MB kept per thread.
        const KEEP: usize = 1 << 16;
        if self.toks.capacity() > KEEP {
            self.toks = Vec::new();
        }
        for v in [
            &mut self.prefix,
            &mut self.keys,
            &mut self.found,
            &mut self.kfound,
            &mut self.lfound,
        ] {
            if v.capacity() > KEEP {
                *v = Vec::new();
            }
        }
        if self.run.capacity() > KEEP {
            self.run = Vec::new();
        }
        if self.wfound.capacity() > KEEP {
            self.wfound = Vec::new();
        }
        if self.wkeys.capacity() > KEEP {
            self.wkeys = Vec::new();
        }
        if self.wcounts.capacity() > KEEP {
            self.wcounts = Vec::new();
        }
        if self.counts.capacity() > KEEP {
            self.counts = Vec::new();
        }
        if self.dp.capacity() > KEEP {
            self.dp = Vec::new();
        }
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// Per-item n-gram bookkeeping.
#[derive(Debug, Clone, Copy, Default)]
pub struct ItemGrams {
    pub n: u8,
    /// Indexed at the short size (the question alone is too short for `n`).
    pub short: bool,
    /// Tokens in the question.
    pub qtoks: u32,
    /// The question alone may decide a match.
    pub q_alone: bool,
    /// Distinct non-common candidate (`verify_ngram_en`) n-grams: question, all.
    pub cq: u32,
    pub cf: u32,
    /// Distinct non-common n-grams inside the question.
    pub q: u32,
    /// Distinct non-common n-grams of question plus options.
    pub f: u32,
    /// A Chinese item.
    pub zh: bool,
    /// Keywords (rarest words / character pairs) and their summed weight.
    pub kn: u32,
    pub kw: u32,
    /// Distinct non-common word grams ([`MatchConfig::letter_gram_en`]) inside the
    /// question, and in all.
    pub lq: u32,
    pub lf: u32,
    /// Distinct rare words ([`MatchConfig::rare_word_threshold_en`]) inside the
    /// question, and in all.
    pub wq: u32,
    pub wf: u32,
    /// Tokens of question plus options.
    pub toks: u32,
}

/// What a hit rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Evidence {
    /// Enough of the item's n-grams (`overlap >= threshold`); score = overlap.
    Ngram,
    /// Fewer n-grams, verified: the item aligns with the text character by
    /// character (changed letters, punctuation, spacing); score = share aligned.
    Fuzzy,
    /// As `Fuzzy`, with the question's clauses found in another order.
    Reordered,
}

impl Evidence {
    pub fn as_str(self) -> &'static str {
        match self {
            Evidence::Ngram => "ngram",
            Evidence::Fuzzy => "fuzzy",
            Evidence::Reordered => "reordered",
        }
    }
}

/// One item a text matched.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub item: u32,
    /// Share of the item's n-grams found (of the candidate n-grams for verified hits).
    pub overlap: f64,
    pub evidence: Evidence,
    /// What decided: the overlap (`Ngram`) or the share aligned (`Fuzzy`, `Reordered`).
    pub score: f64,
}

/// The index over all items of the configured benchmarks.
pub struct Index {
    pub cfg: MatchConfig,
    pub items: Vec<BenchItem>,
    pub grams: Vec<ItemGrams>,
    /// n-gram key -> (start, len) into `postings`.
    map: Map<(u32, u32)>,
    /// `item << 3 | touches_question << 2 | candidate << 1 | in_question`.
    postings: Vec<u32>,
    /// The n-gram sizes in use, ascending, with `P^n` for each.
    sizes: Vec<(usize, u64)>,
    /// Every key of the map: a cheap check before it.
    filter: Bloom,
    /// Every n-gram of the smallest size in use (`sizes[0]`) of every item,
    /// common ones included: a text n-gram can only be indexed when all its
    /// smaller n-grams are present here.
    present: Bloom,
    /// Keyword key -> (start, len) into `kpostings` (`item << 8 | weight`).
    kmap: Map<(u32, u32)>,
    kpostings: Vec<u32>,
    kfilter: Bloom,
    /// Word gram key -> (start, len) into `lpostings` (`item << 1 | in_question`).
    lmap: Map<(u32, u32)>,
    lpostings: Vec<u32>,
    lfilter: Bloom,
    /// Rare word key -> (start, len) into `wpostings` (`item << 1 | in_question`).
    wmap: Map<(u32, u32)>,
    wpostings: Vec<u32>,
    wfilter: Bloom,
    /// Every English item's distinct long words (keys, sorted): item `i`'s are
    /// `long[long_at[i]..long_at[i + 1]]`.
    long: Vec<u64>,
    long_at: Vec<u32>,
    /// Items too short to index.
    pub skipped: usize,
    /// N-grams dropped as shared by too many items.
    pub common: usize,
}

fn key(h: u64, n: usize) -> u64 {
    mix(h ^ ((n as u64) << 58))
}

/// `P^n`: removes a token `n` places back from the rolling hash.
fn pow_p(n: usize) -> u64 {
    (0..n).fold(1u64, |a, _| a.wrapping_mul(P))
}

/// Call `f(start_token, key)` for every n-gram of the token hashes `toks`.
fn for_grams(toks: &[u64], n: usize, mut f: impl FnMut(usize, u64)) {
    if n == 0 || toks.len() < n {
        return;
    }
    let pn = pow_p(n);
    let mut h = 0u64;
    for (i, &t) in toks.iter().enumerate() {
        h = h.wrapping_mul(P).wrapping_add(t);
        if i >= n {
            h = h.wrapping_sub(toks[i - n].wrapping_mul(pn));
        }
        if i + 1 >= n {
            f(i + 1 - n, key(h, n));
        }
    }
}

impl MatchConfig {
    /// The n-gram size for an item of these tokens (0: too short to index), and
    /// whether it is the short size.
    fn size_for(&self, toks: &[Token], q: usize) -> (usize, bool, bool) {
        let cjk = toks.iter().filter(|t| t.cjk).count();
        let zh = cjk * 2 >= toks.len();
        let (n, short) = self.size_for_(toks, q, zh);
        (n, short, zh)
    }

    fn size_for_(&self, toks: &[Token], q: usize, zh: bool) -> (usize, bool) {
        let n = if zh { self.ngram_zh } else { self.ngram_en };
        let short = n.div_ceil(2);
        if q + 1 >= n + MIN_GRAMS {
            (n, false)
        } else if toks.len() >= short {
            (short, true)
        } else {
            (0, true)
        }
    }

    /// Check the parameters.
    pub fn check(&self) -> anyhow::Result<()> {
        if !(2..=50).contains(&self.ngram_en) || !(2..=50).contains(&self.ngram_zh) {
            anyhow::bail!("ngram_en and ngram_zh must be in 2..=50");
        }
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            anyhow::bail!("threshold must be in (0, 1]");
        }
        if self.verify_ngram_en == 1 || self.verify_ngram_en > 50 {
            anyhow::bail!("verify_ngram_en must be 0 (off) or in 2..=50");
        }
        if !(self.min_similarity > 0.0 && self.min_similarity <= 1.0) {
            anyhow::bail!("min_similarity must be in (0, 1]");
        }
        if !(self.verify_threshold > 0.0 && self.verify_threshold <= 1.0) {
            anyhow::bail!("verify_threshold must be in (0, 1]");
        }
        for t in [self.keyword_threshold_en, self.keyword_threshold_zh] {
            if !(t > 0.0 && t <= 1.0) {
                anyhow::bail!("keyword_threshold_en and keyword_threshold_zh must be in (0, 1]");
            }
        }
        if self.letter_gram_en != 0 && !(4..=32).contains(&self.letter_gram_en) {
            anyhow::bail!("letter_gram_en must be 0 (off) or in 4..=32");
        }
        if !(self.letter_threshold_en > 0.0 && self.letter_threshold_en <= 1.0) {
            anyhow::bail!("letter_threshold_en must be in (0, 1]");
        }
        if !(0.0..=1.0).contains(&self.ngram_verify_below) {
            anyhow::bail!("ngram_verify_below must be in [0, 1]");
        }
        if !(0.0..=1.0).contains(&self.rare_word_threshold_en) {
            anyhow::bail!("rare_word_threshold_en must be in [0, 1] (0: off)");
        }
        if self.max_items_per_ngram == 0 {
            anyhow::bail!("max_items_per_ngram must be at least 1");
        }
        Ok(())
    }
}

/// Tokens of an item: question, then options (labels are not part of the text).
fn item_tokens(item: &BenchItem) -> (Vec<Token>, usize) {
    let (_, mut toks) = tokenize(&item.question);
    let q = toks.len();
    for o in &item.options {
        toks.extend(tokenize(o).1);
    }
    (toks, q)
}

/// Per-item grams: n, question tokens, and [(key, in_question)] deduplicated.
struct Per {
    n: usize,
    qtoks: usize,
    short: bool,
    zh: bool,
    /// (key, candidate, in_question, touches_question: starts in the question)
    grams: Vec<(u64, bool, bool, bool)>,
    /// Has candidate (`verify_ngram_en`) n-grams.
    cand: bool,
    /// All token hashes (question, then options), for the presence filter.
    hashes: Vec<u64>,
    /// Word grams (English items): (key, in_question), deduplicated.
    letters: Vec<(u64, bool)>,
    /// Long single words (English items): (key, in_question), deduplicated.
    words: Vec<(u64, bool)>,
}

/// (n, [(key, in_question)]) of one item, deduplicated.
fn item_grams(cfg: &MatchConfig, item: &BenchItem) -> Per {
    let (toks, q) = item_tokens(item);
    let (n, short, zh) = cfg.size_for(&toks, q);
    let hashes: Vec<u64> = toks.iter().map(|t| t.hash).collect();
    // (key, candidate, in_question, touches_question, inside_options)
    let mut g = Vec::new();
    for_grams(&hashes, n, |i, k| g.push((k, false, i + n <= q, i < q, i >= q)));
    let c = cfg.verify_ngram_en;
    let cand = !zh && n > 0 && c >= 2 && c < n && q >= c;
    if cand {
        for_grams(&hashes, c, |i, k| g.push((k, true, i + c <= q, i < q, i >= q)));
    }
    // Keep one entry per (key, candidate), `in_question` / `touches` if any
    // occurrence is and none lies inside the options: a question n-gram that an
    // option repeats is evidence of the option, not of the question.
    g.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    g.dedup_by(|x, keep| {
        let same = (x.0, x.1) == (keep.0, keep.1);
        if same {
            keep.2 |= x.2;
            keep.3 |= x.3;
            keep.4 |= x.4;
        }
        same
    });
    let g = g
        .into_iter()
        .map(|(k, c, q, t, o)| (k, c, q && !o, t && !o))
        .collect();
    let letters = if !zh && n > 0 && cfg.letter_gram_en > 0 {
        item_letters(item, cfg.letter_gram_en)
    } else {
        Vec::new()
    };
    let words = if !zh && n > 0 && cfg.rare_word_threshold_en > 0.0 {
        item_words(item)
    } else {
        Vec::new()
    };
    Per {
        n,
        qtoks: q,
        short,
        zh,
        grams: g,
        cand,
        hashes,
        letters,
        words,
    }
}

/// Key of a word gram from its hash.
#[inline]
fn letter_key(h: u64) -> u64 {
    mix(h ^ 0x4c47_0000_0000_0001)
}

/// Call `f(first, last, key)` for every word gram of `toks`: from each word (not
/// CJK character) on, the fewest whole tokens with at least `k` bytes of text
/// (`of the` goes on to the next word, `photosynthesis` stands alone). A changed
/// letter spoils only the grams over its word: shorter than the item's n-grams,
/// and as rare in ordinary text as a long word or two.
fn for_word_grams(toks: &[Token], k: usize, mut f: impl FnMut(usize, usize, u64)) {
    for i in 0..toks.len() {
        if toks[i].cjk {
            continue;
        }
        let (mut h, mut len) = (0u64, 0usize);
        let mut done = false;
        for (j, t) in toks.iter().enumerate().skip(i) {
            h = h.wrapping_mul(P).wrapping_add(t.hash);
            len += (t.end - t.start) as usize;
            if len >= k {
                f(i, j, letter_key(h));
                done = true;
                break;
            }
        }
        if !done {
            // Later words have less text after them.
            return;
        }
    }
}

/// An item's word grams ([`for_word_grams`] over question plus options):
/// (key, in_question), in_question only when no occurrence lies inside the options.
fn item_letters(item: &BenchItem, k: usize) -> Vec<(u64, bool)> {
    let (toks, q) = item_tokens(item);
    // (key, in_question, inside_options)
    let mut out: Vec<(u64, bool, bool)> = Vec::new();
    for_word_grams(&toks, k, |i, j, key| out.push((key, j < q, i >= q)));
    question_keys(out)
}

/// `(key, in_question, inside_options)` occurrences to one `(key, in_question)` per
/// key: in the question only when no occurrence lies inside the options (a question
/// word that an option repeats is evidence of the option).
fn question_keys(mut out: Vec<(u64, bool, bool)>) -> Vec<(u64, bool)> {
    out.sort_unstable();
    out.dedup_by(|x, keep| {
        let same = x.0 == keep.0;
        if same {
            keep.1 |= x.1;
            keep.2 |= x.2;
        }
        same
    });
    out.into_iter().map(|(k, q, o)| (k, q && !o)).collect()
}

/// Shortest word (bytes) that counts as a rare word: shorter words are common in
/// any text whatever the benchmark says.
const RARE_WORD_BYTES: u32 = 4;

/// A word in more items than this is not rare.
const RARE_WORD_MAX_ITEMS: usize = 15;

/// Key of a single word from its token hash.
#[inline]
fn word_key(h: u64) -> u64 {
    mix(h ^ 0x5257_0000_0000_0001)
}

/// Call `f(index, key)` for every word of `toks` long enough to be a rare word.
fn for_long_words(toks: &[Token], mut f: impl FnMut(usize, u64)) {
    for (i, t) in toks.iter().enumerate() {
        if !t.cjk && t.end - t.start >= RARE_WORD_BYTES {
            f(i, word_key(t.hash));
        }
    }
}

/// An item's long words (question plus options): (key, in_question), sorted and
/// distinct by key, in_question only when no occurrence lies inside the options.
fn item_words(item: &BenchItem) -> Vec<(u64, bool)> {
    let (toks, q) = item_tokens(item);
    let mut out: Vec<(u64, bool, bool)> = Vec::new();
    for_long_words(&toks, |i, key| out.push((key, i < q, i >= q)));
    question_keys(out)
}

/// Share of an item's distinct long words that a candidate found by rare words
/// alone must have in the text before it is aligned.
const LONG_WORDS_PRESENT: f64 = 0.5;

/// The distinct long-word keys of a text, sorted.
fn long_words(toks: &[Token]) -> Vec<u64> {
    let mut v = Vec::new();
    for_long_words(toks, |_, k| v.push(k));
    v.sort_unstable();
    v.dedup();
    v
}

/// Share of an item's distinct long words (`mine`) in `words` ([`long_words`] of
/// the text).
fn long_words_present(mine: &[u64], words: &[u64]) -> f64 {
    let found = mine.iter().filter(|k| words.binary_search(k).is_ok()).count();
    found as f64 / mine.len().max(1) as f64
}

/// Whether an item's found rare words (`wq` in the question, `wf` in all, both
/// within one stretch of the text) make it a candidate: `threshold` of them, at
/// least [`MIN_HITS`] (an item with fewer cannot use this path: one or two words
/// are in too many ordinary records), one of them inside the question.
fn rare_words_found(g: &ItemGrams, wq: u32, wf: u32, threshold: f64) -> bool {
    threshold > 0.0 && g.wf > 0 && wf >= MIN_HITS && wf as f64 >= threshold * g.wf as f64 && wq > 0
}

/// Overlap of an item from its found (`hq` question, `hf` all, `ht` touching the
/// question) and indexed (`q`, `f`) n-grams.
///
/// A fraction counts only with at least MIN_HITS n-grams behind it (or all of
/// them, for items with fewer). The question-plus-options fraction needs a third
/// of the n-grams inside the question found (one that starts in it, for questions
/// shorter than an n-gram): a shared option set alone is not a match, nor is one behind
/// a question that only ends the same way (`…的是`).
/// A short question is generic (`教育是一种`, `4的平方根是`): it needs an n-gram
/// reaching into the options, or at least [`MIN_SHORT_Q_TOKENS`] tokens (and, for a
/// short item, its whole question found).
fn overlap(g: &ItemGrams, [hq, hf, ht]: [u32; 3], q: u32, f: u32, short: bool) -> f64 {
    let mut o = 0.0;
    // Question evidence: a third of the n-grams inside the question (one starting
    // in it, when the question is shorter than an n-gram).
    let asked = if q > 0 { hq > 0 && hq * 3 >= q } else { ht > 0 };
    if hf >= f.min(MIN_HITS) && asked && (!short || hf > hq) {
        o = hf as f64 / f.max(1) as f64;
    }
    let q_ok = g.q_alone && (!short || hq == q);
    if q_ok && q as usize >= MIN_Q && hq >= q.min(MIN_HITS) {
        o = f64::max(o, hq as f64 / q as f64);
    }
    o
}

/// Word grams are looked up only in records where at least this share (percent)
/// of the windows are present smallest-size n-grams: an edited copy keeps some runs
/// of intact words (chosen on the tune part: 10 and 15 found the same edits; 15
/// is faster), ordinary text has 3.4% (Alpaca EN).
const DENSE_RECORD_PERCENT: usize = 15;

/// Whether a record's present smallest-size n-grams (`present` of `windows`) are
/// dense enough to look up its word grams.
fn dense_record(present: usize, windows: usize) -> bool {
    present * 100 >= windows * DENSE_RECORD_PERCENT
}

/// Count flag of a found word gram (`LETTER | in_question`).
const LETTER: u32 = 1 << 16;

/// Count flag of an item's rare words (`RARE_WORD | in_question << 15 | all`, the
/// counts of its best stretch): above every other flag.
const RARE_WORD: u32 = 1 << 31;

/// Largest count a rare-word entry holds.
const WORDS_MAX: u32 = (1 << 15) - 1;

/// Token positions of rare words beyond this count as this one.
const MAX_WORD_POS: u32 = (1 << 30) - 1;

/// Keep each key once, at its first position, sorted by key.
fn first_occurrences(found: &mut Vec<(u64, u32)>) {
    found.sort_unstable();
    found.dedup_by_key(|x| x.0);
}

/// Tokens a copy of an item may spread over: its own tokens, twice, and some.
fn rare_word_span(g: &ItemGrams) -> u32 {
    2 * g.toks + 16
}

/// The most rare words of one item (`(item, position << 1 | in_question)` sorted by
/// position) within `span` tokens: (in the question, all).
fn rare_words_near(entries: &[(u32, u32)], span: u32) -> (u32, u32) {
    let pos = |p: u32| p >> 1;
    let (mut best, mut lo, mut q) = ((0u32, 0u32), 0usize, 0u32);
    for hi in 0..entries.len() {
        q += entries[hi].1 & 1;
        while pos(entries[hi].1) - pos(entries[lo].1) > span {
            q -= entries[lo].1 & 1;
            lo += 1;
        }
        let n = (hi + 1 - lo) as u32;
        if n > best.1 {
            best = (q, n);
        }
    }
    best
}

/// Whether an item's found word grams (`lq` in the question, `lf` in all) make it
/// a candidate: `threshold` of them, at least [`MIN_HITS`] (all, for fewer), and
/// one of those inside the question (one per hundred, for long questions).
fn letters_found(g: &ItemGrams, lq: u32, lf: u32, threshold: f64) -> bool {
    g.lf > 0 && lf >= g.lf.min(MIN_HITS) && lf as f64 >= threshold * g.lf as f64 && lq * 100 >= g.lq
}

/// Keywords kept per item (its rarest).
const KEYWORDS: usize = 12;

/// A word or character pair in more items than this is no keyword.
const KEYWORD_MAX_ITEMS: usize = 20;

/// Fewest keywords found (all of them, for items with fewer) before their weight counts.
const MIN_KEYWORDS: u32 = 3;

/// Call `f(key)` for the keyword keys of `toks`: every pair of adjacent tokens
/// of one kind (two words, two CJK characters; a single word or character says
/// too little, and words rare in a benchmark are common elsewhere).
fn for_keywords(toks: &[Token], mut f: impl FnMut(usize, u64)) {
    for (i, w) in toks.windows(2).enumerate() {
        if w[0].cjk == w[1].cjk {
            f(
                i,
                mix(w[0].hash.wrapping_mul(P).wrapping_add(w[1].hash) ^ 0x4b57_0000_0000_0002),
            );
        }
    }
}

/// Whether the keyword at token `i` is inside a present smallest-size n-gram
/// (`present[j]`: the one starting at token `j`). Keywords elsewhere are not
/// looked up: a copy, even an edited one, keeps most of an item's small n-grams,
/// and clean text has few (this keeps keyword lookups off the hot path).
fn covered(present: &[u32], i: usize, m: usize) -> bool {
    let lo = (i + 2).saturating_sub(m);
    let hi = (i + 1).min(present.len());
    lo < hi && present[lo..hi].iter().any(|&r| r > 0)
}

/// Fewest characters a question needs to be verified on its own.
const MIN_VERIFY_UNITS: usize = 20;

/// Character units of tokens for the character-level check: one per CJK token
/// (its hash, top bit set), one per character of a word (lower case), so
/// changed letters, split or merged words and punctuation cost little.
fn units_into(text: &str, toks: &[Token], out: &mut Vec<u32>) {
    for t in toks {
        if t.cjk {
            out.push(cjk_unit(t));
        } else if let Some(w) = text.get(t.start as usize..t.end as usize) {
            out.extend(w.chars().filter(|c| c.is_alphanumeric()).map(char_unit));
        }
    }
}

#[inline]
fn cjk_unit(t: &Token) -> u32 {
    t.hash as u32 | 1 << 31
}

#[inline]
fn char_unit(c: char) -> u32 {
    if c.is_ascii() {
        c.to_ascii_lowercase() as u32
    } else {
        c.to_lowercase().next().unwrap_or(c) as u32
    }
}

fn text_units(text: &str, toks: &[Token]) -> Vec<u32> {
    let mut v = Vec::with_capacity(text.len());
    units_into(text, toks, &mut v);
    v
}

/// An item cut for the character-level check: the question's clauses (at
/// commas, semicolons, colons, sentence ends; short ones joined to the next),
/// then each option; `true` for the question's.
fn item_clauses(it: &BenchItem) -> Vec<(Vec<u32>, bool)> {
    let (conv, toks) = tokenize(&it.question);
    let mut out: Vec<(Vec<u32>, bool)> = Vec::new();
    let mut cur = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        units_into(&conv, std::slice::from_ref(t), &mut cur);
        let gap = toks
            .get(i + 1)
            .map_or("", |n| &conv[t.end as usize..n.start as usize]);
        let brk = gap.contains([
            ',', '，', ';', '；', ':', '：', '、', '?', '？', '。', '!', '！', '\n',
        ]) || gap.contains(". ");
        let min = if t.cjk { 6 } else { 16 };
        if brk && cur.len() >= min {
            out.push((std::mem::take(&mut cur), true));
        }
    }
    if !cur.is_empty() {
        match out.last_mut() {
            Some(last) if cur.len() < 6 => last.0.extend(cur),
            _ => out.push((cur, true)),
        }
    }
    for o in &it.options {
        let (conv, toks) = tokenize(o);
        let mut u = Vec::new();
        units_into(&conv, &toks, &mut u);
        if !u.is_empty() {
            out.push((u, false));
        }
    }
    out
}

/// Best local alignment of `pat` in `text` (Smith-Waterman, match +1, substitution
/// and gap -1): (characters of `pat` matched, end position in `text`). Of equally
/// good alignments the first, or the last with `last`.
fn align(pat: &[u32], text: &[u32], dp: &mut Vec<(i32, u32)>, last: bool) -> (usize, usize) {
    if pat.is_empty() {
        return (0, 0);
    }
    // Row per text position; columns over `pat`: (score, matches).
    let n = pat.len();
    dp.clear();
    dp.resize(2 * (n + 1), (0, 0));
    let (mut best, mut end) = ((0i32, 0u32), 0usize);
    for (j, &t) in text.iter().enumerate() {
        let (prev, cur) = if j % 2 == 0 {
            let (a, b) = dp.split_at_mut(n + 1);
            (&*a, b)
        } else {
            let (a, b) = dp.split_at_mut(n + 1);
            (&*b, a)
        };
        cur[0] = (0, 0);
        for i in 1..=n {
            let (ds, dm) = prev[i - 1];
            let mut c = if pat[i - 1] == t {
                (ds + 1, dm + 1)
            } else {
                (ds - 1, dm)
            };
            let up = prev[i];
            if up.0 - 1 > c.0 {
                c = (up.0 - 1, up.1);
            }
            let left = cur[i - 1];
            if left.0 - 1 > c.0 {
                c = (left.0 - 1, left.1);
            }
            if c.0 <= 0 {
                c = (0, 0);
            }
            if c > best || (last && c == best && c.0 > 0) {
                best = c;
                end = j;
            }
            cur[i] = c;
        }
    }
    (best.1 as usize, end)
}

/// A unit no clause has (text matched by an option, hidden from the question).
const BLANK: u32 = 0x7fff_ffff;

impl Index {
    /// Build the index (in parallel) over `items`.
    pub fn build(cfg: MatchConfig, items: Vec<BenchItem>) -> Index {
        let per: Vec<Per> = items.par_iter().map(|it| item_grams(&cfg, it)).collect();
        let mut sizes: Vec<usize> = per.iter().map(|p| p.n).filter(|&n| n > 0).collect();
        if per.iter().any(|p| p.cand) {
            sizes.push(cfg.verify_ngram_en);
        }
        sizes.sort_unstable();
        sizes.dedup();
        let m = sizes.first().copied().unwrap_or(0);
        let mut present = Bloom::new(
            per.iter().map(|p| (p.hashes.len() + 1).saturating_sub(m)).sum(),
            32,
        );
        for p in &per {
            for_grams(&p.hashes, m, |_, k| present.insert(k));
        }
        let skipped = per.iter().filter(|p| p.n == 0).count();
        // Keywords: each item's rarest words / character pairs (in at most
        // KEYWORD_MAX_ITEMS items), weighted by rarity (ln(items / df)).
        let mut kall: Vec<(u64, u32)> = items
            .par_iter()
            .enumerate()
            .flat_map_iter(|(i, it)| {
                let (toks, _) = item_tokens(it);
                let mut k = Vec::new();
                for_keywords(&toks, |_, x| k.push(x));
                k.sort_unstable();
                k.dedup();
                k.into_iter().map(move |x| (x, i as u32))
            })
            .collect();
        kall.par_sort_unstable();
        let mut per_item: Vec<Vec<(u32, u64)>> = vec![Vec::new(); items.len()];
        for run in kall.chunk_by(|a, b| a.0 == b.0) {
            if run.len() <= KEYWORD_MAX_ITEMS {
                for &(k, i) in run {
                    per_item[i as usize].push((run.len() as u32, k));
                }
            }
        }
        drop(kall);
        let nitems = items.len().max(1) as f64;
        let mut kpairs: Vec<(u64, u32)> = Vec::new();
        for (i, v) in per_item.iter_mut().enumerate() {
            v.sort_unstable();
            v.truncate(KEYWORDS);
            for &(df, k) in v.iter() {
                let w = ((nitems / df as f64).ln() * 16.0).round().clamp(1.0, 255.0) as u32;
                kpairs.push((k, (i as u32) << 8 | w));
            }
        }
        drop(per_item);
        kpairs.par_sort_unstable();
        let (kmap, kpostings, kfilter, _) = posting_lists(&kpairs, usize::MAX, 16, |_| {});
        drop(kpairs);
        let mut grams: Vec<ItemGrams> = per
            .iter()
            .map(|p| ItemGrams {
                n: p.n as u8,
                short: p.short,
                qtoks: p.qtoks as u32,
                q_alone: p.qtoks as u32 >= MIN_SHORT_Q_TOKENS[p.zh as usize],
                cq: 0,
                cf: 0,
                q: 0,
                f: 0,
                zh: p.zh,
                kn: 0,
                kw: 0,
                lq: 0,
                lf: 0,
                wq: 0,
                wf: 0,
                toks: p.hashes.len() as u32,
            })
            .collect();
        // Word grams of English items, common ones dropped as for n-grams.
        let mut lall: Vec<(u64, u32)> = per
            .iter()
            .enumerate()
            .flat_map(|(i, p)| {
                p.letters
                    .iter()
                    .map(move |&(k, q)| (k, (i as u32) << 1 | q as u32))
            })
            .collect();
        lall.par_sort_unstable();
        let (lmap, lpostings, lfilter, _) = posting_lists(&lall, cfg.max_items_per_ngram, 24, |p| {
            let g = &mut grams[(p >> 1) as usize];
            g.lf += 1;
            g.lq += p & 1;
        });
        drop(lall);
        // Long words of English items (kept for the check before alignment), and
        // their rare ones: those in few items.
        let mut long_at = Vec::with_capacity(per.len() + 1);
        long_at.push(0u32);
        let mut long = Vec::new();
        for p in &per {
            long.extend(p.words.iter().map(|w| w.0));
            long_at.push(long.len() as u32);
        }
        let mut wall: Vec<(u64, u32)> = per
            .iter()
            .enumerate()
            .flat_map(|(i, p)| p.words.iter().map(move |&(k, q)| (k, (i as u32) << 1 | q as u32)))
            .collect();
        wall.par_sort_unstable();
        let (wmap, wpostings, wfilter, _) = posting_lists(&wall, RARE_WORD_MAX_ITEMS, 40, |p| {
            let g = &mut grams[(p >> 1) as usize];
            g.wf += 1;
            g.wq += p & 1;
        });
        drop(wall);
        let mut all: Vec<(u64, u32)> = Vec::with_capacity(per.iter().map(|p| p.grams.len()).sum());
        for (i, p) in per.into_iter().enumerate() {
            all.extend(
                p.grams
                    .into_iter()
                    .map(|(k, c, q, t)| (k, (i as u32) << 3 | (t as u32) << 2 | (c as u32) << 1 | q as u32)),
            );
        }
        all.par_sort_unstable();
        let (map, postings, filter, common) = posting_lists(&all, cfg.max_items_per_ngram, 0, |p| {
            let g = &mut grams[(p >> 3) as usize];
            if p & 2 == 0 {
                g.f += 1;
                g.q += p & 1;
            } else {
                g.cf += 1;
                g.cq += p & 1;
            }
        });
        for &p in &kpostings {
            let g = &mut grams[(p >> 8) as usize];
            g.kn += 1;
            g.kw += p & 255;
        }
        Index {
            filter,
            present,
            cfg,
            items,
            grams,
            map,
            postings,
            sizes: sizes.into_iter().map(|n| (n, pow_p(n))).collect(),
            kmap,
            kpostings,
            kfilter,
            lmap,
            lpostings,
            lfilter,
            wmap,
            wpostings,
            wfilter,
            long,
            long_at,
            skipped,
            common,
        }
    }

    /// Items `text` is contaminated by, best first.
    pub fn scan(&self, text: &str) -> Vec<Hit> {
        let mut toks = SCRATCH.with(|s| std::mem::take(&mut s.borrow_mut().toks));
        toks.clear();
        tokenize_into(text, &mut toks);
        let hits = self.scan_tokens(text, &toks);
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            s.toks = toks;
            s.trim();
        });
        hits
    }

    /// [`Index::scan`] on tokens already made from `text`.
    pub fn scan_tokens(&self, text: &str, toks: &[Token]) -> Vec<Hit> {
        SCRATCH.with(|s| self.scan_with(text, toks, &mut s.borrow_mut()))
    }

    /// The n-gram keys of `toks` that are in the index, sorted and distinct, into `s.found`.
    ///
    /// A text n-gram of size n can only equal an item's n-gram when each of its
    /// n - m + 1 n-grams of the smallest size m is an item's m-gram too. So one
    /// probe per token of the `present` filter (m-grams) and a running count of
    /// consecutive present m-grams rule out nearly every window of clean text for
    /// every size at once; the few left are checked against `filter`, then the map.
    /// The result is the set the plain way (every size, every window, the map)
    /// finds: the filters have no false negatives.
    fn find_keys(&self, toks: &[Token], s: &mut Scratch) {
        s.found.clear();
        let Some(&(m, pm)) = self.sizes.first() else {
            return;
        };
        if toks.len() < m {
            return;
        }
        s.prefix.clear();
        s.prefix.push(0);
        let mut h = 0u64;
        for t in toks {
            h = h.wrapping_mul(P).wrapping_add(t.hash);
            s.prefix.push(h);
        }
        let pre = &s.prefix;
        let windows = toks.len() + 1 - m;
        // Keys first, then the probes in a loop of a few instructions without
        // data-dependent branches, so many cache misses are in flight at once;
        // then the runs, back to front.
        s.keys.clear();
        s.keys
            .extend((0..windows).map(|i| key(pre[i + m].wrapping_sub(pre[i].wrapping_mul(pm)), m)));
        s.run.clear();
        s.run
            .extend(s.keys.iter().map(|&k| self.present.contains(k) as u32));
        s.run.push(0);
        for i in (0..windows).rev() {
            if s.run[i] != 0 {
                s.run[i] = s.run[i + 1] + 1;
            }
        }
        s.keys.clear();
        for (i, &r) in s.run[..windows].iter().enumerate() {
            if r == 0 {
                continue;
            }
            for &(n, pn) in &self.sizes {
                if n - m + 1 > r as usize {
                    break;
                }
                s.keys
                    .push(key(pre[i + n].wrapping_sub(pre[i].wrapping_mul(pn)), n));
            }
        }
        s.found.extend(
            s.keys
                .iter()
                .copied()
                .filter(|&k| self.filter.contains(k) && self.map.contains_key(&k)),
        );
        s.found.sort_unstable();
        s.found.dedup();
    }

    /// The keyword keys of `toks` in the keyword map, sorted and distinct, into `s.kfound`.
    /// Needs `s.run` from [`Index::find_keys`] on the same tokens.
    fn find_keywords(&self, toks: &[Token], s: &mut Scratch) {
        s.kfound.clear();
        let Some(&(m, _)) = self.sizes.first() else {
            return;
        };
        if toks.len() < m {
            return;
        }
        let windows = toks.len() + 1 - m;
        let run = &s.run[..windows];
        for_keywords(toks, |i, k| {
            if covered(run, i, m) && self.kfilter.contains(k) && self.kmap.contains_key(&k) {
                s.kfound.push(k);
            }
        });
        s.kfound.sort_unstable();
        s.kfound.dedup();
    }

    /// The word gram keys of `toks` in the word gram map, sorted and distinct, into
    /// `s.lfound`. Needs `s.run` from [`Index::find_keys`] on the same tokens: only
    /// records dense in present smallest-size n-grams are looked at.
    fn find_letters(&self, toks: &[Token], s: &mut Scratch) {
        s.lfound.clear();
        let k = self.cfg.letter_gram_en;
        let m = self.sizes.first().map_or(usize::MAX, |x| x.0);
        if self.lmap.is_empty() || k == 0 || toks.len() < m {
            return;
        }
        let windows = toks.len() + 1 - m;
        let present = s.run[..windows].iter().filter(|&&r| r > 0).count();
        if !dense_record(present, windows) {
            return;
        }
        self.word_grams_passing(toks, &mut s.keys, &mut s.lfound);
        s.lfound.retain(|k| self.lmap.contains_key(k));
        s.lfound.sort_unstable();
        s.lfound.dedup();
    }

    /// The word grams of `toks` that pass `lfilter`, into `out` (`keys` is a buffer).
    fn word_grams_passing(&self, toks: &[Token], keys: &mut Vec<u64>, out: &mut Vec<u64>) {
        out.clear();
        keys.clear();
        for_word_grams(toks, self.cfg.letter_gram_en, |_, _, key| keys.push(key));
        // Keys first, then the probes in a loop without data-dependent branches
        // (many cache misses in flight at once).
        out.extend(keys.iter().copied().filter(|&k| self.lfilter.contains(k)));
    }

    /// The rare word keys of `toks` in the rare word map, sorted and distinct, into
    /// `s.wfound`. Every record: a probe per long word, of a filter that fits the cache.
    fn find_words(&self, toks: &[Token], s: &mut Scratch) {
        s.wfound.clear();
        if self.wmap.is_empty() {
            return;
        }
        s.wkeys.clear();
        for_long_words(toks, |i, k| s.wkeys.push((k, i as u32)));
        s.wfound.extend(
            s.wkeys
                .iter()
                .copied()
                .filter(|&(k, _)| self.wfilter.contains(k) && self.wmap.contains_key(&k)),
        );
        first_occurrences(&mut s.wfound);
    }

    /// [`Index::scan`] the plain way (fast2s, every window of every size looked up
    /// in the map), for checking that the fast path finds the same.
    #[doc(hidden)]
    pub fn scan_reference(&self, text: &str) -> Vec<Hit> {
        let toks = super::normalize::tokenize_reference(text);
        let hashes: Vec<u64> = toks.iter().map(|t| t.hash).collect();
        let mut s = Scratch::default();
        for &(n, _) in &self.sizes {
            for_grams(&hashes, n, |_, k| {
                if self.map.contains_key(&k) {
                    s.found.push(k);
                }
            });
        }
        s.found.sort_unstable();
        s.found.dedup();
        if let Some(&(m, _)) = self.sizes.first() {
            let mut present = Vec::new();
            for_grams(&hashes, m, |_, k| present.push(self.present.contains(k) as u32));
            for_keywords(&toks, |i, k| {
                if covered(&present, i, m) && self.kmap.contains_key(&k) {
                    s.kfound.push(k);
                }
            });
        }
        s.kfound.sort_unstable();
        s.kfound.dedup();
        let conv = if text.chars().any(crate::text::is_cjk) {
            std::borrow::Cow::Owned(fast2s::convert(text))
        } else {
            std::borrow::Cow::Borrowed(text)
        };
        // Word grams: every one looked up in the map.
        let k = self.cfg.letter_gram_en;
        let m = self.sizes.first().map_or(usize::MAX, |x| x.0);
        let present = if toks.len() >= m {
            let mut c = 0;
            for_grams(&hashes, m, |_, key| c += self.present.contains(key) as usize);
            c
        } else {
            0
        };
        if k > 0 && toks.len() >= m && dense_record(present, toks.len() + 1 - m) {
            let mut keys = Vec::new();
            self.word_grams_passing(&toks, &mut keys, &mut s.lfound);
            s.lfound.retain(|key| self.lmap.contains_key(key));
        }
        s.lfound.sort_unstable();
        s.lfound.dedup();
        for_long_words(&toks, |i, k| {
            if self.wmap.contains_key(&k) {
                s.wfound.push((k, i as u32));
            }
        });
        first_occurrences(&mut s.wfound);
        self.hits(&conv, &toks, &mut s)
    }

    /// How far the windows of `text` get: [tokens, present smallest-size n-grams,
    /// windows probed in `filter`, passing it, found in the map, keywords found,
    /// items checked character by character]. For measuring.
    #[doc(hidden)]
    pub fn probe_counts(&self, text: &str) -> [usize; 7] {
        let mut s = Scratch::default();
        let mut toks = Vec::new();
        tokenize_into(text, &mut toks);
        self.find_keys(&toks, &mut s);
        let probed = s.keys.len();
        s.keys.retain(|&k| self.filter.contains(k));
        let counts = [
            toks.len(),
            s.run.iter().filter(|&&r| r > 0).count(),
            probed,
            s.keys.len(),
            s.found.len(),
        ];
        self.find_keywords(&toks, &mut s);
        self.find_letters(&toks, &mut s);
        self.find_words(&toks, &mut s);
        let kfound = s.kfound.len() + s.lfound.len() + s.wfound.len();
        self.hits(text, &toks, &mut s);
        [
            counts[0], counts[1], counts[2], counts[3], counts[4], kfound, s.verified,
        ]
    }

    fn scan_with(&self, text: &str, toks: &[Token], s: &mut Scratch) -> Vec<Hit> {
        self.find_keys(toks, s);
        self.find_keywords(toks, s);
        self.find_letters(toks, s);
        self.find_words(toks, s);
        self.hits(text, toks, s)
    }

    /// Items matched by the keys in `s.found`, best first. `text` is what the
    /// spans of `toks` point into (for the character-level check).
    fn hits(&self, text: &str, toks: &[Token], s: &mut Scratch) -> Vec<Hit> {
        if s.found.is_empty() && s.kfound.is_empty() && s.lfound.is_empty() && s.wfound.is_empty() {
            return Vec::new();
        }
        // (item, posting flags) for every found n-gram, (item, 8 + weight) for every
        // found keyword, grouped by item.
        s.counts.clear();
        for k in &s.found {
            let (start, len) = self.map[k];
            s.counts.extend(
                self.postings[start as usize..(start + len) as usize]
                    .iter()
                    .map(|&p| (p >> 3, p & 7)),
            );
        }
        for k in &s.kfound {
            let (start, len) = self.kmap[k];
            s.counts.extend(
                self.kpostings[start as usize..(start + len) as usize]
                    .iter()
                    .map(|&p| (p >> 8, 8 + (p & 255))),
            );
        }
        for k in &s.lfound {
            let (start, len) = self.lmap[k];
            s.counts.extend(
                self.lpostings[start as usize..(start + len) as usize]
                    .iter()
                    .map(|&p| (p >> 1, LETTER | (p & 1))),
            );
        }
        // An item needs MIN_HITS rare words: fewer in the whole text decide nothing.
        let rare = if s.wfound.len() >= MIN_HITS as usize {
            &s.wfound[..]
        } else {
            &[]
        };
        // Rare words by item, apart: most items get one or two, which decide
        // nothing; an item with enough gets one entry, its best stretch.
        s.wcounts.clear();
        for (k, at) in rare {
            let (start, len) = self.wmap[k];
            let at = (*at).min(MAX_WORD_POS) << 1;
            s.wcounts.extend(
                self.wpostings[start as usize..(start + len) as usize]
                    .iter()
                    .map(|&p| (p >> 1, at | (p & 1))),
            );
        }
        s.wcounts.sort_unstable();
        for group in s.wcounts.chunk_by(|a, b| a.0 == b.0) {
            if group.len() >= MIN_HITS as usize {
                let item = group[0].0;
                let (wq, wf) = rare_words_near(group, rare_word_span(&self.grams[item as usize]));
                if wf >= MIN_HITS {
                    s.counts
                        .push((item, RARE_WORD | wq.min(WORDS_MAX) << 15 | wf.min(WORDS_MAX)));
                }
            }
        }
        s.counts.sort_unstable();
        let thr = self.cfg.threshold;
        let vthr = self.cfg.verify_threshold;
        let mut units: Option<Vec<u32>> = None;
        let mut text_words: Option<Vec<u64>> = None;
        let mut dp = std::mem::take(&mut s.dp);
        let mut hits = Vec::new();
        for group in s.counts.chunk_by(|a, b| a.0 == b.0) {
            let item = group[0].0;
            // [question, all, touching the question] n-grams found: main, candidate.
            let mut c = [[0u32; 3]; 2];
            let (mut kn, mut kw) = (0u32, 0u32);
            let (mut lq, mut lf) = (0u32, 0u32);
            // The rare-word entry, if any, comes last in the group.
            let words = group.partition_point(|&(_, p)| p < RARE_WORD);
            let (wq, wf) = group
                .get(words)
                .map_or((0, 0), |&(_, p)| (p >> 15 & WORDS_MAX, p & WORDS_MAX));
            for &(_, p) in &group[..words] {
                if p >= LETTER {
                    lf += 1;
                    lq += p & 1;
                    continue;
                }
                if p >= 8 {
                    kn += 1;
                    kw += p - 8;
                    continue;
                }
                let c = &mut c[(p >> 1 & 1) as usize];
                c[0] += p & 1;
                c[1] += 1;
                c[2] += p >> 2 & 1;
            }
            let g = self.grams[item as usize];
            let o = if c[0][1] > 0 {
                overlap(&g, c[0], g.q, g.f, g.short)
            } else {
                0.0
            };
            if o >= thr {
                // A low overlap may be a shared phrase: the item must align too.
                if o < self.cfg.ngram_verify_below {
                    s.verified += 1;
                    let units = units.get_or_insert_with(|| text_units(text, toks));
                    let (sim, _) = self.verify(item, units, &mut dp, self.cfg.min_similarity);
                    if sim < self.cfg.min_similarity {
                        continue;
                    }
                }
                hits.push(Hit {
                    item,
                    overlap: o,
                    evidence: Evidence::Ngram,
                    score: o,
                });
                continue;
            }
            // Verified path: fewer or smaller n-grams, then the item must align
            // with the text character by character (clause by clause).
            let oc = if g.cf > 0 {
                overlap(&g, c[1], g.cq, g.cf, g.short)
            } else {
                0.0
            };
            let ov = o.max(oc);
            let kthr = if g.zh {
                self.cfg.keyword_threshold_zh
            } else {
                self.cfg.keyword_threshold_en
            };
            let keywords = kn >= MIN_KEYWORDS && kw as f64 >= kthr * g.kw as f64;
            if ov < vthr
                && !(g.kn > 0 && keywords)
                && !letters_found(&g, lq, lf, self.cfg.letter_threshold_en)
            {
                // Rare words alone: most of the item's long words must be in the
                // text too (a cheap check before the alignment; ordinary text on
                // the item's topic shares its rare words, not its wording).
                if !rare_words_found(&g, wq, wf, self.cfg.rare_word_threshold_en) {
                    continue;
                }
                let words = text_words.get_or_insert_with(|| long_words(toks));
                let mine = &self.long
                    [self.long_at[item as usize] as usize..self.long_at[item as usize + 1] as usize];
                if long_words_present(mine, words) < LONG_WORDS_PRESENT {
                    continue;
                }
            }
            s.verified += 1;
            let units = units.get_or_insert_with(|| text_units(text, toks));
            let (sim, reordered) = self.verify(item, units, &mut dp, self.cfg.min_similarity);
            if sim >= self.cfg.min_similarity {
                hits.push(Hit {
                    item,
                    overlap: ov,
                    evidence: if reordered {
                        Evidence::Reordered
                    } else {
                        Evidence::Fuzzy
                    },
                    score: sim,
                });
            }
        }
        s.dp = dp;
        hits.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(b.overlap.total_cmp(&a.overlap))
                .then(a.item.cmp(&b.item))
        });
        hits
    }

    /// Why `text` does or does not match `item`: (main overlap, candidate overlap,
    /// keyword weight share, character-level share, reordered, word grams found
    /// share). For diagnosing misses.
    #[doc(hidden)]
    pub fn explain(&self, text: &str, item: u32) -> (f64, f64, f64, f64, bool, f64) {
        let mut s = Scratch::default();
        let mut toks = Vec::new();
        tokenize_into(text, &mut toks);
        self.find_keys(&toks, &mut s);
        self.find_keywords(&toks, &mut s);
        self.find_letters(&toks, &mut s);
        let mut c = [[0u32; 3]; 2];
        for k in &s.found {
            let (start, len) = self.map[k];
            for &p in &self.postings[start as usize..(start + len) as usize] {
                if p >> 3 == item {
                    let c = &mut c[(p >> 1 & 1) as usize];
                    c[0] += p & 1;
                    c[1] += 1;
                    c[2] += p >> 2 & 1;
                }
            }
        }
        let g = self.grams[item as usize];
        let o = overlap(&g, c[0], g.q, g.f, g.short);
        let oc = overlap(&g, c[1], g.cq, g.cf, g.short);
        let (sim, r) = self.verify(item, &text_units(text, &toks), &mut s.dp, 0.0);
        let mut kw = 0;
        for k in &s.kfound {
            let (start, len) = self.kmap[k];
            for &p in &self.kpostings[start as usize..(start + len) as usize] {
                if p >> 8 == item {
                    kw += p & 255;
                }
            }
        }
        let mut lf = 0;
        for k in &s.lfound {
            let (start, len) = self.lmap[k];
            lf += self.lpostings[start as usize..(start + len) as usize]
                .iter()
                .filter(|&&p| p >> 1 == item)
                .count();
        }
        (
            o,
            oc,
            kw as f64 / g.kw.max(1) as f64,
            sim,
            r,
            lf as f64 / g.lf.max(1) as f64,
        )
    }

    /// How much of `item` aligns with the text `units`: (share of its characters
    /// matched, clauses found out of order). Each clause of the question and each
    /// option is aligned on its own (Smith-Waterman: match +1, substitution and
    /// gap -1), so clauses and options may come in any order. The share is over the
    /// question alone when it may decide alone ([`ItemGrams::q_alone`]), else over
    /// question and options; options alone never reach it.
    ///
    /// Stops early (share 0) once the share cannot reach `stop_below`.
    fn verify(&self, item: u32, units: &[u32], dp: &mut Vec<(i32, u32)>, stop_below: f64) -> (f64, bool) {
        let it = &self.items[item as usize];
        let g = &self.grams[item as usize];
        let clauses = item_clauses(it);
        let q_total: usize = clauses.iter().filter(|c| c.1).map(|c| c.0.len()).sum();
        let all_total: usize = clauses.iter().map(|c| c.0.len()).sum();
        let q_counts = g.q_alone && q_total >= MIN_VERIFY_UNITS;
        let (mut qm, mut ql, mut am, mut al) = (0usize, 0usize, 0usize, 0usize);
        let mut ends = Vec::new();
        // Text spans (end, length) that options matched nearly in full.
        let mut taken: Vec<(usize, usize)> = Vec::new();
        for (cl, in_q) in &clauses {
            // Best share still possible, if every clause left matched in full.
            let q_best = if q_counts {
                (qm + q_total - ql) as f64 / q_total as f64
            } else {
                0.0
            };
            let all_best = (am + all_total - al) as f64 / all_total.max(1) as f64;
            if q_best.max(all_best) < stop_below {
                return (0.0, false);
            }
            // Of equal matches an option takes the last (options follow the question).
            let (m, end) = align(cl, units, dp, !*in_q);
            if *in_q {
                qm += m;
                ql += cl.len();
                if m * 2 >= cl.len() {
                    ends.push(end);
                }
            } else if m > 0 && m * 10 >= cl.len() * 9 {
                taken.push((end, cl.len()));
            }
            am += m;
            al += cl.len();
        }
        let share = |qm: usize, am: usize| {
            let q = if q_counts { qm as f64 / ql as f64 } else { 0.0 };
            // The question must carry its share: options alone are no evidence.
            let all = if al > 0 && qm * 2 >= ql {
                am as f64 / al as f64
            } else {
                0.0
            };
            q.max(all)
        };
        let mut sim = share(qm, am);
        if sim >= stop_below && !taken.is_empty() {
            // The question again, on the text without what the options matched: a
            // question that an option of the record repeats is not found twice.
            let mut text = units.to_vec();
            for &(end, len) in &taken {
                text[(end + 1).saturating_sub(len)..=end].fill(BLANK);
            }
            let (mut qm2, mut am2) = (0, am - qm);
            ends.clear();
            for (cl, _) in clauses.iter().filter(|c| c.1) {
                let (m, end) = align(cl, &text, dp, false);
                qm2 += m;
                am2 += m;
                if m * 2 >= cl.len() {
                    ends.push(end);
                }
            }
            qm = qm2;
            sim = share(qm, am2);
        }
        let _ = qm;
        let reordered = ends.windows(2).any(|w| w[1] < w[0]);
        (sim, reordered)
    }

    /// Byte spans of `text` (after t2s conversion, returned too) covered by n-grams of `item`,
    /// merged; for highlighting.
    pub fn spans(&self, text: &str, item: u32) -> (String, Vec<(usize, usize)>) {
        let (conv, toks) = tokenize(text);
        let hashes: Vec<u64> = toks.iter().map(|t| t.hash).collect();
        let g = self.grams[item as usize];
        let own = item_grams(&self.cfg, &self.items[item as usize]).grams;
        let own: std::collections::HashSet<u64> = own.into_iter().filter(|x| !x.1).map(|x| x.0).collect();
        let n = g.n as usize;
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for_grams(&hashes, n, |i, k| {
            if own.contains(&k) {
                let (s, e) = (toks[i].start as usize, toks[i + n - 1].end as usize);
                match spans.last_mut() {
                    Some(last) if s <= last.1 => last.1 = last.1.max(e),
                    _ => spans.push((s, e)),
                }
            }
        });
        (conv, spans)
    }

    /// Bytes of the two Bloom filters scanning probes before the map.
    pub fn filter_bytes(&self) -> usize {
        self.filter.bytes() + self.present.bytes()
    }

    /// Distinct n-grams in the index.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no n-gram is indexed.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Items that cannot match anything (too short, or only common n-grams).
    pub fn unmatchable(&self) -> usize {
        self.grams.iter().filter(|g| g.f == 0).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(q: &str, o: [&str; 4], row: u32) -> BenchItem {
        BenchItem {
            benchmark: "b".into(),
            split: "val".into(),
            subject: "s".into(),
            row,
            question: q.into(),
            options: o.iter().map(|s| s.to_string()).collect(),
            answer: Some("B".into()),
        }
    }

    fn index() -> Index {
        let items = vec![
            item(
                "TCP 协议建立连接的过程通常称为____",
                ["两次握手", "三次握手", "四次挥手", "滑动窗口"],
                0,
            ),
            item(
                "根据《马关条约》，清政府割让给日本的地区不包括（　　）",
                ["香港岛", "辽东半岛", "澎湖列岛", "台湾岛及所有附属各岛屿"],
                1,
            ),
            item(
                "Enzymes increase the rate of a chemical reaction by",
                [
                    "increasing the amount of reactant available",
                    "lowering the activation energy of the reaction",
                    "raising the temperature of the cell",
                    "changing the equilibrium constant of the reaction",
                ],
                2,
            ),
            item(
                "The Louisiana Purchase of 1803 was a land deal between the United States and which European country in the end",
                ["Spain", "Great Britain", "France", "Mexico"],
                3,
            ),
        ];
        Index::build(MatchConfig::default(), items)
    }

    fn best(ix: &Index, t: &str) -> Option<u32> {
        ix.scan(t).first().map(|h| h.item)
    }

    #[test]
    fn matches_each_kind() {
        let ix = index();
        // verbatim with options
        assert_eq!(
            best(
                &ix,
                "TCP 协议建立连接的过程通常称为____\nA. 两次握手\nB. 三次握手\nC. 四次挥手\nD. 滑动窗口"
            ),
            Some(0)
        );
        // full-width letters, reformatted
        assert_eq!(
            best(
                &ix,
                "TCP 协议建立连接的过程通常称为____　Ａ．两次握手　Ｂ．三次握手　Ｃ．四次挥手　Ｄ．滑动窗口"
            ),
            Some(0)
        );
        // re-lettered, embedded in a longer prompt
        assert_eq!(best(&ix, "老师布置的作业：根据《马关条约》，清政府割让给日本的地区不包括（　　）\n①香港岛　②辽东半岛　③澎湖列岛　④台湾岛及所有附属各岛屿。请解释。"), Some(1));
        // without options
        assert_eq!(
            best(
                &ix,
                "请回答：根据《马关条约》，清政府割让给日本的地区不包括哪里？"
            ),
            Some(1)
        );
        // light edit
        assert_eq!(best(&ix, "根据马关条约，清政府割让给日本的地方不包括（　　）香港岛 辽东半岛 澎湖列岛 台湾岛及所有附属各岛屿"), Some(1));
        // English, options re-lettered and shuffled
        assert_eq!(best(&ix, "Enzymes increase the rate of a chemical reaction by\n(i) lowering the activation energy of the reaction\n(ii) increasing the amount of reactant available\n(iii) changing the equilibrium constant of the reaction\n(iv) raising the temperature of the cell"), Some(2));
        // English, question only, with the answer
        assert_eq!(best(&ix, "Q: The Louisiana Purchase of 1803 was a land deal between the United States and which European country in the end? A: France."), Some(3));
    }

    #[test]
    fn ignores_other_questions_and_common_ngrams() {
        let ix = index();
        assert!(ix
            .scan("UDP 协议是无连接的传输层协议，下列关于它的说法正确的是")
            .is_empty());
        assert!(ix
            .scan("Enzymes are proteins that speed up reactions in the cell without being consumed.")
            .is_empty());
        let many: Vec<BenchItem> = (0..20)
            .map(|i| item(&format!("下列说法正确的是第{i}题"), ["甲", "乙", "丙", "丁"], i))
            .collect();
        let ix = Index::build(MatchConfig::default(), many);
        assert!(ix.common > 0);
    }

    #[test]
    fn fast_scan_finds_what_the_plain_scan_finds() {
        let ix = index();
        let texts = [
            "TCP 协议建立连接的过程通常称为____\nA. 两次握手\nB. 三次握手",
            "TCP 協議建立連接的過程通常稱為____ 兩次握手 三次握手 四次揮手 滑動窗口",
            "老师布置的作业：根据《马关条约》，清政府割让给日本的地区不包括（　　）①香港岛",
            "根据马关条约，清政府割让给日本的地方不包括（　　）香港岛 辽东半岛 澎湖列岛",
            "Enzymes increase the rate of a chemical reaction by lowering the activation energy of the reaction",
            "Q: The Louisiana Purchase of 1803 was a land deal between the United States and which European country? A: France.",
            "Enzymes are proteins that speed up reactions in the cell without being consumed.",
            "",
            "TCP",
        ];
        let mut matched = 0;
        for t in texts {
            let hits = ix.scan(t);
            assert_eq!(hits, ix.scan_reference(t), "{t}");
            matched += !hits.is_empty() as usize;
        }
        assert_eq!(matched, 6);
        // A record longer than the kept buffers, then a short one after the trim.
        let long = texts[2].repeat(3000);
        assert_eq!(ix.scan(&long), ix.scan_reference(&long));
        assert_eq!(ix.scan(&long)[0].item, 1);
        assert_eq!(ix.scan(texts[0]), ix.scan_reference(texts[0]));
    }

    #[test]
    fn edits_and_reordering_are_verified_and_options_alone_are_not_a_hit() {
        let ix = index();
        // Letters changed, words merged, options shuffled: no intact 13-gram.
        let t = "The Louisana Purchase of 1803 was a land deal betwen the UnitedStates and which European country in the end?\nA) Mexico B) France C) Spain D) Great Britain";
        let h = ix.scan(t);
        assert_eq!(h.first().map(|h| h.item), Some(3), "{:?}", ix.explain(t, 3));
        assert_eq!(h[0].evidence, Evidence::Fuzzy);
        assert!(h[0].score >= 0.8 && h[0].overlap < 0.35, "{h:?}");
        assert_eq!(h, ix.scan_reference(t));
        // Clauses moved around.
        let t = "清政府割让给日本的地区不包括（　　），根据《马关条约》\nA.台湾岛及所有附属各岛屿 B.澎湖列岛 C.辽东半岛 D.香港岛";
        assert_eq!(ix.scan(t)[0].item, 1);
        // Another question with the same option set.
        let t = "Which process do catalysts in industry rely on?\nA. increasing the amount of reactant available\nB. lowering the activation energy of the reaction\nC. raising the temperature of the cell\nD. changing the equilibrium constant of the reaction";
        assert!(ix.scan(t).is_empty(), "{:?}", ix.scan(t));
        assert!(ix.scan_reference(t).is_empty());
    }

    #[test]
    fn heavily_edited_copies_are_found_by_their_rare_words() {
        let ix = index();
        let items = ix.items.clone();
        let off = Index::build(
            MatchConfig {
                rare_word_threshold_en: 0.0,
                ..MatchConfig::default()
            },
            items,
        );
        // Every fourth word or so has a changed letter: no intact 5-word run is left
        // in the question, but most long words are.
        let t = "Enzymes incraese the rtae of a chemical reaction b\nA. increasing teh amount fo reactant available\nB. lowering hte activation energy f the reaction\nC. raising th temperature o the cell\nD. changing teh equilibrium constant o the reaction";
        assert!(
            off.scan(t).is_empty(),
            "found without rare words: {:?}",
            off.scan(t)
        );
        let h = ix.scan(t);
        assert_eq!(h.first().map(|h| h.item), Some(2), "{:?}", ix.explain(t, 2));
        assert_eq!(h, ix.scan_reference(t));
        // Text on the item's topic shares its rare words, not its wording.
        let t = "Enzymes are proteins. Their rate depends on temperature and the amount of reactant available; a chemical reaction reaches equilibrium whatever the enzyme, which only changes how fast.";
        assert!(ix.scan(t).is_empty(), "{:?}", ix.scan(t));
        assert!(ix.scan_reference(t).is_empty());
    }

    #[test]
    fn spans_cover_the_matched_question() {
        let ix = index();
        let text = "题目：TCP 协议建立连接的过程通常称为____";
        let (conv, spans) = ix.spans(text, 0);
        assert_eq!(spans.len(), 1);
        assert_eq!(&conv[spans[0].0..spans[0].1], "TCP 协议建立连接的过程通常称为");
    }
}
