//! `span_dedup` end to end: repeated lines are cut out with offsets in `meta`, a
//! record left empty is dropped, a sharded run (observe, buckets, clusters, filter
//! over 3 ranks) writes the same bytes as one process, and, on the shared data, the
//! labelled check: every removed span really occurs in at least `min_repeats`
//! documents (precision), and injected boilerplate is found (recall).
//!
//! `cargo test --release --test span_dedup -- --nocapture` prints the labelled
//! numbers (docs/benchmarks/dedup.md, "Span dedup"). Without the shared data
//! (`CURATE_SHARED_DATA`, else ../shared/data) that test prints a note and passes.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use common::*;
use curate::dedup::span_split::{normalized, Span, SpanSplitter, SpanUnit};
use serde_json::{json, Value};

const BOILER: &str = "希望对你有帮助！";

/// Distinct answers (so only the planted lines repeat).
fn answer(i: usize) -> String {
    let topics = [
        "长城",
        "大熊猫",
        "光合作用",
        "活字印刷",
        "丝绸之路",
        "京剧",
        "茶叶",
        "黄河",
    ];
    format!(
        "第{i}个回答：{}是一个值得介绍的话题，这里给出编号为{i}的说明。\n它的第二行也只属于第{i}条记录。",
        topics[i % topics.len()]
    )
}

#[test]
fn repeated_lines_are_cut_with_offsets_and_emptied_records_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let mut lines = String::new();
    let mut add = |id: String, output: String| {
        let r = json!({"id": id, "instruction": "请回答这个问题，谢谢。", "input": "", "output": output});
        lines.push_str(&format!("{r}\n"));
    };
    for i in 0..20 {
        let mut out = answer(i);
        if i % 2 == 0 {
            // Width variants of one line: the same span once normalized.
            out.push_str(if i % 4 == 0 {
                "\n希望对你有帮助！"
            } else {
                "\n希望对你有帮助!  "
            });
        }
        if i < 2 {
            out.push_str("\n只出现在两条记录里的一行文字，不算重复。");
        }
        add(format!("r{i}"), out);
    }
    add("only-boiler".into(), format!("{BOILER}\n"));
    let input = tmp.path().join("in.jsonl");
    std::fs::write(&input, lines).unwrap();
    let stages = "[[stage]]\nkind = \"span_dedup\"\nmin_repeats = 3\n";
    let p = write_pipeline(tmp.path(), &[input.to_str().unwrap()], stages, "out", "");
    let out = tmp.path().join("out");
    run_ok(&[
        "run",
        p.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let (kept, rejected) = check_books(&out);
    assert_eq!(kept.len(), 20);
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["id"], "only-boiler");
    assert_eq!(rejected[0]["reason"], "span_dedup_empty");
    for r in &kept {
        let i: usize = r["id"].as_str().unwrap()[1..].parse().unwrap();
        let output = r["output"].as_str().unwrap();
        assert!(!output.contains("希望对你有帮助"), "{output}");
        // The prompt (not selected) and the line in two records stay.
        assert_eq!(r["instruction"], "请回答这个问题，谢谢。");
        assert!(output.starts_with(&answer(i)), "{output}");
        assert_eq!(output.contains("只出现在两条记录里"), i < 2);
        let meta = &r["meta"]["span_dedup"];
        if i % 2 == 1 {
            assert!(meta.is_null(), "{meta}");
            continue;
        }
        let removed = meta["removed"].as_array().unwrap();
        assert_eq!(removed.len(), 1, "{meta}");
        let (s, e) = (
            removed[0]["start"].as_u64().unwrap(),
            removed[0]["end"].as_u64().unwrap(),
        );
        // Character offsets into the output before the cut.
        let before = format!("{}\n", answer(i));
        assert_eq!(s as usize, before.chars().count());
        assert_eq!(e - s, 8);
        assert_eq!(removed[0]["field"], "output");
        assert_eq!(removed[0]["docs"], 11);
    }
    let s = stats(&out);
    let st = &s["stages"][1];
    assert_eq!(st["modified"], 10);
    assert_eq!(st["reasons"]["span_dedup_empty"], 1);
    let sum = &st["summary"];
    assert_eq!(sum["records_emptied"], 1);
    assert_eq!(sum["repeated_spans"], 1);
    assert_eq!(sum["top_removed"][0]["text"], BOILER);
    assert_eq!(sum["top_removed"][0]["docs"], 11);
    assert_eq!(sum["top_removed"][0]["records"], 11);

    // Tag: nothing is cut, records are tagged.
    let tag = write_pipeline(
        tmp.path(),
        &[input.to_str().unwrap()],
        &format!("{stages}action = \"tag\"\n"),
        "out-tag",
        "",
    );
    let out_tag = tmp.path().join("out-tag");
    run_ok(&[
        "run",
        tag.to_str().unwrap(),
        "--output",
        out_tag.to_str().unwrap(),
        "--quiet",
    ]);
    let (kept, _) = check_books(&out_tag);
    assert_eq!(kept.len(), 21);
    assert!(kept
        .iter()
        .any(|r| r["output"].as_str().unwrap().contains("希望对你有帮助")));
    assert_eq!(stats(&out_tag)["stages"][1]["tagged"], 11);
}

