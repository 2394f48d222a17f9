//! Pretrained checkpoints in, one in-memory form out: Hugging Face folders and GGUF files.
//!
//! Both loaders return a [`LoadedCheckpoint`]: the [`ModelConfig`], every weight as an f32
//! CPU tensor under its Hugging Face name, the tokenizer and the chat template.
//!
//! - [`load_hf_dir`]: `config.json` (`model_type` `llama`, `mistral` without sliding window,
//!   `qwen2`), the weights in `model.safetensors`, in the shards listed by
//!   `model.safetensors.index.json`, or in every `*.safetensors` of the folder, and
//!   `tokenizer.json`; the chat template from `tokenizer_config.json` or `chat_template.jinja`.
//! - [`load_gguf`]: a llama.cpp GGUF of architecture `llama` or `qwen2`, dequantized to f32
//!   (candle's `quantized::gguf_file`), llama.cpp tensor names mapped to Hugging Face ones,
//!   the tokenizer rebuilt from the vocabulary in the file ([`super::gguf_tokenizer`]).
//!
//! Weight names:
//!
//! | Hugging Face | llama.cpp |
//! |---|---|
//! | `model.embed_tokens.weight` | `token_embd.weight` |
//! | `model.layers.{i}.input_layernorm.weight` | `blk.{i}.attn_norm.weight` |
//! | `model.layers.{i}.self_attn.{q,k,v,o}_proj.{weight,bias}` | `blk.{i}.attn_{q,k,v,output}.{weight,bias}` |
//! | `model.layers.{i}.post_attention_layernorm.weight` | `blk.{i}.ffn_norm.weight` |
//! | `model.layers.{i}.mlp.{gate,up,down}_proj.weight` | `blk.{i}.ffn_{gate,up,down}.weight` |
//! | `model.norm.weight` | `output_norm.weight` |
//! | `lm_head.weight` (absent when tied) | `output.weight` (absent when tied) |
//!
//! RoPE layout: llama.cpp's converter reorders the rows of Q and K in `llama`-architecture
//! GGUFs so that the two halves of each rotated pair sit next to each other (interleaved RoPE).
//! [`load_gguf`] undoes that ([`unpermute_qk`]), so every loaded checkpoint uses Hugging
//! Face's rotate-half layout and `rope_interleaved` is always `false`. `qwen2` GGUFs are not
//! reordered. Every checkpoint is checked against its config: each expected weight present
//! with its shape, nothing unexpected left over (old `rotary_emb.inv_freq` buffers are dropped).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use candle_core::quantized::gguf_file::{Content, Value as GgufValue};
use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};
use serde_json::Value;

use super::config::ModelConfig;
use super::gguf_tokenizer;

/// A pretrained model ready to be built: config, f32 weights by Hugging Face name, tokenizer.
pub struct LoadedCheckpoint {
    pub config: ModelConfig,
    pub tensors: HashMap<String, Tensor>,
    /// The dtype the file stores its weights in ([`stored_dtype`]): a fine-tuned model
    /// derived from this one is written in it.
    pub dtype: DType,
    pub tokenizer: tokenizers::Tokenizer,
    pub chat_template: Option<String>,
}

