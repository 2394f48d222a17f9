//! The `toxicity` stage and `curate train-classifier`: training through the CLI is
//! deterministic (same bytes twice); the shipped model and lexicons scored on the
//! sources it never saw (COLD dev, SWSR's held-aside posts, ToxiCN's test split) and
//! on clean exam questions (when the shared data is there); and the stage end to end
//! through the binary.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use curate::classifier::{Classifier, Metrics};
use curate::io::csv::parse_csv;
use curate::stages::toxicity::Lexicon;

/// The threshold the default pipeline (pipelines/zh_sft.toml) uses: chosen for the
/// shipped model by cross-validation inside its training pool (filters/toxicity/cv.py).
const THRESHOLD: f32 = 0.65;
/// Floors a little under the shipped model's measured F1 at `THRESHOLD` (COLD dev
/// 0.877, SWSR held-aside posts 0.667, ToxiCN test 0.522; docs/benchmarks/toxicity.md).
/// The model before SWSR was added scored 0.583 on SWSR held at this threshold.
const COLD_DEV_F1: f64 = 0.86;
const SWSR_HELD_F1: f64 = 0.65;
const TOXICN_F1: f64 = 0.50;
/// `min_lexicon_hits` of the default pipeline: one hit flags too many law and medicine questions.
const MIN_HITS: usize = 2;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn shared_data() -> Option<PathBuf> {
    let p = curate::shared_data_dir();
    if p.join("cold/dev.csv").is_file() {
        Some(p)
    } else {
        eprintln!(
            "note: {} has no cold/dev.csv; skipping the COLD evaluation (set CURATE_SHARED_DATA)",
            p.display()
        );
        None
    }
}

