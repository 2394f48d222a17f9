//! What a run reads and writes: the command-line overrides ([`RunOptions`]), the
//! input files and output folder after them ([`plan`]), and the fingerprint that
//! ties a checkpoint or a rank marker to one pipeline, input and option set.

use std::path::PathBuf;

use anyhow::Result;

use crate::config::Pipeline;
use crate::error::config_error;
use crate::io::{self, remote, Source};
use crate::sharded::layout::side_dir;
use crate::sharded::rank::Rank;
use crate::stage::PipelineStage;

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
    pub rank: Option<Rank>,
    /// Where a sharded run's steps keep their files (default: [`steps_root`]).
    pub steps_root: Option<PathBuf>,
}

/// Where a run reads and writes, after overrides.
pub struct Plan {
    pub sources: Vec<Source>,
    pub output_dir: PathBuf,
    pub stages: Vec<PipelineStage>,
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
pub(super) fn input_sources(pipeline: &Pipeline, opts: &RunOptions) -> Result<Vec<Source>> {
    // An error names where the paths came from: the pipeline's `[input] paths`, or `--input`.
    let sources = if opts.inputs.is_empty() {
        io::expand_inputs(&pipeline.input.paths, &pipeline.dir, pipeline.input.format)
            .map_err(|e| config_error(format!("{}: {e:#}", pipeline.path.display())))?
    } else {
        let cwd = std::env::current_dir()?;
        io::expand_inputs(
            &crate::config::override_paths(&opts.inputs)?,
            &cwd,
            pipeline.input.format,
        )
        .map_err(|e| config_error(format!("--input: {e:#}").replace("[input] paths: ", "")))?
    };
    Ok(sources)
}

/// This run's output directory (a rank's folder in a sharded run).
pub(super) fn output_dir(pipeline: &Pipeline, opts: &RunOptions) -> PathBuf {
    let base = base_output(pipeline, opts);
    match opts.rank {
        Some(rank) => rank.dir(&base),
        None => base,
    }
}

/// Hash of the config, the input list and the options that change output: a
/// checkpoint or rank marker of another run is refused.
pub(super) fn fingerprint(pipeline: &Pipeline, sources: &[Source], opts: &RunOptions) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update(pipeline.source_text.as_bytes());
    for s in sources {
        h.update(s.name.as_bytes());
        h.update(&io::source_bytes(s).to_le_bytes());
    }
    h.update(format!("{:?}", opts.limit).as_bytes());
    if let Some(rank) = opts.rank {
        h.update(format!("rank {} of {}", rank.rank, rank.world_size).as_bytes());
    }
    format!("{:032x}", h.digest128())
}

/// The fingerprint every rank of a sharded run shares (pipeline, inputs, world size).
pub(super) fn run_fingerprint(pipeline: &Pipeline, sources: &[Source], opts: &RunOptions) -> String {
    let all = RunOptions {
        rank: opts.rank.map(|r| Rank { rank: 0, ..r }),
        ..opts.clone()
    };
    fingerprint(pipeline, sources, &all)
}

impl RunOptions {
    /// A rank of a run split over several: its global stages' decisions come from
    /// the sharded steps (`src/sharded/steps.rs`).
    pub fn is_split(&self) -> bool {
        self.rank.is_some_and(|r| r.world_size > 1)
    }
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
        Some(url) => side_dir(&pipeline.path, url),
        None => base,
    }
}
