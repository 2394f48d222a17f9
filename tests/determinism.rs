//! Same input and config -> byte-identical output, whatever the thread count.

mod common;
use common::*;

fn run_with(d: &std::path::Path, threads: &str, out: &str, extra_output: &str) -> Vec<(String, Vec<u8>)> {
    let p = write_pipeline(d, &["in/*.jsonl"], TEST_STAGES, out, extra_output);
    // Small batches so records of one unit cross many parallel batches.
    let mut text = std::fs::read_to_string(&p).unwrap();
    text.push_str("\n[run]\nbatch_records = 97\n");
    std::fs::write(&p, text).unwrap();
    run_ok(&["run", p.to_str().unwrap(), "--threads", threads, "--quiet"]);
    check_books(&d.join(out));
    snapshot(&d.join(out), &["kept", "rejected"])
}

#[test]
fn output_is_identical_for_one_and_two_threads_and_reruns() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::create_dir(d.join("in")).unwrap();
    for (i, n) in [(0u64, 2500usize), (1, 1200), (2, 40)] {
        std::fs::write(d.join(format!("in/{i}.jsonl")), synthetic_jsonl(n, i)).unwrap();
    }
    for extra in [
        "part_records = 500",
        "part_records = 800\ncompression = \"gzip\"",
        "format = \"parquet\"\npart_records = 1000",
    ] {
        let one = run_with(d, "1", "out1", extra);
        let two = run_with(d, "2", "out2", extra);
        let again = run_with(d, "2", "out3", extra);
        assert!(one.len() > 3, "several parts expected");
        assert_eq!(one, two, "threads 1 vs 2 ({extra})");
        assert_eq!(two, again, "rerun ({extra})");
        for o in ["out1", "out2", "out3"] {
            std::fs::remove_dir_all(d.join(o)).unwrap();
        }
    }
}

/// The report's books (score histograms, the records nearest each threshold, kept and
/// rejected per source) and the report's pages built from them do not depend on the
/// thread count; a stage that tags and one with a prepass included.
#[test]
fn report_books_are_identical_for_one_and_two_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::create_dir(d.join("in")).unwrap();
    for (i, n) in [(0u64, 1500usize), (1, 700)] {
        std::fs::write(d.join(format!("in/{i}.jsonl")), synthetic_jsonl(n, i)).unwrap();
    }
    let stages = "[[stage]]\nkind = \"length\"\nmin_chars = 12\n\n[[stage]]\nkind = \"quality\"\n\
                  max_dup_ngram_frac = 0.3\naction = \"tag\"\n\n[[stage]]\nkind = \"minhash_dedup\"\n";
    let mut books = Vec::new();
    for (threads, out) in [("1", "out1"), ("2", "out2")] {
        let p = write_pipeline(d, &["in/*.jsonl"], stages, out, "part_records = 400");
        let mut text = std::fs::read_to_string(&p).unwrap();
        text.push_str("\n[run]\nbatch_records = 97\n");
        std::fs::write(&p, text).unwrap();
        run_ok(&["run", p.to_str().unwrap(), "--threads", threads, "--quiet"]);
        let s = stats(&d.join(out));
        assert!(
            s["stages"][2]["tagged"].as_u64().unwrap() > 0,
            "quality tags some records"
        );
        let scores: Vec<serde_json::Value> = s["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|st| st["scores"].clone())
            .collect();
        let report = std::fs::read_to_string(d.join(out).join("report.html")).unwrap();
        // Everything after the stage table (which holds CPU seconds).
        let from_scores = report[report.find("<h2>Scores</h2>").expect("a scores section")..].to_string();
        books.push((scores, s["sources"].clone(), from_scores));
    }
    assert_eq!(books[0], books[1]);
}
