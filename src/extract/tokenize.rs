//! The HTML tokenizer (WHATWG HTML 13.2.5) that feeds html5ever's tree builder.
//!
//! Written here because html5ever's own tokenizer was over a third of the
//! `extract` stage's CPU: it reads its input a character at a time through a
//! queue of tendrils and builds every tag and attribute name and value a
//! character at a time. This one works on the bytes of one `&str`: text runs
//! and attribute values are found with `memchr` and handed over as
//! sub-tendrils of the page (no copy) unless a character reference or a NUL
//! makes them differ from the source. The token stream is the one the standard
//! defines, so the tree builder (html5ever's, unchanged) builds the same tree:
//! `tests` compare both tokenizers' trees on generated tag soup, and the
//! extraction outputs of all benchmark pages are byte-identical with either.
//!
//! Not implemented, because `parse.rs` cuts those elements out before
//! tokenizing: the script data escape states (`<!--` inside `<script>`). A
//! script that reaches this tokenizer is read as raw text up to `</script`.

use html5ever::data::{C1_REPLACEMENTS, NAMED_ENTITIES};
use html5ever::tendril::StrTendril;
use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{Doctype, Tag, TagKind, Token, TokenSink, TokenSinkResult};
use html5ever::{ns, Attribute, LocalName, QualName};

/// Tokenize `html` into `sink`, then send the end of file.
///
/// `foreign` answers whether the tree builder's adjusted current node is
/// outside the HTML namespace (where `<![CDATA[` opens a CDATA section).
pub(super) fn tokenize<S: TokenSink>(html: &str, sink: &S, foreign: impl Fn(&S) -> bool) {
    // Newlines are normalised first (CR LF and CR become LF), as the input
    // stream preprocessing does; most pages have no CR and are not copied.
    let normalized;
    let html = if memchr::memchr(b'\r', html.as_bytes()).is_some() {
        normalized = html.replace("\r\n", "\n").replace('\r', "\n");
        normalized.as_str()
    } else {
        html
    };
    let mut t = Tokenizer {
        src: html,
        b: html.as_bytes(),
        page: StrTendril::from_slice(html),
        pos: 0,
        sink,
        last_start_tag: None,
    };
    t.run(&foreign);
    let _ = sink.process_token(Token::EOFToken, 0);
    sink.end();
}

struct Tokenizer<'a, S: TokenSink> {
    src: &'a str,
    b: &'a [u8],
    /// The page as one tendril: text tokens are sub-tendrils of it.
    page: StrTendril,
    pos: usize,
    sink: &'a S,
    /// The name of the last start tag emitted (for the end of raw text).
    last_start_tag: Option<LocalName>,
}

/// What follows a tag's emission: the state the tree builder asks for.
enum Next {
    Data,
    Raw(RawKind),
    Plaintext,
}

fn is_space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | b'\x0c' | b' ')
}

impl<'a, S: TokenSink> Tokenizer<'a, S> {
    fn run(&mut self, foreign: &impl Fn(&S) -> bool) {
        let mut next = Next::Data;
        loop {
            next = match next {
                Next::Data => match self.data(foreign) {
                    Some(n) => n,
                    None => return,
                },
                Next::Raw(kind) => {
                    self.raw(kind);
                    Next::Data
                }
                Next::Plaintext => {
                    let rest = self.b.len() - self.pos;
                    self.emit_text(self.pos, rest, true);
                    return;
                }
            };
            if self.pos >= self.b.len() && matches!(next, Next::Data) {
                return;
            }
        }
    }

    /// The data state: text and character references up to a tag; returns the
    /// state after the tag, or `None` at the end of the input.
    fn data(&mut self, foreign: &impl Fn(&S) -> bool) -> Option<Next> {
        loop {
            let start = self.pos;
            let Some(off) = memchr::memchr3(b'<', b'&', b'\0', &self.b[start..]) else {
                self.emit_text(start, self.b.len() - start, false);
                self.pos = self.b.len();
                return None;
            };
            let at = start + off;
            self.emit_text(start, at - start, false);
            self.pos = at;
            match self.b[at] {
                b'&' => {
                    self.pos += 1;
                    match self.char_ref(false) {
                        Some(chars) => self.emit_str(&chars),
                        None => self.emit_text(at, 1, false),
                    }
                }
                b'\0' => {
                    self.pos += 1;
                    self.send(Token::NullCharacterToken);
                }
                _ => {
                    if let Some(next) = self.tag_open(foreign) {
                        return Some(next);
                    }
                }
            }
        }
    }

