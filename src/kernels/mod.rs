//! The model's hot operations, in two interchangeable implementations.
//!
//! - [`Kernels::Reference`]: composite candle ops (`crate::model::layers`), differentiable to
//!   any order — the meta step's exact second-order gradient needs them.
//! - [`Kernels::Fused`]: one op per step of the layer with a hand-written backward
//!   (candle `CustomOp`s): linear map with its bias, attention laid out without transposed
//!   copies (scores, mask and softmax in one pass), residual + LayerNorm, GELU, and the masked
//!   cross-entropy. First-order only. On this path the model also skips candle's autograd
//!   ([`crate::model::MlmModel::loss_and_grads`]): residual and gradient sums and dropout
//!   masks take one pass each on rayon's pool (`elementwise`), languages' adapters over a
//!   merged batch are grouped linear maps, and the optimiser (in place), gradient clipping and
//!   the probes' Gram matrices take one pass per tensor (`adamw`, `gram`).
//!
//! The fused ops run where they can — f32 or f64 on the CPU, while candle's second-order
//! switch ([`crate::grads::SECOND_ORDER_SWITCH`]) is off — and every call falls back to the
//! reference ops elsewhere (other dtypes), so choosing `Fused` is always safe. The
//! element-wise loops are compiled three times, for AVX-512, for AVX2+FMA and for the
//! baseline, and chosen at run time (`cpu::multiversion!`).
//!
//! On CUDA (the `cuda` feature) the hand-written pass runs on f32 parameters: its matrix
//! products are cuBLAS's (through candle; bf16 operands under [`Precision::Bf16`]) and the
//! other ops are the kernels of `cuda.cu` (`cuda.rs` launches them): LayerNorm and its
//! backward, GELU, the attention softmax, the cross-entropy, rows scattered by index, head
//! layouts, bias adds, dropout masks (`dropout`), sums of squares and AdamW over all tensors
//! in one launch. On the CPU, [`Precision::Bf16`] runs the f32 kernels on operands rounded to
//! bf16 values (`Precision::round`): products of bf16 values accumulated in f32, as cuBLAS
//! computes them.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use interference::kernels::Kernels;
//! let dev = Device::Cpu;
//! let x = Tensor::new(&[[1f32, 2., 3.], [0., -1., 4.]], &dev).unwrap();
//! let (w, b) = (Tensor::ones(3, DType::F32, &dev).unwrap(), Tensor::zeros(3, DType::F32, &dev).unwrap());
//! let fused = Kernels::Fused.layer_norm(&x, None, &w, &b, 1e-5).unwrap();
//! let reference = Kernels::Reference.layer_norm(&x, None, &w, &b, 1e-5).unwrap();
//! let gap = (fused - reference).unwrap().abs().unwrap().max_all().unwrap();
//! assert!(gap.to_scalar::<f32>().unwrap() < 1e-6);
//! ```

pub(crate) mod adamw;
pub(crate) mod attention;
mod cpu;
pub(crate) mod cross_entropy;
#[cfg(feature = "cuda")]
mod cuda;
pub(crate) mod dropout;
pub(crate) mod elementwise;
pub(crate) mod gelu;
pub(crate) mod gram;
pub(crate) mod linear;
pub(crate) mod norm;
mod precision;
pub(crate) mod rows;

pub use precision::Precision;
pub(crate) use precision::{wide, Operand};

