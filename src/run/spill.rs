//! The prepass spill: the records as they leave the stages before a global stage,
//! so that each record goes through each stage once.
//!
//! A global stage `k` with a prepass (MinHash clustering) must see every record
//! before the main pass can decide on any. Its prepass runs the stages before `k`
//! and, besides observing, writes each batch here exactly as it reached `k`: live
//! records (fields, meta, origin) and rejections, with the reader's unit marks and
//! the per-batch books of the stages it ran. The main pass (or the prepass of a
//! later global stage) reads this file instead of the input and starts at stage
//! `k`; output and books are the same as running every stage again, for a fraction
//! of the CPU (issue 20 measured 42–45% of the default pipeline's time in the
//! repeat). The file is a sequence of batches, each its own zstd frame (level 1)
//! compressed in one call (a streaming encoder copies every byte into its window
//! and takes the split-window match finder; the gain measured within the noise);
//! its size is about the input's after compression, on the output's disk, and it is
//! removed when the run completes. A global stage that comes first spills no record
//! (they reach it exactly as read): its `spill.json` says `reread_input`, and the
//! next pass reads the input again, which costs less than zstd both ways. Stage
//! states after the prepass (`state-NNN.bin`) go beside it, so tallies such as
//! exact_dedup's distinct count reach the report.
//!
//! The encoding is our own small binary form of `serde_json::Value` rather than
//! JSON or a serde format: JSON would re-parse floats (serde_json's default parser
//! may move the last bit, and output must stay byte-identical), and the serde
//! binary formats cannot deserialize a `Value` (it needs a self-describing format)
//! or cost a dependency for ~100 lines.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

use super::read::{ReadMsg, Rejection, Slot};
use crate::record::{FieldMap, Origin, Record, Schema};

/// The spill file in a prepass folder.
pub(super) fn spill_path(dir: &Path) -> PathBuf {
    dir.join("records.spill")
}

/// Its description, written once the spill is complete.
fn meta_path(dir: &Path) -> PathBuf {
    dir.join("spill.json")
}

/// A stage's saved state after the prepass.
fn state_path(dir: &Path, stage: usize) -> PathBuf {
    dir.join(format!("state-{stage:03}.bin"))
}

/// One stage's books for one batch, added to the main pass's counters when the
/// batch is read back: records in, input bytes, modified, tagged, wall ns, CPU ns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Books {
    pub(super) input: u64,
    pub(super) bytes: u64,
    pub(super) modified: u64,
    pub(super) tagged: u64,
    pub(super) nanos: u64,
    pub(super) cpu_nanos: u64,
}

impl Books {
    /// What was added to these books since `was` (an earlier reading of the same counters).
    pub(super) fn since(&self, was: &Books) -> Books {
        Books {
            input: self.input - was.input,
            bytes: self.bytes - was.bytes,
            modified: self.modified - was.modified,
            tagged: self.tagged - was.tagged,
            nanos: self.nanos - was.nanos,
            cpu_nanos: self.cpu_nanos - was.cpu_nanos,
        }
    }

    /// Add `other` to these books.
    pub(super) fn add(&mut self, other: &Books) {
        self.input += other.input;
        self.bytes += other.bytes;
        self.modified += other.modified;
        self.tagged += other.tagged;
        self.nanos += other.nanos;
        self.cpu_nanos += other.cpu_nanos;
    }
}

/// Add `b` to `a` stage by stage (`a` grows to `b`'s length).
pub(super) fn add_books(a: &mut Vec<Books>, b: &[Books]) {
    if a.len() < b.len() {
        a.resize(b.len(), Books::default());
    }
    for (x, y) in a.iter_mut().zip(b) {
        x.add(y);
    }
}

/// `spill.json`: written last, so its presence says the spill is complete.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SpillMeta {
    /// The stage the spilled records go to next.
    pub(super) stage: usize,
    /// Books not tied to a batch (a stage's clustering after the last record),
    /// added with the last batch.
    pub(super) end_books: Vec<Books>,
    /// Stages (before `stage`) whose state after the prepass is in `state-NNN.bin`.
    pub(super) states: Vec<usize>,
    /// No record was spilled: the global stage is the first, so the records reach it
    /// exactly as read, and reading the input again costs less than a spill (zstd
    /// both ways). The next pass reads the input; `end_books` hold every book.
    #[serde(default)]
    pub(super) reread_input: bool,
}

