//! HTML pages as input: a directory of `.html`/`.htm` files (recursively, in
//! sorted order) or a single page. Each page is one record `{id, html}`; the
//! bytes are decoded later (in parallel) by [`decode_html`].

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{Codec, Payload, Position, RawItem, Source, SourceReader, MALFORMED_KEEP_BYTES};

/// All HTML files under `dir`, sorted by path so the order never depends on the file system.
pub fn list_pages(dir: &Path) -> Result<Vec<PathBuf>> {
    super::walk_files(dir, is_html_name)
}

fn is_html_name(p: &Path) -> bool {
    let name = p
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let name = name
        .strip_suffix(".gz")
        .or_else(|| name.strip_suffix(".zst"))
        .unwrap_or(&name);
    name.ends_with(".html") || name.ends_with(".htm")
}

/// Reads HTML pages one file per record.
pub struct HtmlReader {
    root: PathBuf,
    files: Vec<PathBuf>,
    next: usize,
    max: u64,
}

impl HtmlReader {
    /// List the pages of a directory source (or take a single file).
    pub fn open(source: &Source, max_record_bytes: u64) -> Result<Self> {
        let (root, files) = if source.path.is_dir() {
            (source.path.clone(), list_pages(&source.path)?)
        } else {
            (
                source.path.parent().map(Path::to_path_buf).unwrap_or_default(),
                vec![source.path.clone()],
            )
        };
        Ok(HtmlReader {
            root,
            files,
            next: 0,
            max: max_record_bytes,
        })
    }
}

impl SourceReader for HtmlReader {
    fn next_item(&mut self) -> Option<RawItem> {
        let path = self.files.get(self.next)?.clone();
        let pos = Position {
            index: self.next as u64,
            line: 0,
        };
        self.next += 1;
        let rel = path
            .strip_prefix(&self.root)
            .unwrap_or(&path)
            .to_string_lossy()
            .to_string();
        let malformed = |detail: String, raw_len: u64| RawItem {
            pos,
            payload: Payload::Malformed {
                detail,
                raw: Vec::new(),
                raw_len,
            },
        };
        let len = match path.metadata() {
            Ok(m) => m.len(),
            Err(e) => return Some(malformed(format!("{}: cannot stat: {e}", path.display()), 0)),
        };
        if len > self.max {
            return Some(malformed(
                format!(
                    "{rel}: page of {len} bytes exceeds max_record_bytes ({})",
                    self.max
                ),
                len,
            ));
        }
        let codec = super::codec_of(&path);
        let bytes = super::open_decompressed(&path, codec).and_then(|r| {
            // Sized from the file's length: growing by doubling copies a large page several times.
            let mut buf = Vec::with_capacity(if codec == Codec::Plain {
                len as usize + 1
            } else {
                0
            });
            r.take(self.max + 1)
                .read_to_end(&mut buf)
                .with_context(|| format!("{}: read error", path.display()))?;
            Ok(buf)
        });
        Some(match bytes {
            Err(e) => malformed(format!("{e:#}"), len),
            Ok(b) if b.len() as u64 > self.max => malformed(
                format!(
                    "{rel}: page exceeds max_record_bytes ({}) after decompression",
                    self.max
                ),
                b.len() as u64,
            ),
            Ok(b) if codec == Codec::Plain || !b.is_empty() => RawItem {
                pos,
                payload: Payload::Html { bytes: b, file: rel },
            },
            Ok(_) => malformed(format!("{rel}: empty after decompression"), 0),
        })
    }
}

/// A page's text and how its bytes were read (`meta.decode`).
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The page as text.
    pub text: String,
    /// The encoding used (WHATWG name, e.g. `UTF-8`, `gb18030`, `Big5`).
    pub encoding: &'static str,
    /// The charset the page declares in its first 1024 bytes, if any.
    pub declared: Option<&'static str>,
    /// What decided: `bom`, `utf8` (valid UTF-8, whatever the declaration says),
    /// `declared`, `sniffed` (chardetng), `utf8_lossy` (UTF-8 with a few broken
    /// sequences) or `declared_lossy` (the declaration, with errors, when no
    /// reading is clean).
    pub via: &'static str,
}

