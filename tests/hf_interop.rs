//! transformers and PEFT load what `curate finetune` writes, and reproduce its logits.
//!
//! Each case fine-tunes briefly with `save_logits` (curate's own logits on validation
//! rows), then tests/hf_interop.py, in the venv of scripts/py_torch.sh, loads `merged/`
//! with `AutoModelForCausalLM.from_pretrained` and `adapter/` with
//! `PeftModel.from_pretrained` on the base its config names (and with
//! `AutoPeftModelForCausalLM` for a folder base), and reports each one's largest logit
//! difference from curate's. Without the venv the tests skip with a note, unless
//! `CURATE_REQUIRE_TORCH` is set (scripts/test.sh sets it after installing the venv).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::run_ok;
use serde_json::Value;

/// The largest logit difference accepted between curate and transformers (f32 both):
/// 1e-4, or 1e-5 of the largest logit when that is larger. f32 rounding differs with the
/// order of the sums and grows with the values: on SmolLM2-135M (30 layers, logits up to
/// 38.5) PEFT's base + adapter came within 8.2e-5 and the merged weights within 1.01e-4,
/// while the base alone was off by 17.2 (and a doubly applied adapter, in issue 24, by 6.45).
fn tolerance(r: &Value) -> f64 {
    (1e-5 * num(&r["max_abs_logit"])).max(1e-4)
}

