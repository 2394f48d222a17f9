//! Step 2, boilerplate marks: what an element's tag and `class`/`id` words say
//! it is (navigation, footers, ads, share bars: *hard*; a comment section:
//! *soft*; an article body, a thread, a lead, a post's author), and the marks
//! settled over the whole page once its blocks are known.
//!
//! Marks decide what is never main text and what counts against the container
//! holding it. After the walk, [`resolve_marks`] gives each block the strongest
//! mark among its elements (voiding a hard mark that would swallow most of the
//! page) and [`mark_teaser_lists`] marks feeds of linked headlines with
//! summaries, which would otherwise outweigh the story they sit under.

use super::dom::Element;
use super::page::{subtree_sums, Block, ListRole, Mark, Page};
use crate::text::is_cjk;

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
    // A news site's side column (`right-rail`, `rightRail`) and its most-read lists.
    "rail",
    "popular",
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

/// What an element's `class`/`id` words name it, read in one pass over its
/// values ([`class_names`]): the walk looks at every element, and splitting
/// its classes once per question (mark, article body, names) was a tenth of it.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ClassNames {
    /// The mark of the words ([`HARD_WORDS`], [`SOFT_WORDS`]), feature flags and taxonomy classes left out.
    pub(super) mark: Mark,
    /// An article word and a body word among all of them ([`content_hint`]).
    article_body: bool,
    /// Thread, lead and author names ([`Names`]), taxonomy classes left out.
    pub(super) names: Names,
    /// A rendered formula ([`FORMULA_WORDS`]): its own words mark nothing.
    pub(super) formula: bool,
    /// A caption or credit ([`CAPTION_WORDS`]): its own block even when inline.
    pub(super) caption: bool,
}

/// [`ClassNames`] of an element: each `class`/`id` value split into classes at
/// whitespace and each class into words ([`class_words`]), every word looked up once.
pub(super) fn class_names(el: &Element) -> ClassNames {
    let mut out = ClassNames::default();
    let (mut article, mut body) = (false, false);
    for (name, value) in el.attrs() {
        if name != "class" && name != "id" {
            continue;
        }
        for class in value.split_whitespace() {
            // Kinds of all words, of the first word, and whether a word
            // follows a taxonomy word (`tag-ads`: see [`TAXONOMY_WORDS`]).
            let (mut all, mut first, mut taxonomy, mut after_taxonomy) = (0u16, None, false, false);
            for_each_class_word(class, |word| {
                let kind = word_kind(word);
                after_taxonomy |= taxonomy;
                taxonomy |= kind & TAXONOMY != 0;
                first.get_or_insert(kind);
                all |= kind;
            });
            out.formula |= all & FORMULA != 0;
            out.caption |= all & CAPTION != 0;
            article |= all & ARTICLE != 0;
            body |= all & BODY != 0;
            if after_taxonomy {
                continue;
            }
            out.names.thread |= all & THREAD != 0;
            out.names.lead |= all & LEAD != 0;
            out.names.user |= all & USER != 0;
            // `enableGAMAds`, `disableAsideSection`, `filterNonGdprEmbeds`: feature
            // flags on a page wrapper, not a name for what the element is.
            if first.is_some_and(|k| k & FLAG != 0) {
                continue;
            }
            // `content-right`, `right-module`, `col2right`: the right-hand column;
            // `pull-right` or `text-right` only places an element.
            if all & HARD != 0 || all & (RIGHT | REGION) == RIGHT | REGION {
                out.mark = Mark::Hard;
            } else if all & SOFT != 0 && out.mark == Mark::None {
                out.mark = Mark::Soft;
            }
        }
    }
    out.article_body = article && body;
    out
}

/// The boilerplate mark an element's tag and `class`/`id` words ([`class_names`]) give it.
pub(super) fn mark_of(tag: &str, names: &ClassNames, in_article: bool) -> Mark {
    if mark_of_tag(tag, in_article) == Mark::Hard {
        return Mark::Hard;
    }
    names.mark
}