/// Decode an HTML page's bytes, deciding on the bytes rather than the declaration alone.
///
/// Order: a BOM; then valid UTF-8 with non-ASCII content is UTF-8 whatever the
/// `<meta charset>` says (re-saved pages keep stale `gb2312` declarations, and
/// multi-byte UTF-8 is practically never valid by accident), unless the UTF-8
/// reading holds C1 control characters that the declared encoding reads cleanly;
/// then UTF-8 with a few broken sequences; then a declaration the bytes satisfy (decodes without errors), except that a
/// single-byte declaration (which every byte satisfies) gives way to a clean CJK
/// multi-byte reading that chardetng finds; then chardetng's guess; then
/// whichever of UTF-8, the declaration and the guess has the fewest broken
/// sequences. Browsers and chardetng's own design (declaration, then
/// content) are the references; they trust the declaration more, which is what
/// turns re-saved Chinese pages into mojibake.
pub fn decode_html(bytes: &[u8]) -> Decoded {
    decode_html_owned(bytes.to_vec())
}

/// The shape of `meta.decode` (one schema per output, `src/shape.rs`).
pub fn decode_shape() -> crate::shape::Shape {
    use crate::shape::Shape;
    Shape::object(&[
        ("encoding", Shape::Str),
        ("declared", Shape::Str),
        ("via", Shape::Str),
    ])
}

/// [`decode_html`] taking the bytes by value: a valid UTF-8 page (most pages)
/// becomes its `String` without a copy.
pub fn decode_html_owned(bytes: Vec<u8>) -> Decoded {
    use encoding_rs::{Encoding, UTF_8};
    let decoded = |text: String, enc: &'static Encoding, declared: Option<&'static Encoding>, via| Decoded {
        text,
        encoding: enc.name(),
        declared: declared.map(Encoding::name),
        via,
    };
    let declared = declared_charset(&bytes);
    if let Some((enc, bom_len)) = Encoding::for_bom(&bytes) {
        let (text, _) = enc.decode_without_bom_handling(&bytes[bom_len..]);
        return decoded(text.into_owned(), enc, declared, "bom");
    }
    let bytes = match String::from_utf8(bytes) {
        Ok(s) => {
            match declared {
                // ISO-2022-JP and the like are 7-bit: all-ASCII bytes may still be theirs.
                Some(enc) if enc != UTF_8 && (s.is_ascii() || has_c1_controls(&s)) => {
                    if let Some(text) = clean_decode(enc, s.as_bytes()) {
                        if !has_c1_controls(&text) {
                            return decoded(text, enc, declared, "declared");
                        }
                    }
                }
                _ => {}
            }
            return decoded(s, UTF_8, declared, "utf8");
        }
        Err(e) => e.into_bytes(),
    };
    let bytes = &bytes[..];
    if mostly_utf8(bytes) {
        let text = String::from_utf8_lossy(bytes).into_owned();
        return decoded(text, UTF_8, declared, "utf8_lossy");
    }
    // chardetng reads the whole page (most of the cost of a legacy page), so
    // it runs only where its guess can decide.
    let sniff = || {
        let mut det = chardetng::EncodingDetector::new();
        feed_non_ascii_lines(&mut det, bytes);
        det.guess(None, false)
    };
    if let Some(enc) = declared.filter(|&e| e != UTF_8) {
        if let Some(text) = clean_decode(enc, bytes) {
            let single_byte = enc.is_single_byte();
            // A clean declared reading gives way only to a guess that is a
            // CJK multi-byte encoding reading the bytes cleanly: when none of
            // them does, the guess cannot change the answer.
            if !(single_byte && any_cjk_multibyte_reads(bytes)) {
                return decoded(text, enc, declared, "declared");
            }
            let guess = sniff();
            if !(single_byte && is_cjk_multibyte(guess) && guess != enc) {
                return decoded(text, enc, declared, "declared");
            }
            if let Some(cjk) = clean_decode(guess, bytes) {
                return decoded(cjk, guess, declared, "sniffed");
            }
            return decoded(text, enc, declared, "declared");
        }
    }
    let guess = sniff();
    if let Some(text) = clean_decode(guess, bytes) {
        return decoded(text, guess, declared, "sniffed");
    }
    // No reading is clean: the one with the fewest broken sequences, preferring
    // the declaration, then UTF-8 (a UTF-8 page with a stray legacy string), then the guess.
    let mut best: Option<(usize, String, &'static Encoding, &'static str)> = None;
    let mut consider = |enc: &'static Encoding, via: &'static str| {
        let (text, _, _) = enc.decode(bytes);
        let errors = text.matches('\u{FFFD}').count();
        if best.as_ref().is_none_or(|b| errors < b.0) {
            best = Some((errors, text.into_owned(), enc, via));
        }
    };
    if let Some(enc) = declared {
        consider(enc, "declared_lossy");
    }
    consider(UTF_8, "utf8_lossy");
    consider(guess, "sniffed");
    let (_, text, enc, via) = best.expect("UTF-8 was considered");
    decoded(text, enc, declared, via)
}

