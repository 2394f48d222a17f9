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
//! Otherwise, text that is clearly English (12+ words, under 0.5% of its letters
//! outside ASCII, 20%+ of its words English function words that are not words of
//! the other common Latin-script languages) is `en` with confidence 1.0 without
//! asking whatlang, which costs ~100 µs per record whatever its length (it was 20%
//! of the default pipeline's CPU) and on such text says `en`, mostly with
//! confidence 1.0 too; where it did not, it was wrong on short English samples
//! (docs/benchmarks/speed.md: 64 English Alpaca samples it called `other`, none of
//! 668 German/Croatian/Spanish/French/Czech/Portuguese lines taken by this rule).
//! Everything else goes to `whatlang` (0.18): `Cmn` -> `zh`, `Eng` -> `en`, anything
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
use crate::shape::Shape;
use crate::stage::{flag_or_drop, flagged_shape, Action, BuildContext, Flags, Score, Stage, Verdict};
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

/// English function words that are not words of the other common Latin-script
/// languages (so no `a`, `in`, `is`, `was`, `also`, `will`, `of`, `to`, `on`, `no`,
/// `me`, `at`, `for`, `as`, `an`, `die`, `so`: each is a word in Spanish, German,
/// Dutch, French, Italian, Portuguese, Polish or a Scandinavian language).
/// Chosen from linguistic knowledge, not from data; the share that decides is
/// measured in docs/benchmarks/speed.md.
fn is_english_marker(w: &[u8]) -> bool {
    matches!(
        w,
        b"the"
            | b"and"
            | b"that"
            | b"this"
            | b"with"
            | b"which"
            | b"have"
            | b"from"
            | b"they"
            | b"their"
            | b"there"
            | b"these"
            | b"those"
            | b"would"
            | b"should"
            | b"could"
            | b"what"
            | b"when"
            | b"where"
            | b"about"
            | b"into"
            | b"been"
            | b"than"
            | b"your"
            | b"you"
            | b"are"
            | b"were"
            | b"it"
            | b"its"
            | b"not"
            | b"by"
            | b"how"
            | b"who"
            | b"why"
            | b"more"
            | b"some"
            | b"other"
            | b"such"
            | b"each"
            | b"only"
            | b"just"
            | b"because"
            | b"while"
            | b"after"
            | b"before"
            | b"between"
            | b"through"
            | b"during"
            | b"without"
            | b"within"
            | b"does"
            | b"did"
            | b"has"
            | b"them"
            | b"then"
            | b"very"
            | b"can"
            | b"our"
            | b"we"
            | b"my"
            | b"she"
            | b"her"
            | b"his"
            | b"him"
            | b"be"
            | b"or"
            | b"if"
            | b"all"
            | b"any"
            | b"many"
            | b"most"
            | b"make"
            | b"use"
            | b"used"
            | b"using"
            | b"following"
            | b"given"
            | b"provide"
            | b"write"
    )
}

/// What one pass over the characters counts: CJK ideographs, letter tokens (an
/// ideograph or a run of letters), and for the English fast path the ASCII words,
/// the English marker words among them and the non-ASCII letters.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct LetterCounts {
    pub han: usize,
    pub letter_tokens: usize,
    pub ascii_words: usize,
    pub markers: usize,
    pub ascii_letters: usize,
    pub other_letters: usize,
}

/// Count [`LetterCounts`] in one pass.
pub fn letter_counts(text: &str) -> LetterCounts {
    let mut n = LetterCounts::default();
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut word_start: Option<usize> = None;
    let mut word_ascii = true;
    let end_word = |n: &mut LetterCounts, start: Option<usize>, end: usize, ascii: bool| {
        if let (Some(s), true) = (start, ascii) {
            n.ascii_words += 1;
            let w = &bytes[s..end];
            if w.len() <= 9 {
                let mut low = [0u8; 9];
                for (d, c) in low.iter_mut().zip(w) {
                    *d = c.to_ascii_lowercase();
                }
                if is_english_marker(&low[..w.len()]) {
                    n.markers += 1;
                }
            }
        }
    };
    while i < bytes.len() {
        let b = bytes[i];
        if b < 0x80 {
            if b.is_ascii_alphabetic() {
                if word_start.is_none() {
                    word_start = Some(i);
                    word_ascii = true;
                    n.letter_tokens += 1;
                }
                n.ascii_letters += 1;
            } else {
                end_word(&mut n, word_start.take(), i, word_ascii);
            }
            i += 1;
            continue;
        }
        let c = text[i..].chars().next().expect("a char starts here");
        let len = c.len_utf8();
        if is_han(c) {
            end_word(&mut n, word_start.take(), i, word_ascii);
            n.han += 1;
            n.letter_tokens += 1;
        } else if c.is_alphabetic() {
            if word_start.is_none() {
                word_start = Some(i);
                n.letter_tokens += 1;
            }
            word_ascii = false;
            n.other_letters += 1;
        } else {
            end_word(&mut n, word_start.take(), i, word_ascii);
        }
        i += len;
    }
    end_word(&mut n, word_start.take(), bytes.len(), word_ascii);
    n
}

