//! Masked-language-model batches: rows of packed sentences with BERT-style masking.

use crate::error::{Error, Result};
use crate::lang::Lang;
use crate::tokenize::SpecialIds;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// One language's MLM batch, ready for the model: masked input ids and the prediction targets.
#[derive(Clone, Debug, PartialEq)]
pub struct MlmBatch {
    /// The language of every row.
    pub lang: Lang,
    /// Number of rows (sequences).
    pub rows: usize,
    /// Sequence length.
    pub cols: usize,
    /// Input ids after masking, row-major `rows × cols`.
    pub tokens: Vec<u32>,
    /// Flat indices `row * cols + col` of the positions to predict.
    pub positions: Vec<u32>,
    /// The original id at each predicted position.
    pub targets: Vec<u32>,
    /// The padding id when some position holds padding (the model then masks attention to
    /// those positions); `None` when every position is a real token.
    pub pad: Option<u32>,
}

/// How tokens are chosen and corrupted: each non-special token is chosen with probability
/// `select`; a chosen token becomes `[MASK]` with probability `mask`, a random non-special
/// token with probability `random`, and stays itself otherwise (BERT: 0.15, 0.8, 0.1).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaskingConfig {
    /// Share of tokens chosen for prediction.
    pub select: f64,
    /// Share of chosen tokens replaced by `[MASK]`.
    pub mask: f64,
    /// Share of chosen tokens replaced by a random token.
    pub random: f64,
}

impl Default for MaskingConfig {
    fn default() -> Self {
        MaskingConfig { select: 0.15, mask: 0.8, random: 0.1 }
    }
}

impl MaskingConfig {
    /// Checks that the shares are probabilities and `mask + random ≤ 1`.
    pub fn validate(&self) -> Result<()> {
        let ok = |p: f64| p.is_finite() && (0.0..=1.0).contains(&p);
        if !(ok(self.select) && self.select > 0.0 && ok(self.mask) && ok(self.random) && self.mask + self.random <= 1.0)
        {
            return Err(Error::Config(format!("invalid masking shares {self:?}")));
        }
        Ok(())
    }
}

/// Builds MLM rows from tokenised sentences and masks them.
#[derive(Clone, Debug)]
pub struct MlmMasker {
    config: MaskingConfig,
    specials: SpecialIds,
    vocab_size: u32,
    first_regular: u32,
}

impl MlmMasker {
    /// A masker for a vocabulary of `vocab_size` ids whose special ids are `specials`.
    pub fn new(config: MaskingConfig, specials: SpecialIds, vocab_size: usize) -> Result<Self> {
        config.validate()?;
        let first_regular =
            [specials.pad, specials.unk, specials.cls, specials.sep, specials.mask].into_iter().max().unwrap_or(0) + 1;
        if vocab_size as u32 <= first_regular {
            return Err(Error::Config(format!("vocabulary of {vocab_size} ids has no regular tokens")));
        }
        Ok(MlmMasker { config, specials, vocab_size: vocab_size as u32, first_regular })
    }

    /// The special ids this masker uses.
    pub fn specials(&self) -> SpecialIds {
        self.specials
    }

    /// Packs one row of `cols` ids: `[CLS] s_i [SEP] s_{i+1} [SEP] …` starting at sentence
    /// `start` and wrapping around the corpus, truncated to `cols`. With `wrap == false` it stops
    /// at the corpus end and pads; it returns the index of the next unused sentence.
    pub fn pack_row(&self, sentences: &[Vec<u32>], start: usize, cols: usize, wrap: bool, out: &mut Vec<u32>) -> usize {
        let begin = out.len();
        out.push(self.specials.cls);
        let mut i = start;
        let mut used = 0;
        while out.len() - begin < cols && (wrap || i < sentences.len()) && used < sentences.len() {
            let s = &sentences[i % sentences.len()];
            let room = cols - (out.len() - begin);
            out.extend(s.iter().take(room));
            if out.len() - begin < cols {
                out.push(self.specials.sep);
            }
            i += 1;
            used += 1;
        }
        out.resize(begin + cols, self.specials.pad);
        i
    }

