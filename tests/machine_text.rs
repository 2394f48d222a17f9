//! The `machine_text` stage: the shipped model and signals evaluated on sources that
//! were NOT in its training pool (when the shared data is there), and the stage end
//! to end through the binary (always).
//!
//! `cargo test --test machine_text -- --nocapture` prints the evaluation table of the
//! docs/benchmarks/machine_text.md. `MGT_MODEL=path` scores another model (for experiments).

mod common;

use std::path::PathBuf;

use common::*;
use curate::stage::BuildContext;
use curate::stages::machine_text::{MachineText, MachineTextConfig};
use serde_json::Value;

/// The threshold of the default pipeline (pipelines/zh_sft.toml).
const THRESHOLD: f64 = 0.9;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn stage() -> MachineText {
    let model = std::env::var("MGT_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join("filters/machine_text/mgt_char.bin"));
    // As the default pipeline: mostly-CJK text goes to the model with formal Chinese prose
    // in its human side (`MGT_MODEL_CJK` replaces it, `MGT_MODEL_CJK=` turns it off).
    let model_cjk = std::env::var("MGT_MODEL_CJK")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join("filters/machine_text/mgt_zh_formal.bin"));
    let cjk_line = if model_cjk.as_os_str().is_empty() {
        String::new()
    } else {
        format!("model_cjk = {:?}\n", model_cjk.to_str().unwrap())
    };
    let toml = format!(
        "model = {:?}\n{cjk_line}phrases = [\"indicating_zh.txt\", \"indicating_en.txt\"]\n",
        model.to_str().unwrap()
    );
    let cfg: MachineTextConfig = toml::from_str(&toml).unwrap();
    let cx = BuildContext {
        config_dir: repo().join("filters/machine_text"),
    };
    MachineText::new(cfg, &cx).unwrap()
}

/// One labelled evaluation set: (text, is_machine).
struct EvalSet {
    name: &'static str,
    rows: Vec<(String, bool)>,
}

