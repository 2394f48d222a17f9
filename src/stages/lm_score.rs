//! `lm_score`: how a causal language model sees each response, and SFT data selection
//! by it.
//!
//! Per record, two forward passes of the model ([`crate::lm_score`]): the mean loss of
//! the response tokens alone (`loss`, whose `exp` is the `perplexity`) and after the
//! instruction (`conditioned_loss`). Their ratio is Cherry LLM's instruction-following
//! difficulty (Li et al., NAACL 2024): `ifd = conditioned_loss / loss`. Below 1 the
//! instruction helps the model predict the answer; the lower, the less the pair
//! teaches. At or above 1 the instruction does not help at all, which is what a
//! mismatched or broken pair looks like (Cherry drops those). The prompt is every
//! prompt-side view (system, instruction, input, user turns) joined with line breaks,
//! the response every response-side view but `rejected` (a whole document has no
//! prompt: perplexity only). Only the first `max_tokens` response tokens and the last
//! `max_prompt_tokens` prompt tokens are read.
//!
//! The model is any Llama/Qwen2 checkpoint the fine-tune module loads: a pretrained one
//! (`models/SmolLM2-135M-Instruct.Q4_1.gguf` from `scripts/fetch_models.sh`), or, as
//! Cherry LLM does, a small model briefly trained on the set itself (`curate finetune`,
//! then its `merged/` folder). Cost: two forward passes per record (about 1-3 s per
//! record for a 135M model at 256 tokens on one core); scoring runs on all threads.
//!
//! `max_ifd` / `max_perplexity` flag records past an absolute bound. `select` keeps a
//! fraction of the records ranked by a score, which needs every score before the first
//! decision: the stage then scores in a prepass (one number set per record in memory,
//! 24 bytes, and in `scores.bin` of its prepass folder; a resumed run reads them back)
//! and the main pass only decides. Ties go to the record that comes first in the input,
//! so the selection is the same on every run and thread count. Records without the
//! ranked score (no response tokens; no prompt when ranking by IFD) are not ranked and
//! pass. A selecting stage cannot run sharded (the ranking is global).
//!
//! ```toml
//! [[stage]]
//! kind = "lm_score"
//! model = "../models/SmolLM2-135M-Instruct.Q4_1.gguf"
//! max_tokens = 256            # response tokens scored
//! max_prompt_tokens = 256     # prompt tokens before them (its end)
//! max_ifd = 1.0               # optional: flag IFD >= this
//! max_perplexity = 1000.0     # optional: flag perplexity > this
//! select = { by = "ifd", fraction = 0.1 }   # optional: keep the top 10% by IFD
//! action = "drop"             # or "tag"
//! ```
//! `meta.lm_score = {tokens, loss, conditioned_loss, perplexity, ifd, rank}` (`rank`:
//! 1 = best, with `select`). Drop reasons: `ifd_too_high`, `perplexity_too_high`,
//! `not_selected`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::dedup::PrepassStore;
use crate::io::writer::write_atomic;
use crate::lm_score::{LmScorer, ResponseLoss};
use crate::record::{Record, Role};
use crate::shape::Shape;
use crate::stage::{
    flag_or_drop, flagged_shape, Action, BuildContext, Flags, GlobalStage, Score, StateReader, Verdict,
};

fn default_tokens() -> usize {
    256
}

/// The score `select` ranks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum By {
    Ifd,
    Perplexity,
}

/// Which end of the ranking is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    Highest,
    Lowest,
}

/// `select = {by, fraction, order}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Select {
    pub by: By,
    /// Share of the ranked records kept, in (0, 1]; rounded up.
    pub fraction: f64,
    /// Default: the highest IFD (Cherry LLM), the lowest perplexity.
    pub order: Option<Order>,
}

impl Select {
    fn order(&self) -> Order {
        self.order.unwrap_or(match self.by {
            By::Ifd => Order::Highest,
            By::Perplexity => Order::Lowest,
        })
    }
}

/// `[[stage]] kind = "lm_score"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LmScoreConfig {
    /// A `.gguf` file or a Hugging Face folder (Llama / Qwen2).
    pub model: PathBuf,
    #[serde(default = "default_tokens")]
    pub max_tokens: usize,
    #[serde(default = "default_tokens")]
    pub max_prompt_tokens: usize,
    pub max_ifd: Option<f64>,
    pub max_perplexity: Option<f64>,
    pub select: Option<Select>,
    #[serde(default)]
    pub action: Action,
}

