//! `span_dedup`: cut lines or sentences that occur in many documents out of every
//! record (boilerplate: `希望对你有帮助！`, `以上就是…的全部内容`, cookie and footer
//! lines, long spans copied between documents).
//!
//! **Spans** (`dedup::span_split`): lines, or with `unit = "sentence"` sentences
//! inside lines, of the selected text views (`fields`, default `response`: answers
//! and whole documents; prompts repeat on purpose: templates, shared instructions).
//! A span is hashed after folding whitespace, punctuation, full-width forms and
//! ASCII case, and counts only when its normalized width reaches `min_width` (a CJK
//! character counts 2), so `1.`, `Yes` or `谢谢` are never touched.
//!
//! **Counts need the whole input (a prepass)**: every record hands the distinct
//! hashes of its spans to `observe` (a span repeated inside one record counts
//! once); the prepass (`dedup::spans`) counts documents per hash exactly, spilling
//! sorted runs at `memory_limit`, and keeps the spans found in at least
//! `min_repeats` documents. In the main pass each record, in parallel, looks its
//! spans up in that set and loses the repeated ones.
//!
//! **Every occurrence is removed**, the first included, as CCNet's line dedup and
//! datatrove's SentenceDedup do: boilerplate has no original worth keeping, and a
//! rule that needs no "first" needs no global order, so counts are plain sums and a
//! sharded run (observe per rank, merge per hash range, join) gets the same set, and
//! the same output, as one process.
//!
//! **Outcome**: `action = "redact"` (default) cuts the spans out (a line that is
//! left blank goes with its newline; blank lines it leaves doubled are folded) and
//! the record is `modified`; a record whose selected text view is left empty is
//! dropped, reason `span_dedup_empty` (the original text goes to `rejected/`).
//! `action = "tag"` only annotates (`tagged`, reason `repeated_spans` or
//! `span_dedup_empty`). `meta.span_dedup = {removed: [{field, start, end, docs}],
//! removed_chars}` on records with repeated spans: `start`/`end` are **character**
//! offsets (not bytes) into the field's text before the cut, as `pii` writes them;
//! `docs` is the span's document count.
//!
//! `stats.json`: the prepass counts, the records and characters removed, and
//! `top_removed`: the 20 most frequent repeated spans (most documents first, ties
//! by hash) with their text as first met in input order (`null` where this run or
//! rank met none), their document count `docs` and the `records` of this run they
//! were found in.
//!
//! ```toml
//! [[stage]]
//! kind = "span_dedup"
//! fields = "response"   # all | prompt | response
//! unit = "line"         # line | sentence
//! min_width = 10        # normalized width (CJK characters count 2)
//! min_repeats = 3       # documents a span must occur in
//! memory_limit = "1GiB" # counts held before a sorted run is spilled
//! action = "redact"     # redact | tag
//! ```

use std::sync::OnceLock;

use anyhow::{bail, Result};
use serde::Deserialize;
use serde_json::{json, Value};

use super::minhash_dedup::de_bytes;
use crate::dedup::span_split::{Span, SpanSplitter, SpanUnit};
use crate::dedup::spans::{SpanParams, SpanPrepass};
use crate::dedup::PrepassStore;
use crate::hash::HashKeyMap;
use crate::record::{FieldPath, Record, TextFields};
use crate::shape::Shape;
use crate::stage::{Action, BuildContext, GlobalStage, StateReader, Verdict};

/// Most frequent repeated spans listed in `stats.json`.
const TOP_SPANS: usize = 20;
/// Characters of a listed span's text kept in `stats.json`.
const TOP_TEXT_CHARS: usize = 200;

/// `[[stage]] kind = "span_dedup"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpanDedupConfig {
    /// Which text views are cut into spans (`response` also takes whole documents).
    #[serde(default = "TextFields::response")]
    pub fields: TextFields,
    #[serde(default)]
    pub unit: SpanUnit,
    /// Normalized width a span needs to count (a CJK character counts 2).
    #[serde(default = "d_min_width")]
    pub min_width: usize,
    /// Documents a span must occur in to be removed.
    #[serde(default = "d_min_repeats")]
    pub min_repeats: u32,
    /// Bytes of counts held while observing before a sorted run is spilled.
    #[serde(default = "d_memory_limit", deserialize_with = "de_bytes")]
    pub memory_limit: u64,
    #[serde(default = "d_action")]
    pub action: Action,
}