fn read_json(path: PathBuf) -> Value {
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn read_jsonl(path: PathBuf) -> Vec<Value> {
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The assistant turns of a `{conversations: [{from, value}]}` record, joined as the stage joins them.
fn gpt_turns(v: &Value) -> String {
    v["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["from"] == "gpt")
        .filter_map(|t| t["value"].as_str())
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// The held-out evaluation sets, none of whose sources is in build_train.py's pool.
fn eval_sets(data: &std::path::Path) -> Vec<EvalSet> {
    let mut sets = Vec::new();
    // AGT-2025 (Chinese): M4GT human texts vs GPT-4.5 / DeepSeek-R1 rewrites of them. Fold A
    // (even ids: a human text and its rewrites share one) is in the training pool; fold B
    // (odd ids) is held out whole, topics included. `MGT_AGT_HELD_OUT_PARITY=0` evaluates the
    // even ids instead (for a model built with `AGT_TRAIN_PARITY=1`, the two-fold check in docs/benchmarks/machine_text.md).
    let held_out_parity: u64 = std::env::var("MGT_AGT_HELD_OUT_PARITY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let fold_b = |id: &Value| {
        let id = id
            .as_f64()
            .or_else(|| id.as_str().and_then(|s| s.parse().ok()))
            .unwrap();
        id as u64 % 2 == held_out_parity
    };
    let human: Vec<(String, bool)> = read_json(data.join("agt2025_zh_mgt/m4gt_human.json"))
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| fold_b(&r["id"]))
        .filter_map(|r| r["text"].as_str().map(|t| (t.to_string(), false)))
        .collect();
    let machine = read_jsonl(data.join("agt2025_zh_mgt/m4gt_machine_gpt4.5_dsr1.jsonl"));
    for (name, model) in [
        ("AGT-2025 zh fold B: M4GT human vs GPT-4.5", Some("GPT4.5")),
        ("AGT-2025 zh fold B: M4GT human vs DeepSeek-R1", Some("DS.R1")),
        ("AGT-2025 zh fold B: M4GT human vs both", None),
    ] {
        let mut rows = human.clone();
        rows.extend(
            machine
                .iter()
                .filter(|r| fold_b(&r["id"]) && model.is_none_or(|m| r["model"] == m))
                .filter_map(|r| r["text"].as_str())
                .filter(|t| !t.trim().is_empty())
                .map(|t| (t.to_string(), true)),
        );
        sets.push(EvalSet { name, rows });
    }
    // The human texts are cut mid-sentence, the machine texts end cleanly: cutting both
    // to their first 100 characters shows the score does not live on that artifact.
    let cut: Vec<(String, bool)> = sets
        .last()
        .unwrap()
        .rows
        .iter()
        .map(|(t, l)| (t.chars().take(100).collect(), *l))
        .collect();
    sets.push(EvalSet {
        name: "AGT-2025 zh fold B, both: first 100 characters only",
        rows: cut,
    });
    // Same-register pair: doctors' answers vs ChatGPT answers in ShareGPT-zh.
    let mut rows: Vec<(String, bool)> =
        read_jsonl(data.join("medicalgpt_zh_sft_samples/medical_sft_1K_format.jsonl"))
            .iter()
            .map(|r| (gpt_turns(r), false))
            .collect();
    rows.extend(
        read_jsonl(data.join("medicalgpt_zh_sft_samples/sharegpt_zh_1K_format.jsonl"))
            .iter()
            .map(|r| (gpt_turns(r), true)),
    );
    rows.retain(|(t, _)| !t.trim().is_empty());
    sets.push(EvalSet {
        name: "MedicalGPT zh: doctors' answers vs ShareGPT ChatGPT turns",
        rows,
    });
    // Human web articles and forum posts (gold main text): false positives only.
    let mut rows = Vec::new();
    for kind in ["article", "forum"] {
        let gt = read_json(data.join(format!("magic_html_zh_benchmark/{kind}/ground_truth.json")));
        let mut pages: Vec<(&String, &Value)> = gt.as_object().unwrap().iter().collect();
        pages.sort_by_key(|(k, _)| k.as_str());
        for (_, v) in pages {
            if let Some(t) = v["content"].as_str() {
                rows.push((t.to_string(), false));
            }
        }
    }
    sets.push(EvalSet {
        name: "magic-html zh: web pages' gold text (human only)",
        rows,
    });
    sets.extend(formal_prose_sets(data, &fold_b));
    // English, generators not in training (training had GPT-J / NeoX continuations).
    for (name, gen) in [
        ("Fast-DetectGPT en: human vs davinci", "davinci"),
        ("Fast-DetectGPT en: human vs GPT-3.5-turbo", "gpt-3.5-turbo"),
        ("Fast-DetectGPT en: human vs GPT-4", "gpt-4"),
    ] {
        let mut rows = Vec::new();
        for domain in ["xsum", "writing", "pubmed"] {
            let d = read_json(data.join(format!(
                "fast_detect_gpt_mgt_en/gpt3to4/{domain}_{gen}.raw_data.json"
            )));
            for (key, label) in [("original", false), ("sampled", true)] {
                for t in d[key].as_array().unwrap() {
                    rows.push((t.as_str().unwrap().to_string(), label));
                }
            }
        }
        sets.push(EvalSet { name, rows });
    }
    sets
}

/// An AGT answer in an impersonal register, as `build_eval.py`'s FORMAL says: no first or
/// second person, no modal particles, no `!`/`?`, no trailing dots, >= 50 Chinese characters.
fn formal_register(text: &str) -> bool {
    const INFORMAL: &[char] = &[
        '我', '你', '您', '咱', '俺', '吧', '啊', '呢', '哦', '呀', '嘛', '啦', '哈', '噢', '呗', '~', '～',
        '！', '？', '!', '?', '…',
    ];
    !text.contains(INFORMAL)
        && !text.contains("。。")
        && !text.contains("...")
        && text
            .chars()
            .filter(|c| ('\u{4e00}'..='\u{9fff}').contains(c))
            .count()
            >= 50
}

/// Formal human prose, false positives only (issue 18): AGT fold B answers in an impersonal
/// register, C-Eval's dev explanations (drafted with GPT-4, revised by people: shown for
/// information) and, when Debian's package is installed, the Debian Edu manual in Chinese,
/// the book `filters/machine_text/formal_prose.py` leaves out of training whole.
fn formal_prose_sets(data: &std::path::Path, fold_b: &dyn Fn(&Value) -> bool) -> Vec<EvalSet> {
    let mut sets = Vec::new();
    let rows = read_json(data.join("agt2025_zh_mgt/m4gt_human.json"))
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| fold_b(&r["id"]))
        .filter_map(|r| r["text"].as_str())
        .filter(|t| formal_register(t))
        .map(|t| (t.to_string(), false))
        .collect();
    sets.push(EvalSet {
        name: "formal: AGT-2025 zh fold B human answers, impersonal register",
        rows,
    });
    let mut rows = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(data.join("ceval/dev"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let table = curate::io::csv::parse_csv(&std::fs::read_to_string(&f).unwrap());
        let col = table[0].iter().position(|h| h == "explanation").unwrap();
        for rec in &table[1..] {
            let t = &rec[col];
            if t.trim().chars().count() >= 20 {
                rows.push((t.clone(), false));
            }
        }
    }
    sets.push(EvalSet {
        name: "C-Eval dev explanations (GPT-4 drafts revised by people; information only)",
        rows,
    });
    let edu = PathBuf::from("/usr/share/doc/debian-edu-doc-zh-cn/debian-edu-bookworm-manual.html");
    if edu.is_file() {
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg("import sys, json; sys.path.insert(0, sys.argv[1]); import formal_prose as f; print(json.dumps([c for _, c in f.chunks('debian_edu_manual')]))")
            .arg(repo().join("filters/machine_text"))
            .output()
            .unwrap();
        let chunks: Vec<String> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        assert!(
            !chunks.is_empty(),
            "no chunks from the Debian Edu manual: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        sets.push(EvalSet {
            name: "formal: Debian Edu manual zh (book left out of training)",
            rows: chunks.into_iter().map(|t| (t, false)).collect(),
        });
    } else {
        eprintln!("note: {} is not installed (apt-get install debian-edu-doc-zh-cn); its formal-prose row is skipped", edu.display());
    }
    sets
}

/// Area under the ROC curve (Mann-Whitney U with average ranks for ties); `None` with one class.
fn auroc(scored: &[(f64, bool)]) -> Option<f64> {
    let mut v: Vec<(f64, bool)> = scored.to_vec();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut rank_sum, mut i) = (0.0, 0);
    while i < v.len() {
        let mut j = i;
        while j < v.len() && v[j].0 == v[i].0 {
            j += 1;
        }
        let avg = (i + j + 1) as f64 / 2.0; // 1-based ranks i+1..=j
        rank_sum += avg * v[i..j].iter().filter(|x| x.1).count() as f64;
        i = j;
    }
    let pos = v.iter().filter(|x| x.1).count() as f64;
    let neg = v.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return None;
    }
    Some((rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg))
}

