//! Benchmark decontamination: loaders for MMLU, C-Eval and CMMLU, text
//! normalization, and the n-gram index shared by the `decontaminate` stage and
//! `curate audit`.

pub mod audit;
pub mod index;
pub mod loaders;
pub mod normalize;
pub mod report;

pub use index::{Evidence, Hit, Index, MatchConfig};
pub use loaders::{BenchFormat, BenchItem, BenchmarkSpec};

/// Load every benchmark and build one index over all their items.
pub fn build_index(specs: &[BenchmarkSpec], cfg: MatchConfig) -> anyhow::Result<Index> {
    use anyhow::Context;
    cfg.check()?;
    let mut items = Vec::new();
    for s in specs {
        items.extend(loaders::load(s).with_context(|| format!("benchmark `{}`", s.name))?);
    }
    Ok(Index::build(cfg, items))
}
