//! The prepass of `span_dedup`: in how many documents each span (line or sentence,
//! `span_split`) occurs, and the set of spans that occur in at least `min_repeats`.
//!
//! Observing a record adds 1 to the count of each of its distinct span hashes (a
//! span repeated inside one record counts once). Counts are exact: they are held
//! in a hash map until it reaches `memory_limit`, then written as a sorted run and
//! the map starts again; at the end the runs are merged (a k-way merge that adds
//! the counts of equal hashes) and the spans with at least `min_repeats` documents
//! are the **repeated set**, which the main pass loads to cut spans out of records.
//!
//! A count is a sum, so it does not depend on the order records are seen in: a
//! sharded run gets the same repeated set as a single process by merging every
//! rank's runs (the `buckets:NAME` step, one task per range of hashes) and joining
//! the ranges (the `clusters:NAME` step), with no global ordinals.
//!
//! ## Files (little-endian, in the stage's prepass folder)
//!
//! | file | layout |
//! |---|---|
//! | `counts-NNNN.bin` | `"CURSPC01"`, then 12-byte entries u64 hash, u32 documents, sorted by hash: one spilled run |
//! | `observed.json` | sharded runs: a rank's observe step is done: `{records, spans, count_runs}` |
//! | `buckets-PPPPP.bin` | sharded runs, global folder: `"CURSPB01"`, u64 distinct spans of the hash range, then the range's repeated entries (12 bytes, sorted) |
//! | `repeated.bin` | `"CURSPR01"`, then the repeated set's entries (12 bytes, sorted by hash) |
//! | `prepared.json` | the summary ([`SpanSummary`]); written last, atomically: the prepass is complete |
//!
//! ## Memory
//!
//! Observing: at most `memory_limit` (a map entry and its place in the sort buffer
//! of a spill, ~64 bytes per distinct span held). Merging: one 12-byte entry and a
//! 1 MiB read buffer per run. Main pass: the repeated set in a hash map (~40 bytes
//! per repeated span), not capped: it is the part of the corpus that is boilerplate.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::store::{buckets_file, create, load_summary, open};
use super::PrepassStore;
use crate::hash::HashKeyMap;
use crate::io::writer::{sync_dir, write_atomic};

const COUNT_MAGIC: &[u8; 8] = b"CURSPC01";
const BUCKET_MAGIC: &[u8; 8] = b"CURSPB01";
const REPEATED_MAGIC: &[u8; 8] = b"CURSPR01";
/// Bytes of one (hash, documents) entry on disk.
const ENTRY: u64 = 12;
/// Bytes of memory per distinct span counted (see the module docs).
const BYTES_PER_COUNT: u64 = 64;

/// What the prepass needs from the stage's config.
#[derive(Debug, Clone)]
pub struct SpanParams {
    /// Documents a span must occur in to be removed.
    pub min_repeats: u32,
    /// Bytes of counts held while observing before a sorted run is spilled.
    pub memory_limit: u64,
    /// Most frequent repeated spans listed in the summary.
    pub top: usize,
}

/// One of the most frequent repeated spans: its hash (hex) and documents.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TopSpan {
    pub hash: String,
    pub docs: u32,
}

/// The prepass result (`prepared.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SpanSummary {
    /// Records observed.
    pub records: u64,
    /// Spans observed (distinct within each record), summed over records.
    pub spans: u64,
    pub distinct_spans: u64,
    /// Distinct spans in at least `min_repeats` documents.
    pub repeated_spans: u64,
    pub min_repeats: u32,
    /// Sorted runs spilled at `memory_limit` (all ranks together in a sharded run).
    pub count_runs: u32,
    /// The most frequent repeated spans: most documents first, ties by hash.
    pub top: Vec<TopSpan>,
}

/// `observed.json` of a rank's observe step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct SpanObserved {
    records: u64,
    spans: u64,
    count_runs: u32,
}

/// The repeated set, loaded for the main pass: hash -> documents.
#[derive(Debug, Default)]
pub struct RepeatedSpans {
    docs: HashKeyMap<u64, u32>,
}

