//! `exact_dedup`: drop records whose normalized text was already seen.
//!
//! The per-record hash (xxh3-128 of the normalized text, `dedup::exact`) is the
//! stage's key, computed in parallel; `decide` runs in input order, so the first copy is
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
//! the stage switches to a prepass in `dedup::store` files (`use_sharded_prepass`):
//! the 128-bit hash is a 4-value "signature", one band keyed by its low 64 bits,
//! threshold 1 (all four values equal), keep the first. The sharded steps cluster
//! equal hashes across ranks in global input order, which keeps exactly the
//! record a single-process run keeps (`tests/slurm.rs` checks the output is equal).

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::json;

use crate::dedup::exact::text_hash;
use crate::dedup::store::{self, DecisionKind, KeepRule};
use crate::dedup::{Prepass, PrepassStore};
use crate::hash::HashKeyMap;
use crate::record::{Record, TextFields};
use crate::shape::Shape;
use crate::stage::{Action, BuildContext, GlobalStage, Verdict};

/// `[[stage]] kind = "exact_dedup"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExactDedupConfig {
    #[serde(default)]
    /// Which text views make up the compared text (`response` also takes whole documents).
    pub fields: TextFields,
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
    seen: HashKeyMap<u128, String>,
    /// Sharded runs: decisions come from a prepass (see the module docs).
    sharded: bool,
    prepass: Prepass,
}

impl ExactDedup {
    /// Check the config and build the stage.
    pub fn new(cfg: ExactDedupConfig, _cx: &BuildContext) -> Result<Self> {
        if cfg.action == Action::Redact {
            bail!("exact_dedup: action \"redact\" does not apply; use \"drop\" or \"tag\"");
        }
        Ok(ExactDedup {
            cfg,
            seen: HashKeyMap::default(),
            sharded: false,
            prepass: Prepass::new("exact_dedup", Self::params()),
        })
    }

    /// The prepass settings: the hash as four values, one band, equal or not.
    fn params() -> store::Params {
        store::Params {
            num_perm: 4,
            bands: 1,
            threshold: 1.0,
            keep: KeepRule::First,
            memory_limit: 256 << 20,
            show_clusters: 0,
            show_members: 0,
            verify: None,
        }
    }
}

fn hex(h: u128) -> String {
    format!("{h:032x}")
}

impl GlobalStage for ExactDedup {
    /// xxh3-128 of the compared, normalized texts.
    type Key = u128;

    fn kind(&self) -> &'static str {
        "exact_dedup"
    }

    fn key(&self, record: &mut Record) -> Result<u128> {
        let texts = record
            .texts()
            .into_iter()
            .filter(|(seg, _)| self.cfg.fields.selects(seg.role))
            .map(|(_, t)| t);
        let hash = text_hash(texts, self.cfg.normalize);
        record.annotate("exact_dedup", json!({ "hash": hex(hash) }));
        Ok(hash)
    }

    fn decide(&mut self, record: &mut Record, hash: u128) -> Result<Verdict> {
        let kept = if self.sharded {
            let d = self.prepass.next(&record.id)?;
            (d.kind == DecisionKind::Duplicate).then_some(d.kept_id)
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
            Ok(Verdict::Tagged {
                reason: "duplicate".into(),
            })
        } else {
            Ok(Verdict::drop("duplicate", format!("same text as `{kept}`")))
        }
    }

    fn needs_prepass(&self) -> bool {
        self.sharded
    }

    fn prepass(&mut self) -> &mut dyn PrepassStore {
        &mut self.prepass
    }

    fn observe(&mut self, record: &Record, hash: u128) -> Result<()> {
        let sig = [
            (hash >> 96) as u32,
            (hash >> 64) as u32,
            (hash >> 32) as u32,
            hash as u32,
        ];
        self.prepass
            .add(&record.id, Some((&sig, &[hash as u64])), 0, None)
    }

    fn use_sharded_prepass(&mut self) -> bool {
        self.sharded = true;
        true
    }

    fn save_state(&self) -> Result<Vec<u8>> {
        if self.sharded {
            return Ok(self.prepass.cursor().to_le_bytes().to_vec());
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
        Ok(out)
    }

    fn load_state(&mut self, mut state: &[u8]) -> Result<()> {
        if self.sharded {
            self.prepass.seek(u64::from_le_bytes(
                state.try_into().context("exact_dedup: bad state")?,
            ));
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
        let distinct = match self.prepass.summary() {
            Some(s) => s.clusters,
            None => self.seen.len() as u64,
        };
        Some(json!({ "distinct": distinct }))
    }

    fn annotations(&self) -> Vec<(&'static str, Shape)> {
        vec![(
            "exact_dedup",
            Shape::object(&[("hash", Shape::Str), ("duplicate_of", Shape::Str)]),
        )]
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
    fn state_round_trips() {
        let cx = BuildContext {
            config_dir: ".".into(),
        };
        let cfg = ExactDedupConfig {
            fields: TextFields::All,
            normalize: true,
            action: Action::Drop,
        };
        let mut s = ExactDedup::new(cfg, &cx).unwrap();
        s.seen.insert(7, "a:1".into());
        s.seen.insert(u128::MAX, "b:2".into());
        let bytes = s.save_state().unwrap();
        let mut t = ExactDedup::new(s.cfg.clone(), &cx).unwrap();
        t.load_state(&bytes).unwrap();
        assert_eq!(t.seen, s.seen);
        assert!(t.load_state(&bytes[..10]).is_err());
    }
}
