//! Throughput of the core: JSONL in -> (no stage | length stage) -> JSONL out.
//!
//! `cargo bench --bench passthrough [-- MB]` writes a synthetic Chinese/English
//! SFT corpus of about MB megabytes (default 200) into a temp dir, runs it
//! through `curate::run::run` with 1 and 2 threads and prints MB/s of JSONL in.
//! Numbers go in the README; tests never check wall-clock time.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use curate::config::Pipeline;
use curate::run::{run, RunOptions};

fn corpus(path: &Path, megabytes: usize) -> u64 {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let zh = "数据清洗是训练大模型之前最重要的一步，重复、低质量和含有隐私信息的样本都会影响模型的效果。";
    let en = "Data curation removes duplicates, boilerplate and personal data before a model ever sees them.";
    let mut written = 0u64;
    let mut i = 0u64;
    while written < (megabytes as u64) << 20 {
        let line = if i.is_multiple_of(2) {
            serde_json::json!({"instruction": format!("第{i}个问题：请解释数据清洗。"), "input": "", "output": zh.repeat(1 + (i % 7) as usize)})
        } else {
            serde_json::json!({"conversations": [{"from": "human", "value": format!("question {i}")}, {"from": "gpt", "value": en.repeat(1 + (i % 5) as usize)}]})
        };
        let s = line.to_string();
        f.write_all(s.as_bytes()).unwrap();
        f.write_all(b"\n").unwrap();
        written += s.len() as u64 + 1;
        i += 1;
    }
    written
}

fn main() {
    let mb: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("corpus.jsonl");
    let bytes = corpus(&input, mb);
    println!(
        "corpus: {:.1} MB of JSONL ({})",
        bytes as f64 / 1e6,
        input.display()
    );
    let cases = [
        ("pass-through, plain out", "", "none"),
        ("pass-through, zstd out", "", "zstd"),
        (
            "length stage, zstd out",
            "[[stage]]\nkind = \"length\"\nmin_chars = 10\n",
            "zstd",
        ),
        (
            "length + exact_dedup, zstd out",
            "[[stage]]\nkind = \"length\"\nmin_chars = 10\n[[stage]]\nkind = \"exact_dedup\"\n",
            "zstd",
        ),
    ];
    println!("| pipeline | threads | MB/s in | records/s |");
    println!("|---|---|---|---|");
    for (name, stages, compression) in cases {
        for threads in [1usize, 2] {
            let text = format!(
                "[input]\npaths = [{:?}]\n{stages}\n[output]\ndir = {:?}\ncompression = {compression:?}\n",
                input.to_str().unwrap(),
                dir.path().join("out").to_str().unwrap()
            );
            let pipeline = Pipeline::parse(&dir.path().join("p.toml"), &text).unwrap();
            let opts = RunOptions {
                threads: Some(threads),
                quiet: true,
                overwrite: true,
                ..Default::default()
            };
            let t = Instant::now();
            let stats = run(&pipeline, &opts).unwrap();
            let secs = t.elapsed().as_secs_f64();
            println!(
                "| {name} | {threads} | {:.0} | {:.0} |",
                bytes as f64 / 1e6 / secs,
                stats.input as f64 / secs
            );
        }
    }
}
