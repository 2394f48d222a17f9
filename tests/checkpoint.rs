//! Checkpoint loaders (Hugging Face folders, GGUF) and GGUF tokenizers on tiny files written
//! here; plus checks against the real files of `scripts/fetch_models.sh` when they are present.

mod common;

use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Value as G};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use common::values;
use curate::finetune::checkpoint::{load_gguf, load_hf_dir, permute_qk, unpermute_qk};
use curate::finetune::config::ModelConfig;
use curate::finetune::gguf_tokenizer::tokenizer_from_metadata;
use serde_json::json;

// A tiny Llama: d=32, 4 heads of 8, 2 KV heads, FFN 64, 2 layers, 48 tokens.
const H: usize = 32;
const HEADS: usize = 4;
const KV: usize = 2;
const HD: usize = H / HEADS;
const FF: usize = 64;
const LAYERS: usize = 2;
const V: usize = 48;

/// Deterministic, distinct values.
fn tensor(shape: &[usize], seed: usize) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| (((i + 1) * 7919 + seed * 104_729) % 2003) as f32 / 2003.0 - 0.5)
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// Hugging Face weights of the tiny model, written out by hand (not from the loader's list).
fn hf_weights(bias: bool, tied: bool) -> Vec<(String, Tensor)> {
    let mut w = vec![
        ("model.embed_tokens.weight".to_string(), tensor(&[V, H], 1)),
        ("model.norm.weight".to_string(), tensor(&[H], 2)),
    ];
    if !tied {
        w.push(("lm_head.weight".to_string(), tensor(&[V, H], 3)));
    }
    for l in 0..LAYERS {
        let s = 10 * (l + 1);
        let p = format!("model.layers.{l}");
        w.push((format!("{p}.input_layernorm.weight"), tensor(&[H], s)));
        w.push((
            format!("{p}.post_attention_layernorm.weight"),
            tensor(&[H], s + 1),
        ));
        w.push((format!("{p}.self_attn.q_proj.weight"), tensor(&[H, H], s + 2)));
        w.push((
            format!("{p}.self_attn.k_proj.weight"),
            tensor(&[KV * HD, H], s + 3),
        ));
        w.push((
            format!("{p}.self_attn.v_proj.weight"),
            tensor(&[KV * HD, H], s + 4),
        ));
        w.push((format!("{p}.self_attn.o_proj.weight"), tensor(&[H, H], s + 5)));
        w.push((format!("{p}.mlp.gate_proj.weight"), tensor(&[FF, H], s + 6)));
        w.push((format!("{p}.mlp.up_proj.weight"), tensor(&[FF, H], s + 7)));
        w.push((format!("{p}.mlp.down_proj.weight"), tensor(&[H, FF], s + 8)));
        if bias {
            w.push((format!("{p}.self_attn.q_proj.bias"), tensor(&[H], s + 9)));
            w.push((format!("{p}.self_attn.k_proj.bias"), tensor(&[KV * HD], s + 10)));
            w.push((format!("{p}.self_attn.v_proj.bias"), tensor(&[KV * HD], s + 11)));
        }
    }
    w
}

fn word_level_tokenizer() -> serde_json::Value {
    json!({"version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
           "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
           "model": {"type": "WordLevel", "vocab": {"hello": 0, "world": 1, "[UNK]": 2}, "unk_token": "[UNK]"}})
}

fn save_safetensors(path: &Path, tensors: &[(String, Tensor)]) {
    let map: HashMap<String, Tensor> = tensors.iter().cloned().collect();
    candle_core::safetensors::save(&map, path).unwrap();
}

fn assert_same(loaded: &HashMap<String, Tensor>, expected: &[(String, Tensor)]) {
    assert_eq!(loaded.len(), expected.len(), "names: {:?}", {
        let mut k: Vec<_> = loaded.keys().collect();
        k.sort();
        k
    });
    for (name, t) in expected {
        let got = loaded.get(name).unwrap_or_else(|| panic!("missing {name}"));
        assert_eq!(got.dims(), t.dims(), "{name}");
        assert_eq!(got.dtype(), DType::F32, "{name}");
        assert_eq!(values(got), values(t), "{name}");
    }
}

