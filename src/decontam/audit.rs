//! `curate audit`: match input records against benchmarks without writing a
//! cleaned set. Reads every input format and schema `curate run` reads, writes
//! `audit.json` (summary, and every contaminated record with its hits) and a
//! self-contained `audit.html` into the output folder.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::report::Tally;
use super::{build_index, BenchFormat, BenchmarkSpec, Index, MatchConfig};
use crate::io::InputFormat;
use crate::record::Schema;

/// What to audit.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    pub benchmarks: Vec<BenchmarkSpec>,
    /// Input files, folders or globs (relative to the working directory).
    pub inputs: Vec<String>,
    pub output: PathBuf,
    pub format: InputFormat,
    pub schema: Option<Schema>,
    pub matching: MatchConfig,
    pub threads: usize,
    /// Worst records shown in `audit.html`.
    pub report_records: usize,
}

/// Parse `--bench NAME=PATH` (format = NAME) or `--bench NAME:FORMAT=PATH`.
pub fn parse_bench(arg: &str) -> Result<BenchmarkSpec> {
    let Some((lhs, path)) = arg.split_once('=') else {
        bail!("--bench `{arg}`: expected NAME=PATH (NAME one of mmlu, ceval, cmmlu) or NAME:FORMAT=PATH");
    };
    let (name, fmt) = lhs.split_once(':').unwrap_or((lhs, lhs));
    let Some(format) = BenchFormat::parse(fmt) else {
        bail!("--bench `{arg}`: unknown format `{fmt}`; expected mmlu, ceval or cmmlu (NAME:FORMAT=PATH)");
    };
    Ok(BenchmarkSpec {
        name: name.to_string(),
        format,
        path: PathBuf::from(path),
    })
}

/// The result of an audit.
pub struct Audit {
    pub index: Arc<Index>,
    pub tally: Tally,
    pub records: Vec<Value>,
    pub malformed: u64,
    pub bytes: u64,
}

/// Run an audit and write `audit.json` and `audit.html`.
pub fn audit(opts: &AuditOptions) -> Result<Audit> {
    if opts.benchmarks.is_empty() {
        bail!(crate::error::config_error(
            "audit: at least one --bench is needed"
        ));
    }
    let index = Arc::new(
        build_index(&opts.benchmarks, opts.matching.clone())
            .map_err(|e| crate::error::config_error(format!("{e:#}")))?,
    );
    let cwd = std::env::current_dir()?;
    let sources = crate::io::expand_inputs(&opts.inputs, &cwd, opts.format)
        .map_err(|e| crate::error::config_error(format!("audit: {e:#}")))?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads)
        .build()?;
    let mut tally = Tally::default();
    let mut records = Vec::new();
    let (mut malformed, mut bytes) = (0u64, 0u64);
    crate::run::map_records(
        &sources,
        opts.schema,
        &pool,
        None,
        |size, rec| {
            let rec = rec.ok().map(|rec| {
                let text = rec.full_text();
                let hits = index.scan(&text);
                (rec.id, rec.origin.to_string(), text, hits)
            });
            (size, rec)
        },
        |done| {
            for (size, d) in done {
                bytes += size;
                let Some((id, origin, text, hits)) = d else {
                    malformed += 1;
                    continue;
                };
                tally.add(&index, &id, &text, &hits, opts.report_records);
                if !hits.is_empty() {
                    records.push(json!({"id": id, "source": origin, "hits": crate::stages::decontaminate::hits_json(&index, &hits)}));
                }
            }
            Ok(())
        },
    )?;
    tally.finish(&index);
    std::fs::create_dir_all(&opts.output)
        .with_context(|| format!("{}: cannot create", opts.output.display()))?;
    let summary = tally.to_json(&index);
    let doc = json!({
        "benchmarks": opts.benchmarks.iter().map(|b| json!({"name": b.name, "format": b.format, "path": b.path})).collect::<Vec<_>>(),
        "inputs": sources.iter().map(|s| s.path.to_string_lossy().to_string()).collect::<Vec<_>>(),
        "matching": opts.matching,
        "malformed": malformed,
        "summary": summary,
        "records": records,
    });
    write(&opts.output.join("audit.json"), &serde_json::to_vec_pretty(&doc)?)?;
    let html = crate::report::render_html(
        "audit.html",
        AUDIT_TEMPLATE,
        json!({ "inputs": opts.inputs.join(", "), "section": tally.html(&index)? }),
    )?;
    write(&opts.output.join("audit.html"), html.as_bytes())?;
    Ok(Audit {
        index,
        tally,
        records,
        malformed,
        bytes,
    })
}

/// `audit.html` (auto-escaped; `section` is the decontamination section, rendered already).
const AUDIT_TEMPLATE: &str = r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>curate audit</title><style>body{font-family:sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}mark{background:#fde047}</style></head><body><h1>curate audit</h1><p>Inputs: {{ inputs }}</p>{{ section|safe }}</body></html>
"#;

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("{}: cannot write", path.display()))
}

impl Audit {
    /// One line per benchmark: records contaminated and items matched.
    pub fn summary_lines(&self) -> Vec<String> {
        let t = &self.tally;
        t.benchmarks
            .iter()
            .map(|(b, c)| {
                format!(
                    "{b}: {} of {} records contaminated ({:.3}%), {} of {} items matched",
                    c.records,
                    t.scanned,
                    if t.scanned == 0 {
                        0.0
                    } else {
                        100.0 * c.records as f64 / t.scanned as f64
                    },
                    c.items_matched,
                    c.items
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bench_args() {
        let b = parse_bench("mmlu=/d/mmlu").unwrap();
        assert_eq!((b.name.as_str(), b.format), ("mmlu", BenchFormat::Mmlu));
        let b = parse_bench("mine:c-eval=x").unwrap();
        assert_eq!((b.name.as_str(), b.format), ("mine", BenchFormat::Ceval));
        assert!(parse_bench("foo=x").is_err());
        assert!(parse_bench("mmlu").is_err());
    }
}
