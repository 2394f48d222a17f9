//! Executing stages on batches, and the main pass.
//!
//! [`run_stages`] is the one path every stage goes through: a run of per-record
//! stages in parallel (`Stage::process`, per record), the key of the global stage
//! that ends the run in the same parallel pass (`GlobalStage::key`), then that
//! stage's `decide` in input order on this thread (or, in its prepass, `observe`).
//! Results keep input order, so output never depends on the thread count.
//! [`main_pass`] drives it over the reader's batches, keeps the books and hands
//! serialized batches to the writer.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use rayon::prelude::*;

use super::checkpoint::Checkpoint;
use super::clock::{process_cpu_seconds, thread_cpu_nanos};
use super::options::RunOptions;
use super::read::{
    preview_joined, reader_thread, BatchParser, ReadBatch, ReadMsg, ReaderJob, Rejection, Slot,
};
use super::spill::{spill_reader_thread, Books, SpillBatch, SpillJob};
use super::write::{rejection_line, writer_thread, BatchOutput, UnitEnd, WriteBatch, WriterState};
use crate::config::Pipeline;
use crate::io::writer::part_file_name;
use crate::io::Source;
use crate::progress::Progress;
use crate::shape::OutputSchema;
use crate::stage::{AnyKey, DynGlobalStage, PipelineStage, Verdict};
use crate::stats::RejectSample;

/// Per-stage counts and time, added to from the worker threads.
#[derive(Default)]
pub(super) struct Counters {
    input: AtomicU64,
    /// Input bytes of the records that reached the stage.
    bytes: AtomicU64,
    modified: AtomicU64,
    tagged: AtomicU64,
    /// Wall time, summed over threads.
    nanos: AtomicU64,
    /// Thread CPU time, summed over threads.
    cpu_nanos: AtomicU64,
}

impl Counters {
    /// The books so far.
    pub(super) fn books(&self) -> Books {
        Books {
            input: self.input.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            modified: self.modified.load(Ordering::Relaxed),
            tagged: self.tagged.load(Ordering::Relaxed),
            nanos: self.nanos.load(Ordering::Relaxed),
            cpu_nanos: self.cpu_nanos.load(Ordering::Relaxed),
        }
    }

    /// Add books kept elsewhere (a prepass spill's, for a stage it ran).
    fn add_books(&self, b: &Books) {
        self.input.fetch_add(b.input, Ordering::Relaxed);
        self.bytes.fetch_add(b.bytes, Ordering::Relaxed);
        self.modified.fetch_add(b.modified, Ordering::Relaxed);
        self.tagged.fetch_add(b.tagged, Ordering::Relaxed);
        self.nanos.fetch_add(b.nanos, Ordering::Relaxed);
        self.cpu_nanos.fetch_add(b.cpu_nanos, Ordering::Relaxed);
    }