/// Eight files sharing boilerplate lines across files (so across ranks).
fn sharded_setup(dir: &Path) -> PathBuf {
    let inputs = dir.join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    let shared = [
        "以上就是关于这个问题的全部内容，感谢阅读。",
        "Accept all cookies to continue browsing this site.",
        "版权所有 © 2024 示例网站 保留所有权利",
    ];
    for f in 0..8 {
        let mut text = synthetic_jsonl(60, f as u64);
        for i in 0..30 {
            let mut body = answer(f * 100 + i);
            if (f + i) % 3 == 0 {
                body.push('\n');
                body.push_str(shared[(f + i) % shared.len()]);
            }
            if i == 0 && f % 2 == 0 {
                body = shared[f % shared.len()].to_string();
            }
            let r = json!({"id": format!("f{f}-{i}"), "text": body});
            text.push_str(&format!("{r}\n"));
        }
        std::fs::write(inputs.join(format!("f{f}.jsonl")), text).unwrap();
    }
    let stages = "[[stage]]\nkind = \"normalize\"\n\n[[stage]]\nkind = \"length\"\nmin_chars = 5\n\n\
                  [[stage]]\nkind = \"span_dedup\"\nunit = \"sentence\"\nmin_width = 6\n\n[[stage]]\nkind = \"pii\"\n";
    let glob = format!("{}/*.jsonl", inputs.display());
    write_pipeline(dir, &[&glob], stages, "out", "part_records = 40")
}

#[test]
fn sharded_run_equals_single_process() {
    let tmp = tempfile::tempdir().unwrap();
    let p = sharded_setup(tmp.path());
    let p = p.to_str().unwrap();
    let single = tmp.path().join("single");
    run_ok(&["run", p, "--output", single.to_str().unwrap(), "--quiet"]);
    let s = stats(&single);
    let st = &s["stages"][3];
    assert_eq!(st["kind"], "span_dedup");
    assert!(st["modified"].as_u64().unwrap() >= 60, "{st}");
    assert!(st["reasons"]["span_dedup_empty"].as_u64().unwrap() >= 4, "{st}");

    let sharded = tmp.path().join("sharded");
    let o = sharded.to_str().unwrap();
    let early = run_curate(&["run", p, "--output", o, "--rank", "0", "--world-size", "3"]);
    assert_eq!(early.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&early.stderr).contains("observe:span_dedup"));
    for step in [
        "observe:span_dedup",
        "buckets:span_dedup",
        "clusters:span_dedup",
        "filter",
    ] {
        let ranks: Vec<usize> = if step.starts_with("clusters") {
            vec![0]
        } else {
            vec![2, 0, 1]
        };
        for r in ranks {
            let r = r.to_string();
            run_ok(&[
                "run",
                p,
                "--output",
                o,
                "--rank",
                &r,
                "--world-size",
                "3",
                "--step",
                step,
                "--quiet",
            ]);
        }
    }
    run_ok(&["merge-stats", o]);
    assert_eq!(sharded_parts(&sharded), snapshot(&single, &["kept", "rejected"]));
    let m = stats(&sharded);
    for k in ["input", "kept", "rejected"] {
        assert_eq!(m[k], s[k], "{k}");
    }
    assert_eq!(m["stages"][3]["modified"], st["modified"]);
    // Every rank lists the same repeated spans with the whole run's counts.
    let ranks = m["stages"][3]["summary"]["ranks"].as_array().unwrap();
    for r in ranks {
        assert_eq!(r["repeated_spans"], st["summary"]["repeated_spans"]);
        assert_eq!(
            r["top_removed"][0]["docs"],
            st["summary"]["top_removed"][0]["docs"]
        );
    }
}