/// One record's scores as the prepass keeps them.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Entry {
    /// The scores; `None`: nothing to score.
    loss: Option<ResponseLoss>,
    /// 1-based rank among the selected-or-not ranked records; 0: not ranked.
    rank: u32,
    selected: bool,
}

/// The selection prepass: every record's scores in input order, then the ranking.
#[derive(Default)]
struct Selection {
    dir: PathBuf,
    entries: Vec<Entry>,
    /// Next entry the main pass reads.
    cursor: usize,
    /// Ranked records, kept ones, and the kept score furthest from the best.
    ranked: usize,
    selected: usize,
    cut: Option<f64>,
}

const SCORES: &str = "scores.bin";
const MAGIC: &[u8] = b"curate-lm_score-1\n";

impl Selection {
    fn save(&self) -> Result<()> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        for e in &self.entries {
            let (tokens, alone, cond) = match e.loss {
                Some(l) => (l.tokens as u32, l.alone, l.conditioned.unwrap_or(f64::NAN)),
                None => (0, f64::NAN, f64::NAN),
            };
            out.extend_from_slice(&tokens.to_le_bytes());
            out.extend_from_slice(&alone.to_le_bytes());
            out.extend_from_slice(&cond.to_le_bytes());
            out.extend_from_slice(&e.rank.to_le_bytes());
            out.push(u8::from(e.selected));
        }
        write_atomic(&self.dir.join(SCORES), &out)?;
        let summary = json!({"records": self.entries.len(), "ranked": self.ranked,
            "selected": self.selected, "cut": self.cut});
        write_atomic(&self.dir.join("prepared.json"), summary.to_string().as_bytes())
    }

    fn load(&mut self) -> Result<()> {
        let path = self.dir.join(SCORES);
        let bytes = std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
        let mut r = StateReader::new(&bytes, "lm_score", MAGIC)?;
        let n = r.u64()? as usize;
        let f64_of = |r: &mut StateReader| -> Result<f64> { Ok(f64::from_le_bytes(r.take(8)?.try_into()?)) };
        self.entries.clear();
        for _ in 0..n {
            let tokens = r.u32()? as usize;
            let (alone, cond) = (f64_of(&mut r)?, f64_of(&mut r)?);
            let rank = r.u32()?;
            let selected = r.take(1)?[0] == 1;
            let loss = (tokens > 0).then_some(ResponseLoss {
                tokens,
                alone,
                conditioned: (!cond.is_nan()).then_some(cond),
            });
            self.entries.push(Entry { loss, rank, selected });
        }
        self.ranked = self.entries.iter().filter(|e| e.rank > 0).count();
        self.selected = self.entries.iter().filter(|e| e.selected).count();
        Ok(())
    }
}

/// The built stage.
pub struct LmScore {
    cfg: LmScoreConfig,
    scorer: LmScorer,
    selection: Selection,
    /// The selection prepass is loaded: the main pass reads scores instead of computing.
    loaded: bool,
}

impl LmScore {
    /// Check the config and load the model (once, shared by all threads).
    pub fn new(cfg: LmScoreConfig, cx: &BuildContext) -> Result<Self> {
        if cfg.action == Action::Redact {
            bail!("lm_score: action \"redact\" does not apply; use \"drop\" or \"tag\"");
        }
        if let Some(s) = &cfg.select {
            if !(s.fraction > 0.0 && s.fraction <= 1.0) {
                bail!("lm_score: select.fraction must be in (0, 1], got {}", s.fraction);
            }
        }
        if cfg.max_tokens < 2 || cfg.max_prompt_tokens == 0 {
            bail!("lm_score: max_tokens must be at least 2 and max_prompt_tokens at least 1");
        }
        let path = cx.resolve(&cfg.model);
        let scorer = LmScorer::load(&path, cfg.max_tokens).context("lm_score: model")?;
        Ok(LmScore {
            cfg,
            scorer,
            selection: Selection::default(),
            loaded: false,
        })
    }

