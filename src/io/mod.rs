//! Input sources and output parts.
//!
//! A *source* is one input path after glob expansion: a JSONL or JSON file
//! (optionally `.gz`/`.zst`), a Parquet file, or a directory of HTML pages.
//! Readers turn a source into a stream of [`RawItem`]s. They do no JSON parsing
//! themselves (that runs in parallel in the executor) and never fail on a bad
//! record: a broken line, invalid UTF-8, an oversized record or a truncated
//! compressed stream becomes a [`Payload::Malformed`] item with its position.
//! Only a source that cannot be opened at all is an error.

pub mod csv;
pub mod html;
pub mod jsonl;
pub mod parquet;
pub mod remote;
pub mod writer;

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::error::config_error;
use crate::record::FieldMap;

/// How input files are read; `auto` decides by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum InputFormat {
    #[default]
    Auto,
    /// One JSON object per line.
    Jsonl,
    /// A JSON array of objects (or JSON lines under a `.json` name: sniffed).
    Json,
    Parquet,
    /// A directory of `.html`/`.htm` files (or one such file), one record per page.
    Html,
}

/// Remove `.` and `name/..` pairs without touching the file system
/// (`pipelines/../out` -> `out`), so messages show the path a user expects.
pub fn lexical_clean(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out: Vec<Component> = Vec::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.last(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.is_empty() {
        PathBuf::from(".")
    } else {
        out.iter().collect()
    }
}

/// How a source's bytes are compressed, from its file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Plain,
    Gzip,
    Zstd,
}

/// The reader a source needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Jsonl,
    Json,
    Parquet,
    HtmlDir,
    HtmlFile,
}

/// One input path, resolved.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    /// The name used in derived ids and messages: the path relative to the common
    /// folder of all sources, so ids do not depend on where the data lives.
    pub name: Arc<str>,
    pub kind: SourceKind,
    pub codec: Codec,
    /// For `s3://` inputs: the object's URL and size (`path` then only names it).
    pub remote: Option<RemoteObject>,
}

/// An input object in an object store.
#[derive(Debug, Clone)]
pub struct RemoteObject {
    pub url: String,
    pub size: u64,
}

/// Where a raw item sits in its source.
#[derive(Debug, Clone, Copy, Default)]
pub struct Position {
    /// 0-based index of the item among its source's records.
    pub index: u64,
    /// 1-based line where it starts, 0 where lines do not apply.
    pub line: u64,
}

/// What a reader produced for one record.
#[derive(Debug)]
pub enum Payload {
    /// One JSON value's bytes, not yet parsed.
    Json(Vec<u8>),
    /// A row already turned into JSON text by a columnar reader.
    Row(String),
    /// An HTML page: its raw bytes and the file it came from (relative name).
    Html { bytes: Vec<u8>, file: String },
    /// Unreadable: why, and the first bytes of what was there.
    Malformed {
        detail: String,
        raw: Vec<u8>,
        raw_len: u64,
    },
}

/// One record as read, before parsing.
#[derive(Debug)]
pub struct RawItem {
    pub pos: Position,
    pub payload: Payload,
}

impl RawItem {
    /// Bytes this item holds, for batching and throughput numbers.
    pub fn size(&self) -> usize {
        match &self.payload {
            Payload::Json(b) => b.len(),
            Payload::Row(s) => s.len(),
            Payload::Html { bytes, .. } => bytes.len(),
            Payload::Malformed { raw_len, .. } => *raw_len as usize,
        }
    }
}

/// How many raw bytes of a malformed record are kept for the rejected file.
pub const MALFORMED_KEEP_BYTES: usize = 64 << 10;

/// A stream of items from one source.
pub trait SourceReader: Send {
    /// The next item, `None` at the end. Read problems come back as `Malformed` items.
    fn next_item(&mut self) -> Option<RawItem>;
    /// Notes about the source for the stats (blank lines skipped, ...).
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
}

fn codec_of(path: &Path) -> Codec {
    match path.extension().and_then(|e| e.to_str()) {
        Some("gz") => Codec::Gzip,
        Some("zst") | Some("zstd") => Codec::Zstd,
        _ => Codec::Plain,
    }
}

