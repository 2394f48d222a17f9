//! The prepass of `minhash_dedup`: signatures and band entries on disk, an
//! external sort of the band entries, union-find clusters over every verified
//! candidate pair, the keep rule, and one decision per record.
//!
//! The stage (`src/stages/minhash_dedup.rs`) computes signatures; this module
//! owns the files, so that the sharded (Slurm) run can split the same steps over
//! machines: signatures per rank -> band entries sorted per band range ->
//! clusters (union-find) -> decisions applied per rank.
//!
//! Files: [`observe`] writes the per-record files, [`layout`] maps ordinals over
//! ranks, [`cluster`] is the union-find and keep rule, [`steps`] the sharded
//! buckets and clusters steps, [`decisions`] reads the result back.
//!
//! ## Files (all little-endian, in the stage's prepass folder `.curate/prepass-NNN/`)
//!
//! A record's *ordinal* is its position among the records that reached the stage
//! (0-based, input order). Every file below is written in ordinal order.
//!
//! | file | layout |
//! |---|---|
//! | `signatures.bin` | `"CURSIG01"`, u32 `num_perm`, u32 0; then per ordinal `num_perm` x u32 minimums (all `0xFFFFFFFF` for an exempt record). Fixed stride: record `i` is at `16 + i * num_perm * 4` |
//! | `records.bin` | `"CURREC01"`; then per ordinal: u8 flags (1 = exempt), u32 characters of the compared text, f64 quality value (NaN = none), u32 id length, id bytes (UTF-8) |
//! | `bands-NNNN.bin` | `"CURBND01"`, u32 bands, u32 0; then 16-byte entries u32 band, u64 band hash, u32 ordinal, sorted by (band, hash, ordinal). One file per spilled run (when `memory_limit` is reached); the runs are merged while clustering |
//! | `decisions.bin` | `"CURDEC01"`; then per ordinal: u64 xxh3 of the id, u8 kind (0 unique, 1 kept with duplicates, 2 duplicate, 3 exempt), u8 shown in the report, u32 cluster, u32 cluster size, f32 similarity to the kept record (0 when not a duplicate), u32 kept-id length, kept-id bytes (duplicates only) |
//! | `clusters.jsonl` | one line per cluster with more than one member: `{cluster, size, kept_id, members: [{id, similarity}]}` in cluster order |
//! | `prepared.json` | the summary (counts, histogram, largest clusters); written last and atomically: its presence marks the prepass complete |
//!
//! A cluster's number is the ordinal of its first member, so it does not depend on
//! the keep rule or the thread count.
//!
//! ## Clustering
//!
//! Band entries are sorted by (band, hash, ordinal); equal (band, hash) runs are
//! LSH buckets. In a bucket each record is compared with up to
//! [`BUCKET_WINDOW`] earlier members that are not yet in its cluster; a pair whose
//! estimated Jaccard reaches the threshold is united. The window bounds the work
//! in huge buckets (a template repeated 100k times): there every record finds an
//! earlier copy at once, so no pair that matters is missed in practice. Union
//! links the larger root to the smaller, so a root is always the first member.
//!
//! ## Memory
//!
//! While observing: the band entries buffer (16 bytes per entry, `bands` entries
//! per record) up to `memory_limit`, then spilled as a sorted run. While
//! clustering: ~29 bytes per record (parent, size, kept, characters, quality, flag,
//! similarity), the merge buffers, a window of signatures, and the ids of records
//! in clusters with duplicates. Signatures are held in memory when all of them
//! fit in `memory_limit` (4 x `num_perm` bytes per record), else read from
//! `signatures.bin` by offset (the page cache does the rest). With `verify =
//! "segments"` and `template_records`, the counts of sampled-character windows
//! (`src/dedup/common.rs`): 250-500 bytes per record, at most `memory_limit / 4`.

mod cluster;
mod decisions;
mod layout;
mod observe;
mod steps;

use std::fs::File;
use std::io::{BufReader, BufWriter, Read};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

pub use decisions::{Decision, DecisionKind, DecisionReader};
pub use layout::{band_range, buckets_file, load_observed, Layout, Observed};
pub use observe::Observer;
pub use steps::{bucket_step, cluster_step};

/// Earlier bucket members each record is compared with (see the module docs).
pub const BUCKET_WINDOW: usize = 64;