/// Words that make a class a key-value pair of the page's taxonomy when a value
/// follows them: `category-social-media`, `tag-ads`, `entry-author-kevin`,
/// `type-post` (WordPress's `post_class()`, TypePad, Movable Type). The value
/// names what the text is about, not what the element is, so `social` or `ads`
/// there marks nothing.
const TAXONOMY_WORDS: &[&str] = &[
    "category",
    "categories",
    "cat",
    "tag",
    "tags",
    "author",
    "type",
    "format",
    "status",
    "term",
];

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
pub(super) fn content_hint(tag: &str, el: &Element, names: &ClassNames) -> bool {
    tag == "article"
        || names.article_body
        || el
            .attrs()
            .any(|(name, value)| name == "itemprop" && value.eq_ignore_ascii_case("articlebody"))
}

/// Words of a `class`/`id` that name a forum or Q&A thread, whose replies are
/// its content (`bbs-post-content`, `page-question-detail`, `thread-list`).
const THREAD_WORDS: &[&str] = &["bbs", "forum", "thread", "topic", "question", "tieba"];

/// Words of a `class`/`id` that name an article's summary or lead, which
/// sites often set apart before the body (`art_summary`, `article-intro`; the
/// newsroom terms `standfirst`, `dek`, `perex` (Czech and Slovak press); not
/// `lead`, which names lead photos as often).
const LEAD_WORDS: &[&str] = &["summary", "intro", "abstract", "standfirst", "dek", "perex"];

/// Words of a `class`/`id` that name a formula rendered by MathJax or KaTeX,
/// whose other classes are the renderer's (`MathJax CtxtMenu_Attached_0` is no menu).
const FORMULA_WORDS: &[&str] = &["mathjax", "katex"];

/// Words of a `class`/`id` that name an image's caption or credit: a `<span>`
/// of them inside a paragraph (`© Provided by ...`) is a line of its own, not
/// the start of the paragraph's text.
const CAPTION_WORDS: &[&str] = &["caption", "credit", "credits", "attribution"];

/// Words of a `class`/`id` that name a part of the page's layout: with `right`,
/// the right-hand column, where sites put their sidebars.
const REGION_WORDS: &[&str] = &[
    "col",
    "column",
    "module",
    "box",
    "panel",
    "bar",
    "area",
    "block",
    "wrap",
    "part",
    "region",
    "zone",
    "section",
    "container",
    "content",
];

/// Words of a `class`/`id` that name who wrote a post (`comment-user-title`,
/// `user-name`, `author`): a label there is a name, not text.
const USER_WORDS: &[&str] = &["user", "author", "nickname", "username", "uname"];

/// What an element's `class`/`id` names it: a thread ([`THREAD_WORDS`]), a
/// lead ([`LEAD_WORDS`]), a post's author ([`USER_WORDS`]).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Names {
    pub(super) thread: bool,
    pub(super) lead: bool,
    pub(super) user: bool,
}