    /// The record's prompt (joined prompt-side views) and response (response-side views
    /// but `rejected`).
    fn prompt_and_response(record: &Record) -> (Option<String>, String) {
        let (mut prompt, mut response) = (Vec::new(), Vec::new());
        for (seg, text) in record.texts() {
            match seg.role {
                Role::Prompt | Role::System => prompt.push(text),
                Role::Response if seg.label == "rejected" => {}
                Role::Response | Role::Document => response.push(text),
            }
        }
        let prompt = (!prompt.is_empty()).then(|| prompt.join("\n"));
        (prompt, response.join("\n"))
    }

    /// The value `select` ranks by.
    fn ranked_value(&self, l: &ResponseLoss) -> Option<f64> {
        match self.cfg.select.as_ref()?.by {
            By::Ifd => l.ifd(),
            By::Perplexity => Some(l.perplexity()),
        }
    }

    /// The absolute bound `l` is past, as (reason, detail).
    fn past_bound(&self, l: &ResponseLoss) -> Option<(&'static str, String)> {
        if let (Some(max), Some(ifd)) = (self.cfg.max_ifd, l.ifd()) {
            if ifd >= max {
                return Some(("ifd_too_high", format!("IFD {ifd:.3} >= max_ifd {max}")));
            }
        }
        if let Some(max) = self.cfg.max_perplexity {
            let ppl = l.perplexity();
            if ppl > max {
                return Some((
                    "perplexity_too_high",
                    format!("perplexity {ppl:.1} > max_perplexity {max}"),
                ));
            }
        }
        None
    }
}

/// Four decimals, null when not finite.
fn round4(x: Option<f64>) -> Value {
    x.filter(|v| v.is_finite())
        .map_or(Value::Null, |v| json!((v * 10000.0).round() / 10000.0))
}

impl GlobalStage for LmScore {
    /// The scores (`None`: nothing to score, or the main pass of a selection, which
    /// reads them from the prepass).
    type Key = Option<ResponseLoss>;

