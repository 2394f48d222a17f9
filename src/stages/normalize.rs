//! `normalize`: Unicode and whitespace cleanup of every text segment, so later
//! stages (dedup, quality, language) and the trained model see one spelling of
//! the same text.
//!
//! Steps, in this order, each switchable:
//! 1. `remove_control`: C0/C1 control characters other than `\n`, `\t` (and `\r`,
//!    which `whitespace` folds) and the invisible zero-width characters U+200B,
//!    U+2060, U+FEFF (BOM) and U+00AD (soft hyphen) are removed. ZWJ/ZWNJ
//!    (U+200D/U+200C) are kept: emoji sequences and some scripts need them.
//! 2. `nfkc`: Unicode NFKC per character: full-width `Ａ１` -> `A1`, `①` -> `1`,
//!    ligatures, compatibility ideographs. **Decision:** in Chinese text (any
//!    CJK character in the segment; a CJK share of the letters would misjudge
//!    Chinese answers that are mostly code) the full-width punctuation in
//!    U+FF01-FF0F, U+FF1A-FF20, U+FF3B-FF40, U+FF5B-FF65 and the CJK symbols
//!    and punctuation block U+3000-303F (ideographic space included) are kept
//!    as they are: NFKC would turn `，！？：；（）` into ASCII, which is wrong
//!    typography for Chinese. Full-width letters and digits are still folded, so
//!    `答案是Ｂ，三次握手` becomes `答案是B，三次握手`. Text that is not Chinese gets
//!    plain NFKC (full-width punctuation -> ASCII).
//! 3. `traditional_to_simplified` (off by default): `fast2s` (MIT), character
//!    for character; only text with CJK characters is converted.
//! 4. `whitespace`: `\r\n` and lone `\r` -> `\n`; trailing spaces and tabs of each
//!    line removed; runs of spaces/tabs after a line's first non-blank character
//!    collapsed to one space; at most one blank line in a row; the text trimmed
//!    at both ends. **Decision:** leading indentation is kept (Markdown nested
//!    lists, code), and lines inside ```` ``` ```` fenced code blocks keep their
//!    inner spacing and blank lines (only trailing blanks and `\r` go).
//!
//! ```toml
//! [[stage]]
//! kind = "normalize"
//! nfkc = true                         # NFKC, keeping Chinese full-width punctuation
//! whitespace = true
//! traditional_to_simplified = false   # fast2s
//! remove_control = true
//! ```
//! A changed record is `Modified` and gets `meta.normalize = {changed: ["nfkc",
//! "whitespace", ...]}` (the steps that changed some segment, in step order); an
//! unchanged record gets no annotation.

use std::borrow::Cow;

use anyhow::Result;
use serde::Deserialize;
use serde_json::json;
use unicode_normalization::UnicodeNormalization;

use crate::record::Record;
use crate::shape::Shape;
use crate::stage::{BuildContext, Stage, Verdict};
use crate::text::{is_cjk, to_simplified};

fn yes() -> bool {
    true
}

/// `[[stage]] kind = "normalize"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NormalizeConfig {
    #[serde(default = "yes")]
    pub nfkc: bool,
    #[serde(default = "yes")]
    pub whitespace: bool,
    #[serde(default)]
    pub traditional_to_simplified: bool,
    #[serde(default = "yes")]
    pub remove_control: bool,
}

impl Default for NormalizeConfig {
    fn default() -> Self {
        NormalizeConfig {
            nfkc: true,
            whitespace: true,
            traditional_to_simplified: false,
            remove_control: true,
        }
    }
}

/// The built stage.
pub struct Normalize {
    cfg: NormalizeConfig,
}

impl Normalize {
    /// Build the stage (every combination of options is valid).
    pub fn new(cfg: NormalizeConfig, _cx: &BuildContext) -> Result<Self> {
        Ok(Normalize { cfg })
    }

    /// Normalize one text; returns the new text and which steps changed it
    /// (bit 0 control, 1 nfkc, 2 t2s, 3 whitespace).
    pub fn normalize(&self, text: &str) -> (String, u8) {
        let (t, bits) = self.normalize_cow(text);
        (t.into_owned(), bits)
    }

