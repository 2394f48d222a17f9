//! Main-text extraction from HTML: what the `extract` stage runs on each page.
//!
//! Hand-written on top of html5ever (into a tree of its own) because none of the
//! Rust crates that do this reached the Chinese targets on the magic-html pages
//! (docs/benchmarks/extract.md): forum threads and WeChat/gov.cn layouts are
//! where readability-style scoring and trafilatura's English-tuned rules lose
//! text. The algorithm, in one pass over the tree plus one over its blocks:
//!
//! 1. **Blocks.** The page is cut into text blocks at block-level elements
//!    (`p`, `div`, `li`, `td`, headings, ...); `<br>` is a line break inside a
//!    block. Each block counts its letters and digits (a CJK character is one),
//!    those inside links, and its sentence punctuation (`，。！？；` and ASCII).
//!    `script`, `style`, form controls, hidden elements and the like give no text;
//!    so does `visibility:hidden`, unless it holds two thirds of the page's text
//!    (a body a script reveals). Formulas (MathML, MathJax, KaTeX) are text, and
//!    an inline caption or photo credit is a line of its own.
//! 2. **Boilerplate marks.** Elements that are navigation, footers, sidebars,
//!    share bars, ads, cookie banners, breadcrumbs, related/recommended lists,
//!    media players' controls or copyright lines, by tag (`nav`, `footer`,
//!    `aside`, `header` outside `article`) or by a word of their `class`/`id`
//!    (split at `-`, `_`, spaces and case changes, so `header` never matches
//!    `ad`; `right` with a layout word, `rightRail`, `content-right`, is the side
//!    column, `pull-right` is not), mark their blocks *hard*: never output, and
//!    counted against the container holding them. Comment sections (`comment`,
//!    `reply`, `discuss`, `cmt`, `pinglun`, ...) are *soft*: left out under an article, kept on a
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
//!    sibling cards of one tag and first `class` word built the same way, are hard
//!    boilerplate. Inside `<pre>`/`<code>` no `class` marks anything (a
//!    highlighter's `token comment` is code). A container that is a single
//!    paragraph takes along its siblings with a fifth of its weight (a story
//!    cut in two by a rail).
//! 4. **Output.** The container's blocks in document order (with a summary or
//!    lead set apart right before it, named so by its `class`, a photo or two
//!    between them allowed), without hard or
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
//!    `topic`, `question`, `tieba` as a `class`/`id` word), when the post has
//!    under 100 characters, or when the post is built like its replies: it lies
//!    in one of three or more sibling units of one template, each signed with
//!    an author element or a short dated line, and the replies fill two or more
//!    of the others (`posts.rs`). Otherwise it is an article's comments and is
//!    left out, however long (`comments = "keep"`/`"drop"` decide it for every
//!    page). A named thread's text starts with the page's `<h1>` (the
//!    question) when the container left it out.
//!
//! Limits: the deadline is checked every few hundred tokens while parsing and
//! every few thousand nodes in the walk, so a pathological page ends as
//! [`ExtractError::Timeout`] instead of holding a worker; the tree is at most
//! 512 deep (as in Chromium) and every traversal is iterative, so nesting depth
//! cannot overflow the stack or make the later steps slow.
//!
//! Files, in the order a page goes through them: `parse.rs` cuts invisible
//! parts and unread attributes out and parses into the tree of `dom.rs`;
//! `blocks.rs` walks the tree into blocks (step 1);
//! `marks.rs` turns tags and `class`/`id` words into marks and names, then
//! settles the marks over the page and marks teaser feeds (step 2, and the
//! feeds of step 3); `choose.rs` picks the container, the lead before it, the
//! replies after it and the title to leave out (steps 3 and 5), with
//! `posts.rs` telling a thread's replies from an article's comments; `print.rs`
//! leaves labels out and prints (step 4). `page.rs` holds what they share: the
//! blocks and elements, and what a block reads as. `score.rs` is no step: it
//! scores extracted text against gold text for the tests and benchmarks.

pub mod score;

