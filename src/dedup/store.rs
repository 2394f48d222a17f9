//! The prepass of `minhash_dedup`: signatures and band entries on disk, an
//! external sort of the band entries, union-find clusters over every verified
//! candidate pair, the keep rule, and one decision per record.
//!
//! The stage (`src/stages/minhash_dedup.rs`) computes signatures; this module
//! owns the files, so that the sharded (Slurm) run can split the same steps over
//! machines: signatures per rank -> band entries sorted per band range ->
//! clusters (union-find) -> decisions applied per rank.
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
//! `signatures.bin` by offset (the page cache does the rest).

use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;
use xxhash_rust::xxh3::xxh3_64;

/// Earlier bucket members each record is compared with (see the module docs).
pub const BUCKET_WINDOW: usize = 64;

const SIG_MAGIC: &[u8; 8] = b"CURSIG01";
const REC_MAGIC: &[u8; 8] = b"CURREC01";
const BAND_MAGIC: &[u8; 8] = b"CURBND01";
const DEC_MAGIC: &[u8; 8] = b"CURDEC01";

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
type Entry = (u32, u64, u32);

fn create(path: &Path) -> Result<BufWriter<File>> {
    let f = File::create(path).with_context(|| format!("{}: cannot create", path.display()))?;
    Ok(BufWriter::with_capacity(1 << 20, f))
}