    /// Add the time since `wall` / `cpu` (a [`thread_cpu_nanos`] reading on this thread).
    fn add_time(&self, wall: Instant, cpu: u64) {
        let spent = thread_cpu_nanos().saturating_sub(cpu);
        self.cpu_nanos.fetch_add(spent, Ordering::Relaxed);
        self.nanos
            .fetch_add(wall.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
}

/// Records per parallel task: a chunk goes through its stages stage by stage (its
/// records stay in cache) and the CPU clock is read once per stage per chunk.
const CHUNK: usize = 16;

/// A stage's counts before a resume: input, modified, tagged, seconds, CPU seconds.
type BaseCounts = (u64, u64, u64, f64, f64, u64);

/// Copy the stage counters into the checkpoint's books (`base`: counts before a resume).
fn sync_stage_stats(
    cp: &mut Checkpoint,
    counters: &[Counters],
    base: &[BaseCounts],
    read_cpu: (f64, &BatchParser),
) {
    let n = cp.stats.stages.len();
    cp.stats.stages[0].input = cp.stats.input;
    cp.stats.stages[0].kept = cp.stats.input - cp.stats.stages[0].dropped;
    cp.stats.stages[0].cpu_seconds = read_cpu.0 + read_cpu.1.cpu_seconds();
    cp.stats.stages[0].bytes_in = cp.stats.bytes_in;
    for i in 1..n {
        let c = &counters[i - 1];
        let (bi, bm, bt, bs, bc, bb) = base[i - 1];
        let s = &mut cp.stats.stages[i];
        s.input = bi + c.input.load(Ordering::Relaxed);
        s.modified = bm + c.modified.load(Ordering::Relaxed);
        s.tagged = bt + c.tagged.load(Ordering::Relaxed);
        s.seconds = bs + c.nanos.load(Ordering::Relaxed) as f64 / 1e9;
        s.cpu_seconds = bc + c.cpu_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        s.bytes_in = bb + c.bytes.load(Ordering::Relaxed);
        s.kept = s.input - s.dropped;
    }
}

/// Turn a live slot into a rejection by pipeline stage `stage` (0-based).
pub(super) fn drop_slot(slot: &mut Slot, stage: usize, reason: String, detail: String, meta_field: &str) {
    let Slot::Live(rec) = slot else { return };
    let origin = rec.origin.to_string();
    let shown = preview_joined(rec.texts().into_iter().map(|(_, t)| t), 300);
    let gone = Rejection {
        stage: stage + 1,
        reason,
        detail,
        id: rec.id.clone(),
        origin,
        preview: shown,
        tagged_by: std::mem::take(&mut rec.tagged_by),
        record: Some(rec.take_output(meta_field)),
        raw: None,
    };
    *slot = Slot::Gone(Box::new(gone));
}

/// Live records in a chunk and their input bytes.
fn live_count(chunk: &[Slot]) -> (u64, u64) {
    chunk.iter().fold((0, 0), |(n, b), s| match s {
        Slot::Live(r) => (n + 1, b + r.input_bytes),
        Slot::Gone(_) => (n, b),
    })
}

/// Apply a stage's verdict to a slot.
fn apply(verdict: Verdict, slot: &mut Slot, stage: usize, c: &Counters, meta_field: &str) {
    match verdict {
        Verdict::Keep => {}
        Verdict::Modified => {
            c.modified.fetch_add(1, Ordering::Relaxed);
        }
        Verdict::Tagged { .. } => {
            c.tagged.fetch_add(1, Ordering::Relaxed);
            if let Slot::Live(rec) = slot {
                rec.tagged_by.push(stage as u32);
            }
        }
        Verdict::Drop { reason, detail } => drop_slot(slot, stage, reason, detail, meta_field),
    }
}

/// Run the stages from `start` on over a batch: each run of per-record stages in
/// parallel, together with the key of the global stage after it, then that global
/// stage's `decide` in input order. `observe_last`: the last stage is in its
/// prepass and `observe`s instead of deciding. Stages before `start` already ran
/// (the batch comes from a prepass spill).
pub(super) fn run_stages(
    stages: &mut [PipelineStage],
    counters: &[Counters],
    slots: &mut [Slot],
    meta_field: &str,
    observe_last: bool,
    start: usize,
) -> Result<()> {
    let n = stages.len();
    let mut i = start;
    while i < n {
        let mut j = i;
        while j < n && matches!(stages[j], PipelineStage::PerRecord(_)) {
            j += 1;
        }
        let (group, rest) = stages[i..].split_at_mut(j - i);
        let mut global: Option<&mut dyn DynGlobalStage> = rest.first_mut().and_then(|s| s.global());
        let keys: Vec<Option<AnyKey>> = {
            let global: Option<&dyn DynGlobalStage> = global.as_deref();
            let per_chunk = slots
                .par_chunks_mut(CHUNK)
                .map(|chunk| -> Result<Vec<Option<AnyKey>>> {
                    for (k, stage) in group.iter().enumerate() {
                        let PipelineStage::PerRecord(stage) = stage else {
                            unreachable!("the group holds per-record stages only")
                        };
                        let idx = i + k;
                        let c = &counters[idx];
                        let (live, bytes) = live_count(chunk);
                        if live == 0 {
                            break;
                        }
                        c.input.fetch_add(live, Ordering::Relaxed);
                        c.bytes.fetch_add(bytes, Ordering::Relaxed);
                        let (wall, cpu) = (Instant::now(), thread_cpu_nanos());
                        for slot in chunk.iter_mut() {
                            let Slot::Live(rec) = slot else { continue };
                            let v = stage.process(rec).with_context(|| {
                                format!("stage `{}` on record `{}` ({})", stage.kind(), rec.id, rec.origin)
                            })?;
                            apply(v, slot, idx, c, meta_field);
                        }
                        c.add_time(wall, cpu);
                    }
                    let Some(g) = global else {
                        return Ok(chunk.iter().map(|_| None).collect());
                    };
                    let c = &counters[j];
                    let (wall, cpu) = (Instant::now(), thread_cpu_nanos());
                    let keys = chunk
                        .iter_mut()
                        .map(|slot| {
                            let Slot::Live(rec) = slot else { return Ok(None) };
                            c.input.fetch_add(1, Ordering::Relaxed);
                            c.bytes.fetch_add(rec.input_bytes, Ordering::Relaxed);
                            let key = g.key(rec).with_context(|| {
                                format!("stage `{}` on record `{}` ({})", g.kind(), rec.id, rec.origin)
                            })?;
                            Ok(Some(key))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    c.add_time(wall, cpu);
                    Ok(keys)
                })
                .collect::<Result<Vec<_>>>()?;
            per_chunk.into_iter().flatten().collect()
        };
        if let Some(g) = global.as_mut() {
            let c = &counters[j];
            let (wall, cpu) = (Instant::now(), thread_cpu_nanos());
            let observe = observe_last && j + 1 == n;
            for (slot, key) in slots.iter_mut().zip(keys) {
                let Slot::Live(rec) = slot else { continue };
                let key = key.context("internal error: a live record without its key")?;
                let kind = g.kind();
                if observe {
                    // Observing only writes the stage's index: its failures (a full disk)
                    // are the index's, not the record's, and name its files; the prepass
                    // and the observe step name the stage.
                    g.observe(rec, key)?;
                } else {
                    let v = g
                        .decide(rec, key)
                        .with_context(|| format!("stage `{kind}` on record `{}` ({})", rec.id, rec.origin))?;
                    apply(v, slot, j, c, meta_field);
                }
            }
            c.add_time(wall, cpu);
        }
        i = j + 1;
    }
    Ok(())
}

/// A batch of the main pass or of a prepass: raw items from the input, or records
/// read back from a prepass spill.
pub(super) enum Input {
    Raw(ReadBatch),
    Spilled(SpillBatch),
}

/// The reader's marks of a batch, owned.
pub(super) struct Marks {
    pub(super) source: usize,
    pub(super) chunk: u64,
    pub(super) unit_end: bool,
    pub(super) source_end: Option<Vec<String>>,
    /// Input bytes of its items as read.
    pub(super) bytes: u64,
}

impl Input {
    /// The batch's marks (the source notes are moved out).
    pub(super) fn marks(&self) -> Marks {
        match self {
            Input::Raw(b) => Marks {
                source: b.source,
                chunk: b.chunk,
                unit_end: b.unit_end,
                source_end: b.source_end.clone(),
                bytes: b.items.iter().map(|i| i.size() as u64).sum(),
            },
            Input::Spilled(b) => Marks {
                source: b.source,
                chunk: b.chunk,
                unit_end: b.unit_end,
                source_end: b.source_end.clone(),
                bytes: b.bytes,
            },
        }
    }

    /// Items in the batch.
    pub(super) fn len(&self) -> usize {
        match self {
            Input::Raw(b) => b.items.len(),
            Input::Spilled(b) => b.slots.len(),
        }
    }
}

/// Everything the main pass needs.
pub(super) struct MainPass<'a> {
    pub pipeline: &'a Pipeline,
    pub opts: &'a RunOptions,
    pub sources: &'a [Source],
    pub out: &'a Path,
    pub stages: &'a mut [PipelineStage],
    pub stage_names: &'a [String],
    pub pool: &'a rayon::ThreadPool,
    pub started: Instant,
    /// [`process_cpu_seconds`] when the run started.
    pub cpu_started: f64,
    /// Read the records from this prepass spill, starting at its stage, instead of
    /// reading the input and running every stage.
    pub spill: Option<(SpillJob, usize)>,
    /// Books of a prepass that spilled nothing (it read the input as this pass
    /// does), added once when the pass starts from the beginning.
    pub prepass_books: Vec<Books>,
    /// The one schema every part is written in.
    pub schema: &'a OutputSchema,
}

/// The main pass: read from the checkpoint's position, run the stages, write the
/// parts, and at each unit's end update the books and hand the writer the checkpoint.
pub(super) fn main_pass(job: MainPass<'_>, cp: &mut Checkpoint) -> Result<()> {
    let MainPass {
        pipeline,
        opts,
        sources,
        out,
        stages,
        stage_names,
        pool,
        started,
        cpu_started,
        spill,
        prepass_books,
        schema,
    } = job;
    let rejected_shape = schema.rejected_shape();
    let (read_tx, read_rx) = sync_channel::<ReadMsg>(4);
    let mut first_stage = 0;
    let read_size =
        super::read::pass_read_size(spill.as_ref().map(|(job, _)| job.dir.as_path()), sources, opts);
    let reader = match spill {
        Some((mut job, stage)) => {
            first_stage = stage;
            job.start = (cp.next_source, cp.next_chunk);
            std::thread::spawn(move || spill_reader_thread(job, read_tx))
        }
        None => {
            let job = ReaderJob::new(
                pipeline,
                sources,
                opts,
                (cp.next_source, cp.next_chunk),
                cp.records_read,
            );
            std::thread::spawn(move || reader_thread(job, read_tx))
        }
    };
    let (write_tx, write_rx) = sync_channel::<WriteBatch>(4);
    let writer = {
        let st = WriterState {
            out_dir: out.to_path_buf(),
            cfg: pipeline.output.clone(),
            kept_schema: schema.kept_arrow(),
            rejected_schema: schema.rejected_arrow(),
            current: None,
        };
        std::thread::spawn(move || writer_thread(st, write_rx))
    };

    let counters: Vec<Counters> = (0..stages.len()).map(|_| Counters::default()).collect();
    let base_counts: Vec<BaseCounts> = cp
        .stats
        .stages
        .iter()
        .skip(1)
        .map(|s| {
            (
                s.input,
                s.modified,
                s.tagged,
                s.seconds,
                s.cpu_seconds,
                s.bytes_in,
            )
        })
        .collect();
    let parser = BatchParser::new(pipeline)?;
    let meta_field = pipeline.output.meta_field.clone();
    let samples_per = pipeline.run.report_samples;
    let mut progress = Progress::new(opts.quiet, cp.records_read, cp.stats.kept, read_size);
    let prior_seconds = cp.stats.seconds;
    let prior_cpu = cp.stats.cpu_seconds;
    let base_read_cpu = cp.stats.stages[0].cpu_seconds;
    let mut failure: Option<anyhow::Error> = None;
    let (mut unit_kept, mut unit_rejected) = (0u64, 0u64);

    let mut spilled_read_cpu = 0.0;
    if cp.records_read == 0 {
        if let Some(read) = prepass_books.first() {
            spilled_read_cpu += read.cpu_nanos as f64 / 1e9;
        }
        for (c, books) in counters.iter().zip(prepass_books.iter().skip(1)) {
            c.add_books(books);
        }
    }
    super::tally::init_scores(&mut cp.stats.stages, stages);
    for msg in read_rx {
        let batch = match msg {
            ReadMsg::Batch(b) => Input::Raw(b),
            ReadMsg::Spilled(b) => Input::Spilled(b),
            ReadMsg::Failed(e) => {
                failure = Some(e);
                break;
            }
        };
        let marks = batch.marks();
        let n_items = batch.len() as u64;
        let batch_bytes = marks.bytes;
        let score_books = &mut cp.stats.stages;
        let first_item = (marks.source, cp.open_source.records);
        let result = pool.install(|| -> Result<BatchOutput> {
            let mut slots = match batch {
                Input::Raw(b) => parser.parse(b.items, &sources[b.source].name),
                Input::Spilled(b) => {
                    if let Some(read) = b.books.first() {
                        spilled_read_cpu += read.cpu_nanos as f64 / 1e9;
                    }
                    for (c, books) in counters.iter().zip(b.books.iter().skip(1)) {
                        c.add_books(books);
                    }
                    b.slots
                }
            };
            run_stages(stages, &counters, &mut slots, &meta_field, false, first_stage)?;
            super::tally::tally_scores(score_books, &slots, first_item, &meta_field, stages);
            let outs: Vec<(bool, Vec<u8>)> = slots
                .par_iter_mut()
                .map(|slot| match slot {
                    Slot::Live(r) => {
                        let mut line = Vec::with_capacity(256);
                        schema.write_row(r, &mut line);
                        (true, line)
                    }
                    Slot::Gone(rej) => (false, rejection_line(rej, stage_names, &rejected_shape)),
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
            cp.open_source.add_rejection(&stage_names[rej.stage], &rej.reason);
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
        let source_done = marks.source_end.is_some();
        cp.open_source.records += n_items;
        cp.open_source.bytes += batch_bytes;
        cp.open_source.kept += nk;
        cp.open_source.rejected += nr;
        if let Some(notes) = marks.source_end {
            let mut done = std::mem::take(&mut cp.open_source);
            done.name = sources[marks.source].name.to_string();
            done.notes = notes;
            cp.stats.sources.push(done);
        }
        let stats = &mut cp.stats;
        let end = if marks.unit_end {
            let out_cfg = &pipeline.output;
            if unit_kept > 0 {
                let name = part_file_name(marks.source, marks.chunk, out_cfg.format, out_cfg.compression);
                stats.kept_parts.push(format!("kept/{name}"));
            }
            if unit_rejected > 0 {
                let name = part_file_name(marks.source, marks.chunk, out_cfg.format, out_cfg.compression);
                stats.rejected_parts.push(format!("rejected/{name}"));
            }
            (unit_kept, unit_rejected) = (0, 0);
            sync_stage_stats(
                cp,
                &counters,
                &base_counts,
                (base_read_cpu + spilled_read_cpu, &parser),
            );
            if source_done {
                cp.next_source = marks.source + 1;
                cp.next_chunk = 0;
            } else {
                cp.next_source = marks.source;
                cp.next_chunk = marks.chunk + 1;
            }
            cp.stats.seconds = prior_seconds + started.elapsed().as_secs_f64();
            cp.stats.cpu_seconds = prior_cpu + process_cpu_seconds() - cpu_started;
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
            source: marks.source,
            chunk: marks.chunk,
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
    Ok(())
}
