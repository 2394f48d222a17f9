//! Reading: the reader thread cuts the sources into batches and *units* (the unit
//! of output and of resumption: `part_records` items of one source), and the
//! parallel parse step turns raw items into records or `malformed` rejections.
//! [`map_records`] is the same reading for tools that run no pipeline (`curate
//! audit`, `curate tokstats`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use anyhow::Result;
use rayon::prelude::*;
use serde_json::{json, Map, Value};

use super::clock::thread_cpu_nanos;
use super::options::RunOptions;
use crate::config::Pipeline;
use crate::io::{self, Payload, RawItem, Source};
use crate::record::{FieldMap, Origin, Record, Schema};
use crate::sharded::rank::Rank;

/// A batch of raw items from one unit.
pub(super) struct ReadBatch {
    pub(super) source: usize,
    pub(super) chunk: u64,
    pub(super) items: Vec<RawItem>,
    /// Last batch of its unit.
    pub(super) unit_end: bool,
    /// Last batch of its source: the reader's notes for the stats.
    pub(super) source_end: Option<Vec<String>>,
}

pub(super) enum ReadMsg {
    Batch(ReadBatch),
    /// A batch read back from a prepass spill (see [`super::spill`]).
    Spilled(super::spill::SpillBatch),
    Failed(anyhow::Error),
}

/// One record's fate inside a batch.
pub(super) enum Slot {
    Live(Box<Record>),
    Gone(Box<Rejection>),
}

pub(super) struct Rejection {
    /// 0 = the reader; i + 1 = pipeline stage i.
    pub(super) stage: usize,
    pub(super) reason: String,
    pub(super) detail: String,
    pub(super) id: String,
    pub(super) origin: String,
    /// The record as it was when dropped (None for malformed input).
    pub(super) record: Option<Map<String, Value>>,
    pub(super) preview: String,
    /// Stages that tagged the record before it was dropped ([`Record::tagged_by`]).
    pub(super) tagged_by: Vec<u32>,
    pub(super) raw: Option<(String, u64)>,
}

/// [`preview`] of `texts` joined by blank lines (as [`Record::full_text`] joins
/// them), without building the whole joined text.
pub(super) fn preview_joined<'a>(texts: impl Iterator<Item = &'a str>, max_chars: usize) -> String {
    let mut s = String::new();
    let mut taken = 0;
    for (i, text) in texts.enumerate() {
        let piece = if i > 0 { ["\n\n", text] } else { ["", text] };
        for c in piece.iter().flat_map(|p| p.chars()) {
            if taken == max_chars {
                s.push('…');
                return s;
            }
            s.push(c);
            taken += 1;
        }
    }
    s
}

/// The first `max_chars` characters of a text, `…` when cut.
pub(super) fn preview(text: &str, max_chars: usize) -> String {
    let mut s: String = text.chars().take(max_chars).collect();
    if text.chars().nth(max_chars).is_some() {
        s.push('…');
    }
    s
}

/// Everything the parallel parse step needs.
struct ParseContext {
    map: Arc<FieldMap>,
    schema: Option<Schema>,
    source_name: Arc<str>,
}

/// Parses a run's batches: the pipeline's field names and schema, taken once.
pub(super) struct BatchParser {
    map: Arc<FieldMap>,
    schema: Option<Schema>,
    /// Thread CPU time spent parsing, summed over workers.
    cpu_nanos: AtomicU64,
}

/// Items per parallel parse task (the CPU clock is read once per task).
const PARSE_CHUNK: usize = 64;

impl BatchParser {
    /// The parser for `pipeline`'s `[input]` (a bad `schema` is a config error).
    pub(super) fn new(pipeline: &Pipeline) -> Result<BatchParser> {
        Ok(BatchParser {
            map: Arc::new(pipeline.input.fields.clone()),
            schema: pipeline.input.schema()?,
            cpu_nanos: AtomicU64::new(0),
        })
    }

    /// CPU seconds spent parsing so far.
    pub(super) fn cpu_seconds(&self) -> f64 {
        self.cpu_nanos.load(Ordering::Relaxed) as f64 / 1e9
    }

