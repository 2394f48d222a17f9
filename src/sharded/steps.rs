//! Sharded runs with global stages: the steps that split them over ranks.
//!
//! `exact_dedup`, `minhash_dedup` and `span_dedup` compare every record with every
//! other, so a rank cannot decide alone. In a sharded run (`--world-size` > 1) each of them
//! runs as three steps before the ranks write their output, the way datatrove
//! runs MinHash on Slurm:
//!
//! | step | tasks | reads | writes |
//! |---|---|---|---|
//! | `observe:NAME` | one per rank | the rank's input files, through the stages before NAME | `steps/stage-KKK/rank-RRRRR/`: signatures, records, sorted band runs, `sources.json`, `observed.json` (last) |
//! | `buckets:NAME` | one per band range (`--rank` = range of `--world-size`) | every rank's band runs of its bands | `steps/stage-KKK/global/buckets-PPPPP.bin`: the entries sorted, ordinals made global |
//! | `clusters:NAME` | one | the bucket files, every rank's signatures and records | `decisions.bin` + `prepared.json` per rank folder; `clusters.jsonl`, `prepared.json` (last) in `global/` |
//! | `filter` | one per rank | the rank's input, every stage's decisions | the rank's kept and rejected parts (the plain `curate run --rank`) |
//!
//! The table is `minhash_dedup`'s (and `exact_dedup`'s); `span_dedup` has the same
//! steps over its own files (`src/dedup/spans.rs`: count runs per rank, merged per
//! hash range, joined into the repeated set), driven through
//! [`crate::dedup::PrepassStore`]. The file formats are those of `src/dedup/store.rs`. A record's global
//! ordinal is its position in a single-process run (input files in order), which
//! `sources.json` (records per input file) lets the later steps compute; with the
//! same ordinals the clusters, the kept records and every decision are those of a
//! single-process run (`tests/slurm.rs` compares the output byte for byte).
//!
//! For two global stages the chain is observe, buckets, clusters of the first,
//! then of the second (its observe step reads the first one's decisions), then
//! filter. Each step's output is its completion mark, so `curate slurm` resubmits
//! only what is missing.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::layout::{global_dir, rank_dir};
use crate::config::Pipeline;
use crate::dedup::store as prepass;
use crate::dedup::PrepassStore;
use crate::error::config_error;
use crate::run::{self, RunOptions};
use crate::stage::PipelineStage;

/// One step of a sharded run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Per rank: observe the records that reach pipeline stage `k`.
    Observe(usize),
    /// Per band range: merge the ranks' band entries of stage `k`.
    Buckets(usize),
    /// Once: cluster stage `k` and write every rank's decisions.
    Clusters(usize),
    /// Per rank: the rank's output, with every global stage's decisions.
    Filter,
}

impl Step {
    /// The `--step` value (`observe:NAME`, ..., `filter`).
    pub fn name(&self, pipeline: &Pipeline) -> String {
        match *self {
            Step::Observe(k) => format!("observe:{}", pipeline.stages[k].name),
            Step::Buckets(k) => format!("buckets:{}", pipeline.stages[k].name),
            Step::Clusters(k) => format!("clusters:{}", pipeline.stages[k].name),
            Step::Filter => "filter".into(),
        }
    }

    /// Whether the step runs once (not one task per rank or band range).
    pub fn is_single(&self) -> bool {
        matches!(self, Step::Clusters(_))
    }
}

/// Parse a `--step` value against the pipeline's stage names.
pub fn parse(text: &str, pipeline: &Pipeline) -> Result<Step> {
    if text == "filter" {
        return Ok(Step::Filter);
    }
    let globals = global_stages(pipeline)?;
    let (kind, name) = text.split_once(':').unwrap_or((text, ""));
    let k = pipeline.stages.iter().position(|s| s.name == name);
    let k =
        match k {
            Some(k) if globals.contains(&k) => k,
            _ => {
                let names: Vec<String> = globals.iter().map(|&k| pipeline.stages[k].name.clone()).collect();
                return Err(config_error(format!(
                "--step {text}: expected observe:NAME, buckets:NAME, clusters:NAME or filter, where NAME \
                 is a global stage of this pipeline ({})",
                if names.is_empty() { "it has none".to_string() } else { names.join(", ") }
            )));
            }
        };
    match kind {
        "observe" => Ok(Step::Observe(k)),
        "buckets" => Ok(Step::Buckets(k)),
        "clusters" => Ok(Step::Clusters(k)),
        _ => Err(config_error(format!(
            "--step {text}: expected observe:NAME, buckets:NAME, clusters:NAME or filter"
        ))),
    }
}

/// Pipeline stages that need steps when sharded (their indices, in order).
pub fn global_stages(pipeline: &Pipeline) -> Result<Vec<usize>> {
    let mut stages = crate::stages::build_all(pipeline)?;
    run::use_sharded_prepasses(pipeline, &mut stages)?;
    Ok((0..stages.len()).filter(|&k| stages[k].needs_prepass()).collect())
}