    /// After a `<` in the data state. Returns the next state after an emitted
    /// start tag that changes it; `None` to go on in the data state.
    fn tag_open(&mut self, foreign: &impl Fn(&S) -> bool) -> Option<Next> {
        let at = self.pos;
        self.pos += 1;
        match self.b.get(self.pos) {
            Some(c) if c.is_ascii_alphabetic() => self.tag(TagKind::StartTag),
            Some(b'/') => {
                self.pos += 1;
                match self.b.get(self.pos) {
                    Some(c) if c.is_ascii_alphabetic() => self.tag(TagKind::EndTag),
                    Some(b'>') => {
                        // `</>` gives no token but a parse error, which the
                        // tree builder sees (it ends `<pre>`'s newline skip).
                        self.pos += 1;
                        self.send(Token::ParseError("empty end tag".into()));
                        None
                    }
                    None => {
                        // EOF after `</`: the characters are text.
                        self.emit_text(at, 2, false);
                        None
                    }
                    Some(_) => {
                        self.bogus_comment();
                        None
                    }
                }
            }
            Some(b'!') => {
                self.pos += 1;
                self.markup_declaration(foreign);
                None
            }
            Some(b'?') => {
                self.bogus_comment();
                None
            }
            _ => {
                self.emit_text(at, 1, false);
                None
            }
        }
    }

    /// A tag from its name's first letter (at `pos`) to its `>`; an unfinished
    /// tag at the end of the input is dropped, as the standard says.
    fn tag(&mut self, kind: TagKind) -> Option<Next> {
        let name_start = self.pos;
        while self.pos < self.b.len()
            && !matches!(self.b[self.pos], b'\t' | b'\n' | b'\x0c' | b' ' | b'/' | b'>')
        {
            self.pos += 1;
        }
        let name = self.name_at(name_start, self.pos);
        let mut tag = Tag {
            kind,
            name,
            self_closing: false,
            attrs: Vec::new(),
            had_duplicate_attributes: false,
        };
        if !self.attributes(&mut tag) {
            // The input ended inside the tag: the tag and the rest are dropped.
            self.pos = self.b.len();
            return None;
        }
        Some(self.emit_tag(tag))
    }

    /// A tag or attribute name from `start` to `end`: ASCII lower-cased, NUL as U+FFFD.
    fn name_at(&self, start: usize, end: usize) -> LocalName {
        let raw = &self.src[start..end];
        if raw.bytes().all(|c| !c.is_ascii_uppercase() && c != 0) {
            LocalName::from(raw)
        } else {
            LocalName::from(raw.to_ascii_lowercase().replace('\0', "\u{FFFD}").as_str())
        }
    }

