//! Main-text extraction from HTML: what the `extract` stage runs on each page.
//!
//! Hand-written on top of html5ever (via `scraper`'s tree) because none of the
//! Rust crates that do this reached the Chinese targets on the magic-html pages
//! (README, "Web text extraction"): forum threads and WeChat/gov.cn layouts are
//! where readability-style scoring and trafilatura's English-tuned rules lose
//! text. The algorithm, in one pass over the tree plus one over its blocks:
//!
//! 1. **Blocks.** The page is cut into text blocks at block-level elements
//!    (`p`, `div`, `li`, `td`, headings, ...); `<br>` is a line break inside a
//!    block. Each block counts its letters and digits (a CJK character is one),
//!    those inside links, and its sentence punctuation (`，。！？；` and ASCII).
//!    `script`, `style`, form controls, hidden elements and the like give no text.
//! 2. **Boilerplate marks.** Elements that are navigation, footers, sidebars,
//!    share bars, ads, cookie banners, breadcrumbs, related/recommended lists,
//!    media players' controls or copyright lines, by tag (`nav`, `footer`,
//!    `aside`, `header` outside `article`) or by a word of their `class`/`id`
//!    (split at `-`, `_`, spaces and case changes, so `header` never matches
//!    `ad`), mark their blocks *hard*: never output, and counted against the
//!    container holding them. Comment sections (`comment`, `reply`, `discuss`,
//!    `cmt`, `pinglun`, ...) are *soft*: left out under an article, kept on a
//!    thread (step 5) and when the comments are all there is (a review page).
//! 3. **Container.** Each block gets a weight: its non-link characters when it
//!    reads like text (punctuation, or 30+ characters), minus its characters
//!    when it is mostly links or hard boilerplate, zero otherwise. Weights are
//!    summed up the tree and the element with the largest sum is the main
//!    container: it holds the most text net of the boilerplate around it, and
//!    on a forum it is the list of all posts rather than one post. An element
//!    that names itself the article body (`<article>`, `articleBody`,
//!    `article-content`, ...) is preferred when it holds a fifth of that weight
//!    (a story above a longer feed); three or more such bodies are a thread's
//!    posts and stand for their common ancestor; a named body inside the
//!    chosen one that holds 90% of its weight is the text without the title,
//!    byline or feedback widget around it. A named body whose prose is
//!    twice the best element's weight wins even when its link cards outweigh
//!    that prose (a restaurant guide whose entries are cards of links). Lists
//!    whose items are linked headlines with summaries (teaser feeds), and 3+
//!    sibling cards of one tag and `class` built the same way, are hard
//!    boilerplate. Inside `<pre>`/`<code>` no `class` marks anything (a
//!    highlighter's `token comment` is code).
//! 4. **Output.** The container's blocks in document order (with a summary or
//!    lead set apart right before it, named so by its `class`), without hard or
//!    (if excluded) soft boilerplate and without link lists; list items get
//!    `- `, `<pre>` is kept verbatim in a ```` ``` ```` fence, table cells are
//!    separate lines; runs of 6+ short label blocks (player buttons) and short
//!    labels inside an author element (`user`, `author`, `nickname`: a post's
//!    user name) are left out, the latter unless nothing else is left; so are
//!    lone button and counter labels (`收藏`, `点赞 (5)`, `Share`), bylines,
//!    copyright lines and disclaimers (`免责声明`, `转载请注明`). Code blocks are
//!    printed whole. An article's title (a leading heading that is the first
//!    `<h1>` or part of `<title>`) is left to `Extracted::title`; a thread keeps
//!    its subject. Runs of whitespace fold to one space.
//! 5. **Threads.** The comment section after the container (the soft blocks
//!    that follow its last block, inside its nearest ancestor below `<body>`
//!    that has any) is a thread's replies and is kept when the container or an
//!    ancestor names itself a forum or Q&A thread (`bbs`, `forum`, `thread`,
//!    `topic`, `question`, `tieba` as a `class`/`id` word), when the post is
//!    shorter than its replies, or when it has under 100 characters;
//!    otherwise it is an article's comments and is left out
//!    (`comments = "keep"`/`"drop"` decide it for every page). A named
//!    thread's text starts with the page's `<h1>` (the question) when the
//!    container left it out.
//!
//! Limits: the parser is fed in 8 KiB chunks and the deadline is checked
//! between chunks and every few thousand nodes, so a pathological page ends as
//! [`ExtractError::Timeout`] instead of holding a worker; the traversal is
//! iterative, so nesting depth cannot overflow the stack.

pub mod score;

use std::time::Instant;

use ego_tree::iter::Edge;
use html5ever::tendril::TendrilSink;
use scraper::{Html, HtmlTreeSink, Node};

/// The main text of a page and what was learned on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Extracted {
    /// The main text: blocks separated by newlines.
    pub text: String,
    /// `og:title`, else the first `<h1>`, else `<title>` (trimmed; may be empty).
    pub title: String,
    /// The `lang` attribute of `<html>`, if any.
    pub lang_attr: Option<String>,
    /// Letters and digits in the main text.
    pub chars_kept: usize,
    /// Letters and digits in all visible text of the page.
    pub chars_total: usize,
}

/// Why a page gave no main text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtractError {
    /// The deadline passed before the page was done.
    Timeout,
}

/// What to do with comment sections (replies under a post, an article's comments).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comments {
    /// Left out under an article, kept on a thread (named a forum or Q&A
    /// thread, a post shorter than its replies) and when they are all the page
    /// has (the default).
    #[default]
    Auto,
    /// Always kept (forum crawls, where the replies are the content).
    Keep,
    /// Never kept.
    Drop,
}

/// Extract the main text of `html`; `deadline` (if any) bounds the work.
pub fn extract(html: &str, deadline: Option<Instant>) -> Result<Extracted, ExtractError> {
    extract_with(html, deadline, Comments::Auto)
}

/// [`extract`], choosing what happens to comment sections.
pub fn extract_with(
    html: &str,
    deadline: Option<Instant>,
    comments: Comments,
) -> Result<Extracted, ExtractError> {
    let doc = parse(&strip_invisible(html), deadline)?;
    let page = collect_blocks(&doc, deadline)?;
    let chars_total = page.blocks.iter().map(|b| b.chars).sum();
    let text = select_main_text(&page, comments);
    let chars_kept = text.chars().filter(|c| c.is_alphanumeric()).count();
    Ok(Extracted {
        text,
        title: page.title(),
        lang_attr: page.lang_attr,
        chars_kept,
        chars_total,
    })
}

