//! `classifier`: scores records with any fastText model (`curate train-classifier`
//! trains them; `filters/quality/quality_zh_en.bin` is the bundled quality model)
//! and drops or tags the ones on the flagged side of a threshold.
//!
//! The score is P(`label`) of the selected text views (`fields`) joined with line
//! breaks: a fastText model averages its n-gram vectors over the whole input, so one
//! pass over the joined text weighs each view by its length, which is what a quality
//! score of a record should do. `aggregate = "min"` or `"max"` scores each view on its
//! own instead (one bad turn of a conversation is then not diluted by good ones).
//! Several classifier stages may run in one pipeline; each writes its own `name`.
//!
//! ```toml
//! [[stage]]
//! kind = "classifier"
//! name = "quality"            # required: meta.classifier.quality = {label, score}
//! model = "../filters/quality/quality_zh_en.bin"
//! label = "hq"                # score = P(hq)
//! fields = "response"         # all | response | prompt
//! aggregate = "join"          # join | min | max
//! threshold = 0.5
//! flag = "below"              # below (score < threshold) | at_or_above
//! action = "drop"             # or "tag"
//! char_split = true           # one token per CJK character (as the model was trained)
//! ```
//! `meta.classifier.<name> = {label, score}`: the model's most probable label and
//! P(`label`); `score` is null for a record with nothing to score (no selected text,
//! which is never flagged). Drop reason: `classifier_<name>`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::classifier::Classifier;
use crate::record::{Record, TextFields};
use crate::shape::Shape;
use crate::stage::{flag_or_drop, flagged_shape, Action, BuildContext, Flags, Score, Stage, Verdict};

/// How the selected text views of a record become one score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// One score of all views joined with line breaks.
    #[default]
    Join,
    /// The lowest score of any view.
    Min,
    /// The highest score of any view.
    Max,
}

/// Which side of the threshold is flagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagSide {
    /// `score < threshold`: the label is the wanted one (quality: `hq`).
    #[default]
    Below,
    /// `score >= threshold`: the label is the unwanted one (spam, toxic).
    AtOrAbove,
}

fn default_threshold() -> f32 {
    0.5
}
fn default_true() -> bool {
    true
}

/// `[[stage]] kind = "classifier"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierConfig {
    /// The stage's `name` (every stage table may have one): the key under
    /// `meta.classifier` and the drop reason's suffix; letters, digits, `_`. Set by
    /// the registry from the table, not read as a parameter.
    #[serde(skip)]
    pub name: String,
    /// A fastText `.bin` model.
    pub model: PathBuf,
    /// The label whose probability is the score.
    pub label: String,
    #[serde(default)]
    pub fields: TextFields,
    #[serde(default)]
    pub aggregate: Aggregate,
    #[serde(default = "default_threshold")]
    pub threshold: f32,
    #[serde(default)]
    pub flag: FlagSide,
    #[serde(default)]
    pub action: Action,
    /// Feed the model one token per CJK character (must match how it was trained).
    #[serde(default = "default_true")]
    pub char_split: bool,
    /// Punctuation and line breaks as tokens (must match `--keep-punct` in training).
    #[serde(default)]
    pub keep_punct: bool,
}

/// The built stage.
pub struct ClassifierStage {
    cfg: ClassifierConfig,
    model: Classifier,
    labels: Vec<String>,
    /// Index of `cfg.label` in `labels`.
    index: usize,
    reason: String,
}

impl ClassifierStage {
    /// Check the config and load the model (once, shared by all threads).
    pub fn new(cfg: ClassifierConfig, cx: &BuildContext) -> Result<Self> {
        // An unnamed table gets its kind as name (`classifier`, `classifier#2`).
        if cfg.name == "classifier" || cfg.name.starts_with("classifier#") {
            bail!("classifier: give the stage a `name` (it becomes meta.classifier.<name>)");
        }
        if !cfg.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!(
                "classifier: `name` \"{}\" must be letters, digits and `_` (it becomes meta.classifier.<name>)",
                cfg.name
            );
        }
        if cfg.action == Action::Redact {
            bail!("classifier: action \"redact\" does not apply; use \"drop\" or \"tag\"");
        }
        if !(0.0..=1.0).contains(&cfg.threshold) {
            bail!("classifier: threshold must be in 0..=1, got {}", cfg.threshold);
        }
        let path = cx.resolve(&cfg.model);
        let model = Classifier::load(&path, cfg.char_split)
            .with_context(|| "classifier: model")?
            .with_keep_punct(cfg.keep_punct);
        let labels = model.labels();
        let Some(index) = labels.iter().position(|l| *l == cfg.label) else {
            bail!(
                "classifier: model {} has no label `{}` (labels: {:?})",
                path.display(),
                cfg.label,
                labels
            );
        };
        let reason = format!("classifier_{}", cfg.name);
        Ok(ClassifierStage {
            cfg,
            model,
            labels,
            index,
            reason,
        })
    }

    /// `(probabilities, score)` of the record's selected views, or `None` without any.
    fn score(&self, record: &Record) -> Option<(Vec<f32>, f32)> {
        let texts = record
            .texts()
            .into_iter()
            .filter(|(seg, t)| self.cfg.fields.selects(seg.role) && !t.trim().is_empty())
            .map(|(_, t)| t);
        match self.cfg.aggregate {
            Aggregate::Join => {
                let joined = texts.collect::<Vec<&str>>().join("\n");
                if joined.is_empty() {
                    return None;
                }
                let ps = self.model.probs(&joined);
                let s = ps[self.index];
                Some((ps, s))
            }
            Aggregate::Min | Aggregate::Max => {
                let mut best: Option<(Vec<f32>, f32)> = None;
                for t in texts {
                    let ps = self.model.probs(t);
                    let s = ps[self.index];
                    let better = best.as_ref().is_none_or(|(_, b)| match self.cfg.aggregate {
                        Aggregate::Min => s < *b,
                        _ => s > *b,
                    });
                    if better {
                        best = Some((ps, s));
                    }
                }
                best
            }
        }
    }

    /// Whether `score` is on the flagged side of the threshold.
    fn flagged(&self, score: f32) -> bool {
        match self.cfg.flag {
            FlagSide::Below => score < self.cfg.threshold,
            FlagSide::AtOrAbove => score >= self.cfg.threshold,
        }
    }
}

