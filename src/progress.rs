//! Progress: a live bar on a terminal, a plain log line every few seconds otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Reports records/s, MB/s and the kept share while a run goes.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    log: bool,
    started: Instant,
    last_log: Instant,
    records_at_start: u64,
    records: u64,
    bytes: u64,
    kept: u64,
}

impl Progress {
    /// `records_done` and `kept_done` carry a resumed run's earlier counts.
    pub fn new(quiet: bool, records_done: u64, kept_done: u64) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let bar = (!quiet && terminal).then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            log: !quiet && !terminal,
            started: Instant::now(),
            last_log: Instant::now(),
            records_at_start: records_done,
            records: records_done,
            bytes: 0,
            kept: kept_done,
        }
    }

    fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let done = self.records - self.records_at_start;
        let pct = if self.records > 0 {
            100.0 * self.kept as f64 / self.records as f64
        } else {
            0.0
        };
        format!(
            "{} records  {:.0} rec/s  {:.1} MB/s  kept {pct:.1}%",
            self.records,
            done as f64 / secs,
            self.bytes as f64 / 1e6 / secs
        )
    }

    /// Account one processed batch.
    pub fn update(&mut self, records_total: u64, bytes: u64, kept: u64) {
        self.records = records_total;
        self.bytes += bytes;
        self.kept += kept;
        if let Some(bar) = &self.bar {
            bar.set_message(self.line());
        } else if self.log && self.last_log.elapsed() >= Duration::from_secs(5) {
            self.last_log = Instant::now();
            eprintln!("curate: {}", self.line());
        }
    }

    /// Clear the bar (the summary table follows).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
