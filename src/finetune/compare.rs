//! `curate compare`: did cleaning help? The same model, seed and token budget trained
//! on the raw input and on the pipeline's cleaned output, both scored on one clean
//! held-out validation set, over several seeds.
//!
//! - Cleaned data: the pipeline runs (without any `finetune` stage) into `OUTPUT/clean/`.
//! - Validation: a file neither arm is drawn from: `--validation FILE`, else the
//!   `validation` key of the pipeline's `finetune` table. Never a split of the cleaned
//!   output: that would train the cleaned arm on the validation distribution and favour
//!   it by construction, so without a file the comparison refuses to run.
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
//! - Significance: the per-seed differences (raw − clean, paired by seed) as mean,
//!   standard deviation and standard error, and how many standard errors the mean is
//!   from zero.
//! - Two effects of what the pipeline removed, measured on the trained models (probe
//!   sets written to `OUTPUT/probes/`): **contamination inflation**, how much lower the
//!   raw arm's loss is on the benchmark items the pipeline found leaked in the raw input
//!   than on unleaked items of the same benchmarks, beyond the cleaned arm's difference;
//!   and **memorisation of duplicates** (Lee et al. 2022), how much lower its loss is on
//!   the records the dedup stages dropped as copies than on unique records, beyond the
//!   cleaned arm's. Both are differences of differences, so the format of the probe
//!   texts cancels out.
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
    /// The validation file (default: the finetune table's `validation`).
    pub validation: Option<PathBuf>,
    /// Window length of the overlap check, in characters.
    pub overlap_chars: usize,
    pub threads: Option<usize>,
    /// A selection pipeline run on the cleaned output (`--select`): adds the selected
    /// arm and a random subset of the cleaned set of the same size.
    pub select: Option<PathBuf>,
}

/// One seed's runs of the selection arms.
#[derive(Debug, Clone, Serialize)]
pub struct SelectionSeed {
    pub seed: u64,
    pub selected: RunSummary,
    /// A random subset of the cleaned training set, as many records as selected (drawn
    /// with this seed).
    pub random: RunSummary,
    /// `random.final_val_loss - selected.final_val_loss`: positive when selection helped.
    pub random_minus_selected: f64,
    /// `clean.final_val_loss - selected.final_val_loss` (the whole cleaned set).
    pub all_minus_selected: f64,
}

/// Selected vs random vs all (`compare.json` `selection`).
#[derive(Debug, Clone, Serialize)]
pub struct SelectionArms {
    /// The selection pipeline.
    pub pipeline: PathBuf,
    pub selected_read: ReadTally,
    /// Training records of the selected arm (and of each random subset).
    pub selected_records: usize,
    pub selected_overlap_removed: usize,
    pub seeds: Vec<SelectionSeed>,
    pub random_minus_selected: Spread,
    pub all_minus_selected: Spread,
    /// Of `random_minus_selected`.
    pub vs_random: Significance,
    /// Of `all_minus_selected`.
    pub vs_all: Significance,
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
    /// Losses on the probe sets.
    pub probes: ProbeLosses,
    pub report: TrainReport,
}

/// Sizes of the probe sets (`OUTPUT/probes/*.jsonl`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProbeSets {
    /// Benchmark items the `decontaminate` stage found in raw records, as question -> answer.
    pub leaked_items: usize,
    /// Items of the same benchmarks found in no record (a seeded sample), rendered alike.
    pub unleaked_items: usize,
    /// Raw records a dedup stage dropped as a copy of a kept one: the raw arm trains on
    /// every copy, the cleaned arm on one.
    pub duplicates: usize,
    /// Cleaned training records that share no text window with a dropped copy (a sample).
    pub unique: usize,
}

/// One run's token-weighted mean loss on each probe set (`None`: the set is empty).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProbeLosses {
    pub leaked_items: Option<f64>,
    pub unleaked_items: Option<f64>,
    pub duplicates: Option<f64>,
    pub unique: Option<f64>,
}