/// The extension that says the format, below any compression suffix.
fn inner_extension(path: &Path) -> String {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let name = name
        .strip_suffix(".gz")
        .or_else(|| name.strip_suffix(".zst"))
        .or_else(|| name.strip_suffix(".zstd"))
        .unwrap_or(name);
    Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

fn kind_of(path: &Path, format: InputFormat) -> Result<SourceKind> {
    if path.is_dir() {
        return match format {
            InputFormat::Auto | InputFormat::Html => Ok(SourceKind::HtmlDir),
            other => Err(config_error(format!(
                "{}: is a directory; only format \"html\" reads directories (format is {other:?})",
                path.display()
            ))),
        };
    }
    let ext = inner_extension(path);
    Ok(match format {
        InputFormat::Jsonl => SourceKind::Jsonl,
        InputFormat::Json => SourceKind::Json,
        InputFormat::Parquet => SourceKind::Parquet,
        InputFormat::Html => SourceKind::HtmlFile,
        InputFormat::Auto => match ext.as_str() {
            "jsonl" | "ndjson" => SourceKind::Jsonl,
            "json" => SourceKind::Json,
            "parquet" => SourceKind::Parquet,
            "html" | "htm" => SourceKind::HtmlFile,
            _ => {
                return Err(config_error(format!(
                    "{}: cannot tell the format from the extension `.{ext}`; set [input] format",
                    path.display()
                )))
            }
        },
    })
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Expand configured paths and globs into sources, in a stable order.
///
/// `base` resolves relative patterns (the config's folder, or the working
/// directory for `--input`). Every pattern must match something.
pub fn expand_inputs(patterns: &[String], base: &Path, format: InputFormat) -> Result<Vec<Source>> {
    let (remote, local): (Vec<String>, Vec<String>) =
        patterns.iter().cloned().partition(|p| remote::is_remote(p));
    let mut sources = expand_local(&local, base, format)?;
    sources.extend(expand_remote(&remote, format)?);
    Ok(sources)
}

/// `s3://bucket/prefix/*.jsonl` patterns: listed, matched (glob syntax on the key), sorted.
fn expand_remote(patterns: &[String], format: InputFormat) -> Result<Vec<Source>> {
    let mut objects: Vec<(String, u64)> = Vec::new();
    for pat in patterns {
        let (bucket_name, key) =
            remote::split_url(pat).map_err(|e| config_error(format!("[input] paths: {e}")))?;
        let bucket = remote::Bucket::open(&bucket_name)?;
        if has_glob(&key) {
            let fixed = &key[..key.find(['*', '?', '[']).unwrap_or(key.len())];
            let prefix = fixed.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            let matcher = glob::Pattern::new(&key)
                .map_err(|e| config_error(format!("[input] paths: bad pattern `{pat}`: {e}")))?;
            let found: Vec<(String, u64)> = bucket
                .list(prefix)?
                .into_iter()
                .filter(|(k, _)| matcher.matches(k))
                .map(|(k, n)| (format!("s3://{bucket_name}/{k}"), n))
                .collect();
            if found.is_empty() {
                return Err(config_error(format!("[input] paths: `{pat}` matches no object")));
            }
            objects.extend(found);
        } else {
            match bucket.size(&key)? {
                Some(n) => objects.push((pat.clone(), n)),
                None => return Err(config_error(format!("[input] paths: `{pat}`: no such object"))),
            }
        }
    }
    let common = common_parent(&objects.iter().map(|(u, _)| PathBuf::from(u)).collect::<Vec<_>>());
    objects
        .into_iter()
        .map(|(url, size)| {
            let path = PathBuf::from(&url);
            if format == InputFormat::Html && !url.ends_with(".html") && !url.ends_with(".htm") {
                return Err(config_error(format!(
                    "{url}: HTML directories are not read from S3; list the pages"
                )));
            }
            let kind = kind_of(&path, format)?;
            let name = path
                .strip_prefix(&common)
                .ok()
                .filter(|p| !p.as_os_str().is_empty())
                .map(|p| p.to_string_lossy().to_string())
                .unwrap_or_else(|| url.clone());
            Ok(Source {
                codec: codec_of(&path),
                name: name.into(),
                kind,
                path,
                remote: Some(RemoteObject { url, size }),
            })
        })
        .collect()
}

fn expand_local(patterns: &[String], base: &Path, format: InputFormat) -> Result<Vec<Source>> {
    let mut paths: Vec<PathBuf> = Vec::new();
    for pat in patterns {
        let full = if Path::new(pat).is_absolute() {
            PathBuf::from(pat)
        } else {
            lexical_clean(&base.join(pat))
        };
        if has_glob(pat) {
            let full_str = full.to_string_lossy().to_string();
            let mut found: Vec<PathBuf> = glob::glob(&full_str)
                .map_err(|e| config_error(format!("[input] paths: bad pattern `{pat}`: {e}")))?
                .filter_map(|r| r.ok())
                .filter(|p| !p.is_dir() || format == InputFormat::Html)
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(config_error(format!(
                    "[input] paths: `{pat}` matches no file (looked for {full_str})"
                )));
            }
            paths.extend(found);
        } else {
            if !full.exists() {
                return Err(config_error(format!(
                    "[input] paths: `{pat}`: no such file or directory ({})",
                    full.display()
                )));
            }
            if full.is_dir() {
                paths.extend(directory_inputs(&full, pat, format)?);
            } else {
                paths.push(full);
            }
        }
    }
    let common = common_parent(&paths);
    paths
        .into_iter()
        .map(|path| {
            let kind = kind_of(&path, format)?;
            let name = path
                .strip_prefix(&common)
                .ok()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(&path)
                .to_string_lossy()
                .to_string();
            Ok(Source {
                codec: if path.is_dir() {
                    Codec::Plain
                } else {
                    codec_of(&path)
                },
                name: name.into(),
                kind,
                path,
                remote: None,
            })
        })
        .collect()
}

/// What a directory given as an input stands for: itself, a folder of HTML pages (one
/// record per page), when it holds `.html` files and the format allows HTML; otherwise
/// the record files under it (`.jsonl`, `.json`, `.parquet`, compressed or not; those of
/// the configured format when one is set), sorted. A directory with neither is an error
/// naming it, never a run that reads nothing.
fn directory_inputs(dir: &Path, pat: &str, format: InputFormat) -> Result<Vec<PathBuf>> {
    if matches!(format, InputFormat::Auto | InputFormat::Html) && !html::list_pages(dir)?.is_empty() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let wanted = |p: &Path| {
        let ext = inner_extension(p);
        match format {
            InputFormat::Auto => matches!(ext.as_str(), "jsonl" | "ndjson" | "json" | "parquet"),
            InputFormat::Jsonl => matches!(ext.as_str(), "jsonl" | "ndjson"),
            InputFormat::Json => ext == "json",
            InputFormat::Parquet => ext == "parquet",
            InputFormat::Html => false,
        }
    };
    let files = walk_files(dir, wanted)?;
    if files.is_empty() {
        let looked_for = match format {
            InputFormat::Auto => ".html pages or .jsonl/.json/.parquet files",
            InputFormat::Html => ".html pages",
            InputFormat::Jsonl => ".jsonl files",
            InputFormat::Json => ".json files",
            InputFormat::Parquet => ".parquet files",
        };
        return Err(config_error(format!(
            "[input] paths: `{pat}` is a directory with no {looked_for} in it ({})",
            dir.display()
        )));
    }
    Ok(files)
}

fn common_parent(paths: &[PathBuf]) -> PathBuf {
    let parent = |p: &PathBuf| -> PathBuf { p.parent().map(Path::to_path_buf).unwrap_or_default() };
    let Some(first) = paths.first() else {
        return PathBuf::new();
    };
    let mut common = parent(first);
    for p in &paths[1..] {
        while !p.starts_with(&common) {
            if !common.pop() {
                return PathBuf::new();
            }
        }
    }
    common
}

/// Every file under `dir` (recursively) that `keep` accepts, sorted by path so the
/// order never depends on the file system.
pub fn walk_files(dir: &Path, keep: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("{}: cannot list", d.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if keep(&path) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Bytes this process has read from input files (before decompression) and from a
/// prepass's spill, for the progress bar: one counter for all readers, since progress is
/// per process (the bar measures what was read since it started).
static INPUT_BYTES_READ: AtomicU64 = AtomicU64::new(0);

/// Bytes read from input files so far (compressed bytes for compressed files; a Parquet
/// file counts whole when it is opened).
pub fn input_bytes_read() -> u64 {
    INPUT_BYTES_READ.load(Ordering::Relaxed)
}

/// Add `n` bytes to [`input_bytes_read`].
pub fn count_input_bytes(n: u64) {
    INPUT_BYTES_READ.fetch_add(n, Ordering::Relaxed);
}

/// On-disk size of the sources (local files and S3 objects): the progress bar's total.
pub fn sources_size(sources: &[Source]) -> u64 {
    sources
        .iter()
        .map(|s| match &s.remote {
            Some(obj) => obj.size,
            None => tree_size(&s.path),
        })
        .sum()
}

/// Size of a file, or of every file under a folder (an HTML folder source).
pub fn tree_size(path: &Path) -> u64 {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => m.len(),
        Ok(m) if m.is_dir() => {
            std::fs::read_dir(path).map_or(0, |entries| entries.flatten().map(|e| tree_size(&e.path())).sum())
        }
        _ => 0,
    }
}

/// A file whose reads count toward [`input_bytes_read`].
pub struct CountedFile(File);

impl CountedFile {
    /// Open `path` for counted reading.
    pub fn open(path: &Path) -> std::io::Result<CountedFile> {
        File::open(path).map(CountedFile)
    }
}

impl Read for CountedFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        count_input_bytes(n as u64);
        Ok(n)
    }
}

