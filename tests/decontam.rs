//! Decontamination evaluated on a labelled set built from the real benchmarks.
//!
//! Positives: C-Eval dev/val, CMMLU test and MMLU test items mixed into clean
//! instruction data (Alpaca EN, Alpaca ZH) in six ways: verbatim, reformatted
//! (re-lettered and full-width options), embedded in a longer prompt, question
//! without options, light edits (a few characters changed) and question with the
//! answer text. Hard negatives: exam questions on the same subjects that are not
//! in the index (MMLU pre-release val, CMMLU dev: CMMLU is indexed from `test/`).
//! Clean: every Alpaca record used, unchanged. Needs `../shared/data` (or
//! `CURATE_SHARED_DATA`); without it the test prints a note and passes.
//!
//! `CURATE_DECONTAM_SWEEP=1` also prints recall / false positives for other
//! character n-gram sizes (how `ngram_zh` was chosen).

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::time::Instant;

use curate::decontam::{build_index, BenchFormat, BenchItem, BenchmarkSpec, Index, MatchConfig};

fn shared() -> Option<PathBuf> {
    let p = curate::shared_data_dir();
    if p.join("mmlu").is_dir() && p.join("ceval").is_dir() && p.join("cmmlu").is_dir() {
        Some(p)
    } else {
        eprintln!(
            "note: {} has no mmlu/ceval/cmmlu; decontamination eval skipped",
            p.display()
        );
        None
    }
}

fn specs(d: &Path) -> Vec<BenchmarkSpec> {
    vec![
        BenchmarkSpec {
            name: "mmlu".into(),
            format: BenchFormat::Mmlu,
            path: d.join("mmlu/final"),
        },
        BenchmarkSpec {
            name: "ceval".into(),
            format: BenchFormat::Ceval,
            path: d.join("ceval"),
        },
        BenchmarkSpec {
            name: "cmmlu".into(),
            format: BenchFormat::Cmmlu,
            path: d.join("cmmlu/test"),
        },
    ]
}

fn alpaca(path: &Path) -> Vec<String> {
    let v: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v.into_iter()
        .map(|m| {
            ["instruction", "input", "output"]
                .iter()
                .filter_map(|k| m.get(*k).and_then(|x| x.as_str()).filter(|s| !s.is_empty()))
                .collect::<Vec<_>>()
                .join("\n\n")
        })
        .collect()
}

const KINDS: &[&str] = &[
    "verbatim",
    "reformatted",
    "embedded",
    "question_only",
    "light_edit",
    "question_answer",
];

fn is_zh(s: &str) -> bool {
    s.chars()
        .filter(|c| ('\u{4e00}'..='\u{9fff}').contains(c))
        .count()
        * 3
        > s.chars().count()
}

fn with_options(it: &BenchItem, labels: &[&str], sep: &str) -> String {
    let mut s = it.question.clone();
    for (l, o) in labels.iter().zip(&it.options) {
        s.push_str(sep);
        s.push_str(l);
        s.push_str(o);
    }
    s
}

/// A few characters changed: Chinese, 2 characters replaced (1 if the question is
/// under 12 characters); English, one letter changed in 2 words.
fn light_edit(q: &str, zh: bool) -> String {
    let chars: Vec<char> = q.chars().collect();
    if zh {
        let cjk: Vec<usize> = (0..chars.len())
            .filter(|&i| ('\u{4e00}'..='\u{9fff}').contains(&chars[i]))
            .collect();
        let mut out = chars.clone();
        let picks: &[f64] = if cjk.len() >= 12 { &[0.3, 0.7] } else { &[0.5] };
        for f in picks {
            if let Some(&i) = cjk.get((cjk.len() as f64 * f) as usize) {
                out[i] = if out[i] == '某' { '甲' } else { '某' };
            }
        }
        out.into_iter().collect()
    } else {
        let mut words: Vec<String> = q.split(' ').map(String::from).collect();
        let n = words.len();
        for f in [0.3, 0.7] {
            let i = ((n as f64 * f) as usize).min(n.saturating_sub(1));
            let w = &mut words[i];
            if let Some(c) = w.pop() {
                w.push(if c == 'x' { 'y' } else { 'x' });
            }
        }
        words.join(" ")
    }
}

