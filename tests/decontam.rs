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

// ---------------------------------------------------------------------------
// Held-aside evaluation through `curate run` (issue 19).
//
// Built deterministically from `../shared/data`. Subjects of each benchmark are
// split three ways by a hash of their name: a fifth are left out of the index
// (their items are clean exam-like hard negatives), the rest are indexed; both
// groups are split again into a tune half and a held half. Positives are items of
// indexed subjects written into records in one of the kinds below; negatives are
// ordinary SFT records (tune: Alpaca EN even rows + Alpaca ZH translated; held:
// Alpaca EN odd rows, Alpaca ZH supplementary, BELLE eval, LLaMA-Factory demos,
// MedicalGPT samples) and exam-like items of left-out subjects, verbatim or with
// the whole option set of an indexed item. Thresholds were chosen on the tune
// part; the held part's numbers are the ones quoted.
// `CURATE_DECONTAM_EVAL_PART=tune` prints the tune part instead (no assertions).
// ---------------------------------------------------------------------------

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Where a subject goes: `Some(true)` indexed, `Some(false)` left out; and its part.
fn subject_role(bench: &str, subject: &str) -> (bool, &'static str) {
    let h = fnv(&format!("{bench}/{subject}"));
    let indexed = !h.is_multiple_of(5);
    let part = if (h >> 8).is_multiple_of(2) {
        "tune"
    } else {
        "held"
    };
    (indexed, part)
}

const POS_KINDS: &[&str] = &[
    "verbatim",
    "relettered",
    "one_line",
    "shuffled_options",
    "question_only",
    "in_prompt",
    "light_edit",
    "reordered",
    "prerelease_edit",
];

const COMMON_ZH: &str = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联";

/// 2-5% of the letters / CJK characters changed (substituted, deleted, doubled or
/// swapped with the next), plus punctuation and whitespace changes.
fn noisy(s: &str, zh: bool, p: f64, rng: &mut Rng) -> String {
    let pool: Vec<char> = COMMON_ZH.chars().collect();
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let target = if zh {
            c > '\u{2e80}' && c.is_alphanumeric()
        } else {
            c.is_ascii_alphabetic()
        };
        if target && rng.unit() < p {
            match rng.below(4) {
                0 => out.push(if zh {
                    pool[rng.below(pool.len())]
                } else {
                    (b'a' + rng.below(26) as u8) as char
                }),
                1 => {}
                2 => {
                    out.push(c);
                    out.push(c);
                }
                _ => {
                    if let Some(&n) = chars.get(i + 1) {
                        out.push(n);
                        out.push(c);
                        i += 1;
                    } else {
                        out.push(c);
                    }
                }
            }
        } else if c == ' ' && rng.unit() < 0.04 {
            if rng.unit() < 0.5 {
                out.push_str("  ");
            }
        } else if matches!(c, ',' | '，' | '、' | ';' | '；') && rng.unit() < 0.4 {
            if rng.unit() < 0.5 {
                out.push(' ');
            }
        } else if c == '，' && rng.unit() < 0.3 {
            out.push_str(", ");
        } else if matches!(c, '?' | '？' | '。' | '.') && i + 1 == chars.len() && rng.unit() < 0.5 {
        } else {
            out.push(c);
        }
        i += 1;
    }
    out
}

/// Clauses moved around: the question cut at commas, semicolons and colons, the
/// first clause moved to the end (None when it has one clause).
fn reorder(q: &str, zh: bool) -> Option<String> {
    reorder_with(q, zh, |v| v.rotate_left(1))
}