fn open(path: &Path, magic: &[u8; 8]) -> Result<BufReader<File>> {
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

fn read_u32(r: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(r: &mut impl Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// Collects what `observe` sees: writes signatures and records, buffers band entries.
pub struct Observer {
    dir: PathBuf,
    params: Params,
    sigs: BufWriter<File>,
    recs: BufWriter<File>,
    entries: Vec<Entry>,
    max_entries: usize,
    runs: u32,
    n: u32,
}

impl Observer {
    /// Start a prepass in an empty folder.
    pub fn create(dir: &Path, params: Params) -> Result<Observer> {
        let mut sigs = create(&dir.join("signatures.bin"))?;
        sigs.write_all(SIG_MAGIC)?;
        sigs.write_all(&(params.num_perm as u32).to_le_bytes())?;
        sigs.write_all(&0u32.to_le_bytes())?;
        let mut recs = create(&dir.join("records.bin"))?;
        recs.write_all(REC_MAGIC)?;
        let max_entries = ((params.memory_limit / 16) as usize).max(params.bands.max(1));
        Ok(Observer {
            dir: dir.to_path_buf(),
            params,
            sigs,
            recs,
            entries: Vec::new(),
            max_entries,
            runs: 0,
            n: 0,
        })
    }

    /// Add the next record: its signature and band hashes (`None`: exempt).
    pub fn add(
        &mut self,
        id: &str,
        sig: Option<(&[u32], &[u64])>,
        chars: u32,
        quality: Option<f64>,
    ) -> Result<()> {
        if self.n == u32::MAX {
            bail!("minhash_dedup: more than 4,294,967,294 records in one prepass");
        }
        let p = self.params.num_perm;
        match sig {
            Some((s, keys)) => {
                if s.len() != p || keys.len() != self.params.bands {
                    bail!(
                        "minhash_dedup: signature of {} values / {} bands",
                        s.len(),
                        keys.len()
                    );
                }
                for v in s {
                    self.sigs.write_all(&v.to_le_bytes())?;
                }
                for (b, &k) in keys.iter().enumerate() {
                    self.entries.push((b as u32, k, self.n));
                }
            }
            None => {
                for _ in 0..p {
                    self.sigs.write_all(&u32::MAX.to_le_bytes())?;
                }
            }
        }
        self.recs.write_all(&[u8::from(sig.is_none())])?;
        self.recs.write_all(&chars.to_le_bytes())?;
        self.recs.write_all(&quality.unwrap_or(f64::NAN).to_le_bytes())?;
        self.recs.write_all(&(id.len() as u32).to_le_bytes())?;
        self.recs.write_all(id.as_bytes())?;
        self.n += 1;
        if self.entries.len() >= self.max_entries {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> Result<()> {
        self.entries.sort_unstable();
        let path = self.dir.join(format!("bands-{:04}.bin", self.runs));
        let mut w = create(&path)?;
        w.write_all(BAND_MAGIC)?;
        w.write_all(&(self.params.bands as u32).to_le_bytes())?;
        w.write_all(&0u32.to_le_bytes())?;
        for &(b, h, o) in &self.entries {
            w.write_all(&b.to_le_bytes())?;
            w.write_all(&h.to_le_bytes())?;
            w.write_all(&o.to_le_bytes())?;
        }
        w.into_inner()?.sync_all()?;
        self.entries.clear();
        self.runs += 1;
        Ok(())
    }

    /// End a rank's observe step (sharded runs): flush the files, spill every band
    /// entry left as a sorted run, and write `observed.json` last (atomically).
    pub fn close(mut self) -> Result<u32> {
        if !self.entries.is_empty() {
            self.spill()?;
        }
        self.sigs.flush()?;
        self.sigs.get_ref().sync_all()?;
        self.recs.flush()?;
        self.recs.get_ref().sync_all()?;
        let done = Observed {
            records: self.n,
            band_runs: self.runs,
            num_perm: self.params.num_perm as u32,
            bands: self.params.bands as u32,
        };
        crate::io::writer::write_atomic(
            &self.dir.join("observed.json"),
            &serde_json::to_vec_pretty(&done)?,
        )?;
        Ok(self.n)
    }

    /// Cluster, decide and write `decisions.bin`, `clusters.jsonl` and `prepared.json`.
    pub fn finish(mut self) -> Result<Summary> {
        self.sigs.flush()?;
        self.recs.flush()?;
        let mut runs: Vec<RunReader> = Vec::new();
        if self.runs > 0 && !self.entries.is_empty() {
            self.spill()?;
        }
        for i in 0..self.runs {
            let path = self.dir.join(format!("bands-{i:04}.bin"));
            let mut r = open(&path, BAND_MAGIC)?;
            let _bands = read_u32(&mut r)?;
            let _ = read_u32(&mut r)?;
            runs.push(RunReader::File(r, u32::MAX));
        }
        if self.runs == 0 {
            self.entries.sort_unstable();
            runs.push(RunReader::Mem(std::mem::take(&mut self.entries).into_iter()));
        }
        let layout = Layout::single(&self.dir, self.n);
        cluster(&layout, &self.dir, &self.params, runs, self.runs)
    }
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

/// A run of ordinals: `len` records at local ordinals `local..` of `part`, which are
/// global ordinals `global..`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    part: usize,
    local: u32,
    global: u32,
    len: u32,
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
    parts: Vec<PathBuf>,
    /// Sorted band runs (`bands-NNNN.bin`) each part spilled (sharded runs).
    band_runs: Vec<u32>,
    /// In global order.
    segments: Vec<Segment>,
    n: u32,
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
    fn locate(&self, g: u32) -> (usize, u32) {
        let i = self.segments.partition_point(|s| s.global <= g) - 1;
        let s = self.segments[i];
        (s.part, s.local + (g - s.global))
    }

    /// A part's segments in local order, to map its local ordinals to global ones.
    fn local_map(&self, part: usize) -> Vec<Segment> {
        let mut v: Vec<Segment> = self.segments.iter().filter(|s| s.part == part).copied().collect();
        v.sort_unstable_by_key(|s| s.local);
        v
    }
}

fn to_global(map: &[Segment], local: u32) -> Result<u32> {
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

/// A sorted run of band entries: in memory (nothing spilled) or a `bands-NNNN.bin` file.
/// A file run ends at the first entry of band `end` or later.
enum RunReader {
    Mem(std::vec::IntoIter<Entry>),
    File(BufReader<File>, u32),
}

impl RunReader {
    /// The entries of `bands` in a band file: the start is found by binary search
    /// (entries have a fixed size and are sorted by band first).
    fn range(path: &Path, bands: std::ops::Range<u32>) -> Result<RunReader> {
        let mut r = open(path, BAND_MAGIC)?;
        let _bands = read_u32(&mut r)?;
        let _ = read_u32(&mut r)?;
        let file = r.get_ref();
        let len = file.metadata()?.len();
        let count = len.saturating_sub(16) / 16;
        let band_at = |i: u64| -> Result<u32> {
            let mut b = [0u8; 4];
            file.read_exact_at(&mut b, 16 + i * 16)
                .with_context(|| format!("{}: cannot read entry {i}", path.display()))?;
            Ok(u32::from_le_bytes(b))
        };
        let (mut lo, mut hi) = (0u64, count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if band_at(mid)? < bands.start {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        r.seek(SeekFrom::Start(16 + lo * 16))?;
        Ok(RunReader::File(r, bands.end))
    }

    fn next(&mut self) -> Result<Option<Entry>> {
        match self {
            RunReader::Mem(it) => Ok(it.next()),
            RunReader::File(r, end) => {
                let mut b = [0u8; 16];
                match r.read_exact(&mut b) {
                    Ok(()) => {
                        let e = (
                            u32::from_le_bytes(b[0..4].try_into()?),
                            u64::from_le_bytes(b[4..12].try_into()?),
                            u32::from_le_bytes(b[12..16].try_into()?),
                        );
                        Ok((e.0 < *end).then_some(e))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }
}

/// Signatures by global ordinal, read from each part's `signatures.bin`: held in
/// memory when they fit in `memory_limit` (no read per comparison), else read by
/// offset (the page cache does the rest).
struct SigFile<'a> {
    layout: &'a Layout,
    files: Vec<File>,
    num_perm: usize,
    buf: Vec<u8>,
    /// Per part, every signature value after the header, when held in memory.
    mem: Option<Vec<Vec<u32>>>,
}

impl<'a> SigFile<'a> {
    fn open(layout: &'a Layout, num_perm: usize, memory_limit: u64) -> Result<SigFile<'a>> {
        let files = layout
            .parts
            .iter()
            .map(|d| {
                let path = d.join("signatures.bin");
                File::open(&path).with_context(|| format!("{}: cannot open", path.display()))
            })
            .collect::<Result<Vec<_>>>()?;
        let total: u64 = files
            .iter()
            .map(|f| f.metadata().map(|m| m.len()).unwrap_or(u64::MAX))
            .sum();
        let mem = if total <= memory_limit {
            let mut parts = Vec::with_capacity(files.len());
            for (f, d) in files.iter().zip(&layout.parts) {
                let mut bytes = Vec::new();
                (&*f)
                    .read_to_end(&mut bytes)
                    .with_context(|| format!("{}: cannot read signatures.bin", d.display()))?;
                let body = bytes.get(16..).unwrap_or_default();
                parts.push(
                    body.chunks_exact(4)
                        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                );
            }
            Some(parts)
        } else {
            None
        };
        Ok(SigFile {
            layout,
            files,
            num_perm,
            buf: vec![0u8; num_perm * 4],
            mem,
        })
    }

    fn read(&mut self, ord: u32, out: &mut [u32]) -> Result<()> {
        let (part, local) = self.layout.locate(ord);
        if let Some(mem) = &self.mem {
            let at = local as usize * self.num_perm;
            let sig = mem[part]
                .get(at..at + self.num_perm)
                .with_context(|| format!("signatures.bin: no record {local} in part {part}"))?;
            out.copy_from_slice(sig);
            return Ok(());
        }
        let off = 16 + local as u64 * self.num_perm as u64 * 4;
        self.files[part]
            .read_exact_at(&mut self.buf, off)
            .with_context(|| format!("signatures.bin: cannot read record {local} of part {part}"))?;
        for (o, c) in out.iter_mut().zip(self.buf.chunks_exact(4)) {
            *o = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        Ok(())
    }
}

fn find(parent: &mut [u32], mut x: u32) -> u32 {
    while parent[x as usize] != x {
        let gp = parent[parent[x as usize] as usize];
        parent[x as usize] = gp;
        x = gp;
    }
    x
}

fn similarity(a: &[u32], b: &[u32]) -> f64 {
    let eq = a.iter().zip(b).filter(|(x, y)| x == y).count();
    eq as f64 / a.len().max(1) as f64
}

fn size_label(s: u32) -> usize {
    match s {
        0..=4 => s.max(1) as usize - 1,
        5..=9 => 4,
        10..=99 => 5,
        _ => 6,
    }
}

/// Per-record facts from `records.bin` (ids are read in a later pass).
struct RecordFacts {
    exempt: Vec<bool>,
    chars: Vec<u32>,
    quality: Vec<f64>,
}

/// Call `each(global ordinal, flags, chars, quality, id)` for every record in global order.
fn for_each_record(
    layout: &Layout,
    mut each: impl FnMut(u32, u8, u32, f64, &[u8]) -> Result<()>,
) -> Result<()> {
    let mut readers = layout
        .parts
        .iter()
        .map(|d| open(&d.join("records.bin"), REC_MAGIC))
        .collect::<Result<Vec<_>>>()?;
    let mut id = Vec::new();
    for seg in &layout.segments {
        let r = &mut readers[seg.part];
        for k in 0..seg.len {
            let mut flag = [0u8; 1];
            r.read_exact(&mut flag)?;
            let chars = read_u32(r)?;
            let quality = f64::from_bits(read_u64(r)?);
            let len = read_u32(r)? as usize;
            id.resize(len, 0);
            r.read_exact(&mut id)?;
            each(seg.global + k, flag[0], chars, quality, &id)?;
        }
    }
    Ok(())
}

fn read_records(layout: &Layout, mut keep_id: impl FnMut(u32, String)) -> Result<RecordFacts> {
    let n = layout.n as usize;
    let mut facts = RecordFacts {
        exempt: Vec::with_capacity(n),
        chars: Vec::with_capacity(n),
        quality: Vec::with_capacity(n),
    };
    for_each_record(layout, |i, flag, chars, quality, id| {
        facts.exempt.push(flag & 1 == 1);
        facts.chars.push(chars);
        facts.quality.push(quality);
        keep_id(
            i,
            String::from_utf8(id.to_vec()).context("records.bin: id is not UTF-8")?,
        );
        Ok(())
    })?;
    Ok(facts)
}

/// Union-find over the sorted band entries of `runs`, the keep rule, then
/// `decisions.bin` in each part and `clusters.jsonl` + `prepared.json` in `out`.
fn cluster(
    layout: &Layout,
    out: &Path,
    params: &Params,
    mut runs: Vec<RunReader>,
    band_runs: u32,
) -> Result<Summary> {
    let p = params.num_perm;
    let n = layout.n;
    let facts = read_records(layout, |_, _| {})?;
    let mut sigs = SigFile::open(layout, p, params.memory_limit)?;
    let mut parent: Vec<u32> = (0..n).collect();
    let (mut compared, mut similar) = (0u64, 0u64);

    // K-way merge of the sorted runs; equal (band, hash) = one bucket.
    let mut heap = BinaryHeap::new();
    for (i, r) in runs.iter_mut().enumerate() {
        if let Some(e) = r.next()? {
            heap.push(std::cmp::Reverse((e, i)));
        }
    }
    let mut bucket: Vec<u32> = Vec::new();
    let mut key: Option<(u32, u64)> = None;
    let mut ring = vec![0u32; BUCKET_WINDOW * p];
    let mut cur = vec![0u32; p];
    let mut flush = |bucket: &mut Vec<u32>, parent: &mut Vec<u32>| -> Result<()> {
        if bucket.len() > 1 {
            for (i, &r) in bucket.iter().enumerate() {
                sigs.read(r, &mut cur)?;
                for j in (i.saturating_sub(BUCKET_WINDOW)..i).rev() {
                    let q = bucket[j];
                    let (a, b) = (find(parent, r), find(parent, q));
                    if a == b {
                        continue;
                    }
                    compared += 1;
                    let slot = &ring[(j % BUCKET_WINDOW) * p..(j % BUCKET_WINDOW + 1) * p];
                    if similarity(&cur, slot) >= params.threshold {
                        similar += 1;
                        let (lo, hi) = (a.min(b), a.max(b));
                        parent[hi as usize] = lo;
                    }
                }
                ring[(i % BUCKET_WINDOW) * p..(i % BUCKET_WINDOW + 1) * p].copy_from_slice(&cur);
            }
        }
        bucket.clear();
        Ok(())
    };
    while let Some(std::cmp::Reverse(((b, h, o), i))) = heap.pop() {
        if key != Some((b, h)) {
            flush(&mut bucket, &mut parent)?;
            key = Some((b, h));
        }
        // The same record twice in a bucket cannot happen (one entry per band).
        bucket.push(o);
        if let Some(e) = runs[i].next()? {
            heap.push(std::cmp::Reverse((e, i)));
        }
    }
    flush(&mut bucket, &mut parent)?;

    // Roots: parent[i] <= i always, so one ascending sweep resolves every root.
    for i in 0..n as usize {
        parent[i] = parent[parent[i] as usize];
    }
    let root = parent;
    let mut size = vec![0u32; n as usize];
    let mut kept = vec![u32::MAX; n as usize];
    for i in 0..n {
        if facts.exempt[i as usize] {
            continue;
        }
        let r = root[i as usize] as usize;
        size[r] += 1;
        let c = kept[r];
        let better = c == u32::MAX
            || match params.keep {
                KeepRule::First => false,
                KeepRule::Longest => facts.chars[i as usize] > facts.chars[c as usize],
                KeepRule::Quality => {
                    let q = |k: u32| {
                        let v = facts.quality[k as usize];
                        if v.is_nan() {
                            f64::NEG_INFINITY
                        } else {
                            v
                        }
                    };
                    q(i) > q(c)
                }
            };
        if better {
            kept[r] = i;
        }
    }
    // Similarity of each duplicate to its cluster's kept record.
    let mut sim = vec![0f32; n as usize];
    let mut other = vec![0u32; p];
    for i in 0..n {
        let r = root[i as usize] as usize;
        if facts.exempt[i as usize] || size[r] < 2 || kept[r] == i {
            continue;
        }
        sigs.read(i, &mut cur)?;
        sigs.read(kept[r], &mut other)?;
        sim[i as usize] = similarity(&cur, &other) as f32;
    }
    // Ids of records in clusters with duplicates (the only ones named elsewhere).
    let mut ids: HashMap<u32, String> = HashMap::new();
    read_records(layout, |i, id| {
        if !facts.exempt[i as usize] && size[root[i as usize] as usize] > 1 {
            ids.insert(i, id);
        }
    })?;

    // Summary and the clusters shown in the report.
    let mut hist = [0u64; 7];
    let mut big: Vec<(u32, u32)> = Vec::new();
    let mut clusters = 0u64;
    for r in 0..n {
        if size[r as usize] > 0 {
            clusters += 1;
            hist[size_label(size[r as usize])] += 1;
            if size[r as usize] > 1 {
                big.push((size[r as usize], r));
            }
        }
    }
    let with_dups = big.len() as u64;
    big.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    big.truncate(params.show_clusters);
    let exempt = facts.exempt.iter().filter(|&&e| e).count() as u64;
    let labels = ["1", "2", "3", "4", "5-9", "10-99", "100+"];
    let summary = Summary {
        records: n as u64,
        exempt,
        clusters,
        clusters_with_duplicates: with_dups,
        duplicates: n as u64 - exempt - clusters,
        cluster_sizes: labels.iter().zip(hist).map(|(l, c)| (l.to_string(), c)).collect(),
        largest_cluster: size.iter().max().copied().unwrap_or(0),
        largest: big
            .iter()
            .map(|&(s, r)| BigCluster {
                cluster: r,
                size: s,
                kept_id: ids[&kept[r as usize]].clone(),
            })
            .collect(),
        pairs_compared: compared,
        pairs_similar: similar,
        band_runs,
        keep: params.keep,
    };
    let mut shown: HashSet<u32> = HashSet::new();
    let mut shown_count: HashMap<u32, usize> = HashMap::new();
    for &(_, r) in &big {
        shown.insert(kept[r as usize]);
        shown_count.insert(r, 0);
    }
    for i in 0..n {
        let r = root[i as usize];
        if let Some(c) = shown_count.get_mut(&r) {
            if kept[r as usize] != i && *c + 1 < params.show_members {
                *c += 1;
                shown.insert(i);
            }
        }
    }

    // decisions.bin, in each part's ordinal order.
    let mut decs = layout
        .parts
        .iter()
        .map(|d| -> Result<BufWriter<File>> {
            let mut w = create(&d.join("decisions.bin"))?;
            w.write_all(DEC_MAGIC)?;
            Ok(w)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut part_of = layout
        .segments
        .iter()
        .flat_map(|s| std::iter::repeat_n(s.part, s.len as usize));
    for_each_record(layout, |i, _, _, _, id| {
        let dec = &mut decs[part_of.next().context("decisions: more records than segments")?];
        let r = root[i as usize];
        let (kind, kept_id): (u8, &[u8]) = if facts.exempt[i as usize] {
            (3, b"")
        } else if size[r as usize] == 1 {
            (0, b"")
        } else if kept[r as usize] == i {
            (1, b"")
        } else {
            (2, ids[&kept[r as usize]].as_bytes())
        };
        dec.write_all(&xxh3_64(id).to_le_bytes())?;
        dec.write_all(&[kind, u8::from(shown.contains(&i))])?;
        dec.write_all(&r.to_le_bytes())?;
        dec.write_all(&size[r as usize].to_le_bytes())?;
        dec.write_all(&sim[i as usize].to_le_bytes())?;
        dec.write_all(&(kept_id.len() as u32).to_le_bytes())?;
        dec.write_all(kept_id)?;
        Ok(())
    })?;
    for dec in decs {
        dec.into_inner()?.sync_all()?;
    }

    // clusters.jsonl, in cluster order, members in input order.
    let mut members: Vec<(u32, u32)> = ids.keys().map(|&i| (root[i as usize], i)).collect();
    members.sort_unstable();
    let out_dir = out;
    let mut out = create(&out_dir.join("clusters.jsonl"))?;
    for group in members.chunk_by(|a, b| a.0 == b.0) {
        let r = group[0].0;
        let k = kept[r as usize];
        let list: Vec<serde_json::Value> = group
            .iter()
            .map(|&(_, i)| {
                let s = if i == k {
                    1.0
                } else {
                    round3(sim[i as usize] as f64)
                };
                json!({ "id": ids[&i], "similarity": s })
            })
            .collect();
        let line = json!({ "cluster": r, "size": group.len(), "kept_id": ids[&k], "members": list });
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
    }
    out.into_inner()?.sync_all()?;
    // The parts' prepared.json first: the one in `out` marks the whole step done.
    let json = serde_json::to_vec_pretty(&summary)?;
    for d in &layout.parts {
        if d != out_dir {
            crate::io::writer::write_atomic(&d.join("prepared.json"), &json)?;
        }
    }
    crate::io::writer::write_atomic(&out_dir.join("prepared.json"), &json)?;
    Ok(summary)
}

/// Round to 3 decimals (what `meta` and `clusters.jsonl` show).
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Load a finished prepass's summary; an error when it did not finish.
pub fn load_summary(dir: &Path) -> Result<Summary> {
    let path = dir.join("prepared.json");
    let text = std::fs::read(&path).with_context(|| {
        format!(
            "{}: prepass results missing; rerun with --overwrite",
            path.display()
        )
    })?;
    serde_json::from_slice(&text).with_context(|| format!("{}: unreadable", path.display()))
}

/// What the prepass decided for one record.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub id_hash: u64,
    pub kind: DecisionKind,
    pub shown: bool,
    pub cluster: u32,
    pub size: u32,
    pub similarity: f32,
    pub kept_id: String,
}

/// See `decisions.bin` in the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionKind {
    Unique,
    Kept,
    Duplicate,
    Exempt,
}

/// Reads `decisions.bin` in order from a byte offset (the stage's resume point).
pub struct DecisionReader {
    r: BufReader<File>,
    pos: u64,
}

impl DecisionReader {
    /// Open at `pos` (0 = the first decision).
    pub fn open(dir: &Path, pos: u64) -> Result<DecisionReader> {
        let mut r = open(&dir.join("decisions.bin"), DEC_MAGIC)?;
        let pos = pos.max(DEC_MAGIC.len() as u64);
        r.seek(SeekFrom::Start(pos))?;
        Ok(DecisionReader { r, pos })
    }

    /// Byte offset of the next decision.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The next decision; `None` at the end.
    pub fn next_decision(&mut self) -> Result<Option<Decision>> {
        let mut head = [0u8; 26];
        match self.r.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let kind = match head[8] {
            0 => DecisionKind::Unique,
            1 => DecisionKind::Kept,
            2 => DecisionKind::Duplicate,
            3 => DecisionKind::Exempt,
            k => bail!("decisions.bin: unknown kind {k}"),
        };
        let len = u32::from_le_bytes(head[22..26].try_into()?) as usize;
        let mut kept = vec![0u8; len];
        self.r.read_exact(&mut kept)?;
        self.pos += 26 + len as u64;
        Ok(Some(Decision {
            id_hash: u64::from_le_bytes(head[0..8].try_into()?),
            kind,
            shown: head[9] == 1,
            cluster: u32::from_le_bytes(head[10..14].try_into()?),
            size: u32::from_le_bytes(head[14..18].try_into()?),
            similarity: f32::from_le_bytes(head[18..22].try_into()?),
            kept_id: String::from_utf8(kept).context("decisions.bin: kept id is not UTF-8")?,
        }))
    }
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
        assert_eq!(load_summary(tmp.path()).unwrap(), sum);
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
