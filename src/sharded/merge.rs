//! `curate merge-stats`: combine the finished ranks of a sharded run into the
//! whole run's `stats.json` and `report.html`. It needs every marker of the world;
//! the kept parts of all ranks together carry the same names and bytes as a
//! single-process run's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::rank::{markers, Rank};
use crate::config::Pipeline;
use crate::io::remote::{self, Bucket};
use crate::io::writer::write_atomic;
use crate::stats::RunStats;

/// Combine the finished ranks under `out` into `out/stats.json` and `out/report.html`.
pub fn merge_stats(out: &Path) -> Result<RunStats> {
    if let Some(url) = out.to_str().filter(|u| remote::is_remote(u)) {
        return merge_remote(url);
    }
    let found = markers(out)?;
    let Some(first) = found.values().next() else {
        bail!(
            "{}: no completed ranks (no ranks/rank-*.done markers)",
            out.display()
        );
    };
    let world = first.world_size;
    let pipeline_path = first.pipeline.clone();
    if let Some(m) = found.values().find(|m| m.world_size != world) {
        bail!(
            "{}: rank {} was run with world size {}, rank {} with {}",
            out.display(),
            first.rank,
            world,
            m.rank,
            m.world_size
        );
    }
    let missing: Vec<String> = (0..world)
        .filter(|r| !found.contains_key(r))
        .map(|r| r.to_string())
        .collect();
    if !missing.is_empty() {
        bail!(
            "{}: {} of {} ranks are not complete (missing: {}); rerun them first",
            out.display(),
            missing.len(),
            world,
            missing.join(", ")
        );
    }
    let pipeline = Pipeline::load(&pipeline_path)
        .with_context(|| format!("the pipeline of the run in {}", out.display()))?;
    let mut ranks = Vec::with_capacity(world);
    for r in 0..world {
        let dir = Rank {
            rank: r,
            world_size: world,
        }
        .dir(out);
        let stats = RunStats::load(&dir)?;
        let sections: Vec<(String, String)> = match std::fs::read(dir.join("sections.json")) {
            Ok(b) => serde_json::from_slice(&b)
                .with_context(|| format!("{}: unreadable sections.json", dir.display()))?,
            Err(_) => Vec::new(),
        };
        ranks.push((dir, stats, sections));
    }
    let merged = combine(&ranks, pipeline.run.report_samples)?;
    merged.check_accounting()?;
    let mut sections = Vec::new();
    for (r, (_, _, secs)) in ranks.iter().enumerate() {
        for (name, html) in secs {
            sections.push((format!("{name} (rank {r})"), html.clone()));
        }
    }
    // The clusters of a minhash_dedup stage, as a single-process run puts them.
    for (k, spec) in pipeline.stages.iter().enumerate() {
        let src = super::layout::global_dir(out, k).join("clusters.jsonl");
        if spec.kind == "minhash_dedup" && src.exists() {
            let tmp = out.join("clusters.jsonl.tmp");
            std::fs::copy(&src, &tmp).with_context(|| format!("{}: cannot copy", src.display()))?;
            std::fs::rename(&tmp, out.join("clusters.jsonl"))?;
        }
    }
    // Every rank scanned every source for the output schema, so all ranks wrote the
    // same features.json: the merged run has it where a single-process run puts it.
    if let Some((dir, _, _)) = ranks.first() {
        if let Ok(bytes) = std::fs::read(dir.join("features.json")) {
            write_atomic(&out.join("features.json"), &bytes)?;
        }
    }
    write_atomic(&out.join("stats.json"), &serde_json::to_vec_pretty(&merged)?)?;
    write_atomic(
        &out.join("report.html"),
        crate::report::render(&merged, &pipeline, &sections)?.as_bytes(),
    )?;
    Ok(merged)
}

/// Merge a sharded run whose output is an `s3://` prefix: the markers, stats, report
/// sections and features come down into a temporary folder, the merged stats, report
/// and features go up.
fn merge_remote(url: &str) -> Result<RunStats> {
    let (bucket, prefix) = Bucket::for_url(url)?;
    let tmp = tempfile::tempdir().context("cannot create a temporary folder")?;
    let found = markers(Path::new(url))?;
    std::fs::create_dir_all(tmp.path().join("ranks"))?;
    for (r, m) in &found {
        let shard = Rank {
            rank: *r,
            world_size: m.world_size,
        };
        write_atomic(&shard.marker(tmp.path()), &serde_json::to_vec(m)?)?;
        let dir = shard.dir(tmp.path());
        std::fs::create_dir_all(&dir)?;
        for f in ["stats.json", "sections.json", "features.json"] {
            let key = remote::join_key(&prefix, &format!("{}/{f}", shard.rel_dir()));
            if let Some(bytes) = bucket.get_small(&key)? {
                std::fs::write(dir.join(f), bytes)?;
            }
        }
    }
    let stats = merge_stats(tmp.path())?;
    if tmp.path().join("features.json").exists() {
        bucket.upload_file(
            &tmp.path().join("features.json"),
            &remote::join_key(&prefix, "features.json"),
        )?;
    }
    bucket.upload_file(
        &tmp.path().join("report.html"),
        &remote::join_key(&prefix, "report.html"),
    )?;
    bucket.upload_file(
        &tmp.path().join("stats.json"),
        &remote::join_key(&prefix, "stats.json"),
    )?;
    Ok(stats)
}

