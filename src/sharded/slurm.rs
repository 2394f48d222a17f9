//! `curate slurm`: launch a sharded run as Slurm job arrays (see [`super::rank`]
//! for the rank contract and [`super::steps`] for the steps of global stages).
//!
//! The Slurm scripts are plain sbatch files written under `OUT/slurm/`: one job
//! array for the ranks and one merge job chained with `afterok` and
//! `--kill-on-invalid-dep=yes`, so a failed rank cancels the merge instead of
//! leaving it pending. Relaunched, `curate slurm` submits only the ranks without
//! a marker. Every value that reaches a shell line is single-quoted
//! ([`shell_quote`]; five lines, so no crate for it).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::layout::side_dir;
use super::rank::markers;
use super::steps::{self, Step};
use crate::config::Pipeline;
use crate::error::config_error;
use crate::io::remote;
use crate::io::writer::write_atomic;

/// Quote a value for a POSIX shell line: `'...'` with embedded quotes as `'\''`.
pub fn shell_quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('\'');
    q.push_str(&s.replace('\'', r"'\''"));
    q.push('\'');
    q
}

/// [`shell_quote`] unless the value is plainly safe (letters, digits, `-_=.,:/%@+`).
pub fn shell_quote_if_needed(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=.,:/%@+".contains(c));
    if safe {
        s.to_string()
    } else {
        shell_quote(s)
    }
}

/// `curate slurm` settings.
#[derive(Debug, Clone)]
pub struct SlurmOptions {
    pub pipeline: PathBuf,
    pub tasks: usize,
    pub output: Option<PathBuf>,
    pub partition: Option<String>,
    pub time: Option<String>,
    pub mem: Option<String>,
    pub cpus_per_task: Option<usize>,
    /// Extra `#SBATCH` options, verbatim after `--` (e.g. `--account=x`), quoted.
    pub sbatch_args: Vec<String>,
    /// Write the scripts and print the sbatch commands without submitting.
    pub dry_run: bool,
    /// The curate binary the jobs run (default: this one).
    pub curate: PathBuf,
}

/// What `curate slurm` wrote and submitted.
#[derive(Debug, Clone, Default)]
pub struct SlurmPlan {
    pub scripts: Vec<PathBuf>,
    /// Ranks whose output is missing (those without a completion marker).
    pub ranks: Vec<usize>,
    /// Steps submitted, each with its incomplete tasks (ranks or band ranges).
    pub steps: Vec<(String, Vec<usize>)>,
    /// The sbatch command lines, in submission order.
    pub commands: Vec<Vec<String>>,
    /// Job ids, when submitted.
    pub job_ids: Vec<String>,
}

