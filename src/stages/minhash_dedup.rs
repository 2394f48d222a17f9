//! `minhash_dedup`: drop near-duplicate records (MinHash signatures + LSH banding).
//!
//! **Per record, in parallel (`process`)**: the selected text views are joined and
//! normalized (traditional -> simplified Chinese when `fold_traditional`, full-width
//! ASCII folded to half-width, lower case, every character that is not a letter or
//! digit dropped). Then shingled:
//! - CJK-majority text (`shingle = "auto"`: at least as many CJK characters as
//!   non-CJK words): overlapping character `char_ngram`-grams (default 5) over the
//!   letters and digits, so punctuation width and spacing never matter;
//! - other text: overlapping `word_ngram`-grams (default 3) of words (runs of
//!   letters and digits; each CJK character is a word of its own).
//!
//! Each shingle is hashed with xxh3-64 and `num_perm` (default 128) minimums are
//! taken under multiply-shift permutations `(a*x + b) >> 32` whose constants come
//! from a fixed seed, so signatures are identical on every run and machine.
//!
//! **Short texts**: a text with fewer units than the n-gram size gets one shingle,
//! the whole normalized text, so two different short texts never share a
//! signature (only identical ones do). A text with no letter or digit at all is
//! exempt: kept, `meta.dedup = {exempt: true}`, never indexed.
//!
//! The signature travels from `process` to `decide` in `record.scratch`, which is
//! never written out.
//!
//! **In input order (`decide`)**: the signature is cut into `bands` x `rows`; each
//! band hash is looked up in the index of *kept* records. Every kept record that
//! shares a band is a candidate; its stored signature gives the estimated Jaccard
//! similarity (fraction of equal minimums over all `num_perm`). The candidate with
//! the highest similarity (ties: the earlier one) at or above `threshold` makes
//! the record a near duplicate: dropped with reason `near_duplicate` and a detail
//! naming the kept id and similarity (or kept, with `action = "tag"`). Otherwise
//! the record is kept and its bands are indexed. So the first record in input
//! order is always the one kept, whatever the thread count.
//!
//! Clusters are *stars* around kept records: a record joins the cluster of one
//! kept record it is similar to; chains (A~B, B~C, A!~C) are not merged, because
//! B is dropped and never indexed. Full union-find clustering over all candidate
//! pairs (and transitive clusters in `clusters.jsonl`) is the next step.
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
//! Memory: per kept record its signature (`num_perm * 4` bytes, 512 B at 128), its
//! id, and `bands` index entries (~16-24 bytes each): ~1 KB per kept record at the
//! defaults. All of it is the checkpointed state (ids and signatures in kept order;
//! the band index is rebuilt on load), so resumed runs continue exactly.
//!
//! ```toml
//! [[stage]]
//! kind = "minhash_dedup"
//! fields = "all"          # all | prompt | response
//! shingle = "auto"        # auto | char | word
//! char_ngram = 5
//! word_ngram = 3
//! num_perm = 128
//! threshold = 0.8         # estimated Jaccard for a near duplicate
//! # bands = 16            # with rows: override the derived banding
//! # rows = 8
//! false_negative_weight = 0.9  # for the derived banding; datasketch uses 0.5
//! fold_traditional = true
//! action = "drop"         # drop | tag
//! ```
//! `meta.dedup = {cluster, kept_id, similarity}` (`similarity` only on duplicates).

use std::collections::HashMap;

use anyhow::{bail, Result};
use serde::Deserialize;
use serde_json::{json, Value};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::record::{Record, Role};
use crate::stage::{Action, BuildContext, Stage, Verdict};
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

/// `[[stage]] kind = "minhash_dedup"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinhashConfig {
    #[serde(default)]
    pub fields: DedupFields,
    #[serde(default)]
    pub shingle: ShingleMode,
    #[serde(default = "d_char_ngram")]
    pub char_ngram: usize,
    #[serde(default = "d_word_ngram")]
    pub word_ngram: usize,
    #[serde(default = "d_num_perm")]
    pub num_perm: usize,
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
    pub action: Action,
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
    0.8
}
fn d_fn_weight() -> f64 {
    0.9
}
fn yes() -> bool {
    true
}

