//! `extract`: web pages to main text. A record with an `html` field (an `.html`
//! file, or a crawl record `{"url", "html"}`) becomes a text record: the page's
//! main text goes into `text` (where `html` was), navigation, ads, footers,
//! share bars, cookie banners, comment sections and related links are left
//! out (the algorithm is in [`crate::extract`]). Records of other schemas pass
//! through untouched, so one pipeline can read SFT files and pages together.
//!
//! ```toml
//! [[stage]]
//! kind = "extract"
//! max_page_bytes = 5000000    # larger pages are rejected: page_too_large
//! max_page_millis = 5000      # pages taking longer are rejected: extract_timeout
//! keep_html = false           # true: keep the `html` field beside `text`
//! comments = "auto"           # auto | keep | drop: comment sections and replies
//! prepend_title = false       # true: `text` starts with the page title
//! ```
//! The page title (`meta.extract.title`) is not part of an article's main text,
//! as in the gold texts of every benchmark we measure on and in trafilatura's
//! output; a thread keeps its subject. `prepend_title = true` puts the title on
//! the first line of `text` (a headline is often good training text).
//! `comments = "auto"` leaves an article's comment section out (news comments are
//! rarely training data) and keeps a thread's replies: the page names the post's
//! surroundings a forum or Q&A thread (`bbs`, `forum`, `thread`, `topic`,
//! `question`), the post is shorter than its replies, or the comments are the
//! page; `"keep"` keeps them on every page, `"drop"` on none (on the magic-html
//! pages: forums char F1 0.877 with `auto`, 0.876 with `keep`; articles 0.979 and
//! 0.960).
//! Encodings are settled before this stage: `.html` files are decoded by their
//! BOM, their declared charset (a `gb2312`/`gbk` label reads as GB18030), and
//! sniffed (chardetng) when the declaration is missing or the bytes are not the
//! UTF-8 they claim; JSON input is UTF-8 already.
//!
//! `meta.extract = {title, lang, chars_kept, chars_total, fallback}`: the page title
//! (`og:title`, first `<h1>` or `<title>`), the main text's language (as the
//! `language` stage detects it, on the text's first 2,000 characters), and
//! letters/digits kept and on the whole page.
//! A page without main text is rejected as `no_main_text`. The time limit is a
//! safety valve against pathological pages: a normal page takes milliseconds,
//! so it never decides the output unless a page is really pathological (a
//! limit near real page times would make the output depend on machine speed).

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::extract::{extract_with, ExtractError};
use crate::record::{FieldMap, Record, Schema};
use crate::shape::Shape;
use crate::stage::{BuildContext, Stage, Verdict};

fn d_max_page_bytes() -> usize {
    5_000_000
}

fn d_max_page_millis() -> u64 {
    5_000
}

/// Characters of the main text that `meta.extract.lang` is detected on.
const LANG_SAMPLE_CHARS: usize = 2_000;

/// The start of the main text, for `meta.extract.lang`: whatlang's cost grows
/// with the text (it was an eighth of the stage's time on long English pages),
/// and 2,000 characters settle the language as well as the whole text does (on
/// the 730 kept pages of WCEB, magic-html and data-samples, even 500 characters
/// give every page the same `lang`).
fn lang_sample(text: &str) -> &str {
    match text.char_indices().nth(LANG_SAMPLE_CHARS) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// `[[stage]] kind = "extract"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractConfig {
    /// Pages with more bytes of HTML than this are rejected (`page_too_large`).
    #[serde(default = "d_max_page_bytes")]
    pub max_page_bytes: usize,
    /// Pages whose extraction takes longer are rejected (`extract_timeout`).
    #[serde(default = "d_max_page_millis")]
    pub max_page_millis: u64,
    /// Keep the `html` field in the output next to the new `text`.
    #[serde(default)]
    pub keep_html: bool,
    /// Comment sections: `auto` (left out beside main text), `keep` or `drop`.
    #[serde(default)]
    pub comments: crate::extract::Comments,
    /// Start `text` with the page title (`meta.extract.title`) when it does not already.
    #[serde(default)]
    pub prepend_title: bool,
}

/// The built stage.
pub struct Extract {
    cfg: ExtractConfig,
}

impl Extract {
    /// Build the stage; the limits must be positive.
    pub fn new(cfg: ExtractConfig, _cx: &BuildContext) -> Result<Self> {
        if cfg.max_page_bytes == 0 || cfg.max_page_millis == 0 {
            bail!("max_page_bytes and max_page_millis must be > 0");
        }
        Ok(Extract { cfg })
    }
}

