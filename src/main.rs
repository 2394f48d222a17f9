//! The `curate` command line: a thin layer over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use curate::config::Pipeline;
use curate::error::ConfigError;
use curate::run::{self, RunOptions};
use curate::stats::RunStats;

/// Records are many small, short-lived allocations (JSON values, strings):
/// mimalloc serves them faster than glibc malloc (docs/benchmarks/speed.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "curate",
    version,
    about = "Turn raw, messy text into a clean instruction-tuning set"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline: read, filter, write kept and rejected records, stats and a report.
    Run(RunArgs),
    /// Combine the ranks of a sharded run into OUTPUT/stats.json and OUTPUT/report.html.
    MergeStats {
        /// The sharded run's output directory (holding ranks/).
        dir: PathBuf,
    },
    /// Write sbatch scripts for a sharded run (a job array of ranks, then merge-stats) and submit
    /// the ranks that are not complete.
    Slurm(SlurmArgs),
    /// Check a pipeline file, its inputs and resources, and print the plan.
    Validate {
        pipeline: PathBuf,
        #[arg(long, num_args = 1..)]
        input: Vec<PathBuf>,
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Train a fastText classifier from labelled JSONL or CSV (deterministic: same bytes every run).
    TrainClassifier(TrainArgs),
    /// Match inputs against benchmarks (MMLU, C-Eval, CMMLU) without cleaning them:
    /// writes audit.json and audit.html into --output and prints a line per benchmark.
    Audit(AuditArgs),
    /// Tokens per character and per byte of a data set under each tokenizer (tokenizer.json or
    /// GGUF vocabulary), for CJK-majority and other records.
    Tokstats(TokstatsArgs),
    /// Train a model (tiny from scratch, or a pretrained HF folder or GGUF file) on a data
    /// set (a TOML file with `[input]` and `[finetune]`) and write finetune.json, weights,
    /// adapters and loss.svg.
    Finetune {
        /// The fine-tune file (TOML).
        config: PathBuf,
        /// Output directory (replaces `[finetune] output`).
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Train the same model on a pipeline's raw input and on its cleaned output, score
    /// both on one clean held-out set, over several seeds: compare.json and compare.html.
    Compare(CompareArgs),
    /// Print the per-stage summary of a finished run.
    Stats {
        /// A run's output directory.
        dir: PathBuf,
        /// Print stats.json instead of the table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// The pipeline file (TOML).
    pipeline: PathBuf,
    /// Input files, directories or globs (replace `[input] paths`).
    #[arg(long, num_args = 1..)]
    input: Vec<PathBuf>,
    /// Output directory (replaces `[output] dir`).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Worker threads (default: `[run] threads`, 0 = one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Stop after this many input records.
    #[arg(long)]
    limit: Option<u64>,
    /// No progress output and no summary table.
    #[arg(long)]
    quiet: bool,
    /// Delete a previous run in the output directory instead of resuming it.
    #[arg(long)]
    overwrite: bool,
    /// This process's rank in a sharded run (input file i goes to rank i % world-size).
    #[arg(long, requires = "world_size")]
    rank: Option<usize>,
    /// Number of ranks in a sharded run; outputs go to OUTPUT/ranks/rank-RRRRR/.
    #[arg(long, requires = "rank")]
    world_size: Option<usize>,
    /// Sharded runs with global stages (exact_dedup, minhash_dedup): the step to run,
    /// `observe:NAME`, `buckets:NAME`, `clusters:NAME` or `filter` (the default);
    /// `curate slurm` chains them.
    #[arg(long, requires = "rank")]
    step: Option<String>,
}

#[derive(clap::Args)]
struct SlurmArgs {
    pipeline: PathBuf,
    /// Number of ranks (array tasks).
    #[arg(long)]
    tasks: usize,
    /// Output directory (replaces `[output] dir`); must be on storage every node sees.
    #[arg(long)]
    output: Option<PathBuf>,
    #[arg(long)]
    partition: Option<String>,
    /// Time limit per task, e.g. 04:00:00.
    #[arg(long)]
    time: Option<String>,
    /// Memory per task, e.g. 8G.
    #[arg(long)]
    mem: Option<String>,
    #[arg(long)]
    cpus_per_task: Option<usize>,
    /// An extra sbatch option for every job, e.g. --sbatch-arg=--account=nlp (repeatable).
    #[arg(long = "sbatch-arg", allow_hyphen_values = true)]
    sbatch_arg: Vec<String>,
    /// Write the scripts and print the sbatch commands without submitting.
    #[arg(long)]
    dry_run: bool,
}

#[derive(clap::Args)]
struct AuditArgs {
    /// Input files, directories or globs.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// A benchmark: NAME=PATH (NAME is mmlu, ceval or cmmlu) or NAME:FORMAT=PATH.
    #[arg(long = "bench", required = true)]
    bench: Vec<String>,
    /// Output directory for audit.json and audit.html.
    #[arg(long, default_value = "audit")]
    output: PathBuf,
    /// Input format: auto, jsonl, json, parquet, html.
    #[arg(long, default_value = "auto")]
    format: String,
    /// Input schema: auto, text, html, alpaca, sharegpt, messages, preference.
    #[arg(long, default_value = "auto")]
    schema: String,
    /// Overlap from which a record is contaminated (default 0.35).
    #[arg(long)]
    threshold: Option<f64>,
    /// Worker threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

#[derive(clap::Args)]
struct TokstatsArgs {
    /// A tokenizer.json or GGUF file; repeat the flag or separate with commas.
    #[arg(long = "tokenizer", required = true, value_delimiter = ',')]
    tokenizers: Vec<PathBuf>,
    /// Input files, directories or globs.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Input format: auto, jsonl, json, parquet, html.
    #[arg(long, default_value = "auto")]
    format: String,
    /// Input schema: auto, text, html, alpaca, sharegpt, messages, preference.
    #[arg(long, default_value = "auto")]
    schema: String,
    /// Stop after this many input records.
    #[arg(long)]
    limit: Option<u64>,
    /// Worker threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct CompareArgs {
    /// The pipeline file; a `finetune` stage table in it gives the training settings.
    pipeline: PathBuf,
    /// Output directory (cleaned data under clean/, compare.json, compare.html).
    #[arg(long, default_value = "out/compare")]
    output: PathBuf,
    /// Seeds, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    seeds: Vec<u64>,
    /// Optimizer steps per run (the token budget); default: the stage's max_steps, else 300.
    #[arg(long)]
    steps: Option<usize>,
    /// The clean validation file, from another source than the input (default: the
    /// finetune table's `validation`); never a split of the cleaned output.
    #[arg(long)]
    validation: Option<PathBuf>,
    /// Training records sharing a window of this many characters with a validation record are left out.
    #[arg(long, default_value_t = 24)]
    overlap_chars: usize,
    /// Worker threads for the cleaning run (0 = one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// A selection pipeline (e.g. `lm_score` with `select`, or a `classifier`) run on the
    /// cleaned output: adds a selected arm and a random subset of the same size.
    #[arg(long)]
    select: Option<PathBuf>,
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Labelled examples (JSON Lines or CSV with a header row).
    #[arg(long)]
    input: PathBuf,
    /// Field (JSONL key or CSV column) holding the text.
    #[arg(long, default_value = "text")]
    text_field: String,
    /// Field holding the label (string or number).
    #[arg(long, default_value = "label")]
    label_field: String,
    /// `auto` (by extension), `jsonl` or `csv`.
    #[arg(long, default_value = "auto")]
    format: String,
    /// Where to write the model (fastText .bin).
    #[arg(long)]
    output: PathBuf,
    #[arg(long, default_value_t = 10)]
    epochs: u32,
    #[arg(long, default_value_t = 0.5)]
    lr: f64,
    #[arg(long, default_value_t = 32)]
    dim: u32,
    /// Word n-grams; with --char-split these are character n-grams of Chinese.
    #[arg(long, default_value_t = 3)]
    word_ngrams: u32,
    /// fastText subword (character n-gram) lengths inside each token; 0 = off.
    #[arg(long, default_value_t = 0)]
    minn: u32,
    #[arg(long, default_value_t = 0)]
    maxn: u32,
    /// Hash buckets for n-grams.
    #[arg(long, default_value_t = 200000)]
    bucket: u32,
    #[arg(long, default_value_t = 1)]
    seed: i32,
    /// Split CJK text into one token per character (`true` or `false`).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    char_split: bool,
    /// With --char-split: punctuation and line breaks become tokens too (style features).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    keep_punct: bool,
    /// Product-quantize the embeddings (`true` or `false`); about 8x smaller.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    quantize: bool,
    /// With --quantize: keep only the N largest-norm embedding rows (0 = all).
    #[arg(long, default_value_t = 0)]
    cutoff: usize,
    /// A labelled file (same fields) to report precision/recall/F1 on after training.
    #[arg(long)]
    validation: Option<PathBuf>,
    /// The positive label for the validation report.
    #[arg(long, default_value = "1")]
    positive: String,
}

/// Train a fastText classifier (`curate train-classifier`) and print its validation scores.
fn cmd_train_classifier(a: TrainArgs) -> Result<()> {
    use curate::classifier::{self, DataFormat, TrainOptions};
    let format = DataFormat::parse(&a.format).ok_or_else(|| {
        curate::error::config_error(format!(
            "--format: expected auto, jsonl or csv, got `{}`",
            a.format
        ))
    })?;
    let opts = TrainOptions {
        input: a.input,
        format,
        text_field: a.text_field,
        label_field: a.label_field,
        output: a.output,
        epochs: a.epochs,
        lr: a.lr,
        dim: a.dim,
        word_ngrams: a.word_ngrams,
        minn: a.minn,
        maxn: a.maxn,
        bucket: a.bucket,
        seed: a.seed,
        char_split: a.char_split,
        keep_punct: a.keep_punct,
        quantize: a.quantize,
        cutoff: a.cutoff,
        validation: a.validation,
        positive: a.positive,
    };
    let started = std::time::Instant::now();
    let report = classifier::train(&opts)?;
    let labels: Vec<String> = report.labels.iter().map(|(l, n)| format!("{l}={n}")).collect();
    eprintln!(
        "trained on {} examples ({}) in {:.1} s: {} ({} bytes)",
        report.examples,
        labels.join(", "),
        started.elapsed().as_secs_f64(),
        opts.output.display(),
        report.bytes
    );
    if let Some(m) = report.validation {
        println!(
            "validation (positive `{}`, threshold 0.5): precision {:.4} recall {:.4} F1 {:.4} accuracy {:.4} (tp {} fp {} tn {} fn {})",
            opts.positive,
            m.precision(),
            m.recall(),
            m.f1(),
            m.accuracy(),
            m.tp,
            m.fp,
            m.tn,
            m.fn_
        );
    }
    Ok(())
}

/// Check a pipeline and print its plan (`curate validate`); writes nothing.
fn cmd_validate(pipeline: PathBuf, input: Vec<PathBuf>, output: Option<PathBuf>) -> Result<()> {
    let p = Pipeline::load(&pipeline)?;
    let opts = RunOptions {
        inputs: input,
        output,
        ..Default::default()
    };
    let plan = run::plan(&p, &opts)?;
    println!("pipeline {}: ok", pipeline.display());
    println!("input ({} sources):", plan.sources.len());
    for s in &plan.sources {
        println!(
            "  {}  [{:?}, {:?}, {} bytes]",
            s.path.display(),
            s.kind,
            s.codec,
            curate::io::source_bytes(s)
        );
    }
    println!("stages:");
    for (spec, stage) in p.stages.iter().zip(&plan.stages) {
        println!("  {:<16} {:<14} {}", spec.name, spec.kind, stage.describe());
    }
    println!(
        "output: {} ({:?}, {:?}, {} input records per part)",
        plan.output_dir.display(),
        p.output.format,
        p.output.compression,
        p.output.part_records
    );
    Ok(())
}

/// `--format`: an input format name as in `[input] format`.
fn parse_format(name: &str) -> Result<curate::io::InputFormat> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|_| curate::error::config_error(format!("--format: unknown format `{name}`")))
}

/// `--schema`: `auto` (None) or a schema name as in `[input] schema`.
fn parse_schema(name: &str) -> Result<Option<curate::record::Schema>> {
    if name == "auto" {
        return Ok(None);
    }
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map(Some)
        .map_err(|_| curate::error::config_error(format!("--schema: unknown schema `{name}`")))
}

/// Run a pipeline (`curate run`) and print its per-stage table unless `--quiet`.
fn cmd_run(
    RunArgs {
        pipeline,
        input,
        output,
        threads,
        limit,
        quiet,
        overwrite,
        rank,
        world_size,
        step,
    }: RunArgs,
) -> Result<()> {
    let p = Pipeline::load(&pipeline)?;
    let shard = match (rank, world_size) {
        (Some(r), Some(n)) => Some(curate::sharded::rank::Rank::new(r, n)?),
        _ => None,
    };
    let opts = RunOptions {
        inputs: input,
        output,
        threads,
        limit,
        quiet,
        overwrite,
        rank: shard,
        steps_root: None,
    };
    if let Some(step) = step.as_deref() {
        let step = curate::sharded::steps::parse(step, &p)?;
        if step != curate::sharded::steps::Step::Filter {
            return curate::sharded::steps::run_step(&p, &opts, step);
        }
    }
    let stats = run::run(&p, &opts)?;
    if !quiet {
        // The run's result goes to stdout (`curate run ... > table.txt`); progress
        // and notes stay on stderr.
        print!("{}", stats.table());
        for s in stats.stages.iter().filter(|s| s.kind == "finetune") {
            if let Some(summary) = &s.summary {
                print!("{}", curate::stages::finetune::summary_text(&s.name, summary));
            }
        }
        let mut out = opts.output.clone().unwrap_or_else(|| p.output_dir());
        if let Some(s) = shard {
            out = s.dir(&out);
        }
        println!(
            "output: {}  (report: {})",
            out.display(),
            out.join("report.html").display()
        );
    }
    Ok(())
}

/// Match inputs against benchmarks (`curate audit`): audit.json, audit.html and a line per benchmark.
fn cmd_audit(
    AuditArgs {
        inputs,
        bench,
        output,
        format,
        schema,
        threshold,
        threads,
    }: AuditArgs,
) -> Result<()> {
    use curate::decontam::audit;
    use curate::error::config_error;
    let benchmarks = bench
        .iter()
        .map(|b| audit::parse_bench(b).map_err(|e| config_error(format!("{e:#}"))))
        .collect::<Result<Vec<_>>>()?;
    let (format, schema) = (parse_format(&format)?, parse_schema(&schema)?);
    let mut matching = curate::decontam::MatchConfig::default();
    if let Some(t) = threshold {
        matching.threshold = t;
    }
    let opts = audit::AuditOptions {
        benchmarks,
        inputs: curate::config::override_paths(&inputs)?,
        output: output.clone(),
        format,
        schema,
        matching,
        threads,
        report_records: 20,
    };
    let a = audit::audit(&opts)?;
    for line in a.summary_lines() {
        println!("{line}");
    }
    println!(
        "{} of {} records contaminated ({} malformed skipped); wrote {} and {}",
        a.tally.contaminated,
        a.tally.scanned,
        a.malformed,
        output.join("audit.json").display(),
        output.join("audit.html").display()
    );
    Ok(())
}

/// Tokens per character and byte under each tokenizer (`curate tokstats`), as a table or JSON.
fn cmd_tokstats(
    TokstatsArgs {
        tokenizers,
        inputs,
        format,
        schema,
        limit,
        threads,
        json,
    }: TokstatsArgs,
) -> Result<()> {
    let (format, schema) = (parse_format(&format)?, parse_schema(&schema)?);
    let opts = curate::tokstats::TokstatsOptions {
        tokenizers,
        inputs: curate::config::override_paths(&inputs)?,
        format,
        schema,
        threads,
        limit,
    };
    let stats = curate::tokstats::tokstats(&opts)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&stats.to_json())?);
    } else {
        print!("{}", stats.table());
    }
    Ok(())
}

