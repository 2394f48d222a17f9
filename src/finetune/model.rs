//! An own compact Llama-family decoder in candle, with LoRA and prefix tuning.
//!
//! Covers Llama, SmolLM2 and Qwen2: RMSNorm, rotary position embeddings (rotate-half
//! or interleaved, linear position interpolation), multi-head / grouped-query /
//! multi-query attention, SwiGLU MLP, tied or untied embeddings, optional q/k/v bias.
//! Weights live under their Hugging Face names (`model.layers.0.self_attn.q_proj.weight`),
//! so checkpoints load and save without renaming.
//!
//! Why not candle-transformers: its models return only the last token's logits and
//! keep projections private (no LoRA). Why not candle-nn's fused ops: `rms_norm`,
//! `softmax_last_dim` and `rope` were seen not to pass gradients to their input, so
//! RMSNorm, softmax and RoPE here are written from basic tensor ops, and a test checks
//! that every trainable tensor receives a gradient. On the CPU (f32) the loss, causal
//! softmax, RMSNorm, SwiGLU and RoPE run as the fused ops of [`cpu_ops`], which carry
//! their own gradients; on CUDA attention, loss and RoPE run as [`cuda_ops`].
//!
//! What trains is chosen by [`Method`]: everything (full fine-tuning), LoRA pairs on
//! chosen projections (base frozen: base weights are plain tensors, never variables),
//! or a trained prefix of key/value vectors per layer (PEFT's prefix tuning).
//!
//! Devices: every tensor lives on the model's device (CPU, or CUDA in a `--features cuda`
//! build): weights, adapters, the RoPE tables and the causal mask (built once per length
//! and kept). Weights are initialised from the seeded CPU [`Rng`] and then moved, so a
//! model starts the same on every device. The frozen base weights of LoRA and prefix
//! tuning may be kept in bf16 ([`Model::new_with_dtype`]): projections then multiply in
//! bf16 while the residual stream, norms, attention, adapters and the loss stay f32.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use serde::{Deserialize, Serialize};

use super::config::ModelConfig;
use super::cpu_ops;
use super::cuda_ops::{self, Kernels};
use super::rng::Rng;

/// Which parameters train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Method {
    /// Every weight trains.
    Full,
    /// Low-rank adapters `B·A·(alpha/r)` beside the frozen base projections.
    Lora(LoraConfig),
    /// `num_virtual_tokens` trained key/value vectors prepended in every layer.
    Prefix { num_virtual_tokens: usize },
    /// `num_virtual_tokens` trained input embeddings prepended to every sequence (PEFT's
    /// prompt tuning): they take positions `0..P`, the tokens `P..P+T`, and the loss is
    /// on the tokens only.
    Prompt { num_virtual_tokens: usize },
}

/// LoRA settings (PEFT's names and defaults: r=8, alpha=16, on q and v).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraConfig {
    pub r: usize,
    pub alpha: f64,
    pub dropout: f64,
    /// Projection names: `q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`, `up_proj`,
    /// `down_proj`, or `all` for every linear layer of the blocks.
    pub target_modules: Vec<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            r: 8,
            alpha: 16.0,
            dropout: 0.05,
            target_modules: vec!["q_proj".into(), "v_proj".into()],
        }
    }
}

/// Every linear projection of a block, attention first.
pub const ALL_PROJECTIONS: [&str; 7] = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];

impl LoraConfig {
    /// The projections (`self_attn.q_proj`, ...) this config adapts; errors on unknown names.
    pub fn projections(&self) -> Result<Vec<&'static str>> {
        if self.r == 0 {
            bail!("lora: r must be > 0");
        }
        if self.target_modules.iter().any(|t| t == "all") {
            return Ok(ALL_PROJECTIONS.to_vec());
        }
        let mut out = Vec::new();
        for t in &self.target_modules {
            match ALL_PROJECTIONS.iter().find(|p| p.rsplit('.').next() == Some(t.as_str())) {
                Some(p) => out.push(*p),
                None => bail!(
                    "lora: unknown target module `{t}`; expected q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj or all"
                ),
            }
        }
        if out.is_empty() {
            bail!("lora: target_modules is empty");
        }
        Ok(out)
    }
}

/// A LoRA pair for one projection: `A` is r x in, `B` is out x r.
struct LoraPair {
    a: Tensor,
    b: Tensor,
}

/// The model: weights by HF name, the adapters, and the trainable variables.
pub struct Model {
    pub config: ModelConfig,
    pub method: Method,
    device: Device,
    weights: BTreeMap<String, Tensor>,
    /// Keyed by module path, e.g. `model.layers.0.self_attn.q_proj`.
    lora: BTreeMap<String, LoraPair>,
    lora_scale: f64,
    lora_dropout: f64,
    /// PEFT layout: `[num_virtual_tokens, layers * 2 * kv_dim]`, (layer, key|value) major.
    prefix: Option<Tensor>,
    /// Prompt tuning's virtual token embeddings `[num_virtual_tokens, hidden]`.
    prompt: Option<Tensor>,
    /// What the optimizer updates, with stable names (HF names; PEFT-style for adapters).
    vars: Vec<(String, Var)>,
    /// The dtype the base weights are kept in (f32, or bf16 when frozen).
    base_dtype: DType,
    /// RoPE cos/sin tables and the causal mask by (prefix slots, length), built once.
    tables: Mutex<HashMap<(usize, usize), Tables>>,
    /// Fused CUDA attention, loss and RoPE (None on the CPU or when they failed their check).
    fused: Option<Arc<Kernels>>,
}

/// RoPE cos and sin tables and the additive causal mask for one (prefix, length).
type Tables = (Tensor, Tensor, Tensor);

/// Token rows the LM head and the loss take at a time in the checkpointed and evaluation
/// passes (`Model::chunked_loss`): 256 rows of SmolLM2's 49,152-word vocabulary are 50 MB
/// of logits. The unit tests use 5, so that their small batches take several chunks.
const HEAD_ROWS: usize = if cfg!(test) { 5 } else { 256 };

/// What every segment of one forward pass needs: batch size, token count (`t_ids`), the
/// sequence length with prompt tuning's virtual tokens (`t`), and the RoPE/mask tables.
struct PassShape {
    b: usize,
    t_ids: usize,
    t: usize,
    n_prompt: usize,
    tables: Tables,
}

/// The HF tensor names a model of this shape needs.
pub fn tensor_names(c: &ModelConfig) -> Vec<String> {
    let mut names = vec!["model.embed_tokens.weight".to_string()];
    for i in 0..c.num_hidden_layers {
        let p = format!("model.layers.{i}");
        names.push(format!("{p}.input_layernorm.weight"));
        names.push(format!("{p}.post_attention_layernorm.weight"));
        for proj in ALL_PROJECTIONS {
            names.push(format!("{p}.{proj}.weight"));
        }
        if c.attention_bias {
            for proj in ["q_proj", "k_proj", "v_proj"] {
                names.push(format!("{p}.self_attn.{proj}.bias"));
            }
        }
    }
    names.push("model.norm.weight".to_string());
    if !c.tie_word_embeddings {
        names.push("lm_head.weight".to_string());
    }
    names
}

