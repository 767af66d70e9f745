//! Mixed precision: bf16 matrix products over fp32 master weights.

use crate::error::Result;
use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

/// The dtype of the model's matrix products (config key `precision`).
///
/// Under [`Precision::Bf16`] the operands of every matrix product — linear maps, attention
/// scores and context, the output projection — are rounded to bf16 (as `torch.autocast` does)
/// while LayerNorm, softmax, GELU, the residual stream and the cross-entropy are computed in
/// f32, and the parameters, their gradients and the optimiser state stay in the parameters'
/// dtype (fp32 master weights): the rounding is a differentiable cast, so each gradient comes
/// back in its parameter's dtype. On CUDA the hand-written pass runs it (cuBLAS's bf16
/// products); on the CPU the reference ops (candle's bf16 products; the fused CPU kernels are
/// f32/f64 only).
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
    /// `t` as the operand of a matrix product: cast to bf16 under [`Precision::Bf16`]
    /// (differentiably), itself otherwise.
    pub fn operand(self, t: &Tensor) -> Result<Tensor> {
        Ok(self.round(t)?)
    }

    /// [`Precision::operand`] with candle's error, for the kernels.
    pub(crate) fn round(self, t: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Precision::Bf16 if t.dtype() != DType::BF16 => t.to_dtype(DType::BF16),
            _ => Ok(t.clone()),
        }
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
