//! Before step 1: the raw HTML made into a tree. Two cuts of the bytes come
//! first: `<script>`, `<style>`, `<svg>` and comments ([`strip_invisible`]:
//! no visible text, often more than half of a page), then every attribute of a
//! start tag that neither the extractor nor the tree builder reads
//! ([`strip_attributes`]: `data-*`, `href`, `srcset`, ... are a third of what
//! is left). The project's tokenizer (`tokenize.rs`) and html5ever's tree
//! builder then parse the rest into a [`Dom`]; a guard between them checks the
//! deadline every 256 tokens (deep nesting makes one token cost O(depth)) and
//! drops the tokens after it, so a pathological page ends as
//! [`ExtractError::Timeout`] soon after its deadline instead of holding a worker.

use std::cell::Cell;
use std::time::Instant;

use html5ever::tokenizer::{Token, TokenSink, TokenSinkResult};
use html5ever::tree_builder::{TreeBuilder, TreeSink};

use super::dom::{self, Dom, DomSink};
use super::ExtractError;

/// Parse with the project's tokenizer (`tokenize.rs`) and html5ever's tree builder.
pub(super) fn parse(html: &str, deadline: Option<Instant>) -> Result<Dom, ExtractError> {
    let guard = Guard {
        builder: TreeBuilder::new(DomSink::new(), Default::default()),
        deadline,
        tokens: Cell::new(0),
        stopped: Cell::new(false),
    };
    super::tokenize::tokenize(html, &guard, |g: &Guard| {
        g.builder
            .adjusted_current_node_present_but_not_in_html_namespace()
    });
    if guard.stopped.get() {
        return Err(ExtractError::Timeout);
    }
    Ok(guard.builder.sink.finish())
}

/// Parse with html5ever's own tokenizer and tree builder (in chunks, as
/// `curate` did before `tokenize.rs`): the reference the project's tokenizer is
/// checked against.
pub(super) fn parse_html5ever_reference(html: &str) -> Result<Dom, ExtractError> {
    let deadline = None;
    use html5ever::tokenizer::{BufferQueue, Tokenizer};
    use html5ever::TokenizerResult;
    // Small enough that a deadline is noticed soon after a chunk of cheap tokens.
    const CHUNK: usize = 8 * 1024;
    let guard = Guard {
        builder: TreeBuilder::new(DomSink::new(), Default::default()),
        deadline,
        tokens: Cell::new(0),
        stopped: Cell::new(false),
    };
    let tokenizer = Tokenizer::new(guard, Default::default());
    let input = BufferQueue::default();
    let mut rest = html;
    while !rest.is_empty() {
        let mut cut = rest.len().min(CHUNK);
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        input.push_back(rest[..cut].into());
        rest = &rest[cut..];
        // `feed` also stops at a `</script>` and at `<meta charset>`: go on to the chunk's end.
        while !matches!(tokenizer.feed(&input), TokenizerResult::Done) {}
        if tokenizer.sink.stopped.get() || past(deadline) {
            return Err(ExtractError::Timeout);
        }
    }
    tokenizer.end();
    if tokenizer.sink.stopped.get() {
        return Err(ExtractError::Timeout);
    }
    Ok(tokenizer.sink.builder.sink.finish())
}

/// Passes tokens to the tree builder until the deadline, checked every few
/// hundred tokens: deep nesting makes one token cost O(depth) in the tree
/// builder's scope checks and formatting reconstruction, so a chunk of 8 KiB
/// can take seconds. Past the deadline tokens are dropped, so the rest of the
/// chunk and the end of the page cost only tokenizing.
struct Guard {
    builder: TreeBuilder<usize, DomSink>,
    deadline: Option<Instant>,
    tokens: Cell<u32>,
    stopped: Cell<bool>,
}

impl TokenSink for Guard {
    type Handle = usize;

    fn process_token(&self, token: Token, line_number: u64) -> TokenSinkResult<usize> {
        if self.stopped.get() {
            return TokenSinkResult::Continue;
        }
        let n = self.tokens.get().wrapping_add(1);
        self.tokens.set(n);
        if n.is_multiple_of(256) && past(self.deadline) {
            self.stopped.set(true);
            return TokenSinkResult::Continue;
        }
        self.builder.process_token(token, line_number)
    }

    fn end(&self) {
        if !self.stopped.get() {
            self.builder.end();
        }
    }

    fn adjusted_current_node_present_but_not_in_html_namespace(&self) -> bool {
        self.builder
            .adjusted_current_node_present_but_not_in_html_namespace()
    }
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
    while let Some(off) = memchr::memchr(b'<', &bytes[i..]) {
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

/// Attributes the tree builder reads (`<input type=hidden>` in a table,
/// `<font color>` in MathML), kept beside those the extractor reads.
fn is_parser_attr(name: &[u8]) -> bool {
    [&b"type"[..], b"color", b"face", b"size", b"encoding"]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n))
}

/// Start tags whose content the tokenizer reads as text (RCDATA, RAWTEXT,
/// PLAINTEXT once the tree builder sees them; `script`/`style` are cut already).
const RAW_TAGS: &[&[u8]] = &[
    b"title",
    b"textarea",
    b"xmp",
    b"iframe",
    b"noembed",
    b"noframes",
    b"noscript",
    b"plaintext",
];

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')
}