/// The shape of an HF tensor for this config.
fn expected_shape(c: &ModelConfig, name: &str) -> Vec<usize> {
    let (d, kv, ff, v) = (
        c.hidden_size,
        c.num_key_value_heads * c.head_dim(),
        c.intermediate_size,
        c.vocab_size,
    );
    let last = name.rsplit('.').nth(1).unwrap_or("");
    let is_bias = name.ends_with(".bias");
    match last {
        "embed_tokens" | "lm_head" => vec![v, d],
        "input_layernorm" | "post_attention_layernorm" | "norm" => vec![d],
        "q_proj" if is_bias => vec![d],
        "k_proj" | "v_proj" if is_bias => vec![kv],
        "q_proj" | "o_proj" => vec![d, d],
        "k_proj" | "v_proj" => vec![kv, d],
        "gate_proj" | "up_proj" => vec![ff, d],
        "down_proj" => vec![d, ff],
        _ => vec![],
    }
}

/// Fresh weights for training from scratch: N(0, 0.02), residual outputs scaled by
/// 1/sqrt(2·layers) (GPT-2), norms at 1, biases at 0.
pub fn init_weights(c: &ModelConfig, seed: u64, device: &Device) -> Result<HashMap<String, Tensor>> {
    c.validate()?;
    let mut rng = Rng::new(seed, 1);
    let mut out = HashMap::new();
    let resid_std = 0.02 / (2.0 * c.num_hidden_layers as f64).sqrt();
    for name in tensor_names(c) {
        let shape = expected_shape(c, &name);
        let n: usize = shape.iter().product();
        let data = if name.ends_with("norm.weight") {
            vec![1f32; n]
        } else if name.ends_with(".bias") {
            vec![0f32; n]
        } else if name.ends_with("o_proj.weight") || name.ends_with("down_proj.weight") {
            rng.normal_vec(n, resid_std)
        } else {
            rng.normal_vec(n, 0.02)
        };
        out.insert(name, Tensor::from_vec(data, shape, device)?);
    }
    Ok(out)
}

impl Model {
    /// Build from HF-named tensors (any float dtype; converted to f32), adding what `method` trains.
    pub fn new(
        config: ModelConfig,
        tensors: HashMap<String, Tensor>,
        method: Method,
        seed: u64,
        device: &Device,
    ) -> Result<Model> {
        Model::new_with_dtype(config, tensors, method, seed, device, DType::F32)
    }

    /// [`Model::new`] with the frozen base weights kept in `base_dtype` (`F32`, or `BF16`
    /// for LoRA and prefix tuning: full fine-tuning trains the weights, in f32).
    pub fn new_with_dtype(
        config: ModelConfig,
        tensors: HashMap<String, Tensor>,
        method: Method,
        seed: u64,
        device: &Device,
        base_dtype: DType,
    ) -> Result<Model> {
        config.validate()?;
        if !matches!(base_dtype, DType::F32 | DType::BF16) {
            bail!("model: base weights in {base_dtype:?}: expected f32 or bf16");
        }
        if base_dtype != DType::F32 && method == Method::Full {
            bail!(
                "model: full fine-tuning trains the base weights and keeps them in f32, not {base_dtype:?}"
            );
        }
        let mut weights = BTreeMap::new();
        let mut vars = Vec::new();
        for name in tensor_names(&config) {
            let t = tensors
                .get(&name)
                .with_context(|| format!("checkpoint has no tensor `{name}`"))?;
            let want = expected_shape(&config, &name);
            if t.dims() != want.as_slice() {
                bail!("tensor `{name}`: shape {:?}, the config needs {want:?}", t.dims());
            }
            // Norm weights and biases are added to f32 activations: they stay f32.
            let dtype = if name.ends_with(".bias") || name.ends_with("norm.weight") {
                DType::F32
            } else {
                base_dtype
            };
            let t = t.to_dtype(dtype)?.to_device(device)?;
            if method == Method::Full {
                let var = Var::from_tensor(&t)?;
                weights.insert(name.clone(), var.as_tensor().clone());
                vars.push((name, var));
            } else {
                weights.insert(name, t.detach());
            }
        }
        let mut model = Model {
            config,
            method: method.clone(),
            device: device.clone(),
            weights,
            lora: BTreeMap::new(),
            lora_scale: 0.0,
            lora_dropout: 0.0,
            prefix: None,
            prompt: None,
            vars,
            base_dtype,
            tables: Mutex::new(HashMap::new()),
            fused: None,
        };
        model.fused = fused_kernels(device, model.config.head_dim());
        let mut rng = Rng::new(seed, 2);
        match &method {
            Method::Full => {}
            Method::Lora(lc) => {
                let projections = lc.projections()?;
                model.lora_scale = lc.alpha / lc.r as f64;
                model.lora_dropout = lc.dropout;
                for i in 0..model.config.num_hidden_layers {
                    for proj in &projections {
                        let module = format!("model.layers.{i}.{proj}");
                        let w = &model.weights[&format!("{module}.weight")];
                        let (out_dim, in_dim) = w.dims2()?;
                        // PEFT: A ~ kaiming-uniform(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)); B = 0,
                        // so the adapted model starts exactly at the base model.
                        let a = Var::from_vec(
                            rng.uniform_vec(lc.r * in_dim, 1.0 / (in_dim as f64).sqrt()),
                            (lc.r, in_dim),
                            device,
                        )?;
                        let b = Var::zeros((out_dim, lc.r), DType::F32, device)?;
                        model.lora.insert(
                            module.clone(),
                            LoraPair {
                                a: a.as_tensor().clone(),
                                b: b.as_tensor().clone(),
                            },
                        );
                        model.vars.push((format!("{module}.lora_A.weight"), a));
                        model.vars.push((format!("{module}.lora_B.weight"), b));
                    }
                }
            }
            Method::Prefix { num_virtual_tokens } => {
                if *num_virtual_tokens == 0 {
                    bail!("prefix tuning: num_virtual_tokens must be > 0");
                }
                let c = &model.config;
                let width = c.num_hidden_layers * 2 * c.num_key_value_heads * c.head_dim();
                let p = Var::from_vec(
                    rng.normal_vec(num_virtual_tokens * width, 0.02),
                    (*num_virtual_tokens, width),
                    device,
                )?;
                model.prefix = Some(p.as_tensor().clone());
                model.vars.push(("prompt_embeddings".to_string(), p));
            }
            Method::Prompt { num_virtual_tokens } => {
                if *num_virtual_tokens == 0 {
                    bail!("prompt tuning: num_virtual_tokens must be > 0");
                }
                // PEFT's RANDOM init is nn.Embedding's N(0, 1); embeddings of a trained
                // model are far smaller, so start at the scale of prefix tuning's slots.
                let d = model.config.hidden_size;
                let p = Var::from_vec(
                    rng.normal_vec(num_virtual_tokens * d, 0.02),
                    (*num_virtual_tokens, d),
                    device,
                )?;
                model.prompt = Some(p.as_tensor().clone());
                model.vars.push(("prompt_embeddings".to_string(), p));
            }
        }
        Ok(model)
    }