impl Default for MinhashConfig {
    fn default() -> Self {
        MinhashConfig {
            fields: DedupFields::All,
            shingle: ShingleMode::Auto,
            char_ngram: d_char_ngram(),
            word_ngram: d_word_ngram(),
            num_perm: d_num_perm(),
            threshold: d_threshold(),
            bands: None,
            rows: None,
            false_negative_weight: d_fn_weight(),
            fold_traditional: true,
            action: Action::Drop,
        }
    }
}

/// One LSH bucket: the kept records (by index) whose band hashed here.
enum Bucket {
    One(u32),
    Many(Vec<u32>),
}

/// The built stage.
pub struct MinhashDedup {
    cfg: MinhashConfig,
    bands: usize,
    rows: usize,
    /// Permutation constants `(a, b)`, `a` odd.
    perms: Vec<(u64, u64)>,
    /// Ids of kept records, in input order; index = cluster number.
    kept_ids: Vec<String>,
    /// Their signatures, `num_perm` each, flat.
    kept_sigs: Vec<u32>,
    /// Records per cluster (the kept one included).
    sizes: Vec<u32>,
    dropped: u64,
    exempt: u64,
    index: HashMap<u64, Bucket>,
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

#[inline]
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xAC00..=0xD7AF
        | 0xF900..=0xFAFF | 0x20000..=0x3134F)
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

/// A text normalized for shingling: letters and digits only, lower case.
struct Normalized {
    /// The kept characters, concatenated.
    flat: String,
    /// Byte offset of every character in `flat`, plus `flat.len()`.
    char_at: Vec<u32>,
    /// Byte offset in `flat` where each word starts, plus `flat.len()`.
    word_at: Vec<u32>,
    cjk: usize,
}

fn normalize(text: &str, fold_traditional: bool) -> Normalized {
    let text = if fold_traditional {
        crate::decontam::normalize::to_simplified(text)
    } else {
        std::borrow::Cow::Borrowed(text)
    };
    let mut n = Normalized {
        flat: String::with_capacity(text.len()),
        char_at: Vec::with_capacity(text.len()),
        word_at: Vec::new(),
        cjk: 0,
    };
    let mut in_word = false;
    for c in text.chars() {
        let c = fold_width(c);
        if !c.is_alphanumeric() {
            in_word = false;
            continue;
        }
        let cjk = is_cjk(c);
        if cjk {
            n.cjk += 1;
        }
        if cjk || !in_word {
            n.word_at.push(n.flat.len() as u32);
        }
        in_word = !cjk;
        for l in c.to_lowercase() {
            n.char_at.push(n.flat.len() as u32);
            n.flat.push(l);
        }
    }
    n.char_at.push(n.flat.len() as u32);
    n.word_at.push(n.flat.len() as u32);
    n
}

/// The shingle hashes of a text and whether it was cut by characters.
fn shingles(cfg: &MinhashConfig, text: &str) -> (Vec<u64>, bool) {
    let n = normalize(text, cfg.fold_traditional);
    let words = n.word_at.len() - 1;
    let by_char = match cfg.shingle {
        ShingleMode::Char => true,
        ShingleMode::Word => false,
        // Each CJK character is a word too: CJK-majority means at least half the words.
        ShingleMode::Auto => n.cjk > 0 && 2 * n.cjk >= words,
    };
    let mut out = Vec::new();
    if n.flat.is_empty() {
        return (out, by_char);
    }
    if by_char {
        let chars = n.char_at.len() - 1;
        let k = cfg.char_ngram;
        if chars < k {
            out.push(xxh3_64(n.flat.as_bytes()));
        } else {
            out.reserve(chars + 1 - k);
            for i in 0..=chars - k {
                let s = &n.flat[n.char_at[i] as usize..n.char_at[i + k] as usize];
                out.push(xxh3_64(s.as_bytes()));
            }
        }
    } else {
        let wh: Vec<u64> = n
            .word_at
            .windows(2)
            .map(|w| xxh3_64(&n.flat.as_bytes()[w[0] as usize..w[1] as usize]))
            .collect();
        let k = cfg.word_ngram.min(wh.len());
        let mut buf = Vec::with_capacity(k * 8);
        for win in wh.windows(k) {
            buf.clear();
            for h in win {
                buf.extend_from_slice(&h.to_le_bytes());
            }
            out.push(xxh3_64(&buf));
        }
    }
    (out, by_char)
}