// ---------------------------------------------------------------------------
// Labelled check on the shared data.

fn shared_data() -> PathBuf {
    std::env::var_os("CURATE_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"))
}

/// Boilerplate planted into documents: SFT sign-offs and web footer/cookie lines.
const PLANTED: &[&str] = &[
    "希望对你有帮助！",
    "如果你还有其他问题，欢迎随时提问。",
    "以上就是关于这个问题的全部内容，感谢您的阅读。",
    "本文来源于网络，如有侵权请联系删除。",
    "版权所有 © 2024 某某网 保留所有权利",
    "关注我们的微信公众号，获取更多精彩内容！",
    "点击这里返回首页",
    "免责声明：本站内容仅供参考，不构成任何建议。",
    "Hope this helps!",
    "We use cookies to improve your experience. Accept all cookies",
    "Sign up for our newsletter to get the latest updates.",
    "Copyright © 2024 Example Media. All rights reserved.",
    "Share this article on Facebook and Twitter",
    "Let me know if you have any other questions.",
];

/// A width, case or spacing variant of a planted line (the same span once normalized).
fn variant(line: &str, rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => line.to_string(),
        1 => line.replace('！', "!").replace('，', ",").replace('。', "."),
        2 => format!("  {}  ", line.to_uppercase()),
        _ => line.replace(' ', "  "),
    }
}

/// One labelled document: its record, and the planted lines in it.
struct Doc {
    record: Value,
    planted: Vec<String>,
}