/// A batch read back from a spill: the reader's marks, its records as they reached
/// the spill's stage, and the books of the stages before it.
pub(super) struct SpillBatch {
    pub(super) source: usize,
    pub(super) chunk: u64,
    pub(super) unit_end: bool,
    pub(super) source_end: Option<Vec<String>>,
    /// Input bytes of the batch's items as read.
    pub(super) bytes: u64,
    pub(super) slots: Vec<Slot>,
    pub(super) books: Vec<Books>,
}

/// Writes a spill, one frame per batch.
pub(super) struct SpillWriter {
    dir: PathBuf,
    out: BufWriter<File>,
    zstd: zstd::bulk::Compressor<'static>,
    buf: Vec<u8>,
    packed: Vec<u8>,
}

/// zstd level of the spill: its fastest regular level (the file is temporary).
const SPILL_LEVEL: i32 = 1;

/// No batch is near this; a header beyond it is a corrupt file, not an allocation.
const MAX_BATCH_BYTES: usize = 1 << 34;

/// The reader's marks of a batch.
pub(super) struct BatchMarks<'a> {
    pub(super) source: usize,
    pub(super) chunk: u64,
    pub(super) unit_end: bool,
    pub(super) source_end: Option<&'a [String]>,
    pub(super) bytes: u64,
}

impl SpillWriter {
    /// Start a spill in prepass folder `dir` (an old one there is replaced).
    pub(super) fn create(dir: &Path) -> Result<SpillWriter> {
        let _ = std::fs::remove_file(meta_path(dir));
        let path = spill_path(dir);
        let file = File::create(&path).with_context(|| format!("{}: cannot create", path.display()))?;
        let zstd = zstd::bulk::Compressor::new(SPILL_LEVEL)
            .with_context(|| format!("{}: cannot start zstd", path.display()))?;
        Ok(SpillWriter {
            dir: dir.to_path_buf(),
            out: BufWriter::with_capacity(1 << 20, file),
            zstd,
            buf: Vec::with_capacity(1 << 20),
            packed: Vec::new(),
        })
    }

    /// Append one batch.
    pub(super) fn write_batch(
        &mut self,
        marks: BatchMarks<'_>,
        slots: &[Slot],
        books: &[Books],
    ) -> Result<()> {
        let b = &mut self.buf;
        b.clear();
        put_u64(b, marks.source as u64);
        put_u64(b, marks.chunk);
        b.push(marks.unit_end as u8);
        match marks.source_end {
            Some(notes) => {
                b.push(1);
                put_u64(b, notes.len() as u64);
                for n in notes {
                    put_str(b, n);
                }
            }
            None => b.push(0),
        }
        put_u64(b, marks.bytes);
        put_u64(b, books.len() as u64);
        for k in books {
            for v in [k.input, k.bytes, k.modified, k.tagged, k.nanos, k.cpu_nanos] {
                put_u64(b, v);
            }
        }
        put_u64(b, slots.len() as u64);
        for slot in slots {
            match slot {
                Slot::Live(r) => {
                    b.push(0);
                    put_record(b, r);
                }
                Slot::Gone(g) => {
                    b.push(1);
                    put_rejection(b, g);
                }
            }
        }
        // Header: the batch's length, then its frame's.
        self.packed.clear();
        self.packed
            .reserve(zstd::zstd_safe::compress_bound(self.buf.len()));
        self.zstd
            .compress_to_buffer(&self.buf, &mut self.packed)
            .with_context(|| format!("{}: cannot compress", spill_path(&self.dir).display()))?;
        self.out.write_all(&(self.buf.len() as u64).to_le_bytes())?;
        self.out.write_all(&(self.packed.len() as u64).to_le_bytes())?;
        self.out.write_all(&self.packed)?;
        Ok(())
    }

    /// Finish the file (synced), then write the states of `stages` and `spill.json`.
    pub(super) fn finish(self, meta: &SpillMeta, states: &[(usize, Vec<u8>)]) -> Result<()> {
        let path = spill_path(&self.dir);
        let file = self
            .out
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("{}: cannot write", path.display()))?;
        file.sync_all()
            .with_context(|| format!("{}: cannot sync", path.display()))?;
        for (stage, bytes) in states {
            crate::io::writer::write_atomic(&state_path(&self.dir, *stage), bytes)?;
        }
        crate::io::writer::write_atomic(&meta_path(&self.dir), &serde_json::to_vec(meta)?)
    }
}

