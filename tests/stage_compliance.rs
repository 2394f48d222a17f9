//! One compliance check for every stage kind in `curate::stages::KINDS`, through the
//! binary. A pipeline with that one stage (its required resources taken from
//! `pipelines/zh_sft.toml`; `finetune` with a very small model, as in `tests/finetune.rs`):
//!
//! - `curate validate` succeeds and prints a description line for the stage;
//! - a run over an empty-text record, one record of every schema (text, html, alpaca,
//!   sharegpt, messages, preference) and a duplicate finishes without error;
//! - `stats.json` adds up: `input = kept + rejected`, every stage's `in = kept + dropped`,
//!   each stage takes in what the one before kept, the drops add up to `rejected`;
//! - `--threads 1` and `--threads 4` write byte-identical `kept/` and `rejected/` files
//!   (small batches and parts, so the threads have work to share);
//! - every kept and rejected record fits the output's one schema (`features.json`):
//!   whatever the stage writes under `meta` it declared (`Stage::annotations`), with
//!   the declared types, and every record has every declared key.
//!
//! Only the bundled `data-samples/` and `filters/` are used: no shared data needed.

mod common;

use std::path::Path;

use common::{check_books, read_lines, run_curate, snapshot, stats};

fn repo(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(rel)
        .to_string_lossy()
        .into_owned()
}

/// An empty text, one record of each schema, and a copy of the alpaca record (new id).
fn input_records() -> String {
    let alpaca = |id: &str| {
        serde_json::json!({"id": id, "instruction": "请解释什么是数据去重。", "input": "",
            "output": "数据去重是指在训练数据中找出内容相同或几乎相同的样本，只保留其中的一份，避免模型反复学习同样的内容。"})
    };
    let records = [
        serde_json::json!({"id": "empty", "text": ""}),
        serde_json::json!({"id": "text", "text": "数据清洗是训练大模型之前必不可少的一步，它决定了模型最终能学到什么。如有问题请写信到 zhang.san@example.com 联系我们。\n\nData cleaning decides what a model learns."}),
        serde_json::json!({"id": "html", "html": "<html><head><meta charset=\"utf-8\"><title>数据清洗</title></head><body><nav><a href=\"/\">首页</a> <a href=\"/news\">新闻</a></nav><article><h1>数据清洗</h1><p>这是一篇关于数据清洗的文章，正文有足够的长度，可以被抽取出来作为页面的主要内容。</p><p>第二段继续说明为什么要去掉导航、广告和页脚，只留下真正有用的文字。</p></article><footer>版权所有 © 2024</footer></body></html>"}),
        alpaca("alpaca"),
        serde_json::json!({"id": "sharegpt", "conversations": [
            {"from": "human", "value": "What is MinHash?"},
            {"from": "gpt", "value": "MinHash estimates the Jaccard similarity of two sets from short signatures, so near duplicates can be found without comparing every pair."}]}),
        serde_json::json!({"id": "messages", "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "用一句话介绍长城。"},
            {"role": "assistant", "content": "长城是中国古代修建的军事防御工程，东西绵延两万多公里，是世界上最著名的建筑之一。"}]}),
        serde_json::json!({"id": "preference", "prompt": "Name a prime number and say why it is prime.",
            "chosen": "Seven is prime: its only divisors are one and seven.",
            "rejected": "Nine is prime because it is odd."}),
        alpaca("alpaca-copy"),
    ];
    records.iter().map(|r| format!("{r}\n")).collect()
}

/// The stage's own keys: the resources it needs, as the default pipeline gives them.
fn stage_keys(kind: &str) -> String {
    let q = |rel: &str| format!("{:?}", repo(rel));
    match kind {
        "toxicity" => format!(
            "lexicon = [{}, {}]\nmodel = {}\nmin_lexicon_hits = 2\n",
            q("filters/toxicity/lexicon_zh.txt"),
            q("filters/toxicity/lexicon_en.txt"),
            q("filters/toxicity/cold_char.bin")
        ),
        "machine_text" => format!(
            "model = {}\nphrases = [{}, {}]\naction = \"drop\"\n",
            q("filters/machine_text/mgt_char.bin"),
            q("filters/machine_text/indicating_zh.txt"),
            q("filters/machine_text/indicating_en.txt")
        ),
        // Drops whatever the toxicity model gives any weight to: both sides get records.
        "classifier" => format!(
            "name = \"offensive\"\nmodel = {}\nlabel = \"1\"\nflag = \"at_or_above\"\nthreshold = 0.002\n",
            q("filters/toxicity/cold_char.bin")
        ),
        // The smallest real model the tests fetch; a selection, so the prepass runs too.
        "lm_score" => format!(
            "model = {}\nmax_tokens = 16\nmax_prompt_tokens = 16\nselect = {{ by = \"ifd\", fraction = 0.5 }}\n",
            q(LM_MODEL)
        ),
        "length" => "min_chars = 1\nresponse = { min = 5 }\n".into(),
        // A very small model and a few steps (tests/finetune.rs), no progress lines.
        "finetune" => "model = \"tiny\"\nval_fraction = 0.3\nprogress = false\nmin_train_records = 1\n\
             [stage.tiny]\nvocab_size = 300\nhidden_size = 16\nintermediate_size = 32\n\
             num_hidden_layers = 1\nnum_attention_heads = 2\nnum_key_value_heads = 1\n\
             [stage.train]\nseq_len = 32\nbatch_size = 2\nmax_steps = 4\neval_every = 2\nwarmup_steps = 1\n"
            .into(),
        _ => String::new(),
    }
}