impl RepeatedSpans {
    /// Documents the span with this hash occurs in, if it is repeated.
    pub fn docs(&self, hash: u64) -> Option<u32> {
        self.docs.get(&hash).copied()
    }

    /// Spans in the set.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// True when no span is repeated.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    fn load(dir: &Path) -> Result<RepeatedSpans> {
        let path = dir.join("repeated.bin");
        let mut r = open(&path, REPEATED_MAGIC)?;
        let len = r.get_ref().metadata()?.len().saturating_sub(8);
        let mut docs = HashKeyMap::default();
        docs.reserve((len / ENTRY) as usize);
        while let Some((h, n)) =
            read_entry(&mut r).with_context(|| format!("{}: unreadable", path.display()))?
        {
            docs.insert(h, n);
        }
        Ok(RepeatedSpans { docs })
    }
}

/// Counts what `observe` sees; spills sorted runs at `memory_limit`.
struct SpanCounter {
    dir: PathBuf,
    counts: HashKeyMap<u64, u32>,
    max_entries: usize,
    runs: u32,
    records: u64,
    spans: u64,
}

impl SpanCounter {
    fn new(dir: &Path, params: &SpanParams) -> SpanCounter {
        SpanCounter {
            dir: dir.to_path_buf(),
            counts: HashKeyMap::default(),
            max_entries: (params.memory_limit / BYTES_PER_COUNT).max(1) as usize,
            runs: 0,
            records: 0,
            spans: 0,
        }
    }

    fn add(&mut self, distinct_hashes: &[u64]) -> Result<()> {
        self.records += 1;
        self.spans += distinct_hashes.len() as u64;
        for &h in distinct_hashes {
            *self.counts.entry(h).or_default() += 1;
        }
        if self.counts.len() >= self.max_entries {
            self.spill().with_context(|| {
                format!(
                    "{}: cannot write the span counts (counts-*.bin)",
                    self.dir.display()
                )
            })?;
        }
        Ok(())
    }

    /// The counts held, sorted by hash (the map is emptied, its memory kept).
    fn sorted(&mut self) -> Vec<(u64, u32)> {
        let mut v: Vec<(u64, u32)> = self.counts.drain().collect();
        v.sort_unstable();
        v
    }

    fn spill(&mut self) -> Result<()> {
        let entries = self.sorted();
        let path = self.dir.join(format!("counts-{:04}.bin", self.runs));
        let mut w = create(&path)?;
        w.write_all(COUNT_MAGIC)?;
        for (h, n) in entries {
            write_entry(&mut w, h, n)?;
        }
        w.into_inner()?.sync_all()?;
        self.runs += 1;
        Ok(())
    }

    /// The runs to merge: the spilled files, and what is still in memory.
    fn runs(&mut self) -> Result<Vec<CountRun>> {
        let mut runs = Vec::new();
        for i in 0..self.runs {
            runs.push(CountRun::file(
                &self.dir.join(format!("counts-{i:04}.bin")),
                0,
                None,
            )?);
        }
        runs.push(CountRun::Mem(self.sorted().into_iter()));
        Ok(runs)
    }
}

/// One sorted run of (hash, documents): a spilled file (read from a hash range) or memory.
enum CountRun {
    File { r: BufReader<File>, hi: Option<u64> },
    Mem(std::vec::IntoIter<(u64, u32)>),
}

impl CountRun {
    /// The entries of the run file at `path` with hashes in `lo..hi` (`None`: no upper end).
    fn file(path: &Path, lo: u64, hi: Option<u64>) -> Result<CountRun> {
        let mut r = open(path, COUNT_MAGIC)?;
        let n = r.get_ref().metadata()?.len().saturating_sub(8) / ENTRY;
        // Binary search for the first entry at or above `lo` (fixed-size entries).
        let (mut a, mut b) = (0u64, n);
        while a < b {
            let mid = (a + b) / 2;
            r.seek(SeekFrom::Start(8 + mid * ENTRY))?;
            let (h, _) = read_entry(&mut r)?.with_context(|| format!("{}: truncated", path.display()))?;
            if h < lo {
                a = mid + 1;
            } else {
                b = mid;
            }
        }
        r.seek(SeekFrom::Start(8 + a * ENTRY))?;
        Ok(CountRun::File { r, hi })
    }

