//! Sharded runs: ranks against a single-process run, and a real one-node Slurm
//! cluster (scripts/slurm/cluster.sh) that runs a 4-rank job array, loses one
//! rank, and is relaunched.
//!
//! The Slurm test needs Debian's slurmctld, slurmd and munge: `scripts/test.sh`
//! (the README's test command, what CI runs) installs them and sets
//! `CURATE_REQUIRE_SLURM=1`, which turns a missing Slurm into a failure.
//! Without that variable and without Slurm the test prints a note and returns.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const STAGES: &str = r#"
[[stage]]
kind = "normalize"

[[stage]]
kind = "length"
min_chars = 10

[[stage]]
kind = "exact_dedup"

[[stage]]
kind = "minhash_dedup"
shingle = "char"
char_ngram = 3
verify = "segments"

[[stage]]
kind = "pii"
"#;

/// Pipeline stage numbers of the two global stages above.
const EXACT: usize = 2;
const MINHASH: usize = 3;

/// Eight input files of synthetic records (so 4 ranks get two each), and the pipeline.
/// Each file repeats records of other files (other ranks): exact copies of the next
/// file's first ten lines, and near copies (one character changed) of text records
/// of the file after that, so both dedup stages must look across ranks.
fn setup(dir: &Path) -> PathBuf {
    setup_with(dir, STAGES)
}

/// The same input, and the pipeline without the dedup stages (no steps needed).
fn setup_plain(dir: &Path) -> PathBuf {
    let plain = STAGES
        .replace("[[stage]]\nkind = \"exact_dedup\"\n\n", "")
        .replace(
        "[[stage]]\nkind = \"minhash_dedup\"\nshingle = \"char\"\nchar_ngram = 3\nverify = \"segments\"\n\n",
        "",
    );
    assert!(!plain.contains("dedup"), "{plain}");
    setup_with(dir, &plain)
}

fn setup_with(dir: &Path, stages: &str) -> PathBuf {
    let inputs = dir.join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    let files: Vec<String> = (0..8).map(|i| synthetic_jsonl(150 + 10 * i, i as u64)).collect();
    for i in 0..8 {
        let mut text = files[i].clone();
        for line in files[(i + 1) % 8].lines().take(10) {
            text.push_str(line);
            text.push('\n');
        }
        for line in files[(i + 2) % 8].lines().take(40) {
            let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(t) = v
                .get("text")
                .and_then(|t| t.as_str())
                .filter(|t| t.chars().count() > 40)
            {
                let mut chars: Vec<char> = t.chars().collect();
                chars[20] = '改';
                v["text"] = chars.into_iter().collect::<String>().into();
                v["id"] = format!("near-{i}-{}", v["id"].as_str().unwrap()).into();
                text.push_str(&v.to_string());
                text.push('\n');
            }
        }
        std::fs::write(inputs.join(format!("f{i}.jsonl")), text).unwrap();
    }
    let glob = format!("{}/*.jsonl", inputs.display());
    write_pipeline(dir, &[&glob], stages, "out", "part_records = 50")
}

/// Every step of a sharded run, each rank in a shuffled order, as `curate slurm` chains them.
fn run_all_steps(p: &str, out: &Path, world: usize) {
    let o = out.to_str().unwrap();
    let n = world.to_string();
    for step in [
        "observe:exact_dedup",
        "buckets:exact_dedup",
        "clusters:exact_dedup",
        "observe:minhash_dedup",
        "buckets:minhash_dedup",
        "clusters:minhash_dedup",
        "filter",
    ] {
        let ranks: Vec<usize> = if step.starts_with("clusters") {
            vec![0]
        } else {
            (0..world).rev().collect()
        };
        for r in ranks {
            let r = r.to_string();
            run_ok(&[
                "run",
                p,
                "--output",
                o,
                "--rank",
                &r,
                "--world-size",
                &n,
                "--step",
                step,
                "--quiet",
            ]);
        }
    }
}

fn books(dir: &Path) -> (u64, u64, u64) {
    let s = stats(dir);
    (
        s["input"].as_u64().unwrap(),
        s["kept"].as_u64().unwrap(),
        s["rejected"].as_u64().unwrap(),
    )
}

