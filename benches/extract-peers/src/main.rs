//! The scorer of benches/extract_peers.sh: every tool's extracted texts against
//! the gold texts, with curate's scorer (src/extract/score.rs, included by path,
//! so there is exactly one scorer).
//!
//! `extract-peers score MANIFEST TOOL CLOCK TEXTS [PERPAGE]`
//!
//! * MANIFEST (JSONL, written by benches/extract_peers.sh): one line per page and
//!   group, `{"group", "source", "id", "split", "scorer": "token"|"char", "gold"}`.
//!   A page may sit in several groups (`wceb/dragnet` and `wceb/dragnet+comments`
//!   with two gold texts; `wceb/all`).
//! * TEXTS (JSONL): one line per extracted page, `{"source", "id", "text"}`, with
//!   `"cpu_s"` (the extraction's CPU seconds, the peers) or, for a tool timed per
//!   process (curate), lines `{"source", "run_cpu_s", "run_pages"}` for each run.
//!   A page the tool rejected is a line with `"text": ""`; a manifest page with
//!   no line at all is an error (nothing is dropped silently).
//! * Output: TSV rows `tool group split pages empty P R F1 pages_per_cpu_s clock`
//!   for each group (in manifest order) and split `dev`, `held`, `all`. P and R
//!   are averaged over pages, F1 is their harmonic mean (`Totals`). Speed: pages
//!   over the summed per-page CPU seconds, or over the summed CPU seconds of the
//!   runs that read the row's sources (then the same figure on dev, held, all).
//!   CLOCK names the clock in the last column (`extract` or `process`).
//! * PERPAGE (optional): `tool group split id P R F1 empty` per page.
//!
//! `extract-peers rust MANIFEST OUT_DIR` (feature `rust-peers`) runs the Rust
//! crates on the manifest's pages and writes OUT_DIR/<crate>.jsonl in the TEXTS
//! format, timed by the thread's CPU clock around each call.

#[path = "../../../src/extract/score.rs"]
#[allow(dead_code)]
mod score;

#[cfg(feature = "rust-peers")]
mod rust_peers;

use std::collections::{BTreeSet, HashMap};
use std::io::Write;

use score::{char_pr, token_pr, Pr, Totals};
use serde_json::Value;

/// One manifest line.
pub struct Entry {
    pub group: String,
    pub source: String,
    pub id: String,
    pub split: String,
    pub char_scored: bool,
    pub gold: String,
}

fn field(v: &Value, k: &str) -> String {
    v[k].as_str()
        .unwrap_or_else(|| panic!("manifest/texts line without string field {k}: {v}"))
        .to_string()
}

pub fn load_manifest(path: &str) -> Vec<Entry> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("manifest line is JSON");
            let scorer = field(&v, "scorer");
            assert!(scorer == "char" || scorer == "token", "scorer {scorer}");
            Entry {
                group: field(&v, "group"),
                source: field(&v, "source"),
                id: field(&v, "id"),
                split: field(&v, "split"),
                char_scored: scorer == "char",
                gold: field(&v, "gold"),
            }
        })
        .collect()
}

#[derive(Default)]
struct Row {
    totals: Totals,
    empty: usize,
    cpu_s: f64,
    all_timed: bool,
    sources: BTreeSet<String>,
}

fn score_mode(manifest: &str, tool: &str, clock: &str, texts: &str, perpage: Option<&str>) {
    let entries = load_manifest(manifest);
    let mut got: HashMap<(String, String), (String, Option<f64>)> = HashMap::new();
    let mut runs: HashMap<String, (f64, f64)> = HashMap::new();
    for l in std::fs::read_to_string(texts)
        .unwrap_or_else(|e| panic!("{texts}: {e}"))
        .lines()
    {
        let v: Value = serde_json::from_str(l).expect("texts line is JSON");
        let source = field(&v, "source");
        if let Some(t) = v["run_cpu_s"].as_f64() {
            let e = runs.entry(source).or_default();
            e.0 += t;
            e.1 += v["run_pages"].as_f64().expect("run_pages");
            continue;
        }
        let key = (source, field(&v, "id"));
        let text = field(&v, "text");
        if got.insert(key.clone(), (text, v["cpu_s"].as_f64())).is_some() {
            panic!("{texts}: page {key:?} twice");
        }
    }
    let missing: Vec<String> = entries
        .iter()
        .filter(|e| !got.contains_key(&(e.source.clone(), e.id.clone())))
        .map(|e| format!("{}/{}", e.source, e.id))
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "{tool}: {} manifest pages have no text line (first: {:?})",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        std::process::exit(1);
    }

    let mut order: Vec<String> = Vec::new();
    let mut rows: HashMap<(String, String), Row> = HashMap::new();
    let mut pp = perpage.map(|p| {
        std::io::BufWriter::new(std::fs::File::create(p).unwrap_or_else(|e| panic!("{p}: {e}")))
    });
    for e in &entries {
        if !order.contains(&e.group) {
            order.push(e.group.clone());
        }
        let (text, cpu) = &got[&(e.source.clone(), e.id.clone())];
        let pr: Pr = if e.char_scored {
            char_pr(text, &e.gold)
        } else {
            token_pr(text, &e.gold)
        };
        let empty = text.trim().is_empty();
        if let Some(w) = pp.as_mut() {
            writeln!(
                w,
                "{tool}\t{}\t{}\t{}\t{:.4}\t{:.4}\t{:.4}\t{}",
                e.group,
                e.split,
                e.id,
                pr.precision,
                pr.recall,
                pr.f1(),
                empty as u8
            )
            .expect("write per-page scores");
        }
        for split in [e.split.as_str(), "all"] {
            let r = rows
                .entry((e.group.clone(), split.to_string()))
                .or_insert_with(|| Row {
                    all_timed: true,
                    ..Row::default()
                });
            r.totals.add(pr);
            r.empty += empty as usize;
            match cpu {
                Some(c) => r.cpu_s += c,
                None => r.all_timed = false,
            }
            r.sources.insert(e.source.clone());
        }
    }
    for g in &order {
        for split in ["dev", "held", "all"] {
            let Some(r) = rows.get(&(g.clone(), split.to_string())) else {
                continue;
            };
            let speed = if r.all_timed {
                Some(r.totals.pages as f64 / r.cpu_s.max(1e-9))
            } else {
                let (mut secs, mut pages) = (0.0, 0.0);
                let mut complete = true;
                for s in &r.sources {
                    match runs.get(s) {
                        Some((t, n)) => {
                            secs += t;
                            pages += n;
                        }
                        None => complete = false,
                    }
                }
                (complete && secs > 0.0).then(|| pages / secs)
            };
            println!(
                "{tool}\t{g}\t{split}\t{}\t{}\t{:.3}\t{:.3}\t{:.3}\t{}\t{clock}",
                r.totals.pages,
                r.empty,
                r.totals.precision(),
                r.totals.recall(),
                r.totals.f1(),
                speed.map_or("-".to_string(), |s| format!("{s:.0}"))
            );
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("score") if args.len() == 6 || args.len() == 7 => {
            score_mode(&args[2], &args[3], &args[4], &args[5], args.get(6).map(String::as_str))
        }
        #[cfg(feature = "rust-peers")]
        Some("rust") if args.len() == 4 => rust_peers::run(&args[2], &args[3]),
        _ => {
            eprintln!(
                "usage: extract-peers score MANIFEST TOOL CLOCK TEXTS [PERPAGE]\n       \
                 extract-peers rust MANIFEST OUT_DIR   (built with --features rust-peers)"
            );
            std::process::exit(2);
        }
    }
}
