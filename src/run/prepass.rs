//! Prepasses of global stages (see `src/stage.rs`): before the main pass of a
//! fresh run, the input is read once more, fresh copies of the stages before the
//! global stage run on it, and the global stage observes every record that
//! reaches it and prepares its decisions. A resumed run (one with a checkpoint)
//! reuses the finished prepass on disk. In a sharded run the observe part runs
//! per rank as the `observe:NAME` step and the decisions come from the steps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;

use anyhow::{Context, Result};
use serde_json::json;

use super::checkpoint::state_dir;
use super::exec::{run_stages, Counters};
use super::options::{input_sources, output_dir, run_fingerprint, steps_root, RunOptions};
use super::read::{reader_thread, BatchParser, ReadMsg, ReaderJob, Slot};
use crate::config::Pipeline;
use crate::dedup::store;
use crate::error::config_error;
use crate::io::writer::write_atomic;
use crate::io::Source;
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
    if store::load_observed(&dir)?.is_some() && !opts.overwrite {
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

/// The prepass of stage `k`: read the whole input, run fresh copies of the stages
/// before it (earlier global stages use their finished prepass), key and `observe`
/// stage `k` in input order, and `prepare` it (a rank's observe step closes it instead).
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
    let job = ReaderJob::new(pipeline, sources, opts, (0, 0), 0);
    let reader = std::thread::spawn(move || reader_thread(job, read_tx));
    let parser = BatchParser::new(pipeline)?;
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
        let batch_source = batch.source;
        let step = pool.install(|| -> Result<Vec<Slot>> {
            let mut slots = parser.parse(batch.items, &sources[batch_source].name);
            run_stages(&mut pre, &counters, &mut slots, meta_field, true)?;
            Ok(slots)
        });
        match step {
            Ok(slots) => {
                let observed = slots.iter().filter(|s| matches!(s, Slot::Live(_))).count() as u64;
                if observed > 0 {
                    *per_source.entry(batch_source).or_default() += observed;
                }
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    let _ = reader.join();
    result?;
    let target = pre[k]
        .global()
        .context("internal error: the prepass stage is not a global stage")?;
    if !opts.is_split() {
        return target.prepass().prepare();
    }
    let dir = prepass_folder(pipeline, opts, out, k);
    let sources_json = json!({
        "run": run_fingerprint(pipeline, sources, opts),
        "files": per_source.into_iter().collect::<Vec<_>>(),
    });
    write_atomic(&dir.join("sources.json"), &serde_json::to_vec(&sources_json)?)?;
    target.prepass().close_observe()
}