mod blocks;
mod choose;
mod dom;
mod marks;
mod page;
mod parse;
mod posts;
mod print;
mod tokenize;

use std::time::Instant;

use blocks::collect_blocks;
use choose::select_main_text;
use parse::{parse, strip_attributes, strip_invisible};

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
    /// The text is the fallback (the densest prose with boilerplate marks
    /// ignored) because the selection found nothing.
    pub fallback: bool,
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
    let doc = parse(&strip_attributes(&strip_invisible(html)), deadline)?;
    let page = collect_blocks(&doc, deadline)?;
    let chars_total = page.blocks.iter().map(|b| b.chars).sum();
    let mut text = select_main_text(&page, comments);
    let mut fallback = false;
    if !text.chars().any(char::is_alphanumeric) {
        if let Some(found) = choose::fallback_text(&page) {
            text = found;
            fallback = true;
        }
    }
    let chars_kept = text.chars().filter(|c| c.is_alphanumeric()).count();
    Ok(Extracted {
        text,
        title: page.title(),
        lang_attr: page.lang_attr,
        chars_kept,
        chars_total,
        fallback,
    })
}

/// Whether the project's tokenizer and html5ever's own lead the tree builder to
/// the same tree for a page, after the cuts made before parsing; `Err` holds
/// both trees. For the tests that check the tokenizer on the benchmark pages.
#[doc(hidden)]
pub fn tokenizer_matches_html5ever(html: &str) -> Result<(), (String, String)> {
    tokenize::check_against_html5ever(&strip_attributes(&strip_invisible(html)))
}

/// A page's blocks as the extractor sees them, one per line (index, mark, letters,
/// weight, owner element, text), and the container it chooses: for studying a
/// page that comes out wrong (`curate`'s tests print it with `EXTRACT_EXPLAIN`).
#[doc(hidden)]
pub fn explain(html: &str) -> String {
    use std::fmt::Write;
    let Ok(doc) = parse(&strip_attributes(&strip_invisible(html)), None) else {
        return "parse failed".into();
    };
    let Ok(page) = collect_blocks(&doc, None) else {
        return "walk failed".into();
    };
    let mut out = String::new();
    for (i, b) in page.blocks.iter().enumerate() {
        let text: String = b.text.chars().take(70).collect();
        let _ = writeln!(
            out,
            "{i:4} {:?} chars {:4} links {:4} w {:7.1} el {:4} {:?}",
            b.mark,
            b.chars,
            b.link_chars,
            b.weight(false),
            b.owner,
            text
        );
    }
    for (i, e) in page.elements.iter().enumerate() {
        if e.own_mark != page::Mark::None && e.end_block > e.first_block {
            let _ = writeln!(
                out,
                "el {i} own mark {:?} over blocks {}..{} (parent {})",
                e.own_mark, e.first_block, e.end_block, e.parent
            );
        }
    }
    let _ = writeln!(out, "{}", choose::explain_choice(&page));
    out
}

