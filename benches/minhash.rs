//! Speed and memory of `minhash_dedup`. Tests never check wall-clock time; this does.
//!
//! `cargo bench --bench minhash` (shared data: alpaca_zh_hikariming, 30,559 records):
//! signatures per core (classic and one-permutation, MB/s of text and docs/s),
//! the whole dedup in the library on one thread (signatures, band entries,
//! clustering, decisions), and `curate run` with only this stage (`--threads 1`:
//! JSON in, prepass, main pass, JSONL out).
//!
//! `cargo bench --bench minhash -- signatures [ROUNDS]` computes only the
//! one-permutation signatures, ROUNDS times (default 10), for a profiler (`perf record`).
//!
//! `cargo bench --bench minhash -- scale 2000000 [MEMORY_LIMIT]` generates that
//! many records (~150 characters of Chinese each, one in ten a near copy of an
//! earlier one), runs `curate run` with only this stage on 2 threads, and prints
//! CPU time, records per CPU second and the peak resident memory of the process
//! (VmHWM). Times are CPU seconds (user + system, /proc/self/stat), not wall time.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use curate::config::Pipeline;
use curate::dedup::store::{KeepRule, Observer, Params};
use curate::run::{run, RunOptions};
use curate::stage::BuildContext;
use curate::stages::minhash_dedup::{Hashing, MinhashConfig, MinhashDedup};

fn alpaca_zh() -> Option<Vec<String>> {
    let root = curate::shared_data_dir().join("alpaca_zh_hikariming");
    let mut files = Vec::new();
    for sub in ["translated", "supplementary"] {
        for e in std::fs::read_dir(root.join(sub)).ok()?.flatten() {
            files.push(e.path());
        }
    }
    files.sort();
    let mut docs = Vec::new();
    for f in files {
        let v: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(&f).ok()?).ok()?;
        for r in v {
            let parts: Vec<&str> = ["instruction", "input", "output"]
                .iter()
                .filter_map(|k| r[*k].as_str())
                .collect();
            docs.push(parts.join("\n"));
        }
    }
    Some(docs)
}

fn stage(hashing: Hashing) -> MinhashDedup {
    let cfg = MinhashConfig {
        hashing,
        threshold: 0.7,
        ..MinhashConfig::default()
    };
    MinhashDedup::new(
        cfg,
        &BuildContext {
            config_dir: ".".into(),
        },
    )
    .unwrap()
}

/// CPU seconds used by this process so far (user + system, all threads), from
/// /proc/self/stat: on a loaded machine wall-clock time says little.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 12th, stime the 13th.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (ticks(11) + ticks(12)) / 100.0
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn run_stage_only(input: &Path, out: &Path, threads: usize, extra: &str) -> (f64, curate::stats::RunStats) {
    let text = format!(
        "[input]\npaths = [{:?}]\n[[stage]]\nkind = \"minhash_dedup\"\nthreshold = 0.7\n{extra}\n[output]\ndir = {:?}\ncompression = \"none\"\n",
        input.to_str().unwrap(),
        out.to_str().unwrap()
    );
    let pipeline = Pipeline::parse(&out.with_extension("toml"), &text).unwrap();
    let opts = RunOptions {
        threads: Some(threads),
        quiet: true,
        overwrite: true,
        ..Default::default()
    };
    let (t, c) = (Instant::now(), cpu_seconds());
    let stats = run(&pipeline, &opts).unwrap();
    let (wall, cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
    println!("(wall {wall:.1} s, CPU {cpu:.1} s)");
    (cpu, stats)
}

fn shared_data_bench() {
    let Some(docs) = alpaca_zh() else {
        println!("shared data not found at {}", curate::shared_data_dir().display());
        return;
    };
    let bytes: usize = docs.iter().map(|d| d.len()).sum();
    let mb = bytes as f64 / 1e6;
    println!(
        "alpaca_zh_hikariming: {} records, {mb:.1} MB of text; one core",
        docs.len()
    );
    println!("| step | hashing | CPU seconds | MB/s per core | records/s per core |");
    println!("|---|---|---|---|---|");
    for hashing in [Hashing::Classic, Hashing::OnePermutation] {
        let st = stage(hashing);
        let t = cpu_seconds();
        let sigs: Vec<Option<Vec<u32>>> = docs.iter().map(|d| st.signature(d)).collect();
        let secs = cpu_seconds() - t;
        println!(
            "| signatures | {hashing:?} | {secs:.2} | {:.1} | {:.0} |",
            mb / secs,
            docs.len() as f64 / secs
        );
        // Band keys, observe and clustering on top (what the prepass does per record).
        let dir = tempfile::tempdir().unwrap();
        let t = cpu_seconds();
        let params = Params {
            num_perm: 128,
            bands: st.banding().0,
            threshold: 0.7,
            keep: KeepRule::First,
            memory_limit: 1 << 30,
            show_clusters: 10,
            show_members: 4,
            verify: None,
        };
        let mut obs = Observer::create(dir.path(), params).unwrap();
        for (i, s) in sigs.iter().enumerate() {
            let keys = s.as_ref().map(|s| st.band_keys(s));
            obs.add(&i.to_string(), s.as_deref().zip(keys.as_deref()), 0, None)
                .unwrap();
        }
        let sum = obs.finish().unwrap();
        let cluster_secs = cpu_seconds() - t;
        println!(
            "| signatures + bands + clusters | {hashing:?} | {:.2} | {:.1} | {:.0} |",
            secs + cluster_secs,
            mb / (secs + cluster_secs),
            docs.len() as f64 / (secs + cluster_secs)
        );
        println!(
            "|   ({} duplicates in {} clusters, {} pairs compared) | | | | |",
            sum.duplicates, sum.clusters_with_duplicates, sum.pairs_compared
        );
    }
    // End to end through the executor, from JSONL.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("alpaca_zh.jsonl");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    for (i, d) in docs.iter().enumerate() {
        serde_json::to_writer(&mut w, &serde_json::json!({"id": i, "text": d})).unwrap();
        w.write_all(b"\n").unwrap();
    }
    w.flush().unwrap();
    drop(w);
    let (secs, stats) = run_stage_only(&input, &dir.path().join("out"), 1, "");
    println!(
        "| curate run (--threads 1), JSONL in and out | OnePermutation | {secs:.2} | {:.1} | {:.0} |",
        mb / secs,
        docs.len() as f64 / secs
    );
    println!("(kept {}, rejected {})", stats.kept, stats.rejected);
}

