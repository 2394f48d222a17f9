//! Shared helpers for stage unit tests: a stage built from the TOML text of its
//! `[[stage]]` table, a record built from a JSON value, and a stage run on one.
//!
//! ```ignore
//! let s = build("action = \"tag\"", Length::new);
//! let (verdict, r) = run(&s, json!({"instruction": "问", "output": "答"}));
//! ```

use std::path::Path;

use anyhow::Result;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::record::Record;
use crate::stage::{BuildContext, Stage, Verdict};

/// A build context whose relative paths resolve against `dir`.
pub(crate) fn context(dir: &Path) -> BuildContext {
    BuildContext {
        config_dir: dir.to_path_buf(),
    }
}

/// A record from a JSON object, its schema detected from the fields (source `t`, line 1).
pub(crate) fn record(v: Value) -> Record {
    crate::record::test_record(v)
}

/// Parse `toml_text` as the stage's config (panics if it does not parse) and build
/// the stage with `new`, relative paths resolved against `dir`: the constructor's result.
pub(crate) fn try_build_in<C: DeserializeOwned, S>(
    dir: &Path,
    toml_text: &str,
    new: impl FnOnce(C, &BuildContext) -> Result<S>,
) -> Result<S> {
    let cfg: C = toml::from_str(toml_text).unwrap_or_else(|e| panic!("config `{toml_text}`: {e}"));
    new(cfg, &context(dir))
}

/// [`try_build_in`] with paths relative to the working directory.
pub(crate) fn try_build<C: DeserializeOwned, S>(
    toml_text: &str,
    new: impl FnOnce(C, &BuildContext) -> Result<S>,
) -> Result<S> {
    try_build_in(Path::new("."), toml_text, new)
}

/// [`try_build_in`] for a stage that must build (panics otherwise).
pub(crate) fn build_in<C: DeserializeOwned, S>(
    dir: &Path,
    toml_text: &str,
    new: impl FnOnce(C, &BuildContext) -> Result<S>,
) -> S {
    try_build_in(dir, toml_text, new).unwrap_or_else(|e| panic!("stage from `{toml_text}`: {e:#}"))
}

/// [`build_in`] with paths relative to the working directory.
pub(crate) fn build<C: DeserializeOwned, S>(
    toml_text: &str,
    new: impl FnOnce(C, &BuildContext) -> Result<S>,
) -> S {
    build_in(Path::new("."), toml_text, new)
}

/// Run `stage` on the record built from `v` (panics if `process` fails): the
/// verdict and the record as the stage left it.
pub(crate) fn run(stage: &dyn Stage, v: Value) -> (Verdict, Record) {
    let mut r = record(v);
    let verdict = stage.process(&mut r).expect("process");
    (verdict, r)
}
