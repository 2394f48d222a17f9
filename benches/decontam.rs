//! Decontamination speed: index build over MMLU + C-Eval + CMMLU, and scan MB/s
//! on one core. `cargo bench --bench decontam` (needs `../shared/data` or
//! `CURATE_SHARED_DATA`).

use std::time::Instant;

use curate::decontam::{build_index, BenchFormat, BenchmarkSpec, MatchConfig};

fn main() {
    let d = curate::shared_data_dir();
    if !d.join("mmlu").is_dir() {
        eprintln!("no benchmarks under {}; skipped", d.display());
        return;
    }
    let specs = vec![
        BenchmarkSpec {
            name: "mmlu".into(),
            format: BenchFormat::Mmlu,
            path: d.join("mmlu/final"),
        },
        BenchmarkSpec {
            name: "ceval".into(),
            format: BenchFormat::Ceval,
            path: d.join("ceval"),
        },
        BenchmarkSpec {
            name: "cmmlu".into(),
            format: BenchFormat::Cmmlu,
            path: d.join("cmmlu"),
        },
    ];
    let t = Instant::now();
    let ix = build_index(&specs, MatchConfig::default()).unwrap();
    println!(
        "index: {} items, {} n-grams in {:.2} s ({} threads)",
        ix.items.len(),
        ix.len(),
        t.elapsed().as_secs_f64(),
        rayon::current_num_threads()
    );
    let mut texts: Vec<String> = Vec::new();
    for p in [
        "alpaca_en/alpaca_data.json",
        "alpaca_zh_hikariming/translated/zh_00000-03252_proofread_done.json",
    ] {
        let v: Vec<serde_json::Map<String, serde_json::Value>> =
            serde_json::from_str(&std::fs::read_to_string(d.join(p)).unwrap()).unwrap();
        for m in v {
            let t: Vec<&str> = ["instruction", "input", "output"]
                .iter()
                .filter_map(|k| m.get(*k)?.as_str())
                .collect();
            texts.push(t.join("\n\n"));
        }
    }
    for (name, zh) in [("en", false), ("zh", true)] {
        let sel: Vec<&String> = texts
            .iter()
            .filter(|t| (t.chars().filter(|c| *c > '\u{2e80}').count() * 3 > t.chars().count()) == zh)
            .collect();
        let bytes: usize = sel.iter().map(|t| t.len()).sum();
        let t = Instant::now();
        let mut hits = 0;
        for _ in 0..2 {
            for s in &sel {
                hits += ix.scan(s).len();
            }
        }
        let secs = t.elapsed().as_secs_f64();
        // Where the time goes: traditional->simplified and tokenizing alone.
        let t2 = Instant::now();
        let mut ntok = 0;
        for s in &sel {
            ntok += curate::decontam::normalize::tokenize(s).1.len();
        }
        let tok_secs = t2.elapsed().as_secs_f64();
        let t3 = Instant::now();
        let mut nconv = 0;
        for s in &sel {
            nconv += curate::decontam::normalize::to_simplified(s).len();
        }
        let conv_secs = t3.elapsed().as_secs_f64();
        println!(
            "  {name}: t2s alone {:.1} MB/s, t2s + tokenize {:.1} MB/s ({ntok} tokens, {nconv} bytes)",
            bytes as f64 / 1e6 / conv_secs,
            bytes as f64 / 1e6 / tok_secs
        );
        println!(
            "scan {name}: {} records, {:.1} MB x2 in {:.2} s = {:.1} MB/s on one core ({} hits)",
            sel.len(),
            bytes as f64 / 1e6,
            secs,
            2.0 * bytes as f64 / 1e6 / secs,
            hits / 2
        );
    }
}
