//! Training text: records -> chat turns -> templated token ids with a loss mask.
//!
//! A record's segments become turns (consecutive prompt segments such as Alpaca's
//! `instruction` and `input` are joined; a preference record trains on `chosen`; a
//! plain document is one response). Each turn is rendered through the chat
//! [`Template`] piece by piece, so the loss mask is exact: only response text and the
//! template's closing marker after it count. The same template renders validation
//! data and would render inference prompts.
//!
//! Rows are packed: examples are concatenated (in a seeded shuffled order per epoch)
//! and cut into rows of `seq_len + 1` tokens, so every optimizer step sees exactly
//! `batch_size x seq_len` positions: the token budget of two runs is the same by
//! construction (what `curate compare` needs).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer, TokenizerBuilder};

use crate::config::{InputConfig, InputFormat};
use crate::io::{self, Payload};
use crate::record::{FieldMap, Origin, Record, Role};

/// A chat template: how each turn is written around its text (`{content}` marks the text).
///
/// Presets: `default` (`<|user|>` / `<|assistant|>` / `<|end|>`, for models trained here)
/// and `chatml` (`<|im_start|>user` ... `<|im_end|>`, SmolLM2 and Qwen). Markers of the
/// form `<|...|>` become special tokens of a tokenizer trained here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub system: String,
    pub user: String,
    pub assistant: String,
    /// A plain document (no prompt): trained on entirely.
    pub document: String,
}

impl Template {
    /// A named preset.
    pub fn preset(name: &str) -> Result<Template> {
        let s = |v: &str| v.to_string();
        Ok(match name {
            "default" => Template {
                system: s("<|system|>\n{content}\n"),
                user: s("<|user|>\n{content}\n"),
                assistant: s("<|assistant|>\n{content}<|end|>\n"),
                document: s("{content}<|end|>\n"),
            },
            "chatml" => Template {
                system: s("<|im_start|>system\n{content}<|im_end|>\n"),
                user: s("<|im_start|>user\n{content}<|im_end|>\n"),
                assistant: s("<|im_start|>assistant\n{content}<|im_end|>\n"),
                document: s("{content}<|im_end|>\n"),
            },
            other => bail!("unknown chat template preset `{other}`; expected default or chatml"),
        })
    }

    /// Check every part has exactly one `{content}`.
    pub fn validate(&self) -> Result<()> {
        for (name, t) in [
            ("system", &self.system),
            ("user", &self.user),
            ("assistant", &self.assistant),
            ("document", &self.document),
        ] {
            if t.matches("{content}").count() != 1 {
                bail!("chat template `{name}` must contain `{{content}}` exactly once: {t:?}");
            }
        }
        Ok(())
    }

    /// The `<|...|>` markers used, sorted (special tokens for a tokenizer trained here).
    pub fn markers(&self) -> Vec<String> {
        let mut out = std::collections::BTreeSet::new();
        for t in [&self.system, &self.user, &self.assistant, &self.document] {
            let mut rest = t.as_str();
            while let Some(start) = rest.find("<|") {
                match rest[start..].find("|>") {
                    Some(end) => {
                        out.insert(rest[start..start + end + 2].to_string());
                        rest = &rest[start + end + 2..];
                    }
                    None => break,
                }
            }
        }
        out.into_iter().collect()
    }

    fn part(&self, role: Role) -> &str {
        match role {
            Role::System => &self.system,
            Role::Prompt => &self.user,
            Role::Response => &self.assistant,
            Role::Document => &self.document,
        }
    }

    /// The pieces of a conversation: (text, trained?) in order.
    pub fn pieces<'a>(&'a self, turns: &'a [(Role, String)]) -> Vec<(&'a str, bool)> {
        let mut out = Vec::new();
        for (role, text) in turns {
            let part = self.part(*role);
            let (before, after) = part.split_once("{content}").unwrap_or((part, ""));
            let trained = matches!(role, Role::Response | Role::Document);
            out.push((before, false));
            out.push((text.as_str(), trained));
            out.push((after, trained));
        }
        out.retain(|(t, _)| !t.is_empty());
        out
    }

    /// The whole conversation as one string (tokenizer training, display).
    pub fn render(&self, turns: &[(Role, String)]) -> String {
        self.pieces(turns).iter().map(|(t, _)| *t).collect()
    }
}

