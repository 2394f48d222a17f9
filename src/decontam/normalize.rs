//! Text normalization and tokenization for benchmark matching.
//!
//! Both benchmark items and records go through the same steps, so any change
//! applied to one is applied to the other:
//! 1. traditional -> simplified Chinese (`fast2s`, MIT: a character-for-character
//!    table, so offsets do not move). fast2s's own `convert` does three hash
//!    lookups per CJK character and writes a new string; its answers for all
//!    three-byte characters are memoized once in a 128 KiB table, read while
//!    tokenizing (the 15 characters fast2s converts by context still go through
//!    fast2s with their neighbours),
//! 2. NFKC per character (full-width `Ａ．` -> `A.`, `①` -> `1`, ligatures),
//! 3. lower case,
//! 4. tokens: every CJK character (and kana/hangul) is one token; a run of other
//!    letters and digits is one word token; punctuation, symbols, blanks (`____`)
//!    and whitespace only separate tokens,
//! 5. option labels are dropped as tokens everywhere: `a`-`d`, `i`-`iv`, and the
//!    single digits `1`-`4` (`①②③④`, `(1)`), so re-lettered or reformatted
//!    options give the same token stream as the benchmark's `A. … B. …`.
//!
//! Each token carries the byte span it came from in the (t2s-converted) text, so
//! matched n-grams can be highlighted.

use unicode_normalization::UnicodeNormalization;

// `is_cjk`, `simplify` and `t2s_table` are re-exported for `stages::minhash_dedup`
// until it takes them from `crate::text`.
use crate::text::to_simplified;
use crate::text::{is_cjk, simplify, t2s_table};

/// One token: a 64-bit hash and its byte span in the converted text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub hash: u64,
    pub start: u32,
    pub end: u32,
    /// A CJK (or kana/hangul) character rather than a word.
    pub cjk: bool,
}

/// A 64-bit finalizer (splitmix64): spreads a small key over all bits.
#[inline]
pub fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Word hashing state: FNV-1a over the normalized characters of a word.
struct Word {
    hash: u64,
    len: u32,
    start: u32,
    end: u32,
    /// First characters, to recognise option labels (`a`, `iv`, `3`).
    head: [u8; 3],
}

const FNV: u64 = 0x100_0000_01b3;

impl Word {
    fn new() -> Word {
        Word {
            hash: 0xcbf2_9ce4_8422_2325,
            len: 0,
            start: 0,
            end: 0,
            head: [0; 3],
        }
    }

    fn push(&mut self, c: char, start: u32, end: u32) {
        if self.len == 0 {
            self.start = start;
        }
        if (self.len as usize) < 3 {
            self.head[self.len as usize] = if c.is_ascii() { c as u8 } else { 0xff };
        }
        self.len += 1;
        self.end = end;
        self.hash = (self.hash ^ c as u64).wrapping_mul(FNV);
    }

    fn is_label(&self) -> bool {
        match self.len {
            1 => matches!(self.head[0], b'a'..=b'd' | b'i' | b'1'..=b'4'),
            2 => &self.head[..2] == b"ii" || &self.head[..2] == b"iv",
            3 => &self.head == b"iii",
            _ => false,
        }
    }

    fn flush(&mut self, out: &mut Vec<Token>) {
        if self.len > 0 && !self.is_label() {
            out.push(Token {
                hash: mix(self.hash ^ 0x5745_4f52_4400_0000),
                start: self.start,
                end: self.end,
                cjk: false,
            });
        }
        *self = Word::new();
    }
}

/// Append the tokens of `text` to `out` (see module docs). Traditional characters
/// are simplified on the way (as [`to_simplified`]), so the spans point into `text`
/// and into its simplified form alike. ASCII takes a short path.
pub fn tokenize_into(text: &str, out: &mut Vec<Token>) {
    tokenize_impl(text, true, out)
}

/// Tokens the plain way, for checking the fast path: `fast2s::convert` when the
/// text has CJK characters, then tokenizing the converted text.
#[doc(hidden)]
pub fn tokenize_reference(text: &str) -> Vec<Token> {
    let conv = if text.chars().any(is_cjk) {
        std::borrow::Cow::Owned(fast2s::convert(text))
    } else {
        std::borrow::Cow::Borrowed(text)
    };
    let mut out = Vec::new();
    tokenize_impl(&conv, false, &mut out);
    out
}

