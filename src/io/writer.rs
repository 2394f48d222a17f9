//! Output parts, written durably: into a temp file, flushed and fsynced, then
//! renamed into place. A part that received no records is never created.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use arrow_schema::SchemaRef;

use serde::{Deserialize, Serialize};

/// Output file format of the kept records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    #[default]
    Jsonl,
    Parquet,
}

/// zstd level of JSONL parts unless `compression_level` says otherwise: level 1
/// compresses the pipeline's output at ~500 MB/s per core, level 3 at ~270 (its files
/// are ~12% smaller); compression was ~10% of the default pipeline's CPU.
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;

/// Compression of JSONL parts (Parquet parts always use zstd inside the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    None,
    Gzip,
    #[default]
    Zstd,
}

impl Compression {
    /// File name suffix for this compression.
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => ".gz",
            Compression::Zstd => ".zst",
        }
    }
}

enum Encoder {
    Plain(BufWriter<File>),
    Gzip(flate2::write::GzEncoder<BufWriter<File>>),
    Zstd(zstd::stream::write::Encoder<'static, BufWriter<File>>),
}

impl Encoder {
    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Encoder::Plain(w) => w,
            Encoder::Gzip(w) => w,
            Encoder::Zstd(w) => w,
        }
    }

    fn finish(self) -> Result<File> {
        let buffered = match self {
            Encoder::Plain(w) => w,
            Encoder::Gzip(w) => w.finish()?,
            Encoder::Zstd(w) => w.finish()?,
        };
        buffered.into_inner().map_err(|e| e.into_error().into())
    }
}

/// One output part file (kept or rejected records of one unit).
pub struct PartWriter {
    final_path: PathBuf,
    tmp_path: PathBuf,
    /// The Arrow schema of a Parquet part (its rows are staged as JSON Lines).
    parquet: Option<SchemaRef>,
    compression: Compression,
    level: Option<i32>,
    encoder: Option<Encoder>,
    records: u64,
}

/// Fsync a directory so a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("{}: cannot sync directory", dir.display()))
}

/// Write `bytes` to `path` atomically: temp file, fsync, rename, fsync the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_name(path);
    {
        let mut f = File::create(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot rename into place", path.display()))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// The temp name used while `path` is being written.
pub fn tmp_name(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// The file name of a part: `part-SSSSS-CCCCC` plus format and compression suffix.
pub fn part_file_name(source: usize, chunk: u64, format: OutputFormat, compression: Compression) -> String {
    match format {
        OutputFormat::Parquet => format!("part-{source:05}-{chunk:05}.parquet"),
        OutputFormat::Jsonl => format!("part-{source:05}-{chunk:05}.jsonl{}", compression.suffix()),
    }
}

impl PartWriter {
    /// A part that will land at `final_path` once committed; a Parquet part's rows
    /// must fit `schema`.
    pub fn new(
        final_path: PathBuf,
        format: OutputFormat,
        compression: Compression,
        level: Option<i32>,
        schema: &SchemaRef,
    ) -> Self {
        let parquet = (format == OutputFormat::Parquet).then(|| schema.clone());
        let tmp_path = if parquet.is_some() {
            let mut s = final_path.as_os_str().to_owned();
            s.push(".jsonl.tmp");
            PathBuf::from(s)
        } else {
            tmp_name(&final_path)
        };
        PartWriter {
            final_path,
            tmp_path,
            parquet,
            compression: if format == OutputFormat::Parquet {
                Compression::None
            } else {
                compression
            },
            level,
            encoder: None,
            records: 0,
        }
    }

    fn open(&mut self) -> Result<&mut Encoder> {
        if self.encoder.is_none() {
            let file = File::create(&self.tmp_path)
                .with_context(|| format!("{}: cannot create", self.tmp_path.display()))?;
            let buffered = BufWriter::with_capacity(1 << 20, file);
            self.encoder = Some(match self.compression {
                Compression::None => Encoder::Plain(buffered),
                Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                    buffered,
                    flate2::Compression::new(self.level.unwrap_or(6) as u32),
                )),
                Compression::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(
                    buffered,
                    self.level.unwrap_or(DEFAULT_ZSTD_LEVEL),
                )?),
            });
        }
        Ok(self.encoder.as_mut().expect("just opened"))
    }

    /// Append newline-terminated JSON lines holding `n` records.
    pub fn write_lines(&mut self, bytes: &[u8], n: u64) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let path = self.tmp_path.display().to_string();
        self.open()?
            .writer()
            .write_all(bytes)
            .with_context(|| format!("{path}: write failed"))?;
        self.records += n;
        Ok(())
    }

    /// Finish, fsync and rename into place; returns the path, or `None` if the part is empty.
    pub fn commit(self) -> Result<Option<PathBuf>> {
        let Some(enc) = self.encoder else {
            return Ok(None);
        };
        let file = enc.finish()?;
        file.sync_all()?;
        drop(file);
        if let Some(schema) = &self.parquet {
            let tmp_parquet = tmp_name(&self.final_path);
            crate::io::parquet::jsonl_to_parquet(&self.tmp_path, &tmp_parquet, schema)?;
            File::open(&tmp_parquet)?.sync_all()?;
            std::fs::remove_file(&self.tmp_path)?;
            std::fs::rename(&tmp_parquet, &self.final_path)?;
        } else {
            std::fs::rename(&self.tmp_path, &self.final_path)
                .with_context(|| format!("{}: cannot rename into place", self.final_path.display()))?;
        }
        if let Some(dir) = self.final_path.parent() {
            sync_dir(dir)?;
        }
        Ok(Some(self.final_path))
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }
}
