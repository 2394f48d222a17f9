//! Prepasses of global stages (see `src/stage.rs`): before the main pass of a
//! fresh run, the input is read once more, fresh copies of the stages before the
//! global stage run on it, and the global stage observes every record that
//! reaches it and prepares its decisions. A resumed run (one with a checkpoint)
//! reuses the finished prepass on disk. In a sharded run the observe part runs
//! per rank as the `observe:NAME` step and the decisions come from the steps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::json;

use super::checkpoint::state_dir;
use super::clock::thread_cpu_nanos;
use super::exec::{run_stages, Counters, Input};
use super::options::{input_sources, output_dir, run_fingerprint, steps_root, RunOptions};
use super::read::{reader_thread, BatchParser, ReadMsg, ReaderJob, Slot};
use super::spill::{
    self, add_books, spill_reader_thread, BatchMarks, Books, SpillJob, SpillMeta, SpillWriter,
};
use crate::config::Pipeline;
use crate::error::config_error;
use crate::io::writer::write_atomic;
use crate::io::Source;
use crate::progress::Progress;
use crate::sharded::layout::{global_dir, rank_dir};
use crate::stage::PipelineStage;

/// Stage `k`'s prepass folder in a single-process run.
fn prepass_dir(out: &Path, stage: usize) -> PathBuf {
    state_dir(out).join(format!("prepass-{stage:03}"))
}

/// Stage `k`'s prepass folder: under the run's `.curate/`, or for a rank of a sharded
/// run the rank's folder of that stage's steps.
fn prepass_folder(pipeline: &Pipeline, opts: &RunOptions, out: &Path, k: usize) -> PathBuf {
    match opts.rank.filter(|_| opts.is_split()) {
        Some(r) => rank_dir(&steps_root(pipeline, opts), k, r.rank),
        None => prepass_dir(out, k),
    }
}

/// A rank of a run split over several: every global stage switches to a prepass
/// the steps can split over ranks.
pub(super) fn shard_stages(
    pipeline: &Pipeline,
    stages: &mut [PipelineStage],
    opts: &RunOptions,
) -> Result<()> {
    if opts.is_split() {
        use_sharded_prepasses(pipeline, stages)?;
    }
    Ok(())
}

