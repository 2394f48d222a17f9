//! The training loop: AdamW, warmup + cosine decay, gradient clipping and
//! accumulation, validation loss every N steps and at each epoch end, the
//! overfitting flag, early stopping and best-weight keeping. One seed drives
//! everything (init, shuffles, dropout), so a run is reproducible bit for bit.
//!
//! The data is a continuous stream of packed rows (a fresh seeded shuffle each
//! epoch), and every optimizer step takes `batch_size x grad_accum` rows of
//! `seq_len` tokens: the token budget is `steps x batch_size x grad_accum x seq_len`.
//!
//! Overfitting: after its best evaluation, the validation loss stayed above that best
//! by more than `overfit_margin` for `overfit_patience` evaluations in a row ([`overfitting`]).
//! The training loss plays no part: its window means are noisy, and a validation loss
//! that keeps failing to improve is the signal whatever they do. [`epoch_table`] gives
//! the train and validation loss per epoch.
//!
//! On a GPU nothing inside a step waits for the device: the batch goes up in one copy
//! per tensor, the trained-position counts come from the host rows, the gradient norm
//! and the clipping factor stay device scalars, and the losses and norms of the steps
//! are read back only at an evaluation (or the end), where the step logs are written.
//! The arithmetic is the same as reading every value at once (the CPU path's numbers do
//! not change). The clock syncs the device before and after evaluations, so
//! `tokens_per_second` counts finished training work only.

use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::cpu_ops;
use super::data::{pack, Example, Rows};
use super::model::Model;
use super::rng::Rng;

pub use super::config::TrainConfig;

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
    /// The step of the best evaluation, after which validation loss did not come back.
    pub since_step: usize,
    /// The step at which it was flagged (`overfit_patience` evaluations after the best).
    pub flagged_at_step: usize,
    pub since_epoch: f64,
}

/// One epoch's losses: the steps since the previous epoch's end, and the evaluation at
/// its end (the last row may be a partial epoch, ending at the run's last evaluation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRow {
    /// Epoch position at its evaluation (e.g. 1.02: the step that crossed into epoch 2).
    pub epoch: f64,
    pub first_step: usize,
    pub last_step: usize,
    /// Mean training loss of its steps.
    pub train_loss: f64,
    pub val_loss: Option<f64>,
    /// `val_loss - train_loss`.
    pub gap: Option<f64>,
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
    /// Tokens per second of the steps after the first (which also loads kernels, and on a
    /// GPU compiles them); `None` for a one-step run.
    #[serde(default)]
    pub steady_tokens_per_second: Option<f64>,
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
    /// Train and validation loss per epoch ([`epoch_table`]).
    #[serde(default)]
    pub epochs: Vec<EpochRow>,
}

/// Overfitting in `evals` so far: the validation loss has stayed above its best by more
/// than `margin` for `patience` evaluations in a row since that best.
pub fn overfitting(evals: &[EvalLog], patience: usize, margin: f64) -> Option<Overfit> {
    let (best_at, best) = evals
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.val_loss.total_cmp(&b.1.val_loss).then(a.0.cmp(&b.0)))?;
    let after = &evals[best_at + 1..];
    if after.len() < patience || after.iter().any(|e| e.val_loss <= best.val_loss + margin) {
        return None;
    }
    Some(Overfit {
        since_step: best.step,
        since_epoch: best.epoch,
        flagged_at_step: after[patience - 1].step,
    })
}

