//! The pipeline file: `[input]`, an ordered list of `[[stage]]` tables, `[output]`, `[run]`,
//! and `[[benchmark]]` tables (for the `decontaminate` stage).
//!
//! Unknown keys are errors everywhere, and every error names the file and the
//! line (toml's own messages carry line and column; stage tables add their line).
//! Relative paths resolve against the folder of the pipeline file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::error::config_error;
use crate::io::writer::{Compression, OutputFormat};
use crate::io::{lexical_clean, InputFormat};
use crate::record::{FieldMap, Schema};

/// `[input]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// Files, directories or glob patterns; `.gz` and `.zst` are read transparently.
    pub paths: Vec<String>,
    #[serde(default)]
    pub format: InputFormat,
    /// `auto` (per record, from the fields present) or one of the schema names.
    #[serde(default = "default_schema")]
    pub schema: String,
    /// Renames: which input field holds each text view.
    #[serde(default)]
    pub fields: FieldMap,
    /// A longer record is rejected as `malformed` without being held in memory.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: u64,
}

fn default_schema() -> String {
    "auto".into()
}

fn default_max_record_bytes() -> u64 {
    64 << 20
}

impl InputConfig {
    /// The configured schema, `None` for auto-detection.
    pub fn schema(&self) -> Result<Option<Schema>> {
        if self.schema == "auto" {
            return Ok(None);
        }
        serde_json::from_value(serde_json::Value::String(self.schema.clone())).map_err(|_| {
            config_error(format!(
                "[input] schema: unknown schema `{}`, expected auto, text, html, alpaca, sharegpt, messages or preference",
                self.schema
            ))
        })
    }
}

/// `[output]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    pub dir: PathBuf,
    #[serde(default)]
    pub format: OutputFormat,
    #[serde(default)]
    pub compression: Compression,
    /// zstd level (1-19) or gzip level (0-9); a fixed default keeps output reproducible.
    #[serde(default)]
    pub compression_level: Option<i32>,
    /// Input records per part: each part is also one unit of resumable work.
    #[serde(default = "default_part_records")]
    pub part_records: u64,
    /// Name of the object that holds stage annotations in output records.
    #[serde(default = "default_meta_field")]
    pub meta_field: String,
}

fn default_part_records() -> u64 {
    100_000
}

fn default_meta_field() -> String {
    "meta".into()
}

/// `[run]`: execution knobs that never change the output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Worker threads; 0 means one per core.
    pub threads: usize,
    /// Records handed to the workers at once.
    pub batch_records: usize,
    /// Bytes handed to the workers at once (a batch closes at whichever comes first).
    pub batch_bytes: usize,
    /// Rejected records shown per stage and reason in the report.
    pub report_samples: usize,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            threads: 0,
            batch_records: 2048,
            batch_bytes: 32 << 20,
            report_samples: 3,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    input: InputConfig,
    #[serde(default)]
    stage: Vec<toml::Spanned<toml::Table>>,
    output: OutputConfig,
    #[serde(default)]
    run: RunConfig,
    #[serde(default)]
    benchmark: Vec<crate::decontam::BenchmarkSpec>,
}

/// One `[[stage]]` table, before the stage is built from it.
#[derive(Debug, Clone)]
pub struct StageSpec {
    /// Unique name in this pipeline (`name` key, else the kind; repeats get `#2`, `#3`).
    pub name: String,
    pub kind: String,
    /// The stage's own parameters (without `kind` and `name`).
    pub params: toml::Table,
    /// 1-based line of the table in the pipeline file.
    pub line: usize,
    /// 1-based line of each key written in the table (`key = ...`), for errors about a key.
    pub key_lines: BTreeMap<String, usize>,
}

impl StageSpec {
    /// Where this stage is defined, for error messages: `file:line: stage `name``.
    pub fn location(&self, file: &Path) -> String {
        format!("{}:{}: stage `{}`", file.display(), self.line, self.name)
    }