fn answer_text(it: &BenchItem) -> String {
    let k = match it.answer.as_deref() {
        Some("B") => 1,
        Some("C") => 2,
        Some("D") => 3,
        _ => 0,
    };
    it.options.get(k).cloned().unwrap_or_default()
}

/// The record text for one positive of `kind`; `ctx` is a clean record to mix with.
fn positive(it: &BenchItem, kind: &str, ctx: &str) -> String {
    let zh = is_zh(&it.question);
    match kind {
        "verbatim" => format!(
            "{}\n\n{}",
            with_options(it, &["A. ", "B. ", "C. ", "D. "], "\n"),
            if zh { "答案：" } else { "Answer:" }
        ),
        "reformatted" => {
            if zh {
                with_options(it, &["①", "②", "③", "④"], "　")
                    .replace("A", "Ａ")
                    .replace("，", ",")
            } else {
                format!(
                    "Question: {}\nOptions: {}",
                    it.question,
                    it.options
                        .iter()
                        .zip(["(i)", "(ii)", "(iii)", "(iv)"])
                        .map(|(o, l)| format!("{l} {o}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            }
        }
        "embedded" => {
            let head: String = ctx.chars().take(300).collect();
            if zh {
                format!(
                    "{head}\n\n另外，复习资料里有这样一道题：{} 请给出答案并说明理由，谢谢！",
                    with_options(it, &["A.", "B.", "C.", "D."], " ")
                )
            } else {
                format!("{head}\n\nAlso, my homework has this question: {} Please explain the answer step by step.", with_options(it, &["A) ", "B) ", "C) ", "D) "], " "))
            }
        }
        "question_only" => format!("{}\n\n{ctx}", it.question),
        "light_edit" => with_options(
            &BenchItem {
                question: light_edit(&it.question, zh),
                ..it.clone()
            },
            &["A. ", "B. ", "C. ", "D. "],
            "\n",
        ),
        "question_answer" => {
            if zh {
                format!("{}\n\n答案是{}。", it.question, answer_text(it))
            } else {
                format!("{}\n\nThe answer is {}.", it.question, answer_text(it))
            }
        }
        _ => unreachable!(),
    }
}

fn negative(it: &BenchItem) -> String {
    format!(
        "{}\n\n{}",
        with_options(it, &["A. ", "B. ", "C. ", "D. "], "\n"),
        answer_text(it)
    )
}

struct Eval {
    /// (benchmark, kind) -> (found, total)
    recall: Vec<(String, String, usize, usize)>,
    fp_clean: usize,
    clean: usize,
    fp_hard: usize,
    hard: usize,
    /// Texts where the fast scan and the plain one (`Index::scan_reference`) differ.
    disagree: usize,
}

/// Scan `text`, and count it in `disagree` when the plain scan finds otherwise.
fn scan_checked(ix: &Index, text: &str, disagree: &std::cell::Cell<usize>) -> Vec<curate::decontam::Hit> {
    let hits = ix.scan(text);
    if hits != ix.scan_reference(text) {
        disagree.set(disagree.get() + 1);
    }
    hits
}

fn evaluate(ix: &Index, d: &Path, clean: &[String], sample_every: usize) -> Eval {
    let disagree = std::cell::Cell::new(0);
    let mut recall = Vec::new();
    let mut pos_sets: Vec<(&str, Vec<usize>)> = Vec::new();
    for b in ["ceval", "cmmlu", "mmlu"] {
        let ids: Vec<usize> = (0..ix.items.len())
            .filter(|&i| {
                let it = &ix.items[i];
                it.benchmark == b && (b != "ceval" || it.split != "test") && ix.grams[i].f > 0
            })
            .step_by(sample_every)
            .collect();
        pos_sets.push((b, ids));
    }
    for (b, ids) in &pos_sets {
        for kind in KINDS {
            let mut found = 0;
            for (k, &i) in ids.iter().enumerate() {
                let it = &ix.items[i];
                let text = positive(it, kind, &clean[(k * 7919) % clean.len()]);
                if scan_checked(ix, &text, &disagree)
                    .iter()
                    .any(|h| h.item as usize == i)
                {
                    found += 1;
                }
            }
            recall.push((b.to_string(), kind.to_string(), found, ids.len()));
        }
    }
    let verbose = std::env::var_os("CURATE_DECONTAM_VERBOSE").is_some();
    let fp_clean = clean
        .iter()
        .filter(|t| {
            let hits = scan_checked(ix, t, &disagree);
            if !hits.is_empty() && verbose {
                let m = &ix.items[hits[0].item as usize];
                let short: String = t.chars().take(300).collect();
                eprintln!(
                    "clean hit: {} {:.2} | {} | {:?} || {}",
                    m.benchmark,
                    hits[0].overlap,
                    m.question,
                    m.options,
                    short.replace('\n', " ")
                );
            }
            !hits.is_empty()
        })
        .count();
    let mut hard_items = curate::decontam::loaders::load(&BenchmarkSpec {
        name: "mmlu_val".into(),
        format: BenchFormat::Mmlu,
        path: d.join("mmlu/prerelease_2020-09-08/val"),
    })
    .unwrap();
    hard_items.extend(
        curate::decontam::loaders::load(&BenchmarkSpec {
            name: "cmmlu_dev".into(),
            format: BenchFormat::Cmmlu,
            path: d.join("cmmlu/dev"),
        })
        .unwrap(),
    );
    let fp_hard = hard_items
        .iter()
        .filter(|it| {
            let hits = scan_checked(ix, &negative(it), &disagree);
            if !hits.is_empty() && std::env::var_os("CURATE_DECONTAM_VERBOSE").is_some() {
                let m = &ix.items[hits[0].item as usize];
                eprintln!(
                    "hard negative hit: {} | {} {:.2} | {}",
                    it.question, m.benchmark, hits[0].overlap, m.question
                );
            }
            !hits.is_empty()
        })
        .count();
    Eval {
        recall,
        fp_clean,
        clean: clean.len(),
        fp_hard,
        hard: hard_items.len(),
        disagree: disagree.get(),
    }
}

fn kind_recall(e: &Eval, kind: &str) -> (usize, usize) {
    e.recall
        .iter()
        .filter(|r| r.1 == kind)
        .fold((0, 0), |a, r| (a.0 + r.2, a.1 + r.3))
}

fn print_table(e: &Eval, title: &str) {
    println!("\n{title}");
    println!("| kind | ceval | cmmlu | mmlu | all |");
    println!("|---|---|---|---|---|");
    for kind in KINDS {
        let cell = |b: &str| {
            let r = e.recall.iter().find(|r| r.0 == b && r.1 == *kind).unwrap();
            format!("{:.3} ({}/{})", r.2 as f64 / r.3.max(1) as f64, r.2, r.3)
        };
        let (f, t) = kind_recall(e, kind);
        println!(
            "| {kind} | {} | {} | {} | {:.3} |",
            cell("ceval"),
            cell("cmmlu"),
            cell("mmlu"),
            f as f64 / t.max(1) as f64
        );
    }
    println!(
        "false positives: clean {}/{} ({:.3}%), hard negatives {}/{} ({:.2}%)",
        e.fp_clean,
        e.clean,
        100.0 * e.fp_clean as f64 / e.clean as f64,
        e.fp_hard,
        e.hard,
        100.0 * e.fp_hard as f64 / e.hard as f64
    );
}

#[test]
fn recall_and_false_positives_on_real_benchmarks() {
    let Some(d) = shared() else { return };
    let mut clean = alpaca(&d.join("alpaca_en/alpaca_data.json"));
    clean.truncate(20_000);
    let mut zh: Vec<PathBuf> = std::fs::read_dir(d.join("alpaca_zh_hikariming/translated"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    zh.sort();
    for p in zh {
        clean.extend(alpaca(&p));
    }
    let t = Instant::now();
    let ix = build_index(&specs(&d), MatchConfig::default()).unwrap();
    println!(
        "index: {} items, {} n-grams, {} common dropped, {} unmatchable, built in {:.2} s (debug build)",
        ix.items.len(),
        ix.len(),
        ix.common,
        ix.unmatchable(),
        t.elapsed().as_secs_f64()
    );
    let e = evaluate(&ix, &d, &clean, 10);
    print_table(&e, "default config (ngram_zh 8, ngram_en 13, threshold 0.35)");
    println!("fast scan vs plain scan: {} texts differ", e.disagree);
    // CURATE_DECONTAM_SWEEP="ZH:EN:THRESHOLD,..." also scores other settings.
    if let Ok(sweep) = std::env::var("CURATE_DECONTAM_SWEEP") {
        for c in sweep.split(',').filter(|c| !c.is_empty()) {
            let v: Vec<&str> = c.split(':').collect();
            let cfg = MatchConfig {
                ngram_zh: v[0].parse().unwrap(),
                ngram_en: v[1].parse().unwrap(),
                threshold: v[2].parse().unwrap(),
                ..MatchConfig::default()
            };
            let ix = build_index(&specs(&d), cfg).unwrap();
            let e = evaluate(&ix, &d, &clean, 10);
            print_table(
                &e,
                &format!("ngram_zh {}, ngram_en {}, threshold {}", v[0], v[1], v[2]),
            );
        }
    }
    // The targets: recall >= 0.98 on verbatim, reformatted and embedded
    // copies, >= 0.90 on light edits; false positives on clean data <= 0.1%.
    for (kind, target) in [
        ("verbatim", 0.98),
        ("reformatted", 0.98),
        ("embedded", 0.98),
        ("light_edit", 0.90),
    ] {
        let (f, t) = kind_recall(&e, kind);
        assert!(
            f as f64 >= target * t as f64,
            "{kind}: recall {f}/{t} below {target}"
        );
    }
    assert_eq!(e.disagree, 0, "fast and plain scans disagree");
    assert!(
        e.fp_clean as f64 <= 0.001 * e.clean as f64,
        "false positives on clean data: {}/{}",
        e.fp_clean,
        e.clean
    );
}
#[test]
fn audit_on_samples_finds_the_planted_leaks() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("audit");
    let s = |p: &str| repo.join(p).to_string_lossy().to_string();
    let o = run_ok(&[
        "audit",
        "--bench",
        &format!("ceval={}", s("data-samples/exams/ceval")),
        "--bench",
        &format!("mmlu={}", s("data-samples/exams/mmlu")),
        "--output",
        out.to_str().unwrap(),
        &s("data-samples/sft/*.jsonl"),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("ceval") && stdout.contains("mmlu"), "{stdout}");
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("audit.json")).unwrap()).unwrap();
    assert_eq!(j["summary"]["contaminated"], 16, "{}", j["summary"]);
    assert_eq!(j["summary"]["benchmarks"]["ceval"]["records"], 10);
    assert_eq!(j["summary"]["benchmarks"]["mmlu"]["records"], 6);
    let recs = j["records"].as_array().unwrap();
    assert!(recs.iter().any(|r| r["source"] == "alpaca_zh.jsonl:56"
        && r["hits"][0]["row"] == 13
        && r["hits"][0]["subject"] == "computer_network"));
    let html = std::fs::read_to_string(out.join("audit.html")).unwrap();
    assert!(html.contains("<mark>") && html.contains("computer_network"));
}