/// Per-epoch rows from a run's step log and evaluations: each epoch-end evaluation closes
/// an epoch, and steps after the last one form a partial epoch closed by the final
/// evaluation (or none).
pub fn epoch_table(steps: &[StepLog], evals: &[EvalLog]) -> Vec<EpochRow> {
    let mut ends: Vec<(usize, f64, Option<f64>)> = evals
        .iter()
        .filter(|e| e.epoch_end)
        .map(|e| (e.step, e.epoch, Some(e.val_loss)))
        .collect();
    if let Some(last) = steps.last() {
        if ends.last().is_none_or(|&(s, _, _)| s < last.step) {
            let val = evals.last().filter(|e| e.step == last.step).map(|e| e.val_loss);
            ends.push((last.step, last.epoch, val));
        }
    }
    let mut rows = Vec::with_capacity(ends.len());
    let mut first = 1;
    for (end, epoch, val_loss) in ends {
        let losses: Vec<f64> = steps
            .iter()
            .filter(|s| s.step >= first && s.step <= end)
            .map(|s| s.train_loss)
            .collect();
        if losses.is_empty() {
            continue;
        }
        let train_loss = losses.iter().sum::<f64>() / losses.len() as f64;
        rows.push(EpochRow {
            epoch,
            first_step: first,
            last_step: end,
            train_loss,
            val_loss,
            gap: val_loss.map(|v| v - train_loss),
        });
        first = end + 1;
    }
    rows
}

/// The per-epoch table as aligned text lines (terminal summaries).
pub fn epoch_table_text(rows: &[EpochRow]) -> String {
    let num = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.4}"));
    let mut out = String::from("epoch    steps        train    val      gap\n");
    for r in rows {
        out.push_str(&format!(
            "{:<8.2} {:<12} {:<8.4} {:<8} {}\n",
            r.epoch,
            format!("{}-{}", r.first_step, r.last_step),
            r.train_loss,
            num(r.val_loss),
            r.gap.map_or("-".to_string(), |g| format!("{g:+.4}"))
        ));
    }
    out
}

/// AdamW with decoupled weight decay on matrices (not on norms, biases, prefixes).
struct AdamW {
    /// First and second moments of every variable.
    moments: Moments,
    t: i32,
}

/// Where AdamW keeps its moments.
enum Moments {
    /// On the CPU with f32 parameters: host vectors, updated in place by
    /// [`cpu_ops::adamw_step`].
    Host(Vec<(Vec<f32>, Vec<f32>)>),
    /// Elsewhere: tensors, updated with candle ops.
    Tensors { m: Vec<Tensor>, v: Vec<Tensor> },
}

impl AdamW {
    fn new(model: &Model) -> Result<AdamW> {
        let vars: Vec<&Tensor> = model.vars().iter().map(|(_, v)| v.as_tensor()).collect();
        let moments = if cpu_ops::applies(&vars) {
            let zeros = |t: &&Tensor| (vec![0f32; t.elem_count()], vec![0f32; t.elem_count()]);
            Moments::Host(vars.iter().map(zeros).collect())
        } else {
            let zeros = |t: &&Tensor| t.zeros_like();
            Moments::Tensors {
                m: vars.iter().map(zeros).collect::<candle_core::Result<_>>()?,
                v: vars.iter().map(zeros).collect::<candle_core::Result<_>>()?,
            }
        };
        Ok(AdamW { moments, t: 0 })
    }

    /// Decoupled weight decay applies to matrices, not to norms, biases or prompt embeddings.
    fn decay(name: &str, var: &candle_core::Var, cfg: &TrainConfig) -> f64 {
        if var.rank() >= 2 && name != "prompt_embeddings" {
            cfg.weight_decay
        } else {
            0.0
        }
    }

