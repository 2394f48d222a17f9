//! Language-model scores of a text: how a pretrained causal LM sees it, for machine-text
//! detection (issue item "a perplexity score from the fine-tune stage's model").
//!
//! One forward pass per text over its first `max_tokens` tokens gives, per position, the
//! model's distribution `p` over the next token and the log-probability of the token
//! actually there. From them:
//! - `log_likelihood`: mean `log p(x_t)` (minus the log-perplexity);
//! - `entropy`: mean entropy of `p`;
//! - `discrepancy`: Fast-DetectGPT's analytic sampling discrepancy with the same model for
//!   sampling and scoring (Bao et al., ICLR 2024):
//!   `(Σ log p(x_t) − Σ E_p[log p]) / sqrt(Σ Var_p[log p])`. Machine text sits nearer the
//!   model's modes than its own samples would, so it scores higher; the normalisation
//!   makes the score comparable across texts of different predictability, which raw
//!   perplexity is not.
//!
//! Only the text's beginning is scored (`max_tokens`), so texts cut mid-sentence are
//! scored like whole ones. The model is the fine-tune stage's own Llama/Qwen2 module
//! ([`crate::finetune::model`]), loaded from a GGUF file or a Hugging Face folder.

use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, D};
use tokenizers::Tokenizer;

use crate::finetune::model::{Method, Model};
use crate::finetune::session::load_checkpoint;

/// The scores of one text under a language model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LmScore {
    /// Tokens scored (predicted positions).
    pub tokens: usize,
    /// Mean log-probability of the text's tokens (nats).
    pub log_likelihood: f64,
    /// Mean entropy of the model's next-token distribution (nats).
    pub entropy: f64,
    /// Fast-DetectGPT analytic sampling discrepancy (higher: more machine-like).
    pub discrepancy: f64,
}

/// A loaded model and tokenizer that score texts.
pub struct LmScorer {
    model: Model,
    tokenizer: Tokenizer,
    /// Ids put before every text (the document separator, if the tokenizer has one).
    prefix: Vec<u32>,
    max_tokens: usize,
}

impl LmScorer {
    /// Load a `.gguf` file or a Hugging Face folder (a `finetune` output's `merged/` is one);
    /// score at most `max_tokens` tokens of a text.
    pub fn load(path: &Path, max_tokens: usize) -> Result<LmScorer> {
        let ck = load_checkpoint(path)
            .with_context(|| format!("{}: cannot load the scoring model", path.display()))?;
        let model = Model::new(ck.config, ck.tensors, Method::Full, 0, &Device::Cpu)?;
        Ok(LmScorer::new(model, ck.tokenizer, max_tokens))
    }

    /// Score with a built model. A text starts after the tokenizer's document separator
    /// (`<|endoftext|>`) when it has one, so its first token is scored too.
    pub fn new(model: Model, tokenizer: Tokenizer, max_tokens: usize) -> LmScorer {
        let prefix = tokenizer.token_to_id("<|endoftext|>").into_iter().collect();
        LmScorer {
            model,
            tokenizer,
            prefix,
            max_tokens: max_tokens.max(2),
        }
    }