/// Train a model from a fine-tune file (`curate finetune`) and print its losses.
fn cmd_finetune(config: PathBuf, output: Option<PathBuf>) -> Result<()> {
    let (outcome, dir) = curate::finetune::session::run_file(&config, output)?;
    let r = &outcome.report;
    let num = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.4}"));
    println!(
        "trained {} steps ({} tokens, {:.0} tokens/s): train {} val {} gap {}; best val {} at step {}{}",
        r.steps,
        r.tokens_seen,
        r.tokens_per_second,
        num(r.final_train_loss),
        num(r.final_val_loss),
        num(r.final_gap),
        num(r.best_val_loss),
        r.best_step.map_or("-".into(), |s| s.to_string()),
        r.overfitting.as_ref().map_or(String::new(), |o| format!(
            "; OVERFITTING since step {}",
            o.since_step
        ))
    );
    print!("{}", curate::finetune::train::epoch_table_text(&r.epochs));
    println!("wrote {}", dir.display());
    Ok(())
}

/// Train on raw and on cleaned data and compare them (`curate compare`).
fn cmd_compare(
    CompareArgs {
        pipeline,
        output,
        seeds,
        steps,
        validation,
        overlap_chars,
        threads,
        select,
    }: CompareArgs,
) -> Result<()> {
    use curate::finetune::compare;
    let opts = compare::CompareOptions {
        pipeline,
        output: output.clone(),
        seeds,
        steps,
        validation,
        overlap_chars,
        threads,
        select,
    };
    let c = compare::compare(&opts)?;
    for line in compare::summary_lines(&c) {
        println!("{line}");
    }
    println!(
        "wrote {} and {}",
        output.join("compare.json").display(),
        output.join("compare.html").display()
    );
    Ok(())
}