/// [`reorder`] with the clauses put in the order `permute` leaves them in.
fn reorder_with(q: &str, zh: bool, permute: impl FnOnce(&mut Vec<String>)) -> Option<String> {
    let mut clauses: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut math = false;
    let chars: Vec<char> = q.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        math ^= c == '$';
        let cut = if zh {
            matches!(c, '，' | '；' | '：')
        } else {
            matches!(c, ',' | ';') && chars.get(i + 1) == Some(&' ')
        };
        if cut && !math {
            if cur.trim().chars().count() >= 3 {
                clauses.push(cur.trim().to_string());
                cur.clear();
            } else {
                cur.push(c);
            }
        } else {
            cur.push(c);
        }
    }
    if !cur.trim().is_empty() {
        clauses.push(cur.trim().to_string());
    }
    if clauses.len() < 2 {
        return None;
    }
    let end = |s: &str| {
        s.trim_end_matches(['?', '？', '。', '.', '_', '（', '）', '(', ')', ' '])
            .to_string()
    };
    let mut v: Vec<String> = clauses.iter().map(|c| end(c)).collect();
    permute(&mut v);
    Some(if zh {
        format!("{}？", v.join("，"))
    } else {
        format!("{}?", v.join(", "))
    })
}

fn lettered(q: &str, opts: &[String], labels: &[&str], sep: &str) -> String {
    let mut s = q.to_string();
    for (l, o) in labels.iter().zip(opts) {
        s.push_str(sep);
        s.push_str(l);
        s.push_str(o);
    }
    s
}

/// The record text of `kind` for `it` (None when the kind does not apply).
fn eval_positive(it: &BenchItem, kind: &str, ctx: &str, rng: &mut Rng) -> Option<String> {
    let zh = is_zh(&it.question);
    let abcd = ["A. ", "B. ", "C. ", "D. "];
    let ans = if zh { "答案：" } else { "Answer:" };
    Some(match kind {
        "verbatim" => format!("{}\n{ans}", lettered(&it.question, &it.options, &abcd, "\n")),
        "relettered" => {
            let l: &[&str] = if zh {
                &["①", "②", "③", "④"]
            } else {
                &["(i) ", "(ii) ", "(iii) ", "(iv) "]
            };
            lettered(&it.question, &it.options, l, "\n")
        }
        "one_line" => lettered(&it.question, &it.options, &["A.", "B.", "C.", "D."], " "),
        "shuffled_options" => {
            let mut o = it.options.clone();
            let r = 1 + rng.below(3);
            o.rotate_left(r);
            o.swap(0, 3);
            lettered(&it.question, &o, &abcd, "\n")
        }
        "question_only" => format!("{}\n\n{ctx}", it.question),
        "in_prompt" => {
            let head: String = ctx.chars().take(300).collect();
            if zh {
                format!(
                    "{head}\n\n另外，复习资料里有这样一道题：{} 请给出答案并说明理由。",
                    lettered(&it.question, &it.options, &abcd, " ")
                )
            } else {
                format!(
                    "{head}\n\nAlso, my homework has this question: {} Please explain.",
                    lettered(&it.question, &it.options, &abcd, " ")
                )
            }
        }
        "light_edit" => {
            let p = 0.02 + 0.03 * rng.unit();
            let q = noisy(&it.question, zh, p, rng);
            let o: Vec<String> = it.options.iter().map(|o| noisy(o, zh, p, rng)).collect();
            lettered(&q, &o, &abcd, "\n")
        }
        "reordered" => {
            let q = reorder(&it.question, zh)?;
            let mut o = it.options.clone();
            o.reverse();
            lettered(&q, &o, &abcd, "\n")
        }
        _ => return None,
    })
}

/// Every string in a JSON value, joined (an ordinary SFT record's text).
fn json_text(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) if !s.is_empty() => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| json_text(x, out)),
        serde_json::Value::Object(m) => m
            .iter()
            .filter(|(k, _)| *k != "id")
            .for_each(|(_, x)| json_text(x, out)),
        _ => {}
    }
}

