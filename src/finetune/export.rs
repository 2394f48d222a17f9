//! The fine-tuned model as folders that Hugging Face tools load as they are.
//!
//! - `merged/`: the full fine-tuned model (LoRA merged in), what
//!   `AutoModelForCausalLM.from_pretrained` reads: `config.json`, `model.safetensors` in
//!   the base checkpoint's dtype, `generation_config.json`, `tokenizer.json` and
//!   `tokenizer_config.json` (special tokens, the chat template).
//! - `adapter/`: LoRA, prefix or prompt tuning as PEFT's `save_pretrained` writes it:
//!   `adapter_config.json` (`base_model_name_or_path` = the base's absolute path,
//!   `peft_version`), `adapter_model.safetensors`, the tokenizer files, and a `README.md`
//!   saying how to load it (a GGUF base needs `gguf_file=`).
//! - `base/`: the untrained base an adapter applies to when it exists nowhere else (a
//!   tiny model trained from scratch), in the `merged/` layout.
//!
//! An adapter never lies beside full weights: transformers loads a folder holding both by
//! applying the adapter to weights that already contain it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use serde_json::{json, Value};
use tokenizers::Tokenizer;

use super::config::ModelConfig;
use super::data::ChatFormat;
use super::model::{Method, Model};
use crate::io::writer::write_atomic;

/// The PEFT release whose `save_pretrained` layout `adapter/` follows (checked by
/// tests/hf_interop.rs with this version).
pub const PEFT_VERSION: &str = "0.21.2";

/// The model an adapter was trained on.
#[derive(Debug, Clone, PartialEq)]
pub enum Base {
    /// A Hugging Face checkpoint folder (absolute path).
    Folder(PathBuf),
    /// A llama.cpp GGUF file (absolute path), dequantized to f32 for training.
    Gguf(PathBuf),
}

impl Base {
    /// The base at `path` (a `.gguf` file or a folder), made absolute.
    pub fn at(path: &Path) -> Result<Base> {
        let abs = crate::io::lexical_clean(
            &std::path::absolute(path)
                .with_context(|| format!("{}: cannot make absolute", path.display()))?,
        );
        Ok(
            if abs.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")) {
                Base::Gguf(abs)
            } else {
                Base::Folder(abs)
            },
        )
    }

    /// The path `base_model_name_or_path` names.
    pub fn path(&self) -> &Path {
        match self {
            Base::Folder(p) | Base::Gguf(p) => p,
        }
    }
}

/// The name transformers gives a dtype in `config.json` (`torch_dtype`).
fn torch_dtype_name(dtype: DType) -> Result<&'static str> {
    Ok(match dtype {
        DType::F32 => "float32",
        DType::BF16 => "bfloat16",
        DType::F16 => "float16",
        other => bail!("weights in {other:?}: expected f32, bf16 or f16"),
    })
}

/// A Hugging Face `config.json` for the model: Qwen2 when it has q/k/v biases, else Llama.
pub fn hf_config(c: &ModelConfig, dtype: DType) -> Result<Value> {
    if c.rope_interleaved {
        // Every loader undoes llama.cpp's interleaving; HF's classes rotate halves only.
        bail!("interleaved RoPE has no Hugging Face config; the Q/K rows must be reordered first");
    }
    let mut v = serde_json::to_value(c)?;
    let o = v
        .as_object_mut()
        .ok_or_else(|| anyhow!("model config is not an object"))?;
    o.remove("rope_interleaved");
    o.remove("rope_scaling_factor");
    if let Some(factor) = c.rope_scaling_factor {
        o.insert(
            "rope_scaling".into(),
            json!({"rope_type": "linear", "type": "linear", "factor": factor}),
        );
    }
    // q/k/v biases are Qwen2's; HF's Llama class would put one on o_proj as well.
    let (arch, kind) = if c.attention_bias {
        ("Qwen2ForCausalLM", "qwen2")
    } else {
        ("LlamaForCausalLM", "llama")
    };
    o.insert("architectures".into(), json!([arch]));
    o.insert("model_type".into(), json!(kind));
    o.insert("head_dim".into(), json!(c.head_dim()));
    o.insert("hidden_act".into(), json!("silu"));
    o.insert("torch_dtype".into(), json!(torch_dtype_name(dtype)?));
    Ok(v)
}

