//! Mixed precision: bf16 matrix products over fp32 master weights.

use super::cpu::{multiversion, par_written, slice};
use crate::error::Result;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};
use serde::{Deserialize, Serialize};
use std::mem::MaybeUninit;

/// Elements per task of the CPU rounding.
const CHUNK: usize = 16_384;

/// The dtype of the model's matrix products (config key `precision`).
///
/// Under [`Precision::Bf16`] the operands of every matrix product — linear maps, attention
/// scores and context, the output projection — are rounded to bf16 (as `torch.autocast` does)
/// while LayerNorm, softmax, GELU, the residual stream and the cross-entropy are computed in
/// f32, and the parameters, their gradients and the optimiser state stay in the parameters'
/// dtype (fp32 master weights). The hand-written pass runs it on both devices, with products
/// of bf16 values accumulated in f32: on CUDA cuBLAS's bf16 products, on the CPU the f32
/// kernels on operands rounded to bf16 values (a product of two bf16 values is exact in f32, so
/// the two differ only in summation order). The reference ops cast differentiably to bf16 and
/// multiply with candle's bf16 products, so each gradient comes back in its parameter's dtype.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use interference::kernels::Precision;
/// let w = Tensor::new(&[1.0f32 + 1.0 / 1024.0], &Device::Cpu).unwrap();
/// let operand = Precision::Bf16.operand(&w).unwrap();
/// assert_eq!(operand.dtype(), DType::BF16);
/// // bf16 keeps 8 significant bits: 1 + 2^-10 rounds to 1.
/// assert_eq!(operand.to_dtype(DType::F32).unwrap().to_vec1::<f32>().unwrap(), vec![1.0]);
/// assert_eq!(Precision::Fp32.operand(&w).unwrap().dtype(), DType::F32);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// Everything in the parameters' dtype (f32 in training, f64 in gradient checks).
    #[default]
    Fp32,
    /// bf16 matrix products with f32 reductions and fp32 master weights.
    Bf16,
}

impl Precision {
    /// `t` as the operand of a matrix product of the reference ops: cast to bf16 under
    /// [`Precision::Bf16`] (differentiably), itself otherwise.
    pub fn operand(self, t: &Tensor) -> Result<Tensor> {
        match self {
            Precision::Bf16 if t.dtype() != DType::BF16 => Ok(t.to_dtype(DType::BF16)?),
            _ => Ok(t.clone()),
        }
    }

    /// `t` as the operand of a matrix product of the hand-written pass (no autograd): under
    /// [`Precision::Bf16`] an f32 CPU tensor comes back in f32 with its values rounded to bf16
    /// (the CPU kernels multiply f32), any other tensor cast to bf16 (cuBLAS reads bf16);
    /// itself otherwise.
    pub(crate) fn round(self, t: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Precision::Bf16 if t.device().is_cpu() && t.dtype() == DType::F32 => {
                t.contiguous()?.apply_op1_no_bwd(&RoundToBf16)
            }
            Precision::Bf16 if t.dtype() != DType::BF16 => t.to_dtype(DType::BF16),
            _ => Ok(t.clone()),
        }
    }
}

/// A matrix-product operand of the hand-written pass: a tensor rounded to the products'
/// precision once ([`Precision::round`]). The kernels take the operands that a pass keeps and
/// reads again in this type, as they are, and round what they are given as plain tensors
/// themselves (the gradients, and the attention's q, k and v, which the CUDA head-layout copy
/// rounds as it permutes): no kept operand is rounded twice, and nothing is multiplied
/// unrounded. It reads as the rounded tensor.
#[derive(Clone, Debug)]
pub(crate) struct Operand(Tensor);

impl Operand {
    /// `t` rounded to `p` (`t` itself under fp32).
    pub(crate) fn new(t: &Tensor, p: Precision) -> candle_core::Result<Self> {
        Ok(Operand(p.round(t)?))
    }

