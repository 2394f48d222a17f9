//! One fine-tuning session end to end: conversations -> split -> tokenizer -> model ->
//! training -> files. Used by the `finetune` stage, `curate finetune` and `curate compare`.
//!
//! The model is `tiny` (from scratch, with a byte-level BPE trained on the training
//! split) or a pretrained checkpoint: `model = "<path>"` names a Hugging Face folder
//! (`config.json`, `*.safetensors`, `tokenizer.json`) or a `.gguf` file, loaded by
//! [`super::checkpoint`]; its tokenizer tokenizes and, with `template = "auto"`, its own
//! chat template renders (else a plain `User:` / `Assistant:` text closed by its EOS).
//!
//! Files written into the output folder ([`save`]; the model folders by [`super::export`]):
//! - `finetune.json`: the settings, the data counts and every loss ([`TrainReport`]).
//! - `merged/`: the full fine-tuned model (LoRA merged in) in the base checkpoint's dtype,
//!   a folder `AutoModelForCausalLM.from_pretrained` loads; not for prefix tuning (nothing
//!   to merge) nor with `save_merged = false`.
//! - `adapter/` (LoRA, prefix tuning): PEFT's `save_pretrained` layout
//!   (`adapter_model.safetensors` with keys such as
//!   `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight` or
//!   `prompt_embeddings`, `adapter_config.json` naming the base by absolute path).
//! - `base/` (an adapter on the tiny model): the untrained base the adapter applies to.
//! - `loss.svg`: the loss curves.
//! - With `save_rows`: `rows.safetensors`, the token rows each step trained on (`train_inputs`,
//!   `train_targets`, `train_mask`, `[steps x batch_size x grad_accum, seq_len]`, in order)
//!   and the validation rows (`val_*`), for training the same data with another tool.
//! - With `save_logits = N`: `logits.safetensors`, the trained model's logits on the first
//!   N validation rows (`input_ids` `[N, seq_len]` i64, `logits` `[N, seq_len, vocab]` f32),
//!   to check another tool's loading of `merged/` and `adapter/` against.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use super::chart::{self, Series};
use super::checkpoint::{self, LoadedCheckpoint};
use super::config::ModelConfig;
use super::data::{self, ChatFormat, ChatTemplate, Conversation, Example, ReadTally, Template};
use super::export;
use super::model::{LoraConfig, Method, Model};
use super::train::{self, TrainConfig, TrainData, TrainReport};
use crate::io::writer::write_atomic;

/// The shape of the from-scratch model (`[finetune.tiny]`); ~0.6M parameters by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TinyModel {
    /// Vocabulary of the byte-level BPE trained on the training split.
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub rope_theta: f64,
    pub tie_word_embeddings: bool,
}

impl Default for TinyModel {
    fn default() -> Self {
        TinyModel {
            vocab_size: 2048,
            hidden_size: 128,
            intermediate_size: 384,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            rope_theta: 10_000.0,
            tie_word_embeddings: true,
        }
    }
}

/// A chat template: a preset name (`auto`, `model`, `plain`, `default`, `chatml`) or the four parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TemplateSpec {
    Preset(String),
    Custom(Template),
}

/// `[finetune]` (and the `finetune` stage's table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FinetuneConfig {
    /// `tiny`: a from-scratch model with a tokenizer trained on the training split;
    /// else the path of a pretrained checkpoint (HF folder or `.gguf` file).
    pub model: String,
    pub tiny: TinyModel,
    /// `full`, `lora`, `prefix` or `prompt`; `auto`: `full` for tiny, `lora` for a pretrained model.
    pub method: String,
    pub lora: LoraConfig,
    /// Prefix tuning: trained key/value slots per layer; prompt tuning: trained input
    /// embeddings before every sequence.
    pub num_virtual_tokens: usize,
    pub template: TemplateSpec,
    /// Share of records held out for validation (by a hash of the text, seeded).
    pub val_fraction: f64,
    /// A validation file (any input format) instead of the split.
    pub validation: Option<PathBuf>,
    /// Where the files go (stage default: `finetune/` in the run's output folder).
    pub output: Option<PathBuf>,
    /// Print a line per evaluation to stderr.
    pub progress: bool,
    /// The `finetune` stage: with fewer training records than this it does not train
    /// (the run goes on, the report says why); `curate finetune` trains on any number.
    pub min_train_records: usize,
    /// LoRA: also write `merged/`, the full model with the adapter merged in (as large as
    /// the base model); off: `adapter/` only. Full fine-tuning always writes `merged/`.
    pub save_merged: bool,
    /// Where to train: `cpu`, or `cuda` / `cuda:N` (a build with `--features cuda`).
    pub device: String,
    /// The frozen base weights of LoRA and prefix tuning: `f32`, or `bf16` (the
    /// projections multiply in bf16; activations, adapters and the loss stay f32).
    pub dtype: String,
    /// Also write `rows.safetensors`: the token rows every step trained on, in order, and
    /// the validation rows (for training the same data elsewhere, e.g. PyTorch).
    pub save_rows: bool,
    /// Also write `logits.safetensors`: the trained model's logits on the first this many
    /// validation rows (to check another tool's loading of the saved model against).
    pub save_logits: usize,
    pub train: TrainConfig,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        FinetuneConfig {
            model: "tiny".into(),
            tiny: TinyModel::default(),
            method: "auto".into(),
            lora: LoraConfig::default(),
            num_virtual_tokens: 16,
            template: TemplateSpec::Preset("auto".into()),
            val_fraction: 0.1,
            validation: None,
            output: None,
            progress: true,
            min_train_records: 32,
            save_merged: true,
            device: "cpu".into(),
            dtype: "f32".into(),
            save_rows: false,
            save_logits: 0,
            train: TrainConfig::default(),
        }
    }
}

