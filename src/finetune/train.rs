//! The training loop: AdamW, warmup + cosine decay, gradient clipping and
//! accumulation, validation loss every N steps and at each epoch end, the
//! overfitting flag, early stopping and best-weight keeping. One seed drives
//! everything (init, shuffles, dropout), so a run is reproducible bit for bit.
//!
//! The data is a continuous stream of packed rows (a fresh seeded shuffle each
//! epoch), and every optimizer step takes `batch_size x grad_accum` rows of
//! `seq_len` tokens: the token budget is `steps x batch_size x grad_accum x seq_len`.
//!
//! Overfitting: the validation loss rose for `overfit_patience` evaluations in a
//! row while the mean training loss over the same windows fell.

use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::data::{pack, Example, Rows};
use super::model::Model;
use super::rng::Rng;

/// Optimizer, schedule and evaluation settings (the training part of `[finetune]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Seeds init, shuffles, the split and dropout.
    pub seed: u64,
    /// Tokens per packed row.
    pub seq_len: usize,
    /// Rows per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Passes over the training rows (ignored when `max_steps` is set).
    pub epochs: f64,
    /// Fixed number of optimizer steps (a token budget), cycling epochs as needed.
    pub max_steps: Option<usize>,
    /// Peak learning rate.
    pub lr: f64,
    /// The cosine decay ends at `lr * min_lr_ratio`.
    pub min_lr_ratio: f64,
    /// Linear warmup steps.
    pub warmup_steps: usize,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub adam_eps: f64,
    /// Clip the global gradient norm to this (0 = off).
    pub max_grad_norm: f64,
    /// Validation loss every this many steps (0 = only at epoch ends).
    pub eval_every: usize,
    /// Evaluations in a row with rising validation and falling training loss that flag overfitting.
    pub overfit_patience: usize,
    /// Stop when overfitting is flagged.
    pub early_stopping: bool,
    /// Restore the weights of the best validation loss at the end.
    pub keep_best: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            seed: 1,
            seq_len: 128,
            batch_size: 16,
            grad_accum: 1,
            epochs: 3.0,
            max_steps: None,
            lr: 2e-3,
            min_lr_ratio: 0.1,
            warmup_steps: 20,
            weight_decay: 0.01,
            beta1: 0.9,
            beta2: 0.95,
            adam_eps: 1e-8,
            max_grad_norm: 1.0,
            eval_every: 50,
            overfit_patience: 3,
            early_stopping: false,
            keep_best: true,
        }
    }
}

impl TrainConfig {
    /// Check the numbers make sense.
    pub fn validate(&self) -> Result<()> {
        if self.seq_len < 2 || self.batch_size == 0 || self.grad_accum == 0 {
            bail!("finetune: seq_len must be >= 2, batch_size and grad_accum >= 1");
        }
        if !(self.lr > 0.0 && self.lr.is_finite() && (0.0..=1.0).contains(&self.min_lr_ratio)) {
            bail!("finetune: lr must be > 0 and min_lr_ratio in [0, 1]");
        }
        if self.max_steps.is_none() && self.epochs <= 0.0 {
            bail!("finetune: epochs must be > 0 (or set max_steps)");
        }
        if self.max_steps == Some(0) {
            bail!("finetune: max_steps must be > 0");
        }
        if self.overfit_patience == 0 {
            bail!("finetune: overfit_patience must be >= 1");
        }
        Ok(())
    }

    /// Learning rate at `step` (0-based) of `total`: linear warmup, cosine decay.
    pub fn lr_at(&self, step: usize, total: usize) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = total.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
        let min = self.lr * self.min_lr_ratio;
        min + (self.lr - min) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

/// One optimizer step in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepLog {
    pub step: usize,
    pub epoch: f64,
    pub lr: f64,
    pub train_loss: f64,
    pub grad_norm: f64,
}

/// One validation evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalLog {
    pub step: usize,
    pub epoch: f64,
    /// Mean training loss of the steps since the previous evaluation.
    pub train_loss: f64,
    pub val_loss: f64,
    /// `val_loss - train_loss`.
    pub gap: f64,
    /// True for the evaluation at the end of an epoch.
    pub epoch_end: bool,
}

/// Where overfitting was flagged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Overfit {
    /// The step of the last evaluation before validation loss started rising.
    pub since_step: usize,
    /// The step at which it was flagged (after `overfit_patience` rising evaluations).
    pub flagged_at_step: usize,
    pub since_epoch: f64,
}

