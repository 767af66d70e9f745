//! Training hyper-parameters.

use super::optim::AdamWConfig;
use crate::batch::MaskingConfig;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// How a training step turns batches into an update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// All parameters shared; one loss over the languages of the step (XLM, mBERT).
    Joint,
    /// Joint training of shared layers and language-specific adapters together.
    Adapters,
}

/// Everything that shapes a training run besides the model and the data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// The training method.
    pub method: Method,
    /// Number of optimiser steps.
    pub steps: usize,
    /// Sequences per step, shared among languages by temperature sampling.
    pub batch_size: usize,
    /// Tokens per sequence (`[CLS]` and `[SEP]` included).
    pub seq_len: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warm-up steps before linear decay to zero.
    pub warmup_steps: usize,
    /// Global gradient-norm clipping threshold (0 turns clipping off).
    pub clip_norm: f64,
    /// AdamW moments and weight decay.
    pub adamw: AdamWConfig,
    /// Temperature exponent α of language sampling, p_l ∝ n_l^α.
    pub alpha: f64,
    /// Seed of every random draw of the run (init, batches, masks, dropout).
    pub seed: u64,
    /// MLM masking shares.
    pub masking: MaskingConfig,
    /// Evaluate every this many steps (0: only at the end).
    pub eval_every: usize,
    /// At most this many held-out batches per language in an evaluation (0: all).
    pub eval_batches: usize,
    /// Save a checkpoint every this many steps when the trainer has a checkpoint folder
    /// (0: only at the end).
    pub checkpoint_every: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            method: Method::Joint,
            steps: 1000,
            batch_size: 32,
            seq_len: 64,
            lr: 5e-4,
            warmup_steps: 100,
            clip_norm: 1.0,
            adamw: AdamWConfig::default(),
            alpha: 0.5,
            seed: 0,
            masking: MaskingConfig::default(),
            eval_every: 0,
            eval_batches: 0,
            checkpoint_every: 0,
        }
    }
}

impl TrainConfig {
    /// Checks sizes and rates; every failure names the value.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 || self.seq_len < 3 {
            return Err(Error::Config(format!(
                "batch_size must be ≥ 1 and seq_len ≥ 3, got {} and {}",
                self.batch_size, self.seq_len
            )));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::Config(format!("lr must be positive, got {}", self.lr)));
        }
        if !(self.clip_norm.is_finite() && self.clip_norm >= 0.0) {
            return Err(Error::Config(format!("clip_norm must be ≥ 0, got {}", self.clip_norm)));
        }
        let a = self.adamw;
        if !((0.0..1.0).contains(&a.beta1) && (0.0..1.0).contains(&a.beta2) && a.eps > 0.0 && a.weight_decay >= 0.0) {
            return Err(Error::Config(format!("invalid AdamW settings {a:?}")));
        }
        self.masking.validate()
    }
}