    /// `t` as it is, the operand of an fp32 product (the fused ops' autograd backward passes).
    pub(crate) fn exact(t: &Tensor) -> Self {
        Operand(t.clone())
    }

    /// Rows `start..start + len` of a matrix operand.
    pub(crate) fn rows(&self, start: usize, len: usize) -> candle_core::Result<Self> {
        Ok(Operand(self.0.narrow(0, start, len)?))
    }
}

impl std::ops::Deref for Operand {
    type Target = Tensor;

    fn deref(&self) -> &Tensor {
        &self.0
    }
}

/// `x` rounded to the nearest bf16 value (ties to even, as candle's and CUDA's casts round),
/// kept in f32; NaNs stay NaN and values past bf16's range round to ±∞.
fn bf16_value(x: f32) -> f32 {
    let bits = x.to_bits();
    let rounded = if x.is_nan() { bits | 0x0040_0000 } else { bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) };
    f32::from_bits(rounded & 0xffff_0000)
}

multiversion! {
    /// `y = bf16_value(x)` element by element (`T` is f32: the caller's dispatch).
    fn round_chunk<T>(y: &mut [MaybeUninit<f32>], x: &[f32]) {
        for (y, &x) in y.iter_mut().zip(x) {
            y.write(bf16_value(x));
        }
    }
}

/// The CPU half of [`Precision::round`]: f32 values rounded to bf16, in f32.
struct RoundToBf16;

impl CustomOp1 for RoundToBf16 {
    fn name(&self) -> &'static str {
        "round-to-bf16"
    }

    fn cpu_fwd(&self, x: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice::<f32>(x, l, self.name())?;
        let write = |start: usize, y: &mut [MaybeUninit<f32>]| round_chunk::<f32>(y, &x[start..start + y.len()]);
        // SAFETY: `round_chunk` writes every element of its part.
        let y = unsafe { par_written(x.len(), CHUNK, write) };
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }
}

/// `t` in f32 when it is in a half-precision dtype (bf16, f16), itself otherwise: where the
/// reference ops take reductions (LayerNorm, softmax, GELU, cross-entropy) and residual sums,
/// and where the kernels widen bf16 products.
pub(crate) fn wide(t: &Tensor) -> candle_core::Result<Tensor> {
    match t.dtype() {
        DType::BF16 | DType::F16 => t.to_dtype(DType::F32),
        _ => Ok(t.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn cpu_rounding_matches_the_bf16_cast() {
        let mut values: Vec<f32> = Tensor::randn(0f32, 1e3, 10_000, &Device::Cpu).unwrap().to_vec1().unwrap();
        // Ties both ways, subnormals, the largest finite f32 (past bf16's range), infinities.
        let bits = [0x3f80_8000u32, 0x3f81_8000, 0x0000_0001, 0x0080_8000, 0x7f7f_ffff, 0xff7f_ffff];
        values.extend(bits.map(f32::from_bits));
        values.extend([f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, 1.0 + 1.0 / 1024.0]);
        let t = Tensor::new(values.as_slice(), &Device::Cpu).unwrap();
        let ours = Precision::Bf16.round(&t).unwrap();
        assert_eq!(ours.dtype(), DType::F32);
        let cast = t.to_dtype(DType::BF16).unwrap().to_dtype(DType::F32).unwrap();
        let (ours, cast) = (ours.to_vec1::<f32>().unwrap(), cast.to_vec1::<f32>().unwrap());
        for ((o, c), v) in ours.iter().zip(&cast).zip(&values) {
            assert_eq!(o.to_bits(), c.to_bits(), "{v:e} ({:#x})", v.to_bits());
        }
        let nan = Precision::Bf16.round(&Tensor::new(&[f32::NAN], &Device::Cpu).unwrap()).unwrap();
        assert!(nan.to_vec1::<f32>().unwrap()[0].is_nan());
        assert_eq!(Precision::Fp32.round(&t).unwrap().to_vec1::<f32>().unwrap(), values);
    }
}