    /// A fresh from-scratch model of this shape (full training).
    pub fn from_scratch(config: ModelConfig, method: Method, seed: u64, device: &Device) -> Result<Model> {
        let tensors = init_weights(&config, seed, device)?;
        Model::new(config, tensors, method, seed, device)
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The trainable variables with their names.
    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// Number of trainable scalars.
    pub fn trainable_parameters(&self) -> usize {
        self.vars.iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// The base weights by HF name (current values).
    pub fn weights(&self) -> &BTreeMap<String, Tensor> {
        &self.weights
    }

    fn w(&self, name: &str) -> Result<&Tensor> {
        self.weights
            .get(name)
            .with_context(|| format!("model has no tensor `{name}`"))
    }

    /// The dtype the frozen base weights are kept in.
    pub fn base_dtype(&self) -> DType {
        self.base_dtype
    }

    /// `x` as the base projections read it: cast once to the base weights' dtype.
    fn base_input(&self, x: &Tensor) -> Result<Tensor> {
        Ok(if x.dtype() == self.base_dtype {
            x.clone()
        } else {
            x.to_dtype(self.base_dtype)?
        })
    }

    /// `x·Wᵀ (+ b) (+ LoRA)` for the projection `module` (x is [N, in], f32; `xb` is x
    /// cast to the base dtype by [`Model::base_input`], the same tensor when that is f32).
    fn linear(&self, module: &str, x: &Tensor, xb: &Tensor, dropout: Option<&mut Rng>) -> Result<Tensor> {
        let w = self.w(&format!("{module}.weight"))?;
        let mut y = xb.matmul(&w.t()?)?;
        if y.dtype() != DType::F32 {
            y = y.to_dtype(DType::F32)?;
        }
        if let Some(b) = self.weights.get(&format!("{module}.bias")) {
            y = y.broadcast_add(b)?;
        }
        if let Some(pair) = self.lora.get(module) {
            let xin = match dropout {
                Some(rng) if self.lora_dropout > 0.0 => {
                    let keep = 1.0 - self.lora_dropout;
                    let mask = if self.device.is_cpu() {
                        let n = x.elem_count();
                        let mask: Vec<f32> = (0..n)
                            .map(|_| {
                                if rng.uniform() < keep {
                                    (1.0 / keep) as f32
                                } else {
                                    0.0
                                }
                            })
                            .collect();
                        Tensor::from_vec(mask, x.shape(), &self.device)?
                    } else {
                        // Drawn on the device (cuRAND, seeded by the training loop): a host
                        // mask is made element by element and uploaded for every adapted
                        // projection of every step. Same distribution, other numbers.
                        Tensor::rand(0f32, 1f32, x.shape(), &self.device)?
                            .lt(keep)?
                            .to_dtype(DType::F32)?
                            .affine(1.0 / keep, 0.0)?
                    };
                    x.mul(&mask)?
                }
                _ => x.clone(),
            };
            let delta = xin.matmul(&pair.a.t()?)?.matmul(&pair.b.t()?)?;
            y = (y + delta.affine(self.lora_scale, 0.0)?)?;
        }
        Ok(y)
    }

    /// RoPE cos/sin tables and the causal mask for `t` positions after `n_prefix` slots,
    /// built on the first call and kept on the device.
    fn tables(&self, n_prefix: usize, t: usize) -> Result<Tables> {
        let mut cache = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = cache.get(&(n_prefix, t)) {
            return Ok(v.clone());
        }
        let (cos, sin) = rope_tables(&self.config, n_prefix, t, &self.device)?;
        let mask = causal_mask(t, n_prefix, &self.device)?;
        let v = (cos, sin, mask);
        cache.insert((n_prefix, t), v.clone());
        Ok(v)
    }

    /// Logits `[B, T, vocab]` for token ids `[B, T]`. `dropout` (training) drives LoRA dropout.
    pub fn forward(&self, ids: &Tensor, dropout: Option<&mut Rng>) -> Result<Tensor> {
        let (x, shape) = self.trunk(ids, dropout)?;
        self.head(&x, &shape)
    }

    /// The last residual stream `[B*T, d]` for token ids `[B, T]` (stem and every
    /// layer), with the pass's shape.
    fn trunk(&self, ids: &Tensor, mut dropout: Option<&mut Rng>) -> Result<(Tensor, PassShape)> {
        let shape = self.shape_of(ids)?;
        let mut x = self.stem(ids, &shape)?;
        for i in 0..self.config.num_hidden_layers {
            x = self.layer(i, &x, &shape, dropout.as_deref_mut())?;
        }
        Ok((x, shape))
    }

    /// Batch size, token count, prefix slots and prompt tokens of a forward pass on `ids`.
    fn shape_of(&self, ids: &Tensor) -> Result<PassShape> {
        let (b, t_ids) = ids.dims2()?;
        let n_prefix = self.prefix.as_ref().map(|p| p.dim(0)).transpose()?.unwrap_or(0);
        let n_prompt = self.prompt.as_ref().map(|p| p.dim(0)).transpose()?.unwrap_or(0);
        // Prompt tuning lengthens every sequence by its virtual tokens.
        let t = t_ids + n_prompt;
        Ok(PassShape {
            b,
            t_ids,
            t,
            n_prompt,
            tables: self.tables(n_prefix, t)?,
        })
    }

    /// The token embeddings (after prompt tuning's virtual tokens): `[B*T, d]`.
    fn stem(&self, ids: &Tensor, s: &PassShape) -> Result<Tensor> {
        let mut x = self
            .w("model.embed_tokens.weight")?
            .index_select(&ids.flatten_all()?, 0)?; // [B*T, d]
        if x.dtype() != DType::F32 {
            x = x.to_dtype(DType::F32)?;
        }
        if let Some(prompt) = &self.prompt {
            let d = self.config.hidden_size;
            let virtual_tokens = prompt.unsqueeze(0)?.broadcast_as((s.b, s.n_prompt, d))?;
            x = Tensor::cat(&[&virtual_tokens, &x.reshape((s.b, s.t_ids, d))?], 1)?
                .reshape((s.b * s.t, d))?;
        }
        Ok(x)
    }

    /// Decoder layer `i` on the residual stream `x` `[B*T, d]`.
    fn layer(&self, i: usize, x: &Tensor, s: &PassShape, mut dropout: Option<&mut Rng>) -> Result<Tensor> {
        let c = &self.config;
        let p = format!("model.layers.{i}");
        let hn = rms_norm(x, self.w(&format!("{p}.input_layernorm.weight"))?, c.rms_norm_eps)?;
        let hb = self.base_input(&hn)?;
        let q = self.linear(&format!("{p}.self_attn.q_proj"), &hn, &hb, dropout.as_deref_mut())?;
        let k = self.linear(&format!("{p}.self_attn.k_proj"), &hn, &hb, dropout.as_deref_mut())?;
        let v = self.linear(&format!("{p}.self_attn.v_proj"), &hn, &hb, dropout.as_deref_mut())?;
        let attn = self.attention(i, q, k, v, (s.b, s.t), &s.tables)?; // [B*T, d]
        let o = self.linear(
            &format!("{p}.self_attn.o_proj"),
            &attn,
            &self.base_input(&attn)?,
            dropout.as_deref_mut(),
        )?;
        let x = (x + o)?;
        let hn = rms_norm(
            &x,
            self.w(&format!("{p}.post_attention_layernorm.weight"))?,
            c.rms_norm_eps,
        )?;
        let hb = self.base_input(&hn)?;
        let gate = self.linear(&format!("{p}.mlp.gate_proj"), &hn, &hb, dropout.as_deref_mut())?;
        let up = self.linear(&format!("{p}.mlp.up_proj"), &hn, &hb, dropout.as_deref_mut())?;
        let act = if cpu_ops::applies(&[&gate, &up]) {
            cpu_ops::swiglu(&gate, &up)?
        } else {
            (gate.silu()? * up)?
        };
        let m = self.linear(
            &format!("{p}.mlp.down_proj"),
            &act,
            &self.base_input(&act)?,
            dropout,
        )?;
        Ok((x + m)?)
    }

    /// Logits `[B, T, vocab]` from the last residual stream (the final norm and the LM head).
    fn head(&self, x: &Tensor, s: &PassShape) -> Result<Tensor> {
        let logits = self.logits_of_rows(&self.token_rows(x, s)?)?;
        Ok(logits.reshape((s.b, s.t_ids, self.config.vocab_size))?)
    }

    /// The residual stream's rows of the real tokens `[B*T_ids, d]`: the virtual tokens of
    /// prompt tuning predict nothing.
    fn token_rows(&self, x: &Tensor, s: &PassShape) -> Result<Tensor> {
        Ok(if s.n_prompt > 0 {
            let d = self.config.hidden_size;
            x.reshape((s.b, s.t, d))?
                .narrow(1, s.n_prompt, s.t_ids)?
                .reshape((s.b * s.t_ids, d))?
        } else {
            x.clone()
        })
    }

    /// Logits `[N, vocab]` (f32) of residual rows `[N, d]`: the final norm and the LM head.
    fn logits_of_rows(&self, x: &Tensor) -> Result<Tensor> {
        let c = &self.config;
        let x = rms_norm(x, self.w("model.norm.weight")?, c.rms_norm_eps)?;
        let head = if c.tie_word_embeddings {
            self.w("model.embed_tokens.weight")?
        } else {
            self.w("lm_head.weight")?
        };
        let logits = self.base_input(&x)?.matmul(&head.t()?)?;
        Ok(if logits.dtype() == DType::F32 {
            logits
        } else {
            logits.to_dtype(DType::F32)?
        })
    }

    /// The loss of the last residual stream `x`, [`HEAD_ROWS`] token rows at a time (the
    /// logits of a whole batch over a large vocabulary, and the copies the loss makes of
    /// them, are the largest tensors of a pass). Each chunk's loss, times `scale`, goes
    /// to `each` (to run its backward pass) before the next is computed; returns the
    /// summed loss, detached.
    fn chunked_loss(
        &self,
        x: &Tensor,
        s: &PassShape,
        targets: &Tensor,
        mask: &Tensor,
        count: f64,
        mut each: impl FnMut(Tensor) -> Result<()>,
    ) -> Result<Tensor> {
        let rows = self.token_rows(x, s)?;
        let (targets, mask) = (targets.flatten_all()?, mask.flatten_all()?);
        let n = rows.dim(0)?;
        let mut total: Option<Tensor> = None;
        for start in (0..n).step_by(HEAD_ROWS) {
            let len = HEAD_ROWS.min(n - start);
            let logits = self.logits_of_rows(&rows.narrow(0, start, len)?)?;
            let loss = self.loss_from_logits(
                &logits,
                &targets.narrow(0, start, len)?,
                &mask.narrow(0, start, len)?,
                count,
            )?;
            let value = loss.detach();
            each(loss)?;
            total = Some(match total {
                Some(t) => (t + value)?,
                None => value,
            });
        }
        total.context("a forward pass needs at least one token")
    }

    /// Self-attention of layer `layer` on its projections q `[B*T, H*hd]`, k, v
    /// `[B*T, KVH*hd]` (`bt` = (B, T)): RoPE, the prefix slots, causal softmax attention.
    /// `[B*T, d]`. With the fused CUDA kernels q, k, v stay in `[B, T, heads, hd]` and
    /// no score matrix is stored; otherwise basic ops in `[B, heads, T, hd]`.
    fn attention(
        &self,
        layer: usize,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        (b, t): (usize, usize),
        (cos, sin, mask): &Tables,
    ) -> Result<Tensor> {
        let c = &self.config;
        let (d, h, kvh, hd) = (
            c.hidden_size,
            c.num_attention_heads,
            c.num_key_value_heads,
            c.head_dim(),
        );
        let n_prefix = self.prefix.as_ref().map(|p| p.dim(0)).transpose()?.unwrap_or(0);
        // PEFT layout: columns (layer*2 + 0) hold keys, (layer*2 + 1) values: [P, KVH, hd].
        let prefix_slot = |prefix: &Tensor, slot: usize| -> Result<Tensor> {
            let kv_dim = kvh * hd;
            Ok(prefix
                .narrow(1, (layer * 2 + slot) * kv_dim, kv_dim)?
                .reshape((n_prefix, kvh, hd))?)
        };
        if let Some(kern) = &self.fused {
            let q = kern.rope(&q.reshape((b, t, h, hd))?, cos, sin, c.rope_interleaved)?;
            let mut k = kern.rope(&k.reshape((b, t, kvh, hd))?, cos, sin, c.rope_interleaved)?;
            let mut v = v.reshape((b, t, kvh, hd))?;
            if let Some(prefix) = &self.prefix {
                let take = |slot| -> Result<Tensor> {
                    Ok(prefix_slot(prefix, slot)?
                        .unsqueeze(0)?
                        .broadcast_as((b, n_prefix, kvh, hd))?)
                };
                k = Tensor::cat(&[&take(0)?, &k], 1)?;
                v = Tensor::cat(&[&take(1)?, &v], 1)?;
            }
            return Ok(kern.attention(&q, &k, &v, n_prefix)?.reshape((b * t, d))?);
        }
        let q = q.reshape((b, t, h, hd))?.transpose(1, 2)?.contiguous()?;
        let k = k.reshape((b, t, kvh, hd))?.transpose(1, 2)?.contiguous()?;
        let mut v = v.reshape((b, t, kvh, hd))?.transpose(1, 2)?.contiguous()?;
        let q = rope(&q, cos, sin, c.rope_interleaved)?;
        let mut k = rope(&k, cos, sin, c.rope_interleaved)?;
        if let Some(prefix) = &self.prefix {
            let take = |slot| -> Result<Tensor> {
                Ok(prefix_slot(prefix, slot)?
                    .transpose(0, 1)?
                    .unsqueeze(0)?
                    .broadcast_as((b, kvh, n_prefix, hd))?
                    .contiguous()?)
            };
            k = Tensor::cat(&[&take(0)?, &k], 2)?;
            v = Tensor::cat(&[&take(1)?, &v], 2)?;
        }
        let k = repeat_kv(&k, h / kvh)?;
        let v = repeat_kv(&v, h / kvh)?;
        // gemm reads the transposed keys through their strides: no copy.
        let scores = q.matmul(&k.t()?)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let probs = if cpu_ops::applies(&[&scores]) {
            cpu_ops::causal_softmax(&scores, scale, n_prefix)?
        } else {
            softmax_last_dim(&scores.affine(scale, 0.0)?.broadcast_add(mask)?)?
        };
        let attn = probs.matmul(&v)?; // [B, H, T, hd]
        Ok(attn.transpose(1, 2)?.contiguous()?.reshape((b * t, d))?)
    }

    /// Mean cross-entropy over positions where `mask` is 1 (`targets`, `mask`: [B, T]),
    /// and the number of such positions.
    pub fn loss(
        &self,
        ids: &Tensor,
        targets: &Tensor,
        mask: &Tensor,
        dropout: Option<&mut Rng>,
    ) -> Result<(Tensor, f64)> {
        let count = mask
            .flatten_all()?
            .to_dtype(DType::F32)?
            .sum_all()?
            .to_scalar::<f32>()? as f64;
        Ok((self.loss_given_count(ids, targets, mask, count, dropout)?, count))
    }

    /// [`Model::loss`] when the number of trained positions is known (counted on the host
    /// from the rows): nothing is read back from the device.
    pub fn loss_given_count(
        &self,
        ids: &Tensor,
        targets: &Tensor,
        mask: &Tensor,
        count: f64,
        dropout: Option<&mut Rng>,
    ) -> Result<Tensor> {
        // `forward` without its last reshape: logits stay `[N, vocab]` for the loss, as
        // every reshape of them is one more gradient of their size in the backward pass.
        let (x, shape) = self.trunk(ids, dropout)?;
        let logits = self.logits_of_rows(&self.token_rows(&x, &shape)?)?;
        self.loss_from_logits(&logits, targets, mask, count)
    }

    /// Mean cross-entropy of `logits` `[B, T, vocab]` or `[B*T, vocab]` over the `count`
    /// positions where `mask` is 1.
    fn loss_from_logits(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        mask: &Tensor,
        count: f64,
    ) -> Result<Tensor> {
        let v = self.config.vocab_size;
        let logits = if logits.rank() == 2 {
            logits.clone()
        } else {
            logits.reshape(((), v))?
        };
        let nll = match &self.fused {
            Some(kern) => kern.cross_entropy(&logits, &targets.flatten_all()?)?,
            None if cpu_ops::applies(&[&logits]) => cpu_ops::cross_entropy(&logits, &targets.flatten_all()?)?,
            None => nll_per_position(&logits, &targets.flatten_all()?)?,
        };
        let mask = mask.flatten_all()?.to_dtype(DType::F32)?;
        let total = (nll * &mask)?.sum_all()?;
        Ok(total.affine(1.0 / count.max(1.0), 0.0)?)
    }

    /// The loss ([`Model::loss_given_count`], detached) and the gradient of `scale` times
    /// it for every trainable tensor, in [`Model::vars`] order (`None` where the loss does
    /// not depend on it). With `checkpoint` (activation checkpointing), the forward pass
    /// keeps only each decoder layer's input; the backward pass recomputes one layer at a
    /// time from it (with the dropout state that layer started from, so the masks are the
    /// same) and carries the gradient at the residual stream down, layer by layer. Memory
    /// then holds one layer's activations instead of all of them, for one more forward
    /// pass of compute; the gradients equal the plain ones up to float summation order.
    #[allow(clippy::too_many_arguments)]
    pub fn loss_and_grads(
        &self,
        ids: &Tensor,
        targets: &Tensor,
        mask: &Tensor,
        count: f64,
        scale: f64,
        mut dropout: Option<&mut Rng>,
        checkpoint: bool,
    ) -> Result<(Tensor, Vec<Option<Tensor>>)> {
        let mut acc: Vec<Option<Tensor>> = vec![None; self.vars.len()];
        let add = |acc: &mut Vec<Option<Tensor>>, grads: &candle_core::backprop::GradStore| -> Result<()> {
            for (slot, (_, var)) in acc.iter_mut().zip(&self.vars) {
                if let Some(g) = grads.get(var.as_tensor()) {
                    *slot = Some(match slot.take() {
                        Some(prev) => (prev + g)?,
                        None => g.clone(),
                    });
                }
            }
            Ok(())
        };
        if !checkpoint {
            let loss = self.loss_given_count(ids, targets, mask, count, dropout)?;
            add(&mut acc, &loss.affine(scale, 0.0)?.backward()?)?;
            return Ok((loss.detach(), acc));
        }
        let s = self.shape_of(ids)?;
        let mut inputs: Vec<(Tensor, Option<Rng>)> = Vec::with_capacity(self.config.num_hidden_layers);
        let mut x = self.stem(ids, &s)?.detach();
        for i in 0..self.config.num_hidden_layers {
            let rng = dropout.as_deref().cloned();
            let next = self.layer(i, &x, &s, dropout.as_deref_mut())?.detach();
            inputs.push((x, rng));
            x = next;
        }
        let top = Var::from_tensor(&x)?;
        let mut g_top: Option<Tensor> = None;
        let loss = self.chunked_loss(top.as_tensor(), &s, targets, mask, count, |chunk| {
            let grads = chunk.affine(scale, 0.0)?.backward()?;
            add(&mut acc, &grads)?;
            let g = grads
                .get(top.as_tensor())
                .context("checkpointing: no gradient reaches the last layer")?;
            g_top = Some(match g_top.take() {
                Some(prev) => (prev + g)?,
                None => g.clone(),
            });
            Ok(())
        })?;
        let mut g = g_top.context("checkpointing: no gradient reaches the last layer")?;
        for (i, (input, rng)) in inputs.into_iter().enumerate().rev() {
            let xin = Var::from_tensor(&input)?;
            drop(input);
            let mut rng = rng;
            let out = self.layer(i, xin.as_tensor(), &s, rng.as_mut())?;
            let grads = (out * &g)?.sum_all()?.backward()?;
            add(&mut acc, &grads)?;
            g = grads
                .get(xin.as_tensor())
                .with_context(|| format!("checkpointing: no gradient reaches layer {i}'s input"))?
                .clone();
        }
        // The stem trains too when the embeddings (full) or virtual tokens (prompt) do.
        let x0 = self.stem(ids, &s)?;
        if x0.is_variable() || x0.track_op() {
            add(&mut acc, &(x0 * &g)?.sum_all()?.backward()?)?;
        }
        Ok((loss, acc))
    }

    /// [`Model::loss_given_count`] for evaluation: each segment's output is detached, so
    /// no autograd graph holds the activations of the whole pass (candle has no no-grad
    /// mode; with trainable tensors every intermediate would stay alive until the loss
    /// is dropped). Same value, one layer's activations in memory.
    pub fn eval_loss(&self, ids: &Tensor, targets: &Tensor, mask: &Tensor, count: f64) -> Result<Tensor> {
        let s = self.shape_of(ids)?;
        let mut x = self.stem(ids, &s)?.detach();
        for i in 0..self.config.num_hidden_layers {
            x = self.layer(i, &x, &s, None)?.detach();
        }
        self.chunked_loss(&x, &s, targets, mask, count, |_| Ok(()))
    }

    /// The base weights with LoRA merged in (`W + scale·B·A`), by HF name, in f32.
    pub fn merged_weights(&self) -> Result<BTreeMap<String, Tensor>> {
        let mut out = BTreeMap::new();
        for (name, w) in &self.weights {
            let w = &w.to_dtype(DType::F32)?;
            let module = name.trim_end_matches(".weight");
            let merged = match self.lora.get(module) {
                Some(pair) if name.ends_with(".weight") => {
                    (w + pair.b.matmul(&pair.a)?.affine(self.lora_scale, 0.0)?)?
                }
                _ => w.clone(),
            };
            out.insert(name.clone(), merged.detach());
        }
        Ok(out)
    }

    /// The adapter tensors under PEFT's names (`base_model.model.<module>.lora_A.weight`,
    /// `prompt_embeddings` for prefix tuning); empty for full fine-tuning.
    pub fn adapter_tensors(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        if self.method == Method::Full {
            return out;
        }
        for (name, var) in &self.vars {
            let key = if name == "prompt_embeddings" {
                name.clone()
            } else {
                format!("base_model.model.{name}")
            };
            out.insert(key, var.as_tensor().detach());
        }
        out
    }

    /// Load adapter tensors saved by [`Model::adapter_tensors`] into this model's variables.
    pub fn load_adapter_tensors(&mut self, tensors: &HashMap<String, Tensor>) -> Result<()> {
        for (name, var) in &self.vars {
            let key = if name == "prompt_embeddings" {
                name.clone()
            } else {
                format!("base_model.model.{name}")
            };
            let t = tensors
                .get(&key)
                .with_context(|| format!("adapter has no tensor `{key}`"))?;
            if t.dims() != var.dims() {
                bail!(
                    "adapter tensor `{key}`: shape {:?}, expected {:?}",
                    t.dims(),
                    var.dims()
                );
            }
            var.set(&t.to_dtype(DType::F32)?.to_device(&self.device)?)?;
        }
        Ok(())
    }

    /// Current values of the trainable variables (a snapshot: best weights so far).
    pub fn snapshot(&self) -> Result<Vec<Tensor>> {
        self.vars
            .iter()
            .map(|(_, v)| Ok(v.as_tensor().copy()?.detach()))
            .collect()
    }

    /// Put a [`Model::snapshot`] back.
    pub fn restore(&self, snapshot: &[Tensor]) -> Result<()> {
        for ((_, v), t) in self.vars.iter().zip(snapshot) {
            v.set(t)?;
        }
        Ok(())
    }
}

/// The fused CUDA kernels for `device` (compiled and checked against basic ops), or None
/// on the CPU, with `CURATE_FUSED_OPS=0`, or when they fail to load or agree (warned).
fn fused_kernels(device: &Device, head_dim: usize) -> Option<Arc<Kernels>> {
    if !device.is_cuda() || !cuda_ops::enabled() {
        return None;
    }
    #[cfg(feature = "cuda")]
    match Kernels::load(device, head_dim) {
        Ok(k) => return Some(k),
        Err(e) => eprintln!("warning: fused CUDA attention/loss/RoPE unavailable, using basic ops: {e:#}"),
    }
    let _ = head_dim;
    None
}

/// RMSNorm `x / sqrt(mean(x²) + eps) · w` over the last dimension: the fused CPU op
/// ([`cpu_ops::rms_norm`]) on f32 CPU tensors, else [`rms_norm_basic`].
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    if cpu_ops::applies(&[x, w]) {
        return Ok(cpu_ops::rms_norm(x, w, eps)?);
    }
    rms_norm_basic(x, w, eps)
}

/// RMSNorm from basic ops (any device and dtype).
pub fn rms_norm_basic(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    Ok(x.broadcast_div(&(ms + eps)?.sqrt()?)?.broadcast_mul(w)?)
}

/// Softmax over the last dimension from basic ops (max subtracted for stability).
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?)
}