#[test]
fn train_classifier_cli_is_deterministic_and_checks_usage() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("train.jsonl");
    let mut s = String::new();
    for i in 0..200 {
        let (text, label) = if i % 2 == 0 {
            (format!("你这个蠢货滚开 {i}"), 1)
        } else {
            (format!("今天天气很好我们去公园 {i}"), 0)
        };
        s.push_str(&serde_json::json!({"text": text, "label": label}).to_string());
        s.push('\n');
    }
    std::fs::write(&data, s).unwrap();
    let mut bytes = Vec::new();
    for n in 0..2 {
        let out = dir.path().join(format!("m{n}.bin"));
        let o = run_ok(&[
            "train-classifier",
            "--input",
            data.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--epochs",
            "5",
            "--dim",
            "8",
            "--bucket",
            "10000",
            "--validation",
            data.to_str().unwrap(),
        ]);
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(stdout.contains("F1 1.0000"), "{stdout}");
        bytes.push(std::fs::read(&out).unwrap());
        assert!(!dir.path().join(format!("m{n}.bin.train.tmp")).exists());
    }
    assert_eq!(bytes[0], bytes[1], "two trainings give the same bytes");
    let m = Classifier::load(&dir.path().join("m0.bin"), true).unwrap();
    assert!(m.prob("你这个蠢货", "1") > 0.5);
    assert!(m.prob("天气很好", "1") < 0.5);

    // Usage errors exit 2, runtime errors 1.
    let out = dir.path().join("x.bin");
    let o = run_curate(&[
        "train-classifier",
        "--input",
        data.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--minn",
        "3",
        "--maxn",
        "2",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let csv = dir.path().join("t.csv");
    std::fs::write(&csv, "a,b\nx,1\n").unwrap();
    let o = run_curate(&[
        "train-classifier",
        "--input",
        csv.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run_curate(&[
        "train-classifier",
        "--input",
        csv.to_str().unwrap(),
        "--text-field",
        "a",
        "--label-field",
        "b",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "one label only is a runtime error");
}

/// Column `col` of every CSV under `dir` (sorted).
fn csv_column(dir: &Path, col: &str) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let rows = parse_csv(&std::fs::read_to_string(&f).unwrap());
        let i = rows[0].iter().position(|h| h == col).unwrap();
        out.extend(rows[1..].iter().filter_map(|r| r.get(i).cloned()));
    }
    out
}

fn filters() -> PathBuf {
    repo().join("filters/toxicity")
}

fn lexicon() -> Lexicon {
    let mut entries = Vec::new();
    for f in ["lexicon_zh.txt", "lexicon_en.txt"] {
        entries.extend(Lexicon::parse(
            &std::fs::read_to_string(filters().join(f)).unwrap(),
            "lexicon",
        ));
    }
    Lexicon::new(entries).unwrap()
}

/// CRC-32 (IEEE), as Python's `zlib.crc32`: `filters/toxicity/toxdata.py` splits SWSR with it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for b in bytes {
        c ^= u32::from(*b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// `(text, offensive)` rows of a CSV file, by column names.
fn labelled_csv(path: &Path, text: &str, label: &str) -> Vec<(String, bool, Vec<String>)> {
    let rows = parse_csv(&std::fs::read_to_string(path).unwrap());
    let col = |name: &str| {
        rows[0]
            .iter()
            .position(|h| h.trim_start_matches('\u{feff}') == name)
            .unwrap()
    };
    let (ti, li) = (col(text), col(label));
    rows[1..]
        .iter()
        .filter(|r| r.len() > li.max(ti))
        .map(|r| (r[ti].clone(), r[li].trim() == "1", r.clone()))
        .collect()
}

/// SWSR comments whose post is in the held-aside part (never trained on; see toxdata.py).
fn swsr_held(data: &Path) -> Vec<(String, bool)> {
    let path = data.join("swsr_sexism_zh/SexComment.csv");
    let header = parse_csv(&std::fs::read_to_string(&path).unwrap())[0].clone();
    let wi = header.iter().position(|h| h == "weibo_id").unwrap();
    labelled_csv(&path, "comment_text", "label")
        .into_iter()
        .filter(|(_, _, row)| crc32(row[wi].as_bytes()).is_multiple_of(5))
        .map(|(t, y, _)| (t, y))
        .collect()
}

/// ToxiCN's test split (CC BY-NC-ND: evaluation only), when the shared data has it.
fn toxicn_test(data: &Path) -> Option<Vec<(String, bool)>> {
    let text = std::fs::read_to_string(data.join("toxicn/split/test.json")).ok()?;
    let rows: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    Some(
        rows.iter()
            .map(|r| (r["content"].as_str().unwrap().to_string(), r["toxic"] == 1))
            .collect(),
    )
}

/// Precision/recall of `score >= th` on labelled rows.
fn metrics_at(model: &Classifier, rows: &[(String, bool)], th: f32) -> Metrics {
    let mut m = Metrics::default();
    for (t, y) in rows {
        m.add(model.prob(t, "1") >= th, *y);
    }
    m
}

#[test]
fn shipped_model_and_lexicon_on_held_out_sources() {
    let model = Classifier::load(&filters().join("cold_char.bin"), true).unwrap();
    let size = std::fs::metadata(filters().join("cold_char.bin")).unwrap().len();
    assert!(size < 5_000_000, "shipped model is {size} bytes");
    let lex = lexicon();
    let Some(data) = shared_data() else { return };

    let cold: Vec<(String, bool)> = labelled_csv(&data.join("cold/dev.csv"), "TEXT", "label")
        .into_iter()
        .map(|(t, y, _)| (t, y))
        .collect();
    assert_eq!(cold.len(), 6431);
    let scores: Vec<f32> = cold.iter().map(|(t, _)| model.prob(t, "1")).collect();
    let lex_hit: Vec<bool> = cold.iter().map(|(t, _)| lex.find(t).len() >= MIN_HITS).collect();
    let lex_any: Vec<bool> = cold.iter().map(|(t, _)| !lex.find(t).is_empty()).collect();
    let at = |th: f32, with_lex: bool| {
        let mut m = Metrics::default();
        for (i, (_, y)) in cold.iter().enumerate() {
            m.add(scores[i] >= th || (with_lex && lex_hit[i]), *y);
        }
        m
    };
    let mut lex_only = Metrics::default();
    for (i, (_, y)) in cold.iter().enumerate() {
        lex_only.add(lex_any[i], *y);
    }

    let mut exams = csv_column(&data.join("ceval/val"), "question");
    exams.extend(csv_column(&data.join("ceval/dev"), "question"));
    exams.extend(csv_column(&data.join("cmmlu/test"), "Question"));
    assert!(exams.len() > 13_000, "{}", exams.len());
    let exam_scores: Vec<f32> = exams.iter().map(|t| model.prob(t, "1")).collect();
    let exam_lex = exams.iter().filter(|t| !lex.find(t).is_empty()).count();
    let rate = |n: usize, d: usize| n as f64 / d as f64;
    let exam_fp = |th: f32| rate(exam_scores.iter().filter(|s| **s >= th).count(), exams.len());

    println!(
        "COLD dev ({} rows), C-Eval val+dev + CMMLU test ({} questions):",
        cold.len(),
        exams.len()
    );
    println!("| detector | P | R | F1 | acc | FP rate on the source's safe rows | FP rate exams |");
    println!("|---|---|---|---|---|---|---|");
    // `ex`: the false-positive rate on exam questions, where measured.
    let line = |name: &str, m: &Metrics, ex: Option<f64>| {
        let ex = ex.map_or(String::new(), |e| format!("{:.2}%", 100.0 * e));
        println!(
            "| {name} | {:.3} | {:.3} | {:.3} | {:.3} | {:.2}% | {ex} |",
            m.precision(),
            m.recall(),
            m.f1(),
            m.accuracy(),
            100.0 * m.fp_rate(),
        )
    };
    for th in [0.3, 0.5, 0.7, 0.9] {
        line(
            &format!("model, threshold {th}"),
            &at(th, false),
            Some(exam_fp(th)),
        );
    }
    line("lexicon only", &lex_only, Some(rate(exam_lex, exams.len())));
    let both = at(THRESHOLD, true);
    let exam_both = exams
        .iter()
        .zip(&exam_scores)
        .filter(|(t, s)| **s >= THRESHOLD || lex.find(t).len() >= MIN_HITS)
        .count();
    line(
        &format!("model {THRESHOLD} + lexicon >= {MIN_HITS} hits (stage default)"),
        &both,
        Some(rate(exam_both, exams.len())),
    );

    // The other sources, at the default threshold: SWSR's held-aside posts and
    // ToxiCN's test split (neither trained on nor used to choose anything).
    let swsr = swsr_held(&data);
    assert_eq!(swsr.len(), 1757, "the held-aside SWSR part changed");
    let swsr_m = metrics_at(&model, &swsr, THRESHOLD);
    line(&format!("SWSR held, model {THRESHOLD}"), &swsr_m, None);
    let toxicn = toxicn_test(&data).map(|rows| metrics_at(&model, &rows, THRESHOLD));
    if let Some(m) = &toxicn {
        line(&format!("ToxiCN test, model {THRESHOLD}"), m, None);
    }

    // Floors a little under the measured levels of the shipped model (see
    // docs/benchmarks/toxicity.md): a worse model or a changed threshold fails.
    let model_m = at(THRESHOLD, false);
    assert!(
        model_m.f1() >= COLD_DEV_F1,
        "model F1 on COLD dev {:.3}",
        model_m.f1()
    );
    assert!(
        swsr_m.f1() >= SWSR_HELD_F1,
        "model F1 on SWSR held {:.3}",
        swsr_m.f1()
    );
    if let Some(m) = toxicn {
        assert!(m.f1() >= TOXICN_F1, "model F1 on ToxiCN test {:.3}", m.f1());
    }
    assert!(
        exam_fp(THRESHOLD) <= 0.01,
        "model FP on exams: {:.4}",
        exam_fp(THRESHOLD)
    );
    assert!(rate(exam_lex, exams.len()) <= 0.01, "lexicon FP on exams");
    assert!(
        both.f1() >= COLD_DEV_F1,
        "stage default F1 on COLD dev {:.3}",
        both.f1()
    );
    assert!(rate(exam_both, exams.len()) <= 0.01, "stage default FP on exams");
}

#[test]
fn pipeline_end_to_end_drops_toxic_records() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let lines = [
        serde_json::json!({"id": "ok1", "instruction": "介绍一下长城", "output": "长城是中国古代的军事防御工程，全长两万多公里。"}),
        serde_json::json!({"id": "ok2", "instruction": "What is 2+2?", "output": "2 + 2 = 4. It is a basic addition in class."}),
        serde_json::json!({"id": "lex", "instruction": "骂我", "output": "你这个傻逼，操你妈"}),
        serde_json::json!({"id": "en", "text": "shut up you stupid motherfucker"}),
    ];
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&input, body).unwrap();
    let f = filters();
    let stages = format!(
        "[[stage]]\nkind = \"toxicity\"\nlexicon = [{:?}, {:?}]\nmodel = {:?}\nthreshold = {THRESHOLD}\n",
        f.join("lexicon_zh.txt"),
        f.join("lexicon_en.txt"),
        f.join("cold_char.bin")
    );
    let out = dir.path().join("out");
    let p = write_pipeline(
        dir.path(),
        &[input.to_str().unwrap()],
        &stages,
        out.to_str().unwrap(),
        "compression = \"none\"",
    );
    run_ok(&["validate", p.to_str().unwrap()]);
    run_ok(&["run", p.to_str().unwrap(), "--quiet"]);
    let (kept, rejected) = check_books(&out);
    let ids = |v: &[serde_json::Value]| {
        v.iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&kept), ["ok1", "ok2"]);
    assert_eq!(ids(&rejected), ["lex", "en"]);
    for r in &rejected {
        assert_eq!(r["stage"], "toxicity");
        assert_eq!(r["reason"], "toxic");
        let detail = r["detail"].as_str().unwrap();
        assert!(!detail.contains("傻逼") && !detail.contains("fuck"), "{detail}");
    }
    for k in &kept {
        let t = &k["meta"]["toxicity"];
        assert!(t["score"].as_f64().unwrap() < THRESHOLD as f64, "{t}");
        assert_eq!(t["lexicon_hits"], serde_json::json!([]));
    }
    let s = stats(&out);
    assert_eq!(s["rejected"], 2);
}
