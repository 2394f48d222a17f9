//! Run statistics: the accounting behind `stats.json`, the summary table and the report.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

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
