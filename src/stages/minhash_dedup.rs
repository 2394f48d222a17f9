//! `minhash_dedup`: drop near-duplicate records (MinHash signatures, LSH bands,
//! union-find clusters over verified candidate pairs, a deterministic keep rule).
//!
//! **Signatures, per record, in parallel (the stage's key)**: the selected text views are
//! joined and normalized (traditional -> simplified Chinese when `fold_traditional`,
//! full-width ASCII folded to half-width, lower case, every character that is not
//! a letter or digit dropped). Then shingled:
//! - text with a fair share of CJK (`shingle = "auto"`: CJK characters at least
//!   `auto_cjk_share` (default 0.5) of the words, each CJK character counting as a
//!   word): overlapping character `char_ngram`-grams (default 5) over the letters and
//!   digits, so punctuation width and spacing never matter. The share is low on
//!   purpose: Chinese instructions full of code, numbers or English are still
//!   Chinese records, and by words a typo breaks `word_ngram` shingles of single
//!   characters (`tests/minhash_quality.rs` sweeps it; docs/benchmarks/dedup.md);
//! - other text: overlapping `word_ngram`-grams (default 3) of words (runs of
//!   letters and digits; each CJK character is a word of its own).
//!
//! **Signatures** are computed by `dedup::minhash` (normalization fused into a
//! rolling shingle hash, no strings materialized; why hand-written is there).
//! With one-permutation hashing (the default) each shingle costs one 64-bit mix
//! and a bin minimum; `classic` takes `num_perm` minimums under multiply-shift
//! permutations `(a*x + b) >> 32`. All constants come from fixed seeds, so
//! signatures are identical on every run and machine.
//!
//! **Short texts**: a text with fewer units than the n-gram size gets one shingle,
//! the whole normalized text, so two different short texts never share a
//! signature (only identical ones do). A text with no letter or digit at all is
//! exempt: kept, `meta.dedup = {exempt: true}`, never indexed.
//!
//! **Clusters need the whole input (a prepass)**: with union-find over all pairs
//! and a keep rule such as "longest", a record's fate can depend on records after
//! it, which a single in-order pass cannot know. So the stage asks the executor
//! for a prepass (`GlobalStage::needs_prepass`): the input is read once, the stages
//! before this one run, and every record that reaches it hands its signature to
//! `observe`, which writes it to disk with its `bands` band hashes. `prepare` then
//! sorts the band entries (external sort, spilling at `memory_limit`), compares
//! the members of each LSH bucket (estimated Jaccard = the fraction of equal
//! minimums), unites pairs at or above `threshold`, picks each cluster's kept
//! record by `keep`, and writes one decision per record. In the main pass `decide`
//! only reads the next decision. Files, formats and the bucket rule are in
//! `src/dedup/store.rs`; they are the signature / bucket / cluster / filter
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
//! `tests/minhash_quality.rs` (docs/benchmarks/dedup.md): on perturbed alpaca_zh records
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
//! verify = "jaccard"      # jaccard | segments (below)
//! # with verify = "segments":
//! # candidate_threshold = 0.4   # LSH banding target
//! # segment_threshold = 0.5     # prompt and response each (records with both)
//! # reorder_jaccard = 0.8       # a duplicate whatever the order
//! # edit_threshold = 0.9        # veto: long stretches differing on both sides
//! # containment = 0.9           # smaller document's shingles contained
//! # coverage = 0.75             # LCS similarity of the character samples
//! # template_records = 32       # text held by this many records is a template
//! ```
//!
//! **`verify = "segments"`** stores a verification sketch per record and confirms a
//! candidate by the rules of [`crate::dedup::minhash::Verify`]: a per-segment guard
//! (the same question with another answer is not a duplicate), a veto against long
//! stretches that differ on both sides (a shared template with other content), then
//! Jaccard, containment or an edit-aware LCS similarity (typos). Measured in
//! `tests/minhash_labelled.rs` (docs/benchmarks/dedup.md, Session 8): higher recall per
//! edit kind, but MMLU `moral_scenarios` items chain, so it is not the default.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

