//! `language`: which language a record is in (zh / en / other, with a
//! confidence), and a filter on it, so a Chinese SFT set does not fill up with
//! Japanese, Russian or garbage.
//!
//! Detection runs on all the record's text (prompt and response) with fenced
//! ```` ``` ```` code blocks left out (code is English-looking in any language).
//! If that is not an allowed language but the prompt side alone (instruction,
//! input, user and system turns) is, the record takes the prompt's language and
//! `meta.language.via = "prompt"`: a translation task (`Translate into Spanish:
//! …`) is an English sample with a Spanish answer, not a Spanish sample.
//!
//! The detector: if CJK ideographs (kana and hangul excluded: Japanese and Korean
//! use them) are >= 30% of the "letter tokens" (each ideograph is one, each run
//! of Latin/other letters is one word), the text is `zh`, with confidence
//! `0.5 + share / 2`. Counting words rather than letters keeps Chinese math and
//! SQL answers (`令 u = x³，v = ln x`) Chinese; whatlang is unreliable on short
//! text and on Chinese mixed with code or English terms, while this share is not.
//! Otherwise `whatlang` (0.18) decides: `Cmn` -> `zh`, `Eng` -> `en`, anything
//! else `other`; its confidence is reported as is. Text with no letters at all
//! (numbers, symbols) is `other` with confidence 0.
//!
//! ```toml
//! [[stage]]
//! kind = "language"
//! allowed = ["zh", "en"]      # of zh, en, other
//! min_confidence = 0.0        # below this a zh/en detection is not trusted
//! action = "drop"             # or "tag"
//! ```
//! `meta.language = {lang, confidence}` (confidence rounded to 4 decimals). A
//! record whose language is not allowed, or whose confidence is below
//! `min_confidence`, is dropped with reason `language`.

use anyhow::{bail, Result};
use serde::Deserialize;
use serde_json::json;

use crate::record::{Record, Role};
use crate::stage::{flag_or_drop, Action, BuildContext, Stage, Verdict};
use crate::text::is_han;

fn d_allowed() -> Vec<String> {
    vec!["zh".into(), "en".into()]
}

/// `[[stage]] kind = "language"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LanguageConfig {
    #[serde(default = "d_allowed")]
    pub allowed: Vec<String>,
    #[serde(default)]
    pub min_confidence: f64,
    #[serde(default)]
    pub action: Action,
}

/// The built stage.
pub struct Language {
    cfg: LanguageConfig,
}

impl Language {
    /// Check the config and build the stage.
    pub fn new(cfg: LanguageConfig, _cx: &BuildContext) -> Result<Self> {
        if cfg.action == Action::Redact {
            bail!("language: action \"redact\" does not apply; use \"drop\" or \"tag\"");
        }
        for l in &cfg.allowed {
            if !["zh", "en", "other"].contains(&l.as_str()) {
                bail!("language: unknown language `{l}` in allowed; use zh, en or other");
            }
        }
        if !(0.0..=1.0).contains(&cfg.min_confidence) {
            bail!("language: min_confidence must be in 0..1");
        }
        Ok(Language { cfg })
    }
}

/// `text` without its fenced code blocks (all of it when that leaves nothing).
fn without_code(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_fence = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if !in_fence {
            out.push_str(line);
            out.push('\n');
        }
    }
    if out.trim().is_empty() {
        text.to_string()
    } else {
        out
    }
}

/// Detect the language of `text`: (`zh`|`en`|`other`, confidence).
pub fn detect(text: &str) -> (&'static str, f64) {
    let (mut han, mut letters) = (0usize, 0usize);
    let mut in_word = false;
    for c in text.chars() {
        if is_han(c) {
            han += 1;
            letters += 1;
            in_word = false;
        } else if c.is_alphabetic() {
            if !in_word {
                letters += 1;
            }
            in_word = true;
        } else {
            in_word = false;
        }
    }
    if letters == 0 {
        return ("other", 0.0);
    }
    let ratio = han as f64 / letters as f64;
    if ratio >= 0.3 {
        return ("zh", 0.5 + ratio / 2.0);
    }
    match whatlang::detect(text) {
        Some(info) => {
            let lang = match info.lang() {
                whatlang::Lang::Cmn => "zh",
                whatlang::Lang::Eng => "en",
                _ => "other",
            };
            (lang, info.confidence())
        }
        None => ("other", 0.0),
    }
}