fn d_min_width() -> usize {
    10
}
fn d_min_repeats() -> u32 {
    3
}
fn d_memory_limit() -> u64 {
    1 << 30
}
fn d_action() -> Action {
    Action::Redact
}

impl Default for SpanDedupConfig {
    fn default() -> Self {
        SpanDedupConfig {
            fields: TextFields::Response,
            unit: SpanUnit::Line,
            min_width: d_min_width(),
            min_repeats: d_min_repeats(),
            memory_limit: d_memory_limit(),
            action: d_action(),
        }
    }
}

/// One of the most frequent repeated spans, as the main pass met it.
#[derive(Debug, Clone, Default, PartialEq)]
struct TopSeen {
    text: Option<String>,
    /// Records of this run it was found in (cut, tagged, or in an emptied record).
    records: u64,
}

/// The built stage.
pub struct SpanDedup {
    cfg: SpanDedupConfig,
    prepass: SpanPrepass,
    /// Main pass: hash of each listed span -> its place in the summary's list.
    top_index: OnceLock<HashKeyMap<u64, usize>>,
    /// Main-pass tallies (saved with each checkpoint).
    records_modified: u64,
    records_emptied: u64,
    spans_removed: u64,
    chars_removed: u64,
    top_seen: Vec<TopSeen>,
}

/// A record's key: its span hashes in the prepass, what was cut in the main pass.
pub enum SpanKey {
    /// Prepass: the distinct hashes of the record's spans.
    Observed(Vec<u64>),
    /// Main pass: the repeated spans found (already cut out unless tagging or emptied).
    Found(Found),
}

/// What the main pass found in one record.
#[derive(Debug, Default)]
pub struct Found {
    spans: u64,
    chars: u64,
    /// The first selected field the cut would leave empty.
    emptied: Option<String>,
    /// Texts of listed spans cut from this record: (place in the list, text).
    top: Vec<(usize, String)>,
}

impl SpanDedup {
    /// Check the config and build the stage.
    pub fn new(cfg: SpanDedupConfig, _cx: &BuildContext) -> Result<Self> {
        if cfg.action == Action::Drop {
            bail!(
                "span_dedup: action \"drop\" does not apply (it removes spans, not records); use \
                 \"redact\" (cut repeated spans out; records left empty are dropped) or \"tag\""
            );
        }
        if cfg.min_repeats < 2 {
            bail!(
                "span_dedup: min_repeats must be at least 2 (1 would remove every span), got {}",
                cfg.min_repeats
            );
        }
        if cfg.min_width == 0 {
            bail!("span_dedup: min_width must be at least 1");
        }
        if cfg.memory_limit < 1 << 20 {
            bail!("span_dedup: memory_limit must be at least 1MiB");
        }
        let params = SpanParams {
            min_repeats: cfg.min_repeats,
            memory_limit: cfg.memory_limit,
            top: TOP_SPANS,
        };
        Ok(SpanDedup {
            cfg,
            prepass: SpanPrepass::new(params),
            top_index: OnceLock::new(),
            records_modified: 0,
            records_emptied: 0,
            spans_removed: 0,
            chars_removed: 0,
            top_seen: Vec::new(),
        })
    }

    fn splitter(&self) -> SpanSplitter {
        SpanSplitter::new(self.cfg.unit, self.cfg.min_width)
    }

    /// Hash -> place of the summary's most frequent spans.
    fn top_index(&self) -> &HashKeyMap<u64, usize> {
        self.top_index.get_or_init(|| {
            let mut m = HashKeyMap::default();
            if let Some(sum) = self.prepass.summary() {
                for (i, t) in sum.top.iter().enumerate() {
                    if let Ok(h) = u64::from_str_radix(&t.hash, 16) {
                        m.insert(h, i);
                    }
                }
            }
            m
        })
    }