/// A record's conversation: (role, text) turns; empty when it has nothing to train on.
pub fn turns_of(record: &Record) -> Vec<(Role, String)> {
    let mut turns: Vec<(Role, String)> = Vec::new();
    for (seg, text) in record.texts() {
        // Preference data: learn the chosen answer only.
        if seg.label == record.map.rejected && record.schema == crate::record::Schema::Preference {
            continue;
        }
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        match turns.last_mut() {
            // Alpaca's instruction + input, or two user turns in a row: one prompt.
            Some((Role::Prompt, prev)) if seg.role == Role::Prompt => {
                prev.push_str("\n\n");
                prev.push_str(text);
            }
            _ => turns.push((seg.role, text.to_string())),
        }
    }
    if !turns
        .iter()
        .any(|(r, _)| matches!(r, Role::Response | Role::Document))
    {
        turns.clear();
    }
    turns
}

/// One training example: token ids and which of them carry loss.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub ids: Vec<u32>,
    pub trained: Vec<bool>,
}

/// Tokenize a conversation through the template, piece by piece (exact loss mask).
pub fn encode(
    tokenizer: &Tokenizer,
    template: &Template,
    turns: &[(Role, String)],
    bos: Option<u32>,
) -> Result<Example> {
    let mut ex = Example {
        ids: Vec::new(),
        trained: Vec::new(),
    };
    if let Some(b) = bos {
        ex.ids.push(b);
        ex.trained.push(false);
    }
    for (text, trained) in template.pieces(turns) {
        let enc = tokenizer
            .encode(text, false)
            .map_err(|e| anyhow!("tokenizer: {e}"))?;
        ex.ids.extend_from_slice(enc.get_ids());
        ex.trained
            .extend(std::iter::repeat_n(trained, enc.get_ids().len()));
    }
    Ok(ex)
}

/// Train a byte-level BPE tokenizer (GPT-2 style) on `texts`; the template markers are
/// special tokens. Deterministic: merges are picked by count, ties by pair order.
pub fn train_tokenizer(texts: &[String], vocab_size: usize, markers: &[String]) -> Result<Tokenizer> {
    let specials: Vec<AddedToken> = markers
        .iter()
        .map(|m| AddedToken::from(m.clone(), true))
        .collect();
    let alphabet: HashSet<char> = ByteLevel::alphabet().into_iter().collect();
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(specials)
        .initial_alphabet(alphabet)
        .build();
    let byte_level = ByteLevel::default().add_prefix_space(false);
    let mut tk = TokenizerBuilder::<BPE, NormalizerWrapper, ByteLevel, ByteLevel, ByteLevel>::new()
        .with_model(BPE::default())
        .with_normalizer(None)
        .with_pre_tokenizer(Some(byte_level))
        .with_post_processor(Some(byte_level))
        .with_decoder(Some(byte_level))
        .build()
        .map_err(|e| anyhow!("tokenizer: {e}"))?;
    tk.train(&mut trainer, texts.iter())
        .map_err(|e| anyhow!("tokenizer training: {e}"))?;
    Ok(Tokenizer::from(tk))
}

/// A packed batch row source: every example's ids concatenated, cut into rows.
#[derive(Debug, Clone)]
pub struct Rows {
    pub seq_len: usize,
    /// Row-major `[rows, seq_len]` inputs, targets and loss mask (1.0 = trained).
    pub inputs: Vec<u32>,
    pub targets: Vec<u32>,
    pub mask: Vec<f32>,
}

