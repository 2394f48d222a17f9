//! The output loads as one dataset in the tools people use: the whole `kept/` and
//! `rejected/` folders of the default pipeline, in Parquet and in JSON Lines (zstd),
//! read by pyarrow, pandas and Hugging Face `datasets` from the project's own venv
//! (`scripts/py_consumers.sh install`, which `scripts/test.sh` runs and then sets
//! `CURATE_REQUIRE_PY_CONSUMERS=1`). Without that variable and without the venv, the
//! tests print a note and return.
//!
//! Each part used to infer its own schema, so a folder did not load as a whole: a list
//! empty in one part was `list<null>` there and `list<struct>` in the next
//! (`meta.toxicity.lexicon_hits`), optional keys came and went (`meta.language.via`).
//! The second run makes many small parts of different optional keys on purpose.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    match std::env::var_os("CURATE_PY_VENV") {
        Some(v) => PathBuf::from(v).join("bin/python"),
        None => repo().join(".venv-py/bin/python"),
    }
}

/// True when the venv imports all three consumers; fails instead of skipping when
/// `CURATE_REQUIRE_PY_CONSUMERS` is set.
fn have_consumers() -> bool {
    let ok = Command::new(python())
        .args(["-c", "import pyarrow, pandas, datasets"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CURATE_REQUIRE_PY_CONSUMERS").is_none(),
            "CURATE_REQUIRE_PY_CONSUMERS is set but {} cannot import pyarrow, pandas and datasets \
             (scripts/py_consumers.sh install)",
            python().display()
        );
        eprintln!("note: the Python consumers are not installed; skipping (scripts/test.sh installs them)");
    }
    ok
}

/// Loads `kept/` and `rejected/` of one output folder whole, as a user would, and
/// prints the row count each loader saw (JSON); asserts one schema across the parts.
const LOAD_SCRIPT: &str = r#"
import glob, io, json, os, sys
import zstandard
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import datasets

out, fmt, cache = sys.argv[1], sys.argv[2], sys.argv[3]
datasets.disable_progress_bars()
features = json.load(open(os.path.join(out, "features.json")))
counts = {}
for sub in ["kept", "rejected"]:
    folder = os.path.join(out, sub)
    files = sorted(glob.glob(os.path.join(folder, "part-*")))
    seen = {}
    if not files:
        counts[sub] = seen
        continue
    if fmt == "parquet":
        schemas = {str(pq.read_schema(f)) for f in files}
        assert len(schemas) == 1, f"{sub}: {len(schemas)} different schemas among {len(files)} parts"
        seen["pyarrow"] = ds.dataset(folder, format="parquet").to_table().num_rows
        seen["pandas"] = len(pd.read_parquet(folder))
        seen["datasets"] = len(datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=cache))
    else:
        # Every record has the same keys, at every level of nesting (null is a null
        # object, not a missing key).
        def walk(v, path, found):
            if isinstance(v, dict):
                found.setdefault(path, set()).add(tuple(v))
                for k, x in v.items():
                    walk(x, path + "." + k, found)
            elif isinstance(v, list):
                for x in v:
                    walk(x, path + "[]", found)
        found = {}
        for f in files:
            frame = pd.read_json(f, lines=True, compression="infer", dtype=False)
            seen["pandas"] = seen.get("pandas", 0) + len(frame)
            raw = open(f, "rb").read()
            if f.endswith(".zst"):
                raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)).read()
            for line in raw.decode().splitlines():
                walk(json.loads(line), "", found)
        varying = {p: s for p, s in found.items() if len(s) > 1}
        assert not varying, f"{sub}: key sets differ between records: {varying}"
        feats = datasets.Features.from_dict(features[sub])
        seen["datasets"] = len(datasets.load_dataset("json", data_files=files, split="train", features=feats, cache_dir=cache))
    counts[sub] = seen
print(json.dumps(counts))
"#;

