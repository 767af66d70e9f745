//! Differentiable building blocks, written from composite candle ops.
//!
//! candle-nn's fused `softmax_last_dim`, `layer_norm` and `rms_norm` have no backward pass and
//! silently drop gradients (see `shared/design/candle-traps.md`), so everything here is built
//! from ops that candle differentiates, to second order as the meta step needs.

use crate::error::Result;
use candle_core::{DType, Tensor, D};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

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

/// Inverted dropout with probability `p`; identity when `rng` is `None` or `p == 0`.
///
/// The masks are reproducible from `rng`: on the CPU they are drawn from it directly; on a GPU
/// the device generator is re-seeded from it and draws the mask there (so a CPU run and a GPU
/// run of the same seed use different, equally valid masks).
pub fn dropout(x: &Tensor, p: f64, rng: Option<&mut ChaCha8Rng>) -> Result<Tensor> {
    let Some(rng) = rng else { return Ok(x.clone()) };
    if p == 0.0 {
        return Ok(x.clone());
    }
    let scale = 1.0 / (1.0 - p);
    let keep = if x.device().is_cpu() {
        let mut bits = vec![0u32; x.elem_count()];
        rng.fill(&mut bits[..]);
        let threshold = (p * 4_294_967_296.0) as u64;
        let values: Vec<f32> = bits.iter().map(|&b| if (b as u64) < threshold { 0.0 } else { scale as f32 }).collect();
        Tensor::from_vec(values, x.shape(), x.device())?
    } else {
        x.device().set_seed(rng.random())?;
        (Tensor::rand(0f32, 1f32, x.shape(), x.device())?.ge(p)?.to_dtype(DType::F32)? * scale)?
    };
    Ok((x * keep.to_dtype(x.dtype())?)?)
}

/// Mean cross-entropy of `logits` `[n, vocab]` against `targets` `[n]` (u32), in f32 or f64.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let logits = if logits.dtype() == DType::F64 { logits.clone() } else { logits.to_dtype(DType::F32)? };
    Ok(candle_nn::loss::cross_entropy(&logits, targets)?)
}
