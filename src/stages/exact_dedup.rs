//! `exact_dedup`: drop records whose normalized text was already seen.
//!
//! The per-record hash (xxh3-128 of the normalized text) is computed in
//! parallel in `process`; `decide` runs in input order, so the first copy is
//! always the one kept, whatever the thread count. The set of seen hashes is
//! the stage's state: it is saved with every checkpoint so a resumed run keeps
//! deduplicating against the records before the crash.
//!
//! Normalization (on by default): lower-case, and every run of whitespace and
//! punctuation (ASCII and CJK, full- and half-width) folded away, so that
//! "你好，世界！" and "你好,世界!" are one text. Memory: 16 bytes per distinct
//! kept record plus hash-set overhead (~40 bytes per record in all).
//!
//! ```toml
//! [[stage]]
//! kind = "exact_dedup"
//! fields = "all"      # all | prompt | response: which text views are compared
//! normalize = true
//! ```
//! `meta.exact_dedup = {hash}`; a dropped record's detail names the kept one.
//!
//! Sharded runs (`--world-size` > 1) cannot share the set of seen hashes, so there
//! the stage switches to a prepass in `minhash_prepass` files (`shard_prepass`):
//! the 128-bit hash is a 4-value "signature", one band keyed by its low 64 bits,
//! threshold 1 (all four values equal), keep the first. The sharded steps cluster
//! equal hashes across ranks in global input order, which keeps exactly the
//! record a single-process run keeps (`tests/slurm.rs` checks the output is equal).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::json;

use crate::minhash_prepass::{self as prepass, DecisionKind, DecisionReader, KeepRule, Observer};
use crate::record::{Record, Role};
use crate::stage::{Action, BuildContext, Stage, Verdict};

/// Which text views make up the compared text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DedupFields {
    #[default]
    All,
    Prompt,
    Response,
}

/// `[[stage]] kind = "exact_dedup"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExactDedupConfig {
    #[serde(default)]
    pub fields: DedupFields,
    #[serde(default = "yes")]
    pub normalize: bool,
    #[serde(default)]
    pub action: Action,
}

fn yes() -> bool {
    true
}

/// The built stage: the seen hashes map to the id of the record that was kept.
pub struct ExactDedup {
    cfg: ExactDedupConfig,
    seen: HashMap<u128, String>,
    /// Sharded runs: decisions come from a prepass (see the module docs).
    sharded: bool,
    dir: Option<PathBuf>,
    observer: Option<Observer>,
    decisions: Option<DecisionReader>,
    /// Byte offset of the next decision (saved with checkpoints).
    cursor: u64,
    distinct: Option<u64>,
}

impl ExactDedup {
    /// Check the config and build the stage.
    pub fn new(cfg: ExactDedupConfig, _cx: &BuildContext) -> Result<Self> {
        if cfg.action == Action::Redact {
            bail!("exact_dedup: action \"redact\" does not apply; use \"drop\" or \"tag\"");
        }
        Ok(ExactDedup {
            cfg,
            seen: HashMap::new(),
            sharded: false,
            dir: None,
            observer: None,
            decisions: None,
            cursor: 0,
            distinct: None,
        })
    }
}

/// Lower-case and drop whitespace and punctuation, so trivial variants compare equal.
pub fn normalize_for_dedup(text: &str) -> String {
    text.chars()
        .filter(|c| !(c.is_whitespace() || c.is_ascii_punctuation() || is_cjk_punct(*c)))
        .flat_map(char::to_lowercase)
        .collect()
}

impl ExactDedup {
    /// The prepass settings: the hash as four values, one band, equal or not.
    fn params() -> prepass::Params {
        prepass::Params {
            num_perm: 4,
            bands: 1,
            threshold: 1.0,
            keep: KeepRule::First,
            memory_limit: 256 << 20,
            show_clusters: 0,
            show_members: 0,
        }
    }