    /// The attributes and the end of a tag, from after its name. Returns false
    /// when the input ends inside the tag.
    fn attributes(&mut self, tag: &mut Tag) -> bool {
        loop {
            // Before attribute name.
            while self.pos < self.b.len() && is_space(self.b[self.pos]) {
                self.pos += 1;
            }
            let Some(&c) = self.b.get(self.pos) else {
                return false;
            };
            match c {
                b'>' => {
                    self.pos += 1;
                    return true;
                }
                b'/' => {
                    // Self-closing start tag state.
                    self.pos += 1;
                    match self.b.get(self.pos) {
                        Some(b'>') => {
                            self.pos += 1;
                            tag.self_closing = true;
                            return true;
                        }
                        None => return false,
                        Some(_) => continue,
                    }
                }
                _ => {}
            }
            // Attribute name: its first character may be `=` (a parse error).
            let name_start = self.pos;
            self.pos += 1;
            while self.pos < self.b.len()
                && !matches!(
                    self.b[self.pos],
                    b'\t' | b'\n' | b'\x0c' | b' ' | b'/' | b'>' | b'='
                )
            {
                self.pos += 1;
            }
            let name = self.name_at(name_start, self.pos);
            // After attribute name.
            while self.pos < self.b.len() && is_space(self.b[self.pos]) {
                self.pos += 1;
            }
            let value = if self.b.get(self.pos) == Some(&b'=') {
                self.pos += 1;
                while self.pos < self.b.len() && is_space(self.b[self.pos]) {
                    self.pos += 1;
                }
                match self.b.get(self.pos) {
                    None => return false,
                    Some(&q @ (b'"' | b'\'')) => {
                        self.pos += 1;
                        let Some(v) = self.attribute_value(Some(q)) else {
                            return false;
                        };
                        // After attribute value (quoted): a space, `/` or `>`
                        // follows; anything else starts the next attribute.
                        v
                    }
                    Some(b'>') => StrTendril::new(),
                    Some(_) => match self.attribute_value(None) {
                        Some(v) => v,
                        None => return false,
                    },
                }
            } else {
                StrTendril::new()
            };
            let qual = QualName::new(None, ns!(), name);
            if tag.attrs.iter().any(|a| a.name == qual) {
                tag.had_duplicate_attributes = true;
            } else {
                tag.attrs.push(Attribute { name: qual, value });
            }
        }
    }

    /// An attribute value after its opening quote (or at its first character
    /// when unquoted), with character references decoded; `None` at the end of
    /// the input. An unquoted value ends before a space or `>`.
    fn attribute_value(&mut self, quote: Option<u8>) -> Option<StrTendril> {
        let start = self.pos;
        let end_of_run = |b: &[u8]| match quote {
            Some(q) => memchr::memchr3(q, b'&', b'\0', b),
            None => b
                .iter()
                .position(|&c| matches!(c, b'\t' | b'\n' | b'\x0c' | b' ' | b'>' | b'&' | b'\0')),
        };
        // Fast path: no reference or NUL before the end of the value.
        let off = end_of_run(&self.b[start..])?;
        let at = start + off;
        if !matches!(self.b[at], b'&' | b'\0') {
            self.pos = if quote.is_some() { at + 1 } else { at };
            return Some(self.sub(start, at - start));
        }
        let mut value = String::with_capacity(off + 16);
        let mut run = start;
        loop {
            let off = end_of_run(&self.b[run..])?;
            let at = run + off;
            value.push_str(&self.src[run..at]);
            match self.b[at] {
                b'&' => {
                    self.pos = at + 1;
                    match self.char_ref(true) {
                        Some(chars) => value.push_str(&chars),
                        None => value.push('&'),
                    }
                    run = self.pos;
                }
                b'\0' => {
                    value.push('\u{FFFD}');
                    run = at + 1;
                }
                _ => {
                    self.pos = if quote.is_some() { at + 1 } else { at };
                    return Some(StrTendril::from_slice(&value));
                }
            }
        }
    }

    /// A character reference after its `&` (at `pos`). Returns the characters
    /// and leaves `pos` after what they replace, or `None` (the `&` is text and
    /// `pos` is right after it).
    fn char_ref(&mut self, in_attribute: bool) -> Option<String> {
        let start = self.pos;
        match self.b.get(start) {
            Some(b'#') => self.numeric_ref(start + 1),
            Some(c) if c.is_ascii_alphanumeric() => self.named_ref(start, in_attribute),
            _ => None,
        }
    }