struct Row {
    name: &'static str,
    n_human: usize,
    n_machine: usize,
    auc_model: Option<f64>,
    auc_signals: Option<f64>,
    auc_combined: Option<f64>,
    precision: f64,
    recall: f64,
    fpr: f64,
}

fn fmt(x: Option<f64>) -> String {
    x.map_or("-".into(), |x| format!("{x:.3}"))
}

#[test]
fn held_out_evaluation() {
    let data = curate::shared_data_dir();
    if !data.join("agt2025_zh_mgt/m4gt_human.json").is_file() {
        eprintln!(
            "note: {} has no agt2025_zh_mgt; skipping the machine-text evaluation (set CURATE_SHARED_DATA)",
            data.display()
        );
        return;
    }
    let stage = stage();
    let mut table = Vec::new();
    for set in eval_sets(&data) {
        let (mut s_model, mut s_signals, mut s_comb) = (Vec::new(), Vec::new(), Vec::new());
        for (text, label) in &set.rows {
            let (s, p) = (stage.signals(text), stage.model_prob(text));
            s_model.push((p.map_or(0.5, f64::from), *label));
            s_signals.push((stage.combine(&s, None), *label));
            s_comb.push((stage.combine(&s, p), *label));
        }
        let flagged = |want: bool| {
            s_comb
                .iter()
                .filter(|(s, l)| *s >= THRESHOLD && *l == want)
                .count()
        };
        let (tp, fp) = (flagged(true), flagged(false));
        let n_machine = set.rows.iter().filter(|r| r.1).count();
        let n_human = set.rows.len() - n_machine;
        table.push(Row {
            name: set.name,
            n_human,
            n_machine,
            auc_model: auroc(&s_model),
            auc_signals: auroc(&s_signals),
            auc_combined: auroc(&s_comb),
            precision: if tp + fp == 0 {
                0.0
            } else {
                tp as f64 / (tp + fp) as f64
            },
            recall: if n_machine == 0 {
                0.0
            } else {
                tp as f64 / n_machine as f64
            },
            fpr: if n_human == 0 {
                0.0
            } else {
                fp as f64 / n_human as f64
            },
        });
    }
    println!("\nheld-out evaluation, threshold {THRESHOLD} (P, R and FPR of the combined score)");
    println!("| eval set | human | machine | AUROC model | AUROC signals | AUROC combined | P | R | FPR |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &table {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.3} |",
            r.name,
            r.n_human,
            r.n_machine,
            fmt(r.auc_model),
            fmt(r.auc_signals),
            fmt(r.auc_combined),
            if r.n_machine > 0 {
                format!("{:.3}", r.precision)
            } else {
                "-".into()
            },
            if r.n_machine > 0 {
                format!("{:.3}", r.recall)
            } else {
                "-".into()
            },
            r.fpr
        );
    }
    // Guards against regressions of the shipped models (mgt_zh_formal.bin for mostly-CJK
    // text, mgt_char.bin for the rest; measured with mgt_zh_formal alone: AGT fold B 0.931,
    // its first 100 characters 0.920, GPT-4.5 alone 0.908, MedicalGPT 0.960; English by
    // mgt_char.bin: GPT-4 en 0.933).
    let row = |name: &str| table.iter().find(|r| r.name == name).unwrap();
    let auc = |name: &str| row(name).auc_combined.unwrap();
    assert!(auc("AGT-2025 zh fold B: M4GT human vs both") >= 0.92);
    assert!(auc("AGT-2025 zh fold B, both: first 100 characters only") >= 0.91);
    assert!(auc("AGT-2025 zh fold B: M4GT human vs GPT-4.5") >= 0.89);
    assert!(auc("MedicalGPT zh: doctors' answers vs ShareGPT ChatGPT turns") >= 0.95);
    assert!(auc("Fast-DetectGPT en: human vs GPT-4") >= 0.90);
    // Formal human prose flagged at the default threshold (issue 18; measured 4/42 AGT
    // answers in an impersonal register, 0/35 Debian Edu manual chunks, 9/81 magic-html
    // pages; the model before formal books flagged 0.119, 0.886 and 0.111).
    let fpr = |name: &str| row(name).fpr;
    assert!(fpr("formal: AGT-2025 zh fold B human answers, impersonal register") <= 0.10);
    assert!(fpr("magic-html zh: web pages' gold text (human only)") <= 0.12);
    if let Some(edu) = table
        .iter()
        .find(|r| r.name == "formal: Debian Edu manual zh (book left out of training)")
    {
        assert!(edu.fpr <= 0.06, "Debian Edu manual flagged: {:.3}", edu.fpr);
    }
}

