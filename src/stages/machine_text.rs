//! `machine_text`: how likely a record's text was written by a language model, from
//! cheap signals plus a trained classifier; drops or tags the record.
//!
//! In instruction data the harm is machine text of the wrong kind: "as an AI
//! language model" refusals and disclaimers, HC3's tell-tale ChatGPT phrases,
//! templated filler ("首先…其次…最后…总之"), and degenerate repetition loops. Each of
//! these is counted (`signals`); a fastText model (`filters/machine_text/mgt_char.bin`,
//! `curate train-classifier` on human vs LLM text, one token per CJK character and
//! per Latin word, character-trigram features) gives P(machine). The combined score
//! adds the signals to the model's log-odds:
//!
//! `score = sigmoid(logit(p_model) + refusal_weight * min(refusal, 2)
//!          + indicating_weight * min(indicating, 3) + template_weight * min(template, 5)
//!          + loop_weight * [loop])`
//!
//! so a refusal or a loop flags a record even when the model leans human (a loop
//! with P(machine) 0.02 scores 0.98: a loop is evidence enough on its own), while a few connectives only tip an
//! undecided model. Texts shorter than `min_chars`
//! are not given to the model (it is noise there): its part is then 0.5.
//!
//! The selected segments (by default the responses, or the document) are joined
//! and scored as one text: a long conversation is judged on all its answers.
//!
//! ```toml
//! [[stage]]
//! kind = "machine_text"
//! model = "../filters/machine_text/mgt_char.bin"
//! model_cjk = "../filters/machine_text/mgt_zh_formal.bin"   # mostly-CJK text (cjk_share = 0.5)
//! phrases = ["../filters/machine_text/indicating_zh.txt", "../filters/machine_text/indicating_en.txt"]
//! threshold = 0.9          # score at or above this flags the record
//! fields = "response"      # response | prompt | all
//! min_chars = 20           # shorter text: no model score
//! refusal_weight = 4.0     # log-odds added per refusal/disclaimer match (at most 2)
//! indicating_weight = 0.7  # per distinct HC3 phrase (at most 3)
//! template_weight = 0.3    # per template marker (at most 5)
//! loop_weight = 8.0        # when a repetition loop is found
//! action = "tag"           # or "drop"
//! # optional: a causal LM (GGUF file or HF folder, e.g. a `finetune` output) scores the text
//! lm_model = "../models/SmolLM2-135M-Instruct.Q4_1.gguf"
//! lm_max_tokens = 128      # only the text's first tokens are scored
//! lm_weight = 0.0          # log-odds per nat of mean log-likelihood above lm_center
//! lm_center = -3.0
//! ```
//! `meta.machine_text = {score, model, signals: {refusal, indicating, template,
//! list_items, loop_tokens, loop_frac, lm?: {tokens, log_likelihood, entropy,
//! discrepancy}}}` (plus `flag` and `detail` when tagged). The language-model scores
//! ([`crate::lm_score`]) cost one forward pass per record (1-1.5 s for 128 tokens
//! of a 135M model on one core), so they are off unless `lm_model` is set, and they enter
//! the combined score only with a non-zero `lm_weight`: `+ lm_weight * (log_likelihood -
//! lm_center)` (machine text is more predictable: higher log-likelihood).
//! Drop reason: `machine_text`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickKind};
use anyhow::{bail, Context, Result};
use regex::Regex;
use serde::Deserialize;
use serde_json::json;

use crate::classifier::Classifier;
use crate::lm_score::{LmScore, LmScorer};
use crate::record::{Record, TextFields};
use crate::shape::Shape;
use crate::stage::{flag_or_drop, flagged_shape, Action, BuildContext, Flags, Score, Stage, Verdict};
use crate::stages::toxicity::Lexicon;
use crate::text::{fold_width_and_case, is_bmp_han};