    /// `&#` (decimal) or `&#x` (hexadecimal) from the digits' start.
    fn numeric_ref(&mut self, mut at: usize) -> Option<String> {
        let hex = matches!(self.b.get(at), Some(b'x' | b'X'));
        if hex {
            at += 1;
        }
        let base = if hex { 16 } else { 10 };
        let digits_start = at;
        let (mut n, mut too_big) = (0u32, false);
        while let Some(d) = self.b.get(at).and_then(|&c| (c as char).to_digit(base)) {
            n = n.wrapping_mul(base);
            if n > 0x10FFFF {
                too_big = true;
            }
            n = n.wrapping_add(d);
            at += 1;
        }
        if at == digits_start {
            // No digits: `&#` or `&#x` is text.
            return None;
        }
        if self.b.get(at) == Some(&b';') {
            at += 1;
        }
        self.pos = at;
        let c = match n {
            _ if too_big || n > 0x10FFFF => '\u{FFFD}',
            0 | 0xD800..=0xDFFF => '\u{FFFD}',
            0x80..=0x9F => {
                C1_REPLACEMENTS[(n - 0x80) as usize].unwrap_or_else(|| char::from_u32(n).expect("valid"))
            }
            n => char::from_u32(n).expect("surrogates and out-of-range handled above"),
        };
        Some(c.to_string())
    }

    /// A named reference: the longest name in the table matching here.
    fn named_ref(&mut self, start: usize, in_attribute: bool) -> Option<String> {
        // The table holds every prefix of every name (those that are not names
        // themselves map to (0, 0)), so matching stops at the first miss.
        let mut end = start;
        let mut matched: Option<(usize, (u32, u32))> = None;
        while end < self.b.len() {
            let c = self.b[end];
            if !c.is_ascii_alphanumeric() && c != b';' {
                break;
            }
            end += 1;
            match NAMED_ENTITIES.get(&self.src[start..end]) {
                Some(&m) => {
                    if m.0 != 0 {
                        matched = Some((end, m));
                    }
                    if c == b';' {
                        break;
                    }
                }
                None => break,
            }
        }
        let (m_end, (c1, c2)) = matched?;
        let last = self.b[m_end - 1];
        if last != b';' && in_attribute {
            // `&notit=` in a URL stays as written.
            if let Some(&next) = self.b.get(m_end) {
                if next == b'=' || next.is_ascii_alphanumeric() {
                    return None;
                }
            }
        }
        self.pos = m_end;
        let mut out = String::new();
        out.push(char::from_u32(c1).expect("table holds characters"));
        if c2 != 0 {
            out.push(char::from_u32(c2).expect("table holds characters"));
        }
        Some(out)
    }

    /// `<!` then a comment, a DOCTYPE, a CDATA section (in foreign content) or a bogus comment.
    fn markup_declaration(&mut self, foreign: &impl Fn(&S) -> bool) {
        let rest = &self.b[self.pos..];
        if rest.starts_with(b"--") {
            self.pos += 2;
            self.comment();
        } else if rest.len() >= 7 && rest[..7].eq_ignore_ascii_case(b"doctype") {
            self.pos += 7;
            self.doctype();
        } else if rest.starts_with(b"[CDATA[") && foreign(self.sink) {
            self.pos += 7;
            let end = find(self.b, self.pos, b"]]>").unwrap_or(self.b.len());
            self.emit_text(self.pos, end - self.pos, true);
            self.pos = (end + 3).min(self.b.len());
        } else {
            self.bogus_comment();
        }
    }

    /// A bogus comment from `pos` to the next `>`.
    fn bogus_comment(&mut self) {
        let end = memchr::memchr(b'>', &self.b[self.pos..]).map_or(self.b.len(), |o| self.pos + o);
        let text = self.src[self.pos..end].replace('\0', "\u{FFFD}");
        self.pos = (end + 1).min(self.b.len());
        self.send(Token::CommentToken(StrTendril::from_slice(&text)));
    }

