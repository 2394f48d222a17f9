//! The `pii` stage: precision/recall on a labelled set written for curate, on
//! NeMo-Curator's English fixtures (when the shared data is there), and end to
//! end through the binary (redaction, offsets, stats, no leaks in the report).

mod common;
mod pii_gen;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::*;
use curate::pii::PiiDetector;

type Gold = Vec<(String, usize, usize)>;

/// Per type: (true positives, false positives, false negatives).
fn score(cases: &[(String, Gold)]) -> BTreeMap<String, (u32, u32, u32)> {
    let det = PiiDetector::new(&[]);
    let mut t: BTreeMap<String, (u32, u32, u32)> = BTreeMap::new();
    for (text, gold) in cases {
        let got: Gold = det
            .detect(text)
            .into_iter()
            .map(|s| (s.ty.name().to_string(), s.start, s.end))
            .collect();
        for g in &got {
            let e = t.entry(g.0.clone()).or_default();
            if gold.contains(g) {
                e.0 += 1;
            } else {
                e.1 += 1;
                eprintln!("FP {} in {:?}", g.0, text.chars().count());
            }
        }
        for g in gold {
            if !got.contains(g) {
                t.entry(g.0.clone()).or_default().2 += 1;
                eprintln!(
                    "FN {} at {}..{} (text of {} chars)",
                    g.0,
                    g.1,
                    g.2,
                    text.chars().count()
                );
            }
        }
    }
    t
}

fn pr(tp: u32, fp: u32, fn_: u32) -> (f64, f64) {
    let p = if tp + fp == 0 {
        1.0
    } else {
        tp as f64 / (tp + fp) as f64
    };
    let r = if tp + fn_ == 0 {
        1.0
    } else {
        tp as f64 / (tp + fn_) as f64
    };
    (p, r)
}

fn print_table(title: &str, t: &BTreeMap<String, (u32, u32, u32)>) {
    println!(
        "{title}\n{:<16} {:>4} {:>4} {:>4} {:>6} {:>6}",
        "type", "tp", "fp", "fn", "P", "R"
    );
    for (ty, &(tp, fp, fn_)) in t {
        let (p, r) = pr(tp, fp, fn_);
        println!("{ty:<16} {tp:>4} {fp:>4} {fn_:>4} {p:>6.3} {r:>6.3}");
    }
}

#[test]
fn labelled_set_precision_and_recall() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/pii_eval.jsonl");
    let cases: Vec<(String, Gold)> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let gold = v["spans"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    (
                        s["type"].as_str().unwrap().to_string(),
                        s["start"].as_u64().unwrap() as usize,
                        s["end"].as_u64().unwrap() as usize,
                    )
                })
                .collect();
            (v["text"].as_str().unwrap().to_string(), gold)
        })
        .collect();
    assert!(cases.len() >= 140, "{} cases", cases.len());
    let t = score(&cases);
    print_table("pii_eval.jsonl", &t);
    for ty in ["CN_ID", "PHONE", "EMAIL", "BANK_CARD", "IP"] {
        let &(tp, fp, fn_) = t.get(ty).expect("type present in the set");
        let (p, r) = pr(tp, fp, fn_);
        assert!(p >= 0.97 && r >= 0.97, "{ty}: P {p:.3} R {r:.3}");
    }
}

/// `<tag>text</tag>` lines to (plain text, gold spans) for the types we support.
fn parse_tagged(line: &str) -> (String, Gold) {
    let map = |tag: &str| match tag {
        "email" => Some("EMAIL"),
        "phone_number" => Some("PHONE"),
        "ip_address" => Some("IP"),
        "credit_card_number" => Some("BANK_CARD"),
        _ => None,
    };
    let (mut text, mut gold, mut rest) = (String::new(), Vec::new(), line);
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>') else {
            break;
        };
        let tag = &rest[open + 1..open + close];
        let end_tag = format!("</{tag}>");
        let Some(end) = rest.find(&end_tag) else {
            text.push_str(&rest[..open + close + 1]);
            rest = &rest[open + close + 1..];
            continue;
        };
        text.push_str(&rest[..open]);
        let inner = &rest[open + close + 1..end];
        let start = text.chars().count();
        text.push_str(inner);
        if let Some(ty) = map(tag) {
            gold.push((ty.to_string(), start, start + inner.chars().count()));
        }
        rest = &rest[end + end_tag.len()..];
    }
    text.push_str(rest);
    (text, gold)
}

