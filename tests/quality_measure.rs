//! How the `quality` defaults were chosen: the metric distributions on clean
//! text (Chinese instruction answers from alpaca_zh_hikariming and BELLE's eval
//! set in the shared data (`CURATE_SHARED_DATA`, else ../shared/data), and the hand-checked web gold texts in
//! data-samples/web/gold), and the same metrics on the planted repetition loops
//! of data-samples (`repetition_loop` in labels.json).
//!
//! Run `cargo test --test quality_measure -- --nocapture` to print the
//! percentiles (docs/benchmarks/quality.md comes from it). The shared sets are skipped
//! when the shared data is not there; the guards below then use the bundled
//! samples only.

use std::path::{Path, PathBuf};

use curate::stages::quality::{Metrics, QualityConfig};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shared data sets: `CURATE_SHARED_DATA`, else `../shared/data`.
fn shared() -> PathBuf {
    curate::shared_data_dir()
}

/// Outputs of every alpaca-style JSON list under `dir`.
fn alpaca_outputs(dir: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = ["translated", "supplementary"]
        .iter()
        .flat_map(|sub| {
            std::fs::read_dir(dir.join(sub))
                .map(|rd| rd.flatten().map(|e| e.path()).collect::<Vec<_>>())
                .unwrap_or_default()
        })
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        for r in v.as_array().into_iter().flatten() {
            if let Some(o) = r["output"].as_str() {
                if !o.trim().is_empty() {
                    out.push(o.to_string());
                }
            }
        }
    }
    out
}

fn belle_answers(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|s| {
            s.lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|v| v["std_answer"].as_str().map(str::to_string))
                .filter(|t| !t.trim().is_empty())
                .collect()
        })
        .unwrap_or_default()
}

fn gold_texts() -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("data-samples/web/gold"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// Response texts of the sample records labelled `repetition_loop`.
fn planted_loops() -> Vec<String> {
    let labels: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("data-samples/labels.json")).unwrap())
            .unwrap();
    let mut out = Vec::new();
    for (file, f) in labels["files"].as_object().unwrap() {
        if !file.starts_with("sft/") {
            continue;
        }
        let text = std::fs::read_to_string(repo().join("data-samples").join(file)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (line, tags) in f["defects"].as_object().unwrap() {
            if !tags.as_array().unwrap().iter().any(|t| t == "repetition_loop") {
                continue;
            }
            let v: serde_json::Value =
                serde_json::from_str(lines[line.parse::<usize>().unwrap() - 1]).unwrap();
            let resp = if let Some(o) = v["output"].as_str() {
                o.to_string()
            } else {
                v["conversations"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|t| t["from"] == "gpt")
                    .filter_map(|t| t["value"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n\n")
            };
            out.push(resp);
        }
    }
    out
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

type Getter = fn(&Metrics) -> Option<f64>;

const METRICS: &[(&str, Getter)] = &[
    ("dup_line_frac", |m| Some(m.dup_line_frac)),
    ("dup_para_frac", |m| Some(m.dup_para_frac)),
    ("top_ngram_frac", |m| m.top_ngram_frac),
    ("dup_ngram_frac", |m| m.dup_ngram_frac),
    ("symbol_ratio", |m| Some(m.symbol_ratio)),
    ("punct_end_frac", |m| Some(m.punct_end_frac)),
    ("cjk_ratio", |m| Some(m.cjk_ratio)),
    ("mojibake", |m| Some(m.mojibake as f64)),
];

fn report(name: &str, texts: &[String], cfg: &QualityConfig) -> (usize, usize) {
    let ms: Vec<Metrics> = texts.iter().map(|t| Metrics::compute(t, cfg)).collect();
    println!("\n## {name}: {} texts", ms.len());
    println!("| metric | n | p1 | p50 | p90 | p99 | p99.5 | max |");
    for (metric, get) in METRICS {
        let mut v: Vec<f64> = ms.iter().filter_map(get).collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "| {metric} | {} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} |",
            v.len(),
            pct(&v, 0.01),
            pct(&v, 0.5),
            pct(&v, 0.9),
            pct(&v, 0.99),
            pct(&v, 0.995),
            v.last().copied().unwrap_or(f64::NAN)
        );
    }
    let mut by_reason = std::collections::BTreeMap::new();
    let mut failed = 0;
    for m in &ms {
        if let Some((r, _)) = m.failure(cfg) {
            failed += 1;
            *by_reason.entry(r).or_insert(0usize) += 1;
        }
    }
    println!(
        "dropped by the defaults: {failed} / {} ({:.2}%) {by_reason:?}",
        ms.len(),
        100.0 * failed as f64 / ms.len().max(1) as f64
    );
    (failed, ms.len())
}

#[test]
fn quality_defaults_keep_clean_text_and_catch_planted_loops() {
    let cfg = QualityConfig::default();
    let shared = &shared();
    let mut clean_failed = 0;
    let mut clean_total = 0;
    if shared.join("alpaca_zh_hikariming").exists() {
        let (f, n) = report(
            "alpaca_zh_hikariming outputs",
            &alpaca_outputs(&shared.join("alpaca_zh_hikariming")),
            &cfg,
        );
        clean_failed += f;
        clean_total += n;
        assert!(f as f64 <= 0.01 * n as f64, "alpaca_zh: {f} of {n} dropped");
    } else {
        eprintln!("skipping alpaca_zh_hikariming: not under {}", shared.display());
    }
    if shared.join("belle_zh_eval/eval_set.json").exists() {
        let (f, n) = report(
            "belle_zh_eval std_answer",
            &belle_answers(&shared.join("belle_zh_eval/eval_set.json")),
            &cfg,
        );
        clean_failed += f;
        clean_total += n;
        assert!(f as f64 <= 0.01 * n as f64, "belle: {f} of {n} dropped");
    } else {
        eprintln!("skipping belle_zh_eval: not under {}", shared.display());
    }
    let (f, n) = report("data-samples web gold", &gold_texts(), &cfg);
    assert_eq!(f, 0, "web gold texts are clean");
    clean_failed += f;
    clean_total += n;
    println!("\nclean overall: {clean_failed} / {clean_total} dropped");
    let loops = planted_loops();
    let (f, n) = report("planted repetition loops", &loops, &cfg);
    assert!(n >= 4, "{n} loops");
    assert_eq!(f, n, "every planted repetition loop fails a default check");
}
