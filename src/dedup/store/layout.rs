//! Where a prepass's per-record files live and how ordinals map onto them: one
//! prepass folder, or several ranks' folders of a sharded run (their
//! `observed.json` and `sources.json`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// A run of ordinals: `len` records at local ordinals `local..` of `part`, which are
/// global ordinals `global..`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Segment {
    pub(super) part: usize,
    pub(super) local: u32,
    pub(super) global: u32,
    pub(super) len: u32,
}

/// Where a prepass's per-record files live and how ordinals map onto them.
///
/// A single-process run has one part (its prepass folder), and ordinals are
/// positions in it. A sharded run has one part per rank: each rank numbers the
/// records it observed in its own input order and writes `sources.json` (records
/// per input file: `{"run": fingerprint, "files": [[file index, count], ...]}`); the global ordinal of a record is
/// then the position a single-process run gives it (files in order), which is
/// what makes a sharded run's clusters identical to a single-process run's.
pub struct Layout {
    pub(super) parts: Vec<PathBuf>,
    /// Sorted band runs (`bands-NNNN.bin`) each part spilled (sharded runs).
    pub(super) band_runs: Vec<u32>,
    /// In global order.
    pub(super) segments: Vec<Segment>,
    pub(super) n: u32,
}

impl Layout {
    /// One folder holding `n` records in ordinal order.
    pub fn single(dir: &Path, n: u32) -> Layout {
        Layout {
            parts: vec![dir.to_path_buf()],
            band_runs: vec![0],
            segments: vec![Segment {
                part: 0,
                local: 0,
                global: 0,
                len: n,
            }],
            n,
        }
    }

    /// The ranks' prepass folders, each with `sources.json` and `observed.json`.
    pub fn ranks(dirs: &[PathBuf]) -> Result<Layout> {
        let mut all: Vec<(u64, usize, u32, u32)> = Vec::new(); // (file, part, local, len)
        let mut run: Option<String> = None;
        let mut band_runs = Vec::with_capacity(dirs.len());
        for (part, dir) in dirs.iter().enumerate() {
            let observed = load_observed(dir)?.with_context(|| {
                format!(
                    "{}: the observe step of this rank has not finished",
                    dir.display()
                )
            })?;
            band_runs.push(observed.band_runs);
            let path = dir.join("sources.json");
            let text = std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
            #[derive(Deserialize)]
            struct Sources {
                run: String,
                files: Vec<(u64, u32)>,
            }
            let Sources {
                run: fp,
                files: counts,
            } = serde_json::from_slice(&text).with_context(|| format!("{}: unreadable", path.display()))?;
            match &run {
                None => run = Some(fp),
                Some(r) if *r != fp => bail!(
                    "{}: observed by a different pipeline, input or world size than {}",
                    dir.display(),
                    dirs[0].display()
                ),
                Some(_) => {}
            }
            let mut local = 0u32;
            for (file, len) in counts {
                all.push((file, part, local, len));
                local = local
                    .checked_add(len)
                    .context("more than 4,294,967,295 records in one prepass")?;
            }
            if local != observed.records {
                bail!(
                    "{}: sources.json counts {local} records, observed.json {}",
                    dir.display(),
                    observed.records
                );
            }
        }
        all.sort_unstable();
        if let Some(w) = all.windows(2).find(|w| w[0].0 == w[1].0) {
            bail!("input file {} was observed by two ranks", w[0].0);
        }
        let mut global = 0u32;
        let mut segments = Vec::with_capacity(all.len());
        for (_, part, local, len) in all {
            if len == 0 {
                continue;
            }
            segments.push(Segment {
                part,
                local,
                global,
                len,
            });
            global = global
                .checked_add(len)
                .context("more than 4,294,967,295 records in one prepass")?;
        }
        Ok(Layout {
            parts: dirs.to_vec(),
            band_runs,
            segments,
            n: global,
        })
    }

    /// Records in all parts.
    pub fn records(&self) -> u32 {
        self.n
    }

    /// (part, local ordinal) of a global ordinal.
    pub(super) fn locate(&self, g: u32) -> (usize, u32) {
        let i = self.segments.partition_point(|s| s.global <= g) - 1;
        let s = self.segments[i];
        (s.part, s.local + (g - s.global))
    }

    /// A part's segments in local order, to map its local ordinals to global ones.
    pub(super) fn local_map(&self, part: usize) -> Vec<Segment> {
        let mut v: Vec<Segment> = self.segments.iter().filter(|s| s.part == part).copied().collect();
        v.sort_unstable_by_key(|s| s.local);
        v
    }
}

pub(super) fn to_global(map: &[Segment], local: u32) -> Result<u32> {
    let i = map.partition_point(|s| s.local <= local);
    let s = map
        .get(i.wrapping_sub(1))
        .filter(|s| local - s.local < s.len)
        .with_context(|| format!("band entry of record {local}, which sources.json does not count"))?;
    Ok(s.global + (local - s.local))
}

/// The bands of bucket step `part` of `parts`: a contiguous range.
pub fn band_range(bands: usize, part: usize, parts: usize) -> std::ops::Range<u32> {
    let lo = bands * part / parts;
    let hi = bands * (part + 1) / parts;
    lo as u32..hi as u32
}

/// Name of bucket step `part`'s output in the global folder.
pub fn buckets_file(part: usize) -> String {
    format!("buckets-{part:05}.bin")
}

/// `observed.json`: a rank's observe step is complete (sharded runs).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Observed {
    pub records: u32,
    pub band_runs: u32,
    pub num_perm: u32,
    pub bands: u32,
}

/// Read a rank's `observed.json`; `None` when its observe step has not finished.
pub fn load_observed(dir: &Path) -> Result<Option<Observed>> {
    let path = dir.join("observed.json");
    match std::fs::read(&path) {
        Ok(b) => Ok(Some(
            serde_json::from_slice(&b).with_context(|| format!("{}: unreadable", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context(format!("{}: cannot read", path.display()))),
    }
}