fn default_threshold() -> f32 {
    0.9
}
fn default_min_chars() -> usize {
    20
}
fn default_positive() -> String {
    "1".into()
}
fn default_refusal_weight() -> f32 {
    4.0
}
fn default_indicating_weight() -> f32 {
    0.7
}
fn default_template_weight() -> f32 {
    0.3
}
fn default_loop_weight() -> f32 {
    8.0
}
fn default_true() -> bool {
    true
}
fn default_lm_max_tokens() -> usize {
    128
}
fn default_lm_center() -> f32 {
    -3.0
}
fn default_cjk_share() -> f32 {
    0.5
}

/// `[[stage]] kind = "machine_text"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineTextConfig {
    /// A fastText model from `curate train-classifier` (labels `0` human / `1` machine).
    pub model: Option<PathBuf>,
    /// A second model of the same kind for text whose letters are mostly CJK (at least
    /// `cjk_share`): `filters/machine_text/mgt_zh_formal.bin` has formal Chinese prose in
    /// its human side, which lowered English recall, so English keeps `model`.
    pub model_cjk: Option<PathBuf>,
    /// Share of CJK characters among a text's letters from which `model_cjk` scores it.
    #[serde(default = "default_cjk_share")]
    pub cjk_share: f32,
    /// Phrase lists (`phrase` or `phrase<TAB>category` per line, `#` comments), e.g. HC3's.
    #[serde(default)]
    pub phrases: Vec<PathBuf>,
    /// Combined score at or above this flags the record.
    #[serde(default = "default_threshold")]
    pub threshold: f32,
    /// Which text views are scored (default responses and documents).
    #[serde(default = "TextFields::response")]
    pub fields: TextFields,
    /// Texts with fewer characters (trimmed) get no model score.
    #[serde(default = "default_min_chars")]
    pub min_chars: usize,
    #[serde(default = "default_refusal_weight")]
    pub refusal_weight: f32,
    #[serde(default = "default_indicating_weight")]
    pub indicating_weight: f32,
    #[serde(default = "default_template_weight")]
    pub template_weight: f32,
    #[serde(default = "default_loop_weight")]
    pub loop_weight: f32,
    #[serde(default)]
    pub action: Action,
    /// The model's label for machine-written text.
    #[serde(default = "default_positive")]
    pub positive_label: String,
    /// Feed the model one token per CJK character (must match how it was trained).
    #[serde(default = "default_true")]
    pub char_split: bool,
    /// Feed punctuation and line breaks as tokens (must match `--keep-punct` in training).
    #[serde(default = "default_true")]
    pub keep_punct: bool,
    /// A causal LM (`.gguf` file or Hugging Face folder) whose scores go to `signals.lm`.
    pub lm_model: Option<PathBuf>,
    /// Tokens of each text the LM scores (its beginning).
    #[serde(default = "default_lm_max_tokens")]
    pub lm_max_tokens: usize,
    /// Log-odds added per nat of mean log-likelihood above `lm_center` (0: recorded only).
    #[serde(default)]
    pub lm_weight: f32,
    #[serde(default = "default_lm_center")]
    pub lm_center: f32,
}

impl Default for MachineTextConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