#[test]
fn hf_llama_sharded_with_index() {
    let dir = tempfile::tempdir().unwrap();
    let w = hf_weights(false, false);
    let (a, b) = w.split_at(w.len() / 2);
    // One shard in bf16 (values chosen so the conversion is checked, not just the copy).
    let a_bf16: Vec<(String, Tensor)> = a
        .iter()
        .map(|(n, t)| (n.clone(), t.to_dtype(DType::BF16).unwrap()))
        .collect();
    save_safetensors(&dir.path().join("model-00001-of-00002.safetensors"), &a_bf16);
    save_safetensors(&dir.path().join("model-00002-of-00002.safetensors"), b);
    let mut map = serde_json::Map::new();
    for (n, _) in a {
        map.insert(n.clone(), json!("model-00001-of-00002.safetensors"));
    }
    for (n, _) in b {
        map.insert(n.clone(), json!("model-00002-of-00002.safetensors"));
    }
    let index = json!({"metadata": {"total_size": 0}, "weight_map": map});
    std::fs::write(dir.path().join("model.safetensors.index.json"), index.to_string()).unwrap();
    let config = json!({"model_type": "llama", "vocab_size": V, "hidden_size": H, "intermediate_size": FF,
        "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "num_key_value_heads": KV,
        "rms_norm_eps": 1e-6, "rope_theta": 500000.0, "rope_scaling": {"type": "linear", "factor": 2.0},
        "max_position_embeddings": 256, "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": [2, 7]});
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    std::fs::write(
        dir.path().join("tokenizer.json"),
        word_level_tokenizer().to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        json!({"chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}"}).to_string(),
    )
    .unwrap();

    let ck = load_hf_dir(dir.path()).unwrap();
    assert_eq!(
        ck.config,
        ModelConfig {
            vocab_size: V,
            hidden_size: H,
            intermediate_size: FF,
            num_hidden_layers: LAYERS,
            num_attention_heads: HEADS,
            num_key_value_heads: KV,
            rms_norm_eps: 1e-6,
            rope_theta: 500000.0,
            rope_interleaved: false,
            rope_scaling_factor: Some(2.0),
            max_position_embeddings: 256,
            tie_word_embeddings: false,
            attention_bias: false,
            bos_token_id: Some(1),
            eos_token_id: Some(2),
        }
    );
    let expected: Vec<(String, Tensor)> = a_bf16.iter().chain(b.iter()).cloned().collect();
    assert_same(&ck.tensors, &expected);
    assert_eq!(
        ck.chat_template.as_deref(),
        Some("{% for m in messages %}{{ m.content }}{% endfor %}")
    );
    assert_eq!(
        ck.tokenizer.encode("hello world", false).unwrap().get_ids(),
        &[0, 1]
    );
}

#[test]
fn hf_qwen2_tied_with_bias_drops_stored_head_and_inv_freq() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = hf_weights(true, true);
    let expected = w.clone();
    // Some exports store the tied head anyway, and old ones the RoPE frequencies.
    w.push(("lm_head.weight".to_string(), tensor(&[V, H], 1)));
    w.push((
        "model.layers.0.self_attn.rotary_emb.inv_freq".to_string(),
        tensor(&[HD / 2], 5),
    ));
    save_safetensors(&dir.path().join("model.safetensors"), &w);
    let config = json!({"model_type": "qwen2", "vocab_size": V, "hidden_size": H, "intermediate_size": FF,
        "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "num_key_value_heads": KV,
        "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "max_position_embeddings": 512,
        "tie_word_embeddings": true, "use_sliding_window": false, "sliding_window": 4096,
        "bos_token_id": null, "eos_token_id": 5});
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    std::fs::write(
        dir.path().join("tokenizer.json"),
        word_level_tokenizer().to_string(),
    )
    .unwrap();
    std::fs::write(dir.path().join("chat_template.jinja"), "<|im_start|>{{ x }}").unwrap();
    let ck = load_hf_dir(dir.path()).unwrap();
    assert!(ck.config.attention_bias && ck.config.tie_word_embeddings);
    assert_eq!((ck.config.bos_token_id, ck.config.eos_token_id), (None, Some(5)));
    assert_eq!(ck.config.rope_scaling_factor, None);
    assert_same(&ck.tensors, &expected);
    assert_eq!(ck.chat_template.as_deref(), Some("<|im_start|>{{ x }}"));
}