    /// Parse one batch of `source_name`'s items in parallel (on the current rayon pool).
    pub(super) fn parse(&self, items: Vec<RawItem>, source_name: &Arc<str>) -> Vec<Slot> {
        let cx = ParseContext {
            map: self.map.clone(),
            schema: self.schema,
            source_name: source_name.clone(),
        };
        let mut chunks = Vec::with_capacity(items.len().div_ceil(PARSE_CHUNK));
        let mut items = items.into_iter();
        loop {
            let chunk: Vec<RawItem> = items.by_ref().take(PARSE_CHUNK).collect();
            if chunk.is_empty() {
                break;
            }
            chunks.push(chunk);
        }
        let parsed: Vec<Vec<Slot>> = chunks
            .into_par_iter()
            .map(|chunk| {
                let cpu = thread_cpu_nanos();
                let slots: Vec<Slot> = chunk.into_iter().map(|it| parse_item(it, &cx)).collect();
                let spent = thread_cpu_nanos().saturating_sub(cpu);
                self.cpu_nanos.fetch_add(spent, Ordering::Relaxed);
                slots
            })
            .collect();
        parsed.into_iter().flatten().collect()
    }
}

/// Turn one raw input item into a [`Record`] as `curate run` does; `Err` gives the
/// `malformed` detail. For tools that read inputs without running a pipeline (`curate audit`).
pub fn parse_record(
    item: RawItem,
    map: &Arc<FieldMap>,
    schema: Option<Schema>,
    source_name: &Arc<str>,
) -> std::result::Result<Record, String> {
    let cx = ParseContext {
        map: map.clone(),
        schema,
        source_name: source_name.clone(),
    };
    match parse_item(item, &cx) {
        Slot::Live(r) => Ok(*r),
        Slot::Gone(rej) => Err(rej.detail),
    }
}

/// Parse one raw item into a live record or a `malformed` rejection.
fn parse_item(item: RawItem, cx: &ParseContext) -> Slot {
    let size = item.size() as u64;
    let mut slot = parse_payload(item, cx);
    if let Slot::Live(rec) = &mut slot {
        rec.input_bytes = size;
    }
    slot
}

/// [`parse_item`] without the books.
fn parse_payload(item: RawItem, cx: &ParseContext) -> Slot {
    let origin = Origin {
        source: cx.source_name.clone(),
        line: item.pos.line,
        index: item.pos.index,
    };
    let malformed = |detail: String, raw: &[u8], raw_len: u64| {
        let text = String::from_utf8_lossy(raw).to_string();
        Slot::Gone(Box::new(Rejection {
            stage: 0,
            reason: "malformed".into(),
            detail,
            id: origin.to_string(),
            origin: origin.to_string(),
            record: None,
            preview: preview(&text, 300),
            tagged_by: Vec::new(),
            raw: Some((text, raw_len)),
        }))
    };
    let (fields, schema) = match item.payload {
        Payload::Malformed { detail, raw, raw_len } => return malformed(detail, &raw, raw_len),
        Payload::Json(bytes) => {
            // simdutf8 (already in the tree through arrow-json and encoding_rs) checks
            // valid text several times faster than `std::str::from_utf8` (12% of a
            // pass-through run); std only runs to place the error.
            let text = match simdutf8::basic::from_utf8(&bytes) {
                Ok(t) => t,
                Err(_) => {
                    let e = std::str::from_utf8(&bytes).expect_err("simdutf8 and std agree");
                    let cut = &bytes[..bytes.len().min(io::MALFORMED_KEEP_BYTES)];
                    return malformed(
                        format!("invalid UTF-8 at byte {} of the record", e.valid_up_to()),
                        cut,
                        bytes.len() as u64,
                    );
                }
            };
            match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(m)) => (m, cx.schema),
                Ok(other) => {
                    let cut = &bytes[..bytes.len().min(io::MALFORMED_KEEP_BYTES)];
                    return malformed(
                        format!(
                            "expected a JSON object, found {}",
                            crate::record::json_type(&other)
                        ),
                        cut,
                        bytes.len() as u64,
                    );
                }
                Err(e) => {
                    let cut = &bytes[..bytes.len().min(io::MALFORMED_KEEP_BYTES)];
                    return malformed(format!("invalid JSON: {e}"), cut, bytes.len() as u64);
                }
            }
        }
        Payload::Row(text) => match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(m)) => (m, cx.schema),
            _ => {
                return malformed(
                    "row is not a JSON object".into(),
                    text.as_bytes(),
                    text.len() as u64,
                )
            }
        },
        Payload::Html { bytes, file } => {
            let decoded = io::html::decode_html_owned(bytes);
            let mut m = Map::new();
            m.insert(cx.map.id.clone(), Value::String(file));
            m.insert(cx.map.html.clone(), Value::String(decoded.text));
            let mut rec = match Record::from_object(m, Some(Schema::Html), cx.map.clone(), origin.clone()) {
                Ok(r) => r,
                Err(e) => return malformed(e, &[], 0),
            };
            rec.annotate(
                "decode",
                json!({ "encoding": decoded.encoding, "declared": decoded.declared, "via": decoded.via }),
            );
            return Slot::Live(Box::new(rec));
        }
    };
    match Record::try_from_object(fields, schema, cx.map.clone(), origin.clone()) {
        Ok(r) => Slot::Live(Box::new(r)),
        Err((detail, fields)) => {
            let text = serde_json::to_string(&fields).unwrap_or_default();
            Slot::Gone(Box::new(Rejection {
                stage: 0,
                reason: "malformed".into(),
                detail,
                id: origin.to_string(),
                origin: origin.to_string(),
                record: Some(fields),
                preview: preview(&text, 300),
                tagged_by: Vec::new(),
                raw: None,
            }))
        }
    }
}

