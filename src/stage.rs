//! The stage interfaces: what every pipeline step implements.
//!
//! A [`Stage`] sees one record at a time and returns a [`Verdict`]: keep it, say
//! it was modified, or drop it with a reason. Stages write what they measured
//! into `record.meta` so every decision can be inspected afterwards; the `action`
//! in the stage's config decides whether a finding drops, tags or redacts. The
//! executor calls `process` in parallel, so a stage must not depend on other
//! records; results keep input order, so output never depends on the thread count.
//!
//! A [`GlobalStage`] decides with a view of other records (dedup). The executor
//! calls [`GlobalStage::key`] in parallel (the expensive per-record work: a hash,
//! a signature) and [`GlobalStage::decide`] in input order on one thread, handing
//! it the key; the key is typed ([`GlobalStage::Key`]), never a side channel in
//! the record.
//!
//! A global stage whose decision for one record depends on records *after* it
//! (clustering, "keep the longest copy") asks for a **prepass**
//! ([`GlobalStage::needs_prepass`]): before the main pass the executor reads the
//! input once, runs the stages before it (fresh copies, so their state is not
//! touched), computes each record's key and hands it to [`GlobalStage::observe`]
//! in input order, then calls [`crate::dedup::PrepassStore::prepare`], which stores all
//! decisions in the stage's prepass folder (inside the output's `.curate/`). The
//! main pass calls `decide` as usual, which reads the decision back. A resumed run
//! reuses the finished prepass; a run that crashed before its first checkpoint
//! redoes it (same input, same result). Sharded runs split the prepass into steps
//! over ranks (`src/sharded/steps.rs`).

use std::path::{Path, PathBuf};

use std::any::Any;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::dedup::PrepassStore;
use crate::record::{FieldMap, Record};
use crate::shape::Shape;

/// What a stage decided about one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Passed unchanged (annotations in `meta` do not count as a change).
    Keep,
    /// Passed with its text changed (normalized, redacted, extracted).
    Modified,
    /// Passed unchanged but flagged by a stage whose `action` is `tag`: counted as
    /// `tagged` in the stage's books, the finding (`flag = reason`) is in `meta`.
    Tagged { reason: String },
    /// Rejected: `reason` is a short stable code (`too_short`), `detail` says why in words.
    Drop { reason: String, detail: String },
}

impl Verdict {
    /// A drop with a reason code and a human-readable detail.
    pub fn drop(reason: impl Into<String>, detail: impl Into<String>) -> Verdict {
        Verdict::Drop {
            reason: reason.into(),
            detail: detail.into(),
        }
    }
}

/// Record a finding under `meta.<kind>` and apply the action: `Tag` keeps the record with
/// `flag = reason` and `detail` added to the annotation; any other action drops it.
pub fn flag_or_drop(
    record: &mut Record,
    kind: &str,
    mut meta: serde_json::Value,
    action: Action,
    reason: &str,
    detail: String,
) -> Verdict {
    if action == Action::Tag {
        meta["flag"] = serde_json::json!(reason);
        meta["detail"] = serde_json::json!(detail);
        record.annotate(kind, meta);
        Verdict::Tagged {
            reason: reason.to_string(),
        }
    } else {
        record.annotate(kind, meta);
        Verdict::drop(reason, detail)
    }
}

/// The shape of an annotation written through [`flag_or_drop`]: with `action = "tag"`
/// the finding's `flag` and `detail` are keys of it too.
pub fn flagged_shape(action: Action, shape: Shape) -> Shape {
    match shape {
        Shape::Struct(mut fields) if action == Action::Tag => {
            fields.push(("flag".into(), Shape::Str));
            fields.push(("detail".into(), Shape::Str));
            Shape::Struct(fields)
        }
        other => other,
    }
}

/// A number a stage writes under `meta` and decides by, declared so that `report.html`
/// can draw its distribution (split by what the stage did) around the threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Where it is: `meta.<key>.<field>` (`toxicity`, `score`); `field` may be dotted.
    pub key: String,
    pub field: String,
    /// The threshold in force.
    pub threshold: f64,
    /// Which side of the threshold the stage flags.
    pub flags: Flags,
    /// The histogram's range; values outside it count in the first or last bin.
    pub range: [f64; 2],
}