/// Open a file for reading, decompressing by its extension.
pub fn open_decompressed(path: &Path, named: Codec) -> Result<Box<dyn Read + Send>> {
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut buffered = BufReader::with_capacity(1 << 16, CountedFile(file));
    let codec =
        sniff_codec(&mut buffered, named).with_context(|| format!("{}: read error", path.display()))?;
    Ok(match codec {
        Codec::Plain => Box::new(buffered),
        Codec::Gzip => Box::new(flate2::read::MultiGzDecoder::new(buffered)),
        Codec::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(buffered)
                .with_context(|| format!("{}: cannot start zstd decoder", path.display()))?,
        ),
    })
}

/// The compression the file's first bytes show (gzip `1f 8b`, zstd `28 b5 2f fd`),
/// whatever its name says: a plain file named `.gz` is read as plain (flate2 would
/// read it as an empty stream, and the whole file would be lost without a word),
/// and a gzip file without the suffix is decompressed. An empty file keeps its name's codec.
fn sniff_codec<R: Read>(reader: &mut BufReader<R>, named: Codec) -> std::io::Result<Codec> {
    use std::io::BufRead;
    let head = reader.fill_buf()?;
    Ok(if head.is_empty() {
        named
    } else if head.starts_with(&[0x1f, 0x8b]) {
        Codec::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Codec::Zstd
    } else if head.len() < 4 && named == Codec::Zstd && [0x28, 0xb5, 0x2f].starts_with(head) {
        named // a zstd file cut inside its magic: its decoder reports the truncation
    } else {
        Codec::Plain
    })
}

