//! Character classes and foldings shared by the stages, the classifiers and the
//! benchmark matcher: which characters are CJK (one "word" each), full-width ->
//! half-width and case folding, and traditional -> simplified Chinese.
//!
//! Each helper keeps the exact ranges its callers always used: the classifiers'
//! models were trained on their own CJK range ([`is_cjk_through_ext_f`]), so it
//! stays apart from [`is_cjk`].

/// CJK ideographs, kana and hangul: one "character word" each.
#[inline]
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // kana
        | 0x3400..=0x4DBF    // CJK ext A
        | 0x4E00..=0x9FFF    // CJK unified
        | 0xAC00..=0xD7AF    // hangul
        | 0xF900..=0xFAFF    // compatibility ideographs
        | 0x20000..=0x3134F) // ext B-G
}

/// [`is_cjk`] with the supplementary planes only up to U+2FA1F (ext B-F and the
/// compatibility supplement, not ext G): the classifiers' tokenization, which the
/// shipped fastText models were trained with.
#[inline]
pub fn is_cjk_through_ext_f(c: char) -> bool {
    matches!(c as u32,
        0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F
        | 0x3040..=0x30FF | 0xAC00..=0xD7AF)
}

/// Han ideographs only (no kana or hangul), ext A-G and the compatibility block.
#[inline]
pub fn is_han(c: char) -> bool {
    matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x3134F)
}

/// Han ideographs of the Basic Multilingual Plane (ext A, unified, compatibility).
#[inline]
pub fn is_bmp_han(c: char) -> bool {
    matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF)
}

/// CJK characters / letters (alphabetic characters, CJK included); 0 without letters.
pub fn cjk_ratio(text: &str) -> f64 {
    let (mut cjk, mut letters) = (0usize, 0usize);
    for c in text.chars() {
        if is_cjk(c) {
            cjk += 1;
            letters += 1;
        } else if c.is_alphabetic() {
            letters += 1;
        }
    }
    if letters == 0 {
        0.0
    } else {
        cjk as f64 / letters as f64
    }
}

/// Full-width ASCII (`Ａ１！`, U+FF01..U+FF5E) and the ideographic space to
/// half-width, one character for one.
#[inline]
pub fn fold_width(c: char) -> char {
    match c as u32 {
        0xFF01..=0xFF5E => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        0x3000 => ' ',
        _ => c,
    }
}

/// [`fold_width`], then lower case (the first character of it), one character for one.
/// CJK punctuation, kana, Han and Hangul syllables have no case: they skip the
/// Unicode case table (a binary search), which most characters of Chinese text cost.
#[inline]
pub fn fold_width_and_case(c: char) -> char {
    let c = fold_width(c);
    if c.is_ascii() {
        c.to_ascii_lowercase()
    } else if matches!(c as u32, 0x3001..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xAC00..=0xD7AF) {
        c
    } else {
        c.to_lowercase().next().unwrap_or(c)
    }
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
pub fn t2s_table() -> &'static [u16] {
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
pub fn simplify(table: &[u16], prev: char, c: char, next: impl FnOnce() -> char) -> char {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_width_and_case_skips_the_case_table_only_where_it_changes_nothing() {
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            let w = fold_width(c);
            let full = if w.is_ascii() {
                w.to_ascii_lowercase()
            } else {
                w.to_lowercase().next().unwrap_or(w)
            };
            assert_eq!(fold_width_and_case(c), full, "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn cjk_ranges() {
        for c in ['中', 'あ', 'カ', '한', '㐀', '豈', '𠀀', '𰀀'] {
            assert!(is_cjk(c), "{c}");
        }
        for c in ['a', '1', '，', 'Ａ', 'é'] {
            assert!(!is_cjk(c), "{c}");
        }
        // Ext G: CJK, but outside the classifiers' range.
        assert!(!is_cjk_through_ext_f('𰀀') && is_cjk_through_ext_f('𠀀'));
        assert!(is_han('中') && !is_han('あ') && is_han('𠀀'));
        assert!(is_bmp_han('中') && !is_bmp_han('𠀀'));
        assert!((cjk_ratio("中文abc") - 0.4).abs() < 1e-9);
        assert_eq!(cjk_ratio("123 !"), 0.0);
    }

    #[test]
    fn width_and_case_fold_one_for_one() {
        assert_eq!("Ａｂ１！　".chars().map(fold_width).collect::<String>(), "Ab1! ");
        assert_eq!(
            "ＡＢc，Ä".chars().map(fold_width_and_case).collect::<String>(),
            "abc,ä"
        );
        // `İ` lower-cases to two characters: the first is kept.
        assert_eq!(fold_width_and_case('İ'), 'i');
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