/// The CUDA ordinal a `device` value names: `None` for `cpu`.
fn cuda_ordinal(device: &str) -> Result<Option<usize>> {
    match device {
        "cpu" => Ok(None),
        "cuda" => Ok(Some(0)),
        d => match d.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
            Some(n) => Ok(Some(n)),
            None => bail!("finetune: device `{d}`: expected cpu, cuda or cuda:N"),
        },
    }
}

/// The device a `device` value names (`cpu`, `cuda`, `cuda:N`), opened.
pub fn open_device(device: &str) -> Result<Device> {
    match cuda_ordinal(device)? {
        None => Ok(Device::Cpu),
        Some(_) if !cfg!(feature = "cuda") => bail!(
            "finetune: device `{device}`: this curate was built without CUDA; build it with `cargo build --release --features cuda` (scripts/build_cuda.sh)"
        ),
        Some(n) => {
            let d = Device::new_cuda(n).with_context(|| format!("finetune: device `{device}`"))?;
            #[cfg(feature = "cuda")]
            if let Device::Cuda(c) = &d {
                // SAFETY: training uses one stream (candle's default), so cudarc's per-allocation
                // events that order work between streams are not needed; without them every
                // tensor allocation saves creating and destroying two CUDA events.
                unsafe { c.disable_event_tracking() };
            }
            Ok(d)
        }
    }
}

impl FinetuneConfig {
    /// The method's name with `auto` resolved.
    pub fn method_name(&self) -> &str {
        match (self.method.as_str(), self.model_path()) {
            ("auto", None) => "full",
            ("auto", Some(_)) => "lora",
            (m, _) => m,
        }
    }

    /// The training method as the model understands it.
    pub fn method(&self) -> Result<Method> {
        Ok(match self.method_name() {
            "full" => Method::Full,
            "lora" => {
                self.lora.projections()?;
                Method::Lora(self.lora.clone())
            }
            "prefix" => Method::Prefix {
                num_virtual_tokens: self.num_virtual_tokens,
            },
            "prompt" => Method::Prompt {
                num_virtual_tokens: self.num_virtual_tokens,
            },
            other => bail!("finetune: unknown method `{other}`; expected auto, full, lora, prefix or prompt"),
        })
    }

    /// The pretrained checkpoint's path; `None` for `tiny`.
    pub fn model_path(&self) -> Option<&Path> {
        (self.model != "tiny").then(|| Path::new(&self.model))
    }

    /// Make a relative `model` path relative to `base` (the config file's folder).
    pub fn resolve_model(&mut self, base: &Path) {
        if let Some(p) = self.model_path().filter(|p| p.is_relative()) {
            self.model = crate::io::lexical_clean(&base.join(p))
                .to_string_lossy()
                .into_owned();
        }
    }

    /// The template parts of the tiny model (`auto` = `default`).
    pub fn tiny_template(&self) -> Result<Template> {
        let t = match &self.template {
            TemplateSpec::Preset(name) if name == "auto" => Template::preset("default")?,
            TemplateSpec::Preset(name) if name == "plain" => Template::plain("<|end|>"),
            TemplateSpec::Preset(name) if name == "model" => {
                bail!("finetune: template = \"model\" needs a pretrained model, not tiny")
            }
            TemplateSpec::Preset(name) => Template::preset(name)?,
            TemplateSpec::Custom(t) => t.clone(),
        };
        t.validate()?;
        Ok(t)
    }

    /// The chat format for a pretrained checkpoint: `auto` takes the model's own template
    /// when it has one, else `plain`; `model` insists on the model's own.
    pub fn pretrained_format(&self, ck: &LoadedCheckpoint) -> Result<ChatFormat> {
        let token =
            |id: Option<u32>| -> String { id.and_then(|i| ck.tokenizer.id_to_token(i)).unwrap_or_default() };
        let (bos, eos) = (token(ck.config.bos_token_id), token(ck.config.eos_token_id));
        let own = |source: &str| -> Result<ChatFormat> {
            Ok(ChatFormat::Jinja(ChatTemplate::new(source, &bos, &eos)?))
        };
        let parts = match &self.template {
            TemplateSpec::Preset(name) => match (name.as_str(), &ck.chat_template) {
                ("auto" | "model", Some(source)) => return own(source),
                ("model", None) => bail!(
                    "finetune: template = \"model\": {} has no chat template",
                    self.model
                ),
                ("auto" | "plain", _) => {
                    if eos.is_empty() {
                        bail!(
                            "finetune: {} names no end-of-sequence token for the plain template",
                            self.model
                        );
                    }
                    Template::plain(&eos)
                }
                (name, _) => Template::preset(name)?,
            },
            TemplateSpec::Custom(t) => t.clone(),
        };
        parts.validate()?;
        Ok(ChatFormat::Parts(parts))
    }