/// Negative log-likelihood of `targets` [N] under `logits` [N, V] (log-softmax from basic ops).
pub fn nll_per_position(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    // The max is a constant shift of log-sum-exp: detaching it leaves the gradient exact.
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let picked = shifted.gather(&targets.unsqueeze(1)?.to_dtype(DType::U32)?, 1)?;
    Ok((lse - picked)?.squeeze(1)?)
}

/// cos and sin tables `[T, head_dim/2]` for positions `offset..offset+t`, divided by the
/// linear interpolation factor.
fn rope_tables(c: &ModelConfig, offset: usize, t: usize, device: &Device) -> Result<(Tensor, Tensor)> {
    let half = c.head_dim() / 2;
    let scale = c.rope_scaling_factor.unwrap_or(1.0);
    let mut cos = Vec::with_capacity(t * half);
    let mut sin = Vec::with_capacity(t * half);
    for pos in offset..offset + t {
        for i in 0..half {
            let inv_freq = c.rope_theta.powf(-(2.0 * i as f64) / c.head_dim() as f64);
            let angle = pos as f64 / scale * inv_freq;
            cos.push(angle.cos() as f32);
            sin.push(angle.sin() as f32);
        }
    }
    Ok((
        Tensor::from_vec(cos, (t, half), device)?,
        Tensor::from_vec(sin, (t, half), device)?,
    ))
}