/// A complete spill in prepass folder `dir`, if there is one.
pub(super) fn load_meta(dir: &Path) -> Result<Option<SpillMeta>> {
    let path = meta_path(dir);
    if !path.exists() || !spill_path(dir).exists() {
        return Ok(None);
    }
    let text = std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(Some(
        serde_json::from_slice(&text).with_context(|| format!("{}: unreadable", path.display()))?,
    ))
}

/// The stage states saved with the spill in `dir`.
pub(super) fn load_states(dir: &Path, meta: &SpillMeta) -> Result<Vec<(usize, Vec<u8>)>> {
    meta.states
        .iter()
        .map(|&k| {
            let p = state_path(dir, k);
            Ok((
                k,
                std::fs::read(&p).with_context(|| format!("{}: cannot read", p.display()))?,
            ))
        })
        .collect()
}

/// Remove a finished run's spill from prepass folder `dir` (it is no longer needed).
pub(super) fn remove(dir: &Path) {
    let _ = std::fs::remove_file(spill_path(dir));
}

/// What the spill reader thread needs.
pub(super) struct SpillJob {
    pub(super) dir: PathBuf,
    pub(super) end_books: Vec<Books>,
    pub(super) map: Arc<FieldMap>,
    /// (source, chunk) of the first unit to deliver; earlier frames are skipped.
    pub(super) start: (usize, u64),
}

/// Read a spill's batches in order on `tx` (as [`ReadMsg::Spilled`]), the end books
/// added to the last one.
pub(super) fn spill_reader_thread(job: SpillJob, tx: SyncSender<ReadMsg>) {
    let path = spill_path(&job.dir);
    let run = || -> Result<()> {
        let file = crate::io::CountedFile::open(&path)
            .with_context(|| format!("{}: cannot open", path.display()))?;
        let mut input = BufReader::with_capacity(1 << 20, file);
        let mut zstd = zstd::bulk::Decompressor::new()?;
        let mut sources: Vec<Arc<str>> = Vec::new();
        let mut pending: Option<SpillBatch> = None;
        let (mut packed, mut frame) = (Vec::new(), Vec::new());
        loop {
            let mut header = [0u8; 16];
            match read_full(&mut input, &mut header)? {
                0 => break,
                16 => {}
                _ => bail!("{}: truncated spill", path.display()),
            }
            let raw_len = u64::from_le_bytes(header[..8].try_into().expect("8 bytes")) as usize;
            let packed_len = u64::from_le_bytes(header[8..].try_into().expect("8 bytes")) as usize;
            if raw_len > MAX_BATCH_BYTES || packed_len > MAX_BATCH_BYTES {
                bail!("{}: corrupt spill (a batch of {raw_len} bytes)", path.display());
            }
            packed.resize(packed_len, 0);
            input
                .read_exact(&mut packed)
                .with_context(|| format!("{}: truncated spill", path.display()))?;
            frame.clear();
            frame.reserve(raw_len);
            let n = zstd
                .decompress_to_buffer(&packed, &mut frame)
                .with_context(|| format!("{}: corrupt spill", path.display()))?;
            if n != raw_len {
                bail!(
                    "{}: corrupt spill (a batch of {n} bytes, {raw_len} expected)",
                    path.display()
                );
            }
            let batch = decode_batch(&frame, &job.map, &mut sources)
                .with_context(|| format!("{}: corrupt spill", path.display()))?;
            if (batch.source, batch.chunk) < job.start {
                continue;
            }
            if let Some(p) = pending.replace(batch) {
                if tx.send(ReadMsg::Spilled(p)).is_err() {
                    return Ok(());
                }
            }
        }
        if let Some(mut last) = pending {
            add_books(&mut last.books, &job.end_books);
            let _ = tx.send(ReadMsg::Spilled(last));
        }
        Ok(())
    };
    if let Err(e) = run() {
        let _ = tx.send(ReadMsg::Failed(e));
    }
}

