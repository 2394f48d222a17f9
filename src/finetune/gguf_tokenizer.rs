//! A `tokenizers::Tokenizer` rebuilt from the vocabulary stored in a GGUF file's metadata.
//!
//! llama.cpp keeps the tokenizer inside the GGUF (`tokenizer.ggml.*` keys), and
//! vocabulary-only GGUFs (`ggml-vocab-*.gguf` in llama.cpp) hold nothing else. We turn that
//! metadata into a Hugging Face `tokenizer.json` document and let the `tokenizers` crate
//! load it, so one well-kept tokenizer implementation serves both file kinds:
//!
//! | `tokenizer.ggml.model` | becomes |
//! |---|---|
//! | `gpt2` (byte-level BPE: GPT-2, Llama-3, Qwen2, SmolLM2, ...) | BPE with `tokenizer.ggml.merges`, the pre-tokenizer regex named by `tokenizer.ggml.pre`, byte-level mapping |
//! | `llama` (SentencePiece: LLaMA-1/2, Baichuan, Mistral, ...) | BPE with `byte_fallback`, merges derived from the piece scores, `▁` for spaces |
//!
//! SentencePiece in llama.cpp merges the adjacent pair whose joined piece has the highest
//! score; a BPE whose merge ranks follow those scores (what `transformers` does when it
//! converts a slow Llama tokenizer) gives the same result. Token types `3` (control) and `4`
//! (user-defined) become added tokens, control ones special. Other models (`bert`, `t5`,
//! `rwkv`) are refused with a clear error.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use serde_json::{json, Map, Value as Json};
use tokenizers::Tokenizer;

/// GGUF token types (llama.cpp `llama_token_type`).
const TYPE_UNKNOWN: i32 = 2;
const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;

/// Llama-3 (`llama-bpe`) pre-tokenizer regex, as in llama.cpp and Meta's tokenizer.json.
const LLAMA3_REGEX: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2 pre-tokenizer regex: as Llama-3 but one digit per piece.
const QWEN2_REGEX: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A tokenizer read from a GGUF file, with what it was built from.
pub struct GgufTokenizer {
    pub tokenizer: Tokenizer,
    /// `tokenizer.ggml.model` (`gpt2`, `llama`).
    pub model: String,
    /// `tokenizer.ggml.pre`, the pre-tokenizer name of byte-level BPE vocabularies.
    pub pre: Option<String>,
    /// Set when `pre` is not one we know and GPT-2's rules stand in for it.
    pub approximated_pre: bool,
    /// `tokenizer.chat_template`, if present.
    pub chat_template: Option<String>,
}

/// Read only the metadata of a GGUF file (tensor data is not touched) and build its tokenizer.
pub fn read_gguf_tokenizer(path: &Path) -> Result<GgufTokenizer> {
    let mut file = std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let content =
        Content::read(&mut file).map_err(|e| anyhow!("{}: not a readable GGUF file: {e}", path.display()))?;
    tokenizer_from_metadata(&content.metadata).with_context(|| format!("{}: tokenizer", path.display()))
}

/// Build the tokenizer described by GGUF metadata (`tokenizer.ggml.*`).
pub fn tokenizer_from_metadata(md: &HashMap<String, Value>) -> Result<GgufTokenizer> {
    let (doc, approximated_pre) = tokenizer_json(md)?;
    let bytes = serde_json::to_vec(&doc)?;
    let tokenizer = Tokenizer::from_bytes(&bytes).map_err(|e| anyhow!("building the tokenizer: {e}"))?;
    Ok(GgufTokenizer {
        tokenizer,
        model: get_str(md, "tokenizer.ggml.model")?.to_string(),
        pre: opt_str(md, "tokenizer.ggml.pre").map(str::to_string),
        approximated_pre,
        chat_template: opt_str(md, "tokenizer.chat_template").map(str::to_string),
    })
}