pub use crate::dedup::minhash::{optimal_bands_rows, Hashing, ShingleMode};
use crate::dedup::minhash::{MinHasher, Shingling, Verify};
use crate::dedup::store::{self, round3, DecisionKind, KeepRule};
use crate::dedup::{Prepass, PrepassStore};
use crate::record::{Record, Role, TextFields};
use crate::shape::Shape;
use crate::stage::{Action, BuildContext, FinishContext, Flags, GlobalStage, Score, StateReader, Verdict};

/// `[[stage]] kind = "minhash_dedup"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinhashConfig {
    #[serde(default)]
    /// Which text views are compared (`response` also takes whole documents).
    pub fields: TextFields,
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
    /// How candidate pairs are verified.
    #[serde(default)]
    pub verify: VerifyMode,
    /// `verify = "segments"`: the estimated Jaccard the LSH banding is derived for
    /// (candidates are found generously, then verified).
    #[serde(default = "d_candidate_threshold")]
    pub candidate_threshold: f64,
    /// `verify = "segments"`: estimated containment of the smaller document.
    #[serde(default = "d_containment")]
    pub containment: f64,
    /// `verify = "segments"`: LCS similarity of the documents' character samples.
    #[serde(default = "d_edit_threshold")]
    pub edit_threshold: f64,
    /// `verify = "segments"`: LCS similarity of the character samples that makes
    /// a pair a near duplicate without the Jaccard or containment rule (typos).
    #[serde(default = "d_coverage")]
    pub coverage: f64,
    /// `verify = "segments"`: estimated Jaccard at which a pair is a near duplicate
    /// whatever the order of its text (reordered paragraphs); no veto above it.
    #[serde(default = "d_reorder_jaccard")]
    pub reorder_jaccard: f64,
    /// `verify = "segments"`: the per-segment floor (prompts, and responses).
    #[serde(default = "d_segment_threshold")]
    pub segment_threshold: f64,
    /// `verify = "segments"`: records that must share a run of text for it to count
    /// as a template, set aside before comparing (`src/dedup/common.rs`); 0 = off.
    #[serde(default = "d_template_records")]
    pub template_records: u32,
}

/// `verify`: how a candidate pair is confirmed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyMode {
    /// Estimated Jaccard of the document signatures at least `threshold`.
    #[default]
    Jaccard,
    /// [`Verify`]: per-segment guard, then Jaccard, containment or edit similarity.
    Segments,
}