/// Load a Hugging Face checkpoint folder (Llama or Qwen2 family).
pub fn load_hf_dir(dir: &Path) -> Result<LoadedCheckpoint> {
    let config_path = dir.join("config.json");
    if !config_path.exists() {
        // A fine-tune output folder holds its models in subfolders (see `super::export`).
        for sub in ["merged", "base"] {
            if dir.join(sub).join("config.json").exists() {
                bail!(
                    "{}: no config.json; this is a fine-tune output folder, its model is in {}",
                    dir.display(),
                    dir.join(sub).display()
                );
            }
        }
    }
    let raw: Value = serde_json::from_slice(
        &std::fs::read(&config_path).with_context(|| format!("{}: cannot read", config_path.display()))?,
    )
    .with_context(|| format!("{}: invalid JSON", config_path.display()))?;
    let config = hf_config(&raw).with_context(|| format!("{}", config_path.display()))?;

    let mut tensors = HashMap::new();
    let mut stored = Vec::new();
    for file in safetensors_files(dir)? {
        let loaded = candle_core::safetensors::load(&file, &Device::Cpu)
            .map_err(|e| anyhow!("{}: cannot read safetensors: {e}", file.display()))?;
        for (name, t) in loaded {
            stored.push((t.rank(), Some(t.dtype())));
            let t = t
                .to_dtype(DType::F32)
                .map_err(|e| anyhow!("{}: {name}: {e}", file.display()))?;
            if tensors.insert(name.clone(), t).is_some() {
                bail!(
                    "{}: weight `{name}` appears in more than one file",
                    file.display()
                );
            }
        }
    }
    check_tensors(&config, &mut tensors).with_context(|| format!("{}", dir.display()))?;

    let tok_path = dir.join("tokenizer.json");
    let tokenizer = tokenizers::Tokenizer::from_file(&tok_path)
        .map_err(|e| anyhow!("{}: cannot load tokenizer: {e}", tok_path.display()))?;
    let chat_template = hf_chat_template(dir)?;
    Ok(LoadedCheckpoint {
        config,
        tensors,
        dtype: stored_dtype(stored),
        tokenizer,
        chat_template,
    })
}

/// Load a GGUF model file (architecture `llama` or `qwen2`), dequantized to f32, Hugging Face names.
pub fn load_gguf(path: &Path) -> Result<LoadedCheckpoint> {
    let file = std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut reader = std::io::BufReader::new(file);
    let content = Content::read(&mut reader)
        .map_err(|e| anyhow!("{}: not a readable GGUF file: {e}", path.display()))?;
    let config = gguf_config(&content).with_context(|| format!("{}", path.display()))?;
    let arch = md_str(&content.metadata, "general.architecture")?;
    let head_dim = config.hidden_size / config.num_attention_heads;

    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut tensors = HashMap::new();
    let mut stored = Vec::new();
    for gguf_name in names {
        let Some(hf_name) = hf_name(gguf_name) else {
            bail!(
                "{}: tensor `{gguf_name}` has no Hugging Face counterpart (unsupported model variant)",
                path.display()
            );
        };
        let q = content
            .tensor(&mut reader, gguf_name, &Device::Cpu)
            .map_err(|e| anyhow!("{}: tensor `{gguf_name}`: {e}", path.display()))?;
        let float = match q.dtype() {
            GgmlDType::F32 => Some(DType::F32),
            GgmlDType::F16 => Some(DType::F16),
            GgmlDType::BF16 => Some(DType::BF16),
            _ => None,
        };
        stored.push((q.shape().rank(), float));
        let mut t = q
            .dequantize(&Device::Cpu)
            .and_then(|t| t.to_dtype(DType::F32))
            .map_err(|e| anyhow!("{}: dequantizing `{gguf_name}`: {e}", path.display()))?;
        if arch == "llama" {
            let heads = if gguf_name.contains(".attn_q.") {
                Some(config.num_attention_heads)
            } else if gguf_name.contains(".attn_k.") {
                Some(config.num_key_value_heads)
            } else {
                None
            };
            if let Some(heads) = heads {
                t = unpermute_qk(&t, heads, head_dim)
                    .with_context(|| format!("{}: `{gguf_name}`", path.display()))?;
            }
        }
        tensors.insert(hf_name, t);
    }
    check_tensors(&config, &mut tensors).with_context(|| format!("{}", path.display()))?;
    let tok = gguf_tokenizer::tokenizer_from_metadata(&content.metadata)
        .with_context(|| format!("{}: tokenizer", path.display()))?;
    Ok(LoadedCheckpoint {
        config,
        tensors,
        dtype: stored_dtype(stored),
        tokenizer: tok.tokenizer,
        chat_template: tok.chat_template,
    })
}