    fn next(&mut self) -> Result<Option<(u64, u32)>> {
        match self {
            CountRun::Mem(it) => Ok(it.next()),
            CountRun::File { r, hi } => Ok(read_entry(r)?.filter(|(h, _)| hi.is_none_or(|hi| *h < hi))),
        }
    }
}

/// What a merge found besides the repeated entries it wrote.
struct Merged {
    distinct: u64,
    repeated: u64,
    top: Vec<(u64, u32)>,
}

/// Merge sorted runs, adding up the documents of equal hashes; every span with at
/// least `min_repeats` documents goes to `repeated` in hash order.
fn merge(
    mut runs: Vec<CountRun>,
    min_repeats: u32,
    top: usize,
    mut repeated: impl FnMut(u64, u32) -> Result<()>,
) -> Result<Merged> {
    let mut heap = BinaryHeap::new();
    for (i, run) in runs.iter_mut().enumerate() {
        if let Some((h, n)) = run.next()? {
            heap.push(Reverse((h, i, n)));
        }
    }
    let mut top_heap = TopSpans::new(top);
    let (mut distinct, mut n_repeated) = (0u64, 0u64);
    let mut current: Option<(u64, u32)> = None;
    let mut emit = |(h, n): (u64, u32)| -> Result<()> {
        distinct += 1;
        if n >= min_repeats {
            n_repeated += 1;
            top_heap.offer(h, n);
            repeated(h, n)?;
        }
        Ok(())
    };
    while let Some(Reverse((h, i, n))) = heap.pop() {
        current = match current {
            Some((ch, cn)) if ch == h => Some((h, cn.saturating_add(n))),
            Some(done) => {
                emit(done)?;
                Some((h, n))
            }
            None => Some((h, n)),
        };
        if let Some((h2, n2)) = runs[i].next()? {
            heap.push(Reverse((h2, i, n2)));
        }
    }
    if let Some(done) = current {
        emit(done)?;
    }
    Ok(Merged {
        distinct,
        repeated: n_repeated,
        top: top_heap.into_sorted(),
    })
}

/// The `k` spans with the most documents (ties: the smaller hash).
struct TopSpans {
    k: usize,
    /// Min-heap on (documents, reversed hash): the weakest entry on top.
    heap: BinaryHeap<Reverse<(u32, Reverse<u64>)>>,
}

