//! A run killed with SIGKILL and started again ends byte-identical to an
//! uninterrupted run, without redoing the units it had finished.

mod common;
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

fn units_done(out: &Path) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(out.join(".curate/checkpoint.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some((v["next_source"].as_u64()?, v["next_chunk"].as_u64()?))
}

/// Start a run and SIGKILL it once the checkpoint has moved past `after`.
fn kill_after_progress(pipeline: &Path, out: &Path, after: Option<(u64, u64)>) -> Option<(u64, u64)> {
    let mut child = curate()
        .args(["run", pipeline.to_str().unwrap(), "--quiet", "--threads", "2"])
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(done) = units_done(out) {
            if Some(done) != after && done > after.unwrap_or((0, 0)) {
                child.kill().unwrap(); // SIGKILL on Unix
                child.wait().unwrap();
                return Some(done);
            }
        }
        if let Ok(Some(_)) = child.try_wait() {
            return None; // finished before we could kill it
        }
        assert!(start.elapsed() < Duration::from_secs(120), "run made no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn kill_9_and_resume_is_byte_identical() {
    kill_and_resume(TEST_STAGES, 60_000, "part_records = 3000", None);
}

/// The stages before a MinHash stage run once, in its prepass, which spills the
/// records as they reach it; the main pass reads them back. Killed in the main
/// pass, the run resumes from the spill and ends identical, books included.
#[test]
fn kill_9_with_a_prepass_spill_resumes_byte_identical() {
    let stages = "[[stage]]\nkind = \"normalize\"\n\n[[stage]]\nkind = \"length\"\nmin_chars = 12\n\n\
                  [[stage]]\nkind = \"exact_dedup\"\n\n[[stage]]\nkind = \"minhash_dedup\"\n\n\
                  [[stage]]\nkind = \"quality\"\n";
    kill_and_resume(stages, 12_000, "part_records = 500", Some(3));
}

/// The same with `span_dedup`: its count prepass spills the records, and its tallies
/// (records emptied, the texts of the most frequent spans) resume with the checkpoint.
#[test]
fn kill_9_in_span_dedup_resumes_byte_identical() {
    let stages = "[[stage]]\nkind = \"normalize\"\n\n[[stage]]\nkind = \"length\"\nmin_chars = 12\n\n\
                  [[stage]]\nkind = \"span_dedup\"\nmin_width = 6\n\n[[stage]]\nkind = \"quality\"\n";
    kill_and_resume(stages, 12_000, "part_records = 500", Some(2));
}

/// A global stage that comes first spills no record (the records reach it as read,
/// so the main pass reads the input again); a later global stage's prepass reads the
/// input too and spills. Killed in the main pass, the run resumes identical, books
/// included.
#[test]
fn kill_9_with_a_first_global_stage_resumes_byte_identical() {
    let stages = "[[stage]]\nkind = \"minhash_dedup\"\n\n[[stage]]\nkind = \"span_dedup\"\nmin_width = 6\n\n\
                  [[stage]]\nkind = \"quality\"\n";
    kill_and_resume(stages, 12_000, "part_records = 500", Some(1));
}

/// Run `stages` over 3 synthetic files of `per_file` records once uninterrupted and
/// once killed (SIGKILL) and resumed; `spill_stage`: the stage whose prepass spills.
fn kill_and_resume(stages: &str, per_file: usize, extra: &str, spill_stage: Option<usize>) {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::create_dir(d.join("in")).unwrap();
    for i in 0..3u64 {
        std::fs::write(d.join(format!("in/{i}.jsonl")), synthetic_jsonl(per_file, i)).unwrap();
    }
    let spill_file =
        |out: &Path| spill_stage.map(|k| out.join(format!(".curate/prepass-{k:03}/records.spill")));
    // The reference: one uninterrupted run.
    let p_ref = write_pipeline(d, &["in/*.jsonl"], stages, "ref", extra);
    std::fs::rename(&p_ref, d.join("ref.toml")).unwrap();
    run_ok(&["run", d.join("ref.toml").to_str().unwrap(), "--quiet"]);
    let reference = snapshot(&d.join("ref"), &["kept", "rejected"]);
    assert!(reference.len() > 20);

    let p = write_pipeline(d, &["in/*.jsonl"], stages, "out", extra);
    let out = d.join("out");
    let mut kills = 0;
    let mut last = None;
    for _ in 0..3 {
        match kill_after_progress(&p, &out, last) {
            Some(done) => {
                kills += 1;
                last = Some(done);
                assert!(!out.join("stats.json").exists(), "a killed run has not finished");
                if let Some(f) = spill_file(&out) {
                    assert!(f.exists(), "the main pass reads {}", f.display());
                }
            }
            None => break,
        }
    }
    assert!(
        kills >= 1,
        "the run finished before it could be killed: make the input larger"
    );
    // Files of finished units survive the kill untouched and are not rewritten.
    let (src, chunk) = last.unwrap();
    let first_part = out.join("kept/part-00000-00000.jsonl.zst");
    let mtime = std::fs::metadata(&first_part).unwrap().modified().unwrap();
    let resumed = run_ok(&["run", p.to_str().unwrap()]);
    let msg = String::from_utf8_lossy(&resumed.stderr);
    assert!(
        msg.contains(&format!(
            "resuming in {} at source {src} part {chunk}",
            out.display()
        )),
        "{msg}"
    );
    assert_eq!(
        std::fs::metadata(&first_part).unwrap().modified().unwrap(),
        mtime,
        "finished unit redone"
    );
    check_books(&out);
    assert_eq!(snapshot(&out, &["kept", "rejected"]), reference);
    let (a, b) = (stats(&out), stats(&d.join("ref")));
    for key in [
        "input",
        "kept",
        "rejected",
        "kept_parts",
        "rejected_parts",
        "samples",
        "sources",
    ] {
        assert_eq!(a[key], b[key], "stats.{key}");
    }
    for (sa, sb) in a["stages"]
        .as_array()
        .unwrap()
        .iter()
        .zip(b["stages"].as_array().unwrap())
    {
        for key in [
            "in", "bytes_in", "kept", "dropped", "modified", "tagged", "reasons", "summary", "scores",
        ] {
            assert_eq!(sa[key], sb[key], "stage {} {key}", sa["name"]);
        }
    }
    for out in [&out, &d.join("ref")] {
        if let Some(f) = spill_file(out) {
            assert!(!f.exists(), "a finished run keeps no spill: {}", f.display());
            assert!(f.with_file_name("spill.json").exists());
        }
    }
    // A further rerun of a finished run changes nothing.
    run_ok(&["run", p.to_str().unwrap(), "--quiet"]);
    assert_eq!(snapshot(&out, &["kept", "rejected"]), reference);
}

#[test]
fn a_changed_pipeline_does_not_resume_into_old_output() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("a.jsonl"), synthetic_jsonl(100, 1)).unwrap();
    let p = write_pipeline(d, &["a.jsonl"], TEST_STAGES, "out", "");
    run_ok(&["run", p.to_str().unwrap(), "--quiet"]);
    let p = write_pipeline(d, &["a.jsonl"], "", "out", "");
    let o = run_curate(&["run", p.to_str().unwrap(), "--quiet"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--overwrite"));
    run_ok(&["run", p.to_str().unwrap(), "--quiet", "--overwrite"]);
    assert_eq!(stats(&d.join("out"))["kept"], 100);
}