/// Everything a training run measured (the body of `finetune.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    pub train_examples: usize,
    pub val_examples: usize,
    pub rows_per_epoch: usize,
    /// Positions with loss in one epoch of training rows / in the validation rows.
    pub train_trained_tokens: usize,
    pub val_trained_tokens: usize,
    pub steps: usize,
    pub tokens_seen: usize,
    pub epochs_done: f64,
    pub seconds: f64,
    pub tokens_per_second: f64,
    pub step_log: Vec<StepLog>,
    pub evals: Vec<EvalLog>,
    pub best_step: Option<usize>,
    pub best_epoch: Option<f64>,
    pub best_val_loss: Option<f64>,
    pub final_train_loss: Option<f64>,
    pub final_val_loss: Option<f64>,
    pub final_gap: Option<f64>,
    pub overfitting: Option<Overfit>,
    pub early_stopped_at_step: Option<usize>,
    /// True when the saved weights are the best evaluation's rather than the last step's.
    pub restored_best: bool,
}

/// AdamW with decoupled weight decay on matrices (not on norms, biases, prefixes).
struct AdamW {
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    t: i32,
}

impl AdamW {
    fn new(model: &Model) -> Result<AdamW> {
        let zeros = |var: &candle_core::Var| var.as_tensor().zeros_like();
        Ok(AdamW {
            m: model
                .vars()
                .iter()
                .map(|(_, v)| zeros(v))
                .collect::<candle_core::Result<_>>()?,
            v: model
                .vars()
                .iter()
                .map(|(_, v)| zeros(v))
                .collect::<candle_core::Result<_>>()?,
            t: 0,
        })
    }

    fn step(&mut self, model: &Model, grads: &[Tensor], lr: f64, cfg: &TrainConfig) -> Result<()> {
        self.t += 1;
        let bc1 = 1.0 - cfg.beta1.powi(self.t);
        let bc2 = 1.0 - cfg.beta2.powi(self.t);
        for (i, (name, var)) in model.vars().iter().enumerate() {
            let g = &grads[i];
            self.m[i] = ((&self.m[i] * cfg.beta1)? + (g * (1.0 - cfg.beta1))?)?;
            self.v[i] = ((&self.v[i] * cfg.beta2)? + (g.sqr()? * (1.0 - cfg.beta2))?)?;
            let update = (&self.m[i] / bc1)?.div(&((&self.v[i] / bc2)?.sqrt()? + cfg.adam_eps)?)?;
            let decay = if var.rank() >= 2 && name != "prompt_embeddings" {
                cfg.weight_decay
            } else {
                0.0
            };
            let theta = var.as_tensor().detach();
            let next = ((theta * (1.0 - lr * decay))? - (update * lr)?)?;
            var.set(&next)?;
        }
        Ok(())
    }
}

/// Train and validation examples, already tokenized.
pub struct TrainData {
    pub train: Vec<Example>,
    pub val: Vec<Example>,
    /// Padding id for the last packed row (never trained on).
    pub pad: u32,
}

/// Called after each step and evaluation (progress output); `None` to stay quiet.
pub type Progress<'a> = Option<&'a mut dyn FnMut(&StepLog, Option<&EvalLog>)>;

fn tensors(rows: &Rows, from: usize, n: usize, device: &Device) -> Result<(Tensor, Tensor, Tensor)> {
    let t = rows.seq_len;
    let range = from * t..(from + n) * t;
    Ok((
        Tensor::from_vec(rows.inputs[range.clone()].to_vec(), (n, t), device)?,
        Tensor::from_vec(rows.targets[range.clone()].to_vec(), (n, t), device)?,
        Tensor::from_vec(rows.mask[range].to_vec(), (n, t), device)?,
    ))
}

/// Token-weighted mean loss of `model` on `rows` (no dropout).
pub fn evaluate(model: &Model, rows: &Rows, batch_size: usize) -> Result<f64> {
    let (mut total, mut count) = (0.0, 0.0);
    let mut from = 0;
    while from < rows.len() {
        let n = batch_size.min(rows.len() - from);
        let (x, y, m) = tensors(rows, from, n, model.device())?;
        let (loss, c) = model.loss(&x, &y, &m, None)?;
        total += loss.to_scalar::<f32>()? as f64 * c;
        count += c;
        from += n;
    }
    Ok(if count > 0.0 { total / count } else { f64::NAN })
}