#[test]
fn ranks_together_equal_one_process() {
    let tmp = tempfile::tempdir().unwrap();
    let p = setup(tmp.path());
    let p = p.to_str().unwrap();
    let single = tmp.path().join("single");
    let sharded = tmp.path().join("sharded");
    run_ok(&["run", p, "--output", single.to_str().unwrap(), "--quiet"]);
    let s = stats(&single);
    let dropped = |k: usize, reason: &str| s["stages"][k + 1]["reasons"][reason].as_u64().unwrap_or(0);
    assert!(dropped(EXACT, "duplicate") >= 60, "{s}");
    assert!(dropped(MINHASH, "near_duplicate") >= 8, "{s}");

    // Without its steps, a sharded run with global stages says what to run.
    let early = run_curate(&[
        "run",
        p,
        "--output",
        sharded.to_str().unwrap(),
        "--rank",
        "0",
        "--world-size",
        "3",
    ]);
    assert_eq!(early.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&early.stderr).contains("observe:exact_dedup"));

    run_all_steps(p, &sharded, 3);
    run_ok(&["merge-stats", sharded.to_str().unwrap()]);
    assert_eq!(sharded_parts(&sharded), snapshot(&single, &["kept", "rejected"]));
    assert_eq!(books(&sharded), books(&single));
    // The report's books too: score histograms, the records nearest each threshold
    // (the ranks' sources mapped back to the run's order), kept/rejected per source.
    let report_books = |d: &Path| {
        let s = stats(d);
        let scores: Vec<serde_json::Value> = s["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|st| st["scores"].clone())
            .collect();
        (scores, s["sources"].clone())
    };
    assert!(!report_books(&single).0[MINHASH + 1].is_null());
    assert_eq!(report_books(&sharded), report_books(&single));
    assert_eq!(
        std::fs::read(sharded.join("clusters.jsonl")).unwrap(),
        std::fs::read(single.join("clusters.jsonl")).unwrap()
    );
    // Every rank wrote its parts in the single run's one schema.
    assert_eq!(
        std::fs::read(sharded.join("features.json")).unwrap(),
        std::fs::read(single.join("features.json")).unwrap()
    );
    check_books(&single);

    // A completed rank or step is skipped on rerun; merge-stats is repeatable.
    let o = sharded.to_str().unwrap();
    let again = run_ok(&["run", p, "--output", o, "--rank", "1", "--world-size", "3"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already complete"));
    let again = run_ok(&[
        "run",
        p,
        "--output",
        o,
        "--rank",
        "1",
        "--world-size",
        "3",
        "--step",
        "observe:minhash_dedup",
    ]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already complete"));
    run_ok(&["merge-stats", o]);
    assert_eq!(books(&sharded), books(&single));

    // Without global stages a sharded run needs no steps.
    let plain_dir = tmp.path().join("plain");
    std::fs::create_dir_all(&plain_dir).unwrap();
    let plain = setup_plain(&plain_dir);
    let pl = plain.to_str().unwrap();
    let (s1, s2) = (tmp.path().join("plain1"), tmp.path().join("plain2"));
    run_ok(&["run", pl, "--output", s1.to_str().unwrap(), "--quiet"]);
    for r in ["1", "0"] {
        run_ok(&[
            "run",
            pl,
            "--output",
            s2.to_str().unwrap(),
            "--rank",
            r,
            "--world-size",
            "2",
            "--quiet",
        ]);
    }
    assert_eq!(sharded_parts(&s2), snapshot(&s1, &["kept", "rejected"]));
}

#[test]
fn merge_stats_names_missing_ranks_and_bad_ranks_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let p = setup_plain(tmp.path());
    let p = p.to_str().unwrap();
    let out = tmp.path().join("o");
    let o = out.to_str().unwrap();
    run_ok(&[
        "run",
        p,
        "--output",
        o,
        "--rank",
        "0",
        "--world-size",
        "4",
        "--quiet",
    ]);
    let m = run_curate(&["merge-stats", o]);
    assert_eq!(m.status.code(), Some(1));
    let err = String::from_utf8_lossy(&m.stderr);
    assert!(
        err.contains("3 of 4 ranks are not complete (missing: 1, 2, 3)"),
        "{err}"
    );

    let bad = run_curate(&["run", p, "--output", o, "--rank", "4", "--world-size", "4"]);
    assert_eq!(bad.status.code(), Some(2));
    let half = run_curate(&["run", p, "--output", o, "--rank", "1"]);
    assert_eq!(half.status.code(), Some(2));
}

#[test]
fn steps_refuse_what_they_cannot_do() {
    let tmp = tempfile::tempdir().unwrap();
    let p = setup(tmp.path());
    let p = p.to_str().unwrap();
    let o = tmp.path().join("o");
    let o = o.to_str().unwrap();
    // A step before the ones it needs names what is missing.
    let b = run_curate(&[
        "run",
        p,
        "--output",
        o,
        "--rank",
        "0",
        "--world-size",
        "2",
        "--step",
        "buckets:exact_dedup",
    ]);
    assert_eq!(b.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&b.stderr).contains("observe step"),
        "{}",
        String::from_utf8_lossy(&b.stderr)
    );
    // Unknown steps and stages that are not global.
    for bad in ["observe:pii", "sort:exact_dedup", "observe"] {
        let r = run_curate(&[
            "run",
            p,
            "--output",
            o,
            "--rank",
            "0",
            "--world-size",
            "2",
            "--step",
            bad,
        ]);
        assert_eq!(r.status.code(), Some(2), "{bad}");
    }
}

#[test]
fn slurm_dry_run_quotes_every_value() {
    let tmp = tempfile::tempdir().unwrap();
    let odd = tmp.path().join("it's a dir");
    std::fs::create_dir_all(&odd).unwrap();
    let p = setup(&odd);
    let out = odd.join("out $(x)");
    let o = run_ok(&[
        "slurm",
        p.to_str().unwrap(),
        "--tasks",
        "4",
        "--output",
        out.to_str().unwrap(),
        "--time",
        "00:10:00",
        "--mem",
        "1G",
        "--dry-run",
    ]);
    let printed = String::from_utf8_lossy(&o.stdout);
    assert!(printed.contains("--array=0-3"), "{printed}");
    let script = std::fs::read_to_string(out.join("slurm/run.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --time=00:10:00"), "{script}");
    assert!(script.contains("#SBATCH --mem=1G"), "{script}");
    assert!(script.contains(r"it'\''s a dir"), "{script}");
    assert!(
        script.contains(r"'$(x)'") || script.contains(r"out $(x)'"),
        "{script}"
    );
    // bash parses the exec line back into the exact argument values.
    let line = script.lines().find(|l| l.starts_with("exec ")).unwrap();
    let echo = line.replacen("exec ", "printf '%s\\n' ", 1);
    let parsed = Command::new("bash")
        .arg("-c")
        .arg(&echo)
        .env("SLURM_ARRAY_TASK_ID", "3")
        .output()
        .unwrap();
    let args: Vec<String> = String::from_utf8_lossy(&parsed.stdout)
        .lines()
        .map(String::from)
        .collect();
    assert!(args.contains(&p.to_str().unwrap().to_string()), "{args:?}");
    assert!(args.contains(&out.to_str().unwrap().to_string()), "{args:?}");
    assert!(args.contains(&"3".to_string()), "{args:?}");
    let bad = run_curate(&[
        "slurm",
        p.to_str().unwrap(),
        "--tasks",
        "2",
        "--partition",
        "a b",
        "--dry-run",
    ]);
    assert_eq!(bad.status.code(), Some(2));
}

/// A one-node Slurm cluster, stopped (by pid files) when dropped.
struct Cluster {
    dir: PathBuf,
    conf: PathBuf,
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        let st = Command::new(script())
            .arg("start")
            .arg(dir)
            .status()
            .expect("run scripts/slurm/cluster.sh");
        let c = Cluster {
            dir: dir.to_path_buf(),
            conf: dir.join("slurm.conf"),
        };
        assert!(
            st.success(),
            "the test cluster did not start; logs in {}",
            dir.display()
        );
        c
    }

    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", &self.conf);
        c
    }

    /// Wait until the queue is empty (sbatch --wait polls only every ~10 s).
    fn wait_idle(&self, limit: Duration) {
        let t = Instant::now();
        loop {
            let q = self.cmd("squeue").args(["-h", "-o", "%i %T"]).output().unwrap();
            if q.status.success() && q.stdout.iter().all(|b| b.is_ascii_whitespace()) {
                return;
            }
            assert!(
                t.elapsed() < limit,
                "jobs still queued: {}",
                String::from_utf8_lossy(&q.stdout)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("stop").arg(&self.dir).status();
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm/cluster.sh")
}

fn have_slurm() -> bool {
    ["slurmctld", "slurmd", "munged", "sbatch"].iter().all(|p| {
        Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {p}"))
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    })
}

#[test]
fn real_slurm_array_with_a_failed_rank_and_a_relaunch() {
    if !have_slurm() {
        assert!(
            std::env::var_os("CURATE_REQUIRE_SLURM").is_none(),
            "CURATE_REQUIRE_SLURM is set but Slurm is not installed (scripts/slurm/cluster.sh install)"
        );
        eprintln!("note: Slurm is not installed; skipping (scripts/test.sh installs it)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let p = setup(tmp.path());
    let ps = p.to_str().unwrap();
    let single = tmp.path().join("single");
    run_ok(&["run", ps, "--output", single.to_str().unwrap(), "--quiet"]);
    let cluster = Cluster::start(&tmp.path().join("slurm"));
    let out = tmp.path().join("sharded");

    // Rank 2 fails for real in the middle of the chain (the observe step of the
    // second global stage): a file sits where its step folder must go.
    let blocker = out.join(format!("steps/stage-{MINHASH:03}/rank-00002"));
    std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
    std::fs::write(&blocker, "not a directory").unwrap();
    let launch = |expect_ranks: &str, expect_jobs: usize| {
        let o = cluster
            .cmd(env!("CARGO_BIN_EXE_curate"))
            .args([
                "slurm",
                ps,
                "--tasks",
                "4",
                "--output",
                out.to_str().unwrap(),
                "--time",
                "00:05:00",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(
            o.status.success(),
            "curate slurm failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(text.contains(&format!("ranks to run: {expect_ranks}")), "{text}");
        assert_eq!(text.matches("submitted job").count(), expect_jobs, "{text}");
        text
    };
    // observe, buckets, clusters twice; filter; merge.
    launch("0-3", 8);
    cluster.wait_idle(Duration::from_secs(300));
    for r in [0, 1, 3] {
        assert!(
            out.join(format!("steps/stage-{MINHASH:03}/rank-{r:05}/observed.json"))
                .exists(),
            "rank {r} observed"
        );
    }
    assert!(out
        .join(format!("steps/stage-{EXACT:03}/global/prepared.json"))
        .exists());
    assert!(!out
        .join(format!("steps/stage-{MINHASH:03}/global/prepared.json"))
        .exists());
    assert!(
        !out.join("ranks").exists(),
        "no rank may filter before every step is done"
    );
    let log = std::fs::read_to_string(out.join("slurm/logs/step-03-observe-2.log")).unwrap_or_default();
    assert!(
        log.contains("rank-00002"),
        "rank 2's log names the failure: {log}"
    );
    assert!(
        !out.join("stats.json").exists(),
        "merge must not run after a failed rank (afterok + kill_invalid_depend)"
    );

    // Relaunch: rank 2's observe step and everything after it.
    std::fs::remove_file(&blocker).unwrap();
    let text = launch("0-3", 5);
    assert!(text.contains("step observe:minhash_dedup: tasks 2\n"), "{text}");
    assert!(!text.contains("step observe:exact_dedup"), "{text}");
    cluster.wait_idle(Duration::from_secs(180));
    assert!(
        out.join("stats.json").exists(),
        "merge-stats ran after the relaunch"
    );
    assert_eq!(sharded_parts(&out), snapshot(&single, &["kept", "rejected"]));
    assert_eq!(books(&out), books(&single));
    let merged = stats(&out);
    assert!(merged["complete"].as_bool().unwrap());
    assert!(out.join("report.html").exists());
    drop(cluster);
}
