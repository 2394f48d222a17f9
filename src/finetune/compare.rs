//! `curate compare`: did cleaning help? The same model, seed and token budget trained
//! on the raw input and on the pipeline's cleaned output, both scored on one clean
//! held-out validation set, over several seeds.
//!
//! - Cleaned data: the pipeline runs (without any `finetune` stage) into `OUTPUT/clean/`.
//! - Validation: a `--validation` file, else a seeded hash split (`val_fraction`) of the
//!   cleaned records, the same for every seed.
//! - No overlap: a training record (raw or clean) that shares any window of
//!   `overlap_chars` characters with a validation record is left out of training. The
//!   key folds case, traditional -> simplified and drops everything but letters and
//!   digits, so exact, near and traditional-script copies of validation items cannot
//!   leak into the raw side (where the pipeline's dedup would not have removed them).
//! - Tokenizer: one byte-level BPE trained on both training sets, shared by both runs
//!   so losses per token are comparable.
//! - Budget: `max_steps` (`--steps`) optimizer steps of `batch_size x seq_len` packed
//!   tokens for both runs.
//!
//! Writes `compare.json` (every run's curves) and `compare.html` (both curves in one chart).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::chart::{self, Series};
use super::data::{self, Conversation, ReadTally};
use super::session::{self, FinetuneConfig, Split};
use super::train::TrainReport;
use crate::config::{stage_params, Pipeline};
use crate::io::writer::write_atomic;
use crate::run::{self, RunOptions};

/// What `curate compare` was asked.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    pub pipeline: PathBuf,
    pub output: PathBuf,
    pub seeds: Vec<u64>,
    /// Optimizer steps per run (default: the config's `max_steps`, else 300).
    pub steps: Option<usize>,
    /// Share of cleaned records held out (when no `--validation`).
    pub val_fraction: f64,
    pub validation: Option<PathBuf>,
    /// Window length of the overlap check, in characters.
    pub overlap_chars: usize,
    pub threads: Option<usize>,
}

/// One seed's pair of runs.
#[derive(Debug, Clone, Serialize)]
pub struct SeedResult {
    pub seed: u64,
    pub raw: RunSummary,
    pub clean: RunSummary,
    /// `raw.final_val_loss - clean.final_val_loss`: positive when cleaning helped.
    pub final_val_diff: f64,
    pub best_val_diff: f64,
    /// `exp(raw) / exp(clean)` of the final validation losses.
    pub perplexity_ratio: f64,
}

/// One run in the comparison.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub final_val_loss: f64,
    pub best_val_loss: f64,
    pub best_step: usize,
    pub final_train_loss: f64,
    pub tokens_seen: usize,
    pub tokens_per_second: f64,
    pub overfitting_since_step: Option<usize>,
    pub report: TrainReport,
}

/// Mean and sample standard deviation.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// Statistics of `xs` (std 0 for one value).
    pub fn of(xs: &[f64]) -> Spread {
        let n = xs.len().max(1) as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = if xs.len() > 1 {
            xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        Spread {
            mean,
            std: var.sqrt(),
            min: xs.iter().copied().fold(f64::INFINITY, f64::min),
            max: xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }
}

/// The whole comparison (`compare.json`).
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub raw_read: ReadTally,
    pub clean_read: ReadTally,
    pub raw_train_records: usize,
    pub clean_train_records: usize,
    pub val_records: usize,
    /// Training records left out because they overlap the validation set.
    pub raw_overlap_removed: usize,
    pub clean_overlap_removed: usize,
    pub steps: usize,
    pub tokens_per_run: usize,
    pub vocab_size: usize,
    pub parameters: usize,
    pub seeds: Vec<SeedResult>,
    pub final_val_diff: Spread,
    pub best_val_diff: Spread,
    pub perplexity_ratio: Spread,
    pub seconds: f64,
}

/// The overlap key of a text: lower case, simplified script, letters and digits only.
fn overlap_key(text: &str) -> Vec<char> {
    let simplified = fast2s::convert(&text.to_lowercase());
    simplified.chars().filter(|c| c.is_alphanumeric()).collect()
}