/// AI self-references, refusals and disclaimers (matched on lower-cased,
/// full-width-folded text). Written for this stage; each alternative was seen in
/// ShareGPT / BELLE answers or is the English form of one.
static REFUSAL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?:作为|身为|我是|我只是)(?:一个|一款|一名|一种)?[^，。,.\n]{0,8}?(?:ai|人工智能|机器|大型|大|虚拟)",
        r"(?:语言模型|助手|助理|模型|程序|机器人|\s?语言\s?模型|[，,。])",
        r"|一个由\S{0,12}?(?:openai|谷歌|google|百度|阿里|智谱)\S{0,6}?(?:开发|训练|创建)的",
        r"|(?:由|被)openai(?:开发|训练|创建)",
        r"|我是(?:chatgpt|gpt-?\d|claude|文心一言|通义千问|chatglm)",
        r"|(?:很|非常)?抱歉[，,]\s?(?:作为|我(?:无法|不能|没有办法|不会))",
        r"|我(?:无法|不能)(?:提供|回答|给出|访问|浏览|预测)(?:任何)?(?:实时|个人|具体)?",
        r"|我没有(?:个人|自己的)(?:观点|意见|感情|情感|经历|偏好|喜好)",
        r"|(?:我的)?(?:知识|训练数据)(?:截止|截至|仅更新)",
        r"|\bas an ai\b|\bas a (?:large )?language model\b|\bi(?:'m| am) an ai\b",
        r"|\bi(?:'m| am) (?:sorry|afraid),? but (?:i|as an)\b",
        r"|\bi (?:cannot|can't|am unable to|am not able to) (?:provide|fulfill|assist|browse|access|help with)\b",
        r"|\bi don't have (?:personal|the ability|access|real-time)\b",
        r"|\bmy (?:knowledge|training data) (?:cutoff|cut-off)\b",
        r"|\btrained by openai\b",
    ))
    .expect("refusal pattern")
});

/// Connectives of templated answers, counted once each.
const TEMPLATE_MARKERS: &[&str] = &[
    "首先",
    "其次",
    "再次",
    "此外",
    "最后",
    "总之",
    "总而言之",
    "综上所述",
    "总的来说",
    "需要注意的是",
    "值得注意的是",
    "firstly",
    "secondly",
    "thirdly",
    "additionally",
    "furthermore",
    "moreover",
    "in conclusion",
    "in summary",
    "overall,",
    "to summarize",
    "it is important to note",
    "it's important to note",
    "it is worth noting",
];

/// A list-item line: `1.`, `2)`, `3、`, `（一）`, `一、`, `-`, `*`, `•`, or a markdown heading.
static LIST_ITEM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?m)^\s*(?:\d{1,2}[.)、．]|[（(][一二三四五六七八九十\d]{1,3}[)）]|[一二三四五六七八九十]{1,3}、|[-*•]\s|#{1,6}\s)")
        .expect("list pattern")
});

/// A repetition loop: a unit of at least this many tokens...
const LOOP_MIN_PERIOD: usize = 4;
/// ...repeated back to back at least this many times.
const LOOP_MIN_REPEATS: usize = 3;
/// Longest unit looked for, in tokens.
const LOOP_MAX_PERIOD: usize = 64;

/// What the signals found in one text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signals {
    /// Refusal / AI self-reference / disclaimer matches.
    pub refusal: usize,
    /// Distinct indicating phrases found.
    pub indicating: usize,
    /// Distinct template connectives, plus one when there are 3 or more list items.
    pub template: usize,
    /// List-item lines.
    pub list_items: usize,
    /// Tokens inside the longest repetition loop (0: none).
    pub loop_tokens: usize,
    /// `loop_tokens` / all tokens.
    pub loop_frac: f64,
    /// Language-model scores (only with `lm_model`).
    pub lm: Option<LmScore>,
}