    /// Sharded runs: the prepass's decision for this record (the kept id if it is a duplicate).
    fn decided_duplicate(&mut self, record: &Record) -> Result<Option<String>> {
        if self.decisions.is_none() {
            let dir = self.dir.as_deref().context("exact_dedup: no prepass folder")?;
            self.decisions = Some(DecisionReader::open(dir, self.cursor)?);
        }
        let reader = self.decisions.as_mut().expect("opened above");
        let d = reader
            .next_decision()?
            .context("exact_dedup: more records than the prepass saw (input changed?)")?;
        self.cursor = reader.position();
        if d.id_hash != xxhash_rust::xxh3::xxh3_64(record.id.as_bytes()) {
            bail!(
                "exact_dedup: record `{}` is not the one the prepass saw here (input changed?)",
                record.id
            );
        }
        Ok((d.kind == DecisionKind::Duplicate).then_some(d.kept_id))
    }
}

fn is_cjk_punct(c: char) -> bool {
    matches!(c as u32, 0x3000..=0x303F | 0xFF01..=0xFF0F | 0xFF1A..=0xFF20 | 0xFF3B..=0xFF40 | 0xFF5B..=0xFF65 | 0x2010..=0x206F)
}

/// The hash `process` left in the record's scratch.
fn scratch_hash(record: &Record) -> Result<u128> {
    let [hi, lo] = record.scratch[..] else {
        bail!("exact_dedup: no hash from process");
    };
    Ok((u128::from(hi) << 64) | u128::from(lo))
}

fn hex(h: u128) -> String {
    format!("{h:032x}")
}