    /// Main pass: find the record's repeated spans, annotate, and cut them out
    /// unless tagging or the cut would empty a field.
    fn find(&self, record: &mut Record) -> Found {
        let mut found = Found::default();
        let Some(repeated) = self.prepass.repeated().filter(|r| !r.is_empty()) else {
            return found;
        };
        let mut splitter = self.splitter();
        let mut spans: Vec<Span> = Vec::new();
        let mut meta = Vec::new();
        let mut edits: Vec<(FieldPath, String)> = Vec::new();
        for (seg, text) in record.texts() {
            if !self.cfg.fields.selects(seg.role) {
                continue;
            }
            spans.clear();
            splitter.split(text, &mut spans);
            let hits: Vec<(Span, u32)> = spans
                .iter()
                .filter_map(|s| repeated.docs(s.hash).map(|n| (*s, n)))
                .collect();
            if hits.is_empty() {
                continue;
            }
            let field = seg.path.to_string();
            // Character offsets, walking the text once.
            let (mut byte, mut chars) = (0usize, 0usize);
            for (s, docs) in &hits {
                chars += text[byte..s.start].chars().count();
                let start = chars;
                chars += text[s.start..s.end].chars().count();
                byte = s.end;
                meta.push(json!({"field": field, "start": start, "end": chars, "docs": docs}));
                found.spans += 1;
                found.chars += (chars - start) as u64;
                // Once per record, as `docs` counts it.
                let listed = self.top_index().get(&s.hash).copied();
                if let Some(i) = listed.filter(|i| !found.top.iter().any(|(j, _)| j == i)) {
                    found
                        .top
                        .push((i, text[s.start..s.end].chars().take(TOP_TEXT_CHARS).collect()));
                }
            }
            let spans_only: Vec<Span> = hits.iter().map(|(s, _)| *s).collect();
            let cut = cut_spans(text, &spans_only);
            if cut.trim().is_empty() && found.emptied.is_none() {
                found.emptied = Some(field);
            }
            edits.push((seg.path, cut));
        }
        if found.spans == 0 {
            return found;
        }
        record.annotate(
            "span_dedup",
            json!({"removed": meta, "removed_chars": found.chars}),
        );
        if self.cfg.action != Action::Tag && found.emptied.is_none() {
            for (path, text) in edits {
                record.set_text(&path, text);
            }
        }
        found
    }
}

/// `text` without `spans` (sorted, disjoint byte ranges): the spaces after a cut
/// span go with it, a line left blank goes with its newline, and a blank line the
/// cut leaves doubled (or leading, or trailing) is folded away.
pub fn cut_spans(text: &str, spans: &[Span]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut next = spans.iter().peekable();
    let mut line_start = 0;
    let mut emitted_any = false;
    let mut last_blank = false;
    // A line was dropped since the last line written.
    let mut dropped = false;
    let mut kept = String::new();
    for line in text.split('\n') {
        let line_end = line_start + line.len();
        kept.clear();
        let mut pos = line_start;
        let mut cut = false;
        while let Some(s) = next.peek().filter(|s| s.start < line_end) {
            kept.push_str(&text[pos..s.start]);
            let rest = &text[s.end..line_end];
            pos = s.end + (rest.len() - rest.trim_start_matches([' ', '\t']).len());
            cut = true;
            next.next();
        }
        kept.push_str(&text[pos.min(line_end)..line_end]);
        line_start = line_end + 1;
        let blank = kept.trim().is_empty();
        if cut && blank {
            dropped = true;
            continue;
        }
        if blank && dropped && (!emitted_any || last_blank) {
            continue;
        }
        if emitted_any {
            out.push('\n');
        }
        if cut {
            out.push_str(kept.trim_end());
        } else {
            out.push_str(&kept);
        }
        emitted_any = true;
        last_blank = blank;
        if !blank {
            dropped = false;
        }
    }
    if dropped {
        // The cut reached the end: no blank lines left dangling.
        let end = out.trim_end().len();
        out.truncate(end);
        if text.ends_with('\n') && !out.is_empty() {
            out.push('\n');
        }
    }
    out
}