/// The rows of one epoch: examples in a seeded shuffled order, packed.
fn epoch_rows(data: &TrainData, cfg: &TrainConfig, epoch: usize) -> Rows {
    let mut order: Vec<usize> = (0..data.train.len()).collect();
    Rng::new(cfg.seed, 100 + epoch as u64).shuffle(&mut order);
    pack(order.iter().map(|&i| &data.train[i]), cfg.seq_len, data.pad)
}

/// Train `model` on `data`; returns every loss. The model ends with the best weights
/// when `keep_best` is set and a validation set exists.
pub fn train(
    model: &Model,
    data: &TrainData,
    cfg: &TrainConfig,
    mut progress: Progress,
) -> Result<TrainReport> {
    cfg.validate()?;
    let device = model.device().clone();
    if model.vars().is_empty() {
        bail!("finetune: nothing to train");
    }
    let mut rows = epoch_rows(data, cfg, 0);
    if rows.trained_positions() == 0 {
        bail!(
            "finetune: the training split has no response tokens ({} examples)",
            data.train.len()
        );
    }
    let rows_per_epoch = rows.len();
    let val_rows = pack(&data.val, cfg.seq_len, data.pad);
    let rows_per_step = cfg.batch_size * cfg.grad_accum;
    let total_steps = match cfg.max_steps {
        Some(s) => s,
        None => ((cfg.epochs * rows_per_epoch as f64) / rows_per_step as f64)
            .ceil()
            .max(1.0) as usize,
    };
    let mut report = TrainReport {
        train_examples: data.train.len(),
        val_examples: data.val.len(),
        rows_per_epoch,
        train_trained_tokens: rows.trained_positions(),
        val_trained_tokens: val_rows.trained_positions(),
        steps: 0,
        tokens_seen: 0,
        epochs_done: 0.0,
        seconds: 0.0,
        tokens_per_second: 0.0,
        step_log: Vec::new(),
        evals: Vec::new(),
        best_step: None,
        best_epoch: None,
        best_val_loss: None,
        final_train_loss: None,
        final_val_loss: None,
        final_gap: None,
        overfitting: None,
        early_stopped_at_step: None,
        restored_best: false,
    };
    let mut opt = AdamW::new(model)?;
    let mut dropout = Rng::new(cfg.seed, 3);
    let (mut epoch, mut cursor) = (0usize, 0usize);
    let mut window: Vec<f64> = Vec::new();
    let mut best: Option<(f64, Vec<Tensor>)> = None;
    let mut rising = 0usize;
    let started = Instant::now();
    let mut train_seconds = 0.0;
    for step in 0..total_steps {
        let step_started = Instant::now();
        let lr = cfg.lr_at(step, total_steps);
        let mut acc: Vec<Option<Tensor>> = vec![None; model.vars().len()];
        let mut step_loss = 0.0;
        let mut epoch_ended = false;
        for _ in 0..cfg.grad_accum {
            // Take batch_size rows from the stream, crossing into the next epoch's shuffle.
            let mut parts = Vec::new();
            let mut need = cfg.batch_size;
            while need > 0 {
                if cursor == rows.len() {
                    epoch += 1;
                    epoch_ended = true;
                    rows = epoch_rows(data, cfg, epoch);
                    cursor = 0;
                }
                let n = need.min(rows.len() - cursor);
                parts.push(tensors(&rows, cursor, n, &device)?);
                cursor += n;
                need -= n;
            }
            let cat = |i: usize| -> Result<Tensor> {
                let ts: Vec<&Tensor> = parts
                    .iter()
                    .map(|p| match i {
                        0 => &p.0,
                        1 => &p.1,
                        _ => &p.2,
                    })
                    .collect();
                Ok(Tensor::cat(&ts, 0)?)
            };
            let (x, y, m) = (cat(0)?, cat(1)?, cat(2)?);
            let (loss, _) = model.loss(&x, &y, &m, Some(&mut dropout))?;
            step_loss += loss.to_scalar::<f32>()? as f64 / cfg.grad_accum as f64;
            let grads = (loss / cfg.grad_accum as f64)?.backward()?;
            for (slot, (_, var)) in acc.iter_mut().zip(model.vars()) {
                if let Some(g) = grads.get(var.as_tensor()) {
                    *slot = Some(match slot.take() {
                        Some(prev) => (prev + g)?,
                        None => g.clone(),
                    });
                }
            }
        }
        let grads: Vec<Tensor> = acc
            .into_iter()
            .zip(model.vars())
            .map(|(g, (_, v))| g.map(Ok).unwrap_or_else(|| v.as_tensor().zeros_like()))
            .collect::<candle_core::Result<_>>()?;
        let mut sq = 0.0;
        for g in &grads {
            sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        }
        let grad_norm = sq.sqrt();
        let grads = if cfg.max_grad_norm > 0.0 && grad_norm > cfg.max_grad_norm {
            let s = cfg.max_grad_norm / grad_norm;
            grads
                .iter()
                .map(|g| g * s)
                .collect::<candle_core::Result<Vec<_>>>()?
        } else {
            grads
        };
        opt.step(model, &grads, lr, cfg)?;
        train_seconds += step_started.elapsed().as_secs_f64();
        let epoch_pos = epoch as f64 + cursor as f64 / rows.len().max(1) as f64;
        let log = StepLog {
            step: step + 1,
            epoch: epoch_pos,
            lr,
            train_loss: step_loss,
            grad_norm,
        };
        report.steps = step + 1;
        report.tokens_seen += rows_per_step * cfg.seq_len;
        report.epochs_done = epoch_pos;
        window.push(step_loss);
        let last = step + 1 == total_steps;
        let due = (cfg.eval_every > 0 && (step + 1) % cfg.eval_every == 0) || epoch_ended || last;
        let mut eval_log = None;
        if due && !val_rows.is_empty() {
            let val_loss = evaluate(model, &val_rows, cfg.batch_size)?;
            let train_loss = window.iter().sum::<f64>() / window.len() as f64;
            window.clear();
            let e = EvalLog {
                step: step + 1,
                epoch: epoch_pos,
                train_loss,
                val_loss,
                gap: val_loss - train_loss,
                epoch_end: epoch_ended,
            };
            if let Some(prev) = report.evals.last() {
                if e.val_loss > prev.val_loss && e.train_loss < prev.train_loss {
                    rising += 1;
                } else {
                    rising = 0;
                }
            }
            if rising >= cfg.overfit_patience && report.overfitting.is_none() {
                let since = &report.evals[report.evals.len() - rising];
                report.overfitting = Some(Overfit {
                    since_step: since.step,
                    since_epoch: since.epoch,
                    flagged_at_step: e.step,
                });
            }
            if best.as_ref().is_none_or(|(b, _)| val_loss < *b) {
                report.best_step = Some(e.step);
                report.best_epoch = Some(e.epoch);
                report.best_val_loss = Some(val_loss);
                best = Some((
                    val_loss,
                    if cfg.keep_best {
                        model.snapshot()?
                    } else {
                        Vec::new()
                    },
                ));
            }
            report.final_train_loss = Some(e.train_loss);
            report.final_val_loss = Some(e.val_loss);
            report.final_gap = Some(e.gap);
            report.evals.push(e);
            eval_log = report.evals.last().cloned();
        }
        if let Some(p) = progress.as_mut() {
            p(&log, eval_log.as_ref());
        }
        report.step_log.push(log);
        if cfg.early_stopping && report.overfitting.is_some() && !last {
            report.early_stopped_at_step = Some(step + 1);
            break;
        }
    }
    if val_rows.is_empty() {
        report.final_train_loss = report.step_log.last().map(|s| s.train_loss);
    }
    if let Some((_, snapshot)) = best {
        let last_step = report.steps;
        if cfg.keep_best && report.best_step != Some(last_step) && !snapshot.is_empty() {
            model.restore(&snapshot)?;
            report.restored_best = true;
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.tokens_per_second = report.tokens_seen as f64 / train_seconds.max(1e-9);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finetune::config::ModelConfig;
    use crate::finetune::model::{LoraConfig, Method};

    fn cfg(vocab: usize) -> ModelConfig {
        ModelConfig {
            max_position_embeddings: 64,
            tie_word_embeddings: true,
            ..ModelConfig::new(vocab, 32, 64, 2, 4, 2)
        }
    }

    /// Tiny synthetic "conversations": a prompt of 4 ids and a response that is a fixed
    /// function of it, so a small model can learn (and memorise) it.
    fn examples(n: usize, seed: u64) -> Vec<Example> {
        let mut rng = Rng::new(seed, 0);
        (0..n)
            .map(|_| {
                let p: Vec<u32> = (0..4).map(|_| 2 + (rng.next_u64() % 10) as u32).collect();
                let r: Vec<u32> = p.iter().rev().map(|x| x + 10).collect();
                let mut ids = vec![1];
                ids.extend(&p);
                ids.extend(&r);
                ids.push(0);
                let mut trained = vec![false; 5];
                trained.extend([true; 5]);
                Example { ids, trained }
            })
            .collect()
    }

    fn small_train() -> TrainConfig {
        TrainConfig {
            seq_len: 20,
            batch_size: 4,
            lr: 1e-2,
            warmup_steps: 5,
            eval_every: 10,
            ..TrainConfig::default()
        }
    }

    #[test]
    fn tiny_model_overfits_a_tiny_set() {
        let d = Device::Cpu;
        let model = Model::from_scratch(cfg(24), Method::Full, 1, &d).unwrap();
        let data = TrainData {
            train: examples(8, 1),
            val: examples(8, 2),
            pad: 0,
        };
        let before = evaluate(&model, &pack(&data.train, 20, 0), 4).unwrap();
        let c = TrainConfig {
            max_steps: Some(150),
            keep_best: false,
            eval_every: 25,
            ..small_train()
        };
        let report = train(&model, &data, &c, None).unwrap();
        let after = evaluate(&model, &pack(&data.train, 20, 0), 4).unwrap();
        assert!(after < 0.2 * before, "train loss {before} -> {after}");
        // Memorised, not learned: the validation loss ends far above the training loss.
        let last = report.evals.last().unwrap();
        assert!(last.gap > 0.5, "gap {}", last.gap);
        assert!(report.overfitting.is_some(), "{:?}", report.evals);
    }

    #[test]
    fn same_seed_same_losses_and_lora_keeps_the_base_bit_identical() {
        let d = Device::Cpu;
        let data = TrainData {
            train: examples(16, 3),
            val: examples(4, 4),
            pad: 0,
        };
        let c = TrainConfig {
            max_steps: Some(12),
            grad_accum: 2,
            ..small_train()
        };
        let run = || {
            let method = Method::Lora(LoraConfig {
                dropout: 0.1,
                ..LoraConfig::default()
            });
            let model = Model::from_scratch(cfg(24), method, 7, &d).unwrap();
            let base: Vec<Vec<f32>> = model
                .weights()
                .values()
                .map(|t| t.flatten_all().unwrap().to_vec1().unwrap())
                .collect();
            let r = train(&model, &data, &c, None).unwrap();
            let after: Vec<Vec<f32>> = model
                .weights()
                .values()
                .map(|t| t.flatten_all().unwrap().to_vec1().unwrap())
                .collect();
            assert_eq!(base, after, "LoRA must not touch the base weights");
            r
        };
        let (a, b) = (run(), run());
        assert_eq!(
            a.step_log.iter().map(|s| s.train_loss).collect::<Vec<_>>(),
            b.step_log.iter().map(|s| s.train_loss).collect::<Vec<_>>()
        );
        assert_eq!(a.evals, b.evals);
        assert!(a.step_log.last().unwrap().train_loss < a.step_log[0].train_loss);
    }

    #[test]
    fn schedule_warms_up_then_decays_to_the_floor() {
        let c = TrainConfig {
            lr: 1.0,
            warmup_steps: 10,
            min_lr_ratio: 0.1,
            ..TrainConfig::default()
        };
        assert!((c.lr_at(0, 100) - 0.1).abs() < 1e-12);
        assert!((c.lr_at(9, 100) - 1.0).abs() < 1e-12);
        assert!(c.lr_at(50, 100) < 1.0 && c.lr_at(50, 100) > 0.1);
        assert!((c.lr_at(100, 100) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn early_stopping_stops_and_best_weights_come_back() {
        let d = Device::Cpu;
        let model = Model::from_scratch(cfg(24), Method::Full, 2, &d).unwrap();
        let data = TrainData {
            train: examples(6, 5),
            val: examples(6, 6),
            pad: 0,
        };
        let c = TrainConfig {
            max_steps: Some(300),
            eval_every: 5,
            early_stopping: true,
            overfit_patience: 2,
            ..small_train()
        };
        let r = train(&model, &data, &c, None).unwrap();
        let stopped = r.early_stopped_at_step.expect("overfitting stops the run");
        assert!(stopped < 300);
        assert!(r.restored_best);
        let val = evaluate(&model, &pack(&data.val, 20, 0), 4).unwrap();
        assert!(
            (val - r.best_val_loss.unwrap()).abs() < 1e-5,
            "{val} vs {:?}",
            r.best_val_loss
        );
    }
}