/// The optional language-model signal (`lm_model`) on a subset of the held-out sets:
/// AUROC of its mean log-likelihood and Fast-DetectGPT discrepancy alone, of the shipped
/// model, and of both combined with a few `lm_weight`s. About a second per text on one
/// core, hence ignored by default: `scripts/fetch_models.sh && cargo test --release --test
/// machine_text lm_signal -- --ignored --nocapture` (`MGT_LM_MODEL` picks another model).
#[test]
#[ignore]
fn lm_signal_evaluation() {
    let data = curate::shared_data_dir();
    let lm = std::env::var("MGT_LM_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join("models/SmolLM2-135M-Instruct.Q4_1.gguf"));
    if !data.join("agt2025_zh_mgt/m4gt_human.json").is_file() || !lm.exists() {
        eprintln!("note: no shared data or no {}; skipping", lm.display());
        return;
    }
    let scorer = curate::lm_score::LmScorer::load(&lm, 128).unwrap();
    let stage = stage();
    let center = -3.0;
    println!(
        "\nLM signal ({}), first 128 tokens; every 3rd row of each set",
        lm.display()
    );
    println!(
        "| eval set | rows | log-likelihood | discrepancy | model | model + 1.0 x LL | model + 2.0 x LL |"
    );
    println!("|---|---|---|---|---|---|---|");
    for set in eval_sets(&data) {
        let wanted = set.name == "AGT-2025 zh fold B: M4GT human vs both" || set.name.ends_with("GPT-4");
        if !wanted {
            continue;
        }
        let (mut ll, mut disc, mut model, mut w1, mut w2) = (vec![], vec![], vec![], vec![], vec![]);
        for (text, label) in set.rows.iter().step_by(3) {
            let Some(s) = scorer.score(text).unwrap() else {
                continue;
            };
            let p = stage
                .model_prob(text)
                .map_or(0.5, f64::from)
                .clamp(1e-4, 1.0 - 1e-4);
            let logit = (p / (1.0 - p)).ln();
            ll.push((s.log_likelihood, *label));
            disc.push((s.discrepancy, *label));
            model.push((p, *label));
            w1.push((logit + (s.log_likelihood - center), *label));
            w2.push((logit + 2.0 * (s.log_likelihood - center), *label));
        }
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            set.name,
            ll.len(),
            fmt(auroc(&ll)),
            fmt(auroc(&disc)),
            fmt(auroc(&model)),
            fmt(auroc(&w1)),
            fmt(auroc(&w2))
        );
    }
}

