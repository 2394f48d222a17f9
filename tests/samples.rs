//! The default pipeline on the bundled samples, checked against the defects the
//! samples were written with (`data-samples/labels.json`).

mod common;
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn labels() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(repo().join("data-samples/labels.json")).unwrap()).unwrap()
}

/// For one sample file: line -> labels.
fn defects(file: &str) -> BTreeMap<u64, Vec<String>> {
    let l = labels();
    l["files"][file]["defects"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let tags = v
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_string())
                .collect();
            (k.parse().unwrap(), tags)
        })
        .collect()
}

/// The line a record came from: parsed from `[DIR/]NAME:LINE` ids, or the rejected record's source.
fn line_of(rec: &serde_json::Value, file_name: &str) -> Option<u64> {
    let src = rec
        .get("source")
        .and_then(|s| s.as_str())
        .or_else(|| rec["id"].as_str())?;
    // Sources are relative to the inputs' common folder (`sft/alpaca_zh.jsonl:5`
    // since the default pipeline also reads `web/`): compare the file name.
    let src = src.rsplit('/').next()?;
    src.strip_prefix(&format!("{file_name}:"))?.parse().ok()
}

#[test]
fn default_pipeline_on_samples_drops_labelled_duplicates_and_empty_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let pipeline = repo().join("pipelines/zh_sft.toml");
    run_ok(&[
        "run",
        pipeline.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let (kept, rejected) = check_books(&out);
    assert!(kept.len() > 150, "most samples are fine");
    for file in ["alpaca_zh.jsonl", "alpaca_en.jsonl"] {
        let labels = defects(&format!("sft/{file}"));
        let kept_lines: BTreeSet<u64> = kept.iter().filter_map(|r| line_of(r, file)).collect();
        let short_reject: BTreeSet<u64> = rejected
            .iter()
            .filter(|r| r["stage"] == "length")
            .filter_map(|r| line_of(r, file))
            .collect();
        // Each exact-duplicate group keeps exactly one copy.
        let mut groups: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for (line, tags) in &labels {
            for t in tags {
                if let Some(g) = t.strip_prefix("dup_group:") {
                    groups.entry(g.to_string()).or_default().push(*line);
                }
            }
        }
        assert!(!groups.is_empty());
        for (g, lines) in &groups {
            let survivors = lines.iter().filter(|l| kept_lines.contains(l)).count();
            assert_eq!(survivors, 1, "{file} group {g} {lines:?} keeps one copy");
        }
        // Empty and one-word answers are dropped by the length stage.
        for (line, tags) in &labels {
            if tags.iter().any(|t| t == "empty_output" || t == "empty_all") {
                assert!(
                    short_reject.contains(line),
                    "{file}:{line} {tags:?} dropped as too short"
                );
            }
        }
    }
    // ShareGPT duplicates carry their own ids: one of each pair survives.
    let ids: BTreeSet<&str> = kept.iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(
        ["sg-0005", "sg-0009"].iter().filter(|i| ids.contains(*i)).count(),
        1
    );
    assert_eq!(
        ["sg-0011", "sg-0019"].iter().filter(|i| ids.contains(*i)).count(),
        1
    );
}

#[test]
fn bad_samples_are_each_accounted_for() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let pipeline = repo().join("pipelines/zh_sft.toml");
    let bad = repo().join("data-samples/bad");
    let inputs: Vec<String> = ["broken.jsonl", "invalid_utf8.jsonl", "empty.jsonl"]
        .iter()
        .map(|f| bad.join(f).to_string_lossy().to_string())
        .collect();
    let mut args = vec![
        "run",
        pipeline.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--quiet",
        "--input",
    ];
    args.extend(inputs.iter().map(String::as_str));
    run_ok(&args);
    let (_, rejected) = check_books(&out);
    let malformed: BTreeSet<(String, u64)> = rejected
        .iter()
        .filter(|r| r["reason"] == "malformed")
        .map(|r| {
            let src = r["source"].as_str().unwrap();
            let (f, l) = src.rsplit_once(':').unwrap();
            (f.to_string(), l.parse().unwrap())
        })
        .collect();
    for file in ["broken.jsonl", "invalid_utf8.jsonl"] {
        for (line, tags) in defects(&format!("bad/{file}")) {
            let expect_rejected = !tags.iter().any(|t| t == "blank_line");
            assert_eq!(
                malformed.contains(&(file.to_string(), line)),
                expect_rejected,
                "{file}:{line} {tags:?}"
            );
        }
    }
    let s = stats(&out);
    let notes = s["sources"].to_string();
    assert!(
        notes.contains("blank lines skipped") && notes.contains("empty source"),
        "{notes}"
    );
}

