//! Where a sharded run keeps its step files: `ROOT/steps/stage-KKK/rank-RRRRR/`
//! (a rank's observed records and its decisions) and `ROOT/steps/stage-KKK/global/`
//! (buckets and clusters), `ROOT` being the output folder, or for an `s3://` output
//! a folder beside the pipeline file ([`side_dir`]) that every rank can see.

use std::path::{Path, PathBuf};

/// Folder of stage `k`'s steps.
pub fn stage_dir(out: &Path, k: usize) -> PathBuf {
    out.join("steps").join(format!("stage-{k:03}"))
}

/// Rank `rank`'s folder of stage `k`'s steps (its observed files and decisions).
pub fn rank_dir(out: &Path, k: usize, rank: usize) -> PathBuf {
    stage_dir(out, k).join(format!("rank-{rank:05}"))
}

/// Stage `k`'s folder for the bucket and cluster steps.
pub fn global_dir(out: &Path, k: usize) -> PathBuf {
    stage_dir(out, k).join("global")
}

/// The local folder of a run whose output is the `s3://` URL `url`: beside the pipeline
/// file (`slurm-HASH/`), where the Slurm scripts, logs and the steps' files go.
pub fn side_dir(pipeline_path: &Path, url: &str) -> PathBuf {
    let tag = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(url.as_bytes()));
    let abs = std::path::absolute(pipeline_path).unwrap_or_else(|_| pipeline_path.to_path_buf());
    abs.parent()
        .unwrap_or(Path::new("."))
        .join(format!("slurm-{tag}"))
}