    /// Score `text`; `None` when it has fewer than two tokens.
    pub fn score(&self, text: &str) -> Result<Option<LmScore>> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| anyhow::anyhow!("tokenizer: {e}"))?;
        let body = enc.get_ids();
        let body = &body[..body.len().min(self.max_tokens)];
        if body.len() < 2 {
            return Ok(None);
        }
        let mut ids = self.prefix.clone();
        ids.extend_from_slice(body);
        let n_in = ids.len() - 1;
        // Positions whose next token is a text token: the first text token is predicted
        // from the prefix when there is one, else scoring starts at the second.
        let first = self.prefix.len().saturating_sub(1);
        let device = self.model.device();
        let input = Tensor::from_slice(&ids[..n_in], (1, n_in), device)?;
        let logits = self.model.forward(&input, None)?.squeeze(0)?; // [n_in, V]
        let logits = logits.narrow(0, first, n_in - first)?;
        let targets = Tensor::from_slice(&ids[first + 1..], (n_in - first,), device)?;
        let shifted = logits.broadcast_sub(&logits.max_keepdim(D::Minus1)?)?;
        let logp = shifted.broadcast_sub(&shifted.exp()?.sum_keepdim(D::Minus1)?.log()?)?;
        let p = logp.exp()?;
        let ll = logp
            .gather(&targets.to_dtype(DType::U32)?.unsqueeze(1)?, 1)?
            .squeeze(1)?
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?;
        let mean = (&p * &logp)?
            .sum(D::Minus1)?
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?;
        let second = (&p * logp.sqr()?)?
            .sum(D::Minus1)?
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?;
        let n = ll.len();
        let (mut sum_ll, mut sum_mean, mut sum_var) = (0.0f64, 0.0f64, 0.0f64);
        for i in 0..n {
            sum_ll += ll[i];
            sum_mean += mean[i];
            sum_var += (second[i] - mean[i] * mean[i]).max(0.0);
        }
        Ok(Some(LmScore {
            tokens: n,
            log_likelihood: sum_ll / n as f64,
            entropy: -sum_mean / n as f64,
            discrepancy: (sum_ll - sum_mean) / sum_var.max(1e-12).sqrt(),
        }))
    }
}

/// How hard a response is for a model, alone and after its instruction (Cherry LLM's
/// instruction-following difficulty, Li et al., NAACL 2024).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResponseLoss {
    /// Response tokens scored.
    pub tokens: usize,
    /// Mean negative log-likelihood of the response alone (nats): `ln` of its perplexity.
    pub alone: f64,
    /// The same after the instruction; `None` without one.
    pub conditioned: Option<f64>,
}

impl ResponseLoss {
    /// Perplexity of the response alone.
    pub fn perplexity(&self) -> f64 {
        self.alone.exp()
    }

    /// IFD = conditioned / alone: below 1 the instruction helps predict the response;
    /// near or above 1 it does not (an answer unrelated to its question, or one the
    /// model finds trivial either way).
    pub fn ifd(&self) -> Option<f64> {
        self.conditioned.map(|c| c / self.alone.max(1e-9))
    }
}

impl LmScorer {
    /// Token ids of `text`, without special tokens.
    fn ids(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .tokenizer
            .encode(text, false)
            .map_err(|e| anyhow::anyhow!("tokenizer: {e}"))?
            .get_ids()
            .to_vec())
    }

    /// Mean negative log-likelihood of `target` right after `context` (non-empty).
    fn mean_nll(&self, context: &[u32], target: &[u32]) -> Result<f64> {
        let mut ids = context.to_vec();
        ids.extend_from_slice(target);
        let n_in = ids.len() - 1;
        let first = context.len() - 1;
        let device = self.model.device();
        let input = Tensor::from_slice(&ids[..n_in], (1, n_in), device)?;
        let logits = self.model.forward(&input, None)?.squeeze(0)?;
        let logits = logits.narrow(0, first, target.len())?.to_dtype(DType::F32)?;
        let targets = Tensor::from_slice(target, (target.len(), 1), device)?;
        let shifted = logits.broadcast_sub(&logits.max_keepdim(D::Minus1)?)?;
        let logp = shifted.broadcast_sub(&shifted.exp()?.sum_keepdim(D::Minus1)?.log()?)?;
        let ll = logp
            .gather(&targets, 1)?
            .to_dtype(DType::F64)?
            .sum_all()?
            .to_scalar::<f64>()?;
        Ok(-ll / target.len() as f64)
    }

    /// The loss of the first `max_tokens` tokens of `response`, alone and after the last
    /// `max_prompt_tokens` tokens of `prompt` (followed by a line break); `None` when the
    /// response has too few tokens. Both losses are over the same response tokens: all
    /// of them after the document separator, or all but the first without one.
    pub fn response_loss(
        &self,
        prompt: Option<&str>,
        response: &str,
        max_prompt_tokens: usize,
    ) -> Result<Option<ResponseLoss>> {
        let resp = self.ids(response)?;
        let resp = &resp[..resp.len().min(self.max_tokens)];
        let skip = usize::from(self.prefix.is_empty());
        if resp.len() < skip + 1 {
            return Ok(None);
        }
        let (head, target) = resp.split_at(skip);
        let mut alone = self.prefix.clone();
        alone.extend_from_slice(head);
        let loss_alone = self.mean_nll(&alone, target)?;
        let conditioned = match prompt.filter(|p| !p.trim().is_empty()) {
            Some(p) => {
                let p = self.ids(&format!("{p}\n"))?;
                let p = &p[p.len().saturating_sub(max_prompt_tokens)..];
                let mut context = self.prefix.clone();
                context.extend_from_slice(p);
                context.extend_from_slice(head);
                Some(self.mean_nll(&context, target)?)
            }
            None => None,
        };
        Ok(Some(ResponseLoss {
            tokens: target.len(),
            alone: loss_alone,
            conditioned,
        }))
    }
}