    /// A comment after `<!--`: the comment states of the standard, which end
    /// it at `-->`, `--!>`, or at once for `<!-->` and `<!--->`.
    fn comment(&mut self) {
        let b = self.b;
        let mut text = String::new();
        let mut i = self.pos;
        // Comment start and comment start dash.
        if b.get(i) == Some(&b'>') {
            self.pos = i + 1;
            return self.send(Token::CommentToken(StrTendril::new()));
        }
        if b.get(i) == Some(&b'-') && b.get(i + 1) == Some(&b'>') {
            self.pos = i + 2;
            return self.send(Token::CommentToken(StrTendril::new()));
        }
        loop {
            let Some(off) = memchr::memchr2(b'-', b'\0', &b[i..]) else {
                text.push_str(&self.src[i..]);
                i = b.len();
                break;
            };
            text.push_str(&self.src[i..i + off]);
            i += off;
            if b[i] == b'\0' {
                text.push('\u{FFFD}');
                i += 1;
                continue;
            }
            // At a `-`: comment end dash, comment end, comment end bang.
            if b.get(i + 1) != Some(&b'-') {
                text.push('-');
                i += 1;
                continue;
            }
            // `--`, then any further dashes belong to the comment.
            let mut j = i + 2;
            while b.get(j) == Some(&b'-') {
                text.push('-');
                j += 1;
            }
            match b.get(j) {
                Some(b'>') => {
                    i = j + 1;
                    break;
                }
                Some(b'!') if b.get(j + 1) == Some(&b'>') => {
                    i = j + 2;
                    break;
                }
                None => {
                    i = j;
                    break;
                }
                _ => {
                    text.push_str("--");
                    i = j;
                }
            }
        }
        self.pos = i;
        self.send(Token::CommentToken(StrTendril::from_slice(&text)));
    }

    /// A DOCTYPE after `<!DOCTYPE`: name, public and system identifiers, and
    /// whether the tree builder must force quirks mode.
    fn doctype(&mut self) {
        let b = self.b;
        let mut d = Doctype::default();
        let mut i = self.pos;
        let skip = |i: &mut usize| {
            while *i < b.len() && is_space(b[*i]) {
                *i += 1;
            }
        };
        skip(&mut i);
        if i >= b.len() {
            d.force_quirks = true;
            self.pos = i;
            return self.send(Token::DoctypeToken(d));
        }
        if b[i] == b'>' {
            d.force_quirks = true;
            self.pos = i + 1;
            return self.send(Token::DoctypeToken(d));
        }
        let name_start = i;
        while i < b.len() && !is_space(b[i]) && b[i] != b'>' {
            i += 1;
        }
        let name = self.src[name_start..i]
            .to_ascii_lowercase()
            .replace('\0', "\u{FFFD}");
        d.name = Some(StrTendril::from_slice(&name));
        // After the name: PUBLIC or SYSTEM and quoted identifiers, or bogus.
        skip(&mut i);
        let mut bogus = false;
        if i >= b.len() {
            d.force_quirks = true;
        } else if b[i] == b'>' {
            i += 1;
        } else {
            let keyword = |k: &[u8]| b.len() >= i + 6 && b[i..i + 6].eq_ignore_ascii_case(k);
            let public = keyword(b"public");
            if public || keyword(b"system") {
                i += 6;
                let mut first = true;
                loop {
                    skip(&mut i);
                    match b.get(i) {
                        Some(&q @ (b'"' | b'\'')) => {
                            let end = memchr::memchr(q, &b[i + 1..]).map(|o| i + 1 + o);
                            let gt = memchr::memchr(b'>', &b[i + 1..]).map(|o| i + 1 + o);
                            let (id_end, closed) = match (end, gt) {
                                (Some(e), Some(g)) if g < e => (g, false),
                                (Some(e), _) => (e, true),
                                (None, Some(g)) => (g, false),
                                (None, None) => (b.len(), false),
                            };
                            let id =
                                StrTendril::from_slice(&self.src[i + 1..id_end].replace('\0', "\u{FFFD}"));
                            if public && first {
                                d.public_id = Some(id);
                            } else {
                                d.system_id = Some(id);
                            }
                            if !closed {
                                // `>` inside the identifier or the end of input: quirks.
                                d.force_quirks = true;
                                i = (id_end + 1).min(b.len());
                                break;
                            }
                            i = id_end + 1;
                            if !(public && first) {
                                // After the system identifier: only `>` may follow.
                                skip(&mut i);
                                match b.get(i) {
                                    Some(b'>') => i += 1,
                                    None => d.force_quirks = true,
                                    Some(_) => bogus = true,
                                }
                                break;
                            }
                            first = false;
                        }
                        Some(b'>') => {
                            // A PUBLIC id may stand alone; a missing one is quirks.
                            if first {
                                d.force_quirks = true;
                            }
                            i += 1;
                            break;
                        }
                        None => {
                            d.force_quirks = true;
                            break;
                        }
                        Some(_) => {
                            d.force_quirks = true;
                            bogus = true;
                            break;
                        }
                    }
                }
            } else {
                d.force_quirks = true;
                bogus = true;
            }
        }
        if bogus {
            // Bogus DOCTYPE: everything up to the next `>` is ignored.
            i = memchr::memchr(b'>', &b[i..]).map_or(b.len(), |o| i + o + 1);
        }
        self.pos = i;
        self.send(Token::DoctypeToken(d));
    }

