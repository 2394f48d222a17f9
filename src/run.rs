//! The executor: reader -> stages -> writer, streaming, parallel, resumable.
//!
//! Three threads hand work along bounded channels, so memory is bounded by a
//! few batches whatever the input size:
//! - the reader thread splits sources into raw items and groups them into
//!   batches; it also cuts the input into *units* (`part_records` items of one
//!   source), the unit of output and of resumption;
//! - the main thread parses, runs the stages (in parallel on a rayon pool,
//!   sequential stages in input order) and serializes each batch; results keep
//!   input order, so output never depends on the thread count;
//! - the writer thread appends to the unit's part files and, when a unit ends,
//!   commits them (fsync + rename) and then writes the checkpoint, so a unit is
//!   marked done only once its output is durable. A rerun after a crash resumes
//!   at the first unit not marked done and produces the same bytes.
//!
//! A stage that asks for a prepass (`Stage::needs_prepass`) gets one before the
//! main pass of a fresh run (`run_prepass`): the input read once more, fresh
//! copies of the stages before it, `observe` in input order, then `prepare`.
//! A resumed run (one with a checkpoint) reuses the finished prepass on disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::config::{config_error, Pipeline};
use crate::io::writer::{part_file_name, sync_dir, write_atomic, PartWriter};
use crate::io::{self, remote, Payload, RawItem, Source};
use crate::progress::Progress;
use crate::record::{FieldMap, Origin, Record, Schema};
use crate::stage::{FinishContext, Stage, Verdict};
use crate::stats::{RejectSample, RunStats, SourceStats, StageStats};

/// Command-line overrides and run options.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Replace `[input] paths` (resolved against the working directory).
    pub inputs: Vec<PathBuf>,
    /// Replace `[output] dir`.
    pub output: Option<PathBuf>,
    pub threads: Option<usize>,
    /// Stop after this many input records.
    pub limit: Option<u64>,
    pub quiet: bool,
    /// Delete a previous run in the output directory instead of resuming it.
    pub overwrite: bool,
    /// Process only this rank's share of the input files (`--rank`, `--world-size`).
    pub shard: Option<Shard>,
    /// Where a sharded run's steps keep their files (default: [`steps_root`]).
    pub steps_root: Option<PathBuf>,
}

/// One rank of a sharded run: input file `i` (in sorted input order) belongs to
/// rank `i % world_size`. Part names keep the global file index, so the parts of
/// all ranks together are named exactly as a single-process run names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub rank: usize,
    pub world_size: usize,
}

impl Shard {
    /// Check `rank < world_size` and `world_size >= 1`.
    pub fn new(rank: usize, world_size: usize) -> Result<Shard> {
        if world_size == 0 || rank >= world_size {
            return Err(config_error(format!(
                "--rank {rank} --world-size {world_size}: need 0 <= rank < world-size"
            )));
        }
        Ok(Shard { rank, world_size })
    }

    /// Whether input file `source` (global index) is this rank's.
    pub fn owns(&self, source: usize) -> bool {
        source % self.world_size == self.rank
    }

    /// This rank's output directory relative to the run's output (`ranks/rank-RRRRR`).
    pub fn rel_dir(&self) -> String {
        format!("ranks/rank-{:05}", self.rank)
    }

    /// The completion marker relative to the run's output (`ranks/rank-RRRRR.done`).
    pub fn rel_marker(&self) -> String {
        format!("{}.done", self.rel_dir())
    }

    /// This rank's output directory under the run's output directory.
    pub fn dir(&self, out: &Path) -> PathBuf {
        out.join(self.rel_dir())
    }

    /// The completion marker, written last and atomically when the rank is done.
    pub fn marker(&self, out: &Path) -> PathBuf {
        out.join(self.rel_marker())
    }
}

/// Where a run reads and writes, after overrides.
pub struct Plan {
    pub sources: Vec<Source>,
    pub output_dir: PathBuf,
    pub stages: Vec<Box<dyn Stage>>,
}

/// Resolve inputs, output and build the stages (what `curate validate` checks).
pub fn plan(pipeline: &Pipeline, opts: &RunOptions) -> Result<Plan> {
    Ok(Plan {
        sources: input_sources(pipeline, opts)?,
        output_dir: output_dir(pipeline, opts),
        stages: crate::stages::build_all(pipeline)?,
    })
}

/// The input files after `--input` overrides, in their global order.
fn input_sources(pipeline: &Pipeline, opts: &RunOptions) -> Result<Vec<Source>> {
    let sources = if opts.inputs.is_empty() {
        io::expand_inputs(&pipeline.input.paths, &pipeline.dir, pipeline.input.format)
    } else {
        let cwd = std::env::current_dir()?;
        io::expand_inputs(
            &crate::config::override_paths(&opts.inputs)?,
            &cwd,
            pipeline.input.format,
        )
    }
    .map_err(|e| config_error(format!("{}: {e:#}", pipeline.path.display())))?;
    Ok(sources)
}

/// This run's output directory (a rank's folder in a sharded run).
fn output_dir(pipeline: &Pipeline, opts: &RunOptions) -> PathBuf {
    let base = base_output(pipeline, opts);
    match opts.shard {
        Some(shard) => shard.dir(&base),
        None => base,
    }
}

/// The resume point and the books so far, written atomically after each unit.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Checkpoint {
    version: u32,
    /// Hash of the config, the input list and the options that change output.
    fingerprint: String,
    /// The next unit to do: source index and chunk within it.
    next_source: usize,
    next_chunk: u64,
    /// Input records consumed (for `--limit`).
    records_read: u64,
    stats: RunStats,
    /// Per stage: file under `.curate/` holding its saved state, if any.
    states: Vec<Option<String>>,
    /// Counts of the source being read, carried across its units.
    open_source: SourceStats,
}