fn windows(c: &Conversation, n: usize) -> Vec<u64> {
    let text: String = c
        .turns
        .iter()
        .map(|(_, t)| t.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let key = overlap_key(&text);
    let hash = |cs: &[char]| {
        let s: String = cs.iter().collect();
        xxhash_rust::xxh3::xxh3_64(s.as_bytes())
    };
    if key.len() <= n {
        return if key.is_empty() {
            Vec::new()
        } else {
            vec![hash(&key)]
        };
    }
    key.windows(n).map(hash).collect()
}

/// Drop training conversations sharing a window with the validation set; returns how many.
fn remove_overlap(train: &mut Vec<Conversation>, val_windows: &HashSet<u64>, n: usize) -> usize {
    let before = train.len();
    train.retain(|c| !windows(c, n).iter().any(|h| val_windows.contains(h)));
    before - train.len()
}

fn summary(report: TrainReport) -> RunSummary {
    RunSummary {
        final_val_loss: report.evals.last().map_or(f64::NAN, |e| e.val_loss),
        best_val_loss: report.best_val_loss.unwrap_or(f64::NAN),
        best_step: report.best_step.unwrap_or(0),
        final_train_loss: report.evals.last().map_or(f64::NAN, |e| e.train_loss),
        tokens_seen: report.tokens_seen,
        tokens_per_second: report.tokens_per_second,
        overfitting_since_step: report.overfitting.as_ref().map(|o| o.since_step),
        report,
    }
}

/// Run the comparison and write `compare.json` and `compare.html` into `opts.output`.
pub fn compare(opts: &CompareOptions) -> Result<Comparison> {
    let started = std::time::Instant::now();
    if opts.seeds.is_empty() {
        bail!("compare: give at least one seed");
    }
    let mut pipeline = Pipeline::load(&opts.pipeline)?;
    // Training settings come from the pipeline's finetune stage when it has one.
    let mut cfg: FinetuneConfig = match pipeline.stages.iter().find(|s| s.kind == "finetune") {
        Some(spec) => stage_params(spec, &pipeline.path)?,
        None => FinetuneConfig::default(),
    };
    pipeline.stages.retain(|s| s.kind != "finetune");
    cfg.progress = false;
    cfg.train.keep_best = false;
    cfg.train.early_stopping = false;
    cfg.train.max_steps = Some(opts.steps.or(cfg.train.max_steps).unwrap_or(300));
    cfg.resolve_model(&pipeline.dir);
    cfg.validate()?;

    std::fs::create_dir_all(&opts.output)
        .with_context(|| format!("{}: cannot create", opts.output.display()))?;
    let clean_dir = opts.output.join("clean");
    eprintln!(
        "compare: cleaning {} into {}",
        opts.pipeline.display(),
        clean_dir.display()
    );
    let stats = run::run(
        &pipeline,
        &RunOptions {
            output: Some(clean_dir.clone()),
            threads: opts.threads,
            quiet: true,
            overwrite: true,
            ..Default::default()
        },
    )?;
    let (raw, raw_read) = data::read_conversations(&pipeline.input, &pipeline.dir)?;
    let kept: Vec<PathBuf> = stats.kept_parts.iter().map(|p| clean_dir.join(p)).collect();
    let (clean, clean_read) = data::read_conversations(
        &data::input_for_files(&kept, &pipeline.input.fields),
        Path::new("."),
    )?;

    let (mut clean_train, val): (Vec<Conversation>, Vec<Conversation>) = match &opts.validation {
        Some(path) => {
            let input = data::input_for_files(std::slice::from_ref(path), &pipeline.input.fields);
            (clean, data::read_conversations(&input, Path::new("."))?.0)
        }
        None => {
            let (val, train): (Vec<Conversation>, Vec<Conversation>) = clean
                .into_iter()
                .partition(|c| data::is_validation(&data::split_text(&c.turns), opts.val_fraction, 0));
            (train, val)
        }
    };
    if val.is_empty() {
        bail!("compare: the validation set is empty");
    }
    let val_windows: HashSet<u64> = val.iter().flat_map(|c| windows(c, opts.overlap_chars)).collect();
    let mut raw_train = raw;
    let raw_overlap_removed = remove_overlap(&mut raw_train, &val_windows, opts.overlap_chars);
    let clean_overlap_removed = remove_overlap(&mut clean_train, &val_windows, opts.overlap_chars);
    if raw_train.is_empty() || clean_train.is_empty() {
        bail!("compare: a training set is empty after removing validation overlap");
    }

    // The tiny model: one tokenizer trained on both training sets; a pretrained model has its own.
    let tokenizer = match cfg.model_path() {
        None => {
            let mut both = raw_train.clone();
            both.extend(clean_train.iter().cloned());
            Some(session::tiny_tokenizer(&cfg, &cfg.tiny_template()?, &both)?)
        }
        Some(_) => None,
    };
    let mut vocab_size = tokenizer.as_ref().map_or(0, |t| t.get_vocab_size(true));
    let mut seeds = Vec::new();
    let mut parameters = 0;
    for &seed in &opts.seeds {
        let mut c = cfg.clone();
        c.train.seed = seed;
        let mut run_one = |train: &[Conversation], name: &str| -> Result<RunSummary> {
            let split = Split {
                train: train.to_vec(),
                val: val.clone(),
            };
            let out = session::run(&c, &split, tokenizer.clone(), None)?;
            parameters = out.model.config.parameter_count();
            vocab_size = out.model.config.vocab_size;
            let s = summary(out.report);
            eprintln!(
                "compare: seed {seed} {name:<5} final val {:.4} best val {:.4} (step {}) train {:.4} ({:.0} tokens/s)",
                s.final_val_loss, s.best_val_loss, s.best_step, s.final_train_loss, s.tokens_per_second
            );
            Ok(s)
        };
        let raw_run = run_one(&raw_train, "raw")?;
        let clean_run = run_one(&clean_train, "clean")?;
        seeds.push(SeedResult {
            seed,
            final_val_diff: raw_run.final_val_loss - clean_run.final_val_loss,
            best_val_diff: raw_run.best_val_loss - clean_run.best_val_loss,
            perplexity_ratio: (raw_run.final_val_loss - clean_run.final_val_loss).exp(),
            raw: raw_run,
            clean: clean_run,
        });
    }
    let steps = cfg.train.max_steps.unwrap_or(0);
    let result = Comparison {
        raw_read,
        clean_read,
        raw_train_records: raw_train.len(),
        clean_train_records: clean_train.len(),
        val_records: val.len(),
        raw_overlap_removed,
        clean_overlap_removed,
        steps,
        tokens_per_run: steps * cfg.train.batch_size * cfg.train.grad_accum * cfg.train.seq_len,
        vocab_size,
        parameters,
        final_val_diff: Spread::of(&seeds.iter().map(|s| s.final_val_diff).collect::<Vec<_>>()),
        best_val_diff: Spread::of(&seeds.iter().map(|s| s.best_val_diff).collect::<Vec<_>>()),
        perplexity_ratio: Spread::of(&seeds.iter().map(|s| s.perplexity_ratio).collect::<Vec<_>>()),
        seeds,
        seconds: started.elapsed().as_secs_f64(),
    };
    write_atomic(
        &opts.output.join("compare.json"),
        &serde_json::to_vec_pretty(&result)?,
    )?;
    write_atomic(
        &opts.output.join("compare.html"),
        html(&result, &opts.pipeline)?.as_bytes(),
    )?;
    Ok(result)
}

/// The result as lines for the terminal.
pub fn summary_lines(c: &Comparison) -> Vec<String> {
    let mut out = vec![format!(
        "{} seeds x {} steps ({} tokens per run, {} parameters, vocab {}); train raw {} / clean {} records, validation {} clean records (overlap removed: raw {}, clean {})",
        c.seeds.len(),
        c.steps,
        c.tokens_per_run,
        c.parameters,
        c.vocab_size,
        c.raw_train_records,
        c.clean_train_records,
        c.val_records,
        c.raw_overlap_removed,
        c.clean_overlap_removed
    )];
    for s in &c.seeds {
        out.push(format!(
            "seed {:>3}: val loss raw {:.4} clean {:.4} diff {:+.4} (best: {:.4} vs {:.4}) perplexity ratio {:.3}",
            s.seed, s.raw.final_val_loss, s.clean.final_val_loss, s.final_val_diff, s.raw.best_val_loss, s.clean.best_val_loss, s.perplexity_ratio
        ));
    }
    out.push(format!(
        "val loss raw - clean: {:+.4} ± {:.4} nats (best-checkpoint {:+.4} ± {:.4}); perplexity ratio raw/clean {:.3} ± {:.3}",
        c.final_val_diff.mean, c.final_val_diff.std, c.best_val_diff.mean, c.best_val_diff.std, c.perplexity_ratio.mean, c.perplexity_ratio.std
    ));
    out
}

fn html(c: &Comparison, pipeline: &Path) -> Result<String> {
    let mut series = Vec::new();
    for (i, s) in c.seeds.iter().enumerate() {
        for (name, run, color) in [
            ("raw", &s.raw, chart::PALETTE[1]),
            ("clean", &s.clean, chart::PALETTE[0]),
        ] {
            series.push(Series {
                name: format!("{name} val, seed {}", s.seed),
                color,
                dashed: false,
                points: run
                    .report
                    .evals
                    .iter()
                    .map(|e| (e.step as f64, e.val_loss))
                    .collect(),
            });
            if i == 0 {
                series.push(Series {
                    name: format!("{name} train, seed {}", s.seed),
                    color,
                    dashed: true,
                    points: run
                        .report
                        .evals
                        .iter()
                        .map(|e| (e.step as f64, e.train_loss))
                        .collect(),
                });
            }
        }
    }
    let svg = chart::line_chart(
        "raw vs cleaned: loss on the same clean validation set",
        "optimizer step",
        "loss (nats / token)",
        &series,
    );
    let rows: Vec<[String; 7]> = c
        .seeds
        .iter()
        .map(|s| {
            [
                s.seed.to_string(),
                format!("{:.4}", s.raw.final_val_loss),
                format!("{:.4}", s.clean.final_val_loss),
                format!("{:+.4}", s.final_val_diff),
                format!("{:.4}", s.raw.best_val_loss),
                format!("{:.4}", s.clean.best_val_loss),
                format!("{:.3}", s.perplexity_ratio),
            ]
        })
        .collect();
    let ctx = serde_json::json!({
        "pipeline": pipeline.display().to_string(),
        "lines": summary_lines(c),
        "svg": svg,
        "rows": rows,
    });
    crate::report::render_html("compare.html", COMPARE_TEMPLATE, ctx)
}

/// `compare.html` (auto-escaped; the chart is SVG built by [`chart::line_chart`]).
const COMPARE_TEMPLATE: &str = r#"<!doctype html><html><head><meta charset="utf-8"><title>curate compare</title>
<style>body{font-family:sans-serif;margin:2em;max-width:980px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}</style></head><body>
<h1>Raw vs cleaned</h1><p>Pipeline <code>{{ pipeline }}</code>. Same model, seed and token budget; loss on one clean held-out set that overlaps neither training set.</p>
<ul>{% for l in lines %}<li>{{ l }}</li>{% endfor %}</ul>
{{ svg|safe }}
<table><tr><th>seed</th><th>raw val</th><th>clean val</th><th>raw − clean</th><th>raw best</th><th>clean best</th><th>perplexity ratio</th></tr>
{% for r in rows %}<tr>{% for v in r %}<td>{{ v }}</td>{% endfor %}</tr>
{% endfor %}</table></body></html>
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Role;

    fn conv(text: &str) -> Conversation {
        Conversation {
            id: "x".into(),
            turns: vec![(Role::Prompt, "问".into()), (Role::Response, text.into())],
        }
    }

    #[test]
    fn overlap_catches_copies_in_other_script_case_and_punctuation() {
        let val = [conv("西湖位于浙江省杭州市西部，是中国著名的风景名胜区。")];
        let vw: HashSet<u64> = val.iter().flat_map(|c| windows(c, 12)).collect();
        let mut train = vec![
            conv("西湖位於浙江省杭州市西部,是中國著名的風景名勝區!"),
            conv("完全不同的一段文字，讲的是做饭的步骤和火候。"),
        ];
        assert_eq!(remove_overlap(&mut train, &vw, 12), 1);
        assert_eq!(train.len(), 1);
        assert!(train[0].turns[1].1.starts_with("完全"));
    }

    #[test]
    fn spread_is_mean_and_sample_std() {
        let s = Spread::of(&[1.0, 2.0, 3.0]);
        assert_eq!(s.mean, 2.0);
        assert!((s.std - 1.0).abs() < 1e-12);
        assert_eq!(Spread::of(&[5.0]).std, 0.0);
    }
}