    /// Emit a tag and take the state the tree builder asks for.
    fn emit_tag(&mut self, tag: Tag) -> Next {
        if tag.kind == TagKind::StartTag {
            self.last_start_tag = Some(tag.name.clone());
        }
        let start = tag.kind == TagKind::StartTag;
        match self.sink.process_token(Token::TagToken(tag), 0) {
            TokenSinkResult::RawData(kind) if start => Next::Raw(kind),
            TokenSinkResult::Plaintext if start => Next::Plaintext,
            _ => Next::Data,
        }
    }

    /// RCDATA, RAWTEXT or script data: text up to the end tag of the last
    /// start tag (`</title` followed by a space, `/` or `>`, any case).
    fn raw(&mut self, kind: RawKind) {
        let name = self
            .last_start_tag
            .clone()
            .map(|n| n.to_string())
            .unwrap_or_default();
        let refs = matches!(kind, RawKind::Rcdata);
        let mut i = self.pos;
        loop {
            let Some(off) = memchr::memchr(b'<', &self.b[i..]) else {
                self.raw_text(self.pos, self.b.len(), refs);
                self.pos = self.b.len();
                return;
            };
            let lt = i + off;
            let name_end = lt + 2 + name.len();
            let is_end = self.b.get(lt + 1) == Some(&b'/')
                && !name.is_empty()
                && self.b.len() >= name_end
                && self.b[lt + 2..name_end].eq_ignore_ascii_case(name.as_bytes())
                && matches!(
                    self.b.get(name_end),
                    Some(b'\t' | b'\n' | b'\x0c' | b' ' | b'/' | b'>')
                );
            if !is_end {
                i = lt + 1;
                continue;
            }
            self.raw_text(self.pos, lt, refs);
            // The end tag, with whatever attributes it has, as a tag.
            self.pos = lt + 2;
            let name_start = self.pos;
            self.pos = name_end;
            let tag = Tag {
                kind: TagKind::EndTag,
                name: self.name_at(name_start, name_end),
                self_closing: false,
                attrs: Vec::new(),
                had_duplicate_attributes: false,
            };
            let mut tag = tag;
            if self.attributes(&mut tag) {
                tag.attrs.clear();
                tag.self_closing = false;
                self.emit_tag(tag);
            } else {
                self.pos = self.b.len();
            }
            return;
        }
    }

    /// Raw text from `start` to `end`: NUL as U+FFFD, references decoded in RCDATA.
    fn raw_text(&mut self, start: usize, end: usize, refs: bool) {
        if !refs {
            return self.emit_text(start, end - start, true);
        }
        let mut run = start;
        while run < end {
            let Some(off) = memchr::memchr2(b'&', b'\0', &self.b[run..end]) else {
                self.emit_text(run, end - run, true);
                return;
            };
            let at = run + off;
            self.emit_text(run, at - run, true);
            if self.b[at] == b'\0' {
                self.emit_str("\u{FFFD}");
                run = at + 1;
                continue;
            }
            self.pos = at + 1;
            match self.char_ref(false) {
                // A reference may not run past the end tag.
                Some(chars) if self.pos <= end => {
                    self.emit_str(&chars);
                    run = self.pos;
                }
                _ => {
                    self.emit_text(at, 1, true);
                    run = at + 1;
                }
            }
        }
    }

