//! The stage registry: one file per stage kind, one line here to register it.

pub mod decontaminate;
pub mod exact_dedup;
pub mod extract;
pub mod finetune;
pub mod language;
pub mod length;
pub mod machine_text;
pub mod minhash_dedup;
pub mod normalize;
pub mod pii;
pub mod quality;
#[cfg(test)]
pub(crate) mod testing;
pub mod toxicity;

use anyhow::Result;

use crate::config::{stage_params as params, Pipeline, StageSpec};
use crate::error::config_error;
use crate::stage::{BuildContext, Stage};

/// Every stage kind this build knows, for error messages and docs.
pub const KINDS: &[&str] = &[
    "extract",
    "normalize",
    "length",
    "quality",
    "language",
    "exact_dedup",
    "minhash_dedup",
    "decontaminate",
    "pii",
    "toxicity",
    "machine_text",
    "finetune",
];

/// Build one stage from its `[[stage]]` table.
pub fn build(spec: &StageSpec, pipeline: &Pipeline) -> Result<Box<dyn Stage>> {
    let cx = BuildContext {
        config_dir: pipeline.dir.clone(),
    };
    let file = &pipeline.path;
    // In a closure so that `?` inside a constructor still passes through the
    // config-error wrapping below (exit code 2 with the stage's file and line).
    let built = (|| -> Result<Box<dyn Stage>> {
        Ok(match spec.kind.as_str() {
            "extract" => Box::new(extract::Extract::new(params(spec, file)?, &cx)?),
            "normalize" => Box::new(normalize::Normalize::new(params(spec, file)?, &cx)?),
            "length" => Box::new(length::Length::new(params(spec, file)?, &cx)?),
            "quality" => Box::new(quality::Quality::new(params(spec, file)?, &cx)?),
            "language" => Box::new(language::Language::new(params(spec, file)?, &cx)?),
            "exact_dedup" => Box::new(exact_dedup::ExactDedup::new(params(spec, file)?, &cx)?),
            "minhash_dedup" => Box::new(minhash_dedup::MinhashDedup::new(params(spec, file)?, &cx)?),
            "pii" => Box::new(pii::Pii::new(params(spec, file)?, &cx)?),
            "toxicity" => Box::new(toxicity::Toxicity::new(params(spec, file)?, &cx)?),
            "machine_text" => Box::new(machine_text::MachineText::new(params(spec, file)?, &cx)?),
            // Reads the kept parts back after the run, so it needs the input's field names.
            "finetune" => Box::new(finetune::Finetune::new(
                params(spec, file)?,
                pipeline.input.fields.clone(),
                &cx,
            )?),
            "decontaminate" => {
                // The benchmarks are top-level `[[benchmark]]` tables; the stage names which.
                let mut cfg: decontaminate::DecontamConfig = params(spec, file)?;
                cfg.available = pipeline.benchmark.clone();
                Box::new(decontaminate::Decontaminate::new(cfg, &cx)?)
            }
            other => {
                return Err(config_error(format!(
                    "{}: unknown stage kind `{other}`; known kinds: {}",
                    spec.location(file),
                    KINDS.join(", ")
                )))
            }
        })
    })();
    // A stage that refuses its parameters is a config error: name where it is defined.
    built.map_err(|e| {
        if e.downcast_ref::<crate::error::ConfigError>().is_some() {
            e
        } else {
            config_error(format!("{}: {e:#}", spec.location(file)))
        }
    })
}

/// Build all stages of a pipeline, in order.
pub fn build_all(pipeline: &Pipeline) -> Result<Vec<Box<dyn Stage>>> {
    pipeline.stages.iter().map(|s| build(s, pipeline)).collect()
}
