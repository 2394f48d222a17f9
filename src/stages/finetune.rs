//! `finetune`: train a model on the kept records after the run, and report the
//! validation gap (last in a pipeline).
//!
//! Records pass unchanged; each gets `meta.finetune = {split}` (`train`, `validation`,
//! or `none` when it has no response to learn from). After the last record
//! ([`Stage::finish`]) the stage reads the kept parts back, splits them, trains (a
//! tiny from-scratch model with a byte-level BPE trained on the training split by
//! default) and writes `finetune/` beside `kept/`: `finetune.json` (every loss),
//! `merged/` (the full model, a Hugging Face folder), `adapter/` (PEFT's layout, for LoRA
//! and prefix tuning), `base/` (a tiny model's base under an adapter), `loss.svg`
//! ([`session::save`]). `report.html` gets the loss curves, the gap and the overfitting flag.
//!
//! ```toml
//! [[stage]]
//! kind = "finetune"
//! model = "tiny"              # from scratch (see [stage.tiny]), or a pretrained checkpoint:
//!                             # a Hugging Face folder or a .gguf file (relative to this file)
//! method = "auto"             # auto (tiny: full; pretrained: lora) | full | lora | prefix
//! template = "auto"           # auto (tiny: default; pretrained: the model's own, else plain)
//!                             # | model | plain | default | chatml | {system, user, assistant, document}
//! val_fraction = 0.1          # held out by a seeded hash of the text
//! # validation = "val.jsonl"  # a validation file instead of the split
//! # output = "finetune"       # relative to the run's output folder
//! device = "cpu"              # or "cuda" / "cuda:N" (a build with --features cuda)
//! dtype = "f32"               # or "bf16": the frozen base weights of lora / prefix
//! [stage.train]
//! seed = 1
//! seq_len = 128
//! batch_size = 16
//! epochs = 3                  # or max_steps = 500
//! lr = 2e-3
//! warmup_steps = 20
//! eval_every = 50             # steps; and at every epoch end
//! overfit_patience = 3        # K evaluations after the best, all above it: overfitting
//! overfit_margin = 0.0        # nats above the best that count as worse
//! early_stopping = false
//! keep_best = true
//! [stage.lora]                # method = "lora"
//! r = 8
//! alpha = 16
//! dropout = 0.05
//! target_modules = ["q_proj", "v_proj"]   # or ["all"]
//! ```
//!
//! The run's output folder is only known in `finish`, so a relative `output` resolves
//! there, not against the pipeline file.

use std::path::PathBuf;

use anyhow::Result;
use serde_json::json;

use crate::finetune::data;
use crate::finetune::session::{self, FinetuneConfig, Split};
use crate::finetune::train::TrainReport;
use crate::record::{FieldMap, Record};
use crate::shape::Shape;
use crate::stage::{BuildContext, FinishContext, Stage, Verdict};

/// The `finetune` stage.
pub struct Finetune {
    cfg: FinetuneConfig,
    fields: FieldMap,
    validation: Option<PathBuf>,
    /// Filled by `finish` when it trained.
    result: Option<Finished>,
    /// Filled by `finish` when it did not train: why, and the records it had.
    skipped: Option<Skipped>,
}

struct Skipped {
    reason: String,
    train_records: usize,
    val_records: usize,
}

struct Finished {
    report: TrainReport,
    output: PathBuf,
    train_records: usize,
    val_records: usize,
    parameters: usize,
    trainable: usize,
}

impl Finetune {
    /// Build from the stage table; `fields` are the pipeline's `[input.fields]` (to read the kept parts back).
    pub fn new(mut cfg: FinetuneConfig, fields: FieldMap, cx: &BuildContext) -> Result<Finetune> {
        if let Some(p) = cfg.model_path() {
            cfg.model = crate::io::lexical_clean(&cx.resolve(p))
                .to_string_lossy()
                .into_owned();
        }
        cfg.validate()?;
        let validation = cfg.validation.as_ref().map(|p| cx.resolve(p));
        if let Some(v) = &validation {
            if !v.exists() {
                anyhow::bail!("key `validation`: file not found: {}", v.display());
            }
        }
        Ok(Finetune {
            cfg,
            fields,
            validation,
            result: None,
            skipped: None,
        })
    }
}