/// Top-level tables a stage reads besides its own.
fn top_level(kind: &str) -> String {
    match kind {
        "decontaminate" => format!(
            "[[benchmark]]\nname = \"ceval\"\nformat = \"ceval\"\npath = {:?}\n\n\
             [[benchmark]]\nname = \"mmlu\"\nformat = \"mmlu\"\npath = {:?}\n",
            repo("data-samples/exams/ceval"),
            repo("data-samples/exams/mmlu")
        ),
        _ => String::new(),
    }
}

fn text(out: &std::process::Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every check for one kind; failures are returned, not panicked, so one run names them all.
fn check_kind(kind: &str, dir: &Path, input: &Path) -> Result<(), String> {
    let pipeline = dir.join("pipeline.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[input]\npaths = [{:?}]\n\n[[stage]]\nkind = \"{kind}\"\n{}\n{}\n\
             [output]\ndir = \"out\"\npart_records = 3\n\n[run]\nbatch_records = 2\n",
            input.to_str().unwrap(),
            stage_keys(kind),
            top_level(kind)
        ),
    )
    .unwrap();
    let p = pipeline.to_str().unwrap();

    // validate: ok, and a line `NAME KIND DESCRIPTION` under `stages:`.
    let v = run_curate(&["validate", p]);
    if !v.status.success() {
        return Err(format!(
            "`curate validate` failed ({:?}); if the stage needs keys or resources, add them to \
             stage_keys() in this test\n{}",
            v.status.code(),
            text(&v)
        ));
    }
    let stdout = String::from_utf8_lossy(&v.stdout);
    let described = stdout
        .lines()
        .skip_while(|l| l.trim() != "stages:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .any(|l| {
            let mut words = l.split_whitespace();
            // The stage's name (its kind unless the table names it), its kind, a description.
            words.next().is_some() && words.next() == Some(kind) && words.next().is_some()
        });
    if !described {
        return Err(format!(
            "`curate validate` prints no description line `NAME {kind} ...` under `stages:`\n{stdout}"
        ));
    }

    // Two runs, one and four threads.
    let mut snaps = Vec::new();
    for threads in ["1", "4"] {
        let out = dir.join(format!("out-{threads}"));
        let r = run_curate(&[
            "run",
            p,
            "--output",
            out.to_str().unwrap(),
            "--threads",
            threads,
            "--quiet",
        ]);
        if !r.status.success() {
            return Err(format!(
                "`curate run --threads {threads}` failed ({:?})\n{}",
                r.status.code(),
                text(&r)
            ));
        }
        // input = kept + rejected, and the part files hold exactly those records.
        if std::panic::catch_unwind(|| check_books(&out)).is_err() {
            return Err(format!(
                "--threads {threads}: the books of {} do not add up (see the panic above)",
                out.display()
            ));
        }
        let s = stats(&out);
        let n = |v: &serde_json::Value, k: &str| {
            v[k].as_u64()
                .unwrap_or_else(|| panic!("{kind}: stats.json `{k}` missing in {v}"))
        };
        let records = input_records().lines().count() as u64;
        if n(&s, "input") != records {
            return Err(format!(
                "stats.json input {} != {records} records written",
                n(&s, "input")
            ));
        }
        let stages = s["stages"].as_array().ok_or("stats.json has no `stages`")?;
        if !stages.iter().any(|st| st["kind"] == kind) {
            return Err(format!("stats.json has no stage of kind `{kind}`: {stages:?}"));
        }
        let mut flowing = n(&s, "input");
        let mut dropped = 0;
        for st in stages {
            let (i, k, d) = (n(st, "in"), n(st, "kept"), n(st, "dropped"));
            if i != k + d {
                return Err(format!("stage {}: in {i} != kept {k} + dropped {d}", st["name"]));
            }
            if i != flowing {
                return Err(format!(
                    "stage {}: in {i}, but the stage before kept {flowing}",
                    st["name"]
                ));
            }
            flowing = k;
            dropped += d;
        }
        if flowing != n(&s, "kept") || dropped != n(&s, "rejected") {
            return Err(format!(
                "stats.json: the last stage keeps {flowing} (kept {}), the stages drop {dropped} (rejected {})",
                n(&s, "kept"),
                n(&s, "rejected")
            ));
        }
        let features: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("features.json")).map_err(|e| e.to_string())?)
                .map_err(|e| format!("features.json: {e}"))?;
        let (kept, rejected) = (read_lines(&out, "kept"), read_lines(&out, "rejected"));
        for (sub, rows) in [("kept", &kept), ("rejected", &rejected)] {
            for row in rows.iter() {
                fits(&features[sub], row, "", true)
                    .map_err(|e| format!("a {sub} record does not fit features.json: {e}\n{row}"))?;
            }
        }
        snaps.push(snapshot(&out, &["kept", "rejected"]));
    }
    let (one, four) = (&snaps[0], &snaps[1]);
    let names = |s: &[(String, Vec<u8>)]| s.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    if names(one) != names(four) {
        return Err(format!(
            "--threads 1 wrote {:?}, --threads 4 wrote {:?}",
            names(one),
            names(four)
        ));
    }
    if let Some((name, _)) = one.iter().zip(four).find(|(a, b)| a.1 != b.1).map(|(a, _)| a) {
        return Err(format!("{name} differs between --threads 1 and --threads 4"));
    }
    if one.is_empty() {
        return Err("the run wrote no kept or rejected part at all".into());
    }
    Ok(())
}