const CHECKPOINT_VERSION: u32 = 1;

fn fingerprint(pipeline: &Pipeline, sources: &[Source], opts: &RunOptions) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update(pipeline.source_text.as_bytes());
    for s in sources {
        h.update(s.name.as_bytes());
        h.update(&io::source_bytes(s).to_le_bytes());
    }
    h.update(format!("{:?}", opts.limit).as_bytes());
    if let Some(shard) = opts.shard {
        h.update(format!("rank {} of {}", shard.rank, shard.world_size).as_bytes());
    }
    format!("{:032x}", h.digest128())
}

/// A batch of raw items from one unit.
struct ReadBatch {
    source: usize,
    chunk: u64,
    items: Vec<RawItem>,
    /// Last batch of its unit.
    unit_end: bool,
    /// Last batch of its source: the reader's notes for the stats.
    source_end: Option<Vec<String>>,
}

enum ReadMsg {
    Batch(ReadBatch),
    Failed(anyhow::Error),
}

/// What the writer needs to close a unit.
struct UnitEnd {
    checkpoint: Checkpoint,
    states: Vec<Option<Vec<u8>>>,
}

/// A processed batch: serialized kept and rejected lines, and the rejections for the books.
type BatchOutput = (Vec<u8>, u64, Vec<u8>, u64, Vec<Rejection>);

struct WriteBatch {
    source: usize,
    chunk: u64,
    kept: Vec<u8>,
    n_kept: u64,
    rejected: Vec<u8>,
    n_rejected: u64,
    end: Option<Box<UnitEnd>>,
}

/// One record's fate inside a batch.
enum Slot {
    Live(Box<Record>),
    Gone(Box<Rejection>),
}

struct Rejection {
    /// 0 = the reader; i + 1 = pipeline stage i.
    stage: usize,
    reason: String,
    detail: String,
    id: String,
    origin: String,
    /// The record as it was when dropped (None for malformed input).
    record: Option<Map<String, Value>>,
    preview: String,
    raw: Option<(String, u64)>,
}

#[derive(Default)]
struct Counters {
    input: AtomicU64,
    modified: AtomicU64,
    nanos: AtomicU64,
}

fn preview(text: &str, max_chars: usize) -> String {
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

fn parse_item(item: RawItem, cx: &ParseContext) -> Slot {
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
            raw: Some((text, raw_len)),
        }))
    };
    let (fields, schema) = match item.payload {
        Payload::Malformed { detail, raw, raw_len } => return malformed(detail, &raw, raw_len),
        Payload::Json(bytes) => {
            let text = match std::str::from_utf8(&bytes) {
                Ok(t) => t,
                Err(e) => {
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
            let (html, encoding) = io::html::decode_html(&bytes);
            let mut m = Map::new();
            m.insert(cx.map.id.clone(), Value::String(file));
            m.insert(cx.map.html.clone(), Value::String(html));
            let mut rec = match Record::from_object(m, Some(Schema::Html), cx.map.clone(), origin.clone()) {
                Ok(r) => r,
                Err(e) => return malformed(e, &[], 0),
            };
            rec.annotate("decode", json!({ "encoding": encoding }));
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
                raw: None,
            }))
        }
    }
}

fn rejection_line(r: &Rejection, stage_names: &[String]) -> Vec<u8> {
    let mut m = Map::new();
    m.insert("id".into(), Value::String(r.id.clone()));
    m.insert("stage".into(), Value::String(stage_names[r.stage].clone()));
    m.insert("reason".into(), Value::String(r.reason.clone()));
    m.insert("detail".into(), Value::String(r.detail.clone()));
    m.insert("source".into(), Value::String(r.origin.clone()));
    if let Some(rec) = &r.record {
        m.insert("record".into(), Value::Object(rec.clone()));
    }
    if let Some((raw, len)) = &r.raw {
        m.insert("raw".into(), Value::String(raw.clone()));
        m.insert("raw_bytes".into(), json!(len));
    }
    let mut line = serde_json::to_vec(&Value::Object(m)).expect("JSON values always serialize");
    line.push(b'\n');
    line
}

/// What the reader thread needs: sources, where to start, and how to cut units.
struct ReaderJob {
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
    shard: Option<Shard>,
}

impl ReaderJob {
    /// The reader for this pipeline and run options, starting at `start` with `records_read` done.
    fn new(
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
            shard: opts.shard,
        }
    }
}

fn reader_thread(job: ReaderJob, tx: SyncSender<ReadMsg>) {
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
        shard,
    } = job;
    let mut remaining = limit.map(|l| l.saturating_sub(records_read));
    let mine = |si: &usize| shard.is_none_or(|s| s.owns(*si));
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

struct WriterState {
    out_dir: PathBuf,
    cfg: crate::config::OutputConfig,
    current: Option<(usize, u64, PartWriter, PartWriter)>,
}