    /// Check everything that can be checked before any data is read.
    pub fn validate(&self) -> Result<()> {
        match self.model_path() {
            None => {
                self.tiny_template()?;
            }
            Some(p) => {
                let gguf = p.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
                if !(p.is_dir() || gguf && p.is_file()) {
                    bail!(
                        "finetune: model `{}`: expected `tiny`, a Hugging Face checkpoint folder or a .gguf file",
                        p.display()
                    );
                }
                match &self.template {
                    TemplateSpec::Preset(n) if !["auto", "model", "plain"].contains(&n.as_str()) => {
                        Template::preset(n)?;
                    }
                    TemplateSpec::Custom(t) => t.validate()?,
                    _ => {}
                }
            }
        }
        if !(0.0..1.0).contains(&self.val_fraction) {
            bail!("finetune: val_fraction must be in [0, 1)");
        }
        let on_gpu = cuda_ordinal(&self.device)?.is_some();
        if on_gpu && !cfg!(feature = "cuda") {
            bail!(
                "finetune: device `{}`: this curate was built without CUDA; build it with `cargo build --release --features cuda` (scripts/build_cuda.sh)",
                self.device
            );
        }
        self.base_dtype()?;
        if self.tiny.vocab_size < 300 {
            bail!("finetune: tiny.vocab_size must be >= 300 (256 bytes + merges + markers)");
        }
        self.method()?;
        self.train.validate()
    }

    /// The dtype of the frozen base weights (`dtype`): f32, or bf16 for LoRA and prefix tuning.
    pub fn base_dtype(&self) -> Result<DType> {
        match self.dtype.as_str() {
            "f32" => Ok(DType::F32),
            "bf16" if self.method_name() == "full" => {
                bail!("finetune: dtype = \"bf16\" is for LoRA and prefix tuning (frozen base weights); full fine-tuning trains in f32")
            }
            "bf16" => Ok(DType::BF16),
            d => bail!("finetune: dtype `{d}`: expected f32 or bf16"),
        }
    }

    /// The tiny model's config for a tokenizer of `vocab` ids.
    pub fn tiny_config(&self, vocab: usize, eos: Option<u32>) -> ModelConfig {
        let t = &self.tiny;
        ModelConfig {
            rope_theta: t.rope_theta,
            max_position_embeddings: self.train.seq_len.max(512),
            tie_word_embeddings: t.tie_word_embeddings,
            eos_token_id: eos,
            ..ModelConfig::new(
                vocab,
                t.hidden_size,
                t.intermediate_size,
                t.num_hidden_layers,
                t.num_attention_heads,
                t.num_key_value_heads,
            )
        }
    }
}

/// Conversations split into training and validation.
#[derive(Debug, Clone, Default)]
pub struct Split {
    pub train: Vec<Conversation>,
    pub val: Vec<Conversation>,
}

/// Split by a seeded hash of the conversation's text ([`data::split_text`]), or take a
/// given validation set.
pub fn split(all: Vec<Conversation>, given_val: Option<Vec<Conversation>>, cfg: &FinetuneConfig) -> Split {
    match given_val {
        Some(val) => Split { train: all, val },
        None => {
            let (val, train): (Vec<Conversation>, Vec<Conversation>) = all.into_iter().partition(|c| {
                data::is_validation(&data::split_text(&c.turns), cfg.val_fraction, cfg.train.seed)
            });
            Split { train, val }
        }
    }
}

/// Train the tiny model's tokenizer on the training conversations.
pub fn tiny_tokenizer(
    cfg: &FinetuneConfig,
    template: &Template,
    train: &[Conversation],
) -> Result<Tokenizer> {
    let texts: Vec<String> = train.iter().map(|c| template.render(&c.turns)).collect();
    data::train_tokenizer(&texts, cfg.tiny.vocab_size, &template.markers())
}

/// Load a pretrained checkpoint: a `.gguf` file or a Hugging Face folder.
pub fn load_checkpoint(path: &Path) -> Result<LoadedCheckpoint> {
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")) {
        checkpoint::load_gguf(path)
    } else {
        checkpoint::load_hf_dir(path)
    }
}

/// The ids the tokenizer itself puts before a text (a BOS), from encoding one with and
/// without special tokens.
fn tokenizer_prefix(tokenizer: &Tokenizer) -> Result<Vec<u32>> {
    let with = tokenizer
        .encode("a", true)
        .map_err(|e| anyhow::anyhow!("tokenizer: {e}"))?;
    let without = tokenizer
        .encode("a", false)
        .map_err(|e| anyhow::anyhow!("tokenizer: {e}"))?;
    let (w, wo) = (with.get_ids(), without.get_ids());
    Ok(match w.windows(wo.len()).position(|win| win == wo) {
        Some(at) => w[..at].to_vec(),
        None => Vec::new(),
    })
}

/// What a finished session produced.
pub struct Outcome {
    pub report: TrainReport,
    pub model: Model,
    pub tokenizer: Tokenizer,
    /// How conversations were rendered (a model's own Jinja template is saved beside the weights).
    pub format: ChatFormat,
    /// The pretrained checkpoint trained from (`None` for `tiny`).
    pub base_model: Option<PathBuf>,
    /// The dtype the base checkpoint stores its weights in (f32 for `tiny` and quantized
    /// GGUF files): `merged/` is written in it.
    pub checkpoint_dtype: DType,
    /// The body of `finetune.json`.
    pub json: serde_json::Value,
    /// With `save_rows`: the rows the steps trained on, in order, and the validation rows.
    pub rows: Option<(data::Rows, data::Rows)>,
    /// With `save_logits`: the validation rows' input ids `[N, seq_len]` (i64) and the
    /// trained model's logits on them `[N, seq_len, vocab]` (f32), on the CPU.
    pub logits: Option<(Tensor, Tensor)>,
    /// Ids the tokenizer puts before a text (a BOS), untrained; padding id of packed rows.
    pub prefix: Vec<u32>,
    pub pad: u32,
}