/// Switch every stage to its sharded prepass ([`crate::stage::GlobalStage::use_sharded_prepass`]);
/// a stage that has none is a config error naming it.
pub fn use_sharded_prepasses(pipeline: &Pipeline, stages: &mut [PipelineStage]) -> Result<()> {
    for (i, st) in stages.iter_mut().enumerate() {
        if !st.use_sharded_prepass() {
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

/// Open every global stage's prepass before the main pass: run it first in a
/// fresh single-process run, load it when resuming, or load the sharded steps'
/// decisions in a rank of a split run.
pub(super) fn open_prepasses(
    pipeline: &Pipeline,
    opts: &RunOptions,
    sources: &[Source],
    out: &Path,
    stages: &mut [PipelineStage],
    resuming: bool,
    pool: &rayon::ThreadPool,
) -> Result<()> {
    for (k, stage) in stages.iter_mut().enumerate() {
        let Some(stage) = stage.global().filter(|g| g.needs_prepass()) else {
            continue;
        };
        let name = &pipeline.stages[k].name;
        let dir = if opts.is_split() {
            // A sharded run's steps made the decisions (`src/sharded/steps.rs`).
            let global = global_dir(&steps_root(pipeline, opts), k);
            if !global.join("prepared.json").exists() {
                return Err(config_error(format!(
                    "stage `{name}`: its sharded steps have not finished ({} has no prepared.json); run \
                     `--step observe:{name}`, `buckets:{name}` and `clusters:{name}` first (`curate slurm` \
                     chains them)",
                    global.display(),
                )));
            }
            prepass_folder(pipeline, opts, out, k)
        } else {
            let dir = prepass_dir(out, k);
            if !resuming {
                if dir.exists() {
                    std::fs::remove_dir_all(&dir)
                        .with_context(|| format!("{}: cannot remove", dir.display()))?;
                }
                std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
                if !opts.quiet {
                    eprintln!("curate: prepass for stage `{name}` (reading the input once)");
                }
                run_prepass(pipeline, sources, opts, out, k, pool)
                    .with_context(|| format!("stage `{name}`: prepass failed"))?;
            }
            dir
        };
        stage
            .prepass()
            .open(&dir, true)
            .with_context(|| format!("stage `{name}`: cannot load its prepass"))?;
    }
    Ok(())
}

/// Observe step of a sharded run: this rank's records through the stages before
/// `k`, observed by stage `k` into the rank's step folder (`sources.json`, then the
/// stage's files, `observed.json` last). `false` when it was already complete.
pub fn observe_step(pipeline: &Pipeline, opts: &RunOptions, k: usize) -> Result<bool> {
    let (sources, output_dir) = (input_sources(pipeline, opts)?, output_dir(pipeline, opts));
    let dir = prepass_folder(pipeline, opts, &output_dir, k);
    // `observed.json` is written last by every kind of prepass store.
    if dir.join("observed.json").is_file() && !opts.overwrite {
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

/// The prepass of stage `k`: read the whole input (or the spill of the global
/// stage before it, which ran the stages before that one), run fresh copies of the
/// stages before `k` (earlier global stages use their finished prepass), key and
/// `observe` stage `k` in input order, spill the records as they reached `k` (see
/// [`super::spill`]), and `prepare` stage `k` (a rank's observe step closes it instead).
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
        if let Some(g) = st.global().filter(|g| g.needs_prepass()) {
            g.prepass().open(&prepass_folder(pipeline, opts, out, j), j < k)?;
        }
    }
    // Records observed per input file: a sharded run's global ordinals come from these.
    let mut per_source: BTreeMap<usize, u64> = BTreeMap::new();
    let counters: Vec<Counters> = (0..pre.len()).map(|_| Counters::default()).collect();
    let (read_tx, read_rx) = sync_channel::<ReadMsg>(4);
    let map = Arc::new(pipeline.input.fields.clone());
    let chained = last_spill(pipeline, opts, out, &pre[..k])?;
    let (first_stage, mut end_books) = match &chained {
        Some((j, dir, meta)) => {
            for (i, state) in spill::load_states(dir, meta)? {
                pre[i].load_state(&state)?;
            }
            (if meta.reread_input { 0 } else { *j }, meta.end_books.clone())
        }
        None => (0, Vec::new()),
    };
    // An earlier spill that holds no records: read the input (its books are carried).
    let chained = chained.filter(|(_, _, meta)| !meta.reread_input);
    let read_size =
        super::read::pass_read_size(chained.as_ref().map(|(_, from, _)| from.as_path()), sources, opts);
    let mut progress = Progress::new(opts.quiet, 0, 0, read_size);
    let reader = match chained {
        Some((_, dir, _)) => {
            // The earlier spill's end books go into this spill's (below), not into a batch.
            let job = SpillJob {
                dir,
                end_books: Vec::new(),
                map,
                start: (0, 0),
            };
            std::thread::spawn(move || spill_reader_thread(job, read_tx))
        }
        None => {
            let job = ReaderJob::new(pipeline, sources, opts, (0, 0), 0);
            std::thread::spawn(move || reader_thread(job, read_tx))
        }
    };
    let dir = prepass_folder(pipeline, opts, out, k);
    let mut spill = SpillWriter::create(&dir)?;
    // The first stage sees the records as read: nothing to spill (see `SpillMeta`).
    let reread_input = k == 0;
    let parser = BatchParser::new(pipeline)?;
    let meta_field = &pipeline.output.meta_field;
    let mut result = Ok(());
    let mut read_records = 0u64;
    for msg in read_rx {
        let batch = match msg {
            ReadMsg::Batch(b) => Input::Raw(b),
            ReadMsg::Spilled(b) => Input::Spilled(b),
            ReadMsg::Failed(e) => {
                result = Err(e);
                break;
            }
        };
        let marks = batch.marks();
        let before: Vec<Books> = counters.iter().map(Counters::books).collect();
        let parse_before = parser.cpu_seconds();
        let step = pool.install(|| -> Result<(Vec<Slot>, Vec<Books>)> {
            let (mut slots, books) = match batch {
                Input::Raw(b) => (parser.parse(b.items, &sources[b.source].name), Vec::new()),
                Input::Spilled(b) => (b.slots, b.books),
            };
            run_stages(&mut pre, &counters, &mut slots, meta_field, true, first_stage)?;
            Ok((slots, books))
        });
        let (slots, mut books) = match step {
            Ok(v) => v,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        // This batch's books: what came with it plus what the stages here did; stage
        // `k` only observed, so only its time counts (the main pass counts its records).
        let mut own = vec![Books::default(); pre.len() + 1];
        own[0].cpu_nanos = ((parser.cpu_seconds() - parse_before) * 1e9) as u64;
        for (i, c) in counters.iter().enumerate() {
            own[i + 1] = c.books().since(&before[i]);
        }
        let last = &mut own[k + 1];
        (last.input, last.bytes, last.modified, last.tagged) = (0, 0, 0, 0);
        add_books(&mut books, &own);
        let observed = slots.iter().filter(|s| matches!(s, Slot::Live(_))).count() as u64;
        if observed > 0 {
            *per_source.entry(marks.source).or_default() += observed;
        }
        read_records += slots.len() as u64;
        progress.update(read_records, marks.bytes, observed);
        if reread_input {
            add_books(&mut end_books, &books);
            continue;
        }
        let spilled = spill.write_batch(
            BatchMarks {
                source: marks.source,
                chunk: marks.chunk,
                unit_end: marks.unit_end,
                source_end: marks.source_end.as_deref(),
                bytes: marks.bytes,
            },
            &slots,
            &books,
        );
        if let Err(e) = spilled {
            result = Err(e);
            break;
        }
    }
    let _ = reader.join();
    progress.finish();
    result?;
    let (wall, cpu) = (Instant::now(), thread_cpu_nanos());
    let target = pre[k]
        .global()
        .context("internal error: the prepass stage is not a global stage")?;
    if opts.is_split() {
        let sources_json = json!({
            "run": run_fingerprint(pipeline, sources, opts),
            "files": per_source.into_iter().collect::<Vec<_>>(),
        });
        write_atomic(&dir.join("sources.json"), &serde_json::to_vec(&sources_json)?)?;
        target.prepass().close_observe()?;
    } else {
        target.prepass().prepare()?;
    }
    let mut closing = vec![Books::default(); k + 2];
    closing[k + 1].nanos = wall.elapsed().as_nanos() as u64;
    closing[k + 1].cpu_nanos = thread_cpu_nanos().saturating_sub(cpu);
    add_books(&mut end_books, &closing);
    let mut states = Vec::new();
    for (i, st) in pre[..k].iter().enumerate() {
        if let Some(bytes) = st.save_state()? {
            states.push((i, bytes));
        }
    }
    let meta = SpillMeta {
        stage: k,
        end_books,
        states: states.iter().map(|(i, _)| *i).collect(),
        reread_input,
    };
    spill.finish(&meta, &states)
}

/// The last global stage among `before` with a complete prepass spill: its index,
/// folder and description (`None`: none has one; read the input).
fn last_spill(
    pipeline: &Pipeline,
    opts: &RunOptions,
    out: &Path,
    before: &[PipelineStage],
) -> Result<Option<(usize, PathBuf, SpillMeta)>> {
    let Some(j) = before.iter().rposition(PipelineStage::needs_prepass) else {
        return Ok(None);
    };
    let dir = prepass_folder(pipeline, opts, out, j);
    Ok(spill::load_meta(&dir)?
        .filter(|m| m.stage == j)
        .map(|m| (j, dir, m)))
}

/// The main pass's source of records: the spill of the last global stage with a
/// prepass (the stage to start at, and the spill's reader), if it has one.
pub(super) fn main_pass_spill(
    pipeline: &Pipeline,
    opts: &RunOptions,
    out: &Path,
    stages: &[PipelineStage],
) -> Result<Option<(SpillJob, usize, SpillMeta)>> {
    Ok(last_spill(pipeline, opts, out, stages)?.map(|(k, dir, meta)| {
        let job = SpillJob {
            dir,
            end_books: meta.end_books.clone(),
            map: Arc::new(pipeline.input.fields.clone()),
            start: (0, 0),
        };
        (job, k, meta)
    }))
}

/// The stage states saved with a spill (for a fresh main pass).
pub(super) fn spill_states(job: &SpillJob, meta: &SpillMeta) -> Result<Vec<(usize, Vec<u8>)>> {
    spill::load_states(&job.dir, meta)
}

/// A finished run no longer needs its prepass spills: remove them.
pub(super) fn remove_spills(pipeline: &Pipeline, opts: &RunOptions, out: &Path, stages: &[PipelineStage]) {
    for (k, st) in stages.iter().enumerate() {
        if st.needs_prepass() {
            spill::remove(&prepass_folder(pipeline, opts, out, k));
        }
    }
}
