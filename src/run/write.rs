//! Writing: the writer thread appends serialized lines to the current unit's
//! `kept/` and `rejected/` part files and, when a unit ends, commits them (fsync +
//! rename) and only then the checkpoint, so a unit is marked done only once its
//! output is durable. Rejected parts have the kept parts' format.

use std::path::PathBuf;
use std::sync::mpsc::Receiver;

use anyhow::Result;
use arrow_schema::SchemaRef;
use serde_json::{json, Map, Value};

use super::checkpoint::{commit_checkpoint, Checkpoint};
use super::read::Rejection;
use crate::io::writer::{part_file_name, PartWriter};
use crate::shape::{Conform, Shape};

/// What the writer needs to close a unit.
pub(super) struct UnitEnd {
    pub(super) checkpoint: Checkpoint,
    pub(super) states: Vec<Option<Vec<u8>>>,
}

/// A processed batch: serialized kept and rejected lines, and the rejections for the books.
pub(super) type BatchOutput = (Vec<u8>, u64, Vec<u8>, u64, Vec<Rejection>);

pub(super) struct WriteBatch {
    pub(super) source: usize,
    pub(super) chunk: u64,
    pub(super) kept: Vec<u8>,
    pub(super) n_kept: u64,
    pub(super) rejected: Vec<u8>,
    pub(super) n_rejected: u64,
    pub(super) end: Option<Box<UnitEnd>>,
}

/// A `rejected/` line: id, stage, reason, detail, source, and the record or raw bytes,
/// conformed to the run's rejected shape ([`OutputSchema::rejected_shape`]). The
/// record and raw bytes are moved into the line's value (the books after it do not
/// read them), so a rejected record is not copied again.
pub(super) fn rejection_line(r: &mut Rejection, stage_names: &[String], shape: &Shape) -> Vec<u8> {
    let mut m = Map::new();
    m.insert("id".into(), Value::String(r.id.clone()));
    m.insert("stage".into(), Value::String(stage_names[r.stage].clone()));
    m.insert("reason".into(), Value::String(r.reason.clone()));
    m.insert("detail".into(), Value::String(r.detail.clone()));
    m.insert("source".into(), Value::String(r.origin.clone()));
    if let Some(rec) = r.record.take() {
        m.insert("record".into(), Value::Object(rec));
    }
    if let Some((raw, len)) = r.raw.take() {
        m.insert("raw".into(), Value::String(raw));
        m.insert("raw_bytes".into(), json!(len));
    }
    let row = Value::Object(m);
    let mut line = serde_json::to_vec(&Conform {
        shape,
        value: Some(&row),
    })
    .expect("JSON values always serialize");
    line.push(b'\n');
    line
}

pub(super) struct WriterState {
    pub(super) out_dir: PathBuf,
    pub(super) cfg: crate::config::OutputConfig,
    /// The Arrow schemas of the kept and rejected parts (Parquet output).
    pub(super) kept_schema: SchemaRef,
    pub(super) rejected_schema: SchemaRef,
    pub(super) current: Option<(usize, u64, PartWriter, PartWriter)>,
}

/// Append batches to the unit's part files; at a unit's end commit them, then the checkpoint.
pub(super) fn writer_thread(mut st: WriterState, rx: Receiver<WriteBatch>) -> Result<()> {
    for msg in rx {
        let fresh = !matches!(&st.current, Some((s, c, _, _)) if *s == msg.source && *c == msg.chunk);
        if fresh {
            let kept = st.out_dir.join("kept").join(part_file_name(
                msg.source,
                msg.chunk,
                st.cfg.format,
                st.cfg.compression,
            ));
            let rejected = st.out_dir.join("rejected").join(part_file_name(
                msg.source,
                msg.chunk,
                st.cfg.format,
                st.cfg.compression,
            ));
            let c = &st.cfg;
            st.current = Some((
                msg.source,
                msg.chunk,
                PartWriter::new(
                    kept,
                    c.format,
                    c.compression,
                    c.compression_level,
                    &st.kept_schema,
                ),
                PartWriter::new(
                    rejected,
                    c.format,
                    c.compression,
                    c.compression_level,
                    &st.rejected_schema,
                ),
            ));
        }
        let (_, _, kept, rejected) = st.current.as_mut().expect("set above");
        kept.write_lines(&msg.kept, msg.n_kept)?;
        rejected.write_lines(&msg.rejected, msg.n_rejected)?;
        if let Some(end) = msg.end {
            let (_, _, kept, rejected) = st.current.take().expect("set above");
            let mut cp = end.checkpoint;
            kept.commit()?;
            rejected.commit()?;
            commit_checkpoint(&st.out_dir, &mut cp, end.states)?;
        }
    }
    Ok(())
}