/// Tokenize, build the model, train. `tokenizer` (tiny only): `None` trains one on the
/// split. A pretrained `model` brings its weights, tokenizer and chat template.
pub fn run(
    cfg: &FinetuneConfig,
    split: &Split,
    tokenizer: Option<Tokenizer>,
    tally: Option<&ReadTally>,
) -> Result<Outcome> {
    cfg.validate()?;
    if split.train.is_empty() {
        bail!("finetune: no training records with a response to learn from");
    }
    let device = open_device(&cfg.device)?;
    // The base: weights, tokenizer, chat format, end-of-sequence id, the ids the
    // tokenizer puts before a text, and the dtype its file stores weights in.
    let (config, tensors, tokenizer, format, eos, prefix, checkpoint_dtype) = match cfg.model_path() {
        None => {
            let template = cfg.tiny_template()?;
            let tokenizer = match tokenizer {
                Some(t) => t,
                None => tiny_tokenizer(cfg, &template, &split.train)?,
            };
            let eos = template
                .markers()
                .iter()
                .find(|m| m.contains("end"))
                .and_then(|m| tokenizer.token_to_id(m));
            let config = cfg.tiny_config(tokenizer.get_vocab_size(true), eos);
            let tensors = super::model::init_weights(&config, cfg.train.seed, &device)?;
            (
                config,
                tensors,
                tokenizer,
                ChatFormat::Parts(template),
                eos,
                Vec::new(),
                DType::F32,
            )
        }
        Some(path) => {
            if tokenizer.is_some() {
                bail!("finetune: a pretrained model uses its own tokenizer");
            }
            let ck = load_checkpoint(path)?;
            let format = cfg
                .pretrained_format(&ck)
                .with_context(|| format!("{}", path.display()))?;
            // A Jinja template writes any BOS itself (as HF's apply_chat_template expects).
            let prefix = match format {
                ChatFormat::Parts(_) => tokenizer_prefix(&ck.tokenizer)?,
                ChatFormat::Jinja(_) => Vec::new(),
            };
            if cfg.train.seq_len > ck.config.max_position_embeddings {
                bail!(
                    "finetune: seq_len {} exceeds the model's max_position_embeddings {}",
                    cfg.train.seq_len,
                    ck.config.max_position_embeddings
                );
            }
            let eos = ck.config.eos_token_id;
            (ck.config, ck.tensors, ck.tokenizer, format, eos, prefix, ck.dtype)
        }
    };
    let vocab = config.vocab_size;
    let encode = |cs: &[Conversation]| -> Result<Vec<Example>> {
        cs.iter()
            .map(|c| {
                let ex = data::encode(&tokenizer, &format, &c.turns, &prefix)
                    .with_context(|| format!("record {}", c.id))?;
                if let Some(id) = ex.ids.iter().find(|&&i| i as usize >= vocab) {
                    bail!(
                        "record {}: token id {id} is outside the model's vocabulary of {vocab}",
                        c.id
                    );
                }
                Ok(ex)
            })
            .collect()
    };
    let train_data = TrainData {
        train: encode(&split.train)?,
        val: encode(&split.val)?,
        pad: eos.unwrap_or(0),
    };
    // Checked before training, which may take long.
    let logit_rows = if cfg.save_logits > 0 {
        let rows = data::pack(&train_data.val, cfg.train.seq_len, train_data.pad);
        if rows.is_empty() {
            bail!("finetune: save_logits needs validation rows, and there are none");
        }
        Some(rows)
    } else {
        None
    };
    let model = Model::new_with_dtype(
        config,
        tensors,
        cfg.method()?,
        cfg.train.seed,
        &device,
        cfg.base_dtype()?,
    )?;
    let mut print = |s: &train::StepLog, e: Option<&train::EvalLog>| {
        if let Some(e) = e {
            eprintln!(
                "finetune: step {:>5} epoch {:>5.2} lr {:.2e} train {:.4} val {:.4} gap {:+.4}",
                s.step, s.epoch, s.lr, e.train_loss, e.val_loss, e.gap
            );
        }
    };
    let progress: train::Progress = if cfg.progress { Some(&mut print) } else { None };
    let report = train::train(&model, &train_data, &cfg.train, progress)?;
    let json = serde_json::json!({
        "model": {
            "source": cfg.model,
            "config": model.config,
            "parameters": model.config.parameter_count(),
            "method": cfg.method_name(),
            "method_settings": model.method,
            "trainable_parameters": model.trainable_parameters(),
            "dtype": cfg.dtype,
        },
        "device": device_name(&device),
        "template": format.describe(),
        "data": {
            "read": tally,
            "train_records": split.train.len(),
            "val_records": split.val.len(),
            "val_fraction": cfg.val_fraction,
            "validation_file": cfg.validation,
        },
        "train_config": cfg.train,
        "report": report,
    });
    let logits = match &logit_rows {
        Some(rows) => Some(logits_of(&model, rows, cfg.save_logits, &device)?),
        None => None,
    };
    let rows = if cfg.save_rows {
        Some((
            train::trained_rows(&train_data, &cfg.train, report.steps),
            data::pack(&train_data.val, cfg.train.seq_len, train_data.pad),
        ))
    } else {
        None
    };
    Ok(Outcome {
        report,
        model,
        tokenizer,
        format,
        base_model: cfg.model_path().map(Path::to_path_buf),
        checkpoint_dtype,
        json,
        rows,
        logits,
        prefix,
        pad: train_data.pad,
    })
}

