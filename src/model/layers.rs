//! Differentiable building blocks, written from composite candle ops.
//!
//! candle-nn's fused `softmax_last_dim`, `layer_norm` and `rms_norm` have no backward pass and
//! silently drop gradients (see `shared/design/candle-traps.md`), so everything here is built
//! from ops that candle differentiates, to second order as the meta step needs.

use crate::error::{Error, Result};
use crate::kernels::wide;
use candle_core::{DType, Tensor, D};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// `x · wᵀ + b` for `x` of shape `[n, in]`, `w` of shape `[out, in]` (PyTorch layout).
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok(x.matmul(&w.t()?)?.broadcast_add(b)?)
}

/// LayerNorm over the last dimension, from mean and variance (biased, as PyTorch);
/// half-precision inputs are normalised in f32, and the result is f32.
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    let x = &wide(x)?;
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centred.broadcast_div(&(var + eps)?.sqrt()?)?;
    Ok(normed.broadcast_mul(w)?.broadcast_add(b)?)
}

/// Softmax over the last dimension (max-shifted, composite); half-precision inputs are
/// exponentiated and summed in f32, and the result rounded back to their dtype.
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::ops::softmax(&wide(x)?, D::Minus1)?.to_dtype(x.dtype())?)
}

/// Multi-head scaled dot-product attention over sequences of `seq` tokens: `q`, `k`, `v` are
/// `[batch·seq, d]` with the heads side by side along `d`; keys flagged in `padded`
/// (`[batch·seq]`) are masked with −1e9. Returns the context `[batch·seq, d]`.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    seq: usize,
    padded: Option<&[bool]>,
) -> Result<Tensor> {
    let (n, d) = q.dims2()?;
    if heads == 0 || d % heads != 0 {
        return Err(Error::Shape(format!("width {d} is not divisible by {heads} heads")));
    }
    if seq == 0 || n % seq != 0 {
        return Err(Error::Shape(format!("{n} rows do not hold whole sequences of {seq}")));
    }
    let (b, s) = (n / seq, seq);
    let dh = d / heads;
    let split = |t: &Tensor| -> Result<Tensor> { Ok(t.reshape((b, s, heads, dh))?.transpose(1, 2)?.contiguous()?) };
    let (q, k, v) = (split(q)?, split(k)?, split(v)?);
    let mut scores = q.matmul(&k.t()?)?.affine(1.0 / (dh as f64).sqrt(), 0.0)?;
    if let Some(padded) = padded {
        if padded.len() != b * s {
            return Err(Error::Shape(format!("{} padding flags for {b} sequences of {s}", padded.len())));
        }
        let values: Vec<f32> = padded.iter().map(|&p| if p { -1e9 } else { 0.0 }).collect();
        let mask = Tensor::from_vec(values, (b, 1, 1, s), q.device())?.to_dtype(q.dtype())?;
        scores = scores.broadcast_add(&mask)?;
    }
    Ok(softmax(&scores)?.matmul(&v)?.transpose(1, 2)?.reshape((n, d))?)
}

/// The exact (erf) GELU, `x/2 · (1 + erf(x/√2))`, composed from `erf` rather than candle's
/// `gelu_erf`, whose backward rounds 1/√(2π) to 0.398942 (a relative gradient error of 7e-7).
/// Half-precision inputs are computed in f32 and the result rounded back to their dtype.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    let w = wide(x)?;
    Ok(((&w * 0.5)? * ((&w * std::f64::consts::FRAC_1_SQRT_2)?.erf()? + 1.0)?)?.to_dtype(x.dtype())?)
}

/// Inverted dropout with probability `p`; identity when `rng` is `None` or `p == 0`.
///
/// The masks are reproducible from `rng`: on the CPU they are drawn from it directly; on a GPU
/// the device generator is re-seeded from it and draws the mask there (so a CPU run and a GPU
/// run of the same seed use different, equally valid masks).
pub fn dropout(x: &Tensor, p: f64, rng: Option<&mut ChaCha8Rng>) -> Result<Tensor> {
    match dropout_mask(x, p, rng)? {
        // A half-precision input is scaled in f32 (1/(1−p) is not exact in bf16), then rounded.
        Some(keep) => Ok((wide(x)? * keep)?.to_dtype(x.dtype())?),
        None => Ok(x.clone()),
    }
}

/// The mask of [`dropout`] for a tensor like `x`: `0` or `1/(1−p)` per element, in `x`'s
/// dtype (f32 for a half-precision `x`); `None` when dropout is off.
pub fn dropout_mask(x: &Tensor, p: f64, rng: Option<&mut ChaCha8Rng>) -> Result<Option<Tensor>> {
    let Some(rng) = rng else { return Ok(None) };
    if p == 0.0 {
        return Ok(None);
    }
    let scale = 1.0 / (1.0 - p);
    let keep = if x.device().is_cpu() {
        Tensor::from_vec(cpu_keep_mask(x.elem_count(), p, scale as f32, rng), x.shape(), x.device())?
    } else {
        crate::kernels::dropout::keep_mask(x.shape(), p, rng.random(), x.device())?
    };
    Ok(Some(keep.to_dtype(wide(x)?.dtype())?))
}

/// `len` draws of `0` (probability `p`) or `scale`, one 32-bit word of `rng` each, in
/// parallel: each task reads its own words of the stream (ChaCha seeks), so the mask is the
/// one a sequential fill would give, and `rng` ends past all `len` words.
fn cpu_keep_mask(len: usize, p: f64, scale: f32, rng: &mut ChaCha8Rng) -> Vec<f32> {
    use rayon::prelude::*;
    const CHUNK: usize = 16_384;
    let threshold = (p * 4_294_967_296.0) as u64;
    let base = rng.get_word_pos();
    let mut keep = vec![0f32; len];
    keep.par_chunks_mut(CHUNK).enumerate().for_each(|(i, out)| {
        let mut words = [0u32; CHUNK];
        let words = &mut words[..out.len()];
        let mut stream = rng.clone();
        stream.set_word_pos(base + (i * CHUNK) as u128);
        stream.fill(words);
        for (k, &w) in out.iter_mut().zip(words.iter()) {
            *k = if (w as u64) < threshold { 0.0 } else { scale };
        }
    });
    rng.set_word_pos(base + len as u128);
    keep
}

/// Mean cross-entropy of `logits` `[n, vocab]` against `targets` `[n]` (u32), in f32 or f64.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let logits = if logits.dtype() == DType::F64 { logits.clone() } else { logits.to_dtype(DType::F32)? };
    Ok(candle_nn::loss::cross_entropy(&logits, targets)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn parallel_keep_mask_is_the_sequential_draw() {
        let (p, scale, len) = (0.3, 1.0 / 0.7, 40_001);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let _: u32 = rng.random(); // start mid-stream
        let mut sequential = rng.clone();
        let mask = cpu_keep_mask(len, p, scale as f32, &mut rng);
        let mut words = vec![0u32; len];
        sequential.fill(&mut words[..]);
        let threshold = (p * 4_294_967_296.0) as u64;
        let expected: Vec<f32> =
            words.iter().map(|&w| if (w as u64) < threshold { 0.0 } else { scale as f32 }).collect();
        assert_eq!(mask, expected);
        // Both streams go on from the same word.
        assert_eq!(rng.random::<u64>(), sequential.random::<u64>());
        let dropped = mask.iter().filter(|&&k| k == 0.0).count() as f64 / len as f64;
        assert!((dropped - p).abs() < 0.01, "dropped {dropped}");
    }
}
