//! Checkpoints: after each unit the writer commits the unit's parts and then
//! `.curate/checkpoint.json` (the next unit, the books so far, each stage's saved
//! state in its own file), so a rerun after a crash resumes at the first unit not
//! marked done and produces the same bytes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::Pipeline;
use crate::error::config_error;
use crate::io::writer::write_atomic;
use crate::stage::PipelineStage;
use crate::stats::{RunStats, SourceStats, StageStats};

/// The resume point and the books so far, written atomically after each unit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Checkpoint {
    pub(super) version: u32,
    /// Hash of the config, the input list and the options that change output.
    pub(super) fingerprint: String,
    /// The next unit to do: source index and chunk within it.
    pub(super) next_source: usize,
    pub(super) next_chunk: u64,
    /// Input records consumed (for `--limit`).
    pub(super) records_read: u64,
    pub(super) stats: RunStats,
    /// Per stage: file under `.curate/` holding its saved state, if any.
    pub(super) states: Vec<Option<String>>,
    /// Counts of the source being read, carried across its units.
    pub(super) open_source: SourceStats,
}

pub(super) const CHECKPOINT_VERSION: u32 = 1;

/// The run's own folder for checkpoints, stage states and prepasses.
pub(super) fn state_dir(out: &Path) -> PathBuf {
    out.join(".curate")
}

/// Write the stage states and then the checkpoint naming them, atomically; old state files go.
pub(super) fn commit_checkpoint(out: &Path, cp: &mut Checkpoint, states: Vec<Option<Vec<u8>>>) -> Result<()> {
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

/// `--overwrite`: remove a previous run's outputs and state.
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

/// Remove half-written `*.tmp` files of a crashed run.
fn remove_tmp_files(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().ends_with(".tmp") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Make the output folders (after `--overwrite` removed a previous run) and clear
/// the half-written files a crash left.
/// An advisory lock on an output directory, held for the whole run (released by
/// the kernel when the process ends, so a `kill -9` leaves nothing to clean up).
pub(super) struct OutputLock {
    _file: std::fs::File,
}

/// Lock `out` for this run: a second `curate run` into the same directory would
/// interleave parts and checkpoints, so it is refused with the holder's pid.
pub(super) fn lock_output(out: &Path) -> Result<OutputLock> {
    use std::io::{Seek, Write};
    std::fs::create_dir_all(out)
        .with_context(|| format!("{}: cannot create output directory", out.display()))?;
    let path = out.join(".lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("{}: cannot open the lock file", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            return Err(crate::error::config_error(format!(
                "{}: another curate run (pid {}) is writing to this output directory; wait for it or use another --output",
                out.display(),
                holder.trim()
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("{}: cannot lock", path.display()));
        }
    }
    file.set_len(0)?;
    file.rewind()?;
    write!(file, "{}", std::process::id())?;
    Ok(OutputLock { _file: file })
}

pub(super) fn prepare_output(out: &Path, overwrite: bool) -> Result<()> {
    if overwrite {
        remove_previous(out)?;
    }
    for sub in ["kept", "rejected", ".curate"] {
        std::fs::create_dir_all(out.join(sub))
            .with_context(|| format!("{}: cannot create output directory", out.join(sub).display()))?;
    }
    remove_tmp_files(&out.join("kept"));
    remove_tmp_files(&out.join("rejected"));
    remove_tmp_files(&state_dir(out));
    Ok(())
}

/// The run's checkpoint: a fresh one, or the one on disk with every stage's state
/// restored (a checkpoint of another run is a config error). `.1`: resuming.
pub(super) fn open(
    out: &Path,
    fp: &str,
    pipeline: &Pipeline,
    stage_names: &[String],
    stages: &mut [PipelineStage],
    quiet: bool,
) -> Result<(Checkpoint, bool)> {
    let fp = fp.to_string();
    let cp_path = state_dir(out).join("checkpoint.json");
    let resuming = cp_path.exists();
    let cp = if resuming {
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
                let path = state_dir(out).join(name);
                let bytes = std::fs::read(&path)
                    .with_context(|| format!("{}: cannot read saved stage state", path.display()))?;
                stage
                    .load_state(&bytes)
                    .with_context(|| format!("stage `{}`: cannot restore state", stage_names[i + 1]))?;
            }
        }
        if !quiet && !cp.stats.complete {
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
    Ok((cp, resuming))
}