/// The default pipeline with absolute paths, its output format set, optional extra inputs
/// and part size; written into `dir`.
fn default_pipeline(dir: &Path, format: &str, extra_input: Option<&Path>, part_records: u64) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("pipelines/zh_sft.toml")).unwrap();
    let abs = format!("\"{}/", repo().display());
    let mut text = text
        .replace("\"../", &abs)
        .replace("format = \"jsonl\"", &format!("format = \"{format}\""))
        .replace("part_records = 100000", &format!("part_records = {part_records}"));
    assert!(text.contains(&format!("part_records = {part_records}")));
    if let Some(extra) = extra_input {
        text = text.replace(
            "paths = [",
            &format!("paths = [{:?}, ", extra.display().to_string()),
        );
    }
    let path = dir.join(format!("zh_sft_{format}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Run curate, then load its output with each consumer: every count equals stats.json's.
fn run_and_load(pipeline: &Path, out: &Path, format: &str, cache: &Path) {
    run_ok(&[
        "run",
        pipeline.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let s = stats(out);
    let script = out.parent().unwrap().join("load.py");
    std::fs::write(&script, LOAD_SCRIPT).unwrap();
    let got = Command::new(python())
        .arg(&script)
        .arg(out)
        .arg(format)
        .arg(cache)
        .output()
        .unwrap();
    assert!(
        got.status.success(),
        "{format} output of {} did not load:\n{}",
        pipeline.display(),
        String::from_utf8_lossy(&got.stderr)
    );
    let counts: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    for sub in ["kept", "rejected"] {
        let want = s[sub].as_u64().unwrap();
        let seen = counts[sub].as_object().unwrap();
        if want == 0 {
            assert!(seen.is_empty(), "{sub}: no records but parts: {counts}");
            continue;
        }
        let loaders = if format == "parquet" {
            vec!["pyarrow", "pandas", "datasets"]
        } else {
            vec!["pandas", "datasets"]
        };
        for loader in loaders {
            assert_eq!(
                seen[loader].as_u64(),
                Some(want),
                "{format} {sub} via {loader}: {counts}"
            );
        }
    }
}

#[test]
fn default_pipeline_output_loads_whole_in_pyarrow_pandas_and_datasets() {
    if !have_consumers() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    for format in ["parquet", "jsonl"] {
        let pipeline = default_pipeline(tmp.path(), format, None, 100000);
        let out = tmp.path().join(format!("out-{format}"));
        run_and_load(&pipeline, &out, format, &tmp.path().join("hf-cache"));
        assert!(
            stats(&out)["rejected"].as_u64().unwrap() > 0,
            "the samples have rejects"
        );
    }
}

/// Records whose optional input keys come and go: `tags` is an empty list in the first
/// records and a list of strings later, `source` and an input `meta` appear in a few.
fn varying_records(n: usize) -> String {
    let mut text = String::new();
    for (i, line) in synthetic_jsonl(n, 11).lines().enumerate() {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        let o = v.as_object_mut().unwrap();
        o.insert(
            "tags".into(),
            if i < n / 2 {
                serde_json::json!([])
            } else {
                serde_json::json!(["t", format!("n{}", i % 3)])
            },
        );
        if i % 7 == 0 {
            o.insert("source".into(), serde_json::json!(format!("s{i}")));
        }
        if i % 11 == 0 {
            o.insert("meta".into(), serde_json::json!({"origin": "crawl", "score": i}));
        }
        text.push_str(&v.to_string());
        text.push('\n');
    }
    text
}

#[test]
fn many_small_parts_of_different_optional_keys_load_as_one_dataset() {
    if !have_consumers() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let extra = tmp.path().join("varying.jsonl");
    std::fs::write(&extra, varying_records(400)).unwrap();
    for format in ["parquet", "jsonl"] {
        let pipeline = default_pipeline(tmp.path(), format, Some(&extra), 25);
        let out = tmp.path().join(format!("out-{format}"));
        run_and_load(&pipeline, &out, format, &tmp.path().join("hf-cache"));
        let parts = stats(&out)["kept_parts"].as_array().unwrap().len();
        assert!(parts >= 15, "{format}: only {parts} kept parts");
    }
}
