//! Per-language held-out evaluation: MLM loss, perplexity and masked-token accuracy.

use super::config::TrainConfig;
use super::data::MlmData;
use crate::batch::{MaskingConfig, MlmMasker};
use crate::error::Result;
use crate::lang::Lang;
use crate::model::MlmModel;
use crate::rng::{stream, Purpose};
use candle_core::{Tensor, D};
use serde::{Deserialize, Serialize};

/// The seed of evaluation masks: fixed, so every model is scored on the same masked tokens.
pub const EVAL_SEED: u64 = 0x5EED_E7A1;

/// How held-out text is batched and masked.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalOptions {
    /// Tokens per sequence.
    pub seq_len: usize,
    /// Sequences per batch.
    pub batch_size: usize,
    /// At most this many batches per language (0: all held-out text).
    pub max_batches: usize,
    /// Masking shares (the same as in training, by default).
    pub masking: MaskingConfig,
}

impl From<&TrainConfig> for EvalOptions {
    /// Evaluation with the training run's sequence length, batch size and masking.
    fn from(t: &TrainConfig) -> Self {
        EvalOptions { seq_len: t.seq_len, batch_size: t.batch_size, max_batches: t.eval_batches, masking: t.masking }
    }
}

/// One language's held-out scores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LangEval {
    /// The language.
    pub lang: Lang,
    /// Mean cross-entropy over masked tokens (nats).
    pub loss: f64,
    /// `exp(loss)`.
    pub perplexity: f64,
    /// Share of masked tokens whose top prediction is right.
    pub accuracy: f64,
    /// Number of masked tokens scored.
    pub masked_tokens: usize,
}

/// Held-out scores of every language at one step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// The training step the model had reached.
    pub step: usize,
    /// One entry per language, in the data's order.
    pub languages: Vec<LangEval>,
}

impl EvalReport {
    /// The entry of `lang`, if evaluated.
    pub fn get(&self, lang: &Lang) -> Option<&LangEval> {
        self.languages.iter().find(|e| &e.lang == lang)
    }
}

/// Scores `model` on every language of `data`'s held-out text with deterministic masks
/// (seeded by [`EVAL_SEED`], independent of the model), with dropout off.
pub fn evaluate(model: &MlmModel, data: &MlmData, options: &EvalOptions, step: usize) -> Result<EvalReport> {
    let masker = MlmMasker::new(options.masking, data.specials(), data.vocab_size())?;
    let params = model.registry().detached();
    let mut languages = Vec::with_capacity(data.langs().len());
    for (li, lang) in data.langs().iter().enumerate() {
        let sentences = data.valid(li);
        let (mut loss_sum, mut correct, mut count, mut next, mut batch_no) = (0.0, 0usize, 0usize, 0usize, 0u64);
        while next < sentences.len() && (options.max_batches == 0 || (batch_no as usize) < options.max_batches) {
            let mut tokens = Vec::with_capacity(options.batch_size * options.seq_len);
            for _ in 0..options.batch_size {
                if next >= sentences.len() {
                    break;
                }
                next = masker.pack_row(sentences, next, options.seq_len, false, &mut tokens);
            }
            let batch =
                masker.mask(lang.clone(), tokens, options.seq_len, &mut stream(EVAL_SEED, Purpose::Eval, batch_no))?;
            batch_no += 1;
            let logits = model.logits_with(&params, &batch, None)?;
            let targets = Tensor::from_slice(&batch.targets, batch.targets.len(), model.device())?;
            let n = batch.targets.len();
            loss_sum += crate::model::layers::cross_entropy(&logits, &targets)?
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?
                * n as f64;
            let predicted = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
            correct += predicted.iter().zip(&batch.targets).filter(|(p, t)| p == t).count();
            count += n;
        }
        let loss = loss_sum / count.max(1) as f64;
        languages.push(LangEval {
            lang: lang.clone(),
            loss,
            perplexity: loss.exp(),
            accuracy: correct as f64 / count.max(1) as f64,
            masked_tokens: count,
        });
    }
    Ok(EvalReport { step, languages })
}