/// Bytes on disk that a pass reads, for its progress bar: the spill of the prepass it
/// follows, else the sources (unknown, 0, with `--limit`, which stops inside them).
pub(super) fn pass_read_size(
    spill_dir: Option<&std::path::Path>,
    sources: &[Source],
    opts: &RunOptions,
) -> u64 {
    match spill_dir {
        Some(dir) => crate::io::tree_size(&super::spill::spill_path(dir)),
        None if opts.limit.is_some() => 0,
        None => crate::io::sources_size(sources),
    }
}

/// What the reader thread needs: sources, where to start, and how to cut units.
pub(super) struct ReaderJob {
    sources: Vec<Source>,
    /// (source, chunk) of the first unit not yet done.
    start: (usize, u64),
    records_read: u64,
    limit: Option<u64>,
    part_records: u64,
    batch_records: usize,
    batch_bytes: usize,
    max_record_bytes: u64,
    fields: FieldMap,
    rank: Option<Rank>,
}

impl ReaderJob {
    /// The reader for this pipeline and run options, starting at `start` with `records_read` done.
    pub(super) fn new(
        pipeline: &Pipeline,
        sources: &[Source],
        opts: &RunOptions,
        start: (usize, u64),
        records_read: u64,
    ) -> Self {
        ReaderJob {
            sources: sources.to_vec(),
            start,
            records_read,
            limit: opts.limit,
            part_records: pipeline.output.part_records,
            batch_records: pipeline.run.batch_records,
            batch_bytes: pipeline.run.batch_bytes,
            max_record_bytes: pipeline.input.max_record_bytes,
            fields: pipeline.input.fields.clone(),
            rank: opts.rank,
        }
    }
}

