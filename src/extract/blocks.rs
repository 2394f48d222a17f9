//! Step 1, blocks: one walk over the parsed tree cuts the page into text
//! blocks at block-level elements and records the tree of elements that hold
//! them, which is all the later steps look at.
//!
//! Each block counts its letters and digits, those inside links, its sentence
//! punctuation and its CJK characters; each element gets the mark and names
//! its tag and `class`/`id` give it (`marks.rs`). Ignored and hidden subtrees
//! give no text; the `<head>` gives only the title. The walk is iterative (deep
//! nesting cannot overflow the stack) and checks the deadline every few
//! thousand nodes. At its end the marks are settled over the whole page
//! ([`resolve_marks`], [`mark_teaser_lists`]).

use std::time::Instant;

use super::dom::{Dom, Edge, Element, Node, NodeRef};
use super::marks::{class_names, content_hint, mark_of, mark_teaser_lists, resolve_marks, unit_shape_of};
use super::page::{Block, BlockKind, El, ListRole, Mark, Page};
use super::parse::past;
use super::ExtractError;
use crate::text::is_cjk;

/// Elements whose content is never text a reader sees.
fn is_ignored(tag: &str) -> bool {
    matches!(
        tag,
        "script"
            | "style"
            | "noscript"
            | "template"
            | "svg"
            | "iframe"
            | "object"
            | "embed"
            | "canvas"
            | "select"
            | "option"
            | "button"
            | "input"
            | "textarea"
            | "head"
            | "video"
            | "audio"
            | "map"
    )
}

/// Elements that start a new block (CSS `display: block` and table parts by default).
fn is_block(tag: &str) -> bool {
    matches!(
        tag,
        "address"
            | "article"
            | "aside"
            | "blockquote"
            | "body"
            | "center"
            | "dd"
            | "details"
            | "dialog"
            | "dir"
            | "div"
            | "dl"
            | "dt"
            | "fieldset"
            | "figcaption"
            | "figure"
            | "footer"
            | "form"
            | "h1"
            | "h2"
            | "h3"
            | "h4"
            | "h5"
            | "h6"
            | "header"
            | "hgroup"
            | "hr"
            | "html"
            | "li"
            | "main"
            | "menu"
            | "nav"
            | "ol"
            | "p"
            | "pre"
            | "section"
            | "summary"
            | "table"
            | "caption"
            | "tbody"
            | "thead"
            | "tfoot"
            | "tr"
            | "td"
            | "th"
            | "ul"
            | "legend"
    )
}

/// Whether an element is hidden by its attributes (`hidden`, `display:none`, `aria-hidden`).
fn is_hidden(el: &Element) -> bool {
    el.attrs().any(|(name, value)| match name {
        "hidden" => true,
        "aria-hidden" => value.eq_ignore_ascii_case("true"),
        "style" => style_holds(value, b"display:none"),
        _ => false,
    })
}

/// Whether an element is made invisible by `visibility:hidden` (see [`Invisible`]).
fn is_invisible(el: &Element) -> bool {
    el.attr("style")
        .is_some_and(|v| style_holds(v, b"visibility:hidden"))
}

/// Whether a `style` value holds `pattern` (lower case, no spaces, its first
/// byte nowhere else in it), whitespace and ASCII case aside
/// (`Display: none !important`), without building the folded copy.
fn style_holds(style: &str, pattern: &[u8]) -> bool {
    let mut matched = 0;
    for c in style.chars().filter(|c| !c.is_whitespace()) {
        let c = c.to_ascii_lowercase();
        // The first byte occurs only first in the pattern, so a mismatch restarts at 0 or 1.
        matched = if c == pattern[matched] as char {
            matched + 1
        } else {
            usize::from(c == pattern[0] as char)
        };
        if matched == pattern.len() {
            return true;
        }
    }
    false
}

/// Elements styled `visibility:hidden` are left out like hidden ones, except one
/// that holds two thirds of the page's text or more: a body that a script reveals
/// (WeChat articles ship `#js_content` so), which a reader does see.
#[derive(Default)]
struct Invisible {
    /// Letters and digits of the page's text nodes, counted at the first such element.
    page_chars: Option<usize>,
    /// Inside an invisible element that was kept: those inside it are kept too
    /// (each decision counts its subtree once, so nesting stays linear).
    kept_depth: usize,
}