#[test]
fn hf_missing_or_misshapen_weights_are_clear_errors() {
    let config = json!({"model_type": "llama", "vocab_size": V, "hidden_size": H, "intermediate_size": FF,
        "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "num_key_value_heads": KV,
        "max_position_embeddings": 64});
    let write = |w: &[(String, Tensor)]| {
        let dir = tempfile::tempdir().unwrap();
        save_safetensors(&dir.path().join("model.safetensors"), w);
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        std::fs::write(
            dir.path().join("tokenizer.json"),
            word_level_tokenizer().to_string(),
        )
        .unwrap();
        dir
    };
    let mut w = hf_weights(false, false);
    w.retain(|(n, _)| n != "model.layers.1.mlp.up_proj.weight");
    let err = format!("{:#}", load_hf_dir(write(&w).path()).err().unwrap());
    assert!(
        err.contains("model.layers.1.mlp.up_proj.weight") && err.contains("missing"),
        "{err}"
    );

    let mut w = hf_weights(false, false);
    w[0].1 = tensor(&[V, H + 1], 1);
    let err = format!("{:#}", load_hf_dir(write(&w).path()).err().unwrap());
    assert!(
        err.contains("model.embed_tokens.weight") && err.contains("shape"),
        "{err}"
    );

    let mut w = hf_weights(false, false);
    w.push(("model.layers.0.mlp.extra.weight".to_string(), tensor(&[2], 1)));
    let err = format!("{:#}", load_hf_dir(write(&w).path()).err().unwrap());
    assert!(err.contains("unexpected") && err.contains("extra"), "{err}");

    let dir = write(&hf_weights(false, false));
    std::fs::write(
        dir.path().join("config.json"),
        json!({"model_type": "gpt2"}).to_string(),
    )
    .unwrap();
    let err = format!("{:#}", load_hf_dir(dir.path()).err().unwrap());
    assert!(err.contains("config.json") && err.contains("gpt2"), "{err}");
}

/// llama.cpp's `permute` written out with indices: HF row `h*hd + i*hd/2 + j` (i in 0..2)
/// goes to row `h*hd + 2j + i`.
fn llama_cpp_permute(t: &Tensor, heads: usize) -> Tensor {
    let dims = t.dims().to_vec();
    let cols: usize = dims[1..].iter().product();
    let src = values(t);
    let mut out = vec![0f32; src.len()];
    for h in 0..heads {
        for i in 0..2 {
            for j in 0..HD / 2 {
                let from = h * HD + i * HD / 2 + j;
                let to = h * HD + 2 * j + i;
                out[to * cols..(to + 1) * cols].copy_from_slice(&src[from * cols..(from + 1) * cols]);
            }
        }
    }
    Tensor::from_vec(out, dims, &Device::Cpu).unwrap()
}

/// Rotate-half RoPE (Hugging Face) on one head vector at position `pos`.
fn rope_half(x: &[f32], pos: usize) -> Vec<f32> {
    let d = x.len();
    let mut out = x.to_vec();
    for j in 0..d / 2 {
        let th = pos as f32 * 10000f32.powf(-(2.0 * j as f32) / d as f32);
        let (a, b) = (x[j], x[j + d / 2]);
        out[j] = a * th.cos() - b * th.sin();
        out[j + d / 2] = a * th.sin() + b * th.cos();
    }
    out
}

/// Interleaved RoPE (llama.cpp's `llama` architecture, original Meta code).
fn rope_interleaved(x: &[f32], pos: usize) -> Vec<f32> {
    let d = x.len();
    let mut out = x.to_vec();
    for j in 0..d / 2 {
        let th = pos as f32 * 10000f32.powf(-(2.0 * j as f32) / d as f32);
        let (a, b) = (x[2 * j], x[2 * j + 1]);
        out[2 * j] = a * th.cos() - b * th.sin();
        out[2 * j + 1] = a * th.sin() + b * th.cos();
    }
    out
}

/// Head `h` of `w @ x`.
fn head(w: &Tensor, x: &Tensor, h: usize) -> Vec<f32> {
    let y = values(&w.matmul(&x.unsqueeze(1).unwrap()).unwrap());
    y[h * HD..(h + 1) * HD].to_vec()
}

