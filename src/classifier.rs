//! Text classifiers: a thin wrapper over the pure-Rust `fasttext` crate (0.8.0,
//! pinned: it reads and writes the C++ fastText `.bin` format).
//!
//! What it does: read labelled JSONL or CSV, turn each text into fastText input,
//! train a supervised model (softmax, seeded, one thread, so the `.bin` is the
//! same bytes on every run), optionally quantize it, and score texts as
//! P(label). `curate train-classifier` and the `toxicity` stage use it; the
//! machine-text detector will too.
//!
//! Why the tokenization: fastText splits on whitespace, and Chinese has none, so a
//! whole Chinese sentence would be one "word". With `char_split` (the default
//! everywhere in curate) each CJK character becomes its own token, runs of ASCII
//! letters and digits stay whole (lower-cased, full-width folded), punctuation is
//! dropped; word n-grams (`word_ngrams` 2-3) then give character bigrams and
//! trigrams, which is what carries the signal for Chinese. The alternative
//! (no split, fastText character n-grams `minn`/`maxn` inside each whitespace
//! token) was measured on COLD dev and is worse; see docs/benchmarks/toxicity.md.
//!
//! ```toml
//! # used from a stage config, e.g. toxicity:
//! model = "../filters/toxicity/cold_char.bin"
//! ```
//! ```sh
//! curate train-classifier --input train.csv --text-field TEXT --label-field label \
//!     --output model.bin --validation dev.csv
//! ```

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use fasttext::args::{Args, LossName, ModelName};
use fasttext::FastText;

use crate::error::config_error;
use crate::io::csv::parse_csv;
use crate::text::{fold_width_and_case, is_cjk_through_ext_f};

mod fast;

/// Label prefix fastText uses in its training files.
pub const LABEL_PREFIX: &str = "__label__";

/// Input layout of a labelled file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DataFormat {
    /// By extension: `.csv` is CSV, anything else JSON Lines.
    #[default]
    Auto,
    Jsonl,
    Csv,
}

impl DataFormat {
    /// Parse `auto`, `jsonl` or `csv`.
    pub fn parse(s: &str) -> Option<DataFormat> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Some(DataFormat::Auto),
            "jsonl" | "ndjson" => Some(DataFormat::Jsonl),
            "csv" => Some(DataFormat::Csv),
            _ => None,
        }
    }

    fn resolve(self, path: &Path) -> DataFormat {
        match self {
            DataFormat::Auto => {
                if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) {
                    DataFormat::Csv
                } else {
                    DataFormat::Jsonl
                }
            }
            f => f,
        }
    }
}

/// One labelled example.
#[derive(Debug, Clone, PartialEq)]
pub struct Labelled {
    pub text: String,
    pub label: String,
}

fn label_string(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.trim().to_string()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_string()),
        _ => None,
    }
}

/// Read labelled examples. A field missing from the CSV header is a usage error
/// ([`crate::error::ConfigError`]); a record without the field is a runtime error
/// naming the line.
pub fn read_labelled(
    path: &Path,
    format: DataFormat,
    text_field: &str,
    label_field: &str,
) -> Result<Vec<Labelled>> {
    let file = std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut out = Vec::new();
    match format.resolve(path) {
        DataFormat::Csv => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut BufReader::new(file), &mut text)
                .with_context(|| format!("{}: not UTF-8 text", path.display()))?;
            let rows = parse_csv(&text);
            let Some(header) = rows.first() else {
                bail!("{}: empty CSV file", path.display());
            };
            let col = |name: &str| {
                header.iter().position(|h| h.trim() == name).ok_or_else(|| {
                    config_error(format!(
                        "{}: no column `{name}` (columns: {})",
                        path.display(),
                        header.join(", ")
                    ))
                })
            };
            let (tc, lc) = (col(text_field)?, col(label_field)?);
            for (i, row) in rows.iter().enumerate().skip(1) {
                if row.len() == 1 && row[0].trim().is_empty() {
                    continue;
                }
                let (Some(t), Some(l)) = (row.get(tc), row.get(lc)) else {
                    bail!("{}: row {}: too few columns", path.display(), i + 1);
                };
                out.push(Labelled {
                    text: t.clone(),
                    label: l.trim().to_string(),
                });
            }
        }
        _ => {
            for (i, line) in BufReader::new(file).lines().enumerate() {
                let line = line.with_context(|| format!("{}:{}: read error", path.display(), i + 1))?;
                if line.trim().is_empty() {
                    continue;
                }
                let v: serde_json::Value = serde_json::from_str(&line)
                    .with_context(|| format!("{}:{}: invalid JSON", path.display(), i + 1))?;
                let text = v.get(text_field).and_then(|t| t.as_str());
                let label = v.get(label_field).and_then(label_string);
                let (Some(text), Some(label)) = (text, label) else {
                    bail!(
                        "{}:{}: missing string `{text_field}` or scalar `{label_field}`",
                        path.display(),
                        i + 1
                    );
                };
                out.push(Labelled {
                    text: text.to_string(),
                    label,
                });
            }
        }
    }
    Ok(out)
}

