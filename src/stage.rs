//! The stage interface: what every pipeline step implements.
//!
//! A stage sees one record at a time and returns a [`Verdict`]: keep it, say it
//! was modified, or drop it with a reason. Stages write what they measured into
//! `record.meta` so every decision can be inspected afterwards; the `action` in
//! the stage's config decides whether a finding drops, tags or redacts.
//!
//! Most stages are pure per-record functions and run in parallel
//! ([`Stage::process`]). A stage that needs a global view (dedup) does its
//! expensive per-record work in `process` (in parallel) and then decides in
//! input order in [`Stage::decide`], which the executor calls on one thread,
//! so the result never depends on the thread count.
//!
//! A stage whose decision for one record depends on records *after* it (batch
//! clustering, "keep the longest copy") asks for a **prepass**
//! ([`Stage::needs_prepass`]): before the main pass, the executor reads the input
//! once, runs the stages before it (a fresh copy of them, so their state is not
//! touched), calls `process` and then [`Stage::observe`] in input order for every
//! record that reaches it, and finally [`Stage::prepare`], which computes all
//! decisions and writes them under the folder given to [`Stage::open_prepass`]
//! (inside the output's `.curate/`). The main pass then calls `decide` as usual,
//! which looks the decision up. A run resumed from a checkpoint does not redo
//! the prepass; a run that crashed before its first checkpoint redoes it (same
//! input, same result).

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::record::Record;

/// What a stage decided about one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Passed unchanged (annotations in `meta` do not count as a change).
    Keep,
    /// Passed with its text changed (normalized, redacted, extracted).
    Modified,
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
        Verdict::Keep
    } else {
        record.annotate(kind, meta);
        Verdict::drop(reason, detail)
    }
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
}

/// One pipeline step. See the module docs for the execution model.
pub trait Stage: Send + Sync {
    /// The `kind` this stage was built from (`length`, `minhash_dedup`, ...).
    fn kind(&self) -> &'static str;

    /// Per-record work, called in parallel; must not depend on other records.
    fn process(&self, record: &mut Record) -> Result<Verdict>;

    /// True when the stage also needs [`Stage::decide`] in input order.
    fn is_sequential(&self) -> bool {
        false
    }

    /// Called in input order, on one thread, for records that `process` kept.
    fn decide(&mut self, _record: &mut Record) -> Result<Verdict> {
        Ok(Verdict::Keep)
    }

    /// True when the stage needs a prepass over the whole input (see the module docs).
    fn needs_prepass(&self) -> bool {
        false
    }

    /// Give a prepass stage its folder. `complete = false`: a prepass starts now
    /// (`observe` and `prepare` follow; start from an empty folder); `true`: the
    /// prepass finished earlier (in this run or before a resume), load its results.
    fn open_prepass(&mut self, _dir: &Path, _complete: bool) -> Result<()> {
        Ok(())
    }

    /// Prepass: called in input order, after `process`, for each record that reaches the stage.
    fn observe(&mut self, _record: &Record) -> Result<()> {
        Ok(())
    }

    /// Prepass: called once after the last `observe`; computes and stores the decisions.
    fn prepare(&mut self) -> Result<()> {
        Ok(())
    }

    /// Sharded runs (`--world-size` > 1): switch to decisions from a prepass, so that
    /// they can span every rank (see `src/steps.rs`). `false`: the stage compares
    /// records across the input and cannot run sharded.
    fn shard_prepass(&mut self) -> bool {
        !self.is_sequential() || self.needs_prepass()
    }

    /// The clustering parameters of a prepass kept as `minhash_prepass` files; a
    /// sharded run's bucket and cluster steps use them outside the stage.
    fn cluster_params(&self) -> Option<crate::minhash_prepass::Params> {
        None
    }

    /// A sharded observe step ends: store what `observe` collected for this rank
    /// (instead of `prepare`, which needs every rank's records).
    fn close_observe(&mut self) -> Result<()> {
        anyhow::bail!("stage `{}` has no sharded prepass", self.kind())
    }

    /// The stage's accumulated state, saved with each checkpoint so a resumed run
    /// continues exactly where it stopped. `None` for stateless stages.
    fn save_state(&self) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }

    /// Restore what [`Stage::save_state`] saved.
    fn load_state(&mut self, _state: &[u8]) -> Result<()> {
        Ok(())
    }

    /// Called once after the last record, with the output written (fine-tuning runs here).
    fn finish(&mut self, _ctx: &FinishContext) -> Result<()> {
        Ok(())
    }

    /// Stage-specific numbers for `stats.json` (histograms, thresholds in force).
    fn summary(&self) -> Option<serde_json::Value> {
        None
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

    /// A one-line description of the configured stage for `curate validate`.
    fn describe(&self) -> String;
}