fn read_json_list(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if let Ok(Value::Array(v)) = serde_json::from_str(&text) {
        return v;
    }
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// SFT answers (alpaca zh/en, BELLE, ShareGPT-zh) and web texts (C4, web gold texts),
/// with planted boilerplate: each planted line in 3-40 documents, and unique lines
/// planted in exactly 2 documents (below `min_repeats`: they must stay).
fn labelled_corpus(data: &Path) -> Vec<Doc> {
    let mut docs: Vec<Value> = Vec::new();
    let mut id = 0usize;
    let mut next_id = || {
        id += 1;
        format!("d{id}")
    };
    let alpaca = |v: &Value, id: String| json!({"id": id, "instruction": v["instruction"], "input": v["input"].as_str().unwrap_or(""), "output": v["output"]});
    for v in read_json_list(&data.join("alpaca_zh_hikariming/translated/zh_00000-03252_proofread_done.json"))
    {
        docs.push(alpaca(&v, next_id()));
    }
    for v in read_json_list(&data.join("alpaca_en/alpaca_data.json"))
        .iter()
        .take(4000)
    {
        docs.push(alpaca(v, next_id()));
    }
    for v in read_json_list(&data.join("belle_zh_eval/eval_set.json")) {
        docs.push(
            json!({"id": next_id(), "instruction": v["question"], "input": "", "output": v["std_answer"]}),
        );
    }
    for v in read_json_list(&data.join("medicalgpt_zh_sft_samples/sharegpt_zh_1K_format.jsonl")) {
        docs.push(json!({"id": next_id(), "conversations": v["conversations"]}));
    }
    for v in read_json_list(&data.join("llamafactory_demo/c4_demo.jsonl")) {
        docs.push(json!({"id": next_id(), "text": v["text"]}));
    }
    for src in [
        "cleaneval",
        "cleanportaleval",
        "dragnet",
        "l3s_gn1",
        "readability",
        "htmltotext_benchmark",
    ] {
        for v in read_json_list(&data.join("web_extraction_wceb").join(src).join("gold.jsonl")) {
            if v["text"].as_str().is_some_and(|t| !t.trim().is_empty()) {
                docs.push(json!({"id": next_id(), "text": v["text"]}));
            }
        }
    }
    let mut rng = Rng(17);
    let mut out: Vec<Doc> = docs
        .into_iter()
        .map(|record| Doc {
            record,
            planted: Vec::new(),
        })
        .collect();
    let n = out.len();
    let plant = |doc: &mut Doc, line: String| {
        let field = response_field(&mut doc.record);
        let text = field.as_str().unwrap_or("").to_string();
        *field = Value::String(format!("{text}\n{line}"));
        doc.planted.push(line);
    };
    for (k, line) in PLANTED.iter().enumerate() {
        let copies = 3 + (k * 7) % 38;
        for _ in 0..copies {
            let i = rng.below(n);
            let v = variant(line, &mut rng);
            plant(&mut out[i], v);
        }
    }
    for k in 0..30 {
        let line = format!("这一行只被放进两篇文档里，编号{k}，不应被删除。");
        for _ in 0..2 {
            let i = rng.below(n);
            plant(&mut out[i], line.clone());
        }
    }
    out
}

/// The last response-side text of a record (where boilerplate goes).
fn response_field(r: &mut Value) -> &mut Value {
    if r.get("output").is_some() {
        return &mut r["output"];
    }
    if r.get("text").is_some() {
        return &mut r["text"];
    }
    let turns = r["conversations"].as_array_mut().unwrap();
    let last = turns
        .iter()
        .rposition(|t| t["from"] == "gpt")
        .unwrap_or(turns.len() - 1);
    &mut turns[last]["value"]
}

/// The response-side texts of a record with their field paths (as `meta` names them).
fn response_texts(r: &Value) -> Vec<(String, String)> {
    if let Some(t) = r["output"].as_str() {
        return vec![("output".into(), t.into())];
    }
    if let Some(t) = r["text"].as_str() {
        return vec![("text".into(), t.into())];
    }
    r["conversations"]
        .as_array()
        .map(|turns| {
            turns
                .iter()
                .enumerate()
                .filter(|(_, t)| t["from"] == "gpt")
                .map(|(i, t)| {
                    (
                        format!("conversations[{i}].value"),
                        t["value"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The numbers of one labelled run.
struct Scores {
    removed: usize,
    really_repeated: usize,
    planted: usize,
    planted_found: usize,
    below_min_removed: usize,
    natural: BTreeMap<String, usize>,
    emptied: u64,
    chars_removed: u64,
    chars_total: u64,
}

fn labelled_run(dir: &Path, docs: &[Doc], unit: &str, min_repeats: usize) -> Scores {
    let input = dir.join("labelled.jsonl");
    if !input.exists() {
        let text: String = docs.iter().map(|d| format!("{}\n", d.record)).collect();
        std::fs::write(&input, text).unwrap();
    }
    let stages =
        format!("[[stage]]\nkind = \"span_dedup\"\nunit = \"{unit}\"\nmin_repeats = {min_repeats}\n");
    let out = dir.join(format!("out-{unit}-{min_repeats}"));
    let p = write_pipeline(
        dir,
        &[input.to_str().unwrap()],
        &stages,
        out.to_str().unwrap(),
        "",
    );
    run_ok(&["run", p.to_str().unwrap(), "--quiet"]);
    let (kept, rejected) = check_books(&out);

    // Ground truth by exact strings: normalized span -> the documents it occurs in.
    let unit_kind = if unit == "line" {
        SpanUnit::Line
    } else {
        SpanUnit::Sentence
    };
    let mut splitter = SpanSplitter::new(unit_kind, 10);
    let mut occurs: HashMap<String, HashSet<usize>> = HashMap::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut chars_total = 0u64;
    for (i, d) in docs.iter().enumerate() {
        by_id.insert(d.record["id"].as_str().unwrap().to_string(), i);
        for (_, text) in response_texts(&d.record) {
            chars_total += text.chars().count() as u64;
            let mut spans: Vec<Span> = Vec::new();
            splitter.split(&text, &mut spans);
            for s in spans {
                occurs
                    .entry(normalized(&text[s.start..s.end]))
                    .or_default()
                    .insert(i);
            }
        }
    }
    let mut sc = Scores {
        removed: 0,
        really_repeated: 0,
        planted: 0,
        planted_found: 0,
        below_min_removed: 0,
        natural: BTreeMap::new(),
        emptied: 0,
        chars_removed: 0,
        chars_total,
    };
    let planted_norm: HashSet<String> = PLANTED.iter().map(|l| normalized(l)).collect();
    // (document, planted line) pairs removed; a line planted twice in one document
    // is one pair, counted once below.
    let mut found_planted: HashSet<(usize, String)> = HashSet::new();
    // A rejected line holds the record under `record`.
    for r in kept.iter().chain(rejected.iter().map(|r| &r["record"])) {
        let Some(removed) = r["meta"]["span_dedup"]["removed"].as_array() else {
            continue;
        };
        let i = by_id[r["id"].as_str().unwrap()];
        let texts: HashMap<String, String> = response_texts(&docs[i].record).into_iter().collect();
        for m in removed {
            let text = &texts[m["field"].as_str().unwrap()];
            let (s, e) = (
                m["start"].as_u64().unwrap() as usize,
                m["end"].as_u64().unwrap() as usize,
            );
            let span: String = text.chars().skip(s).take(e - s).collect();
            let norm = normalized(&span);
            sc.removed += 1;
            sc.chars_removed += (e - s) as u64;
            let n = occurs.get(&norm).map_or(0, |d| d.len());
            if n >= min_repeats {
                sc.really_repeated += 1;
            }
            if planted_norm.contains(&norm) {
                found_planted.insert((i, norm));
            } else if norm.contains("这一行只被放进两篇文档里") {
                sc.below_min_removed += 1;
            } else {
                *sc.natural
                    .entry(span.trim().chars().take(80).collect())
                    .or_default() += 1;
            }
        }
    }
    for (i, d) in docs.iter().enumerate() {
        let distinct: HashSet<&String> = d.planted.iter().collect();
        for line in distinct {
            let norm = normalized(line);
            // Planted lines in fewer documents (two plantings in one) are not repeated.
            let docs_with = occurs.get(&norm).map_or(0, |d| d.len());
            if planted_norm.contains(&norm) && docs_with >= min_repeats {
                sc.planted += 1;
                if found_planted.contains(&(i, norm)) {
                    sc.planted_found += 1;
                } else if std::env::var_os("SPAN_DEBUG").is_some() {
                    let texts = response_texts(&d.record);
                    let last = texts.last().map(|(_, t)| t.as_str()).unwrap_or("");
                    let tail: String = last
                        .chars()
                        .rev()
                        .take(160)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect();
                    eprintln!("missed {line:?} in {}: ...{tail:?}", d.record["id"]);
                }
            }
        }
    }
    sc.emptied = stats(&out)["stages"][1]["summary"]["records_emptied"]
        .as_u64()
        .unwrap_or(0);
    sc
}

#[test]
fn labelled_precision_and_recall_on_shared_data() {
    let data = shared_data();
    if !data.join("alpaca_zh_hikariming").exists() {
        eprintln!(
            "note: {} has no SFT sets; skipping the labelled span_dedup check (set CURATE_SHARED_DATA)",
            data.display()
        );
        return;
    }
    let docs = labelled_corpus(&data);
    let tmp = tempfile::tempdir().unwrap();
    println!("span_dedup labelled set: {} documents", docs.len());
    for (unit, min_repeats) in [("line", 3), ("sentence", 3), ("line", 5)] {
        let sc = labelled_run(tmp.path(), &docs, unit, min_repeats);
        let precision = sc.really_repeated as f64 / sc.removed.max(1) as f64;
        let recall = sc.planted_found as f64 / sc.planted.max(1) as f64;
        let natural: usize = sc.natural.values().sum();
        println!(
            "unit {unit}, min_repeats {min_repeats}: removed {} spans ({} chars, {:.3}% of response text), \
             really repeated {} -> precision {precision:.4}; planted boilerplate found {}/{} -> recall {recall:.4}; \
             lines planted in 2 documents removed: {}; other removed spans: {natural} ({} distinct); records emptied {}",
            sc.removed,
            sc.chars_removed,
            100.0 * sc.chars_removed as f64 / sc.chars_total as f64,
            sc.really_repeated,
            sc.planted_found,
            sc.planted,
            sc.below_min_removed,
            sc.natural.len(),
            sc.emptied,
        );
        let mut top: Vec<(&String, &usize)> = sc.natural.iter().collect();
        top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (span, n) in top.iter().take(40) {
            println!("    {n:5}  {span}");
        }
        assert!(precision >= 0.99, "precision {precision}");
        assert_eq!(sc.below_min_removed, 0);
        if min_repeats == 3 {
            assert!(recall >= 0.99, "recall {recall}");
        }
    }
}