/// The venv's python (`CURATE_TORCH_VENV`, else scripts/py_torch.sh's default place);
/// `None` with a note when it is not installed, a failure when `CURATE_REQUIRE_TORCH` is set.
fn torch_python() -> Option<PathBuf> {
    let venv = match std::env::var_os("CURATE_TORCH_VENV") {
        Some(v) => PathBuf::from(v),
        None => {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
                .expect("neither XDG_CACHE_HOME nor HOME is set");
            cache.join("curate/venv-torch")
        }
    };
    // scripts/py_torch.sh writes `curate-pins` last: without it the install did not finish.
    if venv.join("curate-pins").exists() {
        return Some(venv.join("bin/python"));
    }
    assert!(
        std::env::var_os("CURATE_REQUIRE_TORCH").is_none(),
        "CURATE_REQUIRE_TORCH is set but {} holds no finished install (scripts/py_torch.sh install)",
        venv.display()
    );
    eprintln!(
        "note: no torch venv at {} (run scripts/py_torch.sh install); skipping",
        venv.display()
    );
    None
}

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `curate finetune` on the Chinese Alpaca samples with the given `[finetune]` keys and
/// `[finetune.train]` table; returns the output folder.
fn finetune(dir: &Path, name: &str, keys: &str, train: &str) -> PathBuf {
    let cfg = dir.join(format!("{name}.toml"));
    let samples = manifest().join("data-samples/sft/alpaca_zh.jsonl");
    std::fs::write(
        &cfg,
        format!(
            "[input]\npaths = [{:?}]\n\n[finetune]\nprogress = false\nsave_logits = 2\n{keys}\n[finetune.train]\nkeep_best = false\n{train}",
            samples.to_str().unwrap()
        ),
    )
    .unwrap();
    let out = dir.join(name);
    run_ok(&[
        "finetune",
        cfg.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    out
}

/// tests/hf_interop.py's measurements of a fine-tune output folder.
fn load_in_python(python: &Path, run: &Path) -> Value {
    let o = Command::new(python)
        .arg(manifest().join("tests/hf_interop.py"))
        .arg(run)
        // Everything is local: no hub look-ups.
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_OFFLINE", "1")
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "hf_interop.py {} failed:\n{stderr}",
        run.display()
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let v: Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    eprintln!("{}: {v}", run.display());
    v
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap()
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The merged model matches curate's logits and is a plain model: no adapter beside it.
fn check_merged(run: &Path, r: &Value, class: &str, dtype: &str) {
    let m = &r["merged"];
    assert!(num(&m["max_abs_diff"]) <= tolerance(r), "merged/: {r}");
    assert_eq!(m["class"], class);
    assert_eq!(m["dtype"], dtype);
    assert_eq!(m["adapter_attached"], false);
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        assert!(
            !run.join("merged").join(f).exists(),
            "{f} beside the merged weights"
        );
    }
    let config = json(&run.join("merged/config.json"));
    assert_eq!(m["eos_token_id"], config["eos_token_id"]);
    assert_eq!(num(&m["tokenizer_len"]), num(&config["vocab_size"]));
}

/// PEFT on the named base matches curate's logits, and the adapter changed them by far
/// more than the tolerance (so the match means it was applied, once).
fn check_adapter(r: &Value, base: &Path, lora_modules: u64) {
    let a = &r["adapter"];
    assert_eq!(a["base"], base.to_str().unwrap());
    assert!(num(&a["max_abs_diff"]) <= tolerance(r), "adapter/: {r}");
    assert!(
        num(&a["base_only_max_abs_diff"]) > 100.0 * tolerance(r),
        "the adapter changes little: {r}"
    );
    assert_eq!(a["lora_modules"], lora_modules);
}

const TINY: &str = "[finetune.tiny]\nvocab_size = 400\nhidden_size = 32\nintermediate_size = 64\nnum_hidden_layers = 2\nnum_attention_heads = 2\nnum_key_value_heads = 1\n";
const TINY_TRAIN: &str =
    "seq_len = 48\nbatch_size = 4\nmax_steps = 12\neval_every = 12\nwarmup_steps = 2\nlr = 2e-2\n";

#[test]
fn tiny_full_lora_prefix_and_prompt_load_in_transformers_and_peft() {
    let Some(python) = torch_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();

    // Full fine-tuning: the weights are the model, in merged/ alone.
    let full = finetune(
        dir.path(),
        "full",
        &format!("method = \"full\"\n{TINY}"),
        TINY_TRAIN,
    );
    assert!(!full.join("adapter").exists() && !full.join("base").exists());
    let r = load_in_python(&python, &full);
    assert_eq!(r["rows"], 2);
    check_merged(&full, &r, "LlamaForCausalLM", "float32");
    assert!(r.get("adapter").is_none());

    // LoRA on the tiny model: its untrained base in base/ (which the adapter names), the
    // adapter, and the merged model.
    let lora = finetune(
        dir.path(),
        "lora",
        &format!("method = \"lora\"\n{TINY}[finetune.lora]\nr = 4\ntarget_modules = [\"all\"]\n"),
        TINY_TRAIN,
    );
    let r = load_in_python(&python, &lora);
    check_merged(&lora, &r, "LlamaForCausalLM", "float32");
    let base = std::path::absolute(lora.join("base")).unwrap();
    check_adapter(&r, &base, 2 * 7);
    assert!(
        num(&r["adapter"]["auto_peft_max_abs_diff"]) <= tolerance(&r),
        "{r}"
    );

    // Prefix tuning: nothing to merge, the adapter on base/.
    let prefix = finetune(
        dir.path(),
        "prefix",
        &format!("method = \"prefix\"\nnum_virtual_tokens = 4\n{TINY}"),
        TINY_TRAIN,
    );
    assert!(!prefix.join("merged").exists());
    let r = load_in_python(&python, &prefix);
    let base = std::path::absolute(prefix.join("base")).unwrap();
    check_adapter(&r, &base, 0);
    assert!(
        num(&r["adapter"]["auto_peft_max_abs_diff"]) <= tolerance(&r),
        "{r}"
    );

    // Prompt tuning: virtual input embeddings, the adapter on base/.
    let prompt = finetune(
        dir.path(),
        "prompt",
        &format!("method = \"prompt\"\nnum_virtual_tokens = 4\n{TINY}"),
        TINY_TRAIN,
    );
    assert!(!prompt.join("merged").exists());
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(prompt.join("adapter/adapter_config.json")).unwrap()).unwrap();
    assert_eq!(config["peft_type"], "PROMPT_TUNING");
    let r = load_in_python(&python, &prompt);
    let base = std::path::absolute(prompt.join("base")).unwrap();
    check_adapter(&r, &base, 0);
    assert!(
        num(&r["adapter"]["auto_peft_max_abs_diff"]) <= tolerance(&r),
        "{r}"
    );
}

#[test]
fn lora_on_smollm2_gguf_loads_in_transformers_and_peft() {
    let gguf = manifest().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !gguf.exists() {
        assert!(
            std::env::var_os("CURATE_REQUIRE_MODELS").is_none(),
            "CURATE_REQUIRE_MODELS is set but {} is missing (scripts/fetch_models.sh)",
            gguf.display()
        );
        eprintln!(
            "note: {} absent (run scripts/fetch_models.sh); skipping",
            gguf.display()
        );
        return;
    }
    let Some(python) = torch_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run = finetune(
        dir.path(),
        "smollm2",
        &format!(
            "model = {:?}\nmethod = \"lora\"\nval_fraction = 0.05\n[finetune.lora]\nr = 8\ntarget_modules = [\"q_proj\", \"v_proj\"]\n",
            gguf.to_str().unwrap()
        ),
        "seq_len = 32\nbatch_size = 2\nmax_steps = 4\neval_every = 4\nwarmup_steps = 1\nlr = 2e-2\n",
    );
    // The adapter names its base by absolute path and says how to load a GGUF.
    let ac = json(&run.join("adapter/adapter_config.json"));
    assert_eq!(ac["base_model_name_or_path"], gguf.to_str().unwrap());
    assert_eq!(ac["peft_version"], curate::finetune::export::PEFT_VERSION);
    let readme = std::fs::read_to_string(run.join("adapter/README.md")).unwrap();
    assert!(readme.contains("gguf_file="), "{readme}");

    let r = load_in_python(&python, &run);
    assert_eq!(r["vocab"], 49152);
    // Q4_1 weights dequantize to f32: the merged model is written in f32.
    check_merged(&run, &r, "LlamaForCausalLM", "float32");
    assert_eq!(r["merged"]["has_chat_template"], true);
    check_adapter(&r, &gguf, 30 * 2);
}
