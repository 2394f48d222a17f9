//! `length`: bounds on how much text a record has, counted in characters
//! (Unicode scalar values: one Chinese character counts one, unlike word counts)
//! and, with a tokenizer, in tokens.
//!
//! Bounds apply to the whole record (`min_chars`/`max_chars`, all text views
//! together), to every prompt-side segment (`prompt`: instruction, input,
//! user turns), to every response-side segment (`response`: output, assistant
//! turns, chosen/rejected), and to the number of turns of a conversation.
//! Leading and trailing whitespace does not count. No bound is set unless the
//! config sets it, so an empty `[[stage]] kind = "length"` only annotates.
//!
//! Token bounds mirror the character bounds (`min_tokens`/`max_tokens` on the whole
//! record, `prompt_tokens` / `response_tokens` on each prompt / response segment, so
//! per turn in a conversation) and need `tokenizer`: a Hugging Face `tokenizer.json`
//! (the one of the model to be fine-tuned, so that "fits the context" means what it
//! says), read with the `tokenizers` crate; special tokens are not added. The record
//! total is the sum over its segments.
//!
//! ```toml
//! [[stage]]
//! kind = "length"
//! min_chars = 20                         # whole record
//! max_chars = 20000
//! prompt = { min = 2, max = 4000 }       # each prompt segment
//! response = { min = 5, max = 8000 }     # each response segment
//! turns = { max = 40 }                   # conversation turns
//! tokenizer = "models/tokenizer.json"    # optional; needed by the *_tokens bounds
//! max_tokens = 4096                      # whole record, in tokens
//! prompt_tokens = { max = 2048 }         # each prompt segment (turn)
//! response_tokens = { min = 2, max = 2048 }
//! action = "drop"                        # or "tag"
//! ```
//! `meta.length = {chars, prompt_chars, response_chars, turns}`, plus `tokens,
//! prompt_tokens, response_tokens` with a tokenizer.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use serde::Deserialize;
use serde_json::json;
use tokenizers::Tokenizer;

use crate::record::{Record, Role};
use crate::shape::Shape;
use crate::stage::{flag_or_drop, flagged_shape, Action, BuildContext, Stage, Verdict};

/// An inclusive range; either end may be open.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    pub min: Option<u64>,
    pub max: Option<u64>,
}

impl Bounds {
    fn check(&self, n: u64, what: &str) -> Option<Verdict> {
        self.check_in(n, what, "chars")
    }

    /// Check `n` counted in `unit` (`chars` or `tokens`, for the detail).
    fn check_in(&self, n: u64, what: &str, unit: &str) -> Option<Verdict> {
        if let Some(min) = self.min {
            if n < min {
                return Some(Verdict::drop(
                    "too_short",
                    format!("{what}: {n} {unit} < min {min}"),
                ));
            }
        }
        if let Some(max) = self.max {
            if n > max {
                return Some(Verdict::drop(
                    "too_long",
                    format!("{what}: {n} {unit} > max {max}"),
                ));
            }
        }
        None
    }

    fn is_set(&self) -> bool {
        self.min.is_some() || self.max.is_some()
    }
}

/// `[[stage]] kind = "length"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LengthConfig {
    pub min_chars: Option<u64>,
    pub max_chars: Option<u64>,
    #[serde(default)]
    pub prompt: Bounds,
    #[serde(default)]
    pub response: Bounds,
    #[serde(default)]
    pub turns: Bounds,
    /// A Hugging Face `tokenizer.json`; needed by the token bounds.
    pub tokenizer: Option<PathBuf>,
    pub min_tokens: Option<u64>,
    pub max_tokens: Option<u64>,
    /// Bounds in tokens on each prompt segment.
    #[serde(default)]
    pub prompt_tokens: Bounds,
    /// Bounds in tokens on each response segment.
    #[serde(default)]
    pub response_tokens: Bounds,
    #[serde(default)]
    pub action: Action,
}

/// The built stage.
pub struct Length {
    cfg: LengthConfig,
    /// Loaded once; `Tokenizer::encode` takes `&self`, so all threads share it.
    tokenizer: Option<Tokenizer>,
}

