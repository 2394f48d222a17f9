//! `pii`: find personal data (ID numbers, phone numbers, e-mail addresses, bank
//! cards, IPs, credentials) in every text segment and redact, tag or drop.
//!
//! SFT data scraped from forums and chat logs carries real people's phone and
//! ID numbers; a model trained on them can repeat them. Detection is regex
//! candidates plus validation, tuned for precision: a Chinese resident ID must
//! have a real province code, a real birth date and a correct ISO 7064 check
//! digit; a bank card must pass Luhn and have a known issuer prefix; digit
//! candidates must not be part of a longer digit run or a decimal/version
//! (`10.0.19045.2965`), so order numbers, dates, prices, ISBNs, timestamps and
//! arithmetic are left alone. Weak patterns (QQ, WeChat, passport, 15-digit
//! legacy IDs) count only next to a context word (`QQ`, `微信`, `护照`,
//! `身份证`). Full-width digits and letters (`１３８…`) are matched like ASCII.
//!
//! Types (`types`, default all) and their placeholders:
//! `CN_ID` (18-digit with check digit; 15-digit legacy with context),
//! `PHONE` (Chinese mobile `1[3-9]x` with optional `+86`/`0086`/`86`/`(+86)`,
//! whole or grouped 3-4-4 / 3-8 / 7-4; North American numbers written with
//! separators or `+1`), `LANDLINE` (Chinese area code and 7-8 digit number in
//! every written form: `0571-1234-5678`, `0871 6543 2109`, `(0755)1234-5678`,
//! `+86-10-65521234`; written together only after a telephone word), `EMAIL`
//! (also internationalised domains such as `…@公司.中国`),
//! `BANK_CARD` (15-19 digits, optionally in groups of 4, Luhn, issuer prefix),
//! `IP` (IPv4 other than 0/8, 127/8, 224+ and version-like numbers; IPv6
//! validated by the std parser), `PASSPORT` (Chinese `E`/`G`+8 digits,
//! `E`+letter+7 digits, US 9 digits, with context), `QQ` (5-11 digits after
//! `QQ`/`扣扣` with only filler between, so `QQ群 123456` is not one), `WECHAT`
//! (after `微信`/`WeChat`/`wx`/`vx`, and `wxid_…`), `URL_CREDENTIALS`
//! (`scheme://user:pass@host`; secret query values: `token`, `key`, `secret`,
//! `sign`, `signature`, `appid`, `session`, `q-signature`, `X-Amz-Signature`, ...;
//! webhook path secrets of Slack, Feishu, Discord, Telegram), `API_KEY` (AWS,
//! Aliyun, Tencent, GitHub, GitLab, Hugging Face, npm, Stripe, OpenAI-style,
//! Slack, Google keys; JWTs anywhere; `Bearer` tokens) and `PRIVATE_KEY`
//! (a whole `-----BEGIN … PRIVATE KEY-----` block). Phone-, card- and ID-shaped
//! numbers are vetoed by the clause around them: arithmetic (`计算 139… ÷ 7`),
//! quantities and prices, order/tracking/serial words. Overlapping finds keep the
//! longest, then the more specific type (in the order listed in [`PiiType`]).
//!
//! Actions: `redact` (default) replaces each span with the placeholder and
//! reports `modified`; `tag` only annotates; `drop` rejects the record (reason
//! `pii`) when PII characters / all characters exceed `max_density` or the
//! number of spans exceeds `max_spans`, and redacts it otherwise. A dropped
//! record is redacted too before it is rejected, so neither `rejected/` nor the
//! report's samples show the personal data. The matched text itself is never
//! written anywhere (meta, details, errors).
//!
//! ```toml
//! [[stage]]
//! kind = "pii"
//! action = "redact"              # redact | tag | drop
//! types = ["CN_ID", "PHONE", "EMAIL", "BANK_CARD", "IP"]   # default: all
//! max_density = 0.3              # drop: PII chars / all chars above this drops
//! max_spans = 20                 # drop: more spans than this drops (default: no limit)
//! placeholder = "<{type}>"       # `{type}` becomes CN_ID, PHONE, ...
//! ```
//! `meta.pii = [{type, field, start, end}]` (only on records with finds), with
//! `start`/`end` in characters (not bytes) of the segment's text before redaction.
//!
//! The detection itself is [`crate::pii`].

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::pii::{redact, PiiDetector, PiiSpan, PiiType};
use crate::record::{FieldPath, Record};
use crate::shape::Shape;
use crate::stage::{Action, BuildContext, Stage, Verdict};