/// Tokens as the classifier sees them: a CJK character, or a run of other letters/digits.
fn tokens(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    for (i, c) in text.char_indices() {
        let cjk = is_bmp_han(c);
        if cjk || !c.is_alphanumeric() {
            if let Some(s) = start.take() {
                out.push(&text[s..i]);
            }
            if cjk {
                out.push(&text[i..i + c.len_utf8()]);
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        out.push(&text[s..]);
    }
    out
}

/// Distinct tokens in a (short) unit.
fn distinct(unit: &[&str]) -> usize {
    let mut seen: Vec<&str> = Vec::with_capacity(unit.len());
    for t in unit {
        if !seen.contains(t) {
            seen.push(t);
        }
    }
    seen.len()
}

/// The longest stretch of tokens that is one unit (>= 4 tokens, >= 3 of them
/// different, so laughter `哈哈哈哈` is not a loop) repeated back to back >= 3 times:
/// for each period p, runs where token i equals token i - p. O(64 n). Returns the
/// tokens covered (0 when there is no loop).
pub fn longest_loop(toks: &[&str]) -> usize {
    // Tokens are compared by a hash first (one integer compare), then as strings
    // when the hashes agree: the same equalities, without a string compare at each
    // of the 61 periods of every token.
    let keys: Vec<u64> = toks.iter().map(|t| token_key(t)).collect();
    let same = |i: usize, j: usize| keys[i] == keys[j] && toks[i] == toks[j];
    let mut best = 0;
    for p in LOOP_MIN_PERIOD..=LOOP_MAX_PERIOD.min(toks.len() / LOOP_MIN_REPEATS) {
        let mut run = 0;
        for i in p..toks.len() {
            if same(i, i - p) {
                run += 1;
                let covered = run + p;
                if covered >= p * LOOP_MIN_REPEATS && covered > best && distinct(&toks[i + 1 - p..=i]) >= 3 {
                    best = covered;
                }
            } else {
                run = 0;
            }
        }
    }
    best
}

/// FNV-1a of a token (equal tokens, equal keys).
fn token_key(t: &str) -> u64 {
    t.bytes().fold(0xcbf29ce484222325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// The template connectives, searched in one pass.
static TEMPLATE_AC: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasick::builder()
        .kind(Some(AhoCorasickKind::DFA))
        .build(TEMPLATE_MARKERS)
        .expect("template markers")
});

/// Count the signals in one (already joined) text.
pub fn signals(text: &str, phrases: Option<&Lexicon>) -> Signals {
    let folded: String = text.chars().map(fold_width_and_case).collect();
    let refusal = REFUSAL.find_iter(&folded).count();
    let indicating = phrases.map_or(0, |lex| {
        let found: BTreeSet<String> = lex
            .find_normalized(&folded)
            .iter()
            .map(|h| folded.chars().skip(h.start).take(h.end - h.start).collect())
            .collect();
        found.len()
    });
    let list_items = LIST_ITEM.find_iter(text).count();
    // Markers present (each counted once), as `folded.contains(marker)` for each.
    let mut present = [false; TEMPLATE_MARKERS.len()];
    for m in TEMPLATE_AC.find_overlapping_iter(&folded) {
        present[m.pattern().as_usize()] = true;
    }
    let markers = present.iter().filter(|&&p| p).count();
    // Numbers are left out of the loop search: a list that repeats its items under
    // new numbers (`1. 苹果 2. 香蕉 3. 苹果 4. 香蕉`) is still a loop.
    let toks: Vec<&str> = tokens(&folded)
        .into_iter()
        .filter(|t| !t.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    let loop_tokens = longest_loop(&toks);
    Signals {
        refusal,
        indicating,
        template: markers + usize::from(list_items >= 3),
        list_items,
        loop_tokens,
        loop_frac: if toks.is_empty() {
            0.0
        } else {
            loop_tokens as f64 / toks.len() as f64
        },
        lm: None,
    }
}

/// Round to 4 decimals for `meta`.
fn r4(x: f64) -> f64 {
    (x * 10000.0).round() / 10000.0
}

/// The built stage.
pub struct MachineText {
    cfg: MachineTextConfig,
    phrases: Option<Lexicon>,
    model: Option<Classifier>,
    model_cjk: Option<Classifier>,
    lm: Option<LmScorer>,
}

impl MachineText {
    /// Check the config, load the phrase lists and the model (once, shared by all threads).
    pub fn new(cfg: MachineTextConfig, cx: &BuildContext) -> Result<Self> {
        if cfg.action == Action::Redact {
            bail!("machine_text: action \"redact\" does not apply; use \"drop\" or \"tag\"");
        }
        if !(0.0..=1.0).contains(&cfg.threshold) {
            bail!("machine_text: threshold must be in 0..=1, got {}", cfg.threshold);
        }
        for (name, w) in [
            ("refusal_weight", cfg.refusal_weight),
            ("indicating_weight", cfg.indicating_weight),
            ("template_weight", cfg.template_weight),
            ("loop_weight", cfg.loop_weight),
            ("lm_weight", cfg.lm_weight),
            ("lm_center", cfg.lm_center),
        ] {
            if !w.is_finite() {
                bail!("machine_text: {name} must be a finite number, got {w}");
            }
        }
        let phrases = if cfg.phrases.is_empty() {
            None
        } else {
            let mut entries = Vec::new();
            for p in &cfg.phrases {
                let path = cx.resolve(p);
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("machine_text: phrases {}: cannot read", path.display()))?;
                entries.extend(Lexicon::parse(&text, "indicating"));
            }
            Some(Lexicon::new(entries)?)
        };
        let load = |p: &PathBuf, key: &str| -> Result<Classifier> {
            let path = cx.resolve(p);
            let m = Classifier::load(&path, cfg.char_split)
                .with_context(|| format!("machine_text: {key}"))?
                .with_keep_punct(cfg.keep_punct);
            if !m.labels().contains(&cfg.positive_label) {
                bail!(
                    "machine_text: {key} {} has no label `{}` (labels: {:?})",
                    path.display(),
                    cfg.positive_label,
                    m.labels()
                );
            }
            Ok(m)
        };
        let model = cfg.model.as_ref().map(|p| load(p, "model")).transpose()?;
        let model_cjk = cfg.model_cjk.as_ref().map(|p| load(p, "model_cjk")).transpose()?;
        if model_cjk.is_some() && model.is_none() {
            bail!("machine_text: model_cjk needs `model` too (for the other text)");
        }
        if !(0.0..=1.0).contains(&cfg.cjk_share) {
            bail!("machine_text: cjk_share must be in 0..=1, got {}", cfg.cjk_share);
        }
        let lm = match &cfg.lm_model {
            Some(p) => {
                Some(LmScorer::load(&cx.resolve(p), cfg.lm_max_tokens).context("machine_text: lm_model")?)
            }
            None => None,
        };
        Ok(MachineText {
            cfg,
            phrases,
            model,
            model_cjk,
            lm,
        })
    }

    /// P(machine) from the model alone (`model_cjk` for mostly-CJK text when set); `None`
    /// without a model or for short text.
    pub fn model_prob(&self, text: &str) -> Option<f32> {
        let mut m = self.model.as_ref()?;
        if text.trim().chars().count() < self.cfg.min_chars {
            return None;
        }
        if let Some(cjk) = &self.model_cjk {
            if crate::text::cjk_ratio(text) >= f64::from(self.cfg.cjk_share) {
                m = cjk;
            }
        }
        Some(m.prob(text, &self.cfg.positive_label))
    }

    /// The signals, the model's P(machine) and the combined score of one text.
    pub fn score(&self, text: &str) -> Result<(Signals, Option<f32>, f64)> {
        let mut s = signals(text, self.phrases.as_ref());
        if let Some(lm) = &self.lm {
            s.lm = lm.score(text).context("machine_text: lm_model")?;
        }
        let p = self.model_prob(text);
        let score = self.combine(&s, p);
        Ok((s, p, score))
    }

    /// The signals found in one text (phrase lists of this stage).
    pub fn signals(&self, text: &str) -> Signals {
        signals(text, self.phrases.as_ref())
    }

    /// The combined score: the signals' weights added to the model's log-odds
    /// (0.5 when there is no model score).
    pub fn combine(&self, s: &Signals, p: Option<f32>) -> f64 {
        let p = p.map_or(0.5, |p| (p as f64).clamp(1e-4, 1.0 - 1e-4));
        let c = &self.cfg;
        let z = (p / (1.0 - p)).ln()
            + c.refusal_weight as f64 * s.refusal.min(2) as f64
            + c.indicating_weight as f64 * s.indicating.min(3) as f64
            + c.template_weight as f64 * s.template.min(5) as f64
            + c.loop_weight as f64 * f64::from(u8::from(s.loop_tokens > 0))
            + s.lm.map_or(0.0, |lm| {
                c.lm_weight as f64 * (lm.log_likelihood - c.lm_center as f64)
            });
        1.0 / (1.0 + (-z).exp())
    }
}

impl Stage for MachineText {
    fn kind(&self) -> &'static str {
        "machine_text"
    }

    fn process(&self, record: &mut Record) -> Result<Verdict> {
        let mut joined = String::new();
        for (seg, text) in record.texts() {
            if self.cfg.fields.selects(seg.role) && !text.trim().is_empty() {
                if !joined.is_empty() {
                    joined.push_str("\n\n");
                }
                joined.push_str(text);
            }
        }
        if joined.is_empty() {
            record.annotate("machine_text", json!({"score": null}));
            return Ok(Verdict::Keep);
        }
        let (s, p, score) = self.score(&joined)?;
        let mut meta = json!({
            "score": r4(score),
            "model": p.map(|p| r4(p as f64)),
            "signals": {
                "refusal": s.refusal,
                "indicating": s.indicating,
                "template": s.template,
                "list_items": s.list_items,
                "loop_tokens": s.loop_tokens,
                "loop_frac": r4(s.loop_frac),
            },
        });
        if let Some(lm) = s.lm {
            meta["signals"]["lm"] = json!({
                "tokens": lm.tokens,
                "log_likelihood": r4(lm.log_likelihood),
                "entropy": r4(lm.entropy),
                "discrepancy": r4(lm.discrepancy),
            });
        }
        if score < self.cfg.threshold as f64 {
            record.annotate("machine_text", meta);
            return Ok(Verdict::Keep);
        }
        let detail = format!(
            "score {score:.3} >= {} (model {}, refusal {}, indicating {}, template {}, loop {})",
            self.cfg.threshold,
            p.map_or("-".to_string(), |p| format!("{p:.3}")),
            s.refusal,
            s.indicating,
            s.template,
            s.loop_tokens
        );
        Ok(flag_or_drop(
            record,
            "machine_text",
            meta,
            self.cfg.action,
            "machine_text",
            detail,
        ))
    }

    fn annotations(&self) -> Vec<(&'static str, Shape)> {
        let mut signals = vec![
            ("refusal", Shape::Int),
            ("indicating", Shape::Int),
            ("template", Shape::Int),
            ("list_items", Shape::Int),
            ("loop_tokens", Shape::Int),
            ("loop_frac", Shape::Float),
        ];
        if self.lm.is_some() {
            let lm = Shape::object(&[
                ("tokens", Shape::Int),
                ("log_likelihood", Shape::Float),
                ("entropy", Shape::Float),
                ("discrepancy", Shape::Float),
            ]);
            signals.push(("lm", lm));
        }
        let found = Shape::object(&[
            ("score", Shape::Float),
            ("model", Shape::Float),
            ("signals", Shape::object(&signals)),
        ]);
        vec![("machine_text", flagged_shape(self.cfg.action, found))]
    }

    fn scores(&self) -> Vec<Score> {
        let t = Score::decimal(self.cfg.threshold);
        vec![Score::unit("machine_text", "score", t, Flags::AtOrAbove)]
    }

    fn describe(&self) -> String {
        format!(
            "model {}, {} phrases, threshold {}, fields {:?}, weights refusal {} indicating {} template {} loop {}, action {:?}",
            self.cfg
                .model
                .as_ref()
                .map_or("none".to_string(), |p| p.display().to_string()),
            self.phrases.as_ref().map_or(0, |l| l.len()),
            self.cfg.threshold,
            self.cfg.fields,
            self.cfg.refusal_weight,
            self.cfg.indicating_weight,
            self.cfg.template_weight,
            self.cfg.loop_weight,
            self.cfg.action
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::testing::{build, build_in, run, try_build};

    #[test]
    fn refusals_and_self_references_are_found() {
        for text in [
            "作为一个AI语言模型，我没有个人观点。",
            "作为一款人工智能助手，我建议你咨询医生。",
            "我是由OpenAI训练的大型语言模型。",
            "我是ChatGPT，一个由OpenAI训练的大型语言模型。",
            "作为一个负责任的AI助手，我鼓励大家以和平的方式解决问题。",
            "作为一个人工智能，我无法真正理解幽默。",
            "很抱歉，我无法回答这个问题。",
            "As an AI language model, I don't have personal opinions.",
            "I'm sorry, but I cannot help with that.",
            "ＡＳ ＡＮ ＡＩ, I cannot browse the internet.",
        ] {
            assert!(signals(text, None).refusal >= 1, "{text}");
        }
        for text in [
            "我是一个医生，建议你去医院检查。",
            "我是人工智能专业的学生。",
            "人工智能语言模型是近年的研究热点。",
            "I am sorry to hear that, my friend.",
            "Researchers trained the model at OpenAI's office.",
        ] {
            assert_eq!(signals(text, None).refusal, 0, "{text}");
        }
    }

    #[test]
    fn loops_need_a_long_unit_repeated_three_times() {
        let toks = |s: &str| tokens(s).into_iter().map(str::to_string).collect::<Vec<_>>();
        assert_eq!(
            toks("你好，world 2024年！"),
            ["你", "好", "world", "2024", "年"].map(String::from)
        );
        let looped = format!("开头。{}结尾", "我们一起去公园玩吧。".repeat(5));
        let s = signals(&looped, None);
        assert_eq!(s.loop_tokens, 5 * 9, "five copies of a 9-token unit");
        assert!(s.loop_frac > 0.8);
        // Laughter, short repeats and two copies are not loops.
        assert_eq!(signals("哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈", None).loop_tokens, 0);
        assert_eq!(signals("谢谢谢谢谢谢谢谢", None).loop_tokens, 0);
        assert_eq!(signals("我们一起去公园。我们一起去公园。", None).loop_tokens, 0);
        assert!(
            signals(
                "1. 苹果\n2. 香蕉\n3. 橙子\n4. 苹果\n5. 香蕉\n6. 橙子\n7. 苹果\n8. 香蕉\n9. 橙子",
                None
            )
            .loop_tokens
                > 0
        );
        assert_eq!(
            signals("1. 苹果\n2. 香蕉\n3. 橙子\n4. 葡萄\n5. 西瓜\n6. 桃子", None).loop_tokens,
            0
        );
        assert_eq!(longest_loop(&[]), 0);
    }

    #[test]
    fn template_counts_connectives_and_lists() {
        let s = signals("首先，准备材料。其次，动手。此外，注意安全。总之，很简单。", None);
        assert_eq!((s.template, s.list_items), (4, 0));
        let s = signals("步骤：\n1. 打开\n2. 输入\n3. 保存\n", None);
        assert_eq!((s.template, s.list_items), (1, 3));
        let s = signals("Firstly, read it. Moreover, write. In conclusion, done.", None);
        assert_eq!(s.template, 3);
        assert_eq!(signals("今天天气不错，我们去爬山了。", None).template, 0);
    }

    #[test]
    fn indicating_phrases_count_distinct_hits() {
        let lex = Lexicon::new(Lexicon::parse(
            "我无法回答你的问题\tindicating\nAI language model\n",
            "indicating",
        ))
        .unwrap();
        let s = signals(
            "我无法回答你的问题。我无法回答你的问题。I am an ai language model.",
            Some(&lex),
        );
        assert_eq!(s.indicating, 2);
    }

    #[test]
    fn score_combines_log_odds_and_stage_tags_or_drops() {
        let stage = build("", MachineText::new);
        let (_, p, score) = stage.score("今天天气不错，我们去爬山了，晚上吃了火锅。").unwrap();
        assert_eq!(p, None);
        assert!((score - 0.5).abs() < 1e-9, "no signal, no model: undecided");
        let (s, _, score) = stage.score("作为一个AI语言模型，我无法提供医疗建议。").unwrap();
        assert!(s.refusal >= 1);
        assert!(score > 0.9, "{score}");

        let (v, r) = run(
            &stage,
            json!({"instruction": "作为一个AI语言模型你怎么看", "output": "我觉得挺好的，下次再聊。"}),
        );
        assert_eq!(v, Verdict::Keep, "prompts are not scored by default");
        assert_eq!(r.meta["machine_text"]["signals"]["refusal"], json!(0));

        match run(
            &stage,
            json!({"instruction": "问", "output": "作为一个AI语言模型，我无法回答。"}),
        )
        .0
        {
            Verdict::Drop { reason, detail } => {
                assert_eq!(reason, "machine_text");
                assert!(detail.contains("refusal 2"), "{detail}");
            }
            v => panic!("{v:?}"),
        }
        let stage = build("action = \"tag\"", MachineText::new);
        let (v, r) = run(
            &stage,
            json!({"text": "As an AI language model, I cannot browse."}),
        );
        assert_eq!(
            v,
            Verdict::Tagged {
                reason: "machine_text".into()
            }
        );
        assert_eq!(r.meta["machine_text"]["flag"], json!("machine_text"));
        let (v, r) = run(&stage, json!({"instruction": "只有问题", "output": ""}));
        assert_eq!(v, Verdict::Keep);
        assert_eq!(r.meta["machine_text"]["score"], serde_json::Value::Null);
    }

    #[test]
    fn fields_default_to_responses_and_documents() {
        assert_eq!(MachineTextConfig::default().fields, TextFields::Response);
        let cfg: MachineTextConfig = toml::from_str("fields = \"all\"").unwrap();
        assert_eq!(cfg.fields, TextFields::All);
        // toxicity reads everything by default.
        let tox = crate::stages::toxicity::ToxicityConfig::default();
        assert_eq!(tox.fields, TextFields::All);
    }

    #[test]
    fn rejects_bad_configs() {
        for bad in [
            "action = \"redact\"",
            "threshold = 1.5",
            "phrases = [\"/nonexistent/p.txt\"]",
            "model = \"/nonexistent/m.bin\"",
            "loop_weight = nan",
            "lm_model = \"/nonexistent/model.gguf\"",
            "lm_weight = inf",
        ] {
            assert!(try_build(bad, MachineText::new).is_err(), "{bad}");
        }
        assert!(toml::from_str::<MachineTextConfig>("weights = 1").is_err());
    }

    #[test]
    fn a_language_model_scores_into_signals_and_only_counts_with_a_weight() {
        let dir = tempfile::tempdir().unwrap();
        crate::lm_score::test_model::tiny_folder(dir.path());
        let text = "今天天气不错，我们去爬山了，晚上吃了火锅。";
        let mut scores = Vec::new();
        for weight in [0.0, 2.0] {
            let stage = build_in(
                dir.path(),
                &format!("lm_model = \".\"\nlm_weight = {weight}\nlm_center = -5.0\nlm_max_tokens = 16"),
                MachineText::new,
            );
            let (v, r) = run(&stage, json!({"instruction": "问", "output": text}));
            assert_eq!(v, Verdict::Keep);
            let lm = &r.meta["machine_text"]["signals"]["lm"];
            assert_eq!(lm["tokens"], json!(16));
            let ll = lm["log_likelihood"].as_f64().unwrap();
            assert!(ll < 0.0 && lm["entropy"].as_f64().unwrap() > 0.0);
            assert!(lm["discrepancy"].as_f64().unwrap().is_finite());
            // No fastText model and no signal: the score is sigmoid(weight * (ll - center)).
            let want = 1.0 / (1.0 + (-(weight * (ll + 5.0))).exp());
            let got = r.meta["machine_text"]["score"].as_f64().unwrap();
            assert!((got - want).abs() < 1e-3, "weight {weight}: {got} vs {want}");
            scores.push(got);
        }
        assert_eq!(scores[0], 0.5);
        assert_ne!(scores[1], 0.5);
    }
}
