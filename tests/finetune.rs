//! The fine-tune stage, `curate finetune` and `curate compare` through the binary, on
//! the bundled samples with a very small model (seconds, not minutes).

mod common;

use std::path::Path;

use common::{check_books, run_ok, stats, write_pipeline};

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
        for f in [
            "finetune.json",
            "model.safetensors",
            "config.json",
            "tokenizer.json",
            "adapter_model.safetensors",
            "adapter_config.json",
            "loss.svg",
        ] {
            assert!(ft.join(f).exists(), "missing {f}");
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
    assert!(!out.join("adapter_model.safetensors").exists());

    // Bad config: exit 2 naming the file.
    std::fs::write(
        &cfg,
        "[input]\npaths = [\"x.jsonl\"]\n[finetune]\nmethod = \"dora\"\n",
    )
    .unwrap();
    let bad = common::run_curate(&["finetune", cfg.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("dora"));

    // compare: a cleaning pipeline with the small training settings in its finetune table.
    let stages = format!(
        "[[stage]]\nkind = \"normalize\"\n\n[[stage]]\nkind = \"length\"\nresponse = {{ min = 5 }}\n\n[[stage]]\nkind = \"exact_dedup\"\n\n[[stage]]\nkind = \"finetune\"\n{SMALL}"
    );
    let p = write_pipeline(
        dir.path(),
        &[&samples("alpaca_zh.jsonl"), &samples("alpaca_en.jsonl")],
        &stages,
        dir.path().join("unused").to_str().unwrap(),
        "",
    );
    let cmp = dir.path().join("cmp");
    let o = run_ok(&[
        "compare",
        p.to_str().unwrap(),
        "--output",
        cmp.to_str().unwrap(),
        "--seeds",
        "1,2",
        "--steps",
        "8",
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("perplexity ratio"), "{text}");
    let c = json(&cmp.join("compare.json"));
    assert_eq!(c["seeds"].as_array().unwrap().len(), 2);
    assert_eq!(c["steps"], 8);
    assert_eq!(c["tokens_per_run"], 8 * 4 * 64);
    assert!(c["val_records"].as_u64().unwrap() > 0);
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
    let html = std::fs::read_to_string(cmp.join("compare.html")).unwrap();
    assert!(html.matches("<polyline").count() >= 4);
    assert!(
        !dir.path().join("unused").exists(),
        "compare writes only into its own output"
    );
}