    /// Masks packed rows in place (`tokens` is `rows × cols`) and returns the batch.
    /// At least one position is always chosen, so every batch has a loss.
    pub fn mask<R: Rng + ?Sized>(
        &self,
        lang: Lang,
        mut tokens: Vec<u32>,
        cols: usize,
        rng: &mut R,
    ) -> Result<MlmBatch> {
        if cols == 0 || tokens.is_empty() || tokens.len() % cols != 0 {
            return Err(Error::Shape(format!("{} ids do not make rows of {cols}", tokens.len())));
        }
        let candidates: Vec<usize> =
            (0..tokens.len()).filter(|&i| tokens[i] >= self.first_regular || tokens[i] == self.specials.unk).collect();
        if candidates.is_empty() {
            return Err(Error::Shape(format!("batch of {lang} has no regular tokens to mask")));
        }
        let mut chosen: Vec<usize> =
            candidates.iter().copied().filter(|_| rng.random_bool(self.config.select)).collect();
        if chosen.is_empty() {
            chosen.push(candidates[rng.random_range(0..candidates.len())]);
        }
        let mut targets = Vec::with_capacity(chosen.len());
        for &i in &chosen {
            targets.push(tokens[i]);
            let u: f64 = rng.random();
            if u < self.config.mask {
                tokens[i] = self.specials.mask;
            } else if u < self.config.mask + self.config.random {
                tokens[i] = rng.random_range(self.first_regular..self.vocab_size);
            }
        }
        let pad = tokens.contains(&self.specials.pad).then_some(self.specials.pad);
        Ok(MlmBatch {
            lang,
            rows: tokens.len() / cols,
            cols,
            tokens,
            positions: chosen.into_iter().map(|i| i as u32).collect(),
            targets,
            pad,
        })
    }
}

/// The JSON form of an [`MlmBatch`] used by `interference grads`:
/// `{"tokens": [[id, …], …], "lang": "en", "positions": [[row, col], …], "targets": [id, …]}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlmBatchJson {
    /// Input ids, one list per row, all rows the same length.
    pub tokens: Vec<Vec<u32>>,
    /// The language code.
    pub lang: Lang,
    /// `[row, col]` of each predicted position.
    pub positions: Vec<[usize; 2]>,
    /// The target id at each position.
    pub targets: Vec<u32>,
}

impl MlmBatchJson {
    /// Validates shapes and ids against a vocabulary and converts to an [`MlmBatch`].
    pub fn into_batch(self, vocab_size: usize, pad: u32) -> Result<MlmBatch> {
        let rows = self.tokens.len();
        let cols = self.tokens.first().map_or(0, Vec::len);
        if rows == 0 || cols == 0 {
            return Err(Error::Shape("batch has no tokens".into()));
        }
        if let Some((r, row)) = self.tokens.iter().enumerate().find(|(_, row)| row.len() != cols) {
            return Err(Error::Shape(format!("row {r} has {} tokens, row 0 has {cols}", row.len())));
        }
        if self.positions.len() != self.targets.len() || self.positions.is_empty() {
            return Err(Error::Shape(format!(
                "{} positions but {} targets (need the same, at least one)",
                self.positions.len(),
                self.targets.len()
            )));
        }
        let tokens: Vec<u32> = self.tokens.into_iter().flatten().collect();
        if let Some(id) = tokens.iter().chain(&self.targets).find(|&&id| id as usize >= vocab_size) {
            return Err(Error::Shape(format!("token id {id} is outside the vocabulary of {vocab_size}")));
        }
        let mut positions = Vec::with_capacity(self.positions.len());
        for [r, c] in self.positions {
            if r >= rows || c >= cols {
                return Err(Error::Shape(format!("position [{r}, {c}] is outside the {rows}×{cols} batch")));
            }
            positions.push((r * cols + c) as u32);
        }
        let pad = tokens.contains(&pad).then_some(pad);
        Ok(MlmBatch { lang: self.lang, rows, cols, tokens, positions, targets: self.targets, pad })
    }
}
