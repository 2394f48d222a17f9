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

    /// The scores computed the slow way: f64 softmax over each row of logits.
    fn by_hand(model: &Model, ids: &[u32]) -> (f64, f64, f64) {
        let input = Tensor::from_slice(&ids[..ids.len() - 1], (1, ids.len() - 1), &Device::Cpu).unwrap();
        let logits: Vec<Vec<f32>> = model
            .forward(&input, None)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec2()
            .unwrap();
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
