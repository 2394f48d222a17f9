//! The Rust extraction crates as peers (feature `rust-peers`): each page's bytes
//! become a `String` with `String::from_utf8_lossy` (the crates take `&str` and
//! do no charset detection of their own), then each crate extracts it, timed by
//! the thread's CPU clock around the call (decoding included).

use std::collections::HashSet;
use std::io::Write;

use serde_json::json;

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

/// CPU time of the calling thread (the clock Python's `time.thread_time` reads).
fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Run every crate on the manifest's pages (each page once), write OUT/<crate>.jsonl.
pub fn run(manifest: &str, out: &str) {
    let mut seen = HashSet::new();
    let mut pages = Vec::new();
    for l in std::fs::read_to_string(manifest).expect("manifest").lines() {
        let v: serde_json::Value = serde_json::from_str(l).expect("manifest line is JSON");
        let key = (v["source"].as_str().unwrap().to_string(), v["id"].as_str().unwrap().to_string());
        if seen.insert(key.clone()) {
            let bytes = std::fs::read(v["html_path"].as_str().unwrap()).expect("html readable");
            pages.push((key, bytes));
        }
    }
    std::fs::create_dir_all(out).expect("out dir");
    let tools: [(&str, fn(&str) -> String); 3] = [
        ("rust-trafilatura", trafilatura_text),
        ("rs-trafilatura", rs_trafilatura_text),
        ("dom_smoothie", dom_smoothie_text),
    ];
    for (name, f) in tools {
        let path = format!("{out}/{name}.jsonl");
        let mut w = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
        for ((source, id), bytes) in &pages {
            let start = thread_cpu_secs();
            let html = String::from_utf8_lossy(bytes);
            let text = f(&html);
            let cpu_s = thread_cpu_secs() - start;
            let line = json!({"source": source, "id": id, "text": text, "cpu_s": cpu_s});
            writeln!(w, "{line}").expect("write");
        }
    }
}