    /// Emit `len` bytes of the page from `start` as text; NUL as U+FFFD where `nul_as_fffd`.
    fn emit_text(&mut self, start: usize, len: usize, nul_as_fffd: bool) {
        if len == 0 {
            return;
        }
        let bytes = &self.b[start..start + len];
        if nul_as_fffd && memchr::memchr(0, bytes).is_some() {
            let text = self.src[start..start + len].replace('\0', "\u{FFFD}");
            return self.emit_str(&text);
        }
        let text = self.sub(start, len);
        self.send(Token::CharacterTokens(text));
    }

    fn emit_str(&mut self, s: &str) {
        self.send(Token::CharacterTokens(StrTendril::from_slice(s)));
    }

    /// A sub-tendril of the page: shares its buffer (small ones are copied inline).
    fn sub(&self, start: usize, len: usize) -> StrTendril {
        self.page.subtendril(start as u32, len as u32)
    }

    fn send(&self, token: Token) {
        let _ = self.sink.process_token(token, 0);
    }
}

/// The first position of `needle` in `hay` at or after `from`.
fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(&hay[from..], needle).map(|o| from + o)
}

/// The tree as text (elements with their kept attributes, text nodes), to
/// compare the trees two tokenizers lead to.
fn tree_text(dom: &super::dom::Dom) -> String {
    use super::dom::{Edge, Node};
    let mut out = String::new();
    for edge in dom.root().traverse() {
        match edge {
            Edge::Open(node) => match node.value() {
                Node::Element(el) => {
                    out.push('<');
                    out.push_str(el.name());
                    for (name, value) in el.attrs() {
                        out.push_str(&format!(" {name}={value:?}"));
                    }
                    out.push('>');
                }
                Node::Text(t) => out.push_str(&format!("{:?}", &**t)),
                _ => out.push('?'),
            },
            Edge::Close(node) => {
                if let Node::Element(el) = node.value() {
                    out.push_str(&format!("</{}>", el.name()));
                }
            }
        }
    }
    out
}