    /// Where an error about this stage points: the line of the first of its keys
    /// that `message` names in backticks, else the table's header line.
    pub fn location_for(&self, file: &Path, message: &str) -> String {
        let line = message
            .split('`')
            .skip(1)
            .step_by(2)
            .find_map(|word| self.key_lines.get(word))
            .copied()
            .unwrap_or(self.line);
        format!("{}:{line}: stage `{}`", file.display(), self.name)
    }
}

/// A loaded pipeline file.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The pipeline file as given.
    pub path: PathBuf,
    /// Its folder: relative paths resolve against it.
    pub dir: PathBuf,
    /// The file's text, kept for the run's fingerprint.
    pub source_text: String,
    pub input: InputConfig,
    pub stages: Vec<StageSpec>,
    pub output: OutputConfig,
    pub run: RunConfig,
    /// `[[benchmark]]` tables: benchmarks the `decontaminate` stage matches against
    /// (paths relative to the pipeline file, resolved by the stage).
    pub benchmark: Vec<crate::decontam::BenchmarkSpec>,
}

fn line_of(text: &str, byte: usize) -> usize {
    text[..byte.min(text.len())].matches('\n').count() + 1
}

/// The 1-based line of each `key = ...` of the table whose header is on line `header`,
/// up to the next table header.
fn key_lines(text: &str, header: usize) -> BTreeMap<String, usize> {
    let mut keys = BTreeMap::new();
    for (i, line) in text.lines().enumerate().skip(header) {
        let line = line.trim_start();
        if line.starts_with('[') {
            break;
        }
        if let Some((key, _)) = line.split_once('=') {
            let key = key.trim().trim_matches('"');
            let key = key.split('.').next().unwrap_or(key).trim();
            if !key.is_empty() && !key.starts_with('#') {
                keys.entry(key.to_string()).or_insert(i + 1);
            }
        }
    }
    keys
}

impl Pipeline {
    /// Read and check a pipeline file; errors are [`ConfigError`]s naming file and line.
    pub fn load(path: &Path) -> Result<Pipeline> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| config_error(format!("{}: cannot read pipeline file: {e}", path.display())))?;
        Self::parse(path, &text)
    }

    /// Parse pipeline text as if read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Pipeline> {
        let raw: RawPipeline = toml::from_str(text)
            .map_err(|e| config_error(format!("{}: {}", path.display(), e.to_string().trim_end())))?;
        let dir = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let mut stages: Vec<StageSpec> = Vec::new();
        for (i, spanned) in raw.stage.into_iter().enumerate() {
            let line = line_of(text, spanned.span().start);
            let mut params = spanned.into_inner();
            let kind = match params.remove("kind") {
                Some(toml::Value::String(k)) => k,
                Some(_) => {
                    return Err(config_error(format!(
                        "{}:{line}: stage #{}: key `kind` must be a string",
                        path.display(),
                        i + 1
                    )))
                }
                None => {
                    return Err(config_error(format!(
                        "{}:{line}: stage #{}: missing key `kind`",
                        path.display(),
                        i + 1
                    )))
                }
            };
            let base = match params.remove("name") {
                Some(toml::Value::String(n)) => n,
                Some(_) => {
                    return Err(config_error(format!(
                        "{}:{line}: stage #{}: key `name` must be a string",
                        path.display(),
                        i + 1
                    )))
                }
                None => kind.clone(),
            };
            let mut name = base.clone();
            let mut n = 2;
            while stages.iter().any(|s| s.name == name) || name == "read" {
                name = format!("{base}#{n}");
                n += 1;
            }
            let key_lines = key_lines(text, line);
            stages.push(StageSpec {
                name,
                kind,
                params,
                line,
                key_lines,
            });
        }
        let p = Pipeline {
            path: path.to_path_buf(),
            dir,
            source_text: text.to_string(),
            input: raw.input,
            stages,
            output: raw.output,
            run: raw.run,
            benchmark: raw.benchmark,
        };
        p.check()?;
        Ok(p)
    }

    fn check(&self) -> Result<()> {
        let f = self.path.display();
        if self.input.paths.is_empty() {
            bail!(config_error(format!(
                "{f}: [input] paths: at least one path is needed"
            )));
        }
        self.input.schema()?;
        if self.output.part_records == 0 {
            bail!(config_error(format!(
                "{f}: [output] part_records must be at least 1"
            )));
        }
        if self.input.max_record_bytes < 16 {
            bail!(config_error(format!(
                "{f}: [input] max_record_bytes is too small"
            )));
        }
        if self.output.meta_field.is_empty() {
            bail!(config_error(format!(
                "{f}: [output] meta_field must not be empty"
            )));
        }
        if let Some(level) = self.output.compression_level {
            let ok = match self.output.compression {
                Compression::Zstd => (1..=19).contains(&level),
                Compression::Gzip => (0..=9).contains(&level),
                Compression::None => true,
            };
            if !ok {
                bail!(config_error(format!(
                    "{f}: [output] compression_level {level} is out of range for {:?}",
                    self.output.compression
                )));
            }
        }
        let mut names: Vec<&str> = self.benchmark.iter().map(|b| b.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            bail!(config_error(format!(
                "{f}: [[benchmark]] name `{}` is used twice",
                w[0]
            )));
        }
        if self.run.batch_records == 0 || self.run.batch_bytes == 0 {
            bail!(config_error(format!(
                "{f}: [run] batch_records and batch_bytes must be positive"
            )));
        }
        Ok(())
    }

    /// Resolve a path from the config file against its folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.to_str().is_some_and(crate::io::remote::is_remote) || p.is_absolute() {
            p.to_path_buf()
        } else {
            lexical_clean(&self.dir.join(p))
        }
    }

    /// The output directory, resolved.
    pub fn output_dir(&self) -> PathBuf {
        self.resolve(&self.output.dir)
    }
}