/// Whether `value` fits a Hugging Face feature of `features.json` (a struct is a dict
/// without `_type`, a list `[item]`); `complete`: an object must have every declared key.
fn fits(
    feature: &serde_json::Value,
    value: &serde_json::Value,
    path: &str,
    complete: bool,
) -> Result<(), String> {
    use serde_json::Value;
    if value.is_null() {
        return Ok(());
    }
    match (feature, value) {
        (Value::Array(item), Value::Array(xs)) => xs
            .iter()
            .enumerate()
            .try_for_each(|(i, x)| fits(&item[0], x, &format!("{path}[{i}]"), complete)),
        (Value::Object(f), _) if f.contains_key("_type") => {
            let ok = match f["dtype"].as_str().unwrap_or("") {
                "string" => value.is_string(),
                "int64" => value.is_i64(),
                "float64" => value.is_number(),
                "bool" => value.is_boolean(),
                _ => false,
            };
            ok.then_some(())
                .ok_or_else(|| format!("{path}: {value} is not {}", f["dtype"]))
        }
        (Value::Object(f), Value::Object(m)) => {
            if let Some(k) = m.keys().find(|k| !f.contains_key(*k)) {
                return Err(format!("{path}.{k}: not declared"));
            }
            if let Some(k) = f.keys().find(|k| complete && !m.contains_key(*k)) {
                return Err(format!("{path}.{k}: declared but missing"));
            }
            m.iter()
                .try_for_each(|(k, x)| fits(&f[k], x, &format!("{path}.{k}"), complete))
        }
        _ => Err(format!("{path}: {value} does not fit {feature}")),
    }
}

/// The model `lm_score` is checked with (`scripts/fetch_models.sh`).
const LM_MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

#[test]
fn every_stage_kind_validates_runs_every_schema_adds_up_and_is_thread_independent() {
    let mut failures = Vec::new();
    for kind in curate::stages::KINDS.iter() {
        if *kind == "lm_score" && !Path::new(&repo(LM_MODEL)).exists() {
            assert!(
                std::env::var_os("CURATE_REQUIRE_MODELS").is_none(),
                "CURATE_REQUIRE_MODELS is set but {LM_MODEL} is missing (scripts/fetch_models.sh)"
            );
            eprintln!("note: {LM_MODEL} absent (run scripts/fetch_models.sh); lm_score not checked");
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("records.jsonl");
        std::fs::write(&input, input_records()).unwrap();
        if let Err(e) = check_kind(kind, dir.path(), &input) {
            failures.push(format!("stage `{kind}`: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