/// The Hugging Face `tokenizer.json` document equivalent to GGUF metadata, and whether the
/// pre-tokenizer had to be approximated.
pub fn tokenizer_json(md: &HashMap<String, Value>) -> Result<(Json, bool)> {
    let model = get_str(md, "tokenizer.ggml.model")?;
    let tokens = string_array(md, "tokenizer.ggml.tokens")?;
    if tokens.is_empty() {
        bail!("tokenizer.ggml.tokens is empty");
    }
    let types = match md.get("tokenizer.ggml.token_type") {
        Some(v) => {
            let t = v
                .to_vec()
                .map_err(|e| anyhow!("tokenizer.ggml.token_type: {e}"))?
                .iter()
                .map(|x| x.to_i32().map_err(|e| anyhow!("tokenizer.ggml.token_type: {e}")))
                .collect::<Result<Vec<i32>>>()?;
            if t.len() != tokens.len() {
                bail!(
                    "tokenizer.ggml.token_type has {} entries for {} tokens",
                    t.len(),
                    tokens.len()
                );
            }
            t
        }
        None => vec![1; tokens.len()],
    };
    // First id wins for a piece listed twice (some vocabularies repeat placeholders).
    let mut vocab = Map::new();
    for (id, t) in tokens.iter().enumerate() {
        if !vocab.contains_key(*t) {
            vocab.insert(t.to_string(), json!(id));
        }
    }
    let added: Vec<Json> = tokens
        .iter()
        .zip(&types)
        .enumerate()
        .filter(|(_, (_, ty))| **ty == TYPE_CONTROL || **ty == TYPE_USER_DEFINED)
        .map(|(id, (t, ty))| {
            json!({"id": id, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": *ty == TYPE_USER_DEFINED, "special": *ty == TYPE_CONTROL})
        })
        .collect();
    let bos = opt_u32(md, "tokenizer.ggml.bos_token_id")?;
    let mut approximated = false;
    let mut doc = match model {
        "gpt2" => {
            let merges: Vec<Json> = string_array(md, "tokenizer.ggml.merges")?
                .iter()
                .map(|m| {
                    m.split_once(' ')
                        .map(|(a, b)| json!([a, b]))
                        .ok_or_else(|| anyhow!("tokenizer.ggml.merges: `{m}` is not two pieces"))
                })
                .collect::<Result<_>>()?;
            let pre = opt_str(md, "tokenizer.ggml.pre").unwrap_or("default");
            let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false});
            let split = |re: &str| json!({"type": "Split", "pattern": {"Regex": re}, "behavior": "Isolated", "invert": false});
            let pre_tokenizer = match pre {
                "llama3" | "llama-v3" | "llama-bpe" | "smaug-bpe" | "dbrx" | "falcon3" => {
                    json!({"type": "Sequence", "pretokenizers": [split(LLAMA3_REGEX), byte_level]})
                }
                "qwen2" | "deepseek-r1-qwen" | "megrez" => {
                    json!({"type": "Sequence", "pretokenizers": [split(QWEN2_REGEX), byte_level]})
                }
                // SmolLM / StarCoder: digits one by one, then GPT-2's rules.
                "smollm" | "starcoder" | "refact" | "codeshell" => json!({"type": "Sequence", "pretokenizers": [
                    {"type": "Digits", "individual_digits": true},
                    {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]}),
                other => {
                    approximated = !matches!(other, "default" | "gpt2" | "gpt-2");
                    json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true})
                }
            };
            json!({
                "version": "1.0",
                "normalizer": null,
                "pre_tokenizer": pre_tokenizer,
                "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                          "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                          "ignore_merges": matches!(pre, "llama3" | "llama-v3" | "llama-bpe"),
                          "vocab": vocab, "merges": merges},
                "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            })
        }
        "llama" => {
            let scores = match md.get("tokenizer.ggml.scores") {
                Some(v) => v
                    .to_vec()
                    .map_err(|e| anyhow!("tokenizer.ggml.scores: {e}"))?
                    .iter()
                    .map(|x| x.to_f32().map_err(|e| anyhow!("tokenizer.ggml.scores: {e}")))
                    .collect::<Result<Vec<f32>>>()?,
                None => bail!("tokenizer.ggml.scores is missing (needed for a SentencePiece vocabulary)"),
            };
            if scores.len() != tokens.len() {
                bail!("tokenizer.ggml.scores has {} entries for {} tokens", scores.len(), tokens.len());
            }
            let unk = types
                .iter()
                .position(|t| *t == TYPE_UNKNOWN)
                .map(|i| tokens[i].to_string())
                .or_else(|| opt_u32(md, "tokenizer.ggml.unknown_token_id").ok().flatten().and_then(|i| tokens.get(i as usize)).map(|t| t.to_string()));
            let merges = spm_merges(&tokens, &scores, &types);
            let space_prefix = match md.get("tokenizer.ggml.add_space_prefix") {
                Some(v) => v.to_bool().map_err(|e| anyhow!("tokenizer.ggml.add_space_prefix: {e}"))?,
                None => true,
            };
            let replace = json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"});
            let normalizer = if space_prefix {
                json!({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u{2581}"}, replace]})
            } else {
                replace
            };
            let mut decoders = vec![
                json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}),
                json!({"type": "ByteFallback"}),
                json!({"type": "Fuse"}),
            ];
            if space_prefix {
                decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
            }
            json!({
                "version": "1.0",
                "normalizer": normalizer,
                "pre_tokenizer": null,
                "model": {"type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
                          "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                          "vocab": vocab, "merges": merges},
                "decoder": {"type": "Sequence", "decoders": decoders},
            })
        }
        other => bail!("tokenizer.ggml.model `{other}` is not supported (only `gpt2` byte-level BPE and `llama` SentencePiece)"),
    };
    doc["added_tokens"] = Json::Array(added);
    doc["truncation"] = Json::Null;
    doc["padding"] = Json::Null;
    let default_bos = model == "llama";
    let add_bos = match md.get("tokenizer.ggml.add_bos_token") {
        Some(v) => v
            .to_bool()
            .map_err(|e| anyhow!("tokenizer.ggml.add_bos_token: {e}"))?,
        None => default_bos,
    };
    doc["post_processor"] = match (add_bos, bos.and_then(|b| tokens.get(b as usize).map(|t| (b, *t)))) {
        (true, Some((id, piece))) => json!({
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": piece, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": piece, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": piece, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {piece: {"id": piece, "ids": [id], "tokens": [piece]}},
        }),
        _ => Json::Null,
    };
    Ok((doc, approximated))
}

/// BPE merges equivalent to SentencePiece's score-driven merging: every split of a piece into
/// two pieces of the vocabulary, ranked by the joined piece's score (highest first), ties by ids.
fn spm_merges(tokens: &[&str], scores: &[f32], types: &[i32]) -> Vec<Json> {
    let mut ids: HashMap<&str, usize> = HashMap::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        ids.entry(*t).or_insert(i);
    }
    let mut merges: Vec<(f32, usize, usize, usize)> = Vec::new();
    for (id, piece) in tokens.iter().enumerate() {
        // Control, user-defined and byte tokens are never the result of a merge.
        if !matches!(types[id], 1 | TYPE_UNKNOWN) || ids[piece] != id {
            continue;
        }
        for (cut, _) in piece.char_indices().skip(1) {
            let (l, r) = piece.split_at(cut);
            if let (Some(&li), Some(&ri)) = (ids.get(l), ids.get(r)) {
                merges.push((scores[id], id, li, ri));
            }
        }
    }
    merges.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then(a.1.cmp(&b.1))
            .then(a.2.cmp(&b.2))
            .then(a.3.cmp(&b.3))
    });
    merges
        .into_iter()
        .map(|(_, _, l, r)| json!([tokens[l], tokens[r]]))
        .collect()
}

fn get_str<'a>(md: &'a HashMap<String, Value>, key: &str) -> Result<&'a str> {
    opt_str(md, key).ok_or_else(|| anyhow!("metadata key `{key}` is missing or not a string"))
}

fn opt_str<'a>(md: &'a HashMap<String, Value>, key: &str) -> Option<&'a str> {
    md.get(key).and_then(|v| v.to_string().ok()).map(String::as_str)
}

fn opt_u32(md: &HashMap<String, Value>, key: &str) -> Result<Option<u32>> {
    md.get(key)
        .map(|v| {
            v.to_u32()
                .or_else(|_| v.to_i32().map(|i| i as u32))
                .map_err(|e| anyhow!("`{key}`: {e}"))
        })
        .transpose()
}

fn string_array<'a>(md: &'a HashMap<String, Value>, key: &str) -> Result<Vec<&'a str>> {
    md.get(key)
        .ok_or_else(|| anyhow!("metadata key `{key}` is missing"))?
        .to_vec()
        .map_err(|e| anyhow!("`{key}`: {e}"))?
        .iter()
        .map(|v| {
            v.to_string()
                .map(String::as_str)
                .map_err(|e| anyhow!("`{key}`: {e}"))
        })
        .collect()
}
