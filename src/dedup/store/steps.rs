//! The sharded run's buckets and clusters steps over several ranks' prepass folders.

use std::collections::BinaryHeap;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use super::cluster::{cluster, RunReader};
use super::layout::{band_range, buckets_file, to_global, Layout, Segment};
use super::{create, open, read_u32, Entry, Params, Summary, BAND_MAGIC};

/// Bucket step (sharded runs): merge every rank's sorted band runs for the bands of
/// `part`, with ordinals made global, into one sorted `buckets-PPPPP.bin` (a band
/// file, written atomically) in `global_dir`.
pub fn bucket_step(
    layout: &Layout,
    params: &Params,
    part: usize,
    parts: usize,
    global_dir: &Path,
) -> Result<u64> {
    let range = band_range(params.bands, part, parts);
    let mut runs: Vec<(RunReader, usize)> = Vec::new();
    for (p, dir) in layout.parts.iter().enumerate() {
        for i in 0..layout.band_runs[p] {
            let path = dir.join(format!("bands-{i:04}.bin"));
            runs.push((RunReader::range(&path, range.clone())?, p));
        }
    }
    let maps: Vec<Vec<Segment>> = (0..layout.parts.len()).map(|p| layout.local_map(p)).collect();
    let tmp = global_dir.join(format!("{}.tmp", buckets_file(part)));
    let mut w = create(&tmp)?;
    w.write_all(BAND_MAGIC)?;
    w.write_all(&(params.bands as u32).to_le_bytes())?;
    w.write_all(&0u32.to_le_bytes())?;
    // Ordinals are remapped as entries are read: within a rank the map is
    // monotonic, so each run stays sorted and a k-way merge sorts the whole.
    let mut heap = BinaryHeap::new();
    let next = |runs: &mut Vec<(RunReader, usize)>, i: usize| -> Result<Option<Entry>> {
        let (r, p) = &mut runs[i];
        Ok(match r.next()? {
            Some((b, h, o)) => Some((b, h, to_global(&maps[*p], o)?)),
            None => None,
        })
    };
    for i in 0..runs.len() {
        if let Some(e) = next(&mut runs, i)? {
            heap.push(std::cmp::Reverse((e, i)));
        }
    }
    let mut written = 0u64;
    while let Some(std::cmp::Reverse(((b, h, o), i))) = heap.pop() {
        w.write_all(&b.to_le_bytes())?;
        w.write_all(&h.to_le_bytes())?;
        w.write_all(&o.to_le_bytes())?;
        written += 1;
        if let Some(e) = next(&mut runs, i)? {
            heap.push(std::cmp::Reverse((e, i)));
        }
    }
    w.into_inner()?.sync_all()?;
    let dst = global_dir.join(buckets_file(part));
    std::fs::rename(&tmp, &dst).with_context(|| format!("{}: cannot write", dst.display()))?;
    crate::io::writer::sync_dir(global_dir)?;
    Ok(written)
}

/// Cluster step (sharded runs): the bucket files of all `parts` -> clusters ->
/// `decisions.bin` and `prepared.json` in every rank's folder, `clusters.jsonl` and
/// `prepared.json` (written last) in `global_dir`.
pub fn cluster_step(layout: &Layout, params: &Params, parts: usize, global_dir: &Path) -> Result<Summary> {
    let mut runs = Vec::new();
    let band_runs = layout.band_runs.iter().sum();
    for part in 0..parts {
        let path = global_dir.join(buckets_file(part));
        let mut r = open(&path, BAND_MAGIC)?;
        let _bands = read_u32(&mut r)?;
        let _ = read_u32(&mut r)?;
        runs.push(RunReader::File(r, u32::MAX));
    }
    cluster(layout, global_dir, params, runs, band_runs)
}