/// Add up the ranks' books; parts and sources come back in global input order.
/// A finished rank: its directory, books and report sections.
type RankRun = (PathBuf, RunStats, Vec<(String, String)>);

fn combine(ranks: &[RankRun], samples_per: usize) -> Result<RunStats> {
    let world = ranks.len();
    let mut m = RunStats {
        stages: ranks[0].1.stages.clone(),
        complete: true,
        ..Default::default()
    };
    for s in &mut m.stages {
        s.input = 0;
        s.kept = 0;
        s.dropped = 0;
        s.modified = 0;
        s.tagged = 0;
        s.seconds = 0.0;
        s.cpu_seconds = 0.0;
        s.bytes_in = 0;
        s.reasons.clear();
        s.summary = None;
        for sc in &mut s.scores {
            sc.clear();
        }
    }
    let mut sources = Vec::new();
    let mut kept_parts = Vec::new();
    let mut rejected_parts = Vec::new();
    for (r, (_, st, _)) in ranks.iter().enumerate() {
        if st.stages.len() != m.stages.len() {
            bail!("rank {r}: {} stages, rank 0: {}", st.stages.len(), m.stages.len());
        }
        m.input += st.input;
        m.kept += st.kept;
        m.rejected += st.rejected;
        m.bytes_in += st.bytes_in;
        // Ranks run side by side: the run took as long as its slowest rank.
        m.seconds = m.seconds.max(st.seconds);
        // CPU time adds up over ranks.
        m.cpu_seconds += st.cpu_seconds;
        for (a, b) in m.stages.iter_mut().zip(&st.stages) {
            a.input += b.input;
            a.kept += b.kept;
            a.dropped += b.dropped;
            a.modified += b.modified;
            a.tagged += b.tagged;
            a.seconds += b.seconds;
            a.cpu_seconds += b.cpu_seconds;
            a.bytes_in += b.bytes_in;
            for (k, v) in &b.reasons {
                *a.reasons.entry(k.clone()).or_default() += v;
            }
            if a.scores.len() != b.scores.len() {
                bail!("rank {r}: stage `{}` has other scores than rank 0's", b.name);
            }
            // Examples carry the run's source numbers, so the nearest ones over all
            // ranks are those a single run picks.
            for (sa, sb) in a.scores.iter_mut().zip(&b.scores) {
                sa.add(sb);
            }
        }
        // Rank r's k-th source is the global source r + k * world.
        for (k, s) in st.sources.iter().enumerate() {
            sources.push((r + k * world, s.clone()));
        }
        let prefix = format!(
            "{}/",
            Rank {
                rank: r,
                world_size: world
            }
            .rel_dir()
        );
        kept_parts.extend(st.kept_parts.iter().map(|p| format!("{prefix}{p}")));
        rejected_parts.extend(st.rejected_parts.iter().map(|p| format!("{prefix}{p}")));
    }
    for (i, s) in m.stages.iter_mut().enumerate() {
        let per_rank: Vec<serde_json::Value> = ranks
            .iter()
            .map(|(_, st, _)| st.stages[i].summary.clone().unwrap_or(serde_json::Value::Null))
            .collect();
        if per_rank.iter().any(|v| !v.is_null()) {
            s.summary = Some(serde_json::json!({ "ranks": per_rank }));
        }
    }
    sources.sort_by_key(|(g, _)| *g);
    m.sources = sources.into_iter().map(|(_, s)| s).collect();
    let by_file_name = |p: &String| p.rsplit('/').next().unwrap_or(p).to_string();
    kept_parts.sort_by_key(by_file_name);
    rejected_parts.sort_by_key(by_file_name);
    m.kept_parts = kept_parts;
    m.rejected_parts = rejected_parts;
    // Samples: rank order, at most `samples_per` per stage and reason, as one run shows them.
    let mut shown: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (_, st, _) in ranks {
        for s in &st.samples {
            let n = shown.entry((s.stage.clone(), s.reason.clone())).or_default();
            if *n < samples_per {
                *n += 1;
                m.samples.push(s.clone());
            }
        }
    }
    Ok(m)
}