/// Records of a JSON array file or a JSONL file.
fn sft_records(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let values: Vec<serde_json::Value> = if text.trim_start().starts_with('[') {
        serde_json::from_str(&text).unwrap()
    } else {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    values
        .iter()
        .map(|v| {
            let mut parts = Vec::new();
            json_text(v, &mut parts);
            parts.join("\n\n")
        })
        .filter(|t| !t.is_empty())
        .collect()
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

/// Normalized token hashes of a text.
fn tokens_of(s: &str) -> Vec<u64> {
    curate::decontam::normalize::tokenize(s)
        .1
        .iter()
        .map(|t| t.hash)
        .collect()
}

/// Keys for finding copy candidates: every token and every pair of adjacent
/// tokens of the question and of each option (a Chinese token is one character,
/// and even a rare question can be all common characters: its pairs are rare).
fn copy_keys(it: &BenchItem) -> std::collections::HashSet<u64> {
    let mut keys = std::collections::HashSet::new();
    for part in std::iter::once(&it.question).chain(&it.options) {
        let t = tokens_of(part);
        keys.extend(t.iter().copied());
        keys.extend(t.windows(2).map(|w| w[0].rotate_left(17) ^ w[1] ^ 0x5a5a));
    }
    keys
}

/// An oracle for copies among the indexed items, independent of the matcher:
/// the same question (10+ tokens), or question plus options sharing at least
/// half their distinct tokens (Jaccard) with one indexed item.
struct Copies {
    sets: Vec<(Vec<u64>, std::collections::HashSet<u64>)>,
    by_token: std::collections::HashMap<u64, Vec<u32>>,
}

impl Copies {
    fn new<'a>(items: impl Iterator<Item = &'a BenchItem>) -> Copies {
        let mut sets = Vec::new();
        let mut by_token: std::collections::HashMap<u64, Vec<u32>> = Default::default();
        for it in items {
            let q = tokens_of(&it.question);
            let mut all: std::collections::HashSet<u64> = q.iter().copied().collect();
            for o in &it.options {
                all.extend(tokens_of(o));
            }
            for t in copy_keys(it) {
                by_token.entry(t).or_default().push(sets.len() as u32);
            }
            sets.push((q, all));
        }
        Copies { sets, by_token }
    }

    fn is_copy(&self, it: &BenchItem) -> bool {
        let q = tokens_of(&it.question);
        let mut all: std::collections::HashSet<u64> = q.iter().copied().collect();
        for o in &it.options {
            all.extend(tokens_of(o));
        }
        // Candidates: items sharing a rare token or token pair (in at most 200 items).
        let mut shared: std::collections::HashMap<u32, usize> = Default::default();
        for t in &copy_keys(it) {
            if let Some(v) = self.by_token.get(t).filter(|v| v.len() <= 200) {
                for &i in v {
                    *shared.entry(i).or_default() += 1;
                }
            }
        }
        shared.keys().any(|&i| {
            let (oq, oall) = &self.sets[i as usize];
            let inter = all.intersection(oall).count();
            (q.len() >= 10 && *oq == q) || inter * 2 >= all.union(oall).count()
        })
    }
}

/// One labelled record: (id, text, part, group, kind, positive).
struct Labelled {
    id: String,
    text: String,
    part: &'static str,
    /// `zh` / `en` for positives and hard negatives, the source for ordinary records.
    group: String,
    kind: String,
    positive: bool,
}

/// Build the labelled set, and the index's benchmark files under `bench`.
fn build_eval_set(d: &Path, bench: &Path) -> Vec<Labelled> {
    // Index files: the indexed subjects' CSVs, copied.
    let copy = |src: &Path, dst: &Path, b: &str, subject_of: &dyn Fn(&str) -> String| {
        std::fs::create_dir_all(dst).unwrap();
        for f in files_in(src) {
            let name = f.file_name().unwrap().to_string_lossy().to_string();
            if subject_role(b, &subject_of(&name)).0 {
                std::fs::copy(&f, dst.join(&name)).unwrap();
            }
        }
    };
    let strip = |suffixes: &'static [&'static str]| {
        move |n: &str| {
            let s = n.trim_end_matches(".csv");
            suffixes
                .iter()
                .find_map(|x| s.strip_suffix(x))
                .unwrap_or(s)
                .to_string()
        }
    };
    copy(
        &d.join("mmlu/final/test"),
        &bench.join("mmlu/test"),
        "mmlu",
        &strip(&["_test"]),
    );
    for split in ["dev", "val", "test"] {
        copy(
            &d.join("ceval").join(split),
            &bench.join("ceval").join(split),
            "ceval",
            &strip(&["_dev", "_val", "_test"]),
        );
    }
    copy(
        &d.join("cmmlu/test"),
        &bench.join("cmmlu/test"),
        "cmmlu",
        &strip(&[]),
    );
    let load = |name: &str, format: BenchFormat, path: PathBuf| {
        curate::decontam::loaders::load(&BenchmarkSpec {
            name: name.into(),
            format,
            path,
        })
        .unwrap()
    };
    let mut all = load("mmlu", BenchFormat::Mmlu, d.join("mmlu/final/test"));
    all.extend(load("ceval", BenchFormat::Ceval, d.join("ceval")));
    all.extend(load("cmmlu", BenchFormat::Cmmlu, d.join("cmmlu/test")));

    // Ordinary records.
    let mut out: Vec<Labelled> = Vec::new();
    let mut ordinary: Vec<(&'static str, String, String)> = Vec::new();
    for (i, t) in sft_records(&d.join("alpaca_en/alpaca_data.json"))
        .into_iter()
        .enumerate()
    {
        ordinary.push((if i % 2 == 0 { "tune" } else { "held" }, "alpaca_en".into(), t));
    }
    for f in files_in(&d.join("alpaca_zh_hikariming/translated")) {
        for t in sft_records(&f) {
            ordinary.push(("tune", "alpaca_zh".into(), t));
        }
    }
    for f in files_in(&d.join("alpaca_zh_hikariming/supplementary")) {
        for t in sft_records(&f) {
            ordinary.push(("held", "alpaca_zh_supp".into(), t));
        }
    }
    for (src, f) in [
        ("belle", "belle_zh_eval/eval_set.json"),
        ("llamafactory", "llamafactory_demo/alpaca_en_demo.json"),
        ("llamafactory", "llamafactory_demo/alpaca_zh_demo.json"),
        (
            "medicalgpt",
            "medicalgpt_zh_sft_samples/sharegpt_zh_1K_format.jsonl",
        ),
        (
            "medicalgpt",
            "medicalgpt_zh_sft_samples/medical_sft_1K_format.jsonl",
        ),
    ] {
        for t in sft_records(&d.join(f)) {
            ordinary.push(("held", src.into(), t));
        }
    }
    let ctx_of = |part: &str, k: usize| -> &str {
        let pool: Vec<&(&str, String, String)> = ordinary.iter().filter(|o| o.0 == part).collect();
        &pool[(k * 7919) % pool.len()].2
    };
    let mut question_count: std::collections::HashMap<Vec<u64>, usize> = Default::default();
    for it in &all {
        *question_count.entry(tokens_of(&it.question)).or_default() += 1;
    }
    // Positives: every item of an indexed subject, sampled per benchmark and kind.
    let mut rng = Rng(19);
    let mut n = 0usize;
    for b in ["ceval", "cmmlu", "mmlu"] {
        for part in ["tune", "held"] {
            let pool: Vec<&BenchItem> = all
                .iter()
                .filter(|it| it.benchmark == b && subject_role(b, &it.subject) == (true, part))
                .collect();
            for kind in POS_KINDS.iter().filter(|k| **k != "prerelease_edit") {
                let want = 150usize;
                // Reordering needs two clauses: sample more densely.
                let dense = if *kind == "reordered" { 4 } else { 1 };
                let step = (pool.len() / want / dense).max(1);
                let mut k = fnv(kind) as usize % step;
                let mut got = 0;
                while got < want && k < pool.len() {
                    let it = pool[k];
                    k += step;
                    let zh = is_zh(&it.question);
                    // Without options, only a question that identifies its item
                    // (long enough, no other item with the same question) counts.
                    if *kind == "question_only" {
                        let qk = tokens_of(&it.question);
                        let long = if zh { qk.len() >= 12 } else { qk.len() >= 10 };
                        if !long || question_count.get(&qk).copied().unwrap_or(0) > 1 {
                            continue;
                        }
                    }
                    let Some(text) = eval_positive(it, kind, ctx_of(part, n), &mut rng) else {
                        continue;
                    };
                    n += 1;
                    got += 1;
                    out.push(Labelled {
                        id: format!("{b}:{}:{}:{}:{kind}", it.split, it.subject, it.row),
                        text,
                        part,
                        group: if zh { "zh".into() } else { "en".into() },
                        kind: kind.to_string(),
                        positive: true,
                    });
                }
            }
        }
    }
    // `CURATE_DECONTAM_STRESS=N` (a probe for rule design, off by default: the set
    // and its floors stay as they are): N more English light edits per tune item,
    // over every item of the tune part's indexed MMLU subjects (kind
    // `light_edit_stress`), from a generator stream of their own.
    let stress: usize = std::env::var("CURATE_DECONTAM_STRESS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if stress > 0 {
        let mut srng = Rng(0x5354_5245_5353);
        let pool: Vec<&BenchItem> = all
            .iter()
            .filter(|it| it.benchmark == "mmlu" && subject_role("mmlu", &it.subject) == (true, "tune"))
            .collect();
        let step = (pool.len() / 1000).max(1);
        // Chinese clauses in a random order (not only the first moved last), with
        // 1-3% of the characters changed and the options shuffled (kind
        // `reordered_stress`, a stream of its own), for questions of 8+ CJK characters.
        let mut zrng = Rng(0x5a48_5354_5245_5353);
        for b in ["ceval", "cmmlu"] {
            let zpool: Vec<&BenchItem> = all
                .iter()
                .filter(|it| it.benchmark == b && subject_role(b, &it.subject) == (true, "tune"))
                .collect();
            for it in zpool.iter().step_by((zpool.len() / 1000).max(1)) {
                // A number series in another order is another question.
                if it.question.chars().filter(|c| curate::text::is_cjk(*c)).count() < 8 {
                    continue;
                }
                for v in 0..stress {
                    let p = 0.01 + 0.02 * zrng.unit();
                    let q = noisy(&it.question, true, p, &mut zrng);
                    let mut order: Vec<(u64, usize)> = Vec::new();
                    let Some(q) = reorder_with(&q, true, |c| {
                        order = (0..c.len()).map(|i| (zrng.next(), i)).collect();
                        order.sort_unstable();
                        if order.iter().enumerate().all(|(i, o)| o.1 == i) {
                            order.rotate_left(1);
                        }
                        let old = std::mem::take(c);
                        c.extend(order.iter().map(|o| old[o.1].clone()));
                    }) else {
                        continue;
                    };
                    let mut o: Vec<String> =
                        it.options.iter().map(|o| noisy(o, true, p, &mut zrng)).collect();
                    o.rotate_left(1 + zrng.below(3));
                    out.push(Labelled {
                        id: format!("{b}:{}:{}:{}:reordered_stress{v}", it.split, it.subject, it.row),
                        text: lettered(&q, &o, &["A. ", "B. ", "C. ", "D. "], "\n"),
                        part: "tune",
                        group: "zh".into(),
                        kind: "reordered_stress".into(),
                        positive: true,
                    });
                }
            }
        }
        for it in pool.iter().step_by(step) {
            for v in 0..stress {
                let Some(text) = eval_positive(it, "light_edit", "", &mut srng) else {
                    continue;
                };
                out.push(Labelled {
                    id: format!("mmlu:{}:{}:{}:light_edit_stress{v}", it.split, it.subject, it.row),
                    text,
                    part: "tune",
                    group: "en".into(),
                    kind: "light_edit_stress".into(),
                    positive: true,
                });
            }
        }
    }
    // Real light edits: MMLU pre-release test items that differ from the final
    // ones, paired by subject and row where the subject kept its row count.
    let pre = load(
        "mmlu",
        BenchFormat::Mmlu,
        d.join("mmlu/prerelease_2020-09-08/test"),
    );
    let key = |it: &BenchItem| {
        let mut s = it.question.clone();
        s.extend(it.options.iter().map(|o| format!("\n{o}")));
        curate::decontam::normalize::tokenize(&s)
            .1
            .iter()
            .map(|t| t.hash)
            .collect::<Vec<_>>()
    };
    let mut subjects: Vec<&str> = pre.iter().map(|it| it.subject.as_str()).collect();
    subjects.dedup();
    for s in subjects {
        let (indexed, part) = subject_role("mmlu", s);
        let p: Vec<&BenchItem> = pre.iter().filter(|it| it.subject == s).collect();
        let f: Vec<&BenchItem> = all
            .iter()
            .filter(|it| it.benchmark == "mmlu" && it.subject == s)
            .collect();
        if !indexed {
            continue;
        }
        let fkeys: Vec<Vec<u64>> = f.iter().map(|it| key(it)).collect();
        let jaccard = |a: &[u64], b: &[u64]| {
            let sa: std::collections::HashSet<&u64> = a.iter().collect();
            let sb: std::collections::HashSet<&u64> = b.iter().collect();
            sa.intersection(&sb).count() as f64 / sa.union(&sb).count().max(1) as f64
        };
        let mut pairs = 0;
        for (r, a) in p.iter().enumerate() {
            let ka = key(a);
            // The same row when it is the same question, else the most similar one.
            let best = if fkeys.get(r).is_some_and(|k| jaccard(&ka, k) >= 0.5) {
                Some(r)
            } else {
                (0..f.len())
                    .map(|j| (jaccard(&ka, &fkeys[j]), j))
                    .filter(|x| x.0 >= 0.5)
                    .max_by(|x, y| x.0.total_cmp(&y.0))
                    .map(|x| x.1)
            };
            let Some(j) = best else { continue };
            // At most 100 per subject (moral_scenarios alone has 895).
            if ka != fkeys[j] && pairs < 100 {
                pairs += 1;
                out.push(Labelled {
                    id: format!("mmlu:pre:{s}:{}:prerelease_edit", a.row),
                    text: format!(
                        "{}\nAnswer:",
                        lettered(&a.question, &a.options, &["A. ", "B. ", "C. ", "D. "], "\n")
                    ),
                    part,
                    group: "en".into(),
                    kind: "prerelease_edit".into(),
                    positive: true,
                });
            }
        }
    }
    // Exam-like hard negatives: items of left-out subjects, verbatim, and with the
    // option set of an indexed item of the same benchmark.
    let dup = Copies::new(all.iter().filter(|it| subject_role(&it.benchmark, &it.subject).0));
    for b in ["ceval", "cmmlu", "mmlu"] {
        let indexed: Vec<&BenchItem> = all
            .iter()
            .filter(|it| it.benchmark == b && subject_role(b, &it.subject).0)
            .collect();
        for part in ["tune", "held"] {
            let left: Vec<&BenchItem> = all
                .iter()
                .filter(|it| it.benchmark == b && subject_role(b, &it.subject) == (false, part))
                .collect();
            let step = (left.len() / 300).max(1);
            for (k, it) in left.iter().step_by(step).enumerate() {
                // The same question under another subject or benchmark (CMMLU and
                // C-Eval share law and politics questions) is contamination, not a
                // clean negative.
                if dup.is_copy(it) {
                    continue;
                }
                let zh = is_zh(&it.question);
                let abcd = ["A. ", "B. ", "C. ", "D. "];
                let (kind, opts) = if k % 3 == 2 {
                    (
                        "shared_options",
                        indexed[rng.below(indexed.len())].options.clone(),
                    )
                } else {
                    ("exam_like", it.options.clone())
                };
                out.push(Labelled {
                    id: format!("{b}:{}:{}:{}:{kind}", it.split, it.subject, it.row),
                    text: format!(
                        "{}\n{}",
                        lettered(&it.question, &opts, &abcd, "\n"),
                        answer_text(it)
                    ),
                    part,
                    group: if zh { "zh".into() } else { "en".into() },
                    kind: kind.into(),
                    positive: false,
                });
            }
        }
    }
    for (i, (part, src, t)) in ordinary.into_iter().enumerate() {
        out.push(Labelled {
            id: format!("ordinary:{src}:{i}"),
            text: t,
            part,
            group: src,
            kind: "ordinary".into(),
            positive: false,
        });
    }
    out
}

#[test]
fn held_aside_eval_through_curate_run() {
    let Some(d) = shared() else { return };
    let show = std::env::var("CURATE_DECONTAM_EVAL_PART").unwrap_or_else(|_| "held".into());
    let tmp = tempfile::tempdir().unwrap();
    let bench = tmp.path().join("bench");
    let set = build_eval_set(&d, &bench);
    let input = tmp.path().join(format!("{show}.jsonl"));
    let mut jsonl = String::new();
    for r in set.iter().filter(|r| r.part == show) {
        jsonl.push_str(&serde_json::json!({"id": r.id, "text": r.text}).to_string());
        jsonl.push('\n');
    }
    std::fs::write(&input, jsonl).unwrap();
    let out = tmp.path().join("out");
    let b = |n: &str| bench.join(n).to_string_lossy().to_string();
    let stages = format!(
        "[[benchmark]]\nname = \"mmlu\"\nformat = \"mmlu\"\npath = {:?}\n\n\
         [[benchmark]]\nname = \"ceval\"\nformat = \"ceval\"\npath = {:?}\n\n\
         [[benchmark]]\nname = \"cmmlu\"\nformat = \"cmmlu\"\npath = {:?}\n\n\
         [[stage]]\nkind = \"decontaminate\"\naction = \"drop\"\n{}",
        b("mmlu"),
        b("ceval"),
        b("cmmlu"),
        // Extra stage keys for sweeps on the tune part (`letter_threshold_en = 0.2`).
        std::env::var("CURATE_DECONTAM_STAGE_KEYS")
            .map(|k| k.replace(';', "\n") + "\n")
            .unwrap_or_default()
    );
    let pipeline = write_pipeline(
        tmp.path(),
        &[input.to_str().unwrap()],
        &stages,
        out.to_str().unwrap(),
        "",
    );
    run_ok(&["run", pipeline.to_str().unwrap(), "--quiet"]);
    let (_, rejected) = check_books(&out);
    let flagged: std::collections::HashMap<String, serde_json::Value> = rejected
        .into_iter()
        .filter(|r| r["stage"] == "decontaminate")
        .map(|r| (r["id"].as_str().unwrap().to_string(), r))
        .collect();
    let verbose = std::env::var_os("CURATE_DECONTAM_VERBOSE").is_some();
    let explain = verbose.then(|| {
        let specs = ["mmlu", "ceval", "cmmlu"].map(|n| BenchmarkSpec {
            name: n.into(),
            format: BenchFormat::parse(n).unwrap(),
            path: bench.join(n),
        });
        build_index(&specs, MatchConfig::default()).unwrap()
    });
    // (kind, group) -> (flagged, total)
    let mut table: std::collections::BTreeMap<(bool, String, String), (usize, usize)> = Default::default();
    for r in set.iter().filter(|r| r.part == show) {
        let group = if r.kind == "ordinary" {
            "all".to_string()
        } else {
            r.group.clone()
        };
        let e = table.entry((!r.positive, r.kind.clone(), group)).or_default();
        let hit = flagged.contains_key(&r.id);
        e.0 += hit as usize;
        e.1 += 1;
        if verbose && hit != r.positive {
            let short: String = r.text.chars().take(200).collect();
            let why = explain.as_ref().and_then(|ix| {
                let mut p = r.id.split(':');
                let (b, sp, su, row) = (p.next()?, p.next()?, p.next()?, p.next()?.parse::<u32>().ok()?);
                let i = ix.items.iter().position(|it| {
                    it.benchmark == b && (it.split == sp || sp == "pre") && it.subject == su && it.row == row
                })?;
                let (o, oc, kw, sim, re, lt) = ix.explain(&r.text, i as u32);
                Some(format!(
                    "main {o:.2} cand {oc:.2} kw {kw:.2} letters {lt:.2} sim {sim:.2}{}",
                    if re { " reordered" } else { "" }
                ))
            });
            eprintln!(
                "{} {}: {} || {:?} {:?}",
                if hit { "FP" } else { "FN" },
                r.id,
                short.replace('\n', " | "),
                flagged.get(&r.id).map(|f| f["detail"].clone()),
                why
            );
            // For a false hit, the items it matched and why.
            if let Some(ix) = explain.as_ref().filter(|_| hit) {
                for h in ix.scan(&r.text) {
                    let it = &ix.items[h.item as usize];
                    let (o, oc, kw, sim, re, lt) = ix.explain(&r.text, h.item);
                    eprintln!(
                        "   = {} {} {} #{} {:?} {:.2}: {} || {} || main {o:.2} cand {oc:.2} kw {kw:.2} letters {lt:.2} sim {sim:.2}{}",
                        it.benchmark,
                        it.subject,
                        it.split,
                        it.row,
                        h.evidence,
                        h.score,
                        it.question.chars().take(160).collect::<String>().replace('\n', " "),
                        it.options.join(" | ").chars().take(200).collect::<String>(),
                        if re { " reordered" } else { "" }
                    );
                }
            }
        }
    }
    println!("\n{show} part: flagged / total");
    println!("| kind | group | flagged | total | rate |");
    println!("|---|---|---|---|---|");
    for ((neg, kind, group), (f, t)) in &table {
        println!(
            "| {kind}{} | {group} | {f} | {t} | {:.3} |",
            if *neg { " (negative)" } else { "" },
            *f as f64 / (*t).max(1) as f64
        );
    }
    if show != "held" {
        return;
    }
    // Held part, as measured (docs/benchmarks/decontam.md, Sessions 8, 13 and 17):
    // every positive kind >= 0.97 (issue 19's target; the lowest is 0.980),
    // ordinary records <= 1 in 1,000, exam-like hard negatives <= 3% (target 2%).
    let rate = |neg: bool, kinds: &[&str]| {
        let (f, t) = table
            .iter()
            .filter(|(k, _)| k.0 == neg && kinds.contains(&k.1.as_str()))
            .fold((0, 0), |a, (_, v)| (a.0 + v.0, a.1 + v.1));
        f as f64 / t.max(1) as f64
    };
    for kind in POS_KINDS {
        for g in ["en", "zh"] {
            if let Some((f, t)) = table.get(&(false, kind.to_string(), g.to_string())) {
                assert!(*f as f64 >= 0.97 * *t as f64, "{kind} {g}: {f}/{t}");
            }
        }
    }
    assert!(rate(true, &["ordinary"]) <= 0.001);
    assert!(rate(true, &["exam_like", "shared_options"]) <= 0.03);
}