impl GlobalStage for SpanDedup {
    type Key = SpanKey;

    fn kind(&self) -> &'static str {
        "span_dedup"
    }

    fn key(&self, record: &mut Record) -> Result<SpanKey> {
        if self.prepass.summary().is_some() {
            return Ok(SpanKey::Found(self.find(record)));
        }
        let mut splitter = self.splitter();
        let mut spans = Vec::new();
        for (seg, text) in record.texts() {
            if self.cfg.fields.selects(seg.role) {
                splitter.split(text, &mut spans);
            }
        }
        let mut hashes: Vec<u64> = spans.iter().map(|s| s.hash).collect();
        hashes.sort_unstable();
        hashes.dedup();
        Ok(SpanKey::Observed(hashes))
    }

    fn decide(&mut self, _record: &mut Record, key: SpanKey) -> Result<Verdict> {
        let SpanKey::Found(found) = key else {
            bail!("span_dedup: a prepass key reached the main pass");
        };
        if found.spans == 0 {
            return Ok(Verdict::Keep);
        }
        if self.top_seen.is_empty() {
            let n = self.prepass.summary().map_or(0, |s| s.top.len());
            self.top_seen = vec![TopSeen::default(); n];
        }
        for (i, text) in found.top {
            if let Some(t) = self.top_seen.get_mut(i) {
                t.records += 1;
                t.text.get_or_insert(text);
            }
        }
        if let Some(field) = found.emptied {
            self.records_emptied += 1;
            let detail = format!(
                "every span of `{field}` occurs in at least {} other records ({} spans, {} characters)",
                self.cfg.min_repeats - 1,
                found.spans,
                found.chars
            );
            if self.cfg.action == Action::Tag {
                return Ok(Verdict::Tagged {
                    reason: "span_dedup_empty".into(),
                });
            }
            return Ok(Verdict::drop("span_dedup_empty", detail));
        }
        self.records_modified += 1;
        self.spans_removed += found.spans;
        self.chars_removed += found.chars;
        if self.cfg.action == Action::Tag {
            return Ok(Verdict::Tagged {
                reason: "repeated_spans".into(),
            });
        }
        Ok(Verdict::Modified)
    }

    fn needs_prepass(&self) -> bool {
        true
    }

    fn prepass(&mut self) -> &mut dyn PrepassStore {
        &mut self.prepass
    }

    fn observe(&mut self, _record: &Record, key: SpanKey) -> Result<()> {
        let SpanKey::Observed(hashes) = key else {
            bail!("span_dedup: observe in the main pass");
        };
        self.prepass.add(&hashes)
    }

    fn use_sharded_prepass(&mut self) -> bool {
        true
    }

    fn save_state(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        out.extend_from_slice(b"SD01");
        for n in [
            self.records_modified,
            self.records_emptied,
            self.spans_removed,
            self.chars_removed,
        ] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        for t in &self.top_seen {
            out.extend_from_slice(&t.records.to_le_bytes());
            match &t.text {
                None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
                Some(s) => {
                    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                    out.extend_from_slice(s.as_bytes());
                }
            }
        }
        Ok(out)
    }

    fn load_state(&mut self, state: &[u8]) -> Result<()> {
        let mut s = StateReader::new(state, "span_dedup", b"SD01")?;
        let mut n = [0u64; 4];
        for v in &mut n {
            *v = s.u64()?;
        }
        [
            self.records_modified,
            self.records_emptied,
            self.spans_removed,
            self.chars_removed,
        ] = n;
        self.top_seen.clear();
        while !s.is_empty() {
            let records = s.u64()?;
            let len = s.u32()?;
            let text = if len == u32::MAX {
                None
            } else {
                Some(s.str(len as usize)?)
            };
            self.top_seen.push(TopSeen { text, records });
        }
        Ok(())
    }

    fn summary(&self) -> Option<Value> {
        let sum = self.prepass.summary()?;
        let top: Vec<Value> = sum
            .top
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let seen = self.top_seen.get(i).cloned().unwrap_or_default();
                json!({"text": seen.text, "docs": t.docs, "records": seen.records, "hash": t.hash})
            })
            .collect();
        Some(json!({
            "records": sum.records,
            "spans": sum.spans,
            "distinct_spans": sum.distinct_spans,
            "repeated_spans": sum.repeated_spans,
            "min_repeats": sum.min_repeats,
            "count_runs": sum.count_runs,
            "unit": format!("{:?}", self.cfg.unit).to_lowercase(),
            "min_width": self.cfg.min_width,
            "records_modified": self.records_modified,
            "records_emptied": self.records_emptied,
            "spans_removed": self.spans_removed,
            "chars_removed": self.chars_removed,
            "top_removed": top,
        }))
    }

    fn annotations(&self) -> Vec<(&'static str, Shape)> {
        let span = Shape::object(&[
            ("field", Shape::Str),
            ("start", Shape::Int),
            ("end", Shape::Int),
            ("docs", Shape::Int),
        ]);
        vec![(
            "span_dedup",
            Shape::object(&[("removed", Shape::list(span)), ("removed_chars", Shape::Int)]),
        )]
    }

    fn describe(&self) -> String {
        format!(
            "fields {:?}, unit {:?}, min_width {}, min_repeats {}, action {:?}",
            self.cfg.fields, self.cfg.unit, self.cfg.min_width, self.cfg.min_repeats, self.cfg.action
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(text: &str, pieces: &[&str]) -> String {
        let spans: Vec<Span> = pieces
            .iter()
            .map(|p| {
                let start = text.find(p).unwrap();
                Span {
                    start,
                    end: start + p.len(),
                    hash: 0,
                }
            })
            .collect();
        cut_spans(text, &spans)
    }

    #[test]
    fn cutting_drops_blank_lines_it_leaves() {
        assert_eq!(cut("A\nBOILER\nB", &["BOILER"]), "A\nB");
        assert_eq!(cut("A\n\nBOILER\n\nB", &["BOILER"]), "A\n\nB");
        assert_eq!(cut("BOILER\n\nA\n", &["BOILER"]), "A\n");
        assert_eq!(cut("A\n\nBOILER\n", &["BOILER"]), "A\n");
        assert_eq!(cut("A\n\nBOILER", &["BOILER"]), "A");
        assert_eq!(
            cut("正文在这里。希望对你有帮助！", &["希望对你有帮助！"]),
            "正文在这里。"
        );
        assert_eq!(cut("One. Two. Three.", &["Two."]), "One. Three.");
        // Blank lines the input had stay.
        assert_eq!(cut("A\n\n\nB\nX", &["X"]), "A\n\n\nB");
        assert_eq!(cut("X", &["X"]), "");
    }

    #[test]
    fn state_round_trips() {
        let cx = BuildContext {
            config_dir: ".".into(),
        };
        let mut s = SpanDedup::new(SpanDedupConfig::default(), &cx).unwrap();
        s.records_modified = 3;
        s.chars_removed = 99;
        s.top_seen = vec![
            TopSeen {
                text: Some("希望对你有帮助！".into()),
                records: 7,
            },
            TopSeen::default(),
        ];
        let bytes = s.save_state().unwrap();
        let mut t = SpanDedup::new(SpanDedupConfig::default(), &cx).unwrap();
        t.load_state(&bytes).unwrap();
        assert_eq!((t.records_modified, t.chars_removed), (3, 99));
        assert_eq!(t.top_seen, s.top_seen);
        assert!(t.load_state(&bytes[..bytes.len() - 2]).is_err());
        let bad = SpanDedupConfig {
            min_repeats: 1,
            ..SpanDedupConfig::default()
        };
        assert!(SpanDedup::new(bad, &cx).is_err());
    }
}