impl Stage for ExactDedup {
    fn kind(&self) -> &'static str {
        "exact_dedup"
    }

    fn process(&self, record: &mut Record) -> Result<Verdict> {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for (seg, text) in record.texts() {
            let take = match self.cfg.fields {
                DedupFields::All => true,
                DedupFields::Prompt => matches!(seg.role, Role::Prompt | Role::System),
                DedupFields::Response => seg.role == Role::Response,
            };
            if take {
                let t = if self.cfg.normalize {
                    normalize_for_dedup(text)
                } else {
                    text.to_string()
                };
                h.update(t.as_bytes());
                // A separator keeps ("ab","c") apart from ("a","bc").
                h.update(&[0xff]);
            }
        }
        let hash = h.digest128();
        record.annotate("exact_dedup", json!({ "hash": hex(hash) }));
        record.scratch = vec![(hash >> 64) as u64, hash as u64];
        Ok(Verdict::Keep)
    }

    fn is_sequential(&self) -> bool {
        true
    }

    fn decide(&mut self, record: &mut Record) -> Result<Verdict> {
        let hash = scratch_hash(record)?;
        let kept = if self.sharded {
            self.decided_duplicate(record)?
        } else {
            match self.seen.get(&hash) {
                None => {
                    self.seen.insert(hash, record.id.clone());
                    None
                }
                Some(kept) => Some(kept.clone()),
            }
        };
        let Some(kept) = kept else {
            return Ok(Verdict::Keep);
        };
        record.annotate("exact_dedup", json!({ "hash": hex(hash), "duplicate_of": kept }));
        if self.cfg.action == Action::Tag {
            Ok(Verdict::Keep)
        } else {
            Ok(Verdict::drop("duplicate", format!("same text as `{kept}`")))
        }
    }

    fn needs_prepass(&self) -> bool {
        self.sharded
    }

    fn shard_prepass(&mut self) -> bool {
        self.sharded = true;
        true
    }

    fn cluster_params(&self) -> Option<prepass::Params> {
        self.sharded.then(Self::params)
    }

    fn open_prepass(&mut self, dir: &Path, complete: bool) -> Result<()> {
        self.dir = Some(dir.to_path_buf());
        if complete {
            self.distinct = Some(prepass::load_summary(dir)?.clusters);
        } else {
            self.observer = Some(Observer::create(dir, Self::params())?);
        }
        Ok(())
    }

    fn observe(&mut self, record: &Record) -> Result<()> {
        let hash = scratch_hash(record)?;
        let sig = [
            (hash >> 96) as u32,
            (hash >> 64) as u32,
            (hash >> 32) as u32,
            hash as u32,
        ];
        let observer = self
            .observer
            .as_mut()
            .context("exact_dedup: observe before open_prepass")?;
        observer.add(&record.id, Some((&sig, &[hash as u64])), 0, None)
    }

    fn prepare(&mut self) -> Result<()> {
        let observer = self
            .observer
            .take()
            .context("exact_dedup: prepare before open_prepass")?;
        self.distinct = Some(observer.finish()?.clusters);
        Ok(())
    }

    fn close_observe(&mut self) -> Result<()> {
        let observer = self
            .observer
            .take()
            .context("exact_dedup: close_observe before open_prepass")?;
        observer.close()?;
        Ok(())
    }

    fn save_state(&self) -> Result<Option<Vec<u8>>> {
        if self.sharded {
            return Ok(Some(self.cursor.to_le_bytes().to_vec()));
        }
        // Sorted, so the state file itself is deterministic.
        let mut entries: Vec<(&u128, &String)> = self.seen.iter().collect();
        entries.sort();
        let mut out = Vec::with_capacity(entries.len() * 32);
        for (h, id) in entries {
            out.extend_from_slice(&h.to_le_bytes());
            out.extend_from_slice(&(id.len() as u32).to_le_bytes());
            out.extend_from_slice(id.as_bytes());
        }
        Ok(Some(out))
    }

    fn load_state(&mut self, mut state: &[u8]) -> Result<()> {
        if self.sharded {
            self.cursor = u64::from_le_bytes(state.try_into().context("exact_dedup: bad state")?);
            self.decisions = None;
            return Ok(());
        }
        self.seen.clear();
        while !state.is_empty() {
            if state.len() < 20 {
                bail!("exact_dedup: truncated state");
            }
            let h = u128::from_le_bytes(state[..16].try_into()?);
            let n = u32::from_le_bytes(state[16..20].try_into()?) as usize;
            let id = std::str::from_utf8(state.get(20..20 + n).context("exact_dedup: truncated state")?)?;
            self.seen.insert(h, id.to_string());
            state = &state[20 + n..];
        }
        Ok(())
    }

    fn summary(&self) -> Option<serde_json::Value> {
        Some(json!({ "distinct": self.distinct.unwrap_or(self.seen.len() as u64) }))
    }

    fn describe(&self) -> String {
        format!(
            "fields {:?}, normalize {}, action {:?}",
            self.cfg.fields, self.cfg.normalize, self.cfg.action
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_folds_width_punctuation_and_case() {
        assert_eq!(
            normalize_for_dedup("你好，世界！ Hello"),
            normalize_for_dedup("你好,世界!hello")
        );
        assert_ne!(normalize_for_dedup("你好世界"), normalize_for_dedup("你好中国"));
    }

    #[test]
    fn state_round_trips() {
        let mut s = ExactDedup::new(
            ExactDedupConfig {
                fields: DedupFields::All,
                normalize: true,
                action: Action::Drop,
            },
            &BuildContext {
                config_dir: ".".into(),
            },
        )
        .unwrap();
        s.seen.insert(7, "a:1".into());
        s.seen.insert(u128::MAX, "b:2".into());
        let bytes = s.save_state().unwrap().unwrap();
        let mut t = ExactDedup::new(
            s.cfg.clone(),
            &BuildContext {
                config_dir: ".".into(),
            },
        )
        .unwrap();
        t.load_state(&bytes).unwrap();
        assert_eq!(t.seen, s.seen);
        assert!(t.load_state(&bytes[..10]).is_err());
    }
}