impl Length {
    /// Check the config and build the stage.
    pub fn new(cfg: LengthConfig, cx: &BuildContext) -> Result<Self> {
        if cfg.action == Action::Redact {
            bail!("length: action \"redact\" does not apply; use \"drop\" or \"tag\"");
        }
        for (name, b) in [
            (
                "min_chars/max_chars",
                Bounds {
                    min: cfg.min_chars,
                    max: cfg.max_chars,
                },
            ),
            ("prompt", cfg.prompt),
            ("response", cfg.response),
            ("turns", cfg.turns),
            (
                "min_tokens/max_tokens",
                Bounds {
                    min: cfg.min_tokens,
                    max: cfg.max_tokens,
                },
            ),
            ("prompt_tokens", cfg.prompt_tokens),
            ("response_tokens", cfg.response_tokens),
        ] {
            if let (Some(lo), Some(hi)) = (b.min, b.max) {
                if lo > hi {
                    bail!("length: {name}: min {lo} > max {hi}");
                }
            }
        }
        let token_bounds = cfg.min_tokens.is_some()
            || cfg.max_tokens.is_some()
            || cfg.prompt_tokens.is_set()
            || cfg.response_tokens.is_set();
        let tokenizer = match &cfg.tokenizer {
            Some(p) => {
                let path = cx.resolve(p);
                let t = Tokenizer::from_file(&path)
                    .map_err(|e| anyhow!("length: tokenizer {}: cannot load: {e}", path.display()))?;
                Some(t)
            }
            None if token_bounds => {
                bail!("length: min_tokens/max_tokens/prompt_tokens/response_tokens need `tokenizer` (a tokenizer.json)")
            }
            None => None,
        };
        Ok(Length { cfg, tokenizer })
    }

    /// Tokens of a (trimmed) text, without special tokens.
    fn tokens(&self, tokenizer: &Tokenizer, text: &str, record: &Record, what: &str) -> Result<u64> {
        let enc = tokenizer
            .encode(text.trim(), false)
            .map_err(|e| anyhow!("length: record {}: {what}: cannot tokenize: {e}", record.id))?;
        Ok(enc.len() as u64)
    }
}

fn chars(s: &str) -> u64 {
    s.trim().chars().count() as u64
}

