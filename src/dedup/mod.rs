//! The deduplication engine shared by the `exact_dedup`, `minhash_dedup` and
//! `span_dedup` stages.
//!
//! - [`exact`]: the normalized text hash of exact dedup;
//! - [`minhash`]: MinHash signatures and LSH band keys;
//! - [`store`]: the on-disk prepass (signatures, band runs, union-find clusters,
//!   one decision per record) that a single process runs in one go and a sharded
//!   run splits into observe, buckets and clusters steps (`src/sharded/steps.rs`);
//! - [`spans`] and [`span_split`]: `span_dedup`'s prepass (document counts of
//!   line/sentence hashes, spilled as sorted runs, merged into the set of repeated
//!   spans) and how a text is cut into spans;
//! - [`Prepass`] (here): a stage's handle on its store folder, from observing to
//!   reading decisions back in input order, with the resume cursor;
//! - [`PrepassStore`] (here): what the executor and the sharded steps do with any
//!   stage's prepass, whichever of the two stores it uses.
//!
//! The stages themselves (config, annotations, report) are in `src/stages/`; they
//! implement [`crate::stage::GlobalStage`], which the executor drives.

pub mod common;
pub mod exact;
pub mod minhash;
pub mod span_split;
pub mod spans;
pub mod store;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xxhash_rust::xxh3::xxh3_64;

use store::{Decision, DecisionReader, Layout, Observer, Params, Summary};

/// What the executor (`src/run/prepass.rs`) and the sharded steps
/// (`src/sharded/steps.rs`) do with a global stage's prepass, whatever it stores:
/// clusters of records ([`Prepass`]) or document counts of spans
/// ([`spans::SpanPrepass`]). File names shared by both: a rank's `observed.json` marks
/// its observe step done, `buckets-PPPPP.bin` a buckets task, the global
/// `prepared.json` the clusters step.
pub trait PrepassStore {
    /// Use `dir`: `complete = false` starts observing (into an empty folder);
    /// `true` loads the finished prepass for the main pass.
    fn open(&mut self, dir: &Path, complete: bool) -> Result<()>;

    /// A single-process prepass ends: turn what was observed into decisions.
    fn prepare(&mut self) -> Result<()>;

    /// A sharded run's observe step ends: store this rank's observations.
    fn close_observe(&mut self) -> Result<()>;

    /// Sharded step `buckets:NAME`, task `part` of `parts`: merge that part of every
    /// rank's observations (`rank_dirs`, in rank order) into `global_dir`. Returns a
    /// line for the log.
    fn bucket_step(
        &self,
        rank_dirs: &[PathBuf],
        part: usize,
        parts: usize,
        global_dir: &Path,
    ) -> Result<String>;

    /// Sharded step `clusters:NAME`: the `parts` bucket files -> every rank's
    /// decisions, and `prepared.json` in `global_dir` last. Returns a line for the log.
    fn cluster_step(&self, rank_dirs: &[PathBuf], parts: usize, global_dir: &Path) -> Result<String>;
}

impl PrepassStore for Prepass {
    fn open(&mut self, dir: &Path, complete: bool) -> Result<()> {
        Prepass::open(self, dir, complete)
    }

    fn prepare(&mut self) -> Result<()> {
        Prepass::prepare(self)
    }

    fn close_observe(&mut self) -> Result<()> {
        Prepass::close_observe(self)
    }

    fn bucket_step(
        &self,
        rank_dirs: &[PathBuf],
        part: usize,
        parts: usize,
        global_dir: &Path,
    ) -> Result<String> {
        let layout = Layout::ranks(rank_dirs)?;
        let n = store::bucket_step(&layout, &self.params, part, parts, global_dir)?;
        Ok(format!(
            "buckets {part} of {parts} (bands {:?}): {n} band entries",
            store::band_range(self.params.bands, part, parts)
        ))
    }