/// Every step of a sharded run, in order.
pub fn plan(pipeline: &Pipeline) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    for k in global_stages(pipeline)? {
        steps.extend([Step::Observe(k), Step::Buckets(k), Step::Clusters(k)]);
    }
    steps.push(Step::Filter);
    Ok(steps)
}

/// Tasks of `step` (ranks, band ranges, or `[0]`) not yet complete.
/// `out` is the output (where rank markers are), `root` the steps' root ([`run::steps_root`]).
pub fn incomplete(step: Step, out: &Path, root: &Path, world_size: usize) -> Result<Vec<usize>> {
    let tasks: Vec<usize> = if step.is_single() {
        vec![0]
    } else {
        (0..world_size).collect()
    };
    let done_markers = if step == Step::Filter {
        super::rank::markers(out)?
    } else {
        Default::default()
    };
    let mut left = Vec::new();
    for t in tasks {
        let done = match step {
            Step::Observe(k) => rank_dir(root, k, t).join("observed.json").is_file(),
            Step::Buckets(k) => global_dir(root, k).join(prepass::buckets_file(t)).exists(),
            Step::Clusters(k) => global_dir(root, k).join("prepared.json").exists(),
            Step::Filter => done_markers.contains_key(&t),
        };
        if !done {
            left.push(t);
        }
    }
    Ok(left)
}

/// Run one step of a sharded run (`curate run --rank R --world-size N --step STEP`).
/// Filter is the plain rank run; the others print what they did.
pub fn run_step(pipeline: &Pipeline, opts: &RunOptions, step: Step) -> Result<()> {
    let me = opts
        .rank
        .filter(|s| s.world_size > 1)
        .ok_or_else(|| config_error("--step needs --rank and --world-size (more than one rank)"))?;
    let out = run::steps_root(pipeline, opts);
    let say = |msg: String| {
        if !opts.quiet {
            eprintln!("curate: {msg}");
        }
    };
    match step {
        Step::Filter => {
            run::run(pipeline, opts)?;
        }
        Step::Observe(k) => {
            let name = &pipeline.stages[k].name;
            if run::observe_step(pipeline, opts, k)? {
                say(format!("rank {}: observe step of `{name}` done", me.rank));
            } else {
                say(format!(
                    "rank {}: observe step of `{name}` was already complete",
                    me.rank
                ));
            }
        }
        Step::Buckets(k) => {
            let gdir = global_dir(&out, k);
            let file = gdir.join(prepass::buckets_file(me.rank));
            if file.exists() && !opts.overwrite {
                say(format!("{}: already complete", file.display()));
                return Ok(());
            }
            std::fs::create_dir_all(&gdir).with_context(|| format!("{}: cannot create", gdir.display()))?;
            let (mut stage, dirs) = sharded_stage(pipeline, &out, k, me.world_size)?;
            let line =
                stage_store(&mut stage, pipeline, k)?.bucket_step(&dirs, me.rank, me.world_size, &gdir)?;
            say(format!("{line} of `{}`", pipeline.stages[k].name));
        }
        Step::Clusters(k) => {
            let gdir = global_dir(&out, k);
            if gdir.join("prepared.json").exists() && !opts.overwrite {
                say(format!("{}: clusters already complete", gdir.display()));
                return Ok(());
            }
            let (mut stage, dirs) = sharded_stage(pipeline, &out, k, me.world_size)?;
            let line = stage_store(&mut stage, pipeline, k)?.cluster_step(&dirs, me.world_size, &gdir)?;
            say(format!("{line} of `{}`", pipeline.stages[k].name));
        }
    }
    Ok(())
}

/// Stage `k`, built afresh, and the folders of its ranks' observe steps.
fn sharded_stage(
    pipeline: &Pipeline,
    out: &Path,
    k: usize,
    world_size: usize,
) -> Result<(PipelineStage, Vec<PathBuf>)> {
    let stage = crate::stages::build(&pipeline.stages[k], pipeline)?;
    let dirs: Vec<PathBuf> = (0..world_size).map(|r| rank_dir(out, k, r)).collect();
    Ok((stage, dirs))
}

/// The sharded prepass of a global stage (an error for any other stage).
fn stage_store<'a>(
    stage: &'a mut PipelineStage,
    pipeline: &Pipeline,
    k: usize,
) -> Result<&'a mut dyn PrepassStore> {
    let Some(g) = stage.global() else {
        bail!("stage `{}` has no cluster steps", pipeline.stages[k].name);
    };
    if !g.use_sharded_prepass() {
        bail!("stage `{}` has no cluster steps", pipeline.stages[k].name);
    }
    Ok(g.prepass())
}