impl Invisible {
    /// Whether the invisible element `node` is left out.
    fn leaves_out(&mut self, doc: &Dom, node: NodeRef) -> bool {
        if self.kept_depth > 0 {
            self.kept_depth += 1;
            return false;
        }
        let page = *self.page_chars.get_or_insert_with(|| text_chars(doc.root()));
        if text_chars(node) * 3 < page * 2 {
            return true;
        }
        self.kept_depth = 1;
        false
    }

    /// Called when a kept invisible element closes.
    fn close(&mut self) {
        self.kept_depth = self.kept_depth.saturating_sub(1);
    }
}

/// Letters and digits in the text nodes under `node`.
fn text_chars(node: NodeRef) -> usize {
    node.descendants()
        .filter_map(|n| n.value().as_text())
        .map(|t| t.chars().filter(|c| c.is_alphanumeric()).count())
        .sum()
}

fn is_sentence_punct(c: char) -> bool {
    matches!(
        c,
        '，' | '。' | '！' | '？' | '；' | '：' | '、' | ',' | '.' | '!' | '?' | ';' | ':'
    )
}

/// Per-open-element state during the walk.
struct Open {
    /// Index in `Page::elements` (block elements only; inline ones borrow their parent's).
    el: usize,
    is_block: bool,
    in_link: bool,
    in_pre: bool,
    /// Inside `<pre>`, `<code>` or a formula: a syntax highlighter's `class="token
    /// comment"` names a code token, a formula renderer's classes its parts, not page furniture.
    in_code: bool,
    in_article: bool,
    kind: BlockKind,
}

/// The block being filled.
#[derive(Default)]
struct Pending {
    text: String,
    chars: usize,
    link_chars: usize,
    punct: usize,
    cjk_text: usize,
    /// Whether the last character pushed was whitespace (for folding).
    space: bool,
}