fn default_action() -> Action {
    Action::Redact
}

fn default_density() -> f64 {
    0.3
}

fn default_placeholder() -> String {
    "<{type}>".to_string()
}

/// `[[stage]] kind = "pii"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PiiConfig {
    #[serde(default = "default_action")]
    pub action: Action,
    /// Enabled type names; all when absent.
    pub types: Option<Vec<String>>,
    #[serde(default = "default_density")]
    pub max_density: f64,
    pub max_spans: Option<u64>,
    #[serde(default = "default_placeholder")]
    pub placeholder: String,
}

/// The built stage.
pub struct Pii {
    cfg: PiiConfig,
    det: PiiDetector,
}

impl Pii {
    /// Check the config and build the stage (compiles every pattern once).
    pub fn new(cfg: PiiConfig, _cx: &BuildContext) -> Result<Self> {
        let mut types = Vec::new();
        for name in cfg.types.iter().flatten() {
            match PiiType::parse(name) {
                Some(t) => types.push(t),
                None => bail!(
                    "pii: unknown type `{name}`; known types: {}",
                    PiiType::ALL.map(PiiType::name).join(", ")
                ),
            }
        }
        if cfg.types.as_ref().is_some_and(|t| t.is_empty()) {
            bail!("pii: `types` is empty; leave it out to enable every type");
        }
        if !(cfg.max_density > 0.0 && cfg.max_density <= 1.0) {
            bail!("pii: max_density must be in (0, 1], got {}", cfg.max_density);
        }
        Ok(Pii {
            det: PiiDetector::new(&types),
            cfg,
        })
    }
}