/// Whether this tokenizer and html5ever's lead html5ever's tree builder to the
/// same tree for `html` (no deadline); `Err` holds both trees when they differ.
pub(super) fn check_against_html5ever(html: &str) -> Result<(), (String, String)> {
    let ours = super::parse::parse(html, None).map(|d| tree_text(&d));
    let theirs = super::parse::parse_html5ever_reference(html).map(|d| tree_text(&d));
    match (ours, theirs) {
        (Ok(a), Ok(b)) if a == b => Ok(()),
        (a, b) => Err((format!("{a:?}"), format!("{b:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::check_against_html5ever;

    /// Pieces of tag soup: every tokenizer state this tokenizer implements,
    /// broken markup, references in text and attributes, raw-text elements,
    /// foreign content, NULs and carriage returns.
    pub(super) const PIECES: &[&str] = &[
        "text ", "中文", "\n", "\r\n", "\r", "  ", "\0", "<", ">", "&", "&amp;", "&amp", "&AMP",
        "&notit;", "&notin;", "&not", "&#65;", "&#x4e2d;", "&#X41", "&#0;", "&#128;", "&#x110000;",
        "&#xD800;", "&#;", "&#x;", "&bogus;", "&lt", "&copy2", "<div>", "</div>", "<p>", "</p>",
        "<P CLASS=Intro>", "<p class=\"a b\" id='x'>", "<span style=\"display: none\">", "</span>",
        "<b>", "</b>", "<i>", "</i>", "<a href=\"?a=1&amp;b=2&notit=3&copy=4\">", "<a href=x&lt>", "</a>",
        "<table>", "<tr>", "<td>", "</td>", "</table>", "<ul>", "<li>", "</ul>", "<br/>", "<br>",
        "</br>", "<img src=a.png alt=\"x>y\">", "<input type=hidden>", "<h1>", "</h1>", "<pre>",
        "</pre>", "<title>", "</title>", "<title>a &amp; <b>b</b></TITLE >", "<textarea>x</textarea>",
        "<style>p{}</style>", "<script>if (a<b) x()</script>", "<xmp><p>raw</xmp>",
        "<noscript><p>no</p></noscript>", "<iframe src=x>f</iframe>", "<plaintext>", "<svg>",
        "</svg>", "<math>", "</math>", "<![CDATA[c]]>", "<!-- c -->", "<!-->", "<!--->",
        "<!-- a -- b --!>", "<!--<!-- x -->", "<!---->", "<!--", "<!DOCTYPE html>",
        "<!doctype HTML PUBLIC \"-//W3C//DTD HTML 4.01 Transitional//EN\">",
        "<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Strict//EN\" \"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd\">",
        "<!DOCTYPE html SYSTEM 'about:legacy-compat'>", "<!DOCTYPE>", "<!DOCTYPE foo bar>",
        "<!DOCTYPE html PUBLIC>", "<!DOCTYPE html PUBLIC \"x>", "<?xml version=\"1.0\"?>", "<!x>",
        "</ x>", "</>", "</", "<3", "<a b c=d e='f' g=\"h\"/>", "<div =x a==b>", "<div a=\"1\" a=\"2\">",
        "<div\0x>", "<d\0iv>", "<div a=\0>", "<select><option>o</select>", "<frameset>", "<body>",
        "<html lang=en>", "<head>", "</head>", "<meta charset=gbk>", "<form>", "</form>", "<button>",
        "<font color=red>", "<center>", "<dl><dt>t<dd>d</dl>", "<table><td>x<p>y</table>",
        "<b><p>misnested</b>text</p>", "<a><div>x</a>y</div>", "<nobr>", "<template>t</template>",
        "<div attr", "<div attr=", "<div attr=\"unclosed", "<div/", "<foo:bar x:y=1>",
    ];

    #[test]
    fn same_tree_as_html5evers_tokenizer_on_tag_soup() {
        // A small deterministic generator: each case joins 1-24 pieces.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for case in 0..20_000 {
            let len = 1 + next(24);
            let html: String = (0..len).map(|_| PIECES[next(PIECES.len())]).collect();
            if let Err((ours, theirs)) = check_against_html5ever(&html) {
                panic!("case {case}: {html:?}\n ours:   {ours}\n theirs: {theirs}");
            }
        }
    }

    #[test]
    fn same_tree_on_the_bundled_pages() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/data-samples/web");
        for entry in std::fs::read_dir(dir).expect("data-samples/web") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "html") {
                let bytes = std::fs::read(&path).expect("page");
                let html = crate::io::html::decode_html(&bytes).text;
                assert!(check_against_html5ever(&html).is_ok(), "{}", path.display());
            }
        }
    }
}
#[cfg(test)]
mod scratch {
    #[test]
    #[ignore]
    fn shrink() {
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let pieces = super::tests::PIECES;
        let mut html = String::new();
        for _ in 0..300_000 {
            let len = 1 + next(40);
            let h: String = (0..len).map(|_| pieces[next(pieces.len())]).collect();
            if super::check_against_html5ever(&h).is_err() {
                html = h;
                break;
            }
        }
        if html.is_empty() {
            return;
        }
        loop {
            let mut changed = false;
            for cut in [50, 20, 5, 1] {
                while html.len() > cut {
                    let mut i = cut;
                    while !html.is_char_boundary(i) {
                        i += 1;
                    }
                    let t = html[i..].to_string();
                    if super::check_against_html5ever(&t).is_err() {
                        html = t;
                        changed = true;
                    } else {
                        break;
                    }
                }
                while html.len() > cut {
                    let mut i = html.len() - cut;
                    while !html.is_char_boundary(i) {
                        i -= 1;
                    }
                    let t = html[..i].to_string();
                    if super::check_against_html5ever(&t).is_err() {
                        html = t;
                        changed = true;
                    } else {
                        break;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        let (a, b) = super::check_against_html5ever(&html).unwrap_err();
        panic!("{html:?}\n{a}\n{b}");
    }
}