impl Score {
    /// A score in `[0, 1]` at `meta.<key>.<field>`.
    pub fn unit(key: &str, field: &str, threshold: f64, flags: Flags) -> Score {
        Score {
            key: key.to_string(),
            field: field.to_string(),
            threshold,
            flags,
            range: [0.0, 1.0],
        }
    }

    /// An `f32` setting as written in the config (`0.65`, not `0.6499999761581421`).
    pub fn decimal(x: f32) -> f64 {
        x.to_string().parse().unwrap_or(f64::from(x))
    }

    /// The value in a record's `meta`; `field` may be a dotted path (`quality.score`).
    pub fn value_in(&self, meta: &serde_json::Map<String, Value>) -> Option<f64> {
        let mut v = meta.get(&self.key)?;
        for part in self.field.split('.') {
            v = v.get(part)?;
        }
        v.as_f64()
    }

    /// True when `value` is on the side of the threshold that the stage flags.
    pub fn flagged(&self, value: f64) -> bool {
        match self.flags {
            Flags::AtOrAbove => value >= self.threshold,
            Flags::Above => value > self.threshold,
            Flags::Below => value < self.threshold,
        }
    }
}

/// The side of a [`Score`]'s threshold that a stage flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flags {
    /// `value >= threshold` (toxicity, machine_text, near-duplicate similarity).
    AtOrAbove,
    /// `value > threshold` (quality's `max_*` limits).
    Above,
    /// `value < threshold` (quality's `min_*` limits, language confidence).
    Below,
}

/// What a stage does with a record its check flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Reject the record (it goes to `rejected/` with the stage and reason).
    #[default]
    Drop,
    /// Keep the record and only record the finding in `meta`.
    Tag,
    /// Keep the record with the offending spans replaced (PII).
    Redact,
}

/// What a stage may look at while it is built: where relative resource paths resolve.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// Folder of the pipeline file; relative paths in stage tables resolve against it.
    pub config_dir: PathBuf,
}

impl BuildContext {
    /// Resolve a path from a stage table against the config file's folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.config_dir.join(p)
        }
    }
}

/// What a stage may use after the last record: the finished output.
#[derive(Debug, Clone)]
pub struct FinishContext {
    /// The run's output directory (kept parts under `kept/`).
    pub output_dir: PathBuf,
    /// Paths of the kept parts, in order.
    pub kept_parts: Vec<PathBuf>,
    /// `--quiet`: no progress lines on stderr.
    pub quiet: bool,
    /// One rank of a sharded run: the kept parts are this rank's share only.
    pub sharded: bool,
}

/// A per-record pipeline step. See the module docs for the execution model.
pub trait Stage: Send + Sync {
    /// The `kind` this stage was built from (`length`, `pii`, ...).
    fn kind(&self) -> &'static str;

    /// Per-record work, called in parallel; must not depend on other records.
    fn process(&self, record: &mut Record) -> Result<Verdict>;

    /// A one-line description of the configured stage for `curate validate`.
    fn describe(&self) -> String;

    /// The shape of every `meta.<key>` this stage writes, fixed before the first
    /// record so that all output parts share one schema (`src/shape.rs`); optional
    /// keys are declared too (written as null when absent).
    fn annotations(&self) -> Vec<(&'static str, Shape)>;

    /// Record fields this stage adds (extract's `text`, named by the input's field map),
    /// with their shapes.
    fn added_fields(&self, _map: &FieldMap) -> Vec<(String, Shape)> {
        Vec::new()
    }

    /// Called once after the last record, with the output written (fine-tuning runs here).
    fn finish(&mut self, _ctx: &FinishContext) -> Result<()> {
        Ok(())
    }

    /// Stage-specific numbers for `stats.json` (histograms, thresholds in force).
    fn summary(&self) -> Option<Value> {
        None
    }

    /// The numbers in `meta` it decides by, for the report's histograms; none by default.
    fn scores(&self) -> Vec<Score> {
        Vec::new()
    }

    /// A stage-specific section for `report.html` (an HTML fragment, already escaped).
    fn report_html(&self) -> Option<String> {
        None
    }

    /// Text as it may be shown to a person (report samples): a stage that finds
    /// sensitive spans (PII) returns the text with them masked. `None`: nothing to mask.
    fn scrub_for_display(&self, _text: &str) -> Option<String> {
        None
    }

    /// What the stage accumulated (tallies for its report), saved with each
    /// checkpoint so a resumed run continues exactly where it stopped. `None`: stateless.
    fn save_state(&self) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }

    /// Restore what [`Stage::save_state`] saved.
    fn load_state(&mut self, _state: &[u8]) -> Result<()> {
        Ok(())
    }
}

/// A pipeline step that decides with a view of other records (dedup). See the module docs.
pub trait GlobalStage: Send + Sync {
    /// What [`GlobalStage::key`] computes per record (a hash, a signature).
    type Key: Send + 'static;

    /// The `kind` this stage was built from.
    fn kind(&self) -> &'static str;

    /// A one-line description of the configured stage for `curate validate`.
    fn describe(&self) -> String;

    /// See [`Stage::annotations`].
    fn annotations(&self) -> Vec<(&'static str, Shape)>;

    /// Per record, in parallel: annotate the record and compute its key.
    fn key(&self, record: &mut Record) -> Result<Self::Key>;

    /// In input order, on one thread: the verdict, from the key or the prepass's decision.
    fn decide(&mut self, record: &mut Record, key: Self::Key) -> Result<Verdict>;

    /// True when decisions come from a prepass over the whole input.
    fn needs_prepass(&self) -> bool;

    /// The stage's prepass store (opened, prepared and closed by the executor).
    fn prepass(&mut self) -> &mut dyn PrepassStore;

    /// Prepass: called in input order with each record that reaches the stage and its key.
    fn observe(&mut self, record: &Record, key: Self::Key) -> Result<()>;

    /// Sharded runs (`--world-size` > 1): switch to decisions from a prepass that the
    /// sharded steps can split over ranks. `false`: the stage cannot run sharded.
    fn use_sharded_prepass(&mut self) -> bool;

    /// The stage's position (seen hashes, decision cursor, report samples), saved
    /// with each checkpoint so a resumed run continues exactly where it stopped.
    fn save_state(&self) -> Result<Vec<u8>>;

    /// Restore what [`GlobalStage::save_state`] saved.
    fn load_state(&mut self, state: &[u8]) -> Result<()>;

    /// Called once after the last record, with the output written.
    fn finish(&mut self, _ctx: &FinishContext) -> Result<()> {
        Ok(())
    }

    /// Stage-specific numbers for `stats.json`.
    fn summary(&self) -> Option<Value> {
        None
    }

    /// See [`Stage::scores`].
    fn scores(&self) -> Vec<Score> {
        Vec::new()
    }

    /// A stage-specific section for `report.html` (an HTML fragment, already escaped).
    fn report_html(&self) -> Option<String> {
        None
    }
}

/// A key of some [`GlobalStage`], as the executor holds it between `key` and `decide`.
pub type AnyKey = Box<dyn Any + Send>;

/// [`GlobalStage`] with its key type erased, so that the executor can hold any
/// global stage; implemented for every `GlobalStage`, never by hand.
pub trait DynGlobalStage: Send + Sync {
    /// See [`GlobalStage::kind`].
    fn kind(&self) -> &'static str;
    /// See [`GlobalStage::describe`].
    fn describe(&self) -> String;
    /// See [`Stage::annotations`].
    fn annotations(&self) -> Vec<(&'static str, Shape)>;
    /// See [`GlobalStage::key`].
    fn key(&self, record: &mut Record) -> Result<AnyKey>;
    /// See [`GlobalStage::decide`].
    fn decide(&mut self, record: &mut Record, key: AnyKey) -> Result<Verdict>;
    /// See [`GlobalStage::needs_prepass`].
    fn needs_prepass(&self) -> bool;
    /// See [`GlobalStage::prepass`].
    fn prepass(&mut self) -> &mut dyn PrepassStore;
    /// See [`GlobalStage::observe`].
    fn observe(&mut self, record: &Record, key: AnyKey) -> Result<()>;
    /// See [`GlobalStage::use_sharded_prepass`].
    fn use_sharded_prepass(&mut self) -> bool;
    /// See [`GlobalStage::save_state`].
    fn save_state(&self) -> Result<Vec<u8>>;
    /// See [`GlobalStage::load_state`].
    fn load_state(&mut self, state: &[u8]) -> Result<()>;
    /// See [`GlobalStage::finish`].
    fn finish(&mut self, ctx: &FinishContext) -> Result<()>;
    /// See [`GlobalStage::summary`].
    fn summary(&self) -> Option<Value>;
    /// See [`Stage::scores`].
    fn scores(&self) -> Vec<Score>;
    /// See [`GlobalStage::report_html`].
    fn report_html(&self) -> Option<String>;
}

impl<G: GlobalStage> DynGlobalStage for G {
    fn kind(&self) -> &'static str {
        GlobalStage::kind(self)
    }
    fn describe(&self) -> String {
        GlobalStage::describe(self)
    }
    fn annotations(&self) -> Vec<(&'static str, Shape)> {
        GlobalStage::annotations(self)
    }
    fn key(&self, record: &mut Record) -> Result<AnyKey> {
        Ok(Box::new(GlobalStage::key(self, record)?))
    }
    fn decide(&mut self, record: &mut Record, key: AnyKey) -> Result<Verdict> {
        GlobalStage::decide(self, record, typed::<G>(key)?)
    }
    fn needs_prepass(&self) -> bool {
        GlobalStage::needs_prepass(self)
    }
    fn prepass(&mut self) -> &mut dyn PrepassStore {
        GlobalStage::prepass(self)
    }
    fn observe(&mut self, record: &Record, key: AnyKey) -> Result<()> {
        GlobalStage::observe(self, record, typed::<G>(key)?)
    }
    fn use_sharded_prepass(&mut self) -> bool {
        GlobalStage::use_sharded_prepass(self)
    }
    fn save_state(&self) -> Result<Vec<u8>> {
        GlobalStage::save_state(self)
    }
    fn load_state(&mut self, state: &[u8]) -> Result<()> {
        GlobalStage::load_state(self, state)
    }
    fn finish(&mut self, ctx: &FinishContext) -> Result<()> {
        GlobalStage::finish(self, ctx)
    }
    fn summary(&self) -> Option<Value> {
        GlobalStage::summary(self)
    }
    fn scores(&self) -> Vec<Score> {
        GlobalStage::scores(self)
    }
    fn report_html(&self) -> Option<String> {
        GlobalStage::report_html(self)
    }
}

/// The key back in its own type (a key of another stage is a bug, not a panic).
fn typed<G: GlobalStage>(key: AnyKey) -> Result<G::Key> {
    key.downcast::<G::Key>().map(|k| *k).map_err(|_| {
        anyhow::anyhow!(
            "internal error: a key of another stage reached `{}`",
            std::any::type_name::<G>()
        )
    })
}

/// A built pipeline step: per-record or global. The executor drives both through
/// the same batch loop (`src/run/exec.rs`).
pub enum PipelineStage {
    /// A [`Stage`].
    PerRecord(Box<dyn Stage>),
    /// A [`GlobalStage`].
    Global(Box<dyn DynGlobalStage>),
}

impl PipelineStage {
    /// The stage's `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            PipelineStage::PerRecord(s) => s.kind(),
            PipelineStage::Global(s) => s.kind(),
        }
    }

    /// The one-line description for `curate validate`.
    pub fn describe(&self) -> String {
        match self {
            PipelineStage::PerRecord(s) => s.describe(),
            PipelineStage::Global(s) => s.describe(),
        }
    }

    /// See [`Stage::annotations`].
    pub fn annotations(&self) -> Vec<(&'static str, Shape)> {
        match self {
            PipelineStage::PerRecord(s) => s.annotations(),
            PipelineStage::Global(s) => s.annotations(),
        }
    }

    /// See [`Stage::added_fields`].
    pub fn added_fields(&self, map: &FieldMap) -> Vec<(String, Shape)> {
        match self {
            PipelineStage::PerRecord(s) => s.added_fields(map),
            PipelineStage::Global(_) => Vec::new(),
        }
    }

    /// The global stage, if this is one.
    pub fn global(&mut self) -> Option<&mut dyn DynGlobalStage> {
        match self {
            PipelineStage::PerRecord(_) => None,
            PipelineStage::Global(s) => Some(&mut **s),
        }
    }

    /// True for a global stage whose decisions come from a prepass.
    pub fn needs_prepass(&self) -> bool {
        matches!(self, PipelineStage::Global(s) if s.needs_prepass())
    }

    /// Sharded runs: see [`GlobalStage::use_sharded_prepass`]; per-record stages need nothing.
    pub fn use_sharded_prepass(&mut self) -> bool {
        match self {
            PipelineStage::PerRecord(_) => true,
            PipelineStage::Global(s) => s.use_sharded_prepass(),
        }
    }

    /// The state a checkpoint saves (see [`Stage::save_state`]).
    pub fn save_state(&self) -> Result<Option<Vec<u8>>> {
        match self {
            PipelineStage::PerRecord(s) => s.save_state(),
            PipelineStage::Global(s) => s.save_state().map(Some),
        }
    }

    /// Restore a checkpoint's state.
    pub fn load_state(&mut self, state: &[u8]) -> Result<()> {
        match self {
            PipelineStage::PerRecord(s) => s.load_state(state),
            PipelineStage::Global(s) => s.load_state(state),
        }
    }

    /// After the last record.
    pub fn finish(&mut self, ctx: &FinishContext) -> Result<()> {
        match self {
            PipelineStage::PerRecord(s) => s.finish(ctx),
            PipelineStage::Global(s) => s.finish(ctx),
        }
    }

    /// Numbers for `stats.json`.
    pub fn summary(&self) -> Option<Value> {
        match self {
            PipelineStage::PerRecord(s) => s.summary(),
            PipelineStage::Global(s) => s.summary(),
        }
    }

    /// See [`Stage::scores`].
    pub fn scores(&self) -> Vec<Score> {
        match self {
            PipelineStage::PerRecord(s) => s.scores(),
            PipelineStage::Global(s) => s.scores(),
        }
    }

    /// A section for `report.html`.
    pub fn report_html(&self) -> Option<String> {
        match self {
            PipelineStage::PerRecord(s) => s.report_html(),
            PipelineStage::Global(s) => s.report_html(),
        }
    }

    /// See [`Stage::scrub_for_display`].
    pub fn scrub_for_display(&self, text: &str) -> Option<String> {
        match self {
            PipelineStage::PerRecord(s) => s.scrub_for_display(text),
            PipelineStage::Global(_) => None,
        }
    }
}

