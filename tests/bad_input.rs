//! Bad input never panics and is never silently skipped: each case becomes a
//! rejected record with reason `malformed` and its position, or a clear error
//! that names the file.

mod common;
use common::*;
use std::io::Write;
use std::path::Path;

fn run_on(d: &Path, input: &str, stages: &str) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let p = write_pipeline(d, &[input], stages, "out", "");
    run_ok(&["run", p.to_str().unwrap(), "--quiet"]);
    check_books(&d.join("out"))
}

fn malformed(rejected: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    rejected.iter().filter(|r| r["reason"] == "malformed").collect()
}

#[test]
fn broken_json_line() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("a.jsonl"),
        "{\"text\":\"ok one\"}\n{\"text\": \"unterminated\n{\"text\":\"ok two\"}\n",
    )
    .unwrap();
    let (kept, rej) = run_on(tmp.path(), "a.jsonl", "");
    assert_eq!(kept.len(), 2);
    let m = malformed(&rej);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0]["source"], "a.jsonl:2");
    assert_eq!(m[0]["stage"], "read");
    assert!(m[0]["detail"].as_str().unwrap().contains("invalid JSON"));
    assert_eq!(m[0]["raw"], "{\"text\": \"unterminated");
}

#[test]
fn invalid_utf8() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bytes = b"{\"text\":\"good\"}\n{\"text\":\"bad ".to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe, b'"', b'}', b'\n']);
    bytes.extend_from_slice(b"{\"text\":\"good again\"}\n");
    std::fs::write(tmp.path().join("a.jsonl"), bytes).unwrap();
    let (kept, rej) = run_on(tmp.path(), "a.jsonl", "");
    assert_eq!(kept.len(), 2);
    let m = malformed(&rej);
    assert_eq!(m.len(), 1);
    assert!(
        m[0]["detail"]
            .as_str()
            .unwrap()
            .contains("invalid UTF-8 at byte 13"),
        "{}",
        m[0]
    );
    assert_eq!(m[0]["source"], "a.jsonl:2");
}

fn many_lines(n: usize) -> String {
    (0..n)
        .map(|i| format!("{{\"text\":\"record number {i} with some text to compress\"}}\n"))
        .collect()
}

#[test]
fn truncated_gzip() {
    let tmp = tempfile::tempdir().unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(many_lines(5000).as_bytes()).unwrap();
    let full = enc.finish().unwrap();
    std::fs::write(tmp.path().join("a.jsonl.gz"), &full[..full.len() / 2]).unwrap();
    let (kept, rej) = run_on(tmp.path(), "a.jsonl.gz", "");
    assert!(!kept.is_empty() && kept.len() < 5000, "the readable head is kept");
    let m = malformed(&rej);
    assert_eq!(m.len(), 1, "one rejected record marks the lost tail");
    let detail = m[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("a.jsonl.gz") && detail.contains("truncated"),
        "{detail}"
    );
}

#[test]
fn truncated_zstd() {
    let tmp = tempfile::tempdir().unwrap();
    let full = zstd::encode_all(many_lines(5000).as_bytes(), 3).unwrap();
    std::fs::write(tmp.path().join("a.jsonl.zst"), &full[..full.len() * 2 / 3]).unwrap();
    let (kept, rej) = run_on(tmp.path(), "a.jsonl.zst", "");
    assert!(kept.len() < 5000);
    let m = malformed(&rej);
    assert_eq!(m.len(), 1);
    assert!(m[0]["detail"].as_str().unwrap().contains("a.jsonl.zst"));
}