/// Write a full model folder (`merged/`, `base/`): `weights` (HF names) converted to `dtype`,
/// its config, generation config and tokenizer files. Returns the files written.
pub fn write_model_folder(
    dir: &Path,
    weights: &BTreeMap<String, Tensor>,
    config: &ModelConfig,
    dtype: DType,
    tokenizer: &Tokenizer,
    format: Option<&ChatFormat>,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let config_json = hf_config(config, dtype)?;
    let mut on_cpu = std::collections::HashMap::new();
    for (name, t) in weights {
        let t = t
            .to_device(&Device::Cpu)
            .and_then(|t| t.to_dtype(dtype))
            .with_context(|| format!("weight `{name}`"))?;
        on_cpu.insert(name.clone(), t);
    }
    let weights_path = dir.join("model.safetensors");
    candle_core::safetensors::save(&on_cpu, &weights_path)
        .with_context(|| format!("{}: cannot write", weights_path.display()))?;
    write_atomic(
        &dir.join("config.json"),
        &serde_json::to_vec_pretty(&config_json)?,
    )?;
    let mut generation = serde_json::Map::new();
    for (key, id) in [
        ("bos_token_id", config.bos_token_id),
        ("eos_token_id", config.eos_token_id),
    ] {
        if let Some(id) = id {
            generation.insert(key.into(), json!(id));
        }
    }
    write_atomic(
        &dir.join("generation_config.json"),
        &serde_json::to_vec_pretty(&Value::Object(generation))?,
    )?;
    let mut written = vec![
        weights_path,
        dir.join("config.json"),
        dir.join("generation_config.json"),
    ];
    written.extend(write_tokenizer_files(dir, tokenizer, config, format)?);
    Ok(written)
}

/// `tokenizer.json` and `tokenizer_config.json` (special tokens by name, the chat template
/// when the model's own Jinja template rendered the data), as `AutoTokenizer` reads them.
pub fn write_tokenizer_files(
    dir: &Path,
    tokenizer: &Tokenizer,
    config: &ModelConfig,
    format: Option<&ChatFormat>,
) -> Result<Vec<PathBuf>> {
    let tk = tokenizer
        .to_string(false)
        .map_err(|e| anyhow!("tokenizer: {e}"))?;
    write_atomic(&dir.join("tokenizer.json"), tk.as_bytes())?;
    let mut tc = serde_json::Map::new();
    tc.insert("tokenizer_class".into(), json!("PreTrainedTokenizerFast"));
    tc.insert("model_max_length".into(), json!(config.max_position_embeddings));
    tc.insert("clean_up_tokenization_spaces".into(), json!(false));
    for (key, id) in [
        ("bos_token", config.bos_token_id),
        ("eos_token", config.eos_token_id),
    ] {
        if let Some(token) = id.and_then(|i| tokenizer.id_to_token(i)) {
            tc.insert(key.into(), json!(token));
        }
    }
    if let Some(ChatFormat::Jinja(t)) = format {
        tc.insert("chat_template".into(), json!(t.source));
    }
    write_atomic(
        &dir.join("tokenizer_config.json"),
        &serde_json::to_vec_pretty(&Value::Object(tc))?,
    )?;
    Ok(vec![
        dir.join("tokenizer.json"),
        dir.join("tokenizer_config.json"),
    ])
}

/// Write `adapter/`: the model's LoRA, prefix or prompt tensors under PEFT names, PEFT's
/// `adapter_config.json`, the tokenizer files and a README on loading it onto `base`.
pub fn write_adapter_folder(
    dir: &Path,
    model: &Model,
    base: &Base,
    tokenizer: &Tokenizer,
    format: &ChatFormat,
) -> Result<Vec<PathBuf>> {
    let tensors = model.adapter_tensors();
    if tensors.is_empty() {
        bail!("full fine-tuning has no adapter to write");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let on_cpu: std::collections::HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(k, t)| Ok((k, t.to_device(&Device::Cpu)?)))
        .collect::<Result<_>>()?;
    let weights_path = dir.join("adapter_model.safetensors");
    candle_core::safetensors::save(&on_cpu, &weights_path)
        .with_context(|| format!("{}: cannot write", weights_path.display()))?;
    write_atomic(
        &dir.join("adapter_config.json"),
        &serde_json::to_vec_pretty(&adapter_config(model, base))?,
    )?;
    write_atomic(
        &dir.join("README.md"),
        adapter_readme(model, base, dir).as_bytes(),
    )?;
    let mut written = vec![
        weights_path,
        dir.join("adapter_config.json"),
        dir.join("README.md"),
    ];
    written.extend(write_tokenizer_files(
        dir,
        tokenizer,
        &model.config,
        Some(format),
    )?);
    Ok(written)
}