/// Feed chardetng the lines that hold a non-ASCII byte, each with its line break.
///
/// A legacy page is mostly ASCII markup and script, which tells no encoding
/// from another; each kept line is still preceded by a line break, as it was
/// in the page, so the byte pairs chardetng scores are the page's own. On the
/// 764 pages of the extraction sets and 3,905 re-encodings of them (GBK, Big5,
/// Shift_JIS, EUC-JP/KR, ISO-2022-JP, windows-125x, ISO-8859-7) the guess is
/// the same as from the whole page, from a quarter of the bytes. A page with an
/// escape byte (ISO-2022-JP: text in 7-bit bytes after `ESC $ B`) is fed whole.
fn feed_non_ascii_lines(det: &mut chardetng::EncodingDetector, bytes: &[u8]) {
    if memchr::memchr(0x1b, bytes).is_some() {
        det.feed(bytes, true);
        return;
    }
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        if !line.is_ascii() {
            det.feed(line, false);
        }
    }
    det.feed(&[], true);
}

/// UTF-8 with a few broken sequences (a stray legacy string, a truncated end):
/// at least 8 valid multi-byte characters per broken sequence. Legacy CJK bytes
/// are almost never valid UTF-8 multi-byte sequences, so they fail this at once.
fn mostly_utf8(mut bytes: &[u8]) -> bool {
    let (mut valid, mut broken) = (0usize, 0usize);
    loop {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                valid += s.chars().filter(|c| !c.is_ascii()).count();
                break;
            }
            Err(e) => {
                let good = e.valid_up_to();
                valid += std::str::from_utf8(&bytes[..good])
                    .map_or(0, |s| s.chars().filter(|c| !c.is_ascii()).count());
                broken += 1;
                match e.error_len() {
                    Some(n) => bytes = &bytes[good + n..],
                    None => break,
                }
            }
        }
    }
    valid >= 8 * broken.max(1)
}

/// The text when `enc` reads every byte (no malformed sequence), else `None`.
fn clean_decode(enc: &'static encoding_rs::Encoding, bytes: &[u8]) -> Option<String> {
    enc.decode_without_bom_handling_and_without_replacement(bytes)
        .map(|t| t.into_owned())
}

/// C1 controls (U+0080..U+009F) never appear in real text: a UTF-8 reading
/// that has them is most likely a legacy page double-encoded.
fn has_c1_controls(s: &str) -> bool {
    s.chars().any(|c| ('\u{80}'..='\u{9f}').contains(&c))
}

/// The legacy multi-byte encodings of Chinese, Japanese and Korean pages.
fn is_cjk_multibyte(enc: &'static encoding_rs::Encoding) -> bool {
    CJK_MULTIBYTE.contains(&enc)
}

const CJK_MULTIBYTE: [&encoding_rs::Encoding; 6] = [
    encoding_rs::GBK,
    encoding_rs::GB18030,
    encoding_rs::BIG5,
    encoding_rs::SHIFT_JIS,
    encoding_rs::EUC_JP,
    encoding_rs::EUC_KR,
];

