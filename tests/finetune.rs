//! The fine-tune stage, `curate finetune` and `curate compare` through the binary, on
//! the bundled samples with a very small model (seconds, not minutes).

mod common;

use std::path::Path;

use common::{check_books, run_curate, run_ok, stats, write_pipeline};

fn samples(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data-samples/sft")
        .join(name)
        .to_string_lossy()
        .to_string()
}

/// A small model and a short run: enough to check the plumbing and the numbers' shape.
const SMALL: &str = r#"
model = "tiny"
val_fraction = 0.15
progress = false
[stage.tiny]
vocab_size = 400
hidden_size = 32
intermediate_size = 64
num_hidden_layers = 1
num_attention_heads = 2
num_key_value_heads = 1
[stage.train]
seq_len = 64
batch_size = 4
max_steps = 12
eval_every = 4
warmup_steps = 2
lr = 5e-3
"#;

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn stage_trains_on_kept_records_and_reports_the_gap() {
    let dir = tempfile::tempdir().unwrap();
    let stages = format!(
        "[[stage]]\nkind = \"length\"\nresponse = {{ min = 5 }}\n\n[[stage]]\nkind = \"exact_dedup\"\n\n[[stage]]\nkind = \"finetune\"\nmethod = \"lora\"\n{SMALL}\n[stage.lora]\nr = 4\ntarget_modules = [\"q_proj\", \"v_proj\"]\n"
    );
    let mut runs = Vec::new();
    for threads in ["1", "2"] {
        let out = dir.path().join(format!("out{threads}"));
        let p = write_pipeline(
            dir.path(),
            &[&samples("alpaca_zh.jsonl"), &samples("sharegpt_zh.jsonl")],
            &stages,
            out.to_str().unwrap(),
            "",
        );
        run_ok(&["run", p.to_str().unwrap(), "--threads", threads, "--quiet"]);
        let (kept, _) = check_books(&out);
        // Every kept record says which side of the split it is on.
        for r in &kept {
            let split = r["meta"]["finetune"]["split"].as_str().unwrap();
            assert!(["train", "validation", "none"].contains(&split), "{split}");
        }
        assert!(kept
            .iter()
            .any(|r| r["meta"]["finetune"]["split"] == "validation"));
        let ft = out.join("finetune");
        // The layouts Hugging Face tools load: the merged model and the adapter apart, and
        // the tiny model's untrained base the adapter applies to.
        for f in [
            "finetune.json",
            "loss.svg",
            "merged/model.safetensors",
            "merged/config.json",
            "merged/generation_config.json",
            "merged/tokenizer.json",
            "merged/tokenizer_config.json",
            "adapter/adapter_model.safetensors",
            "adapter/adapter_config.json",
            "adapter/README.md",
            "base/model.safetensors",
            "base/config.json",
        ] {
            assert!(ft.join(f).exists(), "missing {f}");
        }
        for f in ["adapter_model.safetensors", "adapter_config.json"] {
            assert!(!ft.join("merged").join(f).exists() && !ft.join(f).exists());
        }
        let report = json(&ft.join("finetune.json"));
        let evals = report["report"]["evals"].as_array().unwrap();
        assert_eq!(evals.len(), 3);
        for e in evals {
            let (t, v, g) = (
                e["train_loss"].as_f64().unwrap(),
                e["val_loss"].as_f64().unwrap(),
                e["gap"].as_f64().unwrap(),
            );
            assert!(t.is_finite() && v.is_finite() && (v - t - g).abs() < 1e-9);
        }
        assert_eq!(report["report"]["step_log"].as_array().unwrap().len(), 12);
        // Only the adapters train.
        let trainable = report["model"]["trainable_parameters"].as_u64().unwrap();
        assert_eq!(
            trainable,
            (4 * 32 + 32 * 4) + (4 * 32 + 16 * 4),
            "one layer: LoRA A and B on q and v"
        );
        let s = stats(&out);
        let summary = &s["stages"].as_array().unwrap().last().unwrap()["summary"];
        assert_eq!(summary["steps"], 12);
        assert!(summary["final_val_loss"].as_f64().is_some());
        let html = std::fs::read_to_string(out.join("report.html")).unwrap();
        assert!(html.contains("<polyline") && html.contains("gap (validation"));
        runs.push(report["report"]["evals"].clone());
    }
    assert_eq!(runs[0], runs[1], "same losses for 1 and 2 threads");
}