fn writer_thread(mut st: WriterState, rx: Receiver<WriteBatch>) -> Result<()> {
    for msg in rx {
        let fresh = !matches!(&st.current, Some((s, c, _, _)) if *s == msg.source && *c == msg.chunk);
        if fresh {
            let kept = st.out_dir.join("kept").join(part_file_name(
                msg.source,
                msg.chunk,
                st.cfg.format,
                st.cfg.compression,
            ));
            let rejected = st.out_dir.join("rejected").join(part_file_name(
                msg.source,
                msg.chunk,
                crate::config::OutputFormat::Jsonl,
                st.cfg.compression,
            ));
            st.current = Some((
                msg.source,
                msg.chunk,
                PartWriter::new(kept, st.cfg.format, st.cfg.compression, st.cfg.compression_level),
                PartWriter::new(
                    rejected,
                    crate::config::OutputFormat::Jsonl,
                    st.cfg.compression,
                    st.cfg.compression_level,
                ),
            ));
        }
        let (_, _, kept, rejected) = st.current.as_mut().expect("set above");
        kept.write_lines(&msg.kept, msg.n_kept)?;
        rejected.write_lines(&msg.rejected, msg.n_rejected)?;
        if let Some(end) = msg.end {
            let (_, _, kept, rejected) = st.current.take().expect("set above");
            let mut cp = end.checkpoint;
            kept.commit()?;
            rejected.commit()?;
            commit_checkpoint(&st.out_dir, &mut cp, end.states)?;
        }
    }
    Ok(())
}

/// What a rank's completion marker holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RankMarker {
    pub rank: usize,
    pub world_size: usize,
    /// The run fingerprint (config, inputs, options, rank): a rerun with other settings is refused.
    pub fingerprint: String,
    /// The pipeline file, for `curate merge-stats`.
    pub pipeline: PathBuf,
    pub input: u64,
    pub kept: u64,
    pub rejected: u64,
}

/// Read a rank's completion marker, if it exists.
pub fn read_marker(path: &Path) -> Result<Option<RankMarker>> {
    match std::fs::read(path) {
        Ok(bytes) => {
            Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                format!("{}: unreadable marker", path.display())
            })?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("{}: cannot read", path.display())),
    }
}

fn state_dir(out: &Path) -> PathBuf {
    out.join(".curate")
}

fn commit_checkpoint(out: &Path, cp: &mut Checkpoint, states: Vec<Option<Vec<u8>>>) -> Result<()> {
    let dir = state_dir(out);
    let tag = format!("{:05}-{:05}", cp.next_source, cp.next_chunk);
    let mut names = Vec::with_capacity(states.len());
    for (i, st) in states.into_iter().enumerate() {
        match st {
            Some(bytes) => {
                let name = format!("stage-{i:03}-{tag}.state");
                write_atomic(&dir.join(&name), &bytes)?;
                names.push(Some(name));
            }
            None => names.push(None),
        }
    }
    let old: Vec<String> = cp_states_on_disk(&dir)
        .into_iter()
        .filter(|n| !names.iter().flatten().any(|m| m == n))
        .collect();
    cp.states = names;
    let text = serde_json::to_vec_pretty(cp)?;
    write_atomic(&dir.join("checkpoint.json"), &text)?;
    for n in old {
        let _ = std::fs::remove_file(dir.join(n));
    }
    Ok(())
}

fn cp_states_on_disk(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.ends_with(".state"))
                .collect()
        })
        .unwrap_or_default()
}

fn remove_previous(out: &Path) -> Result<()> {
    for sub in ["kept", "rejected", ".curate"] {
        let p = out.join(sub);
        if p.exists() {
            std::fs::remove_dir_all(&p).with_context(|| format!("{}: cannot remove", p.display()))?;
        }
    }
    for f in ["stats.json", "report.html", "clusters.jsonl"] {
        let p = out.join(f);
        if p.exists() {
            std::fs::remove_file(&p)?;
        }
    }
    Ok(())
}

