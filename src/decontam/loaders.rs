//! Benchmark loaders for the original release layouts.
//!
//! - `mmlu`: one CSV per subject and split, `<subject>_<split>.csv`, **no header**,
//!   columns `question,A,B,C,D,answer` (Hendrycks et al.; `data/{dev,val,test}`).
//! - `ceval`: `<subject>_<split>.csv` with header `id,question,A,B,C,D,answer,explanation`
//!   (`test` has no `answer`/`explanation`).
//! - `cmmlu`: `<subject>.csv` under `dev/` and `test/`, header `,Question,A,B,C,D,Answer`.
//!
//! `path` is the folder of the release (holding `dev/`, `val/`, `test/`), one split
//! folder, or one CSV file. Every `.csv` below it is read, sorted by path. The split
//! is the `_<split>` suffix of the file name, else the parent folder's name; the
//! subject is the file name without the suffix. `row` is the 0-based data row.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::io::csv::parse_csv;

/// The layout of a benchmark's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BenchFormat {
    Mmlu,
    Ceval,
    Cmmlu,
}

impl BenchFormat {
    /// The format named `s` (`mmlu`, `ceval`, `cmmlu`).
    pub fn parse(s: &str) -> Option<BenchFormat> {
        match s.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "mmlu" => Some(BenchFormat::Mmlu),
            "ceval" => Some(BenchFormat::Ceval),
            "cmmlu" => Some(BenchFormat::Cmmlu),
            _ => None,
        }
    }
}

/// `[[benchmark]]`: one benchmark to decontaminate against.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchmarkSpec {
    /// Name shown in `meta.decontam.hits` and reports (`mmlu`, `ceval`, ...).
    pub name: String,
    pub format: BenchFormat,
    /// Release folder, split folder or CSV file (relative to the config file).
    pub path: PathBuf,
}

/// One benchmark item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BenchItem {
    pub benchmark: String,
    pub split: String,
    pub subject: String,
    /// 0-based data row in its file.
    pub row: u32,
    pub question: String,
    pub options: Vec<String>,
    /// The answer letter where the split has one.
    pub answer: Option<String>,
}

fn csv_files(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !path.is_dir() {
        bail!("{}: no such file or folder", path.display());
    }
    crate::io::walk_files(path, |p| {
        p.extension().is_some_and(|x| x.eq_ignore_ascii_case("csv"))
    })
}

const SPLITS: &[&str] = &["dev", "val", "validation", "test", "train", "auxiliary_train"];

/// (split, subject) of a benchmark file.
fn split_subject(file: &Path) -> (String, String) {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    for s in SPLITS {
        if let Some(subject) = stem.strip_suffix(&format!("_{s}")) {
            return (s.to_string(), subject.to_string());
        }
    }
    let parent = file
        .parent()
        .and_then(|p| p.file_name())
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    (parent, stem)
}

/// Load every item of one benchmark.
pub fn load(spec: &BenchmarkSpec) -> Result<Vec<BenchItem>> {
    let files = csv_files(&spec.path)?;
    if files.is_empty() {
        bail!("{}: no .csv files", spec.path.display());
    }
    let mut items = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).with_context(|| format!("{}: cannot read", f.display()))?;
        let (split, subject) = split_subject(&f);
        let rows = parse_csv(&text);
        let (q, opts, ans, data): (usize, [usize; 4], Option<usize>, &[Vec<String>]) = match spec.format {
            BenchFormat::Mmlu => (0, [1, 2, 3, 4], Some(5), &rows[..]),
            BenchFormat::Ceval | BenchFormat::Cmmlu => {
                let Some(header) = rows.first() else { continue };
                let col = |name: &str| header.iter().position(|h| h.trim().eq_ignore_ascii_case(name));
                let Some(q) = col("question") else {
                    bail!("{}: header has no `question` column: {header:?}", f.display());
                };
                let mut o = [0; 4];
                for (k, l) in ["A", "B", "C", "D"].iter().enumerate() {
                    o[k] = col(l).with_context(|| format!("{}: header has no `{l}` column", f.display()))?;
                }
                (q, o, col("answer"), &rows[1..])
            }
        };
        for (row, r) in data.iter().enumerate() {
            let get = |i: usize| r.get(i).map(|s| s.trim().to_string()).unwrap_or_default();
            if r.len() <= opts[3] {
                bail!(
                    "{}: data row {row}: {} columns, expected at least {}",
                    f.display(),
                    r.len(),
                    opts[3] + 1
                );
            }
            items.push(BenchItem {
                benchmark: spec.name.clone(),
                split: split.clone(),
                subject: subject.clone(),
                row: row as u32,
                question: get(q),
                options: opts.iter().map(|&i| get(i)).collect(),
                answer: ans.map(get).filter(|a| !a.is_empty()),
            });
        }
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn csv_quotes_and_newlines() {
        let rows = parse_csv("a,\"b, \"\"c\"\"\",\"x\ny\"\r\n1,2,3\n");
        assert_eq!(rows, vec![vec!["a", "b, \"c\"", "x\ny"], vec!["1", "2", "3"]]);
    }

    #[test]
    fn loads_each_layout() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        write(
            d,
            "mmlu/test/anatomy_test.csv",
            "\"What is 2+2, roughly?\",3,4,5,6,B\nQ2,a,b,c,d,A\n",
        );
        write(d, "mmlu/dev/anatomy_dev.csv", "Q0,a,b,c,d,C\n");
        write(
            d,
            "ceval/val/law_val.csv",
            "id,question,A,B,C,D,answer,explanation\n0,下列说法正确的是____,甲,乙,丙,丁,A,\n",
        );
        write(
            d,
            "ceval/test/law_test.csv",
            "id,question,A,B,C,D\n0,问题,甲,乙,丙,丁\n",
        );
        write(
            d,
            "cmmlu/test/agronomy.csv",
            ",Question,A,B,C,D,Answer\n0,问题一,甲,乙,丙,丁,D\n",
        );
        let spec = |name: &str, f| BenchmarkSpec {
            name: name.into(),
            format: f,
            path: d.join(name),
        };
        let m = load(&spec("mmlu", BenchFormat::Mmlu)).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!((m[0].split.as_str(), m[0].subject.as_str()), ("dev", "anatomy"));
        assert_eq!(m[1].question, "What is 2+2, roughly?");
        assert_eq!(m[1].answer.as_deref(), Some("B"));
        assert_eq!(m[2].row, 1);
        let c = load(&spec("ceval", BenchFormat::Ceval)).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].split, "test");
        assert_eq!(c[0].answer, None);
        assert_eq!((c[1].subject.as_str(), c[1].options[3].as_str()), ("law", "丁"));
        let cm = load(&spec("cmmlu", BenchFormat::Cmmlu)).unwrap();
        assert_eq!(
            (cm[0].split.as_str(), cm[0].subject.as_str()),
            ("test", "agronomy")
        );
        assert_eq!(cm[0].question, "问题一");
        assert_eq!(cm[0].answer.as_deref(), Some("D"));
        assert!(load(&spec("missing", BenchFormat::Mmlu)).is_err());
    }
}