impl TopSpans {
    fn new(k: usize) -> TopSpans {
        TopSpans {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    fn offer(&mut self, hash: u64, docs: u32) {
        if self.k == 0 {
            return;
        }
        self.heap.push(Reverse((docs, Reverse(hash))));
        if self.heap.len() > self.k {
            self.heap.pop();
        }
    }

    fn into_sorted(self) -> Vec<(u64, u32)> {
        let mut v: Vec<(u64, u32)> = self
            .heap
            .into_iter()
            .map(|Reverse((n, Reverse(h)))| (h, n))
            .collect();
        v.sort_unstable_by_key(|&(h, n)| (Reverse(n), h));
        v
    }
}

/// `span_dedup`'s prepass: counts while observing, the repeated set in the main pass.
pub struct SpanPrepass {
    params: SpanParams,
    dir: Option<PathBuf>,
    counter: Option<SpanCounter>,
    summary: Option<SpanSummary>,
    repeated: Option<RepeatedSpans>,
}

impl SpanPrepass {
    /// A prepass with these settings.
    pub fn new(params: SpanParams) -> SpanPrepass {
        SpanPrepass {
            params,
            dir: None,
            counter: None,
            summary: None,
            repeated: None,
        }
    }

    /// Observe the next record: the hashes of its spans, each once.
    pub fn add(&mut self, distinct_hashes: &[u64]) -> Result<()> {
        self.counter
            .as_mut()
            .context("span_dedup: observe before the prepass was opened")?
            .add(distinct_hashes)
    }

    /// The finished prepass's counts (`None` before it finished).
    pub fn summary(&self) -> Option<&SpanSummary> {
        self.summary.as_ref()
    }

    /// The repeated set (`None` before the prepass finished).
    pub fn repeated(&self) -> Option<&RepeatedSpans> {
        self.repeated.as_ref()
    }

    fn dir(&self) -> Result<&Path> {
        self.dir
            .as_deref()
            .context("span_dedup: the prepass was not opened")
    }
}

impl PrepassStore for SpanPrepass {
    fn open(&mut self, dir: &Path, complete: bool) -> Result<()> {
        self.dir = Some(dir.to_path_buf());
        if complete {
            self.summary = Some(load_summary(dir)?);
            self.repeated = Some(RepeatedSpans::load(dir)?);
        } else {
            self.counter = Some(SpanCounter::new(dir, &self.params));
        }
        Ok(())
    }

    fn prepare(&mut self) -> Result<()> {
        let mut counter = self
            .counter
            .take()
            .context("span_dedup: prepare before the prepass was opened")?;
        let dir = self.dir()?.to_path_buf();
        let runs = counter.runs()?;
        let path = dir.join("repeated.bin");
        let mut w = create(&path)?;
        w.write_all(REPEATED_MAGIC)?;
        let merged = merge(runs, self.params.min_repeats, self.params.top, |h, n| {
            write_entry(&mut w, h, n).with_context(|| format!("{}: cannot write", path.display()))
        })?;
        w.into_inner()?.sync_all()?;
        let summary = SpanSummary {
            records: counter.records,
            spans: counter.spans,
            distinct_spans: merged.distinct,
            repeated_spans: merged.repeated,
            min_repeats: self.params.min_repeats,
            count_runs: counter.runs,
            top: top_list(&merged.top),
        };
        for i in 0..counter.runs {
            let _ = std::fs::remove_file(dir.join(format!("counts-{i:04}.bin")));
        }
        write_atomic(&dir.join("prepared.json"), &serde_json::to_vec_pretty(&summary)?)?;
        self.repeated = Some(RepeatedSpans::load(&dir)?);
        self.summary = Some(summary);
        Ok(())
    }

    fn close_observe(&mut self) -> Result<()> {
        let mut counter = self
            .counter
            .take()
            .context("span_dedup: close_observe before the prepass was opened")?;
        if !counter.counts.is_empty() {
            counter.spill()?;
        }
        let done = SpanObserved {
            records: counter.records,
            spans: counter.spans,
            count_runs: counter.runs,
        };
        write_atomic(
            &self.dir()?.join("observed.json"),
            &serde_json::to_vec_pretty(&done)?,
        )
    }

    fn bucket_step(
        &self,
        rank_dirs: &[PathBuf],
        part: usize,
        parts: usize,
        global_dir: &Path,
    ) -> Result<String> {
        let (lo, hi) = hash_range(part, parts);
        let mut runs = Vec::new();
        for dir in rank_dirs {
            let observed = load_observed(dir)?;
            for i in 0..observed.count_runs {
                runs.push(CountRun::file(&dir.join(format!("counts-{i:04}.bin")), lo, hi)?);
            }
        }
        let dst = global_dir.join(buckets_file(part));
        let tmp = global_dir.join(format!("{}.tmp", buckets_file(part)));
        let mut w = create(&tmp)?;
        w.write_all(BUCKET_MAGIC)?;
        w.write_all(&0u64.to_le_bytes())?; // distinct spans, filled in below
        let merged = merge(runs, self.params.min_repeats, 0, |h, n| {
            write_entry(&mut w, h, n).with_context(|| format!("{}: cannot write", tmp.display()))
        })?;
        let mut f = w.into_inner()?;
        f.seek(SeekFrom::Start(8))?;
        f.write_all(&merged.distinct.to_le_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &dst).with_context(|| format!("{}: cannot write", dst.display()))?;
        sync_dir(global_dir)?;
        Ok(format!(
            "span counts {part} of {parts}: {} distinct spans, {} repeated",
            merged.distinct, merged.repeated
        ))
    }

    fn cluster_step(&self, rank_dirs: &[PathBuf], parts: usize, global_dir: &Path) -> Result<String> {
        let (mut records, mut spans, mut count_runs) = (0u64, 0u64, 0u32);
        for dir in rank_dirs {
            let o = load_observed(dir)?;
            records += o.records;
            spans += o.spans;
            count_runs += o.count_runs;
        }
        // The bucket files cover hash ranges in order: joined, they are the sorted set.
        let path = global_dir.join("repeated.bin");
        let mut w = create(&path)?;
        w.write_all(REPEATED_MAGIC)?;
        let mut top = TopSpans::new(self.params.top);
        let (mut distinct, mut repeated) = (0u64, 0u64);
        for part in 0..parts {
            let file = global_dir.join(buckets_file(part));
            let mut r = open(&file, BUCKET_MAGIC)?;
            let mut d = [0u8; 8];
            r.read_exact(&mut d)
                .with_context(|| format!("{}: truncated", file.display()))?;
            distinct += u64::from_le_bytes(d);
            while let Some((h, n)) =
                read_entry(&mut r).with_context(|| format!("{}: unreadable", file.display()))?
            {
                repeated += 1;
                top.offer(h, n);
                write_entry(&mut w, h, n)?;
            }
        }
        w.into_inner()?.sync_all()?;
        let summary = SpanSummary {
            records,
            spans,
            distinct_spans: distinct,
            repeated_spans: repeated,
            min_repeats: self.params.min_repeats,
            count_runs,
            top: top_list(&top.into_sorted()),
        };
        let json = serde_json::to_vec_pretty(&summary)?;
        for dir in rank_dirs {
            let dst = dir.join("repeated.bin");
            let _ = std::fs::remove_file(&dst);
            if std::fs::hard_link(&path, &dst).is_err() {
                std::fs::copy(&path, &dst).with_context(|| format!("{}: cannot write", dst.display()))?;
            }
            write_atomic(&dir.join("prepared.json"), &json)?;
        }
        write_atomic(&global_dir.join("prepared.json"), &json)?;
        Ok(format!(
            "repeated spans: {records} records, {distinct} distinct spans, {repeated} in at least {} documents",
            self.params.min_repeats
        ))
    }
}

/// Hashes of task `part` of `parts`: `lo..hi`, `hi = None` for the last.
fn hash_range(part: usize, parts: usize) -> (u64, Option<u64>) {
    let at = |p: usize| ((p as u128) << 64) / parts as u128;
    let hi = (part + 1 < parts).then(|| at(part + 1) as u64);
    (at(part) as u64, hi)
}

fn top_list(top: &[(u64, u32)]) -> Vec<TopSpan> {
    top.iter()
        .map(|&(h, docs)| TopSpan {
            hash: format!("{h:016x}"),
            docs,
        })
        .collect()
}

fn load_observed(dir: &Path) -> Result<SpanObserved> {
    let path = dir.join("observed.json");
    let text = std::fs::read(&path).with_context(|| {
        format!(
            "{}: the observe step of this rank has not finished",
            dir.display()
        )
    })?;
    serde_json::from_slice(&text).with_context(|| format!("{}: unreadable", path.display()))
}

fn write_entry(w: &mut impl Write, hash: u64, docs: u32) -> std::io::Result<()> {
    w.write_all(&hash.to_le_bytes())?;
    w.write_all(&docs.to_le_bytes())
}

/// The next 12-byte entry; `None` at the end.
fn read_entry(r: &mut impl Read) -> Result<Option<(u64, u32)>> {
    let mut b = [0u8; 12];
    match r.read_exact(&mut b) {
        Ok(()) => Ok(Some((
            u64::from_le_bytes(b[..8].try_into()?),
            u32::from_le_bytes(b[8..].try_into()?),
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(memory_limit: u64) -> SpanParams {
        SpanParams {
            min_repeats: 3,
            memory_limit,
            top: 3,
        }
    }

    /// Records as lists of span hashes: hash h occurs in the records i with i % h == 0.
    fn records() -> Vec<Vec<u64>> {
        (1..=60u64)
            .map(|i| (1..=40u64).filter(|h| i % h == 0).collect())
            .collect()
    }

    fn single(memory_limit: u64) -> (SpanSummary, Vec<(u64, u32)>) {
        let tmp = tempfile::tempdir().unwrap();
        let mut p = SpanPrepass::new(params(memory_limit));
        p.open(tmp.path(), false).unwrap();
        for r in records() {
            p.add(&r).unwrap();
        }
        p.prepare().unwrap();
        let mut q = SpanPrepass::new(params(memory_limit));
        q.open(tmp.path(), true).unwrap();
        let set = q.repeated().unwrap();
        let mut all: Vec<(u64, u32)> = set.docs.iter().map(|(h, n)| (*h, *n)).collect();
        all.sort_unstable();
        (q.summary().unwrap().clone(), all)
    }

    #[test]
    fn counts_are_exact_and_spilling_changes_nothing() {
        let (sum, set) = single(1 << 30);
        let (spilled, spilled_set) = single(64 * 5);
        assert_eq!(sum.count_runs, 0);
        assert!(spilled.count_runs > 10, "{}", spilled.count_runs);
        assert_eq!(set, spilled_set);
        assert_eq!(
            SpanSummary {
                count_runs: 0,
                ..spilled
            },
            sum
        );
        // h occurs in 60 / h records: repeated (>= 3) for h <= 20.
        assert_eq!(sum.distinct_spans, 40);
        assert_eq!(sum.repeated_spans, 20);
        assert_eq!(set[0], (1, 60));
        assert_eq!(set[19], (20, 3));
        assert_eq!(
            sum.top,
            [(1, 60), (2, 30), (3, 20)]
                .map(|(h, docs)| TopSpan {
                    hash: format!("{h:016x}"),
                    docs
                })
                .to_vec()
        );
    }

    #[test]
    fn ranks_and_hash_ranges_give_the_single_result() {
        let (sum, set) = single(1 << 30);
        let tmp = tempfile::tempdir().unwrap();
        let ranks: Vec<PathBuf> = (0..3).map(|r| tmp.path().join(format!("rank-{r}"))).collect();
        let global = tmp.path().join("global");
        std::fs::create_dir_all(&global).unwrap();
        for (r, dir) in ranks.iter().enumerate() {
            std::fs::create_dir_all(dir).unwrap();
            let mut p = SpanPrepass::new(params(64 * 7));
            p.open(dir, false).unwrap();
            for rec in records().iter().skip(r).step_by(3) {
                // Big hashes too, so that every hash range has some.
                let mut hs: Vec<u64> = rec
                    .iter()
                    .map(|h| h.wrapping_mul(0x9E37_79B9_7F4A_7C15))
                    .collect();
                hs.extend(rec);
                p.add(&hs).unwrap();
            }
            p.close_observe().unwrap();
        }
        let p = SpanPrepass::new(params(64 * 7));
        for part in 0..4 {
            p.bucket_step(&ranks, part, 4, &global).unwrap();
        }
        p.cluster_step(&ranks, 4, &global).unwrap();
        let mut q = SpanPrepass::new(params(0));
        q.open(&ranks[1], true).unwrap();
        let got = q.summary().unwrap();
        assert_eq!(
            (got.records, got.repeated_spans),
            (sum.records, 2 * sum.repeated_spans)
        );
        for &(h, n) in &set {
            assert_eq!(q.repeated().unwrap().docs(h), Some(n));
            assert_eq!(
                q.repeated().unwrap().docs(h.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                Some(n)
            );
        }
        assert_eq!(hash_range(0, 1), (0, None));
        assert_eq!(hash_range(1, 2), (1 << 63, None));
        assert_eq!(hash_range(0, 2), (0, Some(1 << 63)));
    }
}