/// A tiny random model and its tokenizer, for tests here and in the stage.
#[cfg(test)]
pub(crate) mod test_model {
    use super::*;
    use crate::finetune::data::train_tokenizer;
    use crate::finetune::session::FinetuneConfig;

    /// A tiny model (random weights, seed 3) and a 300-token BPE with `<|endoftext|>`.
    pub fn tiny() -> (Model, Tokenizer) {
        let texts: Vec<String> = (0..50)
            .map(|i| format!("第{i}条：今天天气不错，我们去爬山了。The quick brown fox {i} jumps."))
            .collect();
        let tk = train_tokenizer(&texts, 300, &["<|endoftext|>".to_string()]).unwrap();
        // The fine-tune stage's default tiny shape (2 layers, d=128).
        let config = FinetuneConfig::default().tiny_config(tk.get_vocab_size(true), None);
        (
            Model::from_scratch(config, Method::Full, 3, &Device::Cpu).unwrap(),
            tk,
        )
    }

    /// [`tiny`] saved as a Hugging Face folder (what the `finetune` stage writes as `merged/`).
    pub fn tiny_folder(dir: &Path) {
        let (model, tk) = tiny();
        crate::finetune::export::write_model_folder(
            dir,
            &model.merged_weights().unwrap(),
            &model.config,
            candle_core::DType::F32,
            &tk,
            None,
        )
        .unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::test_model::tiny;
    use super::*;

    /// The model's logits after each token of `ids` but the last, one row per position.
    fn logit_rows(model: &Model, ids: &[u32]) -> Vec<Vec<f32>> {
        let input = Tensor::from_slice(&ids[..ids.len() - 1], (1, ids.len() - 1), &Device::Cpu).unwrap();
        model
            .forward(&input, None)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec2()
            .unwrap()
    }

    /// The scores computed the slow way: f64 softmax over each row of logits.
    fn by_hand(model: &Model, ids: &[u32]) -> (f64, f64, f64) {
        let logits = logit_rows(model, ids);
        let (mut ll, mut mean, mut var) = (0.0, 0.0, 0.0);
        for (row, &next) in logits.iter().zip(&ids[1..]) {
            let max = row.iter().fold(f64::MIN, |m, &x| m.max(x as f64));
            let z: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
            let logp: Vec<f64> = row.iter().map(|&x| x as f64 - max - z.ln()).collect();
            let mu: f64 = logp.iter().map(|l| l.exp() * l).sum();
            let second: f64 = logp.iter().map(|l| l.exp() * l * l).sum();
            ll += logp[next as usize];
            mean += mu;
            var += second - mu * mu;
        }
        let n = (ids.len() - 1) as f64;
        (ll / n, -mean / n, (ll - mean) / var.sqrt())
    }

    /// Log-probability of each next token of `ids`, in f64 from the logits.
    fn next_token_logps(model: &Model, ids: &[u32]) -> Vec<f64> {
        logit_rows(model, ids)
            .iter()
            .zip(&ids[1..])
            .map(|(row, &next)| {
                let max = row.iter().fold(f64::MIN, |m, &x| m.max(x as f64));
                let z: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
                row[next as usize] as f64 - max - z.ln()
            })
            .collect()
    }

    #[test]
    fn response_loss_and_ifd_match_a_direct_computation() {
        let (model, tk) = tiny();
        let eot = tk.token_to_id("<|endoftext|>").unwrap();
        let scorer = {
            // The same weights (seeded), one copy for the scorer.
            let (m, t) = tiny();
            LmScorer::new(m, t, 64)
        };
        let (prompt, response) = ("今天天气怎么样？", "今天天气不错，我们去爬山了。");
        let r = scorer.response_loss(Some(prompt), response, 64).unwrap().unwrap();
        let resp = tk.encode(response, false).unwrap().get_ids().to_vec();
        let p = tk
            .encode(format!("{prompt}\n"), false)
            .unwrap()
            .get_ids()
            .to_vec();
        assert_eq!(r.tokens, resp.len());
        let mean_of_last = |ids: Vec<u32>| {
            let lp = next_token_logps(&model, &ids);
            -lp[lp.len() - resp.len()..].iter().sum::<f64>() / resp.len() as f64
        };
        let alone = mean_of_last([vec![eot], resp.clone()].concat());
        let conditioned = mean_of_last([vec![eot], p.clone(), resp.clone()].concat());
        assert!((r.alone - alone).abs() < 1e-4, "{} vs {alone}", r.alone);
        assert!((r.conditioned.unwrap() - conditioned).abs() < 1e-4);
        assert!((r.ifd().unwrap() - conditioned / alone).abs() < 1e-4);
        assert!((r.perplexity() - alone.exp()).abs() < 1e-3);
        // No prompt: no IFD. The prompt is cut from its start to `max_prompt_tokens`.
        let none = scorer.response_loss(None, response, 64).unwrap().unwrap();
        assert_eq!((none.alone, none.conditioned), (r.alone, None));
        let cut = scorer.response_loss(Some(prompt), response, 2).unwrap().unwrap();
        let tail = mean_of_last([vec![eot], p[p.len() - 2..].to_vec(), resp.clone()].concat());
        assert!((cut.conditioned.unwrap() - tail).abs() < 1e-4);
        assert_eq!(scorer.response_loss(Some(prompt), "", 64).unwrap(), None);
    }

    #[test]
    fn scores_match_a_direct_computation() {
        let (model, tk) = tiny();
        let text = "今天天气不错，我们去爬山了。The quick brown fox jumps.";
        let body = tk.encode(text, false).unwrap().get_ids().to_vec();
        let mut ids = vec![tk.token_to_id("<|endoftext|>").unwrap()];
        ids.extend(&body);
        let (ll, entropy, disc) = by_hand(&model, &ids);
        let scorer = LmScorer::new(model, tk, 1000);
        let s = scorer.score(text).unwrap().unwrap();
        assert_eq!(s.tokens, body.len());
        assert!(
            (s.log_likelihood - ll).abs() < 1e-4,
            "{} vs {ll}",
            s.log_likelihood
        );
        assert!((s.entropy - entropy).abs() < 1e-4, "{} vs {entropy}", s.entropy);
        assert!((s.discrepancy - disc).abs() < 1e-3, "{} vs {disc}", s.discrepancy);
        // An untrained model is near uniform: entropy close to ln(vocab).
        assert!(s.entropy > 0.9 * (300f64).ln());
    }

    #[test]
    fn only_the_first_tokens_count_and_short_texts_get_none() {
        let (model, tk) = tiny();
        let scorer = LmScorer::new(model, tk, 8);
        let a = scorer
            .score("今天天气不错，我们去爬山了，晚上吃了火锅。")
            .unwrap()
            .unwrap();
        let b = scorer
            .score("今天天气不错，我们去爬山了，晚上吃了火锅。The quick brown fox jumps.")
            .unwrap()
            .unwrap();
        assert_eq!(a.tokens, 8);
        assert_eq!(a, b);
        assert_eq!(scorer.score("").unwrap(), None);
    }

    #[test]
    fn a_saved_folder_loads_and_scores_alike_on_any_thread_count() {
        let (model, tk) = tiny();
        let dir = tempfile::tempdir().unwrap();
        super::test_model::tiny_folder(dir.path());
        let text = "第7条：今天天气不错，我们去爬山了。";
        let direct = LmScorer::new(model, tk, 64).score(text).unwrap();
        let loaded = LmScorer::load(dir.path(), 64).unwrap();
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let four = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap();
        let s1 = one.install(|| loaded.score(text).unwrap());
        let s4 = four.install(|| loaded.score(text).unwrap());
        assert_eq!(s1, direct);
        assert_eq!(s1, s4);
    }
}