/// The stage's section of `report.html` (auto-escaped: `crate::report::render_html`;
/// the chart is SVG built by `finetune::chart`).
const REPORT_TEMPLATE: &str = r#"<p>Files in <code>{{ output }}</code>: {% for sub, what in folders %}<code>{{ sub }}/</code> ({{ what }}){% if not loop.last %}, {% endif %}{% endfor %}.</p>
<table>{% for k, v in rows %}<tr><th style="text-align:left">{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}
<tr><th style="text-align:left">overfitting</th><td>{% if overfitting %}<b>yes</b>: {{ overfitting }}{% else %}no{% endif %}</td></tr>
<tr><th style="text-align:left">early stopping</th><td>{{ early_stopping }}</td></tr></table>
<h4>Per epoch</h4><table><tr><th>epoch</th><th>steps</th><th>train loss</th><th>validation loss</th><th>gap</th></tr>
{% for e in epochs %}<tr>{% for v in e %}<td>{{ v }}</td>{% endfor %}</tr>{% endfor %}</table>
{{ chart|safe }}"#;

impl Stage for Finetune {
    fn kind(&self) -> &'static str {
        "finetune"
    }

    fn process(&self, record: &mut Record) -> Result<Verdict> {
        let turns = data::turns_of(record);
        let split = if turns.is_empty() {
            "none"
        } else if self.validation.is_none()
            && data::is_validation(
                &data::split_text(&turns),
                self.cfg.val_fraction,
                self.cfg.train.seed,
            )
        {
            "validation"
        } else {
            "train"
        };
        record.annotate("finetune", json!({ "split": split }));
        Ok(Verdict::Keep)
    }

    fn finish(&mut self, ctx: &FinishContext) -> Result<()> {
        let input = data::input_for_files(&ctx.kept_parts, &self.fields);
        let (all, tally) = data::read_conversations(&input, std::path::Path::new("."))?;
        let given_val = match &self.validation {
            Some(path) => Some(
                data::read_conversations(
                    &data::input_for_files(std::slice::from_ref(path), &self.fields),
                    std::path::Path::new("."),
                )?
                .0,
            ),
            None => None,
        };
        let split: Split = session::split(all, given_val, &self.cfg);
        // A default pipeline ends in this stage, so a small or sharded run must still
        // succeed: it says why it did not train instead of failing or training on a few
        // records (or on one rank's share, where the gap would mean little).
        let skip = if ctx.sharded {
            Some("one rank of a sharded run holds only its share of the kept records: fine-tune the merged output with `curate finetune`".to_string())
        } else if split.train.len() < self.cfg.min_train_records {
            Some(format!(
                "{} training records with a response, fewer than min_train_records = {}",
                split.train.len(),
                self.cfg.min_train_records
            ))
        } else {
            None
        };
        if let Some(reason) = skip {
            if !ctx.quiet {
                eprintln!("finetune: not trained: {reason}");
            }
            self.skipped = Some(Skipped {
                reason,
                train_records: split.train.len(),
                val_records: split.val.len(),
            });
            return Ok(());
        }
        let output = match &self.cfg.output {
            Some(p) if p.is_absolute() => p.clone(),
            Some(p) => ctx.output_dir.join(p),
            None => ctx.output_dir.join("finetune"),
        };
        let mut cfg = self.cfg.clone();
        cfg.progress &= !ctx.quiet;
        let outcome = session::run(&cfg, &split, None, Some(&tally))?;
        session::save(&outcome, &output, self.cfg.save_merged)?;
        self.result = Some(Finished {
            report: outcome.report,
            output,
            train_records: split.train.len(),
            val_records: split.val.len(),
            parameters: outcome.model.config.parameter_count(),
            trainable: outcome.model.trainable_parameters(),
        });
        Ok(())
    }

    fn summary(&self) -> Option<serde_json::Value> {
        if let Some(s) = &self.skipped {
            return Some(json!({
                "skipped": s.reason,
                "method": self.cfg.method_name(),
                "train_records": s.train_records,
                "val_records": s.val_records,
            }));
        }
        let f = self.result.as_ref()?;
        let r = &f.report;
        Some(json!({
            "output": f.output,
            "method": self.cfg.method_name(),
            "parameters": f.parameters,
            "trainable_parameters": f.trainable,
            "train_records": f.train_records,
            "val_records": f.val_records,
            "steps": r.steps,
            "tokens_per_second": r.tokens_per_second,
            "device": self.cfg.device,
            "final_train_loss": r.final_train_loss,
            "final_val_loss": r.final_val_loss,
            "gap": r.final_gap,
            "best_step": r.best_step,
            "best_epoch": r.best_epoch,
            "best_val_loss": r.best_val_loss,
            "overfitting": r.overfitting,
            "early_stopped_at_step": r.early_stopped_at_step,
            "epochs": r.epochs,
        }))
    }

    fn report_html(&self) -> Option<String> {
        if let Some(s) = &self.skipped {
            let ctx = json!({"reason": s.reason, "train": s.train_records, "val": s.val_records});
            return crate::report::render_html(
                "finetune_skipped.html",
                "<p>Not trained: {{ reason }} ({{ train }} train, {{ val }} validation records).</p>",
                ctx,
            )
            .ok();
        }
        let f = self.result.as_ref()?;
        let r = &f.report;
        let num = |v: Option<f64>| v.map_or("–".to_string(), |x| format!("{x:.4}"));
        let overfitting = r.overfitting.as_ref().map(|o| {
            format!(
                "validation loss stayed above its best (step {}, epoch {:.2}) by more than {} for {} evaluations, flagged at step {}",
                o.since_step, o.since_epoch, self.cfg.train.overfit_margin, self.cfg.train.overfit_patience, o.flagged_at_step
            )
        });
        let rows = [
            (
                "method",
                format!(
                    "{} ({} of {} parameters train)",
                    self.cfg.method_name(),
                    f.trainable,
                    f.parameters
                ),
            ),
            (
                "records",
                format!("{} train, {} validation", f.train_records, f.val_records),
            ),
            (
                "steps",
                format!(
                    "{} ({} tokens, {:.0} tokens/s on {})",
                    r.steps, r.tokens_seen, r.tokens_per_second, self.cfg.device
                ),
            ),
            (
                "final train / validation loss",
                format!("{} / {}", num(r.final_train_loss), num(r.final_val_loss)),
            ),
            ("gap (validation − train)", num(r.final_gap)),
            (
                "best",
                format!(
                    "validation loss {} at step {} (epoch {}){}",
                    num(r.best_val_loss),
                    r.best_step.map_or("–".into(), |s| s.to_string()),
                    r.best_epoch.map_or("–".into(), |e| format!("{e:.2}")),
                    if r.restored_best {
                        "; these weights were saved"
                    } else {
                        ""
                    }
                ),
            ),
        ];
        let early_stopping = r
            .early_stopped_at_step
            .map_or("no".into(), |s| format!("stopped at step {s}"));
        let epochs: Vec<[String; 5]> = r
            .epochs
            .iter()
            .map(|e| {
                [
                    format!("{:.2}", e.epoch),
                    format!("{}–{}", e.first_step, e.last_step),
                    format!("{:.4}", e.train_loss),
                    num(e.val_loss),
                    e.gap.map_or("–".into(), |g| format!("{g:+.4}")),
                ]
            })
            .collect();
        // The model folders written, each with what loads it.
        let folders: Vec<(&str, &str)> = [
            ("merged", "the full model: AutoModelForCausalLM.from_pretrained"),
            ("adapter", "PEFT adapter: PeftModel.from_pretrained(base, …)"),
            ("base", "the untrained base the adapter applies to"),
        ]
        .into_iter()
        .filter(|(sub, _)| f.output.join(sub).is_dir())
        .collect();
        let ctx = serde_json::json!({
            "output": f.output.display().to_string(),
            "folders": folders,
            "rows": rows,
            "overfitting": overfitting,
            "early_stopping": early_stopping,
            "epochs": epochs,
            "chart": session::loss_chart(r, "training and validation loss"),
        });
        crate::report::render_html("finetune.html", REPORT_TEMPLATE, ctx).ok()
    }

    fn annotations(&self) -> Vec<(&'static str, Shape)> {
        vec![("finetune", Shape::object(&[("split", Shape::Str)]))]
    }

    fn describe(&self) -> String {
        format!(
            "{} {} model, template {:?}, {} validation, seed {}",
            self.cfg.method_name(),
            self.cfg.model,
            self.cfg.template,
            self.validation
                .as_ref()
                .map_or(format!("{:.0}% held out", self.cfg.val_fraction * 100.0), |p| p
                    .display()
                    .to_string()),
            self.cfg.train.seed
        )
    }
}

/// The lines `curate run` prints under its stage table for a `finetune` stage's
/// `stats.json` summary: the validation gap and the per-epoch table, or why it did not train.
pub fn summary_text(name: &str, summary: &serde_json::Value) -> String {
    if let Some(reason) = summary["skipped"].as_str() {
        return format!("{name}: not trained: {reason}\n");
    }
    let num = |k: &str| summary[k].as_f64().map_or("-".to_string(), |x| format!("{x:.4}"));
    let mut out = format!(
        "{name}: {} steps, train {} val {} gap {}; best val {} at step {}{}\n",
        summary["steps"],
        num("final_train_loss"),
        num("final_val_loss"),
        summary["gap"]
            .as_f64()
            .map_or("-".to_string(), |x| format!("{x:+.4}")),
        num("best_val_loss"),
        summary["best_step"],
        if summary["overfitting"].is_null() {
            ""
        } else {
            "; OVERFITTING"
        }
    );
    let epochs: Vec<crate::finetune::train::EpochRow> =
        serde_json::from_value(summary["epochs"].clone()).unwrap_or_default();
    out.push_str(&crate::finetune::train::epoch_table_text(&epochs));
    out
}