/// Rotary embedding of `x` [B, H, T, hd]: rotate-half pairs (i, i+hd/2) or interleaved
/// (2i, 2i+1); the fused CPU op on f32 CPU tensors, else [`rope_basic`].
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor, interleaved: bool) -> Result<Tensor> {
    if cpu_ops::applies(&[x, cos, sin]) {
        return Ok(cpu_ops::rope(x, cos, sin, interleaved)?);
    }
    rope_basic(x, cos, sin, interleaved)
}

/// [`rope`] from basic ops (any device and dtype).
pub fn rope_basic(x: &Tensor, cos: &Tensor, sin: &Tensor, interleaved: bool) -> Result<Tensor> {
    let (b, h, t, hd) = x.dims4()?;
    let half = hd / 2;
    if interleaved {
        let pairs = x.reshape((b, h, t, half, 2))?;
        let even = pairs.narrow(4, 0, 1)?.squeeze(4)?;
        let odd = pairs.narrow(4, 1, 1)?.squeeze(4)?;
        let new_even = (even.broadcast_mul(cos)? - odd.broadcast_mul(sin)?)?;
        let new_odd = (even.broadcast_mul(sin)? + odd.broadcast_mul(cos)?)?;
        Ok(Tensor::stack(&[&new_even, &new_odd], 4)?.reshape((b, h, t, hd))?)
    } else {
        let x1 = x.narrow(3, 0, half)?;
        let x2 = x.narrow(3, half, half)?;
        let r1 = (x1.broadcast_mul(cos)? - x2.broadcast_mul(sin)?)?;
        let r2 = (x2.broadcast_mul(cos)? + x1.broadcast_mul(sin)?)?;
        Ok(Tensor::cat(&[&r1, &r2], 3)?)
    }
}

