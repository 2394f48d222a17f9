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

/// Decode an HTML page's bytes: BOM, then `<meta charset>` / `http-equiv`
/// declaration in the first 1024 bytes, then strict UTF-8, then a statistical
/// guess (chardetng). Returns the text and the encoding used.
pub fn decode_html(bytes: &[u8]) -> (String, &'static str) {
    if let Some((enc, bom_len)) = encoding_rs::Encoding::for_bom(bytes) {
        let (text, _) = enc.decode_without_bom_handling(&bytes[bom_len..]);
        return (text.into_owned(), enc.name());
    }
    if let Some(enc) = declared_charset(bytes) {
        // A page that says UTF-8 but is not is common: fall through to sniffing then.
        if enc != encoding_rs::UTF_8 || std::str::from_utf8(bytes).is_ok() {
            let (text, _, _) = enc.decode(bytes);
            return (text.into_owned(), enc.name());
        }
    }
    if let Ok(s) = std::str::from_utf8(bytes) {
        return (s.to_string(), "UTF-8");
    }
    let mut det = chardetng::EncodingDetector::new();
    det.feed(bytes, true);
    let enc = det.guess(None, true);
    let (text, _, _) = enc.decode(bytes);
    (text.into_owned(), enc.name())
}

/// The charset a page declares in its first 1024 bytes, if any.
fn declared_charset(bytes: &[u8]) -> Option<&'static encoding_rs::Encoding> {
    let head = &bytes[..bytes.len().min(1024)];
    let lower: Vec<u8> = head.iter().map(u8::to_ascii_lowercase).collect();
    let at = lower.windows(8).position(|w| w == b"charset=")?;
    let rest = &lower[at + 8..];
    let rest = rest
        .strip_prefix(b"\"")
        .or_else(|| rest.strip_prefix(b"'"))
        .unwrap_or(rest);
    let end = rest
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_'))
        .unwrap_or(rest.len());
    let label = &rest[..end];
    // Pages labelled gb2312/gbk routinely contain GB18030-only characters.
    let label: &[u8] = if label == b"gb2312" || label == b"gbk" {
        b"gb18030"
    } else {
        label
    };
    encoding_rs::Encoding::for_label(label)
}

/// How much of a malformed page is kept: never the whole page.
pub const PAGE_PREVIEW_BYTES: usize = MALFORMED_KEEP_BYTES;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_declared_and_sniffed_encodings() {
        let (gbk, _, _) = encoding_rs::GBK.encode("<meta charset=\"gbk\"><p>中文网页内容</p>");
        let (text, enc) = decode_html(&gbk);
        assert!(text.contains("中文网页内容"), "{text}");
        assert_eq!(enc, "gb18030");
        let (big5, _, _) =
            encoding_rs::BIG5.encode("<html><p>繁體中文的網頁內容，這是一個測試段落。</p></html>");
        let (text, _) = decode_html(&big5);
        assert!(text.contains("繁體中文"), "{text}");
        let (text, enc) = decode_html("<p>普通的UTF-8</p>".as_bytes());
        assert_eq!((text.as_str(), enc), ("<p>普通的UTF-8</p>", "UTF-8"));
    }
}