/// How far the mean per-seed difference is from zero.
#[derive(Debug, Clone, Serialize)]
pub struct Significance {
    /// Standard deviation / sqrt(seeds).
    pub standard_error: f64,
    /// Mean / standard error (0 with one seed or no spread).
    pub standard_errors: f64,
    /// Seeds whose second arm (cleaned; selected) ended lower than the first.
    pub seeds_clean_better: usize,
    /// One sentence: cleaned beats raw by more than 2 standard errors, or not.
    pub statement: String,
}

impl Significance {
    /// Judge paired per-seed differences (raw − clean; positive: cleaning helped).
    pub fn of(diffs: &[f64]) -> Significance {
        Significance::between(diffs, "cleaned", "raw")
    }

    /// Judge paired per-seed differences `worse − better` of two named arms (positive:
    /// the arm called `better` ended lower).
    pub fn between(diffs: &[f64], better_arm: &str, worse_arm: &str) -> Significance {
        let s = Spread::of(diffs);
        let n = diffs.len();
        let se = s.std / (n.max(1) as f64).sqrt();
        let t = if n > 1 && se > 0.0 { s.mean / se } else { 0.0 };
        let better = diffs.iter().filter(|d| **d > 0.0).count();
        let statement = if n < 2 {
            "one seed: no spread to judge the difference by (use --seeds with 3 or more)".to_string()
        } else if t >= 2.0 {
            format!("{better_arm} beats {worse_arm} by {t:.1} standard errors ({better} of {n} seeds)")
        } else if t <= -2.0 {
            format!(
                "{worse_arm} beats {better_arm} by {:.1} standard errors ({better} of {n} seeds favour {better_arm})",
                -t
            )
        } else {
            format!("no significant difference: {t:+.1} standard errors, within 2 ({better} of {n} seeds favour {better_arm})")
        };
        Significance {
            standard_error: se,
            standard_errors: t,
            seeds_clean_better: better,
            statement,
        }
    }
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
    /// The validation file.
    pub validation: PathBuf,
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
    /// Of `final_val_diff`.
    pub significance: Significance,
    pub probe_sets: ProbeSets,
    /// Per seed: (raw unleaked − raw leaked) − (clean unleaked − clean leaked), in nats;
    /// positive: the raw arm looks better on leaked benchmark items than it is.
    pub contamination_inflation: Option<Spread>,
    /// Per seed: (raw unique − raw duplicates) − (clean unique − clean duplicates);
    /// positive: the raw arm memorised the duplicated records.
    pub memorisation: Option<Spread>,
    /// With `--select`: the selected arm against a random subset of the same size and
    /// against the whole cleaned set.
    pub selection: Option<SelectionArms>,
    pub seconds: f64,
}

/// `n` of `all`, drawn with `seed` (a hash order of the indices), kept in input order.
fn random_subset(all: &[Conversation], n: usize, seed: u64) -> Vec<Conversation> {
    let mut idx: Vec<usize> = (0..all.len()).collect();
    idx.sort_by_key(|&i| {
        (
            xxhash_rust::xxh3::xxh3_64_with_seed(&(i as u64).to_le_bytes(), seed),
            i,
        )
    });
    idx.truncate(n);
    idx.sort_unstable();
    idx.into_iter().map(|i| all[i].clone()).collect()
}

/// A pipeline as compare runs it: without its `finetune` stage (compare trains), writing
/// plain JSONL whatever it says (compare reads the kept and rejected records back).
fn cleaning_only(pipeline: &mut Pipeline) {
    pipeline.stages.retain(|s| s.kind != "finetune");
    pipeline.output.format = crate::io::writer::OutputFormat::Jsonl;
    pipeline.output.compression = crate::io::writer::Compression::None;
}