    /// One step over every variable, the gradients first multiplied by `clip` (a scalar)
    /// when given. On the CPU the variables are updated side by side on the rayon
    /// threads, each in one pass (the same arithmetic per variable on any thread count).
    fn step(
        &mut self,
        model: &Model,
        grads: &[Tensor],
        clip: Option<&Tensor>,
        lr: f64,
        cfg: &TrainConfig,
    ) -> Result<()> {
        self.t += 1;
        let bc1 = 1.0 - cfg.beta1.powi(self.t);
        let bc2 = 1.0 - cfg.beta2.powi(self.t);
        let (m, v) = match &mut self.moments {
            Moments::Tensors { m, v } => (m, v),
            Moments::Host(host) => {
                use rayon::prelude::*;
                let clip = clip.map(|c| c.to_scalar::<f32>()).transpose()?.unwrap_or(1.0);
                return host
                    .par_iter_mut()
                    .zip(model.vars())
                    .zip(grads)
                    .try_for_each(|(((m, v), (name, var)), g)| {
                        let hyper = cpu_ops::AdamWHyper {
                            lr: lr as f32,
                            beta1: cfg.beta1 as f32,
                            beta2: cfg.beta2 as f32,
                            bc1: bc1 as f32,
                            bc2: bc2 as f32,
                            eps: cfg.adam_eps as f32,
                            decay: AdamW::decay(name, var, cfg) as f32,
                        };
                        cpu_ops::adamw_step(var.as_tensor(), g, clip, m, v, hyper)
                    })
                    .map_err(Into::into);
            }
        };
        for (i, (name, var)) in model.vars().iter().enumerate() {
            let g = match clip {
                Some(scale) => grads[i].broadcast_mul(scale)?,
                None => grads[i].clone(),
            };
            m[i] = ((&m[i] * cfg.beta1)? + (&g * (1.0 - cfg.beta1))?)?;
            v[i] = ((&v[i] * cfg.beta2)? + (g.sqr()? * (1.0 - cfg.beta2))?)?;
            let update = (&m[i] / bc1)?.div(&((&v[i] / bc2)?.sqrt()? + cfg.adam_eps)?)?;
            let theta = var.as_tensor().detach();
            let next = ((theta * (1.0 - lr * AdamW::decay(name, var, cfg)))? - (update * lr)?)?;
            var.set(&next)?;
        }
        Ok(())
    }
}

/// The optimizer: candle ops on every device, or the fused CUDA kernels of
/// [`super::fused`] on a GPU.
enum Optimizer {
    Ops(AdamW),
    #[cfg(feature = "cuda")]
    Fused(super::fused::FusedAdamW),
}

impl Optimizer {
    fn new(model: &Model) -> Result<Optimizer> {
        #[cfg(feature = "cuda")]
        if model.device().is_cuda() && super::fused::enabled() {
            match super::fused::FusedAdamW::new(model.device(), model.vars()) {
                Ok(f) => return Ok(Optimizer::Fused(f)),
                Err(e) => eprintln!("finetune: fused CUDA optimizer unavailable ({e:#}); using candle ops"),
            }
        }
        Ok(Optimizer::Ops(AdamW::new(model)?))
    }

    /// Clip `grads` to `max_grad_norm` and take one AdamW step; returns the global norm
    /// before clipping as an f64 scalar on the model's device (read later).
    #[allow(clippy::infallible_destructuring_match)] // two arms with `--features cuda`
    fn step(&mut self, model: &Model, grads: Vec<Tensor>, lr: f64, cfg: &TrainConfig) -> Result<Tensor> {
        let opt = match self {
            Optimizer::Ops(opt) => opt,
            #[cfg(feature = "cuda")]
            Optimizer::Fused(f) => return f.step(model.vars(), &grads, lr, cfg),
        };
        // The global norm as a device scalar: the f32 sum of squares of each gradient,
        // added in f64 in order, then the square root (what the host would compute).
        let square_sum = |g: &Tensor| g.sqr()?.sum_all()?.to_dtype(DType::F64);
        let squares: Vec<candle_core::Result<Tensor>> = if model.device().is_cpu() {
            use rayon::prelude::*;
            grads
                .par_iter()
                .map(|g| candle_core::utils::single_threaded(|| square_sum(g)))
                .collect()
        } else {
            grads.iter().map(square_sum).collect()
        };
        let mut sq: Option<Tensor> = None;
        for s in squares {
            let s = s?;
            sq = Some(match sq {
                Some(prev) => (prev + s)?,
                None => s,
            });
        }
        let grad_norm = match sq {
            Some(sq) => sq.sqrt()?,
            None => bail!("finetune: nothing to train"),
        };
        let clip = if cfg.max_grad_norm > 0.0 {
            // min(1, max / norm) in f64, then f32: 1 leaves the gradients as they are, and a
            // norm above the limit scales them by max / norm.
            Some(
                grad_norm
                    .ones_like()?
                    .affine(cfg.max_grad_norm, 0.0)?
                    .div(&grad_norm)?
                    .minimum(1.0)?
                    .to_dtype(DType::F32)?,
            )
        } else {
            None
        };
        opt.step(model, &grads, clip.as_ref(), lr, cfg)?;
        Ok(grad_norm)
    }
}

