//! Shared helpers for the integration tests: run the real binary, read its output.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `curate` binary built for these tests.
pub fn curate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_curate"))
}

/// Run `curate` with args; returns the output (not checked).
pub fn run_curate(args: &[&str]) -> Output {
    curate().args(args).output().expect("curate binary runs")
}

/// Run and require success, printing stderr on failure.
pub fn run_ok(args: &[&str]) -> Output {
    let out = run_curate(args);
    assert!(
        out.status.success(),
        "curate {args:?} failed ({:?}):\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Write a pipeline file into `dir` with the given input paths, stages and output dir.
pub fn write_pipeline(
    dir: &Path,
    inputs: &[&str],
    stages: &str,
    output: &str,
    extra_output: &str,
) -> PathBuf {
    let paths = inputs
        .iter()
        .map(|p| format!("{p:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let text =
        format!("[input]\npaths = [{paths}]\n\n{stages}\n\n[output]\ndir = {output:?}\n{extra_output}\n");
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Decompressed text of a part file (by extension).
pub fn read_part(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    let name = path.to_string_lossy();
    let mut out = String::new();
    if name.ends_with(".parquet") {
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
                .unwrap()
                .build()
                .unwrap();
        let mut buf = Vec::new();
        {
            let mut w = arrow_json::LineDelimitedWriter::new(&mut buf);
            for batch in reader {
                w.write(&batch.unwrap()).unwrap();
            }
            w.finish().unwrap();
        }
        return String::from_utf8(buf).unwrap();
    }
    if name.ends_with(".zst") {
        zstd::stream::read::Decoder::new(&bytes[..])
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
    } else if name.ends_with(".gz") {
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_string(&mut out)
            .unwrap();
    } else {
        out = String::from_utf8(bytes).unwrap();
    }
    out
}

/// All JSON lines of the parts in `dir/sub`, in part order.
pub fn read_lines(dir: &Path, sub: &str) -> Vec<serde_json::Value> {
    let mut parts: Vec<PathBuf> = std::fs::read_dir(dir.join(sub))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    parts.sort();
    parts
        .iter()
        .flat_map(|p| {
            read_part(p)
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The stats.json of a run.
pub fn stats(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("stats.json")).unwrap()).unwrap()
}

/// Check the books of a finished run against its files: input = kept + rejected,
/// and the part files hold exactly those records.
pub fn check_books(dir: &Path) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let s = stats(dir);
    let (input, kept, rejected) = (
        s["input"].as_u64().unwrap(),
        s["kept"].as_u64().unwrap(),
        s["rejected"].as_u64().unwrap(),
    );
    assert_eq!(input, kept + rejected, "input = kept + rejected");
    let k = read_lines(dir, "kept");
    let r = read_lines(dir, "rejected");
    assert_eq!(k.len() as u64, kept, "kept parts hold the kept count");
    assert_eq!(r.len() as u64, rejected, "rejected parts hold the rejected count");
    for rej in &r {
        for key in ["id", "stage", "reason", "detail", "source"] {
            assert!(rej.get(key).is_some(), "rejected record without `{key}`: {rej}");
        }
    }
    (k, r)
}

/// Every file under `dir/sub` with its bytes, for byte-identity checks.
pub fn snapshot(dir: &Path, subs: &[&str]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in subs {
        let mut parts: Vec<PathBuf> = std::fs::read_dir(dir.join(sub))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        parts.sort();
        for p in parts {
            out.push((
                format!("{sub}/{}", p.file_name().unwrap().to_string_lossy()),
                std::fs::read(&p).unwrap(),
            ));
        }
    }
    out
}

/// Deterministic synthetic SFT records: Chinese and English, all schemas, some too short.
pub fn synthetic_jsonl(n: usize, seed: u64) -> String {
    let mut s = String::new();
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let words = [
        "数据", "清洗", "模型", "训练", "质量", "data", "clean", "model", "中文", "文本", "指令", "回答",
    ];
    for i in 0..n {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let len = (x >> 33) % 40;
        let body: String = (0..len)
            .map(|k| words[((x >> (k % 20)) as usize + k as usize) % words.len()])
            .collect();
        let line = match i % 5 {
            0 => {
                serde_json::json!({"instruction": format!("问题{i}：{body}"), "input": "", "output": body})
            }
            1 => {
                serde_json::json!({"conversations": [{"from": "human", "value": format!("请解释{i}")}, {"from": "gpt", "value": body}]})
            }
            2 => {
                serde_json::json!({"messages": [{"role": "user", "content": format!("q{i}")}, {"role": "assistant", "content": body}]})
            }
            3 => serde_json::json!({"prompt": format!("p{i}"), "chosen": body, "rejected": "no"}),
            _ => serde_json::json!({"id": format!("doc-{seed}-{i}"), "text": body}),
        };
        s.push_str(&line.to_string());
        s.push('\n');
    }
    s
}

/// A length stage and a (stateful, sequential) exact dedup stage that each drop
/// some of the synthetic records.
pub const TEST_STAGES: &str = "[[stage]]\nkind = \"length\"\nmin_chars = 12\nresponse = { min = 3 }\n\n[[stage]]\nkind = \"exact_dedup\"\n";

/// A tensor's values as one flat `f32` list (any float dtype).
pub fn values(t: &candle_core::Tensor) -> Vec<f32> {
    t.flatten_all()
        .unwrap()
        .to_dtype(candle_core::DType::F32)
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// splitmix64: a small fixed generator for deterministic test data.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// A float in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// Kept and rejected parts of a sharded run, by file name, from every rank.
pub fn sharded_parts(out: &Path) -> Vec<(String, Vec<u8>)> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(out.join("ranks"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let mut all: Vec<(String, Vec<u8>)> = dirs
        .iter()
        .flat_map(|d| snapshot(d, &["kept", "rejected"]))
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}
