//! `length`: bounds on how much text a record has, counted in characters
//! (Unicode scalar values: one Chinese character counts one, unlike word counts).
//!
//! Bounds apply to the whole record (`min_chars`/`max_chars`, all text views
//! together), to every prompt-side segment (`prompt`: instruction, input,
//! user turns), to every response-side segment (`response`: output, assistant
//! turns, chosen/rejected), and to the number of turns of a conversation.
//! Leading and trailing whitespace does not count. No bound is set unless the
//! config sets it, so an empty `[[stage]] kind = "length"` only annotates.
//!
//! ```toml
//! [[stage]]
//! kind = "length"
//! min_chars = 20                         # whole record
//! max_chars = 20000
//! prompt = { min = 2, max = 4000 }       # each prompt segment
//! response = { min = 5, max = 8000 }     # each response segment
//! turns = { max = 40 }                   # conversation turns
//! action = "drop"                        # or "tag"
//! ```
//! `meta.length = {chars, prompt_chars, response_chars, turns}`.

use anyhow::{bail, Result};
use serde::Deserialize;
use serde_json::json;

use crate::record::{Record, Role};
use crate::stage::{Action, BuildContext, Stage, Verdict};

/// An inclusive range; either end may be open.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    pub min: Option<u64>,
    pub max: Option<u64>,
}

impl Bounds {
    fn check(&self, n: u64, what: &str) -> Option<Verdict> {
        if let Some(min) = self.min {
            if n < min {
                return Some(Verdict::drop(
                    "too_short",
                    format!("{what}: {n} chars < min {min}"),
                ));
            }
        }
        if let Some(max) = self.max {
            if n > max {
                return Some(Verdict::drop(
                    "too_long",
                    format!("{what}: {n} chars > max {max}"),
                ));
            }
        }
        None
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
    #[serde(default)]
    pub action: Action,
}

/// The built stage.
pub struct Length {
    cfg: LengthConfig,
}

impl Length {
    /// Check the config and build the stage.
    pub fn new(cfg: LengthConfig, _cx: &BuildContext) -> Result<Self> {
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
        ] {
            if let (Some(lo), Some(hi)) = (b.min, b.max) {
                if lo > hi {
                    bail!("length: {name}: min {lo} > max {hi}");
                }
            }
        }
        Ok(Length { cfg })
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
        let mut failure: Option<Verdict> = None;
        for (seg, text) in &texts {
            let n = chars(text);
            total += n;
            let bounds = match seg.role {
                Role::Prompt => {
                    prompt += n;
                    Some(&self.cfg.prompt)
                }
                Role::Response => {
                    response += n;
                    Some(&self.cfg.response)
                }
                Role::System | Role::Document => None,
            };
            if failure.is_none() {
                if let Some(b) = bounds {
                    failure = b.check(n, &seg.path.to_string());
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
        if turns > 0 {
            meta["turns"] = json!(turns);
        }
        match (failure, self.cfg.action) {
            (Some(Verdict::Drop { reason, detail }), Action::Tag) => {
                meta["flag"] = json!(reason);
                meta["detail"] = json!(detail);
                record.annotate("length", meta);
                Ok(Verdict::Keep)
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

    fn describe(&self) -> String {
        let c = &self.cfg;
        let b = |x: Option<u64>| x.map_or("-".to_string(), |v| v.to_string());
        format!(
            "chars {}..{}, prompt {}..{}, response {}..{}, turns {}..{}, action {:?}",
            b(c.min_chars),
            b(c.max_chars),
            b(c.prompt.min),
            b(c.prompt.max),
            b(c.response.min),
            b(c.response.max),
            b(c.turns.min),
            b(c.turns.max),
            c.action
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(v: serde_json::Value) -> Record {
        crate::record::test_record(v)
    }

    fn stage(toml_text: &str) -> Length {
        let cfg: LengthConfig = toml::from_str(toml_text).unwrap();
        Length::new(
            cfg,
            &BuildContext {
                config_dir: ".".into(),
            },
        )
        .unwrap()
    }

    #[test]
    fn counts_chinese_per_character() {
        let s = stage("response = { min = 5 }");
        let mut r = rec(serde_json::json!({"instruction": "问", "output": "  四个汉字 "}));
        assert_eq!(
            s.process(&mut r).unwrap(),
            Verdict::drop("too_short", "output: 4 chars < min 5")
        );
        let mut r = rec(serde_json::json!({"instruction": "问", "output": "五个汉字啊"}));
        assert_eq!(s.process(&mut r).unwrap(), Verdict::Keep);
        assert_eq!(r.meta["length"]["response_chars"], 5);
    }

    #[test]
    fn bounds_whole_record_turns_and_tags() {
        let s = stage("max_chars = 3\naction = \"tag\"");
        let mut r = rec(serde_json::json!({"text": "abcd"}));
        assert_eq!(s.process(&mut r).unwrap(), Verdict::Keep);
        assert_eq!(r.meta["length"]["flag"], "too_long");
        let s = stage("turns = { min = 3 }");
        let mut r = rec(
            serde_json::json!({"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}),
        );
        assert!(
            matches!(s.process(&mut r).unwrap(), Verdict::Drop { reason, .. } if reason == "too_few_turns")
        );
    }

    #[test]
    fn rejects_inverted_bounds_and_redact() {
        let cfg: LengthConfig = toml::from_str("min_chars = 5\nmax_chars = 2").unwrap();
        assert!(Length::new(
            cfg,
            &BuildContext {
                config_dir: ".".into()
            }
        )
        .is_err());
        let cfg: LengthConfig = toml::from_str("action = \"redact\"").unwrap();
        assert!(Length::new(
            cfg,
            &BuildContext {
                config_dir: ".".into()
            }
        )
        .is_err());
    }
}