/// The dtype a checkpoint stores its weights in, from each tensor's (rank, float dtype;
/// `None` when quantized): f16 or bf16 when every matrix is (llama.cpp keeps norms in f32
/// beside f16 matrices), else f32 (an f32 checkpoint, a quantized one, a mix).
pub fn stored_dtype(tensors: impl IntoIterator<Item = (usize, Option<DType>)>) -> DType {
    let mut matrices = tensors.into_iter().filter(|(rank, _)| *rank >= 2).map(|(_, d)| d);
    match matrices.next() {
        Some(Some(first @ (DType::F16 | DType::BF16))) if matrices.all(|d| d == Some(first)) => first,
        _ => DType::F32,
    }
}

/// llama.cpp's Q/K row order -> Hugging Face's: rows `[head][pair][2]` become `[head][2][pair]`.
/// Works on weights `[heads * head_dim, in]` and biases `[heads * head_dim]`.
pub fn unpermute_qk(t: &Tensor, heads: usize, head_dim: usize) -> Result<Tensor> {
    reorder_rows(t, heads, head_dim, true)
}

/// Hugging Face's Q/K row order -> llama.cpp's (what `convert_hf_to_gguf.py` does for `llama`).
pub fn permute_qk(t: &Tensor, heads: usize, head_dim: usize) -> Result<Tensor> {
    reorder_rows(t, heads, head_dim, false)
}

fn reorder_rows(t: &Tensor, heads: usize, head_dim: usize, from_interleaved: bool) -> Result<Tensor> {
    let dims = t.dims().to_vec();
    if dims.is_empty() || dims[0] != heads * head_dim || !head_dim.is_multiple_of(2) {
        bail!("cannot reorder Q/K rows: shape {dims:?} for {heads} heads of size {head_dim}");
    }
    let rest: Vec<usize> = dims[1..].to_vec();
    let split = |a: usize, b: usize| {
        let mut s = vec![heads, a, b];
        s.extend(&rest);
        s
    };
    // View the rows as [head][a][b] and swap a and b.
    let from = if from_interleaved {
        split(head_dim / 2, 2)
    } else {
        split(2, head_dim / 2)
    };
    Ok(t.reshape(from)?.transpose(1, 2)?.contiguous()?.reshape(dims)?)
}

