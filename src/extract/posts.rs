//! Step 5's structural test: is the page a thread whose replies are content, or
//! an article with a comment section under it?
//!
//! A thread's opening post is built like its replies: one template repeated
//! (Discuz!'s `plhin` tables, phpBB's `post` divs, a Q&A site's answer cards),
//! each unit carrying who wrote it (an author element) or when (a short dated
//! line). An article is not one of its comments: its body sits outside the
//! repeated units of the comment list (WordPress's `<li class="comment">`). So
//! the replies after the container are a thread's when the container lies in a
//! unit of a repeated, signed shape and the replies lie in its siblings of that
//! shape. This replaces a word in the page's names (`thread` is also a
//! WordPress comment class) and the length of the replies (a popular blog post's
//! comments outweigh it) as the evidence.

use std::collections::HashMap;

use super::page::{has_date_or_time, Page};

/// Signed units of one shape under one parent that make a series of posts:
/// the opening post and two replies (two are as often a page builder's slots).
const MIN_UNITS: usize = 3;

/// Whether the element `container` lies in a post unit whose sibling units of
/// the same shape hold the `replies` (block indices).
pub(super) fn replies_are_posts(page: &Page, container: usize, replies: &[usize]) -> bool {
    if replies.is_empty() {
        return false;
    }
    let signed = signed_elements(page);
    // (parent, shape) -> signed units of that shape under that parent.
    let mut units: HashMap<(usize, u64), usize> = HashMap::new();
    for (i, el) in page.elements.iter().enumerate().skip(1) {
        if signed[i] && !el.whole_page {
            *units.entry((el.parent, el.unit_shape)).or_default() += 1;
        }
    }
    let is_unit = |e: usize| {
        let el = &page.elements[e];
        e != 0
            && !el.whole_page
            && signed[e]
            && units.get(&(el.parent, el.unit_shape)).copied().unwrap_or(0) >= MIN_UNITS
    };
    let mut a = container;
    while a != 0 && !page.elements[a].whole_page {
        if is_unit(a) {
            let key = (page.elements[a].parent, page.elements[a].unit_shape);
            // Most of the replies' text lies in sibling units of this shape, in
            // two or more of them (one sibling holding all comments is a page
            // builder's layout slot, not a post).
            let (mut inside, mut total) = (0usize, 0usize);
            let mut holders: Vec<usize> = Vec::new();
            for &b in replies {
                let chars = page.blocks[b].chars;
                total += chars;
                if let Some(unit) = unit_of(page, page.blocks[b].owner, key) {
                    if unit != a {
                        inside += chars;
                        if !holders.contains(&unit) {
                            holders.push(unit);
                        }
                    }
                }
            }
            let inside = if holders.len() >= 2 { inside } else { 0 };
            if inside * 2 > total {
                return true;
            }
        }
        a = page.elements[a].parent;
    }
    false
}

/// The unit of `key`'s (parent, shape) that `el` lies in (itself or an ancestor).
fn unit_of(page: &Page, mut el: usize, key: (usize, u64)) -> Option<usize> {
    while el != 0 {
        let e = &page.elements[el];
        if (e.parent, e.unit_shape) == key {
            return Some(el);
        }
        el = e.parent;
    }
    None
}

/// Elements whose subtree names an author or holds a short dated line (a post header).
fn signed_elements(page: &Page) -> Vec<bool> {
    let mut signed: Vec<bool> = page.elements.iter().map(|e| e.user).collect();
    for b in &page.blocks {
        if b.chars <= 80 && has_date_or_time(&b.text) {
            signed[b.owner] = true;
        }
    }
    // Children come after their parents: one backward sweep carries marks up.
    for i in (1..page.elements.len()).rev() {
        if signed[i] {
            let p = page.elements[i].parent;
            signed[p] = true;
        }
    }
    signed
}
