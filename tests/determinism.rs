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