use crate::error::Result;
use crate::grads::SECOND_ORDER_SWITCH;
use crate::model::layers;
use candle_core::{Tensor, D};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Which implementation of the hot operations a model runs (config key `kernels`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kernels {
    /// Composite candle ops, differentiable to any order.
    Reference,
    /// Fused ops (CPU; CUDA in the hand-written pass) with hand-written first-order backward
    /// passes (the default).
    #[default]
    Fused,
}

/// Whether `t` is what the CUDA kernels take: an f32 tensor on a GPU, in a build with the
/// `cuda` feature.
pub(crate) fn cuda_f32(t: &Tensor) -> bool {
    cfg!(feature = "cuda") && t.device().is_cuda() && t.dtype() == candle_core::DType::F32
}

/// Whether candle keeps the graph of gradients (second order), which fused ops cannot follow.
fn second_order_on() -> bool {
    std::env::var(SECOND_ORDER_SWITCH).is_ok_and(|s| !s.is_empty() && s != "0")
}

impl Kernels {
    /// Whether the fused ops run for inputs like `t` (else the reference ops do).
    pub fn fused_for(self, t: &Tensor) -> bool {
        self == Kernels::Fused && t.device().is_cpu() && cpu::supported(t.dtype()) && !second_order_on()
    }

    /// Whether the hand-written forward and backward pass of the fused kernels runs for
    /// parameters like `t` ([`crate::model::MlmModel::loss_and_grads`]). It builds no autograd
    /// graph, so unlike [`Kernels::fused_for`] it runs whether or not candle keeps second-order
    /// graphs.
    pub fn hand_written_for(self, t: &Tensor) -> bool {
        let supported = (t.device().is_cpu() && cpu::supported(t.dtype())) || cuda_f32(t);
        self == Kernels::Fused && supported
    }

    /// `x · wᵀ + b` for `x` `[n, in]`, `w` `[out, in]` (PyTorch layout), `b` `[out]`.
    pub fn linear(self, x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
        if !self.fused_for(x) {
            return layers::linear(x, w, b);
        }
        Ok(x.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, linear::Linear)?)
    }

    /// LayerNorm over the last dimension of `x`, or of `x + residual`, with scale `w` and shift `b`.
    pub fn layer_norm(self, x: &Tensor, residual: Option<&Tensor>, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
        if !self.fused_for(x) || residual.is_some_and(|r| r.dtype() != x.dtype()) {
            // Half-precision inputs are normalised in f32 (and the result stays f32).
            let sum = match residual {
                Some(r) => (wide(x)? + wide(r)?)?,
                None => wide(x)?,
            };
            return layers::layer_norm(&sum, w, b, eps);
        }
        let wb = Tensor::stack(&[w, b], 0)?;
        let op = norm::LayerNorm { eps };
        Ok(match residual {
            Some(r) => x.contiguous()?.apply_op3(&r.contiguous()?, &wb, op)?,
            None => x.contiguous()?.apply_op2(&wb, op)?,
        })
    }

    /// The exact (erf) GELU.
    pub fn gelu(self, x: &Tensor) -> Result<Tensor> {
        if !self.fused_for(x) {
            return layers::gelu(x);
        }
        Ok(x.contiguous()?.apply_op1(gelu::Gelu)?)
    }

    /// Mean cross-entropy of `logits` `[n, vocab]` against `targets` `[n]` (u32).
    pub fn cross_entropy(self, logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
        if !self.fused_for(logits) {
            return layers::cross_entropy(logits, targets);
        }
        Ok(logits.contiguous()?.apply_op2(&targets.contiguous()?, cross_entropy::CrossEntropy)?)
    }

    /// Multi-head scaled dot-product attention over sequences of `seq` tokens: `q`, `k`, `v`
    /// are `[batch·seq, d]` with the heads side by side along `d`; keys flagged in `padded`
    /// (`[batch·seq]`) are masked out. The context comes back as `[batch·seq, d]`.
    pub fn attention(
        self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        heads: usize,
        seq: usize,
        padded: Option<&[bool]>,
    ) -> Result<Tensor> {
        if !self.fused_for(q) {
            return layers::attention(q, k, v, heads, seq, padded);
        }
        let padded = padded.map(|p| Arc::new(p.to_vec()));
        let op = attention::Probabilities::new(heads, seq, q.dim(D::Minus1)?, padded);
        let probs = q.contiguous()?.apply_op2(&k.contiguous()?, op)?;
        let product = attention::HeadProduct { product: attention::Product::Context, heads, seq };
        Ok(probs.apply_op2(&v.contiguous()?, product)?)
    }
}