/// Read until `buf` is full or the stream ends; the number of bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn decode_batch(frame: &[u8], map: &Arc<FieldMap>, sources: &mut Vec<Arc<str>>) -> Result<SpillBatch> {
    let mut c = Cursor { buf: frame, pos: 0 };
    let source = c.u64()? as usize;
    let chunk = c.u64()?;
    let unit_end = c.byte()? != 0;
    let source_end = match c.byte()? {
        0 => None,
        _ => {
            let n = c.u64()? as usize;
            Some((0..n).map(|_| c.string()).collect::<Result<Vec<_>>>()?)
        }
    };
    let bytes = c.u64()?;
    let nb = c.u64()? as usize;
    let mut books = Vec::with_capacity(nb);
    for _ in 0..nb {
        books.push(Books {
            input: c.u64()?,
            bytes: c.u64()?,
            modified: c.u64()?,
            tagged: c.u64()?,
            nanos: c.u64()?,
            cpu_nanos: c.u64()?,
        });
    }
    let ns = c.u64()? as usize;
    let mut slots = Vec::with_capacity(ns);
    for _ in 0..ns {
        slots.push(match c.byte()? {
            0 => Slot::Live(Box::new(get_record(&mut c, map, sources)?)),
            _ => Slot::Gone(Box::new(get_rejection(&mut c)?)),
        });
    }
    if c.pos != frame.len() {
        bail!("{} bytes left over in a frame", frame.len() - c.pos);
    }
    Ok(SpillBatch {
        source,
        chunk,
        unit_end,
        source_end,
        bytes,
        slots,
        books,
    })
}

fn schema_code(s: Schema) -> u8 {
    match s {
        Schema::Text => 0,
        Schema::Html => 1,
        Schema::Alpaca => 2,
        Schema::Sharegpt => 3,
        Schema::Messages => 4,
        Schema::Preference => 5,
    }
}

fn schema_of(code: u8) -> Result<Schema> {
    Ok(match code {
        0 => Schema::Text,
        1 => Schema::Html,
        2 => Schema::Alpaca,
        3 => Schema::Sharegpt,
        4 => Schema::Messages,
        5 => Schema::Preference,
        _ => bail!("unknown schema code {code}"),
    })
}

fn put_record(b: &mut Vec<u8>, r: &Record) {
    put_str(b, &r.id);
    put_map(b, &r.fields);
    put_map(b, &r.meta);
    b.push(schema_code(r.schema));
    put_str(b, &r.origin.source);
    put_u64(b, r.origin.line);
    put_u64(b, r.origin.index);
    put_u64(b, r.input_bytes);
    put_stages(b, &r.tagged_by);
}

/// A list of stage numbers (`tagged_by`).
fn put_stages(b: &mut Vec<u8>, stages: &[u32]) {
    put_u64(b, stages.len() as u64);
    for &s in stages {
        put_u64(b, s as u64);
    }
}

fn get_stages(c: &mut Cursor<'_>) -> Result<Vec<u32>> {
    let n = c.u64()?;
    (0..n).map(|_| Ok(c.u64()? as u32)).collect()
}

fn get_record(c: &mut Cursor<'_>, map: &Arc<FieldMap>, sources: &mut Vec<Arc<str>>) -> Result<Record> {
    let id = c.string()?;
    let fields = c.map()?;
    let meta = c.map()?;
    let schema = schema_of(c.byte()?)?;
    let name = c.str()?;
    // Records of a batch share their source name: one allocation per source.
    let source = match sources.iter().find(|s| &***s == name) {
        Some(s) => s.clone(),
        None => {
            let s: Arc<str> = Arc::from(name);
            sources.push(s.clone());
            s
        }
    };
    let origin = Origin {
        source,
        line: c.u64()?,
        index: c.u64()?,
    };
    Ok(Record {
        id,
        fields,
        meta,
        schema,
        origin,
        map: map.clone(),
        input_bytes: c.u64()?,
        tagged_by: get_stages(c)?,
    })
}

fn put_rejection(b: &mut Vec<u8>, r: &Rejection) {
    put_u64(b, r.stage as u64);
    put_str(b, &r.reason);
    put_str(b, &r.detail);
    put_str(b, &r.id);
    put_str(b, &r.origin);
    match &r.record {
        Some(m) => {
            b.push(1);
            put_map(b, m);
        }
        None => b.push(0),
    }
    put_str(b, &r.preview);
    put_stages(b, &r.tagged_by);
    match &r.raw {
        Some((text, len)) => {
            b.push(1);
            put_str(b, text);
            put_u64(b, *len);
        }
        None => b.push(0),
    }
}

