//! Fixed probe batches: the same masked batches of every language, for every probe of a run.

use crate::batch::{MaskingConfig, MlmBatch, MlmMasker};
use crate::error::{Error, Result};
use crate::lang::LangSet;
use crate::rng::{stream, Purpose};
use crate::train::MlmData;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// How probe batches are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeBatchConfig {
    /// Batches per language (K); results are averaged over them, with their spread.
    pub batches: usize,
    /// Sequences per batch.
    pub batch_size: usize,
    /// Tokens per sequence.
    pub seq_len: usize,
    /// Seed of the sentence choice and masks (fixed: every probe sees the same batches).
    pub seed: u64,
    /// Draw from the held-out text (true) or the training text.
    pub held_out: bool,
}

impl Default for ProbeBatchConfig {
    fn default() -> Self {
        ProbeBatchConfig { batches: 4, batch_size: 16, seq_len: 64, seed: 0, held_out: true }
    }
}

/// `batches[l][k]`: the k-th probe batch of language l.
#[derive(Clone, Debug)]
pub struct ProbeBatches {
    langs: LangSet,
    batches: Vec<Vec<MlmBatch>>,
}

impl ProbeBatches {
    /// Draws `config.batches` batches per language of `data`, with the default MLM masking.
    pub fn new(data: &MlmData, config: &ProbeBatchConfig) -> Result<Self> {
        if config.batches == 0 || config.batch_size == 0 || config.seq_len < 3 {
            return Err(Error::Config(format!(
                "probe batches need batches, batch_size ≥ 1 and seq_len ≥ 3: {config:?}"
            )));
        }
        let masker = MlmMasker::new(MaskingConfig::default(), data.specials(), data.vocab_size())?;
        let mut batches = Vec::with_capacity(data.langs().len());
        for (li, lang) in data.langs().iter().enumerate() {
            let sentences = if config.held_out { data.valid(li) } else { data.train(li) };
            let mut per_lang = Vec::with_capacity(config.batches);
            for k in 0..config.batches {
                // Keyed by k alone: languages with identical text get identical batches.
                let mut rng = stream(config.seed, Purpose::Eval, k as u64);
                let mut tokens = Vec::with_capacity(config.batch_size * config.seq_len);
                for _ in 0..config.batch_size {
                    let start = rng.random_range(0..sentences.len());
                    masker.pack_row(sentences, start, config.seq_len, true, &mut tokens);
                }
                per_lang.push(masker.mask(lang.clone(), tokens, config.seq_len, &mut rng)?);
            }
            batches.push(per_lang);
        }
        Ok(ProbeBatches { langs: data.langs().clone(), batches })
    }

    /// The languages, in order.
    pub fn langs(&self) -> &LangSet {
        &self.langs
    }

    /// Number of batches per language.
    pub fn per_language(&self) -> usize {
        self.batches.first().map_or(0, Vec::len)
    }

    /// The batches of language `l`.
    pub fn of(&self, l: usize) -> &[MlmBatch] {
        &self.batches[l]
    }
}
