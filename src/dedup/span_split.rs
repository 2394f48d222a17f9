//! How `span_dedup` cuts a text into spans and hashes them.
//!
//! A span is a line (the text between newlines) or, with [`SpanUnit::Sentence`], a
//! sentence inside a line: it ends after a terminator (Chinese `。！？；…`, English
//! `. ! ? ;` followed by a space or the end of the line), with the closing quotes and
//! brackets after it. Spans are byte ranges of the text, trimmed of surrounding
//! whitespace.
//!
//! The hash is xxh3-64 of the span **normalized**: whitespace and punctuation (ASCII,
//! CJK and full-width) dropped, full-width ASCII folded to half-width, ASCII
//! lower-cased; so `希望对你有帮助！` and `希望对你有帮助!` are one span, and so are
//! `Accept all cookies` and `accept all cookies.`. A span counts only when its
//! normalized **width** reaches `min_width`: a CJK (wide) character counts 2, any
//! other kept character 1, so `谢谢` (4), `Yes` (3) and `1.` (1) never count while
//! `希望对你有帮助` (14) and `Hope this helps` (13) do at the default 10.
//!
//! Text that repeats by nature is never a span (measured on the SFT sets: code lines
//! and one-word headings were most of what was removed besides boilerplate):
//! - lines inside fenced code blocks (```` ``` ```` or `~~~`), and the fences;
//! - a span whose code symbols (`_ = { } ( ) [ ] < > ; # $ & * / \ | ~ ^ %` and
//!   backticks) are [`MAX_CODE_SHARE`] or more of its non-space characters
//!   (`if __name__ == '__main__':`, `.then(r => r.json())`, `&quot;`);
//! - a span without CJK characters of fewer than [`MIN_WORDS`] words
//!   (`Conclusion`, `Ingredients:`, `return False`, `I. Introduction`).

use serde::Deserialize;
use xxhash_rust::xxh3::xxh3_64;

/// Code symbols at or above this share of a span's non-space characters: code, not prose.
pub const MAX_CODE_SHARE: f64 = 0.1;

/// Words a span without CJK characters needs (headings and code are shorter).
pub const MIN_WORDS: usize = 3;

/// What a span is: `unit = "line" | "sentence"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanUnit {
    /// A whole line (CCNet's line dedup; paragraphs in one-line-per-paragraph text).
    #[default]
    Line,
    /// A sentence inside a line (boilerplate appended to an answer's last line).
    Sentence,
}

/// One span of a text: its byte range (trimmed) and normalized hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    pub hash: u64,
}

/// Cuts texts into spans; holds a reusable buffer for the normalized text.
#[derive(Debug, Clone)]
pub struct SpanSplitter {
    unit: SpanUnit,
    min_width: usize,
    buf: String,
}

impl SpanSplitter {
    /// A splitter for `unit`, counting only spans of at least `min_width`.
    pub fn new(unit: SpanUnit, min_width: usize) -> SpanSplitter {
        SpanSplitter {
            unit,
            min_width,
            buf: String::with_capacity(256),
        }
    }

    /// Append the spans of `text` that reach `min_width`, in text order, to `out`.
    pub fn split(&mut self, text: &str, out: &mut Vec<Span>) {
        let mut line_start = 0;
        let mut in_code = false;
        for line in text.split('\n') {
            let line_end = line_start + line.len();
            let fence = {
                let t = line.trim_start();
                t.starts_with("```") || t.starts_with("~~~")
            };
            if fence || in_code {
                in_code ^= fence;
                line_start = line_end + 1;
                continue;
            }
            match self.unit {
                SpanUnit::Line => self.push(text, line_start, line_end, out),
                SpanUnit::Sentence => {
                    let mut s = line_start;
                    for cut in sentence_ends(line) {
                        self.push(text, s, line_start + cut, out);
                        s = line_start + cut;
                    }
                    self.push(text, s, line_end, out);
                }
            }
            line_start = line_end + 1;
        }
    }

    /// Trim `text[start..end]`, normalize and hash it; keep it if wide enough.
    fn push(&mut self, text: &str, start: usize, end: usize, out: &mut Vec<Span>) {
        let raw = &text[start..end];
        let trimmed = raw.trim_start();
        let start = start + (raw.len() - trimmed.len());
        let trimmed = trimmed.trim_end();
        if trimmed.is_empty() {
            return;
        }
        // A span's width is at most its length in bytes: short lines need no look.
        if trimmed.len() < self.min_width {
            return;
        }
        let end = start + trimmed.len();
        let shape = normalize_into(trimmed, &mut self.buf);
        let prose = shape.code_symbols as f64 / shape.chars.max(1) as f64 <= MAX_CODE_SHARE - 1e-9
            && (shape.cjk || shape.words >= MIN_WORDS);
        if shape.width >= self.min_width && prose {
            out.push(Span {
                start,
                end,
                hash: xxh3_64(self.buf.as_bytes()),
            });
        }
    }
}