/// Read the job's sources into batches on `tx`, cutting units of `part_records`.
pub(super) fn reader_thread(job: ReaderJob, tx: SyncSender<ReadMsg>) {
    let ReaderJob {
        sources,
        start,
        records_read,
        limit,
        part_records,
        batch_records,
        batch_bytes,
        max_record_bytes,
        fields,
        rank,
    } = job;
    let mut remaining = limit.map(|l| l.saturating_sub(records_read));
    let mine = |si: &usize| rank.is_none_or(|r| r.owns(*si));
    for (si, source) in sources
        .iter()
        .enumerate()
        .skip(start.0)
        .filter(|(si, _)| mine(si))
    {
        if remaining == Some(0) {
            break;
        }
        let mut reader = match io::open_source(source, max_record_bytes, &fields) {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(ReadMsg::Failed(e));
                return;
            }
        };
        let first_chunk = if si == start.0 { start.1 } else { 0 };
        // Resuming inside a source: skip the items of finished units.
        for _ in 0..first_chunk * part_records {
            if reader.next_item().is_none() {
                break;
            }
        }
        let mut chunk = first_chunk;
        let mut in_chunk: u64 = 0;
        let mut items = Vec::new();
        let mut bytes = 0usize;
        let mut records: u64 = first_chunk * part_records;
        loop {
            let next = if remaining == Some(0) {
                None
            } else {
                reader.next_item()
            };
            let Some(item) = next else {
                let notes = {
                    let mut n = reader.notes();
                    if records == 0 {
                        n.push("no records (empty source)".into());
                    }
                    if remaining == Some(0) {
                        n.push("stopped early by --limit".into());
                    }
                    n
                };
                let batch = ReadBatch {
                    source: si,
                    chunk,
                    items: std::mem::take(&mut items),
                    unit_end: true,
                    source_end: Some(notes),
                };
                if tx.send(ReadMsg::Batch(batch)).is_err() {
                    return;
                }
                break;
            };
            if let Some(r) = remaining.as_mut() {
                *r -= 1;
            }
            records += 1;
            in_chunk += 1;
            bytes += item.size();
            items.push(item);
            let unit_end = in_chunk == part_records;
            if unit_end || items.len() >= batch_records || bytes >= batch_bytes {
                let batch = ReadBatch {
                    source: si,
                    chunk,
                    items: std::mem::take(&mut items),
                    unit_end,
                    source_end: None,
                };
                bytes = 0;
                if tx.send(ReadMsg::Batch(batch)).is_err() {
                    return;
                }
                if unit_end {
                    chunk += 1;
                    in_chunk = 0;
                }
            }
        }
    }
}

/// Records read per parallel batch by [`map_records`].
const MAP_BATCH: usize = 4096;

/// Read every source (`limit`: at most that many items) in batches, parse each
/// item as `curate run` does and apply `per_record` to it in parallel on `pool`
/// (with the item's size in bytes; `Err` carries the `malformed` detail); `per_batch` gets each batch's results
/// in input order. For tools that read inputs without running a pipeline.
pub fn map_records<T: Send>(
    sources: &[Source],
    schema: Option<Schema>,
    pool: &rayon::ThreadPool,
    limit: Option<u64>,
    per_record: impl Fn(u64, std::result::Result<Record, String>) -> T + Sync + Send,
    mut per_batch: impl FnMut(Vec<T>) -> Result<()>,
) -> Result<()> {
    let map = Arc::new(FieldMap::default());
    let mut left = limit.unwrap_or(u64::MAX);
    for src in sources {
        let mut reader = io::open_source(src, 64 << 20, &map)?;
        loop {
            let room = left.min(MAP_BATCH as u64) as usize;
            if room == 0 {
                return Ok(());
            }
            let batch: Vec<RawItem> = std::iter::from_fn(|| reader.next_item()).take(room).collect();
            if batch.is_empty() {
                break;
            }
            left -= batch.len() as u64;
            let done: Vec<T> = pool.install(|| {
                batch
                    .into_par_iter()
                    .map(|item| {
                        let size = item.size() as u64;
                        per_record(size, parse_record(item, &map, schema, &src.name))
                    })
                    .collect()
            });
            per_batch(done)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preview_joined_is_the_preview_of_the_joined_text() {
        let texts = ["ab", "", "数据清洗", "xyz"];
        let joined = texts.join("\n\n");
        for max in 0..joined.chars().count() + 2 {
            assert_eq!(
                preview_joined(texts.iter().copied(), max),
                preview(&joined, max),
                "{max}"
            );
        }
        assert_eq!(preview_joined(std::iter::empty(), 3), "");
    }
}