fn remove_tmp_files(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().ends_with(".tmp") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Run a pipeline to completion (or resume one); returns the final stats.
///
/// An `s3://` output is staged in a local folder (`CURATE_STAGING_DIR`, else the
/// system temp folder; a crashed run resumes from it on the same machine), uploaded
/// when complete (checkpoint state stays local), and for a rank the completion marker
/// is created last with an atomic create-if-absent.
pub fn run(pipeline: &Pipeline, opts: &RunOptions) -> Result<RunStats> {
    let base = opts.output.clone().unwrap_or_else(|| pipeline.output_dir());
    let Some(url) = base.to_str().filter(|u| remote::is_remote(u)).map(str::to_string) else {
        return run_local(pipeline, opts);
    };
    let (bucket, prefix) = remote::Bucket::for_url(&url)?;
    let marker_key = opts.shard.map(|s| remote::join_key(&prefix, &s.rel_marker()));
    if let (Some(key), false) = (&marker_key, opts.overwrite) {
        if let Some(bytes) = bucket.get_small(key)? {
            let done: RankMarker =
                serde_json::from_slice(&bytes).with_context(|| format!("s3 marker {key}: unreadable"))?;
            let fp = fingerprint(pipeline, &input_sources(pipeline, opts)?, opts);
            if done.fingerprint != fp {
                return Err(config_error(format!(
                    "{url}: rank {} is marked done by a different pipeline, input or --limit",
                    done.rank
                )));
            }
            if !opts.quiet {
                eprintln!(
                    "curate: rank {} of {} is already complete ({url})",
                    done.rank, done.world_size
                );
            }
            let sub = opts
                .shard
                .map(|s| format!("{}/", s.rel_dir()))
                .unwrap_or_default();
            let stats = bucket
                .get_small(&remote::join_key(&prefix, &format!("{sub}stats.json")))?
                .ok_or_else(|| anyhow!("{url}: rank marked done but its stats.json is missing"))?;
            return Ok(serde_json::from_slice(&stats)?);
        }
    }
    let staging = match std::env::var_os("CURATE_STAGING_DIR") {
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir().join("curate-staging"),
    }
    .join(format!("{:016x}", xxhash_rust::xxh3::xxh3_64(url.as_bytes())));
    let local_opts = RunOptions {
        output: Some(staging.clone()),
        steps_root: Some(steps_root(pipeline, opts)),
        ..opts.clone()
    };
    let mut local_pipeline = pipeline.clone();
    local_pipeline.output.dir = staging.clone();
    // A rank's local marker is not the truth for an S3 output: the remote one is.
    if let Some(s) = opts.shard {
        let _ = std::fs::remove_file(s.marker(&staging));
    }
    let stats = run_local(&local_pipeline, &local_opts)?;
    let (local_dir, key_prefix) = match opts.shard {
        Some(s) => (s.dir(&staging), remote::join_key(&prefix, &s.rel_dir())),
        None => (staging.clone(), prefix.clone()),
    };
    // stats.json goes last: for an unsharded run it says the upload is complete.
    let is_state = |rel: &Path| rel.starts_with(".curate") || rel == Path::new("stats.json");
    let n = bucket.upload_dir(&local_dir, &key_prefix, &is_state)?;
    bucket.upload_file(
        &local_dir.join("stats.json"),
        &remote::join_key(&key_prefix, "stats.json"),
    )?;
    if let (Some(key), Some(s)) = (marker_key, opts.shard) {
        let marker = std::fs::read(s.marker(&staging))
            .with_context(|| format!("{}: the rank's marker is missing", staging.display()))?;
        if opts.overwrite {
            bucket.put(&key, marker)?;
        } else if !bucket.create_if_absent(&key, marker)? {
            return Err(anyhow!(
                "{url}: rank {} was completed by another process meanwhile",
                s.rank
            ));
        }
    }
    if !opts.quiet {
        eprintln!("curate: uploaded {} files to {url}", n + 1);
    }
    Ok(stats)
}

fn run_local(pipeline: &Pipeline, opts: &RunOptions) -> Result<RunStats> {
    let started = Instant::now();
    let Plan {
        sources,
        output_dir: out,
        mut stages,
    } = plan(pipeline, opts)?;
    let fp = fingerprint(pipeline, &sources, opts);
    shard_stages(pipeline, &mut stages, opts)?;
    if let Some(shard) = opts.shard {
        let base = opts.output.clone().unwrap_or_else(|| pipeline.output_dir());
        let marker = shard.marker(&base);
        if opts.overwrite && marker.exists() {
            std::fs::remove_file(&marker).with_context(|| format!("{}: cannot remove", marker.display()))?;
        }
        if let Some(done) = read_marker(&marker)? {
            if done.fingerprint != fp {
                return Err(config_error(format!(
                    "{}: marks a rank of a different pipeline, input or --limit; use another --output or --overwrite",
                    marker.display()
                )));
            }
            if !opts.quiet {
                eprintln!(
                    "curate: rank {} of {} is already complete ({})",
                    shard.rank,
                    shard.world_size,
                    marker.display()
                );
            }
            let text = std::fs::read(out.join("stats.json"))
                .with_context(|| format!("{}: cannot read stats.json", out.display()))?;
            return Ok(serde_json::from_slice(&text)?);
        }
    }
    if opts.overwrite {
        remove_previous(&out)?;
    }
    for sub in ["kept", "rejected", ".curate"] {
        std::fs::create_dir_all(out.join(sub))
            .with_context(|| format!("{}: cannot create output directory", out.join(sub).display()))?;
    }
    remove_tmp_files(&out.join("kept"));
    remove_tmp_files(&out.join("rejected"));
    remove_tmp_files(&state_dir(&out));

    let stage_names: Vec<String> = std::iter::once("read".to_string())
        .chain(pipeline.stages.iter().map(|s| s.name.clone()))
        .collect();
    let cp_path = state_dir(&out).join("checkpoint.json");
    let resuming = cp_path.exists();
    let mut cp = if resuming {
        let text = std::fs::read_to_string(&cp_path)?;
        let cp: Checkpoint = serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: unreadable checkpoint; rerun with --overwrite",
                cp_path.display()
            )
        })?;
        if cp.fingerprint != fp || cp.version != CHECKPOINT_VERSION {
            return Err(config_error(format!(
                "{}: holds a run of a different pipeline, input or --limit; use another --output or --overwrite",
                out.display()
            )));
        }
        for (i, st) in cp.states.iter().enumerate() {
            if cp.stats.complete {
                break;
            }
            if let (Some(name), Some(stage)) = (st, stages.get_mut(i)) {
                let path = state_dir(&out).join(name);
                let bytes = std::fs::read(&path)
                    .with_context(|| format!("{}: cannot read saved stage state", path.display()))?;
                stage
                    .load_state(&bytes)
                    .with_context(|| format!("stage `{}`: cannot restore state", stage_names[i + 1]))?;
            }
        }
        if !opts.quiet && !cp.stats.complete {
            eprintln!(
                "curate: resuming in {} at source {} part {} ({} records done)",
                out.display(),
                cp.next_source,
                cp.next_chunk,
                cp.records_read
            );
        }
        cp
    } else {
        let stages_stats = stage_names
            .iter()
            .enumerate()
            .map(|(i, name)| StageStats {
                name: name.clone(),
                kind: if i == 0 {
                    "read".into()
                } else {
                    pipeline.stages[i - 1].kind.clone()
                },
                ..Default::default()
            })
            .collect();
        let stats = RunStats {
            stages: stages_stats,
            ..Default::default()
        };
        Checkpoint {
            version: CHECKPOINT_VERSION,
            fingerprint: fp.clone(),
            next_source: 0,
            next_chunk: 0,
            records_read: 0,
            stats,
            states: vec![None; stages.len()],
            open_source: SourceStats::default(),
        }
    };
    if cp.stats.complete {
        if !opts.quiet {
            eprintln!("curate: {} already holds this completed run", out.display());
        }
        return Ok(cp.stats);
    }

    let threads = opts.threads.unwrap_or(pipeline.run.threads);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("cannot start worker threads")?;

    // Prepasses (see `stage.rs`): done before the first checkpoint, so a run with a
    // checkpoint has them on disk; a fresh run starts them over.
    for k in 0..stages.len() {
        if !stages[k].needs_prepass() {
            continue;
        }
        if stepped(opts) {
            // A sharded run's steps made the decisions (`src/steps.rs`).
            let dir = prepass_folder(pipeline, opts, &out, k);
            let global = crate::steps::global_dir(&steps_root(pipeline, opts), k);
            if !global.join("prepared.json").exists() {
                return Err(config_error(format!(
                    "stage `{}`: its sharded steps have not finished ({} has no prepared.json); run \
                     `--step observe:{name}`, `buckets:{name}` and `clusters:{name}` first (`curate slurm` \
                     chains them)",
                    stage_names[k + 1],
                    global.display(),
                    name = stage_names[k + 1]
                )));
            }
            stages[k]
                .open_prepass(&dir, true)
                .with_context(|| format!("stage `{}`: cannot load its prepass", stage_names[k + 1]))?;
            continue;
        }
        let dir = prepass_dir(&out, k);
        if !resuming {
            if dir.exists() {
                std::fs::remove_dir_all(&dir).with_context(|| format!("{}: cannot remove", dir.display()))?;
            }
            std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
            if !opts.quiet {
                eprintln!(
                    "curate: prepass for stage `{}` (reading the input once)",
                    stage_names[k + 1]
                );
            }
            run_prepass(pipeline, &sources, opts, &out, k, &pool)
                .with_context(|| format!("stage `{}`: prepass failed", stage_names[k + 1]))?;
        }
        stages[k]
            .open_prepass(&dir, true)
            .with_context(|| format!("stage `{}`: cannot load its prepass", stage_names[k + 1]))?;
    }

    let (read_tx, read_rx) = sync_channel::<ReadMsg>(4);
    let reader = {
        let job = ReaderJob::new(
            pipeline,
            &sources,
            opts,
            (cp.next_source, cp.next_chunk),
            cp.records_read,
        );
        std::thread::spawn(move || reader_thread(job, read_tx))
    };
    let (write_tx, write_rx) = sync_channel::<WriteBatch>(4);
    let writer = {
        let st = WriterState {
            out_dir: out.clone(),
            cfg: pipeline.output.clone(),
            current: None,
        };
        std::thread::spawn(move || writer_thread(st, write_rx))
    };

    let counters: Vec<Counters> = (0..stages.len()).map(|_| Counters::default()).collect();
    let base_counts: Vec<(u64, u64, f64)> = cp
        .stats
        .stages
        .iter()
        .skip(1)
        .map(|s| (s.input, s.modified, s.seconds))
        .collect();
    let map = Arc::new(pipeline.input.fields.clone());
    let schema = pipeline.input.schema()?;
    let meta_field = pipeline.output.meta_field.clone();
    let samples_per = pipeline.run.report_samples;
    let mut progress = Progress::new(opts.quiet, cp.records_read, cp.stats.kept);
    let prior_seconds = cp.stats.seconds;
    let mut failure: Option<anyhow::Error> = None;
    let (mut unit_kept, mut unit_rejected) = (0u64, 0u64);

    for msg in read_rx {
        let batch = match msg {
            ReadMsg::Batch(b) => b,
            ReadMsg::Failed(e) => {
                failure = Some(e);
                break;
            }
        };
        let cx = ParseContext {
            map: map.clone(),
            schema,
            source_name: sources[batch.source].name.clone(),
        };
        let n_items = batch.items.len() as u64;
        let batch_bytes: u64 = batch.items.iter().map(|i| i.size() as u64).sum();
        let result = pool.install(|| -> Result<BatchOutput> {
            let mut slots: Vec<Slot> = batch
                .items
                .into_par_iter()
                .map(|it| parse_item(it, &cx))
                .collect();
            run_stages(&mut stages, &counters, &mut slots, &meta_field)?;
            let outs: Vec<(bool, Vec<u8>)> = slots
                .par_iter()
                .map(|slot| match slot {
                    Slot::Live(r) => {
                        let mut line = Vec::with_capacity(256);
                        r.write_output_line(&meta_field, &mut line);
                        (true, line)
                    }
                    Slot::Gone(rej) => (false, rejection_line(rej, &stage_names)),
                })
                .collect();
            let (mut kept, mut rejected) = (Vec::new(), Vec::new());
            let (mut nk, mut nr) = (0, 0);
            for (is_kept, line) in outs {
                if is_kept {
                    kept.extend_from_slice(&line);
                    nk += 1;
                } else {
                    rejected.extend_from_slice(&line);
                    nr += 1;
                }
            }
            let gone = slots
                .into_iter()
                .filter_map(|s| match s {
                    Slot::Gone(r) => Some(*r),
                    Slot::Live(_) => None,
                })
                .collect();
            Ok((kept, nk, rejected, nr, gone))
        });
        let (kept, nk, rejected, nr, gone) = match result {
            Ok(v) => v,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        // Books, in input order so samples are deterministic.
        let stats = &mut cp.stats;
        stats.input += n_items;
        stats.kept += nk;
        stats.rejected += nr;
        stats.bytes_in += batch_bytes;
        cp.records_read += n_items;
        for rej in &gone {
            let st = &mut stats.stages[rej.stage];
            st.dropped += 1;
            *st.reasons.entry(rej.reason.clone()).or_default() += 1;
            let shown = stats
                .samples
                .iter()
                .filter(|s| s.stage == stage_names[rej.stage] && s.reason == rej.reason)
                .count();
            if shown < samples_per {
                // The report is for people: stages that find sensitive data mask it here,
                // whichever stage dropped the record.
                let preview = stages.iter().fold(rej.preview.clone(), |text, st| {
                    st.scrub_for_display(&text).unwrap_or(text)
                });
                stats.samples.push(RejectSample {
                    stage: stage_names[rej.stage].clone(),
                    reason: rej.reason.clone(),
                    id: rej.id.clone(),
                    origin: rej.origin.clone(),
                    detail: rej.detail.clone(),
                    preview,
                });
            }
        }
        progress.update(cp.records_read, batch_bytes, nk);
        unit_kept += nk;
        unit_rejected += nr;
        let source_done = batch.source_end.is_some();
        cp.open_source.records += n_items;
        cp.open_source.bytes += batch_bytes;
        if let Some(notes) = batch.source_end {
            let mut done = std::mem::take(&mut cp.open_source);
            done.name = sources[batch.source].name.to_string();
            done.notes = notes;
            cp.stats.sources.push(done);
        }
        let stats = &mut cp.stats;
        let end = if batch.unit_end {
            let out_cfg = &pipeline.output;
            if unit_kept > 0 {
                let name = part_file_name(batch.source, batch.chunk, out_cfg.format, out_cfg.compression);
                stats.kept_parts.push(format!("kept/{name}"));
            }
            if unit_rejected > 0 {
                let name = part_file_name(
                    batch.source,
                    batch.chunk,
                    crate::config::OutputFormat::Jsonl,
                    out_cfg.compression,
                );
                stats.rejected_parts.push(format!("rejected/{name}"));
            }
            (unit_kept, unit_rejected) = (0, 0);
            sync_stage_stats(&mut cp, &counters, &base_counts);
            if source_done {
                cp.next_source = batch.source + 1;
                cp.next_chunk = 0;
            } else {
                cp.next_source = batch.source;
                cp.next_chunk = batch.chunk + 1;
            }
            cp.stats.seconds = prior_seconds + started.elapsed().as_secs_f64();
            let mut states = Vec::with_capacity(stages.len());
            for (i, s) in stages.iter().enumerate() {
                states.push(
                    s.save_state()
                        .with_context(|| format!("stage `{}`: cannot save state", stage_names[i + 1]))?,
                );
            }
            Some(Box::new(UnitEnd {
                checkpoint: cp.clone(),
                states,
            }))
        } else {
            None
        };
        let msg = WriteBatch {
            source: batch.source,
            chunk: batch.chunk,
            kept,
            n_kept: nk,
            rejected,
            n_rejected: nr,
            end,
        };
        if write_tx.send(msg).is_err() {
            break;
        }
    }
    drop(write_tx);
    let writer_result = writer.join().map_err(|_| anyhow!("writer thread panicked"))?;
    let _ = reader.join();
    progress.finish();
    if let Some(e) = failure {
        return Err(e);
    }
    writer_result?;

    let mut stats = cp.stats.clone();
    let finish = FinishContext {
        output_dir: out.clone(),
        kept_parts: stats.kept_parts.iter().map(|p| out.join(p)).collect(),
    };
    for (i, s) in stages.iter_mut().enumerate() {
        s.finish(&finish)
            .with_context(|| format!("stage `{}`: finish failed", stage_names[i + 1]))?;
        stats.stages[i + 1].summary = s.summary();
    }
    stats.stages[0].input = stats.input;
    stats.stages[0].kept = stats.input - stats.stages[0].dropped;
    stats.complete = true;
    stats.seconds = prior_seconds + started.elapsed().as_secs_f64();
    stats.check_accounting()?;
    let sections: Vec<(String, String)> = stages
        .iter()
        .enumerate()
        .filter_map(|(i, s)| Some((stage_names[i + 1].clone(), s.report_html()?)))
        .collect();
    write_atomic(&out.join("stats.json"), &serde_json::to_vec_pretty(&stats)?)?;
    write_atomic(
        &out.join("report.html"),
        crate::report::render(&stats, pipeline, &sections).as_bytes(),
    )?;
    // The writer thread owns the on-disk checkpoint (with the state file names).
    let mut final_cp: Checkpoint = match std::fs::read_to_string(&cp_path) {
        Ok(text) => serde_json::from_str(&text)?,
        // No unit was ever committed (e.g. `--limit 0`): nothing to resume from anyway.
        Err(_) => cp.clone(),
    };
    final_cp.stats = stats.clone();
    write_atomic(&cp_path, &serde_json::to_vec_pretty(&final_cp)?)?;
    sync_dir(&out)?;
    if let Some(shard) = opts.shard {
        // The merged report of a sharded run needs each rank's stage sections.
        write_atomic(&out.join("sections.json"), &serde_json::to_vec(&sections)?)?;
        let base = opts.output.clone().unwrap_or_else(|| pipeline.output_dir());
        let done = RankMarker {
            rank: shard.rank,
            world_size: shard.world_size,
            fingerprint: fp.clone(),
            pipeline: std::path::absolute(&pipeline.path).unwrap_or_else(|_| pipeline.path.clone()),
            input: stats.input,
            kept: stats.kept,
            rejected: stats.rejected,
        };
        sync_dir(&out)?;
        write_atomic(&shard.marker(&base), &serde_json::to_vec_pretty(&done)?)?;
        sync_dir(&base.join("ranks"))?;
    }
    Ok(stats)
}

