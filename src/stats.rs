//! Run statistics: the accounting behind `stats.json`, the summary table and the report.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::stage::Score;

/// Counts for one stage (the reader counts as stage `read`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StageStats {
    pub name: String,
    pub kind: String,
    /// Records that reached this stage.
    #[serde(rename = "in")]
    pub input: u64,
    /// Records that left it (possibly modified).
    pub kept: u64,
    pub dropped: u64,
    /// Records whose text this stage changed.
    pub modified: u64,
    /// Input bytes (as read) of the records that reached this stage.
    #[serde(default)]
    pub bytes_in: u64,
    /// Records kept but flagged by the stage (`action = "tag"`).
    #[serde(default)]
    pub tagged: u64,
    /// Wall time spent in this stage, summed over threads.
    pub seconds: f64,
    /// Thread CPU time spent in this stage (its prepass included), summed over
    /// threads; for `read`, parsing the records. Comparable across machines' loads.
    #[serde(default)]
    pub cpu_seconds: f64,
    /// Dropped records per reason code.
    pub reasons: BTreeMap<String, u64>,
    /// Stage-specific numbers (`Stage::summary`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<serde_json::Value>,
    /// The distribution of each number the stage decides by (`Stage::scores`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scores: Vec<ScoreStats>,
}

/// Bins of a score histogram.
pub const SCORE_BINS: usize = 20;

/// Records shown on each side of a threshold.
pub const NEAR_THRESHOLD: usize = 3;

/// The distribution of one [`Score`] over the records that reached its stage, split
/// by what the stage did, and the records nearest its threshold.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScoreStats {
    #[serde(flatten)]
    pub score: Score,
    /// Records per bin ([`SCORE_BINS`] equal bins over `range`) that the stage let
    /// through untagged, tagged, or dropped.
    pub passed: Vec<u64>,
    pub tagged: Vec<u64>,
    pub dropped: Vec<u64>,
    /// Records whose value is on the side of the threshold the stage flags.
    pub flagged_side: u64,
    /// Up to [`NEAR_THRESHOLD`] records on each side of the threshold, nearest first.
    pub near_threshold: Vec<ScoreExample>,
}

/// What a stage did with a record (for its score histogram).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Passed,
    Tagged,
    Dropped,
}

/// A record near a score's threshold.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScoreExample {
    pub value: f64,
    /// True when the value is on the side the stage flags.
    pub flagged_side: bool,
    pub outcome: Outcome,
    pub id: String,
    pub origin: String,
    /// The start of the record's text (sensitive spans masked).
    pub preview: String,
    /// (input source number, item number in it): of two records as near, the earlier is shown.
    pub at: [u64; 2],
}

impl ScoreStats {
    /// Empty books for a score.
    pub fn new(score: Score) -> ScoreStats {
        ScoreStats {
            score,
            passed: vec![0; SCORE_BINS],
            tagged: vec![0; SCORE_BINS],
            dropped: vec![0; SCORE_BINS],
            flagged_side: 0,
            near_threshold: Vec::new(),
        }
    }

    /// The bin of a value (values outside the range count in the first or last bin).
    pub fn bin(&self, value: f64) -> usize {
        let [lo, hi] = self.score.range;
        let x = ((value - lo) / (hi - lo) * SCORE_BINS as f64).floor();
        if x.is_nan() || x < 0.0 {
            0
        } else {
            (x as usize).min(SCORE_BINS - 1)
        }
    }

    /// Count one record's value.
    pub fn count(&mut self, value: f64, outcome: Outcome) {
        let b = self.bin(value);
        let bins = match outcome {
            Outcome::Passed => &mut self.passed,
            Outcome::Tagged => &mut self.tagged,
            Outcome::Dropped => &mut self.dropped,
        };
        bins[b] += 1;
        self.flagged_side += u64::from(self.score.flagged(value));
    }

    /// Records counted.
    pub fn total(&self) -> u64 {
        self.passed.iter().chain(&self.tagged).chain(&self.dropped).sum()
    }

    /// Sort key of an example: distance to the threshold, then position.
    fn nearness(&self, value: f64, at: [u64; 2]) -> (f64, [u64; 2]) {
        ((value - self.score.threshold).abs(), at)
    }

    /// True when a record at `at` with `value` would be shown (so that its preview is
    /// built only then).
    pub fn wants_example(&self, value: f64, at: [u64; 2]) -> bool {
        let side = self.score.flagged(value);
        let key = self.nearness(value, at);
        let mut same = self.near_threshold.iter().filter(|e| e.flagged_side == side);
        same.clone().count() < NEAR_THRESHOLD
            || same.any(|e| {
                let k = self.nearness(e.value, e.at);
                key.0.total_cmp(&k.0).then(key.1.cmp(&k.1)).is_lt()
            })
    }