#[test]
fn finetune_command_and_compare_command() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ft.toml");
    let small = SMALL.replace("[stage.", "[finetune.");
    std::fs::write(
        &cfg,
        format!(
            "[input]\npaths = [{:?}, {:?}]\n\n[finetune]\nmethod = \"full\"\n{small}",
            samples("alpaca_en.jsonl"),
            samples("messages_en.jsonl")
        ),
    )
    .unwrap();
    let out = dir.path().join("ft");
    let o = run_ok(&[
        "finetune",
        cfg.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("trained 12 steps"));
    let report = json(&out.join("finetune.json"));
    assert_eq!(report["model"]["method"], "full");
    assert!(
        report["data"]["read"]["empty"].as_u64().unwrap() >= 1,
        "empty answers are counted, not trained on"
    );
    assert!(out.join("merged/model.safetensors").exists());
    assert!(!out.join("adapter").exists());

    // Bad config: exit 2 naming the file.
    std::fs::write(
        &cfg,
        "[input]\npaths = [\"x.jsonl\"]\n[finetune]\nmethod = \"dora\"\n",
    )
    .unwrap();
    let bad = common::run_curate(&["finetune", cfg.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("dora"));

    // A GPU in a build without CUDA: exit 2 before any data is read, saying how to build it.
    if !cfg!(feature = "cuda") {
        std::fs::write(
            &cfg,
            "[input]\npaths = [\"x.jsonl\"]\n[finetune]\ndevice = \"cuda\"\n",
        )
        .unwrap();
        let bad = common::run_curate(&["finetune", cfg.to_str().unwrap()]);
        assert_eq!(bad.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&bad.stderr).contains("--features cuda"));
    }

    // compare: a cleaning pipeline with the small training settings in its finetune table.
    let exams = Path::new(env!("CARGO_MANIFEST_DIR")).join("data-samples/exams");
    let stages = format!(
        "[[stage]]\nkind = \"normalize\"\n\n[[stage]]\nkind = \"length\"\nresponse = {{ min = 5 }}\n\n[[stage]]\nkind = \"exact_dedup\"\n\n[[stage]]\nkind = \"decontaminate\"\n\n[[stage]]\nkind = \"finetune\"\n{SMALL}\n\
         [[benchmark]]\nname = \"ceval\"\nformat = \"ceval\"\npath = {:?}\n\n[[benchmark]]\nname = \"mmlu\"\nformat = \"mmlu\"\npath = {:?}\n",
        exams.join("ceval").display().to_string(),
        exams.join("mmlu").display().to_string()
    );
    let p = write_pipeline(
        dir.path(),
        &[&samples("alpaca_zh.jsonl"), &samples("alpaca_en.jsonl")],
        &stages,
        dir.path().join("unused").to_str().unwrap(),
        "",
    );
    let cmp = dir.path().join("cmp");
    // Without a validation file the comparison refuses: a split of the cleaned output
    // would favour the cleaned arm.
    let refused = run_curate(&["compare", p.to_str().unwrap(), "--output", cmp.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no validation set"));
    let validation = Path::new(env!("CARGO_MANIFEST_DIR")).join("data-samples/validation/qa_zh_en.jsonl");
    // A selection pipeline on the cleaned output: answers of at least 60 characters.
    let select = dir.path().join("select.toml");
    std::fs::write(
        &select,
        "[input]\npaths = [\"placeholder.jsonl\"]\n[output]\ndir = \"unused\"\n[[stage]]\nkind = \"length\"\nresponse = { min = 60 }\n",
    )
    .unwrap();
    let o = run_ok(&[
        "compare",
        p.to_str().unwrap(),
        "--output",
        cmp.to_str().unwrap(),
        "--seeds",
        "1,2",
        "--steps",
        "8",
        "--validation",
        validation.to_str().unwrap(),
        "--select",
        select.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("val loss random - selected"), "{text}");
    assert!(text.contains("perplexity ratio"), "{text}");
    let c = json(&cmp.join("compare.json"));
    assert_eq!(c["seeds"].as_array().unwrap().len(), 2);
    assert_eq!(c["steps"], 8);
    assert_eq!(c["tokens_per_run"], 8 * 4 * 64);
    assert_eq!(c["val_records"], 36, "every record of the validation file");
    assert!(c["significance"]["statement"]
        .as_str()
        .unwrap()
        .contains("standard errors"));
    // Probe sets: exact_dedup dropped copies, so memorisation is measured; no
    // decontaminate stage, so contamination inflation is not.
    assert!(c["probe_sets"]["duplicates"].as_u64().unwrap() > 0);
    assert!(c["probe_sets"]["unique"].as_u64().unwrap() > 0);
    assert!(c["memorisation"]["mean"].as_f64().unwrap().is_finite());
    // The samples leak exam items (data-samples/labels.json): both halves of the
    // inflation measure have items, rendered from the benchmark files.
    assert!(c["probe_sets"]["leaked_items"].as_u64().unwrap() > 0);
    assert!(c["probe_sets"]["unleaked_items"].as_u64().unwrap() > 0);
    assert!(c["contamination_inflation"]["mean"].as_f64().unwrap().is_finite());
    let leaked = std::fs::read_to_string(cmp.join("probes/leaked_items.jsonl")).unwrap();
    assert!(leaked.lines().all(|l| l.contains("\"assistant\"")));
    assert!(cmp.join("probes/duplicates.jsonl").exists());
    // The raw side has the duplicates the cleaned side lost.
    assert!(c["raw_train_records"].as_u64().unwrap() > c["clean_train_records"].as_u64().unwrap());
    for s in c["seeds"].as_array().unwrap() {
        for side in ["raw", "clean"] {
            assert_eq!(s[side]["tokens_seen"], 8 * 4 * 64);
            assert!(s[side]["final_val_loss"].as_f64().unwrap().is_finite());
        }
        let diff =
            s["raw"]["final_val_loss"].as_f64().unwrap() - s["clean"]["final_val_loss"].as_f64().unwrap();
        assert!((diff - s["final_val_diff"].as_f64().unwrap()).abs() < 1e-12);
    }
    // Selected vs random vs all: a real subset, the random arm as large, same budget.
    let sel = &c["selection"];
    let chosen = sel["selected_records"].as_u64().unwrap();
    assert!(
        chosen > 0 && chosen < c["clean_train_records"].as_u64().unwrap(),
        "{sel}"
    );
    assert_eq!(sel["seeds"].as_array().unwrap().len(), 2);
    for (s, all) in sel["seeds"]
        .as_array()
        .unwrap()
        .iter()
        .zip(c["seeds"].as_array().unwrap())
    {
        for arm in ["selected", "random"] {
            assert_eq!(s[arm]["tokens_seen"], 8 * 4 * 64);
        }
        let loss = |v: &serde_json::Value| v["final_val_loss"].as_f64().unwrap();
        assert!(
            (loss(&s["random"]) - loss(&s["selected"]) - s["random_minus_selected"].as_f64().unwrap()).abs()
                < 1e-12
        );
        assert!(
            (loss(&all["clean"]) - loss(&s["selected"]) - s["all_minus_selected"].as_f64().unwrap()).abs()
                < 1e-12
        );
    }
    assert!(sel["vs_random"]["statement"]
        .as_str()
        .unwrap()
        .contains("standard errors"));
    let html = std::fs::read_to_string(cmp.join("compare.html")).unwrap();
    assert!(html.contains("Selected vs random vs all"));
    assert!(html.matches("<polyline").count() >= 4);
    assert!(
        !dir.path().join("unused").exists(),
        "compare writes only into its own output"
    );
}

// ---------------------------------------------------------------------------------------
// Pretrained checkpoints: a tiny Hugging Face folder and a tiny GGUF written here, trained
// from through `model = "<path>"`.

mod pretrained {
    use std::collections::HashMap;
    use std::io::Cursor;
    use std::path::{Path, PathBuf};

    use candle_core::quantized::gguf_file::{self, Value as G};
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{DType, Device, Tensor};
    use curate::finetune::config::ModelConfig;
    use curate::finetune::data::{self, ChatFormat, Template};
    use curate::finetune::model::{init_weights, LoraConfig, Method, Model};
    use curate::finetune::session::{self, load_checkpoint};
    use curate::finetune::train::evaluate;
    use curate::record::Role;

    use super::{json, run_ok, samples};
    use crate::common::values;

    /// SmolLM2-Instruct's chat template (ChatML with a default system prompt).
    const SMOLLM2_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    /// A byte-level BPE (ChatML markers as special tokens) trained on the sample answers.
    fn tokenizer() -> tokenizers::Tokenizer {
        let chatml = Template::preset("chatml").unwrap();
        let texts: Vec<String> = std::fs::read_to_string(samples("alpaca_zh.jsonl"))
            .unwrap()
            .lines()
            .chain(
                std::fs::read_to_string(samples("alpaca_en.jsonl"))
                    .unwrap()
                    .lines(),
            )
            .map(|l| l.to_string())
            .collect();
        data::train_tokenizer(&texts, 400, &chatml.markers()).unwrap()
    }

    fn model_config(vocab: usize, tied: bool, bias: bool) -> ModelConfig {
        ModelConfig {
            rms_norm_eps: 1e-5,
            max_position_embeddings: 256,
            tie_word_embeddings: tied,
            attention_bias: bias,
            ..ModelConfig::new(vocab, 32, 64, 2, 4, 2)
        }
    }

    /// A Llama folder: config.json, model.safetensors, tokenizer.json, tokenizer_config.json.
    fn write_hf_folder(dir: &Path, tk: &tokenizers::Tokenizer) {
        std::fs::create_dir_all(dir).unwrap();
        let eos = tk.token_to_id("<|im_end|>").unwrap();
        let mut c = model_config(tk.get_vocab_size(true), true, false);
        c.eos_token_id = Some(eos);
        c.bos_token_id = tk.token_to_id("<|im_start|>");
        let mut cj = serde_json::to_value(&c).unwrap();
        cj["model_type"] = "llama".into();
        cj["architectures"] = serde_json::json!(["LlamaForCausalLM"]);
        std::fs::write(dir.join("config.json"), cj.to_string()).unwrap();
        // bf16 on disk, as real checkpoints ship.
        let w: HashMap<String, Tensor> = init_weights(&c, 5, &Device::Cpu)
            .unwrap()
            .into_iter()
            .map(|(k, t)| (k, t.to_dtype(DType::BF16).unwrap()))
            .collect();
        candle_core::safetensors::save(&w, dir.join("model.safetensors")).unwrap();
        tk.save(dir.join("tokenizer.json"), false).unwrap();
        std::fs::write(
            dir.join("tokenizer_config.json"),
            serde_json::json!({"chat_template": SMOLLM2_TEMPLATE, "eos_token": "<|im_end|>"}).to_string(),
        )
        .unwrap();
    }

    /// llama.cpp's name of a Hugging Face weight.
    fn gguf_name(hf: &str) -> String {
        match hf {
            "model.embed_tokens.weight" => return "token_embd.weight".into(),
            "model.norm.weight" => return "output_norm.weight".into(),
            "lm_head.weight" => return "output.weight".into(),
            _ => {}
        }
        let rest = hf.strip_prefix("model.layers.").unwrap();
        let (layer, rest) = rest.split_once('.').unwrap();
        let (part, kind) = rest.rsplit_once('.').unwrap();
        let g = match part {
            "input_layernorm" => "attn_norm",
            "post_attention_layernorm" => "ffn_norm",
            "self_attn.q_proj" => "attn_q",
            "self_attn.k_proj" => "attn_k",
            "self_attn.v_proj" => "attn_v",
            "self_attn.o_proj" => "attn_output",
            "mlp.gate_proj" => "ffn_gate",
            "mlp.up_proj" => "ffn_up",
            "mlp.down_proj" => "ffn_down",
            other => panic!("{other}"),
        };
        format!("blk.{layer}.{g}.{kind}")
    }

    /// A Qwen2 GGUF (q/k/v biases, untied head, Q8_0 embeddings) whose vocabulary is the
    /// trained tokenizer's, without a chat template (so the plain template is used).
    fn write_qwen2_gguf(path: &Path, tk: &tokenizers::Tokenizer) {
        let vocab = tk.get_vocab_size(true);
        let c = model_config(vocab, false, true);
        let weights = init_weights(&c, 6, &Device::Cpu).unwrap();
        let mut names: Vec<&String> = weights.keys().collect();
        names.sort();
        let qs: Vec<(String, QTensor)> = names
            .iter()
            .map(|n| {
                let dtype = if *n == "model.embed_tokens.weight" {
                    GgmlDType::Q8_0
                } else {
                    GgmlDType::F32
                };
                (gguf_name(n), QTensor::quantize(&weights[*n], dtype).unwrap())
            })
            .collect();
        let model: serde_json::Value = serde_json::from_str(&tk.to_string(false).unwrap()).unwrap();
        let mut tokens = vec![String::new(); vocab];
        let mut types = vec![1i32; vocab];
        for (tok, id) in tk.get_vocab(true) {
            tokens[id as usize] = tok.clone();
            if tok.starts_with("<|") {
                types[id as usize] = 3; // control
            }
        }
        let merges: Vec<G> = model["model"]["merges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| match m {
                serde_json::Value::String(s) => G::String(s.clone()),
                pair => G::String(format!(
                    "{} {}",
                    pair[0].as_str().unwrap(),
                    pair[1].as_str().unwrap()
                )),
            })
            .collect();
        let eos = tk.token_to_id("<|im_end|>").unwrap();
        let md: Vec<(String, G)> = vec![
            ("general.architecture".into(), G::String("qwen2".into())),
            ("qwen2.embedding_length".into(), G::U32(32)),
            ("qwen2.feed_forward_length".into(), G::U32(64)),
            ("qwen2.block_count".into(), G::U32(2)),
            ("qwen2.attention.head_count".into(), G::U32(4)),
            ("qwen2.attention.head_count_kv".into(), G::U32(2)),
            ("qwen2.attention.layer_norm_rms_epsilon".into(), G::F32(1e-5)),
            ("qwen2.rope.freq_base".into(), G::F32(10000.0)),
            ("qwen2.context_length".into(), G::U32(256)),
            ("tokenizer.ggml.model".into(), G::String("gpt2".into())),
            ("tokenizer.ggml.pre".into(), G::String("gpt-2".into())),
            (
                "tokenizer.ggml.tokens".into(),
                G::Array(tokens.into_iter().map(G::String).collect()),
            ),
            (
                "tokenizer.ggml.token_type".into(),
                G::Array(types.into_iter().map(G::I32).collect()),
            ),
            ("tokenizer.ggml.merges".into(), G::Array(merges)),
            ("tokenizer.ggml.eos_token_id".into(), G::U32(eos)),
        ];
        let md_refs: Vec<(&str, &G)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let t_refs: Vec<(&str, &QTensor)> = qs.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let mut buf = Cursor::new(Vec::new());
        gguf_file::write(&mut buf, &md_refs, &t_refs).unwrap();
        std::fs::write(path, buf.into_inner()).unwrap();
    }

    fn write_config(dir: &Path, model: &str, method: &str, extra: &str) -> PathBuf {
        let cfg = dir.join(format!("ft-{method}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "[input]\npaths = [{:?}]\n\n[finetune]\nmodel = {model:?}\nmethod = {method:?}\nval_fraction = 0.1\nprogress = false\n{extra}\n[finetune.train]\nseq_len = 48\nbatch_size = 4\nmax_steps = 10\neval_every = 5\nwarmup_steps = 2\nlr = 1e-2\nkeep_best = false\n",
                samples("alpaca_zh.jsonl")
            ),
        )
        .unwrap();
        cfg
    }

    fn mean(xs: &[f64]) -> f64 {
        xs.iter().sum::<f64>() / xs.len() as f64
    }

    /// Rows of a few templated sample conversations, to score two models on.
    fn some_rows(format: &ChatFormat, tk: &tokenizers::Tokenizer) -> data::Rows {
        let turns = vec![
            (Role::Prompt, "请把这句话翻译成英文：今天天气很好。".to_string()),
            (Role::Response, "The weather is nice today.".to_string()),
        ];
        let ex = data::encode(tk, format, &turns, &[]).unwrap();
        data::pack([&ex, &ex, &ex], 32, 0)
    }

    #[test]
    fn lora_on_an_hf_folder_uses_its_chat_template_and_keeps_the_base() {
        let dir = tempfile::tempdir().unwrap();
        let tk = tokenizer();
        write_hf_folder(&dir.path().join("hf"), &tk);
        // `model` is relative to the config file.
        let cfg = write_config(dir.path(), "hf", "lora", "");
        let out = dir.path().join("out");
        let (outcome, _) = session::run_file(&cfg, Some(out.clone())).unwrap();

        // The model's own template rendered the text: ChatML markers, answers trained.
        let ChatFormat::Jinja(t) = &outcome.format else {
            panic!("expected the checkpoint's chat template")
        };
        assert_eq!(t.source, SMOLLM2_TEMPLATE);
        let turns = vec![
            (Role::Prompt, "hi".to_string()),
            (Role::Response, "hello".to_string()),
        ];
        let ex = data::encode(&tk, &outcome.format, &turns, &[]).unwrap();
        let trained: Vec<u32> = ex
            .ids
            .iter()
            .zip(&ex.trained)
            .filter(|(_, m)| **m)
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(tk.decode(&trained, false).unwrap(), "hello<|im_end|>\n");
        assert_eq!(ex.ids[0], tk.token_to_id("<|im_start|>").unwrap());

        // Loss falls; the base weights are bit-identical to the checkpoint's.
        let losses: Vec<f64> = outcome.report.step_log.iter().map(|s| s.train_loss).collect();
        assert!(mean(&losses[6..]) < mean(&losses[..4]), "{losses:?}");
        let base = load_checkpoint(&dir.path().join("hf")).unwrap();
        assert_eq!(outcome.model.weights().len(), base.tensors.len());
        for (name, t) in outcome.model.weights() {
            assert_eq!(values(t), values(&base.tensors[name]), "{name} changed");
        }

        // PEFT keys name the base model's modules, with their shapes.
        let adapter =
            candle_core::safetensors::load(out.join("adapter/adapter_model.safetensors"), &Device::Cpu)
                .unwrap();
        assert_eq!(adapter.len(), 2 * 2 * 2, "2 layers x q,v x A,B");
        for (key, t) in &adapter {
            let module = key
                .strip_prefix("base_model.model.")
                .and_then(|k| {
                    k.strip_suffix(".lora_A.weight")
                        .or_else(|| k.strip_suffix(".lora_B.weight"))
                })
                .unwrap_or_else(|| panic!("not a PEFT key: {key}"));
            let w = &base.tensors[&format!("{module}.weight")];
            let (o, i) = w.dims2().unwrap();
            let want = if key.ends_with("lora_A.weight") {
                [8, i]
            } else {
                [o, 8]
            };
            assert_eq!(t.dims(), want, "{key}");
        }
        let ac = json(&out.join("adapter/adapter_config.json"));
        assert_eq!(
            ac["base_model_name_or_path"],
            dir.path().join("hf").to_str().unwrap()
        );
        assert_eq!(ac["target_modules"], serde_json::json!(["q_proj", "v_proj"]));
        for sub in ["merged", "adapter"] {
            let tc = json(&out.join(sub).join("tokenizer_config.json"));
            assert_eq!(tc["chat_template"], SMOLLM2_TEMPLATE, "{sub}");
            assert_eq!(tc["eos_token"], "<|im_end|>", "{sub}");
            assert_eq!(
                json(&out.join(sub).join("tokenizer.json")),
                serde_json::from_str::<serde_json::Value>(&tk.to_string(false).unwrap()).unwrap()
            );
        }

        // The adapter round-trips: base + saved adapter scores exactly like the trained model.
        let mut reloaded = Model::new(
            base.config.clone(),
            base.tensors.clone(),
            Method::Lora(LoraConfig::default()),
            99,
            &Device::Cpu,
        )
        .unwrap();
        let rows = some_rows(&outcome.format, &tk);
        let fresh = evaluate(&reloaded, &rows, 4).unwrap();
        reloaded.load_adapter_tensors(&adapter).unwrap();
        let (trained, again) = (
            evaluate(&outcome.model, &rows, 4).unwrap(),
            evaluate(&reloaded, &rows, 4).unwrap(),
        );
        assert_eq!(trained, again);
        assert_ne!(fresh, trained, "the adapter changes the model");
        // The merged full weights load as an HF folder, in the base's bf16, with the same
        // template, and score the same up to bf16 rounding of the merged weights.
        let merged = load_checkpoint(&out.join("merged")).unwrap();
        assert_eq!(merged.dtype, DType::BF16);
        assert_eq!(json(&out.join("merged/config.json"))["torch_dtype"], "bfloat16");
        assert_eq!(merged.chat_template.as_deref(), Some(SMOLLM2_TEMPLATE));
        let m = Model::new(merged.config, merged.tensors, Method::Full, 1, &Device::Cpu).unwrap();
        let merged_loss = evaluate(&m, &rows, 4).unwrap();
        assert!((merged_loss - trained).abs() < 1e-2, "{merged_loss} vs {trained}");
        // The output folder itself is not a model folder: the error says where the model is.
        let err = format!("{:#}", load_checkpoint(&out).err().unwrap());
        assert!(err.contains("merged"), "{err}");

        // Through the binary as well.
        let out2 = dir.path().join("out2");
        let o = run_ok(&[
            "finetune",
            cfg.to_str().unwrap(),
            "--output",
            out2.to_str().unwrap(),
        ]);
        assert!(String::from_utf8_lossy(&o.stdout).contains("trained 10 steps"));
        let a = json(&out.join("finetune.json"));
        let b = json(&out2.join("finetune.json"));
        assert_eq!(
            a["report"]["evals"], b["report"]["evals"],
            "same seed, same losses"
        );
        assert!(a["template"]["jinja"].is_string());
    }

    #[test]
    fn gguf_trains_with_the_plain_template_lora_all_and_full() {
        let dir = tempfile::tempdir().unwrap();
        let tk = tokenizer();
        let gguf = dir.path().join("tiny-qwen2.gguf");
        write_qwen2_gguf(&gguf, &tk);
        let base = load_checkpoint(&gguf).unwrap();
        assert!(base.chat_template.is_none() && base.config.attention_bias);

        let cfg = write_config(
            dir.path(),
            gguf.to_str().unwrap(),
            "lora",
            "[finetune.lora]\nr = 4\ntarget_modules = [\"all\"]\n",
        );
        let (lora, out) = session::run_file(&cfg, Some(dir.path().join("lora"))).unwrap();
        // No chat template in the file: `User:` / `Assistant:` text closed by the model's EOS.
        let ChatFormat::Parts(t) = &lora.format else {
            panic!("expected the plain template")
        };
        assert_eq!(t, &Template::plain("<|im_end|>"));
        let losses: Vec<f64> = lora.report.step_log.iter().map(|s| s.train_loss).collect();
        assert!(mean(&losses[6..]) < mean(&losses[..4]), "{losses:?}");
        for (name, w) in lora.model.weights() {
            assert_eq!(values(w), values(&base.tensors[name]), "{name} changed");
        }
        let adapter =
            candle_core::safetensors::load(out.join("adapter/adapter_model.safetensors"), &Device::Cpu)
                .unwrap();
        assert_eq!(adapter.len(), 2 * 7 * 2, "2 layers x 7 projections x A,B");
        assert!(adapter.contains_key("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"));
        let config = json(&out.join("merged/config.json"));
        assert_eq!(config["model_type"], "qwen2");
        // F32 and Q8_0 tensors: the merged model is written in f32.
        assert_eq!(config["torch_dtype"], "float32");
        assert_eq!(
            json(&out.join("adapter/adapter_config.json"))["base_model_name_or_path"],
            gguf.to_str().unwrap()
        );

        // Full fine-tuning from the same weights moves them.
        let cfg = write_config(dir.path(), gguf.to_str().unwrap(), "full", "");
        let (full, out) = session::run_file(&cfg, Some(dir.path().join("full"))).unwrap();
        let losses: Vec<f64> = full.report.step_log.iter().map(|s| s.train_loss).collect();
        assert!(mean(&losses[6..]) < mean(&losses[..4]), "{losses:?}");
        assert_ne!(
            values(&full.model.weights()["model.layers.0.self_attn.q_proj.bias"]),
            values(&base.tensors["model.layers.0.self_attn.q_proj.bias"])
        );
        assert!(!out.join("adapter").exists() && out.join("merged/model.safetensors").exists());
        assert_eq!(full.model.trainable_parameters(), base.config.parameter_count());
    }

    #[test]
    fn unknown_model_paths_and_template_mismatches_are_config_errors() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write_config(dir.path(), "no/such/model", "lora", "");
        let o = super::common::run_curate(&["finetune", cfg.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&o.stderr).contains("no/such/model"));
        let cfg = write_config(dir.path(), "tiny", "full", "template = \"model\"\n");
        let o = super::common::run_curate(&["finetune", cfg.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&o.stderr).contains("pretrained"));
    }
}

/// A pipeline that ends in `finetune` (as the default one does) still succeeds on an
/// input too small to train on, and on one rank of a sharded run; both say why they did
/// not train, in stats.json, report.html and the summary under the stage table.
#[test]
fn finetune_stage_without_enough_records_reports_why_instead_of_training() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lines: String = (0..5)
        .map(|i| {
            format!(
                "{}\n",
                serde_json::json!({"instruction": format!("问题 {i}：什么是数据清洗？"), "output": format!("答案 {i}：去掉重复、错误和无用的样本。")})
            )
        })
        .collect();
    std::fs::write(d.join("few.jsonl"), lines).unwrap();
    let stages = format!("[[stage]]\nkind = \"finetune\"\nmin_train_records = 32\n{SMALL}");
    let p = write_pipeline(d, &["few.jsonl"], &stages, "out", "");
    let o = run_ok(&["run", p.to_str().unwrap()]);
    let summary_text = String::from_utf8_lossy(&o.stdout);
    assert!(summary_text.contains("finetune: not trained:"), "{summary_text}");
    let (kept, rejected) = check_books(&d.join("out"));
    assert_eq!((kept.len(), rejected.len()), (5, 0));
    let s = stats(&d.join("out"));
    let ft = &s["stages"][1]["summary"];
    assert!(
        ft["skipped"]
            .as_str()
            .unwrap()
            .contains("fewer than min_train_records = 32"),
        "{ft}"
    );
    assert!(
        !d.join("out/finetune").exists(),
        "nothing trained, nothing written"
    );
    let html = std::fs::read_to_string(d.join("out/report.html")).unwrap();
    assert!(html.contains("Not trained:"));

    // Enough records when the limit allows it: the same input trains and prints its epochs.
    let stages = format!("[[stage]]\nkind = \"finetune\"\nmin_train_records = 2\n{SMALL}");
    let p = write_pipeline(d, &["few.jsonl"], &stages, "out2", "");
    let o = run_ok(&["run", p.to_str().unwrap()]);
    let summary_text = String::from_utf8_lossy(&o.stdout);
    assert!(summary_text.contains("epoch    steps"), "{summary_text}");
    assert!(d.join("out2/finetune/finetune.json").exists());

    // One rank of two: its share is not the data set, so it does not train.
    let stages = format!("[[stage]]\nkind = \"finetune\"\nmin_train_records = 1\n{SMALL}");
    let p = write_pipeline(d, &["few.jsonl"], &stages, "sharded", "");
    run_ok(&[
        "run",
        p.to_str().unwrap(),
        "--quiet",
        "--rank",
        "0",
        "--world-size",
        "2",
    ]);
    let rank_dir = std::fs::read_dir(d.join("sharded/ranks"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let s = stats(&rank_dir);
    assert!(s["stages"][1]["summary"]["skipped"]
        .as_str()
        .unwrap()
        .contains("sharded run"));
}
