//! Step 4, output: the chosen blocks printed as text. Runs of short labels and
//! labels repeated under every post (a player's buttons, `点赞` under each
//! reply) are left out even inside the container; so are bylines, copyright
//! lines, lone buttons and, unless nothing else is left, authors' names. List
//! items get `- `, code keeps its lines inside a fence.

use super::page::{Block, BlockKind, Page};

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
pub(super) fn drop_labels(page: &Page, blocks: &[usize]) -> Vec<bool> {
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
pub(super) fn render(page: &Page, blocks: &[usize]) -> String {
    let text = render_blocks(page, blocks, true);
    if text.is_empty() {
        // Author names were all there was: better than no text.
        return render_blocks(page, blocks, false);
    }
    text
}

/// [`render`], leaving out labels inside author elements (`skip_names`): a post's
/// user name and the like ([`USER_WORDS`](super::marks::USER_WORDS)).
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