/// Open the reader a source needs.
pub fn open_source(
    source: &Source,
    max_record_bytes: u64,
    fields: &FieldMap,
) -> Result<Box<dyn SourceReader>> {
    if let Some(obj) = &source.remote {
        return open_remote(source, obj, max_record_bytes, fields);
    }
    Ok(match source.kind {
        SourceKind::Jsonl => Box::new(jsonl::JsonlReader::open(source, max_record_bytes, false)?),
        SourceKind::Json => Box::new(jsonl::JsonlReader::open(source, max_record_bytes, true)?),
        SourceKind::Parquet => Box::new(parquet::ParquetSource::open(source, fields)?),
        SourceKind::HtmlDir | SourceKind::HtmlFile => {
            Box::new(html::HtmlReader::open(source, max_record_bytes)?)
        }
    })
}

/// A reader over a downloaded copy of an S3 object; the copy goes when the reader does.
struct RemoteReader {
    inner: Box<dyn SourceReader>,
    _copy: tempfile::TempDir,
}

impl SourceReader for RemoteReader {
    fn next_item(&mut self) -> Option<RawItem> {
        self.inner.next_item()
    }
    fn notes(&self) -> Vec<String> {
        self.inner.notes()
    }
}

/// Stream the object into a temporary file (same base name, so the codec and messages
/// still say what it is), then read that with the local reader.
fn open_remote(
    source: &Source,
    obj: &RemoteObject,
    max_record_bytes: u64,
    fields: &FieldMap,
) -> Result<Box<dyn SourceReader>> {
    let (bucket, key) = remote::Bucket::for_url(&obj.url)?;
    let dir = tempfile::Builder::new()
        .prefix("curate-s3-")
        .tempdir()
        .context("cannot create a temporary folder for S3 input")?;
    let base = key.rsplit('/').next().unwrap_or("object");
    let local = dir.path().join(base);
    let mut f = std::io::BufWriter::new(
        File::create(&local).with_context(|| format!("{}: cannot create", local.display()))?,
    );
    bucket.download_to(&key, &mut f)?;
    std::io::Write::flush(&mut f).with_context(|| format!("{}: cannot write", local.display()))?;
    drop(f);
    let copy = Source {
        path: local,
        remote: None,
        ..source.clone()
    };
    let inner = open_source(&copy, max_record_bytes, fields)?;
    Ok(Box::new(RemoteReader { inner, _copy: dir }))
}