    /// [`Normalize::normalize`] without copying text that no step changes: each step
    /// first checks cheaply whether it has anything to do (most SFT text is clean).
    fn normalize_cow<'a>(&self, text: &'a str) -> (Cow<'a, str>, u8) {
        let mut changed = 0u8;
        let mut cur: Cow<'a, str> = Cow::Borrowed(text);
        let ascii = text.is_ascii();
        if self.cfg.remove_control && cur.chars().any(is_removable_control) {
            let t: String = cur.chars().filter(|&c| !is_removable_control(c)).collect();
            changed |= 1;
            cur = Cow::Owned(t);
        }
        // ASCII is NFKC already and holds no CJK.
        if self.cfg.nfkc && !ascii {
            let t = nfkc_keep_cjk_punct(&cur);
            if t != *cur {
                changed |= 2;
                cur = Cow::Owned(t);
            }
        }
        if self.cfg.traditional_to_simplified && !ascii && cur.chars().any(is_cjk) {
            // `Owned` exactly when some character changed.
            if let Cow::Owned(t) = to_simplified(&cur) {
                changed |= 4;
                cur = Cow::Owned(t);
            }
        }
        if self.cfg.whitespace && !whitespace_is_clean(&cur) {
            let t = clean_whitespace(&cur);
            if t != *cur {
                changed |= 8;
                cur = Cow::Owned(t);
            }
        }
        (cur, changed)
    }
}

/// True when [`clean_whitespace`] would certainly return `text` unchanged: no `\r`,
/// no tab, no two spaces in a row, no space before a line break, no two blank lines
/// in a row, nothing blank at either end. (False does not mean it would change it.)
fn whitespace_is_clean(text: &str) -> bool {
    let b = text.as_bytes();
    if b.is_empty() {
        return true;
    }
    if matches!(b[0], b' ' | b'\n' | b'\t') || matches!(b[b.len() - 1], b' ' | b'\n' | b'\t') {
        return false;
    }
    let (mut prev, mut newlines) = (0u8, 0u32);
    for &c in b {
        match c {
            b'\r' | b'\t' => return false,
            b' ' if prev == b' ' => return false,
            b'\n' if prev == b' ' => return false,
            b'\n' => {
                newlines += 1;
                if newlines == 3 {
                    return false;
                }
            }
            _ => {}
        }
        if c != b'\n' {
            newlines = 0;
        }
        prev = c;
    }
    true
}

fn is_removable_control(c: char) -> bool {
    match c {
        '\n' | '\t' | '\r' => false,
        '\u{200B}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}' => true,
        c => c.is_control(),
    }
}

/// Full-width and CJK punctuation that Chinese text keeps through NFKC.
fn is_kept_cjk_punct(c: char) -> bool {
    matches!(c as u32,
        0xFF01..=0xFF0F | 0xFF1A..=0xFF20 | 0xFF3B..=0xFF40 | 0xFF5B..=0xFF65 | 0x3000..=0x303F)
}

/// NFKC, except that Chinese text keeps its full-width punctuation (module docs).
pub fn nfkc_keep_cjk_punct(text: &str) -> String {
    if unicode_normalization::is_nfkc_quick(text.chars()) == unicode_normalization::IsNormalized::Yes {
        return text.to_string();
    }
    if !text.chars().any(is_cjk) {
        return text.nfkc().collect();
    }
    let mut out = String::with_capacity(text.len());
    let mut run_start = 0;
    for (i, c) in text.char_indices() {
        if is_kept_cjk_punct(c) {
            out.extend(text[run_start..i].nfkc());
            out.push(c);
            run_start = i + c.len_utf8();
        }
    }
    out.extend(text[run_start..].nfkc());
    out
}

