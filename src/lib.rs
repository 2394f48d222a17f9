//! curate: turn raw, messy text into a clean instruction-tuning set.
//!
//! Data flows one way: [`io`] readers -> [`stages`] -> [`io::writer`], driven by
//! [`run::run`] from a [`config::Pipeline`]. Stages annotate [`record::Record`]s
//! and the config decides what a finding does (drop, tag, redact).

pub mod classifier;
pub mod config;
pub mod decontam;
pub mod io;
pub mod progress;
pub mod record;
pub mod report;
pub mod run;
pub mod stage;
pub mod stages;
pub mod stats;
