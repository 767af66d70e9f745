//! The model's hyper-parameters.

use crate::error::{Error, Result};
use crate::lang::LangSet;
use serde::{Deserialize, Serialize};

/// Shape of a post-LayerNorm transformer MLM (XLM style).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Vocabulary size (the shared tokenizer's, specials included). In a run config it may be
    /// left out (0): the run fills it from the tokenizer.
    #[serde(default)]
    pub vocab_size: usize,
    /// Hidden width d.
    pub d_model: usize,
    /// Number of transformer blocks.
    pub layers: usize,
    /// Attention heads (must divide `d_model`).
    pub heads: usize,
    /// Inner width of the feed-forward block.
    pub d_ff: usize,
    /// Longest sequence the position embedding covers.
    pub max_len: usize,
    /// Dropout probability on embeddings, attention output and feed-forward output.
    #[serde(default = "default_dropout")]
    pub dropout: f64,
    /// Add a learned language embedding to every position.
    #[serde(default)]
    pub lang_embeddings: bool,
    /// Bottleneck size r of the language-specific adapters; 0 means no adapters.
    #[serde(default)]
    pub adapter_bottleneck: usize,
    /// The languages the model knows (language embeddings and adapters follow this order).
    /// In a run config it may be left out: the run fills it from the data.
    #[serde(default)]
    pub languages: LangSet,
    /// LayerNorm epsilon.
    #[serde(default = "default_ln_eps")]
    pub ln_eps: f64,
}

fn default_dropout() -> f64 {
    0.1
}

fn default_ln_eps() -> f64 {
    1e-12
}

impl ModelConfig {
    /// Checks sizes and probabilities; every failure names the value.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("d_model", self.d_model),
            ("layers", self.layers),
            ("heads", self.heads),
            ("d_ff", self.d_ff),
            ("max_len", self.max_len),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(Error::Config(format!("model {name} must be positive")));
        }
        if self.d_model % self.heads != 0 {
            return Err(Error::Config(format!("d_model {} is not divisible by heads {}", self.d_model, self.heads)));
        }
        if !(self.dropout.is_finite() && (0.0..1.0).contains(&self.dropout)) {
            return Err(Error::Config(format!("dropout must be in [0, 1), got {}", self.dropout)));
        }
        if !(self.ln_eps.is_finite() && self.ln_eps > 0.0) {
            return Err(Error::Config(format!("ln_eps must be positive, got {}", self.ln_eps)));
        }
        if self.languages.is_empty() {
            return Err(Error::Config("model needs at least one language".into()));
        }
        Ok(())
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.heads
    }

    /// Whether the model has language-specific adapters.
    pub fn has_adapters(&self) -> bool {
        self.adapter_bottleneck > 0
    }
}
