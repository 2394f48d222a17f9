//! Decontamination speed: index build over MMLU + C-Eval + CMMLU, and scan MB/s
//! on one core. `cargo bench --bench decontam` (needs `../shared/data` or
//! `CURATE_SHARED_DATA`).

use std::time::Instant;

use curate::decontam::{build_index, BenchFormat, BenchmarkSpec, MatchConfig};

/// Seconds this thread has run on a CPU (Linux `schedstat`; wall time elsewhere).
/// "Per core" is MB per CPU second: on a shared 2-core VM, wall time also counts
/// the time other tenants' processes hold the core.
fn cpu_seconds(wall: Instant) -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map(|ns| ns / 1e9)
        .unwrap_or_else(|| wall.elapsed().as_secs_f64())
}

/// CPU seconds of the whole process, all threads (Linux `/proc/self/stat`, 10 ms ticks).
fn process_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the `(name)`: state is the first, utime the 12th, stime the 13th.
            let f: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
        })
        .unwrap_or(0.0)
}

/// Run `f`, returning its result, CPU seconds and wall seconds.
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64, f64) {
    let wall = Instant::now();
    let cpu = cpu_seconds(wall);
    let r = f();
    (r, cpu_seconds(wall) - cpu, wall.elapsed().as_secs_f64())
}

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
    let cpu = process_cpu_seconds();
    let ix = build_index(&specs, MatchConfig::default()).unwrap();
    println!(
        "index: {} items, {} n-grams, filters {:.1} MiB, in {:.2} s wall, {:.2} CPU s ({} threads)",
        ix.items.len(),
        ix.len(),
        ix.filter_bytes() as f64 / (1 << 20) as f64,
        t.elapsed().as_secs_f64(),
        process_cpu_seconds() - cpu,
        rayon::current_num_threads()
    );
    let mut texts: Vec<String> = Vec::new();
    let mut files = vec![d.join("alpaca_en/alpaca_data.json")];
    let mut zh: Vec<_> = std::fs::read_dir(d.join("alpaca_zh_hikariming/translated"))
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    zh.sort();
    files.extend(zh);
    for p in files {
        let v: Vec<serde_json::Map<String, serde_json::Value>> =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        for m in v {
            let t: Vec<&str> = ["instruction", "input", "output"]
                .iter()
                .filter_map(|k| m.get(*k)?.as_str())
                .collect();
            texts.push(t.join("\n\n"));
        }
    }
    // CURATE_DECONTAM_BENCH_RECORDS=N: only the first N records of each language
    // (for running under valgrind --tool=callgrind).
    let limit: usize = std::env::var("CURATE_DECONTAM_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX);
    for (name, zh) in [("en", false), ("zh", true)] {
        let sel: Vec<&String> = texts
            .iter()
            .filter(|t| (t.chars().filter(|c| *c > '\u{2e80}').count() * 3 > t.chars().count()) == zh)
            .take(limit)
            .collect();
        let bytes: usize = sel.iter().map(|t| t.len()).sum();
        let mb = bytes as f64 / 1e6;
        // Best of three passes (this VM's timings vary with the other tenants' load).
        let (mut best, mut best_wall) = (f64::MAX, f64::MAX);
        let mut found = Vec::new();
        for _ in 0..3 {
            let (f, cpu, wall) = timed(|| sel.iter().map(|s| ix.scan(s)).collect::<Vec<_>>());
            found = f;
            best = best.min(cpu);
            best_wall = best_wall.min(wall);
        }
        let (reference, ref_secs, _) = timed(|| sel.iter().map(|s| ix.scan_reference(s)).collect::<Vec<_>>());
        assert!(found == reference, "the fast scan and the plain scan disagree");
        let (ntok, tok_secs, _) = timed(|| {
            let mut toks = Vec::new();
            sel.iter()
                .map(|s| {
                    toks.clear();
                    curate::decontam::normalize::tokenize_into(s, &mut toks);
                    toks.len()
                })
                .sum::<usize>()
        });
        // How far windows get (the presence filter's work): tokens, present
        // smallest-size n-grams, windows left to probe in the key filter, passing it,
        // found in the map.
        let mut c = [0usize; 7];
        for s in &sel {
            for (a, b) in c.iter_mut().zip(ix.probe_counts(s)) {
                *a += b;
            }
        }
        println!(
            "  {name}: {} tokens, {} present ({:.1}%), {} windows probed ({:.2} per token), \
             {} pass the key filter, {} found; {} keywords and word grams found, {} items checked character by character",
            c[0],
            c[1],
            100.0 * c[1] as f64 / c[0].max(1) as f64,
            c[2],
            c[2] as f64 / c[0].max(1) as f64,
            c[3],
            c[4],
            c[5],
            c[6]
        );
        println!(
            "scan {name}: {} records, {mb:.1} MB in {best:.2} CPU s = {:.1} MB/s per core \
             (wall {:.1} MB/s; {} hits); plain scan {:.1} MB/s, same hits; \
             tokenizing alone {:.1} MB/s ({ntok} tokens)",
            sel.len(),
            mb / best,
            mb / best_wall,
            found.iter().map(|h| h.len()).sum::<usize>(),
            mb / ref_secs,
            mb / tok_secs,
        );
    }
}