/// The fastText input for a text. With `char_split`: CJK characters one token
/// each, runs of other letters/digits one token, punctuation and whitespace dropped.
/// Without: the text with whitespace runs collapsed (fastText splits on them).
pub fn to_fasttext_input(text: &str, char_split: bool) -> String {
    to_fasttext_input_with(text, char_split, false)
}

/// The token a line break becomes with `keep_punct` (fastText would end the example at `\n`).
pub const LINE_BREAK_TOKEN: &str = "¶";

/// [`to_fasttext_input`] with `keep_punct`: in `char_split` mode, every punctuation
/// or symbol character (as written, not width-folded: `，` and `,` differ) becomes a
/// token of its own and each line break becomes [`LINE_BREAK_TOKEN`]. Writing style
/// (full-width punctuation, `~~~`, `！！`, list layout) is a signal for the
/// machine-text detector; toxicity does without it.
pub fn to_fasttext_input_with(text: &str, char_split: bool, keep_punct: bool) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    if !char_split {
        for w in text.split_whitespace() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.extend(w.chars().map(fold_width_and_case));
        }
        return out;
    }
    let mut in_word = false;
    for raw in text.chars() {
        let c = fold_width_and_case(raw);
        if keep_punct
            && (raw == '\n' || !(raw.is_whitespace() || is_cjk_through_ext_f(c) || c.is_alphanumeric()))
        {
            if !out.is_empty() {
                out.push(' ');
            }
            if raw == '\n' {
                out.push_str(LINE_BREAK_TOKEN);
            } else {
                out.push(raw);
            }
            in_word = false;
        } else if is_cjk_through_ext_f(c) {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push(c);
            in_word = false;
        } else if c.is_alphanumeric() {
            if !in_word && !out.is_empty() {
                out.push(' ');
            }
            out.push(c);
            in_word = true;
        } else {
            in_word = false;
        }
    }
    out
}

/// A loaded model. `FastText::predict` takes `&self` and the model holds no
/// interior mutability, so one instance is shared by all worker threads.
///
/// Scoring goes through [`fast`] (the same numbers as `FastText::predict`, bit for
/// bit, several times faster) for the models it handles, else through the crate.
pub struct Classifier {
    model: FastText,
    fast: Option<fast::Predictor>,
    char_split: bool,
    keep_punct: bool,
    nlabels: usize,
    /// Each label as `prob` matches it: without `__label__` (`None`: no such prefix).
    label_keys: Vec<Option<String>>,
}

const _: () = {
    const fn shared<T: Send + Sync>() {}
    shared::<Classifier>()
};

