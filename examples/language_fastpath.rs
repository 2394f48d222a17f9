//! How the `language` stage's English fast path agrees with whatlang.
//!
//! `cargo run --release --example language_fastpath -- [--lines] FILE.jsonl...`
//! reads every string value of each JSON line (joined, as the stage joins a
//! record's texts; `--lines`: each line of each string on its own instead), and
//! for every text that whatlang would decide (not Chinese by the CJK share) counts
//! how many the fast path takes and how many of those whatlang calls something
//! other than `en`, or `en` with a confidence below 1.0. Numbers in
//! docs/benchmarks/speed.md.

use curate::stages::language::{clearly_english, detect_whatlang, letter_counts};
use serde_json::Value;
use std::io::BufRead;

fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(m) => m.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let lines = args.iter().any(|a| a == "--lines");
    let (mut to_whatlang, mut fast, mut disagree, mut below_one) = (0u64, 0u64, 0u64, 0u64);
    for path in args.iter().filter(|a| !a.starts_with("--")) {
        let f = std::io::BufReader::new(std::fs::File::open(path).expect("open"));
        for line in f.lines() {
            let Ok(v) = serde_json::from_str::<Value>(&line.expect("read")) else {
                continue;
            };
            let mut parts = Vec::new();
            strings(&v, &mut parts);
            let texts: Vec<String> = if lines {
                parts.iter().flat_map(|p| p.lines().map(str::to_string)).collect()
            } else {
                vec![parts.join("\n\n")]
            };
            for t in texts {
                let n = letter_counts(&t);
                if n.letter_tokens == 0 || n.han as f64 / n.letter_tokens as f64 >= 0.3 {
                    continue;
                }
                to_whatlang += 1;
                if clearly_english(&n) {
                    fast += 1;
                    let (lang, conf) = detect_whatlang(&t);
                    if lang != "en" {
                        disagree += 1;
                        if disagree <= 10 {
                            let head: String = t.chars().take(120).collect();
                            eprintln!("whatlang {lang} {conf:.3}: {head:?}");
                        }
                    } else if conf < 1.0 {
                        below_one += 1;
                    }
                }
            }
        }
    }
    println!(
        "texts whatlang would decide: {to_whatlang}; fast path takes {fast} ({:.1}%); of those whatlang says not en: {disagree}, en below confidence 1.0: {below_one}",
        100.0 * fast as f64 / to_whatlang.max(1) as f64
    );
}
