//! One rank of a sharded run and its completion marker.
//!
//! The rank contract: input file `i` of the sorted input list belongs to rank
//! `i % N`; rank `R` writes a complete run directory `OUT/ranks/rank-RRRRR/` (parts
//! named by the *global* file index, its own checkpoint, `stats.json`,
//! `report.html`, `sections.json`) and, last and atomically, the marker
//! `OUT/ranks/rank-RRRRR.done`. A rerun of a marked rank returns at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::error::config_error;
use crate::io::remote::{self, Bucket};

/// One rank of a sharded run: input file `i` (in sorted input order) belongs to
/// rank `i % world_size`. Part names keep the global file index, so the parts of
/// all ranks together are named exactly as a single-process run names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rank {
    pub rank: usize,
    pub world_size: usize,
}

impl Rank {
    /// Check `rank < world_size` and `world_size >= 1`.
    pub fn new(rank: usize, world_size: usize) -> Result<Rank> {
        if world_size == 0 || rank >= world_size {
            return Err(config_error(format!(
                "--rank {rank} --world-size {world_size}: need 0 <= rank < world-size"
            )));
        }
        Ok(Rank { rank, world_size })
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

/// The completion markers found under `out/ranks/` (a folder or an `s3://` prefix), by rank.
pub fn markers(out: &Path) -> Result<BTreeMap<usize, RankMarker>> {
    if let Some(url) = out.to_str().filter(|u| remote::is_remote(u)) {
        let (bucket, prefix) = Bucket::for_url(url)?;
        let mut found = BTreeMap::new();
        for (key, _) in bucket.list(&remote::join_key(&prefix, "ranks"))? {
            let name = key.rsplit('/').next().unwrap_or("");
            if name.starts_with("rank-") && name.ends_with(".done") {
                if let Some(bytes) = bucket.get_small(&key)? {
                    let m: RankMarker = serde_json::from_slice(&bytes)
                        .with_context(|| format!("s3://{key}: unreadable marker"))?;
                    found.insert(m.rank, m);
                }
            }
        }
        return Ok(found);
    }
    let dir = out.join("ranks");
    let mut found = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Ok(found);
    };
    for e in rd {
        let e = e.with_context(|| format!("{}: cannot list", dir.display()))?;
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with("rank-") && name.ends_with(".done") {
            if let Some(m) = read_marker(&e.path())? {
                found.insert(m.rank, m);
            }
        }
    }
    Ok(found)
}