impl Rows {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.inputs.len() / self.seq_len
    }

    /// True when there is no row.
    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }

    /// Trained positions in all rows.
    pub fn trained_positions(&self) -> usize {
        self.mask.iter().filter(|&&m| m > 0.0).count()
    }
}

/// Pack `examples` in the given order into rows of `seq_len` (targets shifted by one);
/// the last row is padded with `pad` and mask 0.
pub fn pack<'a>(examples: impl IntoIterator<Item = &'a Example>, seq_len: usize, pad: u32) -> Rows {
    let mut ids = Vec::new();
    let mut trained = Vec::new();
    for ex in examples {
        ids.extend_from_slice(&ex.ids);
        trained.extend_from_slice(&ex.trained);
    }
    let mut rows = Rows {
        seq_len,
        inputs: Vec::new(),
        targets: Vec::new(),
        mask: Vec::new(),
    };
    if ids.len() < 2 {
        return rows;
    }
    // Row r covers inputs ids[r*T .. r*T+T], targets one further.
    let mut start = 0;
    while start + 1 < ids.len() {
        for i in start..start + seq_len {
            let (x, y, m) = if i + 1 < ids.len() {
                (ids[i], ids[i + 1], trained[i + 1])
            } else {
                (pad, pad, false)
            };
            rows.inputs.push(x);
            rows.targets.push(y);
            rows.mask.push(if m { 1.0 } else { 0.0 });
        }
        start += seq_len;
    }
    rows
}

/// Which side of the train/validation split a text falls on: a hash of the text, so
/// exact duplicates always land together and the split never depends on order.
pub fn is_validation(text: &str, fraction: f64, seed: u64) -> bool {
    if fraction <= 0.0 {
        return false;
    }
    let h = xxhash_rust::xxh3::xxh3_64_with_seed(text.as_bytes(), seed);
    (h >> 11) as f64 / (1u64 << 53) as f64 <= fraction
}

/// One record's id and its chat turns.
#[derive(Debug, Clone)]
pub struct Conversation {
    pub id: String,
    pub turns: Vec<(Role, String)>,
}

/// An `[input]` table reading the given files (absolute paths; formats by extension).
pub fn input_for_files(paths: &[PathBuf], fields: &FieldMap) -> InputConfig {
    InputConfig {
        paths: paths.iter().map(|p| p.to_string_lossy().to_string()).collect(),
        format: InputFormat::Auto,
        schema: "auto".into(),
        fields: fields.clone(),
        max_record_bytes: 64 << 20,
    }
}

/// What reading records for training skipped.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReadTally {
    pub records: usize,
    /// Unreadable lines or objects that are not records of any schema.
    pub malformed: usize,
    /// Records with no response or document text (nothing to learn from).
    pub empty: usize,
}

