//! Training text: records -> chat turns -> templated token ids with a loss mask.
//!
//! A record's segments become turns (consecutive prompt segments such as Alpaca's
//! `instruction` and `input` are joined; a preference record trains on `chosen`; a
//! plain document is one response). Each turn is rendered through the chat
//! [`Template`] piece by piece, so the loss mask is exact: only response text and the
//! template's closing marker after it count. The same template renders validation
//! data and would render inference prompts.
//!
//! A pretrained model brings its own chat template (Hugging Face Jinja, from
//! `tokenizer_config.json`, `chat_template.jinja` or the GGUF's `tokenizer.chat_template`):
//! [`ChatTemplate`] renders it with minijinja the way `transformers`'
//! `apply_chat_template` does, and finds each answer's trained span by rendering the
//! conversation up to the answer with the generation prompt and up to its end without
//! it: what the second adds to the first is the answer and its closing marker.
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

use crate::config::InputConfig;
use crate::io::InputFormat;
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
            other => bail!(
                "unknown chat template preset `{other}`; expected auto, model, plain, default or chatml"
            ),
        })
    }

    /// Plain text for a pretrained model without a chat template: `User:` / `Assistant:`
    /// lines, each answer closed by the model's end-of-sequence token `eos`.
    pub fn plain(eos: &str) -> Template {
        Template {
            system: "{content}\n\n".into(),
            user: "User: {content}\n\n".into(),
            assistant: format!("Assistant: {{content}}{eos}\n\n"),
            document: format!("{{content}}{eos}\n\n"),
        }
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

/// The text a conversation's train/validation split is decided on: its rendering
/// through the `default` template, so the split is the same whatever template or model
/// trains (the stage decides it per record before any model is loaded).
pub fn split_text(turns: &[(Role, String)]) -> String {
    DEFAULT_PARTS.render(turns)
}

static DEFAULT_PARTS: std::sync::LazyLock<Template> =
    std::sync::LazyLock::new(|| Template::preset("default").expect("the default preset exists"));

/// How conversations become text: four template parts, or a model's own Jinja template.
#[derive(Debug, Clone)]
pub enum ChatFormat {
    Parts(Template),
    Jinja(ChatTemplate),
}

impl ChatFormat {
    /// The pieces of a conversation: (text, trained?) in order.
    pub fn pieces(&self, turns: &[(Role, String)]) -> Result<Vec<(String, bool)>> {
        match self {
            ChatFormat::Parts(t) => Ok(t
                .pieces(turns)
                .into_iter()
                .map(|(s, m)| (s.to_string(), m))
                .collect()),
            ChatFormat::Jinja(j) => j.pieces(turns),
        }
    }

    /// What `finetune.json` records about the format.
    pub fn describe(&self) -> Value {
        match self {
            ChatFormat::Parts(t) => serde_json::to_value(t).unwrap_or(Value::Null),
            ChatFormat::Jinja(j) => serde_json::json!({ "jinja": j.source }),
        }
    }
}

/// A Hugging Face chat template (Jinja), rendered like `transformers`' `apply_chat_template`:
/// `trim_blocks` and `lstrip_blocks` on, `messages`, `add_generation_prompt`, `bos_token`,
/// `eos_token` and `raise_exception` defined, Python string methods available.
#[derive(Clone)]
pub struct ChatTemplate {
    pub source: String,
    env: Arc<minijinja::Environment<'static>>,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source", &self.source)
            .finish()
    }
}

impl ChatTemplate {
    /// Compile `source`; `bos_token` / `eos_token` are the strings the template may write.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<ChatTemplate> {
        let mut env = minijinja::Environment::new();
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .map_err(|e| anyhow!("chat template syntax: {e}"))?,
        );
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| anyhow!("chat template does not compile: {e:#}"))?;
        Ok(ChatTemplate {
            source: source.to_string(),
            env: Arc::new(env),
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        })
    }

    /// The template applied to `turns` (documents count as assistant turns).
    pub fn render(&self, turns: &[(Role, String)], add_generation_prompt: bool) -> Result<String> {
        let messages: Vec<Value> = turns
            .iter()
            .map(|(role, text)| {
                let role = match role {
                    Role::System => "system",
                    Role::Prompt => "user",
                    Role::Response | Role::Document => "assistant",
                };
                serde_json::json!({ "role": role, "content": text })
            })
            .collect();
        let ctx = minijinja::context! {
            messages => minijinja::Value::from(minijinja::value::Serde(&messages)),
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.as_str(),
            eos_token => self.eos_token.as_str(),
        };
        self.env
            .get_template("chat")
            .and_then(|t| t.render(ctx))
            .map_err(|e| anyhow!("chat template: {e:#}"))
    }

    /// Render and mark what is trained: for each answer k, the text that
    /// `render(turns[..=k])` adds to `render(turns[..k], add_generation_prompt)`
    /// (the answer and its end marker). A plain document (no prompt) is its text and
    /// the end-of-sequence token, trained entirely, without the chat template.
    pub fn pieces(&self, turns: &[(Role, String)]) -> Result<Vec<(String, bool)>> {
        if turns.iter().all(|(r, _)| *r == Role::Document) {
            return Ok(turns
                .iter()
                .flat_map(|(_, t)| [(t.clone(), true), (self.eos_token.clone(), true)])
                .filter(|(t, _)| !t.is_empty())
                .collect());
        }
        let full = self.render(turns, false)?;
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for (k, (role, text)) in turns.iter().enumerate() {
            if !matches!(role, Role::Response | Role::Document) {
                continue;
            }
            let upto = self.render(&turns[..=k], false)?;
            if !full.starts_with(&upto) {
                bail!(
                    "chat template: the rendering of turns 1..={} is not a prefix of the whole conversation's; use template = \"plain\" or a preset",
                    k + 1
                );
            }
            let before = self.render(&turns[..k], true)?;
            let start = if upto.starts_with(&before) {
                before.len()
            } else {
                // The template writes something only once an answer exists (a default
                // system prompt before a leading answer): train from the answer's text.
                upto.rfind(text.as_str()).ok_or_else(|| {
                    anyhow!("chat template: turn {} does not appear in its rendering", k + 1)
                })?
            };
            let start = start.max(spans.last().map_or(0, |s| s.1));
            if start < upto.len() {
                spans.push((start, upto.len()));
            }
        }
        let mut out = Vec::new();
        let mut at = 0;
        for (start, end) in spans {
            if start > at {
                out.push((full[at..start].to_string(), false));
            }
            out.push((full[start..end].to_string(), true));
            at = end;
        }
        if at < full.len() {
            out.push((full[at..].to_string(), false));
        }
        Ok(out)
    }
}