#[test]
fn qk_permutation_round_trips_and_matches_interleaved_rope() {
    let q = tensor(&[H, H], 3);
    let k = tensor(&[KV * HD, H], 4);
    let bias = tensor(&[KV * HD], 5);
    // Our permutation is llama.cpp's, and unpermute inverts it, for weights and biases.
    assert_eq!(
        values(&permute_qk(&q, HEADS, HD).unwrap()),
        values(&llama_cpp_permute(&q, HEADS))
    );
    assert_eq!(
        values(&unpermute_qk(&llama_cpp_permute(&k, KV), KV, HD).unwrap()),
        values(&k)
    );
    assert_eq!(
        values(&unpermute_qk(&llama_cpp_permute(&bias, KV), KV, HD).unwrap()),
        values(&bias)
    );
    assert!(
        unpermute_qk(&k, HEADS, HD).is_err(),
        "wrong head count must be refused"
    );
    // What the reordering is for: interleaved RoPE on llama.cpp's rows gives the same attention
    // scores as rotate-half RoPE on Hugging Face's rows.
    let (qp, kp) = (llama_cpp_permute(&q, HEADS), llama_cpp_permute(&k, KV));
    let (x, y) = (tensor(&[H], 6), tensor(&[H], 7));
    for h in 0..HEADS {
        let kv_head = h / (HEADS / KV);
        let hf: f32 = rope_half(&head(&q, &x, h), 5)
            .iter()
            .zip(rope_half(&head(&k, &y, kv_head), 2))
            .map(|(a, b)| a * b)
            .sum();
        let gg: f32 = rope_interleaved(&head(&qp, &x, h), 5)
            .iter()
            .zip(rope_interleaved(&head(&kp, &y, kv_head), 2))
            .map(|(a, b)| a * b)
            .sum();
        assert!((hf - gg).abs() < 1e-4, "head {h}: {hf} vs {gg}");
        let plain: f32 = head(&q, &x, h)
            .iter()
            .zip(head(&k, &y, kv_head))
            .map(|(a, b)| a * b)
            .sum();
        assert!(
            (plain - hf).abs() > 1e-4,
            "RoPE must change the score for the check to mean something"
        );
    }
}

/// GPT-2's byte -> printable character map.
fn byte_chars() -> Vec<char> {
    let mut n = 0u32;
    (0u32..256)
        .map(|b| {
            if (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b) {
                char::from_u32(b).unwrap()
            } else {
                n += 1;
                char::from_u32(255 + n).unwrap()
            }
        })
        .collect()
}

/// A byte-level BPE vocabulary as GGUF metadata: 256 byte tokens, a few merges, two control tokens.
fn gpt2_vocab_metadata(pre: &str) -> Vec<(String, G)> {
    let mut tokens: Vec<String> = byte_chars().iter().map(|c| c.to_string()).collect();
    let merges = [
        "h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "Ġwor l", "Ġworl d",
    ];
    for m in merges {
        tokens.push(m.replace(' ', ""));
    }
    tokens.push("<|endoftext|>".into());
    tokens.push("<|im_start|>".into());
    let mut types = vec![1i32; tokens.len()];
    let n = types.len();
    types[n - 2] = 3;
    types[n - 1] = 3;
    vec![
        ("tokenizer.ggml.model".into(), G::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), G::String(pre.into())),
        (
            "tokenizer.ggml.tokens".into(),
            G::Array(tokens.into_iter().map(G::String).collect()),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            G::Array(types.into_iter().map(G::I32).collect()),
        ),
        (
            "tokenizer.ggml.merges".into(),
            G::Array(merges.iter().map(|m| G::String(m.to_string())).collect()),
        ),
        ("tokenizer.ggml.bos_token_id".into(), G::U32(265)),
        ("tokenizer.ggml.eos_token_id".into(), G::U32(265)),
        (
            "tokenizer.chat_template".into(),
            G::String("{{ messages }}".into()),
        ),
    ]
}

#[test]
fn gguf_byte_level_bpe_tokenizer() {
    for pre in ["gpt-2", "llama-bpe", "qwen2", "smollm"] {
        let md: HashMap<String, G> = gpt2_vocab_metadata(pre).into_iter().collect();
        let t = tokenizer_from_metadata(&md).unwrap();
        assert!(!t.approximated_pre);
        let tok = &t.tokenizer;
        let enc = tok.encode("hello world<|im_start|>é", false).unwrap();
        let ids = enc.get_ids();
        // hello = 259, Ġworld = 264, control token 266, é = two byte tokens.
        let e = byte_chars();
        let (c3, a9) = (e.iter().position(|c| *c == e[0xC3]).unwrap() as u32, 0xA9u32);
        assert_eq!(ids, &[259, 264, 266, c3, a9], "pre {pre}");
        assert_eq!(
            tok.decode(ids, false).unwrap(),
            "hello world<|im_start|>é",
            "pre {pre}"
        );
        assert_eq!(t.chat_template.as_deref(), Some("{{ messages }}"));
    }
    let md: HashMap<String, G> = gpt2_vocab_metadata("some-new-model").into_iter().collect();
    assert!(tokenizer_from_metadata(&md).unwrap().approximated_pre);
}