/// The normalized form of a span (what is hashed), for tests and checks.
pub fn normalized(span: &str) -> String {
    let mut buf = String::new();
    normalize_into(span, &mut buf);
    buf
}

/// What [`normalize_into`] measured of a span.
#[derive(Debug, Default)]
struct SpanShape {
    /// Normalized width (CJK characters count 2).
    width: usize,
    /// Non-space characters, and code symbols among them.
    chars: usize,
    code_symbols: usize,
    /// Runs of letters and digits (non-CJK).
    words: usize,
    cjk: bool,
}

/// Write the normalized `span` into `buf` (cleared first); returns what it measured.
fn normalize_into(span: &str, buf: &mut String) -> SpanShape {
    buf.clear();
    let mut shape = SpanShape::default();
    let mut in_word = false;
    for c in span.chars() {
        // ASCII first: most of the work in English text, one branch per character.
        if c.is_ascii() {
            if c.is_ascii_alphanumeric() {
                shape.words += usize::from(!in_word);
                in_word = true;
                buf.push(c.to_ascii_lowercase());
                shape.width += 1;
                shape.chars += 1;
            } else {
                in_word = false;
                if !c.is_ascii_whitespace() {
                    shape.chars += 1;
                    shape.code_symbols += usize::from(is_code_symbol(c));
                }
            }
            continue;
        }
        if (0xFF01..=0xFF5E).contains(&(c as u32)) {
            // Full-width ASCII -> ASCII letters and digits; its punctuation is dropped.
            shape.chars += 1;
            in_word = false;
            let a = char::from_u32(c as u32 - 0xFEE0).unwrap_or(c);
            if a.is_ascii_alphanumeric() {
                buf.push(a.to_ascii_lowercase());
                shape.width += 1;
            }
            continue;
        }
        if is_wide(c) {
            in_word = false;
            shape.chars += 1;
            if !is_cjk_punct(c) {
                buf.push(c);
                shape.width += 2;
                shape.cjk = true;
            }
            continue;
        }
        if c.is_whitespace() {
            in_word = false;
            continue;
        }
        shape.chars += 1;
        if is_cjk_punct(c) {
            in_word = false;
            continue;
        }
        // Other scripts (accented Latin, Cyrillic, ...): letters make words.
        let letter = c.is_alphanumeric();
        shape.words += usize::from(letter && !in_word);
        in_word = letter;
        buf.push(c);
        shape.width += 1;
    }
    shape
}

/// ASCII symbols that are common in code and markup and rare in prose.
fn is_code_symbol(c: char) -> bool {
    matches!(
        c,
        '_' | '='
            | '{'
            | '}'
            | '('
            | ')'
            | '['
            | ']'
            | '<'
            | '>'
            | ';'
            | '#'
            | '$'
            | '&'
            | '*'
            | '/'
            | '\\'
            | '|'
            | '~'
            | '^'
            | '%'
            | '`'
    )
}

/// CJK and full-width punctuation, general punctuation (U+2010..U+206F), and
/// Latin-1 punctuation and symbols (`©`, `·`, `«`).
fn is_cjk_punct(c: char) -> bool {
    matches!(c as u32, 0x00A1..=0x00BF | 0x00D7 | 0x00F7 | 0x2010..=0x206F | 0x3000..=0x303F | 0xFE30..=0xFE4F | 0xFF01..=0xFF0F | 0xFF1A..=0xFF20 | 0xFF3B..=0xFF40 | 0xFF5B..=0xFF65)
}

/// East Asian wide characters: CJK ideographs, kana, hangul, full-width forms.
fn is_wide(c: char) -> bool {
    matches!(c as u32, 0x1100..=0x115F | 0x2E80..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF | 0xFE30..=0xFE4F | 0xFF00..=0xFF60 | 0xFFE0..=0xFFE6 | 0x20000..=0x3FFFD)
}

/// Sentence terminators that end a sentence wherever they are (CJK).
fn is_cjk_terminator(c: char) -> bool {
    matches!(c, '。' | '！' | '？' | '；' | '…' | '｡')
}