    fn cluster_step(&self, rank_dirs: &[PathBuf], parts: usize, global_dir: &Path) -> Result<String> {
        let layout = Layout::ranks(rank_dirs)?;
        let sum = store::cluster_step(&layout, &self.params, parts, global_dir)?;
        Ok(format!(
            "clusters: {} records, {} duplicates in {} clusters",
            sum.records, sum.duplicates, sum.clusters_with_duplicates
        ))
    }
}

/// A stage's prepass in [`store`] files: `open`, then `add` per record and
/// `prepare` (or `close_observe` for a rank's observe step), then `next` per
/// record in the main pass. The byte offset of the next decision is the state a
/// checkpoint saves.
pub struct Prepass {
    kind: &'static str,
    params: Params,
    dir: Option<PathBuf>,
    observer: Option<Observer>,
    summary: Option<Summary>,
    decisions: Option<DecisionReader>,
    cursor: u64,
}

impl Prepass {
    /// A prepass with these clustering settings, for the stage `kind` (error messages).
    pub fn new(kind: &'static str, params: Params) -> Prepass {
        Prepass {
            kind,
            params,
            dir: None,
            observer: None,
            summary: None,
            decisions: None,
            cursor: 0,
        }
    }

    /// The clustering settings (a sharded run's buckets and clusters steps use them).
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Use `dir`: `complete = false` starts observing (into an empty folder);
    /// `true` loads the finished prepass's summary for the main pass.
    pub fn open(&mut self, dir: &Path, complete: bool) -> Result<()> {
        self.dir = Some(dir.to_path_buf());
        if complete {
            self.summary = Some(store::load_summary(dir)?);
        } else {
            self.observer = Some(Observer::create(dir, self.params.clone())?);
        }
        Ok(())
    }

    /// The folder given to [`Prepass::open`].
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Observe the next record: its signature and band keys (`None`: exempt).
    pub fn add(
        &mut self,
        id: &str,
        sig: Option<(&[u32], &[u64])>,
        chars: u32,
        quality: Option<f64>,
    ) -> Result<()> {
        let kind = self.kind;
        self.observer
            .as_mut()
            .with_context(|| format!("{kind}: observe before the prepass was opened"))?
            .add(id, sig, chars, quality)
    }

    /// Cluster what was observed and write the decisions.
    pub fn prepare(&mut self) -> Result<()> {
        let kind = self.kind;
        let observer = self
            .observer
            .take()
            .with_context(|| format!("{kind}: prepare before the prepass was opened"))?;
        self.summary = Some(observer.finish()?);
        Ok(())
    }

    /// A sharded run's observe step ends: store this rank's observations.
    pub fn close_observe(&mut self) -> Result<()> {
        let kind = self.kind;
        self.observer
            .take()
            .with_context(|| format!("{kind}: close_observe before the prepass was opened"))?
            .close()?;
        Ok(())
    }

    /// The finished prepass's counts (`None` before it finished).
    pub fn summary(&self) -> Option<&Summary> {
        self.summary.as_ref()
    }

    /// The main pass: the decision for the next record, checked to be `id`.
    pub fn next(&mut self, id: &str) -> Result<Decision> {
        let kind = self.kind;
        if self.decisions.is_none() {
            let dir = self
                .dir
                .as_deref()
                .with_context(|| format!("{kind}: no prepass folder (the executor runs a prepass first)"))?;
            self.decisions = Some(DecisionReader::open(dir, self.cursor)?);
        }
        let reader = self.decisions.as_mut().expect("opened above");
        let d = reader
            .next_decision()?
            .with_context(|| format!("{kind}: more records than the prepass saw (input changed?)"))?;
        self.cursor = reader.position();
        if d.id_hash != xxh3_64(id.as_bytes()) {
            bail!("{kind}: record `{id}` is not the one the prepass saw at this position (input changed?)");
        }
        Ok(d)
    }

    /// Byte offset of the next decision: what a checkpoint saves.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Resume the main pass at a saved [`Prepass::cursor`].
    pub fn seek(&mut self, cursor: u64) {
        self.cursor = cursor;
        self.decisions = None;
    }
}
