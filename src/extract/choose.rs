//! Steps 3 and 5, choosing the main text: the container (the element with the
//! most text net of the boilerplate around it, or a named article body), a
//! lead set apart right before it, the comment section after it when the page
//! is a thread, and an article's title left out.
//!
//! Block weights are summed up the element tree ([`super::page::subtree_sums`]);
//! [`select_main_text`] makes the choices and prints the chosen blocks with
//! [`render`].

use super::page::{collapse_ws, subtree_sums, Block, BlockKind, Mark, Page};
use super::posts::replies_are_posts;
use super::print::{drop_labels, render};
use super::Comments;

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

/// The element with the largest summed block weight (`sum`, from [`element_weights`];
/// the deepest one on ties), unless a named article body
/// ([`content_hint`](super::marks::content_hint)) that is not inside it holds
/// [`HINT_SHARE`] of its weight.
fn best_container(page: &Page, sum: &[f64], soft_counts: bool) -> (usize, f64) {
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

/// When the selection left nothing: the page's densest prose with every
/// boilerplate mark ignored (a whole article under a wrapper whose class reads
/// as an ad slot or a share bar). Paragraphs are credited to the element that
/// holds them (as Readability scores a paragraph's parent), and the element
/// with the most prose gives its prose blocks, if they hold [`MIN_MAIN_CHARS`].
/// `None` for pages of navigation and labels, which stay `no_main_text`.
pub(super) fn fallback_text(page: &Page) -> Option<String> {
    let prose = |b: &Block| b.reads_like_text() && b.link_chars * 2 < b.chars;
    let mut held = vec![0usize; page.elements.len()];
    for b in page.blocks.iter().filter(|b| prose(b)) {
        let holder = if page.elements[b.owner].whole_page {
            b.owner
        } else {
            page.elements[b.owner].parent
        };
        held[holder] += b.chars - b.link_chars;
    }
    let (best, &chars) = held
        .iter()
        .enumerate()
        .max_by_key(|&(i, c)| (*c, std::cmp::Reverse(i)))?;
    if chars < MIN_MAIN_CHARS {
        return None;
    }
    let e = &page.elements[best];
    let mut unmarked = page.clone();
    let blocks: Vec<usize> = (e.first_block..e.end_block)
        .filter(|&i| prose(&page.blocks[i]))
        .collect();
    for &i in &blocks {
        unmarked.blocks[i].mark = Mark::None;
    }
    let text = render(&unmarked, &blocks);
    (!text.trim().is_empty()).then_some(text)
}

/// The chosen container and its weight, for [`super::explain`].
pub(super) fn explain_choice(page: &Page) -> String {
    let (el, score) = best_container(page, &element_weights(page, false), false);
    let e = &page.elements[el];
    format!(
        "container el {el} (blocks {}..{}, weight {score:.1}, parent {})",
        e.first_block, e.end_block, e.parent
    )
}

/// Choose the container, decide about the replies after it, and print.
pub(super) fn select_main_text(page: &Page, comments: Comments) -> String {
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
            // Replies are content on a thread: when asked to keep them, when
            // the container itself was found among them, when the container
            // or the replies' surroundings name themselves a forum or Q&A
            // thread, when the post is too short
            // to be an article, or when the post is one of a series of signed
            // units that the replies continue (`posts.rs`). An article's
            // comment section, however long, is none of these.
            named_thread =
                in_named_thread(page, base.el) || (!replies.is_empty() && in_named_thread(page, region));
            thread = comments == Comments::Keep
                || soft_counts
                || named_thread
                || base.chars < MIN_MAIN_CHARS
                || replies_are_posts(page, base.el, &replies);
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

/// Whether `el` or an ancestor names itself a thread ([`THREAD_WORDS`](super::marks::THREAD_WORDS)).
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
    let sum = element_weights(page, soft_counts);
    let (best, score) = best_container(page, &sum, soft_counts);
    // No block reads like text anywhere: fall back to every output block.
    let el = if score <= 0.0 { 0 } else { best };
    let mut ranges = vec![with_lead(page, el)];
    ranges.extend(text_siblings(page, &sum, el, score));
    let mut blocks: Vec<usize> = ranges
        .iter()
        .flat_map(|&(first, end)| first..end)
        .filter(|&i| page.blocks[i].is_container_text(soft_counts))
        .collect();
    // In document order, each block once (a lead before the container may lie
    // in a sibling taken along).
    blocks.sort_unstable();
    blocks.dedup();
    let keep = drop_labels(page, &blocks);
    let chars = blocks
        .iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .map(|(&i, _)| page.blocks[i].chars)
        .sum();
    Selection { el, blocks, chars }
}

/// A sibling joins the container when it holds this share of the container's
/// weight (Readability's sibling rule: a story cut in two by an ad slot or a
/// rail between its paragraphs).
const SIBLING_SHARE: f64 = 0.2;

/// Block ranges of the container's siblings that hold [`SIBLING_SHARE`] of its
/// weight: the rest of a story whose paragraphs are siblings of the chosen one.
fn text_siblings(page: &Page, sum: &[f64], el: usize, score: f64) -> Vec<(usize, usize)> {
    // Only a container that is a single paragraph: a larger one already holds
    // its story, and its prose siblings are other stories or an author's bio.
    let own = &page.elements[el];
    if el == 0 || score <= 0.0 || own.end_block - own.first_block != 1 {
        return Vec::new();
    }
    let parent = own.parent;
    (1..page.elements.len())
        .filter(|&e| e != el && page.elements[e].parent == parent)
        .filter(|&e| sum[e] > 0.0 && sum[e] >= SIBLING_SHARE * score)
        .map(|e| (page.elements[e].first_block, page.elements[e].end_block))
        .collect()
}

/// The container's block range, widened by a summary or lead right before it
/// inside its parent (`art_summary` set apart before `art_content`): blocks of
/// unmarked prose with few links inside an element named as a lead
/// ([`LEAD_WORDS`](super::marks::LEAD_WORDS)), back to the first block that is not. Unnamed
/// prose before a body is as often a byline or a question's restatement, so it stays out.
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
    // A lead photo's linked caption or a share bar may sit between the lead and
    // the body: up to two blocks that are never output are stepped over.
    let floor = page.elements[parent].first_block;
    let mut probe = first;
    let mut skipped = 0;
    while probe > floor {
        let b = &page.blocks[probe - 1];
        if lead(b) {
            probe -= 1;
            first = probe;
            skipped = 0;
        } else if !b.is_container_text(false) && skipped < 2 {
            probe -= 1;
            skipped += 1;
        } else {
            break;
        }
    }
    (first, end)
}