/// Compress rank numbers into a Slurm array spec: `0-3,5,7-8`.
pub fn array_spec(ranks: &[usize]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < ranks.len() {
        let start = ranks[i];
        let mut end = start;
        while i + 1 < ranks.len() && ranks[i + 1] == end + 1 {
            i += 1;
            end = ranks[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(",")
}

/// The script's `#SBATCH` lines. sbatch splits them on spaces without shell quoting, so only
/// values checked by [`check_directive_value`] go here; paths (log files) go on sbatch's argv.
fn sbatch_header(o: &SlurmOptions) -> String {
    let mut h = String::from("#!/bin/bash\n");
    let mut opt = |k: &str, v: &str| {
        let _ = writeln!(h, "#SBATCH --{k}={v}");
    };
    if let Some(p) = &o.partition {
        opt("partition", p);
    }
    if let Some(t) = &o.time {
        opt("time", t);
    }
    if let Some(m) = &o.mem {
        opt("mem", m);
    }
    if let Some(c) = o.cpus_per_task {
        opt("cpus-per-task", &c.to_string());
    }
    for a in &o.sbatch_args {
        let _ = writeln!(h, "#SBATCH {a}");
    }
    h.push_str("set -euo pipefail\n");
    h
}

fn check_directive_value(what: &str, v: &str) -> Result<()> {
    if v.is_empty()
        || v.chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '"' || c == '\\')
    {
        return Err(config_error(format!(
            "{what}: `{v}` cannot go into an #SBATCH line (no spaces, quotes or backslashes)"
        )));
    }
    Ok(())
}

/// Write the sbatch scripts for a sharded run and submit the incomplete ranks.
pub fn slurm(o: &SlurmOptions) -> Result<SlurmPlan> {
    if o.tasks == 0 {
        return Err(config_error("--tasks must be at least 1"));
    }
    for (what, v) in [
        ("--partition", &o.partition),
        ("--time", &o.time),
        ("--mem", &o.mem),
    ] {
        if let Some(v) = v {
            check_directive_value(what, v)?;
        }
    }
    for a in &o.sbatch_args {
        check_directive_value("sbatch option", a)?;
    }
    let pipeline = Pipeline::load(&o.pipeline)?;
    let pipeline_path = std::path::absolute(&o.pipeline)?;
    let out = o.output.clone().unwrap_or_else(|| pipeline.output_dir());
    let is_remote = out.to_str().is_some_and(remote::is_remote);
    let out = if is_remote { out } else { std::path::absolute(out)? };
    // The steps are planned now (the stages built), so a config error shows before
    // anything is queued.
    let steps = if o.tasks > 1 {
        steps::plan(&pipeline)?
    } else {
        crate::stages::build_all(&pipeline)?;
        vec![Step::Filter]
    };
    // Scripts and logs need a shared file system; for an s3:// output they go beside the
    // pipeline file.
    let slurm_dir = if is_remote {
        side_dir(&pipeline_path, &out.to_string_lossy())
    } else {
        out.join("slurm")
    };
    let steps_root = if is_remote { slurm_dir.clone() } else { out.clone() };
    let logs = slurm_dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("{}: cannot create", logs.display()))?;

    let done = markers(&out)?;
    if let Some(m) = done.values().find(|m| m.world_size != o.tasks) {
        return Err(config_error(format!(
            "{}: holds ranks of a {}-task run; use the same --tasks or another output",
            out.display(),
            m.world_size
        )));
    }
    let curate = shell_quote(&o.curate.display().to_string());
    let (pq, oq) = (
        shell_quote(&pipeline_path.display().to_string()),
        shell_quote(&out.display().to_string()),
    );
    let mut plan = SlurmPlan::default();
    // One script per step; each job depends on the one submitted before it.
    let mut dep: Option<String> = None;
    for (i, step) in steps.iter().enumerate() {
        let left = steps::incomplete(*step, &out, &steps_root, o.tasks)?;
        if *step == Step::Filter {
            plan.ranks = left.clone();
        }
        if left.is_empty() {
            continue;
        }
        let step_name = step.name(&pipeline);
        let kind = match step {
            Step::Filter => "run",
            _ => step_name.split(':').next().unwrap_or("step"),
        };
        let mut sh = sbatch_header(o);
        let rank = if step.is_single() {
            "0"
        } else {
            "\"$SLURM_ARRAY_TASK_ID\""
        };
        let step_arg = if steps.len() > 1 {
            format!(" --step {}", shell_quote(&step_name))
        } else {
            String::new()
        };
        let _ = writeln!(
            sh,
            "exec {curate} run {pq} --output {oq} --rank {rank} --world-size {}{step_arg} --quiet",
            o.tasks
        );
        let file = if *step == Step::Filter {
            "run.sbatch".to_string()
        } else {
            format!("step-{i:02}-{kind}.sbatch")
        };
        let path = slurm_dir.join(&file);
        write_atomic(&path, sh.as_bytes())?;
        plan.scripts.push(path.clone());
        let log = if step.is_single() {
            format!("step-{i:02}-{kind}-%j.log")
        } else if *step == Step::Filter {
            "rank-%a.log".to_string()
        } else {
            format!("step-{i:02}-{kind}-%a.log")
        };
        let array = (!step.is_single()).then_some(&left[..]);
        let c = sbatch_line(kind, &logs.join(log), array, dep.as_deref(), &path);
        dep = Some(if o.dry_run {
            format!("JOB_{i}")
        } else {
            let id = sbatch(&c)?;
            plan.job_ids.push(id.clone());
            id
        });
        plan.commands.push(c);
        plan.steps.push((step_name, left));
    }
    let mut merge_sh = sbatch_header(o);
    let _ = writeln!(merge_sh, "exec {curate} merge-stats {oq}");
    let merge_path = slurm_dir.join("merge.sbatch");
    write_atomic(&merge_path, merge_sh.as_bytes())?;
    plan.scripts.push(merge_path.clone());
    let c = sbatch_line(
        "merge",
        &logs.join("merge-%j.log"),
        None,
        dep.as_deref(),
        &merge_path,
    );
    if !o.dry_run {
        plan.job_ids.push(sbatch(&c)?);
    }
    plan.commands.push(c);
    Ok(plan)
}

/// The sbatch command line of one job (`array`: its tasks), after `dep` if given; a
/// failed dependency cancels it instead of leaving it pending.
fn sbatch_line(
    kind: &str,
    log: &Path,
    array: Option<&[usize]>,
    dep: Option<&str>,
    script: &Path,
) -> Vec<String> {
    let mut c = vec![
        "sbatch".to_string(),
        "--parsable".to_string(),
        format!("--job-name=curate-{kind}"),
        format!("--output={}", log.display()),
    ];
    if let Some(tasks) = array {
        c.push(format!("--array={}", array_spec(tasks)));
    }
    if let Some(d) = dep {
        c.push(format!("--dependency=afterok:{d}"));
        c.push("--kill-on-invalid-dep=yes".into());
    }
    c.push(script.display().to_string());
    c
}

/// Run one sbatch command line; returns the job id (`--parsable` prints `ID[;cluster]`).
fn sbatch(cmd: &[String]) -> Result<String> {
    let out = Command::new(&cmd[0])
        .args(&cmd[1..])
        .output()
        .with_context(|| format!("cannot run `{}` (is Slurm installed?)", cmd.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            cmd.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let id = text.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        bail!("`{}` printed no job id: {text}", cmd.join(" "));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }

    #[test]
    fn array_specs() {
        assert_eq!(array_spec(&[0, 1, 2, 3]), "0-3");
        assert_eq!(array_spec(&[1, 3, 4, 7]), "1,3-4,7");
        assert_eq!(array_spec(&[5]), "5");
    }

    #[test]
    fn directive_values_without_spaces() {
        assert!(check_directive_value("--time", "01:00:00").is_ok());
        assert!(check_directive_value("--partition", "gpu a").is_err());
        assert!(check_directive_value("--mem", "4G'").is_err());
    }
}
