//! Score curate's extractor and the Rust extraction crates on the same pages,
//! with curate's scorer (src/extract/score.rs) and curate's extractor
//! (src/extract/mod.rs), both included by path so nothing is copied.
//!
//! `extract-peers rust MANIFEST.jsonl` runs curate and the Rust crates;
//! `extract-peers score MANIFEST.jsonl TOOL DIR` scores texts another program
//! wrote (DIR/<line>.txt, DIR/seconds.txt with one time per page), which is how
//! the Python peers are scored. A manifest line is
//! `{"group": "zh/article", "html_path": "...", "gold_path": "..."}` (written by
//! benches/extract_peers.sh). Output: one TSV line per tool and group,
//! `tool group pages P R F1 pages_per_s`; `en/*` groups are scored by tokens,
//! the others by characters, as in curate's tests. Times cover extraction only
//! (the HTML is already in memory), one page at a time on one thread, in the
//! thread's CPU time.

#[path = "../../../src/extract/mod.rs"]
mod curate_extract;

use std::collections::BTreeMap;

use curate_extract::score::{char_pr, token_pr, Pr, Totals};

struct Page {
    group: String,
    html: String,
    gold: String,
}

fn curate_text(html: &str) -> String {
    curate_extract::extract(html, None)
        .map(|r| r.text)
        .unwrap_or_default()
}

fn trafilatura_text(html: &str) -> String {
    trafilatura::extract(html, &trafilatura::Options::default())
        .map(|r| r.content_text)
        .unwrap_or_default()
}

fn rs_trafilatura_text(html: &str) -> String {
    rs_trafilatura::extract(html)
        .map(|r| r.content_text)
        .unwrap_or_default()
}

fn dom_smoothie_text(html: &str) -> String {
    let Ok(mut r) = dom_smoothie::Readability::new(html, None, None) else {
        return String::new();
    };
    r.parse().map(|a| a.text_content.to_string()).unwrap_or_default()
}

fn load(manifest: &str) -> Vec<Page> {
    std::fs::read_to_string(manifest)
        .expect("manifest readable")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("manifest line is JSON");
            let s = |k: &str| v[k].as_str().expect("string field").to_string();
            let html = std::fs::read(s("html_path")).expect("html readable");
            Page {
                group: s("group"),
                html: String::from_utf8_lossy(&html).into_owned(),
                gold: std::fs::read_to_string(s("gold_path")).expect("gold readable"),
            }
        })
        .collect()
}

fn score(p: &Page, text: &str) -> Pr {
    if p.group.starts_with("en") {
        token_pr(text, &p.gold)
    } else {
        char_pr(text, &p.gold)
    }
}

/// Print one line per group (and per language, `zh/all`) from per-page results.
fn report(tool: &str, pages: &[Page], results: &[(Pr, f64)]) {
    let mut groups: BTreeMap<String, (Totals, f64)> = BTreeMap::new();
    for (p, (pr, secs)) in pages.iter().zip(results) {
        let mut keys = vec![p.group.clone()];
        if let Some((lang, _)) = p.group.split_once('/') {
            keys.push(format!("{lang}/all"));
        }
        for k in keys {
            let e = groups.entry(k).or_default();
            e.0.add(*pr);
            e.1 += secs;
        }
    }
    for (g, (t, secs)) in groups {
        println!(
            "{tool}\t{g}\t{}\t{:.3}\t{:.3}\t{:.3}\t{:.0}",
            t.pages,
            t.precision(),
            t.recall(),
            t.f1(),
            t.pages as f64 / secs.max(1e-9)
        );
    }
}

/// CPU time of the calling thread (the same clock Python's `time.thread_time` reads).
fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("rust") if args.len() == 3 => {
            let pages = load(&args[2]);
            let tools: [(&str, fn(&str) -> String); 4] = [
                ("curate extract", curate_text),
                ("trafilatura 0.6 (Rust)", trafilatura_text),
                ("rs-trafilatura 0.2", rs_trafilatura_text),
                ("dom_smoothie 0.19", dom_smoothie_text),
            ];
            for (name, f) in tools {
                let results: Vec<(Pr, f64)> = pages
                    .iter()
                    .map(|p| {
                        let start = thread_cpu_secs();
                        let text = f(&p.html);
                        let secs = thread_cpu_secs() - start;
                        (score(p, &text), secs)
                    })
                    .collect();
                report(name, &pages, &results);
            }
        }
        Some("score") if args.len() == 5 => {
            let pages = load(&args[2]);
            let dir = std::path::Path::new(&args[4]);
            let secs: Vec<f64> = std::fs::read_to_string(dir.join("seconds.txt"))
                .expect("seconds.txt")
                .lines()
                .map(|l| l.trim().parse().expect("a number of seconds"))
                .collect();
            assert_eq!(secs.len(), pages.len(), "one time per page");
            let results: Vec<(Pr, f64)> = pages
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let text = std::fs::read_to_string(dir.join(format!("{i}.txt"))).unwrap_or_default();
                    (score(p, &text), secs[i])
                })
                .collect();
            report(&args[3], &pages, &results);
        }
        _ => {
            eprintln!("usage: extract-peers rust MANIFEST | extract-peers score MANIFEST TOOL DIR");
            std::process::exit(2);
        }
    }
}