#[test]
fn nemo_curator_fixtures() {
    let root = curate::shared_data_dir();
    let dir = root.join("nemo_curator_pii_fixtures_en");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        println!(
            "note: {} not found; skipping the NeMo-Curator PII fixtures",
            dir.display()
        );
        return;
    };
    let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    files.retain(|p| p.extension().is_some_and(|e| e == "txt"));
    files.sort();
    let mut cases = Vec::new();
    for f in files {
        for line in std::fs::read_to_string(&f).unwrap().lines() {
            if !line.trim().is_empty() {
                cases.push(parse_tagged(line));
            }
        }
    }
    let mut t = score(&cases);
    for ty in ["EMAIL", "PHONE", "IP", "BANK_CARD"] {
        t.entry(ty.to_string()).or_default();
    }
    print_table("NeMo-Curator fixtures (email, phone, IP, credit card)", &t);
}

#[test]
fn end_to_end_redacts_and_never_leaks() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let phone = "13812345678";
    let id = "110101199003074573";
    let mail = "zhang.wei@example.com";
    let lines = [
        serde_json::json!({"instruction": "我的手机号是多少？", "output": format!("你的手机号是{phone}。")}),
        serde_json::json!({"conversations": [{"from": "human", "value": format!("身份证{id}，邮箱{mail}")}, {"from": "gpt", "value": "已记录。"}]}),
        serde_json::json!({"text": "没有任何个人信息的普通句子。"}),
        serde_json::json!({"text": format!("{phone} {mail}")}),
    ];
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&input, body).unwrap();
    for (action, extra) in [("redact", ""), ("drop", "max_density = 0.5\n")] {
        let out = dir.path().join(format!("out-{action}"));
        let stages = format!("[[stage]]\nkind = \"pii\"\naction = \"{action}\"\n{extra}");
        let p = write_pipeline(
            dir.path(),
            &[input.to_str().unwrap()],
            &stages,
            out.to_str().unwrap(),
            "compression = \"none\"",
        );
        run_ok(&["run", p.to_str().unwrap(), "--quiet"]);
        let (kept, rejected) = check_books(&out);
        let s = stats(&out);
        let everything = format!(
            "{}{}{}",
            serde_json::to_string(&kept).unwrap(),
            serde_json::to_string(&rejected).unwrap(),
            std::fs::read_to_string(out.join("report.html")).unwrap()
        );
        for raw in [phone, id, mail] {
            assert!(
                !everything.contains(raw),
                "{action}: raw PII leaked into output or report"
            );
        }
        if action == "redact" {
            assert_eq!(kept.len(), 4);
            assert_eq!(kept[0]["output"], "你的手机号是<PHONE>。");
            assert_eq!(
                kept[0]["meta"]["pii"][0],
                serde_json::json!({"type": "PHONE", "field": "output", "start": 6, "end": 17})
            );
            assert_eq!(kept[1]["conversations"][0]["value"], "身份证<CN_ID>，邮箱<EMAIL>");
            let m = &kept[1]["meta"]["pii"];
            assert_eq!(m[0]["field"], "conversations[0].value");
            assert_eq!(
                (m[0]["start"].as_u64(), m[0]["end"].as_u64()),
                (Some(3), Some(21))
            );
            assert_eq!(
                (m[1]["start"].as_u64(), m[1]["end"].as_u64()),
                (Some(24), Some(45))
            );
            assert!(kept[2]["meta"]["pii"].is_null());
            let st = s["stages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|st| st["kind"] == "pii")
                .unwrap();
            assert_eq!(st["modified"], 3, "{st}");
        } else {
            // Records 1 and 3 are mostly PII (density > 0.5); record 0 is redacted and kept.
            assert_eq!(kept.len(), 2);
            assert_eq!(kept[0]["output"], "你的手机号是<PHONE>。");
            assert_eq!(rejected.len(), 2);
            assert!(rejected.iter().all(|r| r["reason"] == "pii"));
            assert!(
                rejected[1].to_string().contains("<PHONE> <EMAIL>"),
                "{}",
                rejected[1]
            );
        }
    }
}

#[test]
fn report_masks_pii_of_records_dropped_before_the_pii_stage() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let line =
        r#"{"instruction":"怎么联系你？","output":"请拨打13812345678或发邮件到zhang.wei@example.com。"}"#;
    std::fs::write(d.join("a.jsonl"), format!("{line}\n{line}\n")).unwrap();
    let stages = "[[stage]]\nkind = \"exact_dedup\"\n\n[[stage]]\nkind = \"pii\"\n";
    let p = write_pipeline(d, &["a.jsonl"], stages, "out", "");
    run_ok(&["run", p.to_str().unwrap(), "--quiet"]);
    let (kept, rejected) = check_books(&d.join("out"));
    assert_eq!((kept.len(), rejected.len()), (1, 1));
    let report = std::fs::read_to_string(d.join("out/report.html")).unwrap();
    assert!(report.contains("duplicate"), "the dedup drop is shown");
    assert!(!report.contains("13812345678") && !report.contains("zhang.wei@example.com"));
    assert!(report.contains("&lt;PHONE&gt;"));
    let stats = std::fs::read_to_string(d.join("out/stats.json")).unwrap();
    assert!(
        !stats.contains("13812345678"),
        "stats.json samples are masked too"
    );
}

