//! The stage registry: one file per stage kind, one line here to register it.

pub mod classifier;
pub mod decontaminate;
pub mod exact_dedup;
pub mod extract;
pub mod finetune;
pub mod language;
pub mod length;
pub mod lm_score;
pub mod machine_text;
pub mod minhash_dedup;
pub mod normalize;
pub mod pii;
pub mod quality;
pub mod span_dedup;
#[cfg(test)]
pub(crate) mod testing;
pub mod toxicity;

use std::sync::LazyLock;

use anyhow::Result;
use serde::de::DeserializeOwned;

use crate::config::{stage_params, Pipeline, StageSpec};
use crate::error::config_error;
use crate::stage::{BuildContext, GlobalStage, PipelineStage, Stage};

/// What building one stage kind needs: its table, the pipeline, where paths resolve.
type Build = fn(&StageSpec, &Pipeline, &BuildContext) -> Result<PipelineStage>;

/// Every stage kind this build knows, with its constructor. Adding a stage: one file
/// in this folder and one line here.
const REGISTRY: &[(&str, Build)] = &[
    ("extract", |s, p, cx| {
        record(extract::Extract::new(params(s, p)?, cx)?)
    }),
    ("normalize", |s, p, cx| {
        record(normalize::Normalize::new(params(s, p)?, cx)?)
    }),
    ("length", |s, p, cx| {
        record(length::Length::new(params(s, p)?, cx)?)
    }),
    ("quality", |s, p, cx| {
        record(quality::Quality::new(params(s, p)?, cx)?)
    }),
    ("language", |s, p, cx| {
        record(language::Language::new(params(s, p)?, cx)?)
    }),
    ("exact_dedup", |s, p, cx| {
        global(exact_dedup::ExactDedup::new(params(s, p)?, cx)?)
    }),
    ("minhash_dedup", |s, p, cx| {
        global(minhash_dedup::MinhashDedup::new(params(s, p)?, cx)?)
    }),
    ("span_dedup", |s, p, cx| {
        global(span_dedup::SpanDedup::new(params(s, p)?, cx)?)
    }),
    ("decontaminate", |s, p, cx| {
        // The benchmarks are top-level `[[benchmark]]` tables; the stage names which.
        let mut cfg: decontaminate::DecontamConfig = params(s, p)?;
        cfg.available = p.benchmark.clone();
        record(decontaminate::Decontaminate::new(cfg, cx)?)
    }),
    ("pii", |s, p, cx| record(pii::Pii::new(params(s, p)?, cx)?)),
    ("toxicity", |s, p, cx| {
        record(toxicity::Toxicity::new(params(s, p)?, cx)?)
    }),
    ("classifier", |s, p, cx| {
        // Its `name` is the key of its scores under `meta.classifier`.
        let mut cfg: classifier::ClassifierConfig = params(s, p)?;
        cfg.name = s.name.clone();
        record(classifier::ClassifierStage::new(cfg, cx)?)
    }),
    ("machine_text", |s, p, cx| {
        record(machine_text::MachineText::new(params(s, p)?, cx)?)
    }),
    ("lm_score", |s, p, cx| {
        global(lm_score::LmScore::new(params(s, p)?, cx)?)
    }),
    // Reads the kept parts back after the run, so it needs the input's field names.
    ("finetune", |s, p, cx| {
        record(finetune::Finetune::new(
            params(s, p)?,
            p.input.fields.clone(),
            cx,
        )?)
    }),
];

/// Every stage kind this build knows, in registry order, for error messages and docs.
pub static KINDS: LazyLock<Vec<&'static str>> = LazyLock::new(|| REGISTRY.iter().map(|(k, _)| *k).collect());

/// A stage's table as its config struct.
fn params<T: DeserializeOwned>(spec: &StageSpec, pipeline: &Pipeline) -> Result<T> {
    stage_params(spec, &pipeline.path)
}

fn record(stage: impl Stage + 'static) -> Result<PipelineStage> {
    Ok(PipelineStage::PerRecord(Box::new(stage)))
}

fn global(stage: impl GlobalStage + 'static) -> Result<PipelineStage> {
    Ok(PipelineStage::Global(Box::new(stage)))
}

/// Build one stage from its `[[stage]]` table.
pub fn build(spec: &StageSpec, pipeline: &Pipeline) -> Result<PipelineStage> {
    let cx = BuildContext {
        config_dir: pipeline.dir.clone(),
    };
    let file = &pipeline.path;
    let Some((_, build)) = REGISTRY.iter().find(|(kind, _)| *kind == spec.kind) else {
        return Err(config_error(format!(
            "{}: unknown stage kind `{}`; known kinds: {}",
            spec.location(file),
            spec.kind,
            KINDS.join(", ")
        )));
    };
    // A stage that refuses its parameters is a config error: name where it is defined
    // (exit code 2 with the stage's file and line).
    build(spec, pipeline, &cx).map_err(|e| {
        if e.downcast_ref::<crate::error::ConfigError>().is_some() {
            e
        } else {
            config_error(format!("{}: {e:#}", spec.location(file)))
        }
    })
}

/// Build all stages of a pipeline, in order.
pub fn build_all(pipeline: &Pipeline) -> Result<Vec<PipelineStage>> {
    pipeline.stages.iter().map(|s| build(s, pipeline)).collect()
}
