//! Differentiable building blocks, written from composite candle ops.
//!
//! candle-nn's fused `softmax_last_dim`, `layer_norm` and `rms_norm` have no backward pass and
//! silently drop gradients (see `shared/design/candle-traps.md`), so everything here is built
//! from ops that candle differentiates, to second order as the meta step needs.

use crate::error::Result;
use candle_core::{DType, Tensor, D};
use rand::Rng;

/// `x · wᵀ + b` for `x` of shape `[n, in]`, `w` of shape `[out, in]` (PyTorch layout).
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok(x.matmul(&w.t()?)?.broadcast_add(b)?)
}

/// LayerNorm over the last dimension, from mean and variance (biased, as PyTorch).
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centred.broadcast_div(&(var + eps)?.sqrt()?)?;
    Ok(normed.broadcast_mul(w)?.broadcast_add(b)?)
}

/// Softmax over the last dimension (max-shifted, composite).
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::ops::softmax(x, D::Minus1)?)
}

/// The exact (erf) GELU.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    Ok(x.gelu_erf()?)
}

/// Inverted dropout with probability `p`, its mask drawn from `rng` on the host so that a run
/// is reproducible from its seed; identity when `rng` is `None` or `p == 0`.
pub fn dropout<R: Rng + ?Sized>(x: &Tensor, p: f64, rng: Option<&mut R>) -> Result<Tensor> {
    let Some(rng) = rng else { return Ok(x.clone()) };
    if p == 0.0 {
        return Ok(x.clone());
    }
    let scale = 1.0 / (1.0 - p);
    let keep: Vec<f32> = (0..x.elem_count()).map(|_| if rng.random_bool(p) { 0.0 } else { scale as f32 }).collect();
    let mask = Tensor::from_vec(keep, x.shape(), x.device())?.to_dtype(x.dtype())?;
    Ok((x * mask)?)
}

/// Mean cross-entropy of `logits` `[n, vocab]` against `targets` `[n]` (u32), in f32 or f64.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let logits = if logits.dtype() == DType::F64 { logits.clone() } else { logits.to_dtype(DType::F32)? };
    Ok(candle_nn::loss::cross_entropy(&logits, targets)?)
}