/// Walk the tree once and cut it into blocks; see the module docs.
pub(super) fn collect_blocks(doc: &Dom, deadline: Option<Instant>) -> Result<Page, ExtractError> {
    let mut page = Page::default();
    page.elements.push(El {
        parent: 0,
        first_block: 0,
        end_block: 0,
        own_mark: Mark::None,
        hint: false,
        list: ListRole::None,
        whole_page: true,
        thread: false,
        lead: false,
        user: false,
        unit_shape: 0,
    });
    let mut stack: Vec<Open> = vec![Open {
        el: 0,
        is_block: true,
        in_link: false,
        in_pre: false,
        in_code: false,
        in_article: false,
        kind: BlockKind::Plain,
    }];
    let mut pending = Pending::default();
    // While inside an ignored or hidden subtree: the node that opened it.
    let mut skipping: Option<usize> = None;
    let mut invisible = Invisible::default();
    // Inside the first <h1> (collected for the title).
    let mut in_first_h1 = false;
    let mut seen_h1 = false;
    let mut steps = 0usize;

    for edge in doc.root().traverse() {
        steps += 1;
        if steps.is_multiple_of(4096) && past(deadline) {
            return Err(ExtractError::Timeout);
        }
        match edge {
            Edge::Open(node) => {
                if skipping.is_some() {
                    continue;
                }
                match node.value() {
                    Node::Element(el) => {
                        let tag = el.name();
                        if tag == "head" {
                            read_head(&mut page, node);
                        }
                        if tag == "html" {
                            page.lang_attr = el.attr("lang").map(|s| s.trim().to_string());
                        }
                        if is_ignored(tag)
                            || is_hidden(el)
                            || is_invisible(el) && invisible.leaves_out(doc, node)
                        {
                            skipping = Some(node.id());
                            continue;
                        }
                        if tag == "h1" && !seen_h1 {
                            seen_h1 = true;
                            in_first_h1 = true;
                        }
                        let top = stack.last().expect("root stays open");
                        let in_article = top.in_article || tag == "article" || tag == "main";
                        let class = class_names(el);
                        let hint = content_hint(tag, el, &class);
                        // A formula (MathML, MathJax's `mjx-*` elements, a renderer's
                        // wrapper) is text like code: no class inside it marks anything.
                        let formula = class.formula || tag == "math" || tag.starts_with("mjx-");
                        let in_code = top.in_code || tag == "pre" || tag == "code" || formula;
                        let own_mark = if top.in_code || formula {
                            Mark::None
                        } else {
                            mark_of(tag, &class, top.in_article)
                        };
                        let kind = match tag {
                            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => BlockKind::Heading,
                            "li" => BlockKind::ListItem,
                            "pre" => BlockKind::Code,
                            _ => top.kind,
                        };
                        let in_link = top.in_link || tag == "a";
                        let in_pre = top.in_pre || tag == "pre";
                        if tag == "br" {
                            push_newline(&mut pending);
                            continue;
                        }
                        // A marked inline element (`<span class="share">`) and an inline
                        // caption are grouped like a block.
                        let block = is_block(tag) || own_mark != Mark::None || class.caption;
                        let el_index = if block {
                            flush(&mut page, &mut pending, &stack);
                            let names = class.names;
                            page.elements.push(El {
                                parent: top.el,
                                first_block: page.blocks.len(),
                                end_block: 0,
                                own_mark,
                                hint: hint && own_mark == Mark::None,
                                list: match tag {
                                    "ul" | "ol" => ListRole::List,
                                    "li" => ListRole::Item,
                                    _ => ListRole::None,
                                },
                                whole_page: matches!(tag, "html" | "body"),
                                thread: names.thread,
                                lead: names.lead,
                                user: page.elements[top.el].user || names.user,
                                unit_shape: unit_shape_of(tag, el),
                            });
                            page.elements.len() - 1
                        } else {
                            top.el
                        };
                        stack.push(Open {
                            el: el_index,
                            is_block: block,
                            in_link,
                            in_pre,
                            in_code,
                            in_article,
                            kind,
                        });
                    }
                    Node::Text(t) => {
                        let top = stack.last().expect("root stays open");
                        push_text(&mut pending, t, top.in_link, top.in_pre);
                        if in_first_h1 {
                            page.first_h1.push_str(t);
                        }
                    }
                    _ => {}
                }
            }
            Edge::Close(node) => {
                if let Some(id) = skipping {
                    if id == node.id() {
                        skipping = None;
                    }
                    continue;
                }
                let Node::Element(el) = node.value() else {
                    continue;
                };
                if invisible.kept_depth > 0 && is_invisible(el) {
                    invisible.close();
                }
                let tag = el.name();
                if tag == "h1" {
                    in_first_h1 = false;
                }
                if tag == "br" {
                    continue;
                }
                if stack.len() > 1 {
                    if stack.last().is_some_and(|o| o.is_block) {
                        flush(&mut page, &mut pending, &stack);
                        let o = stack.last().expect("checked");
                        page.elements[o.el].end_block = page.blocks.len();
                    }
                    stack.pop();
                }
            }
        }
    }
    flush(&mut page, &mut pending, &stack);
    page.elements[0].end_block = page.blocks.len();
    resolve_marks(&mut page);
    mark_teaser_lists(&mut page);
    Ok(page)
}

/// The `<title>` and `og:title` of the `<head>` (which is otherwise skipped).
fn read_head(page: &mut Page, head: NodeRef<'_>) {
    for node in head.descendants() {
        let Node::Element(el) = node.value() else {
            continue;
        };
        if el.name() == "title" && page.title_tag.is_empty() {
            for t in node.descendants().filter_map(|n| n.value().as_text()) {
                page.title_tag.push_str(t);
            }
        }
        if el.name() == "meta" && page.og_title.is_empty() {
            let prop = el.attr("property").or_else(|| el.attr("name"));
            if prop == Some("og:title") {
                page.og_title = el.attr("content").unwrap_or("").to_string();
            }
        }
    }
}

fn push_newline(p: &mut Pending) {
    while p.text.ends_with(' ') {
        p.text.pop();
    }
    if !p.text.is_empty() && !p.text.ends_with('\n') {
        p.text.push('\n');
    }
    p.space = true;
}