impl Stage for Length {
    fn kind(&self) -> &'static str {
        "length"
    }

    fn process(&self, record: &mut Record) -> Result<Verdict> {
        let texts = record.texts();
        let (mut total, mut prompt, mut response) = (0u64, 0u64, 0u64);
        let (mut total_tok, mut prompt_tok, mut response_tok) = (0u64, 0u64, 0u64);
        let mut failure: Option<Verdict> = None;
        for (seg, text) in &texts {
            let n = chars(text);
            total += n;
            let what = seg.path.to_string();
            let t = match &self.tokenizer {
                Some(tok) => self.tokens(tok, text, record, &what)?,
                None => 0,
            };
            total_tok += t;
            let bounds = match seg.role {
                Role::Prompt => {
                    prompt += n;
                    prompt_tok += t;
                    Some((&self.cfg.prompt, &self.cfg.prompt_tokens))
                }
                Role::Response => {
                    response += n;
                    response_tok += t;
                    Some((&self.cfg.response, &self.cfg.response_tokens))
                }
                Role::System | Role::Document => None,
            };
            if failure.is_none() {
                if let Some((b, bt)) = bounds {
                    failure = b.check(n, &what).or_else(|| bt.check_in(t, &what, "tokens"));
                }
            }
        }
        let turns = texts.iter().filter(|(s, _)| s.turn.is_some()).count() as u64;
        if failure.is_none() {
            let whole = Bounds {
                min: self.cfg.min_chars,
                max: self.cfg.max_chars,
            };
            failure = whole.check(total, "whole record");
        }
        if failure.is_none() {
            let whole = Bounds {
                min: self.cfg.min_tokens,
                max: self.cfg.max_tokens,
            };
            failure = whole.check_in(total_tok, "whole record", "tokens");
        }
        if failure.is_none() && turns > 0 {
            failure = self.cfg.turns.check(turns, "turns").map(|v| match v {
                Verdict::Drop { reason, detail } => Verdict::Drop {
                    reason: if reason == "too_short" {
                        "too_few_turns".into()
                    } else {
                        "too_many_turns".into()
                    },
                    detail: detail.replace(" chars", ""),
                },
                other => other,
            });
        }
        let mut meta = json!({ "chars": total, "prompt_chars": prompt, "response_chars": response });
        if self.tokenizer.is_some() {
            meta["tokens"] = json!(total_tok);
            meta["prompt_tokens"] = json!(prompt_tok);
            meta["response_tokens"] = json!(response_tok);
        }
        if turns > 0 {
            meta["turns"] = json!(turns);
        }
        match (failure, self.cfg.action) {
            (Some(Verdict::Drop { reason, detail }), action) => {
                Ok(flag_or_drop(record, "length", meta, action, &reason, detail))
            }
            (Some(v), _) => {
                record.annotate("length", meta);
                Ok(v)
            }
            (None, _) => {
                record.annotate("length", meta);
                Ok(Verdict::Keep)
            }
        }
    }

    fn annotations(&self) -> Vec<(&'static str, Shape)> {
        let mut fields = vec![
            ("chars", Shape::Int),
            ("prompt_chars", Shape::Int),
            ("response_chars", Shape::Int),
        ];
        if self.tokenizer.is_some() {
            fields.extend([
                ("tokens", Shape::Int),
                ("prompt_tokens", Shape::Int),
                ("response_tokens", Shape::Int),
            ]);
        }
        fields.push(("turns", Shape::Int));
        vec![("length", flagged_shape(self.cfg.action, Shape::object(&fields)))]
    }

    fn describe(&self) -> String {
        let c = &self.cfg;
        let b = |x: Option<u64>| x.map_or("-".to_string(), |v| v.to_string());
        let mut d = format!(
            "chars {}..{}, prompt {}..{}, response {}..{}, turns {}..{}",
            b(c.min_chars),
            b(c.max_chars),
            b(c.prompt.min),
            b(c.prompt.max),
            b(c.response.min),
            b(c.response.max),
            b(c.turns.min),
            b(c.turns.max),
        );
        if let Some(t) = &c.tokenizer {
            d += &format!(
                ", tokenizer {}: tokens {}..{}, prompt {}..{}, response {}..{}",
                t.display(),
                b(c.min_tokens),
                b(c.max_tokens),
                b(c.prompt_tokens.min),
                b(c.prompt_tokens.max),
                b(c.response_tokens.min),
                b(c.response_tokens.max),
            );
        }
        d + &format!(", action {:?}", c.action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::testing::{build, build_in, run, try_build, try_build_in};
    use serde_json::json;

    #[test]
    fn counts_chinese_per_character() {
        let s = build("response = { min = 5 }", Length::new);
        let (v, _) = run(&s, json!({"instruction": "问", "output": "  四个汉字 "}));
        assert_eq!(v, Verdict::drop("too_short", "output: 4 chars < min 5"));
        let (v, r) = run(&s, json!({"instruction": "问", "output": "五个汉字啊"}));
        assert_eq!(v, Verdict::Keep);
        assert_eq!(r.meta["length"]["response_chars"], 5);
    }

    #[test]
    fn bounds_whole_record_turns_and_tags() {
        let s = build("max_chars = 3\naction = \"tag\"", Length::new);
        let (v, r) = run(&s, json!({"text": "abcd"}));
        assert_eq!(
            v,
            Verdict::Tagged {
                reason: "too_long".into()
            }
        );
        assert_eq!(r.meta["length"]["flag"], "too_long");
        let s = build("turns = { min = 3 }", Length::new);
        let (v, _) = run(
            &s,
            json!({"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}),
        );
        assert!(matches!(v, Verdict::Drop { reason, .. } if reason == "too_few_turns"));
    }

    #[test]
    fn rejects_inverted_bounds_and_redact() {
        assert!(try_build("min_chars = 5\nmax_chars = 2", Length::new).is_err());
        assert!(try_build("action = \"redact\"", Length::new).is_err());
    }

    /// A word-level tokenizer.json written by hand: whitespace/punctuation split, 4 known words.
    fn word_level_tokenizer(dir: &std::path::Path) -> std::path::PathBuf {
        let json = json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
            "decoder": null,
            "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "hello": 1, "world": 2, "hi": 3}, "unk_token": "[UNK]"}
        });
        let path = dir.join("tokenizer.json");
        std::fs::write(&path, json.to_string()).unwrap();
        path
    }

    #[test]
    fn token_bounds_per_field_per_turn_and_whole_record() {
        let dir = tempfile::tempdir().unwrap();
        word_level_tokenizer(dir.path());
        let s = build_in(
            dir.path(),
            "tokenizer = \"tokenizer.json\"\nresponse_tokens = { min = 3 }\nprompt_tokens = { max = 4 }\nmax_tokens = 9", Length::new);
        // "hello, world!" = hello , world ! = 4 tokens.
        let (v, r) = run(&s, json!({"instruction": "hi", "output": "hello, world!"}));
        assert_eq!(v, Verdict::Keep);
        let m = &r.meta["length"];
        assert_eq!(
            (
                m["tokens"].as_u64(),
                m["prompt_tokens"].as_u64(),
                m["response_tokens"].as_u64()
            ),
            (Some(5), Some(1), Some(4))
        );
        let (v, _) = run(&s, json!({"instruction": "hi", "output": "hello world"}));
        assert_eq!(v, Verdict::drop("too_short", "output: 2 tokens < min 3"));
        // Per turn: the second user turn has 5 tokens.
        let (v, _) = run(
            &s,
            json!({"conversations": [
            {"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello hello world"},
            {"from": "human", "value": "hi hi hi hi hi"}, {"from": "gpt", "value": "world world world"}]}),
        );
        assert_eq!(
            v,
            Verdict::drop("too_long", "conversations[2].value: 5 tokens > max 4")
        );
        // Whole record: 1 + 4 + 4 + 4 = 13 tokens > 9.
        let (v, _) = run(
            &s,
            json!({"conversations": [
            {"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello hello world world"},
            {"from": "human", "value": "hi hi hi hi"}, {"from": "gpt", "value": "world world world hi"}]}),
        );
        assert_eq!(v, Verdict::drop("too_long", "whole record: 13 tokens > max 9"));
        // Character bounds still come first and still count Chinese per character.
        let s = build_in(
            dir.path(),
            "tokenizer = \"tokenizer.json\"\nresponse = { min = 5 }\nresponse_tokens = { min = 1 }",
            Length::new,
        );
        let (v, _) = run(&s, json!({"instruction": "hi", "output": "四个汉字"}));
        assert_eq!(v, Verdict::drop("too_short", "output: 4 chars < min 5"));
    }

    #[test]
    fn token_bounds_need_a_loadable_tokenizer() {
        let dir = tempfile::tempdir().unwrap();
        let err = try_build_in(dir.path(), "min_tokens = 100", Length::new)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("need `tokenizer`"), "{err}");
        let err = try_build_in(dir.path(), "tokenizer = \"missing.json\"", Length::new)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("missing.json"), "{err}");
        std::fs::write(dir.path().join("bad.json"), "{not json").unwrap();
        assert!(try_build_in(dir.path(), "tokenizer = \"bad.json\"", Length::new).is_err());
        word_level_tokenizer(dir.path());
        assert!(try_build_in(
            dir.path(),
            "tokenizer = \"tokenizer.json\"\nresponse_tokens = { min = 9, max = 2 }",
            Length::new
        )
        .is_err());
        // No tokenizer, no token counts in meta.
        let s = build_in(dir.path(), "", Length::new);
        let (_, r) = run(&s, json!({"text": "hello"}));
        assert!(r.meta["length"].get("tokens").is_none());
    }

    #[test]
    fn trained_byte_level_bpe_counts_tokens() {
        use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
        use tokenizers::models::TrainerWrapper;
        use tokenizers::pre_tokenizers::byte_level::ByteLevel;
        let corpus: Vec<String> = (0..200)
            .map(|i| format!("今天天气很好，我们去公园散步。The weather is nice today, number {i}."))
            .collect();
        let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
            .vocab_size(400)
            .min_frequency(2)
            .show_progress(false)
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build()
            .into();
        let mut tok = Tokenizer::new(BPE::default());
        tok.with_pre_tokenizer(Some(ByteLevel::default()));
        tok.with_decoder(Some(ByteLevel::default()));
        tok.train(&mut trainer, corpus.iter()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        tok.save(dir.path().join("bpe.json"), false).unwrap();

        let s = build_in(
            dir.path(),
            "tokenizer = \"bpe.json\"\nmax_tokens = 6",
            Length::new,
        );
        let seen = "今天天气很好，我们去公园散步。";
        let (v, r) = run(&s, json!({"text": seen}));
        assert_eq!(v, Verdict::Keep);
        let tokens = r.meta["length"]["tokens"].as_u64().unwrap();
        // Trained merges make a seen sentence shorter than its 45 UTF-8 bytes; an
        // unseen one falls back towards one token per byte.
        assert!((1..=6).contains(&tokens), "{tokens}");
        // Unseen: the byte-level prefix space and each character's 3 UTF-8 bytes.
        let (v, _) = run(&s, json!({"text": "鑫淼"}));
        assert_eq!(v, Verdict::drop("too_long", "whole record: 7 tokens > max 6"));
    }
}