    fn kind(&self) -> &'static str {
        "lm_score"
    }

    fn key(&self, record: &mut Record) -> Result<Option<ResponseLoss>> {
        if self.loaded {
            return Ok(None);
        }
        let (prompt, response) = Self::prompt_and_response(record);
        self.scorer
            .response_loss(prompt.as_deref(), &response, self.cfg.max_prompt_tokens)
    }

    fn decide(&mut self, record: &mut Record, key: Option<ResponseLoss>) -> Result<Verdict> {
        let entry = if self.loaded {
            let e = *self
                .selection
                .entries
                .get(self.selection.cursor)
                .with_context(|| {
                    format!(
                        "lm_score: the prepass has {} records, the main pass more (input changed?)",
                        self.selection.entries.len()
                    )
                })?;
            self.selection.cursor += 1;
            e
        } else {
            Entry {
                loss: key,
                rank: 0,
                selected: true,
            }
        };
        let meta = |l: Option<&ResponseLoss>| {
            json!({
                "tokens": l.map(|l| l.tokens),
                "loss": round4(l.map(|l| l.alone)),
                "conditioned_loss": round4(l.and_then(|l| l.conditioned)),
                "perplexity": round4(l.map(|l| l.perplexity())),
                "ifd": round4(l.and_then(|l| l.ifd())),
                "rank": (entry.rank > 0).then_some(entry.rank),
            })
        };
        let found = meta(entry.loss.as_ref());
        let Some(l) = entry.loss else {
            record.annotate("lm_score", found);
            return Ok(Verdict::Keep);
        };
        if let Some((reason, detail)) = self.past_bound(&l) {
            return Ok(flag_or_drop(
                record,
                "lm_score",
                found,
                self.cfg.action,
                reason,
                detail,
            ));
        }
        if entry.selected || entry.rank == 0 {
            record.annotate("lm_score", found);
            return Ok(Verdict::Keep);
        }
        let s = self
            .cfg
            .select
            .as_ref()
            .context("internal error: a rank without select")?;
        let what = match s.by {
            By::Ifd => "IFD",
            By::Perplexity => "perplexity",
        };
        let end = match s.order() {
            Order::Highest => "highest",
            Order::Lowest => "lowest",
        };
        let detail = format!(
            "{what} {:.3} not in the {end} {}% (rank {} of {}; cut {:.3})",
            self.ranked_value(&l).unwrap_or(f64::NAN),
            s.fraction * 100.0,
            entry.rank,
            self.selection.ranked,
            self.selection.cut.unwrap_or(f64::NAN)
        );
        Ok(flag_or_drop(
            record,
            "lm_score",
            found,
            self.cfg.action,
            "not_selected",
            detail,
        ))
    }

    fn needs_prepass(&self) -> bool {
        self.cfg.select.is_some()
    }

    fn prepass(&mut self) -> &mut dyn PrepassStore {
        self
    }

    fn observe(&mut self, _record: &Record, key: Option<ResponseLoss>) -> Result<()> {
        self.selection.entries.push(Entry {
            loss: key,
            rank: 0,
            selected: false,
        });
        Ok(())
    }

    fn use_sharded_prepass(&mut self) -> bool {
        self.cfg.select.is_none()
    }

    fn save_state(&self) -> Result<Vec<u8>> {
        Ok((self.selection.cursor as u64).to_le_bytes().to_vec())
    }

    fn load_state(&mut self, state: &[u8]) -> Result<()> {
        self.selection.cursor = u64::from_le_bytes(state.try_into().context("lm_score: bad state")?) as usize;
        Ok(())
    }

    fn annotations(&self) -> Vec<(&'static str, Shape)> {
        let found = Shape::object(&[
            ("tokens", Shape::Int),
            ("loss", Shape::Float),
            ("conditioned_loss", Shape::Float),
            ("perplexity", Shape::Float),
            ("ifd", Shape::Float),
            ("rank", Shape::Int),
        ]);
        vec![("lm_score", flagged_shape(self.cfg.action, found))]
    }

    fn scores(&self) -> Vec<Score> {
        let mut out = vec![Score {
            key: "lm_score".into(),
            field: "ifd".into(),
            threshold: self.cfg.max_ifd.unwrap_or(1.0),
            flags: Flags::AtOrAbove,
            range: [0.0, 1.5],
        }];
        if let Some(max) = self.cfg.max_perplexity {
            out.push(Score {
                key: "lm_score".into(),
                field: "perplexity".into(),
                threshold: max,
                flags: Flags::Above,
                range: [0.0, 2.0 * max],
            });
        }
        out
    }

    fn summary(&self) -> Option<Value> {
        let s = self.cfg.select.as_ref()?;
        Some(json!({
            "select": {"by": s.by, "order": s.order(), "fraction": s.fraction},
            "ranked": self.selection.ranked,
            "selected": self.selection.selected,
            "cut": self.selection.cut,
        }))
    }

    fn describe(&self) -> String {
        let select = self.cfg.select.as_ref().map_or("none".to_string(), |s| {
            format!("{:?} {:?} {}", s.order(), s.by, s.fraction)
        });
        format!(
            "model {}, {} response / {} prompt tokens, max_ifd {:?}, max_perplexity {:?}, select {select}, action {:?}",
            self.cfg.model.display(),
            self.cfg.max_tokens,
            self.cfg.max_prompt_tokens,
            self.cfg.max_ifd,
            self.cfg.max_perplexity,
            self.cfg.action
        )
    }
}

/// The selection's store: scores observed in input order, ranked by `prepare`.
impl PrepassStore for LmScore {
    fn open(&mut self, dir: &Path, complete: bool) -> Result<()> {
        self.selection = Selection {
            dir: dir.to_path_buf(),
            ..Selection::default()
        };
        if complete {
            self.selection.load()?;
            self.loaded = true;
            let prepared: Value = serde_json::from_slice(
                &std::fs::read(dir.join("prepared.json")).context("lm_score: prepared.json")?,
            )?;
            self.selection.cut = prepared["cut"].as_f64();
        }
        Ok(())
    }

