//! Every input record ends in exactly one place, with the numbers to prove it.

mod common;
use common::*;
use std::collections::BTreeSet;

#[test]
fn every_record_is_kept_or_rejected_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("a.jsonl"), synthetic_jsonl(3000, 1)).unwrap();
    let mut bad = synthetic_jsonl(50, 2);
    bad.push_str("{broken\n[1,2]\n{\"title\":\"no text\"}\n");
    std::fs::write(d.join("b.jsonl"), bad).unwrap();
    let out = d.join("out");
    let p = write_pipeline(
        d,
        &["a.jsonl", "b.jsonl"],
        TEST_STAGES,
        "out",
        "part_records = 700",
    );
    run_ok(&["run", p.to_str().unwrap(), "--quiet"]);
    let (kept, rejected) = check_books(&out);
    let s = stats(&out);
    assert_eq!(s["input"], 3053);
    assert!(!kept.is_empty() && rejected.len() > 3, "the stage must drop some");
    // Ids are unique and cover every input record.
    let ids: BTreeSet<String> = kept
        .iter()
        .chain(&rejected)
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3053);
    // Per-stage books balance: read -> length -> kept.
    let stages = s["stages"].as_array().unwrap();
    assert_eq!(stages[0]["name"], "read");
    assert_eq!(stages[0]["dropped"], 3);
    assert_eq!(stages[0]["reasons"]["malformed"], 3);
    assert_eq!(stages[1]["in"], 3050);
    assert_eq!(stages[1]["kind"], "length");
    assert_eq!(stages[2]["kind"], "exact_dedup");
    assert!(stages[2]["reasons"]["duplicate"].as_u64().unwrap() > 0);
    assert_eq!(stages[2]["in"], stages[1]["kept"]);
    assert_eq!(stages[2]["kept"].as_u64().unwrap(), s["kept"].as_u64().unwrap());
    for st in stages {
        for key in ["name", "kind", "in", "kept", "dropped", "modified", "seconds"] {
            assert!(st.get(key).is_some(), "stage stats without `{key}`");
        }
    }
    // Rejected records carry the whole original record and the stage's annotation.
    let short = rejected.iter().find(|r| r["stage"] == "length").unwrap();
    assert!(short["record"]["meta"]["length"]["chars"].is_u64());
    // Parts were split: 3000 records at 700 per part -> 5 units for a.jsonl.
    let kept_parts = s["kept_parts"].as_array().unwrap();
    assert_eq!(kept_parts.len(), 6, "{kept_parts:?}");
    // The report exists and is self-contained.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("too_short"));
    assert!(!html.contains("<script") && !html.contains("<link") && !html.contains("src=\"http"));
    // `curate stats` reads it back.
    let o = run_ok(&["stats", out.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("length"));
}

#[test]
fn original_fields_and_order_survive() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let line = r#"{"zeta":1,"instruction":"写一句话","output":"今天天气很好。","alpha":{"x":[1,2]},"meta":{"src":"web"}}"#;
    std::fs::write(d.join("a.jsonl"), format!("{line}\n")).unwrap();
    let p = write_pipeline(
        d,
        &["a.jsonl"],
        "[[stage]]\nkind = \"length\"",
        "out",
        "compression = \"none\"",
    );
    run_ok(&["run", p.to_str().unwrap(), "--quiet"]);
    let text = std::fs::read_to_string(d.join("out/kept/part-00000-00000.jsonl")).unwrap();
    assert_eq!(
        text.trim(),
        r#"{"id":"a.jsonl:1","zeta":1,"instruction":"写一句话","output":"今天天气很好。","alpha":{"x":[1,2]},"meta":{"src":"web","length":{"chars":11,"prompt_chars":4,"response_chars":7,"turns":null}}}"#
    );
}

/// A tag-only stage's findings are counted as `tagged` in `stats.json` and the table;
/// tagged records are kept, with the flag in `meta`.
#[test]
fn tag_only_stages_count_what_they_tagged() {
    let tmp = tempfile::tempdir().unwrap();
    let lines: String = (0..10)
        .map(|i| {
            let text = if i % 2 == 0 {
                "short".to_string()
            } else {
                "long enough text ".repeat(4)
            };
            format!("{{\"id\":\"r{i}\",\"text\":\"{text}\"}}\n")
        })
        .collect();
    std::fs::write(tmp.path().join("a.jsonl"), lines).unwrap();
    let stages = "[[stage]]\nkind = \"length\"\nmin_chars = 10\naction = \"tag\"\n";
    let p = write_pipeline(tmp.path(), &["a.jsonl"], stages, "out", "compression = \"none\"");
    let o = run_ok(&["run", p.to_str().unwrap()]);
    let (kept, rejected) = check_books(&tmp.path().join("out"));
    assert_eq!((kept.len(), rejected.len()), (10, 0));
    let flagged = kept
        .iter()
        .filter(|r| r["meta"]["length"]["flag"] == "too_short")
        .count();
    assert_eq!(flagged, 5);
    let s = stats(&tmp.path().join("out"));
    let length = &s["stages"][1];
    assert_eq!(
        (length["tagged"].as_u64(), length["dropped"].as_u64()),
        (Some(5), Some(0))
    );
    let table = String::from_utf8_lossy(&o.stdout);
    let header = table.lines().next().unwrap();
    assert!(header.contains("tagged"), "{table}");
}
