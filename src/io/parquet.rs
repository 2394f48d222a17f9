//! Parquet in and out, through arrow-rs.
//!
//! Reading: each row becomes one JSON object (arrow-json does the conversion,
//! so nested columns such as ShareGPT `conversations` come out as lists of
//! objects, as HF `datasets` writes them). A file without any text column that
//! the field map names is refused at open, naming the file and its columns.
//!
//! Writing: a part is first streamed to a JSON Lines temp file of rows already
//! conformed to the run's one output schema (`src/shape.rs`); at the end of the part
//! the rows are decoded into Arrow batches of that schema, so memory stays bounded by
//! one batch and every part of a folder has the same schema: the columns are the
//! record's own fields (plus `id` and `meta`), which is what a `datasets` user expects
//! from `load_dataset("parquet", ...)`.

use std::collections::VecDeque;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::{bail, Context, Result};
use arrow_schema::SchemaRef;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::{Payload, Position, RawItem, Source, SourceReader};
use crate::record::FieldMap;

/// Reads the rows of one Parquet file as JSON objects.
pub struct ParquetSource {
    batches: ParquetRecordBatchReader,
    pending: VecDeque<String>,
    index: u64,
    done: bool,
    name: String,
}

impl ParquetSource {
    /// Open a Parquet file and check it has a text column.
    pub fn open(source: &Source, fields: &FieldMap) -> Result<Self> {
        let name = source.path.display().to_string();
        let file = File::open(&source.path).with_context(|| format!("{name}: cannot open"))?;
        // Progress: the reader seeks around the file, so it counts whole here.
        super::count_input_bytes(file.metadata().map_or(0, |m| m.len()));
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .with_context(|| format!("{name}: not a readable Parquet file"))?;
        let columns: Vec<String> = builder
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let wanted = [
            &fields.text,
            &fields.html,
            &fields.instruction,
            &fields.conversations,
            &fields.messages,
            &fields.prompt,
        ];
        if !wanted.iter().any(|w| columns.iter().any(|c| c == *w)) {
            bail!(
                "{name}: wrong schema: no text column; found columns [{}], expected one of [{}] (map yours with [input.fields])",
                columns.join(", "),
                wanted.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
        let batches = builder
            .with_batch_size(1024)
            .build()
            .with_context(|| format!("{name}: cannot read"))?;
        Ok(ParquetSource {
            batches,
            pending: VecDeque::new(),
            index: 0,
            done: false,
            name,
        })
    }

    fn refill(&mut self) -> Result<bool> {
        let Some(batch) = self.batches.next() else {
            return Ok(false);
        };
        let batch = batch.with_context(|| format!("{}: corrupt row group", self.name))?;
        let mut buf = Vec::new();
        {
            let mut w = arrow_json::LineDelimitedWriter::new(&mut buf);
            w.write(&batch)
                .with_context(|| format!("{}: cannot convert rows to JSON", self.name))?;
            w.finish()?;
        }
        let text = String::from_utf8(buf).context("arrow-json produced invalid UTF-8")?;
        self.pending.extend(text.lines().map(String::from));
        Ok(true)
    }
}

impl SourceReader for ParquetSource {
    fn next_item(&mut self) -> Option<RawItem> {
        while self.pending.is_empty() && !self.done {
            match self.refill() {
                Ok(true) => {}
                Ok(false) => self.done = true,
                Err(e) => {
                    self.done = true;
                    let pos = Position {
                        index: self.index,
                        line: 0,
                    };
                    self.index += 1;
                    return Some(RawItem {
                        pos,
                        payload: Payload::Malformed {
                            detail: format!("{e:#}; the rest of the file is lost"),
                            raw: Vec::new(),
                            raw_len: 0,
                        },
                    });
                }
            }
        }
        let row = self.pending.pop_front()?;
        let pos = Position {
            index: self.index,
            line: 0,
        };
        self.index += 1;
        Some(RawItem {
            pos,
            payload: Payload::Row(row),
        })
    }
}

/// Convert a JSON Lines file of output records into a Parquet file (zstd inside) of
/// `schema`; a row with a key or type outside it is an error (strict decoding), not a loss.
pub fn jsonl_to_parquet(jsonl: &Path, out: &Path, schema: &SchemaRef) -> Result<u64> {
    let reader = BufReader::new(File::open(jsonl)?);
    let rows = arrow_json::ReaderBuilder::new(schema.clone())
        .with_batch_size(4096)
        .with_strict_mode(true)
        .build(reader)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_created_by(format!("curate {}", env!("CARGO_PKG_VERSION")))
        .build();
    let file = File::create(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props))?;
    let mut n = 0;
    for batch in rows {
        let batch =
            batch.with_context(|| format!("{}: rows do not fit the output schema", jsonl.display()))?;
        n += batch.num_rows() as u64;
        writer.write(&batch)?;
    }
    writer.close()?;
    Ok(n)
}