/// Reads the bytes a stage's [`GlobalStage::save_state`]-style checkpoint state
/// was written as (little-endian numbers, length-prefixed strings), failing with
/// the stage's name when they end early.
pub struct StateReader<'a> {
    bytes: &'a [u8],
    stage: &'static str,
}

impl<'a> StateReader<'a> {
    /// A reader over `bytes`, which must start with `magic` (the state's format and version).
    pub fn new(bytes: &'a [u8], stage: &'static str, magic: &[u8]) -> Result<Self> {
        let mut r = StateReader { bytes, stage };
        if r.take(magic.len())? != magic {
            anyhow::bail!("{stage}: state of another version");
        }
        Ok(r)
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.bytes.len() < n {
            anyhow::bail!("{}: truncated state", self.stage);
        }
        let (a, b) = self.bytes.split_at(n);
        self.bytes = b;
        Ok(a)
    }

    /// The next `N` bytes as an array.
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("take returns N bytes"))
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A little-endian `f32`.
    pub fn f32(&mut self) -> Result<f32> {
        Ok(f32::from_le_bytes(self.array()?))
    }

    /// `len` bytes of UTF-8.
    pub fn str(&mut self, len: usize) -> Result<String> {
        let stage = self.stage;
        let b = self.take(len)?;
        Ok(std::str::from_utf8(b)
            .map_err(|e| anyhow::anyhow!("{stage}: state text: {e}"))?
            .to_string())
    }

    /// Whether every byte was read.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}
