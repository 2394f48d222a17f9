//! curate: turn raw, messy text into a clean instruction-tuning set.
//!
//! Data flows one way: [`io`] readers -> [`stages`] -> [`io::writer`], driven by
//! [`run::run`] from a [`config::Pipeline`]. Stages annotate [`record::Record`]s
//! and the config decides what a finding does (drop, tag, redact). Per-record
//! stages implement [`stage::Stage`]; dedup implements [`stage::GlobalStage`] on
//! the [`dedup`] engine. [`sharded`] splits a run over ranks and Slurm jobs.

pub mod classifier;
pub mod config;
pub mod decontam;
pub mod dedup;
pub mod error;
pub mod extract;
pub mod finetune;
pub mod hash;
pub mod io;
pub mod lm_score;
pub mod pii;
pub mod progress;
pub mod record;
pub mod report;
pub mod run;
pub mod shape;
pub mod sharded;
pub mod stage;
pub mod stages;
pub mod stats;
pub mod text;
pub mod tokstats;

/// Where the external data sets live, for tests and benchmarks: `CURATE_SHARED_DATA`,
/// else `../shared/data` beside the source tree.
pub fn shared_data_dir() -> std::path::PathBuf {
    std::env::var_os("CURATE_SHARED_DATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"))
}
