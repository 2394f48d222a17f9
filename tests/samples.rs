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
