//! The model's shape: a Llama-family configuration with Hugging Face `config.json` names.
//!
//! One struct describes every model the fine-tune stage runs: the tiny from-scratch
//! default, Llama and Qwen2 checkpoint folders, and dequantized GGUF files. Fields that
//! HF configs may leave out have serde defaults, so a `config.json` deserializes
//! directly (unknown keys are ignored: HF configs carry many we do not use).
//! Two fields are not HF keys: `rope_interleaved` (llama.cpp's GGUF `llama` files
//! reorder Q/K rows and need the interleaved rotation) and `rope_scaling_factor`
//! (HF's `rope_scaling = {type = "linear", factor}`, flattened by the loaders).

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// A Llama-family model's hyper-parameters (HF `config.json` names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    /// Rotate adjacent pairs (x0,x1),(x2,x3).. instead of the two halves (GGUF `llama`).
    #[serde(default)]
    pub rope_interleaved: bool,
    /// Linear position interpolation: positions are divided by this factor.
    #[serde(default)]
    pub rope_scaling_factor: Option<f64>,
    #[serde(default = "default_max_position_embeddings")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Biases on the q, k and v projections (Qwen2).
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<u32>,
}

fn default_rms_norm_eps() -> f64 {
    1e-6
}
fn default_rope_theta() -> f64 {
    10_000.0
}
fn default_max_position_embeddings() -> usize {
    2048
}

impl ModelConfig {
    /// A shape with the defaults a `config.json` naming only it would get: rotate-half
    /// RoPE with theta 10,000, eps 1e-6, 2,048 positions, untied, no biases, no special ids.
    pub fn new(
        vocab_size: usize,
        hidden_size: usize,
        intermediate_size: usize,
        num_hidden_layers: usize,
        num_attention_heads: usize,
        num_key_value_heads: usize,
    ) -> ModelConfig {
        ModelConfig {
            vocab_size,
            hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            rms_norm_eps: default_rms_norm_eps(),
            rope_theta: default_rope_theta(),
            rope_interleaved: false,
            rope_scaling_factor: None,
            max_position_embeddings: default_max_position_embeddings(),
            tie_word_embeddings: false,
            attention_bias: false,
            bos_token_id: None,
            eos_token_id: None,
        }
    }

    /// The width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Check the shape is consistent (heads divide the width, KV heads divide the heads).
    pub fn validate(&self) -> Result<()> {
        let c = self;
        if c.vocab_size == 0 || c.hidden_size == 0 || c.intermediate_size == 0 || c.num_hidden_layers == 0 {
            bail!(
                "model config: vocab_size, hidden_size, intermediate_size and num_hidden_layers must be > 0"
            );
        }
        if c.num_attention_heads == 0 || !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            bail!(
                "model config: hidden_size {} is not a multiple of num_attention_heads {}",
                c.hidden_size,
                c.num_attention_heads
            );
        }
        if !c.head_dim().is_multiple_of(2) {
            bail!(
                "model config: head dimension {} must be even for RoPE",
                c.head_dim()
            );
        }
        if c.num_key_value_heads == 0 || !c.num_attention_heads.is_multiple_of(c.num_key_value_heads) {
            bail!(
                "model config: num_attention_heads {} is not a multiple of num_key_value_heads {}",
                c.num_attention_heads,
                c.num_key_value_heads
            );
        }
        if let Some(f) = c.rope_scaling_factor {
            if !(f.is_finite() && f > 0.0) {
                bail!("model config: rope_scaling_factor must be > 0, got {f}");
            }
        }
        Ok(())
    }

    /// Number of parameters of a model of this shape.
    pub fn parameter_count(&self) -> usize {
        let c = self;
        let (d, kv) = (c.hidden_size, c.num_key_value_heads * c.head_dim());
        let bias = if c.attention_bias { d + 2 * kv } else { 0 };
        let layer = d * d * 2 + d * kv * 2 + bias + 3 * d * c.intermediate_size + 2 * d;
        let head = if c.tie_word_embeddings {
            0
        } else {
            c.vocab_size * d
        };
        c.vocab_size * d + c.num_hidden_layers * layer + d + head
    }
}

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
    /// Evaluations in a row after the best one whose validation loss stays above the best
    /// by more than `overfit_margin` that flag overfitting.
    pub overfit_patience: usize,
    /// Nats above the best validation loss that count as worse (0: any rise).
    pub overfit_margin: f64,
    /// Stop when overfitting is flagged.
    pub early_stopping: bool,
    /// Restore the weights of the best validation loss at the end.
    pub keep_best: bool,
    /// Activation checkpointing: keep one decoder layer's activations at a time and
    /// recompute each layer in the backward pass (about a third more compute, a fraction
    /// of the memory: `Model::loss_and_grads`).
    pub checkpoint_layers: bool,
    /// On the CPU, each micro-batch is cut into this many slices of whole rows that the
    /// threads compute side by side, their losses and gradients summed in slice order:
    /// the numbers depend on this value, never on the thread count (`train::train`).
    pub batch_slices: usize,
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
            overfit_margin: 0.0,
            early_stopping: false,
            keep_best: true,
            checkpoint_layers: false,
            batch_slices: 4,
        }
    }
}

impl TrainConfig {
    /// Check the numbers make sense.
    pub fn validate(&self) -> Result<()> {
        if self.seq_len < 2 || self.batch_size == 0 || self.grad_accum == 0 || self.batch_slices == 0 {
            bail!("finetune: seq_len must be >= 2, batch_size, grad_accum and batch_slices >= 1");
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
        if !(self.overfit_margin >= 0.0 && self.overfit_margin.is_finite()) {
            bail!("finetune: overfit_margin must be a finite number >= 0");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_llama_config_json_deserializes_with_defaults() {
        let json = r#"{"architectures":["LlamaForCausalLM"],"vocab_size":49152,"hidden_size":576,
            "intermediate_size":1536,"num_hidden_layers":30,"num_attention_heads":9,
            "num_key_value_heads":3,"rms_norm_eps":1e-5,"rope_theta":100000.0,
            "tie_word_embeddings":true,"bos_token_id":1,"eos_token_id":2,"torch_dtype":"bfloat16"}"#;
        let c: ModelConfig = serde_json::from_str(json).unwrap();
        assert_eq!(c.head_dim(), 64);
        assert!(!c.rope_interleaved && !c.attention_bias && c.rope_scaling_factor.is_none());
        assert_eq!(c.max_position_embeddings, 2048);
        c.validate().unwrap();
        // SmolLM2-135M's published parameter count.
        assert_eq!(c.parameter_count(), 134_515_008);
    }

    #[test]
    fn inconsistent_heads_are_refused() {
        let mut c: ModelConfig = serde_json::from_str(
            r#"{"vocab_size":10,"hidden_size":12,"intermediate_size":8,"num_hidden_layers":1,
                "num_attention_heads":3,"num_key_value_heads":2}"#,
        )
        .unwrap();
        assert!(c.validate().is_err());
        c.num_key_value_heads = 1;
        c.validate().unwrap();
    }
}
