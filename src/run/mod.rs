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
//! A global stage that asks for a prepass gets one before the main pass of a
//! fresh run ([`prepass`]). A resumed run (one with a checkpoint) reuses it.
//!
//! Before the main pass the input is scanned once for the output's one schema
//! ([`scan`]), so every part is written in it.
//!
//! Files: [`options`] (overrides, inputs, output, fingerprint), [`read`] (reader
//! thread, parsing), [`scan`] (the output schema), [`exec`] (stages on batches, the
//! main pass), [`write`] (writer thread), [`checkpoint`] (resume state), [`prepass`]; this file holds
//! the run from start to finish and the `s3://` staging around it.

mod checkpoint;
pub mod clock;
mod exec;
pub mod options;
mod prepass;
pub mod read;
mod scan;
mod spill;
mod tally;
mod write;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};

use crate::config::Pipeline;
use crate::error::config_error;
use crate::io::remote;
use crate::io::writer::{sync_dir, write_atomic};
use crate::sharded::rank::{read_marker, RankMarker};
use crate::stage::FinishContext;
use crate::stats::RunStats;

use checkpoint::{state_dir, Checkpoint};
use options::{fingerprint, input_sources};
pub use options::{plan, steps_root, Plan, RunOptions};
pub use prepass::{observe_step, use_sharded_prepasses};
pub use read::{map_records, parse_record};

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
    let marker_key = opts.rank.map(|s| remote::join_key(&prefix, &s.rel_marker()));
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
            let sub = opts.rank.map(|s| format!("{}/", s.rel_dir())).unwrap_or_default();
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
    if let Some(s) = opts.rank {
        let _ = std::fs::remove_file(s.marker(&staging));
    }
    let stats = run_local(&local_pipeline, &local_opts)?;
    let (local_dir, key_prefix) = match opts.rank {
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
    if let (Some(key), Some(s)) = (marker_key, opts.rank) {
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
    let cpu_started = clock::process_cpu_seconds();
    let Plan {
        sources,
        output_dir: out,
        mut stages,
    } = plan(pipeline, opts)?;
    let fp = fingerprint(pipeline, &sources, opts);
    prepass::shard_stages(pipeline, &mut stages, opts)?;
    if let Some(stats) = finished_rank(pipeline, opts, &out, &fp)? {
        return Ok(stats);
    }
    let _lock = checkpoint::lock_output(&out)?;
    checkpoint::prepare_output(&out, opts.overwrite)?;
    let stage_names: Vec<String> = std::iter::once("read".to_string())
        .chain(pipeline.stages.iter().map(|s| s.name.clone()))
        .collect();
    let (mut cp, resuming) = checkpoint::open(&out, &fp, pipeline, &stage_names, &mut stages, opts.quiet)?;
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
    // Done before the first checkpoint, so a run with a checkpoint has them on disk.
    prepass::open_prepasses(pipeline, opts, &sources, &out, &mut stages, resuming, &pool)?;
    // The records as they reached the last global stage were spilled by its
    // prepass: the main pass starts there. A fresh run takes the earlier stages'
    // states from the spill (a resumed one has them from its checkpoint).
    let mut prepass_books = Vec::new();
    let spill = match prepass::main_pass_spill(pipeline, opts, &out, &stages)? {
        // No record spilled (the global stage is the first): read the input again.
        Some((job, _, meta)) if meta.reread_input => {
            prepass_books = job.end_books;
            None
        }
        Some((job, k, meta)) => {
            if !resuming {
                for (i, state) in prepass::spill_states(&job, &meta)? {
                    stages[i]
                        .load_state(&state)
                        .with_context(|| format!("stage `{}`: cannot restore state", stage_names[i + 1]))?;
                }
            }
            Some((job, k))
        }
        None => None,
    };
    let schema = scan::output_schema(pipeline, opts, &sources, &stages, &pool)?;
    write_atomic(
        &out.join("features.json"),
        &serde_json::to_vec_pretty(&schema.features_json())?,
    )?;
    let prior_seconds = cp.stats.seconds;
    let prior_cpu = cp.stats.cpu_seconds;
    let job = exec::MainPass {
        pipeline,
        opts,
        sources: &sources,
        out: &out,
        stages: &mut stages,
        stage_names: &stage_names,
        pool: &pool,
        started,
        cpu_started,
        spill,
        prepass_books,
        schema: &schema,
    };
    exec::main_pass(job, &mut cp)?;
    let cp_path = state_dir(&out).join("checkpoint.json");

    let mut stats = cp.stats.clone();
    let finish = FinishContext {
        output_dir: out.to_path_buf(),
        kept_parts: stats.kept_parts.iter().map(|p| out.join(p)).collect(),
        quiet: opts.quiet,
        sharded: opts.rank.is_some_and(|r| r.world_size > 1),
    };
    for (i, s) in stages.iter_mut().enumerate() {
        // A stage's work after the last record (a fine-tune, a cluster file) counts as
        // its own time; nothing else runs then, so the process CPU is the stage's.
        let (wall, cpu) = (Instant::now(), clock::process_cpu_seconds());
        s.finish(&finish)
            .with_context(|| format!("stage `{}`: finish failed", stage_names[i + 1]))?;
        stats.stages[i + 1].summary = s.summary();
        stats.stages[i + 1].seconds += wall.elapsed().as_secs_f64();
        stats.stages[i + 1].cpu_seconds += clock::process_cpu_seconds() - cpu;
    }
    stats.stages[0].input = stats.input;
    stats.stages[0].kept = stats.input - stats.stages[0].dropped;
    stats.complete = true;
    stats.seconds = prior_seconds + started.elapsed().as_secs_f64();
    stats.cpu_seconds = prior_cpu + clock::process_cpu_seconds() - cpu_started;
    stats.check_accounting()?;
    let sections: Vec<(String, String)> = stages
        .iter()
        .enumerate()
        .filter_map(|(i, s)| Some((stage_names[i + 1].clone(), s.report_html()?)))
        .collect();
    write_atomic(&out.join("stats.json"), &serde_json::to_vec_pretty(&stats)?)?;
    write_atomic(
        &out.join("report.html"),
        crate::report::render(&stats, pipeline, &sections)?.as_bytes(),
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
    prepass::remove_spills(pipeline, opts, &out, &stages);
    if let Some(shard) = opts.rank {
        // The merged report of a sharded run needs each rank's stage sections.
        write_atomic(&out.join("sections.json"), &serde_json::to_vec(&sections)?)?;
        let base = opts.output.clone().unwrap_or_else(|| pipeline.output_dir());
        let done = RankMarker {
            rank: shard.rank,
            world_size: shard.world_size,
            fingerprint: fp.to_string(),
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

/// A rank whose completion marker is there: its stats (a marker of another run is
/// a config error); `--overwrite` removes the marker first.
fn finished_rank(pipeline: &Pipeline, opts: &RunOptions, out: &Path, fp: &str) -> Result<Option<RunStats>> {
    let Some(shard) = opts.rank else { return Ok(None) };
    let base = opts.output.clone().unwrap_or_else(|| pipeline.output_dir());
    let marker = shard.marker(&base);
    if opts.overwrite && marker.exists() {
        std::fs::remove_file(&marker).with_context(|| format!("{}: cannot remove", marker.display()))?;
    }
    let Some(done) = read_marker(&marker)? else {
        return Ok(None);
    };
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
    Ok(Some(serde_json::from_slice(&text)?))
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