    /// Add an example: kept when among the [`NEAR_THRESHOLD`] nearest of its side.
    pub fn offer_example(&mut self, example: ScoreExample) {
        self.near_threshold.push(example);
        let t = self.score.threshold;
        let order = |a: &ScoreExample, b: &ScoreExample| {
            // Passing side first, then each side nearest first, then input order.
            a.flagged_side
                .cmp(&b.flagged_side)
                .then((a.value - t).abs().total_cmp(&(b.value - t).abs()))
                .then(a.at.cmp(&b.at))
        };
        self.near_threshold.sort_by(order);
        let mut per_side = [0usize; 2];
        self.near_threshold.retain(|e| {
            let n = &mut per_side[e.flagged_side as usize];
            *n += 1;
            *n <= NEAR_THRESHOLD
        });
    }

    /// Add another run's books of the same score (a rank's).
    pub fn add(&mut self, other: &ScoreStats) {
        for (mine, theirs) in [
            (&mut self.passed, &other.passed),
            (&mut self.tagged, &other.tagged),
            (&mut self.dropped, &other.dropped),
        ] {
            for (a, b) in mine.iter_mut().zip(theirs) {
                *a += b;
            }
        }
        self.flagged_side += other.flagged_side;
        for e in &other.near_threshold {
            self.offer_example(e.clone());
        }
    }

    /// Empty the books (the score stays).
    pub fn clear(&mut self) {
        *self = ScoreStats::new(self.score.clone());
    }
}

/// One input source's counts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SourceStats {
    pub name: String,
    pub records: u64,
    pub bytes: u64,
    /// What the reader noticed (blank lines, empty file, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Its records kept and rejected.
    #[serde(default)]
    pub kept: u64,
    #[serde(default)]
    pub rejected: u64,
    /// Its rejections per stage and reason, most frequent first (ties: first seen first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejections: Vec<SourceRejections>,
}

/// Rejections of one source by one stage for one reason.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SourceRejections {
    pub stage: String,
    pub reason: String,
    pub records: u64,
}

impl SourceStats {
    /// Count one rejection, keeping `rejections` most frequent first.
    pub fn add_rejection(&mut self, stage: &str, reason: &str) {
        let mut i = match self
            .rejections
            .iter()
            .position(|r| r.stage == stage && r.reason == reason)
        {
            Some(i) => i,
            None => {
                self.rejections.push(SourceRejections {
                    stage: stage.to_string(),
                    reason: reason.to_string(),
                    records: 0,
                });
                self.rejections.len() - 1
            }
        };
        self.rejections[i].records += 1;
        while i > 0 && self.rejections[i - 1].records < self.rejections[i].records {
            self.rejections.swap(i - 1, i);
            i -= 1;
        }
    }
}

/// A rejected record shown in the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RejectSample {
    pub stage: String,
    pub reason: String,
    pub id: String,
    pub origin: String,
    pub detail: String,
    /// The start of the record's text (or of the raw bytes for malformed input).
    pub preview: String,
}

/// Everything `stats.json` holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunStats {
    pub input: u64,
    pub kept: u64,
    pub rejected: u64,
    /// Bytes of record payloads read (after decompression).
    pub bytes_in: u64,
    /// Wall-clock seconds of the run (summed over resumed attempts).
    pub seconds: f64,
    /// CPU seconds of the process, user + system (summed over resumed attempts).
    #[serde(default)]
    pub cpu_seconds: f64,
    pub stages: Vec<StageStats>,
    pub sources: Vec<SourceStats>,
    /// Output parts, relative to the output directory.
    pub kept_parts: Vec<String>,
    pub rejected_parts: Vec<String>,
    #[serde(default)]
    pub samples: Vec<RejectSample>,
    /// True once every input unit is done.
    pub complete: bool,
}

impl RunStats {
    /// Check the run's books: every input record is kept or rejected, and each stage balances.
    pub fn check_accounting(&self) -> Result<()> {
        if self.input != self.kept + self.rejected {
            bail!(
                "accounting error: input {} != kept {} + rejected {}",
                self.input,
                self.kept,
                self.rejected
            );
        }
        let mut flowing = self.input;
        for s in &self.stages {
            if s.input != flowing || s.kept + s.dropped != s.input {
                bail!(
                    "accounting error in stage `{}`: in {} (expected {flowing}), kept {}, dropped {}",
                    s.name,
                    s.input,
                    s.kept,
                    s.dropped
                );
            }
            if s.reasons.values().sum::<u64>() != s.dropped {
                bail!(
                    "accounting error in stage `{}`: reasons do not add up to dropped",
                    s.name
                );
            }
            flowing = s.kept;
        }
        if flowing != self.kept {
            bail!(
                "accounting error: last stage keeps {flowing} but the run kept {}",
                self.kept
            );
        }
        Ok(())
    }