fn signatures_only(rounds: usize) {
    let Some(docs) = alpaca_zh() else {
        println!("shared data not found at {}", curate::shared_data_dir().display());
        return;
    };
    let mb = docs.iter().map(|d| d.len()).sum::<usize>() as f64 / 1e6;
    let st = stage(Hashing::OnePermutation);
    let t = cpu_seconds();
    let mut check = 0u64;
    for _ in 0..rounds {
        for d in &docs {
            check = check.wrapping_add(st.signature(d).map_or(0, |s| s[0] as u64));
        }
    }
    let secs = (cpu_seconds() - t) / rounds as f64;
    println!(
        "one-permutation signatures: {secs:.3} CPU s per round, {:.1} MB/s per core (check {check})",
        mb / secs
    );
}

fn scale_bench(n: usize, memory_limit: &str) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("corpus.jsonl");
    let vocab: Vec<char> = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处理府研质"
        .chars()
        .collect();
    let mut x = 12345u64;
    let mut next = move || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        x >> 33
    };
    let t = Instant::now();
    let mut w = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    let mut recent: Vec<String> = Vec::new();
    let mut bytes = 0u64;
    for i in 0..n {
        let text: String = if i % 10 == 9 && !recent.is_empty() {
            // A near copy of a recent record: two characters changed.
            let mut c: Vec<char> = recent[next() as usize % recent.len()].chars().collect();
            for _ in 0..2 {
                let p = next() as usize % c.len();
                c[p] = vocab[next() as usize % vocab.len()];
            }
            c.into_iter().collect()
        } else {
            (0..150).map(|_| vocab[next() as usize % vocab.len()]).collect()
        };
        if recent.len() < 1000 {
            recent.push(text.clone());
        } else {
            let k = next() as usize % 1000;
            recent[k] = text.clone();
        }
        let line = serde_json::json!({"id": i, "text": text}).to_string();
        bytes += line.len() as u64 + 1;
        w.write_all(line.as_bytes()).unwrap();
        w.write_all(b"\n").unwrap();
    }
    w.flush().unwrap();
    drop(w);
    drop(recent);
    println!(
        "generated {n} records, {:.0} MB of JSONL in {:.0} s; peak RSS so far {:.0} MB",
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64(),
        peak_rss_mb()
    );
    let extra = format!("memory_limit = {memory_limit:?}\n");
    let (secs, stats) = run_stage_only(&input, &dir.path().join("out"), 2, &extra);
    println!(
        "curate run, minhash_dedup only, memory_limit {memory_limit}, 2 threads: {secs:.0} CPU s, {:.0} records per CPU s, {:.1} MB per CPU s; kept {}, rejected {}; peak RSS {:.0} MB",
        n as f64 / secs,
        bytes as f64 / 1e6 / secs,
        stats.kept,
        stats.rejected,
        peak_rss_mb()
    );
    let summary = stats
        .stages
        .iter()
        .find(|s| s.kind == "minhash_dedup")
        .and_then(|s| s.summary.clone());
    if let Some(s) = summary {
        println!(
            "band runs spilled: {}, pairs compared: {}",
            s["band_runs"], s["pairs_compared"]
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if args.first().map(String::as_str) == Some("signatures") {
        // For a profiler: only one-permutation signatures, ROUNDS times over the data.
        let rounds = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10);
        signatures_only(rounds);
    } else if args.first().map(String::as_str) == Some("scale") {
        let n = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2_000_000);
        let limit = args.get(2).cloned().unwrap_or_else(|| "256MiB".into());
        scale_bench(n, &limit);
    } else {
        shared_data_bench();
    }
}