fn prepass_dir(out: &Path, stage: usize) -> PathBuf {
    state_dir(out).join(format!("prepass-{stage:03}"))
}

/// A rank of a sharded run: its global stages' decisions come from steps (`src/steps.rs`).
pub(crate) fn stepped(opts: &RunOptions) -> bool {
    opts.shard.is_some_and(|s| s.world_size > 1)
}

/// The output directory before a rank's subfolder.
pub(crate) fn base_output(pipeline: &Pipeline, opts: &RunOptions) -> PathBuf {
    opts.output.clone().unwrap_or_else(|| pipeline.output_dir())
}

/// Where a sharded run's steps keep their files (`ROOT/steps/`): the output directory,
/// or for an `s3://` output the folder beside the pipeline file that also holds the
/// Slurm scripts (steps need a file system every rank sees).
pub fn steps_root(pipeline: &Pipeline, opts: &RunOptions) -> PathBuf {
    if let Some(r) = &opts.steps_root {
        return r.clone();
    }
    let base = base_output(pipeline, opts);
    match base.to_str().filter(|u| remote::is_remote(u)) {
        Some(url) => crate::shard::side_dir(&pipeline.path, url),
        None => base,
    }
}

/// Stage `k`'s prepass folder: under the run's `.curate/`, or for a rank of a sharded
/// run the rank's folder of that stage's steps.
pub(crate) fn prepass_folder(pipeline: &Pipeline, opts: &RunOptions, out: &Path, k: usize) -> PathBuf {
    match opts.shard.filter(|_| stepped(opts)) {
        Some(s) => crate::steps::rank_dir(&steps_root(pipeline, opts), k, s.rank),
        None => prepass_dir(out, k),
    }
}