/// Whitespace cleanup (module docs, step 4).
pub fn clean_whitespace(text: &str) -> String {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = String::with_capacity(text.len());
    let mut in_fence = false;
    let mut blank_run = 0usize;
    for line in text.split('\n') {
        let line = line.trim_end_matches([' ', '\t']);
        let fence = line.trim_start().starts_with("```");
        if in_fence && !fence {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        if fence {
            in_fence = !in_fence;
        }
        if line.is_empty() {
            blank_run += 1;
            if blank_run > 1 {
                continue;
            }
            out.push('\n');
            continue;
        }
        blank_run = 0;
        let body_at = line.len() - line.trim_start_matches([' ', '\t']).len();
        out.push_str(&line[..body_at]);
        let mut prev_blank = false;
        for c in line[body_at..].chars() {
            let blank = c == ' ' || c == '\t';
            if blank {
                if !prev_blank {
                    out.push(' ');
                }
            } else {
                out.push(c);
            }
            prev_blank = blank;
        }
        out.push('\n');
    }
    // Trim the whole text: blank lines and spaces at both ends.
    let trimmed = out.trim_matches(|c: char| c == '\n' || c == ' ' || c == '\t');
    trimmed.to_string()
}

const STEP_NAMES: [&str; 4] = ["control", "nfkc", "traditional_to_simplified", "whitespace"];

impl Stage for Normalize {
    fn kind(&self) -> &'static str {
        "normalize"
    }

    fn process(&self, record: &mut Record) -> Result<Verdict> {
        let mut changed = 0u8;
        let updates: Vec<_> = record
            .texts()
            .into_iter()
            .filter_map(|(seg, text)| {
                let (new, bits) = self.normalize_cow(text);
                changed |= bits;
                match new {
                    Cow::Owned(t) if bits != 0 && t != text => Some((seg.path, t)),
                    _ => None,
                }
            })
            .collect();
        if updates.is_empty() {
            return Ok(Verdict::Keep);
        }
        for (path, text) in updates {
            record.set_text(&path, text);
        }
        let names: Vec<&str> = STEP_NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| changed & (1 << i) != 0)
            .map(|(_, n)| *n)
            .collect();
        record.annotate("normalize", json!({ "changed": names }));
        Ok(Verdict::Modified)
    }

    fn annotations(&self) -> Vec<(&'static str, Shape)> {
        vec![(
            "normalize",
            Shape::object(&[("changed", Shape::list(Shape::Str))]),
        )]
    }

    fn describe(&self) -> String {
        let c = &self.cfg;
        format!(
            "nfkc {}, whitespace {}, traditional_to_simplified {}, remove_control {}",
            c.nfkc, c.whitespace, c.traditional_to_simplified, c.remove_control
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::testing::{build, run};
    use serde_json::json;

    #[test]
    fn nfkc_folds_fullwidth_letters_but_keeps_chinese_punctuation() {
        let s = build("", Normalize::new);
        let (t, bits) = s.normalize("答案是Ｂ，三次握手！（见①）");
        assert_eq!(t, "答案是B，三次握手！（见1）");
        assert_eq!(bits, 2);
        // English text gets plain NFKC: full-width punctuation becomes ASCII.
        assert_eq!(s.normalize("Ｈｅｌｌｏ，ｗｏｒｌｄ！").0, "Hello,world!");
        // Already normal text is untouched.
        assert_eq!(s.normalize("你好，世界。").1, 0);
    }

    #[test]
    fn whitespace_collapses_trims_and_keeps_code() {
        let s = build("", Normalize::new);
        let (t, bits) = s.normalize("  第一行   有  空格\t\t \r\n\r\n\r\n\n第二行  \n");
        assert_eq!(t, "第一行 有 空格\n\n第二行");
        assert_eq!(bits, 8);
        let code = "下面是代码：\n```python\ndef f():\n    x  =  1\n\n\n    return x\n```\n  - 缩进列表";
        assert_eq!(s.normalize(code).0, code);
    }

    #[test]
    fn control_and_zero_width_removed_newline_and_tab_kept() {
        let s = build("whitespace = false", Normalize::new);
        let (t, bits) = s.normalize("a\u{200B}b\u{0007}c\u{FEFF}\td\ne\u{200D}f");
        assert_eq!(t, "abc\td\ne\u{200D}f");
        assert_eq!(bits, 1);
        let off = build(
            "remove_control = false\nwhitespace = false\nnfkc = false",
            Normalize::new,
        );
        assert_eq!(off.normalize("a\u{200B}b").1, 0);
    }

    #[test]
    fn traditional_to_simplified_is_opt_in() {
        assert_eq!(build("", Normalize::new).normalize("為什麼東部多雨").1, 0);
        let s = build("traditional_to_simplified = true", Normalize::new);
        assert_eq!(s.normalize("為什麼東部多雨").0, "为什么东部多雨");
    }

    #[test]
    fn record_segments_rewritten_and_changes_listed() {
        let s = build("traditional_to_simplified = true", Normalize::new);
        let (v, r) = run(
            &s,
            json!({
                "conversations": [{"from": "human", "value": "問題  Ａ"}, {"from": "gpt", "value": "好的。"}]
            }),
        );
        assert_eq!(v, Verdict::Modified);
        assert_eq!(r.fields["conversations"][0]["value"], "问题 A");
        assert_eq!(r.fields["conversations"][1]["value"], "好的。");
        assert_eq!(
            r.meta["normalize"]["changed"],
            json!(["nfkc", "traditional_to_simplified", "whitespace"])
        );
        let (v, r) = run(&s, json!({"text": "干净的文本。"}));
        assert_eq!(v, Verdict::Keep);
        assert!(r.meta.get("normalize").is_none());
    }
}