/// Compression is chosen by the first bytes, not the name: nothing is lost to a
/// misnamed file, and garbage becomes malformed records naming the file.
#[test]
fn misnamed_and_garbage_compressed_files_are_never_silent_zeros() {
    let tmp = tempfile::tempdir().unwrap();
    let lines = many_lines(20);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(lines.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(lines.as_bytes(), 3).unwrap();
    let noise: Vec<u8> = (0..3000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    // (file name, bytes, records kept)
    let cases: [(&str, Vec<u8>, usize); 6] = [
        ("plain_named.jsonl.gz", lines.clone().into_bytes(), 20),
        ("plain_named.jsonl.zst", lines.clone().into_bytes(), 20),
        ("gzip_unnamed.jsonl", gz.clone(), 20),
        ("zstd_named_gz.jsonl.gz", zst, 20),
        ("gzip_named_zst.jsonl.zst", gz, 20),
        ("noise.jsonl.gz", noise, 0),
    ];
    for (name, bytes, want) in cases {
        let dir = tmp.path().join(name.replace('.', "_"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join(name), &bytes).unwrap();
        let (kept, rej) = run_on(&dir, name, "");
        assert_eq!(kept.len(), want, "{name}: {rej:?}");
        if want == 0 {
            let m = malformed(&rej);
            assert!(!m.is_empty(), "{name}: garbage gives malformed records");
            assert!(
                m.iter().all(|r| r["id"].as_str().unwrap().contains(name)),
                "{m:?}"
            );
        }
    }
}

/// Two runs into one output directory: the second is refused while the first holds it.
#[test]
fn a_second_run_into_a_locked_output_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("a.jsonl"), many_lines(10)).unwrap();
    let p = write_pipeline(tmp.path(), &["a.jsonl"], "", "out", "");
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    // This test process plays the first run: it holds the lock.
    let held = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(out.join(".lock"))
        .unwrap();
    held.lock().unwrap();
    std::fs::write(out.join(".lock"), "4242").unwrap();
    let o = run_curate(&["run", p.to_str().unwrap(), "--quiet"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("another curate run (pid 4242)"), "{err}");
    drop(held);
    // Released: the run goes ahead.
    let (kept, _) = run_on(tmp.path(), "a.jsonl", "");
    assert_eq!(kept.len(), 10);
}

/// A missing `--input` path is blamed on `--input`, not on the pipeline file.
#[test]
fn a_missing_input_override_names_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("a.jsonl"), many_lines(2)).unwrap();
    let p = write_pipeline(tmp.path(), &["a.jsonl"], "", "out", "");
    let missing = tmp.path().join("nowhere.jsonl");
    let o = run_curate(&[
        "run",
        p.to_str().unwrap(),
        "--input",
        missing.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--input") && err.contains("nowhere.jsonl"), "{err}");
    assert!(!err.contains("pipeline.toml"), "{err}");
}

/// The run's table is its result: on stdout, so `curate run ... > table.txt` keeps it.
#[test]
fn the_run_table_goes_to_stdout() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("a.jsonl"), many_lines(3)).unwrap();
    let p = write_pipeline(tmp.path(), &["a.jsonl"], "", "out", "");
    let o = run_ok(&["run", p.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("output: ") && out.contains("report.html"), "{out}");
    assert!(!String::from_utf8_lossy(&o.stderr).contains("report.html"));
}

#[test]
fn empty_file_is_reported_not_silent() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("empty.jsonl"), "").unwrap();
    let (kept, rej) = run_on(tmp.path(), "empty.jsonl", "");
    assert!(kept.is_empty() && rej.is_empty());
    let s = stats(&tmp.path().join("out"));
    assert_eq!(s["input"], 0);
    let notes = s["sources"][0]["notes"].to_string();
    assert!(notes.contains("empty"), "{notes}");
}

#[test]
fn record_without_the_mapped_field() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(
        d.join("a.jsonl"),
        "{\"content\":\"mapped text\"}\n{\"text\":\"wrong field\"}\n",
    )
    .unwrap();
    let text = "[input]\npaths = [\"a.jsonl\"]\nschema = \"text\"\n[input.fields]\ntext = \"content\"\n[output]\ndir = \"out\"\n";
    std::fs::write(d.join("p.toml"), text).unwrap();
    run_ok(&["run", d.join("p.toml").to_str().unwrap(), "--quiet"]);
    let (kept, rej) = check_books(&d.join("out"));
    assert_eq!(kept.len(), 1);
    assert_eq!(rej.len(), 1);
    assert!(rej[0]["detail"]
        .as_str()
        .unwrap()
        .contains("missing field `content`"));
    assert_eq!(
        rej[0]["record"]["text"], "wrong field",
        "the whole original record is kept"
    );
}

#[test]
fn hundred_megabyte_line() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(d.join("big.jsonl")).unwrap());
        f.write_all(b"{\"text\":\"before\"}\n{\"text\":\"").unwrap();
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..100 {
            f.write_all(&chunk).unwrap();
        }
        f.write_all(b"\"}\n{\"text\":\"after\"}\n").unwrap();
    }
    let (kept, rej) = run_on(d, "big.jsonl", "");
    assert_eq!(kept.len(), 2);
    assert_eq!(kept[1]["text"], "after");
    let m = malformed(&rej);
    assert_eq!(m.len(), 1);
    assert!(m[0]["detail"]
        .as_str()
        .unwrap()
        .contains("exceeds max_record_bytes"));
    assert_eq!(m[0]["raw_bytes"], 104_857_611u64);
    assert!(
        m[0]["raw"].as_str().unwrap().len() <= 65536,
        "only a preview is kept"
    );
}

