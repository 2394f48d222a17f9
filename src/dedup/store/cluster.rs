//! Clustering: merge the sorted band runs, compare bucket members by signature,
//! union-find, the keep rule, and the decisions, clusters and summary files.

use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;
use xxhash_rust::xxh3::xxh3_64;

use super::layout::Layout;
use super::{
    create, open, read_u32, read_u64, round3, BigCluster, Entry, KeepRule, Params, Summary, BAND_MAGIC,
    BUCKET_WINDOW, DEC_MAGIC, REC_MAGIC,
};
use crate::dedup::common::CommonWindows;
use crate::dedup::minhash::{Verify, SEQ_SLOTS};

/// A sorted run of band entries: in memory (nothing spilled) or a `bands-NNNN.bin` file.
/// A file run ends at the first entry of band `end` or later.
pub(super) enum RunReader {
    Mem(std::vec::IntoIter<Entry>),
    File(BufReader<File>, u32),
}

impl RunReader {
    /// The entries of `bands` in a band file: the start is found by binary search
    /// (entries have a fixed size and are sorted by band first).
    pub(super) fn range(path: &Path, bands: std::ops::Range<u32>) -> Result<RunReader> {
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

    pub(super) fn next(&mut self) -> Result<Option<Entry>> {
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

    /// Record `ord`'s signature where signatures are held in memory.
    fn slice(&self, ord: u32) -> Result<&[u32]> {
        let (part, local) = self.layout.locate(ord);
        let at = local as usize * self.num_perm;
        self.mem
            .as_ref()
            .and_then(|mem| mem[part].get(at..at + self.num_perm))
            .with_context(|| format!("signatures.bin: no record {local} in part {part}"))
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

/// Document counts of every record's sample windows (the template rule of
/// [`crate::dedup::minhash::Verify::matches`]), in a table of at most a quarter of
/// `memory_limit` (`src/dedup/common.rs` says what a full table does).
fn count_common(v: &Verify, sigs: &mut SigFile, exempt: &[bool], memory_limit: u64) -> Result<CommonWindows> {
    let per = CommonWindows::windows_per_record(SEQ_SLOTS);
    let min_records = v.template_records.min(255) as u8;
    let mut table = CommonWindows::new(exempt.len() as u64 * per, memory_limit / 4, min_records);
    let mut cur = vec![0u32; v.width()];
    for (i, _) in exempt.iter().enumerate().filter(|(_, &e)| !e) {
        let sketch = if sigs.mem.is_some() {
            sigs.slice(i as u32)?
        } else {
            sigs.read(i as u32, &mut cur)?;
            &cur[..]
        };
        let (sample, level) = v.own_sample(sketch);
        table.add(&sample, level);
    }
    Ok(table)
}

/// Union-find over the sorted band entries of `runs`, the keep rule, then
/// `decisions.bin` in each part and `clusters.jsonl` + `prepared.json` in `out`.
pub(super) fn cluster(
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
    let common = match &params.verify {
        Some(v) if v.template_records > 0 => {
            Some(count_common(v, &mut sigs, &facts.exempt, params.memory_limit)?)
        }
        _ => None,
    };
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
    // Signatures held in memory are compared in place; read from the file, each
    // bucket member is read once and kept in a ring of the last BUCKET_WINDOW.
    let in_memory = sigs.mem.is_some();
    let mut flush = |bucket: &mut Vec<u32>, parent: &mut Vec<u32>| -> Result<()> {
        if bucket.len() > 1 {
            for (i, &r) in bucket.iter().enumerate() {
                let this: &[u32] = if in_memory {
                    sigs.slice(r)?
                } else {
                    sigs.read(r, &mut cur)?;
                    &cur
                };
                for j in (i.saturating_sub(BUCKET_WINDOW)..i).rev() {
                    let q = bucket[j];
                    let (a, b) = (find(parent, r), find(parent, q));
                    if a == b {
                        continue;
                    }
                    compared += 1;
                    let slot = if in_memory {
                        sigs.slice(q)?
                    } else {
                        &ring[(j % BUCKET_WINDOW) * p..(j % BUCKET_WINDOW + 1) * p]
                    };
                    let same = match &params.verify {
                        Some(v) => v.matches(this, slot, common.as_ref()),
                        None => similarity(this, slot) >= params.threshold,
                    };
                    if same {
                        similar += 1;
                        let (lo, hi) = (a.min(b), a.max(b));
                        parent[hi as usize] = lo;
                    }
                }
                if !in_memory {
                    ring[(i % BUCKET_WINDOW) * p..(i % BUCKET_WINDOW + 1) * p].copy_from_slice(&cur);
                }
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
        sim[i as usize] = match &params.verify {
            Some(v) => v.similarity(&cur, &other),
            None => similarity(&cur, &other),
        } as f32;
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
