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

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::json;

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

fn is_cjk_punct(c: char) -> bool {
    matches!(c as u32, 0x3000..=0x303F | 0xFF01..=0xFF0F | 0xFF1A..=0xFF20 | 0xFF3B..=0xFF40 | 0xFF5B..=0xFF65 | 0x2010..=0x206F)
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
        let [hi, lo] = record.scratch[..] else {
            bail!("exact_dedup: no hash from process");
        };
        let hash = (u128::from(hi) << 64) | u128::from(lo);
        match self.seen.get(&hash) {
            None => {
                self.seen.insert(hash, record.id.clone());
                Ok(Verdict::Keep)
            }
            Some(kept) => {
                let kept = kept.clone();
                record.annotate("exact_dedup", json!({ "hash": hex(hash), "duplicate_of": kept }));
                if self.cfg.action == Action::Tag {
                    Ok(Verdict::Keep)
                } else {
                    Ok(Verdict::drop("duplicate", format!("same text as `{kept}`")))
                }
            }
        }
    }

    fn save_state(&self) -> Result<Option<Vec<u8>>> {
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
        Some(json!({ "distinct": self.seen.len() }))
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
