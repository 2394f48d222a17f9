//! Exact dedup's key: xxh3-128 of the compared texts after a light normalization
//! (lower case, whitespace and ASCII/CJK punctuation dropped), so that
//! "你好，世界！" and "你好,世界!" are one text.

/// Lower-case and drop whitespace and punctuation, so trivial variants compare equal.
pub fn normalize_for_dedup(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    normalize_for_dedup_into(text, &mut out);
    out
}

/// [`normalize_for_dedup`] appended to `out` (a buffer reused across texts).
pub fn normalize_for_dedup_into(text: &str, out: &mut String) {
    for c in text.chars() {
        if c.is_ascii() {
            // The same tests as below, without the Unicode tables.
            let b = c as u8;
            if !(matches!(b, b'\t'..=b'\r' | b' ') || b.is_ascii_punctuation()) {
                out.push(b.to_ascii_lowercase() as char);
            }
        } else if !(c.is_whitespace() || is_cjk_punct(c)) {
            out.extend(c.to_lowercase());
        }
    }
}

/// CJK and full-width punctuation, and general punctuation (U+2010..U+206F).
fn is_cjk_punct(c: char) -> bool {
    matches!(c as u32, 0x3000..=0x303F | 0xFF01..=0xFF0F | 0xFF1A..=0xFF20 | 0xFF3B..=0xFF40 | 0xFF5B..=0xFF65 | 0x2010..=0x206F)
}

/// The 128-bit hash of a record's compared texts, each normalized when `normalize`.
pub fn text_hash<'a>(texts: impl IntoIterator<Item = &'a str>, normalize: bool) -> u128 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut folded = String::new();
    for text in texts {
        if normalize {
            folded.clear();
            normalize_for_dedup_into(text, &mut folded);
            h.update(folded.as_bytes());
        } else {
            h.update(text.as_bytes());
        }
        // A separator keeps ("ab","c") apart from ("a","bc").
        h.update(&[0xff]);
    }
    h.digest128()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_folds_width_punctuation_and_case() {
        assert_eq!(
            normalize_for_dedup("你好，世界！ Hello"),
            normalize_for_dedup("你好,世界!hello")
        );
        assert_ne!(normalize_for_dedup("你好世界"), normalize_for_dedup("你好中国"));
    }

    #[test]
    fn ascii_fast_path_matches_the_unicode_tests() {
        for b in 0u8..0x80 {
            let c = b as char;
            let kept: String = [c]
                .into_iter()
                .filter(|c| !(c.is_whitespace() || c.is_ascii_punctuation() || is_cjk_punct(*c)))
                .flat_map(char::to_lowercase)
                .collect();
            assert_eq!(normalize_for_dedup(&c.to_string()), kept, "byte {b:#x}");
        }
        assert_eq!(normalize_for_dedup("İ Ab，c\u{3000}Ü"), "i̇abcü");
    }

    #[test]
    fn texts_are_separated() {
        assert_ne!(text_hash(["ab", "c"], false), text_hash(["a", "bc"], false));
        assert_eq!(text_hash(["A，b"], true), text_hash(["a,b"], true));
    }
}