/// Tokenize a conversation through the chat format, piece by piece (exact loss mask);
/// `prefix` ids (a BOS the tokenizer itself adds) go first, untrained.
pub fn encode(
    tokenizer: &Tokenizer,
    format: &ChatFormat,
    turns: &[(Role, String)],
    prefix: &[u32],
) -> Result<Example> {
    let mut ex = Example {
        ids: prefix.to_vec(),
        trained: vec![false; prefix.len()],
    };
    for (text, trained) in format.pieces(turns)? {
        let enc = tokenizer
            .encode(text.as_str(), false)
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
        let ex = encode(&tk, &ChatFormat::Parts(t.clone()), &turns, &[]).unwrap();
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

    /// SmolLM2-Instruct's template (ChatML with a default system prompt), as in its GGUF.
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn trained_and_not(pieces: &[(String, bool)]) -> (String, String) {
        let pick = |want: bool| -> String {
            pieces
                .iter()
                .filter(|(_, m)| *m == want)
                .map(|(t, _)| t.as_str())
                .collect()
        };
        (pick(true), pick(false))
    }

    #[test]
    fn jinja_chat_template_trains_each_answer_and_its_end_marker() {
        let t = ChatTemplate::new(SMOLLM2, "<|im_start|>", "<|im_end|>").unwrap();
        let turns = vec![
            (Role::Prompt, "Q1".to_string()),
            (Role::Response, "A1".to_string()),
            (Role::Prompt, "Q2".to_string()),
            (Role::Response, "A2".to_string()),
        ];
        let pieces = t.pieces(&turns).unwrap();
        let whole: String = pieces.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(whole, t.render(&turns, false).unwrap());
        assert!(whole.starts_with("<|im_start|>system\nYou are a helpful AI assistant named SmolLM"));
        let (trained, untrained) = trained_and_not(&pieces);
        assert_eq!(trained, "A1<|im_end|>\nA2<|im_end|>\n");
        assert!(untrained.ends_with("<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n"));
        // Same mask as the chatml preset after the default system prompt.
        let chatml = Template::preset("chatml").unwrap();
        let (preset_trained, _) = trained_and_not(&ChatFormat::Parts(chatml).pieces(&turns).unwrap());
        assert_eq!(trained, preset_trained);
        // A plain document bypasses the template: text + EOS, all trained.
        let doc = t.pieces(&[(Role::Document, "text".into())]).unwrap();
        assert_eq!(
            trained_and_not(&doc),
            ("text<|im_end|>".to_string(), String::new())
        );
    }

    #[test]
    fn jinja_templates_get_hf_helpers_and_errors_are_clear() {
        // Python string methods, bos_token, raise_exception, trim_blocks: as in Llama-style templates.
        let src = "{{ bos_token }}{% for m in messages %}\n{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}\n{% if m['role'] == 'user' %}[INST] {{ m['content'].strip() }} [/INST]{% else %} {{ m['content'] }}{{ eos_token }}{% endif %}\n{% endfor %}";
        let t = ChatTemplate::new(src, "<s>", "</s>").unwrap();
        let turns = vec![
            (Role::Prompt, " hi ".to_string()),
            (Role::Response, "yo".to_string()),
        ];
        let pieces = t.pieces(&turns).unwrap();
        assert_eq!(
            pieces,
            vec![
                ("<s>[INST] hi [/INST]".to_string(), false),
                (" yo</s>".to_string(), true)
            ]
        );
        let err = t
            .pieces(&[(Role::System, "s".into()), (Role::Response, "a".into())])
            .unwrap_err();
        assert!(format!("{err:#}").contains("no system role"), "{err:#}");
        assert!(ChatTemplate::new("{% for %}", "", "").is_err());
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