/// Parse with html5ever, in chunks so the deadline is checked during parsing.
fn parse(html: &str, deadline: Option<Instant>) -> Result<Html, ExtractError> {
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
fn strip_invisible(html: &str) -> String {
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

fn past(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

/// How a block is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Plain,
    Heading,
    ListItem,
    Code,
}

/// Boilerplate level of an element or block (higher wins when nested).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Mark {
    None,
    /// Comment sections: dropped only when the page has other main text.
    Soft,
    /// Navigation, footers, ads, share bars, ...: never main text.
    Hard,
}

/// A run of text between block-level boundaries.
#[derive(Debug)]
struct Block {
    text: String,
    /// Letters and digits.
    chars: usize,
    /// Letters and digits inside `<a>`.
    link_chars: usize,
    /// Sentence punctuation marks.
    punct: usize,
    /// CJK characters outside links.
    cjk_text: usize,
    /// The innermost element holding the block (index into `Page::elements`).
    owner: usize,
    kind: BlockKind,
    mark: Mark,
}

/// An element of the tree, as far as scoring needs it.
#[derive(Debug)]
struct El {
    parent: usize,
    /// Blocks of this element's subtree: `first_block..end_block`.
    first_block: usize,
    end_block: usize,
    /// The mark its own tag and `class`/`id` give it (see [`resolve_marks`]).
    own_mark: Mark,
    /// Named as the article body (`<article>`, `itemprop="articleBody"`,
    /// `class="article-content"`, ...): see [`content_hint`].
    hint: bool,
    /// `ul`/`ol` (`List`) or `li` (`Item`), for [`mark_teaser_lists`].
    list: ListRole,
    /// `<html>` or `<body>` (or the document itself): the whole page, which
    /// [`replies_after`] does not search.
    whole_page: bool,
    /// Names itself a forum or Q&A thread by a word of its `class`/`id`
    /// ([`THREAD_WORDS`]), for [`is_thread`].
    thread: bool,
    /// Names itself a summary or lead ([`LEAD_WORDS`]), for [`with_lead`].
    lead: bool,
    /// Inside an element named for a post's author ([`USER_WORDS`]), for [`render`].
    user: bool,
    /// Hash of the tag and `class` value: siblings of one shape are repeated
    /// cards of one template, for [`mark_teaser_lists`].
    shape: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListRole {
    None,
    List,
    Item,
}

/// Everything the selection needs from the parsed page.
#[derive(Debug, Default)]
struct Page {
    blocks: Vec<Block>,
    elements: Vec<El>,
    title_tag: String,
    og_title: String,
    first_h1: String,
    lang_attr: Option<String>,
}

impl Page {
    fn title(&self) -> String {
        [&self.og_title, &self.first_h1, &self.title_tag]
            .into_iter()
            .map(|t| collapse_ws(t))
            .find(|t| !t.is_empty())
            .unwrap_or_default()
    }
}

/// Elements whose content is never text a reader sees.
fn is_ignored(tag: &str) -> bool {
    matches!(
        tag,
        "script"
            | "style"
            | "noscript"
            | "template"
            | "svg"
            | "math"
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

/// Words of a `class`/`id` value that name page furniture.
const HARD_WORDS: &[&str] = &[
    "nav",
    "navbar",
    "navigation",
    "menu",
    "menubar",
    "submenu",
    "topbar",
    "footer",
    "foot",
    "ft",
    "breadcrumb",
    "breadcrumbs",
    "crumb",
    "crumbs",
    "share",
    "sharing",
    "social",
    "bshare",
    "jiathis",
    "ad",
    "ads",
    "adv",
    "advert",
    "advertisement",
    "adsbygoogle",
    "banner",
    "sponsor",
    "sponsored",
    "promo",
    "cookie",
    "cookies",
    "consent",
    "gdpr",
    "related",
    "recommend",
    "recommended",
    "sidebar",
    "side",
    "aside",
    "widget",
    "login",
    "signin",
    "toolbar",
    "pagination",
    "pager",
    "subscribe",
    "newsletter",
    "popup",
    "tooltip",
    "modal",
    "qrcode",
    "hotlist",
    "sitemap",
    // Wiki fact boxes and navigation boxes (MediaWiki's `infobox`, `navbox`).
    "infobox",
    "navbox",
    // A media player's controls, quality hints and error messages; a playlist
    // or carousel of other videos and stories (CNN's `video-playlist`).
    "player",
    "mplayer",
    "playlist",
    "carousel",
    "audio",
    // Wiki furniture: `[编辑]` links beside headings, the reference list.
    "editsection",
    "references",
    "reflist",
];

/// Words of a `class`/`id` value that name a comment section.
const SOFT_WORDS: &[&str] = &[
    "comment",
    "comments",
    "reply",
    "replies",
    "discuss",
    "discussion",
    // Abbreviations and pinyin (评论 pinglun) that Chinese sites use.
    "cmt",
    "cmts",
    "cmmt",
    "cmmts",
    "pinglun",
];

/// The boilerplate mark an element's tag and `class`/`id` give it.
fn mark_of(tag: &str, el: &scraper::node::Element, in_article: bool) -> Mark {
    if mark_of_tag(tag, in_article) == Mark::Hard {
        return Mark::Hard;
    }
    let mut mark = Mark::None;
    for (name, value) in el.attrs() {
        if name != "class" && name != "id" {
            continue;
        }
        for class in value.split_whitespace() {
            let words = class_words(class);
            // `enableGAMAds`, `disableAsideSection`, `filterNonGdprEmbeds`: feature
            // flags on a page wrapper, not a name for what the element is.
            if words.first().is_some_and(|w| FLAG_WORDS.contains(&w.as_str())) {
                continue;
            }
            for word in words {
                if HARD_WORDS.contains(&word.as_str()) {
                    return Mark::Hard;
                }
                if SOFT_WORDS.contains(&word.as_str()) {
                    mark = Mark::Soft;
                }
            }
        }
    }
    mark
}

/// First words of a class name that make it a feature flag (see [`mark_of`]).
const FLAG_WORDS: &[&str] = &[
    "enable", "disable", "filter", "has", "no", "show", "hide", "with", "use", "allow",
];

/// Words of a `class`/`id` that, together with one of [`BODY_WORDS`], name an article body.
const ARTICLE_WORDS: &[&str] = &[
    "article", "entry", "post", "story", "news", "detail", "caas", "rich",
];
const BODY_WORDS: &[&str] = &["content", "body", "text", "txt", "cont"];

/// Whether an element names itself the article body, as CMSs and news sites do
/// (`<article>`, `itemprop="articleBody"`, `article-content`, `entry-content`,
/// `post_body`, `caas-body`, `rich_media_content`, ...). Trafilatura starts from
/// a list of such selectors; here they only steer the container choice.
fn content_hint(tag: &str, el: &scraper::node::Element) -> bool {
    if tag == "article" {
        return true;
    }
    let mut article = false;
    let mut body = false;
    for (name, value) in el.attrs() {
        if name == "itemprop" && value.eq_ignore_ascii_case("articlebody") {
            return true;
        }
        if name != "class" && name != "id" {
            continue;
        }
        for word in class_words(value) {
            article |= ARTICLE_WORDS.contains(&word.as_str());
            body |= BODY_WORDS.contains(&word.as_str());
        }
    }
    article && body
}

/// Words of a `class`/`id` that name a forum or Q&A thread, whose replies are
/// its content (`bbs-post-content`, `page-question-detail`, `thread-list`).
const THREAD_WORDS: &[&str] = &["bbs", "forum", "thread", "topic", "question", "tieba"];

/// Words of a `class`/`id` that name an article's summary or lead, which
/// sites often set apart before the body (`art_summary`, `article-intro`; not
/// `lead`, which names lead photos as often).
const LEAD_WORDS: &[&str] = &["summary", "intro", "abstract"];

/// Words of a `class`/`id` that name who wrote a post (`comment-user-title`,
/// `user-name`, `author`): a label there is a name, not text.
const USER_WORDS: &[&str] = &["user", "author", "nickname", "username", "uname"];

/// What an element's `class`/`id` names it: a thread ([`THREAD_WORDS`]), a
/// lead ([`LEAD_WORDS`]), a post's author ([`USER_WORDS`]).
#[derive(Debug, Default, Clone, Copy)]
struct Names {
    thread: bool,
    lead: bool,
    user: bool,
}

/// [`Names`] of an element, in one look at each `class`/`id` value.
fn names_of(el: &scraper::node::Element) -> Names {
    let mut names = Names::default();
    for (name, value) in el.attrs() {
        if name != "class" && name != "id" {
            continue;
        }
        // Most values name none of these: a substring test spares splitting them.
        let lower = value.to_ascii_lowercase();
        let lists = [THREAD_WORDS, LEAD_WORDS, USER_WORDS];
        if !lists.iter().any(|l| l.iter().any(|w| lower.contains(w))) {
            continue;
        }
        let words = class_words(value);
        let has = |list: &[&str]| words.iter().any(|w| list.contains(&w.as_str()));
        names.thread |= has(THREAD_WORDS);
        names.lead |= has(LEAD_WORDS);
        names.user |= has(USER_WORDS);
    }
    names
}

/// An element's [`El::shape`]: its tag and `class` value, hashed.
fn shape_of(tag: &str, el: &scraper::node::Element) -> u64 {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: the same value on every run and machine.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    tag.hash(&mut h);
    el.attr("class").unwrap_or("").hash(&mut h);
    h.finish()
}

/// The boilerplate mark of a tag alone.
fn mark_of_tag(tag: &str, in_article: bool) -> Mark {
    match tag {
        "nav" | "footer" | "aside" | "menu" => Mark::Hard,
        "header" if !in_article => Mark::Hard,
        _ => Mark::None,
    }
}

/// `class`/`id` words, lower-cased: split at non-alphanumerics, digits and
/// lower-to-upper case changes (`shareBar` -> `share`, `bar`).
fn class_words(value: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in value.chars() {
        if c.is_ascii_alphabetic() {
            if c.is_ascii_uppercase() && prev_lower && !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
            prev_lower = c.is_ascii_lowercase();
            cur.push(c.to_ascii_lowercase());
        } else {
            prev_lower = false;
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// Whether an element is hidden by its attributes (`hidden`, `display:none`, `aria-hidden`).
fn is_hidden(el: &scraper::node::Element) -> bool {
    el.attrs().any(|(name, value)| match name {
        "hidden" => true,
        "aria-hidden" => value.eq_ignore_ascii_case("true"),
        "style" => {
            let v: String = value
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect::<String>()
                .to_ascii_lowercase();
            // Not `visibility:hidden`: WeChat articles hide the body that way until a script shows it.
            v.contains("display:none")
        }
        _ => false,
    })
}

/// CJK ideographs, kana and hangul (as `normalize::is_cjk`; repeated here so the
/// module builds alone inside benches/extract-peers).
fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xAC00..=0xD7AF | 0xF900..=0xFAFF | 0x20000..=0x3134F)
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
    /// Inside `<pre>` or `<code>`: a syntax highlighter's `class="token comment"`
    /// names a code token, not page furniture.
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
fn collect_blocks(doc: &Html, deadline: Option<Instant>) -> Result<Page, ExtractError> {
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
        shape: 0,
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
    let mut skipping: Option<ego_tree::NodeId> = None;
    // Inside the first <h1> (collected for the title).
    let mut in_first_h1 = false;
    let mut seen_h1 = false;
    let mut steps = 0usize;

    for edge in doc.tree.root().traverse() {
        steps += 1;
        if steps % 4096 == 0 && past(deadline) {
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
                        if is_ignored(tag) || is_hidden(el) {
                            skipping = Some(node.id());
                            continue;
                        }
                        if tag == "h1" && !seen_h1 {
                            seen_h1 = true;
                            in_first_h1 = true;
                        }
                        let top = stack.last().expect("root stays open");
                        let in_article = top.in_article || tag == "article" || tag == "main";
                        let hint = content_hint(tag, el);
                        let in_code = top.in_code || tag == "pre" || tag == "code";
                        let own_mark = if top.in_code {
                            Mark::None
                        } else {
                            mark_of(tag, el, top.in_article)
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
                        // A marked inline element (`<span class="share">`) is grouped like a block.
                        let block = is_block(tag) || own_mark != Mark::None;
                        let el_index = if block {
                            flush(&mut page, &mut pending, &stack);
                            let names = names_of(el);
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
                                shape: shape_of(tag, el),
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

/// Give each block the strongest mark among its elements, except that a
/// *hard* mark is void on an element holding half or more of the page's text
/// unless a named article body lies beside it: a `class="breadcrumb"` div
/// left unclosed around the article, or `<body class="has-menu">`, is not
/// boilerplate, a `recommend` block of whole stories next to the story is.
fn resolve_marks(page: &mut Page) {
    let n = page.elements.len();
    let mut own_text = vec![0usize; n];
    for b in &page.blocks {
        if b.reads_like_text() {
            own_text[b.owner] += b.chars - b.link_chars;
        }
    }
    let text = subtree_sums(page, own_text);
    let total = text[0];
    // Named article bodies with a tenth of the page's text: a hard element
    // beside one of them is boilerplate however long (a "recommended" block
    // of whole articles under a short news item).
    // Counted per subtree and per ancestor chain, so that "a body beside this
    // element" is O(1) however deep the page nests.
    let body: Vec<bool> = (0..n)
        .map(|i| page.elements[i].hint && total > 0 && text[i] * 10 >= total)
        .collect();
    let in_subtree = subtree_sums(page, body.iter().map(|&b| usize::from(b)).collect());
    let mut above = vec![0usize; n];
    for i in 1..n {
        let p = page.elements[i].parent;
        above[i] = above[p] + usize::from(body[p]);
    }
    let mut mark = vec![Mark::None; n];
    for i in 0..n {
        let el = &page.elements[i];
        let beside = in_subtree[0] - in_subtree[i] - above[i];
        let swallows = el.own_mark == Mark::Hard && total > 0 && text[i] * 2 >= total && beside == 0;
        let own = if swallows { Mark::None } else { el.own_mark };
        let inherited = if i == 0 { Mark::None } else { mark[el.parent] };
        mark[i] = inherited.max(own);
    }
    for b in &mut page.blocks {
        b.mark = mark[b.owner];
    }
}

/// Items of a list (or cards of one template) from which it is taken for a list of teasers.
const MIN_TEASERS: usize = 3;

/// Letters and digits outside links above which a card is a story or a post, not a teaser.
const MAX_TEASER_TEXT: usize = 400;

/// Mark lists of teasers *hard*: a `ul`/`ol` of 3+ items, most of which hold a
/// linked headline (a block that is mostly link text) and a summary that reads
/// like prose. "Other people also read" feeds under a news story look exactly
/// so, and their summaries would otherwise outweigh the story; a list in an
/// article rarely gives every item a linked line of its own. Sites build the
/// same feeds from `div` cards: 3+ siblings of one shape (tag and `class`),
/// most of them opening with a linked headline of a few words over a short
/// summary, are marked too (a forum post opens with a linked user name, too
/// short for a headline, and runs longer).
fn mark_teaser_lists(page: &mut Page) {
    let n = page.elements.len();
    let mut items = vec![0usize; n];
    let mut teasers = vec![0usize; n];
    // Siblings per (parent, shape); only shapes repeated MIN_TEASERS times are
    // looked at as cards, so each element's blocks are not scanned for nothing.
    let mut cards: std::collections::HashMap<(usize, u64), (usize, usize)> = Default::default();
    for el in &page.elements[1..] {
        cards.entry((el.parent, el.shape)).or_default().0 += 1;
    }
    for i in 1..n {
        let el = &page.elements[i];
        let p = el.parent;
        let blocks = &page.blocks[el.first_block..el.end_block];
        let card = cards.get_mut(&(p, el.shape)).expect("counted above");
        if card.0 >= MIN_TEASERS && is_teaser_card(blocks) {
            card.1 += 1;
        }
        if el.list != ListRole::Item || page.elements[p].list != ListRole::List {
            continue;
        }
        items[p] += 1;
        let headline = blocks.iter().any(|b| b.is_link_list() && b.chars >= 4);
        let summary = blocks.iter().any(|b| b.reads_like_text() && b.mark == Mark::None);
        if headline && summary {
            teasers[p] += 1;
        }
    }
    let teaser_feed = |count: usize, teaser: usize| count >= MIN_TEASERS && teaser * 5 >= count * 3;
    for i in 0..n {
        let el = &page.elements[i];
        let card_of_feed = i > 0 && {
            let (count, teaser) = cards[&(el.parent, el.shape)];
            teaser_feed(count, teaser)
        };
        if teaser_feed(items[i], teasers[i]) || card_of_feed {
            let (a, b) = (el.first_block, el.end_block);
            for blk in &mut page.blocks[a..b] {
                blk.mark = Mark::Hard;
            }
        }
    }
}

/// A card that opens with a linked headline (mostly link text, 10+ letters,
/// 8+ CJK characters or 3+ words) and adds a short summary that reads like prose.
fn is_teaser_card(blocks: &[Block]) -> bool {
    let Some(at) = blocks.iter().position(|b| b.chars > 0) else {
        return false;
    };
    let first = &blocks[at];
    let headline = first.is_link_list()
        && first.chars >= 10
        && (first.text.chars().filter(|c| is_cjk(*c)).count() >= 8
            || first.text.split_whitespace().count() >= 3);
    let text: usize = blocks.iter().map(|b| b.chars - b.link_chars).sum();
    headline
        && text <= MAX_TEASER_TEXT
        && blocks[at + 1..]
            .iter()
            .any(|b| b.reads_like_text() && b.mark == Mark::None)
}

/// The `<title>` and `og:title` of the `<head>` (which is otherwise skipped).
fn read_head(page: &mut Page, head: ego_tree::NodeRef<'_, Node>) {
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
    for c in t.chars() {
        if c.is_alphanumeric() {
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

/// Labels of buttons and counters (letters only, lower-cased; see
/// [`Block::is_ui_label`]). Not `编辑`, `更多`, `阅读` or `复制链接`: the
/// magic-html forum gold keeps those on some pages.
const UI_LABELS: &[&str] = &[
    "收藏",
    "点赞",
    "分享",
    "举报",
    "回复",
    "评论",
    "管理",
    "浏览",
    "赞同",
    "转发",
    "喜欢",
    "不喜欢",
    "打赏",
    "赞赏",
    "有用",
    "没用",
    "个评论",
    "条评论",
    "条回复",
    "人赞同了该回答",
    "更多回答",
    "仅看楼主",
    "只看楼主",
    "倒序看帖",
    "阅读全文",
    "展开全文",
    "查看更多",
    "加载更多",
    "返回顶部",
    "阅读下一篇",
    "猜你喜欢",
    "相关推荐",
    "相关阅读",
    "减少或屏蔽此类内容推荐",
    // Discuz! post headers and author boxes.
    "查看回复",
    "电梯直达",
    "主题",
    "帖子",
    "积分",
    "楼主",
    "沙发",
    "板凳",
    "share",
    "reply",
    "like",
    "likes",
    "report",
    "follow",
    "print",
    "email",
    "tweet",
    "readmore",
    "loadmore",
    "showmore",
    "comments",
];

/// How much a character of links or boilerplate counts against a container,
/// relative to a character of text (below 1: a forum thread's per-post user
/// links and buttons must not split the thread into single posts).
const LINK_PENALTY: f64 = 0.5;

impl Block {
    fn link_density(&self) -> f64 {
        if self.chars == 0 {
            0.0
        } else {
            self.link_chars as f64 / self.chars as f64
        }
    }

    /// Mostly link text: a menu, a list of related articles, a tag cloud.
    fn is_link_list(&self) -> bool {
        self.chars > 0 && self.link_density() > 0.5
    }

    /// A copyright or licence line (a footer that sits inside the container).
    fn is_copyright(&self) -> bool {
        const SIGNS: &[&str] = &[
            "©",
            "Copyright",
            "COPYRIGHT",
            "版权所有",
            "ICP备",
            "All Rights Reserved",
            "All rights reserved",
            // The hosting disclaimer of Chinese self-media platforms (快传号, 搜狐号, 网易号):
            // "...本平台仅提供信息存储服务", "...仅提供信息存储空间服务".
            "仅提供信息存储",
            "information storage service",
            // Disclaimers and reprint notices under an article.
            "免责声明",
            "版权声明",
            "转载请注明",
            "请勿转载",
            "观点和立场",
            "仅代表作者",
        ];
        self.chars <= 400 && SIGNS.iter().any(|s| self.text.contains(s))
    }

    /// A widget's label standing alone: a button or counter (`收藏`, `点赞 (5)`,
    /// `8条评论`, `仅看楼主`, `Share`), which no reader takes for text. The block,
    /// without digits, spaces, brackets and punctuation, is one of [`UI_LABELS`].
    fn is_ui_label(&self) -> bool {
        if self.chars == 0 || self.chars > 16 {
            return false;
        }
        let word: String = self
            .text
            .chars()
            .filter(|c| c.is_alphabetic())
            .flat_map(char::to_lowercase)
            .collect();
        UI_LABELS.contains(&word.as_str())
    }

    /// A byline or post header: short, dated, not a sentence
    /// (`发表于 2024-5-18 19:27:00 | 只看该作者`, `时间：2024.05.20 来源：...`).
    fn is_meta_line(&self) -> bool {
        self.chars <= 80
            && !self
                .text
                .chars()
                .any(|c| matches!(c, '，' | '。' | '！' | '？' | '；'))
            // An English sentence ends so; a Chinese citation (`新华网. 2023-12-06.`) too.
            && !(self.text.trim_end().ends_with(['.', '!', '?'])
                && self.text.chars().filter(|c| is_cjk(*c)).count() * 3 < self.chars)
            && has_date_or_time(&self.text)
    }

    /// The block's contribution to its containers' scores (see the module docs).
    fn weight(&self, soft_counts: bool) -> f64 {
        let text = (self.chars - self.link_chars) as f64;
        if self.mark == Mark::Hard || self.is_link_list() {
            return -LINK_PENALTY * self.chars as f64;
        }
        if self.mark == Mark::Soft && !soft_counts {
            return 0.0;
        }
        if self.reads_like_text() {
            text
        } else {
            0.0
        }
    }

    /// Sentence punctuation, 10+ CJK characters or 30+ letters outside links:
    /// prose, not a label (`国内做社区需要严格控制用户内容` is a sentence).
    fn reads_like_text(&self) -> bool {
        !self.is_link_list() && (self.punct > 0 || self.cjk_text >= 10 || self.chars - self.link_chars >= 30)
    }

    /// Whether the block belongs in the output once its container is chosen.
    fn is_output(&self, soft_counts: bool) -> bool {
        // Code is printed whole: `127.0.0.1` is no date, a licence header no footer.
        self.is_container_text(soft_counts)
            && (self.kind == BlockKind::Code
                || !self.is_copyright() && !self.is_meta_line() && !self.is_ui_label())
    }

    /// Whether the block is the container's own text (bylines and footers
    /// included): what [`select_main_text`] measures.
    fn is_container_text(&self, soft_counts: bool) -> bool {
        match self.mark {
            Mark::Hard => false,
            Mark::Soft if !soft_counts => false,
            _ => !self.is_link_list(),
        }
    }
}

/// A named article body is chosen over the heaviest element when it holds at
/// least this share of that element's weight (a news page whose feed of other
/// stories outweighs the story itself).
const HINT_SHARE: f64 = 0.2;

/// A named body inside the heaviest named body is chosen instead when it holds
/// this share of its weight (0.8 did better on the development half but lost
/// two held-out pages, so the stricter value stays).
const NESTED_BODY_SHARE: f64 = 0.9;

/// Named bodies on one page from which they are taken to be a thread's posts.
const MIN_POSTS: usize = 3;

/// The element with the largest summed block weight (the deepest one on ties),
/// unless a named article body ([`content_hint`]) that is not inside it holds
/// [`HINT_SHARE`] of its weight.
fn best_container(page: &Page, soft_counts: bool) -> (usize, f64) {
    let sum = element_weights(page, soft_counts);
    let mut best = (0, f64::MIN);
    for (i, &s) in sum.iter().enumerate() {
        // `>` keeps the first (outermost) of equal sums; prefer the deeper one
        // only when it holds the same weight, i.e. the outer adds nothing.
        if s > best.1 || (s == best.1 && is_inside(page, i, best.0)) {
            best = (i, s);
        }
    }
    // Named bodies with text, outermost only; several (a forum's posts, each a
    // `post-content`) stand for their common ancestor, the thread.
    // (An `<article>` whose link cards outweigh its prose is no candidate, and
    // does not hide the `entry-content` inside it.)
    let candidate: Vec<bool> = (0..sum.len())
        .map(|i| page.elements[i].hint && sum[i] > 0.0)
        .collect();
    let tops: Vec<usize> = (0..sum.len())
        .filter(|&i| candidate[i] && !has_candidate_ancestor(page, &candidate, i))
        .collect();
    // A named body whose prose is twice the best container's net weight, though
    // its link cards outweigh that prose (a restaurant guide whose entries are
    // cards of links): the deepest with the most prose.
    let prose = prose_weights(page, soft_counts);
    let mut carded: Option<usize> = None;
    for i in (0..sum.len()).filter(|&i| page.elements[i].hint && sum[i] <= 0.0) {
        if prose[i] >= 2.0 * best.1.max(0.0) && prose[i] > 0.0 && carded.is_none_or(|c| prose[i] >= prose[c])
        {
            carded = Some(i);
        }
    }
    if let Some(i) = carded {
        return (i, prose[i]);
    }
    let Some(&first) = tops.first() else { return best };
    let chosen = if tops.len() >= MIN_POSTS {
        tops[1..].iter().fold(first, |a, &b| common_ancestor(page, a, b))
    } else {
        // One or two: the article and perhaps a teaser or a lead; the heaviest
        // named body, nested ones included (an inner body without the byline).
        let mut pick = first;
        for i in (0..sum.len()).filter(|&i| page.elements[i].hint) {
            if sum[i] > sum[pick] || (sum[i] == sum[pick] && is_inside(page, i, pick)) {
                pick = i;
            }
        }
        // A named body inside it with nearly all of its weight is the text
        // itself; the outer one adds a title, a byline or a feedback widget.
        let heaviest = sum[pick];
        for i in (0..sum.len()).filter(|&i| page.elements[i].hint) {
            if is_inside(page, i, pick) && sum[i] >= NESTED_BODY_SHARE * heaviest {
                pick = i;
            }
        }
        pick
    };
    let hinted = (chosen, sum[chosen]);
    if hinted.1 > 0.0
        && hinted.1 >= HINT_SHARE * best.1
        && !is_inside(page, best.0, hinted.0)
        && hinted.0 != best.0
    {
        return hinted;
    }
    best
}

/// Each element's value summed over its subtree, from each element's `own` value.
fn subtree_sums<T: Copy + std::ops::AddAssign>(page: &Page, mut own: Vec<T>) -> Vec<T> {
    // Elements were pushed in document (pre-)order: children come after parents.
    for i in (1..page.elements.len()).rev() {
        let v = own[i];
        own[page.elements[i].parent] += v;
    }
    own
}

/// Each element's summed `weight` of the blocks in its subtree.
fn block_sums(page: &Page, weight: impl Fn(&Block) -> f64) -> Vec<f64> {
    let mut own = vec![0.0f64; page.elements.len()];
    for b in &page.blocks {
        own[b.owner] += weight(b);
    }
    subtree_sums(page, own)
}

/// Each element's summed block weight.
fn element_weights(page: &Page, soft_counts: bool) -> Vec<f64> {
    block_sums(page, |b| b.weight(soft_counts))
}

/// Each element's summed weight of blocks that read like text (no penalties).
fn prose_weights(page: &Page, soft_counts: bool) -> Vec<f64> {
    block_sums(page, |b| b.weight(soft_counts).max(0.0))
}

fn has_candidate_ancestor(page: &Page, candidate: &[bool], mut el: usize) -> bool {
    while el != 0 {
        el = page.elements[el].parent;
        if candidate[el] {
            return true;
        }
    }
    false
}

/// The deepest element holding both `a` and `b` (each counts as holding itself).
fn common_ancestor(page: &Page, a: usize, b: usize) -> usize {
    let mut x = a;
    loop {
        if x == b || is_inside(page, b, x) {
            return x;
        }
        if x == 0 {
            return 0;
        }
        x = page.elements[x].parent;
    }
}

fn is_inside(page: &Page, mut el: usize, ancestor: usize) -> bool {
    while el != 0 {
        el = page.elements[el].parent;
        if el == ancestor {
            return true;
        }
    }
    false
}

/// Minimum main text, in letters/digits, for comment sections to be left out
/// when they are not a thread's replies (see [`select_main_text`]).
const MIN_MAIN_CHARS: usize = 100;

/// The container's blocks (indices into `Page::blocks`) and the letters/digits
/// of its text (bylines and footers included).
struct Selection {
    el: usize,
    blocks: Vec<usize>,
    chars: usize,
}

/// Choose the container, decide about the replies after it, and print.
fn select_main_text(page: &Page, comments: Comments) -> String {
    let strict = container_blocks(page, false);
    let (base, soft_counts) = match comments {
        Comments::Drop => (strict, false),
        Comments::Keep => (container_blocks(page, true), true),
        Comments::Auto if strict.chars >= MIN_MAIN_CHARS => (strict, false),
        Comments::Auto => {
            let mut loose = container_blocks(page, true);
            if loose.chars > strict.chars {
                // The replies outweigh a short post: the post, when it comes
                // before them and outside them, opens the thread.
                let post_before = strict.chars > 0
                    && !is_inside(page, strict.el, loose.el)
                    && strict.el != loose.el
                    && strict
                        .blocks
                        .last()
                        .zip(loose.blocks.first())
                        .is_some_and(|(a, b)| a < b);
                if post_before {
                    loose.blocks.splice(0..0, strict.blocks.iter().copied());
                    loose.chars += strict.chars;
                }
                (loose, true)
            } else {
                (strict, false)
            }
        }
    };
    let mut named_thread = false;
    let mut thread = false;
    let mut blocks = base.blocks;
    if comments != Comments::Drop {
        if let Some(last) = blocks.last().copied() {
            let (replies, region) = replies_after(page, last);
            let reply_chars: usize = replies.iter().map(|&i| page.blocks[i].chars).sum();
            // Replies are content on a thread: when asked to keep them, when
            // the container itself was found among them, when the page names
            // the container's surroundings a forum or Q&A thread, or when the
            // post is short beside its replies.
            named_thread =
                in_named_thread(page, base.el) || (!replies.is_empty() && in_named_thread(page, region));
            thread = comments == Comments::Keep
                || soft_counts
                || named_thread
                || is_thread(base.chars, reply_chars);
            if thread {
                blocks.extend(replies);
            }
        }
    }
    if !thread {
        drop_title(page, &mut blocks);
    }
    let text = render(page, &blocks);
    // A named thread's text starts with its subject (the page's first `<h1>`)
    // when the container left it out: a Q&A page sets the question above the
    // answers, which read as answers to nothing without it.
    let subject = collapse_ws(&page.first_h1);
    if comments != Comments::Drop && !subject.is_empty() && !text.contains(&subject) && named_thread {
        return format!("{subject}\n{text}");
    }
    text
}

/// Leave the page's title out of an article's text: it is `Extracted::title`,
/// and article gold text leaves it out (magic-html, newspaper4k, the ScrapingHub
/// set; trafilatura does the same). The title is a heading block among the first
/// few printed blocks that is the page's first `<h1>` or part of its `<title>` or
/// `og:title` (a site's first `<h1>` may be a pop-up's); an `<h1>` deep in the
/// body is a section, and a thread keeps its subject (its replies answer it).
fn drop_title(page: &Page, blocks: &mut Vec<usize>) {
    let first_h1 = collapse_ws(&page.first_h1);
    let is_title = |b: &Block| {
        let text = collapse_ws(&b.text);
        b.kind == BlockKind::Heading
            && !text.is_empty()
            && (text == first_h1
                || (text.chars().count() >= 5
                    && (page.title_tag.contains(&text) || page.og_title.contains(&text))))
    };
    let title = blocks
        .iter()
        .copied()
        .filter(|&i| page.blocks[i].is_output(true))
        .take(3)
        .find(|&i| is_title(&page.blocks[i]));
    if let Some(title) = title {
        blocks.retain(|&i| i != title);
    }
}

/// Whether `el` or an ancestor names itself a thread ([`THREAD_WORDS`]).
fn in_named_thread(page: &Page, mut el: usize) -> bool {
    loop {
        if page.elements[el].thread {
            return true;
        }
        if el == 0 {
            return false;
        }
        el = page.elements[el].parent;
    }
}

/// Whether replies of `reply_chars` letters under a post of `main_chars` make
/// the page a thread whose replies are content.
fn is_thread(main_chars: usize, reply_chars: usize) -> bool {
    main_chars < MIN_MAIN_CHARS || reply_chars >= main_chars
}

/// The comment section that follows the block `last` of the main container, and
/// where it was found: the *soft* blocks after it inside the nearest ancestor
/// that has any (a Weibo
/// post's comment list, the answers under a question, a bbs topic's replies
/// beside the topic's body). The search stops below `<body>`: a comment box
/// that is a child of the page itself (a dialog, a side panel) answers no post.
fn replies_after(page: &Page, last: usize) -> (Vec<usize>, usize) {
    let mut el = page.blocks[last].owner;
    // Each ancestor's range extends its child's: scan only the new part, so the
    // climb costs O(blocks + depth) on any nesting.
    let mut found = Vec::new();
    let mut scanned = last + 1;
    let mut prose = false;
    loop {
        if page.elements[el].whole_page {
            return (Vec::new(), el);
        }
        let end = page.elements[el].end_block;
        for i in scanned..end {
            let b = &page.blocks[i];
            if b.mark == Mark::Soft && b.is_container_text(true) {
                prose |= b.reads_like_text();
                found.push(i);
            }
        }
        scanned = scanned.max(end);
        if prose {
            return (found, el);
        }
        el = page.elements[el].parent;
    }
}

/// The best container's blocks that are its text ([`Block::is_container_text`]).
fn container_blocks(page: &Page, soft_counts: bool) -> Selection {
    let (best, score) = best_container(page, soft_counts);
    // No block reads like text anywhere: fall back to every output block.
    let el = if score <= 0.0 { 0 } else { best };
    let (first, end) = with_lead(page, el);
    let blocks: Vec<usize> = (first..end)
        .filter(|&i| page.blocks[i].is_container_text(soft_counts))
        .collect();
    let keep = drop_labels(page, &blocks);
    let chars = blocks
        .iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .map(|(&i, _)| page.blocks[i].chars)
        .sum();
    Selection { el, blocks, chars }
}

/// The container's block range, widened by a summary or lead right before it
/// inside its parent (`art_summary` set apart before `art_content`): blocks of
/// unmarked prose with few links inside an element named as a lead
/// ([`LEAD_WORDS`]), back to the first block that is not. Unnamed prose before
/// a body is as often a byline or a question's restatement, so it stays out.
fn with_lead(page: &Page, el: usize) -> (usize, usize) {
    let (mut first, end) = (page.elements[el].first_block, page.elements[el].end_block);
    if el == 0 {
        return (first, end);
    }
    let parent = page.elements[el].parent;
    let named_lead = |b: &Block| {
        let mut e = b.owner;
        while e != parent && e != 0 {
            if page.elements[e].lead {
                return true;
            }
            e = page.elements[e].parent;
        }
        false
    };
    let lead = |b: &Block| {
        b.mark == Mark::None
            && b.reads_like_text()
            && b.link_chars * 4 < b.chars
            && !b.is_meta_line()
            && !b.is_copyright()
            && named_lead(b)
    };
    while first > page.elements[parent].first_block && lead(&page.blocks[first - 1]) {
        first -= 1;
    }
    (first, end)
}

/// Consecutive label blocks from which they are left out (see [`drop_labels`]).
const MIN_LABEL_RUN: usize = 6;

/// Copies of one label in the container from which it is left out (see [`drop_labels`]).
const MIN_LABEL_REPEATS: usize = 3;

fn is_label(b: &Block) -> bool {
    !b.reads_like_text() && b.kind != BlockKind::Heading && b.kind != BlockKind::Code
}

/// Which of `blocks` stay: runs of short labels (a video player's buttons, a
/// widget's captions) and labels repeated through the container (`点赞`, `评论`,
/// `积分` under every post) are not text, even inside the main container.
fn drop_labels(page: &Page, blocks: &[usize]) -> Vec<bool> {
    let blocks: Vec<&Block> = blocks.iter().map(|&i| &page.blocks[i]).collect();
    let mut keep = vec![true; blocks.len()];
    let mut i = 0;
    while i < blocks.len() {
        let mut j = i;
        while j < blocks.len() && is_label(blocks[j]) {
            j += 1;
        }
        if j - i >= MIN_LABEL_RUN {
            keep[i..j].iter_mut().for_each(|k| *k = false);
        }
        i = j.max(i + 1);
    }
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for b in blocks.iter().filter(|b| is_label(b)) {
        *seen.entry(b.text.as_str()).or_default() += 1;
    }
    for (k, b) in keep.iter_mut().zip(&blocks) {
        if is_label(b) && seen[b.text.as_str()] >= MIN_LABEL_REPEATS {
            *k = false;
        }
    }
    keep
}

/// Print `blocks` (indices in document order, comment blocks among them only
/// where they were chosen) without labels, bylines and copyright lines.
fn render(page: &Page, blocks: &[usize]) -> String {
    let text = render_blocks(page, blocks, true);
    if text.is_empty() {
        // Author names were all there was: better than no text.
        return render_blocks(page, blocks, false);
    }
    text
}

/// [`render`], leaving out labels inside author elements (`skip_names`): a post's
/// user name and the like ([`USER_WORDS`]).
fn render_blocks(page: &Page, blocks: &[usize], skip_names: bool) -> String {
    let keep = drop_labels(page, blocks);
    let mut out = String::new();
    let mut in_code = false;
    for (&i, _) in blocks.iter().zip(&keep).filter(|(_, k)| **k) {
        let b = &page.blocks[i];
        if !b.is_output(true) || (skip_names && is_label(b) && page.elements[b.owner].user) {
            continue;
        }
        let code = b.kind == BlockKind::Code;
        if code != in_code {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str("```");
            in_code = code;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        if b.kind == BlockKind::ListItem {
            out.push_str("- ");
        }
        out.push_str(&b.text);
    }
    if in_code {
        out.push_str("\n```");
    }
    out
}

/// A date (`2024-5-18`, `2024.05.20`, `2024年5月`, `June 5, 2023`), a clock time
/// (`19:27`) or a relative time (`6 天前`, `3小时前`) somewhere in `text`.
fn has_date_or_time(text: &str) -> bool {
    const MONTHS: &[&str] = &[
        "Jan",
        "January",
        "Feb",
        "February",
        "Mar",
        "March",
        "Apr",
        "April",
        "May",
        "Jun",
        "June",
        "Jul",
        "July",
        "Aug",
        "August",
        "Sep",
        "Sept",
        "September",
        "Oct",
        "October",
        "Nov",
        "November",
        "Dec",
        "December",
    ];
    // `June 5, 2023`, `Sept. 12`: a month name, then a day.
    let words: Vec<&str> = text.split_whitespace().collect();
    for w in words.windows(2) {
        let day = w[1].trim_end_matches([',', '.']);
        if MONTHS.contains(&w[0].trim_end_matches('.'))
            && (1..=2).contains(&day.len())
            && day.chars().all(|c| c.is_ascii_digit())
        {
            return true;
        }
    }
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && chars[i].is_ascii_digit() {
            i += 1;
        }
        let digits = i - start;
        let next = chars.get(i).copied();
        let after = chars.get(i + 1).is_some_and(|c| c.is_ascii_digit());
        if digits == 4 && matches!(next, Some('-' | '/' | '.' | '年')) && after {
            return true;
        }
        if (1..=2).contains(&digits)
            && next == Some(':')
            && chars.get(i + 2).is_some_and(|c| c.is_ascii_digit())
            && after
        {
            return true;
        }
        let rest: String = chars[i..].iter().skip_while(|c| **c == ' ').take(3).collect();
        if ["天前", "小时前", "分钟前", "秒前", "周前", "月前", "年前"]
            .iter()
            .any(|w| rest.starts_with(w))
        {
            return true;
        }
    }
    false
}

fn collapse_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(html: &str) -> String {
        extract(html, None).unwrap().text
    }

    #[test]
    fn keeps_article_drops_furniture() {
        let html = r#"<html lang="zh-CN"><head><title>标题 - 网站</title>
            <meta property="og:title" content="真正的标题"><style>p{}</style></head><body>
            <nav><a href="/">首页</a><a href="/a">新闻</a></nav>
            <div class="share-bar">分享到：微信，微博</div>
            <div id="content"><h2>小标题</h2>
              <p>第一段正文，讲的是一件很重要的事情。</p>
              <ul><li>要点一，说明。</li><li>要点二，说明。</li></ul>
              <pre>fn main() {
    println!("hi");
}</pre>
              <p>第二段正文，继续讲这件事情的来龙去脉。</p>
              <div class="ad">广告：买买买，低价促销！</div>
            </div>
            <footer>版权所有 © 2023，保留一切权利。</footer>
            <script>var x = "正文";</script></body></html>"#;
        let got = extract(html, None).unwrap();
        assert_eq!(
            got.text,
            "小标题\n第一段正文，讲的是一件很重要的事情。\n- 要点一，说明。\n- 要点二，说明。\n```\nfn main() {\n    println!(\"hi\");\n}\n```\n第二段正文，继续讲这件事情的来龙去脉。"
        );
        assert_eq!(got.title, "真正的标题");
        assert_eq!(got.lang_attr.as_deref(), Some("zh-CN"));
        assert!(got.chars_total > got.chars_kept && got.chars_kept > 40);
    }

    #[test]
    fn comments_are_dropped_beside_an_article_and_kept_when_they_are_the_page() {
        let body = "这是文章的正文内容，篇幅足够长，能够说明这是一篇真正的文章。".repeat(5);
        let html = format!(
            r#"<div><article><p>{body}</p></article>
            <section class="comments"><p>沙发，说得好！</p><p>同意楼上的看法。</p></section></div>"#
        );
        let got = text(&html);
        assert!(got.contains("真正的文章") && !got.contains("沙发"), "{got}");
        let html = r#"<div class="comment-list"><p>很好看的一部剧，演员演技在线，推荐。</p>
            <p>剧情有点拖沓，不过结尾还不错。</p></div>"#;
        let got = text(html);
        assert!(got.contains("剧情有点拖沓"), "{got}");
    }

    #[test]
    fn a_threads_replies_are_kept_an_articles_comments_are_not() {
        let post = "楼主的提问写在这里，篇幅足够长，能够说明这是一个真正的问题，希望大家帮忙看看。".repeat(4);
        let replies = r#"<div class="comment-list"><div class="comment-item"><p>看一下这里的说明，应该能解决。</p></div>
            <div class="comment-item"><p>感谢指导</p></div></div>"#;
        // Named a Q&A thread: the replies (short ones too) follow the question.
        // The question's title (the `<h1>` outside the post) leads the thread.
        let html = format!(
            r#"<h1>怎样解决这个问题？</h1><div class="page-question-detail"><div class="question-main"><p>{post}</p></div>{replies}</div>"#
        );
        let got = text(&html);
        assert!(
            got.contains("真正的问题") && got.contains("应该能解决") && got.contains("感谢指导"),
            "{got}"
        );
        assert!(got.starts_with("怎样解决这个问题？\n"), "{got}");
        // The same layout, not named a thread, with a post longer than its replies: an article.
        let html =
            format!(r#"<div class="page-detail"><div class="main"><p>{post}</p></div>{replies}</div>"#);
        let got = text(&html);
        assert!(got.contains("真正的问题") && !got.contains("应该能解决"), "{got}");
        // A short post under longer replies is a thread however it is named.
        let html = format!(
            r#"<div class="page-detail"><div class="main"><p>{}</p></div>{replies}{replies}{replies}</div>"#,
            "楼主的提问写在这里，篇幅足够长，能够说明这是一个真正的问题。".repeat(2)
        );
        assert!(text(&html).contains("应该能解决"), "{html}");
        // A comment box that hangs off `<body>` (a dialog) answers no post.
        let html = format!(
            r#"<html><body><div class="bbs-main"><p>{post}</p></div><div class="comment-dialog"><p>请填写红包祝福语或标题，谢谢。</p></div></body></html>"#
        );
        assert!(!text(&html).contains("祝福语"));
        // `comments = "drop"` never keeps them.
        let html = format!(r#"<div class="bbs"><div class="main"><p>{post}</p></div>{replies}</div>"#);
        let got = extract_with(&html, None, Comments::Drop).unwrap().text;
        assert!(!got.contains("应该能解决"), "{got}");
    }

    #[test]
    fn a_named_body_of_link_cards_and_prose_beats_an_author_box() {
        let card = |i: usize| {
            format!(
                r#"<div class="card"><a href="/r{i}">とんかつ ぶぅたろう 第{i}店 とんかつ、揚げ物 愛知県名古屋市東区泉3丁目 クレスト泉 ￥2,000～￥2,999 不定休 高岳駅 335m</a></div>"#
            )
        };
        let day = |i: usize| {
            format!(
                "<p>2月{i}日、名古屋で自身プロデュースのとんかつ屋へ。とても美味しかった。</p>{}{}",
                card(i),
                card(i + 20)
            )
        };
        let days: String = (1..12).map(day).collect();
        let html = format!(
            r#"<article><div class="entry-content"><div class="author-box"><p>株式会社味の手帖 取締役編集顧問。年間600回外食をし、料理評論、紀行、雑誌寄稿。</p></div>{days}</div></article>
            <div class="player"><p>正在为您切换到高清，请稍候...</p><span>倍速</span></div>"#
        );
        let got = text(&html);
        assert!(got.contains("2月11日") && got.contains("料理評論"), "{got}");
        // A media player's captions are not text.
        assert!(!got.contains("切换到高清"), "{got}");
    }

    #[test]
    fn a_long_recommend_block_beside_a_short_story_stays_boilerplate() {
        let story = "据报道，载有总统的直升机发生硬着陆事故，调查仍在进行中。".repeat(8);
        let other = "如果说在中国传唱度最高的歌曲，那这一首歌绝对算得上是家喻户晓。".repeat(8);
        let html = format!(
            r#"<div class="detail-content"><div class="detail-content__content"><h1>标题</h1><p>发布于 2024-05-20 10:00</p>
            <div class="article__content"><p>{story}</p><p>{story}</p></div>
            <p>以上内容为创作者上传并发布，本平台仅提供信息存储服务。</p></div>
            <div class="recommend-wrapper"><p>{other}</p><p>{other}</p></div></div>"#
        );
        let got = text(&html);
        assert!(got.contains("硬着陆") && !got.contains("传唱度"), "{got}");
        // The inner named body holds nearly all the weight: the outer one's footer is left out.
        assert!(!got.contains("信息存储服务"), "{got}");
    }

    #[test]
    fn a_lead_set_apart_before_the_body_is_kept() {
        let lead = "核心提示：腊八节要吃腊八粥，但很多年轻人并不知道腊八粥该怎样做？";
        let body =
            "<p>农历腊月初八是腊八节，豆子那么硬，怎样才能快速煮烂？粥怎样才能煮得黏稠？</p>".repeat(6);
        let more: String = (0..10)
            .map(|i| format!(r#"<li><a href="/n{i}">另一篇养生文章的标题第{i}篇</a></li>"#))
            .collect();
        let html = format!(
            r#"<div class="left"><h1>腊八粥怎么做</h1><div class="info"><a href="/">39健康网</a> <a href="/a">饮食</a></div>
            <div class="summary">{lead}</div><div class="art">{body}</div><ul>{more}</ul></div>"#
        );
        let got = text(&html);
        assert!(got.starts_with("核心提示") && got.contains("黏稠"), "{got}");
        assert!(!got.contains("39健康网") && !got.contains("另一篇"), "{got}");
    }

    #[test]
    fn a_named_body_beats_a_longer_feed_of_teasers() {
        let story = "记者报道，这座城市的新地铁线今天正式开通运营，市民纷纷前来体验。";
        let teaser = |i: usize| {
            format!(
                r#"<li><div><span>新闻社·{i} 小时前</span><h4><a href="/n{i}">另一条新闻的标题第{i}条</a></h4>
                <p>这是另一条新闻的摘要，内容很长很长，比正文还要长得多，读者往往会被吸引过去继续阅读，第{i}条。</p></div></li>"#
            )
        };
        let feed: String = (0..12).map(teaser).collect();
        // The wrapper's class flags (`enableGAMAds`) must not make the story boilerplate.
        let html = format!(
            r#"<div class="caas news enableGAMAds"><article><div class="caas-body"><p>{story}</p><p>{story}</p></div></article>
            <h2>其他人也在看</h2><ul>{feed}</ul></div>"#
        );
        let got = text(&html);
        assert!(got.contains("新地铁线") && !got.contains("摘要"), "{got}");
    }

    #[test]
    fn repeated_cards_of_linked_headlines_are_a_feed_not_the_story() {
        // CNN's right column: `div` cards of one class, each a linked headline,
        // a date and a one-sentence summary, inside the story's wrapper.
        let para = "The storm caused some complications and inconveniences, but no major delays or breakdowns were reported.";
        let card = |i: usize| {
            format!(
                r#"<div class="cnn_stryspcvbx"><div><a href="/s{i}">Ten things to know about storm number {i}</a></div>
                <div>April 26, 2014 -- Updated 1358 GMT</div><div>Here are ten facts about one of nature's most powerful forces, part {i}.</div></div>"#
            )
        };
        let cards: String = (0..8).map(card).collect();
        let html = format!(
            r#"<div class="cnn_strycntnt"><div class="left"><p>{para}</p><p>{para}</p></div>
            <div class="cnn_strycntntrgt"><div class="cnn_strycrcntr">{cards}</div></div></div>"#
        );
        let got = text(&html);
        assert!(
            got.contains("no major delays") && !got.contains("nature's"),
            "{got}"
        );
        // Posts of one class that open with a linked user name (no headline) stay.
        let post = |i: usize| {
            format!(
                r#"<div class="post"><div><a href="/u{i}">user{i}</a></div><p>I tried this on my own machine and it worked well, thanks for the tip number {i}.</p></div>"#
            )
        };
        let posts: String = (0..6).map(post).collect();
        let got = text(&format!("<div>{posts}</div>"));
        assert!(
            got.contains("tip number 0") && got.contains("tip number 5"),
            "{got}"
        );
    }

    #[test]
    fn highlighted_code_keeps_its_comment_tokens() {
        // Prism/highlight.js wrap code comments in `class="token comment"`: a
        // code token, not a comment section.
        let html = r#"<div class="article-content"><p>设置代理的方法如下，先在命令行里执行这一行，然后测试是否生效。</p>
            <pre><code>set http_proxy<span class="token operator">=</span>http:<span class="token comment">//127.0.0.1:59727 and set https_proxy the same way</span></code></pre></div>"#;
        let got = text(html);
        assert!(got.contains("//127.0.0.1:59727"), "{got}");
    }

    #[test]
    fn lone_button_and_counter_labels_are_left_out() {
        let html = r#"<div class="article-content"><p>这是正文的第一段，讲的是一件很重要的事情，内容充实。</p>
            <div>收藏</div><div>点赞 (5)</div><div>8条评论</div><div>Share</div>
            <p>这是正文的第二段，继续讲这件事情的来龙去脉，也很充实。</p></div>"#;
        let got = text(html);
        assert_eq!(
            got,
            "这是正文的第一段，讲的是一件很重要的事情，内容充实。\n这是正文的第二段，继续讲这件事情的来龙去脉，也很充实。"
        );
    }

    #[test]
    fn forum_posts_named_as_bodies_stay_one_thread() {
        let post = |i: usize| {
            format!(
                r#"<div class="post"><a href="/u{i}">用户{i}</a><div class="post-content"><p>第{i}楼的回复内容，说说我自己的看法和经验。</p></div></div>"#
            )
        };
        let thread: String = (0..4).map(post).collect();
        let html =
            format!(r#"<div class="thread">{thread}</div><div class="sidebar"><p>广告位招租</p></div>"#);
        let got = text(&html);
        assert!(got.contains("第0楼") && got.contains("第3楼"), "{got}");
    }

    #[test]
    fn bylines_and_copyright_lines_are_left_out() {
        let post = "我的电脑分辨率是2560*1440，登录游戏全屏显示有的地方我看不到了，这是什么问题啊？";
        let html = format!(
            r#"<div><p>发表于 2024-5-18 19:27:00 | 只看该作者 来自 - 四川南充</p><p>{post}</p>
            <p>时间：2024.05.20 来源：电影网</p><p>{post}</p>
            <p>Copyright © 2024 Example Corporation. All Rights Reserved.</p></div>"#
        );
        let got = text(&html);
        assert!(
            got.contains("分辨率") && !got.contains("发表于") && !got.contains("来源"),
            "{got}"
        );
        assert!(!got.contains("Copyright"), "{got}");
        // A dated sentence is text.
        assert!(text("<p>2024年5月20日，这座城市的新地铁线正式开通运营。</p>").contains("地铁"));
        for (t, dated) in [
            ("发表于 6 天前", true),
            ("19:27", true),
            ("2024/05/20", true),
            ("共 2024 条", false),
            ("第3章", false),
            ("By Rick Alvarez | Updated June 5, 2023", true),
            ("Sept. 12", true),
            ("Maybe 12 people", false),
        ] {
            assert_eq!(has_date_or_time(t), dated, "{t}");
        }
    }

    #[test]
    fn author_names_are_left_out_unless_they_are_all_there_is() {
        let posts: String = ["可以的，好好休息开开心心过年。", "元旦快乐，大家都辛苦了！"]
            .iter()
            .enumerate()
            .map(|(i, p)| format!(r#"<div><div class="comment-user-title">网友{i}号</div><p>{p}</p></div>"#))
            .collect();
        let got = text(&format!("<div>{posts}</div>"));
        assert!(got.contains("元旦快乐") && !got.contains("网友"), "{got}");
        assert_eq!(text(r#"<div class="user-name">香樟树</div>"#), "香樟树");
    }

    #[test]
    fn labels_repeated_under_every_post_are_left_out() {
        let posts: String = [
            "可以的，好好休息开开心心过年。",
            "元旦快乐，大家都辛苦了！",
            "我们放一天上一天再放一天。",
        ]
        .iter()
        .map(|p| format!("<div><p>{p}</p><span>点赞</span><span>评论</span></div>"))
        .collect();
        let got = text(&format!("<div>{posts}</div>"));
        assert!(got.contains("元旦快乐") && !got.contains("点赞"), "{got}");
    }

    #[test]
    fn broken_markup_and_odd_input_do_not_panic() {
        for html in [
            "",
            "<",
            "<p>未闭合的段落<div><span>嵌套错误</p></div></span>",
            "<table><tr><td>单元格，内容<td>另一个",
            "\u{0}\u{feff}<p>控制字符，测试</p>",
            "<br><br><br>",
            "纯文本，没有标签。",
        ] {
            let _ = extract(html, None).unwrap();
        }
        assert!(text("<p>未闭合的段落，内容<div><span>嵌套错误</p></div></span>").contains("未闭合的段落"));
        assert_eq!(text("纯文本，没有标签。"), "纯文本，没有标签。");
    }

    #[test]
    fn deep_nesting_and_deadline() {
        // html5ever's scope checks make deep nesting quadratic: 3,000 levels is quick.
        let deep = format!(
            "{}<p>深处的正文，内容。</p>{}",
            "<div>".repeat(3_000),
            "</div>".repeat(3_000)
        );
        assert!(text(&deep).contains("深处的正文"));
        // Nested named bodies, hard-marked and holding all the text: the
        // selection's climbs stay linear or quadratic in depth, never worse.
        let nested = format!(
            "{}<p>深处的正文，内容。</p>{}",
            r#"<article class="nav-post"><div class="comment-list"><p>回复，内容。</p>"#.repeat(2_000),
            "</div></article>".repeat(2_000)
        );
        let _ = text(&nested);
        let past = Instant::now() - std::time::Duration::from_secs(1);
        assert_eq!(extract(&deep, Some(past)), Err(ExtractError::Timeout));
    }

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

    #[test]
    fn class_words_split_on_case_and_separators() {
        assert_eq!(
            class_words("shareBar post_ad-2 HEADER"),
            ["share", "bar", "post", "ad", "header"]
        );
        assert!(!class_words("header").contains(&"ad".to_string()));
    }
}
