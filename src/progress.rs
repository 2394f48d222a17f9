//! Progress: a live bar on a terminal, a plain log line every few seconds otherwise.
//!
//! The bar shows the bytes read of what this pass reads (the sources' size on disk,
//! compressed bytes for compressed files; or the prepass's spill, which a main pass after
//! a prepass reads instead), from [`crate::io::input_bytes_read`], with records per
//! second, the kept share and the time left; without a known total it is a spinner with
//! the same counts. A prepass shows its own bar.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Reports records/s, MB/s, the kept share and the time left while a run goes.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    log: bool,
    started: Instant,
    last_log: Instant,
    records_at_start: u64,
    records: u64,
    bytes: u64,
    kept: u64,
    /// Input bytes (on disk) of the whole run, and what was read before this run started.
    total_bytes: u64,
    read_at_start: u64,
}

impl Progress {
    /// `records_done` and `kept_done` carry a resumed run's earlier counts; `total_bytes`
    /// is the size on disk of what this pass reads (0: unknown).
    pub fn new(quiet: bool, records_done: u64, kept_done: u64, total_bytes: u64) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let bar = (!quiet && terminal).then(|| {
            let bar = if total_bytes > 0 {
                let bar = indicatif::ProgressBar::new(total_bytes);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{bar:30} {percent:>3}% {binary_bytes}/{binary_total_bytes}  {msg}  ETA {eta}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                bar
            } else {
                indicatif::ProgressBar::new_spinner()
            };
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
            total_bytes,
            read_at_start: crate::io::input_bytes_read(),
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

    /// Share of the input read and seconds left at this run's rate, when the total is known.
    fn position(&self) -> Option<(f64, f64)> {
        if self.total_bytes == 0 {
            return None;
        }
        let read = self.read();
        let share = read as f64 / self.total_bytes as f64;
        let secs = self.started.elapsed().as_secs_f64();
        let left = (self.total_bytes - read) as f64 * secs / (read as f64).max(1.0);
        Some((share, left))
    }

    /// Bytes read since this bar started, at most the total.
    fn read(&self) -> u64 {
        crate::io::input_bytes_read()
            .saturating_sub(self.read_at_start)
            .min(self.total_bytes)
    }

    /// Account one processed batch.
    pub fn update(&mut self, records_total: u64, bytes: u64, kept: u64) {
        self.records = records_total;
        self.bytes += bytes;
        self.kept += kept;
        if let Some(bar) = &self.bar {
            if self.total_bytes > 0 {
                bar.set_position(self.read());
            }
            bar.set_message(self.line());
        } else if self.log && self.last_log.elapsed() >= Duration::from_secs(5) {
            self.last_log = Instant::now();
            let at = self.position().map_or(String::new(), |(share, left)| {
                format!(
                    "  {:.1}% of {:.1} MB, ~{left:.0} s left",
                    share * 100.0,
                    self.total_bytes as f64 / 1e6
                )
            });
            eprintln!("curate: {}{at}", self.line());
        }
    }

    /// Clear the bar (the summary table follows).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
