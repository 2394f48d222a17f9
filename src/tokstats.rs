//! `curate tokstats`: how many tokens a data set costs under each tokenizer.
//!
//! Reads any input `curate run` reads (format and schema detection included), takes each
//! record's text (all segments, as stages see them, joined by a blank line) and counts
//! tokens under every given tokenizer, without special tokens. Records are split into
//! CJK-majority ones (CJK characters are at least half of the letters, as the `quality`
//! stage counts them) and the others, because a 32k LLaMA vocabulary that is fine for
//! English can need twice as many tokens per Chinese character as Qwen's.
//!
//! A tokenizer is a `tokenizer.json` (Hugging Face) or any GGUF file whose metadata holds a
//! vocabulary (a model, or llama.cpp's vocabulary-only `ggml-vocab-*.gguf`), rebuilt by
//! [`crate::finetune::gguf_tokenizer`]. Sums are integers, so the result does not depend on
//! the thread count. Malformed records are counted and skipped.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use rayon::prelude::*;
use serde_json::{json, Value};
use tokenizers::Tokenizer;

use crate::io::InputFormat;
use crate::record::Schema;

/// What to measure.
#[derive(Debug, Clone)]
pub struct TokstatsOptions {
    /// `tokenizer.json` or GGUF files.
    pub tokenizers: Vec<PathBuf>,
    /// Input files, folders or globs (relative to the working directory).
    pub inputs: Vec<String>,
    pub format: InputFormat,
    pub schema: Option<Schema>,
    /// Worker threads (0 = one per core).
    pub threads: usize,
    /// Stop after this many input records.
    pub limit: Option<u64>,
}

/// Sums over one group of records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub records: u64,
    pub chars: u64,
    pub bytes: u64,
    pub tokens: u64,
}

impl Counts {
    /// Tokens per Unicode character (0 without characters).
    pub fn tokens_per_char(&self) -> f64 {
        ratio(self.tokens, self.chars)
    }
    /// Tokens per UTF-8 byte (0 without bytes).
    pub fn tokens_per_byte(&self) -> f64 {
        ratio(self.tokens, self.bytes)
    }
    fn add(&mut self, o: &Counts) {
        self.records += o.records;
        self.chars += o.chars;
        self.bytes += o.bytes;
        self.tokens += o.tokens;
    }
    fn to_json(self) -> Value {
        json!({"records": self.records, "chars": self.chars, "bytes": self.bytes, "tokens": self.tokens,
               "tokens_per_char": round6(self.tokens_per_char()), "tokens_per_byte": round6(self.tokens_per_byte())})
    }
}

/// One tokenizer's results.
#[derive(Debug, Clone)]
pub struct TokenizerStats {
    /// The file name.
    pub name: String,
    pub path: PathBuf,
    /// `tokenizer.json`, or `gguf <model>` with the pre-tokenizer (`gguf gpt2/qwen2`, `gguf llama`).
    pub kind: String,
    /// Vocabulary size including added tokens.
    pub vocab_size: usize,
    /// CJK-majority records.
    pub cjk: Counts,
    /// All other records.
    pub other: Counts,
}

impl TokenizerStats {
    /// Both groups together.
    pub fn all(&self) -> Counts {
        let mut c = self.cjk;
        c.add(&self.other);
        c
    }
}

/// The result of `curate tokstats`.
#[derive(Debug, Clone)]
pub struct Tokstats {
    pub inputs: Vec<PathBuf>,
    pub malformed: u64,
    pub tokenizers: Vec<TokenizerStats>,
}

/// A tokenizer with its description, loaded from `tokenizer.json` or a GGUF file.
pub fn load_tokenizer(path: &Path) -> Result<(Tokenizer, String)> {
    let is_gguf = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    if is_gguf {
        let g = crate::finetune::gguf_tokenizer::read_gguf_tokenizer(path)?;
        let mut kind = format!("gguf {}", g.model);
        if let Some(pre) = &g.pre {
            kind.push('/');
            kind.push_str(pre);
        }
        if g.approximated_pre {
            kind.push_str(" (approx. as gpt2)");
            eprintln!(
                "curate: warning: {}: pre-tokenizer `{}` unknown, GPT-2's rules used instead; counts are approximate",
                path.display(),
                g.pre.as_deref().unwrap_or("")
            );
        }
        Ok((g.tokenizer, kind))
    } else {
        let t = Tokenizer::from_file(path)
            .map_err(|e| anyhow!("{}: cannot load tokenizer: {e}", path.display()))?;
        Ok((t, "tokenizer.json".to_string()))
    }
}

