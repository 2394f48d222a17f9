//! Readers and writers: compressed JSONL, JSON arrays, Parquet both ways, HTML
//! directories, command-line overrides, --limit, validate and stats.

mod common;
use common::*;
use std::io::Write;

#[test]
fn gzip_and_zstd_inputs_read_like_plain() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let text = synthetic_jsonl(500, 3);
    std::fs::write(d.join("plain.jsonl"), &text).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(text.as_bytes()).unwrap();
    std::fs::write(d.join("c.jsonl.gz"), gz.finish().unwrap()).unwrap();
    std::fs::write(
        d.join("c.jsonl.zst"),
        zstd::encode_all(text.as_bytes(), 3).unwrap(),
    )
    .unwrap();
    let mut outs = Vec::new();
    for (i, input) in ["plain.jsonl", "c.jsonl.gz", "c.jsonl.zst"].iter().enumerate() {
        let out = format!("out{i}");
        let p = write_pipeline(d, &[input], TEST_STAGES, &out, "compression = \"none\"");
        run_ok(&["run", p.to_str().unwrap(), "--quiet"]);
        let (kept, _) = check_books(&d.join(&out));
        // Derived ids name the source, so compare records without them.
        let texts: Vec<String> = kept.iter().map(|r| r["meta"].to_string()).collect();
        outs.push(texts);
    }
    assert_eq!(outs[0], outs[1]);
    assert_eq!(outs[0], outs[2]);
}

#[test]
fn parquet_output_reads_back_as_input() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("a.jsonl"), synthetic_jsonl(1000, 4)).unwrap();
    let p = write_pipeline(d, &["a.jsonl"], TEST_STAGES, "pq", "format = \"parquet\"");
    run_ok(&["run", p.to_str().unwrap(), "--quiet"]);
    let (kept, _) = check_books(&d.join("pq"));
    // Nested columns come back as lists of objects (ShareGPT turns).
    assert!(kept.iter().any(|r| r["conversations"][1]["from"] == "gpt"));
    // The Parquet part is valid input for a second pipeline.
    let p2 = write_pipeline(d, &["pq/kept/*.parquet"], "", "again", "compression = \"none\"");
    run_ok(&["run", p2.to_str().unwrap(), "--quiet"]);
    let (again, rej) = check_books(&d.join("again"));
    assert!(rej.is_empty());
    assert_eq!(again.len(), kept.len());
    for (a, b) in again.iter().zip(&kept) {
        assert_eq!(a["id"], b["id"], "ids survive the round trip");
        assert_eq!(a["text"], b["text"]);
        assert_eq!(a["output"], b["output"]);
    }
}

#[test]
fn json_array_input_and_overrides_and_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let arr: Vec<serde_json::Value> = synthetic_jsonl(300, 5)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    std::fs::write(d.join("arr.json"), serde_json::to_string_pretty(&arr).unwrap()).unwrap();
    std::fs::write(d.join("other.jsonl"), "{\"text\":\"unused input\"}\n").unwrap();
    let p = write_pipeline(d, &["other.jsonl"], "", "unused", "");
    let arr_path = d.join("arr.json");
    let out = d.join("over");
    run_ok(&[
        "run",
        p.to_str().unwrap(),
        "--input",
        arr_path.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--limit",
        "120",
        "--quiet",
    ]);
    assert!(!d.join("unused").exists(), "--output replaces [output] dir");
    let (kept, _) = check_books(&out);
    assert_eq!(stats(&out)["input"], 120);
    assert_eq!(kept.len(), 120);
    // Derived ids carry the line where each array element starts.
    assert_eq!(kept[0]["id"], "arr.json:2");
    let notes = stats(&out)["sources"][0]["notes"].to_string();
    assert!(notes.contains("--limit"), "{notes}");
}

#[test]
fn validate_prints_the_plan_and_stats_prints_the_table() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("a.jsonl"), synthetic_jsonl(50, 6)).unwrap();
    let p = write_pipeline(d, &["*.jsonl"], TEST_STAGES, "out", "");
    let o = run_ok(&["validate", p.to_str().unwrap()]);
    let plan = String::from_utf8_lossy(&o.stdout);
    assert!(
        plan.contains("a.jsonl") && plan.contains("length") && plan.contains("exact_dedup"),
        "{plan}"
    );
    assert!(!d.join("out").exists(), "validate writes nothing");
    run_ok(&["run", p.to_str().unwrap(), "--quiet"]);
    let o = run_ok(&["stats", d.join("out").to_str().unwrap()]);
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("exact_dedup") && table.contains("input 50"),
        "{table}"
    );
    let o = run_curate(&["stats", d.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn a_directory_input_reads_its_record_files_and_an_empty_one_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let folder = d.join("sets");
    std::fs::create_dir_all(folder.join("nested")).unwrap();
    std::fs::write(folder.join("a.jsonl"), synthetic_jsonl(30, 1)).unwrap();
    std::fs::write(folder.join("nested/b.jsonl"), synthetic_jsonl(20, 2)).unwrap();
    std::fs::write(folder.join("notes.txt"), "not a record file").unwrap();
    let p = write_pipeline(d, &["sets"], "", "out", "compression = \"none\"");
    run_ok(&["run", p.to_str().unwrap(), "--quiet"]);
    let (kept, rejected) = check_books(&d.join("out"));
    assert_eq!(
        kept.len() + rejected.len(),
        50,
        "both files under the folder are read"
    );

    std::fs::create_dir_all(d.join("empty")).unwrap();
    let p = write_pipeline(d, &["empty"], "", "out2", "");
    let out = run_curate(&["run", p.to_str().unwrap(), "--quiet"]);
    assert!(
        !out.status.success(),
        "a folder with nothing to read must not run as 0 records"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is a directory with no"), "{err}");
}