impl Classifier {
    /// Load a `.bin` model (C++ fastText format, quantized or not).
    pub fn load(path: &Path, char_split: bool) -> Result<Classifier> {
        let model = FastText::load_model(path)
            .map_err(|e| anyhow::anyhow!("{}: cannot load fastText model: {e}", path.display()))?;
        let nlabels = model.get_labels().0.len();
        if nlabels == 0 {
            bail!(
                "{}: the model has no labels (not a supervised model)",
                path.display()
            );
        }
        let label_keys = (0..nlabels)
            .map(|i| {
                let l = model.dict().get_label(i as i32).unwrap_or_default();
                l.strip_prefix(LABEL_PREFIX).map(str::to_string)
            })
            .collect();
        Ok(Classifier {
            fast: fast::Predictor::new(&model),
            model,
            char_split,
            keep_punct: false,
            nlabels,
            label_keys,
        })
    }

    /// Feed punctuation tokens as [`to_fasttext_input_with`] does (must match training).
    pub fn with_keep_punct(mut self, keep_punct: bool) -> Classifier {
        self.keep_punct = keep_punct;
        self
    }

    /// The model's labels, without the `__label__` prefix.
    pub fn labels(&self) -> Vec<String> {
        self.model
            .get_labels()
            .0
            .into_iter()
            .map(|l| l.strip_prefix(LABEL_PREFIX).unwrap_or(&l).to_string())
            .collect()
    }

    /// P(`label` | text); 0 for a text without tokens.
    pub fn prob(&self, text: &str, label: &str) -> f32 {
        let Some(fast) = &self.fast else {
            return self.prob_reference(text, label);
        };
        let Some(index) = self.label_keys.iter().position(|k| k.as_deref() == Some(label)) else {
            return 0.0;
        };
        fast.prob(&self.model, text, self.char_split, self.keep_punct, index)
            .map_or(0.0, |p| p.clamp(0.0, 1.0))
    }

    /// P(each label | text), in [`Classifier::labels`] order; all 0 for a text without tokens.
    pub fn probs(&self, text: &str) -> Vec<f32> {
        let Some(fast) = &self.fast else {
            let labels = self.labels();
            return labels.iter().map(|l| self.prob_reference(text, l)).collect();
        };
        fast.probs(&self.model, text, self.char_split, self.keep_punct)
            .map_or_else(
                || vec![0.0; self.nlabels],
                |ps| ps.into_iter().map(|p| p.clamp(0.0, 1.0)).collect(),
            )
    }

    /// [`Classifier::prob`] through the crate's `FastText::predict` (what the fast
    /// path must equal).
    fn prob_reference(&self, text: &str, label: &str) -> f32 {
        let input = to_fasttext_input_with(text, self.char_split, self.keep_punct);
        self.model
            .predict(&input, self.nlabels, 0.0)
            .into_iter()
            .find(|p| p.label.strip_prefix(LABEL_PREFIX) == Some(label))
            .map_or(0.0, |p| p.prob.clamp(0.0, 1.0))
    }
}

/// Hyperparameters of `curate train-classifier`.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub input: PathBuf,
    pub format: DataFormat,
    pub text_field: String,
    pub label_field: String,
    pub output: PathBuf,
    pub epochs: u32,
    pub lr: f64,
    pub dim: u32,
    pub word_ngrams: u32,
    pub minn: u32,
    pub maxn: u32,
    pub bucket: u32,
    pub seed: i32,
    pub char_split: bool,
    /// With `char_split`: punctuation and line breaks as tokens ([`to_fasttext_input_with`]).
    pub keep_punct: bool,
    /// Product-quantize the input matrix (fastText `quantize`, `dsub` 2, `qnorm`).
    pub quantize: bool,
    /// With `quantize`: keep only this many embedding rows (0 = all).
    pub cutoff: usize,
    /// Labelled file scored after training (same fields and format).
    pub validation: Option<PathBuf>,
    /// The label counted as positive in the validation report.
    pub positive: String,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            input: PathBuf::new(),
            format: DataFormat::Auto,
            text_field: "text".into(),
            label_field: "label".into(),
            output: PathBuf::new(),
            epochs: 10,
            lr: 0.5,
            dim: 32,
            word_ngrams: 3,
            minn: 0,
            maxn: 0,
            bucket: 200_000,
            seed: 1,
            char_split: true,
            keep_punct: false,
            quantize: true,
            cutoff: 0,
            validation: None,
            positive: "1".into(),
        }
    }
}