/// Closing quotes and brackets that stay with the sentence before them.
fn is_closer(c: char) -> bool {
    matches!(
        c,
        '"' | '\'' | ')' | ']' | '”' | '’' | '」' | '』' | '）' | '】' | '》' | '〉'
    )
}

/// Byte offsets in `line` where a sentence ends (after its terminators and closers),
/// not counting the end of the line.
fn sentence_ends(line: &str) -> impl Iterator<Item = usize> + '_ {
    let bytes = line.as_bytes();
    let mut it = line.char_indices().peekable();
    std::iter::from_fn(move || {
        while let Some((i, c)) = it.next() {
            let ascii_end = matches!(c, '.' | '!' | '?' | ';');
            if !(ascii_end || is_cjk_terminator(c)) {
                continue;
            }
            let mut end = i + c.len_utf8();
            // Runs of terminators and closers stay together ("！！", "?\"", "。”").
            while let Some(&(j, d)) = it.peek() {
                if is_closer(d) || is_cjk_terminator(d) || matches!(d, '.' | '!' | '?' | ';') {
                    end = j + d.len_utf8();
                    it.next();
                } else {
                    break;
                }
            }
            if end >= bytes.len() {
                return None;
            }
            // ASCII terminators end a sentence only before whitespace ("3.14", "e.g.x").
            let cjk_last = is_cjk_terminator(line[..end].chars().last().unwrap_or(c));
            if ascii_end && !cjk_last && !bytes[end].is_ascii_whitespace() {
                continue;
            }
            return Some(end);
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(text: &str, unit: SpanUnit, min_width: usize) -> Vec<&str> {
        let mut out = Vec::new();
        SpanSplitter::new(unit, min_width).split(text, &mut out);
        out.iter().map(|s| &text[s.start..s.end]).collect()
    }

    #[test]
    fn lines_are_trimmed_and_short_ones_left_out() {
        let text = "  第一行的内容比较长一些  \n1.\nYes\n\n希望对你有帮助！\r\nHope this helps.";
        assert_eq!(
            spans(text, SpanUnit::Line, 10),
            ["第一行的内容比较长一些", "希望对你有帮助！", "Hope this helps."]
        );
    }

    #[test]
    fn sentences_split_on_cjk_and_ascii_terminators() {
        let text = "这是答案的正文部分。希望对你有帮助！\nPi is 3.14 here. It was said: \"hi there!\" Then more text";
        assert_eq!(
            spans(text, SpanUnit::Sentence, 1),
            [
                "这是答案的正文部分。",
                "希望对你有帮助！",
                "Pi is 3.14 here.",
                "It was said: \"hi there!\"",
                "Then more text"
            ]
        );
        assert_eq!(
            spans("他说：“好的。”然后走了。", SpanUnit::Sentence, 1),
            ["他说：“好的。”", "然后走了。"]
        );
    }

    #[test]
    fn normalization_folds_width_case_punctuation_and_space() {
        assert_eq!(normalized("希望对你有帮助！"), normalized("希望对你有帮助!"));
        assert_eq!(
            normalized("Accept ALL cookies."),
            normalized("accept all cookies")
        );
        assert_eq!(normalized("ＡＢＣ１２３"), "abc123");
        assert_eq!(normalized("版权所有 © 2024"), "版权所有2024");
        let mut a = Vec::new();
        let mut s = SpanSplitter::new(SpanUnit::Line, 10);
        s.split("希望对你有帮助！", &mut a);
        s.split("希望 对你有帮助!", &mut a);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].hash, a[1].hash);
        // Widths: CJK characters count 2.
        assert_eq!(
            spans("谢谢你们\n版权所有\nRead more", SpanUnit::Line, 10),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn code_headings_and_fenced_blocks_are_not_spans() {
        let text = "Conclusion\nIngredients and tools:\nif __name__ == '__main__':\n```python\nprint('a long line of code here')\n```\nThe Associated Press\n.then(response => response.json())";
        assert_eq!(
            spans(text, SpanUnit::Line, 10),
            ["Ingredients and tools:", "The Associated Press"]
        );
        // Prose with a parenthesis stays a span.
        assert_eq!(
            spans("长城（The Great Wall）是古代的防御工程", SpanUnit::Line, 10).len(),
            1
        );
        assert_eq!(
            spans(
                "The wall (built long ago) is very long indeed.",
                SpanUnit::Line,
                10
            )
            .len(),
            1
        );
    }
}