/// Count tokens of every input record under every tokenizer.
pub fn tokstats(opts: &TokstatsOptions) -> Result<Tokstats> {
    let loaded = opts
        .tokenizers
        .iter()
        .map(|p| load_tokenizer(p).map_err(|e| crate::error::config_error(format!("{e:#}"))))
        .collect::<Result<Vec<_>>>()?;
    let cwd = std::env::current_dir()?;
    let sources = crate::io::expand_inputs(&opts.inputs, &cwd, opts.format)
        .map_err(|e| crate::error::config_error(format!("tokstats: {e:#}")))?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads)
        .build()?;
    let mut sums = vec![(Counts::default(), Counts::default()); loaded.len()];
    let mut malformed = 0u64;
    crate::run::map_records(
        &sources,
        opts.schema,
        &pool,
        opts.limit,
        |_, rec| rec.ok().map(|r| r.full_text()),
        |texts| {
            let texts: Vec<String> = texts
                .into_iter()
                .filter_map(|t| {
                    if t.is_none() {
                        malformed += 1;
                    }
                    t
                })
                .collect();
            for ((tok, _), sum) in loaded.iter().zip(sums.iter_mut()) {
                let per_record: Vec<(bool, Counts)> = pool.install(|| {
                    texts
                        .par_iter()
                        .map(|t| count_one(tok, t))
                        .collect::<Result<Vec<_>>>()
                })?;
                for (cjk, c) in per_record {
                    if cjk {
                        sum.0.add(&c)
                    } else {
                        sum.1.add(&c)
                    }
                }
            }
            Ok(())
        },
    )?;
    let tokenizers = opts
        .tokenizers
        .iter()
        .zip(loaded)
        .zip(sums)
        .map(|((path, (tok, kind)), (cjk, other))| TokenizerStats {
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
            path: path.clone(),
            kind,
            vocab_size: tok.get_vocab_size(true),
            cjk,
            other,
        })
        .collect();
    Ok(Tokstats {
        inputs: sources.iter().map(|s| s.path.clone()).collect(),
        malformed,
        tokenizers,
    })
}

/// One record's counts and whether it is CJK-majority.
fn count_one(tok: &Tokenizer, text: &str) -> Result<(bool, Counts)> {
    let enc = tok.encode(text, false).map_err(|e| anyhow!("tokenizing: {e}"))?;
    let cjk = crate::text::cjk_ratio(text) >= 0.5;
    Ok((
        cjk,
        Counts {
            records: 1,
            chars: text.chars().count() as u64,
            bytes: text.len() as u64,
            tokens: enc.get_ids().len() as u64,
        },
    ))
}

impl Tokstats {
    /// The table `curate tokstats` prints.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<34} {:>7} {:<5} {:>8} {:>11} {:>11} {:>11} {:>8} {:>8}\n",
            "tokenizer", "vocab", "group", "records", "chars", "bytes", "tokens", "tok/char", "tok/byte"
        );
        for t in &self.tokenizers {
            for (group, c) in [("cjk", t.cjk), ("other", t.other), ("all", t.all())] {
                out.push_str(&format!(
                    "{:<34} {:>7} {:<5} {:>8} {:>11} {:>11} {:>11} {:>8.3} {:>8.3}\n",
                    t.name,
                    t.vocab_size,
                    group,
                    c.records,
                    c.chars,
                    c.bytes,
                    c.tokens,
                    c.tokens_per_char(),
                    c.tokens_per_byte()
                ));
            }
        }
        if self.malformed > 0 {
            out.push_str(&format!("{} malformed records skipped\n", self.malformed));
        }
        out
    }

    /// The numbers as JSON (`--json`).
    pub fn to_json(&self) -> Value {
        json!({
            "inputs": self.inputs.iter().map(|p| p.to_string_lossy().to_string()).collect::<Vec<_>>(),
            "malformed": self.malformed,
            "tokenizers": self.tokenizers.iter().map(|t| json!({
                "name": t.name,
                "path": t.path.to_string_lossy(),
                "kind": t.kind,
                "vocab_size": t.vocab_size,
                "groups": {"cjk": t.cjk.to_json(), "other": t.other.to_json(), "all": t.all().to_json()},
            })).collect::<Vec<_>>(),
        })
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}