/// [`tokenize_into`], simplifying traditional characters when `simplify`.
fn tokenize_impl(text: &str, simplify_chars: bool, out: &mut Vec<Token>) {
    let table = t2s_table();
    let bytes = text.as_bytes();
    let mut word = Word::new();
    // The previous original character: fast2s's context (`'0'` at the start).
    let mut prev = '0';
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b < 0x80 {
            if b.is_ascii_alphanumeric() {
                word.push(b.to_ascii_lowercase() as char, i as u32, i as u32 + 1);
            } else {
                word.flush(out);
            }
            prev = b as char;
            i += 1;
            continue;
        }
        let Some(orig) = text[i..].chars().next() else {
            break;
        };
        let len = orig.len_utf8();
        let c = if len == 3 && simplify_chars {
            simplify(table, prev, orig, || text[i + 3..].chars().next().unwrap_or('0'))
        } else {
            orig
        };
        prev = orig;
        push_char(c, i as u32, (i + len) as u32, &mut word, out);
        i += len;
    }
    word.flush(out);
}

/// Tokenize one non-ASCII (already simplified) character spanning `s..e`.
fn push_char(c: char, s: u32, e: u32, word: &mut Word, out: &mut Vec<Token>) {
    if is_cjk(c) && !(0xF900..=0xFAFF).contains(&(c as u32)) {
        word.flush(out);
        out.push(Token {
            hash: mix(c as u64),
            start: s,
            end: e,
            cjk: true,
        });
        return;
    }
    // Common punctuation (CJK `，。、「」《》`, quotes, dashes) only separates
    // words: skip NFKC for it.
    if matches!(c as u32, 0x2010..=0x2027 | 0x2030..=0x205E | 0x3001..=0x3004 | 0x3008..=0x3020 | 0xFF01..=0xFF0F | 0xFF1A..=0xFF20)
    {
        word.flush(out);
        return;
    }
    // Rare characters: NFKC may give several (full-width letters, circled digits).
    for n in std::iter::once(c).nfkc() {
        if is_cjk(n) {
            word.flush(out);
            out.push(Token {
                hash: mix(n as u64),
                start: s,
                end: e,
                cjk: true,
            });
        } else if n.is_alphanumeric() {
            let mut lower = [char::default(); 3];
            let mut k = 0;
            for l in n.to_lowercase() {
                if k < lower.len() {
                    lower[k] = l;
                    k += 1;
                }
            }
            for &l in &lower[..k] {
                word.push(l, s, e);
            }
        } else {
            word.flush(out);
        }
    }
}

/// Tokens of `text`, and its simplified form the spans point into.
pub fn tokenize(text: &str) -> (String, Vec<Token>) {
    let conv = to_simplified(text).into_owned();
    let mut out = Vec::with_capacity(text.len() / 2);
    tokenize_into(text, &mut out);
    (conv, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes(t: &str) -> Vec<u64> {
        tokenize(t).1.iter().map(|t| t.hash).collect()
    }

    #[test]
    fn folds_width_case_punctuation_and_labels() {
        assert_eq!(
            hashes("TCP 协议称为____　Ａ．两次握手　Ｂ．三次握手"),
            hashes("tcp协议称为：\nA. 两次握手\nB) 三次握手")
        );
        assert_eq!(hashes("①香港岛 ②辽东半岛"), hashes("A.香港岛\nB.辽东半岛"));
        assert_eq!(
            hashes("(i) lowering the energy (iv) x"),
            hashes("A. Lowering the ENERGY; D. x")
        );
        assert_ne!(hashes("energy"), hashes("energi"));
        let (_, toks) = tokenize("Hello, 世界!");
        assert_eq!(toks.len(), 3);
        assert_eq!((toks[0].start, toks[0].end, toks[1].cjk), (0, 5, true));
    }

    #[test]
    fn traditional_folds_to_simplified() {
        assert_eq!(hashes("負責路由選擇的層"), hashes("负责路由选择的层"));
    }

    #[test]
    fn tokenize_simplifies_as_fast2s() {
        // The character table itself is tested in `crate::text`.
        for t in [
            "乾隆的乾兒子一邊乾淨利落地擲出了一個乾卦，一邊嘴裡嚼着芒果乾。",
            "企畫 計畫 企劃 計劃 畫圖 畫畫",
            "兒寬 答覆 批覆 回覆 甚夥 瞭望 幺麽 樊於期 看著 苧麻 闔家 鍾書 校讎 讎定 仇讎 乾坤",
            "畫x",
            "x藉口",
        ] {
            assert_eq!(tokenize(t).0, fast2s::convert(t));
            let hashes = |toks: Vec<Token>| toks.iter().map(|t| t.hash).collect::<Vec<_>>();
            assert_eq!(hashes(tokenize(t).1), hashes(tokenize_reference(t)), "{t}");
        }
    }
}