/// `CURATE_FINETUNE_PROFILE=1`: wait for the device after the forward pass, the backward
/// pass and the optimizer of every step and print the mean time of each (a diagnostic:
/// the waits themselves slow a GPU down).
struct Profile {
    on: bool,
    last: Instant,
    seconds: [f64; 3],
}

impl Profile {
    fn from_env(device: &Device) -> Result<Profile> {
        let on = std::env::var("CURATE_FINETUNE_PROFILE").is_ok_and(|v| v == "1");
        if on {
            device.synchronize()?;
        }
        Ok(Profile {
            on,
            last: Instant::now(),
            seconds: [0.0; 3],
        })
    }

    /// A step starts (time since the last mark, e.g. an evaluation, is not charged).
    fn start(&mut self) {
        self.last = Instant::now();
    }

    /// Charge the time since the previous mark to phase `i` (0 forward, 1 backward, 2 optimizer).
    fn mark(&mut self, device: &Device, i: usize) -> Result<()> {
        if self.on {
            device.synchronize()?;
            let now = Instant::now();
            self.seconds[i] += (now - self.last).as_secs_f64();
            self.last = now;
        }
        Ok(())
    }

    fn print(&self, steps: usize) {
        if self.on && steps > 0 {
            let ms = |s: f64| s * 1e3 / steps as f64;
            eprintln!(
                "finetune profile: per step forward and backward {:.2} ms, optimizer {:.2} ms (device synced after each)",
                ms(self.seconds[0] + self.seconds[1]),
                ms(self.seconds[2])
            );
        }
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

/// Token-weighted mean loss of `model` on `rows` (no dropout).
pub fn evaluate(model: &Model, rows: &Rows, batch_size: usize) -> Result<f64> {
    // Every batch is queued first; the losses are read back together at the end.
    let mut losses = Vec::new();
    let mut from = 0;
    while from < rows.len() {
        let n = batch_size.min(rows.len() - from);
        let mut host = HostBatch::new(n, rows.seq_len);
        host.push(rows, from, n);
        let (x, y, m, c) = host.upload(model.device())?;
        // Detached segment by segment: a queued loss keeps no activations alive.
        losses.push((model.eval_loss(&x, &y, &m, c)?, c));
        from += n;
    }
    let (mut total, mut count) = (0.0, 0.0);
    for (loss, c) in losses {
        total += loss.to_scalar::<f32>()? as f64 * c;
        count += c;
    }
    Ok(if count > 0.0 { total / count } else { f64::NAN })
}

/// The rows of one epoch: examples in a seeded shuffled order, packed.
fn epoch_rows(data: &TrainData, cfg: &TrainConfig, epoch: usize) -> Rows {
    let mut order: Vec<usize> = (0..data.train.len()).collect();
    Rng::new(cfg.seed, 100 + epoch as u64).shuffle(&mut order);
    pack(order.iter().map(|&i| &data.train[i]), cfg.seq_len, data.pad)
}

/// The rows `steps` optimizer steps train on, in order (the stream of seeded epoch
/// shuffles that [`train`] takes `batch_size x grad_accum` rows at a time from).
pub fn trained_rows(data: &TrainData, cfg: &TrainConfig, steps: usize) -> Rows {
    let want = steps * cfg.batch_size * cfg.grad_accum;
    let mut out = Rows {
        seq_len: cfg.seq_len,
        inputs: Vec::new(),
        targets: Vec::new(),
        mask: Vec::new(),
    };
    let mut epoch = 0;
    while out.len() < want {
        let rows = epoch_rows(data, cfg, epoch);
        if rows.is_empty() {
            break;
        }
        let n = (want - out.len()).min(rows.len());
        let range = 0..n * cfg.seq_len;
        out.inputs.extend_from_slice(&rows.inputs[range.clone()]);
        out.targets.extend_from_slice(&rows.targets[range.clone()]);
        out.mask.extend_from_slice(&rows.mask[range]);
        epoch += 1;
    }
    out
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
        steady_tokens_per_second: None,
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
        epochs: Vec::new(),
    };
    let mut opt = Optimizer::new(model)?;
    let mut profile = Profile::from_env(&device)?;
    let mut dropout = Rng::new(cfg.seed, 3);
    if device.is_cuda() {
        // LoRA dropout masks are drawn on the GPU there (see `Model::linear`).
        device.set_seed(cfg.seed)?;
        if let Err(e) = super::cuda_ops::keep_pool_memory(&device) {
            eprintln!("finetune: could not keep freed GPU memory pooled ({e:#})");
        }
    }
    let (mut epoch, mut cursor) = (0usize, 0usize);
    let mut window: Vec<f64> = Vec::new();
    let mut best: Option<(f64, Vec<Tensor>)> = None;
    let started = Instant::now();
    // Time spent outside training (evaluations, snapshots), and the first step's time.
    let mut other_seconds = 0.0;
    let mut first_step_seconds = None;
    // Steps whose losses and gradient norm are still on the device.
    let mut pending: Vec<PendingStep> = Vec::new();
    for step in 0..total_steps {
        profile.start();
        let lr = cfg.lr_at(step, total_steps);
        let mut acc: Vec<Option<Tensor>> = vec![None; model.vars().len()];
        let mut losses = Vec::with_capacity(cfg.grad_accum);
        let mut epoch_ended = false;
        for _ in 0..cfg.grad_accum {
            // Take batch_size rows from the stream, crossing into the next epoch's shuffle.
            let mut host = HostBatch::new(cfg.batch_size, cfg.seq_len);
            let mut need = cfg.batch_size;
            while need > 0 {
                if cursor == rows.len() {
                    epoch += 1;
                    epoch_ended = true;
                    rows = epoch_rows(data, cfg, epoch);
                    cursor = 0;
                }
                let n = need.min(rows.len() - cursor);
                host.push(&rows, cursor, n);
                cursor += n;
                need -= n;
            }
            let scale = 1.0 / cfg.grad_accum as f64;
            let slices = if device.is_cpu() {
                cfg.batch_slices.min(cfg.batch_size)
            } else {
                1
            };
            let (loss, grads) = if slices > 1 {
                sliced_loss_and_grads(model, host, slices, scale, &mut dropout, cfg.checkpoint_layers)?
            } else {
                let (x, y, m, count) = host.upload(&device)?;
                model.loss_and_grads(
                    &x,
                    &y,
                    &m,
                    count,
                    scale,
                    Some(&mut dropout),
                    cfg.checkpoint_layers,
                )?
            };
            // One mark for forward and backward together (checkpointing interleaves them).
            profile.mark(&device, 1)?;
            losses.push(loss);
            add_grads(&mut acc, grads)?;
        }
        let grads: Vec<Tensor> = acc
            .into_iter()
            .zip(model.vars())
            .map(|(g, (_, v))| g.map(Ok).unwrap_or_else(|| v.as_tensor().zeros_like()))
            .collect::<candle_core::Result<_>>()?;
        let grad_norm = opt.step(model, grads, lr, cfg)?;
        profile.mark(&device, 2)?;
        if step == 0 {
            device.synchronize()?;
            first_step_seconds = Some(started.elapsed().as_secs_f64());
        }
        let epoch_pos = epoch as f64 + cursor as f64 / rows.len().max(1) as f64;
        pending.push(PendingStep {
            log: StepLog {
                step: step + 1,
                epoch: epoch_pos,
                lr,
                train_loss: f64::NAN,
                grad_norm: f64::NAN,
            },
            losses,
            grad_norm,
        });
        report.steps = step + 1;
        report.tokens_seen += rows_per_step * cfg.seq_len;
        report.epochs_done = epoch_pos;
        let last = step + 1 == total_steps;
        let due = (cfg.eval_every > 0 && (step + 1) % cfg.eval_every == 0) || epoch_ended || last;
        // Read the pending steps back at evaluations, and every 256 steps without one.
        if !(due || pending.len() >= 256) {
            continue;
        }
        let mut ready = Vec::with_capacity(pending.len());
        for p in pending.drain(..) {
            let log = p.read(cfg.grad_accum)?;
            window.push(log.train_loss);
            ready.push(log);
        }
        let mut eval_log = None;
        if due && !val_rows.is_empty() {
            device.synchronize()?;
            let eval_started = Instant::now();
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
            if report.overfitting.is_none() {
                report.overfitting = overfitting(&report.evals, cfg.overfit_patience, cfg.overfit_margin);
            }
            eval_log = report.evals.last().cloned();
            device.synchronize()?;
            other_seconds += eval_started.elapsed().as_secs_f64();
        }
        let n_ready = ready.len();
        for (i, log) in ready.into_iter().enumerate() {
            if let Some(p) = progress.as_mut() {
                let e = if i + 1 == n_ready { eval_log.as_ref() } else { None };
                p(&log, e);
            }
            report.step_log.push(log);
        }
        if cfg.early_stopping && report.overfitting.is_some() && !last {
            report.early_stopped_at_step = Some(step + 1);
            break;
        }
    }
    device.synchronize()?;
    let train_seconds = (started.elapsed().as_secs_f64() - other_seconds).max(1e-9);
    profile.print(report.steps);
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
    report.epochs = epoch_table(&report.step_log, &report.evals);
    report.seconds = started.elapsed().as_secs_f64();
    report.tokens_per_second = report.tokens_seen as f64 / train_seconds;
    if let (Some(first), true) = (first_step_seconds, report.steps > 1) {
        let tokens = report.tokens_seen - rows_per_step * cfg.seq_len;
        report.steady_tokens_per_second = Some(tokens as f64 / (train_seconds - first).max(1e-9));
    }
    Ok(report)
}

/// One optimizer step whose loss and gradient norm have not been read from the device yet.
struct PendingStep {
    /// Complete but for `train_loss` and `grad_norm`.
    log: StepLog,
    /// Each micro-batch's mean loss (f32 scalars).
    losses: Vec<Tensor>,
    /// The global gradient norm (f64 scalar).
    grad_norm: Tensor,
}

impl PendingStep {
    /// The finished log: the step's loss is the mean over micro-batches, added in f64.
    fn read(self, grad_accum: usize) -> Result<StepLog> {
        let mut log = self.log;
        let mut step_loss = 0.0;
        for l in &self.losses {
            step_loss += l.to_scalar::<f32>()? as f64 / grad_accum as f64;
        }
        log.train_loss = step_loss;
        log.grad_norm = self.grad_norm.to_scalar::<f64>()?;
        Ok(log)
    }
}

/// Add each variable's gradient in `grads` to its running sum in `acc`.
fn add_grads(acc: &mut [Option<Tensor>], grads: Vec<Option<Tensor>>) -> Result<()> {
    for (slot, g) in acc.iter_mut().zip(grads) {
        if let Some(g) = g {
            *slot = Some(match slot.take() {
                Some(prev) => (prev + g)?,
                None => g,
            });
        }
    }
    Ok(())
}

/// A micro-batch's loss and gradients on the CPU, computed as `slices` slices of whole
/// rows side by side on the rayon threads, each slice's kernels on its own thread.
///
/// Why: the tiny default model's matrices (2,048 x 128 activations) are too small for
/// candle to split each op over two cores well (a second thread gave it 13-25% where
/// PyTorch gets 70-87%); independent slices keep every core on whole forward and
/// backward passes. Every slice's loss is divided by the whole batch's trained
/// positions, so the sum over slices is the batch's mean loss, and the sums run in slice
/// order: the result depends on `slices`, not on the thread count. Slice `i`'s LoRA
/// dropout draws from its own stream, seeded from `dropout`.
fn sliced_loss_and_grads(
    model: &Model,
    host: HostBatch,
    slices: usize,
    scale: f64,
    dropout: &mut Rng,
    checkpoint: bool,
) -> Result<(Tensor, Vec<Option<Tensor>>)> {
    use rayon::prelude::*;
    let count = host.trained_positions();
    let parts: Vec<(HostBatch, Rng)> = host
        .split(slices)
        .into_iter()
        .enumerate()
        .map(|(i, part)| (part, Rng::new(dropout.next_u64(), i as u64)))
        .collect();
    let device = model.device().clone();
    let results: Vec<Result<(Tensor, Vec<Option<Tensor>>)>> = parts
        .into_par_iter()
        .map(|(part, mut rng)| {
            candle_core::utils::single_threaded(|| {
                let (x, y, m, _) = part.upload(&device)?;
                model.loss_and_grads(&x, &y, &m, count, scale, Some(&mut rng), checkpoint)
            })
        })
        .collect();
    let mut loss: Option<Tensor> = None;
    let mut acc: Vec<Option<Tensor>> = vec![None; model.vars().len()];
    for result in results {
        let (l, grads) = result?;
        loss = Some(match loss {
            Some(prev) => (prev + l)?,
            None => l,
        });
        add_grads(&mut acc, grads)?;
    }
    Ok((loss.expect("at least one slice"), acc))
}

/// A batch assembled on the host from row ranges (possibly of two epochs), uploaded at once.
struct HostBatch {
    seq_len: usize,
    inputs: Vec<u32>,
    targets: Vec<u32>,
    mask: Vec<f32>,
}

impl HostBatch {
    fn new(rows: usize, seq_len: usize) -> HostBatch {
        HostBatch {
            seq_len,
            inputs: Vec::with_capacity(rows * seq_len),
            targets: Vec::with_capacity(rows * seq_len),
            mask: Vec::with_capacity(rows * seq_len),
        }
    }