    fn prepare(&mut self) -> Result<()> {
        let select = self
            .cfg
            .select
            .clone()
            .context("internal error: prepare without select")?;
        let mut ranked: Vec<(f64, usize)> = Vec::new();
        for (i, e) in self.selection.entries.iter().enumerate() {
            let Some(l) = e.loss else { continue };
            if self.past_bound(&l).is_some() {
                continue;
            }
            if let Some(v) = self.ranked_value(&l).filter(|v| v.is_finite()) {
                ranked.push((v, i));
            }
        }
        // Best first; equal scores in input order.
        ranked.sort_by(|a, b| {
            let by_value = match select.order() {
                Order::Highest => b.0.total_cmp(&a.0),
                Order::Lowest => a.0.total_cmp(&b.0),
            };
            by_value.then(a.1.cmp(&b.1))
        });
        let keep = ((select.fraction * ranked.len() as f64).ceil() as usize).min(ranked.len());
        for (r, &(_, i)) in ranked.iter().enumerate() {
            let e = &mut self.selection.entries[i];
            e.rank = r as u32 + 1;
            e.selected = r < keep;
        }
        self.selection.ranked = ranked.len();
        self.selection.selected = keep;
        self.selection.cut = keep.checked_sub(1).map(|k| ranked[k].0);
        self.selection.save()
    }

    fn close_observe(&mut self) -> Result<()> {
        bail!("lm_score: a selection cannot run sharded")
    }

    fn bucket_step(&self, _: &[PathBuf], _: usize, _: usize, _: &Path) -> Result<String> {
        bail!("lm_score: a selection cannot run sharded")
    }