/// A SentencePiece vocabulary as GGUF metadata: unk, bos, eos, 256 byte tokens, pieces with scores.
fn spm_vocab_metadata() -> Vec<(String, G)> {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![2i32, 3, 3];
    let mut scores = vec![0f32; 3];
    for b in 0..256 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    // `bc` scores higher than `ab`: "abc" must become a + bc, not ab + c.
    for (piece, score) in [
        ("▁", -1.0),
        ("a", -2.0),
        ("b", -2.0),
        ("c", -2.0),
        ("ab", -5.0),
        ("bc", -4.0),
        ("▁ab", -6.0),
        ("▁c", -7.0),
    ] {
        tokens.push(piece.into());
        types.push(1);
        scores.push(score);
    }
    vec![
        ("tokenizer.ggml.model".into(), G::String("llama".into())),
        (
            "tokenizer.ggml.tokens".into(),
            G::Array(tokens.into_iter().map(G::String).collect()),
        ),
        (
            "tokenizer.ggml.scores".into(),
            G::Array(scores.into_iter().map(G::F32).collect()),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            G::Array(types.into_iter().map(G::I32).collect()),
        ),
        ("tokenizer.ggml.bos_token_id".into(), G::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), G::U32(2)),
    ]
}

#[test]
fn gguf_sentencepiece_tokenizer_with_byte_fallback() {
    let md: HashMap<String, G> = spm_vocab_metadata().into_iter().collect();
    let t = tokenizer_from_metadata(&md).unwrap();
    let tok = &t.tokenizer;
    let id = |p: &str| tok.token_to_id(p).unwrap();
    // "▁ab" is one piece; "▁abc": ▁ + a + bc (bc outranks ab), "é" falls back to its UTF-8 bytes.
    let enc = tok.encode("ab abc é", false).unwrap();
    assert_eq!(
        enc.get_ids(),
        &[
            id("▁ab"),
            id("▁"),
            id("a"),
            id("bc"),
            id("▁"),
            id("<0xC3>"),
            id("<0xA9>")
        ],
        "{:?}",
        enc.get_tokens()
    );
    assert_eq!(tok.decode(enc.get_ids(), true).unwrap(), "ab abc é");
    // add_special_tokens puts <s> first, as llama.cpp does for SentencePiece models.
    assert_eq!(tok.encode("c", true).unwrap().get_ids(), &[1, id("▁c")]);
    let mut md = md;
    md.insert("tokenizer.ggml.model".into(), G::String("t5".into()));
    assert!(tokenizer_from_metadata(&md).is_err());
}

fn qtensor(t: &Tensor, dtype: GgmlDType) -> QTensor {
    QTensor::quantize(t, dtype).unwrap()
}

/// llama.cpp's name for a Hugging Face weight (the test's own table).
fn gguf_name(hf: &str) -> String {
    let fixed = [
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("model.norm.weight", "output_norm.weight"),
        ("lm_head.weight", "output.weight"),
    ];
    if let Some((_, g)) = fixed.iter().find(|(h, _)| *h == hf) {
        return g.to_string();
    }
    let rest = hf.strip_prefix("model.layers.").unwrap();
    let (layer, rest) = rest.split_once('.').unwrap();
    let parts = [
        ("input_layernorm", "attn_norm"),
        ("post_attention_layernorm", "ffn_norm"),
        ("self_attn.q_proj", "attn_q"),
        ("self_attn.k_proj", "attn_k"),
        ("self_attn.v_proj", "attn_v"),
        ("self_attn.o_proj", "attn_output"),
        ("mlp.gate_proj", "ffn_gate"),
        ("mlp.up_proj", "ffn_up"),
        ("mlp.down_proj", "ffn_down"),
    ];
    let (part, kind) = rest.rsplit_once('.').unwrap();
    let g = parts.iter().find(|(h, _)| *h == part).unwrap().1;
    format!("blk.{layer}.{g}.{kind}")
}