    /// Append rows `from..from + n` of `rows`.
    fn push(&mut self, rows: &Rows, from: usize, n: usize) {
        let t = rows.seq_len;
        let range = from * t..(from + n) * t;
        self.inputs.extend_from_slice(&rows.inputs[range.clone()]);
        self.targets.extend_from_slice(&rows.targets[range.clone()]);
        self.mask.extend_from_slice(&rows.mask[range]);
    }

    /// Positions whose loss is trained (mask 1).
    fn trained_positions(&self) -> f64 {
        self.mask.iter().map(|&v| v as f64).sum::<f64>()
    }

    /// The rows cut into `parts` consecutive runs of whole rows, as equal as they come.
    fn split(self, parts: usize) -> Vec<HostBatch> {
        let t = self.seq_len;
        let rows = self.inputs.len() / t;
        (0..parts)
            .map(|i| {
                let range = (i * rows / parts) * t..((i + 1) * rows / parts) * t;
                HostBatch {
                    seq_len: t,
                    inputs: self.inputs[range.clone()].to_vec(),
                    targets: self.targets[range.clone()].to_vec(),
                    mask: self.mask[range].to_vec(),
                }
            })
            .filter(|part| !part.inputs.is_empty())
            .collect()
    }

    /// Inputs, targets and mask `[rows, seq_len]` on `device`, and the number of trained
    /// positions (counted here, so the loss needs no read from the device).
    fn upload(self, device: &Device) -> Result<(Tensor, Tensor, Tensor, f64)> {
        let n = self.inputs.len() / self.seq_len;
        let count = self.trained_positions();
        Ok((
            Tensor::from_vec(self.inputs, (n, self.seq_len), device)?,
            Tensor::from_vec(self.targets, (n, self.seq_len), device)?,
            Tensor::from_vec(self.mask, (n, self.seq_len), device)?,
            count,
        ))
    }
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