    fn cluster_step(&self, _: &[PathBuf], _: usize, _: &Path) -> Result<String> {
        bail!("lm_score: a selection cannot run sharded")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::testing::{build_in, record, try_build_in};

    /// Records with an instruction, one plain document, one with an empty answer.
    fn records() -> Vec<Record> {
        let mut out: Vec<Record> = (0..9)
            .map(|i| {
                record(
                    json!({"id": format!("r{i}"), "instruction": format!("第{i}条：今天天气怎么样？"),
                    "output": "今天天气不错，我们去爬山了。".repeat(1 + i % 3)}),
                )
            })
            .collect();
        out.push(record(json!({"id": "doc", "text": "The quick brown fox jumps."})));
        out.push(record(json!({"id": "empty", "instruction": "问", "output": ""})));
        out
    }

    /// Run the stage the way the executor does: prepass (key, observe, prepare) when it
    /// selects, then the main pass (open the prepass, key, decide).
    fn run_all(stage: &mut LmScore, dir: &Path) -> Vec<(Verdict, Record)> {
        if stage.needs_prepass() {
            stage.prepass().open(dir, false).unwrap();
            for mut r in records() {
                let k = stage.key(&mut r).unwrap();
                stage.observe(&r, k).unwrap();
            }
            stage.prepass().prepare().unwrap();
            stage.prepass().open(dir, true).unwrap();
        }
        records()
            .into_iter()
            .map(|mut r| {
                let k = stage.key(&mut r).unwrap();
                (stage.decide(&mut r, k).unwrap(), r)
            })
            .collect()
    }

    #[test]
    fn scores_every_response_and_applies_the_bounds() {
        let dir = tempfile::tempdir().unwrap();
        crate::lm_score::test_model::tiny_folder(dir.path());
        let mut s = build_in(
            dir.path(),
            "model = \".\"\nmax_ifd = 0.0\naction = \"tag\"",
            LmScore::new,
        );
        let out = run_all(&mut s, dir.path());
        for (v, r) in &out[..9] {
            let m = &r.meta["lm_score"];
            let ifd = m["ifd"].as_f64().unwrap();
            assert!(ifd > 0.0 && m["perplexity"].as_f64().unwrap() > 1.0, "{m}");
            assert_eq!(
                *v,
                Verdict::Tagged {
                    reason: "ifd_too_high".into()
                }
            );
            assert!(m["detail"].as_str().unwrap().starts_with("IFD "));
            assert_eq!(m["rank"], Value::Null);
        }
        // A document: perplexity, no IFD, so no IFD bound. Nothing to score: nulls.
        assert_eq!(out[9].0, Verdict::Keep);
        assert_eq!(out[9].1.meta["lm_score"]["ifd"], Value::Null);
        assert!(out[9].1.meta["lm_score"]["loss"].as_f64().is_some());
        assert_eq!(out[10].0, Verdict::Keep);
        assert_eq!(out[10].1.meta["lm_score"]["tokens"], Value::Null);
    }

    #[test]
    fn select_keeps_the_top_fraction_best_first_ties_in_input_order() {
        let dir = tempfile::tempdir().unwrap();
        crate::lm_score::test_model::tiny_folder(dir.path());
        let mut s = build_in(
            dir.path(),
            "model = \".\"\nselect = { by = \"ifd\", fraction = 0.3 }",
            LmScore::new,
        );
        let out = run_all(&mut s, dir.path());
        // Nine ranked (the document has no IFD, the empty answer no score): ceil(2.7) = 3.
        let ifd = |r: &Record| r.meta["lm_score"]["ifd"].as_f64().unwrap();
        let kept: Vec<&Record> = out[..9]
            .iter()
            .filter(|(v, _)| *v == Verdict::Keep)
            .map(|(_, r)| r)
            .collect();
        assert_eq!(kept.len(), 3);
        let lowest_kept = kept.iter().map(|r| ifd(r)).fold(f64::MAX, f64::min);
        let mut ranks = Vec::new();
        for (v, r) in &out[..9] {
            ranks.push(r.meta["lm_score"]["rank"].as_u64().unwrap());
            if let Verdict::Drop { reason, detail } = v {
                assert_eq!(reason, "not_selected");
                assert!(ifd(r) <= lowest_kept, "{detail}");
                assert!(
                    detail.contains("not in the highest 30%") && detail.contains("of 9"),
                    "{detail}"
                );
            }
        }
        ranks.sort();
        assert_eq!(ranks, (1..=9).collect::<Vec<u64>>());
        assert_eq!(
            (out[9].0.clone(), out[10].0.clone()),
            (Verdict::Keep, Verdict::Keep)
        );
        assert_eq!(s.summary().unwrap()["selected"], json!(3));

        // Equal scores: the earlier record ranks first. Resume: the cursor comes back.
        let mut sel = Selection::default();
        let l = ResponseLoss {
            tokens: 3,
            alone: 2.0,
            conditioned: Some(1.0),
        };
        sel.entries = vec![
            Entry {
                loss: Some(l),
                rank: 0,
                selected: false
            };
            4
        ];
        s.selection = sel;
        s.selection.dir = dir.path().to_path_buf();
        s.prepass().prepare().unwrap();
        let ranks: Vec<u32> = s.selection.entries.iter().map(|e| e.rank).collect();
        assert_eq!(ranks, [1, 2, 3, 4]);
        s.prepass().open(dir.path(), true).unwrap();
        s.selection.cursor = 2;
        let state = s.save_state().unwrap();
        s.selection.cursor = 0;
        s.load_state(&state).unwrap();
        assert_eq!(s.selection.cursor, 2);
        assert!(s.load_state(&state[..3]).is_err());
    }

    #[test]
    fn only_a_selection_needs_a_prepass_and_refuses_sharded_runs() {
        let dir = tempfile::tempdir().unwrap();
        crate::lm_score::test_model::tiny_folder(dir.path());
        let mut plain = build_in(dir.path(), "model = \".\"\nmax_ifd = 1.0", LmScore::new);
        assert!(!plain.needs_prepass() && plain.use_sharded_prepass());
        let mut select = build_in(
            dir.path(),
            "model = \".\"\nselect = { by = \"perplexity\", fraction = 0.5 }",
            LmScore::new,
        );
        assert!(select.needs_prepass() && !select.use_sharded_prepass());
        assert!(select.prepass().close_observe().is_err());
        // Perplexity ranks lowest first by default.
        assert_eq!(select.cfg.select.as_ref().unwrap().order(), Order::Lowest);
    }

    #[test]
    fn rejects_bad_configs() {
        let dir = tempfile::tempdir().unwrap();
        crate::lm_score::test_model::tiny_folder(dir.path());
        for bad in [
            "model = \".\"\nselect = { by = \"ifd\", fraction = 0.0 }",
            "model = \".\"\nselect = { by = \"ifd\", fraction = 1.5 }",
            "model = \".\"\naction = \"redact\"",
            "model = \".\"\nmax_tokens = 1",
            "model = \"missing.gguf\"",
        ] {
            assert!(try_build_in(dir.path(), bad, LmScore::new).is_err(), "{bad}");
        }
    }
}