/// Whether any of the CJK multi-byte encodings reads every byte (what
/// [`clean_decode`] would accept), without building the text: a Latin page
/// usually fails each of them within its first accented letters.
fn any_cjk_multibyte_reads(bytes: &[u8]) -> bool {
    CJK_MULTIBYTE.iter().any(|enc| {
        let mut dec = enc.new_decoder_without_bom_handling();
        let mut buf = [0u8; 8192];
        let mut src = bytes;
        loop {
            let (res, read, _) = dec.decode_to_utf8_without_replacement(src, &mut buf, true);
            src = &src[read..];
            match res {
                encoding_rs::DecoderResult::InputEmpty => return true,
                encoding_rs::DecoderResult::OutputFull => {}
                encoding_rs::DecoderResult::Malformed(..) => return false,
            }
        }
    })
}

/// The charset a page declares in its first 1024 bytes (`<meta charset>`,
/// `http-equiv` content, or an XML declaration's `encoding`), if any.
fn declared_charset(bytes: &[u8]) -> Option<&'static encoding_rs::Encoding> {
    let head = &bytes[..bytes.len().min(1024)];
    let lower: Vec<u8> = head.iter().map(u8::to_ascii_lowercase).collect();
    let label = [&b"charset="[..], &b"encoding="[..]].iter().find_map(|key| {
        let at = lower.windows(key.len()).position(|w| w == *key)?;
        let rest = &lower[at + key.len()..];
        let rest = rest
            .strip_prefix(b"\"")
            .or_else(|| rest.strip_prefix(b"'"))
            .unwrap_or(rest);
        let end = rest
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':')))
            .unwrap_or(rest.len());
        Some(&rest[..end]).filter(|l| !l.is_empty())
    })?;
    // Pages labelled gb2312/gbk routinely contain GB18030-only characters.
    let label: &[u8] = if label == b"gb2312" || label == b"gbk" {
        b"gb18030"
    } else {
        label
    };
    let enc = encoding_rs::Encoding::for_label(label)?;
    // WHATWG: a meta declaration of UTF-16 means UTF-8 (the bytes were ASCII-readable);
    // `x-user-defined` means windows-1252.
    Some(if enc == encoding_rs::UTF_16LE || enc == encoding_rs::UTF_16BE {
        encoding_rs::UTF_8
    } else if enc == encoding_rs::X_USER_DEFINED {
        encoding_rs::WINDOWS_1252
    } else {
        enc
    })
}