/// [`ModelConfig`] from a Hugging Face `config.json`.
pub fn hf_config(raw: &Value) -> Result<ModelConfig> {
    let model_type = raw.get("model_type").and_then(Value::as_str).unwrap_or("");
    let qwen2 = match model_type {
        "llama" => false,
        "mistral" => {
            if raw.get("sliding_window").is_some_and(|w| !w.is_null()) {
                bail!("mistral with sliding-window attention is not supported");
            }
            false
        }
        "qwen2" => {
            if raw.get("use_sliding_window").and_then(Value::as_bool) == Some(true) {
                bail!("qwen2 with use_sliding_window = true is not supported");
            }
            true
        }
        other => bail!("model_type `{other}` is not supported (llama, mistral, qwen2)"),
    };
    let usize_key = |k: &str| -> Result<usize> {
        raw.get(k)
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .ok_or_else(|| anyhow!("`{k}` is missing or not a non-negative integer"))
    };
    let hidden_size = usize_key("hidden_size")?;
    let num_attention_heads = usize_key("num_attention_heads")?;
    let num_key_value_heads = if raw.get("num_key_value_heads").is_some_and(|v| !v.is_null()) {
        usize_key("num_key_value_heads")?
    } else {
        num_attention_heads
    };
    if num_attention_heads == 0 || hidden_size % num_attention_heads != 0 {
        bail!("hidden_size {hidden_size} is not a multiple of num_attention_heads {num_attention_heads}");
    }
    if let Some(hd) = raw.get("head_dim").and_then(Value::as_u64) {
        if hd as usize != hidden_size / num_attention_heads {
            bail!("head_dim {hd} != hidden_size / num_attention_heads is not supported");
        }
    }
    let rope_scaling_factor = match raw.get("rope_scaling") {
        None | Some(Value::Null) => None,
        Some(s) => {
            let kind = s
                .get("type")
                .or_else(|| s.get("rope_type"))
                .and_then(Value::as_str)
                .unwrap_or("");
            match kind {
                "linear" => Some(
                    s.get("factor")
                        .and_then(Value::as_f64)
                        .ok_or_else(|| anyhow!("rope_scaling: `factor` is missing"))?,
                ),
                "default" => None,
                other => bail!("rope_scaling type `{other}` is not supported (only linear)"),
            }
        }
    };
    let token_id = |k: &str| -> Option<u32> {
        match raw.get(k) {
            Some(Value::Number(n)) => n.as_u64().map(|v| v as u32),
            // Several end tokens (Llama-3.1): the first is the one the model was trained to emit.
            Some(Value::Array(a)) => a.first().and_then(Value::as_u64).map(|v| v as u32),
            _ => None,
        }
    };
    Ok(ModelConfig {
        vocab_size: usize_key("vocab_size")?,
        hidden_size,
        intermediate_size: usize_key("intermediate_size")?,
        num_hidden_layers: usize_key("num_hidden_layers")?,
        num_attention_heads,
        num_key_value_heads,
        rms_norm_eps: raw.get("rms_norm_eps").and_then(Value::as_f64).unwrap_or(1e-6),
        rope_theta: raw.get("rope_theta").and_then(Value::as_f64).unwrap_or(10_000.0),
        rope_interleaved: false,
        rope_scaling_factor,
        max_position_embeddings: usize_key("max_position_embeddings")?,
        tie_word_embeddings: raw
            .get("tie_word_embeddings")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        attention_bias: qwen2
            || raw
                .get("attention_bias")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        bos_token_id: token_id("bos_token_id"),
        eos_token_id: token_id("eos_token_id"),
    })
}

/// [`ModelConfig`] from GGUF metadata and tensor list (`{arch}.embedding_length`, ...).
pub fn gguf_config(content: &Content) -> Result<ModelConfig> {
    let md = &content.metadata;
    let arch = md_str(md, "general.architecture")?;
    if !matches!(arch, "llama" | "qwen2") {
        bail!("GGUF architecture `{arch}` is not supported (llama, qwen2)");
    }
    let int = |k: &str| -> Result<usize> { md_usize(md, &format!("{arch}.{k}")) };
    let hidden_size = int("embedding_length")?;
    let num_attention_heads = int("attention.head_count")?;
    let num_key_value_heads = int("attention.head_count_kv").unwrap_or(num_attention_heads);
    if num_attention_heads == 0 || hidden_size % num_attention_heads != 0 {
        bail!("embedding_length {hidden_size} is not a multiple of head_count {num_attention_heads}");
    }
    if let Ok(kl) = int("attention.key_length") {
        if kl != hidden_size / num_attention_heads {
            bail!("attention.key_length {kl} != embedding_length / head_count is not supported");
        }
    }
    let embd = content
        .tensor_infos
        .get("token_embd.weight")
        .ok_or_else(|| anyhow!("tensor `token_embd.weight` is missing"))?;
    let vocab_size = match int("vocab_size") {
        Ok(v) => v,
        Err(_) => embd.shape.dims()[0],
    };
    let float = |k: &str| -> Result<Option<f64>> {
        md.get(&format!("{arch}.{k}"))
            .map(|v| gguf_f64(v).map_err(|e| anyhow!("`{arch}.{k}`: {e}")))
            .transpose()
    };
    let rope_scaling_factor = match md.get(&format!("{arch}.rope.scaling.type")) {
        None => float("rope.scale_linear")?.filter(|f| *f != 1.0),
        Some(v) => match v
            .to_string()
            .map_err(|e| anyhow!("`{arch}.rope.scaling.type`: {e}"))?
            .as_str()
        {
            "none" => None,
            "linear" => Some(
                float("rope.scaling.factor")?
                    .ok_or_else(|| anyhow!("`{arch}.rope.scaling.factor` is missing"))?,
            ),
            other => bail!("RoPE scaling `{other}` is not supported (only linear)"),
        },
    };
    let token_id = |k: &str| -> Result<Option<u32>> {
        md.get(k)
            .map(|v| v.to_u32().map_err(|e| anyhow!("`{k}`: {e}")))
            .transpose()
    };
    Ok(ModelConfig {
        vocab_size,
        hidden_size,
        intermediate_size: int("feed_forward_length")?,
        num_hidden_layers: int("block_count")?,
        num_attention_heads,
        num_key_value_heads,
        rms_norm_eps: float("attention.layer_norm_rms_epsilon")?.unwrap_or(1e-5),
        rope_theta: float("rope.freq_base")?.unwrap_or(10_000.0),
        rope_interleaved: false,
        rope_scaling_factor,
        max_position_embeddings: int("context_length")?,
        tie_word_embeddings: !content.tensor_infos.contains_key("output.weight"),
        attention_bias: content.tensor_infos.contains_key("blk.0.attn_q.bias"),
        bos_token_id: token_id("tokenizer.ggml.bos_token_id")?,
        eos_token_id: token_id("tokenizer.ggml.eos_token_id")?,
    })
}

