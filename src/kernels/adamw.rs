//! One AdamW update of a parameter tensor in place, in two passes: the moments (stored
//! together as `[2, …]`) from the gradient, then θ from the moments.
//!
//! Composite candle ops take a dozen passes per tensor (one per op, each allocating); here
//! nothing is allocated, and the optimiser state is exactly the two moments.

use super::cpu::{float_dispatch, multiversion, slice, slice_mut};
use candle_core::{CpuStorage, InplaceOp2, Layout, Tensor};
use rayon::prelude::*;

/// Elements per task.
const CHUNK: usize = 16_384;

/// The scalars of one update (bias corrections and decay already folded in).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hyper {
    /// `lr / (1 − β1ᵗ)`.
    pub step: f64,
    pub beta1: f64,
    pub beta2: f64,
    /// `1 − β2ᵗ`.
    pub bc2: f64,
    pub eps: f64,
    /// What θ is multiplied by first: `1 − lr·weight_decay`, or 1.
    pub decay: f64,
    /// What the gradient is multiplied by first (gradient clipping), or 1.
    pub grad_scale: f64,
}

multiversion! {
    /// `m ← β1·m + (1−β1)·s·g`, `v ← β2·v + (1−β2)·(s·g)²` over one chunk.
    fn moments_chunk<T>(m: &mut [T], v: &mut [T], g: &[T], h: Hyper) {
        let c = |x: f64| T::from_f64(x);
        let (b1, b2, one_b1, one_b2, scale) = (c(h.beta1), c(h.beta2), c(1.0 - h.beta1), c(1.0 - h.beta2), c(h.grad_scale));
        for ((m, v), &g) in m.iter_mut().zip(v.iter_mut()).zip(g) {
            let g = g * scale;
            *m = *m * b1 + g * one_b1;
            *v = *v * b2 + g * g * one_b2;
        }
    }
}

multiversion! {
    /// `θ ← decay·θ − step·m / (√(v / bc2) + ε)` over one chunk.
    fn theta_chunk<T>(theta: &mut [T], m: &[T], v: &[T], h: Hyper) {
        let c = |x: f64| T::from_f64(x);
        let (bc2, eps, step, decay) = (c(h.bc2), c(h.eps), c(h.step), c(h.decay));
        for ((t, &m), &v) in theta.iter_mut().zip(m).zip(v) {
            *t = *t * decay - m * step / ((v / bc2).sqrt() + eps);
        }
    }
}

/// The first pass, `InplaceOp2(mv, g)`: the moments `[2, …]` from the gradient.
struct MomentsUpdate(Hyper);

/// The second pass, `InplaceOp2(θ, mv)`: θ from the updated moments.
struct ThetaUpdate(Hyper);

/// Checks that `mv` holds two moments of `n` elements each.
fn halves<'a, T>(mv: &'a [T], n: usize, op: &str) -> candle_core::Result<(&'a [T], &'a [T])> {
    if mv.len() != 2 * n {
        return Err(candle_core::Error::Msg(format!("{op}: moments of {} elements for {n} parameters", mv.len())));
    }
    Ok(mv.split_at(n))
}

impl InplaceOp2 for MomentsUpdate {
    fn name(&self) -> &'static str {
        "fused-adamw-moments"
    }

    fn cpu_fwd(&self, mv: &mut CpuStorage, mvl: &Layout, g: &CpuStorage, gl: &Layout) -> candle_core::Result<()> {
        let name = InplaceOp2::name(self);
        float_dispatch!(g, name, T => {
            let g = slice::<T>(g, gl, name)?;
            let mv = slice_mut::<T>(mv, mvl, name)?;
            halves(mv, g.len(), name)?;
            let (m, v) = mv.split_at_mut(g.len());
            m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)).zip(g.par_chunks(CHUNK))
                .for_each(|((m, v), g)| moments_chunk(m, v, g, self.0));
            Ok(())
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        mv: &mut candle_core::CudaStorage,
        mvl: &Layout,
        g: &candle_core::CudaStorage,
        gl: &Layout,
    ) -> candle_core::Result<()> {
        let h = self.0;
        super::cuda::adamw_moments((mv, mvl), (g, gl), h.beta1, h.beta2, h.grad_scale)
    }
}

impl InplaceOp2 for ThetaUpdate {
    fn name(&self) -> &'static str {
        "fused-adamw-theta"
    }

    fn cpu_fwd(&self, th: &mut CpuStorage, thl: &Layout, mv: &CpuStorage, mvl: &Layout) -> candle_core::Result<()> {
        let name = InplaceOp2::name(self);
        float_dispatch!(mv, name, T => {
            let theta = slice_mut::<T>(th, thl, name)?;
            let (m, v) = halves(slice::<T>(mv, mvl, name)?, theta.len(), name)?;
            theta.par_chunks_mut(CHUNK).zip(m.par_chunks(CHUNK)).zip(v.par_chunks(CHUNK))
                .for_each(|((t, m), v)| theta_chunk(t, m, v, self.0));
            Ok(())
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        th: &mut candle_core::CudaStorage,
        thl: &Layout,
        mv: &candle_core::CudaStorage,
        mvl: &Layout,
    ) -> candle_core::Result<()> {
        let h = self.0;
        super::cuda::adamw_theta((th, thl), (mv, mvl), h.step, h.bc2, h.eps, h.decay)
    }
}

/// One AdamW update of `theta` and its moments `mv` (`[2, …]`: first, second) in place, or
/// `false` where the fused kernels do not run (then the caller takes the composite path).
pub(crate) fn update(theta: &Tensor, g: &Tensor, mv: &Tensor, hyper: Hyper) -> candle_core::Result<bool> {
    let fits = [theta, g, mv]
        .iter()
        .all(|t| t.device().same_device(theta.device()) && t.dtype() == theta.dtype() && t.is_contiguous());
    let supported = match theta.device() {
        candle_core::Device::Cpu => super::cpu::supported(theta.dtype()),
        candle_core::Device::Cuda(_) => cfg!(feature = "cuda") && theta.dtype() == candle_core::DType::F32,
        _ => false,
    };
    if !fits || !supported {
        return Ok(false);
    }
    if g.dims() != theta.dims() || mv.dims().first() != Some(&2) || mv.dims()[1..] != *theta.dims() {
        return Err(candle_core::Error::Msg(format!(
            "fused-adamw: θ {:?}, gradient {:?} and moments {:?} do not fit",
            theta.dims(),
            g.dims(),
            mv.dims()
        )));
    }
    mv.inplace_op2(g, &MomentsUpdate(hyper))?;
    theta.inplace_op2(mv, &ThetaUpdate(hyper))?;
    Ok(true)
}