/// Read every record of `paths` (files, any supported format and compression) and
/// return their conversations in input order; skips are counted, never fatal.
pub fn read_conversations(input: &InputConfig, base: &Path) -> Result<(Vec<Conversation>, ReadTally)> {
    let mut tally = ReadTally::default();
    let mut out = Vec::new();
    if input.paths.is_empty() {
        return Ok((out, tally));
    }
    let schema = input.schema()?;
    let fields = &input.fields;
    let sources = io::expand_inputs(&input.paths, base, input.format)?;
    let map = Arc::new(fields.clone());
    for source in &sources {
        let mut reader = io::open_source(source, input.max_record_bytes, fields)
            .with_context(|| format!("{}: cannot read", source.path.display()))?;
        while let Some(item) = reader.next_item() {
            let text = match item.payload {
                Payload::Json(bytes) => String::from_utf8(bytes).ok(),
                Payload::Row(s) => Some(s),
                Payload::Html { .. } | Payload::Malformed { .. } => None,
            };
            let fields = match text.as_deref().map(serde_json::from_str::<Value>) {
                Some(Ok(Value::Object(m))) => m,
                _ => {
                    tally.malformed += 1;
                    continue;
                }
            };
            let origin = Origin {
                source: source.name.clone(),
                line: item.pos.line,
                index: item.pos.index,
            };
            match Record::from_object(fields, schema, map.clone(), origin) {
                Ok(record) => {
                    tally.records += 1;
                    let turns = turns_of(&record);
                    if turns.is_empty() {
                        tally.empty += 1;
                    } else {
                        out.push(Conversation { id: record.id, turns });
                    }
                }
                Err(_) => tally.malformed += 1,
            }
        }
    }
    Ok((out, tally))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::test_record;

    #[test]
    fn alpaca_and_preference_records_become_turns() {
        let r = test_record(serde_json::json!({"instruction":"翻译","input":"hello","output":"你好"}));
        assert_eq!(
            turns_of(&r),
            vec![
                (Role::Prompt, "翻译\n\nhello".to_string()),
                (Role::Response, "你好".to_string())
            ]
        );
        let r = test_record(serde_json::json!({"prompt":"p","chosen":"good","rejected":"bad"}));
        assert_eq!(
            turns_of(&r),
            vec![(Role::Prompt, "p".into()), (Role::Response, "good".into())]
        );
        let r = test_record(serde_json::json!({"instruction":"q","input":"","output":"  "}));
        assert!(turns_of(&r).is_empty(), "no response: nothing to train on");
    }

    #[test]
    fn loss_mask_covers_exactly_the_response_and_end_marker() {
        let t = Template::preset("default").unwrap();
        let turns = vec![
            (Role::Prompt, "问题是什么".to_string()),
            (Role::Response, "答案在这里".to_string()),
        ];
        let texts: Vec<String> = (0..20).map(|_| t.render(&turns)).collect();
        let tk = train_tokenizer(&texts, 300, &t.markers()).unwrap();
        let ex = encode(&tk, &t, &turns, None).unwrap();
        let trained: Vec<u32> = ex
            .ids
            .iter()
            .zip(&ex.trained)
            .filter(|(_, &m)| m)
            .map(|(&i, _)| i)
            .collect();
        let text = tk.decode(&trained, false).unwrap();
        assert_eq!(text, "答案在这里<|end|>\n");
        let untrained: Vec<u32> = ex
            .ids
            .iter()
            .zip(&ex.trained)
            .filter(|(_, &m)| !m)
            .map(|(&i, _)| i)
            .collect();
        assert_eq!(
            tk.decode(&untrained, false).unwrap(),
            "<|user|>\n问题是什么\n<|assistant|>\n"
        );
        // Markers are single special tokens.
        assert!(tk.token_to_id("<|end|>").is_some());
    }

    #[test]
    fn tokenizer_training_is_deterministic() {
        let texts: Vec<String> = (0..200)
            .map(|i| format!("第{i}条：今天天气很好，我们去公园散步。The quick brown fox {i}."))
            .collect();
        let a = train_tokenizer(&texts, 400, &["<|end|>".into()])
            .unwrap()
            .to_string(false)
            .unwrap();
        let b = train_tokenizer(&texts, 400, &["<|end|>".into()])
            .unwrap()
            .to_string(false)
            .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn packing_shifts_targets_and_pads_the_last_row() {
        let ex = Example {
            ids: vec![1, 2, 3, 4, 5],
            trained: vec![false, false, true, true, true],
        };
        let rows = pack([&ex], 3, 0);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows.inputs,
            vec![1, 2, 3, 4, 0, 0],
            "the last id has no target: padded"
        );
        assert_eq!(rows.targets, vec![2, 3, 4, 5, 0, 0]);
        assert_eq!(rows.mask, vec![0.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn split_is_by_content_and_near_the_fraction() {
        let n = (0..10_000)
            .filter(|i| is_validation(&format!("text {i}"), 0.1, 0))
            .count();
        assert!((900..1100).contains(&n), "{n}");
        assert_eq!(is_validation("same", 0.5, 3), is_validation("same", 0.5, 3));
    }
}