/// How much of a malformed page is kept: never the whole page.
pub const PAGE_PREVIEW_BYTES: usize = MALFORMED_KEEP_BYTES;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_declared_and_sniffed_encodings() {
        let (gbk, _, _) = encoding_rs::GBK.encode("<meta charset=\"gbk\"><p>中文网页内容</p>");
        let d = decode_html(&gbk);
        assert!(d.text.contains("中文网页内容"), "{}", d.text);
        assert_eq!((d.encoding, d.via), ("gb18030", "declared"));
        let (big5, _, _) =
            encoding_rs::BIG5.encode("<html><p>繁體中文的網頁內容，這是一個測試段落。</p></html>");
        let d = decode_html(&big5);
        assert!(d.text.contains("繁體中文"), "{}", d.text);
        assert_eq!(d.via, "sniffed");
        let d = decode_html("<p>普通的UTF-8</p>".as_bytes());
        assert_eq!((d.text.as_str(), d.encoding), ("<p>普通的UTF-8</p>", "UTF-8"));
    }

    fn encode(enc: &'static encoding_rs::Encoding, text: &str) -> Vec<u8> {
        enc.encode(text).0.into_owned()
    }

    const ZH: &str = "这是一个中文网页的正文内容，用来检查字符集的判断是否正确。我们的网站提供新闻和评论。";

    fn page(charset: &str, body: &str) -> String {
        format!("<html><head><meta charset=\"{charset}\"><title>测试</title></head><body><p>{body}</p></body></html>")
    }

    #[test]
    fn utf8_bytes_win_over_a_stale_legacy_declaration() {
        for label in [
            "gb2312",
            "gbk",
            "GB18030",
            "big5",
            "EUC-JP",
            "shift_jis",
            "iso-8859-1",
        ] {
            let d = decode_html(page(label, ZH).as_bytes());
            assert!(d.text.contains(ZH), "{label}: {}", d.text);
            assert_eq!((d.encoding, d.via), ("UTF-8", "utf8"), "{label}");
            assert!(d.declared.is_some(), "{label}");
        }
        // http-equiv form.
        let html =
            format!("<meta http-equiv=\"Content-Type\" content=\"text/html; charset=gb2312\"><p>{ZH}</p>");
        assert_eq!(decode_html(html.as_bytes()).encoding, "UTF-8");
    }

    #[test]
    fn legacy_bytes_under_a_utf8_declaration_are_sniffed() {
        let gbk = encode(encoding_rs::GBK, &page("utf-8", ZH));
        let d = decode_html(&gbk);
        assert!(d.text.contains(ZH), "{}", d.text);
        assert_eq!((d.encoding, d.via, d.declared), ("GBK", "sniffed", Some("UTF-8")));
    }

    #[test]
    fn legacy_encodings_with_and_without_declarations() {
        let tw = "這是一個繁體中文網頁的正文內容，用來檢查字元集的判斷是否正確。";
        let ja = "これは日本語のウェブページです。文字コードの判定が正しいかを確認します。";
        let fr = "Le café où l’on sert des crêpes à la française, déjà très réputé.";
        let cases: [(&'static encoding_rs::Encoding, &str, &str); 5] = [
            (encoding_rs::BIG5, "big5", tw),
            (encoding_rs::SHIFT_JIS, "shift_jis", ja),
            (encoding_rs::EUC_JP, "euc-jp", ja),
            (encoding_rs::WINDOWS_1252, "windows-1252", fr),
            (encoding_rs::GB18030, "gb2312", ZH),
        ];
        for (enc, label, body) in cases {
            let declared_bytes = encode(enc, &page(label, body));
            let d = decode_html(&declared_bytes);
            assert!(d.text.contains(body), "{label} declared: {}", d.text);
            assert_eq!(d.via, "declared", "{label}");
            let bare = format!("<html><body><p>{body}</p><p>{body}</p></body></html>");
            let bare_bytes = encode(enc, &bare);
            let d = decode_html(&bare_bytes);
            assert!(
                d.text.contains(body),
                "{label} sniffed as {}: {}",
                d.encoding,
                d.text
            );
            assert_eq!(d.via, "sniffed", "{label}");
        }
    }

    #[test]
    fn a_single_byte_declaration_gives_way_to_clean_chinese() {
        // GBK bytes labelled latin-1: every byte is valid latin-1, but the text is Chinese.
        let gbk = encode(encoding_rs::GBK, &page("iso-8859-1", ZH));
        let d = decode_html(&gbk);
        assert!(d.text.contains(ZH), "{}", d.text);
        assert_eq!(d.via, "sniffed");
        // A real windows-1252 page stays windows-1252.
        let latin = encode(
            encoding_rs::WINDOWS_1252,
            &page("iso-8859-1", "Voilà, déjà vu. Ça coûte 5 €."),
        );
        let d = decode_html(&latin);
        assert!(d.text.contains("Voilà, déjà vu. Ça coûte 5 €."), "{}", d.text);
        assert_eq!(d.via, "declared");
    }

    #[test]
    fn mixed_and_broken_bytes_take_the_reading_with_fewest_errors() {
        // A UTF-8 page with one stray GBK string and a truncated sequence at the end.
        let mut bytes = page("utf-8", ZH).into_bytes();
        let stray = encode(encoding_rs::GBK, "乱码");
        bytes.extend_from_slice(&stray);
        bytes.extend_from_slice(&"正文".as_bytes()[..4]);
        let d = decode_html(&bytes);
        assert!(d.text.contains(ZH), "{}", d.text);
        assert_eq!((d.encoding, d.via), ("UTF-8", "utf8_lossy"));
        // Random bytes: decoded somehow, never a panic.
        let noise: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let _ = decode_html(&noise);
        // A BOM decides.
        let mut bom = vec![0xEF, 0xBB, 0xBF];
        bom.extend_from_slice(page("gbk", ZH).as_bytes());
        assert_eq!(decode_html(&bom).via, "bom");
        // Pure ASCII in ISO-2022-JP (7-bit escapes) is read as declared.
        let jis = encode(encoding_rs::ISO_2022_JP, &page("iso-2022-jp", "日本語のページ"));
        let d = decode_html(&jis);
        assert!(d.text.contains("日本語のページ"), "{}", d.text);
        assert_eq!(d.via, "declared");
    }
}