/// Additive causal mask `[T, P+T]`: prefix slots always visible, token j visible from i >= j.
fn causal_mask(t: usize, prefix: usize, device: &Device) -> Result<Tensor> {
    let mut m = vec![0f32; t * (prefix + t)];
    for i in 0..t {
        for j in (i + 1)..t {
            m[i * (prefix + t) + prefix + j] = -1e9;
        }
    }
    Ok(Tensor::from_vec(m, (t, prefix + t), device)?)
}

/// Grouped-query attention: each KV head serves `rep` query heads.
fn repeat_kv(x: &Tensor, rep: usize) -> Result<Tensor> {
    if rep == 1 {
        return Ok(x.clone());
    }
    let (b, kvh, s, hd) = x.dims4()?;
    Ok(x.unsqueeze(2)?
        .broadcast_as((b, kvh, rep, s, hd))?
        .contiguous()?
        .reshape((b, kvh * rep, s, hd))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn tiny_config(kv_heads: usize, tied: bool, bias: bool, interleaved: bool) -> ModelConfig {
        ModelConfig {
            rope_interleaved: interleaved,
            rope_scaling_factor: Some(2.0),
            max_position_embeddings: 64,
            tie_word_embeddings: tied,
            attention_bias: bias,
            ..ModelConfig::new(32, 16, 24, 2, 4, kv_heads)
        }
    }

    fn batch(device: &Device) -> (Tensor, Tensor, Tensor) {
        let ids: Vec<u32> = (0..2 * 9).map(|i| (i * 7 % 32) as u32).collect();
        let ids = Tensor::from_vec(ids, (2, 9), device).unwrap();
        let x = ids.narrow(1, 0, 8).unwrap();
        let y = ids.narrow(1, 1, 8).unwrap();
        let m = Tensor::ones((2, 8), DType::F32, device).unwrap();
        (x, y, m)
    }

    #[test]
    fn rope_preserves_norm_and_position_zero() {
        let d = Device::Cpu;
        let c = tiny_config(4, true, false, false);
        let (cos, sin) = rope_tables(&c, 0, 3, &d).unwrap();
        let x = Tensor::from_vec(Rng::new(1, 1).normal_vec(3 * 4, 1.0), (1, 1, 3, 4), &d).unwrap();
        for interleaved in [false, true] {
            let y = rope(&x, &cos, &sin, interleaved).unwrap();
            let nx: Vec<f32> = x
                .sqr()
                .unwrap()
                .sum(3)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let ny: Vec<f32> = y
                .sqr()
                .unwrap()
                .sum(3)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            for (a, b) in nx.iter().zip(&ny) {
                assert!((a - b).abs() < 1e-5);
            }
            // Position 0 is not rotated.
            let x0: Vec<f32> = x
                .narrow(2, 0, 1)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let y0: Vec<f32> = y
                .narrow(2, 0, 1)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            assert_eq!(x0, y0);
        }
    }

    #[test]
    fn softmax_and_nll_match_direct_formulas() {
        let d = Device::Cpu;
        let logits = Tensor::from_vec(vec![1f32, 2.0, 3.0, 0.5, 0.5, 0.5], (2, 3), &d).unwrap();
        let p: Vec<Vec<f32>> = softmax_last_dim(&logits).unwrap().to_vec2().unwrap();
        let z: f32 = [1f32, 2.0, 3.0].iter().map(|v| v.exp()).sum();
        assert!((p[0][2] - 3f32.exp() / z).abs() < 1e-6);
        let nll: Vec<f32> = nll_per_position(&logits, &Tensor::new(&[2u32, 0], &d).unwrap())
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!((nll[0] - (z.ln() - 3.0)).abs() < 1e-5);
        assert!((nll[1] - 3f32.ln()).abs() < 1e-5);
    }

    #[test]
    fn prompt_tuning_is_the_base_model_on_tokens_after_the_virtual_ones() {
        // Virtual token embeddings set to the embeddings of real tokens: the logits of the
        // ids must be the base model's on those tokens followed by the ids (positions
        // continue after the virtual tokens, attention is causal over both).
        let d = Device::Cpu;
        let c = tiny_config(2, true, false, false);
        let tensors = init_weights(&c, 4, &d).unwrap();
        let base = Model::new(c.clone(), tensors.clone(), Method::Full, 4, &d).unwrap();
        let prompt = Model::new(
            c,
            tensors,
            Method::Prompt {
                num_virtual_tokens: 3,
            },
            4,
            &d,
        )
        .unwrap();
        let virtual_ids = Tensor::new(&[5u32, 9, 2], &d).unwrap();
        let embeddings = base
            .w("model.embed_tokens.weight")
            .unwrap()
            .index_select(&virtual_ids, 0)
            .unwrap();
        prompt.vars()[0].1.set(&embeddings).unwrap();
        let ids = Tensor::new(&[[7u32, 1, 4, 4], [3, 3, 8, 0]], &d).unwrap();
        let got = prompt.forward(&ids, None).unwrap();
        assert_eq!(got.dims(), &[2, 4, base.config.vocab_size]);
        let full_ids = Tensor::cat(
            &[&virtual_ids.unsqueeze(0).unwrap().repeat((2, 1)).unwrap(), &ids],
            1,
        )
        .unwrap();
        let want = base.forward(&full_ids, None).unwrap().narrow(1, 3, 4).unwrap();
        let diff = (got - want)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-5, "max |prompt - base| = {diff}");
    }

    /// Every training method: full, LoRA on all projections with dropout, prefix, prompt.
    fn every_method() -> [Method; 4] {
        [
            Method::Full,
            Method::Lora(LoraConfig {
                target_modules: vec!["all".into()],
                dropout: 0.1,
                ..LoraConfig::default()
            }),
            Method::Prefix {
                num_virtual_tokens: 3,
            },
            Method::Prompt {
                num_virtual_tokens: 2,
            },
        ]
    }

    /// A tiny model; LoRA B starts at zero, so A's gradient is zero until B moves: B gets a value.
    fn model_with_moving_lora(c: ModelConfig, method: &Method, d: &Device) -> Model {
        let model = Model::from_scratch(c, method.clone(), 3, d).unwrap();
        for (name, var) in model.vars() {
            if name.ends_with("lora_B.weight") {
                let n = var.elem_count();
                var.set(&Tensor::from_vec(Rng::new(9, 9).normal_vec(n, 0.1), var.shape(), d).unwrap())
                    .unwrap();
            }
        }
        model
    }

    #[test]
    fn every_variant_runs_and_every_trainable_tensor_gets_a_gradient() {
        let d = Device::Cpu;
        for (kv, tied, bias, inter) in [
            (4, true, false, false),
            (2, false, true, true),
            (1, true, true, false),
        ] {
            for method in every_method() {
                let model = model_with_moving_lora(tiny_config(kv, tied, bias, inter), &method, &d);
                let (x, y, m) = batch(&d);
                let mut rng = Rng::new(5, 5);
                let (loss, count) = model.loss(&x, &y, &m, Some(&mut rng)).unwrap();
                assert_eq!(count, 16.0);
                let l = loss.to_scalar::<f32>().unwrap();
                assert!(l.is_finite() && l > 0.0, "{method:?}: loss {l}");
                let grads = loss.backward().unwrap();
                for (name, var) in model.vars() {
                    let g = grads
                        .get(var.as_tensor())
                        .unwrap_or_else(|| panic!("{method:?} kv={kv}: no gradient for {name}"));
                    let norm = g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
                    assert!(
                        norm > 0.0,
                        "{method:?} kv={kv} tied={tied}: zero gradient for {name}"
                    );
                }
            }
        }
    }

    /// Activation checkpointing (and the chunked head) changes memory, not the result:
    /// same loss, same gradient for every trainable tensor (up to float summation order),
    /// with LoRA dropout replayed, for every method and a tied/untied head; the dropout
    /// generator ends where the plain pass leaves it.
    #[test]
    fn checkpointed_gradients_equal_the_plain_ones() {
        let d = Device::Cpu;
        for (kv, tied, bias, inter) in [(4, true, false, false), (2, false, true, true)] {
            for method in every_method() {
                let model = model_with_moving_lora(tiny_config(kv, tied, bias, inter), &method, &d);
                let (x, y, m) = batch(&d);
                let (mut r1, mut r2) = (Rng::new(5, 5), Rng::new(5, 5));
                let (l1, g1) = model
                    .loss_and_grads(&x, &y, &m, 16.0, 0.5, Some(&mut r1), false)
                    .unwrap();
                let (l2, g2) = model
                    .loss_and_grads(&x, &y, &m, 16.0, 0.5, Some(&mut r2), true)
                    .unwrap();
                let (l1, l2) = (l1.to_scalar::<f32>().unwrap(), l2.to_scalar::<f32>().unwrap());
                assert!((l1 - l2).abs() < 1e-5 * l1.abs(), "{method:?}: loss {l1} vs {l2}");
                assert_eq!(r1.next_u64(), r2.next_u64(), "{method:?}: dropout draws differ");
                let eval = model
                    .eval_loss(&x, &y, &m, 16.0)
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                let plain = model
                    .loss_given_count(&x, &y, &m, 16.0, None)
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(
                    (eval - plain).abs() < 1e-5 * plain.abs(),
                    "{method:?}: eval {eval} vs {plain}"
                );
                for ((name, _), (a, b)) in model.vars().iter().zip(g1.iter().zip(&g2)) {
                    let (a, b) = (
                        a.as_ref().unwrap(),
                        b.as_ref()
                            .unwrap_or_else(|| panic!("{method:?}: no gradient for {name}")),
                    );
                    let diff = (a - b)
                        .unwrap()
                        .abs()
                        .unwrap()
                        .max_all()
                        .unwrap()
                        .to_scalar::<f32>()
                        .unwrap();
                    let scale = a.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                    assert!(
                        diff <= 1e-4 * scale.max(1e-6),
                        "{method:?} tied={tied}: {name} differs by {diff} (max {scale})"
                    );
                }
            }
        }
    }

    #[test]
    fn lora_and_prefix_start_at_the_base_model_and_merge_exactly() {
        let d = Device::Cpu;
        let c = tiny_config(2, false, true, false);
        let base = init_weights(&c, 11, &d).unwrap();
        let full = Model::new(c.clone(), base.clone(), Method::Full, 1, &d).unwrap();
        let lora = Model::new(
            c.clone(),
            base.clone(),
            Method::Lora(LoraConfig::default()),
            1,
            &d,
        )
        .unwrap();
        let (x, _, _) = batch(&d);
        let a: Vec<f32> = full
            .forward(&x, None)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let b: Vec<f32> = lora
            .forward(&x, None)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(a, b, "B = 0: LoRA starts exactly at the base model");
        // Move B, then the merged weights must give the same logits as the adapter path.
        for (name, var) in lora.vars() {
            if name.ends_with("lora_B.weight") {
                let n = var.elem_count();
                var.set(&Tensor::from_vec(Rng::new(2, 2).normal_vec(n, 0.2), var.shape(), &d).unwrap())
                    .unwrap();
            }
        }
        let merged: HashMap<String, Tensor> = lora.merged_weights().unwrap().into_iter().collect();
        let m = Model::new(c, merged, Method::Full, 1, &d).unwrap();
        let a: Vec<f32> = lora
            .forward(&x, None)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let b: Vec<f32> = m
            .forward(&x, None)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() < 1e-4, "{p} vs {q}");
        }
    }

    #[test]
    fn causal_mask_hides_the_future() {
        let d = Device::Cpu;
        let c = tiny_config(2, true, false, false);
        let model = Model::from_scratch(c, Method::Full, 4, &d).unwrap();
        let x1 = Tensor::new(&[[1u32, 2, 3, 4]], &d).unwrap();
        let x2 = Tensor::new(&[[1u32, 2, 9, 9]], &d).unwrap();
        let a: Vec<f32> = model
            .forward(&x1, None)
            .unwrap()
            .narrow(1, 0, 2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let b: Vec<f32> = model
            .forward(&x2, None)
            .unwrap()
            .narrow(1, 0, 2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn wrong_shapes_and_missing_tensors_are_clear_errors() {
        let d = Device::Cpu;
        let c = tiny_config(2, true, false, false);
        let mut t = init_weights(&c, 1, &d).unwrap();
        t.remove("model.norm.weight");
        let e = Model::new(c.clone(), t, Method::Full, 1, &d).err().unwrap();
        assert!(format!("{e:#}").contains("model.norm.weight"));
        let mut t = init_weights(&c, 1, &d).unwrap();
        t.insert(
            "model.norm.weight".into(),
            Tensor::zeros(3, DType::F32, &d).unwrap(),
        );
        assert!(Model::new(c, t, Method::Full, 1, &d).is_err());
    }

    #[test]
    fn bf16_base_weights_train_lora_close_to_f32_and_stay_frozen() {
        let d = Device::Cpu;
        let c = tiny_config(2, true, true, false);
        let base = init_weights(&c, 5, &d).unwrap();
        let lora = Method::Lora(LoraConfig {
            target_modules: vec!["all".into()],
            dropout: 0.0,
            ..LoraConfig::default()
        });
        let f32_model = Model::new(c.clone(), base.clone(), lora.clone(), 1, &d).unwrap();
        let bf16 = Model::new_with_dtype(c.clone(), base.clone(), lora.clone(), 1, &d, DType::BF16).unwrap();
        assert_eq!(
            bf16.weights()["model.layers.0.self_attn.q_proj.weight"].dtype(),
            DType::BF16
        );
        assert_eq!(bf16.weights()["model.norm.weight"].dtype(), DType::F32);
        assert_eq!(
            bf16.weights()["model.layers.0.self_attn.q_proj.bias"].dtype(),
            DType::F32
        );
        let (x, y, m) = batch(&d);
        let (a, _) = f32_model.loss(&x, &y, &m, None).unwrap();
        let (b, _) = bf16.loss(&x, &y, &m, None).unwrap();
        let (a, b) = (a.to_scalar::<f32>().unwrap(), b.to_scalar::<f32>().unwrap());
        assert!((a - b).abs() < 1e-2 * a.abs(), "f32 {a} vs bf16 {b}");
        // Gradients reach every adapter through the bf16 projections.
        for (name, var) in bf16.vars() {
            if name.ends_with("lora_B.weight") {
                let n = var.elem_count();
                var.set(&Tensor::from_vec(Rng::new(3, 3).normal_vec(n, 0.1), var.shape(), &d).unwrap())
                    .unwrap();
            }
        }
        let (loss, _) = bf16.loss(&x, &y, &m, None).unwrap();
        let grads = loss.backward().unwrap();
        for (name, var) in bf16.vars() {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            assert_eq!(g.dtype(), DType::F32);
            let norm = g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(norm > 0.0, "zero gradient for {name}");
        }
        // Merged weights come out in f32.
        let merged = bf16.merged_weights().unwrap();
        assert!(merged.values().all(|t| t.dtype() == DType::F32));
        // Full fine-tuning trains the weights in f32 only.
        assert!(Model::new_with_dtype(c, base, Method::Full, 1, &d, DType::BF16).is_err());
    }
}