/// An independent check: the bundled samples were written (by another author than the
/// detector's) with PII and look-alikes labelled per line in `data-samples/labels.json`.
#[test]
fn bundled_samples_labelled_independently() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let labels: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo.join("data-samples/labels.json")).unwrap())
            .unwrap();
    let map = |tag: &str| -> Option<&'static str> {
        Some(match tag {
            "pii:cn_id" => "CN_ID",
            "pii:cn_mobile" | "pii:us_phone" => "PHONE",
            "pii:cn_landline" => "LANDLINE",
            "pii:email" => "EMAIL",
            "pii:bank_card" | "pii:credit_card" => "BANK_CARD",
            "pii:qq" => "QQ",
            "pii:wechat" => "WECHAT",
            "pii:ipv4" => "IP",
            _ => return None, // addresses: not a type we detect
        })
    };
    let det = PiiDetector::new(&[]);
    let (mut expected, mut found, mut negatives, mut clean_negatives) = (0, 0, 0, 0);
    for (file, v) in labels["files"].as_object().unwrap() {
        if !file.starts_with("sft/") {
            continue;
        }
        let lines: Vec<String> = std::fs::read_to_string(repo.join("data-samples").join(file))
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        for (line, tags) in v["defects"].as_object().unwrap() {
            let n: usize = line.parse().unwrap();
            let rec: serde_json::Value = serde_json::from_str(&lines[n - 1]).unwrap();
            let text = rec.to_string();
            let types: Vec<&str> = det.detect(&text).iter().map(|s| s.ty.name()).collect();
            let tags: Vec<&str> = tags
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap())
                .collect();
            for want in tags.iter().filter_map(|t| map(t)) {
                expected += 1;
                if types.contains(&want) {
                    found += 1;
                } else {
                    println!("missed {want} in {file}:{n}");
                }
            }
            if tags.contains(&"pii_hard_negative") {
                negatives += 1;
                if types.is_empty() {
                    clean_negatives += 1;
                } else {
                    println!("false positive {types:?} in {file}:{n}");
                }
            }
        }
    }
    println!("samples: found {found} of {expected} labelled PII types; {clean_negatives} of {negatives} look-alike records clean");
    assert!(expected >= 20 && negatives >= 5);
    assert!(
        found as f64 / expected as f64 >= 0.9,
        "record-level recall {found}/{expected}"
    );
    assert_eq!(
        clean_negatives, negatives,
        "look-alikes (order numbers, ISBNs, versions) stay clean"
    );
}

/// Per type (tp, fp, fn) and the negatives flagged, of one part of the generated set.
#[derive(Default)]
struct PartScore {
    types: BTreeMap<String, (u32, u32, u32)>,
    negatives: u32,
    negatives_flagged: u32,
}

impl PartScore {
    fn micro_f1(&self) -> f64 {
        let (tp, fp, fn_) = self
            .types
            .values()
            .fold((0, 0, 0), |a, &(t, p, n)| (a.0 + t, a.1 + p, a.2 + n));
        f1(tp, fp, fn_)
    }
    fn flagged(&self) -> f64 {
        self.negatives_flagged as f64 / self.negatives.max(1) as f64
    }
    fn print(&self, title: &str) {
        println!(
            "{title}\n{:<16} {:>5} {:>4} {:>4} {:>6} {:>6} {:>6}",
            "type", "tp", "fp", "fn", "P", "R", "F1"
        );
        for (ty, &(tp, fp, fn_)) in &self.types {
            let (p, r) = pr(tp, fp, fn_);
            println!(
                "{ty:<16} {tp:>5} {fp:>4} {fn_:>4} {p:>6.3} {r:>6.3} {:>6.3}",
                f1(tp, fp, fn_)
            );
        }
        println!(
            "all types: exact typed span F1 {:.4}; hard-negative texts flagged {}/{} = {:.2}%",
            self.micro_f1(),
            self.negatives_flagged,
            self.negatives,
            100.0 * self.flagged()
        );
    }
}

fn f1(tp: u32, fp: u32, fn_: u32) -> f64 {
    if tp + fp + fn_ == 0 {
        return 1.0;
    }
    2.0 * tp as f64 / (2 * tp + fp + fn_) as f64
}