#[cfg(test)]
mod tests {
    use super::page::has_date_or_time;
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
    fn a_real_article_under_boilerplate_names_falls_back_to_its_prose() {
        let para = "The committee met on Tuesday to discuss the new budget, and the members agreed on most points after a long debate.";
        let links: String = (0..12)
            .map(|i| format!(r#"<a href="/s{i}">Section number {i}</a> "#))
            .collect();
        // The whole article sits in an element whose class reads as an ad slot,
        // beside more text in real sidebars: the selection finds nothing, the
        // fallback the article.
        let side = "Other stories from this week, and what our readers said about them.";
        let html = format!(
            r#"<html><body><div class="ad-slot"><p>{para}</p><p>{para}</p></div>
            <div class="sidebar"><p>{side}{side}</p></div><div class="related"><p>{side}{side}</p></div>
            <div class="menu"><p>{links}</p></div></body></html>"#
        );
        let got = extract(&html, None).unwrap();
        assert!(got.fallback && got.text.contains("committee"), "{got:?}");
        assert!(!got.text.contains("Other stories"), "{got:?}");
        // Navigation alone has no prose to fall back to.
        let got = extract(
            &format!("<html><body><nav><p>{links}</p></nav></body></html>"),
            None,
        )
        .unwrap();
        assert!(!got.fallback && got.chars_kept == 0, "{got:?}");
        // An ordinary article is no fallback.
        let got = extract(
            &format!("<html><body><article><p>{para}</p></article></body></html>"),
            None,
        )
        .unwrap();
        assert!(!got.fallback && got.text.contains("committee"), "{got:?}");
    }

    #[test]
    fn threads_are_told_from_articles_by_structure_not_by_length() {
        let para = "The committee met on Tuesday to discuss the new budget, and the members agreed on most points after a long debate.";
        let comment =
            "I disagree with the second point, because the numbers in the report do not add up at all.";
        // A blog post whose comment section is longer than the post: an article.
        let comments: String = (0..6)
            .map(|i| {
                let parity = if i % 2 == 0 { "even thread-even" } else { "odd alt thread-odd" };
                format!(
                    r#"<li class="comment {parity} depth-1"><div class="comment-author vcard">reader{i}</div>
                    <div class="comment-meta">June {i}, 2023 at 10:0{i} am</div><p>{comment} {comment}</p></li>"#
                )
            })
            .collect();
        let html = format!(
            r#"<html><body><div class="site"><article><div class="entry-content"><p>{para}</p><p>{para}</p></div>
            <div class="byline">June 1, 2023</div></article><ol class="commentlist">{comments}</ol></div></body></html>"#
        );
        let got = text(&html);
        assert!(got.contains("committee") && !got.contains("I disagree"), "{got}");
        // A forum thread: the opening post is one of the signed units the replies continue.
        let unit = |who: &str, when: &str, body: &str, extra: &str| {
            format!(
                r#"<div class="post{extra}"><div class="author">{who}</div><div class="time">{when}</div><div class="body"><p>{body}</p></div></div>"#
            )
        };
        let html = format!(
            r#"<html><body><div class="postlist">{}{}{}</div></body></html>"#,
            unit("alice", "2024-05-18 19:27", &format!("{para} {para}"), ""),
            unit("bob", "2024-05-18 20:01", comment, " reply"),
            unit("carol", "2024-05-19 08:15", comment, " reply"),
        );
        let got = text(&html);
        assert!(got.contains("committee") && got.contains("I disagree"), "{got}");
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
        let html = format!(
            "<article><p>5 min read</p><p>posted on April 21, 2015, at 11:29 a.m.</p>{}</article>",
            prose(0)
        );
        let got = text(&html);
        assert!(!got.contains("min read") && !got.contains("posted on"), "{got}");
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

    /// Three paragraphs of plain English prose, `n` apart.
    fn prose(n: usize) -> String {
        (0..3)
            .map(|i| {
                format!(
                    "<p>Paragraph {n}-{i} tells the reader a plain story in several words, \
                     with commas, clauses and a full stop at its end.</p>"
                )
            })
            .collect()
    }

    #[test]
    fn formulas_are_text_whatever_their_renderer_calls_them() {
        let html = format!(
            r#"<article>{}<p>The roots are
            <mjx-container class="MathJax CtxtMenu_Attached_0"><mjx-assistive-mml>
            <math><mi>x</mi><mo>=</mo><mn>42</mn></math></mjx-assistive-mml></mjx-container>
            and nothing else.</p></article>"#,
            prose(0)
        );
        let got = text(&html);
        assert!(
            got.contains("The roots are x") && got.contains("42 and nothing else"),
            "{got}"
        );
    }

    #[test]
    fn visibility_hidden_hides_unless_it_holds_the_page() {
        // A hidden block beside the visible story is left out.
        let html = format!(
            r#"<article><div style="visibility: hidden">{}</div><div>{}{}</div></article>"#,
            prose(1),
            prose(2),
            prose(3)
        );
        let got = text(&html);
        assert!(
            got.contains("Paragraph 2-0") && !got.contains("Paragraph 1-0"),
            "{got}"
        );
        // A body that a script reveals (WeChat's `#js_content`) is the page.
        let html = format!(
            r#"<div id="js_content" style="visibility:hidden">{}{}</div><p>Footer line.</p>"#,
            prose(4),
            prose(5)
        );
        assert!(text(&html).contains("Paragraph 5-2"));
    }

    #[test]
    fn an_inline_photo_credit_does_not_take_its_paragraph_along() {
        let html = format!(
            r#"<article><p><span class="storyimage"><img src="a.jpg">
            <span class="caption"><span class="attribution">© Provided by Some Agency</span></span></span>
            Nintendo and Apple shocked the world earlier this year by announcing a game,
            the company's first foray into mobile gaming.</p>{}</article>"#,
            prose(0)
        );
        let got = text(&html);
        assert!(got.contains("Nintendo and Apple shocked"), "{got}");
    }

    #[test]
    fn a_named_lead_is_kept_across_a_photo_between_it_and_the_body() {
        let html = format!(
            r#"<div><div class="article__perex">A lead that sums up the story in one long sentence, as news sites set it apart.</div>
            <div class="article__photo"><a href="/photo">A photo of the scene | Photo: Agency</a></div>
            <div class="article__content">{}</div></div>
            <div class="sidebar">{}</div>"#,
            prose(0),
            "<p>Other.</p>"
        );
        let got = text(&html);
        assert!(got.starts_with("A lead that sums up"), "{got}");
    }

    #[test]
    fn the_right_hand_column_is_furniture_but_a_right_float_is_not() {
        let html = format!(
            r#"<div><div class="main">{}<div class="pull-right"><p>A pulled quote that reads like a sentence of the story.</p></div></div>
            <div id="rightcolumn"><p>About this blog: it is written by a team of reporters, every weekday.</p></div>
            <div class="rightRail"><p>The most popular story of the week, in a sentence or two.</p></div></div>"#,
            prose(0)
        );
        let got = text(&html);
        assert!(got.contains("pulled quote"), "{got}");
        assert!(
            !got.contains("About this blog") && !got.contains("most popular"),
            "{got}"
        );
    }

    #[test]
    fn numbered_teaser_cards_are_one_feed() {
        let card = |i: usize| {
            format!(
                r#"<div class="story-block sbpos-{i} id{i}00{i}"><h4><a href="/s{i}">A headline of story number {i}</a></h4>
                <p>A short summary of story {i}, a sentence that reads like prose.</p></div>"#
            )
        };
        let cards: String = (1..=5).map(card).collect();
        let html = format!("<div><div>{}</div><div>{cards}</div></div>", prose(0));
        let got = text(&html);
        assert!(
            got.contains("Paragraph 0-2") && !got.contains("summary of story"),
            "{got}"
        );
    }

    #[test]
    fn a_story_cut_in_two_by_a_rail_is_kept_whole() {
        let part = |tag: &str, n: usize| {
            format!(
                "<p id=\"{tag}\">{}</p>",
                format!("The {tag} part of the story goes on with its facts and quotes. ").repeat(n)
            )
        };
        // The links around the two paragraphs outweigh the first one, so the
        // second alone is the heaviest element; the first is its sibling.
        let links: String = (0..12)
            .map(|i| format!(r#"<li><a href="/s{i}">Share this on network number {i}</a></li>"#))
            .collect();
        let html = format!(
            r#"<div>{}<div class="rail"><a href="/x">Ad</a></div>{}<ul>{links}</ul></div>"#,
            part("first", 3),
            part("second", 8)
        );
        let got = text(&html);
        assert!(
            got.contains("The first part") && got.contains("The second part"),
            "{got}"
        );
        // A first part named as a lead is both the lead and a sibling: printed once.
        let html = html.replace("<p id=\"first\">", "<p class=\"intro\">");
        let got = text(&html);
        assert_eq!(got.matches("The first part of").count(), 3, "{got}");
    }
}