/// A tag as html5ever's tokenizer reads it (tag name, before/after attribute
/// name, attribute value states): where it ends, its name, its attributes
/// (`start..end` bytes from the name to the value's end) and whether it closes
/// itself (`/>`). `None` when the page ends inside it (the tokenizer drops it).
struct TagScan {
    end: usize,
    name: (usize, usize),
    attrs: Vec<(usize, usize, usize)>, // (start, name_end, end)
    self_closing: bool,
}

fn scan_tag(b: &[u8], name_start: usize) -> Option<TagScan> {
    let mut i = name_start;
    while i < b.len() && !is_ws(b[i]) && b[i] != b'/' && b[i] != b'>' {
        i += 1;
    }
    let mut tag = TagScan {
        end: 0,
        name: (name_start, i),
        attrs: Vec::new(),
        self_closing: false,
    };
    loop {
        // Before attribute name.
        while i < b.len() && (is_ws(b[i]) || b[i] == b'/') {
            if b[i] == b'/' && b.get(i + 1) == Some(&b'>') {
                tag.self_closing = true;
                tag.end = i + 2;
                return Some(tag);
            }
            i += 1;
        }
        if *b.get(i)? == b'>' {
            tag.end = i + 1;
            return Some(tag);
        }
        // Attribute name: the first byte may be `=`.
        let start = i;
        i += 1;
        while i < b.len() && !is_ws(b[i]) && !matches!(b[i], b'/' | b'>' | b'=') {
            i += 1;
        }
        let name_end = i;
        // After attribute name.
        let mut j = i;
        while j < b.len() && is_ws(b[j]) {
            j += 1;
        }
        if b.get(j) != Some(&b'=') {
            tag.attrs.push((start, name_end, name_end));
            i = j;
            continue;
        }
        // Before attribute value.
        j += 1;
        while j < b.len() && is_ws(b[j]) {
            j += 1;
        }
        match b.get(j)? {
            q @ (b'"' | b'\'') => {
                let close = memchr::memchr(*q, &b[j + 1..])? + j + 1;
                i = close + 1;
            }
            b'>' => i = j,
            _ => {
                i = j;
                while i < b.len() && !is_ws(b[i]) && b[i] != b'>' {
                    i += 1;
                }
            }
        }
        tag.attrs.push((start, name_end, i));
    }
}

/// Drop the attributes nobody reads from start tags (`data-*`, `href`,
/// `srcset`, event handlers: a third of a page's bytes after the cut of
/// [`strip_invisible`]), so html5ever tokenizes and stores less. Tags are
/// read as the tokenizer reads them, and the content of [`RAW_TAGS`] is
/// copied untouched, so every kept attribute and all text come out the same.
pub(super) fn strip_attributes(html: &str) -> String {
    let b = html.as_bytes();
    let mut out = String::with_capacity(html.len());
    let mut copied = 0;
    let mut i = 0;
    while let Some(off) = memchr::memchr(b'<', &b[i..]) {
        let at = i + off;
        i = at + 1;
        match b.get(at + 1) {
            Some(c) if c.is_ascii_alphabetic() => {
                let Some(tag) = scan_tag(b, at + 1) else { break };
                i = tag.end;
                let dropped = tag
                    .attrs
                    .iter()
                    .any(|&(s, n, _)| !dom::is_kept_attr_name(&b[s..n]) && !is_parser_attr(&b[s..n]));
                if dropped {
                    out.push_str(&html[copied..tag.name.1]);
                    for &(s, n, e) in &tag.attrs {
                        if dom::is_kept_attr_name(&b[s..n]) || is_parser_attr(&b[s..n]) {
                            out.push(' ');
                            out.push_str(&html[s..e]);
                        }
                    }
                    out.push_str(if tag.self_closing { "/>" } else { ">" });
                    copied = tag.end;
                }
                let name = &b[tag.name.0..tag.name.1];
                if name.eq_ignore_ascii_case(b"plaintext") {
                    break;
                }
                if RAW_TAGS.iter().any(|t| name.eq_ignore_ascii_case(t)) {
                    // The content is text up to the element's own end tag.
                    let mut close = Vec::with_capacity(name.len() + 2);
                    close.extend_from_slice(b"</");
                    close.extend_from_slice(name);
                    let mut from = i;
                    i = loop {
                        match find_ignore_case(b, from, &close) {
                            Some(e)
                                if b.get(e + close.len())
                                    .is_none_or(|&c| is_ws(c) || c == b'/' || c == b'>') =>
                            {
                                break e
                            }
                            Some(e) => from = e + 1,
                            None => break b.len(),
                        }
                    };
                }
            }
            Some(b'/') if b.get(at + 2).is_some_and(u8::is_ascii_alphabetic) => {
                // An end tag: its attributes are ignored, but a quoted `>` does not end it.
                let Some(tag) = scan_tag(b, at + 2) else { break };
                i = tag.end;
            }
            Some(b'!') if b[at..].starts_with(b"<![CDATA[") => {
                i = find(b, at, b"]]>").map_or(b.len(), |e| e + 3);
            }
            Some(b'!' | b'?' | b'/') => {
                // Doctype, bogus comment: text up to the next `>`.
                i = memchr::memchr(b'>', &b[at..]).map_or(b.len(), |e| at + e + 1);
            }
            _ => {}
        }
        if i >= b.len() {
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