    fn eval_at(step: usize, train_loss: f64, val_loss: f64, epoch_end: bool) -> EvalLog {
        EvalLog {
            step,
            epoch: step as f64 / 10.0,
            train_loss,
            val_loss,
            gap: val_loss - train_loss,
            epoch_end,
        }
    }

    #[test]
    fn overfitting_fires_on_a_rising_validation_loss_and_not_on_a_falling_one() {
        // The run the issue saw: validation rose at 3 evaluations in a row while the
        // noisy training window went up once; the old rule (both at once) said no.
        let rising: Vec<EvalLog> = [(5.90, 5.8620), (5.70, 5.8644), (5.72, 5.8656), (5.60, 5.8666)]
            .iter()
            .enumerate()
            .map(|(i, &(t, v))| eval_at((i + 1) * 50, t, v, false))
            .collect();
        let o = overfitting(&rising, 3, 0.0).expect("three evaluations above the best");
        assert_eq!((o.since_step, o.flagged_at_step), (50, 200));
        assert!(
            overfitting(&rising[..3], 3, 0.0).is_none(),
            "only two after the best"
        );
        assert!(
            overfitting(&rising, 3, 0.003).is_none(),
            "5.8644 is within the margin"
        );
        let falling: Vec<EvalLog> = (0..8)
            .map(|i| eval_at((i + 1) * 50, 6.0 - 0.1 * i as f64, 6.5 - 0.05 * i as f64, false))
            .collect();
        assert!(overfitting(&falling, 1, 0.0).is_none());
        // A dip below the best resets the count: it only counts evaluations after the best.
        let mut back = rising.clone();
        back.push(eval_at(250, 5.5, 5.80, false));
        assert!(overfitting(&back, 3, 0.0).is_none());
    }

