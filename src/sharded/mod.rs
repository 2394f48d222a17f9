//! Sharded runs: one pipeline split over ranks (`curate run --rank R --world-size N`),
//! launched as Slurm job arrays (`curate slurm`) and combined afterwards
//! (`curate merge-stats`).
//!
//! - [`rank`]: which input files a rank reads, its output folder and completion marker;
//! - [`steps`]: the observe, buckets and clusters steps that split a global stage
//!   (dedup) over ranks, and the filter step (a rank's own run);
//! - [`layout`]: where the steps keep their files;
//! - [`merge`]: the whole run's `stats.json` and `report.html` from the ranks';
//! - [`slurm`]: the sbatch scripts and their submission.
//!
//! The executor (`src/run/`) knows a rank only through [`rank::Rank`] and
//! [`layout`]; the steps call the executor, never the reverse.

pub mod layout;
pub mod merge;
pub mod rank;
pub mod slurm;
pub mod steps;