/// Token-weighted mean loss (on the response tokens, as validation) of the trained model
/// on other conversations, rendered and packed as the validation set is: for probe sets
/// such as `curate compare`'s leaked benchmark items and duplicated records.
pub fn loss_on(outcome: &Outcome, seq_len: usize, batch_size: usize, convs: &[Conversation]) -> Result<f64> {
    let examples = convs
        .iter()
        .map(|c| {
            data::encode(&outcome.tokenizer, &outcome.format, &c.turns, &outcome.prefix)
                .with_context(|| format!("record {}", c.id))
        })
        .collect::<Result<Vec<_>>>()?;
    let rows = data::pack(&examples, seq_len, outcome.pad);
    train::evaluate(&outcome.model, &rows, batch_size)
}

/// The first `n` of `rows` as i64 input ids `[n, seq_len]` and the model's f32 logits on
/// them `[n, seq_len, vocab]`, both on the CPU.
fn logits_of(model: &Model, rows: &data::Rows, n: usize, device: &Device) -> Result<(Tensor, Tensor)> {
    let n = n.min(rows.len());
    let ids = &rows.inputs[..n * rows.seq_len];
    let input = Tensor::from_slice(ids, (n, rows.seq_len), device)?;
    let logits = model
        .forward(&input, None)
        .context("finetune: logits for save_logits")?
        .to_dtype(DType::F32)?
        .to_device(&Device::Cpu)?;
    let ids = Tensor::from_slice(ids, (n, rows.seq_len), &Device::Cpu)?.to_dtype(DType::I64)?;
    Ok((ids, logits))
}

/// `cpu`, or `cuda:N` with the GPU's ordinal.
fn device_name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        other => format!("{other:?}"),
    }
}

/// The loss chart of one run: smoothed per-step training loss, validation loss at evaluations.
pub fn loss_chart(report: &TrainReport, title: &str) -> String {
    let steps: Vec<(f64, f64)> = report
        .step_log
        .iter()
        .map(|s| (s.step as f64, s.train_loss))
        .collect();
    let k = (steps.len() / 50).max(1);
    let series = [
        Series {
            name: "train (per step, smoothed)".into(),
            color: chart::PALETTE[0],
            dashed: true,
            points: chart::smooth(&steps, k),
        },
        Series {
            name: "train (eval windows)".into(),
            color: chart::PALETTE[0],
            dashed: false,
            points: report
                .evals
                .iter()
                .map(|e| (e.step as f64, e.train_loss))
                .collect(),
        },
        Series {
            name: "validation".into(),
            color: chart::PALETTE[1],
            dashed: false,
            points: report.evals.iter().map(|e| (e.step as f64, e.val_loss)).collect(),
        },
    ];
    chart::line_chart(title, "optimizer step", "loss (nats / token)", &series)
}

/// Files of the layout before `merged/` and `adapter/` (weights and adapter in one
/// folder, which transformers loads wrongly): removed when a session saves over one.
const OLD_LAYOUT: [&str; 6] = [
    "model.safetensors",
    "config.json",
    "tokenizer.json",
    "chat_template.jinja",
    "adapter_model.safetensors",
    "adapter_config.json",
];

/// Write the session's files into `dir` (created): `merged/`, `adapter/`, `base/` as the
/// method needs ([`export`]), `finetune.json`, `loss.svg`, rows and logits when asked.
/// `save_merged = false` leaves out `merged/` for LoRA. Returns the paths written.
pub fn save(outcome: &Outcome, dir: &Path, save_merged: bool) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    // A folder saved over holds only this session's models, never a stale one beside them.
    for sub in ["merged", "adapter", "base"] {
        let p = dir.join(sub);
        if p.exists() {
            std::fs::remove_dir_all(&p).with_context(|| format!("{}: cannot remove", p.display()))?;
        }
    }
    for file in OLD_LAYOUT {
        let p = dir.join(file);
        if p.exists() {
            std::fs::remove_file(&p).with_context(|| format!("{}: cannot remove", p.display()))?;
        }
    }
    let model = &outcome.model;
    let mut written = Vec::new();
    let merges = match model.method {
        Method::Full => true,
        Method::Lora(_) => save_merged,
        // Prefix and prompt tuning change no weight: there is nothing to merge.
        Method::Prefix { .. } | Method::Prompt { .. } => false,
    };
    if merges {
        written.extend(export::write_model_folder(
            &dir.join("merged"),
            &model.merged_weights()?,
            &model.config,
            outcome.checkpoint_dtype,
            &outcome.tokenizer,
            Some(&outcome.format),
        )?);
    }
    if model.method != Method::Full {
        let base = match &outcome.base_model {
            Some(path) => export::Base::at(path)?,
            // A tiny model's base exists nowhere else: write it for the adapter to apply to.
            None => {
                let base_dir = dir.join("base");
                written.extend(export::write_model_folder(
                    &base_dir,
                    model.weights(),
                    &model.config,
                    outcome.checkpoint_dtype,
                    &outcome.tokenizer,
                    Some(&outcome.format),
                )?);
                export::Base::at(&base_dir)?
            }
        };
        written.extend(export::write_adapter_folder(
            &dir.join("adapter"),
            model,
            &base,
            &outcome.tokenizer,
            &outcome.format,
        )?);
    }
    if let Some((train_rows, val_rows)) = &outcome.rows {
        let mut t = HashMap::new();
        for (name, rows) in [("train", train_rows), ("val", val_rows)] {
            let (n, len) = (rows.len(), rows.seq_len);
            t.insert(
                format!("{name}_inputs"),
                Tensor::from_slice(&rows.inputs, (n, len), &Device::Cpu)?,
            );
            t.insert(
                format!("{name}_targets"),
                Tensor::from_slice(&rows.targets, (n, len), &Device::Cpu)?,
            );
            t.insert(
                format!("{name}_mask"),
                Tensor::from_slice(&rows.mask, (n, len), &Device::Cpu)?,
            );
        }
        candle_core::safetensors::save(&t, dir.join("rows.safetensors"))
            .with_context(|| format!("{}: cannot write rows.safetensors", dir.display()))?;
        written.push(dir.join("rows.safetensors"));
    }
    if let Some((ids, logits)) = &outcome.logits {
        let t = HashMap::from([
            ("input_ids".to_string(), ids.clone()),
            ("logits".to_string(), logits.clone()),
        ]);
        candle_core::safetensors::save(&t, dir.join("logits.safetensors"))
            .with_context(|| format!("{}: cannot write logits.safetensors", dir.display()))?;
        written.push(dir.join("logits.safetensors"));
    }
    write_atomic(
        &dir.join("finetune.json"),
        &serde_json::to_vec_pretty(&outcome.json)?,
    )?;
    written.push(dir.join("finetune.json"));
    write_atomic(
        &dir.join("loss.svg"),
        loss_chart(&outcome.report, "loss").as_bytes(),
    )?;
    written.push(dir.join("loss.svg"));
    Ok(written)
}