    /// Load `DIR/stats.json`.
    pub fn load(dir: &Path) -> Result<RunStats> {
        let path = dir.join("stats.json");
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{}: not a curate stats file", path.display()))
    }

    /// The per-stage summary table printed at the end of a run and by `curate stats`.
    pub fn table(&self) -> String {
        let mut rows = vec![[
            "stage".to_string(),
            "kind".to_string(),
            "in".to_string(),
            "kept".to_string(),
            "dropped".to_string(),
            "modified".to_string(),
            "tagged".to_string(),
            "cpu s".to_string(),
            "top reasons".to_string(),
        ]];
        for s in &self.stages {
            let mut reasons: Vec<(&String, &u64)> = s.reasons.iter().collect();
            reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let top = reasons
                .iter()
                .take(3)
                .map(|(r, n)| format!("{r} {n}"))
                .collect::<Vec<_>>()
                .join(", ");
            rows.push([
                s.name.clone(),
                s.kind.clone(),
                s.input.to_string(),
                s.kept.to_string(),
                s.dropped.to_string(),
                s.modified.to_string(),
                s.tagged.to_string(),
                format!("{:.2}", s.cpu_seconds),
                top,
            ]);
        }
        let widths: Vec<usize> = (0..9)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for row in &rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                let pad = widths[c] - cell.chars().count();
                if (2..8).contains(&c) {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    if c < 8 {
                        line.push_str(&" ".repeat(pad));
                    }
                }
                line.push_str("  ");
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        let pct = if self.input > 0 {
            100.0 * self.kept as f64 / self.input as f64
        } else {
            0.0
        };
        out.push_str(&format!(
            "input {}  kept {} ({pct:.1}%)  rejected {}  {:.1} MB in {:.2} s ({:.2} CPU-s)\n",
            self.input,
            self.kept,
            self.rejected,
            self.bytes_in as f64 / 1e6,
            self.seconds,
            self.cpu_seconds
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::Flags;

    fn example(value: f64, at: u64, flagged_side: bool) -> ScoreExample {
        ScoreExample {
            value,
            flagged_side,
            outcome: if flagged_side {
                Outcome::Dropped
            } else {
                Outcome::Passed
            },
            id: format!("r{at}"),
            origin: String::new(),
            preview: String::new(),
            at: [0, at],
        }
    }

    #[test]
    fn keeps_the_records_nearest_the_threshold_earliest_first_on_ties() {
        let mut s = ScoreStats::new(Score::unit("k", "score", 0.5, Flags::AtOrAbove));
        for (i, v) in [0.1, 0.45, 0.45, 0.49, 0.9, 0.5, 0.45, 0.7, 0.55, 0.51]
            .iter()
            .enumerate()
        {
            s.count(*v, Outcome::Passed);
            if s.wants_example(*v, [0, i as u64]) {
                s.offer_example(example(*v, i as u64, s.score.flagged(*v)));
            }
        }
        let ids: Vec<&str> = s.near_threshold.iter().map(|e| e.id.as_str()).collect();
        // Passing side: 0.49, then the first two 0.45s; flagged side: 0.5, 0.51, 0.55.
        assert_eq!(ids, ["r3", "r1", "r2", "r5", "r9", "r8"]);
        assert_eq!(s.flagged_side, 5);
        assert_eq!(s.total(), 10);
        assert_eq!(
            (s.bin(0.0), s.bin(0.5), s.bin(1.0), s.bin(7.0), s.bin(-1.0)),
            (0, 10, 19, 19, 0)
        );
        // Adding a rank's books gives what one run over both would have.
        let mut merged = ScoreStats::new(s.score.clone());
        merged.add(&s);
        assert_eq!(merged.near_threshold.len(), 6);
        assert_eq!(merged.passed, s.passed);
    }

    #[test]
    fn source_rejections_stay_most_frequent_first() {
        let mut s = SourceStats::default();
        for (stage, reason) in [
            ("a", "x"),
            ("b", "y"),
            ("b", "y"),
            ("c", "z"),
            ("a", "x"),
            ("a", "x"),
        ] {
            s.add_rejection(stage, reason);
        }
        let got: Vec<(&str, u64)> = s
            .rejections
            .iter()
            .map(|r| (r.stage.as_str(), r.records))
            .collect();
        assert_eq!(got, [("a", 3), ("b", 2), ("c", 1)]);
    }
}