    #[test]
    fn epoch_table_closes_epochs_at_epoch_end_evaluations() {
        let steps: Vec<StepLog> = (1..=25)
            .map(|s| StepLog {
                step: s,
                epoch: s as f64 / 10.0,
                lr: 1e-3,
                train_loss: if s <= 10 {
                    4.0
                } else if s <= 20 {
                    3.0
                } else {
                    2.0
                },
                grad_norm: 1.0,
            })
            .collect();
        let evals = vec![
            eval_at(5, 4.0, 4.5, false),
            eval_at(10, 4.0, 4.2, true),
            eval_at(20, 3.0, 3.9, true),
            eval_at(25, 2.0, 3.95, false),
        ];
        let rows = epoch_table(&steps, &evals);
        let got: Vec<(usize, usize, f64, Option<f64>)> = rows
            .iter()
            .map(|r| (r.first_step, r.last_step, r.train_loss, r.val_loss))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, 10, 4.0, Some(4.2)),
                (11, 20, 3.0, Some(3.9)),
                (21, 25, 2.0, Some(3.95))
            ]
        );
        assert!((rows[2].gap.unwrap() - 1.95).abs() < 1e-12);
        let text = epoch_table_text(&rows);
        assert_eq!(text.lines().count(), 4, "{text}");
        // No evaluation at the last step: the partial epoch has no validation loss.
        let rows = epoch_table(&steps, &evals[..3]);
        assert_eq!(rows.last().map(|r| (r.first_step, r.val_loss)), Some((21, None)));
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
    fn batch_slices_give_the_same_bits_on_any_thread_count_and_the_unsliced_losses() {
        let d = Device::Cpu;
        let data = TrainData {
            train: examples(24, 5),
            val: examples(4, 6),
            pad: 0,
        };
        // 5 rows in 3 slices: uneven slices.
        let config = |slices: usize| TrainConfig {
            max_steps: Some(8),
            batch_size: 5,
            batch_slices: slices,
            ..small_train()
        };
        // LoRA dropout draws in every slice.
        let run = |slices: usize, threads: usize| {
            let c = config(slices);
            let method = Method::Lora(LoraConfig {
                dropout: 0.1,
                ..LoraConfig::default()
            });
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let model = Model::from_scratch(cfg(24), method, 7, &d).unwrap();
                let r = train(&model, &data, &c, None).unwrap();
                let weights: Vec<Vec<f32>> = model
                    .vars()
                    .iter()
                    .map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
                    .collect();
                (
                    r.step_log.iter().map(|s| s.train_loss).collect::<Vec<_>>(),
                    weights,
                )
            })
        };
        let (one, three) = (run(3, 1), run(3, 3));
        assert_eq!(one, three, "slices must not depend on the thread count");
        // Without dropout's per-slice streams the slices compute the unsliced step.
        let no_dropout = |slices: usize| {
            let model = Model::from_scratch(cfg(24), Method::Full, 7, &d).unwrap();
            train(&model, &data, &config(slices), None).unwrap()
        };
        let (whole, sliced) = (no_dropout(1), no_dropout(3));
        for (a, b) in whole.step_log.iter().zip(&sliced.step_log) {
            assert!(
                (a.train_loss - b.train_loss).abs() < 1e-4,
                "{} vs {}",
                a.train_loss,
                b.train_loss
            );
        }
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