/// Write a GGUF of the tiny model the way llama.cpp's converter would (Q/K reordered for `llama`).
fn write_gguf(path: &Path, arch: &str, weights: &[(String, Tensor)], quantize_embeddings: bool) {
    let mut qs: Vec<(String, QTensor)> = Vec::new();
    for (name, t) in weights {
        let mut t = t.clone();
        if arch == "llama" && name.contains("q_proj") {
            t = llama_cpp_permute(&t, HEADS);
        } else if arch == "llama" && name.contains("k_proj") {
            t = llama_cpp_permute(&t, KV);
        }
        let dtype = if quantize_embeddings && name == "model.embed_tokens.weight" {
            GgmlDType::Q8_0
        } else {
            GgmlDType::F32
        };
        qs.push((gguf_name(name), qtensor(&t, dtype)));
    }
    let mut md: Vec<(String, G)> = vec![
        ("general.architecture".into(), G::String(arch.into())),
        (format!("{arch}.embedding_length"), G::U32(H as u32)),
        (format!("{arch}.feed_forward_length"), G::U32(FF as u32)),
        (format!("{arch}.block_count"), G::U32(LAYERS as u32)),
        (format!("{arch}.attention.head_count"), G::U32(HEADS as u32)),
        (format!("{arch}.attention.head_count_kv"), G::U32(KV as u32)),
        (format!("{arch}.attention.layer_norm_rms_epsilon"), G::F32(1e-5)),
        (format!("{arch}.rope.freq_base"), G::F32(10000.0)),
        (format!("{arch}.context_length"), G::U32(128)),
    ];
    md.extend(gpt2_vocab_metadata("qwen2"));
    let md_refs: Vec<(&str, &G)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = qs.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut buf = Cursor::new(Vec::new());
    gguf_file::write(&mut buf, &md_refs, &t_refs).unwrap();
    std::fs::write(path, buf.into_inner()).unwrap();
}

#[test]
fn gguf_llama_is_unpermuted_to_hf_layout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny-llama.gguf");
    let w = hf_weights(false, false);
    write_gguf(&path, "llama", &w, true);
    let ck = load_gguf(&path).unwrap();
    assert_eq!(
        ck.config,
        ModelConfig {
            vocab_size: V,
            hidden_size: H,
            intermediate_size: FF,
            num_hidden_layers: LAYERS,
            num_attention_heads: HEADS,
            num_key_value_heads: KV,
            rms_norm_eps: 1e-5,
            rope_theta: 10000.0,
            rope_interleaved: false,
            rope_scaling_factor: None,
            max_position_embeddings: 128,
            tie_word_embeddings: false,
            attention_bias: false,
            bos_token_id: Some(265),
            eos_token_id: Some(265),
        }
    );
    // Everything exact (f32 in the file) except the Q8_0 embeddings, which dequantize closely.
    let exact: Vec<(String, Tensor)> = w
        .iter()
        .filter(|(n, _)| n != "model.embed_tokens.weight")
        .cloned()
        .collect();
    let mut loaded = ck.tensors.clone();
    let emb = loaded.remove("model.embed_tokens.weight").unwrap();
    assert_same(&loaded, &exact);
    let max_err = values(&emb)
        .iter()
        .zip(values(&w[0].1))
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(max_err > 0.0 && max_err < 0.01, "Q8_0 error {max_err}");
    assert_eq!(
        ck.tokenizer.encode("hello world", false).unwrap().get_ids(),
        &[259, 264]
    );
    assert_eq!(ck.chat_template.as_deref(), Some("{{ messages }}"));
}

#[test]
fn gguf_qwen2_keeps_row_order_and_biases() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny-qwen2.gguf");
    let w = hf_weights(true, true);
    write_gguf(&path, "qwen2", &w, false);
    let ck = load_gguf(&path).unwrap();
    assert!(ck.config.attention_bias && ck.config.tie_word_embeddings && !ck.config.rope_interleaved);
    assert_same(&ck.tensors, &w);
}

#[test]
fn gguf_unknown_tensor_or_architecture_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.gguf");
    write_gguf(&path, "phi3", &hf_weights(false, false), false);
    let err = format!("{:#}", load_gguf(&path).err().unwrap());
    assert!(err.contains("phi3") && err.contains("x.gguf"), "{err}");
    std::fs::write(&path, b"not a gguf").unwrap();
    assert!(load_gguf(&path).is_err());
}