/// Run the generated set through `curate run` (the `pii` stage, `action = "tag"`)
/// and score the spans in `meta.pii` against the gold: (tune, held).
/// With `CURATE_PII_EVAL_OUT=<dir>` the input file is kept there as `pii_hard.jsonl`.
fn score_generated_set() -> (PartScore, PartScore) {
    let carriers = pii_gen::Carriers::load(&curate::shared_data_dir());
    let cases = pii_gen::generate(18, 30, 24, &carriers);
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("pii_hard.jsonl");
    let mut body = String::new();
    for (i, c) in cases.iter().enumerate() {
        let gold: Vec<serde_json::Value> = c
            .gold
            .iter()
            .map(|(t, s, e)| serde_json::json!({"type": t, "start": s, "end": e}))
            .collect();
        let line = serde_json::json!({
            "case": i,
            "text": c.text,
            "gold": gold,
            "part": if c.held { "held" } else { "tune" },
            "template": c.template,
        });
        body.push_str(&line.to_string());
        body.push('\n');
    }
    std::fs::write(&input, &body).unwrap();
    if let Some(dir) = std::env::var_os("CURATE_PII_EVAL_OUT") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(PathBuf::from(dir).join("pii_hard.jsonl"), &body).unwrap();
    }
    let out = tmp.path().join("out");
    let p = write_pipeline(
        tmp.path(),
        &[input.to_str().unwrap()],
        "[[stage]]\nkind = \"pii\"\naction = \"tag\"\n",
        out.to_str().unwrap(),
        "compression = \"none\"",
    );
    run_ok(&["run", p.to_str().unwrap(), "--quiet"]);
    let (kept, rejected) = check_books(&out);
    assert!(rejected.is_empty(), "tag never drops");
    assert_eq!(kept.len(), cases.len());
    let mut parts = (PartScore::default(), PartScore::default());
    let verbose = std::env::var_os("CURATE_PII_EVAL_VERBOSE").is_some();
    for rec in &kept {
        let i = rec["case"].as_u64().unwrap() as usize;
        let case = &cases[i];
        let got: Gold = rec["meta"]["pii"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| {
                        assert_eq!(s["field"], "text");
                        (
                            s["type"].as_str().unwrap().to_string(),
                            s["start"].as_u64().unwrap() as usize,
                            s["end"].as_u64().unwrap() as usize,
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let part = if case.held { &mut parts.1 } else { &mut parts.0 };
        // Only the tune part's errors are ever printed: the held part is scored, not read.
        let show = verbose && !case.held;
        let chars: Vec<char> = case.text.chars().collect();
        let span_text = |s: usize, e: usize| chars[s..e].iter().collect::<String>();
        if case.negative {
            part.negatives += 1;
            if !got.is_empty() {
                part.negatives_flagged += 1;
            }
        }
        for g in &got {
            let e = part.types.entry(g.0.clone()).or_default();
            if case.gold.contains(g) {
                e.0 += 1;
            } else {
                e.1 += 1;
                if show {
                    println!(
                        "FP {} {:?} in {} {:?}",
                        g.0,
                        span_text(g.1, g.2),
                        case.template,
                        case.text
                    );
                }
            }
        }
        for g in &case.gold {
            if !got.contains(g) {
                part.types.entry(g.0.clone()).or_default().2 += 1;
                if show {
                    println!(
                        "FN {} {:?} in {} {:?}",
                        g.0,
                        span_text(g.1, g.2),
                        case.template,
                        case.text
                    );
                }
            }
        }
    }
    parts
}

/// The generated set (`tests/pii_gen`): the held part's numbers may not fall below
/// what the detector reaches (floors just under); the tune part is printed too.
#[test]
fn generated_set_held_part_floors() {
    let (tune, held) = score_generated_set();
    tune.print("generated set, tune part (templates the rules were written on)");
    held.print("generated set, held part (templates never looked at)");
    assert!(held.types.len() >= 12, "every type is in the held part");
    // Floors just under what the detector reaches (session 8: F1 0.9915, 0 of 696
    // negatives flagged, every type's F1 >= 0.96).
    let f1 = held.micro_f1();
    assert!(f1 >= 0.985, "held-part exact typed span F1 {f1:.4}");
    let flagged = held.flagged();
    assert!(flagged <= 0.005, "held-part negatives flagged {flagged:.4}");
    for (ty, &(tp, fp, fn_)) in &held.types {
        let f = self::f1(tp, fp, fn_);
        assert!(f >= 0.95, "held-part {ty} F1 {f:.3}");
    }
    assert!(tune.micro_f1() >= 0.99 && tune.flagged() <= 0.005);
}