/// Binary-classification counts at one threshold.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Metrics {
    pub tp: u64,
    pub fp: u64,
    pub tn: u64,
    pub fn_: u64,
}

impl Metrics {
    pub fn add(&mut self, predicted: bool, actual: bool) {
        match (predicted, actual) {
            (true, true) => self.tp += 1,
            (true, false) => self.fp += 1,
            (false, false) => self.tn += 1,
            (false, true) => self.fn_ += 1,
        }
    }
    fn ratio(a: u64, b: u64) -> f64 {
        if b == 0 {
            0.0
        } else {
            a as f64 / b as f64
        }
    }
    pub fn precision(&self) -> f64 {
        Self::ratio(self.tp, self.tp + self.fp)
    }
    pub fn recall(&self) -> f64 {
        Self::ratio(self.tp, self.tp + self.fn_)
    }
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
    pub fn accuracy(&self) -> f64 {
        Self::ratio(self.tp + self.tn, self.tp + self.tn + self.fp + self.fn_)
    }
    /// Flagged negatives / all negatives.
    pub fn fp_rate(&self) -> f64 {
        Self::ratio(self.fp, self.fp + self.tn)
    }
}

/// Score labelled examples: P(`positive`) >= `threshold` counts as positive.
pub fn evaluate(model: &Classifier, rows: &[Labelled], positive: &str, threshold: f32) -> Metrics {
    let mut m = Metrics::default();
    for r in rows {
        m.add(model.prob(&r.text, positive) >= threshold, r.label == positive);
    }
    m
}

/// What training produced.
#[derive(Debug, Clone)]
pub struct TrainReport {
    pub examples: usize,
    pub labels: Vec<(String, usize)>,
    pub bytes: u64,
    pub validation: Option<Metrics>,
}

fn check_options(o: &TrainOptions) -> Result<()> {
    let bad = |m: String| Err(config_error(format!("train-classifier: {m}")));
    if o.epochs == 0 || o.dim == 0 {
        return bad("--epochs and --dim must be > 0".into());
    }
    if !(o.lr > 0.0 && o.lr.is_finite()) {
        return bad(format!("--lr must be > 0, got {}", o.lr));
    }
    if o.minn > o.maxn {
        return bad(format!("--minn {} > --maxn {}", o.minn, o.maxn));
    }
    if o.word_ngrams == 0 {
        return bad("--word-ngrams must be >= 1".into());
    }
    if o.bucket == 0 && (o.word_ngrams > 1 || o.maxn > 0) {
        return bad("--bucket must be > 0 with --word-ngrams > 1 or --maxn > 0".into());
    }
    if !o.input.is_file() {
        return bad(format!("input {} is not a file", o.input.display()));
    }
    Ok(())
}