/// Combine a sharded run's ranks into one stats.json and report (`curate merge-stats`).
fn cmd_merge_stats(dir: PathBuf) -> Result<()> {
    let stats = curate::sharded::merge::merge_stats(&dir)?;
    eprint!("{}", stats.table());
    eprintln!(
        "merged: {}  (report: {})",
        dir.join("stats.json").display(),
        dir.join("report.html").display()
    );
    Ok(())
}

/// Write the sbatch scripts of a sharded run and submit the ranks left (`curate slurm`).
fn cmd_slurm(
    SlurmArgs {
        pipeline,
        tasks,
        output,
        partition,
        time,
        mem,
        cpus_per_task,
        sbatch_arg,
        dry_run,
    }: SlurmArgs,
) -> Result<()> {
    let opts = curate::sharded::slurm::SlurmOptions {
        pipeline,
        tasks,
        output,
        partition,
        time,
        mem,
        cpus_per_task,
        sbatch_args: sbatch_arg,
        dry_run,
        curate: std::env::current_exe().context("cannot locate the curate binary")?,
    };
    let plan = curate::sharded::slurm::slurm(&opts)?;
    for s in &plan.scripts {
        println!("wrote {}", s.display());
    }
    if plan.ranks.is_empty() {
        println!("all {tasks} ranks are complete; only merge-stats is queued");
    } else {
        println!(
            "ranks to run: {}",
            curate::sharded::slurm::array_spec(&plan.ranks)
        );
    }
    for (step, tasks) in plan.steps.iter().filter(|(s, _)| s != "filter") {
        println!("step {step}: tasks {}", curate::sharded::slurm::array_spec(tasks));
    }
    for (i, c) in plan.commands.iter().enumerate() {
        let line: Vec<String> = c
            .iter()
            .map(|a| curate::sharded::slurm::shell_quote_if_needed(a))
            .collect();
        match plan.job_ids.get(i) {
            Some(id) => println!("submitted job {id}: {}", line.join(" ")),
            None => println!("would run: {}", line.join(" ")),
        }
    }
    Ok(())
}

/// Print the per-stage summary of a finished run (`curate stats`), or its stats.json.
fn cmd_stats(dir: PathBuf, json: bool) -> Result<()> {
    run::require_run_dir(&dir)?;
    let stats = RunStats::load(&dir)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
    } else {
        print!("{}", stats.table());
        stats.check_accounting()?;
    }
    Ok(())
}

/// Run the subcommand on the command line.
fn main_inner(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(args) => cmd_run(args),
        Command::Validate {
            pipeline,
            input,
            output,
        } => cmd_validate(pipeline, input, output),
        Command::TrainClassifier(a) => cmd_train_classifier(a),
        Command::Audit(args) => cmd_audit(args),
        Command::Tokstats(args) => cmd_tokstats(args),
        Command::Finetune { config, output } => cmd_finetune(config, output),
        Command::Compare(args) => cmd_compare(args),
        Command::MergeStats { dir } => cmd_merge_stats(dir),
        Command::Slurm(args) => cmd_slurm(args),
        Command::Stats { dir, json } => cmd_stats(dir, json),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match main_inner(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("curate: error: {e:#}");
            if e.downcast_ref::<ConfigError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}