#[test]
fn samples_pipeline_validates() {
    let pipeline = repo().join("pipelines/zh_sft.toml");
    let o = run_ok(&["validate", pipeline.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("alpaca_zh.jsonl"));
}

#[test]
fn default_pipeline_drops_labelled_exam_leaks_and_keeps_hard_negatives() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let pipeline = repo().join("pipelines/zh_sft.toml");
    run_ok(&[
        "run",
        pipeline.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let (kept, rejected) = check_books(&out);
    let l = labels();
    let (mut leaks, mut negatives) = (0, 0);
    for (path, f) in l["files"].as_object().unwrap() {
        let Some(file) = path.strip_prefix("sft/") else {
            continue;
        };
        let contaminated: BTreeSet<u64> = rejected
            .iter()
            .filter(|r| r["stage"] == "decontaminate")
            .filter_map(|r| line_of(r, file))
            .collect();
        let rejected_lines: BTreeSet<u64> = rejected.iter().filter_map(|r| line_of(r, file)).collect();
        let kept_lines: BTreeSet<u64> = kept.iter().filter_map(|r| line_of(r, file)).collect();
        for (line, tags) in f["defects"].as_object().unwrap() {
            let line: u64 = line.parse().unwrap();
            let tags: Vec<&str> = tags
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|t| t.as_str())
                .collect();
            if tags.contains(&"exam_leak") {
                leaks += 1;
                // A leak that is also an exact duplicate may go to exact_dedup first.
                assert!(
                    contaminated.contains(&line) || rejected_lines.contains(&line),
                    "{file}:{line} {tags:?} dropped"
                );
                assert!(!kept_lines.contains(&line), "{file}:{line} {tags:?} not kept");
            }
            if tags.contains(&"exam_hard_negative") {
                negatives += 1;
                assert!(
                    !contaminated.contains(&line),
                    "{file}:{line} {tags:?} is not a leak"
                );
            }
        }
    }
    assert!(
        leaks >= 15 && negatives >= 5,
        "{leaks} leaks, {negatives} negatives"
    );
    let s = stats(&out);
    let stage = s["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|st| st["name"] == "decontaminate")
        .unwrap();
    assert!(
        stage["summary"]["contaminated"].as_u64().unwrap() >= 15,
        "{stage}"
    );
    let report = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(report.contains("<mark>"), "report highlights matched spans");
}

#[test]
fn default_pipeline_drops_labelled_near_duplicates_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let pipeline = repo().join("pipelines/zh_sft.toml");
    run_ok(&[
        "run",
        pipeline.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let (kept, rejected) = check_books(&out);
    let (mut groups_total, mut groups_ok, mut by_minhash) = (0, 0, 0);
    for file in ["alpaca_zh.jsonl", "alpaca_en.jsonl"] {
        let labels = defects(&format!("sft/{file}"));
        // A near-duplicate group: its original, its variants, and exact copies of the original.
        let mut groups: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
        for (line, tags) in &labels {
            for t in tags {
                if let Some(g) = t
                    .strip_prefix("near_dup_group:")
                    .or_else(|| t.strip_prefix("near_dup_of:"))
                {
                    groups.entry(g.to_string()).or_default().insert(*line);
                }
            }
        }
        for (line, tags) in &labels {
            for t in tags {
                if let Some(g) = t.strip_prefix("dup_group:") {
                    if let Some(members) = groups.get_mut(g) {
                        members.insert(*line);
                    }
                }
            }
        }
        let labelled: BTreeSet<u64> = labels
            .iter()
            .filter(|(_, tags)| tags.iter().any(|t| t.contains("dup")))
            .map(|(l, _)| *l)
            .collect();
        let kept_lines: BTreeSet<u64> = kept.iter().filter_map(|r| line_of(r, file)).collect();
        for (g, members) in &groups {
            if members.len() < 2 {
                continue;
            }
            groups_total += 1;
            let survivors = members.iter().filter(|l| kept_lines.contains(l)).count();
            if survivors <= 1 {
                groups_ok += 1;
            } else {
                eprintln!("{file} near-duplicate group {g} {members:?}: {survivors} kept");
            }
        }
        for r in rejected.iter().filter(|r| r["stage"] == "minhash_dedup") {
            if let Some(line) = line_of(r, file) {
                by_minhash += 1;
                assert!(
                    labelled.contains(&line),
                    "{file}:{line} dropped as a near duplicate without a label: {}",
                    r["detail"]
                );
            }
        }
    }
    eprintln!(
        "near-duplicate groups with one survivor: {groups_ok}/{groups_total}; minhash drops {by_minhash}"
    );
    assert!(groups_total >= 15, "{groups_total} labelled groups");
    assert_eq!(
        groups_ok, groups_total,
        "every labelled near-duplicate group keeps one record"
    );
    assert!(by_minhash >= 10);
}

#[test]
fn default_pipeline_extracts_web_pages_and_keeps_one_copy_of_each_crawled_duplicate() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let pipeline = repo().join("pipelines/zh_sft.toml");
    run_ok(&[
        "run",
        pipeline.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let (kept, rejected) = check_books(&out);
    // Every page became a text record; none was lost in extraction.
    assert!(
        !rejected.iter().any(|r| r["stage"] == "extract"),
        "bundled pages all have main text"
    );
    let web: Vec<&serde_json::Value> = kept.iter().filter(|r| r["meta"]["extract"].is_object()).collect();
    assert!(web.len() >= 12, "{} web pages kept", web.len());
    for r in &web {
        assert!(r["html"].is_null() && r["text"].is_string(), "{r}");
    }
    // The same article crawled twice with different ads: one copy survives.
    let labels = defects("web/pages.jsonl");
    let kept_lines: BTreeSet<u64> = kept.iter().filter_map(|r| line_of(r, "pages.jsonl")).collect();
    let mut groups: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (line, tags) in &labels {
        for t in tags {
            if let Some(g) = t.strip_prefix("dup_group:") {
                groups.entry(g.to_string()).or_default().push(*line);
            }
        }
    }
    assert_eq!(groups.len(), 3);
    for (g, lines) in &groups {
        let survivors = lines.iter().filter(|l| kept_lines.contains(l)).count();
        assert!(
            survivors <= 1,
            "pages.jsonl group {g} {lines:?}: {survivors} kept"
        );
    }
}

/// HTML-escaped as the report's template engine writes text (minijinja's HTML escape).
/// The records counted in all bins of one side (`passed`, `tagged`, `dropped`) of a score histogram.
fn bins_total(score: &serde_json::Value, side: &str) -> u64 {
    score[side]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum()
}

fn html_escaped(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
        .replace('/', "&#x2f;")
}

#[test]
fn report_shows_score_histograms_sources_and_examples_with_record_markup_escaped() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir(&input).unwrap();
    // Sorted first, so its too-short record is among the rejected samples shown.
    let markup = [
        r#"{"instruction": "<script>alert(1)</script> 这段代码做什么？", "input": "", "output": "弹窗"}"#,
        r#"{"instruction": "解释 HTML 标签", "input": "", "output": "<b>粗体</b>标签让文字加粗，<i>斜体</i>标签让文字倾斜，网页里很常用。"}"#,
    ];
    std::fs::write(input.join("a_markup.jsonl"), markup.join("\n") + "\n").unwrap();
    for f in ["sft/alpaca_zh.jsonl", "sft/alpaca_en.jsonl", "bad/broken.jsonl"] {
        let name = f.rsplit('/').next().unwrap();
        std::fs::copy(repo().join("data-samples").join(f), input.join(name)).unwrap();
    }
    let out = tmp.path().join("out");
    run_ok(&[
        "run",
        repo().join("pipelines/zh_sft.toml").to_str().unwrap(),
        "--input",
        input.join("*.jsonl").to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    check_books(&out);
    let stats = stats(&out);
    assert!(
        stats["input"].as_u64().unwrap() > 150,
        "the copied samples were read"
    );
    let report = std::fs::read_to_string(out.join("report.html")).unwrap();

    // Record text is escaped by the template engine: no live markup from a record.
    assert!(
        !report.contains("<script"),
        "a record's <script> reached the report raw"
    );
    assert!(!report.contains("<b>粗体"));
    assert!(
        report.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
        "the dropped record's text is shown escaped"
    );

    // A histogram per declared score, with its threshold, split by outcome.
    let stages = stats["stages"].as_array().unwrap();
    let stage = |name: &str| stages.iter().find(|s| s["name"] == name).unwrap();
    for (name, key, field, threshold) in [
        ("quality", "quality", "dup_line_frac", "0.5"),
        ("toxicity", "toxicity", "score", "0.65"),
        ("machine_text", "machine_text", "score", "0.9"),
        ("minhash_dedup", "dedup", "similarity", "0.5"),
    ] {
        let s = stage(name);
        let sc = s["scores"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["key"] == key && c["field"] == field)
            .unwrap_or_else(|| panic!("{name}: no score {key}.{field}"));
        let (passed, tagged, dropped) = (
            bins_total(sc, "passed"),
            bins_total(sc, "tagged"),
            bins_total(sc, "dropped"),
        );
        assert!(passed + tagged + dropped > 0, "{name}: nothing counted");
        assert!(dropped <= s["dropped"].as_u64().unwrap() && tagged <= s["tagged"].as_u64().unwrap());
        assert!(
            report.contains(&format!("meta.{key}.{field}</h4>")),
            "{name}: no histogram"
        );
        assert!(
            report.contains(&format!("threshold {threshold}<")),
            "{name}: no threshold"
        );
        // The records nearest the threshold are shown with their (escaped) text.
        let near = sc["near_threshold"].as_array().unwrap();
        assert!(!near.is_empty(), "{name}: no examples");
        for e in near {
            assert!(
                report.contains(&html_escaped(e["preview"].as_str().unwrap())),
                "{name}: example {} not shown",
                e["id"]
            );
        }
    }
    // A tag-only stage: every record it saw is in its histogram, its tags in amber.
    let mt = stage("machine_text");
    let sc = &mt["scores"][0];
    let sum = |k: &str| bins_total(sc, k);
    let tagged = mt["tagged"].as_u64().unwrap();
    assert!(tagged > 0);
    assert_eq!(
        sum("tagged"),
        tagged,
        "machine_text: tagged records in its histogram"
    );
    assert_eq!(sum("passed") + sum("tagged"), mt["in"].as_u64().unwrap());
    assert_eq!(sum("dropped"), 0);
    assert!(report.contains(&format!("{tagged} tagged")));

    // Kept and rejected per source, with the top reasons (also in stats.json).
    let sources = stats["sources"].as_array().unwrap();
    let source = |name: &str| sources.iter().find(|s| s["name"] == name).unwrap();
    for s in sources {
        assert_eq!(
            s["kept"].as_u64().unwrap() + s["rejected"].as_u64().unwrap(),
            s["records"].as_u64().unwrap(),
            "{s}"
        );
        let by_reason: u64 = s["rejections"]
            .as_array()
            .map_or(0, |r| r.iter().map(|r| r["records"].as_u64().unwrap()).sum());
        assert_eq!(by_reason, s["rejected"].as_u64().unwrap(), "{s}");
    }
    let broken = source("broken.jsonl");
    assert_eq!(broken["rejections"][0]["stage"], "read");
    assert_eq!(broken["rejections"][0]["reason"], "malformed");
    let row = |name: &str| {
        let at = report
            .find(&format!("<tr><td>{name}</td>"))
            .unwrap_or_else(|| panic!("no row {name}"));
        report[at..at + report[at..].find("</tr>").unwrap()].to_string()
    };
    let b = row("broken.jsonl");
    assert!(
        b.contains(&format!(
            "read / malformed {}",
            broken["rejections"][0]["records"]
        )),
        "{b}"
    );
    let m = row("a_markup.jsonl");
    assert!(m.contains("length / too_short 1"), "{m}");
    let zh = source("alpaca_zh.jsonl");
    let top = &zh["rejections"][0];
    assert!(
        row("alpaca_zh.jsonl").contains(&format!(
            "{} / {} {}",
            top["stage"].as_str().unwrap(),
            top["reason"].as_str().unwrap(),
            top["records"]
        )),
        "the top reason of alpaca_zh.jsonl"
    );
}