/// The Hugging Face name of a llama.cpp tensor, `None` for one we do not know.
pub fn hf_name(gguf: &str) -> Option<String> {
    match gguf {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (part, kind) = rest.rsplit_once('.')?;
    if kind != "weight" && kind != "bias" {
        return None;
    }
    let hf = match part {
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{kind}"))
}

/// Every weight the config implies, with its shape.
pub fn expected_shapes(c: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let (h, i, v) = (c.hidden_size, c.intermediate_size, c.vocab_size);
    let kv = c.num_key_value_heads * (h / c.num_attention_heads.max(1));
    let mut out = vec![
        ("model.embed_tokens.weight".to_string(), vec![v, h]),
        ("model.norm.weight".to_string(), vec![h]),
    ];
    if !c.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), vec![v, h]));
    }
    for l in 0..c.num_hidden_layers {
        let p = format!("model.layers.{l}");
        out.push((format!("{p}.input_layernorm.weight"), vec![h]));
        out.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
        out.push((format!("{p}.self_attn.q_proj.weight"), vec![h, h]));
        out.push((format!("{p}.self_attn.k_proj.weight"), vec![kv, h]));
        out.push((format!("{p}.self_attn.v_proj.weight"), vec![kv, h]));
        out.push((format!("{p}.self_attn.o_proj.weight"), vec![h, h]));
        if c.attention_bias {
            out.push((format!("{p}.self_attn.q_proj.bias"), vec![h]));
            out.push((format!("{p}.self_attn.k_proj.bias"), vec![kv]));
            out.push((format!("{p}.self_attn.v_proj.bias"), vec![kv]));
        }
        out.push((format!("{p}.mlp.gate_proj.weight"), vec![i, h]));
        out.push((format!("{p}.mlp.up_proj.weight"), vec![i, h]));
        out.push((format!("{p}.mlp.down_proj.weight"), vec![h, i]));
    }
    out
}