fn d_candidate_threshold() -> f64 {
    0.4
}
fn d_containment() -> f64 {
    0.85
}
fn d_edit_threshold() -> f64 {
    0.9
}
fn d_coverage() -> f64 {
    0.75
}
fn d_reorder_jaccard() -> f64 {
    0.8
}
fn d_template_records() -> u32 {
    32
}
fn d_segment_threshold() -> f64 {
    0.5
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
pub(crate) fn de_bytes<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
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

impl MinhashConfig {
    /// The keys that shape a signature.
    fn shingling(&self) -> Shingling {
        Shingling {
            shingle: self.shingle,
            auto_cjk_share: self.auto_cjk_share,
            char_ngram: self.char_ngram,
            word_ngram: self.word_ngram,
            num_perm: self.num_perm,
            hashing: self.hashing,
            fold_traditional: self.fold_traditional,
        }
    }
}

impl Default for MinhashConfig {
    fn default() -> Self {
        MinhashConfig {
            fields: TextFields::All,
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
            verify: VerifyMode::Jaccard,
            candidate_threshold: d_candidate_threshold(),
            containment: d_containment(),
            edit_threshold: d_edit_threshold(),
            coverage: d_coverage(),
            reorder_jaccard: d_reorder_jaccard(),
            segment_threshold: d_segment_threshold(),
            template_records: d_template_records(),
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

/// The stage's section of `report.html` (auto-escaped: `crate::report::render_html`).
const REPORT_TEMPLATE: &str = r#"<p>{{ sum.duplicates }} near duplicates in {{ sum.clusters_with_duplicates }} clusters with more than one record ({% if dropped %}dropped{% else %}tagged{% endif %}, kept by: {{ sum.keep }}); {{ sum.exempt }} records without text exempt. Threshold {{ threshold }} (estimated Jaccard), {{ bands }} bands x {{ rows }} rows; {{ sum.pairs_compared }} candidate pairs compared, {{ sum.pairs_similar }} similar. Every cluster is listed in <code>clusters.jsonl</code>.</p>
<table><tr><th>cluster size</th><th>clusters</th></tr>
{% for size, n in sum.cluster_sizes %}<tr><td>{{ size }}</td><td>{{ n }}</td></tr>
{% endfor %}</table>
{% if largest %}<h3>Largest clusters (kept record first)</h3>
{% endif %}
{% for big in largest %}<p>cluster {{ big.cluster }}: {{ big.size }} records, kept <code>{{ big.kept_id }}</code></p><table><tr>{% for m in big.members %}<th>{{ m.id }} ({{ m.label }})</th>{% endfor %}</tr><tr>{% for m in big.members %}<td style="vertical-align:top;white-space:pre-wrap">{{ m.text }}</td>{% endfor %}</tr></table>
{% endfor %}"#;

/// The built stage.
pub struct MinhashDedup {
    cfg: MinhashConfig,
    hasher: MinHasher,
    /// The prepass store: observed in the prepass, decisions read back in the main pass.
    prepass: Prepass,
    /// Records decided so far in the main pass.
    decided: u64,
    shown: Vec<Shown>,
}

/// A record's key in the prepass: the compared text's characters and its
/// signature with band keys (`sig: None`: no letter or digit, exempt).
pub struct Signed {
    chars: u32,
    sig: Option<(Vec<u32>, Vec<u64>)>,
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
            (None, None) => {
                let t = match cfg.verify {
                    VerifyMode::Jaccard => cfg.threshold,
                    VerifyMode::Segments => cfg.candidate_threshold.min(cfg.threshold),
                };
                optimal_bands_rows(t, cfg.num_perm, cfg.false_negative_weight)
            }
            _ => bail!("minhash_dedup: set both `bands` and `rows`, or neither (derived from `threshold`)"),
        };
        for (k, v) in [
            ("candidate_threshold", cfg.candidate_threshold),
            ("containment", cfg.containment),
            ("edit_threshold", cfg.edit_threshold),
            ("coverage", cfg.coverage),
            ("reorder_jaccard", cfg.reorder_jaccard),
            ("segment_threshold", cfg.segment_threshold),
        ] {
            if !(v > 0.0 && v <= 1.0) {
                bail!("minhash_dedup: {k} must be in (0, 1], got {v}");
            }
        }
        if cfg.template_records > 255 {
            bail!(
                "minhash_dedup: template_records must be at most 255 (its counters are bytes), got {}",
                cfg.template_records
            );
        }
        let hasher = MinHasher::new(cfg.shingling(), bands, rows);
        let verify = (cfg.verify == VerifyMode::Segments).then_some(Verify {
            num_perm: cfg.num_perm,
            threshold: cfg.threshold,
            containment: cfg.containment,
            edit_threshold: cfg.edit_threshold,
            coverage: cfg.coverage,
            reorder_jaccard: cfg.reorder_jaccard,
            segment_threshold: cfg.segment_threshold,
            template_records: cfg.template_records,
        });
        let params = store::Params {
            num_perm: verify.map_or(cfg.num_perm, |v| v.width()),
            bands,
            threshold: cfg.threshold,
            keep: cfg.keep,
            memory_limit: cfg.memory_limit,
            show_clusters: 10,
            show_members: 4,
            verify,
        };
        Ok(MinhashDedup {
            cfg,
            hasher,
            prepass: Prepass::new("minhash_dedup", params),
            decided: 0,
            shown: Vec::new(),
        })
    }

    /// The MinHash signature of a text; `None` when it has no letter or digit.
    pub fn signature(&self, text: &str) -> Option<Vec<u32>> {
        self.hasher.signature(text)
    }

    /// The LSH band hashes of a signature (`bands` of them, each over `rows` values).
    pub fn band_keys(&self, sig: &[u32]) -> Vec<u64> {
        self.hasher.band_keys(sig)
    }

    fn selected_text(&self, record: &Record) -> String {
        let mut out = String::new();
        for (seg, text) in record.texts() {
            if self.cfg.fields.selects(seg.role) {
                out.push_str(text);
                out.push('\n');
            }
        }
        out
    }

    /// `(bands, rows)` in force.
    pub fn banding(&self) -> (usize, usize) {
        self.hasher.banding()
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
}

impl GlobalStage for MinhashDedup {
    /// `None` in the main pass: the decision is read back from the prepass.
    type Key = Option<Signed>;

    fn kind(&self) -> &'static str {
        "minhash_dedup"
    }

    fn key(&self, record: &mut Record) -> Result<Option<Signed>> {
        if self.prepass.summary().is_some() {
            return Ok(None); // the main pass: decisions are made
        }
        let (sig, chars) = if self.cfg.verify == VerifyMode::Segments {
            // The prompt side, then the response side (whole documents count as responses).
            let (mut prompt, mut response) = (String::new(), String::new());
            let mut answers = false;
            for (seg, text) in record.texts() {
                if !self.cfg.fields.selects(seg.role) {
                    continue;
                }
                let side = match seg.role {
                    Role::Prompt | Role::System => &mut prompt,
                    Role::Response => {
                        answers = true;
                        &mut response
                    }
                    Role::Document => &mut response,
                };
                side.push_str(text);
                side.push('\n');
            }
            let chars = (prompt.chars().count() + response.chars().count()).min(u32::MAX as usize) as u32;
            let split = answers && !prompt.trim().is_empty() && !response.trim().is_empty();
            (self.hasher.sketch(&prompt, &response, split), chars)
        } else {
            let text = self.selected_text(record);
            let chars = text.chars().count().min(u32::MAX as usize) as u32;
            (self.signature(&text), chars)
        };
        let sig = sig.map(|sig| {
            let keys = self.band_keys(&sig[..self.cfg.num_perm]);
            (sig, keys)
        });
        Ok(Some(Signed { chars, sig }))
    }

    fn decide(&mut self, record: &mut Record, _key: Option<Signed>) -> Result<Verdict> {
        let d = self.prepass.next(&record.id)?;
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
            return Ok(Verdict::Tagged {
                reason: "near_duplicate".into(),
            });
        }
        Ok(Verdict::drop(
            "near_duplicate",
            format!(
                "near duplicate of `{kept_id}` (cluster {} of {} records, estimated Jaccard {sim:.3})",
                d.cluster, d.size
            ),
        ))
    }

    fn needs_prepass(&self) -> bool {
        true
    }

    fn prepass(&mut self) -> &mut dyn PrepassStore {
        &mut self.prepass
    }

    fn observe(&mut self, record: &Record, key: Option<Signed>) -> Result<()> {
        let key = key.context("minhash_dedup: observe in the main pass")?;
        let quality = self.quality_of(record);
        let sig = key.sig.as_ref().map(|(s, k)| (s.as_slice(), k.as_slice()));
        self.prepass.add(&record.id, sig, key.chars, quality)
    }

    fn use_sharded_prepass(&mut self) -> bool {
        true
    }

    fn save_state(&self) -> Result<Vec<u8>> {
        // Where the main pass is in decisions.bin, and the texts captured for the report.
        let mut out = Vec::new();
        out.extend_from_slice(b"MH02");
        out.extend_from_slice(&self.prepass.cursor().to_le_bytes());
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
        Ok(out)
    }

    fn load_state(&mut self, state: &[u8]) -> Result<()> {
        let mut s = StateReader::new(state, "minhash_dedup", b"MH02")?;
        self.prepass.seek(s.u64()?);
        self.decided = s.u64()?;
        self.shown.clear();
        while !s.is_empty() {
            let cluster = s.u32()?;
            let kept = s.take(1)?[0] == 1;
            let similarity = s.f32()?;
            let id_len = s.u32()? as usize;
            let id = s.str(id_len)?;
            let text_len = s.u32()? as usize;
            let text = s.str(text_len)?;
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
        let Some(dir) = self.prepass.dir() else {
            return Ok(());
        };
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
        let (bands, rows) = self.banding();
        let sum = self.prepass.summary()?;
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
            "bands": bands,
            "rows": rows,
            "false_negative_weight": self.cfg.false_negative_weight,
            "threshold": self.cfg.threshold,
        }))
    }

    fn scores(&self) -> Vec<Score> {
        vec![Score::unit(
            "dedup",
            "similarity",
            self.cfg.threshold,
            Flags::AtOrAbove,
        )]
    }

    fn report_html(&self) -> Option<String> {
        let (bands, rows) = self.banding();
        let sum = self.prepass.summary()?;
        let largest: Vec<serde_json::Value> = sum
            .largest
            .iter()
            .map(|big| {
                let mut members: Vec<&Shown> = self.shown.iter().filter(|s| s.cluster == big.cluster).collect();
                members.sort_by_key(|s| !s.kept); // stable: the kept record, then input order
                let members: Vec<serde_json::Value> = members
                    .iter()
                    .map(|m| {
                        let label = if m.kept {
                            "kept".to_string()
                        } else {
                            format!("similarity {:.3}", m.similarity)
                        };
                        json!({ "id": m.id, "label": label, "text": m.text })
                    })
                    .collect();
                json!({ "cluster": big.cluster, "size": big.size, "kept_id": big.kept_id, "members": members })
            })
            .collect();
        let ctx = json!({
            "sum": {
                "duplicates": sum.duplicates,
                "clusters_with_duplicates": sum.clusters_with_duplicates,
                "keep": format!("{:?}", sum.keep),
                "exempt": sum.exempt,
                "pairs_compared": sum.pairs_compared,
                "pairs_similar": sum.pairs_similar,
                "cluster_sizes": sum.cluster_sizes,
            },
            "dropped": self.cfg.action == Action::Drop,
            "threshold": self.cfg.threshold,
            "bands": bands,
            "rows": rows,
            "largest": largest,
        });
        crate::report::render_html("minhash_dedup.html", REPORT_TEMPLATE, ctx).ok()
    }

    fn annotations(&self) -> Vec<(&'static str, Shape)> {
        let decision = Shape::object(&[
            ("cluster", Shape::Int),
            ("kept_id", Shape::Str),
            ("similarity", Shape::Float),
            ("exempt", Shape::Bool),
        ]);
        vec![("dedup", decision)]
    }

    fn describe(&self) -> String {
        let (bands, rows) = self.banding();
        format!(
            "fields {:?}, shingle {:?} (char {}, word {}), num_perm {} ({:?}), threshold {}, {} bands x {} rows, keep {:?}, action {:?}",
            self.cfg.fields,
            self.cfg.shingle,
            self.cfg.char_ngram,
            self.cfg.word_ngram,
            self.cfg.num_perm,
            self.cfg.hashing,
            self.cfg.threshold,
            bands,
            rows,
            self.cfg.keep,
            self.cfg.action
        )
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn stage(cfg: MinhashConfig) -> MinhashDedup {
        MinhashDedup::new(
            cfg,
            &BuildContext {
                config_dir: ".".into(),
            },
        )
        .unwrap()
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
        assert_eq!(s.banding(), (20, 6)); // threshold 0.7
                                          // Higher thresholds need more rows per band.
        assert!(optimal_bands_rows(0.9, 128, 0.5).1 > optimal_bands_rows(0.5, 128, 0.5).1);
        let s = stage(MinhashConfig {
            bands: Some(16),
            rows: Some(8),
            ..MinhashConfig::default()
        });
        assert_eq!(s.banding(), (16, 8));
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
    fn state_round_trips() {
        let mut s = stage(MinhashConfig::default());
        s.prepass.seek(1234);
        s.decided = 17;
        s.shown.push(Shown {
            cluster: 3,
            kept: true,
            similarity: 0.75,
            id: "a:1".into(),
            text: "长城是中国古代的军事防御工程".into(),
        });
        let bytes = s.save_state().unwrap();
        let mut t = stage(MinhashConfig::default());
        t.load_state(&bytes).unwrap();
        assert_eq!((t.prepass.cursor(), t.decided), (1234, 17));
        assert_eq!(t.shown, s.shown);
        assert_eq!(t.save_state().unwrap(), bytes);
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