pub(super) const SIG_MAGIC: &[u8; 8] = b"CURSIG01";
pub(super) const REC_MAGIC: &[u8; 8] = b"CURREC01";
pub(super) const BAND_MAGIC: &[u8; 8] = b"CURBND01";
pub(super) const DEC_MAGIC: &[u8; 8] = b"CURDEC01";

/// Which record of a cluster is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeepRule {
    /// The first in input order.
    #[default]
    First,
    /// The one with the most characters in the compared text (ties: the first).
    Longest,
    /// The one with the highest numeric value at `quality_meta` (ties and missing values: the first).
    Quality,
}

/// What the prepass needs to know from the stage's config.
#[derive(Debug, Clone)]
pub struct Params {
    pub num_perm: usize,
    pub bands: usize,
    pub threshold: f64,
    pub keep: KeepRule,
    /// Bytes of band entries held before a sorted run is spilled.
    pub memory_limit: u64,
    /// Largest clusters shown in the report, and members shown per cluster.
    pub show_clusters: usize,
    /// How a candidate pair is verified: `None`, estimated Jaccard of the whole
    /// signature at least `threshold`; `Some`, the rules of
    /// [`crate::dedup::minhash::Verify`] on verification sketches (`num_perm` is then
    /// the sketch width).
    pub verify: Option<crate::dedup::minhash::Verify>,
    pub show_members: usize,
}

/// One of the largest clusters, for the report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BigCluster {
    pub cluster: u32,
    pub size: u32,
    pub kept_id: String,
}

/// The prepass result (`prepared.json`), also the stage's `stats.json` summary.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub records: u64,
    pub exempt: u64,
    pub clusters: u64,
    pub clusters_with_duplicates: u64,
    pub duplicates: u64,
    /// Clusters by size: `1`, `2`, `3`, `4`, `5-9`, `10-99`, `100+`.
    pub cluster_sizes: Vec<(String, u64)>,
    pub largest_cluster: u32,
    pub largest: Vec<BigCluster>,
    /// Candidate pairs compared, and those at or above the threshold.
    pub pairs_compared: u64,
    pub pairs_similar: u64,
    pub band_runs: u32,
    pub keep: KeepRule,
}

/// Band entry: (band, hash, ordinal); the derived order is the file order.
pub(super) type Entry = (u32, u64, u32);

pub(super) fn create(path: &Path) -> Result<BufWriter<File>> {
    let f = File::create(path).with_context(|| format!("{}: cannot create", path.display()))?;
    Ok(BufWriter::with_capacity(1 << 20, f))
}

pub(super) fn open(path: &Path, magic: &[u8; 8]) -> Result<BufReader<File>> {
    let f = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut m = [0u8; 8];
    r.read_exact(&mut m)
        .with_context(|| format!("{}: too short", path.display()))?;
    if &m != magic {
        bail!(
            "{}: not a {} file",
            path.display(),
            String::from_utf8_lossy(magic)
        );
    }
    Ok(r)
}