fn get_rejection(c: &mut Cursor<'_>) -> Result<Rejection> {
    Ok(Rejection {
        stage: c.u64()? as usize,
        reason: c.string()?,
        detail: c.string()?,
        id: c.string()?,
        origin: c.string()?,
        record: match c.byte()? {
            0 => None,
            _ => Some(c.map()?),
        },
        preview: c.string()?,
        tagged_by: get_stages(c)?,
        raw: match c.byte()? {
            0 => None,
            _ => Some((c.string()?, c.u64()?)),
        },
    })
}

fn put_u64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_le_bytes());
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    put_u64(b, s.len() as u64);
    b.extend_from_slice(s.as_bytes());
}

fn put_map(b: &mut Vec<u8>, m: &Map<String, Value>) {
    put_u64(b, m.len() as u64);
    for (k, v) in m {
        put_str(b, k);
        put_value(b, v);
    }
}

fn put_value(b: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => b.push(0),
        Value::Bool(false) => b.push(1),
        Value::Bool(true) => b.push(2),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                b.push(3);
                put_u64(b, u);
            } else if let Some(i) = n.as_i64() {
                b.push(4);
                put_u64(b, i as u64);
            } else {
                b.push(5);
                put_u64(b, n.as_f64().unwrap_or(f64::NAN).to_bits());
            }
        }
        Value::String(s) => {
            b.push(6);
            put_str(b, s);
        }
        Value::Array(a) => {
            b.push(7);
            put_u64(b, a.len() as u64);
            for x in a {
                put_value(b, x);
            }
        }
        Value::Object(m) => {
            b.push(8);
            put_map(b, m);
        }
    }
}

/// Reads the encoding back, checking every length against the frame.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            bail!("frame ends inside a value");
        };
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into()?))
    }

    fn str(&mut self) -> Result<&'a str> {
        let n = self.u64()? as usize;
        Ok(std::str::from_utf8(self.take(n)?)?)
    }

    fn string(&mut self) -> Result<String> {
        Ok(self.str()?.to_string())
    }

    fn map(&mut self) -> Result<Map<String, Value>> {
        let n = self.u64()? as usize;
        let mut m = Map::new();
        for _ in 0..n {
            let k = self.string()?;
            let v = self.value()?;
            m.insert(k, v);
        }
        Ok(m)
    }

    fn value(&mut self) -> Result<Value> {
        Ok(match self.byte()? {
            0 => Value::Null,
            1 => Value::Bool(false),
            2 => Value::Bool(true),
            3 => Value::Number(Number::from(self.u64()?)),
            4 => Value::Number(Number::from(self.u64()? as i64)),
            5 => {
                let f = f64::from_bits(self.u64()?);
                Value::Number(Number::from_f64(f).context("a non-finite number")?)
            }
            6 => Value::String(self.string()?),
            7 => {
                let n = self.u64()? as usize;
                let mut a = Vec::with_capacity(n.min(1 << 16));
                for _ in 0..n {
                    a.push(self.value()?);
                }
                Value::Array(a)
            }
            8 => Value::Object(self.map()?),
            t => bail!("unknown value tag {t}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_round_trip_exactly() {
        let v = json!({
            "a": [1, -2, 3.0000000000000004, 0.1, 1e300, -0.0, u64::MAX, i64::MIN],
            "s": "中文\n\"q\"", "n": null, "t": true, "f": false, "o": {"z": 1, "a": 2}
        });
        let mut b = Vec::new();
        put_value(&mut b, &v);
        let mut c = Cursor { buf: &b, pos: 0 };
        let back = c.value().unwrap();
        assert_eq!(back, v);
        assert_eq!(
            serde_json::to_string(&back).unwrap(),
            serde_json::to_string(&v).unwrap()
        );
        assert_eq!(c.pos, b.len());
        // Truncated input is an error, not a panic.
        for cut in 0..b.len() {
            let mut c = Cursor {
                buf: &b[..cut],
                pos: 0,
            };
            assert!(c.value().is_err());
        }
    }
}