impl Stage for Extract {
    fn kind(&self) -> &'static str {
        "extract"
    }

    fn process(&self, record: &mut Record) -> Result<Verdict> {
        if record.schema != Schema::Html {
            return Ok(Verdict::Keep);
        }
        let html_key = record.map.html.clone();
        let text_key = record.map.text.clone();
        let Some(html) = record.fields.get(&html_key).and_then(Value::as_str) else {
            return Ok(Verdict::drop(
                "no_main_text",
                format!("`{html_key}` is not a string"),
            ));
        };
        if html.len() > self.cfg.max_page_bytes {
            return Ok(Verdict::drop(
                "page_too_large",
                format!(
                    "{} bytes of HTML, over max_page_bytes = {}",
                    html.len(),
                    self.cfg.max_page_bytes
                ),
            ));
        }
        let start = Instant::now();
        let deadline = start + Duration::from_millis(self.cfg.max_page_millis);
        let got = match extract_with(html, Some(deadline), self.cfg.comments) {
            Ok(got) => got,
            Err(ExtractError::Timeout) => {
                return Ok(Verdict::drop(
                    "extract_timeout",
                    // No elapsed time here: the rejected output must not depend on the machine.
                    format!(
                        "extraction did not finish within max_page_millis = {} ({} bytes of HTML)",
                        self.cfg.max_page_millis,
                        html.len()
                    ),
                ));
            }
        };
        let (lang, _) = crate::stages::language::detect(lang_sample(&got.text));
        record.annotate(
            "extract",
            json!({
                "title": got.title,
                "lang": if got.chars_kept == 0 { "other" } else { lang },
                "chars_kept": got.chars_kept,
                "chars_total": got.chars_total,
                "fallback": got.fallback,
            }),
        );
        if got.chars_kept == 0 {
            return Ok(Verdict::drop(
                "no_main_text",
                format!("no main text among {} characters of page text", got.chars_total),
            ));
        }
        // Put `text` where `html` was, so the record keeps its field order.
        let old = std::mem::take(&mut record.fields);
        let mut fields = Map::with_capacity(old.len() + 1);
        let body = if self.cfg.prepend_title && !got.title.is_empty() && !got.text.starts_with(&got.title) {
            format!("{}\n{}", got.title, got.text)
        } else {
            got.text
        };
        let mut text = Some(body);
        for (k, v) in old {
            if k == html_key {
                if let Some(t) = text.take() {
                    fields.insert(text_key.clone(), Value::String(t));
                }
                if self.cfg.keep_html {
                    fields.insert(k, v);
                }
            } else if k != text_key {
                fields.insert(k, v);
            }
        }
        record.fields = fields;
        record.schema = Schema::Text;
        Ok(Verdict::Modified)
    }

    fn annotations(&self) -> Vec<(&'static str, Shape)> {
        let found = Shape::object(&[
            ("title", Shape::Str),
            ("lang", Shape::Str),
            ("chars_kept", Shape::Int),
            ("chars_total", Shape::Int),
            ("fallback", Shape::Bool),
        ]);
        vec![("extract", found)]
    }

    fn added_fields(&self, map: &FieldMap) -> Vec<(String, Shape)> {
        vec![(map.text.clone(), Shape::Str)]
    }

    fn describe(&self) -> String {
        format!(
            "extract: HTML -> main text (pages up to {} bytes and {} ms; html field {})",
            self.cfg.max_page_bytes,
            self.cfg.max_page_millis,
            if self.cfg.keep_html { "kept" } else { "dropped" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::test_record;

    fn stage(cfg: &str) -> Extract {
        let cfg: ExtractConfig = toml::from_str(cfg).unwrap();
        Extract::new(
            cfg,
            &BuildContext {
                config_dir: ".".into(),
            },
        )
        .unwrap()
    }

    const PAGE: &str = "<html><head><title>题目</title></head><body><nav><a href='/'>首页</a></nav>\
        <div class='content'><p>这是正文的第一段，内容充实。</p><p>这是正文的第二段，同样充实。</p></div></body></html>";

    #[test]
    fn html_record_becomes_text_in_place() {
        let s = stage("");
        let mut r = test_record(json!({"url": "u", "html": PAGE, "extra": 1}));
        assert_eq!(s.process(&mut r).unwrap(), Verdict::Modified);
        assert_eq!(r.schema, Schema::Text);
        let keys: Vec<&String> = r.fields.keys().collect();
        assert_eq!(keys, ["url", "text", "extra"]);
        assert_eq!(
            r.fields["text"],
            "这是正文的第一段，内容充实。\n这是正文的第二段，同样充实。"
        );
        assert_eq!(r.meta["extract"]["title"], "题目");
        assert_eq!(r.meta["extract"]["lang"], "zh");
        let s = stage("keep_html = true");
        let mut r = test_record(json!({"html": PAGE}));
        s.process(&mut r).unwrap();
        assert!(r.fields.contains_key("html") && r.fields.contains_key("text"));
    }

    #[test]
    fn the_title_leaves_the_text_unless_prepended() {
        let page = "<html><head><title>站名</title></head><body><h1>地铁新线今日开通</h1>\
            <div class='article-content'><p>这是正文的第一段，内容充实。</p><p>这是正文的第二段，同样充实。</p></div></body></html>";
        let mut r = test_record(json!({"html": page}));
        stage("").process(&mut r).unwrap();
        assert_eq!(
            r.fields["text"],
            "这是正文的第一段，内容充实。\n这是正文的第二段，同样充实。"
        );
        assert_eq!(r.meta["extract"]["title"], "地铁新线今日开通");
        let mut r = test_record(json!({"html": page}));
        stage("prepend_title = true").process(&mut r).unwrap();
        assert_eq!(
            r.fields["text"],
            "地铁新线今日开通\n这是正文的第一段，内容充实。\n这是正文的第二段，同样充实。"
        );
    }

    #[test]
    fn other_schemas_pass_and_limits_reject() {
        let s = stage("max_page_bytes = 100");
        let mut r = test_record(json!({"text": "<p>不是网页</p>"}));
        assert_eq!(s.process(&mut r).unwrap(), Verdict::Keep);
        assert!(r.meta.is_empty());
        let mut r = test_record(json!({"html": PAGE}));
        match s.process(&mut r).unwrap() {
            Verdict::Drop { reason, .. } => assert_eq!(reason, "page_too_large"),
            v => panic!("{v:?}"),
        }
        let mut r = test_record(json!({"html": "<nav><a href='/'>首页</a></nav><script>x</script>"}));
        match stage("").process(&mut r).unwrap() {
            Verdict::Drop { reason, .. } => assert_eq!(reason, "no_main_text"),
            v => panic!("{v:?}"),
        }
        assert!(Extract::new(
            toml::from_str("max_page_millis = 0").unwrap(),
            &BuildContext {
                config_dir: ".".into()
            }
        )
        .is_err());
    }
}