/// Estimated Jaccard similarity: the fraction of equal minimums.
pub fn estimate(a: &[u32], b: &[u32]) -> f64 {
    let eq = a.iter().zip(b).filter(|(x, y)| x == y).count();
    eq as f64 / a.len().max(1) as f64
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
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
        if cfg.char_ngram == 0 || cfg.word_ngram == 0 {
            bail!("minhash_dedup: char_ngram and word_ngram must be at least 1");
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
        Ok(MinhashDedup {
            cfg,
            bands,
            rows,
            perms,
            kept_ids: Vec::new(),
            kept_sigs: Vec::new(),
            sizes: Vec::new(),
            dropped: 0,
            exempt: 0,
            index: HashMap::new(),
        })
    }

    /// The MinHash signature of a text; `None` when it has no letter or digit.
    pub fn signature(&self, text: &str) -> Option<Vec<u32>> {
        let (hashes, _) = shingles(&self.cfg, text);
        if hashes.is_empty() {
            return None;
        }
        let mut mins = vec![u32::MAX; self.perms.len()];
        for &x in &hashes {
            for (m, &(a, b)) in mins.iter_mut().zip(&self.perms) {
                let v = (a.wrapping_mul(x).wrapping_add(b) >> 32) as u32;
                if v < *m {
                    *m = v;
                }
            }
        }
        Some(mins)
    }

    fn band_keys(&self, sig: &[u32]) -> Vec<u64> {
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

    fn kept_sig(&self, i: u32) -> &[u32] {
        let p = self.cfg.num_perm;
        &self.kept_sigs[i as usize * p..(i as usize + 1) * p]
    }

    /// Add a kept record to the index; returns its cluster number.
    fn insert(&mut self, id: String, sig: &[u32], size: u32) -> u32 {
        let i = self.kept_ids.len() as u32;
        for key in self.band_keys(sig) {
            match self.index.get_mut(&key) {
                None => {
                    self.index.insert(key, Bucket::One(i));
                }
                Some(Bucket::One(j)) => {
                    let j = *j;
                    self.index.insert(key, Bucket::Many(vec![j, i]));
                }
                Some(Bucket::Many(v)) => v.push(i),
            }
        }
        self.kept_ids.push(id);
        self.kept_sigs.extend_from_slice(sig);
        self.sizes.push(size);
        i
    }

    /// The most similar kept record at or above the threshold.
    fn find(&self, sig: &[u32]) -> Option<(u32, f64)> {
        let mut cands: Vec<u32> = Vec::new();
        for key in self.band_keys(sig) {
            match self.index.get(&key) {
                None => {}
                Some(Bucket::One(j)) => cands.push(*j),
                Some(Bucket::Many(v)) => cands.extend_from_slice(v),
            }
        }
        cands.sort_unstable();
        cands.dedup();
        let mut best: Option<(u32, f64)> = None;
        for c in cands {
            let s = estimate(sig, self.kept_sig(c));
            if s >= self.cfg.threshold && best.is_none_or(|(_, bs)| s > bs) {
                best = Some((c, s));
            }
        }
        best
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
}

impl Stage for MinhashDedup {
    fn kind(&self) -> &'static str {
        "minhash_dedup"
    }

    fn process(&self, record: &mut Record) -> Result<Verdict> {
        let text = self.selected_text(record);
        // An empty scratch marks the record exempt (no letter or digit).
        record.scratch = self
            .signature(&text)
            .map(|sig| sig.into_iter().map(u64::from).collect())
            .unwrap_or_default();
        Ok(Verdict::Keep)
    }

    fn is_sequential(&self) -> bool {
        true
    }

    fn decide(&mut self, record: &mut Record) -> Result<Verdict> {
        if record.scratch.is_empty() {
            self.exempt += 1;
            record.annotate("dedup", json!({ "exempt": true }));
            return Ok(Verdict::Keep);
        }
        let sig: Vec<u32> = record.scratch.iter().map(|&v| v as u32).collect();
        if sig.len() != self.cfg.num_perm {
            bail!(
                "minhash_dedup: signature of {} values, expected {}",
                sig.len(),
                self.cfg.num_perm
            );
        }
        match self.find(&sig) {
            Some((c, sim)) => {
                self.sizes[c as usize] += 1;
                self.dropped += 1;
                let kept = self.kept_ids[c as usize].clone();
                let sim = round3(sim);
                record.annotate(
                    "dedup",
                    json!({ "cluster": c, "kept_id": kept, "similarity": sim }),
                );
                if self.cfg.action == Action::Tag {
                    Ok(Verdict::Keep)
                } else {
                    Ok(Verdict::drop(
                        "near_duplicate",
                        format!("near duplicate of `{kept}` (estimated Jaccard {sim:.3})"),
                    ))
                }
            }
            None => {
                let c = self.insert(record.id.clone(), &sig, 1);
                record.annotate("dedup", json!({ "cluster": c, "kept_id": record.id }));
                Ok(Verdict::Keep)
            }
        }
    }

    fn save_state(&self) -> Result<Option<Vec<u8>>> {
        // Kept records in input order: deterministic bytes; the index is rebuilt on load.
        let p = self.cfg.num_perm;
        let mut out = Vec::with_capacity(24 + self.kept_ids.len() * (p * 4 + 40));
        out.extend_from_slice(b"MH01");
        out.extend_from_slice(&(p as u32).to_le_bytes());
        out.extend_from_slice(&self.dropped.to_le_bytes());
        out.extend_from_slice(&self.exempt.to_le_bytes());
        for (i, id) in self.kept_ids.iter().enumerate() {
            out.extend_from_slice(&(id.len() as u32).to_le_bytes());
            out.extend_from_slice(id.as_bytes());
            out.extend_from_slice(&self.sizes[i].to_le_bytes());
            for v in self.kept_sig(i as u32) {
                out.extend_from_slice(&v.to_le_bytes());
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
        let mut s = state;
        if take(&mut s, 4)? != b"MH01" {
            bail!("minhash_dedup: state of another version");
        }
        let p = u32::from_le_bytes(take(&mut s, 4)?.try_into()?) as usize;
        if p != self.cfg.num_perm {
            bail!(
                "minhash_dedup: state has num_perm {p}, config {}",
                self.cfg.num_perm
            );
        }
        self.kept_ids.clear();
        self.kept_sigs.clear();
        self.sizes.clear();
        self.index.clear();
        self.dropped = u64::from_le_bytes(take(&mut s, 8)?.try_into()?);
        self.exempt = u64::from_le_bytes(take(&mut s, 8)?.try_into()?);
        let mut sig = vec![0u32; p];
        while !s.is_empty() {
            let n = u32::from_le_bytes(take(&mut s, 4)?.try_into()?) as usize;
            let id = std::str::from_utf8(take(&mut s, n)?)?.to_string();
            let size = u32::from_le_bytes(take(&mut s, 4)?.try_into()?);
            for v in sig.iter_mut() {
                *v = u32::from_le_bytes(take(&mut s, 4)?.try_into()?);
            }
            self.insert(id, &sig, size);
        }
        Ok(())
    }

    fn summary(&self) -> Option<Value> {
        // Cluster sizes in buckets: 1 (no duplicate), 2, 3, 4, 5-9, 10-99, 100+.
        let labels = ["1", "2", "3", "4", "5-9", "10-99", "100+"];
        let mut hist = [0u64; 7];
        for &s in &self.sizes {
            let b = match s {
                0..=4 => s.max(1) as usize - 1,
                5..=9 => 4,
                10..=99 => 5,
                _ => 6,
            };
            hist[b] += 1;
        }
        let histogram: serde_json::Map<String, Value> = labels
            .iter()
            .zip(hist)
            .map(|(l, n)| (l.to_string(), json!(n)))
            .collect();
        Some(json!({
            "kept": self.kept_ids.len(),
            "clusters_with_duplicates": self.sizes.iter().filter(|&&s| s > 1).count(),
            "dropped": self.dropped,
            "exempt": self.exempt,
            "cluster_sizes": histogram,
            "largest_cluster": self.sizes.iter().max().copied().unwrap_or(0),
            "bands": self.bands,
            "false_negative_weight": self.cfg.false_negative_weight,
            "rows": self.rows,
            "threshold": self.cfg.threshold,
        }))
    }

    fn report_html(&self) -> Option<String> {
        use crate::report::escape;
        use std::fmt::Write;
        let sum = self.summary()?;
        let mut h = String::new();
        let _ = write!(
            h,
            "<p>{} near duplicates dropped into {} clusters; {} records kept and indexed, {} without text exempt. \
             Threshold {} (estimated Jaccard), {} bands x {} rows.</p>",
            self.dropped,
            sum["clusters_with_duplicates"],
            self.kept_ids.len(),
            self.exempt,
            self.cfg.threshold,
            self.bands,
            self.rows
        );
        h.push_str("<table><tr><th>cluster size</th><th>clusters</th></tr>");
        if let Some(hist) = sum["cluster_sizes"].as_object() {
            for (k, v) in hist {
                let _ = write!(h, "<tr><td>{}</td><td>{}</td></tr>", escape(k), v);
            }
        }
        h.push_str("</table>");
        // The largest clusters, by size then input order.
        let mut big: Vec<(u32, usize)> = self
            .sizes
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 1)
            .map(|(i, &n)| (n, i))
            .collect();
        big.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        if !big.is_empty() {
            h.push_str("<table><tr><th>cluster</th><th>kept record</th><th>records</th></tr>");
            for (n, i) in big.into_iter().take(10) {
                let _ = write!(
                    h,
                    "<tr><td>{i}</td><td>{}</td><td>{n}</td></tr>",
                    escape(&self.kept_ids[i])
                );
            }
            h.push_str("</table>");
        }
        Some(h)
    }

    fn describe(&self) -> String {
        format!(
            "fields {:?}, shingle {:?} (char {}, word {}), num_perm {}, threshold {}, {} bands x {} rows, action {:?}",
            self.cfg.fields,
            self.cfg.shingle,
            self.cfg.char_ngram,
            self.cfg.word_ngram,
            self.cfg.num_perm,
            self.cfg.threshold,
            self.bands,
            self.rows,
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

    #[test]
    fn jaccard_estimate_tracks_exact_jaccard() {
        let s = stage(MinhashConfig::default());
        let mut errs = Vec::new();
        for i in 0..200u64 {
            let chinese = i % 2 == 0;
            let a = random_text(i, 150, chinese);
            let b = mutate(i, &a, chinese, (i % 10) as f64 / 12.0);
            let exact = exact_jaccard(&s.cfg, &a, &b);
            let est = estimate(&s.signature(&a).unwrap(), &s.signature(&b).unwrap());
            // Standard error sqrt(J(1-J)/128) <= 0.044; 4 sigma never fails by chance here.
            assert!(
                (est - exact).abs() < 0.18,
                "pair {i}: exact {exact:.3} est {est:.3}"
            );
            errs.push((est - exact).abs());
        }
        let mean = errs.iter().sum::<f64>() / errs.len() as f64;
        assert!(mean < 0.04, "mean abs error {mean:.4}");
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
        assert_eq!((s.bands, s.rows), (14, 9));
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
    fn state_round_trips_and_index_is_rebuilt() {
        let mut s = stage(MinhashConfig::default());
        let t1 = random_text(1, 100, true);
        let t2 = random_text(2, 100, true);
        let sig1 = s.signature(&t1).unwrap();
        let sig2 = s.signature(&t2).unwrap();
        s.insert("a:1".into(), &sig1, 3);
        s.insert("b:2".into(), &sig2, 1);
        s.dropped = 2;
        let bytes = s.save_state().unwrap().unwrap();
        let mut t = stage(MinhashConfig::default());
        t.load_state(&bytes).unwrap();
        assert_eq!(t.kept_ids, s.kept_ids);
        assert_eq!(t.sizes, s.sizes);
        assert_eq!(t.dropped, 2);
        assert_eq!(t.save_state().unwrap().unwrap(), bytes);
        assert_eq!(t.find(&sig2).map(|(c, _)| c), Some(1));
        assert!(t.load_state(&bytes[..bytes.len() - 3]).is_err());
        let html = t.report_html().unwrap();
        assert!(html.contains("<td>a:1</td><td>3</td>"), "{html}");
        let mut other = stage(MinhashConfig {
            num_perm: 64,
            ..MinhashConfig::default()
        });
        assert!(other.load_state(&bytes).is_err());
    }
}