/// PEFT's `adapter_config.json` for the model's adapter on `base`.
pub fn adapter_config(model: &Model, base: &Base) -> Value {
    let c = &model.config;
    let base = base.path().display().to_string();
    match &model.method {
        Method::Lora(l) => {
            let targets: Vec<String> = l
                .projections()
                .unwrap_or_default()
                .iter()
                .map(|p| p.rsplit('.').next().unwrap_or(p).to_string())
                .collect();
            json!({
                "peft_type": "LORA",
                "peft_version": PEFT_VERSION,
                "task_type": "CAUSAL_LM",
                "base_model_name_or_path": base,
                "r": l.r,
                "lora_alpha": l.alpha,
                "lora_dropout": l.dropout,
                "target_modules": targets,
                "bias": "none",
                "fan_in_fan_out": false,
                "inference_mode": true,
            })
        }
        Method::Prefix { num_virtual_tokens } => json!({
            "peft_type": "PREFIX_TUNING",
            "peft_version": PEFT_VERSION,
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base,
            "num_virtual_tokens": num_virtual_tokens,
            "num_layers": c.num_hidden_layers,
            "num_attention_heads": c.num_key_value_heads,
            "token_dim": c.num_key_value_heads * c.head_dim(),
            "num_transformer_submodules": 1,
            "prefix_projection": false,
            "inference_mode": true,
        }),
        Method::Prompt { num_virtual_tokens } => json!({
            "peft_type": "PROMPT_TUNING",
            "peft_version": PEFT_VERSION,
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base,
            "num_virtual_tokens": num_virtual_tokens,
            "num_layers": c.num_hidden_layers,
            "num_attention_heads": c.num_attention_heads,
            "token_dim": c.hidden_size,
            "num_transformer_submodules": 1,
            "prompt_tuning_init": "RANDOM",
            "inference_mode": true,
        }),
        Method::Full => Value::Null,
    }
}

/// The adapter's model card: what the base is and the Python lines that load both.
fn adapter_readme(model: &Model, base: &Base, dir: &Path) -> String {
    let kind = match model.method {
        Method::Prefix { .. } => "prefix-tuning",
        Method::Prompt { .. } => "prompt-tuning",
        _ => "LoRA",
    };
    let adapter = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let (what, load_base) = match base {
        Base::Folder(p) => (
            format!("the Hugging Face checkpoint folder `{}`", p.display()),
            format!("AutoModelForCausalLM.from_pretrained({:?})", p.display().to_string()),
        ),
        Base::Gguf(p) => (
            format!(
                "the llama.cpp GGUF file `{}`, dequantized to f32 (the weights the adapter was trained on); transformers reads it with `gguf_file=` (needs the `gguf` package)",
                p.display()
            ),
            format!(
                "AutoModelForCausalLM.from_pretrained({:?}, gguf_file={:?})",
                p.parent().unwrap_or(Path::new("/")).display().to_string(),
                p.display().to_string()
            ),
        ),
    };
    let auto = match base {
        Base::Folder(_) => format!(
            "\n`AutoPeftModelForCausalLM.from_pretrained({:?})` does both steps.\n",
            adapter.display().to_string()
        ),
        Base::Gguf(_) => {
            "\n`AutoPeftModelForCausalLM` cannot load a GGUF base by its path: load the base as above.\n"
                .to_string()
        }
    };
    format!(
        "---\nlibrary_name: peft\n---\n\n# {kind} adapter written by `curate finetune`\n\nBase model: {what}.\n\n```python\nfrom peft import PeftModel\nfrom transformers import AutoModelForCausalLM\n\nbase = {load_base}\nmodel = PeftModel.from_pretrained(base, {:?})\n```\n{auto}\nA merged copy (`../merged`, LoRA only) is the full model with this adapter already in its\nweights: load it alone, never with this adapter.\n",
        adapter.display().to_string()
    )
}