/// An element's [`El::unit_shape`](super::page::El::unit_shape): its tag and first
/// `class` word, so the units of one template match whatever their parity or depth classes.
pub(super) fn unit_shape_of(tag: &str, el: &Element) -> u64 {
    let class = el.attr("class").unwrap_or("");
    let first = class
        .split_ascii_whitespace()
        .find(|w| !matches!(*w, "even" | "odd" | "alt" | "first" | "last" | "clearfix"))
        .unwrap_or("");
    // The class without its digits.
    let h = fnv1a(fnv1a(FNV_OFFSET, tag.bytes()), [0xff]);
    fnv1a(h, first.bytes().filter(|b| !b.is_ascii_digit()))
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a over `bytes`, from `h`: shapes are short strings compared for
/// equality on one page, where SipHash's setup cost more than the hashing.
fn fnv1a(h: u64, bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes
        .into_iter()
        .fold(h, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The boilerplate mark of a tag alone.
fn mark_of_tag(tag: &str, in_article: bool) -> Mark {
    match tag {
        "nav" | "footer" | "aside" | "menu" => Mark::Hard,
        "header" if !in_article => Mark::Hard,
        _ => Mark::None,
    }
}

/// `class`/`id` words: split at non-alphanumerics, digits and lower-to-upper
/// case changes (`shareBar` -> `share`, `Bar`). Hexadecimal runs of 8+
/// characters are ids (`entry-6a00d8341c57a853ef`), not words: their letters
/// would read as `ad`, `ef`, `e`. The words are slices of `value`, in its case
/// (compare them with [`word_kind`]), handed to `f` without collecting them.
fn for_each_class_word<'a>(value: &'a str, mut f: impl FnMut(&'a str)) {
    let is_hex_id = |run: &[u8]| run.len() >= 8 && run.iter().all(u8::is_ascii_hexdigit);
    // Runs of ASCII letters and digits, split on bytes: every byte of a
    // non-ASCII character is a separator, as the character is.
    let mut next = 0;
    for run in value.as_bytes().split(|b| !b.is_ascii_alphanumeric()) {
        let at = next;
        next += run.len() + 1;
        if run.is_empty() || is_hex_id(run) {
            continue;
        }
        // `run` is ASCII: its byte offsets are char boundaries of `value`.
        let mut start: Option<usize> = None;
        let mut prev_lower = false;
        for (i, &c) in run.iter().enumerate() {
            if c.is_ascii_alphabetic() {
                if c.is_ascii_uppercase() && prev_lower {
                    if let Some(s) = start {
                        f(&value[at + s..at + i]);
                    }
                    start = Some(i);
                }
                start.get_or_insert(i);
                prev_lower = c.is_ascii_lowercase();
            } else {
                prev_lower = false;
                if let Some(s) = start.take() {
                    f(&value[at + s..at + i]);
                }
            }
        }
        if let Some(s) = start {
            f(&value[at + s..at + run.len()]);
        }
    }
}

/// [`for_each_class_word`] collected.
#[cfg(test)]
fn class_words(value: &str) -> Vec<&str> {
    let mut words = Vec::new();
    for_each_class_word(value, |w| words.push(w));
    words
}

/// Bits of [`word_kind`]: which of the word lists above hold a word.
const HARD: u16 = 1;
const SOFT: u16 = 1 << 1;
const FLAG: u16 = 1 << 2;
const TAXONOMY: u16 = 1 << 3;
const ARTICLE: u16 = 1 << 4;
const BODY: u16 = 1 << 5;
const THREAD: u16 = 1 << 6;
const LEAD: u16 = 1 << 7;
const USER: u16 = 1 << 8;
const FORMULA: u16 = 1 << 9;
const CAPTION: u16 = 1 << 10;
const RIGHT: u16 = 1 << 11;
const REGION: u16 = 1 << 12;

/// The lists a class word (any case) is in, as [`HARD`] | [`SOFT`] | ... bits.
///
/// One hash lookup of the lower-cased word packed into a `u128` (the longest
/// listed word has 13 letters), instead of a scan of every list per question.
fn word_kind(word: &str) -> u16 {
    use std::sync::OnceLock;
    static KINDS: OnceLock<crate::hash::HashKeyMap<u128, u16>> = OnceLock::new();
    let kinds = KINDS.get_or_init(|| {
        let mut map = crate::hash::HashKeyMap::default();
        let lists: [(&[&str], u16); 13] = [
            (HARD_WORDS, HARD),
            (SOFT_WORDS, SOFT),
            (FLAG_WORDS, FLAG),
            (TAXONOMY_WORDS, TAXONOMY),
            (ARTICLE_WORDS, ARTICLE),
            (BODY_WORDS, BODY),
            (THREAD_WORDS, THREAD),
            (LEAD_WORDS, LEAD),
            (USER_WORDS, USER),
            (FORMULA_WORDS, FORMULA),
            (CAPTION_WORDS, CAPTION),
            (&["right"], RIGHT),
            (REGION_WORDS, REGION),
        ];
        for (list, bit) in lists {
            for w in list {
                *map.entry(pack_lower(w).expect("listed words are short"))
                    .or_insert(0) |= bit;
            }
        }
        map
    });
    let kind = |w: &str| pack_lower(w).and_then(|k| kinds.get(&k).copied()).unwrap_or(0);
    let found = kind(word);
    // `rightcolumn`, `colright`: the right-hand column written as one word.
    // (Class words are ASCII, so byte offsets are char boundaries.)
    if found == 0 && word.len() > 5 {
        let (head, tail) = word.split_at(5);
        let (front, back) = word.split_at(word.len() - 5);
        if head.eq_ignore_ascii_case("right") && kind(tail) & REGION != 0
            || back.eq_ignore_ascii_case("right") && kind(front) & REGION != 0
        {
            return RIGHT | REGION;
        }
    }
    found
}

/// An ASCII word of up to 16 bytes, lower-cased, as one integer; `None` when longer.
fn pack_lower(word: &str) -> Option<u128> {
    let bytes = word.as_bytes();
    if bytes.len() > 16 {
        return None;
    }
    let mut buf = [0u8; 16];
    for (b, &c) in buf.iter_mut().zip(bytes) {
        *b = c.to_ascii_lowercase();
    }
    Some(u128::from_le_bytes(buf))
}

/// Give each block the strongest mark among its elements, except that a
/// *hard* mark is void on an element holding half or more of the page's text
/// unless a named article body lies beside it: a `class="breadcrumb"` div
/// left unclosed around the article, or `<body class="has-menu">`, is not
/// boilerplate, a `recommend` block of whole stories next to the story is.
pub(super) fn resolve_marks(page: &mut Page) {
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
/// same feeds from `div` cards: 3+ siblings of one unit shape (tag and first
/// `class` word without digits: `story-block sbpos-2 id12265` is one template),
/// most of them opening with a linked headline of a few words over a short
/// summary, are marked too (a forum post opens with a linked user name, too
/// short for a headline, and runs longer).
pub(super) fn mark_teaser_lists(page: &mut Page) {
    let n = page.elements.len();
    let mut items = vec![0usize; n];
    let mut teasers = vec![0usize; n];
    // Siblings per (parent, unit shape); only shapes repeated MIN_TEASERS times are
    // looked at as cards, so each element's blocks are not scanned for nothing.
    let mut cards: std::collections::HashMap<(usize, u64), (usize, usize)> = Default::default();
    for el in &page.elements[1..] {
        cards.entry((el.parent, el.unit_shape)).or_default().0 += 1;
    }
    for i in 1..n {
        let el = &page.elements[i];
        let p = el.parent;
        let blocks = &page.blocks[el.first_block..el.end_block];
        let card = cards.get_mut(&(p, el.unit_shape)).expect("counted above");
        if card.0 >= MIN_TEASERS && is_teaser_card(blocks) {
            card.1 += 1;
        }
        if el.list != ListRole::Item || page.elements[p].list != ListRole::List {
            continue;
        }
        items[p] += 1;
        // A linked headline (a title's worth of words, not a poster's name or a
        // "Profile" button: forum posts link those) and a summary after it.
        let headline = blocks.iter().position(is_headline);
        let summary = headline.is_some_and(|h| {
            blocks[h + 1..]
                .iter()
                .any(|b| b.reads_like_text() && b.mark == Mark::None)
        });
        let headline = headline.is_some();
        if headline && summary {
            teasers[p] += 1;
        }
    }
    let teaser_feed = |count: usize, teaser: usize| count >= MIN_TEASERS && teaser * 5 >= count * 3;
    for i in 0..n {
        let el = &page.elements[i];
        let card_of_feed = i > 0 && {
            let (count, teaser) = cards[&(el.parent, el.unit_shape)];
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

/// A linked headline: mostly link text, 10+ letters, 8+ CJK characters or 3+ words.
fn is_headline(b: &Block) -> bool {
    b.is_link_list()
        && b.chars >= 10
        && (b.text.chars().filter(|c| is_cjk(*c)).count() >= 8 || b.text.split_whitespace().count() >= 3)
}

/// A card that opens with a linked headline ([`is_headline`]) and adds a short
/// summary that reads like prose.
fn is_teaser_card(blocks: &[Block]) -> bool {
    let Some(at) = blocks.iter().position(|b| b.chars > 0) else {
        return false;
    };
    let headline = is_headline(&blocks[at]);
    let text: usize = blocks.iter().map(|b| b.chars - b.link_chars).sum();
    headline
        && text <= MAX_TEASER_TEXT
        && blocks[at + 1..]
            .iter()
            .any(|b| b.reads_like_text() && b.mark == Mark::None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_words_split_on_case_and_separators() {
        assert_eq!(
            class_words("shareBar post_ad-2 HEADER"),
            ["share", "Bar", "post", "ad", "HEADER"]
        );
        assert!(!class_words("header").contains(&"ad"));
        assert_eq!(
            class_words("entry-6a00d8341c57a853ef017 ad300x250"),
            ["entry", "ad", "x"]
        );
        assert_eq!(class_words("XMLHttp navBAR"), ["XMLHttp", "nav", "BAR"]);
        assert_eq!(class_words("评论cmt区·foot2x"), ["cmt", "foot", "x"]);
        assert_eq!(word_kind("NAV"), HARD);
    }
}