#[test]
fn json_array_with_non_objects_and_truncation() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("a.json"),
        "[{\"text\":\"one\"}, 42, [1], {\"text\":\"two\"}, {\"text\": \"cut",
    )
    .unwrap();
    let (kept, rej) = run_on(tmp.path(), "a.json", "");
    assert_eq!(kept.len(), 2);
    let m = malformed(&rej);
    assert_eq!(m.len(), 3);
    assert!(m[0]["detail"].as_str().unwrap().contains("found number"));
    assert!(m[1]["detail"].as_str().unwrap().contains("found array"));
    assert!(m[2]["detail"].as_str().unwrap().contains("truncated"));
}

#[test]
fn parquet_with_the_wrong_schema_is_a_clear_error() {
    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use std::sync::Arc;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let batch = RecordBatch::try_from_iter(vec![
        ("title", Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef),
        ("score", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
    ])
    .unwrap();
    let file = std::fs::File::create(d.join("wrong.parquet")).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let p = write_pipeline(d, &["wrong.parquet"], "", "out", "");
    let out = run_curate(&["run", p.to_str().unwrap(), "--quiet"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("wrong.parquet") && err.contains("wrong schema") && err.contains("title"),
        "{err}"
    );
    // A file that is not Parquet at all.
    std::fs::write(d.join("junk.parquet"), b"this is not parquet").unwrap();
    let p = write_pipeline(d, &["junk.parquet"], "", "out2", "");
    let out = run_curate(&["run", p.to_str().unwrap(), "--quiet"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("junk.parquet"));
}

#[test]
fn garbage_html_does_not_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::create_dir(d.join("pages")).unwrap();
    let garbage: Vec<u8> = (0..20000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(d.join("pages/garbage.html"), garbage).unwrap();
    std::fs::write(d.join("pages/ok.htm"), "<html><body><p>正文</p></body>").unwrap();
    std::fs::write(d.join("pages/empty.html"), "").unwrap();
    let (kept, _) = run_on(d, "pages", "");
    assert_eq!(kept.len(), 3);
    assert_eq!(kept[2]["id"], "ok.htm");
    assert!(kept[2]["meta"]["decode"]["encoding"].is_string());
}

#[test]
fn config_errors_exit_2_and_name_file_line_key() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("a.jsonl"), "{\"text\":\"x\"}\n").unwrap();
    let p = write_pipeline(
        d,
        &["a.jsonl"],
        "[[stage]]\nkind = \"length\"\nmin_char = 3",
        "out",
        "",
    );
    let out = run_curate(&["run", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    // The line of the offending key (`min_char = 3`), not of the `[[stage]]` header (4).
    assert!(
        err.contains("pipeline.toml:6") && err.contains("min_char"),
        "{err}"
    );
    let p = write_pipeline(d, &["missing/*.jsonl"], "", "out", "");
    let out = run_curate(&["validate", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing/*.jsonl"));
    let p = write_pipeline(d, &["a.jsonl"], "[[stage]]\nkind = \"nope\"", "out", "");
    let out = run_curate(&["validate", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown stage kind `nope`"));
    // A stage that refuses its parameters is a config error naming the stage's line.
    let p = write_pipeline(
        d,
        &["a.jsonl"],
        "[[stage]]\nkind = \"length\"\nmin_chars = 5\nmax_chars = 2",
        "out",
        "",
    );
    let out = run_curate(&["validate", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pipeline.toml:4") && err.contains("min 5 > max 2"),
        "{err}"
    );
    let out = run_curate(&["run"]);
    assert_eq!(out.status.code(), Some(2), "usage error");
    let out = run_curate(&["run", d.join("nonexistent.toml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
}

/// Unmounts the test's tmpfs when the test ends, whatever happened.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_in_the_prepass_names_the_index_not_a_record() {
    // A 1 MB tmpfs as the output folder: the minhash prepass's index and spill cannot fit.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("small");
    std::fs::create_dir(&out).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&out)
        .output();
    if !mounted.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!("note: cannot mount a tmpfs here (needs root); skipping the full-disk case");
        return;
    }
    let _guard = Mounted(out.clone());
    let input = tmp.path().join("in.jsonl");
    std::fs::write(&input, synthetic_jsonl(30_000, 7)).unwrap();
    let stages = "[[stage]]\nkind = \"minhash_dedup\"\n";
    let p = write_pipeline(tmp.path(), &["in.jsonl"], stages, "small/run", "");
    let o = run_curate(&["run", p.to_str().unwrap(), "--quiet"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "a full disk must fail the run: {err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(
        err.contains(out.join("run").to_str().unwrap()),
        "names a file of the output: {err}"
    );
    assert!(!err.contains("on record"), "blamed on a record: {err}");
}