pub(super) fn read_u32(r: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

pub(super) fn read_u64(r: &mut impl Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// Round to 3 decimals (what `meta` and `clusters.jsonl` show).
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Load a finished prepass's summary (`prepared.json`: minhash's [`Summary`], span
/// dedup's own); an error when it did not finish.
pub fn load_summary<T: serde::de::DeserializeOwned>(dir: &Path) -> Result<T> {
    let path = dir.join("prepared.json");
    let text = std::fs::read(&path).with_context(|| {
        format!(
            "{}: prepass results missing; rerun with --overwrite",
            path.display()
        )
    })?;
    serde_json::from_slice(&text).with_context(|| format!("{}: unreadable", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(keep: KeepRule, memory_limit: u64) -> Params {
        Params {
            num_perm: 8,
            bands: 8,
            threshold: 0.5,
            keep,
            memory_limit,
            show_clusters: 10,
            show_members: 3,
            verify: None,
        }
    }

    /// Signatures by hand: each band is one value, so records sharing a value share that band.
    /// (id, signature or exempt, characters, quality)
    type TestRecord<'a> = (&'a str, Option<[u32; 8]>, u32, Option<f64>);

    fn run(keep: KeepRule, memory_limit: u64, recs: &[TestRecord]) -> (Summary, Vec<Decision>, String) {
        let tmp = tempfile::tempdir().unwrap();
        let mut o = Observer::create(tmp.path(), params(keep, memory_limit)).unwrap();
        for (id, sig, chars, q) in recs {
            let keys: Option<Vec<u64>> = sig.map(|s| s.iter().map(|&v| v as u64).collect());
            o.add(
                id,
                sig.as_ref().map(|s| (&s[..], &keys.as_ref().unwrap()[..])),
                *chars,
                *q,
            )
            .unwrap();
        }
        let sum = o.finish().unwrap();
        assert_eq!(load_summary::<Summary>(tmp.path()).unwrap(), sum);
        let mut r = DecisionReader::open(tmp.path(), 0).unwrap();
        let mut ds = Vec::new();
        while let Some(d) = r.next_decision().unwrap() {
            ds.push(d);
        }
        let clusters = std::fs::read_to_string(tmp.path().join("clusters.jsonl")).unwrap();
        (sum, ds, clusters)
    }

    const A: [u32; 8] = [1, 2, 3, 4, 5, 6, 7, 8];
    // B shares 5/8 with A; C shares 5/8 with B but only 2/8 with A: a chain.
    const B: [u32; 8] = [1, 2, 3, 4, 5, 16, 17, 18];
    const C: [u32; 8] = [21, 22, 23, 4, 5, 16, 17, 18];
    const D: [u32; 8] = [31, 32, 33, 34, 35, 36, 37, 38];

    #[test]
    fn chains_are_one_cluster_and_keep_rules_choose() {
        let recs = [
            ("c", Some(C), 10, Some(0.2)),
            ("d", Some(D), 50, None),
            ("a", Some(A), 30, Some(0.9)),
            ("x", None, 0, None),
            ("b", Some(B), 40, None),
        ];
        let (sum, ds, clusters) = run(KeepRule::First, 1 << 20, &recs);
        assert_eq!(sum.clusters_with_duplicates, 1);
        assert_eq!(sum.duplicates, 2);
        assert_eq!(sum.exempt, 1);
        assert_eq!(sum.largest_cluster, 3);
        let kinds: Vec<DecisionKind> = ds.iter().map(|d| d.kind).collect();
        use DecisionKind::*;
        assert_eq!(kinds, [Kept, Unique, Duplicate, Exempt, Duplicate]);
        assert_eq!(ds[2].kept_id, "c");
        assert_eq!(ds[2].cluster, 0);
        // a vs c: 2 of 8 equal, reported as it is (joined through b).
        assert_eq!(ds[2].similarity, 0.25);
        assert_eq!(ds[4].similarity, 0.625);
        assert!(clusters.starts_with(r#"{"cluster":0,"size":3,"kept_id":"c","members":[{"id":"c","similarity":1.0},{"id":"a","similarity":0.25},{"id":"b""#), "{clusters}");

        let (_, ds, _) = run(KeepRule::Longest, 1 << 20, &recs);
        assert_eq!(ds[4].kind, Kept);
        assert_eq!(ds[0].kept_id, "b");
        let (_, ds, _) = run(KeepRule::Quality, 1 << 20, &recs);
        assert_eq!(ds[2].kind, Kept);
        assert_eq!(ds[4].kept_id, "a");
    }

    #[test]
    fn spilled_runs_give_the_same_result() {
        let mut recs = Vec::new();
        let ids: Vec<String> = (0..200).map(|i| format!("r{i}")).collect();
        for i in 0..200u32 {
            // 20 groups; members share 6 of 8 values with their group.
            let g = i % 20;
            let mut s = [0u32; 8];
            for (k, v) in s.iter_mut().enumerate() {
                *v = if k < 6 {
                    g * 100 + k as u32
                } else {
                    10_000 + i * 8 + k as u32
                };
            }
            recs.push((ids[i as usize].as_str(), Some(s), i, None));
        }
        let mem = run(KeepRule::First, 1 << 30, &recs);
        let spilled = run(KeepRule::First, 16 * 64, &recs);
        assert_eq!(mem.0.band_runs, 0);
        assert!(spilled.0.band_runs > 10, "{}", spilled.0.band_runs);
        assert_eq!(mem.1, spilled.1);
        assert_eq!(mem.2, spilled.2);
        assert_eq!(mem.0.clusters_with_duplicates, 20);
        assert_eq!(mem.0.duplicates, 180);
    }
}
