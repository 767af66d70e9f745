//! The exact (erf) GELU, element-wise; the bias before it is added inside the fused linear map.

use super::cpu::{float_dispatch, multiversion, par_written, slice, Float};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};
use std::mem::MaybeUninit;

/// Elements per task.
const CHUNK: usize = 4096;

/// `x·Φ(x)` with `Φ` the standard normal distribution function.
pub(crate) struct Gelu;

multiversion! {
    /// `y = x·Φ(x)` element by element.
    fn gelu_chunk<T>(y: &mut [MaybeUninit<T>], x: &[T]) {
        let (half, rsqrt2) = (T::from_f64(0.5), T::from_f64(std::f64::consts::FRAC_1_SQRT_2));
        for (y, &x) in y.iter_mut().zip(x) {
            y.write(half * x * (T::one() + (x * rsqrt2).erf()));
        }
    }
}

multiversion! {
    /// `o = g · (Φ(x) + x·φ(x))` element by element.
    fn gelu_grad_chunk<T>(o: &mut [MaybeUninit<T>], x: &[T], g: &[T]) {
        let c = |v: f64| T::from_f64(v);
        let (half, rsqrt2, rsqrt2pi) = (c(0.5), c(std::f64::consts::FRAC_1_SQRT_2), c(0.3989422804014327));
        for ((o, &x), &g) in o.iter_mut().zip(x).zip(g) {
            let cdf = half * (T::one() + (x * rsqrt2).erf());
            let pdf = rsqrt2pi * (-half * x * x).exp_fast();
            o.write(g * (cdf + x * pdf));
        }
    }
}

fn forward<T: Float>(x: &[T]) -> Vec<T> {
    // SAFETY: `gelu_chunk` writes every element of its part (`x` is as long as the output).
    unsafe { par_written(x.len(), CHUNK, |start, y| gelu_chunk(y, &x[start..start + y.len()])) }
}

/// `g · (Φ(x) + x·φ(x))` (`g` is as long as `x`: checked by the caller).
fn backward<T: Float>(x: &[T], g: &[T]) -> Vec<T> {
    let write = |start: usize, o: &mut [MaybeUninit<T>]| {
        let span = start..start + o.len();
        gelu_grad_chunk(o, &x[span.clone()], &g[span]);
    };
    // SAFETY: `gelu_grad_chunk` writes every element of its part.
    unsafe { par_written(x.len(), CHUNK, write) }
}

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "fused-gelu"
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        float_dispatch!(x, self.name(), T => Ok((T::to_cpu_storage_owned(forward::<T>(slice(x, xl, self.name())?)), xl.shape().clone())))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        xl: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        Ok((super::cuda::gelu((x, xl))?, xl.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grads(x, g)?))
    }
}

/// `gelu(x)` without autograd (for hand-written backward passes).
pub(crate) fn apply(x: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1_no_bwd(&Gelu)
}

/// `dx` of `y = gelu(x)` given `g = dy`.
pub(crate) fn grads(x: &Tensor, g: &Tensor) -> candle_core::Result<Tensor> {
    x.apply_op2_no_bwd(&g.contiguous()?, &GeluGrad)
}

/// The GELU backward: `CustomOp2(x, g)`.
struct GeluGrad;

impl CustomOp2 for GeluGrad {
    fn name(&self) -> &'static str {
        "fused-gelu-grad"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        g: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        same_dims(xl, gl, self.name())?;
        float_dispatch!(x, self.name(), T => Ok((
            T::to_cpu_storage_owned(backward::<T>(slice(x, xl, self.name())?, slice(g, gl, self.name())?)),
            xl.shape().clone(),
        )))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        xl: &Layout,
        g: &candle_core::CudaStorage,
        gl: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        same_dims(xl, gl, self.name())?;
        Ok((super::cuda::gelu_grads((x, xl), (g, gl))?, xl.shape().clone()))
    }
}

/// An error unless both layouts have the same dimensions.
fn same_dims(xl: &Layout, gl: &Layout, op: &str) -> candle_core::Result<()> {
    if xl.dims() != gl.dims() {
        return Err(candle_core::Error::Msg(format!("{op}: {:?} and {:?} differ", xl.dims(), gl.dims())));
    }
    Ok(())
}
