//! Before step 1: the raw HTML made into a tree. `<script>`, `<style>`,
//! `<svg>` and comments are cut out of the bytes first (they hold no visible
//! text and are often more than half of a page), then html5ever parses the
//! rest in 8 KiB chunks with the deadline checked between them, so a
//! pathological page ends as [`ExtractError::Timeout`] instead of holding a
//! worker.

use std::time::Instant;

use html5ever::tendril::TendrilSink;
use scraper::{Html, HtmlTreeSink};

use super::ExtractError;

/// Parse with html5ever, in chunks so the deadline is checked during parsing.
pub(super) fn parse(html: &str, deadline: Option<Instant>) -> Result<Html, ExtractError> {
    // Small enough that a deadline is noticed soon even where html5ever is slow
    // (deep nesting makes each tag cost O(depth) in its scope checks).
    const CHUNK: usize = 8 * 1024;
    let mut parser =
        html5ever::driver::parse_document(HtmlTreeSink::new(Html::new_document()), Default::default());
    let mut rest = html;
    while !rest.is_empty() {
        let mut cut = rest.len().min(CHUNK);
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        parser.process(rest[..cut].into());
        rest = &rest[cut..];
        if past(deadline) {
            return Err(ExtractError::Timeout);
        }
    }
    Ok(parser.finish())
}

/// Cut `<script>`, `<style>`, `<svg>` elements and comments out before parsing.
///
/// They hold no visible text and are often more than half of a page's bytes;
/// html5ever would tokenize them only for the walk to skip them. The ends are
/// found as the tokenizer finds them (`</script` in any case, `-->`); an element
/// or comment that never ends runs to the end of the page, as in a browser.
pub(super) fn strip_invisible(html: &str) -> String {
    let bytes = html.as_bytes();
    let mut out = String::with_capacity(html.len());
    let mut copied = 0; // bytes[..copied] are handled
    let mut i = 0;
    while let Some(off) = bytes[i..].iter().position(|&b| b == b'<') {
        let at = i + off;
        let rest = &bytes[at + 1..];
        let end = if rest.starts_with(b"!--") {
            Some(find(bytes, at + 4, b"-->").map_or(bytes.len(), |e| e + 3))
        } else {
            ["script", "style", "svg"].iter().find_map(|tag| {
                let t = tag.as_bytes();
                let named = rest.len() > t.len()
                    && rest[..t.len()].eq_ignore_ascii_case(t)
                    && matches!(
                        rest[t.len()],
                        b'>' | b'/' | b' ' | b'\t' | b'\n' | b'\r' | b'\x0c'
                    );
                named.then(|| {
                    let mut close = Vec::with_capacity(t.len() + 2);
                    close.extend_from_slice(b"</");
                    close.extend_from_slice(t);
                    match find_ignore_case(bytes, at + 1 + t.len(), &close) {
                        Some(e) => find(bytes, e, b">").map_or(bytes.len(), |g| g + 1),
                        None => bytes.len(),
                    }
                })
            })
        };
        match end {
            Some(end) => {
                out.push_str(&html[copied..at]);
                copied = end;
                i = end;
            }
            None => i = at + 1,
        }
        if i >= bytes.len() {
            break;
        }
    }
    out.push_str(&html[copied.min(html.len())..]);
    out
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay.get(from..)?, needle).map(|p| from + p)
}

/// Like [`find`], ASCII case-insensitive; the candidates are the places of the
/// needle's first byte in either case, found with `memchr` (scripts run to megabytes).
fn find_ignore_case(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    let hay = hay.get(from..)?;
    let first = needle.first()?;
    memchr::memchr2_iter(first.to_ascii_lowercase(), first.to_ascii_uppercase(), hay)
        .find(|&p| {
            hay.get(p..p + needle.len())
                .is_some_and(|w| w.eq_ignore_ascii_case(needle))
        })
        .map(|p| from + p)
}

pub(super) fn past(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_parts_are_cut_before_parsing() {
        assert_eq!(
            strip_invisible("a<script>x</p>y</SCRIPT >b<!-- c -->d<style type=x>e</style>f<svg><text>g</text></svg>h<scripts>i"),
            "abdfh<scripts>i"
        );
        assert_eq!(strip_invisible("a<!-- never closed <p>b"), "a");
        assert_eq!(strip_invisible("a<script>never closed"), "a");
        assert_eq!(strip_invisible("中文<p>正文</p><"), "中文<p>正文</p><");
    }
}