impl Stage for Language {
    fn kind(&self) -> &'static str {
        "language"
    }

    fn process(&self, record: &mut Record) -> Result<Verdict> {
        let allowed = |l: &str| self.cfg.allowed.iter().any(|a| a == l);
        let (mut lang, mut conf) = detect(&without_code(&record.full_text()));
        let mut via_prompt = false;
        if !allowed(lang) {
            let prompt: Vec<&str> = record
                .texts()
                .into_iter()
                .filter(|(s, _)| matches!(s.role, Role::Prompt | Role::System))
                .map(|(_, t)| t)
                .collect();
            if !prompt.is_empty() {
                let (pl, pc) = detect(&without_code(&prompt.join("\n\n")));
                if allowed(pl) {
                    (lang, conf, via_prompt) = (pl, pc, true);
                }
            }
        }
        let conf = (conf * 10000.0).round() / 10000.0;
        let mut meta = json!({ "lang": lang, "confidence": conf });
        if via_prompt {
            meta["via"] = json!("prompt");
        }
        let failure = if !allowed(lang) {
            Some(format!("language {lang} not in allowed {:?}", self.cfg.allowed))
        } else if lang != "other" && conf < self.cfg.min_confidence {
            Some(format!(
                "{lang} confidence {conf} < min {}",
                self.cfg.min_confidence
            ))
        } else {
            None
        };
        match failure {
            None => {
                record.annotate("language", meta);
                Ok(Verdict::Keep)
            }
            Some(detail) => Ok(flag_or_drop(
                record,
                "language",
                meta,
                self.cfg.action,
                "language",
                detail,
            )),
        }
    }

    fn describe(&self) -> String {
        format!(
            "allowed {:?}, min_confidence {}, action {:?}",
            self.cfg.allowed, self.cfg.min_confidence, self.cfg.action
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::testing::{build, run, try_build};

    #[test]
    fn short_chinese_and_mixed_code_are_zh() {
        assert_eq!(detect("你好").0, "zh");
        let (l, c) = detect("在 Rust 里用 Vec::with_capacity 预先分配内存");
        assert_eq!(l, "zh");
        assert!(c > 0.5 && c <= 1.0);
        assert_eq!(detect("12345 !!!"), ("other", 0.0));
    }

    #[test]
    fn english_and_other_languages_by_whatlang() {
        let (l, c) = detect("The quick brown fox jumps over the lazy dog near the river bank.");
        assert_eq!(l, "en");
        assert!(c > 0.0, "{c}");
        assert_eq!(
            detect("Быстрая коричневая лиса прыгает через ленивую собаку.").0,
            "other"
        );
        // Japanese: kana dominate, so the CJK rule does not call it Chinese.
        assert_eq!(detect("これはペンです。わたしはがくせいです。").0, "other");
    }

    #[test]
    fn filters_and_tags() {
        let s = build("", Language::new);
        let (v, r) = run(
            &s,
            json!({"text": "Das ist ein deutscher Satz über das Wetter in Berlin heute."}),
        );
        assert!(matches!(v, Verdict::Drop { reason, .. } if reason == "language"));
        assert_eq!(r.meta["language"]["lang"], "other");
        let (v, r) = run(
            &s,
            json!({"instruction": "介绍一下长城。", "output": "长城是中国古代的军事防御工程。"}),
        );
        assert_eq!(v, Verdict::Keep);
        assert_eq!(r.meta["language"]["lang"], "zh");
        let s = build("allowed = [\"zh\"]\naction = \"tag\"", Language::new);
        let (v, r) = run(
            &s,
            json!({"text": "A plain English sentence about the weather today."}),
        );
        assert_eq!(
            v,
            Verdict::Tagged {
                reason: "language".into()
            }
        );
        assert_eq!(r.meta["language"]["flag"], "language");
        let s = build("min_confidence = 0.99", Language::new);
        let (v, _) = run(&s, json!({"text": "ok fine"}));
        assert!(matches!(v, Verdict::Drop { .. }));
        // A translation task: the prompt's language counts.
        let s = build("", Language::new);
        let (v, r) = run(
            &s,
            json!({
                "instruction": "Translate into Spanish: \"Where is the train station?\"",
                "output": "¿Dónde está la estación de tren?"
            }),
        );
        assert_eq!(v, Verdict::Keep, "{:?}", r.meta);
        assert_eq!(r.meta["language"]["via"], "prompt");
        // Chinese math with many one-letter variables, and code, stay Chinese.
        assert_eq!(
            detect("使用乘积法则：令 u = x³，v = ln x，则 u' = 3x²，v' = 1/x。").0,
            "zh"
        );
        assert_eq!(
            without_code("可以这样写：\n```sql\nSELECT a FROM t;\n```\n完成。"),
            "可以这样写：\n完成。\n"
        );
        assert!(try_build("allowed = [\"fr\"]", Language::new).is_err());
    }
}
