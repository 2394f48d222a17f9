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
kind = "pii"
"#;

/// Eight input files of synthetic records (so 4 ranks get two each), and the pipeline.
fn setup(dir: &Path) -> PathBuf {
    let inputs = dir.join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    for i in 0..8 {
        std::fs::write(
            inputs.join(format!("f{i}.jsonl")),
            synthetic_jsonl(150 + 10 * i, i as u64),
        )
        .unwrap();
    }
    let glob = format!("{}/*.jsonl", inputs.display());
    write_pipeline(dir, &[&glob], STAGES, "out", "part_records = 50")
}

/// Kept and rejected parts of a sharded run, by file name, from every rank.
fn sharded_parts(out: &Path) -> Vec<(String, Vec<u8>)> {
    let mut all = Vec::new();
    let ranks = out.join("ranks");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&ranks)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for d in dirs {
        all.extend(snapshot(&d, &["kept", "rejected"]));
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
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
    for r in ["2", "0", "1"] {
        run_ok(&[
            "run",
            p,
            "--output",
            sharded.to_str().unwrap(),
            "--rank",
            r,
            "--world-size",
            "3",
            "--quiet",
        ]);
    }
    run_ok(&["merge-stats", sharded.to_str().unwrap()]);
    assert_eq!(sharded_parts(&sharded), snapshot(&single, &["kept", "rejected"]));
    assert_eq!(books(&sharded), books(&single));
    check_books(&single);

    // A completed rank is skipped on rerun; merge-stats is repeatable.
    let again = run_ok(&[
        "run",
        p,
        "--output",
        sharded.to_str().unwrap(),
        "--rank",
        "1",
        "--world-size",
        "3",
    ]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already complete"));
    run_ok(&["merge-stats", sharded.to_str().unwrap()]);
    assert_eq!(books(&sharded), books(&single));
}

#[test]
fn merge_stats_names_missing_ranks_and_bad_ranks_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let p = setup(tmp.path());
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
fn global_stages_are_refused_when_sharded() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = tmp.path().join("a.jsonl");
    std::fs::write(&inputs, synthetic_jsonl(20, 1)).unwrap();
    let p = write_pipeline(
        tmp.path(),
        &[inputs.to_str().unwrap()],
        "[[stage]]\nkind = \"exact_dedup\"\n",
        "out",
        "",
    );
    let o = run_curate(&["run", p.to_str().unwrap(), "--rank", "0", "--world-size", "2"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("exact_dedup"));
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

    // Rank 2 fails for real: a file sits where its output directory must go.
    std::fs::create_dir_all(out.join("ranks")).unwrap();
    let blocker = out.join("ranks/rank-00002");
    std::fs::write(&blocker, "not a directory").unwrap();
    let launch = |expect_ranks: &str| {
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
        assert_eq!(text.matches("submitted job").count(), 2, "{text}");
    };
    launch("0-3");
    cluster.wait_idle(Duration::from_secs(180));
    for r in [0, 1, 3] {
        assert!(
            out.join(format!("ranks/rank-{r:05}.done")).exists(),
            "rank {r} finished"
        );
    }
    assert!(!out.join("ranks/rank-00002.done").exists());
    let log = std::fs::read_to_string(out.join("slurm/logs/rank-2.log")).unwrap_or_default();
    assert!(
        log.contains("rank-00002"),
        "rank 2's log names the failure: {log}"
    );
    assert!(
        !out.join("stats.json").exists(),
        "merge must not run after a failed rank (afterok + kill_invalid_depend)"
    );

    // Relaunch: only rank 2 is submitted, then the merge.
    std::fs::remove_file(&blocker).unwrap();
    launch("2");
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