/// Where `scripts/fetch_models.sh` put the real files; `None` (with a note) when absent,
/// a failure when `scripts/test.sh` fetched them (`CURATE_REQUIRE_MODELS=1`).
fn models_dir(file: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("CURATE_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("models"));
    if dir.join(file).exists() {
        Some(dir)
    } else {
        assert!(
            std::env::var_os("CURATE_REQUIRE_MODELS").is_none(),
            "CURATE_REQUIRE_MODELS is set but {} is missing (scripts/fetch_models.sh)",
            dir.join(file).display()
        );
        eprintln!(
            "note: {} absent (run scripts/fetch_models.sh); skipping",
            dir.join(file).display()
        );
        None
    }
}

/// llama.cpp's tokenizer test cases (texts and the ids Hugging Face's tokenizers gave).
fn llama_cpp_cases(dir: &Path, vocab: &str) -> Vec<(String, Vec<u32>)> {
    let inp = std::fs::read_to_string(dir.join(format!("ggml-vocab-{vocab}.gguf.inp"))).unwrap();
    let out = std::fs::read_to_string(dir.join(format!("ggml-vocab-{vocab}.gguf.out"))).unwrap();
    let texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    let ids: Vec<Vec<u32>> = out
        .lines()
        .map(|l| l.split_whitespace().map(|x| x.parse().unwrap()).collect())
        .collect();
    texts
        .into_iter()
        .zip(ids)
        .map(|(t, i)| (t.to_string(), i))
        .collect()
}

#[test]
fn real_gguf_vocabularies_match_llama_cpp_test_cases() {
    let Some(dir) = models_dir("ggml-vocab-llama-spm.gguf.out") else {
        return;
    };
    // Vocabularies whose pre-tokenizer we implement (falcon's, for one, is only approximated).
    for vocab in ["llama-spm", "llama-bpe", "qwen2", "gpt-2", "starcoder", "phi-3"] {
        if !dir.join(format!("ggml-vocab-{vocab}.gguf.out")).exists() {
            continue;
        }
        let t = curate::finetune::gguf_tokenizer::read_gguf_tokenizer(
            &dir.join(format!("ggml-vocab-{vocab}.gguf")),
        )
        .unwrap();
        let cases = llama_cpp_cases(&dir, vocab);
        let mut bad = Vec::new();
        for (text, want) in &cases {
            let got = t
                .tokenizer
                .encode(text.as_str(), false)
                .unwrap()
                .get_ids()
                .to_vec();
            if &got != want {
                bad.push(format!("{text:?}: got {got:?}, want {want:?}"));
            }
        }
        eprintln!(
            "{vocab}: {}/{} llama.cpp cases match",
            cases.len() - bad.len(),
            cases.len()
        );
        assert!(
            bad.is_empty(),
            "{vocab}: {} of {} differ:\n{}",
            bad.len(),
            cases.len(),
            bad.join("\n")
        );
    }
}

#[test]
fn real_smollm2_gguf_loads() {
    let Some(dir) = models_dir("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let ck = load_gguf(&dir.join("SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    let c = &ck.config;
    assert_eq!(
        (
            c.vocab_size,
            c.hidden_size,
            c.intermediate_size,
            c.num_hidden_layers
        ),
        (49152, 576, 1536, 30)
    );
    assert_eq!((c.num_attention_heads, c.num_key_value_heads), (9, 3));
    assert!(c.tie_word_embeddings && !c.attention_bias && !c.rope_interleaved);
    assert_eq!(ck.tensors.len(), 2 + 30 * 9);
    assert_eq!(
        ck.tensors["model.layers.29.self_attn.k_proj.weight"].dims(),
        &[192, 576]
    );
    for (name, t) in &ck.tensors {
        let v = values(t);
        assert!(v.iter().all(|x| x.is_finite()), "{name} has non-finite values");
        let mean_abs = v.iter().map(|x| x.abs()).sum::<f32>() / v.len() as f32;
        assert!(mean_abs > 1e-4 && mean_abs < 10.0, "{name}: mean |w| {mean_abs}");
    }
    let tok = &ck.tokenizer;
    let text = "Hello, world! 你好";
    let ids = tok.encode(text, false).unwrap().get_ids().to_vec();
    assert_eq!(tok.decode(&ids, false).unwrap(), text);
    assert_eq!(tok.token_to_id("<|im_start|>"), Some(1));
    assert_eq!(
        c.eos_token_id.and_then(|i| tok.id_to_token(i)).as_deref(),
        Some("<|im_end|>")
    );
    assert!(ck
        .chat_template
        .as_deref()
        .is_some_and(|t| t.contains("<|im_start|>")));
}

#[test]
fn real_qwen2_gguf_vocab_matches_qwen3_tokenizer_json() {
    let Some(dir) = models_dir("ggml-vocab-qwen2.gguf") else {
        return;
    };
    if models_dir("qwen3-tokenizer.json").is_none() {
        return;
    }
    let gguf =
        curate::finetune::gguf_tokenizer::read_gguf_tokenizer(&dir.join("ggml-vocab-qwen2.gguf")).unwrap();
    let json = tokenizers::Tokenizer::from_file(dir.join("qwen3-tokenizer.json")).unwrap();
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("data-samples/sft");
    let mut checked = 0;
    for entry in std::fs::read_dir(&samples).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        for line in text.lines().take(200) {
            let a = gguf.tokenizer.encode(line, false).unwrap().get_ids().to_vec();
            let b = json.encode(line, false).unwrap().get_ids().to_vec();
            assert_eq!(a, b, "{line}");
            checked += 1;
        }
    }
    assert!(checked > 100, "only {checked} lines checked");
}

#[test]
fn tokstats_counts_per_group_for_json_and_gguf_tokenizers() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"text\": \"hello world\"}\n{\"text\": \"你好世界\"}\n{\"instruction\": \"hello\", \"input\": \"\", \"output\": \"ab c\"}\n{broken\n",
    )
    .unwrap();
    let json_tok = dir.path().join("tokenizer.json");
    std::fs::write(&json_tok, word_level_tokenizer().to_string()).unwrap();
    // A vocabulary-only GGUF: metadata, no tensors.
    let spm = dir.path().join("vocab-spm.gguf");
    let md = spm_vocab_metadata();
    let md_refs: Vec<(&str, &G)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut buf = Cursor::new(Vec::new());
    gguf_file::write(&mut buf, &md_refs, &[]).unwrap();
    std::fs::write(&spm, buf.into_inner()).unwrap();

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_curate"))
        .args(["tokstats", "--json", "--threads", "2", "--tokenizer"])
        .arg(format!("{},{}", json_tok.display(), spm.display()))
        .arg(&input)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["malformed"], 1);
    let word = &doc["tokenizers"][0];
    assert_eq!(
        (word["name"].as_str(), word["vocab_size"].as_u64()),
        (Some("tokenizer.json"), Some(3))
    );
    // 你好世界 is one whitespace word (unknown): 1 token for 4 characters, 12 bytes.
    assert_eq!(
        word["groups"]["cjk"],
        json!({"records": 1, "chars": 4, "bytes": 12, "tokens": 1, "tokens_per_char": 0.25, "tokens_per_byte": 0.083333})
    );
    // "hello world" + "hello\n\nab c" (alpaca segments joined by a blank line; empty input left out).
    let other = &word["groups"]["other"];
    assert_eq!(
        (
            other["records"].as_u64(),
            other["chars"].as_u64(),
            other["tokens"].as_u64()
        ),
        (Some(2), Some(22), Some(5))
    );
    // The GGUF tokenizer's counts are what the library's encoder gives, record by record.
    let spm_md: HashMap<String, G> = spm_vocab_metadata().into_iter().collect();
    let tok = tokenizer_from_metadata(&spm_md).unwrap().tokenizer;
    let n = |s: &str| tok.encode(s, false).unwrap().get_ids().len() as u64;
    let g = &doc["tokenizers"][1]["groups"];
    assert_eq!(g["cjk"]["tokens"].as_u64(), Some(n("你好世界")));
    assert_eq!(
        g["other"]["tokens"].as_u64(),
        Some(n("hello world") + n("hello\n\nab c"))
    );
    assert_eq!(g["all"]["records"].as_u64(), Some(3));
    // The table names each tokenizer and group.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_curate"))
        .args(["tokstats", "--tokenizer"])
        .arg(&spm)
        .arg(&input)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("vocab-spm.gguf") && table.contains("cjk") && table.contains("1 malformed"),
        "{table}"
    );
}