/// Run the selection pipeline on the cleaned output's kept parts into `OUTPUT/selected/`
/// and read what it keeps.
fn run_selection(
    path: &Path,
    kept: &[PathBuf],
    opts: &CompareOptions,
    fields: &crate::record::FieldMap,
) -> Result<(Vec<Conversation>, ReadTally)> {
    let mut select = Pipeline::load(path)?;
    cleaning_only(&mut select);
    let dir = opts.output.join("selected");
    eprintln!(
        "compare: selecting with {} into {}",
        path.display(),
        dir.display()
    );
    let stats = run::run(
        &select,
        &RunOptions {
            inputs: kept.to_vec(),
            output: Some(dir.clone()),
            threads: opts.threads,
            quiet: true,
            overwrite: true,
            ..Default::default()
        },
    )
    .with_context(|| format!("compare: selection pipeline {}", path.display()))?;
    let parts: Vec<PathBuf> = stats.kept_parts.iter().map(|p| dir.join(p)).collect();
    data::read_conversations(&data::input_for_files(&parts, fields), Path::new("."))
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

fn summary(report: TrainReport, probes: ProbeLosses) -> RunSummary {
    RunSummary {
        probes,
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
    cleaning_only(&mut pipeline);
    cfg.progress = false;
    cfg.train.keep_best = false;
    cfg.train.early_stopping = false;
    cfg.train.max_steps = Some(opts.steps.or(cfg.train.max_steps).unwrap_or(300));
    cfg.resolve_model(&pipeline.dir);
    cfg.validate()?;
    let validation = match (&opts.validation, &cfg.validation) {
        (Some(p), _) => p.clone(),
        (None, Some(p)) => crate::io::lexical_clean(&pipeline.dir.join(p)),
        (None, None) => bail!(
            "compare: no validation set: give `--validation FILE` or `validation = \"FILE\"` in the pipeline's finetune table, \
             a clean set from another source than the input (a split of the cleaned output would favour the cleaned arm by construction)"
        ),
    };

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

    let mut clean_train = clean;
    let val = {
        let input = data::input_for_files(std::slice::from_ref(&validation), &pipeline.input.fields);
        data::read_conversations(&input, Path::new("."))
            .with_context(|| format!("compare: validation file {}", validation.display()))?
            .0
    };
    if val.is_empty() {
        bail!(
            "compare: the validation set {} has no record with a response",
            validation.display()
        );
    }
    let val_windows: HashSet<u64> = val.iter().flat_map(|c| windows(c, opts.overlap_chars)).collect();
    let mut raw_train = raw;
    let raw_overlap_removed = remove_overlap(&mut raw_train, &val_windows, opts.overlap_chars);
    let clean_overlap_removed = remove_overlap(&mut clean_train, &val_windows, opts.overlap_chars);
    if raw_train.is_empty() || clean_train.is_empty() {
        bail!("compare: a training set is empty after removing validation overlap");
    }
    let selected = match &opts.select {
        Some(path) => {
            let (mut sel, read) = run_selection(path, &kept, opts, &pipeline.input.fields)?;
            let removed = remove_overlap(&mut sel, &val_windows, opts.overlap_chars);
            if sel.is_empty() {
                bail!(
                    "compare: the selection pipeline {} kept no training record",
                    path.display()
                );
            }
            Some((sel, read, removed, path.clone()))
        }
        None => None,
    };
    let probe_dir = opts.output.join("probes");
    let probes = Probes::build(&pipeline, &stats, &clean_dir, &clean_train, &probe_dir)?;

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
    let mut selection_seeds = Vec::new();
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
            let losses = probes.losses(&out, &c)?;
            let s = summary(out.report, losses);
            eprintln!(
                "compare: seed {seed} {name:<8} final val {:.4} best val {:.4} (step {}) train {:.4} ({:.0} tokens/s)",
                s.final_val_loss, s.best_val_loss, s.best_step, s.final_train_loss, s.tokens_per_second
            );
            Ok(s)
        };
        let raw_run = run_one(&raw_train, "raw")?;
        let clean_run = run_one(&clean_train, "clean")?;
        if let Some((sel, ..)) = &selected {
            let selected_run = run_one(sel, "selected")?;
            let random_run = run_one(&random_subset(&clean_train, sel.len(), seed), "random")?;
            selection_seeds.push(SelectionSeed {
                seed,
                random_minus_selected: random_run.final_val_loss - selected_run.final_val_loss,
                all_minus_selected: clean_run.final_val_loss - selected_run.final_val_loss,
                selected: selected_run,
                random: random_run,
            });
        }
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
    let per_seed = |f: &dyn Fn(&ProbeLosses) -> Option<f64>, g: &dyn Fn(&ProbeLosses) -> Option<f64>| {
        let xs: Option<Vec<f64>> = seeds
            .iter()
            .map(|s| {
                Some((f(&s.raw.probes)? - g(&s.raw.probes)?) - (f(&s.clean.probes)? - g(&s.clean.probes)?))
            })
            .collect();
        xs.filter(|v| !v.is_empty()).map(|v| Spread::of(&v))
    };
    let contamination_inflation = per_seed(&|p| p.unleaked_items, &|p| p.leaked_items);
    let memorisation = per_seed(&|p| p.unique, &|p| p.duplicates);
    let diffs: Vec<f64> = seeds.iter().map(|s| s.final_val_diff).collect();
    let selection = selected.map(|(sel, selected_read, selected_overlap_removed, pipeline)| {
        let vs_random: Vec<f64> = selection_seeds.iter().map(|s| s.random_minus_selected).collect();
        let vs_all: Vec<f64> = selection_seeds.iter().map(|s| s.all_minus_selected).collect();
        SelectionArms {
            pipeline,
            selected_read,
            selected_records: sel.len(),
            selected_overlap_removed,
            random_minus_selected: Spread::of(&vs_random),
            all_minus_selected: Spread::of(&vs_all),
            vs_random: Significance::between(&vs_random, "selected", "random"),
            vs_all: Significance::between(&vs_all, "selected", "all cleaned"),
            seeds: selection_seeds,
        }
    });
    let result = Comparison {
        selection,
        validation,
        significance: Significance::of(&diffs),
        probe_sets: probes.sizes(),
        contamination_inflation,
        memorisation,
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

/// Most records in one probe set: enough for a mean loss, little time next to training.
const PROBE_MAX: usize = 400;

/// The probe sets of a comparison, built from the cleaning run's rejected records.
struct Probes {
    leaked_items: Vec<Conversation>,
    unleaked_items: Vec<Conversation>,
    duplicates: Vec<Conversation>,
    unique: Vec<Conversation>,
}

impl Probes {
    /// Read the cleaning run's rejected parts: the benchmark items `decontaminate` found
    /// (and a seeded sample of the other items of the same benchmarks), the copies the
    /// dedup stages dropped (and a sample of cleaned training records without a copy).
    /// Each set is also written to `dir` as JSONL, to look at.
    fn build(
        pipeline: &Pipeline,
        stats: &crate::stats::RunStats,
        clean_dir: &Path,
        clean_train: &[Conversation],
        dir: &Path,
    ) -> Result<Probes> {
        let kind_of: std::collections::HashMap<&str, &str> = stats
            .stages
            .iter()
            .map(|s| (s.name.as_str(), s.kind.as_str()))
            .collect();
        let meta = pipeline.output.meta_field.as_str();
        let mut leaked_keys: HashSet<(String, String, String, u64)> = HashSet::new();
        let mut duplicate_lines = Vec::new();
        for part in &stats.rejected_parts {
            let path = clean_dir.join(part);
            let text =
                std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
            for line in text.lines() {
                let row: serde_json::Value =
                    serde_json::from_str(line).with_context(|| format!("{}: bad line", path.display()))?;
                let kind = row["stage"]
                    .as_str()
                    .and_then(|s| kind_of.get(s))
                    .copied()
                    .unwrap_or("");
                match kind {
                    "decontaminate" => {
                        for h in row["record"][meta]["decontam"]["hits"]
                            .as_array()
                            .into_iter()
                            .flatten()
                        {
                            leaked_keys.insert((
                                h["benchmark"].as_str().unwrap_or("").to_string(),
                                h["split"].as_str().unwrap_or("").to_string(),
                                h["subject"].as_str().unwrap_or("").to_string(),
                                h["row"].as_u64().unwrap_or(0),
                            ));
                        }
                    }
                    "exact_dedup" | "minhash_dedup" => {
                        if let Some(mut rec) = row["record"].as_object().cloned() {
                            rec.remove(meta);
                            duplicate_lines.push(serde_json::Value::Object(rec).to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;

        // Benchmark items as question (with lettered options) -> answer letter and option.
        let mut leaked_items = Vec::new();
        let mut unleaked_items = Vec::new();
        for spec in &pipeline.benchmark {
            let mut spec = spec.clone();
            spec.path = pipeline.dir.join(&spec.path);
            for item in crate::decontam::loaders::load(&spec)? {
                let Some(conv) = item_conversation(&item) else {
                    continue;
                };
                let key = (
                    item.benchmark.clone(),
                    item.split.clone(),
                    item.subject.clone(),
                    u64::from(item.row),
                );
                if leaked_keys.contains(&key) {
                    leaked_items.push(conv);
                } else {
                    unleaked_items.push(conv);
                }
            }
        }
        let duplicates_file = dir.join("duplicates.jsonl");
        write_atomic(&duplicates_file, duplicate_lines.join("\n").as_bytes())?;
        let duplicates = if duplicate_lines.is_empty() {
            Vec::new()
        } else {
            data::read_conversations(
                &data::input_for_files(std::slice::from_ref(&duplicates_file), &pipeline.input.fields),
                Path::new("."),
            )?
            .0
        };
        let copied: HashSet<u64> = duplicates.iter().flat_map(|c| windows(c, 24)).collect();
        let unique: Vec<Conversation> = clean_train
            .iter()
            .filter(|c| !windows(c, 24).iter().any(|w| copied.contains(w)))
            .cloned()
            .collect();
        let probes = Probes {
            leaked_items: sample(leaked_items),
            unleaked_items: sample(unleaked_items),
            duplicates: sample(duplicates),
            unique: sample(unique),
        };
        for (name, set) in [
            ("leaked_items", &probes.leaked_items),
            ("unleaked_items", &probes.unleaked_items),
            ("unique", &probes.unique),
        ] {
            let lines: Vec<String> = set.iter().map(conversation_line).collect();
            write_atomic(&dir.join(format!("{name}.jsonl")), lines.join("\n").as_bytes())?;
        }
        Ok(probes)
    }

    fn sizes(&self) -> ProbeSets {
        ProbeSets {
            leaked_items: self.leaked_items.len(),
            unleaked_items: self.unleaked_items.len(),
            duplicates: self.duplicates.len(),
            unique: self.unique.len(),
        }
    }

    /// A trained run's loss on each set.
    fn losses(&self, out: &session::Outcome, cfg: &FinetuneConfig) -> Result<ProbeLosses> {
        let loss = |set: &[Conversation]| -> Result<Option<f64>> {
            if set.is_empty() {
                return Ok(None);
            }
            session::loss_on(out, cfg.train.seq_len, cfg.train.batch_size, set).map(Some)
        };
        Ok(ProbeLosses {
            leaked_items: loss(&self.leaked_items)?,
            unleaked_items: loss(&self.unleaked_items)?,
            duplicates: loss(&self.duplicates)?,
            unique: loss(&self.unique)?,
        })
    }
}

/// At most [`PROBE_MAX`] conversations, chosen by a hash of their id (the same every run).
fn sample(mut set: Vec<Conversation>) -> Vec<Conversation> {
    if set.len() > PROBE_MAX {
        set.sort_by_key(|c| (xxhash_rust::xxh3::xxh3_64(c.id.as_bytes()), c.id.clone()));
        set.truncate(PROBE_MAX);
    }
    set
}

/// A benchmark item as a prompt (question and lettered options) and its answer; `None`
/// without an answer key.
fn item_conversation(item: &crate::decontam::BenchItem) -> Option<Conversation> {
    let letter = item.answer.as_deref()?.trim();
    let index = letter.chars().next()?.to_ascii_uppercase() as usize;
    let option = item.options.get(index.checked_sub('A' as usize)?)?;
    let mut prompt = item.question.clone();
    for (i, o) in item.options.iter().enumerate() {
        prompt.push_str(&format!("\n{}. {o}", (b'A' + i as u8) as char));
    }
    Some(Conversation {
        id: format!("{}/{}/{}/{}", item.benchmark, item.split, item.subject, item.row),
        turns: vec![
            (crate::record::Role::Prompt, prompt),
            (crate::record::Role::Response, format!("{letter}. {option}")),
        ],
    })
}

/// A conversation as a `messages` JSONL line.
fn conversation_line(c: &Conversation) -> String {
    let messages: Vec<serde_json::Value> = c
        .turns
        .iter()
        .map(|(role, text)| {
            let role = match role {
                crate::record::Role::Response => "assistant",
                crate::record::Role::System => "system",
                _ => "user",
            };
            serde_json::json!({"role": role, "content": text})
        })
        .collect();
    serde_json::json!({"id": c.id, "messages": messages}).to_string()
}

/// The result as lines for the terminal.
pub fn summary_lines(c: &Comparison) -> Vec<String> {
    let mut out = vec![format!(
        "{} seeds x {} steps ({} tokens per run, {} parameters, vocab {}); train raw {} / clean {} records, validation {} records from {} (overlap removed: raw {}, clean {})",
        c.seeds.len(),
        c.steps,
        c.tokens_per_run,
        c.parameters,
        c.vocab_size,
        c.raw_train_records,
        c.clean_train_records,
        c.val_records,
        c.validation.display(),
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
    out.push(format!(
        "{} (standard error {:.4})",
        c.significance.statement, c.significance.standard_error
    ));
    let p = &c.probe_sets;
    out.push(effect_line(
        "contamination inflation",
        c.contamination_inflation.as_ref(),
        &format!(
            "{} leaked benchmark items over {} unleaked ones",
            p.leaked_items, p.unleaked_items
        ),
    ));
    out.push(effect_line(
        "memorisation of duplicates",
        c.memorisation.as_ref(),
        &format!("{} dropped copies over {} unique records", p.duplicates, p.unique),
    ));
    if let Some(s) = &c.selection {
        out.push(format!(
            "selection ({}): {} of {} cleaned training records; same steps and tokens per run",
            s.pipeline.display(),
            s.selected_records,
            c.clean_train_records
        ));
        for r in &s.seeds {
            out.push(format!(
                "seed {:>3}: val loss selected {:.4} random {:.4} all {:.4}",
                r.seed,
                r.selected.final_val_loss,
                r.random.final_val_loss,
                r.selected.final_val_loss + r.all_minus_selected
            ));
        }
        out.push(format!(
            "val loss random - selected: {:+.4} ± {:.4} nats: {}",
            s.random_minus_selected.mean, s.random_minus_selected.std, s.vs_random.statement
        ));
        out.push(format!(
            "val loss all - selected: {:+.4} ± {:.4} nats: {}",
            s.all_minus_selected.mean, s.all_minus_selected.std, s.vs_all.statement
        ));
    }
    out
}

/// One probe effect for the terminal: its spread over seeds and the two sets it compares.
fn effect_line(name: &str, spread: Option<&Spread>, sets: &str) -> String {
    match spread {
        Some(s) => format!(
            "{name}: {:+.4} ± {:.4} nats (the raw arm's advantage on {sets}, beyond the cleaned arm's)",
            s.mean, s.std
        ),
        None => format!("{name}: not measured ({sets}: a set is empty)"),
    }
}

fn html(c: &Comparison, pipeline: &Path) -> Result<String> {
    // Each seed its own shade: raw in warm colours, cleaned in cool ones.
    const RAW: [&str; 4] = ["#d62728", "#ff7f0e", "#e377c2", "#8c564b"];
    const CLEAN: [&str; 4] = ["#1f77b4", "#2ca02c", "#17becf", "#9467bd"];
    let mut series = Vec::new();
    for (i, s) in c.seeds.iter().enumerate() {
        for (name, run, color) in [("raw", &s.raw, RAW[i % 4]), ("clean", &s.clean, CLEAN[i % 4])] {
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
    let num = |v: Option<f64>| v.map_or("–".to_string(), |x| format!("{x:.4}"));
    let probe_rows: Vec<[String; 5]> = c
        .seeds
        .iter()
        .flat_map(|s| {
            [("raw", &s.raw), ("clean", &s.clean)].map(|(arm, r)| {
                [
                    format!("{} {arm}", s.seed),
                    num(r.probes.leaked_items),
                    num(r.probes.unleaked_items),
                    num(r.probes.duplicates),
                    num(r.probes.unique),
                ]
            })
        })
        .collect();
    let spread = |s: &Spread| {
        format!(
            "{:+.4} ± {:.4} (min {:+.4}, max {:+.4})",
            s.mean, s.std, s.min, s.max
        )
    };
    let ctx = serde_json::json!({
        "pipeline": pipeline.display().to_string(),
        "lines": summary_lines(c),
        "svg": svg,
        "rows": rows,
        "diff": spread(&c.final_val_diff),
        "significance": c.significance.statement,
        "se": format!("{:.4}", c.significance.standard_error),
        "sets": c.probe_sets,
        "probe_rows": probe_rows,
        "inflation": c.contamination_inflation.as_ref().map(spread),
        "memorisation": c.memorisation.as_ref().map(spread),
        "selection": c.selection.as_ref().map(|s| serde_json::json!({
            "pipeline": s.pipeline.display().to_string(),
            "records": s.selected_records,
            "rows": s.seeds.iter().map(|r| [
                r.seed.to_string(),
                format!("{:.4}", r.selected.final_val_loss),
                format!("{:.4}", r.random.final_val_loss),
                format!("{:.4}", r.selected.final_val_loss + r.all_minus_selected),
                format!("{:+.4}", r.random_minus_selected),
                format!("{:+.4}", r.all_minus_selected),
            ]).collect::<Vec<_>>(),
            "vs_random": format!("{}: {}", spread(&s.random_minus_selected), s.vs_random.statement),
            "vs_all": format!("{}: {}", spread(&s.all_minus_selected), s.vs_all.statement),
        })),
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
{% endfor %}<tr><th>all</th><td colspan="2"></td><td colspan="4" style="text-align:left">{{ diff }}; standard error {{ se }}: <b>{{ significance }}</b></td></tr></table>
<h2>What the removed records did to the raw arm</h2>
<p>Loss of each trained model on four probe sets (in <code>probes/</code>): {{ sets.leaked_items }} benchmark items the pipeline found leaked into the raw input, {{ sets.unleaked_items }} unleaked items of the same benchmarks (same rendering), {{ sets.duplicates }} records dropped as copies (the raw arm trained on every copy), {{ sets.unique }} cleaned training records without a copy.</p>
<table><tr><th>seed, arm</th><th>leaked items</th><th>unleaked items</th><th>dropped copies</th><th>unique records</th></tr>
{% for r in probe_rows %}<tr>{% for v in r %}<td>{{ v }}</td>{% endfor %}</tr>
{% endfor %}</table>
<ul><li><b>Contamination inflation</b> ((raw unleaked − raw leaked) − (clean unleaked − clean leaked), nats, over seeds): {% if inflation %}{{ inflation }}{% else %}not measured (a set is empty){% endif %}</li>
<li><b>Memorisation of duplicates</b> ((raw unique − raw copies) − (clean unique − clean copies)): {% if memorisation %}{{ memorisation }}{% else %}not measured (a set is empty){% endif %}</li></ul>
{% if selection %}<h2>Selected vs random vs all</h2>
<p>Selection pipeline <code>{{ selection.pipeline }}</code> on the cleaned output kept {{ selection.records }} training records; the random arm is as many records of the cleaned set, drawn with each seed; all three train for the same steps and tokens.</p>
<table><tr><th>seed</th><th>selected val</th><th>random val</th><th>all val</th><th>random − selected</th><th>all − selected</th></tr>
{% for r in selection.rows %}<tr>{% for v in r %}<td>{{ v }}</td>{% endfor %}</tr>
{% endfor %}</table>
<ul><li>random − selected: {{ selection.vs_random }}</li><li>all − selected: {{ selection.vs_all }}</li></ul>{% endif %}
</body></html>
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
    fn significance_counts_standard_errors_of_the_paired_differences() {
        let s = Significance::of(&[0.05, 0.06, 0.07]);
        assert!((s.standard_error - 0.01 / 3f64.sqrt()).abs() < 1e-12);
        assert!(s.standard_errors > 10.0 && s.statement.starts_with("cleaned beats raw by"));
        assert_eq!(s.seeds_clean_better, 3);
        let s = Significance::of(&[0.02, -0.03, 0.01]);
        assert!(
            s.statement.starts_with("no significant difference"),
            "{}",
            s.statement
        );
        assert!(Significance::of(&[-0.05, -0.06, -0.07])
            .statement
            .starts_with("raw beats cleaned"));
        assert!(Significance::of(&[0.1]).statement.starts_with("one seed"));
    }

    #[test]
    fn benchmark_items_render_with_lettered_options_and_the_answer() {
        let item = crate::decontam::BenchItem {
            benchmark: "mmlu".into(),
            split: "test".into(),
            subject: "astronomy".into(),
            row: 3,
            question: "Which planet is largest?".into(),
            options: vec!["Mars".into(), "Jupiter".into(), "Venus".into(), "Earth".into()],
            answer: Some("B".into()),
        };
        let c = item_conversation(&item).unwrap();
        assert_eq!(c.id, "mmlu/test/astronomy/3");
        assert_eq!(
            c.turns[0].1,
            "Which planet is largest?\nA. Mars\nB. Jupiter\nC. Venus\nD. Earth"
        );
        assert_eq!(c.turns[1].1, "B. Jupiter");
        let unanswered = crate::decontam::BenchItem {
            answer: None,
            ..item.clone()
        };
        assert!(item_conversation(&unanswered).is_none());
        let out_of_range = crate::decontam::BenchItem {
            answer: Some("F".into()),
            ..item
        };
        assert!(item_conversation(&out_of_range).is_none());
    }

    #[test]
    fn random_subsets_are_seeded_in_input_order_and_differ_by_seed() {
        let all: Vec<Conversation> = (0..50).map(|i| conv(&format!("回答{i}"))).collect();
        let a = random_subset(&all, 10, 1);
        assert_eq!(a.len(), 10);
        let texts = |v: &[Conversation]| v.iter().map(|c| c.turns[1].1.clone()).collect::<Vec<_>>();
        assert_eq!(texts(&a), texts(&random_subset(&all, 10, 1)));
        assert_ne!(texts(&a), texts(&random_subset(&all, 10, 2)));
        let pos: Vec<usize> = a
            .iter()
            .map(|c| all.iter().position(|x| x.turns == c.turns).unwrap())
            .collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(random_subset(&all, 80, 1).len(), 50);
        let s = Significance::between(&[0.05, 0.06, 0.07], "selected", "random");
        assert!(
            s.statement.starts_with("selected beats random by"),
            "{}",
            s.statement
        );
    }

    #[test]
    fn spread_is_mean_and_sample_std() {
        let s = Spread::of(&[1.0, 2.0, 3.0]);
        assert_eq!(s.mean, 2.0);
        assert!((s.std - 1.0).abs() < 1e-12);
        assert_eq!(Spread::of(&[5.0]).std, 0.0);
    }
}
