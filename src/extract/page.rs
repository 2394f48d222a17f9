//! The page every step reads: its blocks in document order, the block-level
//! elements that hold them (a tree by parent index, in document order), the
//! title candidates, and what one block reads as.
//!
//! A block's judgements live beside its type because every later step asks
//! them: whether it reads like prose or is a link list (marks, the container
//! choice), its weight (the container choice), whether it is a button or
//! counter label, a byline or a copyright line (output).

use crate::text::is_cjk;

/// How a block is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BlockKind {
    Plain,
    Heading,
    ListItem,
    Code,
}

/// Boilerplate level of an element or block (higher wins when nested).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(super) enum Mark {
    #[default]
    None,
    /// Comment sections: dropped only when the page has other main text.
    Soft,
    /// Navigation, footers, ads, share bars, ...: never main text.
    Hard,
}

/// A run of text between block-level boundaries.
#[derive(Debug, Clone)]
pub(super) struct Block {
    pub(super) text: String,
    /// Letters and digits.
    pub(super) chars: usize,
    /// Letters and digits inside `<a>`.
    pub(super) link_chars: usize,
    /// Sentence punctuation marks.
    pub(super) punct: usize,
    /// CJK characters outside links.
    pub(super) cjk_text: usize,
    /// The innermost element holding the block (index into `Page::elements`).
    pub(super) owner: usize,
    pub(super) kind: BlockKind,
    pub(super) mark: Mark,
}

/// An element of the tree, as far as scoring needs it.
#[derive(Debug, Clone)]
pub(super) struct El {
    pub(super) parent: usize,
    /// Blocks of this element's subtree: `first_block..end_block`.
    pub(super) first_block: usize,
    pub(super) end_block: usize,
    /// The mark its own tag and `class`/`id` give it (see [`resolve_marks`](super::marks::resolve_marks)).
    pub(super) own_mark: Mark,
    /// Named as the article body (`<article>`, `itemprop="articleBody"`,
    /// `class="article-content"`, ...): see [`content_hint`](super::marks::content_hint).
    pub(super) hint: bool,
    /// `ul`/`ol` (`List`) or `li` (`Item`), for [`mark_teaser_lists`](super::marks::mark_teaser_lists).
    pub(super) list: ListRole,
    /// `<html>` or `<body>` (or the document itself): the whole page, which
    /// [`replies_after`](super::choose::replies_after) does not search.
    pub(super) whole_page: bool,
    /// Names itself a forum or Q&A thread by a word of its `class`/`id`
    /// ([`THREAD_WORDS`](super::marks::THREAD_WORDS)), for [`select_main_text`](super::choose::select_main_text).
    pub(super) thread: bool,
    /// Names itself a summary or lead ([`LEAD_WORDS`](super::marks::LEAD_WORDS)), for
    /// [`with_lead`](super::choose::with_lead).
    pub(super) lead: bool,
    /// Inside an element named for a post's author ([`USER_WORDS`](super::marks::USER_WORDS)),
    /// for [`render`](super::print::render).
    pub(super) user: bool,
    /// Hash of the tag and the first `class` word without digits or parity
    /// words (`comment even depth-1` and `comment odd alt` are one template):
    /// units of one post template, for [`replies_are_posts`](super::posts::replies_are_posts),
    /// and the cards of one teaser feed, for [`mark_teaser_lists`](super::marks::mark_teaser_lists).
    pub(super) unit_shape: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ListRole {
    None,
    List,
    Item,
}

/// Everything the selection needs from the parsed page.
#[derive(Debug, Default, Clone)]
pub(super) struct Page {
    pub(super) blocks: Vec<Block>,
    pub(super) elements: Vec<El>,
    pub(super) title_tag: String,
    pub(super) og_title: String,
    pub(super) first_h1: String,
    pub(super) lang_attr: Option<String>,
}

impl Page {
    pub(super) fn title(&self) -> String {
        [&self.og_title, &self.first_h1, &self.title_tag]
            .into_iter()
            .map(|t| collapse_ws(t))
            .find(|t| !t.is_empty())
            .unwrap_or_default()
    }
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
    // A reading-time label (`5 min read`, `3 分钟阅读`).
    "minread",
    "minsread",
    "minuteread",
    "minutesread",
    "分钟阅读",
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
    pub(super) fn is_link_list(&self) -> bool {
        self.chars > 0 && self.link_density() > 0.5
    }

    /// A copyright or licence line (a footer that sits inside the container).
    pub(super) fn is_copyright(&self) -> bool {
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
    pub(super) fn is_meta_line(&self) -> bool {
        // An English sentence ends so; a Chinese citation (`新华网. 2023-12-06.`) too;
        // a clock time does not (`posted on April 21, 2015, at 11:29 a.m.`).
        let end = self.text.trim_end();
        let sentence_end = end.ends_with(['.', '!', '?']) && !end.ends_with("a.m.") && !end.ends_with("p.m.");
        self.chars <= 80
            && !self
                .text
                .chars()
                .any(|c| matches!(c, '，' | '。' | '！' | '？' | '；'))
            && !(sentence_end && self.text.chars().filter(|c| is_cjk(*c)).count() * 3 < self.chars)
            && has_date_or_time(&self.text)
    }

    /// The block's contribution to its containers' scores (see the module docs).
    pub(super) fn weight(&self, soft_counts: bool) -> f64 {
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
    pub(super) fn reads_like_text(&self) -> bool {
        !self.is_link_list() && (self.punct > 0 || self.cjk_text >= 10 || self.chars - self.link_chars >= 30)
    }

    /// Whether the block belongs in the output once its container is chosen.
    pub(super) fn is_output(&self, soft_counts: bool) -> bool {
        // Code is printed whole: `127.0.0.1` is no date, a licence header no footer.
        self.is_container_text(soft_counts)
            && (self.kind == BlockKind::Code
                || !self.is_copyright() && !self.is_meta_line() && !self.is_ui_label())
    }

    /// Whether the block is the container's own text (bylines and footers
    /// included): what [`select_main_text`](super::choose::select_main_text) measures.
    pub(super) fn is_container_text(&self, soft_counts: bool) -> bool {
        match self.mark {
            Mark::Hard => false,
            Mark::Soft if !soft_counts => false,
            _ => !self.is_link_list(),
        }
    }
}

/// A date (`2024-5-18`, `2024.05.20`, `2024年5月`, `June 5, 2023`), a clock time
/// (`19:27`) or a relative time (`6 天前`, `3小时前`) somewhere in `text`.
pub(super) fn has_date_or_time(text: &str) -> bool {
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

pub(super) fn collapse_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Each element's value summed over its subtree, from each element's `own` value.
pub(super) fn subtree_sums<T: Copy + std::ops::AddAssign>(page: &Page, mut own: Vec<T>) -> Vec<T> {
    // Elements were pushed in document (pre-)order: children come after parents.
    for i in (1..page.elements.len()).rev() {
        let v = own[i];
        own[page.elements[i].parent] += v;
    }
    own
}