/// Check weights against the config: all present with their shapes, nothing else. Drops what
/// is harmless to drop (`rotary_emb.inv_freq`, a stored `lm_head` of a tied model).
fn check_tensors(c: &ModelConfig, tensors: &mut HashMap<String, Tensor>) -> Result<()> {
    tensors.retain(|k, _| !k.ends_with("rotary_emb.inv_freq"));
    if c.tie_word_embeddings {
        tensors.remove("lm_head.weight");
    }
    let expected = expected_shapes(c);
    let mut missing = Vec::new();
    for (name, shape) in &expected {
        match tensors.get(name) {
            None => missing.push(name.clone()),
            Some(t) if t.dims() != shape.as_slice() => {
                bail!(
                    "weight `{name}` has shape {:?}, the config implies {shape:?}",
                    t.dims()
                )
            }
            Some(_) => {}
        }
    }
    if !missing.is_empty() {
        bail!(
            "{} weights missing, first: {}",
            missing.len(),
            missing[..missing.len().min(5)].join(", ")
        );
    }
    let known: BTreeSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    let mut extra: Vec<&String> = tensors.keys().filter(|k| !known.contains(k.as_str())).collect();
    if !extra.is_empty() {
        extra.sort();
        bail!(
            "{} unexpected weights (unsupported model variant?), first: {}",
            extra.len(),
            extra
                .iter()
                .take(5)
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// The safetensors files of a folder: the index's shards, `model.safetensors`, or all `*.safetensors`.
fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let raw: Value = serde_json::from_slice(
            &std::fs::read(&index).with_context(|| format!("{}: cannot read", index.display()))?,
        )
        .with_context(|| format!("{}: invalid JSON", index.display()))?;
        let map = raw
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| anyhow!("{}: no `weight_map` object", index.display()))?;
        let files: BTreeSet<&str> = map.values().filter_map(Value::as_str).collect();
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|e| e == "safetensors")
                && p.file_name().is_some_and(|n| n != "adapter_model.safetensors")
        })
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{}: no *.safetensors files", dir.display());
    }
    Ok(files)
}

/// The chat template of a Hugging Face folder: `chat_template.jinja`, else `tokenizer_config.json`'s
/// `chat_template` (a string, or a list of named templates of which `default` is taken).
fn hf_chat_template(dir: &Path) -> Result<Option<String>> {
    let jinja = dir.join("chat_template.jinja");
    if jinja.exists() {
        return Ok(Some(
            std::fs::read_to_string(&jinja).with_context(|| format!("{}: cannot read", jinja.display()))?,
        ));
    }
    let cfg = dir.join("tokenizer_config.json");
    if !cfg.exists() {
        return Ok(None);
    }
    let raw: Value = serde_json::from_slice(
        &std::fs::read(&cfg).with_context(|| format!("{}: cannot read", cfg.display()))?,
    )
    .with_context(|| format!("{}: invalid JSON", cfg.display()))?;
    Ok(match raw.get("chat_template") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(list)) => list
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .or_else(|| list.first())
            .and_then(|t| t.get("template"))
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => None,
    })
}

fn md_str<'a>(md: &'a HashMap<String, GgufValue>, key: &str) -> Result<&'a str> {
    md.get(key)
        .and_then(|v| v.to_string().ok())
        .map(String::as_str)
        .ok_or_else(|| anyhow!("metadata key `{key}` is missing or not a string"))
}

fn md_usize(md: &HashMap<String, GgufValue>, key: &str) -> Result<usize> {
    let v = md
        .get(key)
        .ok_or_else(|| anyhow!("metadata key `{key}` is missing"))?;
    let n = match v {
        GgufValue::U8(x) => *x as u64,
        GgufValue::U16(x) => *x as u64,
        GgufValue::U32(x) => *x as u64,
        GgufValue::U64(x) => *x,
        GgufValue::I8(x) if *x >= 0 => *x as u64,
        GgufValue::I16(x) if *x >= 0 => *x as u64,
        GgufValue::I32(x) if *x >= 0 => *x as u64,
        GgufValue::I64(x) if *x >= 0 => *x as u64,
        other => bail!("metadata key `{key}`: expected a non-negative integer, found {other:?}"),
    };
    Ok(n as usize)
}

/// A GGUF number as f64. f32 values go through their shortest decimal form, so an epsilon
/// stored as f32 `1e-5` comes back as f64 `1e-5`, as written in the original config.json.
fn gguf_f64(v: &GgufValue) -> Result<f64> {
    Ok(match v {
        GgufValue::F32(x) => x.to_string().parse::<f64>()?,
        GgufValue::F64(x) => *x,
        other => other
            .to_u64()
            .map(|x| x as f64)
            .or_else(|_| other.to_i64().map(|x| x as f64))
            .map_err(|e| anyhow!("{e}"))?,
    })
}