/// Append a text node to the pending block, folding whitespace outside `<pre>`.
fn push_text(p: &mut Pending, t: &str, in_link: bool, in_pre: bool) {
    if t.is_ascii() {
        push_ascii_text(p, t, in_link, in_pre);
        return;
    }
    for c in t.chars() {
        // CJK unified ideographs are all letters: spared the Unicode table
        // lookup that `is_alphanumeric` does for every non-ASCII character.
        if ('\u{4E00}'..='\u{9FFF}').contains(&c) || c.is_alphanumeric() {
            p.chars += 1;
            if in_link {
                p.link_chars += 1;
            } else if is_cjk(c) {
                p.cjk_text += 1;
            }
        } else if is_sentence_punct(c) {
            p.punct += 1;
        }
        if in_pre {
            p.text.push(c);
            continue;
        }
        if c.is_whitespace() {
            if !p.space && !p.text.is_empty() {
                p.text.push(' ');
            }
            p.space = true;
        } else {
            p.text.push(c);
            p.space = false;
        }
    }
}

/// [`push_text`] for ASCII text (most text nodes of Latin pages and the
/// whitespace between elements of every page): byte tests, no Unicode tables.
fn push_ascii_text(p: &mut Pending, t: &str, in_link: bool, in_pre: bool) {
    p.text.reserve(t.len());
    for &b in t.as_bytes() {
        if b.is_ascii_alphanumeric() {
            p.chars += 1;
            if in_link {
                p.link_chars += 1;
            }
        } else if matches!(b, b',' | b'.' | b'!' | b'?' | b';' | b':') {
            p.punct += 1;
        }
        if in_pre {
            p.text.push(b as char);
            continue;
        }
        // `char::is_whitespace` on ASCII: the five of `is_ascii_whitespace` and U+000B.
        if b.is_ascii_whitespace() || b == 0x0b {
            if !p.space && !p.text.is_empty() {
                p.text.push(' ');
            }
            p.space = true;
        } else {
            p.text.push(b as char);
            p.space = false;
        }
    }
}

/// Close the pending block into `page.blocks`, owned by the innermost open block element.
fn flush(page: &mut Page, p: &mut Pending, stack: &[Open]) {
    let done = std::mem::take(p);
    if done.chars == 0 && done.text.trim().is_empty() {
        return;
    }
    let owner = stack.iter().rev().find(|o| o.is_block).expect("root is a block");
    let top = stack.last().expect("root stays open");
    let text = if top.in_pre {
        done.text.trim_matches('\n').to_string()
    } else if !done.text.contains('\n') {
        // One line (most blocks): its trimmed self, moved rather than rebuilt.
        let trimmed = done.text.trim();
        if trimmed.len() == done.text.len() {
            done.text
        } else {
            trimmed.to_string()
        }
    } else {
        done.text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    };
    if text.is_empty() {
        return;
    }
    page.blocks.push(Block {
        text,
        chars: done.chars,
        link_chars: done.link_chars,
        punct: done.punct,
        cjk_text: done.cjk_text,
        owner: owner.el,
        kind: owner.kind,
        mark: Mark::None,
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn display_none_is_found_through_whitespace_and_case() {
        for hidden in [
            "display:none",
            "color:red; Display : NONE !important",
            "ddisplay:none",
            "display:\u{3000}none",
        ] {
            assert!(super::style_holds(hidden, b"display:none"), "{hidden}");
        }
        for shown in [
            "display:block",
            "visibility:hidden",
            "display:non",
            "display:inline; none",
        ] {
            assert!(!super::style_holds(shown, b"display:none"), "{shown}");
        }
    }

    #[test]
    fn ascii_text_is_pushed_as_by_the_general_path() {
        let text = "  Hello,\tworld!\x0b\x0c 42 items; see: a.b?\r\n  end  ";
        for (in_link, in_pre) in [(false, false), (true, false), (false, true)] {
            let (mut fast, mut general) = (super::Pending::default(), super::Pending::default());
            super::push_ascii_text(&mut fast, text, in_link, in_pre);
            // The general path, on a copy that is not ASCII only at its end.
            super::push_text(&mut general, &format!("{text}é"), in_link, in_pre);
            general.text.pop();
            general.chars -= 1;
            general.link_chars -= usize::from(in_link);
            assert_eq!(
                (fast.text, fast.chars, fast.link_chars, fast.punct, fast.cjk_text),
                (
                    general.text,
                    general.chars,
                    general.link_chars,
                    general.punct,
                    general.cjk_text
                ),
            );
        }
    }

    #[test]
    fn cjk_unified_ideographs_are_alphanumeric() {
        // `push_text` counts U+4E00..U+9FFF as letters without asking the Unicode tables.
        assert!(('\u{4E00}'..='\u{9FFF}').all(char::is_alphanumeric));
    }
}