/// Deserialize a stage's parameter table into its config struct, naming the stage on error.
pub fn stage_params<T: serde::de::DeserializeOwned>(spec: &StageSpec, file: &Path) -> Result<T> {
    toml::Value::Table(spec.params.clone())
        .try_into()
        .map_err(|e: toml::de::Error| {
            let message = e.to_string();
            config_error(format!(
                "{} (kind `{}`): {}",
                spec.location_for(file, &message),
                spec.kind,
                message.trim_end()
            ))
        })
}

/// Parse `--input`-style override strings into the `[input] paths` form.
pub fn override_paths(paths: &[PathBuf]) -> Result<Vec<String>> {
    paths
        .iter()
        .map(|p| {
            p.to_str()
                .map(String::from)
                .ok_or_else(|| anyhow!("input path is not valid UTF-8: {}", p.display()))
        })
        .collect::<Result<_>>()
        .context("--input")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Pipeline> {
        Pipeline::parse(Path::new("p/x.toml"), text)
    }

    const OK: &str = r#"
[input]
paths = ["a.jsonl"]

[[stage]]
kind = "length"
min_chars = 3

[[stage]]
kind = "length"

[output]
dir = "out"
"#;

    #[test]
    fn parses_stages_with_lines_and_unique_names() {
        let p = parse(OK).unwrap();
        assert_eq!(p.stages.len(), 2);
        assert_eq!(p.stages[0].line, 5);
        assert_eq!(p.stages[0].name, "length");
        assert_eq!(p.stages[1].name, "length#2");
        assert_eq!(p.output_dir(), Path::new("p/out"));
        assert!(p.stages[0].params.contains_key("min_chars"));
        assert!(!p.stages[0].params.contains_key("kind"));
    }

    #[test]
    fn unknown_keys_are_errors_with_file_and_line() {
        let err = parse(&OK.replace("dir = \"out\"", "dir = \"out\"\ncolour = 1")).unwrap_err();
        let msg = err.to_string();
        assert!(err.downcast_ref::<crate::error::ConfigError>().is_some());
        assert!(
            msg.contains("p/x.toml") && msg.contains("line 14") && msg.contains("colour"),
            "{msg}"
        );
        let err = parse(&OK.replace("[[stage]]\nkind = \"length\"\n\n", "[[stage]]\nmin_chars = 1\n\n"))
            .unwrap_err();
        assert!(err.to_string().contains("missing key `kind`"), "{err}");
    }
}