/// Describe a source's size for `curate validate` and progress.
pub fn source_bytes(source: &Source) -> u64 {
    if let Some(obj) = &source.remote {
        return obj.size;
    }
    if source.path.is_dir() {
        html::list_pages(&source.path)
            .map(|v| v.iter().filter_map(|p| p.metadata().ok()).map(|m| m.len()).sum())
            .unwrap_or(0)
    } else {
        source.path.metadata().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_named_relative_to_their_common_folder_and_sorted() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::create_dir_all(d.join("data/zh")).unwrap();
        std::fs::create_dir_all(d.join("data/en")).unwrap();
        for f in ["data/zh/b.jsonl", "data/zh/a.jsonl.zst", "data/en/c.parquet"] {
            std::fs::write(d.join(f), "").unwrap();
        }
        let pats = vec!["data/zh/*".to_string(), "data/en/c.parquet".to_string()];
        let s = expand_inputs(&pats, d, InputFormat::Auto).unwrap();
        let names: Vec<&str> = s.iter().map(|s| &*s.name).collect();
        assert_eq!(names, ["zh/a.jsonl.zst", "zh/b.jsonl", "en/c.parquet"]);
        assert_eq!((s[0].kind, s[0].codec), (SourceKind::Jsonl, Codec::Zstd));
        assert_eq!(s[2].kind, SourceKind::Parquet);
        let err = expand_inputs(&["nope/*.jsonl".to_string()], d, InputFormat::Auto).unwrap_err();
        assert!(err.to_string().contains("matches no file"));
        std::fs::write(d.join("x.txt"), "").unwrap();
        let err = expand_inputs(&["x.txt".to_string()], d, InputFormat::Auto).unwrap_err();
        assert!(err.to_string().contains("set [input] format"));
    }

    #[test]
    fn lexical_clean_removes_dot_dot() {
        assert_eq!(lexical_clean(Path::new("pipelines/../out/x")), Path::new("out/x"));
        assert_eq!(lexical_clean(Path::new("./a/./b")), Path::new("a/b"));
        assert_eq!(lexical_clean(Path::new("../a")), Path::new("../a"));
        assert_eq!(lexical_clean(Path::new("a/..")), Path::new("."));
    }
}