/// Four decimals: enough to rank by, stable to print.
fn round4(x: f32) -> f64 {
    (f64::from(x) * 10000.0).round() / 10000.0
}

impl Stage for ClassifierStage {
    fn kind(&self) -> &'static str {
        "classifier"
    }

    fn process(&self, record: &mut Record) -> Result<Verdict> {
        let scored = self.score(record);
        let found = match &scored {
            Some((ps, s)) => {
                // The most probable label; ties go to the first in the model's order.
                let top = (0..ps.len()).fold(0, |b, i| if ps[i] > ps[b] { i } else { b });
                json!({"label": self.labels[top], "score": round4(*s)})
            }
            None => json!({"label": null, "score": null}),
        };
        // Earlier classifier stages' entries stay beside this one.
        let mut all = match record.meta.remove("classifier") {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        let flagged = scored.as_ref().is_some_and(|(_, s)| self.flagged(*s));
        if !flagged {
            all.insert(self.cfg.name.clone(), found);
            record.annotate("classifier", Value::Object(all));
            return Ok(Verdict::Keep);
        }
        let s = scored.map_or(0.0, |(_, s)| s);
        let side = match self.cfg.flag {
            FlagSide::Below => "<",
            FlagSide::AtOrAbove => ">=",
        };
        let detail = format!("P({}) {:.3} {side} {}", self.cfg.label, s, self.cfg.threshold);
        // `flag_or_drop` writes the finding under the stage's key: this stage's entry
        // goes in with the others, marked as `flag_or_drop` marks a finding.
        let verdict = flag_or_drop(record, "classifier", found, self.cfg.action, &self.reason, detail);
        if let Some(mine) = record.meta.remove("classifier") {
            all.insert(self.cfg.name.clone(), mine);
        }
        record.annotate("classifier", Value::Object(all));
        Ok(verdict)
    }

    fn annotations(&self) -> Vec<(&'static str, Shape)> {
        let found = Shape::object(&[("label", Shape::Str), ("score", Shape::Float)]);
        let mine = flagged_shape(self.cfg.action, found);
        vec![("classifier", Shape::object(&[(&self.cfg.name, mine)]))]
    }

    fn scores(&self) -> Vec<Score> {
        let flags = match self.cfg.flag {
            FlagSide::Below => Flags::Below,
            FlagSide::AtOrAbove => Flags::AtOrAbove,
        };
        let t = Score::decimal(self.cfg.threshold);
        vec![Score::unit(
            "classifier",
            &format!("{}.score", self.cfg.name),
            t,
            flags,
        )]
    }

    fn describe(&self) -> String {
        format!(
            "model {}, P({}) {} {}, fields {:?}, aggregate {:?}, action {:?}",
            self.cfg.model.display(),
            self.cfg.label,
            match self.cfg.flag {
                FlagSide::Below => "below",
                FlagSide::AtOrAbove => "at or above",
            },
            self.cfg.threshold,
            self.cfg.fields,
            self.cfg.aggregate,
            self.cfg.action
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classifier::{train, TrainOptions};
    use crate::stages::testing::{build_in, run, try_build_in};
    use std::path::Path;

    /// The stage from its table's parameters, named as the registry names it.
    fn named(name: &str) -> impl FnOnce(ClassifierConfig, &BuildContext) -> Result<ClassifierStage> + '_ {
        move |mut cfg, cx| {
            cfg.name = name.to_string();
            ClassifierStage::new(cfg, cx)
        }
    }

    /// A small model that tells tidy prose (`hq`) from menu-like word lists (`lq`).
    fn model(dir: &Path) {
        let mut lines = String::new();
        let good = [
            "天空之所以是蓝色的，是因为大气对短波长的光散射更强。",
            "光合作用是植物利用阳光把二氧化碳和水转化为有机物的过程。",
            "Water boils at a lower temperature at high altitude because the air pressure is lower.",
            "The committee reviewed the proposal and decided to fund the new library next spring.",
        ];
        let bad = [
            "首页 登录 注册 联系我们 网站地图 版权所有",
            "点击 下载 免费 注册 首页 更多 返回顶部",
            "Home Login Sign up Contact Sitemap Privacy Terms",
            "Next Prev Share Tweet Subscribe Login Home Top",
        ];
        for _ in 0..20 {
            for g in good {
                lines.push_str(&json!({"text": g, "label": "hq"}).to_string());
                lines.push('\n');
            }
            for b in bad {
                lines.push_str(&json!({"text": b, "label": "lq"}).to_string());
                lines.push('\n');
            }
        }
        std::fs::write(dir.join("train.jsonl"), lines).unwrap();
        train(&TrainOptions {
            input: dir.join("train.jsonl"),
            output: dir.join("q.bin"),
            epochs: 20,
            dim: 8,
            bucket: 5000,
            word_ngrams: 2,
            quantize: false,
            ..TrainOptions::default()
        })
        .unwrap();
    }

    #[test]
    fn scores_joined_views_and_flags_below_the_threshold() {
        let dir = tempfile::tempdir().unwrap();
        model(dir.path());
        let cfg = "model = \"q.bin\"\nlabel = \"hq\"\nfields = \"response\"";
        let s = build_in(dir.path(), cfg, named("quality"));
        let (v, r) = run(
            &s,
            json!({"instruction": "首页 登录 注册", "output": "天空之所以是蓝色的，是因为大气对短波长的光散射更强。"}),
        );
        assert_eq!(v, Verdict::Keep);
        assert_eq!(r.meta["classifier"]["quality"]["label"], json!("hq"));
        assert!(r.meta["classifier"]["quality"]["score"].as_f64().unwrap() > 0.5);
        let (v, r) = run(
            &s,
            json!({"instruction": "问", "output": "首页 登录 注册 联系我们 网站地图"}),
        );
        let Verdict::Drop { reason, detail } = v else {
            panic!("{v:?}")
        };
        assert_eq!(reason, "classifier_quality");
        assert!(
            detail.starts_with("P(hq) 0.") && detail.ends_with("< 0.5"),
            "{detail}"
        );
        assert_eq!(r.meta["classifier"]["quality"]["label"], json!("lq"));
        // Nothing selected to score: annotated with nulls, never flagged.
        let (v, r) = run(&s, json!({"instruction": "首页 登录", "output": "  "}));
        assert_eq!(v, Verdict::Keep);
        assert_eq!(
            r.meta["classifier"]["quality"],
            json!({"label": null, "score": null})
        );
    }

    #[test]
    fn two_classifier_stages_keep_both_entries_and_min_takes_the_worst_view() {
        let dir = tempfile::tempdir().unwrap();
        model(dir.path());
        let a = build_in(
            dir.path(),
            "model = \"q.bin\"\nlabel = \"hq\"\naggregate = \"min\"\naction = \"tag\"",
            named("a"),
        );
        let b = build_in(
            dir.path(),
            "model = \"q.bin\"\nlabel = \"lq\"\nflag = \"at_or_above\"\nthreshold = 0.99",
            named("b"),
        );
        let mut rec = crate::stages::testing::record(json!({
            "instruction": "Home Login Sign up Contact Sitemap",
            "output": "Water boils at a lower temperature at high altitude because the air pressure is lower."
        }));
        let v = a.process(&mut rec).unwrap();
        assert_eq!(
            v,
            Verdict::Tagged {
                reason: "classifier_a".into()
            }
        );
        assert_eq!(b.process(&mut rec).unwrap(), Verdict::Keep);
        let m = &rec.meta["classifier"];
        assert_eq!(
            m["a"]["label"],
            json!("lq"),
            "min takes the menu-like instruction"
        );
        assert_eq!(m["a"]["flag"], json!("classifier_a"));
        assert!(m["b"]["score"].as_f64().unwrap() < 0.99);
        // Both entries fit the declared schema: the union of the two stages' shapes.
        let shape = a.annotations()[0].1.clone().merge(b.annotations()[0].1.clone());
        let Shape::Struct(fields) = shape else { panic!() };
        assert_eq!(
            fields.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    #[test]
    fn rejects_bad_configs() {
        let dir = tempfile::tempdir().unwrap();
        model(dir.path());
        for (name, bad) in [
            ("q", "model = \"q.bin\"\nlabel = \"spam\""),
            ("a b", "model = \"q.bin\"\nlabel = \"hq\""),
            ("classifier#2", "model = \"q.bin\"\nlabel = \"hq\""),
            ("q", "model = \"q.bin\"\nlabel = \"hq\"\nthreshold = 1.5"),
            ("q", "model = \"q.bin\"\nlabel = \"hq\"\naction = \"redact\""),
            ("q", "model = \"missing.bin\"\nlabel = \"hq\""),
        ] {
            assert!(
                try_build_in(dir.path(), bad, named(name)).is_err(),
                "{name}: {bad}"
            );
        }
        assert!(
            toml::from_str::<ClassifierConfig>("model = \"m\"\nlabel = \"x\"\nflag = \"above\"").is_err()
        );
    }
}