/// The record's source line from ids like `alpaca_zh.jsonl:42`, or `sg-0026` (the
/// ShareGPT sample's own ids are its line numbers).
fn file_line(id: &str) -> Option<(String, u64)> {
    if let Some(n) = id.strip_prefix("sg-") {
        return Some(("sharegpt_zh.jsonl".into(), n.parse().ok()?));
    }
    let (file, line) = id.rsplit_once(':')?;
    let name = file.rsplit('/').next()?;
    Some((name.to_string(), line.parse().ok()?))
}

/// The shipped stage (model + phrase lists) over the bundled samples, tagging: every
/// labelled refusal / AI identity / loop / template record is flagged by its signal,
/// and the books balance. Runs without the shared data.
#[test]
fn stage_tags_the_labelled_machine_samples() {
    let tmp = tempfile::tempdir().unwrap();
    let filters = repo().join("filters/machine_text");
    let stage = format!(
        "[[stage]]\nkind = \"machine_text\"\nmodel = {:?}\nphrases = [{:?}, {:?}]\nthreshold = {THRESHOLD}\naction = \"tag\"\n",
        filters.join("mgt_char.bin").to_str().unwrap(),
        filters.join("indicating_zh.txt").to_str().unwrap(),
        filters.join("indicating_en.txt").to_str().unwrap(),
    );
    let input = repo().join("data-samples/sft");
    let out = tmp.path().join("out");
    let pipeline = write_pipeline(
        tmp.path(),
        &[&format!("{}/*.jsonl", input.display())],
        &stage,
        out.to_str().unwrap(),
        "",
    );
    run_ok(&["run", pipeline.to_str().unwrap(), "--quiet"]);
    let (kept, rejected) = check_books(&out);
    assert!(
        rejected.iter().all(|r| r["stage"] != "machine_text"),
        "tag keeps everything"
    );

    let labels: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("data-samples/labels.json")).unwrap())
            .unwrap();
    let tags_of = |file: &str, line: u64| -> Vec<String> {
        labels["files"][format!("sft/{file}")]["defects"][line.to_string()]
            .as_array()
            .map(|a| a.iter().filter_map(|t| t.as_str().map(String::from)).collect())
            .unwrap_or_default()
    };
    let (mut machine, mut machine_flagged, mut clean, mut clean_flagged) = (0, 0, 0, 0);
    for r in &kept {
        let Some((file, line)) = r["id"].as_str().and_then(file_line) else {
            continue;
        };
        let tags = tags_of(&file, line);
        let m = &r["meta"]["machine_text"];
        let flagged = m["flag"] == "machine_text";
        let sig = |k: &str| m["signals"][k].as_u64().unwrap_or(0);
        let has = |t: &str| tags.iter().any(|x| x == t);
        if has("ai_refusal") || has("ai_identity") {
            assert!(sig("refusal") >= 1, "{file}:{line} {tags:?}: {m}");
        }
        if has("repetition_loop") {
            assert!(sig("loop_tokens") > 0, "{file}:{line} {tags:?}: {m}");
        }
        if has("template_filler") {
            assert!(sig("template") >= 3, "{file}:{line} {tags:?}: {m}");
        }
        if has("machine") {
            machine += 1;
            machine_flagged += usize::from(flagged);
            assert!(flagged, "{file}:{line} {tags:?} not flagged: {m}");
        } else {
            clean += 1;
            clean_flagged += usize::from(flagged);
        }
    }
    println!(
        "data-samples/sft: {machine_flagged}/{machine} labelled machine records flagged, {clean_flagged}/{clean} other records flagged"
    );
    assert_eq!(machine, 18, "every labelled machine record is read");
}