/// Sharded runs: every stage that compares records across the input switches to a
/// prepass the steps can split over ranks; a stage that cannot is a config error.
pub(crate) fn shard_stages(
    pipeline: &Pipeline,
    stages: &mut [Box<dyn Stage>],
    opts: &RunOptions,
) -> Result<()> {
    if stepped(opts) {
        shard_prepass_all(pipeline, stages)?;
    }
    Ok(())
}

/// Switch every stage to its sharded prepass ([`Stage::shard_prepass`]); a stage that
/// has none is a config error naming it.
pub(crate) fn shard_prepass_all(pipeline: &Pipeline, stages: &mut [Box<dyn Stage>]) -> Result<()> {
    for (i, st) in stages.iter_mut().enumerate() {
        if !st.shard_prepass() {
            return Err(config_error(format!(
                "stage `{}` ({}) compares records across the whole input; a sharded run cannot \
                 apply it rank by rank",
                pipeline.stages[i].name,
                st.kind()
            )));
        }
    }
    Ok(())
}

/// Observe step of a sharded run: this rank's records through the stages before
/// `k`, observed by stage `k` into the rank's step folder (`sources.json`, then the
/// stage's files, `observed.json` last). `false` when it was already complete.
pub(crate) fn observe_step(pipeline: &Pipeline, opts: &RunOptions, k: usize) -> Result<bool> {
    let (sources, output_dir) = (input_sources(pipeline, opts)?, output_dir(pipeline, opts));
    let dir = prepass_folder(pipeline, opts, &output_dir, k);
    if crate::minhash_prepass::load_observed(&dir)?.is_some() && !opts.overwrite {
        return Ok(false);
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("{}: cannot remove", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let threads = opts.threads.unwrap_or(pipeline.run.threads);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("cannot start worker threads")?;
    run_prepass(pipeline, &sources, opts, &output_dir, k, &pool)
        .with_context(|| format!("stage `{}`: observe step failed", pipeline.stages[k].name))?;
    Ok(true)
}

/// The fingerprint every rank of a sharded run shares (pipeline, inputs, world size).
fn run_fingerprint(pipeline: &Pipeline, sources: &[Source], opts: &RunOptions) -> String {
    let all = RunOptions {
        shard: opts.shard.map(|s| Shard { rank: 0, ..s }),
        ..opts.clone()
    };
    fingerprint(pipeline, sources, &all)
}

/// The prepass of stage `k`: read the whole input, run fresh copies of the stages
/// before it (earlier prepass stages use their finished prepass), then `process`
/// and `observe` stage `k` in input order, and `prepare` it.
fn run_prepass(
    pipeline: &Pipeline,
    sources: &[Source],
    opts: &RunOptions,
    out: &Path,
    k: usize,
    pool: &rayon::ThreadPool,
) -> Result<()> {
    let mut pre = pipeline.stages[..=k]
        .iter()
        .map(|spec| crate::stages::build(spec, pipeline))
        .collect::<Result<Vec<_>>>()?;
    shard_stages(pipeline, &mut pre, opts)?;
    for (j, st) in pre.iter_mut().enumerate() {
        if st.needs_prepass() {
            st.open_prepass(&prepass_folder(pipeline, opts, out, j), j < k)?;
        }
    }
    // Records observed per input file: a sharded run's global ordinals come from these.
    let mut per_source: BTreeMap<usize, u64> = BTreeMap::new();
    let (target, before) = pre.split_last_mut().expect("stage k is built");
    let counters: Vec<Counters> = (0..before.len()).map(|_| Counters::default()).collect();
    let (read_tx, read_rx) = sync_channel::<ReadMsg>(4);
    let job = ReaderJob::new(pipeline, sources, opts, (0, 0), 0);
    let reader = std::thread::spawn(move || reader_thread(job, read_tx));
    let map = Arc::new(pipeline.input.fields.clone());
    let schema = pipeline.input.schema()?;
    let meta_field = &pipeline.output.meta_field;
    let mut result = Ok(());
    for msg in read_rx {
        let batch = match msg {
            ReadMsg::Batch(b) => b,
            ReadMsg::Failed(e) => {
                result = Err(e);
                break;
            }
        };
        let cx = ParseContext {
            map: map.clone(),
            schema,
            source_name: sources[batch.source].name.clone(),
        };
        let batch_source = batch.source;
        let step = pool.install(|| -> Result<Vec<Slot>> {
            let mut slots: Vec<Slot> = batch
                .items
                .into_par_iter()
                .map(|it| parse_item(it, &cx))
                .collect();
            run_stages(before, &counters, &mut slots, meta_field)?;
            let target: &dyn Stage = &**target;
            slots.par_iter_mut().try_for_each(|slot| -> Result<()> {
                let Slot::Live(rec) = slot else { return Ok(()) };
                let v = target.process(rec).with_context(|| {
                    format!(
                        "stage `{}` on record `{}` ({})",
                        target.kind(),
                        rec.id,
                        rec.origin
                    )
                })?;
                if let Verdict::Drop { reason, detail } = v {
                    drop_slot(slot, k, reason, detail, meta_field);
                }
                Ok(())
            })?;
            Ok(slots)
        });
        let slots = match step {
            Ok(s) => s,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        // In input order, on this thread.
        for slot in &slots {
            if let Slot::Live(rec) = slot {
                *per_source.entry(batch_source).or_default() += 1;
                if let Err(e) = target.observe(rec) {
                    result = Err(e.context(format!("record `{}` ({})", rec.id, rec.origin)));
                    break;
                }
            }
        }
        if result.is_err() {
            break;
        }
    }
    let _ = reader.join();
    result?;
    if !stepped(opts) {
        return target.prepare();
    }
    let dir = prepass_folder(pipeline, opts, out, k);
    let sources_json = json!({
        "run": run_fingerprint(pipeline, sources, opts),
        "files": per_source.into_iter().collect::<Vec<_>>(),
    });
    write_atomic(&dir.join("sources.json"), &serde_json::to_vec(&sources_json)?)?;
    target.close_observe()
}

fn sync_stage_stats(cp: &mut Checkpoint, counters: &[Counters], base: &[(u64, u64, f64)]) {
    let n = cp.stats.stages.len();
    cp.stats.stages[0].input = cp.stats.input;
    cp.stats.stages[0].kept = cp.stats.input - cp.stats.stages[0].dropped;
    for i in 1..n {
        let c = &counters[i - 1];
        let (bi, bm, bs) = base[i - 1];
        let s = &mut cp.stats.stages[i];
        s.input = bi + c.input.load(Ordering::Relaxed);
        s.modified = bm + c.modified.load(Ordering::Relaxed);
        s.seconds = bs + c.nanos.load(Ordering::Relaxed) as f64 / 1e9;
        s.kept = s.input - s.dropped;
    }
}

fn drop_slot(slot: &mut Slot, stage: usize, reason: String, detail: String, meta_field: &str) {
    let Slot::Live(rec) = slot else { return };
    let origin = rec.origin.to_string();
    let text = rec.full_text();
    let gone = Rejection {
        stage: stage + 1,
        reason,
        detail,
        id: rec.id.clone(),
        origin,
        record: Some(rec.to_output(meta_field)),
        preview: preview(&text, 300),
        raw: None,
    };
    *slot = Slot::Gone(Box::new(gone));
}

fn apply(verdict: Verdict, slot: &mut Slot, stage: usize, c: &Counters, meta_field: &str) {
    match verdict {
        Verdict::Keep => {}
        Verdict::Modified => {
            c.modified.fetch_add(1, Ordering::Relaxed);
        }
        Verdict::Drop { reason, detail } => drop_slot(slot, stage, reason, detail, meta_field),
    }
}

/// Run every stage over a batch: runs of parallel stages, then each sequential
/// stage's `decide` in input order.
fn run_stages(
    stages: &mut [Box<dyn Stage>],
    counters: &[Counters],
    slots: &mut [Slot],
    meta_field: &str,
) -> Result<()> {
    let n = stages.len();
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j < n && !stages[j].is_sequential() {
            j += 1;
        }
        let end = if j < n { j + 1 } else { n };
        {
            let group = &stages[i..end];
            slots.par_iter_mut().try_for_each(|slot| -> Result<()> {
                for (k, stage) in group.iter().enumerate() {
                    let idx = i + k;
                    let Slot::Live(rec) = slot else { return Ok(()) };
                    let c = &counters[idx];
                    c.input.fetch_add(1, Ordering::Relaxed);
                    let t = Instant::now();
                    let v = stage.process(rec).with_context(|| {
                        format!("stage `{}` on record `{}` ({})", stage.kind(), rec.id, rec.origin)
                    })?;
                    c.nanos
                        .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    apply(v, slot, idx, c, meta_field);
                }
                Ok(())
            })?;
        }
        if j < n {
            let stage = &mut stages[j];
            let c = &counters[j];
            let t = Instant::now();
            for slot in slots.iter_mut() {
                let Slot::Live(rec) = slot else { continue };
                let v = stage.decide(rec).with_context(|| {
                    format!("stage `{}` on record `{}` ({})", stage.kind(), rec.id, rec.origin)
                })?;
                rec.scratch.clear();
                apply(v, slot, j, c, meta_field);
            }
            c.nanos
                .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
        i = end;
    }
    Ok(())
}

/// Per-stage dropped counts by reason, for tests and tools.
pub fn reasons_by_stage(stats: &RunStats) -> BTreeMap<String, BTreeMap<String, u64>> {
    stats
        .stages
        .iter()
        .map(|s| (s.name.clone(), s.reasons.clone()))
        .collect()
}

/// Fail with a clear message when a directory is not a finished curate run.
pub fn require_run_dir(dir: &Path) -> Result<()> {
    if !dir.join("stats.json").exists() {
        bail!(
            "{}: no stats.json here; not the output directory of a finished `curate run`",
            dir.display()
        );
    }
    Ok(())
}