/// English without asking whatlang: enough words, (nearly) no letters outside
/// ASCII, and English function words a large share of them. whatlang costs ~100 µs
/// per record whatever its length; on such text it says `en` with confidence 1.0.
pub fn clearly_english(n: &LetterCounts) -> bool {
    n.ascii_words >= ENGLISH_MIN_WORDS
        && n.other_letters * 200 <= n.ascii_letters
        && n.markers * 100 >= n.ascii_words * ENGLISH_MIN_MARKER_PERCENT
}

/// Words the English fast path needs (shorter text goes to whatlang).
const ENGLISH_MIN_WORDS: usize = 12;
/// Share of marker words, in percent, the English fast path needs.
const ENGLISH_MIN_MARKER_PERCENT: usize = 20;

/// Detect the language of `text`: (`zh`|`en`|`other`, confidence).
pub fn detect(text: &str) -> (&'static str, f64) {
    let counts = letter_counts(text);
    let (han, letters) = (counts.han, counts.letter_tokens);
    if letters == 0 {
        return ("other", 0.0);
    }
    let ratio = han as f64 / letters as f64;
    if ratio >= 0.3 {
        return ("zh", 0.5 + ratio / 2.0);
    }
    if clearly_english(&counts) {
        return ("en", 1.0);
    }
    detect_whatlang(text)
}

/// whatlang's answer: `Cmn` -> `zh`, `Eng` -> `en`, anything else `other`.
pub fn detect_whatlang(text: &str) -> (&'static str, f64) {
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

    fn annotations(&self) -> Vec<(&'static str, Shape)> {
        let found = Shape::object(&[
            ("lang", Shape::Str),
            ("confidence", Shape::Float),
            ("via", Shape::Str),
        ]);
        vec![("language", flagged_shape(self.cfg.action, found))]
    }

    fn scores(&self) -> Vec<Score> {
        vec![Score::unit(
            "language",
            "confidence",
            self.cfg.min_confidence,
            Flags::Below,
        )]
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
    fn english_fast_path_only_for_clear_english() {
        let en = "The museum opened a new wing this year, and visitors who come early can see \
                  the paintings before the crowds arrive from the station.";
        assert!(clearly_english(&letter_counts(en)));
        assert_eq!(detect(en), ("en", 1.0));
        // Other Latin-script languages, and short English, go to whatlang.
        for other in [
            "Das Museum hat in diesem Jahr einen neuen Flügel eröffnet, und wer früh kommt, kann die Bilder sehen.",
            "El museo abrió una nueva ala este año y los visitantes que llegan temprano pueden ver las pinturas.",
            "Le musée a ouvert une nouvelle aile cette année et les visiteurs matinaux peuvent voir les tableaux.",
            "Het museum heeft dit jaar een nieuwe vleugel geopend en wie vroeg komt kan de schilderijen zien.",
            "Muzeum otworzyło w tym roku nowe skrzydło i ci, którzy przyjdą wcześnie, mogą zobaczyć obrazy.",
            "The cat sat on the mat.",
        ] {
            assert!(!clearly_english(&letter_counts(other)), "{other}");
        }
        // The counts match the letter-token rule the CJK share uses.
        let n = letter_counts("在 Rust 里用 Vec::with_capacity 预先分配内存 café");
        assert_eq!((n.han, n.letter_tokens), (9, 14));
        assert_eq!(n.other_letters, 1);
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