/// Load the `model.safetensors` of a model folder written by [`save`] (`merged/`, `base/`;
/// HF names) as a plain map.
pub fn load_weights(dir: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    candle_core::safetensors::load(dir.join("model.safetensors"), device)
        .with_context(|| format!("{}: cannot read model.safetensors", dir.display()))
}

/// The file `curate finetune CONFIG` reads: `[input]` (as in a pipeline) and `[finetune]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneFile {
    pub input: crate::config::InputConfig,
    #[serde(default)]
    pub finetune: FinetuneConfig,
}

/// `curate finetune CONFIG`: read the input, split, train, write the files into
/// `output` (else `[finetune] output` relative to the config file, else `out/finetune`).
pub fn run_file(path: &Path, output: Option<PathBuf>) -> Result<(Outcome, PathBuf)> {
    use crate::error::config_error;
    let text = std::fs::read_to_string(path)
        .map_err(|e| config_error(format!("{}: cannot read: {e}", path.display())))?;
    let file: FinetuneFile = toml::from_str(&text)
        .map_err(|e| config_error(format!("{}: {}", path.display(), e.to_string().trim_end())))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut cfg = file.finetune;
    cfg.resolve_model(&dir);
    cfg.validate()
        .map_err(|e| config_error(format!("{}: [finetune]: {e:#}", path.display())))?;
    let (all, tally) = data::read_conversations(&file.input, &dir)?;
    let given_val = match &cfg.validation {
        Some(v) => {
            let v = crate::io::lexical_clean(&dir.join(v));
            let input = data::input_for_files(std::slice::from_ref(&v), &file.input.fields);
            Some(data::read_conversations(&input, Path::new("."))?.0)
        }
        None => None,
    };
    let out_dir = output
        .or_else(|| {
            cfg.output
                .as_ref()
                .map(|o| crate::io::lexical_clean(&dir.join(o)))
        })
        .unwrap_or_else(|| PathBuf::from("out/finetune"));
    let split = split(all, given_val, &cfg);
    let outcome = run(&cfg, &split, None, Some(&tally))?;
    save(&outcome, &out_dir, cfg.save_merged)?;
    Ok((outcome, out_dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finetune::train::evaluate;
    use crate::record::Role;

    fn conversations(n: usize) -> Vec<Conversation> {
        (0..n)
            .map(|i| Conversation {
                id: format!("r{i}"),
                turns: vec![
                    (Role::Prompt, format!("第{i}个问题：{}加{}等于几？", i % 7, i % 5)),
                    (
                        Role::Response,
                        format!("{}加{}等于{}。", i % 7, i % 5, i % 7 + i % 5),
                    ),
                ],
            })
            .collect()
    }

    fn small(method: &str) -> FinetuneConfig {
        FinetuneConfig {
            method: method.into(),
            tiny: TinyModel {
                vocab_size: 320,
                hidden_size: 32,
                intermediate_size: 64,
                num_hidden_layers: 2,
                num_attention_heads: 4,
                num_key_value_heads: 2,
                ..TinyModel::default()
            },
            progress: false,
            val_fraction: 0.2,
            train: TrainConfig {
                seq_len: 32,
                batch_size: 4,
                max_steps: Some(8),
                eval_every: 4,
                lr: 5e-3,
                warmup_steps: 2,
                ..TrainConfig::default()
            },
            ..FinetuneConfig::default()
        }
    }

    #[test]
    fn saved_weights_and_adapters_load_back_to_the_same_model() {
        let dir = tempfile::tempdir().unwrap();
        for method in ["full", "lora", "prefix", "prompt"] {
            let cfg = small(method);
            let template = ChatFormat::Parts(cfg.tiny_template().unwrap());
            let sp = split(conversations(40), None, &cfg);
            assert!(!sp.val.is_empty() && !sp.train.is_empty());
            let out = run(&cfg, &sp, None, None).unwrap();
            let d = dir.path().join(method);
            let written = save(&out, &d, true).unwrap();
            assert!(written.iter().all(|p| p.exists()));
            // Which folders each method writes: a tiny model's adapter gets its base.
            let folders: Vec<&str> = ["merged", "adapter", "base"]
                .into_iter()
                .filter(|f| d.join(f).is_dir())
                .collect();
            let want: &[&str] = match method {
                "full" => &["merged"],
                "lora" => &["merged", "adapter", "base"],
                _ => &["adapter", "base"],
            };
            assert_eq!(folders, want, "{method}");
            // `save_merged = false` leaves out merged/ for LoRA only; on a pretrained base
            // an adapter names it and base/ is not written.
            let mut out = out;
            let tiny_unmerged = dir.path().join(format!("{method}-unmerged-tiny"));
            save(&out, &tiny_unmerged, false).unwrap();
            assert_eq!(
                tiny_unmerged.join("merged").exists(),
                method == "full",
                "{method}"
            );
            assert_eq!(tiny_unmerged.join("base").exists(), method != "full", "{method}");
            out.base_model = Some(PathBuf::from("/base/model"));
            let adapter_only = dir.path().join(format!("{method}-unmerged"));
            save(&out, &adapter_only, false).unwrap();
            assert_eq!(adapter_only.join("merged").exists(), method == "full", "{method}");
            assert!(!adapter_only.join("base").exists());
            if method != "full" {
                let ac: serde_json::Value = serde_json::from_slice(
                    &std::fs::read(adapter_only.join("adapter/adapter_config.json")).unwrap(),
                )
                .unwrap();
                assert_eq!(ac["base_model_name_or_path"], "/base/model");
            }
            out.base_model = None;
            // The model folder: merged/ when there is one, else the base the adapter applies to.
            let model_dir = if method == "prefix" || method == "prompt" {
                d.join("base")
            } else {
                d.join("merged")
            };
            let tk = Tokenizer::from_file(model_dir.join("tokenizer.json")).unwrap();
            assert_eq!(tk.get_vocab_size(true), out.tokenizer.get_vocab_size(true));
            let config: ModelConfig =
                serde_json::from_slice(&std::fs::read(model_dir.join("config.json")).unwrap()).unwrap();
            assert_eq!(config, out.model.config);
            let val: Vec<Example> = sp
                .val
                .iter()
                .map(|c| data::encode(&tk, &template, &c.turns, &[]).unwrap())
                .collect();
            let rows = data::pack(&val, 32, 0);
            let trained = evaluate(&out.model, &rows, 4).unwrap();
            let weights = load_weights(&model_dir, &Device::Cpu).unwrap();
            let reloaded = match method {
                // Full weights (LoRA merged in): the same model up to float rounding of the merge.
                "full" | "lora" => Model::new(config, weights, Method::Full, 1, &Device::Cpu).unwrap(),
                _ => {
                    let mut m = Model::new(config, weights, cfg.method().unwrap(), 99, &Device::Cpu).unwrap();
                    let adapter = candle_core::safetensors::load(
                        d.join("adapter/adapter_model.safetensors"),
                        &Device::Cpu,
                    )
                    .unwrap();
                    m.load_adapter_tensors(&adapter).unwrap();
                    m
                }
            };
            let again = evaluate(&reloaded, &rows, 4).unwrap();
            if method == "lora" {
                assert!((trained - again).abs() < 1e-4, "{method}: {trained} vs {again}");
            } else {
                assert_eq!(trained, again, "{method}");
            }
            if method != "full" {
                let adapter =
                    candle_core::safetensors::load(d.join("adapter/adapter_model.safetensors"), &Device::Cpu)
                        .unwrap();
                let mut keys: Vec<&String> = adapter.keys().collect();
                keys.sort();
                if method == "lora" {
                    assert!(keys.contains(
                        &&"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight".to_string()
                    ));
                    assert!(keys.contains(
                        &&"base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight".to_string()
                    ));
                    assert_eq!(keys.len(), 2 * 2 * 2);
                } else {
                    assert_eq!(keys, vec!["prompt_embeddings"]);
                }
                let ac: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(d.join("adapter/adapter_config.json")).unwrap())
                        .unwrap();
                let peft_type = match method {
                    "lora" => "LORA",
                    "prompt" => "PROMPT_TUNING",
                    _ => "PREFIX_TUNING",
                };
                assert_eq!(ac["peft_type"], peft_type);
                // The tiny base is named by the absolute path of base/.
                let base = std::path::absolute(d.join("base")).unwrap();
                assert_eq!(ac["base_model_name_or_path"], base.to_str().unwrap());
                assert_eq!(ac["peft_version"], export::PEFT_VERSION);
            }
            // Every loss is in finetune.json.
            let j: serde_json::Value =
                serde_json::from_slice(&std::fs::read(d.join("finetune.json")).unwrap()).unwrap();
            assert_eq!(j["report"]["step_log"].as_array().unwrap().len(), 8);
            let eval_steps: Vec<u64> = j["report"]["evals"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["step"].as_u64().unwrap())
                .collect();
            assert!(
                eval_steps.contains(&4) && eval_steps.contains(&8),
                "{eval_steps:?}"
            );
        }
    }

    #[test]
    fn saving_over_an_old_folder_leaves_no_adapter_beside_weights() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("ft");
        // The layout before merged/ and adapter/: weights and adapter in one folder.
        std::fs::create_dir_all(d.join("adapter")).unwrap();
        for f in OLD_LAYOUT {
            std::fs::write(d.join(f), b"old").unwrap();
        }
        std::fs::write(d.join("adapter/stale.bin"), b"old").unwrap();
        let cfg = small("full");
        let out = run(&cfg, &split(conversations(40), None, &cfg), None, None).unwrap();
        save(&out, &d, true).unwrap();
        for f in OLD_LAYOUT {
            assert!(!d.join(f).exists(), "{f} left over");
        }
        assert!(!d.join("adapter").exists());
        assert!(d.join("merged/model.safetensors").exists());
    }

    #[test]
    fn merged_weights_keep_the_checkpoint_dtype_and_logits_are_the_models() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = small("lora");
        cfg.save_logits = 3;
        let sp = split(conversations(40), None, &cfg);
        let mut out = run(&cfg, &sp, None, None).unwrap();
        // As if the base checkpoint stored bf16: merged/ is written in bf16, base/ too.
        out.checkpoint_dtype = DType::BF16;
        save(&out, dir.path(), true).unwrap();
        for sub in ["merged", "base"] {
            let w = load_weights(&dir.path().join(sub), &Device::Cpu).unwrap();
            assert!(w.values().all(|t| t.dtype() == DType::BF16), "{sub}");
            let c: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.path().join(sub).join("config.json")).unwrap())
                    .unwrap();
            assert_eq!(c["torch_dtype"], "bfloat16");
        }
        // logits.safetensors: the trained model's logits on the first validation rows.
        let saved =
            candle_core::safetensors::load(dir.path().join("logits.safetensors"), &Device::Cpu).unwrap();
        let (ids, logits) = (&saved["input_ids"], &saved["logits"]);
        let rows = ids.dim(0).unwrap();
        assert!(rows > 0 && rows <= 3);
        assert_eq!(ids.dtype(), DType::I64);
        assert_eq!(logits.dims(), &[rows, 32, out.model.config.vocab_size]);
        let again = out
            .model
            .forward(&ids.to_dtype(DType::U32).unwrap(), None)
            .unwrap();
        let diff: f32 = (again - logits)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap();
        assert_eq!(diff, 0.0);
        // No validation rows: refused before training.
        cfg.val_fraction = 0.0;
        let sp = split(conversations(40), None, &cfg);
        let err = format!("{:#}", run(&cfg, &sp, None, None).err().unwrap());
        assert!(err.contains("save_logits"), "{err}");
    }

    #[test]
    fn bad_settings_are_refused_before_training() {
        let mut c = small("dora");
        assert!(c.validate().is_err());
        c = small("lora");
        c.lora.target_modules = vec!["qq_proj".into()];
        assert!(format!("{:#}", c.validate().unwrap_err()).contains("qq_proj"));
        c = small("full");
        c.model = "llama-7b".into();
        assert!(c.validate().is_err());
        c = small("full");
        c.template = TemplateSpec::Preset("alpaca".into());
        assert!(c.validate().is_err());
        c = small("lora");
        c.device = "gpu".into();
        assert!(format!("{:#}", c.validate().unwrap_err()).contains("cpu, cuda or cuda:N"));
        c.device = "cuda:1".into();
        assert_eq!(c.validate().is_ok(), cfg!(feature = "cuda"));
        if !cfg!(feature = "cuda") {
            assert!(format!("{:#}", c.validate().unwrap_err()).contains("built without CUDA"));
            assert!(format!("{:#}", open_device("cuda").unwrap_err()).contains("built without CUDA"));
        }
        c.device = "cpu".into();
        c.dtype = "f16".into();
        assert!(c.validate().is_err());
        c.dtype = "bf16".into();
        c.validate().unwrap();
        c.method = "full".into();
        assert!(format!("{:#}", c.validate().unwrap_err()).contains("full fine-tuning"));
    }

    #[test]
    fn saved_rows_are_the_rows_the_steps_trained_on() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = small("full");
        cfg.save_rows = true;
        // 12 steps x 4 rows cross several epochs of the ~30 training rows.
        cfg.train.max_steps = Some(12);
        let sp = split(conversations(60), None, &cfg);
        let out = run(&cfg, &sp, None, None).unwrap();
        let d = dir.path().join("rows");
        save(&out, &d, true).unwrap();
        let rows = candle_core::safetensors::load(d.join("rows.safetensors"), &Device::Cpu).unwrap();
        assert_eq!(rows["train_inputs"].dims(), &[12 * 4, 32]);
        assert_eq!(rows["train_mask"].dtype(), DType::F32);
        assert!(rows["val_inputs"].dim(0).unwrap() > 0);
        // The first step's loss is the initial model's loss on the first 4 rows.
        let tk = &out.tokenizer;
        let config = cfg.tiny_config(tk.get_vocab_size(true), out.model.config.eos_token_id);
        let tensors = crate::finetune::model::init_weights(&config, cfg.train.seed, &Device::Cpu).unwrap();
        let fresh = Model::new(config, tensors, Method::Full, cfg.train.seed, &Device::Cpu).unwrap();
        let first = |name: &str| rows[name].narrow(0, 0, 4).unwrap();
        let (loss, _) = fresh
            .loss(
                &first("train_inputs"),
                &first("train_targets"),
                &first("train_mask"),
                None,
            )
            .unwrap();
        // Equal up to rounding: the step summed its `batch_slices` slices' losses.
        let direct = loss.to_scalar::<f32>().unwrap() as f64;
        assert!(
            (direct - out.report.step_log[0].train_loss).abs() < 1e-5,
            "{direct} vs {}",
            out.report.step_log[0].train_loss
        );
        assert!(out.report.tokens_per_second > 0.0 && out.report.steady_tokens_per_second.unwrap() > 0.0);
        let j: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.join("finetune.json")).unwrap()).unwrap();
        assert_eq!(j["device"], "cpu");
        assert_eq!(j["model"]["dtype"], "f32");
    }
}
