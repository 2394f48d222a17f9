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

#[inline]
pub(crate) fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // kana
        | 0x3400..=0x4DBF    // CJK ext A
        | 0x4E00..=0x9FFF    // CJK unified
        | 0xAC00..=0xD7AF    // hangul
        | 0xF900..=0xFAFF    // compatibility ideographs
        | 0x20000..=0x3134F) // ext B-G
}

/// Characters whose fast2s conversion depends on their neighbours (fast2s 0.3's
/// `T2S_EXCLUDE` and `T2S_SPECIAL_CONVERT_TYPE` keys: `乾隆` stays, `乾淨` -> `干净`).
const T2S_CONTEXT: [char; 15] = [
    '兒', '覆', '夥', '藉', '瞭', '麽', '幺', '於', '乾', '著', '苧', '闔', '鍾', '讎', '畫',
];

/// fast2s's conversion of every three-byte character (U+0800..=U+FFFF, the only
/// ones it converts), memoized in a 128 KiB table: `table[c]` is the simplified
/// character, 0 for the [`T2S_CONTEXT`] characters. fast2s does three hash
/// lookups per CJK character and writes a new `String`; scanning needs neither.
pub(crate) fn t2s_table() -> &'static [u16] {
    static TABLE: std::sync::OnceLock<Vec<u16>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table: Vec<u16> = (0..=0xFFFFu32).map(|c| c as u16).collect();
        let mut one = String::new();
        for c in (0x800..=0xFFFFu32).filter_map(char::from_u32) {
            if T2S_CONTEXT.contains(&c) {
                table[c as usize] = 0;
                continue;
            }
            one.clear();
            one.push(c);
            let s = fast2s::convert(&one).chars().next().unwrap_or(c);
            // fast2s maps three-byte characters to three-byte characters.
            debug_assert!(s.len_utf8() == 3);
            table[c as usize] = s as u32 as u16;
        }
        table
    })
}

/// Simplified form of the three-byte character `c` between the original
/// characters `prev` and `next` (`'0'` at either end of the text, as fast2s does).
#[inline]
pub(crate) fn simplify(table: &[u16], prev: char, c: char, next: impl FnOnce() -> char) -> char {
    match table[c as usize] {
        0 => {
            let three: String = [prev, c, next()].iter().collect();
            fast2s::convert(&three).chars().nth(1).unwrap_or(c)
        }
        s => char::from_u32(s as u32).unwrap_or(c),
    }
}

/// Traditional -> simplified (exactly `fast2s::convert`, from a table); borrowed
/// when nothing changes. Byte offsets never move: fast2s maps three-byte
/// characters to three-byte characters.
pub fn to_simplified(text: &str) -> std::borrow::Cow<'_, str> {
    let table = t2s_table();
    let mut out: Option<String> = None;
    let mut prev = '0';
    for (i, c) in text.char_indices() {
        if c.len_utf8() == 3 {
            let s = simplify(table, prev, c, || text[i + 3..].chars().next().unwrap_or('0'));
            if s != c {
                let o = out.get_or_insert_with(|| text.to_owned());
                // Same length (three bytes), so the rest of `o` stays aligned with `text`.
                o.replace_range(i..i + 3, s.encode_utf8(&mut [0; 4]));
            }
        }
        prev = c;
    }
    match out {
        Some(s) => std::borrow::Cow::Owned(s),
        None => std::borrow::Cow::Borrowed(text),
    }
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
    fn t2s_table_is_fast2s() {
        // Every three-byte character, each between other neighbours.
        let all: String = (0x800..=0xFFFFu32).filter_map(char::from_u32).collect();
        assert_eq!(to_simplified(&all), fast2s::convert(&all));
        // Context rules (fast2s's own test sentences and every context pair).
        for t in [
            "乾隆的乾兒子一邊乾淨利落地擲出了一個乾卦，一邊嘴裡嚼着芒果乾。",
            "企畫 計畫 企劃 計劃 畫圖 畫畫",
            "「藉」其他意义仍然保留的，藉口、憑藉的藉（jiè）简化作借，慰藉、狼藉",
            "兒寬 答覆 批覆 回覆 甚夥 瞭望 幺麽 樊於期 看著 苧麻 闔家 鍾書 校讎 讎定 仇讎 乾坤",
            "乾",
            "畫x",
            "x藉口",
        ] {
            assert_eq!(to_simplified(t), fast2s::convert(t), "{t}");
            assert_eq!(tokenize(t).0, fast2s::convert(t));
        }
        // Only CJK characters change, so a text without them stays as it is.
        let mut one = String::new();
        for c in (0x800..=0xFFFFu32)
            .filter_map(char::from_u32)
            .filter(|c| !is_cjk(*c))
        {
            one.clear();
            one.push(c);
            assert_eq!(to_simplified(&one), one.as_str());
        }
        assert!(matches!(
            to_simplified("plain text"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