impl Stage for Pii {
    fn kind(&self) -> &'static str {
        "pii"
    }

    fn scrub_for_display(&self, text: &str) -> Option<String> {
        let spans = self.det.detect(text);
        (!spans.is_empty()).then(|| redact(text, &spans, &self.cfg.placeholder))
    }

    fn process(&self, record: &mut Record) -> Result<Verdict> {
        let mut found: Vec<(FieldPath, Vec<PiiSpan>, Option<String>)> = Vec::new();
        let mut total_chars = 0usize;
        for (seg, text) in record.texts() {
            if self.cfg.action == Action::Drop {
                total_chars += text.chars().count();
            }
            let spans = self.det.detect(text);
            if spans.is_empty() {
                continue;
            }
            let redacted =
                (self.cfg.action != Action::Tag).then(|| redact(text, &spans, &self.cfg.placeholder));
            found.push((seg.path, spans, redacted));
        }
        if found.is_empty() {
            return Ok(Verdict::Keep);
        }
        let mut meta = Vec::new();
        let mut counts: BTreeMap<PiiType, usize> = BTreeMap::new();
        let (mut n_spans, mut pii_chars) = (0usize, 0usize);
        for (path, spans, _) in &found {
            let field = path.to_string();
            for s in spans {
                meta.push(json!({"type": s.ty.name(), "field": field, "start": s.start, "end": s.end}));
                *counts.entry(s.ty).or_default() += 1;
                n_spans += 1;
                pii_chars += s.end - s.start;
            }
        }
        record.annotate("pii", Value::Array(meta));
        if self.cfg.action == Action::Tag {
            return Ok(Verdict::Tagged { reason: "pii".into() });
        }
        // Redact in every mode but tag: a dropped record is shown in rejected/ and the report.
        for (path, _, redacted) in found {
            if let Some(r) = redacted {
                record.set_text(&path, r);
            }
        }
        if self.cfg.action == Action::Drop {
            let density = pii_chars as f64 / total_chars.max(1) as f64;
            let what = counts
                .iter()
                .map(|(t, n)| format!("{n} {}", t.name()))
                .collect::<Vec<_>>()
                .join(", ");
            if density > self.cfg.max_density {
                return Ok(Verdict::drop(
                    "pii",
                    format!(
                        "PII density {density:.2} > max_density {} ({n_spans} spans: {what})",
                        self.cfg.max_density
                    ),
                ));
            }
            if let Some(max) = self.cfg.max_spans {
                if n_spans as u64 > max {
                    return Ok(Verdict::drop(
                        "pii",
                        format!("{n_spans} PII spans > max_spans {max} ({what})"),
                    ));
                }
            }
        }
        Ok(Verdict::Modified)
    }

    fn annotations(&self) -> Vec<(&'static str, Shape)> {
        let span = Shape::object(&[
            ("type", Shape::Str),
            ("field", Shape::Str),
            ("start", Shape::Int),
            ("end", Shape::Int),
        ]);
        vec![("pii", Shape::list(span))]
    }

    fn describe(&self) -> String {
        let types = match &self.cfg.types {
            Some(t) => t.join(","),
            None => "all types".to_string(),
        };
        let limits = match self.cfg.action {
            Action::Drop => format!(
                ", max_density {}, max_spans {}",
                self.cfg.max_density,
                self.cfg.max_spans.map_or("-".to_string(), |v| v.to_string())
            ),
            _ => String::new(),
        };
        format!("{types}, action {:?}{limits}", self.cfg.action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(v: serde_json::Value) -> Record {
        crate::record::test_record(v)
    }

    fn stage(toml_text: &str) -> Pii {
        let cfg: PiiConfig = toml::from_str(toml_text).unwrap();
        Pii::new(
            cfg,
            &BuildContext {
                config_dir: ".".into(),
            },
        )
        .unwrap()
    }

    #[test]
    fn redacts_with_char_offsets_and_never_leaks() {
        let s = stage("");
        let mut r =
            rec(serde_json::json!({"instruction": "联系我", "output": "电话13812345678，邮箱a@b.cn"}));
        assert_eq!(s.process(&mut r).unwrap(), Verdict::Modified);
        assert_eq!(r.fields["output"], "电话<PHONE>，邮箱<EMAIL>");
        let m = &r.meta["pii"];
        assert_eq!(
            m[0],
            serde_json::json!({"type": "PHONE", "field": "output", "start": 2, "end": 13})
        );
        assert_eq!(m[1]["start"], 16);
        assert!(!m.to_string().contains("13812345678"));
        let mut r = rec(serde_json::json!({"text": "nothing here"}));
        assert_eq!(s.process(&mut r).unwrap(), Verdict::Keep);
        assert!(r.meta.get("pii").is_none());
    }

    #[test]
    fn tag_keeps_text_and_drop_redacts_first() {
        let s = stage("action = \"tag\"");
        let mut r = rec(serde_json::json!({"text": "QQ 123456789"}));
        assert_eq!(
            s.process(&mut r).unwrap(),
            Verdict::Tagged { reason: "pii".into() }
        );
        assert_eq!(r.fields["text"], "QQ 123456789");
        let s = stage("action = \"drop\"\nmax_density = 0.5");
        let mut r = rec(serde_json::json!({"text": "13812345678 13912345678"}));
        match s.process(&mut r).unwrap() {
            Verdict::Drop { reason, detail } => {
                assert_eq!(reason, "pii");
                assert!(detail.contains("2 PHONE") && !detail.contains("138"), "{detail}");
            }
            v => panic!("{v:?}"),
        }
        assert_eq!(r.fields["text"], "<PHONE> <PHONE>");
        let mut r = rec(serde_json::json!({"text": "请拨打13812345678联系客服人员，工作时间为周一至周五。"}));
        assert_eq!(s.process(&mut r).unwrap(), Verdict::Modified);
        let s = stage("action = \"drop\"\nmax_spans = 1");
        let mut r = rec(
            serde_json::json!({"text": "很长的一段文字，a@b.cn 和 c@d.cn 都在里面，还有更多的文字来稀释密度。"}),
        );
        assert!(matches!(s.process(&mut r).unwrap(), Verdict::Drop { .. }));
    }

    #[test]
    fn rejects_bad_config() {
        for bad in [
            "types = [\"SSN\"]",
            "types = []",
            "max_density = 0.0",
            "colour = 1",
        ] {
            let built = toml::from_str::<PiiConfig>(bad)
                .map_err(anyhow::Error::from)
                .and_then(|c| {
                    Pii::new(
                        c,
                        &BuildContext {
                            config_dir: ".".into(),
                        },
                    )
                });
            assert!(built.is_err(), "{bad}");
        }
        let s = stage("types = [\"email\"]");
        let mut r = rec(serde_json::json!({"text": "13812345678 a@b.cn"}));
        s.process(&mut r).unwrap();
        assert_eq!(r.fields["text"], "13812345678 <EMAIL>");
    }
}