/// Train a supervised model on a labelled file and save it to `opts.output`.
/// Deterministic: the same input and options give the same bytes (one thread,
/// fixed seed, input order kept).
pub fn train(opts: &TrainOptions) -> Result<TrainReport> {
    check_options(opts)?;
    let rows = read_labelled(&opts.input, opts.format, &opts.text_field, &opts.label_field)?;
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    let tmp = {
        let mut name = opts.output.as_os_str().to_owned();
        name.push(".train.tmp");
        PathBuf::from(name)
    };
    {
        let mut w = std::io::BufWriter::new(
            std::fs::File::create(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?,
        );
        for r in &rows {
            let input = to_fasttext_input_with(&r.text, opts.char_split, opts.keep_punct);
            let label: String = r.label.split_whitespace().collect::<Vec<_>>().join("_");
            if input.is_empty() || label.is_empty() {
                continue;
            }
            *counts.entry(label.clone()).or_default() += 1;
            writeln!(w, "{LABEL_PREFIX}{label} {input}")?;
        }
        w.flush()?;
    }
    let result = (|| -> Result<TrainReport> {
        if counts.len() < 2 {
            bail!(
                "{}: need at least two labels, found {:?}",
                opts.input.display(),
                counts.keys().collect::<Vec<_>>()
            );
        }
        let mut args = Args::default();
        args.apply_supervised_defaults();
        args.input = tmp.clone();
        args.output = opts.output.clone();
        args.model = ModelName::Supervised;
        args.loss = LossName::Softmax;
        args.epoch = opts.epochs as i32;
        args.lr = opts.lr;
        args.dim = opts.dim as i32;
        args.word_ngrams = opts.word_ngrams as i32;
        args.minn = opts.minn as i32;
        args.maxn = opts.maxn as i32;
        args.bucket = if opts.word_ngrams <= 1 && opts.maxn == 0 {
            0
        } else {
            opts.bucket as i32
        };
        args.seed = opts.seed;
        args.thread = 1;
        args.verbose = 0;
        let mut model = FastText::train(args.clone()).map_err(|e| anyhow::anyhow!("training failed: {e}"))?;
        if opts.quantize {
            let mut q = args;
            q.dsub = 2;
            q.qnorm = true;
            q.qout = false;
            q.retrain = false;
            q.cutoff = opts.cutoff;
            model
                .quantize(&q)
                .map_err(|e| anyhow::anyhow!("quantization failed: {e}"))?;
        }
        model
            .save_model(&opts.output)
            .map_err(|e| anyhow::anyhow!("{}: cannot save model: {e}", opts.output.display()))?;
        let bytes = std::fs::metadata(&opts.output)?.len();
        let validation = match &opts.validation {
            Some(v) => {
                let rows = read_labelled(v, opts.format, &opts.text_field, &opts.label_field)?;
                let c = Classifier::load(&opts.output, opts.char_split)?.with_keep_punct(opts.keep_punct);
                Some(evaluate(&c, &rows, &opts.positive, 0.5))
            }
            None => None,
        };
        Ok(TrainReport {
            examples: counts.values().sum(),
            labels: counts.into_iter().collect(),
            bytes,
            validation,
        })
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_chinese_per_character_and_keeps_latin_words() {
        assert_eq!(
            to_fasttext_input("你好，World 2024年！", true),
            "你 好 world 2024 年"
        );
        assert_eq!(to_fasttext_input("ＡＢＣ  你好\n吗", false), "abc 你好 吗");
        assert_eq!(to_fasttext_input("，。！", true), "");
        assert_eq!(
            to_fasttext_input_with("你好，World~~\r\n1. 好", true, true),
            "你 好 ， world ~ ~ ¶ 1 . 好"
        );
    }

    /// Texts for the fast-vs-crate comparisons: every string in the SFT samples
    /// (Chinese, English, conversations), plus edge cases.
    fn comparison_texts() -> Vec<String> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data-samples/sft");
        let mut texts: Vec<String> = [
            "",
            "   \n\t ",
            "，。！",
            "</s>",
            "a </s> b 你好",
            "__label__1 __label__0 x",
            "__label__ 好",
            "你好，World 2024年！\r\n1. 好~~ ¶",
            "ＡＢＣ　全角\u{3000}空格\u{b}竖\u{c}页",
            "İstanbul ǅemal Straße ΣΊΣΥΦΟΣ",
            "emoji 😀👍🏽 and \u{200b}zero width",
            "日本語のテキスト、한국어 텍스트",
            "𠀀𠀁 ext-b 𪜀",
            "你个傻逼，滚",
        ]
        .map(String::from)
        .to_vec();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
                    match v {
                        serde_json::Value::String(s) => out.push(s.clone()),
                        serde_json::Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
                        serde_json::Value::Object(o) => o.values().for_each(|v| strings(v, out)),
                        _ => {}
                    }
                }
                strings(&serde_json::from_str(line).unwrap(), &mut texts);
            }
        }
        let joined = texts.join("\n\n");
        texts.push(joined);
        assert!(texts.len() > 200, "{}", texts.len());
        texts
    }

    fn assert_fast_equals_crate(c: &Classifier, texts: &[String], what: &str) {
        assert!(c.fast.is_some(), "{what}: the fast path does not take this model");
        let mut nonzero = 0;
        for label in c.labels().iter().map(String::as_str).chain(["no-such-label"]) {
            for t in texts {
                let (fast, slow) = (c.prob(t, label), c.prob_reference(t, label));
                assert_eq!(
                    fast.to_bits(),
                    slow.to_bits(),
                    "{what}, label {label}: {fast} vs {slow} on {t:?}"
                );
                nonzero += usize::from(fast > 0.0);
            }
        }
        // `probs` gives every label's `prob` at once, in `labels` order.
        for t in texts {
            let all: Vec<u32> = c.labels().iter().map(|l| c.prob(t, l).to_bits()).collect();
            let probs: Vec<u32> = c.probs(t).iter().map(|p| p.to_bits()).collect();
            assert_eq!(probs, all, "{what}: probs on {t:?}");
        }
        assert!(
            nonzero > texts.len() / 2,
            "{what}: {nonzero} non-zero scores of {}",
            texts.len()
        );
    }

    #[test]
    fn fast_path_equals_the_crate_bit_for_bit_on_the_bundled_models() {
        let texts = comparison_texts();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for (model, keep_punct) in [
            ("filters/toxicity/cold_char.bin", false),
            ("filters/machine_text/mgt_char.bin", true),
        ] {
            for (char_split, keep_punct) in [(true, keep_punct), (true, !keep_punct), (false, false)] {
                let c = Classifier::load(&root.join(model), char_split)
                    .unwrap()
                    .with_keep_punct(keep_punct);
                assert_fast_equals_crate(
                    &c,
                    &texts,
                    &format!("{model} char_split {char_split} keep_punct {keep_punct}"),
                );
            }
        }
    }

    #[test]
    fn fast_path_equals_the_crate_on_dense_and_pruned_models() {
        let texts = comparison_texts();
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("train.jsonl");
        let mut lines = String::new();
        for (i, t) in texts.iter().enumerate().filter(|(_, t)| !t.trim().is_empty()) {
            let label = if t.chars().any(|c| c.is_ascii_digit()) {
                1
            } else {
                i % 3
            };
            lines.push_str(&serde_json::json!({"text": t, "label": label}).to_string());
            lines.push('\n');
        }
        std::fs::write(&input, lines).unwrap();
        for (quantize, cutoff) in [(false, 0), (true, 0), (true, 300)] {
            let output = dir.path().join(format!("m-{quantize}-{cutoff}.bin"));
            let opts = TrainOptions {
                input: input.clone(),
                output: output.clone(),
                epochs: 2,
                dim: 21,
                bucket: 5000,
                quantize,
                cutoff,
                ..TrainOptions::default()
            };
            train(&opts).unwrap();
            let c = Classifier::load(&output, true).unwrap();
            assert_eq!(c.labels().len(), 3);
            assert_fast_equals_crate(&c, &texts, &format!("quantize {quantize} cutoff {cutoff}"));
        }
    }

    #[test]
    fn parses_csv_with_quotes_bom_and_newlines() {
        let rows = parse_csv("\u{feff},a,b\r\n1,\"x, \"\"y\"\"\nz\",0\n2,w,1");
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0], vec!["", "a", "b"]);
        assert_eq!(rows[1], vec!["1", "x, \"y\"\nz", "0"]);
        assert_eq!(rows[2], vec!["2", "w", "1"]);
    }

    #[test]
    fn metrics() {
        let mut m = Metrics::default();
        for (p, a) in [(true, true), (true, false), (false, true), (false, false)] {
            m.add(p, a);
        }
        assert_eq!(m.precision(), 0.5);
        assert_eq!(m.recall(), 0.5);
        assert_eq!(m.f1(), 0.5);
        assert_eq!(m.fp_rate(), 0.5);
    }
}
