//! Training hyper-parameters.

use super::optim::AdamWConfig;
use crate::batch::MaskingConfig;
use crate::error::{Error, Result};
use crate::kernels::{Kernels, Precision};
use serde::{Deserialize, Serialize};

/// How a training step turns batches into an update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// All parameters shared; one loss over the languages of the step (XLM, mBERT).
    Joint,
    /// Joint training of shared layers and language-specific adapters together.
    Adapters,
    /// The treatment: adapters trained as meta-parameters by a one-step look-ahead
    /// (bilevel, second order) so that the shared layers generalise on all languages.
    Meta,
    /// PCGrad: each language's shared gradient loses its component along any other
    /// language's gradient it conflicts with (negative inner product).
    Pcgrad,
    /// GradVac: each language's shared gradient is aligned towards a moving-average cosine
    /// target with every other language's.
    Gradvac,
}

impl Method {
    /// The method's name as configs spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Method::Joint => "joint",
            Method::Adapters => "adapters",
            Method::Meta => "meta",
            Method::Pcgrad => "pcgrad",
            Method::Gradvac => "gradvac",
        }
    }
}

/// How the meta step differentiates through the look-ahead θ′ = θ − α∇θ L_train(θ, φ).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetaOrder {
    /// Exact double backpropagation (candle with `CANDLE_GRAD_DO_NOT_DETACH=1`, see
    /// [`crate::grads::enable_second_order`]).
    Exact,
    /// The mixed Hessian–vector product by central finite differences: two extra gradient
    /// evaluations at θ ± εv, no second-order graph.
    FiniteDifference,
    /// Drop the second-order term (θ′ treated as a constant): an ablation.
    FirstOrder,
}

/// Settings of the meta step (method `meta`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetaConfig {
    /// How the meta-gradient is differentiated through the look-ahead.
    pub order: MetaOrder,
    /// Step size α of the look-ahead θ′ = θ − α∇θ.
    pub inner_lr: f64,
    /// Peak learning rate of the adapters' own AdamW (same schedule as the shared one).
    pub lr: f64,
    /// Global-norm clipping of the adapters' meta-gradient (0: off).
    pub clip_norm: f64,
    /// Training sentences per language held apart as the meta split (not validation).
    pub meta_sentences: usize,
    /// Sequences per language in the meta loss.
    pub meta_batch_size: usize,
    /// Sequences of the look-ahead batch (0: the training batch size). Default 8: the exact
    /// order keeps the look-ahead's whole backward graph for the second backward pass, and a
    /// full batch of 32 × 128 tokens at d=256 needed over 20 GB on the CPU (see BENCHMARKS.md).
    pub lookahead_batch_size: usize,
    /// Also update the sampled language's adapters in the shared step.
    pub update_adapters_in_shared_step: bool,
    /// Finite-difference radius: ε = fd_radius / ‖v‖ (finite-difference order only).
    pub fd_radius: f64,
}

impl Default for MetaConfig {
    fn default() -> Self {
        MetaConfig {
            order: MetaOrder::Exact,
            inner_lr: 0.1,
            lr: 1e-3,
            clip_norm: 1.0,
            meta_sentences: 200,
            meta_batch_size: 4,
            lookahead_batch_size: 8,
            update_adapters_in_shared_step: false,
            fd_radius: 1e-2,
        }
    }
}

/// Over which parameter groups PCGrad and GradVac compare gradients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    /// All shared parameters as one vector.
    Model,
    /// Each part of the network (embeddings, each layer, output) on its own.
    Layer,
}

/// Settings of gradient surgery (methods `pcgrad` and `gradvac`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SurgeryConfig {
    /// Whole-model or per-layer projection.
    pub granularity: Granularity,
    /// GradVac's moving-average rate β of the cosine targets.
    pub gradvac_beta: f64,
}

impl Default for SurgeryConfig {
    fn default() -> Self {
        SurgeryConfig { granularity: Granularity::Model, gradvac_beta: 0.01 }
    }
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
    /// Settings of method `meta`.
    pub meta: MetaConfig,
    /// Settings of methods `pcgrad` and `gradvac`.
    pub surgery: SurgeryConfig,
    /// Implementation of the model's hot operations: `"fused"` (fast CPU and CUDA kernels, the
    /// default) or `"reference"` (composite candle ops). The exact meta step always runs the reference
    /// ops, which it differentiates twice ([`crate::kernels`]).
    pub kernels: Kernels,
    /// The dtype of the model's matrix products: `"fp32"` (the default) or `"bf16"` (mixed
    /// precision: bf16 products, f32 reductions, fp32 master weights; on CUDA the fused pass,
    /// on the CPU the reference ops, [`crate::kernels::Precision`]).
    pub precision: Precision,
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
            meta: MetaConfig::default(),
            surgery: SurgeryConfig::default(),
            kernels: Kernels::default(),
            precision: Precision::default(),
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
        let m = &self.meta;
        if !(m.inner_lr.is_finite() && m.inner_lr > 0.0 && m.lr.is_finite() && m.lr > 0.0 && m.fd_radius > 0.0) {
            return Err(Error::Config(format!("invalid meta settings {m:?}")));
        }
        if self.method == Method::Meta && (m.meta_sentences == 0 || m.meta_batch_size == 0) {
            return Err(Error::Config("meta needs meta_sentences and meta_batch_size ≥ 1".into()));
        }
        let beta = self.surgery.gradvac_beta;
        if !(beta > 0.0 && beta <= 1.0) {
            return Err(Error::Config(format!("gradvac_beta must be in (0, 1], got {beta}")));
        }
        self.masking.validate()
    }
}
